//! A replica in passive mode (primary-backup, seed 002), sans IO. The
//! view's primary logs each request, forwards it stamped with its view to
//! every backup, and executes and replies only once every backup of its
//! view has acknowledged; a backup acknowledges only its own view's
//! primary, so a primary the RM has replaced cannot acknowledge anything
//! (fencing: one primary per view). The primary checkpoints its state and
//! outcome table to the backups; a promoted backup replays its log after
//! its last checkpoint through the outcome table (nothing applied twice),
//! then gives every backup its state.

use super::store::{push_recent, Answer, Op, RequestId, Store};
use super::view::View;
use crate::protocol::{NodeId, Time};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Messages between clients and replicas (both modes use the first two).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PMsg {
    /// Client to replica.
    Request { id: RequestId, op: Op },
    /// Replica to client: the outcome, executed in `view` by the sender.
    Reply {
        id: RequestId,
        view: u64,
        answer: Answer,
    },
    /// Replica to client: not the primary of `view` (or not ready).
    Redirect {
        id: RequestId,
        view: u64,
        primary: Option<NodeId>,
    },
    /// Primary to backup: log entry `index` of `view`.
    Forward {
        view: u64,
        index: u64,
        id: RequestId,
        op: Op,
    },
    /// Backup to primary: entry `index` of `view` is logged.
    Ack { view: u64, index: u64 },
    /// Backup to a primary of another view: my view is `view`.
    Refuse { view: u64 },
    /// Primary to backups: the state after entry `index`, in `view`.
    Checkpoint { view: u64, index: u64, store: Store },
}

/// Deliberately broken behaviours of passive mode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassiveBugs {
    /// A promoted backup starts without the outcome table (the seed had
    /// no deduplication at the primary): a client's retry of a request the
    /// old primary executed is applied again.
    pub forget_outcomes_on_promotion: bool,
    /// Backups acknowledge a forward of any view and any sender: a
    /// replaced primary that missed the new view still gathers its
    /// acknowledgements and answers its clients from a stale store.
    pub unfenced_promotion: bool,
}

#[derive(Clone, Debug)]
pub struct Passive {
    me: NodeId,
    pub view: View,
    /// Has the state (a restarted replica waits for a checkpoint).
    pub ready: bool,
    pub store: Store,
    /// The last entry applied to `store`.
    pub index: u64,
    /// Entries after `index`: (request, op, the view that numbered it).
    log: BTreeMap<u64, (RequestId, Op, u64)>,
    /// Primary: backups yet to acknowledge each entry, and when it was
    /// last sent to them.
    waiting: BTreeMap<u64, (BTreeSet<NodeId>, Time)>,
    /// Primary: the last index it numbered.
    next: u64,
    checkpoint_every: Time,
    next_checkpoint: Time,
    /// An entry unacknowledged this long is sent again.
    retransmit: Time,
    /// Forwards and checkpoints of a view this replica has not heard of
    /// yet (the RM's view and the primary's messages come on different
    /// links): handled once the view comes.
    early: Vec<(NodeId, PMsg)>,
    pub bugs: PassiveBugs,
    pub out: Vec<(NodeId, PMsg)>,
    /// Requests this replica applied (not answers repeated from the
    /// outcome table), in order: the exactly-once check reads them.
    /// The newest only ([`super::store::push_recent`]).
    pub applied: Vec<RequestId>,
    applied_dropped: u64,
    /// Requests executed again on promotion (replayed from the log).
    pub replayed: u64,
    /// Requests answered from the outcome table instead of applied again
    /// (a client's retry, a replay of what a checkpoint had).
    pub duplicates: u64,
    /// When this replica last took (backup) or sent (primary) a
    /// checkpoint, µs on its clock.
    pub last_checkpoint: Option<Time>,
    /// The time of the event being handled (the node sets it before each
    /// handler), µs on its clock.
    pub clock: Time,
}

