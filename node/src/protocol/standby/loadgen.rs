//! The bank's load generator: `concurrency` workers each keep one operation
//! in flight for `duration_ms` (deposits and withdrawals of small amounts
//! over random accounts, and one lookup in ten), measured as one figure.

use super::{Request, Standby};
use crate::api::{LoadSpec, LoadStats};
use crate::runtime::loadgen::{call, Tally};
use crate::runtime::Handle;
use rand::Rng;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(super) async fn run(h: Arc<Handle<Standby>>, spec: LoadSpec) -> LoadStats {
    let accounts: Vec<u64> = h.params.accounts.keys().copied().collect();
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let start = Instant::now();
    let end = start + Duration::from_millis(spec.duration_ms);
    let mut tasks = Vec::new();
    for w in 0..spec.concurrency {
        let (h, tally, accounts) = (h.clone(), tally.clone(), accounts.clone());
        let record = spec.record;
        tasks.push(tokio::spawn(async move {
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(w as u64);
            while Instant::now() < end {
                let Some(&account) = accounts.get(rng.random_range(0..accounts.len().max(1)))
                else {
                    return;
                };
                let amount = rng.random_range(1..=10);
                let request = match rng.random_range(0..10) {
                    0 => Request::Lookup { account },
                    1..=5 => Request::Deposit { account, amount },
                    _ => Request::Withdraw { account, amount },
                };
                let t0 = Instant::now();
                let Some(reply) = call(&h, record, request).await else {
                    return;
                };
                let latency = t0.elapsed();
                let Ok(mut t) = tally.lock() else { return };
                t.add(reply.outcome(), latency);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = start.elapsed().as_secs_f64();
    tally
        .lock()
        .map(|t| t.stats(&h.id, "op", seconds))
        .unwrap_or_default()
}
