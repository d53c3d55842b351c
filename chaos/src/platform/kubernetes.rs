//! The `kubernetes` platform: a run against the cluster an overlay of `k8s/`
//! deployed (`kubectl apply -k k8s/overlays/<system>`), from a controller in
//! the cluster (the CronJob) or outside it with `FAULTLINE_KUBE_*` set.
//!
//! The cluster outlives the run. `up` makes it fresh (the StatefulSet scaled
//! to none, the nodes' volume claims deleted, scaled back), so every run
//! starts from the system's initial state as on the other platforms; `down`
//! leaves it running (the runner heals every fault first). Process
//! faults go through the Kubernetes API and the pod's freezer sidecar:
//! - kill: the pod is deleted with no grace period (SIGKILL to its
//!   containers); its StatefulSet makes it again at once, on the same volume
//!   claim, so a killed node comes back as soon as Kubernetes allows, not
//!   at the end of the kill's window. `start` waits for that new pod (a
//!   different uid) to be ready.
//! - pause and resume: `POST /freeze` and `/thaw` to the node's freezer
//!   (SIGSTOP and SIGCONT in the pod's shared process namespace), under a
//!   lease a task here renews while the pause lasts; a controller that dies
//!   stops renewing, and the node thaws by itself.
//!
//! Message and packet faults need nothing of the platform: the admin APIs of
//! the nodes and the proxy's control API, through their Services.

use super::kube::{
    self, ADMIN_PORT, CONTROL_PORT, FREEZER_PORT, NODE_CONTAINER, NODE_SELECTOR, PROXY_SERVICE,
    STATEFULSET,
};
use super::kube_api::{Kind, KubeApi, KubeError, Pod};
use super::Platform;
use crate::proxy::ProxyClient;
use anyhow::{bail, Context};
use faultline_node::config::{self, Certs, Cluster};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How long a pause's lease runs; it is renewed a third of that apart.
pub const PAUSE_LEASE: Duration = Duration::from_secs(30);

/// Where the controller reaches each node's admin API and freezer, and the
/// proxy's control API (base URLs, `http://host:port`).
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub admin: BTreeMap<String, String>,
    pub freezer: BTreeMap<String, String>,
    pub proxy: String,
}

impl Endpoints {
    /// Through the overlay's Services, from a pod in the cluster's namespace.
    pub fn services(ids: &[String]) -> Self {
        let at = |id: &str, port: u16| format!("http://{}:{port}", kube::node_service(id));
        Endpoints {
            admin: ids.iter().map(|i| (i.clone(), at(i, ADMIN_PORT))).collect(),
            freezer: ids
                .iter()
                .map(|i| (i.clone(), at(i, FREEZER_PORT)))
                .collect(),
            proxy: format!("http://{PROXY_SERVICE}:{CONTROL_PORT}"),
        }
    }
}

/// A deployed cluster as a [`Platform`].
pub struct KubeCluster {
    cluster: Cluster,
    api: KubeApi,
    endpoints: Endpoints,
    /// Node id to its pod.
    pods: BTreeMap<String, String>,
    proxy: ProxyClient,
    http: reqwest::Client,
    /// Nodes killed and not yet seen back: the uid of the pod deleted.
    killed: BTreeMap<String, String>,
    /// Nodes paused: the task renewing the freeze's lease.
    paused: BTreeMap<String, JoinHandle<()>>,
    /// How long `start` and `up` wait for a pod to serve.
    pub start_within: Duration,
    /// A pause's lease ([`PAUSE_LEASE`]), renewed a third of it apart.
    pub pause_lease: Duration,
}

/// The cluster that `k8s/overlays/<system>` deploys for `template`: the same
/// plan the generator wrote, read back as a cluster (its secret is the
/// template's).
pub fn deployed_cluster(template: &Cluster) -> anyhow::Result<Cluster> {
    let (plan, _) = kube::plan(template)?;
    let mut file = plan.file;
    // The nodes' paths are the pod's; the controller reads the system's
    // files where the template has them.
    file.base_dir = Some(template.base_dir());
    let text = file.to_yaml()?;
    config::parse(&template.path, &text, Certs::NotYet).map_err(|e| anyhow::anyhow!("{e}"))
}

