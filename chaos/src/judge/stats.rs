//! Numbers without a verdict: operation counts and latency, messages by kind, and the
//! timeline (completions, latency and per-node message rates over time) the report plots.
//!
//! Outcomes are counted as recorded, with `pending` (still running when the history was
//! read) counted as unknown, which is what it is to a checker.

use super::quantile;
use super::scrapes::{increase_over, increases, ScrapeIndex, PROXY};
use crate::record::RunMeta;
use crate::results::{Counts, Quantiles, Stats, TimePoint, Timeline};
use faultline_node::api::{HistoryOp, Outcome};
use std::collections::BTreeMap;

const SENT: &str = "faultline_messages_sent_total";
/// Buckets in a timeline at most; a longer run gets wider buckets.
const MAX_BUCKETS: u64 = 100_000;

fn count(c: &mut Counts, outcome: Outcome) {
    match outcome {
        Outcome::Ok => c.ok += 1,
        Outcome::Failed => c.failed += 1,
        Outcome::Unknown | Outcome::Pending => c.unknown += 1,
    }
}

fn latency_ms(op: &HistoryOp) -> Option<f64> {
    let done = op.complete_us?;
    (op.outcome == Outcome::Ok).then(|| done.saturating_sub(op.invoke_us) as f64 / 1000.0)
}

fn quantiles(mut v: Vec<f64>) -> Quantiles {
    v.sort_by(f64::total_cmp);
    Quantiles {
        p50: quantile(&v, 0.5),
        p90: quantile(&v, 0.9),
        p99: quantile(&v, 0.99),
        max: v.last().copied().unwrap_or(0.0),
    }
}

/// Counts, latency and messages; availability and faults are filled in by their checks.
pub(crate) fn stats(ops: &[&HistoryOp], index: &ScrapeIndex) -> Stats {
    let mut s = Stats::default();
    for op in ops {
        count(&mut s.ops, op.outcome);
        count(s.by_kind.entry(op.kind.clone()).or_default(), op.outcome);
    }
    s.latency_ms = quantiles(ops.iter().filter_map(|o| latency_ms(o)).collect());
    s.messages_by_kind = messages_by_kind(index);
    s
}

/// Messages sent by kind, summed over nodes from zero, restarts added.
fn messages_by_kind(index: &ScrapeIndex) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for target in index.targets().filter(|t| *t != PROXY) {
        let mut prev = None;
        for next in index.ok(target) {
            for (labels, inc) in increases(prev, next, SENT, &|_| true) {
                let kind = labels.get("kind").cloned().unwrap_or_default();
                *out.entry(kind).or_default() += inc;
            }
            prev = Some(next);
        }
    }
    out.into_iter()
        .map(|(k, v)| (k, v.round() as u64))
        .collect()
}

pub(crate) fn timeline(
    meta: &RunMeta,
    ops: &[&HistoryOp],
    index: &ScrapeIndex,
    bucket_s: f64,
) -> Timeline {
    let span_us = meta.end_us.saturating_sub(meta.start_us).max(1);
    let mut bucket_us = if bucket_s.is_finite() && bucket_s > 0.0 {
        ((bucket_s * 1e6) as u64).max(1)
    } else {
        1_000_000
    };
    bucket_us = bucket_us.max(span_us.div_ceil(MAX_BUCKETS));
    let n = span_us.div_ceil(bucket_us) as usize;
    let width_s = bucket_us as f64 / 1e6;

    let mut counts = vec![Counts::default(); n];
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); n];
    for op in ops {
        let Some(done) = op.complete_us else { continue };
        if done < meta.start_us {
            continue;
        }
        let i = ((done - meta.start_us) / bucket_us) as usize;
        let (Some(c), Some(l)) = (counts.get_mut(i), lat.get_mut(i)) else {
            continue;
        };
        count(c, op.outcome);
        if let Some(ms) = latency_ms(op) {
            l.push(ms);
        }
    }
    let points = counts
        .into_iter()
        .zip(lat)
        .enumerate()
        .map(|(i, (c, mut l))| {
            l.sort_by(f64::total_cmp);
            TimePoint {
                t_s: i as f64 * width_s,
                ok_per_s: c.ok as f64 / width_s,
                failed_per_s: c.failed as f64 / width_s,
                unknown_per_s: c.unknown as f64 / width_s,
                p50_ms: quantile(&l, 0.5),
                p99_ms: quantile(&l, 0.99),
            }
        })
        .collect();

    let mut node_rates = BTreeMap::new();
    for target in index.targets().filter(|t| *t != PROXY) {
        let ok = index.ok(target);
        let rates: Vec<(f64, f64)> = ok
            .windows(2)
            .filter_map(|w| {
                let dt = w[1].t_us.checked_sub(w[0].t_us).filter(|d| *d > 0)? as f64 / 1e6;
                let sent = increase_over(Some(w[0]), &w[1..], SENT, &|_| true);
                let t_s = (w[1].t_us as f64 - meta.start_us as f64) / 1e6;
                Some((t_s, sent / dt))
            })
            .collect();
        if !rates.is_empty() {
            node_rates.insert(target.to_string(), rates);
        }
    }
    Timeline {
        bucket_s: width_s,
        points,
        node_rates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Scrape;
    use crate::systems::tokens::fixtures::*;

    #[test]
    fn counts_latency_and_buckets() {
        let mut pending = pay_unknown("c1", 0, "c2", 1_500, 10);
        pending.outcome = Outcome::Pending;
        pending.complete_us = None;
        let h = [
            paid("c1", 0, "c2", 2, 0, 10),
            paid("c2", 0, "c1", 3, 100, 30),
            pay_failed("c1", 1, "c2", "not_owned", 1_200, 5),
            pending,
            read("c1", &[(0, 3)], 2_500, 20),
        ];
        let ops: Vec<&HistoryOp> = h.iter().collect();
        let s = stats(&ops, &ScrapeIndex::new(&[]));
        assert_eq!((s.ops.ok, s.ops.failed, s.ops.unknown), (3, 1, 1));
        assert_eq!(s.by_kind["pay"].total(), 4);
        assert_eq!(s.latency_ms.max, 30.0);
        assert_eq!(s.latency_ms.p50, 20.0);

        let mut m = meta();
        m.end_us = T0 + 3_000_000;
        let t = timeline(&m, &ops, &ScrapeIndex::new(&[]), 1.0);
        assert_eq!(t.points.len(), 3);
        assert_eq!(t.points[0].ok_per_s, 2.0);
        assert_eq!(t.points[0].p99_ms, 30.0);
        assert_eq!(t.points[1].failed_per_s, 1.0);
        assert_eq!(t.points[2].ok_per_s, 1.0);
    }

    #[test]
    fn messages_add_up_across_restarts_and_rates_follow_scrapes() {
        let sent = |kind: &str, v: f64| sample(SENT, &[("peer", "s2"), ("kind", kind)], v);
        let scrapes: Vec<Scrape> = vec![
            scrape_at(0, "s1", vec![sent("read", 10.0)]),
            scrape_at(1_000, "s1", vec![sent("read", 30.0), sent("write", 5.0)]),
            // Restarted.
            scrape_at(2_000, "s1", vec![sent("read", 4.0)]),
        ];
        let idx = ScrapeIndex::new(&scrapes);
        let by_kind = messages_by_kind(&idx);
        assert_eq!(by_kind["read"], 34);
        assert_eq!(by_kind["write"], 5);
        let t = timeline(&meta(), &[], &idx, 1.0);
        assert_eq!(t.node_rates["s1"], vec![(1.0, 25.0), (2.0, 4.0)]);
    }
}
