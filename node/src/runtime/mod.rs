//! The runtime: drives a sans-IO core over the QUIC mesh. One task owns the
//! core; it takes inputs in batches (messages, client requests, timers),
//! makes the batch's records durable with one write, and only then releases
//! the batch's messages and replies. The message fault layer sits between the
//! core and the mesh, on both the send and the receive side.

pub mod admin;
pub mod faults;
pub mod history;
pub mod loadgen;
pub mod wal;

use crate::api::NodeState;
use crate::config::Cluster;
use crate::faults::Side;
use crate::metrics::Metrics;
use crate::protocol::{Core, MessageKind, NodeId, Outbox, ReqId, Time};
use crate::system::System;
use crate::transport::mesh::{Inbound, Mesh};
use anyhow::Context;
use faults::FaultControl;
use history::History;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use wal::Wal;

/// Messages the fault layer may hold back for a delay at once; beyond it a
/// delayed message is dropped and counted (`reason="delay_full"`), so a
/// delay rule at a high rate cannot exhaust memory.
const DEFERRED_LIMIT: usize = 1 << 20;

/// Requests from the admin API into the core's task.
pub enum Command<C: Core> {
    Request {
        request: C::Request,
        reply: oneshot::Sender<C::Reply>,
    },
    State(oneshot::Sender<NodeState<C::State>>),
}

/// Everything the admin API shares with the core's task.
pub struct Handle<S: System> {
    pub id: String,
    pub commands: mpsc::Sender<Command<S::Core>>,
    pub metrics: Arc<Metrics>,
    pub faults: Arc<FaultControl>,
    pub history: Arc<History>,
    pub secret: String,
    pub cluster: Arc<Cluster>,
    /// The system's validated parameters, for its load generator.
    pub params: Arc<S::Params>,
}

impl<S: System> Handle<S> {
    /// Submits a request to the core and waits for its reply.
    pub async fn call(&self, request: S::Request) -> Option<S::Reply> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Request { request, reply: tx })
            .await
            .ok()?;
        rx.await.ok()
    }

    pub async fn state(&self) -> Option<NodeState<<S::Core as Core>::State>> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::State(tx)).await.ok()?;
        rx.await.ok()
    }
}

/// Messages held for reordering: the time each must be released by, the time
/// it may leave at the earliest (its delay, when a delay rule also matched:
/// a delay is a lower bound, even for a message released early), and the
/// message.
type Held<M> = Vec<(Instant, Instant, M)>;

/// A message the fault layer is holding back for a delay.
enum Deferred<M> {
    Send { to: String, msg: M },
    Deliver { from: String, msg: M },
}

struct Driver<S: System> {
    core: S::Core,
    mesh: Mesh<Msg<S>>,
    faults: Arc<FaultControl>,
    wal: Option<Wal<<S::Core as Core>::Record>>,
    metrics: Arc<Metrics>,
    gauges: S::Gauges,
    nodes: Vec<NodeId>,
    rng: ChaCha8Rng,
    start: Instant,
    next_req: ReqId,
    pending: HashMap<ReqId, (oneshot::Sender<S::Reply>, Instant, &'static str)>,
    /// Delayed messages by release time (and a sequence number that keeps
    /// equal times apart, in the order they were delayed).
    deferred: BTreeMap<(Instant, u64), Deferred<Msg<S>>>,
    deferred_seq: u64,
    /// Reorder buffers per (side, peer): release deadline and message.
    held: HashMap<(Side, String), Held<Msg<S>>>,
    out: Outbox<S::Core>,
}

type Msg<S> = <<S as System>::Core as Core>::Msg;

impl<S: System> Driver<S> {
    fn now(&self) -> Time {
        self.start.elapsed().as_micros() as Time
    }

