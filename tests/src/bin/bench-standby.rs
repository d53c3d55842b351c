//! `make bench`: the standby bank's operations per second and latency (two
//! servers, three clients, each running the closed-loop load generator in
//! its node, fsync on as the system's default), and failover time: the
//! primary killed with SIGKILL, to the first write acknowledged by the new
//! primary, over BENCH_KILLS kills (default 20). Figures are printed, never
//! asserted: this machine is shared and noisy.
//!
//! BENCH_SECONDS (default 5) and BENCH_CONCURRENCY (workers per client,
//! default 16) tune the load run.

use faultline_e2e::bench::{env, machine, percentile, summarize};
use faultline_e2e::TestCluster;
use faultline_node::api::{LoadSpec, NodeState, OpReply};
use faultline_node::protocol::standby::{Reply, Request, StandbyState};
use std::time::{Duration, Instant};

async fn state(c: &TestCluster, id: &str) -> Option<StandbyState> {
    c.state_as::<StandbyState>(id)
        .await
        .map(|s: NodeState<StandbyState>| s.state)
}

/// The primary, once both servers agree on the epoch and the standby has
/// caught up (bounded by `within`).
async fn settled(c: &TestCluster, within: Duration) -> Option<(String, String)> {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if let (Some(a), Some(b)) = (state(c, "s1").await, state(c, "s2").await) {
            if a.epoch == b.epoch && a.action_id == b.action_id && a.epoch.standby.is_some() {
                let p = a.epoch.primary.clone();
                let s = if p == "s1" { "s2" } else { "s1" };
                if (a.mode == "primary") != (b.mode == "primary") {
                    return Some((p, s.to_string()));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = env("BENCH_SECONDS", 5);
    let workers: usize = env("BENCH_CONCURRENCY", 16);
    let kills: usize = env("BENCH_KILLS", 20);
    println!(
        "bench-standby: 2 servers, 3 clients, fsync on; {}",
        machine()
    );
    let mut c = TestCluster::of_system("bench-standby", "standby", 2, 3, "");
    c.start_all();
    c.wait_ready(Duration::from_secs(30)).await;

    // Throughput and latency.
    let spec = LoadSpec {
        duration_ms: seconds * 1000,
        concurrency: workers,
        record: false,
    };
    let load = summarize(&c.load_clients(&spec).await);
    println!(
        "  load: {:.0} ops/s over {seconds} s ({workers} workers x 3 clients; 10% lookups), p50 {:.2} ms, p99 {:.2} ms (worst client)",
        load.ok_per_second,
        load.p50_ms,
        load.p99_ms,
    );

    // Failover time.
    let mut times = Vec::new();
    for k in 0..kills {
        let Some((primary, standby)) = settled(&c, Duration::from_secs(15)).await else {
            println!("  kill {k}: the servers did not settle within 15 s; stopping");
            break;
        };
        let Some(pid) = c.pid(&primary) else { break };
        let killed = Instant::now();
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
        let mut took = None;
        while killed.elapsed() < Duration::from_secs(10) {
            let op: OpReply<Reply> = c
                .op_as(
                    "c1",
                    &Request::Deposit {
                        account: 2,
                        amount: 1,
                    },
                )
                .await;
            if let Reply::Done { server, .. } = &op.reply {
                if *server == standby {
                    took = Some(killed.elapsed());
                    break;
                }
            }
        }
        c.kill(&primary);
        c.start(&primary);
        match took {
            Some(t) => times.push(t.as_secs_f64() * 1000.0),
            None => println!("  kill {k}: no write acknowledged by {standby} within 10 s"),
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "  failover (SIGKILL of the primary to the first write acknowledged by the new one), {} kills: p50 {:.0} ms, p99 {:.0} ms, min {:.0} ms, max {:.0} ms",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.first().copied().unwrap_or(f64::NAN),
        times.last().copied().unwrap_or(f64::NAN),
    );
}
