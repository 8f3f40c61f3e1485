//! `POST /switchover`, `POST /failover`, `DELETE /switchover` against a fake agent.

use std::sync::Arc;

use axum::http::Method;
use pgha_types::Failover;

use super::fake::*;
use crate::NodeStatus;

const PAUSED: &str = r#"{"ttl":20,"loop_wait":1,"retry_timeout":3,"pause":true}"#;

fn admin_for(clusters: Vec<pgha_types::Cluster>) -> Arc<FakeAdmin> {
    Arc::new(FakeAdmin::new(clusters))
}

fn healthy() -> Arc<FakeAdmin> {
    admin_for(vec![three_nodes(Some("node3"), &[])])
}

async fn post(admin: &Arc<FakeAdmin>, path: &str, body: &str) -> Answer {
    send(admin, Method::POST, path, Some(body)).await
}

fn failover(leader: Option<&str>, member: Option<&str>, at: Option<&str>) -> Option<Failover> {
    Some(Failover {
        leader: leader.map(String::from),
        member: member.map(String::from),
        scheduled_at: at.map(String::from),
    })
}

#[tokio::test]
async fn without_an_agent_answers_503() {
    let body = r#"{"leader": "node3"}"#;
    for (method, path, body) in [
        (Method::POST, "/switchover", Some(body)),
        (Method::POST, "/failover", Some(r#"{"candidate": "node1"}"#)),
        (Method::DELETE, "/switchover", None),
    ] {
        let a = send_with(None, NodeStatus::default(), method, path, body).await;
        expect(&a, 503, "not supported");
    }
}

#[tokio::test]
async fn request_checks_in_patroni_order() {
    let admin = healthy();
    let cases = [
        ("/switchover", r#"{"candidate": "node1"}"#, 400, "Switchover could be performed only from a specific leader"),
        ("/switchover", r#"{"leader": "", "candidate": "node1"}"#, 400, "Switchover could be performed only from a specific leader"),
        ("/failover", r#"{"leader": "node3"}"#, 400, "Failover could be performed only to a specific candidate"),
        ("/failover", r#"{"candidate": null}"#, 400, "Failover could be performed only to a specific candidate"),
        ("/failover", r#"{"candidate": "node1", "scheduled_at": "2099-01-01T00:00:00+00:00"}"#, 400, "Failover can't be scheduled"),
        ("/switchover", r#"{"leader": "node3", "candidate": "node3"}"#, 400, "Switchover target and source are the same"),
        ("/failover", r#"{"leader": "node3", "candidate": "node3"}"#, 400, "Switchover target and source are the same"),
        ("/switchover", r#"{"leader": "node3", "scheduled_at": "next week"}"#, 422, "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"),
        ("/switchover", r#"{"leader": "node3", "scheduled_at": 5}"#, 422, "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"),
        ("/switchover", r#"{"leader": "node3", "scheduled_at": "2099-01-01T00:00:00"}"#, 400, "Timezone information is mandatory for the scheduled switchover"),
        ("/switchover", r#"{"leader": "node3", "scheduled_at": "2001-01-01T00:00:00+00:00"}"#, 422, "Cannot schedule switchover in the past"),
        ("/switchover", r#"{"leader": "node1"}"#, 412, "leader name does not match"),
        ("/switchover", r#"{"leader": "node3", "candidate": "node9"}"#, 412, "candidate does not exists"),
        ("/switchover", r#"{"leader": "node3", "member": "node9"}"#, 412, "candidate does not exists"),
        ("/failover", r#"{"candidate": "node9"}"#, 412, "candidate does not exists"),
    ];
    for (path, body, code, text) in cases {
        let a = post(&admin, path, body).await;
        assert_eq!(
            (a.code.as_u16(), a.body.as_str()),
            (code, text),
            "{path} {body}"
        );
    }
    assert!(admin.calls().failover_writes.is_empty());
}

#[tokio::test]
async fn paused_cluster() {
    let admin = admin_for(vec![three_nodes(
        Some("node3"),
        &[("config", PAUSED.into())],
    )]);
    let a = post(
        &admin,
        "/switchover",
        r#"{"leader": "node3", "candidate": "node1", "scheduled_at": "2099-01-01T00:00:00+00:00"}"#,
    )
    .await;
    expect(&a, 400, "Can't schedule switchover in the paused state");
    let a = post(&admin, "/switchover", r#"{"leader": "node3"}"#).await;
    expect(
        &a,
        400,
        "Switchover is possible only to a specific candidate in a paused state",
    );
    assert!(admin.calls().failover_writes.is_empty());
}

#[tokio::test]
async fn no_good_candidates() {
    let tags = |t: &str| member_key("running", &format!(r#","tags":{t}"#));
    let only_leader = pgha_types::Cluster {
        members: three_nodes(Some("node3"), &[])
            .members
            .into_iter()
            .filter(|m| m.name == "node3")
            .collect(),
        ..three_nodes(Some("node3"), &[])
    };
    let a = post(
        &admin_for(vec![only_leader]),
        "/switchover",
        r#"{"leader": "node3"}"#,
    )
    .await;
    expect(
        &a,
        412,
        "switchover is not possible: cluster does not have members except leader",
    );

    let sick = three_nodes(
        Some("node3"),
        &[
            ("members/node1", member_key("stopped", "")),
            ("members/node2", tags(r#"{"nofailover": true}"#)),
        ],
    );
    let admin = admin_for(vec![sick]);
    let a = post(&admin, "/switchover", r#"{"leader": "node3"}"#).await;
    expect(
        &a,
        412,
        "switchover is not possible: no good candidates have been found",
    );
    let a = post(
        &admin,
        "/switchover",
        r#"{"leader": "node3", "candidate": "node1"}"#,
    )
    .await;
    expect(
        &a,
        412,
        "switchover is not possible: no good candidates have been found",
    );
    let a = post(&admin, "/failover", r#"{"candidate": "node2"}"#).await;
    expect(
        &a,
        412,
        "failover is not possible: no good candidates have been found",
    );
    assert!(admin.calls().failover_writes.is_empty());

    let prio = three_nodes(
        Some("node3"),
        &[
            ("members/node1", tags(r#"{"failover_priority": 0}"#)),
            ("members/node2", tags(r#"{"nofailover": "on"}"#)),
        ],
    );
    let a = post(
        &admin_for(vec![prio]),
        "/switchover",
        r#"{"leader": "node3"}"#,
    )
    .await;
    expect(
        &a,
        412,
        "switchover is not possible: no good candidates have been found",
    );
}

#[tokio::test]
async fn synchronous_mode_restricts_candidates() {
    let config = r#"{"ttl":20,"loop_wait":1,"retry_timeout":3,"synchronous_mode":true}"#;
    let sync = r#"{"leader":"node3","sync_standby":"node2"}"#;
    let admin = admin_for(vec![three_nodes(
        Some("node3"),
        &[("config", config.into()), ("sync", sync.into())],
    )]);
    let a = post(
        &admin,
        "/switchover",
        r#"{"leader": "node3", "candidate": "node1"}"#,
    )
    .await;
    expect(&a, 412, "candidate name does not match with sync_standby");
    let admin = admin_for(vec![three_nodes(
        Some("node3"),
        &[("config", config.into())],
    )]);
    let a = post(&admin, "/switchover", r#"{"leader": "node3"}"#).await;
    expect(
        &a,
        412,
        "switchover is not possible: can not find sync_standby",
    );
}

#[tokio::test(start_paused = true)]
async fn switchover_succeeds_when_the_candidate_takes_over() {
    let before = three_nodes(
        Some("node3"),
        &[("failover", r#"{"leader":"node3","member":"node1"}"#.into())],
    );
    let admin = admin_for(vec![
        three_nodes(Some("node3"), &[]),
        before.clone(),
        before,
        three_nodes(Some("node1"), &[]),
    ]);
    let a = post(
        &admin,
        "/switchover",
        r#"{"leader": "node3", "candidate": "node1"}"#,
    )
    .await;
    expect(&a, 200, "Successfully switched over to \"node1\"");
    let calls = admin.calls();
    assert_eq!(
        calls.failover_writes,
        vec![failover(Some("node3"), Some("node1"), None)]
    );
    assert_eq!(calls.loads, 4);
}

#[tokio::test(start_paused = true)]
async fn switchover_to_anyone_and_to_someone_else() {
    let admin = admin_for(vec![
        three_nodes(Some("node3"), &[]),
        three_nodes(Some("node2"), &[]),
    ]);
    let a = post(&admin, "/switchover", r#"{"leader": "node3"}"#).await;
    expect(&a, 200, "Successfully switched over to \"node2\"");
    assert_eq!(
        admin.calls().failover_writes,
        vec![failover(Some("node3"), None, None)]
    );

    let admin = admin_for(vec![
        three_nodes(Some("node3"), &[]),
        three_nodes(Some("node2"), &[]),
    ]);
    let a = post(
        &admin,
        "/switchover",
        r#"{"leader": "node3", "member": "node1"}"#,
    )
    .await;
    expect(&a, 200, "Switched over to \"node2\" instead of \"node1\"");

    let admin = admin_for(vec![
        three_nodes(Some("node3"), &[]),
        three_nodes(Some("node2"), &[]),
    ]);
    let a = post(&admin, "/failover", r#"{"candidate": "node1"}"#).await;
    expect(&a, 200, "Failed over to \"node2\" instead of \"node1\"");
}

#[tokio::test(start_paused = true)]
async fn failover_writes_only_the_member() {
    let pending = three_nodes(
        Some("node3"),
        &[("failover", r#"{"member":"node1"}"#.into())],
    );
    let admin = admin_for(vec![
        three_nodes(Some("node3"), &[]),
        pending,
        three_nodes(Some("node1"), &[]),
    ]);
    let a = post(&admin, "/failover", r#"{"candidate": "node1"}"#).await;
    expect(&a, 200, "Successfully failed over to \"node1\"");
    assert_eq!(
        admin.calls().failover_writes,
        vec![failover(None, Some("node1"), None)]
    );

    // With a leader it is a switchover.
    let admin = admin_for(vec![
        three_nodes(Some("node3"), &[]),
        three_nodes(Some("node1"), &[]),
    ]);
    let a = post(
        &admin,
        "/failover",
        r#"{"leader": "node3", "candidate": "node1"}"#,
    )
    .await;
    expect(&a, 200, "Successfully switched over to \"node1\"");
    assert_eq!(
        admin.calls().failover_writes,
        vec![failover(Some("node3"), Some("node1"), None)]
    );
}

#[tokio::test(start_paused = true)]
async fn leaderless_failover_skips_candidate_health() {
    let stopped = [("members/node1", member_key("stopped", ""))];
    let admin = admin_for(vec![
        three_nodes(None, &stopped),
        three_nodes(Some("node1"), &[]),
    ]);
    let a = post(&admin, "/failover", r#"{"candidate": "node1"}"#).await;
    expect(&a, 200, "Successfully failed over to \"node1\"");
    assert_eq!(
        admin.calls().failover_writes,
        vec![failover(None, Some("node1"), None)]
    );
    // Still an existing member.
    let a = post(&admin, "/failover", r#"{"candidate": "node7"}"#).await;
    expect(&a, 412, "candidate does not exists");
}

#[tokio::test(start_paused = true)]
async fn failover_key_emptied_means_failed() {
    // As observed: a failover to the current leader is refused by the loop, which empties the key.
    let emptied = three_nodes(Some("node3"), &[("failover", "{}".into())]);
    let admin = admin_for(vec![three_nodes(Some("node3"), &[]), emptied]);
    let a = post(&admin, "/failover", r#"{"candidate": "node3"}"#).await;
    expect(&a, 503, "Failover failed");

    let admin = admin_for(vec![three_nodes(Some("node3"), &[])]);
    let a = post(
        &admin,
        "/switchover",
        r#"{"leader": "node3", "candidate": "node2"}"#,
    )
    .await;
    expect(&a, 503, "Switchover failed");
}

#[tokio::test(start_paused = true)]
async fn unknown_after_the_poll_budget() {
    let pending = three_nodes(
        Some("node3"),
        &[("failover", r#"{"leader":"node3"}"#.into())],
    );
    let started = tokio::time::Instant::now();
    let admin = admin_for(vec![pending]);
    let a = post(&admin, "/switchover", r#"{"leader": "node3"}"#).await;
    expect(&a, 503, "Switchover status unknown");
    // 2 * max(10, loop_wait=1) s, polled every 0.5 s, after the validation read.
    assert_eq!(started.elapsed().as_secs(), 20);
    assert_eq!(admin.calls().loads, 41);

    // A longer loop_wait stretches the budget; read errors are retried until then.
    let mut fake = FakeAdmin::scripted(vec![
        Ok(three_nodes(Some("node3"), &[])),
        Err("etcd down".into()),
    ]);
    fake.loop_wait = 15;
    let admin = Arc::new(fake);
    let started = tokio::time::Instant::now();
    let a = post(&admin, "/failover", r#"{"candidate": "node1"}"#).await;
    expect(&a, 503, "Failover status unknown");
    assert_eq!(started.elapsed().as_secs(), 30);
}

#[tokio::test]
async fn scheduled_switchover_is_written_in_utc() {
    let admin = healthy();
    let a = post(
        &admin,
        "/switchover",
        r#"{"leader": "node3", "candidate": "node1", "scheduled_at": "2099-01-01T01:30:00+01:00"}"#,
    )
    .await;
    expect(&a, 202, "Switchover scheduled");
    assert_eq!(
        admin.calls().failover_writes,
        vec![failover(
            Some("node3"),
            Some("node1"),
            Some("2099-01-01T00:30:00+00:00")
        )]
    );
}

#[tokio::test]
async fn write_failure_and_dcs_failure() {
    let mut fake = FakeAdmin::new(vec![three_nodes(Some("node3"), &[])]);
    fake.write_error = true;
    let admin = Arc::new(fake);
    let a = post(
        &admin,
        "/switchover",
        r#"{"leader": "node3", "candidate": "node1"}"#,
    )
    .await;
    expect(&a, 503, "failed to write failover key into DCS");
    let a = post(
        &admin,
        "/switchover",
        r#"{"leader": "node3", "scheduled_at": "2099-01-01T00:00:00Z"}"#,
    )
    .await;
    expect(&a, 503, "failed to write failover key into DCS");

    let admin = Arc::new(FakeAdmin::scripted(vec![Err("etcd down".into())]));
    let a = post(&admin, "/switchover", r#"{"leader": "node3"}"#).await;
    assert_eq!(a.code.as_u16(), 503);
    assert!(a.body.contains("Error code: 503"), "{}", a.body);
}

#[tokio::test]
async fn delete_scheduled_switchover() {
    let scheduled =
        r#"{"leader":"node3","member":"node1","scheduled_at":"2099-01-01T00:00:00+00:00"}"#;
    let admin = admin_for(vec![three_nodes(
        Some("node3"),
        &[("failover", scheduled.into())],
    )]);
    let a = send(&admin, Method::DELETE, "/switchover", None).await;
    expect(&a, 200, "scheduled switchover deleted");
    assert_eq!(admin.calls().failover_writes, vec![None]);

    for cluster in [
        three_nodes(Some("node3"), &[]),
        three_nodes(Some("node3"), &[("failover", "{}".into())]),
        three_nodes(
            Some("node3"),
            &[("failover", r#"{"leader":"node3","member":"node1"}"#.into())],
        ),
    ] {
        let admin = admin_for(vec![cluster]);
        let a = send(&admin, Method::DELETE, "/switchover", None).await;
        expect(&a, 404, "no switchover is scheduled");
        assert!(admin.calls().failover_writes.is_empty());
    }

    let mut fake = FakeAdmin::new(vec![three_nodes(
        Some("node3"),
        &[("failover", scheduled.into())],
    )]);
    fake.write_error = true;
    let a = send(&Arc::new(fake), Method::DELETE, "/switchover", None).await;
    assert_eq!(a.code.as_u16(), 409);
    assert!(a.body.contains("Error code: 409"), "{}", a.body);
}
