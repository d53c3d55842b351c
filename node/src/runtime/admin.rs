//! The node's HTTP admin API: metrics, state and history for scrapers and
//! checkers (open), and the endpoints that change things, `/faults`, `/ops`
//! and `/load`, behind the cluster secret as a bearer token.

use super::Handle;
use crate::api::{ApiError, LoadSpec, OpReply, PutFaults};
use crate::system::System;
use axum::extract::{Json, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

type Shared<S> = Arc<Handle<S>>;

/// Default lease of rules set through the API.
const DEFAULT_LEASE_MS: u64 = 30_000;

pub async fn serve<S: System>(listener: tokio::net::TcpListener, handle: Shared<S>) {
    let app = Router::new()
        .route("/metrics", get(metrics::<S>))
        .route("/state", get(state::<S>))
        .route("/history", get(history::<S>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/faults",
            get(get_faults::<S>)
                .put(put_faults::<S>)
                .delete(delete_faults::<S>),
        )
        .route("/ops", post(post_op::<S>))
        .route("/load", post(post_load::<S>))
        .with_state(handle);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "admin server stopped");
    }
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ApiError { error: msg.into() })).into_response()
}

/// Compares the bearer token without an early exit on the first difference.
fn authorized<S: System>(h: &Handle<S>, headers: &HeaderMap) -> Result<(), Box<Response>> {
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

async fn metrics<S: System>(State(h): State<Shared<S>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        h.metrics.render(),
    )
        .into_response()
}

async fn state<S: System>(State(h): State<Shared<S>>) -> Response {
    match h.state().await {
        Some(s) => Json(s).into_response(),
        None => error(StatusCode::SERVICE_UNAVAILABLE, "node is shutting down"),
    }
}

async fn history<S: System>(State(h): State<Shared<S>>) -> Response {
    Json(h.history.dump()).into_response()
}

async fn get_faults<S: System>(State(h): State<Shared<S>>) -> Response {
    Json(h.faults.status()).into_response()
}

async fn put_faults<S: System>(
    State(h): State<Shared<S>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(r) = authorized(&h, &headers) {
        return *r;
    }
    let req: PutFaults = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad fault rule set: {e}")),
    };
    let ids: HashSet<String> = h.cluster.ids().into_iter().collect();
    for (i, r) in req.rules.iter().enumerate() {
        if let Err(e) = r.validate(&ids, h.cluster.system.message_kinds) {
            return error(StatusCode::BAD_REQUEST, format!("rules[{i}]: {e}"));
        }
    }
    let lease = Duration::from_millis(req.lease_ms.unwrap_or(DEFAULT_LEASE_MS).max(1));
    h.faults.set(req.rules, Some(lease), req.seed);
    Json(h.faults.status()).into_response()
}

async fn delete_faults<S: System>(State(h): State<Shared<S>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&h, &headers) {
        return *r;
    }
    h.faults.clear();
    Json(h.faults.status()).into_response()
}

/// Runs one client operation and records it in the history.
async fn post_op<S: System>(
    State(h): State<Shared<S>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(r) = authorized(&h, &headers) {
        return *r;
    }
    let request: S::Request = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("not an operation of system {} ({e})", S::NAME),
            )
        }
    };
    let kind = S::request_kind(&request);
    let id = h.history.invoke(&h.id, kind, to_json(&request));
    let t0 = std::time::Instant::now();
    let Some(reply) = h.call(request).await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "node is shutting down");
    };
    let outcome = S::outcome(&reply);
    h.history.complete(id, outcome, to_json(&reply));
    Json(OpReply {
        node: h.id.clone(),
        outcome,
        reply,
        latency_ms: t0.elapsed().as_secs_f64() * 1000.0,
    })
    .into_response()
}

/// A request or reply as the history keeps it. The system's types are plain
/// serde data, so this cannot fail; if it ever did, the history says so
/// instead of losing the entry.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_else(|e| {
        debug_assert!(false, "a system type failed to serialise: {e}");
        serde_json::Value::String(format!("unserialisable: {e}"))
    })
}

async fn post_load<S: System>(
    State(h): State<Shared<S>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(r) = authorized(&h, &headers) {
        return *r;
    }
    let spec: LoadSpec = match serde_json::from_str(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad load spec: {e}")),
    };
    if let Err(e) = spec.validate() {
        return error(StatusCode::BAD_REQUEST, e);
    }
    Json(S::load(h, spec).await).into_response()
}
