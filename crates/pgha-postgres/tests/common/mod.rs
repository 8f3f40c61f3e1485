//! Helpers of the real-PostgreSQL tests.

use std::path::PathBuf;

/// Kills whatever postmaster still runs in `data_dir` when the test ends (also on panic).
pub struct KillOnDrop(pub PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let Ok(text) = std::fs::read_to_string(self.0.join("postmaster.pid")) else {
            return;
        };
        if let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        {
            if pid > 0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}
