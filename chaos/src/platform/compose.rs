//! The docker compose platform: every node a container with its own address
//! on a private network, the packet proxy a container in front of every
//! link, Prometheus a container scraping all of them, certificates made by a
//! one-shot container into a volume (no private key in an image).
//!
//! [`stack`] lays a template cluster out for compose through the same
//! [`layout::plan`] as the local platform, and writes the stack directory:
//! `cluster.yaml` and `proxy.yaml` (what the containers read),
//! `prometheus.yml`, `docker-compose.yml`, and `stack.json` (where the
//! controller on the host reaches each admin API). Addresses are static, so a
//! killed and restarted container keeps its address and the proxy's targets
//! stay right; admin APIs, the proxy's control API and Prometheus are
//! published on 127.0.0.1 only.
//!
//! [`ComposeCluster`] is the [`Platform`]: kill, pause, resume and start go
//! through the `docker` CLI; message and packet faults go through the same
//! admin and proxy APIs as on local processes. One compose project
//! ([`PROJECT`]) holds one cluster at a time.

use super::layout::{self, Layout, Plan};
use super::scrape::{self, PromConfig};
use super::Platform;
use crate::proxy::ProxyClient;
use anyhow::{bail, Context};
use faultline_node::config::{self, Certs, Cluster};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The compose project every faultline stack runs as.
pub const PROJECT: &str = "faultline";

/// Where the stack directory, the template's directory, certificates and
/// data appear inside the containers.
const STACK_MOUNT: &str = "/etc/faultline";
const BASE_MOUNT: &str = "/etc/faultline-base";
const CERTS_MOUNT: &str = "/certs";
const DATA_MOUNT: &str = "/data";

/// Grafana, in the `grafana` profile (`make up GRAFANA=1`): the public
/// image, for users who can pull it; nothing else needs it.
const GRAFANA_IMAGE: &str = "grafana/grafana:11.3.0";
pub const GRAFANA_PROFILE: &str = "grafana";

/// Scheduled chaos runs, in the `schedule` profile (`make up SCHEDULE=1`):
/// the controller image (it holds the node binary too) runs the system's
/// scenario on local processes inside its container, every `--every`,
/// keeping reports on the `schedule` volume and serving its metrics to the
/// stack's Prometheus.
pub const SCHEDULE_PROFILE: &str = "schedule";
const SCHEDULE_METRICS_PORT: u16 = 9095;
/// The variable that sets the schedule's interval when the stack comes up,
/// so that the committed compose file is the same for every interval.
const SCHEDULE_EVERY_VAR: &str = "FAULTLINE_SCHEDULE_EVERY";
/// The schedule's interval when the variable is not set.
pub const SCHEDULE_EVERY_DEFAULT: &str = "30m";
const WORK_MOUNT: &str = "/work";

/// The alert rules the stack's Prometheus loads (`grafana/prometheus/`).
const ALERTS: &str = include_str!("../../../grafana/prometheus/alerts.yml");

/// The first port of the proxy's per-link ports inside its container.
const LINK_PORT_BASE: u16 = 20_000;

/// Choices of a stack that are not in the template cluster file.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// The private network, a /24 given by its first three octets: the
    /// gateway is `.1`, the proxy `.2`, Prometheus `.3`, nodes from `.10`.
    pub subnet: [u8; 3],
    /// The proxy's control API, in its container and on 127.0.0.1.
    pub proxy_port: u16,
    /// Prometheus's web port on 127.0.0.1.
    pub prometheus_port: u16,
    /// Grafana's web port on 127.0.0.1 (the `grafana` profile).
    pub grafana_port: u16,
    /// The images' tag (the workspace version).
    pub tag: String,
    /// The template's directory as the compose file names it: relative to
    /// the stack directory, or absolute.
    pub base_dir: String,
    /// The repository's `grafana/` directory as the compose file names it
    /// (its provisioning and dashboards, for the `grafana` profile).
    pub grafana_dir: String,
    /// The repository's `scenarios/` directory as the compose file names
    /// it (the `schedule` profile runs `<system>.yaml` from it).
    pub scenarios_dir: String,
}

impl StackOptions {
    /// The defaults for a stack written to `stack_dir` from a template in
    /// `template_dir`.
    pub fn new(stack_dir: &Path, template_dir: &Path) -> Self {
        StackOptions {
            subnet: [10, 213, 0],
            proxy_port: 9099,
            prometheus_port: 9090,
            grafana_port: 3000,
            tag: env!("CARGO_PKG_VERSION").to_string(),
            base_dir: relative_path(stack_dir, template_dir),
            grafana_dir: relative_path(stack_dir, &template_dir.join("../grafana")),
            scenarios_dir: relative_path(stack_dir, &template_dir.join("../scenarios")),
        }
    }

    fn ip(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, host)
    }

    pub fn image(&self, what: &str) -> String {
        format!("faultline-{what}:{}", self.tag)
    }
}

