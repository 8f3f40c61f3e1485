//! Helpers shared by the operations scenarios (switchover, failover, edit-config, restart,
//! pause, reload/reinit, patronictl): `pghactl` with stdin and a chosen bound, REST calls with
//! any method and a long timeout, and "the cluster is healthy again" waits.

use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use pgha_e2e::{proc::run_with_timeout, Cluster};
use serde_json::Value;

use crate::common::{parse_list, stdout_ok, wal_receiver, ListRow};

/// `pghactl -c <node1.yml> ARGS`, `stdin` fed to it, killed after `timeout`.
pub fn ctl_io(
    c: &Cluster,
    args: &[&str],
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<Output> {
    let mut cmd = Command::new(c.base.join("bin").join("pghactl"));
    cmd.arg("-c")
        .arg(c.config_path("node1"))
        .args(args)
        .current_dir(&c.base);
    run_with_timeout(&mut cmd, stdin.map(str::as_bytes), timeout)
}

/// `pghactl ARGS` that must exit 0 within `timeout`: its stdout.
pub fn ctl_ok(c: &Cluster, args: &[&str], timeout: Duration) -> Result<String> {
    let out = ctl_io(c, args, None, timeout)?;
    stdout_ok(&out, &format!("pghactl {}", args.join(" ")))
}

/// Stdout and stderr of a finished command, for messages.
pub fn both(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn http() -> &'static reqwest::Client {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            // POST /switchover waits up to 2 * max(10, loop_wait) s for the result.
            .timeout(Duration::from_secs(40))
            .connect_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(0)
            .build()
            .expect("build the HTTP client")
    })
}

/// `METHOD http://127.0.0.1:<rest port of node><path>` with an optional JSON body:
/// (status, body text).
pub fn rest_call(
    c: &Cluster,
    node: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String)> {
    let url = c.rest(node).url(path);
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    pgha_e2e::client::runtime().block_on(async {
        let mut req = http().request(method.clone(), &url);
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.context("read the body")?;
        Ok((status, text))
    })
}

/// The leader key's value, which must exist.
pub fn leader(c: &Cluster) -> Result<String> {
    c.leader_name()?.ok_or_else(|| anyhow!("no leader key"))
}

/// Every node but `leader`.
pub fn others(c: &Cluster, leader: &str) -> Vec<String> {
    c.node_names().into_iter().filter(|n| n != leader).collect()
}

/// Waits until `want` holds the leader key, is out of recovery, and every other node streams
/// from it on its current timeline (WAL receiver `streaming` on that timeline). The timeline.
pub fn wait_healthy_under(c: &Cluster, want: &str, timeout: Duration) -> Result<u32> {
    c.wait(
        &format!("{want} leading with every other node streaming from it"),
        timeout,
        || {
            let l = leader(c)?;
            ensure!(l == want, "leader key names {l}");
            let pg = c.pg(want);
            ensure!(!pg.in_recovery()?, "{want} is in recovery");
            let tl = crate::common::primary_timeline(&pg)?;
            for n in others(c, want) {
                let (status, tli) = wal_receiver(&c.pg(&n))?;
                ensure!(
                    status == "streaming" && tli == tl,
                    "{n}: wal receiver {status} on timeline {tli}, leader on {tl}"
                );
            }
            // The agents agree (a replica still finishing its bootstrap job publishes
            // `creating replica` and is no failover candidate yet).
            for n in c.node_names() {
                let m = c.etcd_json(&format!("members/{n}"))?;
                ensure!(m["state"] == "running", "members/{n}: {m}");
                // A Patroni 4.1.5 member restarted after a kill -9 of its primary may keep
                // publishing role `demoted` while it streams (checked on PostgreSQL above);
                // pgha never publishes that role, so its nodes are held to `replica`.
                let ok = if n == want {
                    m["role"] == "primary"
                } else {
                    m["role"] == "replica" || m["role"] == "demoted"
                };
                ensure!(ok, "members/{n}: {m}");
            }
            Ok(tl)
        },
    )
}

/// `pghactl list` parsed: (raw output, rows).
pub fn list(c: &Cluster) -> Result<(String, Vec<ListRow>)> {
    let out = ctl_ok(c, &["list"], Duration::from_secs(30))?;
    let (_, rows) = parse_list(&out)?;
    Ok((out, rows))
}

/// The header cells of the `pghactl list` table.
pub fn list_header(out: &str) -> Result<Vec<String>> {
    let line = out
        .lines()
        .find(|l| l.starts_with("| Member"))
        .ok_or_else(|| anyhow!("no header row in:\n{out}"))?;
    Ok(line
        .trim_matches('|')
        .split('|')
        .map(|s| s.trim().to_string())
        .collect())
}

/// The cells of `member`'s row of the `pghactl list` table.
pub fn list_cells(out: &str, member: &str) -> Result<Vec<String>> {
    out.lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|s| s.trim().to_string())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().map(String::as_str) == Some(member))
        .ok_or_else(|| anyhow!("no row for {member} in:\n{out}"))
}

/// Seconds since the Unix epoch as an ISO 8601 UTC timestamp with `+00:00`.
pub fn iso_utc(epoch_secs: u64) -> String {
    let days = (epoch_secs / 86_400) as i64;
    let rem = epoch_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_timestamps() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(iso_utc(1_707_331_854), "2024-02-07T18:50:54+00:00");
        assert_eq!(iso_utc(951_782_400), "2000-02-29T00:00:00+00:00");
    }

    #[test]
    fn list_cells_and_header() {
        let out = "\
+ Cluster: x (1) ---+---------+-----------+----+-----------+-----------------+
| Member | Host     | Role    | State     | TL | Lag in MB | Pending restart |
+--------+----------+---------+-----------+----+-----------+-----------------+
| node1  | h:1      | Leader  | running   |  1 |           | *               |
+--------+----------+---------+-----------+----+-----------+-----------------+
";
        assert_eq!(list_header(out).unwrap().last().unwrap(), "Pending restart");
        assert_eq!(list_cells(out, "node1").unwrap()[6], "*");
        assert!(list_cells(out, "node2").is_err());
    }
}
