//! `linearizable`: the clients' histories of the tokens system, converted to the Token model's
//! operations and checked per token (P-compositionality: the Token model partitions by token).
//!
//! Conversion rules, and why:
//! - A pay is the payer's (`HistoryOp::client`) `Pay{from: client, to}`. `ok` + `paid` is
//!   `Paid{version}`; `failed` + `not_owned` is `NotOwned` (a definite answer the model can
//!   check); any other failure is a definite no-op and is left out. `unknown`, `pending`, and
//!   anything that cannot be read as a definite answer are `Outcome::Unknown`: the most
//!   permissive reading, so a malformed entry can hide a bug but never invent one.
//! - An `ok` gettokens is one `Read` per listed token, and one `Owns(false)` of its owner
//!   per token it does not list, at the read's own call and return
//!   times. That checks each token, not the atomic snapshot. Reads that failed or timed out
//!   say nothing and are left out.
//! - Transforms touch no token and are left out.
//! - Each operation gets its own `ClientId` (its index): a node runs many operations at
//!   once, and the checker's clients are sequential processes.
//! - Times are the recorded Unix microseconds; every history comes from one host clock.

use super::model::{Token, TokenInput, TokenOp, TokenOutput, TokenState};
use super::shrink::{shrink, Shrunk};
use super::TokensMeta;
use crate::check::{check_parallel, CheckOptions, Counterexample, Model, Operation, Verdict};
use crate::judge::{outcome, rel_ms_json, JudgeOptions};
use crate::record::RunRecord;
use crate::results::{CheckOutcome, Valid};
use faultline_node::api::{HistoryOp, Outcome as ApiOutcome};
use faultline_node::protocol::tokens::{OpError, Reply, Request};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Instant;

pub(crate) type TokOp = Operation<TokenInput, TokenOutput>;

/// A history in the Token model's terms, with where each operation came from.
#[derive(Clone, Debug, Default)]
pub struct ConvertedHistory<'a> {
    pub ops: Vec<Operation<TokenInput, TokenOutput>>,
    /// The recorded operation behind each of `ops` (a gettokens appears once per token).
    pub sources: Vec<&'a HistoryOp>,
    /// Recorded operations left out, by reason.
    pub left_out: BTreeMap<&'static str, u64>,
    /// Pays whose token or payee could not be read. They may have changed a token, so a
    /// history that has any cannot be judged invalid with confidence.
    pub unreadable_pays: u64,
}

/// Converts recorded operations to the Token model (see the module docs for the rules).
/// With `tokens` > 0, a gettokens also says of every token in `0..tokens` it does not
/// list that its owner does not own it.
pub fn convert_history<'a>(
    ops: impl IntoIterator<Item = &'a HistoryOp>,
    tokens: u64,
) -> ConvertedHistory<'a> {
    let mut out = ConvertedHistory::default();
    for op in ops {
        match op.kind.as_str() {
            "pay" => convert_pay(op, &mut out),
            "gettokens" => convert_read(op, tokens, &mut out),
            "transform" => *out.left_out.entry("transform").or_default() += 1,
            _ => *out.left_out.entry("other kind").or_default() += 1,
        }
    }
    out
}

/// The recorded request as the token system's typed request, if it is one.
pub(crate) fn request_of(op: &HistoryOp) -> Option<Request> {
    serde_json::from_value(op.request.clone()).ok()
}

/// The recorded reply as the token system's typed reply, if there is one.
pub(crate) fn reply_of(op: &HistoryOp) -> Option<Reply> {
    op.reply
        .as_ref()
        .and_then(|r| serde_json::from_value(r.clone()).ok())
}

