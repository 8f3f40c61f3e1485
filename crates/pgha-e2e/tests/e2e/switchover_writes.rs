//! Switchover under a steady write load, as the seed procedure runs it with `patronictl
//! switchover`: a client inserts one row per transaction every ~10 ms into whichever node is
//! primary; `pghactl switchover --leader L --candidate C --force` moves the leadership; no
//! acknowledged row is lost, the old leader streams from C on the new timeline without
//! pg_rewind, and the write-unavailability window is reported. Then the same switchover
//! answered interactively on stdin (`Primary [C]:`, `Candidate [...] []:`, `When ... [now]:`,
//! `Are you sure ...? [y/N]:`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions, PgConn, PgEndpoint};

use crate::common::{ids, primary_timeline, secs, skip, wal_receiver};
use crate::ops_common::{both, ctl_io, leader, others, wait_healthy_under};

/// One INSERT attempt: when (since the client started), where, and whether it committed.
pub(crate) struct Attempt {
    pub(crate) at: Duration,
    pub(crate) id: i64,
    pub(crate) node: String,
    pub(crate) ok: bool,
}

/// Inserts ids 1, 2, ... into `sw`, one per autocommit transaction, ~every 10 ms, on the first
/// node that answers as a primary; reconnects (trying every node) after any failure.
pub(crate) struct Writer {
    started: Instant,
    stop: Arc<AtomicBool>,
    /// While set, no new INSERT starts (one in flight finishes and is logged).
    paused: Arc<AtomicBool>,
    /// Set by the writer thread while it is between inserts.
    idle: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Attempt>>>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(nodes: Vec<PgEndpoint>) -> Writer {
        Writer::start_into(nodes, "sw", 1, Duration::from_secs(240))
    }

