//! (g) A node whose data directory belongs to another cluster (different system identifier):
//! its agent exits non-zero quickly with a CRITICAL "system ID mismatch" naming both
//! identifiers, and leaves the data directory untouched.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions};

use crate::common::{secs, skip};

/// Top-level entries of a data dir with, for regular files, their contents.
fn snapshot(dir: &std::path::Path) -> Result<BTreeMap<String, Option<Vec<u8>>>> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let content = if e.file_type()?.is_file() {
            Some(std::fs::read(e.path())?)
        } else {
            None
        };
        m.insert(name, content);
    }
    Ok(m)
}

#[test]
fn foreign_data_directory_is_refused() -> Result<()> {
    if skip("foreign_data_directory_is_refused") {
        return Ok(());
    }
    let mut c = Cluster::start(ClusterOptions::default())?;
    c.wait_for_leader(Duration::from_secs(90))?;
    let cluster_sysid = c.wait("the initialize key", Duration::from_secs(30), || {
        let v = c.etcd_get("initialize")?.unwrap_or_default();
        ensure!(!v.is_empty(), "initialize is {v:?}");
        Ok(v)
    })?;

    let name = c.prepare_node()?;
    let data = c.data_dir(&name);
    let data_s = data.display().to_string();
    let out = c.run_pg_tool(
        "initdb",
        &[
            "-D",
            &data_s,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
    )?;
    ensure!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let foreign_sysid = c.controldata_sysid(&data)?;
    ensure!(
        foreign_sysid != cluster_sysid,
        "initdb produced the cluster's own sysid?"
    );
    let before = snapshot(&data)?;

    let mark = c.start_node(&name)?;
    let t0 = Instant::now();
    let status = c.wait_agent_exit(&name, Duration::from_secs(30))?;
    let took = t0.elapsed();
    report(&format!(
        "foreign data dir: agent of {name} exited ({status}) after {:.1}s",
        secs(took)
    ));
    let log = c.log_since(&name, mark);
    ensure!(!status.success(), "agent of {name} exited successfully");
    ensure!(
        took <= Duration::from_secs(20),
        "agent took {:.1}s to give up (> 20s)",
        secs(took)
    );
    ensure!(
        log.contains("CRITICAL"),
        "no CRITICAL line in the log of {name}"
    );
    ensure!(
        log.to_lowercase().contains("system id mismatch"),
        "no \"system ID mismatch\" in the log of {name}"
    );
    ensure!(
        log.contains(&cluster_sysid),
        "the log does not name the cluster's sysid {cluster_sysid}"
    );
    ensure!(
        log.contains(&foreign_sysid),
        "the log does not name the data dir's sysid {foreign_sysid}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("CRITICAL"))
        .unwrap_or_default();
    report(&format!("foreign data dir: {line}"));

    let after = snapshot(&data)?;
    let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let changed: Vec<&String> = after
        .iter()
        .filter(|(k, v)| before.get(*k).map(|b| b != *v).unwrap_or(false))
        .map(|(k, _)| k)
        .collect();
    ensure!(
        added.is_empty() && changed.is_empty() && after.len() == before.len(),
        "data dir of {name} was modified: added {added:?}, changed {changed:?}"
    );
    ensure!(
        c.postmaster_pid(&name).is_none(),
        "a postmaster runs on the foreign data dir"
    );
    // The cluster itself is unaffected and never listed the intruder as its member.
    let leader = c.wait_for_leader(Duration::from_secs(10))?;
    ensure!(leader != name, "the foreign node leads");
    c.pass();
    Ok(())
}
