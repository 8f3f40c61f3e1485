//! `synchronous_mode`: the leader names one synchronous standby in
//! `synchronous_standby_names` and, once PostgreSQL reports it `sync`, in the `sync` key
//! exactly as Patroni writes it; `pghactl list` shows it as `Sync Standby`, `/sync` and
//! `/async` answer accordingly. Under a write load, kill -9 of the leader's agent and
//! postmaster (no pause, no help) promotes the synchronous standby and loses no acknowledged
//! write. With `synchronous_mode_strict` and every standby stopped, a commit is not
//! acknowledged until a standby is back.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use pgha_e2e::{report, yaml_set, Cluster, ClusterOptions, Signal};
use serde_json::{json, Value};

use crate::common::{secs, skip, wait_rows};
use crate::ops_common::{leader, list, others, rest_call, wait_healthy_under};
use crate::switchover_writes::{longest_gap, Writer};

/// Waits until the sync key names `leader` and one of the others, PostgreSQL on the leader
/// runs with that standby in `synchronous_standby_names` and reports it `sync`. The standby.
pub(crate) fn wait_sync_standby(c: &Cluster, leader: &str) -> Result<String> {
    c.wait(
        &format!("{leader} with a confirmed synchronous standby"),
        Duration::from_secs(60),
        || {
            let key = c.etcd_json("sync")?;
            ensure!(key["leader"] == leader, "sync key {key}");
            ensure!(key["quorum"] == 0, "sync key {key}");
            let standby = key["sync_standby"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow::anyhow!("sync key {key} names no standby"))?;
            ensure!(
                others(c, leader).contains(&standby),
                "sync key {key} names {standby}"
            );
            let pg = c.pg(leader);
            let names = pg.sql_one("SHOW synchronous_standby_names")?;
            ensure!(
                names.as_deref() == Some(standby.as_str()),
                "synchronous_standby_names = {names:?}, sync key {key}"
            );
            let state = pg.sql_one(&format!(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = '{standby}'"
            ))?;
            ensure!(state.as_deref() == Some("sync"), "{standby}: {state:?}");
            Ok(standby)
        },
    )
}

