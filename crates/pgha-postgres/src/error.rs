//! The one error type of the postgres adapter. Each variant is a case the HA loop can branch on;
//! every message says what failed and, where it helps, what to do about it.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// An external binary could not be started at all.
    #[error("could not run {cmd}: {source} (check postgresql.bin_dir and that the PostgreSQL binaries are installed)")]
    Spawn {
        cmd: String,
        #[source]
        source: io::Error,
    },

    /// An external binary ran and exited unsuccessfully; `stderr` keeps its last output lines.
    #[error("{cmd} failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },

    /// A bounded wait ran out.
    #[error("timed out after {secs}s waiting for {what}")]
    Timeout { what: String, secs: u64 },

    /// The operation needs a running postmaster and there is none.
    #[error("postgres is not running (no live postmaster for this data directory)")]
    NotRunning,

    /// The operation needs postgres stopped, or would start a second one.
    #[error("postgres is already running (postmaster pid {pid}); stop it first")]
    AlreadyRunning { pid: i32 },

    /// The postmaster exited while starting up; `log_tail` holds the end of its log file.
    #[error("postgres exited during startup; last lines of its log:\n{log_tail}")]
    StartupFailed { log_tail: String },

    /// Could not open an SQL connection.
    #[error("could not connect to postgres at {target}: {}", describe_pg_error(.source))]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },

    /// An SQL statement failed on an open connection.
    #[error("query failed: {}", describe_pg_error(.0))]
    Query(#[from] tokio_postgres::Error),

    /// The server answered something this crate cannot interpret.
    #[error("unexpected answer from postgres: {0}")]
    Protocol(String),

    /// A file or directory operation failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// pg_controldata output could not be parsed.
    #[error("cannot understand pg_controldata output: {0}")]
    ControlData(String),

    /// A timeline history file could not be parsed.
    #[error("cannot understand timeline history file: {0}")]
    History(String),

    /// The data directory is not in the state the operation needs.
    #[error("data directory {}: {reason}", .path.display())]
    DataDir { path: PathBuf, reason: String },

    /// The TLS settings of a user (`postgresql.authentication.*.ssl*`) cannot be used: a
    /// missing or unreadable certificate or key, a root certificate needed and absent.
    #[error("TLS settings of database user {user}: {detail}")]
    Tls { user: String, detail: String },

    /// A caller-supplied value cannot be used (bad path, bad name, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl PgError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        PgError::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the error means the SQL connection or the server is gone (as opposed to a
    /// statement-level error on a healthy connection).
    pub fn is_connection_problem(&self) -> bool {
        match self {
            PgError::Connect { .. } | PgError::Timeout { .. } | PgError::NotRunning => true,
            PgError::Query(e) => e.is_closed() || e.as_db_error().is_none(),
            _ => false,
        }
    }
}

/// tokio_postgres's `Display` says only "db error"; spell out the server message or the cause.
pub(crate) fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            s.push_str("; ");
            s.push_str(detail);
        }
        if let Some(hint) = db.hint() {
            s.push_str("; hint: ");
            s.push_str(hint);
        }
        return s;
    }
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    if let Some(why) = pgha_tls::explain(&s) {
        s.push_str(" (");
        s.push_str(&why);
        s.push(')');
    }
    s
}
