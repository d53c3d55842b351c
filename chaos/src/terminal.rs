//! `up`, `down`, `status` and `fault`: a local cluster kept running for a
//! person at a terminal. `up` starts every node and a proxy process detached
//! from the terminal and records them in `<dir>/up.json`; the other commands
//! read that file. Faults set here use the same rules as the nemesis and
//! hold for a lease (`--for`), so they heal by themselves.

use crate::nemesis::{check_params, links_of, message_rules, packet_spec};
use crate::platform::local::{load_template, plan};
use crate::proxy::MAX_LEASE;
use crate::scenario::{default_layer, Scheduled};
use anyhow::{bail, Context};
use faultline_node::config::{self, Certs};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
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

/// Starts a process in its own session so it outlives this command.
fn spawn_detached(mut cmd: Command, log: &Path) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    // SAFETY: setsid only detaches the child from our terminal session.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    Ok(cmd.spawn()?.id())
}

/// Whether the process exists and is not a zombie waiting to be reaped.
fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 checks for existence only.
    let exists =
        libc::pid_t::try_from(pid).is_ok_and(|p| p > 0 && unsafe { libc::kill(p, 0) } == 0);
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false);
    exists && !zombie
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(p) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on a pid this tool started.
        unsafe {
            libc::kill(p, sig);
        }
    }
}

