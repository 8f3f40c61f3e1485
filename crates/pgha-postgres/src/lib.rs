//! Local PostgreSQL control for the pgha agent: the postgres adapter of the HA loop.
//!
//! This crate performs IO and reports facts; it makes no HA decisions (when to promote, whether
//! to rewind). Everything is `async`, every external command and every wait is bounded, and
//! every failure is a [`PgError`] whose message says what failed.
//!
//! Typical sequences the caller drives:
//! * new cluster: [`LocalPostgres::initdb`] → [`LocalPostgres::write_config`] (primary) →
//!   [`LocalPostgres::start`] → [`LocalPostgres::wait_ready`] → [`LocalPostgres::bootstrap_roles`]
//!   → [`LocalPostgres::run_post_bootstrap`];
//! * new replica: [`LocalPostgres::basebackup`] → `write_config` (standby) → `start`;
//! * rejoin after a crash: [`LocalPostgres::crash_recovery`] → [`LocalPostgres::rewind`] →
//!   `write_config` (standby, always: pg_rewind copies the source's config files) → `start`.
//!
//! When the agent runs as root, [`LocalPostgres::with_os_user`] makes every external command run
//! as the owner of the data directory (PostgreSQL refuses to run as root) and hands the files
//! this crate writes to that user.

mod bootstrap;
pub mod cluster_wide;
mod cmd;
mod conf;
mod conf_check;
mod controldata;
mod error;
mod guc;
mod kill;
mod methods;
mod params;
mod probe;
mod process;
mod replica;
mod slots;
mod sql;
pub mod tls;
mod versions;
mod wal_now;

use std::path::{Path, PathBuf};

pub use cluster_wide::{HeldSetting, InsufficientSetting};
pub use cmd::OsUser;
pub use conf::{
    parse_conf_parameters, primary_conninfo, render_hba, render_pgpass, render_postgresql_conf,
    ConfigWriteOutcome, RecoverySignal, ServerConfig, StandbyConfig, CONF_HEADER,
};
pub use conf_check::{first_rejection, Rejected};
pub use controldata::ControlData;
pub use error::PgError;
pub use guc::{check_parameters, GucSpec};
pub use kill::{kill_postgres_instance, process_start_time, process_stopped};
pub use methods::{MethodRun, RecoveryState};
pub use params::{build_parameters, render_value, PgParams, PgUser, Timeouts, FORCED_GUCS};
pub use probe::{Probe, ReplicationRow};
pub use process::StopMode;
pub use replica::{parse_timeline_history, ConnTarget, TimelineSwitch};
pub use slots::SlotState;
pub use sql::{quote_ident, quote_literal};
pub use versions::{parse_major_version, translate_parameters, version_num};
pub use wal_now::WalNow;

/// What is in the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDirState {
    /// The path does not exist.
    Missing,
    /// An empty directory.
    Empty,
    /// A directory holding `PG_VERSION`.
    Initialized,
    /// Anything else: not a directory, unreadable, or non-empty without `PG_VERSION`.
    Invalid(String),
}

/// The local PostgreSQL: its parameters plus a cached SQL connection.
pub struct LocalPostgres {
    /// Swapped whole by [`LocalPostgres::reload_users`]; readers take a snapshot.
    params: std::sync::RwLock<std::sync::Arc<PgParams>>,
    /// The superuser's TLS settings as last read, with a generation that changes at each
    /// reload (the cached connection made with an older one is replaced).
    superuser_tls: std::sync::Mutex<Option<(u64, std::sync::Arc<tls::PreparedTls>)>>,
    tls_generation: std::sync::atomic::AtomicU64,
    timeouts: Timeouts,
    os_user: Option<OsUser>,
    /// The cached superuser connection and the TLS generation it was made with.
    conn: tokio::sync::Mutex<Option<(u64, tokio_postgres::Client)>>,
    /// What a standby held back last time, so the log says it once.
    held_settings: std::sync::Mutex<Vec<HeldSetting>>,
    canonical_data_dir: std::sync::OnceLock<PathBuf>,
    /// The postmaster last found to be ours, watched through a pidfd (see `postmaster_pid`).
    verified_postmaster: std::sync::Mutex<Option<process::PidWatch>>,
    /// Which settings the installed postgres rejected, for the last set asked about.
    conf_check: conf_check::CheckCache,
    /// Major version of the installed binaries (0: unknown), read once.
    major_version: std::sync::OnceLock<u32>,
    /// pg_basebackup's progress in percent while one runs, -1 otherwise.
    basebackup_progress: std::sync::Arc<std::sync::atomic::AtomicI32>,
}

