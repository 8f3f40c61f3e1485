//! Fixtures: the three-node cluster of patroni-4.1.5-observed.md ("After bootstrap"), node3
//! the leader, node1 an async streaming replica, and helpers to call the router in-process.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Instant;

use axum::body::{to_bytes, Body};
use axum::http::{Method, Request, StatusCode};
use pgha_api::{router, ApiState, NodeStatus, ReplicationInfo};
use pgha_types::{Cluster, KeyValue};
use tower::ServiceExt;

pub const CONFIG: &str = r#"{"ttl":20,"loop_wait":1,"retry_timeout":3,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true,"use_slots":true,"parameters":{"wal_level":"replica","hot_standby":"on","max_wal_senders":10,"max_replication_slots":10,"wal_log_hints":"on","max_connections":100,"shared_buffers":"64MB"}}}"#;

pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        lease: 0,
        mod_revision: 1,
    }
}

/// `etcdctl get --prefix /` after bootstrap.
pub fn observed_keys() -> Vec<KeyValue> {
    vec![
        kv("config", CONFIG),
        kv("initialize", "7710809278050705596"),
        kv("leader", "node3"),
        kv(
            "members/node1",
            r#"{"conn_url":"postgres://127.0.0.1:5451/postgres","api_url":"http://127.0.0.1:8021/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":67108864,"replay_lsn":67108864,"receive_lsn":67108864,"replication_state":"streaming","timeline":1}"#,
        ),
        kv(
            "members/node2",
            r#"{"conn_url":"postgres://127.0.0.1:5452/postgres","api_url":"http://127.0.0.1:8022/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":67108864,"replay_lsn":67108864,"receive_lsn":67108864,"replication_state":"streaming","timeline":1}"#,
        ),
        kv(
            "members/node3",
            r#"{"conn_url":"postgres://127.0.0.1:5453/postgres","api_url":"http://127.0.0.1:8023/patroni","state":"running","role":"primary","version":"4.1.5","xlog_location":67108864,"timeline":1}"#,
        ),
        kv(
            "status",
            r#"{"optime":67108864,"slots":{"node2":67108864,"node1":67108864,"node3":67108864},"retain_slots":["node1","node2","node3"]}"#,
        ),
    ]
}

pub fn observed_cluster() -> Cluster {
    Cluster::from_keys(&observed_keys())
}

fn base(name: &str) -> NodeStatus {
    NodeStatus {
        scope: "pgha-bench".into(),
        name: name.into(),
        state: "running".into(),
        server_version: Some(150018),
        timeline: Some(1),
        dcs_last_seen: Some(1795312698),
        database_system_identifier: Some("7710809278050705596".into()),
        loop_heartbeat: Some(Instant::now()),
        ttl: 20,
        maximum_lag_on_failover: 1048576,
        leader_optime: Some(67108864),
        cluster: Some(observed_cluster()),
        dcs_reachable: true,
        ..Default::default()
    }
}

fn replication_row(app: &str) -> ReplicationInfo {
    ReplicationInfo {
        usename: "replicator".into(),
        application_name: app.into(),
        client_addr: Some("127.0.0.1".into()),
        state: "streaming".into(),
        sync_state: "async".into(),
        sync_priority: 0,
    }
}

/// node3 as observed: the leader.
pub fn leader() -> NodeStatus {
    NodeStatus {
        role: Some("primary".into()),
        is_leader: true,
        postmaster_start_time: Some("2026-11-22 01:58:08.202807+00:00".into()),
        xlog_location: Some(67108864),
        replication: vec![replication_row("node1"), replication_row("node2")],
        ..base("node3")
    }
}

/// node1 as observed: an async streaming replica, fully caught up.
pub fn replica() -> NodeStatus {
    NodeStatus {
        role: Some("replica".into()),
        postmaster_start_time: Some("2026-11-22 01:58:10.439380+00:00".into()),
        received_location: Some(67108864),
        replayed_location: Some(67108864),
        replication_state: Some("streaming".into()),
        ..base("node1")
    }
}

pub struct Answer {
    pub code: StatusCode,
    pub content_type: Option<String>,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

pub async fn call(status: NodeStatus, method: Method, uri: &str) -> Answer {
    call_with(
        status,
        None,
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

pub async fn call_with(
    status: NodeStatus,
    auth: Option<(&str, &str)>,
    req: Request<Body>,
) -> Answer {
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(status));
    let auth = auth.map(|(u, p)| (u.to_string(), p.to_string()));
    let resp = router(ApiState::new(rx, auth)).oneshot(req).await.unwrap();
    let code = resp.status();
    let headers = resp.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    Answer {
        code,
        content_type,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

pub async fn get(status: NodeStatus, uri: &str) -> Answer {
    call(status, Method::GET, uri).await
}

/// Re-serializes a JSON text compactly, keeping key order, so bodies compare field by field
/// and in order regardless of whitespace.
pub fn canonical(text: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    serde_json::to_string(&v).unwrap()
}
