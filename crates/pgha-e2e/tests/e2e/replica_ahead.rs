//! A replica that received WAL from the old primary past the new leader's fork point heals.
//!
//! The future leader C falls behind (its walreceiver stopped) while A keeps streaming 60 MB of
//! writes; the leader is killed (-9, agent and postmaster) and C, the only candidate (A has
//! `nofailover`), takes over with less WAL than A has. A cannot stream from C's new timeline;
//! it must see that from the `history` key, stop, rewind from C and stream again, as the old
//! leader does when it comes back.

use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use pgha_e2e::{report, Cluster, ClusterOptions, Signal};

use crate::common::{skip, wal_receiver};
use crate::ops_common::{leader, others, wait_healthy_under};

fn signal(pid: i32, sig: Signal) -> Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
        .with_context(|| format!("{sig:?} to {pid}"))
}

#[test]
fn replica_ahead_of_the_new_timeline_rewinds_and_streams() -> Result<()> {
    if skip("replica_ahead_of_the_new_timeline_rewinds_and_streams") {
        return Ok(());
    }
    // C is far behind on purpose: it must still be allowed to take over.
    let opts = ClusterOptions {
        maximum_lag_on_failover: 1 << 30,
        ..ClusterOptions::default()
    };
    let c = Cluster::start_healthy(opts)?;
    let old = leader(&c)?;
    wait_healthy_under(&c, &old, Duration::from_secs(60))?;
    let rest = others(&c, &old);
    let (cand, ahead) = (rest[0].clone(), rest[1].clone());

    // A never leads: tag it nofailover and reload.
    c.edit_config(&ahead, |doc| {
        pgha_e2e::yaml_set(doc, &["tags", "nofailover"], true.into())
    })?;
    c.kill_agent(&ahead, Signal::SIGHUP)?;
    c.wait(
        "the nofailover tag in A's member key",
        Duration::from_secs(20),
        || {
            let m = c.etcd_json(&format!("members/{ahead}"))?;
            ensure!(m["tags"]["nofailover"] == true, "tags: {}", m["tags"]);
            Ok(())
        },
    )?;

    // C stops receiving; A gets 60 MB more than fits in C's socket buffers.
    let old_pg = c.pg(&old);
    old_pg.sql("CREATE TABLE big(id int, pad text)")?;
    let receiver: i32 = c
        .pg(&cand)
        .sql_one("SELECT pid FROM pg_stat_wal_receiver")?
        .ok_or_else(|| anyhow!("{cand} has no walreceiver"))?
        .parse()?;
    signal(receiver, Signal::SIGSTOP)?;
    let stopped = scopeguard_cont(receiver);
    old_pg.sql("INSERT INTO big SELECT g, repeat('x', 1000) FROM generate_series(1, 60000) g")?;
    let end = old_pg
        .sql_one("SELECT pg_current_wal_lsn()")?
        .ok_or_else(|| anyhow!("no WAL position"))?;
    c.wait("A to receive everything", Duration::from_secs(60), || {
        let got = c
            .pg(&ahead)
            .sql_one(&format!("SELECT pg_last_wal_replay_lsn() >= '{end}'"))?;
        ensure!(
            got.as_deref() == Some("t"),
            "A has not replayed up to {end}"
        );
        Ok(())
    })?;
    c.kill_agent(&old, Signal::SIGKILL)?;
    c.kill_postmaster(&old, Signal::SIGKILL)?;
    drop(stopped);
    let a_log = c.log_len(&ahead);

    c.wait("C to lead", Duration::from_secs(60), || {
        let l = leader(&c)?;
        ensure!(l == cand, "the leader key names {l}");
        ensure!(!c.pg(&cand).in_recovery()?, "{cand} is still in recovery");
        Ok(())
    })?;
    let lost = c.pg(&cand).sql_one("SELECT count(*) FROM big")?;
    report(&format!(
        "replica ahead: {cand} took over with {} of 60000 rows that {ahead} had",
        lost.as_deref().unwrap_or("?")
    ));
    c.start_node(&old)?;
    wait_healthy_under(&c, &cand, Duration::from_secs(120))?;
    let (status, _) = wal_receiver(&c.pg(&ahead))?;
    ensure!(status == "streaming", "{ahead}'s walreceiver is {status}");
    let log = c.log_since(&ahead, a_log);
    ensure!(
        log.contains("goes past the end of timeline"),
        "{ahead} never saw that it was past the fork point:\n{}",
        c.log_tail(&ahead, 40)
    );
    c.pass();
    Ok(())
}

/// SIGCONT the walreceiver when dropped, also when the test fails half-way.
fn scopeguard_cont(pid: i32) -> impl Drop {
    struct Cont(i32);
    impl Drop for Cont {
        fn drop(&mut self) {
            let _ = signal(self.0, Signal::SIGCONT);
        }
    }
    Cont(pid)
}
