//! The `kubernetes` platform against a fake API server: the requests it
//! sends (paths, verbs, bearer token, grace period, scale patches, in the
//! order a real StatefulSet needs), the answers it handles (a pod being
//! deleted, one remade under the same name, 401, 403, garbage, no server),
//! and the faults it heals, including when the controller dies mid-pause.
//! The fake plays the StatefulSet controller and the volume claims'
//! protection finalizer; the freezer is the real one, freezing real
//! processes.

use super::*;
use crate::freezer;
use crate::freezer::tests::settles;
use crate::platform::kube_api::ApiConfig;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};

const NS: &str = "faultline-tokens";
const TOKEN: &str = "sa-token-1";

#[derive(Clone, Debug)]
struct FakePod {
    uid: String,
    /// When it turns Running and ready.
    ready_at: Instant,
    /// Set by a delete; the pod disappears at that time.
    gone_at: Option<Instant>,
}

#[derive(Default)]
struct Fake {
    replicas: usize,
    pods: BTreeMap<usize, FakePod>,
    /// Claim name to (generation, terminating).
    claims: BTreeMap<String, (u32, bool)>,
    generation: u32,
    next_uid: u32,
    /// `(method, path?query, authorization)` in order.
    requests: Vec<(String, String, String)>,
    /// `(verb, plural)` the service account may not do.
    forbid: BTreeSet<(String, String)>,
    /// The rules of a Role, enforced as RBAC would (`None`: everything but
    /// `forbid` is allowed).
    rbac: Option<Vec<Value>>,
    /// Answer garbage to every GET of a pod.
    garbage: bool,
    /// How long a deleted pod lingers, and a new one takes to be ready.
    linger: Duration,
    boot: Duration,
}

impl Fake {
    /// The StatefulSet controller and the claims' protection, one step.
    fn reconcile(&mut self) {
        let now = Instant::now();
        self.pods.retain(|_, p| p.gone_at.is_none_or(|t| now < t));
        let replicas = self.replicas;
        let removed: Vec<usize> = self
            .pods
            .keys()
            .copied()
            .filter(|i| *i >= replicas)
            .collect();
        for i in removed {
            let p = self.pods.get_mut(&i).expect("listed");
            if p.gone_at.is_none() {
                p.gone_at = Some(now + self.linger);
            }
        }
        // A terminating claim goes once no pod uses it.
        let used: BTreeSet<String> = self.pods.keys().map(|i| kube::claim_name(*i)).collect();
        self.claims
            .retain(|name, (_, terminating)| !*terminating || used.contains(name));
        for i in 0..replicas {
            if !self.pods.contains_key(&i) {
                let claim = kube::claim_name(i);
                if self.claims.get(&claim).is_some_and(|c| c.1) {
                    continue; // a real StatefulSet would wait too
                }
                if !self.claims.contains_key(&claim) {
                    self.generation += 1;
                    self.claims.insert(claim, (self.generation, false));
                }
                self.next_uid += 1;
                self.pods.insert(
                    i,
                    FakePod {
                        uid: format!("uid-{}", self.next_uid),
                        ready_at: now + self.boot,
                        gone_at: None,
                    },
                );
            }
        }
    }

    fn pod_json(&self, i: usize) -> Value {
        let p = &self.pods[&i];
        let now = Instant::now();
        let ready = now >= p.ready_at;
        let mut meta = json!({ "name": kube::pod_name(i), "uid": p.uid, "namespace": NS });
        if p.gone_at.is_some() {
            meta["deletionTimestamp"] = json!("2026-12-01T10:00:00Z");
        }
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": { "containers": [{ "name": "node" }, { "name": "freezer" }] },
            "status": {
                "phase": if ready { "Running" } else { "Pending" },
                "containerStatuses": [
                    { "name": "node", "ready": ready, "restartCount": 0, "image": "x" },
                    { "name": "freezer", "ready": ready, "restartCount": 0 },
                ],
            },
        })
    }
}

type Shared = Arc<Mutex<Fake>>;

fn status(code: StatusCode, message: &str) -> Response {
    (
        code,
        Json(json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code.as_u16() })),
    )
        .into_response()
}

