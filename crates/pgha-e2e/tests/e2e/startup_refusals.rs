//! Starts that must not go ahead: a second agent under a name a live member holds, and a
//! bootstrap that can never succeed (it must stop, not wipe and retry for ever).

use std::time::Duration;

use anyhow::{ensure, Result};
use pgha_e2e::{yaml_set, Cluster, ClusterOptions};
use serde_yaml_ng::Value;

use crate::common::skip;

#[test]
fn duplicate_member_name_refuses_to_start() -> Result<()> {
    if skip("duplicate_member_name_refuses_to_start") {
        return Ok(());
    }
    let mut c = Cluster::start_healthy(ClusterOptions::default().nodes(1))?;
    let before = c.etcd_get("members/node1")?;
    let second = c.prepare_node()?;
    // The second agent's own file, with the first one's name.
    let text = std::fs::read_to_string(c.config_path(&second))?;
    let mut doc: Value = serde_yaml_ng::from_str(&text)?;
    yaml_set(&mut doc, &["name"], Value::String("node1".into()));
    c.write_config(&second, &serde_yaml_ng::to_string(&doc)?)?;
    c.start_node(&second)?;
    let status = c.wait_agent_exit(&second, Duration::from_secs(30))?;
    ensure!(
        !status.success(),
        "the duplicate agent exited with {status}"
    );
    let log = c.log_since(&second, 0);
    ensure!(
        log.contains("CRITICAL: Can't start; there is already a node named 'node1' running"),
        "no CRITICAL line:\n{}",
        pgha_e2e::tail(&log, 20)
    );
    let data = c.data_dir(&second);
    ensure!(
        !data.exists() || std::fs::read_dir(&data)?.next().is_none(),
        "the duplicate agent touched its data directory"
    );
    ensure!(
        c.etcd_get("members/node1")?.map(|v| v.contains("running")) == Some(true)
            && before.is_some(),
        "the first node1's member key changed: {:?}",
        c.etcd_get("members/node1")?
    );
    ensure!(c.leader_name()?.as_deref() == Some("node1"));
    c.pass();
    Ok(())
}

#[test]
fn bootstrap_that_cannot_succeed_gives_up() -> Result<()> {
    if skip("bootstrap_that_cannot_succeed_gives_up") {
        return Ok(());
    }
    // postgres accepts the setting (it is a valid list) but cannot start with it.
    let opts = ClusterOptions::default().nodes(1).customize(|_, doc| {
        yaml_set(
            doc,
            &["postgresql", "parameters", "shared_preload_libraries"],
            Value::String("pgha_no_such_library".into()),
        );
    });
    let c = Cluster::start(opts)?;
    let status = c.wait_agent_exit("node1", Duration::from_secs(120))?;
    ensure!(!status.success(), "the agent exited with {status}");
    let log = c.log_since("node1", 0);
    let critical = log
        .lines()
        .find(|l| l.contains("CRITICAL"))
        .unwrap_or_default()
        .to_string();
    ensure!(
        critical.contains("bootstrap failed 3 times")
            && critical.contains("FATAL:")
            && critical.contains("pgha_no_such_library"),
        "CRITICAL line: {critical:?}\n{}",
        pgha_e2e::tail(&log, 30)
    );
    ensure!(
        log.matches("initdb").count() <= 10,
        "initdb ran more often than three attempts explain"
    );
    ensure!(
        c.data_dir("node1").join("PG_VERSION").exists(),
        "the last attempt's data directory was removed"
    );
    ensure!(
        c.etcd_get("initialize")?.is_none(),
        "the initialize key was left behind: {:?}",
        c.etcd_get("initialize")?
    );
    c.pass();
    Ok(())
}
