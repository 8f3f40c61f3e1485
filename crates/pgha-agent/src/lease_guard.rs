//! The lease guard: a fence for the leader that does not depend on the agent running.
//!
//! While this node leads, every renewal of the leader lease moves a deadline forward: the
//! moment (less `lease_guard.safety_margin`) before which etcd cannot expire the lease, because
//! the lease lasts `ttl` from the renewal request etcd answered. A small process apart from the
//! agent (`pgha --lease-guard NAME`, its own process group) holds that deadline; when it
//! passes without a renewal, the guard SIGKILLs postgres, postmaster and backends, so no commit
//! is acknowledged after another node may have promoted. That holds when the agent is frozen
//! (SIGSTOP, a stall, swap), killed, or stuck on a DCS that does not answer.
//!
//! Assumptions: the guard itself runs (it is an idle process that wakes only for its deadline
//! and its socket); this host's clock and etcd's run at the same rate within the margin over
//! one ttl (CLOCK_BOOTTIME, which also counts suspended time); a node promotes only after the
//! old leader key is gone from etcd.
//!
//! The agent talks to the guard over an abstract Unix socket named after the data directory,
//! one line per message, each answered `ok`:
//! `arm <postmaster pid> <postmaster start time> <deadline, boottime ms>` and `disarm`.
//! A restarted agent finds the guard of its predecessor by that name. When its agent goes away
//! with nothing armed the guard exits; armed, it stays until the deadline or a new agent.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use pgha_dcs::clock::boottime_ms;
use tracing::{debug, info, warn};

/// How long the guard waits for its first agent, or for a new agent after firing.
const IDLE_EXIT: Duration = Duration::from_secs(10);
/// How long the agent waits for the guard to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(500);

/// The socket name for a data directory (abstract names are limited to 107 bytes: hashed).
pub fn socket_name(data_dir: &Path) -> String {
    let path = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("pgha-lease-guard-{h:016x}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Arm {
    /// 0: whichever postmaster `dir` names at the deadline (a primary being started).
    pid: i32,
    start: u64,
    deadline_ms: u64,
    dir: Option<PathBuf>,
}

impl Arm {
    fn what(&self) -> String {
        match &self.dir {
            Some(d) if self.pid == 0 => format!("the postmaster of {}", d.display()),
            _ => format!("postmaster {}", self.pid),
        }
    }
}

fn parse_command(line: &str) -> Result<Option<Arm>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["disarm"] => Ok(None),
        ["arm", pid, start, deadline] => Ok(Some(Arm {
            pid: pid.parse().map_err(|_| format!("bad pid {pid:?}"))?,
            start: start.parse().map_err(|_| format!("bad start {start:?}"))?,
            deadline_ms: deadline
                .parse()
                .map_err(|_| format!("bad deadline {deadline:?}"))?,
            dir: None,
        })),
        ["arm-dir", deadline, _, ..] => {
            // The path is the rest of the line: it may hold spaces.
            let rest = line.trim_start()["arm-dir".len()..].trim_start();
            let dir = rest[deadline.len()..].trim();
            Ok(Some(Arm {
                pid: 0,
                start: 0,
                deadline_ms: deadline
                    .parse()
                    .map_err(|_| format!("bad deadline {deadline:?}"))?,
                dir: Some(PathBuf::from(dir)),
            }))
        }
        _ => Err(format!("unknown command {line:?}")),
    }
}

fn say(level: &str, msg: &str) {
    // The agent's log (our inherited stderr), in its line format.
    eprintln!(
        "{} {level}: lease guard: {msg}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S,%3f")
    );
}