    fn receive(&mut self, from: String, msg: Msg<S>) {
        if !self.faults.is_active() {
            let now = self.now();
            return self
                .core
                .on_message(now, &from, msg, &mut self.rng, &mut self.out);
        }
        let me = self.core.id().clone();
        for (delay, msg) in self.fault(&from, &me, Side::Receive, msg) {
            if delay.is_zero() {
                let now = self.now();
                self.core
                    .on_message(now, &from, msg, &mut self.rng, &mut self.out);
            } else {
                self.defer(
                    delay,
                    Deferred::Deliver {
                        from: from.clone(),
                        msg,
                    },
                );
            }
        }
    }

    /// Applies the fault layer to one message: the copies to pass on now or
    /// after a delay; none if dropped or held for reordering.
    fn fault(&mut self, from: &str, to: &str, side: Side, msg: Msg<S>) -> Vec<(Duration, Msg<S>)> {
        let Some(d) = self.faults.decide(from, to, msg.kind(), side) else {
            return vec![(Duration::ZERO, msg)];
        };
        if d.drop {
            return Vec::new();
        }
        let peer = if side == Side::Send { to } else { from };
        if let Some((window, max_hold)) = d.reorder {
            let key = (side, peer.to_string());
            let held = self.held.entry(key.clone()).or_default();
            let now = Instant::now();
            for _ in 0..d.copies {
                held.push((now + d.delay + max_hold, now + d.delay, msg.clone()));
            }
            if held.len() >= window {
                if let Some(held) = self.held.remove(&key) {
                    self.release(side, peer, held);
                }
            }
            return Vec::new();
        }
        vec![(d.delay, msg); d.copies as usize]
    }

    /// Lets held messages go, shuffled by the link's RNG; one whose delay has
    /// not yet passed waits out the rest of it.
    fn release(&mut self, side: Side, peer: &str, held: Held<Msg<S>>) {
        let mut msgs: Vec<(Instant, Msg<S>)> = held.into_iter().map(|(_, nb, m)| (nb, m)).collect();
        self.faults.shuffle(peer, side, &mut msgs);
        let now = Instant::now();
        for (not_before, msg) in msgs {
            let wait = not_before.saturating_duration_since(now);
            match side {
                Side::Send if wait.is_zero() => self.mesh.send(peer, &msg),
                Side::Send => self.defer(
                    wait,
                    Deferred::Send {
                        to: peer.to_string(),
                        msg,
                    },
                ),
                Side::Receive if wait.is_zero() => {
                    let now = self.now();
                    self.core
                        .on_message(now, &peer.to_string(), msg, &mut self.rng, &mut self.out);
                }
                Side::Receive => self.defer(
                    wait,
                    Deferred::Deliver {
                        from: peer.to_string(),
                        msg,
                    },
                ),
            }
        }
    }

