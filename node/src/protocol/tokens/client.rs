//! Client operations of the token system: pay and gettokens as quorum reads
//! followed by quorum writes, retransmitted until a majority of the current
//! configuration answers or the deadline passes.
//!
//! A pay is answered `Paid` only after a majority of servers acknowledged the
//! new version; it is answered `Failed` only when it can no longer take effect
//! (it never sent a write), and `Unknown` otherwise.
//!
//! Two rules keep a client from forking a token's history. A pay that ended
//! `unknown` is remembered (durably): its write may still land, so before
//! the client writes that token again it completes the old write first;
//! otherwise a second write of the same version could be overtaken by a pay
//! built on the first. And a client that read its own token's tag, with no
//! pay of that token in flight since, may skip the read phase of its next
//! pay of it: only the owner writes a token, so the tag cannot have moved.

use super::node::TokensNode;
use super::*;
use crate::protocol::{Outbox, ReqId, Time};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Ordered maps throughout: the order in which operations are retransmitted
/// must not depend on a hasher's per-process seed, or a simulated seed would
/// not replay.
#[derive(Default)]
pub(super) struct ClientOps {
    ops: BTreeMap<ReqId, Op>,
    by_rid: BTreeMap<u64, ReqId>,
    /// Tokens with a pay in flight; later pays of the same token wait, because
    /// a client racing itself could write one version twice.
    busy: BTreeSet<TokenId>,
    waiting: BTreeMap<TokenId, VecDeque<(ReqId, Request)>>,
    /// Writes of pays that ended unknown; completed before the next write.
    pub(super) unresolved: BTreeMap<TokenId, WriteEntry>,
    /// Tags of tokens this client owns, read with no pay of them in flight.
    owned: BTreeMap<TokenId, Tag>,
    /// Counts pay starts and ends; `touched[t]` is its value at the last
    /// start or end of a pay of t, so a read knows whether one overlapped it.
    clock: u64,
    touched: BTreeMap<TokenId, u64>,
    /// The highest tag this client wrote per token (paid or resolved), so a
    /// late gift can never bring back a tag it already wrote over.
    written: BTreeMap<TokenId, Tag>,
}

impl ClientOps {
    pub(super) fn len(&self) -> usize {
        self.ops.len() + self.waiting.values().map(|q| q.len()).sum::<usize>()
    }

    /// The writes of pays in flight, which a compacted log must keep as
    /// unresolved (see `pay_phase`).
    pub(super) fn in_flight_writes(&self) -> impl Iterator<Item = &WriteEntry> {
        self.ops
            .values()
            .filter(|op| op.wrote)
            .filter_map(|op| op.pay_write.as_ref())
    }

    pub(super) fn next_tick(&self) -> Option<Time> {
        self.ops
            .values()
            .map(|op| op.next_retx.min(op.deadline))
            .min()
    }
}

enum Goal {
    Pay { token: TokenId, to: NodeId },
    Get { owner: NodeId },
}

/// What a write phase completes.
enum Then {
    Paid {
        token: TokenId,
        tag: Tag,
    },
    NotOwned(TokenId),
    Tokens {
        owner: NodeId,
        tokens: Vec<(TokenId, u64)>,
        /// Tags of this client's own tokens, to cache on success.
        mine: Vec<(TokenId, Tag)>,
        /// `ClientOps::clock` when the read started.
        started: u64,
    },
    /// An earlier unknown write of the pay's token is now at a majority; the
    /// pay continues with its read phase.
    Resolved(TokenId),
}

enum Phase {
    Read {
        sel: Selection,
        replies: BTreeMap<NodeId, Vec<(TokenId, TokenState)>>,
    },
    Write {
        entries: Vec<WriteEntry>,
        acks: BTreeSet<NodeId>,
        then: Then,
    },
}

struct Op {
    goal: Goal,
    phase: Phase,
    rid: u64,
    /// The configuration the current phase runs in.
    config: Config,
    deadline: Time,
    next_retx: Time,
    backoff: u64,
    /// A write that could change the abstract state was sent.
    wrote: bool,
    /// The pay's own write, kept to resolve it later if it ends unknown.
    pay_write: Option<WriteEntry>,
    /// `ClientOps::clock` when the operation started.
    started: u64,
}

