//! A bank client node (the seed's "interface"): it numbers each request,
//! finds the primary, fails over on silence or a redirect while keeping the
//! request id, and gives up with an unknown outcome at the deadline. Every
//! client node is also a witness: an acceptor of the Paxos rounds that
//! choose epochs.

use super::{Epoch, Msg, OpError, OpResult, Params, Record, Reply, Request, RequestId, MAX_AMOUNT};
use crate::protocol::{NodeId, ReqId, Time};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Request numbers are reserved durably in blocks of this many, so a
/// restarted client never reuses one without a record per request.
const SEQ_BLOCK: u64 = 1024;

#[derive(Clone, Debug)]
struct PendingOp {
    req: ReqId,
    id: RequestId,
    request: Request,
    target: NodeId,
    /// At the next retry, try the other server first (the last one was silent).
    flip: bool,
    retry_at: Time,
    deadline: Time,
}

/// The acceptor of epoch rounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witness {
    pub promised: u64,
    pub accepted: Epoch,
}

pub struct Client {
    id: NodeId,
    params: Arc<Params>,
    seq: u64,
    reserved: u64,
    ops: BTreeMap<u64, PendingOp>,
    /// The server believed to be primary.
    primary: NodeId,
    pub(super) witness: Witness,
    /// Servers' answers that redirected or delayed an operation.
    pub(super) redirects: u64,
}

type Out = super::server::Out;

impl Client {
    pub fn new(id: NodeId, params: Arc<Params>) -> Self {
        Client {
            primary: params.servers[0].clone(),
            witness: Witness {
                promised: 0,
                accepted: params.initial_epoch(),
            },
            id,
            params,
            seq: 0,
            reserved: 0,
            ops: BTreeMap::new(),
            redirects: 0,
        }
    }

    pub fn id(&self) -> &NodeId {
        &self.id
    }

    pub fn pending(&self) -> usize {
        self.ops.len()
    }

    pub fn recover(&mut self, records: Vec<Record>) {
        for r in records {
            match r {
                Record::SeqReserved(n) => self.reserved = self.reserved.max(n),
                Record::Promised(n) => self.witness.promised = self.witness.promised.max(n),
                Record::Accepted(e) => {
                    self.witness.promised = self.witness.promised.max(e.n);
                    self.witness.accepted = e;
                }
                other => tracing::error!(node = %self.id, ?other, "not a client record; skipped"),
            }
        }
        // Numbers up to the reservation may have been used before the crash.
        self.seq = self.reserved;
    }

    pub fn compact(&self) -> Vec<Record> {
        vec![
            Record::SeqReserved(self.reserved),
            Record::Promised(self.witness.promised),
            Record::Accepted(self.witness.accepted.clone()),
        ]
    }

    pub fn on_request(&mut self, now: Time, req: ReqId, request: Request, out: &mut Out) {
        let amount = match request {
            Request::Lookup { .. } => 0,
            Request::Withdraw { amount, .. } | Request::Deposit { amount, .. } => amount,
        };
        if amount > MAX_AMOUNT {
            let error = OpError::AmountTooLarge { max: MAX_AMOUNT };
            return out.replies.push((req, Reply::Failed { error }));
        }
        self.seq += 1;
        if self.seq > self.reserved {
            self.reserved = self.seq + SEQ_BLOCK - 1;
            out.records.push(Record::SeqReserved(self.reserved));
        }
        let id = RequestId {
            client: self.id.clone(),
            seq: self.seq,
        };
        let op = PendingOp {
            req,
            id,
            request,
            target: self.primary.clone(),
            flip: true,
            retry_at: now + self.params.retransmit_us,
            deadline: now + self.params.op_deadline_us,
        };
        Self::send_op(self.seq, &op, out);
        self.ops.insert(self.seq, op);
    }

    fn send_op(tag: u64, op: &PendingOp, out: &mut Out) {
        let msg = Msg::Op {
            tag,
            id: op.id.clone(),
            request: op.request.clone(),
        };
        out.sends.push((op.target.clone(), msg));
    }

