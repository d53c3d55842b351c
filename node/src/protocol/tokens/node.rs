//! The token node: one state machine for every role, because `transform` moves
//! a node between server and client at runtime. This file holds the dispatch,
//! the server (register replica and Paxos acceptor) and configuration learning;
//! `client.rs` runs operations and `reconfig.rs` coordinates a transform.

use super::client::ClientOps;
use super::reconfig::Coordinator;
use super::*;
use crate::protocol::{Core, Outbox, ReqId, Time};
use rand::RngCore;
use std::collections::VecDeque;
use std::sync::Arc;

/// Nonces are reserved in blocks so a restart never reuses one without a
/// record per write.
const NONCE_BLOCK: u64 = 1 << 16;
/// Bound on messages a node sends itself within one input.
const LOOPBACK_LIMIT: usize = 10_000;

pub struct TokensNode {
    pub(super) id: NodeId,
    pub(super) params: Arc<Params>,
    /// The newest configuration this node knows of.
    pub(super) config: Config,
    /// Present exactly when this node serves `config` (it installed it).
    pub(super) table: Option<Vec<TokenState>>,
    /// Paxos acceptor state for the epoch after `config.epoch`.
    pub(super) promised: Option<(u64, BallotNo)>,
    pub(super) accepted: Option<(u64, BallotNo, Config)>,
    /// When this server stopped serving because of a promise.
    pub(super) frozen_since: Option<Time>,
    /// When to ask peers for state again while a member but not installed.
    pub(super) fetch_at: Option<Time>,
    pub(super) ops: ClientOps,
    pub(super) coord: Option<Coordinator>,
    pub(super) nonce: u64,
    pub(super) nonce_reserved: u64,
    pub(super) next_rid: u64,
    loopback: VecDeque<Msg>,
}

