//! `linearizable`: the clients' histories as the bank model's operations,
//! checked per account (P-compositionality). A write that is unknown or
//! still pending may have happened or not; a lookup without an answer says
//! nothing and is left out; a failed request never ran.

use super::model::BankModel;
use super::{bank_ops, StandbyMeta};
use crate::check::{check_parallel, CheckOptions, Operation};
use crate::judge::{linearizability_outcome, outcome, LinSummary};
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
    let meta_accounts = meta.accounts.len();
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
    linearizability_outcome(
        LinSummary {
            name: NAME,
            objects: "accounts",
            hint: &format!("the first invalid account of {}", meta_accounts),
            operations: history.len(),
            truncated,
            unreadable,
        },
        result,
        base,
    )
}
