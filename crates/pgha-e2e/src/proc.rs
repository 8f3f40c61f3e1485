//! Process helpers: running commands with a bound, signalling by PID, and recognising the
//! processes this harness started (through /proc) so cleanup never touches anything else.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{Gid, Pid, Uid, User};

/// The unprivileged identity PostgreSQL (and so the agent) runs as: `postgres` when the harness
/// is root, `None` (= the current user) otherwise.
#[derive(Debug, Clone, Copy)]
pub struct RunAs {
    pub uid: Uid,
    pub gid: Gid,
}

pub fn postgres_identity() -> Result<Option<RunAs>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")
        .context("look up the postgres user")?
        .ok_or_else(|| {
            anyhow!("running as root but there is no `postgres` user (install postgresql-15 or `useradd --system postgres`)")
        })?;
    Ok(Some(RunAs {
        uid: user.uid,
        gid: user.gid,
    }))
}

/// Makes `cmd` run as `who` (setgid/setuid in the child; std drops supplementary groups).
pub fn run_as(cmd: &mut Command, who: Option<RunAs>) -> &mut Command {
    if let Some(w) = who {
        cmd.uid(w.uid.as_raw()).gid(w.gid.as_raw());
    }
    cmd
}

/// Runs `cmd` to completion, feeding `stdin`, killing it after `timeout`.
pub fn run_with_timeout(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output> {
    let desc = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawn {desc}"))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input)
            .with_context(|| format!("write stdin of {desc}"))?;
    }
    let mut out_pipe = child.stdout.take().expect("stdout is piped");
    let mut err_pipe = child.stderr.take().expect("stderr is piped");
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out_pipe.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err_pipe.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child
            .try_wait()
            .with_context(|| format!("wait for {desc}"))?
        {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{desc} did not finish within {timeout:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    })
}

/// True if `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 || kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ..." — the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

pub fn signal(pid: i32, sig: Signal) -> Result<()> {
    kill(Pid::from_raw(pid), sig).with_context(|| format!("send {sig} to pid {pid}"))
}

pub fn proc_cwd(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

pub fn proc_exe(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Waits (bounded) until `pid` is gone.
pub fn wait_pid_gone(pid: i32, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    !pid_alive(pid)
}

/// PID in `<data_dir>/postmaster.pid` (first line), if the file exists and parses.
pub fn postmaster_pid_from_file(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// The live postmaster of `data_dir`: its pid file names a live process whose working directory
/// is that data directory (postgres chdirs into it), so a recycled PID is never mistaken for it.
pub fn live_postmaster(data_dir: &Path) -> Option<i32> {
    let pid = postmaster_pid_from_file(data_dir)?;
    if !pid_alive(pid) {
        return None;
    }
    let cwd = proc_cwd(pid)?;
    let want = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    (cwd == want).then_some(pid)
}

/// Stops the postmaster of `data_dir` if one runs: SIGQUIT (immediate shutdown, takes its
/// children along), then SIGKILL.
pub fn kill_postmaster(data_dir: &Path) -> Option<i32> {
    let pid = live_postmaster(data_dir)?;
    let _ = signal(pid, Signal::SIGQUIT);
    if !wait_pid_gone(pid, Duration::from_secs(3)) {
        let _ = signal(pid, Signal::SIGKILL);
        wait_pid_gone(pid, Duration::from_secs(3));
    }
    Some(pid)
}

/// Is this executable one of the programs the harness starts (directly or through the agent)?
fn is_our_kind_of_exe(exe: &Path, base: &Path) -> bool {
    exe.starts_with(base)
        || exe.starts_with("/usr/lib/postgresql/")
        || exe.file_name().map(|n| n == "etcd").unwrap_or(false)
}

/// Every live process whose working directory is inside `base` and whose executable is one the
/// harness starts (the copied agent, PostgreSQL's programs, etcd). Everything the harness
/// starts runs with its working directory inside its own temporary directory.
pub fn processes_under(base: &Path) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me || !pid_alive(pid) {
            continue;
        }
        let (Some(cwd), Some(exe)) = (proc_cwd(pid), proc_exe(pid)) else {
            continue;
        };
        if cwd.starts_with(base) && is_our_kind_of_exe(&exe, base) {
            pids.push(pid);
        }
    }
    pids
}

/// SIGKILLs everything [`processes_under`] finds; returns the PIDs it signalled.
pub fn kill_processes_under(base: &Path) -> Vec<i32> {
    let pids = processes_under(base);
    for &p in &pids {
        let _ = signal(p, Signal::SIGKILL);
    }
    for &p in &pids {
        wait_pid_gone(p, Duration::from_secs(2));
    }
    pids
}

/// Removes temp dirs left by earlier harness runs that died without cleaning up (SIGKILLed test
/// process): only `pgha-e2e-*` dirs whose recorded owner PID is dead and that were not kept on
/// purpose with PGHA_E2E_KEEP. Their leftover processes are found by working directory.
pub fn reap_stale_dirs(tmp: &Path) {
    let Ok(rd) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in rd.flatten() {
        let path = e.path();
        let is_ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.starts_with("pgha-e2e-"))
            .unwrap_or(false);
        if !is_ours || !path.is_dir() || path.join("KEEP").exists() {
            continue;
        }
        let owner = std::fs::read_to_string(path.join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        match owner {
            Some(pid) if pid_alive(pid) => continue,
            None => continue,
            _ => {}
        }
        let killed = kill_processes_under(&path);
        eprintln!(
            "pgha-e2e: removing stale {} (killed leftover pids {killed:?})",
            path.display()
        );
        let _ = std::fs::remove_dir_all(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_with_timeout_captures_and_bounds() {
        let out = run_with_timeout(
            Command::new("cat").arg("-"),
            Some(b"hello"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(out.stdout, b"hello");
        let err = run_with_timeout(
            Command::new("sleep").arg("5"),
            None,
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert!(err.to_string().contains("did not finish"), "{err}");
    }

    #[test]
    fn liveness() {
        assert!(pid_alive(std::process::id() as i32));
        assert!(!pid_alive(0));
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id() as i32;
        c.wait().unwrap();
        assert!(!pid_alive(pid));
    }

    #[test]
    fn postmaster_pid_parsing() {
        let d = std::env::temp_dir().join(format!("pgha-e2e-unit-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("postmaster.pid"), "4242\n/data\n1700000000\n5432\n").unwrap();
        assert_eq!(postmaster_pid_from_file(&d), Some(4242));
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(postmaster_pid_from_file(&d), None);
    }
}
