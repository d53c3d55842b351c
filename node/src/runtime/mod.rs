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

use crate::config::Cluster;
use crate::faults::Side;
use crate::metrics::Metrics;
use crate::protocol::tokens::{self, TokensNode};
use crate::protocol::{Core, MessageKind, NodeId, Outbox, ReqId, Time};
use crate::transport::mesh::{Inbound, Mesh};
use anyhow::Context;
use faults::FaultControl;
use history::History;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use wal::Wal;

/// Views a runtime needs of a core beyond the protocol itself.
pub trait Exports: Core {
    fn request_kind(r: &Self::Request) -> &'static str;
    fn reply_outcome(r: &Self::Reply) -> &'static str;
    /// Sets the system's state gauges (versions, owners, epoch...).
    fn export(&self, m: &Metrics, nodes: &[NodeId]);
    fn role(&self) -> &'static str;
}

impl Exports for TokensNode {
    fn request_kind(r: &tokens::Request) -> &'static str {
        r.kind()
    }
    fn reply_outcome(r: &tokens::Reply) -> &'static str {
        r.outcome()
    }
    fn export(&self, m: &Metrics, nodes: &[NodeId]) {
        m.config_epoch.set(self.config().epoch as i64);
        m.serving.set(self.is_serving() as i64);
        for role in ["server", "client"] {
            m.role
                .with_label_values(&[role])
                .set((self.role() == role) as i64);
        }
        match self.table() {
            Some(table) => {
                for (i, s) in table.iter().enumerate() {
                    let t = i.to_string();
                    m.token_version
                        .with_label_values(&[&t])
                        .set(s.tag.version as i64);
                    let owner = nodes
                        .iter()
                        .position(|n| *n == s.owner)
                        .map_or(-1, |p| p as i64);
                    m.token_owner.with_label_values(&[&t]).set(owner);
                }
            }
            None => {
                m.token_version.reset();
                m.token_owner.reset();
            }
        }
    }
    fn role(&self) -> &'static str {
        TokensNode::role(self)
    }
}

/// Requests from the admin API into the core's task.
pub enum Command<C: Core> {
    Request {
        request: C::Request,
        reply: oneshot::Sender<C::Reply>,
    },
    State(oneshot::Sender<serde_json::Value>),
}

/// Everything the admin API shares with the core's task.
pub struct Handle<C: Core> {
    pub id: String,
    pub commands: mpsc::Sender<Command<C>>,
    pub metrics: Arc<Metrics>,
    pub faults: Arc<FaultControl>,
    pub history: Arc<History>,
    pub secret: String,
    pub cluster: Arc<Cluster>,
}

