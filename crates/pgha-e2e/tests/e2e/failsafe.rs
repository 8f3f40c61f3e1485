//! `failsafe_mode`: with three nodes and `failsafe_mode: true`, the leader keeps the
//! `failsafe` key (every member's api_url, as Patroni writes it; `GET /failsafe` shows it on
//! every node). Under a write load etcd is killed for 30 s (three times ttl): the primary keeps
//! accepting writes because both replicas answer its `POST /failsafe`; no second primary, no
//! acknowledged write lost, `GET /patroni` says `failsafe_mode_is_active` and `/metrics`
//! `patroni_failsafe_mode_is_active 1`. etcd back: the same leader, failsafe inactive, both
//! replicas streaming. Then etcd is killed again and, mid-outage, one replica's agent and
//! postgres are killed: the primary can no longer hear from every member and demotes.
//!
//! Partitions (through cuttable loopback TCP relays in front of etcd and the REST APIs): only
//! the leader loses etcd for 25 s: its leader key expires, yet no replica takes over because
//! the leader keeps pinging them, and it takes the key back when etcd returns. Then the leader
//! loses etcd and one replica's REST API: it demotes before any replica can promote, never two
//! writable nodes at once, no acknowledged write lost.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// A loopback TCP relay to `127.0.0.1:target` that can be cut (open connections are shut down,
/// new ones closed at once) and healed: a network partition between one node and one service.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: u16) -> Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (c, st, o) = (cut.clone(), stop.clone(), open.clone());
        let addr = SocketAddr::from(([127, 0, 0, 1], target));
        // Ends when the relay is dropped.
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the peer sees the connection closed
                }
                let Ok(server) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let pair = (
                    client.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                );
                let (Ok(c1), Ok(s1), Ok(c2), Ok(s2)) = pair else {
                    continue;
                };
                o.lock().unwrap().extend([client, server]);
                // Each ends when either side closes or the relay shuts the sockets down.
                std::thread::spawn(move || pipe(c1, s1));
                std::thread::spawn(move || pipe(s2, c2));
            }
        });
        Ok(Relay {
            port,
            cut,
            stop,
            open,
        })
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Per node: a relay in front of etcd (its only etcd endpoint) and one in front of its REST API
/// (its advertised `connect_address`, so every other member reaches it through the relay).
struct NodeRelays {
    etcd: Relay,
    rest: Relay,
}

type Relays = Arc<Mutex<BTreeMap<String, NodeRelays>>>;

fn relays_of<'a>(m: &'a BTreeMap<String, NodeRelays>, node: &str) -> Result<&'a NodeRelays> {
    m.get(node)
        .ok_or_else(|| anyhow!("no relays for {node} (could not bind a port?)"))
}

