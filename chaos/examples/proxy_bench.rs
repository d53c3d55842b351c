//! Benchmark of the UDP proxy: 1,200-byte datagrams to an echo server, direct
//! and through one proxy link with no faults, side by side in one run.
//!
//! Latency is measured by ping-pong (one datagram in flight), alternating
//! direct and proxied blocks so machine noise hits both alike. A proxied round
//! trip crosses the proxy twice (forward and reverse), so the added time per
//! crossing is half the added round-trip time. Throughput is measured with a
//! fixed window of datagrams in flight. A third column repeats the proxied
//! runs with the fault engine engaged (a drop probability that never fires).
//!
//! Run: `cargo run --release -p faultline-chaos --example proxy_bench -- [samples] [proxy_threads]`
//! (`proxy_threads` 0 = current-thread runtime; default 2 workers, one per core here).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline_chaos::proxy::{FaultSpec, Link, Proxy, ProxyConfig, ProxyController};

const SIZE: usize = 1200;
const ROUNDS: usize = 10;
const WINDOW: usize = 32;
const THROUGHPUT_TIME: Duration = Duration::from_secs(2);
const RECV_TIMEOUT: Duration = Duration::from_millis(200);

/// Blocking echo server on its own thread, until `stop` is set.
fn start_echo(stop: Arc<AtomicBool>) -> std::io::Result<SocketAddr> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(RECV_TIMEOUT))?;
    let addr = sock.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        // Each turn either echoes or times out, so the flag is seen within RECV_TIMEOUT.
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, src)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], src);
            }
        }
    });
    Ok(addr)
}

type Started = (
    ProxyController,
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
);

