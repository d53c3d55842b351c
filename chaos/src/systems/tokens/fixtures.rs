//! Builders of hand-made records for the judge's unit tests: a three-server, two-client
//! cluster with two tokens, histories written as pays and reads, scrapes and state dumps.

use crate::record::{HistoryFile, RunMeta, RunRecord};
use faultline_node::api::{HistoryOp, Outcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(crate) use crate::judge::fixtures::{down_at, sample, scrape_at, window, T0};

/// The generic unit run as a token run: two tokens, owned by c1 and c2.
pub(crate) fn meta() -> RunMeta {
    RunMeta {
        system: "tokens".into(),
        system_meta: json!({"tokens": 2, "initial_owners": ["c1", "c2"]}),
        ..crate::judge::fixtures::meta()
    }
}

pub(crate) fn record(ops: Vec<HistoryOp>) -> RunRecord {
    let mut histories: BTreeMap<String, HistoryFile> = BTreeMap::new();
    for op in ops {
        histories.entry(op.client.clone()).or_default().ops.push(op);
    }
    RunRecord {
        meta: meta(),
        windows: Vec::new(),
        histories,
        states: BTreeMap::new(),
        scrapes: Vec::new(),
    }
}

fn op(client: &str, kind: &str, request: Value, at_ms: u64, took_ms: Option<u64>) -> HistoryOp {
    HistoryOp {
        id: at_ms,
        client: client.into(),
        kind: kind.into(),
        request,
        invoke_us: T0 + at_ms * 1000,
        complete_us: took_ms.map(|d| T0 + (at_ms + d) * 1000),
        outcome: Outcome::Pending,
        reply: None,
        note: None,
    }
}

/// An acknowledged pay of `token` from `client` to `to` that made version `version`.
pub(crate) fn paid(
    client: &str,
    token: u64,
    to: &str,
    version: u64,
    at_ms: u64,
    took_ms: u64,
) -> HistoryOp {
    HistoryOp {
        outcome: Outcome::Ok,
        reply: Some(json!({"result": "paid", "token": token,
            "tag": {"version": version, "writer": client, "nonce": at_ms}})),
        ..op(
            client,
            "pay",
            json!({"op": "pay", "token": token, "to": to}),
            at_ms,
            Some(took_ms),
        )
    }
}

/// A pay whose outcome is unknown (the client gave up after `took_ms`).
pub(crate) fn pay_unknown(
    client: &str,
    token: u64,
    to: &str,
    at_ms: u64,
    took_ms: u64,
) -> HistoryOp {
    HistoryOp {
        outcome: Outcome::Unknown,
        reply: Some(json!({"result": "unknown", "reason": "deadline"})),
        ..op(
            client,
            "pay",
            json!({"op": "pay", "token": token, "to": to}),
            at_ms,
            Some(took_ms),
        )
    }
}

/// A pay that failed with `error` (e.g. "not_owned", "no_quorum").
pub(crate) fn pay_failed(
    client: &str,
    token: u64,
    to: &str,
    error: &str,
    at_ms: u64,
    took_ms: u64,
) -> HistoryOp {
    HistoryOp {
        outcome: Outcome::Failed,
        reply: Some(json!({"result": "failed", "error": {"error": error, "detail": token}})),
        ..op(
            client,
            "pay",
            json!({"op": "pay", "token": token, "to": to}),
            at_ms,
            Some(took_ms),
        )
    }
}

/// A gettokens of `owner` (issued by `owner`) that saw these (token, version) pairs.
pub(crate) fn read(owner: &str, tokens: &[(u64, u64)], at_ms: u64, took_ms: u64) -> HistoryOp {
    HistoryOp {
        outcome: Outcome::Ok,
        reply: Some(json!({"result": "tokens", "owner": owner, "tokens": tokens})),
        ..op(
            owner,
            "gettokens",
            json!({"op": "gettokens", "owner": owner}),
            at_ms,
            Some(took_ms),
        )
    }
}

/// A server's /state with the given (version, writer, nonce, owner) per token.
pub(crate) fn server_state(epoch: u64, tokens: &[(u64, &str, u64, &str)]) -> Value {
    json!({
        "system": "tokens", "id": "s?", "role": "server", "ready": true, "epoch": epoch,
        "servers": ["s1", "s2", "s3"], "serving": true, "frozen": false,
        "pending_ops": 0, "transforming": false,
        "tokens": tokens.iter().enumerate().map(|(i, (v, w, n, o))|
            json!({"token": i, "version": v, "writer": w, "nonce": n, "owner": o})).collect::<Vec<_>>(),
    })
}
