//! The `standby:` section of a cluster file and its validation into
//! [`Params`]: the accounts (the seed's balance file, or inline), the
//! heartbeat and lease, the client's retransmission and deadline, and the
//! sizes of the deduplication window, the log and a snapshot.

use super::{AccountId, Balance, Bugs, Params};
use crate::config::{Cluster, ConfigError, Ctx, Range};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StandbySection {
    /// The seed's balance file (`{"1": 10, "2": 300, ...}`), relative to the
    /// cluster file. Absent, and no `accounts`: the seed's ten accounts.
    pub balances_file: Option<PathBuf>,
    /// Accounts written inline instead of a file.
    pub accounts: Option<BTreeMap<AccountId, Balance>>,
    /// The server that is primary in epoch 0 (default: the first server).
    pub initial_primary: Option<String>,
    pub heartbeat_ms: u64,
    pub lease_ms: u64,
    pub retransmit_ms: u64,
    pub op_deadline_ms: u64,
    pub dedup_window: u64,
    pub log_keep: u64,
    pub bugs: Bugs,
}

impl Default for StandbySection {
    fn default() -> Self {
        StandbySection {
            balances_file: None,
            accounts: None,
            initial_primary: None,
            heartbeat_ms: 40,
            lease_ms: 200,
            retransmit_ms: 100,
            op_deadline_ms: 3_000,
            dedup_window: 1024,
            log_keep: 100_000,
            bugs: Bugs::default(),
        }
    }
}

fn check_ranges(ctx: &Ctx, s: &StandbySection) -> Result<(), ConfigError> {
    let d = StandbySection::default();
    let ranges = [
        Range::new(
            "standby.heartbeat_ms",
            s.heartbeat_ms,
            1,
            60_000,
            d.heartbeat_ms,
            "ms",
        ),
        Range::new(
            "standby.lease_ms",
            s.lease_ms,
            2 * s.heartbeat_ms.max(1),
            600_000,
            d.lease_ms,
            "ms (at least two heartbeats)",
        ),
        Range::new(
            "standby.retransmit_ms",
            s.retransmit_ms,
            1,
            60_000,
            d.retransmit_ms,
            "ms",
        ),
        Range::new(
            "standby.op_deadline_ms",
            s.op_deadline_ms,
            s.retransmit_ms.max(1),
            3_600_000,
            d.op_deadline_ms,
            "ms (at least one retransmission)",
        ),
        Range::new(
            "standby.dedup_window",
            s.dedup_window,
            16,
            1 << 20,
            d.dedup_window,
            "requests per client",
        ),
        Range::new(
            "standby.log_keep",
            s.log_keep,
            1,
            10_000_000,
            d.log_keep,
            "entries",
        ),
    ];
    ranges.iter().try_for_each(|r| r.check(ctx))
}

/// Reads the seed's balance file: a JSON object from account numbers
/// (strings of digits) to non-negative integer balances.
pub fn read_balances(path: &Path) -> Result<BTreeMap<AccountId, Balance>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let raw: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a JSON object of balances: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        let account: AccountId = k
            .trim()
            .parse()
            .map_err(|_| format!("{}: account {k:?} is not a number", path.display()))?;
        let balance = v.as_i64().filter(|b| *b >= 0).ok_or_else(|| {
            format!(
                "{}: account {k}: balance {v} is not a non-negative integer",
                path.display()
            )
        })?;
        if out.insert(account, balance).is_some() {
            return Err(format!(
                "{}: account {account} is listed twice",
                path.display()
            ));
        }
    }
    Ok(out)
}

pub(super) fn params(
    ctx: &Ctx,
    cluster: &Cluster,
    s: StandbySection,
) -> Result<Params, ConfigError> {
    check_ranges(ctx, &s)?;
    let servers = cluster.with_role("server");
    let clients = cluster.with_role("client");
    if servers.len() != 2 {
        return Err(ctx.err(
            "nodes",
            format!(
                "the standby bank has exactly two servers, this file has {}",
                servers.len()
            ),
            "give two nodes role: server (one primary, one standby)",
        ));
    }
    if clients.is_empty() {
        return Err(ctx.err(
            "nodes",
            "the standby bank needs at least one client (clients are also the witnesses of failovers)",
            "add nodes with role: client; three or more let one of them fail",
        ));
    }
    let mut pair = [servers[0].clone(), servers[1].clone()];
    if let Some(p) = &s.initial_primary {
        match pair.iter().position(|x| x == p) {
            Some(0) => {}
            Some(_) => pair.swap(0, 1),
            None => {
                return Err(ctx.err(
                    "standby.initial_primary",
                    format!("{p:?} is not a server"),
                    format!("name one of {} or {}", pair[0], pair[1]),
                ))
            }
        }
    }
    let accounts = match (&s.balances_file, &s.accounts) {
        (Some(_), Some(_)) => {
            return Err(ctx.err(
                "standby.accounts",
                "both balances_file and accounts are given",
                "keep one of them",
            ))
        }
        (Some(file), None) => {
            let path = if file.is_absolute() {
                file.clone()
            } else {
                cluster.base_dir().join(file)
            };
            read_balances(&path).map_err(|e| {
                ctx.err(
                    "standby.balances_file",
                    e,
                    "a JSON object like {\"1\": 10, \"2\": 300}, as clusters/balances.json",
                )
            })?
        }
        (None, Some(a)) => {
            if let Some((acct, b)) = a.iter().find(|(_, b)| **b < 0) {
                return Err(ctx.err(
                    "standby.accounts",
                    format!("account {acct} starts at {b}"),
                    "balances are non-negative integers",
                ));
            }
            a.clone()
        }
        (None, None) => super::bank::seed_accounts(),
    };
    if accounts.is_empty() {
        return Err(ctx.err(
            "standby.accounts",
            "no accounts",
            "list at least one account",
        ));
    }
    let mut p = Params::with_defaults(pair, clients);
    p.accounts = accounts;
    p.heartbeat_us = s.heartbeat_ms * 1000;
    p.lease_us = s.lease_ms * 1000;
    p.retransmit_us = s.retransmit_ms * 1000;
    p.op_deadline_us = s.op_deadline_ms * 1000;
    p.dedup_window = s.dedup_window;
    p.log_keep = s.log_keep as usize;
    p.snapshot_bytes = cluster.file.transport.max_frame_bytes.saturating_mul(3) / 4;
    p.bugs = s.bugs;
    Ok(p)
}

pub(super) fn describe(p: &Params) -> String {
    let total: i128 = p.accounts.values().map(|b| *b as i128).sum();
    format!(
        "  standby: primary {} and standby {} (epoch 0), {} accounts holding {total}\n  witnesses: {} clients, a failover needs {} of them\n  heartbeat {} ms, lease {} ms, retransmit {} ms, op deadline {} ms\n",
        p.servers[0],
        p.servers[1],
        p.accounts.len(),
        p.clients.len(),
        p.majority(),
        p.heartbeat_us / 1000,
        p.lease_us / 1000,
        p.retransmit_us / 1000,
        p.op_deadline_us / 1000,
    )
}
