//! The UDP packet proxy: one port per directed link, packet faults, partitions,
//! an HTTP control API and Prometheus metrics.
//!
//! QUIC hides packet faults from the protocol, so this is the layer that
//! exercises QUIC itself: timeouts, reconnects, false suspicion.
//!
//! # Model
//! A [`Link`] `from -> to` is a UDP port (`listen`) that node `from` uses as
//! node `to`'s address. A datagram arriving there is sent to `target` (node
//! `to`'s real address) from a per-link upstream socket; datagrams coming back
//! on that upstream socket go to the last source address seen on `listen`.
//!
//! # Directions and which faults apply
//! QUIC runs both directions of a connection over one 4-tuple, so link
//! `a -> b` carries traffic both ways: `a -> b` (forward) and the replies
//! `b -> a` (reverse). Faults are set per *direction*, not per socket:
//! - the forward traffic of link `a -> b` gets the faults set on link `a -> b`;
//! - the reverse traffic of link `a -> b` gets the faults set on link `b -> a`
//!   if that link is in the set, otherwise none.
//!
//! So "faults on `b -> a`" govern every datagram from `b` to `a`, whichever
//! node opened the connection. The mutable state of a direction (RNG stream,
//! burst-loss chain, token bucket) is shared by the two sockets that carry it,
//! so a bandwidth limit caps the direction as a whole. Counters and metrics are
//! per direction too. Partitions cut directions between node ids and apply to
//! every direction, with or without a link of its own.
//!
//! # Leases
//! Faults and partitions set at run time (API or [`ProxyController`]) hold for
//! a lease (default `default_lease_ms`, 30 s) and heal by themselves unless
//! renewed, so everything heals if the controller dies. Faults written in the
//! config file are the baseline and hold until cleared.
//!
//! # Files
//! - `config`: [`ProxyConfig`], [`Link`], loading and validation
//! - `faults`: [`FaultSpec`] and the seeded per-direction engine
//! - `partition`: [`PartitionShape`] and the pure [`expand`]
//! - `control`: the atomically swapped fault table, leases, [`ProxyController`]
//! - `pipe`: sockets and the per-pipe delay queue / reorder buffer
//! - `metrics`: the per-proxy Prometheus registry
//! - `api`: the HTTP control API
//!
//! # Config (YAML; JSON works too)
//! ```yaml
//! seed: 42
//! nodes: [s1, s2, s3]          # optional: order used by partition shapes
//! default_lease_ms: 30000
//! control: { listen: "127.0.0.1:7400", token: "change-me" }
//! links:
//!   - { from: s1, to: s2, listen: "127.0.0.1:7012", target: "127.0.0.1:7102" }
//!   - from: s2
//!     to: s1
//!     listen: "127.0.0.1:7021"
//!     target: "127.0.0.1:7101"
//!     faults: { delay: { ms: 20, jitter_ms: 5, distribution: normal }, drop: 0.01 }
//! ```
//!
//! # Faults of one direction (every field optional; same shape in JSON for the API)
//! ```yaml
//! drop: 0.3                       # independent loss probability
//! burst: { p_enter_bad: 0.02, p_leave_bad: 0.2, loss_bad: 1.0, loss_good: 0.0 }
//! delay: { ms: 20, jitter_ms: 5, distribution: uniform }   # or normal | exponential
//! duplicate: 0.1
//! reorder: { window: 4, max_hold_ms: 50, probability: 1.0 }
//! bandwidth: { bytes_per_sec: 125000, queue_bytes: 65536, burst_bytes: 1500 }
//! blackhole: false
//! ```
//! Partitions: `{"shape":"halves"}`, `{"shape":"isolate","node":"s1"}`,
//! `{"shape":"majority_minority","minority":["s3"]}`, `{"shape":"bridge","bridge":"s2"}`,
//! `{"shape":"ring"}`, `{"shape":"one_way","from":["s1"],"to":["s2"]}`,
//! `{"shape":"groups","groups":[["s1"],["s2","s3"]]}`; API requests add `"lease_ms"`.