/// The guard process: `pgha --lease-guard NAME`.
pub fn run_guard(name: &str) -> ExitCode {
    let listener =
        match SocketAddr::from_abstract_name(name).and_then(|a| UnixListener::bind_addr(&a)) {
            Ok(l) => l,
            // The guard of an earlier agent is still there: it serves us.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return ExitCode::SUCCESS,
            Err(e) => {
                say("ERROR", &format!("cannot listen on @{name}: {e}"));
                return ExitCode::FAILURE;
            }
        };
    if let Err(e) = listener.set_nonblocking(true) {
        say(
            "ERROR",
            &format!("cannot make the socket non-blocking: {e}"),
        );
        return ExitCode::FAILURE;
    }
    let mut conn: Option<(BufReader<UnixStream>, String)> = None;
    let mut armed: Option<Arm> = None;
    let mut idle_since = Instant::now();
    loop {
        let wait_ms = match &armed {
            Some(a) => a.deadline_ms.saturating_sub(boottime_ms()).min(1000),
            None => 1000,
        };
        wait_readable(&listener, conn.as_ref().map(|(r, _)| r.get_ref()), wait_ms);
        loop {
            match listener.accept() {
                // The newest agent wins: a predecessor's connection is dropped.
                Ok((s, _)) if s.set_nonblocking(true).is_ok() => {
                    conn = Some((BufReader::new(s), String::new()))
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if let Some((reader, pending)) = conn.as_mut() {
            match read_lines(reader, pending) {
                Ok(lines) => {
                    for line in lines {
                        let answer = match parse_command(&line) {
                            Ok(a) => {
                                if a.is_some() != armed.is_some() {
                                    match &a {
                                        Some(a) => say("INFO", &format!("armed for {}", a.what())),
                                        None => say("INFO", "disarmed"),
                                    }
                                }
                                armed = a;
                                "ok\n".to_string()
                            }
                            Err(e) => format!("error {e}\n"),
                        };
                        if reader.get_mut().write_all(answer.as_bytes()).is_err() {
                            break;
                        }
                    }
                }
                Err(()) => {
                    conn = None;
                    // Our agent went away with nothing to guard: no reason to stay.
                    if armed.is_none() {
                        return ExitCode::SUCCESS;
                    }
                    idle_since = Instant::now();
                }
            }
        }
        if let Some(a) = armed.take() {
            if boottime_ms() >= a.deadline_ms {
                fire(a);
            } else {
                armed = Some(a);
            }
        }
        if conn.is_none() && armed.is_none() && idle_since.elapsed() >= IDLE_EXIT {
            return ExitCode::SUCCESS;
        }
    }
}

/// Blocks until the listener or the connection is readable, or `ms` pass.
fn wait_readable(listener: &UnixListener, conn: Option<&UnixStream>, ms: u64) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let timeout = Timespec {
        tv_sec: (ms / 1000) as i64,
        tv_nsec: ((ms % 1000) * 1_000_000) as i64,
    };
    let mut fds = vec![PollFd::new(listener, PollFlags::IN)];
    if let Some(c) = conn {
        fds.push(PollFd::from_borrowed_fd(c.as_fd(), PollFlags::IN));
    }
    let _ = poll(&mut fds, Some(&timeout));
}

/// Complete lines received so far; Err on end of stream or a broken connection.
fn read_lines(reader: &mut BufReader<UnixStream>, pending: &mut String) -> Result<Vec<String>, ()> {
    let mut buf = [0u8; 512];
    loop {
        match reader.get_mut().read(&mut buf) {
            Ok(0) => return Err(()),
            Ok(n) => pending.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(()),
        }
        if pending.len() > 64 * 1024 {
            return Err(());
        }
    }
    let mut lines = Vec::new();
    while let Some(i) = pending.find('\n') {
        lines.push(pending[..i].trim().to_string());
        pending.drain(..=i);
    }
    Ok(lines)
}

/// The postmaster `dir/postmaster.pid` names, if that process runs in `dir`.
fn postmaster_of(dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    (cwd == dir).then_some(pid)
}

fn fire(a: Arm) {
    let late = boottime_ms().saturating_sub(a.deadline_ms);
    let (pid, start) = match (&a.dir, a.pid) {
        (Some(dir), 0) => match postmaster_of(dir) {
            Some(pid) => (pid, None),
            None => {
                say(
                    "INFO",
                    &format!(
                        "lease deadline passed; no postmaster runs in {}",
                        dir.display()
                    ),
                );
                return;
            }
        },
        _ => (a.pid, Some(a.start)),
    };
    match pgha_postgres::kill_postgres_instance(pid, start, Duration::from_secs(5)) {
        Ok(0) => say("INFO", &format!("lease deadline passed; {} is already gone", a.what())),
        Ok(n) => say(
            "CRITICAL",
            &format!(
                "the leader lease was not renewed in time (deadline passed {late} ms ago): killed postgres (postmaster {pid}, {n} processes) so it cannot acknowledge commits once another node may promote"
            ),
        ),
        Err(e) => say("CRITICAL", &format!("the leader lease was not renewed in time and postgres could not be killed: {e}")),
    }
}

/// The agent's side: arms the guard while this node leads, starting it when needed.
pub struct LeaseGuard {
    enabled: bool,
    margin_ms: u64,
    name: String,
    data_dir: PathBuf,
    conn: Option<BufReader<UnixStream>>,
    child: Option<Child>,
    /// What the guard was last told (None: disarmed or unknown).
    armed: Option<Arm>,
    /// The guard confirmed the last state it was told.
    told: bool,
    warned: bool,
}

impl LeaseGuard {
    pub fn new(cfg: &pgha_config::LeaseGuard, data_dir: &Path) -> LeaseGuard {
        LeaseGuard {
            enabled: cfg.enabled,
            margin_ms: cfg.safety_margin_ms,
            name: socket_name(data_dir),
            data_dir: std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()),
            conn: None,
            child: None,
            armed: None,
            told: false,
            warned: false,
        }
    }

    pub fn reload(&mut self, cfg: &pgha_config::LeaseGuard) {
        self.enabled = cfg.enabled;
        self.margin_ms = cfg.safety_margin_ms;
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `lease_guard.safety_margin` in ms (see `pgha_core::guard_deadline`).
    pub fn margin_ms(&self) -> u64 {
        self.margin_ms
    }

    /// Arm (or move) the deadline for postmaster `pid`. A guard that cannot be reached is
    /// logged once per outage; the HA loop goes on (the lease still bounds the leader).
    pub fn arm(&mut self, pid: i32, deadline_ms: u64) {
        if !self.enabled {
            return self.disarm();
        }
        let Some(start) = pgha_postgres::process_start_time(pid) else {
            return;
        };
        let arm = Arm {
            pid,
            start,
            deadline_ms,
            dir: None,
        };
        let line = format!("arm {pid} {start} {deadline_ms}\n");
        self.tell(arm, &line);
    }

    /// Arm for whichever postmaster our data directory names at the deadline: a primary is
    /// about to be started and has no PID yet.
    pub fn arm_data_dir(&mut self, deadline_ms: u64) {
        if !self.enabled {
            return self.disarm();
        }
        let arm = Arm {
            pid: 0,
            start: 0,
            deadline_ms,
            dir: Some(self.data_dir.clone()),
        };
        let line = format!("arm-dir {deadline_ms} {}\n", self.data_dir.display());
        self.tell(arm, &line);
    }

    fn tell(&mut self, arm: Arm, line: &str) {
        if self.told && self.armed.as_ref() == Some(&arm) {
            return;
        }
        self.armed = Some(arm);
        self.told = self.send(line);
    }

    /// Only moves an armed deadline forward (right after a lease renewal).
    pub fn extend(&mut self, deadline_ms: u64) {
        match self.armed.clone().filter(|a| a.deadline_ms < deadline_ms) {
            Some(a) if a.pid == 0 => self.arm_data_dir(deadline_ms),
            Some(a) => self.arm(a.pid, deadline_ms),
            None => {}
        }
    }

    pub fn disarm(&mut self) {
        if self.armed.is_none() && (self.told || self.conn.is_none()) {
            return;
        }
        self.armed = None;
        self.told = self.send("disarm\n");
    }

    fn send(&mut self, line: &str) -> bool {
        for attempt in 0..2 {
            if self.conn.is_none() {
                self.conn = self.connect();
            }
            let Some(conn) = self.conn.as_mut() else {
                break;
            };
            let mut answer = String::new();
            let ok = conn.get_mut().write_all(line.as_bytes()).is_ok()
                && conn.read_line(&mut answer).is_ok()
                && answer.trim() == "ok";
            if ok {
                if self.warned {
                    info!("lease guard reachable again");
                    self.warned = false;
                }
                return true;
            }
            debug!(
                attempt,
                answer = answer.trim(),
                "lease guard did not confirm"
            );
            self.conn = None;
        }
        if !self.warned {
            warn!("the lease guard cannot be reached: a frozen agent would leave postgres running past the leader lease");
            self.warned = true;
        }
        false
    }

    fn connect(&mut self) -> Option<BufReader<UnixStream>> {
        let addr = SocketAddr::from_abstract_name(&self.name).ok()?;
        if let Ok(s) = UnixStream::connect_addr(&addr) {
            return configured(s);
        }
        self.spawn();
        let bound = Instant::now() + Duration::from_secs(2);
        while Instant::now() < bound {
            std::thread::sleep(Duration::from_millis(10));
            if let Ok(s) = UnixStream::connect_addr(&addr) {
                return configured(s);
            }
        }
        None
    }

    fn spawn(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if matches!(c.try_wait(), Ok(None)) {
                return;
            }
        }
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                warn!("cannot start the lease guard: where is our own binary? {e}");
                return;
            }
        };
        use std::os::unix::process::CommandExt;
        // Its own process group: a signal aimed at the agent's group does not freeze it.
        let spawned = Command::new(exe)
            .arg("--lease-guard")
            .arg(&self.name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn();
        match spawned {
            Ok(c) => {
                info!(pid = c.id(), "started the lease guard");
                self.child = Some(c);
            }
            Err(e) => warn!("cannot start the lease guard: {e}"),
        }
    }
}

