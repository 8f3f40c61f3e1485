//! TLS on every link, with Patroni's keys: etcd on https loopback with client-certificate
//! authentication (`etcd3.protocol/cacert/cert/key`), the REST API over https with
//! `verify_client: required` (`restapi.certfile/keyfile/cafile`), pghactl with
//! `ctl.cacert/certfile/keyfile`. A private CA made at cluster start signs everything. A
//! switchover (pghactl -> REST over https) and a kill -9 failover (the replicas' leader race
//! over https) work; an agent given a CA that did not sign etcd's certificate exits saying so.
//! With PostgreSQL's links on TLS too (`postgresql.authentication.*.sslmode` and client
//! certificates, `hostssl ... clientcert=verify-ca`), replication, the agents' connections,
//! switchover, failover and the old leader's return all run over TLS; a missing client
//! certificate stops the agent naming the file.

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::{report, yaml_set, Cluster, ClusterOptions, PgEndpoint, Signal};

use crate::common::skip;

#[test]
fn tls_everywhere_switchover_and_failover() -> Result<()> {
    if skip("tls_everywhere_switchover_and_failover") {
        return Ok(());
    }
    let c = Cluster::start_healthy(ClusterOptions::default().with_tls())?;
    let leader = c.leader_name()?.ok_or_else(|| anyhow!("no leader"))?;
    for n in c.node_names() {
        let api = c.etcd_json(&format!("members/{n}"))?["api_url"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        ensure!(api.starts_with("https://"), "{n} publishes {api}");
    }

    // pghactl list: etcd over TLS with the client certificate of the config's etcd3 section.
    let out = c.ctl(&["list"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "pghactl list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in c.node_names() {
        ensure!(text.contains(&n), "pghactl list lacks {n}:\n{text}");
    }
    ensure!(text.contains("Leader"), "{text}");

    // The REST hardening of the TLS lab's config: https_extra_headers on answers, and the
    // allowlist (127.0.0.1) refusing an unsafe request from 127.0.0.2 with 403.
    let tls = c.node(&leader).spec.tls.clone().expect("a TLS lab");
    let port = c.node(&leader).spec.rest_port;
    let curl = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "5"])
            .arg("--cacert")
            .arg(&tls.ca)
            .arg("--cert")
            .arg(&tls.cert)
            .arg("--key")
            .arg(&tls.key)
            .args(args)
            .output()?;
        ensure!(out.status.success(), "curl {args:?}: {:?}", out.status);
        Ok(String::from_utf8_lossy(&out.stdout).to_lowercase())
    };
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");
    let head = curl(&["-o", "/dev/null", "-D", "-", &url("/liveness")])?;
    ensure!(
        head.contains("strict-transport-security: max-age=31536000"),
        "{head}"
    );
    let refused = curl(&[
        "--interface",
        "127.0.0.2",
        "-X",
        "POST",
        "-w",
        " %{http_code}",
        &url("/reload"),
    ])?;
    ensure!(refused == "access is denied 403", "{refused}");

    // Switchover: pghactl POSTs /switchover over https with its client certificate.
    let candidate = c
        .node_names()
        .into_iter()
        .find(|n| *n != leader)
        .expect("a replica");
    ctl_switchover(&c, &leader, &candidate)?;
    c.wait_streaming(2, Duration::from_secs(120))?;

    // The files for requests to the other members are read again on SIGHUP: one replica
    // (not node1, whose config pghactl reads) now trusts only an unrelated CA, the other may
    // not fail over, so the first is sure to run the leader race, and its request to the
    // second must fail the server-certificate check.
    let names = c.node_names();
    let broken = names
        .iter()
        .find(|n| **n != candidate && *n != "node1")
        .expect("a third node")
        .clone();
    let third = names
        .iter()
        .find(|n| **n != candidate && **n != broken)
        .expect("a third node")
        .clone();
    let offset = c.log_len(&broken);
    c.edit_config(&third, |y| {
        yaml_set(y, &["tags", "nofailover"], true.into())
    })?;
    c.kill_agent(&third, Signal::SIGHUP)?;
    c.edit_config(&broken, |y| {
        yaml_set(
            y,
            &["ctl", "cacert"],
            tls.other_ca.display().to_string().into(),
        )
    })?;
    c.kill_agent(&broken, Signal::SIGHUP)?;
    c.wait("both reloads", Duration::from_secs(30), || {
        ensure!(
            c.log_since(&broken, offset)
                .contains("reloaded the local configuration"),
            "{broken} has not reloaded"
        );
        let tags = &c.etcd_json(&format!("members/{third}"))?["tags"];
        ensure!(tags["nofailover"] == true, "{third}'s tags: {tags}");
        Ok(())
    })?;

    // kill -9 of the leader's agent and postmaster: the others race over https.
    let new_leader = kill9_failover(&c, &candidate)?;
    ensure!(new_leader == broken, "{new_leader} took over, not {broken}");
    let log = c.log_since(&broken, offset);
    ensure!(
        log.contains(&format!("Request failed to {third}: GET"))
            && !log.contains(&format!("Got response from {third}")),
        "{broken} reached {third} with the CA it read at start:\n{log}"
    );
    c.pass();
    Ok(())
}

