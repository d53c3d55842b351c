//! The cluster file: one YAML document that describes a whole cluster (the
//! system, every node's role and addresses, transport settings, the system's
//! parameters). Every node reads the same file and picks its own entry.
//!
//! Loading is all-or-nothing: a bad file gives one [`ConfigError`] naming the
//! file, line, field and the fix, and nothing starts.

pub mod positions;

mod section;

use crate::faults::FaultRule;
use crate::system::{self, SystemInfo, SYSTEMS};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use positions::Pos;

/// A cluster file that cannot be used, with where and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub pos: Option<Pos>,
    pub field: String,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.pos {
            write!(f, ":{}:{}", p.line, p.col)?;
        }
        if !self.field.is_empty() {
            write!(f, ": field `{}`", self.field)?;
        }
        write!(f, ": {}", self.message)?;
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The generic part of a cluster file. Besides these fields the file may
/// hold one section named after its system (`tokens:`), which the system's
/// [`System::Section`](crate::system::System::Section) reads; any other
/// top-level key is an error.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterFile {
    pub system: String,
    /// Seeds the fault layer's RNGs so a run can be replayed.
    #[serde(default)]
    pub seed: u64,
    /// Bearer token for the admin APIs (`/faults`, `/ops`). The environment
    /// variable `FAULTLINE_SECRET` overrides it.
    #[serde(default)]
    pub secret: Option<String>,
    pub tls: TlsFile,
    #[serde(default)]
    pub transport: TransportFile,
    /// Where nodes keep their durable logs, one subdirectory per node.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Message fault rules installed at start (each node applies those that
    /// concern it); the controller replaces them at runtime.
    #[serde(default)]
    pub faults: Vec<FaultRule>,
    /// The directory relative paths in the system's section resolve
    /// against; absent: the cluster file's own. A controller that writes the
    /// file somewhere else sets it to the original's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_dir: Option<PathBuf>,
    pub nodes: Vec<NodeFile>,
    /// The system's section as written (the key named after `system`), kept
    /// so a controller can write the file out again with its changes.
    #[serde(skip)]
    pub section: Option<serde_yaml::Value>,
}

