//! HAProxy in front of a cluster, configured by `pghactl haproxy-config` (`inter 1s fall 2
//! rise 1`), and `/metrics` on the same cluster:
//! (a) a write through the primary port lands on the leader; after `pghactl switchover --force`
//!     new connections through it reach the new leader within inter×fall + loop_wait + slack of
//!     the promotion; the replica port reaches only replicas, never the `noloadbalance` one;
//! (b) `/metrics` parses on leader and replica, with patroni_primary / patroni_replica 1/0 and
//!     0/1, Patroni's label order, and patroni_primary flips with the switchover.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions};

use crate::common::{skip, stdout_ok};
use crate::prod_support::{
    landing, metric, no_haproxy, parse_prometheus, since, start_edited, Haproxy, FALL, INTER_SECS,
};

const NAME: &str = "haproxy_routing_switchover_and_metrics";
/// The member tagged `noloadbalance: true`.
const NOLB: &str = "node3";

/// `/metrics` of `node` agrees with the role: parses, right values, Patroni's labels.
fn check_metrics(c: &Cluster, node: &str, leader: bool) -> Result<()> {
    let (code, body) = c.rest(node).get("/metrics")?;
    ensure!(code == 200, "{node}: /metrics answered {code}");
    let samples = parse_prometheus(&body)?;
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let (primary, labels) = metric(&samples, "patroni_primary")?;
    ensure!(
        labels
            == [
                ("scope".to_string(), c.scope.clone()),
                ("name".to_string(), node.to_string())
            ],
        "{node}: labels {labels:?}"
    );
    ensure!(primary == flag(leader), "{node}: patroni_primary {primary}");
    let (replica, _) = metric(&samples, "patroni_replica")?;
    ensure!(
        replica == flag(!leader),
        "{node}: patroni_replica {replica}"
    );
    ensure!(metric(&samples, "patroni_version")?.0 == 40105.0, "version");
    ensure!(
        metric(&samples, "patroni_postgres_running")?.0 == 1.0,
        "running"
    );
    ensure!(
        metric(&samples, "patroni_postgres_timeline")?.0 >= 1.0,
        "timeline"
    );
    let streaming = metric(&samples, "patroni_postgres_streaming")?.0;
    ensure!(streaming == flag(!leader), "{node}: streaming {streaming}");
    ensure!(
        metric(&samples, "pgha_ha_loop_cycles_total")?.0 >= 1.0,
        "cycles"
    );
    let (info, labels) = metric(&samples, "pgha_last_decision_info")?;
    ensure!(
        info == 1.0 && labels.iter().any(|(k, v)| k == "decision" && !v.is_empty()),
        "{node}: decision {labels:?}"
    );
    for s in &samples {
        ensure!(
            s.labels.first().map(|(k, _)| k.as_str()) == Some("scope"),
            "{node}: {} does not start with the scope label",
            s.name
        );
    }
    Ok(())
}

/// Connections through the replica port land on in-recovery members of `allowed` only, and
/// on each of them at least once in `tries` round-robin connections.
fn check_replica_port(c: &Cluster, h: &Haproxy, allowed: &BTreeSet<String>) -> Result<()> {
    c.wait(
        &format!("HAProxy to have replicas {allowed:?} UP"),
        Duration::from_secs(20),
        || {
            let up: BTreeSet<String> = h.up("replicas")?.into_iter().collect();
            ensure!(&up == allowed, "replica servers UP: {up:?}");
            Ok(())
        },
    )?;
    let mut seen = BTreeSet::new();
    for _ in 0..(3 * allowed.len()) {
        let (node, in_recovery) = landing(c, &h.replicas())?;
        ensure!(
            in_recovery,
            "the replica port reached {node}, not in recovery"
        );
        ensure!(
            allowed.contains(&node),
            "the replica port reached {node}, not one of {allowed:?}"
        );
        seen.insert(node);
    }
    ensure!(
        &seen == allowed,
        "round robin reached {seen:?} of {allowed:?}"
    );
    Ok(())
}

fn replicas_for_load(c: &Cluster, leader: &str) -> BTreeSet<String> {
    c.node_names()
        .into_iter()
        .filter(|n| n != leader && n != NOLB)
        .collect()
}

