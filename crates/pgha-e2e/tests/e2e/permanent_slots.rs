//! Permanent replication slots from `bootstrap.dcs`: a physical one and a logical one
//! (test_decoding) on the leader and on both replicas, their positions in the `status` key,
//! `ignore_slots` protecting a slot made by hand while another one is dropped, bad entries
//! (invalid name, logical without plugin, a name clashing with a member's slot, later an
//! unknown type through edit-config) logged by name and skipped. A consumer reads the logical
//! slot on the leader; after a switchover, and again after a kill -9 failover, the new primary
//! has the slot at (or past) the consumed position and the consumer goes on there, seeing the
//! rows written after it.

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::{report, yaml_set, Cluster, ClusterOptions, PgEndpoint, Signal};
use serde_yaml_ng::Value as Yaml;

use crate::common::{skip, stdout_ok};

/// Slots on `pg` as (name, type, plugin).
fn slots(pg: &PgEndpoint) -> Result<Vec<(String, String, String)>> {
    Ok(pg
        .sql("SELECT slot_name, slot_type, coalesce(plugin, '') FROM pg_replication_slots ORDER BY 1")?
        .into_iter()
        .map(|r| {
            let col = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            (col(0), col(1), col(2))
        })
        .collect())
}

fn has(pg: &PgEndpoint, name: &str, kind: &str) -> Result<bool> {
    Ok(slots(pg)?.iter().any(|(n, t, _)| n == name && t == kind))
}

/// `confirmed_flush_lsn - 0/0` of the logical slot `cdc` on `pg`.
fn cdc_position(pg: &PgEndpoint) -> Result<Option<u64>> {
    Ok(pg
        .sql_one(
            "SELECT pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint FROM pg_replication_slots \
             WHERE slot_name = 'cdc'",
        )?
        .and_then(|v| v.parse().ok()))
}

/// Whether the WAL segment holding the `cdc` slot's restart_lsn is in `pg`'s pg_wal (decoding
/// starts there: without it the slot cannot be used). Computed from file names, as
/// `pg_walfile_name` is not available during recovery; 16 MB segments.
fn copy_has_its_wal(pg: &PgEndpoint) -> Result<bool> {
    let v = pg.sql_one(
        "SELECT EXISTS (SELECT 1 FROM pg_ls_waldir() w, pg_replication_slots s \
           WHERE s.slot_name = 'cdc' AND w.name ~ '^[0-9A-F]{24}$' \
             AND ('x' || substr(w.name, 9, 8))::bit(32)::bigint * 256 \
                 + ('x' || substr(w.name, 17, 8))::bit(32)::bigint \
                 = pg_wal_lsn_diff(s.restart_lsn, '0/0')::bigint / 16777216)",
    )?;
    Ok(v.as_deref() == Some("t"))
}

fn yaml(text: &str) -> Yaml {
    serde_yaml_ng::from_str(text).expect("valid YAML in the scenario")
}

