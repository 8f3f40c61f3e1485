//! Golden tests: the exact text patronictl 4.1.5 printed for the same DCS contents
//! (/work/shared/reference/patroni-4.1.5-observed.md), plus cases built from its rules.

use super::*;
use pgha_types::KeyValue;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        lease: 0,
        mod_revision: 1,
    }
}

const CONFIG: &str = r#"{"ttl":20,"loop_wait":1,"retry_timeout":3,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true,"use_slots":true,"parameters":{"wal_level":"replica","hot_standby":"on","max_wal_senders":10,"max_replication_slots":10,"wal_log_hints":"on","max_connections":100,"shared_buffers":"64MB"}}}"#;

/// `etcdctl get --prefix /` after bootstrap (before any switchover).
fn bench_keys() -> Vec<KeyValue> {
    vec![
        kv("config", CONFIG),
        kv("initialize", "7710809278050705596"),
        kv("leader", "node3"),
        kv(
            "members/node1",
            r#"{"conn_url":"postgres://127.0.0.1:5451/postgres","api_url":"http://127.0.0.1:8021/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":67108864,"replay_lsn":67108864,"receive_lsn":67108864,"replication_state":"streaming","timeline":1}"#,
        ),
        kv(
            "members/node2",
            r#"{"conn_url":"postgres://127.0.0.1:5452/postgres","api_url":"http://127.0.0.1:8022/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":67108864,"replay_lsn":67108864,"receive_lsn":67108864,"replication_state":"streaming","timeline":1}"#,
        ),
        kv(
            "members/node3",
            r#"{"conn_url":"postgres://127.0.0.1:5453/postgres","api_url":"http://127.0.0.1:8023/patroni","state":"running","role":"primary","version":"4.1.5","xlog_location":67108864,"timeline":1}"#,
        ),
        kv(
            "status",
            r#"{"optime":67108864,"slots":{"node2":67108864,"node1":67108864,"node3":67108864},"retain_slots":["node1","node2","node3"]}"#,
        ),
    ]
}

fn bench() -> Cluster {
    Cluster::from_keys(&bench_keys())
}

fn with(mut keys: Vec<KeyValue>, key: &str, value: &str) -> Cluster {
    keys.retain(|k| k.key != key);
    keys.push(kv(key, value));
    Cluster::from_keys(&keys)
}

const LIST: &str = "\
+ Cluster: pgha-bench (7710809278050705596) ----+----+-------------+-----+------------+-----+
| Member | Host           | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+
| node1  | 127.0.0.1:5451 | Replica | streaming |  1 |   0/4000000 |   0 |  0/4000000 |   0 |
| node2  | 127.0.0.1:5452 | Replica | streaming |  1 |   0/4000000 |   0 |  0/4000000 |   0 |
| node3  | 127.0.0.1:5453 | Leader  | running   |  1 |             |     |            |     |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+
";

#[test]
fn list_pretty_matches_patronictl() {
    assert_eq!(
        render_members(&bench(), "pgha-bench", false, Format::Pretty),
        LIST
    );
}

#[test]
fn list_extended_matches_patronictl() {
    let expected = "\
+ Cluster: pgha-bench (7710809278050705596) ----+----+-------------+-----+------------+-----+-----------------+------------------------+-------------------+------+
| Member | Host           | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Pending restart | Pending restart reason | Scheduled restart | Tags |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+-----------------+------------------------+-------------------+------+
| node1  | 127.0.0.1:5451 | Replica | streaming |  1 |   0/4000000 |   0 |  0/4000000 |   0 |                 |                        |                   |      |
| node2  | 127.0.0.1:5452 | Replica | streaming |  1 |   0/4000000 |   0 |  0/4000000 |   0 |                 |                        |                   |      |
| node3  | 127.0.0.1:5453 | Leader  | running   |  1 |             |     |            |     |                 |                        |                   |      |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+-----------------+------------------------+-------------------+------+
";
    assert_eq!(
        render_members(&bench(), "pgha-bench", true, Format::Pretty),
        expected
    );
}

