//! A node of the replication system behind the one [`Core`] contract the
//! drivers run: a replica (passive or active), an LFD, the GFD, the RM or
//! a client, by its role in the cluster file; the wire messages of all of
//! them, the requests and replies `/ops` speaks, and the records each role
//! makes durable (the GFD's membership number and the RM's view number,
//! never reused; a replica's first start, so a restarted one waits for the
//! state; a client's incarnation, so request numbers are never reused).

use super::active::{AMsg, Active};
use super::client::{Client, Done};
use super::detect::{Gfd, Lfd, LfdOut, Membership};
use super::passive::{PMsg, Passive};
use super::store::{Answer, Op, RequestId};
use super::view::{Rm, View};
use super::Params;
use crate::protocol::{Core, MessageKind, NodeId, Outbox, ReqId, Time};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A wire message of the replication system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// LFD to replica, and back.
    Heartbeat {
        seq: u64,
    },
    Echo {
        seq: u64,
    },
    /// LFD to GFD.
    Report {
        replica: NodeId,
        alive: bool,
        seq: u64,
    },
    /// GFD to RM.
    Membership {
        number: u64,
        members: Vec<NodeId>,
    },
    /// RM to replicas and clients, and their acknowledgement.
    View(View),
    ViewAck {
        number: u64,
    },
    /// Passive mode's client and replica messages.
    P(PMsg),
    /// Active mode's.
    A(AMsg),
}

impl MessageKind for Msg {
    const KINDS: &'static [&'static str] = &[
        "heartbeat",
        "echo",
        "report",
        "membership",
        "view",
        "view_ack",
        "request",
        "reply",
        "redirect",
        "forward",
        "ack",
        "refuse",
        "checkpoint",
        "order",
        "order_ack",
        "commit",
        "sync",
        "install",
    ];
    fn kind(&self) -> &'static str {
        match self {
            Msg::Heartbeat { .. } => "heartbeat",
            Msg::Echo { .. } => "echo",
            Msg::Report { .. } => "report",
            Msg::Membership { .. } => "membership",
            Msg::View(_) => "view",
            Msg::ViewAck { .. } => "view_ack",
            Msg::P(PMsg::Request { .. }) | Msg::A(AMsg::Request { .. }) => "request",
            Msg::P(PMsg::Reply { .. }) | Msg::A(AMsg::Reply { .. }) => "reply",
            Msg::P(PMsg::Redirect { .. }) => "redirect",
            Msg::P(PMsg::Forward { .. }) => "forward",
            Msg::P(PMsg::Ack { .. }) => "ack",
            Msg::P(PMsg::Refuse { .. }) => "refuse",
            Msg::P(PMsg::Checkpoint { .. }) => "checkpoint",
            Msg::A(AMsg::Order(_)) => "order",
            Msg::A(AMsg::OrderAck { .. }) => "order_ack",
            Msg::A(AMsg::Commit { .. }) => "commit",
            Msg::A(AMsg::Sync { .. }) => "sync",
            Msg::A(AMsg::Install { .. }) => "install",
        }
    }
}

/// The answer to a client operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reply {
    /// Executed: the answer, from `replica` in `view`, as request `seq`.
    Done {
        answer: Answer,
        replica: NodeId,
        view: u64,
        seq: u64,
    },
    /// The deadline passed: it may or may not have been applied.
    Unknown { error: String },
    /// Not executed and never will be.
    Failed { error: String },
}

impl Reply {
    pub fn outcome(&self) -> crate::api::Outcome {
        use crate::api::Outcome;
        match self {
            // A refusal (overflow) is a definite answer too.
            Reply::Done { .. } => Outcome::Ok,
            Reply::Unknown { .. } => Outcome::Unknown,
            Reply::Failed { .. } => Outcome::Failed,
        }
    }
}

/// What a node makes durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A replica has started once: after a restart it waits for the state.
    Started,
    /// The GFD's membership number.
    Membership(u64),
    /// The RM's view number.
    View(u64),
    /// A client's incarnation.
    Incarnation(u64),
}

pub enum Mode {
    Passive(Box<Passive>),
    Active(Box<Active>),
}

pub enum ReplNode {
    Replica {
        mode: Mode,
        logged: bool,
    },
    Lfd(Box<Lfd>),
    Gfd {
        gfd: Box<Gfd>,
        persisted: u64,
    },
    Rm {
        rm: Box<Rm>,
        persisted: u64,
    },
    Client {
        client: Box<Client>,
        incarnation: u64,
        logged: bool,
    },
}