#[test]
fn permanent_slots_survive_switchover_and_failover() -> Result<()> {
    if skip("permanent_slots_survive_switchover_and_failover") {
        return Ok(());
    }
    let opts = ClusterOptions::default().nodes(3).customize(|_, doc| {
        yaml_set(
            doc,
            &["bootstrap", "dcs", "postgresql", "parameters", "wal_level"],
            "logical".into(),
        );
        yaml_set(
            doc,
            &["bootstrap", "dcs", "slots"],
            yaml(
                "phys_keep: {type: physical}\n\
                 cdc: {type: logical, database: postgres, plugin: test_decoding}\n\
                 Bad-Name: {type: physical}\n\
                 half: {type: logical, database: postgres}\n\
                 node2: {type: logical, database: postgres, plugin: test_decoding}\n",
            ),
        );
        yaml_set(
            doc,
            &["bootstrap", "dcs", "ignore_slots"],
            yaml("- {name: keep_me, type: physical}\n"),
        );
    });
    let c = Cluster::prepare(opts)?;
    c.start_etcd()?;
    // node1 bootstraps first so the leader is known.
    c.start_node("node1")?;
    let leader = c.wait_for_leader(Duration::from_secs(90))?;
    ensure!(leader == "node1", "{leader} bootstrapped");
    c.start_node("node2")?;
    c.start_node("node3")?;
    c.wait_streaming(2, Duration::from_secs(120))?;

    // Slots everywhere: the leader creates both, the replicas create the physical one and copy
    // the logical one (restarting once), with hot_standby_feedback on.
    c.wait(
        "permanent slots on the leader and both replicas",
        Duration::from_secs(120),
        || {
            let l = c.pg("node1");
            ensure!(has(&l, "phys_keep", "physical")?, "leader {:?}", slots(&l)?);
            ensure!(has(&l, "cdc", "logical")?, "leader {:?}", slots(&l)?);
            ensure!(has(&l, "node2", "physical")?, "leader {:?}", slots(&l)?);
            for r in ["node2", "node3"] {
                let pg = c.pg(r);
                ensure!(
                    has(&pg, "phys_keep", "physical")? && has(&pg, "cdc", "logical")?,
                    "{r}: {:?}",
                    slots(&pg)?
                );
                ensure!(
                    pg.sql_one("SHOW hot_standby_feedback")?.as_deref() == Some("on"),
                    "{r}: hot_standby_feedback off"
                );
            }
            Ok(())
        },
    )?;
    c.wait_streaming(2, Duration::from_secs(60))?;
    report("permanent_slots: physical and logical slots on the leader and both replicas");

    // Bad entries: one line each naming the setting; nothing else affected.
    let log = c.log_since("node1", 0);
    for needle in [
        "slots.Bad-Name: invalid",
        "slots.half: a logical slot needs",
        "slots.node2: ",
    ] {
        ensure!(log.contains(needle), "no log line {needle:?} on node1");
    }
    ensure!(!log.contains("panicked"), "node1 panicked");

    // The status key carries the slots' positions.
    c.wait(
        "slot positions in the status key",
        Duration::from_secs(30),
        || {
            let status = c.etcd_json("status")?;
            let slots = &status["slots"];
            for name in ["cdc", "phys_keep", "node2", "node3", "node1"] {
                ensure!(slots[name].as_u64().is_some(), "status {status}");
            }
            Ok(())
        },
    )?;

    // ignore_slots: keep_me survives, drop_me (unknown) is dropped.
    c.pg("node1").sql(
        "SELECT pg_create_physical_replication_slot('keep_me', true); \
         SELECT pg_create_physical_replication_slot('drop_me', true)",
    )?;
    c.wait("drop_me dropped", Duration::from_secs(30), || {
        ensure!(!has(&c.pg("node1"), "drop_me", "physical")?, "still there");
        Ok(())
    })?;
    ensure!(
        has(&c.pg("node1"), "keep_me", "physical")?,
        "keep_me was dropped despite ignore_slots"
    );
    report("permanent_slots: a slot matching ignore_slots survives, an unknown one is dropped");

    // A consumer reads the logical slot on the leader, twice, with checkpoints in between: a
    // logical slot's restart_lsn moves only past the running-transactions records its consumer
    // has decoded, and a replica's copy is usable once that point is WAL the replica has (it
    // was cloned after the slot was made).
    let l = c.pg("node1");
    l.sql("CREATE TABLE cdc_t(v text); INSERT INTO cdc_t VALUES ('before_1'), ('before_2')")?;
    let consume = || -> Result<u64> {
        let n = l.sql_one("SELECT count(*) FROM pg_logical_slot_get_changes('cdc', NULL, NULL)")?;
        Ok(n.and_then(|n| n.parse().ok()).unwrap_or(0))
    };
    ensure!(consume()? > 0, "no changes consumed");
    l.sql("CHECKPOINT")?;
    l.sql("INSERT INTO cdc_t VALUES ('before_3')")?;
    l.sql("CHECKPOINT")?;
    ensure!(consume()? > 0, "no changes consumed the second time");
    let position = cdc_position(&l)?.ok_or_else(|| anyhow!("no cdc slot on node1"))?;
    c.wait(
        "the replicas' copies usable at the consumed position",
        Duration::from_secs(120),
        || {
            for r in ["node2", "node3"] {
                let p = cdc_position(&c.pg(r))?;
                ensure!(p >= Some(position), "{r}: cdc at {p:?} < {position}");
                ensure!(
                    copy_has_its_wal(&c.pg(r))?,
                    "{r}: the WAL at the copy's restart_lsn is not on the replica (yet)"
                );
            }
            Ok(())
        },
    )?;
    l.sql("INSERT INTO cdc_t VALUES ('after_consumed')")?;
    c.wait("the last row replicated", Duration::from_secs(30), || {
        for r in ["node2", "node3"] {
            let n = c
                .pg(r)
                .sql_one("SELECT count(*) FROM cdc_t WHERE v = 'after_consumed'")?;
            ensure!(n.as_deref() == Some("1"), "{r}: {n:?}");
        }
        Ok(())
    })?;
    report(
        "permanent_slots: the replicas' logical slot copies are usable at the consumed position",
    );

    // Switchover: the consumer continues on the new primary.
    stdout_ok(
        &c.ctl(&["switchover", &c.scope, "--force"])?,
        "pghactl switchover",
    )?;
    let new = c.wait(
        "a new leader out of recovery",
        Duration::from_secs(60),
        || {
            let l = c.leader_name()?.ok_or_else(|| anyhow!("no leader key"))?;
            ensure!(l != "node1", "leader key still names node1");
            ensure!(!c.pg(&l).in_recovery()?, "{l} is still in recovery");
            Ok(l)
        },
    )?;
    let p = cdc_position(&c.pg(&new))?;
    ensure!(
        p >= Some(position),
        "{new}: cdc at {p:?}, behind the consumed {position}"
    );
    let changes = c
        .pg(&new)
        .sql("SELECT data FROM pg_logical_slot_get_changes('cdc', NULL, NULL)")?;
    let text: Vec<String> = changes
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    ensure!(
        text.iter().any(|t| t.contains("after_consumed")),
        "{new}: changes after the switchover miss the last row: {text:?}"
    );
    ensure!(
        !text.iter().any(|t| t.contains("before_")),
        "{new}: consumed rows decoded again: {text:?}"
    );
    report(&format!(
        "permanent_slots: after the switchover {new} decodes from the consumed position on"
    ));

    // The old leader, now a replica, keeps its permanent slots.
    c.wait(
        "node1 keeps the slots as a replica",
        Duration::from_secs(90),
        || {
            let pg = c.pg("node1");
            ensure!(pg.in_recovery()?, "node1 not a replica yet");
            ensure!(
                has(&pg, "cdc", "logical")? && has(&pg, "phys_keep", "physical")?,
                "node1: {:?}",
                slots(&pg)?
            );
            Ok(())
        },
    )?;

    // A bad slot through edit-config: one log line, the cluster carries on.
    let offset = c.log_len(&new);
    stdout_ok(
        &c.ctl(&["edit-config", "--force", "-s", "slots.odd.type=weird"])?,
        "pghactl edit-config -s slots.odd.type=weird",
    )?;
    c.wait(
        "the bad slot named in the log",
        Duration::from_secs(30),
        || {
            let log = c.log_since(&new, offset);
            ensure!(log.contains("slots.odd: unknown slot type"), "not yet");
            Ok(())
        },
    )?;
    ensure!(
        has(&c.pg(&new), "cdc", "logical")? && has(&c.pg(&new), "phys_keep", "physical")?,
        "{new} lost slots after the bad edit: {:?}",
        slots(&c.pg(&new))?
    );
    c.wait_streaming(2, Duration::from_secs(60))?;
    report("permanent_slots: a bad slot from edit-config is logged and skipped");

    // Failover: the consumer goes on on whichever replica takes over from a killed leader.
    let np = c.pg(&new);
    np.sql("INSERT INTO cdc_t VALUES ('before_failover')")?;
    ensure!(
        np.sql_one("SELECT count(*) FROM pg_logical_slot_get_changes('cdc', NULL, NULL)")?
            .as_deref()
            != Some("0"),
        "{new}: nothing to consume"
    );
    let position = cdc_position(&np)?.ok_or_else(|| anyhow!("no cdc slot on {new}"))?;
    let others: Vec<String> = c.node_names().into_iter().filter(|n| *n != new).collect();
    c.wait(
        "the other members' copies usable at the new consumed position",
        Duration::from_secs(120),
        || {
            for r in &others {
                let p = cdc_position(&c.pg(r))?;
                ensure!(p >= Some(position), "{r}: cdc at {p:?} < {position}");
                ensure!(copy_has_its_wal(&c.pg(r))?, "{r}: copy's WAL missing");
            }
            Ok(())
        },
    )?;
    np.sql("INSERT INTO cdc_t VALUES ('after_failover')")?;
    c.wait("the row on the replicas", Duration::from_secs(30), || {
        for r in &others {
            let n = c
                .pg(r)
                .sql_one("SELECT count(*) FROM cdc_t WHERE v = 'after_failover'")?;
            ensure!(n.as_deref() == Some("1"), "{r}: {n:?}");
        }
        Ok(())
    })?;
    c.kill_agent(&new, Signal::SIGKILL)?;
    c.kill_postmaster(&new, Signal::SIGKILL)?;
    let third = c.wait(
        "a leader after the failover",
        Duration::from_secs(90),
        || {
            let l = c.leader_name()?.ok_or_else(|| anyhow!("no leader key"))?;
            ensure!(l != new, "leader key still names {new}");
            ensure!(!c.pg(&l).in_recovery()?, "{l} is still in recovery");
            Ok(l)
        },
    )?;
    let p = cdc_position(&c.pg(&third))?;
    ensure!(
        p >= Some(position),
        "{third}: cdc at {p:?}, behind the consumed {position}"
    );
    let text: Vec<String> = c
        .pg(&third)
        .sql("SELECT data FROM pg_logical_slot_get_changes('cdc', NULL, NULL)")?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    ensure!(
        text.iter().any(|t| t.contains("after_failover"))
            && !text.iter().any(|t| t.contains("before_failover")),
        "{third}: changes after the failover: {text:?}"
    );
    report(&format!(
        "permanent_slots: after killing {new}, {third} decodes from the consumed position on"
    ));
    c.pass();
    Ok(())
}