#[test]
fn list_json_matches_patronictl() {
    let expected = r#"[{"Cluster": "pgha-bench", "Member": "node1", "Host": "127.0.0.1:5451", "Role": "Replica", "State": "streaming", "TL": 1, "Receive LSN": "0/4000000", "Receive Lag": 0, "Replay LSN": "0/4000000", "Replay Lag": 0}, {"Cluster": "pgha-bench", "Member": "node2", "Host": "127.0.0.1:5452", "Role": "Replica", "State": "streaming", "TL": 1, "Receive LSN": "0/4000000", "Receive Lag": 0, "Replay LSN": "0/4000000", "Replay Lag": 0}, {"Cluster": "pgha-bench", "Member": "node3", "Host": "127.0.0.1:5453", "Role": "Leader", "State": "running", "TL": 1}]"#;
    assert_eq!(
        render_members(&bench(), "pgha-bench", false, Format::Json),
        format!("{expected}\n")
    );
}

#[test]
fn topology_matches_patronictl() {
    let expected = "\
+ Cluster: pgha-bench (7710809278050705596) -----+----+-------------+-----+------------+-----+
| Member  | Host           | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag |
+---------+----------------+---------+-----------+----+-------------+-----+------------+-----+
| node3   | 127.0.0.1:5453 | Leader  | running   |  1 |             |     |            |     |
| + node1 | 127.0.0.1:5451 | Replica | streaming |  1 |   0/4000000 |   0 |  0/4000000 |   0 |
| + node2 | 127.0.0.1:5452 | Replica | streaming |  1 |   0/4000000 |   0 |  0/4000000 |   0 |
+---------+----------------+---------+-----------+----+-------------+-----+------------+-----+
";
    assert_eq!(
        render_members(&bench(), "pgha-bench", false, Format::Topology),
        expected
    );
}

#[test]
fn list_yaml_and_tsv() {
    let yaml = render_members(&bench(), "pgha-bench", false, Format::Yaml);
    assert!(yaml.starts_with(
        "- Cluster: pgha-bench\n  Host: 127.0.0.1:5451\n  Member: node1\n  Receive LSN: 0/4000000\n  \
         Receive Lag: 0\n  Replay LSN: 0/4000000\n  Replay Lag: 0\n  Role: Replica\n  State: streaming\n  TL: 1\n"
    ));
    assert!(yaml.ends_with(
        "- Cluster: pgha-bench\n  Host: 127.0.0.1:5453\n  Member: node3\n  Role: Leader\n  State: running\n  TL: 1\n\n"
    ));
    let tsv = render_members(&bench(), "pgha-bench", false, Format::Tsv);
    let lines: Vec<&str> = tsv.lines().collect();
    assert_eq!(
        lines[0],
        "Cluster\tMember\tHost\tRole\tState\tTL\tReceive LSN\tReceive Lag\tReplay LSN\tReplay Lag"
    );
    assert_eq!(
        lines[1],
        "pgha-bench\tnode1\t127.0.0.1:5451\tReplica\tstreaming\t1\t0/4000000\t0\t0/4000000\t0"
    );
    assert_eq!(
        lines[3],
        "pgha-bench\tnode3\t127.0.0.1:5453\tLeader\trunning\t1\t\t\t\t"
    );
    assert_eq!(lines.len(), 4);
}

