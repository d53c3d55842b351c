//! Where a cluster runs, behind one trait ([`Platform`]): bring nodes up and
//! down, kill, pause, resume and restart one, the admin URL of a node, and
//! the proxy in front of every link. The nemesis, the runner and the terminal
//! commands only talk to the trait, so each platform is one implementation:
//! `local` (processes on 127.0.0.1 that a run owns, the default), the
//! terminal's `Detached` (a local cluster `faultline-chaos up` left
//! running), `compose` (a docker compose stack) and `kubernetes` (the
//! cluster an overlay of `k8s/` deployed). `kube` writes those overlays,
//! `layout` lays a cluster out for any of them, `scrape` writes their
//! Prometheus configuration.

pub mod compose;
pub mod kube;
pub mod kube_api;
pub mod kubernetes;
pub mod layout;
pub mod local;
pub mod scrape;

use crate::proxy::ProxyClient;
use anyhow::bail;
use faultline_node::api::NodeState;
use faultline_node::config::Cluster;
use std::future::Future;
use std::time::{Duration, Instant};

/// A running cluster on some platform. Process faults are the platform's:
/// a kill is a crash (no flush), a pause stops the process without closing
/// its sockets, a start after a kill keeps the node's data.
pub trait Platform: Send {
    /// The cluster as this platform runs it (its generated cluster file).
    fn cluster(&self) -> &Cluster;

    /// The base URL of node `id`'s admin API (`http://host:port`).
    fn admin_url(&self, id: &str) -> String;

    /// The bearer token of the admin APIs and the proxy.
    fn secret(&self) -> &str {
        &self.cluster().secret
    }

    /// Where node `id` runs, for a person (`pid 1234`, `container x`).
    fn describe(&self, _id: &str) -> String {
        String::new()
    }

    /// The packet proxy in front of every link, if the platform has one.
    fn proxy(&self) -> Option<&ProxyClient>;

    /// Starts node `id` if it is not running (after a kill: a restart on its
    /// old data).
    fn start(&mut self, id: &str) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Kills node `id` at once (SIGKILL or the platform's equivalent).
    fn kill(&mut self, id: &str) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Freezes node `id` (SIGSTOP or equivalent) until [`Platform::resume`].
    fn pause(&mut self, id: &str) -> impl Future<Output = anyhow::Result<()>> + Send;

    fn resume(&mut self, id: &str) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Whether node `id`'s process is running (paused counts as running).
    fn is_running(&mut self, id: &str) -> impl Future<Output = bool> + Send;

    /// Every node that is not running, stopped or paused: brings it back.
    fn heal_processes(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Stops every node and the proxy; what the platform made is removed.
    fn down(&mut self) -> impl Future<Output = ()> + Send;

    /// Starts every node of the cluster.
    fn up(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send {
        async move {
            for id in self.cluster().ids() {
                self.start(&id).await?;
            }
            Ok(())
        }
    }

    /// Kills node `id` and starts it again on its data.
    fn restart(&mut self, id: &str) -> impl Future<Output = anyhow::Result<()>> + Send {
        async move {
            self.kill(id).await?;
            self.start(id).await
        }
    }
}

/// A node's `/state`, with the system's part left as JSON (generic code
/// reads only the generic fields: id, role, ready).
pub type AnyState = NodeState<serde_json::Map<String, serde_json::Value>>;

/// Node `id`'s `/state`, if it answers within `timeout`.
pub async fn state<P: Platform + ?Sized>(
    p: &P,
    http: &reqwest::Client,
    id: &str,
    timeout: Duration,
) -> Option<AnyState> {
    let r = http
        .get(format!("{}/state", p.admin_url(id)))
        .timeout(timeout)
        .send()
        .await
        .ok()?;
    r.json::<AnyState>().await.ok()
}

/// Waits until every node in `ids` says it is ready (`/state`'s `ready`).
pub async fn wait_ready<P: Platform + ?Sized>(
    p: &P,
    http: &reqwest::Client,
    ids: &[String],
    within: Duration,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut waiting: Vec<&String> = ids.iter().collect();
    // Bounded by `within`.
    while t0.elapsed() < within {
        let mut still = Vec::new();
        for id in waiting {
            let ready = state(p, http, id, Duration::from_secs(1))
                .await
                .is_some_and(|s| s.ready);
            if !ready {
                still.push(id);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names: Vec<&str> = waiting.iter().map(|s| s.as_str()).collect();
    bail!(
        "the cluster did not come up within {within:?}: {} not ready",
        names.join(", ")
    )
}
