//! failsafe_mode rules: the key the leader keeps, the primary's decision without the DCS, and
//! the replicas' side (a pinging leader is still the leader; unlisted members never race).

use std::collections::BTreeMap;

use pgha_types::{Cluster, ClusterPolicy, KeyValue};

use crate::failsafe::{effective_cluster, is_active};
use crate::*;

const SYSID: &str = "7710809278050705596";

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        lease: 1,
        mod_revision: 1,
    }
}

fn member(name: &str, role: &str, port: u16) -> KeyValue {
    kv(
        &format!("members/{name}"),
        &format!(
            r#"{{"conn_url":"postgres://127.0.0.1:{port}/postgres","api_url":"http://127.0.0.1:8{port}/patroni","state":"running","role":"{role}","xlog_location":1000}}"#
        ),
    )
}

fn topology(names: &[&str]) -> BTreeMap<String, String> {
    names
        .iter()
        .map(|n| (n.to_string(), format!("http://{n}:8008/patroni")))
        .collect()
}

/// pg1..pg3, `leader` holding the key, optionally a `failsafe` key.
fn cluster(leader: Option<&str>, failsafe: Option<&BTreeMap<String, String>>) -> Cluster {
    let mut keys = vec![
        kv("initialize", SYSID),
        kv("config", r#"{"ttl":10,"failsafe_mode":true}"#),
        member("pg1", "primary", 5431),
        member("pg2", "replica", 5432),
        member("pg3", "replica", 5433),
        kv("status", r#"{"optime":1000}"#),
    ];
    if let Some(l) = leader {
        keys.push(kv("leader", l));
    }
    if let Some(f) = failsafe {
        let body: Vec<String> = f.iter().map(|(k, v)| format!(r#""{k}":"{v}""#)).collect();
        keys.push(kv("failsafe", &format!("{{{}}}", body.join(","))));
    }
    Cluster::from_keys(&keys)
}

fn running(in_recovery: bool) -> LocalPg {
    LocalPg::Initialized {
        system_id: SYSID.into(),
        process: PgProcess::Running(PgRunning {
            in_recovery,
            timeline: 1,
            wal_position: 1000,
            streaming: in_recovery,
            pending_restart: false,
            server_version: 150018,
            below_primary: Vec::new(),
            standbys: Vec::new(),
            history: Vec::new(),
        }),
        control: None,
    }
}

fn obs(me: &str, dcs: DcsView, local: LocalPg, failsafe_mode: bool) -> Observation {
    let lock = match &dcs {
        DcsView::Reachable(c) if c.leader_name() == Some(me) => LockRenewal::Renewed,
        _ => LockRenewal::NotHeld,
    };
    Observation {
        now: 1_000_000,
        me: me.into(),
        nofailover: false,
        failover_priority: 1,
        replicatefrom: None,
        clone_without_leader: false,
        dcs,
        policy: ClusterPolicy {
            ttl: 10,
            loop_wait: 1,
            retry_timeout: 3,
            failsafe_mode,
            ..ClusterPolicy::default()
        },
        lock,
        local,
        job: None,
        finished: None,
        peers: None,
        request: None,
        watchdog: crate::WatchdogView::Off,
        failsafe: FailsafeObs {
            my_api_url: Some(format!("http://{me}:8008/patroni")),
            ..FailsafeObs::default()
        },
        dead_leader: None,
        reclone_on_divergence: false,
    }
}

fn down() -> DcsView {
    DcsView::Unreachable("etcd: connection refused".into())
}

fn leader_state() -> HaState {
    HaState {
        has_lock: true,
        configured_as: Some(Role::Primary),
        ..HaState::default()
    }
}

fn reply(name: &str, accepted: bool) -> FailsafeReply {
    FailsafeReply {
        name: name.into(),
        accepted,
        lsn: accepted.then_some(1000),
    }
}

fn stops(d: &Decision) -> bool {
    d.actions.iter().any(|a| matches!(a, Action::Stop { .. }))
}

#[test]
fn leader_writes_the_key_with_every_member_while_failsafe_mode_is_on() {
    let c = cluster(Some("pg1"), None);
    let o = obs("pg1", DcsView::Reachable(Box::new(c)), running(false), true);
    let d = decide(&leader_state(), &o);
    let want: BTreeMap<String, String> = [
        ("pg1", "http://127.0.0.1:85431/patroni"),
        ("pg2", "http://127.0.0.1:85432/patroni"),
        ("pg3", "http://127.0.0.1:85433/patroni"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert!(d.actions.contains(&Action::WriteFailsafe(want.clone())));

    // Already current: nothing to write.
    let c = cluster(Some("pg1"), Some(&want));
    let o = obs("pg1", DcsView::Reachable(Box::new(c)), running(false), true);
    let d = decide(&leader_state(), &o);
    assert!(!d
        .actions
        .iter()
        .any(|a| matches!(a, Action::WriteFailsafe(_))));

    // A member joined (or left): rewritten.
    let stale = topology(&["pg1", "pg2"]);
    let c = cluster(Some("pg1"), Some(&stale));
    let o = obs("pg1", DcsView::Reachable(Box::new(c)), running(false), true);
    assert!(decide(&leader_state(), &o)
        .actions
        .contains(&Action::WriteFailsafe(want)));

    // failsafe_mode off: the key is neither written nor removed (as Patroni).
    let c = cluster(Some("pg1"), Some(&stale));
    let o = obs(
        "pg1",
        DcsView::Reachable(Box::new(c)),
        running(false),
        false,
    );
    assert!(!decide(&leader_state(), &o)
        .actions
        .iter()
        .any(|a| matches!(a, Action::WriteFailsafe(_))));
}

#[test]
fn leader_lists_itself_before_its_member_key_is_visible() {
    let mut c = cluster(Some("pg1"), None);
    c.members.retain(|m| m.name != "pg1");
    let o = obs(
        "pg1",
        DcsView::Reachable(Box::new(c.clone())),
        running(false),
        true,
    );
    let t = crate::failsafe::wanted_topology(&o, &c);
    assert_eq!(
        t.get("pg1").map(String::as_str),
        Some("http://pg1:8008/patroni")
    );
    assert_eq!(t.len(), 3);
}

#[test]
fn primary_without_dcs_asks_the_members_then_stays_when_all_accept() {
    let mut o = obs("pg1", down(), running(false), true);
    o.failsafe.topology = Some(topology(&["pg1", "pg2", "pg3"]));
    let d = decide(&leader_state(), &o);
    assert_eq!(d.actions, vec![Action::PostFailsafe]);
    assert!(!stops(&d));

    o.failsafe.replies = Some(vec![reply("pg2", true), reply("pg3", true)]);
    let d = decide(&leader_state(), &o);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert!(d.next.has_lock && d.next.failsafe_active);
    assert_eq!(
        d.message,
        "continue to run as a leader because failsafe mode is enabled and all members are accessible"
    );
    assert!(is_active(&d.next, &o));
}

#[test]
fn primary_without_dcs_demotes_when_one_member_does_not_confirm() {
    let mut o = obs("pg1", down(), running(false), true);
    o.failsafe.topology = Some(topology(&["pg1", "pg2", "pg3"]));
    let st = HaState {
        failsafe_active: true,
        ..leader_state()
    };
    // pg3 refused (it runs as a primary, or does not know pg1 as leader).
    o.failsafe.replies = Some(vec![reply("pg2", true), reply("pg3", false)]);
    let d = decide(&st, &o);
    assert!(stops(&d));
    assert!(!d.next.has_lock && !d.next.failsafe_active && d.next.needs_rejoin);
    assert!(
        d.message.starts_with(
            "demoted self because DCS is not accessible and I was a leader (failsafe mode: not confirmed by pg3)"
        ),
        "{}",
        d.message
    );
    // pg3 did not answer at all.
    o.failsafe.replies = Some(vec![reply("pg2", true)]);
    assert!(stops(&decide(&st, &o)));
}

#[test]
fn primary_without_dcs_demotes_without_a_usable_key() {
    // No key known, or one that does not list us: demote as without failsafe mode.
    let o = obs("pg1", down(), running(false), true);
    let d = decide(&leader_state(), &o);
    assert!(stops(&d), "{:?}", d.actions);
    let mut o = obs("pg1", down(), running(false), true);
    o.failsafe.topology = Some(topology(&["pg2", "pg3"]));
    o.failsafe.replies = Some(vec![reply("pg2", true), reply("pg3", true)]);
    assert!(stops(&decide(&leader_state(), &o)));
}

#[test]
fn single_member_primary_stays_without_asking() {
    let mut o = obs("pg1", down(), running(false), true);
    o.failsafe.topology = Some(topology(&["pg1"]));
    let d = decide(&leader_state(), &o);
    assert!(d.actions.is_empty() && d.next.has_lock && d.next.failsafe_active);
}

#[test]
fn without_failsafe_mode_the_primary_demotes_at_once() {
    let mut o = obs("pg1", down(), running(false), false);
    o.failsafe.topology = Some(topology(&["pg1", "pg2", "pg3"]));
    o.failsafe.replies = Some(vec![reply("pg2", true), reply("pg3", true)]);
    let d = decide(&leader_state(), &o);
    assert!(stops(&d));
    assert_eq!(
        d.message,
        "demoted self because DCS is not accessible and I was a leader"
    );
}

#[test]
fn dcs_back_ends_failsafe_on_the_leader() {
    let t = topology(&["pg1", "pg2", "pg3"]);
    let c = cluster(Some("pg1"), Some(&t));
    let o = obs("pg1", DcsView::Reachable(Box::new(c)), running(false), true);
    let st = HaState {
        failsafe_active: true,
        ..leader_state()
    };
    let d = decide(&st, &o);
    assert!(d.next.has_lock && !d.next.failsafe_active);
    assert!(!stops(&d));
}

#[test]
fn replica_without_dcs_keeps_running() {
    let mut o = obs("pg2", down(), running(true), true);
    o.failsafe.topology = Some(topology(&["pg1", "pg2", "pg3"]));
    let d = decide(&HaState::default(), &o);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
}

fn ping(name: &str, age_ms: u64) -> LeaderPing {
    LeaderPing {
        name: name.into(),
        conn_url: Some("postgres://127.0.0.1:5431/postgres".into()),
        api_url: Some("http://127.0.0.1:85431/patroni".into()),
        age_ms,
    }
}

#[test]
fn a_leader_that_pinged_within_ttl_is_still_the_leader() {
    // Only pg1 lost the DCS: its leader and member keys expired, the replicas still see etcd.
    let t = topology(&["pg1", "pg2", "pg3"]);
    let mut c = cluster(None, Some(&t));
    c.members.retain(|m| m.name != "pg1");
    let mut o = obs(
        "pg2",
        DcsView::Reachable(Box::new(c.clone())),
        running(true),
        true,
    );
    o.failsafe.leader_ping = Some(ping("pg1", 3_000));
    let eff = effective_cluster(&o, &c).expect("leader injected");
    assert_eq!(eff.leader_name(), Some("pg1"));
    let m = eff.member("pg1").expect("leader member added");
    assert_eq!(
        m.data.conn_url.as_deref(),
        Some("postgres://127.0.0.1:5431/postgres")
    );
    assert!(m.is_running());
    // The replica follows it and stays out of the race.
    o.dcs = DcsView::Reachable(Box::new(eff));
    let st = HaState {
        configured_as: Some(Role::Replica {
            leader: Some("pg1".into()),
        }),
        ..HaState::default()
    };
    let d = decide(&st, &o);
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::AcquireLock | Action::ProbePeers)),
        "{:?}",
        d.actions
    );
    assert!(
        d.message.contains("following a leader (pg1)"),
        "{}",
        d.message
    );
    assert!(is_active(&d.next, &o));

    // A ping older than ttl, a leader key present, failsafe_mode off: the DCS view stands.
    o.failsafe.leader_ping = Some(ping("pg1", 10_000));
    assert!(effective_cluster(&o, &c).is_none());
    o.failsafe.leader_ping = Some(ping("pg1", 1_000));
    assert!(effective_cluster(&o, &cluster(Some("pg3"), Some(&t))).is_none());
    o.policy.failsafe_mode = false;
    assert!(effective_cluster(&o, &c).is_none());
}

#[test]
fn members_the_failsafe_key_does_not_list_never_race() {
    let t = topology(&["pg1", "pg2"]);
    let c = cluster(None, Some(&t));
    let o = obs("pg3", DcsView::Reachable(Box::new(c)), running(true), true);
    let d = decide(&HaState::default(), &o);
    assert!(!d.actions.contains(&Action::AcquireLock));
    assert!(
        d.message.contains("failsafe key does not list me"),
        "{}",
        d.message
    );

    // Off: the key is ignored.
    let c = cluster(None, Some(&t));
    let o = obs("pg3", DcsView::Reachable(Box::new(c)), running(true), false);
    assert_eq!(
        decide(&HaState::default(), &o).actions,
        vec![Action::ProbePeers]
    );
}

#[test]
fn the_race_asks_failsafe_members_without_a_member_key() {
    // pg1 (the old leader) has no member key any more; with peers answering for pg3 only,
    // pg1 has not been asked yet in the race.
    let t = topology(&["pg1", "pg2", "pg3"]);
    let mut c = cluster(None, Some(&t));
    c.members.retain(|m| m.name != "pg1");
    assert_eq!(
        crate::failsafe::extra_race_peers(true, &c, "pg2"),
        vec![("pg1".to_string(), "http://pg1:8008/patroni".to_string())]
    );
    assert!(crate::failsafe::extra_race_peers(false, &c, "pg2").is_empty());
    // pg1 answers as a running primary: pg2 stays out.
    let mut o = obs("pg2", DcsView::Reachable(Box::new(c)), running(true), true);
    o.peers = Some(vec![
        PeerStatus {
            name: "pg1".into(),
            reply: Some(PeerReply {
                running: true,
                is_primary: true,
                wal_position: 1000,
                nofailover: false,
                failover_priority: 1,
                timeline: 1,
            }),
        },
        PeerStatus {
            name: "pg3".into(),
            reply: None,
        },
    ]);
    let d = decide(&HaState::default(), &o);
    assert!(!d.actions.contains(&Action::AcquireLock));
    assert!(
        d.message.contains("Primary (pg1) is still alive"),
        "{}",
        d.message
    );
}
