//! The commands of the bitcake network: what a node's script file holds
//! (one per line, as the seed's `servent{i}_in.txt`), and what `/ops`, the
//! client verbs and the controller's workload send. One type for all, so a
//! script and a workload drive the same code.

use super::graph::NodeId;
use super::ledger::Amount;
use serde::{Deserialize, Serialize};

/// One command, as `/ops` takes it (JSON) and as a script line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Move `amount` bitcakes to `to`: a neighbour directly, any other
    /// node through intermediaries (`transfer n5 20`).
    Transfer { to: NodeId, amount: Amount },
    /// The seed's `transaction_burst`: to every neighbour, the configured
    /// number of transactions of 1 to `burst_max` bitcakes each, as funds
    /// allow (`burst`).
    Burst,
    /// Start a snapshot; only an initiator may, once its previous one is
    /// collected (`snapshot`, the seed's `bitcake_info`).
    Snapshot,
    /// The node's balance and snapshot state (`info`).
    Info,
    /// Scripts only: wait this long before the next line (`pause 500`).
    Pause { ms: u64 },
}

impl Command {
    /// The `kind` label of metrics and histories.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Transfer { .. } => "transfer",
            Command::Burst => "burst",
            Command::Snapshot => "snapshot",
            Command::Info => "info",
            Command::Pause { .. } => "pause",
        }
    }

    /// Parses one script line; blank lines and `#` comments are `None`.
    /// The seed's names are accepted beside ours (`transaction_burst`,
    /// `bitcake_info`).
    pub fn parse(line: &str) -> Result<Option<Command>, String> {
        let line = line.split('#').next().unwrap_or("").trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |w: Option<&&str>, what: &str| -> Result<u64, String> {
            let w = w.ok_or_else(|| format!("{line:?}: {what} is missing"))?;
            w.parse()
                .map_err(|_| format!("{line:?}: {what} {w:?} is not a whole number"))
        };
        Ok(Some(match words.first().copied() {
            None => return Ok(None),
            Some("transfer") => {
                let to = words
                    .get(1)
                    .ok_or_else(|| format!("{line:?}: transfer NODE AMOUNT"))?;
                Command::Transfer {
                    to: to.to_string(),
                    amount: number(words.get(2), "the amount")?,
                }
            }
            Some("burst" | "transaction_burst") => Command::Burst,
            Some("snapshot" | "bitcake_info") => Command::Snapshot,
            Some("info") => Command::Info,
            Some("pause") => Command::Pause {
                ms: number(words.get(1), "the pause in ms")?,
            },
            Some(other) => {
                return Err(format!(
                    "{other:?} is not a command (transfer NODE AMOUNT, burst, snapshot, info, pause MS)"
                ))
            }
        }))
    }

    /// Parses a whole script; an error names the line.
    pub fn parse_script(text: &str) -> Result<Vec<Command>, String> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if let Some(c) = Command::parse(line).map_err(|e| format!("line {}: {e}", i + 1))? {
                out.push(c);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_read_as_the_seed_wrote_them_and_errors_name_the_line() {
        let s = Command::parse_script(
            "pause 500\n# comment\n\ntransaction_burst\nbitcake_info\ntransfer n5 20  # routed\ninfo\n",
        )
        .expect("a script");
        assert_eq!(
            s,
            vec![
                Command::Pause { ms: 500 },
                Command::Burst,
                Command::Snapshot,
                Command::Transfer {
                    to: "n5".into(),
                    amount: 20
                },
                Command::Info,
            ]
        );
        let e = Command::parse_script("burst\ntransfer n5 -3\n").expect_err("negative");
        assert!(e.starts_with("line 2:") && e.contains("\"-3\""), "{e}");
        let e = Command::parse_script("stop\n").expect_err("unknown");
        assert!(e.contains("not a command"), "{e}");
    }
}
