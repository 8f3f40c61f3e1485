//! Loading real configurations: Patroni's observed node config, directories, option forms,
//! key prefixes and etcd endpoints.

use std::path::{Path, PathBuf};

use pgha_config::{
    load_from_env_and_path, parse_str, Config, InitdbOption, Loaded, Watchdog, WatchdogDriver,
    WatchdogMode,
};
use serde_json::json;

fn no_env(_: &str) -> Option<String> {
    None
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A minimal valid configuration, plus `extra` YAML appended at the top level.
fn minimal(extra: &str) -> String {
    format!(
        "scope: batman\nname: n1\nrestapi:\n  listen: 127.0.0.1:8008\netcd3:\n  host: 127.0.0.1:2379\n\
         postgresql:\n  listen: 127.0.0.1:5432\n  data_dir: /data/pg\n  authentication:\n    \
         superuser: {{username: postgres}}\n    replication: {{username: replicator}}\n{extra}"
    )
}

fn config(yaml: &str) -> Config {
    match parse_str(yaml) {
        Ok(l) => l.config,
        Err(e) => panic!("config should load: {e}"),
    }
}

#[test]
fn observed_patroni_node_config_loads_without_warnings() {
    let Loaded {
        config: c,
        warnings,
    } = load_from_env_and_path(Some(&fixture("observed-node1.yml")), &no_env).expect("loads");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.scope, "pgha-bench");
    assert_eq!(c.name, "node1");
    assert_eq!(c.namespace, "/service");
    assert_eq!(c.cluster_prefix(), "/service/pgha-bench/");
    assert_eq!(c.restapi.listen, "127.0.0.1:8021");
    assert_eq!(c.restapi.connect_address, "127.0.0.1:8021");
    assert_eq!(c.restapi.api_url(), "http://127.0.0.1:8021/patroni");
    assert_eq!(c.etcd_endpoints(), vec!["http://127.0.0.1:2401"]);
    assert!(c.etcd.is_none() && c.ctl.is_none());
    assert_eq!(c.watchdog, Watchdog::default());

    let dcs = &c.bootstrap.dcs;
    assert_eq!(dcs["ttl"], json!(20));
    assert_eq!(dcs["loop_wait"], json!(1));
    assert_eq!(dcs["retry_timeout"], json!(3));
    assert_eq!(
        dcs["postgresql"]["parameters"]["max_connections"],
        json!(100)
    );
    assert_eq!(dcs["postgresql"]["use_pg_rewind"], json!(true));
    let args: Vec<String> = c
        .bootstrap
        .initdb
        .iter()
        .map(InitdbOption::to_arg)
        .collect();
    assert_eq!(
        args,
        vec!["--encoding=UTF8", "--locale=C.UTF-8", "--data-checksums"]
    );

    let pg = &c.postgresql;
    assert_eq!(pg.listen_addresses(), "127.0.0.1");
    assert_eq!(pg.port(), 5451);
    assert_eq!(pg.connect_address, "127.0.0.1:5451");
    assert_eq!(pg.conn_url(), "postgres://127.0.0.1:5451/postgres");
    assert_eq!(
        pg.data_dir,
        PathBuf::from("/var/tmp/pgha-observe/node1/data")
    );
    assert_eq!(pg.config_dir_or_data(), pg.data_dir);
    assert_eq!(
        pg.bin_dir,
        Some(PathBuf::from("/usr/lib/postgresql/15/bin"))
    );
    assert_eq!(
        pg.binary("pg_ctl"),
        PathBuf::from("/usr/lib/postgresql/15/bin/pg_ctl")
    );
    assert_eq!(
        c.pgpass_path(),
        PathBuf::from("/var/tmp/pgha-observe/node1/pgpass")
    );
    let su = pg.authentication.superuser.as_ref().expect("superuser");
    assert_eq!(
        (su.username.as_str(), su.password.as_deref()),
        ("postgres", Some("bench-su-pass"))
    );
    let repl = pg.authentication.replication.as_ref().expect("replication");
    assert_eq!(repl.username, "replicator");
    let rewind = pg.authentication.rewind.as_ref().expect("rewind");
    assert_eq!(rewind.password.as_deref(), Some("bench-rewind-pass"));
    assert_eq!(
        pg.parameters["unix_socket_directories"],
        json!("/var/tmp/pgha-observe/node1")
    );
    assert_eq!(pg.pg_hba.len(), 3);
    assert_eq!(pg.pg_hba[1], "host replication replicator 127.0.0.1/32 md5");
    assert_eq!(pg.create_replica_methods, vec!["basebackup"]);
    assert_eq!(pg.pg_ctl_timeout, 60);
    assert_eq!(pg.use_pg_rewind, None);
    assert!(!pg.remove_data_directory_on_rewind_failure);

    assert_eq!(c.tags["nofailover"], json!(false));
    assert_eq!(c.tags.len(), 4);
    assert_eq!(c.log.level, "INFO");
    assert_eq!(c.log.r#type, "plain");
}

#[test]
fn directory_files_merge_in_sorted_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = minimal("tags:\n  nofailover: false\n  clonefrom: true\n");
    std::fs::write(dir.path().join("00-base.yml"), base).expect("write");
    std::fs::write(
        dir.path().join("10-local.yaml"),
        "name: n2\npostgresql:\n  data_dir: /data/other\n  pg_hba: [\"local all all trust\"]\ntags:\n  nofailover: true\n  clonefrom: null\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("README.txt"), "not: [yaml").expect("write");
    let l = load_from_env_and_path(Some(dir.path()), &no_env).expect("loads");
    let c = l.config;
    assert_eq!(c.name, "n2");
    assert_eq!(c.scope, "batman");
    assert_eq!(c.postgresql.data_dir, PathBuf::from("/data/other"));
    assert_eq!(
        c.postgresql.listen, "127.0.0.1:5432",
        "untouched keys are kept"
    );
    assert_eq!(c.postgresql.pg_hba, vec!["local all all trust"]);
    assert_eq!(
        c.tags,
        json!({"nofailover": true})
            .as_object()
            .cloned()
            .unwrap_or_default()
    );
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn empty_directory_and_missing_file_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = load_from_env_and_path(Some(dir.path()), &no_env).expect_err("empty dir");
    assert!(err.to_string().contains("no *.yml or *.yaml"), "{err}");
    let err = load_from_env_and_path(Some(&dir.path().join("nope.yml")), &no_env)
        .expect_err("missing file");
    assert!(matches!(err, pgha_config::ConfigError::Io { .. }), "{err}");
    std::fs::write(dir.path().join("bad.yml"), "scope: [").expect("write");
    let err = load_from_env_and_path(Some(dir.path()), &no_env).expect_err("bad yaml");
    assert!(
        matches!(&err, pgha_config::ConfigError::Yaml { path, .. } if path.ends_with("bad.yml")),
        "{err}"
    );
}

#[test]
fn initdb_list_and_mapping_forms() {
    let list = config(&minimal(
        "bootstrap:\n  initdb:\n    - data-checksums\n    - encoding: UTF8\n    - {locale: C, auth-host: md5}\n",
    ));
    assert_eq!(
        list.bootstrap.initdb,
        vec![
            InitdbOption::Flag("data-checksums".into()),
            InitdbOption::KeyValue("encoding".into(), "UTF8".into()),
            InitdbOption::KeyValue("locale".into(), "C".into()),
            InitdbOption::KeyValue("auth-host".into(), "md5".into()),
        ]
    );
    let mapping = config(&minimal(
        "bootstrap:\n  initdb:\n    encoding: UTF8\n    data-checksums:\n",
    ));
    let args: Vec<String> = mapping
        .bootstrap
        .initdb
        .iter()
        .map(InitdbOption::to_arg)
        .collect();
    assert_eq!(args, vec!["--encoding=UTF8", "--data-checksums"]);

    let bb = config(&minimal(
        "  basebackup:\n    - max-rate: 100M\n    - checkpoint: fast\n    - verbose\n",
    ));
    let args: Vec<String> = bb
        .postgresql
        .basebackup
        .iter()
        .map(InitdbOption::to_arg)
        .collect();
    assert_eq!(
        args,
        vec!["--max-rate=100M", "--checkpoint=fast", "--verbose"]
    );
    let bb = config(&minimal("  basebackup:\n    max-rate: 100M\n"));
    assert_eq!(bb.postgresql.basebackup[0].to_arg(), "--max-rate=100M");
}

#[test]
fn cluster_prefix_normalises_namespace() {
    for ns in [
        "/service/",
        "service",
        "/service",
        "service/",
        "//service//",
    ] {
        let c = config(&minimal(&format!("namespace: \"{ns}\"\n")));
        assert_eq!(c.cluster_prefix(), "/service/batman/", "namespace {ns:?}");
    }
    assert_eq!(config(&minimal("")).cluster_prefix(), "/service/batman/");
    assert_eq!(
        config(&minimal("namespace: /\n")).cluster_prefix(),
        "/batman/"
    );
    assert_eq!(
        config(&minimal("namespace: /a/b/\n")).cluster_prefix(),
        "/a/b/batman/"
    );
}

/// A config whose etcd3 section is `section` (indented YAML lines).
fn with_etcd3(section: &str) -> Config {
    let yaml = minimal("").replace(
        "etcd3:\n  host: 127.0.0.1:2379\n",
        &format!("etcd3:\n{section}"),
    );
    config(&yaml)
}

#[test]
fn etcd_endpoints_from_every_form() {
    assert_eq!(
        with_etcd3("  host: 10.0.0.1:2379\n").etcd_endpoints(),
        vec!["http://10.0.0.1:2379"]
    );
    assert_eq!(
        with_etcd3("  hosts:\n    - 10.0.0.1:2379\n    - 10.0.0.2:2379\n").etcd_endpoints(),
        vec!["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    );
    assert_eq!(
        with_etcd3("  hosts: 10.0.0.1:2379,10.0.0.2:2379, 10.0.0.3\n").etcd_endpoints(),
        vec![
            "http://10.0.0.1:2379",
            "http://10.0.0.2:2379",
            "http://10.0.0.3:2379"
        ]
    );
    assert_eq!(
        with_etcd3("  protocol: https\n  hosts: [e1:2379, e2:2379]\n").etcd_endpoints(),
        vec!["https://e1:2379", "https://e2:2379"]
    );
    assert_eq!(
        with_etcd3("  cacert: /etc/ca.pem\n  host: e1:2379\n").etcd_endpoints(),
        vec!["https://e1:2379"]
    );
    assert_eq!(
        with_etcd3("  url: https://e1:2379\n").etcd_endpoints(),
        vec!["https://e1:2379"]
    );
    let c = with_etcd3(
        "  hosts: e1:2379\n  username: root\n  password: pw\n  cert: c.pem\n  key: k.pem\n",
    );
    let e = c.etcd3.as_ref().expect("etcd3");
    assert_eq!(e.username.as_deref(), Some("root"));
    assert_eq!(e.password.as_deref(), Some("pw"));
    assert_eq!(
        (e.cert.as_deref(), e.key.as_deref()),
        (Some("c.pem"), Some("k.pem"))
    );
}

#[test]
fn patroni_type_tolerance() {
    let yaml = minimal(
        "ctl:\n  insecure: \"on\"\n  authentication: {username: a, password: 1234}\nlog:\n  level: debug\n  file_num: \"3\"\n  loggers: {urllib3: DEBUG}\n  traceback_level: INFO\n",
    )
    .replace("listen: 127.0.0.1:5432", "listen: \"10.0.0.5,127.0.0.1:5433\"\n  pg_ctl_timeout: \"120\"\n  use_slots: \"off\"\n  create_replica_methods: basebackup")
    .replace("name: n1", "name: 42");
    let c = config(&yaml);
    assert_eq!(c.name, "42");
    let ctl = c.ctl.as_ref().expect("ctl");
    assert!(ctl.insecure);
    assert_eq!(
        ctl.authentication.as_ref().map(|a| a.password.as_str()),
        Some("1234")
    );
    assert_eq!(c.log.level, "DEBUG");
    assert_eq!(c.log.file_num, Some(3));
    assert_eq!(c.log.extra["loggers"], json!({"urllib3": "DEBUG"}));
    let pg = &c.postgresql;
    assert_eq!(pg.listen_addresses(), "10.0.0.5,127.0.0.1");
    assert_eq!(pg.port(), 5433);
    assert_eq!(pg.connect_address, "10.0.0.5:5433");
    assert_eq!(pg.pg_ctl_timeout, 120);
    assert_eq!(pg.use_slots, Some(false));
}

#[test]
fn known_keys_we_do_not_act_on_are_kept_without_warnings() {
    let yaml = minimal(
        "thread_pool_size: 5\nwatchdog:\n  mode: off\n  device: /dev/watchdog\n\
         restapi_extra: 1\n",
    )
    .replace("restapi_extra: 1\n", "")
    .replace(
        "  data_dir: /data/pg\n",
        "  data_dir: /data/pg\n  callbacks:\n    on_role_change: /bin/true\n  custom_conf: /etc/pg.conf\n  \
         recovery_conf: {restore_command: cp}\n  bin_name: {pg_ctl: pg_ctl15}\n  use_unix_socket: true\n  \
         pg_ident: [\"m u u\"]\n  create_replica_methods: [wal_g, basebackup]\n  wal_g: {command: wal-g-restore}\n",
    )
    .replace(
        "  listen: 127.0.0.1:8008\n",
        "  listen: 127.0.0.1:8008\n  ciphers: HIGH\n  http_extra_headers: {X-A: b}\n",
    );
    let l = parse_str(&yaml).expect("loads");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let pg = &l.config.postgresql;
    assert_eq!(pg.callbacks["on_role_change"], json!("/bin/true"));
    assert_eq!(pg.extra["custom_conf"], json!("/etc/pg.conf"));
    assert_eq!(
        pg.replica_method("wal_g")
            .and_then(|m| m.command.as_deref()),
        Some("wal-g-restore")
    );
    assert!(!pg.extra.contains_key("wal_g"));
    assert_eq!(pg.binary("pg_ctl"), PathBuf::from("pg_ctl15"));
    assert_eq!(pg.create_replica_methods, vec!["wal_g", "basebackup"]);
    assert_eq!(l.config.restapi.ciphers.as_deref(), Some("HIGH"));
    assert_eq!(l.config.watchdog.mode, WatchdogMode::Off);
    assert_eq!(l.config.watchdog.device, PathBuf::from("/dev/watchdog"));
}

#[test]
fn pgpass_default_is_next_to_the_data_directory() {
    let c = config(&minimal(""));
    assert_eq!(c.postgresql.pgpass, None);
    assert_eq!(c.pgpass_path(), PathBuf::from("/data/pgpass_n1"));
}

#[test]
fn custom_bootstrap_method_and_its_command_line() {
    let c = config(&minimal(
        "bootstrap:\n  method: restore\n  restore:\n    command: \"./restore.sh 'a b'\"\n    \
         keep_existing_recovery_conf: true\n    target: base\n    no_params: false\n    \
         retries: 3\n    verbose: true\n    recovery_conf:\n      restore_command: cp /a/%f %p\n      \
         recovery_target_action: promote\n",
    ));
    let m = c.bootstrap.custom_method().expect("custom method");
    assert_eq!(m.name, "restore");
    assert!(m.keep_existing_recovery_conf && !m.no_params);
    assert_eq!(
        m.recovery_conf.as_ref().unwrap()["restore_command"],
        json!("cp /a/%f %p")
    );
    assert_eq!(
        m.argv("batman", "/data/pg").unwrap(),
        vec![
            "./restore.sh",
            "a b",
            "--scope=batman",
            "--datadir=/data/pg",
            "--target=base",
            "--retries=3",
            "--verbose=True"
        ]
    );
    let quiet = config(&minimal(
        "bootstrap:\n  method: r\n  r: {command: /bin/r, no_params: true, x: y}\n",
    ));
    let m = quiet.bootstrap.custom_method().unwrap();
    assert!(!m.keep_existing_recovery_conf && m.recovery_conf.is_none());
    assert_eq!(m.argv("s", "/d").unwrap(), vec!["/bin/r", "--x=y"]);
    // initdb is not a custom method.
    let plain = config(&minimal("bootstrap:\n  method: initdb\n"));
    assert!(plain.bootstrap.custom_method().is_none());
}

#[test]
fn custom_bootstrap_method_errors_name_the_setting() {
    for (yaml, path) in [
        (
            "bootstrap:\n  method: r\n  r: {command: \"'unbalanced\"}\n",
            "bootstrap.r.command",
        ),
        (
            "bootstrap:\n  method: r\n  r: {command: x, no_params: maybe}\n",
            "bootstrap.r.no_params",
        ),
        (
            "bootstrap:\n  method: r\n  r: {command: x, recovery_conf: [a]}\n",
            "bootstrap.r.recovery_conf",
        ),
    ] {
        let err = parse_str(&minimal(yaml)).expect_err(yaml);
        assert!(err.to_string().contains(path), "{yaml}: {err}");
    }
}

#[test]
fn create_replica_methods_and_their_command_lines() {
    let c = config(&minimal(
        "  create_replica_methods: [restore, plain, bare, basebackup]\n  \
         restore: {command: /bin/restore --fast, keep_data: true, no_leader: true, bucket: b1}\n  \
         plain: {command: /bin/plain, no_params: true, no_leader: 1, keep_data: false, bucket: b2}\n",
    ));
    let pg = &c.postgresql;
    assert_eq!(
        pg.create_replica_methods,
        vec!["restore", "plain", "bare", "basebackup"]
    );
    let names: Vec<&str> = pg.replica_methods.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["restore", "plain", "bare"]);
    assert!(pg.can_create_replica_without_leader());
    let restore = pg.replica_method("restore").unwrap();
    assert!(restore.keep_data && restore.no_leader && !restore.no_params);
    assert_eq!(
        restore.argv("batman", "/data/pg", "host=h port=1").unwrap(),
        vec![
            "/bin/restore",
            "--fast",
            "--keep_data=True",
            "--no_leader=True",
            "--bucket=b1",
            "--scope=batman",
            "--role=replica",
            "--datadir=/data/pg",
            "--connstring=host=h port=1"
        ]
    );
    let plain = pg.replica_method("plain").unwrap();
    assert!(plain.no_leader && plain.no_params && !plain.keep_data);
    assert_eq!(
        plain.argv("batman", "/data/pg", "x").unwrap(),
        vec!["/bin/plain", "--bucket=b2"]
    );
    // Without a section the method's name is the command.
    let bare = pg.replica_method("bare").unwrap();
    assert_eq!(
        bare.argv("s", "/d", "").unwrap()[..2],
        ["bare", "--scope=s"]
    );
    assert!(pg.replica_method("basebackup").is_none());

    let leaderless = config(&minimal(
        "  create_replica_methods: [restore, basebackup]\n  restore: {command: /bin/r}\n",
    ));
    assert!(!leaderless.postgresql.can_create_replica_without_leader());
    let default = config(&minimal(""));
    assert!(default.postgresql.replica_methods.is_empty());
    assert!(!default.postgresql.can_create_replica_without_leader());

    let err = parse_str(&minimal(
        "  create_replica_methods: [r]\n  r: {command: x, keep_data: sometimes}\n",
    ))
    .expect_err("bad flag");
    assert!(err.to_string().contains("postgresql.r.keep_data"), "{err}");
}

#[test]
fn watchdog_defaults_are_patronis() {
    let w = config(&minimal("")).watchdog;
    assert_eq!(w.mode, WatchdogMode::Automatic);
    assert_eq!(w.device, PathBuf::from("/dev/watchdog"));
    assert_eq!(w.safety_margin, 5);
    assert_eq!(w.driver, WatchdogDriver::Default);
    assert!(!w.explicit);
    assert_eq!(w.timeout(30), 25);
}

#[test]
fn watchdog_modes_take_patronis_spellings() {
    for (mode, want) in [
        ("off", WatchdogMode::Off),
        ("false", WatchdogMode::Off),
        ("disabled", WatchdogMode::Off),
        ("disable", WatchdogMode::Off),
        ("automatic", WatchdogMode::Automatic),
        ("auto", WatchdogMode::Automatic),
        ("Required", WatchdogMode::Required),
        ("require", WatchdogMode::Required),
    ] {
        let l = parse_str(&minimal(&format!("watchdog:\n  mode: {mode}\n"))).expect(mode);
        assert_eq!(l.config.watchdog.mode, want, "{mode}");
        assert!(l.config.watchdog.explicit);
        assert!(l.warnings.is_empty(), "{mode}: {:?}", l.warnings);
    }
    // As with Patroni: an unknown mode disables the watchdog, with a warning.
    for mode in ["true", "sometimes", "1"] {
        let l = parse_str(&minimal(&format!("watchdog:\n  mode: {mode}\n"))).expect(mode);
        assert_eq!(l.config.watchdog.mode, WatchdogMode::Off, "{mode}");
        assert!(
            l.warnings.iter().any(|w| w.starts_with("watchdog.mode:")),
            "{mode}: {:?}",
            l.warnings
        );
    }
}

#[test]
fn watchdog_keys_are_typed() {
    let w = config(&minimal(
        "watchdog:\n  mode: required\n  device: /run/wd.fifo\n  safety_margin: -1\n  driver: testing\n",
    ))
    .watchdog;
    assert_eq!(w.mode, WatchdogMode::Required);
    assert_eq!(w.device, PathBuf::from("/run/wd.fifo"));
    assert_eq!(w.driver, WatchdogDriver::Testing);
    assert_eq!(w.timeout(30), 15, "-1 means half the ttl");
    let w = config(&minimal("watchdog:\n  safety_margin: '7'\n")).watchdog;
    assert_eq!(w.timeout(30), 23);
}

#[test]
fn bad_watchdog_values_name_the_key() {
    for (yaml, key) in [
        ("watchdog:\n  safety_margin: -2\n", "watchdog.safety_margin"),
        (
            "watchdog:\n  safety_margin: soon\n",
            "watchdog.safety_margin",
        ),
        ("watchdog:\n  device: [a]\n", "watchdog.device"),
        ("watchdog:\n  device: ''\n", "watchdog.device"),
        (
            "watchdog:\n  mode: required\n  driver: magic\n",
            "watchdog.driver",
        ),
        ("watchdog: 1\n", "watchdog"),
    ] {
        let err = parse_str(&minimal(yaml)).expect_err(yaml).to_string();
        assert!(err.contains(key), "{yaml}: {err}");
    }
    // Automatic mode with a driver pgha does not know: no watchdog, said loudly.
    let l = parse_str(&minimal("watchdog:\n  driver: magic\n")).expect("loads");
    assert_eq!(l.config.watchdog.mode, WatchdogMode::Off);
    assert!(
        l.warnings.iter().any(|w| w.starts_with("watchdog.driver:")),
        "{:?}",
        l.warnings
    );
}

#[test]
fn lease_guard_is_on_by_default_and_can_be_turned_off() {
    let c = config(&minimal(""));
    assert!(c.lease_guard.enabled);
    assert_eq!(c.lease_guard.safety_margin_ms, 1000);
    let c = config(&minimal(
        "lease_guard:\n  mode: off\n  safety_margin: 2.5\n",
    ));
    assert!(!c.lease_guard.enabled);
    assert_eq!(c.lease_guard.safety_margin_ms, 2500);
    let c = config(&minimal("lease_guard: {mode: \"on\"}\n"));
    assert!(c.lease_guard.enabled);
    for bad in [
        "lease_guard: {mode: sometimes}\n",
        "lease_guard: {safety_margin: -1}\n",
        "lease_guard: {safety_margin: soon}\n",
        "lease_guard: 1\n",
    ] {
        let err = parse_str(&minimal(bad)).expect_err(bad).to_string();
        assert!(err.contains("lease_guard"), "{bad}: {err}");
    }
}
