//! `PATCH /config` and `PUT /config` against a fake agent.

use std::sync::Arc;

use axum::http::Method;
use serde_json::{json, Value};

use super::fake::*;
use crate::{to_python_json, NodeStatus};

fn admin_with(cluster: pgha_types::Cluster, tweak: impl FnOnce(&mut FakeAdmin)) -> Arc<FakeAdmin> {
    let mut fake = FakeAdmin::new(vec![cluster]);
    tweak(&mut fake);
    Arc::new(fake)
}

fn config_json() -> Value {
    serde_json::from_str(CONFIG).unwrap()
}

#[tokio::test]
async fn without_an_agent_answers_503() {
    for method in [Method::PATCH, Method::PUT] {
        let a = send_with(
            None,
            NodeStatus::default(),
            method,
            "/config",
            Some(r#"{"ttl": 30}"#),
        )
        .await;
        expect(&a, 503, "not supported");
    }
}

#[tokio::test]
async fn patch_merges_writes_with_the_revision_and_returns_the_config() {
    let admin = admin_with(three_nodes(Some("node3"), &[]), |_| {});
    let body = r#"{"ttl": 30, "postgresql": {"parameters": {"max_connections": null, "work_mem": "8MB"}}, "pause": true}"#;
    let a = send(&admin, Method::PATCH, "/config", Some(body)).await;
    assert_eq!(a.code.as_u16(), 200);
    assert_eq!(a.content_type, "application/json");
    let want = json!({"ttl": 30, "loop_wait": 1, "retry_timeout": 3, "maximum_lag_on_failover": 1048576,
        "postgresql": {"use_pg_rewind": true, "use_slots": true, "parameters": {"work_mem": "8MB"}}, "pause": true});
    assert_eq!(a.body, to_python_json(&want));
    let calls = admin.calls();
    assert_eq!(
        calls.config_writes,
        vec![(serde_json::to_string(&want).unwrap(), Some(7))]
    );
}

#[tokio::test]
async fn patch_ttl_as_observed() {
    // patroni-4.1.5-observed.md "PATCH /config: ttl below the minimum": 10 is fine for pgha too.
    let admin = admin_with(three_nodes(Some("node3"), &[]), |_| {});
    let a = send(&admin, Method::PATCH, "/config", Some(r#"{"ttl": 10}"#)).await;
    assert_eq!(a.code.as_u16(), 200);
    let mut want = config_json();
    want["ttl"] = json!(10);
    assert_eq!(a.body, to_python_json(&want));
}

#[tokio::test]
async fn patch_without_change_does_not_write() {
    let admin = admin_with(three_nodes(Some("node3"), &[]), |_| {});
    let a = send(
        &admin,
        Method::PATCH,
        "/config",
        Some(r#"{"ttl": "20", "nothing": null}"#),
    )
    .await;
    assert_eq!(a.code.as_u16(), 200);
    assert_eq!(a.body, to_python_json(&config_json()));
    assert!(admin.calls().config_writes.is_empty());
}

#[tokio::test]
async fn patch_rejects_impossible_timings() {
    let admin = admin_with(three_nodes(Some("node3"), &[]), |_| {});
    for (body, key) in [
        (r#"{"ttl": 4}"#, "ttl:"),
        (r#"{"ttl": 6}"#, "ttl:"),
        (r#"{"loop_wait": 0}"#, "loop_wait:"),
        (r#"{"retry_timeout": 1}"#, "retry_timeout:"),
        (r#"{"retry_timeout": "x"}"#, "retry_timeout:"),
        (r#"{"ttl": null, "loop_wait": 30}"#, "ttl:"),
    ] {
        let a = send(&admin, Method::PATCH, "/config", Some(body)).await;
        assert_eq!(a.code.as_u16(), 400, "{body}");
        assert!(a.body.starts_with(key), "{body}: {}", a.body);
        assert_eq!(a.content_type, "text/html");
    }
    assert!(admin.calls().config_writes.is_empty());
}

#[tokio::test]
async fn patch_conflicts_and_missing_config() {
    let lost = admin_with(three_nodes(Some("node3"), &[]), |f| f.cas_ok = false);
    let a = send(&lost, Method::PATCH, "/config", Some(r#"{"ttl": 30}"#)).await;
    assert_eq!(a.code.as_u16(), 409);
    assert!(a.body.contains("Error code: 409"), "{}", a.body);
    assert_eq!(lost.calls().config_writes.len(), 1);

    let broken = admin_with(three_nodes(Some("node3"), &[]), |f| f.write_error = true);
    let a = send(&broken, Method::PATCH, "/config", Some(r#"{"ttl": 30}"#)).await;
    assert_eq!(a.code.as_u16(), 409);

    let mut no_config = three_nodes(Some("node3"), &[]);
    no_config.config = None;
    let admin = admin_with(no_config, |_| {});
    let a = send(&admin, Method::PATCH, "/config", Some(r#"{"ttl": 30}"#)).await;
    assert_eq!(a.code.as_u16(), 503);
    assert!(a.body.contains("Error code: 503"), "{}", a.body);
    assert!(admin.calls().config_writes.is_empty());

    let unreachable = Arc::new(FakeAdmin::scripted(vec![Err("etcd down".into())]));
    let a = send(
        &unreachable,
        Method::PATCH,
        "/config",
        Some(r#"{"ttl": 30}"#),
    )
    .await;
    assert_eq!(a.code.as_u16(), 503);
}

#[tokio::test]
async fn put_replaces_unconditionally() {
    let admin = admin_with(three_nodes(Some("node3"), &[]), |_| {});
    let body =
        r#"{"ttl": 30, "loop_wait": 10, "postgresql": {"parameters": {"max_connections": 200}}}"#;
    let a = send(&admin, Method::PUT, "/config", Some(body)).await;
    assert_eq!(a.code.as_u16(), 200);
    assert_eq!(a.content_type, "application/json");
    let want: Value = serde_json::from_str(body).unwrap();
    assert_eq!(a.body, to_python_json(&want));
    assert_eq!(
        admin.calls().config_writes,
        vec![(serde_json::to_string(&want).unwrap(), None)]
    );

    // The same config again: nothing to write.
    let a = send(&admin, Method::PUT, "/config", Some(CONFIG)).await;
    assert_eq!(a.code.as_u16(), 200);
    assert_eq!(admin.calls().config_writes.len(), 1);

    // Cannot read the current one: write anyway.
    let admin = Arc::new(FakeAdmin::scripted(vec![Err("etcd down".into())]));
    let a = send(&admin, Method::PUT, "/config", Some(body)).await;
    assert_eq!(a.code.as_u16(), 200);
    assert_eq!(admin.calls().config_writes.len(), 1);
}

#[tokio::test]
async fn put_rejections() {
    let admin = admin_with(three_nodes(Some("node3"), &[]), |_| {});
    let a = send(
        &admin,
        Method::PUT,
        "/config",
        Some(r#"{"ttl": 10, "loop_wait": 5, "retry_timeout": 5}"#),
    )
    .await;
    assert_eq!(a.code.as_u16(), 400);
    assert!(a.body.starts_with("ttl:"), "{}", a.body);
    assert!(admin.calls().config_writes.is_empty());

    for tweak in [
        (|f: &mut FakeAdmin| f.write_error = true) as fn(&mut FakeAdmin),
        |f: &mut FakeAdmin| f.cas_ok = false,
    ] {
        let admin = admin_with(three_nodes(Some("node3"), &[]), tweak);
        let a = send(&admin, Method::PUT, "/config", Some(r#"{"ttl": 30}"#)).await;
        assert_eq!(a.code.as_u16(), 502);
        assert!(a.body.contains("Error code: 502"), "{}", a.body);
    }
}

#[tokio::test]
async fn check_validates_without_writing() {
    let admin = admin_with(three_nodes(Some("node3"), &[]), |_| {});
    let ok = r#"{"postgresql": {"parameters": {"work_mem": "8MB"}}}"#;
    let a = send(&admin, Method::POST, "/config/check", Some(ok)).await;
    assert_eq!(a.code.as_u16(), 200, "{}", a.body);
    assert_eq!(a.content_type, "application/json");

    let bad = r#"{"postgresql": {"parameters": {"work_mem": "8MB", "max_connections": "bad"}}}"#;
    let a = send(&admin, Method::POST, "/config/check", Some(bad)).await;
    assert_eq!(a.code.as_u16(), 400);
    assert_eq!(
        a.body,
        "postgresql.parameters.max_connections: invalid value \"bad\""
    );

    // Timings are checked only when given.
    let a = send(&admin, Method::POST, "/config/check", Some(r#"{"ttl": 4}"#)).await;
    assert_eq!(a.code.as_u16(), 400);
    assert!(a.body.starts_with("ttl:"), "{}", a.body);

    // The same refusal on PATCH, which stores nothing.
    let a = send(&admin, Method::PATCH, "/config", Some(bad)).await;
    assert_eq!(a.code.as_u16(), 400);
    assert!(admin.calls().config_writes.is_empty());
}
