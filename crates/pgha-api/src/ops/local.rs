//! Operations on this node that only the HA loop carries out: `POST /restart` (now or
//! scheduled), `DELETE /restart`, `POST /reload`, `POST /reinitialize`. The API checks the
//! request as Patroni's handlers do and passes the loop's answer through.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};

use super::schedule::{iso, parse_schedule};
use super::{admin, answer, not_supported, parse_bool};
use crate::wire::text_response;
use crate::{ApiState, LocalRequest};

const ROLES: [&str; 3] = ["primary", "standby_leader", "replica"];

/// `POST /restart`. Keys are checked in the order they were sent and the first bad one
/// answers; `restart_pending` counts when present, whatever its value (as in Patroni).
pub(super) async fn restart(state: &ApiState, request: &Map<String, Value>) -> Response {
    let Some(admin) = admin(state) else {
        return not_supported();
    };
    if request.contains_key("schedule") {
        // Patroni reads a fresh cluster here; the published view is the fallback.
        let paused = match admin.load_cluster().await {
            Ok(c) => c.is_paused(),
            Err(e) => {
                tracing::debug!("restart: could not read the cluster, using the last view: {e}");
                state.status.borrow().pause
            }
        };
        if paused {
            return text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Can't schedule restart in the paused state",
            );
        }
    }

    let mut schedule = None;
    let mut role = None;
    let mut postgres_version = None;
    let mut timeout = None;
    let bad = |msg: String| text_response(StatusCode::BAD_REQUEST, msg);
    for (key, value) in request {
        match key.as_str() {
            "schedule" => match parse_schedule(value, "restart", chrono::Utc::now()) {
                Ok(at) => schedule = Some(iso(&at)),
                Err((code, msg)) => return text_response(code, msg),
            },
            "role" => match value.as_str().filter(|r| ROLES.contains(r)) {
                Some(r) => role = Some(r.to_string()),
                None => {
                    return bad(
                        "PostgreSQL role should be either primary, standby_leader, or replica"
                            .into(),
                    )
                }
            },
            "postgres_version" => match check_version(value) {
                Ok(v) => postgres_version = Some(v),
                Err(msg) => return bad(msg),
            },
            "timeout" => match parse_seconds(value).filter(|t| *t > 0) {
                Some(t) => timeout = Some(t as u64),
                None => return bad("Timeout should be a positive number of seconds".into()),
            },
            "restart_pending" => {}
            other => return bad(format!("Unknown filter for the scheduled restart: {other}")),
        }
    }
    let pending_only = request.contains_key("restart_pending");
    let request = match schedule {
        Some(schedule) => {
            let mut details = request.clone();
            details.insert("schedule".into(), Value::from(schedule.as_str()));
            if let Some(t) = timeout {
                details.insert("timeout".into(), Value::from(t));
            }
            LocalRequest::ScheduleRestart {
                schedule,
                role,
                pending_only,
                postgres_version,
                timeout,
                details,
            }
        }
        None => LocalRequest::Restart {
            role,
            pending_only,
            postgres_version,
            timeout,
        },
    };
    answer(admin.local(request).await)
}

pub(super) async fn delete_restart(state: &ApiState) -> Response {
    match admin(state) {
        Some(a) => answer(a.local(LocalRequest::CancelScheduledRestart).await),
        None => not_supported(),
    }
}

pub(super) async fn reload(state: &ApiState) -> Response {
    match admin(state) {
        Some(a) => answer(a.local(LocalRequest::Reload).await),
        None => not_supported(),
    }
}

pub(super) async fn reinitialize(state: &ApiState, request: &Map<String, Value>) -> Response {
    let Some(admin) = admin(state) else {
        return not_supported();
    };
    let force = parse_bool(request.get("force"));
    let from_leader = parse_bool(request.get("from_leader"));
    answer(
        admin
            .local(LocalRequest::Reinitialize { force, from_leader })
            .await,
    )
}

/// Patroni's `postgres_version_to_int` checks: `X.Y` (X ≥ 10) or `X.Y.Z`, integers.
fn check_version(value: &Value) -> Result<String, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let parts: Result<Vec<i64>, _> = text.split('.').map(|p| p.trim().parse::<i64>()).collect();
    let Ok(parts) = parts else {
        return Err(format!("Invalid PostgreSQL version: {text}"));
    };
    let ok = match parts.as_slice() {
        [major, _] => *major >= 10,
        [_, _, _] => true,
        _ => false,
    };
    if !ok || !value.is_string() {
        return Err(format!(
            "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: {text}"
        ));
    }
    Ok(text)
}

/// Patroni's `parse_int(value, 's')`: a number of seconds, or a string with an optional unit
/// (`ms`, `s`, `min`, `h`, `d`), rounded half to even.
fn parse_seconds(value: &Value) -> Option<i64> {
    let (number, unit) = match value {
        Value::Number(n) => (n.as_f64()?, ""),
        Value::String(s) => split_unit(s.trim())?,
        _ => return None,
    };
    let factor = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    };
    let secs = (number * factor).round_ties_even();
    (secs.is_finite() && secs.abs() < 1e15).then_some(secs as i64)
}

/// `"30s"` → `(30.0, "s")`.
fn split_unit(s: &str) -> Option<(f64, &str)> {
    let end = s
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || ((*c == '-' || *c == '+') && *i == 0)))
        .map_or(s.len(), |(i, _)| i);
    let number = s[..end].parse::<f64>().ok()?;
    Some((number, &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_as_patroni() {
        assert_eq!(check_version(&json!("15.2")), Ok("15.2".into()));
        assert_eq!(check_version(&json!("9.6.24")), Ok("9.6.24".into()));
        assert_eq!(
            check_version(&json!("9.6")).unwrap_err(),
            "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 9.6"
        );
        assert_eq!(
            check_version(&json!("15")).unwrap_err(),
            "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 15"
        );
        assert_eq!(
            check_version(&json!("a.b.c")).unwrap_err(),
            "Invalid PostgreSQL version: a.b.c"
        );
        assert!(check_version(&json!(15.2)).is_err());
        assert!(check_version(&json!(null)).is_err());
    }

    #[test]
    fn timeouts_as_patroni() {
        assert_eq!(parse_seconds(&json!(30)), Some(30));
        assert_eq!(parse_seconds(&json!("30")), Some(30));
        assert_eq!(parse_seconds(&json!("2min")), Some(120));
        assert_eq!(parse_seconds(&json!("1500ms")), Some(2));
        assert_eq!(parse_seconds(&json!(2.5)), Some(2));
        assert_eq!(parse_seconds(&json!("-5")), Some(-5));
        assert_eq!(parse_seconds(&json!("soon")), None);
        assert_eq!(parse_seconds(&json!("5 parsecs")), None);
        assert_eq!(parse_seconds(&json!(true)), None);
        assert_eq!(parse_seconds(&json!("é")), None);
    }
}
