//! Prometheus metrics of one proxy: what each direction really did (counters,
//! measured added delay) next to what was configured (gauges), so a report can
//! put the two side by side.
//!
//! One registry per proxy (not the global one) so several proxies can live in
//! one test process. Label children are resolved once per direction at start
//! so the data path only touches atomics.

use std::collections::BTreeMap;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    Opts, Registry, TextEncoder,
};
use serde::{Deserialize, Serialize};

use super::error::ProxyError;
use super::faults::{DropReason, FaultSpec};

/// Seconds; from 10 us (the proxy's own cost) to 10 s (a long configured delay).
const DELAY_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub(crate) struct ProxyMetrics {
    pub registry: Registry,
    forwarded: IntCounterVec,
    bytes: IntCounterVec,
    dropped: IntCounterVec,
    duplicated: IntCounterVec,
    delayed: IntCounterVec,
    reordered: IntCounterVec,
    added_delay: HistogramVec,
    cfg_drop: GaugeVec,
    cfg_burst: GaugeVec,
    cfg_delay: GaugeVec,
    cfg_jitter: GaugeVec,
    cfg_duplicate: GaugeVec,
    cfg_bandwidth: GaugeVec,
    cfg_blackhole: GaugeVec,
    cfg_reorder: GaugeVec,
    partitioned: GaugeVec,
}

/// Handles of one direction, resolved once.
pub(crate) struct DirMetrics {
    pub forwarded: IntCounter,
    pub bytes: IntCounter,
    pub dropped: Vec<IntCounter>,
    pub duplicated: IntCounter,
    pub delayed: IntCounter,
    pub reordered: IntCounter,
    pub added_delay: Histogram,
    cfg_drop: Gauge,
    cfg_burst: Gauge,
    cfg_delay: Gauge,
    cfg_jitter: Gauge,
    cfg_duplicate: Gauge,
    cfg_bandwidth: Gauge,
    cfg_blackhole: Gauge,
    cfg_reorder: Gauge,
    partitioned: Gauge,
}

/// Counters of one direction as served by `GET /links`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DirCounters {
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    /// Dropped datagrams by reason (loss, burst, blackhole, partition,
    /// bandwidth, overflow, unroutable, send_error).
    pub dropped: BTreeMap<String, u64>,
    pub duplicated: u64,
    /// Datagrams that left later than they arrived because of a fault.
    pub delayed: u64,
    /// Datagrams sent after a datagram that arrived later than them.
    pub reordered: u64,
    /// Mean measured receive-to-send time over all forwarded datagrams, in ms.
    pub added_delay_mean_ms: f64,
}

