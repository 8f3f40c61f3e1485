//! Health-check status codes, against the table in patroni-4.1.5-observed.md ("REST API: status
//! codes of GET (and OPTIONS/HEAD) endpoints") and the rules of contract §4.

mod common;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::*;
use pgha_api::NodeStatus;
use pgha_types::Cluster;

/// (path, leader, replica, content type: true = application/json, false = none)
const OBSERVED: &[(&str, u16, u16, bool)] = &[
    ("/", 200, 503, true),
    ("/primary", 200, 503, true),
    ("/master", 200, 503, true),
    ("/leader", 200, 503, true),
    ("/standby-leader", 503, 503, true),
    ("/standby_leader", 503, 503, true),
    ("/replica", 503, 200, true),
    ("/read-only", 200, 200, true),
    ("/read-write", 200, 503, true),
    ("/health", 200, 200, true),
    ("/liveness", 200, 200, false),
    ("/readiness", 200, 200, false),
    ("/sync", 503, 503, true),
    ("/synchronous", 503, 503, true),
    ("/async", 503, 200, true),
    ("/asynchronous", 503, 200, true),
    ("/quorum", 503, 503, true),
    ("/read-only-sync", 200, 503, true),
    ("/replica?lag=1MB", 503, 200, true),
    ("/replica?lag=0", 503, 200, true),
    ("/replica?replication_state=streaming", 503, 200, true),
    ("/replica?tag_x=y", 503, 503, true),
    ("/nonexistent", 503, 503, true),
    ("/patroni", 200, 200, true),
    ("/cluster", 200, 200, true),
    ("/history", 200, 200, true),
    ("/config", 200, 200, true),
];

