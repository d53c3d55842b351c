//! The controller's side of active and passive replication (seed 002):
//! its workload of adds, puts and gets over a few keys, its run facts, and
//! its checks: `exactly-once` and `agreement` (from the replicas' final
//! logs and stores), `one-primary` (from the clients' replies),
//! `linearizable` (per key, against [`model::StoreModel`]) and
//! `detection` (per fault on a replica, the time to the view without it).

mod checks;
pub mod model;

use super::{ChaosSystem, Judging, MixOp, OpContext};
use crate::judge::timed;
use crate::results::CheckOutcome;
use faultline_node::config::Cluster;
use faultline_node::protocol::replication::store::Op;
use faultline_node::protocol::replication::{Params, Replication, Reply};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

pub struct ReplicationChaos;

/// The keys the workload touches: few, so order matters.
pub const KEYS: [&str; 3] = ["k0", "k1", "k2"];

/// What the checks need of the cluster besides its nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicationMeta {
    pub active: bool,
    pub replicas: Vec<String>,
}

impl ChaosSystem for ReplicationChaos {
    type Node = Replication;
    type Beliefs = ();

    const MIX: &'static [MixOp] = &[
        MixOp {
            name: "add",
            weight: 0.4,
            doc: "add 1 to a counter (returns the new value)",
        },
        MixOp {
            name: "put",
            weight: 0.3,
            doc: "set a register",
        },
        MixOp {
            name: "get",
            weight: 0.3,
            doc: "read a register",
        },
    ];
    const OP_FAULTS: &'static [&'static str] = &[];
    const QUIESCENT_CHECKS: &'static [&'static str] = &["agreement"];
    const HAS_PRIMARY: bool = true;

    fn next_op(_: &OpContext<'_, Params>, op: &str, _: &Mutex<()>, rng: &mut ChaCha8Rng) -> Op {
        let key = KEYS[rng.random_range(0..KEYS.len())].to_string();
        match op {
            "add" => Op::Add { key, n: 1 },
            "put" => Op::Put {
                key,
                value: rng.random_range(0..1000).to_string(),
            },
            _ => Op::Get { key },
        }
    }

    fn learn(_: &str, _: &Mutex<()>, _: &Op, _: &Reply) {}

    fn left_clients(_: &Reply) -> bool {
        false
    }

    fn op_fault(_: &str) -> Option<Op> {
        None
    }

    fn final_reads(_: &Cluster) -> Vec<Op> {
        KEYS.iter()
            .map(|k| Op::Get { key: k.to_string() })
            .collect()
    }

    fn meta(cluster: &Cluster) -> anyhow::Result<serde_json::Value> {
        let p = cluster
            .params::<Params>()
            .ok_or_else(|| anyhow::anyhow!("the cluster holds no replication parameters"))?;
        Ok(serde_json::to_value(ReplicationMeta {
            active: p.active,
            replicas: p.replicas.clone(),
        })?)
    }

    fn checks(run: &Judging<'_>) -> Vec<CheckOutcome> {
        let meta = serde_json::from_value::<ReplicationMeta>(run.record.meta.system_meta.clone())
            .unwrap_or_default();
        vec![
            timed(|| checks::exactly_once(run)),
            timed(|| checks::agreement(run)),
            timed(|| checks::one_primary(run, meta.active)),
            timed(|| checks::linearizable(run)),
            timed(|| checks::detection(run.record, &meta.replicas)),
        ]
    }

    /// The RM's view names the primary; a replica's state says which view
    /// it is in: the primary of the newest view any node reports.
    fn primary(states: &[crate::platform::AnyState]) -> Option<String> {
        states
            .iter()
            .filter_map(|s| {
                let v = s.state.get("view")?;
                Some((
                    v.get("number")?.as_u64()?,
                    v.get("primary")?.as_str()?.to_string(),
                ))
            })
            .max_by_key(|(n, _)| *n)
            .map(|(_, p)| p)
    }
}
