//! The `smr:` section of a cluster file and its validation into
//! [`Params`]: the null period (the seed's 100 ms dummies), how long a
//! silent client or replica is waited for before it is expelled, the
//! client's operation deadline, and how many executed entries a replica
//! keeps.

use super::replica::Timing;
use super::{Bugs, Params};
use crate::config::{Cluster, ConfigError, Ctx, Range};
use serde::{Deserialize, Serialize};

/// The most replicas an smr cluster may have (the 1..7).
pub const MAX_REPLICAS: usize = 7;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmrSection {
    /// An idle source sends a null this often (the seed's dummies).
    pub null_period_ms: u64,
    /// A client silent this long is expelled at one point of the order.
    pub client_timeout_ms: u64,
    /// A replica silent this long is suspected and expelled.
    pub replica_timeout_ms: u64,
    /// A client operation unanswered by then answers unknown.
    pub op_deadline_ms: u64,
    /// Executed entries a replica keeps for `/state` and the checks.
    pub log_keep: u64,
    pub bugs: Bugs,
}

impl Default for SmrSection {
    fn default() -> Self {
        SmrSection {
            null_period_ms: 100,
            client_timeout_ms: 2_000,
            replica_timeout_ms: 1_000,
            op_deadline_ms: 5_000,
            log_keep: 100_000,
            bugs: Bugs::default(),
        }
    }
}

pub(super) fn params(ctx: &Ctx, cluster: &Cluster, s: SmrSection) -> Result<Params, ConfigError> {
    let d = SmrSection::default();
    let floor = 2 * s.null_period_ms.max(1);
    let ranges = [
        Range::new(
            "smr.null_period_ms",
            s.null_period_ms,
            1,
            10_000,
            d.null_period_ms,
            "ms",
        ),
        Range::new(
            "smr.client_timeout_ms",
            s.client_timeout_ms,
            floor,
            3_600_000,
            d.client_timeout_ms,
            "ms (at least two null periods)",
        ),
        Range::new(
            "smr.replica_timeout_ms",
            s.replica_timeout_ms,
            floor,
            3_600_000,
            d.replica_timeout_ms,
            "ms (at least two null periods)",
        ),
        Range::new(
            "smr.op_deadline_ms",
            s.op_deadline_ms,
            floor,
            3_600_000,
            d.op_deadline_ms,
            "ms (at least two null periods)",
        ),
        Range::new(
            "smr.log_keep",
            s.log_keep,
            1,
            10_000_000,
            d.log_keep,
            "entries",
        ),
    ];
    ranges.iter().try_for_each(|r| r.check(ctx))?;
    let replicas = cluster.with_role("replica");
    let clients = cluster.with_role("client");
    if replicas.is_empty() || replicas.len() > MAX_REPLICAS {
        return Err(ctx.err(
            "nodes",
            format!(
                "smr has 1 to {MAX_REPLICAS} replicas, this file has {}",
                replicas.len()
            ),
            "give 1 to 7 nodes role: replica (t replicas tolerate t - 1 crashes)",
        ));
    }
    if clients.is_empty() {
        return Err(ctx.err(
            "nodes",
            "smr needs at least one client",
            "add nodes with role: client",
        ));
    }
    let mut p = Params::with_defaults(replicas, clients);
    p.timing = Timing {
        null_period: s.null_period_ms * 1000,
        client_timeout: s.client_timeout_ms * 1000,
        replica_timeout: s.replica_timeout_ms * 1000,
    };
    p.op_deadline_us = s.op_deadline_ms * 1000;
    p.log_keep = s.log_keep as usize;
    p.bugs = s.bugs;
    Ok(p)
}

pub(super) fn describe(p: &Params) -> String {
    format!(
        "  smr: {} replicas ({}), tolerating {} crashes; {} clients\n  null period {} ms, client timeout {} ms, replica timeout {} ms, op deadline {} ms\n",
        p.replicas.len(),
        p.replicas.join(", "),
        p.replicas.len() - 1,
        p.clients.len(),
        p.timing.null_period / 1000,
        p.timing.client_timeout / 1000,
        p.timing.replica_timeout / 1000,
        p.op_deadline_us / 1000,
    )
}
