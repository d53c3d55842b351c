//! The checks of the bitcake network against ground truth: every
//! transaction's two ends, as the nodes' event histories give them (its
//! sender and number, amount, and the epoch each end had recorded when it
//! sent and handled it). A snapshot's own total cannot see minted money;
//! these can. The seeded simulator and the controller run the same code.
//!
//! A transaction sent by `j` in epoch `s` (its recorded epoch then) is
//! before `j`'s cut of epoch `e` iff `s < e`; handled by `k` in epoch `r`,
//! before `k`'s cut iff `r < e`. So, for every snapshot `e`:
//! - `snapshot-total`: its total is `n x initial`, every copy of it agrees,
//!   and (at quiescence) every started snapshot was collected;
//! - `channels`: every node's recorded balance is `initial - sent before
//!   its cut + got before its cut`, and every channel's in-transit amount
//!   is `>= 0` and equals the money sent before the sender's cut and got
//!   after the receiver's (or never);
//! - `consistent-cut`: no transaction was handled before the receiver's
//!   cut but sent after the sender's (`r >= s` for every one), and none
//!   was received that was never sent;
//! - `conservation` (at quiescence): nothing is in flight, every balance
//!   is what its events say, and the balances add up to `n x initial`;
//! - `messages`: per epoch, at most one marker per direction of each edge
//!   (`2e`), an answer per marker, one `up` per node but the masters.

use super::api::{Event, SnapshotState};
use super::graph::NodeId;
use super::ledger::Global;
use super::wave::Epoch;
use std::collections::{BTreeMap, BTreeSet};

/// How many failures a check lists before it says how many more.
const SHOWN: usize = 5;

/// One check's verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditCheck {
    pub name: &'static str,
    /// Empty: it holds (unless `unknown`).
    pub failures: Vec<String>,
    /// Why it could not be decided.
    pub unknown: Option<String>,
    /// What was checked, for the report.
    pub summary: String,
}

impl AuditCheck {
    fn new(name: &'static str) -> Self {
        AuditCheck {
            name,
            ..AuditCheck::default()
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.unknown.is_none()
    }

    fn fail(&mut self, f: String) {
        self.failures.push(f);
    }

    /// The failures, the first few in full.
    pub fn describe(&self) -> String {
        let mut s = self
            .failures
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if self.failures.len() > SHOWN {
            s.push_str(&format!("; and {} more", self.failures.len() - SHOWN));
        }
        s
    }
}

/// What the network is, for the audit.
pub struct Network<'a> {
    pub nodes: &'a [NodeId],
    pub edges: &'a [(NodeId, NodeId)],
    pub initial: u64,
}

/// A transaction on one channel: the sender's epoch, the receiver's (if
/// it arrived), the amount.
type Crossing = (Epoch, Option<Epoch>, u64);

/// Every transaction, its two ends joined, indexed for the questions the
/// checks ask per epoch.
struct Truth {
    /// (sender, seq) -> (receiver, amount, sender's epoch).
    sent: BTreeMap<(NodeId, u64), (NodeId, u64, Epoch)>,
    /// (sender, seq) -> (receiver, receiver's epoch).
    got: BTreeMap<(NodeId, u64), (NodeId, Epoch)>,
    /// Per node: (epoch, signed amount) of every transaction it sent (-)
    /// and got (+), by the epoch of its own end.
    moves: BTreeMap<NodeId, Vec<(Epoch, i64)>>,
    /// Per directed channel: (sender's epoch, receiver's epoch if got,
    /// amount).
    links: BTreeMap<(NodeId, NodeId), Vec<Crossing>>,
}

impl Truth {
    fn of(states: &BTreeMap<NodeId, SnapshotState>) -> Truth {
        let mut sent = BTreeMap::new();
        let mut got = BTreeMap::new();
        for (id, s) in states {
            for Event {
                sent: is_sent,
                peer,
                seq,
                amount,
                epoch,
                ..
            } in &s.events
            {
                if *is_sent {
                    sent.insert((id.clone(), *seq), (peer.clone(), *amount, *epoch));
                } else {
                    got.insert((peer.clone(), *seq), (id.clone(), *epoch));
                }
            }
        }
        let mut moves: BTreeMap<NodeId, Vec<(Epoch, i64)>> = BTreeMap::new();
        let mut links: BTreeMap<(NodeId, NodeId), Vec<Crossing>> = BTreeMap::new();
        for ((from, seq), (to, amount, se)) in &sent {
            moves
                .entry(from.clone())
                .or_default()
                .push((*se, -(*amount as i64)));
            let re = got.get(&(from.clone(), *seq)).map(|(_, re)| *re);
            if let Some(re) = re {
                moves
                    .entry(to.clone())
                    .or_default()
                    .push((re, *amount as i64));
            }
            links
                .entry((from.clone(), to.clone()))
                .or_default()
                .push((*se, re, *amount));
        }
        Truth {
            sent,
            got,
            moves,
            links,
        }
    }

