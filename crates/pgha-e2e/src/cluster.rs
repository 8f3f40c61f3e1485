//! A whole test cluster: one etcd, N agents (the copied `pgha` binary, run as `postgres`), their
//! PostgreSQL instances, all under one fresh temp dir, torn down by `Drop` whatever happens.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;

use crate::client::{PgEndpoint, RestEndpoint};
use crate::config::{render_node_config, ClusterOptions, NodeSpec, TlsFiles, NAMESPACE};
use crate::etcd::{EtcdClient, EtcdKv, EtcdServer, ETCDCTL_BIN, ETCD_BIN};
use crate::ports::free_port;
use crate::proc::{
    kill_postmaster, kill_processes_under, live_postmaster, postgres_identity, processes_under,
    reap_stale_dirs, run_as, run_with_timeout, signal, wait_pid_gone, RunAs,
};
use crate::wait::wait_until;

pub const AGENT_BIN: &str = "pgha";
pub const CTL_BIN: &str = "pghactl";
const BUILD_HINT: &str = "build the binaries first: cargo build -p pgha-agent -p pgha-ctl";
const LOCK_PATH: &str = "/tmp/pgha-e2e.lock";

/// Prints a line that must reach the CI log even when the test passes (measured failover times):
/// straight to the process's stderr, bypassing libtest's capture, and appended to the file named
/// by PGHA_E2E_REPORT if set.
pub fn report(msg: &str) {
    let line = format!("pgha-e2e: {msg}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Ok(path) = std::env::var("PGHA_E2E_REPORT") {
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// The e2e slots: a scenario on its own free ports holds one of them, a scenario that needs
/// the machine to itself (fixed ports, network namespaces, a load test, Patroni's agents)
/// holds both. Two cores carry two small clusters well, as they mostly wait on timers; the
/// slots hold across threads (cargo test) and processes (nextest, another checkout's run).
const SLOT_PATHS: [&str; 2] = [LOCK_PATH, "/tmp/pgha-e2e.lock.1"];

/// Held for a whole scenario (see [`SLOT_PATHS`]).
pub struct SlotLock {
    _slots: Vec<Flock<File>>,
    since: Instant,
    what: &'static str,
}

impl Drop for SlotLock {
    fn drop(&mut self) {
        // The scenario's own time, without its wait for a slot: what to look at when the
        // suite grows slow.
        let name = std::thread::current()
            .name()
            .filter(|n| *n != "main")
            .map(str::to_string)
            .or_else(|| std::env::var("NEXTEST_TEST_NAME").ok())
            .unwrap_or_else(|| "a scenario".to_string());
        report(&format!(
            "{name}: held {} for {:.1}s",
            self.what,
            self.since.elapsed().as_secs_f64()
        ));
    }
}

fn try_slot(path: &str) -> Result<Option<Flock<File>>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .or_else(|_| File::open(path))
        .with_context(|| format!("open {path}"))?;
    Ok(Flock::lock(file, FlockArg::LockExclusiveNonblock).ok())
}

fn wait_slots(what: &'static str, mut take: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while !take()? {
        if start.elapsed() > Duration::from_secs(3600) {
            bail!("waited an hour for {what} ({SLOT_PATHS:?}): another e2e run holds them");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// One of the two e2e slots: for a cluster on free loopback ports of its own.
pub fn shared_lock() -> Result<SlotLock> {
    let mut got = None;
    wait_slots("an e2e slot", || {
        for p in SLOT_PATHS {
            if let Some(l) = try_slot(p)? {
                got = Some(l);
                return Ok(true);
            }
        }
        Ok(false)
    })?;
    Ok(SlotLock {
        _slots: got.into_iter().collect(),
        since: Instant::now(),
        what: "an e2e slot",
    })
}

/// Both e2e slots, in order (so two exclusive scenarios cannot each hold one): for a scenario
/// that needs the machine to itself.
pub fn exclusive_lock() -> Result<SlotLock> {
    let mut slots = Vec::new();
    for p in SLOT_PATHS {
        wait_slots("both e2e slots", || match try_slot(p)? {
            Some(l) => {
                slots.push(l);
                Ok(true)
            }
            None => Ok(false),
        })?;
    }
    Ok(SlotLock {
        _slots: slots,
        since: Instant::now(),
        what: "both e2e slots",
    })
}

/// The directory holding freshly built `pgha` and `pghactl`.
pub fn locate_binaries() -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(d) = std::env::var("PGHA_BIN_DIR") {
        candidates.push(PathBuf::from(d));
    }
    // The test executable is <target>/<profile>/deps/<name>-<hash>.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile) = exe.parent().and_then(Path::parent) {
            candidates.push(profile.to_path_buf());
        }
    }
    if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("debug"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug"));
    for d in &candidates {
        if d.join(AGENT_BIN).is_file() && d.join(CTL_BIN).is_file() {
            return Ok(d.clone());
        }
    }
    bail!("{AGENT_BIN} and {CTL_BIN} not found (looked in {candidates:?}); {BUILD_HINT}")
}

fn unique_suffix() -> String {
    static COUNTER: Mutex<u32> = Mutex::new(0);
    let mut c = COUNTER.lock().unwrap_or_else(|p| p.into_inner());
    *c += 1;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let mixed = (nanos as u64) ^ ((std::process::id() as u64) << 20) ^ ((*c as u64) << 40);
    format!("{:08x}", mixed & 0xffff_ffff)
}

#[derive(Default)]
struct AgentProc {
    child: Option<Child>,
    exit: Option<ExitStatus>,
}

impl AgentProc {
    fn poll(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                self.exit = Some(st);
                self.child = None;
            }
        }
    }
}

