//! `PATCH /config` and `PUT /config`: writes of the dynamic configuration (the DCS `config`
//! key). Patroni's codes: PATCH 200 / 409 (lost compare-and-set) / 503 (no config key); PUT 200
//! / 502. Unlike Patroni, which adjusts impossible timings when it applies them, pgha refuses
//! to store them: 400 with the reason.

use axum::http::StatusCode;
use axum::response::Response;
use pgha_types::check_timings;
use serde_json::{Map, Value};

use super::{admin, dcs_unavailable, not_supported};
use crate::wire::{error_page, json_response, text_response};
use crate::ApiState;

/// Defaults of the timing keys when the configuration leaves them out.
const TIMING_DEFAULTS: [(&str, u64); 3] = [("ttl", 30), ("loop_wait", 10), ("retry_timeout", 10)];

pub(super) async fn patch(state: &ApiState, request: &Map<String, Value>) -> Response {
    let Some(admin) = admin(state) else {
        return not_supported();
    };
    let cluster = match admin.load_cluster().await {
        Ok(c) => c,
        Err(e) => return dcs_unavailable("patch config", &e),
    };
    let Some(config) = cluster.config.as_ref() else {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, None);
    };
    let mut data = config.0.clone();
    if merge_patch(&mut data, request) {
        if let Err(msg) = check_config(&data) {
            return text_response(StatusCode::BAD_REQUEST, msg);
        }
        if let Some(msg) = check_parameters(admin, &data).await {
            return text_response(StatusCode::BAD_REQUEST, msg);
        }
        let value = compact(&data);
        match admin
            .write_config(value, Some(cluster.config_revision))
            .await
        {
            Ok(true) => tracing::info!("dynamic configuration changed through the REST API"),
            Ok(false) => return error_page(StatusCode::CONFLICT, None),
            Err(e) => {
                tracing::warn!("failed to write the config key: {e}");
                return error_page(StatusCode::CONFLICT, None);
            }
        }
    }
    json_response(StatusCode::OK, &Value::Object(data))
}

pub(super) async fn put(state: &ApiState, request: Map<String, Value>) -> Response {
    let Some(admin) = admin(state) else {
        return not_supported();
    };
    if let Err(msg) = check_config(&request) {
        return text_response(StatusCode::BAD_REQUEST, msg);
    }
    if let Some(msg) = check_parameters(admin, &request).await {
        return text_response(StatusCode::BAD_REQUEST, msg);
    }
    // Unchanged: nothing to write. A failed read only skips this shortcut.
    let unchanged = match admin.load_cluster().await {
        Ok(c) => c.config.as_ref().is_some_and(|cfg| cfg.0 == request),
        Err(e) => {
            tracing::debug!("put config: could not read the current config: {e}");
            false
        }
    };
    if !unchanged {
        match admin.write_config(compact(&request), None).await {
            Ok(true) => tracing::info!("dynamic configuration replaced through the REST API"),
            Ok(false) => return error_page(StatusCode::BAD_GATEWAY, None),
            Err(e) => {
                tracing::warn!("failed to write the config key: {e}");
                return error_page(StatusCode::BAD_GATEWAY, None);
            }
        }
    }
    json_response(StatusCode::OK, &Value::Object(request))
}

/// `POST /config/check` (pgha's own; Patroni has no such endpoint): the checks `PATCH /config`
/// makes, on a whole configuration or a fragment of one, without storing anything. 200 with the
/// request echoed when it would be accepted; 400 with one problem per line otherwise.
/// `pghactl edit-config`, which writes the DCS directly as patronictl does, asks the leader
/// this first.
pub(super) async fn check(state: &ApiState, request: &Map<String, Value>) -> Response {
    let Some(admin) = admin(state) else {
        return not_supported();
    };
    let timing_given = TIMING_DEFAULTS
        .iter()
        .any(|(k, _)| request.contains_key(*k));
    if timing_given {
        if let Err(msg) = check_config(request) {
            return text_response(StatusCode::BAD_REQUEST, msg);
        }
    }
    if let Some(msg) = check_parameters(admin, request).await {
        return text_response(StatusCode::BAD_REQUEST, msg);
    }
    json_response(StatusCode::OK, &Value::Object(request.clone()))
}

/// Values PostgreSQL would reject are refused before they are stored on every node.
async fn check_parameters(admin: &dyn crate::Admin, config: &Map<String, Value>) -> Option<String> {
    let params = config
        .get("postgresql")
        .and_then(|p| p.get("parameters"))
        .and_then(Value::as_object)?;
    let problems = admin.check_parameters(params.clone()).await;
    (!problems.is_empty()).then(|| problems.join("\n"))
}

