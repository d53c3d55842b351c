//! The controller's side of the token system (seed 000): its workload mix,
//! the `transform` fault, the final gettokens reads, its run facts, and its
//! checks: `linearizable` (per token, against [`model::Token`]),
//! `no-double-pay`, `quiescent-state` and `versions-monotonic`.

mod double_pay;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod generate;
mod linearizable;
pub mod model;
mod shrink;
mod state;
mod versions;

pub use linearizable::{convert_history, ConvertedHistory};

use super::{ChaosSystem, Judging, MixOp, OpContext};
use crate::judge::timed;
use crate::record::RunRecord;
use crate::results::CheckOutcome;
use faultline_node::config::Cluster;
use faultline_node::protocol::tokens::{OpError, Params, Reply, Request, TokenId, Tokens};
use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// The token system as the controller drives and judges it.
pub struct TokensChaos;

/// What the token checks need of the cluster: the run's token count and
/// each token's owner at start (`RunMeta::system_meta`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TokensMeta {
    pub tokens: u64,
    pub initial_owners: Vec<String>,
}

impl TokensMeta {
    /// The facts recorded in `record`, or why there are none.
    pub fn of(record: &RunRecord) -> Result<TokensMeta, String> {
        serde_json::from_value(record.meta.system_meta.clone())
            .map_err(|e| format!("the run record holds no token facts ({e})"))
    }

    /// Tokens in the run: as recorded, or as many as have an initial owner
    /// if the count is missing.
    pub fn token_count(&self) -> u64 {
        if self.tokens == 0 {
            self.initial_owners.len() as u64
        } else {
            self.tokens
        }
    }
}

/// The tokens a workload client believes it owns, from its reads and pays.
#[derive(Default)]
pub struct Owned(Vec<TokenId>);

impl ChaosSystem for TokensChaos {
    type Node = Tokens;
    type Beliefs = Owned;

    const MIX: &'static [MixOp] = &[
        MixOp {
            name: "pay",
            weight: 0.7,
            doc: "pay a token the client believes it owns to another client",
        },
        MixOp {
            name: "gettokens",
            weight: 0.25,
            doc: "read an owner's tokens",
        },
        MixOp {
            name: "pay_any",
            weight: 0.05,
            doc: "pay a random token, owned or not (exercises the owner checks)",
        },
    ];
    const OP_FAULTS: &'static [&'static str] = &["transform"];
    const QUIESCENT_CHECKS: &'static [&'static str] = &["quiescent-state"];
    const HAS_PRIMARY: bool = false;

    fn next_op(
        ctx: &OpContext<'_, Params>,
        op: &str,
        owned: &Mutex<Owned>,
        rng: &mut ChaCha8Rng,
    ) -> Request {
        let me = ctx.me.to_string();
        let others: Vec<&String> = ctx.clients.iter().filter(|c| **c != me).collect();
        let to = others
            .choose(rng)
            .map_or_else(|| me.clone(), |s| s.to_string());
        match op {
            "pay" => {
                let token = owned.lock().ok().and_then(|mut o| {
                    if o.0.is_empty() {
                        None
                    } else {
                        let i = rng.random_range(0..o.0.len());
                        Some(o.0.swap_remove(i))
                    }
                });
                match token {
                    Some(token) => Request::Pay { token, to },
                    // Nothing known: read our own tokens first.
                    None => Request::GetTokens { owner: me },
                }
            }
            "pay_any" => {
                let tokens = u32::try_from(ctx.params.tokens())
                    .unwrap_or(u32::MAX)
                    .max(1);
                Request::Pay {
                    token: rng.random_range(0..tokens),
                    to,
                }
            }
            _ => {
                debug_assert_eq!(op, "gettokens", "not a token mix operation");
                let owner = if rng.random_bool(0.5) {
                    me
                } else {
                    ctx.clients.choose(rng).cloned().unwrap_or(me)
                };
                Request::GetTokens { owner }
            }
        }
    }

    fn learn(me: &str, owned: &Mutex<Owned>, _request: &Request, reply: &Reply) {
        if let Reply::Tokens { owner, tokens } = reply {
            if owner == me {
                if let Ok(mut o) = owned.lock() {
                    o.0 = tokens.iter().map(|(t, _)| *t).collect();
                }
            }
        }
    }

    fn left_clients(reply: &Reply) -> bool {
        matches!(
            reply,
            Reply::Failed {
                error: OpError::ServersCannotPay | OpError::ServersCannotGetTokens
            }
        )
    }

    fn op_fault(fault: &str) -> Option<Request> {
        (fault == "transform").then_some(Request::Transform)
    }

    fn final_reads(cluster: &Cluster) -> Vec<Request> {
        cluster
            .ids()
            .into_iter()
            .map(|owner| Request::GetTokens { owner })
            .collect()
    }

    fn meta(cluster: &Cluster) -> anyhow::Result<serde_json::Value> {
        let p = cluster
            .params::<Params>()
            .ok_or_else(|| anyhow::anyhow!("the cluster holds no token parameters"))?;
        Ok(serde_json::to_value(TokensMeta {
            tokens: p.tokens() as u64,
            initial_owners: p.initial_owners.clone(),
        })?)
    }

    fn checks(run: &Judging<'_>) -> Vec<CheckOutcome> {
        vec![
            timed(|| linearizable::check_linearizable(run.record, run.opts)),
            timed(|| double_pay::check(run.record, run.ops)),
            timed(|| state::check_quiescent(run.record)),
            timed(|| versions::check_monotonic(run.scrapes, run.record.meta.start_us)),
        ]
    }
}
