//! The order every replica executes: entries from every source (admitted
//! clients and replicas), ordered by `(Lamport timestamp, source)`, released
//! one at a time under the three rules of `docs/smr.md`:
//!
//! 1. stability (Schneider): every other member source has a held message
//!    after the entry, or is closed by a held `Expel` whose cut it has
//!    reached;
//! 2. uniformity: every replica not suspected has announced holding it;
//! 3. configuration: its source is a member, and it is inside the source's
//!    stream (before an expulsion's cut, after its admission).
//!
//! This is a data structure, not a protocol: it is told what arrived, what
//! the other replicas hold and whom this replica suspects, and answers what
//! to execute next. The replica core around it sends, times out and
//! replies. Configuration entries (`Admit`, `Expel`, `Quit`) take effect
//! here, at their position, so every replica changes its configuration at
//! the same point of the order.

use super::db::Command;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A source of the order: a node in one incarnation. A node that restarts
/// is a new source (its sequence numbers start again), admitted anew.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Source {
    pub node: String,
    pub incarnation: u64,
}

impl Source {
    pub fn new(node: impl Into<String>, incarnation: u64) -> Self {
        Source {
            node: node.into(),
            incarnation,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.node, self.incarnation)
    }
}

/// A position in the order: Lamport timestamp, then source.
pub type Position = (u64, Source);

/// What an entry asks of the order.
/// (Externally tagged, as everything the wire codec and the log carry.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// Moves the source's clock; orders nothing.
    Null,
    /// A database command of a client; `op` numbers it for the client.
    Request { op: u64, command: Command },
    /// The client leaves at this point.
    Quit,
    /// (Coordinator) `source` is a member from this point on.
    Admit { source: Source },
    /// (Coordinator) `source` leaves; its messages up to `cut` are in the
    /// order, later ones never are.
    Expel { source: Source, cut: u64 },
}

/// One message of a source's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub source: Source,
    /// 1, 2, 3... per source.
    pub seq: u64,
    /// Lamport timestamp; strictly increasing per source.
    pub ts: u64,
    pub body: Body,
}

impl Entry {
    pub fn position(&self) -> Position {
        (self.ts, self.source.clone())
    }
}

/// A source's own end of its stream: its Lamport clock and the last seq
/// it sent. Clients and replicas stamp their entries with it alike.
#[derive(Clone, Debug, Default)]
pub struct Outgoing {
    pub clock: u64,
    pub seq: u64,
}

impl Outgoing {
    /// The next entry of `source`'s stream: clock and seq one past the last.
    pub fn next(&mut self, source: &Source, body: Body) -> Entry {
        self.clock += 1;
        self.seq += 1;
        Entry {
            source: source.clone(),
            seq: self.seq,
            ts: self.clock,
            body,
        }
    }

    /// Raises the clock to a timestamp seen (Lamport).
    pub fn observe(&mut self, ts: u64) {
        self.clock = self.clock.max(ts);
    }
}

/// Why an entry was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("{sender} sent seq {seq} at ts {ts}, not after its seq {prev_seq} at ts {prev_ts}")]
    ClockWentBack {
        sender: Source,
        seq: u64,
        ts: u64,
        prev_seq: u64,
        prev_ts: u64,
    },
    #[error("{sender} sent seq {seq} twice with different contents")]
    Conflicting { sender: Source, seq: u64 },
    #[error("seq 0 does not exist (streams start at 1)")]
    SeqZero,
    #[error("{sender} may not send {what} (clients send requests, nulls and quit; replicas nulls, admits and expels)")]
    NotAllowed { sender: Source, what: &'static str },
}

/// One source's stream as this replica has it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Stream {
    /// Held messages not yet executed (or passed over, for nulls), by seq.
    /// Held means every seq before it has arrived too.
    held: BTreeMap<u64, Entry>,
    /// Arrived past a gap, waiting for the gap to fill.
    early: BTreeMap<u64, Entry>,
    /// Every seq up to this is held (0: none).
    held_to: u64,
    /// The timestamp of message `held_to`.
    held_ts: u64,
    /// The timestamp of the last held message that is not a null (what
    /// the planted bug `ignore_nulls` wrongly reads instead of `held_ts`).
    held_busy_ts: u64,
    /// Every seq up to this was executed or passed over.
    done_to: u64,
    /// Messages past this are never in the order (an executed `Expel` or
    /// `Quit`; and, once held, a pending `Expel`'s cut).
    cut: Option<u64>,
    /// Set by the source's `Admit`: messages at or before this position
    /// were sent before it was a member and are never in the order.
    floor: Option<Position>,
    /// Executed or passed over, kept to relay to a replica that lacks
    /// them, until every replica not suspected holds them.
    kept: BTreeMap<u64, Entry>,
}

