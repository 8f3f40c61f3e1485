//! (d) Load through HAProxy's primary port while the leader changes, as the seeds test it:
//! `pgbench -i`, then `pgbench -c 4 -P 1` (as the postgres user, password in PGPASSWORD) for a
//! fixed window, once with `pghactl switchover --force` and once with a kill -9 of the leader's
//! agent and postmaster, both 5 s into the window. pgbench ends a client at its first error and
//! the run when every client is gone, so the window is covered by restarting pgbench until it is
//! over; the report gives runs, transactions, failed transactions, aborted clients and the
//! longest gap between two progress reports with tps > 0.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use pgha_e2e::config::{SUPERUSER, SUPERUSER_PASSWORD};
use pgha_e2e::proc::{postgres_identity, run_as, run_with_timeout, RunAs};
use pgha_e2e::{report, Cluster, ClusterOptions, Signal};

use crate::common::{skip, stdout_ok};
use crate::prod_support::{no_haproxy, start_edited, Haproxy};

const NAME: &str = "pgbench_through_haproxy_switchover_and_kill";
const CLIENTS: &str = "4";
/// When the leader change happens, seconds into the window.
const EVENT_AT: Duration = Duration::from_secs(5);

/// How to run pgbench against HAProxy's primary port.
#[derive(Clone)]
struct Bench {
    bin: PathBuf,
    port: u16,
    who: Option<RunAs>,
}

/// What pgbench reported over one window (several runs).
#[derive(Debug, Default)]
struct Totals {
    runs: u32,
    transactions: u64,
    failed: u64,
    aborted_clients: u64,
    /// Seconds since the window started of every progress report with tps > 0.
    productive: Vec<f64>,
}

impl Totals {
    fn longest_gap(&self, window: f64) -> f64 {
        let mut points = vec![0.0];
        points.extend(&self.productive);
        points.push(window);
        points.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
    }
}

