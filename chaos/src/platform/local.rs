//! The local platform: every node a process on 127.0.0.1 with its own ports,
//! and the packet proxy in this process with one port per directed link. The
//! generated cluster file points every dial through the proxy, so a partition
//! or a lossy link is a proxy setting away.
//!
//! Certificates, durable logs and each node's log live in the run directory.
//! Nodes are killed with SIGKILL, paused with SIGSTOP/SIGCONT, restarted
//! with the same data directory. Every child asks the kernel to kill it when
//! the controller dies (`PR_SET_PDEATHSIG`), and `Drop` kills the rest, so no
//! process outlives a run, even one that fails or is interrupted.

use crate::proxy::{ControlConfig, Link, Proxy, ProxyConfig, ProxyHandle};
use anyhow::{bail, Context};
use faultline_node::config::{self, Certs, Cluster, ClusterFile, NodeFile};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `n` distinct free ports on 127.0.0.1, each free for both UDP and TCP.
/// All are held while probing, so no port is handed out twice.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let mut held = Vec::with_capacity(n);
    let mut tries = 0;
    while held.len() < n {
        tries += 1;
        if tries > n * 20 + 100 {
            bail!("not enough free ports on 127.0.0.1");
        }
        let Ok(u) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(a) = u.local_addr() else { continue };
        if let Ok(t) = TcpListener::bind(a) {
            held.push((u, t, a.port()));
        }
    }
    Ok(held.into_iter().map(|(_, _, p)| p).collect())
}

/// Hands out ports from one batch of [`free_ports`].
pub struct Ports(std::vec::IntoIter<u16>);

impl Ports {
    pub fn new(n: usize) -> anyhow::Result<Self> {
        Ok(Ports(free_ports(n)?.into_iter()))
    }
    pub fn take(&mut self) -> anyhow::Result<u16> {
        self.0.next().context("port batch exhausted")
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Options for bringing a cluster up.
pub struct LocalOptions {
    pub node_bin: PathBuf,
    pub seed: u64,
    /// Planted bugs to switch on (tokens).
    pub bugs: Vec<String>,
}

struct Proc {
    child: Child,
    paused: bool,
}

pub struct LocalCluster {
    pub run_dir: PathBuf,
    pub cluster_path: PathBuf,
    pub cluster: Cluster,
    node_bin: PathBuf,
    procs: BTreeMap<String, Proc>,
    pub proxy: Option<ProxyHandle>,
    /// `http://127.0.0.1:PORT` of the proxy's control API.
    pub proxy_url: String,
}

/// The node binary beside this executable (`target/<profile>/faultline-node`).
pub fn default_node_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("faultline-node")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("faultline-node"))
}

impl LocalCluster {
    /// Writes the run's cluster file (fresh ports, dials through the proxy,
    /// certificates, a random secret), starts the proxy. Nodes are not
    /// started yet.
    pub async fn create(
        template: &Cluster,
        run_dir: &Path,
        opts: LocalOptions,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(run_dir.join("logs"))
            .with_context(|| format!("cannot create {}", run_dir.display()))?;
        let plan = plan(template, opts.seed, random_secret(), &opts.bugs)?;
        let cluster_path = plan.write(run_dir)?;
        let proxy = Proxy::start(plan.proxy.clone())
            .await
            .context("cannot start the packet proxy")?;
        let proxy_url = format!(
            "http://{}",
            proxy
                .control_addr()
                .context("the proxy has no control address")?
        );
        let cluster = config::load(&cluster_path, Certs::Required)
            .map_err(|e| anyhow::anyhow!("generated cluster file is invalid: {e}"))?;
        Ok(LocalCluster {
            run_dir: run_dir.to_path_buf(),
            cluster_path,
            cluster,
            node_bin: opts.node_bin,
            procs: BTreeMap::new(),
            proxy: Some(proxy),
            proxy_url,
        })
    }

    pub fn admin_url(&self, id: &str) -> String {
        self.cluster
            .node(id)
            .map(|n| format!("http://{}", n.admin))
            .unwrap_or_default()
    }

    pub fn secret(&self) -> &str {
        &self.cluster.secret
    }

    pub fn start(&mut self, id: &str) -> anyhow::Result<()> {
        if self.is_running(id) {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run_dir.join("logs").join(format!("{id}.log")))?;
        let mut cmd = Command::new(&self.node_bin);
        cmd.args(["run", "--cluster"])
            .arg(&self.cluster_path)
            .args(["--id", id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} ({})", id, self.node_bin.display()))?;
        self.procs.insert(
            id.to_string(),
            Proc {
                child,
                paused: false,
            },
        );
        Ok(())
    }

    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for id in self.cluster.ids() {
            self.start(&id)?;
        }
        Ok(())
    }