#[test]
fn haproxy_routing_switchover_and_metrics() -> Result<()> {
    if skip(NAME) || no_haproxy(NAME) {
        return Ok(());
    }
    let opts = ClusterOptions::default();
    let loop_wait = opts.loop_wait;
    let c = start_edited(opts, |name, _, yaml| {
        if name == NOLB {
            yaml.replace("  noloadbalance: false", "  noloadbalance: true")
        } else {
            yaml
        }
    })?;
    let old = c.leader_name()?.ok_or_else(|| anyhow!("no leader"))?;
    let h = Haproxy::start(&c)?;
    h.wait_primary(&c, &old, Duration::from_secs(15))?;

    // (a) Writes through the primary port land on the leader.
    h.primary()
        .sql("CREATE TABLE hp(id int); INSERT INTO hp VALUES (1)")?;
    let (node, in_recovery) = landing(&c, &h.primary())?;
    ensure!(
        node == old && !in_recovery,
        "primary port reached {node} (recovery {in_recovery}), leader is {old}"
    );
    ensure!(
        c.pg(&old).sql_one("SELECT count(*) FROM hp")?.as_deref() == Some("1"),
        "the write is not on the leader"
    );
    check_replica_port(&c, &h, &replicas_for_load(&c, &old))?;

    // (b) Metrics on the leader and a replica.
    let replica = c
        .node_names()
        .into_iter()
        .find(|n| *n != old)
        .ok_or_else(|| anyhow!("no replica"))?;
    c.wait("metrics of the leader", Duration::from_secs(10), || {
        check_metrics(&c, &old, true)
    })?;
    c.wait("metrics of a replica", Duration::from_secs(10), || {
        check_metrics(&c, &replica, false)
    })?;

    // Switchover; the primary port follows.
    let t0 = Instant::now();
    stdout_ok(
        &c.ctl(&["switchover", &c.scope, "--force"])?,
        "pghactl switchover",
    )?;
    let new = c.wait(
        "a new leader out of recovery",
        Duration::from_secs(40),
        || {
            let l = c.leader_name()?.ok_or_else(|| anyhow!("no leader key"))?;
            ensure!(l != old, "leader key still names {old}");
            ensure!(!c.pg(&l).in_recovery()?, "{l} is still in recovery");
            Ok(l)
        },
    )?;
    let promoted = since(t0);
    c.wait(
        &format!("new connections through the primary port to reach {new}"),
        Duration::from_secs(30),
        || {
            for _ in 0..3 {
                let (node, rec) = landing(&c, &h.primary())?;
                ensure!(node == new && !rec, "reached {node} (recovery {rec})");
            }
            Ok(())
        },
    )?;
    let routed = since(t0);
    let bound = (INTER_SECS * FALL + loop_wait) as f64 + 3.0;
    report(&format!(
        "haproxy: switchover {old} -> {new}: promoted after {promoted:.1}s, HAProxy routes new \
         connections to it after {routed:.1}s ({:.1}s after the promotion; bound inter*fall + \
         loop_wait + 3s = {bound:.0}s)",
        routed - promoted
    ));
    ensure!(
        routed - promoted <= bound,
        "HAProxy took {:.1}s after the promotion (> {bound}s)",
        routed - promoted
    );
    h.primary().sql("INSERT INTO hp VALUES (2)")?;
    ensure!(
        c.pg(&new).sql_one("SELECT count(*) FROM hp")?.as_deref() == Some("2"),
        "the write after the switchover is not on {new}"
    );

    // The old leader rejoins; the replica port again reaches only load-balanced replicas.
    c.wait_streaming(2, Duration::from_secs(60))?;
    check_replica_port(&c, &h, &replicas_for_load(&c, &new))?;
    c.wait(
        "metrics to follow the switchover",
        Duration::from_secs(20),
        || {
            check_metrics(&c, &new, true)?;
            check_metrics(&c, &old, false)
        },
    )?;
    report(&format!(
        "haproxy: replica port reached only {:?} ({NOLB} has noloadbalance); /metrics flipped",
        replicas_for_load(&c, &new)
    ));
    drop(h);
    c.pass();
    Ok(())
}
