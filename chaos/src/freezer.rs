//! The freezer: a sidecar that pauses and resumes the node process of its
//! pod with SIGSTOP and SIGCONT, for platforms where the controller cannot
//! signal the node itself. On Kubernetes the node's pod shares one process
//! namespace between its containers (`shareProcessNamespace`), so this
//! container (the controller's image, `faultline-chaos freezer`) sees the
//! node's process and may signal it; the controller calls it over HTTP.
//!
//! A pause is a process fault like a partition is a packet fault, and it
//! holds a lease the same way: a freeze thaws by itself when its lease runs
//! out unless the controller renews it, so a controller that dies in the
//! middle of a pause never leaves a node frozen.
//!
//! API (every route but `/metrics`-free `GET /state` needs `Authorization:
//! Bearer <the cluster's secret>`): `POST /freeze` with `{"lease_ms": N}`
//! (re-sent to renew), `POST /thaw`, `GET /state`. Each answers
//! [`FreezerState`].

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest lease a freeze may ask for.
pub const MAX_LEASE: Duration = Duration::from_secs(600);

/// Which process the freezer signals: the one whose `argv[0]` ends in `exe`
/// and, if given, whose `argv[1]` is `arg`.
#[derive(Clone, Debug)]
pub struct Target {
    pub exe: String,
    pub arg: Option<String>,
    /// Where processes are listed (`/proc`).
    pub proc_dir: PathBuf,
}

impl Target {
    /// The node of a faultline pod: `faultline-node run ...`.
    pub fn node() -> Self {
        Target {
            exe: "faultline-node".into(),
            arg: Some("run".into()),
            proc_dir: PathBuf::from("/proc"),
        }
    }

    /// The pid of the one matching process, or why there is none.
    pub fn find(&self) -> Result<u32, String> {
        let me = std::process::id();
        let entries = std::fs::read_dir(&self.proc_dir)
            .map_err(|e| format!("cannot list {}: {e}", self.proc_dir.display()))?;
        let mut found = Vec::new();
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            // A process may exit between the listing and the read.
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let mut argv = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
            let exe_ok = argv
                .next()
                .is_some_and(|a| a.rsplit('/').next() == Some(self.exe.as_str()));
            let arg_ok = match &self.arg {
                Some(want) => argv.next().is_some_and(|a| a == want.as_str()),
                None => true,
            };
            if exe_ok && arg_ok {
                found.push(pid);
            }
        }
        match found.as_slice() {
            [pid] => Ok(*pid),
            [] => Err(format!(
                "no process {}{} in this pod (does the pod share its process namespace?)",
                self.exe,
                self.arg
                    .as_deref()
                    .map(|a| format!(" {a}"))
                    .unwrap_or_default()
            )),
            many => Err(format!("several processes {} match: {many:?}", self.exe)),
        }
    }

    /// Whether `pid` is stopped (state `T` in `/proc/<pid>/stat`).
    pub fn stopped(&self, pid: u32) -> bool {
        let Ok(stat) = std::fs::read_to_string(self.proc_dir.join(pid.to_string()).join("stat"))
        else {
            return false;
        };
        // The command name in parentheses may hold spaces; the state is the
        // first field after its closing parenthesis.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|s| s == "T" || s == "t")
    }
}

/// What the freezer answers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FreezerState {
    /// The target process, if one runs.
    pub pid: Option<u32>,
    /// Whether the freezer holds it stopped.
    pub frozen: bool,
    /// Left of the freeze's lease, in ms (0 when not frozen).
    pub lease_left_ms: u64,
}

#[derive(Deserialize)]
struct FreezeRequest {
    lease_ms: u64,
}

/// A freeze held: which process, until when.
struct Held {
    pid: u32,
    until: Instant,
}

#[derive(Clone)]
struct Freezer {
    target: Target,
    token: Arc<str>,
    held: Arc<Mutex<Option<Held>>>,
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response()
}

