//! Unsafe endpoints (POST / PUT / PATCH / DELETE): switchover, failover, restart, reload,
//! reinitialize, config writes. Routing, authentication and body parsing live here; the
//! operations themselves are not wired to the HA loop yet and answer 501 once the request has
//! passed the same checks Patroni applies (auth, then `Content-Length` → 411, then JSON → 400).
//!
//! To implement one: add its arm to [`perform`], which receives the parsed JSON body.

use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};

use crate::wire::{error_page, text_response};
use crate::{auth, ApiState};

/// Largest request body read; Patroni's bodies are a few hundred bytes.
const MAX_BODY: usize = 1 << 20;

/// An unsafe endpoint, named after Patroni's `do_<METHOD>_<path>` handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Switchover,
    Failover,
    DeleteSwitchover,
    Restart,
    DeleteRestart,
    Reload,
    Reinitialize,
    PatchConfig,
    PutConfig,
    Failsafe,
    Sigterm,
    Citus,
    Mpp,
}

/// Whether an operation reads a JSON object from the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    None,
    /// `Content-Length` required (411 without), non-empty JSON object (400 otherwise).
    Required,
    /// Missing or empty body reads as `{}`; otherwise a JSON object (400 otherwise).
    Optional,
}

impl Operation {
    /// The operation for a method and the first path segment, as Patroni dispatches
    /// `do_<METHOD>_<segment>`.
    pub fn from_request(method: &Method, segment: &str) -> Option<Operation> {
        use Operation::*;
        let op = match (method.as_str(), segment) {
            ("POST", "switchover") => Switchover,
            ("POST", "failover") => Failover,
            ("POST", "restart") => Restart,
            ("POST", "reload") => Reload,
            ("POST", "reinitialize") => Reinitialize,
            ("POST", "failsafe") => Failsafe,
            ("POST", "sigterm") => Sigterm,
            ("POST", "citus") => Citus,
            ("POST", "mpp") => Mpp,
            ("DELETE", "switchover") => DeleteSwitchover,
            ("DELETE", "restart") => DeleteRestart,
            ("PATCH", "config") => PatchConfig,
            ("PUT", "config") => PutConfig,
            _ => return None,
        };
        Some(op)
    }

    fn body_kind(self) -> BodyKind {
        use Operation::*;
        match self {
            Switchover | Failover | PatchConfig | PutConfig | Failsafe | Citus | Mpp => {
                BodyKind::Required
            }
            Restart | Reinitialize => BodyKind::Optional,
            DeleteSwitchover | DeleteRestart | Reload | Sigterm => BodyKind::None,
        }
    }
}

/// Handles an unsafe request: 501 for an unknown method/path (before auth, as Patroni), then the
/// auth check, the body checks, and the operation.
pub(crate) async fn handle(
    state: &ApiState,
    method: &Method,
    segment: &str,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let Some(op) = Operation::from_request(method, segment) else {
        let msg = format!("Unsupported method ('{}')", method.as_str());
        return error_page(StatusCode::NOT_IMPLEMENTED, Some(&msg));
    };
    if let Some(denied) = auth::check(state.auth.as_ref(), headers) {
        return denied;
    }
    let request = match read_json(op.body_kind(), headers, body).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    perform(state, op, request).await
}

async fn read_json(
    kind: BodyKind,
    headers: &HeaderMap,
    body: Body,
) -> Result<Map<String, Value>, Response> {
    if kind == BodyKind::None {
        return Ok(Map::new());
    }
    if !headers.contains_key(header::CONTENT_LENGTH) {
        return match kind {
            BodyKind::Required => Err(error_page(StatusCode::LENGTH_REQUIRED, None)),
            _ => Ok(Map::new()),
        };
    }
    let bad_request = || error_page(StatusCode::BAD_REQUEST, None);
    let bytes = to_bytes(body, MAX_BODY).await.map_err(|_| bad_request())?;
    if bytes.is_empty() && kind == BodyKind::Optional {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) if !m.is_empty() || kind == BodyKind::Optional => Ok(m),
        Ok(_) => Err(bad_request()),
        Err(e) => {
            tracing::debug!("bad request body: {e}");
            Err(bad_request())
        }
    }
}

/// Carries out an authenticated, well-formed request. Not wired to the HA loop yet.
async fn perform(_state: &ApiState, op: Operation, _request: Map<String, Value>) -> Response {
    tracing::info!(operation = ?op, "REST operation requested, not implemented yet");
    text_response(StatusCode::NOT_IMPLEMENTED, "not implemented yet")
}
