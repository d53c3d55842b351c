//! The replicated application (seed 002, generalised): a keyed store that
//! any number of clients update, with counters (`add KEY N` returns the
//! new value) and registers (`put KEY V`, `get KEY`), so the order of
//! operations matters (the seed's per-client counters commuted, which hid
//! its missing total order). Also the per-client table of outcomes that
//! makes a retried request answer its first outcome (exactly once).

use crate::protocol::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Outcomes kept per client for deduplication (a client has at most this
/// many requests in flight).
pub const DEDUP_WINDOW: usize = 1024;

/// Request ids a log of applied requests keeps (in memory, in `/state`
/// and in checkpoints): the newest, between this many and twice as many,
/// trimmed in one move so that a push costs O(1) amortised. A request
/// applied twice further apart than this goes unseen by the exactly-once
/// check; a checkpoint stays far below the transport's frame limit
/// (about 25 bytes an id: under 0.5 MB). Unbounded, a few minutes of load
/// made checkpoints too big to send and failover stopped.
pub const HISTORY_KEPT: usize = 8192;

/// Appends `id` to a bounded log of applied requests; `dropped` counts
/// the entries forgotten from its front.
pub fn push_recent(log: &mut Vec<RequestId>, dropped: &mut u64, id: RequestId) {
    log.push(id);
    if log.len() > 2 * HISTORY_KEPT {
        let cut = log.len() - HISTORY_KEPT;
        log.drain(..cut);
        *dropped += cut as u64;
    }
}

/// One operation on the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Adds `n` (may be negative) to counter `key` (0 if new).
    Add { key: String, n: i64 },
    /// Sets register `key`.
    Put { key: String, value: String },
    /// Reads register `key`.
    Get { key: String },
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Add { .. } => "add",
            Op::Put { .. } => "put",
            Op::Get { .. } => "get",
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Op::Add { key, .. } | Op::Put { key, .. } | Op::Get { key } => key,
        }
    }
}

/// What an operation answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// The counter's new value.
    Counter(i64),
    /// `put`: done; `get`: the register's value (none if never put).
    Register(Option<String>),
    /// Refused, nothing changed (a counter would overflow).
    Refused(String),
}

/// A request's identity, chosen by its client and kept across retries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    pub client: NodeId,
    pub seq: u64,
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.client, self.seq)
    }
}

/// The store and its deduplication table: what a checkpoint carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Store {
    pub counters: BTreeMap<String, i64>,
    pub registers: BTreeMap<String, String>,
    /// Per client: its newest outcomes by request number.
    pub outcomes: BTreeMap<NodeId, BTreeMap<u64, Answer>>,
    /// Requests applied (not counting answers repeated from the table).
    pub applied: u64,
    /// The newest requests applied to this state, in order (at most
    /// 2 x [`HISTORY_KEPT`]): the replica's log that the exactly-once check
    /// reads (it travels with checkpoints, so a request applied before a
    /// transfer and again after shows twice).
    pub history: Vec<RequestId>,
    /// Entries of `history` forgotten from its front.
    #[serde(default)]
    pub history_dropped: u64,
}

impl Store {
    /// The outcome of `id` if it was applied.
    pub fn outcome(&self, id: &RequestId) -> Option<&Answer> {
        self.outcomes.get(&id.client)?.get(&id.seq)
    }

    /// Applies `op` for `id` once: a request already applied answers its
    /// first outcome and changes nothing. `dedup: false` is the planted
    /// bug that applies it again.
    pub fn apply(&mut self, id: &RequestId, op: &Op, dedup: bool) -> Answer {
        if dedup {
            if let Some(a) = self.outcome(id) {
                return a.clone();
            }
        }
        let answer = match op {
            Op::Add { key, n } => {
                let v = self.counters.get(key).copied().unwrap_or(0);
                match v.checked_add(*n) {
                    Some(v) => {
                        self.counters.insert(key.clone(), v);
                        Answer::Counter(v)
                    }
                    None => Answer::Refused(format!("counter {key} would overflow")),
                }
            }
            Op::Put { key, value } => {
                self.registers.insert(key.clone(), value.clone());
                Answer::Register(Some(value.clone()))
            }
            Op::Get { key } => Answer::Register(self.registers.get(key).cloned()),
        };
        self.applied += 1;
        push_recent(&mut self.history, &mut self.history_dropped, id.clone());
        let table = self.outcomes.entry(id.client.clone()).or_default();
        table.insert(id.seq, answer.clone());
        // Bounded: one removal per insertion past the window.
        while table.len() > DEDUP_WINDOW {
            table.pop_first();
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> RequestId {
        RequestId {
            client: "c1".into(),
            seq,
        }
    }

    #[test]
    fn a_retried_request_answers_its_first_outcome() {
        let mut s = Store::default();
        let add = Op::Add {
            key: "x".into(),
            n: 5,
        };
        assert_eq!(s.apply(&id(1), &add, true), Answer::Counter(5));
        assert_eq!(
            s.apply(&id(1), &add, true),
            Answer::Counter(5),
            "deduplicated"
        );
        assert_eq!(s.counters["x"], 5);
        assert_eq!(s.apply(&id(1), &add, false), Answer::Counter(10), "the bug");
        let put = Op::Put {
            key: "r".into(),
            value: "v".into(),
        };
        s.apply(&id(2), &put, true);
        assert_eq!(
            s.apply(&id(3), &Op::Get { key: "r".into() }, true),
            Answer::Register(Some("v".into()))
        );
        let big = Op::Add {
            key: "x".into(),
            n: i64::MAX,
        };
        assert!(matches!(s.apply(&id(4), &big, true), Answer::Refused(_)));
        assert_eq!(s.counters["x"], 10, "a refusal changes nothing");
    }

    #[test]
    fn the_log_of_applied_requests_keeps_the_newest() {
        let mut s = Store::default();
        let n = 2 * HISTORY_KEPT as u64 + 5;
        for seq in 1..=n {
            s.apply(
                &id(seq),
                &Op::Add {
                    key: "x".into(),
                    n: 1,
                },
                true,
            );
        }
        assert!(s.history.len() >= HISTORY_KEPT && s.history.len() <= 2 * HISTORY_KEPT);
        assert_eq!(s.history_dropped + s.history.len() as u64, n);
        assert_eq!(s.history.last(), Some(&id(n)), "the newest is kept");
        assert_eq!(s.counters["x"], n as i64);
    }
}
