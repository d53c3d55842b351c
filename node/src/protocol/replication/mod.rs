//! Active and passive replication with fault detectors and a replication
//! manager (seed 002), built to the design in `docs/replication.md`
//! (issue 10): detection ([`detect`]: the LFD's heartbeats with a timeout
//! that fires, the GFD's membership that drops a silent LFD), views
//! ([`view`]: the RM's numbered views, never reused), the keyed store with
//! its outcome table ([`store`]), passive mode's replica ([`passive`]),
//! active mode's ([`active`]: a sequencer's total order, stable before
//! execution, carried across view changes by a sync), the client
//! ([`client`]); [`node`] puts them behind the runtime's `Core`.

pub mod active;
mod api;
pub mod client;
mod config;
pub mod detect;
mod exports;
mod loadgen;
pub mod node;
pub mod passive;
pub mod simulation;
pub mod store;
mod verbs;
pub mod view;

pub use api::{LfdState, ReplicationState, StoreView, ViewMade};
pub use config::ReplicationSection;
pub use exports::Replication;
pub use node::{Msg, Record, ReplicationNode, Reply};
pub use store::Op as Request;

use crate::protocol::{NodeId, Time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Deliberately broken behaviours, switched on from the cluster file, so the
/// checks can be shown to catch real bugs. All off in normal runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bugs {
    /// Passive: a promoted backup starts without the outcome table, so a
    /// client's retry of a request the old primary executed is applied
    /// again (the seed's double apply).
    pub forget_outcomes_on_promotion: bool,
    /// Passive: backups acknowledge a primary of any view, so a replaced
    /// primary (falsely suspected) still acknowledges: two primaries.
    pub unfenced_promotion: bool,
    /// Active: members execute requests in arrival order, not the
    /// sequencer's (the seed's missing total order).
    pub arrival_order: bool,
}

impl Bugs {
    pub fn names() -> Vec<String> {
        crate::system::bug_names_of::<Bugs>()
    }
}

/// Timers, microseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    pub heartbeat: Time,
    pub heartbeat_timeout: Time,
    pub lfd_timeout: Time,
    pub checkpoint: Time,
    pub retransmit: Time,
    pub op_deadline: Time,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: 50_000,
            heartbeat_timeout: 150_000,
            lfd_timeout: 200_000,
            checkpoint: 500_000,
            retransmit: 200_000,
            op_deadline: 5_000_000,
        }
    }
}

/// Parameters of a replication cluster, shared by every node.
#[derive(Clone, Debug)]
pub struct Params {
    /// Active mode (else passive).
    pub active: bool,
    pub replicas: Vec<NodeId>,
    /// Each LFD and the replica it watches.
    pub pairs: BTreeMap<NodeId, NodeId>,
    pub gfd: NodeId,
    pub rm: NodeId,
    pub clients: Vec<NodeId>,
    pub timing: Timing,
    pub bugs: Bugs,
}

impl Params {
    /// Replicas r1..rn with LFDs l1..ln, GFD g1, RM m1, clients c1..ck.
    pub fn standard(active: bool, replicas: usize, clients: usize) -> Self {
        Params {
            active,
            replicas: (1..=replicas).map(|i| format!("r{i}")).collect(),
            pairs: (1..=replicas)
                .map(|i| (format!("l{i}"), format!("r{i}")))
                .collect(),
            gfd: "g1".into(),
            rm: "m1".into(),
            clients: (1..=clients).map(|i| format!("c{i}")).collect(),
            timing: Timing::default(),
            bugs: Bugs::default(),
        }
    }

    /// Everyone a view goes to.
    pub fn audience(&self) -> Vec<NodeId> {
        self.replicas
            .iter()
            .chain(self.clients.iter())
            .cloned()
            .collect()
    }
}
