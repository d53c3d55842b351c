//! A node's bitcakes and the histories that Lai-Yang's channel states come
//! from: the money given to and got from each neighbour so far. A node
//! never gives more than it has (the seed had no funds check and went
//! negative). [`Recorded`] is what a node keeps at its cut of an epoch;
//! [`Recorded::since`] is Li's differential form of it.

use super::graph::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whole bitcakes.
pub type Amount = u64;

/// Why a transfer is refused; nothing changes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot give {amount} bitcakes with {balance} in hand")]
    Insufficient { balance: Amount, amount: Amount },
    #[error("an amount is at least 1 bitcake")]
    Zero,
    #[error("{amount} more bitcakes would overflow a balance of {balance}")]
    Overflow { balance: Amount, amount: Amount },
}

/// Money in hand and the per-neighbour histories.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub balance: Amount,
    /// Given to each neighbour since start (or since the differential base).
    pub given: BTreeMap<NodeId, Amount>,
    /// Got from each neighbour, likewise.
    pub got: BTreeMap<NodeId, Amount>,
}

impl Ledger {
    pub fn new(initial: Amount) -> Self {
        Ledger {
            balance: initial,
            ..Ledger::default()
        }
    }

    /// Takes `amount` out to give to neighbour `to`.
    pub fn give(&mut self, to: &str, amount: Amount) -> Result<(), LedgerError> {
        if amount == 0 {
            return Err(LedgerError::Zero);
        }
        if amount > self.balance {
            return Err(LedgerError::Insufficient {
                balance: self.balance,
                amount,
            });
        }
        self.balance -= amount;
        *self.given.entry(to.to_string()).or_default() += amount;
        Ok(())
    }

    /// Takes in `amount` got from neighbour `from`. Money is conserved, so
    /// an overflow means a peer lies about amounts: refused, logged by the
    /// caller.
    pub fn get(&mut self, from: &str, amount: Amount) -> Result<(), LedgerError> {
        if amount == 0 {
            return Err(LedgerError::Zero);
        }
        let balance = self
            .balance
            .checked_add(amount)
            .ok_or(LedgerError::Overflow {
                balance: self.balance,
                amount,
            })?;
        self.balance = balance;
        *self.got.entry(from.to_string()).or_default() += amount;
        Ok(())
    }

    /// What the node keeps at its cut.
    pub fn record(&self) -> Recorded {
        Recorded {
            balance: self.balance,
            given: self.given.clone(),
            got: self.got.clone(),
        }
    }
}

/// A node's state at its cut of one epoch: its balance, and what it had
/// given to and got from each neighbour before the cut.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub balance: Amount,
    pub given: BTreeMap<NodeId, Amount>,
    pub got: BTreeMap<NodeId, Amount>,
}

impl Recorded {
    /// Li's differential form: the histories since `base` (this node's
    /// previous cut); the balance stays absolute. Histories only grow, so
    /// a history smaller than its base is a bug, and panics.
    pub fn since(&self, base: &Recorded) -> Recorded {
        let diff = |now: &BTreeMap<NodeId, Amount>, then: &BTreeMap<NodeId, Amount>| {
            now.iter()
                .map(|(k, v)| {
                    let b = then.get(k).copied().unwrap_or(0);
                    assert!(*v >= b, "the history with {k} went back: {v} < {b}");
                    (k.clone(), v - b)
                })
                .filter(|(_, v)| *v > 0)
                .collect()
        };
        Recorded {
            balance: self.balance,
            given: diff(&self.given, &base.given),
            got: diff(&self.got, &base.got),
        }
    }

    /// The inverse of [`Recorded::since`]: `delta` added to this one.
    pub fn plus(&self, delta: &Recorded) -> Recorded {
        let add = |a: &BTreeMap<NodeId, Amount>, b: &BTreeMap<NodeId, Amount>| {
            let mut out = a.clone();
            for (k, v) in b {
                *out.entry(k.clone()).or_default() += v;
            }
            out
        };
        Recorded {
            balance: delta.balance,
            given: add(&self.given, &delta.given),
            got: add(&self.got, &delta.got),
        }
    }
}

/// The money in transit on one directed channel at a snapshot. Signed: a
/// negative amount is an inconsistent cut, which the checks report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub from: NodeId,
    pub to: NodeId,
    pub amount: i64,
}

/// One epoch's global snapshot: every node's recorded balance, every
/// directed channel's money in transit, and their sum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Global {
    pub balances: BTreeMap<NodeId, Amount>,
    /// Both directions of every edge, sorted by `(from, to)`.
    pub channels: Vec<Channel>,
    pub total: i64,
}