fn convert_pay<'a>(op: &'a HistoryOp, out: &mut ConvertedHistory<'a>) {
    let Some(Request::Pay { token, to }) = request_of(op) else {
        out.unreadable_pays += 1;
        return;
    };
    let token = u64::from(token);
    let input = TokenInput {
        token,
        op: TokenOp::Pay {
            from: op.client.clone(),
            to,
        },
    };
    let call = op.invoke_us;
    let ret = op.complete_us.map(|r| r.max(call));
    let client = out.ops.len() as u64;
    let known = match op.outcome {
        ApiOutcome::Ok => paid_version(op, token).map(|version| TokenOutput::Paid { version }),
        ApiOutcome::Failed => {
            if !matches!(
                reply_of(op),
                Some(Reply::Failed {
                    error: OpError::NotOwned(_)
                })
            ) {
                *out.left_out.entry("pay failed").or_default() += 1;
                return;
            }
            Some(TokenOutput::NotOwned)
        }
        ApiOutcome::Unknown | ApiOutcome::Pending => None,
    };
    let converted = match (known, ret) {
        (Some(output), Some(ret)) => Operation::ok(client, input, call, ret, output),
        _ => Operation::unknown(client, input, call, ret),
    };
    out.ops.push(converted);
    out.sources.push(op);
}

/// The version an acknowledged pay of `token` made, if its reply says one.
pub(crate) fn paid_version(op: &HistoryOp, token: u64) -> Option<u64> {
    match reply_of(op)? {
        Reply::Paid { token: t, tag } if u64::from(t) == token => Some(tag.version),
        _ => None,
    }
}

fn convert_read<'a>(op: &'a HistoryOp, all_tokens: u64, out: &mut ConvertedHistory<'a>) {
    let (Some(ret), ApiOutcome::Ok) = (op.complete_us, op.outcome) else {
        *out.left_out.entry("gettokens not ok").or_default() += 1;
        return;
    };
    let Some(Reply::Tokens { owner, tokens }) = reply_of(op) else {
        *out.left_out.entry("gettokens unreadable").or_default() += 1;
        return;
    };
    let mut listed = std::collections::BTreeSet::new();
    for (token, version) in tokens {
        let token = u64::from(token);
        listed.insert(token);
        let state = TokenState {
            version,
            owner: owner.clone(),
        };
        let client = out.ops.len() as u64;
        out.ops.push(Operation::ok(
            client,
            TokenInput {
                token,
                op: TokenOp::Read,
            },
            op.invoke_us,
            ret.max(op.invoke_us),
            TokenOutput::State(state),
        ));
        out.sources.push(op);
    }
    // What the read did not list, its owner did not own at that moment.
    for token in (0..all_tokens).filter(|t| !listed.contains(t)) {
        let client = out.ops.len() as u64;
        out.ops.push(Operation::ok(
            client,
            TokenInput {
                token,
                op: TokenOp::Owns {
                    owner: owner.clone(),
                },
            },
            op.invoke_us,
            ret.max(op.invoke_us),
            TokenOutput::Owns(false),
        ));
        out.sources.push(op);
    }
}

/// The model of a run: token `i` starts at version 1 owned by `initial_owners[i]`. Tokens
/// without a listed owner start unlisted, which no history matches.
fn model_of(meta: &TokensMeta) -> Token {
    Token::new(
        meta.initial_owners
            .iter()
            .take(usize::try_from(meta.token_count()).unwrap_or(usize::MAX))
            .enumerate()
            .map(|(i, owner)| {
                (
                    i as u64,
                    TokenState {
                        version: 1,
                        owner: owner.clone(),
                    },
                )
            }),
        TokenState {
            version: 0,
            owner: String::new(),
        },
    )
}

