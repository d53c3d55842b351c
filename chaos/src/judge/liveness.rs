//! `liveness`: after each fault the system claims to tolerate heals, ok operations resume
//! within the run's liveness bound; and availability (ok fraction) during each window.
//!
//! Judged from the client histories rather than metrics: an operation's completion time says
//! exactly when progress was seen. A window is unknown rather than false when nothing could
//! have shown progress: the run ended inside the bound, no operation was invoked in it, or a
//! fault outside the model overlapped it.

use super::{outcome, rel_ms, rel_ms_json};
use crate::record::{FaultWindow, RunRecord};
use crate::results::{Availability, CheckOutcome, Valid};
use faultline_node::api::{HistoryOp, Outcome};
use serde_json::{json, Value};

const NAME: &str = "liveness";

pub(crate) fn label(w: &FaultWindow) -> String {
    format!(
        "#{} {} {} on {}",
        w.id,
        w.layer,
        w.fault,
        w.describe_targets()
    )
}

/// What clients got during `[from_us, to_us]`: the operations that completed
/// inside it (an operation that started before a cut and completed after the
/// heal says nothing about the window), and apart, those that spanned it
/// (invoked before its end, completed after it or never).
fn availability(
    window: Option<usize>,
    label: String,
    from_us: u64,
    to_us: u64,
    start_us: u64,
    ops: &[&HistoryOp],
) -> Availability {
    let inside = |t: u64| t >= from_us && t <= to_us;
    let completed: Vec<&&HistoryOp> = ops
        .iter()
        .filter(|o| o.complete_us.is_some_and(inside))
        .collect();
    let spanned = ops
        .iter()
        .filter(|o| o.invoke_us <= to_us && o.complete_us.is_none_or(|c| c > to_us))
        .count() as u64;
    let ok = completed
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .count() as u64;
    let n = completed.len() as u64;
    Availability {
        window,
        label,
        start_s: rel_ms(from_us, start_us) / 1000.0,
        end_s: rel_ms(to_us, start_us) / 1000.0,
        ops: n,
        ok,
        spanned,
        fraction: if n == 0 {
            if spanned == 0 {
                1.0
            } else {
                0.0
            }
        } else {
            ok as f64 / n as f64
        },
    }
}