impl Global {
    /// Assembles the snapshot over `edges` (both directions of each) from
    /// every node's record. With `prev` (Li), the records' histories are
    /// differential, since each node's previous cut, and each channel is
    /// `prev`'s plus what was given minus what was got in between; without
    /// it they are absolute. `None` if a node of an edge has not recorded.
    pub fn assemble(
        prev: Option<&Global>,
        recorded: &BTreeMap<NodeId, Recorded>,
        edges: impl IntoIterator<Item = (NodeId, NodeId)>,
    ) -> Option<Global> {
        let mut channels = Vec::new();
        for (a, b) in edges {
            for (from, to) in [(&a, &b), (&b, &a)] {
                let given = recorded.get(from)?.given.get(to).copied().unwrap_or(0);
                let got = recorded.get(to)?.got.get(from).copied().unwrap_or(0);
                let before = prev.map_or(0, |p| p.channel(from, to));
                channels.push(Channel {
                    from: from.clone(),
                    to: to.clone(),
                    amount: before + given as i64 - got as i64,
                });
            }
        }
        channels.sort_by(|x, y| (&x.from, &x.to).cmp(&(&y.from, &y.to)));
        let balances: BTreeMap<NodeId, Amount> = recorded
            .iter()
            .map(|(n, r)| (n.clone(), r.balance))
            .collect();
        let total = balances.values().map(|b| *b as i64).sum::<i64>()
            + channels.iter().map(|c| c.amount).sum::<i64>();
        Some(Global {
            balances,
            channels,
            total,
        })
    }

    /// In transit from `from` to `to` (0 if not a channel).
    pub fn channel(&self, from: &str, to: &str) -> i64 {
        self.channels
            .binary_search_by(|c| (c.from.as_str(), c.to.as_str()).cmp(&(from, to)))
            .map_or(0, |i| self.channels[i].amount)
    }

    /// The seed's output: each node's recorded amount, every non-empty
    /// channel, and the system's total.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (n, b) in &self.balances {
            s.push_str(&format!("Recorded bitcake amount for {n}: {b}\n"));
        }
        for c in self.channels.iter().filter(|c| c.amount != 0) {
            s.push_str(&format!(
                "Unreceived bitcake amount: {} from {} to {}\n",
                c.amount, c.from, c.to
            ));
        }
        s.push_str(&format!("System bitcake count: {}\n", self.total));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn giving_more_than_in_hand_or_nothing_is_refused_and_changes_nothing() {
        let mut l = Ledger::new(10);
        assert_eq!(
            l.give("b", 11),
            Err(LedgerError::Insufficient {
                balance: 10,
                amount: 11
            })
        );
        assert_eq!(l.give("b", 0), Err(LedgerError::Zero));
        assert_eq!(l, Ledger::new(10));
        l.give("b", 10).expect("all of it");
        assert_eq!((l.balance, l.given["b"]), (0, 10));
        assert_eq!(
            l.get("b", u64::MAX).and(l.get("b", 1)),
            Err(LedgerError::Overflow {
                balance: u64::MAX,
                amount: 1
            })
        );
    }

    /// Two nodes, money both ways, a consistent cut with money in flight
    /// each way: the channels hold exactly what was in flight and the total
    /// is conserved; a differential record added back is the absolute one.
    #[test]
    fn a_consistent_cut_accounts_for_money_in_flight() {
        let (mut a, mut b) = (Ledger::new(100), Ledger::new(100));
        a.give("b", 30).expect("a gives");
        b.get("a", 30).expect("b gets");
        a.give("b", 5).expect("in flight at the cut");
        b.give("a", 7).expect("in flight at the cut");
        let cut: BTreeMap<NodeId, Recorded> =
            [("a".to_string(), a.record()), ("b".to_string(), b.record())].into();
        let edge = || [("a".to_string(), "b".to_string())];
        let g = Global::assemble(None, &cut, edge()).expect("both recorded");
        assert_eq!(g.channel("a", "b"), 5);
        assert_eq!(g.channel("b", "a"), 7);
        assert_eq!(g.total, 200);
        // Later: the flights land; Li's second snapshot sends only deltas.
        b.get("a", 5).expect("lands");
        a.get("b", 7).expect("lands");
        let delta = b.record().since(&cut["b"]);
        assert_eq!(delta.got.get("a"), Some(&5));
        assert_eq!(delta.given.get("a"), None, "nothing new given");
        assert_eq!(cut["b"].plus(&delta), b.record());
        let deltas: BTreeMap<NodeId, Recorded> = [
            ("a".to_string(), a.record().since(&cut["a"])),
            ("b".to_string(), delta),
        ]
        .into();
        let g2 = Global::assemble(Some(&g), &deltas, edge()).expect("both recorded");
        assert_eq!((g2.channel("a", "b"), g2.channel("b", "a")), (0, 0));
        assert_eq!(g2.total, 200);
        // A node that has not recorded leaves the snapshot incomplete.
        let one: BTreeMap<NodeId, Recorded> = [("a".to_string(), a.record())].into();
        assert!(Global::assemble(None, &one, edge()).is_none());
    }
}
