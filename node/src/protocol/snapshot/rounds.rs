//! The masters' rounds (Spezialetti-Kearns): once its region's records are
//! in, a master exchanges what it knows with the masters of the regions it
//! borders, round by round, until it knows every node's record; then it
//! has the global snapshot. A master that is complete says so (`done`)
//! with everything it knows, and its neighbours stop waiting for its later
//! rounds, so no master waits for one that has finished.

use super::graph::NodeId;
use super::ledger::Recorded;
use super::wave::Epoch;
use std::collections::{BTreeMap, BTreeSet};

/// One round's message between neighbouring masters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundMsg {
    pub to: NodeId,
    pub epoch: Epoch,
    pub round: u64,
    /// Records the receiver may not have (everything new since the
    /// sender's previous round; everything, when `done`).
    pub records: BTreeMap<NodeId, Recorded>,
    /// The sender knows every node's record and sends no more rounds.
    pub done: bool,
}

#[derive(Clone, Debug)]
pub struct Rounds {
    me: NodeId,
    epoch: Epoch,
    everyone: BTreeSet<NodeId>,
    neighbours: BTreeSet<NodeId>,
    pub known: BTreeMap<NodeId, Recorded>,
    /// Records learned since this master's last round message.
    fresh: BTreeMap<NodeId, Recorded>,
    /// The round this master is in (its message for it is sent).
    pub round: u64,
    /// Round messages received, by round, from each neighbour.
    got: BTreeMap<u64, BTreeSet<NodeId>>,
    finished: BTreeSet<NodeId>,
    pub complete: bool,
    pub out: Vec<RoundMsg>,
    /// Per round completed: how many records this master knew after it.
    pub log: Vec<(u64, usize)>,
}

impl Rounds {
    /// Master `me` of a region of `epoch`, with the region's records and
    /// the masters of the regions it borders; `everyone` is every node.
    pub fn new(
        me: &str,
        epoch: Epoch,
        region: BTreeMap<NodeId, Recorded>,
        neighbours: BTreeSet<NodeId>,
        everyone: BTreeSet<NodeId>,
    ) -> Self {
        let mut r = Rounds {
            me: me.to_string(),
            epoch,
            everyone,
            neighbours,
            known: region.clone(),
            fresh: region,
            round: 0,
            got: BTreeMap::new(),
            finished: BTreeSet::new(),
            complete: false,
            out: Vec::new(),
            log: Vec::new(),
        };
        r.next_round();
        if r.complete {
            // One region: complete in its first round.
            r.log.push((r.round, r.known.len()));
        }
        r
    }

    /// This master's id (the region's name).
    pub fn master(&self) -> &str {
        &self.me
    }

    fn is_complete(&self) -> bool {
        self.everyone.iter().all(|n| self.known.contains_key(n))
    }

    /// Starts the next round: sends what is fresh (or, complete, everything
    /// and `done`) to every neighbour that has not finished.
    fn next_round(&mut self) {
        self.round += 1;
        self.complete = self.is_complete();
        let records = if self.complete {
            self.known.clone()
        } else {
            std::mem::take(&mut self.fresh)
        };
        for to in self.neighbours.difference(&self.finished) {
            self.out.push(RoundMsg {
                to: to.clone(),
                epoch: self.epoch,
                round: self.round,
                records: records.clone(),
                done: self.complete,
            });
        }
    }

    /// A neighbouring master's round message.
    pub fn on_round(&mut self, from: &str, m: RoundMsg) {
        if m.epoch != self.epoch || !self.neighbours.contains(from) || self.complete {
            return;
        }
        for (n, r) in m.records {
            if !self.known.contains_key(&n) {
                self.known.insert(n.clone(), r.clone());
                self.fresh.insert(n, r);
            }
        }
        if m.done {
            self.finished.insert(from.to_string());
        }
        self.got
            .entry(m.round)
            .or_default()
            .insert(from.to_string());
        self.advance();
    }

    /// Moves on while this round has heard from every neighbour that has
    /// not finished (a finished one sent everything it will ever send).
    fn advance(&mut self) {
        // Bounded: each pass completes a round or returns; a master is
        // complete after at most as many rounds as there are masters.
        loop {
            if self.complete {
                return;
            }
            let heard = self.got.get(&self.round).cloned().unwrap_or_default();
            let waiting = self
                .neighbours
                .iter()
                .any(|n| !self.finished.contains(n) && !heard.contains(n));
            if waiting && !self.is_complete() {
                return;
            }
            self.log.push((self.round, self.known.len()));
            self.next_round();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Four regions on a line a - b - c - d, each master knowing its own
    /// two nodes; messages delivered in random orders.
    #[test]
    fn masters_on_a_line_all_learn_everything() {
        let line = ["a", "b", "c", "d"];
        let everyone: BTreeSet<NodeId> = line
            .iter()
            .flat_map(|m| [m.to_string(), format!("{m}2")])
            .collect();
        for seed in 0..100 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut masters: BTreeMap<NodeId, Rounds> = line
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let region = [m.to_string(), format!("{m}2")]
                        .into_iter()
                        .map(|n| (n, Recorded::default()))
                        .collect();
                    let nbs = [i.checked_sub(1), Some(i + 1)]
                        .into_iter()
                        .flatten()
                        .filter_map(|j| line.get(j))
                        .map(|s| s.to_string())
                        .collect();
                    (
                        m.to_string(),
                        Rounds::new(m, 1, region, nbs, everyone.clone()),
                    )
                })
                .collect();
            let mut flight: Vec<(NodeId, RoundMsg)> = Vec::new();
            // Bounded: rounds per master are at most the masters' count.
            for _ in 0..1_000 {
                for (id, r) in masters.iter_mut() {
                    flight.extend(r.out.drain(..).map(|m| (id.clone(), m)));
                }
                if flight.is_empty() {
                    break;
                }
                let (from, m) = flight.swap_remove(rng.random_range(0..flight.len()));
                let to = m.to.clone();
                masters.get_mut(&to).expect("master").on_round(&from, m);
            }
            for (id, r) in &masters {
                assert_eq!(r.master(), id);
                assert!(r.complete, "seed {seed}: {id} knows {:?}", r.known.keys());
                assert_eq!(r.known.len(), 8);
                assert!(r.round <= 4, "seed {seed}: {id} took {} rounds", r.round);
            }
        }
    }
}
