//! `nostream` with archive recovery: a replica tagged `nostream` replays only what the leader's
//! `archive_command` archived (its `restore_command` comes from `recovery_conf`); it has no
//! WAL receiver, and the leader keeps no slot and no walsender for it.

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::{yaml_set, Cluster, ClusterOptions};
use serde_yaml_ng::Value;

use crate::common::skip;

#[test]
fn nostream_replica_replays_from_the_archive_only() -> Result<()> {
    if skip("nostream_replica_replays_from_the_archive_only") {
        return Ok(());
    }
    let opts = ClusterOptions::default().nodes(2).customize(|spec, doc| {
        // node1's directory belongs to postgres: the one archive every member can reach.
        let archive = spec
            .dir
            .parent()
            .expect("node dir")
            .join("node1/wal_archive");
        let a = archive.display();
        let params = ["bootstrap", "dcs", "postgresql", "parameters"];
        let set = |doc: &mut Value, key: &str, v: String| {
            let mut path = params.to_vec();
            path.push(key);
            yaml_set(doc, &path, Value::String(v));
        };
        set(doc, "archive_mode", "on".into());
        set(
            doc,
            "archive_command",
            format!("mkdir -p {a} && test ! -f {a}/%f && cp %p {a}/%f"),
        );
        yaml_set(
            doc,
            &[
                "bootstrap",
                "dcs",
                "postgresql",
                "recovery_conf",
                "restore_command",
            ],
            Value::String(format!("cp {a}/%f %p")),
        );
        if spec.name == "node2" {
            yaml_set(doc, &["tags", "nostream"], Value::Bool(true));
        }
    });
    let c = Cluster::prepare(opts)?;
    c.start_etcd()?;
    c.start_node("node1")?;
    let leader = c.wait_for_leader(Duration::from_secs(90))?;
    ensure!(leader == "node1");
    c.start_node("node2")?;
    let lpg = c.pg("node1");
    let rpg = c.pg("node2");
    c.wait(
        "node2 running as a replica",
        Duration::from_secs(120),
        || {
            ensure!(rpg.in_recovery()?, "node2 is not in recovery");
            Ok(())
        },
    )?;
    lpg.sql("CREATE TABLE via_archive(id int); INSERT INTO via_archive VALUES (42); SELECT pg_switch_wal()")?;
    c.wait("the archived row on node2", Duration::from_secs(90), || {
        // Keep switching: restore_command only sees whole segments.
        let _ = lpg.sql("SELECT pg_switch_wal()");
        let n = rpg.sql_one("SELECT count(*) FROM via_archive WHERE id = 42")?;
        ensure!(n.as_deref() == Some("1"), "not replayed yet: {n:?}");
        Ok(())
    })?;
    let receivers = rpg.sql("SELECT status FROM pg_stat_wal_receiver")?;
    ensure!(
        receivers.is_empty(),
        "node2 has a WAL receiver: {receivers:?}"
    );
    let senders = lpg.sql("SELECT application_name FROM pg_stat_replication")?;
    ensure!(
        !senders.iter().flatten().flatten().any(|n| n == "node2"),
        "node1 streams to node2: {senders:?}"
    );
    let slots = lpg.sql("SELECT slot_name FROM pg_replication_slots")?;
    ensure!(
        !slots.iter().flatten().flatten().any(|n| n == "node2"),
        "node1 keeps a slot for node2: {slots:?}"
    );
    let conf = std::fs::read_to_string(c.data_dir("node2").join("postgresql.conf"))?;
    ensure!(
        conf.contains("restore_command") && !conf.contains("primary_conninfo"),
        "node2's postgresql.conf:\n{conf}"
    );
    let _ = c.leader_name()?.ok_or_else(|| anyhow!("no leader"))?;
    c.pass();
    Ok(())
}