/// `list` with a pending scheduled switchover, as observed.
#[test]
fn scheduled_switchover_footer_matches_patronictl() {
    let keys = vec![
        kv("config", CONFIG),
        kv(
            "failover",
            r#"{"leader":"node1","member":"node3","scheduled_at":"2026-11-22T02:58:28+00:00"}"#,
        ),
        kv(
            "history",
            r#"[[1,67109200,"no recovery target specified","2026-11-22T01:58:24.372054+00:00","node1"]]"#,
        ),
        kv("initialize", "7710809278050705596"),
        kv("leader", "node1"),
        kv(
            "members/node1",
            r#"{"conn_url":"postgres://127.0.0.1:5451/postgres","api_url":"http://127.0.0.1:8021/patroni","state":"running","role":"primary","version":"4.1.5","xlog_location":67109480,"timeline":2}"#,
        ),
        kv(
            "members/node2",
            r#"{"conn_url":"postgres://127.0.0.1:5452/postgres","api_url":"http://127.0.0.1:8022/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":67109480,"replay_lsn":67109480,"receive_lsn":67109480,"replication_state":"streaming","timeline":2}"#,
        ),
        kv(
            "members/node3",
            r#"{"conn_url":"postgres://127.0.0.1:5453/postgres","api_url":"http://127.0.0.1:8023/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":67109480,"replay_lsn":67109480,"receive_lsn":67109480,"replication_state":"streaming","timeline":2}"#,
        ),
        kv(
            "status",
            r#"{"optime":67109480,"slots":{"node2":67109480,"node3":67109480,"node1":67109480},"retain_slots":["node1","node2","node3"]}"#,
        ),
    ];
    let expected = "\
+ Cluster: pgha-bench (7710809278050705596) ----+----+-------------+-----+------------+-----+
| Member | Host           | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+
| node1  | 127.0.0.1:5451 | Leader  | running   |  2 |             |     |            |     |
| node2  | 127.0.0.1:5452 | Replica | streaming |  2 |   0/4000268 |   0 |  0/4000268 |   0 |
| node3  | 127.0.0.1:5453 | Replica | streaming |  2 |   0/4000268 |   0 |  0/4000268 |   0 |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+
 Switchover scheduled at: 2026-11-22T02:58:28+00:00
                    from: node1
                      to: node3
";
    let c = Cluster::from_keys(&keys);
    assert_eq!(
        render_members(&c, "pgha-bench", false, Format::Pretty),
        expected
    );
    // Machine-readable formats carry no footer.
    assert!(!render_members(&c, "pgha-bench", false, Format::Json).contains("Switchover"));
}

