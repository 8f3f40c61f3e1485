//! A frozen leader, as the field reports freeze it: SIGSTOP of the leader's agent for 2×ttl
//! (its postgres keeps running), then SIGSTOP of the next leader's postmaster for 2×ttl, under a
//! write load in synchronous mode, with a probe that tries a write on every node every 100 ms.
//!
//! (a) The frozen agent cannot renew its lease, so its lease guard kills postgres before the
//!     lease expires: the old leader's last acknowledged write comes before the new leader's
//!     first, and the guard says so in the agent's log.
//! (b) A stopped postmaster is killed, backends and all, before its agent gives up the lock.
//! After each freeze the frozen node heals and streams from the new leader again, and no
//! acknowledged write is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use pgha_e2e::{report, yaml_set, Cluster, ClusterOptions, PgEndpoint, Signal};

use crate::common::{ids, secs, skip};
use crate::ops_common::{leader, wait_healthy_under};
use crate::switchover_writes::{Attempt, Writer};
use crate::sync_mode::wait_sync_standby;

/// Successful probe writes: node → times (since the probe started) its INSERT committed.
type Commits = Arc<Mutex<BTreeMap<String, Vec<Duration>>>>;

/// Tries an INSERT on every node every 100 ms (a fresh connection each time, 1 s to answer:
/// a commit waiting for a synchronous standby that never comes is not a write).
struct Probe {
    started: Instant,
    stop: Arc<AtomicBool>,
    commits: Commits,
    handles: Vec<JoinHandle<()>>,
}

