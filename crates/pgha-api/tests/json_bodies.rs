//! JSON bodies compared with the ones Patroni 4.1.5 returned (patroni-4.1.5-observed.md,
//! "REST API: JSON bodies"), field order included.

mod common;

use axum::http::StatusCode;
use common::*;
use pgha_api::{cluster_json, patroni_json, to_python_json, NodeStatus};
use pgha_types::Cluster;

const LEADER_PATRONI: &str = r#"{
  "state": "running",
  "postmaster_start_time": "2026-11-22 01:58:08.202807+00:00",
  "role": "primary",
  "server_version": 150018,
  "xlog": {
    "location": 67108864
  },
  "timeline": 1,
  "replication": [
    {
      "usename": "replicator",
      "application_name": "node1",
      "client_addr": "127.0.0.1",
      "state": "streaming",
      "sync_state": "async",
      "sync_priority": 0
    },
    {
      "usename": "replicator",
      "application_name": "node2",
      "client_addr": "127.0.0.1",
      "state": "streaming",
      "sync_state": "async",
      "sync_priority": 0
    }
  ],
  "dcs_last_seen": 1795312698,
  "database_system_identifier": "7710809278050705596",
  "patroni": {
    "version": "4.1.5",
    "scope": "pgha-bench",
    "name": "node3"
  }
}"#;

const REPLICA_PATRONI: &str = r#"{
  "state": "running",
  "postmaster_start_time": "2026-11-22 01:58:10.439380+00:00",
  "role": "replica",
  "server_version": 150018,
  "xlog": {
    "received_location": 67108864,
    "replayed_location": 67108864,
    "replayed_timestamp": null,
    "paused": false
  },
  "timeline": 1,
  "replication_state": "streaming",
  "dcs_last_seen": 1795312698,
  "database_system_identifier": "7710809278050705596",
  "patroni": {
    "version": "4.1.5",
    "scope": "pgha-bench",
    "name": "node1"
  }
}"#;

const CLUSTER: &str = r#"{
  "members": [
    {
      "name": "node1",
      "role": "replica",
      "state": "streaming",
      "api_url": "http://127.0.0.1:8021/patroni",
      "host": "127.0.0.1",
      "port": 5451,
      "timeline": 1,
      "receive_lag": 0,
      "receive_lsn": "0/4000000",
      "replay_lag": 0,
      "replay_lsn": "0/4000000",
      "lag": 0,
      "lsn": "0/4000000"
    },
    {
      "name": "node2",
      "role": "replica",
      "state": "streaming",
      "api_url": "http://127.0.0.1:8022/patroni",
      "host": "127.0.0.1",
      "port": 5452,
      "timeline": 1,
      "receive_lag": 0,
      "receive_lsn": "0/4000000",
      "replay_lag": 0,
      "replay_lsn": "0/4000000",
      "lag": 0,
      "lsn": "0/4000000"
    },
    {
      "name": "node3",
      "role": "leader",
      "state": "running",
      "api_url": "http://127.0.0.1:8023/patroni",
      "host": "127.0.0.1",
      "port": 5453,
      "timeline": 1
    }
  ],
  "scope": "pgha-bench"
}"#;

const SCHEDULED_CLUSTER: &str = r#"{
  "members": [
    {
      "name": "node1",
      "role": "leader",
      "state": "running",
      "api_url": "http://127.0.0.1:8021/patroni",
      "host": "127.0.0.1",
      "port": 5451,
      "timeline": 2
    },
    {
      "name": "node2",
      "role": "replica",
      "state": "streaming",
      "api_url": "http://127.0.0.1:8022/patroni",
      "host": "127.0.0.1",
      "port": 5452,
      "timeline": 2,
      "receive_lag": 0,
      "receive_lsn": "0/4000268",
      "replay_lag": 0,
      "replay_lsn": "0/4000268",
      "lag": 0,
      "lsn": "0/4000268"
    },
    {
      "name": "node3",
      "role": "replica",
      "state": "streaming",
      "api_url": "http://127.0.0.1:8023/patroni",
      "host": "127.0.0.1",
      "port": 5453,
      "timeline": 2,
      "receive_lag": 0,
      "receive_lsn": "0/4000268",
      "replay_lag": 0,
      "replay_lsn": "0/4000268",
      "lag": 0,
      "lsn": "0/4000268"
    }
  ],
  "scheduled_switchover": {
    "at": "2026-11-22T02:58:28+00:00",
    "from": "node1",
    "to": "node3"
  },
  "scope": "pgha-bench"
}"#;

