//! A bank server: the primary's write path (order, make durable, ship,
//! acknowledge when the standby has it), the standby's apply path and state
//! transfer, the heartbeat lease that decides when to ask for a new epoch,
//! and the proposer's side of the witnesses' Paxos round that chooses it.

use super::bank::Seen;
use super::{Answer, Bank, Entry, Epoch, Msg, OpResult, Params, Record, Request, RequestId};
use crate::protocol::{NodeId, Time};
use rand::{Rng, RngCore};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Entries shipped in one message at most (catch-up goes in batches).
const BATCH: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Leads `epoch` (it was chosen with this server as primary).
    Primary,
    /// Follows. `synced_with`: the primary whose log this server's log is a
    /// prefix of (set by a snapshot from it, or from the start); `None`
    /// after a restart or a step-down, until a snapshot arrives.
    Standby { synced_with: Option<NodeId> },
}

/// A lookup waiting until the standby has echoed `probe` and holds every
/// write up to `upto` (so what it read can no longer be lost).
#[derive(Clone, Debug)]
struct PendingRead {
    client: NodeId,
    tag: u64,
    answer: Answer,
    upto: u64,
    probe: u64,
}

/// A Paxos round this server proposes, to lead the next epoch.
#[derive(Clone, Debug)]
struct Round {
    n: u64,
    /// The standby the new epoch should have (`None`: alone).
    want_standby: Option<NodeId>,
    /// Set once phase 2 began; from then on the round is never abandoned
    /// silently (its value may be chosen).
    value: Option<Epoch>,
    promises: BTreeMap<NodeId, Epoch>,
    accepts: BTreeSet<NodeId>,
    nacks: BTreeSet<NodeId>,
    started: Time,
    last_send: Time,
}

pub struct Server {
    id: NodeId,
    peer: NodeId,
    params: Arc<Params>,
    pub(super) epoch: Epoch,
    pub(super) bank: Bank,
    pub(super) mode: Mode,
    /// Writes and reads wait for the standby. True in an epoch with a
    /// standby, and from the moment a readmission round begins; false only
    /// once an epoch without a standby is chosen.
    pub(super) requires_peer: bool,
    pub(super) peer_acked: u64,
    sent_upto: u64,
    probe: u64,
    peer_probe: u64,
    /// Primary: the standby's last useful answer. Standby: the primary's
    /// last message. The lease runs from here.
    last_peer: Time,
    last_heartbeat: Option<Time>,
    /// When and for which request nonce the last snapshot went out.
    last_snapshot: Option<(Time, Option<u64>)>,
    /// Standby: the nonce of the snapshot it asked for and would install.
    awaiting: Option<u64>,
    writes: BTreeMap<u64, Vec<(NodeId, u64, Answer)>>,
    reads: Vec<PendingRead>,
    round: Option<Round>,
    highest_seen: u64,
    next_round_at: Time,
    pub(super) deduplicated: u64,
    pub(super) failovers: u64,
    /// Epochs in which this process acknowledged a write (for `/state`).
    pub(super) acknowledged_in: BTreeSet<u64>,
    /// Entries received whose recomputed answer differed (only with bugs on).
    pub(super) diverged: u64,
}

impl Server {
    pub fn new(id: NodeId, params: Arc<Params>) -> Self {
        let epoch = params.initial_epoch();
        let peer = params.peer_of(&id).clone();
        let mode = if epoch.primary == id {
            Mode::Primary
        } else {
            Mode::Standby {
                synced_with: Some(epoch.primary.clone()),
            }
        };
        Server {
            bank: Bank::new(params.accounts.clone()),
            id,
            peer,
            params,
            epoch,
            mode,
            requires_peer: true,
            peer_acked: 0,
            sent_upto: 0,
            probe: 0,
            peer_probe: 0,
            last_peer: 0,
            last_heartbeat: None,
            last_snapshot: None,
            awaiting: None,
            writes: BTreeMap::new(),
            reads: Vec::new(),
            round: None,
            highest_seen: 0,
            next_round_at: 0,
            deduplicated: 0,
            failovers: 0,
            acknowledged_in: BTreeSet::new(),
            diverged: 0,
        }
    }

    pub fn id(&self) -> &NodeId {
        &self.id
    }

    pub fn is_primary(&self) -> bool {
        self.mode == Mode::Primary
    }

    /// Acknowledging alone: a chosen epoch without a standby.
    pub fn is_degraded(&self) -> bool {
        self.is_primary() && !self.requires_peer
    }