/// Authentication, namespace and RBAC as the API server checks them; the
/// request is recorded either way.
fn admit(
    fake: &Shared,
    method: &Method,
    full: String,
    headers: &HeaderMap,
    ns: &str,
    resource: &str,
    name: Option<&str>,
) -> Result<(), Box<Response>> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut f = fake.lock().expect("fake");
    f.requests.push((method.to_string(), full, auth.clone()));
    if auth != format!("Bearer {TOKEN}") {
        return Err(Box::new(status(StatusCode::UNAUTHORIZED, "Unauthorized")));
    }
    let verb = match *method {
        Method::GET if name.is_none() => "list",
        Method::GET => "get",
        Method::DELETE => "delete",
        Method::PATCH => "patch",
        _ => "other",
    };
    let plural = resource.split('/').next().unwrap_or(resource);
    let refused = match &f.rbac {
        Some(rules) => !rules.iter().any(|r| {
            let has = |key: &str, want: &str| {
                r[key]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == want))
            };
            has("resources", resource)
                && has("verbs", verb)
                && match (r["resourceNames"].as_array(), name) {
                    (None, _) => true,
                    (Some(names), Some(n)) => names.iter().any(|v| v == n),
                    (Some(_), None) => false,
                }
        }),
        None => f.forbid.contains(&(verb.to_string(), plural.to_string())),
    };
    if ns != NS || refused {
        return Err(Box::new(status(
            StatusCode::FORBIDDEN,
            &format!("{plural} is forbidden: User \"system:serviceaccount:{NS}:faultline-chaos\" cannot {verb} resource \"{plural}\" in namespace \"{ns}\""),
        )));
    }
    f.reconcile();
    Ok(())
}

fn with_query(path: &str, query: &Option<String>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

fn ordinal(name: &str) -> Option<usize> {
    name.strip_prefix("faultline-node-")?.parse().ok()
}

async fn pod(
    State(fake): State<Shared>,
    method: Method,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
    if let Err(r) = admit(
        &fake,
        &method,
        with_query(&path, &query),
        &headers,
        &ns,
        "pods",
        Some(&name),
    ) {
        return *r;
    }
    let mut f = fake.lock().expect("fake");
    let Some(i) = ordinal(&name).filter(|i| f.pods.contains_key(i)) else {
        return status(StatusCode::NOT_FOUND, &format!("pods \"{name}\" not found"));
    };
    if method == Method::DELETE {
        let linger = f.linger;
        let p = f.pods.get_mut(&i).expect("checked");
        p.gone_at.get_or_insert(Instant::now() + linger);
        return Json(f.pod_json(i)).into_response();
    }
    if f.garbage {
        return (StatusCode::OK, "<html>not a pod</html>").into_response();
    }
    Json(f.pod_json(i)).into_response()
}

async fn pods(
    State(fake): State<Shared>,
    method: Method,
    UrlPath(ns): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let path = format!("/api/v1/namespaces/{ns}/pods");
    if let Err(r) = admit(
        &fake,
        &method,
        with_query(&path, &query),
        &headers,
        &ns,
        "pods",
        None,
    ) {
        return *r;
    }
    assert_eq!(
        query.as_deref(),
        Some("labelSelector=app.kubernetes.io/name%3Dfaultline-node"),
        "the platform lists the node pods by their label"
    );
    let f = fake.lock().expect("fake");
    let items: Vec<Value> = f.pods.keys().map(|i| f.pod_json(*i)).collect();
    Json(json!({ "kind": "PodList", "items": items })).into_response()
}

async fn claim(
    State(fake): State<Shared>,
    method: Method,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let path = format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}");
    if let Err(r) = admit(
        &fake,
        &method,
        with_query(&path, &query),
        &headers,
        &ns,
        "persistentvolumeclaims",
        Some(&name),
    ) {
        return *r;
    }
    let mut f = fake.lock().expect("fake");
    let Some(c) = f.claims.get_mut(&name) else {
        return status(StatusCode::NOT_FOUND, "not found");
    };
    if method == Method::DELETE {
        c.1 = true;
    }
    Json(json!({ "kind": "PersistentVolumeClaim", "metadata": { "name": name } })).into_response()
}

