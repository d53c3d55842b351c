//! How a cluster is laid out on a platform: the cluster file its nodes read
//! (every dial through the packet proxy) and the proxy's configuration, from
//! a template cluster file and the addresses the platform hands out. One
//! code path for every platform, so a cluster on docker compose is the same
//! cluster as on local processes, only at other addresses.

use crate::proxy::{ControlConfig, Link, ProxyConfig};
use anyhow::Context;
use faultline_node::config::{Cluster, ClusterFile, NodeFile};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The addresses and directories a platform gives a cluster.
pub struct Layout {
    /// Where each node's QUIC endpoint binds.
    pub listen: BTreeMap<String, SocketAddr>,
    /// Where each node's admin API binds.
    pub admin: BTreeMap<String, SocketAddr>,
    /// For each directed link `(from, to)`: where the proxy listens for
    /// `from`'s datagrams, and where the link's upstream socket binds (`None`:
    /// any free port).
    pub links: BTreeMap<(String, String), (SocketAddr, Option<SocketAddr>)>,
    /// The proxy's control API.
    pub control: SocketAddr,
    /// Certificates and data, as the nodes see them (relative paths are
    /// relative to the directory the cluster file is written to).
    pub tls_dir: PathBuf,
    pub data_dir: PathBuf,
    /// What relative paths in the system's section mean, as the nodes see it.
    pub base_dir: PathBuf,
    /// Where the proxy reaches each node, `host:port`, when that is not the
    /// node's listen address (Kubernetes: a Service per node; nodes bind
    /// 0.0.0.0). Empty: the listen address.
    pub reach: BTreeMap<String, String>,
    /// The host nodes dial the proxy's link ports at, when that is not the
    /// address the proxy binds (Kubernetes: the proxy's Service).
    pub proxy_host: Option<String>,
}

/// A cluster laid out: the cluster file its nodes read and the proxy config.
pub struct Plan {
    pub file: ClusterFile,
    pub proxy: ProxyConfig,
}

/// Lays out `template` at `layout`'s addresses with every dial through the
/// proxy: the lower id of each pair dials, through its link's proxy port.
/// `bugs` are planted bugs of the template's system to switch on.
pub fn plan(
    template: &Cluster,
    seed: u64,
    secret: String,
    bugs: &[String],
    layout: &Layout,
) -> anyhow::Result<Plan> {
    let ids = template.ids();
    let addr = |map: &BTreeMap<String, SocketAddr>, id: &str| {
        map.get(id)
            .copied()
            .with_context(|| format!("the layout has no address for {id}"))
    };
    let via = |a: &str, b: &str| {
        layout
            .links
            .get(&(a.to_string(), b.to_string()))
            .copied()
            .with_context(|| format!("the layout has no proxy port for {a} -> {b}"))
    };
    let mut links = Vec::new();
    for a in &ids {
        for b in &ids {
            if a != b {
                let (at, upstream) = via(a, b)?;
                let target = match layout.reach.get(b) {
                    Some(host_port) => host_port.clone(),
                    None => addr(&layout.listen, b)?.to_string(),
                };
                let link = Link::new(a.clone(), b.clone(), at, target);
                links.push(match upstream {
                    Some(u) => link.with_upstream(u),
                    None => link,
                });
            }
        }
    }
    let proxy = ProxyConfig {
        seed,
        nodes: ids.clone(),
        default_lease_ms: 30_000,
        control: Some(ControlConfig {
            listen: layout.control,
            token: secret.clone(),
        }),
        links,
    };
    let mut file: ClusterFile = template.file.clone();
    file.seed = seed;
    file.secret = Some(secret);
    file.tls.dir = layout.tls_dir.clone();
    file.data_dir = Some(layout.data_dir.clone());
    file.base_dir = Some(layout.base_dir.clone());
    file.enable_bugs(bugs).map_err(anyhow::Error::msg)?;
    let mut nodes = Vec::with_capacity(template.nodes.len());
    for n in &template.nodes {
        let mut dial = BTreeMap::new();
        for p in ids.iter().filter(|p| n.id.as_str() < p.as_str()) {
            let at = via(&n.id, p)?.0;
            let dial_at = match &layout.proxy_host {
                Some(host) => format!("{host}:{}", at.port()),
                None => at.to_string(),
            };
            dial.insert(p.clone(), dial_at);
        }
        nodes.push(NodeFile {
            id: n.id.clone(),
            role: n.role.clone(),
            listen: addr(&layout.listen, &n.id)?.to_string(),
            advertise: None,
            admin: addr(&layout.admin, &n.id)?.to_string(),
            dial,
        });
    }
    file.nodes = nodes;
    Ok(Plan { file, proxy })
}

impl Plan {
    /// Writes `cluster.yaml` and `proxy.yaml` into `dir`; returns the
    /// cluster file's path.
    pub fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        write_files(dir, &self.files()?)?;
        Ok(dir.join("cluster.yaml"))
    }

    /// The files [`Plan::write`] writes: `(name, text)`.
    pub fn files(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        Ok(vec![
            ("proxy.yaml", serde_yaml::to_string(&self.proxy)?),
            (
                "cluster.yaml",
                format!(
                    "# Generated by faultline-chaos: every dial goes through the proxy.\n{}",
                    self.file.to_yaml()?
                ),
            ),
        ])
    }

    /// Makes the cluster's certificates in `dir/certs`.
    pub fn write_certs(&self, dir: &Path) -> anyhow::Result<()> {
        let ids: Vec<String> = self.file.nodes.iter().map(|n| n.id.clone()).collect();
        faultline_node::transport::tls::generate_for(&ids, &dir.join("certs"))
            .context("cannot make certificates")?;
        Ok(())
    }
}

/// Writes `(name, text)` files into `dir`, making it if needed.
pub fn write_files(dir: &Path, files: &[(&str, String)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
