//! State machine replication behind the system seam ([`System`]): its
//! roles, channel kind, metrics, and the entry points of its cluster-file
//! section, load generator and client verbs.

use super::{config, loadgen, verbs, Bugs, Params, Reply, Request, SmrNode, SmrSection, SmrState};
use crate::api::{LoadSpec, LoadStats, NodeState, Outcome};
use crate::cli::{Client, Output};
use crate::config::{Cluster, ConfigError, Ctx};
use crate::protocol::NodeId;
use crate::runtime::Handle;
use crate::system::{Channels, System};
use prometheus::{Histogram, HistogramOpts, IntGauge, IntGaugeVec, Opts, Registry};
use std::sync::Arc;
use std::time::Duration;

/// The vaccine availability database, replicated (seed 001).
pub struct Smr;

/// The system's metrics; names and meanings are in README.md.
pub struct SmrGauges {
    executed_index: IntGauge,
    clock: IntGauge,
    incarnation: IntGauge,
    joining: IntGauge,
    members: IntGauge,
    suspected: IntGauge,
    held: IntGaugeVec,
    pending_ops: IntGauge,
    nulls_sent: IntGauge,
    mismatches: IntGauge,
    log_conflicts: IntGauge,
    checkpoint_index: IntGauge,
    checkpoint_digest: IntGauge,
    stability_wait: Histogram,
}

