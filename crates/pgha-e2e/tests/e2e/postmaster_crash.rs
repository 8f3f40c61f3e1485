//! (c) kill -9 of the leader's postmaster alone: its agent starts postgres again and keeps the
//! leadership; the timeline does not change; writes work again within ~15 s.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions, Signal};

use crate::common::{ids, primary_timeline, secs, skip, try_write};

#[test]
fn leader_restarts_crashed_postmaster() -> Result<()> {
    if skip("leader_restarts_crashed_postmaster") {
        return Ok(());
    }
    let c = Cluster::start_healthy(ClusterOptions::default())?;
    let leader = c.leader_name()?.ok_or_else(|| anyhow!("no leader"))?;
    let pg = c.pg(&leader);
    let tl = primary_timeline(&pg)?;
    pg.sql("CREATE TABLE pc(id bigint PRIMARY KEY); INSERT INTO pc VALUES (1)")?;

    let old_pm = c.kill_postmaster(&leader, Signal::SIGKILL)?;
    let t0 = Instant::now();
    let mut leaders_seen = BTreeSet::new();
    let mut id = 1;
    c.wait(
        "the leader to accept writes again",
        Duration::from_secs(60),
        || {
            if let Some(l) = c.leader_name()? {
                leaders_seen.insert(l);
            }
            id += 1;
            try_write(&pg, "pc", id)
        },
    )?;
    let took = t0.elapsed();
    report(&format!(
        "postmaster crash: {leader} accepted writes again after {:.1}s",
        secs(took)
    ));
    ensure!(
        took <= Duration::from_secs(20),
        "writes resumed only after {:.1}s (> 20s)",
        secs(took)
    );
    ensure!(
        leaders_seen.iter().all(|l| *l == leader),
        "leadership changed while {leader} recovered: saw {leaders_seen:?}"
    );
    ensure!(
        c.leader_name()?.as_deref() == Some(leader.as_str()),
        "{leader} lost the leader key"
    );
    let new_pm = c
        .postmaster_pid(&leader)
        .ok_or_else(|| anyhow!("no postmaster after restart"))?;
    ensure!(new_pm != old_pm, "postmaster pid unchanged ({old_pm})");
    let tl_after = primary_timeline(&pg)?;
    ensure!(tl_after == tl, "timeline changed {tl} -> {tl_after}");
    ensure!(
        ids(&pg, "pc")?.contains(&1),
        "row written before the crash is gone"
    );
    c.wait_streaming(2, Duration::from_secs(60))?;
    c.pass();
    Ok(())
}
