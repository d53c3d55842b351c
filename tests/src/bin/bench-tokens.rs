//! `make bench`: token pays per second and pay latency for n = 3, 5, 7
//! servers with 6 clients on loopback, each client running the closed-loop
//! load generator inside its node, plus the peak RSS of the servers.
//! Figures are printed, never asserted: this machine is shared and noisy.
//!
//! BENCH_SECONDS (default 10) and BENCH_CONCURRENCY (workers per client,
//! default 16) tune a run; BENCH_SERVERS (default "3,5,7") picks the sizes.

use faultline_e2e::TestCluster;
use serde_json::{json, Value};
use std::time::Duration;

fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn load_all(c: &TestCluster, ms: u64, workers: usize) -> Vec<Value> {
    let clients = c.ids("client");
    let body = json!({"duration_ms": ms, "concurrency": workers, "record": false});
    let runs = clients.iter().map(|id| c.post(id, "/load", &body));
    futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: u64 = env("BENCH_SECONDS", 10);
    let workers: usize = env("BENCH_CONCURRENCY", 16);
    let sizes: Vec<usize> = std::env::var("BENCH_SERVERS")
        .unwrap_or_else(|_| "3,5,7".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "token pays on loopback: 6 clients x {workers} workers, {secs} s per size, binaries in {}",
        faultline_e2e::bin_dir().display()
    );
    println!(
        "{:>7} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8} {:>13}",
        "servers", "pays/s", "p50 ms", "p99 ms", "max ms", "failed", "unknown", "server RSS MB"
    );
    for n in sizes {
        let mut c = TestCluster::tokens(&format!("bench{n}"), n, 6, "");
        c.start_all();
        c.wait_ready(Duration::from_secs(30)).await;
        load_all(&c, 1000, workers).await; // warm-up: connections, allocator
        let stats = load_all(&c, secs * 1000, workers).await;
        let sum = |k: &str| {
            stats
                .iter()
                .map(|s| s[k].as_f64().unwrap_or(0.0))
                .sum::<f64>()
        };
        let max = |k: &str| {
            stats
                .iter()
                .map(|s| s[k].as_f64().unwrap_or(0.0))
                .fold(0.0, f64::max)
        };
        let mean = |k: &str| sum(k) / stats.len().max(1) as f64;
        let rss = c
            .ids("server")
            .iter()
            .filter_map(|id| c.pid(id))
            .map(peak_rss_mb)
            .fold(0.0, f64::max);
        println!(
            "{n:>7} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>8} {:>13.1}",
            sum("pays_per_second"),
            mean("pay_p50_ms"),
            max("pay_p99_ms"),
            max("pay_max_ms"),
            sum("pays_failed"),
            sum("pays_unknown"),
            rss
        );
    }
}
