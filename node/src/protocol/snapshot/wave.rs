//! One node's part in a snapshot wave (Lai-Yang's recording rule with
//! Spezialetti-Kearns' regions), sans IO: when to record, whom to send
//! markers, which neighbours are children in the region's spanning tree,
//! which edges are borders between regions, and when the subtree's records
//! go up to the parent. Epochs are Li's versions: a later snapshot is a
//! later epoch, and a node records each epoch at most once.
//!
//! The rule that makes the cut consistent on non-FIFO channels: a node
//! records epoch `e` before it handles the first message (marker or
//! transaction) that carries an epoch `e` above its own. The caller asks
//! [`Wave::on_message_epoch`] before handling a transaction, and records
//! its ledger when told to.

use super::graph::NodeId;
use super::ledger::Recorded;
use std::collections::{BTreeMap, BTreeSet};

/// An epoch of snapshots: 1, 2, ... (0: none recorded yet).
pub type Epoch = u64;

/// What the wave asks its node to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// A marker of `epoch` in `region` (the master's id) to a neighbour.
    Marker {
        to: NodeId,
        epoch: Epoch,
        region: NodeId,
    },
    /// The answer to a marker: whether the receiver took its sender as
    /// parent, and the receiver's region in that epoch.
    Answer {
        to: NodeId,
        epoch: Epoch,
        child: bool,
        region: NodeId,
    },
    /// The subtree's records and the borders it saw, to the parent.
    Up {
        to: NodeId,
        epoch: Epoch,
        records: BTreeMap<NodeId, Recorded>,
        borders: BTreeSet<(NodeId, NodeId)>,
    },
}

/// A region's records, complete at its master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionDone {
    pub epoch: Epoch,
    pub records: BTreeMap<NodeId, Recorded>,
    /// Masters of the regions this one borders.
    pub neighbour_regions: BTreeSet<NodeId>,
}

#[derive(Clone, Debug, Default)]
pub struct Wave {
    me: NodeId,
    neighbours: BTreeSet<NodeId>,
    /// The epoch recorded last.
    pub epoch: Epoch,
    /// Its region (master) and this node's parent (`None` at the master).
    pub region: Option<NodeId>,
    pub parent: Option<NodeId>,
    /// Neighbours whose answer to this node's marker has not come.
    awaiting: BTreeSet<NodeId>,
    children: BTreeSet<NodeId>,
    /// Children whose subtree records have come.
    reported: BTreeSet<NodeId>,
    records: BTreeMap<NodeId, Recorded>,
    /// Edges to other regions: (this region's master, the other's).
    borders: BTreeSet<(NodeId, NodeId)>,
    sent_up: bool,
    pub out: Vec<Out>,
    /// Set at the master when its region's records are all in.
    pub done: Option<RegionDone>,
}

impl Wave {
    pub fn new(me: &str, neighbours: impl IntoIterator<Item = NodeId>) -> Self {
        Wave {
            me: me.to_string(),
            neighbours: neighbours.into_iter().collect(),
            ..Wave::default()
        }
    }

    /// Whether this node's part in the current epoch is over (its
    /// subtree's records went up, or, at a master, the region is done).
    pub fn is_quiet(&self) -> bool {
        self.epoch == 0 || self.sent_up || self.done.is_some()
    }

    /// The initiator starts epoch `epoch` as master of its region, with
    /// its own record. Refused (false) unless `epoch` is above the last.
    pub fn start(&mut self, epoch: Epoch, record: Recorded) -> bool {
        if epoch <= self.epoch {
            return false;
        }
        self.join(epoch, self.me.clone(), None, record);
        true
    }

    /// Before handling a message that carries `epoch` and `region` from
    /// `from`: whether the node must record first (then call
    /// [`Wave::record`] with its ledger's record, before handling).
    pub fn must_record(&self, epoch: Epoch) -> bool {
        epoch > self.epoch
    }

