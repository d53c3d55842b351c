//! `make bench`: replication (seed 002) in each mode, three replicas with
//! their LFDs (50 ms heartbeats), the GFD, the RM and three clients: the
//! requests per second and latency of the closed-loop load generator in
//! every client node, then failover time over BENCH_KILLS kills (default
//! 20): passive, the primary killed with SIGKILL to the first write
//! acknowledged by the new primary; active, the sequencer (the view's
//! first member) killed to the first acknowledged write. The detection
//! part (kill to the RM's new view) is printed beside it. Figures are
//! printed, never asserted: this machine is shared and noisy.
//!
//! BENCH_SECONDS (default 5) and BENCH_CONCURRENCY (workers per client,
//! default 16) tune the load run.

use faultline_e2e::bench::{env, machine, percentile, summarize};
use faultline_e2e::TestCluster;
use faultline_node::api::{LoadSpec, NodeState, OpReply};
use faultline_node::protocol::replication::store::Op;
use faultline_node::protocol::replication::view::View;
use faultline_node::protocol::replication::{ReplicationState, Reply};
use std::time::{Duration, Instant};

async fn state(c: &TestCluster, id: &str) -> Option<ReplicationState> {
    c.state_as::<ReplicationState>(id)
        .await
        .map(|s: NodeState<ReplicationState>| s.state)
}

/// The RM's view once it has all three replicas and each has the state
/// in that view (bounded by `within`).
async fn settled(c: &TestCluster, within: Duration) -> Option<View> {
    let t0 = Instant::now();
    'wait: while t0.elapsed() < within {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Some(v) = state(c, "m1").await.and_then(|s| s.view) else {
            continue;
        };
        if v.members.len() != 3 {
            continue;
        }
        for r in &v.members {
            match state(c, r).await {
                Some(s) if s.has_state && s.view.as_ref().map(|x| x.number) == Some(v.number) => {}
                _ => continue 'wait,
            }
        }
        return Some(v);
    }
    None
}

fn summary(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "p50 {:.0} ms, p99 {:.0} ms, min {:.0} ms, max {:.0} ms",
        percentile(v, 0.5),
        percentile(v, 0.99),
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN),
    )
}

async fn mode(name: &str, seconds: u64, workers: usize, kills: usize) {
    let extra = format!(
        "replication:\n  mode: {name}\n  heartbeat_ms: 50\n  heartbeat_timeout_ms: 150\n  \
         lfd_timeout_ms: 200\n  checkpoint_ms: 500\n  retransmit_ms: 100\n  op_deadline_ms: 10000\n"
    );
    let mut c = TestCluster::of_roles(
        &format!("bench-replication-{name}"),
        "replication",
        &[
            ("replica", "r", 3),
            ("lfd", "l", 3),
            ("gfd", "g", 1),
            ("rm", "m", 1),
            ("client", "c", 3),
        ],
        &extra,
    );
    c.start_all();
    c.wait_ready(Duration::from_secs(30)).await;
    if settled(&c, Duration::from_secs(15)).await.is_none() {
        println!("  {name}: the group did not settle within 15 s");
        return;
    }

    let spec = LoadSpec {
        duration_ms: seconds * 1000,
        concurrency: workers,
        record: false,
    };
    let load = summarize(&c.load_clients(&spec).await);
    println!(
        "  {name}: {:.0} requests/s over {seconds} s ({workers} workers x 3 clients), p50 {:.2} ms, p99 {:.2} ms (worst client)",
        load.ok_per_second,
        load.p50_ms,
        load.p99_ms,
    );

    let mut failover = Vec::new();
    let mut detection = Vec::new();
    for k in 0..kills {
        let Some(v) = settled(&c, Duration::from_secs(15)).await else {
            println!("  {name} kill {k}: the group did not settle within 15 s; stopping");
            break;
        };
        // Passive: the primary; active: the sequencer (the first member).
        let victim = v
            .primary
            .clone()
            .or_else(|| v.members.first().cloned())
            .unwrap_or_default();
        let Some(pid) = c.pid(&victim) else { break };
        let killed = Instant::now();
        let killed_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
        let watch_view = async {
            while killed.elapsed() < Duration::from_secs(10) {
                if let Some(n) = state(&c, "m1").await.and_then(|s| s.view) {
                    if n.number > v.number {
                        return Some(killed.elapsed());
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            None
        };
        let write = async {
            let mut i = 0;
            while killed.elapsed() < Duration::from_secs(10) {
                i += 1;
                let op: OpReply<Reply> = c
                    .op_as(
                        "c1",
                        &Op::Add {
                            key: format!("f{k}"),
                            n: i,
                        },
                    )
                    .await;
                if let Reply::Done { replica, view, .. } = &op.reply {
                    if *replica != victim {
                        return Some((
                            killed.elapsed(),
                            format!("{replica} in view {view} after {i} tries"),
                        ));
                    }
                }
            }
            None
        };
        let (seen, wrote) = tokio::join!(watch_view, write);
        c.kill(&victim);
        c.start(&victim);
        match wrote {
            Some((t, answered_by)) => {
                let ms = t.as_secs_f64() * 1000.0;
                if ms > 400.0 {
                    let views = c
                        .state_as::<ReplicationState>("m1")
                        .await
                        .map(|s| {
                            s.state
                                .views_made
                                .iter()
                                .filter(|m| s.clock_origin_us + m.at >= killed_unix)
                                .map(|m| {
                                    format!(
                                        "view {} {:?} primary {:?} at {} ms",
                                        m.view.number,
                                        m.view.members,
                                        m.view.primary,
                                        (s.clock_origin_us + m.at - killed_unix) / 1000
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join("; ")
                        })
                        .unwrap_or_default();
                    println!(
                        "  {name} kill {k} of {victim} was slow: {ms:.0} ms to the first write, {} to the new view ({views}; write answered by {:?})",
                        seen.map_or("never".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1000.0)),
                        answered_by
                    );
                }
                failover.push(ms);
            }
            None => println!("  {name} kill {k}: no write acknowledged within 10 s"),
        }
        if let Some(t) = seen {
            detection.push(t.as_secs_f64() * 1000.0);
        }
    }
    let who = if name == "passive" {
        "the primary"
    } else {
        "the sequencer"
    };
    println!(
        "  {name}: failover (SIGKILL of {who} to the first acknowledged write), {} kills: {}",
        failover.len(),
        summary(&mut failover)
    );
    println!(
        "  {name}: detection (SIGKILL to the RM's new view), {} kills: {}",
        detection.len(),
        summary(&mut detection)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = env("BENCH_SECONDS", 5);
    let workers: usize = env("BENCH_CONCURRENCY", 16);
    let kills: usize = env("BENCH_KILLS", 20);
    println!("bench-replication: 3 replicas, 3 LFDs (50 ms heartbeats, 150 ms timeout), GFD, RM, 3 clients; {}", machine());
    mode("passive", seconds, workers, kills).await;
    mode("active", seconds, workers, kills).await;
}
