//! `transform`: moving a node between server and client by choosing the next
//! configuration with single-decree Paxos among the servers of the current one.
//!
//! 1. Prepare(epoch+1, ballot) to the old servers. A promise freezes the old
//!    configuration at that server (it answers no more reads or writes) and
//!    carries its whole table and any configuration it already accepted.
//! 2. Accept the highest-ballot accepted configuration among the promises, or
//!    our own proposal if there is none, at a majority of old servers.
//! 3. Install the chosen configuration with the merged tables of the promise
//!    majority at a majority of the new servers, then announce it.
//!
//! Every write acknowledged in the old epoch reached a majority before any of
//! them promised (frozen servers acknowledge nothing), so the promise majority
//! holds it and the new servers start from a state that contains it. A frozen
//! server whose coordinator vanished runs the same code with a proposal that
//! keeps the servers unchanged, which finishes a chosen value or unfreezes.

use super::node::TokensNode;
use super::*;
use crate::protocol::{Outbox, ReqId, Time};
use std::collections::{BTreeMap, BTreeSet};

pub(super) struct Coordinator {
    /// The client request to answer; none for a recovery run.
    req: Option<ReqId>,
    base: Config,
    proposal: Config,
    ballot: BallotNo,
    rid: u64,
    phase: Phase,
    deadline: Time,
    next_retx: Time,
    backoff: u64,
}

/// A promise's table and the configuration its sender accepted, if any.
type PromiseData = (Vec<TokenState>, Option<(BallotNo, Config)>);

enum Phase {
    Prepare {
        promises: BTreeMap<NodeId, PromiseData>,
    },
    Accept {
        value: Config,
        tokens: Vec<TokenState>,
        acks: BTreeSet<NodeId>,
    },
    Install {
        value: Config,
        tokens: Vec<TokenState>,
        acks: BTreeSet<NodeId>,
    },
}

impl Coordinator {
    pub(super) fn next_tick(&self) -> Time {
        self.next_retx.min(self.deadline)
    }
}

impl TokensNode {
    pub(super) fn transform(&mut self, now: Time, req: ReqId, out: &mut Outbox<Self>) {
        if self.coord.is_some() {
            let error = OpError::Conflict("a transform is already running on this node".into());
            out.replies.push((req, Reply::Failed { error }));
            return;
        }
        let mut servers = self.config.servers.clone();
        if self.config.is_server(&self.id) {
            if servers.len() <= self.params.min_servers {
                let error = OpError::MinServers(self.params.min_servers);
                out.replies.push((req, Reply::Failed { error }));
                return;
            }
            servers.retain(|s| *s != self.id);
        } else {
            if servers.len() >= self.params.max_servers {
                let error = OpError::MaxServers(self.params.max_servers);
                out.replies.push((req, Reply::Failed { error }));
                return;
            }
            servers.push(self.id.clone());
            servers.sort();
        }
        self.start_coordinator(now, Some(req), servers, out);
    }

    pub(super) fn start_coordinator(
        &mut self,
        now: Time,
        req: Option<ReqId>,
        servers: Vec<NodeId>,
        out: &mut Outbox<Self>,
    ) {
        let base = self.config.clone();
        let proposal = Config {
            epoch: base.epoch + 1,
            servers,
        };
        let round = match &self.promised {
            Some((e, (r, _))) if *e == proposal.epoch => r + 1,
            _ => 1,
        };
        let rid = self.rid();
        self.coord = Some(Coordinator {
            req,
            base,
            proposal,
            ballot: (round, self.id.clone()),
            rid,
            phase: Phase::Prepare {
                promises: BTreeMap::new(),
            },
            deadline: now + 2 * self.params.op_deadline_us,
            next_retx: now,
            backoff: self.params.retransmit_us,
        });
        self.coord_transmit(now, out);
    }

