//! A replica of the vaccine database, sans IO: it keeps the Lamport clock,
//! feeds the [`Order`] what arrives, announces what it holds (its nulls and
//! holdings are also its heartbeat), suspects replicas it stops hearing,
//! and, while it is the coordinator (the lowest-id admitted replica it does
//! not suspect), admits clients and restarted replicas that say hello and
//! expels sources that went silent. It executes what the order releases on
//! its [`Db`] and answers each request's client.
//!
//! A replica that restarts is a new source (its incarnation one past the
//! last it logged): it keeps its old log and database for the record, says
//! hello, and once the coordinator has executed its `Admit` it takes the
//! coordinator's snapshot (order, database, log tail) and goes on from
//! there. Time comes in with every call; every effect is a message in
//! `out` or a record in `records` (which the driver makes durable first).

use super::db::{Db, DbError};
use super::order::{Body, Entry, Order, Outgoing, Received, Source};
use super::Bugs;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Microseconds on the driver's clock.
pub type Time = u64;

/// Executed entries a snapshot carries (the newest), so a rejoined
/// replica's log stays contiguous for the checks; bounded so a snapshot
/// fits one frame.
pub const SNAPSHOT_LOG: usize = 1_000;

/// Every this many executed entries a replica publishes the digest of its
/// log so far (`faultline_smr_checkpoint_digest`), so the controller can
/// compare replicas at every scrape, not only at the end.
pub const CHECKPOINT_EVERY: u64 = 32;

/// The digest of a log: FNV-1a over each executed entry's encoding, in
/// order, cut to 52 bits so that a Prometheus sample (an f64) holds it
/// exactly.
pub fn extend_digest(digest: u64, x: &Executed) -> u64 {
    let bytes = postcard::to_allocvec(x).unwrap_or_default();
    crate::hash::fnv1a_from(digest, bytes) & ((1 << 52) - 1)
}

/// Everything replicas and clients say to each other; a message's kind is
/// its variant's name in snake_case. (Externally tagged: the wire codec,
/// postcard, cannot read serde's internally tagged enums.)
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
#[strum(serialize_all = "snake_case")]
pub enum Msg {
    /// A message of a source's stream: from the source, or relayed.
    Entry(Entry),
    /// (Replica to replica) What the sender holds, per source; also its
    /// heartbeat.
    Holding {
        from: Source,
        held: Vec<(Source, u64)>,
    },
    /// (Replica to replica) Send me `source`'s messages from `from` on.
    Fetch { source: Source, from: u64 },
    /// (Client or restarted replica to replicas) Admit me.
    Hello { source: Source },
    /// (Replica to client) You are a member from `ts`: send after it.
    Welcome { ts: u64 },
    /// (Coordinator to an admitted replica) The state to go on from.
    Snapshot(Box<Snapshot>),
    /// (Replica to client) Your entry `seq` is held here; the replica's clock.
    Ack { seq: u64, clock: u64 },
    /// (Replica to client) The outcome of request `op`, executed as the
    /// `index`-th entry of the order.
    Reply {
        op: u64,
        index: u64,
        outcome: Result<Vec<String>, DbError>,
    },
    /// (Replica to a client or a joining replica) `source` left the order
    /// (expelled); say hello again as the next incarnation.
    Expelled { source: Source },
}

/// A replica's state at a point of the order, for a replica that rejoins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The order at the sender, executed to `index`.
    pub order: Order,
    pub db: Db,
    /// Entries executed (the index of the last one).
    pub index: u64,
    /// The sender's Lamport clock.
    pub clock: u64,
    /// The newest executed entries, oldest first, ending at `index`.
    pub log: Vec<Executed>,
    /// The digest of the whole log to `index`.
    pub digest: u64,
}

/// Timing of the protocol, from the cluster file.
#[derive(Clone, Debug)]
pub struct Timing {
    /// A source with nothing to send sends a null this often.
    pub null_period: Time,
    /// A client silent this long is expelled.
    pub client_timeout: Time,
    /// A replica silent this long is suspected, and expelled.
    pub replica_timeout: Time,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            null_period: 100_000,
            client_timeout: 2_000_000,
            replica_timeout: 1_000_000,
        }
    }
}

/// One executed entry, for the prefix and replay checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executed {
    pub index: u64,
    pub entry: Entry,
}

/// What a replica makes durable: replaying its records rebuilds its
/// database and log, and says which incarnation it was.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReplicaRecord {
    /// This node's source is now this incarnation (written before it sends
    /// anything as it).
    Incarnation(u64),
    Executed(Executed),
    /// A snapshot installed (or the compaction of the log): database and
    /// log tail at `index`.
    Installed {
        index: u64,
        db: Db,
        log: Vec<Executed>,
        digest: u64,
    },
}

pub struct Replica {
    me: Source,
    replicas: Vec<String>,
    timing: Timing,
    bugs: Bugs,
    /// Waiting for the coordinator's snapshot after a restart.
    joining: bool,
    next_hello: Time,
    /// The incarnation last written to `records`.
    logged_incarnation: Option<u64>,
    pub order: Order,
    db: Db,
    own: Outgoing,
    next_null: Time,
    /// When a source's stream last grew (clients and replicas).
    heard: BTreeMap<Source, Time>,
    /// When each admitted replica source was last heard from at all.
    heard_replica: BTreeMap<Source, Time>,
    suspected: BTreeSet<Source>,
    /// Sources this replica has expelled as coordinator (not again).
    expelling: BTreeSet<Source>,
    /// Sources this replica has admitted as coordinator, not yet executed.
    admitting: BTreeSet<Source>,
    /// When each request arrived, until it is executed or cut.
    arrived: BTreeMap<(Source, u64), Time>,
    /// Stability waits (arrival to execution, µs) not yet exported.
    pub waits: RefCell<Vec<Time>>,
    /// The index of the last executed entry.
    pub index: u64,
    /// The digest of the log to `index` ([`extend_digest`]).
    pub digest: u64,
    /// The last checkpoint: an index that is a multiple of
    /// [`CHECKPOINT_EVERY`] (or a snapshot's), and the digest there.
    pub checkpoint: (u64, u64),
    /// The newest executed entries (at most `log_keep`), oldest first.
    pub log: VecDeque<Executed>,
    log_keep: usize,
    pub nulls_sent: u64,
    pub snapshots_sent: u64,
    /// A snapshot whose log disagreed with this replica's own (a bug).
    pub log_conflicts: u64,
    pub out: Vec<(String, Msg)>,
    pub records: Vec<ReplicaRecord>,
}