pub(crate) fn check_linearizable(record: &RunRecord, opts: &JudgeOptions) -> CheckOutcome {
    const NAME: &str = "linearizable";
    let meta = match TokensMeta::of(record) {
        Ok(m) => m,
        Err(e) => return outcome(NAME, Valid::Unknown, e, Value::Null),
    };
    let tokens = meta.token_count();
    if tokens == 0 {
        return outcome(
            NAME,
            Valid::Unknown,
            "the run records no tokens",
            Value::Null,
        );
    }
    let mut conv = convert_history(record.histories.values().flat_map(|h| h.ops.iter()), tokens);
    // Tokens the run has but whose initial owner was not recorded cannot be checked; their
    // operations are set aside rather than judged against a made-up start.
    let owners_known = meta.initial_owners.len() as u64;
    let mut unowned_ops = 0u64;
    if owners_known < tokens {
        let keep: Vec<bool> = conv
            .ops
            .iter()
            .map(|o| o.input.token < owners_known || o.input.token >= tokens)
            .collect();
        unowned_ops = keep.iter().filter(|k| !**k).count() as u64;
        let mut k = keep.iter();
        conv.ops.retain(|_| k.next().copied().unwrap_or(true));
        let mut k = keep.iter();
        conv.sources.retain(|_| k.next().copied().unwrap_or(true));
        for (i, op) in conv.ops.iter_mut().enumerate() {
            op.client = i as u64;
        }
    }
    let truncated: u64 = record.histories.values().map(|h| h.truncated).sum();
    let model = model_of(&meta);
    let started = Instant::now();
    let result = check_parallel(
        &model,
        &conv.ops,
        &CheckOptions {
            memory_limit: Some(opts.lin_memory_limit),
            all_partitions: true,
            ..CheckOptions::with_time_limit(opts.lin_time_limit)
        },
        opts.threads.max(1),
    );
    let mut caveats = Vec::new();
    if truncated > 0 {
        caveats.push(format!(
            "{truncated} operations were not kept by the clients"
        ));
    }
    if conv.unreadable_pays > 0 {
        caveats.push(format!("{} pays could not be read", conv.unreadable_pays));
    }
    if unowned_ops > 0 {
        caveats.push(format!(
            "{unowned_ops} operations on tokens with no recorded initial owner were not checked"
        ));
    }
    // A gettokens is one event per token it lists; say operations and events apart.
    let operations = {
        let mut seen: Vec<(&str, u64)> = conv
            .sources
            .iter()
            .map(|o| (o.client.as_str(), o.id))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    };
    let base = json!({
        "operations": operations,
        "events": conv.ops.len(),
        "left_out": conv.left_out,
        "unreadable_pays": conv.unreadable_pays,
        "truncated": truncated,
        "caveats": caveats,
    });
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            return outcome(
                NAME,
                Valid::Unknown,
                format!("the history could not be checked: {e}"),
                with(base, &[("error", json!(e.to_string()))]),
            )
        }
    };
    let stats = json!({
        "tokens": result.partitions_total,
        "tokens_checked": result.partitions_checked,
        "tokens_invalid": result.partitions_invalid,
        "steps": result.steps,
        "elapsed_ms": result.elapsed.as_millis() as u64,
        "limit_hit": result.limit_hit,
    });
    let base = with(base, &[("search", stats)]);
    match (result.verdict, result.counterexample) {
        (Verdict::Invalid, Some(cx)) => {
            let deadline = Instant::now() + opts.shrink_time_limit;
            let (summary, evidence) = counterexample(record, &conv, &model, &cx, deadline);
            let summary = format!(
                "{summary} ({} of {} tokens fail{})",
                result.partitions_invalid,
                result.partitions_total,
                if result.partitions_checked < result.partitions_total {
                    format!(
                        ", {} not decided",
                        result.partitions_total - result.partitions_checked
                    )
                } else {
                    String::new()
                }
            );
            let evidence = with(base, &[("counterexample", evidence)]);
            // Operations set aside for want of an initial owner are whole tokens of their
            // own, so they cannot explain a failure elsewhere; lost or unreadable ones can.
            if truncated == 0 && conv.unreadable_pays == 0 {
                outcome(NAME, Valid::False, summary, evidence)
            } else {
                // Missing operations could explain the failure; say what was found and why
                // it is not a verdict.
                outcome(
                    NAME,
                    Valid::Unknown,
                    format!("{summary}; but {}", caveats.join(", ")),
                    evidence,
                )
            }
        }
        (Verdict::Valid, _) => {
            let summary = format!(
                "{operations} operations ({} per-token events) on {} tokens are linearizable",
                conv.ops.len(),
                result.partitions_total
            );
            if caveats.is_empty() {
                outcome(NAME, Valid::True, summary, base)
            } else {
                outcome(
                    NAME,
                    Valid::Unknown,
                    format!("{summary}, but {}", caveats.join(", ")),
                    base,
                )
            }
        }
        _ => outcome(
            NAME,
            Valid::Unknown,
            format!(
                "search stopped ({}) after {:.1} s with {} of {} tokens checked and none invalid",
                result
                    .limit_hit
                    .map_or("no verdict".to_string(), |l| format!("{l:?} limit")
                        .to_lowercase()),
                started.elapsed().as_secs_f64(),
                result.partitions_checked,
                result.partitions_total
            ),
            base,
        ),
    }
}