    pub fn on_op_reply(
        &mut self,
        now: Time,
        from: &NodeId,
        tag: u64,
        result: OpResult,
        out: &mut Out,
    ) {
        if !self.params.is_server(from) {
            return;
        }
        let Some(op) = self.ops.get_mut(&tag) else {
            // Already answered (a duplicate, or a late answer of a retry).
            return;
        };
        let other = self.params.peer_of(from).clone();
        match result {
            OpResult::Done {
                answer,
                epoch,
                action_id,
            } => {
                let reply = Reply::Done {
                    id: op.id.clone(),
                    answer,
                    server: from.clone(),
                    epoch,
                    action_id,
                };
                out.replies.push((op.req, reply));
                self.ops.remove(&tag);
                self.primary = from.clone();
            }
            OpResult::Expired => {
                let reply = Reply::Unknown {
                    id: op.id.clone(),
                    error: OpError::Expired,
                };
                out.replies.push((op.req, reply));
                self.ops.remove(&tag);
            }
            OpResult::NotPrimary { primary: Some(p) }
                if p != *from && self.params.is_server(&p) =>
            {
                self.redirects += 1;
                op.target = p.clone();
                op.flip = true;
                op.retry_at = now + self.params.retransmit_us;
                Self::send_op(tag, op, out);
                self.primary = p;
            }
            OpResult::NotPrimary { .. } => {
                self.redirects += 1;
                op.target = other;
                op.flip = false;
                op.retry_at = now + self.params.retransmit_us / 4;
            }
            OpResult::Busy => {
                self.redirects += 1;
                op.flip = false;
                op.retry_at = now + self.params.retransmit_us / 2;
            }
        }
    }

    pub fn on_tick(&mut self, now: Time, out: &mut Out) {
        let expired: Vec<u64> = self
            .ops
            .iter()
            .filter(|(_, op)| now >= op.deadline)
            .map(|(t, _)| *t)
            .collect();
        for tag in expired {
            if let Some(op) = self.ops.remove(&tag) {
                let reply = Reply::Unknown {
                    id: op.id,
                    error: OpError::Deadline,
                };
                out.replies.push((op.req, reply));
            }
        }
        let retransmit = self.params.retransmit_us;
        for (tag, op) in self.ops.iter_mut().filter(|(_, op)| now >= op.retry_at) {
            if op.flip {
                op.target = self.params.peer_of(&op.target).clone();
            }
            op.flip = true;
            op.retry_at = now + retransmit;
            Self::send_op(*tag, op, out);
        }
    }

    pub fn next_tick(&self) -> Option<Time> {
        self.ops
            .values()
            .map(|op| op.retry_at.min(op.deadline))
            .min()
    }

    // ----- witness ------------------------------------------------------------

    /// Whether round number `n` may come from server `from`: server 0
    /// proposes even numbers and server 1 odd ones, so a number names one
    /// proposer (and, with `Record::Proposed`, one proposal).
    fn proposes(&self, from: &NodeId, n: u64) -> bool {
        self.params
            .servers
            .iter()
            .position(|s| s == from)
            .is_some_and(|i| n % 2 == i as u64)
    }

    pub fn on_prepare(&mut self, from: &NodeId, n: u64, out: &mut Out) {
        if !self.proposes(from, n) {
            tracing::warn!(node = %self.id, %from, n, "a round number the sender may not propose; ignored");
            return;
        }
        let w = &mut self.witness;
        // A repeated Prepare of the number promised gets the promise again:
        // numbers are unique per proposal, so it is the same proposer.
        let msg = if n > w.promised || (n == w.promised && n > 0) {
            if n > w.promised {
                w.promised = n;
                out.records.push(Record::Promised(n));
            }
            Msg::Promise {
                n,
                accepted: w.accepted.clone(),
            }
        } else {
            Msg::Nack {
                n,
                promised: w.promised,
                accepted: w.accepted.clone(),
            }
        };
        out.sends.push((from.clone(), msg));
    }

    pub fn on_accept(&mut self, from: &NodeId, epoch: Epoch, out: &mut Out) {
        if !self.proposes(from, epoch.n) || epoch.primary != *from {
            return;
        }
        let w = &mut self.witness;
        let n = epoch.n;
        let msg = if n >= w.promised {
            w.promised = n;
            w.accepted = epoch.clone();
            out.records.push(Record::Accepted(epoch.clone()));
            Msg::Accepted { epoch }
        } else {
            Msg::Nack {
                n,
                promised: w.promised,
                accepted: w.accepted.clone(),
            }
        };
        out.sends.push((from.clone(), msg));
    }

    pub fn assert_invariants(&self) {
        assert!(
            self.seq <= self.reserved,
            "request numbers are reserved before use"
        );
        assert!(
            self.witness.accepted.n <= self.witness.promised || self.witness.accepted.n == 0,
            "a witness accepts only what it promised"
        );
    }
}