impl Replica {
    /// Replica `me` of `replicas` (node ids, first incarnations).
    pub fn new(me: &str, replicas: &[String], timing: Timing, now: Time) -> Self {
        assert!(replicas.iter().any(|r| r == me), "{me} is not a replica");
        let sources = replicas.iter().map(|r| Source::new(r.clone(), 0));
        Replica {
            me: Source::new(me, 0),
            replicas: replicas.to_vec(),
            timing,
            bugs: Bugs::default(),
            joining: false,
            next_hello: now,
            logged_incarnation: None,
            order: Order::new(Source::new(me, 0), sources),
            db: Db::default(),
            own: Outgoing::default(),
            next_null: now,
            heard: replicas
                .iter()
                .map(|r| (Source::new(r.clone(), 0), now))
                .collect(),
            heard_replica: replicas
                .iter()
                .map(|r| (Source::new(r.clone(), 0), now))
                .collect(),
            suspected: BTreeSet::new(),
            expelling: BTreeSet::new(),
            admitting: BTreeSet::new(),
            arrived: BTreeMap::new(),
            waits: RefCell::new(Vec::new()),
            index: 0,
            digest: crate::hash::FNV_OFFSET & ((1 << 52) - 1),
            checkpoint: (0, crate::hash::FNV_OFFSET & ((1 << 52) - 1)),
            log: VecDeque::new(),
            log_keep: usize::MAX,
            nulls_sent: 0,
            snapshots_sent: 0,
            log_conflicts: 0,
            out: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Switches on planted bugs (`join_out_of_order` only acts at the
    /// middle replica of the file: r2 of three).
    pub fn with_bugs(mut self, bugs: Bugs) -> Self {
        self.order.bugs = bugs.clone();
        self.bugs = bugs;
        self
    }

    /// Keeps at most `keep` executed entries.
    pub fn with_log_keep(mut self, keep: usize) -> Self {
        assert!(keep > 0, "a replica keeps at least one entry");
        self.log_keep = keep;
        self
    }

    /// Rebuilds the database and log from this node's records; with any
    /// record at all, the node restarted: it is the next incarnation and
    /// rejoins (the records are written before it says anything).
    pub fn recover(&mut self, records: Vec<ReplicaRecord>) {
        assert!(
            self.index == 0 && self.logged_incarnation.is_none(),
            "recover comes before any other input"
        );
        let mut last = None;
        for r in records {
            match r {
                ReplicaRecord::Incarnation(n) => last = Some(n.max(last.unwrap_or(0))),
                ReplicaRecord::Executed(x) => {
                    if x.index != self.index + 1 {
                        tracing::error!(
                            index = x.index,
                            expected = self.index + 1,
                            "the log skips; keeping what came before"
                        );
                        continue;
                    }
                    if let Body::Request { command, .. } = &x.entry.body {
                        // The outcome was sent when it ran; only the state matters.
                        let _ = self.db.apply(command);
                    }
                    self.push_log(x);
                }
                ReplicaRecord::Installed {
                    index,
                    db,
                    log,
                    digest,
                } => {
                    self.db = db;
                    self.index = index;
                    self.log = log.into();
                    self.digest = digest;
                    self.checkpoint = (index, digest);
                }
            }
        }
        if let Some(n) = last {
            self.rejoin(n + 1, 0);
        }
    }

    /// Records equivalent to everything logged: the incarnation, and the
    /// database with the log tail.
    pub fn compact(&self) -> Vec<ReplicaRecord> {
        let mut out = Vec::new();
        if let Some(n) = self.logged_incarnation {
            out.push(ReplicaRecord::Incarnation(n));
        }
        out.push(ReplicaRecord::Installed {
            index: self.index,
            db: self.db.clone(),
            log: self.log.iter().cloned().collect(),
            digest: self.digest,
        });
        out
    }

    /// Becomes incarnation `incarnation` of this node, outside the order
    /// until the coordinator admits it and sends a snapshot.
    fn rejoin(&mut self, incarnation: u64, now: Time) {
        assert!(
            incarnation > self.me.incarnation || self.logged_incarnation.is_none(),
            "{} rejoins as an incarnation it has been",
            self.me
        );
        self.me = Source::new(self.me.node.clone(), incarnation);
        self.joining = true;
        self.next_hello = now;
        self.own = Outgoing {
            clock: self.own.clock,
            seq: 0,
        };
        self.suspected.clear();
        self.expelling.clear();
        self.admitting.clear();
        self.arrived.clear();
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn me(&self) -> &Source {
        &self.me
    }

    pub fn is_joining(&self) -> bool {
        self.joining
    }

    pub fn clock(&self) -> u64 {
        self.own.clock
    }

    pub fn suspected(&self) -> &BTreeSet<Source> {
        &self.suspected
    }

    fn is_replica(&self, node: &str) -> bool {
        self.replicas.iter().any(|r| r == node)
    }

    /// The lowest-id admitted replica this one does not suspect and that
    /// is in the order (a rejoining replica announces nothing until its
    /// snapshot is installed, and cannot coordinate before).
    pub fn coordinator_source(&self) -> Option<&Source> {
        self.order
            .replicas()
            .iter()
            .filter(|r| !self.suspected.contains(*r))
            .filter(|r| {
                if **r == self.me {
                    !self.joining
                } else {
                    self.order.has_announced(r)
                }
            })
            .min_by(|a, b| a.node.cmp(&b.node))
    }

    /// The coordinator's node (this replica's own when it knows no other).
    pub fn coordinator(&self) -> &str {
        self.coordinator_source()
            .map(|s| s.node.as_str())
            .unwrap_or(self.me.node.as_str())
    }

    fn i_coordinate(&self) -> bool {
        !self.joining && self.coordinator() == self.me.node
    }

    fn send_replicas(&mut self, msg: Msg) {
        for r in self.replicas.clone() {
            if r != self.me.node {
                self.out.push((r, msg.clone()));
            }
        }
    }

    /// Appends an entry to this replica's own stream and sends it.
    fn emit(&mut self, body: Body) {
        assert!(!self.joining, "{} sent before it was admitted", self.me);
        let e = self.own.next(&self.me, body);
        let held = self.order.receive(e.clone());
        assert_eq!(held, Ok(Received::Held), "its own entry {e:?}");
        self.send_replicas(Msg::Entry(e));
    }

    fn holding(&self) -> Msg {
        Msg::Holding {
            from: self.me.clone(),
            held: self.order.holding().into_iter().collect(),
        }
    }

    fn snapshot(&self) -> Snapshot {
        let skip = self.log.len().saturating_sub(SNAPSHOT_LOG);
        Snapshot {
            order: self.order.clone(),
            db: self.db.clone(),
            index: self.index,
            clock: self.own.clock,
            log: self.log.iter().skip(skip).cloned().collect(),
            digest: self.digest,
        }
    }

    /// A replica source was heard from: it is alive.
    fn heard_from_replica(&mut self, now: Time, src: &Source) {
        if self.order.replicas().contains(src) {
            self.heard_replica.insert(src.clone(), now);
            if self.suspected.remove(src) {
                self.order.suspect(src, false);
            }
        }
    }

    pub fn on_message(&mut self, now: Time, from: &str, msg: Msg) {
        if self.joining {
            return self.on_message_joining(now, from, msg);
        }
        match msg {
            Msg::Entry(e) => {
                if e.source.node == from && self.is_replica(from) {
                    let src = e.source.clone();
                    self.heard_from_replica(now, &src);
                }
                self.on_entry(now, from, e)
            }
            Msg::Holding { from: src, held } => {
                if self.is_replica(&src.node) && src.node == from {
                    self.heard_from_replica(now, &src);
                    self.order.announce(src, held.into_iter().collect());
                }
            }
            Msg::Fetch { source, from: seq } => {
                if self.is_replica(from) {
                    for e in self.order.held_from(&source, seq) {
                        self.out.push((from.to_string(), Msg::Entry(e)));
                    }
                }
            }
            Msg::Hello { source } => {
                if source.node == from && self.is_replica(from) {
                    // A joining replica's hellos are its heartbeat: it
                    // must not be expelled while its snapshot is on its way.
                    self.heard_from_replica(now, &source);
                    if self.order.is_member(&source) {
                        self.heard.insert(source.clone(), now);
                    }
                }
                if source.node == from && self.i_coordinate() {
                    self.on_hello(from, source);
                }
            }
            // This source left the order (it was expelled while it was
            // away, or started after the others gave up on it): it joins
            // again as the next incarnation.
            Msg::Expelled { source } if source == self.me && self.is_replica(from) => {
                let next = self.me.incarnation + 1;
                tracing::warn!(me = %self.me, "told it was expelled; rejoining as incarnation {next}");
                return self.rejoin(next, now);
            }
            // Replicas do not take what only clients are sent; a snapshot
            // is for a replica that is joining.
            Msg::Welcome { .. }
            | Msg::Ack { .. }
            | Msg::Reply { .. }
            | Msg::Expelled { .. }
            | Msg::Snapshot(_) => {}
        }
        self.execute(now);
    }

    /// (Coordinator) A client or a restarted replica asks to be admitted.
    fn on_hello(&mut self, from: &str, source: Source) {
        if self.is_replica(from) {
            if self.order.replicas().contains(&source) {
                // Admitted already; the snapshot was lost (its sender
                // may have crashed before sending it): send one as of now.
                self.snapshots_sent += 1;
                self.out
                    .push((from.to_string(), Msg::Snapshot(Box::new(self.snapshot()))));
            } else if self.order.is_cut(&source, u64::MAX) {
                // This incarnation was expelled before its snapshot came.
                self.out.push((from.to_string(), Msg::Expelled { source }));
            } else if self
                .order
                .replicas()
                .iter()
                .all(|r| r.node != source.node || r.incarnation < source.incarnation)
                && self.admitting.insert(source.clone())
            {
                self.emit(Body::Admit { source });
            }
            return;
        }
        if let Some(ts) = self.order.admitted_at(&source) {
            // Admitted already; its welcome was lost (its admitter may
            // have crashed before sending it).
            self.out.push((from.to_string(), Msg::Welcome { ts }));
        } else if self.order.is_cut(&source, u64::MAX) {
            // This incarnation left the order: a new one joins.
            self.out.push((from.to_string(), Msg::Expelled { source }));
        } else if self.admitting.insert(source.clone()) {
            self.emit(Body::Admit { source });
        }
    }

    /// A restarted replica takes only its snapshot; the rest it will fetch.
    fn on_message_joining(&mut self, now: Time, from: &str, msg: Msg) {
        let snap = match msg {
            Msg::Snapshot(snap) => snap,
            Msg::Expelled { source } if source == self.me && self.is_replica(from) => {
                let next = self.me.incarnation + 1;
                tracing::warn!(me = %self.me, "expelled before its snapshot came; rejoining as incarnation {next}");
                return self.rejoin(next, now);
            }
            _ => return,
        };
        if !self.is_replica(from) || !snap.order.replicas().contains(&self.me) {
            tracing::warn!(from, me = %self.me, "a snapshot from before this replica was admitted; ignored");
            return;
        }
        let snap = *snap;
        // The log goes on from the snapshot's tail; where the two overlap
        // they must agree (they are prefixes of one order).
        let tail_start = snap.log.first().map_or(snap.index + 1, |x| x.index);
        for x in &snap.log {
            if let Some(mine) = self.records_lookup(x.index) {
                if mine != x.entry {
                    self.log_conflicts += 1;
                    tracing::error!(index = x.index, ?mine, theirs = ?x.entry, "a snapshot's log disagrees with this replica's");
                }
            }
        }
        let mut log: VecDeque<Executed> = std::mem::take(&mut self.log)
            .into_iter()
            .filter(|x| x.index < tail_start)
            .collect();
        if log.back().is_some_and(|x| x.index + 1 != tail_start) {
            log.clear();
        }
        log.extend(snap.log.iter().cloned());
        self.log = log;
        while self.log.len() > self.log_keep {
            self.log.pop_front();
        }
        self.order = snap.order.adopt(self.me.clone(), self.bugs.clone());
        self.db = snap.db;
        self.index = snap.index;
        self.own.observe(snap.clock.max(self.order.max_ts()));
        for m in self.order.members().clone() {
            self.heard.insert(m, now);
        }
        self.heard_replica = self
            .order
            .replicas()
            .iter()
            .map(|r| (r.clone(), now))
            .collect();
        self.joining = false;
        self.next_null = now;
        self.digest = snap.digest;
        self.checkpoint = (self.index, self.digest);
        self.records.push(ReplicaRecord::Installed {
            index: self.index,
            db: self.db.clone(),
            log: self.log.iter().cloned().collect(),
            digest: self.digest,
        });
        tracing::info!(me = %self.me, index = self.index, "rejoined from a snapshot");
        self.execute(now);
    }

    /// This replica's own executed entry at `index`, if it still keeps it.
    fn records_lookup(&self, index: u64) -> Option<Entry> {
        let first = self.log.front()?.index;
        let x = self.log.get(index.checked_sub(first)? as usize)?;
        debug_assert_eq!(x.index, index, "the log is contiguous");
        Some(x.entry.clone())
    }

    fn on_entry(&mut self, now: Time, from: &str, e: Entry) {
        let direct = e.source.node == from;
        // Only replicas relay: a client speaks for its own stream only.
        if !direct && !self.is_replica(from) {
            tracing::warn!(from, source = %e.source, "an entry of another source from a client");
            return;
        }
        self.own.observe(e.ts);
        let source = e.source.clone();
        let seq = e.seq;
        let is_request = matches!(e.body, Body::Request { .. });
        let is_admit = matches!(e.body, Body::Admit { .. });
        match self.order.receive(e) {
            Ok(received) => {
                if is_request && received != Received::Ignored {
                    self.arrived.entry((source.clone(), seq)).or_insert(now);
                }
                self.on_received(now, from, direct, &source, seq, received);
                if is_admit
                    && self.bugs.join_out_of_order
                    && self.replicas.get(self.replicas.len() / 2) == Some(&self.me.node)
                {
                    if let Some(e) = self.order.admit_on_receipt(&source, seq) {
                        self.log_executed(e);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(from, error = %e, "entry refused");
            }
        }
    }

    fn on_received(
        &mut self,
        now: Time,
        from: &str,
        direct: bool,
        source: &Source,
        seq: u64,
        received: Received,
    ) {
        match received {
            Received::Held => {
                self.heard.insert(source.clone(), now);
                if direct && !self.is_replica(from) {
                    self.out.push((
                        from.to_string(),
                        Msg::Ack {
                            seq,
                            clock: self.own.clock,
                        },
                    ));
                }
            }
            Received::Gap { from: gap, .. } => {
                // Ask a replica that may hold it: the one that relayed
                // this, or the coordinator.
                let ask = if self.is_replica(from) && from != self.me.node {
                    from.to_string()
                } else {
                    self.coordinator().to_string()
                };
                if ask != self.me.node {
                    self.out.push((
                        ask,
                        Msg::Fetch {
                            source: source.clone(),
                            from: gap,
                        },
                    ));
                }
            }
            Received::Ignored => {
                // A source still sending after it left the order did not
                // hear that it was expelled (a client cut off for a while,
                // a replica started long after the others): tell it again.
                if direct && from != self.me.node && self.order.is_cut(source, seq) {
                    self.out.push((
                        from.to_string(),
                        Msg::Expelled {
                            source: source.clone(),
                        },
                    ));
                }
            }
        }
    }

    /// The earliest time this replica wants `on_tick`.
    pub fn next_tick(&self) -> Time {
        if self.joining {
            self.next_hello
        } else {
            // Suspicions and expulsions are checked at every null period.
            self.next_null
        }
    }

    /// Nulls and holdings on time, suspicion, and the coordinator's
    /// expulsions; hellos while joining.
    pub fn on_tick(&mut self, now: Time) {
        if self.logged_incarnation != Some(self.me.incarnation) {
            self.logged_incarnation = Some(self.me.incarnation);
            self.records
                .push(ReplicaRecord::Incarnation(self.me.incarnation));
        }
        if self.joining {
            if now >= self.next_hello {
                let hello = Msg::Hello {
                    source: self.me.clone(),
                };
                self.send_replicas(hello);
                self.next_hello = now + 3 * self.timing.null_period;
            }
            return;
        }
        if now >= self.next_null {
            self.emit(Body::Null);
            self.nulls_sent += 1;
            let h = self.holding();
            self.send_replicas(h);
            self.next_null = now + self.timing.null_period;
            // What is known to be missing is asked of every replica not
            // suspected, once a period: whoever keeps it relays it.
            for (source, from) in self.order.missing() {
                for r in self.order.replicas().clone() {
                    if r != self.me && !self.suspected.contains(&r) {
                        self.out.push((
                            r.node.clone(),
                            Msg::Fetch {
                                source: source.clone(),
                                from,
                            },
                        ));
                    }
                }
            }
        }
        for r in self.order.replicas().clone() {
            if r == self.me || self.suspected.contains(&r) {
                continue;
            }
            let heard = *self.heard_replica.entry(r.clone()).or_insert(now);
            if now.saturating_sub(heard) > self.timing.replica_timeout {
                self.suspected.insert(r.clone());
                self.order.suspect(&r, true);
            }
        }
        if self.i_coordinate() {
            let silent: Vec<Source> = self
                .order
                .members()
                .iter()
                .filter(|s| **s != self.me && !self.expelling.contains(*s))
                .filter(|s| {
                    let limit = if self.is_replica(&s.node) {
                        self.timing.replica_timeout
                    } else {
                        self.timing.client_timeout
                    };
                    let heard = self.heard.get(*s).copied().unwrap_or(0);
                    now.saturating_sub(heard) > limit
                })
                .cloned()
                .collect();
            for s in silent {
                let cut = self.order.freeze(&s);
                self.expelling.insert(s.clone());
                self.emit(Body::Expel { source: s, cut });
            }
        }
        self.execute(now);
    }

    fn push_log(&mut self, x: Executed) {
        assert_eq!(x.index, self.index + 1, "the log is contiguous");
        self.index = x.index;
        self.digest = extend_digest(self.digest, &x);
        if self.index.is_multiple_of(CHECKPOINT_EVERY) {
            self.checkpoint = (self.index, self.digest);
        }
        self.log.push_back(x);
        while self.log.len() > self.log_keep {
            self.log.pop_front();
        }
    }

    /// Logs `e` as the next executed entry, durably.
    fn log_executed(&mut self, e: Entry) -> u64 {
        let x = Executed {
            index: self.index + 1,
            entry: e,
        };
        self.records.push(ReplicaRecord::Executed(x.clone()));
        self.push_log(x);
        self.index
    }

    /// Executes what the order releases.
    fn execute(&mut self, now: Time) {
        // Bounded by the entries held: each call releases one or stops.
        while let Some(e) = self.order.release_next() {
            match &e.body {
                Body::Request { op, command } => {
                    if let Some(t) = self.arrived.remove(&(e.source.clone(), e.seq)) {
                        self.waits.borrow_mut().push(now.saturating_sub(t));
                    }
                    let outcome = self.db.apply(command);
                    let index = self.index + 1;
                    self.out.push((
                        e.source.node.clone(),
                        Msg::Reply {
                            op: *op,
                            index,
                            outcome,
                        },
                    ));
                }
                Body::Admit { source } => {
                    self.admitting.remove(source);
                    if e.source == self.me && self.order.is_member(source) {
                        if self.is_replica(&source.node) {
                            self.snapshots_sent += 1;
                            // As of just after the Admit (logged below first).
                            let index = self.log_executed(e.clone());
                            self.out.push((
                                source.node.clone(),
                                Msg::Snapshot(Box::new(self.snapshot())),
                            ));
                            self.heard.insert(source.clone(), now);
                            self.heard_replica.insert(source.clone(), now);
                            debug_assert_eq!(index, self.index);
                            continue;
                        }
                        self.out
                            .push((source.node.clone(), Msg::Welcome { ts: e.ts }));
                    }
                    // Its silence is measured from its admission.
                    self.heard.insert(source.clone(), now);
                    if self.is_replica(&source.node) {
                        self.heard_replica.insert(source.clone(), now);
                    }
                }
                Body::Expel { source, .. } => {
                    if e.source == self.me && source.node != self.me.node {
                        self.out.push((
                            source.node.clone(),
                            Msg::Expelled {
                                source: source.clone(),
                            },
                        ));
                    }
                    self.arrived.retain(|(s, _), _| s != source);
                    // An expelled replica is never heard from again: it is
                    // no longer suspected, it is gone.
                    if self.suspected.remove(source) {
                        self.order.suspect(source, false);
                    }
                    self.heard_replica.remove(source);
                    if *source == self.me {
                        // Suspected wrongly (outside the model): this
                        // source is gone from the order; a new one joins.
                        self.log_executed(e.clone());
                        let next = self.me.incarnation + 1;
                        tracing::warn!(me = %self.me, "expelled from the order; rejoining as incarnation {next}");
                        self.rejoin(next, now);
                        return;
                    }
                }
                Body::Quit => {
                    self.arrived.retain(|(s, _), _| *s != e.source);
                }
                Body::Null => {}
            }
            self.log_executed(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::smr::client::ClientCore;
    use crate::protocol::smr::db::Command;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::collections::{BinaryHeap, VecDeque};

    /// A scripted client around the real client core: its commands one at
    /// a time; it may fall silent (a crash) at `dies_at`.
    struct Client {
        core: ClientCore<u64>,
        todo: VecDeque<Command>,
        waiting: bool,
        next_req: u64,
        /// Joins late (says hello from then on).
        starts_at: Time,
        dies_at: Option<Time>,
        /// Quits once its script is done.
        quits: bool,
    }

    impl Client {
        fn alive(&self, now: Time) -> bool {
            now >= self.starts_at && self.dies_at.is_none_or(|t| now < t)
        }

        fn tick(&mut self, now: Time) {
            if self.quits && !self.waiting && self.todo.is_empty() && self.core.is_member() {
                self.core.quit();
            }
            if !self.waiting && self.core.is_member() {
                if let Some(c) = self.todo.pop_front() {
                    self.next_req += 1;
                    self.core
                        .submit(self.next_req, c, now)
                        .expect("valid command");
                    self.waiting = true;
                }
            }
            self.core.on_tick(now);
        }

        fn on_message(&mut self, now: Time, from: &str, msg: Msg) {
            self.core.on_message(now, from, msg);
            if !self.core.done.is_empty() {
                self.core.done.clear();
                self.waiting = false;
            }
        }
    }

    /// Every replica's log is a prefix of every longer one.
    fn assert_prefixes(seed: u64, reps: &[Replica]) {
        let key = |x: &Executed| (x.entry.source.clone(), x.entry.seq);
        for a in reps {
            for b in reps {
                for (x, y) in a.log.iter().zip(&b.log) {
                    assert_eq!(
                        key(x),
                        key(y),
                        "seed {seed}: {} and {} diverge at index {}: {:?} vs {:?}",
                        a.me,
                        b.me,
                        x.index,
                        x.entry,
                        y.entry
                    );
                }
            }
        }
    }

    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    struct Event(std::cmp::Reverse<(Time, u64)>, usize, String, String);

    /// One seeded run: 3 replicas, 5 clients (one joining late, one falling
    /// silent, one quitting when done), random delays on FIFO links, up to
    /// two replicas crashing; a node that crashes loses about half of its
    /// messages in flight.
    fn run(seed: u64) -> (Vec<Replica>, Vec<Client>, Vec<usize>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let names: Vec<String> = ["r1", "r2", "r3"].iter().map(|s| s.to_string()).collect();
        let mut reps: Vec<Replica> = names
            .iter()
            .map(|n| Replica::new(n, &names, Timing::default(), 0))
            .collect();
        // None, one, or (a quarter of the runs) two of the three replicas
        // crash: up to t - 1.
        let first = rng.random_range(0..3usize);
        let crashes: Vec<(usize, Time)> = match rng.random_range(0..4) {
            0 => Vec::new(),
            1 | 2 => vec![(first, rng.random_range(500_000..4_000_000))],
            _ => vec![
                (first, rng.random_range(500_000..4_000_000)),
                ((first + 1) % 3, rng.random_range(500_000..6_000_000)),
            ],
        };
        // Half the crashed replicas restart 0.2 to 3 s later from their
        // records, and must rejoin.
        let crashes: Vec<(usize, Time, Option<Time>)> = crashes
            .into_iter()
            .map(|(i, t)| {
                (
                    i,
                    t,
                    rng.random_bool(0.5)
                        .then(|| t + rng.random_range(200_000..3_000_000)),
                )
            })
            .collect();
        let mut durable: Vec<Vec<ReplicaRecord>> = vec![Vec::new(); names.len()];
        let mut restarted = vec![false; names.len()];
        let mut clients: Vec<Client> = (1..=5)
            .map(|i| Client {
                core: ClientCore::new(
                    &format!("c{i}"),
                    &names,
                    100_000,
                    rng.random_range(0..200_000),
                ),
                todo: (0..rng.random_range(3..8))
                    .map(|k| match rng.random_range(0..4) {
                        0 => Command::List,
                        1 => Command::Add {
                            site: format!("S{}", rng.random_range(0..5)),
                            zip: "02138".into(),
                        },
                        2 => Command::Edit {
                            site: format!("S{}", rng.random_range(0..5)),
                            availability: crate::protocol::smr::db::Availability::Count(k),
                        },
                        _ => Command::View {
                            site: "Harvard University".into(),
                        },
                    })
                    .collect(),
                waiting: false,
                next_req: 0,
                // c5 joins late; c4 falls silent; c3 quits when done.
                starts_at: if i == 5 {
                    rng.random_range(1_000_000..5_000_000)
                } else {
                    0
                },
                dies_at: (i == 4).then(|| rng.random_range(300_000..3_000_000)),
                quits: i == 3,
            })
            .collect();
        // In flight: (deliver at, order) -> (to, from, msg); FIFO per link.
        let mut flight: BinaryHeap<Event> = BinaryHeap::new();
        let mut msgs: Vec<Option<Msg>> = Vec::new();
        let mut link_last: BTreeMap<(String, String), Time> = BTreeMap::new();
        let mut n = 0u64;
        let end: Time = 12_000_000;
        let mut now: Time = 0;
        let dead = |i: usize, now: Time| {
            crashes
                .iter()
                .any(|(c, t, back)| *c == i && now >= *t && back.is_none_or(|b| now < b))
        };
        // Bounded: simulated time advances 10 ms per step to `end`.
        while now < end {
            for (i, _, back) in &crashes {
                if back.is_some_and(|b| now >= b) && !restarted[*i] {
                    restarted[*i] = true;
                    let mut r = Replica::new(&names[*i], &names, Timing::default(), now);
                    r.recover(durable[*i].clone());
                    assert!(r.is_joining(), "seed {seed}: a restarted replica rejoins");
                    reps[*i] = r;
                }
            }
            for (i, r) in reps.iter_mut().enumerate() {
                if !dead(i, now) {
                    r.on_tick(now);
                }
            }
            for c in clients.iter_mut() {
                if c.alive(now) {
                    c.tick(now);
                }
            }
            let mut outs: Vec<(String, String, Msg)> = Vec::new();
            for (i, r) in reps.iter_mut().enumerate() {
                let from = names[i].clone();
                // Records are durable before the sends they go with leave.
                let records: Vec<ReplicaRecord> = r.records.drain(..).collect();
                if !dead(i, now) {
                    durable[i].extend(records);
                }
                for (to, m) in r.out.drain(..) {
                    if !dead(i, now) {
                        outs.push((from.clone(), to, m));
                    }
                }
            }
            for c in clients.iter_mut() {
                let from = c.core.source().node.clone();
                for (to, m) in c.core.out.drain(..) {
                    outs.push((from.clone(), to, m));
                }
            }
            for (from, to, m) in outs {
                let last = link_last.entry((from.clone(), to.clone())).or_insert(0);
                let at = (now + rng.random_range(100..20_000)).max(*last);
                *last = at;
                n += 1;
                msgs.push(Some(m));
                flight.push(Event(std::cmp::Reverse((at, n)), msgs.len() - 1, from, to));
            }
            let step_end = now + 10_000;
            while flight.peek().is_some_and(|e| (e.0).0 .0 < step_end) {
                let Some(Event(std::cmp::Reverse((at, _)), k, from, to)) = flight.pop() else {
                    break;
                };
                let Some(m) = msgs[k].take() else { continue };
                // A node that crashed loses about half of what it had in
                // flight: a broadcast that reached some replicas only.
                let sender_dead = match names.iter().position(|x| *x == from) {
                    Some(i) => dead(i, at),
                    None => clients
                        .iter()
                        .any(|c| c.core.source().node == from && !c.alive(at)),
                };
                if sender_dead && rng.random_bool(0.5) {
                    continue;
                }
                if let Some(i) = names.iter().position(|x| *x == to) {
                    if !dead(i, at) {
                        reps[i].on_message(at, &from, m);
                    }
                } else if let Some(c) = clients.iter_mut().find(|c| c.core.source().node == to) {
                    if c.alive(at) {
                        c.on_message(at, &from, m);
                    }
                }
                // After every delivery. A replica's fresh sends go out at
                // the next step.
                assert_prefixes(seed, &reps);
            }
            now = step_end;
        }
        let down = crashes
            .iter()
            .filter(|(_, _, back)| back.is_none())
            .map(|(i, _, _)| *i)
            .collect();
        let back = crashes
            .iter()
            .filter(|(_, _, back)| back.is_some())
            .map(|(i, _, _)| *i)
            .collect();
        (reps, clients, down, back)
    }

    #[test]
    fn replicas_execute_one_sequence_and_silent_clients_do_not_stop_it() {
        let (mut expelled_clients, mut expelled_replicas, mut two_crashed) = (0, 0, 0);
        let mut rejoined = 0;
        // Bounded: 500 seeds of 12 simulated seconds.
        for seed in 0..500 {
            let (reps, clients, crashed, back) = run(seed);
            assert_prefixes(seed, &reps);
            // A replica that came back is in the order again as its next
            // incarnation, its old one out of every live configuration.
            for b in &back {
                let r = &reps[*b];
                assert!(
                    !r.is_joining(),
                    "seed {seed}: {} restarted and never got its snapshot; crashed {crashed:?} back {back:?}; views {:?}",
                    r.me,
                    reps.iter().map(|x| (x.me.to_string(), x.coordinator().to_string(), x.order.replicas().iter().map(|m| m.to_string()).collect::<Vec<_>>(), x.suspected.iter().map(|m| m.to_string()).collect::<Vec<_>>(), x.index)).collect::<Vec<_>>()
                );
                assert!(r.me.incarnation >= 1, "seed {seed}: {}", r.me);
                for other in reps
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !crashed.contains(i))
                {
                    assert!(
                        !other.1.order.is_member(&Source::new(r.me.node.clone(), 0)),
                        "seed {seed}: {} still has {}#0 as a member",
                        other.1.me,
                        r.me.node
                    );
                }
                rejoined += 1;
            }
            let down = crashed.clone();
            let mut crashed = crashed;
            crashed.extend(back.iter().copied());
            // The silent client and a crashed replica are out of every
            // live replica's configuration by the end.
            for (i, r) in reps.iter().enumerate() {
                if down.contains(&i) {
                    continue;
                }
                for gone in ["c3", "c4"] {
                    assert!(
                        !r.order.is_member(&Source::new(gone, 0)),
                        "seed {seed}: {} still has {gone} (quit or silent) as a member",
                        r.me
                    );
                }
                for c in &down {
                    assert!(
                        !r.order.is_member(&reps[*c].me),
                        "seed {seed}: {} still has the crashed {} as a member",
                        r.me,
                        reps[*c].me
                    );
                }
            }
            expelled_clients += 1;
            match crashed.len() {
                0 => {}
                1 => expelled_replicas += 1,
                _ => two_crashed += 1,
            }
            // Replay: every reply equals the reply of a sequential replay
            // of the longest log at its index.
            let longest = reps.iter().max_by_key(|r| r.log.len()).expect("replicas");
            let mut db = Db::default();
            let mut want = BTreeMap::new();
            for x in &longest.log {
                if let Body::Request { op, command } = &x.entry.body {
                    want.insert(
                        (x.entry.source.node.clone(), *op),
                        (x.index, db.apply(command)),
                    );
                }
            }
            for c in &clients {
                let node = c.core.source().node.clone();
                for (op, got) in c.core.answered() {
                    assert_eq!(
                        want.get(&(node.clone(), *op)),
                        Some(got),
                        "seed {seed}: {node} op {op}"
                    );
                }
                assert_eq!(c.core.mismatches, 0, "seed {seed}: {node}");
                // Liveness: a client alive to the end finished its script.
                if c.dies_at.is_none() {
                    assert!(
                        c.todo.is_empty() && !c.waiting,
                        "seed {seed}: {node} stalled with {} to do (member {}, starts {}, crashed {crashed:?}, coordinators {:?}, members {:?})",
                        c.todo.len(),
                        c.core.is_member(),
                        c.starts_at,
                        reps.iter().map(|r| r.coordinator().to_string()).collect::<Vec<_>>(),
                        reps.iter().map(|r| r.order.members().iter().map(|m| m.to_string()).collect::<Vec<_>>()).collect::<Vec<_>>()
                    );
                }
            }
        }
        // The runs did what they are for.
        assert!(
            expelled_replicas >= 150,
            "only {expelled_replicas} runs lost one replica"
        );
        assert!(
            two_crashed >= 60,
            "only {two_crashed} runs lost two replicas"
        );
        assert_eq!(expelled_clients, 500);
        assert!(rejoined >= 100, "only {rejoined} replicas rejoined");
    }

    #[test]
    fn a_client_cannot_speak_for_another_source() {
        let names: Vec<String> = vec!["r1".into()];
        let mut r = Replica::new("r1", &names, Timing::default(), 0);
        let forged = Entry {
            source: Source::new("c2", 0),
            seq: 1,
            ts: 5,
            body: Body::Null,
        };
        r.on_message(1, "c1", Msg::Entry(forged.clone()));
        assert!(!r.order.holding().contains_key(&forged.source));
        // Relayed by a replica, the same entry is taken.
        let names: Vec<String> = vec!["r1".into(), "r2".into()];
        let mut r = Replica::new("r1", &names, Timing::default(), 0);
        r.on_message(1, "r2", Msg::Entry(forged.clone()));
        assert_eq!(r.order.holding().get(&forged.source), Some(&1));
    }
}

#[cfg(test)]
mod rejoin_tests {
    //! A restarted replica, handler by handler: its records make it the
    //! next incarnation, it says hello, the survivor admits it and sends a
    //! snapshot, and it is nobody's coordinator until it has installed it.

    use super::*;

    /// Delivers every message between the replicas until none is left (and
    /// drops what goes to clients); records go to `durable`.
    fn exchange(reps: &mut [Replica], durable: &mut [Vec<ReplicaRecord>], now: Time) {
        // Bounded: a round of messages per pass, and the passes stop when
        // nothing is sent (nulls only go out on ticks).
        for _ in 0..100 {
            let mut msgs = Vec::new();
            for (i, r) in reps.iter_mut().enumerate() {
                durable[i].append(&mut r.records);
                let from = r.me.node.clone();
                msgs.extend(r.out.drain(..).map(|(to, m)| (from.clone(), to, m)));
            }
            if msgs.is_empty() {
                return;
            }
            for (from, to, m) in msgs {
                if let Some(r) = reps.iter_mut().find(|r| r.me.node == to) {
                    r.on_message(now, &from, m);
                }
            }
        }
        panic!("messages never stopped");
    }

    #[test]
    fn a_restarted_replica_rejoins_by_snapshot_and_coordinates_only_after() {
        let names: Vec<String> = vec!["r1".into(), "r2".into()];
        let mut reps = vec![
            Replica::new("r1", &names, Timing::default(), 0),
            Replica::new("r2", &names, Timing::default(), 0),
        ];
        let mut durable = vec![Vec::new(), Vec::new()];
        // A client joins (r1 coordinates and admits it) and says nothing
        // more: it is expelled after its timeout. Both are executed.
        reps[0].on_message(
            0,
            "c1",
            Msg::Hello {
                source: Source::new("c1", 0),
            },
        );
        let mut now = 0;
        // Bounded: 100 ms steps to 8 s.
        while now <= 8_000_000 {
            if now == 3_000_000 {
                // r1 crashes here and is back at once from its records.
                assert!(reps[0].index >= 1, "r1 executed the admission");
                let mut r = Replica::new("r1", &names, Timing::default(), now);
                r.recover(durable[0].clone());
                assert!(r.is_joining());
                assert_eq!(r.me, Source::new("r1", 1));
                assert_eq!(r.index, reps[0].index, "its log survived");
                r.on_tick(now);
                assert_eq!(
                    r.records.first(),
                    Some(&ReplicaRecord::Incarnation(1)),
                    "the incarnation is written before anything is sent"
                );
                assert!(r.out.iter().all(|(to, m)| to == "r2"
                    && *m
                        == Msg::Hello {
                            source: Source::new("r1", 1)
                        }));
                reps[0] = r;
            }
            for r in reps.iter_mut() {
                r.on_tick(now);
            }
            exchange(&mut reps, &mut durable, now);
            // While r1#1 waits for its snapshot, r2 never takes it for the
            // coordinator (it could not send the snapshot it waits for).
            if reps[0].is_joining() {
                assert_ne!(
                    reps[1].coordinator_source(),
                    Some(&Source::new("r1", 1)),
                    "at {now}"
                );
            }
            now += 100_000;
        }
        let (r1, r2) = (&reps[0], &reps[1]);
        assert!(!r1.is_joining(), "r1#1 never got its snapshot");
        assert_eq!(
            r2.order.replicas().iter().cloned().collect::<Vec<_>>(),
            [Source::new("r1", 1), Source::new("r2", 0)],
            "r1#0 expelled, r1#1 admitted"
        );
        assert_eq!(r1.coordinator(), "r1");
        assert_eq!(r2.coordinator(), "r1", "r1#1 coordinates once it is in");
        assert!(
            r2.suspected().is_empty(),
            "the expelled r1#0 is gone, not suspected for ever: {:?}",
            r2.suspected()
        );
        assert_eq!(r1.log, r2.log);
        assert_eq!((r1.index, r1.digest), (r2.index, r2.digest));
        assert_eq!(r1.db(), r2.db());
        assert_eq!(r1.log_conflicts, 0);
        assert!(durable[0]
            .iter()
            .any(|x| matches!(x, ReplicaRecord::Installed { .. })));
        // Its records, replayed, are the state it has.
        let mut again = Replica::new("r1", &names, Timing::default(), now);
        again.recover(durable[0].clone());
        assert_eq!((again.index, again.digest), (r1.index, r1.digest));
        assert_eq!(again.me, Source::new("r1", 2));
        assert_eq!(again.db(), r1.db());
    }

    #[test]
    fn a_replica_started_after_the_others_gave_up_on_it_joins_as_the_next_incarnation() {
        let names: Vec<String> = vec!["r1".into(), "r2".into(), "r3".into()];
        let mut reps = vec![
            Replica::new("r1", &names, Timing::default(), 0),
            Replica::new("r2", &names, Timing::default(), 0),
        ];
        let mut durable = vec![Vec::new(), Vec::new(), Vec::new()];
        let mut now = 0;
        // Bounded: 100 ms steps to 8 s; r3 starts at 3 s, long after the
        // others suspected and expelled r3#0.
        while now <= 8_000_000 {
            if now == 3_000_000 {
                assert!(reps[0].order.is_cut(&Source::new("r3", 0), u64::MAX));
                reps.push(Replica::new("r3", &names, Timing::default(), now));
            }
            for r in reps.iter_mut() {
                r.on_tick(now);
            }
            exchange(&mut reps, &mut durable, now);
            now += 100_000;
        }
        let r3 = &reps[2];
        assert_eq!(
            r3.me,
            Source::new("r3", 1),
            "told it was expelled, it rejoined"
        );
        assert!(!r3.is_joining());
        assert!(reps[0].order.replicas().contains(&Source::new("r3", 1)));
        assert_eq!((r3.index, r3.digest), (reps[0].index, reps[0].digest));
        assert_eq!(
            durable[2].first(),
            Some(&ReplicaRecord::Incarnation(0)),
            "r3#0 wrote its incarnation before it spoke"
        );
        assert!(durable[2].contains(&ReplicaRecord::Incarnation(1)));
    }
}
