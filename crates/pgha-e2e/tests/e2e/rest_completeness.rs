//! REST and pghactl completeness on one 2-node cluster, with Patroni 4.1.5's answers:
//!
//! - health checks of the modes pgha does not run (synchronous, quorum, standby cluster) answer
//!   as Patroni's with those modes off, on the leader and on the replica;
//! - `GET /failsafe` 502 without a `failsafe` key, 200 with its content when there is one;
//!   `POST /failsafe` 502 (failsafe mode off), with or without a body;
//! - `PATCH /config` of a restart-only parameter shows in `GET /patroni` as `pending_restart`
//!   and `pending_restart_reason` `{param: {old_value, new_value}}`;
//! - `POST /restart {"schedule"}`: `scheduled_restart` in `GET /patroni` and the member key,
//!   409 for a second one, the restart happens at its time (not before) and applies the
//!   pending parameter; another is cancelled with `DELETE /restart` (then 404), one more with
//!   `pghactl restart --scheduled` / `pghactl flush <scope> restart`;
//! - in pause: scheduling is refused (restart 500, switchover 400), a switchover and a failover
//!   to a named candidate go through the API, the cluster stays paused;
//! - with the `config` key deleted: `pghactl show-config` prints nothing, `list` works,
//!   `edit-config` refuses as patronictl; the leader then restores the key with the settings in
//!   force (the edited ones, not `bootstrap.dcs`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions, Signal};
use serde_json::{json, Value};

use crate::common::skip;
use crate::ops_common::wait_healthy_under;
use crate::ops_common::{both, ctl_io, ctl_ok, iso_utc, leader, list, others, rest_call};

const MINUTE: Duration = Duration::from_secs(60);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn patroni(c: &Cluster, n: &str) -> Result<Value> {
    let (code, v) = c.rest(n).get_json("/patroni")?;
    ensure!(code == 200, "GET /patroni on {n}: {code} {v}");
    Ok(v)
}

/// Status codes of GET on `paths` for the leader `l` and the replica `r`, as Patroni 4.1.5
/// answers them with synchronous mode, quorum commit and standby cluster off.
fn modes_off_health(c: &Cluster, l: &str, r: &str) -> Result<()> {
    let table: &[(&str, u16, u16)] = &[
        ("/standby-leader", 503, 503),
        ("/standby_leader", 503, 503),
        ("/sync", 503, 503),
        ("/synchronous", 503, 503),
        ("/quorum", 503, 503),
        ("/async", 503, 200),
        ("/asynchronous", 503, 200),
        ("/read-only-sync", 200, 503),
        ("/read-only-synchronous", 200, 503),
        ("/read-only-quorum", 200, 503),
        ("/read-only", 200, 200),
        ("/primary", 200, 503),
        ("/replica", 503, 200),
    ];
    c.wait("health codes with the modes off", MINUTE, || {
        let mut wrong = Vec::new();
        for (path, on_leader, on_replica) in table {
            for (n, want) in [(l, *on_leader), (r, *on_replica)] {
                let (code, body) = c.rest(n).get(path)?;
                if code != want {
                    wrong.push(format!("{n} GET {path}: {code}, want {want}"));
                }
                // Every health check carries the status JSON, 200 or 503.
                let v: Value = serde_json::from_str(&body)
                    .map_err(|e| anyhow!("{n} GET {path}: not JSON ({e}): {body}"))?;
                ensure!(v["patroni"]["name"] == *n, "{n} GET {path}: {v}");
            }
        }
        ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
        Ok(())
    })
}

