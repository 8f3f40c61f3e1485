//! `postgresql.callbacks`, `pre_promote` and `before_stop`: the user's scripts, run as Patroni
//! runs them.
//!
//! A callback runs as `CMD ACTION ROLE SCOPE` (e.g. `./cb.sh on_role_change primary batman`)
//! from the agent's working directory, in its own process group, and the HA loop never waits
//! for it. One callback runs at a time: a new one kills the previous one (its whole process
//! group) if it still runs, so a slow `on_start` cannot deliver its news after the
//! `on_role_change` that followed it. `on_reload` has a slot of its own, with the same rule.
//! `pre_promote` and `before_stop` are waited for: their outcome (or their end) gates what
//! follows.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::process::Command;
use tracing::{debug, error, info, warn};

/// The five events Patroni calls scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Start,
    Stop,
    Restart,
    Reload,
    RoleChange,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::Start => "on_start",
            Event::Stop => "on_stop",
            Event::Restart => "on_restart",
            Event::Reload => "on_reload",
            Event::RoleChange => "on_role_change",
        }
    }
}

/// The process group of a callback still running, per slot.
#[derive(Default)]
struct Running {
    main: Option<u32>,
    reload: Option<u32>,
}

/// What postgres last became, as the callbacks were told.
#[derive(Debug, Default)]
struct Announced {
    /// The role named in the last on_start/on_restart/on_role_change.
    role: Option<&'static str>,
    /// That announcement is about the postgres running now (cleared when it stops).
    running: bool,
    /// The next start is the second half of a restart: on_restart, not on_start.
    restarting: bool,
}

pub struct Callbacks {
    commands: BTreeMap<&'static str, String>,
    scope: String,
    running: Arc<Mutex<Running>>,
    announced: Mutex<Announced>,
}

/// Splits a command line as a POSIX shell would (quotes, backslashes), without running a shell.
fn split(setting: &str, cmd: &str) -> Option<Vec<String>> {
    match shlex::split(cmd) {
        Some(argv) if !argv.is_empty() => Some(argv),
        _ => {
            error!(
                "{setting}: cannot parse the command `{cmd}` (unbalanced quotes?); not running it"
            );
            None
        }
    }
}

impl Callbacks {
    pub fn new(callbacks: &serde_json::Map<String, Value>, scope: &str) -> Callbacks {
        let mut commands = BTreeMap::new();
        for event in [
            Event::Start,
            Event::Stop,
            Event::Restart,
            Event::Reload,
            Event::RoleChange,
        ] {
            if let Some(cmd) = callbacks.get(event.name()).and_then(Value::as_str) {
                if !cmd.trim().is_empty() {
                    commands.insert(event.name(), cmd.to_string());
                }
            }
        }
        Callbacks {
            commands,
            scope: scope.to_string(),
            running: Arc::default(),
            announced: Mutex::default(),
        }
    }

    /// Calls the script for `event`, if one is configured, without waiting for it.
    pub fn call(&self, event: Event, role: &str) {
        let Some(cmd) = self.commands.get(event.name()) else {
            return;
        };
        let setting = format!("postgresql.callbacks.{}", event.name());
        let Some(mut argv) = split(&setting, cmd) else {
            return;
        };
        argv.extend([
            event.name().to_string(),
            role.to_string(),
            self.scope.clone(),
        ]);
        let reload = event == Event::Reload;
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let slot = if reload {
            &mut running.reload
        } else {
            &mut running.main
        };
        if let Some(pgid) = slot.take() {
            // The previous callback is stale news now; as Patroni, it does not finish.
            if killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL).is_ok() {
                info!("killed the previous callback (process group {pgid}) still running");
            }
        }
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .process_group(0)
            .stdin(std::process::Stdio::null());
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                error!("{setting}: cannot run `{cmd}`: {e}");
                return;
            }
        };
        let Some(pid) = child.id() else { return };
        info!("calling {setting}: {}", argv.join(" "));
        *slot = Some(pid);
        let running = self.running.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let mut r = running.lock().unwrap_or_else(|p| p.into_inner());
            let slot = if reload { &mut r.reload } else { &mut r.main };
            if *slot == Some(pid) {
                *slot = None;
            }
            drop(r);
            match status {
                Ok(s) if s.success() => debug!("{setting} finished"),
                Ok(s) => warn!("{setting} `{}` exited with {s}", argv.join(" ")),
                Err(e) => warn!("{setting}: waiting for `{}` failed: {e}", argv.join(" ")),
            }
        });
    }

    /// Postgres is up and answering in `role`: tell the scripts if that is news (a start, a
    /// restart, or a role other than the one last announced, as after a promotion).
    pub fn postgres_running(&self, role: &'static str) {
        if let Some(e) = self.note_running(role) {
            self.call(e, role);
        }
    }

    fn note_running(&self, role: &'static str) -> Option<Event> {
        {
            let mut a = self.announced.lock().unwrap_or_else(|p| p.into_inner());
            let event = if a.role.is_some_and(|r| r != role) {
                Some(Event::RoleChange)
            } else if a.running {
                None
            } else if a.restarting {
                Some(Event::Restart)
            } else {
                Some(Event::Start)
            };
            a.role = Some(role);
            a.running = true;
            a.restarting = false;
            event
        }
    }

    /// Postgres is not running (stopped by us or found down): the next start is news.
    pub fn postgres_down(&self) {
        self.announced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .running = false;
    }

    /// The agent stopped postgres on purpose: `on_stop` with the role it ran as.
    pub fn stopped(&self) {
        let role = {
            let mut a = self.announced.lock().unwrap_or_else(|p| p.into_inner());
            a.running = false;
            a.role
        };
        self.call(Event::Stop, role.unwrap_or("replica"));
    }

    /// A restart begins: its stop and start are one `on_restart`.
    pub fn restarting(&self) {
        let mut a = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        a.running = false;
        a.restarting = true;
    }

    pub fn reloaded(&self) {
        let role = self
            .announced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .role;
        self.call(Event::Reload, role.unwrap_or("replica"));
    }
}

