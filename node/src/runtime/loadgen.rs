//! A closed-loop load generator inside a client node: `concurrency` workers
//! each keep one operation in flight for `duration_ms`, paying tokens this
//! client owns to other clients, while one refresher re-reads the client's
//! tokens (those others paid to it) whenever the pool runs low.
//! Running inside the node (rather than one HTTP call per operation) is what
//! lets a benchmark measure the protocol instead of the admin API.

use super::{Exports, Handle};
use crate::protocol::tokens::{Reply, Request, TokenId, TokensNode};
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    pub duration_ms: u64,
    #[serde(default = "one")]
    pub concurrency: usize,
    /// Record every operation in the history (off for benchmarks).
    #[serde(default = "yes")]
    pub record: bool,
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

impl LoadSpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.duration_ms == 0 || self.duration_ms > 3_600_000 {
            return Err("duration_ms must be in 1..=3600000".into());
        }
        if self.concurrency == 0 || self.concurrency > 4096 {
            return Err("concurrency must be in 1..=4096".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadStats {
    pub node: String,
    pub seconds: f64,
    pub pays_ok: u64,
    pub pays_failed: u64,
    pub pays_unknown: u64,
    pub reads: u64,
    pub pays_per_second: f64,
    pub pay_p50_ms: f64,
    pub pay_p99_ms: f64,
    pub pay_max_ms: f64,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    unknown: u64,
    reads: u64,
    latencies_us: Vec<u32>,
}

/// Shared between the refresher and the workers.
#[derive(Default)]
struct Shared {
    /// Tokens known to be ours and free to pay.
    pool: Vec<TokenId>,
    pooled: HashSet<TokenId>,
    /// Pays in flight now, and every pay in flight at any time since the
    /// current refresh began: the refresh may have read those before the pay
    /// moved them, so it must not hand them out again.
    flying: HashSet<TokenId>,
    touched: HashSet<TokenId>,
    tally: Tally,
}

pub async fn run(h: Arc<Handle<TokensNode>>, spec: LoadSpec) -> LoadStats {
    let me = h.id.clone();
    let others: Vec<String> = h
        .cluster
        .with_role("client")
        .into_iter()
        .filter(|c| *c != me)
        .collect();
    let targets = if others.is_empty() {
        vec![me.clone()]
    } else {
        others
    };
    let shared: Arc<Mutex<Shared>> = Arc::default();
    let refilled = Arc::new(Notify::new());
    let hungry = Arc::new(Notify::new());
    let start = Instant::now();
    let end = start + Duration::from_millis(spec.duration_ms);
    let mut tasks = Vec::new();
    // One refresher keeps the pool topped up with tokens paid to us.
    {
        let (h, shared, refilled, hungry, me) = (
            h.clone(),
            shared.clone(),
            refilled.clone(),
            hungry.clone(),
            me.clone(),
        );
        let (record, low) = (spec.record, spec.concurrency.div_ceil(2));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let enough = shared.lock().map(|s| s.pool.len() >= low).unwrap_or(true);
                if enough {
                    let _ = tokio::time::timeout(Duration::from_millis(5), hungry.notified()).await;
                    continue;
                }
                if let Ok(mut s) = shared.lock() {
                    s.touched = s.flying.clone();
                }
                let reply = call(&h, record, Request::GetTokens { owner: me.clone() }).await;
                let got = match reply {
                    Some(Reply::Tokens { tokens, .. }) => tokens,
                    Some(_) => Vec::new(),
                    None => return,
                };
                let refreshed = match shared.lock() {
                    Ok(mut s) => {
                        s.tally.reads += 1;
                        for (t, _) in &got {
                            if !s.touched.contains(t) && s.pooled.insert(*t) {
                                s.pool.push(*t);
                            }
                        }
                        !s.pool.is_empty()
                    }
                    Err(_) => return,
                };
                if refreshed {
                    refilled.notify_waiters();
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }));
    }
    for w in 0..spec.concurrency {
        let (h, shared, refilled, hungry, targets) = (
            h.clone(),
            shared.clone(),
            refilled.clone(),
            hungry.clone(),
            targets.clone(),
        );
        let record = spec.record;
        tasks.push(tokio::spawn(async move {
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(w as u64);
            while Instant::now() < end {
                let token = shared.lock().ok().and_then(|mut s| {
                    let t = s.pool.pop()?;
                    s.pooled.remove(&t);
                    s.flying.insert(t);
                    s.touched.insert(t);
                    Some(t)
                });
                let Some(token) = token else {
                    hungry.notify_one();
                    let _ =
                        tokio::time::timeout(Duration::from_millis(5), refilled.notified()).await;
                    continue;
                };
                let to = targets.choose(&mut rng).cloned().unwrap_or_default();
                let t0 = Instant::now();
                let reply = call(&h, record, Request::Pay { token, to }).await;
                let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
                let Ok(mut s) = shared.lock() else { return };
                s.flying.remove(&token);
                match reply {
                    Some(Reply::Paid { .. }) => {
                        s.tally.ok += 1;
                        s.tally.latencies_us.push(us);
                    }
                    Some(Reply::Unknown { .. }) => s.tally.unknown += 1,
                    Some(_) => s.tally.failed += 1,
                    None => return,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut t = shared
        .lock()
        .map(|mut s| std::mem::take(&mut s.tally))
        .unwrap_or_default();
    t.latencies_us.sort_unstable();
    let q = |p: f64| -> f64 {
        if t.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((t.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        t.latencies_us[i] as f64 / 1000.0
    };
    LoadStats {
        node: me,
        seconds,
        pays_ok: t.ok,
        pays_failed: t.failed,
        pays_unknown: t.unknown,
        reads: t.reads,
        pays_per_second: t.ok as f64 / seconds.max(1e-9),
        pay_p50_ms: q(0.5),
        pay_p99_ms: q(0.99),
        pay_max_ms: q(1.0),
    }
}

async fn call(h: &Handle<TokensNode>, record: bool, request: Request) -> Option<Reply> {
    if !record {
        return h.call(request).await;
    }
    let kind = TokensNode::request_kind(&request);
    let id = h.history.invoke(
        &h.id,
        kind,
        serde_json::to_value(&request).unwrap_or_default(),
    );
    let reply = h.call(request).await?;
    h.history.complete(
        id,
        TokensNode::reply_outcome(&reply),
        serde_json::to_value(&reply).unwrap_or_default(),
    );
    Some(reply)
}
