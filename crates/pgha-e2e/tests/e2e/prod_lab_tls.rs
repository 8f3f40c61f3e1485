//! `scripts/cluster.sh up --tls` (private directory, free port offset, the debug binaries):
//! the lab comes up healthy with TLS on every link. pghactl lists it (etcd over https with a
//! client certificate, ctl.* of node1.yml); HAProxy's checks are `check-ssl` with a client
//! certificate and route a write to the leader; PostgreSQL takes TCP connections only over TLS
//! with a client certificate, and the replicas stream over TLS (pg_stat_ssl of the
//! walsenders). With Prometheus installed the lab runs `--monitoring` too, and Prometheus
//! scrapes every agent and etcd over https with its client certificate. `down` leaves nothing
//! running.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use pgha_e2e::cluster::exclusive_lock;
use pgha_e2e::proc::run_with_timeout;
use pgha_e2e::{locate_binaries, report};

use crate::common::skip;
use crate::prod_lab::{free_offset, missing_packages, reap_stale_labs, Lab, Shape};
use crate::prod_monitoring::{
    find_program, monitoring_offset, prometheus_port, wait_targets_up, NODES,
};
use crate::prod_support::no_haproxy;

const NAME: &str = "lab_script_tls_up";
const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

/// `psql -Atc SQL` through 127.0.0.1:`port` as the lab's superuser, with node1's client
/// certificate when `tls`; (success, stdout + stderr).
fn psql(lab: &Lab, port: u16, tls: bool, sql: &str) -> Result<(bool, String)> {
    let t = lab.dir.join("tls");
    let mut cmd = Command::new(PSQL);
    cmd.args([
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-Atc",
        sql,
    ])
    .arg("-p")
    .arg(port.to_string())
    .env("PGPASSWORD", "lab-su-pass")
    .env("PGCONNECT_TIMEOUT", "5");
    if tls {
        cmd.env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", t.join("ca.pem"))
            .env("PGSSLCERT", t.join("node1.crt"))
            .env("PGSSLKEY", t.join("node1.key"));
    } else {
        cmd.env("PGSSLMODE", "disable");
    }
    let out = run_with_timeout(&mut cmd, None, Duration::from_secs(20))?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

fn tls_lab(bin: &Path) -> Result<String> {
    let monitoring = find_program("prometheus").is_some();
    let shape = Shape {
        nodes: NODES,
        etcd: 1,
        offset: if monitoring {
            monitoring_offset()?
        } else {
            free_offset(NODES, 1)?
        },
    };
    let mut lab = Lab::new("tls", shape, bin)?;
    let t = Instant::now();
    let mut args = vec!["--nodes", "3", "--tls"];
    if monitoring {
        args.push("--monitoring");
    }
    let out = lab.up(&args, &[])?;
    let up_secs = t.elapsed().as_secs_f64();
    ensure!(
        out.contains("is up in") && out.contains("TLS:"),
        "up said:\n{out}"
    );
    let leader = lab.wait_healthy(Duration::from_secs(10))?;
    let leader_pg = shape.pg_port(leader.member.trim_start_matches("node").parse()?);

    let cfg = std::fs::read_to_string(lab.dir.join("haproxy.cfg"))?;
    ensure!(
        cfg.contains("check-ssl verify required ca-file") && cfg.contains("crt "),
        "haproxy.cfg:\n{cfg}"
    );
    // Through HAProxy's primary port (its checks passed over TLS), on the leader, over TLS.
    let (ok, text) = psql(
        &lab,
        shape.primary_port(),
        true,
        "SELECT inet_server_port(), ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )?;
    ensure!(
        ok && text.trim() == format!("{leader_pg}|t"),
        "psql through HAProxy: {text}"
    );
    let (ok, text) = psql(&lab, leader_pg, false, "SELECT 1")?;
    ensure!(
        !ok && text.contains("no pg_hba.conf entry"),
        "a plain connection to the leader: {text}"
    );
    let (ok, text) = psql(
        &lab,
        leader_pg,
        true,
        "SELECT a.application_name || '=' || s.ssl FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.backend_type = 'walsender'",
    )?;
    let over_tls = text.lines().filter(|l| l.ends_with("=true")).count();
    ensure!(
        ok && over_tls == NODES as usize - 1 && !text.contains("=false"),
        "walsenders of the leader: {text}"
    );
    if monitoring {
        wait_targets_up(prometheus_port(shape.offset))?;
    }
    let down_secs = lab.down_and_check()?;
    lab.passed = true;
    Ok(format!(
        "3 nodes + 1 etcd with --tls{} at offset {}: up {up_secs:.1}s, down {down_secs:.1}s",
        if monitoring { " --monitoring" } else { "" },
        shape.offset
    ))
}

#[test]
fn lab_script_tls_up() -> Result<()> {
    if skip(NAME) || no_haproxy(NAME) || missing_packages(NAME) {
        return Ok(());
    }
    let _lock = exclusive_lock()?;
    let bin = locate_binaries()?;
    reap_stale_labs(&bin);
    report(&format!(
        "lab: scripts/cluster.sh up --tls: {}",
        tls_lab(&bin)?
    ));
    Ok(())
}