#[test]
fn synchronous_mode_failover_and_strict() -> Result<()> {
    if skip("synchronous_mode_failover_and_strict") {
        return Ok(());
    }
    let opts = ClusterOptions::default().nodes(3).customize(|_, doc| {
        yaml_set(doc, &["bootstrap", "dcs", "synchronous_mode"], true.into());
    });
    let c = Cluster::start_healthy(opts)?;
    let first = leader(&c)?;
    wait_healthy_under(&c, &first, Duration::from_secs(60))?;
    let sync = wait_sync_standby(&c, &first)?;
    let asynchronous = others(&c, &first)
        .into_iter()
        .find(|n| *n != sync)
        .context("a third node")?;

    // What operators look at: the list role and the health checks HAProxy uses.
    c.wait(
        "list shows the Sync Standby",
        Duration::from_secs(20),
        || {
            let (out, rows) = list(&c)?;
            let role = |n: &str| rows.iter().find(|r| r.member == n).map(|r| r.role.clone());
            ensure!(role(&sync).as_deref() == Some("Sync Standby"), "{out}");
            ensure!(role(&asynchronous).as_deref() == Some("Replica"), "{out}");
            ensure!(role(&first).as_deref() == Some("Leader"), "{out}");
            Ok(())
        },
    )?;
    for (node, path, want) in [
        (&sync, "/sync", 200),
        (&sync, "/async", 503),
        (&asynchronous, "/sync", 503),
        (&asynchronous, "/async", 200),
        (&first, "/sync", 503),
        (&first, "/read-only-sync", 200),
    ] {
        // Health answers come from each agent's last cycle: give the replicas one to see
        // the sync key.
        c.wait(
            &format!("GET {path} on {node}"),
            Duration::from_secs(10),
            || {
                let (code, _) = rest_call(&c, node, "GET", path, None)?;
                ensure!(code == want, "GET {path} on {node}: {code}, want {want}");
                Ok(())
            },
        )?;
    }
    report(&format!(
        "synchronous_mode: {first} leads, {sync} is the sync standby (sync key, synchronous_standby_names, pg_stat_replication, list, /sync)"
    ));

    // kill -9 under load: only the synchronous standby may take over, and it has every
    // acknowledged row.
    c.pg(&first)
        .sql("CREATE TABLE syncw(id bigint PRIMARY KEY)")?;
    let writer = Writer::start_into(
        c.node_names().iter().map(|n| c.pg(n)).collect(),
        "syncw",
        1,
        Duration::from_secs(300),
    );
    std::thread::sleep(Duration::from_secs(3));
    c.kill_agent(&first, Signal::SIGKILL)?;
    c.kill_postmaster(&first, Signal::SIGKILL)?;
    let next = c.wait(
        "a new leader after kill -9",
        Duration::from_secs(60),
        || {
            let l = leader(&c)?;
            ensure!(l != first, "leader key still names {first}");
            ensure!(!c.pg(&l).in_recovery()?, "{l} not promoted yet");
            Ok(l)
        },
    )?;
    ensure!(
        next == sync,
        "{next} took over; only the synchronous standby {sync} may"
    );
    std::thread::sleep(Duration::from_secs(3));
    let log = writer.finish();
    let acked: BTreeSet<i64> = log.iter().filter(|a| a.ok).map(|a| a.id).collect();
    ensure!(acked.len() > 50, "only {} writes acknowledged", acked.len());
    wait_rows(&c, &next, "syncw", &acked, Duration::from_secs(30))?;
    c.start_node(&first)?;
    wait_healthy_under(&c, &next, Duration::from_secs(120))?;
    let sync2 = wait_sync_standby(&c, &next)?;
    for n in others(&c, &next) {
        wait_rows(&c, &n, "syncw", &acked, Duration::from_secs(30))?;
    }
    let (gap, _) = longest_gap(&log);
    report(&format!(
        "synchronous_mode: kill -9 of {first}: {sync} took over, {} acknowledged writes, none lost, write gap {:.1}s; {sync2} is the new sync standby",
        acked.len(),
        secs(gap)
    ));

    // Strict mode with no standby left: a commit is not acknowledged until one is back.
    let (code, text) = rest_call(
        &c,
        &next,
        "PATCH",
        "/config",
        Some(&json!({"synchronous_mode_strict": true})),
    )?;
    ensure!(code == 200, "PATCH /config: {code} {text}");
    let replicas = others(&c, &next);
    for n in &replicas {
        c.kill_agent(n, Signal::SIGTERM)?;
    }
    for n in &replicas {
        c.wait_agent_exit(n, Duration::from_secs(60))?;
    }
    c.wait(
        "synchronous_standby_names = '*' with no standby left",
        Duration::from_secs(30),
        || {
            let names = c.pg(&next).sql_one("SHOW synchronous_standby_names")?;
            ensure!(names.as_deref() == Some("*"), "{names:?}");
            let key: Value = c.etcd_json("sync")?;
            ensure!(key["sync_standby"].is_null(), "sync key {key}");
            Ok(())
        },
    )?;
    let pg = c.pg(&next);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = pg.sql("INSERT INTO syncw(id) VALUES (-1)");
        let _ = tx.send((r.is_ok(), t.elapsed()));
    });
    match rx.recv_timeout(Duration::from_secs(4)) {
        Err(mpsc::RecvTimeoutError::Timeout) => {}
        Ok((ok, took)) => anyhow::bail!(
            "strict mode without standbys answered a commit after {:.1}s (ok: {ok})",
            secs(took)
        ),
        Err(e) => anyhow::bail!("the writer thread: {e}"),
    }
    let back = replicas[0].clone();
    c.start_node(&back)?;
    c.wait(
        "the waiting commit completes once a standby is back",
        Duration::from_secs(90),
        || {
            let n = c
                .pg(&next)
                .sql_one("SELECT count(*) FROM syncw WHERE id = -1")?;
            ensure!(n.as_deref() == Some("1"), "count {n:?}");
            Ok(())
        },
    )?;
    report(&format!(
        "synchronous_mode_strict: with no standby the commit waited; it completed after {back} came back"
    ));
    c.pass();
    Ok(())
}

