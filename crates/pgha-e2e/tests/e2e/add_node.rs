//! (f) A fourth node started later clones from the leader (basebackup), streams, and runs with
//! the cluster-wide GUCs of the dynamic configuration (max_connections 120 here). Its clone is
//! slowed down (`max-rate`) so its progress can be watched in `list`, the member key and
//! `/patroni`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions};

use crate::common::{secs, skip, wait_rows};

#[test]
fn fourth_node_clones_and_streams() -> Result<()> {
    if skip("fourth_node_clones_and_streams") {
        return Ok(());
    }
    let opts = ClusterOptions::default()
        .max_connections(120)
        .customize(|spec, yaml| {
            if spec.name == "node4" {
                yaml["postgresql"]["basebackup"] =
                    serde_yaml_ng::from_str("[{max-rate: 4M}]").expect("valid YAML");
            }
        });
    let mut c = Cluster::start_healthy(opts)?;
    let leader = c.leader_name()?.ok_or_else(|| anyhow!("no leader"))?;
    let lpg = c.pg(&leader);
    lpg.sql("CREATE TABLE an(id int PRIMARY KEY); INSERT INTO an SELECT generate_series(1, 500)")?;
    ensure!(
        lpg.sql_one("SHOW max_connections")?.as_deref() == Some("120"),
        "the leader itself does not run with max_connections 120"
    );

    let t0 = Instant::now();
    let new = c.add_node()?;
    // While pg_basebackup runs: `creating replica (N%)` in list, the percentage in the member
    // key and in /patroni.
    let seen = c.wait(
        &format!("{new} to report its base backup progress"),
        Duration::from_secs(60),
        || {
            let m = c.etcd_json(&format!("members/{new}"))?;
            ensure!(m["state"] == "creating replica", "{m}");
            let pct = m["basebackup_progress"]
                .as_u64()
                .ok_or_else(|| anyhow!("no basebackup_progress yet: {m}"))?;
            ensure!(pct > 0, "{m}");
            let (_, body) = c.rest(&new).get("/patroni")?;
            ensure!(body.contains("\"basebackup_progress\""), "{body}");
            let out = c.ctl(&["list"])?;
            let list = String::from_utf8_lossy(&out.stdout);
            ensure!(list.contains("creating replica ("), "{list}");
            Ok(pct)
        },
    )?;
    report(&format!(
        "add node: {new} reported {seen}% of its base backup"
    ));
    let names = c.wait_streaming(3, Duration::from_secs(120))?;
    ensure!(
        names.contains(&new),
        "{new} not streaming from {leader}: {names:?}"
    );
    report(&format!(
        "add node: {new} streaming {:.1}s after its agent started",
        secs(t0.elapsed())
    ));

    let pg = c.pg(&new);
    ensure!(pg.in_recovery()?, "{new} is not a replica");
    let mc = pg.sql_one("SHOW max_connections")?;
    let mws = pg.sql_one("SHOW max_wal_senders")?;
    ensure!(
        mc.as_deref() == Some("120"),
        "{new}: max_connections {mc:?}, want 120 (from the dynamic config)"
    );
    ensure!(
        mws.as_deref() == Some("10"),
        "{new}: max_wal_senders {mws:?}, want 10"
    );
    let want: BTreeSet<i64> = (1..=500).collect();
    wait_rows(&c, &new, "an", &want, Duration::from_secs(20))?;

    c.wait(
        &format!("members/{new} as a streaming replica"),
        Duration::from_secs(20),
        || {
            let m = c.etcd_json(&format!("members/{new}"))?;
            ensure!(
                m["role"] == "replica" && m["replication_state"] == "streaming",
                "{m}"
            );
            Ok(())
        },
    )?;
    let log = c.log_since(&new, 0).to_lowercase();
    ensure!(
        log.contains("basebackup"),
        "the log of {new} never mentions basebackup"
    );
    ensure!(
        log.contains("base backup progress: 100%"),
        "the log of {new} does not show the base backup reaching 100%"
    );
    c.pass();
    Ok(())
}
