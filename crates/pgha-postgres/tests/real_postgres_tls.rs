//! The agent's own connections over TLS against a real PostgreSQL 15 with `ssl = on` and only
//! `hostssl ... scram-sha-256 clientcert=verify-ca` TCP rules: libpq's sslmode semantics
//! (verify-ca ignores the host name, verify-full does not, require verifies only with a root
//! certificate), SCRAM channel binding, and the reasons given when a connection is refused;
//! a reload taking a certificate rotated in place and refusing a missing file; pg_basebackup
//! and pg_rewind with an encrypted key, its sslpassword kept off their command lines.
//! Runs as root (PostgreSQL as `postgres`) or as postgres; skipped otherwise.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgha_postgres::{build_parameters, ConnTarget, LocalPostgres, PgParams, PgUser, ServerConfig};
use pgha_tls::test_ca::TestCa;
use serde_json::json;

mod common;
use common::KillOnDrop;

const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

fn user(name: &str, password: &str, opts: &[(&str, String)]) -> PgUser {
    PgUser {
        username: name.into(),
        password: Some(password.into()),
        options: opts
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

/// `base` with `key` set to `value` (or removed).
fn with_opt(
    base: &[(&'static str, String)],
    key: &'static str,
    value: Option<String>,
) -> Vec<(&'static str, String)> {
    let mut v: Vec<_> = base.iter().filter(|(k, _)| *k != key).cloned().collect();
    if let Some(value) = value {
        v.push((key, value));
    }
    v
}

fn params(dir: &Path, port: u16, superuser: PgUser) -> PgParams {
    PgParams {
        name: "node1".into(),
        scope: "pgha-tls-test".into(),
        data_dir: dir.join("data"),
        config_dir: dir.join("data"),
        bin_dir: PathBuf::from(BIN_DIR),
        listen_addresses: "127.0.0.1".into(),
        port,
        local_host: "127.0.0.1".into(),
        superuser,
        replication: user("replicator", "repl-pass", &[]),
        rewind: None,
        pgpass: dir.join("pgpass"),
        pg_ctl_timeout: Duration::from_secs(30),
        log_file: dir.join("postgres.log"),
        initdb_options: vec!["--locale=C".into(), "--no-sync".into()],
        basebackup_options: vec![],
    }
}

/// A running PostgreSQL 15 with `ssl = on` and only `hostssl ... clientcert=verify-ca` TCP
/// rules, its superuser connecting with verify-ca and a client certificate.
struct Lab {
    _tmp: tempfile::TempDir,
    _home: tempfile::TempDir,
    dir: PathBuf,
    node: PathBuf,
    ca: TestCa,
    port: u16,
    /// The superuser's working TLS options.
    good: Vec<(&'static str, String)>,
    pg: LocalPostgres,
    /// The postgres OS user when the test runs as root.
    os_user: Option<nix::unistd::User>,
    _kill: KillOnDrop,
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Sets up and starts the [`Lab`]; `None` (the test is skipped) without PostgreSQL 15 or
/// without root or the postgres user.
async fn start_lab() -> Option<Lab> {
    if !Path::new(BIN_DIR).join("initdb").exists() {
        eprintln!("NOTE: skipping: PostgreSQL 15 binaries not found in {BIN_DIR}");
        return None;
    }
    let euid = nix::unistd::geteuid();
    let postgres = nix::unistd::User::from_name("postgres").ok().flatten();
    let as_root = euid.is_root();
    if !as_root && postgres.as_ref().is_none_or(|u| u.uid != euid) {
        eprintln!("NOTE: skipping: needs root or the postgres user");
        return None;
    }
    let os_user = postgres.filter(|_| as_root);
    // No ~/.postgresql defaults of whoever runs the test.
    let home = tempfile::tempdir().expect("home");
    std::env::set_var("HOME", home.path());
    let tmp = tempfile::Builder::new()
        .prefix("pgha-pg-tls")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let dir = tmp.path().to_path_buf();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let node = dir.join("node");
    std::fs::create_dir(&node).expect("node dir");

    // The server's certificate names db.example only: verify-ca to 127.0.0.1 passes,
    // verify-full does not.
    let ca = TestCa::new("pgha test CA");
    ca.write(&dir.join("ca.pem")).expect("ca");
    TestCa::new("unrelated CA")
        .write(&dir.join("other-ca.pem"))
        .expect("other ca");
    let (crt, key) = ca
        .issue(&dir, "server", &["db.example"])
        .expect("server cert");
    let (ccrt, ckey) = ca
        .issue(&dir, "client", &["postgres"])
        .expect("client cert");
    for f in [&key, &ckey] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    }
    if let Some(u) = &os_user {
        for p in [&node, &key] {
            nix::unistd::chown(p, Some(u.uid), Some(u.gid)).expect("chown");
        }
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let good: Vec<(&'static str, String)> = vec![
        ("sslmode", "verify-ca".to_string()),
        ("sslrootcert", s(&dir.join("ca.pem"))),
        ("sslcert", s(&ccrt)),
        ("sslkey", s(&ckey)),
        ("channel_binding", "require".to_string()),
    ];
    let mut pg = LocalPostgres::new(params(&node, port, user("postgres", "su-pass", &good)));
    if os_user.is_some() {
        pg = pg.with_os_user("postgres").expect("postgres user");
    }
    let kill = KillOnDrop(node.join("data"));
    pg.initdb().await.expect("initdb");
    let local = json!({
        "unix_socket_directories": s(&node),
        "fsync": false,
        "ssl": true,
        "ssl_cert_file": s(&crt),
        "ssl_key_file": s(&key),
        "ssl_ca_file": s(&dir.join("ca.pem")),
        "password_encryption": "scram-sha-256",
    });
    let (parameters, command_line) = build_parameters(
        json!({"shared_buffers": "16MB", "max_connections": 20})
            .as_object()
            .expect("object"),
        local.as_object().expect("object"),
        "127.0.0.1",
        port,
        "pgha-tls-test",
        15,
    );
    let mut cfg = ServerConfig {
        parameters,
        command_line,
        hba: vec![
            "local all all trust".into(),
            "hostssl replication all 127.0.0.1/32 scram-sha-256 clientcert=verify-ca".into(),
            "hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-ca".into(),
        ],
        ..ServerConfig::default()
    };
    pg.write_config(&mut cfg).await.expect("write_config");
    pg.start(&cfg).await.expect("start");
    pg.wait_ready(Duration::from_secs(30)).await.expect("ready");
    // Sets the superuser's password (the roles step); over the unix socket it would not
    // matter, over TCP it does.
    pg.bootstrap_roles().await.expect("roles");
    Some(Lab {
        _tmp: tmp,
        _home: home,
        dir,
        node,
        ca,
        port,
        good,
        pg,
        os_user,
        _kill: kill,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_follow_libpq_sslmode() {
    let Some(lab) = start_lab().await else {
        return;
    };
    let Lab {
        dir,
        node,
        port,
        good,
        pg,
        ..
    } = &lab;
    let (dir, node, port) = (dir.clone(), node.clone(), *port);

    // verify-ca with channel binding: the agent's own probe over TCP and TLS.
    let probe = pg.probe().await.expect("probe over TLS with verify-ca");
    assert!(!probe.in_recovery);

    let target = ConnTarget {
        host: "127.0.0.1".into(),
        port,
    };
    let good = good.clone();
    let with = |opts: Vec<(&'static str, String)>| {
        LocalPostgres::new(params(&node, port, user("postgres", "su-pass", &opts)))
    };
    let err = |opts: Vec<(&'static str, String)>| {
        let t = target.clone();
        async move {
            with(opts)
                .primary_timeline(&t)
                .await
                .expect_err("the connection must fail")
                .to_string()
        }
    };

    // verify-full checks the host name: 127.0.0.1 is not db.example.
    let e = err(with_opt(&good, "sslmode", Some("verify-full".into()))).await;
    assert!(e.contains("not valid for name \"127.0.0.1\""), "{e}");
    // A CA that did not sign the server's certificate.
    let e = err(with_opt(
        &good,
        "sslrootcert",
        Some(s(&dir.join("other-ca.pem"))),
    ))
    .await;
    assert!(e.contains("not signed by the configured CA"), "{e}");
    // require without a root certificate encrypts without verifying: connects.
    let require = with_opt(&good, "sslmode", Some("require".into()));
    with(with_opt(&require, "sslrootcert", None))
        .primary_timeline(&target)
        .await
        .expect("require without sslrootcert connects");
    // No client certificate: the clientcert rule refuses.
    let e = err(with_opt(&with_opt(&good, "sslcert", None), "sslkey", None)).await;
    assert!(e.contains("certificate"), "{e}");
    // No TLS at all: only hostssl rules.
    let e = err(vec![("sslmode", "disable".into())]).await;
    assert!(e.contains("no pg_hba.conf entry"), "{e}");
    // The connection string of a replica carries the same options.
    let conninfo = pgha_postgres::primary_conninfo(
        &user("replicator", "x", &good),
        &node.join("pgpass"),
        "10.0.0.1",
        5432,
        "node2",
        15,
    );
    assert!(
        conninfo.contains("sslmode=verify-ca") && conninfo.contains("channel_binding=require"),
        "{conninfo}"
    );
    pg.stop(pgha_postgres::StopMode::Fast, Duration::from_secs(30))
        .await
        .expect("stop");
}

/// The client certificate serials of the agent's own TLS connections (application_name
/// pgha), read over the unix socket.
async fn agent_serials(lab: &Lab) -> Vec<String> {
    let (client, conn) = tokio_postgres::Config::new()
        .host_path(&lab.node)
        .port(lab.port)
        .user("postgres")
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("unix socket connection");
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT s.client_serial::text FROM pg_stat_ssl s JOIN pg_stat_activity a \
             USING (pid) WHERE a.application_name = 'pgha' AND s.ssl ORDER BY 1",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

/// Bounded wait until the agent's connections present exactly one certificate serial.
async fn one_serial(lab: &Lab) -> String {
    let mut last = Vec::new();
    for _ in 0..50 {
        last = agent_serials(lab).await;
        if let [one] = last.as_slice() {
            return one.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the agent's TLS connections: {last:?}");
}

/// A reload (what SIGHUP does to the agent) with the same file names but rotated contents:
/// the next connection presents the new client certificate; until then and after a refused
/// reload (a CA path that does not exist), the settings read before keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_reload_takes_a_rotated_certificate_and_refuses_a_missing_file() {
    let Some(lab) = start_lab().await else {
        return;
    };
    let pg = &lab.pg;
    pg.probe().await.expect("probe");
    let first = one_serial(&lab).await;

    // New certificate and key from the same CA, written over the old files.
    let (crt, key) = lab.ca.issue_pem(&["postgres"]);
    let opt = |k: &str| {
        lab.good
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| PathBuf::from(v))
            .expect("option")
    };
    std::fs::write(opt("sslcert"), crt).expect("rotate cert");
    std::fs::write(opt("sslkey"), key).expect("rotate key");
    // Not reloaded yet: a new connection still uses what was read before.
    pg.forget_connection();
    pg.probe().await.expect("probe before the reload");
    assert_eq!(one_serial(&lab).await, first);

    let same = PgParams::clone(&pg.params());
    pg.reload_users(&same).expect("reload with rotated files");
    pg.probe().await.expect("probe after the reload");
    let second = one_serial(&lab).await;
    assert_ne!(second, first, "the rotated certificate was not used");

    // A CA path that does not exist: refused naming it; the connections keep working.
    let mut wrong = same.clone();
    wrong
        .superuser
        .options
        .insert("sslrootcert".into(), s(&lab.dir.join("no-such-ca.pem")));
    let e = pg
        .reload_users(&wrong)
        .expect_err("a missing CA")
        .to_string();
    assert!(
        e.contains("sslrootcert") && e.contains("no-such-ca.pem"),
        "{e}"
    );
    pg.probe().await.expect("probe after the refused reload");
    assert_eq!(one_serial(&lab).await, second);
    assert_eq!(pg.params().superuser.options, same.superuser.options);

    pg.stop(pgha_postgres::StopMode::Fast, Duration::from_secs(30))
        .await
        .expect("stop");
}

/// pg_basebackup as a replication user whose client key is encrypted, then pg_rewind with the
/// same key: the `sslpassword` reaches libpq through a connection service file (0600, the
/// tool's user's, removed afterwards) and never the command line. Wrappers in place of the
/// tools record their arguments and the service file as the tools see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_tools_with_an_encrypted_key_keep_sslpassword_off_the_command_line() {
    let Some(lab) = start_lab().await else {
        return;
    };
    const PASSWORD: &str = "k3y pass-phrase";
    let (crt, key) = lab.ca.issue_pem(&["replicator"]);
    let (rep_crt, rep_key) = (lab.dir.join("rep.crt"), lab.dir.join("rep.key"));
    std::fs::write(&rep_crt, crt).expect("rep cert");
    std::fs::write(&rep_key, pgha_tls::test_ca::encrypt_key_pem(&key, PASSWORD)).expect("rep key");
    std::fs::set_permissions(&rep_key, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // The replica's bin_dir: the real binaries, pg_basebackup and pg_rewind behind recording
    // wrappers.
    let bin = lab.dir.join("bin");
    std::fs::create_dir(&bin).expect("bin dir");
    const WRAPPED: [&str; 2] = ["pg_basebackup", "pg_rewind"];
    for entry in std::fs::read_dir(BIN_DIR).expect("bin dir") {
        let entry = entry.expect("entry");
        if !WRAPPED.iter().any(|w| entry.file_name() == *w) {
            std::os::unix::fs::symlink(entry.path(), bin.join(entry.file_name())).expect("symlink");
        }
    }
    let record = lab.dir.join("record");
    std::fs::create_dir(&record).expect("record dir");
    for tool in WRAPPED {
        let wrapper = bin.join(tool);
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n\
                 printf '%s\\n' \"$@\" > {rec}/{tool}.args\n\
                 if [ -n \"$PGSERVICEFILE\" ]; then\n\
                 stat -c '%a %U' \"$PGSERVICEFILE\" > {rec}/{tool}.service_stat\n\
                 cat \"$PGSERVICEFILE\" > {rec}/{tool}.service_text\n\
                 echo \"$PGSERVICEFILE\" > {rec}/{tool}.service_path\n\
                 fi\n\
                 exec {BIN_DIR}/{tool} \"$@\"\n",
                rec = record.display()
            ),
        )
        .expect("wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let replica = lab.dir.join("replica");
    std::fs::create_dir(&replica).expect("replica dir");
    if let Some(u) = &lab.os_user {
        for p in [&rep_key, &record, &replica] {
            nix::unistd::chown(p, Some(u.uid), Some(u.gid)).expect("chown");
        }
    }

    let mut p = params(&replica, lab.port, user("postgres", "su-pass", &lab.good));
    p.bin_dir = bin.clone();
    p.replication = user(
        "replicator",
        "repl-pass",
        &[
            ("sslmode", "verify-ca".into()),
            ("sslrootcert", s(&lab.dir.join("ca.pem"))),
            ("sslcert", s(&rep_crt)),
            ("sslkey", s(&rep_key)),
            ("sslpassword", PASSWORD.into()),
        ],
    );
    let mut pg2 = LocalPostgres::new(p);
    if lab.os_user.is_some() {
        pg2 = pg2.with_os_user("postgres").expect("postgres user");
    }
    let source = ConnTarget {
        host: "127.0.0.1".into(),
        port: lab.port,
    };
    pg2.basebackup(&source)
        .await
        .expect("pg_basebackup with an encrypted key");
    assert!(replica.join("data/PG_VERSION").exists());

    let recorded = |tool: &str| {
        let read = |what: &str| {
            let path = record.join(format!("{tool}.{what}"));
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let args = read("args");
        assert!(
            !args.contains(PASSWORD),
            "sslpassword on {tool}'s command line: {args}"
        );
        assert!(
            args.contains("service=pgha_tool") && args.contains("sslkey="),
            "{args}"
        );
        let stat = read("service_stat");
        let owner = if lab.os_user.is_some() {
            "postgres"
        } else {
            ""
        };
        assert!(stat.starts_with("600 ") && stat.contains(owner), "{stat}");
        assert!(read("service_text").contains(&format!("sslpassword={PASSWORD}\n")));
        let service_path = read("service_path");
        assert!(
            !Path::new(service_path.trim()).exists(),
            "the service file {service_path} was left behind"
        );
    };
    recorded("pg_basebackup");

    // pg_rewind as the rewind user with the same encrypted key: it connects to the source,
    // then goes on to the target (a copy never started, which it runs crash recovery on;
    // whether that ends well does not matter here).
    let mut p = PgParams::clone(&pg2.params());
    p.rewind = Some(PgUser {
        username: "postgres".into(),
        password: Some("su-pass".into()),
        options: p.replication.options.clone(),
    });
    let pg_rw = LocalPostgres::new(p);
    let pg_rw = match &lab.os_user {
        Some(_) => pg_rw.with_os_user("postgres").expect("postgres user"),
        None => pg_rw,
    };
    if let Err(e) = pg_rw.rewind(&source).await {
        let e = e.to_string();
        assert!(
            !e.contains("private key")
                && e.contains("for target server to complete crash recovery"),
            "pg_rewind did not connect: {e}"
        );
    }
    recorded("pg_rewind");

    // Without the password the same key cannot be used: the service file really carried it.
    let mut p = PgParams::clone(&pg2.params());
    p.replication.options.remove("sslpassword");
    let pg3 = LocalPostgres::new(PgParams {
        data_dir: replica.join("data3"),
        ..p
    });
    let pg3 = match &lab.os_user {
        Some(_) => pg3.with_os_user("postgres").expect("postgres user"),
        None => pg3,
    };
    let e = pg3
        .basebackup(&source)
        .await
        .expect_err("an encrypted key without its password")
        .to_string();
    assert!(e.contains("could not load private key file"), "{e}");

    lab.pg
        .stop(pgha_postgres::StopMode::Fast, Duration::from_secs(30))
        .await
        .expect("stop");
}