/// Parses `A.B.C.0/24` into the first three octets.
pub fn parse_subnet(s: &str) -> anyhow::Result<[u8; 3]> {
    let (ip, bits) = s
        .split_once('/')
        .with_context(|| format!("{s:?} is not a subnet like 10.213.0.0/24"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .with_context(|| format!("{s:?}: {ip:?} is not an IPv4 address"))?;
    let [a, b, c, d] = ip.octets();
    if bits != "24" || d != 0 {
        bail!("{s:?}: give a /24 network ending in .0, e.g. 10.213.0.0/24");
    }
    Ok([a, b, c])
}

/// `to` relative to `from` when both are under one directory (so that a
/// stack written inside the repository names the template's directory
/// portably), else `to` made absolute.
pub fn relative_path(from: &Path, to: &Path) -> String {
    // A directory not made yet is made absolute without resolving links.
    let abs = |p: &Path| {
        std::fs::canonicalize(p)
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let (from, to) = (abs(from), abs(to));
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    // Sharing only the root is no shared place: keep the absolute path.
    if common <= 1 {
        return to.display().to_string();
    }
    let mut rel = PathBuf::new();
    for _ in common..f.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c);
    }
    if rel.as_os_str().is_empty() {
        ".".to_string()
    } else {
        rel.display().to_string()
    }
}

/// What the controller on the host needs to reach a stack (`stack.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StackInfo {
    pub system: String,
    /// Each node's admin API as published on the host.
    pub admin: BTreeMap<String, SocketAddr>,
    /// Each node's container.
    pub containers: BTreeMap<String, String>,
    pub proxy_url: String,
    pub prometheus_url: String,
    /// The template's directory, relative to the stack directory or
    /// absolute: what relative paths of the system's section mean on the
    /// host (the containers see it at `/etc/faultline-base`).
    pub base_dir: String,
}

