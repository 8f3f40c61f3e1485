//! `failsafe_mode`: with three nodes and `failsafe_mode: true`, the leader keeps the
//! `failsafe` key (every member's api_url, as Patroni writes it; `GET /failsafe` shows it on
//! every node). Under a write load etcd is killed for 30 s (three times ttl): the primary keeps
//! accepting writes because both replicas answer its `POST /failsafe`; no second primary, no
//! acknowledged write lost, `GET /patroni` says `failsafe_mode_is_active` and `/metrics`
//! `patroni_failsafe_mode_is_active 1`. etcd back: the same leader, failsafe inactive, both
//! replicas streaming. Then etcd is killed again and, mid-outage, one replica's agent and
//! postgres are killed: the primary can no longer hear from every member and demotes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::{report, yaml_set, Cluster, ClusterOptions, Signal};
use serde_json::{Map, Value};

use crate::common::{ids, secs, skip, wait_rows};
use crate::ops_common::{leader, others};
use crate::switchover_writes::{longest_gap, Writer};

/// `GET /patroni` of `node` says failsafe mode is active (`None`: no answer).
fn failsafe_active(c: &Cluster, node: &str) -> Option<bool> {
    let (code, body) = c.rest(node).get("/patroni").ok()?;
    if code != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    Some(v["failsafe_mode_is_active"] == Value::Bool(true))
}

fn metric_active(c: &Cluster, node: &str) -> Result<bool> {
    let (_, text) = c.rest(node).get("/metrics")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("patroni_failsafe_mode_is_active{"))
        .ok_or_else(|| anyhow!("no patroni_failsafe_mode_is_active in /metrics"))?;
    Ok(line.ends_with(" 1"))
}

/// Nodes whose postgres accepts writes right now.
fn writable(c: &Cluster) -> Vec<String> {
    c.node_names()
        .into_iter()
        .filter(|n| matches!(c.pg(n).in_recovery(), Ok(false)))
        .collect()
}

