//! (b) kill -9 of the leader's agent and its postmaster together: the replicas find both of
//! its ports refusing connections and take over without waiting for its lease, and the old
//! node, restarted, rewinds and streams from the new leader on the new timeline.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions, Signal};

use crate::common::{
    checkpoint_timeline, primary_timeline, secs, skip, try_write, wait_rows, wal_receiver,
};

#[test]
fn failover_after_kill9_of_leader_and_postmaster() -> Result<()> {
    if skip("failover_after_kill9_of_leader_and_postmaster") {
        return Ok(());
    }
    let opts = ClusterOptions::default();
    let bound = opts.ttl + 2 * opts.loop_wait;
    let c = Cluster::start_healthy(opts)?;
    let old = c.leader_name()?.ok_or_else(|| anyhow!("no leader"))?;
    let old_pg = c.pg(&old);
    let old_tl = primary_timeline(&old_pg)?;
    old_pg.sql(
        "CREATE TABLE kl(id bigint PRIMARY KEY); INSERT INTO kl SELECT generate_series(1, 50)",
    )?;
    let before: BTreeSet<i64> = (1..=50).collect();
    for n in c.node_names().iter().filter(|n| **n != old) {
        wait_rows(&c, n, "kl", &before, Duration::from_secs(20))?;
    }

    // Kill both, back to back.
    let agent_pid = c.agent_pid(&old).ok_or_else(|| anyhow!("no agent pid"))?;
    let pm_pid = c
        .postmaster_pid(&old)
        .ok_or_else(|| anyhow!("no postmaster pid"))?;
    c.kill_agent(&old, Signal::SIGKILL)?;
    c.kill_postmaster(&old, Signal::SIGKILL)?;
    let t0 = Instant::now();
    report(&format!("kill9: killed agent {agent_pid} and postmaster {pm_pid} of leader {old} (timeline {old_tl})"));

    // A new leader accepts writes.
    let others: Vec<String> = c.node_names().into_iter().filter(|n| *n != old).collect();
    let mut id = 1000;
    let new = c.wait(
        "a new leader accepting writes",
        Duration::from_secs(60),
        || {
            let leader = c.leader_name()?.ok_or_else(|| anyhow!("no leader key"))?;
            ensure!(others.contains(&leader), "leader key still names {leader}");
            id += 1;
            try_write(&c.pg(&leader), "kl", id)?;
            Ok(leader)
        },
    )?;
    let took = t0.elapsed();
    // Both of the old leader's ports refuse connections (the host answers, nothing listens):
    // proof that it is dead, so the replicas need not wait for its lease.
    ensure!(
        others.iter().any(|n| c
            .log_since(n, 0)
            .contains("refuse connections for every member: removing its leader key")),
        "no replica removed the dead leader's key before its lease expired"
    );
    report(&format!(
        "kill9: {new} accepted writes {:.1}s after the kill (ttl + 2*loop_wait = {bound}s)",
        secs(took)
    ));
    ensure!(
        took <= Duration::from_secs(30),
        "failover took {:.1}s (> 30s)",
        secs(took)
    );
    let new_pg = c.pg(&new);
    let new_tl = primary_timeline(&new_pg)?;
    ensure!(
        new_tl > old_tl,
        "new leader's timeline {new_tl} is not after {old_tl}"
    );
    // The promotion is recorded in `history`: [timeline, switch lsn, reason, timestamp, leader].
    c.wait(
        "the promotion in the history key",
        Duration::from_secs(20),
        || {
            let h = c.etcd_json("history")?;
            let last = h
                .as_array()
                .and_then(|a| a.last())
                .ok_or_else(|| anyhow!("history is not a non-empty list: {h}"))?;
            ensure!(
                last[0] == old_tl && last[1].is_u64() && last[2].is_string(),
                "history entry {last}"
            );
            ensure!(
                last[4] == new.as_str(),
                "history entry {last} does not name {new}"
            );
            Ok(())
        },
    )?;

    // The other replica follows the new leader.
    c.wait_streaming(1, Duration::from_secs(60))?;

    // The old node comes back as a replica of the new leader, on the new timeline.
    // postgres's own log sits beside the data directory: `<data_dir>.postgresql.log`.
    let pg_log = {
        let d = c.data_dir(&old);
        let name = d.file_name().map(|n| n.to_string_lossy().into_owned());
        d.with_file_name(format!("{}.postgresql.log", name.unwrap_or_default()))
    };
    let pg_log_mark = std::fs::metadata(&pg_log).map(|m| m.len()).unwrap_or(0);
    let mark = c.start_node(&old)?;
    let t1 = Instant::now();
    new_pg.sql("INSERT INTO kl SELECT generate_series(2001, 2100)")?;
    c.wait(
        &format!("{old} streaming on timeline {new_tl}"),
        Duration::from_secs(120),
        || {
            ensure!(c.agent_running(&old), "agent of {old} exited");
            let (status, tli) = wal_receiver(&old_pg)?;
            ensure!(
                status == "streaming" && tli == new_tl,
                "{old}: wal receiver {status} on timeline {tli}"
            );
            Ok(())
        },
    )?;
    report(&format!(
        "kill9: {old} streaming again {:.1}s after its agent restarted",
        secs(t1.elapsed())
    ));
    let names = c.wait_streaming(2, Duration::from_secs(30))?;
    ensure!(
        names.contains(&old),
        "{old} not in the new leader's pg_stat_replication: {names:?}"
    );
    ensure!(old_pg.in_recovery()?, "{old} is not a replica");
    let want: BTreeSet<i64> = (2001..=2100).collect();
    wait_rows(&c, &old, "kl", &want, Duration::from_secs(20))?;
    ensure!(
        c.leader_name()?.as_deref() == Some(new.as_str()),
        "leadership moved again"
    );

    // Its slot existed on the new leader before its walreceiver first asked for it (a missing
    // slot fails the walreceiver and PostgreSQL then waits wal_retrieve_retry_interval).
    let pg_text = std::fs::read(&pg_log).unwrap_or_default();
    let pg_text = String::from_utf8_lossy(pg_text.get(pg_log_mark as usize..).unwrap_or_default());
    ensure!(
        !pg_text
            .lines()
            .any(|l| l.contains("replication slot") && l.contains("does not exist")),
        "{old}'s walreceiver asked the new leader for a missing slot:\n{pg_text}"
    );
    let log = c.log_since(&old, mark);
    ensure!(
        log.to_lowercase().contains("rewind"),
        "the restarted agent of {old} never mentioned pg_rewind/rewind in its log"
    );
    let cp_tl = checkpoint_timeline(&old_pg).unwrap_or(0);
    report(&format!(
        "kill9: {old} pg_control_checkpoint timeline {cp_tl}, wal receiver timeline {new_tl}"
    ));
    c.pass();
    Ok(())
}