/// A compose file (the subset of the compose specification a stack uses).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ComposeFile {
    pub services: BTreeMap<String, Service>,
    pub networks: BTreeMap<String, Network>,
    pub volumes: BTreeMap<String, Volume>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Service {
    pub image: String,
    pub container_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Attachment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, Dependency>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<String>,
    /// Docker's init as PID 1: the node is an ordinary process of its
    /// namespace, as in a Kubernetes pod, so a sidecar sharing that
    /// namespace can pause it (PID 1 ignores SIGSTOP from inside).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Started only when one of these profiles is active.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attachment {
    pub ipv4_address: Ipv4Addr,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dependency {
    pub condition: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Network {
    pub driver: String,
    pub ipam: Ipam,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ipam {
    pub config: Vec<IpamConfig>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IpamConfig {
    pub subnet: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Volume {}

/// The stack `faultline-chaos up --platform compose` (and `make up`) runs for
/// a template: its seed and secret, no planted bug.
pub fn example_stack(template: &Cluster, opts: &StackOptions) -> anyhow::Result<Stack> {
    stack(
        template,
        template.file.seed,
        template.secret.clone(),
        &[],
        opts,
    )
}

/// A cluster laid out for compose.
pub struct Stack {
    pub plan: Plan,
    pub compose: ComposeFile,
    pub prometheus: PromConfig,
    pub info: StackInfo,
}

/// Lays `template` out as a compose stack: static addresses on the
/// private network, node ports as in the template (each admin API is also
/// published on 127.0.0.1 at the template's admin port, so they must differ).
pub fn stack(
    template: &Cluster,
    seed: u64,
    secret: String,
    bugs: &[String],
    opts: &StackOptions,
) -> anyhow::Result<Stack> {
    let ids = template.ids();
    if ids.len() > 240 {
        bail!(
            "a compose stack holds at most 240 nodes; this cluster has {}",
            ids.len()
        );
    }
    let on = |ip: Ipv4Addr, port: u16| SocketAddr::V4(SocketAddrV4::new(ip, port));
    let proxy_ip = opts.ip(2);
    let prometheus_ip = opts.ip(3);
    let mut node_ip = BTreeMap::new();
    let mut listen = BTreeMap::new();
    let mut admin = BTreeMap::new();
    let mut published = BTreeMap::new();
    let mut seen_ports = BTreeSet::new();
    for (i, n) in template.nodes.iter().enumerate() {
        let ip = opts.ip(10 + i as u8);
        let admin_port = n.admin.port();
        if admin_port == 0 || !seen_ports.insert(admin_port) {
            bail!(
                "node {}: its admin port {admin_port} is published on 127.0.0.1; give every node its own admin port in the cluster file",
                n.id
            );
        }
        if [opts.proxy_port, opts.prometheus_port].contains(&admin_port) {
            bail!(
                "node {}: admin port {admin_port} is the proxy's or Prometheus's",
                n.id
            );
        }
        node_ip.insert(n.id.clone(), ip);
        listen.insert(n.id.clone(), on(ip, n.listen.port()));
        admin.insert(n.id.clone(), on(ip, admin_port));
        published.insert(n.id.clone(), on(Ipv4Addr::LOCALHOST, admin_port));
    }
    let mut links = BTreeMap::new();
    let mut port = LINK_PORT_BASE;
    for a in &ids {
        for b in &ids {
            if a != b {
                links.insert((a.clone(), b.clone()), (on(proxy_ip, port), None));
                port += 1;
            }
        }
    }
    let layout = Layout {
        listen,
        admin: admin.clone(),
        links,
        control: on(proxy_ip, opts.proxy_port),
        tls_dir: PathBuf::from(CERTS_MOUNT),
        data_dir: PathBuf::from(DATA_MOUNT),
        base_dir: PathBuf::from(BASE_MOUNT),
        reach: BTreeMap::new(),
        proxy_host: None,
    };
    let plan = layout::plan(template, seed, secret, bugs, &layout)?;

    let system = template.file.system.clone();
    let labels = |role: &str, id: Option<&str>| {
        let mut l = BTreeMap::from([
            ("faultline.system".to_string(), system.clone()),
            ("faultline.role".to_string(), role.to_string()),
        ]);
        if let Some(id) = id {
            l.insert("faultline.node".to_string(), id.to_string());
        }
        l
    };
    let attach =
        |ip: Ipv4Addr| BTreeMap::from([(PROJECT.to_string(), Attachment { ipv4_address: ip })]);
    let stack_ro = format!(".:{STACK_MOUNT}:ro");
    let base_ro = format!("{}:{BASE_MOUNT}:ro", opts.base_dir);
    let cluster_in = format!("{STACK_MOUNT}/cluster.yaml");
    let mut services = BTreeMap::new();
    let mut volumes = BTreeMap::from([
        ("certs".to_string(), Volume {}),
        ("prometheus".to_string(), Volume {}),
    ]);
    services.insert(
        "certs".to_string(),
        Service {
            image: opts.image("node"),
            container_name: format!("{PROJECT}-certs"),
            command: vec!["certs".into(), "--cluster".into(), cluster_in.clone()],
            volumes: vec![
                stack_ro.clone(),
                base_ro.clone(),
                format!("certs:{CERTS_MOUNT}"),
            ],
            network_mode: Some("none".into()),
            labels: labels("certs", None),
            ..Service::default()
        },
    );
    services.insert(
        "proxy".to_string(),
        Service {
            image: opts.image("chaos"),
            container_name: format!("{PROJECT}-proxy"),
            hostname: Some("proxy".into()),
            command: vec![
                "proxy".into(),
                "--config".into(),
                format!("{STACK_MOUNT}/proxy.yaml"),
            ],
            volumes: vec![stack_ro.clone()],
            networks: attach(proxy_ip),
            ports: vec![format!("127.0.0.1:{0}:{0}", opts.proxy_port)],
            labels: labels("proxy", None),
            ..Service::default()
        },
    );
    services.insert(
        "prometheus".to_string(),
        Service {
            image: opts.image("prometheus"),
            container_name: format!("{PROJECT}-prometheus"),
            hostname: Some("prometheus".into()),
            command: vec![
                format!("--config.file={STACK_MOUNT}/prometheus.yml"),
                "--storage.tsdb.path=/prometheus".into(),
                "--web.listen-address=:9090".into(),
            ],
            volumes: vec![stack_ro.clone(), "prometheus:/prometheus".into()],
            networks: attach(prometheus_ip),
            ports: vec![format!("127.0.0.1:{}:9090", opts.prometheus_port)],
            labels: labels("prometheus", None),
            ..Service::default()
        },
    );
    services.insert(
        "grafana".to_string(),
        Service {
            image: GRAFANA_IMAGE.into(),
            container_name: format!("{PROJECT}-grafana"),
            hostname: Some("grafana".into()),
            volumes: vec![
                format!(
                    "{}/provisioning:/etc/grafana/provisioning:ro",
                    opts.grafana_dir
                ),
                format!(
                    "{}/dashboards:/var/lib/grafana/dashboards:ro",
                    opts.grafana_dir
                ),
            ],
            networks: attach(opts.ip(4)),
            ports: vec![format!("127.0.0.1:{}:3000", opts.grafana_port)],
            labels: labels("grafana", None),
            environment: BTreeMap::from([
                ("GF_AUTH_ANONYMOUS_ENABLED".to_string(), "true".to_string()),
                (
                    "GF_AUTH_ANONYMOUS_ORG_ROLE".to_string(),
                    "Viewer".to_string(),
                ),
                (
                    "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH".to_string(),
                    "/var/lib/grafana/dashboards/overview.json".to_string(),
                ),
            ]),
            profiles: vec![GRAFANA_PROFILE.into()],
            ..Service::default()
        },
    );
    volumes.insert("schedule".to_string(), Volume {});
    services.insert(
        "schedule".to_string(),
        Service {
            image: opts.image("chaos"),
            container_name: format!("{PROJECT}-schedule"),
            hostname: Some("schedule".into()),
            command: vec![
                "schedule".into(),
                format!("{WORK_MOUNT}/scenarios/{system}.yaml"),
                "--every".into(),
                format!("${{{SCHEDULE_EVERY_VAR}:-{SCHEDULE_EVERY_DEFAULT}}}"),
                "--results".into(),
                "/results".into(),
                "--metrics".into(),
                format!("0.0.0.0:{SCHEDULE_METRICS_PORT}"),
                "--platform".into(),
                "local".into(),
            ],
            // The scenario names its cluster as `../clusters/<system>.yaml`.
            volumes: vec![
                format!("{}:{WORK_MOUNT}/scenarios:ro", opts.scenarios_dir),
                format!("{}:{WORK_MOUNT}/clusters:ro", opts.base_dir),
                "schedule:/results".into(),
            ],
            networks: attach(opts.ip(5)),
            labels: labels("schedule", None),
            // SIGTERM heals the run in progress and judges it first.
            stop_grace_period: Some("60s".into()),
            profiles: vec![SCHEDULE_PROFILE.into()],
            ..Service::default()
        },
    );
    let mut containers = BTreeMap::new();
    for n in &template.nodes {
        let data = format!("data-{}", n.id);
        volumes.insert(data.clone(), Volume {});
        let name = format!("{PROJECT}-{}", n.id);
        containers.insert(n.id.clone(), name.clone());
        let admin_port = admin[&n.id].port();
        services.insert(
            n.id.clone(),
            Service {
                image: opts.image("node"),
                container_name: name,
                hostname: Some(n.id.clone()),
                command: vec![
                    "run".into(),
                    "--cluster".into(),
                    cluster_in.clone(),
                    "--id".into(),
                    n.id.clone(),
                ],
                volumes: vec![
                    stack_ro.clone(),
                    base_ro.clone(),
                    format!("certs:{CERTS_MOUNT}:ro"),
                    format!("{data}:{DATA_MOUNT}"),
                ],
                networks: attach(node_ip[&n.id]),
                ports: vec![format!("127.0.0.1:{admin_port}:{admin_port}")],
                depends_on: BTreeMap::from([
                    (
                        "certs".to_string(),
                        Dependency {
                            condition: "service_completed_successfully".into(),
                        },
                    ),
                    (
                        "proxy".to_string(),
                        Dependency {
                            condition: "service_started".into(),
                        },
                    ),
                ]),
                labels: labels(&n.role, Some(&n.id)),
                stop_grace_period: Some("3s".into()),
                init: Some(true),
                ..Service::default()
            },
        );
    }
    let [a, b, c] = opts.subnet;
    let compose = ComposeFile {
        services,
        networks: BTreeMap::from([(
            PROJECT.to_string(),
            Network {
                driver: "bridge".into(),
                ipam: Ipam {
                    config: vec![IpamConfig {
                        subnet: format!("{a}.{b}.{c}.0/24"),
                    }],
                },
            },
        )]),
        volumes,
    };
    let prometheus = scrape::config(
        template,
        "1s",
        "alerts.yml",
        |id| admin[id].to_string(),
        on(proxy_ip, opts.proxy_port).to_string(),
        on(opts.ip(5), SCHEDULE_METRICS_PORT).to_string(),
    );
    let info = StackInfo {
        system,
        admin: published,
        containers,
        proxy_url: format!("http://127.0.0.1:{}", opts.proxy_port),
        prometheus_url: format!("http://127.0.0.1:{}", opts.prometheus_port),
        base_dir: opts.base_dir.clone(),
    };
    Ok(Stack {
        plan,
        compose,
        prometheus,
        info,
    })
}

impl Stack {
    /// Writes the stack directory; returns the compose file's path.
    pub fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        layout::write_files(dir, &self.files()?)?;
        Ok(dir.join("docker-compose.yml"))
    }

    /// The stack directory's files, `(name, text)`; the same wherever the
    /// directory is.
    pub fn files(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        let header = "# Generated by `faultline-chaos up --platform compose`; do not edit.\n";
        let mut files = self.plan.files()?;
        files.push(("alerts.yml", ALERTS.to_string()));
        files.push((
            "prometheus.yml",
            format!("{header}{}", serde_yaml::to_string(&self.prometheus)?),
        ));
        files.push((
            "stack.json",
            serde_json::to_string_pretty(&self.info)? + "\n",
        ));
        files.push((
            "docker-compose.yml",
            format!(
                "{header}# Project name {PROJECT}: `docker-compose -p {PROJECT} -f <this file> up -d`\n# (`make up` does that, and waits until every node is ready).\n{}",
                serde_yaml::to_string(&self.compose)?
            ),
        ));
        Ok(files)
    }
}

/// The compose command on this machine: `docker compose` (v2) or
/// `docker-compose` (v1); `FAULTLINE_COMPOSE` overrides (words split on
/// spaces).
pub fn compose_command() -> anyhow::Result<Vec<String>> {
    if let Ok(c) = std::env::var("FAULTLINE_COMPOSE") {
        let words: Vec<String> = c.split_whitespace().map(String::from).collect();
        if !words.is_empty() {
            return Ok(words);
        }
    }
    let works = |cmd: &[&str]| {
        std::process::Command::new(cmd[0])
            .args(&cmd[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works(&["docker", "compose", "version"]) {
        Ok(vec!["docker".into(), "compose".into()])
    } else if works(&["docker-compose", "version"]) {
        Ok(vec!["docker-compose".into()])
    } else {
        bail!("neither `docker compose` nor `docker-compose` works here")
    }
}

/// Runs `docker ARGS`; its stdout, or an error with its stderr.
async fn docker(args: &[&str]) -> anyhow::Result<String> {
    run_cmd("docker", args).await
}

async fn run_cmd(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether a Docker daemon answers.
pub async fn docker_answers() -> bool {
    docker(&["info", "--format", "{{.ServerVersion}}"])
        .await
        .is_ok()
}

/// The compose file of the stack running in [`PROJECT`], if any container
/// of it exists (running or not).
pub async fn running_stack() -> anyhow::Result<Option<PathBuf>> {
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={PROJECT}"),
        "--format",
        "{{.Label \"com.docker.compose.project.working_dir\"}}|{{.Label \"com.docker.compose.project.config_files\"}}",
    ])
    .await?;
    Ok(out.lines().find_map(|l| stack_file_of(l.trim())))
}

/// The compose file from a container's `working_dir|config_files` labels.
/// Compose v1 records the file as it was named on the command line
/// (perhaps relative to a directory long left), while the working
/// directory is absolute; a stack's file is always in its directory.
fn stack_file_of(labels: &str) -> Option<PathBuf> {
    let (dir, files) = labels.split_once('|')?;
    let file = PathBuf::from(files.split(',').next()?.trim());
    if file.as_os_str().is_empty() {
        return None;
    }
    if file.is_absolute() || dir.trim().is_empty() {
        return Some(file);
    }
    Some(Path::new(dir.trim()).join(file.file_name()?))
}

/// `compose -p faultline -f FILE ARGS` with `profiles` active.
async fn compose(file: &Path, profiles: &[&str], args: &[&str]) -> anyhow::Result<String> {
    compose_env(file, profiles, args, &[]).await
}

/// [`compose`] with variables the compose file interpolates.
async fn compose_env(
    file: &Path,
    profiles: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<String> {
    let cmd = compose_command()?;
    let file = file.display().to_string();
    let mut all: Vec<&str> = cmd[1..].iter().map(String::as_str).collect();
    all.extend(["-p", PROJECT, "-f", &file]);
    all.extend(args);
    let out = tokio::process::Command::new(&cmd[0])
        .args(&all)
        .env("COMPOSE_PROFILES", profiles.join(","))
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", cmd[0]))?;
    if !out.status.success() {
        bail!(
            "`{} {}` failed: {}",
            cmd[0],
            all.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Removes the stack of `file`: containers, its network and its volumes.
/// The scheduled runs' reports are copied out first (see [`save_schedule`]).
pub async fn down_stack(file: &Path) -> anyhow::Result<()> {
    if let Some(dir) = file.parent() {
        // Reports that cannot be copied are said, and the stack still goes.
        let at = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        if let Err(e) = save_schedule(&dir.join("schedule-results").join(at)).await {
            eprintln!("warning: the schedule's reports were not saved: {e:#}");
        }
    }
    // Every profile active, so that Grafana and the schedule go too.
    compose(
        file,
        &[GRAFANA_PROFILE, SCHEDULE_PROFILE],
        &["down", "-v", "--remove-orphans", "-t", "3"],
    )
    .await?;
    Ok(())
}

/// If the `schedule` container exists: stops it with SIGTERM (its run in
/// progress heals and is judged; up to 60 s) and copies its reports to
/// `to` (owned by whoever runs this; one directory per `down`, so earlier
/// copies stay), so that removing its volume loses nothing. A stack
/// without a schedule is left as it is.
pub async fn save_schedule(to: &Path) -> anyhow::Result<()> {
    let name = format!("{PROJECT}-schedule");
    if docker(&["container", "inspect", &name]).await.is_err() {
        return Ok(());
    }
    docker(&["stop", "-t", "60", &name]).await?;
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let src = format!("{name}:/results/.");
    let dst = to.display().to_string();
    docker(&["cp", &src, &dst])
        .await
        .with_context(|| format!("cannot copy the schedule's reports to {dst}"))?;
    eprintln!("the schedule's reports are in {dst} (index.html)");
    Ok(())
}

/// Removes networks and volumes of the project that no container uses (what
/// a failed `up` leaves); returns how many.
pub async fn remove_leftovers() -> anyhow::Result<usize> {
    let label = format!("label=com.docker.compose.project={PROJECT}");
    let mut n = 0;
    for (kind, fmt) in [("volume", "{{.Name}}"), ("network", "{{.Name}}")] {
        let names = docker(&[kind, "ls", "-q", "--filter", &label, "--format", fmt]).await?;
        for name in names.lines().filter(|l| !l.is_empty()) {
            docker(&[kind, "rm", name]).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// Fails with what to do when an image of the stack is missing (compose
/// would try to pull it from a registry).
async fn check_images(opts: &StackOptions) -> anyhow::Result<()> {
    for what in ["node", "chaos", "prometheus"] {
        let image = opts.image(what);
        if docker(&["image", "inspect", "--format", "{{.Id}}", &image])
            .await
            .is_err()
        {
            bail!("the image {image} is missing: build the images with `make images`");
        }
    }
    Ok(())
}

/// The stack's cluster file as the controller on the host reads it: the
/// same cluster, with the template's directory where the host has it.
fn host_view(dir: &Path, info: &StackInfo) -> anyhow::Result<Cluster> {
    let path = dir.join("cluster.yaml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let base = dir.join(&info.base_dir);
    doc["base_dir"] = serde_yaml::Value::String(base.display().to_string());
    let text = serde_yaml::to_string(&doc)?;
    config::parse(&path, &text, Certs::NotYet).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A compose stack as a [`Platform`].
pub struct ComposeCluster {
    /// The stack directory.
    pub dir: PathBuf,
    pub info: StackInfo,
    cluster: Cluster,
    proxy: ProxyClient,
    opts: Option<StackOptions>,
    /// Start Grafana too (the `grafana` profile).
    pub grafana: bool,
    /// Start the scheduled runs too (the `schedule` profile), this often.
    pub schedule: Option<String>,
}

impl ComposeCluster {
    /// Writes the stack for `template` into `dir` (nothing starts yet;
    /// [`Platform::up`] replaces whatever stack runs in the project).
    pub fn create(stack: &Stack, dir: &Path, opts: StackOptions) -> anyhow::Result<Self> {
        stack.write(dir)?;
        let mut c = Self::attach(dir)?;
        c.opts = Some(opts);
        Ok(c)
    }

    /// Attaches to the stack written in `dir`.
    pub fn attach(dir: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(dir.join("stack.json"))
            .with_context(|| format!("{} holds no compose stack (stack.json)", dir.display()))?;
        let info: StackInfo = serde_json::from_str(&text).context("stack.json")?;
        let cluster = host_view(dir, &info)?;
        let proxy = ProxyClient::new(
            reqwest::Client::builder().build()?,
            info.proxy_url.clone(),
            cluster.secret.clone(),
        );
        Ok(ComposeCluster {
            dir: dir.to_path_buf(),
            info,
            cluster,
            proxy,
            opts: None,
            grafana: false,
            schedule: None,
        })
    }

    /// Attaches to the stack running in the project.
    pub async fn attach_running() -> anyhow::Result<Self> {
        let file = running_stack()
            .await?
            .context("no compose stack is up (start one with `make up`)")?;
        let dir = file
            .parent()
            .context("the running stack's compose file has no directory")?;
        Self::attach(dir)
    }

    pub fn compose_file(&self) -> PathBuf {
        self.dir.join("docker-compose.yml")
    }

    fn container(&self, id: &str) -> anyhow::Result<&str> {
        self.info
            .containers
            .get(id)
            .map(String::as_str)
            .with_context(|| format!("{id:?} is not a node of this stack"))
    }

    /// `(running, paused)` of node `id`'s container; a missing container is
    /// neither.
    async fn container_state(&self, id: &str) -> anyhow::Result<(bool, bool)> {
        let name = self.container(id)?;
        let out = docker(&[
            "inspect",
            "--format",
            "{{.State.Running}} {{.State.Paused}}",
            name,
        ])
        .await;
        Ok(match out {
            Ok(s) => {
                let mut w = s.split_whitespace();
                (w.next() == Some("true"), w.next() == Some("true"))
            }
            Err(_) => (false, false),
        })
    }

    /// Copies every container's log to `to/<id>.log` (the proxy's and
    /// Prometheus's to `proxy.log` and `prometheus.log`).
    pub async fn save_logs(&self, to: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(to)?;
        let others = ["proxy", "prometheus"].map(|s| (s.to_string(), format!("{PROJECT}-{s}")));
        for (id, name) in self
            .info
            .containers
            .iter()
            .chain(others.iter().map(|(a, b)| (a, b)))
        {
            let out = tokio::process::Command::new("docker")
                .args(["logs", name])
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .context("cannot run docker logs")?;
            let mut text = out.stdout;
            text.extend_from_slice(&out.stderr);
            std::fs::write(to.join(format!("{id}.log")), text)?;
        }
        Ok(())
    }
}

impl Platform for ComposeCluster {
    fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    fn admin_url(&self, id: &str) -> String {
        self.info
            .admin
            .get(id)
            .map(|a| format!("http://{a}"))
            .unwrap_or_default()
    }

    fn proxy(&self) -> Option<&ProxyClient> {
        Some(&self.proxy)
    }

    fn describe(&self, id: &str) -> String {
        self.info
            .containers
            .get(id)
            .map(|c| format!("container {c}"))
            .unwrap_or_default()
    }

    async fn start(&mut self, id: &str) -> anyhow::Result<()> {
        let (running, paused) = self.container_state(id).await?;
        if paused {
            docker(&["unpause", self.container(id)?]).await?;
        } else if !running {
            docker(&["start", self.container(id)?]).await?;
        }
        Ok(())
    }

    /// `docker kill`: SIGKILL, the container stops with its volume kept.
    async fn kill(&mut self, id: &str) -> anyhow::Result<()> {
        let (running, paused) = self.container_state(id).await?;
        if paused {
            // A frozen container still dies at once; thawing first keeps
            // Docker's state simple.
            docker(&["unpause", self.container(id)?]).await?;
        }
        if running {
            docker(&["kill", self.container(id)?]).await?;
        }
        Ok(())
    }

    /// `docker pause`: the cgroup freezer, sockets kept.
    async fn pause(&mut self, id: &str) -> anyhow::Result<()> {
        let (running, paused) = self.container_state(id).await?;
        if running && !paused {
            docker(&["pause", self.container(id)?]).await?;
        }
        Ok(())
    }

    async fn resume(&mut self, id: &str) -> anyhow::Result<()> {
        let (_, paused) = self.container_state(id).await?;
        if paused {
            docker(&["unpause", self.container(id)?]).await?;
        }
        Ok(())
    }

    async fn is_running(&mut self, id: &str) -> bool {
        self.container_state(id).await.is_ok_and(|(r, _)| r)
    }

    async fn heal_processes(&mut self) -> anyhow::Result<()> {
        for id in self.cluster.ids() {
            self.start(&id).await?;
        }
        Ok(())
    }

    /// Replaces whatever stack runs in the project with this one, on fresh
    /// volumes.
    async fn up(&mut self) -> anyhow::Result<()> {
        if let Some(opts) = &self.opts {
            check_images(opts).await?;
        }
        if let Some(old) = running_stack().await? {
            down_stack(&old)
                .await
                .with_context(|| format!("cannot remove the stack of {}", old.display()))?;
        }
        let profiles: Vec<&str> = [
            (self.grafana, GRAFANA_PROFILE),
            (self.schedule.is_some(), SCHEDULE_PROFILE),
        ]
        .into_iter()
        .filter_map(|(on, p)| on.then_some(p))
        .collect();
        let every = self.schedule.as_deref().unwrap_or(SCHEDULE_EVERY_DEFAULT);
        if let Err(e) = compose_env(
            &self.compose_file(),
            &profiles,
            &["up", "-d", "--remove-orphans"],
            &[(SCHEDULE_EVERY_VAR, every)],
        )
        .await
        {
            // A stack half made (an image that could not be pulled) is
            // removed: networks and volumes too.
            if let Err(d) = down_stack(&self.compose_file()).await {
                tracing::warn!(error = %d, "cannot remove the half-made stack");
            }
            if self.grafana {
                return Err(e.context(format!(
                    "Grafana's image ({GRAFANA_IMAGE}) comes from a registry; without one, start the stack without Grafana"
                )));
            }
            return Err(e);
        }
        Ok(())
    }

    async fn down(&mut self) {
        if let Err(e) = down_stack(&self.compose_file()).await {
            tracing::warn!(error = %e, "compose down failed");
        }
    }
}

/// Waits up to `within` for the stack's containers to exist; compose
/// returns before every container has started.
pub async fn wait_containers(c: &mut ComposeCluster, within: Duration) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let ids = c.cluster.ids();
    while t0.elapsed() < within {
        let mut all = true;
        for id in &ids {
            if !c.is_running(id).await {
                all = false;
                break;
            }
        }
        if all {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the stack's containers did not all start within {within:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_stack_is_found_from_any_directory() {
        assert_eq!(
            stack_file_of("/r/compose/tokens|compose/tokens/docker-compose.yml"),
            Some(PathBuf::from("/r/compose/tokens/docker-compose.yml"))
        );
        assert_eq!(
            stack_file_of("/r/compose/tokens|/r/compose/tokens/docker-compose.yml"),
            Some(PathBuf::from("/r/compose/tokens/docker-compose.yml"))
        );
        assert_eq!(stack_file_of("|"), None);
        assert_eq!(stack_file_of(""), None);
    }

    #[test]
    fn subnets_parse_and_bad_ones_say_why() {
        assert_eq!(parse_subnet("10.213.0.0/24").unwrap(), [10, 213, 0]);
        for bad in ["10.213.0.0/16", "10.213.0.5/24", "10.213.0.0", "x/24"] {
            assert!(parse_subnet(bad).is_err(), "{bad}");
        }
    }

    /// Every shipped cluster file, as templates.
    fn templates() -> Vec<Cluster> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clusters");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).expect("clusters/") {
            let path = e.expect("entry").path();
            if path.extension().is_some_and(|x| x == "yaml") {
                out.push(crate::platform::local::load_template(&path).expect("template"));
            }
        }
        assert!(out.len() >= 2, "the shipped cluster files");
        out
    }

    fn opts() -> StackOptions {
        StackOptions {
            subnet: [10, 9, 8],
            proxy_port: 9099,
            prometheus_port: 9090,
            grafana_port: 3000,
            tag: "t".into(),
            base_dir: "../base".into(),
            grafana_dir: "../grafana".into(),
            scenarios_dir: "../scenarios".into(),
        }
    }

    /// Each node has its own address on the subnet and the template's
    /// ports; every dial goes to the proxy's address on its link's port, and
    /// the link's target is the node dialled.
    #[test]
    fn every_link_goes_through_the_proxy_to_the_right_node() {
        for t in templates() {
            let s = stack(&t, 3, "k".into(), &[], &opts()).expect("stack");
            let proxy_ip = Ipv4Addr::new(10, 9, 8, 2);
            let mut ips = BTreeSet::new();
            let listen: BTreeMap<&str, SocketAddr> = s
                .plan
                .file
                .nodes
                .iter()
                .map(|n| (n.id.as_str(), n.listen.parse().expect("listen")))
                .collect();
            for n in &t.nodes {
                let at = listen[n.id.as_str()];
                assert!(ips.insert(at.ip()), "{}: address shared", n.id);
                assert_eq!(at.port(), n.listen.port(), "{}", n.id);
                let svc = &s.compose.services[&n.id];
                assert_eq!(
                    std::net::IpAddr::V4(svc.networks[PROJECT].ipv4_address),
                    at.ip(),
                    "{}: the container's address is where the node listens",
                    n.id
                );
                assert_eq!(
                    svc.ports,
                    vec![format!("127.0.0.1:{0}:{0}", n.admin.port())],
                    "{}: only the admin API is published, on loopback",
                    n.id
                );
                assert_eq!(
                    s.info.admin[&n.id],
                    SocketAddr::from(([127, 0, 0, 1], n.admin.port()))
                );
            }
            assert_eq!(
                s.plan.proxy.links.len(),
                t.nodes.len() * (t.nodes.len() - 1)
            );
            for l in &s.plan.proxy.links {
                assert_eq!(l.listen.ip(), proxy_ip, "{}->{}", l.from, l.to);
                assert_eq!(
                    l.target,
                    listen[l.to.as_str()].to_string(),
                    "{}->{}",
                    l.from,
                    l.to
                );
            }
            for n in &s.plan.file.nodes {
                for (peer, via) in &n.dial {
                    let link = s
                        .plan
                        .proxy
                        .links
                        .iter()
                        .find(|l| l.from == n.id && &l.to == peer)
                        .expect("a link per dial");
                    assert_eq!(via, &link.listen.to_string(), "{} dials {peer}", n.id);
                }
            }
            let certs = &s.compose.services["certs"];
            assert_eq!(certs.network_mode.as_deref(), Some("none"));
            assert!(certs.ports.is_empty());
            assert_eq!(
                s.compose.services.len(),
                t.nodes.len() + 5,
                "a service per node, certs, proxy, prometheus, grafana, schedule"
            );
            let schedule = &s.compose.services["schedule"];
            assert_eq!(schedule.profiles, vec![SCHEDULE_PROFILE.to_string()]);
            assert!(
                schedule
                    .command
                    .iter()
                    .any(|c| c == "${FAULTLINE_SCHEDULE_EVERY:-30m}"),
                "{:?}",
                schedule.command
            );
            let targets: usize = s.prometheus.scrape_configs[0]
                .static_configs
                .iter()
                .map(|c| c.targets.len())
                .sum();
            assert_eq!(targets, t.nodes.len(), "Prometheus scrapes every node");
        }
    }

    /// The stack's cluster file is a valid cluster file, read on the host
    /// with the template's directory.
    #[test]
    fn the_stack_reads_back_as_the_same_cluster() {
        for t in templates() {
            let dir = std::env::temp_dir().join(format!(
                "fl-stack-{}-{}",
                t.file.system,
                std::process::id()
            ));
            let mut o = opts();
            o.base_dir = t.base_dir().display().to_string();
            let s = stack(&t, 3, "a-long-secret".into(), &[], &o).expect("stack");
            s.write(&dir).expect("write");
            let c = ComposeCluster::attach(&dir).expect("attach");
            assert_eq!(c.cluster().ids(), t.ids());
            assert_eq!(c.cluster().file.system, t.file.system);
            assert_eq!(
                c.admin_url(&t.ids()[0]),
                format!("http://{}", c.info.admin[&t.ids()[0]])
            );
            std::fs::remove_dir_all(&dir).expect("cleanup");
        }
    }

    #[test]
    fn shared_admin_ports_are_refused_with_the_node_named() {
        let t = templates().remove(0);
        let mut t2 = t.clone();
        // Same port on another address passes the cluster file's own check.
        let port = t.nodes[0].admin.port();
        t2.nodes[1].admin = SocketAddr::from(([127, 0, 0, 2], port));
        let e = stack(&t2, 1, "k".into(), &[], &opts())
            .err()
            .expect("refused");
        assert!(e.to_string().contains(&t2.nodes[1].id), "{e}");
        assert!(e.to_string().contains("own admin port"), "{e}");
    }

    #[test]
    fn relative_paths_climb_to_the_shared_directory() {
        let d = std::env::temp_dir().join(format!("fl-rel-{}", std::process::id()));
        std::fs::create_dir_all(d.join("compose/tokens")).unwrap();
        std::fs::create_dir_all(d.join("clusters")).unwrap();
        assert_eq!(
            relative_path(&d.join("compose/tokens"), &d.join("clusters")),
            "../../clusters"
        );
        assert_eq!(relative_path(&d, &d), ".");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