async fn scale(
    State(fake): State<Shared>,
    method: Method,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/apis/apps/v1/namespaces/{ns}/statefulsets/{name}/scale");
    if let Err(r) = admit(
        &fake,
        &method,
        with_query(&path, &query),
        &headers,
        &ns,
        "statefulsets/scale",
        Some(&name),
    ) {
        return *r;
    }
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/merge-patch+json")
    );
    assert_eq!(name, kube::STATEFULSET);
    let v: Value = serde_json::from_slice(&body).expect("a JSON patch");
    let n = v["spec"]["replicas"].as_u64().expect("spec.replicas") as usize;
    let mut f = fake.lock().expect("fake");
    f.replicas = n;
    f.reconcile();
    Json(json!({ "kind": "Scale", "spec": { "replicas": n } })).into_response()
}

/// The fake API server, with `n` pods up and their claims (generation 1..).
async fn fake_api(n: usize) -> (String, Shared) {
    let fake: Shared = Arc::new(Mutex::new(Fake {
        linger: Duration::from_millis(300),
        boot: Duration::from_millis(300),
        ..Fake::default()
    }));
    {
        let mut f = fake.lock().expect("fake");
        f.replicas = n;
        f.reconcile();
        for p in f.pods.values_mut() {
            p.ready_at = Instant::now();
        }
    }
    let app = Router::new()
        .route("/api/v1/namespaces/{ns}/pods/{name}", get(pod).delete(pod))
        .route("/api/v1/namespaces/{ns}/pods", get(pods))
        .route(
            "/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}",
            get(claim).delete(claim),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/statefulsets/{name}/scale",
            patch(scale),
        )
        .with_state(fake.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (url, fake)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("faultline-kubeplat-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn template(dir: &std::path::Path) -> Cluster {
    kube::tests::template_in(dir)
}

/// One node's stand-in process (`sleep`) and its real freezer.
struct Sleeper {
    child: Child,
    target: freezer::Target,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGCONT,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn sleeper(secret: &str) -> (String, Sleeper) {
    let (child, target) = crate::freezer::tests::spawn_sleeper();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(freezer::serve(
        l,
        target.clone(),
        secret.to_string(),
        async move {
            let _ = rx.await;
        },
    ));
    (
        url,
        Sleeper {
            child,
            target,
            _stop: tx,
        },
    )
}

struct Setup {
    kube: KubeCluster,
    fake: Shared,
    sleepers: Vec<Sleeper>,
    _dir: PathBuf,
}

async fn setup(name: &str) -> Setup {
    let dir = scratch(name);
    let deployed = deployed_cluster(&template(&dir)).expect("deployed");
    let (url, fake) = fake_api(deployed.nodes.len()).await;
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    let api = KubeApi::new(ApiConfig {
        server: url,
        namespace: NS.into(),
        token_file: Some(token),
        ca_file: None,
        timeout: Duration::from_secs(3),
    })
    .expect("api");
    let mut endpoints = Endpoints::services(&deployed.ids());
    let mut sleepers = Vec::new();
    for id in deployed.ids().iter() {
        let (url, s) = sleeper(&deployed.secret).await;
        endpoints.freezer.insert(id.clone(), url);
        sleepers.push(s);
    }
    let mut kube = KubeCluster::new(deployed, api, endpoints).expect("platform");
    kube.start_within = Duration::from_secs(10);
    kube.pause_lease = Duration::from_millis(600);
    Setup {
        kube,
        fake,
        sleepers,
        _dir: dir,
    }
}

fn uid(fake: &Shared, i: usize) -> Option<String> {
    fake.lock()
        .expect("fake")
        .pods
        .get(&i)
        .map(|p| p.uid.clone())
}

#[test]
fn the_deployed_cluster_is_the_overlays() {
    let dir = scratch("plan");
    let t = template(&dir);
    let deployed = deployed_cluster(&t).expect("deployed");
    let files: BTreeMap<String, String> = kube::overlay(&t, None)
        .expect("overlay")
        .into_iter()
        .collect();
    let overlay = faultline_node::config::parse(
        &dir.join("cluster.yaml"),
        &files["cluster.yaml"],
        Certs::NotYet,
    )
    .expect("the overlay's cluster file");
    assert_eq!(deployed.secret, t.secret);
    assert_eq!(deployed.ids(), overlay.ids());
    for (a, b) in deployed.nodes.iter().zip(&overlay.nodes) {
        assert_eq!((&a.id, &a.role), (&b.id, &b.role));
    }
    assert_eq!(deployed.file.seed, overlay.file.seed);
    let e = Endpoints::services(&deployed.ids());
    assert_eq!(e.admin["s1"], "http://node-s1:9100");
    assert_eq!(e.freezer["c1"], "http://node-c1:9101");
    assert_eq!(e.proxy, "http://faultline-proxy:9099");
}

#[tokio::test]
async fn kill_deletes_the_pod_and_start_waits_for_the_one_remade() {
    let mut s = setup("kill").await;
    let before = uid(&s.fake, 1).expect("pod 1");
    assert!(s.kube.is_running("s2").await);
    s.kube.kill("s2").await.expect("kill");
    {
        let f = s.fake.lock().expect("fake");
        let (method, path, auth) = f.requests.last().expect("a request");
        assert_eq!(method, "DELETE");
        assert_eq!(
            path,
            "/api/v1/namespaces/faultline-tokens/pods/faultline-node-1?gracePeriodSeconds=0"
        );
        assert_eq!(auth, &format!("Bearer {TOKEN}"));
    }
    // Still listed while it terminates, but not running any more.
    assert!(!s.kube.is_running("s2").await);
    let t0 = Instant::now();
    s.kube.start("s2").await.expect("start");
    let after = uid(&s.fake, 1).expect("pod 1 again");
    assert_ne!(before, after, "start returned before the pod was remade");
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "start did not wait for the new pod to be ready ({:?})",
        t0.elapsed()
    );
    assert!(s.kube.is_running("s2").await);
    // The others were never touched.
    let f = s.fake.lock().expect("fake");
    assert_eq!(
        f.requests.iter().filter(|r| r.0 == "DELETE").count(),
        1,
        "{:?}",
        f.requests
    );
}

#[tokio::test]
async fn up_starts_every_run_on_fresh_volumes() {
    let mut s = setup("up").await;
    let claims_before: Vec<u32> = s
        .fake
        .lock()
        .expect("fake")
        .claims
        .values()
        .map(|c| c.0)
        .collect();
    let uids_before: Vec<Option<String>> = (0..4).map(|i| uid(&s.fake, i)).collect();
    s.kube.up().await.expect("up");
    let f = s.fake.lock().expect("fake");
    let claims_after: Vec<u32> = f.claims.values().map(|c| c.0).collect();
    assert_eq!(claims_after.len(), 4);
    for (a, b) in claims_before.iter().zip(&claims_after) {
        assert!(
            b > a,
            "claim generation {a} -> {b}: the volume was not made anew"
        );
    }
    for (i, before) in uids_before.iter().enumerate() {
        assert_ne!(f.pods.get(&i).map(|p| p.uid.clone()), *before);
    }
    // Scaled to none before any claim is deleted, back after all are gone.
    let steps: Vec<String> = f
        .requests
        .iter()
        .filter(|r| r.0 != "GET")
        .map(|r| format!("{} {}", r.0, r.1.rsplit('/').next().unwrap_or("")))
        .collect();
    assert_eq!(
        steps,
        [
            "PATCH scale",
            "DELETE data-faultline-node-0?gracePeriodSeconds=0",
            "DELETE data-faultline-node-1?gracePeriodSeconds=0",
            "DELETE data-faultline-node-2?gracePeriodSeconds=0",
            "DELETE data-faultline-node-3?gracePeriodSeconds=0",
            "PATCH scale",
        ]
    );
    assert_eq!(f.replicas, 4);
}

/// The overlay's Role for the controller is enough for everything the
/// platform does, by name where it names objects.
#[tokio::test]
async fn the_overlays_role_allows_what_the_platform_does() {
    let mut s = setup("rbac").await;
    let role = kube::controller_rbac(4)
        .into_iter()
        .find(|o| o["kind"] == "Role")
        .expect("a Role");
    let rules = role["rules"].as_array().expect("rules").clone();
    s.fake.lock().expect("fake").rbac = Some(rules);
    s.kube.up().await.expect("up under the Role");
    s.kube.kill("c1").await.expect("kill under the Role");
    s.kube.start("c1").await.expect("start under the Role");
    s.kube.heal_processes().await.expect("heal under the Role");
    // And nothing more: another pod of the namespace may not be deleted.
    let e = s
        .kube
        .api
        .delete_now(Kind::Pod, "faultline-proxy-7d9c")
        .await
        .expect_err("outside the Role");
    assert!(e.to_string().contains("may not delete pods"), "{e}");
}

#[tokio::test]
async fn pause_holds_a_renewed_lease_and_heal_thaws() {
    let mut s = setup("pause").await;
    let pid = s.sleepers[0].child.id();
    s.kube.pause("s1").await.expect("pause");
    assert!(settles(&s.sleepers[0].target, pid, true).await);
    // Three leases long: the renewals keep it frozen.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    assert!(
        s.sleepers[0].target.stopped(pid),
        "the lease was not renewed"
    );
    assert!(s.kube.is_running("s1").await, "paused counts as running");
    s.kube.heal_processes().await.expect("heal");
    assert!(
        settles(&s.sleepers[0].target, pid, false).await,
        "heal left s1 frozen"
    );

    // A controller that dies mid-pause: nobody renews, the node thaws by itself.
    let pid2 = s.sleepers[1].child.id();
    s.kube.pause("s2").await.expect("pause");
    assert!(settles(&s.sleepers[1].target, pid2, true).await);
    drop(s.kube);
    let t0 = Instant::now();
    while s.sleepers[1].target.stopped(pid2) && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !s.sleepers[1].target.stopped(pid2),
        "the controller is gone and s2 stayed frozen"
    );
}

