//! The smr load generator: `concurrency` workers each keep one operation
//! in flight for `duration_ms` on this client node (edits of a handful of
//! sites, views, and one list in ten), measured as one figure.

use super::db::{Availability, Command};
use super::{Request, Smr};
use crate::api::{LoadSpec, LoadStats};
use crate::runtime::loadgen::{call, closed_loop, Tally};
use crate::runtime::Handle;
use rand::Rng;
use std::sync::{Arc, Mutex};

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
    let seconds = closed_loop(&h, &spec, &tally, |rng| {
        let site = SITES[rng.random_range(0..SITES.len())].to_string();
        Request::Command(match rng.random_range(0..10) {
            0 => Command::List,
            1..=3 => Command::View { site },
            _ => Command::Edit {
                site,
                availability: Availability::Count(rng.random_range(0..1000)),
            },
        })
    })
    .await;
    tally
        .lock()
        .map(|t| t.stats(&h.id, "op", seconds))
        .unwrap_or_default()
}