/// The order as one replica has it. It crosses the wire whole in a
/// rejoining replica's snapshot (postcard: maps keyed by [`Source`] are fine
/// there, unlike in JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    me: Source,
    /// Sources in the configuration, at the point this replica has executed to.
    members: BTreeSet<Source>,
    /// Every replica source ever admitted and not expelled: whose holdings
    /// rule 2 asks for (unless suspected).
    replicas: BTreeSet<Source>,
    streams: BTreeMap<Source, Stream>,
    /// What each other replica said it holds, per source.
    announced: BTreeMap<Source, BTreeMap<Source, u64>>,
    /// Replica sources this replica suspects of having crashed.
    suspected: BTreeSet<Source>,
    /// Sources whose held `Expel` closes them at a cut (rule 1's exception).
    closing: BTreeMap<Source, u64>,
    /// This replica's own freezes (as coordinator): never announce past them.
    frozen: BTreeMap<Source, u64>,
    /// The position of the last entry released, to check the order only
    /// moves forward.
    last: Option<Position>,
    /// Entries released (nulls not counted).
    pub executed: u64,
    /// Planted bugs (never sent in a snapshot: each replica has its own).
    #[serde(skip)]
    pub bugs: super::Bugs,
}

/// What `receive` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// Now held (with every message after it that was waiting).
    Held,
    /// Past a gap: held once seqs `from..=to` arrive (ask for a relay).
    Gap { from: u64, to: u64 },
    /// Seen before, or past the source's cut, or already executed.
    Ignored,
}

impl Order {
    /// The order at its start: `replicas` (every replica's first
    /// incarnation) are the members; clients join by `Admit`.
    pub fn new(me: Source, replicas: impl IntoIterator<Item = Source>) -> Self {
        let replicas: BTreeSet<Source> = replicas.into_iter().collect();
        assert!(replicas.contains(&me), "{me} is not one of the replicas");
        Order {
            me,
            members: replicas.clone(),
            streams: replicas
                .iter()
                .map(|r| (r.clone(), Stream::default()))
                .collect(),
            replicas,
            announced: BTreeMap::new(),
            suspected: BTreeSet::new(),
            closing: BTreeMap::new(),
            frozen: BTreeMap::new(),
            last: None,
            executed: 0,
            bugs: super::Bugs::default(),
        }
    }

    /// The replica sources admitted and not expelled (rule 2 asks each one
    /// not suspected).
    pub fn replicas(&self) -> &BTreeSet<Source> {
        &self.replicas
    }

    /// Whether replica source `r` has announced what it holds (it is in the
    /// order, not waiting for a snapshot).
    pub fn has_announced(&self, r: &Source) -> bool {
        self.announced.contains_key(r)
    }

    /// This order as replica `me` takes it over from a snapshot: what the
    /// sender froze as coordinator and whom it suspected are its own, not
    /// the taker's.
    pub fn adopt(mut self, me: Source, bugs: super::Bugs) -> Order {
        self.me = me;
        self.frozen.clear();
        self.suspected.clear();
        self.bugs = bugs;
        self.streams.entry(self.me.clone()).or_default();
        self.prune();
        self
    }

    /// The largest timestamp held from any source (a snapshot's taker
    /// raises its clock above it).
    pub fn max_ts(&self) -> u64 {
        self.streams
            .values()
            .map(|st| st.held_ts)
            .max()
            .unwrap_or(0)
    }

    /// Held entries not yet executed, per source (nulls included).
    pub fn pending(&self) -> BTreeMap<Source, usize> {
        self.streams
            .iter()
            .filter(|(_, st)| !st.held.is_empty())
            .map(|(s, st)| (s.clone(), st.held.len()))
            .collect()
    }

