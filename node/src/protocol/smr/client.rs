//! A client of the replicated database, sans IO: it says hello until a
//! replica welcomes it, then sends each command to every replica as an
//! entry of its own stream (Lamport timestamp, consecutive seq), nulls while
//! it has nothing to send so the order keeps moving, takes the first reply
//! to each command and checks every later one against it (a mismatch is
//! counted and logged: replicas that disagree are a bug). Expelled (it was
//! silent too long), it joins again as a new incarnation; commands in
//! flight then have an unknown outcome (they may have been executed before
//! the cut).

use super::db::{Command, DbError};
use super::order::{Body, Outgoing, Source};
use super::replica::{Msg, Time};
use std::collections::{BTreeMap, VecDeque};

/// The outcome of one submitted command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The replicas' answer, executed as entry `index` of the order: the
    /// seed's output lines, or the input error.
    Done {
        index: u64,
        result: Result<Vec<String>, DbError>,
    },
    /// The client was expelled before an answer came: the command may or
    /// may not have been executed.
    Unknown(String),
}

/// How many answered commands are remembered to check late replies.
const REMEMBER: usize = 4096;

pub struct ClientCore<R> {
    me: Source,
    replicas: Vec<String>,
    null_period: Time,
    own: Outgoing,
    member: bool,
    next_send: Time,
    op: u64,
    queue: VecDeque<(R, Command)>,
    inflight: BTreeMap<u64, R>,
    answered: BTreeMap<u64, (u64, Result<Vec<String>, DbError>)>,
    /// Left with `quit`: says nothing more until a new command comes.
    left: bool,
    pub nulls_sent: u64,
    /// Later replies that differ from the first (each is a bug).
    pub mismatches: u64,
    pub out: Vec<(String, Msg)>,
    pub done: Vec<(R, Outcome)>,
}

impl<R: Clone> ClientCore<R> {
    pub fn new(me: &str, replicas: &[String], null_period: Time, now: Time) -> Self {
        ClientCore {
            me: Source::new(me, 0),
            replicas: replicas.to_vec(),
            null_period,
            own: Outgoing::default(),
            member: false,
            next_send: now,
            op: 0,
            queue: VecDeque::new(),
            inflight: BTreeMap::new(),
            answered: BTreeMap::new(),
            left: false,
            nulls_sent: 0,
            mismatches: 0,
            out: Vec::new(),
            done: Vec::new(),
        }
    }

    pub fn source(&self) -> &Source {
        &self.me
    }

    pub fn is_member(&self) -> bool {
        self.member
    }

    /// The first reply to each recent command: op, then the order index it
    /// was executed at and its outcome.
    pub fn answered(&self) -> &BTreeMap<u64, (u64, Result<Vec<String>, DbError>)> {
        &self.answered
    }

    /// Commands submitted and not answered yet.
    pub fn pending(&self) -> usize {
        self.queue.len() + self.inflight.len()
    }

    /// Queues `command`; bad input is refused here and never sent. After
    /// a `quit`, a new command joins again as the next incarnation.
    pub fn submit(&mut self, req: R, command: Command, now: Time) -> Result<(), DbError> {
        command.validate()?;
        if self.left {
            self.left = false;
            self.new_incarnation(self.me.incarnation + 1, now);
        }
        self.queue.push_back((req, command));
        Ok(())
    }

    /// Restarted (its records said it was `incarnation - 1`): a new source
    /// that says hello before anything else.
    pub fn restart_as(&mut self, incarnation: u64) {
        assert!(
            incarnation > self.me.incarnation,
            "an incarnation is never reused"
        );
        self.new_incarnation(incarnation, 0);
    }

    fn new_incarnation(&mut self, incarnation: u64, now: Time) {
        self.me.incarnation = incarnation;
        self.member = false;
        // A new incarnation is a new stream; the clock goes on.
        self.own.seq = 0;
        self.next_send = now;
    }

    /// Whether it left with `quit` (and has not come back).
    pub fn has_left(&self) -> bool {
        self.left
    }

    pub fn clock(&self) -> u64 {
        self.own.clock
    }

    /// The earliest time it wants `on_tick` (none after `quit`).
    pub fn next_tick(&self) -> Option<Time> {
        (!self.left).then_some(self.next_send)
    }

    fn send(&mut self, body: Body) {
        let e = self.own.next(&self.me, body);
        for r in &self.replicas {
            self.out.push((r.clone(), Msg::Entry(e.clone())));
        }
    }

    /// Leaves the service: a `quit` entry, ordered like a request, after
    /// which the replicas stop waiting for this client; nothing is sent
    /// after it.
    pub fn quit(&mut self) {
        if self.member && !self.left {
            self.send(Body::Quit);
            self.left = true;
        }
    }

    pub fn on_tick(&mut self, now: Time) {
        if self.left {
            return;
        }
        if !self.member {
            if now >= self.next_send {
                for r in &self.replicas {
                    self.out.push((
                        r.clone(),
                        Msg::Hello {
                            source: self.me.clone(),
                        },
                    ));
                }
                // Hello again if no welcome comes (the coordinator may be down).
                self.next_send = now + 3 * self.null_period;
            }
            return;
        }
        let mut sent = false;
        while let Some((req, command)) = self.queue.pop_front() {
            self.op += 1;
            self.inflight.insert(self.op, req);
            let op = self.op;
            self.send(Body::Request { op, command });
            sent = true;
        }
        if sent {
            self.next_send = now + self.null_period;
        } else if now >= self.next_send {
            self.send(Body::Null);
            self.nulls_sent += 1;
            self.next_send = now + self.null_period;
        }
    }

