//! The ordering rules of the shared-memory settings (max_connections, ...), exercised in the
//! wrong order an operator might use:
//! * increase, leader restarted first: the replicas' replay pauses ("insufficient parameter
//!   settings"); their agents restart them with the new value and replay resumes;
//! * decrease, replicas restarted first: they keep the primary's higher value (PostgreSQL would
//!   refuse a standby below it) and show no pending restart until the primary has restarted
//!   with the lower value; then they show it, and a restart applies it.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions};
use serde_json::json;

use crate::common::{skip, try_write, wait_rows, wal_receiver};
use crate::ops_common::{both, ctl_io, leader, others, rest_call, wait_healthy_under};

const MINUTE: Duration = Duration::from_secs(60);

fn set_max_connections(c: &Cluster, node: &str, value: i64) -> Result<()> {
    let body = json!({"postgresql": {"parameters": {"max_connections": value}}});
    let (code, text) = rest_call(c, node, "PATCH", "/config", Some(&body))?;
    ensure!(code == 200, "PATCH /config: {code} {text}");
    Ok(())
}

fn restart(c: &Cluster, node: &str) -> Result<()> {
    let out = ctl_io(
        c,
        &["restart", &c.scope, node, "--force"],
        None,
        Duration::from_secs(120),
    )?;
    ensure!(
        out.status.success() && both(&out).contains(&format!("Success: restart on member {node}")),
        "restart of {node}: {}",
        both(&out)
    );
    Ok(())
}

fn wait_setting(c: &Cluster, node: &str, want: &str) -> Result<()> {
    let pg = c.pg(node);
    c.wait(
        &format!("{node} to run with max_connections {want}"),
        MINUTE,
        || {
            let v = pg.sql_one("SHOW max_connections")?;
            ensure!(v.as_deref() == Some(want), "{node}: max_connections {v:?}");
            Ok(())
        },
    )
}

fn pending(c: &Cluster, node: &str) -> Result<bool> {
    let m = c.etcd_json(&format!("members/{node}"))?;
    Ok(m["pending_restart"].as_bool().unwrap_or(false))
}

fn wait_pending(c: &Cluster, node: &str, want: bool) -> Result<()> {
    c.wait(&format!("pending_restart={want} on {node}"), MINUTE, || {
        let p = pending(c, node)?;
        ensure!(p == want, "{node}: pending_restart {p}");
        Ok(())
    })
}

/// A row written on the leader shows up on every replica: replay runs.
fn replay_runs(c: &Cluster, leader: &str, replicas: &[String], id: i64) -> Result<()> {
    try_write(&c.pg(leader), "order_probe", id)?;
    let want: BTreeSet<i64> = [id].into();
    for r in replicas {
        wait_rows(c, r, "order_probe", &want, MINUTE)?;
        let (status, _) = wal_receiver(&c.pg(r))?;
        ensure!(status == "streaming", "{r}: WAL receiver {status}");
    }
    Ok(())
}

#[test]
fn shared_memory_settings_in_the_wrong_order() -> Result<()> {
    if skip("shared_memory_settings_in_the_wrong_order") {
        return Ok(());
    }
    let c = Cluster::start_healthy(ClusterOptions::default())?;
    let l = leader(&c)?;
    wait_healthy_under(&c, &l, MINUTE)?;
    let replicas = others(&c, &l);
    c.pg(&l)
        .sql("CREATE TABLE order_probe(id bigint PRIMARY KEY)")?;
    replay_runs(&c, &l, &replicas, 1)?;

    // Increase, then restart only the leader: the replicas cannot replay its new values.
    let marks: Vec<u64> = replicas.iter().map(|r| c.log_len(r)).collect();
    set_max_connections(&c, &l, 150)?;
    for n in c.node_names() {
        wait_pending(&c, &n, true)?;
    }
    restart(&c, &l)?;
    wait_setting(&c, &l, "150")?;
    for (r, mark) in replicas.iter().zip(&marks) {
        wait_setting(&c, r, "150")?;
        let log = c.log_since(r, *mark);
        ensure!(
            log.contains(
                "restarting postgres: the primary now runs max_connections = 150 (here 100)"
            ),
            "{r} did not say why it restarted:\n{log}"
        );
    }
    replay_runs(&c, &l, &replicas, 2)?;
    for n in c.node_names() {
        wait_pending(&c, &n, false)?;
    }
    report("shared-memory order: leader restarted first with max_connections 150; the replicas restarted themselves and replay resumed");

    // Decrease, then restart the replicas first: they must keep 150 while the primary runs it.
    let marks: Vec<u64> = replicas.iter().map(|r| c.log_len(r)).collect();
    set_max_connections(&c, &l, 120)?;
    wait_pending(&c, &l, true)?;
    for (r, mark) in replicas.iter().zip(&marks) {
        c.wait(&format!("{r} to say it keeps 150"), MINUTE, || {
            let log = c.log_since(r, *mark);
            ensure!(
                log.contains("keeping max_connections = 150 on this standby instead of 120"),
                "not yet logged"
            );
            Ok(())
        })?;
        ensure!(
            !pending(&c, r)?,
            "{r} shows a pending restart it cannot apply yet"
        );
        restart(&c, r)?;
        wait_setting(&c, r, "150")?;
    }
    replay_runs(&c, &l, &replicas, 3)?;

    // Now the primary; its new values reach the replicas, which then want the restart.
    restart(&c, &l)?;
    wait_setting(&c, &l, "120")?;
    replay_runs(&c, &l, &replicas, 4)?;
    for r in &replicas {
        wait_pending(&c, r, true)?;
        restart(&c, r)?;
        wait_setting(&c, r, "120")?;
        wait_pending(&c, r, false)?;
    }
    replay_runs(&c, &l, &replicas, 5)?;
    ensure!(leader(&c)? == l, "the leader changed during the restarts");
    report("shared-memory order: decrease to 120 held on the replicas until the primary ran it, then applied");
    c.pass();
    Ok(())
}