    fn release_due(&mut self) {
        let now = Instant::now();
        let due: Vec<(Side, String)> = self
            .held
            .iter()
            .filter(|(_, v)| v.first().is_some_and(|(t, _, _)| *t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(held) = self.held.remove(&key) {
                self.release(key.0, &key.1, held);
            }
        }
    }

    fn defer(&mut self, delay: Duration, d: Deferred<Msg<S>>) {
        if self.deferred.len() >= DEFERRED_LIMIT {
            let peer = match &d {
                Deferred::Send { to, .. } => to,
                Deferred::Deliver { from, .. } => from,
            };
            self.metrics
                .messages_dropped
                .with_label_values(&[peer.as_str(), "delay_full"])
                .inc();
            return;
        }
        self.deferred_seq += 1;
        self.deferred
            .insert((Instant::now() + delay, self.deferred_seq), d);
    }

    /// Releases every delayed message whose time has come, in time order.
    fn release_deferred(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.deferred.first_entry() {
            if entry.key().0 > now {
                break;
            }
            match entry.remove() {
                Deferred::Send { to, msg } => self.mesh.send(&to, &msg),
                Deferred::Deliver { from, msg } => {
                    let now = self.now();
                    self.core
                        .on_message(now, &from, msg, &mut self.rng, &mut self.out);
                }
            }
        }
    }

    fn send(&mut self, to: &str, msg: Msg<S>) {
        if !self.faults.is_active() {
            return self.mesh.send(to, &msg);
        }
        let me = self.core.id().clone();
        for (delay, msg) in self.fault(&me, to, Side::Send, msg) {
            if delay.is_zero() {
                self.mesh.send(to, &msg);
            } else {
                self.defer(
                    delay,
                    Deferred::Send {
                        to: to.to_string(),
                        msg,
                    },
                );
            }
        }
    }

    /// Durable first, then messages and replies.
    fn flush(&mut self) -> anyhow::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        if let Some(wal) = self.wal.as_mut() {
            let n = wal.append(&out.records)?;
            self.metrics
                .wal_bytes
                .with_label_values(&["append"])
                .inc_by(n);
            if wal.needs_compaction() {
                let n = wal.compact(&self.core.compact())?;
                self.metrics
                    .wal_bytes
                    .with_label_values(&["compact"])
                    .inc_by(n);
            }
        }
        for (to, msg) in out.sends {
            self.send(&to, msg);
        }
        for (req, reply) in out.replies {
            if let Some((tx, t0, kind)) = self.pending.remove(&req) {
                let outcome = S::outcome(&reply).as_str();
                self.metrics.ops.with_label_values(&[kind, outcome]).inc();
                self.metrics
                    .op_duration
                    .with_label_values(&[kind, outcome])
                    .observe(t0.elapsed().as_secs_f64());
                let _ = tx.send(reply);
            }
        }
        Ok(())
    }

    fn command(&mut self, cmd: Command<S::Core>) {
        match cmd {
            Command::Request { request, reply } => {
                self.next_req += 1;
                let req = self.next_req;
                let kind = S::request_kind(&request);
                self.pending.insert(req, (reply, Instant::now(), kind));
                let now = self.now();
                self.core
                    .on_request(now, req, request, &mut self.rng, &mut self.out);
            }
            Command::State(tx) => {
                let _ = tx.send(NodeState {
                    system: S::NAME.to_string(),
                    id: self.core.id().clone(),
                    role: S::role(&self.core).to_string(),
                    ready: S::is_ready(&self.core),
                    clock_origin_us: history::unix_us().saturating_sub(self.now()),
                    state: self.core.state(),
                });
            }
        }
    }

    fn export(&self) {
        S::export(&self.core, &self.gauges, &self.nodes);
        let role = S::role(&self.core);
        for r in S::ROLES {
            self.metrics
                .role
                .with_label_values(&[r])
                .set((*r == role) as i64);
        }
    }

