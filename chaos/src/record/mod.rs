//! A recorded run: everything the judge needs, as the controller writes it to
//! the run directory and as `faultline-chaos check RUN_DIR` reads it back.
//!
//! Files in a run directory:
//! - `meta.json`: [`RunMeta`]
//! - `schedule.json`: the expanded nemesis schedule (see `scenario`)
//! - `windows.json`: [`FaultWindow`]s, the faults as they were really applied
//! - `history/<client>.json`: each client's `GET /history`
//! - `state/<node>.json`: each node's `GET /state` at quiescence
//! - `scrapes.gz`: every scrape of every node and the proxy, as changes
//!   from the previous scrape of the same target, gzip-compressed
//!   ([`scrapes`]); `scrapes.jsonl`, one [`Scrape`] per line in full, with
//!   `--keep-scrapes` (and in runs made before the compact log)
//! - `history.jsonl`: one [`JournalEntry`] per line, written as operations
//!   start and end; what `check` judges when the controller died before
//!   writing `history/` (then `meta.json` still says `end_us: 0`)
//! - `results.json`, `junit.xml`, `report.html`: the verdict

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use thiserror::Error;

pub mod scrapes;

#[derive(Debug, Error)]
pub enum RecordError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    pub role: String,
}

/// What was run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub scenario: String,
    pub system: String,
    pub seed: u64,
    /// Unix microseconds; the workload's first invocation is at or after it.
    pub start_us: u64,
    pub end_us: u64,
    pub nodes: Vec<NodeInfo>,
    /// What the system's checks need to know of the cluster besides its
    /// nodes, as the system's own serde type (`ChaosSystem::meta`).
    #[serde(default)]
    pub system_meta: serde_json::Value,
    /// After a fault inside the model heals, ok operations must resume
    /// within this many milliseconds.
    pub liveness_bound_ms: u64,
    /// Planted bugs switched on in the cluster file, if any.
    #[serde(default)]
    pub bugs: Vec<String>,
    /// Set when the run was interrupted (Ctrl-C) at this Unix time, µs: the
    /// evidence stops there and the verdict cannot be `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted_us: Option<u64>,
    /// Set when the record was read back from a run whose controller died
    /// (`meta.json` written at the start with `end_us: 0`, never finished).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub controller_died: bool,
}

impl FaultWindow {
    /// Who the fault hit, for a person: its targets, or for a partition
    /// without named targets the directions it cut.
    pub fn describe_targets(&self) -> String {
        if !self.targets.is_empty() {
            return self.targets.join(",");
        }
        let cuts: Vec<String> = self.detail["cuts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| Some(format!("{}->{}", c[0].as_str()?, c[1].as_str()?)))
                    .collect()
            })
            .unwrap_or_default();
        match cuts.len() {
            0 => "-".into(),
            n if n <= 6 => format!("cut {}", cuts.join(" ")),
            n => format!("cut {} and {} more", cuts[..6].join(" "), n - 6),
        }
    }
}

/// One fault as applied: when it started and healed, where, and whether
/// the system claims to tolerate it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    pub id: usize,
    /// omission, drop, delay, duplicate, reorder, partition, kill, pause, transform...
    pub fault: String,
    /// message | packet | process
    pub layer: String,
    pub targets: Vec<String>,
    pub start_us: u64,
    /// None if it never healed before the run ended.
    pub end_us: Option<u64>,
    pub in_model: bool,
    /// The configured parameters (drop probability, delay, partition shape,
    /// blocked links...), for "configured vs measured".
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// One Prometheus sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// NaN and the infinities as Prometheus writes them (`"NaN"`, `"+Inf"`,
    /// `"-Inf"`): JSON has no number for them.
    #[serde(with = "prom_float")]
    pub value: f64,
}

/// An `f64` in JSON that survives NaN and the infinities.
mod prom_float {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if *v > 0.0 {
            s.serialize_str("+Inf")
        } else {
            s.serialize_str("-Inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Either::deserialize(d)? {
            Either::Number(x) => Ok(x),
            Either::Text(t) => match t.as_str() {
                "NaN" => Ok(f64::NAN),
                "+Inf" | "Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!(
                    "{other:?} is not a sample value"
                ))),
            },
        }
    }
}

/// One scrape of one target (`node id` or `proxy`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scrape {
    pub t_us: u64,
    pub target: String,
    /// False if the target did not answer (down, paused).
    pub ok: bool,
    pub samples: Vec<Sample>,
}

/// A client's history as recorded: the node API's own `/history` type.
pub type HistoryFile = faultline_node::api::HistoryDump;

#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub meta: RunMeta,
    pub windows: Vec<FaultWindow>,
    /// By client id.
    pub histories: BTreeMap<String, HistoryFile>,
    /// By node id; nodes that could not be reached are absent.
    pub states: BTreeMap<String, serde_json::Value>,
    pub scrapes: Vec<Scrape>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, RecordError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RecordError::Io {
        path: p.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| RecordError::Json { path: p, source })
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RecordError> {
    let p = path.display().to_string();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| RecordError::Io {
            path: p.clone(),
            source,
        })?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|source| RecordError::Json {
        path: p.clone(),
        source,
    })?;
    std::fs::write(path, text).map_err(|source| RecordError::Io { path: p, source })
}