impl TokensNode {
    pub(super) fn client_request(
        &mut self,
        now: Time,
        req: ReqId,
        request: Request,
        out: &mut Outbox<Self>,
    ) {
        if let Err(error) = self.validate_request(&request) {
            out.replies.push((req, Reply::Failed { error }));
            return;
        }
        match request {
            Request::Pay { token, to } => {
                if self.ops.busy.contains(&token) {
                    self.ops
                        .waiting
                        .entry(token)
                        .or_default()
                        .push_back((req, Request::Pay { token, to }));
                    return;
                }
                self.ops.busy.insert(token);
                self.touch(token);
                let goal = Goal::Pay { token, to };
                if let Some(w) = self.ops.unresolved.get(&token).cloned() {
                    let then = Then::Resolved(token);
                    self.start_op(now, req, goal, write_phase(vec![w], then), false, out);
                } else if let Some(prev) = self.ops.owned.remove(&token) {
                    let Goal::Pay { to, .. } = &goal else { return };
                    let (phase, entry) = self.pay_phase(token, to.clone(), prev, out);
                    let rid = self.start_op(now, req, goal, phase, true, out);
                    if let Some(op) = self
                        .ops
                        .by_rid
                        .get(&rid)
                        .and_then(|r| self.ops.ops.get_mut(r))
                    {
                        op.pay_write = Some(entry);
                    }
                } else {
                    self.start_op(
                        now,
                        req,
                        goal,
                        read_phase(Selection::One(token)),
                        false,
                        out,
                    );
                }
            }
            Request::GetTokens { owner } => {
                let phase = read_phase(Selection::All);
                self.start_op(now, req, Goal::Get { owner }, phase, false, out);
            }
            Request::Transform => {}
        }
    }

    fn validate_request(&self, request: &Request) -> Result<(), OpError> {
        let known = |n: &NodeId| self.params.nodes.contains(n);
        match request {
            Request::Pay { token, to } => {
                if *token as usize >= self.params.tokens() {
                    return Err(OpError::UnknownToken(*token));
                }
                if !known(to) {
                    return Err(OpError::UnknownNode(to.clone()));
                }
                if self.config.is_server(&self.id) {
                    return Err(OpError::ServersCannotPay);
                }
                if self.config.is_server(to) {
                    return Err(OpError::NotAClient(to.clone()));
                }
            }
            Request::GetTokens { owner } => {
                if !known(owner) {
                    return Err(OpError::UnknownNode(owner.clone()));
                }
                if self.config.is_server(&self.id) {
                    return Err(OpError::ServersCannotGetTokens);
                }
            }
            Request::Transform => {}
        }
        Ok(())
    }

    fn note_written(&mut self, token: TokenId, tag: Tag) {
        let e = self.ops.written.entry(token).or_insert_with(|| tag.clone());
        if tag > *e {
            *e = tag;
        }
    }

    /// A payer tells us we own `token` at `tag`. Cached only if it is newer
    /// than anything we wrote or know, and no pay of ours is in the way.
    pub(super) fn on_gift(&mut self, from: &NodeId, token: TokenId, tag: Tag) {
        let newer = |t: Option<&Tag>| t.is_none_or(|t| tag > *t);
        if tag.writer != *from
            || token as usize >= self.params.tokens()
            || self.config.is_server(&self.id)
            || self.ops.busy.contains(&token)
            || self.ops.unresolved.contains_key(&token)
            || !newer(self.ops.written.get(&token))
            || !newer(self.ops.owned.get(&token))
        {
            return;
        }
        self.ops.owned.insert(token, tag);
    }

    /// No pay of `token` is in flight, and none started or ended since the
    /// clock read `started`: a tag read since then is still the token's tag.
    fn untouched_since(&self, token: TokenId, started: u64) -> bool {
        !self.ops.busy.contains(&token)
            && self.ops.touched.get(&token).is_none_or(|&c| c <= started)
    }

    /// Marks a pay of `token` starting or ending, for the owned-tag cache.
    fn touch(&mut self, token: TokenId) {
        self.ops.clock += 1;
        self.ops.touched.insert(token, self.ops.clock);
    }

    /// The write phase of a pay of `token` to `to` whose current tag is `prev`.
    fn pay_phase(
        &mut self,
        token: TokenId,
        to: NodeId,
        prev: Tag,
        out: &mut Outbox<Self>,
    ) -> (Phase, WriteEntry) {
        let tag = Tag {
            version: prev.version + 1,
            writer: self.id.clone(),
            nonce: self.next_nonce(out),
        };
        let entry = WriteEntry {
            token,
            tag: tag.clone(),
            owner: to,
            prev: Some(prev),
        };
        // Durable before the write leaves (records of a batch are written
        // first): a client killed mid-pay resolves this write after its
        // restart, before it writes the token again, as if it had ended
        // unknown. Cleared when the pay is acknowledged.
        out.records.push(Record::Unresolved {
            entry: entry.clone(),
        });
        (
            write_phase(vec![entry.clone()], Then::Paid { token, tag }),
            entry,
        )
    }