#[test]
fn tls_wrong_ca_is_a_clear_error() -> Result<()> {
    if skip("tls_wrong_ca_is_a_clear_error") {
        return Ok(());
    }
    let opts = ClusterOptions::default()
        .nodes(1)
        .with_tls()
        .customize(|spec, y| {
            let other = spec.tls.as_ref().expect("a TLS cluster").other_ca.clone();
            yaml_set(y, &["etcd3", "cacert"], other.display().to_string().into());
        });
    let c = Cluster::start(opts)?;
    let log = failed_start_log(&c)?;
    ensure!(
        log.contains("not signed by the configured CA") && log.contains("other-ca.pem"),
        "{log}"
    );
    c.pass();
    Ok(())
}

/// kill -9 of `leader`'s agent and postmaster; the member that takes over.
fn kill9_failover(c: &Cluster, leader: &str) -> Result<String> {
    c.kill_agent(leader, Signal::SIGKILL)?;
    c.kill_postmaster(leader, Signal::SIGKILL)?;
    let others: Vec<String> = c.node_names().into_iter().filter(|n| n != leader).collect();
    c.wait(
        "a new leader after kill -9",
        Duration::from_secs(60),
        || {
            let l = c.leader_name()?.ok_or_else(|| anyhow!("no leader key"))?;
            ensure!(others.contains(&l), "leader key still names {l}");
            ensure!(!c.pg(&l).in_recovery()?, "{l} is in recovery");
            Ok(l)
        },
    )
}

/// The end of node1's log once its agent exited unsuccessfully.
fn failed_start_log(c: &Cluster) -> Result<String> {
    let st = c.wait("the agent to exit", Duration::from_secs(30), || {
        c.agent_exit("node1")
            .ok_or_else(|| anyhow!("still running"))
    })?;
    ensure!(!st.success(), "the agent exited with {st}");
    Ok(c.log_tail("node1", 30))
}

/// `pghactl switchover` from `leader` to `candidate` until the candidate leads and writes.
fn ctl_switchover(c: &Cluster, leader: &str, candidate: &str) -> Result<()> {
    let scope = c.scope.clone();
    // Retried: right after start the replicas' member keys may not say `running` yet, and the
    // leader then refuses (412), which pghactl reports with exit status 0 as patronictl does.
    c.wait(
        "pghactl switchover to succeed",
        Duration::from_secs(60),
        || {
            if c.leader_name()?.as_deref() == Some(candidate) {
                return Ok(());
            }
            let out = c.ctl(&[
                "switchover",
                &scope,
                "--leader",
                leader,
                "--candidate",
                candidate,
                "--force",
            ])?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            ensure!(
                text.contains("Successfully switched over"),
                "pghactl switchover: {text}"
            );
            Ok(())
        },
    )?;
    c.wait("the candidate to lead", Duration::from_secs(60), || {
        let l = c.leader_name()?.ok_or_else(|| anyhow!("no leader key"))?;
        ensure!(l == candidate, "leader is {l}");
        ensure!(!c.pg(&l).in_recovery()?, "{l} is in recovery");
        Ok(())
    })?;
    Ok(())
}

