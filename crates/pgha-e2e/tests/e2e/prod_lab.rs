//! The local lab, `scripts/cluster.sh` (README's first command), run as an operator runs it but
//! in a private directory and at a port offset, so it never meets the operator's own lab:
//! (a) `up --nodes 3 --etcd 3`: three etcd members, every agent configured with all three
//!     endpoints, a leader and two streaming replicas in `pghactl list`, a write through
//!     HAProxy's primary port lands on the leader and is read back through the replica port,
//!     `status` works, a second `up` starts nothing;
//! (b) `PGHA_LAB_NODES=2`, one etcd: `stop` stops every process and keeps the data, `up` brings
//!     the same cluster back;
//! and after each `down`: no process mentions the lab directory, none of the lab's ports
//! listens, the directory is gone, a second `down` succeeds. If the test fails half-way a Drop
//! guard runs `down`, then SIGKILLs whatever PID the lab recorded that still runs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use pgha_e2e::client::{collect_rows, runtime};
use pgha_e2e::cluster::exclusive_lock;
use pgha_e2e::proc::{pid_alive, run_with_timeout, signal, wait_pid_gone};
use pgha_e2e::{locate_binaries, report, tail, wait_until, Signal};
use tokio_postgres::NoTls;

use crate::common::{parse_list, skip, ListRow};
use crate::prod_support::no_haproxy;

const NAME: &str = "lab_script_up_status_stop_down";
/// The lab's superuser password (scripts/cluster.sh writes it into every node's YAML).
const SU_PASSWORD: &str = "lab-su-pass";
const UP_TIMEOUT: Duration = Duration::from_secs(150);
const DOWN_TIMEOUT: Duration = Duration::from_secs(90);
const QUICK_TIMEOUT: Duration = Duration::from_secs(30);
/// Where the lab directories go: /tmp is world-traversable, as the `postgres` user needs.
pub(crate) const TMP: &str = "/tmp";
const DIR_PREFIX: &str = "pgha-lab-e2e-";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster.sh")
}

/// The lab's port plan, as scripts/cluster.sh derives it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) nodes: u16,
    pub(crate) etcd: u16,
    pub(crate) offset: u16,
}

impl Shape {
    pub(crate) fn pg_port(&self, i: u16) -> u16 {
        5440 + i + self.offset
    }
    fn rest_port(&self, i: u16) -> u16 {
        8010 + i + self.offset
    }
    fn etcd_client_port(&self, k: u16) -> u16 {
        2279 + 100 * k + self.offset
    }
    fn etcd_peer_port(&self, k: u16) -> u16 {
        2280 + 100 * k + self.offset
    }
    pub(crate) fn primary_port(&self) -> u16 {
        5000 + self.offset
    }
    fn replica_port(&self) -> u16 {
        5001 + self.offset
    }
    fn stats_port(&self) -> u16 {
        7000 + self.offset
    }

    /// Every port the lab listens on, with what for.
    pub(crate) fn ports(&self) -> Vec<(u16, String)> {
        let mut v = Vec::new();
        for k in 1..=self.etcd {
            v.push((self.etcd_client_port(k), format!("etcd{k} client")));
            v.push((self.etcd_peer_port(k), format!("etcd{k} peer")));
        }
        for i in 1..=self.nodes {
            v.push((self.pg_port(i), format!("node{i} PostgreSQL")));
            v.push((self.rest_port(i), format!("node{i} REST")));
        }
        v.push((self.primary_port(), "HAProxy primary".into()));
        v.push((self.replica_port(), "HAProxy replicas".into()));
        v.push((self.stats_port(), "HAProxy stats".into()));
        v
    }
}

/// TCP ports in LISTEN state on this machine (network namespace), from /proc/net/tcp{,6}.
pub(crate) fn listening_ports() -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(f) {
            out.extend(parse_listening(&text));
        }
    }
    out
}

/// `sl local_address rem_address st ...`: local port (hex after ':') of rows with st 0A.
fn parse_listening(text: &str) -> Vec<u16> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f.get(1)?.rsplit_once(':')?.1;
            (f.get(3) == Some(&"0A"))
                .then(|| u16::from_str_radix(port, 16).ok())
                .flatten()
        })
        .collect()
}

