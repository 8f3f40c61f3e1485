//! `POST /restart`, `DELETE /restart`, `POST /reload`, `POST /reinitialize` against a fake agent.

use std::sync::Arc;

use axum::http::Method;

use super::fake::*;
use crate::{LocalAnswer, LocalRequest, NodeStatus};

const PAUSED: &str = r#"{"ttl":20,"loop_wait":1,"retry_timeout":3,"pause":true}"#;

fn answering(status: u16, text: &str) -> Arc<FakeAdmin> {
    answering_with(vec![Ok(three_nodes(Some("node3"), &[]))], status, text)
}

fn answering_with(
    script: Vec<Result<pgha_types::Cluster, String>>,
    status: u16,
    text: &str,
) -> Arc<FakeAdmin> {
    let mut fake = FakeAdmin::scripted(script);
    fake.local_answer = LocalAnswer {
        status,
        text: text.into(),
    };
    Arc::new(fake)
}

async fn restart(admin: &Arc<FakeAdmin>, body: Option<&str>) -> Answer {
    send(admin, Method::POST, "/restart", body).await
}

fn last_request(admin: &FakeAdmin) -> Option<LocalRequest> {
    admin.calls().local.last().cloned()
}

#[tokio::test]
async fn without_an_agent_answers_503() {
    for (method, path) in [
        (Method::POST, "/restart"),
        (Method::DELETE, "/restart"),
        (Method::POST, "/reload"),
        (Method::POST, "/reinitialize"),
    ] {
        let a = send_with(None, NodeStatus::default(), method, path, None).await;
        expect(&a, 503, "not supported");
    }
}

