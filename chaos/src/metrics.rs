//! The controller's own Prometheus metrics: runs by verdict, the last verdict
//! and duration per scenario, the faults in effect now (for Grafana's fault
//! annotations and the "fault held past its lease" alert), and the schedule's
//! next run. One registry per process, served on `--metrics ADDR` by `run`
//! and `schedule`; every name is documented in README.md.

use crate::results::Valid;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry,
    TextEncoder,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Run durations, seconds: a 15 s test scenario up to a two-hour soak.
const RUN_BUCKETS: &[f64] = &[10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 7200.0];

/// Labels of one applied fault: the scenario, the fault's kind and layer,
/// and its targets as the schedule prints them (`s1,s2`, or the cut).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultLabels {
    pub scenario: String,
    pub fault: String,
    pub layer: String,
    pub targets: String,
}

impl FaultLabels {
    /// The labels of a fault window of `scenario` (its targets as the
    /// schedule prints them).
    pub fn of(scenario: &str, w: &crate::record::FaultWindow) -> Self {
        FaultLabels {
            scenario: scenario.to_string(),
            fault: w.fault.clone(),
            layer: w.layer.clone(),
            targets: w.describe_targets(),
        }
    }

    fn values(&self) -> [&str; 4] {
        [&self.scenario, &self.fault, &self.layer, &self.targets]
    }
}

pub struct ControllerMetrics {
    pub registry: Registry,
    runs: IntCounterVec,
    last_verdict: GaugeVec,
    last_run_end: GaugeVec,
    run_duration: HistogramVec,
    run_active: GaugeVec,
    fault_active: GaugeVec,
    fault_applied_at: GaugeVec,
    fault_lease: GaugeVec,
    /// The faults with series now, to remove a run's all at once.
    faults: Mutex<Vec<FaultLabels>>,
    next_run: Gauge,
}

/// The value of `faultline_chaos_last_verdict`: 1 valid, 0 unknown, -1
/// invalid, so that `< 0` is the alert and `min` over scenarios the worst.
pub fn verdict_value(v: Valid) -> f64 {
    match v {
        Valid::True => 1.0,
        Valid::Unknown => 0.0,
        Valid::False => -1.0,
    }
}

/// The verdict as a label value and in a schedule's index.
pub fn verdict_name(v: Valid) -> &'static str {
    match v {
        Valid::True => "valid",
        Valid::Unknown => "unknown",
        Valid::False => "invalid",
    }
}

