//! A bitcake node behind the one [`Core`] contract the drivers run: its
//! money ([`Ledger`]) and the wire messages that move it, its part in each
//! snapshot ([`Wave`], and [`Rounds`] as a master), Li's differential
//! records, its script, and the requests and replies `/ops` speaks.
//!
//! The invariant everything rests on (Lai-Yang): a node records epoch `e`
//! before it handles any message that carries `e` (see `docs/snapshot.md`).
//! A new epoch starts only at an initiator that knows the previous epoch's
//! global snapshot, so every node records every epoch, in order, and a
//! master always holds the global its differential records add to.

use super::api::{Collected, Event, SnapshotState};
use super::graph::NodeId;
use super::ledger::{Amount, Global, Ledger, LedgerError, Recorded};
use super::rounds::{RoundMsg, Rounds};
use super::script::Command;
use super::wave::{Epoch, Out, Wave};
use super::Params;
use crate::protocol::{Core, MessageKind, Outbox, ReqId, Time};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// Round messages a master keeps for rounds it has not begun (its region
/// is still converging); beyond it they are dropped and logged.
const EARLY_ROUNDS_LIMIT: usize = 10_000;

/// A wire message between bitcake nodes.
#[derive(
    Clone, Debug, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
#[strum(serialize_all = "snake_case")]
pub enum Msg {
    /// `amount` bitcakes for the receiver, or to pass on towards `dest`.
    /// `epoch` and `region` are the sender's recorded epoch and its region
    /// there (Lai-Yang's colour): the receiver records first if `epoch` is
    /// above its own.
    Transaction {
        seq: u64,
        amount: Amount,
        dest: NodeId,
        epoch: Epoch,
        region: Option<NodeId>,
    },
    Marker {
        epoch: Epoch,
        region: NodeId,
    },
    Answer {
        epoch: Epoch,
        child: bool,
        region: NodeId,
    },
    /// A subtree's records (differential) and the borders it saw.
    Up {
        epoch: Epoch,
        records: BTreeMap<NodeId, Recorded>,
        borders: BTreeSet<(NodeId, NodeId)>,
    },
    /// One round of the masters' exchange.
    Round {
        epoch: Epoch,
        round: u64,
        records: BTreeMap<NodeId, Recorded>,
        done: bool,
    },
    /// A master's global snapshot, to every other initiator (an initiator
    /// starts the next epoch only knowing this one).
    Collected {
        epoch: Epoch,
        master: NodeId,
        global: Global,
    },
}

impl MessageKind for Msg {
    const KINDS: &'static [&'static str] = <Msg as strum::VariantNames>::VARIANTS;
    fn kind(&self) -> &'static str {
        self.into()
    }
}

/// The answer to a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reply {
    /// The transfer left as transaction `seq` to neighbour `via`.
    Sent { seq: u64, via: NodeId },
    /// A burst sent `sent` transactions; `skipped` found too little money.
    Burst { sent: u64, skipped: u64 },
    /// The snapshot of `epoch` started here.
    Started { epoch: Epoch },
    Info {
        balance: Amount,
        epoch: Epoch,
        region: Option<NodeId>,
        parent: Option<NodeId>,
    },
    /// Nothing changed.
    Refused { error: String },
}

impl Reply {
    pub fn outcome(&self) -> crate::api::Outcome {
        match self {
            Reply::Refused { .. } => crate::api::Outcome::Failed,
            _ => crate::api::Outcome::Ok,
        }
    }
}

/// What one call into the node produces.
type Effects = Outbox<SnapNode>;

pub struct SnapNode {
    me: NodeId,
    params: Arc<Params>,
    ledger: Ledger,
    /// Li: this node's absolute record at its last cut; the next record
    /// is differential against it.
    base: Recorded,
    wave: Wave,
    /// A master's rounds, per epoch it is master of, until complete.
    rounds: BTreeMap<Epoch, Rounds>,
    early: Vec<(NodeId, RoundMsg)>,
    /// The last epoch whose region (as master) began its rounds.
    last_region_done: Epoch,
    collected: BTreeMap<Epoch, Collected>,
    /// Epochs started here, and when.
    started: BTreeMap<Epoch, Time>,
    seq: u64,
    seen: HashMap<NodeId, HashSet<u64>>,
    events: VecDeque<Event>,
    events_dropped: u64,
    script: VecDeque<Command>,
    wake: Time,
    messages: BTreeMap<Epoch, BTreeMap<String, u64>>,
    transactions_sent: u64,
    transactions_got: u64,
    duplicates: u64,
    refused: u64,
}

