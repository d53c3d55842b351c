//! What the controller knows of each system, behind one trait
//! ([`ChaosSystem`]): its workload (operation mix and client beliefs), the
//! process faults that are operations of the system, its quiescence reads,
//! and its checks and sequential model. Everything one system owns lives in
//! `systems/<system>/`; the runner, the nemesis and the judge only call the
//! trait, and [`with_chaos_system!`] is the only `match` on a system's name.

pub mod replication;
pub mod smr;
pub mod snapshot;
pub mod standby;
pub mod tokens;

use crate::judge::{JudgeOptions, ScrapeIndex};
use crate::platform::AnyState;
use crate::record::RunRecord;
use crate::results::CheckOutcome;
use faultline_node::api::HistoryOp;
use faultline_node::config::Cluster;
use faultline_node::system::System;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One operation of a system's workload mix (a key of the scenario's `mix:`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MixOp {
    pub name: &'static str,
    /// Its weight when the scenario gives no mix.
    pub weight: f64,
    /// What it does, for errors and the README.
    pub doc: &'static str,
}

/// What a workload client knows when it picks its next operation.
pub struct OpContext<'a, P> {
    /// The client node.
    pub me: &'a str,
    /// The nodes that are clients now (roles can change during a run).
    pub clients: &'a [String],
    /// The system's validated cluster parameters.
    pub params: &'a Arc<P>,
}

/// One recorded operation read back as a system's typed request and reply
/// (`reply` is `None` when there was none or it does not read as `Rp`).
pub(crate) struct TypedOp<'a, Rq, Rp> {
    pub src: &'a HistoryOp,
    pub request: Rq,
    pub reply: Option<Rp>,
}

/// The recorded operations whose requests read as `Rq`, and how many did
/// not (a checker reports them instead of guessing).
pub(crate) fn typed_ops<'a, Rq, Rp>(ops: &[&'a HistoryOp]) -> (Vec<TypedOp<'a, Rq, Rp>>, usize)
where
    Rq: serde::de::DeserializeOwned,
    Rp: serde::de::DeserializeOwned,
{
    let mut out = Vec::new();
    let mut unreadable = 0;
    for op in ops {
        match serde_json::from_value::<Rq>(op.request.clone()) {
            Ok(request) => out.push(TypedOp {
                src: op,
                request,
                reply: op
                    .reply
                    .as_ref()
                    .and_then(|r| serde_json::from_value(r.clone()).ok()),
            }),
            Err(_) => unreadable += 1,
        }
    }
    (out, unreadable)
}

/// A recorded run as the checks see it.
pub struct Judging<'a> {
    pub record: &'a RunRecord,
    /// Every operation of every client history.
    pub ops: &'a [&'a HistoryOp],
    pub scrapes: &'a ScrapeIndex<'a>,
    pub opts: &'a JudgeOptions,
}

/// A system as the controller drives and judges it.
pub trait ChaosSystem: Send + Sync + 'static {
    /// The node-side system: its requests, replies, state and parameters.
    type Node: System;
    /// What one workload client believes between operations (tokens: the
    /// tokens it owns), shared by the client's concurrent loops.
    type Beliefs: Default + Send + 'static;

    /// The scenario's `mix:` keys with their default weights.
    const MIX: &'static [MixOp];
    /// Process-layer faults that are operations of the system, asked of the
    /// target node through `/ops` (tokens: `transform`). They are instantaneous.
    const OP_FAULTS: &'static [&'static str];
    /// Checks that need the cluster quiet at the end; an interrupted run
    /// turns them unknown.
    const QUIESCENT_CHECKS: &'static [&'static str];
    /// Whether the system has a primary (the `primary` fault selector).
    const HAS_PRIMARY: bool;

    /// The next request of a client, for the mix operation `op` (one of
    /// [`ChaosSystem::MIX`]).
    fn next_op(
        ctx: &OpContext<'_, <Self::Node as System>::Params>,
        op: &str,
        beliefs: &Mutex<Self::Beliefs>,
        rng: &mut ChaCha8Rng,
    ) -> <Self::Node as System>::Request;

    /// Updates the client's beliefs from a completed operation.
    fn learn(
        me: &str,
        beliefs: &Mutex<Self::Beliefs>,
        request: &<Self::Node as System>::Request,
        reply: &<Self::Node as System>::Reply,
    );

    /// The reply says its node no longer takes client operations (tokens: a
    /// transform made it a server).
    fn left_clients(reply: &<Self::Node as System>::Reply) -> bool;

    /// The request an operation fault (one of [`ChaosSystem::OP_FAULTS`]) asks.
    fn op_fault(fault: &str) -> Option<<Self::Node as System>::Request>;

    /// Reads run through a client after every fault healed, each retried
    /// until it succeeds or quiescence runs out; they are in the history, so
    /// the checks can demand what they saw (tokens: every node's gettokens,
    /// whose write-back leaves each token's latest value at a majority).
    fn final_reads(cluster: &Cluster) -> Vec<<Self::Node as System>::Request>;

    /// Facts of the cluster the checks need besides its nodes (tokens: the
    /// token count and initial owners), kept in the run record as the
    /// system's own serde type.
    fn meta(cluster: &Cluster) -> anyhow::Result<serde_json::Value>;

    /// The system's checks of a recorded run; the judge adds the generic
    /// ones (liveness, faults-applied) beside them.
    fn checks(run: &Judging<'_>) -> Vec<CheckOutcome>;

    /// Whether the cluster is quiet (no work of the system in flight),
    /// from the nodes' `/state` JSON by node. After the workload the runner
    /// polls the states until it is, for up to the scenario's quiescence
    /// bound, so the quiescent checks see a settled system.
    fn is_quiet(states: &BTreeMap<String, serde_json::Value>) -> bool {
        let _ = states;
        true
    }

    /// The node that is primary now, from the states of the nodes that
    /// answered; the `primary` selector resolves to it when its fault
    /// applies. Only systems with [`ChaosSystem::HAS_PRIMARY`] need it.
    fn primary(states: &[AnyState]) -> Option<String> {
        let _ = states;
        None
    }
}