/// "With a scheduled switchover pending (failover key)".
fn scheduled_cluster() -> Cluster {
    Cluster::from_keys(&[
        kv("config", CONFIG),
        kv(
            "failover",
            r#"{"leader":"node1","member":"node3","scheduled_at":"2026-11-22T02:58:28+00:00"}"#,
        ),
        kv(
            "history",
            r#"[[1,67109200,"no recovery target specified","2026-11-22T01:58:24.372054+00:00","node1"]]"#,
        ),
        kv("initialize", "7710809278050705596"),
        kv("leader", "node1"),
        kv(
            "members/node1",
            r#"{"conn_url":"postgres://127.0.0.1:5451/postgres","api_url":"http://127.0.0.1:8021/patroni","state":"running","role":"primary","version":"4.1.5","xlog_location":67109480,"timeline":2}"#,
        ),
        kv(
            "members/node2",
            r#"{"conn_url":"postgres://127.0.0.1:5452/postgres","api_url":"http://127.0.0.1:8022/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":67109480,"replay_lsn":67109480,"receive_lsn":67109480,"replication_state":"streaming","timeline":2}"#,
        ),
        kv(
            "members/node3",
            r#"{"conn_url":"postgres://127.0.0.1:5453/postgres","api_url":"http://127.0.0.1:8023/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":67109480,"replay_lsn":67109480,"receive_lsn":67109480,"replication_state":"streaming","timeline":2}"#,
        ),
        kv(
            "status",
            r#"{"optime":67109480,"slots":{"node2":67109480,"node3":67109480,"node1":67109480},"retain_slots":["node1","node2","node3"]}"#,
        ),
    ])
}

#[test]
fn patroni_json_matches_observed_field_order() {
    assert_eq!(
        serde_json::to_string(&patroni_json(&leader())).unwrap(),
        canonical(LEADER_PATRONI)
    );
    assert_eq!(
        serde_json::to_string(&patroni_json(&replica())).unwrap(),
        canonical(REPLICA_PATRONI)
    );
}

#[tokio::test]
async fn get_patroni_is_always_200_with_json() {
    for (status, expected) in [(leader(), LEADER_PATRONI), (replica(), REPLICA_PATRONI)] {
        let a = get(status, "/patroni").await;
        assert_eq!(a.code, StatusCode::OK);
        assert_eq!(a.content_type.as_deref(), Some("application/json"));
        assert_eq!(canonical(&a.body), canonical(expected));
    }
    let stopped = NodeStatus {
        state: "stopped".into(),
        ..replica()
    };
    assert_eq!(get(stopped, "/patroni/anything").await.code, StatusCode::OK);
}

