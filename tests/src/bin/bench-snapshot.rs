//! `make bench`: the bitcake network's snapshots, time and messages per
//! snapshot against `2e + 2(n-1)`, with 1, 2 and 4 concurrent initiators:
//! on graphs of 7 (the seed's), 50 and 200 nodes in the seeded simulator
//! (the seed's 0.5-1.5 s delays, money moving all the time; time is
//! simulated), and on the seed's 7 nodes over real processes (QUIC on
//! loopback, no injected delay). Figures are printed, never asserted.
//!
//! BENCH_SEEDS (default 3) simulated runs per row; BENCH_SNAPSHOTS
//! (default 10) snapshots per row over real processes.

use faultline_e2e::bench::env;
use faultline_e2e::TestCluster;
use faultline_node::protocol::snapshot::graph::{random_neighbours, seed_neighbours, NodeId};
use faultline_node::protocol::snapshot::simulation::{run, Setup};
use faultline_node::protocol::snapshot::{Bugs, Reply, Request, SnapshotState};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `k` initiators spread over the nodes `n0..n{n-1}`.
fn spread(n: usize, k: usize) -> Vec<NodeId> {
    (0..k).map(|i| format!("n{}", i * n / k)).collect()
}

fn simulated(seeds: u64) {
    println!("snapshots in the simulator (the seed's 0.5-1.5 s delays; time is simulated; median over {seeds} seeds)");
    println!(
        "{:>5} {:>5} {:>10} {:>10} {:>12} {:>12} {:>14} {:>10}",
        "nodes",
        "edges",
        "initiators",
        "snapshots",
        "time p50 s",
        "messages",
        "2e + 2(n-1)",
        "wall ms"
    );
    for n in [7usize, 50, 200] {
        for k in [1usize, 2, 4] {
            let (mut times, mut per, mut snaps, mut walls) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut edges = 0;
            for seed in 0..seeds {
                let mut setup = Setup::seed_network(Bugs::default());
                if n != 7 {
                    setup.neighbours = random_neighbours(n, n, seed);
                }
                setup.initiators = if n == 7 {
                    ["n4", "n3", "n0", "n6"][..k]
                        .iter()
                        .map(|s| s.to_string())
                        .collect()
                } else {
                    spread(n, k)
                };
                setup.workload = 60_000_000;
                setup.transfer_rate = 4 * n as u64;
                setup.snapshot_every = 10_000_000;
                let t0 = Instant::now();
                let o = match run(seed, &setup) {
                    Ok(o) => o,
                    Err(e) => {
                        println!("n={n} k={k} seed {seed}: {e}");
                        continue;
                    }
                };
                walls.push(t0.elapsed().as_secs_f64() * 1e3);
                if let Some(c) = o.checks.iter().find(|c| !c.passed()) {
                    println!(
                        "n={n} k={k} seed {seed}: {} FAILED: {}",
                        c.name,
                        c.describe()
                    );
                }
                edges = o.edges;
                let total: u64 = o.messages.values().sum();
                per.push(total as f64 / o.snapshots.max(1) as f64);
                snaps.push(o.snapshots as f64);
                times.extend(o.took_us.iter().map(|t| *t as f64 / 1e6));
            }
            println!(
                "{n:>5} {edges:>5} {k:>10} {:>10.0} {:>12.2} {:>12.1} {:>14} {:>10.0}",
                median(snaps),
                median(times),
                median(per),
                2 * edges + 2 * (n - 1),
                median(walls)
            );
        }
    }
}

async fn state(c: &TestCluster, id: &str) -> Option<SnapshotState> {
    c.state_as::<SnapshotState>(id).await.map(|s| s.state)
}

async fn real(snapshots: usize) {
    println!();
    println!("snapshots over real processes (the seed's 7 nodes, QUIC on loopback, no injected delay; {snapshots} per row)");
    println!(
        "{:>10} {:>10} {:>12} {:>12} {:>12} {:>14}",
        "initiators", "started", "p50 ms", "max ms", "messages", "2e + 2(n-1)"
    );
    // The test cluster names nodes n1..n7: the seed's node i is n(i+1),
    // so its initiators 4 and 3 are n5 and n4.
    let renamed = |n: &str| format!("n{}", n[1..].parse::<usize>().unwrap_or(0) + 1);
    for initiators in [&["n5"][..], &["n5", "n4"][..]] {
        let mut extra = format!(
            "snapshot:\n  initiators: [{}]\n  neighbours:\n",
            initiators.join(", ")
        );
        for (n, nbs) in seed_neighbours() {
            let nbs: Vec<String> = nbs.iter().map(|m| renamed(m)).collect();
            extra += &format!("    {}: [{}]\n", renamed(&n), nbs.join(", "));
        }
        let mut c = TestCluster::of_roles(
            &format!("bench-snapshot-{}", initiators.len()),
            "snapshot",
            &[("node", "n", 7)],
            &extra,
        );
        let ids = c.ids("node");
        c.start_all();
        c.wait_ready(Duration::from_secs(20)).await;
        let mut took = Vec::new();
        let mut started = 0;
        let mut last_msgs = 0u64;
        let mut per = Vec::new();
        for _ in 0..snapshots {
            // Both at once; one may already have recorded the other's
            // marker and refuse (its "previous" is the one running).
            let asks = initiators
                .iter()
                .map(|i| c.op_as::<Request, Reply>(i, &Request::Snapshot));
            for r in futures::future::join_all(asks).await {
                if matches!(r.reply, Reply::Started { .. }) {
                    started += 1;
                }
            }
            let t0 = Instant::now();
            // Bounded: 10 s per snapshot.
            while t0.elapsed() < Duration::from_secs(10) {
                let mut all = true;
                for i in initiators {
                    let s = state(&c, i).await;
                    all &= s.is_some_and(|s| s.collected.iter().any(|x| x.epoch == s.epoch));
                }
                if all {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            took.push(t0.elapsed().as_secs_f64() * 1e3);
            let mut msgs = 0u64;
            let mut states: BTreeMap<String, SnapshotState> = BTreeMap::new();
            for id in &ids {
                if let Some(s) = state(&c, id).await {
                    msgs += s.messages.iter().flat_map(|(_, k)| k.values()).sum::<u64>();
                    states.insert(id.clone(), s);
                }
            }
            per.push((msgs - last_msgs) as f64);
            last_msgs = msgs;
        }
        let max = took.iter().cloned().fold(0.0, f64::max);
        println!(
            "{:>10} {:>10} {:>12.1} {:>12.1} {:>12.1} {:>14}",
            initiators.len(),
            started,
            median(took),
            max,
            median(per),
            2 * 12 + 2 * 6
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    simulated(env("BENCH_SEEDS", 3));
    real(env("BENCH_SNAPSHOTS", 10)).await;
}