    pub fn is_running(&mut self, id: &str) -> bool {
        self.procs
            .get_mut(id)
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    pub fn pid(&self, id: &str) -> Option<u32> {
        self.procs.get(id).map(|p| p.child.id())
    }

    /// SIGKILL: a crash, with no chance to flush anything.
    pub fn kill(&mut self, id: &str) {
        if let Some(mut p) = self.procs.remove(id) {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// SIGSTOP: the process stays, silent, until resumed.
    pub fn pause(&mut self, id: &str) {
        if let Some(p) = self.procs.get_mut(id) {
            signal(p.child.id(), libc::SIGSTOP);
            p.paused = true;
        }
    }

    pub fn resume(&mut self, id: &str) {
        if let Some(p) = self.procs.get_mut(id) {
            signal(p.child.id(), libc::SIGCONT);
            p.paused = false;
        }
    }

    /// Resumes every paused node and restarts every stopped one.
    pub fn heal_processes(&mut self) -> anyhow::Result<()> {
        let paused: Vec<String> = self
            .procs
            .iter()
            .filter(|(_, p)| p.paused)
            .map(|(id, _)| id.clone())
            .collect();
        for id in paused {
            self.resume(&id);
        }
        for id in self.cluster.ids() {
            if !self.is_running(&id) {
                self.start(&id)?;
            }
        }
        Ok(())
    }

    /// Waits until every running node answers `/state` (and servers serve).
    pub async fn wait_ready(&self, http: &reqwest::Client, within: Duration) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let ids: Vec<String> = self.procs.keys().cloned().collect();
        'outer: while t0.elapsed() < within {
            for id in &ids {
                let ok = match http
                    .get(format!("{}/state", self.admin_url(id)))
                    .send()
                    .await
                {
                    Ok(r) => r
                        .json::<serde_json::Value>()
                        .await
                        .is_ok_and(|s| s["role"] == "client" || s["serving"] == true),
                    Err(_) => false,
                };
                if !ok {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue 'outer;
                }
            }
            return Ok(());
        }
        bail!(
            "the cluster did not come up within {within:?}; see the logs in {}",
            self.run_dir.join("logs").display()
        )
    }

    /// Stops every node and the proxy.
    pub async fn teardown(&mut self) {
        let ids: Vec<String> = self.procs.keys().cloned().collect();
        for id in &ids {
            self.resume(id);
            if let Some(p) = self.procs.get(id) {
                signal(p.child.id(), libc::SIGTERM);
            }
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) && ids.iter().any(|id| self.is_running(id)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for id in ids {
            self.kill(&id);
        }
        if let Some(p) = self.proxy.take() {
            p.shutdown().await;
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for (_, mut p) in std::mem::take(&mut self.procs) {
            signal(p.child.id(), libc::SIGCONT);
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on a pid we spawned; no memory is touched.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Asks the kernel to SIGKILL the child when this process dies, so a
/// controller that is itself killed leaves no node behind.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and only affects the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn random_secret() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

/// A local cluster laid out: the run's cluster file and the proxy config.
/// Every port (node QUIC and admin, each link's listen and upstream socket,
/// the proxy's control API) comes from one batch, so none is handed out
/// twice and the proxy never takes a port promised to a node.
pub struct Plan {
    pub file: ClusterFile,
    pub proxy: ProxyConfig,
}

/// Lays out `template` on 127.0.0.1 with every dial through the proxy.
pub fn plan(
    template: &Cluster,
    seed: u64,
    secret: String,
    bugs: &[String],
) -> anyhow::Result<Plan> {
    let ids = template.ids();
    let mut ports = Ports::new(2 * ids.len() + 2 * ids.len() * ids.len() + 1)?;
    let mut listen = BTreeMap::new();
    let mut admin = BTreeMap::new();
    for id in &ids {
        listen.insert(id.clone(), ports.take()?);
        admin.insert(id.clone(), ports.take()?);
    }
    let mut links = Vec::new();
    let mut via = BTreeMap::new();
    for a in &ids {
        for b in &ids {
            if a != b {
                let port = ports.take()?;
                via.insert((a.clone(), b.clone()), port);
                let link = Link::new(a.clone(), b.clone(), loopback(port), loopback(listen[b]));
                links.push(link.with_upstream(loopback(ports.take()?)));
            }
        }
    }
    let proxy = ProxyConfig {
        seed,
        nodes: ids.clone(),
        default_lease_ms: 30_000,
        control: Some(ControlConfig {
            listen: loopback(ports.take()?),
            token: secret.clone(),
        }),
        links,
    };
    let mut file: ClusterFile = template.file.clone();
    file.seed = seed;
    file.secret = Some(secret);
    file.tls.dir = PathBuf::from("certs");
    file.data_dir = Some(PathBuf::from("data"));
    if !bugs.is_empty() {
        let mut t = file.tokens.clone().unwrap_or_default();
        for b in bugs {
            t.bugs.enable(b).map_err(anyhow::Error::msg)?;
        }
        file.tokens = Some(t);
    }
    file.nodes = template
        .nodes
        .iter()
        .map(|n| NodeFile {
            id: n.id.clone(),
            role: n.role.clone(),
            listen: loopback(listen[&n.id]).to_string(),
            advertise: None,
            admin: loopback(admin[&n.id]).to_string(),
            // The lower id dials; each dial goes through that link's port.
            dial: ids
                .iter()
                .filter(|p| n.id.as_str() < p.as_str())
                .map(|p| {
                    (
                        p.clone(),
                        loopback(via[&(n.id.clone(), p.clone())]).to_string(),
                    )
                })
                .collect(),
        })
        .collect();
    Ok(Plan { file, proxy })
}

impl Plan {
    /// Writes `cluster.yaml`, `proxy.yaml` and the certificates into `dir`;
    /// returns the cluster file's path.
    pub fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("proxy.yaml"), serde_yaml::to_string(&self.proxy)?)?;
        let cluster_path = dir.join("cluster.yaml");
        let text = format!(
            "# Generated by faultline-chaos: every dial goes through the proxy.\n{}",
            serde_yaml::to_string(&self.file)?
        );
        std::fs::write(&cluster_path, text)?;
        let ids: Vec<String> = self.file.nodes.iter().map(|n| n.id.clone()).collect();
        faultline_node::transport::tls::generate_for(&ids, &dir.join("certs"))
            .context("cannot make certificates")?;
        Ok(cluster_path)
    }
}

/// Loads a cluster file as a template (certificates are made per run).
pub fn load_template(path: &Path) -> anyhow::Result<Cluster> {
    config::load(path, Certs::NotYet).map_err(|e| anyhow::anyhow!("{e}"))
}
