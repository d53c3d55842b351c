//! The `replication:` section of a cluster file and its validation into
//! [`Params`]: the mode, the detectors' timers, the checkpoint period,
//! the client's retry and deadline, and which LFD watches which replica
//! (by default the LFDs and the replicas in file order).

use super::{Bugs, Params, Timing};
use crate::config::{Cluster, ConfigError, Ctx, Range};
use crate::protocol::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    #[default]
    Passive,
    Active,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationSection {
    pub mode: ModeName,
    pub heartbeat_ms: u64,
    pub heartbeat_timeout_ms: u64,
    pub lfd_timeout_ms: u64,
    pub checkpoint_ms: u64,
    pub retransmit_ms: u64,
    pub op_deadline_ms: u64,
    /// LFD -> the replica it watches.
    pub pairs: BTreeMap<NodeId, NodeId>,
    pub bugs: Bugs,
}

impl Default for ReplicationSection {
    fn default() -> Self {
        ReplicationSection {
            mode: ModeName::Passive,
            heartbeat_ms: 50,
            heartbeat_timeout_ms: 150,
            lfd_timeout_ms: 200,
            checkpoint_ms: 500,
            retransmit_ms: 200,
            op_deadline_ms: 5_000,
            pairs: BTreeMap::new(),
            bugs: Bugs::default(),
        }
    }
}

fn one(ctx: &Ctx, cluster: &Cluster, role: &str) -> Result<NodeId, ConfigError> {
    let v = cluster.with_role(role);
    match &v[..] {
        [one] => Ok(one.clone()),
        _ => Err(ctx.err(
            "nodes",
            format!(
                "replication needs exactly one {role}, this file has {}",
                v.len()
            ),
            format!("give one node role: {role}"),
        )),
    }
}

pub(super) fn params(
    ctx: &Ctx,
    cluster: &Cluster,
    s: ReplicationSection,
) -> Result<Params, ConfigError> {
    let d = ReplicationSection::default();
    let hb = s.heartbeat_ms.max(1);
    let ranges = [
        Range::new(
            "replication.heartbeat_ms",
            s.heartbeat_ms,
            1,
            60_000,
            d.heartbeat_ms,
            "ms",
        ),
        Range::new(
            "replication.heartbeat_timeout_ms",
            s.heartbeat_timeout_ms,
            hb,
            3_600_000,
            d.heartbeat_timeout_ms,
            "ms (at least one heartbeat)",
        ),
        Range::new(
            "replication.lfd_timeout_ms",
            s.lfd_timeout_ms,
            hb,
            3_600_000,
            d.lfd_timeout_ms,
            "ms (at least one heartbeat)",
        ),
        Range::new(
            "replication.checkpoint_ms",
            s.checkpoint_ms,
            1,
            3_600_000,
            d.checkpoint_ms,
            "ms",
        ),
        Range::new(
            "replication.retransmit_ms",
            s.retransmit_ms,
            1,
            3_600_000,
            d.retransmit_ms,
            "ms",
        ),
        Range::new(
            "replication.op_deadline_ms",
            s.op_deadline_ms,
            s.retransmit_ms.max(1),
            3_600_000,
            d.op_deadline_ms,
            "ms (at least one retransmission)",
        ),
    ];
    ranges.iter().try_for_each(|r| r.check(ctx))?;
    let replicas = cluster.with_role("replica");
    let lfds = cluster.with_role("lfd");
    let clients = cluster.with_role("client");
    if replicas.is_empty() || clients.is_empty() {
        return Err(ctx.err(
            "nodes",
            "replication needs at least one replica and one client",
            "add nodes with role: replica and role: client",
        ));
    }
    let gfd = one(ctx, cluster, "gfd")?;
    let rm = one(ctx, cluster, "rm")?;
    let pairs: BTreeMap<NodeId, NodeId> = if s.pairs.is_empty() {
        if lfds.len() != replicas.len() {
            return Err(ctx.err(
                "nodes",
                format!(
                    "{} LFDs for {} replicas: one LFD watches each replica",
                    lfds.len(),
                    replicas.len()
                ),
                "give one node role: lfd per replica (paired in file order), or list replication.pairs",
            ));
        }
        lfds.iter().cloned().zip(replicas.iter().cloned()).collect()
    } else {
        s.pairs.clone()
    };
    for (l, r) in &pairs {
        if !lfds.contains(l) || !replicas.contains(r) {
            return Err(ctx.err(
                "replication.pairs",
                format!("{l}: {r} pairs an LFD with a replica, and one of them is not"),
                "write lfd: replica, with nodes of those roles",
            ));
        }
    }
    for r in &replicas {
        if pairs.values().filter(|x| *x == r).count() != 1 {
            return Err(ctx.err(
                "replication.pairs",
                format!("replica {r} needs exactly one LFD"),
                "pair one lfd with each replica",
            ));
        }
    }
    Ok(Params {
        active: s.mode == ModeName::Active,
        replicas,
        pairs,
        gfd,
        rm,
        clients,
        timing: Timing {
            heartbeat: s.heartbeat_ms * 1000,
            heartbeat_timeout: s.heartbeat_timeout_ms * 1000,
            lfd_timeout: s.lfd_timeout_ms * 1000,
            checkpoint: s.checkpoint_ms * 1000,
            retransmit: s.retransmit_ms * 1000,
            op_deadline: s.op_deadline_ms * 1000,
        },
        bugs: s.bugs,
    })
}

pub(super) fn describe(p: &Params) -> String {
    format!(
        "  replication: {} mode, replicas {} watched by {}, GFD {}, RM {}, clients {}\n  heartbeat {} ms, timeout {} ms, LFD timeout {} ms, checkpoint {} ms\n",
        if p.active { "active" } else { "passive" },
        p.replicas.join(", "),
        p.pairs.keys().cloned().collect::<Vec<_>>().join(", "),
        p.gfd,
        p.rm,
        p.clients.join(", "),
        p.timing.heartbeat / 1000,
        p.timing.heartbeat_timeout / 1000,
        p.timing.lfd_timeout / 1000,
        p.timing.checkpoint / 1000,
    )
}