/// An offset below the ephemeral range (so `free_port()` of concurrent tests never hands out a
/// lab port) where every port of `shape` is free.
pub(crate) fn free_offset(nodes: u16, etcd: u16) -> Result<u16> {
    free_offset_where(nodes, etcd, |_| true)
}

/// [`free_offset`] among the offsets `usable` accepts.
pub(crate) fn free_offset_where(
    nodes: u16,
    etcd: u16,
    usable: impl Fn(u16) -> bool,
) -> Result<u16> {
    let listening = listening_ports();
    for offset in (20000..=24000).step_by(250).filter(|o| usable(*o)) {
        let shape = Shape {
            nodes,
            etcd,
            offset,
        };
        let all_free = shape
            .ports()
            .iter()
            .all(|(p, _)| !listening.contains(p) && TcpListener::bind(("127.0.0.1", *p)).is_ok());
        if all_free {
            return Ok(offset);
        }
    }
    bail!("no port offset in 20000..=24000 leaves every lab port free")
}

/// The command line of `pid`, NULs turned into spaces.
fn cmdline(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// Live processes whose command line mentions `dir/`.
fn processes_mentioning(dir: &Path) -> Vec<(i32, String)> {
    let needle = format!("{}/", dir.display());
    let me = std::process::id() as i32;
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && pid_alive(pid))
        .filter_map(|pid| {
            let cmd = cmdline(pid)?;
            cmd.contains(&needle).then_some((pid, cmd))
        })
        .collect()
}

/// Rows of one simple query as the lab's superuser through 127.0.0.1:`port`, bounded.
fn sql(port: u16, query: &str) -> Result<Vec<Vec<Option<String>>>> {
    let conninfo = format!(
        "host=127.0.0.1 port={port} user=postgres password={SU_PASSWORD} dbname=postgres \
         connect_timeout=3"
    );
    let query = query.to_string();
    runtime()
        .block_on(async move {
            tokio::time::timeout(Duration::from_secs(10), async move {
                let (client, conn) = tokio_postgres::connect(&conninfo, NoTls).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                client.simple_query(&query).await
            })
            .await
        })
        .map_err(|_| anyhow!("query on port {port} timed out"))?
        .with_context(|| format!("query on port {port}"))
        .map(collect_rows)
}

/// One lab: `<TMP>/pgha-lab-e2e-<pid>-<tag>/` (0755, holding owner.pid) with the lab in `lab/`.
/// Dropping it runs `down`, then SIGKILLs recorded PIDs still running, then removes it all.
pub(crate) struct Lab {
    pub(crate) parent: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) shape: Shape,
    bin: PathBuf,
    pub(crate) passed: bool,
}

impl Lab {
    pub(crate) fn new(tag: &str, shape: Shape, bin: &Path) -> Result<Lab> {
        let parent = Path::new(TMP).join(format!("{DIR_PREFIX}{}-{tag}", std::process::id()));
        let lab = Lab {
            dir: parent.join("lab"),
            parent,
            shape,
            bin: bin.to_path_buf(),
            passed: false,
        };
        fs::create_dir(&lab.parent).with_context(|| format!("create {}", lab.parent.display()))?;
        fs::set_permissions(&lab.parent, fs::Permissions::from_mode(0o755))?;
        fs::write(
            lab.parent.join("owner.pid"),
            format!("{}\n", std::process::id()),
        )?;
        Ok(lab)
    }