#[tokio::test]
async fn pending_and_scheduled_restart_in_get_patroni() {
    let mut reason = serde_json::Map::new();
    reason.insert(
        "max_connections".into(),
        serde_json::json!({"old_value": "100", "new_value": "150"}),
    );
    let sched = serde_json::json!({"schedule": "2099-01-01T00:00:00+00:00", "role": "replica", "restart_pending": true});
    let s = NodeStatus {
        pending_restart: true,
        pending_restart_reason: reason,
        scheduled_restart: sched.as_object().cloned(),
        ..replica()
    };
    let a = get(s, "/patroni").await;
    assert_eq!(a.code, StatusCode::OK);
    // Patroni's order: ..., pending_restart, pending_restart_reason, patroni, scheduled_restart.
    let tail = r#""pending_restart": true, "pending_restart_reason": {"max_connections": {"old_value": "100", "new_value": "150"}}, "patroni": {"version": "4.1.5", "scope": "pgha-bench", "name": "node1"}, "scheduled_restart": {"schedule": "2099-01-01T00:00:00+00:00", "role": "replica", "restart_pending": true}}"#;
    assert!(a.body.ends_with(tail), "{}", a.body);
    // Nothing scheduled, nothing pending: neither key.
    let a = get(replica(), "/patroni").await;
    assert!(
        !a.body.contains("scheduled_restart") && !a.body.contains("pending_restart"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn wire_format_is_pythons_json_dumps() {
    // `GET /nonexistent` on the leader, byte for byte.
    let observed = r#"{"state": "running", "postmaster_start_time": "2026-11-22 01:58:08.202807+00:00", "role": "primary", "server_version": 150018, "xlog": {"location": 67108864}, "timeline": 1, "replication": [{"usename": "replicator", "application_name": "node1", "client_addr": "127.0.0.1", "state": "streaming", "sync_state": "async", "sync_priority": 0}, {"usename": "replicator", "application_name": "node2", "client_addr": "127.0.0.1", "state": "streaming", "sync_state": "async", "sync_priority": 0}], "dcs_last_seen": 1795312699, "database_system_identifier": "7710809278050705596", "patroni": {"version": "4.1.5", "scope": "pgha-bench", "name": "node3"}}"#;
    let status = NodeStatus {
        dcs_last_seen: Some(1795312699),
        ..leader()
    };
    let a = get(status, "/nonexistent").await;
    assert_eq!(a.code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.content_type.as_deref(), Some("application/json"));
    assert_eq!(a.body, observed);
}

#[test]
fn stopped_postgres_reports_state_and_role_only() {
    let s = NodeStatus {
        state: "stopped".into(),
        cluster_unlocked: true,
        pause: true,
        pending_restart: true,
        tags: serde_json::from_str(r#"{"nofailover": true}"#).unwrap(),
        ..replica()
    };
    assert_eq!(
        to_python_json(&patroni_json(&s)),
        r#"{"state": "stopped", "role": "replica", "pause": true, "cluster_unlocked": true, "dcs_last_seen": 1795312698, "tags": {"nofailover": true}, "database_system_identifier": "7710809278050705596", "pending_restart": true, "pending_restart_reason": {}, "patroni": {"version": "4.1.5", "scope": "pgha-bench", "name": "node1"}}"#
    );
    let unknown = NodeStatus::default();
    assert_eq!(
        to_python_json(&patroni_json(&unknown)),
        r#"{"state": "unknown", "dcs_last_seen": 0, "patroni": {"version": "4.1.5", "scope": "", "name": ""}}"#
    );
}

#[test]
fn leader_race_body_with_cluster_unlocked() {
    // "Got response from node1 ...": a replica that lost its upstream, during the leader race.
    let s = NodeStatus {
        received_location: Some(67109200),
        replayed_location: Some(67109200),
        replication_state: None,
        cluster_unlocked: true,
        dcs_last_seen: Some(1795312704),
        ..replica()
    };
    assert_eq!(
        to_python_json(&patroni_json(&s)),
        r#"{"state": "running", "postmaster_start_time": "2026-11-22 01:58:10.439380+00:00", "role": "replica", "server_version": 150018, "xlog": {"received_location": 67109200, "replayed_location": 67109200, "replayed_timestamp": null, "paused": false}, "timeline": 1, "cluster_unlocked": true, "dcs_last_seen": 1795312704, "database_system_identifier": "7710809278050705596", "patroni": {"version": "4.1.5", "scope": "pgha-bench", "name": "node1"}}"#
    );
}

#[test]
fn cluster_json_matches_observed() {
    let c = observed_cluster();
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert_eq!(
        serde_json::to_string(&cluster_json(&c, "pgha-bench")).unwrap(),
        canonical(CLUSTER)
    );
    assert_eq!(
        serde_json::to_string(&cluster_json(&scheduled_cluster(), "pgha-bench")).unwrap(),
        canonical(SCHEDULED_CLUSTER)
    );
}

#[tokio::test]
async fn get_cluster_on_leader_and_replica() {
    for status in [leader(), replica()] {
        let a = get(status, "/cluster").await;
        assert_eq!(a.code, StatusCode::OK);
        assert_eq!(a.content_type.as_deref(), Some("application/json"));
        assert_eq!(canonical(&a.body), canonical(CLUSTER));
    }
    let no_view = NodeStatus {
        cluster: None,
        ..replica()
    };
    assert_eq!(
        get(no_view, "/cluster").await.body,
        r#"{"members": [], "scope": "pgha-bench"}"#
    );
}

#[test]
fn cluster_json_lags_pause_sync_roles_and_unknown_positions() {
    let mut keys = observed_keys();
    keys.retain(|k| k.key != "config" && k.key != "status" && k.key != "members/node2");
    keys.push(kv("config", r#"{"pause":true,"synchronous_mode":true}"#));
    keys.push(kv(
        "sync",
        r#"{"leader":"node3","quorum":0,"sync_standby":"node1"}"#,
    ));
    keys.push(kv("status", r#"{"optime":67109000}"#));
    keys.push(kv(
        "members/node2",
        r#"{"conn_url":"postgres://db2/postgres","api_url":"http://db2:8008/patroni","state":"stopped","role":"replica","xlog_location":67108000,"pending_restart":true,"tags":{"nofailover":true}}"#,
    ));
    let c = Cluster::from_keys(&keys);
    let v = cluster_json(&c, "s");
    assert_eq!(v["pause"], true);
    assert_eq!(v["members"][0]["role"], "sync_standby");
    assert_eq!(v["members"][0]["lag"], 67109000 - 67108864);
    assert_eq!(
        serde_json::to_string(&v["members"][1]).unwrap(),
        r#"{"name":"node2","role":"replica","state":"stopped","api_url":"http://db2:8008/patroni","host":"db2","pending_restart":true,"tags":{"nofailover":true},"receive_lsn":"unknown","receive_lag":"unknown","replay_lsn":"unknown","replay_lag":"unknown","lag":1000,"lsn":"0/3FFFCA0"}"#
    );
    // Keys order: members, pause, scope.
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["members", "pause", "scope"]);
}

#[tokio::test]
async fn history_and_config() {
    let a = get(leader(), "/history").await;
    assert_eq!((a.code, a.body.as_str()), (StatusCode::OK, "[]"));
    let with_history = NodeStatus {
        cluster: Some(scheduled_cluster()),
        ..leader()
    };
    let a = get(with_history, "/history").await;
    assert_eq!(
        a.body,
        r#"[[1, 67109200, "no recovery target specified", "2026-11-22T01:58:24.372054+00:00", "node1"]]"#
    );
    let no_view = NodeStatus {
        cluster: None,
        ..leader()
    };
    assert_eq!(get(no_view.clone(), "/history").await.body, "[]");

    let a = get(replica(), "/config").await;
    assert_eq!(a.code, StatusCode::OK);
    assert_eq!(a.content_type.as_deref(), Some("application/json"));
    assert_eq!(canonical(&a.body), CONFIG);

    let a = get(no_view, "/config").await;
    assert_eq!(a.code, StatusCode::BAD_GATEWAY);
    assert!(
        a.body.contains("<p>Message: Bad Gateway.</p>"),
        "{}",
        a.body
    );
    let mut keys = observed_keys();
    keys.retain(|k| k.key != "config");
    let no_config = NodeStatus {
        cluster: Some(Cluster::from_keys(&keys)),
        ..leader()
    };
    assert_eq!(
        get(no_config, "/config").await.code,
        StatusCode::BAD_GATEWAY
    );
}

#[tokio::test]
async fn failsafe_and_metrics() {
    let a = get(leader(), "/failsafe").await;
    assert_eq!(a.code, StatusCode::BAD_GATEWAY);
    assert_eq!(a.content_type.as_deref(), Some("text/html;charset=utf-8"));
    assert!(a
        .body
        .contains("Error code explanation: 502 - Invalid responses from another server/proxy."));

    let mut keys = observed_keys();
    keys.retain(|k| k.key != "config");
    keys.push(kv("config", r#"{"failsafe_mode":true}"#));
    keys.push(kv(
        "failsafe",
        r#"{"node3":"http://127.0.0.1:8023/patroni"}"#,
    ));
    let s = NodeStatus {
        cluster: Some(Cluster::from_keys(&keys)),
        ..leader()
    };
    let a = get(s, "/failsafe").await;
    assert_eq!(a.code, StatusCode::OK);
    assert_eq!(a.body, r#"{"node3": "http://127.0.0.1:8023/patroni"}"#);

    // As Patroni, GET /failsafe shows a `failsafe` key whatever `failsafe_mode` says (one left
    // from a time it was on); a value that is not an object of names is no key.
    let mut keys = observed_keys();
    keys.push(kv(
        "failsafe",
        r#"{"node1":"http://127.0.0.1:8021/patroni"}"#,
    ));
    let s = NodeStatus {
        cluster: Some(Cluster::from_keys(&keys)),
        ..replica()
    };
    let a = get(s, "/failsafe").await;
    assert_eq!(a.code, StatusCode::OK);
    assert_eq!(a.body, r#"{"node1": "http://127.0.0.1:8021/patroni"}"#);
    let mut keys = observed_keys();
    keys.push(kv("failsafe", "[1, 2]"));
    let s = NodeStatus {
        cluster: Some(Cluster::from_keys(&keys)),
        ..replica()
    };
    assert_eq!(get(s, "/failsafe").await.code, StatusCode::BAD_GATEWAY);

    let a = get(replica(), "/metrics").await;
    assert_eq!(a.code, StatusCode::OK);
    assert_eq!(a.content_type.as_deref(), Some("text/plain"));
    assert!(a
        .body
        .contains("patroni_postgres_streaming{scope=\"pgha-bench\",name=\"node1\"} 1\n"));
}
