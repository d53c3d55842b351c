//! The bank's checks beside linearizability, read from the survivor's log
//! and balances (the final `/state` of the primary), the scrapes, and the
//! epochs the acknowledgements carry:
//! - `exactly-once`: every acknowledged write is in the survivor's log at
//!   the position its reply named, and no request id is in the log twice;
//!   the standby's log agrees where the two overlap.
//! - `conservation`: the final sum of balances is the initial sum plus
//!   acknowledged deposits minus acknowledged withdrawals, with writes of
//!   unknown outcome allowed either way (the bound is reported).
//! - `no-negative-balance`: no scrape and no final state shows one.
//! - `one-primary`: no epoch was acknowledged by two servers, and an
//!   acknowledgement never comes from an older epoch than one that ended
//!   before it began (two primaries at once).

use super::{bank_ops, BankOp, StandbyMeta};
use crate::judge::{outcome, rel_ms_json};
use crate::results::{CheckOutcome, Valid};
use crate::systems::Judging;
use faultline_node::api::{NodeState, Outcome as ApiOutcome};
use faultline_node::protocol::standby::{Answer, Reply, Request, StandbyState};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The servers' final states, by node.
fn server_states(run: &Judging<'_>) -> BTreeMap<String, StandbyState> {
    run.record
        .states
        .iter()
        .filter_map(|(id, v)| {
            let s: NodeState<StandbyState> = serde_json::from_value(v.clone()).ok()?;
            (s.state.mode != "client").then(|| (id.clone(), s.state))
        })
        .collect()
}

/// The primary with the newest epoch at the end of the run.
fn survivor(states: &BTreeMap<String, StandbyState>) -> Option<(&String, &StandbyState)> {
    states
        .iter()
        .filter(|(_, s)| s.mode == "primary")
        .max_by_key(|(_, s)| s.epoch.n)
}

/// A write's effect on the total if it happened: deposits add, withdrawals
/// subtract (refusals and unknown accounts change nothing).
fn delta(request: &Request) -> i128 {
    match *request {
        Request::Deposit { amount, .. } => amount as i128,
        Request::Withdraw { amount, .. } => -(amount as i128),
        Request::Lookup { .. } => 0,
    }
}

fn acked_write<'a>(op: &'a BankOp<'_>) -> Option<(&'a Reply, &'a Answer, u64)> {
    if !op.request.is_write() || op.src.outcome != ApiOutcome::Ok {
        return None;
    }
    match &op.reply {
        Some(
            r @ Reply::Done {
                answer, action_id, ..
            },
        ) => Some((r, answer, *action_id)),
        _ => None,
    }
}

pub(super) fn exactly_once(run: &Judging<'_>) -> CheckOutcome {
    const NAME: &str = "exactly-once";
    let states = server_states(run);
    let Some((node, s)) = survivor(&states) else {
        return outcome(
            NAME,
            Valid::Unknown,
            "no primary answered at the end of the run",
            json!(null),
        );
    };
    let log = s.log.clone().unwrap_or_default();
    let first = log.first().map_or(s.action_id + 1, |e| e.action_id);
    // No request applied twice.
    let mut at: HashMap<String, u64> = HashMap::new();
    for e in &log {
        if let Some(before) = at.insert(e.id.to_string(), e.action_id) {
            return outcome(
                NAME,
                Valid::False,
                format!(
                    "request {} was applied twice, at action ids {before} and {} of {node}'s log",
                    e.id, e.action_id
                ),
                json!({"survivor": node, "request": e.id.to_string(), "action_ids": [before, e.action_id], "entry": e}),
            );
        }
    }
    let (ops, _) = bank_ops(run.ops);
    let (mut checked, mut older, mut unknown, mut unknown_applied) = (0u64, 0u64, 0u64, 0u64);
    for op in &ops {
        if op.request.is_write()
            && op.src.outcome != ApiOutcome::Ok
            && op.src.outcome != ApiOutcome::Failed
        {
            unknown += 1;
            if let Some(Reply::Unknown { id, .. }) = &op.reply {
                unknown_applied += at.contains_key(&id.to_string()) as u64;
            }
        }
        let Some((
            Reply::Done {
                id, server, epoch, ..
            },
            answer,
            action_id,
        )) = acked_write(op)
        else {
            continue;
        };
        if action_id < first {
            older += 1;
            continue;
        }
        let entry = log.get((action_id - first) as usize);
        match entry {
            Some(e) if e.id == *id && e.answer == *answer => checked += 1,
            other => {
                return outcome(
                    NAME,
                    Valid::False,
                    format!(
                        "{id}, acknowledged by {server} in epoch {epoch} at action id {action_id} ({answer}), is not in {node}'s log: an acknowledged write was lost"
                    ),
                    json!({
                        "survivor": node,
                        "request": id.to_string(),
                        "acknowledged": {"server": server, "epoch": epoch, "action_id": action_id, "answer": answer, "at_ms": rel_ms_json(op.src.complete_us.unwrap_or(0), run.record.meta.start_us)},
                        "log_has_there": other,
                    }),
                );
            }
        }
    }
    // The standby's log agrees with the survivor's where both have entries.
    for (other, st) in states.iter().filter(|(id, _)| *id != node) {
        for e in st.log.iter().flatten() {
            if e.action_id >= first {
                if let Some(mine) = log.get((e.action_id - first) as usize) {
                    if st.mode == "standby" && mine.id != e.id {
                        return outcome(
                            NAME,
                            Valid::False,
                            format!(
                                "{other} (standby) has {} at action id {} where {node} has {}",
                                e.id, e.action_id, mine.id
                            ),
                            json!({"survivor": node, "standby": other, "at": e.action_id}),
                        );
                    }
                }
            }
        }
    }
    let evidence = json!({
        "survivor": node, "epoch": s.epoch.n, "action_id": s.action_id, "log_from": first,
        "acknowledged_checked": checked, "acknowledged_before_log": older,
        "unknown_writes": unknown, "unknown_writes_applied": unknown_applied,
    });
    outcome(
        NAME,
        Valid::True,
        format!(
            "{checked} acknowledged writes each appear once in {node}'s log (epoch {}, {} writes); {unknown_applied} of {unknown} writes of unknown outcome took effect{}",
            s.epoch.n,
            s.action_id,
            if older > 0 { format!("; {older} older than the kept log not checked") } else { String::new() }
        ),
        evidence,
    )
}