#[tokio::test]
async fn get_status_codes_match_observed() {
    for &(path, leader_code, replica_code, json) in OBSERVED {
        for (who, status, code) in [
            ("leader", leader(), leader_code),
            ("replica", replica(), replica_code),
        ] {
            let a = get(status, path).await;
            assert_eq!(a.code.as_u16(), code, "GET {path} on the {who}");
            if json {
                assert_eq!(
                    a.content_type.as_deref(),
                    Some("application/json"),
                    "GET {path} on the {who}"
                );
                if !["/cluster", "/history", "/config"].contains(&path) {
                    assert!(
                        a.body.starts_with(r#"{"state": "running""#),
                        "GET {path}: {}",
                        a.body
                    );
                }
            } else {
                assert_eq!(a.content_type, None, "GET {path} on the {who}");
                assert!(a.body.is_empty(), "GET {path} on the {who}");
            }
        }
    }
}

#[tokio::test]
async fn head_and_options_give_the_code_only() {
    let paths = [
        "/",
        "/primary",
        "/master",
        "/leader",
        "/replica",
        "/replica?lag=1MB",
        "/read-only",
        "/health",
        "/async",
        "/sync",
        "/standby-leader",
        "/nonexistent",
    ];
    for path in paths {
        let &(_, leader_code, replica_code, _) = OBSERVED.iter().find(|r| r.0 == path).unwrap();
        for method in [Method::HEAD, Method::OPTIONS] {
            for (status, code) in [(leader(), leader_code), (replica(), replica_code)] {
                let a = call(status, method.clone(), path).await;
                assert_eq!(a.code.as_u16(), code, "{method} {path}");
                assert_eq!(a.content_type, None, "{method} {path}");
                assert!(a.body.is_empty(), "{method} {path}");
            }
        }
    }
}

#[tokio::test]
async fn tags_filter_non_leader_paths() {
    let tagged = || NodeStatus {
        tags: serde_json::from_str(r#"{"x": "y", "flag": true, "prio": 1}"#).unwrap(),
        ..replica()
    };
    for (path, code) in [
        ("/replica?tag_x=y", 200),
        ("/replica?tag_x=z", 503),
        ("/replica?tag_flag=true", 200),
        ("/replica?tag_prio=1", 200),
        ("/replica?tag_x=y&tag_missing=1", 503),
        ("/read-only?tag_x=y", 200),
        ("/health?tag_x=z", 503),
        ("/async?tag_x=y", 200),
        ("/replica?tag_x=y&tag_x=z", 200),
    ] {
        assert_eq!(get(tagged(), path).await.code.as_u16(), code, "{path}");
    }
    // Ignored on the leader paths.
    assert_eq!(get(leader(), "/primary?tag_x=y").await.code, StatusCode::OK);
    assert_eq!(get(leader(), "/leader?tag_x=y").await.code, StatusCode::OK);
    assert_eq!(
        get(leader(), "/read-only?tag_x=y").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn replica_lag_and_load_balancing() {
    let lagging = || NodeStatus {
        replayed_location: Some(67108864 - 2 * 1024 * 1024),
        ..replica()
    };
    assert_eq!(get(lagging(), "/replica").await.code, StatusCode::OK);
    assert_eq!(
        get(lagging(), "/replica?lag=1MB").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(lagging(), "/replica?lag=2MB").await.code,
        StatusCode::OK
    );
    assert_eq!(
        get(lagging(), "/replica?lag=64MB").await.code,
        StatusCode::OK
    );
    assert_eq!(
        get(lagging(), "/async?lag=16kB").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(lagging(), "/read-only?lag=1048576").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // An unparsable lag is ignored, as Patroni does.
    assert_eq!(
        get(lagging(), "/replica?lag=lots").await.code,
        StatusCode::OK
    );
    // Unknown leader optime: not lagging (Patroni's rule).
    let unknown_optime = NodeStatus {
        leader_optime: None,
        cluster: Some(Cluster::default()),
        ..lagging()
    };
    assert_eq!(
        get(unknown_optime, "/replica?lag=0").await.code,
        StatusCode::OK
    );
    // Without a published optime the status key of the DCS view is used.
    let from_view = NodeStatus {
        leader_optime: None,
        ..lagging()
    };
    assert_eq!(
        get(from_view, "/replica?lag=1MB").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let noloadbalance = NodeStatus {
        tags: serde_json::from_str(r#"{"noloadbalance": true}"#).unwrap(),
        ..replica()
    };
    assert_eq!(
        get(noloadbalance.clone(), "/replica").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(noloadbalance, "/health").await.code, StatusCode::OK);

    let archive = NodeStatus {
        replication_state: Some("in archive recovery".into()),
        ..replica()
    };
    assert_eq!(get(archive.clone(), "/replica").await.code, StatusCode::OK);
    assert_eq!(
        get(archive, "/replica?replication_state=streaming")
            .await
            .code,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn stopped_or_unknown_postgres() {
    for state in ["stopped", "starting", "crashed", ""] {
        let s = NodeStatus {
            state: state.into(),
            ..replica()
        };
        for path in ["/health", "/replica", "/read-only", "/async", "/readiness"] {
            assert_eq!(
                get(s.clone(), path).await.code,
                StatusCode::SERVICE_UNAVAILABLE,
                "{state} {path}"
            );
        }
        assert_eq!(
            get(s.clone(), "/liveness").await.code,
            StatusCode::OK,
            "{state}"
        );
        let body = get(s, "/health").await.body;
        let expected_state = if state.is_empty() { "unknown" } else { state };
        assert!(
            body.starts_with(&format!(r#"{{"state": "{expected_state}""#)),
            "{body}"
        );
    }
    // A lock holder whose postgres is not running is not a usable primary.
    let stopped_leader = NodeStatus {
        state: "stopped".into(),
        ..leader()
    };
    assert_eq!(
        get(stopped_leader.clone(), "/primary").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(stopped_leader.clone(), "/leader").await.code,
        StatusCode::OK
    );
    assert_eq!(get(stopped_leader, "/readiness").await.code, StatusCode::OK);
}

#[tokio::test]
async fn leader_claim_and_liveness_follow_the_loop_heartbeat() {
    let ago = |secs| Instant::now().checked_sub(Duration::from_secs(secs));
    let Some(stale) = ago(25) else { return };
    let stuck_leader = NodeStatus {
        loop_heartbeat: Some(stale),
        ..leader()
    };
    for path in ["/primary", "/leader", "/liveness", "/readiness"] {
        assert_eq!(
            get(stuck_leader.clone(), path).await.code,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}"
        );
    }
    // Replicas get twice the ttl.
    let slow_replica = NodeStatus {
        loop_heartbeat: Some(stale),
        ..replica()
    };
    assert_eq!(
        get(slow_replica.clone(), "/liveness").await.code,
        StatusCode::OK
    );
    let Some(older) = ago(41) else { return };
    let stuck_replica = NodeStatus {
        loop_heartbeat: Some(older),
        ..slow_replica
    };
    assert_eq!(
        get(stuck_replica.clone(), "/liveness").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Paused: liveness holds.
    let paused = NodeStatus {
        pause: true,
        ..stuck_replica
    };
    assert_eq!(get(paused, "/liveness").await.code, StatusCode::OK);
    // Before the first cycle the router's start time counts.
    let fresh = NodeStatus {
        loop_heartbeat: None,
        ..leader()
    };
    assert_eq!(get(fresh.clone(), "/liveness").await.code, StatusCode::OK);
    assert_eq!(get(fresh, "/primary").await.code, StatusCode::OK);
}

#[tokio::test]
async fn readiness_rules() {
    let not_streaming = NodeStatus {
        replication_state: None,
        ..replica()
    };
    assert_eq!(
        get(not_streaming, "/readiness").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let lagging = NodeStatus {
        replayed_location: Some(67108864 - 2 * 1024 * 1024),
        received_location: Some(67108864),
        ..replica()
    };
    assert_eq!(
        get(lagging.clone(), "/readiness").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(lagging.clone(), "/readiness?mode=write").await.code,
        StatusCode::OK
    );
    assert_eq!(
        get(lagging.clone(), "/readiness?lag=4MB").await.code,
        StatusCode::OK
    );
    let no_dcs = NodeStatus {
        dcs_reachable: false,
        ..lagging
    };
    assert_eq!(
        get(no_dcs, "/readiness?lag=4MB").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
