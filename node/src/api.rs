//! The typed contract of a node's admin API, shared by the node, its client
//! verbs, the controller and the tests: `/ops` answers, `/state`, `/history`
//! and `/load`. Every body that crosses a process is one of these serde types;
//! a system fills in its own request, reply and state types.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How one client operation ended, as far as its client knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It took effect, and the reply says how.
    Ok,
    /// It did not take effect and never will.
    Failed,
    /// It may or may not have taken effect.
    Unknown,
    /// Still running when the history was read: a checker treats it as unknown.
    Pending,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Failed,
        Outcome::Unknown,
        Outcome::Pending,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
            Outcome::Pending => "pending",
        }
    }

    /// Whether the operation certainly took effect or certainly did not.
    pub fn is_definite(&self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Failed)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer of `POST /ops`: the system's reply `R` and how it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpReply<R> {
    /// The node that ran the operation.
    pub node: String,
    pub outcome: Outcome,
    pub reply: R,
    /// From the request's arrival at the admin API to its reply.
    pub latency_ms: f64,
}

/// The body of every refused admin request (4xx, 5xx).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// `GET /state`: what every system's node reports, and the system's own
/// state `S` beside it (flattened into the same JSON object).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeState<S> {
    /// The system's name, as in the cluster file's `system:`.
    pub system: String,
    /// Absent in states recorded before it was added.
    #[serde(default)]
    pub id: String,
    /// The node's current role (a system may move a node between roles at
    /// runtime).
    pub role: String,
    /// Whether the node is ready for the workload, as its system decides
    /// (`System::is_ready`); the controller waits for every node's. Absent
    /// (false) in states recorded before it was added.
    #[serde(default)]
    pub ready: bool,
    /// Unix microseconds at which the node's core clock (the `Time` its
    /// handlers see, µs since the process started) read zero, so the
    /// controller can place the times a state reports on its own clock.
    /// 0 where unknown (the simulator, states recorded before it).
    #[serde(default)]
    pub clock_origin_us: u64,
    #[serde(flatten)]
    pub state: S,
}

/// One client operation in a node's history (`GET /history`). `Rq` and `Rp`
/// are the system's request and reply; generic code reads them as JSON.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HistoryOp<Rq = serde_json::Value, Rp = serde_json::Value> {
    /// Unique within one node process.
    pub id: u64,
    /// The client node that ran it.
    pub client: String,
    /// The request's kind, as the system names it (`System::request_kind`).
    pub kind: String,
    pub request: Rq,
    /// Unix microseconds: processes on one host share this clock.
    pub invoke_us: u64,
    pub complete_us: Option<u64>,
    pub outcome: Outcome,
    pub reply: Option<Rp>,
    /// Why the recorder chose the outcome itself when there is no reply
    /// (the call failed or timed out: unknown; the node refused it: failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `GET /history`: a node's operations ordered by invocation.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HistoryDump<Rq = serde_json::Value, Rp = serde_json::Value> {
    pub ops: Vec<HistoryOp<Rq, Rp>>,
    /// Operations completed beyond the history's bound: counted, not kept.
    #[serde(default)]
    pub truncated: u64,
}

/// `PUT /faults`: the message fault rules a node applies from now on
/// (replacing its set), for `lease_ms` (default 30 s) unless renewed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutFaults {
    pub rules: Vec<crate::faults::FaultRule>,
    #[serde(default)]
    pub lease_ms: Option<u64>,
    /// Reseeds the fault layer's RNGs (a replay gives the same decisions).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// `GET /faults`: the message fault rules a node applies now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultStatus {
    pub node: String,
    pub rules: Vec<crate::faults::FaultRule>,
    /// Milliseconds until the rules expire; absent when they do not.
    pub lease_remaining_ms: Option<u64>,
}

/// `POST /load`: a closed-loop load run inside a client node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    pub duration_ms: u64,
    #[serde(default = "one")]
    pub concurrency: usize,
    /// Record every operation in the history (off for benchmarks).
    #[serde(default = "yes")]
    pub record: bool,
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

impl LoadSpec {
    /// Bounds that keep one request from running for hours or spawning
    /// without limit.
    pub fn validate(&self) -> Result<(), String> {
        if self.duration_ms == 0 || self.duration_ms > 3_600_000 {
            return Err("duration_ms must be in 1..=3600000".into());
        }
        if self.concurrency == 0 || self.concurrency > 4096 {
            return Err("concurrency must be in 1..=4096".into());
        }
        Ok(())
    }
}

/// What a load run measured. `op` names the operation the throughput and
/// latencies are of; `reads` counts the helper operations a system's
/// generator needed besides (reads that refill its pool of work).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadStats {
    pub node: String,
    pub op: String,
    pub seconds: f64,
    pub ok: u64,
    pub failed: u64,
    pub unknown: u64,
    pub reads: u64,
    pub ok_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_is_lowercase_json_and_round_trips() {
        for o in Outcome::ALL {
            let s = serde_json::to_string(&o).expect("serialises");
            assert_eq!(s, format!("\"{}\"", o.as_str()));
            assert_eq!(serde_json::from_str::<Outcome>(&s).expect("parses"), o);
        }
        assert!(serde_json::from_str::<Outcome>("\"maybe\"").is_err());
    }

    #[test]
    fn node_state_flattens_the_system_state() {
        #[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
        struct S {
            epoch: u64,
        }
        let s = NodeState {
            system: "x".into(),
            id: "n1".into(),
            role: "server".into(),
            ready: true,
            clock_origin_us: 0,
            state: S { epoch: 3 },
        };
        let v = serde_json::to_value(&s).expect("serialises");
        assert_eq!(v["epoch"], 3);
        assert_eq!(v["role"], "server");
        let back: NodeState<S> = serde_json::from_value(v).expect("parses");
        assert_eq!(back, s);
    }
}
