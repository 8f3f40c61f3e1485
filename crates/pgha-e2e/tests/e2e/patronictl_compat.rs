//! The real Patroni CLI (patronictl 4.1.5 from PyPI, in a virtualenv of Debian's python3) as a
//! black box against a pgha cluster: `list`, `switchover`, `edit-config`, `restart`, `pause`,
//! `resume` all exit 0 and `list` prints the table pghactl prints. When PyPI cannot be reached
//! the scenario is skipped with the reason printed.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use pgha_e2e::{proc::run_with_timeout, report, Cluster, ClusterOptions};

use crate::common::{parse_list, skip};
use crate::ops_common::{both, leader, list_header, others, wait_healthy_under};

const DEFAULT_VENV: &str = "/tmp/pgha-patroni-venv";
const PATRONI: &str = "4.1.5";
const MINUTE: Duration = Duration::from_secs(60);

fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    run_with_timeout(cmd, None, timeout)
}

fn patronictl_version(venv: &Path) -> Option<String> {
    let out = run(
        Command::new(venv.join("bin/patronictl")).arg("version"),
        MINUTE,
    )
    .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The venv's patronictl, installed on first use (cached in $PGHA_PATRONI_VENV or
/// /tmp/pgha-patroni-venv); `Ok(Err(reason))` when it cannot be installed here.
pub(crate) fn ensure_patronictl() -> Result<std::result::Result<PathBuf, String>> {
    let venv = PathBuf::from(std::env::var("PGHA_PATRONI_VENV").unwrap_or(DEFAULT_VENV.into()));
    let want = format!("patronictl version {PATRONI}");
    if patronictl_version(&venv).as_deref() == Some(want.as_str()) {
        return Ok(Ok(venv.join("bin/patronictl")));
    }
    // One installer at a time (cargo test threads, nextest processes).
    let lock_path = format!("{}.lock", venv.display());
    let mut file = Some(
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("open {lock_path}"))?,
    );
    let start = Instant::now();
    let _lock = loop {
        match Flock::lock(
            file.take().expect("put back"),
            FlockArg::LockExclusiveNonblock,
        ) {
            Ok(l) => break l,
            Err((f, _)) => file = Some(f),
        }
        ensure!(
            start.elapsed() < Duration::from_secs(900),
            "{lock_path} held for 15 min"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    if patronictl_version(&venv).as_deref() == Some(want.as_str()) {
        return Ok(Ok(venv.join("bin/patronictl")));
    }
    if !venv.join("bin/pip").is_file() {
        let make = || {
            run(
                Command::new("/usr/bin/python3")
                    .args(["-m", "venv"])
                    .arg(&venv),
                MINUTE,
            )
        };
        let mut out = make()?;
        if !out.status.success() {
            // Debian splits ensurepip into python3-venv.
            let apt = run(
                Command::new("apt-get").args(["install", "-y", "-q", "python3-venv"]),
                Duration::from_secs(600),
            )?;
            if !apt.status.success() {
                return Ok(Err(format!(
                    "python3 -m venv failed and apt-get install python3-venv failed: {}",
                    both(&apt)
                )));
            }
            out = make()?;
        }
        if !out.status.success() {
            return Ok(Err(format!(
                "python3 -m venv {}: {}",
                venv.display(),
                both(&out)
            )));
        }
    }
    let pip = run(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            "--timeout",
            "30",
            "--retries",
            "2",
            &format!("patroni[etcd3]=={PATRONI}"),
            "psycopg[binary]",
        ]),
        Duration::from_secs(900),
    );
    match pip {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Ok(Err(format!(
                "pip install patroni failed (PyPI unreachable?): {}",
                both(&out)
            )))
        }
        Err(e) => return Ok(Err(format!("pip install patroni did not finish: {e:#}"))),
    }
    match patronictl_version(&venv) {
        Some(v) if v == want => Ok(Ok(venv.join("bin/patronictl"))),
        other => bail!("installed patronictl reports {other:?}, want {want:?}"),
    }
}

