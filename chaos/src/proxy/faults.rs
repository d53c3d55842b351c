//! Packet faults for one link direction: what can be configured ([`FaultSpec`])
//! and the seeded engine that turns a spec into a per-packet verdict.
//!
//! The engine is kept free of sockets and tasks so it can be unit-tested with a
//! fixed seed and a synthetic clock; the data path in `pipe.rs` only asks it
//! "drop this datagram, or send it at which instant, held or not, duplicated or not".
//!
//! Order of stages for one datagram, chosen to mirror a real link:
//! blackhole, independent loss, Gilbert-Elliott burst loss, bandwidth (token
//! bucket: serialisation time, queue overflow drops), propagation delay with
//! jitter, duplication, and finally the reorder hold buffer (in `pipe.rs`).

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::error::ProxyError;

/// Longest delay or hold a spec may ask for; longer would look like a partition
/// and should be asked for as one.
const MAX_DELAY_MS: f64 = 60_000.0;
/// Largest reorder window; the hold buffer is scanned linearly on release.
const MAX_REORDER_WINDOW: usize = 1024;
/// Largest token-bucket queue or burst; keeps the bucket's durations finite
/// (the data path caps what it really holds far lower anyway).
const MAX_BUCKET_BYTES: u64 = 1 << 30;

/// Faults applied to one direction of one link (`from` -> `to`).
///
/// Every field is optional; the empty spec forwards untouched.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Probability in [0, 1] that a datagram is dropped, independently of others.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drop: f64,
    /// Correlated loss (Gilbert-Elliott two-state chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<BurstLoss>,
    /// Propagation delay with jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
    /// Probability in [0, 1] that a forwarded datagram is sent twice.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicate: f64,
    /// Hold datagrams back and release them out of order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<Reorder>,
    /// Token-bucket bandwidth limit with a bounded queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// Drop everything.
    #[serde(default, skip_serializing_if = "is_false")]
    pub blackhole: bool,
}

/// Gilbert-Elliott loss: the chain moves between a good and a bad state once
/// per datagram; loss probability depends on the state. Mean burst length is
/// `1 / p_leave_bad`; long-run loss is
/// `pi_bad * loss_bad + (1 - pi_bad) * loss_good` with `pi_bad = p_enter_bad / (p_enter_bad + p_leave_bad)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurstLoss {
    pub p_enter_bad: f64,
    pub p_leave_bad: f64,
    #[serde(default = "one")]
    pub loss_bad: f64,
    #[serde(default)]
    pub loss_good: f64,
}

/// Delay of `ms` on average plus jitter. `jitter_ms` is the spread: the half
/// width of a uniform distribution, or the standard deviation of a normal or
/// exponential one. The exponential is shifted so that its mean is still `ms`
/// (it starts at `ms - jitter_ms`). Samples below zero are clamped to zero, which
/// raises the mean slightly when `jitter_ms` is large compared with `ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delay {
    pub ms: f64,
    #[serde(default)]
    pub jitter_ms: f64,
    #[serde(default)]
    pub distribution: JitterDistribution,
}

/// Shape of the jitter around the mean delay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JitterDistribution {
    #[default]
    Uniform,
    Normal,
    Exponential,
}

/// Reordering: each datagram is held with `probability`; when `window`
/// datagrams are held, a random one of them is released, and none is held
/// longer than `max_hold_ms`. Datagrams that are not held overtake held ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reorder {
    pub window: usize,
    pub max_hold_ms: f64,
    #[serde(default = "one")]
    pub probability: f64,
}

/// Bandwidth limit. Datagrams wait for tokens (that wait is serialisation
/// delay); when the bytes already waiting exceed `queue_bytes` the datagram is
/// dropped (reason `bandwidth`). `burst_bytes` is the idle credit the bucket can
/// save up; by default 10 ms worth of rate, at least 1500 bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bandwidth {
    pub bytes_per_sec: u64,
    #[serde(default = "default_queue_bytes")]
    pub queue_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_bytes: Option<u64>,
}

fn one() -> f64 {
    1.0
}
fn default_queue_bytes() -> u64 {
    64 * 1024
}
fn is_zero(x: &f64) -> bool {
    *x == 0.0
}
fn is_false(b: &bool) -> bool {
    !*b
}

fn check_probability(name: &str, p: f64) -> Result<(), ProxyError> {
    if p.is_finite() && (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(ProxyError::InvalidFaults(format!(
            "{name} must be a probability between 0 and 1, got {p}"
        )))
    }
}

