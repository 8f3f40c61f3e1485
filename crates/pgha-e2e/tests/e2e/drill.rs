//! `pghactl drill` on a lab made by `scripts/cluster.sh up` (private directory, free port
//! offset, the debug binaries), as CI's short run of the drills:
//! (a) bad input gets a clear error and touches nothing: a lab directory that does not exist,
//!     one that is no lab, a lab whose etcd cannot be reached, an unknown drill, `--rounds 0`;
//!     every process the lab recorded is still the same afterwards;
//! (b) three quick drills (kill -9 of the leader's postgres, a clean stop of the leader's
//!     agent, kill -9 of its agent and postmaster) are all `safe` and the table has the
//!     documented columns; a seeded random round prints its seed and schedule as JSON.
//! The lab is removed with `cluster.sh down` even when the test fails (prod_lab's Lab guard).

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use pgha_e2e::cluster::{exclusive_lock, SlotLock};
use pgha_e2e::proc::run_with_timeout;
use pgha_e2e::{locate_binaries, report};

use crate::common::skip;
use crate::prod_lab::{free_offset, missing_packages, reap_stale_labs, Lab, Shape};
use crate::prod_support::no_haproxy;

const NAME: &str = "drill_quick_run_on_the_lab";
const DRILL_TIMEOUT: Duration = Duration::from_secs(300);
/// The columns README's "Drills" section documents.
const COLUMNS: [&str; 9] = [
    "Drill",
    "Leader",
    "Acked",
    "Write gap",
    "Lost",
    "Overlap",
    "Healthy after",
    "Verdict",
    "#",
];

fn drill(bin: &Path, args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(bin.join("pghactl"));
    cmd.arg("drill").args(args);
    run_with_timeout(&mut cmd, None, DRILL_TIMEOUT)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `pghactl drill ARGS` must fail with `code` and say `needle`.
fn refused(bin: &Path, args: &[&str], code: i32, needle: &str) -> Result<()> {
    let out = drill(bin, args)?;
    let all = text(&out);
    ensure!(
        out.status.code() == Some(code) && all.contains(needle),
        "pghactl drill {} exited {:?}, expected {code} saying {needle:?}:\n{all}",
        args.join(" "),
        out.status.code()
    );
    Ok(())
}

/// `pghactl drill --lab DIR --drills DRILLS` must succeed, print the documented table and
/// call every drill `safe`; its table.
pub(crate) fn all_safe(bin: &Path, dir: &str, drills: &str) -> Result<String> {
    let out = drill(bin, &["--lab", dir, "--drills", drills])?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "pghactl drill failed ({}):\n{}",
        out.status,
        text(&out)
    );
    let header = stdout
        .lines()
        .find(|l| l.contains("| Drill "))
        .with_context(|| format!("no table header in:\n{stdout}"))?;
    for col in COLUMNS {
        ensure!(header.contains(col), "column {col:?} missing: {header}");
    }
    for name in drills.split(',') {
        let row = stdout
            .lines()
            .find(|l| l.contains(&format!("| {name} ")))
            .with_context(|| format!("no row for {name}:\n{stdout}"))?;
        ensure!(
            row.contains("| safe "),
            "{name} is not safe: {row}\n{}",
            text(&out)
        );
    }
    Ok(stdout)
}

