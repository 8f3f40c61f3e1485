//! Multi-host install, the systemd path: the Ansible playbook of packaging/ansible with its
//! default `pgha_service_manager: systemd` on three hosts that run a real systemd as PID 1
//! (packaging/ansible/test/nspawn-hosts.sh: systemd-nspawn containers booting a cached Debian
//! bookworm rootfs, each in a network namespace on 10.203.0.0/24; Ansible connects over ssh).
//!
//! Checks: the first run brings up etcd (3 members), a leader and two streaming replicas;
//! `systemctl is-active` / `is-enabled` say pgha, etcd and HAProxy run as enabled units and the
//! distribution's postgresql service is disabled; the pgha unit's main process runs as postgres;
//! HAProxy routes a write to the primary; killing a replica's pgha with SIGKILL makes systemd
//! start it again (Restart=on-failure) and the member streams again; a re-run reports
//! changed=0 on every host. Ansible logs in as `deploy`, a sudoer, with `ansible_become`; the
//! same login without become is refused before any change. A run with a changed configuration
//! (`etcd_extra_env`, `pgha_pg_parameters`) restarts etcd on every host one at a time and
//! reloads the agents: pgha and PostgreSQL keep running, the new `work_mem` is in effect, the
//! leader is unchanged. Last, the leader's host reboots (`systemctl reboot`): a replica takes
//! over, and once the host is up again its units are active, the old leader streams from the
//! new one and its HAProxy routes writes there. Skips, saying why, where systemd-nspawn, debootstrap, cgroups or
//! the Debian mirror (first rootfs build only) are missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use pgha_e2e::cluster::exclusive_lock;
use pgha_e2e::proc::run_with_timeout;
use pgha_e2e::{locate_binaries, report, wait_until};

use crate::common::{skip, stdout_ok};
use crate::prod_ansible::{
    ansible_dir, check_recap_of, ctl_at, list_members_at, on_path, psql_as, run_playbook,
};

const NAME: &str = "ansible_playbook_systemd_on_nspawn_hosts";
const SCOPE: &str = "ansible-systemd";
const HOSTS: [(&str, &str); 3] = [
    ("node1", "10.203.0.11"),
    ("node2", "10.203.0.12"),
    ("node3", "10.203.0.13"),
];
const ETCD: &str = "10.203.0.11:2379";
const HAPROXY_HOST: &str = "10.203.0.12";
const SUPERUSER_PASSWORD: &str = "ansible-systemd-superuser";
const TMP_PREFIX: &str = "pgha-e2e-ansible-systemd-";

fn script() -> PathBuf {
    ansible_dir().join("test/nspawn-hosts.sh")
}

/// Why this machine cannot run the scenario, if it cannot.
fn unavailable() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root (systemd-nspawn, network namespaces, mounts)".into());
    }
    for (prog, pkg) in [
        ("ansible-playbook", "ansible"),
        ("systemd-nspawn", "systemd-container"),
        ("debootstrap", "debootstrap"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
    ] {
        if !on_path(prog) {
            return Some(format!(
                "{prog} not installed (Debian: apt-get install {pkg})"
            ));
        }
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    for fs in ["overlay", "cgroup2"] {
        if !filesystems.split_whitespace().any(|f| f == fs) {
            return Some(format!("the kernel lacks the {fs} file system"));
        }
    }
    // systemd in the container needs a cgroup hierarchy of its own under the host's: a unified
    // (cgroup2) one at /sys/fs/cgroup, or the hybrid layout's /sys/fs/cgroup/unified.
    let cgroup2 = [
        "/sys/fs/cgroup/cgroup.controllers",
        "/sys/fs/cgroup/unified/cgroup.procs",
    ];
    if !cgroup2.iter().any(|p| Path::new(p).exists()) {
        return Some("no cgroup2 hierarchy mounted under /sys/fs/cgroup".into());
    }
    None
}

/// ssh root@ADDR CMD on one container: its stdout.
fn ssh(dir: &Path, addr: &str, cmd: &str) -> Result<String> {
    let out = ssh_output(dir, addr, cmd)?;
    stdout_ok(&out, &format!("ssh {addr} {cmd:?}"))
}

fn ssh_output(dir: &Path, addr: &str, cmd: &str) -> Result<std::process::Output> {
    run_with_timeout(
        Command::new("ssh")
            .arg("-i")
            .arg(dir.join("ssh/id_ed25519"))
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["-o", "ConnectTimeout=5"])
            .arg(format!("root@{addr}"))
            .arg(cmd),
        None,
        Duration::from_secs(30),
    )
}