    /// Inserts `first_id`, `first_id + 1`, ... into `table` for at most `bound`.
    pub(crate) fn start_into(
        nodes: Vec<PgEndpoint>,
        table: &str,
        first_id: i64,
        bound: Duration,
    ) -> Writer {
        let table = table.to_string();
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let paused = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicBool::new(true));
        let (s, l) = (stop.clone(), log.clone());
        let (p, i) = (paused.clone(), idle.clone());
        let handle = std::thread::spawn(move || {
            let mut conn: Option<(String, PgConn)> = None;
            let mut id = first_id - 1;
            // Bounded: the scenario finishes well within this.
            while !s.load(Ordering::Relaxed) && started.elapsed() < bound {
                // Busy before looking at `paused`, so `pause` never returns while an insert
                // is about to start.
                i.store(false, Ordering::SeqCst);
                if p.load(Ordering::SeqCst) {
                    i.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                if conn.is_none() {
                    conn = nodes.iter().find_map(|ep| {
                        let c = ep.connect().ok()?;
                        (c.one("SELECT pg_is_in_recovery()").ok()?.as_deref() == Some("f"))
                            .then(|| (ep.name.clone(), c))
                    });
                    if conn.is_none() {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                }
                id += 1;
                let (name, c) = conn.as_ref().expect("connected above");
                let ok = c
                    .query(&format!("INSERT INTO {table}(id) VALUES ({id})"))
                    .is_ok();
                l.lock().unwrap().push(Attempt {
                    at: started.elapsed(),
                    id,
                    node: name.clone(),
                    ok,
                });
                if !ok {
                    conn = None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Writer {
            started,
            stop,
            paused,
            idle,
            log,
            handle: Some(handle),
        }
    }

    /// Stops starting inserts and waits (bounded) until none is in flight.
    pub(crate) fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        let t = Instant::now();
        while !self.idle.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub(crate) fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    pub(crate) fn acked_on(&self, node: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().filter(|a| a.ok && a.node == node).count()
    }

    pub(crate) fn finish(mut self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The longest time between two consecutive acknowledged inserts: (gap, its start).
pub(crate) fn longest_gap(log: &[Attempt]) -> (Duration, Duration) {
    let oks: Vec<Duration> = log.iter().filter(|a| a.ok).map(|a| a.at).collect();
    oks.windows(2)
        .map(|w| (w[1] - w[0], w[0]))
        .max()
        .unwrap_or_default()
}

#[test]
fn switchover_under_writes() -> Result<()> {
    if skip("switchover_under_writes") {
        return Ok(());
    }
    let opts = ClusterOptions::default();
    let loop_wait = opts.loop_wait;
    let c = Cluster::start_healthy(opts)?;
    let old = leader(&c)?;
    let cand = others(&c, &old)[0].clone();
    let old_tl = wait_healthy_under(&c, &old, Duration::from_secs(60))?;
    c.pg(&old).sql("CREATE TABLE sw(id bigint PRIMARY KEY)")?;

    let writer = Writer::start(c.node_names().iter().map(|n| c.pg(n)).collect());
    c.wait(
        "the client to insert 50 rows",
        Duration::from_secs(30),
        || {
            let n = writer.acked_on(&old);
            ensure!(n >= 50, "{n} rows acknowledged");
            Ok(())
        },
    )?;

    let mark = c.log_len(&old);
    let t_cmd = writer.started.elapsed();
    let out = ctl_io(
        &c,
        &[
            "switchover",
            "--leader",
            &old,
            "--candidate",
            &cand,
            "--force",
        ],
        None,
        Duration::from_secs(60),
    )?;
    let t_done = writer.started.elapsed();
    let text = both(&out);
    ensure!(out.status.success(), "pghactl switchover failed: {text}");
    ensure!(
        text.contains(&format!("Successfully switched over to \"{cand}\"")),
        "no success line: {text}"
    );
    ensure!(
        text.contains("Current cluster topology") && text.contains(" Cluster: "),
        "no topology table: {text}"
    );

    c.wait(
        &format!("the client to write on {cand}"),
        Duration::from_secs(30),
        || {
            ensure!(leader(&c)? == cand, "leader key is not {cand}");
            let n = writer.acked_on(&cand);
            ensure!(n >= 50, "{n} rows acknowledged by {cand}");
            Ok(())
        },
    )?;
    let log = writer.finish();
    let acked: BTreeSet<i64> = log.iter().filter(|a| a.ok).map(|a| a.id).collect();
    let failed: Vec<&Attempt> = log.iter().filter(|a| !a.ok).collect();
    let have = ids(&c.pg(&cand), "sw")?;
    let lost: Vec<i64> = acked.difference(&have).copied().collect();
    let (gap, gap_at) = longest_gap(&log);
    report(&format!(
        "switchover: {old} -> {cand}: command took {:.2}s; longest gap between acknowledged inserts \
         {:.3}s (starting {:+.2}s after the command); {} acknowledged, {} failed attempts \
         (first at {:+.2}s, last at {:+.2}s), {} lost",
        secs(t_done - t_cmd),
        secs(gap),
        secs(gap_at) - secs(t_cmd),
        acked.len(),
        failed.len(),
        failed.first().map_or(0.0, |a| secs(a.at) - secs(t_cmd)),
        failed.last().map_or(0.0, |a| secs(a.at) - secs(t_cmd)),
        lost.len()
    ));
    ensure!(
        lost.is_empty(),
        "acknowledged rows missing on the new leader {cand}: {lost:?}"
    );
    ensure!(
        gap < Duration::from_secs(20),
        "writes were unavailable for {:.1}s",
        secs(gap)
    );

    // The old leader follows C on the new timeline, without pg_rewind (a clean demotion).
    let new_tl = primary_timeline(&c.pg(&cand))?;
    ensure!(new_tl > old_tl, "timeline {old_tl} -> {new_tl}");
    wait_healthy_under(&c, &cand, Duration::from_secs(60 + 10 * loop_wait))?;
    let (status, tli) = wal_receiver(&c.pg(&old))?;
    ensure!(
        status == "streaming" && tli == new_tl,
        "{old}: {status} on {tli}"
    );
    let old_log = c.log_since(&old, mark);
    ensure!(
        !old_log.contains("running pg_rewind"),
        "{old} ran pg_rewind after a clean switchover:\n{old_log}"
    );

    // Interactively: the defaults for the leader and the time, the candidate typed in.
    let back = others(&c, &cand)
        .into_iter()
        .find(|n| *n != old)
        .expect("a third node");
    let answers = format!("\n{back}\nnow\ny\n");
    let out = ctl_io(&c, &["switchover"], Some(&answers), Duration::from_secs(60))?;
    let text = both(&out);
    ensure!(
        out.status.success(),
        "interactive switchover failed: {text}"
    );
    for want in [
        format!("Primary [{cand}]: "),
        "Candidate ['".to_string(),
        "When should the switchover take place (e.g. ".to_string(),
        format!("Are you sure you want to switchover cluster {}, demoting current leader {cand}? [y/N]: ", c.scope),
        format!("Successfully switched over to \"{back}\""),
        "| Member ".to_string(),
    ] {
        ensure!(text.contains(&want), "no {want:?} in: {text}");
    }
    let tl = wait_healthy_under(&c, &back, Duration::from_secs(60))?;
    ensure!(tl > new_tl, "timeline {new_tl} -> {tl}");
    report(&format!(
        "switchover: interactive {cand} -> {back} done, timeline {tl}"
    ));
    c.pass();
    Ok(())
}
