//! The token system's sequential specification for the linearizability
//! checker: each token is an object with a version and an owner, and a
//! history is checked per token (per-token linearizability).

use crate::check::history::{Operation, Outcome};
use crate::check::{Model, Partition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

/// Token ids of the tokens system (0..60 in the default layout).
pub type TokenId = u64;

/// One token: its version grows by one with every pay, and it has exactly one owner.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TokenState {
    pub version: u64,
    pub owner: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenInput {
    pub token: TokenId,
    pub op: TokenOp,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenOp {
    /// `from` gives the token to `to`. Only the current owner may pay.
    Pay { from: String, to: String },
    /// Reads the token's version and owner.
    Read,
    /// Asks whether `owner` owns the token (a read that tells only that:
    /// what a gettokens of `owner` says about each token it does not list).
    Owns { owner: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenOutput {
    /// The pay was applied; the token now has this version (one more than before).
    Paid { version: u64 },
    /// The pay was refused because `from` did not own the token; nothing changed.
    NotOwned,
    /// What a read saw.
    State(TokenState),
    /// The answer to [`TokenOp::Owns`].
    Owns(bool),
}

/// The tokens system: each token is an object with a version and an owner.
///
/// Operations touch one token each, so a history over many tokens is partitioned per token and
/// each token is checked alone (that is exactly "per-token linearizable"). Each token starts
/// from its entry in the initial table; a token missing from the table starts as `unlisted`.
///
/// Rules: `Pay{from,to}` answered `Paid{version}` needs `owner == from` and
/// `version == old + 1`, then the owner is `to`. Answered `NotOwned` it needs `owner != from`
/// and changes nothing. With an unknown outcome it pays if `from` owned the token and is a
/// no-op otherwise. `Read` must see exactly the current (version, owner).
///
/// A multi-token read such as `gettokens` can be recorded as one `Read` per token in its reply
/// (same call and return times); that checks each token, not an atomic snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    initial: BTreeMap<TokenId, TokenState>,
    unlisted: TokenState,
}

impl Token {
    pub fn new(
        initial: impl IntoIterator<Item = (TokenId, TokenState)>,
        unlisted: TokenState,
    ) -> Self {
        Token {
            initial: initial.into_iter().collect(),
            unlisted,
        }
    }

    /// The tokens system's layout: `tokens` tokens at version 1, token `i` owned by client
    /// `(i % clients) + 1` (owners are the client numbers as strings: "1", "2", ...).
    /// Tokens outside the table start at version 0 with an empty owner, which no client is.
    pub fn faultline(tokens: u64, clients: u64) -> Self {
        let clients = clients.max(1);
        Token::new(
            (0..tokens).map(|i| {
                (
                    i,
                    TokenState {
                        version: 1,
                        owner: ((i % clients) + 1).to_string(),
                    },
                )
            }),
            TokenState {
                version: 0,
                owner: String::new(),
            },
        )
    }

    /// The state `token` starts from.
    pub fn initial_state(&self, token: TokenId) -> TokenState {
        self.initial
            .get(&token)
            .cloned()
            .unwrap_or_else(|| self.unlisted.clone())
    }
}

impl Model for Token {
    /// The state of the partition's one token.
    type State = TokenState;
    type Input = TokenInput;
    type Output = TokenOutput;

    /// Only meaningful for a history of a single unlisted token: [`Model::partition`] gives each
    /// token its own initial state.
    fn init(&self) -> TokenState {
        self.unlisted.clone()
    }

    fn step(
        &self,
        state: &TokenState,
        input: &TokenInput,
        output: Option<&TokenOutput>,
    ) -> Option<TokenState> {
        match (&input.op, output) {
            (TokenOp::Pay { from, to }, None) => Some(if state.owner == *from {
                TokenState {
                    version: state.version + 1,
                    owner: to.clone(),
                }
            } else {
                state.clone()
            }),
            (TokenOp::Pay { from, to }, Some(TokenOutput::Paid { version })) => {
                (state.owner == *from && *version == state.version + 1).then(|| TokenState {
                    version: *version,
                    owner: to.clone(),
                })
            }
            (TokenOp::Pay { from, .. }, Some(TokenOutput::NotOwned)) => {
                (state.owner != *from).then(|| state.clone())
            }
            (TokenOp::Read, None) => Some(state.clone()),
            (TokenOp::Read, Some(TokenOutput::State(seen))) => {
                (seen == state).then(|| state.clone())
            }
            (TokenOp::Owns { .. }, None) => Some(state.clone()),
            (TokenOp::Owns { owner }, Some(TokenOutput::Owns(yes))) => {
                ((state.owner == *owner) == *yes).then(|| state.clone())
            }
            _ => None,
        }
    }

    fn is_read_only(&self, input: &TokenInput, output: Option<&TokenOutput>) -> bool {
        matches!(
            (&input.op, output),
            (TokenOp::Read, _)
                | (TokenOp::Owns { .. }, _)
                | (TokenOp::Pay { .. }, Some(TokenOutput::NotOwned))
        )
    }

    fn partition(
        &self,
        history: &[Operation<TokenInput, TokenOutput>],
    ) -> Vec<Partition<TokenState>> {
        let mut by_token: BTreeMap<TokenId, Vec<usize>> = BTreeMap::new();
        for (i, op) in history.iter().enumerate() {
            by_token.entry(op.input.token).or_default().push(i);
        }
        by_token
            .into_iter()
            .map(|(token, ops)| Partition {
                key: format!("token {token}"),
                init: self.initial_state(token),
                ops,
            })
            .collect()
    }

    fn describe_operation(&self, input: &TokenInput, output: &Outcome<TokenOutput>) -> String {
        let call = match &input.op {
            TokenOp::Pay { from, to } => format!("pay(token {}, {from} -> {to})", input.token),
            TokenOp::Read => format!("read(token {})", input.token),
            TokenOp::Owns { owner } => format!("owns(token {}, {owner})", input.token),
        };
        let ret = match output {
            Outcome::Unknown => "?".to_string(),
            Outcome::Ok(TokenOutput::Paid { version }) => format!("paid v{version}"),
            Outcome::Ok(TokenOutput::NotOwned) => "not owned".to_string(),
            Outcome::Ok(TokenOutput::State(s)) => self.describe_state(s),
            Outcome::Ok(TokenOutput::Owns(yes)) => yes.to_string(),
        };
        format!("{call} -> {ret}")
    }

    fn describe_state(&self, state: &TokenState) -> String {
        format!("v{} owner {:?}", state.version, state.owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rules_and_partitioning() {
        let m = Token::faultline(12, 6);
        let t0 = m.initial_state(0);
        assert_eq!(
            t0,
            TokenState {
                version: 1,
                owner: "1".into()
            }
        );
        assert_eq!(m.initial_state(7).owner, "2");
        assert_eq!(m.initial_state(99).version, 0);
        let pay = |from: &str, to: &str| TokenInput {
            token: 0,
            op: TokenOp::Pay {
                from: from.into(),
                to: to.into(),
            },
        };
        let paid = m.step(&t0, &pay("1", "3"), Some(&TokenOutput::Paid { version: 2 }));
        assert_eq!(
            paid,
            Some(TokenState {
                version: 2,
                owner: "3".into()
            })
        );
        assert_eq!(
            m.step(&t0, &pay("1", "3"), Some(&TokenOutput::Paid { version: 3 })),
            None
        );
        assert_eq!(
            m.step(&t0, &pay("2", "3"), Some(&TokenOutput::Paid { version: 2 })),
            None
        );
        assert_eq!(
            m.step(&t0, &pay("2", "3"), Some(&TokenOutput::NotOwned)),
            Some(t0.clone())
        );
        assert_eq!(
            m.step(&t0, &pay("1", "3"), Some(&TokenOutput::NotOwned)),
            None
        );
        assert_eq!(m.step(&t0, &pay("2", "3"), None), Some(t0.clone()));
        assert_eq!(m.step(&t0, &pay("1", "3"), None), paid);
        let read = TokenInput {
            token: 0,
            op: TokenOp::Read,
        };
        assert_eq!(
            m.step(&t0, &read, Some(&TokenOutput::State(t0.clone()))),
            Some(t0.clone())
        );
        assert_eq!(m.step(&t0, &read, Some(&TokenOutput::NotOwned)), None);

        let h = vec![
            Operation::ok(1, read.clone(), 0, 1, TokenOutput::State(t0.clone())),
            Operation::ok(
                2,
                TokenInput {
                    token: 7,
                    op: TokenOp::Read,
                },
                0,
                1,
                TokenOutput::State(m.initial_state(7)),
            ),
        ];
        let parts = m.partition(&h);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].init, m.initial_state(7));
        assert_eq!(parts[1].key, "token 7");
    }

    // The search on the Token model (P-compositionality per token).
    use crate::check::{check, CheckOptions, CheckResult, Verdict};

    fn run<M: Model>(model: &M, h: &[Operation<M::Input, M::Output>]) -> CheckResult {
        match check(model, h, &CheckOptions::default()) {
            Ok(r) => r,
            Err(e) => panic!("check failed: {e}"),
        }
    }

    fn ok<I, O>(client: u64, input: I, call: u64, ret: u64, output: O) -> Operation<I, O> {
        Operation::ok(client, input, call, ret, output)
    }

    fn unknown<I, O>(client: u64, input: I, call: u64) -> Operation<I, O> {
        Operation::unknown(client, input, call, None)
    }

    fn pay(token: u64, from: &str, to: &str) -> TokenInput {
        TokenInput {
            token,
            op: TokenOp::Pay {
                from: from.into(),
                to: to.into(),
            },
        }
    }

    fn read(token: u64) -> TokenInput {
        TokenInput {
            token,
            op: TokenOp::Read,
        }
    }

    fn seen(version: u64, owner: &str) -> TokenOutput {
        TokenOutput::State(TokenState {
            version,
            owner: owner.into(),
        })
    }

    #[test]
    fn token_pays_and_reads() {
        let m = Token::faultline(6, 3);
        let h = vec![
            ok(1, pay(0, "1", "2"), 0, 2, TokenOutput::Paid { version: 2 }),
            ok(3, pay(0, "3", "1"), 1, 3, TokenOutput::NotOwned),
            ok(2, read(0), 1, 4, seen(1, "1")),
            ok(2, pay(0, "2", "3"), 5, 6, TokenOutput::Paid { version: 3 }),
            ok(1, read(3), 0, 1, seen(1, "1")),
            ok(2, pay(1, "2", "3"), 0, 1, TokenOutput::Paid { version: 2 }),
            ok(3, read(1), 2, 3, seen(2, "3")),
        ];
        let r = run(&m, &h);
        assert_eq!(r.verdict, Verdict::Valid);
        assert_eq!(r.partitions_total, 3);
    }

    #[test]
    fn token_racing_pays_both_acknowledged_is_invalid() {
        // The seeds' known bug: two concurrent pays of one token at the same version both win.
        let m = Token::faultline(6, 3);
        let h = vec![
            ok(1, pay(0, "1", "2"), 0, 3, TokenOutput::Paid { version: 2 }),
            ok(4, pay(0, "1", "3"), 1, 4, TokenOutput::Paid { version: 2 }),
            ok(2, read(1), 0, 1, seen(1, "2")),
        ];
        let r = run(&m, &h);
        assert_eq!(r.verdict, Verdict::Invalid);
        let cx = r.counterexample.expect("counter-example");
        assert_eq!(cx.partition, "token 0");
        assert_eq!(cx.prefix.len(), 1);
        assert_eq!(cx.unplaced.len(), 1);
    }

    #[test]
    fn token_unknown_pay() {
        let m = Token::faultline(6, 3);
        let landed = vec![
            unknown(1, pay(0, "1", "2"), 0),
            ok(5, read(0), 1, 2, seen(1, "1")),
            ok(5, read(0), 3, 4, seen(2, "2")),
            ok(2, pay(0, "2", "3"), 5, 6, TokenOutput::Paid { version: 3 }),
        ];
        assert_eq!(run(&m, &landed).verdict, Verdict::Valid);
        let lost = vec![
            unknown(1, pay(0, "1", "2"), 0),
            ok(5, read(0), 3, 4, seen(1, "1")),
            ok(6, pay(0, "1", "3"), 5, 6, TokenOutput::Paid { version: 2 }),
        ];
        assert_eq!(run(&m, &lost).verdict, Verdict::Valid);
        let back = vec![
            unknown(1, pay(0, "1", "2"), 0),
            ok(5, read(0), 3, 4, seen(2, "2")),
            ok(5, read(0), 5, 6, seen(1, "1")),
        ];
        assert_eq!(run(&m, &back).verdict, Verdict::Invalid);
        // Not the owner's pay never lands.
        let stranger = vec![
            unknown(1, pay(0, "2", "3"), 0),
            ok(5, read(0), 3, 4, seen(2, "3")),
        ];
        assert_eq!(run(&m, &stranger).verdict, Verdict::Invalid);
    }
}
