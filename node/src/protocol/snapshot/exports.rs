//! The bitcake network behind the system seam ([`System`]): one role
//! (`node`), non-FIFO channels, metrics, and the entry points of its
//! cluster-file section, load generator and client verbs.

use super::{
    config, loadgen, verbs, Bugs, Params, Reply, Request, SnapNode, SnapshotSection, SnapshotState,
};
use crate::api::{LoadSpec, LoadStats, NodeState, Outcome};
use crate::cli::{Client, Output};
use crate::config::{Cluster, ConfigError, Ctx};
use crate::protocol::NodeId;
use crate::runtime::Handle;
use crate::system::{Channels, System};
use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};
use std::sync::Arc;
use std::time::Duration;

/// The bitcake network with its snapshots (seed 004).
pub struct Snapshot;

/// The system's metrics; names and meanings are in README.md.
pub struct SnapshotGauges {
    balance: IntGauge,
    epoch: IntGauge,
    collected: IntGauge,
    messages: IntGaugeVec,
    transactions: IntGaugeVec,
    duplicates: IntGauge,
    refused: IntGauge,
    last_total: IntGauge,
    last_took: IntGauge,
}

impl System for Snapshot {
    const NAME: &'static str = "snapshot";
    const ROLES: &'static [&'static str] = &["node"];
    /// Every node takes commands: transfers, bursts, snapshots.
    const CLIENT_ROLES: &'static [&'static str] = &["node"];
    /// The point of Lai-Yang: no marker needs to overtake anything.
    const CHANNELS: Channels = Channels::NonFifo;

    type Request = Request;
    type Reply = Reply;
    type Core = SnapNode;
    type Section = SnapshotSection;
    type Params = Params;
    type Gauges = SnapshotGauges;
    type Verb = verbs::Verb;

    fn params(
        ctx: &Ctx,
        cluster: &Cluster,
        section: SnapshotSection,
    ) -> Result<Params, ConfigError> {
        config::params(ctx, cluster, section)
    }

    /// Every command answers at once (a snapshot's result is in `/state`).
    fn op_deadline(_: &Params) -> Duration {
        Duration::from_secs(5)
    }

    fn describe(params: &Params) -> String {
        config::describe(params)
    }

    fn core(id: &str, params: &Arc<Params>) -> SnapNode {
        SnapNode::new(id, params)
    }

    fn role(_: &SnapNode) -> &'static str {
        "node"
    }

    fn is_ready(_: &SnapNode) -> bool {
        true
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

    fn gauges(r: &Registry) -> prometheus::Result<SnapshotGauges> {
        let one = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let vec = |name: &str, help: &str, label: &str| -> prometheus::Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), &[label])?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(SnapshotGauges {
            balance: one("faultline_snapshot_balance", "Bitcakes the node holds.")?,
            epoch: one(
                "faultline_snapshot_epoch",
                "The snapshot epoch the node recorded last (0: none).",
            )?,
            collected: one(
                "faultline_snapshot_collected",
                "Global snapshots the node knows (assembled as a master or told).",
            )?,
            messages: vec(
                "faultline_snapshot_messages",
                "Snapshot protocol messages the node sent, by kind (marker, answer, up, round, collected; a counter).",
                "kind",
            )?,
            transactions: vec(
                "faultline_snapshot_transactions",
                "Transactions the node sent and got (a counter).",
                "direction",
            )?,
            duplicates: one(
                "faultline_snapshot_duplicates",
                "Transactions received twice and ignored (a counter).",
            )?,
            refused: one(
                "faultline_snapshot_refused",
                "Commands refused (a counter).",
            )?,
            last_total: one(
                "faultline_snapshot_last_total",
                "The system's bitcake count in the latest snapshot the node knows (n x initial when right).",
            )?,
            last_took: one(
                "faultline_snapshot_last_took_ms",
                "Master: milliseconds from its start of the latest snapshot it assembled to its collection.",
            )?,
        })
    }

    fn export(core: &SnapNode, g: &SnapshotGauges, _nodes: &[NodeId]) {
        g.balance.set(core.balance() as i64);
        g.epoch.set(core.epoch() as i64);
        g.collected.set(core.collected().len() as i64);
        for (kind, n) in core.message_totals() {
            g.messages.with_label_values(&[&kind]).set(n as i64);
        }
        let (sent, got, dups, refused) = core.counters();
        g.transactions.with_label_values(&["sent"]).set(sent as i64);
        g.transactions.with_label_values(&["got"]).set(got as i64);
        g.duplicates.set(dups as i64);
        g.refused.set(refused as i64);
        if let Some(last) = core.collected().values().next_back() {
            g.last_total.set(last.global.total);
            if let Some(t) = last.took_us {
                g.last_took.set((t / 1_000) as i64);
            }
        }
    }

    async fn load(handle: Arc<Handle<Self>>, spec: LoadSpec) -> LoadStats {
        loadgen::run(handle, spec).await
    }

    async fn verb(client: &Client<Self>, verb: verbs::Verb) -> anyhow::Result<Output> {
        verbs::run(client, verb).await
    }

    fn status_line(s: &NodeState<SnapshotState>) -> String {
        let st = &s.state;
        format!(
            "balance {:<6} snapshot {:<3} region {:<4} parent {:<4} collected {}{}",
            st.balance,
            st.epoch,
            st.region.as_deref().unwrap_or("-"),
            st.parent.as_deref().unwrap_or("-"),
            st.collected.len(),
            if st.initiator { " initiator" } else { "" }
        )
    }
}