    /// Records epoch `epoch` in `region`, `from` becoming the parent.
    pub fn record(&mut self, epoch: Epoch, region: &str, from: &str, record: Recorded) {
        assert!(
            epoch > self.epoch,
            "{} records epoch {epoch} twice",
            self.me
        );
        assert!(
            self.neighbours.contains(from),
            "{from} is not a neighbour of {}",
            self.me
        );
        self.join(epoch, region.to_string(), Some(from.to_string()), record);
    }

    fn join(&mut self, epoch: Epoch, region: NodeId, parent: Option<NodeId>, record: Recorded) {
        self.epoch = epoch;
        self.region = Some(region.clone());
        self.parent = parent.clone();
        self.children.clear();
        self.reported.clear();
        self.borders.clear();
        self.sent_up = false;
        self.done = None;
        self.records = [(self.me.clone(), record)].into();
        // Markers to every neighbour but the parent (whose marker this
        // node answers instead).
        self.awaiting = self
            .neighbours
            .iter()
            .filter(|n| Some(*n) != parent.as_ref())
            .cloned()
            .collect();
        for to in self.awaiting.clone() {
            self.out.push(Out::Marker {
                to,
                epoch,
                region: region.clone(),
            });
        }
        self.progress();
    }

    /// A marker of `epoch` in `region` from neighbour `from`. The caller
    /// has already recorded if [`Wave::must_record`] said so.
    pub fn on_marker(&mut self, from: &str, epoch: Epoch, region: &str) {
        assert!(epoch <= self.epoch, "a marker handled before recording");
        let mine = self.region.clone().unwrap_or_default();
        if epoch < self.epoch {
            // An older wave's marker, overtaken: answer it so its sender
            // can finish, as a non-child.
            self.out.push(Out::Answer {
                to: from.to_string(),
                epoch,
                child: false,
                region: region.to_string(),
            });
            return;
        }
        let child = self.parent.as_deref() == Some(from);
        if region != mine {
            self.borders.insert((mine.clone(), region.to_string()));
        }
        self.out.push(Out::Answer {
            to: from.to_string(),
            epoch,
            child,
            region: mine,
        });
    }

    /// The answer of neighbour `from` to this node's marker.
    pub fn on_answer(&mut self, from: &str, epoch: Epoch, child: bool, region: &str) {
        if epoch != self.epoch || !self.awaiting.remove(from) {
            return;
        }
        let mine = self.region.clone().unwrap_or_default();
        if child {
            self.children.insert(from.to_string());
        } else if region != mine {
            self.borders.insert((mine, region.to_string()));
        }
        self.progress();
    }

    /// A child's subtree records.
    pub fn on_up(
        &mut self,
        from: &str,
        epoch: Epoch,
        records: BTreeMap<NodeId, Recorded>,
        borders: BTreeSet<(NodeId, NodeId)>,
    ) {
        if epoch != self.epoch {
            return;
        }
        // On non-FIFO channels a child's records can overtake its answer:
        // they say it is a child just as well.
        if self.awaiting.remove(from) {
            self.children.insert(from.to_string());
        }
        if !self.children.contains(from) || !self.reported.insert(from.to_string()) {
            return;
        }
        self.records.extend(records);
        self.borders.extend(borders);
        self.progress();
    }