impl Probe {
    fn start(nodes: Vec<PgEndpoint>, bound: Duration) -> Probe {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let commits: Commits = Arc::default();
        let handles = nodes
            .into_iter()
            .map(|ep| {
                let (stop, commits) = (stop.clone(), commits.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < bound {
                        let ok = ep.connect().is_ok_and(|c| {
                            c.query_within(
                                &format!("INSERT INTO fence_probe(node) VALUES ('{}')", ep.name),
                                Duration::from_secs(1),
                            )
                            .is_ok()
                        });
                        if ok {
                            let mut m = commits.lock().unwrap();
                            m.entry(ep.name.clone())
                                .or_default()
                                .push(started.elapsed());
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })
            })
            .collect();
        Probe {
            started,
            stop,
            commits,
            handles,
        }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// In [from, to): the last commit on `old`, and the first on any other node.
    fn handover(
        &self,
        from: Duration,
        to: Duration,
        old: &str,
    ) -> (Option<Duration>, Option<(String, Duration)>) {
        let m = self.commits.lock().unwrap();
        let within = |t: &&Duration| **t >= from && **t < to;
        let last_old = m
            .get(old)
            .and_then(|v| v.iter().filter(within).max().copied());
        let first_new = m
            .iter()
            .filter(|(n, _)| n.as_str() != old)
            .filter_map(|(n, v)| v.iter().find(within).map(|t| (n.clone(), *t)))
            .min_by_key(|(_, t)| *t);
        (last_old, first_new)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// In [from, to): the writer's last commit on `node`, and its first on another node.
fn writer_handover(
    log: &[Attempt],
    node: &str,
    from: Duration,
    to: Duration,
) -> (Option<Duration>, Option<Duration>) {
    let within = |a: &&Attempt| a.ok && a.at >= from && a.at < to;
    let last = log
        .iter()
        .filter(within)
        .filter(|a| a.node == node)
        .map(|a| a.at)
        .max();
    let first = log
        .iter()
        .filter(within)
        .filter(|a| a.node != node)
        .map(|a| a.at)
        .min();
    (last, first)
}

/// The start time of a live `pid` (a zombie is dead: nobody may have reaped it yet).
fn proc_start(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19).map(|s| s.to_string())
}

/// SIGCONT `pid` only if it still is the process that started at `start`.
fn cont_if_same(pid: i32, start: &Option<String>) {
    if start.is_some() && proc_start(pid) == *start {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGCONT);
    }
}

/// Waits for a leader other than `old` that takes writes, then for every node (the frozen one
/// included) to stream from it.
fn wait_new_leader_and_heal(c: &Cluster, old: &str, within: Duration) -> Result<String> {
    let new = c.wait("a new leader", within, || {
        let l = leader(c)?;
        ensure!(l != old, "the leader key still names {old}");
        ensure!(!c.pg(&l).in_recovery()?, "{l} is still in recovery");
        Ok(l)
    })?;
    wait_healthy_under(c, &new, within)?;
    Ok(new)
}

/// In [from, to): `old` took no write (probe's or writer's) after another node took one.
fn check_handover(
    probe: &Probe,
    log: &[Attempt],
    old: &str,
    (from, to): (Duration, Duration),
    what: &str,
) -> Result<()> {
    let (last_old, first_new) = probe.handover(from, to, old);
    let (new_node, first_new) =
        first_new.ok_or_else(|| anyhow!("{what}: no other node ever took a probe write"))?;
    if let Some(last_old) = last_old {
        ensure!(
            last_old < first_new,
            "{what}: {old} took a probe write at {:.2}s, after {new_node} took one at {:.2}s: two writable primaries",
            secs(last_old),
            secs(first_new)
        );
    }
    if let (Some(l), Some(f)) = writer_handover(log, old, from, to) {
        ensure!(
            l < f,
            "{what}: the writer's last commit on {old} ({:.2}s) came after its first on another node ({:.2}s)",
            secs(l),
            secs(f)
        );
    }
    report(&format!(
        "frozen leader, {what}: {old}'s last probe write {}, {new_node}'s first {:.2}s after the freeze",
        last_old.map_or("none after the freeze".to_string(), |t| format!(
            "{:.2}s after the freeze",
            secs(t - from)
        )),
        secs(first_new - from)
    ));
    Ok(())
}

#[test]
fn frozen_agent_and_frozen_postmaster_lose_nothing() -> Result<()> {
    if skip("frozen_agent_and_frozen_postmaster_lose_nothing") {
        return Ok(());
    }
    let opts = ClusterOptions::default().customize(|_, doc| {
        yaml_set(doc, &["bootstrap", "dcs", "synchronous_mode"], true.into());
    });
    let ttl = Duration::from_secs(opts.ttl);
    let c = Cluster::start_healthy(opts)?;
    let first = leader(&c)?;
    wait_healthy_under(&c, &first, Duration::from_secs(60))?;
    // Until the sync key names a standby nobody may take over (Patroni's rule too).
    wait_sync_standby(&c, &first)?;
    c.pg(&first).sql(
        "CREATE TABLE sw(id bigint PRIMARY KEY); CREATE TABLE fence_probe(id bigserial PRIMARY KEY, node text, at timestamptz DEFAULT now())",
    )?;
    let nodes: Vec<PgEndpoint> = c.node_names().iter().map(|n| c.pg(n)).collect();
    let writer = Writer::start_into(nodes.clone(), "sw", 1, Duration::from_secs(300));
    let probe = Probe::start(nodes, Duration::from_secs(300));
    c.wait("the writer's first rows", Duration::from_secs(30), || {
        ensure!(writer.acked_on(&first) >= 20, "not yet 20 rows on {first}");
        Ok(())
    })?;

    // (a) The leader's agent frozen for 2×ttl; postgres left running.
    let log_at = c.log_len(&first);
    let agent = c.agent_pid(&first).context("the leader's agent pid")?;
    let pm = c
        .postmaster_pid(&first)
        .context("the leader's postmaster pid")?;
    let froze_a = probe.now();
    c.kill_agent(&first, Signal::SIGSTOP)?;
    let frozen = Instant::now();
    let second = c.wait("a new leader while the agent is frozen", ttl * 3, || {
        let l = leader(&c)?;
        ensure!(l != first, "the leader key still names {first}");
        ensure!(!c.pg(&l).in_recovery()?, "{l} is still in recovery");
        Ok(l)
    })?;
    ensure!(
        proc_start(pm).is_none(),
        "{first}'s postmaster {pm} still runs after {second} took over"
    );
    std::thread::sleep((ttl * 2).saturating_sub(frozen.elapsed()));
    c.kill_agent(&first, Signal::SIGCONT)?;
    let log = c.log_since(&first, log_at);
    ensure!(
        log.contains("lease guard") && log.contains("killed postgres"),
        "no lease guard line in {first}'s log:\n{}",
        c.log_tail(&first, 40)
    );
    let healed = wait_new_leader_and_heal(&c, &first, Duration::from_secs(90))?;
    wait_sync_standby(&c, &healed)?;
    report(&format!(
        "frozen leader: agent {agent} of {first} stopped for {}s; {healed} leads, {first} streams again",
        (ttl * 2).as_secs()
    ));

    // (b) The new leader's postmaster frozen for 2×ttl.
    let leader_b = leader(&c)?;
    let pm = c.postmaster_pid(&leader_b).context("the postmaster pid")?;
    let pm_start = proc_start(pm);
    let froze_b = probe.now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pm), Signal::SIGSTOP)?;
    let frozen = Instant::now();
    let result = c.wait(
        "a new leader while the postmaster is frozen",
        ttl * 4,
        || {
            let l = leader(&c)?;
            ensure!(l != leader_b, "the leader key still names {leader_b}");
            ensure!(!c.pg(&l).in_recovery()?, "{l} is still in recovery");
            Ok(l)
        },
    );
    let postmaster_survived = proc_start(pm).is_some() && proc_start(pm) == pm_start;
    std::thread::sleep((ttl * 2).saturating_sub(frozen.elapsed()));
    cont_if_same(pm, &pm_start);
    let third = result?;
    ensure!(
        !postmaster_survived,
        "{leader_b}'s stopped postmaster {pm} still existed when {third} took over"
    );
    wait_new_leader_and_heal(&c, &leader_b, Duration::from_secs(90))?;

    // Nothing acknowledged is missing, and no two nodes took writes at once.
    let end = leader(&c)?;
    std::thread::sleep(Duration::from_secs(1));
    let log = writer.finish();
    let stopped = probe.now();
    check_handover(&probe, &log, &first, (froze_a, froze_b), "agent frozen")?;
    check_handover(
        &probe,
        &log,
        &leader_b,
        (froze_b, stopped),
        "postmaster frozen",
    )?;
    let acked: BTreeSet<i64> = log.iter().filter(|a| a.ok).map(|a| a.id).collect();
    let have = ids(&c.pg(&end), "sw")?;
    let lost: Vec<i64> = acked.difference(&have).copied().take(10).collect();
    ensure!(
        lost.is_empty(),
        "acknowledged rows missing on {end} (first 10): {lost:?}"
    );
    report(&format!(
        "frozen leader: {} acknowledged rows, none lost; {third} leads after {leader_b}'s postmaster was frozen",
        acked.len()
    ));
    c.pass();
    Ok(())
}
