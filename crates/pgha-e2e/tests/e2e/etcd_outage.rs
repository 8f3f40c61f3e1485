//! (e) etcd down: within retry_timeout (+ slack) the leader demotes and no node accepts writes;
//! etcd back: one leader again, the others streaming, no acknowledged row lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions};

use crate::common::{ids, secs, skip, wait_rows};

#[test]
fn etcd_outage_demotes_leader_and_recovers() -> Result<()> {
    if skip("etcd_outage_demotes_leader_and_recovers") {
        return Ok(());
    }
    let opts = ClusterOptions::default();
    let retry_timeout = opts.retry_timeout;
    let c = Cluster::start_healthy(opts)?;
    let leader = c.leader_name()?.ok_or_else(|| anyhow!("no leader"))?;
    let lpg = c.pg(&leader);
    lpg.sql("CREATE TABLE eo(id bigint PRIMARY KEY)")?;
    for id in 1..=50 {
        lpg.sql(&format!("INSERT INTO eo VALUES ({id})"))?;
    }
    let acked: BTreeSet<i64> = (1..=50).collect();
    for n in c.node_names().iter().filter(|n| **n != leader) {
        wait_rows(&c, n, "eo", &acked, Duration::from_secs(20))?;
    }

    c.stop_etcd()?;
    let t0 = Instant::now();
    report(&format!("etcd outage: etcd killed, leader was {leader}"));
    c.wait(
        "every node to refuse writes and answer 503 on /primary",
        Duration::from_secs(45),
        || {
            for n in c.node_names() {
                let (code, _) = c.rest(&n).get("/primary")?;
                ensure!(code == 503, "{n}: GET /primary -> {code}");
                match c.pg(&n).in_recovery() {
                    Ok(true) | Err(_) => {}
                    Ok(false) => anyhow::bail!("{n} still accepts writes (not in recovery)"),
                }
            }
            Ok(())
        },
    )?;
    let took = t0.elapsed();
    report(&format!(
        "etcd outage: no writable node {:.1}s after etcd died (retry_timeout = {retry_timeout}s)",
        secs(took)
    ));
    ensure!(
        took <= Duration::from_secs(15),
        "demotion took {:.1}s (> 15s)",
        secs(took)
    );
    // Stays read-only while etcd is down.
    std::thread::sleep(Duration::from_secs(2));
    for n in c.node_names() {
        ensure!(
            !matches!(c.pg(&n).in_recovery(), Ok(false)),
            "{n} became writable without etcd"
        );
    }

    c.start_etcd()?;
    let t1 = Instant::now();
    let new = c.wait_for_leader(Duration::from_secs(90))?;
    report(&format!(
        "etcd outage: etcd back, {new} leads after {:.1}s (old leader {leader})",
        secs(t1.elapsed())
    ));
    c.wait_streaming(2, Duration::from_secs(120))?;
    report(&format!(
        "etcd outage: two replicas streaming {:.1}s after etcd came back",
        secs(t1.elapsed())
    ));
    let have = ids(&c.pg(&new), "eo")?;
    let lost: Vec<_> = acked.difference(&have).collect();
    ensure!(lost.is_empty(), "rows lost across the outage: {lost:?}");
    let writable: Vec<String> = c
        .node_names()
        .into_iter()
        .filter(|n| matches!(c.pg(n).in_recovery(), Ok(false)))
        .collect();
    ensure!(
        writable == vec![new.clone()],
        "writable nodes {writable:?}, leader {new}"
    );
    c.pass();
    Ok(())
}
