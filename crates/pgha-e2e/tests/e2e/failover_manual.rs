//! Manual failover with `pghactl failover --candidate C --force`: on a healthy cluster (the
//! leader hands over: `Successfully failed over to "C"`), then with the leader's agent and
//! postmaster both killed -9 while its leader key is still alive and something else holds its
//! REST port (accepting connections and closing them at once, so nothing proves the leader dead
//! and the replicas wait for its lease; see kill_leader for the fast path): the CLI cannot get
//! an answer from the leader's API, writes the `failover` key instead, and C (not the other
//! replica) takes over once the key expires. The killed node, restarted, follows C.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions, Signal};

use crate::common::{secs, skip};
use crate::ops_common::{both, ctl_io, leader, others, wait_healthy_under};

#[test]
fn failover_dead_leader_agent() -> Result<()> {
    if skip("failover_dead_leader_agent") {
        return Ok(());
    }
    let opts = ClusterOptions::default();
    let ttl = opts.ttl;
    let c = Cluster::start_healthy(opts)?;
    let first = leader(&c)?;
    wait_healthy_under(&c, &first, Duration::from_secs(60))?;

    // Healthy cluster: the leader demotes itself for the candidate.
    let cand = others(&c, &first)[0].clone();
    let out = ctl_io(
        &c,
        &["failover", "--candidate", &cand, "--force"],
        None,
        Duration::from_secs(60),
    )?;
    let text = both(&out);
    ensure!(
        out.status.success() && text.contains(&format!("Successfully failed over to \"{cand}\"")),
        "manual failover on a healthy cluster: {text}"
    );
    wait_healthy_under(&c, &cand, Duration::from_secs(60))?;

    // Dead leader (agent and postgres), leader key still alive, its REST port taken.
    let dead = cand;
    let target = others(&c, &dead)
        .into_iter()
        .find(|n| *n != first)
        .expect("a third node");
    let rest_port = c.rest(&dead).port;
    c.kill_agent(&dead, Signal::SIGKILL)?;
    c.kill_postmaster(&dead, Signal::SIGKILL)?;
    let blocker = PortBlocker::bind(rest_port)?;
    let t_kill = Instant::now();
    let lkv = c.etcd_get_kv("leader")?;
    ensure!(
        lkv.as_ref().is_some_and(|kv| kv.value == dead),
        "the leader key should still name {dead}: {lkv:?}"
    );
    let out = ctl_io(
        &c,
        &["failover", "--candidate", &target, "--force"],
        None,
        Duration::from_secs(60),
    )?;
    let text = both(&out);
    ensure!(out.status.success(), "failover with a dead leader: {text}");
    let via_dcs = text.contains("Could not failover using Patroni api, falling back to DCS");
    let via_api = text.contains(&format!("Successfully failed over to \"{target}\""));
    ensure!(
        via_dcs || via_api,
        "neither the DCS fallback nor a success: {text}"
    );
    report(&format!(
        "failover: CLI against dead leader {dead} ({:.1}s after the kill): {}",
        secs(t_kill.elapsed()),
        if via_dcs {
            "fell back to the failover key"
        } else {
            "answered by an agent"
        }
    ));

    let new = c.wait(
        &format!("{target} to lead after {dead} died"),
        Duration::from_secs(ttl + 30),
        || {
            let l = leader(&c)?;
            ensure!(l != dead, "leader key still names {dead}");
            ensure!(
                !c.pg(&l).in_recovery()?,
                "{l} holds the key but is in recovery"
            );
            Ok(l)
        },
    )?;
    report(&format!(
        "failover: {new} leads {:.1}s after {dead} was killed (ttl {ttl}s)",
        secs(t_kill.elapsed())
    ));
    ensure!(
        new == target,
        "{new} took over instead of the requested {target}"
    );
    for n in others(&c, &dead) {
        if n != new {
            ensure!(c.pg(&n).in_recovery()?, "{n} is not a replica");
        }
    }

    // Restarted right away, while the new leader may still be finishing its promotion: the
    // rejoin must ask the leader for its timeline rather than trust its member key.
    // The dead node comes back as a replica of the candidate.
    drop(blocker);
    c.start_node(&dead)?;
    wait_healthy_under(&c, &target, Duration::from_secs(120))?;
    c.pass();
    Ok(())
}

/// Holds a port: accepts every connection and closes it at once, until dropped.
struct PortBlocker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl PortBlocker {
    fn bind(port: u16) -> Result<PortBlocker> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            // Bounded by the test: it drops the blocker before it ends.
            let started = Instant::now();
            while !s.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(300) {
                match listener.accept() {
                    Ok((conn, _)) => drop(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(PortBlocker {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for PortBlocker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
