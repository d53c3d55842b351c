//! Builders of hand-made records for the judge's unit tests: a three-server, two-client
//! cluster with two tokens, histories written as pays and reads, scrapes and state dumps.

use crate::record::{FaultWindow, HistoryFile, NodeInfo, RunMeta, RunRecord, Sample, Scrape};
use faultline_node::api::{HistoryOp, Outcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The run starts at 1000 s after the epoch so relative times read as plain milliseconds.
pub(crate) const T0: u64 = 1_000_000_000;

pub(crate) fn meta() -> RunMeta {
    RunMeta {
        scenario: "unit".into(),
        system: "tokens".into(),
        seed: 7,
        start_us: T0,
        end_us: T0 + 20_000_000,
        nodes: ["s1", "s2", "s3", "c1", "c2"]
            .iter()
            .map(|id| NodeInfo {
                id: id.to_string(),
                role: if id.starts_with('s') {
                    "server"
                } else {
                    "client"
                }
                .into(),
            })
            .collect(),
        system_meta: json!({"tokens": 2, "initial_owners": ["c1", "c2"]}),
        liveness_bound_ms: 2_000,
        bugs: Vec::new(),
        interrupted_us: None,
        controller_died: false,
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

pub(crate) fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
    }
}

pub(crate) fn scrape(t_us: u64, target: &str, samples: Vec<Sample>) -> Scrape {
    Scrape {
        t_us,
        target: target.into(),
        ok: true,
        samples,
    }
}

/// `scrape` at `at_ms` into the run.
pub(crate) fn scrape_at(at_ms: u64, target: &str, samples: Vec<Sample>) -> Scrape {
    scrape(T0 + at_ms * 1000, target, samples)
}

pub(crate) fn down_at(at_ms: u64, target: &str) -> Scrape {
    Scrape {
        ok: false,
        ..scrape_at(at_ms, target, Vec::new())
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

pub(crate) fn window(
    id: usize,
    fault: &str,
    layer: &str,
    targets: &[&str],
    from_ms: u64,
    to_ms: Option<u64>,
    detail: Value,
) -> FaultWindow {
    FaultWindow {
        id,
        fault: fault.into(),
        layer: layer.into(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        start_us: T0 + from_ms * 1000,
        end_us: to_ms.map(|t| T0 + t * 1000),
        in_model: true,
        detail,
    }
}
