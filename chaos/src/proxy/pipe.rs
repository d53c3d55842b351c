//! The data path: sockets of one link and the two pipes that move its datagrams.
//!
//! A link owns a listen socket (where node `from` sends) and an upstream
//! socket (from which the proxy talks to node `to`). The forward pipe reads
//! the listen socket and writes upstream; the reverse pipe reads upstream and
//! writes back to the last client address seen on the listen socket, because
//! QUIC runs both directions over one 4-tuple.
//!
//! Each pipe is one task that owns its own delay queue (a binary heap of
//! send instants woken by `sleep_until`) and reorder hold buffer, so a delayed
//! datagram never blocks an undelayed one and no lock is held across an await.
//! Datagrams without live faults skip all of that and go out straight from the
//! receive buffer.
//!
//! Healing does not flush: datagrams already queued leave at their scheduled
//! time, like packets already on a wire. A partition or blackhole that starts
//! while a datagram waits does drop it when its time comes (in-flight loss).
//! Only the last client address gets replies: two clients sharing one link's
//! listen port would steal each other's replies, so give each node its own link.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::Link;
use super::control::{Core, Snapshot};
use super::error::ProxyError;
use super::faults::{DropReason, Plan, Verdict};

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;
/// Memory guard per pipe: past this the datagram is dropped with reason `overflow`.
const MAX_QUEUED_PACKETS: usize = 20_000;
const MAX_QUEUED_BYTES: usize = 32 * 1024 * 1024;
/// After this many socket errors in a row, pause before the next receive so a
/// persistent error cannot spin a core.
const ERROR_BURST: u32 = 16;
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Datagrams read back to back after a wake-up before timers are looked at again.
const DRAIN_BATCH: usize = 32;
/// tokio timers tick per millisecond and round a deadline up to the next tick,
/// which alone would make every delay about 0.5 ms too long on average. Waking
/// half a tick early and releasing whatever is due within half a tick centres
/// the error on zero: a datagram leaves at most about 0.5 ms early or late.
const TIMER_SLACK: Duration = Duration::from_micros(500);

/// The sockets of one link, shared by its two pipes.
#[derive(Clone)]
pub(crate) struct LinkSockets {
    listen: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    /// Last source seen on the listen socket: where replies go.
    client: Arc<Mutex<Option<SocketAddr>>>,
    target: SocketAddr,
}

