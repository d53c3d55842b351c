//! The replicated store's checks, from the replicas' final `/state` (their
//! logs and stores) and the clients' histories:
//! - `exactly-once`: no request applied twice on any replica (its log,
//!   which travels with checkpoints and state transfers);
//! - `agreement`: the replicas of the final view that have the state hold
//!   the same store at quiescence;
//! - `one-primary` (passive): no two replicas acknowledged requests in one
//!   view;
//! - `linearizable`: per key, against [`StoreModel`];
//! - `detection`: per fault on a replica, the time to the view that left
//!   it out (kill to new view).

use super::model::StoreModel;
use crate::check::{check_parallel, CheckOptions, Operation};
use crate::judge::{linearizability_outcome, outcome, LinSummary};
use crate::record::{FaultWindow, RunRecord};
use crate::results::{CheckOutcome, Valid};
use crate::systems::{typed_ops, Judging};
use faultline_node::api::{NodeState, Outcome as ApiOutcome};
use faultline_node::protocol::replication::store::{Op, RequestId};
use faultline_node::protocol::replication::{ReplicationState, Reply};
use serde::Serialize;
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
                        "{r} applied request {id} twice (the second time at entry {} of its log)",
                        store.history_dropped + i as u64
                    ),
                    json!({"replica": r, "request": id.to_string(), "entry": store.history_dropped + i as u64}),
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

/// One fault on a replica and how long the group took to notice it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct Detection {
    pub fault: usize,
    pub kind: String,
    pub replica: String,
    /// From the fault's start to the first view the RM made without the
    /// replica; `None`: no such view while the fault lasted.
    pub ms: Option<f64>,
    /// The view that left the replica out.
    pub view: Option<u64>,
}

/// Whether a fault silences its targets toward their LFDs: a process
/// fault, a partition, or a message fault that loses every heartbeat or
/// echo (a drop of replies, or of some heartbeats, leaves the detectors
/// nothing to notice).
fn silences(w: &FaultWindow) -> bool {
    if w.layer == "process" || w.fault == "partition" {
        return true;
    }
    w.layer == "message"
        && w.detail["rules"].as_array().is_some_and(|rules| {
            rules.iter().any(|r| {
                matches!(r["kind"].as_str(), Some("echo" | "heartbeat" | "*"))
                    && (r["drop"].as_f64() >= Some(1.0) || r["cut"].as_bool() == Some(true))
            })
        })
}

