//! The rolling migration: Patroni 4.1.5 agents (from PyPI, in a venv of Debian's python3) and
//! pgha agents on one scope, under a steady write load. node1 runs Patroni and bootstraps;
//! node2 and node3 run pgha (node3 tagged `nofailover`, so every failover has one possible
//! winner and the scenario is deterministic). Both ctls list the mixed cluster; leadership
//! moves Patroni → pgha by `patronictl switchover`, pgha → Patroni by kill -9 of the pgha
//! leader (which then rewinds and follows Patroni), Patroni → pgha by kill -9 of the Patroni
//! leader (Patroni rewinds and follows pgha), and pgha → Patroni by `pghactl switchover`. No
//! acknowledged write is lost (around each kill the writer pauses until the candidate has all
//! WAL: with asynchronous replication the last instant before a kill -9 is not the agents' to
//! protect). When PyPI cannot be reached the scenario is skipped with the
//! reason printed.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use pgha_e2e::{report, yaml_set, Cluster, ClusterOptions, Signal};

use crate::common::{ids, parse_list, primary_timeline, secs, skip, wait_rows};
use crate::ops_common::{ctl_ok, leader, wait_healthy_under};
use crate::patronictl_compat::{ensure_patronictl, patronictl};
use crate::switchover_writes::{longest_gap, Writer};

const MINUTE: Duration = Duration::from_secs(60);

/// Both ctls list the three members with `want` as the leader and the others streaming.
fn lists_agree(c: &Cluster, patronictl_bin: &Path, want: &str) -> Result<()> {
    c.wait(
        &format!("pghactl and patronictl list {want} as leader"),
        MINUTE,
        || {
            for (who, out) in [
                ("pghactl", ctl_ok(c, &["list"], MINUTE)?),
                (
                    "patronictl",
                    patronictl(c, patronictl_bin, &["list"], MINUTE)?,
                ),
            ] {
                let (_, rows) = parse_list(&out)?;
                ensure!(rows.len() == 3, "{who} list: {} rows\n{out}", rows.len());
                for r in &rows {
                    let (role, state) = if r.member == want {
                        ("Leader", "running")
                    } else {
                        ("Replica", "streaming")
                    };
                    ensure!(
                        r.role == role && r.state == state,
                        "{who} list: {} is {} {}\n{out}",
                        r.member,
                        r.role,
                        r.state
                    );
                }
            }
            Ok(())
        },
    )
}

/// kill -9 of `node`'s agent and postmaster; waits for `next` to lead and accept writes.
/// Replication is asynchronous, so a commit acknowledged a moment before the kill may not have
/// reached `next` yet (PostgreSQL's and Patroni's semantics, bounded by
/// `maximum_lag_on_failover`): the writer pauses until `next` has received everything, so the
/// check that no acknowledged write is lost is about the agents, not about that window.
fn kill_leader(c: &Cluster, writer: &Writer, node: &str, next: &str) -> Result<()> {
    writer.pause();
    let caught_up = c.wait(
        &format!("{next} has received all of {node}'s WAL"),
        Duration::from_secs(30),
        || {
            let lsn = c.pg(node).sql_one("SELECT pg_current_wal_lsn()::text")?;
            let got = c
                .pg(next)
                .sql_one("SELECT pg_last_wal_receive_lsn()::text")?;
            ensure!(got == lsn, "{next} received {got:?}, {node} is at {lsn:?}");
            Ok(())
        },
    );
    let killed = caught_up.and_then(|()| {
        c.kill_agent(node, Signal::SIGKILL)?;
        c.kill_postmaster(node, Signal::SIGKILL)
    });
    writer.resume();
    killed?;
    c.wait(
        &format!("{next} promoted after kill -9 of {node}"),
        Duration::from_secs(90),
        || {
            let l = leader(c)?;
            ensure!(l == next, "leader key names {l}");
            ensure!(!c.pg(next).in_recovery()?, "{next} still in recovery");
            Ok(())
        },
    )
}

