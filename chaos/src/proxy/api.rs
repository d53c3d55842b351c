//! HTTP control API (axum) over [`ProxyController`].
//!
//! Every route but `GET /metrics` requires `Authorization: Bearer <token>`:
//! the proxy can cut a whole cluster, so only the controller may steer it,
//! while Prometheus must scrape without secrets. Bodies are parsed by hand
//! (not with axum's `Json` extractor) so a bad body always gets a 400 with a
//! message naming the field, and nothing is changed before the whole request
//! validated.
//!
//! Routes:
//! - `GET /links`: links, live faults, partition, counters ([`ProxyStats`])
//! - `PUT /links/{from}/{to}/faults`: body [`FaultSpec`] plus optional `lease_ms`
//!   and `name` (faults under different names compose; a name replaces its own)
//! - `DELETE /links/{from}/{to}/faults[?name=N]`: that name's faults, or all
//! - `POST /partition`: body [`PartitionShape`] plus optional `lease_ms` and `name`
//! - `DELETE /partition[?name=N]`: that name's partition, or all
//! - `DELETE /faults`: heal everything
//! - `POST /lease/renew`: optional body `{"lease_ms": n}`
//! - `GET /metrics`: Prometheus text, no token

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::control::{ProxyController, ProxyStats};
use super::error::ProxyError;
use super::faults::FaultSpec;
use super::partition::PartitionShape;

#[derive(Clone)]
struct ApiState {
    ctl: ProxyController,
    token: Arc<str>,
}

/// An error answer: status plus `{"error": message}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<ProxyError> for ApiError {
    fn from(e: ProxyError) -> Self {
        let status = match &e {
            ProxyError::UnknownLink { .. } => StatusCode::NOT_FOUND,
            ProxyError::InvalidFaults(_)
            | ProxyError::InvalidPartition(_)
            | ProxyError::InvalidLease(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Compare without an early exit so response time does not leak the token prefix.
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    match bearer(headers) {
        Some(t) if same_secret(t.as_bytes(), state.token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "wrong bearer token".into(),
        }),
        None => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "missing header Authorization: Bearer <token>".into(),
        }),
    }
}

/// Parse a JSON object body and take out its optional `lease_ms`.
fn split_lease(
    body: &[u8],
    empty_ok: bool,
) -> Result<(Map<String, Value>, Option<Duration>), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if empty_ok {
            Ok((Map::new(), None))
        } else {
            Err(ApiError::bad_request(
                "request body is empty: send a JSON object",
            ))
        };
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    };
    let lease = match map.remove("lease_ms") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(ms) if ms > 0 => Some(Duration::from_millis(ms)),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "lease_ms must be a positive integer number of milliseconds, got {v}"
                )))
            }
        },
    };
    Ok((map, lease))
}

/// Takes the optional `name` out of a body.
fn take_name(map: &mut Map<String, Value>) -> Result<Option<String>, ApiError> {
    match map.remove("name") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(n)) if n == "baseline" => Err(ApiError::bad_request(
            "name \"baseline\" is reserved for the faults of the proxy's file",
        )),
        Some(Value::String(n)) if !n.is_empty() && n.len() <= 128 => Ok(Some(n)),
        Some(v) => Err(ApiError::bad_request(format!(
            "name must be a string of 1 to 128 characters, got {v}"
        ))),
    }
}

fn from_map<T: DeserializeOwned>(map: Map<String, Value>, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
}

async fn get_links(
    State(s): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<ProxyStats>, ApiError> {
    authorize(&s, &headers)?;
    Ok(Json(s.ctl.stats()))
}

async fn put_faults(
    State(s): State<ApiState>,
    Path((from, to)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let (mut map, lease) = split_lease(&body, false)?;
    let name = take_name(&mut map)?;
    let spec: FaultSpec = from_map(map, "faults")?;
    match name {
        Some(n) => s.ctl.set_named_faults(&n, &from, &to, spec, lease)?,
        None => s.ctl.set_faults(&from, &to, spec, lease)?,
    }
    let link = s
        .ctl
        .stats()
        .links
        .into_iter()
        .find(|l| l.from == from && l.to == to);
    Ok(Json(link).into_response())
}

async fn delete_faults(
    State(s): State<ApiState>,
    Path((from, to)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&s, &headers)?;
    let removed = match q.get("name") {
        Some(n) => s.ctl.clear_named_faults(n, &from, &to)?,
        None => s.ctl.clear_faults(&from, &to)?,
    };
    Ok(Json(json!({ "removed": removed })))
}

async fn post_partition(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&s, &headers)?;
    let (mut map, lease) = split_lease(&body, false)?;
    let name = take_name(&mut map)?;
    let shape: PartitionShape = from_map(map, "partition")?;
    let blocked = match name {
        Some(n) => s.ctl.named_partition(&n, shape, lease)?,
        None => s.ctl.partition(shape, lease)?,
    };
    let lease_ms = lease.unwrap_or(s.ctl.core.default_lease).as_millis() as u64;
    Ok(Json(json!({ "blocked": blocked, "lease_ms": lease_ms })))
}

async fn delete_partition(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&s, &headers)?;
    let healed = match q.get("name") {
        Some(n) => s.ctl.heal_named_partition(n),
        None => s.ctl.heal_partition(),
    };
    Ok(Json(json!({ "healed": healed })))
}

async fn delete_all(
    State(s): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&s, &headers)?;
    s.ctl.heal();
    Ok(Json(json!({ "healed": true })))
}

async fn renew(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&s, &headers)?;
    let (map, lease) = split_lease(&body, true)?;
    if let Some(k) = map.keys().next() {
        return Err(ApiError::bad_request(format!(
            "unknown field {k:?}: the body of /lease/renew takes only lease_ms"
        )));
    }
    let n = s.ctl.renew(lease)?;
    Ok(Json(json!({ "renewed": n })))
}

async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.ctl.metrics_text(),
    )
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no such endpoint: {method} {}", uri.path()),
    }
}

fn router(ctl: ProxyController, token: &str) -> Router {
    Router::new()
        .route("/links", get(get_links))
        .route(
            "/links/{from}/{to}/faults",
            put(put_faults).delete(delete_faults),
        )
        .route("/partition", post(post_partition).delete(delete_partition))
        .route("/faults", delete(delete_all))
        .route("/lease/renew", post(renew))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(ApiState {
            ctl,
            token: Arc::from(token),
        })
}

/// Serve the API on `listener` until `shutdown` fires or its sender is dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    ctl: ProxyController,
    token: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = router(ctl, &token);
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::warn!("proxy control API stopped: {e}");
    }
}
