//! `up`, `down`, `status` and `fault`: a local cluster kept running for a
//! person at a terminal. `up` starts every node and a proxy process detached
//! from the terminal and records them in `<dir>/up.json`; the other commands
//! attach to it as a [`Platform`] ([`Detached`]) and fault it through the
//! same nemesis as a run. Faults set here hold for a lease (`--for`), so they
//! heal by themselves.

use crate::nemesis::Nemesis;
use crate::platform::compose::{self, ComposeCluster, StackOptions};
use crate::platform::local::{load_template, plan};
use crate::platform::{self, Platform};
use crate::proxy::{ProxyClient, MAX_LEASE};
use crate::scenario::{default_layer, Scheduled};
use anyhow::{bail, Context};
use faultline_node::config::{self, Certs, Cluster};
use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Serialize, Deserialize)]
pub struct UpFile {
    pub cluster: PathBuf,
    pub node_bin: PathBuf,
    pub proxy_url: String,
    pub secret: String,
    pub proxy_pid: u32,
    pub pids: BTreeMap<String, u32>,
}

fn up_path(dir: &Path) -> PathBuf {
    dir.join("up.json")
}

pub fn load_up(dir: &Path) -> anyhow::Result<UpFile> {
    let p = up_path(dir);
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "no cluster is up in {} (run `faultline-chaos up` first)",
            dir.display()
        )
    })?;
    Ok(serde_json::from_str(&text)?)
}

fn save_up(dir: &Path, up: &UpFile) -> anyhow::Result<()> {
    std::fs::write(up_path(dir), serde_json::to_string_pretty(up)?)?;
    Ok(())
}

/// Starts a process in its own process group, so that it outlives this
/// command and a Ctrl-C at the terminal does not reach it.
fn spawn_detached(mut cmd: Command, log: &Path) -> anyhow::Result<u32> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0);
    Ok(cmd.spawn()?.id())
}

fn pid_of(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .map(Pid::from_raw)
}

/// Whether the process exists and is not a zombie waiting to be reaped.
fn alive(pid: u32) -> bool {
    let exists = pid_of(pid).is_some_and(|p| send_signal(p, None).is_ok());
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false);
    exists && !zombie
}

/// Sends `sig` to a process `up` started; one that is gone is not an error.
fn signal(pid: u32, sig: Signal) {
    if let Some(p) = pid_of(pid) {
        if let Err(e) = send_signal(p, sig) {
            tracing::debug!(pid, %sig, error = %e, "signal not delivered");
        }
    }
}

/// A cluster `up` left running, attached through its `up.json`.
pub struct Detached {
    dir: PathBuf,
    up: UpFile,
    cluster: Cluster,
    proxy: ProxyClient,
}

impl Detached {
    pub fn attach(dir: &Path) -> anyhow::Result<Self> {
        let up = load_up(dir)?;
        let cluster =
            config::load(&up.cluster, Certs::Required).map_err(|e| anyhow::anyhow!("{e}"))?;
        let proxy = ProxyClient::new(
            reqwest::Client::new(),
            up.proxy_url.clone(),
            up.secret.clone(),
        );
        Ok(Detached {
            dir: dir.to_path_buf(),
            up,
            cluster,
            proxy,
        })
    }

    fn pid(&self, id: &str) -> u32 {
        self.up.pids.get(id).copied().unwrap_or(0)
    }

    fn spawn(&mut self, id: &str) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.up.node_bin);
        cmd.args(["run", "--cluster"])
            .arg(&self.up.cluster)
            .args(["--id", id]);
        let pid = spawn_detached(cmd, &self.dir.join("logs").join(format!("{id}.log")))?;
        self.up.pids.insert(id.to_string(), pid);
        save_up(&self.dir, &self.up)
    }
}

impl Platform for Detached {
    fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    fn admin_url(&self, id: &str) -> String {
        faultline_node::cli::admin_url(&self.cluster, id).unwrap_or_default()
    }

    fn describe(&self, id: &str) -> String {
        format!("pid {}", self.pid(id))
    }

    fn proxy(&self) -> Option<&ProxyClient> {
        Some(&self.proxy)
    }

    async fn start(&mut self, id: &str) -> anyhow::Result<()> {
        if alive(self.pid(id)) {
            return Ok(());
        }
        self.spawn(id)
    }