/// One line of `history.jsonl`: an operation as it started, or as it ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalEntry {
    Invoke(faultline_node::api::HistoryOp),
    Complete(faultline_node::api::HistoryOp),
}

pub fn append_journal(out: &mut impl Write, e: &JournalEntry) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, e).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

/// The histories a journal holds, by client: completed operations in the
/// order they completed, then those that started and never ended, as
/// `pending` (they may have taken effect). A torn last line is skipped.
pub fn histories_from_journal(path: &Path) -> Result<BTreeMap<String, HistoryFile>, RecordError> {
    let io = |source| RecordError::Io {
        path: path.display().to_string(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut done: BTreeMap<String, Vec<faultline_node::api::HistoryOp>> = BTreeMap::new();
    let mut open: BTreeMap<u64, faultline_node::api::HistoryOp> = BTreeMap::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line.map_err(io)?;
        match serde_json::from_str::<JournalEntry>(&line) {
            Ok(JournalEntry::Invoke(op)) => {
                open.insert(op.id, op);
            }
            Ok(JournalEntry::Complete(op)) => {
                open.remove(&op.id);
                done.entry(op.client.clone()).or_default().push(op);
            }
            Err(_) => {}
        }
    }
    for op in open.into_values() {
        done.entry(op.client.clone()).or_default().push(op);
    }
    Ok(done
        .into_iter()
        .map(|(c, ops)| (c, HistoryFile { ops, truncated: 0 }))
        .collect())
}

fn read_dir_json<T: for<'de> Deserialize<'de>>(
    dir: &Path,
) -> Result<BTreeMap<String, T>, RecordError> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        let path = e.path();
        let Some(name) = path.file_name().and_then(|s| s.to_str()) else {
            continue;
        };
        if let Some(stem) = name.strip_suffix(".json.gz") {
            out.insert(stem.to_string(), read_json_gz(&path)?);
        } else if let Some(stem) = name.strip_suffix(".json") {
            out.insert(stem.to_string(), read_json(&path)?);
        }
    }
    Ok(out)
}

/// `value` as compact JSON, gzip-compressed (what is large and read by
/// programs: histories).
pub fn write_json_gz<T: Serialize>(path: &Path, value: &T) -> Result<(), RecordError> {
    let p = path.display().to_string();
    let io = |source| RecordError::Io {
        path: p.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let f = std::fs::File::create(path).map_err(io)?;
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::default());
    serde_json::to_writer(&mut gz, value).map_err(|source| RecordError::Json {
        path: p.clone(),
        source,
    })?;
    let mut w = gz.finish().map_err(io)?;
    w.flush().map_err(io)
}

/// What [`write_json_gz`] wrote.
pub fn read_json_gz<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, RecordError> {
    let p = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|source| RecordError::Io {
        path: p.clone(),
        source,
    })?;
    let r = std::io::BufReader::new(flate2::read::GzDecoder::new(f));
    serde_json::from_reader(r).map_err(|source| RecordError::Json { path: p, source })
}

impl RunRecord {
    pub fn load(dir: &Path) -> Result<Self, RecordError> {
        let mut meta: RunMeta = read_json(&dir.join("meta.json"))?;
        let windows = if dir.join("windows.json").exists() {
            read_json(&dir.join("windows.json"))?
        } else {
            Vec::new()
        };
        let mut histories = read_dir_json(&dir.join("history"))?;
        let states = read_dir_json(&dir.join("state"))?;
        let scrapes = scrapes::read(dir).map_err(|source| RecordError::Io {
            path: dir.join(scrapes::COMPACT).display().to_string(),
            source,
        })?;
        if meta.end_us == 0 {
            // The controller died during the run: judge what it wrote as it
            // went, cut at the last thing it saw.
            let journal = dir.join("history.jsonl");
            if histories.is_empty() && journal.exists() {
                histories = histories_from_journal(&journal)?;
            }
            let last_op = histories
                .values()
                .flat_map(|h| &h.ops)
                .map(|o| o.complete_us.unwrap_or(o.invoke_us))
                .max();
            let last_scrape = scrapes.iter().map(|s: &Scrape| s.t_us).max();
            let end = last_op.max(last_scrape).unwrap_or(meta.start_us);
            meta.end_us = end.max(meta.start_us);
            meta.interrupted_us = Some(meta.end_us);
            meta.controller_died = true;
        }
        Ok(RunRecord {
            meta,
            windows,
            histories,
            states,
            scrapes,
        })
    }

    /// Writes everything but the scrapes, which are appended as they come.
    pub fn save(&self, dir: &Path) -> Result<(), RecordError> {
        write_json(&dir.join("meta.json"), &self.meta)?;
        write_json(&dir.join("windows.json"), &self.windows)?;
        for (id, h) in &self.histories {
            write_json_gz(&dir.join("history").join(format!("{id}.json.gz")), h)?;
        }
        for (id, s) in &self.states {
            write_json(&dir.join("state").join(format!("{id}.json")), s)?;
        }
        Ok(())
    }
}