/// `patronictl -c <node1.yml> ARGS`, which must exit 0: its stdout.
pub(crate) fn patronictl(
    c: &Cluster,
    bin: &Path,
    args: &[&str],
    timeout: Duration,
) -> Result<String> {
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(c.config_path("node1"))
        .args(args)
        .current_dir(&c.base);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("PATRONI") || k == "DCS_URL" {
            cmd.env_remove(&k);
        }
    }
    let out = run(&mut cmd, timeout)?;
    ensure!(
        out.status.success(),
        "patronictl {}: {}",
        args.join(" "),
        both(&out)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Title and header of a members table, checked against the default shape.
fn check_table(out: &str, scope: &str, sysid: &str, who: &str) -> Result<Vec<String>> {
    let (title, rows) = parse_list(out)?;
    ensure!(
        title.starts_with(&format!("+ Cluster: {scope} ({sysid}) ")),
        "{who}: title {title:?}"
    );
    let header = list_header(out)?;
    let want = [
        "Member",
        "Host",
        "Role",
        "State",
        "TL",
        "Receive LSN",
        "Lag",
        "Replay LSN",
        "Lag",
    ];
    ensure!(header[..] == want[..], "{who}: header {header:?}\n{out}");
    ensure!(rows.len() == 3, "{who}: {} rows\n{out}", rows.len());
    Ok(out.lines().map(str::to_string).collect())
}

#[test]
fn patronictl_against_pgha() -> Result<()> {
    if skip("patronictl_against_pgha") {
        return Ok(());
    }
    let bin = match ensure_patronictl()? {
        Ok(b) => b,
        Err(reason) => {
            report(&format!("patronictl_against_pgha: SKIPPED: {reason}"));
            return Ok(());
        }
    };
    let c = Cluster::start_healthy(ClusterOptions::default())?;
    let scope = c.scope.clone();
    let l = leader(&c)?;
    wait_healthy_under(&c, &l, MINUTE)?;
    let sysid = c
        .etcd_get("initialize")?
        .ok_or_else(|| anyhow!("no initialize key"))?;

    // list: the same table as pghactl's (row contents move: LSNs), once both settle.
    let theirs = c.wait(
        "patronictl and pghactl to print the same table",
        Duration::from_secs(20),
        || {
            let theirs = patronictl(&c, &bin, &["list"], MINUTE)?;
            let ours = crate::ops_common::ctl_ok(&c, &["list"], MINUTE)?;
            let a = check_table(&theirs, &scope, &sysid, "patronictl list")?;
            let b = check_table(&ours, &scope, &sysid, "pghactl list")?;
            ensure!(a == b, "patronictl:\n{theirs}\npghactl:\n{ours}");
            Ok(theirs)
        },
    );
    let theirs = match theirs {
        Ok(t) => t,
        // LSNs can keep moving; the shape is what must match.
        Err(e) => {
            report(&format!(
                "patronictl list vs pghactl list not byte-identical: {e:#}"
            ));
            let t = patronictl(&c, &bin, &["list"], MINUTE)?;
            check_table(&t, &scope, &sysid, "patronictl list")?;
            t
        }
    };
    report(&format!(
        "patronictl {PATRONI} list against pgha:\n{theirs}"
    ));

    // switchover (4.1 wants the leader with --force).
    let cand = others(&c, &l)[0].clone();
    let out = patronictl(
        &c,
        &bin,
        &[
            "switchover",
            &scope,
            "--leader",
            &l,
            "--candidate",
            &cand,
            "--force",
        ],
        MINUTE,
    )?;
    ensure!(
        out.contains(&format!("Successfully switched over to \"{cand}\"")),
        "{out}"
    );
    wait_healthy_under(&c, &cand, MINUTE)?;

    // edit-config, then back.
    for (v, n) in [("2", 2), ("1", 1)] {
        let out = patronictl(
            &c,
            &bin,
            &[
                "edit-config",
                &scope,
                "--force",
                "-s",
                &format!("loop_wait={v}"),
            ],
            MINUTE,
        )?;
        ensure!(out.contains("Configuration changed"), "{out}");
        let cfg = c.etcd_json("config")?;
        ensure!(cfg["loop_wait"] == n, "config after loop_wait={v}: {cfg}");
    }

    // restart of every member.
    let out = patronictl(
        &c,
        &bin,
        &["restart", &scope, "--force"],
        Duration::from_secs(180),
    )?;
    for n in c.node_names() {
        ensure!(
            out.contains(&format!("Success: restart on member {n}")),
            "restart: {out}"
        );
    }
    wait_healthy_under(&c, &cand, MINUTE)?;

    // pause / resume.
    let out = patronictl(&c, &bin, &["pause", &scope, "--wait"], MINUTE)?;
    ensure!(
        out.contains("Success: cluster management is paused"),
        "pause: {out}"
    );
    let out = patronictl(&c, &bin, &["list"], MINUTE)?;
    ensure!(
        out.contains(" Maintenance mode: on"),
        "list while paused:\n{out}"
    );
    let out = patronictl(&c, &bin, &["resume", &scope, "--wait"], MINUTE)?;
    ensure!(
        out.contains("Success: cluster management is resumed"),
        "resume: {out}"
    );
    let out = patronictl(&c, &bin, &["list"], MINUTE)?;
    ensure!(
        !out.contains("Maintenance mode"),
        "list after resume:\n{out}"
    );
    check_table(&out, &scope, &sysid, "patronictl list at the end")?;
    ensure!(leader(&c)? == cand, "leadership moved");
    c.pass();
    Ok(())
}
