//! The smr node: a replica or a client by its role in the cluster file,
//! behind the one [`Core`] contract the drivers run, with the requests and
//! replies `/ops` speaks and the records the write-ahead log keeps.

use super::client::{ClientCore, Outcome as ClientOutcome};
use super::db::{Command, DbError};
use super::replica::{Msg, Replica, ReplicaRecord};
use super::{Params, SmrState};
use crate::protocol::{Core, MessageKind, NodeId, Outbox, ReqId, Time};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A client operation, as `/ops` takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// A database command (`list`, `view`, `edit`, `add`).
    Command(Command),
    /// Leave the order (the seed's `[q]`); a later command joins again.
    Quit,
}

impl Request {
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Command(Command::List) => "list",
            Request::Command(Command::View { .. }) => "view",
            Request::Command(Command::Edit { .. }) => "edit",
            Request::Command(Command::Add { .. }) => "add",
            Request::Quit => "quit",
        }
    }
}

/// The answer to a client operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reply {
    /// Executed as entry `index` of the order: the seed's output lines.
    Done { index: u64, lines: Vec<String> },
    /// Refused by the database's input check. `index`: executed (and
    /// refused) at that entry of the order; none: refused by the client
    /// before it was sent. Nothing changed either way.
    Refused { index: Option<u64>, error: DbError },
    /// The `quit` entry was sent: the replicas stop waiting for this client.
    Left,
    /// It may or may not have been executed (the deadline passed, or the
    /// client was expelled first).
    Unknown { error: String },
    /// It was not executed and never will be.
    Failed { error: String },
}

impl Reply {
    pub fn outcome(&self) -> crate::api::Outcome {
        use crate::api::Outcome;
        match self {
            Reply::Done { .. } | Reply::Left | Reply::Refused { index: Some(_), .. } => Outcome::Ok,
            Reply::Refused { index: None, .. } | Reply::Failed { .. } => Outcome::Failed,
            Reply::Unknown { .. } => Outcome::Unknown,
        }
    }
}

/// What a node makes durable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Record {
    Replica(ReplicaRecord),
    /// A client's source is now this incarnation (never reused).
    ClientIncarnation(u64),
}

pub enum SmrNode {
    Replica(Box<Replica>),
    Client(Box<ClientNode>),
}

/// A client core with the operations waiting on it and their deadlines.
pub struct ClientNode {
    pub core: ClientCore<ReqId>,
    /// Operations waiting for an answer, and when each answers unknown.
    deadlines: BTreeMap<ReqId, Time>,
    op_deadline: Time,
    logged_incarnation: Option<u64>,
}

type Out = Outbox<SmrNode>;

impl SmrNode {
    pub fn new(id: &str, params: &Arc<Params>) -> Self {
        if params.is_replica(id) {
            SmrNode::Replica(Box::new(
                Replica::new(id, &params.replicas, params.timing.clone(), 0)
                    .with_bugs(params.bugs.clone())
                    .with_log_keep(params.log_keep.max(1)),
            ))
        } else {
            SmrNode::Client(Box::new(ClientNode {
                core: ClientCore::new(id, &params.replicas, params.timing.null_period, 0),
                deadlines: BTreeMap::new(),
                op_deadline: params.op_deadline_us,
                logged_incarnation: None,
            }))
        }
    }

    pub fn role(&self) -> &'static str {
        match self {
            SmrNode::Replica(_) => "replica",
            SmrNode::Client(_) => "client",
        }
    }

    pub fn replica(&self) -> Option<&Replica> {
        match self {
            SmrNode::Replica(r) => Some(r),
            SmrNode::Client(_) => None,
        }
    }

    pub fn client(&self) -> Option<&ClientNode> {
        match self {
            SmrNode::Client(c) => Some(c),
            SmrNode::Replica(_) => None,
        }
    }

    /// Moves what the core produced into the outbox.
    fn drain(&mut self, out: &mut Out) {
        match self {
            SmrNode::Replica(r) => {
                out.records.extend(r.records.drain(..).map(Record::Replica));
                out.sends.append(&mut r.out);
            }
            SmrNode::Client(c) => {
                let inc = c.core.source().incarnation;
                if c.logged_incarnation != Some(inc) {
                    c.logged_incarnation = Some(inc);
                    out.records.push(Record::ClientIncarnation(inc));
                }
                out.sends.append(&mut c.core.out);
                for (req, outcome) in c.core.done.drain(..) {
                    // Answered already (unknown, at its deadline): a late
                    // answer has no one to go to.
                    if c.deadlines.remove(&req).is_none() {
                        continue;
                    }
                    let reply = match outcome {
                        ClientOutcome::Done {
                            index,
                            result: Ok(lines),
                        } => Reply::Done { index, lines },
                        ClientOutcome::Done {
                            index,
                            result: Err(error),
                        } => Reply::Refused {
                            index: Some(index),
                            error,
                        },
                        ClientOutcome::Unknown(error) => Reply::Unknown { error },
                    };
                    out.replies.push((req, reply));
                }
            }
        }
    }
}

