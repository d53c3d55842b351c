//! The few Kubernetes API calls the `kubernetes` platform makes, as plain
//! HTTPS with the pod's service account, in one namespace: read, list and
//! delete pods, delete volume claims, scale a StatefulSet. So few calls do
//! not justify the `kube` crate and its generated types (a large share of
//! the controller's build); what is read of a pod is typed here, and the
//! rest of every object is ignored.
//!
//! Configuration follows what every in-cluster client does (client-go's
//! `rest.InClusterConfig`): the API server at `KUBERNETES_SERVICE_HOST` and
//! `_PORT`, the bearer token, CA and namespace from
//! `/var/run/secrets/kubernetes.io/serviceaccount/`. The token file is read
//! again for every request, because the kubelet rotates bound tokens under a
//! running pod. `FAULTLINE_KUBE_API`, `_TOKEN_FILE`, `_CA` and `_NAMESPACE`
//! override each part (a controller outside the cluster, the tests' fake API
//! server).

use hyper::Method;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where a pod's service account credentials are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// What went wrong talking to the API server. `what` names the object
/// (`pod faultline-node-0`).
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("Kubernetes API configuration: {0}")]
    Config(String),
    #[error("the API server refused the credentials ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    #[error(
        "the controller's service account may not {verb} {kind} in namespace {namespace} (403: {message}); apply the overlay's RBAC (the Role faultline-chaos)"
    )]
    Forbidden {
        verb: &'static str,
        kind: &'static str,
        namespace: String,
        message: String,
    },
    #[error("{verb} {what}: the API server answered {status}: {message}")]
    Api {
        verb: &'static str,
        what: String,
        status: u16,
        message: String,
    },
    #[error("{verb} {what}: cannot reach the API server at {server}: {reason}")]
    Transport {
        verb: &'static str,
        what: String,
        server: String,
        reason: String,
    },
    #[error("{verb} {what}: the API server's answer is not what was asked: {source}")]
    Decode {
        verb: &'static str,
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The kinds of object the platform touches, with their API paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pod,
    PersistentVolumeClaim,
    StatefulSet,
}

impl Kind {
    /// The resource's plural, as RBAC rules and URLs name it.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::PersistentVolumeClaim => "persistentvolumeclaims",
            Kind::StatefulSet => "statefulsets",
        }
    }

    fn group(self) -> &'static str {
        match self {
            Kind::Pod | Kind::PersistentVolumeClaim => "api/v1",
            Kind::StatefulSet => "apis/apps/v1",
        }
    }

    fn one(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::PersistentVolumeClaim => "volume claim",
            Kind::StatefulSet => "statefulset",
        }
    }
}

/// Where the API server is and how to authenticate to it.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// `https://host:port` (or `http://` for a test server).
    pub server: String,
    pub namespace: String,
    /// A file holding the bearer token (re-read per request); none: no
    /// `Authorization` header.
    pub token_file: Option<PathBuf>,
    /// PEM certificates the server's chain must lead to; none with https:
    /// refused (the platform trusts no public CA for a cluster's API).
    pub ca_file: Option<PathBuf>,
    /// Per request.
    pub timeout: Duration,
}

impl ApiConfig {
    /// The in-cluster configuration, each part overridable by a
    /// `FAULTLINE_KUBE_*` variable (see the module's doc).
    pub fn from_env() -> Result<Self, KubeError> {
        Self::from_lookup(|k| std::env::var(k).ok(), Path::new(SERVICE_ACCOUNT_DIR))
    }