fn unix_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl ControllerMetrics {
    pub fn new() -> Arc<Self> {
        let r = Registry::new();
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
            r.register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let runs = IntCounterVec::new(
            Opts::new(
                "faultline_chaos_runs_total",
                "Runs finished, by scenario and verdict (valid, invalid, unknown).",
            ),
            &["scenario", "verdict"],
        )
        .expect("valid metric definition");
        r.register(Box::new(runs.clone()))
            .expect("metric registered once");
        let run_duration = HistogramVec::new(
            HistogramOpts::new(
                "faultline_chaos_run_duration_seconds",
                "Wall time of a whole run, cluster up to verdict, seconds.",
            )
            .buckets(RUN_BUCKETS.to_vec()),
            &["scenario"],
        )
        .expect("valid metric definition");
        r.register(Box::new(run_duration.clone()))
            .expect("metric registered once");
        let next_run = Gauge::new(
            "faultline_chaos_next_run_timestamp_seconds",
            "When the schedule starts its next round of runs, Unix seconds (0: none planned).",
        )
        .expect("valid metric definition");
        r.register(Box::new(next_run.clone()))
            .expect("metric registered once");
        Arc::new(Self {
            last_verdict: gauge_vec(
                "faultline_chaos_last_verdict",
                "The last run's verdict per scenario: 1 valid, 0 unknown, -1 invalid.",
                &["scenario"],
            ),
            last_run_end: gauge_vec(
                "faultline_chaos_last_run_end_timestamp_seconds",
                "When the last run of each scenario was judged, Unix seconds.",
                &["scenario"],
            ),
            run_active: gauge_vec(
                "faultline_chaos_run_active",
                "1 while a run of the scenario is going on.",
                &["scenario"],
            ),
            fault_active: gauge_vec(
                "faultline_chaos_fault_active",
                "1 while the controller holds this fault applied (removed when healed).",
                &["scenario", "fault", "layer", "targets"],
            ),
            fault_applied_at: gauge_vec(
                "faultline_chaos_fault_applied_timestamp_seconds",
                "When the fault in effect was applied, Unix seconds.",
                &["scenario", "fault", "layer", "targets"],
            ),
            fault_lease: gauge_vec(
                "faultline_chaos_fault_lease_seconds",
                "The lease the fault in effect was applied with, seconds: past it, the \
                 nodes and the proxy drop it by themselves.",
                &["scenario", "fault", "layer", "targets"],
            ),
            faults: Mutex::default(),
            registry: r,
            runs,
            run_duration,
            next_run,
        })
    }

    pub fn run_started(&self, scenario: &str) {
        self.run_active.with_label_values(&[scenario]).set(1.0);
    }

    /// A run ended with `verdict` after `took_s` seconds; clears any fault
    /// series it left (every fault is healed by then).
    pub fn run_finished(&self, scenario: &str, verdict: Valid, took_s: f64) {
        self.run_active.with_label_values(&[scenario]).set(0.0);
        self.restore(scenario, verdict, 1, unix_s());
        self.run_duration
            .with_label_values(&[scenario])
            .observe(took_s.max(0.0));
        self.faults_cleared(scenario);
    }

    /// Counts `n` runs of `scenario` with `verdict` and sets it as the last
    /// one (ended at `end_s`): how a schedule that restarts puts back what
    /// its index holds.
    pub fn restore(&self, scenario: &str, verdict: Valid, n: u64, end_s: f64) {
        self.runs
            .with_label_values(&[scenario, verdict_name(verdict)])
            .inc_by(n);
        self.last_verdict
            .with_label_values(&[scenario])
            .set(verdict_value(verdict));
        self.last_run_end.with_label_values(&[scenario]).set(end_s);
    }

    pub fn fault_applied(&self, f: &FaultLabels, lease_s: f64) {
        let v = f.values();
        self.fault_active.with_label_values(&v).set(1.0);
        self.fault_applied_at.with_label_values(&v).set(unix_s());
        self.fault_lease.with_label_values(&v).set(lease_s);
        if let Ok(mut faults) = self.faults.lock() {
            faults.retain(|g| g != f);
            faults.push(f.clone());
        }
    }

    pub fn fault_healed(&self, f: &FaultLabels) {
        let v = f.values();
        // Removed, not set to 0: a healed fault is no series at all, so a
        // dashboard's `== 1` and the alert see only what holds now.
        let _ = self.fault_active.remove_label_values(&v);
        let _ = self.fault_applied_at.remove_label_values(&v);
        let _ = self.fault_lease.remove_label_values(&v);
        if let Ok(mut faults) = self.faults.lock() {
            faults.retain(|g| g != f);
        }
    }

    /// Every fault of `scenario` healed at once (the end of a run).
    pub fn faults_cleared(&self, scenario: &str) {
        let gone: Vec<FaultLabels> = match self.faults.lock() {
            Ok(faults) => faults
                .iter()
                .filter(|f| f.scenario == scenario)
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        for f in &gone {
            self.fault_healed(f);
        }
    }

    pub fn next_run_at(&self, unix_s: f64) {
        self.next_run.set(unix_s);
    }

    /// The registry in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!("cannot encode the controller's metrics: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Serves `GET /metrics` on `addr` until the process ends; returns the
/// address bound (port 0 picks one).
pub async fn serve(
    metrics: Arc<ControllerMetrics>,
    addr: SocketAddr,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    m.render(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("the controller's metrics endpoint stopped: {e}");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> FaultLabels {
        FaultLabels {
            scenario: "demo".into(),
            fault: "omission".into(),
            layer: "message".into(),
            targets: "s1,s2".into(),
        }
    }

    #[test]
    fn a_fault_is_a_series_only_while_it_holds() {
        let m = ControllerMetrics::new();
        m.fault_applied(&labels(), 8.0);
        let text = m.render();
        assert!(text.contains(
            r#"faultline_chaos_fault_active{fault="omission",layer="message",scenario="demo",targets="s1,s2"} 1"#
        ), "{text}");
        assert!(
            text.contains("faultline_chaos_fault_lease_seconds{"),
            "{text}"
        );
        m.fault_healed(&labels());
        assert!(!m.render().contains("faultline_chaos_fault_active{"));
    }

    #[test]
    fn a_finished_run_counts_its_verdict_and_clears_its_faults() {
        let m = ControllerMetrics::new();
        m.run_started("demo");
        m.fault_applied(&labels(), 8.0);
        m.run_finished("demo", Valid::False, 42.0);
        let text = m.render();
        assert!(
            text.contains(r#"faultline_chaos_runs_total{scenario="demo",verdict="invalid"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"faultline_chaos_last_verdict{scenario="demo"} -1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"faultline_chaos_run_active{scenario="demo"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"faultline_chaos_run_duration_seconds_sum{scenario="demo"} 42"#),
            "{text}"
        );
        assert!(!text.contains("faultline_chaos_fault_active{"), "{text}");
    }
}