#[tokio::test]
async fn restart_now_passes_filters_and_the_answer() {
    let admin = answering(200, "restarted successfully");
    for body in [None, Some(""), Some("{}")] {
        let a = restart(&admin, body).await;
        expect(&a, 200, "restarted successfully");
        assert_eq!(
            last_request(&admin),
            Some(LocalRequest::Restart {
                role: None,
                pending_only: false,
                postgres_version: None,
                timeout: None
            })
        );
    }
    // `restart_pending` counts when present, whatever its value, as in Patroni.
    let body = r#"{"restart_pending": false, "role": "replica", "postgres_version": "15.2", "timeout": "1min"}"#;
    restart(&admin, Some(body)).await;
    assert_eq!(
        last_request(&admin),
        Some(LocalRequest::Restart {
            role: Some("replica".into()),
            pending_only: true,
            postgres_version: Some("15.2".into()),
            timeout: Some(60)
        })
    );
    // No DCS read without a schedule.
    assert_eq!(admin.calls().loads, 0);

    let admin = answering(503, "restart conditions are not satisfied");
    let a = restart(&admin, Some(r#"{"role": "primary"}"#)).await;
    expect(&a, 503, "restart conditions are not satisfied");
}

#[tokio::test]
async fn restart_rejections() {
    let admin = answering(200, "restarted successfully");
    let role = "PostgreSQL role should be either primary, standby_leader, or replica";
    let cases = [
        (r#"{"role": "master"}"#, 400, role),
        (r#"{"role": "leader"}"#, 400, role),
        (r#"{"role": 1}"#, 400, role),
        (r#"{"postgres_version": "15"}"#, 400, "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 15"),
        (r#"{"postgres_version": "fifteen.2"}"#, 400, "Invalid PostgreSQL version: fifteen.2"),
        (r#"{"timeout": 0}"#, 400, "Timeout should be a positive number of seconds"),
        (r#"{"timeout": "soon"}"#, 400, "Timeout should be a positive number of seconds"),
        (r#"{"force": true}"#, 400, "Unknown filter for the scheduled restart: force"),
        // The first bad key answers.
        (r#"{"nope": 1, "role": "x"}"#, 400, "Unknown filter for the scheduled restart: nope"),
        (r#"{"role": "x", "nope": 1}"#, 400, role),
        (r#"{"schedule": "2099-01-01T00:00:00"}"#, 400, "Timezone information is mandatory for the scheduled restart"),
        (r#"{"schedule": "2001-01-01T00:00:00Z"}"#, 422, "Cannot schedule restart in the past"),
        (r#"{"schedule": null}"#, 422, "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"),
    ];
    for (body, code, text) in cases {
        let a = restart(&admin, Some(body)).await;
        assert_eq!((a.code.as_u16(), a.body.as_str()), (code, text), "{body}");
    }
    assert!(admin.calls().local.is_empty());
}

#[tokio::test]
async fn scheduled_restart() {
    let admin = answering(202, "Restart scheduled");
    let body = r#"{"schedule": "2099-06-01T12:00:00+02:00", "role": "primary", "restart_pending": true, "postgres_version": "16.1", "timeout": "2min"}"#;
    let a = restart(&admin, Some(body)).await;
    expect(&a, 202, "Restart scheduled");
    let details = serde_json::json!({
        "schedule": "2099-06-01T10:00:00+00:00",
        "role": "primary",
        "restart_pending": true,
        "postgres_version": "16.1",
        "timeout": 120,
    });
    assert_eq!(
        last_request(&admin),
        Some(LocalRequest::ScheduleRestart {
            schedule: "2099-06-01T10:00:00+00:00".into(),
            role: Some("primary".into()),
            pending_only: true,
            postgres_version: Some("16.1".into()),
            timeout: Some(120),
            details: details.as_object().unwrap().clone(),
        })
    );
    // The keys keep the order they were sent in, as Patroni's dict.
    let Some(LocalRequest::ScheduleRestart { details, .. }) = last_request(&admin) else {
        unreachable!()
    };
    let keys: Vec<&str> = details.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "schedule",
            "role",
            "restart_pending",
            "postgres_version",
            "timeout"
        ]
    );

    let admin = answering(409, "Another restart is already scheduled");
    let a = restart(&admin, Some(r#"{"schedule": "2099-06-01T12:00:00Z"}"#)).await;
    expect(&a, 409, "Another restart is already scheduled");
}

#[tokio::test]
async fn no_scheduled_restart_while_paused() {
    let text = "Can't schedule restart in the paused state";
    let paused = three_nodes(Some("node3"), &[("config", PAUSED.into())]);
    let admin = answering_with(vec![Ok(paused)], 202, "Restart scheduled");
    // Checked before the keys, as Patroni.
    let a = restart(&admin, Some(r#"{"schedule": "bad", "nope": 1}"#)).await;
    expect(&a, 500, text);
    assert!(admin.calls().local.is_empty());
    // An immediate restart is allowed.
    let a = restart(&admin, Some("{}")).await;
    expect(&a, 202, "Restart scheduled");

    // DCS unreachable: the published view decides.
    let published = NodeStatus {
        pause: true,
        ..NodeStatus::default()
    };
    let admin = answering_with(vec![Err("etcd down".into())], 202, "Restart scheduled");
    let body = Some(r#"{"schedule": "2099-06-01T12:00:00Z"}"#);
    let a = send_with(
        Some(admin.clone()),
        published.clone(),
        Method::POST,
        "/restart",
        body,
    )
    .await;
    expect(&a, 500, text);
    // A fresh, unpaused cluster wins over a stale published pause.
    let admin = answering(202, "Restart scheduled");
    let a = send_with(Some(admin), published, Method::POST, "/restart", body).await;
    expect(&a, 202, "Restart scheduled");
}

#[tokio::test]
async fn delete_restart_and_reload_pass_through() {
    let admin = answering(404, "no restarts are scheduled");
    let a = send(&admin, Method::DELETE, "/restart", None).await;
    expect(&a, 404, "no restarts are scheduled");
    assert_eq!(
        last_request(&admin),
        Some(LocalRequest::CancelScheduledRestart)
    );

    let admin = answering(202, "reload scheduled");
    for body in [None, Some("{}")] {
        let a = send(&admin, Method::POST, "/reload", body).await;
        expect(&a, 202, "reload scheduled");
        assert_eq!(last_request(&admin), Some(LocalRequest::Reload));
    }
}

#[tokio::test]
async fn reinitialize_flags() {
    let admin = answering(200, "reinitialize started");
    let cases = [
        (None, false, false),
        (Some("{}"), false, false),
        (Some(r#"{"force": true}"#), true, false),
        (Some(r#"{"force": "Yes", "from_leader": 1}"#), true, true),
        (
            Some(r#"{"force": "maybe", "from_leader": "off"}"#),
            false,
            false,
        ),
        (Some(r#"{"force": 2, "from_leader": [true]}"#), false, false),
    ];
    for (body, force, from_leader) in cases {
        let a = send(&admin, Method::POST, "/reinitialize", body).await;
        expect(&a, 200, "reinitialize started");
        assert_eq!(
            last_request(&admin),
            Some(LocalRequest::Reinitialize { force, from_leader }),
            "{body:?}"
        );
    }
    let admin = answering(503, "I am the leader, can not reinitialize");
    let a = send(&admin, Method::POST, "/reinitialize", None).await;
    expect(&a, 503, "I am the leader, can not reinitialize");
}

#[tokio::test]
async fn odd_loop_answers_do_not_panic() {
    let admin = answering(42, "what");
    let a = send(&admin, Method::POST, "/reload", None).await;
    assert_eq!(a.code.as_u16(), 500);
    assert_eq!(a.body, "what");
}

#[tokio::test]
async fn other_endpoints() {
    let admin = answering(200, "unused");
    let a = send(&admin, Method::POST, "/sigterm", None).await;
    expect(&a, 202, "shutdown scheduled");
    for path in ["/citus", "/mpp"] {
        let a = send(
            &admin,
            Method::POST,
            path,
            Some(r#"{"type": "before_demote"}"#),
        )
        .await;
        expect(&a, 200, "OK");
    }
    // failsafe_mode off (no published cluster): 502 as Patroni, before the body is read (no
    // 411 without Content-Length, no 400 for a bad body).
    for body in [Some(r#"{"name": "node3"}"#), None, Some("not json")] {
        let a = send(&admin, Method::POST, "/failsafe", body).await;
        assert_eq!(a.code.as_u16(), 502, "{body:?}");
        assert!(a.body.contains("Error code: 502"), "{}", a.body);
    }
    // A `failsafe_mode: true` only in a config key the loop has not acted on: still off.
    let on = crate::NodeStatus {
        cluster: Some(cluster(&[(
            "config",
            r#"{"failsafe_mode":true}"#.to_string(),
        )])),
        ..Default::default()
    };
    let a = send_with(
        Some(admin.clone()),
        on,
        Method::POST,
        "/failsafe",
        Some(r#"{"name": "node3"}"#),
    )
    .await;
    assert_eq!(a.code.as_u16(), 502);
}

#[tokio::test]
async fn failsafe_post_with_failsafe_mode_on() {
    let replica = NodeStatus {
        state: "running".into(),
        role: Some("replica".into()),
        failsafe_mode: true,
        known_leader: Some("node3".into()),
        received_location: Some(67_109_000),
        replayed_location: Some(67_108_000),
        ..Default::default()
    };
    let post = |status: NodeStatus, body: Option<&'static str>| async move {
        send_with(None, status, Method::POST, "/failsafe", body).await
    };
    // The leader it follows: accepted.
    let body = r#"{"name": "node3", "conn_url": "postgres://127.0.0.1:5433/postgres", "api_url": "http://127.0.0.1:8013/patroni", "slots": {"node3": 67109000}}"#;
    let a = post(replica.clone(), Some(body)).await;
    expect(&a, 200, "Accepted");
    // Another member claiming to lead: refused, and that makes it demote.
    let a = post(replica.clone(), Some(r#"{"name": "node1"}"#)).await;
    assert_eq!(a.code.as_u16(), 500);
    assert!(a.body.contains("following node3"), "{}", a.body);
    // The primary itself refuses, as Patroni does.
    let primary = NodeStatus {
        role: Some("primary".into()),
        known_leader: Some("node1".into()),
        ..replica.clone()
    };
    expect(
        &post(primary, Some(r#"{"name": "node1"}"#)).await,
        500,
        "Running as a leader",
    );
    // Bodies are checked once failsafe mode is on.
    assert_eq!(post(replica.clone(), None).await.code.as_u16(), 411);
    assert_eq!(
        post(replica.clone(), Some("not json")).await.code.as_u16(),
        400
    );
    assert_eq!(post(replica, Some(r#"{"x": 1}"#)).await.code.as_u16(), 400);
}
