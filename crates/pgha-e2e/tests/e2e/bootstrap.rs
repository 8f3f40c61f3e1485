//! (a) Bootstrap of a three-node cluster: one leader, two streaming replicas, replicated data,
//! `pghactl list` (pretty and JSON), the DCS keys in Patroni's shapes, and the REST health checks.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use pgha_e2e::{report, Cluster, ClusterOptions};
use serde_json::Value;

use crate::common::{ids, parse_list, skip, stdout_ok, wait_rows};

#[test]
fn bootstrap_three_nodes() -> Result<()> {
    if skip("bootstrap_three_nodes") {
        return Ok(());
    }
    let c = Cluster::start_healthy(ClusterOptions::default())?;
    let leader = c.leader_name()?.ok_or_else(|| anyhow!("no leader"))?;
    let replicas: Vec<String> = c
        .node_names()
        .into_iter()
        .filter(|n| *n != leader)
        .collect();
    let lpg = c.pg(&leader);

    // Data written on the primary reaches both replicas.
    lpg.sql(
        "CREATE TABLE boot(id int PRIMARY KEY); INSERT INTO boot SELECT generate_series(1, 100)",
    )?;
    let want: BTreeSet<i64> = (1..=100).collect();
    for r in &replicas {
        wait_rows(&c, r, "boot", &want, Duration::from_secs(20))?;
        ensure!(c.pg(r).in_recovery()?, "{r} is not in recovery");
    }
    ensure!(ids(&lpg, "boot")? == want);

    // `initialize` is the leader's system identifier.
    let sysid = lpg
        .sql_one("SELECT system_identifier FROM pg_control_system()")?
        .ok_or_else(|| anyhow!("no sysid"))?;
    let init = c
        .etcd_get("initialize")?
        .ok_or_else(|| anyhow!("no initialize key"))?;
    ensure!(
        init == sysid,
        "initialize {init:?} != system_identifier {sysid}"
    );

    // `config` holds bootstrap.dcs, as written.
    let config = c.etcd_json("config")?;
    ensure!(config["ttl"] == 10, "config.ttl: {config}");
    ensure!(
        config["loop_wait"] == 1 && config["retry_timeout"] == 3,
        "config timings: {config}"
    );
    ensure!(
        config["postgresql"]["use_pg_rewind"] == true,
        "config.postgresql: {config}"
    );

    // `leader`: plain member name, on the same lease as the leader's member key, TTL = ttl.
    let lkv = c
        .etcd_get_kv("leader")?
        .ok_or_else(|| anyhow!("no leader key"))?;
    ensure!(lkv.value == leader, "leader key value {:?}", lkv.value);
    let lmkv = c
        .etcd_get_kv(&format!("members/{leader}"))?
        .ok_or_else(|| anyhow!("no member key for the leader"))?;
    ensure!(lkv.lease != 0, "leader key has no lease");
    ensure!(
        lkv.lease == lmkv.lease,
        "leader key lease {:x} != member key lease {:x}",
        lkv.lease,
        lmkv.lease
    );
    let (granted, _) = c.etcd_client().lease_ttl(lkv.lease)?;
    ensure!(
        granted == 10,
        "leader lease granted TTL {granted}, want ttl=10"
    );

    // members/<name>
    c.wait(
        "every member key in Patroni's shape",
        Duration::from_secs(20),
        || {
            for n in c.node_names() {
                let m = c.etcd_json(&format!("members/{n}"))?;
                let node = c.node(&n);
                let conn = format!("postgres://127.0.0.1:{}/postgres", node.spec.pg_port);
                let api = format!("http://127.0.0.1:{}/patroni", node.spec.rest_port);
                ensure!(m["conn_url"] == conn.as_str(), "{n}: conn_url in {m}");
                ensure!(m["api_url"] == api.as_str(), "{n}: api_url in {m}");
                ensure!(m["state"] == "running", "{n}: state in {m}");
                ensure!(m["version"].is_string(), "{n}: version in {m}");
                ensure!(m["xlog_location"].is_u64(), "{n}: xlog_location in {m}");
                ensure!(m["timeline"] == 1, "{n}: timeline in {m}");
                if n == leader {
                    ensure!(m["role"] == "primary", "{n}: role in {m}");
                } else {
                    ensure!(m["role"] == "replica", "{n}: role in {m}");
                    ensure!(
                        m["replication_state"] == "streaming",
                        "{n}: replication_state in {m}"
                    );
                    ensure!(
                        m["receive_lsn"].is_u64() && m["replay_lsn"].is_u64(),
                        "{n}: lsns in {m}"
                    );
                }
            }
            Ok(())
        },
    )?;

    // status: optime and slots (one per replica at least).
    c.wait(
        "the status key with optime and slots",
        Duration::from_secs(20),
        || {
            let st = c.etcd_json("status")?;
            ensure!(st["optime"].is_u64(), "status.optime: {st}");
            let slots = st["slots"]
                .as_object()
                .ok_or_else(|| anyhow!("status.slots not an object: {st}"))?;
            for r in &replicas {
                ensure!(slots.contains_key(r), "status.slots lacks {r}: {st}");
            }
            let retain = st["retain_slots"]
                .as_array()
                .ok_or_else(|| anyhow!("status.retain_slots not a list: {st}"))?;
            for n in c.node_names() {
                ensure!(
                    retain.iter().any(|v| *v == n.as_str()),
                    "status.retain_slots lacks {n}: {st}"
                );
            }
            Ok(())
        },
    )?;

    // REST health checks and /patroni.
    c.wait("REST roles", Duration::from_secs(20), || {
        for n in c.node_names() {
            let rest = c.rest(&n);
            let (p, _) = rest.get("/primary")?;
            let (r, _) = rest.get("/replica")?;
            let (s, body) = rest.get_json("/patroni")?;
            ensure!(s == 200, "{n}: /patroni {s}");
            if n == leader {
                ensure!(
                    (p, r) == (200, 503),
                    "{n} (leader): /primary {p}, /replica {r}"
                );
                ensure!(body["role"] == "primary", "{n}: /patroni role in {body}");
                let apps: BTreeSet<&str> = body["replication"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|r| r["application_name"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                for r in &replicas {
                    ensure!(
                        apps.contains(r.as_str()),
                        "{n}: /patroni replication lacks {r}: {body}"
                    );
                }
            } else {
                ensure!(
                    (p, r) == (503, 200),
                    "{n} (replica): /primary {p}, /replica {r}"
                );
                ensure!(body["role"] == "replica", "{n}: /patroni role in {body}");
                ensure!(
                    body["replication_state"] == "streaming",
                    "{n}: /patroni replication_state in {body}"
                );
            }
            ensure!(
                body["state"] == "running" && body["timeline"] == 1,
                "{n}: state/timeline in {body}"
            );
            ensure!(
                body["patroni"]["scope"] == c.scope.as_str()
                    && body["patroni"]["name"] == n.as_str(),
                "{n}: patroni.scope/name in {body}"
            );
            ensure!(
                body["database_system_identifier"] == sysid.as_str(),
                "{n}: sysid in {body}"
            );
        }
        Ok(())
    })?;

    // pghactl list: Leader running, two Replicas streaming, one timeline.
    let rows = c.wait(
        "`pghactl list` to show a healthy cluster",
        Duration::from_secs(20),
        || {
            let out = stdout_ok(&c.ctl(&["list"])?, "pghactl list")?;
            let (title, rows) = parse_list(&out)?;
            ensure!(
                title.contains(&c.scope) && title.contains(&sysid),
                "title {title:?}"
            );
            ensure!(rows.len() == 3, "rows: {rows:?}");
            let roles: Vec<(&str, &str, &str)> = rows
                .iter()
                .map(|r| (r.member.as_str(), r.role.as_str(), r.state.as_str()))
                .collect();
            for r in &rows {
                let want = if r.member == leader {
                    ("Leader", "running")
                } else {
                    ("Replica", "streaming")
                };
                ensure!(
                    (r.role.as_str(), r.state.as_str()) == want,
                    "{roles:?}\n{out}"
                );
            }
            let tls: BTreeSet<&str> = rows.iter().map(|r| r.tl.as_str()).collect();
            ensure!(
                tls.len() == 1 && tls.contains("1"),
                "timelines {tls:?}\n{out}"
            );
            Ok(out)
        },
    )?;
    report(&format!("bootstrap: pghactl list\n{rows}"));

    let out = stdout_ok(&c.ctl(&["list", "-f", "json"])?, "pghactl list -f json")?;
    let v: Value =
        serde_json::from_str(&out).with_context(|| format!("list -f json is not JSON: {out}"))?;
    let arr = v
        .as_array()
        .ok_or_else(|| anyhow!("list -f json is not a list: {out}"))?;
    ensure!(arr.len() == 3, "{out}");
    for m in arr {
        for k in ["Cluster", "Member", "Host", "Role", "State", "TL"] {
            ensure!(m.get(k).is_some(), "no {k:?} in {m}");
        }
        let want = if m["Member"] == leader.as_str() {
            "Leader"
        } else {
            "Replica"
        };
        ensure!(m["Role"] == want, "{m}");
    }

    // The DCS-URL form of the CLI sees the same cluster.
    let out = stdout_ok(
        &c.ctl_dcs(&["list", &c.scope])?,
        "pghactl -d etcd3://... list",
    )?;
    let (_, rows) = parse_list(&out)?;
    ensure!(rows.len() == 3, "pghactl -d: {out}");

    // A new ttl puts every agent on a new lease: the leader key and every member key move onto
    // it (an idle member's key, left on the old lease, would expire with it).
    stdout_ok(
        &c.ctl(&["edit-config", "--force", "-s", "ttl=12"])?,
        "pghactl edit-config -s ttl=12",
    )?;
    c.wait(
        "the leader key and every member key on a lease granted with ttl=12",
        // A few loops (loop_wait is 1): sooner than the member data happens to change.
        Duration::from_secs(5),
        || {
            let mut keys = vec!["leader".to_string()];
            keys.extend(c.node_names().iter().map(|n| format!("members/{n}")));
            for key in &keys {
                let kv = c.etcd_get_kv(key)?.ok_or_else(|| anyhow!("no {key} key"))?;
                let (granted, _) = c.etcd_client().lease_ttl(kv.lease)?;
                ensure!(
                    granted == 12,
                    "{key} is on a lease granted with ttl {granted}"
                );
            }
            Ok(())
        },
    )?;

    c.pass();
    Ok(())
}