pub(super) fn conservation(run: &Judging<'_>) -> CheckOutcome {
    const NAME: &str = "conservation";
    let meta = match StandbyMeta::of(run.record) {
        Ok(m) => m,
        Err(e) => return outcome(NAME, Valid::Unknown, e, json!(null)),
    };
    let states = server_states(run);
    let Some((node, s)) = survivor(&states) else {
        return outcome(
            NAME,
            Valid::Unknown,
            "no primary answered at the end of the run",
            json!(null),
        );
    };
    let Some(total) = s.total.map(i128::from) else {
        return outcome(
            NAME,
            Valid::Unknown,
            format!("{node} reported no total"),
            json!(null),
        );
    };
    let initial: i128 = meta.accounts.values().map(|b| *b as i128).sum();
    let (ops, unreadable) = bank_ops(run.ops);
    let (mut acked, mut may_add, mut may_sub) = (0i128, 0i128, 0i128);
    for op in &ops {
        if !op.request.is_write() {
            continue;
        }
        match (&op.src.outcome, &op.reply) {
            (
                ApiOutcome::Ok,
                Some(Reply::Done {
                    answer: Answer::Balance { .. },
                    ..
                }),
            ) => acked += delta(&op.request),
            (ApiOutcome::Ok, Some(Reply::Done { .. })) | (ApiOutcome::Failed, _) => {}
            _ => {
                let d = delta(&op.request);
                if d > 0 {
                    may_add += d;
                } else {
                    may_sub -= d;
                }
            }
        }
    }
    let truncated: u64 = run.record.histories.values().map(|h| h.truncated).sum();
    let expected = initial + acked;
    let (lo, hi) = (expected - may_sub, expected + may_add);
    let evidence = json!({
        "survivor": node, "initial": initial.to_string(), "acknowledged_net": acked.to_string(),
        "final": total.to_string(), "bound": [lo.to_string(), hi.to_string()],
        "unknown_deposits": may_add.to_string(), "unknown_withdrawals": may_sub.to_string(),
    });
    if truncated > 0 || unreadable > 0 {
        return outcome(NAME, Valid::Unknown, format!("{truncated} operations not kept, {unreadable} unreadable: the sum cannot be judged"), evidence);
    }
    if total < lo || total > hi {
        return outcome(
            NAME,
            Valid::False,
            format!("{node} holds {total} in all; the acknowledged operations give {expected} (at most {} with unknown ones): money was {}", if total < lo { lo } else { hi }, if total < lo { "lost" } else { "made" }),
            evidence,
        );
    }
    outcome(
        NAME,
        Valid::True,
        format!("{node} holds {total} = {initial} initial {acked:+} acknowledged, within [{lo}, {hi}] allowing unknown outcomes"),
        evidence,
    )
}