#[test]
fn failsafe_mode_keeps_the_primary_through_an_etcd_outage() -> Result<()> {
    if skip("failsafe_mode_keeps_the_primary_through_an_etcd_outage") {
        return Ok(());
    }
    let opts = ClusterOptions::default().nodes(3).customize(|_, doc| {
        yaml_set(doc, &["bootstrap", "dcs", "failsafe_mode"], true.into());
    });
    let ttl = opts.ttl;
    let c = Cluster::start_healthy(opts)?;
    let l = leader(&c)?;

    // The failsafe key: every member's api_url.
    let want: Map<String, Value> = c
        .node_names()
        .iter()
        .map(|n| -> Result<(String, Value)> {
            let m = c.etcd_json(&format!("members/{n}"))?;
            Ok((n.clone(), m["api_url"].clone()))
        })
        .collect::<Result<_>>()?;
    c.wait(
        "the failsafe key to list every member",
        Duration::from_secs(20),
        || {
            let key = c.etcd_json("failsafe")?;
            ensure!(key == Value::Object(want.clone()), "failsafe key {key}");
            for n in c.node_names() {
                let (code, body) = c.rest(&n).get("/failsafe")?;
                let got: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                ensure!(
                    code == 200 && got == key,
                    "GET /failsafe on {n}: {code} {body}"
                );
            }
            Ok(())
        },
    )?;
    report(&format!("failsafe: key {}", Value::Object(want.clone())));

    c.pg(&l).sql("CREATE TABLE fs(id bigint PRIMARY KEY)")?;
    let writer = Writer::start_into(
        c.node_names().iter().map(|n| c.pg(n)).collect(),
        "fs",
        1,
        Duration::from_secs(200),
    );
    let w0 = Instant::now();
    c.wait(
        "the client to insert 50 rows",
        Duration::from_secs(30),
        || {
            let n = writer.acked_on(&l);
            ensure!(n >= 50, "{n} rows acknowledged");
            Ok(())
        },
    )?;

    // etcd down for 30 s (ttl is 10): the primary stays.
    let outage = Duration::from_secs(30);
    c.stop_etcd()?;
    let t0 = Instant::now();
    let out_from = w0.elapsed();
    report(&format!("failsafe: etcd killed, leader {l}"));
    c.wait(
        "GET /patroni on the leader to show failsafe_mode_is_active",
        Duration::from_secs(15),
        || {
            ensure!(failsafe_active(&c, &l) == Some(true), "not active yet");
            Ok(())
        },
    )?;
    report(&format!(
        "failsafe: active on {l} {:.1}s after etcd died",
        secs(t0.elapsed())
    ));
    ensure!(
        metric_active(&c, &l)?,
        "patroni_failsafe_mode_is_active is not 1 on {l}"
    );
    // The key as last seen, while etcd is down.
    let (code, body) = c.rest(&l).get("/failsafe")?;
    let got: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    ensure!(
        code == 200 && got == Value::Object(want.clone()),
        "GET /failsafe on {l} during the outage: {code} {body}"
    );
    let mut replicas_active = BTreeSet::new();
    while t0.elapsed() < outage {
        let w = writable(&c);
        ensure!(
            w == vec![l.clone()],
            "{:.1}s into the outage the writable nodes are {w:?} (leader {l})",
            secs(t0.elapsed())
        );
        let (code, _) = c.rest(&l).get("/primary")?;
        ensure!(code == 200, "GET /primary on {l}: {code} during failsafe");
        for r in others(&c, &l) {
            if failsafe_active(&c, &r) == Some(true) {
                replicas_active.insert(r);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    ensure!(
        failsafe_active(&c, &l) == Some(true),
        "failsafe no longer active on {l} at the end of the outage"
    );
    let out_to = w0.elapsed();
    report(&format!(
        "failsafe: {l} stayed the only writable node for {:.0}s without etcd; replicas reporting failsafe active: {replicas_active:?}",
        secs(t0.elapsed())
    ));

    c.start_etcd()?;
    let t1 = Instant::now();
    c.wait(
        "the same leader, failsafe inactive, both replicas streaming",
        Duration::from_secs(45),
        || {
            let now = leader(&c)?;
            ensure!(now == l, "leader {now}");
            ensure!(
                failsafe_active(&c, &l) == Some(false),
                "still active on {l}"
            );
            c.wait_streaming(2, Duration::from_secs(1))?;
            Ok(())
        },
    )?;
    report(&format!(
        "failsafe: etcd back, {l} leads with the lock and both replicas stream {:.1}s later",
        secs(t1.elapsed())
    ));
    std::thread::sleep(Duration::from_secs(1));
    let log = writer.finish();
    let acked: BTreeSet<i64> = log.iter().filter(|a| a.ok).map(|a| a.id).collect();
    let elsewhere: Vec<_> = log.iter().filter(|a| a.ok && a.node != l).collect();
    ensure!(
        elsewhere.is_empty(),
        "{} writes acknowledged by another node than {l}",
        elsewhere.len()
    );
    let ok_during = log
        .iter()
        .filter(|a| a.ok && a.at >= out_from && a.at <= out_to)
        .count();
    let (gap, at) = longest_gap(&log);
    report(&format!(
        "failsafe: {} writes acknowledged in all, {ok_during} during the outage; longest write gap {:.0} ms (at {:.1}s, outage {:.1}s..{:.1}s)",
        acked.len(),
        gap.as_secs_f64() * 1000.0,
        secs(at),
        secs(out_from),
        secs(out_to)
    ));
    ensure!(
        ok_during > 100,
        "only {ok_during} writes acknowledged during the outage"
    );
    ensure!(
        gap < Duration::from_secs(2),
        "writes stopped for {:.1}s",
        secs(gap)
    );
    let have = ids(&c.pg(&l), "fs")?;
    let lost: Vec<_> = acked.difference(&have).collect();
    ensure!(lost.is_empty(), "acknowledged rows lost: {lost:?}");
    for r in others(&c, &l) {
        wait_rows(&c, &r, "fs", &acked, Duration::from_secs(20))?;
    }

    // etcd down again; mid-outage a replica dies: the primary must demote.
    let victim = others(&c, &l)[0].clone();
    c.stop_etcd()?;
    let t2 = Instant::now();
    c.wait(
        "failsafe active on the leader again",
        Duration::from_secs(15),
        || {
            ensure!(failsafe_active(&c, &l) == Some(true), "not active yet");
            Ok(())
        },
    )?;
    c.kill_agent(&victim, Signal::SIGKILL)?;
    c.kill_postmaster(&victim, Signal::SIGKILL)?;
    let t3 = Instant::now();
    report(&format!(
        "failsafe: etcd killed again, {victim} (agent and postgres) killed {:.1}s later",
        secs(t3 - t2)
    ));
    c.wait(
        "the primary to demote",
        Duration::from_secs(ttl + 10),
        || {
            ensure!(
                !matches!(c.pg(&l).in_recovery(), Ok(false)),
                "{l} still accepts writes"
            );
            Ok(())
        },
    )?;
    let took = t3.elapsed();
    report(&format!(
        "failsafe: {l} demoted {:.1}s after {victim} died (ttl {ttl}s)",
        secs(took)
    ));
    ensure!(
        took < Duration::from_secs(ttl),
        "demotion took {:.1}s, not within ttl",
        secs(took)
    );
    ensure!(writable(&c).is_empty(), "writable: {:?}", writable(&c));

    c.start_etcd()?;
    c.start_node(&victim)?;
    let t4 = Instant::now();
    let new = c.wait_for_leader(Duration::from_secs(60))?;
    c.wait_streaming(2, Duration::from_secs(60))?;
    ensure!(
        writable(&c) == vec![new.clone()],
        "writable {:?}",
        writable(&c)
    );
    let have = ids(&c.pg(&new), "fs")?;
    let lost: Vec<_> = acked.difference(&have).collect();
    ensure!(lost.is_empty(), "acknowledged rows lost: {lost:?}");
    report(&format!(
        "failsafe: etcd back, {new} leads, two replicas streaming {:.1}s later",
        secs(t4.elapsed())
    ));
    c.pass();
    Ok(())
}
