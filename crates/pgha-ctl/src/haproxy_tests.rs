use pgha_types::{Cluster, KeyValue};

use super::*;

fn member(name: &str, conn: &str, api: &str) -> KeyValue {
    KeyValue {
        key: format!("members/{name}"),
        value: format!(
            r#"{{"conn_url": "{conn}", "api_url": "{api}", "state": "running", "role": "replica"}}"#
        ),
        lease: 1,
        mod_revision: 1,
    }
}

fn cluster(keys: Vec<KeyValue>) -> Cluster {
    Cluster::from_keys(&keys)
}

fn lab() -> Cluster {
    cluster(vec![
        member(
            "node2",
            "postgres://127.0.0.1:5442/postgres",
            "http://127.0.0.1:8012/patroni",
        ),
        member(
            "node1",
            "postgres://127.0.0.1:5441/postgres",
            "http://127.0.0.1:8011/patroni",
        ),
        member(
            "node3",
            "postgres://127.0.0.1:5443/postgres",
            "http://127.0.0.1:8013/patroni",
        ),
    ])
}

const GOLDEN: &str = "\
# haproxy.cfg for pgha cluster pgha-lab, written by `pghactl haproxy-config`.
# Primary on :5000, replicas on :5001, stats page on :7000. The agents' REST checks decide the
# routing: regenerate only when members are added or removed.
global
    maxconn 1000

defaults
    log global
    mode tcp
    retries 2
    timeout client 30m
    timeout connect 4s
    timeout server 30m
    timeout check 5s

listen stats
    mode http
    bind *:7000
    stats enable
    stats uri /

listen primary
    bind *:5000
    option httpchk OPTIONS /primary
    http-check expect status 200
    default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions
    server node1 127.0.0.1:5441 maxconn 100 check port 8011
    server node2 127.0.0.1:5442 maxconn 100 check port 8012
    server node3 127.0.0.1:5443 maxconn 100 check port 8013

listen replicas
    bind *:5001
    balance roundrobin
    option httpchk OPTIONS /replica
    http-check expect status 200
    default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions
    server node1 127.0.0.1:5441 maxconn 100 check port 8011
    server node2 127.0.0.1:5442 maxconn 100 check port 8012
    server node3 127.0.0.1:5443 maxconn 100 check port 8013
";

#[test]
fn golden_lab_config() {
    let text = render("pgha-lab", &lab(), &HaproxyOptions::default()).unwrap();
    assert_eq!(text, GOLDEN, "\n{text}");
}