fn check_ms(name: &str, ms: f64) -> Result<(), ProxyError> {
    if ms.is_finite() && (0.0..=MAX_DELAY_MS).contains(&ms) {
        Ok(())
    } else {
        Err(ProxyError::InvalidFaults(format!(
            "{name} must be between 0 and {MAX_DELAY_MS} ms, got {ms}"
        )))
    }
}

fn ms_to_duration(ms: f64) -> Duration {
    // Validation keeps ms finite and within range and the max() clamps a
    // negative sample; the fallback only guards against a NaN slipping through.
    Duration::try_from_secs_f64(ms.max(0.0) / 1000.0).unwrap_or(Duration::ZERO)
}

impl FaultSpec {
    /// Spec that drops everything.
    pub fn blackhole() -> Self {
        FaultSpec {
            blackhole: true,
            ..FaultSpec::default()
        }
    }

    /// Two faults on one direction at once, as one spec: each loss drops on its
    /// own (`1 - (1-a)(1-b)`), delays add (means and jitters), duplication
    /// likewise combines as independent chances, the tighter bandwidth and the
    /// wider reorder window win, a blackhole stays a blackhole. A burst-loss
    /// chain is kept from the first that has one (two chains do not compose
    /// into one chain).
    pub fn combine(&self, other: &FaultSpec) -> FaultSpec {
        // Exact when one side is absent, so a lone fault reads back as set.
        let either = |a: f64, b: f64| match (a, b) {
            (a, 0.0) => a,
            (0.0, b) => b,
            (a, b) => (1.0 - (1.0 - a) * (1.0 - b)).min(1.0),
        };
        FaultSpec {
            drop: either(self.drop, other.drop),
            burst: self.burst.clone().or_else(|| other.burst.clone()),
            delay: match (&self.delay, &other.delay) {
                (Some(a), Some(b)) => Some(Delay {
                    ms: (a.ms + b.ms).min(MAX_DELAY_MS),
                    jitter_ms: (a.jitter_ms + b.jitter_ms).min(MAX_DELAY_MS),
                    distribution: a.distribution,
                }),
                (a, b) => a.clone().or_else(|| b.clone()),
            },
            duplicate: either(self.duplicate, other.duplicate),
            reorder: match (&self.reorder, &other.reorder) {
                (Some(a), Some(b)) => Some(if b.window > a.window {
                    b.clone()
                } else {
                    a.clone()
                }),
                (a, b) => a.clone().or_else(|| b.clone()),
            },
            bandwidth: match (&self.bandwidth, &other.bandwidth) {
                (Some(a), Some(b)) => Some(if b.bytes_per_sec < a.bytes_per_sec {
                    b.clone()
                } else {
                    a.clone()
                }),
                (a, b) => a.clone().or_else(|| b.clone()),
            },
            blackhole: self.blackhole || other.blackhole,
        }
    }

    /// True when the spec changes nothing; the data path then skips the engine.
    pub fn is_noop(&self) -> bool {
        *self == FaultSpec::default()
    }

