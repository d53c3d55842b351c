//! The bitcake network's load generator: `concurrency` workers each keep
//! one transfer of 1 to 10 bitcakes in flight for `duration_ms`, to random
//! other nodes (neighbours directly, the rest through intermediaries).

use super::{Request, Snapshot};
use crate::api::{LoadSpec, LoadStats};
use crate::runtime::loadgen::{closed_loop, Tally};
use crate::runtime::Handle;
use rand::Rng;
use std::sync::{Arc, Mutex};

pub(super) async fn run(h: Arc<Handle<Snapshot>>, spec: LoadSpec) -> LoadStats {
    let others: Vec<String> = h
        .params
        .graph
        .nodes()
        .filter(|n| **n != h.id)
        .cloned()
        .collect();
    if others.is_empty() {
        return LoadStats::default();
    }
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let seconds = closed_loop(&h, &spec, &tally, move |rng| Request::Transfer {
        to: others[rng.random_range(0..others.len())].clone(),
        amount: rng.random_range(1..=10),
    })
    .await;
    tally
        .lock()
        .map(|t| t.stats(&h.id, "transfer", seconds))
        .unwrap_or_default()
}
