//! What a replication node shows at `/state`, per role: a replica's view,
//! readiness, store and the requests it applied (the exactly-once and
//! agreement checks read them); an LFD's health and missed heartbeats; the
//! GFD's membership; the RM's view and when each view was made (detection
//! times); a client's view, requests waiting and retries.

use super::node::{Mode, ReplNode, ReplicationNode};
use super::store::{RequestId, Store};
use super::view::View;
use crate::protocol::{NodeId, Time};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LfdState {
    pub replica: NodeId,
    pub alive: bool,
    pub missed: u64,
    /// When it noticed each death, µs on its clock.
    pub deaths: Vec<Time>,
}

/// A replica's store as `/state` shows it: the values and its log of
/// applied requests (the outcome table stays inside: its integer keys
/// cannot cross the flattened `/state` object).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreView {
    pub counters: std::collections::BTreeMap<String, i64>,
    pub registers: std::collections::BTreeMap<String, String>,
    pub history: Vec<RequestId>,
    /// Entries of `history` forgotten from its front (it keeps the newest).
    #[serde(default)]
    pub history_dropped: u64,
}

impl From<&Store> for StoreView {
    fn from(s: &Store) -> Self {
        StoreView {
            counters: s.counters.clone(),
            registers: s.registers.clone(),
            history: s.history.clone(),
            history_dropped: s.history_dropped,
        }
    }
}

/// A view the RM made, and when (µs on the RM's clock).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewMade {
    pub view: View,
    pub at: Time,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationState {
    /// `passive` or `active`.
    pub mode: String,
    pub view: Option<View>,
    /// Replica: has the state (a restarted one waits for a transfer).
    /// Not `ready`: `/state` has that key already (ready for the workload).
    pub has_state: bool,
    /// Replica: the last entry applied.
    pub executed: u64,
    /// Replica: entries logged and not applied.
    pub log_len: usize,
    pub store: Option<StoreView>,
    /// Replica: requests applied (not answered from the outcome table).
    pub applied: Vec<RequestId>,
    /// Replica (passive): log entries replayed at promotion.
    pub replayed: u64,
    /// GFD: replicas alive, in join order.
    pub members: Vec<NodeId>,
    pub lfd: Option<LfdState>,
    /// RM: the views it made since it started, with when (µs on its
    /// clock: `clock_origin_us` places them in Unix time).
    pub views_made: Vec<ViewMade>,
    /// Client: requests waiting, and retries sent.
    pub pending_ops: usize,
    pub retries: u64,
}

pub(super) fn state(n: &ReplicationNode) -> ReplicationState {
    let mode = if n.params().active {
        "active"
    } else {
        "passive"
    };
    let mut s = ReplicationState {
        mode: mode.into(),
        ..ReplicationState::default()
    };
    match &n.role {
        ReplNode::Replica { mode, .. } => match mode {
            Mode::Passive(x) => {
                s.view = Some(x.view.clone());
                s.has_state = x.ready;
                s.executed = x.index;
                s.log_len = x.log_len();
                s.store = Some((&x.store).into());
                s.applied = x.applied.clone();
                s.replayed = x.replayed;
            }
            Mode::Active(a) => {
                s.view = Some(a.view.clone());
                s.has_state = a.ready;
                s.executed = a.executed;
                s.store = Some((&a.store).into());
                s.applied = a.applied.clone();
            }
        },
        ReplNode::Lfd(l) => {
            s.lfd = Some(LfdState {
                replica: l.replica.clone(),
                alive: l.alive,
                missed: l.missed,
                deaths: l.deaths.clone(),
            })
        }
        ReplNode::Gfd { gfd, .. } => s.members = gfd.membership.members.clone(),
        ReplNode::Rm { rm, .. } => {
            s.view = Some(rm.view.clone());
            s.views_made = rm
                .made
                .iter()
                .map(|(view, at)| ViewMade {
                    view: view.clone(),
                    at: *at,
                })
                .collect();
        }
        ReplNode::Client { client, .. } => {
            s.view = Some(client.view.clone());
            s.pending_ops = client.pending();
            s.retries = client.retries;
        }
    }
    s
}