#[test]
fn failsafe_mode_under_partitions_of_the_leader() -> Result<()> {
    if skip("failsafe_mode_under_partitions_of_the_leader") {
        return Ok(());
    }
    let relays: Relays = Arc::default();
    let r = relays.clone();
    let opts = ClusterOptions::default()
        .nodes(3)
        .customize(move |spec, doc| {
            yaml_set(doc, &["bootstrap", "dcs", "failsafe_mode"], true.into());
            let mut m = r.lock().unwrap();
            if !m.contains_key(&spec.name) {
                if let (Ok(etcd), Ok(rest)) = (
                    Relay::start(spec.etcd_client_port),
                    Relay::start(spec.rest_port),
                ) {
                    m.insert(spec.name.clone(), NodeRelays { etcd, rest });
                }
            }
            if let Some(nr) = m.get(&spec.name) {
                let hosts = vec![serde_yaml_ng::Value::from(format!(
                    "127.0.0.1:{}",
                    nr.etcd.port
                ))];
                yaml_set(
                    doc,
                    &["etcd3", "hosts"],
                    serde_yaml_ng::Value::Sequence(hosts),
                );
                yaml_set(
                    doc,
                    &["restapi", "connect_address"],
                    format!("127.0.0.1:{}", nr.rest.port).into(),
                );
            }
        });
    let ttl = opts.ttl;
    let c = Cluster::start_healthy(opts)?;
    let l = leader(&c)?;
    c.wait("the failsafe key", Duration::from_secs(20), || {
        let key = c.etcd_json("failsafe")?;
        ensure!(
            key.as_object().is_some_and(|m| m.len() == 3),
            "failsafe key {key}"
        );
        Ok(())
    })?;
    c.pg(&l).sql("CREATE TABLE fp(id bigint PRIMARY KEY)")?;
    let writer = Writer::start_into(
        c.node_names().iter().map(|n| c.pg(n)).collect(),
        "fp",
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

    // Only the leader loses etcd. Its key expires after ttl; the replicas still see etcd but
    // keep following it while it pings them.
    relays_of(&relays.lock().unwrap(), &l)?.etcd.cut();
    let t0 = Instant::now();
    let cut_at = w0.elapsed();
    report(&format!("failsafe partition: {l} cut off from etcd"));
    let mut key_gone = None;
    while t0.elapsed() < Duration::from_secs(25) {
        let w = writable(&c);
        ensure!(
            w == vec![l.clone()],
            "{:.1}s into the partition the writable nodes are {w:?} (leader {l})",
            secs(t0.elapsed())
        );
        if key_gone.is_none() && c.etcd_get("leader")?.is_none() {
            key_gone = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let key_gone = key_gone.ok_or_else(|| anyhow!("the leader key never expired"))?;
    ensure!(
        c.etcd_get("leader")?.is_none(),
        "someone took the leader key: {:?}",
        c.etcd_get("leader")?
    );
    ensure!(failsafe_active(&c, &l) == Some(true), "not active on {l}");
    for r in others(&c, &l) {
        ensure!(
            failsafe_active(&c, &r) == Some(true),
            "failsafe not active on {r}"
        );
    }
    report(&format!(
        "failsafe partition: {l}'s leader key expired {:.1}s after the cut; {l} stayed the only writable node for 25s, the replicas followed it",
        secs(key_gone)
    ));
    relays_of(&relays.lock().unwrap(), &l)?.etcd.heal();
    let t1 = Instant::now();
    c.wait(
        "the leader to take its key back, replicas streaming",
        Duration::from_secs(45),
        || {
            let now = leader(&c)?;
            ensure!(now == l, "leader {now}");
            c.wait_streaming(2, Duration::from_secs(1))?;
            Ok(())
        },
    )?;
    let healed_at = w0.elapsed();
    report(&format!(
        "failsafe partition: healed, {l} holds the key again {:.1}s later",
        secs(t1.elapsed())
    ));

    // The leader loses etcd and the replica `v` (nobody reaches v's REST API): it demotes
    // before `v` or the other replica can promote.
    let v = others(&c, &l)[0].clone();
    {
        let m = relays.lock().unwrap();
        relays_of(&m, &l)?.etcd.cut();
        relays_of(&m, &v)?.rest.cut();
    }
    let t2 = Instant::now();
    let mut demoted = None;
    let mut promoted = None;
    while t2.elapsed() < Duration::from_secs(40) && promoted.is_none() {
        let w = writable(&c);
        ensure!(w.len() <= 1, "two writable nodes: {w:?}");
        if demoted.is_none() && !w.contains(&l) {
            demoted = Some(t2.elapsed());
        }
        if let Some(n) = w.iter().find(|n| **n != l) {
            promoted = Some((n.clone(), t2.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let demoted = demoted.ok_or_else(|| anyhow!("{l} never demoted"))?;
    let (new, promoted_at) = promoted.ok_or_else(|| anyhow!("no replica promoted"))?;
    report(&format!(
        "failsafe partition: {l} cut off from etcd and {v}: demoted after {:.1}s, {new} promoted after {:.1}s (ttl {ttl}s)",
        secs(demoted),
        secs(promoted_at)
    ));
    ensure!(demoted < promoted_at, "promotion before the demotion");
    {
        let m = relays.lock().unwrap();
        relays_of(&m, &l)?.etcd.heal();
        relays_of(&m, &v)?.rest.heal();
    }
    c.wait(
        "one leader, two replicas streaming",
        Duration::from_secs(60),
        || {
            let now = leader(&c)?;
            ensure!(now == new, "leader {now}");
            c.wait_streaming(2, Duration::from_secs(1))?;
            Ok(())
        },
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let log = writer.finish();
    let acked: BTreeSet<i64> = log.iter().filter(|a| a.ok).map(|a| a.id).collect();
    let partition_gap = log
        .iter()
        .filter(|a| a.ok && a.at >= cut_at && a.at <= healed_at)
        .map(|a| a.at)
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    let have = ids(&c.pg(&new), "fp")?;
    let lost: Vec<_> = acked.difference(&have).collect();
    ensure!(lost.is_empty(), "acknowledged rows lost: {lost:?}");
    report(&format!(
        "failsafe partition: {} writes acknowledged, none lost; longest write gap while only {l} was cut off: {:.0} ms",
        acked.len(),
        partition_gap.as_secs_f64() * 1000.0
    ));
    ensure!(
        partition_gap < Duration::from_secs(2),
        "writes stopped for {:.1}s while only the leader was cut off",
        secs(partition_gap)
    );
    c.pass();
    drop(relays);
    Ok(())
}
