//! Making and repairing a replica's data directory: pg_basebackup, crash recovery in
//! single-user mode, pg_rewind, the source's timeline history, wiping the data directory.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgha_types::Lsn;

use crate::cmd::Cmd;
use crate::conf::{conninfo_value, BASE_CONF};
use crate::error::PgError;
use crate::params::PgUser;
use crate::sql::{quote_literal, rows};
use crate::{DataDirState, LocalPostgres};

/// Bound for connecting to and querying another member.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound for making sure our slot exists upstream before streaming: short, since an upstream
/// that cannot answer this cannot serve the walreceiver either, and the start must not wait.
const UPSTREAM_SLOT_TIMEOUT: Duration = Duration::from_secs(2);

/// Another member's postgres.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnTarget {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ConnTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// One line of a timeline history file: `timeline` ended (and its child began) at `lsn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineSwitch {
    pub timeline: u32,
    pub lsn: Lsn,
    pub reason: String,
}

/// Parse a timeline history file ("1\t0/4000150\tno recovery target specified" per line;
/// blank lines and '#' comments skipped).
pub fn parse_timeline_history(text: &str) -> Result<Vec<TimelineSwitch>, PgError> {
    let mut out = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || PgError::History(format!("line {}: {line:?}", no + 1));
        let (tli, rest) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        let rest = rest.trim_start();
        let (lsn, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        out.push(TimelineSwitch {
            timeline: tli.parse().map_err(|_| bad())?,
            lsn: lsn.parse().map_err(|_| bad())?,
            reason: reason.trim().to_string(),
        });
    }
    Ok(out)
}

/// Options of `postgresql.basebackup` that would clash with how the agent runs pg_basebackup
/// (where to, from where, as whom, in which format).
const BASEBACKUP_NOT_ALLOWED: &[&str] = &[
    "pgdata",
    "format",
    "wal-method",
    "xlog-method",
    "gzip",
    "version",
    "dbname",
    "host",
    "port",
    "username",
    "password",
];

/// pg_basebackup's options: `--wal-method=stream` always, `--checkpoint=fast` unless the user
/// chose a checkpoint mode, then the user's `postgresql.basebackup` options; those that cannot
/// work (see [`BASEBACKUP_NOT_ALLOWED`], client-side `--compress`) are left out with an error
/// naming the setting.
pub(crate) fn basebackup_args(user: &[String], major: u32) -> Vec<String> {
    let mut out = vec!["--wal-method=stream".to_string()];
    let name_of = |o: &str| {
        let o = o.trim_start_matches('-');
        o.split_once('=').map_or(o, |(n, _)| n).to_string()
    };
    if !user
        .iter()
        .any(|o| ["checkpoint", "c"].contains(&name_of(o).as_str()))
    {
        out.push("--checkpoint=fast".to_string());
    }
    // Progress reports (the percentage `list` and the log show) need the size estimate.
    if !user
        .iter()
        .any(|o| ["progress", "P", "no-estimate-size"].contains(&name_of(o).as_str()))
    {
        out.push("--progress".to_string());
    }
    for opt in user {
        let name = name_of(opt);
        let client_compress =
            name == "compress" && ((major != 0 && major < 15) || !opt.contains("=server"));
        if BASEBACKUP_NOT_ALLOWED.contains(&name.as_str()) || client_compress {
            tracing::error!(
                "postgresql.basebackup: option {opt} is not allowed (the agent sets where pg_basebackup writes, what it connects to and its format; only server-side compression works); ignored"
            );
            continue;
        }
        out.push(opt.clone());
    }
    out
}

/// The section of the connection service file that carries a tool's `sslpassword`.
const TOOL_SERVICE: &str = "pgha_tool";

/// A libpq tool's TLS options of a user: a connection-string fragment (empty without any)
/// and the `sslpassword`, when there is one, for a connection service file.
#[derive(Debug, PartialEq, Eq)]
struct ToolTls {
    conninfo: String,
    /// The service file's text; `conninfo` then names the service.
    service_file: Option<String>,
}

/// What a connection service file line cannot hold: libpq (15) strips whitespace at the end
/// of a line, reads up to 255 characters of one and has no escapes.
fn fits_service_file(value: &str) -> bool {
    value.len() < 200
        && !value.contains(['\n', '\r'])
        && !value.ends_with(|c: char| c.is_ascii_whitespace())
}