    /// Sends the subtree up (or completes the region) once every
    /// neighbour has answered and every child has reported.
    fn progress(&mut self) {
        if self.sent_up || self.done.is_some() || !self.awaiting.is_empty() {
            return;
        }
        if self.reported.len() < self.children.len() {
            return;
        }
        match &self.parent {
            Some(p) => {
                self.out.push(Out::Up {
                    to: p.clone(),
                    epoch: self.epoch,
                    records: std::mem::take(&mut self.records),
                    borders: std::mem::take(&mut self.borders),
                });
                self.sent_up = true;
            }
            None => {
                self.done = Some(RegionDone {
                    epoch: self.epoch,
                    records: self.records.clone(),
                    neighbour_regions: self.borders.iter().map(|(_, b)| b.clone()).collect(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::graph::{seed_neighbours, Graph};
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The seed's graph, initiators n3 and n4 starting epoch 1 at once,
    /// every message delivered in a random order (non-FIFO).
    fn run(seed: u64) -> (BTreeMap<NodeId, Wave>, BTreeMap<&'static str, usize>) {
        let g = Graph::new(&seed_neighbours()).expect("the seed's graph");
        let mut waves: BTreeMap<NodeId, Wave> = g
            .nodes()
            .map(|n| (n.clone(), Wave::new(n, g.neighbours(n).cloned())))
            .collect();
        let rec = |n: &str| Recorded {
            balance: n.len() as u64,
            ..Recorded::default()
        };
        let mut flight: Vec<(NodeId, Out)> = Vec::new();
        for m in ["n3", "n4"] {
            let w = waves.get_mut(m).expect("initiator");
            assert!(w.start(1, rec(m)));
            assert!(!w.start(1, rec(m)), "an epoch starts once");
        }
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Bounded: every delivery consumes a message; a wave sends a
        // bounded number (markers and answers per edge, one up per node).
        for _ in 0..10_000 {
            for (id, w) in waves.iter_mut() {
                flight.extend(w.out.drain(..).map(|o| (id.clone(), o)));
            }
            if flight.is_empty() {
                break;
            }
            let (from, out) = flight.swap_remove(rng.random_range(0..flight.len()));
            match out {
                Out::Marker { to, epoch, region } => {
                    *counts.entry("marker").or_default() += 1;
                    assert!(g.are_neighbours(&from, &to));
                    let w = waves.get_mut(&to).expect("node");
                    if w.must_record(epoch) {
                        w.record(epoch, &region, &from, rec(&to));
                    }
                    w.on_marker(&from, epoch, &region);
                }
                Out::Answer {
                    to,
                    epoch,
                    child,
                    region,
                } => {
                    *counts.entry("answer").or_default() += 1;
                    let w = waves.get_mut(&to).expect("node");
                    w.on_answer(&from, epoch, child, &region);
                }
                Out::Up {
                    to,
                    epoch,
                    records,
                    borders,
                } => {
                    *counts.entry("up").or_default() += 1;
                    let w = waves.get_mut(&to).expect("node");
                    w.on_up(&from, epoch, records, borders);
                }
            }
        }
        assert!(flight.is_empty(), "seed {seed}: messages never stopped");
        (waves, counts)
    }

    #[test]
    fn two_concurrent_initiators_split_the_graph_into_two_trees() {
        for seed in 0..200 {
            let (waves, counts) = run(seed);
            let mut seen: BTreeSet<NodeId> = BTreeSet::new();
            let mut regions = 0;
            for (id, w) in &waves {
                assert_eq!(w.epoch, 1, "seed {seed}: {id} did not record");
                assert!(
                    w.is_quiet(),
                    "seed {seed}: {id} is still waiting: parent {:?} awaiting {:?} children {:?} reported {:?}; all {:?}",
                    w.parent, w.awaiting, w.children, w.reported,
                    waves.iter().map(|(i, w)| (i, &w.parent, &w.region, w.sent_up)).collect::<Vec<_>>()
                );
                // Every node's parent chain ends at its region's master.
                let mut at = id.clone();
                for _ in 0..waves.len() {
                    match &waves[&at].parent {
                        Some(p) => at = p.clone(),
                        None => break,
                    }
                }
                assert_eq!(Some(&at), w.region.as_ref(), "seed {seed}: {id}");
                if let Some(done) = &w.done {
                    regions += 1;
                    assert_eq!(w.region.as_deref(), Some(id.as_str()));
                    for n in done.records.keys() {
                        assert!(seen.insert(n.clone()), "seed {seed}: {n} in two regions");
                        assert_eq!(waves[n].region.as_ref(), Some(id));
                    }
                }
            }
            assert_eq!(seen.len(), 7, "seed {seed}: every node in one region");
            assert!((1..=2).contains(&regions), "seed {seed}: {regions} regions");
            // Messages: a marker per edge direction but the tree edges'
            // downward halves, an answer per marker, one up per non-master.
            assert!(counts["marker"] <= 24, "seed {seed}: {counts:?}");
            assert_eq!(counts["answer"], counts["marker"], "seed {seed}");
            assert_eq!(counts["up"], 7 - regions, "seed {seed}");
        }
    }
}
