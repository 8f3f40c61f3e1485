//! Two promotions from the same position to the same timeline number: the timeline histories
//! agree, the WAL does not, and pg_rewind sees nothing to rewind.
//!
//! A leads, B and C stream the same WAL. B's agent dies (its postgres stays a replica), then A
//! dies (kill -9 of agent and postmaster). B's postgres is promoted by hand (as an operator or a
//! script might) and takes writes that nobody else has: timeline 2, forked at P. C, the only
//! agent left, takes over: its own timeline 2, forked at the same P. B's agent then starts
//! again with `remove_data_directory_on_diverged_timelines: true`: its rejoin finds the same
//! history as C's and nothing to rewind; its walreceiver fails at once ("incorrect prev-link")
//! and, after the second rejoin, postgres never even reaches a consistent state (the WAL the
//! walreceiver wrote over its own). It must clone itself again from C — ending with C's data,
//! not its own.

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions, Signal};

use crate::common::{skip, wal_receiver};
use crate::ops_common::{leader, others, wait_healthy_under};

#[test]
fn same_timeline_number_fork_is_cloned_again() -> Result<()> {
    if skip("same_timeline_number_fork_is_cloned_again") {
        return Ok(());
    }
    let c = Cluster::start_healthy(ClusterOptions::default())?;
    let a = leader(&c)?;
    wait_healthy_under(&c, &a, Duration::from_secs(60))?;
    let rest = others(&c, &a);
    let (b, cand) = (rest[0].clone(), rest[1].clone());

    c.edit_config(&b, |doc| {
        pgha_e2e::yaml_set(
            doc,
            &["postgresql", "remove_data_directory_on_diverged_timelines"],
            true.into(),
        )
    })?;

    c.pg(&a).sql("CREATE TABLE base(id int)")?;
    c.pg(&a)
        .sql("INSERT INTO base SELECT generate_series(1, 100)")?;
    let end = c
        .pg(&a)
        .sql_one("SELECT pg_current_wal_lsn()")?
        .ok_or_else(|| anyhow!("no WAL position on {a}"))?;
    for n in [&b, &cand] {
        c.wait(
            &format!("{n} to replay up to {end}"),
            Duration::from_secs(30),
            || {
                let got = c
                    .pg(n)
                    .sql_one(&format!("SELECT pg_last_wal_replay_lsn() >= '{end}'"))?;
                ensure!(got.as_deref() == Some("t"), "{n} is behind {end}");
                Ok(())
            },
        )?;
    }
    c.kill_agent(&b, Signal::SIGKILL)?;
    c.kill_agent(&a, Signal::SIGKILL)?;
    c.kill_postmaster(&a, Signal::SIGKILL)?;

    // Both replicas end at the same position P (nothing was written after `end` but, perhaps,
    // a standby snapshot both received).
    let received = |n: &str| -> Result<String> {
        c.pg(n)
            .sql_one("SELECT pg_last_wal_receive_lsn()")?
            .ok_or_else(|| anyhow!("{n} has no receive position"))
    };
    let p = c.wait(
        "B and C at the same position",
        Duration::from_secs(20),
        || {
            let (pb, pc) = (received(&b)?, received(&cand)?);
            ensure!(pb == pc, "{b} received up to {pb}, {cand} up to {pc}");
            Ok(pb)
        },
    )?;

    // B is promoted by hand while C's agent still waits for A's lease.
    let b_data = c.data_dir(&b).display().to_string();
    let out = c.run_pg_tool("pg_ctl", &["promote", "-w", "-D", &b_data])?;
    ensure!(
        out.status.success(),
        "pg_ctl promote of {b}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.pg(&b).sql("CREATE TABLE only_on_b(id int)")?;
    c.pg(&b)
        .sql("INSERT INTO only_on_b SELECT generate_series(1, 1000)")?;
    let out = c.run_pg_tool("pg_ctl", &["stop", "-m", "fast", "-w", "-D", &b_data])?;
    ensure!(
        out.status.success(),
        "pg_ctl stop of {b}: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    c.wait("C to lead", Duration::from_secs(60), || {
        let l = leader(&c)?;
        ensure!(l == cand, "the leader key names {l}");
        ensure!(!c.pg(&cand).in_recovery()?, "{cand} is still in recovery");
        Ok(())
    })?;
    let tl = |n: &str| -> Result<String> {
        c.pg(n)
            .sql_one("SELECT timeline_id FROM pg_control_checkpoint()")?
            .ok_or_else(|| anyhow!("no timeline on {n}"))
    };
    c.wait(
        "C's checkpoint on its new timeline",
        Duration::from_secs(30),
        || {
            ensure!(tl(&cand)? == "2", "{cand} is on timeline {}", tl(&cand)?);
            Ok(())
        },
    )?;
    // C writes more than B did, so B's end of WAL lies inside C's WAL.
    c.pg(&cand)
        .sql("CREATE TABLE only_on_c(id int, pad text)")?;
    c.pg(&cand)
        .sql("INSERT INTO only_on_c SELECT g, repeat('c', 200) FROM generate_series(1, 20000) g")?;
    report(&format!(
        "same timeline fork: {b} and {cand} both promoted to timeline 2 at {p}"
    ));

    let b_log = c.start_node(&b)?;
    c.wait(
        "B to clone itself again and stream from C",
        Duration::from_secs(300),
        || {
            let (status, _) = wal_receiver(&c.pg(&b))?;
            ensure!(status == "streaming", "{b}'s walreceiver is {status}");
            let on_b = c.pg(&b).sql_one(
                "SELECT to_regclass('only_on_c') IS NOT NULL AND to_regclass('only_on_b') IS NULL",
            )?;
            ensure!(
                on_b.as_deref() == Some("t"),
                "{b} does not hold C's data yet"
            );
            Ok(())
        },
    )?;
    let log = c.log_since(&b, b_log);
    ensure!(
        log.contains("again after a rejoin found nothing to rewind"),
        "{b} never found that no rewind could fix it:\n{}",
        c.log_tail(&b, 60)
    );
    c.start_node(&a)?;
    wait_healthy_under(&c, &cand, Duration::from_secs(120))?;
    c.pass();
    Ok(())
}
