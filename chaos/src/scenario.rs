//! Scenario files: which cluster, which platform, how long, the workload, the
//! nemesis schedule and the checks. One seed expands the schedule (random
//! target selections resolved to node ids); the expansion is printed at the
//! start of a run and written to the run directory so `run --replay` plays
//! exactly the same faults again.
//!
//! Errors name the file, line, field and the fix, like cluster-file errors.

use crate::systems::{self, ChaosInfo};
use faultline_node::config::{self, yaml_error, Certs, Cluster, ConfigError, Ctx};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    #[serde(default)]
    pub name: Option<String>,
    /// The cluster file, relative to the scenario file.
    pub cluster: PathBuf,
    #[serde(default = "local")]
    pub platform: String,
    /// Length of the workload and nemesis phase, e.g. `30s`.
    pub duration: Duration,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub workload: Workload,
    #[serde(default)]
    pub nemesis: Vec<FaultSpec>,
    #[serde(default)]
    pub checks: Checks,
    /// Planted bugs of the cluster's system switched on (the names its
    /// section's `bugs:` takes), for testing the checker.
    #[serde(default)]
    pub bugs: Vec<String>,
}

fn local() -> String {
    "local".into()
}

/// The longest duration a scenario may name: 30 days, in ms.
pub const MAX_DURATION_MS: u64 = 30 * 24 * 3600 * 1000;

/// A duration written `30s`, `500ms`, `2m`, `1h` or a number of seconds, at most
/// [`MAX_DURATION_MS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "serde_yaml::Value", into = "String")]
pub struct Duration(pub u64);

impl Duration {
    pub fn ms(&self) -> u64 {
        self.0
    }
}

impl From<Duration> for String {
    fn from(d: Duration) -> String {
        format!("{}ms", d.0)
    }
}

impl TryFrom<serde_yaml::Value> for Duration {
    type Error = String;
    fn try_from(v: serde_yaml::Value) -> Result<Self, String> {
        match &v {
            serde_yaml::Value::Number(n) => n
                .as_f64()
                .and_then(|f| bounded_ms(f, 1000.0))
                .map(Duration)
                .ok_or_else(|| duration_error(&n.to_string())),
            serde_yaml::Value::String(s) => parse_duration_text(s).map(Duration),
            other => Err(duration_error(&format!("{other:?}"))),
        }
    }
}

fn duration_error(shown: &str) -> String {
    format!(
        "{shown} is not a duration from 0 to 30 days; write e.g. 30s, 500ms, 2m or 1h \
         (leave `for` out to mean until the end of the run)"
    )
}

/// `f * mult` ms if it is finite and from 0 to [`MAX_DURATION_MS`], so that
/// no sum of durations can wrap.
fn bounded_ms(f: f64, mult: f64) -> Option<u64> {
    Some(f * mult)
        .filter(|ms| ms.is_finite() && (0.0..=MAX_DURATION_MS as f64).contains(ms))
        .map(|ms| ms as u64)
}

/// A duration written `500ms`, `30s`, `2m`, `1h` or a number of seconds, in
/// ms, at most [`MAX_DURATION_MS`]; the error says what is accepted.
pub fn parse_duration_text(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        (s, 1000.0)
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .and_then(|f| bounded_ms(f, mult))
        .ok_or_else(|| duration_error(&format!("{text:?}")))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Client ids, or empty for every client of the cluster.
    pub clients: Vec<String>,
    /// Operations in flight per client (closed loop)...
    pub concurrency: usize,
    /// ...or, when set, operations started per second per client (open loop).
    pub rate: Option<f64>,
    /// Relative weights of the system's operations (its `MIX` names); empty
    /// means the system's defaults, and a name left out weighs 0.
    pub mix: BTreeMap<String, f64>,
    /// The controller's HTTP timeout per operation; a timeout is recorded
    /// as an unknown outcome.
    pub op_timeout: Duration,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            clients: Vec::new(),
            concurrency: 2,
            rate: None,
            mix: BTreeMap::new(),
            op_timeout: Duration(10_000),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Checks {
    /// After a fault inside the model heals, ok operations must resume within this.
    pub liveness_bound: Duration,
    /// The linearizability search answers unknown after this (at most 1 h).
    pub linearizability_timeout: Duration,
    /// ...or once its memory passes this many MiB (16..=65536).
    pub linearizability_memory_mb: u64,
    /// How long to wait for quiescence at the end.
    pub quiescence: Duration,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            liveness_bound: Duration(5_000),
            linearizability_timeout: Duration(30_000),
            linearizability_memory_mb: 1024,
            quiescence: Duration(15_000),
        }
    }
}

