//! Token payments under omission faults (seed 000), done as a quorum register
//! per token with reconfiguration.
//!
//! Every token is an ABD-style register whose value is `(tag, owner)`. A tag is
//! `(version, writer, nonce)` ordered lexicographically, so two racing writes of
//! one version can never leave that version with two owners: they carry
//! different tags and every server keeps the larger. Only the owner of a token
//! may write its next version, which turns a register (that cannot do
//! compare-and-set) into a correct single-writer chain: a client serialises its
//! own operations per token and the baton passes with the value.
//!
//! Servers form a configuration `(epoch, servers)`. `transform` moves a node
//! between roles by choosing the next configuration with single-decree Paxos
//! among the old servers; a promise freezes the old configuration, the state
//! of a majority is carried to the new servers, and only then do they serve.
//! The safety argument is in `docs/tokens.md`.

mod api;
mod client;
mod config;
mod exports;
pub mod invariants;
mod loadgen;
mod messages;
mod node;
mod reconfig;
pub mod simulation;
mod verbs;

pub use api::{TokenRow, TokensState};
pub use config::TokensSection;
pub use exports::Tokens;
pub use messages::*;
pub use node::TokensNode;

use crate::protocol::NodeId;
use serde::{Deserialize, Serialize};

pub type TokenId = u32;

/// Orders writes of one token. `writer` breaks ties between versions written
/// concurrently; `nonce` (monotonic per writer, persisted) breaks ties between
/// a writer's own retried writes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tag {
    pub version: u64,
    pub writer: NodeId,
    pub nonce: u64,
}

impl Tag {
    pub fn initial() -> Self {
        Tag {
            version: 1,
            writer: String::new(),
            nonce: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenState {
    pub tag: Tag,
    pub owner: NodeId,
}

/// A configuration: which nodes are servers in which epoch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Config {
    pub epoch: u64,
    /// Sorted, no duplicates.
    pub servers: Vec<NodeId>,
}

impl Config {
    pub fn majority(&self) -> usize {
        self.servers.len() / 2 + 1
    }
    pub fn is_server(&self, id: &str) -> bool {
        self.servers.iter().any(|s| s == id)
    }
}

/// Deliberately broken behaviours, switched on from the cluster file, so the
/// checkers can be shown to catch real bugs. All off in normal runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bugs {
    /// Count an error reply as an acknowledgement (the seed's bug).
    pub errors_as_acks: bool,
    /// Return a read without writing back a value seen at fewer than a majority.
    pub read_without_write_back: bool,
    /// Pays skip the ownership check: the client pays whatever it read and
    /// servers do not verify the payer owned the token.
    pub skip_owner_check: bool,
    /// Caches a gettokens read's own tags when the read phase ends instead of
    /// when the whole read (write-back included) ends, so a pay that starts
    /// and ends during the write-back leaves a stale tag in the cache and the
    /// next pay writes the same version again (the double pay of issue 6);
    /// servers accept a second write of a version (the code before the fix).
    pub stale_tag_cache: bool,
}

impl Bugs {
    /// The planted bugs' names, as written in a cluster or scenario file
    /// (derived from the fields, so the list cannot drift from them).
    pub fn names() -> Vec<String> {
        crate::system::bug_names_of::<Bugs>()
    }

    /// Switches on the planted bug `name`; an unknown name is an error that
    /// lists the known ones.
    pub fn enable(&mut self, name: &str) -> Result<(), String> {
        let unknown = || {
            format!(
                "{name:?} is not a planted bug (known: {})",
                Bugs::names().join(", ")
            )
        };
        let mut v = serde_json::to_value(&*self).map_err(|e| e.to_string())?;
        let slot = v
            .as_object_mut()
            .and_then(|m| m.get_mut(name))
            .ok_or_else(unknown)?;
        *slot = serde_json::Value::Bool(true);
        *self = serde_json::from_value(v).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Parameters of a token cluster, shared by every node.
#[derive(Clone, Debug)]
pub struct Params {
    /// Every node in the cluster file, in file order.
    pub nodes: Vec<NodeId>,
    /// The servers of epoch 0.
    pub initial_servers: Vec<NodeId>,
    /// Owner of token i at epoch 0.
    pub initial_owners: Vec<NodeId>,
    pub min_servers: usize,
    pub max_servers: usize,
    /// An operation that has not finished by then answers failed or unknown.
    pub op_deadline_us: u64,
    /// First retransmission delay; doubles up to `retransmit_max_us`.
    pub retransmit_us: u64,
    pub retransmit_max_us: u64,
    /// A server frozen by a reconfiguration that stalls this long starts
    /// recovery itself, so a dead coordinator cannot block the cluster.
    pub reconfig_recovery_us: u64,
    pub bugs: Bugs,
}

impl Params {
    pub fn tokens(&self) -> usize {
        self.initial_owners.len()
    }

    /// The seed's default: token i starts at client (i mod clients).
    pub fn round_robin_owners(clients: &[NodeId], tokens: usize) -> Vec<NodeId> {
        if clients.is_empty() {
            return Vec::new();
        }
        (0..tokens)
            .map(|i| clients[i % clients.len()].clone())
            .collect()
    }

    pub fn with_defaults(
        nodes: Vec<NodeId>,
        initial_servers: Vec<NodeId>,
        initial_owners: Vec<NodeId>,
    ) -> Self {
        Params {
            nodes,
            initial_servers,
            initial_owners,
            min_servers: 3,
            max_servers: 7,
            op_deadline_us: 3_000_000,
            retransmit_us: 50_000,
            retransmit_max_us: 800_000,
            reconfig_recovery_us: 5_000_000,
            bugs: Bugs::default(),
        }
    }
}

/// The servers that have not answered the current phase yet.
fn unanswered(servers: &[NodeId], answered: impl Fn(&NodeId) -> bool) -> Vec<NodeId> {
    servers.iter().filter(|s| !answered(s)).cloned().collect()
}
