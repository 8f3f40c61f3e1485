//! Operators' own commands that create a data directory: a custom bootstrap method and the
//! custom entries of `create_replica_methods` (restores from a backup tool, an archive, ...).

use std::time::Duration;

use crate::cmd::{describe_status, tail_lines, Cmd};
use crate::error::PgError;
use crate::sql::rows;
use crate::LocalPostgres;

/// How an operator's command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodRun {
    pub success: bool,
    /// `exit code 3`, `killed by signal 9`.
    pub status: String,
    /// The last lines of its output (stdout and stderr).
    pub tail: String,
}

/// Where recovery stands on a server started to recover before it becomes a primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryState {
    Done,
    Replaying,
    /// Paused (at its recovery target with `recovery_target_action = pause`, or by
    /// `pg_wal_replay_pause()`).
    Paused,
}

impl LocalPostgres {
    /// Run `argv` (program, then arguments; no shell) from the agent's working directory, as
    /// the postgres OS user, with PGPASSFILE pointing at our pgpass file when `pgpass` is set.
    /// Bounded by `Timeouts::custom_method`. A command that cannot be started is an error; a
    /// non-zero exit is an unsuccessful [`MethodRun`].
    pub async fn run_method(&self, argv: &[String], pgpass: bool) -> Result<MethodRun, PgError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| PgError::InvalidInput("empty command".into()))?;
        let mut cmd = Cmd::new(program).args(args);
        if pgpass {
            self.write_pgpass()?;
            cmd = cmd.env("PGPASSFILE", &self.params().pgpass);
        }
        let out = self.run(&cmd, self.timeouts.custom_method).await?;
        Ok(MethodRun {
            success: out.status.success(),
            status: describe_status(&out.status),
            tail: tail_lines(&format!("{}\n{}", out.stdout, out.stderr), 20),
        })
    }

    /// Remove a `promote` trigger file a restored backup may carry: postgres would promote
    /// itself on start.
    pub fn remove_promote_trigger(&self) -> Result<(), PgError> {
        let path = self.params().data_dir.join("promote");
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a promote trigger file");
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(PgError::io(&path, e)),
        }
    }

    /// Give the data directory an operator's command made the mode postgres insists on (0700,
    /// or 0750 with group access): a `mkdir` or a copy usually leaves 0755.
    pub fn secure_data_dir(&self) -> Result<(), PgError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = &self.params().data_dir.clone();
        let mode = std::fs::metadata(dir)
            .map_err(|e| PgError::io(dir, e))?
            .permissions()
            .mode();
        if mode & 0o027 != 0 {
            tracing::info!(data_dir = %dir.display(), "setting the data directory's mode to 0700 (was {:o})", mode & 0o777);
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| PgError::io(dir, e))?;
        }
        Ok(())
    }

    /// Is the running server still recovering, and is its replay paused?
    pub async fn recovery_state(&self, limit: Duration) -> Result<RecoveryState, PgError> {
        let sql = if self.major_version() >= 14 || self.major_version() == 0 {
            "SELECT pg_catalog.pg_is_in_recovery()::text, \
             CASE WHEN pg_catalog.pg_is_in_recovery() \
             THEN pg_catalog.pg_get_wal_replay_pause_state() ELSE '' END"
        } else {
            "SELECT pg_catalog.pg_is_in_recovery()::text, \
             CASE WHEN pg_catalog.pg_is_in_recovery() AND pg_catalog.pg_is_wal_replay_paused() \
             THEN 'paused' ELSE '' END"
        };
        let rows = rows(self.simple_query(sql, limit).await?);
        let row = rows
            .first()
            .ok_or_else(|| PgError::Protocol("no answer to the recovery state query".into()))?;
        Ok(match (row.get(0), row.get(1)) {
            (Some("false"), _) => RecoveryState::Done,
            (_, Some("paused")) => RecoveryState::Paused,
            _ => RecoveryState::Replaying,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::params_in;

    #[tokio::test]
    async fn runs_from_the_working_directory_with_the_pgpass_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = params_in(tmp.path());
        let pg = LocalPostgres::new(p.clone());
        let out = tmp.path().join("out");
        let argv: Vec<String> = [
            "/bin/sh",
            "-c",
            "echo \"$PWD $PGPASSFILE $1\" > \"$0\"; echo done; exit 0",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string(), "--x=1".into()])
        .collect();
        let run = pg.run_method(&argv, true).await.unwrap();
        assert!(run.success, "{run:?}");
        assert!(run.tail.contains("done"));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            format!("{} {} --x=1", cwd.display(), p.pgpass.display())
        );

        let failing: Vec<String> = ["/bin/sh", "-c", "echo broken >&2; exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let run = pg.run_method(&failing, false).await.unwrap();
        assert!(!run.success);
        assert_eq!(run.status, "exit code 3");
        assert!(run.tail.contains("broken"));

        let missing = vec!["/nonexistent/restore".to_string()];
        assert!(matches!(
            pg.run_method(&missing, false).await,
            Err(PgError::Spawn { .. })
        ));
        assert!(pg.run_method(&[], false).await.is_err());
    }

    #[test]
    fn data_dir_mode_is_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let p = params_in(tmp.path());
        std::fs::create_dir_all(&p.data_dir).unwrap();
        let pg = LocalPostgres::new(p.clone());
        let mode = || std::fs::metadata(&p.data_dir).unwrap().permissions().mode() & 0o777;
        for (before, after) in [
            (0o755, 0o700),
            (0o750, 0o750),
            (0o700, 0o700),
            (0o770, 0o700),
        ] {
            std::fs::set_permissions(&p.data_dir, std::fs::Permissions::from_mode(before)).unwrap();
            pg.secure_data_dir().unwrap();
            assert_eq!(mode(), after, "{before:o}");
        }
    }
}