impl ClusterFile {
    /// The file as YAML, the system's section included.
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        let mut v = serde_yaml::to_value(self)?;
        if let (Some(section), serde_yaml::Value::Mapping(m)) = (&self.section, &mut v) {
            m.insert(self.system.clone().into(), section.clone());
        }
        serde_yaml::to_string(&v)
    }

    /// Switches on planted bugs: every system's section has a `bugs:` map of
    /// booleans. An unknown name is an error listing the system's bugs.
    pub fn enable_bugs(&mut self, names: &[String]) -> Result<(), String> {
        let known = system::info(&self.system)
            .map(|i| i.bugs)
            .unwrap_or_default();
        if names.is_empty() {
            return Ok(());
        }
        let section = self
            .section
            .get_or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
        let serde_yaml::Value::Mapping(m) = section else {
            return Err(format!("the `{}:` section is not a mapping", self.system));
        };
        let bugs = m
            .entry("bugs".into())
            .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
        let serde_yaml::Value::Mapping(bugs) = bugs else {
            return Err(format!("`{}.bugs` is not a mapping", self.system));
        };
        for name in names {
            if !known.contains(name) {
                return Err(format!(
                    "{name:?} is not a planted bug of system {} (known: {})",
                    self.system,
                    known.join(", ")
                ));
            }
            bugs.insert(name.clone().into(), true.into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// Holds `ca.pem` and `<id>.pem` / `<id>.key` per node; relative paths
    /// are relative to the cluster file.
    pub dir: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportFile {
    pub idle_timeout_ms: u64,
    pub keep_alive_ms: u64,
    pub initial_rtt_ms: u64,
    pub max_frame_bytes: usize,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Frames queued for a peer that is not connected before new ones drop.
    pub queue_limit: usize,
}

impl Default for TransportFile {
    fn default() -> Self {
        TransportFile {
            idle_timeout_ms: 5_000,
            keep_alive_ms: 1_000,
            initial_rtt_ms: 20,
            max_frame_bytes: 1 << 20,
            reconnect_min_ms: 50,
            reconnect_max_ms: 2_000,
            queue_limit: 65_536,
        }
    }
}

impl TransportFile {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn keep_alive(&self) -> Duration {
        Duration::from_millis(self.keep_alive_ms)
    }
    pub fn initial_rtt(&self) -> Duration {
        Duration::from_millis(self.initial_rtt_ms)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    pub id: String,
    pub role: String,
    /// Where the node's QUIC endpoint binds (an IP socket address).
    pub listen: String,
    /// Where peers dial it (`host:port`; a proxy port or a DNS name is fine).
    #[serde(default)]
    pub advertise: Option<String>,
    /// HTTP admin address: `/metrics`, `/state`, `/faults`, `/history`, `/ops`.
    pub admin: String,
    /// Per-peer addresses this node dials instead of the peer's `advertise`,
    /// e.g. one packet-proxy port per directed link.
    #[serde(default)]
    pub dial: BTreeMap<String, String>,
}

/// The top-level fields of [`ClusterFile`], for the unknown-field error.
const FIELDS: &[&str] = &[
    "system",
    "base_dir",
    "seed",
    "secret",
    "tls",
    "transport",
    "data_dir",
    "faults",
    "nodes",
];

/// A system's validated parameters ([`System::Params`](crate::system::System::Params)),
/// type-erased so that [`Cluster`] needs no type parameter.
#[derive(Clone)]
pub struct SystemParams(Arc<dyn Any + Send + Sync>);

impl fmt::Debug for SystemParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SystemParams(..)")
    }
}

/// A validated cluster file.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub path: PathBuf,
    pub file: ClusterFile,
    pub nodes: Vec<Node>,
    pub tls_dir: PathBuf,
    pub data_dir: Option<PathBuf>,
    pub secret: String,
    /// The system named by `system:`, from the registry.
    pub system: SystemInfo,
    /// The system's parameters, validated from its section.
    params: SystemParams,
    /// How long a client operation may run before it answers failed or
    /// unknown; clients of the admin API wait at least this long.
    pub op_deadline: Duration,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub id: String,
    pub role: String,
    pub listen: SocketAddr,
    pub advertise: String,
    pub admin: SocketAddr,
    pub dial: BTreeMap<String, String>,
}

impl Cluster {
    /// Where `from` dials `to`: its override for that peer, else `to`'s
    /// advertised address.
    pub fn dial_addr(&self, from: &str, to: &str) -> Option<String> {
        let target = self.node(to)?;
        Some(
            self.node(from)
                .and_then(|f| f.dial.get(to).cloned())
                .unwrap_or_else(|| target.advertise.clone()),
        )
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn ids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }

    /// The nodes whose role takes client operations, in file order.
    pub fn clients(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| self.system.client_roles.contains(&n.role.as_str()))
            .map(|n| n.id.clone())
            .collect()
    }

    /// The other nodes: those fault selectors such as `f_servers` pick from.
    pub fn servers(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| !self.system.client_roles.contains(&n.role.as_str()))
            .map(|n| n.id.clone())
            .collect()
    }

    /// Where relative paths of the system's section resolve (`base_dir`,
    /// or the cluster file's directory).
    pub fn base_dir(&self) -> PathBuf {
        self.file.base_dir.clone().unwrap_or_else(|| {
            self.path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."))
        })
    }

    pub fn with_role(&self, role: &str) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.role == role)
            .map(|n| n.id.clone())
            .collect()
    }

    /// The system's validated parameters; `None` if `P` is not the type of
    /// this cluster's system.
    pub fn params<P: Any + Send + Sync>(&self) -> Option<Arc<P>> {
        self.params.0.clone().downcast::<P>().ok()
    }

    pub fn cert_path(&self, id: &str) -> PathBuf {
        self.tls_dir.join(format!("{id}.pem"))
    }
    pub fn key_path(&self, id: &str) -> PathBuf {
        self.tls_dir.join(format!("{id}.key"))
    }
    pub fn ca_path(&self) -> PathBuf {
        self.tls_dir.join("ca.pem")
    }
    pub fn node_data_dir(&self, id: &str) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|d| d.join(id))
    }
}

/// Whether `load` insists that every node's certificate exists.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Certs {
    Required,
    NotYet,
}

/// A YAML file being validated: its path and the position of every field,
/// to build errors that point at the line to fix. Scenario files use it too.
pub struct Ctx<'a> {
    path: &'a Path,
    positions: HashMap<String, Pos>,
}

impl<'a> Ctx<'a> {
    pub fn new(path: &'a Path, text: &str) -> Self {
        Ctx {
            path,
            positions: positions::positions(text),
        }
    }

    /// Where `field` is written, if it is.
    pub fn pos(&self, field: &str) -> Option<Pos> {
        positions::lookup(&self.positions, field)
    }

    pub fn err(
        &self,
        field: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.path.to_path_buf(),
            pos: positions::lookup(&self.positions, field),
            field: field.to_string(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// Reads and validates a cluster file.
pub fn load(path: &Path, certs: Certs) -> Result<Cluster, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        pos: None,
        field: String::new(),
        message: format!("cannot read the cluster file: {e}"),
        fix: "pass an existing file with --cluster".into(),
    })?;
    parse(path, &text, certs)
}