impl System for Smr {
    const NAME: &'static str = "smr";
    const ROLES: &'static [&'static str] = &["replica", "client"];
    const CLIENT_ROLES: &'static [&'static str] = &["client"];
    /// Schneider's stability test needs FIFO links from every source; a
    /// stream that arrives out of order is held back by its seq numbers
    /// and refetched, so a reconnect costs a relay, not a wrong order.
    const CHANNELS: Channels = Channels::Fifo;
    const FSYNC: bool = true;

    type Request = Request;
    type Reply = Reply;
    type Core = SmrNode;
    type Section = SmrSection;
    type Params = Params;
    type Gauges = SmrGauges;
    type Verb = verbs::Verb;

    fn params(ctx: &Ctx, cluster: &Cluster, section: SmrSection) -> Result<Params, ConfigError> {
        config::params(ctx, cluster, section)
    }

    fn op_deadline(params: &Params) -> Duration {
        Duration::from_micros(params.op_deadline_us)
    }

    fn describe(params: &Params) -> String {
        config::describe(params)
    }

    fn core(id: &str, params: &Arc<Params>) -> SmrNode {
        SmrNode::new(id, params)
    }

    fn role(core: &SmrNode) -> &'static str {
        core.role()
    }

    /// Clients always (they say hello by themselves); a replica once it is
    /// in the order (not waiting for its snapshot).
    fn is_ready(core: &SmrNode) -> bool {
        core.replica().is_none_or(|r| !r.is_joining())
    }

    fn request_kind(request: &Request) -> &'static str {
        request.kind()
    }

    fn outcome(reply: &Reply) -> Outcome {
        reply.outcome()
    }

    fn bug_names() -> Vec<String> {
        Bugs::names()
    }

    fn gauges(r: &Registry) -> prometheus::Result<SmrGauges> {
        let one = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let held = IntGaugeVec::new(
            Opts::new(
                "faultline_smr_held",
                "Replica: entries held and not yet executed, per source (node#incarnation), nulls included.",
            ),
            &["source"],
        )?;
        r.register(Box::new(held.clone()))?;
        let stability_wait = Histogram::with_opts(
            HistogramOpts::new(
                "faultline_smr_stability_wait_seconds",
                "Replica: from a request's arrival to its execution (the stability test's wait).",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        r.register(Box::new(stability_wait.clone()))?;
        Ok(SmrGauges {
            executed_index: one(
                "faultline_smr_executed_index",
                "Replica: the index of the last entry executed.",
            )?,
            clock: one("faultline_smr_lamport_clock", "The node's Lamport clock.")?,
            incarnation: one(
                "faultline_smr_incarnation",
                "The node's incarnation (one more after each restart or expulsion).",
            )?,
            joining: one(
                "faultline_smr_joining",
                "Replica: 1 while a restarted replica waits for its snapshot; client: 1 until admitted.",
            )?,
            members: one(
                "faultline_smr_members",
                "Replica: sources in its configuration (replicas and clients).",
            )?,
            suspected: one(
                "faultline_smr_suspected",
                "Replica: replicas it suspects of having crashed.",
            )?,
            held,
            pending_ops: one(
                "faultline_smr_pending_ops",
                "Client: operations waiting for an answer.",
            )?,
            nulls_sent: one(
                "faultline_smr_nulls_sent",
                "Null messages this node sent (a counter).",
            )?,
            mismatches: one(
                "faultline_smr_reply_mismatches",
                "Client: replies that differed from the first reply to the same request (a counter; each is a bug).",
            )?,
            log_conflicts: one(
                "faultline_smr_log_conflicts",
                "Replica: snapshots whose log disagreed with its own (a counter; each is a bug).",
            )?,
            checkpoint_index: one(
                "faultline_smr_checkpoint_index",
                "Replica: the index of its last checkpoint (a multiple of 32, or a snapshot's index).",
            )?,
            checkpoint_digest: one(
                "faultline_smr_checkpoint_digest",
                "Replica: the digest (52-bit FNV-1a) of its log up to the checkpoint index; replicas at one index must agree.",
            )?,
            stability_wait,
        })
    }

    fn export(core: &SmrNode, g: &SmrGauges, _nodes: &[NodeId]) {
        match core {
            SmrNode::Replica(r) => {
                g.clock.set(r.clock() as i64);
                g.incarnation.set(r.me().incarnation as i64);
                g.nulls_sent.set(r.nulls_sent as i64);
                g.executed_index.set(r.index as i64);
                g.joining.set(r.is_joining() as i64);
                g.members.set(r.order.members().len() as i64);
                g.suspected.set(r.suspected().len() as i64);
                g.log_conflicts.set(r.log_conflicts as i64);
                g.checkpoint_index.set(r.checkpoint.0 as i64);
                g.checkpoint_digest.set(r.checkpoint.1 as i64);
                // Sources come and go (incarnations): only the live ones.
                g.held.reset();
                for (source, n) in r.order.pending() {
                    g.held
                        .with_label_values(&[&source.to_string()])
                        .set(n as i64);
                }
                for w in r.waits.borrow_mut().drain(..) {
                    g.stability_wait.observe(w as f64 / 1e6);
                }
            }
            SmrNode::Client(c) => {
                g.clock.set(c.core.clock() as i64);
                g.incarnation.set(c.core.source().incarnation as i64);
                g.nulls_sent.set(c.core.nulls_sent as i64);
                g.joining.set(!c.core.is_member() as i64);
                g.pending_ops.set(c.pending() as i64);
                g.mismatches.set(c.core.mismatches as i64);
            }
        }
    }

    async fn load(handle: Arc<Handle<Self>>, spec: LoadSpec) -> LoadStats {
        loadgen::run(handle, spec).await
    }

    async fn verb(client: &Client<Self>, verb: verbs::Verb) -> anyhow::Result<Output> {
        verbs::run(client, verb).await
    }

    fn interactive() -> Option<verbs::Verb> {
        Some(verbs::Verb::Menu)
    }

    fn status_line(s: &NodeState<SmrState>) -> String {
        let st = &s.state;
        match st.mode.as_str() {
            "replica" | "joining" => format!(
                "{:<8} {:<6} index {:<6} clock {:<8} coordinator {} members {}{}",
                st.mode,
                st.source,
                st.index,
                st.clock,
                st.coordinator.as_deref().unwrap_or("-"),
                st.members.len(),
                if st.suspected.is_empty() {
                    String::new()
                } else {
                    format!(" suspects {}", st.suspected.join(","))
                }
            ),
            mode => format!(
                "{mode:<8} {:<6} clock {:<8} pending {}{}",
                st.source,
                st.clock,
                st.pending_ops,
                if st.mismatches > 0 {
                    format!(" MISMATCHES {}", st.mismatches)
                } else {
                    String::new()
                }
            ),
        }
    }
}
