//! The postmaster's life cycle: initdb, start, readiness, stop, reload, promote, plus the facts
//! read from postmaster.pid, postmaster.opts and pg_control.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use crate::cmd::{file_tail, shell_quote, Cmd};
use crate::conf::ServerConfig;
use crate::controldata::ControlData;
use crate::error::PgError;
use crate::{DataDirState, LocalPostgres};

/// pg_ctl shutdown modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopMode {
    Smart,
    Fast,
    Immediate,
}

impl StopMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// How long a freshly started postmaster may take to write postmaster.pid before `wait_ready`
/// concludes that it died during startup.
const PID_FILE_GRACE: Duration = Duration::from_secs(1);
/// Longest wait at start for a killed postmaster's zombie to be reaped (then the start is
/// tried anyway; an early exit is retried by the caller).
const ZOMBIE_REAP_WAIT: Duration = Duration::from_secs(3);
/// Pause between readiness / state polls.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Extra time given to pg_ctl beyond its own -t timeout.
const PG_CTL_SLACK: Duration = Duration::from_secs(10);

/// Is `pid` a live (non-zombie) process?
fn process_alive(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    // A zombie answers kill(0) but is dead; without /proc a live process is trusted.
    !matches!(crate::kill::process_state(pid), Some('Z' | 'X'))
}

/// A handle on one process (a pidfd), which unlike its PID cannot come to name another one.
#[derive(Debug)]
pub(crate) struct PidWatch {
    pub(crate) pid: i32,
    fd: std::os::fd::OwnedFd,
}

impl PidWatch {
    /// None where the kernel has no pidfds (before 5.3) or the process is gone already.
    pub(crate) fn open(pid: i32) -> Option<PidWatch> {
        let raw = rustix::process::Pid::from_raw(pid)?;
        let fd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()).ok()?;
        Some(PidWatch { pid, fd })
    }

    /// The process has exited (a zombie counts): its pidfd polls readable.
    pub(crate) fn exited(&self) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // An error is treated as an exit: the full check runs again, nothing worse.
        !matches!(poll(&mut fds, Some(&now)), Ok(0))
    }
}

/// Is `pid` a live postgres whose working directory (the postmaster chdirs into its data
/// directory) is `data_dir`? Where /proc cannot tell, a live process is trusted.
fn is_our_postmaster(pid: i32, data_dir: Option<&Path>) -> bool {
    if pid <= 0 || !process_alive(pid) {
        return false;
    }
    static HAVE_PROC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*HAVE_PROC.get_or_init(|| Path::new("/proc/self").exists()) {
        return true;
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    match std::fs::read(proc_dir.join("cmdline")) {
        Ok(bytes) => {
            let argv0 = bytes.split(|b| *b == 0).next().unwrap_or_default();
            let argv0 = String::from_utf8_lossy(argv0);
            let base = argv0.rsplit('/').next().unwrap_or_default();
            if !(base.starts_with("postgres") || base.starts_with("postmaster")) {
                return false;
            }
        }
        Err(_) => return false,
    }
    match (std::fs::read_link(proc_dir.join("cwd")), data_dir) {
        (Ok(cwd), Some(dir)) => cwd == dir,
        // Not allowed to look (another user): the name check has to do.
        _ => true,
    }
}

/// The `--name=value` arguments of a postmaster.opts file (as the postmaster writes it: each
/// argument in double quotes), names normalised to underscores; `config_file` is left out.
pub(crate) fn parse_postmaster_opts(text: &str) -> BTreeMap<String, String> {
    let mut args = Vec::new();
    let mut rest = text.trim();
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        // The closing quote is the one followed by whitespace or the end.
        let mut end = None;
        for (i, c) in after.char_indices() {
            if c == '"'
                && after[i + 1..]
                    .chars()
                    .next()
                    .is_none_or(char::is_whitespace)
            {
                end = Some(i);
                break;
            }
        }
        let Some(end) = end else { break };
        args.push(&after[..end]);
        rest = &after[end + 1..];
    }
    args.into_iter()
        .filter_map(|a| a.strip_prefix("--"))
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.replace('-', "_"), v.to_string()))
        .filter(|(k, _)| k != "config_file")
        .collect()
}