fn with(mut base: Value, extra: &[(&str, Value)]) -> Value {
    if let Some(map) = base.as_object_mut() {
        for (k, v) in extra {
            map.insert((*k).to_string(), v.clone());
        }
    }
    base
}

/// Most operations listed in a counter-example; beyond it the earliest are elided.
const MAX_LISTED: usize = 100;

/// The summary and evidence of a failing token: its history shrunk, listed in call order,
/// what the search could linearize and what it could not place.
fn counterexample(
    record: &RunRecord,
    conv: &ConvertedHistory,
    model: &Token,
    cx: &Counterexample,
    deadline: Instant,
) -> (String, Value) {
    let token = cx
        .unplaced
        .first()
        .map(|u| u.op)
        .or_else(|| cx.prefix.first().copied())
        .and_then(|i| conv.ops.get(i))
        .map(|o| o.input.token)
        .or_else(|| cx.partition.strip_prefix("token ")?.parse().ok())
        .unwrap_or(0);
    let part: Vec<usize> = (0..conv.ops.len())
        .filter(|&i| conv.ops[i].input.token == token)
        .collect();
    let init = model.initial_state(token);
    let shrunk = shrink(&conv.ops, &part, token, init.clone(), deadline);
    let start = record.meta.start_us;

    // Positions in the listed sub-history, so the rest of the evidence can point into it.
    let listed = &shrunk.ops;
    let pos: BTreeMap<usize, usize> = listed.iter().enumerate().map(|(n, &i)| (i, n)).collect();
    let describe = |i: usize| -> Value {
        let (Some(op), Some(src)) = (conv.ops.get(i), conv.sources.get(i)) else {
            return Value::Null;
        };
        json!({
            "n": pos.get(&i),
            "client": src.client,
            "history_id": src.id,
            "call_ms": rel_ms_json(op.call, start),
            "return_ms": op.ret.map(|r| rel_ms_json(r, start)),
            "op": model.describe_operation(&op.input, &op.output),
        })
    };
    let omitted = listed.len().saturating_sub(MAX_LISTED);
    let ops: Vec<Value> = listed.iter().skip(omitted).map(|&i| describe(i)).collect();
    let (final_cx, from_shrunk) = match &shrunk.counterexample {
        Some(c) => (c, true),
        None => (cx, false),
    };
    let linearized: Vec<Value> = final_cx
        .prefix_tail
        .iter()
        .map(|s| with(describe(s.op), &[("state_after", json!(s.state_after))]))
        .collect();
    let unplaced: Vec<Value> = final_cx
        .unplaced
        .iter()
        .map(|u| {
            with(
                describe(u.op),
                &[
                    ("fits_state_reached", json!(u.fits_final_state)),
                    ("blocking", json!(u.blocking)),
                ],
            )
        })
        .collect();
    let culprit = final_cx
        .unplaced
        .iter()
        .find(|u| u.blocking)
        .or_else(|| final_cx.unplaced.iter().find(|u| !u.fits_final_state))
        .or_else(|| final_cx.unplaced.first());
    let culprit_text = culprit.and_then(|u| {
        let op = conv.ops.get(u.op)?;
        let src = conv.sources.get(u.op)?;
        Some(format!(
            "{} by {} at {:.1} s",
            model.describe_operation(&op.input, &op.output),
            src.client,
            crate::judge::rel_ms(op.call, start) / 1000.0
        ))
    });
    let summary = match culprit_text {
        Some(c) => format!(
            "token {token} is not linearizable: {c} cannot be placed ({}-operation \
             counter-example)",
            listed.len()
        ),
        None => format!(
            "token {token} is not linearizable ({}-operation counter-example)",
            listed.len()
        ),
    };
    let evidence = json!({
        "token": token,
        "initial_state": state_json(&shrunk.init),
        "initial_state_is": if shrunk.folded == 0 {
            "the token's initial state".to_string()
        } else {
            format!(
                "the state the first listed pay, acknowledged, must have started from; {} \
                 operations that came before it or change nothing after it are omitted",
                shrunk.folded
            )
        },
        "ops": ops,
        "ops_omitted": omitted,
        "reading": "ops are in call order; an op ending in ? had an unknown outcome and may \
                    have taken effect at any time after its call, or never",
        "linearized_tail": linearized,
        "state_reached": final_cx.final_state,
        "could_not_place": unplaced,
        "shrinking": shrink_json(&shrunk, part.len(), from_shrunk),
    });
    (summary, evidence)
}