    pub fn on_message(&mut self, now: Time, from: &str, msg: Msg) {
        if !self.replicas.iter().any(|r| r == from) {
            tracing::warn!(from, "a message from a node that is not a replica");
            return;
        }
        match msg {
            Msg::Welcome { ts } if !self.member => {
                self.member = true;
                self.own.observe(ts);
                self.next_send = now;
            }
            Msg::Ack { clock, .. } => self.own.observe(clock),
            Msg::Reply { op, index, outcome } => match self.answered.get(&op) {
                Some(first) if *first != (index, outcome.clone()) => {
                    self.mismatches += 1;
                    tracing::error!(
                        op,
                        from,
                        ?first,
                        index,
                        ?outcome,
                        "replicas answered one command differently"
                    );
                }
                Some(_) => {}
                None => {
                    self.answered.insert(op, (index, outcome.clone()));
                    while self.answered.len() > REMEMBER {
                        self.answered.pop_first();
                    }
                    if let Some(req) = self.inflight.remove(&op) {
                        self.done.push((
                            req,
                            Outcome::Done {
                                index,
                                result: outcome,
                            },
                        ));
                    }
                }
            },
            Msg::Expelled { source } if self.member && source == self.me => {
                self.new_incarnation(self.me.incarnation + 1, now);
                for (_, req) in std::mem::take(&mut self.inflight) {
                    self.done.push((
                        req,
                        Outcome::Unknown("expelled before an answer came".into()),
                    ));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::smr::order::Entry;

    fn replicas() -> Vec<String> {
        vec!["r1".into(), "r2".into()]
    }

    #[test]
    fn it_says_hello_until_welcomed_then_sends_to_every_replica() {
        let mut c: ClientCore<u32> = ClientCore::new("c1", &replicas(), 100, 0);
        c.submit(7, Command::List, 0).expect("list");
        c.on_tick(0);
        assert!(c.out.iter().all(|(_, m)| matches!(m, Msg::Hello { .. })));
        assert_eq!(c.out.len(), 2);
        c.out.clear();
        c.on_message(10, "r1", Msg::Welcome { ts: 40 });
        c.on_tick(10);
        let sent: Vec<&Entry> = c
            .out
            .iter()
            .filter_map(|(_, m)| match m {
                Msg::Entry(e) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(sent.len(), 2, "to both replicas");
        assert_eq!((sent[0].seq, sent[0].ts), (1, 41), "after the welcome's ts");
        assert_eq!(sent[0], sent[1]);
    }

    #[test]
    fn the_first_reply_answers_and_a_different_one_is_a_mismatch() {
        let mut c: ClientCore<u32> = ClientCore::new("c1", &replicas(), 100, 0);
        c.on_message(0, "r1", Msg::Welcome { ts: 1 });
        c.submit(7, Command::List, 0).expect("list");
        c.on_tick(0);
        let ok = Ok(vec!["Availability,ZIP Code,Site Name".to_string()]);
        c.on_message(
            5,
            "r2",
            Msg::Reply {
                op: 1,
                index: 3,
                outcome: ok.clone(),
            },
        );
        assert_eq!(
            c.done,
            [(
                7,
                Outcome::Done {
                    index: 3,
                    result: ok.clone()
                }
            )]
        );
        c.on_message(
            6,
            "r1",
            Msg::Reply {
                op: 1,
                index: 3,
                outcome: ok,
            },
        );
        assert_eq!(c.mismatches, 0);
        c.on_message(
            7,
            "r1",
            Msg::Reply {
                op: 1,
                index: 4,
                outcome: Ok(vec![]),
            },
        );
        assert_eq!(c.mismatches, 1);
        assert_eq!(c.done.len(), 1);
        // A node that is not a replica is not listened to.
        c.on_message(
            8,
            "c9",
            Msg::Reply {
                op: 1,
                index: 9,
                outcome: Ok(vec![]),
            },
        );
        assert_eq!(c.mismatches, 1);
    }

    #[test]
    fn expelled_it_rejoins_as_a_new_incarnation_and_in_flight_is_unknown() {
        let mut c: ClientCore<u32> = ClientCore::new("c1", &replicas(), 100, 0);
        c.on_message(0, "r1", Msg::Welcome { ts: 1 });
        c.submit(7, Command::List, 0).expect("list");
        c.on_tick(0);
        c.on_message(
            50,
            "r1",
            Msg::Expelled {
                source: Source::new("c1", 0),
            },
        );
        assert!(!c.is_member());
        assert_eq!(c.source().incarnation, 1);
        assert!(matches!(c.done.as_slice(), [(7, Outcome::Unknown(_))]));
        c.out.clear();
        c.on_tick(50);
        assert!(c.out.iter().all(|(_, m)| *m
            == Msg::Hello {
                source: Source::new("c1", 1)
            }));
    }

    #[test]
    fn bad_input_is_refused_before_it_is_sent() {
        let mut c: ClientCore<u32> = ClientCore::new("c1", &replicas(), 100, 0);
        assert!(c
            .submit(
                1,
                Command::Add {
                    site: "A`B".into(),
                    zip: "1".into()
                },
                0
            )
            .is_err());
        assert_eq!(c.pending(), 0);
    }
}