#[tokio::test]
async fn a_refusal_is_a_clear_error_and_changes_nothing() {
    let mut s = setup("refuse").await;
    s.fake
        .lock()
        .expect("fake")
        .forbid
        .insert(("delete".into(), "pods".into()));
    let before = uid(&s.fake, 0);
    let e = format!("{:#}", s.kube.kill("s1").await.expect_err("forbidden"));
    assert!(
        e.contains("may not delete pods in namespace faultline-tokens")
            && e.contains("Role faultline-chaos"),
        "{e}"
    );
    assert_eq!(uid(&s.fake, 0), before);
    // A start that can never succeed says so at once, not after the wait.
    s.fake
        .lock()
        .expect("fake")
        .forbid
        .insert(("get".into(), "pods".into()));
    let t0 = Instant::now();
    let e = format!("{:#}", s.kube.start("s1").await.expect_err("forbidden"));
    assert!(e.contains("may not get pods"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    // A token the server does not take.
    let dir = scratch("refuse-token");
    let token = dir.join("token");
    std::fs::write(&token, "stale").expect("token");
    let (url, _fake) = fake_api(3).await;
    let api = KubeApi::new(ApiConfig {
        server: url,
        namespace: NS.into(),
        token_file: Some(token),
        ca_file: None,
        timeout: Duration::from_secs(3),
    })
    .expect("api");
    let e = api.get_pod("faultline-node-0").await.expect_err("401");
    assert!(
        e.to_string().contains("refused the credentials (401)"),
        "{e}"
    );
}

#[tokio::test]
async fn garbage_and_silence_are_errors_not_panics() {
    let mut s = setup("garbage").await;
    s.fake.lock().expect("fake").garbage = true;
    let e = s
        .kube
        .api
        .get_pod("faultline-node-0")
        .await
        .expect_err("garbage");
    assert!(e.to_string().contains("not what was asked"), "{e}");
    assert!(!s.kube.is_running("s1").await);
    // No API server at all: a bounded transport error.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    let api = KubeApi::new(ApiConfig {
        server: format!("http://127.0.0.1:{port}"),
        namespace: NS.into(),
        token_file: None,
        ca_file: None,
        timeout: Duration::from_secs(2),
    })
    .expect("api");
    let e = api
        .get_pod("faultline-node-0")
        .await
        .expect_err("no server");
    assert!(e.to_string().contains("cannot reach the API server"), "{e}");
}

