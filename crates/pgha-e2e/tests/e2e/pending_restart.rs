//! The seed procedure's "changing PostgreSQL settings through Patroni": `edit-config` with a
//! restart-only parameter (max_connections) and a reloadable one (work_mem); every member
//! reports a pending restart (`*` in `pghactl list`), the agents log `Changed ... (restart
//! might be required)`; a rolling `pghactl restart <scope> <member> --force` (replicas, then
//! the leader) applies it without a failover; a value PostgreSQL would refuse is refused by
//! `PATCH /config` with 400 and by `pghactl edit-config`.

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions};
use serde_json::json;

use crate::common::{primary_timeline, skip};
use crate::ops_common::{
    both, ctl_io, ctl_ok, leader, list, list_cells, list_header, others, rest_call,
    wait_healthy_under,
};

const MINUTE: Duration = Duration::from_secs(60);

/// Waits until every member's key says `pending_restart: want` (absent counts as false) and
/// `pghactl list` agrees: (the list output).
fn wait_pending(c: &Cluster, want: bool) -> Result<String> {
    c.wait(
        &format!("pending_restart={want} on every member"),
        MINUTE,
        || {
            for n in c.node_names() {
                let m = c.etcd_json(&format!("members/{n}"))?;
                let p = m["pending_restart"].as_bool().unwrap_or(false);
                ensure!(p == want, "{n}: pending_restart {p} in {m}");
            }
            let (out, _) = list(c)?;
            let header = list_header(&out)?;
            let col = header.iter().position(|h| h == "Pending restart");
            match (want, col) {
                (true, Some(i)) => {
                    for n in c.node_names() {
                        let cells = list_cells(&out, &n)?;
                        ensure!(cells.get(i).map(String::as_str) == Some("*"), "{n}:\n{out}");
                    }
                }
                (true, None) => anyhow::bail!("no Pending restart column:\n{out}"),
                (false, Some(_)) => anyhow::bail!("Pending restart column still shown:\n{out}"),
                (false, None) => {}
            }
            Ok(out)
        },
    )
}

#[test]
fn seed000_pending_restart() -> Result<()> {
    if skip("seed000_pending_restart") {
        return Ok(());
    }
    let c = Cluster::start_healthy(ClusterOptions::default())?;
    let l = leader(&c)?;
    let tl = wait_healthy_under(&c, &l, MINUTE)?;
    let marks: Vec<(String, u64)> = c
        .node_names()
        .into_iter()
        .map(|n| (n.clone(), c.log_len(&n)))
        .collect();

    let out = ctl_ok(
        &c,
        &[
            "edit-config",
            "--force",
            "-p",
            "max_connections=150",
            "-p",
            "work_mem=8MB",
        ],
        MINUTE,
    )?;
    for want in [
        "-    max_connections: 100\n",
        "+    max_connections: 150\n",
        "+    work_mem: 8MB\n",
        "Configuration changed",
    ] {
        ensure!(
            out.contains(want),
            "no {want:?} in the edit-config output:\n{out}"
        );
    }
    // Quiet, and nothing to change: no output at all.
    let out = ctl_ok(
        &c,
        &["edit-config", "--force", "-q", "-p", "work_mem=8MB"],
        MINUTE,
    )?;
    ensure!(out.trim().is_empty(), "edit-config -q printed:\n{out}");

    let shown = wait_pending(&c, true)?;
    report(&format!("pending restart: pghactl list\n{shown}"));
    for (n, mark) in &marks {
        c.wait(&format!("{n} to log the change"), MINUTE, || {
            let log = c.log_since(n, *mark);
            ensure!(
                log.contains("Changed max_connections from 100 to 150 (restart might be required)"),
                "not yet in the log of {n}"
            );
            ensure!(
                log.contains("Changed work_mem from 4096 to 8MB"),
                "no work_mem line in the log of {n}"
            );
            Ok(())
        })?;
        let pg = c.pg(n);
        ensure!(
            pg.sql_one("SHOW work_mem")?.as_deref() == Some("8MB"),
            "{n}: work_mem not reloaded"
        );
        ensure!(
            pg.sql_one("SHOW max_connections")?.as_deref() == Some("100"),
            "{n}: restarted early"
        );
    }

    // Rolling restart: replicas first, then the leader.
    let mut order = others(&c, &l);
    order.push(l.clone());
    for n in &order {
        let before = c.postmaster_pid(n);
        let out = ctl_io(
            &c,
            &["restart", &c.scope, n, "--force"],
            None,
            Duration::from_secs(120),
        )?;
        let text = both(&out);
        ensure!(
            out.status.success() && text.contains(&format!("Success: restart on member {n}")),
            "restart of {n}: {text}"
        );
        ensure!(
            c.postmaster_pid(n) != before,
            "{n}: postmaster pid unchanged"
        );
        let pg = c.pg(n);
        c.wait(
            &format!("{n} to run with max_connections 150"),
            MINUTE,
            || {
                let v = pg.sql_one("SHOW max_connections")?;
                ensure!(v.as_deref() == Some("150"), "{n}: max_connections {v:?}");
                Ok(())
            },
        )?;
        ensure!(
            leader(&c)? == l,
            "leadership moved during the restart of {n}"
        );
        wait_healthy_under(&c, &l, MINUTE)?;
    }
    wait_pending(&c, false)?;
    let tl_after = primary_timeline(&c.pg(&l))?;
    ensure!(
        tl_after == tl,
        "timeline {tl} -> {tl_after}: a failover happened"
    );
    for n in c.node_names() {
        let pg = c.pg(&n);
        let mc = pg.sql_one("SHOW max_connections")?;
        let wm = pg.sql_one("SHOW work_mem")?;
        ensure!(
            (mc.as_deref(), wm.as_deref()) == (Some("150"), Some("8MB")),
            "{n}: max_connections {mc:?}, work_mem {wm:?}"
        );
    }

    // A value PostgreSQL refuses is refused before it reaches the DCS.
    let (code, text) = rest_call(
        &c,
        &l,
        "PATCH",
        "/config",
        Some(&json!({"postgresql": {"parameters": {"work_mem": "1kB"}}})),
    )?;
    ensure!(
        code == 400 && text.contains("postgresql.parameters.work_mem"),
        "PATCH /config work_mem=1kB: {code} {text:?}"
    );
    // pghactl edit-config asks the leader's PostgreSQL too.
    let out = ctl_io(
        &c,
        &["edit-config", "--force", "-q", "-p", "max_connections=lots"],
        None,
        MINUTE,
    )?;
    let text = both(&out);
    ensure!(
        !out.status.success()
            && text.contains("postgresql.parameters.max_connections")
            && text.contains("the configuration was not changed"),
        "edit-config max_connections=lots: {text}"
    );
    let cfg = ctl_ok(&c, &["show-config"], MINUTE)?;
    ensure!(
        cfg.contains("    work_mem: 8MB\n") && cfg.contains("    max_connections: 150\n"),
        "show-config after the refused changes:\n{cfg}"
    );
    ensure!(
        c.etcd_json("config")?["postgresql"]["parameters"]["work_mem"] == "8MB",
        "config key changed: {}",
        c.etcd_get("config")?
            .ok_or_else(|| anyhow!("no config key"))?
    );
    c.pass();
    Ok(())
}