/// Validates cluster file text; `path` names it in errors and anchors
/// relative paths.
pub fn parse(path: &Path, text: &str, certs: Certs) -> Result<Cluster, ConfigError> {
    let reference = "see the cluster file reference in README.md";
    let mut ignored = Vec::new();
    let file: ClusterFile =
        serde_ignored::deserialize(serde_yaml::Deserializer::from_str(text), |p| {
            ignored.push(p.to_string())
        })
        .map_err(|e| yaml_error(path, text, &e, reference))?;
    let mut file = file;
    let ctx = Ctx::new(path, text);
    // An unknown system is reported by `validate`, not as an unknown section.
    if system::info(&file.system).is_some() {
        section::check_top_level(&ctx, &file.system, &ignored, FIELDS)?;
    }
    file.section = serde_yaml::from_str::<serde_yaml::Value>(text)
        .ok()
        .and_then(|doc| doc.get(file.system.as_str()).cloned())
        .filter(|v| !v.is_null());
    let mut cluster = validate(&ctx, file)?;
    let system = cluster.file.system.clone();
    let (params, deadline) = crate::with_system!(
        system.as_str(),
        |S| section::params::<S>(&ctx, text, &cluster)?,
        else unreachable!("validate refused system {system:?}")
    );
    cluster.params = params;
    cluster.op_deadline = deadline;
    if certs == Certs::Required {
        check_certs(&ctx, &cluster)?;
    }
    Ok(cluster)
}

/// A deserialisation error as a [`ConfigError`] with file, line and field.
/// `reference` says where the format is documented.
pub fn yaml_error(path: &Path, text: &str, e: &serde_yaml::Error, reference: &str) -> ConfigError {
    let mut pos = e.location().map(|l| Pos {
        line: l.line(),
        col: l.column(),
    });
    let msg = e.to_string();
    // serde_yaml appends " at line L column C"; the position is printed already.
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    let (mut field, message) = match msg.split_once(": ") {
        Some((f, m)) if !f.contains(' ') => (f.to_string(), m.to_string()),
        _ => (String::new(), msg),
    };
    // Conversion errors (a bad duration) come without a path: find the line
    // holding the offending quoted value instead.
    if field.is_empty() {
        if let Some(bad) = message.split('"').nth(1).filter(|b| !b.is_empty()) {
            if let Some((i, line)) = text.lines().enumerate().find(|(_, l)| l.contains(bad)) {
                pos = Some(Pos {
                    line: i + 1,
                    col: 1,
                });
                field = line
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_start_matches("- ")
                    .to_string();
            }
        }
    }
    let fix = if message.contains("unknown field") {
        format!("remove the field or correct its spelling ({reference})")
    } else if message.contains("missing field") {
        format!("add the field ({reference})")
    } else {
        format!("correct the YAML at that position ({reference})")
    };
    ConfigError {
        file: path.to_path_buf(),
        pos,
        field,
        message,
        fix,
    }
}

fn valid_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    !host.is_empty()
        && port.parse::<u16>().is_ok_and(|p| p != 0)
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