#[test]
fn in_cluster_configuration_comes_from_the_service_account() {
    let dir = scratch("sa");
    std::fs::write(dir.join("namespace"), "faultline-standby\n").expect("ns");
    std::fs::write(dir.join("token"), "t").expect("token");
    std::fs::write(dir.join("ca.crt"), "x").expect("ca");
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(a, _)| *a == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let c = ApiConfig::from_lookup(
        env(&[
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ]),
        &dir,
    )
    .expect("in cluster");
    assert_eq!(c.server, "https://10.96.0.1:443");
    assert_eq!(c.namespace, "faultline-standby");
    assert_eq!(c.token_file, Some(dir.join("token")));
    assert_eq!(c.ca_file, Some(dir.join("ca.crt")));
    let c = ApiConfig::from_lookup(
        env(&[
            ("KUBERNETES_SERVICE_HOST", "fd00::1"),
            ("KUBERNETES_SERVICE_PORT", "6443"),
        ]),
        &dir,
    )
    .expect("ipv6");
    assert_eq!(c.server, "https://[fd00::1]:6443");
    let c = ApiConfig::from_lookup(
        env(&[
            ("FAULTLINE_KUBE_API", "http://127.0.0.1:8001/"),
            ("FAULTLINE_KUBE_NAMESPACE", "other"),
        ]),
        &dir,
    )
    .expect("overrides");
    assert_eq!(
        (c.server.as_str(), c.namespace.as_str()),
        ("http://127.0.0.1:8001", "other")
    );
    let e = ApiConfig::from_lookup(env(&[]), &dir).expect_err("outside a pod");
    assert!(e.to_string().contains("FAULTLINE_KUBE_API"), "{e}");
    let empty = scratch("sa-empty");
    let e = ApiConfig::from_lookup(env(&[("FAULTLINE_KUBE_API", "http://x")]), &empty)
        .expect_err("no namespace");
    assert!(e.to_string().contains("FAULTLINE_KUBE_NAMESPACE"), "{e}");
    // https with a CA that is not a certificate: refused before any request.
    let Err(e) = KubeApi::new(ApiConfig {
        server: "https://10.96.0.1:443".into(),
        namespace: "n".into(),
        token_file: None,
        ca_file: Some(dir.join("ca.crt")),
        timeout: Duration::from_secs(1),
    }) else {
        panic!("a CA file with no certificate was taken");
    };
    assert!(e.to_string().contains("no certificate"), "{e}");
}

