//! `make bench`: state machine replication's commands per second and
//! latency for t = 3, 5 and 7 replicas with 5 clients (each running the
//! closed-loop load generator in its node, fsync on as the system's
//! default), and the stall one silent client causes: a client is stopped
//! (SIGSTOP) and another one's commands wait until the coordinator expels
//! it (`client_timeout_ms`, 2000 by default). Figures are printed, never
//! asserted: this machine is shared and noisy.
//!
//! BENCH_SECONDS (default 5) and BENCH_CONCURRENCY (workers per client,
//! default 8) tune the load runs; BENCH_STALLS (default 3) the silences.

use faultline_e2e::bench::{env, machine, percentile, summarize};
use faultline_e2e::TestCluster;
use faultline_node::api::{LoadSpec, OpReply};
use faultline_node::protocol::smr::db::Command;
use faultline_node::protocol::smr::{Reply, Request};
use std::time::{Duration, Instant};

fn cluster(t: usize) -> TestCluster {
    TestCluster::of_roles(
        &format!("bench-smr-{t}"),
        "smr",
        &[("replica", "r", t), ("client", "c", 5)],
        "",
    )
}

fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = env("BENCH_SECONDS", 5);
    let workers: usize = env("BENCH_CONCURRENCY", 8);
    let stalls: usize = env("BENCH_STALLS", 3);
    println!(
        "bench-smr: 5 clients, null period 100 ms, fsync on; {}",
        machine()
    );
    let spec = LoadSpec {
        duration_ms: seconds * 1000,
        concurrency: workers,
        record: false,
    };
    for t in [3, 5, 7] {
        let mut c = cluster(t);
        c.start_all();
        c.wait_ready(Duration::from_secs(30)).await;
        let load = summarize(&c.load_clients(&spec).await);
        println!(
            "  t = {t}: {:.0} commands/s over {seconds} s ({workers} workers x 5 clients; edits, views, 10% lists), p50 {:.1} ms, p99 {:.1} ms (worst client)",
            load.ok_per_second,
            load.p50_ms,
            load.p99_ms,
        );
        if t != 3 {
            continue;
        }
        // The stall of one silent client: c5 stops; c1's next command
        // waits for c5's expulsion.
        let mut waits = Vec::new();
        for k in 0..stalls {
            let Some(pid) = c.pid("c5") else { break };
            // c5 is a member again (its hello answered) before it stops.
            let _: OpReply<Reply> = c.op_as("c5", &Request::Command(Command::List)).await;
            signal(pid, "-STOP");
            let stopped = Instant::now();
            let mut worst = Duration::ZERO;
            // Bounded: commands for 4 s after the stop.
            while stopped.elapsed() < Duration::from_secs(4) {
                let t0 = Instant::now();
                let op: OpReply<Reply> = c.op_as("c1", &Request::Command(Command::List)).await;
                if matches!(op.reply, Reply::Done { .. }) {
                    worst = worst.max(t0.elapsed());
                }
            }
            signal(pid, "-CONT");
            waits.push(worst.as_secs_f64() * 1000.0);
            println!(
                "  stall {k}: c5 silent, c1's slowest command {:.0} ms",
                worst.as_secs_f64() * 1000.0
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        waits.sort_by(f64::total_cmp);
        println!(
            "  one silent client stalls the others (client timeout 2000 ms): median {:.0} ms over {} silences",
            percentile(&waits, 0.5),
            waits.len()
        );
    }
}
