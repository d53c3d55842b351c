//! The smr load generator: `concurrency` workers each keep one operation
//! in flight for `duration_ms` on this client node (edits of a handful of
//! sites, views, and one list in ten), measured as one figure.

use super::db::{Availability, Command};
use super::{Request, Smr};
use crate::api::{LoadSpec, LoadStats};
use crate::runtime::loadgen::{call, Tally};
use crate::runtime::Handle;
use rand::Rng;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The sites the load touches; `add` creates them as the load starts.
const SITES: [&str; 4] = ["Site A", "Site B", "Site C", "Site D"];

pub(super) async fn run(h: Arc<Handle<Smr>>, spec: LoadSpec) -> LoadStats {
    let tally: Arc<Mutex<Tally>> = Arc::default();
    // The sites exist before the measured operations (an add of one that
    // exists changes nothing).
    for site in SITES {
        let add = Request::Command(Command::Add {
            site: site.into(),
            zip: "02138".into(),
        });
        if call(&h, spec.record, add).await.is_none() {
            return LoadStats::default();
        }
        if let Ok(mut t) = tally.lock() {
            t.reads += 1;
        }
    }
    let start = Instant::now();
    let end = start + Duration::from_millis(spec.duration_ms);
    let mut tasks = Vec::new();
    for w in 0..spec.concurrency {
        let (h, tally) = (h.clone(), tally.clone());
        let record = spec.record;
        tasks.push(tokio::spawn(async move {
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(w as u64);
            while Instant::now() < end {
                let site = SITES[rng.random_range(0..SITES.len())].to_string();
                let command = match rng.random_range(0..10) {
                    0 => Command::List,
                    1..=3 => Command::View { site },
                    _ => Command::Edit {
                        site,
                        availability: Availability::Count(rng.random_range(0..1000)),
                    },
                };
                let t0 = Instant::now();
                let Some(reply) = call(&h, record, Request::Command(command)).await else {
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
