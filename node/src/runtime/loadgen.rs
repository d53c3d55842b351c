//! What every system's load generator shares: running one request through
//! the core with or without recording it in the history, and tallying
//! outcomes and latencies (an HDR histogram, so an hour at tens of thousands
//! of operations per second stays a few kilobytes).
//! Running inside the node (rather than one HTTP call per operation) is what
//! lets a benchmark measure the protocol instead of the admin API.

use super::admin::to_json;
use super::Handle;
use crate::api::{LoadStats, Outcome};
use crate::system::System;
use hdrhistogram::Histogram;
use std::time::Duration;

/// Runs `request` on the node's core; with `record`, the operation goes into
/// the history like one from `/ops`. `None` when the node is shutting down.
pub async fn call<S: System>(h: &Handle<S>, record: bool, request: S::Request) -> Option<S::Reply> {
    if !record {
        return h.call(request).await;
    }
    let kind = S::request_kind(&request);
    let id = h.history.invoke(&h.id, kind, to_json(&request));
    let reply = h.call(request).await?;
    h.history.complete(id, S::outcome(&reply), to_json(&reply));
    Some(reply)
}

/// A closed-loop load run: `spec.concurrency` workers, each with its own
/// RNG (seeded by its number), keep one operation from `next` in flight
/// until `spec.duration_ms` has passed; `tally` counts their outcomes.
/// Returns the seconds it ran. A worker stops early when the node shuts
/// down.
pub async fn closed_loop<S, F>(
    h: &std::sync::Arc<Handle<S>>,
    spec: &crate::api::LoadSpec,
    tally: &std::sync::Arc<std::sync::Mutex<Tally>>,
    next: F,
) -> f64
where
    S: System,
    F: Fn(&mut rand_chacha::ChaCha8Rng) -> S::Request + Clone + Send + 'static,
{
    let start = std::time::Instant::now();
    let end = start + Duration::from_millis(spec.duration_ms);
    let mut tasks = Vec::new();
    for w in 0..spec.concurrency {
        let (h, tally, next) = (h.clone(), tally.clone(), next.clone());
        let record = spec.record;
        tasks.push(tokio::spawn(async move {
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(w as u64);
            while std::time::Instant::now() < end {
                let request = next(&mut rng);
                let t0 = std::time::Instant::now();
                let Some(reply) = call(&h, record, request).await else {
                    return;
                };
                let latency = t0.elapsed();
                let Ok(mut t) = tally.lock() else { return };
                t.add(S::outcome(&reply), latency);
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            tracing::warn!(error = %e, "a load worker ended abnormally");
        }
    }
    start.elapsed().as_secs_f64()
}

/// Outcomes and latencies of one load run's measured operation.
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    pub unknown: u64,
    /// Helper operations the generator needed (not measured).
    pub reads: u64,
    /// Latencies of successful operations, microseconds, 1 µs to 1 h at
    /// three significant digits.
    latencies_us: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            ok: 0,
            failed: 0,
            unknown: 0,
            reads: 0,
            latencies_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).expect("3 significant digits is valid")),
        }
    }
}

impl Tally {
    /// Counts one measured operation; `latency` only counts for `ok`.
    pub fn add(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Ok => {
                self.ok += 1;
                let us = (latency.as_micros() as u64).clamp(1, 3_600_000_000);
                // Within the bounds set above, recording cannot fail.
                let _ = self.latencies_us.record(us);
            }
            Outcome::Failed => self.failed += 1,
            Outcome::Unknown | Outcome::Pending => self.unknown += 1,
        }
    }

    /// The run's figures: `op` names the measured operation.
    pub fn stats(&self, node: &str, op: &str, seconds: f64) -> LoadStats {
        let ms = |q: f64| -> f64 {
            if self.latencies_us.is_empty() {
                0.0
            } else {
                self.latencies_us.value_at_quantile(q) as f64 / 1000.0
            }
        };
        LoadStats {
            node: node.to_string(),
            op: op.to_string(),
            seconds,
            ok: self.ok,
            failed: self.failed,
            unknown: self.unknown,
            reads: self.reads,
            ok_per_second: self.ok as f64 / seconds.max(1e-9),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            max_ms: if self.latencies_us.is_empty() {
                0.0
            } else {
                self.latencies_us.max() as f64 / 1000.0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_outcomes_and_quantiles_of_ok_latencies() {
        let mut t = Tally::default();
        for ms in 1..=100u64 {
            t.add(Outcome::Ok, Duration::from_millis(ms));
        }
        t.add(Outcome::Failed, Duration::from_secs(9));
        t.add(Outcome::Unknown, Duration::from_secs(9));
        let s = t.stats("c1", "pay", 2.0);
        assert_eq!((s.ok, s.failed, s.unknown), (100, 1, 1));
        assert_eq!(s.ok_per_second, 50.0);
        assert!((s.p50_ms - 50.0).abs() < 0.1, "p50 {}", s.p50_ms);
        assert!((s.p99_ms - 99.0).abs() < 0.1, "p99 {}", s.p99_ms);
        assert!((s.max_ms - 100.0).abs() < 0.1, "max {}", s.max_ms);
    }
}
