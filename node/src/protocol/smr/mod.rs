//! State machine replication of the vaccine availability database (seed
//! 001), built to the design in `docs/smr.md` (issue 8): clients and
//! replicas are sources of one order by `(Lamport timestamp, source id)`;
//! a replica executes an entry once it is stable (Schneider), held by every
//! replica it does not suspect, and inside its source's stream; joins and
//! expulsions are entries of the order, issued by the coordinator; a
//! restarted replica is a new source that is admitted and takes a snapshot.
//!
//! The cores are [`db`] (the state machine), [`order`] (the rules),
//! [`replica`] and [`client`]; [`node`] puts them behind the runtime's
//! `Core`, and [`exports`] behind the system seam.

mod api;
pub mod client;
mod config;
pub mod db;
mod exports;
mod loadgen;
mod node;
pub mod order;
pub mod replica;
pub mod simulation;
mod verbs;

pub use api::{SiteRow, SmrState, SourceCount};
pub use config::SmrSection;
pub use exports::Smr;
pub use node::{Record, Reply, Request, SmrNode};

use crate::protocol::NodeId;
use serde::{Deserialize, Serialize};

/// Deliberately broken behaviours, switched on from the cluster file, so the
/// checks can be shown to catch real bugs. All off in normal runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bugs {
    /// Rule 1 (Schneider's stability) is skipped for requests: a replica
    /// executes the smallest request it holds although a smaller one may
    /// still arrive. Replicas diverge (prefix, replay, linearizability).
    pub execute_before_stable: bool,
    /// One replica (the middle one of the file: r2 of three) applies an
    /// `Admit` when it receives it, not at its position in the order: its
    /// log differs from the others' (the seed's non-atomic join).
    pub join_out_of_order: bool,
    /// Nulls do not count in rule 1 (the seed's stability set under load):
    /// every replica stalls while a member source is idle (liveness).
    pub ignore_nulls: bool,
}

impl Bugs {
    /// The planted bugs' names, derived from the fields.
    pub fn names() -> Vec<String> {
        crate::system::bug_names_of::<Bugs>()
    }

    pub fn any(&self) -> bool {
        *self != Bugs::default()
    }
}

/// Parameters of an smr cluster, shared by every node.
#[derive(Clone, Debug)]
pub struct Params {
    /// The replicas, in the cluster file's order (1 to 7).
    pub replicas: Vec<NodeId>,
    /// The clients of the file (more may not join: a node's role is fixed).
    pub clients: Vec<NodeId>,
    pub timing: replica::Timing,
    /// An operation not answered by then answers unknown.
    pub op_deadline_us: u64,
    /// Executed entries a replica keeps (the newest), for `/state`, the
    /// checks and a snapshot's log tail.
    pub log_keep: usize,
    pub bugs: Bugs,
}

impl Params {
    pub fn with_defaults(replicas: Vec<NodeId>, clients: Vec<NodeId>) -> Self {
        Params {
            replicas,
            clients,
            timing: replica::Timing::default(),
            op_deadline_us: 5_000_000,
            log_keep: 100_000,
            bugs: Bugs::default(),
        }
    }

    pub fn is_replica(&self, id: &str) -> bool {
        self.replicas.iter().any(|r| r == id)
    }
}