pub struct Node {
    pub spec: NodeSpec,
    pub pg: PgEndpoint,
    pub rest: RestEndpoint,
    agent: Mutex<AgentProc>,
    /// Extra environment for this node's agent, on top of `ClusterOptions::agent_env`.
    env: Mutex<Vec<(String, String)>>,
    /// Another agent program for this node (Patroni, in mixed clusters), run with the same
    /// configuration file; `None` is pgha.
    program: Mutex<Option<PathBuf>>,
}

impl Node {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// One query as the superuser over TCP (fresh connection, bounded).
    pub fn sql(&self, query: &str) -> Result<crate::Rows> {
        self.pg.sql(query)
    }

    /// GET on the node's REST API with a 2 s timeout: (status, body).
    pub fn rest_get(&self, path: &str) -> Result<(u16, String)> {
        self.rest.get(path)
    }
}

pub struct Cluster {
    pub base: PathBuf,
    pub scope: String,
    pub opts: ClusterOptions,
    bin: PathBuf,
    run_as: Option<RunAs>,
    /// The private CA of a TLS cluster (see [`Cluster::issue_cert`]).
    tls_ca: Option<pgha_tls::test_ca::TestCa>,
    etcd: Mutex<EtcdServer>,
    etcdc: EtcdClient,
    nodes: Vec<Node>,
    passed: bool,
    // Declared last: dropped after `Drop::drop` has cleaned up.
    _lock: SlotLock,
}

/// A private CA and the certificates of a TLS cluster under `<base>/tls` (see [`TlsFiles`]).
fn make_tls_files(
    base: &Path,
    run_as: Option<RunAs>,
) -> Result<(TlsFiles, pgha_tls::test_ca::TestCa)> {
    use pgha_tls::test_ca::TestCa;
    let dir = base.join("tls");
    fs::create_dir(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    let ca = TestCa::new("pgha e2e CA");
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        cert: dir.join("node.crt"),
        key: dir.join("node.key"),
    };
    ca.write(&files.ca)?;
    TestCa::new("pgha e2e unrelated CA").write(&files.other_ca)?;
    ca.issue(&dir, "node", &["127.0.0.1", "localhost"])?;
    for f in [&files.ca, &files.other_ca, &files.cert] {
        fs::set_permissions(f, fs::Permissions::from_mode(0o644))?;
    }
    fs::set_permissions(&files.key, fs::Permissions::from_mode(0o600))?;
    if let Some(w) = run_as {
        nix::unistd::chown(&files.key, Some(w.uid), Some(w.gid))
            .with_context(|| format!("chown {}", files.key.display()))?;
    }
    Ok((files, ca))
}

impl Cluster {
    /// Creates the directory, copies the binaries, writes every node's config, starts etcd and
    /// every agent. Does not wait for the cluster to become healthy.
    pub fn start(opts: ClusterOptions) -> Result<Cluster> {
        let c = Cluster::prepare(opts)?;
        c.start_etcd()?;
        for n in c.node_names() {
            c.start_node(&n)?;
        }
        Ok(c)
    }

