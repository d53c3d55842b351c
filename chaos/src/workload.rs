//! The workload: the controller drives client nodes over their admin API
//! (`POST /ops`) and records every operation itself, with its own clock
//! around the HTTP call. Recording here rather than trusting the nodes'
//! histories keeps the history whole when a client node is killed: an
//! operation whose call failed or timed out is recorded as unknown, never as
//! failed, because the node may have started it. What to run next is the
//! system's choice ([`ChaosSystem::next_op`]), from the scenario's mix.

use crate::record::{self, JournalEntry};
use crate::scenario::Workload as Spec;
use crate::systems::{ChaosSystem, OpContext};
use faultline_node::api::{ApiError, HistoryOp, OpReply, Outcome};
use faultline_node::runtime::history::unix_us;
use faultline_node::system::System;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Live counters for the progress bar.
#[derive(Default)]
pub struct Counters {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub unknown: AtomicU64,
}

/// Every operation the controller ran, by client. Operations still in flight
/// are kept too, so a run cut short (interrupted) still records every
/// invocation, as `pending`.
#[derive(Default)]
pub struct Recorder {
    next: AtomicU64,
    ops: Mutex<BTreeMap<String, Vec<HistoryOp>>>,
    pending: Mutex<BTreeMap<u64, HistoryOp>>,
    pub counters: Counters,
    /// The run directory's `history.jsonl`, appended as operations start and
    /// end, so a controller that dies (SIGKILL, a crash) leaves its history
    /// behind for `faultline-chaos check` ([`record::histories_from_journal`]).
    journal: Mutex<Option<Journal>>,
}

/// How long an appended journal line may wait in memory: what a controller
/// that dies can lose.
const JOURNAL_FLUSH: Duration = Duration::from_millis(200);

struct Journal {
    out: std::io::BufWriter<std::fs::File>,
    flushed: Instant,
    path: std::path::PathBuf,
}

/// A lock that a panicking thread left poisoned still holds the history: a
/// lost entry could change a verdict, so recording goes on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One recorded operation and, when the node answered, its typed reply.
pub struct Recorded<R> {
    pub op: HistoryOp,
    pub reply: Option<R>,
}

impl Recorder {
    /// A recorder that also appends every invocation and completion to
    /// `path` (created anew).
    pub fn with_journal(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::File::create(path)?;
        Ok(Recorder {
            journal: Mutex::new(Some(Journal {
                out: std::io::BufWriter::new(file),
                flushed: Instant::now(),
                path: path.to_path_buf(),
            })),
            ..Recorder::default()
        })
    }

    fn journal(&self, entry: &JournalEntry) {
        let mut guard = lock(&self.journal);
        let Some(j) = guard.as_mut() else { return };
        let mut r = record::append_journal(&mut j.out, entry);
        if r.is_ok() && j.flushed.elapsed() >= JOURNAL_FLUSH {
            r = std::io::Write::flush(&mut j.out);
            j.flushed = Instant::now();
        }
        if let Err(e) = r {
            // The in-memory history stays whole; only the crash copy stops.
            tracing::warn!(path = %j.path.display(), error = %e, "history journal stopped");
            *guard = None;
        }
    }

    /// Writes out what the journal holds in memory.
    pub fn flush_journal(&self) {
        let mut guard = lock(&self.journal);
        if let Some(j) = guard.as_mut() {
            if let Err(e) = std::io::Write::flush(&mut j.out) {
                tracing::warn!(path = %j.path.display(), error = %e, "history journal stopped");
                *guard = None;
            }
        }
    }

    /// The completed operations and, after them, those still in flight.
    pub fn take(&self) -> BTreeMap<String, Vec<HistoryOp>> {
        self.flush_journal();
        let mut all = std::mem::take(&mut *lock(&self.ops));
        let pending = std::mem::take(&mut *lock(&self.pending));
        for op in pending.into_values() {
            all.entry(op.client.clone()).or_default().push(op);
        }
        all
    }

    /// Runs one operation of system `S` on `client` and records it.
    pub async fn run<S: System>(
        &self,
        http: &reqwest::Client,
        url: &str,
        secret: &str,
        client: &str,
        request: &S::Request,
        timeout: Duration,
    ) -> Recorded<S::Reply> {
        let kind = S::request_kind(request).to_string();
        let body = serde_json::to_value(request).unwrap_or_default();
        let invoke_us = unix_us();
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut op = HistoryOp {
            id,
            client: client.to_string(),
            kind,
            request: body,
            invoke_us,
            complete_us: None,
            outcome: Outcome::Pending,
            reply: None,
            note: None,
        };
        lock(&self.pending).insert(id, op.clone());
        self.journal(&JournalEntry::Invoke(op.clone()));
        let resp = http
            .post(format!("{url}/ops"))
            .bearer_auth(secret)
            .timeout(timeout)
            .json(request)
            .send()
            .await;
        let (outcome, reply, note) = match resp {
            Ok(r) if r.status().is_success() => match r.json::<OpReply<S::Reply>>().await {
                Ok(v) => (v.outcome, Some(v.reply), None),
                Err(e) => (Outcome::Unknown, None, Some(format!("bad answer: {e}"))),
            },
            // A refused request (400/401) was never run.
            Ok(r) if r.status().is_client_error() => {
                let status = r.status();
                let why = r
                    .json::<ApiError>()
                    .await
                    .map(|e| e.error)
                    .unwrap_or_default();
                (
                    Outcome::Failed,
                    None,
                    Some(format!("refused ({status}): {why}")),
                )
            }
            Ok(r) => (Outcome::Unknown, None, Some(format!("HTTP {}", r.status()))),
            Err(e) => (Outcome::Unknown, None, Some(format!("call failed: {e}"))),
        };
        let c = &self.counters;
        match outcome {
            Outcome::Ok => c.ok.fetch_add(1, Ordering::Relaxed),
            Outcome::Failed => c.failed.fetch_add(1, Ordering::Relaxed),
            Outcome::Unknown | Outcome::Pending => c.unknown.fetch_add(1, Ordering::Relaxed),
        };
        op.complete_us = Some(unix_us());
        op.outcome = outcome;
        op.reply = reply
            .as_ref()
            .map(|r| serde_json::to_value(r).unwrap_or_default());
        op.note = note;
        lock(&self.pending).remove(&id);
        self.journal(&JournalEntry::Complete(op.clone()));
        lock(&self.ops)
            .entry(client.to_string())
            .or_default()
            .push(op.clone());
        Recorded { op, reply }
    }
}

