//! The verdict of a run, Jepsen style: every check says valid true, false or
//! unknown with its evidence, and the run's verdict is the worst of them
//! (false beats unknown beats true). This is what `results.json` holds and
//! what `junit.xml` and `report.html` render.

use crate::record::FaultWindow;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Serialised as `true`, `false` or `"unknown"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Valid {
    True,
    Unknown,
    False,
}

impl Valid {
    /// The worst of two verdicts.
    pub fn and(self, other: Valid) -> Valid {
        self.max(other)
    }

    /// Process exit code: 0 valid, 1 invalid, 2 unknown.
    pub fn exit_code(self) -> u8 {
        match self {
            Valid::True => 0,
            Valid::False => 1,
            Valid::Unknown => 2,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Valid::True => "valid",
            Valid::False => "INVALID",
            Valid::Unknown => "unknown",
        }
    }
}

impl Serialize for Valid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Valid::True => s.serialize_bool(true),
            Valid::False => s.serialize_bool(false),
            Valid::Unknown => s.serialize_str("unknown"),
        }
    }
}

impl<'de> Deserialize<'de> for Valid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Bool(true) => Ok(Valid::True),
            serde_json::Value::Bool(false) => Ok(Valid::False),
            serde_json::Value::String(s) if s == "unknown" => Ok(Valid::Unknown),
            other => Err(serde::de::Error::custom(format!(
                "valid must be true, false or \"unknown\", got {other}"
            ))),
        }
    }
}

/// Checks that judge the experiment (whether it did what the scenario said),
/// not the system under test.
pub const EXPERIMENT_CHECKS: &[&str] = &["faults-applied", "run-complete"];

/// One check's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// e.g. `linearizable`, `quiescent-state`, `versions-monotonic`,
    /// `liveness`, `faults-applied`.
    pub name: String,
    pub valid: Valid,
    /// One line a person reads first.
    pub summary: String,
    /// Counter-example or measurements, free-form JSON.
    #[serde(default)]
    pub evidence: serde_json::Value,
    /// How long the check took to judge, milliseconds (0: not measured).
    #[serde(default)]
    pub took_ms: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub ok: u64,
    pub failed: u64,
    pub unknown: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.ok + self.failed + self.unknown
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Availability during one fault window (or the whole run: window None).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Availability {
    pub window: Option<usize>,
    pub label: String,
    pub start_s: f64,
    pub end_s: f64,
    /// Operations that completed inside the window, and how many of them ok.
    pub ops: u64,
    pub ok: u64,
    /// Operations invoked before the window's end that completed after it or
    /// never: they waited across it.
    #[serde(default)]
    pub spanned: u64,
    /// ok / ops; with no operation completed, 1.0 if none waited and 0.0 if
    /// some did (nothing got through).
    pub fraction: f64,
}

/// A fault as configured next to what was measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultMeasure {
    pub window: usize,
    /// A link `a->b`, a node, or a rule id.
    pub target: String,
    pub configured: serde_json::Value,
    pub measured: serde_json::Value,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub ops: Counts,
    pub by_kind: BTreeMap<String, Counts>,
    /// Latency of ok operations, milliseconds.
    pub latency_ms: Quantiles,
    pub availability: Vec<Availability>,
    /// Messages sent by kind, summed over nodes (last scrape, restarts added).
    pub messages_by_kind: BTreeMap<String, u64>,
    pub faults: Vec<FaultMeasure>,
}

/// One time bucket of the run, seconds since the start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimePoint {
    pub t_s: f64,
    /// Operations completed in the bucket, by outcome, per second.
    pub ok_per_s: f64,
    pub failed_per_s: f64,
    pub unknown_per_s: f64,
    /// Latency of ok operations completed in the bucket (0 if none).
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub bucket_s: f64,
    pub points: Vec<TimePoint>,
    /// Messages sent per second by node, from the scrapes: (t_s, rate).
    pub node_rates: BTreeMap<String, Vec<(f64, f64)>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub valid: Valid,
    pub scenario: String,
    pub system: String,
    pub seed: u64,
    pub run_dir: String,
    /// Unix microseconds of `t_s == 0` (the run's `meta.start_us`), to place
    /// the fault windows on the timeline; 0 if unknown.
    #[serde(default)]
    pub start_us: u64,
    pub duration_s: f64,
    pub checks: Vec<CheckOutcome>,
    pub stats: Stats,
    pub timeline: Timeline,
    pub windows: Vec<FaultWindow>,
    /// How long judging took, seconds (every check, the statistics, the
    /// timeline).
    #[serde(default)]
    pub judge_s: f64,
}

impl Results {
    /// The worst verdict among the checks; unknown when there are none.
    /// The run's verdict. A check of the experiment itself ([`EXPERIMENT_CHECKS`]:
    /// did the faults take effect, did the run finish) that fails makes the run
    /// unknown, never invalid: only the system's own checks can say it is wrong.
    pub fn combine(checks: &[CheckOutcome]) -> Valid {
        if checks.is_empty() {
            return Valid::Unknown;
        }
        checks.iter().fold(Valid::True, |v, c| {
            let valid = match c.valid {
                Valid::False if EXPERIMENT_CHECKS.contains(&c.name.as_str()) => Valid::Unknown,
                valid => valid,
            };
            v.and(valid)
        })
    }

    /// Checks of the experiment (not of the system) that did not hold.
    pub fn experiment_failures(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| c.valid == Valid::False && EXPERIMENT_CHECKS.contains(&c.name.as_str()))
            .map(|c| c.name.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn false_beats_unknown_beats_true() {
        let c = |v| CheckOutcome {
            name: "x".into(),
            valid: v,
            summary: String::new(),
            evidence: serde_json::Value::Null,
            took_ms: 0.0,
        };
        assert_eq!(
            Results::combine(&[c(Valid::True), c(Valid::True)]),
            Valid::True
        );
        assert_eq!(
            Results::combine(&[c(Valid::True), c(Valid::Unknown)]),
            Valid::Unknown
        );
        assert_eq!(
            Results::combine(&[c(Valid::Unknown), c(Valid::False)]),
            Valid::False
        );
        assert_eq!(Results::combine(&[]), Valid::Unknown);
        // A failed experiment check is unknown, not invalid (issue 6).
        let experiment = CheckOutcome {
            name: "faults-applied".into(),
            ..c(Valid::False)
        };
        assert_eq!(
            Results::combine(&[c(Valid::True), experiment.clone()]),
            Valid::Unknown
        );
        assert_eq!(
            Results::combine(&[c(Valid::False), experiment]),
            Valid::False
        );
        assert_eq!(
            serde_json::to_string(&Valid::Unknown).unwrap(),
            "\"unknown\""
        );
        assert_eq!(
            serde_json::from_str::<Valid>("false").unwrap(),
            Valid::False
        );
    }
}
