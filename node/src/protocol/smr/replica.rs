//! A replica of the vaccine database, sans IO: it keeps the Lamport clock,
//! feeds the [`Order`] what arrives, announces what it holds (its nulls and
//! holdings are also its heartbeat), suspects replicas it stops hearing,
//! and, while it is the coordinator (the lowest-id replica it does not
//! suspect), admits clients that say hello and expels sources that went
//! silent. It executes what the order releases on its [`Db`] and answers
//! each request's client. Time comes in with every call; every effect is a
//! message in `out`.
//!
//! Not yet here (issue 8): the write-ahead log, rejoin by snapshot, the
//! node runtime's `Core` interface.

use super::db::{Db, DbError};
use super::order::{Body, Entry, Order, Outgoing, Received, Source};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Microseconds on the driver's clock.
pub type Time = u64;

/// Everything replicas and clients say to each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
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
    /// (Client to replicas) Admit me.
    Hello { source: Source },
    /// (Replica to client) You are a member from `ts`: send after it.
    Welcome { ts: u64 },
    /// (Replica to client) Your entry `seq` is held here; the replica's clock.
    Ack { seq: u64, clock: u64 },
    /// (Replica to client) The outcome of request `op`, executed as the
    /// `index`-th entry of the order.
    Reply {
        op: u64,
        index: u64,
        outcome: Result<Vec<String>, DbError>,
    },
    /// (Replica to client) You were expelled; say hello again to rejoin.
    Expelled,
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

pub struct Replica {
    me: Source,
    replicas: Vec<String>,
    timing: Timing,
    order: Order,
    db: Db,
    own: Outgoing,
    next_null: Time,
    /// When a source's stream last grew (clients and replicas).
    heard: BTreeMap<Source, Time>,
    /// When each other replica node was last heard from at all.
    heard_node: BTreeMap<String, Time>,
    suspected: BTreeSet<String>,
    /// Sources this replica has expelled as coordinator (not again).
    expelling: BTreeSet<Source>,
    /// Clients this replica has admitted as coordinator, not yet executed.
    admitting: BTreeSet<Source>,
    /// The executed sequence (kept whole for the checks; bounded by the
    /// runs that build it).
    pub log: Vec<Executed>,
    pub out: Vec<(String, Msg)>,
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
            order: Order::new(Source::new(me, 0), sources),
            db: Db::default(),
            own: Outgoing::default(),
            next_null: now,
            heard: replicas
                .iter()
                .map(|r| (Source::new(r.clone(), 0), now))
                .collect(),
            heard_node: replicas.iter().map(|r| (r.clone(), now)).collect(),
            suspected: BTreeSet::new(),
            expelling: BTreeSet::new(),
            admitting: BTreeSet::new(),
            log: Vec::new(),
            out: Vec::new(),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn is_replica(&self, node: &str) -> bool {
        self.replicas.iter().any(|r| r == node)
    }

    /// The lowest-id replica this one does not suspect.
    pub fn coordinator(&self) -> &str {
        self.replicas
            .iter()
            .filter(|r| !self.suspected.contains(*r))
            .min()
            .map(String::as_str)
            .unwrap_or(self.me.node.as_str())
    }