impl KubeCluster {
    pub fn new(cluster: Cluster, api: KubeApi, endpoints: Endpoints) -> anyhow::Result<Self> {
        let ids = cluster.ids();
        for id in &ids {
            anyhow::ensure!(
                endpoints.admin.contains_key(id) && endpoints.freezer.contains_key(id),
                "no admin or freezer endpoint for node {id}"
            );
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let proxy = ProxyClient::new(
            http.clone(),
            endpoints.proxy.clone(),
            cluster.secret.clone(),
        );
        Ok(KubeCluster {
            pods: ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), kube::pod_name(i)))
                .collect(),
            cluster,
            api,
            endpoints,
            proxy,
            http,
            killed: BTreeMap::new(),
            paused: BTreeMap::new(),
            start_within: Duration::from_secs(180),
            pause_lease: PAUSE_LEASE,
        })
    }

    fn pod(&self, id: &str) -> anyhow::Result<&str> {
        self.pods
            .get(id)
            .map(String::as_str)
            .with_context(|| format!("{id:?} is not a node of this cluster"))
    }

    /// Node `id`'s pod, if it serves (and, after a kill, is not the pod
    /// that was deleted).
    async fn serving(&self, id: &str) -> anyhow::Result<Option<Pod>> {
        let pod = self.api.get_pod(self.pod(id)?).await?;
        Ok(pod
            .filter(|p| p.serving(NODE_CONTAINER) && self.killed.get(id) != Some(&p.metadata.uid)))
    }

    /// Sends `POST /freeze` or `/thaw` to node `id`'s freezer.
    async fn freezer(&self, id: &str, verb: &str) -> anyhow::Result<()> {
        let url = format!("{}/{verb}", self.freezer_url(id)?);
        let req = self.http.post(&url).bearer_auth(&self.cluster.secret);
        let req = if verb == "freeze" {
            req.json(&serde_json::json!({ "lease_ms": self.pause_lease.as_millis() as u64 }))
        } else {
            req
        };
        let r = req
            .send()
            .await
            .with_context(|| format!("cannot reach {id}'s freezer at {url}"))?;
        if !r.status().is_success() {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            bail!("{id}'s freezer answered {status} to {verb}: {body}");
        }
        Ok(())
    }

    /// Polls `done` until it holds, for at most `start_within`.
    async fn wait_until<'a, F, Fut>(&'a self, what: &str, done: F) -> anyhow::Result<()>
    where
        F: Fn(&'a Self) -> Fut,
        Fut: std::future::Future<Output = Result<bool, KubeError>> + 'a,
    {
        let t0 = Instant::now();
        // Bounded by `start_within`.
        loop {
            if done(self).await? {
                return Ok(());
            }
            if t0.elapsed() > self.start_within {
                bail!("waited {:?} until {what}, in vain", self.start_within);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn freezer_url(&self, id: &str) -> anyhow::Result<&str> {
        self.endpoints
            .freezer
            .get(id)
            .map(String::as_str)
            .with_context(|| format!("{id:?} is not a node of this cluster"))
    }
}

impl Platform for KubeCluster {
    fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    fn admin_url(&self, id: &str) -> String {
        self.endpoints.admin.get(id).cloned().unwrap_or_default()
    }

    fn describe(&self, id: &str) -> String {
        self.pods
            .get(id)
            .map(|p| format!("pod {}/{p}", self.api.namespace()))
            .unwrap_or_default()
    }

    fn proxy(&self) -> Option<&ProxyClient> {
        Some(&self.proxy)
    }

    /// Resumes a paused node; after a kill, waits for the StatefulSet's new
    /// pod to serve (bounded by `start_within`).
    async fn start(&mut self, id: &str) -> anyhow::Result<()> {
        if self.paused.contains_key(id) {
            return self.resume(id).await;
        }
        let t0 = Instant::now();
        let mut last = String::from("no answer yet");
        // Bounded by `start_within`.
        while t0.elapsed() < self.start_within {
            match self.serving(id).await {
                Ok(Some(_)) => {
                    self.killed.remove(id);
                    return Ok(());
                }
                Ok(None) => last = "not serving yet".into(),
                // Forbidden or unauthorized will not change by waiting.
                Err(e) if is_permanent(&e) => return Err(e),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!(
            "{id}'s pod {} did not serve again within {:?} ({last})",
            self.pod(id)?,
            self.start_within
        )
    }

    async fn kill(&mut self, id: &str) -> anyhow::Result<()> {
        // The renewals stop; the pod's deletion ends the freeze anyway.
        if let Some(task) = self.paused.remove(id) {
            task.abort();
        }
        let pod = self.pod(id)?.to_string();
        let Some(current) = self.api.get_pod(&pod).await? else {
            // Already gone: its StatefulSet is making it again.
            return Ok(());
        };
        self.api.delete_now(Kind::Pod, &pod).await?;
        self.killed.insert(id.to_string(), current.metadata.uid);
        Ok(())
    }

    async fn pause(&mut self, id: &str) -> anyhow::Result<()> {
        if self.paused.contains_key(id) {
            return Ok(());
        }
        self.freezer(id, "freeze").await?;
        let url = format!("{}/freeze", self.freezer_url(id)?);
        let (http, secret) = (self.http.clone(), self.cluster.secret.clone());
        let node = id.to_string();
        let lease = self.pause_lease;
        // Renews until resume or kill aborts it, or the controller exits.
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                let r = http
                    .post(&url)
                    .bearer_auth(&secret)
                    .json(&serde_json::json!({ "lease_ms": lease.as_millis() as u64 }))
                    .send()
                    .await;
                if let Err(e) = r.and_then(|r| r.error_for_status()) {
                    tracing::warn!(node, error = %e, "cannot renew the pause's lease");
                }
            }
        });
        self.paused.insert(id.to_string(), task);
        Ok(())
    }

    async fn resume(&mut self, id: &str) -> anyhow::Result<()> {
        if let Some(task) = self.paused.remove(id) {
            task.abort();
        }
        self.freezer(id, "thaw").await
    }

    async fn is_running(&mut self, id: &str) -> bool {
        self.serving(id).await.is_ok_and(|p| p.is_some())
    }

    /// Thaws every node (a thaw of a node not frozen is a no-op, so one the
    /// controller lost track of is thawed too) and waits for every pod.
    async fn heal_processes(&mut self) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        for id in self.cluster.ids() {
            // A pod being remade has no freezer to ask yet: wait for it first.
            if let Err(e) = self.start(&id).await {
                errors.push(format!("{e:#}"));
                continue;
            }
            if let Err(e) = self.resume(&id).await {
                errors.push(format!("{e:#}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("{}", errors.join("; "))
        }
    }

    /// Makes the deployed cluster fresh, as every other platform starts a
    /// run: the StatefulSet scaled to none, every node's volume claim
    /// deleted, scaled back, and every pod waited for. A run's checks start
    /// from the system's initial state, not from the last run's.
    async fn up(&mut self) -> anyhow::Result<()> {
        let hint = format!(
            "is the cluster deployed? kubectl apply -k k8s/overlays/{}",
            self.cluster.file.system
        );
        let deployed = |e: anyhow::Error| e.context(hint.clone());
        let n = self.cluster.nodes.len();
        for (_, task) in std::mem::take(&mut self.paused) {
            task.abort();
        }
        self.killed.clear();
        self.api
            .scale(STATEFULSET, 0)
            .await
            .map_err(|e| deployed(e.into()))?;
        self.wait_until("every node's pod is gone", |k| async move {
            Ok(k.api.list_pods(NODE_SELECTOR).await?.is_empty())
        })
        .await?;
        for i in 0..n {
            self.api
                .delete_now(Kind::PersistentVolumeClaim, &kube::claim_name(i))
                .await?;
        }
        self.wait_until("every node's volume claim is gone", |k| async move {
            for i in 0..n {
                if k.api
                    .exists(Kind::PersistentVolumeClaim, &kube::claim_name(i))
                    .await?
                {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await?;
        self.api.scale(STATEFULSET, n).await?;
        for id in self.cluster.ids() {
            self.start(&id).await.map_err(deployed)?;
        }
        Ok(())
    }

    /// The cluster stays: it was there before the run.
    async fn down(&mut self) {
        for (_, task) in std::mem::take(&mut self.paused) {
            task.abort();
        }
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        for task in self.paused.values() {
            task.abort();
        }
    }
}

fn is_permanent(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<KubeError>(),
        Some(KubeError::Forbidden { .. } | KubeError::Unauthorized { .. } | KubeError::Config(_))
    )
}

#[cfg(test)]
mod tests;