impl SnapNode {
    pub fn new(id: &str, params: &Arc<Params>) -> Self {
        SnapNode {
            me: id.to_string(),
            params: params.clone(),
            ledger: Ledger::new(params.initial),
            base: Recorded::default(),
            wave: Wave::new(id, params.graph.neighbours(id).cloned()),
            rounds: BTreeMap::new(),
            early: Vec::new(),
            last_region_done: 0,
            collected: BTreeMap::new(),
            started: BTreeMap::new(),
            seq: 0,
            seen: HashMap::new(),
            events: VecDeque::new(),
            events_dropped: 0,
            script: params.scripts.get(id).cloned().unwrap_or_default().into(),
            wake: 0,
            messages: BTreeMap::new(),
            transactions_sent: 0,
            transactions_got: 0,
            duplicates: 0,
            refused: 0,
        }
    }

    pub fn balance(&self) -> Amount {
        self.ledger.balance
    }

    pub fn epoch(&self) -> Epoch {
        self.wave.epoch
    }

    pub fn collected(&self) -> &BTreeMap<Epoch, Collected> {
        &self.collected
    }

    /// Protocol messages sent, by kind, over every epoch.
    pub fn message_totals(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for kinds in self.messages.values() {
            for (k, n) in kinds {
                *out.entry(k.clone()).or_default() += n;
            }
        }
        out
    }

    pub fn counters(&self) -> (u64, u64, u64, u64) {
        (
            self.transactions_sent,
            self.transactions_got,
            self.duplicates,
            self.refused,
        )
    }

