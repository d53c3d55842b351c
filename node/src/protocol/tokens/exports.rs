//! The token system behind the system seam ([`System`]): its roles, channel
//! kind, gauges, and the entry points of its cluster-file section, load
//! generator and client verbs.

use super::{config, loadgen, verbs, Params, Reply, Request, TokenId, TokensNode, TokensSection};
use super::{Bugs, TokensState};
use crate::api::{LoadSpec, LoadStats, NodeState, Outcome};
use crate::cli::{Client, Output};
use crate::config::{Cluster, ConfigError, Ctx};
use crate::protocol::NodeId;
use crate::runtime::Handle;
use crate::system::{Channels, System};
use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};
use std::sync::Arc;
use std::time::Duration;

/// The token system (seed 000): quorum-replicated token payments.
pub struct Tokens;

/// The token system's gauges; names and meanings are in README.md.
pub struct TokensGauges {
    version: IntGaugeVec,
    owner: IntGaugeVec,
    epoch: IntGauge,
    serving: IntGauge,
}

impl System for Tokens {
    const NAME: &'static str = "tokens";
    const ROLES: &'static [&'static str] = &["server", "client"];
    const CLIENT_ROLES: &'static [&'static str] = &["client"];
    /// The mesh's one stream per direction. The protocol does not rely on
    /// order (every phase is a quorum round matched by request id), so the
    /// message fault layer may still reorder.
    const CHANNELS: Channels = Channels::Fifo;

    type Request = Request;
    type Reply = Reply;
    type Core = TokensNode;
    type Section = TokensSection;
    type Params = Params;
    type Gauges = TokensGauges;
    type Verb = verbs::Verb;

    fn params(ctx: &Ctx, cluster: &Cluster, section: TokensSection) -> Result<Params, ConfigError> {
        config::params(ctx, cluster, section)
    }

    fn op_deadline(params: &Params) -> Duration {
        Duration::from_micros(params.op_deadline_us)
    }

    fn describe(params: &Params) -> String {
        config::describe(params)
    }

    fn core(id: &str, params: &Arc<Params>) -> TokensNode {
        TokensNode::new(id.to_string(), params.clone())
    }

    fn role(core: &TokensNode) -> &'static str {
        core.role()
    }

    fn is_ready(core: &TokensNode) -> bool {
        core.role() == "client" || core.is_serving()
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

    fn gauges(r: &Registry) -> prometheus::Result<TokensGauges> {
        let vec = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["token"])?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let one = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(TokensGauges {
            version: vec("faultline_token_version", "Version of each token in this server's table.")?,
            owner: vec("faultline_token_owner", "Owner of each token in this server's table, as the owner's index in the cluster file's node list.")?,
            epoch: one("faultline_config_epoch", "Configuration epoch this node knows.")?,
            serving: one("faultline_serving", "1 when this node serves as a server of the current configuration.")?,
        })
    }

    fn export(core: &TokensNode, g: &TokensGauges, nodes: &[NodeId]) {
        g.epoch.set(core.config().epoch as i64);
        g.serving.set(core.is_serving() as i64);
        match core.table() {
            Some(table) => {
                for (i, s) in table.iter().enumerate() {
                    let t = (i as TokenId).to_string();
                    g.version.with_label_values(&[&t]).set(s.tag.version as i64);
                    let owner = nodes
                        .iter()
                        .position(|n| *n == s.owner)
                        .map_or(-1, |p| p as i64);
                    g.owner.with_label_values(&[&t]).set(owner);
                }
            }
            None => {
                g.version.reset();
                g.owner.reset();
            }
        }
    }

    async fn load(handle: Arc<Handle<Self>>, spec: LoadSpec) -> LoadStats {
        loadgen::run(handle, spec).await
    }

    async fn verb(client: &Client<Self>, verb: verbs::Verb) -> anyhow::Result<Output> {
        verbs::run(client, verb).await
    }

    fn status_line(s: &NodeState<TokensState>) -> String {
        format!(
            "epoch {:<3} {}{}",
            s.state.epoch,
            if s.state.serving { "serving" } else { "" },
            if s.state.frozen { " frozen" } else { "" },
        )
    }
}