/// Who a fault hits: explicit ids or a selector resolved with the seed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Targets {
    Ids(Vec<String>),
    Selector(String),
}

impl Default for Targets {
    fn default() -> Self {
        Targets::Ids(Vec::new())
    }
}

pub const SELECTORS: &[&str] = &[
    "f_servers",
    "random_minority",
    "one_server",
    "all_but_one",
    "servers",
    "clients",
    "all",
    "primary",
];

pub const MESSAGE_FAULTS: &[&str] = &["omission", "drop", "delay", "duplicate", "reorder", "cut"];
pub const PACKET_FAULTS: &[&str] = &[
    "partition",
    "packet_loss",
    "burst_loss",
    "packet_delay",
    "packet_duplicate",
    "packet_reorder",
    "bandwidth",
    "blackhole",
];
/// Process faults every system has; a system adds its operation faults
/// (`ChaosSystem::OP_FAULTS`).
pub const PROCESS_FAULTS: &[&str] = &["kill", "pause"];

/// One entry of the nemesis schedule as written.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub at: Duration,
    /// How long it lasts; absent means until the end of the run (kill and
    /// pause then heal at quiescence; a system's operation fault needs none).
    #[serde(default, rename = "for")]
    pub for_: Option<Duration>,
    pub fault: String,
    /// message | packet | process; defaults from the fault.
    #[serde(default)]
    pub layer: Option<String>,
    #[serde(default)]
    pub targets: Targets,
    /// Fault parameters: p, ms, jitter_ms, distribution, window, hold_ms,
    /// bytes_per_sec, shape, kinds...
    #[serde(default)]
    pub params: serde_json::Value,
    /// Whether the system claims to tolerate this fault (safety must hold
    /// either way; liveness is only required for faults inside the model).
    #[serde(default = "yes")]
    pub in_model: bool,
    /// Repeat the fault this often until the end of the run (soak runs).
    #[serde(default)]
    pub every: Option<Duration>,
}

/// Bound on the occurrences one repeated fault expands to.
const MAX_OCCURRENCES: usize = 10_000;

fn yes() -> bool {
    true
}

/// One fault of the expanded schedule: concrete targets, times in ms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scheduled {
    pub id: usize,
    /// The index of the `nemesis:` entry this occurrence comes from.
    #[serde(default)]
    pub entry: usize,
    pub at_ms: u64,
    pub for_ms: Option<u64>,
    pub fault: String,
    pub layer: String,
    pub targets: Vec<String>,
    /// A selector resolved only when the fault applies (`primary`: the
    /// primary may have changed since the schedule was made); `targets` is
    /// empty until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve: Option<String>,
    pub params: serde_json::Value,
    pub in_model: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub seed: u64,
    pub faults: Vec<Scheduled>,
}

impl Schedule {
    pub fn describe(&self) -> String {
        let mut s = format!("nemesis schedule (seed {}):\n", self.seed);
        if self.faults.is_empty() {
            s += "  (no faults)\n";
        }
        for f in &self.faults {
            let until = f
                .for_ms
                .map(|d| format!("{:>6.1}s", (f.at_ms + d) as f64 / 1000.0))
                .unwrap_or_else(|| "    end".into());
            s += &format!(
                "  #{:<2} {:>6.1}s .. {until}  {:<8} {:<16} {:<24} {}{}\n",
                f.id,
                f.at_ms as f64 / 1000.0,
                f.layer,
                f.fault,
                f.targets.join(","),
                if f.params.is_null() || f.params == serde_json::json!({}) {
                    String::new()
                } else {
                    f.params.to_string()
                },
                if f.in_model {
                    ""
                } else {
                    "  (outside the model)"
                }
            );
        }
        s
    }
}