fn state_json(s: &TokenState) -> Value {
    json!({"version": s.version, "owner": s.owner})
}

fn shrink_json(s: &Shrunk, partition_ops: usize, used: bool) -> Value {
    json!({
        "token_ops": partition_ops,
        "counterexample_ops": s.ops.len(),
        "folded_into_initial_state": s.folded,
        "cut_after_failure": s.cut_after,
        "reads_removed": s.reads_removed,
        "finished": s.finished,
        "search_of_shrunk_history": used,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::check::Outcome;

    fn opts() -> JudgeOptions {
        JudgeOptions {
            threads: 1,
            ..JudgeOptions::default()
        }
    }

    #[test]
    fn conversion_follows_the_outcome_rules() {
        let ops = [
            paid("c1", 0, "c2", 2, 0, 10),
            pay_failed("c1", 1, "c2", "not_owned", 5, 10),
            pay_failed("c1", 1, "c2", "no_quorum", 6, 10),
            pay_unknown("c2", 1, "c1", 7, 10),
            read("c2", &[(0, 2), (1, 1)], 20, 5),
            HistoryOp {
                outcome: ApiOutcome::Pending,
                complete_us: None,
                ..read("c1", &[], 30, 1)
            },
        ];
        let conv = convert_history(ops.iter(), 0);
        let outs: Vec<Outcome<TokenOutput>> = conv.ops.iter().map(|o| o.output.clone()).collect();
        assert_eq!(
            outs,
            vec![
                Outcome::Ok(TokenOutput::Paid { version: 2 }),
                Outcome::Ok(TokenOutput::NotOwned),
                Outcome::Unknown,
                Outcome::Ok(TokenOutput::State(TokenState {
                    version: 2,
                    owner: "c2".into()
                })),
                Outcome::Ok(TokenOutput::State(TokenState {
                    version: 1,
                    owner: "c2".into()
                })),
            ]
        );
        assert_eq!(conv.left_out.get("pay failed"), Some(&1));
        assert_eq!(conv.left_out.get("gettokens not ok"), Some(&1));
        let clients: Vec<u64> = conv.ops.iter().map(|o| o.client).collect();
        assert_eq!(clients, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn an_ok_pay_without_a_readable_version_counts_as_unknown() {
        let mut op = paid("c1", 0, "c2", 2, 0, 10);
        op.reply = Some(json!({"result": "paid", "token": 0}));
        let conv = convert_history([&op], 0);
        assert_eq!(conv.ops[0].output, Outcome::Unknown);
    }

    #[test]
    fn clean_history_is_valid_and_a_stale_read_is_not() {
        let mut ops = vec![
            paid("c1", 0, "c2", 2, 0, 10),
            read("c2", &[(0, 2), (1, 1)], 20, 5),
        ];
        let rec = record(ops.clone());
        let c = check_linearizable(&rec, &opts());
        assert_eq!(c.valid, Valid::True, "{}", c.summary);

        ops.push(read("c1", &[(0, 1)], 40, 5));
        let c = check_linearizable(&record(ops), &opts());
        assert_eq!(c.valid, Valid::False);
        assert!(c.summary.contains("token 0"), "{}", c.summary);
        let cx = &c.evidence["counterexample"];
        assert_eq!(cx["token"], 0);
        assert_eq!(cx["ops"].as_array().map(Vec::len), Some(2), "{cx:#}");
    }

    #[test]
    fn missing_initial_owners_make_it_unknown_not_false() {
        let mut rec = record(vec![paid("c2", 1, "c1", 2, 0, 10)]);
        rec.meta.system_meta["initial_owners"] = json!(["c1"]);
        let c = check_linearizable(&rec, &opts());
        assert_eq!(c.valid, Valid::Unknown, "{}", c.summary);
    }
}
