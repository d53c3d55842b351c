//! A closed-loop load generator inside a client node: `concurrency` workers
//! each keep one operation in flight for `duration_ms`, paying tokens this
//! client owns to other clients and re-reading its tokens when it runs out.
//! Running inside the node (rather than one HTTP call per operation) is what
//! lets a benchmark measure the protocol instead of the admin API.

use super::{Exports, Handle};
use crate::protocol::tokens::{Reply, Request, TokenId, TokensNode};
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Pays in flight now, and every pay in flight at any time since the
/// current refresh began.
#[derive(Default)]
struct Busy {
    flying: std::collections::HashSet<TokenId>,
    touched: std::collections::HashSet<TokenId>,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    unknown: u64,
    reads: u64,
    latencies_us: Vec<u32>,
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
    let pool: Arc<Mutex<Vec<TokenId>>> = Arc::default();
    // Tokens whose pay started since the current refresh began: the refresh
    // may have read them before that pay moved them, so it must not hand
    // them out again.
    let touched: Arc<Mutex<Busy>> = Arc::default();
    let refreshing = Arc::new(tokio::sync::Mutex::new(()));
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let start = Instant::now();
    let end = start + Duration::from_millis(spec.duration_ms);
    let mut tasks = Vec::new();
    for w in 0..spec.concurrency {
        let (h, pool, touched, refreshing, tally, targets, me) = (
            h.clone(),
            pool.clone(),
            touched.clone(),
            refreshing.clone(),
            tally.clone(),
            targets.clone(),
            me.clone(),
        );
        let record = spec.record;
        tasks.push(tokio::spawn(async move {
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(w as u64);
            while Instant::now() < end {
                let token = pool.lock().ok().and_then(|mut p| p.pop());
                let Some(token) = token else {
                    // Only one worker re-reads; the others wait for its result.
                    let Ok(_guard) = refreshing.try_lock() else {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        continue;
                    };
                    if let Ok(mut b) = touched.lock() {
                        b.touched = b.flying.clone();
                    }
                    let reply = call(&h, record, Request::GetTokens { owner: me.clone() }).await;
                    if let Ok(mut t) = tally.lock() {
                        t.reads += 1;
                    }
                    match reply {
                        Some(Reply::Tokens { tokens, .. }) if !tokens.is_empty() => {
                            let busy = touched.lock().map(|b| b.touched.clone()).unwrap_or_default();
                            if let Ok(mut p) = pool.lock() {
                                p.clear();
                                p.extend(tokens.iter().map(|(t, _)| *t).filter(|t| !busy.contains(t)));
                            }
                        }
                        Some(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                        None => return,
                    }
                    continue;
                };
                let to = targets.choose(&mut rng).cloned().unwrap_or_default();
                let t0 = Instant::now();
                if let Ok(mut b) = touched.lock() {
                    b.flying.insert(token);
                    b.touched.insert(token);
                }
                let reply = call(&h, record, Request::Pay { token, to }).await;
                if let Ok(mut b) = touched.lock() {
                    b.flying.remove(&token);
                }
                let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
                let Ok(mut t) = tally.lock() else { return };
                match reply {
                    Some(Reply::Paid { .. }) => {
                        t.ok += 1;
                        t.latencies_us.push(us);
                    }
                    Some(Reply::Unknown { .. }) => t.unknown += 1,
                    Some(_) => t.failed += 1,
                    None => return,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut t = tally.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
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
    let id = h
        .history
        .invoke(&h.id, kind, serde_json::to_value(&request).unwrap_or_default());
    let reply = h.call(request).await?;
    h.history.complete(
        id,
        TokensNode::reply_outcome(&reply),
        serde_json::to_value(&reply).unwrap_or_default(),
    );
    Some(reply)
}