    async fn kill(&mut self, id: &str) -> anyhow::Result<()> {
        let pid = self.pid(id);
        signal(pid, Signal::SIGKILL);
        let t0 = Instant::now();
        while alive(pid) && t0.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn pause(&mut self, id: &str) -> anyhow::Result<()> {
        signal(self.pid(id), Signal::SIGSTOP);
        Ok(())
    }

    async fn resume(&mut self, id: &str) -> anyhow::Result<()> {
        signal(self.pid(id), Signal::SIGCONT);
        Ok(())
    }

    async fn is_running(&mut self, id: &str) -> bool {
        alive(self.pid(id))
    }

    async fn heal_processes(&mut self) -> anyhow::Result<()> {
        for id in self.cluster.ids() {
            let pid = self.pid(&id);
            if alive(pid) {
                signal(pid, Signal::SIGCONT);
            } else {
                self.spawn(&id)?;
            }
        }
        Ok(())
    }

    async fn down(&mut self) {
        let all: Vec<u32> = self
            .up
            .pids
            .values()
            .copied()
            .chain([self.up.proxy_pid])
            .collect();
        for p in &all {
            signal(*p, Signal::SIGCONT);
            signal(*p, Signal::SIGTERM);
        }
        let t0 = Instant::now();
        while all.iter().any(|p| alive(*p)) && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for p in &all {
            if alive(*p) {
                signal(*p, Signal::SIGKILL);
            }
        }
    }
}

/// `faultline-chaos up`: every node and the proxy, detached.
pub async fn up(cluster: &Path, dir: &Path, node_bin: PathBuf) -> anyhow::Result<()> {
    if let Ok(old) = load_up(dir) {
        if old.pids.values().any(|p| alive(*p)) {
            bail!(
                "a cluster is already up in {} (run `faultline-chaos down` first)",
                dir.display()
            );
        }
    }
    let template = load_template(cluster)?;
    std::fs::create_dir_all(dir.join("logs"))?;
    let secret = template.secret.clone();
    let plan = plan(&template, template.file.seed, secret.clone(), &[])?;
    let control = plan
        .proxy
        .control
        .as_ref()
        .map(|c| c.listen)
        .context("the plan has no proxy control address")?;
    let cluster_path = plan.write(dir)?;
    plan.write_certs(dir)?;
    let cluster_path = std::fs::canonicalize(cluster_path)?;
    config::load(&cluster_path, Certs::Required).map_err(|e| anyhow::anyhow!("{e}"))?;
    let proxy_path = dir.join("proxy.yaml");

    let me = std::env::current_exe()?;
    let mut proxy_cmd = Command::new(me);
    proxy_cmd
        .args(["proxy", "--config"])
        .arg(std::fs::canonicalize(&proxy_path)?);
    let proxy_pid = spawn_detached(proxy_cmd, &dir.join("logs").join("proxy.log"))?;
    save_up(
        dir,
        &UpFile {
            cluster: cluster_path,
            node_bin,
            proxy_url: format!("http://{control}"),
            secret,
            proxy_pid,
            pids: BTreeMap::new(),
        },
    )?;
    let mut p = Detached::attach(dir)?;
    p.up().await?;
    let http = reqwest::Client::new();
    let ids = p.cluster.ids();
    if let Err(e) = platform::wait_ready(&p, &http, &ids, Duration::from_secs(20)).await {
        eprintln!("warning: {e:#}");
    }
    print!("{}", render_status(&mut p, &http).await);
    println!(
        "\nthe cluster is up; talk to it with\n  faultline-node client --cluster {} --id {} status\nfault it with `faultline-chaos fault ...`, stop it with `faultline-chaos down`",
        p.up.cluster.display(),
        p.cluster.clients().first().cloned().unwrap_or_default()
    );
    Ok(())
}

/// `faultline-chaos down`: stops everything `up` started.
pub async fn down(dir: &Path) -> anyhow::Result<()> {
    let mut p = Detached::attach(dir)?;
    p.down().await;
    std::fs::remove_file(up_path(dir))?;
    println!("stopped {} nodes and the proxy", p.up.pids.len());
    Ok(())
}

async fn render_status<P: Platform>(p: &mut P, http: &reqwest::Client) -> String {
    let mut out = String::new();
    let system = p.cluster().file.system.clone();
    for id in p.cluster().ids() {
        let place = p.describe(&id);
        let state = http
            .get(format!("{}/state", p.admin_url(&id)))
            .timeout(Duration::from_millis(500))
            .send()
            .await;
        let state = match state {
            Ok(r) => r.json::<Value>().await.ok(),
            Err(_) => None,
        };
        let line = match state.map(|s| faultline_node::system::status_line(&system, s)) {
            Some(Some((role, line))) => format!("{id:<6} {place:<24} {role:<7} {line}\n"),
            Some(None) => format!("{id:<6} {place:<24} answers a /state this build cannot read\n"),
            None if p.is_running(&id).await => {
                format!("{id:<6} {place:<24} not answering (paused?)\n")
            }
            None => format!("{id:<6} down\n"),
        };
        out += &line;
    }
    match p.proxy() {
        Some(proxy) => match proxy.links().await {
            Ok(stats) => {
                let faulty: Vec<String> = stats
                    .links
                    .iter()
                    .filter(|l| l.partitioned || l.faults.is_some())
                    .map(|l| format!("{}->{}", l.from, l.to))
                    .collect();
                out += &format!(
                    "proxy  {}\n",
                    if faulty.is_empty() {
                        "no packet faults".to_string()
                    } else {
                        format!("faulty links: {}", faulty.join(" "))
                    }
                );
            }
            Err(_) => out += "proxy  down\n",
        },
        None => out += "proxy  none\n",
    }
    out
}

pub async fn status<P: Platform>(p: &mut P) -> anyhow::Result<()> {
    print!("{}", render_status(p, &reqwest::Client::new()).await);
    Ok(())
}

/// `faultline-chaos up --platform compose`: writes the stack of `cluster`
/// into `dir` (default `compose/<system>`), replaces whatever stack runs in
/// the project with it and waits until every node is ready.
/// What `up --platform compose` adds to the cluster, each in its profile.
#[derive(Clone, Debug, Default)]
pub struct ComposeExtras {
    /// Grafana on 127.0.0.1:3000 (the public image).
    pub grafana: bool,
    /// Scheduled runs of the system's scenario, every this long.
    pub schedule: Option<String>,
}

pub async fn up_compose(
    cluster: &Path,
    dir: Option<PathBuf>,
    subnet: Option<&str>,
    extras: ComposeExtras,
) -> anyhow::Result<()> {
    let grafana = extras.grafana;
    let t0 = Instant::now();
    let template = load_template(cluster)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from("compose").join(&template.file.system));
    let mut opts = StackOptions::new(&dir, &template.base_dir());
    if let Some(s) = subnet {
        opts.subnet = compose::parse_subnet(s)?;
    }
    if let Some(every) = &extras.schedule {
        // Refused here, not in a container that restarts for ever.
        crate::jobs::timing::Timing::every(every)?;
        let scenario = template
            .base_dir()
            .join("../scenarios")
            .join(format!("{}.yaml", template.file.system));
        anyhow::ensure!(
            scenario.is_file(),
            "the schedule runs {}, which does not exist",
            scenario.display()
        );
    }
    let stack = compose::example_stack(&template, &opts)?;
    let mut p = ComposeCluster::create(&stack, &dir, opts)?;
    p.grafana = grafana;
    p.schedule = extras.schedule.clone();
    p.up().await?;
    compose::wait_containers(&mut p, Duration::from_secs(30)).await?;
    let http = reqwest::Client::new();
    let ids = p.cluster().ids();
    platform::wait_ready(&p, &http, &ids, Duration::from_secs(30)).await?;
    print!("{}", render_status(&mut p, &http).await);
    println!(
        "\nthe compose cluster is up ({} nodes ready in {:.1} s); stack in {}\nPrometheus: {}{}\ntalk to a client:  docker exec -it {} /faultline-node client --cluster /etc/faultline/cluster.yaml --id {}\nfault it:  faultline-chaos fault --platform compose ...   stop it:  make down",
        ids.len(),
        t0.elapsed().as_secs_f64(),
        dir.display(),
        p.info.prometheus_url,
        match (grafana, &extras.schedule) {
            (true, Some(every)) => format!("\nGrafana: http://127.0.0.1:3000 (dashboards in the folder faultline)\nscheduled runs every {every}: docker logs -f faultline-schedule"),
            (true, None) => "\nGrafana: http://127.0.0.1:3000 (dashboards in the folder faultline)".to_string(),
            (false, Some(every)) => format!("\nscheduled runs every {every}: docker logs -f faultline-schedule"),
            (false, None) => String::new(),
        },
        p.describe(&p.cluster().clients().first().cloned().unwrap_or_default())
            .trim_start_matches("container "),
        p.cluster().clients().first().cloned().unwrap_or_default()
    );
    Ok(())
}