    fn coord_transmit(&mut self, now: Time, out: &mut Outbox<Self>) {
        let max = self.params.retransmit_max_us;
        let Some(c) = self.coord.as_mut() else { return };
        c.next_retx = now + c.backoff;
        c.backoff = (c.backoff * 2).min(max);
        let rid = c.rid;
        let (targets, msg): (Vec<NodeId>, Msg) = match &c.phase {
            Phase::Prepare { promises } => (
                unanswered(&c.base.servers, |s| promises.contains_key(s)),
                Msg::Prepare {
                    rid,
                    epoch: c.proposal.epoch,
                    ballot: c.ballot.clone(),
                },
            ),
            Phase::Accept { value, acks, .. } => (
                unanswered(&c.base.servers, |s| acks.contains(s)),
                Msg::Accept {
                    rid,
                    ballot: c.ballot.clone(),
                    config: value.clone(),
                },
            ),
            Phase::Install {
                value,
                tokens,
                acks,
            } => (
                unanswered(&value.servers, |s| acks.contains(s)),
                Msg::Install {
                    rid,
                    config: value.clone(),
                    tokens: tokens.clone(),
                },
            ),
        };
        for t in targets {
            self.send(&t, msg.clone(), out);
        }
    }

    fn coord_for(&mut self, rid: u64) -> Option<&mut Coordinator> {
        self.coord.as_mut().filter(|c| c.rid == rid)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn coord_promise(
        &mut self,
        now: Time,
        from: &NodeId,
        rid: u64,
        epoch: u64,
        tokens: Vec<TokenState>,
        accepted: Option<(BallotNo, Config)>,
        out: &mut Outbox<Self>,
    ) {
        let n_tokens = self.params.tokens();
        let Some(c) = self.coord_for(rid) else { return };
        if epoch != c.proposal.epoch || !c.base.is_server(from) || tokens.len() != n_tokens {
            return;
        }
        let majority = c.base.majority();
        let Phase::Prepare { promises } = &mut c.phase else {
            return;
        };
        promises.insert(from.clone(), (tokens, accepted));
        if promises.len() < majority {
            return;
        }
        // Merge the tables of the majority, and pick the value Paxos forces.
        let mut merged: Vec<TokenState> = Vec::new();
        let mut forced: Option<(BallotNo, Config)> = None;
        for (t, a) in promises.values() {
            if merged.is_empty() {
                merged = t.clone();
            } else {
                for (m, s) in merged.iter_mut().zip(t) {
                    if s.tag > m.tag {
                        *m = s.clone();
                    }
                }
            }
            if let Some((b, cfg)) = a {
                if forced.as_ref().is_none_or(|(fb, _)| b > fb) {
                    forced = Some((b.clone(), cfg.clone()));
                }
            }
        }
        let value = forced
            .map(|(_, cfg)| cfg)
            .unwrap_or_else(|| c.proposal.clone());
        c.phase = Phase::Accept {
            value,
            tokens: merged,
            acks: BTreeSet::new(),
        };
        self.coord_next_phase(now, out);
    }

    fn coord_next_phase(&mut self, now: Time, out: &mut Outbox<Self>) {
        let rid = self.rid();
        let base = self.params.retransmit_us;
        if let Some(c) = self.coord.as_mut() {
            c.rid = rid;
            c.backoff = base;
        }
        self.coord_transmit(now, out);
    }

    pub(super) fn coord_accepted(
        &mut self,
        now: Time,
        from: &NodeId,
        rid: u64,
        out: &mut Outbox<Self>,
    ) {
        let Some(c) = self.coord_for(rid) else { return };
        if !c.base.is_server(from) {
            return;
        }
        let majority = c.base.majority();
        let Phase::Accept {
            value,
            tokens,
            acks,
        } = &mut c.phase
        else {
            return;
        };
        acks.insert(from.clone());
        if acks.len() < majority {
            return;
        }
        c.phase = Phase::Install {
            value: value.clone(),
            tokens: std::mem::take(tokens),
            acks: BTreeSet::new(),
        };
        self.coord_next_phase(now, out);
    }

    pub(super) fn coord_installed(
        &mut self,
        now: Time,
        from: &NodeId,
        rid: u64,
        epoch: u64,
        out: &mut Outbox<Self>,
    ) {
        let Some(c) = self.coord_for(rid) else { return };
        let Phase::Install { value, acks, .. } = &mut c.phase else {
            return;
        };
        if epoch != value.epoch || !value.is_server(from) {
            return;
        }
        acks.insert(from.clone());
        if acks.len() < value.majority() {
            return;
        }
        let value = value.clone();
        self.learn(now, value.clone(), out);
        let everyone: Vec<NodeId> = self.params.nodes.clone();
        for n in everyone {
            if n != self.id {
                self.send(
                    &n,
                    Msg::News {
                        config: value.clone(),
                    },
                    out,
                );
            }
        }
        self.coord_finish(now, Some(value), out);
    }

    pub(super) fn coord_nack(&mut self, now: Time, rid: u64, promised: BallotNo) {
        let me = self.id.clone();
        let Some(c) = self.coord_for(rid) else { return };
        if matches!(c.phase, Phase::Install { .. }) || promised <= c.ballot {
            return;
        }
        c.ballot = (promised.0 + 1, me);
        c.phase = Phase::Prepare {
            promises: BTreeMap::new(),
        };
        // Back off before competing again, longer for higher-ranked
        // servers, so two proposers do not keep pre-empting each other.
        let rank = c
            .base
            .servers
            .iter()
            .position(|s| *s == c.ballot.1)
            .unwrap_or(c.base.servers.len());
        let wait = self.params.retransmit_max_us * (1 + rank as u64) / 2;
        let rid = self.rid();
        if let Some(c) = self.coord.as_mut() {
            c.rid = rid;
            c.backoff = self.params.retransmit_us;
            c.next_retx = now + wait;
        }
    }

    pub(super) fn coord_refused(
        &mut self,
        now: Time,
        _from: &NodeId,
        rid: u64,
        why: &Refusal,
        out: &mut Outbox<Self>,
    ) {
        let Some(c) = self.coord_for(rid) else { return };
        if let Refusal::StaleEpoch(newer) = why {
            if newer.epoch >= c.proposal.epoch {
                // Someone else finished a configuration at or beyond ours.
                self.coord_finish(now, None, out);
            }
        }
    }

    /// Ends the coordinator and answers its request, if any. `chosen` is the
    /// configuration this coordinator installed, if it finished one.
    fn coord_finish(&mut self, _now: Time, chosen: Option<Config>, out: &mut Outbox<Self>) {
        let Some(c) = self.coord.take() else { return };
        let Some(req) = c.req else { return };
        let reply = match chosen {
            Some(cfg) if cfg.servers == c.proposal.servers => Reply::Transformed {
                role: self.role().to_string(),
                config: cfg,
            },
            Some(cfg) => Reply::Failed {
                error: OpError::Conflict(format!(
                    "another reconfiguration (epoch {}) was completed instead; retry",
                    cfg.epoch
                )),
            },
            None => {
                if self.config.epoch >= c.proposal.epoch
                    && self.config.servers == c.proposal.servers
                {
                    Reply::Transformed {
                        role: self.role().to_string(),
                        config: self.config.clone(),
                    }
                } else {
                    Reply::Unknown {
                        reason: format!(
                            "the configuration moved to epoch {} while transforming; check status",
                            self.config.epoch
                        ),
                    }
                }
            }
        };
        out.replies.push((req, reply));
    }

    pub(super) fn tick_coordinator(&mut self, now: Time, out: &mut Outbox<Self>) {
        let Some(c) = self.coord.as_ref() else { return };
        if now >= c.deadline {
            let in_prepare = matches!(c.phase, Phase::Prepare { .. });
            let epoch = c.proposal.epoch;
            let Some(c) = self.coord.take() else { return };
            if let Some(req) = c.req {
                let reply = if in_prepare {
                    // Nothing was accepted, so this proposal can never be chosen.
                    Reply::Failed {
                        error: OpError::NoQuorum(format!(
                            "no majority of epoch {} promised epoch {epoch}",
                            epoch - 1
                        )),
                    }
                } else {
                    Reply::Unknown {
                        reason: format!("epoch {epoch} may have been chosen but was not installed in time; it will be finished by recovery"),
                    }
                };
                out.replies.push((req, reply));
            }
            return;
        }
        if now >= c.next_retx {
            self.coord_transmit(now, out);
        }
    }
}