impl Passive {
    /// `ready`: starts with the (empty) state; a restarted replica is not
    /// ready until a checkpoint comes. `checkpoint_every` and `retransmit`
    /// in µs.
    pub fn new(me: &str, ready: bool, checkpoint_every: Time, retransmit: Time) -> Self {
        Passive {
            me: me.to_string(),
            view: View::default(),
            ready,
            store: Store::default(),
            index: 0,
            log: BTreeMap::new(),
            waiting: BTreeMap::new(),
            next: 0,
            checkpoint_every,
            next_checkpoint: 0,
            retransmit: retransmit.max(1),
            early: Vec::new(),
            bugs: PassiveBugs::default(),
            out: Vec::new(),
            applied: Vec::new(),
            applied_dropped: 0,
            replayed: 0,
            duplicates: 0,
            last_checkpoint: None,
            clock: 0,
        }
    }

    pub fn is_primary(&self) -> bool {
        self.view.primary.as_deref() == Some(self.me.as_str())
    }

    fn backups(&self) -> Vec<NodeId> {
        self.view
            .members
            .iter()
            .filter(|m| **m != self.me)
            .cloned()
            .collect()
    }

    /// Entries logged and not yet applied.
    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    /// The next checkpoint, or sooner the first waiting entry's resend
    /// (later entries may wait up to twice `retransmit`: one timer only).
    pub fn next_tick(&self) -> Option<Time> {
        if !self.is_primary() {
            return None;
        }
        let resend = self
            .waiting
            .first_key_value()
            .map(|(_, (_, sent))| sent + self.retransmit);
        Some(resend.map_or(self.next_checkpoint, |r| r.min(self.next_checkpoint)))
    }

    fn apply(&mut self, id: &RequestId, op: &Op, dedup: bool) -> Answer {
        let fresh = self.store.outcome(id).is_none() || !dedup;
        let a = self.store.apply(id, op, dedup);
        if fresh {
            push_recent(&mut self.applied, &mut self.applied_dropped, id.clone());
        } else {
            self.duplicates += 1;
        }
        a
    }

    fn checkpoint_to_backups(&mut self) {
        for b in self.backups() {
            self.out.push((
                b,
                PMsg::Checkpoint {
                    view: self.view.number,
                    index: self.index,
                    store: self.store.clone(),
                },
            ));
        }
    }

    /// A new view from the RM (an older or equal one changes nothing).
    pub fn on_view(&mut self, v: View) {
        if v.number <= self.view.number {
            return;
        }
        let was_primary = self.is_primary();
        self.view = v;
        self.waiting.clear();
        if !self.is_primary() {
            let number = self.view.number;
            for (from, m) in std::mem::take(&mut self.early) {
                match m {
                    PMsg::Forward {
                        view,
                        index,
                        id,
                        op,
                    } if view >= number => self.on_forward(&from, view, index, id, op),
                    PMsg::Checkpoint { view, index, store } if view >= number => {
                        self.on_checkpoint(&from, view, index, store)
                    }
                    _ => {}
                }
            }
        }
        if !self.is_primary() || !self.ready {
            return;
        }
        if !was_primary {
            // Promoted: replay the log after the last checkpoint, through
            // the outcome table, so nothing is applied twice.
            let entries: Vec<(u64, RequestId, Op)> = self
                .log
                .range(self.index + 1..)
                .map(|(i, (id, op, _))| (*i, id.clone(), op.clone()))
                .collect();
            if self.bugs.forget_outcomes_on_promotion {
                self.store.outcomes.clear();
            }
            for (i, id, op) in entries {
                self.apply(&id, &op, true);
                self.replayed += 1;
                self.index = i;
            }
            self.log.clear();
            self.next = self.index;
        }
        // Every backup gets the state (a new one needs it; the others drop
        // what the old primary numbered and nobody acknowledged), then the
        // entries still waiting, stamped with this view.
        self.checkpoint_to_backups();
        let pending: Vec<(u64, RequestId, Op)> = self
            .log
            .iter()
            .map(|(i, (id, op, _))| (*i, id.clone(), op.clone()))
            .collect();
        for (i, id, op) in pending {
            self.forward(i, id, op);
        }
        self.execute_ready();
    }

    fn forward(&mut self, index: u64, id: RequestId, op: Op) {
        let backups = self.backups();
        self.log
            .insert(index, (id.clone(), op.clone(), self.view.number));
        self.waiting
            .insert(index, (backups.iter().cloned().collect(), self.clock));
        for b in backups {
            self.out.push((
                b,
                PMsg::Forward {
                    view: self.view.number,
                    index,
                    id: id.clone(),
                    op: op.clone(),
                },
            ));
        }
    }

