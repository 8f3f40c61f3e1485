//! Self-check of the harness without relying on the agent: directories and ownership, etcd
//! start/stop/restart and the etcdctl helpers, running PostgreSQL tools as postgres, and that
//! teardown kills a postmaster the harness did not start directly and removes the directory.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use anyhow::{ensure, Result};
use pgha_e2e::{pid_alive, Cluster, ClusterOptions};

use crate::common::skip;

#[test]
fn harness_self_check() -> Result<()> {
    if skip("harness_self_check") {
        return Ok(());
    }
    let c = Cluster::prepare(ClusterOptions::default().nodes(2))?;

    // Directories, modes, ownership, copied binaries.
    let base_meta = std::fs::metadata(&c.base)?;
    ensure!(
        base_meta.permissions().mode() & 0o777 == 0o755,
        "base dir mode"
    );
    for b in ["pgha", "pghactl"] {
        let m = std::fs::metadata(c.base.join("bin").join(b))?;
        ensure!(
            m.permissions().mode() & 0o755 == 0o755,
            "{b} not executable by all"
        );
    }
    let root = nix::unistd::Uid::effective().is_root();
    for n in c.node_names() {
        let dir = c.config_path(&n).parent().unwrap().to_path_buf();
        let m = std::fs::metadata(&dir)?;
        if root {
            let pg = nix::unistd::User::from_name("postgres")?.unwrap();
            ensure!(
                m.uid() == pg.uid.as_raw(),
                "{} not owned by postgres",
                dir.display()
            );
        }
        ensure!(c.config_path(&n).is_file(), "config of {n} missing");
        ensure!(
            !c.data_dir(&n).exists(),
            "data dir must be left to the agent"
        );
    }

    // etcd: put/get/del/keys, then an outage and a restart keeping the data.
    c.start_etcd()?;
    c.etcd_put("leader", "node1")?;
    c.etcd_put("members/node1", "-{\"starts\": \"with a dash\"}")?;
    ensure!(c.etcd_get("leader")?.as_deref() == Some("node1"));
    ensure!(c.etcd_get("members/node1")?.as_deref() == Some("-{\"starts\": \"with a dash\"}"));
    ensure!(c.etcd_keys()? == vec!["leader".to_string(), "members/node1".to_string()]);
    c.etcd_del("members/node1")?;
    ensure!(c.etcd_get("members/node1")?.is_none());
    c.stop_etcd()?;
    ensure!(
        c.etcd_get("leader").is_err(),
        "etcd still answers after stop_etcd"
    );
    c.start_etcd()?;
    ensure!(
        c.etcd_get("leader")?.as_deref() == Some("node1"),
        "etcd lost its data on restart"
    );

    // PostgreSQL tools as postgres; a postmaster started behind the harness's back.
    let data = c.data_dir("node1");
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
    let sysid = c.controldata_sysid(&data)?;
    ensure!(sysid.parse::<u64>().is_ok(), "sysid {sysid}");
    let port = c.pg("node1").port;
    let sock = c
        .config_path("node1")
        .parent()
        .unwrap()
        .display()
        .to_string();
    let opts = format!("-p {port} -k {sock} -c listen_addresses=127.0.0.1");
    let log = format!("{sock}/pg.log");
    let out = c.run_pg_tool(
        "pg_ctl",
        &[
            "-D", &data_s, "-o", &opts, "-l", &log, "-w", "-t", "60", "start",
        ],
    )?;
    ensure!(
        out.status.success(),
        "pg_ctl start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pm = c
        .postmaster_pid("node1")
        .ok_or_else(|| anyhow::anyhow!("no postmaster"))?;
    let got = c
        .pg("node1")
        .sql_one("SELECT system_identifier FROM pg_control_system()")?;
    ensure!(
        got.as_deref() == Some(sysid.as_str()),
        "sysid via SQL {got:?} != {sysid}"
    );

    let base = c.base.clone();
    c.pass();
    let keep = std::env::var("PGHA_E2E_KEEP")
        .map(|v| v == "1")
        .unwrap_or(false);
    ensure!(keep || !base.exists(), "teardown left {}", base.display());
    ensure!(
        pgha_e2e::wait_until(
            "postmaster gone",
            Duration::from_secs(5),
            Duration::from_millis(50),
            || {
                ensure!(!pid_alive(pm), "alive");
                Ok(())
            }
        )
        .is_ok(),
        "teardown left postmaster {pm} running"
    );
    Ok(())
}