/// What generic code (scenario validation) may know of a system without
/// its types.
#[derive(Clone, Debug, PartialEq)]
pub struct ChaosInfo {
    pub name: &'static str,
    pub mix: &'static [MixOp],
    pub op_faults: &'static [&'static str],
    pub quiescent_checks: &'static [&'static str],
    pub has_primary: bool,
}

impl ChaosInfo {
    pub fn of<S: ChaosSystem>() -> Self {
        ChaosInfo {
            name: <S::Node as System>::NAME,
            mix: S::MIX,
            op_faults: S::OP_FAULTS,
            quiescent_checks: S::QUIESCENT_CHECKS,
            has_primary: S::HAS_PRIMARY,
        }
    }
}

/// Runs `$body` with `$S` bound to the controller's side of the system
/// named `$name`, or `$other` when it has none. The only `match` on a
/// system's name in the controller.
#[macro_export]
macro_rules! with_chaos_system {
    ($name:expr, |$S:ident| $body:expr, else $other:expr) => {
        match $name {
            "tokens" => {
                type $S = $crate::systems::tokens::TokensChaos;
                $body
            }
            "standby" => {
                type $S = $crate::systems::standby::StandbyChaos;
                $body
            }
            "smr" => {
                type $S = $crate::systems::smr::SmrChaos;
                $body
            }
            "snapshot" => {
                type $S = $crate::systems::snapshot::SnapshotChaos;
                $body
            }
            "replication" => {
                type $S = $crate::systems::replication::ReplicationChaos;
                $body
            }
            _ => $other,
        }
    };
}

/// The `/ops` body of each operation fault of `S`, from its typed request.
pub fn op_fault_bodies<S: ChaosSystem>() -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    let mut out = BTreeMap::new();
    for f in S::OP_FAULTS {
        let request = S::op_fault(f)
            .ok_or_else(|| anyhow::anyhow!("operation fault {f:?} has no request"))?;
        out.insert(f.to_string(), serde_json::to_value(request)?);
    }
    Ok(out)
}

/// [`op_fault_bodies`] of the system named `name`.
pub fn op_faults_of(name: &str) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    with_chaos_system!(
        name,
        |S| op_fault_bodies::<S>(),
        else anyhow::bail!("the controller has no support for system {name:?}")
    )
}

/// The controller's side of system `name`, if this build has one.
pub fn info(name: &str) -> Option<ChaosInfo> {
    with_chaos_system!(name, |S| Some(ChaosInfo::of::<S>()), else None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_system_has_a_controller_side_and_back() {
        for name in faultline_node::system::SYSTEMS {
            let i = info(name).unwrap_or_else(|| panic!("{name} has no controller side"));
            assert_eq!(i.name, *name);
            assert!(!i.mix.is_empty(), "{name} has an empty mix");
            assert!(i.mix.iter().all(|m| m.weight >= 0.0));
            assert!(i.mix.iter().any(|m| m.weight > 0.0));
        }
        assert!(info("no-such-system").is_none());
    }
}