impl TokensNode {
    pub fn new(id: NodeId, params: Arc<Params>) -> Self {
        let mut servers = params.initial_servers.clone();
        servers.sort();
        servers.dedup();
        let config = Config { epoch: 0, servers };
        let table = config.is_server(&id).then(|| {
            params
                .initial_owners
                .iter()
                .map(|owner| TokenState {
                    tag: Tag::initial(),
                    owner: owner.clone(),
                })
                .collect()
        });
        TokensNode {
            id,
            params,
            config,
            table,
            promised: None,
            accepted: None,
            frozen_since: None,
            fetch_at: None,
            ops: ClientOps::default(),
            coord: None,
            nonce: 0,
            nonce_reserved: 0,
            next_rid: 1,
            loopback: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The server's table, when it serves the current configuration.
    pub fn table(&self) -> Option<&[TokenState]> {
        self.table.as_deref()
    }

    pub fn is_serving(&self) -> bool {
        self.table.is_some() && !self.is_frozen()
    }

    pub fn is_frozen(&self) -> bool {
        matches!(&self.promised, Some((e, _)) if *e == self.config.epoch + 1)
    }

    pub fn role(&self) -> &'static str {
        if self.config.is_server(&self.id) {
            "server"
        } else {
            "client"
        }
    }

    pub fn id_str(&self) -> &str {
        &self.id
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub(super) fn rid(&mut self) -> u64 {
        self.next_rid += 1;
        self.next_rid
    }

    pub(super) fn next_nonce(&mut self, out: &mut Outbox<Self>) -> u64 {
        self.nonce += 1;
        if self.nonce >= self.nonce_reserved {
            self.nonce_reserved = self.nonce + NONCE_BLOCK;
            out.records.push(Record::NonceReserved {
                upto: self.nonce_reserved,
            });
        }
        // A nonce is only used below a reservation that is durable (or in
        // this batch's records), so a restart never reuses one.
        debug_assert!(self.nonce < self.nonce_reserved);
        self.nonce
    }

    /// What every handler relies on and leaves true. Checked after every
    /// input in debug builds (tests and the simulator), so a broken invariant
    /// stops at the input that broke it.
    fn assert_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let servers = &self.config.servers;
        assert!(
            servers.windows(2).all(|w| w[0] < w[1]),
            "{}: servers of epoch {} not sorted and distinct: {servers:?}",
            self.id,
            self.config.epoch
        );
        if let Some(table) = &self.table {
            assert!(
                self.config.is_server(&self.id),
                "{}: holds a table of epoch {} without being its server",
                self.id,
                self.config.epoch
            );
            assert_eq!(
                table.len(),
                self.params.tokens(),
                "{}: table has {} tokens",
                self.id,
                table.len()
            );
            assert!(
                table.iter().all(|t| t.tag.version >= 1),
                "{}: a token below version 1",
                self.id
            );
        }
        if let Some((e, _)) = &self.promised {
            assert!(
                *e > self.config.epoch,
                "{}: a promise for epoch {e} at epoch {}",
                self.id,
                self.config.epoch
            );
        }
        if let Some((e, _, c)) = &self.accepted {
            assert!(
                *e > self.config.epoch && c.epoch == *e,
                "{}: accepted epoch {e} (config epoch {}) at epoch {}",
                self.id,
                c.epoch,
                self.config.epoch
            );
        }
        assert!(
            self.nonce <= self.nonce_reserved,
            "{}: nonce past its reservation",
            self.id
        );
    }

    /// Sends to a peer, or to this node itself through the loopback queue.
    pub(super) fn send(&mut self, to: &str, msg: Msg, out: &mut Outbox<Self>) {
        if to == self.id {
            self.loopback.push_back(msg);
        } else {
            out.sends.push((to.to_string(), msg));
        }
    }

    fn drain_loopback(&mut self, now: Time, out: &mut Outbox<Self>) {
        let me = self.id.clone();
        for _ in 0..LOOPBACK_LIMIT {
            let Some(msg) = self.loopback.pop_front() else {
                return;
            };
            self.dispatch(now, &me, msg, out);
        }
    }

    fn dispatch(&mut self, now: Time, from: &NodeId, msg: Msg, out: &mut Outbox<Self>) {
        match msg {
            Msg::Read { rid, epoch, sel } => self.on_read(from, rid, epoch, sel, out),
            Msg::Write {
                rid,
                epoch,
                entries,
            } => self.on_write(from, rid, epoch, entries, out),
            Msg::ReadOk { rid, entries } => self.client_read_ok(now, from, rid, entries, out),
            Msg::WriteOk { rid } => self.client_write_ok(now, from, rid, out),
            Msg::Refused { rid, why } => {
                // Refusals go to the operation first: the planted
                // errors-as-acks bug must see them before the epoch moves.
                self.client_refused(now, from, rid, &why, out);
                self.coord_refused(now, from, rid, &why, out);
                match &why {
                    Refusal::StaleEpoch(config) => self.learn(now, config.clone(), out),
                    Refusal::NotReady { epoch } if *epoch < self.config.epoch => {
                        let config = self.config.clone();
                        self.send(from, Msg::News { config }, out);
                    }
                    _ => {}
                }
            }
            Msg::Prepare { rid, epoch, ballot } => {
                self.on_prepare(now, from, rid, epoch, ballot, out)
            }
            Msg::Accept {
                rid,
                ballot,
                config,
            } => self.on_accept(now, from, rid, ballot, config, out),
            Msg::Install {
                rid,
                config,
                tokens,
            } => self.on_install(now, from, rid, config, tokens, out),
            Msg::Promise {
                rid,
                epoch,
                tokens,
                accepted,
            } => self.coord_promise(now, from, rid, epoch, tokens, accepted, out),
            Msg::Accepted { rid } => self.coord_accepted(now, from, rid, out),
            Msg::Nack { rid, promised } => self.coord_nack(now, rid, promised),
            Msg::Installed { rid, epoch } => self.coord_installed(now, from, rid, epoch, out),
            Msg::News { config } => self.learn(now, config, out),
            Msg::Fetch { epoch } => self.on_fetch(from, epoch, out),
            Msg::Gift { token, tag } => self.on_gift(from, token, tag),
        }
    }

    /// Whether this node may answer a request sent in `epoch`.
    fn serve_check(&self, epoch: u64) -> Result<(), Refusal> {
        if epoch < self.config.epoch {
            return Err(Refusal::StaleEpoch(self.config.clone()));
        }
        if epoch > self.config.epoch || self.table.is_none() {
            return Err(Refusal::NotReady {
                epoch: self.config.epoch,
            });
        }
        if self.is_frozen() {
            return Err(Refusal::Frozen);
        }
        Ok(())
    }

    fn refuse(&mut self, to: &NodeId, rid: u64, why: Refusal, out: &mut Outbox<Self>) {
        self.send(to, Msg::Refused { rid, why }, out);
    }

    fn on_read(
        &mut self,
        from: &NodeId,
        rid: u64,
        epoch: u64,
        sel: Selection,
        out: &mut Outbox<Self>,
    ) {
        if let Err(why) = self.serve_check(epoch) {
            return self.refuse(from, rid, why, out);
        }
        let Some(table) = &self.table else { return };
        let entries = match sel {
            Selection::One(t) => match table.get(t as usize) {
                Some(s) => vec![(t, s.clone())],
                None => {
                    return self.refuse(
                        from,
                        rid,
                        Refusal::Invalid(format!("unknown token {t}")),
                        out,
                    )
                }
            },
            Selection::All => table
                .iter()
                .enumerate()
                .map(|(i, s)| (i as TokenId, s.clone()))
                .collect(),
        };
        self.send(from, Msg::ReadOk { rid, entries }, out);
    }

    /// Checks one write against the server's table. Pays (with `prev`) must
    /// come from the writer named in the tag, advance the version by one, go to
    /// a client, and, where this server can tell, come from the owner.
    fn validate(&self, from: &NodeId, table: &[TokenState], e: &WriteEntry) -> Result<(), Refusal> {
        let Some(local) = table.get(e.token as usize) else {
            return Err(Refusal::Invalid(format!("unknown token {}", e.token)));
        };
        if !self.params.nodes.contains(&e.owner) {
            return Err(Refusal::Invalid(format!("unknown owner {}", e.owner)));
        }
        let Some(prev) = &e.prev else { return Ok(()) };
        if e.tag.writer != *from || e.tag.version != prev.version + 1 {
            return Err(Refusal::Invalid(format!(
                "malformed tag for token {}",
                e.token
            )));
        }
        if self.config.is_server(&e.owner) {
            return Err(Refusal::Invalid(format!("{} is not a client", e.owner)));
        }
        if !self.params.bugs.skip_owner_check && local.tag == *prev && local.owner != *from {
            return Err(Refusal::NotOwner { token: e.token });
        }
        // Only the owner at `prev` writes the next version and it resolves
        // its unknown writes before writing again, so two different tags of
        // one version mean a payer wrote from a stale read: refuse, so the
        // pay ends unknown instead of paid twice.
        // The planted `stale_tag_cache` is the code before this fix: both
        // this check and the client's are off.
        if !self.params.bugs.stale_tag_cache
            && local.tag.version == e.tag.version
            && local.tag != e.tag
        {
            return Err(Refusal::Conflict {
                token: e.token,
                version: e.tag.version,
            });
        }
        Ok(())
    }

    fn on_write(
        &mut self,
        from: &NodeId,
        rid: u64,
        epoch: u64,
        entries: Vec<WriteEntry>,
        out: &mut Outbox<Self>,
    ) {
        if let Err(why) = self.serve_check(epoch) {
            return self.refuse(from, rid, why, out);
        }
        let Some(table) = self.table.as_ref() else {
            return;
        };
        if let Some(why) = entries
            .iter()
            .find_map(|e| self.validate(from, table, e).err())
        {
            return self.refuse(from, rid, why, out);
        }
        let Some(table) = self.table.as_mut() else {
            return;
        };
        for e in entries {
            // `validate` refused unknown tokens for the whole batch.
            debug_assert!(
                (e.token as usize) < table.len(),
                "validated token {}",
                e.token
            );
            let local = &mut table[e.token as usize];
            if e.tag > local.tag {
                *local = TokenState {
                    tag: e.tag,
                    owner: e.owner,
                };
                out.records.push(Record::Token {
                    token: e.token,
                    state: local.clone(),
                });
            }
        }
        self.send(from, Msg::WriteOk { rid }, out);
    }

    fn on_prepare(
        &mut self,
        now: Time,
        from: &NodeId,
        rid: u64,
        epoch: u64,
        ballot: BallotNo,
        out: &mut Outbox<Self>,
    ) {
        if let Err(why) = self.acceptor_check(epoch) {
            return self.refuse(from, rid, why, out);
        }
        if let Some((e, p)) = &self.promised {
            if *e == epoch && *p > ballot {
                let promised = p.clone();
                return self.send(from, Msg::Nack { rid, promised }, out);
            }
        }
        self.promised = Some((epoch, ballot.clone()));
        self.frozen_since.get_or_insert(now);
        out.records.push(Record::Promised { epoch, ballot });
        let accepted = match &self.accepted {
            Some((e, b, c)) if *e == epoch => Some((b.clone(), c.clone())),
            _ => None,
        };
        let tokens = self.table.clone().unwrap_or_default();
        self.send(
            from,
            Msg::Promise {
                rid,
                epoch,
                tokens,
                accepted,
            },
            out,
        );
    }

    /// Only an installed server of `epoch - 1` votes on configuration `epoch`.
    fn acceptor_check(&self, epoch: u64) -> Result<(), Refusal> {
        if epoch <= self.config.epoch {
            return Err(Refusal::StaleEpoch(self.config.clone()));
        }
        if epoch > self.config.epoch + 1 || self.table.is_none() {
            return Err(Refusal::NotReady {
                epoch: self.config.epoch,
            });
        }
        Ok(())
    }

    fn on_accept(
        &mut self,
        now: Time,
        from: &NodeId,
        rid: u64,
        ballot: BallotNo,
        config: Config,
        out: &mut Outbox<Self>,
    ) {
        let epoch = config.epoch;
        if let Err(why) = self.acceptor_check(epoch) {
            return self.refuse(from, rid, why, out);
        }
        if let Some((e, p)) = &self.promised {
            if *e == epoch && *p > ballot {
                let promised = p.clone();
                return self.send(from, Msg::Nack { rid, promised }, out);
            }
        }
        self.promised = Some((epoch, ballot.clone()));
        self.frozen_since.get_or_insert(now);
        self.accepted = Some((epoch, ballot.clone(), config.clone()));
        out.records.push(Record::Accepted {
            epoch,
            ballot,
            config,
        });
        self.send(from, Msg::Accepted { rid }, out);
    }

    fn on_install(
        &mut self,
        now: Time,
        from: &NodeId,
        rid: u64,
        config: Config,
        tokens: Vec<TokenState>,
        out: &mut Outbox<Self>,
    ) {
        if config.epoch < self.config.epoch
            || (config.epoch == self.config.epoch && self.table.is_some())
        {
            if config.epoch == self.config.epoch {
                let epoch = config.epoch;
                self.send(from, Msg::Installed { rid, epoch }, out);
            }
            return;
        }
        if !config.is_server(&self.id) {
            return self.learn(now, config, out);
        }
        if tokens.len() != self.params.tokens() {
            return;
        }
        self.install(config, tokens, out);
        let epoch = self.config.epoch;
        self.send(from, Msg::Installed { rid, epoch }, out);
    }

    fn install(&mut self, config: Config, mut tokens: Vec<TokenState>, out: &mut Outbox<Self>) {
        debug_assert!(
            config.epoch >= self.config.epoch,
            "{}: installing epoch {} over {}",
            self.id,
            config.epoch,
            self.config.epoch
        );
        debug_assert_eq!(
            tokens.len(),
            self.params.tokens(),
            "{}: installed table size",
            self.id
        );
        if let Some(old) = &self.table {
            for (new, old) in tokens.iter_mut().zip(old) {
                if old.tag > new.tag {
                    *new = old.clone();
                }
            }
        }
        self.clear_acceptor(config.epoch);
        self.config = config.clone();
        self.table = Some(tokens.clone());
        self.fetch_at = None;
        out.records.push(Record::Installed { config, tokens });
    }

    fn clear_acceptor(&mut self, epoch: u64) {
        if matches!(&self.promised, Some((e, _)) if *e <= epoch) {
            self.promised = None;
            self.frozen_since = None;
        }
        if matches!(&self.accepted, Some((e, _, _)) if *e <= epoch) {
            self.accepted = None;
        }
    }

    /// Adopts a newer configuration. A member that has not installed it fetches
    /// state from a serving peer before it answers anything.
    pub(super) fn learn(&mut self, now: Time, config: Config, out: &mut Outbox<Self>) {
        if config.epoch <= self.config.epoch {
            return;
        }
        self.clear_acceptor(config.epoch);
        self.config = config.clone();
        self.table = None;
        out.records.push(Record::Learned { config });
        if self.config.is_server(&self.id) {
            self.fetch_at = Some(now);
        } else {
            self.fetch_at = None;
        }
        self.client_config_changed(now, out);
    }

    fn on_fetch(&mut self, from: &NodeId, epoch: u64, out: &mut Outbox<Self>) {
        if epoch < self.config.epoch {
            let config = self.config.clone();
            return self.send(from, Msg::News { config }, out);
        }
        if epoch == self.config.epoch {
            if let Some(tokens) = self.table.clone() {
                let config = self.config.clone();
                self.send(
                    from,
                    Msg::Install {
                        rid: 0,
                        config,
                        tokens,
                    },
                    out,
                );
            }
        }
    }

    fn tick_server(&mut self, now: Time, out: &mut Outbox<Self>) {
        if self.table.is_some() || !self.config.is_server(&self.id) {
            self.fetch_at = None;
        }
        if let Some(at) = self.fetch_at {
            if now >= at {
                let epoch = self.config.epoch;
                let peers: Vec<NodeId> = self
                    .config
                    .servers
                    .iter()
                    .filter(|s| **s != self.id)
                    .cloned()
                    .collect();
                for p in peers {
                    self.send(&p, Msg::Fetch { epoch }, out);
                }
                self.fetch_at = Some(now + self.params.retransmit_max_us);
            }
        }
        if let Some(at) = self.recovery_at() {
            if now >= at {
                // A coordinator froze us and vanished: finish whatever it may
                // have chosen, or move on with the same servers.
                self.frozen_since = Some(now);
                let servers = self.config.servers.clone();
                self.start_coordinator(now, None, servers, out);
            }
        }
    }

    /// When a frozen server starts recovery. Servers are staggered by their
    /// rank so that they do not duel with competing ballots.
    fn recovery_at(&self) -> Option<Time> {
        let since = self.frozen_since?;
        if !self.is_frozen() || self.coord.is_some() {
            return None;
        }
        let n = self.config.servers.len().max(1) as u64;
        let rank = self
            .config
            .servers
            .iter()
            .position(|s| *s == self.id)
            .unwrap_or(0) as u64;
        let base = self.params.reconfig_recovery_us;
        Some(since + base + base * rank / n)
    }

    fn apply_record(&mut self, r: Record) {
        match r {
            Record::Token { token, state } => {
                if let Some(t) = self.table.as_mut().and_then(|t| t.get_mut(token as usize)) {
                    if state.tag > t.tag {
                        *t = state;
                    }
                }
            }
            Record::Installed { config, tokens } => {
                self.clear_acceptor(config.epoch);
                self.config = config;
                self.table = Some(tokens);
            }
            Record::Learned { config } => {
                self.clear_acceptor(config.epoch);
                self.config = config;
                self.table = None;
            }
            Record::Promised { epoch, ballot } => self.promised = Some((epoch, ballot)),
            Record::Accepted {
                epoch,
                ballot,
                config,
            } => {
                self.promised = Some((epoch, ballot.clone()));
                self.accepted = Some((epoch, ballot, config));
            }
            Record::NonceReserved { upto } => {
                self.nonce_reserved = self.nonce_reserved.max(upto);
                self.nonce = self.nonce_reserved;
            }
            Record::Unresolved { entry } => {
                self.ops.unresolved.insert(entry.token, entry);
            }
            Record::Resolved { token } => {
                self.ops.unresolved.remove(&token);
            }
        }
    }

    fn after_input(&mut self, now: Time, out: &mut Outbox<Self>) {
        self.drain_loopback(now, out);
        self.assert_invariants();
    }
}

impl Core for TokensNode {
    type Msg = Msg;
    type Request = Request;
    type Reply = Reply;
    type Record = Record;
    type State = TokensState;

