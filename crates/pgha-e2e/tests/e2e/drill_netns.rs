//! The drills that need more than one lab of processes on 127.0.0.1:
//! (a) `drill_network_faults_on_a_netns_lab`: `cluster.sh up --netns` (a network namespace per
//!     node on a bridge of the lab's block, ttl 10 through PGHA_LAB_TTL); `status` shows the
//!     namespaces; `leader-packet-loss` and `leader-cut-link` are both `safe`; `stop` and `up`
//!     bring the same cluster back; `down` leaves no namespace, veth, bridge nor iptables rule
//!     of the block.
//! (b) `drill_foreign_datadir_and_join_new`: on a plain lab, `foreign-datadir` (the agent must
//!     refuse another cluster's data directory, the original is put back) and `join-new`
//!     (`cluster.sh add-node` under load, the new node streams, `remove-node` takes it out) are
//!     `safe`, and the lab has its three nodes again.
//! Skipped, with the reason printed, where network namespaces cannot be made (not root, no
//! `ip netns`, no iptables).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use pgha_e2e::proc::run_with_timeout;
use pgha_e2e::report;

use crate::drill::{all_safe, lab_scenario};
use crate::prod_lab::{free_offset, free_offset_where, Lab, Shape};

const QUICK: Duration = Duration::from_secs(30);

/// The network block cluster.sh derives from a port offset.
fn block_of(offset: u16) -> u16 {
    offset / 250 % 16
}

/// Why this machine cannot make a netns lab, if it cannot.
fn no_netns() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (network namespaces need it)".into());
    }
    let runs = |prog: &str, args: &[&str]| {
        run_with_timeout(Command::new(prog).args(args), None, QUICK)
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !runs("ip", &["netns", "list"]) {
        return Some("`ip netns` unavailable".into());
    }
    if !runs("iptables", &["-S", "INPUT"]) {
        return Some("iptables unavailable (Debian package iptables)".into());
    }
    None
}

/// What is left of block `b`: namespaces, links (bridge, veths), iptables rules.
fn leftovers(b: u16) -> Vec<String> {
    // `prefix` followed by a node number.
    let numbered = |n: &str, prefix: &str| {
        n.strip_prefix(prefix)
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|c| c.is_ascii_digit()))
    };
    let (ns, veth, bridge) = (
        format!("pgha-b{b}-node"),
        format!("pghab{b}n"),
        format!("pghabr{b}"),
    );
    let mut left = Vec::new();
    for dir in ["/run/netns", "/sys/class/net"] {
        let Ok(rd) = fs::read_dir(dir) else { continue };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if numbered(&n, &ns) || numbered(&n, &veth) || n == bridge {
                left.push(format!("{dir}/{n}"));
            }
        }
    }
    let tag = format!("pgha-lab-b{b} ");
    if let Ok(out) = run_with_timeout(Command::new("iptables").arg("-S"), None, QUICK) {
        let rules = String::from_utf8_lossy(&out.stdout).into_owned();
        left.extend(
            rules
                .lines()
                .filter(|l| format!("{l} ").contains(&tag))
                .map(|l| format!("iptables {l}")),
        );
    }
    left
}

#[test]
fn drill_network_faults_on_a_netns_lab() -> Result<()> {
    const NAME: &str = "drill_network_faults_on_a_netns_lab";
    if let Some(why) = no_netns() {
        report(&format!("{NAME}: skipped ({why})"));
        return Ok(());
    }
    let Some((_lock, bin)) = lab_scenario(NAME)? else {
        return Ok(());
    };
    let t0 = Instant::now();
    // A block no other lab (or a test killed half-way) holds.
    let offset = free_offset_where(3, 1, |o| leftovers(block_of(o)).is_empty())?;
    let b = block_of(offset);
    let shape = Shape {
        nodes: 3,
        etcd: 1,
        offset,
    };
    let mut lab = Lab::new("drill-netns", shape, &bin)?;
    let out = lab.up(&["--netns"], &[("PGHA_LAB_TTL", "10".to_string())])?;
    ensure!(out.contains("is up in"), "up said:\n{out}");
    let env = fs::read_to_string(lab.dir.join("lab.env"))?;
    ensure!(
        env.contains("NETNS=1")
            && env.contains(&format!("NETNS_BLOCK={b}"))
            && env.contains("TTL=10"),
        "lab.env: {env}"
    );
    let status = lab.run_ok(&["status"], &[], QUICK)?;
    ensure!(
        status.contains(&format!("namespace per node (pgha-b{b}-node<i>)"))
            && status.contains("ttl 10"),
        "status says:\n{status}"
    );
    let dir = lab.dir.display().to_string();
    let table = all_safe(&bin, &dir, "leader-packet-loss,leader-cut-link")?;
    let drilled = t0.elapsed();

    // The same cluster after stop + up; the namespaces stay meanwhile.
    lab.run_ok(&["stop"], &[], Duration::from_secs(90))?;
    ensure!(
        Path::new(&format!("/run/netns/pgha-b{b}-node1")).exists(),
        "stop removed the namespaces"
    );
    lab.up(&[], &[])?;
    lab.wait_healthy(Duration::from_secs(60))?;

    lab.down_and_check()?;
    let left = leftovers(b);
    ensure!(left.is_empty(), "down left: {left:?}");
    lab.passed = true;
    report(&format!(
        "drill netns: leader-packet-loss and leader-cut-link safe on a --netns lab (block {b}) in {:.1}s, {:.1}s with stop/up/down\n{table}",
        drilled.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

#[test]
fn drill_foreign_datadir_and_join_new() -> Result<()> {
    let Some((_lock, bin)) = lab_scenario("drill_foreign_datadir_and_join_new")? else {
        return Ok(());
    };
    let t0 = Instant::now();
    // Room for the fourth node's ports too.
    let shape = Shape {
        nodes: 4,
        etcd: 1,
        offset: free_offset(4, 1)?,
    };
    let mut lab = Lab::new("drill-join", Shape { nodes: 3, ..shape }, &bin)?;
    let out = lab.up(&[], &[])?;
    ensure!(out.contains("is up in"), "up said:\n{out}");
    let dir = lab.dir.display().to_string();
    let table = all_safe(&bin, &dir, "foreign-datadir,join-new")?;
    // Back to its shape: three nodes recorded, listed and streaming, no trace of node4 but its log.
    let env = fs::read_to_string(lab.dir.join("lab.env"))?;
    ensure!(env.contains("NODES=3"), "lab.env after join-new: {env}");
    for gone in [
        "node4",
        "node4.yml",
        "node4.pid",
        "node1/data.drill-original",
        "node2/data.drill-original",
        "node3/data.drill-original",
    ] {
        ensure!(!lab.dir.join(gone).exists(), "{gone} is still in the lab");
    }
    lab.wait_healthy(Duration::from_secs(30))?;
    let cfg = fs::read_to_string(lab.dir.join("haproxy.cfg"))?;
    ensure!(
        !cfg.contains("server node4 "),
        "haproxy.cfg still routes to node4:\n{cfg}"
    );
    lab.down_and_check()?;
    lab.passed = true;
    report(&format!(
        "drill: foreign-datadir and join-new safe, the lab back to 3 nodes ({:.1}s)\n{table}",
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}
