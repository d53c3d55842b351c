//! State machine replication of the vaccine availability database (seed
//! 001), being built to the design in `docs/smr.md` (issue 8): clients and
//! replicas are sources of one order by `(Lamport timestamp, source id)`;
//! a replica executes an entry once it is stable (Schneider), held by every
//! replica it does not suspect, and inside its source's stream; joins and
//! expulsions are entries of the order, issued by the coordinator.
//!
//! Built so far: the state machine itself ([`db`]) and the order engine
//! ([`order`]). Not yet a system: it is not in the registry, and no node
//! runs it.

pub mod client;
pub mod db;
pub mod order;
pub mod replica;
