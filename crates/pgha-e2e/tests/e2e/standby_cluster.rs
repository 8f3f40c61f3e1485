//! A standby cluster: node1 and node2 form the primary cluster; node3 and node4 run under a
//! second scope whose dynamic configuration has `standby_cluster` pointing at node1. node3
//! clones node1 and becomes the **Standby Leader** (in recovery, streaming from node1, role
//! `standby_leader`, `/standby-leader` 200, `Standby Leader` in `pghactl list`); node4 streams
//! from node3. kill -9 of node3: node4 takes the standby cluster's leader key and stays a
//! standby leader, streaming from node1. `pghactl promote-cluster` (which removes
//! `standby_cluster`) makes it a primary.

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use pgha_e2e::{proc::run_with_timeout, report, yaml_set, Cluster, ClusterOptions, Signal};

use crate::common::{parse_list, skip};
use crate::ops_common::rest_call;

/// (status, sender port) of a node's WAL receiver.
fn receiver(c: &Cluster, node: &str) -> Result<(String, u16)> {
    let rows = c
        .pg(node)
        .sql("SELECT status, sender_port FROM pg_stat_wal_receiver")?;
    let row = rows.into_iter().next().unwrap_or_default();
    let status = row.first().cloned().flatten().unwrap_or_default();
    let port = row
        .get(1)
        .cloned()
        .flatten()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    Ok((status, port))
}

fn wait_streaming_from(c: &Cluster, node: &str, from: &str) -> Result<()> {
    let port = c.pg(from).port;
    c.wait(
        &format!("{node} streaming from {from}"),
        Duration::from_secs(120),
        || {
            let (status, p) = receiver(c, node)?;
            ensure!(
                status == "streaming" && p == port,
                "{node}: receiver {status} from port {p}"
            );
            Ok(())
        },
    )
}