fn configured(s: UnixStream) -> Option<BufReader<UnixStream>> {
    s.set_read_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    s.set_write_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    Some(BufReader::new(s))
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        // Reap an exited guard; a running one stays (it may still have a deadline to keep).
        if let Some(c) = self.child.as_mut() {
            let _ = c.try_wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse_command("disarm"), Ok(None));
        assert_eq!(
            parse_command("arm 12 345 6789"),
            Ok(Some(Arm {
                dir: None,
                pid: 12,
                start: 345,
                deadline_ms: 6789
            }))
        );
        assert_eq!(
            parse_command("arm-dir 6789 /var/lib/pg data"),
            Ok(Some(Arm {
                pid: 0,
                start: 0,
                deadline_ms: 6789,
                dir: Some(PathBuf::from("/var/lib/pg data")),
            }))
        );
        assert!(parse_command("arm x 1 2").is_err());
        assert!(parse_command("arm-dir x /d").is_err());
        assert!(parse_command("fire").is_err());
    }

    #[test]
    fn names_are_short_and_stable() {
        let a = socket_name(Path::new("/nonexistent/some/very/long/data/directory/path"));
        assert_eq!(
            a,
            socket_name(Path::new("/nonexistent/some/very/long/data/directory/path"))
        );
        assert_ne!(a, socket_name(Path::new("/nonexistent/other")));
        assert!(a.len() < 100);
    }

    #[test]
    fn the_margin_is_capped_at_half_the_ttl() {
        let g = LeaseGuard::new(
            &pgha_config::LeaseGuard {
                enabled: true,
                safety_margin_ms: 4000,
            },
            Path::new("/nonexistent"),
        );
        let deadline = |renewed, ttl| pgha_core::guard_deadline(renewed, ttl, g.margin_ms());
        assert_eq!(deadline(10_000, 30), 36_000);
        assert_eq!(deadline(10_000, 5), 12_500);
    }
}