fn validate(ctx: &Ctx, file: ClusterFile) -> Result<Cluster, ConfigError> {
    let Some(info) = system::info(&file.system) else {
        return Err(ctx.err(
            "system",
            format!("unknown system {:?}", file.system),
            format!("use one of: {}", SYSTEMS.join(", ")),
        ));
    };
    if file.nodes.is_empty() {
        return Err(ctx.err(
            "nodes",
            "the cluster has no nodes",
            "list every node under `nodes:`",
        ));
    }
    let roles = info.roles;
    let mut seen_ids = HashSet::new();
    let mut seen_addrs: HashMap<String, String> = HashMap::new();
    let mut nodes = Vec::new();
    for (i, n) in file.nodes.iter().enumerate() {
        let f = |k: &str| format!("nodes[{i}].{k}");
        if n.id.is_empty()
            || !n
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ctx.err(
                &f("id"),
                format!("node id {:?} is not a simple name", n.id),
                "use letters, digits, '-' and '_' only (e.g. s1, c4)",
            ));
        }
        if !seen_ids.insert(n.id.clone()) {
            return Err(ctx.err(
                &f("id"),
                format!("duplicate node id {:?}", n.id),
                "give every node a distinct id",
            ));
        }
        if !roles.contains(&n.role.as_str()) {
            return Err(ctx.err(
                &f("role"),
                format!("{:?} is not a role of system {}", n.role, file.system),
                format!("use one of: {}", roles.join(", ")),
            ));
        }
        let listen: SocketAddr = n.listen.parse().map_err(|_| {
            ctx.err(
                &f("listen"),
                format!("{:?} is not an IP socket address", n.listen),
                "write IP:PORT, e.g. 127.0.0.1:7001 or 0.0.0.0:7001",
            )
        })?;
        let admin: SocketAddr = n.admin.parse().map_err(|_| {
            ctx.err(
                &f("admin"),
                format!("{:?} is not an IP socket address", n.admin),
                "write IP:PORT, e.g. 127.0.0.1:9001",
            )
        })?;
        let advertise = n.advertise.clone().unwrap_or_else(|| n.listen.clone());
        if !valid_host_port(&advertise) {
            return Err(ctx.err(
                &f("advertise"),
                format!("{advertise:?} is not HOST:PORT"),
                "write HOST:PORT, e.g. 127.0.0.1:7001 or s1:7001",
            ));
        }
        for (k, a) in [("listen", listen), ("admin", admin)] {
            if a.port() == 0 {
                return Err(ctx.err(&f(k), "port 0 is not allowed", "choose a fixed port"));
            }
            if !a.ip().is_unspecified() {
                if let Some(other) = seen_addrs.insert(a.to_string(), format!("{} {k}", n.id)) {
                    return Err(ctx.err(
                        &f(k),
                        format!("address {a} is already used by {other}"),
                        "give every listen and admin address its own port",
                    ));
                }
            }
        }
        for (peer, addr) in &n.dial {
            if !valid_host_port(addr) {
                return Err(ctx.err(
                    &format!("nodes[{i}].dial.{peer}"),
                    format!("{addr:?} is not HOST:PORT"),
                    "write HOST:PORT, e.g. 127.0.0.1:7001",
                ));
            }
        }
        nodes.push(Node {
            id: n.id.clone(),
            role: n.role.clone(),
            listen,
            advertise,
            admin,
            dial: n.dial.clone(),
        });
    }
    check_ranges(ctx, &file)?;
    for (i, n) in nodes.iter().enumerate() {
        if let Some(peer) = n.dial.keys().find(|p| !seen_ids.contains(*p)) {
            return Err(ctx.err(
                &format!("nodes[{i}].dial.{peer}"),
                format!("{peer:?} is not a node of this cluster"),
                "name peers by their id",
            ));
        }
    }
    let tr = &file.transport;
    if tr.keep_alive_ms >= tr.idle_timeout_ms {
        return Err(ctx.err(
            "transport.keep_alive_ms",
            format!(
                "keep_alive_ms ({}) must be below idle_timeout_ms ({})",
                tr.keep_alive_ms, tr.idle_timeout_ms
            ),
            "e.g. idle_timeout_ms: 5000 and keep_alive_ms: 1000",
        ));
    }
    for (i, r) in file.faults.iter().enumerate() {
        r.validate(&seen_ids, info.message_kinds).map_err(|m| {
            ctx.err(
                &format!("faults[{i}]"),
                m,
                "see the fault rule reference in README.md",
            )
        })?;
    }
    let base = ctx.path.parent().unwrap_or(Path::new("."));
    let tls_dir = base.join(&file.tls.dir);
    let secret = std::env::var("FAULTLINE_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| file.secret.clone())
        .unwrap_or_default();
    if secret.len() < 8 {
        return Err(ctx.err(
            "secret",
            "the admin secret is missing or shorter than 8 characters",
            "set `secret:` in the file or the FAULTLINE_SECRET environment variable",
        ));
    }
    let data_dir = file.data_dir.as_ref().map(|d| base.join(d));
    Ok(Cluster {
        path: ctx.path.to_path_buf(),
        nodes,
        tls_dir,
        data_dir,
        secret,
        file,
        system: info,
        params: SystemParams(Arc::new(())),
        op_deadline: Duration::ZERO,
    })
}

/// Every node's certificate and key, and the CA, exist.
fn check_certs(ctx: &Ctx, cluster: &Cluster) -> Result<(), ConfigError> {
    let (tls_dir, nodes) = (&cluster.tls_dir, &cluster.nodes);
    let mut needed = vec![("ca".to_string(), tls_dir.join("ca.pem"))];
    for n in nodes.iter() {
        needed.push((n.id.clone(), tls_dir.join(format!("{}.pem", n.id))));
        needed.push((n.id.clone(), tls_dir.join(format!("{}.key", n.id))));
    }
    if let Some((who, p)) = needed.iter().find(|(_, p)| !p.is_file()) {
        return Err(ctx.err(
            "tls.dir",
            format!("missing certificate for {who}: {}", p.display()),
            format!(
                "run `faultline-node certs --cluster {} --out {}`",
                ctx.path.display(),
                tls_dir.display()
            ),
        ));
    }
    Ok(())
}