#[test]
fn standby_cluster_follows_fails_over_and_is_promoted() -> Result<()> {
    if skip("standby_cluster_follows_fails_over_and_is_promoted") {
        return Ok(());
    }
    let c = Cluster::prepare(ClusterOptions::default().nodes(4))?;
    let standby_scope = format!("{}-standby", c.scope);
    let remote_port = c.pg("node1").port;
    for n in ["node3", "node4"] {
        let path = c.config_path(n);
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {path:?}"))?;
        let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
        yaml_set(&mut doc, &["scope"], standby_scope.clone().into());
        yaml_set(
            &mut doc,
            &["bootstrap", "dcs", "standby_cluster", "host"],
            "127.0.0.1".into(),
        );
        yaml_set(
            &mut doc,
            &["bootstrap", "dcs", "standby_cluster", "port"],
            u64::from(remote_port).into(),
        );
        c.write_config(n, &serde_yaml_ng::to_string(&doc)?)?;
    }
    let standby_key = |k: &str| -> Result<Option<String>> {
        Ok(c.etcd_client()
            .get_raw(&format!("/service/{standby_scope}/{k}"))?
            .map(|kv| kv.value))
    };

    c.start_etcd()?;
    c.start_node("node1")?;
    let l = c.wait_for_leader(Duration::from_secs(90))?;
    ensure!(l == "node1", "{l} leads the primary cluster");
    c.start_node("node2")?;
    wait_streaming_from(&c, "node2", "node1")?;
    c.pg("node1")
        .sql("CREATE TABLE sc(id int); INSERT INTO sc VALUES (1)")?;

    // The standby cluster: node3 clones node1 and leads it as a standby leader.
    c.start_node("node3")?;
    c.wait(
        "node3 holding the standby cluster's leader key",
        Duration::from_secs(120),
        || {
            let l = standby_key("leader")?;
            ensure!(l.as_deref() == Some("node3"), "standby leader key {l:?}");
            Ok(())
        },
    )?;
    wait_streaming_from(&c, "node3", "node1")?;
    ensure!(c.pg("node3").in_recovery()?, "node3 is writable");
    c.start_node("node4")?;
    wait_streaming_from(&c, "node4", "node3")?;
    c.pg("node1").sql("INSERT INTO sc VALUES (2)")?;
    c.wait("row 2 on node4", Duration::from_secs(30), || {
        let n = c.pg("node4").sql_one("SELECT count(*) FROM sc")?;
        ensure!(n.as_deref() == Some("2"), "count {n:?}");
        Ok(())
    })?;
    let init_a = c.etcd_get("initialize")?;
    let init_b = standby_key("initialize")?;
    ensure!(
        init_a.is_some() && init_a == init_b,
        "system ids: {init_a:?} vs {init_b:?}"
    );

    // What operators see.
    c.wait(
        "node3 is the Standby Leader",
        Duration::from_secs(20),
        || {
            let m: serde_json::Value =
                serde_json::from_str(&standby_key("members/node3")?.unwrap_or_default())?;
            ensure!(m["role"] == "standby_leader", "members/node3: {m}");
            let mut cmd = Command::new(c.base.join("bin").join("pghactl"));
            cmd.arg("-c").arg(c.config_path("node3")).arg("list");
            let out = run_with_timeout(&mut cmd, None, Duration::from_secs(30))?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (_, rows) = parse_list(&text)?;
            let role = |n: &str| rows.iter().find(|r| r.member == n).map(|r| r.role.clone());
            ensure!(role("node3").as_deref() == Some("Standby Leader"), "{text}");
            ensure!(role("node4").as_deref() == Some("Replica"), "{text}");
            for (node, path, want) in [
                ("node3", "/standby-leader", 200),
                ("node3", "/primary", 503),
                ("node3", "/leader", 200),
                ("node1", "/standby-leader", 503),
                ("node1", "/primary", 200),
            ] {
                let (code, _) = rest_call(&c, node, "GET", path, None)?;
                ensure!(code == want, "GET {path} on {node}: {code}, want {want}");
            }
            Ok(())
        },
    )?;
    report(
        "standby_cluster: node3 is the standby leader streaming from node1, node4 cascades from it",
    );

    // Failover inside the standby cluster keeps it one.
    c.kill_agent("node3", Signal::SIGKILL)?;
    c.kill_postmaster("node3", Signal::SIGKILL)?;
    c.wait(
        "node4 taking over the standby cluster",
        Duration::from_secs(90),
        || {
            let l = standby_key("leader")?;
            ensure!(l.as_deref() == Some("node4"), "standby leader key {l:?}");
            Ok(())
        },
    )?;
    wait_streaming_from(&c, "node4", "node1")?;
    ensure!(c.pg("node4").in_recovery()?, "node4 was promoted");
    c.pg("node1").sql("INSERT INTO sc VALUES (3)")?;
    c.wait("row 3 on node4", Duration::from_secs(30), || {
        let n = c.pg("node4").sql_one("SELECT count(*) FROM sc")?;
        ensure!(n.as_deref() == Some("3"), "count {n:?}");
        Ok(())
    })?;
    report("standby_cluster: kill -9 of node3, node4 is the standby leader, still a standby");

    // Promote the standby cluster as the runbook does: `pghactl promote-cluster` (it removes
    // standby_cluster from the configuration through the leader's PATCH /config).
    let mut cmd = Command::new(c.base.join("bin").join("pghactl"));
    cmd.arg("-c")
        .arg(c.config_path("node4"))
        .args(["promote-cluster", "--force"]);
    let out = run_with_timeout(&mut cmd, None, Duration::from_secs(90))?;
    ensure!(
        out.status.success(),
        "pghactl promote-cluster: {}",
        crate::ops_common::both(&out)
    );
    let config: serde_json::Value =
        serde_json::from_str(&standby_key("config")?.unwrap_or_default())?;
    ensure!(
        config.get("standby_cluster").is_none_or(|v| v.is_null()),
        "config after promote-cluster: {config}"
    );
    c.wait("node4 promoted", Duration::from_secs(60), || {
        ensure!(!c.pg("node4").in_recovery()?, "node4 still in recovery");
        c.pg("node4").sql("INSERT INTO sc VALUES (4)")?;
        Ok(())
    })?;
    report("standby_cluster: without standby_cluster node4 is a primary of its own");
    c.pass();
    Ok(())
}
