//! The system seam: everything a system supplies beyond its protocol core so
//! that the cluster file, the runtime, the admin API, the metrics, the load
//! generator and the client verbs can run it without naming it, and the one
//! registry that maps a cluster file's `system:` to its implementation.
//!
//! Adding a system is a folder under `protocol/` implementing [`System`] and
//! one line in [`SYSTEMS`] and [`with_system!`] (see docs/adding-a-system.md).

use crate::api::{LoadSpec, LoadStats, NodeState, Outcome};
use crate::cli::{Client, Output};
use crate::config::{Cluster, ConfigError, Ctx};
use crate::protocol::{Core, NodeId};
use crate::runtime::Handle;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

/// What a system's links promise about message order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channels {
    /// Messages from one node to another arrive in send order (one QUIC
    /// stream per direction); the simulator keeps per-link order too. The
    /// order holds within a connection: a reconnect can lose the batch in
    /// flight, and the message fault layer's jittered delays and reorder
    /// rules break it on purpose (outside a FIFO system's model). A system
    /// that must see every message in order numbers them.
    Fifo,
    /// Messages may overtake each other; the simulator reorders them.
    NonFifo,
}

/// One system (seed) as the generic code sees it. The associated types are
/// the system's own; the functions are the seam's only entry points.
pub trait System: Sized + Send + Sync + 'static {
    /// The name written in the cluster file's `system:` and in its section key.
    const NAME: &'static str;
    /// Roles a node may have in the cluster file.
    const ROLES: &'static [&'static str];
    /// The roles whose nodes take client operations (the workload drives
    /// them); the other roles are the servers that fault selectors such as
    /// `f_servers` pick from.
    const CLIENT_ROLES: &'static [&'static str];
    const CHANNELS: Channels;
    /// Whether nodes fsync their log before acknowledging by default (a
    /// system whose promise is durability across power loss says yes; the
    /// node's `--fsync` flag overrides it either way).
    const FSYNC: bool = false;

    /// A client request, as `/ops` takes it (JSON) and the core handles it.
    type Request: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// A reply, as `/ops` returns it and the history keeps it.
    type Reply: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The sans-IO core every node of the system runs, whatever its role.
    type Core: Core<Request = Self::Request, Reply = Self::Reply> + Send + 'static;
    /// The system's section of the cluster file (`<NAME>:`), absent = default.
    type Section: DeserializeOwned + Default + Debug;
    /// The validated parameters every node shares, built from the section.
    type Params: Debug + Send + Sync + 'static;
    /// The system's Prometheus gauges, registered once per process.
    type Gauges: Send + Sync + 'static;
    /// The system's client verbs (clap subcommands), one-shot or at the prompt.
    type Verb: clap::Subcommand + Debug + Send;

    /// Validates the section against the cluster (nodes and roles are
    /// already checked); errors name the section's field and line.
    fn params(
        ctx: &Ctx,
        cluster: &Cluster,
        section: Self::Section,
    ) -> Result<Self::Params, ConfigError>;

    /// How long a client operation may run before it answers failed or
    /// unknown; HTTP clients of `/ops` wait longer than this.
    fn op_deadline(params: &Self::Params) -> std::time::Duration;

    /// Lines for `faultline-node check`, each starting with two spaces.
    fn describe(params: &Self::Params) -> String;

    /// The core of node `id`, before recovery from its durable log.
    fn core(id: &str, params: &Arc<Self::Params>) -> Self::Core;

    /// The node's current role (it may differ from the file's after a
    /// reconfiguration).
    fn role(core: &Self::Core) -> &'static str;

    /// Whether the node is ready for the workload (`/state`'s `ready`).
    fn is_ready(core: &Self::Core) -> bool;

    /// The request's kind, the `kind` label of metrics and histories.
    fn request_kind(request: &Self::Request) -> &'static str;

    /// How the operation ended; never `Pending`.
    fn outcome(reply: &Self::Reply) -> Outcome;

    /// The names of the system's planted bugs (cluster file `bugs:` keys).
    fn bug_names() -> Vec<String>;

    fn gauges(registry: &prometheus::Registry) -> prometheus::Result<Self::Gauges>;

    /// Sets the gauges from the core's state; `nodes` is the cluster file's
    /// node list, for gauges that encode a node as its index.
    fn export(core: &Self::Core, gauges: &Self::Gauges, nodes: &[NodeId]);

    /// A closed-loop load run of the system's main operation from client
    /// node `handle.id` (`POST /load`, `faultline-node client ... load`).
    fn load(handle: Arc<Handle<Self>>, spec: LoadSpec) -> impl Future<Output = LoadStats> + Send;

    /// Runs one of the system's client verbs.
    fn verb(
        client: &Client<Self>,
        verb: Self::Verb,
    ) -> impl Future<Output = anyhow::Result<Output>>;

    /// The verb a client runs when started without one (`None`: the generic
    /// prompt, one verb per line). The bank answers with the seed's menu.
    fn interactive() -> Option<Self::Verb> {
        None
    }

    /// One line about a node's state for the `status` verb (after id and role).
    fn status_line(state: &NodeState<<Self::Core as Core>::State>) -> String;
}