/// The walsenders of `leader` and whether each runs over TLS: (application_name, ssl).
fn walsenders_ssl(c: &Cluster, leader: &str) -> Result<Vec<(String, bool)>> {
    let rows = c.pg(leader).sql(
        "SELECT a.application_name, s.ssl::text FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.backend_type = 'walsender' ORDER BY 1",
    )?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let name = r.first().cloned().flatten().unwrap_or_default();
            let ssl = r.get(1).cloned().flatten().as_deref() == Some("true");
            (name, ssl)
        })
        .collect())
}

/// Every member streams from `leader` over TLS (`pg_stat_ssl.ssl` of its walsender).
fn wait_replication_over_tls(c: &Cluster, leader: &str, replicas: usize) -> Result<()> {
    c.wait(
        &format!("{replicas} walsenders over TLS on {leader}"),
        Duration::from_secs(120),
        || {
            let senders = walsenders_ssl(c, leader)?;
            let members = c.node_names();
            let ours: Vec<_> = senders
                .iter()
                .filter(|(n, _)| members.contains(n))
                .collect();
            ensure!(
                ours.len() >= replicas,
                "walsenders of {leader}: {senders:?}"
            );
            ensure!(
                ours.iter().all(|(_, ssl)| *ssl),
                "a walsender without TLS on {leader}: {senders:?}"
            );
            Ok(())
        },
    )?;
    Ok(())
}

/// PostgreSQL's links too: `ssl: on`, pg_hba with only `hostssl ... clientcert=verify-ca` TCP
/// rules, every database user with `sslmode: verify-full` and a client certificate. Replicas
/// made by pg_basebackup stream over TLS, the agents' own connections use TLS, a plain TCP
/// connection is refused; switchover and a kill -9 failover work, and the old leader comes
/// back through pg_rewind over TLS.
#[test]
fn pg_tls_switchover_failover_and_rewind() -> Result<()> {
    if skip("pg_tls_switchover_failover_and_rewind") {
        return Ok(());
    }
    let c = Cluster::start_healthy(ClusterOptions::default().with_pg_tls())?;
    let leader = c.leader_name()?.ok_or_else(|| anyhow!("no leader"))?;
    wait_replication_over_tls(&c, &leader, 2)?;

    // The agent's own connections (application_name pgha) run over TLS too.
    let rows = c.pg(&leader).sql(
        "SELECT s.ssl::text FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'pgha'",
    )?;
    ensure!(
        !rows.is_empty()
            && rows
                .iter()
                .all(|r| r.first().cloned().flatten().as_deref() == Some("true")),
        "the agent's connections on {leader}: {rows:?}"
    );

    // Without TLS, TCP connections are refused by pg_hba.
    let plain = PgEndpoint {
        name: leader.clone(),
        port: c.pg(&leader).port,
        socket_dir: None,
    };
    let err = match plain.sql("SELECT 1") {
        Ok(_) => return Err(anyhow!("a plain TCP connection to {leader} was accepted")),
        Err(e) => format!("{e:#}"),
    };
    ensure!(err.contains("no pg_hba.conf entry"), "{err}");

    let candidate = c
        .node_names()
        .into_iter()
        .find(|n| *n != leader)
        .expect("a replica");
    ctl_switchover(&c, &leader, &candidate)?;
    wait_replication_over_tls(&c, &candidate, 2)?;

    // kill -9 of the leader's agent and postmaster; a replica takes over.
    let old = candidate;
    let new = kill9_failover(&c, &old)?;
    c.pg(&new)
        .sql("CREATE TABLE after_failover AS SELECT 1 AS x")?;

    // The old leader comes back as a replica (pg_rewind or a restart on the new timeline, over
    // TLS) and streams over TLS.
    let mark = c.start_node(&old)?;
    wait_replication_over_tls(&c, &new, 2)?;
    c.wait(
        &format!("{old} to have the new table"),
        Duration::from_secs(60),
        || {
            let rows = c.pg(&old).sql("SELECT count(*) FROM after_failover")?;
            ensure!(c.pg(&old).in_recovery()?, "{old} is not a replica");
            ensure!(!rows.is_empty(), "no rows");
            Ok(())
        },
    )?;
    let log = c.log_since(&old, mark);
    report(&format!(
        "pg_tls: {old} came back {} pg_rewind",
        if log.contains("pg_rewind finished") {
            "through"
        } else {
            "without"
        }
    ));
    c.pass();
    Ok(())
}

