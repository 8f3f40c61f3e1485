//! Multi-host install: the Ansible playbook of packaging/ansible on three "hosts" made of
//! namespaces on this machine (packaging/ansible/test/netns-hosts.sh: a network namespace with
//! its own address on 10.202.0.0/24 and a private mount namespace per host, sshd in it; Ansible
//! connects over ssh as to real machines). `pgha_service_manager: direct` starts the daemons as
//! background processes (no systemd here); the systemd unit is installed only on real hosts.
//!
//! Checks: the first run brings up etcd (3 members), a leader and two streaming replicas
//! (`pghactl list`), HAProxy routes a write to the primary and its file is what
//! `pghactl haproxy-config` prints; PostgreSQL runs as postgres; a re-run reports changed=0 on
//! every host; an inventory with an unreachable host, `pgha_service_manager: systemd` on
//! these hosts without systemd, and an `etcd_extra_env` that would override the role's own
//! member settings all stop before installing anything and say why. Last, a fourth host added
//! to the `pgha` group joins as a streaming replica on the next run, and HAProxy reloads in
//! place with it on every HAProxy host while the running agents and the leader stay.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use pgha_e2e::cluster::exclusive_lock;
use pgha_e2e::proc::run_with_timeout;
use pgha_e2e::{locate_binaries, report, wait_until};

use crate::common::{skip, stdout_ok};

const NAME: &str = "ansible_playbook_installs_three_namespace_hosts";
const SCOPE: &str = "ansible-test";
const HOSTS: [(&str, &str); 3] = [
    ("node1", "10.202.0.11"),
    ("node2", "10.202.0.12"),
    ("node3", "10.202.0.13"),
];
/// A host made with the others that joins the `pgha` group only on a later run.
const JOINING: (&str, &str) = ("node4", "10.202.0.14");
/// The host the write goes through (HAProxy runs on every host).
const HAPROXY_HOST: &str = "10.202.0.12";
const SUPERUSER_PASSWORD: &str = "ansible-test-superuser";
const TMP_PREFIX: &str = "pgha-e2e-ansible-";

pub(crate) fn ansible_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/ansible")
}

fn netns_script() -> PathBuf {
    ansible_dir().join("test/netns-hosts.sh")
}

/// Why this machine cannot run the scenario, if it cannot.
fn unavailable() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root (network namespaces, mounts)".into());
    }
    let runs = |prog: &str, args: &[&str]| {
        run_with_timeout(Command::new(prog).args(args), None, Duration::from_secs(30))
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !on_path("ansible-playbook") {
        return Some("ansible-playbook not installed (Debian: apt-get install ansible)".into());
    }
    if !runs("ip", &["netns", "list"]) {
        return Some("`ip netns` unavailable".into());
    }
    for prog in ["/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"] {
        if !Path::new(prog).is_file() {
            return Some(format!(
                "{prog} missing (Debian: openssh-server, openssh-client)"
            ));
        }
    }
    // The roles' apt tasks run against this machine's package database: with everything
    // installed they change nothing; a missing package would be installed for real.
    for pkg in ["etcd-server", "etcd-client", "postgresql-15", "haproxy"] {
        let installed = run_with_timeout(
            Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]),
            None,
            Duration::from_secs(30),
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false);
        if !installed {
            return Some(format!("Debian package {pkg} not installed"));
        }
    }
    None
}

/// Whether `prog` is on PATH. Looked up, not run: a bare `ansible-playbook --version` would
/// create ~/.ansible.
pub(crate) fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// The namespace hosts of one run; `down` and the directory's removal on drop.
struct Hosts {
    dir: PathBuf,
    passed: bool,
}