fn failsafe(c: &Cluster, l: &str, r: &str) -> Result<()> {
    for n in [l, r] {
        let (code, body) = c.rest(n).get("/failsafe")?;
        ensure!(
            code == 502 && body.contains("Error code: 502"),
            "GET /failsafe on {n}: {code} {body}"
        );
        for body in [Some(json!({"name": l})), None] {
            let (code, text) = rest_call(c, n, "POST", "/failsafe", body.as_ref())?;
            ensure!(
                code == 502 && text.contains("Error code: 502"),
                "POST /failsafe {body:?} on {n}: {code} {text}"
            );
        }
    }
    // A `failsafe` key (left from a time failsafe_mode was on) is shown, as Patroni does.
    let value = format!(r#"{{"{l}":"http://127.0.0.1:1/patroni"}}"#);
    c.etcd_put("failsafe", &value)?;
    c.wait("GET /failsafe to show the failsafe key", MINUTE, || {
        let (code, body) = c.rest(r).get("/failsafe")?;
        ensure!(
            code == 200 && body == format!(r#"{{"{l}": "http://127.0.0.1:1/patroni"}}"#),
            "GET /failsafe: {code} {body}"
        );
        Ok(())
    })?;
    c.etcd_del("failsafe")?;
    c.wait("GET /failsafe back to 502", MINUTE, || {
        let (code, _) = c.rest(r).get("/failsafe")?;
        ensure!(code == 502, "GET /failsafe: {code}");
        Ok(())
    })
}

fn pending_restart(c: &Cluster) -> Result<()> {
    let (code, text) = rest_call(
        c,
        &leader(c)?,
        "PATCH",
        "/config",
        Some(&json!({"postgresql": {"parameters": {"max_connections": 150}}})),
    )?;
    ensure!(code == 200, "PATCH /config: {code} {text}");
    let want = json!({"max_connections": {"old_value": "100", "new_value": "150"}});
    for n in c.node_names() {
        c.wait(&format!("{n}: pending_restart_reason"), MINUTE, || {
            let v = patroni(c, &n)?;
            ensure!(
                v["pending_restart"] == true && v["pending_restart_reason"] == want,
                "GET /patroni on {n}: {v}"
            );
            Ok(())
        })?;
    }
    Ok(())
}

fn scheduled_restarts(c: &Cluster, l: &str, r: &str) -> Result<()> {
    // On the replica, 6 s from now, only if a restart is pending (it is).
    let at = now_secs() + 6;
    let iso = iso_utc(at);
    let before = c
        .postmaster_pid(r)
        .ok_or_else(|| anyhow!("no postmaster on {r}"))?;
    let body = json!({"schedule": iso, "restart_pending": true});
    let (code, text) = rest_call(c, r, "POST", "/restart", Some(&body))?;
    ensure!(
        (code, text.as_str()) == (202, "Restart scheduled"),
        "POST /restart {body}: {code} {text:?}"
    );
    let (code, text) = rest_call(c, r, "POST", "/restart", Some(&body))?;
    ensure!(
        (code, text.as_str()) == (409, "Another restart is already scheduled"),
        "second POST /restart: {code} {text:?}"
    );
    let shown = patroni(c, r)?;
    ensure!(
        shown["scheduled_restart"] == json!({"schedule": iso, "restart_pending": true}),
        "GET /patroni on {r}: {shown}"
    );
    c.wait("the member key to carry the schedule", MINUTE, || {
        let m = c.etcd_json(&format!("members/{r}"))?;
        ensure!(
            m["scheduled_restart"]["schedule"] == iso.as_str()
                && m["scheduled_restart"]["restart_pending"] == true,
            "members/{r}: {m}"
        );
        Ok(())
    })?;
    // Nothing before its time.
    while now_secs() + 1 < at {
        ensure!(
            c.postmaster_pid(r) == Some(before),
            "{r} restarted before {iso}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.wait(&format!("{r} restarted by the schedule"), MINUTE, || {
        let pid = c.postmaster_pid(r);
        ensure!(
            pid.is_some() && pid != Some(before),
            "postmaster pid {pid:?}"
        );
        let mc = c.pg(r).sql_one("SHOW max_connections")?;
        ensure!(mc.as_deref() == Some("150"), "max_connections {mc:?}");
        let v = patroni(c, r)?;
        ensure!(
            v.get("scheduled_restart").is_none() && v.get("pending_restart").is_none(),
            "GET /patroni on {r}: {v}"
        );
        Ok(())
    })?;
    let late = now_secs().saturating_sub(at);
    report(&format!(
        "rest_completeness: scheduled restart of {r} done {late}s after its time"
    ));

    // Cancelled through the API: nothing happens.
    let far = iso_utc(now_secs() + 3600);
    let (code, text) = rest_call(
        c,
        l,
        "POST",
        "/restart",
        Some(&json!({"schedule": far, "role": "primary"})),
    )?;
    ensure!(code == 202, "POST /restart on {l}: {code} {text:?}");
    ensure!(
        patroni(c, l)?["scheduled_restart"] == json!({"schedule": far, "role": "primary"}),
        "GET /patroni on {l} after scheduling"
    );
    let (code, text) = rest_call(c, l, "DELETE", "/restart", None)?;
    ensure!(
        (code, text.as_str()) == (200, "scheduled restart deleted"),
        "DELETE /restart: {code} {text:?}"
    );
    let (code, text) = rest_call(c, l, "DELETE", "/restart", None)?;
    ensure!(
        (code, text.as_str()) == (404, "no restarts are scheduled"),
        "DELETE /restart again: {code} {text:?}"
    );
    ensure!(
        patroni(c, l)?.get("scheduled_restart").is_none(),
        "GET /patroni on {l} still shows a scheduled restart"
    );

    // And through pghactl.
    let out = ctl_ok(
        c,
        &["restart", &c.scope, l, "--scheduled", &far, "--force"],
        MINUTE,
    )?;
    ensure!(
        out.contains(&format!("Success: restart scheduled on member {l}")),
        "pghactl restart --scheduled: {out}"
    );
    c.wait(
        "the member key to carry the pghactl schedule",
        MINUTE,
        || {
            let m = c.etcd_json(&format!("members/{l}"))?;
            ensure!(
                m["scheduled_restart"]["schedule"] == far.as_str(),
                "members/{l}: {m}"
            );
            Ok(())
        },
    )?;
    let out = ctl_ok(c, &["flush", &c.scope, "restart", "--force"], MINUTE)?;
    ensure!(
        out.contains(&format!("Success: flush scheduled restart for member {l}")),
        "pghactl flush restart: {out}"
    );
    ensure!(
        patroni(c, l)?.get("scheduled_restart").is_none(),
        "GET /patroni on {l} after pghactl flush"
    );
    Ok(())
}

fn switchover_in_pause(c: &Cluster, l: &str, r: &str) -> Result<()> {
    let out = ctl_ok(c, &["pause", "--wait"], MINUTE)?;
    ensure!(
        out.contains("Success: cluster management is paused"),
        "{out}"
    );
    let later = iso_utc(now_secs() + 3600);

    let (code, text) = rest_call(c, l, "POST", "/restart", Some(&json!({"schedule": later})))?;
    ensure!(
        (code, text.as_str()) == (500, "Can't schedule restart in the paused state"),
        "scheduled restart in pause: {code} {text:?}"
    );
    let cases = [
        (
            json!({"leader": l, "candidate": r, "scheduled_at": later}),
            "Can't schedule switchover in the paused state",
        ),
        (
            json!({"leader": l}),
            "Switchover is possible only to a specific candidate in a paused state",
        ),
    ];
    for (body, want) in cases {
        let (code, text) = rest_call(c, l, "POST", "/switchover", Some(&body))?;
        ensure!(
            (code, text.as_str()) == (400, want),
            "POST /switchover {body} in pause: {code} {text:?}"
        );
    }

    let t0 = Instant::now();
    let (code, text) = rest_call(
        c,
        l,
        "POST",
        "/switchover",
        Some(&json!({"leader": l, "candidate": r})),
    )?;
    ensure!(
        (code, text.as_str())
            == (
                200,
                format!("Successfully switched over to \"{r}\"").as_str()
            ),
        "POST /switchover in pause: {code} {text:?}"
    );
    wait_healthy_under(c, r, MINUTE)?;
    report(&format!(
        "rest_completeness: switchover in pause {l} -> {r} healthy after {:.1}s",
        t0.elapsed().as_secs_f64()
    ));
    ensure!(c.etcd_json("config")?["pause"] == true, "no longer paused");
    for n in [l, r] {
        ensure!(
            patroni(c, n)?["pause"] == true,
            "{n}: GET /patroni without pause"
        );
    }

    // A failover to a named candidate, back to the first leader, also in pause.
    let (code, text) = rest_call(c, r, "POST", "/failover", Some(&json!({"candidate": l})))?;
    ensure!(
        (code, text.as_str()) == (200, format!("Successfully failed over to \"{l}\"").as_str()),
        "POST /failover in pause: {code} {text:?}"
    );
    wait_healthy_under(c, l, MINUTE)?;
    ensure!(c.etcd_json("config")?["pause"] == true, "no longer paused");
    let out = ctl_ok(c, &["resume", "--wait"], MINUTE)?;
    ensure!(
        out.contains("Success: cluster management is resumed"),
        "{out}"
    );
    Ok(())
}

fn without_config_key(c: &Cluster, l: &str) -> Result<()> {
    // The leader restores a missing key within a loop: hold its agent still meanwhile (well
    // within ttl, so it keeps the lock).
    let mark = c.log_len(l);
    c.kill_agent(l, Signal::SIGSTOP)?;
    let checks = (|| -> Result<()> {
        c.etcd_del("config")?;
        ensure!(c.etcd_get("config")?.is_none(), "config key still there");
        let out = ctl_ok(c, &["show-config"], MINUTE)?;
        ensure!(
            out.trim().is_empty(),
            "show-config without the key printed:\n{out}"
        );
        let (out, rows) = list(c)?;
        ensure!(
            rows.len() == 2,
            "pghactl list without the config key:\n{out}"
        );
        let out = ctl_io(c, &["edit-config", "--force", "-s", "ttl=30"], None, MINUTE)?;
        let text = both(&out);
        ensure!(
            !out.status.success()
                && text.contains(&format!(
                    "The config key does not exist in the cluster {}",
                    c.scope
                )),
            "edit-config without the key: {text}"
        );
        Ok(())
    })();
    c.kill_agent(l, Signal::SIGCONT)?;
    checks?;
    c.wait("the leader to restore the config key", MINUTE, || {
        let cfg = c.etcd_json("config")?;
        ensure!(
            cfg["postgresql"]["parameters"]["max_connections"] == 150
                && cfg["ttl"] == 10
                && cfg.get("pause").is_none(),
            "config key {cfg}"
        );
        Ok(())
    })?;
    let log = c.log_since(l, mark);
    ensure!(
        log.contains("the config key was missing: stored the last dynamic configuration seen"),
        "no restore line in the log of {l}"
    );
    let out = ctl_ok(c, &["show-config"], MINUTE)?;
    ensure!(
        out.contains("max_connections: 150"),
        "show-config after the restore:\n{out}"
    );
    Ok(())
}

#[test]
fn rest_completeness() -> Result<()> {
    if skip("rest_completeness") {
        return Ok(());
    }
    let c = Cluster::start_healthy(ClusterOptions::default().nodes(2))?;
    let l = leader(&c)?;
    let r = others(&c, &l).remove(0);
    wait_healthy_under(&c, &l, MINUTE)?;

    modes_off_health(&c, &l, &r)?;
    failsafe(&c, &l, &r)?;
    pending_restart(&c)?;
    scheduled_restarts(&c, &l, &r)?;
    switchover_in_pause(&c, &l, &r)?;
    without_config_key(&c, &leader(&c)?)?;
    c.pass();
    Ok(())
}