    fn event(&mut self, e: Event) {
        if self.events.len() >= self.params.events_keep {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    /// Sends `amount` to neighbour `to` on its way to `dest`.
    fn give(
        &mut self,
        now: Time,
        to: &str,
        amount: Amount,
        dest: &str,
        out: &mut Effects,
    ) -> Result<u64, LedgerError> {
        assert!(
            self.params.graph.are_neighbours(&self.me, to),
            "{} gives to {to}, not a neighbour",
            self.me
        );
        if self.params.bugs.red_sender_mints && self.wave.epoch > 0 {
            // The seed's bug: a red node's transaction is sent, but not
            // debited nor recorded as given.
            if amount == 0 || amount > self.ledger.balance {
                return Err(LedgerError::Insufficient {
                    balance: self.ledger.balance,
                    amount,
                });
            }
        } else {
            self.ledger.give(to, amount)?;
        }
        self.seq += 1;
        self.transactions_sent += 1;
        let seq = self.seq;
        self.event(Event {
            sent: true,
            peer: to.to_string(),
            seq,
            amount,
            epoch: self.wave.epoch,
            at_us: now,
        });
        out.sends.push((
            to.to_string(),
            Msg::Transaction {
                seq,
                amount,
                dest: dest.to_string(),
                epoch: self.wave.epoch,
                region: self.wave.region.clone(),
            },
        ));
        Ok(seq)
    }

    /// This node's record at a cut: absolute balance, histories since the
    /// previous cut (Li), which becomes the new base.
    fn cut(&mut self) -> Recorded {
        let abs = self.ledger.record();
        let delta = abs.since(&self.base);
        let old = std::mem::replace(&mut self.base, abs);
        if self.params.bugs.stale_differential {
            // The history of the first neighbour is never reset.
            if let Some(nb) = self.params.graph.neighbours(&self.me).next() {
                let kept = old.got.get(nb).copied().unwrap_or(0);
                self.base.got.insert(nb.clone(), kept);
            }
        }
        delta
    }

    /// Records epoch `epoch` in `region` on a message from `from`.
    fn record(&mut self, epoch: Epoch, region: &str, from: &str) {
        let rec = self.cut();
        self.wave.record(epoch, region, from, rec);
        tracing::info!(
            node = %self.me, epoch, region, parent = from,
            "recorded: joins {region}'s region, parent {from}"
        );
    }

    /// Whether a message carrying `epoch` may be handled: never skipping
    /// an epoch (no honest node sends one), so garbage cannot.
    fn epoch_ok(&self, from: &str, epoch: Epoch) -> bool {
        if epoch > self.wave.epoch + 1 {
            tracing::warn!(
                node = %self.me, from, epoch, mine = self.wave.epoch,
                "a message skips an epoch: dropped"
            );
            return false;
        }
        true
    }

    fn count(&mut self, epoch: Epoch, kind: &str) {
        *self
            .messages
            .entry(epoch)
            .or_default()
            .entry(kind.to_string())
            .or_default() += 1;
    }

    /// Moves the wave's and the rounds' messages out, starts a master's
    /// rounds when its region is done, and assembles the global snapshot
    /// when they complete.
    fn drive(&mut self, now: Time, out: &mut Effects) {
        for o in std::mem::take(&mut self.wave.out) {
            let (to, msg) = match o {
                Out::Marker { to, epoch, region } => (to, Msg::Marker { epoch, region }),
                Out::Answer {
                    to,
                    epoch,
                    child,
                    region,
                } => (
                    to,
                    Msg::Answer {
                        epoch,
                        child,
                        region,
                    },
                ),
                Out::Up {
                    to,
                    epoch,
                    records,
                    borders,
                } => (
                    to,
                    Msg::Up {
                        epoch,
                        records,
                        borders,
                    },
                ),
            };
            let epoch = msg_epoch(&msg);
            self.count(epoch, msg.kind());
            out.sends.push((to, msg));
        }
        let region_done = self
            .wave
            .done
            .clone()
            .filter(|d| d.epoch > self.last_region_done);
        if let Some(done) = region_done {
            self.last_region_done = done.epoch;
            assert_eq!(
                self.wave.region.as_deref(),
                Some(self.me.as_str()),
                "only a master completes a region"
            );
            tracing::info!(
                node = %self.me, epoch = done.epoch, nodes = done.records.len(),
                bordering = ?done.neighbour_regions,
                "region collected; exchanging with the bordering masters"
            );
            let r = Rounds::new(
                &self.me,
                done.epoch,
                done.records,
                done.neighbour_regions,
                self.params.graph.nodes().cloned().collect(),
            );
            self.rounds.insert(done.epoch, r);
            for (from, m) in std::mem::take(&mut self.early) {
                match self.rounds.get_mut(&m.epoch) {
                    Some(r) => r.on_round(&from, m),
                    None => self.early.push((from, m)),
                }
            }
        }
        let epochs: Vec<Epoch> = self.rounds.keys().copied().collect();
        for epoch in epochs {
            let Some(r) = self.rounds.get_mut(&epoch) else {
                continue;
            };
            let sends = std::mem::take(&mut r.out);
            let complete = r.complete;
            for m in sends {
                self.count(epoch, "round");
                out.sends.push((
                    m.to.clone(),
                    Msg::Round {
                        epoch: m.epoch,
                        round: m.round,
                        records: m.records,
                        done: m.done,
                    },
                ));
            }
            if complete {
                if let Some(r) = self.rounds.remove(&epoch) {
                    self.complete(now, epoch, r, out);
                }
            }
        }
    }

    /// A master's rounds are complete: the global snapshot of `epoch`.
    fn complete(&mut self, now: Time, epoch: Epoch, r: Rounds, out: &mut Effects) {
        let prev = match epoch {
            1 => None,
            e => {
                let p = self.collected.get(&(e - 1));
                assert!(
                    p.is_some(),
                    "{} is master of epoch {e} without the global of {}",
                    self.me,
                    e - 1
                );
                p.map(|c| &c.global)
            }
        };
        let Some(global) = Global::assemble(prev, &r.known, self.params.graph.edge_list()) else {
            panic!(
                "{}'s rounds of {epoch} complete without every record",
                self.me
            );
        };
        tracing::info!(
            node = %self.me, epoch, total = global.total, rounds = ?r.log,
            "snapshot {epoch} collected:\n{}", global.text()
        );
        for (round, known) in &r.log {
            tracing::info!(node = %self.me, epoch, round, known, "round {round}: {known} records known");
        }
        let c = Collected {
            epoch,
            master: self.me.clone(),
            global: global.clone(),
            rounds: r.log.clone(),
            neighbour_regions: Vec::new(),
            took_us: self.started.get(&epoch).map(|s| now.saturating_sub(*s)),
        };
        self.collected.insert(epoch, c);
        for i in self.params.initiators.clone() {
            if i != self.me {
                self.count(epoch, "collected");
                out.sends.push((
                    i,
                    Msg::Collected {
                        epoch,
                        master: self.me.clone(),
                        global: global.clone(),
                    },
                ));
            }
        }
    }

    fn refuse(&mut self, error: String) -> Reply {
        tracing::warn!(node = %self.me, "refused: {error}");
        self.refused += 1;
        Reply::Refused { error }
    }

    /// Runs one command (from `/ops` or the script).
    fn command(
        &mut self,
        now: Time,
        c: Command,
        rng: &mut dyn RngCore,
        out: &mut Effects,
    ) -> Reply {
        match c {
            Command::Transfer { to, amount } => {
                if to == self.me {
                    return self.refuse(format!("{to} cannot transfer to itself"));
                }
                let Some(via) = self.params.graph.next_hop(&self.me, &to).cloned() else {
                    return self.refuse(format!("{to} is not a node of the network"));
                };
                match self.give(now, &via, amount, &to, out) {
                    Ok(seq) => Reply::Sent { seq, via },
                    Err(e) => self.refuse(e.to_string()),
                }
            }
            Command::Burst => {
                let neighbours: Vec<NodeId> =
                    self.params.graph.neighbours(&self.me).cloned().collect();
                let (mut sent, mut skipped) = (0, 0);
                for _ in 0..self.params.burst {
                    for nb in &neighbours {
                        let amount = rng.random_range(1..=self.params.burst_max.max(1));
                        match self.give(now, nb, amount, nb, out) {
                            Ok(_) => sent += 1,
                            Err(_) => skipped += 1,
                        }
                    }
                }
                Reply::Burst { sent, skipped }
            }
            Command::Snapshot => self.start(now),
            Command::Info => Reply::Info {
                balance: self.ledger.balance,
                epoch: self.wave.epoch,
                region: self.wave.region.clone(),
                parent: self.wave.parent.clone(),
            },
            Command::Pause { .. } => self.refuse("pause is a script line, not a command".into()),
        }
    }

    /// An initiator starts the next epoch (the seed's errors otherwise).
    fn start(&mut self, now: Time) -> Reply {
        if !self.params.is_initiator(&self.me) {
            return self.refuse(format!(
                "{} is not an initiator (the initiators are {})",
                self.me,
                self.params.initiators.join(", ")
            ));
        }
        let last = self.wave.epoch;
        if last > 0 && !self.collected.contains_key(&last) {
            return self.refuse(format!(
                "tried to start collecting before finished with previous: snapshot {last} is still being collected"
            ));
        }
        let rec = self.cut();
        let epoch = last + 1;
        assert!(self.wave.start(epoch, rec), "epoch {epoch} starts once");
        self.started.insert(epoch, now);
        tracing::info!(node = %self.me, epoch, "snapshot {epoch} started, master of its region");
        Reply::Started { epoch }
    }

    fn on_transaction(
        &mut self,
        now: Time,
        from: &str,
        seq: u64,
        amount: Amount,
        dest: NodeId,
        out: &mut Effects,
    ) {
        if !self.seen.entry(from.to_string()).or_default().insert(seq) {
            self.duplicates += 1;
            return;
        }
        if let Err(e) = self.ledger.get(from, amount) {
            tracing::error!(node = %self.me, from, seq, "transaction refused: {e}");
            return;
        }
        self.transactions_got += 1;
        self.event(Event {
            sent: false,
            peer: from.to_string(),
            seq,
            amount,
            epoch: self.wave.epoch,
            at_us: now,
        });
        if dest != self.me {
            let Some(via) = self.params.graph.next_hop(&self.me, &dest).cloned() else {
                tracing::error!(node = %self.me, from, %dest, "a transaction for no node: kept");
                return;
            };
            if let Err(e) = self.give(now, &via, amount, &dest, out) {
                tracing::error!(node = %self.me, %dest, "cannot pass a transaction on: {e}");
            }
        }
    }
}

fn msg_epoch(m: &Msg) -> Epoch {
    match m {
        Msg::Transaction { epoch, .. }
        | Msg::Marker { epoch, .. }
        | Msg::Answer { epoch, .. }
        | Msg::Up { epoch, .. }
        | Msg::Round { epoch, .. }
        | Msg::Collected { epoch, .. } => *epoch,
    }
}

impl Core for SnapNode {
    type Msg = Msg;
    type Request = Command;
    type Reply = Reply;
    /// Nothing is durable: the algorithms assume processes that do not
    /// crash (see docs/snapshot.md).
    type Record = ();
    type State = SnapshotState;

    fn id(&self) -> &NodeId {
        &self.me
    }

    fn on_message(
        &mut self,
        now: Time,
        from: &NodeId,
        msg: Msg,
        _rng: &mut dyn RngCore,
        out: &mut Effects,
    ) {
        let neighbour = self.params.graph.are_neighbours(&self.me, from);
        let initiator = self.params.is_initiator(from);
        let from_master = matches!(msg, Msg::Round { .. } | Msg::Collected { .. });
        if (from_master && !initiator) || (!from_master && !neighbour) {
            tracing::warn!(node = %self.me, from, kind = msg.kind(), "a message from a node that may not send it: dropped");
            return;
        }
        match msg {
            Msg::Transaction {
                seq,
                amount,
                dest,
                epoch,
                region,
            } => {
                if !self.epoch_ok(from, epoch) {
                    return;
                }
                match (self.wave.must_record(epoch), region) {
                    (false, _) => self.on_transaction(now, from, seq, amount, dest, out),
                    (true, Some(region)) if self.params.bugs.record_after_handling => {
                        self.on_transaction(now, from, seq, amount, dest, out);
                        self.record(epoch, &region, from);
                    }
                    (true, Some(region)) => {
                        self.record(epoch, &region, from);
                        self.on_transaction(now, from, seq, amount, dest, out);
                    }
                    (true, None) => {
                        tracing::warn!(node = %self.me, from, epoch, "a transaction of an epoch without a region: dropped");
                        return;
                    }
                }
            }
            Msg::Marker { epoch, region } => {
                if !self.epoch_ok(from, epoch) || epoch == 0 {
                    return;
                }
                if self.wave.must_record(epoch) {
                    self.record(epoch, &region, from);
                }
                self.wave.on_marker(from, epoch, &region);
            }
            Msg::Answer {
                epoch,
                child,
                region,
            } => self.wave.on_answer(from, epoch, child, &region),
            Msg::Up {
                epoch,
                records,
                borders,
            } => self.wave.on_up(from, epoch, records, borders),
            Msg::Round {
                epoch,
                round,
                records,
                done,
            } => {
                let m = RoundMsg {
                    to: self.me.clone(),
                    epoch,
                    round,
                    records,
                    done,
                };
                match self.rounds.get_mut(&epoch) {
                    Some(r) => r.on_round(from, m),
                    None if self.collected.contains_key(&epoch) => {}
                    None if self.early.len() < EARLY_ROUNDS_LIMIT => {
                        self.early.push((from.clone(), m))
                    }
                    None => {
                        tracing::warn!(node = %self.me, from, epoch, "too many early rounds: dropped")
                    }
                }
            }
            Msg::Collected {
                epoch,
                master,
                global,
            } => {
                self.collected.entry(epoch).or_insert_with(|| {
                    tracing::info!(node = %self.me, epoch, %master, "told snapshot {epoch} is collected");
                    Collected {
                        epoch,
                        master,
                        global,
                        rounds: Vec::new(),
                        neighbour_regions: Vec::new(),
                        took_us: None,
                    }
                });
            }
        }
        self.drive(now, out);
    }

    fn on_request(
        &mut self,
        now: Time,
        req: ReqId,
        request: Command,
        rng: &mut dyn RngCore,
        out: &mut Effects,
    ) {
        let reply = self.command(now, request, rng, out);
        out.replies.push((req, reply));
        self.drive(now, out);
    }

    /// Runs the script's lines that are due.
    fn on_tick(&mut self, now: Time, rng: &mut dyn RngCore, out: &mut Effects) {
        // Bounded by the script's length.
        while self.wake <= now {
            let Some(c) = self.script.pop_front() else {
                break;
            };
            if let Command::Pause { ms } = c {
                self.wake = now + ms * 1_000;
                continue;
            }
            let kind = c.kind();
            let reply = self.command(now, c, rng, out);
            tracing::info!(node = %self.me, command = kind, ?reply, "script");
        }
        self.drive(now, out);
    }

    fn next_tick(&self) -> Option<Time> {
        (!self.script.is_empty()).then_some(self.wake)
    }

    fn recover(&mut self, _records: Vec<()>) {}

    fn compact(&self) -> Vec<()> {
        Vec::new()
    }

    fn state(&self) -> SnapshotState {
        SnapshotState {
            balance: self.ledger.balance,
            initiator: self.params.is_initiator(&self.me),
            epoch: self.wave.epoch,
            region: self.wave.region.clone(),
            parent: self.wave.parent.clone(),
            started: self.started.keys().copied().collect(),
            collected: self.collected.values().cloned().collect(),
            messages: self.messages.iter().map(|(e, k)| (*e, k.clone())).collect(),
            transactions_sent: self.transactions_sent,
            transactions_got: self.transactions_got,
            duplicates: self.duplicates,
            refused: self.refused,
            events_dropped: self.events_dropped,
            events: self.events.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::snapshot::graph::Graph;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// a - b - c, a line; `a` the initiator.
    fn params() -> Arc<Params> {
        let g = Graph::new(
            &[
                ("a".to_string(), vec!["b".to_string()]),
                ("b".to_string(), vec!["a".to_string(), "c".to_string()]),
                ("c".to_string(), vec!["b".to_string()]),
            ]
            .into(),
        )
        .expect("a line");
        Arc::new(Params::new(g, vec!["a".into()]))
    }

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(1)
    }

    fn request(n: &mut SnapNode, c: Command) -> (Reply, Effects) {
        let mut out = Effects::default();
        n.on_request(0, 1, c, &mut rng(), &mut out);
        let reply = out.replies.pop().expect("a reply").1;
        (reply, out)
    }

    fn deliver(n: &mut SnapNode, from: &str, m: Msg) -> Effects {
        let mut out = Effects::default();
        n.on_message(0, &from.to_string(), m, &mut rng(), &mut out);
        out
    }

    fn tx(seq: u64, amount: Amount, dest: &str, epoch: Epoch, region: Option<&str>) -> Msg {
        Msg::Transaction {
            seq,
            amount,
            dest: dest.into(),
            epoch,
            region: region.map(String::from),
        }
    }

    #[test]
    fn a_transfer_to_a_non_neighbour_is_routed_and_passed_on() {
        let p = params();
        let mut a = SnapNode::new("a", &p);
        let (reply, out) = request(
            &mut a,
            Command::Transfer {
                to: "c".into(),
                amount: 30,
            },
        );
        assert_eq!(
            reply,
            Reply::Sent {
                seq: 1,
                via: "b".into()
            }
        );
        assert_eq!(a.balance(), 970);
        let (to, m) = out.sends[0].clone();
        assert_eq!(to, "b");
        let mut b = SnapNode::new("b", &p);
        let out = deliver(&mut b, "a", m);
        assert_eq!(b.balance(), 1000, "b credits and passes it on");
        assert_eq!(out.sends, vec![("c".to_string(), tx(1, 30, "c", 0, None))]);
        // Each hop is a transaction in both ends' histories.
        assert_eq!(b.state().events.len(), 2);
    }

    #[test]
    fn bad_commands_are_refused_and_change_nothing() {
        let p = params();
        let mut b = SnapNode::new("b", &p);
        for c in [
            Command::Transfer {
                to: "b".into(),
                amount: 1,
            },
            Command::Transfer {
                to: "z".into(),
                amount: 1,
            },
            Command::Transfer {
                to: "a".into(),
                amount: 0,
            },
            Command::Transfer {
                to: "a".into(),
                amount: 1001,
            },
            Command::Snapshot,
            Command::Pause { ms: 1 },
        ] {
            let (reply, out) = request(&mut b, c.clone());
            assert!(matches!(reply, Reply::Refused { .. }), "{c:?}: {reply:?}");
            assert!(out.sends.is_empty(), "{c:?}");
        }
        assert_eq!(b.balance(), 1000);
        assert_eq!(b.state().refused, 6);
        let (Reply::Refused { error }, _) = request(&mut b, Command::Snapshot) else {
            panic!("refused");
        };
        assert!(
            error.contains("b is not an initiator (the initiators are a)"),
            "{error}"
        );
    }

    /// Lai-Yang: the first message of a newer epoch makes the node record
    /// before it handles it, so that message is after the cut.
    #[test]
    fn a_newer_transaction_is_handled_after_the_cut() {
        let p = params();
        let mut b = SnapNode::new("b", &p);
        let out = deliver(&mut b, "a", tx(1, 40, "b", 1, Some("a")));
        assert_eq!(b.epoch(), 1);
        assert_eq!(b.balance(), 1040);
        let s = b.state();
        assert_eq!(
            (s.region.as_deref(), s.parent.as_deref()),
            (Some("a"), Some("a"))
        );
        assert_eq!(s.events[0].epoch, 1, "handled after recording 1");
        // A marker to every neighbour but its parent, none yet up.
        assert_eq!(
            out.sends,
            vec![(
                "c".to_string(),
                Msg::Marker {
                    epoch: 1,
                    region: "a".into()
                }
            )]
        );
        // a's marker comes later (non-FIFO): b answers as a's child.
        let out = deliver(
            &mut b,
            "a",
            Msg::Marker {
                epoch: 1,
                region: "a".into(),
            },
        );
        assert_eq!(
            out.sends,
            vec![(
                "a".to_string(),
                Msg::Answer {
                    epoch: 1,
                    child: true,
                    region: "a".into()
                }
            )]
        );
        // c answers not-child; b has no children: its record goes up, and
        // it holds its balance before the 40 (1000).
        let out = deliver(
            &mut b,
            "c",
            Msg::Answer {
                epoch: 1,
                child: false,
                region: "a".into(),
            },
        );
        let [(to, Msg::Up { records, .. })] = &out.sends[..] else {
            panic!("{:?}", out.sends);
        };
        assert_eq!(to, "a");
        assert_eq!(records["b"].balance, 1000);
    }

    #[test]
    fn duplicates_strangers_and_skipped_epochs_change_nothing() {
        let p = params();
        let mut a = SnapNode::new("a", &p);
        deliver(&mut a, "b", tx(7, 5, "a", 0, None));
        deliver(&mut a, "b", tx(7, 5, "a", 0, None));
        assert_eq!((a.balance(), a.state().duplicates), (1005, 1));
        // c is not a's neighbour; b's message skips an epoch.
        let out = deliver(&mut a, "c", tx(1, 5, "a", 0, None));
        assert!(out.sends.is_empty());
        let out = deliver(&mut a, "b", tx(8, 5, "a", 2, Some("b")));
        assert!(out.sends.is_empty());
        assert_eq!((a.balance(), a.epoch()), (1005, 0));
    }

    /// The seed's error: an initiator refuses a new snapshot until it
    /// knows the previous one's result; a whole snapshot of the line.
    #[test]
    fn an_initiator_starts_the_next_snapshot_only_after_collecting() {
        let p = params();
        let mut nodes: BTreeMap<NodeId, SnapNode> = ["a", "b", "c"]
            .iter()
            .map(|id| (id.to_string(), SnapNode::new(id, &p)))
            .collect();
        let a = nodes.get_mut("a").expect("a");
        let (reply, out) = request(a, Command::Snapshot);
        assert_eq!(reply, Reply::Started { epoch: 1 });
        let (reply, _) = request(a, Command::Snapshot);
        assert!(
            matches!(reply, Reply::Refused { ref error } if error.contains("before finished with previous"))
        );
        // Deliver everything, in order (bounded by the messages a snapshot
        // of three nodes sends).
        let mut flight: VecDeque<(NodeId, NodeId, Msg)> = out
            .sends
            .into_iter()
            .map(|(to, m)| ("a".to_string(), to, m))
            .collect();
        for _ in 0..100 {
            let Some((from, to, m)) = flight.pop_front() else {
                break;
            };
            let n = nodes.get_mut(&to).expect("node");
            let out = deliver(n, &from, m);
            flight.extend(out.sends.into_iter().map(|(t, m)| (to.clone(), t, m)));
        }
        assert!(flight.is_empty());
        let a = nodes.get_mut("a").expect("a");
        let c = &a.collected()[&1];
        assert_eq!(c.global.total, 3000);
        assert_eq!(c.rounds, vec![(1, 3)], "one region: complete at once");
        let (reply, _) = request(a, Command::Snapshot);
        assert_eq!(reply, Reply::Started { epoch: 2 });
    }
}
