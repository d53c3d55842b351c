//! The controller's side of the primary/standby bank (seed 003): its
//! workload mix, the `primary` selector's resolver, the final lookups, its
//! run facts, and its checks: `linearizable` (per account, against
//! [`model::BankModel`]), `exactly-once` and `conservation` (against the
//! survivor's log and balances), `no-negative-balance` (every scrape and
//! final state) and `one-primary` (from the acknowledgements' epochs).

mod checks;
mod linearizable;
pub mod model;

use super::{ChaosSystem, Judging, MixOp, OpContext};
use crate::judge::timed;
use crate::platform::AnyState;
use crate::record::RunRecord;
use crate::results::CheckOutcome;
use faultline_node::api::HistoryOp;
use faultline_node::config::Cluster;
use faultline_node::protocol::standby::{AccountId, Balance, Params, Reply, Request, Standby};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The bank as the controller drives and judges it.
pub struct StandbyChaos;

/// What the checks need of the cluster: the accounts at start and the servers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StandbyMeta {
    pub accounts: BTreeMap<AccountId, Balance>,
    pub servers: Vec<String>,
}

impl StandbyMeta {
    pub fn of(record: &RunRecord) -> Result<StandbyMeta, String> {
        serde_json::from_value(record.meta.system_meta.clone())
            .map_err(|e| format!("the run record holds no bank facts ({e})"))
    }
}

/// One recorded operation read back as the bank's typed request and reply.
pub(crate) type BankOp<'a> = super::TypedOp<'a, Request, Reply>;

/// The recorded operations that read as the bank's, and how many did not.
pub(crate) fn bank_ops<'a>(ops: &[&'a HistoryOp]) -> (Vec<BankOp<'a>>, usize) {
    super::typed_ops(ops)
}

impl ChaosSystem for StandbyChaos {
    type Node = Standby;
    type Beliefs = ();

    const MIX: &'static [MixOp] = &[
        MixOp {
            name: "lookup",
            weight: 0.2,
            doc: "look up an account's balance",
        },
        MixOp {
            name: "withdraw",
            weight: 0.4,
            doc: "withdraw 1..60 from an account (some are overdrafts)",
        },
        MixOp {
            name: "deposit",
            weight: 0.4,
            doc: "deposit 1..60 into an account",
        },
    ];
    const OP_FAULTS: &'static [&'static str] = &[];
    const QUIESCENT_CHECKS: &'static [&'static str] = &["exactly-once", "conservation"];
    const HAS_PRIMARY: bool = true;

    fn next_op(
        ctx: &OpContext<'_, Params>,
        op: &str,
        _: &Mutex<()>,
        rng: &mut ChaCha8Rng,
    ) -> Request {
        let accounts: Vec<AccountId> = ctx.params.accounts.keys().copied().collect();
        // One operation in twenty names an account that does not exist.
        let account = match accounts.len() {
            0 => 1,
            n if rng.random_range(0..20) == 0 => accounts[n - 1] + 1 + rng.random_range(0..2),
            n => accounts[rng.random_range(0..n)],
        };
        match op {
            "withdraw" => Request::Withdraw {
                account,
                amount: rng.random_range(1..=60),
            },
            "deposit" => Request::Deposit {
                account,
                amount: rng.random_range(1..=60),
            },
            _ => {
                debug_assert_eq!(op, "lookup", "not a bank mix operation");
                Request::Lookup { account }
            }
        }
    }

    fn learn(_: &str, _: &Mutex<()>, _: &Request, _: &Reply) {}

    fn left_clients(_: &Reply) -> bool {
        false
    }

    fn op_fault(_: &str) -> Option<Request> {
        None
    }

    fn final_reads(cluster: &Cluster) -> Vec<Request> {
        cluster
            .params::<Params>()
            .map(|p| {
                p.accounts
                    .keys()
                    .map(|&account| Request::Lookup { account })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn meta(cluster: &Cluster) -> anyhow::Result<serde_json::Value> {
        let p = cluster
            .params::<Params>()
            .ok_or_else(|| anyhow::anyhow!("the cluster holds no bank parameters"))?;
        Ok(serde_json::to_value(StandbyMeta {
            accounts: p.accounts.clone(),
            servers: p.servers.to_vec(),
        })?)
    }

    fn checks(run: &Judging<'_>) -> Vec<CheckOutcome> {
        vec![
            timed(|| linearizable::check(run)),
            timed(|| checks::exactly_once(run)),
            timed(|| checks::conservation(run)),
            timed(|| checks::no_negative(run)),
            timed(|| checks::one_primary(run)),
        ]
    }

    fn primary(states: &[AnyState]) -> Option<String> {
        states
            .iter()
            .filter(|s| s.state.get("mode").and_then(|m| m.as_str()) == Some("primary"))
            .max_by_key(|s| {
                s.state
                    .get("epoch")
                    .and_then(|e| e.get("n"))
                    .and_then(|n| n.as_u64())
                    .unwrap_or(0)
            })
            .map(|s| s.id.clone())
    }
}
