use super::*;
use crate::commands::testutil::{ctx, member_json, MemStore};
use crate::rest::tests::stub_agent;
use crate::term::ScriptedTerm;

/// node1 (replica) and node2 (leader), both served by the stub at `api`.
fn store(api: &str, extra: &[(&str, &str)]) -> MemStore {
    let s = MemStore::new(&[
        ("initialize", "1"),
        ("config", r#"{"loop_wait":3}"#),
        ("leader", "node2"),
        ("members/node1", &member_json(5451, "replica", api)),
        ("members/node2", &member_json(5452, "primary", api)),
    ]);
    for (k, v) in extra {
        s.put(k, v);
    }
    s
}

fn restart_req(members: &[&str]) -> RestartRequest {
    RestartRequest {
        members: members.iter().map(|m| m.to_string()).collect(),
        role: RoleArg::Any,
        any: false,
        scheduled: None,
        pg_version: None,
        pending: false,
        timeout: None,
        force: false,
    }
}

#[tokio::test]
async fn restart_prompts_in_patronictl_order() {
    let (api, seen) = stub_agent(|_, _, body| {
        if body.contains("9.6.1") {
            (503, "restart conditions are not satisfied".into())
        } else {
            (200, "restarted successfully".into())
        }
    })
    .await;
    let s = store(&api, &[]);
    let mut term = ScriptedTerm::new(&["", "y", ""]);
    restart(&mut ctx(&mut term), &s, "b", restart_req(&["node1"]))
        .await
        .unwrap();
    let want = format!(
        "When should the restart take place (e.g. {})  [now]: Are you sure you want to restart members node1? [y/N]: \
         Restart if the PostgreSQL version is less than provided (e.g. 9.5.2)  []: Success: restart on member node1\n",
        next_hour()
    );
    assert!(
        term.output.starts_with("+ Cluster: b (1) "),
        "{}",
        term.output
    );
    assert!(term.output.ends_with(&want), "{}", term.output);
    assert_eq!(seen.lock().unwrap()[0].3, "{}");

    let mut term = ScriptedTerm::new(&[]);
    let mut r = restart_req(&[]);
    r.force = true;
    r.pg_version = Some("9.6.1".into());
    r.timeout = Some("30".into());
    restart(&mut ctx(&mut term), &s, "b", r).await.unwrap();
    assert!(term.output.ends_with(
        "Failed: restart for member node1, status code=503, (restart conditions are not satisfied)\n\
         Failed: restart for member node2, status code=503, (restart conditions are not satisfied)\n"
    ));
    assert_eq!(
        seen.lock().unwrap()[1].3,
        r#"{"postgres_version": "9.6.1", "timeout": "30"}"#
    );
}

#[tokio::test]
async fn scheduled_and_pending_restarts() {
    let (api, seen) = stub_agent(|m, _, _| match m {
        "DELETE" => (200, "scheduled restart deleted".into()),
        _ => (202, "Restart scheduled".into()),
    })
    .await;
    let pending = member_json(5451, "replica", &api).replace(
        r#""timeline":1"#,
        r#""timeline":1,"pending_restart":true,"scheduled_restart":{"schedule":"2030-01-01T00:00:00+00:00"}"#,
    );
    let s = store(&api, &[("members/node1", &pending)]);
    let mut term = ScriptedTerm::new(&[]);
    let mut r = restart_req(&[]);
    r.force = true;
    r.scheduled = Some("2030-01-02T03:04:05+00:00".into());
    restart(&mut ctx(&mut term), &s, "b", r).await.unwrap();
    assert!(term.output.ends_with(
        "Success: restart scheduled on member node1\nSuccess: restart scheduled on member node2\n"
    ));
    {
        let seen = seen.lock().unwrap();
        // node1 had a scheduled restart: flushed first (silently), then scheduled again.
        assert_eq!(
            (seen[0].0.as_str(), seen[0].1.as_str()),
            ("DELETE", "/restart")
        );
        assert_eq!(seen[1].3, r#"{"schedule": "2030-01-02T03:04:05+00:00"}"#);
        assert_eq!(seen.len(), 3);
    }

    let mut term = ScriptedTerm::new(&["now", "y", "15.1"]);
    let mut r = restart_req(&[]);
    r.pending = true;
    restart(&mut ctx(&mut term), &s, "b", r).await.unwrap();
    assert!(term
        .output
        .contains("Are you sure you want to restart members node1? [y/N]: "));
    assert_eq!(
        seen.lock().unwrap()[3].3,
        r#"{"restart_pending": true, "postgres_version": "15.1"}"#
    );

    let paused = store(&api, &[("config", r#"{"pause":true}"#)]);
    let mut term = ScriptedTerm::new(&[]);
    let mut r = restart_req(&[]);
    r.force = true;
    r.scheduled = Some("2030-01-02T03:04".into());
    let err = restart(&mut ctx(&mut term), &paused, "b", r)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Can't schedule restart in the paused state"
    );

    let mut term = ScriptedTerm::new(&["", "y", "10"]);
    let err = restart(&mut ctx(&mut term), &s, "b", restart_req(&["node2"]))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 10"
    );
}

#[tokio::test]
async fn reload_reinit_and_flush() {
    let (api, seen) = stub_agent(|m, path, _| match (m, path) {
        ("POST", "/reload") => (202, "reload scheduled".into()),
        ("POST", "/reinitialize") => (200, "reinitialize started".into()),
        ("DELETE", "/switchover") => (404, "no switchover is scheduled".into()),
        _ => (503, "nope".into()),
    })
    .await;
    let s = store(&api, &[]);
    let mut term = ScriptedTerm::new(&[]);
    reload(&mut ctx(&mut term), &s, "b", &[], RoleArg::Any, true)
        .await
        .unwrap();
    assert!(term.output.ends_with(
        "Reload request received for member node1 and will be processed within 3 seconds\n\
         Reload request received for member node2 and will be processed within 3 seconds\n"
    ));

    let mut term = ScriptedTerm::new(&["y"]);
    reinit(
        &mut ctx(&mut term),
        &s,
        "b",
        &["node1".into()],
        false,
        false,
        false,
    )
    .await
    .unwrap();
    assert!(term.output.ends_with(
        "Are you sure you want to reinitialize members node1? [y/N]: Success: reinitialize for member node1\n"
    ));
    assert_eq!(
        seen.lock().unwrap().last().unwrap().3,
        r#"{"force": false, "from_leader": false}"#
    );

    let mut term = ScriptedTerm::new(&[]);
    flush(
        &mut ctx(&mut term),
        &s,
        "b",
        &[],
        FlushTarget::Switchover,
        RoleArg::Any,
        true,
    )
    .await
    .unwrap();
    assert_eq!(term.output, "No pending scheduled switchover\n");

    let scheduled = store(
        &api,
        &[(
            "failover",
            r#"{"leader":"node2","member":"node1","scheduled_at":"2030-01-01T00:00:00+00:00"}"#,
        )],
    );
    let mut term = ScriptedTerm::new(&[]);
    flush(
        &mut ctx(&mut term),
        &scheduled,
        "b",
        &[],
        FlushTarget::Switchover,
        RoleArg::Any,
        true,
    )
    .await
    .unwrap();
    assert_eq!(term.output, "Failed: no switchover is scheduled\n");

    let mut term = ScriptedTerm::new(&[]);
    flush(
        &mut ctx(&mut term),
        &s,
        "b",
        &[],
        FlushTarget::Restart,
        RoleArg::Any,
        true,
    )
    .await
    .unwrap();
    assert!(term.output.ends_with(
        "No scheduled restart for member node1\nNo scheduled restart for member node2\n"
    ));
}

#[tokio::test]
async fn unreachable_members_fail_the_command_after_the_others() {
    let (api, _) = stub_agent(|_, _, _| (202, "reload scheduled".into())).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/patroni", listener.local_addr().unwrap());
    drop(listener);
    let s = store(
        &api,
        &[("members/node1", &member_json(5451, "replica", &dead))],
    );
    let mut term = ScriptedTerm::new(&[]);
    let err = reload(&mut ctx(&mut term), &s, "b", &[], RoleArg::Any, true)
        .await
        .unwrap_err();
    assert!(err.downcast_ref::<crate::term::AlreadyReported>().is_some());
    assert!(term.output.ends_with(
        "Reload request received for member node2 and will be processed within 3 seconds\n"
    ));
}