impl std::fmt::Debug for LocalPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPostgres")
            .field("data_dir", &self.params().data_dir)
            .field("port", &self.params().port)
            .field("os_user", &self.os_user.as_ref().map(|u| &u.name))
            .finish_non_exhaustive()
    }
}

impl LocalPostgres {
    pub fn new(params: PgParams) -> Self {
        LocalPostgres {
            params: std::sync::RwLock::new(std::sync::Arc::new(params)),
            superuser_tls: std::sync::Mutex::new(None),
            tls_generation: std::sync::atomic::AtomicU64::new(0),
            timeouts: Timeouts::default(),
            os_user: None,
            conn: tokio::sync::Mutex::new(None),
            held_settings: std::sync::Mutex::new(Vec::new()),
            canonical_data_dir: std::sync::OnceLock::new(),
            verified_postmaster: std::sync::Mutex::new(None),
            conf_check: std::sync::Mutex::new(None),
            major_version: std::sync::OnceLock::new(),
            basebackup_progress: std::sync::Arc::new(std::sync::atomic::AtomicI32::new(-1)),
        }
    }

    /// Major version of the PostgreSQL binaries in `bin_dir` (15 for 15.18), from
    /// `postgres --version`, read once; 0 when it cannot be run (no translation then).
    pub fn major_version(&self) -> u32 {
        *self.major_version.get_or_init(|| {
            let bin = self.bin("postgres");
            match std::process::Command::new(&bin).arg("--version").output() {
                Ok(out) => {
                    let text = String::from_utf8_lossy(&out.stdout);
                    versions::parse_major_version(&text).unwrap_or_else(|| {
                        tracing::warn!(
                            "cannot tell the PostgreSQL version from {} --version: {text:?}",
                            bin.display()
                        );
                        0
                    })
                }
                Err(e) => {
                    tracing::warn!("cannot run {} --version: {e}", bin.display());
                    0
                }
            }
        })
    }

