//! Shared helpers of the proxy integration tests: an echo server, numbered
//! datagrams, and bounded send/collect loops over real UDP on 127.0.0.1.
//!
//! Lives in a directory so cargo does not build it as a test target of its own.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use faultline_chaos::proxy::{ControlConfig, FaultSpec, Link, Proxy, ProxyConfig, ProxyHandle};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub const TOKEN: &str = "test-token";

pub fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// UDP echo server; stops when dropped.
pub struct Echo {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn echo() -> Echo {
    let sock = UdpSocket::bind(localhost()).await.expect("bind echo");
    let addr = sock.local_addr().expect("echo addr");
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        // Ends when the test aborts the task.
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, src)) => {
                    let _ = sock.send_to(&buf[..n], src).await;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    });
    Echo { addr, task }
}

/// Datagram carrying a sequence number and its send time (ns since `base`).
pub fn encode(seq: u64, base: Instant, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size.max(16));
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
    v.resize(size.max(16), 0xab);
    v
}

pub fn decode(buf: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(buf.get(0..8)?.try_into().ok()?);
    let sent = u64::from_le_bytes(buf.get(8..16)?.try_into().ok()?);
    Some((seq, sent))
}

#[derive(Debug, Clone, Copy)]
pub struct Rx {
    pub seq: u64,
    pub rtt: Duration,
    pub at: Instant,
    pub len: usize,
}

/// Send `n` numbered datagrams in batches of `batch`, pausing between batches
/// so the kernel's socket buffers never overflow (losses must come from the proxy).
pub async fn send_numbered(
    sock: &UdpSocket,
    dest: SocketAddr,
    n: u64,
    size: usize,
    batch: u64,
    pause: Duration,
    base: Instant,
) {
    for seq in 0..n {
        let _ = sock.send_to(&encode(seq, base, size), dest).await;
        if (seq + 1) % batch.max(1) == 0 {
            tokio::time::sleep(pause).await;
        }
    }
}

/// Receive until `want` datagrams arrived, nothing arrived for `idle`, or `max` passed.
pub async fn collect(
    sock: &UdpSocket,
    want: usize,
    idle: Duration,
    max: Duration,
    base: Instant,
) -> Vec<Rx> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let end = Instant::now() + max;
    while out.len() < want {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let wait = idle.min(end - now);
        match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => {
                let at = Instant::now();
                if let Some((seq, sent)) = decode(&buf[..n]) {
                    let sent_at = base + Duration::from_nanos(sent);
                    out.push(Rx {
                        seq,
                        rtt: at.saturating_duration_since(sent_at),
                        at,
                        len: n,
                    });
                }
            }
            Ok(Err(_)) => continue,
            Err(_) => break,
        }
    }
    out
}

/// A numbered stream of datagrams and how long to wait for the echoes.
#[derive(Debug, Clone, Copy)]
pub struct Traffic {
    pub n: u64,
    pub size: usize,
    /// Datagrams per batch; `pause` between batches.
    pub batch: u64,
    pub pause: Duration,
    /// Stop collecting after this many echoes...
    pub want: usize,
    /// ...or after this long without one...
    pub idle: Duration,
    /// ...or after this long in total.
    pub max: Duration,
}

impl Traffic {
    /// `n` 32-byte datagrams, 20 per 2 ms, wait for `n` echoes.
    pub fn new(n: u64) -> Self {
        Traffic {
            n,
            size: 32,
            batch: 20,
            pause: Duration::from_millis(2),
            want: n as usize,
            idle: Duration::from_millis(600),
            max: Duration::from_secs(20),
        }
    }
}

/// Send `t.n` datagrams through `dest` and collect the echoes concurrently.
pub async fn round_trip(dest: SocketAddr, t: Traffic) -> Vec<Rx> {
    let sock = Arc::new(UdpSocket::bind(localhost()).await.expect("bind client"));
    let base = Instant::now();
    let rx = {
        let sock = sock.clone();
        tokio::spawn(async move { collect(&sock, t.want, t.idle, t.max, base).await })
    };
    send_numbered(&sock, dest, t.n, t.size, t.batch, t.pause, base).await;
    rx.await.expect("collector task")
}

pub fn control() -> ControlConfig {
    ControlConfig {
        listen: localhost(),
        token: TOKEN.to_string(),
    }
}

/// Proxy with one link a -> b in front of a fresh echo server.
pub async fn one_link(faults: Option<FaultSpec>) -> (ProxyHandle, Echo, SocketAddr) {
    let e = echo().await;
    let mut link = Link::new("a", "b", localhost(), e.addr);
    link.faults = faults;
    let mut cfg = ProxyConfig::new(vec![link]);
    cfg.seed = 1234;
    cfg.control = Some(control());
    let proxy = Proxy::start(cfg).await.expect("proxy starts");
    let listen = proxy.listen_addr("a", "b").expect("link a -> b");
    (proxy, e, listen)
}

/// Mean of durations in milliseconds.
pub fn mean_ms(v: &[Duration]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter().map(|d| d.as_secs_f64() * 1000.0).sum::<f64>() / v.len() as f64
}