    /// Registers an operation in its first phase and sends it; returns its rid.
    fn start_op(
        &mut self,
        now: Time,
        req: ReqId,
        goal: Goal,
        phase: Phase,
        wrote: bool,
        out: &mut Outbox<Self>,
    ) -> u64 {
        let rid = self.rid();
        let op = Op {
            goal,
            phase,
            rid,
            config: self.config.clone(),
            deadline: now + self.params.op_deadline_us,
            next_retx: now,
            backoff: self.params.retransmit_us,
            wrote,
            pay_write: None,
            started: self.ops.clock,
        };
        self.ops.by_rid.insert(rid, req);
        self.ops.ops.insert(req, op);
        self.transmit(now, req, out);
        rid
    }

    /// Sends the current phase to every server of its configuration that has
    /// not answered yet, and schedules the next retransmission.
    fn transmit(&mut self, now: Time, req: ReqId, out: &mut Outbox<Self>) {
        let Some(op) = self.ops.ops.get_mut(&req) else {
            return;
        };
        let epoch = op.config.epoch;
        let rid = op.rid;
        let (msg, targets) = match &op.phase {
            Phase::Read { sel, replies } => (
                Msg::Read {
                    rid,
                    epoch,
                    sel: sel.clone(),
                },
                unanswered(&op.config.servers, |s| replies.contains_key(s)),
            ),
            Phase::Write { entries, acks, .. } => (
                Msg::Write {
                    rid,
                    epoch,
                    entries: entries.clone(),
                },
                unanswered(&op.config.servers, |s| acks.contains(s)),
            ),
        };
        op.next_retx = now + op.backoff;
        op.backoff = (op.backoff * 2).min(self.params.retransmit_max_us);
        for s in targets {
            self.send(&s, msg.clone(), out);
        }
    }

    pub(super) fn client_read_ok(
        &mut self,
        now: Time,
        from: &NodeId,
        rid: u64,
        entries: Vec<(TokenId, TokenState)>,
        out: &mut Outbox<Self>,
    ) {
        let Some(&req) = self.ops.by_rid.get(&rid) else {
            return;
        };
        let Some(op) = self.ops.ops.get_mut(&req) else {
            return;
        };
        if !op.config.is_server(from) {
            return;
        }
        let majority = op.config.majority();
        let Phase::Read { replies, .. } = &mut op.phase else {
            return;
        };
        replies.insert(from.clone(), entries);
        if replies.len() >= majority {
            self.finish_read(now, req, out);
        }
    }

    pub(super) fn client_write_ok(
        &mut self,
        now: Time,
        from: &NodeId,
        rid: u64,
        out: &mut Outbox<Self>,
    ) {
        let Some(&req) = self.ops.by_rid.get(&rid) else {
            return;
        };
        let Some(op) = self.ops.ops.get_mut(&req) else {
            return;
        };
        if !op.config.is_server(from) {
            return;
        }
        let majority = op.config.majority();
        let Phase::Write { acks, .. } = &mut op.phase else {
            return;
        };
        acks.insert(from.clone());
        if acks.len() >= majority {
            self.finish_write(now, req, out);
        }
    }

    pub(super) fn client_refused(
        &mut self,
        now: Time,
        from: &NodeId,
        rid: u64,
        why: &Refusal,
        out: &mut Outbox<Self>,
    ) {
        let Some(&req) = self.ops.by_rid.get(&rid) else {
            return;
        };
        if self.params.bugs.errors_as_acks {
            // Planted bug: the seed counted any reply toward the majority.
            let is_write = matches!(
                self.ops.ops.get(&req).map(|o| &o.phase),
                Some(Phase::Write { .. })
            );
            if is_write {
                return self.client_write_ok(now, from, rid, out);
            }
        }
        // A stale epoch was handled by `learn`, which restarted the phase in
        // the new configuration; other refusals are retried until the deadline.
        let _ = why;
    }

    /// A new configuration restarts every operation's current phase in it.
    /// Replies gathered in the old epoch are dropped: a quorum must come from
    /// one configuration.
    pub(super) fn client_config_changed(&mut self, now: Time, out: &mut Outbox<Self>) {
        let reqs: Vec<ReqId> = self.ops.ops.keys().copied().collect();
        for req in reqs {
            let rid = self.rid();
            let Some(op) = self.ops.ops.get_mut(&req) else {
                continue;
            };
            self.ops.by_rid.remove(&op.rid);
            self.ops.by_rid.insert(rid, req);
            op.rid = rid;
            op.config = self.config.clone();
            op.backoff = self.params.retransmit_us;
            match &mut op.phase {
                Phase::Read { replies, .. } => replies.clear(),
                Phase::Write { acks, .. } => acks.clear(),
            }
            self.transmit(now, req, out);
        }
    }