    fn id(&self) -> &NodeId {
        &self.id
    }

    fn on_message(
        &mut self,
        now: Time,
        from: &NodeId,
        msg: Msg,
        _rng: &mut dyn RngCore,
        out: &mut Outbox<Self>,
    ) {
        self.dispatch(now, from, msg, out);
        self.after_input(now, out);
    }

    fn on_request(
        &mut self,
        now: Time,
        req: ReqId,
        request: Request,
        _rng: &mut dyn RngCore,
        out: &mut Outbox<Self>,
    ) {
        match request {
            Request::Transform => self.transform(now, req, out),
            other => self.client_request(now, req, other, out),
        }
        self.after_input(now, out);
    }

    fn on_tick(&mut self, now: Time, _rng: &mut dyn RngCore, out: &mut Outbox<Self>) {
        // The coordinator first: when it gives up, a frozen server's
        // recovery must be able to start in this same tick.
        self.tick_coordinator(now, out);
        self.tick_client(now, out);
        self.tick_server(now, out);
        self.after_input(now, out);
    }

    fn next_tick(&self) -> Option<Time> {
        let frozen = self.recovery_at();
        [
            self.fetch_at,
            frozen,
            self.ops.next_tick(),
            self.coord.as_ref().map(|c| c.next_tick()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn recover(&mut self, records: Vec<Record>) {
        for r in records {
            self.apply_record(r);
        }
        if self.table.is_none() && self.config.is_server(&self.id) {
            self.fetch_at = Some(0);
        }
        if self.is_frozen() {
            self.frozen_since = Some(0);
        }
        self.assert_invariants();
    }

    fn compact(&self) -> Vec<Record> {
        let mut out = Vec::new();
        match &self.table {
            Some(tokens) => out.push(Record::Installed {
                config: self.config.clone(),
                tokens: tokens.clone(),
            }),
            None => out.push(Record::Learned {
                config: self.config.clone(),
            }),
        }
        if let Some((epoch, ballot)) = &self.promised {
            out.push(Record::Promised {
                epoch: *epoch,
                ballot: ballot.clone(),
            });
        }
        if let Some((epoch, ballot, config)) = &self.accepted {
            out.push(Record::Accepted {
                epoch: *epoch,
                ballot: ballot.clone(),
                config: config.clone(),
            });
        }
        out.push(Record::NonceReserved {
            upto: self.nonce_reserved,
        });
        out.extend(
            self.ops
                .unresolved
                .values()
                .chain(self.ops.in_flight_writes())
                .map(|entry| Record::Unresolved {
                    entry: entry.clone(),
                }),
        );
        out
    }

    fn state(&self) -> TokensState {
        let tokens = self.table.as_ref().map(|t| {
            t.iter()
                .enumerate()
                .map(|(i, s)| TokenRow {
                    token: i as TokenId,
                    version: s.tag.version,
                    writer: s.tag.writer.clone(),
                    nonce: s.tag.nonce,
                    owner: s.owner.clone(),
                })
                .collect()
        });
        TokensState {
            epoch: self.config.epoch,
            servers: self.config.servers.clone(),
            serving: self.is_serving(),
            frozen: self.is_frozen(),
            tokens,
            pending_ops: self.ops.len(),
            transforming: self.coord.is_some(),
        }
    }
}