#[test]
fn paused_cluster_with_switchover_prints_both_footer_lines() {
    let mut keys = bench_keys();
    keys.push(kv(
        "failover",
        r#"{"leader":"node3","scheduled_at":"2026-11-22T02:58:28.5+00:00"}"#,
    ));
    let c = with(keys, "config", r#"{"ttl":20,"pause":true}"#);
    let out = render_members(&c, "pgha-bench", false, Format::Pretty);
    assert!(out.ends_with(
        "+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+\n \
         Maintenance mode: on\n \
         Switchover scheduled at: 2026-11-22T02:58:28.500000+00:00\n                    from: node3\n"
    ), "{out}");
    let topo = render_members(&c, "pgha-bench", false, Format::Topology);
    assert!(topo.contains("\n Maintenance mode: on\n"));
}

#[test]
fn stopped_replica_and_garbage_member() {
    let mut keys = bench_keys();
    keys.retain(|k| k.key != "members/node2");
    keys.push(kv("members/node2", r#"{"conn_url":"postgres://127.0.0.1:5452/postgres","api_url":"http://127.0.0.1:8022/patroni","state":"stopped","role":"replica","version":"4.1.5"}"#));
    keys.push(kv("members/node4", "{not json"));
    let c = Cluster::from_keys(&keys);
    let expected = "\
+ Cluster: pgha-bench (7710809278050705596) ----+----+-------------+-----+------------+-----+
| Member | Host           | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+
| node1  | 127.0.0.1:5451 | Replica | streaming |  1 |   0/4000000 |   0 |  0/4000000 |   0 |
| node2  | 127.0.0.1:5452 | Replica | stopped   |    |     unknown |     |    unknown |     |
| node3  | 127.0.0.1:5453 | Leader  | running   |  1 |             |     |            |     |
| node4  |                | Replica |           |    |     unknown |     |    unknown |     |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+
";
    assert_eq!(
        render_members(&c, "pgha-bench", false, Format::Pretty),
        expected
    );
    let json = render_members(&c, "pgha-bench", false, Format::Json);
    assert!(json.contains(r#"{"Cluster": "pgha-bench", "Member": "node4", "Role": "Replica", "Receive LSN": "unknown", "Replay LSN": "unknown"}"#), "{json}");
}

#[test]
fn a_replica_being_cloned_shows_its_basebackup_progress() {
    let c = with(
        bench_keys(),
        "members/node2",
        r#"{"conn_url":"postgres://127.0.0.1:5452/postgres","api_url":"http://127.0.0.1:8022/patroni","state":"creating replica","role":"replica","version":"4.1.5","basebackup_progress":42}"#,
    );
    let out = render_members(&c, "pgha-bench", false, Format::Pretty);
    assert!(out.contains("| creating replica (42%) |"), "{out}");
    // A Patroni member (no progress key) stays as Patroni shows it.
    let c = with(
        bench_keys(),
        "members/node2",
        r#"{"conn_url":"postgres://127.0.0.1:5452/postgres","api_url":"http://127.0.0.1:8022/patroni","state":"creating replica","role":"replica","version":"4.1.5"}"#,
    );
    let out = render_members(&c, "pgha-bench", false, Format::Pretty);
    assert!(out.contains("| creating replica |"), "{out}");
}

#[test]
fn lag_is_rounded_megabytes_behind_the_status_optime() {
    let mb = 1024 * 1024;
    let keys = vec![
        kv("initialize", "1"),
        kv("leader", "a"),
        kv("status", &format!(r#"{{"optime":{}}}"#, 100 * mb)),
        kv(
            "members/a",
            &format!(
                r#"{{"conn_url":"postgres://h1:5432/postgres","state":"running","xlog_location":{}}}"#,
                100 * mb
            ),
        ),
        // 2.5 MB behind rounds to 2 (ties to even), 3.5 MB to 4; replay ahead of optime is 0.
        kv(
            "members/b",
            &format!(
                r#"{{"conn_url":"postgres://h2:5432/postgres","state":"running","replication_state":"streaming","receive_lsn":{},"replay_lsn":{},"timeline":3}}"#,
                100 * mb - 5 * mb / 2,
                100 * mb - 7 * mb / 2
            ),
        ),
        kv(
            "members/c",
            &format!(
                r#"{{"conn_url":"postgres://h3:5432/postgres","state":"running","receive_lsn":{},"replay_lsn":{}}}"#,
                101 * mb,
                90 * mb + 1
            ),
        ),
    ];
    let c = Cluster::from_keys(&keys);
    let tsv = render_members(&c, "x", false, Format::Tsv);
    let lines: Vec<&str> = tsv.lines().collect();
    assert_eq!(
        lines[2],
        "x\tb\th2\tReplica\tstreaming\t3\t0/6180000\t2\t0/6080000\t4"
    );
    assert_eq!(
        lines[3],
        "x\tc\th3\tReplica\trunning\t\t0/6500000\t0\t0/5A00001\t10"
    );
}

#[test]
fn old_agents_with_only_xlog_location() {
    let keys = vec![
        kv("leader", "a"),
        kv("status", r#"{"optime":100}"#),
        kv(
            "members/a",
            r#"{"conn_url":"postgres://h1/postgres","state":"running"}"#,
        ),
        kv(
            "members/b",
            r#"{"conn_url":"postgres://h2/postgres","state":"running","replication_state":"streaming","xlog_location":100}"#,
        ),
        kv(
            "members/c",
            r#"{"conn_url":"postgres://h3/postgres","state":"running","xlog_location":100}"#,
        ),
    ];
    let tsv = render_members(&Cluster::from_keys(&keys), "x", false, Format::Tsv);
    let lines: Vec<&str> = tsv.lines().collect();
    assert_eq!(
        lines[2],
        "x\tb\th2\tReplica\tstreaming\t\t0/64\t0\tunknown\t"
    );
    assert_eq!(lines[3], "x\tc\th3\tReplica\trunning\t\tunknown\t\t0/64\t0");
}

/// The seed reports: default port, distinct hosts: no port in the Host column.
#[test]
fn seed_style_hosts_without_port_and_pending_restart_column() {
    let keys = vec![
        kv("initialize", "7331748476172603812"),
        kv("leader", "pg-db1"),
        kv("status", r#"{"optime":50331648}"#),
        kv(
            "members/pg-db1",
            r#"{"conn_url":"postgres://192.168.2.11:5432/postgres","api_url":"http://192.168.2.11:8008/patroni","state":"running","role":"primary","xlog_location":50331648,"timeline":10,"pending_restart":true,"pending_restart_reason":{"max_connections":{"old_value":"100","new_value":"200"}}}"#,
        ),
        kv(
            "members/pg-db2",
            r#"{"conn_url":"postgres://192.168.2.12:5432/postgres","api_url":"http://192.168.2.12:8008/patroni","state":"running","role":"replica","xlog_location":50331648,"receive_lsn":50331648,"replay_lsn":50331648,"replication_state":"streaming","timeline":10,"pending_restart":true,"pending_restart_reason":{"max_connections":{"old_value":"100","new_value":"200"},"shared_buffers":{"old_value":"128MB","new_value":"1GB"}}}"#,
        ),
    ];
    let expected = "\
+ Cluster: pg_cluster (7331748476172603812) --+----+-------------+-----+------------+-----+-----------------+----------------------------+
| Member | Host         | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Pending restart | Pending restart reason     |
+--------+--------------+---------+-----------+----+-------------+-----+------------+-----+-----------------+----------------------------+
| pg-db1 | 192.168.2.11 | Leader  | running   | 10 |             |     |            |     | *               | max_connections: 100->200  |
+--------+--------------+---------+-----------+----+-------------+-----+------------+-----+-----------------+----------------------------+
| pg-db2 | 192.168.2.12 | Replica | streaming | 10 |   0/3000000 |   0 |  0/3000000 |   0 | *               | max_connections: 100->200  |
|        |              |         |           |    |             |     |            |     |                 | shared_buffers: 128MB->1GB |
+--------+--------------+---------+-----------+----+-------------+-----+------------+-----+-----------------+----------------------------+
";
    let c = Cluster::from_keys(&keys);
    assert_eq!(
        render_members(&c, "pg_cluster", false, Format::Pretty),
        expected
    );
}

#[test]
fn long_restart_reason_is_hidden_only_in_tables() {
    let long = format!("very l{}ng", "o".repeat(34));
    let keys = vec![
        kv("leader", "a"),
        kv(
            "members/a",
            &format!(
                r#"{{"conn_url":"postgres://h1/postgres","state":"running","pending_restart_reason":{{"param":{{"old_value":"","new_value":"{long}"}}}}}}"#
            ),
        ),
    ];
    let c = Cluster::from_keys(&keys);
    assert!(
        render_members(&c, "x", false, Format::Pretty).contains("| param: [hidden - too long] |")
    );
    assert!(render_members(&c, "x", false, Format::Topology).contains("param: [hidden - too long]"));
    assert!(render_members(&c, "x", false, Format::Tsv).contains(&format!("param: ->{long}")));
}

#[test]
fn tags_scheduled_restart_and_cascading_topology() {
    let keys = vec![
        kv("initialize", "42"),
        kv("leader", "a"),
        kv("status", r#"{"optime":100}"#),
        kv(
            "members/a",
            r#"{"conn_url":"postgres://10.0.0.1:5432/postgres","state":"running","timeline":1}"#,
        ),
        kv(
            "members/b",
            r#"{"conn_url":"postgres://10.0.0.2:5432/postgres","state":"running","replication_state":"streaming","receive_lsn":100,"replay_lsn":100,"timeline":1,"tags":{"replicatefrom":"c","nofailover":true}}"#,
        ),
        kv(
            "members/c",
            r#"{"conn_url":"postgres://10.0.0.3:5432/postgres","state":"running","replication_state":"streaming","receive_lsn":100,"replay_lsn":100,"timeline":1,"scheduled_restart":{"schedule":"2026-11-22T03:00:00+00:00","postgres_version":"15.19"}}"#,
        ),
    ];
    let c = Cluster::from_keys(&keys);
    let topology = "\
+ Cluster: x (42) --+---------+-----------+----+-------------+-----+------------+-----+----------------------------------------------+--------------------------------------+
| Member | Host     | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Scheduled restart                            | Tags                                 |
+--------+----------+---------+-----------+----+-------------+-----+------------+-----+----------------------------------------------+--------------------------------------+
| a      | 10.0.0.1 | Leader  | running   |  1 |             |     |            |     |                                              |                                      |
| + c    | 10.0.0.3 | Replica | streaming |  1 |        0/64 |   0 |       0/64 |   0 | 2026-11-22T03:00:00+00:00 if version < 15.19 |                                      |
|   + b  | 10.0.0.2 | Replica | streaming |  1 |        0/64 |   0 |       0/64 |   0 |                                              | {nofailover: true, replicatefrom: c} |
+--------+----------+---------+-----------+----+-------------+-----+------------+-----+----------------------------------------------+--------------------------------------+
";
    assert_eq!(render_members(&c, "x", false, Format::Topology), topology);

    // In `list`, tags are YAML block text, one line per tag, with rules between all rows.
    let list = "\
+ Cluster: x (42) --+---------+-----------+----+-------------+-----+------------+-----+----------------------------------------------+------------------+
| Member | Host     | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Scheduled restart                            | Tags             |
+--------+----------+---------+-----------+----+-------------+-----+------------+-----+----------------------------------------------+------------------+
| a      | 10.0.0.1 | Leader  | running   |  1 |             |     |            |     |                                              |                  |
+--------+----------+---------+-----------+----+-------------+-----+------------+-----+----------------------------------------------+------------------+
| b      | 10.0.0.2 | Replica | streaming |  1 |        0/64 |   0 |       0/64 |   0 |                                              | nofailover: true |
|        |          |         |           |    |             |     |            |     |                                              | replicatefrom: c |
+--------+----------+---------+-----------+----+-------------+-----+------------+-----+----------------------------------------------+------------------+
| c      | 10.0.0.3 | Replica | streaming |  1 |        0/64 |   0 |       0/64 |   0 | 2026-11-22T03:00:00+00:00 if version < 15.19 |                  |
+--------+----------+---------+-----------+----+-------------+-----+------------+-----+----------------------------------------------+------------------+
";
    assert_eq!(render_members(&c, "x", false, Format::Pretty), list);
    let tsv = render_members(&c, "x", false, Format::Tsv);
    assert!(
        tsv.contains("\t0/64\t0\t\t{nofailover: true, replicatefrom: c}\n"),
        "{tsv}"
    );
    let yaml = render_members(&c, "x", false, Format::Yaml);
    assert!(
        yaml.contains("  Tags:\n    nofailover: true\n    replicatefrom: c\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("  Scheduled restart: 2026-11-22T03:00:00+00:00 if version < 15.19\n"),
        "{yaml}"
    );
}

#[test]
fn roles_in_sync_quorum_and_standby_clusters() {
    let mut keys = bench_keys();
    keys.push(kv(
        "sync",
        r#"{"leader":"node3","sync_standby":"node1","quorum":0}"#,
    ));
    let sync = with(keys.clone(), "config", r#"{"synchronous_mode":true}"#);
    let tsv = render_members(&sync, "c", false, Format::Tsv);
    assert!(tsv.contains("\tnode1\t127.0.0.1:5451\tSync Standby\t"));
    assert!(tsv.contains("\tnode2\t127.0.0.1:5452\tReplica\t"));
    let quorum = with(keys.clone(), "config", r#"{"synchronous_mode":"quorum"}"#);
    assert!(render_members(&quorum, "c", false, Format::Tsv).contains("\tQuorum Standby\t"));
    let standby = with(
        keys,
        "config",
        r#"{"standby_cluster":{"host":"10.0.0.9","port":5432},"synchronous_mode":true}"#,
    );
    let tsv = render_members(&standby, "c", false, Format::Tsv);
    assert!(tsv.contains("\tnode3\t127.0.0.1:5453\tStandby Leader\trunning\t"));
    assert!(!tsv.contains("Sync Standby"));
}

#[test]
fn titles_for_uninitialized_and_over_long_names() {
    let empty = Cluster::default();
    assert_eq!(
        render_members(&empty, "demo", false, Format::Pretty),
        "\
+ Cluster: demo (uninitialized) ----+-------------+-----+------------+-----+
| Member | Host | Role | State | TL | Receive LSN | Lag | Replay LSN | Lag |
+--------+------+------+-------+----+-------------+-----+------------+-----+
+--------+------+------+-------+----+-------------+-----+------------+-----+
"
    );
    assert_eq!(render_members(&empty, "demo", false, Format::Json), "[]\n");
    assert_eq!(
        render_members(&empty, "demo", false, Format::Yaml),
        "[]\n\n"
    );

    // A title longer than the whole table is cut so the closing `+` stays.
    let scope = "a".repeat(100);
    let out = render_members(&empty, &scope, false, Format::Pretty);
    let first = out.lines().next().unwrap();
    let second = out.lines().nth(1).unwrap();
    assert_eq!(first.len(), second.len());
    assert!(
        first.starts_with("+ Cluster: aaaa") && first.ends_with("a+"),
        "{first}"
    );
}

#[test]
fn host_gets_port_when_two_members_share_a_host() {
    let keys = vec![
        kv("leader", "a"),
        kv(
            "members/a",
            r#"{"conn_url":"postgres://db:5432/postgres","state":"running"}"#,
        ),
        kv(
            "members/b",
            r#"{"conn_url":"postgres://db/postgres","state":"running"}"#,
        ),
    ];
    let tsv = render_members(&Cluster::from_keys(&keys), "x", false, Format::Tsv);
    assert!(
        tsv.contains("\ta\tdb:5432\t") && tsv.contains("\tb\tdb:5432\t"),
        "{tsv}"
    );
}

#[test]
fn python_rounding() {
    let mb = 1024 * 1024;
    assert_eq!(round_mb(0), 0);
    assert_eq!(round_mb(mb / 2), 0);
    assert_eq!(round_mb(mb / 2 + 1), 1);
    assert_eq!(round_mb(3 * mb / 2), 2);
    assert_eq!(round_mb(5 * mb / 2), 2);
    assert_eq!(round_mb(1000 * mb), 1000);
}

#[test]
fn without_status_lag_is_measured_from_leader_then_furthest_member() {
    let mb = 1024 * 1024;
    let member = |lsn: u64| {
        format!(
            r#"{{"conn_url":"postgres://h:1/postgres","state":"running","xlog_location":{lsn},"receive_lsn":{lsn},"replay_lsn":{lsn}}}"#
        )
    };
    let mut keys = vec![
        kv("leader", "a"),
        kv("members/a", &member(10 * mb)),
        kv("members/b", &member(8 * mb)),
        kv("members/c", &member(12 * mb)),
    ];
    assert_eq!(cluster_lsn(&Cluster::from_keys(&keys)), 10 * mb);
    keys.remove(0);
    assert_eq!(cluster_lsn(&Cluster::from_keys(&keys)), 12 * mb);
    let tsv = render_members(&Cluster::from_keys(&keys), "x", false, Format::Tsv);
    assert!(
        tsv.contains("\tb\th:1\tReplica\trunning\t\t0/800000\t4\t0/800000\t4\n"),
        "{tsv}"
    );
}