    /// `bash scripts/cluster.sh ARGS` on this lab. Only PGHA_LAB_DIR is always set: `status`,
    /// `stop` and `down` must find the rest in the lab directory. `env` adds variables.
    fn run(&self, args: &[&str], env: &[(&str, String)], timeout: Duration) -> Result<Output> {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .args(args)
            .env("PGHA_LAB_DIR", &self.dir)
            .env("PGHA_LAB_BIN_DIR", &self.bin);
        for v in [
            "PGHA_LAB_NODES",
            "PGHA_LAB_ETCD",
            "PGHA_LAB_PORT_OFFSET",
            "PGHA_LAB_HAPROXY",
        ] {
            cmd.env_remove(v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_with_timeout(&mut cmd, None, timeout)
    }

    /// Like `run`, requiring success; stdout and stderr together.
    pub(crate) fn run_ok(
        &self,
        args: &[&str],
        env: &[(&str, String)],
        timeout: Duration,
    ) -> Result<String> {
        let t = Instant::now();
        let out = self.run(args, env, timeout)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            out.status.success(),
            "cluster.sh {} failed ({}) after {:.1}s:\n{text}",
            args.join(" "),
            out.status,
            t.elapsed().as_secs_f64()
        );
        Ok(text)
    }

    /// `up` with the port offset (and `env`), which must succeed and say so.
    pub(crate) fn up(&self, args: &[&str], env: &[(&str, String)]) -> Result<String> {
        let mut all = vec![("PGHA_LAB_PORT_OFFSET", self.shape.offset.to_string())];
        all.extend(env.iter().cloned());
        let mut argv = vec!["up"];
        argv.extend(args);
        self.run_ok(&argv, &all, UP_TIMEOUT)
    }

    /// `pghactl list` with the lab's own configuration.
    pub(crate) fn list(&self) -> Result<Vec<ListRow>> {
        let out = run_with_timeout(
            Command::new(self.dir.join("pghactl"))
                .arg("-c")
                .arg(self.dir.join("node1.yml"))
                .arg("list"),
            None,
            QUICK_TIMEOUT,
        )?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "pghactl list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(parse_list(&text)?.1)
    }

    /// Every PID the lab recorded: its .pid files and each node's postmaster.pid.
    pub(crate) fn recorded_pids(&self) -> BTreeMap<String, i32> {
        let mut out = BTreeMap::new();
        let first_line = |p: &Path| -> Option<i32> {
            fs::read_to_string(p)
                .ok()?
                .lines()
                .next()?
                .trim()
                .parse()
                .ok()
        };
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return out;
        };
        for e in rd.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".pid") {
                if let Some(pid) = first_line(&path) {
                    out.insert(stem.to_string(), pid);
                }
            } else if path.is_dir() {
                if let Some(pid) = first_line(&path.join("data/postmaster.pid")) {
                    out.insert(format!("{name} postmaster"), pid);
                }
            }
        }
        out
    }

    /// Waits until `pghactl list` shows one leader running and every other node streaming;
    /// returns the leader's row.
    pub(crate) fn wait_healthy(&self, timeout: Duration) -> Result<ListRow> {
        let n = self.shape.nodes as usize;
        wait_until(
            "a leader and every replica streaming in pghactl list",
            timeout,
            Duration::from_millis(500),
            || {
                let rows = self.list()?;
                ensure!(rows.len() == n, "{} members listed: {rows:?}", rows.len());
                let leaders: Vec<&ListRow> = rows
                    .iter()
                    .filter(|r| r.role == "Leader" && r.state == "running")
                    .collect();
                let streaming = rows
                    .iter()
                    // The lab runs in synchronous mode: one of them is the Sync Standby.
                    .filter(|r| {
                        matches!(r.role.as_str(), "Replica" | "Sync Standby")
                            && r.state == "streaming"
                    })
                    .count();
                ensure!(
                    leaders.len() == 1 && streaming == n - 1,
                    "not one leader and {} streaming replicas: {rows:?}",
                    n - 1
                );
                Ok(leaders[0].clone())
            },
        )
    }

    /// After `stop`/`down`: nothing of the lab runs (no process mentioning its directory, none
    /// of `pids` recorded before) and none of its ports listens.
    fn check_nothing_runs(&self, after: &str, pids: &BTreeMap<String, i32>) -> Result<()> {
        let left = processes_mentioning(&self.dir);
        ensure!(
            left.is_empty(),
            "after {after}, processes mentioning {} still run: {left:?}",
            self.dir.display()
        );
        for (name, pid) in pids {
            ensure!(
                !pid_alive(*pid),
                "after {after}, recorded {name} (pid {pid}) still runs: {:?}",
                cmdline(*pid)
            );
        }
        let listening = listening_ports();
        let busy: Vec<(u16, String)> = self
            .shape
            .ports()
            .into_iter()
            .filter(|(p, _)| listening.contains(p))
            .collect();
        ensure!(
            busy.is_empty(),
            "after {after}, lab ports still listen: {busy:?}"
        );
        Ok(())
    }

    /// `down`, then the checks that nothing is left; a second `down` must succeed too.
    pub(crate) fn down_and_check(&mut self) -> Result<f64> {
        let pids = self.recorded_pids();
        ensure!(
            !pids.is_empty(),
            "no PID recorded in {}",
            self.dir.display()
        );
        let t = Instant::now();
        let out = self.run_ok(&["down"], &[], DOWN_TIMEOUT)?;
        let secs = t.elapsed().as_secs_f64();
        ensure!(
            !self.dir.exists(),
            "down left {}:\n{out}",
            self.dir.display()
        );
        self.check_nothing_runs("down", &pids)?;
        let again = self.run_ok(&["down"], &[], QUICK_TIMEOUT)?;
        ensure!(again.contains("nothing to stop"), "second down: {again}");
        Ok(secs)
    }

    /// Log tails for a failure message.
    fn dump_logs(&self) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut logs: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().map(|e| e == "log").unwrap_or(false))
            .collect();
        logs.sort();
        for p in logs {
            let text = fs::read_to_string(&p).unwrap_or_default();
            eprintln!("---- {} (last 30 lines)\n{}", p.display(), tail(&text, 30));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.passed {
            self.dump_logs();
        }
        let recorded = self.recorded_pids();
        if self.dir.exists() {
            match self.run(&["down"], &[], DOWN_TIMEOUT) {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "pgha-e2e: cleanup: cluster.sh down failed ({}): {}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => eprintln!("pgha-e2e: cleanup: cluster.sh down: {e:#}"),
            }
        }
        // Last resort, by recorded PID only, and only while that PID is still the lab's.
        let needle = format!("{}/", self.dir.display());
        for (name, pid) in recorded {
            let ours = cmdline(pid).map(|c| c.contains(&needle)).unwrap_or(false)
                || fs::read_link(format!("/proc/{pid}/cwd"))
                    .map(|c| c.starts_with(&self.dir))
                    .unwrap_or(false);
            if pid_alive(pid) && ours {
                eprintln!("pgha-e2e: cleanup: SIGKILL {name} (pid {pid}), left after down");
                let _ = signal(pid, Signal::SIGKILL);
                wait_pid_gone(pid, Duration::from_secs(3));
            }
        }
        let _ = fs::remove_dir_all(&self.parent);
    }
}

