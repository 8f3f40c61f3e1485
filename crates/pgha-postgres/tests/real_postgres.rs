//! One end-to-end run against real PostgreSQL 15 binaries: initdb → config → start → roles →
//! probe → slots → base backup of a standby → promote it → timeline history → crash the old
//! primary → single-user crash recovery → pg_rewind → follow the new primary → stop.
//!
//! PostgreSQL refuses to run as root, so under root every command runs as the `postgres` OS
//! user (`LocalPostgres::with_os_user`). Skipped (with a note) when neither root nor postgres,
//! or when the binaries are missing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgha_postgres::{
    build_parameters, ConnTarget, LocalPostgres, PgParams, PgUser, ServerConfig, StandbyConfig,
    StopMode,
};
use serde_json::json;

mod common;
use common::KillOnDrop;

const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

fn params(base: &Path, name: &str, port: u16) -> PgParams {
    PgParams {
        name: name.into(),
        scope: "pgha-test".into(),
        data_dir: base.join(name).join("data"),
        config_dir: base.join(name).join("data"),
        bin_dir: PathBuf::from(BIN_DIR),
        listen_addresses: "127.0.0.1".into(),
        port,
        local_host: "127.0.0.1".into(),
        superuser: PgUser {
            username: "postgres".into(),
            password: Some("su-pass".into()),
            ..Default::default()
        },
        replication: PgUser {
            username: "replicator".into(),
            password: Some("repl:pass".into()),
            ..Default::default()
        },
        rewind: Some(PgUser {
            username: "rewind_user".into(),
            password: Some("rewind-pass".into()),
            ..Default::default()
        }),
        pgpass: base.join(name).join("pgpass"),
        pg_ctl_timeout: Duration::from_secs(30),
        log_file: base.join(name).join("postgres.log"),
        initdb_options: vec![
            "--encoding=UTF8".into(),
            "--locale=C".into(),
            "--no-sync".into(),
        ],
        basebackup_options: vec![],
    }
}

fn server_config(
    base: &Path,
    name: &str,
    port: u16,
    standby: Option<StandbyConfig>,
) -> ServerConfig {
    let dynamic = json!({"shared_buffers": "16MB", "max_connections": 30, "wal_log_hints": true});
    let local =
        json!({"unix_socket_directories": base.join(name).display().to_string(), "fsync": false});
    let (parameters, command_line) = build_parameters(
        dynamic.as_object().expect("object"),
        local.as_object().expect("object"),
        "127.0.0.1",
        port,
        "pgha-test",
        15,
    );
    ServerConfig {
        parameters,
        command_line,
        hba: vec![
            "local all all trust".into(),
            "host all all 127.0.0.1/32 scram-sha-256".into(),
            "host replication replicator 127.0.0.1/32 scram-sha-256".into(),
        ],
        standby,
        ..ServerConfig::default()
    }
}

fn make_member_dir(base: &Path, name: &str, as_root: bool) {
    let dir = base.join(name);
    std::fs::create_dir(&dir).expect("member dir");
    if as_root {
        let u = nix::unistd::User::from_name("postgres")
            .expect("passwd")
            .expect("postgres user");
        nix::unistd::chown(&dir, Some(u.uid), Some(u.gid)).expect("chown member dir");
    }
}

/// Whether these tests can run here: `Some(as_root)`, or `None` (with a note) when not.
fn runnable() -> Option<bool> {
    if !Path::new(BIN_DIR).join("initdb").exists() {
        eprintln!("NOTE: skipping: PostgreSQL 15 binaries not found in {BIN_DIR}");
        return None;
    }
    let euid = nix::unistd::geteuid();
    let as_root = euid.is_root();
    let is_postgres = nix::unistd::User::from_uid(euid)
        .ok()
        .flatten()
        .is_some_and(|u| u.name == "postgres");
    if !as_root && !is_postgres {
        eprintln!(
            "NOTE: skipping: real-postgres test needs to run as root or as the postgres user"
        );
        return None;
    }
    Some(as_root)
}

