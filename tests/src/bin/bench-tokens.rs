//! `make bench`: token pays per second and pay latency for n = 3, 5, 7
//! servers with 6 clients on loopback, each client running the closed-loop
//! load generator inside its node, plus the peak RSS of the servers.
//! Figures are printed, never asserted: this machine is shared and noisy.
//!
//! The same load also runs with every dial going through the packet proxy
//! (no faults set), side by side with the direct run, to show what the proxy
//! costs.
//!
//! BENCH_SECONDS (default 10) and BENCH_CONCURRENCY (workers per client,
//! default 16) tune a run; BENCH_RUNS (default 3) is how many timed runs each
//! size gets on the same cluster, reported as their median (and range);
//! BENCH_SERVERS (default "3,5,7") picks the sizes, BENCH_PROXY_SERVERS
//! (default "5") the sizes also run through the proxy. It prints what it ran
//! on (cores, load average before the run, binaries), since a figure from a
//! busy machine or another build is not comparable.

use faultline_e2e::bench::{env, machine};
use faultline_e2e::TestCluster;
use faultline_node::api::{LoadSpec, LoadStats};
use std::time::Duration;

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

async fn load_all(c: &TestCluster, ms: u64, workers: usize) -> Vec<LoadStats> {
    let clients = c.ids("client");
    let spec = LoadSpec {
        duration_ms: ms,
        concurrency: workers,
        record: false,
    };
    let body = serde_json::to_value(&spec).expect("a load spec is plain data");
    let runs = clients.iter().map(|id| c.post(id, "/load", &body));
    futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|(_, v)| serde_json::from_value(v).expect("/load answers LoadStats"))
        .collect()
}

/// Starts a proxy with one port per directed link and rewrites the cluster
/// file so every dial goes through it, as the chaos controller does.
async fn route_through_proxy(c: &TestCluster) -> faultline_chaos::proxy::ProxyHandle {
    use faultline_chaos::proxy::{Link, Proxy, ProxyConfig};
    let addr = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let mut links = Vec::new();
    let mut spare = c.spare_ports.iter().copied();
    for a in &c.nodes {
        for b in &c.nodes {
            if a.id != b.id {
                let (Some(port), Some(up)) = (spare.next(), spare.next()) else {
                    panic!("two spare ports per link");
                };
                let link = Link::new(a.id.clone(), b.id.clone(), addr(port), addr(b.listen));
                links.push(link.with_upstream(addr(up)));
            }
        }
    }
    let proxy = Proxy::start(ProxyConfig::new(links)).await.expect("proxy");
    let text = std::fs::read_to_string(&c.file).expect("cluster file");
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    if let Some(nodes) = doc.get_mut("nodes").and_then(|n| n.as_sequence_mut()) {
        for n in nodes.iter_mut() {
            let id = n
                .get("id")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string();
            let mut dial = serde_yaml::Mapping::new();
            for peer in &c.nodes {
                if id < peer.id {
                    if let Some(a) = proxy.listen_addr(&id, &peer.id) {
                        dial.insert(peer.id.clone().into(), a.to_string().into());
                    }
                }
            }
            if let Some(m) = n.as_mapping_mut() {
                m.insert("dial".into(), serde_yaml::Value::Mapping(dial));
            }
        }
    }
    std::fs::write(&c.file, serde_yaml::to_string(&doc).expect("yaml")).expect("write");
    proxy
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: u64 = env("BENCH_SECONDS", 10);
    let repeats: usize = env::<usize>("BENCH_RUNS", 3).max(1);
    let workers: usize = env("BENCH_CONCURRENCY", 16);
    let list = |k: &str, d: &str| -> Vec<usize> {
        std::env::var(k)
            .unwrap_or_else(|_| d.into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    };
    let sizes = list("BENCH_SERVERS", "3,5,7");
    let proxied = list("BENCH_PROXY_SERVERS", "5");
    let mut runs: Vec<(usize, bool)> = Vec::new();
    for n in sizes {
        runs.push((n, false));
        if proxied.contains(&n) {
            runs.push((n, true));
        }
    }
    println!(
        "token pays on loopback: 6 clients x {workers} workers, median of {repeats} runs of {secs} s per size, binaries in {}",
        faultline_e2e::bin_dir().display()
    );
    println!("machine: {} (load averages before the run)", machine());
    println!(
        "{:>7} {:>7} {:>10} {:>15} {:>9} {:>9} {:>9} {:>8} {:>8} {:>13}",
        "servers",
        "path",
        "pays/s",
        "range",
        "p50 ms",
        "p99 ms",
        "max ms",
        "failed",
        "unknown",
        "server RSS MB"
    );
    for (n, via_proxy) in runs {
        let name = format!("bench{n}{}", if via_proxy { "p" } else { "" });
        let mut c = TestCluster::tokens(&name, n, 6, "");
        let proxy = if via_proxy {
            Some(route_through_proxy(&c).await)
        } else {
            None
        };
        c.start_all();
        c.wait_ready(Duration::from_secs(30)).await;
        load_all(&c, 1000, workers).await; // warm-up: connections, allocator
                                           // Timed runs on the same cluster; the median run is reported.
        let mut timed: Vec<(f64, Vec<LoadStats>)> = Vec::new();
        for _ in 0..repeats {
            let stats = load_all(&c, secs * 1000, workers).await;
            let rate: f64 = stats.iter().map(|s| s.ok_per_second).sum();
            timed.push((rate, stats));
        }
        timed.sort_by(|a, b| a.0.total_cmp(&b.0));
        let range = format!(
            "{:.0}-{:.0}",
            timed.first().map_or(0.0, |t| t.0),
            timed.last().map_or(0.0, |t| t.0)
        );
        let stats = timed.swap_remove(timed.len() / 2).1;
        let sum = |f: fn(&LoadStats) -> f64| stats.iter().map(f).sum::<f64>();
        let max = |f: fn(&LoadStats) -> f64| stats.iter().map(f).fold(0.0, f64::max);
        let mean = |f: fn(&LoadStats) -> f64| sum(f) / stats.len().max(1) as f64;
        let rss = c
            .ids("server")
            .iter()
            .filter_map(|id| c.pid(id))
            .map(peak_rss_mb)
            .fold(0.0, f64::max);
        println!(
            "{n:>7} {:>7} {:>10.0} {:>15} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>8} {:>13.1}",
            if via_proxy { "proxy" } else { "direct" },
            sum(|s| s.ok_per_second),
            range,
            mean(|s| s.p50_ms),
            max(|s| s.p99_ms),
            max(|s| s.max_ms),
            sum(|s| s.failed as f64),
            sum(|s| s.unknown as f64),
            rss
        );
        drop(c);
        if let Some(p) = proxy {
            p.shutdown().await;
        }
    }
}