    pub fn members(&self) -> &BTreeSet<Source> {
        &self.members
    }

    pub fn is_member(&self, s: &Source) -> bool {
        self.members.contains(s)
    }

    /// The timestamp of `s`'s admission, if it is a member that was
    /// admitted (the replicas of the start were not).
    pub fn admitted_at(&self, s: &Source) -> Option<u64> {
        if !self.members.contains(s) {
            return None;
        }
        self.streams.get(s)?.floor.as_ref().map(|(ts, _)| *ts)
    }

    /// Whether `s` left the order (expelled or quit) before message `seq`.
    pub fn is_cut(&self, s: &Source, seq: u64) -> bool {
        self.streams
            .get(s)
            .is_some_and(|st| st.cut.is_some_and(|c| seq > c))
    }

    /// Takes one message of a source's stream (from the source itself or
    /// relayed by a replica).
    pub fn receive(&mut self, e: Entry) -> Result<Received, OrderError> {
        if e.seq == 0 {
            return Err(OrderError::SeqZero);
        }
        let replica = self.is_replica_node(&e.source.node);
        let what = match (&e.body, replica) {
            (Body::Null, _) => None,
            (Body::Request { .. }, false) | (Body::Quit, false) => None,
            (Body::Admit { .. }, true) | (Body::Expel { .. }, true) => None,
            (Body::Request { .. }, true) => Some("requests"),
            (Body::Quit, true) => Some("quit"),
            (Body::Admit { .. }, false) => Some("admits"),
            (Body::Expel { .. }, false) => Some("expels"),
        };
        if let Some(what) = what {
            return Err(OrderError::NotAllowed {
                sender: e.source,
                what,
            });
        }
        let st = self.streams.entry(e.source.clone()).or_default();
        if st.cut.is_some_and(|c| e.seq > c) || e.seq <= st.done_to {
            return Ok(Received::Ignored);
        }
        if e.seq <= st.held_to {
            return match st.held.get(&e.seq) {
                Some(have) if *have != e => Err(OrderError::Conflicting {
                    sender: e.source,
                    seq: e.seq,
                }),
                _ => Ok(Received::Ignored),
            };
        }
        if e.seq > st.held_to + 1 {
            if let Some(have) = st.early.get(&e.seq) {
                if *have != e {
                    return Err(OrderError::Conflicting {
                        sender: e.source,
                        seq: e.seq,
                    });
                }
                return Ok(Received::Ignored);
            }
            let from = st.held_to + 1;
            let to = e.seq - 1;
            st.early.insert(e.seq, e);
            return Ok(Received::Gap { from, to });
        }
        // The next one: hold it and everything waiting behind it.
        let mut next = Some(e);
        while let Some(m) = next {
            if st.held_to > 0 && m.ts <= st.held_ts {
                return Err(OrderError::ClockWentBack {
                    sender: m.source,
                    seq: m.seq,
                    ts: m.ts,
                    prev_seq: st.held_to,
                    prev_ts: st.held_ts,
                });
            }
            st.held_to = m.seq;
            st.held_ts = m.ts;
            if m.body != Body::Null {
                st.held_busy_ts = m.ts;
            }
            if let Body::Expel { source, cut } = &m.body {
                // Closing starts when the Expel is held, not executed.
                self.closing
                    .entry(source.clone())
                    .and_modify(|c| *c = (*c).min(*cut))
                    .or_insert(*cut);
            }
            st.held.insert(m.seq, m);
            next = st.early.remove(&(st.held_to + 1));
        }
        Ok(Received::Held)
    }

    /// What this replica holds, per source, as it announces it: never past
    /// one of its own freezes.
    pub fn holding(&self) -> BTreeMap<Source, u64> {
        self.streams
            .iter()
            .map(|(s, st)| {
                let to = match self.frozen.get(s) {
                    Some(cut) => st.held_to.min(*cut),
                    None => st.held_to,
                };
                (s.clone(), to)
            })
            .collect()
    }

    /// Replica `from` holds these.
    pub fn announce(&mut self, from: Source, holding: BTreeMap<Source, u64>) {
        let have = self.announced.entry(from).or_default();
        for (s, n) in holding {
            let e = have.entry(s).or_insert(0);
            // Holdings only grow; an older announcement arriving late
            // changes nothing.
            *e = (*e).max(n);
        }
        self.prune();
    }

