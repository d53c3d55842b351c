//! The bank's state machine: balances, the log of writes (positions are the
//! seed's action ids), and the outcomes of recent request ids per client
//! (deduplication). Both servers run the same deterministic transitions, so
//! a standby that applies the primary's entries in order reaches the same
//! state and the same answers.

use super::{AccountId, Answer, Balance, Entry, Request, RequestId};
use crate::protocol::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// The seed's `balance.json`: account 1 holds 10, account k >= 2 holds
/// 100 (k + 1); 6,310 in all. Shipped as `clusters/balances.json` too.
pub const SEED_BALANCES: [(AccountId, Balance); 10] = [
    (1, 10),
    (2, 300),
    (3, 400),
    (4, 500),
    (5, 600),
    (6, 700),
    (7, 800),
    (8, 900),
    (9, 1000),
    (10, 1100),
];

pub fn seed_accounts() -> BTreeMap<AccountId, Balance> {
    SEED_BALANCES.into_iter().collect()
}

/// What a server remembers of one client's requests: the outcome of each
/// of its newest `window` request numbers, and the number below which it
/// forgot (a retry from there is refused as expired).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    pub outcomes: BTreeMap<u64, (u64, Answer)>,
    pub floor: u64,
}

/// Whether a request id was seen, and what it answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    New,
    /// Applied at `action_id` with this answer.
    Done(u64, Answer),
    /// Older than the window: its outcome is forgotten.
    Expired,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bank {
    pub balances: BTreeMap<AccountId, Balance>,
    /// The position of the last applied write.
    pub action_id: u64,
    pub dedup: BTreeMap<NodeId, Remembered>,
    /// The newest entries (at most `log_keep`), in order, ending at `action_id`.
    pub log: VecDeque<Entry>,
}

impl Bank {
    pub fn new(accounts: BTreeMap<AccountId, Balance>) -> Self {
        Bank {
            balances: accounts,
            action_id: 0,
            dedup: BTreeMap::new(),
            log: VecDeque::new(),
        }
    }

    pub fn lookup(&self, account: AccountId) -> Answer {
        match self.balances.get(&account) {
            Some(b) => Answer::Balance { balance: *b },
            None => Answer::NotFound,
        }
    }

    /// What `request` answers in the current state, and the balance it leaves.
    fn decide(&self, request: &Request) -> (Answer, Option<Balance>) {
        let account = request.account();
        let Some(&balance) = self.balances.get(&account) else {
            return (Answer::NotFound, None);
        };
        match *request {
            Request::Lookup { .. } => (Answer::Balance { balance }, None),
            Request::Withdraw { amount, .. } => {
                match i64::try_from(amount).ok().filter(|a| *a <= balance) {
                    Some(a) => {
                        let after = balance - a;
                        (Answer::Balance { balance: after }, Some(after))
                    }
                    None => (Answer::Overdraft { balance }, None),
                }
            }
            Request::Deposit { amount, .. } => {
                match i64::try_from(amount)
                    .ok()
                    .and_then(|a| balance.checked_add(a))
                {
                    Some(after) => (Answer::Balance { balance: after }, Some(after)),
                    None => (Answer::TooLarge { balance }, None),
                }
            }
        }
    }

    pub fn seen(&self, id: &RequestId) -> Seen {
        let Some(r) = self.dedup.get(&id.client) else {
            return Seen::New;
        };
        if id.seq < r.floor {
            return Seen::Expired;
        }
        match r.outcomes.get(&id.seq) {
            Some((at, answer)) => Seen::Done(*at, answer.clone()),
            None => Seen::New,
        }
    }

    /// Orders a new write at the next position (primary side).
    pub fn execute(&mut self, epoch: u64, id: RequestId, request: Request) -> Entry {
        debug_assert!(request.is_write(), "only writes enter the log");
        let (answer, _) = self.decide(&request);
        Entry {
            action_id: self.action_id + 1,
            epoch,
            id,
            request,
            answer,
        }
    }

    /// Applies the next entry of the log (both sides). Returns the answer
    /// this state gives it, which a correct standby finds equal to the
    /// primary's.
    pub fn apply(&mut self, entry: Entry, window: u64, log_keep: usize) -> Answer {
        assert_eq!(
            entry.action_id,
            self.action_id + 1,
            "entries apply in log order"
        );
        let (answer, after) = self.decide(&entry.request);
        if let Some(after) = after {
            assert!(
                after >= 0,
                "a write left account {} negative",
                entry.request.account()
            );
            self.balances.insert(entry.request.account(), after);
        }
        self.action_id = entry.action_id;
        let r = self.dedup.entry(entry.id.client.clone()).or_default();
        r.outcomes
            .insert(entry.id.seq, (entry.action_id, entry.answer.clone()));
        while r.outcomes.len() as u64 > window.max(1) {
            if let Some((seq, _)) = r.outcomes.pop_first() {
                r.floor = r.floor.max(seq + 1);
            }
        }
        self.log.push_back(entry);
        while self.log.len() > log_keep.max(1) {
            self.log.pop_front();
        }
        answer
    }

    /// The sum of all balances (i128: no sum of i64 balances overflows it).
    pub fn total(&self) -> i128 {
        self.balances.values().map(|b| *b as i128).sum()
    }

