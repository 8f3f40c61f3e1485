//! `PATRONI_*` environment variables, injected through a lookup function.

use std::collections::HashMap;
use std::path::PathBuf;

use pgha_config::{load_from_env_and_path, Loaded};
use serde_json::json;

const BASE: &str = "scope: batman
name: n1
restapi:
  listen: 127.0.0.1:8008
etcd3:
  hosts: [127.0.0.1:2379]
postgresql:
  listen: 127.0.0.1:5432
  data_dir: /data/pg
  authentication:
    superuser: {username: postgres, password: file-pass}
    replication: {username: replicator}
tags:
  nofailover: false
";

fn load_with(
    yaml: Option<&str>,
    vars: &[(&str, &str)],
) -> Result<Loaded, pgha_config::ConfigError> {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |name: &str| env.get(name).cloned();
    match yaml {
        Some(text) => {
            let dir = tempfile::tempdir().expect("tempdir");
            let file = dir.path().join("patroni.yml");
            std::fs::write(&file, text).expect("write");
            load_from_env_and_path(Some(&file), &lookup)
        }
        None => load_from_env_and_path(None, &lookup),
    }
}

#[test]
fn environment_overrides_the_file() {
    let l = load_with(
        Some(BASE),
        &[
            ("PATRONI_NAME", "n7"),
            ("PATRONI_SCOPE", "robin"),
            ("PATRONI_NAMESPACE", "/db/"),
            ("PATRONI_LOG_LEVEL", "WARNING"),
            ("PATRONI_LOG_DIR", "/var/log/pgha"),
            ("PATRONI_RESTAPI_LISTEN", "0.0.0.0:9008"),
            ("PATRONI_RESTAPI_CONNECT_ADDRESS", "10.0.0.7:9008"),
            ("PATRONI_RESTAPI_USERNAME", "admin"),
            ("PATRONI_RESTAPI_PASSWORD", "secret"),
            ("PATRONI_CTL_USERNAME", "ctl"),
            ("PATRONI_CTL_PASSWORD", "ctlpw"),
            ("PATRONI_ETCD3_HOSTS", "'e1:2379','e2:2379'"),
            ("PATRONI_ETCD3_PROTOCOL", "https"),
            ("PATRONI_ETCD3_USERNAME", "root"),
            ("PATRONI_ETCD3_PASSWORD", "etcdpw"),
            ("PATRONI_ETCD3_CACERT", "/ca.pem"),
            ("PATRONI_POSTGRESQL_LISTEN", "0.0.0.0:5433"),
            ("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "10.0.0.7:5433"),
            ("PATRONI_POSTGRESQL_DATA_DIR", "/env/data"),
            ("PATRONI_POSTGRESQL_CONFIG_DIR", "/env/conf"),
            ("PATRONI_POSTGRESQL_BIN_DIR", "/env/bin"),
            ("PATRONI_POSTGRESQL_PGPASS", "/env/pgpass"),
            ("PATRONI_SUPERUSER_PASSWORD", "env-pass"),
            ("PATRONI_REPLICATION_PASSWORD", "repl-pass"),
            ("PATRONI_REWIND_USERNAME", "rewinder"),
            ("PATRONI_REWIND_PASSWORD", "rewind-pass"),
            ("PATRONI_NOFAILOVER", "true"),
            ("PATRONI_NOSYNC", "on"),
            ("PATRONI_UNRELATED", "x"),
        ],
    )
    .expect("loads");
    let c = l.config;
    assert_eq!((c.name.as_str(), c.scope.as_str()), ("n7", "robin"));
    assert_eq!(c.cluster_prefix(), "/db/robin/");
    assert_eq!(c.log.level, "WARNING");
    assert_eq!(c.log.dir, Some(PathBuf::from("/var/log/pgha")));
    assert_eq!(c.restapi.listen, "0.0.0.0:9008");
    assert_eq!(c.restapi.connect_address, "10.0.0.7:9008");
    let auth = c.restapi.authentication.as_ref().expect("auth");
    assert_eq!(
        (auth.username.as_str(), auth.password.as_str()),
        ("admin", "secret")
    );
    let ctl_auth = c
        .ctl
        .as_ref()
        .and_then(|c| c.authentication.as_ref())
        .expect("ctl auth");
    assert_eq!(ctl_auth.username, "ctl");
    assert_eq!(
        c.etcd_endpoints(),
        vec!["https://e1:2379", "https://e2:2379"]
    );
    let etcd = c.etcd3.as_ref().expect("etcd3");
    assert_eq!(etcd.username.as_deref(), Some("root"));
    assert_eq!(etcd.cacert.as_deref(), Some("/ca.pem"));
    let pg = &c.postgresql;
    assert_eq!(pg.listen_addresses(), "0.0.0.0");
    assert_eq!(pg.port(), 5433);
    assert_eq!(pg.connect_address, "10.0.0.7:5433");
    assert_eq!(pg.data_dir, PathBuf::from("/env/data"));
    assert_eq!(pg.config_dir, Some(PathBuf::from("/env/conf")));
    assert_eq!(pg.bin_dir, Some(PathBuf::from("/env/bin")));
    assert_eq!(pg.pgpass, Some(PathBuf::from("/env/pgpass")));
    let su = pg.authentication.superuser.as_ref().expect("superuser");
    assert_eq!(
        (su.username.as_str(), su.password.as_deref()),
        ("postgres", Some("env-pass"))
    );
    let repl = pg.authentication.replication.as_ref().expect("replication");
    assert_eq!(repl.password.as_deref(), Some("repl-pass"));
    let rewind = pg.authentication.rewind.as_ref().expect("rewind");
    assert_eq!(rewind.username, "rewinder");
    assert_eq!(c.tags["nofailover"], json!(true));
    assert_eq!(c.tags["nosync"], json!(true));
}

#[test]
fn comma_separated_hosts_and_single_host() {
    let l = load_with(Some(BASE), &[("PATRONI_ETCD3_HOSTS", "e1:2379, e2:2379")]).expect("loads");
    assert_eq!(
        l.config.etcd_endpoints(),
        vec!["http://e1:2379", "http://e2:2379"]
    );
    let l = load_with(
        Some(&BASE.replace("  hosts: [127.0.0.1:2379]\n", "  protocol: http\n")),
        &[("PATRONI_ETCD3_HOST", "e9:2379")],
    )
    .expect("loads");
    assert_eq!(l.config.etcd_endpoints(), vec!["http://e9:2379"]);
    let l = load_with(Some(BASE), &[("PATRONI_ETCD3_URL", "https://e8:2379")]).expect("loads");
    assert_eq!(
        l.config.etcd_endpoints(),
        vec!["http://127.0.0.1:2379", "https://e8:2379"],
        "url is added to the hosts of the file"
    );
}

#[test]
fn whole_configuration_from_patroni_configuration() {
    let l = load_with(
        None,
        &[("PATRONI_CONFIGURATION", BASE), ("PATRONI_NAME", "ignored")],
    )
    .expect("loads");
    assert_eq!(
        l.config.name, "n1",
        "other variables are not applied, as in Patroni"
    );
    assert_eq!(l.config.scope, "batman");
}

#[test]
fn a_given_file_wins_over_patroni_configuration() {
    let other = BASE.replace("scope: batman", "scope: joker");
    let l = load_with(Some(BASE), &[("PATRONI_CONFIGURATION", &other)]).expect("loads");
    assert_eq!(l.config.scope, "batman");
}

#[test]
fn configuration_from_variables_alone() {
    let l = load_with(
        None,
        &[
            ("PATRONI_NAME", "n1"),
            ("PATRONI_SCOPE", "batman"),
            ("PATRONI_RESTAPI_LISTEN", "127.0.0.1:8008"),
            ("PATRONI_ETCD3_HOSTS", "127.0.0.1:2379"),
            ("PATRONI_POSTGRESQL_LISTEN", "127.0.0.1:5432"),
            ("PATRONI_POSTGRESQL_DATA_DIR", "/data"),
            ("PATRONI_SUPERUSER_USERNAME", "postgres"),
            ("PATRONI_REPLICATION_USERNAME", "replicator"),
        ],
    )
    .expect("loads");
    assert_eq!(l.config.cluster_prefix(), "/service/batman/");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn invalid_environment_values_are_reported_at_their_key() {
    let err = load_with(
        Some(BASE),
        &[
            ("PATRONI_POSTGRESQL_LISTEN", "localhost"),
            ("PATRONI_LOG_LEVEL", "LOUD"),
        ],
    )
    .expect_err("invalid");
    let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, vec!["postgresql.listen", "log.level"], "{err}");
}