impl ClientNode {
    pub fn pending(&self) -> usize {
        self.deadlines.len()
    }

    fn on_request(&mut self, now: Time, req: ReqId, request: Request, out: &mut Out) {
        match request {
            Request::Quit => {
                self.core.quit();
                out.replies.push((req, Reply::Left));
            }
            Request::Command(command) => match self.core.submit(req, command, now) {
                Ok(()) => {
                    self.deadlines.insert(req, now + self.op_deadline);
                }
                Err(error) => out
                    .replies
                    .push((req, Reply::Refused { index: None, error })),
            },
        }
    }

    fn on_tick(&mut self, now: Time, out: &mut Out) {
        self.core.on_tick(now);
        let late: Vec<ReqId> = self
            .deadlines
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(r, _)| *r)
            .collect();
        for req in late {
            self.deadlines.remove(&req);
            out.replies.push((
                req,
                Reply::Unknown {
                    error: "no replica answered before the deadline".into(),
                },
            ));
        }
    }

    fn next_tick(&self) -> Option<Time> {
        let deadline = self.deadlines.values().min().copied();
        match (self.core.next_tick(), deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Core for SmrNode {
    type Msg = Msg;
    type Request = Request;
    type Reply = Reply;
    type Record = Record;
    type State = SmrState;

    fn id(&self) -> &NodeId {
        match self {
            SmrNode::Replica(r) => &r.me().node,
            SmrNode::Client(c) => &c.core.source().node,
        }
    }

    fn on_message(
        &mut self,
        now: Time,
        from: &NodeId,
        msg: Msg,
        _rng: &mut dyn RngCore,
        out: &mut Out,
    ) {
        let kind = msg.kind();
        match self {
            SmrNode::Replica(r) => r.on_message(now, from, msg),
            SmrNode::Client(c) => {
                tracing::trace!(%from, kind, "client message");
                c.core.on_message(now, from, msg)
            }
        }
        self.drain(out);
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
            SmrNode::Replica(_) => out.replies.push((
                req,
                Reply::Failed {
                    error: "a replica takes no client operations; ask a client node".into(),
                },
            )),
            SmrNode::Client(c) => c.on_request(now, req, request, out),
        }
        self.drain(out);
    }

    fn on_tick(&mut self, now: Time, _rng: &mut dyn RngCore, out: &mut Out) {
        match self {
            SmrNode::Replica(r) => r.on_tick(now),
            SmrNode::Client(c) => c.on_tick(now, out),
        }
        self.drain(out);
    }

    fn next_tick(&self) -> Option<Time> {
        match self {
            SmrNode::Replica(r) => Some(r.next_tick()),
            SmrNode::Client(c) => c.next_tick(),
        }
    }

    fn recover(&mut self, records: Vec<Record>) {
        match self {
            SmrNode::Replica(r) => r.recover(
                records
                    .into_iter()
                    .filter_map(|x| match x {
                        Record::Replica(x) => Some(x),
                        Record::ClientIncarnation(_) => None,
                    })
                    .collect(),
            ),
            SmrNode::Client(c) => {
                let last = records
                    .iter()
                    .filter_map(|x| match x {
                        Record::ClientIncarnation(n) => Some(*n),
                        Record::Replica(_) => None,
                    })
                    .max();
                if let Some(n) = last {
                    c.core.restart_as(n + 1);
                }
            }
        }
    }

    fn compact(&self) -> Vec<Record> {
        match self {
            SmrNode::Replica(r) => r.compact().into_iter().map(Record::Replica).collect(),
            SmrNode::Client(c) => vec![Record::ClientIncarnation(c.core.source().incarnation)],
        }
    }

    fn state(&self) -> SmrState {
        SmrState::of(self)
    }
}

impl MessageKind for Msg {
    const KINDS: &'static [&'static str] = <Msg as strum::VariantNames>::VARIANTS;
    fn kind(&self) -> &'static str {
        self.into()
    }
}