/// The field names of a system's `Bugs` struct (its planted bugs, as the
/// cluster file's `bugs:` keys), derived from the fields through serde so the
/// list cannot drift from them.
pub fn bug_names_of<B: Serialize + Default>() -> Vec<String> {
    match serde_json::to_value(B::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// What generic code may know of a system without its types.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SystemInfo {
    pub name: &'static str,
    pub roles: &'static [&'static str],
    pub client_roles: &'static [&'static str],
    pub message_kinds: &'static [&'static str],
    pub channels: Channels,
    pub bugs: Vec<String>,
}

impl SystemInfo {
    pub fn of<S: System>() -> Self {
        SystemInfo {
            name: S::NAME,
            roles: S::ROLES,
            client_roles: S::CLIENT_ROLES,
            message_kinds: <<S::Core as Core>::Msg as crate::protocol::MessageKind>::KINDS,
            channels: S::CHANNELS,
            bugs: S::bug_names(),
        }
    }
}

/// Every system this build runs, by cluster-file name.
pub const SYSTEMS: &[&str] = &["tokens", "standby", "smr", "snapshot", "replication"];

/// Runs `$body` with `$S` bound to the system named `$name`, or `$other`
/// when no system has that name. The only `match` on a system's name.
#[macro_export]
macro_rules! with_system {
    ($name:expr, |$S:ident| $body:expr, else $other:expr) => {
        match $name {
            "tokens" => {
                type $S = $crate::protocol::tokens::Tokens;
                $body
            }
            "standby" => {
                type $S = $crate::protocol::standby::Standby;
                $body
            }
            "smr" => {
                type $S = $crate::protocol::smr::Smr;
                $body
            }
            "snapshot" => {
                type $S = $crate::protocol::snapshot::Snapshot;
                $body
            }
            "replication" => {
                type $S = $crate::protocol::replication::Replication;
                $body
            }
            _ => $other,
        }
    };
}

/// The system named `name`, if this build has it.
pub fn info(name: &str) -> Option<SystemInfo> {
    with_system!(name, |S| Some(SystemInfo::of::<S>()), else None)
}

/// A node's role and its `status` line (after id and role), from its
/// `/state` JSON; `None` if the state is not one of system `name`'s.
pub fn status_line(name: &str, state: serde_json::Value) -> Option<(String, String)> {
    with_system!(
        name,
        |S| {
            let s: NodeState<<<S as System>::Core as Core>::State> =
                serde_json::from_value(state).ok()?;
            Some((s.role.clone(), <S as System>::status_line(&s)))
        },
        else None
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_name_dispatches_to_its_system() {
        for name in SYSTEMS {
            let info = info(name)
                .unwrap_or_else(|| panic!("{name} is in SYSTEMS but not in with_system!"));
            assert_eq!(info.name, *name);
            assert!(!info.roles.is_empty(), "{name} has no roles");
            assert!(
                !info.message_kinds.is_empty(),
                "{name} has no message kinds"
            );
        }
        assert!(info("no-such-system").is_none());
    }
}
