//! TLS on every link, with Patroni's keys: etcd on https loopback with client-certificate
//! authentication (`etcd3.protocol/cacert/cert/key`), the REST API over https with
//! `verify_client: required` (`restapi.certfile/keyfile/cafile`), pghactl with
//! `ctl.cacert/certfile/keyfile`. A private CA made at cluster start signs everything. A
//! switchover (pghactl -> REST over https) and a kill -9 failover (the replicas' leader race
//! over https) work; an agent given a CA that did not sign etcd's certificate exits saying so.

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::{yaml_set, Cluster, ClusterOptions, Signal};

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
    let scope = c.scope.clone();
    // Retried: right after start the replicas' member keys may not say `running` yet, and the
    // leader then refuses (412), which pghactl reports with exit status 0 as patronictl does.
    c.wait(
        "pghactl switchover to succeed",
        Duration::from_secs(60),
        || {
            if c.leader_name()?.as_deref() == Some(candidate.as_str()) {
                return Ok(());
            }
            let out = c.ctl(&[
                "switchover",
                &scope,
                "--leader",
                &leader,
                "--candidate",
                &candidate,
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
    c.wait_streaming(2, Duration::from_secs(120))?;

    // kill -9 of the leader's agent and postmaster: the others race over https.
    let old = candidate;
    c.kill_agent(&old, Signal::SIGKILL)?;
    c.kill_postmaster(&old, Signal::SIGKILL)?;
    let others: Vec<String> = c.node_names().into_iter().filter(|n| *n != old).collect();
    c.wait(
        "a new leader after kill -9",
        Duration::from_secs(60),
        || {
            let l = c.leader_name()?.ok_or_else(|| anyhow!("no leader key"))?;
            ensure!(others.contains(&l), "leader key still names {l}");
            ensure!(!c.pg(&l).in_recovery()?, "{l} is in recovery");
            Ok(())
        },
    )?;
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
    let st = c.wait("the agent to exit", Duration::from_secs(30), || {
        c.agent_exit("node1")
            .ok_or_else(|| anyhow!("still running"))
    })?;
    ensure!(!st.success(), "the agent exited with {st}");
    let log = c.log_tail("node1", 30);
    ensure!(
        log.contains("not signed by the configured CA") && log.contains("other-ca.pem"),
        "{log}"
    );
    c.pass();
    Ok(())
}