    fn finish_read(&mut self, now: Time, req: ReqId, out: &mut Outbox<Self>) {
        let Some(op) = self.ops.ops.get(&req) else {
            return;
        };
        let Phase::Read { replies, .. } = &op.phase else {
            return;
        };
        let majority = op.config.majority();
        // Newest state per token, and whether a majority already holds it.
        let mut best: BTreeMap<TokenId, (TokenState, usize)> = BTreeMap::new();
        for entries in replies.values() {
            for (t, s) in entries {
                match best.get_mut(t) {
                    Some((b, n)) if b.tag == s.tag => *n += 1,
                    Some((b, n)) if s.tag > b.tag => {
                        *b = s.clone();
                        *n = 1;
                    }
                    Some(_) => {}
                    None => {
                        best.insert(*t, (s.clone(), 1));
                    }
                }
            }
        }
        let write_back: Vec<WriteEntry> = if self.params.bugs.read_without_write_back {
            Vec::new()
        } else {
            best.iter()
                .filter(|(_, (_, n))| *n < majority)
                .map(|(t, (s, _))| WriteEntry {
                    token: *t,
                    tag: s.tag.clone(),
                    owner: s.owner.clone(),
                    prev: None,
                })
                .collect()
        };
        let started = op.started;
        let (phase, wrote, pay_write) = match &op.goal {
            Goal::Pay { token, to } => {
                let (token, to) = (*token, to.clone());
                let Some((state, _)) = best.get(&token) else {
                    return;
                };
                // Planted bug: without the owner check anyone may pay.
                if state.owner != self.id && !self.params.bugs.skip_owner_check {
                    (write_phase(write_back, Then::NotOwned(token)), false, None)
                } else {
                    let (phase, entry) = self.pay_phase(token, to, state.tag.clone(), out);
                    (phase, true, Some(entry))
                }
            }
            Goal::Get { owner } => {
                let tokens = best
                    .iter()
                    .filter(|(_, (s, _))| s.owner == *owner)
                    .map(|(t, (s, _))| (*t, s.tag.version))
                    .collect();
                // Candidates for the owned-tag cache; whether a pay overlapped
                // the read is decided when the whole read ends (`finish_then`).
                let mut mine: Vec<(TokenId, Tag)> = best
                    .iter()
                    .filter(|(_, (s, _))| s.owner == self.id)
                    .map(|(t, (s, _))| (*t, s.tag.clone()))
                    .collect();
                if self.params.bugs.stale_tag_cache {
                    // Planted bug: the overlap test runs now, so a pay that
                    // starts and ends during the write-back is not seen.
                    mine.retain(|(t, _)| self.untouched_since(*t, started));
                }
                let owner = owner.clone();
                let then = Then::Tokens {
                    owner,
                    tokens,
                    mine,
                    started,
                };
                (write_phase(write_back, then), false, None)
            }
        };
        self.enter_phase(now, req, phase, wrote, pay_write, out);
    }

    /// Moves an operation to its next phase, or completes it when that phase
    /// has nothing to write.
    fn enter_phase(
        &mut self,
        now: Time,
        req: ReqId,
        phase: Phase,
        wrote: bool,
        pay_write: Option<WriteEntry>,
        out: &mut Outbox<Self>,
    ) {
        let phase = match phase {
            Phase::Write { entries, then, .. } if entries.is_empty() => {
                return self.finish_then(now, req, then, out)
            }
            phase => phase,
        };
        let rid = self.rid();
        let backoff = self.params.retransmit_us;
        let Some(op) = self.ops.ops.get_mut(&req) else {
            return;
        };
        self.ops.by_rid.remove(&op.rid);
        self.ops.by_rid.insert(rid, req);
        op.rid = rid;
        op.wrote |= wrote;
        if pay_write.is_some() {
            op.pay_write = pay_write;
        }
        op.backoff = backoff;
        op.phase = phase;
        self.transmit(now, req, out);
    }

