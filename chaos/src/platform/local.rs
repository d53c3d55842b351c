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

use super::layout::{self, Layout, Plan};
use super::Platform;
use crate::proxy::{Proxy, ProxyClient, ProxyHandle};
use anyhow::{bail, Context};
use faultline_node::config::{self, Certs, Cluster};
use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `n` distinct free ports on 127.0.0.1, each free for both UDP and TCP.
/// All are held while probing, so no port is handed out twice. They are
/// drawn below the kernel's ephemeral range: a port the kernel hands out
/// itself (to any outgoing connection of any process, between our probe and
/// the node's bind) would otherwise collide with one handed to a node.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    use rand::Rng;
    let (lo, hi) = below_ephemeral();
    let mut rng = rand::rng();
    // A poisoned lock still holds a usable set.
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    let mut held: Vec<(UdpSocket, TcpListener, u16)> = Vec::with_capacity(n);
    let mut tries = 0;
    while held.len() < n {
        tries += 1;
        if tries > n * 50 + 1_000 {
            bail!("not enough free ports on 127.0.0.1 in {lo}..{hi}");
        }
        let port = rng.random_range(lo..hi);
        if held.iter().any(|(_, _, p)| *p == port) || recent.1.contains(&port) {
            continue;
        }
        let a = SocketAddr::from(([127, 0, 0, 1], port));
        let Ok(u) = UdpSocket::bind(a) else { continue };
        if let Ok(t) = TcpListener::bind(a) {
            held.push((u, t, port));
        }
    }
    let ports: Vec<u16> = held.into_iter().map(|(_, _, p)| p).collect();
    for p in &ports {
        recent.0.push_back(*p);
        recent.1.insert(*p);
    }
    // Bounded: one removal per port past the limit.
    while recent.0.len() > RECENT_LIMIT {
        if let Some(old) = recent.0.pop_front() {
            recent.1.remove(&old);
        }
    }
    Ok(ports)
}

/// Ports this process handed out lately, in order and as a set: never
/// handed out again, nor probed (a probe binds the port for a moment, and
/// a node of another cluster of this process may be binding it just then:
/// parallel tests collided so). The oldest are forgotten past
/// [`RECENT_LIMIT`], so a long schedule does not run out of ports.
static RECENT: std::sync::Mutex<(
    std::collections::VecDeque<u16>,
    std::collections::BTreeSet<u16>,
)> = std::sync::Mutex::new((
    std::collections::VecDeque::new(),
    std::collections::BTreeSet::new(),
));

/// How many recently handed-out ports [`free_ports`] avoids.
const RECENT_LIMIT: usize = 6_000;