/// One number of a file and the range it must be in (inclusive), so that no
/// value that passes can hurt later: spin a core, allocate terabytes, or wrap
/// when converted to microseconds.
pub struct Range {
    pub field: &'static str,
    pub value: u64,
    pub min: u64,
    pub max: u64,
    pub default: u64,
    pub unit: &'static str,
}

impl Range {
    /// `field` (its path in the file, for the error) holds `value`, which
    /// must be in `min..=max` `unit`s; `default` is suggested in the fix.
    pub const fn new(
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
        default: u64,
        unit: &'static str,
    ) -> Self {
        Range {
            field,
            value,
            min,
            max,
            default,
            unit,
        }
    }

    /// The range error, naming the field's line, or `None` when it holds.
    pub fn check(&self, ctx: &Ctx) -> Result<(), ConfigError> {
        if (self.min..=self.max).contains(&self.value) {
            return Ok(());
        }
        Err(ctx.err(
            self.field,
            format!(
                "{} {} is outside {}..={} {}",
                self.value, self.unit, self.min, self.max, self.unit
            ),
            format!(
                "use a value from {} to {} (the default is {})",
                self.min, self.max, self.default
            ),
        ))
    }
}

/// Every number of the cluster file that is not checked against another.
fn check_ranges(ctx: &Ctx, file: &ClusterFile) -> Result<(), ConfigError> {
    let tr = &file.transport;
    let dt = TransportFile::default();
    let ranges = [
        // Keep-alives below 10 ms burn a core on an idle cluster; idle
        // timeouts must leave room for them and for a partition to heal.
        Range::new(
            "transport.idle_timeout_ms",
            tr.idle_timeout_ms,
            100,
            3_600_000,
            dt.idle_timeout_ms,
            "ms",
        ),
        Range::new(
            "transport.keep_alive_ms",
            tr.keep_alive_ms,
            10,
            600_000,
            dt.keep_alive_ms,
            "ms",
        ),
        Range::new(
            "transport.initial_rtt_ms",
            tr.initial_rtt_ms,
            1,
            10_000,
            dt.initial_rtt_ms,
            "ms",
        ),
        Range::new(
            "transport.max_frame_bytes",
            tr.max_frame_bytes as u64,
            1024,
            64 << 20,
            dt.max_frame_bytes as u64,
            "bytes",
        ),
        Range::new(
            "transport.reconnect_min_ms",
            tr.reconnect_min_ms,
            1,
            60_000,
            dt.reconnect_min_ms,
            "ms",
        ),
        Range::new(
            "transport.reconnect_max_ms",
            tr.reconnect_max_ms,
            tr.reconnect_min_ms.max(1),
            600_000,
            dt.reconnect_max_ms,
            "ms",
        ),
        Range::new(
            "transport.queue_limit",
            tr.queue_limit as u64,
            1,
            10_000_000,
            dt.queue_limit as u64,
            "frames",
        ),
    ];
    ranges.iter().try_for_each(|r| r.check(ctx))
}

/// A human summary for `faultline-node check`.
pub fn describe(c: &Cluster) -> String {
    let mut by_role: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in &c.nodes {
        by_role.entry(&n.role).or_default().push(&n.id);
    }
    let mut s = format!(
        "{}: system {}, {} nodes\n",
        c.path.display(),
        c.file.system,
        c.nodes.len()
    );
    for (role, ids) in &by_role {
        s += &format!("  {role} ({}): {}\n", ids.len(), ids.join(", "));
    }
    s += &crate::with_system!(
        c.file.system.as_str(),
        |S| c.params::<<S as system::System>::Params>()
            .map(|p| <S as system::System>::describe(&p))
            .unwrap_or_default(),
        else String::new()
    );
    let t = &c.file.transport;
    s += &format!(
        "  transport: idle timeout {} ms, keep-alive {} ms, initial RTT {} ms, max frame {} bytes\n",
        t.idle_timeout_ms, t.keep_alive_ms, t.initial_rtt_ms, t.max_frame_bytes
    );
    s += &format!("  certificates: {}\n", c.tls_dir.display());
    for n in &c.nodes {
        s += &format!(
            "  {:<6} {:<7} listen {:<21} advertise {:<21} admin {}\n",
            n.id, n.role, n.listen, n.advertise, n.admin
        );
    }
    if !c.file.faults.is_empty() {
        s += &format!("  {} message fault rules at start\n", c.file.faults.len());
    }
    s
}