    /// [`Cluster::start`], then waits for a leader and every replica streaming.
    pub fn start_healthy(opts: ClusterOptions) -> Result<Cluster> {
        let n = opts.nodes;
        let c = Cluster::start(opts)?;
        let t0 = Instant::now();
        let leader = c.wait_for_leader(Duration::from_secs(90))?;
        c.wait_streaming(n - 1, Duration::from_secs(120))?;
        report(&format!(
            "cluster {} up: leader {leader}, {} replicas streaming after {:.1}s",
            c.scope,
            n - 1,
            t0.elapsed().as_secs_f64()
        ));
        Ok(c)
    }

    /// Everything but starting processes.
    pub fn prepare(opts: ClusterOptions) -> Result<Cluster> {
        let lock = if opts.exclusive {
            exclusive_lock()?
        } else {
            shared_lock()?
        };
        let bin_src = locate_binaries()?;
        for p in [ETCD_BIN, ETCDCTL_BIN] {
            ensure!(
                Path::new(p).is_file(),
                "{p} is missing: apt-get install etcd-server etcd-client"
            );
        }
        let postgres = Path::new(&opts.bin_dir).join("postgres");
        ensure!(
            postgres.is_file(),
            "{} is missing: apt-get install postgresql-15",
            postgres.display()
        );
        let run_as = postgres_identity()?;
        reap_stale_dirs(Path::new("/tmp"));

        let suffix = unique_suffix();
        let scope = format!("e2e-{suffix}");
        let base = PathBuf::from(format!("/tmp/pgha-e2e-{suffix}"));
        fs::create_dir(&base).with_context(|| format!("create {}", base.display()))?;
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755))?;
        fs::write(base.join("owner.pid"), format!("{}\n", std::process::id()))?;
        let bin = base.join("bin");
        fs::create_dir(&bin)?;
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755))?;
        for b in [AGENT_BIN, CTL_BIN] {
            let dst = bin.join(b);
            fs::copy(bin_src.join(b), &dst).with_context(|| format!("copy {b} ({BUILD_HINT})"))?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o755))?;
        }
        let mut etcd = EtcdServer::new(base.clone(), free_port()?, free_port()?);
        let mut tls_ca = None;
        if opts.tls {
            let (files, ca) = make_tls_files(&base, run_as)?;
            etcd.tls = Some(files);
            tls_ca = Some(ca);
        }
        let etcdc = etcd.client();
        let mut c = Cluster {
            base,
            scope,
            opts,
            bin,
            run_as,
            tls_ca,
            etcd: Mutex::new(etcd),
            etcdc,
            nodes: Vec::new(),
            passed: false,
            _lock: lock,
        };
        for _ in 0..c.opts.nodes {
            c.prepare_node()?;
        }
        Ok(c)
    }

    /// Marks the scenario as passed: no log dump at teardown.
    pub fn pass(mut self) {
        self.passed = true;
    }

    // ----- nodes -----

    /// Adds a node (next name, new ports, config written, directory owned by postgres) without
    /// starting its agent. Returns its name.
    pub fn prepare_node(&mut self) -> Result<String> {
        let name = format!("node{}", self.nodes.len() + 1);
        let dir = self.base.join(&name);
        fs::create_dir(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        let (etcd_client_port, tls) = {
            let etcd = self.etcd.lock().unwrap_or_else(|p| p.into_inner());
            (etcd.client_port, etcd.tls.clone())
        };
        let spec = NodeSpec {
            scope: self.scope.clone(),
            name: name.clone(),
            etcd_client_port,
            tls,
            rest_port: free_port()?,
            pg_port: free_port()?,
            data_dir: dir.join("data"),
            dir: dir.clone(),
        };
        fs::write(spec.config_path(), render_node_config(&spec, &self.opts))?;
        fs::set_permissions(spec.config_path(), fs::Permissions::from_mode(0o644))?;
        if let Some(w) = self.run_as {
            nix::unistd::chown(&dir, Some(w.uid), Some(w.gid))
                .with_context(|| format!("chown {}", dir.display()))?;
        }
        self.nodes.push(Node {
            pg: PgEndpoint {
                name: name.clone(),
                port: spec.pg_port,
                socket_dir: self.opts.pg_tls.then(|| spec.dir.clone()),
            },
            rest: RestEndpoint {
                name: name.clone(),
                port: spec.rest_port,
            },
            spec,
            agent: Mutex::new(AgentProc::default()),
            env: Mutex::new(Vec::new()),
            program: Mutex::new(None),
        });
        Ok(name)
    }

    /// A node joining later: prepared and started.
    pub fn add_node(&mut self) -> Result<String> {
        let name = self.prepare_node()?;
        self.start_node(&name)?;
        Ok(name)
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.spec.name.clone()).collect()
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.spec.name == name)
            .unwrap_or_else(|| panic!("no node named {name:?} in this cluster"))
    }

    pub fn pg(&self, name: &str) -> PgEndpoint {
        self.node(name).pg.clone()
    }

    pub fn rest(&self, name: &str) -> RestEndpoint {
        self.node(name).rest.clone()
    }

    /// Sets an environment variable for this node's agent from its next start on.
    pub fn set_node_env(&self, name: &str, key: &str, value: &str) {
        let mut env = self
            .node(name)
            .env
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value.to_string()));
    }

    /// Runs `program CONFIG` instead of pgha as this node's agent from its next start on (a
    /// Patroni agent in a mixed cluster); `None` goes back to pgha.
    pub fn set_node_program(&self, name: &str, program: Option<PathBuf>) {
        *self
            .node(name)
            .program
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = program;
    }

    /// Replaces the node's configuration file (read at its agent's next start or SIGHUP).
    pub fn write_config(&self, name: &str, yaml: &str) -> Result<()> {
        let path = self.config_path(name);
        fs::write(&path, yaml).with_context(|| format!("write {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        Ok(())
    }

    /// Edits the node's configuration file (read at its agent's next start or SIGHUP).
    pub fn edit_config(
        &self,
        name: &str,
        edit: impl FnOnce(&mut serde_yaml_ng::Value),
    ) -> Result<()> {
        let path = self.config_path(name);
        let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
        edit(&mut doc);
        self.write_config(name, &serde_yaml_ng::to_string(&doc)?)
    }

    /// A new certificate for `names` from the TLS cluster's CA, written over (or as) `cert`
    /// and `key` (mode 0600, owned by the agents' user): what a certificate rotation does.
    pub fn issue_cert(&self, cert: &Path, key: &Path, names: &[&str]) -> Result<()> {
        let ca = self
            .tls_ca
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("not a TLS cluster: no CA to issue from"))?;
        let (c, k) = ca.issue_pem(names);
        fs::write(cert, c).with_context(|| format!("write {}", cert.display()))?;
        fs::set_permissions(cert, fs::Permissions::from_mode(0o644))?;
        fs::write(key, k).with_context(|| format!("write {}", key.display()))?;
        fs::set_permissions(key, fs::Permissions::from_mode(0o600))?;
        if let Some(w) = self.run_as {
            nix::unistd::chown(key, Some(w.uid), Some(w.gid))
                .with_context(|| format!("chown {}", key.display()))?;
        }
        Ok(())
    }

    pub fn config_path(&self, name: &str) -> PathBuf {
        self.node(name).spec.config_path()
    }

    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.node(name).spec.data_dir.clone()
    }

    /// Starts (or restarts) the node's agent with its config; output is appended to its log.
    /// Returns the log offset where this run's output begins.
    pub fn start_node(&self, name: &str) -> Result<u64> {
        let node = self.node(name);
        let mut agent = node.agent.lock().unwrap_or_else(|p| p.into_inner());
        agent.poll();
        if let Some(c) = &agent.child {
            bail!("agent of {name} is still running (pid {})", c.id());
        }
        let log_path = node.spec.log_path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let offset = log.seek(SeekFrom::End(0))?;
        writeln!(log, "\n===== agent started by the e2e harness =====")?;
        let program = node
            .program
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| self.bin.join(AGENT_BIN));
        let mut cmd = Command::new(program);
        cmd.arg(node.spec.config_path())
            .current_dir(&node.spec.dir)
            .env("HOME", &node.spec.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("PATRONI") || k.starts_with("PG") {
                cmd.env_remove(&k);
            }
        }
        if self.run_as.is_some() {
            cmd.env("USER", "postgres").env("LOGNAME", "postgres");
        }
        let node_env = node.env.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (k, v) in self.opts.agent_env.iter().chain(node_env.iter()) {
            cmd.env(k, v);
        }
        run_as(&mut cmd, self.run_as);
        // If the test process dies without running Drop, the agents get SIGTERM (they then stop
        // their postgres). Set after setuid, which would clear it.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start the agent of {name}"))?;
        fs::write(node.spec.dir.join("agent.pid"), format!("{}\n", child.id()))?;
        agent.child = Some(child);
        agent.exit = None;
        Ok(offset)
    }

    pub fn agent_pid(&self, name: &str) -> Option<i32> {
        let mut a = self
            .node(name)
            .agent
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        a.poll();
        a.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn agent_running(&self, name: &str) -> bool {
        self.agent_pid(name).is_some()
    }

    /// Exit status of the node's last agent run, once it has exited.
    pub fn agent_exit(&self, name: &str) -> Option<ExitStatus> {
        let mut a = self
            .node(name)
            .agent
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        a.poll();
        a.exit
    }

    /// Sends `sig` to the node's agent; with SIGKILL also reaps it.
    pub fn kill_agent(&self, name: &str, sig: Signal) -> Result<()> {
        let pid = self
            .agent_pid(name)
            .ok_or_else(|| anyhow!("agent of {name} is not running"))?;
        signal(pid, sig)?;
        if sig == Signal::SIGKILL {
            self.wait_agent_exit(name, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Waits (bounded) for the node's agent to exit; its exit status.
    pub fn wait_agent_exit(&self, name: &str, timeout: Duration) -> Result<ExitStatus> {
        wait_until(
            &format!("the agent of {name} to exit"),
            timeout,
            Duration::from_millis(20),
            || {
                self.agent_exit(name)
                    .ok_or_else(|| anyhow!("still running"))
            },
        )
    }

    /// The live postmaster of the node (from `data_dir/postmaster.pid`).
    pub fn postmaster_pid(&self, name: &str) -> Option<i32> {
        live_postmaster(&self.node(name).spec.data_dir)
    }

    /// Sends `sig` to the node's postmaster; with SIGKILL waits until it is gone.
    pub fn kill_postmaster(&self, name: &str, sig: Signal) -> Result<i32> {
        let pid = self
            .postmaster_pid(name)
            .ok_or_else(|| anyhow!("no running postmaster on {name}"))?;
        signal(pid, sig)?;
        if sig == Signal::SIGKILL {
            ensure!(
                wait_pid_gone(pid, Duration::from_secs(10)),
                "postmaster {pid} of {name} survived SIGKILL"
            );
        }
        Ok(pid)
    }

    /// Runs a PostgreSQL program from `bin_dir` as the postgres user (bounded, 120 s).
    pub fn run_pg_tool(&self, tool: &str, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(Path::new(&self.opts.bin_dir).join(tool));
        cmd.args(args)
            .current_dir(&self.base)
            .env("LC_ALL", "C.UTF-8");
        run_as(&mut cmd, self.run_as);
        run_with_timeout(&mut cmd, None, Duration::from_secs(120))
    }

    /// `Database system identifier` of a data directory, via pg_controldata.
    pub fn controldata_sysid(&self, data_dir: &Path) -> Result<String> {
        let out = self.run_pg_tool("pg_controldata", &[&data_dir.display().to_string()])?;
        ensure!(
            out.status.success(),
            "pg_controldata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                l.strip_prefix("Database system identifier:")
                    .map(|v| v.trim().to_string())
            })
            .ok_or_else(|| anyhow!("no system identifier in pg_controldata output"))
    }

    // ----- logs -----

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.node(name).spec.log_path()
    }

    pub fn log_len(&self, name: &str) -> u64 {
        fs::metadata(self.log_path(name))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// The node's log from byte `offset` on.
    pub fn log_since(&self, name: &str, offset: u64) -> String {
        let mut s = Vec::new();
        if let Ok(mut f) = File::open(self.log_path(name)) {
            let _ = f.seek(SeekFrom::Start(offset));
            let _ = f.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    }

    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        tail(&self.log_since(name, 0), lines)
    }

    // ----- etcd -----

    pub fn etcd_port(&self) -> u16 {
        self.etcd
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .client_port
    }

    pub fn start_etcd(&self) -> Result<()> {
        self.etcd.lock().unwrap_or_else(|p| p.into_inner()).start()
    }

    /// Kills etcd by PID (SIGKILL): a DCS outage.
    pub fn stop_etcd(&self) -> Result<()> {
        self.etcd.lock().unwrap_or_else(|p| p.into_inner()).stop()
    }

    /// `/service/<scope>/`
    pub fn prefix(&self) -> String {
        format!("{NAMESPACE}{}/", self.scope)
    }

    fn abs(&self, key: &str) -> String {
        format!("{}{}", self.prefix(), key.trim_start_matches('/'))
    }

    /// A key relative to the cluster prefix (`leader`, `members/node1`, ...).
    pub fn etcd_get_kv(&self, key: &str) -> Result<Option<EtcdKv>> {
        self.etcdc.get_raw(&self.abs(key))
    }

    pub fn etcd_get(&self, key: &str) -> Result<Option<String>> {
        Ok(self.etcd_get_kv(key)?.map(|kv| kv.value))
    }

    /// A key's value parsed as JSON (error if missing or not JSON).
    pub fn etcd_json(&self, key: &str) -> Result<serde_json::Value> {
        let v = self
            .etcd_get(key)?
            .ok_or_else(|| anyhow!("etcd key {key} is missing"))?;
        serde_json::from_str(&v).with_context(|| format!("etcd key {key} is not JSON: {v}"))
    }

    pub fn etcd_put(&self, key: &str, value: &str) -> Result<()> {
        self.etcdc.put(&self.abs(key), value)
    }

    pub fn etcd_del(&self, key: &str) -> Result<()> {
        self.etcdc.del(&self.abs(key))
    }

    /// Every key under the cluster prefix, relative to it, sorted.
    pub fn etcd_keys(&self) -> Result<Vec<String>> {
        let prefix = self.prefix();
        let mut keys: Vec<String> = self
            .etcdc
            .get_prefix(&prefix)?
            .into_iter()
            .map(|kv| kv.key.trim_start_matches(&prefix).to_string())
            .collect();
        keys.sort();
        Ok(keys)
    }

    pub fn etcd_client(&self) -> &EtcdClient {
        &self.etcdc
    }

    /// The leader key's value (a member name).
    pub fn leader_name(&self) -> Result<Option<String>> {
        self.etcd_get("leader")
    }

    // ----- ctl -----

    /// `pghactl -c <node1 config> ARGS` (bounded, 30 s).
    pub fn ctl(&self, args: &[&str]) -> Result<Output> {
        let first = self
            .nodes
            .first()
            .ok_or_else(|| anyhow!("cluster has no nodes"))?;
        let mut cmd = Command::new(self.bin.join(CTL_BIN));
        cmd.arg("-c")
            .arg(first.spec.config_path())
            .args(args)
            .current_dir(&self.base);
        run_with_timeout(&mut cmd, None, Duration::from_secs(30))
    }

    /// `pghactl -d etcd3://127.0.0.1:<port> ARGS` (bounded, 30 s).
    pub fn ctl_dcs(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(self.bin.join(CTL_BIN));
        cmd.arg("-d")
            .arg(format!("etcd3://127.0.0.1:{}", self.etcd_port()))
            .args(args)
            .current_dir(&self.base);
        run_with_timeout(&mut cmd, None, Duration::from_secs(30))
    }

    // ----- waits -----

    /// [`wait_until`], with the agents' liveness appended to a timeout error.
    pub fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        wait_until(what, timeout, Duration::from_millis(200), check)
            .map_err(|e| anyhow!("{e:#}; {}", self.agents_summary()))
    }

    pub fn agents_summary(&self) -> String {
        let parts: Vec<String> = self
            .node_names()
            .iter()
            .map(|n| match (self.agent_pid(n), self.agent_exit(n)) {
                (Some(pid), _) => format!("{n}: agent pid {pid}"),
                (None, Some(st)) => format!("{n}: agent EXITED ({st})"),
                (None, None) => format!("{n}: agent not started"),
            })
            .collect();
        format!("agents: [{}]", parts.join(", "))
    }

    /// Waits until the leader key names a node whose postgres is out of recovery.
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<String> {
        self.wait(
            "a leader (leader key + primary out of recovery)",
            timeout,
            || {
                let leader = self
                    .leader_name()?
                    .ok_or_else(|| anyhow!("no leader key"))?;
                ensure!(
                    self.nodes.iter().any(|n| n.spec.name == leader),
                    "leader key names unknown {leader:?}"
                );
                ensure!(
                    !self.pg(&leader).in_recovery()?,
                    "{leader} holds the key but is in recovery"
                );
                Ok(leader)
            },
        )
    }

    /// Waits until the current leader's pg_stat_replication has at least `n` rows in state
    /// `streaming`; their application names.
    pub fn wait_streaming(&self, n: usize, timeout: Duration) -> Result<Vec<String>> {
        self.wait(&format!("{n} replicas streaming from the leader"), timeout, || {
            let leader = self.leader_name()?.ok_or_else(|| anyhow!("no leader key"))?;
            let rows = self
                .pg(&leader)
                .sql("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1")?;
            let all: Vec<String> = rows.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect();
            // Only members count: a running pg_basebackup also shows up as a streaming
            // walsender (application_name "pg_basebackup").
            let members = self.node_names();
            let names: Vec<String> = all.iter().filter(|a| members.contains(a)).cloned().collect();
            ensure!(names.len() >= n, "leader {leader} streams to {all:?}");
            Ok(names)
        })
    }

    /// Every key and value under the prefix, for failure reports.
    pub fn etcd_dump(&self) -> String {
        match self.etcdc.get_prefix(&self.prefix()) {
            Ok(kvs) => kvs
                .iter()
                .map(|kv| format!("{} (lease {:x}) = {}", kv.key, kv.lease, kv.value))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("(etcd not readable: {e:#})"),
        }
    }

    fn dump_for_failure(&self) {
        let mut out = String::new();
        out.push_str(&format!(
            "\n======== pgha-e2e failure report: cluster {} in {} ========\n{}\n",
            self.scope,
            self.base.display(),
            self.agents_summary()
        ));
        out.push_str(&format!("---- etcd keys ----\n{}\n", self.etcd_dump()));
        for n in self.node_names() {
            out.push_str(&format!(
                "---- {n}: last 80 lines of {} (postmaster pid {:?}) ----\n{}\n",
                self.log_path(&n).display(),
                self.postmaster_pid(&n),
                self.log_tail(&n, 80)
            ));
        }
        let etcd_log = self.base.join("etcd.log");
        out.push_str(&format!(
            "---- last 10 lines of {} ----\n{}\n",
            etcd_log.display(),
            tail(
                &String::from_utf8_lossy(&fs::read(&etcd_log).unwrap_or_default()),
                10
            )
        ));
        out.push_str("======== end of failure report ========\n");
        eprint!("{out}");
    }

    fn teardown(&mut self) {
        // 1. Agents: SIGTERM, a short grace period, then SIGKILL.
        let names = self.node_names();
        for n in &names {
            if let Some(pid) = self.agent_pid(n) {
                let _ = signal(pid, Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && names.iter().any(|n| self.agent_running(n)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        for n in &names {
            let mut a = self.node(n).agent.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(mut c) = a.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // 2. Postmasters survive their agent by design.
        for n in &names {
            kill_postmaster(&self.node(n).spec.data_dir);
        }
        // 3. Anything else started under our directory (backends orphaned by a killed postmaster,
        //    a pg_basebackup or pg_rewind the agent had running).
        //    Children of a postmaster that just exited need a moment to notice: give them 2 s.
        let _ = wait_until(
            "postgres children to exit",
            Duration::from_secs(2),
            Duration::from_millis(50),
            || {
                let left = processes_under(&self.base);
                ensure!(left.is_empty(), "{left:?}");
                Ok(())
            },
        );
        let leftovers = kill_processes_under(&self.base);
        if !leftovers.is_empty() {
            eprintln!("pgha-e2e: killed leftover processes {leftovers:?}");
        }
        // 4. etcd.
        if let Ok(mut e) = self.etcd.lock() {
            if e.is_running() {
                let _ = e.stop();
            }
        }
        // 5. The directory.
        if std::env::var("PGHA_E2E_KEEP")
            .map(|v| v == "1")
            .unwrap_or(false)
        {
            let _ = fs::write(self.base.join("KEEP"), "");
            eprintln!("pgha-e2e: PGHA_E2E_KEEP=1, kept {}", self.base.display());
        } else if let Err(e) = fs::remove_dir_all(&self.base) {
            eprintln!("pgha-e2e: could not remove {}: {e}", self.base.display());
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.passed {
            self.dump_for_failure();
        }
        self.teardown();
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn suffixes_differ() {
        assert_ne!(unique_suffix(), unique_suffix());
    }
}