pub struct ReplicationNode {
    me: NodeId,
    params: Arc<Params>,
    pub role: ReplNode,
}

type Effects = Outbox<ReplicationNode>;

impl ReplicationNode {
    pub fn new(id: &str, params: &Arc<Params>) -> Self {
        let p = params;
        let role = if p.replicas.iter().any(|r| r == id) {
            let mode = if p.active {
                let mut a = Active::new(id, true);
                a.bugs.arrival_order = p.bugs.arrival_order;
                Mode::Active(Box::new(a))
            } else {
                let mut x = Passive::new(id, true, p.timing.checkpoint, p.timing.retransmit);
                x.bugs.forget_outcomes_on_promotion = p.bugs.forget_outcomes_on_promotion;
                x.bugs.unfenced_promotion = p.bugs.unfenced_promotion;
                Mode::Passive(Box::new(x))
            };
            ReplNode::Replica {
                mode,
                logged: false,
            }
        } else if let Some(replica) = p.pairs.get(id) {
            ReplNode::Lfd(Box::new(Lfd::new(
                replica,
                p.timing.heartbeat,
                p.timing.heartbeat_timeout,
            )))
        } else if p.gfd == id {
            ReplNode::Gfd {
                gfd: Box::new(Gfd::new(p.timing.heartbeat, p.timing.lfd_timeout, 1)),
                persisted: 0,
            }
        } else if p.rm == id {
            ReplNode::Rm {
                rm: Box::new(Rm::new(!p.active, p.timing.heartbeat, p.audience(), 0)),
                persisted: 0,
            }
        } else {
            ReplNode::Client {
                client: Box::new(Client::new(
                    id,
                    p.active,
                    1,
                    p.timing.retransmit,
                    p.timing.op_deadline,
                )),
                incarnation: 1,
                logged: false,
            }
        };
        ReplicationNode {
            me: id.to_string(),
            params: params.clone(),
            role,
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn role_name(&self) -> &'static str {
        match &self.role {
            ReplNode::Replica { .. } => "replica",
            ReplNode::Lfd(_) => "lfd",
            ReplNode::Gfd { .. } => "gfd",
            ReplNode::Rm { .. } => "rm",
            ReplNode::Client { .. } => "client",
        }
    }

    /// Moves what the role's core produced into the outbox.
    fn drain(&mut self, out: &mut Effects) {
        let p = &self.params;
        match &mut self.role {
            ReplNode::Replica { mode, logged } => {
                if !*logged {
                    *logged = true;
                    out.records.push(Record::Started);
                }
                match mode {
                    Mode::Passive(x) => out
                        .sends
                        .extend(x.out.drain(..).map(|(to, m)| (to, Msg::P(m)))),
                    Mode::Active(a) => out
                        .sends
                        .extend(a.out.drain(..).map(|(to, m)| (to, Msg::A(m)))),
                }
            }
            ReplNode::Lfd(l) => {
                for o in l.out.drain(..) {
                    match o {
                        LfdOut::Heartbeat { seq } => {
                            out.sends.push((l.replica.clone(), Msg::Heartbeat { seq }))
                        }
                        LfdOut::Report {
                            replica,
                            alive,
                            seq,
                        } => out.sends.push((
                            p.gfd.clone(),
                            Msg::Report {
                                replica,
                                alive,
                                seq,
                            },
                        )),
                    }
                }
            }
            ReplNode::Gfd { gfd, persisted } => {
                if let Some(n) = gfd.persist.take() {
                    if n > *persisted {
                        *persisted = n;
                        out.records.push(Record::Membership(n));
                    }
                }
                for m in gfd.out.drain(..) {
                    out.sends.push((
                        p.rm.clone(),
                        Msg::Membership {
                            number: m.number,
                            members: m.members,
                        },
                    ));
                }
            }
            ReplNode::Rm { rm, persisted } => {
                if let Some(n) = rm.persist.take() {
                    if n > *persisted {
                        *persisted = n;
                        out.records.push(Record::View(n));
                    }
                }
                out.sends
                    .extend(rm.out.drain(..).map(|(to, v)| (to, Msg::View(v))));
            }
            ReplNode::Client {
                client,
                incarnation,
                logged,
            } => {
                if !*logged {
                    *logged = true;
                    out.records.push(Record::Incarnation(*incarnation));
                }
                let active = p.active;
                for (to, id, op) in client.out.drain(..) {
                    let m = if active {
                        Msg::A(AMsg::Request { id, op })
                    } else {
                        Msg::P(PMsg::Request { id, op })
                    };
                    out.sends.push((to, m));
                }
                for (req, done) in client.done.drain(..) {
                    let reply = match done {
                        Done::Answered {
                            id,
                            answer,
                            replica,
                            view,
                        } => Reply::Done {
                            answer,
                            replica,
                            view,
                            seq: id.seq,
                        },
                        Done::Unknown { id } => Reply::Unknown {
                            error: format!("no answer to {id} before the deadline"),
                        },
                    };
                    out.replies.push((req, reply));
                }
            }
        }
    }
}

impl Core for ReplicationNode {
    type Msg = Msg;
    type Request = Op;
    type Reply = Reply;
    type Record = Record;
    type State = super::ReplicationState;

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
        let p = self.params.clone();
        if let ReplNode::Replica {
            mode: Mode::Passive(x),
            ..
        } = &mut self.role
        {
            x.clock = now;
        }
        match (&mut self.role, msg) {
            (ReplNode::Replica { .. }, Msg::Heartbeat { seq }) => {
                out.sends.push((from.clone(), Msg::Echo { seq }));
            }
            (ReplNode::Replica { mode, .. }, Msg::View(v)) if *from == p.rm => {
                let number = v.number;
                match mode {
                    Mode::Passive(x) => x.on_view(v),
                    Mode::Active(a) => {
                        a.on_view(v);
                        a.flush_local();
                    }
                }
                out.sends.push((from.clone(), Msg::ViewAck { number }));
            }
            (
                ReplNode::Replica {
                    mode: Mode::Passive(x),
                    ..
                },
                Msg::P(m),
            ) => match m {
                PMsg::Request { id, op } => x.on_request(from, id, op),
                PMsg::Forward {
                    view,
                    index,
                    id,
                    op,
                } => x.on_forward(from, view, index, id, op),
                PMsg::Ack { view, index } => x.on_ack(from, view, index),
                PMsg::Checkpoint { view, index, store } => {
                    x.on_checkpoint(from, view, index, store)
                }
                PMsg::Refuse { view } => {
                    tracing::warn!(node = %self.me, from = %from, view, "a backup of a newer view refuses this primary");
                }
                PMsg::Reply { .. } | PMsg::Redirect { .. } => {}
            },
            (
                ReplNode::Replica {
                    mode: Mode::Active(a),
                    ..
                },
                Msg::A(m),
            ) => a.handle(from, m),
            (ReplNode::Lfd(l), Msg::Echo { seq }) if *from == l.replica => l.on_echo(now, seq),
            (
                ReplNode::Gfd { gfd, .. },
                Msg::Report {
                    replica,
                    alive,
                    seq,
                },
            ) => {
                if p.pairs.get(from.as_str()) == Some(&replica) {
                    gfd.on_report(now, from, &replica, alive, seq);
                } else {
                    tracing::warn!(node = %self.me, from = %from, %replica, "a report from a node that is not that replica's LFD: dropped");
                }
            }
            (ReplNode::Rm { rm, .. }, Msg::Membership { number, members }) if *from == p.gfd => {
                rm.on_membership(now, Membership { number, members })
            }
            (ReplNode::Rm { rm, .. }, Msg::ViewAck { number }) => rm.on_ack(from, number),
            (ReplNode::Client { client, .. }, Msg::View(v)) if *from == p.rm => {
                let number = v.number;
                client.on_view(v);
                out.sends.push((from.clone(), Msg::ViewAck { number }));
            }
            (ReplNode::Client { client, .. }, Msg::P(PMsg::Reply { id, view, answer }))
            | (ReplNode::Client { client, .. }, Msg::A(AMsg::Reply { id, view, answer })) => {
                client.on_reply(from, id, view, answer)
            }
            (ReplNode::Client { client, .. }, Msg::P(PMsg::Redirect { view, primary, .. })) => {
                client.on_redirect(view, primary)
            }
            (_, m) => {
                tracing::debug!(node = %self.me, from = %from, kind = m.kind(), "a message this role does not take: dropped");
            }
        }
        self.drain(out);
    }