    /// Whether this replica suspects replica source `source` (one
    /// incarnation: a restarted replica is a new source, and hearing from
    /// it says nothing of the old one).
    pub fn suspect(&mut self, source: &Source, suspected: bool) {
        if suspected {
            self.suspected.insert(source.clone());
        } else {
            self.suspected.remove(source);
        }
        self.prune();
    }

    /// (Coordinator) Decides `source`'s cut: the highest message of it held
    /// here. From now on this replica never announces more of it.
    pub fn freeze(&mut self, source: &Source) -> u64 {
        let cut = self.streams.get(source).map(|st| st.held_to).unwrap_or(0);
        let cut = self.frozen.get(source).map_or(cut, |c| (*c).min(cut));
        self.frozen.insert(source.clone(), cut);
        cut
    }

    /// Seqs of `source` that arrived past a gap (ask a replica for the gap).
    pub fn gaps(&self) -> Vec<(Source, u64, u64)> {
        self.streams
            .iter()
            .filter_map(|(s, st)| {
                let first = st.early.keys().next()?;
                Some((s.clone(), st.held_to + 1, first - 1))
            })
            .collect()
    }

    /// Held messages of `source` from `from` on, executed or not, as far
    /// as this replica still keeps them (to relay to a replica that asks).
    pub fn held_from(&self, source: &Source, from: u64) -> Vec<Entry> {
        self.streams
            .get(source)
            .map(|st| {
                st.kept
                    .range(from..)
                    .chain(st.held.range(from..))
                    .map(|(_, e)| e.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What this replica lacks and knows it lacks: `(source, first seq)` of
    /// every gap before messages that arrived early, and of every source
    /// whose held `Expel` cuts past what is held here.
    pub fn missing(&self) -> Vec<(Source, u64)> {
        self.streams
            .iter()
            .filter(|(s, st)| {
                !st.early.is_empty() || self.closing.get(*s).is_some_and(|c| st.held_to < *c)
            })
            .map(|(s, st)| (s.clone(), st.held_to + 1))
            .collect()
    }

    /// Forgets kept entries every replica not suspected has announced.
    fn prune(&mut self) {
        let others: Vec<&Source> = self
            .replicas
            .iter()
            .filter(|r| **r != self.me && !self.suspected.contains(*r))
            .collect();
        for (s, st) in self.streams.iter_mut() {
            let everyone = others
                .iter()
                .map(|r| {
                    self.announced
                        .get(*r)
                        .and_then(|h| h.get(s))
                        .copied()
                        .unwrap_or(0)
                })
                .min()
                .unwrap_or(u64::MAX);
            st.kept.retain(|seq, _| *seq > everyone);
        }
    }

    /// Whether source `d` is closed for an entry at `pos`: a held `Expel`
    /// cuts it, and every message up to the cut is held.
    fn closed(&self, d: &Source) -> bool {
        match (self.closing.get(d), self.streams.get(d)) {
            (Some(cut), Some(st)) => st.held_to >= *cut,
            (Some(cut), None) => *cut == 0,
            _ => false,
        }
    }

    /// The first unexecuted held message of each member source that can
    /// still enter the order, nulls passed over.
    fn head(&mut self, s: &Source) -> Option<Entry> {
        let st = self.streams.get_mut(s)?;
        let limit = match (st.cut, self.closing.get(s)) {
            (Some(a), Some(b)) => Some(a.min(*b)),
            (a, b) => a.or(b.copied()),
        };
        loop {
            let (&seq, e) = st.held.iter().next()?;
            if limit.is_some_and(|c| seq > c) {
                return None;
            }
            let before_admission = st.floor.as_ref().is_some_and(|f| e.position() <= *f);
            if e.body == Body::Null || before_admission {
                // A null's only use is its timestamp, already in held_ts.
                if let Some(e) = st.held.remove(&seq) {
                    st.kept.insert(seq, e);
                }
                st.done_to = seq;
                continue;
            }
            return Some(e.clone());
        }
    }

    /// Rule 1 for `e`: every other member has a held message after it, or
    /// is closed.
    fn stable(&self, e: &Entry) -> bool {
        let pos = e.position();
        if self.bugs.execute_before_stable && matches!(e.body, Body::Request { .. }) {
            return true;
        }
        self.members.iter().filter(|d| **d != e.source).all(|d| {
            let after = self.streams.get(d).is_some_and(|st| {
                let ts = if self.bugs.ignore_nulls {
                    st.held_busy_ts
                } else {
                    st.held_ts
                };
                st.held_to > 0 && (ts, d.clone()) > pos
            });
            after || self.closed(d)
        })
    }

    /// Rule 2 for `e`: every replica not suspected holds it.
    fn uniform(&self, e: &Entry) -> bool {
        self.replicas
            .iter()
            .filter(|r| **r != self.me && !self.suspected.contains(*r))
            .all(|r| {
                self.announced
                    .get(r)
                    .and_then(|h| h.get(&e.source))
                    .is_some_and(|n| *n >= e.seq)
            })
    }

    /// The next entry to execute, if the rules allow one; configuration
    /// entries have already taken effect when it is returned.
    pub fn release_next(&mut self) -> Option<Entry> {
        let members: Vec<Source> = self.members.iter().cloned().collect();
        let mut best: Option<Entry> = None;
        for s in &members {
            if let Some(e) = self.head(s) {
                if best.as_ref().is_none_or(|b| e.position() < b.position()) {
                    best = Some(e);
                }
            }
        }
        let e = best?;
        if !self.stable(&e) || !self.uniform(&e) {
            return None;
        }
        self.release(&e);
        Some(e)
    }

    /// Removes `e` from its stream and applies what it does to the
    /// configuration.
    fn release(&mut self, e: &Entry) {
        let pos = e.position();
        if let Some(last) = &self.last {
            // The planted bug breaks exactly this; it runs on as a
            // careless implementation would, for the checks to catch.
            assert!(
                pos > *last || self.bugs.execute_before_stable,
                "the order went back: {pos:?} after {last:?}"
            );
        }
        self.last = Some(pos.clone());
        let st = self
            .streams
            .get_mut(&e.source)
            .expect("a member has a stream");
        let removed = st.held.remove(&e.seq);
        assert!(removed.is_some(), "released {e:?}, which was not held");
        st.kept.insert(e.seq, e.clone());
        st.done_to = e.seq;
        self.executed += 1;
        match &e.body {
            Body::Null | Body::Request { .. } => {}
            Body::Quit => {
                let st = self.streams.get_mut(&e.source).expect("stream");
                st.cut = Some(e.seq);
                st.held.clear();
                st.early.clear();
                self.members.remove(&e.source);
            }
            // A second admission of a member (two coordinators answered
            // its hellos) changes nothing: the first one executed is its
            // admission, on every replica.
            Body::Admit { source } if self.members.contains(source) => {}
            // An incarnation that left the order never comes back (two
            // coordinators admitted it, and it was expelled between).
            Body::Admit { source }
                if self.streams.get(source).is_some_and(|st| st.cut.is_some()) => {}
            Body::Admit { source } => {
                self.members.insert(source.clone());
                if self.is_replica_node(&source.node) {
                    self.replicas.insert(source.clone());
                }
                // Whatever it sent before its admission is before this
                // point of the order: never part of it, on every replica
                // (`head` passes over it, however late it arrives).
                self.streams.entry(source.clone()).or_default().floor = Some(pos);
            }
            Body::Expel { source, cut } => {
                // Two coordinators may each have expelled it: the smaller
                // cut is the one nothing past was executed anywhere (the
                // second froze there), and every replica holding both
                // waits for it (`closing`).
                let cut = self.closing.get(source).map_or(*cut, |c| (*c).min(*cut));
                let st = self.streams.entry(source.clone()).or_default();
                assert!(
                    !self.members.contains(source) || st.done_to >= cut,
                    "{source} expelled at {cut} but executed only to {}",
                    st.done_to
                );
                st.cut = Some(st.cut.map_or(cut, |c| c.min(cut)));
                st.held.clear();
                st.early.clear();
                self.members.remove(source);
                self.replicas.remove(source);
                self.closing.remove(source);
            }
        }
    }

    /// The planted bug `join_out_of_order`: applies a just-held `Admit` at
    /// once, ahead of the entries before it in the order, instead of at its
    /// position. Returns whether it did (then the caller logs it as
    /// executed now; the order never releases it again).
    pub fn admit_on_receipt(&mut self, source: &Source, seq: u64) -> Option<Entry> {
        let st = self.streams.get_mut(source)?;
        let e = st.held.get(&seq)?.clone();
        let Body::Admit { source: joiner } = &e.body else {
            return None;
        };
        if self.members.contains(joiner) {
            return None;
        }
        st.held.remove(&seq);
        st.kept.insert(seq, e.clone());
        self.members.insert(joiner.clone());
        self.streams.entry(joiner.clone()).or_default().floor = Some(e.position());
        self.executed += 1;
        Some(e)
    }

    fn is_replica_node(&self, node: &str) -> bool {
        self.replicas.iter().any(|r| r.node == node)
            || self.announced.keys().any(|r| r.node == node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(n: &str) -> Source {
        Source::new(n, 0)
    }

    fn entry(s: &str, seq: u64, ts: u64, body: Body) -> Entry {
        Entry {
            source: src(s),
            seq,
            ts,
            body,
        }
    }

    fn req(s: &str, seq: u64, ts: u64) -> Entry {
        entry(
            s,
            seq,
            ts,
            Body::Request {
                op: seq,
                command: Command::List,
            },
        )
    }

    fn null(s: &str, seq: u64, ts: u64) -> Entry {
        entry(s, seq, ts, Body::Null)
    }

    /// A one-replica order (rule 2 asks nobody) with `clients` admitted at
    /// ts 1, 2, ... (r1's seqs 1, 2, ...), each of which has sent a null as
    /// its seq 1 at ts 5, as an admitted client does (so the next
    /// admission is stable): their requests start at seq 2.
    fn alone_with(clients: &[&str]) -> Order {
        let mut o = Order::new(src("r1"), [src("r1")]);
        for (i, c) in clients.iter().enumerate() {
            let seq = i as u64 + 1;
            o.receive(entry("r1", seq, seq, Body::Admit { source: src(c) }))
                .expect("admit");
            o.receive(null(c, 1, 5)).expect("first null");
        }
        for _ in clients {
            assert!(matches!(
                o.release_next().map(|e| e.body),
                Some(Body::Admit { .. })
            ));
        }
        o
    }

    fn drain(o: &mut Order) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        // Bounded: each call releases one held entry or stops.
        for _ in 0..1_000 {
            match o.release_next() {
                Some(e) => out.push((e.source.node.clone(), e.seq)),
                None => break,
            }
        }
        out
    }

    #[test]
    fn a_request_waits_until_every_other_member_has_passed_it() {
        let mut o = alone_with(&["a", "b"]);
        o.receive(req("a", 2, 10)).expect("a2");
        // b has sent nothing after ts 10, and r1's own stream neither.
        assert_eq!(drain(&mut o), []);
        o.receive(null("b", 2, 11)).expect("b null");
        assert_eq!(drain(&mut o), [], "r1 (a member) has not passed ts 10");
        o.receive(null("r1", 3, 12)).expect("r1 null");
        assert_eq!(drain(&mut o), [("a".into(), 2)]);
    }

    #[test]
    fn ties_break_by_source_and_nulls_count_for_stability() {
        let mut o = alone_with(&["a", "b"]);
        o.receive(req("b", 2, 10)).expect("b2");
        o.receive(req("a", 2, 10)).expect("a2");
        o.receive(null("a", 3, 20)).expect("a null");
        o.receive(null("b", 3, 20)).expect("b null");
        o.receive(null("r1", 3, 20)).expect("r1 null");
        assert_eq!(drain(&mut o), [("a".into(), 2), ("b".into(), 2)]);
    }

    #[test]
    fn messages_past_a_gap_wait_for_it() {
        let mut o = alone_with(&["a"]);
        assert_eq!(
            o.receive(req("a", 3, 20)).expect("a2"),
            Received::Gap { from: 2, to: 2 }
        );
        assert_eq!(o.gaps(), [(src("a"), 2, 2)]);
        o.receive(null("r1", 2, 30)).expect("r1");
        assert_eq!(drain(&mut o), []);
        assert_eq!(o.receive(req("a", 2, 10)).expect("a2"), Received::Held);
        assert_eq!(drain(&mut o), [("a".into(), 2), ("a".into(), 3)]);
        assert_eq!(o.receive(req("a", 2, 10)).expect("dup"), Received::Ignored);
    }

    #[test]
    fn bad_streams_are_refused() {
        let mut o = alone_with(&["a"]);
        o.receive(req("a", 2, 10)).expect("a2");
        assert!(matches!(
            o.receive(req("a", 3, 10)),
            Err(OrderError::ClockWentBack { .. })
        ));
        assert_eq!(
            o.receive(entry("a", 2, 10, Body::Quit)),
            Err(OrderError::Conflicting {
                sender: src("a"),
                seq: 2
            })
        );
        assert_eq!(o.receive(req("a", 0, 5)), Err(OrderError::SeqZero));
        // A client cannot expel; a replica cannot send a request.
        assert!(matches!(
            o.receive(entry(
                "a",
                2,
                11,
                Body::Expel {
                    source: src("r1"),
                    cut: 0
                }
            )),
            Err(OrderError::NotAllowed { what: "expels", .. })
        ));
        assert!(matches!(
            o.receive(req("r1", 2, 50)),
            Err(OrderError::NotAllowed {
                what: "requests",
                ..
            })
        ));
        assert_eq!(drain(&mut o), [], "nothing refused entered the order");
    }

    #[test]
    fn uniformity_waits_for_every_replica_not_suspected() {
        let mut o = Order::new(src("r1"), [src("r1"), src("r2")]);
        o.receive(null("r2", 1, 5)).expect("r2");
        o.receive(null("r1", 1, 6)).expect("r1");
        o.receive(entry("r1", 2, 7, Body::Admit { source: src("a") }))
            .expect("admit");
        o.receive(null("r2", 2, 8)).expect("r2");
        // r2 has not said it holds the Admit.
        assert_eq!(drain(&mut o), []);
        o.announce(src("r2"), BTreeMap::from([(src("r1"), 2)]));
        assert_eq!(drain(&mut o), [("r1".into(), 2)]);
        // A request of a: held by r1, not announced by r2.
        o.receive(req("a", 1, 9)).expect("a1");
        o.receive(null("a", 2, 12)).expect("a null");
        o.receive(null("r1", 3, 12)).expect("r1");
        o.receive(null("r2", 3, 12)).expect("r2");
        assert_eq!(drain(&mut o), []);
        // r2 suspected (crashed): rule 2 no longer asks it.
        o.suspect(&src("r2"), true);
        assert_eq!(drain(&mut o), [("a".into(), 1)]);
    }

    #[test]
    fn an_expelled_silent_client_stops_holding_back_the_order() {
        let mut o = alone_with(&["a", "b"]);
        o.receive(req("a", 2, 10)).expect("a2");
        o.receive(req("b", 2, 11)).expect("b2");
        o.receive(null("r1", 3, 12)).expect("r1");
        // a is silent after ts 10: b's request waits for it.
        assert_eq!(drain(&mut o), [("a".into(), 2)]);
        assert_eq!(drain(&mut o), []);
        let cut = o.freeze(&src("a"));
        assert_eq!(cut, 2);
        o.receive(entry(
            "r1",
            4,
            20,
            Body::Expel {
                source: src("a"),
                cut,
            },
        ))
        .expect("expel");
        o.receive(null("b", 3, 21)).expect("b null");
        // b2 (ts 11) goes first, then the Expel (ts 20).
        assert_eq!(drain(&mut o), [("b".into(), 2), ("r1".into(), 4)]);
        assert!(!o.is_member(&src("a")));
        // What a sends after its cut never enters the order.
        assert_eq!(o.receive(req("a", 3, 30)).expect("late"), Received::Ignored);
    }

    #[test]
    fn a_frozen_source_is_not_announced_past_its_cut() {
        let mut o = alone_with(&["a"]);
        o.receive(req("a", 2, 10)).expect("a2");
        let cut = o.freeze(&src("a"));
        o.receive(req("a", 3, 11)).expect("a2");
        assert_eq!(o.holding()[&src("a")], cut);
    }

    #[test]
    fn what_a_client_sent_before_its_admission_is_never_ordered() {
        let mut o = Order::new(src("r1"), [src("r1")]);
        o.receive(req("a", 1, 3)).expect("early");
        o.receive(entry("r1", 1, 5, Body::Admit { source: src("a") }))
            .expect("admit");
        o.receive(req("a", 2, 6)).expect("a2");
        o.receive(null("a", 3, 9)).expect("a null");
        o.receive(null("r1", 2, 9)).expect("r1");
        assert_eq!(drain(&mut o), [("r1".into(), 1), ("a".into(), 2)]);
    }

    #[test]
    fn a_message_from_before_admission_arriving_late_is_passed_over() {
        let mut o = Order::new(src("r1"), [src("r1")]);
        // a's seq 2 arrives first (a gap), its seq 1 (sent before it was
        // admitted) only after the Admit executed.
        o.receive(req("a", 2, 6)).expect("a2");
        o.receive(entry("r1", 1, 5, Body::Admit { source: src("a") }))
            .expect("admit");
        o.receive(null("r1", 2, 9)).expect("r1");
        assert_eq!(drain(&mut o), [("r1".into(), 1)]);
        o.receive(req("a", 1, 3)).expect("a1 late");
        o.receive(null("a", 3, 9)).expect("a null");
        assert_eq!(drain(&mut o), [("a".into(), 2)]);
    }

    #[test]
    fn two_expels_of_one_source_take_the_smaller_cut_everywhere() {
        let mut o = Order::new(src("r1"), [src("r1"), src("r2")]);
        o.suspect(&src("r2"), true);
        o.receive(entry("r1", 1, 1, Body::Admit { source: src("a") }))
            .expect("admit");
        o.receive(null("r2", 1, 2)).expect("r2");
        assert_eq!(drain(&mut o), [("r1".into(), 1)]);
        o.receive(req("a", 1, 3)).expect("a1");
        o.receive(req("a", 2, 4)).expect("a2");
        // r2 cut a at 1, r1 at 2; r2's Expel comes first in the order.
        o.receive(entry(
            "r2",
            2,
            10,
            Body::Expel {
                source: src("a"),
                cut: 1,
            },
        ))
        .expect("expel r2");
        o.receive(entry(
            "r1",
            2,
            11,
            Body::Expel {
                source: src("a"),
                cut: 2,
            },
        ))
        .expect("expel r1");
        o.receive(null("r2", 3, 12)).expect("r2");
        o.receive(null("r1", 3, 12)).expect("r1");
        assert_eq!(
            drain(&mut o),
            [("a".into(), 1), ("r2".into(), 2), ("r1".into(), 2)]
        );
    }

    #[test]
    fn a_second_admission_of_a_member_changes_nothing() {
        let mut o = Order::new(src("r1"), [src("r1"), src("r2")]);
        o.suspect(&src("r2"), true);
        o.receive(entry("r2", 1, 1, Body::Admit { source: src("a") }))
            .expect("admit by r2");
        o.receive(entry("r1", 1, 4, Body::Admit { source: src("a") }))
            .expect("admit by r1");
        // a, welcomed by r2, sends between the two admissions.
        o.receive(req("a", 1, 2)).expect("a1");
        o.receive(null("a", 2, 9)).expect("a null");
        o.receive(null("r2", 2, 9)).expect("r2");
        o.receive(null("r1", 2, 9)).expect("r1");
        assert_eq!(
            drain(&mut o),
            [("r2".into(), 1), ("a".into(), 1), ("r1".into(), 1)]
        );
        assert_eq!(o.admitted_at(&src("a")), Some(1));
    }

    #[test]
    fn quit_removes_the_client_at_its_position() {
        let mut o = alone_with(&["a", "b"]);
        o.receive(entry("a", 2, 10, Body::Quit)).expect("quit");
        o.receive(req("b", 2, 12)).expect("b2");
        o.receive(null("r1", 3, 13)).expect("r1");
        o.receive(null("b", 3, 13)).expect("b null");
        assert_eq!(drain(&mut o), [("a".into(), 2), ("b".into(), 2)]);
        assert!(!o.is_member(&src("a")));
    }
}