/// The nodes that are clients now. Roles change with operation faults
/// (tokens' transform); drivers read this before every operation, so none
/// drives a node that stopped being a client and one starts driving a node
/// that became one.
pub type Roles = Arc<std::sync::RwLock<std::collections::BTreeSet<String>>>;

fn clients(roles: &Roles) -> Vec<String> {
    roles
        .read()
        .map(|r| r.iter().cloned().collect())
        .unwrap_or_default()
}

/// The scenario's mix with the system's defaults for what it leaves out:
/// the operation names and their weights, in the system's order.
pub fn weights<S: ChaosSystem>(spec: &Spec) -> Vec<(&'static str, f64)> {
    S::MIX
        .iter()
        .map(|m| {
            let w = if spec.mix.is_empty() {
                m.weight
            } else {
                spec.mix.get(m.name).copied().unwrap_or(0.0)
            };
            (m.name, w)
        })
        .collect()
}

/// One of `weights`' names, drawn by weight.
fn pick(weights: &[(&'static str, f64)], rng: &mut ChaCha8Rng) -> &'static str {
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0.0..total.max(f64::MIN_POSITIVE));
    for (name, w) in weights {
        if roll < *w {
            return name;
        }
        roll -= w;
    }
    weights.last().map_or("", |(n, _)| n)
}

/// One node's driver; it is idle while its node is not a client.
pub struct ClientDriver<S: ChaosSystem> {
    pub id: String,
    pub url: String,
    pub secret: String,
    pub roles: Roles,
    pub params: Arc<<S::Node as System>::Params>,
    pub spec: Spec,
    pub seed: u64,
}

impl<S: ChaosSystem> ClientDriver<S> {
    /// Runs until `stop` is set; `concurrency` loops, each paced by `rate`.
    pub async fn run(self, http: reqwest::Client, rec: Arc<Recorder>, stop: Arc<AtomicBool>) {
        let me = Arc::new(self);
        let beliefs: Arc<Mutex<S::Beliefs>> = Arc::default();
        let weights = weights::<S>(&me.spec);
        let mut loops = Vec::new();
        for w in 0..me.spec.concurrency {
            let (me, http, rec, stop, beliefs, weights) = (
                me.clone(),
                http.clone(),
                rec.clone(),
                stop.clone(),
                beliefs.clone(),
                weights.clone(),
            );
            loops.push(tokio::spawn(async move {
                let mut rng = ChaCha8Rng::seed_from_u64(
                    me.seed ^ (w as u64) << 32 ^ faultline_node::hash::fnv1a(me.id.as_bytes()),
                );
                let pace = me
                    .spec
                    .rate
                    .map(|r| Duration::from_secs_f64(me.spec.concurrency as f64 / r));
                let timeout = Duration::from_millis(me.spec.op_timeout.ms().max(100));
                // Bounded by the stop flag, which the controller always sets.
                while !stop.load(Ordering::Relaxed) {
                    let clients = clients(&me.roles);
                    if !clients.contains(&me.id) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    let t0 = tokio::time::Instant::now();
                    let ctx = OpContext {
                        me: &me.id,
                        clients: &clients,
                        params: &me.params,
                    };
                    let op = pick(&weights, &mut rng);
                    let request = S::next_op(&ctx, op, &beliefs, &mut rng);
                    let done = rec
                        .run::<S::Node>(&http, &me.url, &me.secret, &me.id, &request, timeout)
                        .await;
                    if let Some(reply) = &done.reply {
                        S::learn(&me.id, &beliefs, &request, reply);
                        if S::left_clients(reply) {
                            // The runner learns roles after an operation
                            // fault; this driver saw it first.
                            if let Ok(mut r) = me.roles.write() {
                                r.remove(&me.id);
                            }
                        }
                    }
                    if done.op.outcome == Outcome::Unknown {
                        // The node may be down: do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if let Some(p) = pace {
                        tokio::time::sleep_until(t0 + p).await;
                    }
                }
            }));
        }
        for l in loops {
            let _ = l.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_follow_the_weights_and_skip_zero() {
        let w = [("a", 3.0), ("b", 0.0), ("c", 1.0)];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut count: BTreeMap<&str, u32> = BTreeMap::new();
        for _ in 0..4000 {
            *count.entry(pick(&w, &mut rng)).or_default() += 1;
        }
        assert_eq!(count.get("b"), None);
        let a = f64::from(count["a"]);
        let c = f64::from(count["c"]);
        assert!((a / c - 3.0).abs() < 0.4, "a {a} c {c}");
    }
}
