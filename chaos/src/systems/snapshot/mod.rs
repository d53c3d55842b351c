//! The controller's side of the bitcake network (seed 004): a workload of
//! transfers (routed to non-neighbours), bursts and snapshot requests (of
//! any node: a non-initiator, or an initiator whose previous snapshot is
//! still being collected, must refuse and go on), the network's facts, and
//! the checks of every snapshot against the ground truth of the
//! transactions, which live with the node's code
//! ([`faultline_node::protocol::snapshot::audit`]) so the simulator runs
//! the same ones.

use super::{ChaosSystem, Judging, MixOp, OpContext};
use crate::judge::{outcome, timed};
use crate::results::{CheckOutcome, Valid};
use faultline_node::api::NodeState;
use faultline_node::config::Cluster;
use faultline_node::protocol::snapshot::audit::{audit, AuditCheck, Network};
use faultline_node::protocol::snapshot::{Params, Reply, Request, Snapshot, SnapshotState};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The bitcake network as the controller drives and judges it.
pub struct SnapshotChaos;

/// What the checks need of the network besides its nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub nodes: Vec<String>,
    /// Undirected edges, `(a, b)` with `a < b`.
    pub edges: Vec<(String, String)>,
    pub initial: u64,
    pub initiators: Vec<String>,
}

/// Every node's final state that reads as the network's, by node.
pub fn states(states: &BTreeMap<String, serde_json::Value>) -> BTreeMap<String, SnapshotState> {
    states
        .iter()
        .filter_map(|(id, v)| {
            let s: NodeState<SnapshotState> = serde_json::from_value(v.clone()).ok()?;
            Some((id.clone(), s.state))
        })
        .collect()
}

/// Whether the network is quiet: every transaction sent has arrived,
/// every snapshot started is collected at its master, and every initiator
/// knows the global snapshot of the epoch it recorded last (so none is
/// told late, and each may start the next).
pub fn is_quiet(states: &BTreeMap<String, SnapshotState>) -> bool {
    let sent: u64 = states.values().map(|s| s.transactions_sent).sum();
    let got: u64 = states.values().map(|s| s.transactions_got).sum();
    let knows = |s: &SnapshotState, e: u64| s.collected.iter().any(|c| c.epoch == e);
    sent == got
        && states.iter().all(|(id, s)| {
            let mine = s
                .started
                .iter()
                .all(|e| s.collected.iter().any(|c| c.epoch == *e && c.master == *id));
            mine && (!s.initiator || s.epoch == 0 || knows(s, s.epoch))
        })
}

fn to_outcome(c: &AuditCheck) -> CheckOutcome {
    let (valid, summary) = match (&c.unknown, c.failures.is_empty()) {
        (_, false) => (Valid::False, c.describe()),
        (Some(why), true) => (Valid::Unknown, why.clone()),
        (None, true) => (Valid::True, c.summary.clone()),
    };
    outcome(
        c.name,
        valid,
        summary,
        serde_json::json!({ "failures": c.failures, "checked": c.summary }),
    )
}

impl ChaosSystem for SnapshotChaos {
    type Node = Snapshot;
    type Beliefs = ();

    const MIX: &'static [MixOp] = &[
        MixOp {
            name: "transfer",
            weight: 0.85,
            doc: "move 1 to 20 bitcakes to a random other node (routed if not a neighbour)",
        },
        MixOp {
            name: "burst",
            weight: 0.01,
            doc: "the seed's transaction burst: small amounts to every neighbour",
        },
        MixOp {
            name: "snapshot",
            weight: 0.14,
            doc: "ask this node for a snapshot (refused unless it is an initiator whose previous one is collected)",
        },
    ];
    const OP_FAULTS: &'static [&'static str] = &[];
    const QUIESCENT_CHECKS: &'static [&'static str] = &["conservation", "snapshot-total"];
    const HAS_PRIMARY: bool = false;

    fn next_op(
        ctx: &OpContext<'_, Params>,
        op: &str,
        _: &Mutex<()>,
        rng: &mut ChaCha8Rng,
    ) -> Request {
        match op {
            "burst" => Request::Burst,
            "snapshot" => Request::Snapshot,
            _ => {
                debug_assert_eq!(op, "transfer", "not a snapshot mix operation");
                let others: Vec<&String> =
                    ctx.params.graph.nodes().filter(|n| *n != ctx.me).collect();
                match others.len() {
                    0 => Request::Info,
                    k => Request::Transfer {
                        to: others[rng.random_range(0..k)].clone(),
                        amount: rng.random_range(1..=20),
                    },
                }
            }
        }
    }

    fn learn(_: &str, _: &Mutex<()>, _: &Request, _: &Reply) {}

    fn left_clients(_: &Reply) -> bool {
        false
    }

    fn op_fault(_: &str) -> Option<Request> {
        None
    }

    fn final_reads(_cluster: &Cluster) -> Vec<Request> {
        Vec::new()
    }

    fn meta(cluster: &Cluster) -> anyhow::Result<serde_json::Value> {
        let p = cluster
            .params::<Params>()
            .ok_or_else(|| anyhow::anyhow!("the cluster holds no snapshot parameters"))?;
        Ok(serde_json::to_value(SnapshotMeta {
            nodes: p.graph.nodes().cloned().collect(),
            edges: p.graph.edge_list(),
            initial: p.initial,
            initiators: p.initiators.clone(),
        })?)
    }

    /// Every node answered with a state, and they are quiet.
    fn is_quiet(raw: &BTreeMap<String, serde_json::Value>) -> bool {
        let s = states(raw);
        s.len() == raw.len() && is_quiet(&s)
    }

    fn checks(run: &Judging<'_>) -> Vec<CheckOutcome> {
        let meta: SnapshotMeta = match serde_json::from_value(run.record.meta.system_meta.clone()) {
            Ok(m) => m,
            Err(e) => {
                return vec![outcome(
                    "snapshot-total",
                    Valid::Unknown,
                    format!("the run record has no network facts: {e}"),
                    serde_json::Value::Null,
                )]
            }
        };
        let states = states(&run.record.states);
        let quiet = is_quiet(&states);
        let checks = audit(
            &Network {
                nodes: &meta.nodes,
                edges: &meta.edges,
                initial: meta.initial,
            },
            &states,
            quiet,
        );
        checks.iter().map(|c| timed(|| to_outcome(c))).collect()
    }
}