/// Labs left by a run of this test that was SIGKILLed (its owner.pid dead): dropped, which runs
/// their `down` and removes them.
pub(crate) fn reap_stale_labs(bin: &Path) {
    let Ok(rd) = fs::read_dir(TMP) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(DIR_PREFIX) {
            continue;
        }
        let parent = e.path();
        let owner = fs::read_to_string(parent.join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if owner.map(pid_alive).unwrap_or(true) {
            continue;
        }
        eprintln!("pgha-e2e: removing the stale lab {}", parent.display());
        drop(Lab {
            dir: parent.join("lab"),
            parent,
            shape: Shape {
                nodes: 0,
                etcd: 0,
                offset: 0,
            },
            bin: bin.to_path_buf(),
            passed: true,
        });
    }
}

/// Debian packages the lab needs and the script would install (as root): skip without them.
pub(crate) fn missing_packages(name: &str) -> bool {
    let need = [
        ("/usr/lib/postgresql/15/bin/postgres", "postgresql-15"),
        ("/usr/bin/etcd", "etcd-server"),
        ("/usr/bin/etcdctl", "etcd-client"),
    ];
    let missing: Vec<&str> = need
        .iter()
        .filter(|(p, _)| !Path::new(p).is_file())
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return false;
    }
    report(&format!(
        "{name}: skipped (missing {}: apt-get install them)",
        missing.join(" ")
    ));
    true
}

