//! The bank as a sequential specification, one account per partition: a
//! balance (or no account), and what lookup, withdraw and deposit answer.
//! The linearizability checker runs the clients' histories against it.

use crate::check::{Model, Operation, Partition};
use faultline_node::protocol::standby::{AccountId, Answer, Balance, Request};
use std::collections::BTreeMap;

/// Every account's balance at start (absent accounts do not exist).
#[derive(Clone, Debug, Default)]
pub struct BankModel {
    pub accounts: BTreeMap<AccountId, Balance>,
}

/// What `request` answers on `state` (`None`: no such account), and the
/// state after. The same rules as the servers' `Bank`, written again here
/// on purpose: a checker that reused the code under test would agree with
/// its bugs.
pub fn step(state: Option<Balance>, request: &Request) -> (Answer, Option<Balance>) {
    let Some(b) = state else {
        return (Answer::NotFound, None);
    };
    match *request {
        Request::Lookup { .. } => (Answer::Balance { balance: b }, Some(b)),
        Request::Withdraw { amount, .. } => match i64::try_from(amount) {
            Ok(a) if a <= b => (Answer::Balance { balance: b - a }, Some(b - a)),
            _ => (Answer::Overdraft { balance: b }, Some(b)),
        },
        Request::Deposit { amount, .. } => {
            match i64::try_from(amount).ok().and_then(|a| b.checked_add(a)) {
                Some(after) => (Answer::Balance { balance: after }, Some(after)),
                None => (Answer::TooLarge { balance: b }, Some(b)),
            }
        }
    }
}

impl Model for BankModel {
    type State = Option<Balance>;
    type Input = Request;
    type Output = Answer;

    fn init(&self) -> Option<Balance> {
        None
    }

    fn step(
        &self,
        state: &Option<Balance>,
        input: &Request,
        output: Option<&Answer>,
    ) -> Option<Option<Balance>> {
        let (answer, next) = step(*state, input);
        match output {
            None => Some(next),
            Some(o) if *o == answer => Some(next),
            Some(_) => None,
        }
    }

    fn is_read_only(&self, input: &Request, output: Option<&Answer>) -> bool {
        !input.is_write()
            || matches!(
                output,
                Some(Answer::Overdraft { .. } | Answer::TooLarge { .. } | Answer::NotFound)
            )
    }

    fn partition(&self, history: &[Operation<Request, Answer>]) -> Vec<Partition<Option<Balance>>> {
        let mut by: BTreeMap<AccountId, Vec<usize>> = BTreeMap::new();
        for (i, op) in history.iter().enumerate() {
            by.entry(op.input.account()).or_default().push(i);
        }
        by.into_iter()
            .map(|(account, ops)| Partition {
                key: format!("account {account}"),
                init: self.accounts.get(&account).copied(),
                ops,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{check, CheckOptions};

    fn model() -> BankModel {
        BankModel {
            accounts: [(2, 300)].into_iter().collect(),
        }
    }

    #[test]
    fn the_seeds_double_debit_is_not_linearizable() {
        // Withdraw 50 from 300 twice but acknowledged once, and a later
        // lookup sees 200: only one withdrawal was acknowledged.
        let w = Request::Withdraw {
            account: 2,
            amount: 50,
        };
        let l = Request::Lookup { account: 2 };
        let h = vec![
            Operation::ok(0, w.clone(), 0, 10, Answer::Balance { balance: 250 }),
            Operation::ok(1, l.clone(), 20, 30, Answer::Balance { balance: 200 }),
        ];
        let r = check(&model(), &h, &CheckOptions::default()).expect("checks");
        assert!(!r.is_valid());
        let ok = vec![
            Operation::ok(0, w, 0, 10, Answer::Balance { balance: 250 }),
            Operation::ok(1, l, 20, 30, Answer::Balance { balance: 250 }),
        ];
        assert!(check(&model(), &ok, &CheckOptions::default())
            .expect("checks")
            .is_valid());
    }

    #[test]
    fn an_unknown_withdrawal_may_or_may_not_have_happened() {
        let w = Request::Withdraw {
            account: 2,
            amount: 50,
        };
        let l = Request::Lookup { account: 2 };
        for seen in [300, 250] {
            let h = vec![
                Operation::unknown(0, w.clone(), 0, None),
                Operation::ok(1, l.clone(), 20, 30, Answer::Balance { balance: seen }),
            ];
            assert!(check(&model(), &h, &CheckOptions::default())
                .expect("checks")
                .is_valid());
        }
        let h = vec![Operation::ok(
            1,
            l,
            20,
            30,
            Answer::Balance { balance: 200 },
        )];
        assert!(!check(&model(), &h, &CheckOptions::default())
            .expect("checks")
            .is_valid());
    }

    #[test]
    fn overdrafts_and_unknown_accounts_follow_the_seed() {
        assert_eq!(
            step(
                Some(600),
                &Request::Withdraw {
                    account: 5,
                    amount: 1000
                }
            ),
            (Answer::Overdraft { balance: 600 }, Some(600))
        );
        assert_eq!(
            step(None, &Request::Lookup { account: 50 }),
            (Answer::NotFound, None)
        );
        assert_eq!(
            step(
                Some(450),
                &Request::Deposit {
                    account: 3,
                    amount: 100
                }
            ),
            (Answer::Balance { balance: 550 }, Some(550))
        );
    }
}
