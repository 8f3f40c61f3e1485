//! (h) Garbage in the DCS (bad JSON in `members/x`, `config`, `status`): the agents log it and
//! keep working — the leader keeps the lock, replicas keep following, /patroni stays 200.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions};

use crate::common::{skip, wait_rows};

#[test]
fn garbage_in_dcs_keys_is_tolerated() -> Result<()> {
    if skip("garbage_in_dcs_keys_is_tolerated") {
        return Ok(());
    }
    let c = Cluster::start_healthy(ClusterOptions::default())?;
    let leader = c.leader_name()?.ok_or_else(|| anyhow!("no leader"))?;
    let lease = c.etcd_get_kv("leader")?.map(|kv| kv.lease).unwrap_or(0);
    let marks: Vec<(String, u64)> = c
        .node_names()
        .into_iter()
        .map(|n| (n.clone(), c.log_len(&n)))
        .collect();

    c.etcd_put(
        "members/x",
        "{\"conn_url\": \"postgres://127.0.0.1:1/postgres\", oops",
    )?;
    c.etcd_put("config", "{{{ this is not json")?;
    c.etcd_put("status", "not json at all")?;

    // For 10 s: same leader (same lease), every REST API answers /patroni with 200.
    let start = Instant::now();
    let mut samples = 0;
    while start.elapsed() < Duration::from_secs(10) {
        let kv = c.etcd_get_kv("leader")?.ok_or_else(|| {
            anyhow!(
                "leader key vanished after {:.1}s",
                start.elapsed().as_secs_f64()
            )
        })?;
        ensure!(
            kv.value == leader,
            "leadership moved to {} after the garbage",
            kv.value
        );
        ensure!(
            kv.lease == lease,
            "leader key re-created (lease {:x} -> {:x})",
            lease,
            kv.lease
        );
        for n in c.node_names() {
            match c.rest(&n).get("/patroni") {
                Ok((200, _)) => {}
                Ok((code, body)) => bail!("{n}: /patroni -> {code}: {body}"),
                Err(e) => bail!("{n}: /patroni failed: {e:#}"),
            }
            ensure!(c.agent_running(&n), "agent of {n} exited after the garbage");
        }
        samples += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    report(&format!(
        "garbage keys: leader {leader} kept the lock for 10s ({samples} samples)"
    ));

    // Replicas still follow: fresh rows reach them.
    c.wait_streaming(2, Duration::from_secs(10))?;
    let lpg = c.pg(&leader);
    lpg.sql("CREATE TABLE gk(id int PRIMARY KEY); INSERT INTO gk SELECT generate_series(1, 10)")?;
    let want: BTreeSet<i64> = (1..=10).collect();
    for n in c.node_names().iter().filter(|n| **n != leader) {
        wait_rows(&c, n, "gk", &want, Duration::from_secs(20))?;
    }

    // Every agent logged the bad keys (`status` is rewritten by the leader every loop, so an
    // agent may never read the garbage there).
    for (n, mark) in &marks {
        let log = c.log_since(n, *mark);
        for line in log
            .lines()
            .filter(|l| l.contains("WARNING") || l.contains("ERROR"))
            .take(3)
        {
            report(&format!("garbage keys: {n}: {line}"));
        }
        let warned = |what: &str| {
            log.lines()
                .any(|l| (l.contains("WARNING") || l.contains("ERROR")) && l.contains(what))
        };
        ensure!(
            warned("members/x"),
            "{n} never warned about the bad members/x key"
        );
        ensure!(
            warned("config"),
            "{n} never warned about the bad config key"
        );
    }
    c.pass();
    Ok(())
}
