//! The bank's load generator: `concurrency` workers each keep one operation
//! in flight for `duration_ms` (deposits and withdrawals of small amounts
//! over random accounts, and one lookup in ten), measured as one figure.

use super::{Request, Standby};
use crate::api::{LoadSpec, LoadStats};
use crate::runtime::loadgen::{closed_loop, Tally};
use crate::runtime::Handle;
use rand::Rng;
use std::sync::{Arc, Mutex};

pub(super) async fn run(h: Arc<Handle<Standby>>, spec: LoadSpec) -> LoadStats {
    let accounts: Vec<u64> = h.params.accounts.keys().copied().collect();
    if accounts.is_empty() {
        return LoadStats::default();
    }
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let seconds = closed_loop(&h, &spec, &tally, move |rng| {
        let account = accounts[rng.random_range(0..accounts.len())];
        let amount = rng.random_range(1..=10);
        match rng.random_range(0..10) {
            0 => Request::Lookup { account },
            1..=5 => Request::Deposit { account, amount },
            _ => Request::Withdraw { account, amount },
        }
    })
    .await;
    tally
        .lock()
        .map(|t| t.stats(&h.id, "op", seconds))
        .unwrap_or_default()
}
