//! The `failover_priority` tag: among replicas that are equally advanced the higher priority
//! takes over, in a switchover without a candidate and in an automatic failover after kill -9;
//! a member with priority 0 is never chosen, neither as a switchover candidate (412) nor by a
//! switchover without a candidate.

use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use pgha_e2e::{report, yaml_set, Cluster, ClusterOptions, Signal};
use serde_json::json;

use crate::common::skip;
use crate::ops_common::{leader, others, rest_call, wait_healthy_under};

fn priority_of(name: &str) -> i64 {
    match name {
        "node1" => 1,
        "node2" => 2,
        _ => 3,
    }
}

/// The highest-priority node among `names`.
fn best(names: &[String]) -> String {
    names
        .iter()
        .max_by_key(|n| priority_of(n))
        .cloned()
        .expect("at least one node")
}

/// Waits until every replica has received everything the leader wrote, so the race is decided
/// by priority rather than by position.
fn wait_caught_up(c: &Cluster, leader: &str) -> Result<()> {
    c.wait(
        "every replica at the leader's WAL position",
        Duration::from_secs(30),
        || {
            let lsn = c.pg(leader).sql_one("SELECT pg_current_wal_lsn()::text")?;
            for n in others(c, leader) {
                let got = c.pg(&n).sql_one("SELECT pg_last_wal_receive_lsn()::text")?;
                ensure!(
                    got == lsn,
                    "{n} received up to {got:?}, leader is at {lsn:?}"
                );
            }
            Ok(())
        },
    )
}

#[test]
fn failover_priority() -> Result<()> {
    if skip("failover_priority") {
        return Ok(());
    }
    let opts = ClusterOptions::default().nodes(3).customize(|spec, doc| {
        // An explicit `nofailover` (the harness writes `false`) takes precedence over the
        // priority, as with Patroni: leave it out so the priority decides.
        yaml_set(doc, &["tags", "nofailover"], serde_yaml_ng::Value::Null);
        yaml_set(
            doc,
            &["tags", "failover_priority"],
            priority_of(&spec.name).into(),
        );
    });
    let c = Cluster::start_healthy(opts)?;
    let first = leader(&c)?;
    wait_healthy_under(&c, &first, Duration::from_secs(60))?;

    // 1. Switchover without a candidate: the replicas stop at the same position (the old
    //    leader's shutdown checkpoint), so the higher priority wins.
    let want = best(&others(&c, &first));
    let (code, text) = rest_call(
        &c,
        &first,
        "POST",
        "/switchover",
        Some(&json!({ "leader": first })),
    )?;
    ensure!(code == 200, "switchover without a candidate: {code} {text}");
    let second = c.wait_for_leader(Duration::from_secs(30))?;
    ensure!(
        second == want,
        "switchover without a candidate chose {second}, expected {want} (the higher priority)"
    );
    wait_healthy_under(&c, &second, Duration::from_secs(90))?;
    report(&format!(
        "failover_priority: switchover without candidate from {first} went to {second}"
    ));

    // 2. Automatic failover after kill -9 of the leader's agent and postmaster.
    wait_caught_up(&c, &second)?;
    let want = best(&others(&c, &second));
    c.kill_agent(&second, Signal::SIGKILL)?;
    c.kill_postmaster(&second, Signal::SIGKILL)?;
    let third = c.wait(
        "a new leader after the kill",
        Duration::from_secs(60),
        || {
            let l = leader(&c)?;
            ensure!(l != second, "leader key still names {second}");
            ensure!(!c.pg(&l).in_recovery()?, "{l} not promoted yet");
            Ok(l)
        },
    )?;
    let loser = others(&c, &second)
        .into_iter()
        .find(|n| *n != third)
        .ok_or_else(|| anyhow!("no third node"))?;
    ensure!(
        third == want,
        "failover chose {third} (priority {}) over {loser} (priority {}): {}",
        priority_of(&third),
        priority_of(&loser),
        c.log_tail(&loser, 20)
    );
    report(&format!(
        "failover_priority: after kill -9 of {second}, {third} took over"
    ));

    // 3. The killed node comes back with failover_priority 0: never a candidate.
    let path = c.config_path(&second);
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path:?}"))?;
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
    yaml_set(&mut doc, &["tags", "failover_priority"], 0.into());
    c.write_config(&second, &serde_yaml_ng::to_string(&doc)?)?;
    c.start_node(&second)?;
    wait_healthy_under(&c, &third, Duration::from_secs(120))?;
    let (code, text) = rest_call(
        &c,
        &third,
        "POST",
        "/switchover",
        Some(&json!({ "leader": third, "candidate": second })),
    )?;
    ensure!(
        code == 412,
        "switchover to a member with failover_priority 0 was not refused: {code} {text}"
    );
    ensure!(leader(&c)? == third, "a refused switchover moved the lock");
    let (code, text) = rest_call(
        &c,
        &third,
        "POST",
        "/switchover",
        Some(&json!({ "leader": third })),
    )?;
    ensure!(code == 200, "switchover without a candidate: {code} {text}");
    let fourth = c.wait(
        "a new leader after the switchover without a candidate",
        Duration::from_secs(30),
        || {
            let l = leader(&c)?;
            ensure!(l != third, "leader key still names {third}");
            Ok(l)
        },
    )?;
    ensure!(
        fourth == loser,
        "switchover without a candidate chose {fourth}; only {loser} may promote. {fourth}'s log:\n{}",
        c.log_tail(&fourth, 40)
    );
    wait_healthy_under(&c, &fourth, Duration::from_secs(90))?;
    let m = c.etcd_json(&format!("members/{second}"))?;
    ensure!(
        m["tags"]["failover_priority"] == 0,
        "members/{second} does not publish its priority: {m}"
    );
    c.pass();
    Ok(())
}
