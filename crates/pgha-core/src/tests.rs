//! Table-style tests of every HA rule. Each builds an observation the way the driver would and
//! checks the actions and, where operators grep for it, the message.

use pgha_types::{Cluster, ClusterPolicy, KeyValue};

use crate::*;

const SYSID: &str = "7710809278050705596";

struct Obs(Observation);

fn member(name: &str, role: &str, lsn: u64, extra: &str) -> KeyValue {
    KeyValue {
        key: format!("members/{name}"),
        value: format!(
            r#"{{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"{role}","xlog_location":{lsn}{extra}}}"#
        ),
        lease: 1,
        mod_revision: 1,
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        lease: 1,
        mod_revision: 1,
    }
}

/// A three-node cluster: pg1 leads (unless `leader` says otherwise), pg2 and pg3 replicate.
fn cluster(leader: Option<&str>) -> Cluster {
    let role = |n: &str| {
        if leader.unwrap_or("pg1") == n {
            "primary"
        } else {
            "replica"
        }
    };
    let mut keys = vec![
        kv("initialize", SYSID),
        kv("config", r#"{"ttl":10}"#),
        member("pg1", role("pg1"), 1000, ""),
        member("pg2", role("pg2"), 1000, ""),
        member("pg3", role("pg3"), 1000, ""),
        kv("status", r#"{"optime":1000}"#),
    ];
    if let Some(l) = leader {
        keys.push(kv("leader", l));
    }
    Cluster::from_keys(&keys)
}

fn running(in_recovery: bool, pos: u64) -> LocalPg {
    LocalPg::Initialized {
        system_id: SYSID.into(),
        process: PgProcess::Running(PgRunning {
            in_recovery,
            timeline: 1,
            wal_position: pos,
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

fn stopped(was_primary: bool) -> LocalPg {
    LocalPg::Initialized {
        system_id: SYSID.into(),
        process: PgProcess::Stopped,
        control: Some(ControlSummary {
            was_primary,
            clean_shutdown: false,
            timeline: 1,
            lsn: 1000,
        }),
    }
}

/// (is_primary, wal position, failover_priority) of a peer's answer.
type RankedReply = (bool, u64, i64);

impl Obs {
    fn new(me: &str, cluster: Cluster, local: LocalPg) -> Obs {
        let lock = if cluster.leader_name() == Some(me) {
            LockRenewal::Renewed
        } else {
            LockRenewal::NotHeld
        };
        Obs(Observation {
            now: 1_000_000,
            me: me.into(),
            nofailover: false,
            failover_priority: 1,
            replicatefrom: None,
            clone_without_leader: false,
            dcs: DcsView::Reachable(Box::new(cluster)),
            policy: ClusterPolicy {
                ttl: 10,
                loop_wait: 1,
                retry_timeout: 3,
                ..ClusterPolicy::default()
            },
            lock,
            local,
            job: None,
            finished: None,
            peers: None,
            request: None,
            watchdog: WatchdogView::Off,
            failsafe: FailsafeObs::default(),
            dead_leader: None,
            reclone_on_divergence: false,
        })
    }
    fn watchdog(mut self, w: WatchdogView) -> Obs {
        self.0.watchdog = w;
        self
    }
    fn lock(mut self, l: LockRenewal) -> Obs {
        self.0.lock = l;
        self
    }
    fn peers(self, peers: Vec<(&str, Option<(bool, u64)>)>) -> Obs {
        let ranked = peers
            .into_iter()
            .map(|(name, r)| (name, r.map(|(primary, pos)| (primary, pos, 1))))
            .collect();
        self.ranked_peers(ranked)
    }
    /// Peers as (name, (is_primary, wal position, failover_priority)).
    fn ranked_peers(mut self, peers: Vec<(&str, Option<RankedReply>)>) -> Obs {
        self.0.peers = Some(
            peers
                .into_iter()
                .map(|(name, r)| PeerStatus {
                    name: name.into(),
                    reply: r.map(|(is_primary, pos, priority)| PeerReply {
                        running: true,
                        is_primary,
                        wal_position: pos,
                        nofailover: priority <= 0,
                        failover_priority: priority,
                        timeline: 1,
                    }),
                })
                .collect(),
        );
        self
    }
    fn priority(mut self, p: i64) -> Obs {
        self.0.failover_priority = p;
        self.0.nofailover = p <= 0;
        self
    }
    fn decide(&self) -> Decision {
        decide(&HaState::default(), &self.0)
    }
    fn decide_from(&self, state: &HaState) -> Decision {
        decide(state, &self.0)
    }
}

fn following(leader: &str) -> HaState {
    HaState {
        configured_as: Some(Role::Replica {
            leader: Some(leader.into()),
        }),
        ..HaState::default()
    }
}

#[test]
fn leader_with_lock_does_housekeeping_and_says_no_action() {
    let d = Obs::new("pg1", cluster(Some("pg1")), running(false, 1000)).decide();
    assert_eq!(d.message, "no action. I am (pg1), the leader with the lock");
    assert!(d.next.has_lock);
    assert_eq!(
        d.actions,
        vec![
            Action::SyncSlots(SlotTargets {
                members: vec!["pg2".into(), "pg3".into()],
                primary: true,
                ..SlotTargets::default()
            }),
            Action::WriteStatus,
            Action::ApplyConfig {
                role: Role::Primary
            },
        ]
    );
}

#[test]
fn replica_following_leader_takes_no_action() {
    let d =
        Obs::new("pg2", cluster(Some("pg1")), running(true, 1000)).decide_from(&following("pg1"));
    assert_eq!(
        d.actions,
        vec![
            Action::ApplyConfig {
                role: Role::Replica {
                    leader: Some("pg1".into())
                }
            },
            Action::SyncSlots(SlotTargets::default()),
        ]
    );
    assert_eq!(
        d.message,
        "no action. I am (pg2), a secondary, and following a leader (pg1)"
    );
}

#[test]
fn replica_repoints_to_a_new_leader() {
    let d =
        Obs::new("pg2", cluster(Some("pg3")), running(true, 1000)).decide_from(&following("pg1"));
    assert_eq!(
        d.actions,
        vec![
            Action::Follow {
                leader: "pg3".into()
            },
            Action::SyncSlots(SlotTargets::default()),
        ]
    );
    assert_eq!(d.next.configured_as, following("pg3").configured_as);
    assert_eq!(d.next.last_leader.as_deref(), Some("pg3"));
}

#[test]
fn failed_renewal_demotes_a_primary_immediately() {
    let d = Obs::new("pg1", cluster(Some("pg1")), running(false, 1000))
        .lock(LockRenewal::Failed)
        .decide();
    assert_eq!(
        d.actions,
        vec![Action::Stop {
            mode: StopMode::Immediate
        }]
    );
    assert_eq!(
        d.message,
        "demoted self because failed to update leader lock in DCS"
    );
    assert!(!d.next.has_lock && d.next.needs_rejoin);
}

#[test]
fn primary_without_lock_demotes_when_another_node_leads() {
    let d = Obs::new("pg1", cluster(Some("pg2")), running(false, 1000)).decide();
    assert_eq!(
        d.actions,
        vec![Action::Stop {
            mode: StopMode::Immediate
        }]
    );
    assert!(d.next.needs_rejoin);
}

#[test]
fn stopped_former_primary_rejoins_through_divergence_check() {
    let d = Obs::new("pg1", cluster(Some("pg2")), stopped(true)).decide();
    assert_eq!(
        d.actions,
        vec![Action::StartJob(JobKind::Rejoin {
            leader: "pg2".into()
        })]
    );
}

#[test]
fn stopped_replica_starts_following_the_leader() {
    let d = Obs::new("pg2", cluster(Some("pg1")), stopped(false)).decide();
    assert_eq!(
        d.actions,
        vec![Action::StartJob(JobKind::Start {
            role: Role::Replica {
                leader: Some("pg1".into())
            }
        })]
    );
    assert_eq!(d.message, "starting as a secondary");
}

#[test]
fn leader_whose_postgres_died_starts_it_again_and_keeps_the_lock() {
    let d = Obs::new("pg1", cluster(Some("pg1")), stopped(true)).decide();
    assert_eq!(
        d.actions,
        vec![Action::StartJob(JobKind::Start {
            role: Role::Primary
        })]
    );
    assert_eq!(d.message, "starting primary after failure");
    assert!(d.next.has_lock);
    assert!(!d.next.needs_rejoin, "our own lock: no divergence check");
}

#[test]
fn leader_releases_lock_when_primary_does_not_start_in_time() {
    let mut o = Obs::new(
        "pg1",
        cluster(Some("pg1")),
        LocalPg::Initialized {
            system_id: SYSID.into(),
            process: PgProcess::NotReady,
            control: None,
        },
    );
    o.0.policy.primary_start_timeout = 10;
    let state = HaState {
        has_lock: true,
        primary_start_began: Some(o.0.now - 5_000),
        ..HaState::default()
    };
    assert!(o.decide_from(&state).actions.is_empty());
    let state = HaState {
        primary_start_began: Some(o.0.now - 11_000),
        ..state
    };
    assert_eq!(o.decide_from(&state).actions, vec![Action::ReleaseLock]);
}

#[test]
fn leader_race_asks_peers_first() {
    let d = Obs::new("pg2", cluster(None), running(true, 1000)).decide();
    assert_eq!(d.actions, vec![Action::ProbePeers]);
    assert_eq!(d.message, "Lock owner: None; I am pg2");
}

#[test]
fn leader_race_winner_acquires_then_promotes() {
    let d = Obs::new("pg2", cluster(None), running(true, 1000))
        .peers(vec![("pg1", None), ("pg3", Some((false, 1000)))])
        .decide();
    assert_eq!(
        d.actions,
        vec![Action::AcquireLock, Action::StartJob(JobKind::Promote)]
    );
    assert_eq!(
        d.message,
        "promoted self to leader by acquiring session lock"
    );
}

#[test]
fn leader_race_defers_to_a_peer_that_is_ahead() {
    let d = Obs::new("pg2", cluster(None), running(true, 900))
        .peers(vec![("pg1", None), ("pg3", Some((false, 1000)))])
        .decide();
    assert!(d.actions.is_empty());
    assert_eq!(d.message, "Wal position of pg3 is ahead of my wal position");
}

#[test]
fn leader_race_defers_to_an_equally_advanced_peer_of_higher_priority() {
    let d = Obs::new("pg2", cluster(None), running(true, 1000))
        .priority(1)
        .ranked_peers(vec![("pg1", None), ("pg3", Some((false, 1000, 2)))])
        .decide();
    assert!(d.actions.is_empty());
    assert_eq!(
        d.message,
        "pg3 is as far as I am and ranks higher: failover_priority 2 > mine 1"
    );
}

#[test]
fn leader_race_higher_priority_wins_among_equals() {
    let d = Obs::new("pg3", cluster(None), running(true, 1000))
        .priority(2)
        .ranked_peers(vec![("pg1", None), ("pg2", Some((false, 1000, 1)))])
        .decide();
    assert_eq!(
        d.actions,
        vec![Action::AcquireLock, Action::StartJob(JobKind::Promote)]
    );
}

#[test]
fn leader_race_priority_does_not_outweigh_wal_position() {
    // A lower-priority node that received more WAL still wins: losing writes is worse.
    let d = Obs::new("pg2", cluster(None), running(true, 1200))
        .priority(1)
        .ranked_peers(vec![("pg1", None), ("pg3", Some((false, 1000, 5)))])
        .decide();
    assert_eq!(
        d.actions,
        vec![Action::AcquireLock, Action::StartJob(JobKind::Promote)]
    );
}

#[test]
fn leader_race_ignores_the_former_leaders_priority() {
    let state = HaState {
        last_leader: Some("pg1".into()),
        ..HaState::default()
    };
    let d = Obs::new("pg2", cluster(None), running(true, 1000))
        .ranked_peers(vec![("pg1", Some((false, 1000, 9))), ("pg3", None)])
        .decide_from(&state);
    assert_eq!(
        d.actions,
        vec![Action::AcquireLock, Action::StartJob(JobKind::Promote)]
    );
}

#[test]
fn failover_priority_zero_never_races() {
    let d = Obs::new("pg2", cluster(None), running(true, 2000))
        .priority(0)
        .ranked_peers(vec![("pg1", None), ("pg3", Some((false, 1000, 1)))])
        .decide();
    assert!(d.actions.is_empty());
    assert!(
        d.message.contains("not allowed to promote"),
        "{}",
        d.message
    );
}

#[test]
fn a_peer_with_priority_zero_does_not_hold_back_the_race() {
    let d = Obs::new("pg2", cluster(None), running(true, 1000))
        .ranked_peers(vec![("pg1", None), ("pg3", Some((false, 5000, 0)))])
        .decide();
    assert_eq!(
        d.actions,
        vec![Action::AcquireLock, Action::StartJob(JobKind::Promote)]
    );
}

#[test]
fn leader_race_defers_to_a_live_primary() {
    let d = Obs::new("pg2", cluster(None), running(true, 1000))
        .peers(vec![("pg1", Some((true, 1000))), ("pg3", None)])
        .decide();
    assert!(d.actions.is_empty());
    assert!(d.message.contains("Primary (pg1) is still alive"));
}

#[test]
fn leader_race_refuses_when_lag_exceeds_maximum() {
    let mut o = Obs::new("pg2", cluster(None), running(true, 100));
    o.0.policy.maximum_lag_on_failover = 500;
    let d = o.decide();
    assert!(d.actions.is_empty());
    assert!(
        d.message.contains("exceeds maximum replication lag"),
        "{}",
        d.message
    );
}

#[test]
fn nofailover_node_never_races() {
    let mut o = Obs::new("pg2", cluster(None), running(true, 1000));
    o.0.nofailover = true;
    let d = o.peers(vec![]).decide();
    assert!(d.actions.is_empty());
}

#[test]
fn paused_cluster_does_not_fail_over() {
    let mut o = Obs::new("pg2", cluster(None), running(true, 1000));
    o.0.policy.pause = true;
    assert!(o.peers(vec![]).decide().actions.is_empty());
}

#[test]
fn not_ready_postgres_stays_out_of_the_race() {
    let o = Obs::new(
        "pg2",
        cluster(None),
        LocalPg::Initialized {
            system_id: SYSID.into(),
            process: PgProcess::NotReady,
            control: None,
        },
    );
    let d = o.decide();
    assert!(d.actions.is_empty());
    assert_eq!(d.message, "not healthy enough for leader race");
}

#[test]
fn dcs_loss_demotes_the_primary_cleanly() {
    let mut o = Obs::new("pg1", cluster(Some("pg1")), running(false, 1000));
    o.0.dcs = DcsView::Unreachable("timeout".into());
    let d = o.decide_from(&HaState {
        has_lock: true,
        ..HaState::default()
    });
    assert_eq!(
        d.actions,
        vec![Action::Stop {
            mode: StopMode::Fast
        }]
    );
    assert_eq!(
        d.message,
        "demoted self because DCS is not accessible and I was a leader"
    );
    assert!(!d.next.has_lock && d.next.needs_rejoin);
}

#[test]
fn dcs_loss_restarts_a_stopped_node_read_only() {
    let mut o = Obs::new("pg1", cluster(Some("pg1")), stopped(true));
    o.0.dcs = DcsView::Unreachable("timeout".into());
    assert_eq!(
        o.decide().actions,
        vec![Action::StartJob(JobKind::Start {
            role: Role::Replica { leader: None }
        })]
    );
}

#[test]
fn dcs_loss_leaves_replicas_alone() {
    let mut o = Obs::new("pg2", cluster(Some("pg1")), running(true, 1000));
    o.0.dcs = DcsView::Unreachable("timeout".into());
    assert!(o.decide().actions.is_empty());
}

#[test]
fn demoted_replica_rechecks_divergence_once_a_leader_appears() {
    let state = HaState {
        needs_rejoin: true,
        ..HaState::default()
    };
    let d = Obs::new("pg1", cluster(Some("pg2")), running(true, 1000)).decide_from(&state);
    assert_eq!(
        d.actions,
        vec![Action::Stop {
            mode: StopMode::Fast
        }]
    );
}

#[test]
fn primary_that_lost_only_the_key_reacquires_it() {
    let d = Obs::new("pg1", cluster(None), running(false, 1000))
        .peers(vec![
            ("pg2", Some((false, 900))),
            ("pg3", Some((false, 900))),
        ])
        .decide();
    assert_eq!(d.actions, vec![Action::AcquireLock, Action::WriteStatus]);
    assert_eq!(d.message, "acquired session lock as a leader");
}

#[test]
fn system_id_mismatch_exits_with_both_identifiers() {
    let local = LocalPg::Initialized {
        system_id: "123".into(),
        process: PgProcess::Stopped,
        control: None,
    };
    let d = Obs::new("pg4", cluster(Some("pg1")), local).decide();
    let Action::Exit(msg) = &d.actions[0] else {
        panic!("expected exit, got {:?}", d.actions)
    };
    assert!(msg.contains(SYSID) && msg.contains("123"), "{msg}");
    assert!(msg.starts_with("system ID mismatch"));
}

#[test]
fn empty_node_in_empty_cluster_races_to_bootstrap() {
    let d = Obs::new("pg1", Cluster::default(), LocalPg::Empty).decide();
    assert_eq!(
        d.actions,
        vec![
            Action::TakeInitializeLock,
            Action::StartJob(JobKind::Bootstrap)
        ]
    );
    assert_eq!(d.message, "trying to bootstrap a new cluster");
}

#[test]
fn empty_node_waits_while_another_bootstraps() {
    let c = Cluster::from_keys(&[kv("initialize", "")]);
    let d = Obs::new("pg2", c, LocalPg::Empty).decide();
    assert!(d.actions.is_empty());
    assert_eq!(d.message, "waiting for leader to bootstrap");
}

#[test]
fn empty_node_clones_from_the_running_leader() {
    let d = Obs::new("pg4", cluster(Some("pg1")), LocalPg::Empty).decide();
    assert_eq!(
        d.actions,
        vec![Action::StartJob(JobKind::Clone {
            from: Some("pg1".into()),
            basebackup_only: false
        })]
    );
    assert_eq!(d.message, "trying to bootstrap from leader 'pg1'");
}

#[test]
fn empty_node_without_leader_clones_only_with_a_no_leader_method() {
    let leaderless = JobKind::Clone {
        from: None,
        basebackup_only: false,
    };
    // The cluster exists (initialize holds its system identifier) but nobody leads.
    let d = Obs::new("pg4", cluster(None), LocalPg::Empty).decide();
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(d.message, "waiting for leader to bootstrap");
    let mut o = Obs::new("pg4", cluster(None), LocalPg::Empty);
    o.0.clone_without_leader = true;
    let d = o.decide();
    assert_eq!(d.actions, vec![Action::StartJob(leaderless.clone())]);
    assert_eq!(d.message, "trying to bootstrap (without leader)");

    // Not while another member bootstraps the cluster.
    let mut o = Obs::new(
        "pg4",
        Cluster::from_keys(&[kv("initialize", "")]),
        LocalPg::Empty,
    );
    o.0.clone_without_leader = true;
    assert!(o.decide().actions.is_empty());
    // No cluster yet: a member that may lead bootstraps it; one that may not restores.
    let mut o = Obs::new("pg4", Cluster::from_keys(&[]), LocalPg::Empty);
    o.0.clone_without_leader = true;
    assert_eq!(
        o.decide().actions,
        vec![
            Action::TakeInitializeLock,
            Action::StartJob(JobKind::Bootstrap)
        ]
    );
    o.0.nofailover = true;
    assert_eq!(
        o.decide().actions,
        vec![Action::StartJob(leaderless.clone())]
    );
    // With a leader the method list runs with the leader as the source.
    let mut o = Obs::new("pg4", cluster(Some("pg1")), LocalPg::Empty);
    o.0.clone_without_leader = true;
    assert!(matches!(
        &o.decide().actions[..],
        [Action::StartJob(JobKind::Clone { from: Some(f), .. })] if f == "pg1"
    ));

    // Running, and failing.
    let mut o = Obs::new("pg4", cluster(None), LocalPg::Invalid("half".into()));
    o.0.job = Some(Job {
        kind: leaderless.clone(),
        started_at: 0,
    });
    assert_eq!(o.decide().message, "bootstrap (without leader) in progress");
    let mut o = Obs::new("pg4", cluster(None), LocalPg::Empty);
    o.0.clone_without_leader = true;
    o.0.finished = Some(JobOutcome {
        kind: leaderless,
        ok: false,
        message: "no method worked".into(),
        refused_by_pre_promote: false,
    });
    let d = o.decide();
    assert_eq!(d.actions, vec![Action::RemoveDataDirectory]);
    assert_eq!(
        d.message,
        "failed to bootstrap (without leader): no method worked"
    );
}

#[test]
fn reinit_from_leader_clones_with_basebackup_only() {
    let mut o = Obs::new("pg4", cluster(Some("pg1")), LocalPg::Empty);
    let state = HaState {
        clone_from_leader: true,
        ..HaState::default()
    };
    o.0.clone_without_leader = true;
    let d = decide(&state, &o.0);
    assert_eq!(
        d.actions,
        vec![Action::StartJob(JobKind::Clone {
            from: Some("pg1".into()),
            basebackup_only: true
        })]
    );
    assert!(!d.next.clone_from_leader);
}

#[test]
fn failed_bootstrap_gives_up_the_initialize_key() {
    let c = Cluster::from_keys(&[kv("initialize", "")]);
    let mut o = Obs::new("pg1", c, LocalPg::Empty);
    o.0.finished = Some(JobOutcome {
        kind: JobKind::Bootstrap,
        ok: false,
        message: "initdb failed".into(),
        refused_by_pre_promote: false,
    });
    assert_eq!(
        o.decide().actions,
        vec![Action::CancelInitialization, Action::RemoveDataDirectory]
    );
}

#[test]
fn identical_bootstrap_failures_stop_the_agent_keeping_the_data_directory() {
    let log = "the new cluster did not become ready: postgres exited during startup; last lines of its log:\n\
               2026-12-05 20:29:38.289 GMT [26990] LOG:  unrecognized configuration parameter \"wal_keep_segments\" in file \"/d/postgresql.conf\" line 11\n\
               2026-12-05 20:29:38.289 GMT [26990] FATAL:  configuration file \"/d/postgresql.conf\" contains errors";
    let c = Cluster::from_keys(&[kv("initialize", "")]);
    let mut o = Obs::new("pg1", c, LocalPg::Empty);
    let mut state = HaState::default();
    for attempt in 1..=3 {
        // Another pid and time every attempt: the cause is still the same.
        o.0.finished = Some(JobOutcome {
            kind: JobKind::Bootstrap,
            ok: false,
            message: log.replace("26990", &format!("2699{attempt}")),
            refused_by_pre_promote: false,
        });
        let d = o.decide_from(&state);
        state = d.next.clone();
        if attempt < 3 {
            assert_eq!(
                d.actions,
                vec![Action::CancelInitialization, Action::RemoveDataDirectory]
            );
            continue;
        }
        assert_eq!(d.actions.len(), 2, "{:?}", d.actions);
        assert_eq!(d.actions[0], Action::CancelInitialization);
        let Action::Exit(msg) = &d.actions[1] else {
            panic!("expected an exit, got {:?}", d.actions)
        };
        assert!(
            msg.contains("unrecognized configuration parameter \"wal_keep_segments\"")
                && msg.contains("FATAL:  configuration file")
                && msg.contains("failed 3 times"),
            "{msg}"
        );
        assert!(
            !msg.contains("26990") && !msg.contains("2026-12-05"),
            "{msg}"
        );
    }
}

#[test]
fn a_different_bootstrap_failure_starts_the_count_again() {
    let c = Cluster::from_keys(&[kv("initialize", "")]);
    let mut o = Obs::new("pg1", c, LocalPg::Empty);
    let mut state = HaState::default();
    for msg in [
        "initdb failed: disk full",
        "initdb failed: disk full",
        "post_bootstrap failed: exit 1",
    ] {
        o.0.finished = Some(JobOutcome {
            kind: JobKind::Bootstrap,
            ok: false,
            message: msg.into(),
            refused_by_pre_promote: false,
        });
        let d = o.decide_from(&state);
        assert!(
            !d.actions.iter().any(|a| matches!(a, Action::Exit(_))),
            "{msg}"
        );
        state = d.next;
    }
    assert_eq!(state.bootstrap_failures, 1);
}

#[test]
fn long_action_in_progress_blocks_other_actions_but_lock_stays_held() {
    let mut o = Obs::new(
        "pg1",
        cluster(Some("pg1")),
        LocalPg::Initialized {
            system_id: SYSID.into(),
            process: PgProcess::NotReady,
            control: None,
        },
    );
    o.0.job = Some(Job {
        kind: JobKind::Start {
            role: Role::Primary,
        },
        started_at: 0,
    });
    let d = o.decide();
    assert!(d.actions.is_empty());
    assert!(d.next.has_lock);
}

#[test]
fn new_timeline_is_recorded_in_history() {
    let local = LocalPg::Initialized {
        system_id: SYSID.into(),
        process: PgProcess::Running(PgRunning {
            in_recovery: false,
            timeline: 2,
            wal_position: 1000,
            streaming: false,
            pending_restart: false,
            server_version: 150018,
            below_primary: Vec::new(),
            standbys: Vec::new(),
            history: Vec::new(),
        }),
        control: None,
    };
    let d = Obs::new("pg1", cluster(Some("pg1")), local).decide();
    assert!(d.actions.contains(&Action::UpdateHistory));
}

#[test]
fn divergence_rules() {
    let history = [(1, 500), (2, 900)];
    assert_eq!(
        assess_divergence(3, 1000, 3, &history, &[]),
        Divergence::InSync
    );
    // Same timeline number, but our timeline 2 ended elsewhere: forked from another past.
    let ours = [(1, 500), (2, 700)];
    assert!(matches!(
        assess_divergence(3, 1000, 3, &history, &ours),
        Divergence::Diverged(why) if why.contains("timeline 2 ended at")
    ));
    assert_eq!(
        assess_divergence(3, 1000, 3, &history, &history),
        Divergence::InSync
    );
    assert_eq!(
        assess_divergence(1, 400, 3, &history, &[]),
        Divergence::InSync
    );
    assert!(matches!(
        assess_divergence(1, 600, 3, &history, &[]),
        Divergence::Diverged(_)
    ));
    assert!(matches!(
        assess_divergence(1, 500, 2, &history, &[]),
        Divergence::Diverged(_)
    ));
    assert!(matches!(
        assess_divergence(4, 0, 3, &history, &[]),
        Divergence::Diverged(_)
    ));
    assert!(matches!(
        assess_divergence(5, 0, 6, &history, &[]),
        Divergence::Diverged(_)
    ));
}

#[test]
fn slot_names_follow_member_names() {
    assert_eq!(slot_name("Node-1.a"), "node_1_a");
    assert_eq!(slot_name(&"x".repeat(70)).len(), 63);
}

#[test]
fn half_written_data_directory_is_not_judged_while_cloning() {
    let mut o = Obs::new(
        "pg4",
        cluster(Some("pg1")),
        LocalPg::Invalid("no PG_VERSION".into()),
    );
    o.0.job = Some(Job {
        kind: JobKind::Clone {
            from: Some("pg1".into()),
            basebackup_only: false,
        },
        started_at: 0,
    });
    let d = o.decide();
    assert!(d.actions.is_empty());
    assert_eq!(d.message, "bootstrap from leader 'pg1' in progress");
}

#[test]
fn leader_restores_missing_initialize_and_config_keys() {
    let c = Cluster::from_keys(&[kv("leader", "pg1"), member("pg1", "primary", 1000, "")]);
    let d = Obs::new("pg1", c, running(false, 1000)).decide();
    assert!(d.actions.contains(&Action::SetInitialize(SYSID.into())));
    assert!(d.actions.contains(&Action::WriteInitialConfig));
}

fn with_failover(mut c: Cluster, value: &str) -> Cluster {
    let f = Cluster::from_keys(&[kv("failover", value)]).failover;
    c.failover = f;
    c
}

#[test]
fn switchover_leader_stops_cleanly_then_releases_the_lock() {
    let c = with_failover(cluster(Some("pg1")), r#"{"leader":"pg1","member":"pg2"}"#);
    let d = Obs::new("pg1", c, running(false, 1000)).decide();
    assert_eq!(
        d.actions,
        vec![
            Action::Stop {
                mode: StopMode::Fast
            },
            Action::ReleaseLock
        ]
    );
    assert_eq!(d.message, "switchover: demoting myself");
    assert!(!d.next.has_lock && d.next.needs_rejoin);
}

#[test]
fn manual_failover_without_leader_name_is_named_so() {
    let c = with_failover(cluster(Some("pg1")), r#"{"member":"pg3"}"#);
    let d = Obs::new("pg1", c, running(false, 1000)).decide();
    assert_eq!(d.message, "manual failover: demoting myself");
}

#[test]
fn switchover_to_an_unhealthy_or_unknown_candidate_is_cancelled() {
    let mut c = with_failover(cluster(Some("pg1")), r#"{"leader":"pg1","member":"nope"}"#);
    let d = Obs::new("pg1", c.clone(), running(false, 1000)).decide();
    assert_eq!(d.actions, vec![Action::ClearFailover]);
    c.failover =
        Cluster::from_keys(&[kv("failover", r#"{"leader":"pg9","member":"pg2"}"#)]).failover;
    let d = Obs::new("pg1", c, running(false, 1000)).decide();
    assert_eq!(d.actions, vec![Action::ClearFailover]);
    assert!(d.message.contains("leader name does not match"));
}

#[test]
fn scheduled_switchover_waits_for_its_time() {
    let c = with_failover(
        cluster(Some("pg1")),
        r#"{"leader":"pg1","member":"pg2","scheduled_at":"2099-01-01T00:00:00+00:00"}"#,
    );
    let d = Obs::new("pg1", c, running(false, 1000)).decide();
    assert_eq!(d.message, "no action. I am (pg1), the leader with the lock");
    let c = with_failover(
        cluster(Some("pg1")),
        r#"{"leader":"pg1","member":"pg2","scheduled_at":"1970-01-01T00:00:01+00:00"}"#,
    );
    let d = Obs::new("pg1", c, running(false, 1000)).decide();
    assert_eq!(d.message, "switchover: demoting myself");
}

#[test]
fn designated_candidate_takes_the_lock_without_asking_peers() {
    let c = with_failover(cluster(None), r#"{"leader":"pg1","member":"pg2"}"#);
    let d = Obs::new("pg2", c, running(true, 900)).decide();
    assert_eq!(
        d.actions,
        vec![Action::AcquireLock, Action::StartJob(JobKind::Promote)]
    );
}

#[test]
fn others_wait_for_the_designated_candidate_and_the_old_leader_does_not_race() {
    let c = with_failover(cluster(None), r#"{"leader":"pg1","member":"pg2"}"#);
    let d = Obs::new("pg3", c.clone(), running(true, 1000)).decide();
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    let c = with_failover(cluster(None), r#"{"leader":"pg1"}"#);
    let d = Obs::new("pg1", c, running(true, 1000)).decide();
    assert!(d.actions.is_empty(), "{:?}", d.actions);
}

#[test]
fn manual_failover_proceeds_while_paused() {
    let c = with_failover(cluster(None), r#"{"member":"pg2"}"#);
    let mut o = Obs::new("pg2", c, running(true, 1000));
    o.0.policy.pause = true;
    assert_eq!(o.decide().actions[0], Action::AcquireLock);
}

#[test]
fn switchover_in_pause_restarts_the_old_leader_as_a_replica() {
    let c = with_failover(cluster(Some("pg1")), r#"{"leader":"pg1","member":"pg2"}"#);
    let mut o = Obs::new("pg1", c, running(false, 1000));
    o.0.policy.pause = true;
    let d = o.decide();
    assert_eq!(d.message, "switchover: demoting myself");
    assert!(d.next.restart_after_demote);
    // Next cycles: stopped, pg2 now leads. A demoted primary follows it despite the pause ...
    let mut o = Obs::new("pg1", cluster(Some("pg2")), stopped(true));
    o.0.policy.pause = true;
    let after = o.decide_from(&d.next);
    assert_eq!(
        after.actions,
        vec![Action::StartJob(JobKind::Rejoin {
            leader: "pg2".into()
        })]
    );
    // Kept until the rejoin succeeded, so a failed one (the new leader was not ready) is
    // tried again despite the pause.
    assert!(after.next.restart_after_demote);
    // ... while one stopped by anyone else stays stopped.
    let plain = o.decide_from(&HaState {
        needs_rejoin: true,
        ..HaState::default()
    });
    assert!(plain.actions.is_empty(), "{:?}", plain.actions);
    assert!(plain.message.ends_with("paused: postgres stays stopped"));
    // The new leader still publishing `replica` (its promotion under way): wait for it.
    let mut still_replica = cluster(Some("pg2"));
    if let Some(m) = still_replica.members.iter_mut().find(|m| m.name == "pg2") {
        m.data.role = Some("replica".into());
    }
    let mut o = Obs::new("pg1", still_replica, stopped(true));
    o.0.policy.pause = true;
    let wait = o.decide_from(&d.next);
    assert!(wait.actions.is_empty(), "{:?}", wait.actions);
    assert!(
        wait.message.contains("waiting for the leader to run"),
        "{}",
        wait.message
    );
}

#[test]
fn paused_leader_does_not_restart_a_stopped_postgres() {
    let mut o = Obs::new("pg1", cluster(Some("pg1")), stopped(true));
    o.0.policy.pause = true;
    assert!(o.decide().actions.is_empty());
}

#[test]
fn paused_leader_does_not_demote_on_a_failed_renewal() {
    let mut o =
        Obs::new("pg1", cluster(Some("pg1")), running(false, 1000)).lock(LockRenewal::Failed);
    o.0.policy.pause = true;
    assert!(o.decide().actions.is_empty());
}

#[test]
fn restart_request_keeps_the_role_and_answers_when_done() {
    let mut o = Obs::new("pg1", cluster(Some("pg1")), running(false, 1000));
    o.0.request = Some(AdminRequest::Restart(RestartRequest::default()));
    let d = o.decide();
    assert_eq!(
        d.actions,
        vec![Action::StartJob(JobKind::Restart {
            role: Role::Primary
        })]
    );
    assert_eq!(d.reply, Some(Reply::WhenJobEnds));
    assert!(d.next.has_lock);
}

#[test]
fn restart_conditions_are_checked() {
    for req in [
        RestartRequest {
            role: Some("replica".into()),
            ..Default::default()
        },
        RestartRequest {
            pending_only: true,
            ..Default::default()
        },
        RestartRequest {
            below_version: Some(150000),
            ..Default::default()
        },
    ] {
        let mut o = Obs::new("pg1", cluster(Some("pg1")), running(false, 1000));
        o.0.request = Some(AdminRequest::Restart(req));
        let d = o.decide();
        assert_eq!(
            d.reply,
            Some(Reply::Now(
                503,
                "restart conditions are not satisfied".into()
            ))
        );
        assert!(!d.actions.iter().any(|a| matches!(a, Action::StartJob(_))));
    }
}

#[test]
fn reinitialize_is_refused_on_the_leader_and_rebuilds_a_replica() {
    let mut o = Obs::new("pg1", cluster(Some("pg1")), running(false, 1000));
    o.0.request = Some(AdminRequest::Reinitialize { from_leader: false });
    assert_eq!(
        o.decide().reply,
        Some(Reply::Now(
            503,
            "I am the leader, can not reinitialize".into()
        ))
    );
    let mut o = Obs::new("pg2", cluster(Some("pg1")), running(true, 1000));
    o.0.request = Some(AdminRequest::Reinitialize { from_leader: true });
    let d = o.decide();
    removes_to_clone_from_leader(&d);
    // The clone follows in a quick cycle, not a loop_wait later (10 s by default).
    assert!(d.recheck_soon);
}

#[test]
fn a_request_during_a_long_action_is_answered_with_503() {
    let mut o = Obs::new("pg2", cluster(Some("pg1")), running(true, 1000));
    o.0.job = Some(Job {
        kind: JobKind::Promote,
        started_at: 0,
    });
    o.0.request = Some(AdminRequest::Restart(RestartRequest::default()));
    assert!(matches!(o.decide().reply, Some(Reply::Now(503, _))));
}

#[test]
fn leader_with_a_hung_primary_kills_it_and_releases_the_lock_after_ttl() {
    let o = Obs::new(
        "pg1",
        cluster(Some("pg1")),
        LocalPg::Initialized {
            system_id: SYSID.into(),
            process: PgProcess::NotReady,
            control: None,
        },
    );
    let serving = HaState {
        has_lock: true,
        configured_as: Some(Role::Primary),
        ..HaState::default()
    };
    let d = o.decide_from(&serving);
    assert!(d.actions.is_empty());
    let since = d.next.unresponsive_since.expect("timer started");
    let later = HaState {
        unresponsive_since: Some(since - 11_000),
        ..serving
    };
    let d = o.decide_from(&later);
    // Killed before the lock goes: a stopped postmaster's backends could still commit.
    assert_eq!(d.actions, vec![Action::KillPostgres, Action::ReleaseLock]);
    assert!(d.next.needs_rejoin);
}

fn replica_below_primary(settings: &[(&str, i64, i64)]) -> LocalPg {
    let mut local = running(true, 1000);
    if let LocalPg::Initialized {
        process: PgProcess::Running(r),
        ..
    } = &mut local
    {
        r.below_primary = settings
            .iter()
            .map(|(name, standby, primary)| SettingBelowPrimary {
                name: name.to_string(),
                standby: *standby,
                primary: *primary,
            })
            .collect();
    }
    local
}

#[test]
fn replica_below_the_primarys_shared_memory_settings_restarts() {
    // The primary was restarted with a higher max_connections before this replica: replay has
    // paused, and only a restart with the new value resumes it.
    let o = Obs::new(
        "pg2",
        cluster(Some("pg1")),
        replica_below_primary(&[("max_connections", 100, 150)]),
    );
    let d = o.decide_from(&following("pg1"));
    assert_eq!(
        d.actions,
        vec![Action::StartJob(JobKind::Restart {
            role: Role::Replica {
                leader: Some("pg1".into())
            }
        })]
    );
    assert!(
        d.message.contains("max_connections = 150 (here 100)"),
        "{}",
        d.message
    );
}

#[test]
fn paused_replica_below_the_primary_only_reports() {
    let mut o = Obs::new(
        "pg2",
        cluster(Some("pg1")),
        replica_below_primary(&[("max_wal_senders", 10, 12)]),
    );
    o.0.policy.pause = true;
    let d = o.decide_from(&following("pg1"));
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert!(d.message.contains("paused"), "{}", d.message);
}

/// pg1 leads; pg3 is tagged `replicatefrom: pg2`.
fn cascading_cluster(with_pg2: bool) -> Cluster {
    let mut keys = vec![
        kv("initialize", SYSID),
        kv("config", r#"{"ttl":10}"#),
        kv("leader", "pg1"),
        member("pg1", "primary", 1000, ""),
        member("pg3", "replica", 1000, r#","tags":{"replicatefrom":"pg2"}"#),
        kv("status", r#"{"optime":1000}"#),
    ];
    if with_pg2 {
        keys.push(member("pg2", "replica", 1000, ""));
    }
    Cluster::from_keys(&keys)
}

#[test]
fn replicatefrom_streams_from_the_named_member_with_its_slot_there() {
    let c = cascading_cluster(true);
    let mut o = Obs::new("pg3", c.clone(), running(true, 1000));
    o.0.replicatefrom = Some("pg2".into());
    let d = o.decide_from(&following("pg1"));
    assert_eq!(
        d.actions.first(),
        Some(&Action::Follow {
            leader: "pg2".into()
        })
    );
    assert!(d.message.contains("streaming from pg2"), "{}", d.message);
    // The slot lives on pg2, not on the leader.
    assert_eq!(wanted_slots(&c, "pg2"), vec!["pg3".to_string()]);
    assert_eq!(wanted_slots(&c, "pg1"), vec!["pg2".to_string()]);
}

#[test]
fn replicatefrom_falls_back_to_the_leader_when_the_member_is_gone() {
    let c = cascading_cluster(false);
    let mut o = Obs::new("pg3", c.clone(), running(true, 1000));
    o.0.replicatefrom = Some("pg2".into());
    let d = o.decide_from(&following("pg2"));
    assert_eq!(
        d.actions.first(),
        Some(&Action::Follow {
            leader: "pg1".into()
        })
    );
    // The leader keeps a slot for it again.
    assert_eq!(wanted_slots(&c, "pg1"), vec!["pg3".to_string()]);
}

#[test]
fn replicatefrom_naming_itself_or_the_leader_follows_the_leader() {
    let c = cascading_cluster(true);
    for tag in ["pg3", "pg1"] {
        let mut o = Obs::new("pg3", c.clone(), running(true, 1000));
        o.0.replicatefrom = Some(tag.into());
        let d = o.decide_from(&following("pg1"));
        assert!(
            matches!(d.actions.first(), Some(Action::ApplyConfig { role: Role::Replica { leader: Some(l) } }) if l == "pg1"),
            "{tag}: {:?}",
            d.actions
        );
    }
}

#[test]
fn a_cascading_replica_that_becomes_leader_keeps_no_slot_for_it_on_others() {
    // pg2 leads now; pg3 still names pg2: the leader keeps its slot.
    let c = Cluster::from_keys(&[
        kv("leader", "pg2"),
        member("pg1", "replica", 1000, ""),
        member("pg2", "primary", 1000, ""),
        member("pg3", "replica", 1000, r#","tags":{"replicatefrom":"pg2"}"#),
    ]);
    assert_eq!(
        wanted_slots(&c, "pg2"),
        vec!["pg1".to_string(), "pg3".to_string()]
    );
    assert!(wanted_slots(&c, "pg1").is_empty());
}

#[test]
fn a_promotion_refused_by_pre_promote_releases_the_lock_and_backs_off_for_a_ttl() {
    let mut o = Obs::new("pg2", cluster(Some("pg2")), running(true, 1000));
    o.0.finished = Some(JobOutcome {
        kind: JobKind::Promote,
        ok: false,
        message: "pre_promote script `/bin/false` exited with 1".into(),
        refused_by_pre_promote: true,
    });
    let promoting = HaState {
        has_lock: true,
        configured_as: Some(Role::Primary),
        ..HaState::default()
    };
    let d = o.decide_from(&promoting);
    assert_eq!(d.actions, vec![Action::ReleaseLock]);
    assert!(d
        .message
        .starts_with("Promotion cancelled because the pre-promote script failed"));
    assert!(!d.next.has_lock);
    assert_eq!(d.next.configured_as, None);
    assert_eq!(d.next.race_backoff_until, Some(1_000_000 + 10_000));

    // The lock is gone now: no race while the backoff lasts, even as the healthiest node.
    let mut o = Obs::new("pg2", cluster(None), running(true, 1000))
        .peers(vec![("pg1", None), ("pg3", Some((false, 1000)))]);
    let backing_off = d.next.clone();
    let d = o.decide_from(&backing_off);
    assert!(d.actions.is_empty());
    assert!(d.message.starts_with("backoff: skip leader race"));
    // One ttl later it races again.
    o.0.now += 10_000;
    let d = o.decide_from(&backing_off);
    assert_eq!(
        d.actions,
        vec![Action::AcquireLock, Action::StartJob(JobKind::Promote)]
    );
    assert_eq!(d.next.race_backoff_until, None);
}

// ---- synchronous_mode ----

/// pg1 leads; `sync` is the sync key's value if any; pg3 is tagged as `pg3_tags` says.
fn sync_cluster(leader: Option<&str>, sync: Option<&str>, pg3_extra: &str) -> Cluster {
    let mut keys = vec![
        kv("initialize", SYSID),
        kv("config", r#"{"ttl":10,"synchronous_mode":true}"#),
        member("pg1", "primary", 1000, ""),
        member("pg2", "replica", 1000, ""),
        member("pg3", "replica", 1000, pg3_extra),
        kv("status", r#"{"optime":1000}"#),
    ];
    if let Some(l) = leader {
        keys.push(kv("leader", l));
    }
    if let Some(s) = sync {
        keys.push(kv("sync", s));
    }
    Cluster::from_keys(&keys)
}

/// The leader pg1 running with these (name, sync_state) standbys streaming from it.
fn primary_with(standbys: &[(&str, &str)]) -> LocalPg {
    let mut local = running(false, 1000);
    if let LocalPg::Initialized {
        process: PgProcess::Running(r),
        ..
    } = &mut local
    {
        r.standbys = standbys
            .iter()
            .map(|(n, s)| StandbyConn {
                name: (*n).into(),
                state: "streaming".into(),
                sync_state: (*s).into(),
                flush_lsn: 1000,
            })
            .collect();
    }
    local
}

fn sync_obs(cluster: Cluster, local: LocalPg, strict: bool) -> Obs {
    let mut o = Obs::new("pg1", cluster, local);
    o.0.policy.synchronous_mode = true;
    o.0.policy.synchronous_mode_strict = strict;
    o
}

fn sync_key_writes(d: &Decision) -> Vec<Vec<String>> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::WriteSyncKey { standbys, .. } => Some(standbys.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn sync_mode_names_a_standby_before_the_key_lists_it() {
    // Cycle 1: nobody confirmed yet: the key (ours now) lists none, the setting names pg2.
    let o = sync_obs(
        sync_cluster(Some("pg1"), None, ""),
        primary_with(&[("pg2", "async"), ("pg3", "async")]),
        false,
    );
    let d = o.decide();
    assert_eq!(sync_key_writes(&d), vec![Vec::<String>::new()]);
    assert_eq!(d.next.synchronous_standby_names.as_deref(), Some("pg2"));
    let key_at = d
        .actions
        .iter()
        .position(|a| matches!(a, Action::WriteSyncKey { .. }))
        .unwrap();
    let conf_at = d
        .actions
        .iter()
        .position(|a| matches!(a, Action::ApplyConfig { .. }))
        .unwrap();
    assert!(key_at < conf_at, "{:?}", d.actions);

    // Cycle 2 notes the position the standby must reach (the first cycle with that setting in
    // force); cycle 3: pg2 is sync and flushed that far, so the key lists it.
    let o = sync_obs(
        sync_cluster(
            Some("pg1"),
            Some(r#"{"leader":"pg1","sync_standby":null}"#),
            "",
        ),
        primary_with(&[("pg2", "sync"), ("pg3", "async")]),
        false,
    );
    assert!(
        d.recheck_soon,
        "a new standby is confirmed within a quick cycle or two"
    );
    let d = o.decide_from(&d.next);
    assert!(sync_key_writes(&d).is_empty(), "{:?}", d.actions);
    assert_eq!(d.next.synchronous_since_lsn, Some(1000));
    assert!(d.recheck_soon);
    let d = o.decide_from(&d.next);
    assert_eq!(sync_key_writes(&d), vec![vec!["pg2".to_string()]]);
    assert!(!d.recheck_soon, "confirmed: back to loop_wait");
    assert_eq!(d.next.sync_rechecks, 0);
    assert_eq!(
        d.message,
        r#"Synchronous standby status assigned to ["pg2"]"#
    );

    // Cycle 3: steady: nothing to write.
    let o = sync_obs(
        sync_cluster(
            Some("pg1"),
            Some(r#"{"leader":"pg1","sync_standby":"pg2"}"#),
            "",
        ),
        primary_with(&[("pg2", "sync"), ("pg3", "async")]),
        false,
    );
    let d = o.decide_from(&d.next);
    assert!(sync_key_writes(&d).is_empty(), "{:?}", d.actions);
    assert_eq!(d.message, "no action. I am (pg1), the leader with the lock");
}

#[test]
fn a_standby_that_never_confirms_gets_a_bounded_number_of_quick_cycles() {
    let o = sync_obs(
        sync_cluster(
            Some("pg1"),
            Some(r#"{"leader":"pg1","sync_standby":null}"#),
            "",
        ),
        primary_with(&[("pg2", "async"), ("pg3", "async")]),
        false,
    );
    let mut state = o.decide().next;
    let mut quick = 1;
    for _ in 0..100 {
        let d = o.decide_from(&state);
        if !d.recheck_soon {
            break;
        }
        quick += 1;
        state = d.next;
    }
    assert!((2..=25).contains(&quick), "{quick} quick cycles");
    assert!(!o.decide_from(&state).recheck_soon);
}

#[test]
fn a_lost_sync_standby_leaves_the_key_first_then_the_setting() {
    let state = HaState {
        has_lock: true,
        synchronous_standby_names: Some("pg2".into()),
        ..HaState::default()
    };
    let key = Some(r#"{"leader":"pg1","sync_standby":"pg2"}"#);
    // Non-strict: pg3 (still async) becomes the new choice; the key drops pg2 at once.
    let o = sync_obs(
        sync_cluster(Some("pg1"), key, ""),
        primary_with(&[("pg3", "async")]),
        false,
    );
    let d = o.decide_from(&state);
    assert_eq!(sync_key_writes(&d), vec![Vec::<String>::new()]);
    assert_eq!(d.next.synchronous_standby_names.as_deref(), Some("pg3"));
    // Nobody left: non-strict falls back to asynchronous, strict makes commits wait.
    let o = sync_obs(sync_cluster(Some("pg1"), key, ""), primary_with(&[]), false);
    assert_eq!(
        o.decide_from(&state)
            .next
            .synchronous_standby_names
            .as_deref(),
        Some("")
    );
    let o = sync_obs(sync_cluster(Some("pg1"), key, ""), primary_with(&[]), true);
    let d = o.decide_from(&state);
    assert_eq!(d.next.synchronous_standby_names.as_deref(), Some("*"));
    assert_eq!(sync_key_writes(&d), vec![Vec::<String>::new()]);
}

#[test]
fn nosync_members_are_never_chosen_and_node_count_is_honoured() {
    let o = sync_obs(
        sync_cluster(Some("pg1"), None, r#","tags":{"nosync":true}"#),
        primary_with(&[("pg2", "async"), ("pg3", "async")]),
        false,
    );
    assert_eq!(
        o.decide().next.synchronous_standby_names.as_deref(),
        Some("pg2")
    );
    let mut o = sync_obs(
        sync_cluster(Some("pg1"), None, ""),
        primary_with(&[("pg2", "async"), ("pg3", "async")]),
        false,
    );
    o.0.policy.synchronous_node_count = 2;
    assert_eq!(
        o.decide().next.synchronous_standby_names.as_deref(),
        Some("2 (pg2,pg3)")
    );
}

#[test]
fn only_a_listed_sync_standby_races_in_sync_mode() {
    let key = Some(r#"{"leader":"pg1","sync_standby":"pg2"}"#);
    let mut o = Obs::new("pg3", sync_cluster(None, key, ""), running(true, 1000));
    o.0.policy.synchronous_mode = true;
    let d = o.decide();
    assert!(!d.actions.contains(&Action::AcquireLock), "{:?}", d.actions);
    assert!(
        d.message.contains("not racing: synchronous_mode is on"),
        "{}",
        d.message
    );
    // pg2 races, and pg3 being further ahead (async) does not hold it back.
    let mut o = Obs::new("pg2", sync_cluster(None, key, ""), running(true, 1000))
        .peers(vec![("pg1", None), ("pg3", Some((false, 2000)))]);
    o.0.policy.synchronous_mode = true;
    let d = o.decide();
    assert!(
        d.actions.contains(&Action::AcquireLock),
        "{}: {:?}",
        d.message,
        d.actions
    );
    // No sync key at all: nobody may take over.
    let mut o = Obs::new("pg2", sync_cluster(None, None, ""), running(true, 1000));
    o.0.policy.synchronous_mode = true;
    assert!(!o.decide().actions.contains(&Action::AcquireLock));
}

#[test]
fn a_named_candidate_in_quorum_mode_must_hold_what_the_quorum_acknowledged() {
    // Found by pgha-sim: the designated candidate of a switchover took over without checking
    // the other voters, and pg3 had a commit it lacked.
    let key = Some(r#"{"leader":"pg1","sync_standby":"pg2,pg3","quorum":1}"#);
    let mut c = sync_cluster(None, key, "");
    c.failover = Some(pgha_types::Failover {
        leader: Some("pg1".into()),
        member: Some("pg2".into()),
        scheduled_at: None,
    });
    let mut o = Obs::new("pg2", c, running(true, 1000));
    o.0.policy.synchronous_mode = true;
    o.0.policy.synchronous_quorum = true;
    assert_eq!(o.decide().actions, vec![Action::ProbePeers]);
    let o = o.peers(vec![("pg1", None), ("pg3", Some((false, 2000)))]);
    let d = o.decide();
    assert!(
        !d.actions.contains(&Action::AcquireLock),
        "{}: {:?}",
        d.message,
        d.actions
    );
    assert!(
        d.actions.contains(&Action::ClearFailover),
        "{:?}",
        d.actions
    );
}

#[test]
fn in_sync_mode_the_sync_key_names_the_new_leader_alone_before_it_promotes() {
    let key = Some(r#"{"leader":"pg1","sync_standby":"pg2"}"#);
    let mut o = Obs::new("pg2", sync_cluster(None, key, ""), running(true, 1000))
        .peers(vec![("pg1", None), ("pg3", Some((false, 1000)))]);
    o.0.policy.synchronous_mode = true;
    let d = o.decide();
    let at = |want: &dyn Fn(&Action) -> bool| d.actions.iter().position(want);
    let lock = at(&|a| *a == Action::AcquireLock).expect("races");
    let key = at(&|a| {
        *a == Action::WriteSyncKey {
            standbys: vec![],
            quorum: 0,
        }
    })
    .expect("resets the sync key");
    let promote = at(&|a| *a == Action::StartJob(JobKind::Promote)).expect("promotes");
    assert!(lock < key && key < promote, "{:?}", d.actions);
}

#[test]
fn a_named_candidate_that_is_no_sync_standby_does_not_take_over() {
    // Found by pgha-sim (seed 166): the leader died, a switchover to pg3 was still pending,
    // and pg3 (not in the sync key) promoted without the writes pg2 had acknowledged.
    let key = Some(r#"{"leader":"pg1","sync_standby":"pg2"}"#);
    let with_failover = |me: &str| {
        let mut c = sync_cluster(None, key, "");
        c.failover = Some(pgha_types::Failover {
            leader: Some("pg1".into()),
            member: Some("pg3".into()),
            scheduled_at: None,
        });
        let mut o = Obs::new(me, c, running(true, 1000)).peers(vec![
            ("pg1", None),
            ("pg2", Some((false, 1000))),
            ("pg3", Some((false, 1000))),
        ]);
        o.0.policy.synchronous_mode = true;
        o.decide()
    };
    let d = with_failover("pg3");
    assert!(
        !d.actions.contains(&Action::AcquireLock),
        "{}: {:?}",
        d.message,
        d.actions
    );
    // The sync standby does not wait for a candidate that may not take over.
    let d = with_failover("pg2");
    assert!(
        d.actions.contains(&Action::AcquireLock),
        "{}: {:?}",
        d.message,
        d.actions
    );
}

#[test]
fn turning_sync_mode_off_removes_our_sync_key_and_the_setting() {
    let state = HaState {
        has_lock: true,
        synchronous_standby_names: Some("pg2".into()),
        ..HaState::default()
    };
    let o = Obs::new(
        "pg1",
        sync_cluster(
            Some("pg1"),
            Some(r#"{"leader":"pg1","sync_standby":"pg2"}"#),
            "",
        ),
        primary_with(&[("pg2", "sync")]),
    );
    let d = o.decide_from(&state);
    assert!(
        d.actions.contains(&Action::DeleteSyncKey),
        "{:?}",
        d.actions
    );
    assert_eq!(d.next.synchronous_standby_names, None);
}

#[test]
fn a_sync_standby_behind_the_position_of_the_switch_is_not_listed_yet() {
    let state = HaState {
        has_lock: true,
        synchronous_standby_names: Some("pg2".into()),
        synchronous_since_lsn: Some(5000),
        ..HaState::default()
    };
    let o = sync_obs(
        sync_cluster(
            Some("pg1"),
            Some(r#"{"leader":"pg1","sync_standby":null}"#),
            "",
        ),
        primary_with(&[("pg2", "sync")]),
        false,
    );
    // pg2 flushed 1000 < 5000: commits acknowledged before it was named may be missing there.
    assert!(sync_key_writes(&o.decide_from(&state)).is_empty());
}

fn quorum_writes(d: &Decision) -> Vec<(Vec<String>, u64)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::WriteSyncKey { standbys, quorum } => Some((standbys.clone(), *quorum)),
            _ => None,
        })
        .collect()
}

fn quorum_obs(sync: Option<&str>, standbys: &[(&str, &str)]) -> Obs {
    let mut o = sync_obs(
        sync_cluster(Some("pg1"), sync, ""),
        primary_with(standbys),
        false,
    );
    o.0.policy.synchronous_quorum = true;
    o
}

#[test]
fn quorum_mode_widens_the_key_before_the_setting_and_tightens_it_after() {
    let both = vec!["pg2".to_string(), "pg3".to_string()];
    // Nothing in force yet: the key demands every voter until ANY 1 is.
    let d = quorum_obs(None, &[("pg2", "async"), ("pg3", "async")]).decide();
    assert_eq!(quorum_writes(&d), vec![(both.clone(), 2)]);
    assert_eq!(
        d.next.synchronous_standby_names.as_deref(),
        Some("ANY 1 (pg2,pg3)")
    );
    let o = quorum_obs(
        Some(r#"{"leader":"pg1","quorum":2,"sync_standby":"pg2,pg3"}"#),
        &[("pg2", "quorum"), ("pg3", "quorum")],
    );
    let d2 = o.decide_from(&d.next);
    assert_eq!(quorum_writes(&d2), vec![(both.clone(), 1)]);
    // pg3 leaves: ANY 1 (pg2) comes while the key still counts pg3, until it is in force.
    let o = quorum_obs(
        Some(r#"{"leader":"pg1","quorum":1,"sync_standby":"pg2,pg3"}"#),
        &[("pg2", "quorum")],
    );
    let d3 = o.decide_from(&d2.next);
    assert!(quorum_writes(&d3).is_empty(), "{:?}", d3.actions);
    assert_eq!(
        d3.next.synchronous_standby_names.as_deref(),
        Some("ANY 1 (pg2)")
    );
    let d4 = o.decide_from(&d3.next);
    assert_eq!(quorum_writes(&d4), vec![(vec!["pg2".to_string()], 0)]);
}

#[test]
fn a_quorum_candidate_must_see_enough_voters_none_ahead() {
    let key = Some(r#"{"leader":"pg1","quorum":1,"sync_standby":"pg2,pg3"}"#);
    let obs = |peers: Vec<(&str, Option<(bool, u64)>)>| {
        let mut o = Obs::new("pg2", sync_cluster(None, key, ""), running(true, 1000)).peers(peers);
        o.0.policy.synchronous_mode = true;
        o.0.policy.synchronous_quorum = true;
        o
    };
    let d = obs(vec![("pg1", None), ("pg3", Some((false, 1000)))]).decide();
    assert!(d.actions.contains(&Action::AcquireLock), "{}", d.message);
    let d = obs(vec![("pg1", None), ("pg3", None)]).decide();
    assert!(!d.actions.contains(&Action::AcquireLock));
    assert!(
        d.message.contains("quorum not reached, I see 0 of the 1"),
        "{}",
        d.message
    );
    let d = obs(vec![("pg1", None), ("pg3", Some((false, 2000)))]).decide();
    assert!(!d.actions.contains(&Action::AcquireLock), "{}", d.message);
}

// ---- standby_cluster ----

fn standby_policy(o: &mut Obs) {
    o.0.policy.standby_cluster = Some(pgha_types::StandbyCluster {
        host: Some("10.0.0.1".into()),
        port: Some(5432),
        ..Default::default()
    });
}

#[test]
fn a_standby_leader_stays_in_recovery_and_a_primary_is_demoted_into_one() {
    let mut o = Obs::new("pg1", cluster(Some("pg1")), running(true, 1000));
    standby_policy(&mut o);
    let d = o.decide();
    assert_eq!(
        d.message,
        "no action. I am (pg1), the standby leader with the lock"
    );
    assert!(!d
        .actions
        .iter()
        .any(|a| matches!(a, Action::StartJob(JobKind::Promote))));
    assert!(d.actions.contains(&Action::ApplyConfig {
        role: Role::StandbyLeader
    }));
    let mut o = Obs::new("pg1", cluster(Some("pg1")), running(false, 1000));
    standby_policy(&mut o);
    let d = o.decide();
    assert!(
        d.actions.iter().any(|a| matches!(a, Action::Stop { .. })),
        "{:?}",
        d.actions
    );
    // Without standby_cluster the same standby leader is promoted.
    let d = Obs::new("pg1", cluster(Some("pg1")), running(true, 1000)).decide();
    assert!(d.actions.contains(&Action::StartJob(JobKind::Promote)));
}

#[test]
fn a_standby_cluster_race_winner_takes_the_lock_without_promoting() {
    let mut o = Obs::new("pg2", cluster(None), running(true, 1000))
        .peers(vec![("pg1", None), ("pg3", Some((false, 900)))]);
    standby_policy(&mut o);
    let d = o.decide();
    assert!(d.actions.contains(&Action::AcquireLock), "{}", d.message);
    assert!(!d.actions.contains(&Action::StartJob(JobKind::Promote)));
    assert_eq!(d.message, "acquired session lock as a standby leader");
}

#[test]
fn a_new_standby_cluster_bootstraps_from_the_remote_primary() {
    let mut keys = Cluster::default();
    keys.members.clear();
    let mut o = Obs::new("pg1", keys, LocalPg::Empty);
    standby_policy(&mut o);
    let d = o.decide();
    assert_eq!(
        d.actions,
        vec![
            Action::TakeInitializeLock,
            Action::StartJob(JobKind::BootstrapStandby)
        ]
    );
}

fn unusable() -> WatchdogView {
    WatchdogView::Unusable("watchdog.device /dev/wd cannot be opened: No such file".into())
}

#[test]
fn watchdog_is_activated_before_taking_the_lock() {
    for view in [WatchdogView::Automatic, WatchdogView::Required] {
        let d = Obs::new("pg2", cluster(None), running(true, 1000))
            .watchdog(view)
            .peers(vec![("pg1", None), ("pg3", Some((false, 1000)))])
            .decide();
        assert_eq!(
            d.actions,
            vec![
                Action::ActivateWatchdog,
                Action::AcquireLock,
                Action::StartJob(JobKind::Promote)
            ]
        );
    }
}

#[test]
fn leader_keeps_its_watchdog_active_unless_paused() {
    let o = Obs::new("pg1", cluster(Some("pg1")), running(false, 1000))
        .watchdog(WatchdogView::Required);
    let d = o.decide();
    assert_eq!(d.actions.first(), Some(&Action::ActivateWatchdog));
    assert_eq!(d.message, "no action. I am (pg1), the leader with the lock");
    let mut paused = o;
    paused.0.policy.pause = true;
    assert!(!paused.decide().actions.contains(&Action::ActivateWatchdog));
}

#[test]
fn watchdog_off_is_never_activated() {
    let d = Obs::new("pg1", cluster(Some("pg1")), running(false, 1000)).decide();
    assert!(!d.actions.contains(&Action::ActivateWatchdog));
}

#[test]
fn required_watchdog_that_is_unusable_keeps_a_node_out_of_the_race() {
    let d = Obs::new("pg2", cluster(None), running(true, 1000))
        .watchdog(unusable())
        .peers(vec![])
        .decide();
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert!(!d.next.has_lock);
    assert!(d.message.contains("watchdog.device"), "{}", d.message);
}

#[test]
fn required_watchdog_that_is_unusable_makes_the_leader_give_up() {
    // Still a replica (activation failed before the promotion): release the lock.
    let d = Obs::new("pg1", cluster(Some("pg1")), running(true, 1000))
        .watchdog(unusable())
        .decide();
    assert_eq!(d.actions, vec![Action::ReleaseLock]);
    assert!(!d.next.has_lock);
    assert!(
        d.message
            .starts_with("Not promoting self because watchdog could not be activated"),
        "{}",
        d.message
    );
    // A running primary stops at once and then gives the lock back.
    let d = Obs::new("pg1", cluster(Some("pg1")), running(false, 1000))
        .watchdog(unusable())
        .decide();
    assert_eq!(
        d.actions,
        vec![
            Action::Stop {
                mode: StopMode::Immediate
            },
            Action::ReleaseLock
        ]
    );
    assert!(d.next.needs_rejoin);
    assert!(d
        .message
        .starts_with("Demoting self because watchdog could not be activated"));
    // Paused: nothing is demoted automatically, as with Patroni.
    let mut o = Obs::new("pg1", cluster(Some("pg1")), running(false, 1000)).watchdog(unusable());
    o.0.policy.pause = true;
    assert!(!o.decide().actions.contains(&Action::ReleaseLock));
}

#[test]
fn required_watchdog_that_is_unusable_does_not_bootstrap() {
    let empty = Cluster::from_keys(&[]);
    let d = Obs::new("pg1", empty.clone(), LocalPg::Empty)
        .watchdog(unusable())
        .decide();
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert!(d.message.contains("watchdog"), "{}", d.message);
    let d = Obs::new("pg1", empty, LocalPg::Empty)
        .watchdog(WatchdogView::Required)
        .decide();
    assert_eq!(d.actions.first(), Some(&Action::TakeInitializeLock));
}

#[test]
fn designated_candidate_without_its_required_watchdog_lets_the_others_race() {
    let c = with_failover(cluster(None), r#"{"leader":"pg1","member":"pg2"}"#);
    let d = Obs::new("pg2", c.clone(), running(true, 900))
        .watchdog(unusable())
        .decide();
    assert_eq!(d.actions, vec![Action::ClearFailover]);
    assert!(d.message.contains("watchdog.device"), "{}", d.message);
    let d = Obs::new("pg2", c, running(true, 900))
        .watchdog(WatchdogView::Required)
        .decide();
    assert_eq!(
        d.actions,
        vec![
            Action::ActivateWatchdog,
            Action::AcquireLock,
            Action::StartJob(JobKind::Promote)
        ]
    );
}

/// The decision stops postgres at once and removes its data directory to clone it again from
/// the leader.
fn removes_to_clone_from_leader(d: &Decision) {
    assert_eq!(
        d.actions,
        vec![
            Action::Stop {
                mode: StopMode::Immediate
            },
            Action::RemoveDataDirectory
        ]
    );
    assert!(d.next.clone_from_leader);
}

/// The decision stops postgres (fast) to rejoin, saying `why`.
fn stops_to_rewind(d: &Decision, why: &str) {
    assert_eq!(
        d.actions,
        vec![Action::Stop {
            mode: StopMode::Fast
        }]
    );
    assert!(d.next.needs_rejoin);
    assert!(d.message.contains(why), "{}", d.message);
}

/// A replica, not streaming, on timeline 1 at `pos`, under a leader on timeline 2 whose
/// history says timeline 1 ended at 5000.
fn replica_after_a_fork(pos: u64) -> Obs {
    let mut c = cluster(Some("pg1"));
    c.history = vec![pgha_types::HistoryEntry {
        timeline: 1,
        lsn: 5000,
        reason: "no recovery target specified".into(),
        timestamp: None,
        new_leader: Some("pg1".into()),
    }];
    let mut local = running(true, pos);
    if let LocalPg::Initialized {
        process: PgProcess::Running(r),
        ..
    } = &mut local
    {
        r.streaming = false;
    }
    Obs::new("pg2", c, local)
}

#[test]
fn a_replica_past_the_new_leaders_fork_point_stops_to_rewind() {
    let o = replica_after_a_fork(6000);
    // Not at once: between two walreceiver runs a healthy replica can look like this.
    let d = o.decide_from(&following("pg1"));
    assert!(!d.actions.iter().any(|a| matches!(a, Action::Stop { .. })));
    let since = d.next.diverged_since.expect("timer started");
    let later = HaState {
        diverged_since: Some(since - 10_000),
        ..following("pg1")
    };
    let d = o.decide_from(&later);
    stops_to_rewind(&d, "past the end of timeline 1");

    // Behind the fork point it just follows the new timeline; streaming resets the timer.
    let behind = replica_after_a_fork(4000);
    let d = behind.decide_from(&later);
    assert!(!d.actions.iter().any(|a| matches!(a, Action::Stop { .. })));
    assert_eq!(d.next.diverged_since, None);
}

/// Two promotions that picked the same timeline number: the replica is on timeline 2 (and
/// behind the leader's position), but its own history says timeline 1 ended elsewhere.
#[test]
fn a_replica_whose_history_forked_on_the_same_timeline_number_stops_to_rewind() {
    let mut o = replica_after_a_fork(4000);
    o.0.dcs = match o.0.dcs {
        DcsView::Reachable(mut c) => {
            c.history.push(pgha_types::HistoryEntry {
                timeline: 2,
                lsn: 9000,
                reason: "no recovery target specified".into(),
                timestamp: None,
                new_leader: Some("pg1".into()),
            });
            DcsView::Reachable(c)
        }
        other => other,
    };
    let set = |o: &mut Obs, tl: u32, history: Vec<(u32, u64)>| {
        if let LocalPg::Initialized {
            process: PgProcess::Running(r),
            ..
        } = &mut o.0.local
        {
            r.timeline = tl;
            r.history = history;
        }
    };
    // The same history as the leader's: it just follows (it is behind the fork point).
    set(&mut o, 2, vec![(1, 5000)]);
    let later = HaState {
        diverged_since: Some(o.0.now - 30_000),
        ..following("pg1")
    };
    let d = o.decide_from(&later);
    assert!(!d.actions.iter().any(|a| matches!(a, Action::Stop { .. })));
    assert_eq!(d.next.diverged_since, None);

    // Timeline 1 ended at 4500 in its own history, at 5000 in the leader's.
    set(&mut o, 2, vec![(1, 4500)]);
    let d = o.decide_from(&following("pg1"));
    assert!(
        !d.actions.iter().any(|a| matches!(a, Action::Stop { .. })),
        "not at once"
    );
    let d = o.decide_from(&later);
    stops_to_rewind(
        &d,
        "timeline 1 ended at 0/1194 in my history but at 0/1388 in the leader's",
    );
}

#[test]
fn a_leader_proven_dead_has_its_key_removed_without_waiting_for_the_lease() {
    let c = cluster(Some("pg1"));
    let lease = c.leader.as_ref().map(|l| l.lease);
    let mut o = Obs::new("pg2", c, running(true, 1000));
    o.0.dead_leader = Some("pg1".into());
    let d = o.decide_from(&following("pg1"));
    assert_eq!(
        d.actions,
        vec![Action::RemoveDeadLeader {
            leader: "pg1".into(),
            lease: lease.expect("a leader key"),
        }]
    );
    // Not in maintenance mode, and not for another member than the one holding the key.
    o.0.policy.pause = true;
    assert!(!o
        .decide_from(&following("pg1"))
        .actions
        .iter()
        .any(|a| matches!(a, Action::RemoveDeadLeader { .. })));
    o.0.policy.pause = false;
    o.0.dead_leader = Some("pg3".into());
    assert!(!o
        .decide_from(&following("pg1"))
        .actions
        .iter()
        .any(|a| matches!(a, Action::RemoveDeadLeader { .. })));
}

#[test]
fn a_replica_that_streamed_the_new_timeline_is_not_past_its_fork() {
    // It streamed on timeline 2; then the leader died and the walreceiver stopped: the probe
    // falls back to the control file's timeline 1, its WAL past where timeline 1 ended.
    let o = replica_after_a_fork(6000);
    let streamed = HaState {
        streamed_timeline: Some(2),
        diverged_since: Some(1),
        ..following("pg1")
    };
    let d = o.decide_from(&streamed);
    assert!(
        !d.actions.iter().any(|a| matches!(a, Action::Stop { .. })),
        "{:?}",
        d.actions
    );
    assert_eq!(d.next.diverged_since, None);
}

fn leader_slot_members(d: &Decision) -> Vec<String> {
    d.actions
        .iter()
        .find_map(|a| match a {
            Action::SyncSlots(t) => Some(t.members.clone()),
            _ => None,
        })
        .expect("the leader keeps its slots")
}

#[test]
fn a_departed_members_slot_stays_for_member_slots_ttl() {
    let state = HaState {
        has_lock: true,
        configured_as: Some(Role::Primary),
        ..HaState::default()
    };
    let o = Obs::new("pg1", cluster(Some("pg1")), running(false, 1000));
    let d = o.decide_from(&state);
    assert_eq!(leader_slot_members(&d), vec!["pg2", "pg3"]);

    // pg3's key expired (its node is down): its slot stays, and the status key says so.
    let mut gone = cluster(Some("pg1"));
    gone.members.retain(|m| m.name != "pg3");
    let mut o = Obs::new("pg1", gone.clone(), running(false, 1000));
    o.0.now += 60_000;
    let d = o.decide_from(&d.next);
    assert_eq!(leader_slot_members(&d), vec!["pg2", "pg3"]);
    assert!(d.next.member_seen.as_ref().unwrap().contains_key("pg3"));

    // Past member_slots_ttl (30 min by default) it goes.
    o.0.now += 1_800_000;
    let d = o.decide_from(&d.next);
    assert_eq!(leader_slot_members(&d), vec!["pg2"]);

    // member_slots_ttl: 0 drops it at once, as before Patroni 4.
    let mut o = Obs::new("pg1", gone.clone(), running(false, 1000));
    o.0.policy.member_slots_ttl = 0;
    let d = o.decide_from(&state);
    assert_eq!(leader_slot_members(&d), vec!["pg2"]);

    // A new leader keeps the slots its predecessor retained (status.retain_slots).
    let mut c = gone;
    c.status.retain_slots = vec!["pg1".into(), "pg2".into(), "pg3".into()];
    let o = Obs::new("pg1", c, running(false, 1000));
    let d = o.decide_from(&state);
    assert_eq!(leader_slot_members(&d), vec!["pg2", "pg3"]);
    // A replica remembers nothing.
    let o = Obs::new("pg2", cluster(Some("pg1")), running(true, 1000));
    assert_eq!(o.decide().next.member_seen, None);
}

#[test]
fn a_replica_that_cannot_stream_from_a_running_leader_rejoins_after_a_long_while() {
    // Same timeline as the leader (2), not streaming: e.g. two promotions that picked the same
    // timeline number from different pasts. The rejoin compares the histories.
    let mut o = replica_after_a_fork(4000);
    if let LocalPg::Initialized {
        process: PgProcess::Running(r),
        ..
    } = &mut o.0.local
    {
        r.timeline = 2;
    }
    let d = o.decide_from(&following("pg1"));
    assert!(!d.actions.iter().any(|a| matches!(a, Action::Stop { .. })));
    let since = d.next.stuck_since.expect("timer started");
    // Less than 30 s (and 3 × ttl): still waiting.
    let state = HaState {
        stuck_since: Some(since - 20_000),
        ..following("pg1")
    };
    assert!(!o
        .decide_from(&state)
        .actions
        .iter()
        .any(|a| matches!(a, Action::Stop { .. })));
    let state = HaState {
        stuck_since: Some(since - 31_000),
        ..following("pg1")
    };
    let d = o.decide_from(&state);
    assert_eq!(
        d.actions,
        vec![Action::Stop {
            mode: StopMode::Fast
        }]
    );
    assert!(d.next.needs_rejoin);
    assert!(
        d.message.contains("not streaming from pg1"),
        "{}",
        d.message
    );
    // A nostream replica never streams: nothing to heal.
    let mut c = match &o.0.dcs {
        DcsView::Reachable(c) => c.as_ref().clone(),
        _ => unreachable!(),
    };
    c.members.retain(|m| m.name != "pg2");
    c.members.extend(
        Cluster::from_keys(&[member(
            "pg2",
            "replica",
            4000,
            r#","tags":{"nostream":true}"#,
        )])
        .members,
    );
    o.0.dcs = DcsView::Reachable(Box::new(c));
    assert!(!o
        .decide_from(&state)
        .actions
        .iter()
        .any(|a| matches!(a, Action::Stop { .. })));
}

/// Cut off again after a rejoin that found nothing to rewind (two promotions forked to the same
/// timeline number at the same position: the histories agree, the WAL does not).
#[test]
fn a_replica_cut_off_again_after_a_rejoin_is_cloned_again_only_when_allowed() {
    let mut o = replica_after_a_fork(4000);
    if let LocalPg::Initialized {
        process: PgProcess::Running(r),
        ..
    } = &mut o.0.local
    {
        r.timeline = 2;
    }
    let rejoined = HaState {
        stuck_rejoined: true,
        ..following("pg1")
    };
    let d = o.decide_from(&rejoined);
    let since = d.next.stuck_since.expect("timer started");
    // The shorter grace after a rejoin (ttl here), not 3 × ttl.
    let state = HaState {
        stuck_since: Some(since - 31_000),
        ..rejoined.clone()
    };
    // By default (as Patroni) the data directory is never removed: the operator is told.
    let d = o.decide_from(&state);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert!(d.message.contains("run `pghactl reinit`"), "{}", d.message);
    assert!(d.next.stuck_rejoined);
    let again = d.next.clone();
    let d = o.decide_from(&again);
    assert!(
        !d.message.contains("reinit"),
        "said once per grace: {}",
        d.message
    );
    // remove_data_directory_on_diverged_timelines: clone it again, from the leader.
    o.0.reclone_on_divergence = true;
    let d = o.decide_from(&state);
    removes_to_clone_from_leader(&d);
    assert!(!d.next.needs_rejoin && !d.next.stuck_rejoined);
    // Streaming in between clears it: the next time it is a plain rejoin again.
    let mut streaming = Obs(o.0.clone());
    if let LocalPg::Initialized {
        process: PgProcess::Running(r),
        ..
    } = &mut streaming.0.local
    {
        r.streaming = true;
    }
    assert!(!streaming.decide_from(&rejoined).next.stuck_rejoined);
    // The first time it is cut off it rejoins, and remembers that it did.
    let first = HaState {
        stuck_since: Some(since - 31_000),
        ..following("pg1")
    };
    let d = o.decide_from(&first);
    stops_to_rewind(&d, "not streaming from pg1");
    assert!(d.next.stuck_rejoined);
}