    /// Sends every entry unacknowledged for `retransmit` again to the
    /// backups that have not acknowledged it: a forward lost with a
    /// connection (the first message to a restarted peer goes into the
    /// old, dead connection), or dropped by a backup that had no state
    /// yet, would otherwise hold the primary for ever. A backup logs and
    /// acknowledges a repeated entry as it did the first.
    fn forward_again(&mut self, now: Time) {
        let view = self.view.number;
        let mut again = Vec::new();
        for (i, (acks, sent)) in self.waiting.iter_mut() {
            if *sent + self.retransmit > now {
                continue;
            }
            let Some((id, op, _)) = self.log.get(i) else {
                continue;
            };
            *sent = now;
            for b in acks.iter() {
                again.push((
                    b.clone(),
                    PMsg::Forward {
                        view,
                        index: *i,
                        id: id.clone(),
                        op: op.clone(),
                    },
                ));
            }
        }
        self.out.extend(again);
    }

    /// A client's request.
    pub fn on_request(&mut self, from: &str, id: RequestId, op: Op) {
        if !self.is_primary() || !self.ready {
            self.out.push((
                from.to_string(),
                PMsg::Redirect {
                    id,
                    view: self.view.number,
                    primary: self.view.primary.clone().filter(|p| *p != self.me),
                },
            ));
            return;
        }
        if let Some(a) = self.store.outcome(&id) {
            let answer = a.clone();
            self.duplicates += 1;
            self.reply(id, answer);
            return;
        }
        if self.log.values().any(|(i, _, _)| *i == id) {
            return; // numbered already; its reply comes when it executes
        }
        self.next += 1;
        let index = self.next;
        self.forward(index, id, op);
        self.execute_ready();
    }

    fn reply(&mut self, id: RequestId, answer: Answer) {
        self.out.push((
            id.client.clone(),
            PMsg::Reply {
                id,
                view: self.view.number,
                answer,
            },
        ));
    }

    /// Executes, in order, the entries every backup has acknowledged.
    fn execute_ready(&mut self) {
        // Bounded by the log.
        while let Some((&i, (acks, _))) = self.waiting.first_key_value() {
            if !acks.is_empty() {
                return;
            }
            assert_eq!(i, self.index + 1, "{} executes out of order", self.me);
            self.waiting.remove(&i);
            let Some((id, op, _)) = self.log.remove(&i) else {
                continue;
            };
            let answer = self.apply(&id, &op, true);
            self.index = i;
            self.reply(id, answer);
        }
    }

    /// A backup's acknowledgement.
    pub fn on_ack(&mut self, from: &str, view: u64, index: u64) {
        if view != self.view.number || !self.is_primary() {
            return;
        }
        if let Some((w, _)) = self.waiting.get_mut(&index) {
            w.remove(from);
        }
        self.execute_ready();
    }

    /// A primary's forward.
    pub fn on_forward(&mut self, from: &str, view: u64, index: u64, id: RequestId, op: Op) {
        if view > self.view.number {
            self.hold(
                from,
                PMsg::Forward {
                    view,
                    index,
                    id,
                    op,
                },
            );
            return;
        }
        let from_primary = self.view.primary.as_deref() == Some(from);
        let fenced = view == self.view.number && from_primary;
        if !fenced && self.bugs.unfenced_promotion && self.ready {
            // The planted bug: a replaced primary's entry is acknowledged
            // (not logged: this replica follows its own view's primary).
            self.out.push((from.to_string(), PMsg::Ack { view, index }));
            return;
        }
        if !fenced || !self.ready {
            if view != self.view.number {
                self.out.push((
                    from.to_string(),
                    PMsg::Refuse {
                        view: self.view.number,
                    },
                ));
            }
            return;
        }
        if index > self.index {
            self.log.insert(index, (id, op, view));
        }
        self.out.push((from.to_string(), PMsg::Ack { view, index }));
    }

    /// A primary's checkpoint (or state transfer).
    fn hold(&mut self, from: &str, m: PMsg) {
        // Bounded: what one primary sends in one view before the RM's
        // view arrives here.
        if self.early.len() < 100_000 {
            self.early.push((from.to_string(), m));
        }
    }