/// A write through HAProxy's primary port lands on the leader (port `leader_pg`, out of
/// recovery) and is read back through the replica port (a replica, in recovery).
fn check_haproxy(lab: &Lab, leader_pg: u16, table: &str) -> Result<()> {
    let s = lab.shape;
    let rows = sql(
        s.primary_port(),
        &format!(
            "CREATE TABLE {table}(id int); INSERT INTO {table} VALUES (1); \
             SELECT inet_server_port(), pg_is_in_recovery()"
        ),
    )?;
    let row = rows.first().ok_or_else(|| anyhow!("no row"))?;
    let port = row.first().cloned().flatten().unwrap_or_default();
    let recovery = row.get(1).cloned().flatten().unwrap_or_default();
    ensure!(
        port == leader_pg.to_string() && recovery == "f",
        "the primary port reached PostgreSQL port {port} (in recovery: {recovery}), the \
         leader is on {leader_pg}"
    );
    if s.nodes > 1 {
        wait_until(
            "the write to be readable through the replica port",
            Duration::from_secs(15),
            Duration::from_millis(200),
            || {
                let rows = sql(
                    s.replica_port(),
                    &format!(
                        "SELECT count(*), pg_is_in_recovery(), inet_server_port() FROM {table}"
                    ),
                )?;
                let row = rows.first().ok_or_else(|| anyhow!("no row"))?;
                let got: Vec<String> = row.iter().map(|c| c.clone().unwrap_or_default()).collect();
                ensure!(
                    got[0] == "1" && got[1] == "t",
                    "replica port answered count, in recovery, port = {got:?}"
                );
                Ok(())
            },
        )?;
    }
    Ok(())
}

/// (a) Three nodes, three etcd members, flags on the command line.
fn three_etcd_members(bin: &Path) -> Result<String> {
    let shape = Shape {
        nodes: 3,
        etcd: 3,
        offset: free_offset(3, 3)?,
    };
    let mut lab = Lab::new("etcd3", shape, bin)?;
    let t = Instant::now();
    let out = lab.up(&["--nodes", "3", "--etcd", "3"], &[])?;
    let up_secs = t.elapsed().as_secs_f64();
    ensure!(out.contains("is up in"), "up said:\n{out}");
    let state = fs::read_to_string(lab.dir.join("lab.env"))?;
    ensure!(
        state.contains("NODES=3\n")
            && state.contains("ETCD_MEMBERS=3\n")
            && state.contains(&format!("PORT_OFFSET={}\n", shape.offset)),
        "lab.env: {state}"
    );
    // Three etcd processes, each with its own data dir, and every agent knows all three.
    let pids = lab.recorded_pids();
    for k in 1..=shape.etcd {
        let pid = pids
            .get(&format!("etcd{k}"))
            .ok_or_else(|| anyhow!("no etcd{k}.pid"))?;
        let cmd = cmdline(*pid).unwrap_or_default();
        ensure!(
            cmd.contains(&format!("--data-dir {}/etcd{k}", lab.dir.display()))
                && cmd.contains("--initial-cluster etcd1="),
            "etcd{k} (pid {pid}) runs {cmd:?}"
        );
    }
    for i in 1..=shape.nodes {
        let yml = fs::read_to_string(lab.dir.join(format!("node{i}.yml")))?;
        for k in 1..=shape.etcd {
            let host = format!("\"127.0.0.1:{}\"", shape.etcd_client_port(k));
            ensure!(yml.contains(&host), "node{i}.yml lacks etcd host {host}");
        }
    }
    let leader = lab.wait_healthy(Duration::from_secs(10))?;
    let leader_pg = shape.pg_port(leader.member.trim_start_matches("node").parse()?);
    ensure!(
        leader.host == format!("127.0.0.1:{leader_pg}"),
        "leader row {leader:?}, expected port {leader_pg}"
    );
    check_haproxy(&lab, leader_pg, "lab_probe")?;

    let status = lab.run_ok(&["status"], &[], QUICK_TIMEOUT)?;
    for want in [
        "etcd1: running",
        "etcd3: running",
        "node1: agent running",
        "node3: agent running",
        "HAProxy (pid",
        "Leader",
    ] {
        ensure!(status.contains(want), "status lacks {want:?}:\n{status}");
    }

    // A second `up` starts nothing.
    let before = lab.recorded_pids();
    let again = lab.up(&["--nodes", "3", "--etcd", "3"], &[])?;
    ensure!(
        again.contains("already running"),
        "second up said:\n{again}"
    );
    let after = lab.recorded_pids();
    ensure!(
        before == after,
        "second up changed PIDs: {before:?} -> {after:?}"
    );

    let down_secs = lab.down_and_check()?;
    lab.passed = true;
    Ok(format!(
        "3 nodes + 3 etcd at offset {}: up {up_secs:.1}s, down {down_secs:.1}s",
        shape.offset
    ))
}

