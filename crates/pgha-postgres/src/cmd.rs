//! Running external binaries: bounded in time, output captured (only its tail is kept),
//! optionally as another OS user and detached into a new session.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::PgError;

/// How much of a command's stdout/stderr is kept.
const OUTPUT_KEEP_BYTES: usize = 64 * 1024;
/// How many lines of output go into error messages.
const ERROR_TAIL_LINES: usize = 20;

/// The OS user external commands run as (when the agent itself runs as root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl OsUser {
    /// Look a user up in the passwd database.
    pub fn lookup(name: &str) -> Result<Self, PgError> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Ok(OsUser {
                name: u.name,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
                home: u.dir,
            }),
            Ok(None) => Err(PgError::InvalidInput(format!(
                "OS user {name:?} does not exist"
            ))),
            Err(e) => Err(PgError::InvalidInput(format!(
                "cannot look up OS user {name:?}: {e}"
            ))),
        }
    }
}

/// A command line to run, with a printable form for logs and errors (never holds secrets).
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    /// Start the child in a new session (setsid) so it outlives us and our signals.
    detach: bool,
}

impl Cmd {
    pub(crate) fn new(program: impl Into<PathBuf>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            detach: false,
        }
    }

    pub(crate) fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_os_string());
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub(crate) fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((k.as_ref().to_os_string(), v.as_ref().to_os_string()));
        self
    }

    pub(crate) fn detached(mut self) -> Self {
        self.detach = true;
        self
    }

    /// "pg_ctl start -D /data ..." (program base name and arguments).
    pub(crate) fn display(&self) -> String {
        let name = self
            .program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.program.display().to_string());
        let mut s = name;
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    pub(crate) fn build(&self, user: Option<&OsUser>) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.program);
        c.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        if let Some(u) = user {
            c.uid(u.uid)
                .gid(u.gid)
                .env("HOME", &u.home)
                .env("USER", &u.name)
                .env("LOGNAME", &u.name)
                // Our own working directory (e.g. /root) may not be readable by that user.
                .current_dir("/");
        }
        if self.detach {
            // SAFETY: the closure runs in the forked child before exec and calls only setsid(2),
            // which is async-signal-safe; it touches no memory shared with the parent.
            unsafe {
                c.pre_exec(|| {
                    nix::unistd::setsid()
                        .map(|_| ())
                        .map_err(std::io::Error::from)
                });
            }
        }
        c
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The last lines of stderr (or stdout when stderr is empty), for error messages.
    pub(crate) fn tail(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        tail_lines(text, ERROR_TAIL_LINES)
    }
}

/// Sees every chunk a command writes to stderr, as it comes (progress reports).
pub(crate) type StderrWatch = Box<dyn FnMut(&[u8]) + Send>;

/// Run `cmd` to completion, killing it when `limit` passes. Does not look at the exit status.
pub(crate) async fn run(
    cmd: &Cmd,
    user: Option<&OsUser>,
    limit: Duration,
) -> Result<Output, PgError> {
    run_watching(cmd, user, limit, None).await
}

/// [`run`], with `watch` seeing stderr as it is written.
pub(crate) async fn run_watching(
    cmd: &Cmd,
    user: Option<&OsUser>,
    limit: Duration,
    watch: Option<StderrWatch>,
) -> Result<Output, PgError> {
    let shown = cmd.display();
    tracing::debug!(cmd = %shown, "running");
    let mut child = cmd.build(user).spawn().map_err(|source| PgError::Spawn {
        cmd: shown.clone(),
        source,
    })?;
    let out = tokio::spawn(read_tail(child.stdout.take(), None));
    let err = tokio::spawn(read_tail(child.stderr.take(), watch));
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(source)) => {
            out.abort();
            err.abort();
            return Err(PgError::Spawn { cmd: shown, source });
        }
        Err(_) => {
            // Make sure it is gone before the caller cleans up after it.
            let _ = child.kill().await;
            out.abort();
            err.abort();
            return Err(PgError::Timeout {
                what: shown,
                secs: limit.as_secs(),
            });
        }
    };
    // A grandchild could keep the pipes open; do not wait for it long.
    let grace = Duration::from_secs(2);
    let stdout = tokio::time::timeout(grace, out)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let stderr = tokio::time::timeout(grace, err)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Like [`run`], but a non-zero exit is an error carrying the output tail.
