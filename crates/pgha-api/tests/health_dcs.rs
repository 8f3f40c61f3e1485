//! Health checks that depend on the DCS view: an unreachable DCS, pause, synchronous and
//! quorum modes; and requests that must never make the router fail.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use pgha_api::NodeStatus;
use pgha_types::Cluster;

#[tokio::test]
async fn dcs_unreachable() {
    let leader_no_dcs = NodeStatus {
        dcs_reachable: false,
        ..leader()
    };
    // The leader still claims its lock until the HA loop says otherwise.
    assert_eq!(
        get(leader_no_dcs.clone(), "/primary").await.code,
        StatusCode::OK
    );
    // Paths that need the DCS fail.
    assert_eq!(
        get(leader_no_dcs.clone(), "/read-only-sync").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let replica_no_dcs = NodeStatus {
        dcs_reachable: false,
        ..replica()
    };
    assert_eq!(
        get(replica_no_dcs.clone(), "/async").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(replica_no_dcs, "/replica").await.code, StatusCode::OK);

    // Paused without a DCS: the leader/primary answers come from the local role.
    let paused_primary = NodeStatus {
        is_leader: false,
        pause: true,
        dcs_reachable: false,
        ..leader()
    };
    assert_eq!(
        get(paused_primary.clone(), "/primary").await.code,
        StatusCode::OK
    );
    assert_eq!(get(paused_primary, "/leader").await.code, StatusCode::OK);
    let paused_replica = NodeStatus {
        is_leader: true,
        pause: true,
        dcs_reachable: false,
        ..replica()
    };
    assert_eq!(
        get(paused_replica.clone(), "/primary").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(paused_replica, "/leader").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn synchronous_mode_roles() {
    let mut keys = observed_keys();
    keys.retain(|k| k.key != "config");
    keys.push(kv("config", r#"{"synchronous_mode":true}"#));
    keys.push(kv(
        "sync",
        r#"{"leader":"node3","quorum":0,"sync_standby":"node2"}"#,
    ));
    let view = Cluster::from_keys(&keys);
    let sync_standby = NodeStatus {
        name: "node2".into(),
        cluster: Some(view.clone()),
        ..replica()
    };
    let async_replica = NodeStatus {
        cluster: Some(view.clone()),
        ..replica()
    };
    let the_leader = NodeStatus {
        cluster: Some(view.clone()),
        ..leader()
    };
    // The observed synchronous_mode table.
    for (path, r1, r2, l) in [
        ("/primary", 503, 503, 200),
        ("/replica", 200, 200, 503),
        ("/sync", 503, 200, 503),
        ("/async", 200, 503, 503),
        ("/read-only-sync", 503, 200, 200),
        ("/health", 200, 200, 200),
    ] {
        assert_eq!(
            get(async_replica.clone(), path).await.code.as_u16(),
            r1,
            "node1 {path}"
        );
        assert_eq!(
            get(sync_standby.clone(), path).await.code.as_u16(),
            r2,
            "node2 {path}"
        );
        assert_eq!(
            get(the_leader.clone(), path).await.code.as_u16(),
            l,
            "node3 {path}"
        );
    }
    let body = get(sync_standby, "/patroni").await.body;
    assert!(
        body.contains(r#""paused": false}, "sync_standby": true, "timeline": 1"#),
        "{body}"
    );
    let cluster = get(the_leader, "/cluster").await.body;
    assert!(
        cluster.contains(r#""name": "node2", "role": "sync_standby""#),
        "{cluster}"
    );

    // Quorum mode.
    let mut keys = observed_keys();
    keys.retain(|k| k.key != "config");
    keys.push(kv("config", r#"{"synchronous_mode":"quorum"}"#));
    keys.push(kv(
        "sync",
        r#"{"leader":"node3","quorum":1,"sync_standby":"node1,node2"}"#,
    ));
    let view = Cluster::from_keys(&keys);
    let quorum_standby = NodeStatus {
        cluster: Some(view.clone()),
        ..replica()
    };
    assert_eq!(
        get(quorum_standby.clone(), "/quorum").await.code,
        StatusCode::OK
    );
    assert_eq!(
        get(quorum_standby.clone(), "/read-only-quorum").await.code,
        StatusCode::OK
    );
    assert_eq!(
        get(quorum_standby, "/async").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let the_leader = NodeStatus {
        cluster: Some(view),
        ..leader()
    };
    assert_eq!(
        get(the_leader.clone(), "/read-only-quorum").await.code,
        StatusCode::OK
    );
    assert_eq!(
        get(the_leader, "/quorum").await.code,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn odd_requests_never_fail() {
    for uri in [
        "/replica?lag=%ff%fe",
        "/replica?tag_%00=%zz",
        "//",
        "/%2e%2e/patroni",
        "/replica?&&&=&lag",
        "/readiness?lag=-5&mode=weird",
        "/cluster/extra/segments",
    ] {
        for status in [leader(), replica(), NodeStatus::default()] {
            let a = get(status, uri).await;
            assert!(
                [200, 502, 503].contains(&a.code.as_u16()),
                "{uri}: {}",
                a.code
            );
        }
    }
    // GET on `/leader/...`: still the leader check, by substring.
    assert_eq!(get(leader(), "/leader/x").await.code, StatusCode::OK);
    // Other methods.
    let a = call(leader(), Method::TRACE, "/").await;
    assert_eq!(a.code, StatusCode::NOT_IMPLEMENTED);
    assert!(a.body.contains("Unsupported method ('TRACE')"));
}
