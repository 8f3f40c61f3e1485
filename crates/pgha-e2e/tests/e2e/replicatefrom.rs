//! Cascading replication with the `replicatefrom` tag: node3 streams from node2 (its slot is
//! on node2, none on the leader); when node2 dies and its member key expires, node3 falls back
//! to the leader, which then keeps a slot for it.

use std::time::Duration;

use anyhow::{ensure, Result};
use pgha_e2e::{report, yaml_set, Cluster, ClusterOptions, PgEndpoint, Signal};

use crate::common::skip;

/// (status, sender port) of a replica's WAL receiver.
fn receiver(pg: &PgEndpoint) -> Result<(String, u16)> {
    let row = pg.sql("SELECT status, sender_port FROM pg_stat_wal_receiver")?;
    let row = row.into_iter().next().unwrap_or_default();
    let status = row.first().cloned().flatten().unwrap_or_default();
    let port = row
        .get(1)
        .cloned()
        .flatten()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    Ok((status, port))
}

/// Physical slots on `pg` as (name, active).
fn slots(pg: &PgEndpoint) -> Result<Vec<(String, bool)>> {
    Ok(pg
        .sql("SELECT slot_name, active FROM pg_replication_slots ORDER BY 1")?
        .into_iter()
        .map(|r| {
            (
                r.first().cloned().flatten().unwrap_or_default(),
                r.get(1).cloned().flatten().as_deref() == Some("t"),
            )
        })
        .collect())
}

#[test]
fn replicatefrom_cascades_and_falls_back() -> Result<()> {
    if skip("replicatefrom_cascades_and_falls_back") {
        return Ok(());
    }
    let opts = ClusterOptions::default().nodes(3).customize(|spec, doc| {
        if spec.name == "node3" {
            yaml_set(doc, &["tags", "replicatefrom"], "node2".into());
        }
    });
    let c = Cluster::prepare(opts)?;
    c.start_etcd()?;
    // node1 bootstraps alone so the topology is known: node1 <- node2 <- node3.
    c.start_node("node1")?;
    let leader = c.wait_for_leader(Duration::from_secs(90))?;
    ensure!(leader == "node1", "{leader} bootstrapped");
    c.start_node("node2")?;
    c.start_node("node3")?;
    let (p1, p2) = (c.pg("node1").port, c.pg("node2").port);

    c.wait(
        "node3 streaming from node2 through its slot there",
        Duration::from_secs(120),
        || {
            let (status, port) = receiver(&c.pg("node3"))?;
            ensure!(
                status == "streaming" && port == p2,
                "node3: receiver {status} from port {port}"
            );
            ensure!(
                slots(&c.pg("node2"))?.contains(&("node3".into(), true)),
                "node2 slots {:?}",
                slots(&c.pg("node2"))?
            );
            let on_leader = slots(&c.pg("node1"))?;
            ensure!(
                on_leader.contains(&("node2".into(), true))
                    && !on_leader.iter().any(|(n, _)| n == "node3"),
                "leader slots {on_leader:?}"
            );
            Ok(())
        },
    )?;
    c.pg("node1")
        .sql("CREATE TABLE cascade_t(id int); INSERT INTO cascade_t VALUES (1)")?;
    c.wait("the row on node3", Duration::from_secs(30), || {
        let n = c.pg("node3").sql_one("SELECT count(*) FROM cascade_t")?;
        ensure!(n.as_deref() == Some("1"), "count {n:?}");
        Ok(())
    })?;
    report("replicatefrom: node3 streams from node2, slot on node2 only");

    // node2 dies; once its member key expires node3 follows the leader.
    c.kill_agent("node2", Signal::SIGKILL)?;
    c.kill_postmaster("node2", Signal::SIGKILL)?;
    c.wait(
        "node3 back on the leader with a slot there",
        Duration::from_secs(90),
        || {
            let (status, port) = receiver(&c.pg("node3"))?;
            ensure!(
                status == "streaming" && port == p1,
                "node3: receiver {status} from port {port}"
            );
            ensure!(
                slots(&c.pg("node1"))?.contains(&("node3".into(), true)),
                "leader slots {:?}",
                slots(&c.pg("node1"))?
            );
            Ok(())
        },
    )?;
    report("replicatefrom: node2 gone, node3 streams from the leader");
    c.pass();
    Ok(())
}