/// A TLS server answering one pod to one request, with a certificate for
/// `localhost` from a CA in `certs`.
fn tls_server(certs: &std::path::Path) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{Read, Write};
    let cert = CertificateDer::from_pem_file(certs.join("localhost.pem")).expect("cert");
    let key = PrivateKeyDer::from_pem_file(certs.join("localhost.key")).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config"),
    );
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        // Two connections at most: the test makes two requests.
        for stream in l.incoming().take(2) {
            let Ok(mut tcp) = stream else { continue };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let Ok(mut conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            if got.is_empty() {
                continue;
            }
            let body = r#"{"metadata":{"name":"faultline-node-0","uid":"u1"},"status":{"phase":"Running","containerStatuses":[{"name":"node","ready":true}]}}"#;
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    port
}

#[tokio::test]
async fn https_trusts_the_clusters_ca_and_nothing_else() {
    let dir = scratch("tls");
    faultline_node::transport::tls::generate_for(&["localhost".to_string()], &dir.join("right"))
        .expect("certs");
    faultline_node::transport::tls::generate_for(&["localhost".to_string()], &dir.join("wrong"))
        .expect("certs");
    let port = tls_server(&dir.join("right"));
    let api = |ca: &str| {
        KubeApi::new(ApiConfig {
            server: format!("https://localhost:{port}"),
            namespace: NS.into(),
            token_file: None,
            ca_file: Some(dir.join(ca).join("ca.pem")),
            timeout: Duration::from_secs(5),
        })
        .expect("api")
    };
    let e = api("wrong")
        .get_pod("faultline-node-0")
        .await
        .expect_err("an unknown CA must be refused");
    assert!(e.to_string().contains("cannot reach the API server"), "{e}");
    let p = api("right")
        .get_pod("faultline-node-0")
        .await
        .expect("the cluster's CA")
        .expect("a pod");
    assert!(p.serving("node"));
}