fn start_node(up: &UpFile, dir: &Path, id: &str) -> anyhow::Result<u32> {
    let mut cmd = Command::new(&up.node_bin);
    cmd.args(["run", "--cluster"])
        .arg(&up.cluster)
        .args(["--id", id]);
    spawn_detached(cmd, &dir.join("logs").join(format!("{id}.log")))
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
    let cluster_path = std::fs::canonicalize(plan.write(dir)?)?;
    config::load(&cluster_path, Certs::Required).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ids = template.ids();
    let proxy_path = dir.join("proxy.yaml");

    let me = std::env::current_exe()?;
    let mut proxy_cmd = Command::new(me);
    proxy_cmd
        .args(["proxy", "--config"])
        .arg(std::fs::canonicalize(&proxy_path)?);
    let proxy_pid = spawn_detached(proxy_cmd, &dir.join("logs").join("proxy.log"))?;
    let mut up = UpFile {
        cluster: cluster_path,
        node_bin,
        proxy_url: format!("http://{control}"),
        secret,
        proxy_pid,
        pids: BTreeMap::new(),
    };
    for id in &ids {
        let pid = start_node(&up, dir, id)?;
        up.pids.insert(id.clone(), pid);
    }
    save_up(dir, &up)?;
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        let st = status_rows(&up, &http).await;
        if st.iter().all(|(_, s)| s.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    print!("{}", render_status(&up, &http).await);
    println!(
        "\nthe cluster is up; talk to it with\n  faultline-node client --cluster {} --id {} status\nfault it with `faultline-chaos fault ...`, stop it with `faultline-chaos down`",
        up.cluster.display(),
        template.with_role("client").first().cloned().unwrap_or_default()
    );
    Ok(())
}

/// `faultline-chaos down`: stops everything `up` started.
pub async fn down(dir: &Path) -> anyhow::Result<()> {
    let up = load_up(dir)?;
    let all: Vec<u32> = up.pids.values().copied().chain([up.proxy_pid]).collect();
    for p in &all {
        signal(*p, libc::SIGCONT);
        signal(*p, libc::SIGTERM);
    }
    let t0 = Instant::now();
    while all.iter().any(|p| alive(*p)) && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in &all {
        if alive(*p) {
            signal(*p, libc::SIGKILL);
        }
    }
    std::fs::remove_file(up_path(dir))?;
    println!("stopped {} nodes and the proxy", up.pids.len());
    Ok(())
}

async fn status_rows(up: &UpFile, http: &reqwest::Client) -> Vec<(String, Option<Value>)> {
    let Ok(cluster) = config::load(&up.cluster, Certs::Required) else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for n in &cluster.nodes {
        let s = match http
            .get(format!("http://{}/state", n.admin))
            .timeout(Duration::from_millis(500))
            .send()
            .await
        {
            Ok(r) => r.json::<Value>().await.ok(),
            Err(_) => None,
        };
        rows.push((n.id.clone(), s));
    }
    rows
}

async fn render_status(up: &UpFile, http: &reqwest::Client) -> String {
    let mut out = String::new();
    for (id, s) in status_rows(up, http).await {
        let pid = up.pids.get(&id).copied().unwrap_or(0);
        out += &match s {
            Some(s) => format!(
                "{id:<6} pid {pid:<7} {:<7} epoch {:<3} {}{}\n",
                s["role"].as_str().unwrap_or("?"),
                s["epoch"],
                if s["serving"] == true { "serving" } else { "" },
                if s["frozen"] == true { " frozen" } else { "" }
            ),
            None if alive(pid) => format!("{id:<6} pid {pid:<7} not answering (paused?)\n"),
            None => format!("{id:<6} down\n"),
        };
    }
    let links = http
        .get(format!("{}/links", up.proxy_url))
        .bearer_auth(&up.secret)
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    match links {
        Ok(r) => {
            let v: Value = r.json().await.unwrap_or(Value::Null);
            let faulty: Vec<String> = v["links"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|l| {
                            l["partitioned"] == true
                                || l["faults"].as_object().is_some_and(|f| !f.is_empty())
                        })
                        .map(|l| {
                            format!(
                                "{}->{}",
                                l["from"].as_str().unwrap_or("?"),
                                l["to"].as_str().unwrap_or("?")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out += &format!(
                "proxy  pid {:<7} {}\n",
                up.proxy_pid,
                if faulty.is_empty() {
                    "no packet faults".to_string()
                } else {
                    format!("faulty links: {}", faulty.join(" "))
                }
            );
        }
        Err(_) => out += "proxy  down\n",
    }
    out
}

pub async fn status(dir: &Path) -> anyhow::Result<()> {
    let up = load_up(dir)?;
    print!("{}", render_status(&up, &reqwest::Client::new()).await);
    Ok(())
}

/// `faultline-chaos fault KIND [TARGETS] [/ GROUP] [--p P] [--ms MS] [--for D]`.
pub async fn fault(
    dir: &Path,
    words: &[String],
    params: Value,
    lease: Duration,
) -> anyhow::Result<()> {
    let mut up = load_up(dir)?;
    let cluster = config::load(&up.cluster, Certs::Required).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ids = cluster.ids();
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
    let lease_ms = lease.as_millis() as u64;
    match kind {
        "heal" => {
            http.delete(format!("{}/faults", up.proxy_url))
                .bearer_auth(&up.secret)
                .send()
                .await?;
            for n in &cluster.nodes {
                let _ = http
                    .delete(format!("http://{}/faults", n.admin))
                    .bearer_auth(&up.secret)
                    .send()
                    .await;
            }
            for id in &ids {
                let pid = up.pids.get(id).copied().unwrap_or(0);
                if alive(pid) {
                    signal(pid, libc::SIGCONT);
                } else {
                    let pid = start_node(&up, dir, id)?;
                    up.pids.insert(id.clone(), pid);
                }
            }
            save_up(dir, &up)?;
            println!("healed: packet and message faults cleared, paused nodes resumed, stopped nodes restarted");
        }
        "kill" | "pause" | "resume" | "restart" => {
            let targets = list(words.get(1))?;
            for t in &targets {
                let pid = up.pids.get(t).copied().unwrap_or(0);
                match kind {
                    "kill" => signal(pid, libc::SIGKILL),
                    "pause" => signal(pid, libc::SIGSTOP),
                    "resume" => signal(pid, libc::SIGCONT),
                    _ => {
                        signal(pid, libc::SIGKILL);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let pid = start_node(&up, dir, t)?;
                        up.pids.insert(t.clone(), pid);
                    }
                }
            }
            save_up(dir, &up)?;
            println!("{kind}: {}", targets.join(", "));
        }
        "partition" | "isolate" => {
            let mut body = if kind == "isolate" {
                let t = list(words.get(1))?;
                let rest: Vec<String> = ids.iter().filter(|i| !t.contains(i)).cloned().collect();
                json!({"shape": "groups", "groups": [t, rest]})
            } else if words.get(2).map(|s| s.as_str()) == Some("/") {
                json!({"shape": "groups", "groups": [list(words.get(1))?, list(words.get(3))?]})
            } else {
                let shape = words.get(1).cloned().unwrap_or_else(|| "halves".into());
                let mut v = params.clone();
                v["shape"] = json!(shape);
                v
            };
            body["lease_ms"] = json!(lease_ms);
            let r = http
                .post(format!("{}/partition", up.proxy_url))
                .bearer_auth(&up.secret)
                .json(&body)
                .send()
                .await?;
            let status = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("the proxy refused the partition: {}", v["error"]);
            }
            println!(
                "partitioned for {:?}: {} directions blocked",
                lease,
                v["blocked"].as_array().map_or(0, |a| a.len())
            );
        }
        other => {
            let name = other.replace('-', "_");
            let layer = default_layer(&name);
            let f = Scheduled {
                id: 0,
                entry: 0,
                at_ms: 0,
                for_ms: Some(lease_ms),
                fault: name.clone(),
                layer: layer.to_string(),
                targets: list(words.get(1))?,
                params,
                in_model: true,
            };
            if f.targets.is_empty() {
                bail!("name the target nodes, e.g. `fault {other} s4`");
            }
            check_params(&f, &ids, &cluster.with_role("server"))
                .map_err(|e| anyhow::anyhow!("{other}: {e}"))?;
            match layer {
                "message" => {
                    let rules = message_rules(&f)?;
                    for t in &f.targets {
                        let admin = cluster
                            .node(t)
                            .map(|n| n.admin.to_string())
                            .unwrap_or_default();
                        let r = http
                            .put(format!("http://{admin}/faults"))
                            .bearer_auth(&up.secret)
                            .json(&json!({"rules": rules, "lease_ms": lease_ms}))
                            .send()
                            .await?;
                        if !r.status().is_success() {
                            bail!(
                                "{t} refused the rules: {}",
                                r.text().await.unwrap_or_default()
                            );
                        }
                    }
                    println!(
                        "{other} on {} for {lease:?} (message layer)",
                        f.targets.join(",")
                    );
                }
                "packet" => {
                    let spec = serde_json::to_value(packet_spec(&f)?)?;
                    for (a, b) in links_of(&f.targets, &ids) {
                        let mut body = spec.clone();
                        body["lease_ms"] = json!(lease_ms);
                        let r = http
                            .put(format!("{}/links/{a}/{b}/faults", up.proxy_url))
                            .bearer_auth(&up.secret)
                            .json(&body)
                            .send()
                            .await?;
                        if !r.status().is_success() {
                            bail!(
                                "the proxy refused the fault on {a}->{b}: {}",
                                r.text().await.unwrap_or_default()
                            );
                        }
                    }
                    println!(
                        "{other} on every link of {} for {lease:?} (packet layer)",
                        f.targets.join(",")
                    );
                }
                _ => {
                    bail!("unknown fault {other:?}: try partition, isolate, omission, drop, delay, duplicate, reorder, packet-loss, packet-delay, blackhole, kill, pause, resume, restart, heal");
                }
            }
        }
    }
    Ok(())
}