impl Freezer {
    /// `None` if the request carries the token, else the 401 to answer.
    fn refuse(&self, headers: &HeaderMap) -> Option<Response> {
        match crate::proxy::bearer(headers) {
            Some(t) if crate::proxy::same_secret(t.as_bytes(), self.token.as_bytes()) => None,
            _ => Some(error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong header Authorization: Bearer <the cluster's secret>",
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        // A panic while holding the lock leaves a plain Option behind;
        // nothing in it can be half-written.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> FreezerState {
        let held = self.lock();
        let pid = held
            .as_ref()
            .map(|h| h.pid)
            .or_else(|| self.target.find().ok());
        let now = Instant::now();
        FreezerState {
            pid,
            frozen: held.is_some(),
            lease_left_ms: held
                .as_ref()
                .map(|h| h.until.saturating_duration_since(now).as_millis() as u64)
                .unwrap_or(0),
        }
    }

    fn freeze(&self, lease: Duration) -> Result<FreezerState, String> {
        {
            let mut held = self.lock();
            match held.as_mut() {
                // A renewal: the same process, a later end.
                Some(h) if self.target.stopped(h.pid) => {
                    h.until = Instant::now() + lease;
                }
                _ => {
                    let pid = self.target.find()?;
                    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP)
                        .map_err(|e| format!("cannot stop pid {pid}: {e}"))?;
                    // The signal can be accepted and ignored: the first
                    // process of a namespace ignores SIGSTOP sent from
                    // inside it. A pause that did not happen must not be
                    // reported as one.
                    if !self.lands(pid) {
                        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                        return Err(if pid == 1 {
                            "the node is PID 1 of its process namespace, which ignores SIGSTOP from inside it: run it under an init (a Kubernetes pod's pause container, docker's --init)".to_string()
                        } else {
                            format!("pid {pid} did not stop within 1 s")
                        });
                    }
                    tracing::info!(pid, lease_ms = lease.as_millis() as u64, "node frozen");
                    *held = Some(Held {
                        pid,
                        until: Instant::now() + lease,
                    });
                }
            }
        }
        Ok(self.state())
    }

    /// Whether `pid` shows as stopped within a second.
    fn lands(&self, pid: u32) -> bool {
        let t0 = Instant::now();
        // Bounded: a second of 5 ms polls.
        while t0.elapsed() < Duration::from_secs(1) {
            if self.target.stopped(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    fn thaw(&self, why: &str) -> Result<FreezerState, String> {
        {
            let mut held = self.lock();
            if let Some(h) = held.take() {
                match kill(Pid::from_raw(h.pid as i32), Signal::SIGCONT) {
                    // Gone (its container restarted): nothing left to thaw.
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => {
                        tracing::info!(pid = h.pid, why, "node thawed")
                    }
                    Err(e) => {
                        *held = Some(h);
                        return Err(format!("cannot continue the node: {e}"));
                    }
                }
            }
        }
        Ok(self.state())
    }

    /// Thaws a freeze whose lease ran out.
    fn reap(&self) {
        let expired = self
            .lock()
            .as_ref()
            .is_some_and(|h| Instant::now() >= h.until);
        if expired {
            tracing::warn!("the freeze's lease ran out (the controller stopped renewing it)");
            if let Err(e) = self.thaw("lease expired") {
                tracing::error!(error = %e, "cannot thaw after the lease");
            }
        }
    }
}

async fn get_state(State(f): State<Freezer>, headers: HeaderMap) -> Response {
    if let Some(r) = f.refuse(&headers) {
        return r;
    }
    Json(f.state()).into_response()
}

async fn post_freeze(
    State(f): State<Freezer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = f.refuse(&headers) {
        return r;
    }
    let req: FreezeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body must be {{\"lease_ms\": N}}: {e}"),
            )
        }
    };
    let lease = Duration::from_millis(req.lease_ms);
    if lease.is_zero() || lease > MAX_LEASE {
        return error(
            StatusCode::BAD_REQUEST,
            format!("lease_ms must be 1..={}", MAX_LEASE.as_millis()),
        );
    }
    match f.freeze(lease) {
        Ok(s) => Json(s).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

async fn post_thaw(State(f): State<Freezer>, headers: HeaderMap) -> Response {
    if let Some(r) = f.refuse(&headers) {
        return r;
    }
    match f.thaw("asked") {
        Ok(s) => Json(s).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Serves the freezer on `listener` until the process ends; thaws whatever
/// it holds when `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    target: Target,
    token: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let f = Freezer {
        target,
        token: Arc::from(token),
        held: Arc::new(Mutex::new(None)),
    };
    let reaper = {
        let f = f.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                f.reap();
            }
        })
    };
    let app = Router::new()
        .route("/state", get(get_state))
        .route("/freeze", post(post_freeze))
        .route("/thaw", post(post_thaw))
        .with_state(f.clone());
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    reaper.abort();
    // Never leave the node stopped behind us.
    if let Err(e) = f.thaw("the freezer stops") {
        tracing::error!(error = %e, "cannot thaw on the way out");
    }
    served.map_err(anyhow::Error::from)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A `sleep` duration no other process of this machine is likely to
    /// have (the freezer finds its target by its arguments): 60-90 s, with
    /// this process's id and a counter as the fraction.
    pub(crate) fn unique_sleep_arg() -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}.{:07}{n:03}", 60 + n % 30, std::process::id())
    }

    /// A `sleep` with an argument no other process has.
    fn sleeper() -> (std::process::Child, Target) {
        spawn_sleeper()
    }

