//! Unsafe endpoints (POST / PUT / PATCH / DELETE): switchover, failover, restart, reload,
//! reinitialize, config writes. Routing, authentication and body parsing live here, with the
//! same checks Patroni applies (auth, then `Content-Length` → 411, then JSON → 400); the
//! operations are in the submodules and reach the agent through [`crate::Admin`]:
//!
//! - [`switchover`]: `POST /switchover`, `POST /failover`, `DELETE /switchover`;
//! - [`local`]: `POST /restart`, `DELETE /restart`, `POST /reload`, `POST /reinitialize`;
//! - [`config`]: `PATCH /config`, `PUT /config`.

use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};

use crate::wire::{error_page, text_response};
use crate::{auth, Admin, ApiState, LocalAnswer};

mod config;
mod local;
mod schedule;
mod switchover;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests_config;
#[cfg(test)]
mod tests_local;
#[cfg(test)]
mod tests_switchover;

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
    /// pgha's own `POST /config/check`: validate without storing.
    CheckConfig,
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
            ("POST", "config") => CheckConfig,
            _ => return None,
        };
        Some(op)
    }

    fn body_kind(self) -> BodyKind {
        use Operation::*;
        match self {
            Switchover | Failover | PatchConfig | PutConfig | CheckConfig | Citus | Mpp => {
                BodyKind::Required
            }
            Restart | Reinitialize => BodyKind::Optional,
            // Read only while failsafe mode is on (see `handle`).
            Failsafe => BodyKind::Required,
            DeleteSwitchover | DeleteRestart | Reload | Sigterm => BodyKind::None,
        }
    }
}

/// Handles an unsafe request: 501 for an unknown method/path (before any check, as Patroni),
/// then the allowlist and client certificate, the auth check, the body checks, and the
/// operation.
pub(crate) async fn handle(
    state: &ApiState,
    method: &Method,
    segment: &str,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    body: Body,
) -> Response {
    let Some(op) = Operation::from_request(method, segment) else {
        let msg = format!("Unsupported method ('{}')", method.as_str());
        return error_page(StatusCode::NOT_IMPLEMENTED, Some(&msg));
    };
    // Patroni leaves the members' addresses out for `POST /failsafe` only.
    let members_count = op != Operation::Failsafe;
    if let Some(denied) = crate::access::check(state, extensions, members_count).await {
        return denied;
    }
    if let Some(denied) = auth::check(state.auth.as_ref(), headers) {
        return denied;
    }
    // Patroni answers 502 before reading the body while failsafe mode is off.
    if op == Operation::Failsafe && !state.status.borrow().failsafe_mode {
        return error_page(StatusCode::BAD_GATEWAY, None);
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

/// Carries out an authenticated, well-formed request.
async fn perform(state: &ApiState, op: Operation, request: Map<String, Value>) -> Response {
    use Operation::*;
    match op {
        Switchover => switchover::post(state, &request, switchover::Action::Switchover).await,
        Failover => switchover::post(state, &request, switchover::Action::Failover).await,
        DeleteSwitchover => switchover::delete(state).await,
        Restart => local::restart(state, &request).await,
        DeleteRestart => local::delete_restart(state).await,
        Reload => local::reload(state).await,
        Reinitialize => local::reinitialize(state, &request).await,
        PatchConfig => config::patch(state, &request).await,
        PutConfig => config::put(state, request).await,
        CheckConfig => config::check(state, &request).await,
        // Patroni acts on it only on Windows under its test harness, and answers regardless.
        Sigterm => text_response(StatusCode::ACCEPTED, "shutdown scheduled"),
        // Citus/MPP coordinator events: pgha runs no MPP handler, so there is nothing to do.
        Citus | Mpp => text_response(StatusCode::OK, "OK"),
        Failsafe => {
            let status = state.status.borrow().clone();
            crate::failsafe::post(&state.failsafe, &status, &request)
        }
    }
}

/// The agent behind the operations; without one they answer [`not_supported`].
fn admin(state: &ApiState) -> Option<&dyn Admin> {
    state.admin.as_deref()
}

fn not_supported() -> Response {
    text_response(StatusCode::SERVICE_UNAVAILABLE, "not supported")
}

/// A plain-text answer with a numeric status (an impossible one reads as 500).
fn text(code: u16, body: impl Into<String>) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    text_response(code, body)
}

/// The HA loop's answer, passed through.
fn answer(a: LocalAnswer) -> Response {
    text(a.status, a.text)
}

/// A fresh read of the DCS failed: Patroni's handler dies with an exception there; pgha answers
/// 503 with the standard error page and logs the cause.
fn dcs_unavailable(what: &str, e: &str) -> Response {
    tracing::warn!("{what}: failed to read the cluster from DCS: {e}");
    error_page(StatusCode::SERVICE_UNAVAILABLE, None)
}

/// Python truthiness of a JSON value (`None`, `False`, `0`, `""`, `[]`, `{}` are false).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Patroni's `parse_bool`: `true`/`on`/`yes`/`1` (any case, also JSON `true` and `1`) are
/// true; everything else is false here.
fn parse_bool(v: Option<&Value>) -> bool {
    let text = match v {
        Some(Value::Bool(b)) => return *b,
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return false,
    };
    matches!(text.as_str(), "on" | "true" | "yes" | "1")
}
