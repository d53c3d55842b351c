//! The bitcake network's client verbs, with the seed's words beside ours:
//! `transfer NODE AMOUNT`, `burst` (`transaction_burst`), `snapshot`
//! (`bitcake_info`), `info`, and `snapshots`, which prints every global
//! snapshot the node knows as the seed did (recorded amounts, unreceived
//! amounts per channel, the system's count), or as JSON with `--json`.

use super::{Reply, Request, Snapshot};
use crate::api::OpReply;
use crate::cli::{Client, Output};
use std::fmt;

#[derive(clap::Subcommand, Debug)]
pub enum Verb {
    /// Move AMOUNT bitcakes to NODE (through intermediaries if it is not a
    /// neighbour).
    Transfer {
        to: String,
        #[arg(value_parser = parse_amount, allow_hyphen_values = true)]
        amount: u64,
    },
    /// The seed's transaction burst: to every neighbour, `burst` small
    /// transactions.
    #[command(alias = "transaction_burst")]
    Burst,
    /// Start a snapshot (initiators only, once the previous is collected).
    #[command(alias = "bitcake_info")]
    Snapshot,
    /// The node's balance and its place in the latest snapshot.
    Info,
    /// Every global snapshot the node knows.
    Snapshots,
}

/// An amount: a whole number of bitcakes, at least 1.
pub fn parse_amount(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "an amount is a whole number of bitcakes, at least 1; got {s:?}"
        )),
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Sent { seq, via } => write!(f, "sent as transaction {seq} via {via}"),
            Reply::Burst { sent, skipped } => write!(
                f,
                "burst: {sent} transactions sent, {skipped} skipped for want of bitcakes"
            ),
            Reply::Started { epoch } => write!(f, "snapshot {epoch} started"),
            Reply::Info {
                balance,
                epoch,
                region,
                parent,
            } => write!(
                f,
                "balance {balance}; snapshot {epoch}, region {}, parent {}",
                region.as_deref().unwrap_or("-"),
                parent.as_deref().unwrap_or("-")
            ),
            Reply::Refused { error } => write!(f, "refused: {error}"),
        }
    }
}

fn render(op: &OpReply<Reply>) -> Output {
    Client::<Snapshot>::render(op, Reply::to_string)
}

pub(super) async fn run(c: &Client<Snapshot>, verb: Verb) -> anyhow::Result<Output> {
    let request = match verb {
        Verb::Transfer { to, amount } => {
            c.known(&to)?;
            Request::Transfer { to, amount }
        }
        Verb::Burst => Request::Burst,
        Verb::Snapshot => Request::Snapshot,
        Verb::Info => Request::Info,
        Verb::Snapshots => {
            let s = c.state(c.id()).await?.state;
            let mut human = String::new();
            if s.collected.is_empty() {
                human.push_str(&format!("{} knows no collected snapshot yet\n", c.id()));
            }
            for x in &s.collected {
                human.push_str(&format!(
                    "Snapshot {} (master {}{}):\n{}",
                    x.epoch,
                    x.master,
                    x.took_us
                        .map(|t| format!(", {} ms", t / 1_000))
                        .unwrap_or_default(),
                    x.global.text()
                ));
                for (round, known) in &x.rounds {
                    human.push_str(&format!("  round {round}: {known} records known\n"));
                }
            }
            return Ok(Output::ok(human, &s.collected));
        }
    };
    let op = c.op(c.id(), &request).await?;
    Ok(render(&op))
}