    fn on_request(
        &mut self,
        now: Time,
        req: ReqId,
        op: Op,
        _rng: &mut dyn RngCore,
        out: &mut Effects,
    ) {
        match &mut self.role {
            ReplNode::Client { client, .. } => {
                if op.key().is_empty() {
                    out.replies.push((
                        req,
                        Reply::Failed {
                            error: "a key is at least one character".into(),
                        },
                    ));
                } else {
                    client.submit(now, req, op);
                }
            }
            _ => out.replies.push((
                req,
                Reply::Failed {
                    error: format!(
                        "{} is a {}: only clients take operations",
                        self.me,
                        self.role_name()
                    ),
                },
            )),
        }
        self.drain(out);
    }

    fn on_tick(&mut self, now: Time, _rng: &mut dyn RngCore, out: &mut Effects) {
        match &mut self.role {
            ReplNode::Replica {
                mode: Mode::Passive(x),
                ..
            } => {
                x.clock = now;
                x.on_tick(now)
            }
            ReplNode::Replica { .. } => {}
            ReplNode::Lfd(l) => l.on_tick(now),
            ReplNode::Gfd { gfd, .. } => gfd.on_tick(now),
            ReplNode::Rm { rm, .. } => rm.on_tick(now),
            ReplNode::Client { client, .. } => client.on_tick(now),
        }
        self.drain(out);
    }