/// The liveness check and the availability of the whole run and of each window.
pub(crate) fn check(record: &RunRecord, ops: &[&HistoryOp]) -> (CheckOutcome, Vec<Availability>) {
    let meta = &record.meta;
    let start = meta.start_us;
    let whole = availability(None, "whole run".into(), start, meta.end_us, start, ops);
    let mut avail = vec![whole.clone()];
    let bound_us = meta.liveness_bound_ms.saturating_mul(1000);
    let mut verdicts: Vec<(Valid, Value)> = Vec::new();
    for w in &record.windows {
        let a = availability(
            Some(w.id),
            label(w),
            w.start_us,
            w.end_us.unwrap_or(meta.end_us),
            start,
            ops,
        );
        let a_json = json!({"ops": a.ops, "ok": a.ok, "fraction": a.fraction});
        avail.push(a);
        let (true, Some(heal)) = (w.in_model, w.end_us) else {
            continue;
        };
        let deadline = heal.saturating_add(bound_us);
        let first_ok = ops
            .iter()
            .filter(|o| o.outcome == Outcome::Ok)
            .filter_map(|o| Some((o.complete_us?, *o)))
            .filter(|(c, _)| *c > heal)
            .min_by_key(|(c, _)| *c);
        let invoked = ops
            .iter()
            .filter(|o| o.invoke_us > heal && o.invoke_us <= deadline)
            .count();
        let overlapping: Vec<usize> = record
            .windows
            .iter()
            .filter(|o| !o.in_model && o.start_us <= deadline && o.end_us.is_none_or(|e| e > heal))
            .map(|o| o.id)
            .collect();
        let (valid, why) = match first_ok {
            Some((c, _)) if c <= deadline => (Valid::True, "resumed".to_string()),
            _ if meta.end_us < deadline => (
                Valid::Unknown,
                format!(
                    "the run ended {:.0} ms after the heal, inside the bound",
                    rel_ms(meta.end_us, heal)
                ),
            ),
            _ if !overlapping.is_empty() => (
                Valid::Unknown,
                format!("faults outside the model overlapped the bound: {overlapping:?}"),
            ),
            _ if invoked == 0 => (
                Valid::Unknown,
                "no operation was invoked within the bound".to_string(),
            ),
            _ => (
                Valid::False,
                format!(
                    "no ok operation within {} ms of the heal at {:.1} s ({invoked} invoked)",
                    meta.liveness_bound_ms,
                    rel_ms(heal, start) / 1000.0
                ),
            ),
        };
        let first = first_ok.map(|(c, o)| {
            json!({"client": o.client, "kind": o.kind, "history_id": o.id,
                   "complete_ms": rel_ms_json(c, start),
                   "after_heal_ms": (rel_ms(c, heal) * 10.0).round() / 10.0})
        });
        verdicts.push((
            valid,
            json!({
                "window": w.id,
                "label": label(w),
                "valid": valid,
                "why": why,
                "heal_ms": rel_ms_json(heal, start),
                "bound_ms": meta.liveness_bound_ms,
                "first_ok_after_heal": first,
                "invoked_within_bound": invoked,
                "availability": a_json,
            }),
        ));
    }

    let valid = verdicts.iter().fold(Valid::True, |v, (x, _)| v.and(*x));
    let summary = if verdicts.is_empty() {
        if ops.is_empty() {
            return (
                outcome(
                    NAME,
                    Valid::Unknown,
                    "no operations were recorded",
                    Value::Null,
                ),
                avail,
            );
        }
        if record.windows.is_empty() && whole.ok == 0 {
            return (
                outcome(
                    NAME,
                    Valid::False,
                    format!(
                        "none of {} operations succeeded in a run without faults",
                        whole.ops
                    ),
                    json!({"availability": {"ops": whole.ops, "ok": 0}}),
                ),
                avail,
            );
        }
        "no fault inside the model healed; nothing to judge".to_string()
    } else {
        match verdicts.iter().find(|(v, _)| *v == valid) {
            Some((Valid::True, _)) => {
                let worst = verdicts
                    .iter()
                    .filter_map(|(_, e)| e["first_ok_after_heal"]["after_heal_ms"].as_f64())
                    .fold(0.0, f64::max);
                format!(
                    "ok operations resumed after all {} healed faults (slowest {:.0} ms, bound {} ms)",
                    verdicts.len(),
                    worst,
                    meta.liveness_bound_ms
                )
            }
            Some((_, e)) => format!(
                "{}: {}",
                e["label"].as_str().unwrap_or("?"),
                e["why"].as_str().unwrap_or("?")
            ),
            None => String::new(),
        }
    };
    let evidence = json!({
        "windows": verdicts.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        "availability": {"ops": whole.ops, "ok": whole.ok, "fraction": whole.fraction},
    });
    (outcome(NAME, valid, summary, evidence), avail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systems::tokens::fixtures::*;

    fn run(rec: &RunRecord) -> (CheckOutcome, Vec<Availability>) {
        let ops: Vec<&HistoryOp> = rec.histories.values().flat_map(|h| h.ops.iter()).collect();
        check(rec, &ops)
    }

    #[test]
    fn availability_counts_what_completed_inside_the_window() {
        // Issue 6: every client cut from 1 s to 3 s; three pays wait across the
        // cut and complete 0.3 s after the heal. Nothing got through inside.
        let ops = vec![
            paid("c1", 0, "c2", 2, 1_100, 2_200),
            paid("c2", 1, "c1", 2, 1_500, 1_800),
            paid("c1", 0, "c2", 3, 2_000, 1_300),
        ];
        let mut rec = record(ops);
        rec.windows.push(window(
            0,
            "partition",
            "packet",
            &["c1", "c2"],
            1_000,
            Some(3_000),
            json!({}),
        ));
        let (_, avail) = run(&rec);
        let w = &avail[1];
        assert_eq!((w.ops, w.ok, w.spanned), (0, 0, 3), "{w:?}");
        assert_eq!(w.fraction, 0.0);
    }

    #[test]
    fn progress_after_the_heal_is_live_and_none_is_not() {
        // A partition from 1 s to 3 s; pays fail during it.
        let mut ops = vec![
            paid("c1", 0, "c2", 2, 0, 10),
            pay_failed("c2", 1, "c1", "no_quorum", 1_500, 500),
            pay_failed("c2", 1, "c1", "no_quorum", 3_200, 500),
        ];
        let w = window(
            0,
            "partition",
            "packet",
            &["s1"],
            1_000,
            Some(3_000),
            json!({}),
        );
        let mut rec = record(ops.clone());
        rec.windows.push(w.clone());
        let (c, avail) = run(&rec);
        assert_eq!(c.valid, Valid::False, "{}", c.summary);
        assert_eq!(avail.len(), 2);
        assert_eq!((avail[1].ops, avail[1].ok), (1, 0));

        ops.push(paid("c2", 1, "c1", 2, 3_900, 50));
        let mut rec = record(ops.clone());
        rec.windows.push(w.clone());
        assert_eq!(run(&rec).0.valid, Valid::True);

        // Nothing invoked after the heal: nothing to judge.
        let mut rec = record(ops[..2].to_vec());
        rec.windows.push(w.clone());
        assert_eq!(run(&rec).0.valid, Valid::Unknown);

        // The run ended inside the bound.
        let mut rec = record(ops[..3].to_vec());
        rec.windows.push(w);
        rec.meta.end_us = T0 + 4_000_000;
        assert_eq!(run(&rec).0.valid, Valid::Unknown);
    }
}
