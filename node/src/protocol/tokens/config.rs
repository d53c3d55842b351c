//! The `tokens:` section of a cluster file and its validation into [`Params`]:
//! how many tokens and who owns them at start, the server-count bounds of
//! `transform`, and the client's deadlines and retransmission backoff.

use super::{Bugs, Params};
use crate::config::{Cluster, ConfigError, Ctx, Range};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensSection {
    pub tokens: usize,
    /// Owner of each token at start; empty means token i starts at the
    /// i-th client modulo the number of clients (the seed's default).
    pub initial_owners: Vec<String>,
    pub min_servers: usize,
    pub max_servers: usize,
    pub op_deadline_ms: u64,
    pub retransmit_ms: u64,
    pub retransmit_max_ms: u64,
    pub reconfig_recovery_ms: u64,
    pub bugs: Bugs,
}

impl Default for TokensSection {
    fn default() -> Self {
        TokensSection {
            tokens: 60,
            initial_owners: Vec::new(),
            min_servers: 3,
            max_servers: 7,
            op_deadline_ms: 3_000,
            retransmit_ms: 50,
            retransmit_max_ms: 800,
            reconfig_recovery_ms: 5_000,
            bugs: Bugs::default(),
        }
    }
}

/// Every number of the section that is not checked against another.
fn check_ranges(ctx: &Ctx, t: &TokensSection) -> Result<(), ConfigError> {
    let d = TokensSection::default();
    let ranges = [
        Range::new(
            "tokens.tokens",
            t.tokens as u64,
            1,
            100_000,
            d.tokens as u64,
            "tokens",
        ),
        Range::new(
            "tokens.min_servers",
            t.min_servers as u64,
            1,
            64,
            d.min_servers as u64,
            "servers",
        ),
        Range::new(
            "tokens.max_servers",
            t.max_servers as u64,
            1,
            64,
            d.max_servers as u64,
            "servers",
        ),
        Range::new(
            "tokens.op_deadline_ms",
            t.op_deadline_ms,
            1,
            3_600_000,
            d.op_deadline_ms,
            "ms",
        ),
        Range::new(
            "tokens.retransmit_ms",
            t.retransmit_ms,
            1,
            60_000,
            d.retransmit_ms,
            "ms",
        ),
        Range::new(
            "tokens.retransmit_max_ms",
            t.retransmit_max_ms,
            t.retransmit_ms.max(1),
            600_000,
            d.retransmit_max_ms,
            "ms",
        ),
        Range::new(
            "tokens.reconfig_recovery_ms",
            t.reconfig_recovery_ms,
            10,
            3_600_000,
            d.reconfig_recovery_ms,
            "ms",
        ),
    ];
    ranges.iter().try_for_each(|r| r.check(ctx))
}

/// Validates the section against the cluster's nodes and builds the
/// parameters every token node shares.
pub(super) fn params(
    ctx: &Ctx,
    cluster: &Cluster,
    t: TokensSection,
) -> Result<Params, ConfigError> {
    check_ranges(ctx, &t)?;
    let servers = cluster.with_role("server");
    let clients = cluster.with_role("client");
    if t.min_servers > t.max_servers {
        return Err(ctx.err(
            "tokens.min_servers",
            format!(
                "min_servers {} and max_servers {} do not make a range",
                t.min_servers, t.max_servers
            ),
            "use 1 <= min_servers <= max_servers (the seed uses 3 and 7)",
        ));
    }
    if servers.len() < t.min_servers || servers.len() > t.max_servers {
        return Err(ctx.err(
            "nodes",
            format!(
                "the token system needs {}..{} servers, this file has {}",
                t.min_servers,
                t.max_servers,
                servers.len()
            ),
            "change the role of some nodes (role: server / role: client)",
        ));
    }
    if clients.is_empty() {
        return Err(ctx.err(
            "nodes",
            "the token system needs at least one client",
            "add a node with role: client",
        ));
    }
    if !t.initial_owners.is_empty() {
        if t.initial_owners.len() != t.tokens {
            return Err(ctx.err(
                "tokens.initial_owners",
                format!(
                    "{} owners listed for {} tokens",
                    t.initial_owners.len(),
                    t.tokens
                ),
                "list one owner per token, or remove the field for the round-robin default",
            ));
        }
        if let Some((i, o)) = t
            .initial_owners
            .iter()
            .enumerate()
            .find(|(_, o)| !clients.contains(o))
        {
            return Err(ctx.err(
                &format!("tokens.initial_owners[{i}]"),
                format!("{o:?} is not a client"),
                "every initial owner must be a node with role: client",
            ));
        }
    }
    let owners = if t.initial_owners.is_empty() {
        Params::round_robin_owners(&clients, t.tokens)
    } else {
        t.initial_owners.clone()
    };
    let mut p = Params::with_defaults(cluster.ids(), servers, owners);
    p.min_servers = t.min_servers;
    p.max_servers = t.max_servers;
    p.op_deadline_us = t.op_deadline_ms * 1000;
    p.retransmit_us = t.retransmit_ms * 1000;
    p.retransmit_max_us = t.retransmit_max_ms * 1000;
    p.reconfig_recovery_us = t.reconfig_recovery_ms * 1000;
    p.bugs = t.bugs;
    Ok(p)
}

/// The lines `faultline-node check` prints about a token cluster.
pub(super) fn describe(p: &Params) -> String {
    let servers = p.initial_servers.len();
    format!(
        "  tokens: {} tokens, quorum {} of {servers} servers (tolerates {} omission-faulty), servers {}..{}\n  op deadline {} ms, retransmit {} ms\n",
        p.tokens(),
        servers / 2 + 1,
        servers.saturating_sub(1) / 2,
        p.min_servers,
        p.max_servers,
        p.op_deadline_us / 1000,
        p.retransmit_us / 1000
    )
}
