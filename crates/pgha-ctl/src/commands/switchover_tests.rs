use super::*;
use crate::commands::testutil::{ctx, member_json, MemStore};
use crate::rest::tests::stub_agent;
use crate::term::ScriptedTerm;

fn store(leader_api: &str) -> MemStore {
    MemStore::new(&[
        ("initialize", "7710809278050705596"),
        ("leader", "node2"),
        (
            "members/node1",
            &member_json(5451, "replica", "http://127.0.0.1:9/patroni"),
        ),
        ("members/node2", &member_json(5452, "primary", leader_api)),
        (
            "members/node3",
            &member_json(5453, "replica", "http://127.0.0.1:9/patroni"),
        ),
    ])
}

#[tokio::test]
async fn interactive_switchover_prompts_like_patronictl() {
    let (api, seen) = stub_agent(|_, path, _| {
        assert_eq!(path, "/switchover");
        (200, "Successfully switched over to \"node1\"".into())
    })
    .await;
    let s = store(&api);
    let mut term = ScriptedTerm::new(&["", "node1", "", "y"]);
    run(
        &mut ctx(&mut term),
        &s,
        "pgha-bench",
        Action::Switchover,
        Request::default(),
    )
    .await
    .unwrap();
    let out = &term.output;
    assert!(
        out.starts_with("Current cluster topology\n+ Cluster: pgha-bench (7710809278050705596) "),
        "{out}"
    );
    let prompts = format!(
        "Primary [node2]: Candidate ['node1', 'node3'] []: When should the switchover take place (e.g. {} )  [now]: \
         Are you sure you want to switchover cluster pgha-bench, demoting current leader node2? [y/N]: ",
        next_hour()
    );
    assert!(out.contains(&prompts), "{out}");
    assert!(
        out.contains(" Successfully switched over to \"node1\"\n+ Cluster: pgha-bench"),
        "{out}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].3, r#"{"candidate": "node1", "leader": "node2"}"#);
}

#[tokio::test]
async fn forced_scheduled_switchover_and_failure_details() {
    let (api, seen) = stub_agent(|_, _, body| {
        if body.contains("scheduled_at") {
            (202, "Switchover scheduled".into())
        } else {
            (412, "leader name does not match".into())
        }
    })
    .await;
    let s = store(&api);
    let mut term = ScriptedTerm::new(&[]);
    let req = Request {
        leader: Some("node2".into()),
        candidate: Some("node3".into()),
        scheduled: Some("2030-09-13T18:00-03:00".into()),
        force: true,
    };
    run(&mut ctx(&mut term), &s, "b", Action::Switchover, req)
        .await
        .unwrap();
    assert!(
        term.output.contains(" Switchover scheduled\n"),
        "{}",
        term.output
    );
    assert_eq!(
        seen.lock().unwrap()[0].3,
        r#"{"candidate": "node3", "leader": "node2", "scheduled_at": "2030-09-13T18:00:00-03:00"}"#
    );

    let mut term = ScriptedTerm::new(&[]);
    let req = Request {
        candidate: Some("node3".into()),
        force: true,
        ..Request::default()
    };
    run(&mut ctx(&mut term), &s, "b", Action::Switchover, req)
        .await
        .unwrap();
    assert!(term
        .output
        .ends_with("Switchover failed, details: 412, leader name does not match\n"));
}

#[tokio::test]
async fn local_validation_messages() {
    let s = store("http://127.0.0.1:9/patroni");
    let check = |req: Request, action: Action, want: &'static str| {
        let s = &s;
        async move {
            let mut term = ScriptedTerm::new(&[]);
            let err = run(&mut ctx(&mut term), s, "b", action, req)
                .await
                .unwrap_err();
            assert_eq!(err.to_string(), want);
        }
    };
    let forced = |leader: Option<&str>, candidate: Option<&str>| Request {
        leader: leader.map(str::to_string),
        candidate: candidate.map(str::to_string),
        scheduled: None,
        force: true,
    };
    check(
        forced(Some("node1"), None),
        Action::Switchover,
        "Member node1 is not the leader of cluster b",
    )
    .await;
    check(
        forced(None, Some("node2")),
        Action::Switchover,
        "Member node2 is already the leader of cluster b",
    )
    .await;
    check(
        forced(None, Some("nodeX")),
        Action::Failover,
        "Member nodeX does not exist in cluster b or is tagged as nofailover",
    )
    .await;
    check(
        forced(None, None),
        Action::Failover,
        "Failover could be performed only to a specific candidate",
    )
    .await;

    let lonely = MemStore::new(&[
        ("leader", "node2"),
        (
            "members/node2",
            &member_json(5452, "primary", "http://127.0.0.1:9/patroni"),
        ),
    ]);
    let mut term = ScriptedTerm::new(&[]);
    let err = run(
        &mut ctx(&mut term),
        &lonely,
        "b",
        Action::Switchover,
        forced(None, None),
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "No candidates found to switchover to");

    let mut term = ScriptedTerm::new(&["node1", "n"]);
    let err = run(
        &mut ctx(&mut term),
        &s,
        "b",
        Action::Failover,
        Request::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "Aborting failover");
    assert!(term.output.ends_with(
        "Candidate ['node1', 'node3'] []: Are you sure you want to failover cluster b, demoting current leader node2? [y/N]: "
    ));
}

#[tokio::test]
async fn leaderless_failover_goes_to_the_candidate() {
    let (api, seen) =
        stub_agent(|_, _, _| (200, "Successfully failed over to \"node3\"".into())).await;
    let s = MemStore::new(&[
        (
            "members/node1",
            &member_json(5451, "replica", "http://127.0.0.1:9/patroni"),
        ),
        ("members/node3", &member_json(5453, "replica", &api)),
    ]);
    let mut term = ScriptedTerm::new(&["node3", "y"]);
    run(
        &mut ctx(&mut term),
        &s,
        "b",
        Action::Failover,
        Request::default(),
    )
    .await
    .unwrap();
    assert!(term
        .output
        .contains("Are you sure you want to failover cluster b? [y/N]: "));
    assert!(term
        .output
        .contains(" Successfully failed over to \"node3\"\n"));
    assert_eq!(seen.lock().unwrap()[0].1, "/failover");
    assert_eq!(seen.lock().unwrap()[0].3, r#"{"candidate": "node3"}"#);
}

#[tokio::test]
async fn unreachable_leader_falls_back_to_the_failover_key() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/patroni", listener.local_addr().unwrap());
    drop(listener);
    let s = store(&dead);
    let mut term = ScriptedTerm::new(&[]);
    let req = Request {
        candidate: Some("node1".into()),
        force: true,
        ..Request::default()
    };
    run(&mut ctx(&mut term), &s, "b", Action::Switchover, req)
        .await
        .unwrap();
    assert!(term
        .output
        .contains(" Could not switchover using Patroni api, falling back to DCS\n"));
    assert_eq!(
        s.get("failover").as_deref(),
        Some(r#"{"leader":"node2","member":"node1"}"#)
    );
}

#[test]
fn synchronous_candidates() {
    let c = crate::commands::members::tests::cluster(&[(
        "sync",
        r#"{"leader":"node2","sync_standby":"node1"}"#,
    )]);
    assert!(!is_async_candidate(&c, "node1"));
    assert!(!is_async_candidate(&c, "NODE2"));
    assert!(is_async_candidate(&c, "node3"));
}
