//! A cluster laid out for Kubernetes: the per-system overlay of `k8s/`
//! (`k8s/overlays/<system>/`), written by `faultline-chaos k8s` from a
//! template cluster file through the same layout code as local processes
//! and compose, committed, and checked against this generator by a test.
//!
//! The overlay holds what depends on the system: the cluster file and the
//! proxy config (a ConfigMap), the nodes (one StatefulSet whose pod `-N` is
//! the N-th node, a headless Service, and one ClusterIP Service per node so
//! the proxy reaches a node at an address that outlives its pods), the
//! proxy's Service with one UDP port per directed link, and the scenario the
//! CronJob runs, and the namespace, `faultline-<system>`, so that two
//! systems' clusters never share a volume, a Secret or a name. `k8s/base/`
//! holds the rest (certificates Job, proxy Deployment, CronJob), written by
//! hand.

use super::layout::{self, Layout, Plan};
use anyhow::Context;
use faultline_node::config::Cluster;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The namespace of a system's cluster.
pub fn namespace(system: &str) -> String {
    format!("faultline-{system}")
}
/// Every node's QUIC and admin ports inside its pod (each pod has its own
/// address, so they can all be the same), and its freezer's (the sidecar
/// that pauses it).
pub const NODE_PORT: u16 = 7100;
pub const ADMIN_PORT: u16 = 9100;
pub const FREEZER_PORT: u16 = 9101;
/// The scheduled runs' Service (k8s/base/schedule.yaml) and metrics port.
pub const SCHEDULE_SERVICE: &str = "faultline-schedule";
pub const SCHEDULE_PORT: u16 = 9095;
/// The proxy's Service, its control API and its first link port.
pub const PROXY_SERVICE: &str = "faultline-proxy";
pub const CONTROL_PORT: u16 = 9099;
const LINK_PORT_BASE: u16 = 20_000;

/// The cluster file and proxy config of `template` as its overlay deploys
/// them: every node at [`NODE_PORT`] and [`ADMIN_PORT`] in its own pod, every
/// dial through the proxy's Service, the template's seed and secret. The
/// `kubernetes` platform computes the same plan to find the deployed cluster.
pub fn plan(template: &Cluster) -> anyhow::Result<(Plan, Vec<u16>)> {
    let ids = template.ids();
    let any = |port: u16| SocketAddr::from(([0, 0, 0, 0], port));
    let mut links = BTreeMap::new();
    let mut port = LINK_PORT_BASE;
    for a in &ids {
        for b in &ids {
            if a != b {
                links.insert((a.clone(), b.clone()), (any(port), None));
                port = port
                    .checked_add(1)
                    .context("too many links for the proxy's ports")?;
            }
        }
    }
    let layout = Layout {
        listen: ids.iter().map(|i| (i.clone(), any(NODE_PORT))).collect(),
        admin: ids.iter().map(|i| (i.clone(), any(ADMIN_PORT))).collect(),
        links,
        control: any(CONTROL_PORT),
        tls_dir: PathBuf::from("/certs"),
        data_dir: PathBuf::from("/data"),
        base_dir: PathBuf::from("/etc/faultline"),
        reach: ids
            .iter()
            .map(|i| (i.clone(), format!("{}:{NODE_PORT}", node_service(i))))
            .collect(),
        proxy_host: Some(PROXY_SERVICE.into()),
    };
    let plan = layout::plan(
        template,
        template.file.seed,
        template.secret.clone(),
        &[],
        &layout,
    )?;
    Ok((plan, (LINK_PORT_BASE..port).collect()))
}

