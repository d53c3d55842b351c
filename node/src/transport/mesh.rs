//! The QUIC mesh: one quinn endpoint per node, one mutually authenticated
//! connection per pair of nodes (only the lower id dials, so there is never a
//! second one), and, for a system with FIFO channels, one long-lived
//! unidirectional stream per direction. For a non-FIFO system every batch
//! goes on a stream of its own, so batches may overtake each other (QUIC
//! orders bytes within a stream only).
//!
//! Sending is batched: a writer task per peer drains everything queued for
//! that peer into one buffer and issues one stream write, which is what lets
//! QUIC carry hundreds of thousands of small messages per second. Receiving
//! decodes frames in per-stream tasks and hands them to the node's loop.

use super::codec::{self, FrameError};
use super::tls::{self, Identity};
use crate::config::{Cluster, TransportFile};
use crate::metrics::Metrics;
use crate::protocol::MessageKind;
use crate::system::Channels;
use prometheus::IntCounter;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::BufReader;
use tokio::sync::{mpsc, watch};

/// Application close codes.
pub const CLOSE_UNKNOWN_PEER: u32 = 1;
pub const CLOSE_BAD_FRAME: u32 = 2;
pub const CLOSE_REPLACED: u32 = 3;
pub const CLOSE_SHUTDOWN: u32 = 4;

/// Largest batch a writer puts into one stream write.
const BATCH_BYTES: usize = 256 * 1024;

#[derive(Debug, Error)]
pub enum MeshError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot bind QUIC endpoint on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("node {0} is not in the cluster file")]
    UnknownNode(String),
}

/// A message from a peer, decoded.
pub struct Inbound<M> {
    pub from: String,
    pub msg: M,
}

struct Peer {
    id: String,
    queue: mpsc::Sender<Vec<u8>>,
    conn: watch::Sender<Option<quinn::Connection>>,
    /// Counters by message kind, resolved once: label lookups per message
    /// would cost more than the send itself.
    sent: std::sync::Mutex<HashMap<&'static str, IntCounter>>,
}

pub struct Mesh<M> {
    me: String,
    endpoint: quinn::Endpoint,
    peers: HashMap<String, Arc<Peer>>,
    metrics: Arc<Metrics>,
    _msg: PhantomData<fn() -> M>,
}

struct Shared<M> {
    me: String,
    ids: Vec<String>,
    max_frame: usize,
    metrics: Arc<Metrics>,
    inbound: mpsc::Sender<Inbound<M>>,
    _msg: PhantomData<fn() -> M>,
}