    /// `node`'s balance from its transactions: all of them, or those
    /// before its cut of epoch `before`.
    fn balance(&self, node: &str, initial: u64, before: Option<Epoch>) -> i64 {
        let moved: i64 = self
            .moves
            .get(node)
            .into_iter()
            .flatten()
            .filter(|(ep, _)| before.is_none_or(|e| *ep < e))
            .map(|(_, a)| a)
            .sum();
        initial as i64 + moved
    }

    /// Sent by `from` to `to` before `from`'s cut of `e`, not got before
    /// `to`'s.
    fn in_transit(&self, from: &str, to: &str, e: Epoch) -> i64 {
        self.links
            .get(&(from.to_string(), to.to_string()))
            .into_iter()
            .flatten()
            .filter(|(se, re, _)| *se < e && re.is_none_or(|r| r >= e))
            .map(|(_, _, a)| *a as i64)
            .sum()
    }
}

/// The audit of one run's final node states. `quiescent`: the network had
/// stopped (no transaction or snapshot message in flight) when they were
/// read.
pub fn audit(
    net: &Network<'_>,
    states: &BTreeMap<NodeId, SnapshotState>,
    quiescent: bool,
) -> Vec<AuditCheck> {
    let n = net.nodes.len() as i64;
    let total = n * net.initial as i64;
    let truth = Truth::of(states);
    let dropped: u64 = states.values().map(|s| s.events_dropped).sum();
    let missing: Vec<&NodeId> = net
        .nodes
        .iter()
        .filter(|id| !states.contains_key(*id))
        .collect();
    let blind = if dropped > 0 {
        Some(format!(
            "{dropped} transaction events were dropped past events_keep: the ground truth is incomplete"
        ))
    } else if !missing.is_empty() {
        Some(format!(
            "no final state of {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        None
    };

    // Every node's copy of every snapshot; the master's own first.
    let mut globals: BTreeMap<Epoch, Vec<(NodeId, &Global)>> = BTreeMap::new();
    for (id, s) in states {
        for c in &s.collected {
            let copies = globals.entry(c.epoch).or_default();
            let who = format!("{} (from {})", id, c.master);
            if c.master == *id {
                copies.insert(0, (who, &c.global));
            } else {
                copies.push((who, &c.global));
            }
        }
    }

    let mut totals = AuditCheck::new("snapshot-total");
    for (e, copies) in &globals {
        for (who, g) in copies {
            if g.total != total {
                totals.fail(format!(
                    "snapshot {e} at {who} counts {} bitcakes, not {total}",
                    g.total
                ));
            }
            if *g != copies[0].1 {
                totals.fail(format!(
                    "snapshot {e} at {who} differs from the one at {}",
                    copies[0].0
                ));
            }
        }
    }
    let started: BTreeSet<(Epoch, &NodeId)> = states
        .iter()
        .flat_map(|(id, s)| s.started.iter().map(move |e| (*e, id)))
        .collect();
    if quiescent {
        for (e, id) in &started {
            let mine = states[*id]
                .collected
                .iter()
                .any(|c| c.epoch == *e && c.master == **id);
            if !mine && !globals.contains_key(e) {
                totals.fail(format!("snapshot {e} started by {id} was never collected"));
            }
        }
    }
    totals.summary = format!(
        "{} snapshots ({} started), {} copies, each {total} bitcakes",
        globals.len(),
        started.len(),
        globals.values().map(Vec::len).sum::<usize>()
    );

    let mut channels = AuditCheck::new("channels");
    let mut compared = 0;
    if let Some(why) = &blind {
        channels.unknown = Some(why.clone());
    } else {
        for (e, copies) in &globals {
            let g = copies[0].1;
            for id in net.nodes {
                let want = truth.balance(id, net.initial, Some(*e));
                let got = g.balances.get(id).map(|b| *b as i64);
                compared += 1;
                if got != Some(want) {
                    channels.fail(format!(
                        "snapshot {e}: {id} recorded {} bitcakes, its transactions before its cut leave {want}",
                        got.map_or("nothing".to_string(), |g| g.to_string())
                    ));
                }
            }
            for (a, b) in net.edges {
                for (from, to) in [(a, b), (b, a)] {
                    let want = truth.in_transit(from, to, *e);
                    let got = g.channel(from, to);
                    compared += 1;
                    if got < 0 {
                        channels.fail(format!(
                            "snapshot {e}: {got} bitcakes in transit from {from} to {to} (negative)"
                        ));
                    } else if got != want {
                        channels.fail(format!(
                            "snapshot {e}: {got} bitcakes in transit from {from} to {to}, the transactions say {want}"
                        ));
                    }
                }
            }
        }
    }
    channels.summary = format!(
        "{compared} recorded balances and channels of {} snapshots against {} transactions",
        globals.len(),
        truth.sent.len()
    );

    let mut cut = AuditCheck::new("consistent-cut");
    for ((from, seq), (to, r)) in &truth.got {
        match truth.sent.get(&(from.clone(), *seq)) {
            None if blind.is_none() => cut.fail(format!(
                "{to} got transaction {from}#{seq}, which {from} never sent"
            )),
            None => {}
            Some((_, _, s)) if r < s => cut.fail(format!(
                "{to} handled transaction {from}#{seq} (sent after {from}'s cut of snapshot {s}) before its own cut of snapshot {s}"
            )),
            Some(_) => {}
        }
    }
    cut.summary = format!("{} transactions received", truth.got.len());

    let mut conservation = AuditCheck::new("conservation");
    if !quiescent {
        conservation.unknown = Some("the network was not quiet at the end".into());
    } else if let Some(why) = &blind {
        conservation.unknown = Some(why.clone());
    } else {
        let in_flight: Vec<_> = truth
            .sent
            .keys()
            .filter(|k| !truth.got.contains_key(*k))
            .collect();
        if !in_flight.is_empty() {
            conservation.fail(format!(
                "{} transactions never arrived (first {}#{})",
                in_flight.len(),
                in_flight[0].0,
                in_flight[0].1
            ));
        }
        for (id, s) in states {
            let want = truth.balance(id, net.initial, None);
            if s.balance as i64 != want {
                conservation.fail(format!(
                    "{id} holds {} bitcakes, its transactions leave {want}",
                    s.balance
                ));
            }
        }
        let sum: i64 = states.values().map(|s| s.balance as i64).sum();
        if sum != total {
            conservation.fail(format!("the balances add up to {sum}, not {total}"));
        }
        conservation.summary = format!("{n} balances add up to {sum}");
    }

    let mut messages = AuditCheck::new("messages");
    let e2 = 2 * net.edges.len() as u64;
    let mut per_epoch: BTreeMap<Epoch, BTreeMap<&str, u64>> = BTreeMap::new();
    for s in states.values() {
        for (e, kinds) in &s.messages {
            for (k, c) in kinds {
                *per_epoch
                    .entry(*e)
                    .or_default()
                    .entry(k.as_str())
                    .or_default() += c;
            }
        }
    }
    for (e, k) in &per_epoch {
        let get = |kind: &str| k.get(kind).copied().unwrap_or(0);
        if get("marker") > e2 {
            messages.fail(format!(
                "snapshot {e}: {} markers, more than 2e = {e2}",
                get("marker")
            ));
        }
        if get("answer") > get("marker") {
            messages.fail(format!(
                "snapshot {e}: {} answers to {} markers",
                get("answer"),
                get("marker")
            ));
        }
        if get("up") > n as u64 - 1 {
            messages.fail(format!("snapshot {e}: {} ups, more than n - 1", get("up")));
        }
    }
    let most = |kind: &str| {
        per_epoch
            .values()
            .map(|k| k.get(kind).copied().unwrap_or(0))
            .max()
            .unwrap_or(0)
    };
    let all: u64 = per_epoch.values().flat_map(|k| k.values()).sum();
    messages.summary = format!(
        "{} snapshots, {:.1} messages each on average; at most {} markers, {} answers, {} ups, {} rounds in one (2e = {e2}, 2e + 2(n-1) = {})",
        per_epoch.len(),
        all as f64 / per_epoch.len().max(1) as f64,
        most("marker"),
        most("answer"),
        most("up"),
        most("round"),
        e2 + 2 * (n as u64 - 1)
    );

    vec![totals, channels, cut, conservation, messages]
}