    /// A `sleep` with an argument no other process has, once it can be
    /// found (between fork and exec it still has this test's name).
    pub(crate) fn spawn_sleeper() -> (std::process::Child, Target) {
        let arg = unique_sleep_arg();
        let child = Command::new("sleep")
            .arg(&arg)
            .stdin(Stdio::null())
            .spawn()
            .expect("sleep");
        let target = Target {
            exe: "sleep".into(),
            arg: Some(arg),
            proc_dir: PathBuf::from("/proc"),
        };
        let t0 = Instant::now();
        while target.find() != Ok(child.id()) && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        (child, target)
    }

    /// Waits up to 2 s for `pid` to be stopped (or running): a signal
    /// lands a moment after `kill` returns.
    pub(crate) async fn settles(t: &Target, pid: u32, stopped: bool) -> bool {
        let t0 = Instant::now();
        while t.stopped(pid) != stopped && t0.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        t.stopped(pid) == stopped
    }

    async fn start(target: Target) -> (String, tokio::sync::oneshot::Sender<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(l, target, "tok".into(), async move {
            let _ = rx.await;
        }));
        (url, tx)
    }

    async fn call(url: &str, path: &str, body: Option<&str>, token: &str) -> (u16, String) {
        let http = reqwest::Client::new();
        let req = match body {
            Some(b) => http.post(format!("{url}{path}")).body(b.to_string()),
            None => http.get(format!("{url}{path}")),
        };
        let r = req.bearer_auth(token).send().await.expect("send");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    #[tokio::test]
    async fn freezes_thaws_and_a_lapsed_lease_thaws_by_itself() {
        let (mut child, target) = sleeper();
        let pid = child.id();
        let t = target.clone();
        let (url, stop) = start(target).await;

        let (code, body) = call(&url, "/freeze", Some(r#"{"lease_ms": 5000}"#), "tok").await;
        assert_eq!(code, 200, "{body}");
        let s: FreezerState = serde_json::from_str(&body).expect("state");
        assert_eq!((s.pid, s.frozen), (Some(pid), true));
        assert!(settles(&t, pid, true).await, "SIGSTOP did not land");

        let (code, body) = call(&url, "/thaw", Some(""), "tok").await;
        assert_eq!(code, 200, "{body}");
        assert!(settles(&t, pid, false).await);

        // A short lease not renewed: the reaper thaws it.
        let (code, _) = call(&url, "/freeze", Some(r#"{"lease_ms": 300}"#), "tok").await;
        assert_eq!(code, 200);
        assert!(settles(&t, pid, true).await);
        let t0 = Instant::now();
        while t.stopped(pid) && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !t.stopped(pid),
            "the lease lapsed but the node stayed frozen"
        );

        // Frozen when the freezer stops: it thaws on the way out.
        let (code, _) = call(&url, "/freeze", Some(r#"{"lease_ms": 60000}"#), "tok").await;
        assert_eq!(code, 200);
        let _ = stop.send(());
        let t0 = Instant::now();
        while t.stopped(pid) && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !t.stopped(pid),
            "the freezer stopped and left the node frozen"
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    #[tokio::test]
    async fn bad_requests_change_nothing() {
        let (mut child, target) = sleeper();
        let pid = child.id();
        let t = target.clone();
        let (url, _stop) = start(target).await;
        for (body, token, want) in [
            (r#"{"lease_ms": 1000}"#, "wrong", 401),
            ("not json", "tok", 400),
            (r#"{"lease_ms": 0}"#, "tok", 400),
            (r#"{"lease_ms": 99999999}"#, "tok", 400),
        ] {
            let (code, text) = call(&url, "/freeze", Some(body), token).await;
            assert_eq!(code, want, "{body} with {token}: {text}");
            assert!(text.contains("error"), "{text}");
            assert!(!t.stopped(pid), "{body} froze the node");
        }
        // No such process: a clear conflict, nothing held.
        let missing = Target {
            exe: "no-such-process-here".into(),
            arg: None,
            proc_dir: PathBuf::from("/proc"),
        };
        let (url2, _stop2) = start(missing).await;
        let (code, text) = call(&url2, "/freeze", Some(r#"{"lease_ms": 1000}"#), "tok").await;
        assert_eq!(code, 409, "{text}");
        assert!(text.contains("no process no-such-process-here"), "{text}");
        let (code, text) = call(&url2, "/state", None, "tok").await;
        assert_eq!(code, 200);
        let s: FreezerState = serde_json::from_str(&text).expect("state");
        assert_eq!(
            s,
            FreezerState {
                pid: None,
                frozen: false,
                lease_left_ms: 0
            }
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}