impl<M> Mesh<M>
where
    M: Serialize + DeserializeOwned + MessageKind + Send + 'static,
{
    /// Binds the endpoint and starts dialing every peer with a higher id.
    /// Decoded messages arrive on the returned receiver; `channels` says
    /// whether they keep their send order per peer.
    pub fn start(
        cluster: &Cluster,
        me: &str,
        metrics: Arc<Metrics>,
        channels: Channels,
    ) -> Result<(Self, mpsc::Receiver<Inbound<M>>), MeshError> {
        let node = cluster
            .node(me)
            .ok_or_else(|| MeshError::UnknownNode(me.into()))?;
        let identity = Identity::load(cluster, me)?;
        let t = &cluster.file.transport;
        let mut server = identity.server_config(t)?;
        let mut client = identity.client_config(t)?;
        if channels == Channels::NonFifo {
            let tc = Arc::new(tls::transport_config_with_streams(t, tls::NON_FIFO_STREAMS));
            server.transport_config(tc.clone());
            client.transport_config(tc);
        }
        let socket = std::net::UdpSocket::bind(node.listen).map_err(|source| MeshError::Bind {
            addr: node.listen,
            source,
        })?;
        let mut endpoint_cfg = quinn::EndpointConfig::new(Arc::new(identity.reset_key()));
        // Stable across restarts, with the reset key: a restarted node
        // recognises its old connection ids and resets them at once.
        let cid_key = identity.cid_key();
        endpoint_cfg.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        let runtime = quinn::default_runtime().ok_or_else(|| MeshError::Bind {
            addr: node.listen,
            source: std::io::Error::other("no async runtime"),
        })?;
        let mut endpoint = quinn::Endpoint::new(endpoint_cfg, Some(server), socket, runtime)
            .map_err(|source| MeshError::Bind {
                addr: node.listen,
                source,
            })?;
        endpoint.set_default_client_config(client);

        let (tx, rx) = mpsc::channel(65_536);
        let shared = Arc::new(Shared::<M> {
            me: me.to_string(),
            ids: cluster.ids(),
            max_frame: t.max_frame_bytes,
            metrics: metrics.clone(),
            inbound: tx,
            _msg: PhantomData,
        });
        let mut peers = HashMap::new();
        for n in &cluster.nodes {
            if n.id == me {
                continue;
            }
            let (qtx, qrx) = mpsc::channel(t.queue_limit.max(16));
            let (ctx, crx) = watch::channel(None);
            let peer = Arc::new(Peer {
                id: n.id.clone(),
                queue: qtx,
                conn: ctx,
                sent: Default::default(),
            });
            tokio::spawn(writer(peer.clone(), qrx, crx, metrics.clone(), channels));
            if me < n.id.as_str() {
                let addr = cluster
                    .dial_addr(me, &n.id)
                    .unwrap_or_else(|| n.advertise.clone());
                tokio::spawn(dialer(
                    endpoint.clone(),
                    peer.clone(),
                    addr,
                    t.clone(),
                    shared.clone(),
                ));
            }
            peers.insert(n.id.clone(), peer);
        }
        tokio::spawn(acceptor(endpoint.clone(), peers.clone(), shared));
        Ok((
            Mesh {
                me: me.to_string(),
                endpoint,
                peers,
                metrics,
                _msg: PhantomData,
            },
            rx,
        ))
    }

    /// Queues a message for a peer. Never blocks: when the peer's queue is
    /// full the message is dropped and counted, as a lossy network would.
    pub fn send(&self, to: &str, msg: &M) {
        let Some(peer) = self.peers.get(to) else {
            return;
        };
        let frame = match codec::encode(msg) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(peer = to, error = %e, "cannot encode message");
                self.metrics
                    .messages_dropped
                    .with_label_values(&[to, "encode"])
                    .inc();
                return;
            }
        };
        self.send_frame(peer, msg.kind(), frame);
    }

    fn send_frame(&self, peer: &Peer, kind: &'static str, frame: Vec<u8>) {
        match peer.queue.try_send(frame) {
            Ok(()) => {
                if let Ok(mut m) = peer.sent.lock() {
                    m.entry(kind)
                        .or_insert_with(|| {
                            self.metrics
                                .messages_sent
                                .with_label_values(&[&peer.id, kind])
                        })
                        .inc();
                }
            }
            Err(_) => self
                .metrics
                .messages_dropped
                .with_label_values(&[&peer.id, "queue_full"])
                .inc(),
        }
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Closes every connection and waits briefly for the close to be sent.
    pub async fn shutdown(&self) {
        self.endpoint.close(
            CLOSE_SHUTDOWN.into(),
            format!("{} shutting down", self.me).as_bytes(),
        );
        let _ = tokio::time::timeout(Duration::from_millis(500), self.endpoint.wait_idle()).await;
    }
}

/// Keeps a connection to a peer with a higher id, redialing with backoff.
async fn dialer<M>(
    endpoint: quinn::Endpoint,
    peer: Arc<Peer>,
    addr: String,
    t: TransportFile,
    shared: Arc<Shared<M>>,
) where
    M: DeserializeOwned + MessageKind + Send + 'static,
{
    let min = Duration::from_millis(t.reconnect_min_ms.max(1));
    let max = Duration::from_millis(t.reconnect_max_ms.max(t.reconnect_min_ms.max(1)));
    let mut backoff = min;
    let m = &shared.metrics;
    loop {
        let resolved = tokio::net::lookup_host(addr.as_str())
            .await
            .ok()
            .and_then(|mut a| a.next());
        let conn = match resolved {
            Some(sa) => match endpoint.connect(sa, &peer.id) {
                Ok(connecting) => connecting.await.ok(),
                Err(_) => None,
            },
            None => None,
        };
        let Some(conn) = conn else {
            m.connection_events
                .with_label_values(&[&peer.id, "dial_failed"])
                .inc();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(max);
            continue;
        };
        // The handshake checked the chain and that the certificate names the
        // peer we dialed; nothing else to verify.
        backoff = min;
        serve_connection(conn.clone(), peer.clone(), shared.clone());
        conn.closed().await;
        tokio::time::sleep(min).await;
    }
}

/// Accepts connections, maps each to a node id by its certificate, and
/// refuses any peer that is not a node of this cluster.
async fn acceptor<M>(
    endpoint: quinn::Endpoint,
    peers: HashMap<String, Arc<Peer>>,
    shared: Arc<Shared<M>>,
) where
    M: DeserializeOwned + MessageKind + Send + 'static,
{
    while let Some(incoming) = endpoint.accept().await {
        let peers = peers.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    shared
                        .metrics
                        .peers_refused
                        .with_label_values(&["handshake"])
                        .inc();
                    tracing::warn!(error = %e, "refused a peer at the TLS handshake");
                    return;
                }
            };
            let Some(peer) =
                tls::peer_id(&conn, &shared.ids).and_then(|id| peers.get(&id).cloned())
            else {
                shared
                    .metrics
                    .peers_refused
                    .with_label_values(&["unknown_id"])
                    .inc();
                tracing::warn!(remote = %conn.remote_address(), "refused a peer whose certificate names no node of this cluster");
                conn.close(CLOSE_UNKNOWN_PEER.into(), b"unknown peer");
                return;
            };
            serve_connection(conn, peer, shared);
        });
    }
}