impl Bench {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            SUPERUSER,
        ])
        .args(args)
        .arg("postgres")
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "3")
        .env("LC_ALL", "C.UTF-8")
        .current_dir("/");
        run_as(&mut cmd, self.who);
        cmd
    }

    fn init(&self) -> Result<()> {
        let out = run_with_timeout(
            &mut self.command(&["-i", "-s", "1", "-q"]),
            None,
            Duration::from_secs(120),
        )?;
        ensure!(
            out.status.success(),
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Runs pgbench again and again until `window` has passed since `t0`.
    fn window(&self, t0: Instant, window: Duration) -> Result<Totals> {
        let mut t = Totals::default();
        while t0.elapsed() + Duration::from_secs(1) < window {
            let started = t0.elapsed().as_secs_f64();
            let secs = (window - t0.elapsed()).as_secs().max(1).to_string();
            let out = run_with_timeout(
                &mut self.command(&["-c", CLIENTS, "-T", &secs, "-P", "1", "-n"]),
                None,
                window + Duration::from_secs(30),
            )?;
            t.runs += 1;
            let text = format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            parse_run(&text, started, &mut t);
            if t0.elapsed().as_secs_f64() - started < 1.0 {
                // Could not even start (no primary behind the port yet).
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(t)
    }
}

/// Adds one pgbench run's summary and progress lines to `t`.
fn parse_run(text: &str, started: f64, t: &mut Totals) {
    let number = |s: &str| -> u64 {
        s.trim()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("number of transactions actually processed:") {
            t.transactions += number(v);
        } else if let Some(v) = line.strip_prefix("number of failed transactions:") {
            t.failed += number(v);
        } else if line.contains("client") && line.contains("aborted") {
            t.aborted_clients += 1;
        } else if let Some(v) = line.strip_prefix("progress: ") {
            let mut parts = v.split(", ");
            let at = parts
                .next()
                .and_then(|p| p.trim_end_matches(" s").parse::<f64>().ok());
            let tps = parts
                .next()
                .and_then(|p| p.trim_end_matches(" tps").parse::<f64>().ok());
            if let (Some(at), Some(tps)) = (at, tps) {
                if tps > 0.0 {
                    t.productive.push(started + at);
                }
            }
        }
    }
}

/// Runs the load for `window` on a thread while `event` happens `EVENT_AT` into it.
fn load_during(
    bench: &Bench,
    what: &str,
    window: Duration,
    event: impl FnOnce() -> Result<String>,
) -> Result<Totals> {
    let t0 = Instant::now();
    let b = bench.clone();
    let load = std::thread::spawn(move || b.window(t0, window));
    std::thread::sleep(EVENT_AT);
    let detail = event();
    let totals = load
        .join()
        .map_err(|_| anyhow!("the pgbench thread panicked"))??;
    let detail = detail?;
    let w = window.as_secs_f64();
    let gap = totals.longest_gap(w);
    report(&format!(
        "pgbench {what} ({detail}) through HAProxy :{}: {} pgbench runs over {w:.0}s, {} \
         transactions, {} failed transactions, {} aborted clients, longest gap between \
         productive progress reports {gap:.1}s",
        bench.port, totals.runs, totals.transactions, totals.failed, totals.aborted_clients
    ));
    let after = EVENT_AT.as_secs_f64() + 1.0;
    ensure!(
        totals.productive.iter().any(|&p| p > after),
        "no transaction went through after the {what}"
    );
    ensure!(totals.transactions > 0, "no transactions at all");
    Ok(totals)
}

#[test]
fn pgbench_through_haproxy_switchover_and_kill() -> Result<()> {
    if skip(NAME) || no_haproxy(NAME) {
        return Ok(());
    }
    let opts = ClusterOptions::default().exclusive();
    let ttl = opts.ttl;
    let c: Cluster = start_edited(opts, |_, _, yaml| yaml)?;
    let leader = c.leader_name()?.ok_or_else(|| anyhow!("no leader"))?;
    let h = Haproxy::start(&c)?;
    h.wait_primary(&c, &leader, Duration::from_secs(15))?;
    let bench = Bench {
        bin: PathBuf::from(&c.opts.bin_dir).join("pgbench"),
        port: h.primary_port,
        who: postgres_identity()?,
    };
    bench.init()?;

    // Switchover under load.
    let totals = load_during(&bench, "switchover", Duration::from_secs(15), || {
        stdout_ok(
            &c.ctl(&["switchover", &c.scope, "--force"])?,
            "pghactl switchover",
        )?;
        Ok(format!("switchover away from {leader}"))
    })?;
    ensure!(
        totals.longest_gap(15.0) <= 12.0,
        "switchover: writes stopped for {:.1}s",
        totals.longest_gap(15.0)
    );

    // Back to a healthy cluster, then a crash of the leader under load.
    let second = c.wait_for_leader(Duration::from_secs(30))?;
    c.wait_streaming(2, Duration::from_secs(60))?;
    h.wait_primary(&c, &second, Duration::from_secs(15))?;
    let window = Duration::from_secs(ttl + 20);
    let totals = load_during(&bench, "kill -9 of the leader", window, || {
        c.kill_agent(&second, Signal::SIGKILL)?;
        c.kill_postmaster(&second, Signal::SIGKILL)?;
        Ok(format!("agent and postmaster of {second} killed"))
    })?;
    let gap = totals.longest_gap(window.as_secs_f64());
    ensure!(
        gap <= (ttl + 12) as f64,
        "kill -9: writes stopped for {gap:.1}s (ttl {ttl})"
    );
    drop(h);
    c.pass();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pgbench_output() {
        let out = "\
pgbench (15.18 (Debian 15.18-0+deb12u1))
progress: 1.0 s, 512.0 tps, lat 7.793 ms stddev 3.154, 0 failed
progress: 2.0 s, 0.0 tps, lat 0.000 ms stddev 0.000, 0 failed
pgbench: error: client 2 aborted in command 8 (SQL) of script 0; FATAL:  terminating connection
progress: 7.0 s, 300.5 tps, lat 7.793 ms stddev 3.154, 0 failed
number of transactions actually processed: 1234
number of failed transactions: 3 (0.243%)
";
        let mut t = Totals::default();
        parse_run(out, 10.0, &mut t);
        assert_eq!((t.transactions, t.failed, t.aborted_clients), (1234, 3, 1));
        assert_eq!(t.productive, [11.0, 17.0]);
        assert_eq!(t.longest_gap(20.0), 11.0);
    }
}
