//! The judge: turns a recorded run ([`RunRecord`]) into a verdict ([`Results`]).
//!
//! Every check is a pure function of the record and lives in its own file, so each can be
//! tested on hand-built records and read on its own. The system's own checks (safety of its
//! histories and states) live in `systems/<system>/` and run through
//! [`ChaosSystem::checks`](crate::systems::ChaosSystem::checks); the generic ones are here:
//! - [`liveness`]: `liveness`, progress after each healed in-model fault, and availability.
//! - [`faults`]: `faults-applied`, each fault as configured next to what was measured.
//! - [`stats`]: operation counts, latency, messages and the timeline (no verdict).
//! - [`scrapes`]: reading counters and gauges out of the recorded scrapes.
//!
//! The verdict is never `false` without evidence that cannot be explained by missing data:
//! wherever data is missing or a bound is hit, a check says `unknown` instead.

mod faults;
#[cfg(test)]
pub(crate) mod fixtures;
mod liveness;
mod scrapes;
mod stats;

use crate::record::RunRecord;
use crate::results::{CheckOutcome, Results, Valid};
use crate::systems::{ChaosSystem, Judging};
use faultline_node::api::HistoryOp;
use std::time::Duration;

pub use scrapes::ScrapeIndex;

/// The default bound on the linearizability search's memory, MiB: what a CI
/// runner with a few GiB survives next to the cluster it judged.
pub const DEFAULT_LIN_MEMORY_MB: usize = 1024;

/// Knobs of a judgement.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgeOptions {
    /// Wall-clock bound on the linearizability search; past it `linearizable` is unknown.
    pub lin_time_limit: Duration,
    /// Wall-clock bound on shrinking a counter-example once one is found. When it runs out the
    /// counter-example is still reported, only less small.
    pub shrink_time_limit: Duration,
    /// Bound on the memory of the linearizability search, bytes; past it a token's
    /// search stops and `linearizable` says unknown ("memory limit").
    pub lin_memory_limit: usize,
    /// Threads for the linearizability search (partitions are searched in parallel).
    pub threads: usize,
    /// Width of a timeline bucket, seconds.
    pub bucket_s: f64,
}

impl Default for JudgeOptions {
    fn default() -> Self {
        JudgeOptions {
            lin_time_limit: Duration::from_secs(30),
            shrink_time_limit: Duration::from_secs(10),
            lin_memory_limit: DEFAULT_LIN_MEMORY_MB << 20,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            bucket_s: 1.0,
        }
    }
}

/// Judges a recorded run: every check, the statistics and the timeline.
pub fn judge(record: &RunRecord, run_dir: &str, opts: &JudgeOptions) -> Results {
    let t0 = std::time::Instant::now();
    let meta = &record.meta;
    let ops: Vec<&HistoryOp> = record
        .histories
        .values()
        .flat_map(|h| h.ops.iter())
        .collect();
    let index = scrapes::ScrapeIndex::new(&record.scrapes);

    let t_live = std::time::Instant::now();
    let (mut live, availability) = liveness::check(record, &ops);
    live.took_ms = t_live.elapsed().as_secs_f64() * 1000.0;
    let t_faults = std::time::Instant::now();
    let (mut applied, fault_measures) = faults::check(record, &index);
    applied.took_ms = t_faults.elapsed().as_secs_f64() * 1000.0;
    let run = Judging {
        record,
        ops: &ops,
        scrapes: &index,
        opts,
    };
    let (mut checks, quiescent) = crate::with_chaos_system!(
        meta.system.as_str(),
        |S| (S::checks(&run), S::QUIESCENT_CHECKS as &[&str]),
        else (
            vec![outcome(
                "system",
                Valid::Unknown,
                format!("this build has no checks for system {:?}", meta.system),
                serde_json::Value::Null,
            )],
            &[] as &[&str]
        )
    );
    checks.push(live);
    checks.push(applied);
    if let Some(at) = meta.interrupted_us {
        let at_s = rel_ms(at, meta.start_us) / 1000.0;
        let cause = if meta.controller_died {
            format!(
                "the controller stopped at {at_s:.1} s (its history read back from history.jsonl)"
            )
        } else {
            format!("interrupted at {at_s:.1} s")
        };
        interrupted(&mut checks, quiescent, at_s, &cause);
    }

    let mut stats = stats::stats(&ops, &index);
    stats.availability = availability;
    stats.faults = fault_measures;
    let timeline = stats::timeline(meta, &ops, &index, opts.bucket_s);

    Results {
        valid: Results::combine(&checks),
        scenario: meta.scenario.clone(),
        system: meta.system.clone(),
        seed: meta.seed,
        run_dir: run_dir.to_string(),
        start_us: meta.start_us,
        duration_s: meta.end_us.saturating_sub(meta.start_us) as f64 / 1e6,
        checks,
        stats,
        timeline,
        windows: record.windows.clone(),
        judge_s: t0.elapsed().as_secs_f64(),
    }
}

