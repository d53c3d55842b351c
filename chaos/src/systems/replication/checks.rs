//! The replicated store's checks, from the replicas' final `/state` (their
//! logs and stores) and the clients' histories:
//! - `exactly-once`: no request applied twice on any replica (its log,
//!   which travels with checkpoints and state transfers);
//! - `agreement`: the replicas of the final view that have the state hold
//!   the same store at quiescence;
//! - `one-primary` (passive): no two replicas acknowledged requests in one
//!   view;
//! - `linearizable`: per key, against [`StoreModel`].

use super::model::StoreModel;
use crate::check::{check_parallel, CheckOptions, Operation};
use crate::judge::{linearizability_outcome, outcome, LinSummary};
use crate::results::{CheckOutcome, Valid};
use crate::systems::{typed_ops, Judging};
use faultline_node::api::{NodeState, Outcome as ApiOutcome};
use faultline_node::protocol::replication::store::{Op, RequestId};
use faultline_node::protocol::replication::{ReplicationState, Reply};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// Every replica's final state, by node.
fn replicas(run: &Judging<'_>) -> BTreeMap<String, ReplicationState> {
    run.record
        .states
        .iter()
        .filter_map(|(id, v)| {
            let s: NodeState<ReplicationState> = serde_json::from_value(v.clone()).ok()?;
            (s.role == "replica").then_some((id.clone(), s.state))
        })
        .collect()
}

pub(super) fn exactly_once(run: &Judging<'_>) -> CheckOutcome {
    const NAME: &str = "exactly-once";
    let states = replicas(run);
    if states.is_empty() {
        return outcome(NAME, Valid::Unknown, "no replica's final state", json!({}));
    }
    let mut entries = 0;
    for (r, s) in &states {
        let Some(store) = &s.store else { continue };
        let mut seen: BTreeSet<&RequestId> = BTreeSet::new();
        for (i, id) in store.history.iter().enumerate() {
            entries += 1;
            if !seen.insert(id) {
                return outcome(
                    NAME,
                    Valid::False,
                    format!(
                        "{r} applied request {id} twice (the second time at entry {i} of its log)"
                    ),
                    json!({"replica": r, "request": id.to_string(), "entry": i}),
                );
            }
        }
    }
    outcome(
        NAME,
        Valid::True,
        format!(
            "{entries} log entries of {} replicas, no request applied twice",
            states.len()
        ),
        json!({"entries": entries}),
    )
}

pub(super) fn agreement(run: &Judging<'_>) -> CheckOutcome {
    const NAME: &str = "agreement";
    let states = replicas(run);
    let Some(last) = states
        .values()
        .filter_map(|s| s.view.as_ref().map(|v| v.number))
        .max()
    else {
        return outcome(NAME, Valid::Unknown, "no replica has a view", json!({}));
    };
    let finals: Vec<(&String, &ReplicationState)> = states
        .iter()
        .filter(|(_, s)| s.has_state && s.view.as_ref().is_some_and(|v| v.number == last))
        .collect();
    let Some((r0, s0)) = finals.first() else {
        return outcome(
            NAME,
            Valid::Unknown,
            format!("no replica of view {last} has the state"),
            json!({}),
        );
    };
    for (r, s) in &finals[1..] {
        let (Some(a), Some(b)) = (&s.store, &s0.store) else {
            continue;
        };
        if a.counters != b.counters || a.registers != b.registers {
            return outcome(
                NAME,
                Valid::False,
                format!("{r} and {r0} hold different stores in view {last}"),
                json!({"view": last, r.as_str(): {"counters": a.counters, "registers": a.registers},
                       r0.as_str(): {"counters": b.counters, "registers": b.registers}}),
            );
        }
    }
    outcome(
        NAME,
        Valid::True,
        format!(
            "{} replicas of view {last} hold the same store",
            finals.len()
        ),
        json!({"view": last, "replicas": finals.len()}),
    )
}

pub(super) fn one_primary(run: &Judging<'_>, active: bool) -> CheckOutcome {
    const NAME: &str = "one-primary";
    if active {
        return outcome(
            NAME,
            Valid::True,
            "active mode: every member replies",
            json!({}),
        );
    }
    let (ops, _) = typed_ops::<Op, Reply>(run.ops);
    let mut by_view: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for op in &ops {
        if let Some(Reply::Done { replica, view, .. }) = &op.reply {
            by_view.entry(*view).or_default().insert(replica);
        }
    }
    for (v, who) in &by_view {
        if who.len() > 1 {
            return outcome(
                NAME,
                Valid::False,
                format!(
                    "{} replicas acknowledged in view {v}: {}",
                    who.len(),
                    who.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
                json!({"view": v, "replicas": who}),
            );
        }
    }
    outcome(
        NAME,
        Valid::True,
        format!("{} views, one replica acknowledging in each", by_view.len()),
        json!({"views": by_view.len()}),
    )
}

pub(super) fn linearizable(run: &Judging<'_>) -> CheckOutcome {
    let (ops, unreadable) = typed_ops::<Op, Reply>(run.ops);
    let mut history: Vec<Operation<Op, faultline_node::protocol::replication::store::Answer>> =
        Vec::new();
    let mut left_out = 0u64;
    for (n, op) in ops.iter().enumerate() {
        let call = op.src.invoke_us;
        match (&op.src.outcome, &op.reply) {
            (ApiOutcome::Ok, Some(Reply::Done { answer, .. })) => history.push(Operation::ok(
                n as u64,
                op.request.clone(),
                call,
                op.src.complete_us.unwrap_or(call).max(call),
                answer.clone(),
            )),
            (ApiOutcome::Failed, _) => left_out += 1,
            _ if !matches!(op.request, Op::Get { .. }) => {
                history.push(Operation::unknown(n as u64, op.request.clone(), call, None))
            }
            _ => left_out += 1,
        }
    }
    let truncated: u64 = run.record.histories.values().map(|h| h.truncated).sum();
    let result = check_parallel(
        &StoreModel,
        &history,
        &CheckOptions {
            memory_limit: Some(run.opts.lin_memory_limit),
            ..CheckOptions::with_time_limit(run.opts.lin_time_limit)
        },
        run.opts.threads.max(1),
    );
    let base = json!({"operations": history.len(), "left_out": left_out, "unreadable": unreadable, "truncated": truncated});
    linearizability_outcome(
        LinSummary {
            name: "linearizable",
            objects: "keys",
            hint: "counters and registers are separate objects",
            operations: history.len(),
            truncated,
            unreadable,
        },
        result,
        base,
    )
}
