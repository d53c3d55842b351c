//! Sans-IO protocol cores and the interface every driver (the QUIC runtime and
//! the seeded simulator) uses to run them.
//!
//! A core is a deterministic state machine: it never reads a clock, opens a
//! socket or draws randomness by itself. Every input comes with `now` and an
//! RNG, and every effect is an entry in an [`Outbox`]. That is what lets the
//! same code run over QUIC and in a simulator where a failing seed replays
//! exactly.

pub mod replication;
pub mod smr;
pub mod snapshot;
pub mod standby;
pub mod tokens;

use rand::RngCore;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;

/// A node's name as written in the cluster file (`s1`, `c4`, ...).
pub type NodeId = String;

/// Microseconds on a monotonic clock chosen by the driver.
pub type Time = u64;

/// Identifies one client request inside one node, chosen by the driver.
pub type ReqId = u64;

/// Messages name their kind so fault rules and metrics can match on it.
/// Systems derive both from the message enum (strum's `IntoStaticStr` and
/// `VariantNames`, snake_case) so the list cannot drift from the variants.
pub trait MessageKind {
    /// Every kind, for fault-rule validation and metrics.
    const KINDS: &'static [&'static str];
    fn kind(&self) -> &'static str;
}

/// Effects produced by one call into a core. Drivers must make `records`
/// durable before they release `sends` and `replies`: a reply may acknowledge
/// data that only the record holds.
pub struct Outbox<C: Core + ?Sized> {
    pub sends: Vec<(NodeId, C::Msg)>,
    pub replies: Vec<(ReqId, C::Reply)>,
    pub records: Vec<C::Record>,
}

impl<C: Core + ?Sized> Default for Outbox<C> {
    fn default() -> Self {
        Self {
            sends: Vec::new(),
            replies: Vec::new(),
            records: Vec::new(),
        }
    }
}

impl<C: Core + ?Sized> Outbox<C> {
    pub fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.replies.is_empty() && self.records.is_empty()
    }
}

/// The contract between a protocol core and its drivers.
pub trait Core {
    type Msg: Clone + Debug + Serialize + DeserializeOwned + MessageKind + Send + 'static;
    type Request: Clone + Debug + Send + 'static;
    type Reply: Clone + Debug + Send + 'static;
    /// A durable log entry; replaying a node's records rebuilds its state.
    type Record: Clone + Debug + Serialize + DeserializeOwned + Send + 'static;

    fn id(&self) -> &NodeId;

    fn on_message(
        &mut self,
        now: Time,
        from: &NodeId,
        msg: Self::Msg,
        rng: &mut dyn RngCore,
        out: &mut Outbox<Self>,
    );

    fn on_request(
        &mut self,
        now: Time,
        req: ReqId,
        request: Self::Request,
        rng: &mut dyn RngCore,
        out: &mut Outbox<Self>,
    );

    /// Called when `now >= next_tick()`; retransmissions and deadlines live here.
    fn on_tick(&mut self, now: Time, rng: &mut dyn RngCore, out: &mut Outbox<Self>);

    /// The earliest time the core wants `on_tick`, if any.
    fn next_tick(&self) -> Option<Time>;

    /// Rebuild state from a durable log, before any other input.
    fn recover(&mut self, records: Vec<Self::Record>);

    /// A compact set of records equivalent to everything logged so far, so a
    /// driver can rewrite its log without growing it forever.
    fn compact(&self) -> Vec<Self::Record>;

    /// The node's protocol state, served at `/state` for checkers and the
    /// client verbs (beside the generic id and role).
    type State: Clone + Debug + Serialize + DeserializeOwned + Send + 'static;

    /// The node's protocol state for `/state` and for checkers.
    fn state(&self) -> Self::State;
}