    fn tick(&mut self) {
        let now = self.now();
        if self.core.next_tick().is_some_and(|t| t <= now) {
            self.core.on_tick(now, &mut self.rng, &mut self.out);
        }
    }

    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound<Msg<S>>>,
        mut commands: mpsc::Receiver<Command<S::Core>>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut batch = Vec::with_capacity(1024);
        let mut gauges = tokio::time::interval(Duration::from_millis(200));
        let mut reorder = tokio::time::interval(Duration::from_millis(5));
        loop {
            let wake = self
                .core
                .next_tick()
                .map(|t| self.start + Duration::from_micros(t))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let delayed = self.deferred.first_key_value().map(|((t, _), _)| *t);
            tokio::select! {
                n = inbound.recv_many(&mut batch, 1024) => {
                    if n == 0 { break; }
                    for Inbound { from, msg } in batch.drain(..) {
                        self.receive(from, msg);
                    }
                }
                Some(cmd) = commands.recv() => {
                    self.command(cmd);
                    for _ in 0..255 {
                        match commands.try_recv() {
                            Ok(cmd) => self.command(cmd),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(delayed.unwrap_or(wake).into()), if delayed.is_some() => {
                    self.release_deferred();
                }
                _ = tokio::time::sleep_until(wake.into()) => self.tick(),
                _ = gauges.tick() => {
                    self.export();
                    self.faults.expire();
                }
                _ = reorder.tick(), if !self.held.is_empty() => self.release_due(),
                _ = shutdown.changed() => break,
            }
            self.tick();
            self.flush()?;
        }
        self.flush()?;
        self.mesh.shutdown().await;
        Ok(())
    }
}

/// Options of `faultline-node run` beyond the cluster file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub data_dir: Option<PathBuf>,
    /// `None`: the system's default ([`System::FSYNC`]).
    pub fsync: Option<bool>,
}

/// Runs node `id` of the cluster until Ctrl-C or SIGTERM, as a node of the
/// cluster's system (dispatched by the registry).
pub async fn run(cluster: Cluster, id: &str, opts: RunOptions) -> anyhow::Result<()> {
    let system = cluster.file.system.clone();
    crate::with_system!(
        system.as_str(),
        |S| run_system::<S>(cluster, id, opts).await,
        else anyhow::bail!("this build has no system {system:?}")
    )
}

async fn run_system<S: System>(cluster: Cluster, id: &str, opts: RunOptions) -> anyhow::Result<()> {
    let cluster = Arc::new(cluster);
    let node = cluster
        .node(id)
        .with_context(|| format!("node {id:?} is not in {}", cluster.path.display()))?
        .clone();
    let metrics = Arc::new(Metrics::new(id, S::NAME));
    let gauges = S::gauges(&metrics.registry).context("registering the system's gauges")?;
    let params = cluster.params::<S::Params>().with_context(|| {
        format!(
            "{} holds no parameters of system {}",
            cluster.path.display(),
            S::NAME
        )
    })?;
    let mut core = S::core(id, &params);

    let data_dir = opts
        .data_dir
        .clone()
        .or_else(|| cluster.node_data_dir(id))
        .unwrap_or_else(|| {
            cluster
                .path
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("data")
                .join(id)
        });
    let fsync = opts.fsync.unwrap_or(S::FSYNC);
    let (wal, records) = Wal::open(&data_dir, fsync)?;
    let recovered = records.len();
    core.recover(records);
    tracing::info!(node = id, system = S::NAME, role = S::role(&core), recovered, fsync, data = %data_dir.display(), "starting");

    let (mesh, inbound) = Mesh::start(&cluster, id, metrics.clone(), S::CHANNELS)?;
    let faults = Arc::new(FaultControl::new(id, cluster.file.seed, metrics.clone()));
    faults.set(cluster.file.faults.clone(), None, None);
    let history = Arc::new(History::default());
    let (cmd_tx, cmd_rx) = mpsc::channel(4096);
    let handle = Arc::new(Handle::<S> {
        id: id.to_string(),
        commands: cmd_tx,
        metrics: metrics.clone(),
        faults: faults.clone(),
        history,
        secret: cluster.secret.clone(),
        cluster: cluster.clone(),
        params,
    });
    let listener = tokio::net::TcpListener::bind(node.admin)
        .await
        .with_context(|| format!("cannot bind the admin address {}", node.admin))?;
    tokio::spawn(admin::serve(listener, handle));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    let driver = Driver::<S> {
        core,
        mesh,
        faults,
        wal: Some(wal),
        metrics,
        gauges,
        nodes: cluster.ids(),
        rng: ChaCha8Rng::seed_from_u64(cluster.file.seed ^ crate::hash::fnv1a(id.as_bytes())),
        start: Instant::now(),
        next_req: 0,
        pending: HashMap::new(),
        deferred: BTreeMap::new(),
        deferred_seq: 0,
        held: HashMap::new(),
        out: Outbox::default(),
    };
    driver.export();
    tracing::info!(node = id, listen = %node.listen, admin = %node.admin, "serving");
    driver.run(inbound, cmd_rx, stop_rx).await?;
    tracing::info!(node = id, "stopped");
    Ok(())
}

/// Returns on Ctrl-C (SIGINT) or SIGTERM (`docker stop`, a pod's end,
/// `kill`): how every long-running faultline process learns to stop.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