/// The containers of one run; `down` and the directory's removal on drop.
struct Hosts {
    dir: PathBuf,
    passed: bool,
}

impl Hosts {
    fn up() -> Result<Hosts> {
        remove_stale_runs();
        let dir = std::env::temp_dir().join(format!("{TMP_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let hosts = Hosts { dir, passed: false };
        let out = run_with_timeout(
            Command::new(script())
                .arg("up")
                .arg(&hosts.dir)
                .arg(HOSTS.len().to_string()),
            None,
            Duration::from_secs(120),
        )?;
        stdout_ok(&out, "nspawn-hosts.sh up")?;
        Ok(hosts)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        if !self.passed {
            for (name, addr) in HOSTS {
                let journal = ssh_output(
                    &self.dir,
                    addr,
                    "journalctl --no-pager -n 40 -u pgha -u etcd -u haproxy",
                )
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_else(|e| format!("(no journal: {e:#})"));
                eprintln!("---- {name}: journal of pgha, etcd, haproxy (last 40 lines)\n{journal}");
            }
        }
        let out = run_with_timeout(
            Command::new(script()).arg("down").arg(&self.dir),
            None,
            Duration::from_secs(120),
        );
        match out {
            Ok(o) if o.status.success() => {}
            other => eprintln!("nspawn-hosts.sh down {}: {other:?}", self.dir.display()),
        }
        if std::env::var("PGHA_E2E_KEEP").as_deref() == Ok("1") {
            eprintln!("kept {}", self.dir.display());
        } else if Path::new(&self.dir).join("created").exists() {
            // `down` did not finish: an overlay may still be mounted, leave the files be.
            eprintln!("not removing {}: down did not finish", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A killed earlier run leaves its containers and namespaces (recorded in its dir's
/// `created`): take them down first, or `up` refuses the names.
fn remove_stale_runs() {
    crate::prod_ansible::remove_stale_runs_of(TMP_PREFIX, &script());
}

fn inventory(dir: &Path, bin_dir: &Path) -> String {
    let hosts: String = HOSTS
        .iter()
        .map(|(n, a)| format!("    {n}:\n      ansible_host: {a}\n"))
        .collect();
    let all: String = HOSTS.iter().map(|(n, _)| format!("{n}: {{}}, ")).collect();
    format!(
        "all:
  vars:
    # A sudoer, as where root does not log in (the netns test logs in as root).
    ansible_user: deploy
    ansible_become: true
    ansible_ssh_private_key_file: {key}
    ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10
    # The role's default, spelled out: this is what the scenario tests.
    pgha_service_manager: systemd
    pgha_scope: {SCOPE}
    pgha_network_cidr: 10.203.0.0/24
    pgha_superuser_password: {SUPERUSER_PASSWORD}
    pgha_replication_password: ansible-systemd-replication
    pgha_rewind_password: ansible-systemd-rewind
    pgha_restapi_password: ansible-systemd-rest
    pgha_binaries_src: {bins}
    pgha_bootstrap_dcs: {{ttl: 10, loop_wait: 1, retry_timeout: 3, maximum_lag_on_failover: 1048576}}
    pgha_wait_timeout: 120
    etcd_wait_timeout: 60
    haproxy_inter: 1s
  hosts:
{hosts}  children:
    etcd: {{hosts: {{{all}}}}}
    pgha: {{hosts: {{{all}}}}}
    haproxy: {{hosts: {{{all}}}}}
",
        key = dir.join("ssh/id_ed25519").display(),
        bins = bin_dir.display(),
    )
}

fn host_names() -> Vec<&'static str> {
    HOSTS.iter().map(|(n, _)| *n).collect()
}

fn playbook(dir: &Path, label: &str) -> Result<crate::prod_ansible::Run> {
    run_playbook(
        NAME,
        dir,
        "inventory.yml",
        label,
        &[],
        Duration::from_secs(300),
    )
}

/// The address of the host that runs member `name`.
fn addr_of(name: &str) -> Result<&'static str> {
    HOSTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
        .ok_or_else(|| anyhow!("member {name} is not one of the hosts"))
}

/// A leader and two streaming replicas: the rows of `pghactl list`.
fn wait_cluster(ctl: &Path, what: &str) -> Result<Vec<(String, String, String)>> {
    wait_until(
        what,
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let members = list_members_at(ctl, ETCD, SCOPE)?;
            let leaders = members.iter().filter(|m| m.1 == "Leader").count();
            let streaming = members
                .iter()
                .filter(|m| m.1 == "Replica" && m.2 == "streaming")
                .count();
            ensure!(
                members.len() == 3 && leaders == 1 && streaming == 2,
                "{members:?}"
            );
            Ok(members)
        },
    )
}

/// `systemctl show -p Property --value pgha` on one host.
fn unit_property(dir: &Path, addr: &str, unit: &str, property: &str) -> Result<String> {
    Ok(ssh(
        dir,
        addr,
        &format!("systemctl show -p {property} --value {unit}"),
    )?
    .trim()
    .to_string())
}

#[test]
fn ansible_playbook_systemd_on_nspawn_hosts() -> Result<()> {
    if skip(NAME) {
        return Ok(());
    }
    if let Some(why) = unavailable() {
        report(&format!("{NAME}: skipped: {why}"));
        return Ok(());
    }
    let bins = locate_binaries()?;
    let ctl = bins.join("pghactl");
    let _lock = exclusive_lock()?;

    // The rootfs is built once (debootstrap, ~2-3 min) and cached; without the mirror it
    // cannot be, which is this machine's limit, not a failure of the playbook.
    let start = Instant::now();
    let out = run_with_timeout(
        Command::new(script()).arg("rootfs"),
        None,
        Duration::from_secs(900),
    )?;
    if !out.status.success() {
        report(&format!(
            "{NAME}: skipped: no container rootfs: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
        return Ok(());
    }
    report(&format!(
        "{NAME}: rootfs {} ready in {:.1}s",
        String::from_utf8_lossy(&out.stdout).trim(),
        start.elapsed().as_secs_f64()
    ));

    let mut hosts = Hosts::up()?;
    let dir = hosts.dir.clone();
    for (name, addr) in HOSTS {
        let pid1 = ssh(&dir, addr, "cat /proc/1/comm")?;
        ensure!(pid1.trim() == "systemd", "{name}: PID 1 is {pid1:?}");
    }
    std::fs::write(dir.join("inventory.yml"), inventory(&dir, &bins))?;

    // First run: installs and starts everything, waits for the cluster itself.
    let first = playbook(&dir, "first")?;
    check_recap_of(&first, "first run", &host_names(), false)?;
    ensure!(first.changed() > 0, "the first run changed nothing?");
    let members = wait_cluster(&ctl, "a leader and two streaming replicas in pghactl list")?;

    // The installed unit is packaging/pgha.service, byte for byte (the role's paths are its).
    let unit = std::fs::read_to_string(ansible_dir().join("../pgha.service"))?;
    // Every daemon an enabled, running unit; the distribution's PostgreSQL service off.
    for (name, addr) in HOSTS {
        let installed = ssh(&dir, addr, "cat /etc/systemd/system/pgha.service")?;
        ensure!(
            installed == unit,
            "{name}: /etc/systemd/system/pgha.service differs from packaging/pgha.service:\n{installed:?}"
        );
        let out = ssh_output(
            &dir,
            addr,
            "systemctl is-active pgha etcd haproxy; systemctl is-enabled pgha etcd haproxy postgresql",
        )?;
        let states: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        ensure!(
            states
                == [
                    "active", "active", "active", "enabled", "enabled", "enabled", "disabled"
                ],
            "{name}: systemctl is-active pgha etcd haproxy / is-enabled pgha etcd haproxy postgresql: {states:?}"
        );
        // The unit's main process is the agent, as postgres; so is every postgres process.
        let main_pid = unit_property(&dir, addr, "pgha", "MainPID")?;
        let owners = ssh(
            &dir,
            addr,
            &format!("ps -o user=,comm= -p {main_pid}; ps -o user= -C postgres | sort -u"),
        )?;
        let owners: Vec<&str> = owners.lines().map(str::trim).collect();
        ensure!(
            owners == ["postgres pgha", "postgres"],
            "{name}: pgha's main PID {main_pid} and postgres processes run as {owners:?}, want postgres"
        );
    }

    // HAProxy on node2 routes a write to the primary.
    let leader = members
        .iter()
        .find(|m| m.1 == "Leader")
        .map(|m| m.0.clone())
        .ok_or_else(|| anyhow!("no leader"))?;
    let leader_addr = addr_of(&leader)?;
    let answer = wait_until(
        "a write through HAProxy's primary port",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            psql_as(
                HAPROXY_HOST,
                5000,
                SUPERUSER_PASSWORD,
                "CREATE TABLE IF NOT EXISTS ansible_probe(id int); \
                 INSERT INTO ansible_probe VALUES (1); \
                 SELECT pg_is_in_recovery()::text || ' ' || host(inet_server_addr())",
            )
        },
    )?;
    ensure!(
        answer == format!("false {leader_addr}"),
        "write through HAProxy landed on {answer:?}, the leader is {leader} ({leader_addr})"
    );

    // A crashed agent: systemd starts it again (Restart=on-failure, RestartSec=5s).
    let (replica, replica_addr) = HOSTS
        .iter()
        .find(|(n, _)| *n != leader)
        .copied()
        .ok_or_else(|| anyhow!("no replica host"))?;
    let old_pid = unit_property(&dir, replica_addr, "pgha", "MainPID")?;
    let old_restarts: u64 = unit_property(&dir, replica_addr, "pgha", "NRestarts")?
        .parse()
        .context("NRestarts")?;
    ssh(&dir, replica_addr, &format!("kill -KILL {old_pid}"))?;
    let killed = Instant::now();
    let new_pid = wait_until(
        "systemd to restart the killed pgha",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let pid = unit_property(&dir, replica_addr, "pgha", "MainPID")?;
            let active = unit_property(&dir, replica_addr, "pgha", "ActiveState")?;
            ensure!(
                active == "active" && pid != "0" && pid != old_pid,
                "{replica}: pgha {active}, MainPID {pid} (killed {old_pid})"
            );
            Ok(pid)
        },
    )?;
    let restarts: u64 = unit_property(&dir, replica_addr, "pgha", "NRestarts")?
        .parse()
        .context("NRestarts")?;
    ensure!(
        restarts == old_restarts + 1,
        "{replica}: NRestarts {old_restarts} -> {restarts}, want one restart"
    );
    report(&format!(
        "{NAME}: {replica}: pgha killed (PID {old_pid}), systemd restarted it as PID {new_pid} after {:.1}s",
        killed.elapsed().as_secs_f64()
    ));
    wait_cluster(&ctl, "the restarted replica streaming again")?;

    // Second run: nothing to do.
    let second = playbook(&dir, "rerun")?;
    check_recap_of(&second, "re-run", &host_names(), true)?;

    // The same login without become: refused before any change, saying how to fix it.
    let no_root = run_playbook(
        NAME,
        &dir,
        "inventory.yml",
        "no-become",
        &["-e", r#"{"ansible_become": false}"#],
        Duration::from_secs(120),
    )?;
    crate::prod_ansible::expect_refused(
        &no_root,
        "a run as deploy without become",
        &["not root", "ansible_become", "Nothing was installed"],
    )?;

    // Third run, with a changed configuration on the running cluster: etcd restarts one
    // member at a time, the agents reload (no restart of pgha or PostgreSQL), and the leader
    // keeps its lock throughout.
    let mut before = Vec::new();
    for (name, addr) in HOSTS {
        before.push((
            name,
            addr,
            unit_property(&dir, addr, "pgha", "MainPID")?,
            unit_property(&dir, addr, "etcd", "MainPID")?,
            psql_as(
                addr,
                5432,
                SUPERUSER_PASSWORD,
                "SELECT pg_postmaster_start_time()",
            )?,
        ));
    }
    let changed_vars = r#"{"etcd_extra_env": {"ETCD_HEARTBEAT_INTERVAL": "150"}, "pgha_pg_parameters": {"work_mem": "8MB"}}"#;
    let third = run_playbook(
        NAME,
        &dir,
        "inventory.yml",
        "changed",
        &["-e", changed_vars],
        Duration::from_secs(300),
    )?;
    check_recap_of(&third, "changed run", &host_names(), false)?;
    for (name, addr, pgha_pid, etcd_pid, pg_start) in &before {
        let env = ssh(&dir, addr, "cat /etc/default/etcd")?;
        ensure!(
            env.lines().any(|l| l == "ETCD_HEARTBEAT_INTERVAL=150"),
            "{name}: /etc/default/etcd lacks etcd_extra_env:\n{env}"
        );
        let etcd_now = unit_property(&dir, addr, "etcd", "MainPID")?;
        ensure!(
            etcd_now != *etcd_pid && etcd_now != "0",
            "{name}: etcd was not restarted onto its new file (MainPID {etcd_pid} -> {etcd_now})"
        );
        let pgha_now = unit_property(&dir, addr, "pgha", "MainPID")?;
        ensure!(
            pgha_now == *pgha_pid,
            "{name}: pgha was restarted (MainPID {pgha_pid} -> {pgha_now}); a changed pgha.yml is a reload"
        );
        wait_until(
            &format!("{name}: work_mem 8MB after the agent's reload"),
            Duration::from_secs(30),
            Duration::from_millis(500),
            || {
                let v = psql_as(addr, 5432, SUPERUSER_PASSWORD, "SHOW work_mem")?;
                ensure!(v == "8MB", "work_mem is {v}");
                Ok(())
            },
        )?;
        let pg_now = psql_as(
            addr,
            5432,
            SUPERUSER_PASSWORD,
            "SELECT pg_postmaster_start_time()",
        )?;
        ensure!(
            pg_now == *pg_start,
            "{name}: PostgreSQL restarted during the changed run ({pg_start} -> {pg_now})"
        );
    }
    let members = wait_cluster(&ctl, "the cluster after the changed run")?;
    ensure!(
        members.iter().any(|m| m.0 == leader && m.1 == "Leader"),
        "the leader changed during etcd's rolling restart: {members:?}"
    );

    // A reboot of the leader's host: a replica takes over while it is down; the host boots,
    // systemd starts etcd, pgha and HAProxy again (enabled units), the old leader streams from
    // the new one, and that host's HAProxy routes writes to the new leader.
    // nspawn-hosts.sh numbers the hosts from 1, in HOSTS order.
    let leader_number = 1 + HOSTS
        .iter()
        .position(|(n, _)| *n == leader)
        .ok_or_else(|| anyhow!("leader {leader} is not one of the hosts"))?;
    let other_etcd = HOSTS
        .iter()
        .find(|(n, _)| *n != leader)
        .map(|(_, a)| format!("{a}:2379"))
        .ok_or_else(|| anyhow!("no other host"))?;
    let rebooted = Instant::now();
    // The session ends with the host's sshd: its exit status says nothing.
    let _ = ssh_output(&dir, leader_addr, "systemctl reboot");
    let new_leader = wait_until(
        &format!("a new leader while {leader}'s host reboots"),
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let members = list_members_at(&ctl, &other_etcd, SCOPE)?;
            members
                .iter()
                .find(|m| m.1 == "Leader" && m.0 != leader)
                .map(|m| m.0.clone())
                .ok_or_else(|| anyhow!("{members:?}"))
        },
    )?;
    let took_over = rebooted.elapsed();
    let out = run_with_timeout(
        Command::new(script())
            .arg("boot")
            .arg(&dir)
            .arg(leader_number.to_string()),
        None,
        Duration::from_secs(180),
    )?;
    stdout_ok(&out, "nspawn-hosts.sh boot")?;
    let members = wait_cluster(&ctl, "the rebooted host streaming from the new leader")?;
    ensure!(
        members
            .iter()
            .any(|m| m.0 == new_leader && m.1 == "Leader")
            && members
                .iter()
                .any(|m| m.0 == leader && m.1 == "Replica" && m.2 == "streaming"),
        "after the reboot of {leader}: {members:?}, want {new_leader} leading and {leader} streaming"
    );
    for unit in ["etcd", "pgha", "haproxy"] {
        let state = unit_property(&dir, leader_addr, unit, "ActiveState")?;
        ensure!(
            state == "active",
            "{leader}: {unit} is {state} after the reboot"
        );
    }
    let new_leader_addr = addr_of(&new_leader)?;
    wait_until(
        &format!("a write through the rebooted {leader}'s HAProxy landing on {new_leader}"),
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let answer = psql_as(
                leader_addr,
                5000,
                SUPERUSER_PASSWORD,
                "INSERT INTO ansible_probe VALUES (2); \
                 SELECT pg_is_in_recovery()::text || ' ' || host(inet_server_addr())",
            )?;
            ensure!(answer == format!("false {new_leader_addr}"), "{answer}");
            Ok(())
        },
    )?;
    let back = rebooted.elapsed();

    let printed = ctl_at(&ctl, ETCD, &["list", SCOPE])?;
    report(&format!(
        "{NAME}: 3 systemd hosts installed by ansible-playbook (leader {leader}), units active and enabled, crash restarted, re-run changed=0, changed config: etcd restarted one by one and agents reloaded with the leader kept; reboot of {leader}'s host: {new_leader} led after {:.1}s, {leader} streaming and its units active after {:.1}s\n{printed}",
        took_over.as_secs_f64(),
        back.as_secs_f64()
    ));
    hosts.passed = true;
    Ok(())
}
