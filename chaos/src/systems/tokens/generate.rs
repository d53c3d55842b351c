//! Seeded generators of histories that are linearizable by construction, for tests and for the
//! checker benchmark.
//!
//! A history is built the way a correct system would produce one: every operation gets a call
//! and return time from a simulated client, a linearization point inside that interval, and its
//! output from applying the model in linearization-point order. Some operations then lose their
//! outcome (the client timed out), and of those some took effect (possibly after the client
//! gave up) and some never did. Corrupting any output afterwards is how tests get invalid ones.

use super::model::{Token, TokenId, TokenInput, TokenOp, TokenOutput, TokenState};
use crate::check::history::{Operation, Outcome};
use crate::check::model::Model;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Shape of a generated token history.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenWorkload {
    /// Tokens in the faultline layout ([`Token::faultline`]).
    pub tokens: u64,
    /// Concurrent clients; client `c` (0-based) owns tokens as owner `c + 1`.
    pub clients: u64,
    pub ops: usize,
    /// Fraction of operations whose outcome is unknown.
    pub unknown_rate: f64,
    /// Fraction of operations that are reads (the rest are pays).
    pub read_rate: f64,
    /// Operations last 1..=`max_latency` ticks.
    pub max_latency: u64,
}

impl Default for TokenWorkload {
    fn default() -> Self {
        TokenWorkload {
            tokens: 60,
            clients: 6,
            ops: 1000,
            unknown_rate: 0.01,
            read_rate: 0.5,
            max_latency: 100,
        }
    }
}

struct Planned {
    worker: u64,
    process: u64,
    call: u64,
    ret: u64,
    lin: u64,
    unknown: bool,
    happened: bool,
    report_ret: bool,
}

