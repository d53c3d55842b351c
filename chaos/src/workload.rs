//! The workload: the controller drives client nodes over their admin API
//! (`POST /ops`) and records every operation itself, with its own clock
//! around the HTTP call. Recording here rather than trusting the nodes'
//! histories keeps the history whole when a client node is killed: an
//! operation whose call failed or timed out is recorded as unknown, never as
//! failed, because the node may have started it.

use crate::scenario::Workload as Spec;
use faultline_node::runtime::history::{unix_us, HistoryOp};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
}

impl Recorder {
    /// The completed operations and, after them, those still in flight.
    pub fn take(&self) -> BTreeMap<String, Vec<HistoryOp>> {
        let mut all = self
            .ops
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default();
        let pending = self
            .pending
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default();
        for op in pending.into_values() {
            all.entry(op.client.clone()).or_default().push(op);
        }
        all
    }

    /// Runs one operation on `client` and records it.
    pub async fn run(
        &self,
        http: &reqwest::Client,
        url: &str,
        secret: &str,
        client: &str,
        body: Value,
        timeout: Duration,
    ) -> HistoryOp {
        let kind = body["op"].as_str().unwrap_or("?").to_string();
        let invoke_us = unix_us();
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut p) = self.pending.lock() {
            p.insert(
                id,
                HistoryOp {
                    id,
                    client: client.to_string(),
                    kind: kind.clone(),
                    request: body.clone(),
                    invoke_us,
                    complete_us: None,
                    outcome: "pending".into(),
                    reply: None,
                },
            );
        }
        let resp = http
            .post(format!("{url}/ops"))
            .bearer_auth(secret)
            .timeout(timeout)
            .json(&body)
            .send()
            .await;
        let (outcome, reply) = match resp {
            Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                Ok(v) => (
                    v["outcome"].as_str().unwrap_or("unknown").to_string(),
                    v["reply"].clone(),
                ),
                Err(e) => (
                    "unknown".to_string(),
                    json!({"result": "unknown", "reason": format!("bad answer: {e}")}),
                ),
            },
            // A refused request (400/401) was never run.
            Ok(r) if r.status().is_client_error() => {
                let status = r.status().as_u16();
                (
                    "failed".to_string(),
                    json!({"result": "failed", "error": {"error": "refused", "detail": status}}),
                )
            }
            Ok(r) => (
                "unknown".to_string(),
                json!({"result": "unknown", "reason": format!("HTTP {}", r.status())}),
            ),
            Err(e) => (
                "unknown".to_string(),
                json!({"result": "unknown", "reason": format!("call failed: {e}")}),
            ),
        };
        let c = &self.counters;
        match outcome.as_str() {
            "ok" => c.ok.fetch_add(1, Ordering::Relaxed),
            "failed" => c.failed.fetch_add(1, Ordering::Relaxed),
            _ => c.unknown.fetch_add(1, Ordering::Relaxed),
        };
        let op = HistoryOp {
            id,
            client: client.to_string(),
            kind,
            request: body,
            invoke_us,
            complete_us: Some(unix_us()),
            outcome,
            reply: Some(reply),
        };
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&id);
        }
        if let Ok(mut m) = self.ops.lock() {
            m.entry(client.to_string()).or_default().push(op.clone());
        }
        op
    }
}

/// The nodes that are clients now. Roles change with transforms; drivers
/// read this before every operation, so none drives a node that became a
/// server and one starts driving a server that became a client.
pub type Roles = Arc<std::sync::RwLock<std::collections::BTreeSet<String>>>;

fn is_client(roles: &Roles, id: &str) -> bool {
    roles.read().map(|r| r.contains(id)).unwrap_or(false)
}

/// One node's driver; it is idle while its node is not a client.
pub struct ClientDriver {
    pub id: String,
    pub url: String,
    pub secret: String,
    pub roles: Roles,
    pub tokens: u32,
    pub spec: Spec,
    pub seed: u64,
}

