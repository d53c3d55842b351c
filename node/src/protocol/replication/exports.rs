//! Replication behind the system seam ([`System`]): its roles, channel
//! kind, metrics, and the entry points of its cluster-file section, load
//! generator and client verbs.

use super::node::{Mode, ReplNode};
use super::{
    config, loadgen, verbs, Bugs, Params, ReplicationNode, ReplicationSection, ReplicationState,
    Reply, Request,
};
use crate::api::{LoadSpec, LoadStats, NodeState, Outcome};
use crate::cli::{Client, Output};
use crate::config::{Cluster, ConfigError, Ctx};
use crate::protocol::NodeId;
use crate::runtime::Handle;
use crate::system::{Channels, System};
use prometheus::{Gauge, IntGauge, Registry};
use std::sync::Arc;
use std::time::Duration;

/// Active and passive replication with fault detectors (seed 002).
pub struct Replication;

/// The system's metrics; names and meanings are in README.md.
pub struct ReplicationGauges {
    view: IntGauge,
    primary: IntGauge,
    members: IntGauge,
    ready: IntGauge,
    executed: IntGauge,
    log_len: IntGauge,
    heartbeats: IntGauge,
    missed: IntGauge,
    alive: IntGauge,
    pending_ops: IntGauge,
    retries: IntGauge,
    replayed: IntGauge,
    duplicates: IntGauge,
    checkpoint_age: Gauge,
    detection: Gauge,
}

