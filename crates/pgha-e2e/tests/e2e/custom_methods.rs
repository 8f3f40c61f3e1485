//! Operators' own ways of making a data directory, as Patroni runs them:
//! * `bootstrap.method`: node1's cluster comes from a script (found relative to the agent's
//!   working directory) instead of initdb, then recovers with the method's `recovery_conf`
//!   before it is taken as the new primary;
//! * `create_replica_methods`: node2 is cloned by its own script (it gets the leader's
//!   connection string) after a first method failed; node3 falls back to `basebackup` with
//!   `postgresql.basebackup` options;
//! * a `no_leader` method: with every member stopped, node4 is restored from a base backup and
//!   the WAL archive, then follows node1 once that leads again.
//!
//! A bootstrap method that keeps failing makes the agent give up, naming the setting.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use pgha_e2e::{yaml_set, Cluster, ClusterOptions, Signal};
use serde_yaml_ng::Value;

use crate::common::{primary_timeline, skip};

const REPLICATION_USER: &str = "replicator";
const REPLICATION_PASSWORD: &str = "e2e-repl-pass";

fn script(path: &Path, body: &str) -> Result<()> {
    std::fs::write(path, format!("#!/bin/sh\n{body}"))
        .with_context(|| format!("write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// `--name=value` of the last argument list a script recorded in `file`.
fn arg(file: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .last()?
        .split(" --")
        .find_map(|a| a.trim_start_matches("--").strip_prefix(&format!("{name}=")))
        .map(str::to_string)
}

/// Records its arguments (one line) in `$PWD/NAME.args`, then parses `--datadir=`.
const PARSE_ARGS: &str = r#"echo "$*" >> "$(basename "$0" .sh).args"
for a in "$@"; do
  case "$a" in
    --datadir=*) datadir="${a#--datadir=}" ;;
    --connstring=*) connstring="${a#--connstring=}" ;;
    --backup=*) backup="${a#--backup=}" ;;
  esac
done
"#;

