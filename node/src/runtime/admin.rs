//! The node's HTTP admin API: metrics, state and history for scrapers and
//! checkers (open), and the endpoints that change things, `/faults`, `/ops`
//! and `/load`, behind the cluster secret as a bearer token.

use super::{loadgen, Exports, Handle};
use crate::faults::FaultRule;
use crate::protocol::tokens::{self, TokensNode};
use axum::extract::{Json, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

type Shared = Arc<Handle<TokensNode>>;

/// Default lease of rules set through the API.
const DEFAULT_LEASE_MS: u64 = 30_000;

pub async fn serve(listener: tokio::net::TcpListener, handle: Shared) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/state", get(state))
        .route("/history", get(history))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/faults",
            get(get_faults).put(put_faults).delete(delete_faults),
        )
        .route("/ops", post(post_op))
        .route("/load", post(post_load))
        .with_state(handle);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "admin server stopped");
    }
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

/// Compares the bearer token without an early exit on the first difference.
fn authorized(h: &Handle<TokensNode>, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let want = h.secret.as_bytes();
    let ok = given.len() == want.len()
        && given
            .bytes()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if ok {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (the cluster secret)",
        )))
    }
}

async fn metrics(State(h): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        h.metrics.render(),
    )
        .into_response()
}

async fn state(State(h): State<Shared>) -> Response {
    match h.state().await {
        Some(s) => Json(s).into_response(),
        None => error(StatusCode::SERVICE_UNAVAILABLE, "node is shutting down"),
    }
}

async fn history(State(h): State<Shared>) -> Response {
    Json(h.history.dump()).into_response()
}

async fn get_faults(State(h): State<Shared>) -> Response {
    Json(h.faults.status()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutFaults {
    rules: Vec<FaultRule>,
    #[serde(default)]
    lease_ms: Option<u64>,
    #[serde(default)]
    seed: Option<u64>,
}

async fn put_faults(State(h): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Err(r) = authorized(&h, &headers) {
        return *r;
    }
    let req: PutFaults = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad fault rule set: {e}")),
    };
    let ids: HashSet<String> = h.cluster.ids().into_iter().collect();
    for (i, r) in req.rules.iter().enumerate() {
        if let Err(e) = r.validate(&ids, tokens::MESSAGE_KINDS) {
            return error(StatusCode::BAD_REQUEST, format!("rules[{i}]: {e}"));
        }
    }
    let lease = Duration::from_millis(req.lease_ms.unwrap_or(DEFAULT_LEASE_MS).max(1));
    h.faults.set(req.rules, Some(lease), req.seed);
    Json(h.faults.status()).into_response()
}

async fn delete_faults(State(h): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&h, &headers) {
        return *r;
    }
    h.faults.clear();
    Json(h.faults.status()).into_response()
}

/// Runs one client operation and records it in the history.
async fn post_op(State(h): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Err(r) = authorized(&h, &headers) {
        return *r;
    }
    let value: serde_json::Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")),
    };
    let request: tokens::Request = match serde_json::from_value(value.clone()) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("not an operation ({e}); expected e.g. {{\"op\":\"pay\",\"token\":3,\"to\":\"c2\"}}, {{\"op\":\"gettokens\",\"owner\":\"c1\"}} or {{\"op\":\"transform\"}}"),
            )
        }
    };
    let kind = TokensNode::request_kind(&request);
    let id = h.history.invoke(&h.id, kind, value);
    let t0 = std::time::Instant::now();
    let Some(reply) = h.call(request).await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "node is shutting down");
    };
    let outcome = TokensNode::reply_outcome(&reply);
    let reply_json = serde_json::to_value(&reply).unwrap_or_default();
    h.history.complete(id, outcome, reply_json.clone());
    Json(json!({
        "node": h.id,
        "outcome": outcome,
        "reply": reply_json,
        "latency_ms": t0.elapsed().as_secs_f64() * 1000.0,
    }))
    .into_response()
}

async fn post_load(State(h): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Err(r) = authorized(&h, &headers) {
        return *r;
    }
    let spec: loadgen::LoadSpec = match serde_json::from_str(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad load spec: {e}")),
    };
    if let Err(e) = spec.validate() {
        return error(StatusCode::BAD_REQUEST, e);
    }
    Json(loadgen::run(h, spec).await).into_response()
}