#[test]
fn options_change_the_right_lines() {
    let opts = HaproxyOptions {
        bind: "127.0.0.1".into(),
        primary_port: 15000,
        replica_port: 15001,
        stats_port: 17000,
        inter: "1s".into(),
        fall: 2,
        rise: 1,
        maxconn: 50,
        method: CheckMethod::Get,
        replica_lag: Some("1MB".into()),
        stats_socket: Some("/tmp/lab/haproxy.sock".into()),
        ssl: false,
        check_cert: None,
        check_ca: None,
    };
    let text = render("c", &lab(), &opts).unwrap();
    for line in [
        "    stats socket /tmp/lab/haproxy.sock mode 600 level admin\n",
        "    bind 127.0.0.1:17000\n",
        "listen primary\n    bind 127.0.0.1:15000\n    option httpchk GET /primary\n",
        "listen replicas\n    bind 127.0.0.1:15001\n    balance roundrobin\n    option httpchk GET /replica?lag=1MB\n",
        "    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions\n",
        "    server node2 127.0.0.1:5442 maxconn 50 check port 8012\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn ssl_flag_checks_every_server_over_tls() {
    let c = cluster(vec![member(
        "node1",
        "postgres://10.0.0.1:5432/postgres",
        "http://10.0.0.1:8008/patroni",
    )]);
    let opts = HaproxyOptions {
        ssl: true,
        ..HaproxyOptions::default()
    };
    let text = render("c", &c, &opts).unwrap();
    let line = "    server node1 10.0.0.1:5432 maxconn 100 check port 8008 check-ssl verify none\n";
    assert!(text.contains(line), "missing {line:?} in\n{text}");

    // A client certificate for members that require one, and their certificates verified.
    let opts = HaproxyOptions {
        check_cert: Some("/lab/tls/haproxy.pem".into()),
        check_ca: Some("/lab/tls/ca.pem".into()),
        ..opts
    };
    let text = render("c", &c, &opts).unwrap();
    let line = "    server node1 10.0.0.1:5432 maxconn 100 check port 8008 check-ssl verify required ca-file /lab/tls/ca.pem crt /lab/tls/haproxy.pem\n";
    assert!(text.contains(line), "missing {line:?} in\n{text}");
    let bad = HaproxyOptions {
        check_cert: Some("/a b.pem".into()),
        ..HaproxyOptions::default()
    };
    assert!(validate(&bad).is_err());
}

#[test]
fn rest_api_elsewhere_tls_ipv6_and_odd_names() {
    let c = cluster(vec![
        member(
            "db one",
            "postgres://10.0.0.1:6432/postgres",
            "https://10.0.0.9:8443/patroni",
        ),
        member(
            "v6",
            "postgres://[::1]:5432/postgres",
            "http://[::1]/patroni",
        ),
        member(
            "node9",
            "postgres://10.0.0.3/postgres",
            "http://10.0.0.3:8008/patroni",
        ),
    ]);
    let text = render("c", &c, &HaproxyOptions::default()).unwrap();
    for line in [
        "    server db_one 10.0.0.1:6432 maxconn 100 check addr 10.0.0.9 port 8443 check-ssl verify none\n",
        "    server v6 [::1]:5432 maxconn 100 check port 80\n",
        "    server node9 10.0.0.3:5432 maxconn 100 check port 8008\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn members_without_urls_are_skipped_with_a_comment() {
    let mut keys = lab().members.len();
    assert_eq!(keys, 3);
    let mut kv = vec![member(
        "node1",
        "postgres://127.0.0.1:5441/postgres",
        "http://127.0.0.1:8011/patroni",
    )];
    kv.push(KeyValue {
        key: "members/broken".into(),
        value: r#"{"conn_url": "postgres://127.0.0.1:5449/postgres"}"#.into(),
        lease: 1,
        mod_revision: 1,
    });
    kv.push(KeyValue {
        key: "members/garbage".into(),
        value: "not json".into(),
        lease: 1,
        mod_revision: 1,
    });
    let text = render("c", &cluster(kv), &HaproxyOptions::default()).unwrap();
    assert!(text.contains("# skipped broken: no api_url\n"), "{text}");
    assert!(text.contains("# skipped garbage: no conn_url\n"), "{text}");
    keys = text.matches("    server ").count();
    assert_eq!(keys, 2, "node1 in both sections only");
}

#[test]
fn errors_are_typed_and_clear() {
    let d = HaproxyOptions::default;
    assert_eq!(
        render("x", &Cluster::default(), &d()),
        Err(HaproxyError::NoMembers("x".into()))
    );
    let only_garbage = cluster(vec![KeyValue {
        key: "members/a".into(),
        value: "{}".into(),
        lease: 0,
        mod_revision: 1,
    }]);
    assert!(matches!(
        render("x", &only_garbage, &d()),
        Err(HaproxyError::NoUsableMembers(_, why)) if why == "a: no conn_url"
    ));
    for bad in ["", "3 s", "s", "3sec", "-1s"] {
        let opts = HaproxyOptions {
            inter: bad.into(),
            ..d()
        };
        assert_eq!(
            render("x", &lab(), &opts),
            Err(HaproxyError::BadInterval(bad.into())),
            "{bad:?}"
        );
    }
    for ok in ["1", "500ms", "2s", "1m"] {
        let opts = HaproxyOptions {
            inter: ok.into(),
            ..d()
        };
        assert!(render("x", &lab(), &opts).is_ok(), "{ok}");
    }
    let opts = HaproxyOptions { fall: 0, ..d() };
    assert_eq!(render("x", &lab(), &opts), Err(HaproxyError::BadCount));
    let opts = HaproxyOptions {
        replica_port: 5000,
        ..d()
    };
    assert_eq!(
        render("x", &lab(), &opts),
        Err(HaproxyError::PortClash(5000, 5000, 7000))
    );
    let opts = HaproxyOptions {
        bind: "0.0.0.0 # x".into(),
        ..d()
    };
    assert!(matches!(
        render("x", &lab(), &opts),
        Err(HaproxyError::BadValue { what: "--bind", .. })
    ));
    let msg = HaproxyError::NoMembers("lab".into()).to_string();
    assert!(
        msg.starts_with("no members of cluster lab found in the DCS"),
        "{msg}"
    );
}

#[test]
fn api_urls() {
    assert_eq!(
        parse_api_url("http://127.0.0.1:8008/patroni"),
        Some((false, "127.0.0.1".into(), 8008))
    );
    assert_eq!(
        parse_api_url("https://u:p@h.example/patroni"),
        Some((true, "h.example".into(), 443))
    );
    assert_eq!(
        parse_api_url("http://[fe80::1]:81"),
        Some((false, "fe80::1".into(), 81))
    );
    assert_eq!(parse_api_url("ftp://h/x"), None);
    assert_eq!(parse_api_url("http://h:notaport/"), None);
    assert_eq!(parse_api_url("nonsense"), None);
    assert_eq!(parse_api_url("http:///x"), None);
}
