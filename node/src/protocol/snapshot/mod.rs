//! The bitcake network (seed 004), built to the design in
//! `docs/snapshot.md` (issue 11): money moves between neighbours on
//! non-FIFO channels, and Lai-Yang, Spezialetti-Kearns and Li snapshots
//! record it.
//!
//! The cores are [`graph`] (the neighbour graph and its routing),
//! [`ledger`] (money, histories, cut records and the global snapshot),
//! [`wave`] (a node's part in one epoch: recording rule, markers and
//! answers, the region's tree, borders, convergecast) and [`rounds`] (the
//! masters' exchange); [`node`] puts them behind the runtime's `Core`,
//! [`audit`] checks snapshots against the ground truth of the nodes'
//! histories, and [`exports`] puts the system behind the seam.

mod api;
pub mod audit;
mod config;
mod exports;
pub mod graph;
pub mod ledger;
mod loadgen;
pub mod node;
pub mod rounds;
pub mod script;
pub mod simulation;
mod verbs;
pub mod wave;

pub use api::{Collected, Event, SnapshotState};
pub use config::SnapshotSection;
pub use exports::Snapshot;
pub use node::{Msg, Reply, SnapNode};
pub use script::Command as Request;

use graph::{Graph, NodeId};
use ledger::Amount;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Deliberately broken behaviours, switched on from the cluster file, so the
/// checks can be shown to catch what a snapshot's own total cannot. All off
/// in normal runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bugs {
    /// The seed's bug: a node that has recorded a snapshot stops debiting
    /// (and recording as given) what it sends, while the receiver still
    /// credits it. Money is minted; every snapshot still adds up to the
    /// total, by construction.
    pub red_sender_mints: bool,
    /// A node handles the first post-snapshot transaction before it
    /// records: the cut is inconsistent.
    pub record_after_handling: bool,
    /// Li's reset is forgotten for one history: after a cut, the node keeps
    /// reporting what it got from its first neighbour since the start, not
    /// since its last cut, so a repeated snapshot counts it twice.
    pub stale_differential: bool,
}

impl Bugs {
    pub fn names() -> Vec<String> {
        crate::system::bug_names_of::<Bugs>()
    }
}

/// Parameters of a snapshot cluster, shared by every node.
#[derive(Clone, Debug)]
pub struct Params {
    pub graph: Graph,
    /// Bitcakes every node starts with.
    pub initial: Amount,
    /// The nodes that may start a snapshot.
    pub initiators: Vec<NodeId>,
    /// The commands each node runs from its start (the seed's
    /// `servent{i}_in.txt`), by node.
    pub scripts: BTreeMap<NodeId, Vec<script::Command>>,
    /// Transactions a `burst` sends to each neighbour (the seed's 10
    /// threads x 5 rounds).
    pub burst: u32,
    /// A burst's amounts are 1 to this.
    pub burst_max: Amount,
    /// How many transaction events a node keeps for `/state` (the checks'
    /// ground truth); past it the oldest go and the checks say unknown.
    pub events_keep: usize,
    pub bugs: Bugs,
}

impl Params {
    pub fn new(graph: Graph, initiators: Vec<NodeId>) -> Self {
        Params {
            graph,
            initial: 1_000,
            initiators,
            scripts: BTreeMap::new(),
            burst: 50,
            burst_max: 10,
            events_keep: 1_000_000,
            bugs: Bugs::default(),
        }
    }

    pub fn is_initiator(&self, id: &str) -> bool {
        self.initiators.iter().any(|i| i == id)
    }

    /// Money in the system: nodes x initial.
    pub fn total(&self) -> i64 {
        (self.graph.len() as u64 * self.initial) as i64
    }
}
