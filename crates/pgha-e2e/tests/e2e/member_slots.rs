//! `member_slots_ttl` (Patroni 4): a replica whose node is down loses its member key after
//! ttl, but the leader keeps its replication slot (and lists it in `status.retain_slots`), so
//! the WAL it needs stays and it streams again when it comes back. With `member_slots_ttl: 0`
//! the slot goes with the key, as before Patroni 4.

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use nix::sys::signal::Signal;
use pgha_e2e::{report, Cluster, ClusterOptions};

use crate::common::skip;

fn slots(c: &Cluster, leader: &str) -> Result<Vec<String>> {
    let rows = c
        .pg(leader)
        .sql("SELECT slot_name FROM pg_replication_slots ORDER BY 1")?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect())
}

#[test]
fn a_down_replica_keeps_its_slot_for_member_slots_ttl() -> Result<()> {
    if skip("a_down_replica_keeps_its_slot_for_member_slots_ttl") {
        return Ok(());
    }
    let c = Cluster::start_healthy(ClusterOptions::default())?;
    let leader = c.leader_name()?.ok_or_else(|| anyhow!("no leader"))?;
    let down = c
        .node_names()
        .into_iter()
        .find(|n| *n != leader)
        .expect("a replica");
    ensure!(
        slots(&c, &leader)?.contains(&down),
        "no slot for {down} to begin with"
    );

    // The node goes down hard: its key expires with its lease.
    c.kill_agent(&down, Signal::SIGKILL)?;
    c.kill_postmaster(&down, Signal::SIGKILL)?;
    c.wait(
        &format!("members/{down} to expire"),
        Duration::from_secs(40),
        || {
            ensure!(
                c.etcd_get(&format!("members/{down}"))?.is_none(),
                "still there"
            );
            Ok(())
        },
    )?;
    // A few leader cycles later the slot is still there, and retained in the status key.
    std::thread::sleep(Duration::from_secs(3));
    ensure!(
        slots(&c, &leader)?.contains(&down),
        "the leader dropped the slot of {down} as soon as its key expired"
    );
    let status = c.etcd_json("status")?;
    ensure!(
        status["retain_slots"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == down.as_str())),
        "status.retain_slots lacks {down}: {status}"
    );
    report(&format!(
        "member_slots_ttl: {down} down, its key expired, its slot kept"
    ));

    // It comes back and streams through the kept slot.
    c.start_node(&down)?;
    c.wait_streaming(2, Duration::from_secs(60))?;

    // member_slots_ttl: 0 — the slot goes with the key.
    let out = c.ctl(&["edit-config", "--force", "-s", "member_slots_ttl=0"])?;
    ensure!(out.status.success(), "edit-config: {out:?}");
    c.kill_agent(&down, Signal::SIGKILL)?;
    c.kill_postmaster(&down, Signal::SIGKILL)?;
    c.wait(
        &format!("the slot of {down} to go with its key"),
        Duration::from_secs(40),
        || {
            ensure!(
                !slots(&c, &leader)?.contains(&down),
                "slot of {down} still there"
            );
            Ok(())
        },
    )?;
    report("member_slots_ttl: 0 drops the slot with the member key");
    c.pass();
    Ok(())
}