/// The overlay of `template`: `(file name, text)` pairs.
pub fn overlay(
    template: &Cluster,
    scenario: Option<&Path>,
) -> anyhow::Result<Vec<(String, String)>> {
    let system = template.file.system.clone();
    let ids = template.ids();
    let (plan, link_ports) = plan(template)?;
    let mut files: Vec<(String, String)> = plan
        .files()?
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
    // Files the system's section names relative to the template (standby:
    // its balances file) go beside the cluster file in both ConfigMaps.
    let base = base_files(template)?;
    files.extend(base.iter().cloned());
    let base_names: Vec<String> = base.iter().map(|(n, _)| n.clone()).collect();
    files.push((
        "namespace.yaml".into(),
        docs(&[json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": namespace(&system) },
        })])?,
    ));
    files.push(("nodes.yaml".into(), docs(&nodes(&ids))?));
    let ns = namespace(&system);
    let prometheus = super::scrape::config(
        template,
        "5s",
        // Prometheus reads rule files relative to its config.
        "../../../grafana/prometheus/alerts.yml",
        |id| format!("{}.{ns}.svc:{ADMIN_PORT}", node_service(id)),
        format!("{PROXY_SERVICE}.{ns}.svc:{CONTROL_PORT}"),
        format!("{SCHEDULE_SERVICE}.{ns}.svc:{SCHEDULE_PORT}"),
    );
    files.push((
        "prometheus.yml".into(),
        format!(
            "# Generated by `faultline-chaos k8s`; do not edit. Prometheus's scrape\n# configuration for this overlay's cluster, from anywhere in the cluster\n# (every target by its Service's name). Not a resource of the overlay.\n{}",
            serde_yaml::to_string(&prometheus)?
        ),
    ));
    files.push((
        "controller-rbac.yaml".into(),
        docs(&controller_rbac(ids.len()))?,
    ));
    files.push((
        "proxy-service.yaml".into(),
        docs(&[proxy_service(&link_ports)])?,
    ));
    let with_base = |first: &[&str]| -> Vec<String> {
        first
            .iter()
            .map(|f| f.to_string())
            .chain(base_names.iter().cloned())
            .collect()
    };
    let mut config_maps = vec![json!({
        "name": "faultline-cluster",
        "files": with_base(&["cluster.yaml", "proxy.yaml"]),
        "options": { "disableNameSuffixHash": true },
    })];
    if let Some(scenario) = scenario {
        files.push(("scenario.yaml".into(), scenario_text(scenario)?));
        files.push((
            "template.yaml".into(),
            std::fs::read_to_string(&template.path)
                .with_context(|| format!("cannot read {}", template.path.display()))?,
        ));
        config_maps.push(json!({
            "name": "faultline-scenario",
            "files": with_base(&["scenario.yaml", "template.yaml"]),
            "options": { "disableNameSuffixHash": true },
        }));
    }
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace(&system),
        "resources": ["namespace.yaml", "../../base", "nodes.yaml", "proxy-service.yaml", "controller-rbac.yaml"],
        "configMapGenerator": config_maps,
        "labels": [{ "pairs": { "faultline.system": system } }],
    });
    files.insert(
        0,
        (
            "kustomization.yaml".into(),
            format!(
                "# Generated by `faultline-chaos k8s --cluster clusters/{system}.yaml`; do not edit.\n# kubectl apply -k k8s/overlays/{system}\n{}",
                serde_yaml::to_string(&kustomization)?
            ),
        ),
    );
    Ok(files)
}

/// Every file of the template's base directory that is not YAML (cluster
/// and scenario files are): what a system's section may name by a relative
/// path. A YAML file it names would be missed; none does today.
fn base_files(template: &Cluster) -> anyhow::Result<Vec<(String, String)>> {
    let dir = template.base_dir();
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = e?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if path.is_file() && !yaml && !name.starts_with('.') {
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("cannot read {} (a ConfigMap holds text)", path.display())
            })?;
            out.push((name, text));
        }
    }
    out.sort();
    Ok(out)
}

/// The Service through which the proxy reaches node `id` (stable while its
/// pod is deleted and made again).
pub fn node_service(id: &str) -> String {
    format!("node-{}", id.to_ascii_lowercase())
}

/// The pod of the node at index `i` of the cluster file (the StatefulSet's
/// ordinal `i`).
pub fn pod_name(i: usize) -> String {
    format!("faultline-node-{i}")
}

/// The StatefulSet of every node, and the label its pods carry.
pub const STATEFULSET: &str = "faultline-node";
pub const NODE_SELECTOR: &str = "app.kubernetes.io/name=faultline-node";

/// The volume claim of the pod of ordinal `i` (the StatefulSet's claim
/// template `data`).
pub fn claim_name(i: usize) -> String {
    format!("data-{}", pod_name(i))
}

/// The node's container in its pod (the freezer is the other).
pub const NODE_CONTAINER: &str = "node";