#[test]
fn custom_bootstrap_and_replica_methods() -> Result<()> {
    if skip("custom_bootstrap_and_replica_methods") {
        return Ok(());
    }
    let opts = ClusterOptions::default().nodes(4).customize(|spec, doc| {
        let node1 = spec.dir.parent().expect("node dir").join("node1");
        let archive = node1.join("wal_archive");
        let a = archive.display();
        let s = |v: &str| Value::String(v.to_string());
        let params = |key: &'static str| ["bootstrap", "dcs", "postgresql", "parameters", key];
        yaml_set(doc, &params("archive_mode"), s("on"));
        yaml_set(
            doc,
            &params("archive_command"),
            s(&format!("mkdir -p {a} && test ! -f {a}/%f && cp %p {a}/%f")),
        );
        // Replicas may fetch WAL from the archive (node4 has no upstream at first).
        yaml_set(
            doc,
            &["postgresql", "recovery_conf", "restore_command"],
            s(&format!("cp {a}/%f %p")),
        );
        match spec.name.as_str() {
            "node1" => {
                yaml_set(doc, &["bootstrap", "method"], s("from_script"));
                let m = |key: &'static str| ["bootstrap", "from_script", key];
                yaml_set(doc, &m("command"), s("./bootstrap.sh"));
                yaml_set(doc, &m("label"), s("e2e-bootstrap"));
                yaml_set(
                    doc,
                    &[
                        "bootstrap",
                        "from_script",
                        "recovery_conf",
                        "restore_command",
                    ],
                    s(&format!("cp {a}/%f %p")),
                );
                yaml_set(
                    doc,
                    &[
                        "bootstrap",
                        "from_script",
                        "recovery_conf",
                        "recovery_target_action",
                    ],
                    s("promote"),
                );
            }
            "node2" => {
                yaml_set(
                    doc,
                    &["postgresql", "create_replica_methods"],
                    serde_yaml_ng::from_str("[broken, own_clone, basebackup]").expect("yaml"),
                );
                yaml_set(doc, &["postgresql", "broken", "command"], s("./broken.sh"));
                yaml_set(
                    doc,
                    &["postgresql", "own_clone", "command"],
                    s("./clone.sh"),
                );
                yaml_set(doc, &["postgresql", "own_clone", "marker"], s("node2-mark"));
            }
            "node3" => {
                yaml_set(
                    doc,
                    &["postgresql", "create_replica_methods"],
                    serde_yaml_ng::from_str("[broken, basebackup]").expect("yaml"),
                );
                yaml_set(doc, &["postgresql", "broken", "command"], s("./broken.sh"));
                yaml_set(
                    doc,
                    &["postgresql", "basebackup"],
                    serde_yaml_ng::from_str("[{label: e2e-bb-label}, {max-rate: 500M}]")
                        .expect("yaml"),
                );
            }
            "node4" => {
                yaml_set(
                    doc,
                    &["postgresql", "create_replica_methods"],
                    serde_yaml_ng::from_str("[from_backup, basebackup]").expect("yaml"),
                );
                let m = |key: &'static str| ["postgresql", "from_backup", key];
                yaml_set(doc, &m("command"), s("./restore.sh"));
                yaml_set(doc, &m("no_leader"), Value::Bool(true));
                yaml_set(
                    doc,
                    &m("backup"),
                    s(&node1.join("base_backup").display().to_string()),
                );
                // It must not take over from the restored data: it waits for node1.
                yaml_set(doc, &["tags", "nofailover"], Value::Bool(true));
            }
            _ => {}
        }
    });
    let c = Cluster::prepare(opts)?;
    let dir = |n: &str| c.base.join(n);
    let bin = c.opts.bin_dir.clone();
    script(
        &dir("node1").join("bootstrap.sh"),
        &format!(
            "{PARSE_ARGS}{bin}/initdb -D \"$datadir\" -E UTF8 --locale=C.UTF-8 --data-checksums >/dev/null || exit 1\n\
             echo made-by-script > \"$datadir/made_by_script\"\n"
        ),
    )?;
    for n in ["node2", "node3"] {
        script(
            &dir(n).join("broken.sh"),
            &format!("{PARSE_ARGS}mkdir -p \"$datadir\" && echo junk > \"$datadir/junk\"\necho 'no backup here' >&2\nexit 3\n"),
        )?;
    }
    script(
        &dir("node2").join("clone.sh"),
        &format!("{PARSE_ARGS}exec {bin}/pg_basebackup -D \"$datadir\" -d \"$connstring\" -X stream -c fast\n"),
    )?;
    script(
        &dir("node4").join("restore.sh"),
        &format!("{PARSE_ARGS}mkdir -p \"$datadir\" && cp -a \"$backup\"/. \"$datadir\"/ && chmod 700 \"$datadir\"\n"),
    )?;
    c.start_etcd()?;

    // (a) The custom bootstrap.
    c.start_node("node1")?;
    let leader = c.wait_for_leader(Duration::from_secs(120))?;
    ensure!(leader == "node1", "{leader} leads");
    let lpg = c.pg("node1");
    c.wait(
        "node1 running as the primary",
        Duration::from_secs(60),
        || {
            ensure!(!lpg.in_recovery()?, "node1 is in recovery");
            Ok(())
        },
    )?;
    let args = dir("node1").join("bootstrap.args");
    ensure!(
        arg(&args, "scope").as_deref() == Some(c.scope.as_str()),
        "{args:?}"
    );
    ensure!(
        arg(&args, "datadir") == Some(c.data_dir("node1").display().to_string())
            && arg(&args, "label").as_deref() == Some("e2e-bootstrap"),
        "bootstrap arguments: {:?}",
        std::fs::read_to_string(&args)
    );
    ensure!(
        c.data_dir("node1").join("made_by_script").exists(),
        "the script's data directory is not the one running"
    );
    // It recovered (recovery_conf) and ended recovery: a new timeline.
    ensure!(
        primary_timeline(&lpg)? == 2,
        "node1 did not go through recovery"
    );
    let conf = std::fs::read_to_string(c.data_dir("node1").join("postgresql.conf"))?;
    ensure!(
        !conf.contains("restore_command") && !conf.contains("recovery_target_action"),
        "recovery settings left in postgresql.conf:\n{conf}"
    );
    let hba = std::fs::read_to_string(c.data_dir("node1").join("pg_hba.conf"))?;
    ensure!(
        hba.contains("host all all 127.0.0.1/32 md5") && !hba.contains("127.0.0.1/32 trust"),
        "pg_hba.conf after the bootstrap:\n{hba}"
    );
    ensure!(!c.data_dir("node1").join("recovery.signal").exists());
    let log1 = c.log_tail("node1", 400);
    ensure!(
        log1.contains("Running custom bootstrap script: ./bootstrap.sh"),
        "node1 log:\n{log1}"
    );

    // (b)+(d) Replicas from custom methods, after a failing one.
    c.start_node("node2")?;
    c.start_node("node3")?;
    c.wait_streaming(2, Duration::from_secs(120))?;
    let log2 = c.log_tail("node2", 400);
    ensure!(
        log2.contains("Error creating replica using method broken: postgresql.broken.command `./broken.sh` exited with exit code 3")
            && log2.contains("no backup here")
            && log2.contains("replica has been created using own_clone"),
        "node2 log:\n{log2}"
    );
    let args2 = dir("node2").join("clone.args");
    ensure!(
        arg(&args2, "connstring")
            == Some(format!(
                "dbname=postgres user={REPLICATION_USER} host=127.0.0.1 port={}",
                lpg.port
            ))
            && arg(&args2, "role").as_deref() == Some("replica")
            && arg(&args2, "marker").as_deref() == Some("node2-mark")
            && arg(&args2, "scope").as_deref() == Some(c.scope.as_str()),
        "clone.sh arguments: {:?}",
        std::fs::read_to_string(&args2)
    );
    ensure!(
        !c.data_dir("node2").join("junk").exists(),
        "the failed method's files were not cleaned up"
    );
    let log3 = c.log_tail("node3", 400);
    ensure!(
        log3.contains("postgresql.broken.command")
            && log3.contains("replica has been created using basebackup"),
        "node3 log:\n{log3}"
    );
    let label = std::fs::read_to_string(c.data_dir("node3").join("backup_label.old"))?;
    ensure!(
        label.contains("LABEL: e2e-bb-label"),
        "postgresql.basebackup options not used:\n{label}"
    );

    // (c) A replica restored while no leader exists.
    let backup = dir("node1").join("base_backup");
    let conninfo = format!(
        "host=127.0.0.1 port={} user={REPLICATION_USER} password={REPLICATION_PASSWORD}",
        lpg.port
    );
    let out = c.run_pg_tool(
        "pg_basebackup",
        &[
            "-D",
            &backup.display().to_string(),
            "-d",
            &conninfo,
            "-X",
            "stream",
            "-c",
            "fast",
        ],
    )?;
    ensure!(
        out.status.success(),
        "pg_basebackup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lpg.sql("CREATE TABLE after_backup(id int); INSERT INTO after_backup VALUES (7)")?;
    lpg.sql("SELECT pg_switch_wal()")?;
    for n in ["node3", "node2", "node1"] {
        c.kill_agent(n, Signal::SIGTERM)?;
        c.wait_agent_exit(n, Duration::from_secs(60))?;
    }
    ensure!(c.leader_name()?.is_none(), "a leader is still named");
    let off4 = c.start_node("node4")?;
    let pg4 = c.pg("node4");
    c.wait(
        "node4 restored, replaying the archive",
        Duration::from_secs(120),
        || {
            ensure!(pg4.in_recovery()?, "node4 is not in recovery");
            let n = pg4.sql_one("SELECT count(*) FROM after_backup WHERE id = 7")?;
            ensure!(n.as_deref() == Some("1"), "not replayed yet: {n:?}");
            Ok(())
        },
    )?;
    let log4 = c.log_since("node4", off4);
    ensure!(
        log4.contains("trying to bootstrap (without leader)")
            && log4.contains("replica has been created using from_backup"),
        "node4 log:\n{log4}"
    );
    ensure!(
        c.leader_name()?.is_none(),
        "someone leads while node1 is down"
    );
    let args4 = dir("node4").join("restore.args");
    ensure!(
        arg(&args4, "connstring").as_deref() == Some("")
            && arg(&args4, "no_leader").as_deref() == Some("True"),
        "restore.sh arguments: {:?}",
        std::fs::read_to_string(&args4)
    );
    // node1 comes back and leads; node4 streams from it.
    c.start_node("node1")?;
    let leader = c.wait_for_leader(Duration::from_secs(120))?;
    ensure!(leader == "node1", "{leader} leads");
    c.wait(
        "node4 streaming from node1",
        Duration::from_secs(120),
        || {
            let rows = lpg.sql(
                "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
            )?;
            ensure!(
                rows.iter().flatten().flatten().any(|n| n == "node4"),
                "streaming to: {rows:?}"
            );
            Ok(())
        },
    )?;
    lpg.sql("INSERT INTO after_backup VALUES (8)")?;
    c.wait("the new row on node4", Duration::from_secs(60), || {
        let n = pg4.sql_one("SELECT count(*) FROM after_backup")?;
        ensure!(n.as_deref() == Some("2"), "rows: {n:?}");
        Ok(())
    })?;
    c.pass();
    Ok(())
}

#[test]
fn failing_bootstrap_method_gives_up_naming_the_setting() -> Result<()> {
    if skip("failing_bootstrap_method_gives_up_naming_the_setting") {
        return Ok(());
    }
    let opts = ClusterOptions::default().nodes(1).customize(|_, doc| {
        yaml_set(doc, &["bootstrap", "method"], "restore".into());
        yaml_set(
            doc,
            &["bootstrap", "restore", "command"],
            "./restore.sh --from nowhere".into(),
        );
    });
    let c = Cluster::prepare(opts)?;
    script(
        &c.base.join("node1/restore.sh"),
        "echo \"backup $2 not found\" >&2\nexit 2\n",
    )?;
    c.start_etcd()?;
    c.start_node("node1")?;
    let status = c.wait_agent_exit("node1", Duration::from_secs(120))?;
    ensure!(!status.success(), "the agent exited with {status}");
    let log = c.log_tail("node1", 200);
    ensure!(
        log.contains(
            "bootstrap.restore.command `./restore.sh --from nowhere` failed with exit code 2"
        ) && log.contains("backup nowhere not found")
            && log.contains("giving up"),
        "node1 log:\n{log}"
    );
    ensure!(
        c.etcd_get("initialize")?.is_none(),
        "the initialize key was not released"
    );
    c.pass();
    Ok(())
}
