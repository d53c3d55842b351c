//! Helpers for end-to-end tests: a cluster of real `faultline-node`
//! processes on 127.0.0.1 with free ports, certificates and a cluster file in
//! a fresh directory, and cleanup that kills every process it started, even
//! when a test fails.

pub mod bench;

use faultline_node::api::{FaultStatus, NodeState, OpReply};
use faultline_node::protocol::tokens::{Reply, Request, TokensState};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "e2e-test-secret-0123456789";

/// The directory holding the workspace's built binaries. `make test` builds
/// them before running the tests; `FAULTLINE_BIN_DIR` overrides.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("FAULTLINE_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/<profile>/deps/<test binary> or target/<profile>/<binary>
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("binary directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A workspace binary, built beforehand.
fn built(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: build it first (`make test` does, or `cargo build --bins`)",
        p.display()
    );
    p
}

pub fn node_bin() -> PathBuf {
    built("faultline-node")
}

pub fn chaos_bin() -> PathBuf {
    built("faultline-chaos")
}

/// Processes whose command line mentions `needle` (e.g. a run directory).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{pid}: {cmd}"));
            }
        }
    }
    found
}

/// A fresh scratch directory under the target directory.
pub fn scratch(name: &str) -> PathBuf {
    let d = bin_dir()
        .join("e2e")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// `n` distinct free ports on 127.0.0.1 (all held while probing).
pub fn free_ports(n: usize) -> Vec<u16> {
    faultline_chaos::platform::local::free_ports(n).expect("free ports on 127.0.0.1")
}

pub struct NodeSpec {
    pub id: String,
    pub role: String,
    pub listen: u16,
    pub admin: u16,
}

pub struct TestCluster {
    pub dir: PathBuf,
    pub file: PathBuf,
    pub nodes: Vec<NodeSpec>,
    /// Ports from the same batch as the nodes, two per directed link (listen
    /// and upstream), for
    /// a test that routes dials through a proxy.
    pub spare_ports: Vec<u16>,
    procs: BTreeMap<String, Child>,
    http: reqwest::Client,
}

impl TestCluster {
    /// Writes a token cluster file with `servers` servers and `clients`
    /// clients plus `extra` YAML (top-level keys), and makes certificates.
    pub fn tokens(name: &str, servers: usize, clients: usize, extra: &str) -> Self {
        Self::of_system(name, "tokens", servers, clients, extra)
    }

    /// A cluster file of `system` with `servers` nodes `s1..` (role
    /// `server`) and `clients` nodes `c1..` (role `client`), plus `extra`
    /// YAML (top-level keys), and its certificates.
    pub fn of_system(
        name: &str,
        system: &str,
        servers: usize,
        clients: usize,
        extra: &str,
    ) -> Self {
        Self::of_roles(
            name,
            system,
            &[("server", "s", servers), ("client", "c", clients)],
            extra,
        )
    }

    /// A cluster file of `system` with, for each `(role, prefix, count)`,
    /// nodes `<prefix>1..` of that role, plus `extra` YAML (top-level
    /// keys), and its certificates.
    pub fn of_roles(name: &str, system: &str, roles: &[(&str, &str, usize)], extra: &str) -> Self {
        let dir = scratch(name);
        let n: usize = roles.iter().map(|r| r.2).sum();
        let mut ports = free_ports(2 * n + 2 * n * n).into_iter();
        let mut port = move || ports.next().expect("port batch");
        let mut nodes = Vec::new();
        for &(role, p, n) in roles {
            for i in 1..=n {
                nodes.push(NodeSpec {
                    id: format!("{p}{i}"),
                    role: role.into(),
                    listen: port(),
                    admin: port(),
                });
            }
        }
        let mut yaml = format!(
            "system: {system}\nsecret: {SECRET}\ntls:\n  dir: certs\ndata_dir: data\n{extra}\nnodes:\n"
        );
        for n in &nodes {
            yaml += &format!(
                "  - {{ id: {}, role: {}, listen: 127.0.0.1:{}, admin: 127.0.0.1:{} }}\n",
                n.id, n.role, n.listen, n.admin
            );
        }
        let file = dir.join("cluster.yaml");
        std::fs::write(&file, yaml).expect("write cluster file");
        let out = Command::new(node_bin())
            .args(["certs", "--cluster"])
            .arg(&file)
            .output()
            .expect("run certs");
        assert!(
            out.status.success(),
            "certs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let spare_ports = (0..2 * n * n).map(|_| port()).collect();
        TestCluster {
            dir,
            file,
            nodes,
            spare_ports,
            procs: BTreeMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("http client"),
        }
    }

    pub fn ids(&self, role: &str) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.role == role)
            .map(|n| n.id.clone())
            .collect()
    }

    pub fn admin(&self, id: &str) -> String {
        let n = self.nodes.iter().find(|n| n.id == id).expect("known node");
        format!("http://127.0.0.1:{}", n.admin)
    }

    pub fn start(&mut self, id: &str) {
        // Appended: a restarted node's log follows its earlier lives.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{id}.log")))
            .expect("log file");
        let child = Command::new(node_bin())
            .args(["run", "--cluster"])
            .arg(&self.file)
            .args(["--id", id])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn node");
        self.procs.insert(id.to_string(), child);
    }

    pub fn start_all(&mut self) {
        let ids: Vec<String> = self.nodes.iter().map(|n| n.id.clone()).collect();
        for id in ids {
            self.start(&id);
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self, id: &str) {
        if let Some(mut c) = self.procs.remove(id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self, id: &str) -> Option<u32> {
        self.procs.get(id).map(|c| c.id())
    }

    /// True while the process has not exited.
    pub fn alive(&mut self, id: &str) -> bool {
        self.procs
            .get_mut(id)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    async fn fetch(&self, id: &str, path: &str) -> Option<reqwest::Response> {
        self.http
            .get(format!("{}{path}", self.admin(id)))
            .send()
            .await
            .ok()
    }

    pub async fn get(&self, id: &str, path: &str) -> Option<Value> {
        self.fetch(id, path).await?.json().await.ok()
    }

    pub async fn get_text(&self, id: &str, path: &str) -> Option<String> {
        self.fetch(id, path).await?.text().await.ok()
    }

    /// POST with the cluster secret; returns (status, body).
    /// Runs the load generator (`POST /load`) on every client of the
    /// cluster at once; the stats of those that answered.
    pub async fn load_clients(
        &self,
        spec: &faultline_node::api::LoadSpec,
    ) -> Vec<faultline_node::api::LoadStats> {
        let body = serde_json::to_value(spec).expect("plain data");
        let runs = self.ids("client").into_iter().map(|id| {
            let body = body.clone();
            async move { self.post(&id, "/load", &body).await }
        });
        futures::future::join_all(runs)
            .await
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_value(v).ok())
            .collect()
    }

    pub async fn post(&self, id: &str, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, id, path, Some(body), Some(SECRET))
            .await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        id: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.admin(id)));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        match rb.send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                (s, r.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    /// A node's `/state`, typed.
    pub async fn state(&self, id: &str) -> Option<NodeState<TokensState>> {
        self.state_as(id).await
    }

    /// A node's `/state` as system state `T`.
    pub async fn state_as<T: serde::de::DeserializeOwned>(&self, id: &str) -> Option<NodeState<T>> {
        serde_json::from_value(self.get(id, "/state").await?).ok()
    }

    /// A node's message fault rules (`GET /faults`), typed.
    pub async fn faults(&self, id: &str) -> Option<FaultStatus> {
        serde_json::from_value(self.get(id, "/faults").await?).ok()
    }

    /// Runs one operation on a client node.
    pub async fn op(&self, client: &str, request: &Request) -> OpReply<Reply> {
        self.op_as(client, request).await
    }

    /// Runs one operation of any system on a client node.
    pub async fn op_as<Rq: serde::Serialize, Rp: serde::de::DeserializeOwned>(
        &self,
        client: &str,
        request: &Rq,
    ) -> OpReply<Rp> {
        let body = serde_json::to_value(request).expect("a request is plain data");
        let (status, v) = self.post(client, "/ops", &body).await;
        assert_eq!(status, 200, "POST /ops on {client}: {v}");
        serde_json::from_value(v).expect("/ops answers an OpReply")
    }

    /// Waits until every started node answers and every server serves.
    pub async fn wait_ready(&self, within: Duration) {
        let t0 = Instant::now();
        'outer: while t0.elapsed() < within {
            for id in self.procs.keys() {
                let state = self.get(id, "/state").await.and_then(|s| {
                    serde_json::from_value::<NodeState<serde_json::Map<String, Value>>>(s).ok()
                });
                match state {
                    Some(s) if s.ready => {}
                    _ => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue 'outer;
                    }
                }
            }
            return;
        }
        panic!(
            "cluster not ready within {within:?}; logs in {}",
            self.dir.display()
        );
    }

    /// Runs `faultline-node client` with arguments.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(node_bin())
            .args(["client", "--cluster"])
            .arg(&self.file)
            .args(args)
            .output()
            .expect("run client")
    }

    /// Runs a client verb as node `id`: whether it succeeded, and its
    /// standard output then standard error, trimmed.
    pub fn verb(&self, id: &str, args: &[&str]) -> (bool, String) {
        let out = self.cli(&[&["--id", id][..], args].concat());
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        )
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.procs) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `faultline-node` with arguments (for `check` and `certs`).
pub fn node(args: &[&str]) -> Output {
    Command::new(node_bin())
        .args(args)
        .output()
        .expect("run faultline-node")
}

/// GET `http://IP:PORT/PATH` over plain HTTP/1.0 (metrics endpoints,
/// Prometheus' API): the body, or empty on any failure. No curl needed.
pub fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    use std::time::Duration;
    let Some((host, path)) = url.strip_prefix("http://").and_then(|r| r.split_once('/')) else {
        return String::new();
    };
    let Ok(addr) = host.parse::<std::net::SocketAddr>() else {
        return String::new();
    };
    let Ok(mut conn) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return String::new();
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(conn, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").is_err() {
        return String::new();
    }
    let mut text = String::new();
    let _ = conn.read_to_string(&mut text);
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}