/// The scenario the CronJob runs, its cluster being `template.yaml` beside it.
fn scenario_text(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = String::new();
    let mut replaced = false;
    for line in text.lines() {
        if line.starts_with("cluster:") {
            out.push_str("cluster: template.yaml\n");
            replaced = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    anyhow::ensure!(replaced, "{} names no cluster", path.display());
    Ok(out)
}

fn docs(objects: &[Value]) -> anyhow::Result<String> {
    let mut out = String::from("# Generated by `faultline-chaos k8s`; do not edit.\n");
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(o)?);
    }
    Ok(out)
}

fn image(what: &str) -> String {
    format!("faultline-{what}:{}", env!("CARGO_PKG_VERSION"))
}

/// The StatefulSet of every node, its headless Service, one Service per node.
fn nodes(ids: &[String]) -> Vec<Value> {
    let selector = json!({ "app.kubernetes.io/name": STATEFULSET });
    let mut out = vec![
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            // Labelled for the Prometheus operator's ServiceMonitor
            // (k8s/monitoring), which scrapes every pod behind it.
            "metadata": { "name": STATEFULSET, "labels": selector },
            "spec": {
                "clusterIP": "None",
                "selector": selector,
                "ports": [{ "name": "admin", "port": ADMIN_PORT, "protocol": "TCP" }],
            },
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": { "name": STATEFULSET },
            "spec": {
                "serviceName": STATEFULSET,
                "replicas": ids.len(),
                // Every node at once: peers wait for each other anyway.
                "podManagementPolicy": "Parallel",
                "selector": { "matchLabels": selector },
                "template": {
                    "metadata": {
                        "labels": selector,
                        "annotations": {
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": ADMIN_PORT.to_string(),
                            "prometheus.io/path": "/metrics",
                        },
                    },
                    "spec": {
                        // The freezer sidecar signals the node's process.
                        "shareProcessNamespace": true,
                        "containers": [{
                            "name": NODE_CONTAINER,
                            "image": image("node"),
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["run", "--cluster", "/etc/faultline/cluster.yaml", "--id-from-ordinal"],
                            "ports": [
                                { "name": "quic", "containerPort": NODE_PORT, "protocol": "UDP" },
                                { "name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP" },
                            ],
                            "readinessProbe": {
                                "httpGet": { "path": "/metrics", "port": "admin" },
                                "periodSeconds": 2,
                            },
                            "volumeMounts": [
                                { "name": "cluster", "mountPath": "/etc/faultline", "readOnly": true },
                                { "name": "certs", "mountPath": "/certs", "readOnly": true },
                                { "name": "data", "mountPath": "/data" },
                            ],
                        }, {
                            // Pauses the node (SIGSTOP under a lease) for the
                            // controller's `kubernetes` platform.
                            "name": "freezer",
                            "image": image("chaos"),
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["freezer", "--cluster", "/etc/faultline/cluster.yaml", "--listen", format!("0.0.0.0:{FREEZER_PORT}")],
                            "ports": [{ "name": "freezer", "containerPort": FREEZER_PORT, "protocol": "TCP" }],
                            "volumeMounts": [
                                { "name": "cluster", "mountPath": "/etc/faultline", "readOnly": true },
                            ],
                        }],
                        "volumes": [
                            { "name": "cluster", "configMap": { "name": "faultline-cluster" } },
                            { "name": "certs", "secret": { "secretName": "faultline-certs", "defaultMode": 0o400 } },
                        ],
                    },
                },
                // The durable log outlives a deleted pod (a kill).
                "volumeClaimTemplates": [{
                    "metadata": { "name": "data" },
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": { "requests": { "storage": "1Gi" } },
                    },
                }],
            },
        }),
    ];
    for (i, id) in ids.iter().enumerate() {
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": node_service(id), "labels": { "faultline.node": id } },
            "spec": {
                "selector": { "statefulset.kubernetes.io/pod-name": pod_name(i) },
                "ports": [
                    { "name": "quic", "port": NODE_PORT, "protocol": "UDP" },
                    { "name": "admin", "port": ADMIN_PORT, "protocol": "TCP" },
                    { "name": "freezer", "port": FREEZER_PORT, "protocol": "TCP" },
                ],
            },
        }));
    }
    out
}

