//! Maintenance mode: `pghactl pause --wait` stops automatic failover. With the leader's agent
//! and postmaster killed -9, no replica is promoted for ttl + 5 s; the restarted agent does not
//! start its stopped postgres while paused. `pghactl resume --wait` lets the cluster heal: one
//! leader, every other node streaming from it.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use pgha_e2e::{report, wait_until, Cluster, ClusterOptions, Signal};

use crate::common::{secs, skip};
use crate::ops_common::{ctl_ok, leader, list, others, wait_healthy_under};

/// Polls for `window`: Err as soon as `broken` finds something wrong.
fn hold_for(window: Duration, mut broken: impl FnMut() -> Option<String>) -> Result<()> {
    let seen = wait_until(
        "something to go wrong",
        window,
        Duration::from_millis(200),
        || match broken() {
            Some(why) => Ok(why),
            None => bail!("all fine"),
        },
    );
    match seen {
        Ok(why) => bail!("{why}"),
        Err(_) => Ok(()),
    }
}

#[test]
fn pause_no_failover() -> Result<()> {
    if skip("pause_no_failover") {
        return Ok(());
    }
    let opts = ClusterOptions::default();
    let ttl = opts.ttl;
    let c = Cluster::start_healthy(opts)?;
    let old = leader(&c)?;
    wait_healthy_under(&c, &old, Duration::from_secs(60))?;

    let out = ctl_ok(&c, &["pause", "--wait"], Duration::from_secs(30))?;
    ensure!(
        out.contains("Success: cluster management is paused"),
        "pause --wait: {out}"
    );
    c.wait(
        "/patroni to say pause on every node",
        Duration::from_secs(20),
        || {
            for n in c.node_names() {
                let (_, v) = c.rest(&n).get_json("/patroni")?;
                ensure!(v["pause"] == true, "{n}: {v}");
            }
            Ok(())
        },
    )?;
    let (out, _) = list(&c)?;
    ensure!(
        out.contains(" Maintenance mode: on"),
        "list while paused:\n{out}"
    );

    c.kill_agent(&old, Signal::SIGKILL)?;
    c.kill_postmaster(&old, Signal::SIGKILL)?;
    let t_kill = Instant::now();
    let replicas = others(&c, &old);
    hold_for(Duration::from_secs(ttl + 5), || {
        match c.leader_name() {
            Ok(Some(l)) if l != old => {
                return Some(format!("{l} took the leader key while paused"))
            }
            _ => {}
        }
        for r in &replicas {
            if let Ok(false) = c.pg(r).in_recovery() {
                return Some(format!("{r} was promoted while paused"));
            }
        }
        None
    })?;
    let key = c.leader_name()?;
    report(&format!(
        "pause: {:.1}s after killing {old}, leader key {key:?}, no replica promoted",
        secs(t_kill.elapsed())
    ));

    // The restarted agent leaves its stopped postgres alone while paused.
    let mark = c.start_node(&old)?;
    c.wait(
        &format!("the agent of {old} to publish"),
        Duration::from_secs(20),
        || {
            let (code, v) = c.rest(&old).get_json("/patroni")?;
            ensure!(v["pause"] == true, "{old}: {code} {v}");
            Ok(())
        },
    )?;
    hold_for(Duration::from_secs(5), || {
        if let Some(pid) = c.postmaster_pid(&old) {
            return Some(format!("{old}: postgres started (pid {pid}) while paused"));
        }
        for r in &replicas {
            if let Ok(false) = c.pg(r).in_recovery() {
                return Some(format!("{r} was promoted while paused"));
            }
        }
        None
    })
    .map_err(|e| anyhow::anyhow!("{e:#}\nlog of {old}:\n{}", c.log_since(&old, mark)))?;

    let out = ctl_ok(&c, &["resume", "--wait"], Duration::from_secs(30))?;
    ensure!(
        out.contains("Success: cluster management is resumed"),
        "resume --wait: {out}"
    );
    let t_resume = Instant::now();
    let new = c.wait("a leader after resume", Duration::from_secs(60), || {
        let l = leader(&c)?;
        ensure!(!c.pg(&l).in_recovery()?, "{l} is in recovery");
        Ok(l)
    })?;
    wait_healthy_under(&c, &new, Duration::from_secs(120))?;
    let primaries: Vec<String> = c
        .node_names()
        .into_iter()
        .filter(|n| c.pg(n).in_recovery().ok() == Some(false))
        .collect();
    ensure!(
        primaries == [new.clone()],
        "primaries after resume: {primaries:?}"
    );
    let (out, _) = list(&c)?;
    ensure!(!out.contains("Maintenance mode"), "still paused:\n{out}");
    report(&format!(
        "pause: after resume {new} leads, all streaming {:.1}s later",
        secs(t_resume.elapsed())
    ));
    c.pass();
    Ok(())
}