/// The `config` key's value as Patroni stores it: compact JSON.
fn compact(data: &Map<String, Value>) -> String {
    serde_json::to_string(data).unwrap_or_else(|_| "{}".to_string())
}

/// Applies `patch` to `config` the way Patroni's `patch_config` does (a JSON merge patch):
/// objects merge recursively, `null` deletes, anything else replaces. Returns whether
/// anything changed; a scalar whose Python `str()` is unchanged (`10` vs `"10"`) is kept.
pub(super) fn merge_patch(config: &mut Map<String, Value>, patch: &Map<String, Value>) -> bool {
    let mut changed = false;
    for (name, value) in patch {
        if value.is_null() {
            if config.shift_remove(name).is_some_and(|old| !old.is_null()) {
                changed = true;
            }
            continue;
        }
        match config.get_mut(name) {
            Some(Value::Object(current)) if value.is_object() => {
                if let Value::Object(sub) = value {
                    changed |= merge_patch(current, sub);
                }
            }
            Some(current) => {
                if !same_value(current, value) {
                    *current = value.clone();
                    changed = true;
                }
            }
            None => {
                config.insert(name.clone(), value.clone());
                changed = true;
            }
        }
    }
    changed
}

/// Python's `str(a) != str(b)` test for scalars; structural equality otherwise.
fn same_value(a: &Value, b: &Value) -> bool {
    match (python_str(a), python_str(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn python_str(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("None".into()),
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// The timing rules of a configuration about to be stored.
fn check_config(data: &Map<String, Value>) -> Result<(), String> {
    let mut t = [0u64; 3];
    for (slot, (key, default)) in t.iter_mut().zip(TIMING_DEFAULTS) {
        *slot = match data.get(key) {
            None | Some(Value::Null) => default,
            Some(v) => {
                seconds(v).ok_or_else(|| format!("{key}: {v} is not a valid number of seconds"))?
            }
        };
    }
    check_timings(t[0], t[1], t[2])
}

/// A whole number of seconds: a non-negative integer, or a string holding one.
fn seconds(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1e15)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn merge_patch_semantics() {
        let mut c =
            obj(json!({"ttl": 20, "postgresql": {"parameters": {"a": 1, "b": "x"}}, "keep": [1]}));
        let changed = merge_patch(
            &mut c,
            &obj(
                json!({"ttl": 10, "postgresql": {"parameters": {"a": null, "c": 3}}, "new": {"x": null}}),
            ),
        );
        assert!(changed);
        assert_eq!(
            Value::Object(c.clone()),
            json!({"ttl": 10, "postgresql": {"parameters": {"b": "x", "c": 3}}, "keep": [1], "new": {"x": null}})
        );
        // Same values (also by Python `str()`), deleting what is absent: no change.
        assert!(!merge_patch(
            &mut c,
            &obj(json!({"ttl": "10", "absent": null, "keep": [1]}))
        ));
        assert_eq!(c["ttl"], json!(10));
        // An object replaces a scalar and vice versa.
        assert!(merge_patch(
            &mut c,
            &obj(json!({"keep": {"y": 1}, "postgresql": 5}))
        ));
        assert_eq!(c["keep"], json!({"y": 1}));
        assert_eq!(c["postgresql"], json!(5));
        // Key order is kept, new keys go last.
        let keys: Vec<&str> = c.keys().map(String::as_str).collect();
        assert_eq!(keys, ["ttl", "postgresql", "keep", "new"]);
    }

    #[test]
    fn timing_checks_name_the_key() {
        assert!(check_config(&obj(json!({}))).is_ok());
        assert!(check_config(&obj(
            json!({"ttl": "20", "loop_wait": 1.0, "retry_timeout": 3})
        ))
        .is_ok());
        assert!(check_config(&obj(json!({"ttl": 3})))
            .unwrap_err()
            .starts_with("ttl:"));
        assert!(check_config(&obj(json!({"loop_wait": 0})))
            .unwrap_err()
            .starts_with("loop_wait:"));
        assert!(check_config(&obj(json!({"retry_timeout": 1})))
            .unwrap_err()
            .starts_with("retry_timeout:"));
        assert_eq!(
            check_config(&obj(json!({"ttl": "soon"}))).unwrap_err(),
            "ttl: \"soon\" is not a valid number of seconds"
        );
        assert!(check_config(&obj(json!({"loop_wait": -1}))).is_err());
    }
}