/// The ports from which [`free_ports`] draws: from 10000 up to the start of
/// the kernel's ephemeral range (32768 when it cannot be read).
fn below_ephemeral() -> (u16, u16) {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if start > 12_000 {
        (10_000, start)
    } else {
        // An unusual range that starts low: use the ports above it instead.
        (61_000, 65_535)
    }
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
    /// Planted bugs of the cluster's system to switch on.
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
    proxy: Option<ProxyHandle>,
    /// The proxy's control API, on 127.0.0.1.
    proxy_client: ProxyClient,
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
        plan.write_certs(run_dir)?;
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
        let proxy_client = ProxyClient::new(
            reqwest::Client::builder().build()?,
            proxy_url,
            cluster.secret.clone(),
        );
        Ok(LocalCluster {
            run_dir: run_dir.to_path_buf(),
            cluster_path,
            cluster,
            node_bin: opts.node_bin,
            procs: BTreeMap::new(),
            proxy: Some(proxy),
            proxy_client,
        })
    }

    fn spawn(&mut self, id: &str) -> anyhow::Result<()> {
        if self.running(id) {
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

    fn running(&mut self, id: &str) -> bool {
        self.procs
            .get_mut(id)
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    /// SIGKILL: a crash, with no chance to flush anything.
    fn kill_now(&mut self, id: &str) {
        if let Some(mut p) = self.procs.remove(id) {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    fn set_paused(&mut self, id: &str, paused: bool) -> anyhow::Result<()> {
        if let Some(p) = self.procs.get_mut(id) {
            let sig = if paused {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            };
            signal(p.child.id(), sig).with_context(|| format!("cannot send {sig} to {id}"))?;
            p.paused = paused;
        }
        Ok(())
    }

    /// Stops every node (SIGTERM, then SIGKILL after 3 s) and the proxy.
    pub async fn teardown(&mut self) {
        let ids: Vec<String> = self.procs.keys().cloned().collect();
        for id in &ids {
            let _ = self.set_paused(id, false);
            if let Some(p) = self.procs.get(id) {
                // A node that already exited has nothing to stop.
                let _ = signal(p.child.id(), Signal::SIGTERM);
            }
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) && ids.iter().any(|id| self.running(id)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for id in ids {
            self.kill_now(&id);
        }
        if let Some(p) = self.proxy.take() {
            p.shutdown().await;
        }
    }
}

impl Platform for LocalCluster {
    fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    fn admin_url(&self, id: &str) -> String {
        self.cluster
            .node(id)
            .map(|n| format!("http://{}", n.admin))
            .unwrap_or_default()
    }

    fn proxy(&self) -> Option<&ProxyClient> {
        self.proxy.as_ref().map(|_| &self.proxy_client)
    }

    async fn start(&mut self, id: &str) -> anyhow::Result<()> {
        self.spawn(id)
    }

    async fn kill(&mut self, id: &str) -> anyhow::Result<()> {
        self.kill_now(id);
        Ok(())
    }

    /// SIGSTOP: the process stays, silent, until resumed.
    async fn pause(&mut self, id: &str) -> anyhow::Result<()> {
        self.set_paused(id, true)
    }

    async fn resume(&mut self, id: &str) -> anyhow::Result<()> {
        self.set_paused(id, false)
    }

    async fn is_running(&mut self, id: &str) -> bool {
        self.running(id)
    }

    /// Resumes every paused node and restarts every stopped one.
    async fn heal_processes(&mut self) -> anyhow::Result<()> {
        let paused: Vec<String> = self
            .procs
            .iter()
            .filter(|(_, p)| p.paused)
            .map(|(id, _)| id.clone())
            .collect();
        for id in paused {
            // A paused node that died meanwhile is restarted below.
            if let Err(e) = self.set_paused(&id, false) {
                tracing::warn!(node = %id, error = %e, "could not resume");
            }
        }
        for id in self.cluster.ids() {
            if !self.running(&id) {
                self.spawn(&id)?;
            }
        }
        Ok(())
    }

    async fn down(&mut self) {
        self.teardown().await;
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for (_, mut p) in std::mem::take(&mut self.procs) {
            let _ = signal(p.child.id(), Signal::SIGCONT);
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// Sends `sig` to a process this controller spawned.
pub(crate) fn signal(pid: u32, sig: Signal) -> nix::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| nix::errno::Errno::ESRCH)?;
    send_signal(Pid::from_raw(pid), sig)
}

/// Asks the kernel to SIGKILL the child when this process dies, so a
/// controller that is itself killed leaves no node behind.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the child between fork and exec; prctl(2) is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
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

/// Lays out `template` on 127.0.0.1 with every dial through the proxy.
/// Every port (node QUIC and admin, each link's listen and upstream socket,
/// the proxy's control API) comes from one batch, so none is handed out
/// twice and the proxy never takes a port promised to a node.
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
        listen.insert(id.clone(), loopback(ports.take()?));
        admin.insert(id.clone(), loopback(ports.take()?));
    }
    let mut links = BTreeMap::new();
    for a in &ids {
        for b in &ids {
            if a != b {
                let at = loopback(ports.take()?);
                let upstream = loopback(ports.take()?);
                links.insert((a.clone(), b.clone()), (at, Some(upstream)));
            }
        }
    }
    // The file is written into the run directory: relative paths in the
    // system's section still mean the template's directory.
    let base_dir = match &template.file.base_dir {
        Some(d) => d.clone(),
        None => {
            let dir = template.base_dir();
            std::fs::canonicalize(&dir).unwrap_or(dir)
        }
    };
    let layout = Layout {
        listen,
        admin,
        links,
        control: loopback(ports.take()?),
        tls_dir: PathBuf::from("certs"),
        data_dir: PathBuf::from("data"),
        base_dir,
        reach: BTreeMap::new(),
        proxy_host: None,
    };
    layout::plan(template, seed, secret, bugs, &layout)
}

/// Loads a cluster file as a template (certificates are made per run).
pub fn load_template(path: &Path) -> anyhow::Result<Cluster> {
    config::load(path, Certs::NotYet).map_err(|e| anyhow::anyhow!("{e}"))
}
