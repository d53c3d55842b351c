//! A seeded discrete-event simulator that runs any sans-IO [`Core`] on an
//! in-memory network which drops, delays and duplicates messages, and speaks
//! the runtime's language: it honours the system's channel kind (FIFO links
//! deliver in send order per (from, to); non-FIFO links reorder) and applies
//! the same message fault rules ([`FaultEngine`]: drop, duplicate, delay,
//! reorder, cut, by from/to/kind, on the send and the receive side) as the
//! runtime's fault layer, so a rule set means the same in a test and in a
//! run. Nodes can crash and restart from their records, and pause.
//!
//! Everything random comes from one seed, so a failing run replays exactly:
//! the test prints the seed and the same seed gives the same interleaving.
//! The harness is generic so every system reuses it; the system supplies its
//! nodes, a workload, and an invariant checker called after every event.

use crate::api::PutFaults;
use crate::faults::{FaultEngine, Side};
use crate::protocol::{Core, MessageKind, NodeId, Outbox, ReqId, Time};
use crate::system::Channels;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

/// Faults of the simulated network, applied to every message independently.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub drop: f64,
    pub duplicate: f64,
    /// Delay is uniform in `[delay_min_us, delay_max_us]`; a wide range reorders.
    pub delay_min_us: u64,
    pub delay_max_us: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            drop: 0.0,
            duplicate: 0.0,
            delay_min_us: 100,
            delay_max_us: 2_000,
        }
    }
}

/// A reorder buffer: (release by, not before, message) in arrival order.
type Held<M> = Vec<(Time, Time, M)>;

/// One client operation as the simulator saw it.
#[derive(Clone, Debug)]
pub struct Entry<C: Core> {
    pub node: NodeId,
    pub request: C::Request,
    pub invoked: Time,
    pub completed: Option<(Time, C::Reply)>,
}

enum Event<C: Core> {
    /// A message leaves its sender's fault layer and enters the network.
    Transmit {
        from: NodeId,
        to: NodeId,
        msg: C::Msg,
    },
    /// A message arrives at `to`'s fault layer.
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: C::Msg,
    },
    /// A message passes `to`'s fault layer and reaches its core.
    Handle {
        from: NodeId,
        to: NodeId,
        msg: C::Msg,
    },
    /// A reorder buffer's oldest message may have waited long enough.
    Release {
        node: NodeId,
        side: Side,
        peer: NodeId,
    },
    Request {
        node: NodeId,
        index: usize,
    },
    Tick {
        node: NodeId,
    },
}

/// What the simulator did in one step, for invariant checkers.
#[derive(Clone, Debug, Default)]
pub struct Step {
    /// The node whose state the event may have changed.
    pub node: Option<NodeId>,
    /// History indexes completed by this step.
    pub completed: Vec<usize>,
    /// The node asked for another tick at or before now right after one.
    pub stalled: bool,
}

pub struct Sim<C: Core> {
    pub now: Time,
    rng: ChaCha8Rng,
    seq: u64,
    queue: BinaryHeap<Reverse<(Time, u64)>>,
    events: HashMap<u64, Event<C>>,
    nodes: BTreeMap<NodeId, C>,
    node_rngs: BTreeMap<NodeId, ChaCha8Rng>,
    tick_at: BTreeMap<NodeId, Time>,
    durable: BTreeMap<NodeId, Vec<C::Record>>,
    pub net: NetConfig,
    /// Per node: probability that any message to or from it is lost.
    pub omission: BTreeMap<NodeId, f64>,
    crashed: BTreeSet<NodeId>,
    /// Paused nodes and the events that arrived for them meanwhile.
    paused: BTreeMap<NodeId, Vec<(Time, Event<C>)>>,
    channels: Channels,
    /// FIFO: the latest arrival scheduled on each link, so no message
    /// overtakes one sent before it.
    link_clock: BTreeMap<(NodeId, NodeId), Time>,
    /// Each node's message fault layer, as `PUT /faults` programs it.
    faults: BTreeMap<NodeId, FaultEngine>,
    /// Reorder buffers per (node, side, peer): (release by, not before, message).
    held: BTreeMap<(NodeId, Side, NodeId), Held<C::Msg>>,
    pub history: Vec<Entry<C>>,
    pub messages_delivered: u64,
    pub messages_dropped: u64,
    steps: u64,
}

impl<C: Core> Sim<C> {
    /// A simulation with non-FIFO links (random delays reorder messages).
    pub fn new(seed: u64, nodes: Vec<C>, net: NetConfig) -> Self {
        Self::with_channels(seed, nodes, net, Channels::NonFifo)
    }

