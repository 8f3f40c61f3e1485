//! The member commands of pghactl on a real cluster: `reload` (every member acknowledges),
//! `reinit --wait` of a replica (recreated, streaming again), `reinit` of the leader (refused:
//! patronictl 4.1 only reinitializes replicas; the REST API answers `I am the leader, can not
//! reinitialize`), `history` after a switchover, `version`, `dsn`, `query`.

use std::time::Duration;

use anyhow::{ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions};
use serde_json::json;

use crate::common::skip;
use crate::ops_common::{
    both, ctl_io, ctl_ok, leader, list_cells, others, rest_call, wait_healthy_under,
};

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn reload_reinit_history() -> Result<()> {
    if skip("reload_reinit_history") {
        return Ok(());
    }
    let c = Cluster::start_healthy(ClusterOptions::default())?;
    let scope = c.scope.clone();
    let l = leader(&c)?;
    wait_healthy_under(&c, &l, MINUTE)?;
    let replica = others(&c, &l)[0].clone();

    // reload: one acknowledgement per member.
    let out = ctl_ok(&c, &["reload", &scope, "--force"], MINUTE)?;
    for n in c.node_names() {
        ensure!(
            out.contains(&format!("Reload request received for member {n} "))
                || out.contains(&format!("No changes to apply on member {n}")),
            "reload: nothing for {n}:\n{out}"
        );
    }

    // reinit of a replica, waiting for it.
    c.pg(&l)
        .sql("CREATE TABLE ri(id int); INSERT INTO ri VALUES (1)")?;
    let pm_before = c.postmaster_pid(&replica);
    let mark = c.log_len(&replica);
    let out = ctl_io(
        &c,
        &["reinit", &scope, &replica, "--force", "--wait"],
        None,
        Duration::from_secs(180),
    )?;
    let text = both(&out);
    ensure!(
        out.status.success()
            && text.contains(&format!("Success: reinitialize for member {replica}"))
            && text.contains(&format!("Reinitialize is completed on: {replica}")),
        "reinit --wait: {text}"
    );
    wait_healthy_under(&c, &l, MINUTE)?;
    ensure!(
        c.postmaster_pid(&replica) != pm_before,
        "{replica}: same postmaster"
    );
    ensure!(
        c.log_since(&replica, mark)
            .to_lowercase()
            .contains("basebackup")
            || c.log_since(&replica, mark).contains("base backup"),
        "{replica} did not take a new base backup:\n{}",
        c.log_since(&replica, mark)
    );
    ensure!(
        c.pg(&replica)
            .sql_one("SELECT count(*) FROM ri")?
            .as_deref()
            == Some("1"),
        "{replica} lost data after reinit"
    );

    // reinit of the leader: patronictl 4.1 picks replicas only.
    let out = ctl_io(&c, &["reinit", &scope, &l, "--force"], None, MINUTE)?;
    let text = both(&out);
    ensure!(
        !out.status.success() && text.contains("No replica among provided members"),
        "reinit of the leader: {text}"
    );
    let (code, body) = rest_call(
        &c,
        &l,
        "POST",
        "/reinitialize",
        Some(&json!({"force": true})),
    )?;
    ensure!(
        code == 503 && body == "I am the leader, can not reinitialize",
        "POST /reinitialize on the leader: {code} {body:?}"
    );
    ensure!(leader(&c)? == l, "leadership moved");

    // history after a switchover: TL 1 ended with the new leader.
    let out = ctl_ok(
        &c,
        &[
            "switchover",
            "--leader",
            &l,
            "--candidate",
            &replica,
            "--force",
        ],
        MINUTE,
    )?;
    ensure!(
        out.contains(&format!("Successfully switched over to \"{replica}\"")),
        "{out}"
    );
    wait_healthy_under(&c, &replica, MINUTE)?;
    let hist = c.wait(
        "the switchover in pghactl history",
        Duration::from_secs(20),
        || {
            let out = ctl_ok(&c, &["history"], MINUTE)?;
            let row = out
                .lines()
                .filter(|l| l.starts_with('|'))
                .map(|l| {
                    l.trim_matches('|')
                        .split('|')
                        .map(|s| s.trim().to_string())
                        .collect::<Vec<_>>()
                })
                .find(|cells| cells.first().map(String::as_str) == Some("1"));
            ensure!(
                row.as_ref().is_some_and(|r| r.get(4) == Some(&replica)),
                "no TL 1 row naming {replica}:\n{out}"
            );
            Ok(out)
        },
    )?;
    report(&format!("history after a switchover:\n{hist}"));

    // version, dsn, query.
    let out = ctl_ok(&c, &["version"], MINUTE)?;
    ensure!(out.starts_with("pghactl version "), "version: {out}");
    let out = ctl_ok(&c, &["version", &scope], MINUTE)?;
    for n in c.node_names() {
        ensure!(
            out.contains(&format!("{n}: ")),
            "version {scope}: no {n}:\n{out}"
        );
    }
    let out = ctl_ok(&c, &["dsn"], MINUTE)?;
    let port = c.pg(&replica).port;
    ensure!(
        out.trim() == format!("host=127.0.0.1 port={port}"),
        "dsn of leader {replica}: {out:?}"
    );
    let out = ctl_ok(&c, &["query", "-c", "select 1"], MINUTE)?;
    ensure!(out.lines().any(|l| l.trim() == "1"), "query: {out:?}");
    let out = ctl_ok(&c, &["query", "-c", "select pg_is_in_recovery()"], MINUTE)?;
    ensure!(
        out.lines().any(|l| l.trim() == "False" || l.trim() == "f"),
        "query ran on a replica: {out:?}"
    );
    let (list_out, _) = crate::ops_common::list(&c)?;
    ensure!(
        list_cells(&list_out, &replica)?[2] == "Leader",
        "{list_out}"
    );
    c.pass();
    Ok(())
}
