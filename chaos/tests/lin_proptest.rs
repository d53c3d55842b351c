//! The search against a brute-force checker on small random histories (<= 7 operations).
//!
//! The brute force is the definition of linearizability and nothing more: try every order of
//! every subset of operations that contains all known ones, respecting real time (`a` before
//! `b` when `a` returned before `b` was called; unknown operations never returned), and accept
//! if the model accepts one. It knows nothing of partitions, caches or prunings, so any
//! disagreement is a bug in those.
//!
//! Histories are built to sit near the boundary: outputs come from a random linearization (so
//! many are valid), then some are corrupted and some made unknown. Values come from tiny
//! domains so that identical operations, ties and refusals are common.

use faultline_chaos::check::{
    check, CheckOptions, KeyValue, KvInput, KvOutput, KvValue, Model, Operation, Outcome, Register,
    RegisterInput, RegisterOutput, Verdict,
};
use faultline_chaos::systems::tokens::model::{
    Token, TokenInput, TokenOp, TokenOutput, TokenState,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use std::collections::BTreeMap;

/// Applies one operation to the whole-history state, or refuses it.
type Step<'a, I, O, S> = &'a dyn Fn(&S, &Operation<I, O>) -> Option<S>;

/// Is there a valid order?
fn brute_force<I, O, S: Clone>(history: &[Operation<I, O>], init: S, step: Step<I, O, S>) -> bool {
    fn go<I, O, S: Clone>(
        h: &[Operation<I, O>],
        placed: &mut Vec<bool>,
        state: &S,
        step: Step<I, O, S>,
    ) -> bool {
        let all_known_placed = h
            .iter()
            .zip(placed.iter())
            .all(|(o, p)| *p || !o.output.is_known());
        if all_known_placed {
            return true;
        }
        for i in 0..h.len() {
            if placed[i] {
                continue;
            }
            let ready = h.iter().enumerate().all(|(j, o)| {
                placed[j] || !o.output.is_known() || o.ret.is_none_or(|r| r >= h[i].call)
            });
            if !ready {
                continue;
            }
            if let Some(next) = step(state, &h[i]) {
                placed[i] = true;
                if go(h, placed, &next, step) {
                    return true;
                }
                placed[i] = false;
            }
        }
        false
    }
    let mut placed = vec![false; history.len()];
    go(history, &mut placed, &init, step)
}

/// One random operation before outputs are known: input choice, timing, and what to do to it.
#[derive(Clone, Debug)]
struct Raw<I> {
    input: I,
    call: u64,
    len: u64,
    /// Where in its interval it takes effect, per mille.
    lin: u64,
    /// 0..=5: keep the true output; 6 and 7: replace it with `corrupt`; 8: unknown, took
    /// effect; 9: unknown, never took effect.
    fate: u8,
    report_ret: bool,
    corrupt: u8,
}

/// `lossy`: most outcomes unknown, so that the search must chain several unknown operations
/// (which exercises its iterative deepening); otherwise one in five.
fn raw<I: std::fmt::Debug + Clone>(
    input: impl Strategy<Value = I>,
    lossy: bool,
) -> impl Strategy<Value = Raw<I>> {
    (
        input,
        0u64..12,
        0u64..8,
        0u64..=1000,
        0u8..10,
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(
            move |(input, call, len, lin, fate, report_ret, corrupt)| Raw {
                input,
                call,
                len,
                lin,
                fate: if lossy {
                    [0, 1, 6, 8, 8, 8, 8, 9, 9, 9][usize::from(fate)]
                } else {
                    fate
                },
                report_ret,
                corrupt,
            },
        )
}

/// Builds a history: applies the operations in linearization-point order against `truth`,
/// then corrupts or hides outputs as each `fate` says.
fn build<I: Clone, O, S>(
    raws: &[Raw<I>],
    mut truth: S,
    apply: impl Fn(&mut S, &I) -> O,
    corrupt: impl Fn(&I, u8) -> O,
) -> Vec<Operation<I, O>> {
    let mut order: Vec<usize> = (0..raws.len()).collect();
    let point = |r: &Raw<I>| r.call * 1000 + r.len * r.lin;
    order.sort_by_key(|&i| (point(&raws[i]), i));
    let mut outputs: Vec<Option<O>> = (0..raws.len()).map(|_| None).collect();
    for i in order {
        if raws[i].fate != 9 {
            outputs[i] = Some(apply(&mut truth, &raws[i].input));
        }
    }
    raws.iter()
        .zip(outputs)
        .enumerate()
        .map(|(i, (r, out))| {
            let ret = r.call + r.len;
            let output = match (r.fate, out) {
                (0..=5, Some(o)) => Outcome::Ok(o),
                (6 | 7, _) => Outcome::Ok(corrupt(&r.input, r.corrupt)),
                _ => Outcome::Unknown,
            };
            let ret = if output.is_known() || r.report_ret {
                Some(ret)
            } else {
                None
            };
            Operation {
                client: i as u64,
                input: r.input.clone(),
                call: r.call,
                ret,
                output,
            }
        })
        .collect()
}

fn register_input() -> impl Strategy<Value = RegisterInput> {
    prop_oneof![
        Just(RegisterInput::Read),
        (0i64..3).prop_map(RegisterInput::Write),
        (0i64..3, 0i64..3).prop_map(|(from, to)| RegisterInput::Cas { from, to }),
    ]
}

fn register_history(
    lossy: bool,
) -> impl Strategy<Value = Vec<Operation<RegisterInput, RegisterOutput>>> {
    prop::collection::vec(raw(register_input(), lossy), 1..=7).prop_map(|raws| {
        build(
            &raws,
            None::<i64>,
            |s, i| match i {
                RegisterInput::Read => RegisterOutput::ReadOk(*s),
                RegisterInput::Write(v) => {
                    *s = Some(*v);
                    RegisterOutput::WriteOk
                }
                RegisterInput::Cas { from, to } => {
                    if *s == Some(*from) {
                        *s = Some(*to);
                        RegisterOutput::CasOk
                    } else {
                        RegisterOutput::CasFail
                    }
                }
            },
            |i, c| match i {
                RegisterInput::Read => {
                    RegisterOutput::ReadOk((c % 4 != 3).then_some(i64::from(c % 4)))
                }
                RegisterInput::Write(_) => RegisterOutput::WriteOk,
                RegisterInput::Cas { .. } if c % 2 == 0 => RegisterOutput::CasOk,
                RegisterInput::Cas { .. } => RegisterOutput::CasFail,
            },
        )
    })
}

fn owner(n: u8) -> String {
    (n % 3 + 1).to_string()
}

fn token_input() -> impl Strategy<Value = TokenInput> {
    (0u64..2, 0u8..3, 0u8..3, 0u8..3).prop_map(|(token, from, to, kind)| TokenInput {
        token,
        op: match kind {
            0 => TokenOp::Read,
            1 => TokenOp::Owns { owner: owner(from) },
            _ => TokenOp::Pay {
                from: owner(from),
                to: owner(to),
            },
        },
    })
}

type Tokens = BTreeMap<u64, TokenState>;

fn token_model() -> Token {
    Token::faultline(2, 3)
}

fn token_history(lossy: bool) -> impl Strategy<Value = Vec<Operation<TokenInput, TokenOutput>>> {
    prop::collection::vec(raw(token_input(), lossy), 1..=7).prop_map(|raws| {
        let model = token_model();
        let truth: Tokens = (0..2).map(|t| (t, model.initial_state(t))).collect();
        build(
            &raws,
            truth,
            |s, i| {
                let Some(t) = s.get_mut(&i.token) else {
                    return TokenOutput::NotOwned;
                };
                match &i.op {
                    TokenOp::Read => TokenOutput::State(t.clone()),
                    TokenOp::Owns { owner } => TokenOutput::Owns(t.owner == *owner),
                    TokenOp::Pay { from, to } if *from == t.owner => {
                        t.version += 1;
                        t.owner = to.clone();
                        TokenOutput::Paid { version: t.version }
                    }
                    TokenOp::Pay { .. } => TokenOutput::NotOwned,
                }
            },
            |i, c| match i.op {
                TokenOp::Read => TokenOutput::State(TokenState {
                    version: u64::from(c % 3) + 1,
                    owner: owner(c / 3),
                }),
                TokenOp::Owns { .. } => TokenOutput::Owns(c % 2 == 0),
                TokenOp::Pay { .. } if c % 2 == 0 => TokenOutput::NotOwned,
                TokenOp::Pay { .. } => TokenOutput::Paid {
                    version: u64::from(c / 2 % 3) + 2,
                },
            },
        )
    })
}

fn kv_input() -> impl Strategy<Value = KvInput> {
    (0u8..2, 0u8..3, 0u8..2).prop_map(|(key, op, value)| {
        let key = if key == 0 { "a" } else { "b" };
        let value = if value == 0 { "x" } else { "y" };
        match op {
            0 => KvInput::get(key),
            1 => KvInput::put(key, value),
            _ => KvInput::append(key, value),
        }
    })
}

fn kv_history() -> impl Strategy<Value = Vec<Operation<KvInput, KvOutput>>> {
    prop::collection::vec(raw(kv_input(), false), 1..=7).prop_map(|raws| {
        build(
            &raws,
            BTreeMap::<String, String>::new(),
            |s, i| {
                let v = s.entry(i.key.clone()).or_default();
                match &i.input_op() {
                    Some(Ok(put)) => {
                        *v = put.clone();
                        KvOutput::Done
                    }
                    Some(Err(app)) => {
                        v.push_str(app);
                        KvOutput::Done
                    }
                    None => KvOutput::Value(v.clone()),
                }
            },
            |_, c| {
                let vals = ["", "x", "y", "xy", "yx", "xx"];
                KvOutput::Value(vals[usize::from(c) % vals.len()].to_string())
            },
        )
    })
}

/// `None` for get, `Ok(v)` for put, `Err(v)` for append.
trait KvShape {
    fn input_op(&self) -> Option<Result<String, String>>;
}

impl KvShape for KvInput {
    fn input_op(&self) -> Option<Result<String, String>> {
        match &self.op {
            faultline_chaos::check::KvOp::Get => None,
            faultline_chaos::check::KvOp::Put(v) => Some(Ok(v.clone())),
            faultline_chaos::check::KvOp::Append(v) => Some(Err(v.clone())),
        }
    }
}

fn brute_register(h: &[Operation<RegisterInput, RegisterOutput>]) -> bool {
    brute_force(h, None, &|s, o| {
        Register.step(s, &o.input, o.output.known())
    })
}

fn brute_token(h: &[Operation<TokenInput, TokenOutput>]) -> bool {
    let model = token_model();
    let init: Tokens = (0..2).map(|t| (t, model.initial_state(t))).collect();
    brute_force(h, init, &|s: &Tokens, o| {
        let current = s.get(&o.input.token)?;
        let next = model.step(current, &o.input, o.output.known())?;
        let mut s = s.clone();
        s.insert(o.input.token, next);
        Some(s)
    })
}

fn brute_kv(h: &[Operation<KvInput, KvOutput>]) -> bool {
    brute_force(h, BTreeMap::<String, KvValue>::new(), &|s, o| {
        let current = s.get(&o.input.key).cloned().unwrap_or_default();
        let next = KeyValue.step(&current, &o.input, o.output.known())?;
        let mut s = s.clone();
        s.insert(o.input.key.clone(), next);
        Some(s)
    })
}

/// The search's verdict, after checking that a counter-example's prefix really is a valid
/// linearization prefix of its partition.
///
/// Runs twice: with the default options, and with iterative deepening starting from no unknown
/// operations at all, so that its later rounds run on every history that needs an unknown
/// operation (tiny histories rarely need enough of them in a row to reach the default's).
fn search<M: Model>(model: &M, h: &[Operation<M::Input, M::Output>]) -> bool {
    let deep = CheckOptions {
        unknown_run_bound: 0,
        ..CheckOptions::default()
    };
    let verdicts: Vec<bool> = [CheckOptions::default(), deep]
        .iter()
        .map(|options| search_with(model, h, options))
        .collect();
    assert_eq!(
        verdicts[0], verdicts[1],
        "verdict depends on unknown_run_bound"
    );
    verdicts[0]
}

fn search_with<M: Model>(
    model: &M,
    h: &[Operation<M::Input, M::Output>],
    options: &CheckOptions,
) -> bool {
    let result = match check(model, h, options) {
        Ok(r) => r,
        Err(e) => panic!("check failed: {e}"),
    };
    match result.verdict {
        Verdict::Valid => true,
        Verdict::Invalid => {
            let Some(cx) = result.counterexample else {
                panic!("invalid without a counter-example");
            };
            let partition = model
                .partition(h)
                .into_iter()
                .find(|p| p.key == cx.partition)
                .unwrap_or_else(|| panic!("no partition {:?}", cx.partition));
            let mut state = partition.init.clone();
            for (n, &i) in cx.prefix.iter().enumerate() {
                assert!(
                    partition.ops.contains(&i),
                    "prefix op {i} outside the partition"
                );
                assert!(!cx.prefix[..n].contains(&i), "prefix op {i} twice");
                // Real time: nothing later in the prefix returned before this one was called.
                for &j in &cx.prefix[n + 1..] {
                    let later = &h[j];
                    assert!(
                        !later.output.is_known() || later.ret.is_none_or(|r| r >= h[i].call),
                        "prefix breaks real-time order"
                    );
                }
                state = model
                    .step(&state, &h[i].input, h[i].output.known())
                    .unwrap_or_else(|| panic!("prefix step {n} (op {i}) refused"));
            }
            assert!(!cx.unplaced.is_empty());
            false
        }
        Verdict::Unknown => panic!("unbounded check returned unknown"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn register_search_matches_brute_force(h in register_history(false)) {
        prop_assert_eq!(search(&Register, &h), brute_register(&h), "history: {:#?}", h);
    }

    #[test]
    fn register_search_matches_brute_force_when_lossy(h in register_history(true)) {
        prop_assert_eq!(search(&Register, &h), brute_register(&h), "history: {:#?}", h);
    }

    #[test]
    fn token_search_matches_brute_force_when_lossy(h in token_history(true)) {
        prop_assert_eq!(search(&token_model(), &h), brute_token(&h), "history: {:#?}", h);
    }

    #[test]
    fn token_search_matches_brute_force(h in token_history(false)) {
        prop_assert_eq!(search(&token_model(), &h), brute_token(&h), "history: {:#?}", h);
    }

    #[test]
    fn kv_search_matches_brute_force(h in kv_history()) {
        prop_assert_eq!(search(&KeyValue, &h), brute_kv(&h), "history: {:#?}", h);
    }
}

/// The generators must produce both verdicts often, or the properties above prove little.
#[test]
fn generators_cover_both_verdicts() {
    fn share<T: std::fmt::Debug>(s: impl Strategy<Value = T>, valid: impl Fn(&T) -> bool) -> f64 {
        let mut runner = TestRunner::deterministic();
        let n = 400;
        let mut ok = 0;
        for _ in 0..n {
            let Ok(tree) = s.new_tree(&mut runner) else {
                panic!("strategy failed");
            };
            if valid(&tree.current()) {
                ok += 1;
            }
        }
        f64::from(ok) / f64::from(n)
    }
    for (name, frac) in [
        (
            "register",
            share(register_history(false), |h| brute_register(h)),
        ),
        (
            "register lossy",
            share(register_history(true), |h| brute_register(h)),
        ),
        ("token", share(token_history(false), |h| brute_token(h))),
        (
            "token lossy",
            share(token_history(true), |h| brute_token(h)),
        ),
        ("kv", share(kv_history(), |h| brute_kv(h))),
    ] {
        eprintln!("{name}: {frac:.2} valid");
        assert!((0.2..=0.9).contains(&frac), "{name}: {frac:.2} valid");
    }
}
