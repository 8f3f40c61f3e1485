//! (d) SIGTERM of the leader's agent while a client inserts one row per transaction: a replica
//! leads within 2·loop_wait + 1 s of the old agent's exit, every acknowledged row is on the new
//! leader, and the old leader's postgres is stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions, PgConn, PgEndpoint, Signal};

use crate::common::{ids, secs, skip};

#[derive(Default)]
struct Acks {
    /// id -> node that acknowledged it.
    acked: BTreeMap<i64, String>,
    failed_attempts: usize,
}

/// Inserts ids 1, 2, ... one per autocommit transaction into `sig(id)` on whichever node is
/// writable, recording every acknowledged id. Stops on `stop` or after 180 s.
struct Inserter {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Acks>>,
    count: Arc<AtomicUsize>,
    handle: Option<JoinHandle<()>>,
}

impl Inserter {
    fn start(nodes: Vec<PgEndpoint>) -> Inserter {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Acks::default()));
        let count = Arc::new(AtomicUsize::new(0));
        let (s, a, n) = (stop.clone(), acks.clone(), count.clone());
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let mut conn: Option<(String, PgConn)> = None;
            let mut id = 0i64;
            while !s.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(180) {
                if conn.is_none() {
                    conn = nodes.iter().find_map(|ep| {
                        let c = ep.connect().ok()?;
                        (c.one("SELECT pg_is_in_recovery()").ok()?.as_deref() == Some("f"))
                            .then(|| (ep.name.clone(), c))
                    });
                    if conn.is_none() {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                }
                id += 1;
                let (name, c) = conn.as_ref().expect("connected above");
                match c.query(&format!("INSERT INTO sig(id) VALUES ({id})")) {
                    Ok(_) => {
                        a.lock().unwrap().acked.insert(id, name.clone());
                        n.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => {
                        a.lock().unwrap().failed_attempts += 1;
                        conn = None;
                    }
                }
            }
        });
        Inserter {
            stop,
            acks,
            count,
            handle: Some(handle),
        }
    }

    fn acked_on(&self, node: &str) -> usize {
        self.acks
            .lock()
            .unwrap()
            .acked
            .values()
            .filter(|n| *n == node)
            .count()
    }

    fn finish(mut self) -> Acks {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        std::mem::take(&mut *self.acks.lock().unwrap())
    }
}

impl Drop for Inserter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn sigterm_of_leader_agent_loses_no_acknowledged_row() -> Result<()> {
    if skip("sigterm_of_leader_agent_loses_no_acknowledged_row") {
        return Ok(());
    }
    let opts = ClusterOptions::default();
    let bound = 2 * opts.loop_wait + 1;
    let c = Cluster::start_healthy(opts)?;
    let old = c.leader_name()?.ok_or_else(|| anyhow!("no leader"))?;
    c.pg(&old).sql("CREATE TABLE sig(id bigint PRIMARY KEY)")?;

    let endpoints: Vec<PgEndpoint> = c.node_names().iter().map(|n| c.pg(n)).collect();
    let ins = Inserter::start(endpoints);
    c.wait(
        "the client to insert 20 rows",
        Duration::from_secs(30),
        || {
            let n = ins.count.load(Ordering::Relaxed);
            ensure!(n >= 20, "{n} rows acknowledged");
            Ok(())
        },
    )?;

    c.kill_agent(&old, Signal::SIGTERM)?;
    let t_sig = Instant::now();
    let status = c.wait_agent_exit(&old, Duration::from_secs(60))?;
    let t_exit = Instant::now();
    report(&format!(
        "sigterm: agent of {old} exited ({status}) {:.1}s after SIGTERM; {} rows acknowledged so far",
        secs(t_exit - t_sig),
        ins.count.load(Ordering::Relaxed)
    ));

    let new = c.wait("a replica to lead", Duration::from_secs(60), || {
        let l = c.leader_name()?.ok_or_else(|| anyhow!("no leader key"))?;
        ensure!(l != old, "leader key still names {old}");
        ensure!(
            !c.pg(&l).in_recovery()?,
            "{l} holds the key but is still in recovery"
        );
        Ok(l)
    })?;
    let took = t_exit.elapsed();
    report(&format!(
        "sigterm: {new} leads {:.1}s after the old agent exited (2*loop_wait + 1 = {bound}s)",
        secs(took)
    ));

    c.wait(
        &format!("the client to write on {new}"),
        Duration::from_secs(30),
        || {
            let n = ins.acked_on(&new);
            ensure!(n >= 5, "{n} rows acknowledged by {new}");
            Ok(())
        },
    )?;
    let acks = ins.finish();
    let acked: BTreeSet<i64> = acks.acked.keys().copied().collect();
    let on_old = acks.acked.values().filter(|n| **n == old).count();
    let have = ids(&c.pg(&new), "sig")?;
    let lost: Vec<i64> = acked.difference(&have).copied().collect();
    report(&format!(
        "sigterm: {} rows acknowledged ({on_old} by {old}), {} failed attempts, {} lost",
        acked.len(),
        acks.failed_attempts,
        lost.len()
    ));
    ensure!(
        lost.is_empty(),
        "acknowledged rows missing on the new leader {new}: {lost:?}"
    );
    ensure!(
        took <= Duration::from_secs(10),
        "new leader only after {:.1}s (> 10s)",
        secs(took)
    );

    // The old leader's postgres is down.
    ensure!(
        c.postmaster_pid(&old).is_none(),
        "postgres of {old} still runs after its agent's SIGTERM"
    );
    ensure!(
        c.pg(&old).connect().is_err(),
        "postgres of {old} still accepts connections"
    );
    // The remaining replica follows the new leader.
    c.wait_streaming(1, Duration::from_secs(60))?;
    c.pass();
    Ok(())
}
