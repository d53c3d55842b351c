//! `quiescent-state`: the nodes' `/state` dumps, taken after the controller's final read with
//! write-back, must show one settled table.
//!
//! The current configuration is the highest epoch any serving node reports. With `n` servers
//! and majority `m = n/2 + 1`, the final read wrote every token's largest value back to `m`
//! servers, so each token's largest tag must be held (same tag, same owner) by `m` of them.
//! Servers whose state was not collected could be among those `m`, so a shortfall they could
//! make up is unknown, not false. Across every table ever dumped (old servers keep theirs), a
//! `(token, tag)` never has two owners, and every table lists each token exactly once.

use super::linearizable::request_of;
use super::TokensMeta;
use crate::judge::outcome;
use crate::record::RunRecord;
use crate::results::{CheckOutcome, Valid};
use faultline_node::api::{self, Outcome};
use faultline_node::protocol::tokens::{Request, TokenRow, TokensState};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const NAME: &str = "quiescent-state";
/// Problems listed in the evidence; the count says how many there were.
const MAX_LISTED: usize = 20;

/// One node's `/state`, flattened for the checks below.
#[derive(Debug)]
struct NodeState {
    role: String,
    epoch: u64,
    servers: Vec<String>,
    serving: bool,
    frozen: bool,
    tokens: Option<Vec<Entry>>,
}