    pub fn is_synced(&self) -> bool {
        match &self.mode {
            Mode::Primary => true,
            Mode::Standby { synced_with } => synced_with.as_ref() == Some(&self.epoch.primary),
        }
    }

    pub fn in_round(&self) -> bool {
        self.round.is_some()
    }

    pub fn pending(&self) -> usize {
        self.writes.values().map(Vec::len).sum::<usize>() + self.reads.len()
    }

    /// Rebuilds the epoch and the bank from the durable log. A restarted
    /// server follows until a primary's snapshot or its own round says
    /// otherwise: it may have missed an epoch chosen while it was down.
    pub fn recover(&mut self, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        for r in records {
            match r {
                Record::Epoch(e) => self.epoch = e,
                Record::Installed(b) => self.bank = b,
                Record::Proposed(n) => self.highest_seen = self.highest_seen.max(n),
                Record::Entry(e) => {
                    if e.action_id == self.bank.action_id + 1 {
                        self.bank
                            .apply(e, self.params.dedup_window, self.params.log_keep);
                    } else {
                        tracing::error!(node = %self.id, at = e.action_id, applied = self.bank.action_id, "log record out of order; skipped");
                    }
                }
                other => tracing::error!(node = %self.id, ?other, "not a server record; skipped"),
            }
        }
        self.highest_seen = self.highest_seen.max(self.epoch.n);
        self.mode = Mode::Standby { synced_with: None };
        self.requires_peer = true;
        self.peer_acked = 0;
    }

    pub fn compact(&self) -> Vec<Record> {
        vec![
            Record::Installed(self.bank.clone()),
            Record::Epoch(self.epoch.clone()),
            Record::Proposed(self.highest_seen),
        ]
    }

    fn committed(&self) -> u64 {
        if self.requires_peer && !self.params.bugs.ack_before_standby {
            self.peer_acked.min(self.bank.action_id)
        } else {
            self.bank.action_id
        }
    }

    fn send(&self, to: &NodeId, msg: Msg, out: &mut Out) {
        out.sends.push((to.clone(), msg));
    }

    fn reply(&self, to: &NodeId, tag: u64, result: OpResult, out: &mut Out) {
        self.send(to, Msg::OpReply { tag, result }, out);
    }

    fn witnesses(&self) -> &[NodeId] {
        &self.params.clients
    }

    // ----- client operations -------------------------------------------

    pub fn on_op(
        &mut self,
        now: Time,
        from: &NodeId,
        tag: u64,
        id: RequestId,
        request: Request,
        out: &mut Out,
    ) {
        if !self.params.clients.contains(from) || id.client != *from {
            tracing::warn!(node = %self.id, %from, %id, "operation from a node that is not its client; ignored");
            return;
        }
        if self.mode != Mode::Primary {
            let result = if self.round.is_some() || self.epoch.primary == self.id {
                OpResult::Busy
            } else {
                OpResult::NotPrimary {
                    primary: Some(self.epoch.primary.clone()),
                }
            };
            return self.reply(from, tag, result, out);
        }
        if !request.is_write() {
            let answer = self.bank.lookup(request.account());
            if !self.requires_peer || self.params.bugs.ack_before_standby {
                let result = OpResult::Done {
                    answer,
                    epoch: self.epoch.n,
                    action_id: self.bank.action_id,
                };
                return self.reply(from, tag, result, out);
            }
            self.probe += 1;
            self.reads.push(PendingRead {
                client: from.clone(),
                tag,
                answer,
                upto: self.bank.action_id,
                probe: self.probe,
            });
            let msg = Msg::Replicate {
                epoch: self.epoch.clone(),
                entries: Vec::new(),
                probe: self.probe,
            };
            return self.send(&self.peer.clone(), msg, out);
        }
        match self.bank.seen(&id) {
            Seen::Expired => self.reply(from, tag, OpResult::Expired, out),
            Seen::Done(at, answer) => {
                self.deduplicated += 1;
                self.writes
                    .entry(at)
                    .or_default()
                    .push((from.clone(), tag, answer));
                self.release(out);
            }
            Seen::New => {
                let entry = self.bank.execute(self.epoch.n, id, request);
                let at = entry.action_id;
                out.records.push(Record::Entry(entry.clone()));
                let answer = self.bank.apply(
                    entry.clone(),
                    self.params.dedup_window,
                    self.params.log_keep,
                );
                assert_eq!(answer, entry.answer, "execute and apply agree");
                self.writes
                    .entry(at)
                    .or_default()
                    .push((from.clone(), tag, answer));
                if self.sent_upto + 1 == at {
                    self.sent_upto = at;
                    let msg = Msg::Replicate {
                        epoch: self.epoch.clone(),
                        entries: vec![entry],
                        probe: self.probe,
                    };
                    self.send(&self.peer.clone(), msg, out);
                }
                self.release(out);
                let _ = now;
            }
        }
    }