/// A port nothing listens on (bound and released at once).
fn dead_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What a drill scenario needs before its lab: `None` when it is to be skipped (the reason
/// printed), else the e2e lock (held until dropped) and the binaries, stale labs removed.
pub(crate) fn lab_scenario(name: &str) -> Result<Option<(SlotLock, PathBuf)>> {
    if skip(name) || no_haproxy(name) || missing_packages(name) {
        return Ok(None);
    }
    let lock = exclusive_lock()?;
    let bin = locate_binaries()?;
    reap_stale_labs(&bin);
    Ok(Some((lock, bin)))
}

#[test]
fn drill_quick_run_on_the_lab() -> Result<()> {
    let Some((_lock, bin)) = lab_scenario(NAME)? else {
        return Ok(());
    };
    let t0 = Instant::now();
    let shape = Shape {
        nodes: 3,
        etcd: 1,
        offset: free_offset(3, 1)?,
    };
    let mut lab = Lab::new("drill", shape, &bin)?;
    let out = lab.up(&[], &[])?;
    ensure!(out.contains("is up in"), "up said:\n{out}");
    let dir = lab.dir.display().to_string();

    // (a) Bad input, before and around a running lab: nothing may be touched.
    let before = lab.recorded_pids();
    let missing = format!("{}/no-such-lab", lab.parent.display());
    refused(&bin, &["--lab", &missing], 1, "does not exist")?;
    let parent = lab.parent.display().to_string();
    refused(&bin, &["--lab", &parent], 1, "no lab.env")?;
    refused(
        &bin,
        &["--lab", &dir, "--drills", "no-such-drill"],
        2,
        "possible values",
    )?;
    refused(&bin, &["--lab", &dir, "--rounds", "0"], 2, "--rounds")?;
    // The lab's files (paths moved to the copy), with etcd on a port nothing listens on.
    let fake = lab.parent.join("unreachable");
    fs::create_dir(&fake)?;
    let etcd = format!("127.0.0.1:{}", 2379 + shape.offset);
    let nowhere = format!("127.0.0.1:{}", dead_port()?);
    for f in [
        "lab.env",
        "cluster.sh",
        "node1.yml",
        "node2.yml",
        "node3.yml",
    ] {
        let body = fs::read_to_string(lab.dir.join(f)).with_context(|| format!("read {f}"))?;
        let body = body
            .replace(&etcd, &nowhere)
            .replace(&dir, &fake.display().to_string());
        fs::write(fake.join(f), body)?;
    }
    let fake_s = fake.display().to_string();
    refused(&bin, &["--lab", &fake_s], 1, "unreachable")?;
    let after = lab.recorded_pids();
    ensure!(
        before == after,
        "bad input changed the lab's processes: {before:?} -> {after:?}"
    );

    // (b) Three quick drills, all safe, in the documented table.
    let drills = "postgres-kill,leader-stop,agent-postgres-kill";
    all_safe(&bin, &dir, drills)?;

    // A seeded random round: reproducible schedule, printed with its seed; JSON results.
    let out = drill(
        &bin,
        &[
            "--lab",
            &dir,
            "--drills",
            "postgres-kill",
            "--random",
            "--seed",
            "7",
            "--json",
        ],
    )?;
    ensure!(out.status.success(), "random round failed:\n{}", text(&out));
    ensure!(
        text(&out).contains("random schedule, seed 7: postgres-kill"),
        "no seed and schedule in:\n{}",
        text(&out)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).context("drill --json")?;
    ensure!(
        doc["seed"] == 7 && doc["safe"] == true && doc["results"][0]["verdict"] == "safe",
        "json: {doc}"
    );
    for key in ["write_gap", "lost", "overlap", "healthy_after", "verdict"] {
        ensure!(
            doc["results"][0].get(key).is_some(),
            "json result lacks {key}: {doc}"
        );
    }
    // (c) The same cluster named by its nodes' configuration files, as any test cluster on
    // this host would be: agents found by the file on their command line, started again by
    // the operator's command, the faults aimed at a chosen node.
    let configs: Vec<String> = (1..=3)
        .flat_map(|i| ["--config".to_string(), format!("{dir}/node{i}.yml")])
        .collect();
    let with = |extra: &[&str]| -> Vec<String> {
        configs
            .iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let before = lab.recorded_pids();
    for (args, code, needle) in [
        (
            with(&["--target", "node9"]),
            1,
            "--target node9: no such node",
        ),
        (
            vec!["--config".into(), format!("{dir}/node7.yml")],
            1,
            "node7.yml",
        ),
        (
            with(&["--etcd-pid", "1"]),
            1,
            "no etcd process runs with that PID",
        ),
        (
            with(&["--drills", "agent-postgres-kill"]),
            1,
            "give --start-command",
        ),
        (
            vec![
                "--lab".into(),
                dir.clone(),
                "--config".into(),
                format!("{dir}/node1.yml"),
            ],
            2,
            "cannot be used with",
        ),
    ] {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&bin, &refs, code, needle)?;
    }
    let after = lab.recorded_pids();
    ensure!(
        before == after,
        "bad input changed the cluster's processes: {before:?} -> {after:?}"
    );
    // The synchronous standby: the drill first hands it the leadership by a switchover.
    lab.wait_healthy(Duration::from_secs(120))?;
    let target = lab
        .list()?
        .into_iter()
        .find(|r| r.role == "Sync Standby")
        .map(|r| r.member)
        .context("no Sync Standby in the lab")?;
    let start = format!("PGHA_LAB_DIR={dir} bash {dir}/cluster.sh start-node {{index}}");
    let args = with(&[
        "--start-command",
        &start,
        "--target",
        &target,
        "--drills",
        "agent-postgres-kill",
        "--json",
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = drill(&bin, &refs)?;
    ensure!(
        out.status.success(),
        "drill --config failed:\n{}",
        text(&out)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).context("drill --json")?;
    let r = &doc["results"][0];
    ensure!(
        r["verdict"] == "safe" && r["target"] == target.as_str(),
        "drill --config on {target}: {doc}"
    );
    ensure!(
        text(&out).contains("switchover from") && text(&out).contains("cluster pgha-lab ("),
        "the drill does not name the cluster:\n{}",
        text(&out)
    );

    lab.down_and_check()?;
    lab.passed = true;
    report(&format!(
        "drill: {drills} and a seeded random round safe on a cluster.sh lab, agent-postgres-kill through --config ({:.1}s in all)",
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}