impl ClientDriver {
    /// Runs until `stop` is set; `concurrency` loops, each paced by `rate`.
    pub async fn run(self, http: reqwest::Client, rec: Arc<Recorder>, stop: Arc<AtomicBool>) {
        let me = Arc::new(self);
        // Tokens this client believes it owns, from its reads and pays.
        let owned: Arc<Mutex<Vec<u32>>> = Arc::default();
        let mut loops = Vec::new();
        for w in 0..me.spec.concurrency {
            let (me, http, rec, stop, owned) = (
                me.clone(),
                http.clone(),
                rec.clone(),
                stop.clone(),
                owned.clone(),
            );
            loops.push(tokio::spawn(async move {
                let mut rng = ChaCha8Rng::seed_from_u64(me.seed ^ (w as u64) << 32 ^ fnv(&me.id));
                let pace = me
                    .spec
                    .rate
                    .map(|r| Duration::from_secs_f64(me.spec.concurrency as f64 / r));
                let timeout = Duration::from_millis(me.spec.op_timeout.ms().max(100));
                // Bounded by the stop flag, which the controller always sets.
                while !stop.load(Ordering::Relaxed) {
                    if !is_client(&me.roles, &me.id) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    let t0 = tokio::time::Instant::now();
                    let body = me.next_op(&mut rng, &owned);
                    let op = rec
                        .run(&http, &me.url, &me.secret, &me.id, body, timeout)
                        .await;
                    me.learn(&op, &owned);
                    if became_server(&op) {
                        // The runner learns roles after a transform; this
                        // driver saw it first.
                        if let Ok(mut r) = me.roles.write() {
                            r.remove(&me.id);
                        }
                    }
                    if op.outcome != "ok"
                        && op.reply.as_ref().is_some_and(|r| r["result"] == "unknown")
                    {
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

    fn next_op(&self, rng: &mut ChaCha8Rng, owned: &Mutex<Vec<u32>>) -> Value {
        let m = &self.spec.mix;
        let total = m.pay + m.gettokens + m.pay_any;
        let roll = rng.random_range(0.0..total.max(f64::MIN_POSITIVE));
        let clients: Vec<String> = self
            .roles
            .read()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        let others: Vec<&String> = clients.iter().filter(|c| **c != self.id).collect();
        let to = others
            .choose(rng)
            .map(|s| s.as_str())
            .unwrap_or(self.id.as_str())
            .to_string();
        if roll < m.pay {
            let token = owned.lock().ok().and_then(|mut o| {
                if o.is_empty() {
                    None
                } else {
                    let i = rng.random_range(0..o.len());
                    Some(o.swap_remove(i))
                }
            });
            match token {
                Some(token) => json!({"op": "pay", "token": token, "to": to}),
                // Nothing known: read our own tokens first.
                None => json!({"op": "gettokens", "owner": self.id}),
            }
        } else if roll < m.pay + m.gettokens {
            let owner = if rng.random_bool(0.5) {
                self.id.clone()
            } else {
                clients
                    .choose(rng)
                    .cloned()
                    .unwrap_or_else(|| self.id.clone())
            };
            json!({"op": "gettokens", "owner": owner})
        } else {
            json!({"op": "pay", "token": rng.random_range(0..self.tokens.max(1)), "to": to})
        }
    }

    fn learn(&self, op: &HistoryOp, owned: &Mutex<Vec<u32>>) {
        let Some(reply) = &op.reply else { return };
        if op.outcome == "ok" && reply["result"] == "tokens" && reply["owner"] == self.id.as_str() {
            if let (Some(list), Ok(mut o)) = (reply["tokens"].as_array(), owned.lock()) {
                o.clear();
                o.extend(list.iter().filter_map(|t| t[0].as_u64()).map(|t| t as u32));
            }
        }
    }
}

/// The node refused because it is a server now.
fn became_server(op: &HistoryOp) -> bool {
    let error = op
        .reply
        .as_ref()
        .and_then(|r| r.get("error"))
        .and_then(|e| e.get("error"))
        .and_then(Value::as_str);
    matches!(
        error,
        Some("servers_cannot_pay" | "servers_cannot_get_tokens")
    )
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