    /// Run every external command as `user` (looked up in the passwd database) and give the
    /// files this crate creates to that user. For an agent started as root.
    pub fn with_os_user(mut self, user: &str) -> Result<Self, PgError> {
        self.os_user = Some(OsUser::lookup(user)?);
        Ok(self)
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The parameters now (the database users change at a reload, the rest never).
    pub fn params(&self) -> std::sync::Arc<PgParams> {
        self.params
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    pub fn os_user(&self) -> Option<&OsUser> {
        self.os_user.as_ref()
    }

    /// Classify the data directory without touching it.
    pub fn data_dir_state(&self) -> DataDirState {
        let params = self.params();
        let dir = &params.data_dir;
        match std::fs::symlink_metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DataDirState::Missing,
            Err(e) => {
                return DataDirState::Invalid(format!("cannot inspect {}: {e}", dir.display()))
            }
            Ok(_) => {}
        }
        // Follow a symlinked data directory.
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return DataDirState::Invalid(format!("{} is not a directory", dir.display())),
            Err(e) => {
                return DataDirState::Invalid(format!("cannot inspect {}: {e}", dir.display()))
            }
        }
        if dir.join("PG_VERSION").is_file() {
            return DataDirState::Initialized;
        }
        match std::fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_none() {
                    DataDirState::Empty
                } else {
                    DataDirState::Invalid(format!(
                        "{} is not empty but has no PG_VERSION (not a PostgreSQL data directory)",
                        dir.display()
                    ))
                }
            }
            Err(e) => DataDirState::Invalid(format!("cannot list {}: {e}", dir.display())),
        }
    }

    pub(crate) fn bin(&self, name: &str) -> PathBuf {
        self.params().bin_dir.join(name)
    }

    /// True when postgresql.conf lives somewhere else than the data directory.
    pub(crate) fn separate_config_dir(&self) -> bool {
        let p = self.params();
        p.config_dir != p.data_dir
    }

    pub(crate) fn conf_path(&self) -> PathBuf {
        self.params().config_dir.join("postgresql.conf")
    }

    /// Give a file or directory we created to the OS user commands run as (no-op otherwise).
    pub(crate) fn fix_owner(&self, path: &Path) -> Result<(), PgError> {
        if let Some(u) = &self.os_user {
            nix::unistd::chown(
                path,
                Some(nix::unistd::Uid::from_raw(u.uid)),
                Some(nix::unistd::Gid::from_raw(u.gid)),
            )
            .map_err(|e| PgError::io(path, std::io::Error::from(e)))?;
        }
        Ok(())
    }

    /// How far the running pg_basebackup is, in percent: None while none runs, 0 until it
    /// first reports.
    pub fn basebackup_progress(&self) -> Option<u8> {
        u8::try_from(
            self.basebackup_progress
                .load(std::sync::atomic::Ordering::Relaxed),
        )
        .ok()
    }

    pub(crate) async fn run(
        &self,
        cmd: &cmd::Cmd,
        limit: std::time::Duration,
    ) -> Result<cmd::Output, PgError> {
        cmd::run(cmd, self.os_user.as_ref(), limit).await
    }

    pub(crate) async fn run_ok(
        &self,
        cmd: &cmd::Cmd,
        limit: std::time::Duration,
    ) -> Result<cmd::Output, PgError> {
        cmd::run_ok(cmd, self.os_user.as_ref(), limit).await
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use std::time::Duration;

    /// A user without password with libpq options `opts`.
    pub(crate) fn user_with(name: &str, opts: &[(&str, &str)]) -> PgUser {
        PgUser {
            username: name.into(),
            password: None,
            options: opts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub(crate) fn params_in(dir: &Path) -> PgParams {
        PgParams {
            name: "node1".into(),
            scope: "demo".into(),
            data_dir: dir.join("data"),
            config_dir: dir.join("data"),
            bin_dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
            listen_addresses: "127.0.0.1".into(),
            port: 5432,
            local_host: "127.0.0.1".into(),
            superuser: PgUser {
                username: "postgres".into(),
                password: Some("su:pa\\ss".into()),
                ..Default::default()
            },
            replication: PgUser {
                username: "replicator".into(),
                password: Some("rep-pass".into()),
                ..Default::default()
            },
            rewind: Some(PgUser {
                username: "rewind_user".into(),
                password: None,
                ..Default::default()
            }),
            pgpass: dir.join("pgpass"),
            pg_ctl_timeout: Duration::from_secs(60),
            log_file: dir.join("postgres.log"),
            initdb_options: vec![],
            basebackup_options: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_states() {
        let tmp = tempfile::tempdir().unwrap();
        let pg = LocalPostgres::new(test_support::params_in(tmp.path()));
        assert_eq!(pg.data_dir_state(), DataDirState::Missing);
        std::fs::create_dir(tmp.path().join("data")).unwrap();
        assert_eq!(pg.data_dir_state(), DataDirState::Empty);
        std::fs::write(tmp.path().join("data/junk"), "x").unwrap();
        assert!(matches!(pg.data_dir_state(), DataDirState::Invalid(_)));
        std::fs::write(tmp.path().join("data/PG_VERSION"), "15\n").unwrap();
        assert_eq!(pg.data_dir_state(), DataDirState::Initialized);
        std::fs::remove_dir_all(tmp.path().join("data")).unwrap();
        std::fs::write(tmp.path().join("data"), "a file").unwrap();
        assert!(matches!(pg.data_dir_state(), DataDirState::Invalid(_)));
    }
}
