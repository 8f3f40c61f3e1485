//! A scheduled switchover: `pghactl switchover --scheduled <time> --force` stores the request
//! in the `failover` key (with `scheduled_at`), `pghactl list` shows it under the table, and
//! the leader hands over within loop_wait (+ slack) after the time, not before. A second one is
//! cancelled with `pghactl flush <scope> switchover --force`: the key is emptied and nothing
//! happens when its time passes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Result};
use pgha_e2e::{report, wait_until, Cluster, ClusterOptions};
use serde_json::Value;

use crate::common::skip;
use crate::ops_common::{both, ctl_io, iso_utc, leader, list, others, wait_healthy_under};

fn now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Schedules a switchover from `from` to `to` `lead` seconds from now: the time (epoch seconds).
fn schedule(c: &Cluster, from: &str, to: &str, lead: u64) -> Result<u64> {
    let at = now_f64().ceil() as u64 + lead;
    let iso = iso_utc(at);
    let out = ctl_io(
        c,
        &[
            "switchover",
            "--leader",
            from,
            "--candidate",
            to,
            "--scheduled",
            &iso,
            "--force",
        ],
        None,
        Duration::from_secs(30),
    )?;
    let text = both(&out);
    ensure!(out.status.success(), "scheduling failed: {text}");
    ensure!(
        text.contains("Switchover scheduled"),
        "no confirmation in: {text}"
    );
    let key = c.etcd_json("failover")?;
    let stored = key["scheduled_at"].as_str().unwrap_or_default();
    // `2026-11-22T04:40:08+00:00`: the same instant, whatever the zone it is written in.
    ensure!(
        stored.starts_with(&iso[..10]) && key["leader"] == from && key["member"] == to,
        "failover key {key} for a switchover {from} -> {to} at {iso}"
    );
    ensure!(
        stored == iso || stored.contains(&iso[14..19]),
        "scheduled_at {stored:?}, asked for {iso}"
    );
    Ok(at)
}

#[test]
fn scheduled_switchover() -> Result<()> {
    if skip("scheduled_switchover") {
        return Ok(());
    }
    let opts = ClusterOptions::default();
    let loop_wait = opts.loop_wait as f64;
    let c = Cluster::start_healthy(opts)?;
    let old = leader(&c)?;
    let cand = others(&c, &old)[0].clone();
    wait_healthy_under(&c, &old, Duration::from_secs(60))?;

    let at = schedule(&c, &old, &cand, 8)?;
    let (out, _) = list(&c)?;
    ensure!(
        out.contains(" Switchover scheduled at: ")
            && out.contains(&format!("from: {old}"))
            && out.contains(&format!("to: {cand}")),
        "no scheduled switchover under the table:\n{out}"
    );

    // Nothing before the time; the candidate leads soon after it.
    let bound = Duration::from_secs_f64((at as f64 - now_f64()).max(0.0) + loop_wait + 20.0);
    let mut early = None;
    let changed_at = c.wait(
        &format!("{cand} to lead after the scheduled time"),
        bound,
        || {
            let now = now_f64();
            let l = leader(&c)?;
            if l != old && now < at as f64 - 0.5 && early.is_none() {
                early = Some(format!("{l} led {:.1}s before the time", at as f64 - now));
            }
            ensure!(l == cand, "leader key names {l}");
            ensure!(!c.pg(&cand).in_recovery()?, "{cand} still in recovery");
            Ok(now)
        },
    )?;
    ensure!(early.is_none(), "scheduled switchover ran early: {early:?}");
    let delay = changed_at - at as f64;
    report(&format!(
        "scheduled switchover: {old} -> {cand} took effect {delay:.2}s after the scheduled time \
         (loop_wait {loop_wait}s)"
    ));
    ensure!(delay >= -0.5, "switched {:.2}s early", -delay);
    ensure!(
        delay <= loop_wait + 5.0,
        "switched {delay:.1}s after the scheduled time (> loop_wait + 5s)"
    );
    ensure!(
        c.etcd_get("failover")?
            .map(|v| v.trim_matches(['{', '}', ' ']).is_empty())
            .unwrap_or(true),
        "failover key not cleaned up: {:?}",
        c.etcd_get("failover")?
    );
    wait_healthy_under(&c, &cand, Duration::from_secs(60))?;

    // Scheduled, then flushed: nothing happens at its time.
    let at = schedule(&c, &cand, &old, 8)?;
    let out = ctl_io(
        &c,
        &["flush", &c.scope, "switchover", "--force"],
        None,
        Duration::from_secs(30),
    )?;
    let text = both(&out);
    ensure!(
        out.status.success() && text.contains("Success: "),
        "flush failed: {text}"
    );
    let key = c.etcd_get("failover")?;
    let pending = match key.as_deref() {
        None | Some("") => false,
        Some(v) => serde_json::from_str::<Value>(v)
            .map_err(|e| anyhow!("failover key {v:?}: {e}"))?
            .get("scheduled_at")
            .is_some_and(|s| !s.is_null() && s != ""),
    };
    ensure!(
        !pending,
        "failover key still holds a schedule after flush: {key:?}"
    );
    let (out, _) = list(&c)?;
    ensure!(
        !out.contains("Switchover scheduled at"),
        "list still shows a schedule:\n{out}"
    );
    let quiet_until = at as f64 + loop_wait + 3.0;
    let watch = Duration::from_secs_f64((quiet_until - now_f64()).max(0.0));
    // Polls the whole window: the leadership must not move.
    let moved = wait_until(
        "the flushed switchover's time to pass",
        watch,
        Duration::from_millis(200),
        || {
            let l = leader(&c)?;
            if l != cand {
                return Ok(l);
            }
            bail!("{cand} still leads")
        },
    );
    if let Ok(l) = moved {
        bail!("a flushed switchover still happened: {l} leads");
    }
    ensure!(leader(&c)? == cand, "leadership moved");
    report(&format!(
        "scheduled switchover: flushed one due at {}, {cand} still leads after it",
        iso_utc(at)
    ));
    c.pass();
    Ok(())
}