/// The TLS options of `user` for pg_basebackup or pg_rewind (`major`: the tools' version).
/// `sslpassword` goes to a connection service file, not the command line where every local
/// user would see it in the process list; one the file cannot hold stays in the string.
fn tool_tls(user: &PgUser, major: u32) -> ToolTls {
    let mut options = crate::tls::conninfo_options(user, major, false);
    let mut service_file = None;
    if let Some(i) = options.iter().position(|(k, _)| k == "sslpassword") {
        if fits_service_file(&options[i].1) {
            let (_, password) = options.remove(i);
            service_file = Some(format!("[{TOOL_SERVICE}]\nsslpassword={password}\n"));
            options.push(("service".into(), TOOL_SERVICE.into()));
        } else {
            tracing::warn!(
                user = %user.username,
                "sslpassword has a line break, ends with white space or is very long, which a connection service file cannot hold: it goes on the command line of pg_basebackup/pg_rewind"
            );
        }
    }
    let conninfo = options
        .iter()
        .map(|(k, v)| format!("{k}={}", conninfo_value(v)))
        .collect::<Vec<_>>()
        .join(" ");
    ToolTls {
        conninfo,
        service_file,
    }
}

/// The last `done/total kB (NN%)` report in a chunk of pg_basebackup's `--progress` output.
fn progress_report(chunk: &str) -> Option<(u64, u64, u8)> {
    let report = chunk
        .split(['\r', '\n'])
        .rev()
        .find(|l| l.contains(" kB (") && l.contains("%)"))?;
    let (sizes, rest) = report.trim().split_once(" kB (")?;
    let (done, total) = sizes.split_once('/')?;
    let pct = rest.split_once('%')?.0.trim().parse::<u8>().ok()?;
    Some((
        done.trim().parse().ok()?,
        total.trim().parse().ok()?,
        pct.min(100),
    ))
}

/// Publishes pg_basebackup's progress in `progress` and logs it at every tenth.
fn basebackup_watch(progress: Arc<AtomicI32>) -> crate::cmd::StderrWatch {
    let mut logged = -1i32;
    Box::new(move |chunk: &[u8]| {
        let Some((done, total, pct)) = progress_report(&String::from_utf8_lossy(chunk)) else {
            return;
        };
        progress.store(i32::from(pct), Ordering::Relaxed);
        let tenth = i32::from(pct) / 10;
        if tenth > logged {
            logged = tenth;
            tracing::info!(
                "base backup progress: {pct}% ({} of {} MB)",
                done / 1024,
                total / 1024
            );
        }
    })
}

/// Config files pg_rewind would overwrite with the source's copies.
const REWIND_PROTECTED: &[&str] = &["postgresql.conf", BASE_CONF, "pg_hba.conf", "pg_ident.conf"];

/// Remove everything inside `dir` (symlinks themselves, not their targets), keeping `dir`.
fn clear_dir(dir: &Path) -> Result<(), PgError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(PgError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| PgError::io(dir, e))?;
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .map(|t| t.is_dir())
            .map_err(|e| PgError::io(&path, e))?;
        let res = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        res.map_err(|e| PgError::io(&path, e))?;
    }
    Ok(())
}

impl LocalPostgres {
    fn refuse_if_running(&self) -> Result<(), PgError> {
        match self.postmaster_pid() {
            Some(pid) => Err(PgError::AlreadyRunning { pid }),
            None => Ok(()),
        }
    }