/// Runs `pre_promote` or `before_stop` and waits for it; the exit code, or None when it could
/// not run at all (logged, naming the setting).
pub async fn run_and_wait(setting: &str, cmd: &str) -> Option<i32> {
    let argv = split(setting, cmd)?;
    info!("running {setting} script `{cmd}`");
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .await;
    match status {
        Ok(s) => {
            let code = s.code().unwrap_or(-1);
            info!("{setting} script `{cmd}` exited with {code}");
            Some(code)
        }
        Err(e) => {
            error!("{setting}: cannot run `{cmd}`: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(cmds: &[(&str, &str)]) -> Callbacks {
        let mut m = serde_json::Map::new();
        for (k, v) in cmds {
            m.insert(k.to_string(), Value::String(v.to_string()));
        }
        Callbacks::new(&m, "batman")
    }

    #[tokio::test]
    async fn each_start_restart_and_role_change_is_announced_once() {
        let c = with(&[]);
        assert_eq!(c.note_running("replica"), Some(Event::Start));
        assert_eq!(c.note_running("replica"), None);
        // Promoted.
        assert_eq!(c.note_running("primary"), Some(Event::RoleChange));
        assert_eq!(c.note_running("primary"), None);
        c.restarting();
        assert_eq!(c.note_running("primary"), Some(Event::Restart));
        // Demoted: stopped as primary, started as a replica → on_role_change, not on_start.
        c.stopped();
        assert_eq!(c.note_running("replica"), Some(Event::RoleChange));
        // Crashed and started again in the same role.
        c.postgres_down();
        assert_eq!(c.note_running("replica"), Some(Event::Start));
    }

    #[tokio::test]
    async fn scripts_get_action_role_scope_and_the_previous_one_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("calls");
        let script = dir.path().join("cb.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\n[ \"$1\" = on_start ] && sleep 30\nexit 0\n",
                out.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = script.display().to_string();
        let c = with(&[("on_start", &s), ("on_role_change", &s)]);
        c.postgres_running("replica");
        let first = {
            let mut pgid = None;
            for _ in 0..100 {
                pgid = c.running.lock().unwrap().main;
                if std::fs::read_to_string(&out).is_ok_and(|t| t.contains("on_start")) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            pgid.expect("on_start runs")
        };
        c.postgres_running("primary");
        for _ in 0..100 {
            if std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() == 2) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let calls = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            calls,
            "on_start replica batman\non_role_change primary batman\n"
        );
        // The sleeping on_start was killed with its group (gone once reaped).
        let mut gone = false;
        for _ in 0..100 {
            if killpg(Pid::from_raw(first as i32), None).is_err() {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(gone, "the previous callback still runs");
    }

    #[tokio::test]
    async fn a_missing_script_is_reported_not_fatal() {
        let c = with(&[("on_start", "/nonexistent/cb.sh --flag")]);
        c.postgres_running("primary");
        assert_eq!(
            run_and_wait("postgresql.pre_promote", "/nonexistent/x").await,
            None
        );
        assert_eq!(
            run_and_wait("postgresql.pre_promote", "sh -c 'exit 3'").await,
            Some(3)
        );
        assert_eq!(
            run_and_wait("postgresql.pre_promote", "'unbalanced").await,
            None
        );
    }
}
