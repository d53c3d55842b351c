//! The token core's simulated runs (the same seeds as the node's simulation
//! test) checked for per-token linearizability with the history checker.
//! The node's invariants check state; this checks what clients saw, which
//! catches what state checks cannot (a read that goes back in time, a pay
//! that succeeds without ownership). Planted bugs must be caught here too.

use faultline_chaos::check::{check, CheckOptions, Operation, Outcome, Verdict};
use faultline_chaos::systems::tokens::model::{
    Token, TokenInput, TokenOp, TokenOutput, TokenState,
};
use faultline_node::protocol::tokens::simulation::run_seed;
use faultline_node::protocol::tokens::{Bugs, OpError, Reply, Request, TokensNode};
use faultline_node::sim::Sim;
use std::time::Duration;

/// The simulator's history as token-model operations; one client id per
/// operation, since a node runs many operations at once.
fn history(sim: &Sim<TokensNode>) -> Vec<Operation<TokenInput, TokenOutput>> {
    let mut ops = Vec::new();
    for (i, e) in sim.history.iter().enumerate() {
        let client = i as u64;
        match (&e.request, &e.completed) {
            (Request::Pay { token, to }, done) => {
                let input = TokenInput {
                    token: *token as u64,
                    op: TokenOp::Pay {
                        from: e.node.clone(),
                        to: to.clone(),
                    },
                };
                let (ret, output) = match done {
                    Some((t, Reply::Paid { tag, .. })) => (
                        Some(*t),
                        Outcome::Ok(TokenOutput::Paid {
                            version: tag.version,
                        }),
                    ),
                    Some((
                        t,
                        Reply::Failed {
                            error: OpError::NotOwned(_),
                        },
                    )) => (Some(*t), Outcome::Ok(TokenOutput::NotOwned)),
                    // Any other failure did nothing: leave it out.
                    Some((_, Reply::Failed { .. })) => continue,
                    Some((t, _)) => (Some(*t), Outcome::Unknown),
                    None => (None, Outcome::Unknown),
                };
                ops.push(Operation {
                    client,
                    input,
                    call: e.invoked,
                    ret,
                    output,
                });
            }
            (Request::GetTokens { .. }, Some((t, Reply::Tokens { owner, tokens }))) => {
                for (token, version) in tokens {
                    ops.push(Operation::ok(
                        client,
                        TokenInput {
                            token: *token as u64,
                            op: TokenOp::Read,
                        },
                        e.invoked,
                        *t,
                        TokenOutput::State(TokenState {
                            version: *version,
                            owner: owner.clone(),
                        }),
                    ));
                }
            }
            _ => {}
        }
    }
    ops
}

fn model() -> Token {
    let clients: Vec<String> = (1..=6).map(|i| format!("c{i}")).collect();
    Token::new(
        (0..60u64).map(|t| {
            (
                t,
                TokenState {
                    version: 1,
                    owner: clients[t as usize % 6].clone(),
                },
            )
        }),
        TokenState {
            version: 0,
            owner: String::new(),
        },
    )
}

fn verdict(seed: u64, bugs: Bugs) -> Result<Verdict, String> {
    let (_, sim) = run_seed(seed, bugs)?;
    let opts = CheckOptions {
        time_limit: Some(Duration::from_secs(20)),
        ..CheckOptions::default()
    };
    let r = check(&model(), &history(&sim), &opts).map_err(|e| format!("seed {seed}: {e}"))?;
    Ok(r.verdict)
}

#[test]
fn simulated_histories_are_linearizable() {
    let mut unknown = 0;
    for seed in 0..200 {
        match verdict(seed, Bugs::default()) {
            Ok(Verdict::Valid) => {}
            Ok(Verdict::Unknown) => unknown += 1,
            Ok(Verdict::Invalid) => {
                panic!("seed {seed}: history is not linearizable (replay: FAULTLINE_SEED={seed})")
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(unknown < 5, "{unknown} seeds were too hard to decide");
}

#[test]
fn planted_bugs_make_histories_non_linearizable() {
    let cases = [
        Bugs {
            skip_owner_check: true,
            ..Bugs::default()
        },
        Bugs {
            errors_as_acks: true,
            ..Bugs::default()
        },
        Bugs {
            stale_tag_cache: true,
            ..Bugs::default()
        },
    ];
    for bugs in cases {
        let caught = (0..200)
            .any(|seed| matches!(verdict(seed, bugs.clone()), Ok(Verdict::Invalid) | Err(_)));
        assert!(caught, "{bugs:?} was never caught");
    }
}

/// Many more seeds than CI runs, for hunting: `FAULTLINE_SEEDS=2000`.
#[test]
#[ignore]
fn hunt() {
    let n: u64 = std::env::var("FAULTLINE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    for seed in 0..n {
        match verdict(seed, Bugs::default()) {
            Ok(Verdict::Valid) => {}
            other => eprintln!("seed {seed}: {other:?}"),
        }
    }
}