/// A validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub path: PathBuf,
    pub file: ScenarioFile,
    pub name: String,
    pub cluster_path: PathBuf,
    /// Things that are allowed but probably not meant (a fault that does
    /// nothing); printed before the run.
    pub warnings: Vec<String>,
}

pub fn load(path: &Path) -> Result<Scenario, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        pos: None,
        field: String::new(),
        message: format!("cannot read the scenario file: {e}"),
        fix: "pass an existing scenario file".into(),
    })?;
    parse(path, &text)
}

/// The platforms a scenario may name (`run --platform` overrides it).
pub const PLATFORMS: &[&str] = &["local", "compose", "kubernetes"];

pub fn parse(path: &Path, text: &str) -> Result<Scenario, ConfigError> {
    let file: ScenarioFile = serde_yaml::from_str(text)
        .map_err(|e| yaml_error(path, text, &e, "see the scenario reference in README.md"))?;
    let ctx = Ctx::new(path, text);
    if !PLATFORMS.contains(&file.platform.as_str()) {
        return Err(ctx.err(
            "platform",
            format!("there is no platform {:?}", file.platform),
            format!("use one of: {}", PLATFORMS.join(", ")),
        ));
    }
    if file.duration.ms() < 1000 || file.duration.ms() > 24 * 3600 * 1000 {
        return Err(ctx.err(
            "duration",
            "the duration must be between 1s and 24h",
            "e.g. duration: 30s",
        ));
    }
    let ch = &file.checks;
    for (field, ms, min, max) in [
        (
            "checks.liveness_bound",
            ch.liveness_bound.ms(),
            100,
            3_600_000,
        ),
        (
            "checks.linearizability_timeout",
            ch.linearizability_timeout.ms(),
            1_000,
            3_600_000,
        ),
        ("checks.quiescence", ch.quiescence.ms(), 1_000, 3_600_000),
        (
            "workload.op_timeout",
            file.workload.op_timeout.ms(),
            100,
            600_000,
        ),
    ] {
        if !(min..=max).contains(&ms) {
            return Err(ctx.err(
                field,
                format!("{ms} ms is outside {min}..={max} ms"),
                format!("use a duration from {min} ms to {max} ms"),
            ));
        }
    }
    if !(16..=65_536).contains(&ch.linearizability_memory_mb) {
        return Err(ctx.err(
            "checks.linearizability_memory_mb",
            format!(
                "{} MiB is outside 16..=65536 MiB",
                ch.linearizability_memory_mb
            ),
            "use e.g. linearizability_memory_mb: 1024 (the default)",
        ));
    }
    let w = &file.workload;
    if w.concurrency == 0 || w.concurrency > 256 {
        return Err(ctx.err(
            "workload.concurrency",
            "concurrency must be 1..=256",
            "e.g. concurrency: 2",
        ));
    }
    if w.rate.is_some_and(|r| !(r > 0.0 && r <= 10_000.0)) {
        return Err(ctx.err(
            "workload.rate",
            "rate must be in (0, 10000] operations per second per client",
            "e.g. rate: 20",
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let cluster_path = base.join(&file.cluster);
    if !cluster_path.is_file() {
        return Err(ctx.err(
            "cluster",
            format!("cluster file {} does not exist", cluster_path.display()),
            "give the cluster file's path relative to the scenario file",
        ));
    }
    let cluster = config::load(&cluster_path, Certs::NotYet)?;
    let Some(system) = systems::info(&cluster.file.system) else {
        return Err(ctx.err(
            "cluster",
            format!(
                "the controller has no support for system {:?}",
                cluster.file.system
            ),
            "use a cluster of a system this build has",
        ));
    };
    check_mix(&ctx, &w.mix, &system)?;
    for (i, b) in file.bugs.iter().enumerate() {
        if !cluster.system.bugs.contains(b) {
            return Err(ctx.err(
                &format!("bugs[{i}]"),
                format!("{b:?} is not a planted bug of system {}", system.name),
                format!("use one of {}", cluster.system.bugs.join(", ")),
            ));
        }
    }
    for (i, f) in file.nemesis.iter().enumerate() {
        let field = |k: &str| format!("nemesis[{i}].{k}");
        let layer = f
            .layer
            .clone()
            .unwrap_or_else(|| default_layer(&f.fault).to_string());
        let process: Vec<&str> = PROCESS_FAULTS
            .iter()
            .chain(system.op_faults)
            .copied()
            .collect();
        let known = match layer.as_str() {
            "message" => MESSAGE_FAULTS,
            "packet" => PACKET_FAULTS,
            "process" => &process[..],
            other => {
                return Err(ctx.err(
                    &field("layer"),
                    format!("unknown layer {other:?}"),
                    "use message, packet or process",
                ))
            }
        };
        if !known.contains(&f.fault.as_str()) {
            return Err(ctx.err(
                &field("fault"),
                format!("{:?} is not a {layer}-layer fault", f.fault),
                format!("use one of: {}", known.join(", ")),
            ));
        }
        if let Targets::Selector(s) = &f.targets {
            if !SELECTORS.contains(&s.as_str()) {
                return Err(ctx.err(
                    &field("targets"),
                    format!("unknown selector {s:?}"),
                    format!("list node ids, or use one of: {}", SELECTORS.join(", ")),
                ));
            }
            if s == "primary" && !system.has_primary {
                return Err(ctx.err(
                    &field("targets"),
                    format!("system {} has no primary", system.name),
                    "select servers by id or another selector",
                ));
            }
        }
        if let Some(every) = f.every {
            let lasts = f.for_.map_or(0, |d| d.ms());
            if every.ms() == 0 || every.ms() <= lasts {
                return Err(ctx.err(
                    &field("every"),
                    "a repeated fault must heal before it comes again",
                    "make `every` longer than `for`",
                ));
            }
        }
        if f.at.ms() >= file.duration.ms() {
            return Err(ctx.err(
                &field("at"),
                "the fault starts after the run ends",
                "start it before `duration`",
            ));
        }
        if !f.params.is_null() && !f.params.is_object() {
            return Err(ctx.err(
                &field("params"),
                "params must be a mapping",
                "e.g. params: { p: 0.5 }",
            ));
        }
        if let Some(p) = f.params.get("p") {
            if !p.as_f64().is_some_and(|p| (0.0..=1.0).contains(&p)) {
                return Err(ctx.err(
                    &field("params.p"),
                    "p must be a probability in [0, 1]",
                    "e.g. p: 0.5",
                ));
            }
        }
        if f.fault == "partition"
            && f.params.get("shape").is_none()
            && !matches!(&f.targets, Targets::Ids(v) if !v.is_empty())
        {
            return Err(ctx.err(
                &field("params"),
                "a partition needs a shape (or targets to isolate)",
                "e.g. params: { shape: majority_minority } (halves, isolate, majority_minority, bridge, ring, one_way)",
            ));
        }
    }
    let warnings = check_against_cluster(&ctx, &file, &cluster)?;
    let name = file.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("scenario")
            .to_string()
    });
    Ok(Scenario {
        path: path.to_path_buf(),
        file,
        name,
        cluster_path,
        warnings,
    })
}

/// How much longer than a cluster's operation deadline the controller waits
/// for an answer: the admin API and a loaded machine need some time too.
pub const OP_TIMEOUT_MARGIN_MS: u64 = 1_000;

/// The mix names the system's operations with weights >= 0, not all zero.
fn check_mix(
    ctx: &Ctx,
    mix: &BTreeMap<String, f64>,
    system: &ChaosInfo,
) -> Result<(), ConfigError> {
    let names: Vec<&str> = system.mix.iter().map(|m| m.name).collect();
    let example = system
        .mix
        .iter()
        .map(|m| format!("{}: {}", m.name, m.weight))
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(bad) = mix.keys().find(|k| !names.contains(&k.as_str())) {
        return Err(ctx.err(
            &format!("workload.mix.{bad}"),
            format!("{bad:?} is not an operation of system {}", system.name),
            format!("use the system's operations: {}", names.join(", ")),
        ));
    }
    if !mix.is_empty()
        && (mix.values().any(|w| !(*w >= 0.0 && w.is_finite())) || mix.values().sum::<f64>() <= 0.0)
    {
        return Err(ctx.err(
            "workload.mix",
            "weights must be >= 0 and not all zero",
            format!("e.g. mix: {{ {example} }}"),
        ));
    }
    Ok(())
}

/// What can only be checked with the cluster in hand: client and target ids,
/// every fault's params (through the same conversion the nemesis applies), and
/// faults that would do nothing. Returns warnings for the latter.
fn check_against_cluster(
    ctx: &Ctx,
    file: &ScenarioFile,
    cluster: &Cluster,
) -> Result<Vec<String>, ConfigError> {
    let ids = cluster.ids();
    let clients = cluster.clients();
    // An operation answers by its deadline; the controller must wait longer,
    // or every slow operation is recorded as a false unknown.
    let deadline_ms = cluster.op_deadline.as_millis() as u64;
    let need_ms = deadline_ms + OP_TIMEOUT_MARGIN_MS;
    if file.workload.op_timeout.ms() < need_ms {
        return Err(ctx.err(
            "workload.op_timeout",
            format!(
                "op_timeout {} ms is shorter than the cluster's operation deadline {deadline_ms} ms plus {OP_TIMEOUT_MARGIN_MS} ms: slow operations would be recorded unknown though they answered",
                file.workload.op_timeout.ms()
            ),
            format!(
                "raise op_timeout to at least {need_ms} ms, or lower the deadline in {}",
                cluster.path.display()
            ),
        ));
    }
    for (i, c) in file.workload.clients.iter().enumerate() {
        if !clients.contains(c) {
            return Err(ctx.err(
                &format!("workload.clients[{i}]"),
                format!("{c:?} is not a client of {}", cluster.path.display()),
                format!("use clients of the cluster: {}", clients.join(", ")),
            ));
        }
    }
    for (i, f) in file.nemesis.iter().enumerate() {
        if let Targets::Ids(v) = &f.targets {
            if let Some((j, bad)) = v.iter().enumerate().find(|(_, t)| !ids.contains(t)) {
                return Err(ctx.err(
                    &format!("nemesis[{i}].targets[{j}]"),
                    format!("{bad:?} is not a node of {}", cluster.path.display()),
                    format!(
                        "use node ids ({}) or a selector ({})",
                        ids.join(", "),
                        SELECTORS.join(", ")
                    ),
                ));
            }
        }
    }
    let schedule = expand(file, &cluster.servers(), &clients)
        .map_err(|e| ctx.err("nemesis", e, "see the scenario reference in README.md"))?;
    for s in &schedule.faults {
        crate::nemesis::check_params(s, &ids, &cluster.servers(), cluster.system.message_kinds)
            .map_err(|e| {
                ctx.err(
                    &format!("nemesis[{}].params", s.entry),
                    format!("{} fault: {e}", s.fault),
                    "see the fault reference in README.md",
                )
            })?;
    }
    // Each fault is leased on the nodes and the proxy for its window plus a
    // margin; the proxy keeps no lease longer than a day.
    const LEASE_MARGIN_MS: u64 = 25_000;
    let max_window = crate::proxy::MAX_LEASE.as_millis() as u64 - LEASE_MARGIN_MS;
    for (i, f) in file.nemesis.iter().enumerate() {
        let window = f.for_.map_or(file.duration.ms(), |d| d.ms());
        if window > max_window {
            return Err(ctx.err(
                &format!("nemesis[{i}].for"),
                format!(
                    "a fault may hold at most {} s (a day less its lease margin)",
                    max_window / 1000
                ),
                "split it into shorter faults, or use `every`",
            ));
        }
    }
    let mut warnings = Vec::new();
    let end = file.duration.ms();
    for (i, f) in file.nemesis.iter().enumerate() {
        let line = ctx
            .pos(&format!("nemesis[{i}]"))
            .map_or(String::new(), |p| format!(" (line {})", p.line));
        match f.for_ {
            Some(d) if d.ms() == 0 => warnings.push(format!(
                "nemesis[{i}]{line}: `for: 0s` heals the fault as soon as it is applied; it does nothing"
            )),
            Some(d) if f.every.is_none() && f.at.ms() + d.ms() > end => warnings.push(format!(
                "nemesis[{i}]{line}: runs to {:.1}s, past the end of the run at {:.1}s; it is healed at the end",
                (f.at.ms() + d.ms()) as f64 / 1000.0,
                end as f64 / 1000.0
            )),
            _ => {}
        }
    }
    Ok(warnings)
}

pub fn default_layer(fault: &str) -> &'static str {
    if MESSAGE_FAULTS.contains(&fault) {
        "message"
    } else if PACKET_FAULTS.contains(&fault) {
        "packet"
    } else {
        "process"
    }
}