/// Run the proxy on its own thread and runtime, as the `proxy` subcommand
/// would: `threads == 0` is a current-thread runtime, otherwise a
/// multi-thread runtime with that many workers.
fn start_proxy(echo: SocketAddr, threads: usize) -> anyhow::Result<Started> {
    let rt = if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    let cfg = ProxyConfig::new(vec![Link::new(
        "client",
        "echo",
        "127.0.0.1:0".parse()?,
        echo,
    )]);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        rt.block_on(async move {
            match Proxy::start(cfg).await {
                Ok(handle) => {
                    let _ = ready_tx.send(Ok(handle.controller()));
                    let _ = stop_rx.await;
                    handle.shutdown().await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
    });
    let controller = ready_rx.recv()??;
    let via = controller
        .listen_addr("client", "echo")
        .ok_or_else(|| anyhow::anyhow!("proxy has no link client -> echo"))?;
    Ok((controller, via, stop_tx, thread))
}

/// `n` sequential round trips; returns RTTs in microseconds and the number lost.
fn ping_pong(sock: &UdpSocket, dest: SocketAddr, n: usize) -> (Vec<f64>, usize) {
    let payload = [0x5au8; SIZE];
    let mut buf = [0u8; 2048];
    let mut rtts = Vec::with_capacity(n);
    let mut lost = 0;
    for _ in 0..n {
        let t0 = Instant::now();
        if sock.send_to(&payload, dest).is_err() {
            lost += 1;
            continue;
        }
        match sock.recv_from(&mut buf) {
            Ok(_) => rtts.push(t0.elapsed().as_secs_f64() * 1e6),
            Err(_) => lost += 1,
        }
    }
    (rtts, lost)
}

/// Datagrams echoed per second with `WINDOW` in flight.
fn throughput(sock: &UdpSocket, dest: SocketAddr) -> f64 {
    let payload = [0x5au8; SIZE];
    let mut buf = [0u8; 2048];
    for _ in 0..WINDOW {
        let _ = sock.send_to(&payload, dest);
    }
    let start = Instant::now();
    let mut got: u64 = 0;
    // Bounded by THROUGHPUT_TIME: every iteration either receives or times out.
    while start.elapsed() < THROUGHPUT_TIME {
        match sock.recv_from(&mut buf) {
            Ok(_) => {
                got += 1;
                let _ = sock.send_to(&payload, dest);
            }
            // Lost datagrams shrink the window; refill it.
            Err(_) => {
                for _ in 0..WINDOW {
                    let _ = sock.send_to(&payload, dest);
                }
            }
        }
    }
    let rate = got as f64 / start.elapsed().as_secs_f64();
    // Drain what is still in flight so the next measurement starts clean.
    let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
    for _ in 0..(4 * WINDOW) {
        if sock.recv_from(&mut buf).is_err() {
            break;
        }
    }
    let _ = sock.set_read_timeout(Some(RECV_TIMEOUT));
    rate
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let samples: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let threads: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2);

    let echo_stop = Arc::new(AtomicBool::new(false));
    let echo = start_echo(echo_stop.clone())?;
    let (proxy, via, stop, proxy_thread) = start_proxy(echo, threads)?;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(RECV_TIMEOUT))?;

    // Warm up both paths.
    ping_pong(&sock, echo, 1000);
    ping_pong(&sock, via, 1000);

    // The third mode engages the fault engine on the forward direction with a
    // drop probability that never fires: the cost of the per-direction lock and RNG.
    let engine = FaultSpec {
        drop: 1e-12,
        ..FaultSpec::default()
    };
    let lease = Some(Duration::from_secs(3600));
    let per_round = (samples / ROUNDS).max(1);
    let (mut direct, mut proxied, mut engaged) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lost_d, mut lost_p, mut lost_e) = (0, 0, 0);
    // Rounds interleave the three modes so machine noise hits them alike.
    for _ in 0..ROUNDS {
        proxy.clear_faults("client", "echo")?;
        let (r, l) = ping_pong(&sock, echo, per_round);
        direct.extend(r);
        lost_d += l;
        let (r, l) = ping_pong(&sock, via, per_round);
        proxied.extend(r);
        lost_p += l;
        proxy.set_faults("client", "echo", engine.clone(), lease)?;
        let (r, l) = ping_pong(&sock, via, per_round);
        engaged.extend(r);
        lost_e += l;
    }
    let pps_engaged = throughput(&sock, via);
    proxy.clear_faults("client", "echo")?;
    let pps_direct = throughput(&sock, echo);
    let pps_proxy = throughput(&sock, via);
    let stats = proxy.stats();
    let link = stats.links.first();
    let internal_fwd = link.map_or(f64::NAN, |l| l.counters.added_delay_mean_ms * 1000.0);
    let internal_rev = link.map_or(f64::NAN, |l| {
        l.reverse_counters.added_delay_mean_ms * 1000.0
    });

    direct.sort_by(f64::total_cmp);
    proxied.sort_by(f64::total_cmp);
    engaged.sort_by(f64::total_cmp);
    let (d50, d99) = (percentile(&direct, 0.5), percentile(&direct, 0.99));
    let (p50, p99) = (percentile(&proxied, 0.5), percentile(&proxied, 0.99));
    let (e50, e99) = (percentile(&engaged, 0.5), percentile(&engaged, 0.99));
    let runtime = if threads == 0 {
        "current-thread".to_string()
    } else {
        format!("multi-thread, {threads} workers")
    };
    println!("proxy_bench: {SIZE}-byte UDP datagrams on 127.0.0.1, proxy runtime: {runtime}");
    println!(
        "round trips: {} direct ({lost_d} lost), {} proxied ({lost_p} lost), {} proxied with engine ({lost_e} lost)",
        direct.len(),
        proxied.len(),
        engaged.len()
    );
    println!();
    println!(
        "{:<28}{:>12}{:>12}{:>16}",
        "", "direct", "via proxy", "proxy+engine"
    );
    println!(
        "{:<28}{:>12.1}{:>12.1}{:>16.1}",
        "RTT p50 (us)", d50, p50, e50
    );
    println!(
        "{:<28}{:>12.1}{:>12.1}{:>16.1}",
        "RTT p99 (us)", d99, p99, e99
    );
    println!(
        "{:<28}{:>12.1}{:>12.1}{:>16.1}",
        "added RTT p50 (us)",
        0.0,
        p50 - d50,
        e50 - d50
    );
    println!(
        "{:<28}{:>12.1}{:>12.1}{:>16.1}",
        "added RTT p99 (us)",
        0.0,
        p99 - d99,
        e99 - d99
    );
    println!(
        "{:<28}{:>12.0}{:>12.0}{:>16.0}",
        "throughput (datagrams/s)", pps_direct, pps_proxy, pps_engaged
    );
    println!(
        "{:<28}{:>12.1}{:>12.1}{:>16.1}",
        "throughput (MB/s)",
        pps_direct * SIZE as f64 / 1e6,
        pps_proxy * SIZE as f64 / 1e6,
        pps_engaged * SIZE as f64 / 1e6
    );
    println!();
    println!(
        "added per proxy crossing p50 / p99 (us): {:.1} / {:.1}  (a round trip crosses twice; no faults)",
        (p50 - d50) / 2.0,
        (p99 - d99) / 2.0
    );
    println!(
        "proxy-internal mean receive-to-send over the whole run (us): forward {internal_fwd:.1}, reverse {internal_rev:.1}"
    );

    let _ = stop.send(());
    let _ = proxy_thread.join();
    echo_stop.store(true, Ordering::Relaxed);
    Ok(())
}
