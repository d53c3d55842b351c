//! A client of the replicated store (seed 002), sans IO, in either mode.
//! It numbers its requests (the number survives a restart: it starts from
//! its incarnation), learns views from the RM, and retries the same
//! request number until it has an answer: passive, at the view's primary
//! (a backup redirects); active, at every member, taking the first reply.
//! Every reply it takes is kept with the replica and view that sent it,
//! so the controller can check that no two replicas acknowledged in one
//! view (passive).

use super::store::{Answer, Op, RequestId};
use super::view::View;
use crate::protocol::{NodeId, ReqId, Time};
use std::collections::BTreeMap;

/// A request waiting for its answer.
#[derive(Clone, Debug)]
struct Waiting {
    req: ReqId,
    op: Op,
    next_send: Time,
    deadline: Time,
}

/// How a client operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Done {
    Answered {
        id: RequestId,
        answer: Answer,
        replica: NodeId,
        view: u64,
    },
    /// The deadline passed: it may or may not have been applied.
    Unknown { id: RequestId },
}

/// A message the client sends: a request to a replica.
pub type Send = (NodeId, RequestId, Op);

#[derive(Clone, Debug)]
pub struct Client {
    me: NodeId,
    active: bool,
    pub view: View,
    seq: u64,
    retransmit: Time,
    deadline: Time,
    waiting: BTreeMap<u64, Waiting>,
    pub out: Vec<Send>,
    pub done: Vec<(ReqId, Done)>,
    pub retries: u64,
}

impl Client {
    /// `incarnation`: one more at each start, so request numbers are
    /// never reused (they are `incarnation << 32` and up).
    pub fn new(me: &str, active: bool, incarnation: u64, retransmit: Time, deadline: Time) -> Self {
        Client {
            me: me.to_string(),
            active,
            view: View::default(),
            seq: incarnation << 32,
            retransmit: retransmit.max(1),
            deadline,
            waiting: BTreeMap::new(),
            out: Vec::new(),
            done: Vec::new(),
            retries: 0,
        }
    }

    pub fn pending(&self) -> usize {
        self.waiting.len()
    }

    fn targets(&self) -> Vec<NodeId> {
        if self.active {
            self.view.members.clone()
        } else {
            self.view.primary.iter().cloned().collect()
        }
    }

    fn send(&mut self, seq: u64) {
        let Some(w) = self.waiting.get(&seq) else {
            return;
        };
        let id = RequestId {
            client: self.me.clone(),
            seq,
        };
        let op = w.op.clone();
        for to in self.targets() {
            self.out.push((to, id.clone(), op.clone()));
        }
    }

    pub fn submit(&mut self, now: Time, req: ReqId, op: Op) {
        self.seq += 1;
        let seq = self.seq;
        self.waiting.insert(
            seq,
            Waiting {
                req,
                op,
                next_send: now + self.retransmit,
                deadline: now + self.deadline,
            },
        );
        self.send(seq);
    }

    /// A view from the RM: requests go to its members at once.
    pub fn on_view(&mut self, v: View) -> bool {
        if v.number <= self.view.number {
            return false;
        }
        self.view = v;
        let seqs: Vec<u64> = self.waiting.keys().copied().collect();
        for s in seqs {
            self.send(s);
        }
        true
    }

    pub fn on_reply(&mut self, from: &str, id: RequestId, view: u64, answer: Answer) {
        if id.client != self.me {
            return;
        }
        let Some(w) = self.waiting.remove(&id.seq) else {
            return; // answered already (another member's reply)
        };
        self.done.push((
            w.req,
            Done::Answered {
                id,
                answer,
                replica: from.to_string(),
                view,
            },
        ));
    }

    /// A backup's redirect: the primary it names, if its view is newer.
    pub fn on_redirect(&mut self, view: u64, primary: Option<NodeId>) {
        if view > self.view.number {
            // The RM's view will come; meanwhile try the one named.
            self.view.primary = primary;
        }
    }

    pub fn next_tick(&self) -> Option<Time> {
        self.waiting
            .values()
            .map(|w| w.next_send.min(w.deadline))
            .min()
    }

    pub fn on_tick(&mut self, now: Time) {
        let late: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        for s in late {
            if let Some(w) = self.waiting.remove(&s) {
                self.done.push((
                    w.req,
                    Done::Unknown {
                        id: RequestId {
                            client: self.me.clone(),
                            seq: s,
                        },
                    },
                ));
            }
        }
        let due: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.next_send <= now)
            .map(|(s, _)| *s)
            .collect();
        for s in due {
            if let Some(w) = self.waiting.get_mut(&s) {
                w.next_send = now + self.retransmit;
            }
            self.retries += 1;
            self.send(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_retries_the_same_number_and_takes_the_first_reply() {
        let mut c = Client::new("c1", true, 1, 100, 1_000);
        c.on_view(View {
            number: 1,
            members: vec!["r1".into(), "r2".into()],
            primary: None,
        });
        c.submit(0, 7, Op::Get { key: "k".into() });
        assert_eq!(c.out.len(), 2, "active: to every member");
        let id = c.out[0].1.clone();
        assert_eq!(id.seq, (1 << 32) + 1);
        c.out.clear();
        c.on_tick(100);
        assert_eq!(c.out.len(), 2);
        assert!(c.out.iter().all(|(_, i, _)| *i == id), "the same number");
        c.on_reply("r2", id.clone(), 1, Answer::Register(None));
        c.on_reply("r1", id, 1, Answer::Register(None));
        assert_eq!(c.done.len(), 1, "the first reply only");
        // Passive: the primary only; a deadline answers unknown.
        let mut p = Client::new("c2", false, 0, 100, 300);
        p.on_view(View {
            number: 4,
            members: vec!["r1".into(), "r2".into()],
            primary: Some("r2".into()),
        });
        p.submit(0, 1, Op::Get { key: "k".into() });
        assert_eq!(p.out[0].0, "r2");
        p.on_tick(300);
        assert!(matches!(p.done[..], [(1, Done::Unknown { .. })]));
    }
}