#[test]
fn pg_tls_missing_client_certificate_is_named() -> Result<()> {
    if skip("pg_tls_missing_client_certificate_is_named") {
        return Ok(());
    }
    let opts = ClusterOptions::default()
        .nodes(1)
        .with_pg_tls()
        .customize(|spec, y| {
            let missing = spec.dir.join("missing-replicator.crt");
            yaml_set(
                y,
                &["postgresql", "authentication", "replication", "sslcert"],
                missing.display().to_string().into(),
            );
        });
    let c = Cluster::start(opts)?;
    let log = failed_start_log(&c)?;
    ensure!(
        log.contains("postgresql.authentication.replication")
            && log.contains("missing-replicator.crt")
            && log.contains("sslcert"),
        "{log}"
    );
    c.pass();
    Ok(())
}

/// The certificate serials the agent of `node` presents on its TLS connections to `on`
/// (application_name pgha, the node's own superuser certificate `CN=su-<node>`).
fn agent_serials(c: &Cluster, on: &str, node: &str) -> Result<Vec<String>> {
    let rows = c.pg(on).sql(&format!(
        "SELECT s.client_serial::text FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'pgha' AND s.ssl AND s.client_dn = '/CN=su-{node}' \
         ORDER BY 1"
    ))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.first().cloned().flatten())
        .collect())
}

/// Sets `postgresql.authentication.<role>.<key>` in `node`'s configuration and SIGHUPs its
/// agent.
fn set_and_reload(c: &Cluster, node: &str, role: &str, key: &str, value: &str) -> Result<()> {
    c.edit_config(node, |y| {
        yaml_set(
            y,
            &["postgresql", "authentication", role, key],
            value.into(),
        )
    })?;
    c.kill_agent(node, Signal::SIGHUP)
}

/// Until the agent of `node` connects to itself with exactly one certificate serial, other
/// than `not` (when given); that serial.
fn wait_one_serial(c: &Cluster, node: &str, not: Option<&str>) -> Result<String> {
    c.wait(
        &format!("{node}'s agent connections with one certificate"),
        Duration::from_secs(60),
        || {
            let serials = agent_serials(c, node, node)?;
            match serials.as_slice() {
                [one] if Some(one.as_str()) != not => Ok(one.clone()),
                _ => Err(anyhow!(
                    "serials of {node}'s agent connections: {serials:?}"
                )),
            }
        },
    )
}