    /// Check every field's range; the message names the field and the bound.
    pub fn validate(&self) -> Result<(), ProxyError> {
        check_probability("drop", self.drop)?;
        check_probability("duplicate", self.duplicate)?;
        if let Some(b) = &self.burst {
            check_probability("burst.p_enter_bad", b.p_enter_bad)?;
            check_probability("burst.p_leave_bad", b.p_leave_bad)?;
            check_probability("burst.loss_bad", b.loss_bad)?;
            check_probability("burst.loss_good", b.loss_good)?;
        }
        if let Some(d) = &self.delay {
            check_ms("delay.ms", d.ms)?;
            check_ms("delay.jitter_ms", d.jitter_ms)?;
        }
        if let Some(r) = &self.reorder {
            if !(2..=MAX_REORDER_WINDOW).contains(&r.window) {
                return Err(ProxyError::InvalidFaults(format!(
                    "reorder.window must be between 2 and {MAX_REORDER_WINDOW} datagrams, got {}",
                    r.window
                )));
            }
            check_ms("reorder.max_hold_ms", r.max_hold_ms)?;
            if r.max_hold_ms <= 0.0 {
                return Err(ProxyError::InvalidFaults(
                    "reorder.max_hold_ms must be above 0".into(),
                ));
            }
            check_probability("reorder.probability", r.probability)?;
        }
        if let Some(bw) = &self.bandwidth {
            if bw.bytes_per_sec == 0 {
                return Err(ProxyError::InvalidFaults(
                    "bandwidth.bytes_per_sec must be above 0 (use blackhole to drop everything)"
                        .into(),
                ));
            }
            for (name, v) in [
                ("bandwidth.queue_bytes", Some(bw.queue_bytes)),
                ("bandwidth.burst_bytes", bw.burst_bytes),
            ] {
                if v.is_some_and(|v| v > MAX_BUCKET_BYTES) {
                    return Err(ProxyError::InvalidFaults(format!(
                        "{name} must be at most {MAX_BUCKET_BYTES} bytes"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Why a datagram was not forwarded; the `reason` label of the drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Independent loss (`drop`).
    Loss,
    /// Gilbert-Elliott loss (`burst`).
    Burst,
    Blackhole,
    Partition,
    /// Token-bucket queue full.
    Bandwidth,
    /// The proxy's own per-pipe queue cap was hit (memory guard, not a configured fault).
    Overflow,
    /// A reply arrived before any datagram from the client, so there is nowhere to send it.
    Unroutable,
    /// The socket refused the send (e.g. an ICMP error from a dead target).
    SendError,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::Loss,
        DropReason::Burst,
        DropReason::Blackhole,
        DropReason::Partition,
        DropReason::Bandwidth,
        DropReason::Overflow,
        DropReason::Unroutable,
        DropReason::SendError,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::Loss => "loss",
            DropReason::Burst => "burst",
            DropReason::Blackhole => "blackhole",
            DropReason::Partition => "partition",
            DropReason::Bandwidth => "bandwidth",
            DropReason::Overflow => "overflow",
            DropReason::Unroutable => "unroutable",
            DropReason::SendError => "send_error",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What to do with a datagram that survived the loss stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Earliest instant to put it on the wire (bandwidth wait + delay).
    pub send_at: Instant,
    /// Send a second copy at the same instant.
    pub duplicate: bool,
    /// Put it in the reorder hold buffer, releasing it no later than this instant.
    pub hold_until: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Drop(DropReason),
    Forward(Plan),
}

/// Mutable fault state of one direction: RNG stream, burst-chain state and
/// token-bucket clock. Shared by the two pipes that carry the direction (see
/// `mod.rs`), so a loss burst or a bandwidth budget covers all its traffic.
#[derive(Debug)]
pub(crate) struct DirState {
    rng: ChaCha8Rng,
    bad: bool,
    /// Token bucket as a virtual clock: the bucket is empty at this instant and
    /// refills at the configured rate (None: full).
    bucket_clock: Option<Instant>,
}

impl DirState {
    pub(crate) fn new(seed: u64) -> Self {
        DirState {
            rng: ChaCha8Rng::seed_from_u64(seed),
            bad: false,
            bucket_clock: None,
        }
    }

    /// Decide the fate of one datagram of `len` bytes received at `now`.
    pub(crate) fn decide(&mut self, spec: &FaultSpec, now: Instant, len: usize) -> Verdict {
        if spec.blackhole {
            return Verdict::Drop(DropReason::Blackhole);
        }
        if spec.drop > 0.0 && self.rng.random::<f64>() < spec.drop {
            return Verdict::Drop(DropReason::Loss);
        }
        if let Some(b) = &spec.burst {
            // Step the chain once per datagram, then lose with the state's probability.
            let flip: f64 = self.rng.random();
            self.bad = if self.bad {
                flip >= b.p_leave_bad
            } else {
                flip < b.p_enter_bad
            };
            let p = if self.bad { b.loss_bad } else { b.loss_good };
            if p > 0.0 && self.rng.random::<f64>() < p {
                return Verdict::Drop(DropReason::Burst);
            }
        } else {
            self.bad = false;
        }
        let mut send_at = now;
        if let Some(bw) = &spec.bandwidth {
            match self.shape(bw, now, len) {
                Some(t) => send_at = t,
                None => return Verdict::Drop(DropReason::Bandwidth),
            }
        } else {
            self.bucket_clock = None;
        }
        if let Some(d) = &spec.delay {
            send_at += self.sample_delay(d);
        }
        let duplicate = spec.duplicate > 0.0 && self.rng.random::<f64>() < spec.duplicate;
        let hold_until = match &spec.reorder {
            Some(r) if self.rng.random::<f64>() < r.probability => {
                Some(now + ms_to_duration(r.max_hold_ms))
            }
            _ => None,
        };
        Verdict::Forward(Plan {
            send_at,
            duplicate,
            hold_until,
        })
    }

    /// Token bucket: returns when the datagram has been "serialised", or None
    /// when the bytes already waiting exceed the queue limit.
    fn shape(&mut self, bw: &Bandwidth, now: Instant, len: usize) -> Option<Instant> {
        let rate = bw.bytes_per_sec as f64;
        let burst = bw
            .burst_bytes
            .unwrap_or_else(|| (bw.bytes_per_sec / 100).max(1500)) as f64;
        // An idle bucket cannot save more than `burst` bytes of credit.
        let secs = |x: f64| Duration::try_from_secs_f64(x).unwrap_or(Duration::ZERO);
        let full_at = now.checked_sub(secs(burst / rate)).unwrap_or(now);
        let clock = self.bucket_clock.map_or(full_at, |c| c.max(full_at));
        let finish = clock + secs(len as f64 / rate);
        let waiting = finish.saturating_duration_since(now);
        if waiting.as_secs_f64() * rate > bw.queue_bytes as f64 {
            return None;
        }
        self.bucket_clock = Some(finish);
        Some(finish.max(now))
    }

    fn sample_delay(&mut self, d: &Delay) -> Duration {
        let j = d.jitter_ms;
        let ms = if j == 0.0 {
            d.ms
        } else {
            match d.distribution {
                JitterDistribution::Uniform => d.ms + self.rng.random_range(-j..=j),
                JitterDistribution::Normal => {
                    // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
                    let u1 = 1.0 - self.rng.random::<f64>();
                    let u2: f64 = self.rng.random();
                    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    d.ms + j * z
                }
                JitterDistribution::Exponential => {
                    let u = 1.0 - self.rng.random::<f64>();
                    d.ms - j - j * u.ln()
                }
            }
        };
        ms_to_duration(ms)
    }

    /// Index of the held datagram to release when the reorder window is full.
    pub(crate) fn pick(&mut self, held: usize) -> usize {
        if held <= 1 {
            0
        } else {
            self.rng.random_range(0..held)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_json(s: &str) -> FaultSpec {
        serde_json::from_str(s).expect("test spec parses")
    }

    fn forwarded(v: Verdict) -> Plan {
        match v {
            Verdict::Forward(p) => p,
            Verdict::Drop(r) => panic!("dropped: {r:?}"),
        }
    }

    #[test]
    fn combined_faults_keep_each_effect() {
        let loss = spec_json(r#"{"drop": 0.3}"#);
        let delay = spec_json(r#"{"delay": {"ms": 30}}"#);
        let both = loss.combine(&delay);
        assert_eq!(both.drop, 0.3);
        assert_eq!(both.delay.as_ref().map(|d| d.ms), Some(30.0));
        let more = both.combine(&spec_json(r#"{"drop": 0.5, "delay": {"ms": 20}}"#));
        assert!((more.drop - 0.65).abs() < 1e-9, "{}", more.drop);
        assert_eq!(more.delay.as_ref().map(|d| d.ms), Some(50.0));
        assert!(more.validate().is_ok());
    }

    #[test]
    fn empty_spec_forwards_at_once() {
        let mut st = DirState::new(1);
        let now = Instant::now();
        let spec = FaultSpec::default();
        assert!(spec.is_noop());
        let p = forwarded(st.decide(&spec, now, 100));
        assert_eq!(p.send_at, now);
        assert!(!p.duplicate);
        assert!(p.hold_until.is_none());
    }

    #[test]
    fn drop_rate_close_to_configured() {
        let mut st = DirState::new(7);
        let spec = FaultSpec {
            drop: 0.3,
            ..Default::default()
        };
        let now = Instant::now();
        let n = 20_000;
        let dropped = (0..n)
            .filter(|_| matches!(st.decide(&spec, now, 10), Verdict::Drop(DropReason::Loss)))
            .count();
        let rate = dropped as f64 / n as f64;
        assert!((rate - 0.3).abs() < 0.02, "rate {rate}");
    }

    #[test]
    fn same_seed_same_decisions() {
        let spec = spec_json(
            r#"{"drop":0.2,"duplicate":0.1,"delay":{"ms":5,"jitter_ms":2,"distribution":"normal"}}"#,
        );
        let now = Instant::now();
        let run = |seed| {
            let mut st = DirState::new(seed);
            (0..500)
                .map(|_| st.decide(&spec, now, 10))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn burst_loss_is_bursty_with_stationary_rate() {
        let spec = spec_json(r#"{"burst":{"p_enter_bad":0.02,"p_leave_bad":0.2}}"#);
        let mut st = DirState::new(11);
        let now = Instant::now();
        let lost: Vec<bool> = (0..50_000)
            .map(|_| matches!(st.decide(&spec, now, 10), Verdict::Drop(DropReason::Burst)))
            .collect();
        let rate = lost.iter().filter(|l| **l).count() as f64 / lost.len() as f64;
        let expected = 0.02 / 0.22;
        assert!((rate - expected).abs() < 0.02, "rate {rate} vs {expected}");
        let bursts = lost.windows(2).filter(|w| !w[0] && w[1]).count();
        let mean_burst = lost.iter().filter(|l| **l).count() as f64 / bursts.max(1) as f64;
        assert!((mean_burst - 5.0).abs() < 1.0, "mean burst {mean_burst}");
    }

    fn mean_delay_ms(dist: &str, ms: f64, jitter: f64) -> (f64, f64) {
        let spec = spec_json(&format!(
            r#"{{"delay":{{"ms":{ms},"jitter_ms":{jitter},"distribution":"{dist}"}}}}"#
        ));
        let mut st = DirState::new(5);
        let now = Instant::now();
        let n = 20_000;
        let mut sum = 0.0;
        let mut min = f64::MAX;
        for _ in 0..n {
            let p = forwarded(st.decide(&spec, now, 10));
            let d = (p.send_at - now).as_secs_f64() * 1000.0;
            sum += d;
            min = min.min(d);
        }
        (sum / n as f64, min)
    }

    #[test]
    fn delay_means_match_for_each_distribution() {
        for dist in ["uniform", "normal", "exponential"] {
            let (mean, min) = mean_delay_ms(dist, 20.0, 5.0);
            assert!((mean - 20.0).abs() < 0.3, "{dist}: mean {mean}");
            assert!(min >= 0.0);
            if dist != "normal" {
                assert!(min >= 14.99, "{dist}: min {min}");
            }
        }
    }

    #[test]
    fn negative_samples_are_clamped() {
        let (_, min) = mean_delay_ms("normal", 1.0, 10.0);
        assert!(min >= 0.0);
    }

    #[test]
    fn token_bucket_paces_and_drops_past_queue() {
        // 1000 B/s, 1000-byte datagrams: one per second after the burst credit.
        let spec = spec_json(
            r#"{"bandwidth":{"bytes_per_sec":1000,"queue_bytes":3000,"burst_bytes":1000}}"#,
        );
        let mut st = DirState::new(1);
        let now = Instant::now();
        let mut sends = Vec::new();
        let mut drops = 0;
        for _ in 0..10 {
            match st.decide(&spec, now, 1000) {
                Verdict::Forward(p) => sends.push((p.send_at - now).as_secs_f64()),
                Verdict::Drop(DropReason::Bandwidth) => drops += 1,
                Verdict::Drop(r) => panic!("unexpected {r:?}"),
            }
        }
        // Credit covers the first; then 1 s, 2 s, 3 s of queue; the rest overflow.
        assert_eq!(sends.len(), 4, "{sends:?}");
        assert_eq!(drops, 6);
        for (i, s) in sends.iter().enumerate() {
            assert!((s - i as f64).abs() < 1e-3, "{sends:?}");
        }
    }

    #[test]
    fn reorder_holds_with_deadline() {
        let spec = spec_json(r#"{"reorder":{"window":4,"max_hold_ms":10}}"#);
        let mut st = DirState::new(1);
        let now = Instant::now();
        let p = forwarded(st.decide(&spec, now, 10));
        assert_eq!(p.hold_until, Some(now + Duration::from_millis(10)));
        for _ in 0..100 {
            assert!(st.pick(4) < 4);
        }
        assert_eq!(st.pick(0), 0);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = [
            (r#"{"drop":1.5}"#, "drop"),
            (r#"{"duplicate":-0.1}"#, "duplicate"),
            (
                r#"{"burst":{"p_enter_bad":2,"p_leave_bad":0.1}}"#,
                "p_enter_bad",
            ),
            (r#"{"delay":{"ms":-1}}"#, "delay.ms"),
            (r#"{"delay":{"ms":1e9}}"#, "delay.ms"),
            (r#"{"reorder":{"window":1,"max_hold_ms":5}}"#, "window"),
            (r#"{"reorder":{"window":3,"max_hold_ms":0}}"#, "max_hold_ms"),
            (r#"{"bandwidth":{"bytes_per_sec":0}}"#, "bytes_per_sec"),
            (
                r#"{"bandwidth":{"bytes_per_sec":1,"queue_bytes":18446744073709551615}}"#,
                "queue_bytes",
            ),
        ];
        for (json, field) in bad {
            let err = spec_json(json).validate().expect_err(json).to_string();
            assert!(err.contains(field), "{json}: {err}");
        }
        assert!(serde_json::from_str::<FaultSpec>(r#"{"dorp":0.1}"#).is_err());
        spec_json(r#"{"drop":0.3,"blackhole":true}"#)
            .validate()
            .expect("valid");
    }
}