    /// A simulation whose links behave as `channels` says (a system's
    /// [`System::CHANNELS`](crate::system::System::CHANNELS)).
    pub fn with_channels(seed: u64, nodes: Vec<C>, net: NetConfig, channels: Channels) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut map = BTreeMap::new();
        let mut node_rngs = BTreeMap::new();
        let mut faults = BTreeMap::new();
        for n in nodes {
            node_rngs.insert(n.id().clone(), ChaCha8Rng::seed_from_u64(rng.random()));
            faults.insert(n.id().clone(), FaultEngine::new(n.id(), seed));
            map.insert(n.id().clone(), n);
        }
        let mut sim = Sim {
            now: 0,
            rng,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            nodes: map,
            node_rngs,
            tick_at: BTreeMap::new(),
            durable: BTreeMap::new(),
            net,
            omission: BTreeMap::new(),
            crashed: BTreeSet::new(),
            paused: BTreeMap::new(),
            channels,
            link_clock: BTreeMap::new(),
            faults,
            held: BTreeMap::new(),
            history: Vec::new(),
            messages_delivered: 0,
            messages_dropped: 0,
            steps: 0,
        };
        // A core may want a timer before its first input, as under the runtime.
        let ids: Vec<NodeId> = sim.nodes.keys().cloned().collect();
        for id in &ids {
            sim.schedule_tick(id);
        }
        sim
    }

    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    pub fn node(&self, id: &str) -> Option<&C> {
        self.nodes.get(id)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &C> {
        self.nodes.values()
    }

    pub fn is_crashed(&self, id: &str) -> bool {
        self.crashed.contains(id)
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn push(&mut self, at: Time, ev: Event<C>) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    /// Schedules a client request at `at`; returns its history index.
    pub fn invoke_at(&mut self, at: Time, node: &str, request: C::Request) -> usize {
        let index = self.history.len();
        self.history.push(Entry {
            node: node.to_string(),
            request,
            invoked: at,
            completed: None,
        });
        self.push(
            at.max(self.now),
            Event::Request {
                node: node.to_string(),
                index,
            },
        );
        index
    }

    /// Programs node `id`'s message fault layer with the body `PUT /faults`
    /// takes (its lease is ignored: simulated faults hold until replaced).
    pub fn put_faults(&mut self, id: &str, body: &PutFaults) {
        if let Some(e) = self.faults.get_mut(id) {
            e.set_rules(body.rules.clone(), body.seed);
        }
    }

    /// [`Sim::put_faults`] on every node.
    pub fn put_faults_all(&mut self, body: &PutFaults) {
        let ids: Vec<NodeId> = self.nodes.keys().cloned().collect();
        for id in ids {
            self.put_faults(&id, body);
        }
    }

    /// Stops a node: it loses its volatile state (its fault rules and
    /// reorder buffers too, as a restarted process does) and receives nothing.
    pub fn crash(&mut self, id: &str) {
        self.crashed.insert(id.to_string());
        self.tick_at.remove(id);
        self.paused.remove(id);
        if let Some(e) = self.faults.get_mut(id) {
            e.set_rules(Vec::new(), None);
        }
        self.held.retain(|(n, _, _), _| n != id);
        // What its fault layer still held (delayed sends and receipts, reorder
        // deadlines) dies with the process; messages already on the network
        // stay there.
        self.events.retain(|_, ev| match ev {
            Event::Transmit { from, .. } => from != id,
            Event::Handle { to, .. } => to != id,
            Event::Release { node, .. } => node != id,
            _ => true,
        });
    }

    /// Freezes a node (SIGSTOP): it handles nothing, and what arrives for it
    /// waits, in order, until [`Sim::resume`].
    pub fn pause(&mut self, id: &str) {
        if !self.crashed.contains(id) {
            self.paused.entry(id.to_string()).or_default();
            // Its timers wait too; `resume` asks the core for its next tick.
            self.tick_at.remove(id);
        }
    }

    pub fn resume(&mut self, id: &str) {
        for (_, ev) in self.paused.remove(id).unwrap_or_default() {
            self.push(self.now, ev);
        }
        self.schedule_tick(&id.to_string());
    }

    pub fn is_paused(&self, id: &str) -> bool {
        self.paused.contains_key(id)
    }

    /// Restarts a crashed node from its durable records.
    pub fn restart(&mut self, mut fresh: C) {
        let id = fresh.id().clone();
        let records = self.durable.get(&id).cloned().unwrap_or_default();
        fresh.recover(records);
        self.nodes.insert(id.clone(), fresh);
        self.crashed.remove(&id);
        self.schedule_tick(&id);
    }

    fn lost(&mut self, from: &str, to: &str) -> bool {
        let p_from = self.omission.get(from).copied().unwrap_or(0.0);
        let p_to = self.omission.get(to).copied().unwrap_or(0.0);
        let r = &mut self.rng;
        r.random_bool(self.net.drop.clamp(0.0, 1.0))
            || r.random_bool(p_from.clamp(0.0, 1.0))
            || r.random_bool(p_to.clamp(0.0, 1.0))
    }

    fn delay(&mut self) -> Time {
        let (lo, hi) = (
            self.net.delay_min_us,
            self.net.delay_max_us.max(self.net.delay_min_us),
        );
        self.rng.random_range(lo..=hi)
    }

    /// The network: loss, duplication and delay, in link order on FIFO links.
    fn transmit(&mut self, from: &NodeId, to: &NodeId, msg: C::Msg) {
        if self.lost(from, to) {
            self.messages_dropped += 1;
            return;
        }
        let copies = if self.rng.random_bool(self.net.duplicate.clamp(0.0, 1.0)) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = self.now + self.delay();
            if self.channels == Channels::Fifo {
                let clock = self
                    .link_clock
                    .entry((from.clone(), to.clone()))
                    .or_insert(0);
                at = at.max(*clock);
                *clock = at;
            }
            self.push(
                at,
                Event::Deliver {
                    from: from.clone(),
                    to: to.clone(),
                    msg: msg.clone(),
                },
            );
        }
    }

    /// Applies `node`'s fault layer on `side` to a message to or from `peer`:
    /// the runtime's decisions (drop, copies, delay as a lower bound, reorder
    /// buffers released shuffled when full or after their hold), each copy
    /// passed on as `next` at its time.
    fn fault(&mut self, node: &NodeId, side: Side, peer: &NodeId, msg: C::Msg) {
        let (from, to) = match side {
            Side::Send => (node.clone(), peer.clone()),
            Side::Receive => (peer.clone(), node.clone()),
        };
        let d = match self.faults.get_mut(node) {
            Some(e) if !e.is_empty() => e.decide(&from, &to, msg.kind(), side),
            _ => {
                return self.pass(node, side, peer, self.now, msg);
            }
        };
        if d.drop {
            self.messages_dropped += 1;
            return;
        }
        let delay = d.delay.as_micros() as Time;
        if let Some((window, hold)) = d.reorder {
            let key = (node.clone(), side, peer.clone());
            let not_before = self.now + delay;
            let by = not_before + hold.as_micros() as Time;
            let buf = self.held.entry(key.clone()).or_default();
            let first = buf.is_empty();
            for _ in 0..d.copies {
                buf.push((by, not_before, msg.clone()));
            }
            if buf.len() >= window {
                self.release(key);
            } else if first {
                self.push(
                    by,
                    Event::Release {
                        node: node.clone(),
                        side,
                        peer: peer.clone(),
                    },
                );
            }
            return;
        }
        for _ in 0..d.copies {
            self.pass(node, side, peer, self.now + delay, msg.clone());
        }
    }

    /// A message past `node`'s fault layer on `side`, at time `at`.
    fn pass(&mut self, node: &NodeId, side: Side, peer: &NodeId, at: Time, msg: C::Msg) {
        match side {
            Side::Send if at <= self.now => self.transmit(node, peer, msg),
            Side::Send => self.push(
                at,
                Event::Transmit {
                    from: node.clone(),
                    to: peer.clone(),
                    msg,
                },
            ),
            Side::Receive => self.push(
                at,
                Event::Handle {
                    from: peer.clone(),
                    to: node.clone(),
                    msg,
                },
            ),
        }
    }

    /// Lets a reorder buffer go, shuffled by the link's RNG as the runtime
    /// does; a message whose delay has not passed waits out the rest of it.
    fn release(&mut self, key: (NodeId, Side, NodeId)) {
        let Some(buf) = self.held.remove(&key) else {
            return;
        };
        let (node, side, peer) = key;
        let mut msgs: Vec<(Time, C::Msg)> = buf.into_iter().map(|(_, nb, m)| (nb, m)).collect();
        if let Some(e) = self.faults.get_mut(&node) {
            e.shuffle(&peer, side, &mut msgs);
        }
        for (not_before, msg) in msgs {
            self.pass(&node, side, &peer, not_before.max(self.now), msg);
        }
    }

    fn apply(&mut self, node: &NodeId, out: Outbox<C>, step: &mut Step) {
        self.durable
            .entry(node.clone())
            .or_default()
            .extend(out.records);
        for (to, msg) in out.sends {
            self.fault(node, Side::Send, &to, msg);
        }
        for (req, reply) in out.replies {
            if let Some(e) = self.history.get_mut(req as usize) {
                if e.completed.is_none() {
                    e.completed = Some((self.now, reply));
                    step.completed.push(req as usize);
                }
            }
        }
        self.schedule_tick(node);
    }

    fn schedule_tick(&mut self, node: &NodeId) {
        let Some(t) = self.nodes.get(node).and_then(|n| n.next_tick()) else {
            return;
        };
        let t = t.max(self.now);
        if self.tick_at.get(node).is_some_and(|&at| at <= t) {
            return;
        }
        self.tick_at.insert(node.clone(), t);
        self.push(t, Event::Tick { node: node.clone() });
    }

    /// Runs one event; false when nothing is left to do.
    pub fn step(&mut self) -> Option<Step> {
        let Reverse((at, seq)) = self.queue.pop()?;
        let ev = self.events.remove(&seq)?;
        self.now = self.now.max(at);
        self.steps += 1;
        let mut step = Step::default();
        let mut out = Outbox::<C>::default();
        // What arrives for a paused node, and what it would send, waits for
        // it; its ticks are asked for again on resume.
        let target = match &ev {
            Event::Deliver { to, .. } | Event::Handle { to, .. } => to,
            Event::Transmit { from, .. } => from,
            Event::Request { node, .. } | Event::Tick { node } | Event::Release { node, .. } => {
                node
            }
        };
        if let Some(waiting) = self.paused.get_mut(target) {
            if !matches!(ev, Event::Tick { .. }) {
                waiting.push((at, ev));
            }
            return Some(step);
        }
        let node = match ev {
            Event::Transmit { from, to, msg } => {
                self.transmit(&from, &to, msg);
                return Some(step);
            }
            Event::Deliver { from, to, msg } => {
                if self.crashed.contains(&to) {
                    self.messages_dropped += 1;
                    return Some(step);
                }
                self.fault(&to, Side::Receive, &from, msg);
                return Some(step);
            }
            Event::Release { node, side, peer } => {
                let key = (node, side, peer);
                // As the runtime does: the buffer goes when its oldest
                // message's hold is over.
                let due = self
                    .held
                    .get(&key)
                    .and_then(|b| b.first().map(|(by, _, _)| *by));
                match due {
                    Some(by) if by <= self.now => self.release(key),
                    Some(by) => {
                        let (node, side, peer) = key;
                        self.push(by, Event::Release { node, side, peer });
                    }
                    None => {}
                }
                return Some(step);
            }
            Event::Handle { from, to, msg } => {
                if self.crashed.contains(&to) {
                    self.messages_dropped += 1;
                    return Some(step);
                }
                let (Some(n), Some(r)) = (self.nodes.get_mut(&to), self.node_rngs.get_mut(&to))
                else {
                    return Some(step);
                };
                self.messages_delivered += 1;
                n.on_message(self.now, &from, msg, r, &mut out);
                to
            }
            Event::Request { node, index } => {
                if self.crashed.contains(&node) {
                    return Some(step);
                }
                let (Some(n), Some(r), Some(e)) = (
                    self.nodes.get_mut(&node),
                    self.node_rngs.get_mut(&node),
                    self.history.get(index),
                ) else {
                    return Some(step);
                };
                n.on_request(self.now, index as ReqId, e.request.clone(), r, &mut out);
                node
            }
            Event::Tick { node } => {
                if self.tick_at.get(&node) != Some(&at) || self.crashed.contains(&node) {
                    return Some(step);
                }
                self.tick_at.remove(&node);
                let (Some(n), Some(r)) = (self.nodes.get_mut(&node), self.node_rngs.get_mut(&node))
                else {
                    return Some(step);
                };
                if n.next_tick().is_some_and(|t| t <= self.now) {
                    n.on_tick(self.now, r, &mut out);
                    // A core that still wants a tick now would spin forever.
                    step.stalled = n.next_tick().is_some_and(|t| t <= self.now);
                }
                node
            }
        };
        self.apply(&node, out, &mut step);
        step.node = Some(node);
        Some(step)
    }

    /// Runs events until simulated time `until` (or `max_steps` events),
    /// calling `check` after each one. Stops at the first violation.
    pub fn run_until(
        &mut self,
        until: Time,
        max_steps: u64,
        check: &mut dyn FnMut(&Self, &Step) -> Result<(), String>,
    ) -> Result<(), String> {
        let limit = self.steps + max_steps;
        while self.steps < limit {
            match self.queue.peek() {
                Some(Reverse((at, _))) if *at <= until => {}
                _ => break,
            }
            let Some(step) = self.step() else { break };
            if step.stalled {
                return Err(format!(
                    "at t={}us: {:?} wants a tick in the past after ticking (a busy loop)",
                    self.now, step.node
                ));
            }
            check(self, &step)
                .map_err(|e| format!("at t={}us step {}: {e}", self.now, self.steps))?;
        }
        self.now = self.now.max(until);
        Ok(())
    }
}
