//! The primary/standby bank (seed 003), done so that no acknowledged
//! operation is lost or applied twice and at most one server acknowledges
//! writes at a time.
//!
//! Two servers hold the accounts. The primary of an epoch orders writes into
//! a log (a write's position is the seed's action id), makes each durable,
//! ships it to the standby and acknowledges it only when the standby has it
//! durably, or alone in a *degraded* epoch whose only member is itself.
//! Every request carries a client-chosen request id; the outcome of recent
//! ids is part of the replicated state, so a retry after failover returns
//! the first outcome.
//!
//! Epochs change only through a round of single-decree Paxos whose acceptors
//! are the client nodes (the witnesses, Cheap Paxos's auxiliary acceptors):
//! with two servers a partition between them is indistinguishable from a
//! crash, and only a third party can say which of them goes on. A server may
//! propose an epoch only if it was a member of the newest accepted one, so a
//! server that missed writes acknowledged alone can never take over. Heartbeats
//! and the lease only decide *when* to try; safety does not depend on clocks.
//! The argument is in `docs/standby.md`.

mod api;
pub mod bank;
mod client;
mod config;
mod exports;
mod loadgen;
mod messages;
mod node;
mod server;
pub mod simulation;
mod verbs;

pub use api::{AccountBalance, StandbyState};
pub use bank::{Bank, SEED_BALANCES};
pub use config::StandbySection;
pub use exports::Standby;
pub use messages::*;
pub use node::StandbyNode;

use crate::protocol::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An account number, as in the seed's balance file.
pub type AccountId = u64;
/// A balance in whole units. Signed so that a bug that overdraws shows up as
/// a negative number (the checks look for one) instead of wrapping.
pub type Balance = i64;

/// The largest amount one withdrawal or deposit may move (10^12): far from
/// overflow, and a clear error instead of a wrapped balance.
pub const MAX_AMOUNT: u64 = 1_000_000_000_000;

/// An epoch: who is primary and whether a standby is a member. A write is
/// acknowledged in epoch `n` by its primary only when every member has it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch {
    pub n: u64,
    pub primary: NodeId,
    /// `None`: the primary is alone and acknowledges by itself (degraded).
    pub standby: Option<NodeId>,
}

impl Epoch {
    pub fn is_member(&self, id: &str) -> bool {
        self.primary == id || self.standby.as_deref() == Some(id)
    }
}

/// Deliberately broken behaviours, switched on from the cluster file, so the
/// checks can be shown to catch real bugs. All off in normal runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bugs {
    /// A server that takes over forgets the request ids it learned by
    /// replication, so a client's retry after failover is applied again
    /// (the seed's own worked example: one withdrawal debited twice).
    pub no_dedup_on_failover: bool,
    /// The standby takes over as soon as one heartbeat is late, without
    /// asking the witnesses, and keeps applying the old primary's stream:
    /// two primaries acknowledge writes at once (the seed's split brain).
    pub takeover_on_missed_heartbeat: bool,
    /// The primary acknowledges a write once it is durable locally, before
    /// the standby has it: a failover loses acknowledged writes.
    pub ack_before_standby: bool,
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

/// Parameters of a standby cluster, shared by every node.
#[derive(Clone, Debug)]
pub struct Params {
    /// The two servers; `servers[0]` is the primary of epoch 0.
    pub servers: [NodeId; 2],
    /// The client nodes; they are also the witnesses of epoch changes.
    pub clients: Vec<NodeId>,
    /// Every account and its balance at start.
    pub accounts: BTreeMap<AccountId, Balance>,
    /// The primary sends a heartbeat (or entries) this often.
    pub heartbeat_us: u64,
    /// A standby that hears nothing from the primary this long, or a primary
    /// whose standby acknowledges nothing this long, asks the witnesses for
    /// a new epoch.
    pub lease_us: u64,
    /// A client resends an unanswered request (to the other server) after this.
    pub retransmit_us: u64,
    /// An operation that has not finished by then answers unknown.
    pub op_deadline_us: u64,
    /// Request outcomes kept per client; a retry of an older one is refused
    /// as expired (its outcome unknown) instead of being applied again.
    pub dedup_window: u64,
    /// Log entries a server keeps (the newest), for catch-up and the checks.
    pub log_keep: usize,
    /// A snapshot (state transfer) is trimmed to fit this many bytes.
    pub snapshot_bytes: usize,
    pub bugs: Bugs,
}

impl Params {
    pub fn with_defaults(servers: [NodeId; 2], clients: Vec<NodeId>) -> Self {
        Params {
            servers,
            clients,
            accounts: bank::seed_accounts(),
            heartbeat_us: 40_000,
            lease_us: 200_000,
            retransmit_us: 100_000,
            op_deadline_us: 3_000_000,
            dedup_window: 1024,
            log_keep: 100_000,
            snapshot_bytes: 768 * 1024,
            bugs: Bugs::default(),
        }
    }

    /// Epoch 0: the first server is primary, the second its standby.
    pub fn initial_epoch(&self) -> Epoch {
        Epoch {
            n: 0,
            primary: self.servers[0].clone(),
            standby: Some(self.servers[1].clone()),
        }
    }

    pub fn is_server(&self, id: &str) -> bool {
        self.servers.iter().any(|s| s == id)
    }

    /// The other server.
    pub fn peer_of(&self, id: &str) -> &NodeId {
        if self.servers[0] == id {
            &self.servers[1]
        } else {
            &self.servers[0]
        }
    }

    /// Witnesses that make a majority.
    pub fn majority(&self) -> usize {
        self.clients.len() / 2 + 1
    }
}