impl<C: Core> Handle<C> {
    /// Submits a request to the core and waits for its reply.
    pub async fn call(&self, request: C::Request) -> Option<C::Reply> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Request { request, reply: tx })
            .await
            .ok()?;
        rx.await.ok()
    }

    pub async fn state(&self) -> Option<serde_json::Value> {
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

/// A message the fault layer is holding back, released later into the loop.
enum Deferred<M> {
    Send { to: String, msg: M },
    Deliver { from: String, msg: M },
}

struct Driver<C: Exports> {
    core: C,
    mesh: Mesh<C::Msg>,
    faults: Arc<FaultControl>,
    wal: Option<Wal<C::Record>>,
    metrics: Arc<Metrics>,
    nodes: Vec<NodeId>,
    rng: ChaCha8Rng,
    start: Instant,
    next_req: ReqId,
    pending: HashMap<ReqId, (oneshot::Sender<C::Reply>, Instant, &'static str)>,
    deferred: mpsc::UnboundedSender<Deferred<C::Msg>>,
    /// Reorder buffers per (side, peer): release deadline and message.
    held: HashMap<(Side, String), Held<C::Msg>>,
    out: Outbox<C>,
}

impl<C: Exports> Driver<C> {
    fn now(&self) -> Time {
        self.start.elapsed().as_micros() as Time
    }

    fn receive(&mut self, from: String, msg: C::Msg) {
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
    fn fault(&mut self, from: &str, to: &str, side: Side, msg: C::Msg) -> Vec<(Duration, C::Msg)> {
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
    fn release(&mut self, side: Side, peer: &str, held: Held<C::Msg>) {
        let mut msgs: Vec<(Instant, C::Msg)> = held.into_iter().map(|(_, nb, m)| (nb, m)).collect();
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

    fn defer(&self, delay: Duration, d: Deferred<C::Msg>) {
        let tx = self.deferred.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(d);
        });
    }

    fn send(&mut self, to: &str, msg: C::Msg) {
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
                let outcome = C::reply_outcome(&reply);
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

    fn command(&mut self, cmd: Command<C>) {
        match cmd {
            Command::Request { request, reply } => {
                self.next_req += 1;
                let req = self.next_req;
                let kind = C::request_kind(&request);
                self.pending.insert(req, (reply, Instant::now(), kind));
                let now = self.now();
                self.core
                    .on_request(now, req, request, &mut self.rng, &mut self.out);
            }
            Command::State(tx) => {
                let _ = tx.send(self.core.state_json());
            }
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
        mut inbound: mpsc::Receiver<Inbound<C::Msg>>,
        mut commands: mpsc::Receiver<Command<C>>,
        mut deferred: mpsc::UnboundedReceiver<Deferred<C::Msg>>,
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
                Some(d) = deferred.recv() => match d {
                    Deferred::Send { to, msg } => self.mesh.send(&to, &msg),
                    Deferred::Deliver { from, msg } => {
                        let now = self.now();
                        self.core.on_message(now, &from, msg, &mut self.rng, &mut self.out);
                    }
                },
                _ = tokio::time::sleep_until(wake.into()) => self.tick(),
                _ = gauges.tick() => {
                    self.core.export(&self.metrics, &self.nodes);
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
    pub fsync: bool,
}

/// Runs node `id` of the cluster until Ctrl-C or SIGTERM.
pub async fn run(cluster: Cluster, id: &str, opts: RunOptions) -> anyhow::Result<()> {
    let cluster = Arc::new(cluster);
    let node = cluster
        .node(id)
        .with_context(|| format!("node {id:?} is not in {}", cluster.path.display()))?
        .clone();
    let metrics = Arc::new(Metrics::new(id, &cluster.file.system));
    let params = Arc::new(cluster.tokens_params());
    let mut core = TokensNode::new(id.to_string(), params);

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
    let (wal, records) = Wal::open(&data_dir, opts.fsync)?;
    let recovered = records.len();
    core.recover(records);
    tracing::info!(node = id, role = core.role(), epoch = core.config().epoch, recovered, data = %data_dir.display(), "starting");

    let (mesh, inbound) = Mesh::start(&cluster, id, metrics.clone())?;
    let faults = Arc::new(FaultControl::new(id, cluster.file.seed, metrics.clone()));
    faults.set(cluster.file.faults.clone(), None, None);
    let history = Arc::new(History::default());
    let (cmd_tx, cmd_rx) = mpsc::channel(4096);
    let (def_tx, def_rx) = mpsc::unbounded_channel();
    let handle = Arc::new(Handle::<TokensNode> {
        id: id.to_string(),
        commands: cmd_tx,
        metrics: metrics.clone(),
        faults: faults.clone(),
        history,
        secret: cluster.secret.clone(),
        cluster: cluster.clone(),
    });
    let listener = tokio::net::TcpListener::bind(node.admin)
        .await
        .with_context(|| format!("cannot bind the admin address {}", node.admin))?;
    tokio::spawn(admin::serve(listener, handle));
    core.export(&metrics, &cluster.ids());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    let driver = Driver {
        core,
        mesh,
        faults,
        wal: Some(wal),
        metrics,
        nodes: cluster.ids(),
        rng: ChaCha8Rng::seed_from_u64(cluster.file.seed ^ seed_of(id)),
        start: Instant::now(),
        next_req: 0,
        pending: HashMap::new(),
        deferred: def_tx,
        held: HashMap::new(),
        out: Outbox::default(),
    };
    tracing::info!(node = id, listen = %node.listen, admin = %node.admin, "serving");
    driver.run(inbound, cmd_rx, def_rx, stop_rx).await?;
    tracing::info!(node = id, "stopped");
    Ok(())
}

fn seed_of(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

async fn wait_for_signal() {
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