/// (b) Two nodes asked for through PGHA_LAB_NODES, one etcd; `stop` keeps the data.
fn stop_keeps_data(bin: &Path) -> Result<String> {
    let shape = Shape {
        nodes: 2,
        etcd: 1,
        offset: free_offset(2, 1)?,
    };
    let mut lab = Lab::new("stop", shape, bin)?;
    let t = Instant::now();
    lab.up(&[], &[("PGHA_LAB_NODES", "2".to_string())])?;
    let up_secs = t.elapsed().as_secs_f64();
    let leader = lab.wait_healthy(Duration::from_secs(10))?;
    let leader_pg = shape.pg_port(leader.member.trim_start_matches("node").parse()?);
    check_haproxy(&lab, leader_pg, "lab_kept")?;

    let pids = lab.recorded_pids();
    let t = Instant::now();
    lab.run_ok(&["stop"], &[], DOWN_TIMEOUT)?;
    let stop_secs = t.elapsed().as_secs_f64();
    lab.check_nothing_runs("stop", &pids)?;
    ensure!(
        lab.dir.join("node1/data/PG_VERSION").is_file(),
        "stop removed node1's data"
    );
    let status = lab.run(&["status"], &[], QUICK_TIMEOUT)?;
    let text = String::from_utf8_lossy(&status.stdout);
    ensure!(
        !status.status.success() && text.contains("node1: agent NOT running"),
        "status of a stopped lab ({}): {text}",
        status.status
    );

    let t = Instant::now();
    lab.up(&[], &[])?;
    let restart_secs = t.elapsed().as_secs_f64();
    lab.wait_healthy(Duration::from_secs(10))?;
    let rows = sql(shape.primary_port(), "SELECT count(*) FROM lab_kept")?;
    ensure!(
        rows.first()
            .and_then(|r| r.first().cloned().flatten())
            .as_deref()
            == Some("1"),
        "the row written before stop is gone: {rows:?}"
    );
    let down_secs = lab.down_and_check()?;
    lab.passed = true;
    Ok(format!(
        "2 nodes + 1 etcd at offset {}: up {up_secs:.1}s, stop {stop_secs:.1}s, up again \
         {restart_secs:.1}s, down {down_secs:.1}s",
        shape.offset
    ))
}

#[test]
fn lab_script_up_status_stop_down() -> Result<()> {
    if skip(NAME) || no_haproxy(NAME) || missing_packages(NAME) {
        return Ok(());
    }
    let _lock = exclusive_lock()?;
    let bin = locate_binaries()?;
    reap_stale_labs(&bin);
    let t0 = Instant::now();
    let a = three_etcd_members(&bin)?;
    let b = stop_keeps_data(&bin)?;
    report(&format!(
        "lab: scripts/cluster.sh {a}; {b}; nothing left after down ({:.1}s in all)",
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

#[test]
fn lab_parses_proc_net_tcp() {
    let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F4B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F4C 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
";
    assert_eq!(parse_listening(text), vec![8011]);
    let s = Shape {
        nodes: 3,
        etcd: 3,
        offset: 100,
    };
    let ports: Vec<u16> = s.ports().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        ports,
        [
            2479, 2480, 2579, 2580, 2679, 2680, 5541, 8111, 5542, 8112, 5543, 8113, 5100, 5101,
            7100
        ]
    );
}