    /// [`ApiConfig::from_env`] with the environment and the service account
    /// directory given (for tests).
    pub fn from_lookup(
        var: impl Fn(&str) -> Option<String>,
        sa_dir: &Path,
    ) -> Result<Self, KubeError> {
        let server = match var("FAULTLINE_KUBE_API") {
            Some(s) => s.trim_end_matches('/').to_string(),
            None => {
                let (Some(host), Some(port)) = (
                    var("KUBERNETES_SERVICE_HOST"),
                    var("KUBERNETES_SERVICE_PORT"),
                ) else {
                    return Err(KubeError::Config(
                        "not inside a Kubernetes pod (KUBERNETES_SERVICE_HOST and _PORT are unset) and FAULTLINE_KUBE_API is not set".into(),
                    ));
                };
                // An IPv6 service address needs brackets in a URL.
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                format!("https://{host}:{port}")
            }
        };
        let sa = |f: &str| {
            let p = sa_dir.join(f);
            p.exists().then_some(p)
        };
        let namespace = match var("FAULTLINE_KUBE_NAMESPACE") {
            Some(n) => n,
            None => {
                let p = sa("namespace").ok_or_else(|| {
                    KubeError::Config(format!(
                        "no namespace: set FAULTLINE_KUBE_NAMESPACE or mount a service account ({})",
                        sa_dir.join("namespace").display()
                    ))
                })?;
                read_text(&p)?.trim().to_string()
            }
        };
        if namespace.is_empty() {
            return Err(KubeError::Config("the namespace is empty".into()));
        }
        let token_file = var("FAULTLINE_KUBE_TOKEN_FILE")
            .map(PathBuf::from)
            .or_else(|| sa("token"));
        let ca_file = var("FAULTLINE_KUBE_CA")
            .map(PathBuf::from)
            .or_else(|| sa("ca.crt"));
        Ok(ApiConfig {
            server,
            namespace,
            token_file,
            ca_file,
            timeout: Duration::from_secs(10),
        })
    }
}

fn read_text(p: &Path) -> Result<String, KubeError> {
    std::fs::read_to_string(p)
        .map_err(|e| KubeError::Config(format!("cannot read {}: {e}", p.display())))
}

/// A pod, as far as the platform reads it.
#[derive(Clone, Debug, Deserialize)]
pub struct Pod {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    /// Differs between a deleted pod and the one its StatefulSet makes again
    /// under the same name.
    pub uid: String,
    /// Set once a delete was accepted; the pod may still run until then.
    #[serde(default)]
    pub deletion_timestamp: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// Pending, Running, Succeeded, Failed, Unknown.
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub container_statuses: Vec<ContainerStatus>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub restart_count: u32,
}

impl Pod {
    /// Running, not being deleted, and container `container` ready (its
    /// readiness probe passed).
    pub fn serving(&self, container: &str) -> bool {
        self.metadata.deletion_timestamp.is_none()
            && self.status.phase.as_deref() == Some("Running")
            && self
                .status
                .container_statuses
                .iter()
                .any(|c| c.name == container && c.ready)
    }
}

/// A list of pods (`PodList`).
#[derive(Clone, Debug, Deserialize)]
pub struct PodList {
    #[serde(default)]
    pub items: Vec<Pod>,
}

/// The API server's error body (`kind: Status`).
#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    message: String,
}

/// A client of one namespace. One connection per request: the platform
/// makes a few requests a second at most.
#[derive(Clone)]
pub struct KubeApi {
    config: ApiConfig,
    server: Server,
    tls: Option<tokio_rustls::TlsConnector>,
}

/// The API server's URL, taken apart.
#[derive(Clone, Debug)]
struct Server {
    https: bool,
    /// As in the URL (an IPv6 address in brackets).
    host: String,
    port: u16,
}