/// `faultline-chaos down --platform compose`: removes the running stack,
/// its network and its volumes.
pub async fn down_compose() -> anyhow::Result<()> {
    match compose::running_stack().await? {
        Some(file) => {
            compose::down_stack(&file).await?;
            println!("removed the compose stack of {}", file.display());
        }
        None => {
            // No container, but a failed `up` may have left its network and
            // volumes: remove the project's by label.
            let n = compose::remove_leftovers().await?;
            if n > 0 {
                println!("no compose stack was up; removed {n} leftover networks and volumes");
            } else {
                println!("no compose stack is up");
            }
        }
    }
    Ok(())
}

/// `faultline-chaos fault KIND [TARGETS] [/ GROUP] [--p P] [--ms MS] [--for D]`.
pub async fn fault<P: Platform>(
    p: &mut P,
    words: &[String],
    params: Value,
    lease: Duration,
) -> anyhow::Result<()> {
    let ids = p.cluster().ids();
    let http = reqwest::Client::new();
    let Some(kind) = words.first().map(|s| s.as_str()) else {
        bail!("which fault? e.g. `fault partition s1,s2 / s3,s4,s5`, `fault omission s4 --p 1`, `fault kill s2`, `fault heal`");
    };
    let list = |w: Option<&String>| -> anyhow::Result<Vec<String>> {
        let v: Vec<String> = w
            .map(|s| {
                s.split(',')
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(bad) = v.iter().find(|i| !ids.contains(i)) {
            bail!("{bad:?} is not a node of this cluster ({})", ids.join(", "));
        }
        Ok(v)
    };
    if lease.is_zero() || lease > MAX_LEASE {
        bail!(
            "--for {lease:?} is outside 1 ms..{:?}, the longest lease the nodes and the proxy keep",
            MAX_LEASE
        );
    }
    // The lease is exactly `--for`; a fault's name is unique per command so
    // that faults set by separate commands compose.
    let mut nemesis = Nemesis::new(
        crate::systems::op_faults_of(&p.cluster().file.system)?,
        p.cluster().op_deadline,
    )
    .with_margin(Duration::ZERO);
    let id = (faultline_node::runtime::history::unix_us() / 1000) as usize;
    match kind {
        "heal" => {
            nemesis.heal_all(p, &http).await?;
            println!("healed: packet and message faults cleared, paused nodes resumed, stopped nodes restarted");
        }
        "resume" | "restart" => {
            let targets = list(words.get(1))?;
            for t in &targets {
                if kind == "resume" {
                    p.resume(t).await?;
                } else {
                    p.restart(t).await?;
                }
            }
            println!("{kind}: {}", targets.join(", "));
        }
        _ => {
            let name = kind.replace('-', "_");
            let mut params = params;
            let mut targets = Vec::new();
            let fault = match name.as_str() {
                "isolate" => {
                    targets = list(words.get(1))?;
                    "partition".to_string()
                }
                "partition" if words.get(2).map(|s| s.as_str()) == Some("/") => {
                    params["shape"] = json!("groups");
                    params["groups"] = json!([list(words.get(1))?, list(words.get(3))?]);
                    name
                }
                "partition" => {
                    params["shape"] =
                        json!(words.get(1).cloned().unwrap_or_else(|| "halves".into()));
                    name
                }
                _ => {
                    targets = list(words.get(1))?;
                    if targets.is_empty() {
                        bail!("name the target nodes, e.g. `fault {kind} s4`");
                    }
                    name
                }
            };
            let layer = default_layer(&fault);
            let f = Scheduled {
                id,
                entry: 0,
                at_ms: 0,
                for_ms: Some(lease.as_millis() as u64),
                fault,
                layer: layer.to_string(),
                targets,
                resolve: None,
                params,
                in_model: true,
            };
            crate::nemesis::check_params(
                &f,
                &ids,
                &p.cluster().servers(),
                p.cluster().system.message_kinds,
            )
            .map_err(|e| anyhow::anyhow!("{kind}: {e}"))?;
            let detail = nemesis
                .apply(&f, p, &http, lease)
                .await
                .map_err(|e| anyhow::anyhow!("{kind}: {e:#}\ntry partition, isolate, omission, drop, delay, duplicate, reorder, packet-loss, packet-delay, blackhole, kill, pause, resume, restart, heal"))?;
            let on = if f.targets.is_empty() {
                format!(
                    "{} directions blocked",
                    detail["cuts"].as_array().map_or(0, Vec::len)
                )
            } else {
                f.targets.join(",")
            };
            if layer == "process" {
                println!("{kind} on {on} (process layer: holds until `fault heal`, `resume` or `restart`)");
            } else {
                println!("{kind} on {on} for {lease:?} ({layer} layer)");
            }
        }
    }
    Ok(())
}
