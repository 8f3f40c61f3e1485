//! Validation: every problem with its key path, warnings for unknown keys, DCS selection.

use pgha_config::{parse_str, ConfigError};

fn problems(yaml: &str) -> Vec<String> {
    match parse_str(yaml) {
        Ok(l) => panic!("expected problems, loaded {:?}", l.config),
        Err(ConfigError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("expected validation problems, got {other}"),
    }
}

fn paths(yaml: &str) -> Vec<String> {
    match parse_str(yaml) {
        Err(ConfigError::Invalid(p)) => p.into_iter().map(|p| p.path).collect(),
        Err(other) => panic!("expected validation problems, got {other}"),
        Ok(_) => Vec::new(),
    }
}

const VALID: &str = "scope: batman
name: n1
restapi:
  listen: 127.0.0.1:8008
etcd3:
  hosts: 127.0.0.1:2379
postgresql:
  listen: 127.0.0.1:5432
  data_dir: /data/pg
  authentication:
    superuser: {username: postgres}
    replication: {username: replicator}
";

#[test]
fn valid_base_loads() {
    let l = parse_str(VALID).expect("loads");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn all_problems_are_reported_with_their_paths() {
    let p = problems(
        "namespace: /service
restapi:
  listen: 8008
  verify_client: maybe
postgresql:
  listen: 0.0.0.0:5432
  pg_ctl_timeout: soon
  parameters: [a]
  use_slots: perhaps
  authentication:
    superuser: {password: x}
bootstrap:
  dcs: {ttl: 10, loop_wait: 10, retry_timeout: 10}
  initdb: data-checksums
log:
  level: LOUD
  type: xml
",
    );
    let expected = [
        "scope: is required",
        "name: is required",
        "restapi.listen: expected host:port (e.g. 127.0.0.1:5432), got \"8008\" without a port",
        "restapi.verify_client: expected none, optional or required, got \"maybe\"",
        "etcd3: is required: pgha keeps the cluster state in etcd (v3 API); add an etcd3 section with hosts",
        "bootstrap.dcs.ttl: 10 is too small for loop_wait=10 and retry_timeout=10 (need loop_wait + 2*retry_timeout <= ttl)",
        "bootstrap.initdb: expected a list of options (`- data-checksums`, `- encoding: UTF8`) or a mapping, got a string",
        "postgresql.connect_address: required when listen is a wildcard address (0.0.0.0:5432); set the host:port other members connect to",
        "postgresql.data_dir: is required",
        "postgresql.pg_ctl_timeout: expected a positive whole number of seconds, got \"soon\"",
        "postgresql.authentication.superuser.username: is required",
        "postgresql.authentication.replication.username: is required",
        "postgresql.parameters: expected a mapping, got a list",
        "postgresql.use_slots: expected true or false, got \"perhaps\"",
        "log.level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got \"LOUD\"",
        "log.type: expected plain or json, got \"xml\"",
    ];
    assert_eq!(p, expected);
    let err = parse_str("name: x").expect_err("invalid");
    assert!(
        err.to_string().starts_with("invalid configuration ("),
        "{err}"
    );
}

#[test]
fn wrong_section_types() {
    let p = problems(&format!("{VALID}restapi: 8008\ntags: [a]\nlog: verbose\n"));
    assert_eq!(
        p,
        vec![
            "restapi: expected a mapping, got a number",
            "restapi.listen: is required",
            "tags: expected a mapping, got a list",
            "log: expected a mapping, got a string",
        ]
    );
    let p = paths(&VALID.replace(
        "data_dir: /data/pg",
        "data_dir: [a]\n  pg_hba: local all all trust",
    ));
    assert_eq!(p, vec!["postgresql.data_dir", "postgresql.pg_hba"]);
}

#[test]
fn ports_and_timeouts() {
    assert_eq!(
        paths(&VALID.replace("127.0.0.1:8008", "127.0.0.1:http")),
        vec!["restapi.listen"]
    );
    assert_eq!(
        paths(&VALID.replace("127.0.0.1:5432", "127.0.0.1:99999")),
        vec!["postgresql.listen"]
    );
    assert_eq!(
        paths(&format!("{VALID}  connect_address: a,b:5432\n")),
        vec!["postgresql.connect_address"]
    );
    assert_eq!(
        paths(&format!("{VALID}  pg_ctl_timeout: 0\n")),
        vec!["postgresql.pg_ctl_timeout"]
    );
    assert_eq!(
        paths(&format!("{VALID}  pg_ctl_timeout: -5\n")),
        vec!["postgresql.pg_ctl_timeout"]
    );
    assert_eq!(
        paths(&VALID.replace("hosts: 127.0.0.1:2379", "hosts: 127.0.0.1:abc")),
        vec!["etcd3"]
    );
    assert_eq!(
        paths(&format!(
            "{VALID}bootstrap:\n  dcs:\n    loop_wait: \"ten\"\n"
        )),
        vec!["bootstrap.dcs.loop_wait"]
    );
    assert_eq!(
        paths(&format!(
            "{VALID}bootstrap:\n  dcs:\n    retry_timeout: 1\n"
        )),
        vec!["bootstrap.dcs.retry_timeout"]
    );
    assert!(parse_str(&format!(
        "{VALID}bootstrap:\n  dcs:\n    ttl: \"20\"\n    loop_wait: 1\n    retry_timeout: 3\n"
    ))
    .is_ok());
}

#[test]
fn unknown_keys_warn_and_do_not_fail() {
    let l = parse_str(&format!(
        "{VALID}  foo: 1\nbar: 2\nrestapi_typo: 3\nlog:\n  colour: red\n"
    ))
    .expect("loads");
    assert_eq!(
        l.warnings,
        vec![
            "unknown configuration key 'bar' (ignored)",
            "unknown configuration key 'restapi_typo' (ignored)",
            "unknown configuration key 'postgresql.foo' (ignored)",
            "unknown configuration key 'log.colour' (ignored)",
        ]
    );
    assert!(!l.config.postgresql.extra.contains_key("foo"));
}

#[test]
fn misspelled_required_key_gets_a_hint() {
    let p = problems(&VALID.replace("data_dir:", "data-dir:"));
    assert_eq!(
        p,
        vec!["postgresql.data_dir: is required (found 'postgresql.data-dir'; did you mean 'data_dir'?)"]
    );
}

#[test]
fn only_etcd3_is_supported() {
    let without = VALID.replace("etcd3:\n  hosts: 127.0.0.1:2379\n", "");
    assert_eq!(
        problems(&format!("{without}consul:\n  host: 127.0.0.1:8500\n")),
        vec!["consul: only etcd3 is supported as DCS; found consul"]
    );
    assert_eq!(
        problems(&format!(
            "{without}zookeeper:\n  hosts: [a]\nkubernetes: {{}}\n"
        )),
        vec!["zookeeper: only etcd3 is supported as DCS; found zookeeper, kubernetes"]
    );
    let v2 = problems(&format!("{without}etcd:\n  host: 127.0.0.1:2379\n"));
    assert_eq!(v2.len(), 1);
    assert!(
        v2[0].starts_with("etcd: etcd (v2 API) is not supported; use the etcd3 section"),
        "{v2:?}"
    );
    assert!(problems(&format!("{VALID}citus:\n  group: 0\n"))[0].starts_with("citus: "));
    assert_eq!(
        paths(&VALID.replace("  hosts: 127.0.0.1:2379\n", "  srv: example.com\n")),
        vec!["etcd3.srv"]
    );
    assert_eq!(
        paths(&VALID.replace("  hosts: 127.0.0.1:2379\n", "")),
        vec!["etcd3"]
    );

    let l = parse_str(&format!(
        "{VALID}etcd:\n  host: 127.0.0.1:2379\nconsul:\n  host: c:8500\n"
    ))
    .expect("loads");
    assert_eq!(l.config.etcd.as_ref().map(|e| e.hosts.len()), Some(1));
    assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
    assert!(l.warnings[0].contains("etcd (v2 API) section is ignored"));
    assert!(l.warnings[1].contains("consul section is ignored"));
}

#[test]
fn connect_address_defaults() {
    let c = parse_str(VALID).expect("loads").config;
    assert_eq!(c.restapi.connect_address, "127.0.0.1:8008");
    assert_eq!(c.postgresql.connect_address, "127.0.0.1:5432");
    let l =
        parse_str(&VALID.replace("listen: 127.0.0.1:8008", "listen: 0.0.0.0:8008")).expect("loads");
    assert_eq!(l.config.restapi.connect_address, "0.0.0.0:8008");
    assert_eq!(l.warnings.len(), 1);
    assert!(
        l.warnings[0].contains("restapi.connect_address is not set"),
        "{:?}",
        l.warnings
    );
    let c = parse_str(&VALID.replace("listen: 127.0.0.1:5432", "listen: \"*,10.1.1.1:5432\""))
        .expect("loads")
        .config;
    assert_eq!(c.postgresql.connect_address, "10.1.1.1:5432");
}

#[test]
fn custom_bootstrap_method_needs_its_command() {
    assert_eq!(
        paths(&format!("{VALID}bootstrap:\n  method: clone\n")),
        vec!["bootstrap.clone"]
    );
    assert_eq!(
        paths(&format!(
            "{VALID}bootstrap:\n  method: clone\n  clone: {{keep_existing_recovery_conf: true}}\n"
        )),
        vec!["bootstrap.clone.command"]
    );
    let l = parse_str(&format!(
        "{VALID}bootstrap:\n  method: clone\n  clone: {{command: /bin/clone}}\n  post_init: /bin/post\n  users: {{}}\n"
    ))
    .expect("loads");
    let b = &l.config.bootstrap;
    assert_eq!(b.custom_method().map(|m| m.name.as_str()), Some("clone"));
    assert_eq!(b.post_bootstrap.as_deref(), Some("/bin/post"));
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert!(l.warnings[0].contains("bootstrap.users"));
}

#[test]
fn any_input_is_an_error_not_a_panic() {
    for yaml in [
        "",
        "~",
        "[]",
        "a",
        "1",
        "{",
        ": :",
        "postgresql: null",
        "postgresql: {authentication: 1}",
        "etcd3: [1]",
        "etcd3: {hosts: {a: 1}}",
        "bootstrap: {initdb: [[1]]}",
        "bootstrap: {dcs: 1}",
        "restapi: {listen: ':'}",
        "postgresql: {listen: ',:1'}",
        "log: {file_num: 99999999999}",
        "tags: {nofailover: true, failover_priority: 1}",
        "watchdog: 1",
        "? [a]\n: b",
    ] {
        assert!(parse_str(yaml).is_err(), "{yaml:?}");
    }
}

#[test]
fn rest_api_tls_keys_are_taken_and_the_url_is_https() {
    let yaml = VALID.replace(
        "  listen: 127.0.0.1:8008\n",
        "  listen: 127.0.0.1:8008\n  certfile: /etc/ssl/pgha.pem\n  keyfile: /etc/ssl/pgha.key\n  keyfile_password: pw\n  cafile: /etc/ssl/ca.pem\n  verify_client: required\n",
    );
    let c = parse_str(&yaml).expect("valid").config;
    assert_eq!(c.restapi.keyfile_password.as_deref(), Some("pw"));
    assert_eq!(c.restapi.verify_client.as_deref(), Some("required"));
    assert!(c.restapi.api_url().starts_with("https://"));
}

fn with_restapi(keys: &str) -> String {
    VALID.replace(
        "  listen: 127.0.0.1:8008\n",
        &format!("  listen: 127.0.0.1:8008\n{keys}"),
    )
}

#[test]
fn rest_api_ciphers_allowlist_and_headers_are_taken() {
    let c = parse_str(&with_restapi(
        "  certfile: /etc/ssl/pgha.pem\n  ciphers: ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384\n  allowlist: [127.0.0.1, 10.0.0.0/8, db1.example.com]\n  allowlist_include_members: true\n  http_extra_headers: {X-Frame-Options: SAMEORIGIN, X-Num: 1}\n  https_extra_headers: {Strict-Transport-Security: max-age=31536000}\n",
    ))
    .expect("valid")
    .config;
    let r = &c.restapi;
    assert_eq!(
        r.ciphers.as_deref(),
        Some("ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384")
    );
    assert_eq!(r.allowlist, ["127.0.0.1", "10.0.0.0/8", "db1.example.com"]);
    assert!(r.allowlist_include_members);
    let h = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        r.extra_headers(),
        [
            h("X-Frame-Options", "SAMEORIGIN"),
            h("X-Num", "1"),
            h("Strict-Transport-Security", "max-age=31536000")
        ]
    );
    assert!(r.extra.is_empty(), "{:?}", r.extra);
    // Over plain HTTP the https headers are left out.
    let c = parse_str(&with_restapi(
        "  http_extra_headers: {A: b}\n  https_extra_headers: {C: d}\n",
    ))
    .unwrap()
    .config;
    assert_eq!(c.restapi.extra_headers(), [h("A", "b")]);
}

#[test]
fn bad_ciphers_allowlist_and_headers_are_problems() {
    let p = problems(&with_restapi(
        "  ciphers: HIGH:DHE-RSA-AES256-SHA\n  allowlist: [10.0.0.0/33, 300.1.1.1/8]\n  http_extra_headers: {'Bad Name': x, Ok: \"a\\nb\"}\n",
    ));
    assert_eq!(p.len(), 5, "{p:#?}");
    assert!(
        p[0].starts_with("restapi.ciphers: ")
            && p[0].contains("DHE-RSA-AES256-SHA is not one pgha can offer"),
        "{p:#?}"
    );
    assert!(
        p[1].starts_with("restapi.allowlist[0]: ") && p[1].contains("0 to 32"),
        "{p:#?}"
    );
    assert!(p[2].starts_with("restapi.allowlist[1]: "), "{p:#?}");
    assert_eq!(
        p[3],
        "restapi.http_extra_headers.Bad Name: is not a valid HTTP header name"
    );
    assert!(
        p[4].starts_with("restapi.http_extra_headers.Ok: "),
        "{p:#?}"
    );
    let p = problems(&with_restapi("  ciphers: MEDIUM:!HIGH\n"));
    assert!(p[0].contains("selects no cipher suite"), "{p:#?}");
}

/// No secret of a loaded configuration shows in its Debug output (it ends up in logs and
/// panic messages).
#[test]
fn debug_of_a_config_shows_no_password() {
    let yaml = "scope: batman
name: n1
restapi:
  listen: 127.0.0.1:8008
  certfile: /etc/ssl/pgha.pem
  keyfile_password: S3cretKeyPw
  authentication: {username: admin, password: S3cretRestPw}
ctl:
  authentication: {username: admin, password: S3cretCtlPw}
  keyfile_password: S3cretCtlKeyPw
etcd3:
  hosts: 127.0.0.1:2379
  username: root
  password: S3cretEtcdPw
postgresql:
  listen: 127.0.0.1:5432
  data_dir: /data/pg
  authentication:
    superuser: {username: postgres, password: S3cretSuperPw, sslpassword: S3cretSslPw}
    replication: {username: replicator, password: S3cretReplPw}
    rewind: {username: rewinder, password: S3cretRewindPw}
";
    let c = parse_str(yaml).expect("valid").config;
    let debug = format!("{c:?} {c:#?}");
    assert!(!debug.contains("S3cret"), "{debug}");
    assert!(debug.contains("<redacted>"));
}

#[test]
fn libpq_option_values_are_checked() {
    let yaml = VALID.replace(
        "replication: {username: replicator}",
        "replication: {username: replicator, sslmode: verify_ca, channel_binding: always}",
    );
    let p = problems(&yaml);
    assert!(
        p.iter().any(|m| m.contains("postgresql.authentication.replication.sslmode")
            && m.contains("\"verify_ca\" is not one of disable, allow, prefer, require, verify-ca, verify-full")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.contains("channel_binding") && m.contains("\"always\"")),
        "{p:?}"
    );
    let ok = VALID.replace(
        "replication: {username: replicator}",
        "replication: {username: replicator, sslmode: verify-full, sslrootcert: /ca.pem}",
    );
    let l = parse_str(&ok).expect("loads");
    let rep = l.config.postgresql.authentication.replication.unwrap();
    assert_eq!(rep.extra["sslmode"], "verify-full");
}