impl Server {
    fn parse(url: &str) -> Result<Self, KubeError> {
        let bad = || {
            KubeError::Config(format!(
                "the API server {url:?} is not http(s)://host[:port]"
            ))
        };
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') {
            return Err(bad());
        }
        let (host, port) = match rest.rsplit_once(':') {
            // `[::1]` alone has colons but no port.
            Some((h, p)) if !h.is_empty() && (!rest.starts_with('[') || h.ends_with(']')) => {
                (h.to_string(), p.parse::<u16>().map_err(|_| bad())?)
            }
            _ => (rest.to_string(), if https { 443 } else { 80 }),
        };
        Ok(Server { https, host, port })
    }

    /// The host as a socket address or name wants it (no brackets).
    fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl KubeApi {
    pub fn new(config: ApiConfig) -> Result<Self, KubeError> {
        let server = Server::parse(&config.server)?;
        let tls = if server.https {
            let ca = config.ca_file.as_ref().ok_or_else(|| {
                KubeError::Config(format!(
                    "{} is https but no CA is given (FAULTLINE_KUBE_CA or the service account's ca.crt)",
                    config.server
                ))
            })?;
            Some(tokio_rustls::TlsConnector::from(Arc::new(tls_trusting(
                ca,
            )?)))
        } else {
            None
        };
        Ok(KubeApi {
            config,
            server,
            tls,
        })
    }

    pub fn namespace(&self) -> &str {
        &self.config.namespace
    }

    /// `/<group>/namespaces/<ns>/<plural>[/<name>]`.
    fn url(&self, kind: Kind, name: Option<&str>) -> String {
        let mut u = format!(
            "/{}/namespaces/{}/{}",
            kind.group(),
            self.config.namespace,
            kind.plural()
        );
        if let Some(n) = name {
            u.push('/');
            u.push_str(n);
        }
        u
    }

    fn token(&self) -> Result<Option<String>, KubeError> {
        match &self.config.token_file {
            Some(p) => Ok(Some(read_text(p)?.trim().to_string())),
            None => Ok(None),
        }
    }

    /// One request and its answer `(status, body)`, within the timeout.
    async fn roundtrip(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<(u16, Vec<u8>), String> {
        use http_body_util::{BodyExt, Full};
        use hyper::header;
        let token = self.token().map_err(|e| e.to_string())?;
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect((self.server.bare_host(), self.server.port))
                .await
                .map_err(|e| e.to_string())?;
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header(
                    header::HOST,
                    format!("{}:{}", self.server.host, self.server.port),
                )
                .header(header::ACCEPT, "application/json");
            if let Some(t) = token {
                req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let (content_type, bytes) = body.unwrap_or(("application/json", Vec::new()));
            if !bytes.is_empty() {
                req = req.header(header::CONTENT_TYPE, content_type);
            }
            let req = req
                .body(Full::new(bytes::Bytes::from(bytes)))
                .map_err(|e| e.to_string())?;
            let resp = match &self.tls {
                Some(tls) => {
                    let name = rustls::pki_types::ServerName::try_from(
                        self.server.bare_host().to_string(),
                    )
                    .map_err(|e| format!("{}: {e}", self.server.host))?;
                    let stream = tls
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS: {e}"))?;
                    send(hyper_util::rt::TokioIo::new(stream), req).await?
                }
                None => send(hyper_util::rt::TokioIo::new(tcp), req).await?,
            };
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, body.to_vec()))
        };
        match tokio::time::timeout(self.config.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.config.timeout)),
        }
    }

    /// Sends one request; `Ok(None)` on 404.
    async fn send(
        &self,
        verb: &'static str,
        kind: Kind,
        what: &str,
        method: hyper::Method,
        path: String,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Option<Vec<u8>>, KubeError> {
        let (status, body) = self
            .roundtrip(method, &path, body)
            .await
            .map_err(|reason| KubeError::Transport {
                verb,
                what: what.to_string(),
                server: self.config.server.clone(),
                reason,
            })?;
        if (200..300).contains(&status) {
            return Ok(Some(body));
        }
        if status == 404 {
            return Ok(None);
        }
        let message = serde_json::from_slice::<Status>(&body)
            .map(|s| s.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(300).collect());
        Err(match status {
            401 => KubeError::Unauthorized { status, message },
            403 => KubeError::Forbidden {
                verb,
                kind: kind.plural(),
                namespace: self.config.namespace.clone(),
                message,
            },
            _ => KubeError::Api {
                verb,
                what: what.to_string(),
                status,
                message,
            },
        })
    }

    fn decode<T: serde::de::DeserializeOwned>(
        verb: &'static str,
        what: &str,
        body: &[u8],
    ) -> Result<T, KubeError> {
        serde_json::from_slice(body).map_err(|source| KubeError::Decode {
            verb,
            what: what.to_string(),
            source,
        })
    }

    /// Pod `name`, or `None` if there is none.
    pub async fn get_pod(&self, name: &str) -> Result<Option<Pod>, KubeError> {
        let what = format!("pod {name}");
        let url = self.url(Kind::Pod, Some(name));
        match self
            .send("get", Kind::Pod, &what, Method::GET, url, None)
            .await?
        {
            Some(b) => Self::decode("get", &what, &b).map(Some),
            None => Ok(None),
        }
    }

    /// The pods whose labels match `selector` (`key=value,...`).
    pub async fn list_pods(&self, selector: &str) -> Result<Vec<Pod>, KubeError> {
        let what = format!("pods with labels {selector}");
        let url = format!(
            "{}?labelSelector={}",
            self.url(Kind::Pod, None),
            query_escape(selector)
        );
        match self
            .send("list", Kind::Pod, &what, Method::GET, url, None)
            .await?
        {
            Some(b) => Self::decode::<PodList>("list", &what, &b).map(|l| l.items),
            None => Ok(Vec::new()),
        }
    }

    /// Whether `kind` `name` exists.
    pub async fn exists(&self, kind: Kind, name: &str) -> Result<bool, KubeError> {
        let what = format!("{} {name}", kind.one());
        let url = self.url(kind, Some(name));
        Ok(self
            .send("get", kind, &what, Method::GET, url, None)
            .await?
            .is_some())
    }

    /// Deletes `kind` `name` with no grace period (a pod: the kubelet kills
    /// its containers with SIGKILL, as a crash). Gone already is not an
    /// error.
    pub async fn delete_now(&self, kind: Kind, name: &str) -> Result<(), KubeError> {
        let what = format!("{} {name}", kind.one());
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
        });
        let url = format!("{}?gracePeriodSeconds=0", self.url(kind, Some(name)));
        let body = serde_json::to_vec(&body).map_err(|source| KubeError::Decode {
            verb: "delete",
            what: what.clone(),
            source,
        })?;
        self.send(
            "delete",
            kind,
            &what,
            Method::DELETE,
            url,
            Some(("application/json", body)),
        )
        .await?;
        Ok(())
    }

    /// Sets the replicas of StatefulSet `name` (its `scale` subresource).
    pub async fn scale(&self, name: &str, replicas: usize) -> Result<(), KubeError> {
        let what = format!("statefulset {name}");
        let body = serde_json::json!({ "spec": { "replicas": replicas } });
        let body = serde_json::to_vec(&body).map_err(|source| KubeError::Decode {
            verb: "scale",
            what: what.clone(),
            source,
        })?;
        let url = format!("{}/scale", self.url(Kind::StatefulSet, Some(name)));
        let body = Some(("application/merge-patch+json", body));
        match self
            .send("patch", Kind::StatefulSet, &what, Method::PATCH, url, body)
            .await?
        {
            Some(_) => Ok(()),
            None => Err(KubeError::Api {
                verb: "scale",
                what,
                status: 404,
                message: "no such StatefulSet: is the overlay applied?".into(),
            }),
        }
    }
}

/// One HTTP/1.1 exchange on `io`.
async fn send<T>(
    io: T,
    req: hyper::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    // Drives the connection; it ends with the exchange.
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "API server connection");
        }
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// `s` as a query value: unreserved characters as they are, the rest
/// percent-encoded (a label selector holds `=`, `,` and `!`).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A rustls client configuration trusting only the certificates in `ca`.
fn tls_trusting(ca: &Path) -> Result<rustls::ClientConfig, KubeError> {
    let pem = std::fs::read(ca)
        .map_err(|e| KubeError::Config(format!("cannot read {}: {e}", ca.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| {
            KubeError::Config(format!("{} is not PEM certificates: {e:?}", ca.display()))
        })?;
        roots.add(cert).map_err(|e| {
            KubeError::Config(format!("{} holds an unusable CA: {e}", ca.display()))
        })?;
    }
    if roots.is_empty() {
        return Err(KubeError::Config(format!(
            "{} holds no certificate",
            ca.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| KubeError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
