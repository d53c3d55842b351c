//! `no-double-pay`: every (token, version) is made by at most one acknowledged pay.
//!
//! A pay moves a token from version v to v + 1, so two pays answered `paid` with the same new
//! version are a double spend whatever else the history says. The linearizability search
//! finds the same thing, but only as "cannot be placed" somewhere later in the token's
//! history; this check names both pays directly, in one pass, with no search bound.

use super::linearizable::{paid_version, request_of};
use crate::judge::{outcome, rel_ms_json};
use crate::record::RunRecord;
use crate::results::{CheckOutcome, Valid};
use faultline_node::api::{HistoryOp, Outcome};
use faultline_node::protocol::tokens::Request;
use serde_json::json;
use std::collections::BTreeMap;

const NAME: &str = "no-double-pay";

pub(crate) fn check(record: &RunRecord, ops: &[&HistoryOp]) -> CheckOutcome {
    let start = record.meta.start_us;
    // (token, version) -> the acknowledged pays that made it.
    let mut made: BTreeMap<(u64, u64), Vec<&HistoryOp>> = BTreeMap::new();
    let mut acknowledged = 0u64;
    for op in ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        let Some(Request::Pay { token, .. }) = request_of(op) else {
            continue;
        };
        let token = u64::from(token);
        let Some(version) = paid_version(op, token) else {
            continue;
        };
        acknowledged += 1;
        made.entry((token, version)).or_default().push(op);
    }
    let describe = |o: &HistoryOp| {
        json!({
            "client": o.client,
            "request": o.request,
            "reply": o.reply,
            "invoke_ms": rel_ms_json(o.invoke_us, start),
            "complete_ms": o.complete_us.map(|t| rel_ms_json(t, start)),
        })
    };
    // The earliest double pay is the one whose second acknowledgement came first.
    let mut doubles: Vec<((u64, u64), Vec<&HistoryOp>)> = made
        .into_iter()
        .filter(|(_, pays)| pays.len() > 1)
        .map(|(k, mut pays)| {
            pays.sort_by_key(|o| o.complete_us.unwrap_or(u64::MAX));
            (k, pays)
        })
        .collect();
    doubles.sort_by_key(|(_, pays)| pays[1].complete_us.unwrap_or(u64::MAX));
    let Some(((token, version), pays)) = doubles.first() else {
        return outcome(
            NAME,
            Valid::True,
            format!("{acknowledged} acknowledged pays made {acknowledged} distinct token versions"),
            json!({ "acknowledged": acknowledged }),
        );
    };
    let second = pays[1];
    outcome(
        NAME,
        Valid::False,
        format!(
            "token {token} version {version} was paid {} times, first by {} and again by {} at {} ms; {} (token, version) pairs were paid more than once",
            pays.len(),
            pays[0].client,
            second.client,
            second
                .complete_us
                .map_or("?".into(), |t| rel_ms_json(t, start).to_string()),
            doubles.len()
        ),
        json!({
            "acknowledged": acknowledged,
            "double_paid_versions": doubles.len(),
            "first": {
                "token": token,
                "version": version,
                "pays": pays.iter().map(|o| describe(o)).collect::<Vec<_>>(),
            },
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{paid, record};
    use super::*;

    fn run(ops: Vec<HistoryOp>) -> CheckOutcome {
        let rec = record(ops);
        let all: Vec<&HistoryOp> = rec.histories.values().flat_map(|h| h.ops.iter()).collect();
        check(&rec, &all)
    }

    #[test]
    fn distinct_versions_are_valid() {
        let r = run(vec![
            paid("c1", 0, "c2", 2, 10, 5),
            paid("c2", 0, "c1", 3, 20, 5),
        ]);
        assert_eq!(r.valid, Valid::True, "{}", r.summary);
    }

    #[test]
    fn one_version_paid_twice_is_named() {
        // Issue 6's case: token 30 v2 paid by c1 at 0.467 s and again at 0.490 s.
        let r = run(vec![
            paid("c1", 0, "c2", 2, 460, 7),
            paid("c1", 0, "c1", 2, 480, 10),
            paid("c2", 1, "c1", 2, 10, 5),
        ]);
        assert_eq!(r.valid, Valid::False);
        assert!(
            r.summary.contains("token 0 version 2 was paid 2 times"),
            "{}",
            r.summary
        );
        assert!(r.summary.contains("at 490"), "{}", r.summary);
        assert_eq!(r.evidence["double_paid_versions"], 1);
    }
}
