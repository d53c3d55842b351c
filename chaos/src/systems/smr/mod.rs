//! The controller's side of state machine replication (seed 001): its
//! workload mix over a handful of sites, the final `list`, its run facts,
//! and its checks: `prefix` and `replay` (from the replicas' final logs and
//! databases), `replies-agree` (the nodes' own mismatch counters) and
//! `linearizable` (per site, against [`model::SitesModel`]).

mod checks;
pub mod model;

use super::{ChaosSystem, Judging, MixOp, OpContext};
use crate::judge::timed;
use crate::results::CheckOutcome;
use faultline_node::api::HistoryOp;
use faultline_node::config::Cluster;
use faultline_node::protocol::smr::db::{Availability, Command};
use faultline_node::protocol::smr::{Params, Reply, Request, Smr};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// The database as the controller drives and judges it.
pub struct SmrChaos;

/// The sites the workload touches, beside the seed's Harvard University:
/// few, so operations on one site overlap and order matters.
pub const SITES: [&str; 4] = [
    "MIT",
    "Boston University",
    "Tufts University",
    "Northeastern",
];

/// What the checks need of the cluster besides its nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SmrMeta {
    pub replicas: Vec<String>,
    pub clients: Vec<String>,
}

/// One recorded operation read back as smr's typed request and reply.
pub(crate) type SmrOp<'a> = super::TypedOp<'a, Request, Reply>;

/// The recorded operations that read as smr's, and how many did not.
pub(crate) fn smr_ops<'a>(ops: &[&'a HistoryOp]) -> (Vec<SmrOp<'a>>, usize) {
    super::typed_ops(ops)
}

fn any_site(rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..=SITES.len()) {
        0 => "Harvard University".to_string(),
        i => SITES[i - 1].to_string(),
    }
}

impl ChaosSystem for SmrChaos {
    type Node = Smr;
    type Beliefs = ();

    const MIX: &'static [MixOp] = &[
        MixOp {
            name: "list",
            weight: 0.1,
            doc: "list every site (reads every key)",
        },
        MixOp {
            name: "view",
            weight: 0.3,
            doc: "view one site's availability",
        },
        MixOp {
            name: "edit",
            weight: 0.45,
            doc: "set a site's availability to 0..99, or true/false",
        },
        MixOp {
            name: "add",
            weight: 0.15,
            doc: "add a site (most already exist after the first few)",
        },
    ];
    const OP_FAULTS: &'static [&'static str] = &[];
    const QUIESCENT_CHECKS: &'static [&'static str] = &["prefix", "replay"];
    const HAS_PRIMARY: bool = false;

    fn next_op(
        _ctx: &OpContext<'_, Params>,
        op: &str,
        _: &Mutex<()>,
        rng: &mut ChaCha8Rng,
    ) -> Request {
        let site = any_site(rng);
        Request::Command(match op {
            "list" => Command::List,
            "edit" => Command::Edit {
                site,
                availability: match rng.random_range(0..10) {
                    0 => Availability::Flag(rng.random_bool(0.5)),
                    _ => Availability::Count(rng.random_range(0..100)),
                },
            },
            "add" => Command::Add {
                site,
                zip: format!("0{}", rng.random_range(2100..2300)),
            },
            _ => {
                debug_assert_eq!(op, "view", "not an smr mix operation");
                Command::View { site }
            }
        })
    }

    fn learn(_: &str, _: &Mutex<()>, _: &Request, _: &Reply) {}

    fn left_clients(_: &Reply) -> bool {
        false
    }

    fn op_fault(_: &str) -> Option<Request> {
        None
    }

    fn final_reads(_cluster: &Cluster) -> Vec<Request> {
        vec![Request::Command(Command::List)]
    }

    fn meta(cluster: &Cluster) -> anyhow::Result<serde_json::Value> {
        let p = cluster
            .params::<Params>()
            .ok_or_else(|| anyhow::anyhow!("the cluster holds no smr parameters"))?;
        Ok(serde_json::to_value(SmrMeta {
            replicas: p.replicas.clone(),
            clients: p.clients.clone(),
        })?)
    }

    fn checks(run: &Judging<'_>) -> Vec<CheckOutcome> {
        vec![
            timed(|| checks::prefix(run)),
            timed(|| checks::replay(run)),
            timed(|| checks::replies_agree(run)),
            timed(|| checks::linearizable(run)),
        ]
    }
}
