//! Killing a postgres instance outright: the postmaster and every process it forked.
//!
//! SIGKILL of the postmaster alone is not a fence: its backends keep serving the connections
//! they have (and commit) until they notice the postmaster is gone, which a busy backend may
//! not do for a while. A stopped (SIGSTOP) or hung postmaster ignores every other signal, so
//! `pg_ctl stop -m immediate` cannot stop it either. SIGKILL works on both.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// `/proc/<pid>/stat` fields after the command name: (state, ppid, starttime).
fn stat_fields(pid: i32) -> Option<(char, i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) ... starttime(22); index 0 is field 3.
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, ppid, start))
}

/// The state letter of `pid` in `/proc/<pid>/stat` (`R`, `S`, `T`, `Z`, ...); None when it
/// cannot be read.
pub(crate) fn process_state(pid: i32) -> Option<char> {
    stat_fields(pid).map(|(state, _, _)| state)
}

/// The start time of `pid` (clock ticks since boot), which tells a process apart from a later
/// one that reuses its PID. None when it is gone or a zombie.
pub fn process_start_time(pid: i32) -> Option<u64> {
    match stat_fields(pid)? {
        ('Z' | 'X', _, _) => None,
        (_, _, start) => Some(start),
    }
}

/// `pid` is stopped (SIGSTOP, or a tracer): a stopped postmaster accepts no connection, while
/// the backends it forked earlier go on serving theirs.
pub fn process_stopped(pid: i32) -> bool {
    matches!(stat_fields(pid), Some(('T' | 't', _, _)))
}

fn children_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| stat_fields(p).is_some_and(|(_, ppid, _)| ppid == pid))
        .collect()
}

fn send(pid: i32, sig: Signal) {
    // ESRCH: gone already, which is what we want. EPERM: not ours; the wait reports it.
    let _ = kill(Pid::from_raw(pid), sig);
}

/// Exited (a zombie counts: it can run no more code).
fn gone(pid: i32) -> bool {
    process_start_time(pid).is_none()
}

/// SIGKILL the postmaster `pid` and every process it forked, if `pid` still is the process that
/// started at `start_time` (when given). Waits up to `wait` for all of them to be gone.
/// Returns how many processes were killed; an error when some are still there after `wait`.
pub fn kill_postgres_instance(
    pid: i32,
    start_time: Option<u64>,
    wait: Duration,
) -> Result<usize, String> {
    if pid <= 0 {
        return Err(format!("not a postmaster pid: {pid}"));
    }
    match (process_start_time(pid), start_time) {
        (None, _) => return Ok(0),
        (Some(now), Some(expected)) if now != expected => return Ok(0),
        _ => {}
    }
    // Stopped first, so it forks nothing between listing its children and its own death.
    send(pid, Signal::SIGSTOP);
    let children = children_of(pid);
    for &c in &children {
        send(c, Signal::SIGKILL);
    }
    send(pid, Signal::SIGKILL);
    let deadline = Instant::now() + wait;
    let mut all: Vec<i32> = children.clone();
    all.push(pid);
    loop {
        all.retain(|&p| !gone(p));
        if all.is_empty() {
            return Ok(children.len() + 1);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "postgres processes {all:?} are still there {}ms after SIGKILL",
                wait.as_millis()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
        if matches!(kill(Pid::from_raw(pid), None), Err(Errno::EPERM)) {
            return Err(format!(
                "not allowed to kill postmaster {pid}: it belongs to another user"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn kills_a_stopped_parent_and_its_children() {
        // A shell (standing in for the postmaster) with two children, the shell stopped.
        let mut parent = Command::new("sh")
            .args(["-c", "sleep 300 & sleep 300 & wait"])
            .spawn()
            .expect("spawn sh");
        let pid = parent.id() as i32;
        let bound = Instant::now() + Duration::from_secs(5);
        while children_of(pid).len() < 2 && Instant::now() < bound {
            std::thread::sleep(Duration::from_millis(10));
        }
        let kids = children_of(pid);
        assert_eq!(kids.len(), 2, "children of the test shell: {kids:?}");
        send(pid, Signal::SIGSTOP);
        let start = process_start_time(pid);
        assert!(start.is_some());
        // A stale start time names another process: nothing is killed.
        assert_eq!(
            kill_postgres_instance(pid, start.map(|s| s + 1), Duration::from_secs(1)),
            Ok(0)
        );
        let killed = kill_postgres_instance(pid, start, Duration::from_secs(5));
        // The shell is our child: until reaped it is a zombie, which counts as gone.
        assert_eq!(killed, Ok(3));
        for k in kids {
            assert!(gone(k), "child {k} survived");
        }
        let _ = parent.wait();
        assert_eq!(
            kill_postgres_instance(pid, None, Duration::from_secs(1)),
            Ok(0)
        );
    }
}