impl LinkSockets {
    /// Bind the listen socket on `link.listen` and an ephemeral upstream socket
    /// of the target's address family. The upstream socket stays unconnected so
    /// an ICMP error from a dead target does not turn into errors on later sends.
    pub(crate) async fn bind(link: &Link) -> Result<(Self, SocketAddr), ProxyError> {
        let what = format!("listen socket of link {} -> {}", link.from, link.to);
        let listen = UdpSocket::bind(link.listen)
            .await
            .map_err(|source| ProxyError::Bind {
                what,
                addr: link.listen,
                source,
            })?;
        let bound = listen
            .local_addr()
            .map_err(|e| ProxyError::io("reading a bound listen address", e))?;
        // Looked up once: a Kubernetes Service's address outlives its pods.
        let resolve_error = |why: String| ProxyError::Resolve {
            link: format!("{} -> {}", link.from, link.to),
            target: link.target.clone(),
            why,
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(link.target.as_str())
            .await
            .map_err(|e| resolve_error(e.to_string()))?
            .collect();
        // The family of a given upstream socket, else IPv4 first: a dual
        // stack `localhost` may list ::1 first for a target bound to v4.
        let v4 = link.upstream.is_none_or(|u| u.is_ipv4());
        let target = addrs
            .iter()
            .find(|a| a.is_ipv4() == v4)
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| resolve_error("no address".into()))?;
        let any: SocketAddr = link.upstream.unwrap_or(if target.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        });
        let upstream = UdpSocket::bind(any)
            .await
            .map_err(|source| ProxyError::Bind {
                what: format!("upstream socket of link {} -> {}", link.from, link.to),
                addr: any,
                source,
            })?;
        Ok((
            LinkSockets {
                listen: Arc::new(listen),
                upstream: Arc::new(upstream),
                client: Arc::new(Mutex::new(None)),
                target,
            },
            bound,
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// listen socket -> target
    Forward,
    /// target -> last client
    Reverse,
}

struct Packet {
    data: Vec<u8>,
    arrival: Instant,
    /// Arrival order within this pipe, to measure reordering at send time.
    seq: u64,
    copies: u8,
}

struct Scheduled {
    at: Instant,
    /// FIFO among equal instants.
    order: u64,
    pkt: Packet,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.order == other.order
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and the earliest instant must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

struct Held {
    hold_until: Instant,
    send_at: Instant,
    pkt: Packet,
}

/// One direction of one link's traffic.
pub(crate) struct Pipe {
    core: Arc<Core>,
    dir: usize,
    side: Side,
    sockets: LinkSockets,
    snap: Arc<Snapshot>,
    generation: u64,
    heap: BinaryHeap<Scheduled>,
    held: Vec<Held>,
    queued_bytes: usize,
    next_order: u64,
    next_seq: u64,
    max_sent_seq: Option<u64>,
    last_client: Option<SocketAddr>,
}

impl Pipe {
    pub(crate) fn new(core: Arc<Core>, dir: usize, side: Side, sockets: LinkSockets) -> Self {
        let generation = core.generation();
        let snap = core.load();
        Pipe {
            core,
            dir,
            side,
            sockets,
            snap,
            generation,
            heap: BinaryHeap::new(),
            held: Vec::new(),
            queued_bytes: 0,
            next_order: 0,
            next_seq: 0,
            max_sent_seq: None,
            last_client: None,
        }
    }

    /// Move datagrams until `shutdown` fires (or its sender is dropped).
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let socket = match self.side {
            Side::Forward => self.sockets.listen.clone(),
            Side::Reverse => self.sockets.upstream.clone(),
        };
        let mut errors: u32 = 0;
        loop {
            let wake = self
                .next_deadline()
                .map(|d| d.checked_sub(TIMER_SLACK).unwrap_or(d));
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                    self.release_due().await;
                }
                r = socket.recv_from(&mut buf) => match r {
                    Ok((len, src)) => {
                        errors = 0;
                        let now = Instant::now();
                        if let Some(data) = buf.get(..len) {
                            self.on_datagram(data, src, now).await;
                        }
                        // Under load, take what is already queued without a
                        // trip through select!; bounded so timers still run.
                        for _ in 0..DRAIN_BATCH {
                            let Ok((len, src)) = socket.try_recv_from(&mut buf) else { break };
                            let now = Instant::now();
                            if let Some(data) = buf.get(..len) {
                                self.on_datagram(data, src, now).await;
                            }
                        }
                    }
                    Err(e) => {
                        errors = errors.saturating_add(1);
                        tracing::debug!(side = ?self.side, "proxy recv error: {e}");
                        if errors >= ERROR_BURST {
                            tokio::time::sleep(ERROR_PAUSE).await;
                        }
                    }
                },
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let heap = self.heap.peek().map(|s| s.at);
        let held = self.held.iter().map(|h| h.hold_until).min();
        match (heap, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn refresh(&mut self) {
        let g = self.core.generation();
        if g != self.generation {
            self.generation = g;
            self.snap = self.core.load();
        }
    }

    fn metrics(&self) -> &super::metrics::DirMetrics {
        &self.core.dir_metrics[self.dir]
    }

    async fn on_datagram(&mut self, data: &[u8], src: SocketAddr, now: Instant) {
        match self.side {
            Side::Forward => {
                if self.last_client != Some(src) {
                    self.last_client = Some(src);
                    *self
                        .sockets
                        .client
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(src);
                }
            }
            Side::Reverse => {
                if src != self.sockets.target {
                    tracing::trace!("proxy: ignoring datagram from {src}, not the link target");
                    return;
                }
            }
        }
        self.refresh();
        let seq = self.next_seq;
        self.next_seq += 1;
        let snap = self.snap.clone();
        if snap.blocked(self.dir, now) {
            self.metrics().drop(DropReason::Partition);
            return;
        }
        let Some(spec) = snap.faults(self.dir, now) else {
            self.send_copies(data, now, seq, 1, false).await;
            return;
        };
        let verdict = self.core.dir_state[self.dir]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .decide(spec, now, data.len());
        match verdict {
            Verdict::Drop(reason) => self.metrics().drop(reason),
            Verdict::Forward(plan) => {
                let window = spec.reorder.as_ref().map_or(0, |r| r.window);
                self.accept(data, now, seq, plan, window).await;
            }
        }
    }

    fn has_room(&self, len: usize) -> bool {
        self.heap.len() + self.held.len() < MAX_QUEUED_PACKETS
            && self.queued_bytes + len <= MAX_QUEUED_BYTES
    }

    async fn accept(&mut self, data: &[u8], now: Instant, seq: u64, plan: Plan, window: usize) {
        let copies = if plan.duplicate { 2 } else { 1 };
        if let Some(hold_until) = plan.hold_until {
            if !self.has_room(data.len()) {
                self.metrics().drop(DropReason::Overflow);
                return;
            }
            self.queued_bytes += data.len();
            self.held.push(Held {
                hold_until,
                send_at: plan.send_at,
                pkt: Packet {
                    data: data.to_vec(),
                    arrival: now,
                    seq,
                    copies,
                },
            });
            if window > 0 && self.held.len() >= window {
                let i = self.core.dir_state[self.dir]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pick(self.held.len());
                if i < self.held.len() {
                    let h = self.held.remove(i);
                    self.queued_bytes -= h.pkt.data.len();
                    self.dispatch(h.pkt, h.send_at, now).await;
                }
            }
        } else if plan.send_at <= now {
            self.send_copies(data, now, seq, copies, false).await;
        } else {
            self.dispatch(
                Packet {
                    data: data.to_vec(),
                    arrival: now,
                    seq,
                    copies,
                },
                plan.send_at,
                now,
            )
            .await;
        }
    }

    /// Send now if due (within the timer slack), else queue until `at`.
    async fn dispatch(&mut self, pkt: Packet, at: Instant, now: Instant) {
        if at <= now + TIMER_SLACK {
            self.send_copies(&pkt.data, pkt.arrival, pkt.seq, pkt.copies, true)
                .await;
            return;
        }
        if !self.has_room(pkt.data.len()) {
            self.metrics().drop(DropReason::Overflow);
            return;
        }
        self.queued_bytes += pkt.data.len();
        let order = self.next_order;
        self.next_order += 1;
        self.heap.push(Scheduled { at, order, pkt });
    }

    async fn release_due(&mut self) {
        let now = Instant::now();
        let horizon = now + TIMER_SLACK;
        // Held datagrams whose hold time ran out go on, oldest first.
        let mut due: Vec<Held> = Vec::new();
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].hold_until <= horizon {
                due.push(self.held.remove(i));
            } else {
                i += 1;
            }
        }
        for h in due {
            self.queued_bytes -= h.pkt.data.len();
            self.dispatch(h.pkt, h.send_at, now).await;
        }
        // Bounded by the heap size at entry: anything pushed meanwhile waits a turn.
        for _ in 0..self.heap.len() {
            match self.heap.peek() {
                Some(top) if top.at <= horizon => {}
                _ => break,
            }
            let Some(s) = self.heap.pop() else { break };
            self.queued_bytes -= s.pkt.data.len();
            self.send_copies(&s.pkt.data, s.pkt.arrival, s.pkt.seq, s.pkt.copies, true)
                .await;
        }
    }

    /// Put `copies` copies of a datagram on the wire, re-checking cuts that may
    /// have started while it waited (datagrams in flight are lost in a cut).
    async fn send_copies(
        &mut self,
        data: &[u8],
        arrival: Instant,
        seq: u64,
        copies: u8,
        delayed: bool,
    ) {
        if delayed {
            self.refresh();
            let now = Instant::now();
            if self.snap.blocked(self.dir, now) {
                self.metrics().drop(DropReason::Partition);
                return;
            }
            if self.snap.faults(self.dir, now).is_some_and(|f| f.blackhole) {
                self.metrics().drop(DropReason::Blackhole);
                return;
            }
        }
        for copy in 0..copies {
            let sent = match self.side {
                Side::Forward => {
                    self.sockets
                        .upstream
                        .send_to(data, self.sockets.target)
                        .await
                }
                Side::Reverse => {
                    let client = *self
                        .sockets
                        .client
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    match client {
                        Some(c) => self.sockets.listen.send_to(data, c).await,
                        None => {
                            self.metrics().drop(DropReason::Unroutable);
                            return;
                        }
                    }
                }
            };
            let m = &self.core.dir_metrics[self.dir];
            match sent {
                Ok(_) => {
                    m.added_delay.observe(arrival.elapsed().as_secs_f64());
                    m.forwarded.inc();
                    m.bytes.inc_by(data.len() as u64);
                    if copy == 0 {
                        if delayed {
                            m.delayed.inc();
                        }
                        match self.max_sent_seq {
                            Some(max) if seq < max => m.reordered.inc(),
                            _ => self.max_sent_seq = Some(seq),
                        }
                    } else {
                        m.duplicated.inc();
                    }
                }
                Err(e) => {
                    tracing::debug!(side = ?self.side, "proxy send error: {e}");
                    m.drop(DropReason::SendError);
                }
            }
        }
    }
}