impl System for Replication {
    const NAME: &'static str = "replication";
    const ROLES: &'static [&'static str] = &["replica", "lfd", "gfd", "rm", "client"];
    const CLIENT_ROLES: &'static [&'static str] = &["client"];
    /// A primary's forwards and a sequencer's orders are numbered and sent
    /// in order; the install of a view precedes its orders.
    const CHANNELS: Channels = Channels::Fifo;

    type Request = Request;
    type Reply = Reply;
    type Core = ReplicationNode;
    type Section = ReplicationSection;
    type Params = Params;
    type Gauges = ReplicationGauges;
    type Verb = verbs::Verb;

    fn params(ctx: &Ctx, cluster: &Cluster, s: ReplicationSection) -> Result<Params, ConfigError> {
        config::params(ctx, cluster, s)
    }

    fn op_deadline(p: &Params) -> Duration {
        Duration::from_micros(p.timing.op_deadline)
    }

    fn describe(p: &Params) -> String {
        config::describe(p)
    }

    fn core(id: &str, p: &Arc<Params>) -> ReplicationNode {
        ReplicationNode::new(id, p)
    }

    fn role(core: &ReplicationNode) -> &'static str {
        core.role_name()
    }

    /// A client once it has a view; a replica once it has the state.
    fn is_ready(core: &ReplicationNode) -> bool {
        match &core.role {
            ReplNode::Client { client, .. } => client.view.number > 0,
            ReplNode::Replica {
                mode: Mode::Passive(x),
                ..
            } => x.ready,
            ReplNode::Replica {
                mode: Mode::Active(a),
                ..
            } => a.ready,
            _ => true,
        }
    }

    fn request_kind(r: &Request) -> &'static str {
        r.kind()
    }

    fn outcome(r: &Reply) -> Outcome {
        r.outcome()
    }

    fn bug_names() -> Vec<String> {
        Bugs::names()
    }

    fn gauges(r: &Registry) -> prometheus::Result<ReplicationGauges> {
        let one = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let seconds = |name: &str, help: &str| -> prometheus::Result<Gauge> {
            let g = Gauge::new(name, help)?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(ReplicationGauges {
            view: one(
                "faultline_replication_view",
                "The view number the node has (RM: made).",
            )?,
            primary: one(
                "faultline_replication_primary",
                "Passive: 1 on the replica that is primary of its view.",
            )?,
            members: one(
                "faultline_replication_members",
                "Members of the node's view (GFD: of its membership).",
            )?,
            ready: one(
                "faultline_replication_ready",
                "Replica: 1 once it has the state.",
            )?,
            executed: one(
                "faultline_replication_executed",
                "Replica: the last entry applied.",
            )?,
            log_len: one(
                "faultline_replication_log_length",
                "Passive replica: entries logged since the last checkpoint.",
            )?,
            heartbeats: one(
                "faultline_replication_heartbeats",
                "LFD: heartbeats sent (a counter).",
            )?,
            missed: one(
                "faultline_replication_missed_heartbeats",
                "LFD: heartbeats whose echo had not come when the next was due (a counter).",
            )?,
            alive: one(
                "faultline_replication_alive",
                "LFD: 1 while its replica echoes.",
            )?,
            pending_ops: one(
                "faultline_replication_pending_ops",
                "Client: requests waiting.",
            )?,
            retries: one(
                "faultline_replication_retries",
                "Client: requests sent again (a counter).",
            )?,
            replayed: one(
                "faultline_replication_replayed",
                "Passive replica: log entries replayed at its promotions (a counter).",
            )?,
            duplicates: one(
                "faultline_replication_duplicates_suppressed",
                "Replica: requests answered from the outcome table instead of applied again (a counter).",
            )?,
            checkpoint_age: seconds(
                "faultline_replication_checkpoint_age_seconds",
                "Passive replica: seconds since it last took (backup) or sent (primary) a checkpoint, as of its last event; 0 before the first.",
            )?,
            detection: seconds(
                "faultline_replication_detection_seconds",
                "LFD: how long its replica had been silent when it was last declared dead (at least the heartbeat timeout).",
            )?,
        })
    }

    fn export(core: &ReplicationNode, g: &ReplicationGauges, _nodes: &[NodeId]) {
        let s = super::api::state(core);
        if let Some(v) = &s.view {
            g.view.set(v.number as i64);
            g.members.set(v.members.len() as i64);
            g.primary.set(
                (v.primary.as_deref() == Some(crate::protocol::Core::id(core).as_str())) as i64,
            );
        }
        match &core.role {
            ReplNode::Replica { mode, .. } => {
                match mode {
                    Mode::Passive(x) => {
                        g.duplicates.set(x.duplicates as i64);
                        g.checkpoint_age.set(
                            x.last_checkpoint
                                .map_or(0.0, |t| x.clock.saturating_sub(t) as f64 / 1e6),
                        );
                    }
                    Mode::Active(a) => g.duplicates.set(a.duplicates as i64),
                }
                g.ready.set(s.has_state as i64);
                g.executed.set(s.executed as i64);
                g.log_len.set(s.log_len as i64);
                g.replayed.set(s.replayed as i64);
            }
            ReplNode::Lfd(l) => {
                g.heartbeats.set(l.sent() as i64);
                g.missed.set(l.missed as i64);
                g.alive.set(l.alive as i64);
                if let Some(t) = l.last_silence {
                    g.detection.set(t as f64 / 1e6);
                }
            }
            ReplNode::Gfd { .. } => g.members.set(s.members.len() as i64),
            ReplNode::Rm { .. } => {}
            ReplNode::Client { .. } => {
                g.pending_ops.set(s.pending_ops as i64);
                g.retries.set(s.retries as i64);
            }
        }
    }

    async fn load(handle: Arc<Handle<Self>>, spec: LoadSpec) -> LoadStats {
        loadgen::run(handle, spec).await
    }

    async fn verb(client: &Client<Self>, verb: verbs::Verb) -> anyhow::Result<Output> {
        verbs::run(client, verb).await
    }

    fn status_line(s: &NodeState<ReplicationState>) -> String {
        let st = &s.state;
        let view = st
            .view
            .as_ref()
            .map(|v| {
                format!(
                    "view {} [{}]{}",
                    v.number,
                    v.members.join(","),
                    v.primary
                        .as_ref()
                        .map(|p| format!(" primary {p}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default();
        match s.role.as_str() {
            "replica" => format!(
                "{} {view} executed {}{}",
                st.mode,
                st.executed,
                if st.has_state {
                    ""
                } else {
                    " (waiting for the state)"
                }
            ),
            "lfd" => st
                .lfd
                .as_ref()
                .map(|l| {
                    format!(
                        "watches {} ({}), missed {}",
                        l.replica,
                        if l.alive { "alive" } else { "dead" },
                        l.missed
                    )
                })
                .unwrap_or_default(),
            "gfd" => format!("members {}", st.members.join(",")),
            _ => view,
        }
    }
}
