//! Packet faults measured over real UDP on 127.0.0.1: a client sends numbered
//! datagrams through one proxy link to an echo server and measures what comes
//! back. Faults are set on the forward direction only, so the echo path is clean.
//!
//! Tolerances are wide on purpose: the machine may be a loaded 2-core box, so
//! statistical checks use several standard deviations and timing checks only
//! bound from below or loosely from above.

mod proxy_util;

use std::collections::HashSet;
use std::time::Duration;

use faultline_chaos::proxy::{FaultSpec, Link, Proxy, ProxyConfig};
use proxy_util::*;

fn spec(json: &str) -> FaultSpec {
    serde_json::from_str(json).expect("test spec parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_both_ways_without_faults() {
    let (proxy, _echo, listen) = one_link(None).await;
    let n = 300;
    let rx = round_trip(
        listen,
        Traffic {
            size: 200,
            ..Traffic::new(n)
        },
    )
    .await;
    assert!(rx.len() as u64 >= n * 98 / 100, "got {} of {n}", rx.len());
    let seqs: HashSet<u64> = rx.iter().map(|r| r.seq).collect();
    assert_eq!(seqs.len(), rx.len(), "no duplicates without faults");
    assert!(rx.iter().all(|r| r.len == 200));
    let stats = proxy.stats();
    let link = &stats.links[0];
    assert!(link.counters.forwarded_packets >= rx.len() as u64);
    assert_eq!(
        link.counters.forwarded_bytes,
        link.counters.forwarded_packets * 200
    );
    assert_eq!(link.reverse_counters.forwarded_packets, rx.len() as u64);
    assert_eq!(link.counters.dropped.values().sum::<u64>(), 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_links_carry_both_directions_and_reverse_uses_other_links_faults() {
    // Nodes a and b each run an echo server; a reaches b through link a->b and
    // b reaches a through link b->a. Faults on b->a must also hit the replies
    // that b sends to a over link a->b.
    let ea = echo().await;
    let eb = echo().await;
    let cfg = ProxyConfig::new(vec![
        Link::new("a", "b", localhost(), eb.addr),
        Link::new("b", "a", localhost(), ea.addr).with_faults(FaultSpec::blackhole()),
    ]);
    let proxy = Proxy::start(cfg).await.expect("start");
    let ab = proxy.listen_addr("a", "b").expect("a->b");
    let rx = round_trip(
        ab,
        Traffic {
            size: 64,
            batch: 10,
            idle: Duration::from_millis(400),
            ..Traffic::new(50)
        },
    )
    .await;
    assert!(
        rx.is_empty(),
        "replies b->a are blackholed by link b->a's faults"
    );
    let stats = proxy.stats();
    let l = stats.links.iter().find(|l| l.from == "a").expect("a->b");
    assert!(l.counters.forwarded_packets >= 45, "{:?}", l.counters);
    assert!(
        l.reverse_counters.dropped["blackhole"] >= 45,
        "{:?}",
        l.reverse_counters
    );
    // Healing b->a restores the echo path.
    proxy.heal();
    let rx = round_trip(
        ab,
        Traffic {
            size: 64,
            batch: 10,
            ..Traffic::new(50)
        },
    )
    .await;
    assert!(rx.len() >= 48, "got {}", rx.len());
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_probability_is_close_to_configured() {
    let (proxy, _echo, listen) = one_link(Some(spec(r#"{"drop":0.3}"#))).await;
    let n = 2000u64;
    let rx = round_trip(listen, Traffic::new(n)).await;
    let c = proxy.stats().links[0].counters.clone();
    let seen = c.forwarded_packets + c.dropped["loss"];
    assert!(seen >= n * 98 / 100, "proxy saw {seen} of {n}");
    // Binomial sd is about 0.01; 0.05 is five of them.
    let rate = c.dropped["loss"] as f64 / seen as f64;
    assert!((rate - 0.3).abs() < 0.05, "proxy drop rate {rate}");
    let e2e = 1.0 - rx.len() as f64 / n as f64;
    eprintln!("drop: proxy rate {rate:.3}, end-to-end {e2e:.3}");
    assert!((e2e - 0.3).abs() < 0.06, "end-to-end loss {e2e}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_loss_comes_in_bursts() {
    // pi_bad = 0.02 / 0.22 = 9 % loss, mean burst length 1 / 0.2 = 5.
    let (proxy, _echo, listen) = one_link(Some(spec(
        r#"{"burst":{"p_enter_bad":0.02,"p_leave_bad":0.2}}"#,
    )))
    .await;
    let n = 2000u64;
    let rx = round_trip(listen, Traffic::new(n)).await;
    let got: HashSet<u64> = rx.iter().map(|r| r.seq).collect();
    let lost: Vec<bool> = (0..n).map(|s| !got.contains(&s)).collect();
    let loss = lost.iter().filter(|l| **l).count() as f64 / n as f64;
    assert!((0.03..0.2).contains(&loss), "loss {loss}");
    let bursts = lost.windows(2).filter(|w| !w[0] && w[1]).count() + usize::from(lost[0]);
    let mean_burst = lost.iter().filter(|l| **l).count() as f64 / bursts.max(1) as f64;
    eprintln!("burst: loss {loss:.3}, mean burst length {mean_burst:.2}");
    // Independent loss at 9 % would give runs of about 1.1.
    assert!(mean_burst > 2.5, "mean burst length {mean_burst}");
    let c = &proxy.stats().links[0].counters;
    assert!(c.dropped["burst"] > 0 && c.dropped["loss"] == 0, "{c:?}");
    proxy.shutdown().await;
}

/// 150 datagrams 3 ms apart through a 20 ms +- 5 ms delay; returns RTTs and
/// the proxy's own measured mean.
async fn delay_run(dist: &str) -> (Vec<Duration>, f64) {
    let s = spec(&format!(
        r#"{{"delay":{{"ms":20,"jitter_ms":5,"distribution":"{dist}"}}}}"#
    ));
    let (proxy, _echo, listen) = one_link(Some(s)).await;
    let n = 150u64;
    let rx = round_trip(
        listen,
        Traffic {
            size: 64,
            batch: 1,
            pause: Duration::from_millis(3),
            ..Traffic::new(n)
        },
    )
    .await;
    assert!(rx.len() as u64 >= n * 95 / 100, "{dist}: got {}", rx.len());
    let c = proxy.stats().links[0].counters.clone();
    assert!(c.delayed as usize >= rx.len() * 9 / 10, "{dist}: {c:?}");
    proxy.shutdown().await;
    let rtts: Vec<Duration> = rx.iter().map(|r| r.rtt).collect();
    eprintln!(
        "delay {dist}: mean rtt {:.2} ms, proxy-measured mean {:.2} ms",
        mean_ms(&rtts),
        c.added_delay_mean_ms
    );
    (rtts, c.added_delay_mean_ms)
}

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_uniform_mean_and_floor() {
    let (rtts, proxy_mean) = delay_run("uniform").await;
    let mean = mean_ms(&rtts);
    assert!((18.0..30.0).contains(&mean), "mean rtt {mean}");
    assert!(
        (18.0..30.0).contains(&proxy_mean),
        "proxy mean {proxy_mean}"
    );
    let min = rtts.iter().map(ms).fold(f64::MAX, f64::min);
    assert!(
        min >= 14.0,
        "uniform never goes below 15 ms (less timer slack): min {min}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_normal_mean_and_spread() {
    let (rtts, proxy_mean) = delay_run("normal").await;
    let mean = mean_ms(&rtts);
    assert!((18.0..30.0).contains(&mean), "mean rtt {mean}");
    assert!(
        (18.0..30.0).contains(&proxy_mean),
        "proxy mean {proxy_mean}"
    );
    // About 11 % of a normal(20, 5) falls below 14 ms; uniform(15, 25) never does.
    let below = rtts.iter().filter(|d| ms(d) < 14.0).count();
    assert!(below >= 3, "only {below} of {} below 14 ms", rtts.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_exponential_mean_floor_and_tail() {
    let (rtts, proxy_mean) = delay_run("exponential").await;
    let mean = mean_ms(&rtts);
    assert!((18.0..30.0).contains(&mean), "mean rtt {mean}");
    assert!(
        (18.0..30.0).contains(&proxy_mean),
        "proxy mean {proxy_mean}"
    );
    let min = rtts.iter().map(ms).fold(f64::MAX, f64::min);
    assert!(
        min >= 14.0,
        "shifted exponential starts at 15 ms (less timer slack): min {min}"
    );
    // 7 % of samples exceed 28 ms; with 150 samples at least one does.
    let max = rtts.iter().map(ms).fold(0.0, f64::max);
    assert!(max >= 28.0, "no tail: max {max}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_sends_extra_copies() {
    let (proxy, _echo, listen) = one_link(Some(spec(r#"{"duplicate":0.5}"#))).await;
    let n = 400u64;
    let rx = round_trip(
        listen,
        Traffic {
            want: 2 * n as usize,
            ..Traffic::new(n)
        },
    )
    .await;
    let extra = rx.len() as i64 - n as i64;
    eprintln!("duplicate: {extra} extra copies of {n}");
    // Expected 200, sd 10.
    assert!((150..=250).contains(&extra), "extra copies {extra}");
    let distinct: HashSet<u64> = rx.iter().map(|r| r.seq).collect();
    assert!(distinct.len() as u64 >= n * 98 / 100);
    let c = &proxy.stats().links[0].counters;
    assert!((150..=250).contains(&c.duplicated), "{c:?}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorder_delivers_out_of_order_without_loss() {
    let (proxy, _echo, listen) =
        one_link(Some(spec(r#"{"reorder":{"window":4,"max_hold_ms":50}}"#))).await;
    let n = 200u64;
    let rx = round_trip(
        listen,
        Traffic {
            batch: 10,
            ..Traffic::new(n)
        },
    )
    .await;
    assert!(rx.len() as u64 >= n * 98 / 100, "got {}", rx.len());
    let mut max_seen = None;
    let mut late = 0;
    for r in &rx {
        match max_seen {
            Some(m) if r.seq < m => late += 1,
            _ => max_seen = Some(r.seq),
        }
    }
    eprintln!("reorder: {late} of {} late", rx.len());
    // With every datagram held and a random one of 4 released, about 3 in 4
    // come out behind a later one.
    assert!(late >= 40, "only {late} datagrams out of order");
    let c = &proxy.stats().links[0].counters;
    assert!(c.reordered >= 40, "{c:?}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limit_caps_throughput() {
    // 50 kB/s limit, 100 kB/s offered for 2 s in 1000-byte datagrams.
    let (proxy, _echo, listen) = one_link(Some(spec(
        r#"{"bandwidth":{"bytes_per_sec":50000,"queue_bytes":20000}}"#,
    )))
    .await;
    let n = 200u64;
    let rx = round_trip(
        listen,
        Traffic {
            size: 1000,
            batch: 5,
            pause: Duration::from_millis(50),
            ..Traffic::new(n)
        },
    )
    .await;
    assert!(rx.len() >= 20, "got {}", rx.len());
    let first = rx.iter().map(|r| r.at).min().expect("some");
    let last = rx.iter().map(|r| r.at).max().expect("some");
    let secs = (last - first).as_secs_f64();
    let bytes: usize = rx.iter().map(|r| r.len).sum();
    let rate = bytes as f64 / secs.max(0.001);
    eprintln!(
        "bandwidth: {rate:.0} B/s over {secs:.2} s, {} datagrams",
        rx.len()
    );
    assert!(
        (25_000.0..75_000.0).contains(&rate),
        "throughput {rate} B/s over {secs} s"
    );
    let c = &proxy.stats().links[0].counters;
    assert!(c.dropped["bandwidth"] >= 20, "{c:?}");
    assert!(c.delayed > 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_drops_everything() {
    let (proxy, _echo, listen) = one_link(Some(FaultSpec::blackhole())).await;
    let n = 100u64;
    let rx = round_trip(
        listen,
        Traffic {
            want: 1,
            idle: Duration::from_millis(500),
            ..Traffic::new(n)
        },
    )
    .await;
    assert!(rx.is_empty(), "got {}", rx.len());
    let c = &proxy.stats().links[0].counters;
    assert_eq!(c.forwarded_packets, 0);
    assert!(c.dropped["blackhole"] >= 95, "{c:?}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stops_when_shutdown_future_completes() {
    let e = echo().await;
    let cfg = ProxyConfig::new(vec![Link::new("a", "b", localhost(), e.addr)]);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(faultline_chaos::proxy::run(cfg, async move {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = tx.send(());
    let res = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run returns after shutdown")
        .expect("task");
    assert!(res.is_ok(), "{res:?}");
}

/// A target named by DNS (as a Kubernetes Service is) is looked up when the
/// proxy starts and forwarded to. (A name that does not resolve is not
/// tried: its lookup would leave the machine.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_named_by_dns_is_looked_up_at_start() {
    let e = echo().await;
    let by_name = format!("localhost:{}", e.addr.port());
    let cfg = ProxyConfig::new(vec![Link::new("a", "b", localhost(), by_name)]);
    let proxy = Proxy::start(cfg).await.expect("start");
    let ab = proxy.listen_addr("a", "b").expect("a->b");
    let rx = round_trip(ab, Traffic::new(20)).await;
    assert!(
        rx.len() >= 18,
        "echoes through a target named by DNS: {}",
        rx.len()
    );
    proxy.shutdown().await;
}