/// Reload of PostgreSQL's TLS settings (issue 12): each agent's superuser has a certificate
/// of its own. Rotated in place (same paths, a new certificate from the same CA) + SIGHUP:
/// the agent's next connections present the new one. A replica whose replication user's
/// sslmode changes rewrites primary_conninfo and its walreceiver reconnects with it. A CA
/// path that does not exist is refused at SIGHUP with the file named, and the agent goes on
/// connecting with what it read before.
#[test]
fn pg_tls_reload_rotated_certificate_and_refused_ca() -> Result<()> {
    if skip("pg_tls_reload_rotated_certificate_and_refused_ca") {
        return Ok(());
    }
    let opts = ClusterOptions::default()
        .nodes(2)
        .with_pg_tls()
        .customize(|spec, y| {
            for (k, f) in [("sslcert", "su.crt"), ("sslkey", "su.key")] {
                yaml_set(
                    y,
                    &["postgresql", "authentication", "superuser", k],
                    spec.dir.join(f).display().to_string().into(),
                );
            }
        });
    let c = Cluster::prepare(opts)?;
    let su_files = |n: &str| {
        let dir = c.node(n).spec.dir.clone();
        (dir.join("su.crt"), dir.join("su.key"))
    };
    for n in c.node_names() {
        let (crt, key) = su_files(&n);
        c.issue_cert(&crt, &key, &[&format!("su-{n}")])?;
    }
    c.start_etcd()?;
    for n in c.node_names() {
        c.start_node(&n)?;
    }
    let leader = c.wait_for_leader(Duration::from_secs(90))?;
    c.wait_streaming(1, Duration::from_secs(120))?;
    let replica = c
        .node_names()
        .into_iter()
        .find(|n| *n != leader)
        .expect("a replica");

    // Rotation in place + SIGHUP: the next connections use the new certificate.
    let first = wait_one_serial(&c, &leader, None)?;
    let (crt, key) = su_files(&leader);
    c.issue_cert(&crt, &key, &[&format!("su-{leader}")])?;
    let t0 = std::time::Instant::now();
    c.kill_agent(&leader, Signal::SIGHUP)?;
    let second = wait_one_serial(&c, &leader, Some(&first))?;
    report(&format!(
        "pg_tls reload: {leader}'s agent presented the rotated certificate {:.1}s after SIGHUP",
        t0.elapsed().as_secs_f64()
    ));

    // The replication user's sslmode on the replica: primary_conninfo rewritten, the
    // walreceiver reconnects with it.
    set_and_reload(&c, &replica, "replication", "sslmode", "verify-ca")?;
    c.wait(
        "the replica's walreceiver with sslmode=verify-ca",
        Duration::from_secs(60),
        || {
            let conninfo = c
                .pg(&replica)
                .sql_one("SELECT conninfo FROM pg_stat_wal_receiver WHERE status = 'streaming'")?
                .unwrap_or_default();
            ensure!(conninfo.contains("sslmode=verify-ca"), "{conninfo:?}");
            Ok(())
        },
    )?;

    // A CA path that does not exist: refused naming it; the previous settings stay.
    let mark = c.log_len(&leader);
    set_and_reload(
        &c,
        &leader,
        "superuser",
        "sslrootcert",
        "/nonexistent/wrong-ca.pem",
    )?;
    c.wait(
        "the refused reload in the log",
        Duration::from_secs(30),
        || {
            let log = c.log_since(&leader, mark);
            ensure!(
                log.contains("keeping the current configuration")
                    && log.contains("sslrootcert /nonexistent/wrong-ca.pem"),
                "{log}"
            );
            Ok(())
        },
    )?;
    // Its connection cut: the agent connects again with the certificate it had.
    c.pg(&leader).sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgha' \
         AND pid <> pg_backend_pid()",
    )?;
    let again = wait_one_serial(&c, &leader, None)?;
    ensure!(
        again == second,
        "after the refused reload: {again}, before: {second}"
    );
    ensure!(c.agent_running(&leader), "{leader}'s agent stopped");
    ensure!(
        c.leader_name()?.as_deref() == Some(leader.as_str()),
        "{leader} lost the leader key"
    );
    c.pass();
    Ok(())
}
