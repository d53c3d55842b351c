//! The standby bank behind the system seam ([`System`]): its roles, channel
//! kind, gauges, and the entry points of its cluster-file section, load
//! generator and client verbs.

use super::Bugs;
use super::{
    config, loadgen, verbs, Params, Reply, Request, StandbyNode, StandbySection, StandbyState,
};
use crate::api::{LoadSpec, LoadStats, NodeState, Outcome};
use crate::cli::{Client, Output};
use crate::config::{Cluster, ConfigError, Ctx};
use crate::protocol::NodeId;
use crate::runtime::Handle;
use crate::system::{Channels, System};
use prometheus::{IntGauge, Registry};
use std::sync::Arc;
use std::time::Duration;

/// The primary/standby bank (seed 003).
pub struct Standby;

/// The bank's gauges; names and meanings are in README.md.
pub struct StandbyGauges {
    primary: IntGauge,
    epoch: IntGauge,
    degraded: IntGauge,
    action_id: IntGauge,
    lag: IntGauge,
    deduplicated: IntGauge,
    failovers: IntGauge,
    balance_sum: IntGauge,
    min_balance: IntGauge,
}

impl System for Standby {
    const NAME: &'static str = "standby";
    const ROLES: &'static [&'static str] = &["server", "client"];
    const CLIENT_ROLES: &'static [&'static str] = &["client"];
    /// One stream per direction. Replication does not rely on it: the
    /// standby applies only the next position and acknowledges what it has,
    /// so loss, duplication and reordering cost a retransmission, no more.
    const CHANNELS: Channels = Channels::Fifo;
    const FSYNC: bool = true;

    type Request = Request;
    type Reply = Reply;
    type Core = StandbyNode;
    type Section = StandbySection;
    type Params = Params;
    type Gauges = StandbyGauges;
    type Verb = verbs::Verb;

    fn params(
        ctx: &Ctx,
        cluster: &Cluster,
        section: StandbySection,
    ) -> Result<Params, ConfigError> {
        config::params(ctx, cluster, section)
    }

    fn op_deadline(params: &Params) -> Duration {
        Duration::from_micros(params.op_deadline_us)
    }

    fn describe(params: &Params) -> String {
        config::describe(params)
    }

    fn core(id: &str, params: &Arc<Params>) -> StandbyNode {
        StandbyNode::new(id.to_string(), params.clone())
    }

    fn role(core: &StandbyNode) -> &'static str {
        core.role()
    }

    /// Clients always; a server once it is primary or a synced standby.
    fn is_ready(core: &StandbyNode) -> bool {
        core.server()
            .is_none_or(|s| s.is_primary() || s.is_synced())
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

    fn gauges(r: &Registry) -> prometheus::Result<StandbyGauges> {
        let one = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(StandbyGauges {
            primary: one(
                "faultline_standby_primary",
                "1 while this server is the primary of its epoch.",
            )?,
            epoch: one(
                "faultline_standby_epoch",
                "The epoch this node follows or leads.",
            )?,
            degraded: one(
                "faultline_standby_degraded",
                "1 while this primary acknowledges writes alone (its standby down or catching up).",
            )?,
            action_id: one(
                "faultline_standby_action_id",
                "Position of the last write applied here (the seed's action id).",
            )?,
            lag: one(
                "faultline_standby_replication_lag",
                "Primary: writes its standby has not acknowledged yet.",
            )?,
            deduplicated: one(
                "faultline_standby_deduplicated",
                "Retries answered from the deduplication table (a counter).",
            )?,
            failovers: one(
                "faultline_standby_failovers",
                "Times this server took over as primary (a counter).",
            )?,
            balance_sum: one(
                "faultline_standby_balance_sum",
                "The sum of all balances this server holds.",
            )?,
            min_balance: one(
                "faultline_standby_min_balance",
                "The smallest balance this server holds (never negative).",
            )?,
        })
    }

    fn export(core: &StandbyNode, g: &StandbyGauges, _nodes: &[NodeId]) {
        let Some(s) = core.server() else {
            if let Some(c) = core.client() {
                g.epoch.set(c.witness.accepted.n as i64);
            }
            return;
        };
        g.primary.set(s.is_primary() as i64);
        g.epoch.set(s.epoch.n as i64);
        g.degraded.set(s.is_degraded() as i64);
        g.action_id.set(s.bank.action_id as i64);
        g.lag.set(if s.is_primary() {
            s.bank.action_id.saturating_sub(s.peer_acked) as i64
        } else {
            0
        });
        g.deduplicated.set(s.deduplicated as i64);
        g.failovers.set(s.failovers as i64);
        g.balance_sum
            .set(i64::try_from(s.bank.total()).unwrap_or(i64::MAX));
        g.min_balance
            .set(s.bank.balances.values().copied().min().unwrap_or(0));
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

    fn status_line(s: &NodeState<StandbyState>) -> String {
        let st = &s.state;
        match st.mode.as_str() {
            "client" => format!(
                "witness of epoch {} (promised {})",
                st.epoch.n,
                st.promised.unwrap_or(0)
            ),
            mode => format!(
                "{mode:<10} epoch {:<3} action id {:<6} total {}{}{}",
                st.epoch.n,
                st.action_id,
                st.total.unwrap_or(0),
                if st.degraded { " degraded" } else { "" },
                if st.in_round { " asking witnesses" } else { "" },
            ),
        }
    }
}