    /// Answers every write and read the current commit point covers.
    fn release(&mut self, out: &mut Out) {
        if self.mode != Mode::Primary {
            return;
        }
        let c = self.committed();
        let epoch = self.epoch.n;
        let mut done = Vec::new();
        while let Some(entry) = self.writes.first_entry() {
            if *entry.key() > c {
                break;
            }
            let (at, waiters) = entry.remove_entry();
            for (client, tag, answer) in waiters {
                done.push((client, tag, answer, at));
            }
        }
        if !done.is_empty() {
            self.acknowledged_in.insert(epoch);
        }
        for (client, tag, answer, at) in done {
            self.reply(
                &client,
                tag,
                OpResult::Done {
                    answer,
                    epoch,
                    action_id: at,
                },
                out,
            );
        }
        let alone = !self.requires_peer || self.params.bugs.ack_before_standby;
        let probe = self.peer_probe;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads)
            .into_iter()
            .partition(|r| r.upto <= c && (alone || r.probe <= probe));
        self.reads = waiting;
        for r in ready {
            self.reply(
                &r.client,
                r.tag,
                OpResult::Done {
                    answer: r.answer,
                    epoch,
                    action_id: r.upto,
                },
                out,
            );
        }
    }

    /// Leaves the primary role (or a stale follow) for `epoch`, newer than
    /// ours: waiting clients are sent to its primary, and this server's log
    /// is no longer trusted to be a prefix of anyone's until a snapshot.
    fn step_down(&mut self, epoch: Epoch, out: &mut Out) {
        debug_assert!(epoch.n > self.epoch.n || self.mode != Mode::Primary);
        tracing::info!(node = %self.id, from = self.epoch.n, to = epoch.n, primary = %epoch.primary, "following a newer epoch");
        let hint = OpResult::NotPrimary {
            primary: Some(epoch.primary.clone()),
        };
        for (_, waiters) in std::mem::take(&mut self.writes) {
            for (client, tag, _) in waiters {
                self.reply(&client, tag, hint.clone(), out);
            }
        }
        for r in std::mem::take(&mut self.reads) {
            self.reply(&r.client, r.tag, hint.clone(), out);
        }
        let keep_sync =
            matches!(&self.mode, Mode::Standby { synced_with: Some(p) } if *p == epoch.primary);
        self.mode = Mode::Standby {
            synced_with: keep_sync.then(|| epoch.primary.clone()),
        };
        self.awaiting = None;
        self.requires_peer = true;
        self.peer_acked = 0;
        self.highest_seen = self.highest_seen.max(epoch.n);
        self.epoch = epoch.clone();
        out.records.push(Record::Epoch(epoch));
        let n = self.epoch.n;
        if self
            .round
            .as_ref()
            .is_some_and(|r| r.value.is_none() || r.n <= n)
        {
            self.round = None;
        }
    }

    // ----- replication ---------------------------------------------------

    /// The primary's `Replicate { epoch, entries, probe }`.
    pub fn on_replicate(
        &mut self,
        now: Time,
        from: &NodeId,
        (epoch, entries, probe): (Epoch, Vec<Entry>, u64),
        rng: &mut dyn RngCore,
        out: &mut Out,
    ) {
        if *from != self.peer || epoch.primary != *from {
            tracing::warn!(node = %self.id, %from, "replication from a node that is not the other server; ignored");
            return;
        }
        if self.mode == Mode::Primary && self.params.bugs.takeover_on_missed_heartbeat {
            // The planted split brain: a self-made primary keeps applying
            // the old primary's stream and acknowledges all of it.
            let last = entries.last().map_or(u64::MAX, |e| e.action_id);
            for e in entries {
                if e.action_id == self.bank.action_id + 1 {
                    self.apply_entry(e, out);
                }
            }
            let ack = Msg::ReplicateAck {
                epoch: epoch.n,
                applied: last,
                probe,
            };
            return self.send(from, ack, out);
        }
        if epoch.n < self.epoch.n {
            return self.send(
                from,
                Msg::Fenced {
                    epoch: self.epoch.clone(),
                },
                out,
            );
        }
        if epoch.n == self.epoch.n && self.mode == Mode::Primary {
            // Two primaries of one epoch cannot exist: a round chooses one value.
            tracing::error!(node = %self.id, epoch = epoch.n, "another primary in my epoch; ignored");
            return;
        }
        if epoch.n > self.epoch.n || self.mode == Mode::Primary {
            self.step_down(epoch.clone(), out);
        } else if self.epoch != epoch {
            self.epoch = epoch.clone();
            out.records.push(Record::Epoch(epoch.clone()));
        }
        self.last_peer = now;
        if self.round.as_ref().is_some_and(|r| r.value.is_none()) {
            // The primary lives: the takeover is not needed.
            self.round = None;
        }
        if !self.is_synced() {
            let nonce = *self.awaiting.get_or_insert_with(|| rng.next_u64());
            return self.send(
                from,
                Msg::NeedSnapshot {
                    epoch: epoch.n,
                    nonce,
                },
                out,
            );
        }
        for e in entries {
            if e.action_id == self.bank.action_id + 1 {
                self.apply_entry(e, out);
            }
        }
        let ack = Msg::ReplicateAck {
            epoch: epoch.n,
            applied: self.bank.action_id,
            probe,
        };
        self.send(from, ack, out);
    }

    fn apply_entry(&mut self, e: Entry, out: &mut Out) {
        out.records.push(Record::Entry(e.clone()));
        let expected = e.answer.clone();
        let at = e.action_id;
        let answer = self
            .bank
            .apply(e, self.params.dedup_window, self.params.log_keep);
        if answer != expected {
            // Same state, same entry, same transition: only a bug gets here.
            assert!(
                self.params.bugs.any(),
                "standby computed {answer:?} for entry {at}, the primary {expected:?}"
            );
            self.diverged += 1;
        }
    }

    pub fn on_ack(
        &mut self,
        now: Time,
        from: &NodeId,
        epoch: u64,
        applied: u64,
        probe: u64,
        out: &mut Out,
    ) {
        if *from != self.peer || self.mode != Mode::Primary || epoch != self.epoch.n {
            return;
        }
        let applied = applied.min(self.bank.action_id);
        if applied > self.peer_acked || applied == self.bank.action_id {
            self.last_peer = now;
        }
        self.peer_acked = self.peer_acked.max(applied);
        self.peer_probe = self.peer_probe.max(probe);
        if self.sent_upto < self.peer_acked {
            self.sent_upto = self.peer_acked;
        }
        // Catch-up: more to send and nothing beyond the ack in flight.
        if self.peer_acked < self.bank.action_id && self.sent_upto <= applied {
            self.ship(now, out);
        }
        self.release(out);
        if self.epoch.standby.is_none()
            && self.round.is_none()
            && now >= self.next_round_at
            && self.peer_acked == self.bank.action_id
        {
            // The standby has everything: from now on nothing is acknowledged
            // without it, and the witnesses are asked to make it a member.
            self.requires_peer = true;
            self.start_round(now, Some(self.peer.clone()), out);
        }
    }

    /// Sends the standby what it lacks after its ack (or a snapshot if the
    /// log no longer reaches back that far); an empty batch is a heartbeat.
    fn ship(&mut self, now: Time, out: &mut Out) {
        match self.bank.entries_after(self.peer_acked, BATCH) {
            Some(entries) => {
                if let Some(last) = entries.last() {
                    self.sent_upto = self.sent_upto.max(last.action_id);
                }
                let msg = Msg::Replicate {
                    epoch: self.epoch.clone(),
                    entries,
                    probe: self.probe,
                };
                self.send(&self.peer.clone(), msg, out);
            }
            None => {
                // The log no longer reaches back: a heartbeat makes a
                // standby that does not follow this log ask (with its
                // nonce), and a snapshot serves one that follows it.
                let msg = Msg::Replicate {
                    epoch: self.epoch.clone(),
                    entries: Vec::new(),
                    probe: self.probe,
                };
                self.send(&self.peer.clone(), msg, out);
                self.send_snapshot(now, None, out);
            }
        }
    }

    /// Sends a snapshot answering `nonce`, at most once per half lease for
    /// the same request.
    fn send_snapshot(&mut self, now: Time, nonce: Option<u64>, out: &mut Out) {
        if self
            .last_snapshot
            .is_some_and(|(t, n)| n == nonce && now < t + self.params.lease_us / 2)
        {
            return;
        }
        self.last_snapshot = Some((now, nonce));
        let bank = self.bank.snapshot(self.params.snapshot_bytes);
        self.sent_upto = bank.action_id;
        let msg = Msg::Snapshot {
            epoch: self.epoch.clone(),
            bank,
            nonce,
        };
        self.send(&self.peer.clone(), msg, out);
    }

    pub fn on_need_snapshot(
        &mut self,
        now: Time,
        from: &NodeId,
        epoch: u64,
        nonce: u64,
        out: &mut Out,
    ) {
        if *from == self.peer && self.mode == Mode::Primary && epoch == self.epoch.n {
            self.send_snapshot(now, Some(nonce), out);
        }
    }

    pub fn on_snapshot(
        &mut self,
        now: Time,
        from: &NodeId,
        epoch: Epoch,
        bank: Bank,
        nonce: Option<u64>,
        out: &mut Out,
    ) {
        if *from != self.peer || epoch.primary != *from {
            return;
        }
        // Only the answer to this process's own request, or a newer state
        // of the very log this standby follows: a duplicated or delayed
        // snapshot must never roll back writes it has acknowledged.
        let solicited = nonce.is_some() && nonce == self.awaiting;
        let follows =
            matches!(&self.mode, Mode::Standby { synced_with: Some(p) } if *p == epoch.primary);
        let newer = follows && bank.action_id > self.bank.action_id;
        if !(solicited || newer) {
            tracing::debug!(node = %self.id, epoch = epoch.n, action_id = bank.action_id, "stale or unasked snapshot; ignored");
            return;
        }
        if epoch.n < self.epoch.n {
            return self.send(
                from,
                Msg::Fenced {
                    epoch: self.epoch.clone(),
                },
                out,
            );
        }
        if self.mode == Mode::Primary {
            if epoch.n == self.epoch.n {
                tracing::error!(node = %self.id, epoch = epoch.n, "snapshot from another primary of my epoch; ignored");
                return;
            }
            self.step_down(epoch.clone(), out);
        }
        if let Some((account, balance)) = bank.negative() {
            tracing::error!(node = %self.id, account, balance, "snapshot with a negative balance");
        }
        tracing::info!(node = %self.id, epoch = epoch.n, action_id = bank.action_id, "installed a snapshot");
        out.records.push(Record::Installed(bank.clone()));
        out.records.push(Record::Epoch(epoch.clone()));
        self.bank = bank;
        self.awaiting = None;
        self.mode = Mode::Standby {
            synced_with: Some(epoch.primary.clone()),
        };
        self.highest_seen = self.highest_seen.max(epoch.n);
        if self.round.as_ref().is_some_and(|r| r.n <= epoch.n) {
            self.round = None;
        }
        self.epoch = epoch;
        self.last_peer = now;
        let ack = Msg::ReplicateAck {
            epoch: self.epoch.n,
            applied: self.bank.action_id,
            probe: 0,
        };
        self.send(from, ack, out);
    }

    pub fn on_fenced(&mut self, from: &NodeId, epoch: Epoch, out: &mut Out) {
        if *from == self.peer && epoch.n > self.epoch.n {
            self.step_down(epoch, out);
        }
    }

    // ----- choosing an epoch ----------------------------------------------

    fn start_round(&mut self, now: Time, want_standby: Option<NodeId>, out: &mut Out) {
        // Each server proposes numbers of its own parity, so no two
        // proposals ever share a number (Paxos needs unique ballots).
        let base = self.highest_seen.max(self.epoch.n) + 1;
        let mine = self
            .params
            .servers
            .iter()
            .position(|s| *s == self.id)
            .unwrap_or(0) as u64;
        let n = base + (mine + 2 - base % 2) % 2;
        debug_assert_eq!(n % 2, mine);
        self.highest_seen = n;
        out.records.push(Record::Proposed(n));
        tracing::info!(node = %self.id, n, standby = ?want_standby, "asking the witnesses for a new epoch");
        self.round = Some(Round {
            n,
            want_standby,
            value: None,
            promises: BTreeMap::new(),
            accepts: BTreeSet::new(),
            nacks: BTreeSet::new(),
            started: now,
            last_send: now,
        });
        for w in self.witnesses().to_vec() {
            self.send(&w, Msg::Prepare { n }, out);
        }
    }

    pub fn on_promise(&mut self, now: Time, from: &NodeId, n: u64, accepted: Epoch, out: &mut Out) {
        let majority = self.params.majority();
        let Some(round) = self.round.as_mut() else {
            return;
        };
        if round.n != n || round.value.is_some() || !self.params.clients.contains(from) {
            return;
        }
        round.promises.insert(from.clone(), accepted);
        if round.promises.len() < majority {
            return;
        }
        let newest = round
            .promises
            .values()
            .max_by_key(|e| e.n)
            .cloned()
            .unwrap_or_else(|| self.epoch.clone());
        if !newest.is_member(&self.id) {
            // A server that was not a member of the newest epoch may lack
            // writes acknowledged in it: it must never lead.
            tracing::info!(node = %self.id, newest = newest.n, primary = %newest.primary, "not a member of the newest epoch; following");
            self.round = None;
            self.next_round_at = now + self.params.lease_us;
            if newest.n > self.epoch.n {
                self.step_down(newest, out);
            }
            return;
        }
        let value = Epoch {
            n,
            primary: self.id.clone(),
            standby: round.want_standby.clone(),
        };
        round.value = Some(value.clone());
        round.nacks.clear();
        round.last_send = now;
        for w in self.witnesses().to_vec() {
            self.send(
                &w,
                Msg::Accept {
                    epoch: value.clone(),
                },
                out,
            );
        }
    }

    pub fn on_accepted(&mut self, now: Time, from: &NodeId, epoch: Epoch, out: &mut Out) {
        let majority = self.params.majority();
        let Some(round) = self.round.as_mut() else {
            return;
        };
        // Only an acceptance of this round's own value counts.
        if round.value.as_ref() != Some(&epoch) || !self.params.clients.contains(from) {
            return;
        }
        round.accepts.insert(from.clone());
        if round.accepts.len() < majority {
            return;
        }
        let Some(value) = self.round.take().and_then(|r| r.value) else {
            return;
        };
        let took_over = self.mode != Mode::Primary;
        tracing::info!(node = %self.id, epoch = value.n, standby = ?value.standby, took_over, "epoch chosen");
        out.records.push(Record::Epoch(value.clone()));
        self.requires_peer = value.standby.is_some();
        self.epoch = value;
        self.mode = Mode::Primary;
        self.last_peer = now;
        self.last_heartbeat = None;
        if took_over {
            self.failovers += 1;
            self.peer_acked = 0;
            // Nothing is in flight to the other server: the first ack of
            // its catch-up starts the batches.
            self.sent_upto = 0;
            if self.params.bugs.no_dedup_on_failover {
                self.bank.dedup.clear();
            }
        }
        self.release(out);
    }

    /// A witness refused round `n`: it promised `refusal.0` and accepted `refusal.1`.
    pub fn on_nack(
        &mut self,
        now: Time,
        from: &NodeId,
        n: u64,
        refusal: (u64, Epoch),
        rng: &mut dyn RngCore,
        out: &mut Out,
    ) {
        let (promised, accepted) = refusal;
        self.highest_seen = self.highest_seen.max(promised).max(accepted.n);
        let witnesses = self.params.clients.len();
        let majority = self.params.majority();
        let Some(round) = self.round.as_mut() else {
            return;
        };
        if round.n != n || !self.params.clients.contains(from) {
            return;
        }
        let phase2 = round.value.is_some();
        if (!phase2 && round.promises.contains_key(from)) || round.accepts.contains(from) {
            // A late answer to a duplicate: this witness already said yes.
            return;
        }
        round.nacks.insert(from.clone());
        if accepted.n > self.epoch.n && !accepted.is_member(&self.id) {
            self.round = None;
            return self.step_down(accepted, out);
        }
        if round.nacks.len() > witnesses - majority {
            // This number cannot win; try again later with a higher one.
            self.round = None;
            self.next_round_at = now + rng.random_range(0..=self.params.lease_us / 2);
        }
    }

    // ----- time -------------------------------------------------------------

    pub fn on_tick(&mut self, now: Time, rng: &mut dyn RngCore, out: &mut Out) {
        let p = self.params.clone();
        if let Some(round) = self.round.as_mut() {
            if now >= round.started + p.lease_us {
                tracing::info!(node = %self.id, n = round.n, "epoch round timed out");
                self.round = None;
                self.next_round_at = now + rng.random_range(0..=p.lease_us / 2);
            } else if now >= round.last_send + p.retransmit_us {
                round.last_send = now;
                let msg = match &round.value {
                    Some(v) => Msg::Accept { epoch: v.clone() },
                    None => Msg::Prepare { n: round.n },
                };
                let answered: BTreeSet<NodeId> = match &round.value {
                    Some(_) => round.accepts.union(&round.nacks).cloned().collect(),
                    None => round.promises.keys().chain(&round.nacks).cloned().collect(),
                };
                for w in p.clients.iter().filter(|w| !answered.contains(*w)) {
                    out.sends.push((w.clone(), msg.clone()));
                }
            }
        }
        let lease_over = now >= self.last_peer + p.lease_us && now >= self.next_round_at;
        match self.mode {
            Mode::Primary => {
                if self
                    .last_heartbeat
                    .is_none_or(|t| now >= t + p.heartbeat_us)
                {
                    self.last_heartbeat = Some(now);
                    if now >= self.last_peer + p.heartbeat_us {
                        // No progress for a period: resend what is unacknowledged.
                        self.ship(now, out);
                    } else {
                        let msg = Msg::Replicate {
                            epoch: self.epoch.clone(),
                            entries: Vec::new(),
                            probe: self.probe,
                        };
                        self.send(&self.peer.clone(), msg, out);
                    }
                }
                if self.requires_peer && lease_over && self.round.is_none() {
                    self.start_round(now, None, out);
                }
            }
            Mode::Standby { .. } => {
                if p.bugs.takeover_on_missed_heartbeat
                    && self.is_synced()
                    && now >= self.last_peer + 2 * p.heartbeat_us
                {
                    // The planted bug: promote itself, no witnesses asked.
                    let epoch = Epoch {
                        n: self.epoch.n + 1,
                        primary: self.id.clone(),
                        standby: None,
                    };
                    out.records.push(Record::Epoch(epoch.clone()));
                    self.epoch = epoch;
                    self.mode = Mode::Primary;
                    self.requires_peer = false;
                    self.failovers += 1;
                    self.last_heartbeat = None;
                    self.round = None;
                    self.peer_acked = 0;
                    return self.on_tick(now, rng, out);
                }
                if lease_over && self.round.is_none() {
                    self.start_round(now, None, out);
                }
            }
        }
    }

    pub fn next_tick(&self) -> Option<Time> {
        let p = &self.params;
        let mut t = Time::MAX;
        if let Some(r) = &self.round {
            t = t
                .min(r.started + p.lease_us)
                .min(r.last_send + p.retransmit_us);
        }
        match self.mode {
            Mode::Primary => {
                t = t.min(self.last_heartbeat.map_or(0, |h| h + p.heartbeat_us));
                if self.requires_peer && self.round.is_none() {
                    t = t.min((self.last_peer + p.lease_us).max(self.next_round_at));
                }
            }
            Mode::Standby { .. } => {
                if p.bugs.takeover_on_missed_heartbeat && self.is_synced() {
                    t = t.min(self.last_peer + 2 * p.heartbeat_us);
                }
                if self.round.is_none() {
                    t = t.min((self.last_peer + p.lease_us).max(self.next_round_at));
                }
            }
        }
        Some(t)
    }

    /// What every handler leaves true; checked after every input in tests.
    pub fn assert_invariants(&self) {
        assert!(self.peer_acked <= self.bank.action_id || self.mode != Mode::Primary);
        assert!(
            self.bank.negative().is_none() || self.params.bugs.any(),
            "{}: a negative balance {:?}",
            self.id,
            self.bank.negative()
        );
        if let Some(last) = self.bank.log.back() {
            assert_eq!(
                last.action_id, self.bank.action_id,
                "the log ends at the last applied write"
            );
        }
        if self.mode != Mode::Primary {
            assert!(
                self.writes.is_empty() && self.reads.is_empty(),
                "only a primary has waiting clients"
            );
        }
        if !self.requires_peer {
            assert!(
                self.mode == Mode::Primary && self.epoch.standby.is_none(),
                "acknowledging alone only in a chosen epoch without a standby"
            );
        }
        if let Some(r) = &self.round {
            assert!(r.n > self.epoch.n, "a round proposes a newer epoch");
        }
    }
}

pub type Out = crate::protocol::Outbox<super::StandbyNode>;