impl Hosts {
    fn up(extra_args: &[&str]) -> Result<Hosts> {
        remove_stale_runs();
        let dir = std::env::temp_dir().join(format!("{TMP_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let hosts = Hosts { dir, passed: false };
        let mut cmd = Command::new(netns_script());
        cmd.arg("up")
            .arg(&hosts.dir)
            .arg((HOSTS.len() + 1).to_string());
        cmd.args(extra_args);
        let out = run_with_timeout(&mut cmd, None, Duration::from_secs(120))?;
        stdout_ok(&out, "netns-hosts.sh up")?;
        Ok(hosts)
    }

    fn log_tail(&self, rel: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join(rel)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        if !self.passed {
            for (name, _) in HOSTS.iter().chain([&JOINING]) {
                for log in ["varlog/pgha/pgha.log", "varlog/etcd/etcd.log"] {
                    eprintln!(
                        "---- {name}: {log} (last 40 lines)\n{}",
                        self.log_tail(&format!("hosts/{name}/{log}"), 40)
                    );
                }
            }
        }
        let out = run_with_timeout(
            Command::new(netns_script()).arg("down").arg(&self.dir),
            None,
            Duration::from_secs(120),
        );
        match out {
            Ok(o) if o.status.success() => {}
            other => eprintln!("netns-hosts.sh down {}: {other:?}", self.dir.display()),
        }
        if std::env::var("PGHA_E2E_KEEP").as_deref() == Ok("1") {
            eprintln!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A killed earlier run leaves its namespaces (recorded in its dir's `created`): take them
/// down first, or `up` refuses the names.
fn remove_stale_runs() {
    remove_stale_runs_of(TMP_PREFIX, &netns_script());
}

/// `script down DIR` for every `<tmp>/<prefix><pid>` whose test process is gone and that still
/// records hosts it created; the directory goes only once that worked (an overlay may still be
/// mounted otherwise). Only `<prefix><digits>` counts, so one test's prefix never takes another
/// test's longer one (`pgha-e2e-ansible-` and `pgha-e2e-ansible-systemd-`).
pub(crate) fn remove_stale_runs_of(prefix: &str, script: &Path) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(Ok(pid)) = name.strip_prefix(prefix).map(str::parse::<i32>) else {
            continue;
        };
        if pgha_e2e::pid_alive(pid) || !e.path().join("created").is_file() {
            continue;
        }
        let down = run_with_timeout(
            Command::new(script).arg("down").arg(e.path()),
            None,
            Duration::from_secs(120),
        );
        if matches!(down, Ok(ref o) if o.status.success()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// An inventory for the namespace hosts; `extra_pgha` are more pgha hosts (unreachable ones).
fn inventory(dir: &Path, bin_dir: &Path, extra_pgha: &[(&str, &str)]) -> String {
    let mut hosts = String::new();
    let mut members = String::new();
    for (name, addr) in HOSTS.iter().chain(extra_pgha) {
        hosts += &format!("    {name}:\n      ansible_host: {addr}\n");
        members += &format!("{name}: {{}}, ");
    }
    let core: String = HOSTS.iter().map(|(n, _)| format!("{n}: {{}}, ")).collect();
    format!(
        "all:
  vars:
    ansible_user: root
    ansible_ssh_private_key_file: {key}
    ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10
    # No systemd on the test machine: the daemons run as background processes (pid files).
    pgha_service_manager: direct
    pgha_scope: {SCOPE}
    pgha_network_cidr: 10.202.0.0/24
    pgha_superuser_password: {SUPERUSER_PASSWORD}
    pgha_replication_password: ansible-test-replication
    pgha_rewind_password: ansible-test-rewind
    pgha_restapi_password: ansible-test-rest
    pgha_binaries_src: {bins}
    # Short HA timings, so the replicas follow quickly.
    pgha_bootstrap_dcs: {{ttl: 10, loop_wait: 1, retry_timeout: 3, maximum_lag_on_failover: 1048576}}
    pgha_wait_timeout: 180
    haproxy_inter: 1s
  hosts:
{hosts}  children:
    etcd: {{hosts: {{{core}}}}}
    pgha: {{hosts: {{{members}}}}}
    haproxy: {{hosts: {{{core}}}}}
",
        key = dir.join("ssh/id_ed25519").display(),
        bins = bin_dir.display(),
    )
}

/// One ansible-playbook run: its exit status, output, and the recap's counters per host.
pub(crate) struct Run {
    pub success: bool,
    pub output: String,
    pub recap: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Run {
    /// The sum of `changed` over every host of the recap.
    pub fn changed(&self) -> u64 {
        self.recap
            .values()
            .map(|c| c.get("changed").copied().unwrap_or(0))
            .sum()
    }
}

pub(crate) fn parse_recap(output: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut recap = BTreeMap::new();
    let Some((_, tail)) = output.rsplit_once("PLAY RECAP") else {
        return recap;
    };
    for line in tail.lines().skip(1) {
        let Some((host, counts)) = line.split_once(" : ") else {
            continue;
        };
        let counts: BTreeMap<String, u64> = counts
            .split_whitespace()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect();
        recap.insert(host.trim().to_string(), counts);
    }
    recap
}

fn playbook(dir: &Path, inventory_name: &str, label: &str, timeout: Duration) -> Result<Run> {
    playbook_with(dir, inventory_name, label, &[], timeout)
}

fn playbook_with(
    dir: &Path,
    inventory_name: &str,
    label: &str,
    extra: &[&str],
    timeout: Duration,
) -> Result<Run> {
    run_playbook(NAME, dir, inventory_name, label, extra, timeout)
}

/// `ansible-playbook -i DIR/INVENTORY site.yml EXTRA` with Ansible's state kept in `dir`; its
/// output is saved as DIR/ansible-LABEL.log.
pub(crate) fn run_playbook(
    test: &str,
    dir: &Path,
    inventory_name: &str,
    label: &str,
    extra: &[&str],
    timeout: Duration,
) -> Result<Run> {
    let masters = dir.join("ssh-masters");
    let mut cmd = Command::new("ansible-playbook");
    cmd.current_dir(ansible_dir())
        .arg("-i")
        .arg(dir.join(inventory_name))
        .arg("site.yml")
        .args(extra)
        .env("ANSIBLE_CONFIG", ansible_dir().join("ansible.cfg"))
        // Nothing of Ansible's own state lands in root's home, on this side or the hosts'.
        .env("ANSIBLE_HOME", dir.join("ansible-home"))
        .env("ANSIBLE_LOCAL_TEMP", dir.join("ansible-local"))
        .env("ANSIBLE_REMOTE_TEMP", dir.join("ansible-remote"))
        // One ssh connection per host for the whole run (a new one per task costs most of a
        // run's time); the masters are closed below, so none outlives the run.
        .env(
            "ANSIBLE_SSH_ARGS",
            "-o ControlMaster=auto -o ControlPersist=60s",
        )
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", &masters)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "0");
    let start = std::time::Instant::now();
    let out = run_with_timeout(&mut cmd, None, timeout);
    close_ssh_masters(&masters);
    let out = out.with_context(|| format!("ansible-playbook ({label})"))?;
    report(&format!(
        "{test}: ansible-playbook ({label}) took {:.1}s",
        start.elapsed().as_secs_f64()
    ));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.join(format!("ansible-{label}.log")), &output)?;
    Ok(Run {
        success: out.status.success(),
        recap: parse_recap(&output),
        output,
    })
}

/// A run the preflight must have stopped: it failed, its output says each of `wants`, and no
/// host changed.
pub(crate) fn expect_refused(run: &Run, what: &str, wants: &[&str]) -> Result<()> {
    ensure!(
        !run.success && wants.iter().all(|w| run.output.contains(w)),
        "{what} was not refused (want {wants:?}):\n{}",
        tail_of(&run.output, 40)
    );
    ensure!(
        run.recap.values().all(|c| c.get("changed") == Some(&0)),
        "the refused run ({what}) changed something:\n{}",
        tail_of(&run.output, 20)
    );
    Ok(())
}

/// `ssh -O exit` to every connection master a playbook run left in `dir` (ControlPersist).
fn close_ssh_masters(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let _ = run_with_timeout(
            Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}", e.path().display()))
                .args(["-O", "exit", "master"]),
            None,
            Duration::from_secs(10),
        );
    }
}

pub(crate) fn tail_of(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `pghactl -d etcd3://node1 ARGS` from this side of the bridge: its stdout.
fn ctl_dcs(ctl: &Path, args: &[&str]) -> Result<String> {
    ctl_at(ctl, "10.202.0.11:2379", args)
}

/// `pghactl -d etcd3://ETCD ARGS`: its stdout.
pub(crate) fn ctl_at(ctl: &Path, etcd: &str, args: &[&str]) -> Result<String> {
    let out = run_with_timeout(
        Command::new(ctl)
            .args(["-d", &format!("etcd3://{etcd}")])
            .args(args),
        None,
        Duration::from_secs(30),
    )?;
    stdout_ok(&out, &format!("pghactl {}", args.join(" ")))
}

/// `pghactl list -f json` from this side of the bridge: (member, role, state) rows.
fn list_members(ctl: &Path) -> Result<Vec<(String, String, String)>> {
    list_members_at(ctl, "10.202.0.11:2379", SCOPE)
}

/// `pghactl list SCOPE -f json` through etcd at `etcd`: (member, role, state) rows.
pub(crate) fn list_members_at(
    ctl: &Path,
    etcd: &str,
    scope: &str,
) -> Result<Vec<(String, String, String)>> {
    let text = ctl_at(ctl, etcd, &["list", scope, "-f", "json"])?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).context("pghactl list json")?;
    Ok(rows
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("Member"), s("Role"), s("State"))
        })
        .collect())
}

fn psql(host: &str, port: u16, sql: &str) -> Result<String> {
    psql_as(host, port, SUPERUSER_PASSWORD, sql)
}

/// `psql -h HOST -p PORT -U postgres -c SQL` with a password: the trimmed output.
pub(crate) fn psql_as(host: &str, port: u16, password: &str, sql: &str) -> Result<String> {
    let out = run_with_timeout(
        Command::new("/usr/lib/postgresql/15/bin/psql")
            .args(["-h", host, "-p", &port.to_string(), "-U", "postgres"])
            .args([
                "-d",
                "postgres",
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5"),
        None,
        Duration::from_secs(30),
    )?;
    Ok(stdout_ok(&out, &format!("psql {host}:{port} {sql:?}"))?
        .trim()
        .to_string())
}

/// A process seen in a namespace host.
#[derive(Debug)]
struct Proc {
    pid: u32,
    ppid: u32,
    uid: u32,
    name: String,
}

/// Every process inside the network namespace `ns`.
fn processes_in(ns: &str) -> Result<Vec<Proc>> {
    let out = run_with_timeout(
        Command::new("ip").args(["netns", "pids", ns]),
        None,
        Duration::from_secs(30),
    )?;
    let pids = stdout_ok(&out, "ip netns pids")?;
    let mut procs = Vec::new();
    for pid in pids.split_whitespace() {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let uid = field("Uid:")
            .split_whitespace()
            .next()
            .and_then(|u| u.parse().ok())
            .unwrap_or(u32::MAX);
        procs.push(Proc {
            pid: pid.parse().unwrap_or(0),
            ppid: field("PPid:").parse().unwrap_or(0),
            uid,
            name: field("Name:"),
        });
    }
    Ok(procs)
}

/// node2's /etc/haproxy/haproxy.cfg is, but for comments, what `pghactl haproxy-config` prints
/// for the members in the DCS.
fn haproxy_file_matches_pghactl(dir: &Path, ctl: &Path) -> Result<()> {
    let printed = ctl_dcs(ctl, &["haproxy-config", SCOPE, "--inter", "1s"])?;
    let installed = std::fs::read_to_string(dir.join("hosts/node2/etc.up/haproxy/haproxy.cfg"))
        .context("node2's /etc/haproxy/haproxy.cfg")?;
    let body = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    ensure!(
        body(&printed) == body(&installed),
        "haproxy.cfg differs from pghactl haproxy-config:\n--- installed\n{installed}\n--- pghactl\n{printed}"
    );
    Ok(())
}

/// On each of the first hosts: HAProxy's master pid, its workers' pids, the agent's pid.
fn daemons_of_core_hosts() -> Result<Vec<(u32, Vec<u32>, u32)>> {
    let mut all = Vec::new();
    for (i, (name, _)) in HOSTS.iter().enumerate() {
        let procs = processes_in(&format!("pghaans{}", i + 1))?;
        let haproxy: Vec<&Proc> = procs.iter().filter(|p| p.name == "haproxy").collect();
        let master = haproxy
            .iter()
            .find(|p| !haproxy.iter().any(|q| q.pid == p.ppid))
            .ok_or_else(|| anyhow!("{name}: no HAProxy master: {procs:?}"))?;
        let workers = haproxy
            .iter()
            .filter(|p| p.ppid == master.pid)
            .map(|p| p.pid)
            .collect();
        let agent = procs
            .iter()
            .find(|p| p.name == "pgha")
            .ok_or_else(|| anyhow!("{name}: no pgha agent: {procs:?}"))?;
        all.push((master.pid, workers, agent.pid));
    }
    Ok(all)
}

fn check_recap(run: &Run, label: &str, want_changed_zero: bool) -> Result<()> {
    let names: Vec<&str> = HOSTS.iter().map(|(n, _)| *n).collect();
    check_recap_of(run, label, &names, want_changed_zero)
}

/// The run succeeded, and every host of `names` has a recap line with failed=0 and
/// unreachable=0 (and changed=0 if `want_changed_zero`).
pub(crate) fn check_recap_of(
    run: &Run,
    label: &str,
    names: &[&str],
    want_changed_zero: bool,
) -> Result<()> {
    ensure!(
        run.success,
        "ansible-playbook ({label}) failed:\n{}",
        tail_of(&run.output, 60)
    );
    for name in names {
        let counts = run
            .recap
            .get(*name)
            .ok_or_else(|| anyhow!("{label}: no recap line for {name}"))?;
        for bad in ["failed", "unreachable"] {
            ensure!(
                counts.get(bad) == Some(&0),
                "{label}: {name} {bad}={:?}",
                counts.get(bad)
            );
        }
        if want_changed_zero {
            ensure!(
                counts.get("changed") == Some(&0),
                "{label}: {name} changed={:?}; changed tasks:\n{}",
                counts.get("changed"),
                run.output
                    .lines()
                    .filter(|l| l.starts_with("changed:") || l.starts_with("TASK ["))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    Ok(())
}

#[test]
fn ansible_playbook_installs_three_namespace_hosts() -> Result<()> {
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
    let mut hosts = Hosts::up(&[])?;
    let dir = hosts.dir.clone();
    std::fs::write(dir.join("inventory.yml"), inventory(&dir, &bins, &[]))?;

    // First run: installs and starts everything, waits for the cluster itself.
    let first = playbook(&dir, "inventory.yml", "first", Duration::from_secs(600))?;
    check_recap(&first, "first run", false)?;
    ensure!(first.changed() > 0, "the first run changed nothing?");

    // One leader, two streaming replicas (the playbook waited already; bounded re-check).
    let members = wait_until(
        "a leader and two streaming replicas in pghactl list",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let members = list_members(&ctl)?;
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
    )?;
    let leader = members
        .iter()
        .find(|m| m.1 == "Leader")
        .map(|m| m.0.clone())
        .ok_or_else(|| anyhow!("no leader"))?;
    let leader_addr = HOSTS
        .iter()
        .find(|(n, _)| *n == leader)
        .map(|(_, a)| *a)
        .ok_or_else(|| anyhow!("leader {leader} is not one of the hosts"))?;

    // HAProxy on node2 routes a write to the primary (its checks need `rise` passes first).
    let answer = wait_until(
        "a write through HAProxy's primary port",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            psql(
                HAPROXY_HOST,
                5000,
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

    // The HAProxy file is what `pghactl haproxy-config` prints for the running cluster.
    haproxy_file_matches_pghactl(&dir, &ctl)?;

    // PostgreSQL and the agents run as postgres, never root.
    for (i, (name, _)) in HOSTS.iter().enumerate() {
        let procs = processes_in(&format!("pghaans{}", i + 1))?;
        let pg: Vec<_> = procs
            .iter()
            .filter(|p| p.name == "postgres" || p.name == "pgha")
            .collect();
        ensure!(
            !pg.is_empty(),
            "{name}: no postgres/pgha process: {procs:?}"
        );
        ensure!(
            pg.iter().all(|p| p.uid != 0),
            "{name}: postgres or pgha running as root: {pg:?}"
        );
    }

    // Second run: nothing to do.
    let second = playbook(&dir, "inventory.yml", "rerun", Duration::from_secs(600))?;
    check_recap(&second, "re-run", true)?;

    // An inventory with an unreachable host: stops before installing anything, names the host.
    std::fs::write(
        dir.join("inventory-unreachable.yml"),
        inventory(&dir, &bins, &[JOINING, ("node5", "10.202.0.99")]),
    )?;
    let bad = playbook(
        &dir,
        "inventory-unreachable.yml",
        "unreachable",
        Duration::from_secs(300),
    )?;
    ensure!(
        !bad.success,
        "the run with an unreachable host succeeded:\n{}",
        tail_of(&bad.output, 40)
    );
    for want in [
        "Cannot reach 1 host(s) of the inventory: node5 (10.202.0.99)",
        "Nothing was installed on any host",
    ] {
        ensure!(
            bad.output.contains(want),
            "output lacks {want:?}:\n{}",
            tail_of(&bad.output, 40)
        );
    }
    for (name, counts) in &bad.recap {
        ensure!(
            counts.get("changed") == Some(&0),
            "unreachable run: {name} changed={:?}",
            counts.get("changed")
        );
    }
    if bad.output.contains("TASK [etcd") || bad.output.contains("TASK [pgha :") {
        bail!(
            "the run with an unreachable host went on installing:\n{}",
            tail_of(&bad.output, 60)
        );
    }

    // The default service manager, systemd, on hosts without it: refused before any change.
    let systemd = playbook_with(
        &dir,
        "inventory.yml",
        "systemd",
        &["-e", "pgha_service_manager=systemd"],
        Duration::from_secs(300),
    )?;
    expect_refused(
        &systemd,
        "systemd on hosts without it",
        &["does not run systemd", "Nothing was installed"],
    )?;

    // An etcd_extra_env that would override the role's own member settings: refused before
    // any change, naming the variable.
    let extra = playbook_with(
        &dir,
        "inventory.yml",
        "bad-etcd-env",
        &[
            "-e",
            r#"{"etcd_extra_env": {"ETCD_DATA_DIR": "/tmp/elsewhere"}}"#,
        ],
        Duration::from_secs(300),
    )?;
    expect_refused(
        &extra,
        "an etcd_extra_env setting ETCD_DATA_DIR",
        &["etcd_extra_env must map", "Nothing was installed"],
    )?;

    // A new database host: node4 added to the `pgha` group, nothing else changed. It is
    // installed and streams from the leader; the HAProxy hosts' files gain it and HAProxy
    // reloads (the same master, new workers); the running agents and the leader stay.
    let before = daemons_of_core_hosts()?;
    std::fs::write(
        dir.join("inventory-join.yml"),
        inventory(&dir, &bins, &[JOINING]),
    )?;
    let join = playbook(&dir, "inventory-join.yml", "join", Duration::from_secs(600))?;
    let all: Vec<&str> = HOSTS.iter().chain([&JOINING]).map(|(n, _)| *n).collect();
    check_recap_of(&join, "the run with node4 added", &all, false)?;
    wait_until(
        "node4 streaming, the leader unchanged",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let members = list_members(&ctl)?;
            let streaming = members
                .iter()
                .filter(|m| m.1 == "Replica" && m.2 == "streaming")
                .count();
            ensure!(
                members.len() == 4
                    && streaming == 3
                    && members.iter().any(|m| m.0 == leader && m.1 == "Leader")
                    && members
                        .iter()
                        .any(|m| m.0 == JOINING.0 && m.2 == "streaming"),
                "{members:?}"
            );
            Ok(())
        },
    )?;
    haproxy_file_matches_pghactl(&dir, &ctl)?;
    let after = daemons_of_core_hosts()?;
    for (((name, _), (master0, workers0, agent0)), (master1, workers1, agent1)) in
        HOSTS.iter().zip(&before).zip(&after)
    {
        ensure!(
            master0 == master1 && workers0 != workers1,
            "{name}: HAProxy was not reloaded in place: master {master0} workers {workers0:?} before, master {master1} workers {workers1:?} after"
        );
        ensure!(
            agent0 == agent1,
            "{name}: the agent was restarted (pid {agent0} -> {agent1}) for a member added elsewhere"
        );
    }
    // HAProxy sends reads to node4 too (round robin over the replicas whose check passes).
    wait_until(
        "a read through HAProxy's replica port served by node4",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let served = psql(HAPROXY_HOST, 5001, "SELECT host(inet_server_addr())")?;
            ensure!(served == JOINING.1, "served by {served}");
            Ok(())
        },
    )?;

    report(&format!(
        "{NAME}: 3 namespace hosts installed by ansible-playbook (leader {leader}), re-run changed=0, unreachable host, systemd-less hosts and a bad etcd_extra_env refused; node4 joined as a streaming replica, HAProxy reloaded with it on every host"
    ));
    hosts.passed = true;
    Ok(())
}

#[test]
fn recap_lines_parse() {
    let out = "PLAY RECAP *****\nnode1                      : ok=26   changed=0    unreachable=0    failed=0    skipped=8    rescued=0    ignored=0   \nnode4 : ok=1 changed=0 unreachable=0 failed=0 skipped=0 rescued=0 ignored=1\n";
    let r = parse_recap(out);
    assert_eq!(r["node1"]["ok"], 26);
    assert_eq!(r["node1"]["changed"], 0);
    assert_eq!(r["node4"]["ignored"], 1);
}
