//! A replica in active mode (seed 002, with the total order the seed did
//! not have), sans IO. Clients send every request to every member of the
//! view; the view's sequencer (its first member in join order) numbers
//! each one and sends the order to every member; a member executes
//! entries in number order once the sequencer says they are stable (every
//! member of the view holds them), and replies; the client takes the first
//! reply.
//!
//! Across view changes (why it stays one total order): an entry executed
//! anywhere was stable in its view, so every member of that view holds it
//! at its number. The new view's sequencer first collects every member's
//! log (the `sync`), keeps for each number the entry of the latest view
//! that numbered it, installs the state at the highest stable number any
//! member knew, and numbers the rest again in their old order, then the
//! requests still waiting. One member of the old view in the new one is
//! enough for nothing executed to be lost or reordered.

use super::store::{push_recent, Answer, Op, RequestId, Store};
use super::view::View;
use crate::protocol::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Executed entries a member keeps for the next view change's sync.
pub const TAIL: usize = 4096;

/// One numbered request: its number, request, operation, and the view
/// that numbered it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub index: u64,
    pub id: RequestId,
    pub op: Op,
    pub view: u64,
}

/// Messages between active replicas (clients use `Request` and `Reply`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AMsg {
    Request {
        id: RequestId,
        op: Op,
    },
    Reply {
        id: RequestId,
        view: u64,
        answer: Answer,
    },
    /// Sequencer to members.
    Order(Entry),
    /// Member to sequencer: entry `index` of `view` is held.
    OrderAck {
        view: u64,
        index: u64,
    },
    /// Sequencer to members: entries up to `upto` are stable.
    Commit {
        view: u64,
        upto: u64,
    },
    /// Member to the new view's sequencer: what it holds.
    Sync {
        view: u64,
        ready: bool,
        executed: u64,
        stable: u64,
        entries: Vec<Entry>,
        pending: Vec<(RequestId, Op)>,
    },
    /// Sequencer to members: the state at `executed`, and the entries
    /// after it, numbered in `view`.
    Install {
        view: u64,
        executed: u64,
        store: Store,
        entries: Vec<Entry>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveBugs {
    /// Members execute requests as they arrive, not in the sequencer's
    /// order: their states diverge.
    pub arrival_order: bool,
}

#[derive(Clone, Debug)]
pub struct Active {
    me: NodeId,
    pub view: View,
    pub ready: bool,
    pub store: Store,
    pub executed: u64,
    /// Entries numbered and held (the executed ones too, the newest
    /// [`TAIL`]).
    log: BTreeMap<u64, Entry>,
    /// Stable up to here (executed up to here once held).
    pub stable: u64,
    /// Requests received and not yet numbered.
    pending: BTreeMap<RequestId, Op>,
    /// Sequencer: the last number given.
    next: u64,
    /// Sequencer: members yet to hold each entry.
    acks: BTreeMap<u64, BTreeSet<NodeId>>,
    /// Sequencer: the highest number it declared stable.
    declared: u64,
    /// Sequencer during a view change: the syncs received.
    syncs: Option<BTreeMap<NodeId, AMsg>>,
    /// Syncs of a view this member has not heard of yet (the RM's view
    /// and a member's sync come on different links).
    early: Vec<(NodeId, AMsg)>,
    pub bugs: ActiveBugs,
    pub out: Vec<(NodeId, AMsg)>,
    /// Requests this member applied, in order (exactly-once check).
    /// The newest only ([`super::store::push_recent`]).
    pub applied: Vec<RequestId>,
    applied_dropped: u64,
    /// Requests answered from the outcome table instead of applied again
    /// (every client retry, and every request a member already ordered).
    pub duplicates: u64,
}

impl Active {
    pub fn new(me: &str, ready: bool) -> Self {
        Active {
            me: me.to_string(),
            view: View::default(),
            ready,
            store: Store::default(),
            executed: 0,
            log: BTreeMap::new(),
            stable: 0,
            pending: BTreeMap::new(),
            next: 0,
            acks: BTreeMap::new(),
            declared: 0,
            syncs: None,
            early: Vec::new(),
            bugs: ActiveBugs::default(),
            out: Vec::new(),
            applied: Vec::new(),
            applied_dropped: 0,
            duplicates: 0,
        }
    }

    /// The log's (index, view) pairs, for debugging.
    pub fn debug_log(&self) -> Vec<(u64, u64)> {
        self.log.values().map(|e| (e.index, e.view)).collect()
    }

    pub fn sequencer(&self) -> Option<&NodeId> {
        self.view.members.first()
    }

    pub fn is_sequencer(&self) -> bool {
        self.sequencer() == Some(&self.me)
    }

    /// Whether a view change is under way at this sequencer.
    pub fn is_syncing(&self) -> bool {
        self.syncs.is_some()
    }

    /// Handles a message from a member or client.
    pub fn handle(&mut self, from: &str, m: AMsg) {
        match m {
            AMsg::Request { id, op } => self.on_request(id, op),
            AMsg::Order(e) => self.on_order(from, e),
            AMsg::OrderAck { view, index } => self.on_order_ack(from, view, index),
            AMsg::Commit { view, upto } => self.on_commit(from, view, upto),
            s @ AMsg::Sync { .. } => self.on_sync(from, s),
            AMsg::Install {
                view,
                executed,
                store,
                entries,
            } => self.on_install(from, view, executed, store, entries),
            AMsg::Reply { .. } => {}
        }
        self.flush_local();
    }

    /// Handles at once what this member sent itself (the transport has no
    /// link to itself).
    pub fn flush_local(&mut self) {
        // Bounded: each pass handles what the previous produced, and a
        // member's messages to itself end (an order, its ack, a commit).
        for _ in 0..10_000 {
            let me = self.me.clone();
            let (local, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.out)
                .into_iter()
                .partition(|(to, _)| *to == me);
            self.out = rest;
            if local.is_empty() {
                return;
            }
            for (_, m) in local {
                match m {
                    AMsg::Request { id, op } => self.on_request(id, op),
                    AMsg::Order(e) => self.on_order(&me, e),
                    AMsg::OrderAck { view, index } => self.on_order_ack(&me, view, index),
                    AMsg::Commit { view, upto } => self.on_commit(&me, view, upto),
                    s @ AMsg::Sync { .. } => self.on_sync(&me, s),
                    AMsg::Install {
                        view,
                        executed,
                        store,
                        entries,
                    } => self.on_install(&me, view, executed, store, entries),
                    AMsg::Reply { .. } => {}
                }
            }
        }
    }

    fn send_all(&mut self, m: AMsg) {
        for to in self.view.members.clone() {
            self.out.push((to, m.clone()));
        }
    }

    fn apply(&mut self, id: &RequestId, op: &Op) -> Answer {
        let fresh = self.store.outcome(id).is_none();
        let a = self.store.apply(id, op, true);
        if fresh {
            push_recent(&mut self.applied, &mut self.applied_dropped, id.clone());
        } else {
            self.duplicates += 1;
        }
        a
    }

    /// A new view: every member sends its log to the new sequencer.
    pub fn on_view(&mut self, v: View) {
        if v.number <= self.view.number {
            return;
        }
        self.view = v;
        self.acks.clear();
        self.syncs = self.is_sequencer().then(BTreeMap::new);
        let Some(seq) = self.sequencer().cloned() else {
            return;
        };
        let sync = AMsg::Sync {
            view: self.view.number,
            ready: self.ready,
            executed: self.executed,
            stable: self.stable,
            entries: self.log.values().cloned().collect(),
            pending: self
                .pending
                .iter()
                .map(|(i, o)| (i.clone(), o.clone()))
                .collect(),
        };
        self.out.push((seq, sync));
        let number = self.view.number;
        let early: Vec<(NodeId, AMsg)> = std::mem::take(&mut self.early)
            .into_iter()
            .filter(|(_, m)| matches!(m, AMsg::Sync { view, .. } if *view >= number))
            .collect();
        for (from, m) in early {
            self.on_sync(&from, m);
        }
    }

    /// A client's request (sent to every member).
    pub fn on_request(&mut self, id: RequestId, op: Op) {
        if !self.ready {
            return;
        }
        if let Some(a) = self.store.outcome(&id) {
            let answer = a.clone();
            self.duplicates += 1;
            self.reply(id, answer);
            return;
        }
        if self.bugs.arrival_order {
            let answer = self.apply(&id, &op);
            self.reply(id, answer);
            return;
        }
        if self.log.values().any(|e| e.id == id) {
            return;
        }
        if self.is_sequencer() && self.syncs.is_none() {
            self.pending.remove(&id);
            self.order(id, op);
        } else {
            self.pending.insert(id, op);
        }
    }

    fn order(&mut self, id: RequestId, op: Op) {
        self.next += 1;
        let e = Entry {
            index: self.next,
            id,
            op,
            view: self.view.number,
        };
        self.acks
            .insert(e.index, self.view.members.iter().cloned().collect());
        self.send_all(AMsg::Order(e));
    }

    fn reply(&mut self, id: RequestId, answer: Answer) {
        self.out.push((
            id.client.clone(),
            AMsg::Reply {
                id,
                view: self.view.number,
                answer,
            },
        ));
    }

    /// An entry from the sequencer.
    pub fn on_order(&mut self, from: &str, e: Entry) {
        if e.view != self.view.number || self.sequencer().map(String::as_str) != Some(from) {
            return;
        }
        if !self.ready || e.index <= self.executed {
            return;
        }
        self.pending.remove(&e.id);
        let index = e.index;
        self.log.insert(index, e);
        self.out.push((
            from.to_string(),
            AMsg::OrderAck {
                view: self.view.number,
                index,
            },
        ));
    }

    /// A member holds entry `index`.
    pub fn on_order_ack(&mut self, from: &str, view: u64, index: u64) {
        if view != self.view.number || !self.is_sequencer() {
            return;
        }
        if let Some(a) = self.acks.get_mut(&index) {
            a.remove(from);
        }
        // Stable: every entry up to here is held by every member.
        let mut upto = self.declared;
        while self.acks.get(&(upto + 1)).is_some_and(|a| a.is_empty()) {
            upto += 1;
            self.acks.remove(&upto);
        }
        if upto > self.declared {
            self.declared = upto;
            self.send_all(AMsg::Commit {
                view: self.view.number,
                upto,
            });
        }
    }

    /// Entries up to `upto` are stable: executes them in order.
    pub fn on_commit(&mut self, from: &str, view: u64, upto: u64) {
        if view != self.view.number || self.sequencer().map(String::as_str) != Some(from) {
            return;
        }
        self.stable = self.stable.max(upto);
        self.execute();
    }

    fn execute(&mut self) {
        // Bounded by the log.
        while self.executed < self.stable {
            let Some(e) = self.log.get(&(self.executed + 1)).cloned() else {
                return;
            };
            let answer = self.apply(&e.id, &e.op);
            self.executed = e.index;
            self.reply(e.id, answer);
        }
        let keep_from = self.executed.saturating_sub(TAIL as u64);
        self.log.retain(|i, _| *i > keep_from);
    }

    /// A member's sync, at the new sequencer.
    pub fn on_sync(&mut self, from: &str, m: AMsg) {
        let AMsg::Sync { view, .. } = &m else {
            return;
        };
        if *view > self.view.number {
            // Bounded: a member sends one sync per view.
            if self.early.len() < 1_000 {
                self.early.push((from.to_string(), m));
            }
            return;
        }
        if *view != self.view.number || !self.view.members.iter().any(|x| x == from) {
            return;
        }
        let Some(syncs) = self.syncs.as_mut() else {
            return;
        };
        syncs.insert(from.to_string(), m);
        if self.view.members.iter().all(|x| syncs.contains_key(x)) {
            self.install();
        }
    }

    /// Every member's log is in: the new view's order.
    fn install(&mut self) {
        let Some(syncs) = self.syncs.take() else {
            return;
        };
        let mut merged: BTreeMap<u64, Entry> = BTreeMap::new();
        let mut stable = 0;
        let mut base: Option<(u64, &NodeId)> = None;
        let mut pending: BTreeMap<RequestId, Op> = BTreeMap::new();
        for (who, s) in &syncs {
            let AMsg::Sync {
                ready,
                executed,
                stable: st,
                entries,
                pending: p,
                ..
            } = s
            else {
                continue;
            };
            if !ready {
                continue;
            }
            stable = stable.max(*st);
            if base.is_none_or(|(x, _)| *executed > x) {
                base = Some((*executed, who));
            }
            for e in entries {
                match merged.get(&e.index) {
                    Some(have) if have.view >= e.view => {}
                    _ => {
                        merged.insert(e.index, e.clone());
                    }
                }
            }
            pending.extend(p.iter().cloned());
        }
        let Some((base_exec, _)) = base else {
            tracing::error!(node = %self.me, "no member of the view has the state: it cannot serve");
            return;
        };
        // The state at the highest stable number: this sequencer executes
        // up to it from its own state and the merged entries.
        if !self.ready {
            // Every member with the state is gone (more failures than the
            // group tolerates): serving would lose what was acknowledged.
            tracing::error!(node = %self.me, "the sequencer has no state: the view cannot serve");
            return;
        }
        let target = stable.max(base_exec.min(stable));
        for i in self.executed + 1..=target {
            let Some(e) = merged.get(&i).cloned() else {
                tracing::error!(node = %self.me, index = i, "a stable entry nobody holds");
                return;
            };
            self.apply(&e.id, &e.op);
            self.executed = i;
        }
        self.stable = self.executed;
        // The rest, numbered again in their old order, then the waiting.
        let mut rest: Vec<Entry> = Vec::new();
        let mut seen: BTreeSet<RequestId> = BTreeSet::new();
        for e in merged.into_values().filter(|e| e.index > self.executed) {
            if self.store.outcome(&e.id).is_none() && seen.insert(e.id.clone()) {
                rest.push(e);
            }
        }
        self.next = self.executed;
        self.declared = self.executed;
        for e in rest.iter_mut() {
            self.next += 1;
            e.index = self.next;
            e.view = self.view.number;
        }
        self.log = rest.iter().map(|e| (e.index, e.clone())).collect();
        self.acks = rest
            .iter()
            .map(|e| (e.index, self.view.members.iter().cloned().collect()))
            .collect();
        let install = AMsg::Install {
            view: self.view.number,
            executed: self.executed,
            store: self.store.clone(),
            entries: rest.clone(),
        };
        self.send_all(install);
        for (id, op) in pending {
            if self.store.outcome(&id).is_none() && seen.insert(id.clone()) {
                self.order(id, op);
            }
        }
        for (id, op) in std::mem::take(&mut self.pending) {
            if self.store.outcome(&id).is_none() && seen.insert(id.clone()) {
                self.order(id, op);
            }
        }
    }

    /// The new view's state and order, from its sequencer.
    pub fn on_install(
        &mut self,
        from: &str,
        view: u64,
        executed: u64,
        store: Store,
        entries: Vec<Entry>,
    ) {
        if view != self.view.number || self.sequencer().map(String::as_str) != Some(from) {
            return;
        }
        if !self.ready || executed >= self.executed {
            self.store = store;
            self.executed = executed;
            self.ready = true;
        }
        self.stable = self.stable.max(self.executed);
        // Entries of older views past the installed state are replaced by
        // the install's; ones this view numbered may have come first.
        self.log
            .retain(|i, e| *i <= self.executed || e.view == view);
        for e in entries {
            self.pending.remove(&e.id);
            let index = e.index;
            self.log.insert(index, e);
            self.out
                .push((from.to_string(), AMsg::OrderAck { view, index }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(n: u64, members: &[&str]) -> View {
        View {
            number: n,
            members: members.iter().map(|s| s.to_string()).collect(),
            primary: None,
        }
    }

    fn id(client: &str, seq: u64) -> RequestId {
        RequestId {
            client: client.into(),
            seq,
        }
    }

    fn put(v: &str) -> Op {
        Op::Put {
            key: "k".into(),
            value: v.into(),
        }
    }

    fn group(members: &[&str]) -> BTreeMap<String, Active> {
        members
            .iter()
            .map(|r| {
                let mut a = Active::new(r, true);
                a.on_view(view(1, members));
                (r.to_string(), a)
            })
            .collect()
    }

    /// Delivers replica messages (in a scrambled but deterministic order
    /// per round) until none are left; returns the replies.
    fn settle(g: &mut BTreeMap<String, Active>, reverse: bool) -> Vec<(RequestId, Answer)> {
        let mut replies = Vec::new();
        for _ in 0..1_000 {
            let mut flight = Vec::new();
            for (from, r) in g.iter_mut() {
                flight.extend(r.out.drain(..).map(|(to, m)| (from.clone(), to, m)));
            }
            if flight.is_empty() {
                break;
            }
            if reverse {
                flight.reverse();
            }
            for (from, to, m) in flight {
                let Some(r) = g.get_mut(&to) else {
                    if let AMsg::Reply { id, answer, .. } = m {
                        replies.push((id, answer));
                    }
                    continue;
                };
                match m {
                    AMsg::Request { id, op } => r.on_request(id, op),
                    AMsg::Order(e) => r.on_order(&from, e),
                    AMsg::OrderAck { view, index } => r.on_order_ack(&from, view, index),
                    AMsg::Commit { view, upto } => r.on_commit(&from, view, upto),
                    s @ AMsg::Sync { .. } => r.on_sync(&from, s),
                    AMsg::Install {
                        view,
                        executed,
                        store,
                        entries,
                    } => r.on_install(&from, view, executed, store, entries),
                    AMsg::Reply { .. } => {}
                }
            }
        }
        replies
    }

    fn send(g: &mut BTreeMap<String, Active>, id: RequestId, op: Op, reverse: bool) {
        let mut order: Vec<String> = g.keys().cloned().collect();
        if reverse {
            order.reverse();
        }
        for r in order {
            g.get_mut(&r)
                .expect("member")
                .on_request(id.clone(), op.clone());
        }
    }

    #[test]
    fn every_member_executes_one_order_whatever_the_arrival_order() {
        let mut g = group(&["r1", "r2", "r3"]);
        send(&mut g, id("c1", 1), put("a"), false);
        send(&mut g, id("c2", 1), put("b"), true);
        let replies = settle(&mut g, true);
        assert_eq!(replies.len(), 6, "every member replies to both");
        let stores: Vec<&Store> = g.values().map(|a| &a.store).collect();
        assert!(stores.windows(2).all(|w| w[0] == w[1]), "{stores:?}");
        let logs: Vec<&Vec<RequestId>> = g.values().map(|a| &a.applied).collect();
        assert!(logs.windows(2).all(|w| w[0] == w[1]), "{logs:?}");
    }

    #[test]
    fn arrival_order_diverges() {
        let mut g = group(&["r1", "r2", "r3"]);
        for a in g.values_mut() {
            a.bugs.arrival_order = true;
        }
        // r1 sees a then b; r3 sees b then a.
        g.get_mut("r1")
            .expect("r1")
            .on_request(id("c1", 1), put("a"));
        g.get_mut("r1")
            .expect("r1")
            .on_request(id("c2", 1), put("b"));
        g.get_mut("r3")
            .expect("r3")
            .on_request(id("c2", 1), put("b"));
        g.get_mut("r3")
            .expect("r3")
            .on_request(id("c1", 1), put("a"));
        assert_ne!(g["r1"].store, g["r3"].store);
    }

    #[test]
    fn the_sequencer_dies_and_nothing_executed_is_lost_or_reordered() {
        let mut g = group(&["r1", "r2", "r3"]);
        send(&mut g, id("c1", 1), put("a"), false);
        settle(&mut g, false);
        // r1 orders b; only r2 holds it before r1 dies (nothing stable).
        g.get_mut("r1")
            .expect("r1")
            .on_request(id("c1", 2), put("b"));
        let out: Vec<(NodeId, AMsg)> = g.get_mut("r1").expect("r1").out.drain(..).collect();
        for (to, m) in out {
            if let (true, AMsg::Order(e)) = (to == "r2", m) {
                g.get_mut("r2").expect("r2").on_order("r1", e);
            }
        }
        g.get_mut("r2").expect("r2").out.clear();
        // c2's request reached r3 only.
        g.get_mut("r3")
            .expect("r3")
            .on_request(id("c2", 1), put("c"));
        g.remove("r1");
        for a in g.values_mut() {
            a.on_view(view(2, &["r2", "r3"]));
        }
        settle(&mut g, true);
        assert_eq!(g["r2"].store, g["r3"].store);
        assert_eq!(g["r2"].applied, g["r3"].applied);
        assert_eq!(
            g["r2"].applied,
            vec![id("c1", 1), id("c1", 2), id("c2", 1)],
            "b keeps its place, c comes after"
        );
        // A rejoining member gets the state and the next requests.
        g.insert("r1".into(), Active::new("r1", false));
        for a in g.values_mut() {
            a.on_view(view(3, &["r2", "r3", "r1"]));
        }
        settle(&mut g, false);
        send(&mut g, id("c3", 1), put("d"), false);
        settle(&mut g, false);
        assert!(g["r1"].ready);
        assert_eq!(g["r1"].store, g["r2"].store);
    }
}
