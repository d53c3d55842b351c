//! The token system's load generator: `concurrency` workers each keep one
//! pay in flight for `duration_ms`, paying tokens this client owns to other
//! clients, while one refresher re-reads the client's tokens (those others
//! paid to it) whenever the pool runs low.

use super::{Reply, Request, TokenId, Tokens};
use crate::api::{LoadSpec, LoadStats};
use crate::runtime::loadgen::{call, Tally};
use crate::runtime::Handle;
use rand::seq::IndexedRandom;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

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

pub(super) async fn run(h: Arc<Handle<Tokens>>, spec: LoadSpec) -> LoadStats {
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
                let latency = t0.elapsed();
                let Ok(mut s) = shared.lock() else { return };
                s.flying.remove(&token);
                match reply {
                    Some(reply) => s.tally.add(reply.outcome(), latency),
                    None => return,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let stats = shared
        .lock()
        .map(|s| s.tally.stats(&me, "pay", seconds))
        .unwrap_or_default();
    stats
}