/// A world-traversable temporary directory the `postgres` user can work in.
fn test_dir() -> tempfile::TempDir {
    let tmp = tempfile::Builder::new()
        .prefix("pgha-pg-test")
        .tempdir_in("/tmp")
        .expect("temp dir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    tmp
}

fn local_postgres(p: &PgParams, as_root: bool) -> LocalPostgres {
    let pg = LocalPostgres::new(p.clone());
    if as_root {
        pg.with_os_user("postgres").expect("postgres user")
    } else {
        pg
    }
}

/// One member's directory, port, parameters and server handle; its postmaster is killed when
/// the guard drops.
fn member(base: &Path, name: &str, as_root: bool) -> (PgParams, u16, KillOnDrop, LocalPostgres) {
    make_member_dir(base, name, as_root);
    let port = free_port();
    let p = params(base, name, port);
    let guard = KillOnDrop(p.data_dir.clone());
    let pg = local_postgres(&p, as_root);
    (p, port, guard, pg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_with_real_postgres() {
    let Some(as_root) = runnable() else { return };
    let tmp = test_dir();
    let base = tmp.path().to_path_buf();
    let (p1, port1, _kill1, pg1) = member(&base, "node1", as_root);
    let (_, port2, _kill2, pg2) = member(&base, "node2", as_root);

    // Primary.
    pg1.initdb().await.expect("initdb");
    let mut cfg1 = server_config(&base, "node1", port1, None);
    // Settings this postgres rejects stay out of postgresql.conf (it would not start).
    for (k, v) in [
        ("work_mem", "abc"),
        ("wal_keep_segments", "8"),
        ("archive_mode", "maybe"),
        ("pgha_test.custom", "1"),
    ] {
        cfg1.parameters.insert(k.into(), v.into());
    }
    let outcome = pg1.write_config(&mut cfg1).await.expect("write_config");
    assert!(outcome.changed);
    let conf = std::fs::read_to_string(p1.data_dir.join("postgresql.conf")).expect("conf");
    for rejected in ["work_mem", "wal_keep_segments", "archive_mode"] {
        assert!(!conf.contains(rejected), "{rejected} written:\n{conf}");
        assert!(!cfg1.parameters.contains_key(rejected));
    }
    assert!(conf.contains("pgha_test.custom = '1'"), "{conf}");
    assert!(conf.contains("shared_buffers = '16MB'"), "{conf}");
    assert!(p1.data_dir.join("postgresql.base.conf").exists());
    pg1.start(&cfg1).await.expect("start");
    pg1.wait_ready(Duration::from_secs(30))
        .await
        .expect("primary ready");
    let pid = pg1.postmaster_pid().expect("postmaster pid");
    let session =
        |p: i32| nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(p))).expect("getsid");
    assert_ne!(
        session(pid),
        session(std::process::id() as i32),
        "postmaster runs in its own session"
    );
    let opts = pg1.last_start_command_line().expect("postmaster.opts");
    assert_eq!(opts.get("max_connections").map(String::as_str), Some("30"));
    assert_eq!(
        opts.get("wal_level").map(String::as_str),
        Some("hot_standby")
    );
    assert!(matches!(
        pg1.start(&cfg1).await,
        Err(pgha_postgres::PgError::AlreadyRunning { .. })
    ));

    pg1.bootstrap_roles().await.expect("bootstrap_roles");
    pg1.bootstrap_roles()
        .await
        .expect("bootstrap_roles is idempotent");

    let probe = pg1.probe().await.expect("probe");
    assert!(!probe.in_recovery);
    assert_eq!(probe.timeline, 1);
    assert!(probe.wal_lsn.is_some());
    assert!(probe.server_version >= 150000, "{}", probe.server_version);
    assert!(
        probe.postmaster_start_time.ends_with("+00:00"),
        "{}",
        probe.postmaster_start_time
    );
    assert!(
        probe.pending_restart.is_empty(),
        "{:?}",
        probe.pending_restart
    );

    pg1.create_physical_slot("node2")
        .await
        .expect("create slot");
    let slots = pg1.probe().await.expect("probe").slots;
    assert!(
        slots
            .iter()
            .any(|s| s.name == "node2" && !s.active && s.restart_lsn.is_some()),
        "{slots:?}"
    );

    // Nothing changes when the same configuration is written again.
    let again = pg1.write_config(&mut cfg1).await.expect("rewrite");
    assert!(!again.changed, "{again:?}");
    assert!(again.command_line_changes.is_empty(), "{again:?}");

    // A standby cloned from it, streaming through the slot.
    let source = ConnTarget {
        host: "127.0.0.1".into(),
        port: port1,
    };
    pg2.basebackup(&source).await.expect("basebackup");
    let mut cfg2 = server_config(
        &base,
        "node2",
        port2,
        Some(StandbyConfig {
            primary_host: "127.0.0.1".into(),
            primary_port: port1,
            primary_slot_name: Some("node2".into()),
        }),
    );
    pg2.write_config(&mut cfg2).await.expect("standby config");
    pg2.start(&cfg2).await.expect("start standby");
    pg2.wait_ready(Duration::from_secs(30))
        .await
        .expect("standby ready");
    let mut streaming = false;
    for _ in 0..50 {
        let p = pg2.probe().await.expect("standby probe");
        assert!(p.in_recovery);
        assert_eq!(p.timeline, 1);
        if p.receiver_streaming && p.replay_lsn.is_some() {
            assert_eq!(p.receiver_conninfo_host.as_deref(), Some("127.0.0.1"));
            streaming = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(streaming, "standby never streamed");
    let rep = pg1.probe().await.expect("probe").replication;
    assert!(
        rep.iter()
            .any(|r| r.application_name == "node2" && r.usename == "replicator"),
        "{rep:?}"
    );

    // The slot is in use now: not dropped.
    let dropped = pg1.drop_inactive_slot("node2").await.expect("drop slot");
    assert!(!dropped, "an active slot was dropped");

    // Promote the standby: new timeline, with history.
    pg2.promote(Duration::from_secs(30)).await.expect("promote");
    let p = pg2.probe().await.expect("probe after promote");
    assert!(!p.in_recovery);
    assert_eq!(p.timeline, 2);
    pg2.checkpoint().await.expect("checkpoint");
    let target2 = ConnTarget {
        host: "127.0.0.1".into(),
        port: port2,
    };
    let history = pg2.timeline_history(&target2, 2).await.expect("history");
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].timeline, 1);

    // The old standby left: its slot becomes inactive and is dropped.
    let mut dropped = false;
    for _ in 0..50 {
        dropped = pg1.drop_inactive_slot("node2").await.expect("drop slot");
        if dropped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dropped, "the inactive slot was not dropped");

    // The old primary crashes, recovers in single-user mode, rewinds onto the new timeline
    // and follows the new primary.
    pg1.stop(StopMode::Immediate, Duration::from_secs(30))
        .await
        .expect("immediate stop");
    assert!(!pg1
        .controldata()
        .await
        .expect("controldata")
        .is_clean_shutdown());
    pg1.crash_recovery()
        .await
        .expect("crash recovery (GUCs from postmaster.opts)");
    let cd = pg1.controldata().await.expect("controldata");
    assert_eq!(cd.cluster_state, "shut down");
    assert_eq!(cd.timeline, 1);
    assert!(cd.wal_log_hints(), "command-line GUCs reached pg_control");
    pg1.rewind(&target2).await.expect("pg_rewind");
    let conf = std::fs::read_to_string(p1.data_dir.join("postgresql.conf")).expect("conf");
    assert!(
        conf.contains(&base.join("node1").display().to_string()),
        "our config was restored: {conf}"
    );
    let mut cfg1_standby = server_config(
        &base,
        "node1",
        port1,
        Some(StandbyConfig {
            primary_host: "127.0.0.1".into(),
            primary_port: port2,
            primary_slot_name: None,
        }),
    );
    let outcome = pg1
        .write_config(&mut cfg1_standby)
        .await
        .expect("standby config");
    assert!(outcome.standby_changed);
    pg1.start(&cfg1_standby).await.expect("start rewound node");
    pg1.wait_ready(Duration::from_secs(30))
        .await
        .expect("rewound node ready");
    let mut followed = false;
    for _ in 0..50 {
        let p = pg1.probe().await.expect("probe rewound node");
        assert!(p.in_recovery);
        if p.receiver_streaming && p.timeline == 2 {
            followed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(followed, "rewound node never streamed on timeline 2");

    pg1.stop(StopMode::Fast, Duration::from_secs(30))
        .await
        .expect("stop");
    assert!(pg1.postmaster_pid().is_none());
    pg1.stop(StopMode::Fast, Duration::from_secs(5))
        .await
        .expect("stopping a stopped server is fine");
    let cd = pg1.controldata().await.expect("controldata");
    assert_eq!(cd.cluster_state, "shut down in recovery");
    assert!(cd.is_clean_shutdown());
    assert_eq!(cd.end_of_wal_hint().0, 2);
    pg2.stop(StopMode::Fast, Duration::from_secs(30))
        .await
        .expect("stop new primary");
    assert_eq!(
        pg2.controldata().await.expect("controldata").cluster_state,
        "shut down"
    );
}

/// `promote` gives up as soon as the postmaster is gone: `pg_ctl promote -w` alone would wait
/// its whole timeout on a server that died during the promotion (the lease guard killed it,
/// say), and the HA loop with it. The standby's startup process is stopped so that the
/// promotion cannot finish, then the postmaster is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_returns_when_the_postmaster_dies_meanwhile() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let Some(as_root) = runnable() else { return };
    let tmp = test_dir();
    let base = tmp.path().to_path_buf();
    let (_, port1, _kill1, pg1) = member(&base, "node1", as_root);
    let (_, port2, _kill2, pg2) = member(&base, "node2", as_root);
    pg1.initdb().await.expect("initdb");
    let mut cfg1 = server_config(&base, "node1", port1, None);
    pg1.write_config(&mut cfg1).await.expect("write_config");
    pg1.start(&cfg1).await.expect("start");
    pg1.wait_ready(Duration::from_secs(30))
        .await
        .expect("ready");
    pg1.bootstrap_roles().await.expect("bootstrap_roles");
    let source = ConnTarget {
        host: "127.0.0.1".into(),
        port: port1,
    };
    pg2.basebackup(&source).await.expect("basebackup");
    let standby = StandbyConfig {
        primary_host: "127.0.0.1".into(),
        primary_port: port1,
        primary_slot_name: None,
    };
    let mut cfg2 = server_config(&base, "node2", port2, Some(standby));
    pg2.write_config(&mut cfg2).await.expect("standby config");
    pg2.start(&cfg2).await.expect("start standby");
    pg2.wait_ready(Duration::from_secs(30))
        .await
        .expect("standby ready");

    let postmaster = pg2.postmaster_pid().expect("standby postmaster");
    let children =
        std::fs::read_to_string(format!("/proc/{postmaster}/task/{postmaster}/children"))
            .expect("postmaster's children");
    let startup = children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.contains("startup"))
        })
        .expect("the standby's startup process");
    kill(Pid::from_raw(startup), Signal::SIGSTOP).expect("SIGSTOP startup");
    // The startup process ignores postmaster death while stopped: end it whatever happens.
    struct KillPid(i32);
    impl Drop for KillPid {
        fn drop(&mut self) {
            let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
    let _startup = KillPid(startup);

    let promoting = tokio::spawn(async move { pg2.promote(Duration::from_secs(60)).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!promoting.is_finished(), "the promotion cannot finish yet");
    kill(Pid::from_raw(postmaster), Signal::SIGKILL).expect("kill -9 postmaster");
    let result = tokio::time::timeout(Duration::from_secs(20), promoting)
        .await
        .expect("promote returns soon after the postmaster died")
        .expect("promote task");
    assert!(
        matches!(result, Err(pgha_postgres::PgError::NotRunning)),
        "{result:?}"
    );
}
