//! The bitcake network (seed 004), being built to the design in
//! `docs/snapshot.md` (issue 11): money moves between neighbours on
//! non-FIFO channels, and Lai-Yang, Spezialetti-Kearns and Li snapshots
//! record it. Built so far: the neighbour graph and its routing
//! ([`graph`]), a node's money, histories, cut records and the global
//! snapshot assembled from them ([`ledger`]), and a node's part in a
//! snapshot wave: the recording rule, markers and answers, the region's
//! spanning tree, borders and the convergecast ([`wave`]), and the
//! masters' rounds ([`rounds`]). Not yet a system: it is not in the
//! registry.

pub mod graph;
pub mod ledger;
pub mod rounds;
pub mod wave;
