//! Patroni's sample configurations (postgres0.yml ... postgres2.yml in Patroni's repository)
//! bring up a cluster unchanged: relative `data_dir` and `unix_socket_directories: '..'`, the
//! samples' bootstrap parameters (`wal_keep_segments`, `wal_level: hot_standby`, archiving
//! into `../wal_archive`), no DCS section in the file (`PATRONI_ETCD3_HOST` instead) and REST
//! credentials only from `PATRONI_RESTAPI_USERNAME`/`PASSWORD`.

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::{report, yaml_set, Cluster, ClusterOptions};
use serde_yaml_ng::Value;

use crate::common::skip;

const API_USER: &str = "sample-api-user";
const API_PASSWORD: &str = "sample-api-secret";

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("test YAML parses")
}

/// The samples' shape, written in our words: every key the samples set, their timings and
/// bootstrap parameters; only addresses and passwords are the harness's.
fn sample_options() -> ClusterOptions {
    ClusterOptions::default()
        .customize(|spec, doc| {
            let port_of = |section: &str| {
                doc[section]["listen"]
                    .as_str()
                    .and_then(|l| l.rsplit(':').next())
                    .map(str::to_string)
                    .expect("the harness renders listen addresses")
            };
            let (pg_port, api_port) = (port_of("postgresql"), port_of("restapi"));
            yaml_set(doc, &["etcd3"], Value::Null);
            yaml_set(doc, &["namespace"], Value::Null);
            yaml_set(
                doc,
                &["restapi"],
                yaml(&format!(
                    "listen: 127.0.0.1:{api_port}\nconnect_address: 127.0.0.1:{api_port}"
                )),
            );
            yaml_set(
                doc,
                &["bootstrap", "dcs"],
                yaml(
                    r#"
ttl: 30
loop_wait: 10
retry_timeout: 10
maximum_lag_on_failover: 1048576
postgresql:
  use_pg_rewind: true
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 md5
    - host all all 0.0.0.0/0 md5
  parameters:
    wal_level: hot_standby
    hot_standby: "on"
    max_connections: 100
    max_worker_processes: 8
    wal_keep_segments: 8
    max_wal_senders: 10
    max_replication_slots: 10
    max_prepared_transactions: 0
    max_locks_per_transaction: 64
    wal_log_hints: "on"
    track_commit_timestamp: "off"
    archive_mode: "on"
    archive_timeout: 1800s
    archive_command: mkdir -p ../wal_archive && test ! -f ../wal_archive/%f && cp %p ../wal_archive/%f
  recovery_conf:
    restore_command: cp ../wal_archive/%f %p
"#,
                ),
            );
            yaml_set(
                doc,
                &["bootstrap", "initdb"],
                yaml("- encoding: UTF8\n- data-checksums"),
            );
            yaml_set(
                doc,
                &["postgresql", "listen"],
                Value::String(format!("127.0.0.1:{pg_port}")),
            );
            // Relative to the agent's working directory, as in the samples.
            yaml_set(doc, &["postgresql", "data_dir"], Value::String("data".into()));
            yaml_set(doc, &["postgresql", "bin_dir"], Value::Null);
            yaml_set(doc, &["postgresql", "pg_hba"], Value::Null);
            yaml_set(
                doc,
                &["postgresql", "parameters"],
                yaml("unix_socket_directories: '..'"),
            );
            yaml_set(
                doc,
                &["tags"],
                yaml("noloadbalance: false\nclonefrom: false\nnosync: false\nnostream: false"),
            );
            let _ = spec;
        })
        .env("PATRONI_RESTAPI_USERNAME", API_USER)
        .env("PATRONI_RESTAPI_PASSWORD", API_PASSWORD)
        .env("PATH", "/usr/lib/postgresql/15/bin:/usr/bin:/bin")
}

