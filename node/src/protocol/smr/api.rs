//! The smr node's state as `/state` serves it (beside the generic id and
//! role): read by the `status` verb and by the controller's checks (every
//! replica's executed log for the prefix and replay checks, its database).

use super::db::Availability;
use super::replica::Executed;
use super::SmrNode;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmrState {
    /// `replica`, `joining` (a restarted replica waiting for its snapshot),
    /// `client`, `hello` (a client not yet admitted) or `left` (quit).
    pub mode: String,
    /// The node's source in the order now: `node#incarnation`.
    pub source: String,
    pub incarnation: u64,
    /// The Lamport clock.
    pub clock: u64,
    /// Replica: the index of the last executed entry.
    pub index: u64,
    /// Replica: the coordinator it follows.
    pub coordinator: Option<String>,
    /// Replica: the sources in its configuration.
    pub members: Vec<String>,
    /// Replica: the replica sources it suspects.
    pub suspected: Vec<String>,
    /// Replica: held entries not yet executed, per source (nulls counted).
    pub held: Vec<SourceCount>,
    /// Replica: the newest executed entries, oldest first.
    pub log: Option<Vec<Executed>>,
    /// Replica: the database, in name order.
    pub sites: Option<Vec<SiteRow>>,
    pub nulls_sent: u64,
    /// Client: later replies that differed from the first.
    pub mismatches: u64,
    /// Replica: snapshots whose log tail disagreed with its own.
    pub log_conflicts: u64,
    /// Client: operations waiting for an answer.
    pub pending_ops: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCount {
    pub source: String,
    pub count: usize,
}

/// One site as `list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRow {
    pub name: String,
    pub zip: String,
    pub availability: Availability,
}

impl SmrState {
    pub fn of(node: &SmrNode) -> Self {
        match node {
            SmrNode::Replica(r) => SmrState {
                mode: if r.is_joining() { "joining" } else { "replica" }.into(),
                source: r.me().to_string(),
                incarnation: r.me().incarnation,
                clock: r.clock(),
                index: r.index,
                coordinator: (!r.is_joining()).then(|| r.coordinator().to_string()),
                members: r.order.members().iter().map(|s| s.to_string()).collect(),
                suspected: r.suspected().iter().map(|s| s.to_string()).collect(),
                held: r
                    .order
                    .pending()
                    .into_iter()
                    .map(|(s, count)| SourceCount {
                        source: s.to_string(),
                        count,
                    })
                    .collect(),
                log: Some(r.log.iter().cloned().collect()),
                sites: Some(
                    r.db()
                        .sites
                        .iter()
                        .map(|(name, s)| SiteRow {
                            name: name.clone(),
                            zip: s.zip.clone(),
                            availability: s.availability,
                        })
                        .collect(),
                ),
                nulls_sent: r.nulls_sent,
                mismatches: 0,
                log_conflicts: r.log_conflicts,
                pending_ops: 0,
            },
            SmrNode::Client(c) => SmrState {
                mode: if c.core.has_left() {
                    "left"
                } else if c.core.is_member() {
                    "client"
                } else {
                    "hello"
                }
                .into(),
                source: c.core.source().to_string(),
                incarnation: c.core.source().incarnation,
                clock: c.core.clock(),
                index: 0,
                coordinator: None,
                members: Vec::new(),
                suspected: Vec::new(),
                held: Vec::new(),
                log: None,
                sites: None,
                nulls_sent: c.core.nulls_sent,
                mismatches: c.core.mismatches,
                log_conflicts: 0,
                pending_ops: c.pending(),
            },
        }
    }
}