/// The service account of the controller (the CronJob's runs on the
/// `kubernetes` platform) and what it may do: read the nodes' pods, delete
/// them (a kill), delete their volume claims and scale their StatefulSet (a
/// fresh cluster per run), each by name where Kubernetes allows names
/// (listing cannot be limited by name), and nothing else.
pub(crate) fn controller_rbac(n: usize) -> Vec<Value> {
    let pods: Vec<String> = (0..n).map(pod_name).collect();
    let claims: Vec<String> = (0..n).map(claim_name).collect();
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": { "name": CONTROLLER },
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": { "name": CONTROLLER },
            "rules": [
                { "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"] },
                { "apiGroups": [""], "resources": ["pods"], "verbs": ["delete"], "resourceNames": pods },
                { "apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "delete"], "resourceNames": claims },
                { "apiGroups": ["apps"], "resources": ["statefulsets/scale"], "verbs": ["patch"], "resourceNames": [STATEFULSET] },
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": { "name": CONTROLLER },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CONTROLLER },
            "subjects": [{ "kind": "ServiceAccount", "name": CONTROLLER }],
        }),
    ]
}

/// The controller's service account, Role and RoleBinding.
pub const CONTROLLER: &str = "faultline-chaos";

/// The proxy's Service: its control API and one UDP port per directed link.
fn proxy_service(link_ports: &[u16]) -> Value {
    let mut ports = vec![json!({ "name": "control", "port": CONTROL_PORT, "protocol": "TCP" })];
    ports.extend(
        link_ports
            .iter()
            .map(|p| json!({ "name": format!("l{p}"), "port": p, "protocol": "UDP" })),
    );
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": PROXY_SERVICE, "labels": { "app.kubernetes.io/name": PROXY_SERVICE } },
        "spec": {
            "selector": { "app.kubernetes.io/name": "faultline-proxy" },
            "ports": ports,
        },
    })
}

/// Writes the overlay of `template` into `dir`.
pub fn write(template: &Cluster, scenario: Option<&Path>, dir: &Path) -> anyhow::Result<()> {
    let files = overlay(template, scenario)?;
    let refs: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    layout::write_files(dir, &refs)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proxy::ProxyConfig;

    fn template() -> Cluster {
        let dir = std::env::temp_dir().join(format!("faultline-kube-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        template_in(&dir)
    }

    /// A cluster of three servers and a client, written into `dir`.
    pub(crate) fn template_in(dir: &Path) -> Cluster {
        let path = dir.join("c.yaml");
        std::fs::write(
            &path,
            "system: tokens\nsecret: s3cret-for-a-test\ntls: { dir: certs }\nnodes:\n  - { id: s1, role: server, listen: 127.0.0.1:7101, admin: 127.0.0.1:9101 }\n  - { id: s2, role: server, listen: 127.0.0.1:7102, admin: 127.0.0.1:9102 }\n  - { id: s3, role: server, listen: 127.0.0.1:7103, admin: 127.0.0.1:9103 }\n  - { id: c1, role: client, listen: 127.0.0.1:7201, admin: 127.0.0.1:9201 }\n",
        )
        .expect("write");
        crate::platform::local::load_template(&path).expect("template")
    }

    #[test]
    fn every_dial_goes_to_the_proxy_service_and_the_proxy_to_a_node_service() {
        let files: BTreeMap<String, String> = overlay(&template(), None)
            .expect("overlay")
            .into_iter()
            .collect();
        let proxy = ProxyConfig::from_yaml_str(&files["proxy.yaml"]).expect("proxy.yaml");
        assert_eq!(proxy.links.len(), 12);
        for l in &proxy.links {
            assert_eq!(l.target, format!("node-{}:7100", l.to), "{l:?}");
            assert_eq!(l.listen.ip().to_string(), "0.0.0.0");
        }
        let cluster = &files["cluster.yaml"];
        assert!(cluster.contains("faultline-proxy:20000"), "{cluster}");
        assert!(!cluster.contains("127.0.0.1"), "{cluster}");
        let nodes = &files["nodes.yaml"];
        assert!(
            nodes.contains("replicas: 4") && nodes.contains("faultline-node-3"),
            "{nodes}"
        );
        // The link ports the Service publishes are the proxy's.
        let svc = &files["proxy-service.yaml"];
        for l in &proxy.links {
            assert!(
                svc.contains(&format!("port: {}", l.listen.port())),
                "{}",
                l.listen
            );
        }
    }
}