    /// A write phase is done: answer, or go on after a resolved write.
    fn finish_then(&mut self, now: Time, req: ReqId, then: Then, out: &mut Outbox<Self>) {
        match then {
            Then::Resolved(token) => {
                if let Some(w) = self.ops.unresolved.remove(&token) {
                    self.note_written(token, w.tag);
                }
                out.records.push(Record::Resolved { token });
                let phase = read_phase(Selection::One(token));
                self.enter_phase(now, req, phase, false, None, out);
            }
            Then::Tokens {
                owner,
                tokens,
                mine,
                started,
            } => {
                if owner == self.id {
                    // Only now is the read over: a pay of a token that started
                    // at any time since the read started (its write-back
                    // phase included) may have moved it past what we read.
                    for (t, tag) in mine {
                        if self.params.bugs.stale_tag_cache || self.untouched_since(t, started) {
                            self.ops.owned.insert(t, tag);
                        }
                    }
                }
                self.complete(now, req, Reply::Tokens { owner, tokens }, out);
            }
            Then::Paid { token, tag } => {
                self.note_written(token, tag.clone());
                out.records.push(Record::Resolved { token });
                let to = match self.ops.ops.get(&req).map(|o| &o.goal) {
                    Some(Goal::Pay { to, .. }) => to.clone(),
                    _ => return,
                };
                self.complete(
                    now,
                    req,
                    Reply::Paid {
                        token,
                        tag: tag.clone(),
                    },
                    out,
                );
                if to == self.id {
                    self.on_gift(&to, token, tag);
                } else {
                    self.send(&to, Msg::Gift { token, tag }, out);
                }
            }
            Then::NotOwned(t) => {
                let error = OpError::NotOwned(t);
                self.complete(now, req, Reply::Failed { error }, out)
            }
        }
    }

    fn finish_write(&mut self, now: Time, req: ReqId, out: &mut Outbox<Self>) {
        let Some(op) = self.ops.ops.get_mut(&req) else {
            return;
        };
        let then = match &mut op.phase {
            Phase::Write { then, .. } => std::mem::replace(then, Then::NotOwned(0)),
            Phase::Read { .. } => return,
        };
        self.finish_then(now, req, then, out);
    }

    fn complete(&mut self, now: Time, req: ReqId, reply: Reply, out: &mut Outbox<Self>) {
        let Some(op) = self.ops.ops.remove(&req) else {
            return;
        };
        self.ops.by_rid.remove(&op.rid);
        if let (Goal::Pay { token, .. }, Reply::Unknown { .. }, Some(w)) =
            (&op.goal, &reply, op.pay_write)
        {
            self.ops.unresolved.insert(*token, w.clone());
            out.records.push(Record::Unresolved { entry: w });
        }
        out.replies.push((req, reply));
        if let Goal::Pay { token, .. } = op.goal {
            self.touch(token);
            self.ops.owned.remove(&token);
            self.ops.busy.remove(&token);
            // Start the next queued pay of the token; one refused at once
            // (say the client became a server meanwhile) must not strand the
            // ones behind it.
            while !self.ops.busy.contains(&token) {
                let Some(queue) = self.ops.waiting.get_mut(&token) else {
                    break;
                };
                let next = queue.pop_front();
                if queue.is_empty() {
                    self.ops.waiting.remove(&token);
                }
                let Some((req, request)) = next else { break };
                self.client_request(now, req, request, out);
            }
        }
    }

    pub(super) fn tick_client(&mut self, now: Time, out: &mut Outbox<Self>) {
        let due: Vec<(ReqId, bool)> = self
            .ops
            .ops
            .iter()
            .filter(|(_, op)| now >= op.next_retx || now >= op.deadline)
            .map(|(r, op)| (*r, now >= op.deadline))
            .collect();
        for (req, expired) in due {
            if !expired {
                self.transmit(now, req, out);
                continue;
            }
            let Some(op) = self.ops.ops.get(&req) else {
                continue;
            };
            let phase = match op.phase {
                Phase::Read { .. } => "read",
                Phase::Write { .. } => "write",
            };
            let what = format!(
                "{phase} phase in epoch {} ({} servers) before the deadline",
                op.config.epoch,
                op.config.servers.len()
            );
            let reply = if op.wrote {
                Reply::Unknown {
                    reason: format!("no majority acknowledged the write: {what}"),
                }
            } else {
                Reply::Failed {
                    error: OpError::NoQuorum(what),
                }
            };
            self.complete(now, req, reply, out);
        }
    }
}

fn read_phase(sel: Selection) -> Phase {
    Phase::Read {
        sel,
        replies: BTreeMap::new(),
    }
}

fn write_phase(entries: Vec<WriteEntry>, then: Then) -> Phase {
    Phase::Write {
        entries,
        acks: BTreeSet::new(),
        then,
    }
}
