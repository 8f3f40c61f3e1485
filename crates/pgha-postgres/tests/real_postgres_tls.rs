//! The agent's own connections over TLS against a real PostgreSQL 15 with `ssl = on` and only
//! `hostssl ... scram-sha-256 clientcert=verify-ca` TCP rules: libpq's sslmode semantics
//! (verify-ca ignores the host name, verify-full does not, require verifies only with a root
//! certificate), SCRAM channel binding, and the reasons given when a connection is refused.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_follow_libpq_sslmode() {
    if !Path::new(BIN_DIR).join("initdb").exists() {
        eprintln!("NOTE: skipping: PostgreSQL 15 binaries not found in {BIN_DIR}");
        return;
    }
    let euid = nix::unistd::geteuid();
    let postgres = nix::unistd::User::from_name("postgres").ok().flatten();
    let as_root = euid.is_root();
    if !as_root && postgres.as_ref().is_none_or(|u| u.uid != euid) {
        eprintln!("NOTE: skipping: needs root or the postgres user");
        return;
    }
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
    if let (true, Some(u)) = (as_root, &postgres) {
        for p in [&node, &key] {
            nix::unistd::chown(p, Some(u.uid), Some(u.gid)).expect("chown");
        }
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let s = |p: &Path| p.display().to_string();
    let good: Vec<(&'static str, String)> = vec![
        ("sslmode", "verify-ca".to_string()),
        ("sslrootcert", s(&dir.join("ca.pem"))),
        ("sslcert", s(&ccrt)),
        ("sslkey", s(&ckey)),
        ("channel_binding", "require".to_string()),
    ];
    let mut pg = LocalPostgres::new(params(&node, port, user("postgres", "su-pass", &good)));
    if as_root {
        pg = pg.with_os_user("postgres").expect("postgres user");
    }
    let _kill = KillOnDrop(node.join("data"));
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

    // verify-ca with channel binding: the agent's own probe over TCP and TLS.
    let probe = pg.probe().await.expect("probe over TLS with verify-ca");
    assert!(!probe.in_recovery);

    let target = ConnTarget {
        host: "127.0.0.1".into(),
        port,
    };
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