/// Resolves every fault's targets with the seed. `servers` and `clients` are
/// the cluster's initial roles.
pub fn expand(
    s: &ScenarioFile,
    servers: &[String],
    clients: &[String],
) -> Result<Schedule, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let all: Vec<String> = servers.iter().chain(clients).cloned().collect();
    let mut faults = Vec::new();
    // Every occurrence of every fault (`every` repeats one until the end),
    // in time order; each occurrence draws its own random targets.
    let mut occurrences: Vec<(u64, usize, &FaultSpec)> = Vec::new();
    for (entry, f) in s.nemesis.iter().enumerate() {
        let mut at = f.at.ms();
        loop {
            occurrences.push((at, entry, f));
            match f.every {
                Some(every) if every.ms() > 0 && occurrences.len() < MAX_OCCURRENCES => {
                    at += every.ms();
                    if at >= s.duration.ms() {
                        break;
                    }
                }
                _ => break,
            }
        }
    }
    occurrences.sort_by_key(|(at, entry, _)| (*at, *entry));
    for (id, (at_ms, entry, f)) in occurrences.into_iter().enumerate() {
        let n = servers.len();
        let f_count = n.saturating_sub(1) / 2;
        let pick = |rng: &mut ChaCha8Rng, from: &[String], k: usize| -> Vec<String> {
            let mut v: Vec<String> = from.choose_multiple(rng, k).cloned().collect();
            v.sort();
            v
        };
        let targets = match &f.targets {
            Targets::Ids(ids) => {
                if let Some(bad) = ids.iter().find(|i| !all.contains(i)) {
                    return Err(format!(
                        "nemesis[{entry}]: {bad:?} is not a node of the cluster"
                    ));
                }
                ids.clone()
            }
            Targets::Selector(sel) => match sel.as_str() {
                "f_servers" => pick(&mut rng, servers, f_count),
                "random_minority" => {
                    let k = if f_count == 0 {
                        0
                    } else {
                        rand::Rng::random_range(&mut rng, 1..=f_count)
                    };
                    pick(&mut rng, servers, k)
                }
                "one_server" => pick(&mut rng, servers, 1),
                "all_but_one" => pick(&mut rng, servers, n.saturating_sub(1)),
                "servers" => servers.to_vec(),
                "clients" => clients.to_vec(),
                "all" => all.clone(),
                "primary" => Vec::new(),
                other => {
                    return Err(format!(
                        "nemesis[{entry}]: selector {other:?} does not apply"
                    ))
                }
            },
        };
        let mut params = if f.params.is_null() {
            serde_json::json!({})
        } else {
            f.params.clone()
        };
        // A partition without an explicit minority cuts off the targets.
        if f.fault == "partition" && params.get("shape").is_none() {
            params["shape"] = serde_json::json!("isolate_group");
        }
        if f.fault == "partition"
            && params["shape"] == "majority_minority"
            && params.get("minority").is_none()
        {
            let mut shuffled = servers.to_vec();
            shuffled.shuffle(&mut rng);
            let mut minority: Vec<String> = shuffled.into_iter().take(f_count).collect();
            minority.sort();
            params["minority"] = serde_json::json!(minority);
        }
        faults.push(Scheduled {
            id,
            entry,
            at_ms,
            for_ms: f.for_.map(|d| d.ms()),
            layer: f
                .layer
                .clone()
                .unwrap_or_else(|| default_layer(&f.fault).to_string()),
            fault: f.fault.clone(),
            resolve: match &f.targets {
                Targets::Selector(s) if s == "primary" => Some(s.clone()),
                _ => None,
            },
            targets,
            params,
            in_model: f.in_model,
        });
    }
    Ok(Schedule {
        seed: s.seed,
        faults,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "faultline-scn-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clusters/default.yaml");
        std::fs::copy(shipped, d.join("c.yaml")).unwrap();
        d
    }

    fn load_err(text: &str) -> String {
        match load(&write(&dir(), "bad.yaml", text)) {
            Ok(_) => panic!("loaded: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn mistakes_are_refused_before_anything_starts() {
        let head = "cluster: c.yaml\nduration: 20s\n";
        for (body, want) in [
            ("workload: { clients: [c9] }\n", "bad.yaml:3:23: field `workload.clients[0]`: \"c9\" is not a client"),
            ("nemesis:\n  - { at: 3s, for: .inf, fault: omission, targets: [s1] }\n", "not a duration from 0 to 30 days"),
            ("nemesis:\n  - { at: 3s, for: 1e17, fault: omission, targets: [s1] }\n", "not a duration from 0 to 30 days"),
            ("nemesis:\n  - { at: 3s, for: 2s, fault: packet_delay, targets: [s1], params: { ms: -100 } }\n", "field `nemesis[0].params`: packet_delay fault: invalid faults: delay.ms"),
            ("nemesis:\n  - { at: 3s, for: 2s, fault: partition, params: { shape: triangle } }\n", "unknown variant `triangle`"),
            ("nemesis:\n  - { at: 3s, for: 2s, fault: kill, targets: [s1] }\n  - { at: 1s, for: 2s, fault: omission, targets: [s9] }\n", "bad.yaml:5:51: field `nemesis[1].targets[0]`: \"s9\" is not a node"),
            ("nemesis:\n  - { at: 3s, for: 2s, fault: drop, targets: [s1], params: { probability: 0.3 } }\n", "unknown param \"probability\""),
            ("nemesis:\n  - { at: 3s, for: 2s, fault: delay, targets: [s1], params: { ms: fast } }\n", "ms: \"fast\" is not a number"),
            ("nemesis:\n  - { at: 3s, for: 2s, fault: drop, targets: [s1], params: { kinds: [wrte] } }\n", "\"wrte\" is not a message kind"),
            ("workload: { op_timeout: 2s }\n", "field `workload.op_timeout`: op_timeout 2000 ms is shorter than the cluster's operation deadline 3000 ms"),
            ("workload: { mix: { pay: 1, withdraw: 1 } }\n", "field `workload.mix.withdraw`: \"withdraw\" is not an operation of system tokens"),
            ("workload: { mix: { pay: 0, gettokens: 0 } }\n", "weights must be >= 0 and not all zero"),
            ("bugs: [double_apply]\n", "field `bugs[0]`: \"double_apply\" is not a planted bug of system tokens"),
            ("nemesis:\n  - { at: 3s, fault: promote, targets: [s1] }\n", "\"promote\" is not a process-layer fault"),
            ("nemesis:\n  - { at: 3s, for: 2s, fault: kill, targets: primary }\n", "system tokens has no primary"),
            ("platform: nomad\n", "field `platform`: there is no platform \"nomad\""),
        ] {
            let e = load_err(&format!("{head}{body}"));
            assert!(e.contains(want), "{body}: expected {want:?} in {e}");
            assert!(e.contains("fix:"), "{e}");
        }
    }

    #[test]
    fn faults_that_do_nothing_are_warned_about() {
        let text = "cluster: c.yaml\nduration: 20s\nnemesis:\n  - { at: 3s, for: 0s, fault: omission, targets: [s1] }\n  - { at: 15s, for: 10s, fault: omission, targets: [s2] }\n";
        let s = load(&write(&dir(), "warn.yaml", text)).unwrap();
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(
            s.warnings[0].contains("nemesis[0] (line 4): `for: 0s`"),
            "{:?}",
            s.warnings
        );
        assert!(
            s.warnings[1].contains("runs to 25.0s, past the end of the run at 20.0s"),
            "{:?}",
            s.warnings
        );
    }

    const GOOD: &str = "cluster: c.yaml\nduration: 20s\nseed: 9\nnemesis:\n  - at: 2s\n    for: 3s\n    fault: omission\n    targets: f_servers\n    params: { p: 1.0 }\n  - at: 8s\n    for: 4s\n    fault: partition\n    params: { shape: majority_minority }\n  - at: 14s\n    for: 2s\n    fault: kill\n    targets: one_server\n";

    #[test]
    fn expansion_is_deterministic_per_seed() {
        let d = dir();
        let s = load(&write(&d, "s.yaml", GOOD)).unwrap();
        let servers: Vec<String> = (1..=5).map(|i| format!("s{i}")).collect();
        let clients: Vec<String> = (1..=6).map(|i| format!("c{i}")).collect();
        let a = expand(&s.file, &servers, &clients).unwrap();
        let b = expand(&s.file, &servers, &clients).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.faults[0].targets.len(), 2, "f = 2 of 5 servers");
        assert_eq!(a.faults[0].layer, "message");
        assert_eq!(
            a.faults[1].params["minority"].as_array().map(|m| m.len()),
            Some(2)
        );
        assert_eq!(a.faults[2].targets.len(), 1);
        let mut other = s.file.clone();
        other.seed = 10;
        let c = expand(&other, &servers, &clients).unwrap();
        let differs = (10..40).any(|seed| {
            let mut o = s.file.clone();
            o.seed = seed;
            expand(&o, &servers, &clients).unwrap() != a
        });
        assert!(differs, "other seeds choose other targets");
        assert_eq!(c.seed, 10);
        assert!(a.describe().contains("omission"));
    }

    #[test]
    fn every_shipped_scenario_loads_and_expands() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "yaml") {
                let s = load(&p).unwrap_or_else(|e| panic!("{e}"));
                // Against its own cluster file's nodes: selectors and ids
                // must name nodes that exist there.
                let cluster = crate::platform::local::load_template(&s.cluster_path)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                let sched = expand(&s.file, &cluster.servers(), &cluster.clients())
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                assert!(!sched.faults.is_empty(), "{}", p.display());
                n += 1;
            }
        }
        assert!(n >= 2, "scenarios found: {n}");
    }

    #[test]
    fn repeated_faults_expand_until_the_end() {
        let d = dir();
        let text = "cluster: c.yaml\nduration: 60s\nseed: 3\nnemesis:\n  - { at: 5s, for: 4s, every: 20s, fault: kill, targets: one_server }\n  - { at: 10s, for: 5s, fault: omission, targets: f_servers }\n";
        let s = load(&write(&d, "rep.yaml", text)).unwrap();
        let servers: Vec<String> = (1..=5).map(|i| format!("s{i}")).collect();
        let a = expand(&s.file, &servers, &[]).unwrap();
        let at: Vec<u64> = a.faults.iter().map(|f| f.at_ms).collect();
        assert_eq!(at, vec![5_000, 10_000, 25_000, 45_000]);
        assert_eq!(
            a.faults.iter().map(|f| f.id).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        let bad = text.replace("every: 20s", "every: 3s");
        let e = load(&write(&d, "rep-bad.yaml", &bad)).expect_err("every shorter than for");
        assert!(e.to_string().contains("heal before it comes again"), "{e}");
    }

    #[test]
    fn bad_scenarios_name_line_and_field() {
        let d = dir();
        let cases = [
            (
                "unknown-field",
                GOOD.replace("seed: 9", "sed: 9"),
                3,
                "unknown field `sed`",
            ),
            (
                "bad-fault",
                GOOD.replace("fault: omission", "fault: explode"),
                7,
                "nemesis[0].fault",
            ),
            (
                "bad-selector",
                GOOD.replace("targets: f_servers", "targets: most_servers"),
                8,
                "unknown selector",
            ),
            ("bad-p", GOOD.replace("p: 1.0", "p: 1.5"), 9, "probability"),
            (
                "late",
                GOOD.replace("at: 14s", "at: 40s"),
                14,
                "after the run ends",
            ),
            (
                "bad-duration",
                GOOD.replace("duration: 20s", "duration: soon"),
                2,
                "not a duration",
            ),
            (
                "no-cluster",
                GOOD.replace("cluster: c.yaml", "cluster: nope.yaml"),
                1,
                "does not exist",
            ),
        ];
        for (name, text, line, what) in cases {
            let p = write(&d, &format!("{name}.yaml"), &text);
            let e = load(&p).expect_err(name);
            let msg = e.to_string();
            assert!(msg.contains(what), "{name}: {msg}");
            assert_eq!(e.pos.map(|p| p.line), Some(line), "{name}: {msg}");
            assert!(msg.contains("fix:"), "{name}: {msg}");
        }
    }
}
