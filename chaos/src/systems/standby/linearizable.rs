//! `linearizable`: the clients' histories as the bank model's operations,
//! checked per account (P-compositionality). A write that is unknown or
//! still pending may have happened or not; a lookup without an answer says
//! nothing and is left out; a failed request never ran.

use super::model::BankModel;
use super::{bank_ops, StandbyMeta};
use crate::check::{check_parallel, CheckOptions, Operation, Verdict};
use crate::judge::outcome;
use crate::results::{CheckOutcome, Valid};
use crate::systems::Judging;
use faultline_node::api::Outcome as ApiOutcome;
use faultline_node::protocol::standby::{Answer, Reply, Request};
use serde_json::json;

const NAME: &str = "linearizable";

pub(super) fn check(run: &Judging<'_>) -> CheckOutcome {
    let meta = match StandbyMeta::of(run.record) {
        Ok(m) => m,
        Err(e) => return outcome(NAME, Valid::Unknown, e, json!(null)),
    };
    let (ops, unreadable) = bank_ops(run.ops);
    let mut history: Vec<Operation<Request, Answer>> = Vec::new();
    let mut left_out = 0u64;
    for op in &ops {
        let client = history.len() as u64;
        let call = op.src.invoke_us;
        match (&op.src.outcome, &op.reply) {
            (ApiOutcome::Ok, Some(Reply::Done { answer, .. })) => {
                let ret = op.src.complete_us.unwrap_or(call).max(call);
                history.push(Operation::ok(
                    client,
                    op.request.clone(),
                    call,
                    ret,
                    answer.clone(),
                ));
            }
            (ApiOutcome::Failed, _) => left_out += 1,
            _ if op.request.is_write() => {
                history.push(Operation::unknown(client, op.request.clone(), call, None));
            }
            _ => left_out += 1,
        }
    }
    let truncated: u64 = run.record.histories.values().map(|h| h.truncated).sum();
    let model = BankModel {
        accounts: meta.accounts,
    };
    let result = check_parallel(
        &model,
        &history,
        &CheckOptions {
            memory_limit: Some(run.opts.lin_memory_limit),
            ..CheckOptions::with_time_limit(run.opts.lin_time_limit)
        },
        run.opts.threads.max(1),
    );
    let base = json!({
        "operations": history.len(),
        "left_out": left_out,
        "unreadable": unreadable,
        "truncated": truncated,
    });
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            return outcome(
                NAME,
                Valid::Unknown,
                format!("the history could not be checked: {e}"),
                base,
            )
        }
    };
    let caveat = (truncated > 0 || unreadable > 0)
        .then(|| format!("{truncated} operations not kept and {unreadable} unreadable"));
    match (result.verdict, result.counterexample) {
        (Verdict::Invalid, Some(cx)) => {
            let summary = format!(
                "{}: no order of its {} operations explains every answer (first invalid account of {})",
                cx.partition, cx.partition_ops, result.partitions_total
            );
            let mut evidence = base;
            evidence["counterexample"] = serde_json::to_value(&cx).unwrap_or_default();
            match caveat {
                None => outcome(NAME, Valid::False, summary, evidence),
                Some(c) => outcome(
                    NAME,
                    Valid::Unknown,
                    format!("{summary}; but {c}"),
                    evidence,
                ),
            }
        }
        (Verdict::Valid, _) => {
            let summary = format!(
                "{} operations on {} accounts are linearizable",
                history.len(),
                result.partitions_total
            );
            match caveat {
                None => outcome(NAME, Valid::True, summary, base),
                Some(c) => outcome(NAME, Valid::Unknown, format!("{summary}, but {c}"), base),
            }
        }
        _ => outcome(
            NAME,
            Valid::Unknown,
            format!(
                "search stopped with {} of {} accounts checked and none invalid",
                result.partitions_checked, result.partitions_total
            ),
            base,
        ),
    }
}