fn counter(
    name: &str,
    help: &str,
    labels: &[&str],
    reg: &Registry,
) -> Result<IntCounterVec, ProxyError> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(name: &str, help: &str, reg: &Registry) -> Result<GaugeVec, ProxyError> {
    let g = GaugeVec::new(Opts::new(name, help), &["from", "to"])?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

impl ProxyMetrics {
    pub(crate) fn new() -> Result<Self, ProxyError> {
        let r = Registry::new();
        let ft = &["from", "to"];
        let added_delay = HistogramVec::new(
            HistogramOpts::new(
                "faultline_proxy_added_delay_seconds",
                "Measured time from receiving a datagram to sending it, per direction.",
            )
            .buckets(DELAY_BUCKETS.to_vec()),
            ft,
        )?;
        r.register(Box::new(added_delay.clone()))?;
        Ok(ProxyMetrics {
            forwarded: counter(
                "faultline_proxy_forwarded_packets_total",
                "Datagrams sent on, duplicates included.",
                ft,
                &r,
            )?,
            bytes: counter(
                "faultline_proxy_forwarded_bytes_total",
                "Payload bytes sent on, duplicates included.",
                ft,
                &r,
            )?,
            dropped: counter(
                "faultline_proxy_dropped_packets_total",
                "Datagrams not forwarded, by reason.",
                &["from", "to", "reason"],
                &r,
            )?,
            duplicated: counter(
                "faultline_proxy_duplicated_packets_total",
                "Extra copies sent by the duplicate fault.",
                ft,
                &r,
            )?,
            delayed: counter(
                "faultline_proxy_delayed_packets_total",
                "Datagrams held back by delay, bandwidth or reorder faults.",
                ft,
                &r,
            )?,
            reordered: counter(
                "faultline_proxy_reordered_packets_total",
                "Datagrams sent after one that arrived later.",
                ft,
                &r,
            )?,
            added_delay,
            cfg_drop: gauge(
                "faultline_proxy_configured_drop_probability",
                "Configured independent loss probability.",
                &r,
            )?,
            cfg_burst: gauge(
                "faultline_proxy_configured_burst_loss_probability",
                "Long-run loss probability of the configured Gilbert-Elliott chain.",
                &r,
            )?,
            cfg_delay: gauge(
                "faultline_proxy_configured_delay_seconds",
                "Configured mean delay.",
                &r,
            )?,
            cfg_jitter: gauge(
                "faultline_proxy_configured_jitter_seconds",
                "Configured jitter spread.",
                &r,
            )?,
            cfg_duplicate: gauge(
                "faultline_proxy_configured_duplicate_probability",
                "Configured duplicate probability.",
                &r,
            )?,
            cfg_bandwidth: gauge(
                "faultline_proxy_configured_bandwidth_bytes_per_second",
                "Configured bandwidth limit (0: none).",
                &r,
            )?,
            cfg_blackhole: gauge(
                "faultline_proxy_configured_blackhole",
                "1 when the direction is blackholed.",
                &r,
            )?,
            cfg_reorder: gauge(
                "faultline_proxy_configured_reorder_window",
                "Configured reorder window in datagrams (0: none).",
                &r,
            )?,
            partitioned: gauge(
                "faultline_proxy_partitioned",
                "1 when a partition blocks the direction.",
                &r,
            )?,
            registry: r,
        })
    }

    pub(crate) fn dir(&self, from: &str, to: &str) -> DirMetrics {
        let l = [from, to];
        DirMetrics {
            forwarded: self.forwarded.with_label_values(&l),
            bytes: self.bytes.with_label_values(&l),
            dropped: DropReason::ALL
                .iter()
                .map(|r| self.dropped.with_label_values(&[from, to, r.label()]))
                .collect(),
            duplicated: self.duplicated.with_label_values(&l),
            delayed: self.delayed.with_label_values(&l),
            reordered: self.reordered.with_label_values(&l),
            added_delay: self.added_delay.with_label_values(&l),
            cfg_drop: self.cfg_drop.with_label_values(&l),
            cfg_burst: self.cfg_burst.with_label_values(&l),
            cfg_delay: self.cfg_delay.with_label_values(&l),
            cfg_jitter: self.cfg_jitter.with_label_values(&l),
            cfg_duplicate: self.cfg_duplicate.with_label_values(&l),
            cfg_bandwidth: self.cfg_bandwidth.with_label_values(&l),
            cfg_blackhole: self.cfg_blackhole.with_label_values(&l),
            cfg_reorder: self.cfg_reorder.with_label_values(&l),
            partitioned: self.partitioned.with_label_values(&l),
        }
    }

    /// Prometheus text exposition of this proxy's registry.
    pub(crate) fn text(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!("encoding proxy metrics failed: {e}");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl DirMetrics {
    pub(crate) fn drop(&self, reason: DropReason) {
        if let Some(c) = self.dropped.get(reason.index()) {
            c.inc();
        }
    }

    /// Publish the configured faults (None: healed) and the partition state.
    pub(crate) fn set_configured(&self, spec: Option<&FaultSpec>, partitioned: bool) {
        let d = FaultSpec::default();
        let s = spec.unwrap_or(&d);
        self.cfg_drop.set(s.drop);
        self.cfg_burst.set(s.burst.as_ref().map_or(0.0, |b| {
            let denom = b.p_enter_bad + b.p_leave_bad;
            if denom == 0.0 {
                b.loss_good
            } else {
                let pi_bad = b.p_enter_bad / denom;
                pi_bad * b.loss_bad + (1.0 - pi_bad) * b.loss_good
            }
        }));
        self.cfg_delay
            .set(s.delay.as_ref().map_or(0.0, |x| x.ms / 1000.0));
        self.cfg_jitter
            .set(s.delay.as_ref().map_or(0.0, |x| x.jitter_ms / 1000.0));
        self.cfg_duplicate.set(s.duplicate);
        self.cfg_bandwidth
            .set(s.bandwidth.as_ref().map_or(0.0, |b| b.bytes_per_sec as f64));
        self.cfg_blackhole.set(if s.blackhole { 1.0 } else { 0.0 });
        self.cfg_reorder
            .set(s.reorder.as_ref().map_or(0.0, |r| r.window as f64));
        self.partitioned.set(if partitioned { 1.0 } else { 0.0 });
    }

    pub(crate) fn counters(&self) -> DirCounters {
        let dropped = DropReason::ALL
            .iter()
            .map(|r| {
                (
                    r.label().to_string(),
                    self.dropped.get(r.index()).map_or(0, |c| c.get()),
                )
            })
            .collect();
        let n = self.added_delay.get_sample_count();
        DirCounters {
            forwarded_packets: self.forwarded.get(),
            forwarded_bytes: self.bytes.get(),
            dropped,
            duplicated: self.duplicated.get(),
            delayed: self.delayed.get(),
            reordered: self.reordered.get(),
            added_delay_mean_ms: if n == 0 {
                0.0
            } else {
                self.added_delay.get_sample_sum() / n as f64 * 1000.0
            },
        }
    }
}