#[test]
fn mixed_patroni_pgha_cluster() -> Result<()> {
    if skip("mixed_patroni_pgha_cluster") {
        return Ok(());
    }
    let patronictl_bin = match ensure_patronictl()? {
        Ok(b) => b,
        Err(reason) => {
            report(&format!("mixed_patroni_pgha_cluster: SKIPPED: {reason}"));
            return Ok(());
        }
    };
    let patroni = patronictl_bin.with_file_name("patroni");
    let mut opts = ClusterOptions::default()
        .exclusive()
        .nodes(3)
        .customize(|spec, doc| {
            if spec.name == "node3" {
                yaml_set(doc, &["tags", "nofailover"], true.into());
            }
        });
    // Patroni's smallest ttl.
    opts.ttl = 20;
    let c = Cluster::prepare(opts)?;
    c.set_node_program("node1", Some(patroni.clone()));
    c.start_etcd()?;
    c.start_node("node1")?;
    let first = c.wait_for_leader(Duration::from_secs(120))?;
    ensure!(
        first == "node1",
        "{first} bootstrapped, not Patroni's node1"
    );
    c.start_node("node2")?;
    c.start_node("node3")?;
    wait_healthy_under(&c, "node1", Duration::from_secs(180))?;
    lists_agree(&c, &patronictl_bin, "node1")?;
    report("mixed: Patroni node1 leads, pgha node2/node3 stream from it; both ctls list it");

    c.pg("node1")
        .sql("CREATE TABLE mixed(id bigint PRIMARY KEY)")?;
    let t0 = std::time::Instant::now();
    let mut phases: Vec<(String, Duration)> = Vec::new();
    let writer = Writer::start_into(
        c.node_names().iter().map(|n| c.pg(n)).collect(),
        "mixed",
        1,
        Duration::from_secs(900),
    );

    // Patroni -> pgha: patronictl switchover.
    phases.push(("patronictl switchover node1 -> node2".into(), t0.elapsed()));
    let scope = c.scope.clone();
    let out = patronictl(
        &c,
        &patronictl_bin,
        &[
            "switchover",
            &scope,
            "--leader",
            "node1",
            "--candidate",
            "node2",
            "--force",
        ],
        MINUTE,
    )?;
    ensure!(
        out.contains("Successfully switched over to \"node2\""),
        "{out}"
    );
    wait_healthy_under(&c, "node2", Duration::from_secs(120))?;
    report("mixed: patronictl switchover to pgha node2; Patroni node1 follows it");

    // pgha -> Patroni: kill -9 of the pgha leader; it comes back, rewinds and follows Patroni.
    let tl = primary_timeline(&c.pg("node2"))?;
    phases.push(("kill -9 of pgha leader node2".into(), t0.elapsed()));
    kill_leader(&c, &writer, "node2", "node1")?;
    let off = c.log_len("node2");
    c.start_node("node2")?;
    let tl1 = wait_healthy_under(&c, "node1", Duration::from_secs(180))?;
    ensure!(tl1 > tl, "timeline {tl1} after the failover, was {tl}");
    report(&format!(
        "mixed: kill -9 of pgha leader node2, Patroni node1 took over; node2 back as replica{}",
        if c.log_since("node2", off).contains("rewind") {
            " (pg_rewind)"
        } else {
            ""
        }
    ));

    // Patroni -> pgha: kill -9 of the Patroni leader; Patroni comes back and follows pgha.
    phases.push(("kill -9 of Patroni leader node1".into(), t0.elapsed()));
    kill_leader(&c, &writer, "node1", "node2")?;
    let off = c.log_len("node1");
    c.start_node("node1")?;
    wait_healthy_under(&c, "node2", Duration::from_secs(180))?;
    report(&format!(
        "mixed: kill -9 of Patroni leader node1, pgha node2 took over; Patroni node1 back as replica{}",
        if c.log_since("node1", off).contains("rewind") {
            " (pg_rewind)"
        } else {
            ""
        }
    ));

    // pgha -> Patroni: pghactl switchover.
    phases.push(("pghactl switchover node2 -> node1".into(), t0.elapsed()));
    let out = ctl_ok(
        &c,
        &[
            "switchover",
            "--leader",
            "node2",
            "--candidate",
            "node1",
            "--force",
        ],
        MINUTE,
    )?;
    ensure!(
        out.contains("Successfully switched over to \"node1\""),
        "{out}"
    );
    wait_healthy_under(&c, "node1", Duration::from_secs(120))?;
    lists_agree(&c, &patronictl_bin, "node1")?;

    let log = writer.finish();
    let acked: BTreeSet<i64> = log.iter().filter(|a| a.ok).map(|a| a.id).collect();
    ensure!(
        acked.len() > 100,
        "only {} writes acknowledged",
        acked.len()
    );
    for n in c.node_names() {
        if let Err(e) = wait_rows(&c, &n, "mixed", &acked, MINUTE) {
            let have = ids(&c.pg(&n), "mixed").unwrap_or_default();
            let lost: Vec<String> = log
                .iter()
                .filter(|a| a.ok && !have.contains(&a.id))
                .take(10)
                .map(|a| format!("{} acked by {} at {:.2}s", a.id, a.node, secs(a.at)))
                .collect();
            anyhow::bail!("{e:#}\nlost on {n}: {lost:?}\nphases: {phases:?}");
        }
    }
    let (gap, _) = longest_gap(&log);
    report(&format!(
        "mixed: pghactl switchover back to Patroni node1; {} acknowledged writes, none lost, longest write gap {:.1}s",
        acked.len(),
        secs(gap)
    ));
    c.pass();
    Ok(())
}