    /// The position of the oldest entry kept, if any.
    pub fn first_kept(&self) -> Option<u64> {
        self.log.front().map(|e| e.action_id)
    }

    /// Entries after `after`, at most `max`, if the log still holds them.
    pub fn entries_after(&self, after: u64, max: usize) -> Option<Vec<Entry>> {
        if after >= self.action_id {
            return Some(Vec::new());
        }
        let first = self.first_kept()?;
        if after + 1 < first {
            return None;
        }
        let skip = (after + 1 - first) as usize;
        Some(self.log.iter().skip(skip).take(max).cloned().collect())
    }

    /// A copy for a state transfer, its log trimmed so the copy encodes in
    /// at most `bytes` (the newest entries are kept).
    pub fn snapshot(&self, bytes: usize) -> Bank {
        let mut s = self.clone();
        loop {
            let size = postcard::to_allocvec(&s)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if size <= bytes || s.log.is_empty() {
                return s;
            }
            let keep = s.log.len() / 2;
            while s.log.len() > keep {
                s.log.pop_front();
            }
        }
    }

    /// The first account with a negative balance, if any (never, in a correct run).
    pub fn negative(&self) -> Option<(AccountId, Balance)> {
        self.balances
            .iter()
            .find(|(_, b)| **b < 0)
            .map(|(a, b)| (*a, *b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> RequestId {
        RequestId {
            client: "c1".into(),
            seq,
        }
    }

    #[test]
    fn the_seeds_screens() {
        let mut b = Bank::new(seed_accounts());
        assert_eq!(b.total(), 6310);
        assert_eq!(b.lookup(2), Answer::Balance { balance: 300 });
        assert_eq!(b.lookup(50), Answer::NotFound);
        let e = b.execute(
            0,
            id(1),
            Request::Withdraw {
                account: 2,
                amount: 10,
            },
        );
        assert_eq!(b.apply(e, 16, 100), Answer::Balance { balance: 290 });
        let e = b.execute(
            0,
            id(2),
            Request::Withdraw {
                account: 5,
                amount: 1000,
            },
        );
        assert_eq!(b.apply(e, 16, 100), Answer::Overdraft { balance: 600 });
        let e = b.execute(
            0,
            id(3),
            Request::Deposit {
                account: 3,
                amount: 100,
            },
        );
        assert_eq!(b.apply(e, 16, 100), Answer::Balance { balance: 500 });
        let e = b.execute(
            0,
            id(4),
            Request::Deposit {
                account: 50,
                amount: 1,
            },
        );
        assert_eq!(b.apply(e, 16, 100), Answer::NotFound);
        assert_eq!(b.action_id, 4);
        assert_eq!(b.total(), 6310 - 10 + 100);
    }

    #[test]
    fn withdrawing_everything_is_allowed_and_overflow_is_refused() {
        let mut b = Bank::new(seed_accounts());
        let e = b.execute(
            0,
            id(1),
            Request::Withdraw {
                account: 1,
                amount: 10,
            },
        );
        assert_eq!(b.apply(e, 16, 100), Answer::Balance { balance: 0 });
        let e = b.execute(
            0,
            id(2),
            Request::Deposit {
                account: 1,
                amount: u64::MAX,
            },
        );
        assert_eq!(b.apply(e, 16, 100), Answer::TooLarge { balance: 0 });
        let e = b.execute(
            0,
            id(3),
            Request::Withdraw {
                account: 1,
                amount: u64::MAX,
            },
        );
        assert_eq!(b.apply(e, 16, 100), Answer::Overdraft { balance: 0 });
        assert!(b.negative().is_none());
    }

    #[test]
    fn outcomes_are_remembered_within_the_window_and_expire_below_it() {
        let mut b = Bank::new(seed_accounts());
        for seq in 1..=5 {
            let e = b.execute(
                0,
                id(seq),
                Request::Deposit {
                    account: 2,
                    amount: 1,
                },
            );
            b.apply(e, 3, 100);
        }
        assert_eq!(
            b.seen(&id(5)),
            Seen::Done(5, Answer::Balance { balance: 305 })
        );
        assert_eq!(
            b.seen(&id(3)),
            Seen::Done(3, Answer::Balance { balance: 303 })
        );
        assert_eq!(b.seen(&id(2)), Seen::Expired);
        assert_eq!(b.seen(&id(6)), Seen::New);
    }

    #[test]
    fn the_log_keeps_the_newest_entries_and_snapshots_fit_their_budget() {
        let mut b = Bank::new(seed_accounts());
        for seq in 1..=50 {
            let e = b.execute(
                0,
                id(seq),
                Request::Deposit {
                    account: 2,
                    amount: 1,
                },
            );
            b.apply(e, 1000, 20);
        }
        assert_eq!(b.first_kept(), Some(31));
        assert!(b.entries_after(10, 5).is_none());
        let next = b.entries_after(40, 5).expect("kept");
        assert_eq!(next.first().map(|e| e.action_id), Some(41));
        assert_eq!(next.len(), 5);
        let small = b.snapshot(600);
        assert!(postcard::to_allocvec(&small).expect("encodes").len() <= 600);
        assert_eq!(small.balances, b.balances);
        assert_eq!(small.log.back(), b.log.back());
    }
}