/// Makes `conn` the peer's current connection and reads every stream on it.
fn serve_connection<M>(conn: quinn::Connection, peer: Arc<Peer>, shared: Arc<Shared<M>>)
where
    M: DeserializeOwned + MessageKind + Send + 'static,
{
    let m = &shared.metrics;
    m.connections.with_label_values(&[&peer.id]).set(1);
    m.connection_events
        .with_label_values(&[&peer.id, "connected"])
        .inc();
    tracing::info!(peer = %peer.id, remote = %conn.remote_address(), "connected");
    let old = peer.conn.send_replace(Some(conn.clone()));
    if let Some(old) = old {
        if old.stable_id() != conn.stable_id() {
            old.close(CLOSE_REPLACED.into(), b"replaced");
        }
    }
    tokio::spawn(async move {
        loop {
            let stream = match conn.accept_uni().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::info!(peer = %peer.id, reason = %e, "connection closed");
                    break;
                }
            };
            tokio::spawn(read_stream(
                stream,
                conn.clone(),
                peer.id.clone(),
                shared.clone(),
            ));
        }
        let current = peer.conn.borrow().as_ref().map(|c| c.stable_id());
        if current == Some(conn.stable_id()) {
            peer.conn.send_replace(None);
            shared
                .metrics
                .connections
                .with_label_values(&[&peer.id])
                .set(0);
        }
        shared
            .metrics
            .connection_events
            .with_label_values(&[&peer.id, "closed"])
            .inc();
    });
}

async fn read_stream<M>(
    stream: quinn::RecvStream,
    conn: quinn::Connection,
    peer: String,
    shared: Arc<Shared<M>>,
) where
    M: DeserializeOwned + MessageKind + Send + 'static,
{
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    let mut scratch = Vec::new();
    let mut received: HashMap<&'static str, IntCounter> = HashMap::new();
    loop {
        match codec::read_frame::<M, _>(&mut r, shared.max_frame, &mut scratch).await {
            Ok(Some(msg)) => {
                let kind = msg.kind();
                received
                    .entry(kind)
                    .or_insert_with(|| {
                        shared
                            .metrics
                            .messages_received
                            .with_label_values(&[&peer, kind])
                    })
                    .inc();
                if shared
                    .inbound
                    .send(Inbound {
                        from: peer.clone(),
                        msg,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => return,
            Err(FrameError::Io(_)) => return,
            Err(e) => {
                shared
                    .metrics
                    .frame_errors
                    .with_label_values(&[&peer])
                    .inc();
                tracing::warn!(peer = %peer, me = %shared.me, error = %e, "bad frame; closing the connection");
                conn.close(CLOSE_BAD_FRAME.into(), b"bad frame");
                return;
            }
        }
    }
}

/// Drains the peer's queue into batched writes on the current connection.
async fn writer(
    peer: Arc<Peer>,
    mut queue: mpsc::Receiver<Vec<u8>>,
    mut conn_rx: watch::Receiver<Option<quinn::Connection>>,
    metrics: Arc<Metrics>,
    channels: Channels,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
    loop {
        let conn = loop {
            if let Some(c) = conn_rx.borrow_and_update().clone() {
                break c;
            }
            if conn_rx.changed().await.is_err() {
                return;
            }
        };
        let mut send = match conn.open_uni().await {
            Ok(s) => s,
            Err(_) => {
                let _ = conn_rx.changed().await;
                continue;
            }
        };
        let _ = send.set_priority(0);
        loop {
            tokio::select! {
                first = queue.recv() => {
                    let Some(first) = first else { return };
                    buf.clear();
                    buf.extend_from_slice(&first);
                    let mut n = 1u64;
                    while buf.len() < BATCH_BYTES {
                        match queue.try_recv() {
                            Ok(f) => { buf.extend_from_slice(&f); n += 1; }
                            Err(_) => break,
                        }
                    }
                    if send.write_all(&buf).await.is_err() {
                        metrics.messages_dropped.with_label_values(&[&peer.id, "connection_lost"]).inc_by(n);
                        break;
                    }
                    if channels == Channels::NonFifo {
                        // This batch's stream ends here; the next batch takes a
                        // new one and may arrive first. A stream that cannot
                        // finish belongs to a lost connection, which the next
                        // open_uni finds.
                        let _ = send.finish();
                        break;
                    }
                }
                changed = conn_rx.changed() => {
                    if changed.is_err() { return; }
                    break;
                }
            }
        }
    }
}
