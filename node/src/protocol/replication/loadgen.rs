//! The replicated store's load generator: `concurrency` workers each keep
//! one operation in flight for `duration_ms`: adds to a few counters,
//! puts and gets of a few registers.

use super::store::Op;
use super::Replication;
use crate::api::{LoadSpec, LoadStats};
use crate::runtime::loadgen::{closed_loop, Tally};
use crate::runtime::Handle;
use rand::Rng;
use std::sync::{Arc, Mutex};

pub(super) async fn run(h: Arc<Handle<Replication>>, spec: LoadSpec) -> LoadStats {
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let seconds = closed_loop(&h, &spec, &tally, move |rng| {
        let key = format!("k{}", rng.random_range(0..4));
        match rng.random_range(0..3) {
            0 => Op::Add { key, n: 1 },
            1 => Op::Put {
                key,
                value: rng.random_range(0..1000).to_string(),
            },
            _ => Op::Get { key },
        }
    })
    .await;
    tally
        .lock()
        .map(|t| t.stats(&h.id, "op", seconds))
        .unwrap_or_default()
}
