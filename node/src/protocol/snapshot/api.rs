//! What a bitcake node shows at `/state`: its money, its place in the
//! latest snapshot, the snapshots it knows (the global results, with the
//! masters' rounds), its protocol messages per epoch by kind, and its
//! transaction events: the ground truth the controller checks every
//! snapshot against.

use super::graph::NodeId;
use super::ledger::{Amount, Global};
use super::wave::Epoch;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One transaction as one end saw it. A transaction is one hop: routed
/// money is a transaction per hop. `(sender, seq)` names it at both ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `true` at the sender, `false` at the receiver.
    pub sent: bool,
    /// The other end.
    pub peer: NodeId,
    /// The sender's number for it (per sender, from 1).
    pub seq: u64,
    pub amount: Amount,
    /// The epoch this end had recorded when it sent it, or (receiving)
    /// when it handled it, after any recording the message caused. The
    /// transaction is before this end's cut of epoch `e` iff `epoch < e`.
    pub epoch: Epoch,
    /// Microseconds on the node's clock.
    pub at_us: u64,
}

/// A global snapshot as a node knows it: assembled by it as a master, or
/// told by one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collected {
    pub epoch: Epoch,
    /// The master that assembled it.
    pub master: NodeId,
    pub global: Global,
    /// At the master: per round of the masters' exchange, how many nodes'
    /// records it knew after it (the seed asks for them printed).
    #[serde(default)]
    pub rounds: Vec<(u64, usize)>,
    /// At the master: the masters of the regions it bordered.
    #[serde(default)]
    pub neighbour_regions: Vec<NodeId>,
    /// Microseconds from the start to the collection, at the master.
    #[serde(default)]
    pub took_us: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotState {
    pub balance: Amount,
    pub initiator: bool,
    /// The epoch recorded last (0: none).
    pub epoch: Epoch,
    /// Its region (the master's id) and this node's parent in the region's
    /// spanning tree (none at the master).
    pub region: Option<NodeId>,
    pub parent: Option<NodeId>,
    /// Epochs this node started as an initiator.
    pub started: Vec<Epoch>,
    /// The snapshots this node knows, by epoch.
    pub collected: Vec<Collected>,
    /// Protocol messages this node sent per epoch, by kind (`marker`,
    /// `answer`, `up`, `round`, `collected`). A list, not a map: `/state`
    /// flattens this struct, and serde cannot read integer map keys back
    /// through a flatten.
    pub messages: Vec<(Epoch, BTreeMap<String, u64>)>,
    pub transactions_sent: u64,
    pub transactions_got: u64,
    /// Transactions received twice (the fault layer duplicates): ignored.
    pub duplicates: u64,
    /// Commands refused (bad input, a snapshot asked of a non-initiator or
    /// while the previous one runs).
    pub refused: u64,
    /// Events dropped past `events_keep` (then the checks say unknown).
    pub events_dropped: u64,
    pub events: Vec<Event>,
}