    fn next_tick(&self) -> Option<Time> {
        match &self.role {
            ReplNode::Replica {
                mode: Mode::Passive(x),
                logged,
            } => {
                if !logged {
                    Some(0)
                } else {
                    x.next_tick()
                }
            }
            ReplNode::Replica { logged, .. } => (!logged).then_some(0),
            ReplNode::Lfd(l) => Some(l.next_tick()),
            ReplNode::Gfd { gfd, .. } => Some(gfd.next_tick()),
            ReplNode::Rm { rm, .. } => Some(rm.next_tick()),
            ReplNode::Client { client, logged, .. } => {
                if !logged {
                    Some(0)
                } else {
                    client.next_tick()
                }
            }
        }
    }

    fn recover(&mut self, records: Vec<Record>) {
        let p = self.params.clone();
        match &mut self.role {
            ReplNode::Replica { mode, .. } => {
                if records.contains(&Record::Started) {
                    // Restarted: the state comes by transfer.
                    match mode {
                        Mode::Passive(x) => x.ready = false,
                        Mode::Active(a) => a.ready = false,
                    }
                }
            }
            ReplNode::Lfd(_) => {}
            ReplNode::Gfd { gfd, persisted } => {
                let last = records
                    .iter()
                    .filter_map(|r| match r {
                        Record::Membership(n) => Some(*n),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(0);
                *persisted = last;
                **gfd = Gfd::new(p.timing.heartbeat, p.timing.lfd_timeout, last + 1);
            }
            ReplNode::Rm { rm, persisted } => {
                let last = records
                    .iter()
                    .filter_map(|r| match r {
                        Record::View(n) => Some(*n),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(0);
                *persisted = last;
                **rm = Rm::new(!p.active, p.timing.heartbeat, p.audience(), last);
            }
            ReplNode::Client {
                client,
                incarnation,
                logged,
            } => {
                let last = records
                    .iter()
                    .filter_map(|r| match r {
                        Record::Incarnation(n) => Some(*n),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(0);
                *incarnation = last + 1;
                *logged = false;
                **client = Client::new(
                    &self.me,
                    p.active,
                    *incarnation,
                    p.timing.retransmit,
                    p.timing.op_deadline,
                );
            }
        }
    }

    fn compact(&self) -> Vec<Record> {
        match &self.role {
            ReplNode::Replica { logged: true, .. } => vec![Record::Started],
            ReplNode::Gfd { persisted, .. } if *persisted > 0 => {
                vec![Record::Membership(*persisted)]
            }
            ReplNode::Rm { persisted, .. } if *persisted > 0 => vec![Record::View(*persisted)],
            ReplNode::Client {
                incarnation,
                logged: true,
                ..
            } => vec![Record::Incarnation(*incarnation)],
            _ => Vec::new(),
        }
    }

    fn state(&self) -> super::ReplicationState {
        super::api::state(self)
    }
}

/// The request ids a replica applied (for the exactly-once check).
pub fn applied(n: &ReplicationNode) -> &[RequestId] {
    match &n.role {
        ReplNode::Replica {
            mode: Mode::Passive(x),
            ..
        } => &x.applied,
        ReplNode::Replica {
            mode: Mode::Active(a),
            ..
        } => &a.applied,
        _ => &[],
    }
}
