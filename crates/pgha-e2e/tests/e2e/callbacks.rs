//! `postgresql.callbacks`, `before_stop` and `pre_promote`, with relative script paths (run
//! from the agent's working directory): every callback is called as `CMD ACTION ROLE SCOPE`;
//! a switchover tells the old leader `on_stop primary` then `on_role_change replica` and the new
//! one `on_role_change primary`; reload and restart are announced; a candidate whose
//! `pre_promote` fails gives the leader key back and another member leads.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use pgha_e2e::{report, yaml_set, Cluster, ClusterOptions};
use serde_json::json;

use crate::common::skip;
use crate::ops_common::{leader, rest_call, wait_healthy_under};

/// Appends its arguments, one call per line, to callbacks.log in the working directory.
const RECORD: &str = "#!/bin/sh\necho \"$*\" >> callbacks.log\n";
/// Records that it ran and refuses the promotion.
const REFUSE: &str = "#!/bin/sh\necho \"pre_promote refused\" >> callbacks.log\nexit 3\n";

fn write_script(path: &Path, body: &str) -> Result<()> {
    fs::write(path, body).with_context(|| format!("write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The calls recorded on `node` so far.
fn calls(c: &Cluster, node: &str) -> Vec<String> {
    fs::read_to_string(c.node(node).spec.dir.join("callbacks.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until `node` recorded every call of `want`, in that order, after its first `skip`
/// lines.
fn wait_calls(c: &Cluster, node: &str, skip: usize, want: &[String]) -> Result<()> {
    c.wait(
        &format!("{node} callbacks {want:?}"),
        Duration::from_secs(60),
        || {
            let got = calls(c, node);
            let mut rest = got.iter().skip(skip);
            for w in want {
                ensure!(
                    rest.any(|g| g == w),
                    "{node}: {w:?} missing (in order) from {got:?}"
                );
            }
            Ok(())
        },
    )
}

#[test]
fn callbacks_and_pre_promote() -> Result<()> {
    if skip("callbacks_and_pre_promote") {
        return Ok(());
    }
    let opts = ClusterOptions::default().nodes(3).customize(|spec, doc| {
        for cb in [
            "on_start",
            "on_stop",
            "on_restart",
            "on_reload",
            "on_role_change",
        ] {
            yaml_set(doc, &["postgresql", "callbacks", cb], "./record.sh".into());
        }
        yaml_set(
            doc,
            &["postgresql", "before_stop"],
            "./record.sh before_stop".into(),
        );
        if spec.name == "node3" {
            yaml_set(doc, &["postgresql", "pre_promote"], "./refuse.sh".into());
        }
    });
    let c = Cluster::prepare(opts)?;
    for n in c.node_names() {
        let dir = &c.node(&n).spec.dir;
        write_script(&dir.join("record.sh"), RECORD)?;
        write_script(&dir.join("refuse.sh"), REFUSE)?;
    }
    let scope = c.scope.clone();
    let call = |action: &str, role: &str| format!("{action} {role} {scope}");

    c.start_etcd()?;
    c.start_node("node1")?;
    let first = c.wait_for_leader(Duration::from_secs(90))?;
    ensure!(first == "node1", "{first} bootstrapped");
    c.start_node("node2")?;
    c.start_node("node3")?;
    wait_healthy_under(&c, "node1", Duration::from_secs(120))?;
    wait_calls(&c, "node1", 0, &[call("on_start", "primary")])?;
    for n in ["node2", "node3"] {
        wait_calls(&c, n, 0, &[call("on_start", "replica")])?;
    }
    report("callbacks: on_start primary/replica SCOPE from relative ./record.sh");

    // Switchover node1 -> node2: the old leader stops (before_stop, on_stop) and comes back as
    // a replica; the new one announces its new role.
    let (n1, n2) = (calls(&c, "node1").len(), calls(&c, "node2").len());
    let (code, text) = rest_call(
        &c,
        "node1",
        "POST",
        "/switchover",
        Some(&json!({"leader": "node1", "candidate": "node2"})),
    )?;
    ensure!(code == 200, "switchover to node2: {code} {text}");
    wait_healthy_under(&c, "node2", Duration::from_secs(90))?;
    wait_calls(
        &c,
        "node1",
        n1,
        &[
            "before_stop".to_string(),
            call("on_stop", "primary"),
            call("on_role_change", "replica"),
        ],
    )?;
    wait_calls(&c, "node2", n2, &[call("on_role_change", "primary")])?;
    report("callbacks: switchover runs before_stop, on_stop primary, on_role_change both ways");

    // Reload and restart of a replica.
    let n3 = calls(&c, "node3").len();
    let (code, text) = rest_call(&c, "node3", "POST", "/reload", None)?;
    ensure!(code == 202, "reload node3: {code} {text}");
    wait_calls(&c, "node3", n3, &[call("on_reload", "replica")])?;
    let n3 = calls(&c, "node3").len();
    let (code, text) = rest_call(&c, "node3", "POST", "/restart", Some(&json!({})))?;
    ensure!(code == 200, "restart node3: {code} {text}");
    wait_calls(
        &c,
        "node3",
        n3,
        &["before_stop".to_string(), call("on_restart", "replica")],
    )?;
    ensure!(
        !calls(&c, "node3")[n3..]
            .iter()
            .any(|l| l.starts_with("on_start") || l.starts_with("on_stop")),
        "a restart is one on_restart: {:?}",
        &calls(&c, "node3")[n3..]
    );
    wait_healthy_under(&c, "node2", Duration::from_secs(60))?;
    report("callbacks: on_reload and on_restart (not on_stop/on_start) on a replica");

    // node3's pre_promote refuses: the switchover to it ends with another member leading and
    // node3 a replica again, never a primary.
    let off = c.log_len("node3");
    let (code, text) = rest_call(
        &c,
        "node2",
        "POST",
        "/switchover",
        Some(&json!({"leader": "node2", "candidate": "node3"})),
    )?;
    ensure!(
        code == 200 || code == 503,
        "switchover to node3: {code} {text}"
    );
    c.wait(
        "node3 refusing the promotion",
        Duration::from_secs(60),
        || {
            let log = c.log_since("node3", off);
            ensure!(
                log.contains("Promotion cancelled because the pre-promote script failed"),
                "node3 log since the switchover:\n{}",
                pgha_e2e::tail(&log, 30)
            );
            Ok(())
        },
    )?;
    ensure!(
        calls(&c, "node3")
            .iter()
            .any(|l| l == "pre_promote refused"),
        "refuse.sh did not run: {:?}",
        calls(&c, "node3")
    );
    let now = c.wait(
        "a member other than node3 leading",
        Duration::from_secs(90),
        || {
            let l = leader(&c)?;
            ensure!(l != "node3", "node3 holds the leader key");
            Ok(l)
        },
    )?;
    wait_healthy_under(&c, &now, Duration::from_secs(120))?;
    ensure!(
        c.pg("node3").in_recovery()?,
        "node3 is writable after refusing its promotion"
    );
    ensure!(
        !calls(&c, "node3")
            .iter()
            .any(|l| l == &call("on_role_change", "primary")),
        "node3 announced itself primary: {:?}",
        calls(&c, "node3")
    );
    report(&format!(
        "callbacks: pre_promote failure on node3 released the lock, {now} leads"
    ));
    c.pass();
    Ok(())
}
