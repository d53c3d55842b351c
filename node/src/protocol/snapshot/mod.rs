//! The bitcake network (seed 004), being built to the design in
//! `docs/snapshot.md` (issue 11): money moves between neighbours on
//! non-FIFO channels, and Lai-Yang, Spezialetti-Kearns and Li snapshots
//! record it. Built so far: the neighbour graph and its routing
//! ([`graph`]), and a node's money, histories, cut records and the global
//! snapshot assembled from them ([`ledger`]). Not yet a system: it is not
//! in the registry.

pub mod graph;
pub mod ledger;