impl From<api::NodeState<TokensState>> for NodeState {
    fn from(s: api::NodeState<TokensState>) -> Self {
        NodeState {
            role: s.role,
            epoch: s.state.epoch,
            servers: s.state.servers,
            serving: s.state.serving,
            frozen: s.state.frozen,
            tokens: s
                .state
                .tokens
                .map(|t| t.into_iter().map(Entry::from).collect()),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    token: u64,
    version: u64,
    writer: String,
    nonce: u64,
    owner: String,
}

impl From<TokenRow> for Entry {
    fn from(r: TokenRow) -> Self {
        Entry {
            token: u64::from(r.token),
            version: r.version,
            writer: r.writer,
            nonce: r.nonce,
            owner: r.owner,
        }
    }
}

type Tag = (u64, String, u64);

impl Entry {
    fn tag(&self) -> Tag {
        (self.version, self.writer.clone(), self.nonce)
    }
}

fn tag_json(t: &Tag) -> Value {
    json!({"version": t.0, "writer": t.1, "nonce": t.2})
}

/// Whether some pay of `token` by `writer` to `owner` ended unknown (or never
/// ended), so that its write may be the value found at a minority.
fn lingering_unknown_pay(record: &RunRecord, token: u64, writer: &str, owner: &str) -> bool {
    record
        .histories
        .values()
        .flat_map(|h| h.ops.iter())
        .any(|op| {
            matches!(op.outcome, Outcome::Unknown | Outcome::Pending)
                && op.client == writer
                && matches!(request_of(op), Some(Request::Pay { token: t, to })
                    if u64::from(t) == token && to == owner)
        })
}

pub(crate) fn check_quiescent(record: &RunRecord) -> CheckOutcome {
    let meta = &record.meta;
    let tokens = match TokensMeta::of(record) {
        Ok(m) => m.token_count(),
        Err(e) => return outcome(NAME, Valid::Unknown, e, Value::Null),
    };
    let mut states: BTreeMap<&str, NodeState> = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (node, v) in &record.states {
        match serde_json::from_value::<api::NodeState<TokensState>>(v.clone()) {
            Ok(s) => {
                states.insert(node.as_str(), NodeState::from(s));
            }
            Err(e) => unreadable.push(json!({"node": node, "error": e.to_string()})),
        }
    }
    let all_nodes: BTreeSet<&str> = meta.nodes.iter().map(|n| n.id.as_str()).collect();
    let mut problems: Vec<Value> = Vec::new();

    // The current configuration.
    let Some(epoch) = states.values().filter(|s| s.serving).map(|s| s.epoch).max() else {
        let collected_all = all_nodes.iter().all(|n| states.contains_key(n));
        let summary = format!(
            "no serving node among {} states collected of {} nodes",
            states.len(),
            all_nodes.len()
        );
        let valid = if collected_all && !all_nodes.is_empty() {
            Valid::False
        } else {
            Valid::Unknown
        };
        return outcome(NAME, valid, summary, json!({"unreadable": unreadable}));
    };
    let configs: BTreeSet<&Vec<String>> = states
        .values()
        .filter(|s| s.serving && s.epoch == epoch)
        .map(|s| &s.servers)
        .collect();
    if configs.len() > 1 {
        problems.push(json!({"problem": "two configurations serve the same epoch",
            "epoch": epoch, "configurations": configs}));
    }
    let servers: Vec<String> = configs
        .iter()
        .next()
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let n = servers.len();
    let m = n / 2 + 1;
    let good: Vec<(&str, &Vec<Entry>)> = servers
        .iter()
        .filter_map(|id| {
            let s = states.get(id.as_str())?;
            let table = s.tokens.as_ref()?;
            (s.serving && s.epoch == epoch).then_some((id.as_str(), table))
        })
        .collect();
    let absent: Vec<&str> = servers
        .iter()
        .map(String::as_str)
        .filter(|id| !states.contains_key(id))
        .collect();
    let not_serving: Vec<Value> = servers
        .iter()
        .filter_map(|id| {
            let s = states.get(id.as_str())?;
            let serving_here = s.serving && s.epoch == epoch && s.tokens.is_some();
            (!serving_here).then(|| {
                json!({"node": id, "role": s.role, "epoch": s.epoch,
                       "serving": s.serving, "frozen": s.frozen})
            })
        })
        .collect();
    // Servers that could hold a value without our seeing it.
    let unseen = n - good.len();
    let mut undecided: Vec<Value> = Vec::new();
    if good.len() < m {
        if good.len() + absent.len() >= m {
            undecided.push(json!({"problem": "too few server states collected",
                "serving_collected": good.len(), "majority": m}));
        } else {
            problems.push(
                json!({"problem": "fewer than a majority of the servers serve",
                "serving": good.len(), "majority": m, "not_serving": not_serving}),
            );
        }
    }

    // No (token, tag) with two owners, anywhere.
    let mut owners: BTreeMap<(u64, Tag), BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    for (node, s) in &states {
        for e in s.tokens.iter().flatten() {
            owners
                .entry((e.token, e.tag()))
                .or_default()
                .entry(e.owner.as_str())
                .or_default()
                .push(node);
        }
    }
    for ((token, tag), by_owner) in &owners {
        if by_owner.len() > 1 {
            problems.push(json!({"problem": "one version of a token has two owners",
                "token": token, "tag": tag_json(tag), "owners": by_owner}));
        }
    }

    // Every token's largest value is at a majority, owned by a node of the cluster.
    for token in 0..tokens {
        let values: Vec<(&str, &Entry)> = good
            .iter()
            .filter_map(|(id, t)| t.iter().find(|e| e.token == token).map(|e| (*id, e)))
            .collect();
        let Some(top_tag) = values.iter().map(|(_, e)| e.tag()).max() else {
            continue;
        };
        // Two owners of one tag are reported above; here the better-held one counts.
        let mut by_owner: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (id, e) in &values {
            if e.tag() == top_tag {
                by_owner.entry(e.owner.as_str()).or_default().push(id);
            }
        }
        let Some((owner, holders)) = by_owner.into_iter().max_by_key(|(_, h)| h.len()) else {
            continue;
        };
        if holders.len() < m {
            let item = json!({"problem": "largest value not at a majority", "token": token,
                "tag": tag_json(&top_tag), "owner": owner, "held_by": holders,
                "majority": m});
            if lingering_unknown_pay(record, token, &top_tag.1, owner) {
                // The write of a pay that ended unknown may sit at a minority
                // for ever (until some read sees it): that is what unknown
                // allows, not a lost acknowledged write.
                continue;
            }
            if holders.len() + unseen >= m {
                undecided.push(item);
            } else {
                problems.push(item);
            }
        }
        if !all_nodes.contains(owner) {
            problems.push(json!({"problem": "owner is not a node of the cluster",
                "token": token, "owner": owner}));
        }
    }

    // Every table lists each token exactly once.
    for (node, s) in &states {
        let Some(table) = &s.tokens else { continue };
        let mut count: BTreeMap<u64, usize> = BTreeMap::new();
        for e in table {
            *count.entry(e.token).or_default() += 1;
        }
        let missing: Vec<u64> = (0..tokens).filter(|t| !count.contains_key(t)).collect();
        let repeated: Vec<u64> = count
            .iter()
            .filter(|(_, c)| **c > 1)
            .map(|(t, _)| *t)
            .collect();
        let extra: Vec<u64> = count.keys().copied().filter(|t| *t >= tokens).collect();
        if !missing.is_empty() || !repeated.is_empty() || !extra.is_empty() {
            problems.push(json!({"problem": "table does not list each token once",
                "node": node, "missing": missing, "repeated": repeated, "unknown": extra}));
        }
    }

    // A state that could not be read could hide a problem.
    for u in &unreadable {
        undecided.push(json!({"problem": "a state could not be read",
            "node": u["node"], "error": u["error"]}));
    }
    let valid = if !problems.is_empty() {
        Valid::False
    } else if !undecided.is_empty() {
        Valid::Unknown
    } else {
        Valid::True
    };
    let summary = match (problems.first(), undecided.first()) {
        (Some(p), _) => format!("{} problem(s); first: {}", problems.len(), describe(p)),
        (None, Some(u)) => format!("cannot tell: {}", describe(u)),
        (None, None) => format!(
            "epoch {epoch}: {tokens} tokens settled at a majority of {} of {n} servers",
            good.len()
        ),
    };
    let total_problems = problems.len();
    problems.truncate(MAX_LISTED);
    let total_undecided = undecided.len();
    undecided.truncate(MAX_LISTED);
    let evidence = json!({
        "epoch": epoch,
        "servers": servers,
        "majority": m,
        "serving_collected": good.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        "absent": absent,
        "not_serving": not_serving,
        "unreadable": unreadable,
        "problems": problems,
        "problem_count": total_problems,
        "undecided": undecided,
        "undecided_count": total_undecided,
    });
    outcome(NAME, valid, summary, evidence)
}

/// One line for a problem: its name and the token or node it concerns.
fn describe(p: &Value) -> String {
    let name = p["problem"].as_str().unwrap_or("problem");
    match (&p["token"], &p["node"]) {
        (Value::Number(t), _) => format!("{name} (token {t})"),
        (_, Value::String(n)) => format!("{name} ({n})"),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn settled() -> RunRecord {
        let mut rec = record(Vec::new());
        for s in ["s1", "s2", "s3"] {
            rec.states.insert(
                s.into(),
                server_state(1, &[(2, "c1", 5, "c2"), (1, "", 0, "c2")]),
            );
        }
        rec
    }

    #[test]
    fn settled_tables_are_valid() {
        let c = check_quiescent(&settled());
        assert_eq!(c.valid, Valid::True, "{}: {:#}", c.summary, c.evidence);
    }

    #[test]
    fn a_value_on_a_minority_is_false_or_unknown_when_states_are_missing() {
        let mut rec = settled();
        for s in ["s2", "s3"] {
            rec.states.insert(
                s.into(),
                server_state(1, &[(1, "", 0, "c1"), (1, "", 0, "c2")]),
            );
        }
        let c = check_quiescent(&rec);
        assert_eq!(c.valid, Valid::False, "{}", c.summary);
        assert!(c.summary.contains("token 0"), "{}", c.summary);

        // With s3's state missing, s3 could hold the value too: unknown.
        rec.states.remove("s3");
        rec.states.insert(
            "s2".into(),
            server_state(1, &[(2, "c1", 5, "c2"), (1, "", 0, "c2")]),
        );
        rec.states.insert(
            "s1".into(),
            server_state(1, &[(1, "", 0, "c1"), (1, "", 0, "c2")]),
        );
        let c = check_quiescent(&rec);
        assert_eq!(c.valid, Valid::Unknown, "{}", c.summary);
    }

    #[test]
    fn one_tag_two_owners_is_false() {
        let mut rec = settled();
        rec.states.insert(
            "c1".into(),
            json!({"system": "tokens", "id": "c1", "role": "client", "ready": true, "epoch": 0,
                   "servers": ["s1","s2","s3"], "serving": false, "frozen": false,
                   "pending_ops": 0, "transforming": false, "tokens": [
                {"token": 0, "version": 2, "writer": "c1", "nonce": 5, "owner": "c1"},
                {"token": 1, "version": 1, "writer": "", "nonce": 0, "owner": "c2"}]}),
        );
        let c = check_quiescent(&rec);
        assert_eq!(c.valid, Valid::False);
        assert!(c.summary.contains("two owners"), "{}", c.summary);
    }

    #[test]
    fn a_table_missing_a_token_is_false_and_no_states_is_unknown() {
        let mut rec = settled();
        rec.states
            .insert("s3".into(), server_state(1, &[(2, "c1", 5, "c2")]));
        assert_eq!(check_quiescent(&rec).valid, Valid::False);
        assert_eq!(check_quiescent(&record(Vec::new())).valid, Valid::Unknown);
    }
}