    pub fn on_checkpoint(&mut self, from: &str, view: u64, index: u64, store: Store) {
        if view > self.view.number {
            self.hold(from, PMsg::Checkpoint { view, index, store });
            return;
        }
        if view != self.view.number || self.view.primary.as_deref() != Some(from) {
            return;
        }
        // Entries numbered by an older view that this view's primary did
        // not carry over were never acknowledged: dropped.
        self.log.retain(|i, (_, _, v)| *i > index && *v == view);
        if index >= self.index || !self.ready {
            self.store = store;
            self.index = index;
            self.ready = true;
            self.last_checkpoint = Some(self.clock);
        }
    }

    /// Periodic checkpoints at the primary.
    pub fn on_tick(&mut self, now: Time) {
        if !self.is_primary() || !self.ready {
            return;
        }
        if now >= self.next_checkpoint {
            self.checkpoint_to_backups();
            self.last_checkpoint = Some(now);
            self.next_checkpoint = now + self.checkpoint_every.max(1);
        }
        self.forward_again(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(n: u64, members: &[&str], primary: &str) -> View {
        View {
            number: n,
            members: members.iter().map(|s| s.to_string()).collect(),
            primary: Some(primary.into()),
        }
    }

    fn id(seq: u64) -> RequestId {
        RequestId {
            client: "c1".into(),
            seq,
        }
    }

    fn add(n: i64) -> Op {
        Op::Add { key: "x".into(), n }
    }

    fn group() -> BTreeMap<String, Passive> {
        ["r1", "r2", "r3"]
            .iter()
            .map(|r| {
                let mut p = Passive::new(r, true, 100_000, 50_000);
                p.on_view(view(1, &["r1", "r2", "r3"], "r1"));
                (r.to_string(), p)
            })
            .collect()
    }

    /// Delivers replica-to-replica messages until none are left; returns
    /// what went to clients (bounded by the messages one request makes).
    fn settle(g: &mut BTreeMap<String, Passive>) -> Vec<PMsg> {
        let mut to_clients = Vec::new();
        for _ in 0..1_000 {
            let mut flight = Vec::new();
            for (from, r) in g.iter_mut() {
                flight.extend(r.out.drain(..).map(|(to, m)| (from.clone(), to, m)));
            }
            if flight.is_empty() {
                break;
            }
            for (from, to, m) in flight {
                let Some(r) = g.get_mut(&to) else {
                    to_clients.push(m);
                    continue;
                };
                match m {
                    PMsg::Forward {
                        view,
                        index,
                        id,
                        op,
                    } => r.on_forward(&from, view, index, id, op),
                    PMsg::Ack { view, index } => r.on_ack(&from, view, index),
                    PMsg::Checkpoint { view, index, store } => {
                        r.on_checkpoint(&from, view, index, store)
                    }
                    PMsg::Refuse { .. } => {}
                    other => to_clients.push(other),
                }
            }
        }
        to_clients
    }

    #[test]
    fn the_primary_replies_after_every_backup_logged() {
        let mut g = group();
        g.get_mut("r1").expect("r1").on_request("c1", id(1), add(5));
        // Nothing to the client until the acks are in.
        assert!(g["r1"].out.iter().all(|(to, _)| to != "c1"));
        let replies = settle(&mut g);
        assert_eq!(
            replies,
            vec![PMsg::Reply {
                id: id(1),
                view: 1,
                answer: Answer::Counter(5)
            }]
        );
        assert_eq!(g["r2"].log_len(), 1, "backups log, do not apply");
        assert_eq!(g["r2"].store.counters.get("x"), None);
    }

    #[test]
    fn a_promoted_backup_replays_its_log_once_and_a_retry_gets_the_first_outcome() {
        let mut g = group();
        g.get_mut("r1").expect("r1").on_request("c1", id(1), add(5));
        settle(&mut g);
        // r1 dies; r2 is promoted and replays (x = 5), r3 gets the state.
        g.remove("r1");
        for r in g.values_mut() {
            r.on_view(view(2, &["r2", "r3"], "r2"));
        }
        settle(&mut g);
        assert_eq!(g["r2"].store.counters["x"], 5);
        assert_eq!(g["r3"].store.counters["x"], 5);
        // The client did not see the reply and retries at r2: the first
        // outcome, not a second add.
        g.get_mut("r2").expect("r2").on_request("c1", id(1), add(5));
        let replies = settle(&mut g);
        assert_eq!(
            replies,
            vec![PMsg::Reply {
                id: id(1),
                view: 2,
                answer: Answer::Counter(5)
            }]
        );
        assert_eq!(g["r2"].applied, vec![id(1)]);
    }

    #[test]
    fn without_dedup_on_failover_a_retry_applies_twice() {
        let mut g = group();
        for r in g.values_mut() {
            r.bugs.forget_outcomes_on_promotion = true;
        }
        g.get_mut("r1").expect("r1").on_request("c1", id(1), add(5));
        settle(&mut g);
        // A periodic checkpoint carries the add (and its outcome) to r2.
        g.get_mut("r1").expect("r1").on_tick(1);
        settle(&mut g);
        assert_eq!(g["r2"].store.counters["x"], 5);
        g.remove("r1");
        for r in g.values_mut() {
            r.on_view(view(2, &["r2", "r3"], "r2"));
        }
        settle(&mut g);
        g.get_mut("r2").expect("r2").on_request("c1", id(1), add(5));
        let replies = settle(&mut g);
        assert_eq!(
            replies,
            vec![PMsg::Reply {
                id: id(1),
                view: 2,
                answer: Answer::Counter(10)
            }],
            "applied twice"
        );
        assert_eq!(g["r2"].applied, vec![id(1)], "r2 applied it once itself");
    }

    #[test]
    fn a_lost_forward_goes_again_after_the_retransmit_period() {
        let mut g = group();
        g.get_mut("r1").expect("r1").on_request("c1", id(1), add(5));
        // The forward to r3 is lost (its connection reset): r1 waits.
        g.get_mut("r1")
            .expect("r1")
            .out
            .retain(|(to, _)| to != "r3");
        assert!(settle(&mut g).is_empty(), "r1 replied without r3");
        g.get_mut("r1").expect("r1").on_tick(1_000_000);
        assert_eq!(
            settle(&mut g),
            vec![PMsg::Reply {
                id: id(1),
                view: 1,
                answer: Answer::Counter(5)
            }]
        );
        assert_eq!(g["r3"].log_len(), 1, "r3 logged the entry sent again");
        assert_eq!(g["r1"].applied, vec![id(1)], "applied once");
    }

    #[test]
    fn a_replaced_primary_cannot_acknowledge() {
        let mut g = group();
        // r2 and r3 move to view 2 with r2 primary; r1 (paused) did not.
        for r in ["r2", "r3"] {
            g.get_mut(r)
                .expect("replica")
                .on_view(view(2, &["r2", "r3", "r1"], "r2"));
        }
        g.get_mut("r1").expect("r1").on_request("c1", id(1), add(5));
        let replies = settle(&mut g);
        assert!(replies.is_empty(), "r1 acknowledged: {replies:?}");
        assert_eq!(g["r1"].store.counters.get("x"), None);
        // With the planted bug the backups acknowledge it: r1 replies in
        // view 1 while r2 is primary of view 2.
        let mut g = group();
        for r in ["r2", "r3"] {
            let p = g.get_mut(r).expect("replica");
            p.bugs.unfenced_promotion = true;
            p.on_view(view(2, &["r2", "r3", "r1"], "r2"));
        }
        g.get_mut("r1").expect("r1").on_request("c1", id(1), add(5));
        assert_eq!(settle(&mut g).len(), 1);
    }

    #[test]
    fn a_restarted_replica_waits_for_the_state_and_a_backup_redirects() {
        let mut g = group();
        g.get_mut("r1").expect("r1").on_request("c1", id(1), add(5));
        settle(&mut g);
        let mut r3 = Passive::new("r3", false, 100_000, 50_000);
        r3.on_view(view(3, &["r1", "r2", "r3"], "r1"));
        g.insert("r3".into(), r3);
        g.get_mut("r1")
            .expect("r1")
            .on_view(view(3, &["r1", "r2", "r3"], "r1"));
        g.get_mut("r2")
            .expect("r2")
            .on_view(view(3, &["r1", "r2", "r3"], "r1"));
        settle(&mut g);
        assert!(g["r3"].ready);
        assert_eq!(g["r3"].store.counters["x"], 5);
        g.get_mut("r3").expect("r3").on_request("c1", id(2), add(1));
        let out = settle(&mut g);
        assert!(matches!(&out[..], [PMsg::Redirect { primary: Some(p), .. }] if p == "r1"));
    }
}