/// Detection time per fault (kill to new view, as issue 10 asks): for every
/// fault window on a replica, the first view the RM made after the fault
/// began (and before it healed, plus the bound) that leaves the replica
/// out, with the RM's view times placed on the controller's clock by its
/// `clock_origin_us`. Invalid when a replica killed or paused for longer
/// than the liveness bound stays in the view past the bound; unknown when
/// the RM restarted after the first such fault (its views of before are
/// gone) or reports no clock.
pub(super) fn detection(record: &RunRecord, replicas: &[String]) -> CheckOutcome {
    const NAME: &str = "detection";
    let rm = record.states.values().find_map(|v| {
        let s: NodeState<ReplicationState> = serde_json::from_value(v.clone()).ok()?;
        (s.role == "rm").then_some(s)
    });
    let faults: Vec<_> = record
        .windows
        .iter()
        .filter(|w| w.in_model && silences(w) && w.targets.iter().any(|t| replicas.contains(t)))
        .collect();
    if faults.is_empty() {
        return outcome(NAME, Valid::True, "no fault on a replica", json!({}));
    }
    let Some(rm) = rm.filter(|s| s.clock_origin_us > 0) else {
        return outcome(
            NAME,
            Valid::Unknown,
            "no RM state with a clock origin",
            json!({}),
        );
    };
    let origin = rm.clock_origin_us;
    let bound_us = record.meta.liveness_bound_ms * 1_000;
    let mut found = Vec::new();
    let mut late = Vec::new();
    let mut unmeasured = 0;
    for w in &faults {
        if w.start_us < origin {
            unmeasured += 1; // the RM restarted since: its earlier views are gone
            continue;
        }
        let until = w.end_us.unwrap_or(record.meta.end_us) + bound_us;
        for r in w.targets.iter().filter(|t| replicas.contains(t)) {
            let hit = rm.state.views_made.iter().find(|m| {
                let at = origin + m.at;
                at >= w.start_us && at <= until && !m.view.members.contains(r)
            });
            let d = Detection {
                fault: w.id,
                kind: w.fault.clone(),
                replica: r.clone(),
                ms: hit.map(|m| (origin + m.at - w.start_us) as f64 / 1_000.0),
                view: hit.map(|m| m.view.number),
            };
            let lasted = w
                .end_us
                .unwrap_or(record.meta.end_us)
                .saturating_sub(w.start_us);
            let must = matches!(w.fault.as_str(), "kill" | "pause") && lasted > bound_us;
            if must && d.ms.is_none_or(|ms| ms > bound_us as f64 / 1_000.0) {
                late.push(d.clone());
            }
            found.push(d);
        }
    }
    let said: Vec<String> = found
        .iter()
        .map(|d| match (d.ms, d.view) {
            (Some(ms), Some(v)) => format!(
                "{} of {} (fault {}): {ms:.0} ms to view {v}",
                d.kind, d.replica, d.fault
            ),
            _ => format!(
                "{} of {} (fault {}): never left the view",
                d.kind, d.replica, d.fault
            ),
        })
        .collect();
    let details = json!({"detections": found, "unmeasured": unmeasured});
    if let Some(d) = late.first() {
        return outcome(
            NAME,
            Valid::False,
            format!(
                "{} of {} (fault {}) was not detected within the {} ms bound; {}",
                d.kind,
                d.replica,
                d.fault,
                record.meta.liveness_bound_ms,
                said.join("; ")
            ),
            details,
        );
    }
    if found.is_empty() {
        return outcome(
            NAME,
            Valid::Unknown,
            format!("{unmeasured} faults on replicas, none measured: the RM restarted after them"),
            details,
        );
    }
    outcome(NAME, Valid::True, said.join("; "), details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::fixtures::{record, window, T0};
    use faultline_node::protocol::replication::view::View;
    use faultline_node::protocol::replication::ViewMade;

    fn replicas() -> Vec<String> {
        ["r1", "r2", "r3"].iter().map(|s| s.to_string()).collect()
    }

    /// The RM's final state: views made at `ms` into the run, with members.
    fn rm(origin_us: u64, made: &[(u64, u64, &[&str])]) -> serde_json::Value {
        let state = ReplicationState {
            mode: "passive".into(),
            views_made: made
                .iter()
                .map(|(n, ms, members)| ViewMade {
                    view: View {
                        number: *n,
                        members: members.iter().map(|m| m.to_string()).collect(),
                        primary: members.first().map(|m| m.to_string()),
                    },
                    at: T0 + ms * 1_000 - origin_us,
                })
                .collect(),
            ..ReplicationState::default()
        };
        serde_json::to_value(NodeState {
            system: "replication".into(),
            id: "m1".into(),
            role: "rm".into(),
            ready: true,
            clock_origin_us: origin_us,
            state,
        })
        .expect("plain data")
    }

    fn killed_r1() -> RunRecord {
        let mut rec = record();
        // r1 killed from 1 s to 4 s (longer than the 2 s bound).
        rec.windows.push(window(
            0,
            "kill",
            "process",
            &["r1"],
            1_000,
            Some(4_000),
            json!({}),
        ));
        // Replies dropped on every replica: nothing for the detectors.
        rec.windows.push(window(
            1,
            "drop",
            "message",
            &["r1", "r2", "r3"],
            500,
            Some(6_000),
            json!({"rules": [{"kind": "reply", "drop": 0.2, "cut": false}]}),
        ));
        rec
    }

    #[test]
    fn the_time_to_the_view_without_the_replica_is_reported_per_fault() {
        let mut rec = killed_r1();
        rec.states.insert(
            "m1".into(),
            rm(
                T0 - 5_000_000,
                &[(1, 0, &["r1", "r2", "r3"]), (2, 1_180, &["r2", "r3"])],
            ),
        );
        let c = detection(&rec, &replicas());
        assert_eq!(c.valid, Valid::True, "{}", c.summary);
        assert_eq!(c.summary, "kill of r1 (fault 0): 180 ms to view 2");
        assert_eq!(c.evidence["detections"][0]["ms"], 180.0);
    }

    #[test]
    fn a_killed_replica_left_in_the_views_past_the_bound_is_invalid() {
        let mut rec = killed_r1();
        // A view is made, but it still has r1; the one without it is late.
        rec.states.insert(
            "m1".into(),
            rm(
                T0,
                &[
                    (1, 0, &["r1", "r2", "r3"]),
                    (2, 1_100, &["r1", "r2"]),
                    (3, 3_500, &["r2"]),
                ],
            ),
        );
        let c = detection(&rec, &replicas());
        assert_eq!(c.valid, Valid::False, "{}", c.summary);
        assert!(
            c.summary.contains("not detected within the 2000 ms bound"),
            "{}",
            c.summary
        );
        // Never left: invalid too.
        rec.states
            .insert("m1".into(), rm(T0, &[(1, 0, &["r1", "r2", "r3"])]));
        assert_eq!(detection(&rec, &replicas()).valid, Valid::False);
    }

    #[test]
    fn an_rm_restarted_after_the_fault_cannot_say() {
        let mut rec = killed_r1();
        rec.states.insert(
            "m1".into(),
            rm(T0 + 5_000_000, &[(4, 5_100, &["r1", "r2", "r3"])]),
        );
        let c = detection(&rec, &replicas());
        assert_eq!(c.valid, Valid::Unknown, "{}", c.summary);
        rec.states.clear();
        assert_eq!(detection(&rec, &replicas()).valid, Valid::Unknown);
    }

    #[test]
    fn faults_that_leave_the_detectors_nothing_to_notice_are_not_counted() {
        let mut rec = killed_r1();
        rec.windows.remove(0);
        let c = detection(&rec, &replicas());
        assert_eq!(c.valid, Valid::True, "{}", c.summary);
        assert_eq!(c.summary, "no fault on a replica");
    }
}
