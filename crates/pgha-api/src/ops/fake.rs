//! Test support: an in-memory [`Admin`] and helpers to send a request through the router.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::http::{Method, Request, StatusCode};
use futures::future::BoxFuture;
use pgha_types::{Cluster, Failover, KeyValue};
use tower::ServiceExt;

use crate::{router, Admin, ApiState, LocalAnswer, LocalRequest, NodeStatus};

pub(super) const CONFIG: &str = r#"{"ttl":20,"loop_wait":1,"retry_timeout":3,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true,"use_slots":true,"parameters":{"max_connections":100}}}"#;

fn member(state: &str, role: &str, port: u16, tags: &str) -> String {
    format!(
        r#"{{"conn_url":"postgres://127.0.0.1:{port}/postgres","api_url":"http://127.0.0.1:{}/patroni","state":"{state}","role":"{role}","version":"4.1.5","xlog_location":67108864,"timeline":1{tags}}}"#,
        port + 2570
    )
}

/// Builds a cluster from `(key, value)` pairs.
pub(super) fn cluster(keys: &[(&str, String)]) -> Cluster {
    let kvs: Vec<KeyValue> = keys
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.to_string(),
            value: v.clone(),
            lease: 0,
            mod_revision: 7,
        })
        .collect();
    Cluster::from_keys(&kvs)
}

/// Three running members, `leader` holds the lock (none when `None`); `extra` keys are added or
/// replace the defaults.
pub(super) fn three_nodes(leader: Option<&str>, extra: &[(&str, String)]) -> Cluster {
    let mut keys: Vec<(&str, String)> = vec![
        ("config", CONFIG.to_string()),
        ("members/node1", member("running", "replica", 5451, "")),
        ("members/node2", member("running", "replica", 5452, "")),
        ("members/node3", member("running", "primary", 5453, "")),
    ];
    if let Some(l) = leader {
        keys.push(("leader", l.to_string()));
    }
    for (k, v) in extra {
        keys.retain(|(key, _)| key != k);
        keys.push((k, v.clone()));
    }
    cluster(&keys)
}

/// A member key with the given state and extra JSON fields (e.g. `,"tags":{...}`).
pub(super) fn member_key(state: &str, tail: &str) -> String {
    member(state, "replica", 5459, tail)
}

/// What the API did through the seam.
#[derive(Debug, Default)]
pub(super) struct Calls {
    pub loads: usize,
    pub failover_writes: Vec<Option<Failover>>,
    pub config_writes: Vec<(String, Option<i64>)>,
    pub local: Vec<LocalRequest>,
}

pub(super) struct FakeAdmin {
    /// Successive answers of `load_cluster`; the last one repeats.
    script: Mutex<VecDeque<Result<Cluster, String>>>,
    pub calls: Mutex<Calls>,
    pub write_error: bool,
    /// What `write_config` answers when the write gets through.
    pub cas_ok: bool,
    pub local_answer: LocalAnswer,
    pub loop_wait: u64,
}

/// The fake's stand-in for pg_settings: a parameter whose value is the string "bad" is refused.
fn fake_parameter_problems(parameters: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    parameters
        .iter()
        .filter(|(_, v)| v.as_str() == Some("bad"))
        .map(|(k, _)| format!("postgresql.parameters.{k}: invalid value \"bad\""))
        .collect()
}

impl FakeAdmin {
    pub fn new(clusters: Vec<Cluster>) -> FakeAdmin {
        FakeAdmin::scripted(clusters.into_iter().map(Ok).collect())
    }

    pub fn scripted(script: Vec<Result<Cluster, String>>) -> FakeAdmin {
        FakeAdmin {
            script: Mutex::new(script.into()),
            calls: Mutex::default(),
            write_error: false,
            cas_ok: true,
            local_answer: LocalAnswer {
                status: 200,
                text: "ok".into(),
            },
            loop_wait: 1,
        }
    }

    pub fn calls(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap()
    }
}

impl Admin for FakeAdmin {
    fn load_cluster(&self) -> BoxFuture<'_, Result<Cluster, String>> {
        self.calls().loads += 1;
        let mut script = self.script.lock().unwrap();
        let next = if script.len() > 1 {
            script.pop_front()
        } else {
            script.front().cloned()
        };
        Box::pin(async move { next.unwrap_or_else(|| Err("no cluster".into())) })
    }

    fn write_failover(&self, value: Option<Failover>) -> BoxFuture<'_, Result<(), String>> {
        self.calls().failover_writes.push(value);
        let r = if self.write_error {
            Err("etcd down".into())
        } else {
            Ok(())
        };
        Box::pin(async move { r })
    }

    fn write_config(
        &self,
        value: String,
        expected_revision: Option<i64>,
    ) -> BoxFuture<'_, Result<bool, String>> {
        self.calls().config_writes.push((value, expected_revision));
        let r = if self.write_error {
            Err("etcd down".into())
        } else {
            Ok(self.cas_ok)
        };
        Box::pin(async move { r })
    }

    fn local(&self, request: LocalRequest) -> BoxFuture<'_, LocalAnswer> {
        self.calls().local.push(request);
        let a = self.local_answer.clone();
        Box::pin(async move { a })
    }

    fn loop_wait(&self) -> u64 {
        self.loop_wait
    }

    fn check_parameters(
        &self,
        parameters: serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move { fake_parameter_problems(&parameters) })
    }
}

pub(super) struct Answer {
    pub code: StatusCode,
    pub content_type: String,
    pub body: String,
}

/// Sends `method path` with `body` (as JSON with a Content-Length) to a router backed by
/// `admin` (or none) and the published `status`.
pub(super) async fn send_with(
    admin: Option<Arc<FakeAdmin>>,
    status: NodeStatus,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Answer {
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(status));
    let mut state = ApiState::new(rx, None);
    if let Some(a) = admin {
        state = state.with_admin(a);
    }
    let builder = Request::builder().method(method).uri(path);
    let req = match body {
        Some(b) => builder
            .header("content-length", b.len())
            .body(Body::from(b.to_string())),
        None => builder.body(Body::empty()),
    }
    .unwrap();
    let resp = router(state).oneshot(req).await.unwrap();
    let code = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    Answer {
        code,
        content_type,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

pub(super) async fn send(
    admin: &Arc<FakeAdmin>,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Answer {
    send_with(
        Some(admin.clone()),
        NodeStatus::default(),
        method,
        path,
        body,
    )
    .await
}

/// Asserts a plain-text answer.
#[track_caller]
pub(super) fn expect(a: &Answer, code: u16, body: &str) {
    assert_eq!((a.code.as_u16(), a.body.as_str()), (code, body));
    assert_eq!(a.content_type, "text/html");
}