pub(crate) async fn run_ok(
    cmd: &Cmd,
    user: Option<&OsUser>,
    limit: Duration,
) -> Result<Output, PgError> {
    run_ok_watching(cmd, user, limit, None).await
}

/// [`run_ok`], with `watch` seeing stderr as it is written.
pub(crate) async fn run_ok_watching(
    cmd: &Cmd,
    user: Option<&OsUser>,
    limit: Duration,
    watch: Option<StderrWatch>,
) -> Result<Output, PgError> {
    let out = run_watching(cmd, user, limit, watch).await?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(PgError::Failed {
            cmd: cmd.display(),
            status: describe_status(&out.status),
            stderr: out.tail(),
        })
    }
}

async fn read_tail<R: AsyncRead + Unpin>(
    reader: Option<R>,
    mut watch: Option<StderrWatch>,
) -> String {
    let Some(mut reader) = reader else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(w) = watch.as_mut() {
                    w(&buf[..n]);
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * OUTPUT_KEEP_BYTES {
                    kept.drain(..kept.len() - OUTPUT_KEEP_BYTES);
                }
            }
        }
    }
    if kept.len() > OUTPUT_KEEP_BYTES {
        kept.drain(..kept.len() - OUTPUT_KEEP_BYTES);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

pub(crate) fn describe_status(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// The last `n` non-empty lines of `text`, joined by newlines.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Quote `s` for a POSIX shell: wrapped in single quotes, embedded single quotes as `'\''`.
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The last lines of a (log) file, read from its end; empty when unreadable.
pub(crate) fn file_tail(path: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(OUTPUT_KEEP_BYTES as u64);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    tail_lines(&String::from_utf8_lossy(&buf), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("100"), "'100'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn tails() {
        assert_eq!(tail_lines("a\nb\n\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("", 3), "");
    }

    #[test]
    fn display_uses_base_name() {
        let c = Cmd::new("/usr/lib/postgresql/15/bin/pg_ctl")
            .arg("stop")
            .args(["-D", "/d"]);
        assert_eq!(c.display(), "pg_ctl stop -D /d");
    }

    #[tokio::test]
    async fn run_bounds_and_reports() {
        let ok = run_ok(
            &Cmd::new("/bin/sh").args(["-c", "echo hi; echo oops >&2"]),
            None,
            Duration::from_secs(5),
        )
        .await
        .expect("sh runs");
        assert_eq!(ok.stdout.trim(), "hi");
        assert_eq!(ok.stderr.trim(), "oops");
        let failed = run_ok(
            &Cmd::new("/bin/sh").args(["-c", "echo bad >&2; exit 3"]),
            None,
            Duration::from_secs(5),
        )
        .await;
        match failed {
            Err(PgError::Failed { status, stderr, .. }) => {
                assert_eq!(status, "exit code 3");
                assert_eq!(stderr, "bad");
            }
            other => panic!("unexpected {other:?}"),
        }
        let slow = run(
            &Cmd::new("/bin/sleep").arg("5"),
            None,
            Duration::from_millis(200),
        )
        .await;
        assert!(matches!(slow, Err(PgError::Timeout { .. })), "{slow:?}");
        let missing = run(
            &Cmd::new("/nonexistent/binary"),
            None,
            Duration::from_secs(1),
        )
        .await;
        assert!(matches!(missing, Err(PgError::Spawn { .. })), "{missing:?}");
    }
}