    fn i_coordinate(&self) -> bool {
        self.coordinator() == self.me.node
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

    pub fn on_message(&mut self, now: Time, from: &str, msg: Msg) {
        if self.is_replica(from) {
            self.heard_node.insert(from.to_string(), now);
            if self.suspected.remove(from) {
                self.order.suspect(from, false);
            }
        }
        match msg {
            Msg::Entry(e) => self.on_entry(now, from, e),
            Msg::Holding { from: src, held } => {
                if self.is_replica(&src.node) && src.node == from {
                    self.order.announce(src, held.into_iter().collect());
                }
            }
            Msg::Fetch { source, from: seq } => {
                for e in self.order.held_from(&source, seq) {
                    self.out.push((from.to_string(), Msg::Entry(e)));
                }
            }
            Msg::Hello { source } => {
                if source.node == from && !self.is_replica(from) && self.i_coordinate() {
                    if let Some(ts) = self.order.admitted_at(&source) {
                        // Admitted already; its welcome was lost (its
                        // admitter may have crashed before sending it).
                        self.out.push((from.to_string(), Msg::Welcome { ts }));
                    } else if self.order.is_cut(&source, u64::MAX) {
                        // This incarnation left the order: a new one joins.
                        self.out.push((from.to_string(), Msg::Expelled));
                    } else if self.admitting.insert(source.clone()) {
                        self.emit(Body::Admit { source });
                    }
                }
            }
            // Replicas do not take what only clients are sent.
            Msg::Welcome { .. } | Msg::Ack { .. } | Msg::Reply { .. } | Msg::Expelled => {}
        }
        self.execute(now);
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
        match self.order.receive(e) {
            Ok(Received::Held) => {
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
            Ok(Received::Gap { from: gap, .. }) => {
                // Ask a replica that may hold it: the one that relayed
                // this, or the coordinator.
                let ask = if self.is_replica(from) && from != self.me.node {
                    from.to_string()
                } else {
                    self.coordinator().to_string()
                };
                if ask != self.me.node {
                    self.out.push((ask, Msg::Fetch { source, from: gap }));
                }
            }
            Ok(Received::Ignored) => {
                // A client still sending after it left the order did not
                // hear that it was expelled: tell it again.
                if direct && !self.is_replica(from) && self.order.is_cut(&source, seq) {
                    self.out.push((from.to_string(), Msg::Expelled));
                }
            }
            Err(e) => {
                tracing::warn!(from, error = %e, "entry refused");
            }
        }
    }

    /// Nulls and holdings on time, suspicion, and the coordinator's
    /// expulsions.
    pub fn on_tick(&mut self, now: Time) {
        if now >= self.next_null {
            self.emit(Body::Null);
            let h = self.holding();
            self.send_replicas(h);
            self.next_null = now + self.timing.null_period;
            // What is known to be missing is asked of every replica not
            // suspected, once a period: whoever keeps it relays it.
            for (source, from) in self.order.missing() {
                for r in self.replicas.clone() {
                    if r != self.me.node && !self.suspected.contains(&r) {
                        self.out.push((
                            r,
                            Msg::Fetch {
                                source: source.clone(),
                                from,
                            },
                        ));
                    }
                }
            }
        }
        for r in self.replicas.clone() {
            if r == self.me.node || self.suspected.contains(&r) {
                continue;
            }
            let heard = self.heard_node.get(&r).copied().unwrap_or(0);
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

    /// Executes what the order releases.
    fn execute(&mut self, now: Time) {
        // Bounded by the entries held: each call releases one or stops.
        while let Some(e) = self.order.release_next() {
            let index = self.log.len() as u64 + 1;
            match &e.body {
                Body::Request { op, command } => {
                    let outcome = self.db.apply(command);
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
                    if e.source == self.me {
                        self.out
                            .push((source.node.clone(), Msg::Welcome { ts: e.ts }));
                    }
                    // Its silence is measured from its admission.
                    self.heard.insert(source.clone(), now);
                }
                Body::Expel { source, .. } => {
                    if e.source == self.me && !self.is_replica(&source.node) {
                        self.out.push((source.node.clone(), Msg::Expelled));
                    }
                }
                Body::Null | Body::Quit => {}
            }
            self.log.push(Executed { index, entry: e });
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
                    self.core.submit(self.next_req, c).expect("valid command");
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
    fn run(seed: u64) -> (Vec<Replica>, Vec<Client>, Vec<usize>) {
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
        let dead = |i: usize, now: Time| crashes.iter().any(|(c, t)| *c == i && now >= *t);
        // Bounded: simulated time advances 10 ms per step to `end`.
        while now < end {
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
        (reps, clients, crashes.iter().map(|(i, _)| *i).collect())
    }

    #[test]
    fn replicas_execute_one_sequence_and_silent_clients_do_not_stop_it() {
        let (mut expelled_clients, mut expelled_replicas, mut two_crashed) = (0, 0, 0);
        // Bounded: 500 seeds of 12 simulated seconds.
        for seed in 0..500 {
            let (reps, clients, crashed) = run(seed);
            assert_prefixes(seed, &reps);
            // The silent client and a crashed replica are out of every
            // live replica's configuration by the end.
            for (i, r) in reps.iter().enumerate() {
                if crashed.contains(&i) {
                    continue;
                }
                for gone in ["c3", "c4"] {
                    assert!(
                        !r.order.is_member(&Source::new(gone, 0)),
                        "seed {seed}: {} still has {gone} (quit or silent) as a member",
                        r.me
                    );
                }
                for c in &crashed {
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