pub(super) fn no_negative(run: &Judging<'_>) -> CheckOutcome {
    const NAME: &str = "no-negative-balance";
    let mut samples = 0u64;
    for target in run.scrapes.targets() {
        for scrape in run.scrapes.ok(target) {
            for s in scrape
                .samples
                .iter()
                .filter(|s| s.name == "faultline_standby_min_balance")
            {
                samples += 1;
                if s.value < 0.0 {
                    return outcome(
                        NAME,
                        Valid::False,
                        format!(
                            "{target} held a balance of {} at {} ms",
                            s.value,
                            rel_ms_json(scrape.t_us, run.record.meta.start_us)
                        ),
                        json!({"node": target, "min_balance": s.value, "t_ms": rel_ms_json(scrape.t_us, run.record.meta.start_us)}),
                    );
                }
            }
        }
    }
    let states = server_states(run);
    for (node, s) in &states {
        if let Some(faultline_node::protocol::standby::AccountBalance {
            account,
            balance: b,
        }) = s.balances.iter().flatten().find(|a| a.balance < 0)
        {
            return outcome(
                NAME,
                Valid::False,
                format!("{node} ends with account {account} at {b}"),
                json!({"node": node, "account": account, "balance": b}),
            );
        }
    }
    if samples == 0 && states.is_empty() {
        return outcome(
            NAME,
            Valid::Unknown,
            "no scrape and no final state of a server",
            json!(null),
        );
    }
    outcome(
        NAME,
        Valid::True,
        format!(
            "{samples} scraped minimums and {} final states show no negative balance",
            states.len()
        ),
        json!({"samples": samples, "states": states.len()}),
    )
}

pub(super) fn one_primary(run: &Judging<'_>) -> CheckOutcome {
    const NAME: &str = "one-primary";
    let start = run.record.meta.start_us;
    let (ops, _) = bank_ops(run.ops);
    // (invoke, complete, epoch, server) of every acknowledged operation.
    let mut acks: Vec<(u64, u64, u64, &str)> = ops
        .iter()
        .filter(|op| op.src.outcome == ApiOutcome::Ok)
        .filter_map(|op| match &op.reply {
            Some(Reply::Done { epoch, server, .. }) => Some((
                op.src.invoke_us,
                op.src.complete_us.unwrap_or(op.src.invoke_us),
                *epoch,
                server.as_str(),
            )),
            _ => None,
        })
        .collect();
    let mut by_epoch: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for (_, _, e, s) in &acks {
        by_epoch.entry(*e).or_default().insert(s);
    }
    if let Some((e, servers)) = by_epoch.iter().find(|(_, s)| s.len() > 1) {
        return outcome(
            NAME,
            Valid::False,
            format!(
                "epoch {e} was acknowledged by {}",
                servers.iter().copied().collect::<Vec<_>>().join(" and ")
            ),
            json!({"epoch": e, "servers": servers}),
        );
    }
    for (node, s) in server_states(run) {
        for e in &s.acknowledged_in {
            if by_epoch
                .get(e)
                .is_some_and(|set| !set.contains(node.as_str()))
            {
                return outcome(
                    NAME,
                    Valid::False,
                    format!("{node} acknowledged writes in epoch {e}, which another server acknowledged"),
                    json!({"node": node, "epoch": e}),
                );
            }
        }
    }
    // Real time: sorted by completion, the newest epoch of everything that
    // completed before an operation began bounds its epoch from below.
    acks.sort_by_key(|a| a.1);
    let mut newest: Vec<(u64, u64, &str)> = Vec::with_capacity(acks.len());
    for (_, done, e, s) in &acks {
        let prev = newest.last().copied().filter(|p| p.1 >= *e);
        newest.push(prev.map_or((*done, *e, *s), |p| (*done, p.1, p.2)));
    }
    for (invoke, done, e, s) in &acks {
        let before = newest.partition_point(|n| n.0 < *invoke);
        if let Some((t, newer, by)) = before.checked_sub(1).and_then(|i| newest.get(i)) {
            if newer > e {
                return outcome(
                    NAME,
                    Valid::False,
                    format!(
                        "{s} acknowledged in epoch {e} at {} ms, after {by} had acknowledged in epoch {newer} (by {} ms): two primaries at once",
                        rel_ms_json(*done, start),
                        rel_ms_json(*t, start)
                    ),
                    json!({"old": {"server": s, "epoch": e, "invoke_ms": rel_ms_json(*invoke, start)}, "new": {"server": by, "epoch": newer}}),
                );
            }
        }
    }
    outcome(
        NAME,
        Valid::True,
        format!(
            "{} acknowledgements in {} epochs, one server each, epochs in real-time order",
            acks.len(),
            by_epoch.len()
        ),
        json!({"acknowledgements": acks.len(), "epochs": by_epoch.iter().map(|(e, s)| (e.to_string(), s.iter().copied().collect::<Vec<_>>())).collect::<BTreeMap<_, _>>()}),
    )
}