    /// Make sure the data directory exists, is empty and has mode 0700.
    fn prepare_empty_data_dir(&self) -> Result<(), PgError> {
        let dir = &self.params().data_dir.clone();
        match self.data_dir_state() {
            DataDirState::Missing => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| PgError::io(dir, e))?;
            }
            DataDirState::Empty => {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| PgError::io(dir, e))?;
            }
            other => {
                return Err(PgError::DataDir {
                    path: dir.clone(),
                    reason: format!(
                        "must be missing or empty, found {other:?}; remove_data_dir first"
                    ),
                })
            }
        }
        self.fix_owner(dir)
    }

    /// Remove the contents of the data directory (the directory itself stays). Refuses an
    /// empty path, "/", and a data directory with a live postmaster.
    pub async fn remove_data_dir(&self) -> Result<(), PgError> {
        let dir = self.params().data_dir.clone();
        let resolved = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        if dir.as_os_str().is_empty() || resolved == Path::new("/") || dir == Path::new("/") {
            return Err(PgError::InvalidInput(format!(
                "refusing to remove the contents of data_dir {:?}",
                dir.display()
            )));
        }
        self.refuse_if_running()?;
        tracing::warn!(data_dir = %dir.display(), "removing the data directory contents");
        self.forget_connection();
        tokio::task::spawn_blocking(move || clear_dir(&dir))
            .await
            .map_err(|e| PgError::io(&self.params().data_dir, std::io::Error::other(e)))?
    }

    /// Clone the data directory from `source` with pg_basebackup as the replication user
    /// (password from the pgpass file). The data directory must be missing or empty; on failure
    /// everything written is removed so the next attempt starts clean. Afterwards write the
    /// configuration (standby) before starting.
    pub async fn basebackup(&self, source: &ConnTarget) -> Result<(), PgError> {
        let p = self.params();
        self.prepare_empty_data_dir()?;
        self.write_pgpass()?;
        let opts = basebackup_args(&p.basebackup_options, self.major_version());
        let cmd = Cmd::new(self.bin("pg_basebackup"))
            .arg("-D")
            .arg(&p.data_dir)
            .arg("-h")
            .arg(&source.host)
            .arg("-p")
            .arg(source.port.to_string())
            .arg("-U")
            .arg(&p.replication.username)
            .arg("--no-password")
            .args(&opts)
            .env("PGPASSFILE", &p.pgpass)
            .env("PGCONNECT_TIMEOUT", REMOTE_TIMEOUT.as_secs().to_string())
            .env("PGAPPNAME", "pgha_basebackup");
        // The replication user's TLS options as a connection string (-h/-p/-U, given too,
        // take precedence in it; sslpassword through a service file).
        let tls = tool_tls(&p.replication, self.major_version());
        let (cmd, _service) = self.with_service_file(cmd, &tls)?;
        let cmd = if tls.conninfo.is_empty() {
            cmd
        } else {
            cmd.arg(format!("--dbname={}", tls.conninfo))
        };
        tracing::info!(source = %source, "taking a base backup");
        let progress = self.basebackup_progress.clone();
        progress.store(0, Ordering::Relaxed);
        let watch = basebackup_watch(progress.clone());
        let result = crate::cmd::run_ok_watching(
            &cmd,
            self.os_user.as_ref(),
            self.timeouts.basebackup,
            Some(watch),
        )
        .await;
        progress.store(-1, Ordering::Relaxed);
        match result {
            Ok(_) => {
                tracing::info!(source = %source, "base backup complete");
                Ok(())
            }
            Err(e) => {
                if let Err(clean) = clear_dir(&p.data_dir) {
                    tracing::error!(error = %clean, "could not clean up after a failed base backup");
                }
                Err(e)
            }
        }
    }

    /// `cmd` with `PGSERVICEFILE` naming a private file holding `tls`'s service section, and
    /// the guard that removes the file (kept until the command ended).
    fn with_service_file(
        &self,
        cmd: Cmd,
        tls: &ToolTls,
    ) -> Result<(Cmd, Option<crate::process::RemoveOnDrop>), PgError> {
        let Some(text) = &tls.service_file else {
            return Ok((cmd, None));
        };
        let file = self.private_file("service", text)?;
        let cmd = cmd.env("PGSERVICEFILE", &file.0);
        Ok((cmd, Some(file)))
    }

    /// Finish crash recovery of a data directory left "in production" (or in recovery) by a
    /// crash: `postgres --single` with stdin closed replays WAL and shuts down cleanly.
    ///
    /// The command-line GUCs are those the crashed postmaster ran with (from postmaster.opts,
    /// which survives a crash), so e.g. `wal_log_hints` lands in pg_control, which pg_rewind
    /// checks; use [`LocalPostgres::crash_recovery_with`] to pass them explicitly. Also passed:
    /// `archive_mode=on archive_command=false`, so no WAL that still needs archiving is
    /// recycled. Signal files are removed (single-user mode cannot run as a standby): write the
    /// configuration again afterwards.
    pub async fn crash_recovery(&self) -> Result<(), PgError> {
        let command_line = self.last_start_command_line().unwrap_or_default();
        self.crash_recovery_with(&command_line).await
    }

    /// [`LocalPostgres::crash_recovery`] with explicit command-line GUCs (e.g.
    /// `ServerConfig::command_line`).
    pub async fn crash_recovery_with(
        &self,
        command_line: &BTreeMap<String, String>,
    ) -> Result<(), PgError> {
        let p = self.params();
        self.refuse_if_running()?;
        let state = self.data_dir_state();
        if state != DataDirState::Initialized {
            return Err(PgError::DataDir {
                path: p.data_dir.clone(),
                reason: format!("cannot run crash recovery: {state:?}"),
            });
        }
        self.remove_signals()?;
        let mut cmd = Cmd::new(self.bin("postgres"))
            .arg("--single")
            .arg("-D")
            .arg(&p.data_dir);
        if self.separate_config_dir() {
            cmd = cmd
                .arg("-c")
                .arg(format!("config_file={}", self.conf_path().display()));
        }
        for (k, v) in command_line {
            if k == "archive_mode" || k == "archive_command" {
                continue;
            }
            cmd = cmd.arg("-c").arg(format!("{k}={v}"));
        }
        cmd = cmd.args([
            "-c",
            "archive_mode=on",
            "-c",
            "archive_command=false",
            "postgres",
        ]);
        tracing::debug!("doing crash recovery in single-user mode");
        self.run_ok(&cmd, self.timeouts.crash_recovery).await?;
        let cd = self.controldata().await?;
        if !cd.is_clean_shutdown() {
            return Err(PgError::ControlData(format!(
                "crash recovery finished but the cluster state is {:?}, not shut down",
                cd.cluster_state
            )));
        }
        Ok(())
    }

    /// Rewind the stopped data directory onto `source`'s timeline with pg_rewind, connecting as
    /// the rewind user (or the superuser when none is configured) with the password from the
    /// pgpass file. postgres must have been shut down cleanly first (see `crash_recovery`).
    ///
    /// pg_rewind copies the source's configuration files; postgresql.conf,
    /// postgresql.base.conf, pg_hba.conf and pg_ident.conf in the data directory are put back
    /// as they were. The caller must still call `write_config` (standby) before starting: the
    /// backup_label pg_rewind leaves makes the server replay from the divergence point.
    pub async fn rewind(&self, source: &ConnTarget) -> Result<(), PgError> {
        let p = self.params();
        self.refuse_if_running()?;
        self.write_pgpass()?;
        let user = p.rewind.as_ref().unwrap_or(&p.superuser);
        let saved = self.save_config_files()?;
        let mut conninfo = format!(
            "host={} port={} user={} dbname=postgres connect_timeout={}",
            conninfo_value(&source.host),
            source.port,
            conninfo_value(&user.username),
            REMOTE_TIMEOUT.as_secs()
        );
        let tls = tool_tls(user, self.major_version());
        if !tls.conninfo.is_empty() {
            conninfo.push(' ');
            conninfo.push_str(&tls.conninfo);
        }
        let cmd = Cmd::new(self.bin("pg_rewind"))
            .arg(format!("--target-pgdata={}", p.data_dir.display()))
            .arg(format!("--source-server={conninfo}"))
            .env("PGPASSFILE", &p.pgpass)
            .env("LC_MESSAGES", "C");
        let (cmd, _service) = self.with_service_file(cmd, &tls)?;
        tracing::debug!(source = %source, "running pg_rewind");
        let result = self.run_ok(&cmd, self.timeouts.rewind).await;
        let restored = self.restore_config_files(&saved);
        let out = result?;
        restored?;
        tracing::info!(source = %source, output = %out.tail(), "pg_rewind finished");
        Ok(())
    }

    fn save_config_files(&self) -> Result<Vec<(PathBuf, Vec<u8>)>, PgError> {
        if self.separate_config_dir() {
            return Ok(Vec::new());
        }
        let mut saved = Vec::new();
        for name in REWIND_PROTECTED {
            let path = self.params().data_dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => saved.push((path, bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(PgError::io(&path, e)),
            }
        }
        Ok(saved)
    }

    fn restore_config_files(&self, saved: &[(PathBuf, Vec<u8>)]) -> Result<(), PgError> {
        for (path, bytes) in saved {
            if std::fs::read(path).ok().as_deref() != Some(bytes.as_slice()) {
                self.write_atomic(path, bytes, 0o600)?;
            }
        }
        Ok(())
    }

    /// `CHECKPOINT` on a dedicated connection (so probes are not held up), bounded by
    /// `pg_ctl_timeout`. Useful right after a promotion: pg_rewind on other members reads the
    /// new timeline from this node's pg_control.
    pub async fn checkpoint(&self) -> Result<(), PgError> {
        let p = self.params();
        let limit = p.pg_ctl_timeout.max(self.timeouts.short_command);
        let client = self
            .connect(
                &p.local_host,
                p.port,
                self.timeouts.probe.max(REMOTE_TIMEOUT),
            )
            .await?;
        tokio::time::timeout(limit, client.simple_query("CHECKPOINT"))
            .await
            .map_err(|_| PgError::Timeout {
                what: "CHECKPOINT".into(),
                secs: limit.as_secs(),
            })??;
        Ok(())
    }

    /// The history of `timeline` as the primary at `source` has it (`pg_wal/<TLI>.history`,
    /// read over SQL as the superuser). Timeline 1 (or 0) has no history: empty.
    pub async fn timeline_history(
        &self,
        source: &ConnTarget,
        timeline: u32,
    ) -> Result<Vec<TimelineSwitch>, PgError> {
        if timeline <= 1 {
            return Ok(Vec::new());
        }
        let client = self
            .connect(&source.host, source.port, REMOTE_TIMEOUT)
            .await?;
        let sql = format!(
            "SELECT pg_catalog.pg_read_file({})",
            quote_literal(&format!("pg_wal/{timeline:08X}.history"))
        );
        let messages = tokio::time::timeout(REMOTE_TIMEOUT, client.simple_query(&sql))
            .await
            .map_err(|_| PgError::Timeout {
                what: format!("the timeline history from {source}"),
                secs: REMOTE_TIMEOUT.as_secs(),
            })??;
        let text = rows(messages)
            .first()
            .and_then(|r| r.get(0).map(str::to_string))
            .ok_or_else(|| {
                PgError::Protocol(format!(
                    "no history file content for timeline {timeline} from {source}"
                ))
            })?;
        parse_timeline_history(&text)
    }

    /// Our own history of `timeline` (`pg_wal/<TLI>.history` in the data directory); empty
    /// for timeline 1 or when the file is not there.
    pub fn local_timeline_history(&self, timeline: u32) -> Result<Vec<TimelineSwitch>, PgError> {
        if timeline <= 1 {
            return Ok(Vec::new());
        }
        let path = self
            .params()
            .data_dir
            .join("pg_wal")
            .join(format!("{timeline:08X}.history"));
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_timeline_history(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(PgError::io(&path, e)),
        }
    }

    /// Make sure the physical slot `slot` exists on `upstream` (connecting as the superuser,
    /// bounded by a short timeout); `Ok(true)` when it had to be created here.
    ///
    /// Why: the upstream creates a member's slot only on its own next cycle after it sees the
    /// member (a new leader right after its promotion, a former leader whose member key expired
    /// with its lease). A walreceiver that asks for a missing slot exits; the startup process
    /// tries again at once, fails again, and then sleeps `wal_retrieve_retry_interval` (5 s by
    /// default) before the next attempt: the whole rejoin waits for that sleep. The upstream's
    /// slot upkeep keeps the slot (the member is in the DCS) and never drops an active one.
    pub async fn ensure_upstream_slot(
        &self,
        upstream: &ConnTarget,
        slot: &str,
    ) -> Result<bool, PgError> {
        let client = self
            .connect(&upstream.host, upstream.port, UPSTREAM_SLOT_TIMEOUT)
            .await?;
        let name = quote_literal(slot);
        let sql = format!(
            "SELECT pg_catalog.pg_create_physical_replication_slot({name}, true) \
             WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = {name})"
        );
        let answer = tokio::time::timeout(UPSTREAM_SLOT_TIMEOUT, client.simple_query(&sql))
            .await
            .map_err(|_| PgError::Timeout {
                what: format!("replication slot {slot} on {upstream}"),
                secs: UPSTREAM_SLOT_TIMEOUT.as_secs(),
            })?;
        match answer {
            Ok(messages) => Ok(!rows(messages).is_empty()),
            // Created by the upstream's own upkeep in the meantime: what we wanted.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The timeline the primary at `source` writes on, or `None` while it is still in recovery
    /// (e.g. a promotion in progress): only a real primary's history is worth comparing with.
    pub async fn primary_timeline(&self, source: &ConnTarget) -> Result<Option<u32>, PgError> {
        let client = self
            .connect(&source.host, source.port, REMOTE_TIMEOUT)
            .await?;
        let sql = "SELECT pg_catalog.pg_is_in_recovery()::text, \
                   CASE WHEN pg_catalog.pg_is_in_recovery() THEN '0' ELSE \
                   pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8) END";
        let messages = tokio::time::timeout(REMOTE_TIMEOUT, client.simple_query(sql))
            .await
            .map_err(|_| PgError::Timeout {
                what: format!("the timeline of {source}"),
                secs: REMOTE_TIMEOUT.as_secs(),
            })??;
        let row = rows(messages);
        let row = row
            .first()
            .ok_or_else(|| PgError::Protocol(format!("no answer from {source}")))?;
        if row.get(0) == Some("true") {
            return Ok(None);
        }
        let hex = row.get(1).unwrap_or("");
        u32::from_str_radix(hex, 16)
            .map(Some)
            .map_err(|_| PgError::Protocol(format!("unexpected timeline {hex:?} from {source}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::params_in;

    #[test]
    fn sslpassword_goes_to_a_service_file_not_the_command_line() {
        let user = |pw: &str| {
            crate::test_support::user_with(
                "rep",
                &[
                    ("sslmode", "verify-ca"),
                    ("sslkey", "/k ey"),
                    ("sslpassword", pw),
                ],
            )
        };
        let t = tool_tls(&user("s3cret pw"), 15);
        assert_eq!(
            t.conninfo,
            "sslmode=verify-ca sslkey='/k ey' service=pgha_tool"
        );
        assert_eq!(
            t.service_file.as_deref(),
            Some("[pgha_tool]\nsslpassword=s3cret pw\n")
        );
        // A value a service file line cannot carry stays in the connection string.
        let t = tool_tls(&user("ends with space "), 15);
        assert!(t.service_file.is_none());
        assert!(
            t.conninfo.contains("sslpassword='ends with space '"),
            "{}",
            t.conninfo
        );
        assert!(tool_tls(&user("two\nlines"), 15).service_file.is_none());
        // Before 13 libpq has no sslpassword: nothing to hide.
        let t = tool_tls(&user("x"), 12);
        assert_eq!(t.conninfo, "sslmode=verify-ca sslkey='/k ey'");
        assert!(t.service_file.is_none());
        let plain = tool_tls(&crate::test_support::user_with("rep", &[]), 15);
        assert_eq!(
            plain,
            ToolTls {
                conninfo: String::new(),
                service_file: None
            }
        );
    }

    #[test]
    fn basebackup_progress_reports() {
        assert_eq!(
            progress_report(
                "  1234/567890 kB (0%), 0/1 tablespace\r 300000/567890 kB (52%), 0/1 tablespace\r"
            ),
            Some((300000, 567890, 52))
        );
        assert_eq!(
            progress_report("567890/567890 kB (100%), 1/1 tablespace\n"),
            Some((567890, 567890, 100))
        );
        assert_eq!(
            progress_report("pg_basebackup: starting background WAL receiver\n"),
            None
        );
        assert_eq!(progress_report("12/ kB (x%)"), None);
    }

    #[test]
    fn basebackup_options() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            basebackup_args(&[], 15),
            s(&["--wal-method=stream", "--checkpoint=fast", "--progress"])
        );
        assert_eq!(
            basebackup_args(
                &s(&[
                    "--max-rate=100M",
                    "--checkpoint=spread",
                    "--verbose",
                    "--pgdata=/x",
                    "--wal-method=fetch",
                    "--compress=gzip",
                    "--compress=server-gzip"
                ]),
                15
            ),
            s(&[
                "--wal-method=stream",
                "--progress",
                "--max-rate=100M",
                "--checkpoint=spread",
                "--verbose",
                "--compress=server-gzip"
            ])
        );
        assert_eq!(
            basebackup_args(&s(&["--compress=server-gzip"]), 14),
            s(&["--wal-method=stream", "--checkpoint=fast", "--progress"])
        );
    }

    #[test]
    fn history_parsing() {
        let text = "1\t0/4000150\tno recovery target specified\n\n# comment\n2\t0/5000148\tbefore 2026-11-22 01:58:00+00\n3 0/6000000\n";
        let h = parse_timeline_history(text).unwrap();
        assert_eq!(
            h,
            vec![
                TimelineSwitch {
                    timeline: 1,
                    lsn: "0/4000150".parse().unwrap(),
                    reason: "no recovery target specified".into()
                },
                TimelineSwitch {
                    timeline: 2,
                    lsn: "0/5000148".parse().unwrap(),
                    reason: "before 2026-11-22 01:58:00+00".into()
                },
                TimelineSwitch {
                    timeline: 3,
                    lsn: "0/6000000".parse().unwrap(),
                    reason: String::new()
                },
            ]
        );
        assert!(parse_timeline_history("").unwrap().is_empty());
        assert!(matches!(
            parse_timeline_history("x\t0/1\tr"),
            Err(PgError::History(_))
        ));
        assert!(matches!(
            parse_timeline_history("1\tnope\tr"),
            Err(PgError::History(_))
        ));
        assert!(matches!(
            parse_timeline_history("1"),
            Err(PgError::History(_))
        ));
    }

    #[tokio::test]
    async fn timeline_one_has_no_history() {
        let tmp = tempfile::tempdir().unwrap();
        let pg = LocalPostgres::new(params_in(tmp.path()));
        let target = ConnTarget {
            host: "127.0.0.1".into(),
            port: 1,
        };
        assert!(pg.timeline_history(&target, 1).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn remove_data_dir_keeps_the_directory_and_refuses_root() {
        let tmp = tempfile::tempdir().unwrap();
        let p = params_in(tmp.path());
        std::fs::create_dir_all(p.data_dir.join("base/1")).unwrap();
        std::fs::write(p.data_dir.join("PG_VERSION"), "15").unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, p.data_dir.join("pg_wal")).unwrap();
        let pg = LocalPostgres::new(p.clone());
        pg.remove_data_dir().await.unwrap();
        assert!(p.data_dir.is_dir());
        assert_eq!(std::fs::read_dir(&p.data_dir).unwrap().count(), 0);
        assert!(
            outside.join("keep").exists(),
            "symlink targets are not followed"
        );

        for bad in ["/", ""] {
            let mut q = p.clone();
            q.data_dir = PathBuf::from(bad);
            let err = LocalPostgres::new(q).remove_data_dir().await.unwrap_err();
            assert!(matches!(err, PgError::InvalidInput(_)), "{err}");
        }
    }

    #[tokio::test]
    async fn failed_basebackup_leaves_an_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = params_in(tmp.path());
        // A fake pg_basebackup that writes something and fails.
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let fake = bin.join("pg_basebackup");
        std::fs::write(&fake, "#!/bin/sh\nmkdir -p \"$2/base\"; echo partial > \"$2/base/x\"; echo 'connection refused' >&2; exit 1\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.bin_dir = bin;
        let pg = LocalPostgres::new(p.clone());
        let target = ConnTarget {
            host: "127.0.0.1".into(),
            port: 1,
        };
        let err = pg.basebackup(&target).await.unwrap_err();
        assert!(err.to_string().contains("connection refused"), "{err}");
        assert!(p.data_dir.is_dir());
        assert_eq!(std::fs::read_dir(&p.data_dir).unwrap().count(), 0);
        assert_eq!(
            std::fs::metadata(&p.data_dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // A non-empty directory is refused without touching it.
        std::fs::write(p.data_dir.join("PG_VERSION"), "15").unwrap();
        assert!(matches!(
            pg.basebackup(&target).await,
            Err(PgError::DataDir { .. })
        ));
        assert!(p.data_dir.join("PG_VERSION").exists());
    }
}