/// The `-o` argument of pg_ctl: `--name='value'` entries (pg_ctl runs them through `sh -c`).
pub(crate) fn postmaster_options(
    command_line: &BTreeMap<String, String>,
    config_file: Option<&Path>,
) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(cf) = config_file {
        parts.push(format!(
            "--config_file={}",
            shell_quote(&cf.to_string_lossy())
        ));
    }
    for (k, v) in command_line {
        parts.push(format!("--{k}={}", shell_quote(v)));
    }
    parts.join(" ")
}

/// Deletes a file when dropped (for secrets written only for a child process).
pub(crate) struct RemoveOnDrop(pub(crate) PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl LocalPostgres {
    /// A new file in the temporary directory holding `content`, mode 0600 and owned by the
    /// OS user commands run as, removed when the guard is dropped: secrets for a child
    /// process that must not show on its command line.
    pub(crate) fn private_file(&self, stem: &str, content: &str) -> Result<RemoveOnDrop, PgError> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("pgha-{stem}-{}-{nanos}-{n}", std::process::id()));
        // create_new: never follows a planted file or symlink.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| PgError::io(&path, e))?;
        let guard = RemoveOnDrop(path.clone());
        std::io::Write::write_all(&mut f, content.as_bytes()).map_err(|e| PgError::io(&path, e))?;
        drop(f);
        self.fix_owner(&path)?;
        Ok(guard)
    }

    /// PID of the postmaster of our data directory, from `postmaster.pid`, only when that
    /// process is alive and really is that postgres.
    ///
    /// Looking at another process's command line and cwd in /proc is the costliest part of an
    /// idle loop, so it is done once per postmaster: after that, a pidfd on the verified process
    /// tells whether that very process is still there, even if its PID is reused.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.params().data_dir.join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        let mut verified = self
            .verified_postmaster
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if verified
            .as_ref()
            .is_some_and(|w| w.pid == pid && !w.exited())
        {
            return Some(pid);
        }
        *verified = None;
        if !is_our_postmaster(pid, self.canonical_data_dir()) {
            return None;
        }
        *verified = PidWatch::open(pid);
        Some(pid)
    }

    /// The data directory with symlinks resolved, as a postmaster's cwd shows it; resolved once
    /// (it is checked every loop), None while it cannot be resolved.
    fn canonical_data_dir(&self) -> Option<&Path> {
        if let Some(p) = self.canonical_data_dir.get() {
            return Some(p);
        }
        let resolved = std::fs::canonicalize(&self.params().data_dir).ok()?;
        Some(self.canonical_data_dir.get_or_init(|| resolved))
    }

    /// Command-line GUCs the last started postmaster got (from `postmaster.opts`).
    pub fn last_start_command_line(&self) -> Option<BTreeMap<String, String>> {
        let text = std::fs::read_to_string(self.params().data_dir.join("postmaster.opts")).ok()?;
        Some(parse_postmaster_opts(&text))
    }

    /// Run `pg_controldata` (LANG=C) on the data directory and parse it.
    pub async fn controldata(&self) -> Result<ControlData, PgError> {
        let cmd = Cmd::new(self.bin("pg_controldata"))
            .arg("-D")
            .arg(&self.params().data_dir)
            .env("LANG", "C")
            .env("LC_ALL", "C");
        let out = self.run_ok(&cmd, self.timeouts.short_command).await?;
        ControlData::parse(&out.stdout)
    }

    /// Create a new cluster with initdb. The data directory must be missing or empty. The
    /// superuser password, when set, goes through a temporary 0600 file removed afterwards.
    pub async fn initdb(&self) -> Result<(), PgError> {
        let p = self.params();
        match self.data_dir_state() {
            DataDirState::Missing => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&p.data_dir)
                    .map_err(|e| PgError::io(&p.data_dir, e))?;
                self.fix_owner(&p.data_dir)?;
            }
            DataDirState::Empty => {}
            other => {
                return Err(PgError::DataDir {
                    path: p.data_dir.clone(),
                    reason: format!("initdb needs a missing or empty directory, found {other:?}"),
                })
            }
        }
        let mut cmd = Cmd::new(self.bin("initdb"))
            .arg("-D")
            .arg(&p.data_dir)
            .arg(format!("--username={}", p.superuser.username))
            .args(&p.initdb_options);
        let _pwfile = match &p.superuser.password {
            Some(pw) => {
                let file = self.private_file("initdb-pw", &format!("{pw}\n"))?;
                cmd = cmd.arg(format!("--pwfile={}", file.0.display()));
                Some(file)
            }
            None => None,
        };
        tracing::info!(data_dir = %p.data_dir.display(), "running initdb");
        self.run_ok(&cmd, self.timeouts.initdb).await?;
        Ok(())
    }

    /// `pg_ctl start` without waiting; the postmaster runs detached (own session) and survives
    /// the agent. Command-line GUCs come from `cfg.command_line`; write the files with
    /// [`LocalPostgres::write_config`] first. A live postmaster gives
    /// [`PgError::AlreadyRunning`] (its configuration may differ: restart to apply `cfg`).
    /// A stale postmaster.pid (dead pid) is removed. Follow with [`LocalPostgres::wait_ready`].
    pub async fn start(&self, cfg: &ServerConfig) -> Result<(), PgError> {
        let p = self.params();
        if let Some(pid) = self.postmaster_pid() {
            return Err(PgError::AlreadyRunning { pid });
        }
        let state = self.data_dir_state();
        if state != DataDirState::Initialized {
            return Err(PgError::DataDir {
                path: p.data_dir.clone(),
                reason: format!("cannot start postgres: {state:?}"),
            });
        }
        let pid_file = p.data_dir.join("postmaster.pid");
        if pid_file.exists() {
            // A postmaster killed a moment ago stays a zombie until it is reaped, and a new
            // one takes the zombie for a live postmaster (its socket lock file names it) and
            // exits at once. Waiting for the reap is quicker than noticing that failed start.
            if let Some(old) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok())
            {
                let until = Instant::now() + ZOMBIE_REAP_WAIT;
                while old > 0
                    && Path::new(&format!("/proc/{old}")).exists()
                    && Instant::now() < until
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            tracing::warn!(path = %pid_file.display(), "removing stale postmaster.pid (its process is gone)");
            std::fs::remove_file(&pid_file).map_err(|e| PgError::io(&pid_file, e))?;
        }
        self.prepare_log_file()?;
        let config_file = self.separate_config_dir().then(|| self.conf_path());
        let opts = postmaster_options(&cfg.command_line, config_file.as_deref());
        let mut cmd = Cmd::new(self.bin("pg_ctl"))
            .args(["start", "-W", "-D"])
            .arg(&p.data_dir)
            .arg("-l")
            .arg(&p.log_file)
            .detached();
        if !opts.is_empty() {
            cmd = cmd.arg("-o").arg(opts);
        }
        self.run_ok(&cmd, p.pg_ctl_timeout.max(Duration::from_secs(5)))
            .await?;
        tracing::info!(data_dir = %p.data_dir.display(), port = p.port, "postgres starting");
        Ok(())
    }

    fn prepare_log_file(&self) -> Result<(), PgError> {
        let log = &self.params().log_file.clone();
        if let Some(parent) = log.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| PgError::io(parent, e))?;
        }
        if self.os_user.is_some() {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(log)
                .map_err(|e| PgError::io(log, e))?;
            self.fix_owner(log)?;
        }
        Ok(())
    }

    /// Poll (pg_isready) until postgres accepts connections. Fails early with
    /// [`PgError::StartupFailed`] (with the end of the log) when the postmaster is gone.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), PgError> {
        let p = self.params();
        let started = Instant::now();
        let deadline = started + timeout;
        let cmd = Cmd::new(self.bin("pg_isready"))
            .args(["-q", "-t", "2", "-d", "postgres", "-h"])
            .arg(&p.local_host)
            .arg("-p")
            .arg(p.port.to_string())
            .arg("-U")
            .arg(&p.superuser.username);
        loop {
            if let Ok(out) = self.run(&cmd, Duration::from_secs(5)).await {
                if out.status.success() {
                    return Ok(());
                }
            }
            if self.postmaster_pid().is_none() && started.elapsed() >= PID_FILE_GRACE {
                return Err(PgError::StartupFailed {
                    log_tail: file_tail(&p.log_file, 20),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PgError::Timeout {
                    what: "postgres to accept connections".into(),
                    secs: timeout.as_secs(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    /// `pg_ctl stop -m <mode> -w -t <timeout>`. Already stopped is success. When a fast
    /// shutdown does not finish in time, escalates to immediate (with a warning).
    pub async fn stop(&self, mode: StopMode, timeout: Duration) -> Result<(), PgError> {
        if self.postmaster_pid().is_none() {
            return Ok(());
        }
        self.forget_connection();
        // An immediate shutdown takes milliseconds; one that does not is not going to.
        let timeout = if mode == StopMode::Immediate {
            timeout.min(Duration::from_secs(5))
        } else {
            timeout
        };
        let first = self.pg_ctl_stop(mode, timeout).await;
        match first {
            Ok(()) => Ok(()),
            Err(_) if self.postmaster_pid().is_none() => Ok(()),
            // Immediate is a demotion while someone else may be promoting: a postmaster that
            // does not go (hung, SIGSTOP) is killed with every backend, so none can commit.
            Err(e) if mode == StopMode::Immediate => {
                tracing::warn!(error = %e, "immediate shutdown did not complete; killing postgres");
                self.kill_instance().map(|_| ())
            }
            Err(e) if mode == StopMode::Fast => {
                tracing::warn!(error = %e, "fast shutdown did not complete; escalating to immediate shutdown");
                match self.pg_ctl_stop(StopMode::Immediate, timeout).await {
                    Err(_) if self.postmaster_pid().is_none() => Ok(()),
                    other => other,
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn pg_ctl_stop(&self, mode: StopMode, timeout: Duration) -> Result<(), PgError> {
        let secs = timeout.as_secs().max(1);
        let cmd = Cmd::new(self.bin("pg_ctl"))
            .args(["stop", "-D"])
            .arg(&self.params().data_dir)
            .args(["-m", mode.as_str(), "-w", "-t"])
            .arg(secs.to_string());
        tracing::info!(mode = mode.as_str(), "stopping postgres");
        self.run_ok(&cmd, Duration::from_secs(secs) + PG_CTL_SLACK)
            .await?;
        Ok(())
    }

    /// Send SIGKILL to the postmaster (last resort; its children exit on their own). True when
    /// there was one to kill.
    pub fn kill_postmaster(&self) -> Result<bool, PgError> {
        let Some(pid) = self.postmaster_pid() else {
            return Ok(false);
        };
        self.forget_connection();
        tracing::warn!(pid, "killing the postmaster with SIGKILL");
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => Ok(true),
            Err(e) => Err(PgError::io(
                self.params().data_dir.join("postmaster.pid"),
                std::io::Error::from(e),
            )),
        }
    }

    /// SIGKILL the postmaster and every process it forked, and wait (up to 5 s) until they are
    /// gone: nothing of this postgres can acknowledge a commit afterwards. True when there was
    /// one to kill.
    pub fn kill_instance(&self) -> Result<bool, PgError> {
        let Some(pid) = self.postmaster_pid() else {
            return Ok(false);
        };
        self.forget_connection();
        let start = crate::kill::process_start_time(pid);
        tracing::warn!(
            pid,
            "killing postgres (postmaster and all its processes) with SIGKILL"
        );
        crate::kill::kill_postgres_instance(pid, start, Duration::from_secs(5))
            .map(|_| true)
            .map_err(|e| {
                PgError::io(
                    self.params().data_dir.join("postmaster.pid"),
                    std::io::Error::other(e),
                )
            })
    }

    /// `pg_ctl reload`: postgres re-reads its configuration files.
    pub async fn reload(&self) -> Result<(), PgError> {
        if self.postmaster_pid().is_none() {
            return Err(PgError::NotRunning);
        }
        let cmd = Cmd::new(self.bin("pg_ctl"))
            .args(["reload", "-D"])
            .arg(&self.params().data_dir);
        self.run_ok(&cmd, self.timeouts.short_command).await?;
        tracing::info!("postgres configuration reloaded");
        Ok(())
    }

    /// Promote a standby (`pg_ctl promote -w`), then wait until `pg_is_in_recovery()` is false.
    /// A server that already is a primary is success.
    pub async fn promote(&self, timeout: Duration) -> Result<(), PgError> {
        let Some(pid) = self.postmaster_pid() else {
            return Err(PgError::NotRunning);
        };
        let deadline = Instant::now() + timeout;
        if let Ok(false) = self.is_in_recovery().await {
            return Ok(());
        }
        let secs = timeout.as_secs().max(1);
        let cmd = Cmd::new(self.bin("pg_ctl"))
            .args(["promote", "-D"])
            .arg(&self.params().data_dir)
            .args(["-w", "-t"])
            .arg(secs.to_string());
        tracing::info!("promoting postgres");
        // `pg_ctl promote -w` keeps waiting for the end of recovery when the postmaster dies
        // meanwhile (killed by the lease guard, the OOM killer, an operator): stop at once
        // instead, so the HA loop sees a stopped server within a cycle, not after `timeout`.
        let promoted = tokio::select! {
            r = self.run_ok(&cmd, Duration::from_secs(secs) + PG_CTL_SLACK) => r,
            () = self.postmaster_exit(pid) => return Err(PgError::NotRunning),
        };
        loop {
            if self.postmaster_pid() != Some(pid) {
                return Err(PgError::NotRunning);
            }
            match self.is_in_recovery().await {
                Ok(false) => return Ok(()),
                Ok(true) | Err(_) if Instant::now() < deadline => {}
                Ok(true) | Err(_) => {
                    promoted?;
                    return Err(PgError::Timeout {
                        what: "postgres to leave recovery after promote".into(),
                        secs: timeout.as_secs(),
                    });
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Resolves once postmaster `pid` no longer runs on our data directory.
    async fn postmaster_exit(&self, pid: i32) {
        while self.postmaster_pid() == Some(pid) {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_watch_sees_its_process_exit_even_as_a_zombie() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let Some(watch) = PidWatch::open(child.id() as i32) else {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("skipping: no pidfd support in this kernel");
            return;
        };
        assert!(!watch.exited());
        child.kill().expect("kill sleep");
        // Not reaped yet: a zombie, which kill(pid, 0) would still find.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !watch.exited() {
            assert!(
                std::time::Instant::now() < deadline,
                "exit not seen within 5 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait().expect("reap sleep");
        assert!(watch.exited());
    }

    #[test]
    fn postmaster_options_are_shell_quoted() {
        let mut m = BTreeMap::new();
        m.insert("max_connections".to_string(), "100".to_string());
        m.insert("cluster_name".to_string(), "it's".to_string());
        assert_eq!(
            postmaster_options(&m, Some(Path::new("/etc/pg/postgresql.conf"))),
            "--config_file='/etc/pg/postgresql.conf' --cluster_name='it'\\''s' --max_connections='100'"
        );
        assert_eq!(postmaster_options(&BTreeMap::new(), None), "");
    }

    #[test]
    fn parses_postmaster_opts() {
        let text = "/usr/lib/postgresql/15/bin/postgres \"-D\" \"/var/lib/pg data\" \"--config_file=/x/postgresql.conf\" \"--max_connections=100\" \"--cluster-name=a b\" \"--wal_level=replica\"\n";
        let m = parse_postmaster_opts(text);
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(m["max_connections"], "100");
        assert_eq!(m["cluster_name"], "a b");
        assert_eq!(m["wal_level"], "replica");
        assert!(parse_postmaster_opts("").is_empty());
        assert!(parse_postmaster_opts("postgres \"unterminated").is_empty());
    }

    #[test]
    fn liveness_checks() {
        assert!(process_alive(std::process::id() as i32));
        assert!(!process_alive(i32::MAX));
        // We are alive but not a postgres.
        assert!(!is_our_postmaster(
            std::process::id() as i32,
            Some(Path::new("/"))
        ));
        assert!(!is_our_postmaster(0, Some(Path::new("/"))));
        assert!(!is_our_postmaster(-1, None));
    }

    #[test]
    fn postmaster_pid_ignores_garbage_and_stale_files() {
        let tmp = tempfile::tempdir().unwrap();
        let p = crate::test_support::params_in(tmp.path());
        std::fs::create_dir_all(&p.data_dir).unwrap();
        let pg = LocalPostgres::new(p.clone());
        assert_eq!(pg.postmaster_pid(), None);
        std::fs::write(p.data_dir.join("postmaster.pid"), "garbage\n").unwrap();
        assert_eq!(pg.postmaster_pid(), None);
        std::fs::write(
            p.data_dir.join("postmaster.pid"),
            format!("{}\n/x\n", std::process::id()),
        )
        .unwrap();
        assert_eq!(pg.postmaster_pid(), None, "our own pid is not a postmaster");
    }
}
