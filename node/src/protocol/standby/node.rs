//! The standby bank's node: a server or a client (and witness) by its role
//! in the cluster file, behind the one [`Core`] contract the drivers run.

use super::client::Client;
use super::server::{Out, Server};
use super::{Msg, OpError, Params, Record, Reply, Request, StandbyState};
use crate::protocol::{Core, NodeId, ReqId, Time};
use rand::RngCore;
use std::sync::Arc;

pub enum StandbyNode {
    Server(Box<Server>),
    Client(Box<Client>),
}

impl StandbyNode {
    pub fn new(id: NodeId, params: Arc<Params>) -> Self {
        if params.is_server(&id) {
            StandbyNode::Server(Box::new(Server::new(id, params)))
        } else {
            StandbyNode::Client(Box::new(Client::new(id, params)))
        }
    }

    pub fn role(&self) -> &'static str {
        match self {
            StandbyNode::Server(_) => "server",
            StandbyNode::Client(_) => "client",
        }
    }

    pub fn server(&self) -> Option<&Server> {
        match self {
            StandbyNode::Server(s) => Some(s),
            StandbyNode::Client(_) => None,
        }
    }

    pub fn client(&self) -> Option<&Client> {
        match self {
            StandbyNode::Client(c) => Some(c),
            StandbyNode::Server(_) => None,
        }
    }

    pub fn assert_invariants(&self) {
        match self {
            StandbyNode::Server(s) => s.assert_invariants(),
            StandbyNode::Client(c) => c.assert_invariants(),
        }
    }
}

impl Core for StandbyNode {
    type Msg = Msg;
    type Request = Request;
    type Reply = Reply;
    type Record = Record;
    type State = StandbyState;

    fn id(&self) -> &NodeId {
        match self {
            StandbyNode::Server(s) => s.id(),
            StandbyNode::Client(c) => c.id(),
        }
    }

    fn on_message(
        &mut self,
        now: Time,
        from: &NodeId,
        msg: Msg,
        rng: &mut dyn RngCore,
        out: &mut Out,
    ) {
        match self {
            StandbyNode::Server(s) => match msg {
                Msg::Op { tag, id, request } => s.on_op(now, from, tag, id, request, out),
                Msg::Replicate {
                    epoch,
                    entries,
                    probe,
                } => s.on_replicate(now, from, (epoch, entries, probe), rng, out),
                Msg::ReplicateAck {
                    epoch,
                    applied,
                    probe,
                } => s.on_ack(now, from, epoch, applied, probe, out),
                Msg::NeedSnapshot { epoch, nonce } => {
                    s.on_need_snapshot(now, from, epoch, nonce, out)
                }
                Msg::Snapshot { epoch, bank, nonce } => {
                    s.on_snapshot(now, from, epoch, bank, nonce, out)
                }
                Msg::Fenced { epoch } => s.on_fenced(from, epoch, out),
                Msg::Promise { n, accepted } => s.on_promise(now, from, n, accepted, out),
                Msg::Accepted { epoch } => s.on_accepted(now, from, epoch, out),
                Msg::Nack {
                    n,
                    promised,
                    accepted,
                } => s.on_nack(now, from, n, (promised, accepted), rng, out),
                other => {
                    tracing::warn!(node = %s.id(), %from, kind = crate::protocol::MessageKind::kind(&other), "a server takes no such message; ignored")
                }
            },
            StandbyNode::Client(c) => match msg {
                Msg::OpReply { tag, result } => c.on_op_reply(now, from, tag, result, out),
                Msg::Prepare { n } => c.on_prepare(from, n, out),
                Msg::Accept { epoch } => c.on_accept(from, epoch, out),
                other => {
                    tracing::warn!(node = %c.id(), %from, kind = crate::protocol::MessageKind::kind(&other), "a client takes no such message; ignored")
                }
            },
        }
        if cfg!(debug_assertions) {
            self.assert_invariants();
        }
    }

    fn on_request(
        &mut self,
        now: Time,
        req: ReqId,
        request: Request,
        _rng: &mut dyn RngCore,
        out: &mut Out,
    ) {
        match self {
            StandbyNode::Server(_) => out.replies.push((
                req,
                Reply::Failed {
                    error: OpError::NotAClient,
                },
            )),
            StandbyNode::Client(c) => c.on_request(now, req, request, out),
        }
    }

    fn on_tick(&mut self, now: Time, rng: &mut dyn RngCore, out: &mut Out) {
        match self {
            StandbyNode::Server(s) => s.on_tick(now, rng, out),
            StandbyNode::Client(c) => c.on_tick(now, out),
        }
        if cfg!(debug_assertions) {
            self.assert_invariants();
        }
    }

    fn next_tick(&self) -> Option<Time> {
        match self {
            StandbyNode::Server(s) => s.next_tick(),
            StandbyNode::Client(c) => c.next_tick(),
        }
    }

    fn recover(&mut self, records: Vec<Record>) {
        match self {
            StandbyNode::Server(s) => s.recover(records),
            StandbyNode::Client(c) => c.recover(records),
        }
    }

    fn compact(&self) -> Vec<Record> {
        match self {
            StandbyNode::Server(s) => s.compact(),
            StandbyNode::Client(c) => c.compact(),
        }
    }

    fn state(&self) -> StandbyState {
        StandbyState::of(self)
    }
}