/// `synchronous_mode: quorum`: `ANY 1 (a,b)` on the leader, the `sync` key with both voters and
/// `quorum: 1`, both replicas `Quorum Standby`; kill -9 of the leader under load: a voter that
/// sees the other one takes over with every acknowledged row.
#[test]
fn quorum_commit_failover() -> Result<()> {
    if skip("quorum_commit_failover") {
        return Ok(());
    }
    let opts = ClusterOptions::default().nodes(3).customize(|_, doc| {
        yaml_set(
            doc,
            &["bootstrap", "dcs", "synchronous_mode"],
            "quorum".into(),
        );
    });
    let c = Cluster::start_healthy(opts)?;
    let first = leader(&c)?;
    wait_healthy_under(&c, &first, Duration::from_secs(60))?;
    let mut voters = others(&c, &first);
    voters.sort();
    let want_key = voters.join(",");
    c.wait(
        "the quorum sync key and ANY 1",
        Duration::from_secs(60),
        || {
            let key = c.etcd_json("sync")?;
            ensure!(
                key["leader"] == first.as_str()
                    && key["quorum"] == 1
                    && key["sync_standby"] == want_key.as_str(),
                "sync key {key}"
            );
            let names = c.pg(&first).sql_one("SHOW synchronous_standby_names")?;
            ensure!(
                names.as_deref() == Some(format!("ANY 1 ({want_key})").as_str()),
                "synchronous_standby_names = {names:?}"
            );
            let (out, rows) = list(&c)?;
            for v in &voters {
                let role = rows
                    .iter()
                    .find(|r| &r.member == v)
                    .map(|r| r.role.as_str());
                ensure!(role == Some("Quorum Standby"), "{out}");
            }
            Ok(())
        },
    )?;
    for v in &voters {
        c.wait(
            &format!("GET /quorum on {v}"),
            Duration::from_secs(10),
            || {
                let (code, _) = rest_call(&c, v, "GET", "/quorum", None)?;
                ensure!(code == 200, "GET /quorum on {v}: {code}");
                Ok(())
            },
        )?;
    }
    report(&format!(
        "quorum: {first} runs ANY 1 ({want_key}), sync key quorum 1, both Quorum Standby"
    ));

    c.pg(&first).sql("CREATE TABLE qw(id bigint PRIMARY KEY)")?;
    let writer = Writer::start_into(
        c.node_names().iter().map(|n| c.pg(n)).collect(),
        "qw",
        1,
        Duration::from_secs(300),
    );
    std::thread::sleep(Duration::from_secs(3));
    c.kill_agent(&first, Signal::SIGKILL)?;
    c.kill_postmaster(&first, Signal::SIGKILL)?;
    let next = c.wait(
        "a new leader after kill -9",
        Duration::from_secs(60),
        || {
            let l = leader(&c)?;
            ensure!(l != first, "leader key still names {first}");
            ensure!(!c.pg(&l).in_recovery()?, "{l} not promoted yet");
            Ok(l)
        },
    )?;
    std::thread::sleep(Duration::from_secs(3));
    let log = writer.finish();
    let acked: BTreeSet<i64> = log.iter().filter(|a| a.ok).map(|a| a.id).collect();
    ensure!(acked.len() > 50, "only {} writes acknowledged", acked.len());
    wait_rows(&c, &next, "qw", &acked, Duration::from_secs(30))?;
    c.start_node(&first)?;
    wait_healthy_under(&c, &next, Duration::from_secs(120))?;
    let (gap, _) = longest_gap(&log);
    report(&format!(
        "quorum: kill -9 of {first}: {next} took over, {} acknowledged writes, none lost, write gap {:.1}s",
        acked.len(),
        secs(gap)
    ));
    c.pass();
    Ok(())
}
