//! Builders of hand-made records for the judge's unit tests that need no
//! system: a three-server, two-client run, scrapes and fault windows. A
//! system's own fixtures (its operations, its state) live in its folder.

use crate::record::{FaultWindow, NodeInfo, RunMeta, RunRecord, Sample, Scrape};
use serde_json::Value;
use std::collections::BTreeMap;

/// The run starts at 1000 s after the epoch so relative times read as plain milliseconds.
pub(crate) const T0: u64 = 1_000_000_000;

/// A 20-second run of three servers and two clients of no particular system.
pub(crate) fn meta() -> RunMeta {
    RunMeta {
        scenario: "unit".into(),
        system: "unit".into(),
        seed: 7,
        start_us: T0,
        end_us: T0 + 20_000_000,
        nodes: ["s1", "s2", "s3", "c1", "c2"]
            .iter()
            .map(|id| NodeInfo {
                id: id.to_string(),
                role: if id.starts_with('s') {
                    "server"
                } else {
                    "client"
                }
                .into(),
            })
            .collect(),
        system_meta: Value::Null,
        liveness_bound_ms: 2_000,
        bugs: Vec::new(),
        interrupted_us: None,
        controller_died: false,
    }
}

/// A record of [`meta`] with no operations, windows or scrapes yet.
pub(crate) fn record() -> RunRecord {
    RunRecord {
        meta: meta(),
        windows: Vec::new(),
        histories: BTreeMap::new(),
        states: BTreeMap::new(),
        scrapes: Vec::new(),
    }
}

pub(crate) fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
    }
}

pub(crate) fn scrape(t_us: u64, target: &str, samples: Vec<Sample>) -> Scrape {
    Scrape {
        t_us,
        target: target.into(),
        ok: true,
        samples,
    }
}

/// `scrape` at `at_ms` into the run.
pub(crate) fn scrape_at(at_ms: u64, target: &str, samples: Vec<Sample>) -> Scrape {
    scrape(T0 + at_ms * 1000, target, samples)
}

pub(crate) fn down_at(at_ms: u64, target: &str) -> Scrape {
    Scrape {
        ok: false,
        ..scrape_at(at_ms, target, Vec::new())
    }
}

pub(crate) fn window(
    id: usize,
    fault: &str,
    layer: &str,
    targets: &[&str],
    from_ms: u64,
    to_ms: Option<u64>,
    detail: Value,
) -> FaultWindow {
    FaultWindow {
        id,
        fault: fault.into(),
        layer: layer.into(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        start_us: T0 + from_ms * 1000,
        end_us: to_ms.map(|t| T0 + t * 1000),
        in_model: true,
        detail,
    }
}