mod api;
mod client;
mod config;
mod control;
mod error;
mod faults;
mod metrics;
mod partition;
mod pipe;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(crate) use api::{bearer, same_secret};
pub use client::{Partitioned, ProxyClient};
pub use config::{ControlConfig, Link, ProxyConfig, MAX_LEASE};
pub use control::{DirectedPair, LinkStats, PartitionStatus, ProxyController, ProxyStats};
pub use error::ProxyError;
pub use faults::{Bandwidth, BurstLoss, Delay, DropReason, FaultSpec, JitterDistribution, Reorder};
pub use metrics::DirCounters;
pub use partition::{expand, Cut, PartitionShape};

use control::{BoundLink, Core, Directions};
use pipe::{LinkSockets, Pipe, Side};

/// How long `shutdown` waits for tasks before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Entry point of the proxy.
pub struct Proxy;

impl Proxy {
    /// Validate `config`, bind every socket, start the pipes, the lease reaper
    /// and (if configured) the control API. Must run inside a tokio runtime.
    /// Fails before anything runs if a socket cannot be bound.
    pub async fn start(config: ProxyConfig) -> Result<ProxyHandle, ProxyError> {
        config.validate()?;
        let dirs = Directions::build(&config.links);
        let mut bound = Vec::with_capacity(config.links.len());
        let mut sockets = Vec::with_capacity(config.links.len());
        for link in &config.links {
            let (s, listen) = LinkSockets::bind(link).await?;
            let fwd = dirs.get(&link.from, &link.to);
            let rev = dirs.get(&link.to, &link.from);
            let (Some(fwd), Some(rev)) = (fwd, rev) else {
                return Err(ProxyError::InvalidConfig(format!(
                    "internal: no direction for link {} -> {}",
                    link.from, link.to
                )));
            };
            let mut link = link.clone();
            link.listen = listen;
            bound.push(BoundLink { link, fwd, rev });
            sockets.push(s);
        }
        let control_listener = match &config.control {
            Some(c) => Some((
                tokio::net::TcpListener::bind(c.listen)
                    .await
                    .map_err(|source| ProxyError::Bind {
                        what: "control API".into(),
                        addr: c.listen,
                        source,
                    })?,
                c.token.clone(),
            )),
            None => None,
        };
        let core = Arc::new(Core::new(
            config.seed,
            config.node_order(),
            dirs,
            bound,
            config.default_lease(),
        )?);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for (bl, s) in core.links.iter().zip(sockets) {
            let fwd = Pipe::new(core.clone(), bl.fwd, Side::Forward, s.clone());
            let rev = Pipe::new(core.clone(), bl.rev, Side::Reverse, s);
            tasks.push(tokio::spawn(fwd.run(stop_rx.clone())));
            tasks.push(tokio::spawn(rev.run(stop_rx.clone())));
        }
        tasks.push(tokio::spawn(core.clone().reap(stop_rx.clone())));
        let controller = ProxyController { core };
        let control_addr = match control_listener {
            Some((listener, token)) => {
                let addr = listener
                    .local_addr()
                    .map_err(|e| ProxyError::io("reading the control API address", e))?;
                tasks.push(tokio::spawn(api::serve(
                    listener,
                    controller.clone(),
                    token,
                    stop_rx.clone(),
                )));
                Some(addr)
            }
            None => None,
        };
        tracing::info!(
            links = controller.core.links.len(),
            control = ?control_addr,
            "proxy started"
        );
        Ok(ProxyHandle {
            controller,
            control_addr,
            stop: stop_tx,
            tasks,
        })
    }
}

/// A running proxy. Dereferences to [`ProxyController`] for
/// `set_faults`, `partition`, `heal`, `stats`, ... Dropping it stops the
/// proxy too (the tasks watch a channel whose sender it owns).
pub struct ProxyHandle {
    controller: ProxyController,
    control_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ProxyHandle {
    /// Bound address of the HTTP control API, if configured.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control_addr
    }

    /// A cloneable controller that outlives borrows of the handle.
    pub fn controller(&self) -> ProxyController {
        self.controller.clone()
    }

    /// Stop every task and wait for them (aborting stragglers after a grace period).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                abort.abort();
            }
        }
        tracing::info!("proxy stopped");
    }
}

impl std::ops::Deref for ProxyHandle {
    type Target = ProxyController;
    fn deref(&self) -> &ProxyController {
        &self.controller
    }
}

/// Run a proxy until `shutdown` completes, then stop it cleanly.
pub async fn run(
    config: ProxyConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let handle = Proxy::start(config).await?;
    shutdown.await;
    handle.shutdown().await;
    Ok(())
}