/// A run cut short: what needs the end of the run (quiescence, progress after
/// the last heal) is unknown, the history-based safety checks stand (operations
/// in flight are pending, which they allow), and `run-complete` says why the
/// verdict cannot be `true`.
fn interrupted(checks: &mut Vec<CheckOutcome>, quiescent: &[&str], at_s: f64, cause: &str) {
    let why = format!("the run ended early ({cause}), before quiescence");
    for c in checks.iter_mut() {
        if quiescent.contains(&c.name.as_str())
            || matches!(c.name.as_str(), "liveness" | "faults-applied")
        {
            c.valid = Valid::Unknown;
            c.summary = format!("{why}; not judged (it would have said: {})", c.summary);
        }
    }
    checks.push(outcome(
        "run-complete",
        Valid::Unknown,
        cause.to_string(),
        serde_json::json!({ "interrupted_s": at_s }),
    ));
}

/// Milliseconds from the run's start; negative for times before it.
pub(crate) fn rel_ms(t_us: u64, start_us: u64) -> f64 {
    (t_us as f64 - start_us as f64) / 1000.0
}

/// Milliseconds from the run's start rounded to a tenth, for evidence a person reads.
pub(crate) fn rel_ms_json(t_us: u64, start_us: u64) -> serde_json::Value {
    serde_json::json!((rel_ms(t_us, start_us) * 10.0).round() / 10.0)
}

pub(crate) fn outcome(
    name: &str,
    valid: Valid,
    summary: impl Into<String>,
    evidence: serde_json::Value,
) -> CheckOutcome {
    CheckOutcome {
        name: name.to_string(),
        valid,
        summary: summary.into(),
        evidence,
        took_ms: 0.0,
    }
}

/// What a partitioned linearizability search said, as a check: invalid
/// with its counter-example, valid, or unknown when the search stopped or
/// operations were not kept (`truncated`) or not readable (`unreadable`).
/// `objects` names a partition's kind in the summary ("accounts",
/// "sites"); `hint` follows an invalid summary.
pub(crate) struct LinSummary<'a> {
    pub name: &'a str,
    pub objects: &'a str,
    pub hint: &'a str,
    pub operations: usize,
    pub truncated: u64,
    pub unreadable: usize,
}

pub(crate) fn linearizability_outcome(
    s: LinSummary<'_>,
    result: Result<crate::check::CheckResult, crate::check::CheckError>,
    base: serde_json::Value,
) -> CheckOutcome {
    use crate::check::Verdict;
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            return outcome(
                s.name,
                Valid::Unknown,
                format!("the history could not be checked: {e}"),
                base,
            )
        }
    };
    let caveat = (s.truncated > 0 || s.unreadable > 0).then(|| {
        format!(
            "{} operations not kept and {} unreadable",
            s.truncated, s.unreadable
        )
    });
    match (result.verdict, result.counterexample) {
        (Verdict::Invalid, Some(cx)) => {
            let summary = format!(
                "{}: no order of its {} operations explains every answer ({})",
                cx.partition, cx.partition_ops, s.hint
            );
            let mut evidence = base;
            evidence["counterexample"] = serde_json::to_value(&cx).unwrap_or_default();
            match caveat {
                None => outcome(s.name, Valid::False, summary, evidence),
                Some(c) => outcome(
                    s.name,
                    Valid::Unknown,
                    format!("{summary}; but {c}"),
                    evidence,
                ),
            }
        }
        (Verdict::Valid, _) => {
            let summary = format!(
                "{} operations on {} {} are linearizable",
                s.operations, result.partitions_total, s.objects
            );
            match caveat {
                None => outcome(s.name, Valid::True, summary, base),
                Some(c) => outcome(s.name, Valid::Unknown, format!("{summary}, but {c}"), base),
            }
        }
        _ => outcome(
            s.name,
            Valid::Unknown,
            format!(
                "search stopped with {} of {} {} checked and none invalid",
                result.partitions_checked, result.partitions_total, s.objects
            ),
            base,
        ),
    }
}

/// Runs one check and records how long it took, so that a slow judgement
/// names its check (`took_ms`, printed when it is over a second).
pub fn timed(check: impl FnOnce() -> CheckOutcome) -> CheckOutcome {
    let t0 = std::time::Instant::now();
    let mut c = check();
    c.took_ms = t0.elapsed().as_secs_f64() * 1000.0;
    c
}

/// Nearest-rank quantile of sorted values; 0 for none.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