/// A linearizable token history and the model it is linearizable against. Operations are in
/// call order. A client whose outcome is unknown retires and continues under a new process id
/// (as in Jepsen), so process ids exceed `clients`; the owner names stay "1"..=`clients`.
pub fn token_history(
    workload: &TokenWorkload,
    seed: u64,
) -> (Token, Vec<Operation<TokenInput, TokenOutput>>) {
    let clients = workload.clients.max(1);
    let tokens = workload.tokens.max(1);
    let max_latency = workload.max_latency.max(1);
    let model = Token::faultline(tokens, clients);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    // Timing first: each client runs one operation at a time, with small think times.
    let mut free_at = vec![0u64; clients as usize];
    let mut process: Vec<u64> = (0..clients).collect();
    let mut plan = Vec::with_capacity(workload.ops);
    for _ in 0..workload.ops {
        let worker = (0..clients as usize)
            .min_by_key(|&w| (free_at[w], w))
            .unwrap_or(0);
        let call = free_at[worker] + rng.random_range(0..=max_latency / 4);
        let ret = call + rng.random_range(1..=max_latency);
        let unknown = rng.random_bool(workload.unknown_rate.clamp(0.0, 1.0));
        let happened = !unknown || rng.random_bool(0.5);
        // A lost request may still be applied after the client gave up.
        let lin_end = if unknown { ret + max_latency } else { ret };
        plan.push(Planned {
            worker: worker as u64,
            process: process[worker],
            call,
            ret,
            lin: rng.random_range(call..=lin_end),
            unknown,
            happened,
            report_ret: rng.random_bool(0.5),
        });
        free_at[worker] = ret + 1;
        if unknown {
            process[worker] += clients;
        }
    }

    // Then inputs and outputs, in linearization order, against the true state.
    let mut order: Vec<usize> = (0..plan.len()).collect();
    order.sort_by_key(|&i| (plan[i].lin, i));
    let mut state: BTreeMap<TokenId, TokenState> =
        (0..tokens).map(|t| (t, model.initial_state(t))).collect();
    let mut owned: Vec<Vec<TokenId>> = vec![Vec::new(); clients as usize];
    for t in 0..tokens {
        owned[(t % clients) as usize].push(t);
    }
    let mut ops: Vec<Option<Operation<TokenInput, TokenOutput>>> =
        (0..plan.len()).map(|_| None).collect();
    for i in order {
        let p = &plan[i];
        let me = p.worker as usize;
        let input = if rng.random_bool(workload.read_rate.clamp(0.0, 1.0)) {
            TokenInput {
                token: rng.random_range(0..tokens),
                op: TokenOp::Read,
            }
        } else {
            // Mostly pay a token the client owns, sometimes one it does not (refused).
            let mine = &owned[me];
            let token = if !mine.is_empty() && rng.random_bool(0.8) {
                mine[rng.random_range(0..mine.len())]
            } else {
                rng.random_range(0..tokens)
            };
            let mut to = rng.random_range(0..clients);
            if clients > 1 && to == p.worker {
                to = (to + 1) % clients;
            }
            TokenInput {
                token,
                op: TokenOp::Pay {
                    from: (p.worker + 1).to_string(),
                    to: (to + 1).to_string(),
                },
            }
        };
        let current = state
            .get(&input.token)
            .cloned()
            .unwrap_or_else(|| model.initial_state(input.token));
        let output = match &input.op {
            TokenOp::Read => TokenOutput::State(current.clone()),
            TokenOp::Owns { owner } => TokenOutput::Owns(current.owner == *owner),
            TokenOp::Pay { from, .. } if *from == current.owner => TokenOutput::Paid {
                version: current.version + 1,
            },
            TokenOp::Pay { .. } => TokenOutput::NotOwned,
        };
        if p.happened {
            if let Some(next) = model.step(&current, &input, Some(&output)) {
                if next.owner != current.owner {
                    let old: Option<usize> = current.owner.parse::<usize>().ok();
                    let new: Option<usize> = next.owner.parse::<usize>().ok();
                    if let Some(list) = old.and_then(|o| owned.get_mut(o.wrapping_sub(1))) {
                        list.retain(|&t| t != input.token);
                    }
                    if let Some(list) = new.and_then(|o| owned.get_mut(o.wrapping_sub(1))) {
                        list.push(input.token);
                    }
                }
                state.insert(input.token, next);
            }
        }
        ops[i] = Some(Operation {
            client: p.process,
            input,
            call: p.call,
            ret: if !p.unknown || p.report_ret {
                Some(p.ret)
            } else {
                None
            },
            output: if p.unknown {
                Outcome::Unknown
            } else {
                Outcome::Ok(output)
            },
        });
    }
    let mut ops: Vec<_> = ops.into_iter().flatten().collect();
    ops.sort_by_key(|o| o.call);
    (model, ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::linearizability::{check, check_parallel, CheckOptions, Limit, Verdict};
    use std::time::Duration;

    #[test]
    fn generated_histories_are_linearizable_and_corruptions_are_caught() {
        let w = TokenWorkload {
            tokens: 6,
            clients: 4,
            ops: 400,
            unknown_rate: 0.05,
            ..TokenWorkload::default()
        };
        for seed in 0..5 {
            let (model, mut h) = token_history(&w, seed);
            assert_eq!(h.len(), 400);
            assert!(h.iter().any(|o| !o.output.is_known()));
            let r = check(&model, &h, &CheckOptions::default()).expect("well formed");
            assert_eq!(r.verdict, Verdict::Valid, "seed {seed}");

            // A read of a version that never existed.
            let Some(i) = h
                .iter()
                .position(|o| matches!(o.output, Outcome::Ok(TokenOutput::State(_))))
            else {
                panic!("no reads generated");
            };
            if let Outcome::Ok(TokenOutput::State(s)) = &mut h[i].output {
                s.version += 1_000;
            }
            let r = check(&model, &h, &CheckOptions::default()).expect("well formed");
            assert_eq!(r.verdict, Verdict::Invalid, "seed {seed}");
            let cx = r.counterexample.expect("counter-example");
            assert_eq!(cx.partition, format!("token {}", h[i].input.token));
        }
    }

    /// Large enough for `check_parallel` to use its threads.
    #[test]
    fn parallel_check_agrees_with_sequential_check() {
        let w = TokenWorkload {
            tokens: 12,
            clients: 6,
            ops: 1_500,
            unknown_rate: 0.03,
            ..TokenWorkload::default()
        };
        for seed in 0..3 {
            let (model, mut h) = token_history(&w, seed);
            let p = check_parallel(&model, &h, &CheckOptions::default(), 2).expect("well formed");
            assert_eq!(p.verdict, Verdict::Valid, "seed {seed}");
            assert_eq!(p.partitions_checked, p.partitions_total);
            assert_eq!(p.partitions_total, 12);

            // Corrupt reads of two tokens; both checks must report the same, smaller one.
            let mut corrupted = Vec::new();
            for token in [seed, seed + 5] {
                let Some(i) = h.iter().position(|o| {
                    o.input.token == token && matches!(o.output, Outcome::Ok(TokenOutput::State(_)))
                }) else {
                    panic!("no read of token {token}");
                };
                if let Outcome::Ok(TokenOutput::State(s)) = &mut h[i].output {
                    s.version += 1_000;
                }
                corrupted.push(token);
            }
            let r = check(&model, &h, &CheckOptions::default()).expect("well formed");
            assert_eq!(r.verdict, Verdict::Invalid);
            for threads in [2, 3] {
                let p = check_parallel(&model, &h, &CheckOptions::default(), threads).expect("ok");
                assert_eq!(
                    p.verdict,
                    Verdict::Invalid,
                    "seed {seed}, {threads} threads"
                );
                assert_eq!(p.counterexample, r.counterexample, "seed {seed}");
            }
            let Some(cx) = r.counterexample else {
                panic!("no counter-example");
            };
            assert!(corrupted
                .iter()
                .any(|t| cx.partition == format!("token {t}")));

            let spent = CheckOptions::with_time_limit(Duration::ZERO);
            let p = check_parallel(&model, &h, &spent, 2).expect("well formed");
            assert_eq!(p.verdict, Verdict::Unknown);
            assert_eq!(p.limit_hit, Some(Limit::Time));
        }
    }
}