#[test]
fn patroni_sample_configs_bring_up_a_cluster() -> Result<()> {
    if skip("patroni_sample_configs_bring_up_a_cluster") {
        return Ok(());
    }
    let c = Cluster::prepare(sample_options())?;
    c.start_etcd()?;
    for n in c.node_names() {
        c.set_node_env(
            &n,
            "PATRONI_ETCD3_HOST",
            &format!("localhost:{}", c.etcd_port()),
        );
        c.start_node(&n)?;
    }
    let leader = c.wait_for_leader(Duration::from_secs(90))?;
    let streaming = c.wait_streaming(2, Duration::from_secs(120))?;
    report(&format!(
        "sample configs: leader {leader}, streaming {streaming:?}"
    ));

    let pg = c.pg(&leader);
    // wal_keep_segments: 8 became wal_keep_size = 8 x 16 MB; hot_standby became replica.
    ensure!(
        pg.sql_one("SHOW wal_keep_size")?.as_deref() == Some("128MB"),
        "wal_keep_size on the leader: {:?}",
        pg.sql_one("SHOW wal_keep_size")?
    );
    ensure!(pg.sql_one("SHOW wal_level")?.as_deref() == Some("replica"));
    let conf = std::fs::read_to_string(c.data_dir(&leader).join("postgresql.conf"))?;
    ensure!(
        !conf.contains("wal_keep_segments"),
        "postgresql.conf still names wal_keep_segments:\n{conf}"
    );
    for n in c.node_names() {
        let log = c.log_since(&n, 0);
        ensure!(
            !log.contains("removing initialize key"),
            "{n} failed a bootstrap:\n{}",
            pgha_e2e::tail(&log, 30)
        );
    }

    // Every member keeps the last dynamic configuration in patroni.dynamic.json.
    let config = c.etcd_json("config")?;
    for n in c.node_names() {
        let path = c.data_dir(&n).join("patroni.dynamic.json");
        c.wait(
            &format!("{n}'s patroni.dynamic.json"),
            Duration::from_secs(30),
            || {
                let saved: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&path)?)?;
                ensure!(saved == config, "{n}: {saved} != {config}");
                Ok(())
            },
        )?;
    }

    // The archive_command's relative ../wal_archive is next to the data directory.
    pg.sql("SELECT pg_switch_wal(); CHECKPOINT")?;
    pg.sql("CREATE TABLE sample_t AS SELECT 1 AS x; SELECT pg_switch_wal()")?;
    let archive = c.data_dir(&leader).join("../wal_archive");
    c.wait(
        "a WAL segment in ../wal_archive",
        Duration::from_secs(30),
        || {
            let n = std::fs::read_dir(&archive).map(|d| d.count()).unwrap_or(0);
            ensure!(n > 0, "{} is empty", archive.display());
            Ok(())
        },
    )?;

    // REST credentials come from the environment only: unsafe methods need them.
    let rest = c.rest(&leader);
    let (denied, _) = rest.post("/restart", "{}", None)?;
    ensure!(
        denied == 401,
        "POST /restart without credentials answered {denied}"
    );
    let (reload, text) = rest.post("/reload", "", Some((API_USER, API_PASSWORD)))?;
    ensure!(
        reload == 202,
        "POST /reload with the env credentials answered {reload}: {text}"
    );

    // pghactl with the same file and environment lists the three members.
    let out = std::process::Command::new(c.base.join("bin/pghactl"))
        .arg("-c")
        .arg(c.config_path(&leader))
        .arg("list")
        .env("PATRONI_ETCD3_HOST", format!("localhost:{}", c.etcd_port()))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && c.node_names().iter().all(|n| text.contains(n.as_str())),
        "pghactl list: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = c.leader_name()?.ok_or_else(|| anyhow!("no leader"))?;
    c.pass();
    Ok(())
}

/// `use_unix_socket: true`: the agent's own connections (probe, roles, checks) go through the
/// first absolute `unix_socket_directories` entry, not TCP.
#[test]
fn use_unix_socket_connects_through_the_socket() -> Result<()> {
    if skip("use_unix_socket_connects_through_the_socket") {
        return Ok(());
    }
    let opts = ClusterOptions::default().nodes(1).customize(|_, doc| {
        yaml_set(doc, &["postgresql", "use_unix_socket"], Value::Bool(true));
    });
    let c = Cluster::start_healthy(opts)?;
    let pg = c.pg("node1");
    c.wait("the agent's connection on the unix socket", Duration::from_secs(20), || {
        let n = pg.sql_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgha' AND client_addr IS NULL AND backend_type = 'client backend'",
        )?;
        let tcp = pg.sql_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgha' AND client_addr IS NOT NULL",
        )?;
        ensure!(
            n.as_deref() != Some("0") && tcp.as_deref() == Some("0"),
            "agent connections: {n:?} on the socket, {tcp:?} over TCP"
        );
        Ok(())
    })?;
    c.pass();
    Ok(())
}
