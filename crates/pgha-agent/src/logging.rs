//! Log output in Patroni's layout (`2026-11-22 01:58:15,283 INFO: message`, level at column
//! 25) so existing log pipelines and greps keep working, or JSON lines when `log.type: json`
//! (`{"time": ..., "level": "INFO", "message": ..., <fields>}`, levels named as Patroni names
//! them). With `log.dir` the lines go to `<dir>/pgha.log`, rotated by size like Patroni's
//! `RotatingFileHandler` (`log.file_size` bytes, `log.file_num` old files `pgha.log.1` ...);
//! otherwise to stderr. `log.deduplicate_heartbeat_logs: true` writes a heartbeat line
//! (`no action. ...`) only when it differs from the previous heartbeat.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Local;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Marks an event as CRITICAL (tracing has no such level): `error!(critical = true, ...)`.
pub const CRITICAL_FIELD: &str = "critical";
/// The file written in `log.dir`.
pub const LOG_FILE: &str = "pgha.log";
/// Patroni's defaults for `log.file_size` and `log.file_num`.
pub const DEFAULT_FILE_SIZE: u64 = 25_000_000;
pub const DEFAULT_FILE_NUM: u32 = 4;
/// The start of the HA loop's heartbeat line.
const HEARTBEAT_PREFIX: &str = "no action. ";

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot write logs to {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
}

/// Patroni's level name of an event.
fn level_name(level: Level, critical: bool) -> &'static str {
    match level {
        Level::ERROR if critical => "CRITICAL",
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    critical: bool,
    /// Other fields, for JSON.
    extra: Map<String, Value>,
    /// Other fields as ` key=value`, for text.
    rest: String,
}

impl Fields {
    fn add(&mut self, field: &Field, text: String, json: Value) {
        if field.name() == "message" {
            self.message = text;
        } else {
            self.rest.push_str(&format!(" {}={text}", field.name()));
            self.extra.insert(field.name().to_string(), json);
        }
    }
}

impl Visit for Fields {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == CRITICAL_FIELD {
            self.critical = value;
        } else {
            self.add(field, value.to_string(), Value::Bool(value));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add(field, value.to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.add(field, value.to_string(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, value.to_string(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.add(field, text.clone(), text.into());
    }
}

/// Remembers the last heartbeat line written; `None` when de-duplication is off.
#[derive(Debug, Default)]
pub struct Dedupe(Option<Mutex<Option<String>>>);

impl Dedupe {
    pub fn new(enabled: bool) -> Dedupe {
        Dedupe(enabled.then(|| Mutex::new(None)))
    }

    /// Whether a line with this message is to be written.
    pub fn admit(&self, message: &str) -> bool {
        let Some(last) = &self.0 else { return true };
        if !message.starts_with(HEARTBEAT_PREFIX) {
            return true;
        }
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() == Some(message) {
            return false;
        }
        *last = Some(message.to_string());
        true
    }
}

/// Formats events as Patroni's text lines or as JSON lines.
pub struct PatroniFormat {
    pub json: bool,
    pub dedupe: Dedupe,
}

impl<S, N> FormatEvent<S, N> for PatroniFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if !self.dedupe.admit(&fields.message) {
            return Ok(());
        }
        let level = level_name(*event.metadata().level(), fields.critical);
        let now = Local::now();
        if self.json {
            let mut line = Map::new();
            line.insert(
                "time".into(),
                now.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string().into(),
            );
            line.insert("level".into(), level.into());
            line.insert("message".into(), fields.message.into());
            for (k, v) in fields.extra {
                line.entry(k).or_insert(v);
            }
            writeln!(writer, "{}", Value::Object(line))
        } else {
            writeln!(
                writer,
                "{} {level}: {}{}",
                now.format("%Y-%m-%d %H:%M:%S,%3f"),
                fields.message,
                fields.rest
            )
        }
    }
}

/// A file rotated by size as Python's `RotatingFileHandler` does: before a line that would make
/// the file reach `max_bytes`, `path.N-1` → `path.N`, ..., `path` → `path.1`, and a new `path`.
/// `max_bytes == 0` or `backups == 0` never rotates. IO errors are returned, never panics; the
/// file is reopened on the next write after a failure.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    backups: u32,
    file: Option<File>,
    size: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, backups: u32) -> io::Result<RotatingFile> {
        let mut f = RotatingFile {
            path: path.to_path_buf(),
            max_bytes,
            backups,
            file: None,
            size: 0,
        };
        f.reopen()?;
        Ok(f)
    }

    fn reopen(&mut self) -> io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        for n in (1..self.backups).rev() {
            let from = self.numbered(n);
            if from.exists() {
                fs::rename(&from, self.numbered(n + 1))?;
            }
        }
        if self.path.exists() {
            fs::rename(&self.path, self.numbered(1))?;
        }
        self.reopen()
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let rotates = self.max_bytes > 0 && self.backups > 0;
        if rotates && self.size > 0 && self.size + buf.len() as u64 >= self.max_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("not open"))?;
        if let Err(e) = file.write_all(buf) {
            self.file = None;
            return Err(e);
        }
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

/// Shares one [`RotatingFile`] between threads; a failed write is reported on stderr (once per
/// distinct error) rather than lost silently or allowed to stop the agent.
#[derive(Clone)]
pub struct SharedFile {
    inner: Arc<Mutex<(RotatingFile, Option<String>)>>,
}

impl SharedFile {
    pub fn new(file: RotatingFile) -> SharedFile {
        SharedFile {
            inner: Arc::new(Mutex::new((file, None))),
        }
    }
}

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (file, last_error) = &mut *guard;
        match file.write(buf) {
            Ok(n) => {
                *last_error = None;
                Ok(n)
            }
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    eprintln!("pgha: cannot write to {}: {text}", file.path.display());
                    *last_error = Some(text);
                }
                // Report the line as written: the subscriber has nowhere better to put it.
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.flush()
    }
}

impl<'a> MakeWriter<'a> for SharedFile {
    type Writer = SharedFile;
    fn make_writer(&'a self) -> SharedFile {
        self.clone()
    }
}

/// What `init` needs from the `log` section.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    pub level: String,
    pub json: bool,
    pub dir: Option<PathBuf>,
    pub file_size: u64,
    pub file_num: u32,
    pub dedupe_heartbeat: bool,
}

impl LogSettings {
    pub fn from_config(log: &pgha_config::Log) -> LogSettings {
        LogSettings {
            level: log.level.clone(),
            json: log.r#type.eq_ignore_ascii_case("json"),
            dir: log.dir.clone().filter(|d| !d.as_os_str().is_empty()),
            file_size: log.file_size.unwrap_or(DEFAULT_FILE_SIZE),
            file_num: log.file_num.unwrap_or(DEFAULT_FILE_NUM),
            dedupe_heartbeat: pgha_types::tag_is_true(log.extra.get("deduplicate_heartbeat_logs")),
        }
    }

    /// `tracing`'s filter for Patroni's level (DEBUG, INFO, WARNING, ERROR, CRITICAL); library
    /// chatter (HTTP, gRPC internals) stays out of the operator's log.
    fn filter(&self) -> String {
        let level = match self.level.to_ascii_uppercase().as_str() {
            "DEBUG" => "debug",
            "WARNING" | "WARN" => "warn",
            "ERROR" | "CRITICAL" => "error",
            _ => "info",
        };
        format!("{level},h2=warn,hyper=warn,tower=warn,tonic=warn,reqwest=warn,tokio_postgres=warn")
    }

    /// Where the lines go: `<dir>/pgha.log` (the directory is created) or stderr.
    pub fn writer(&self) -> Result<BoxMakeWriter, LogError> {
        let Some(dir) = &self.dir else {
            return Ok(BoxMakeWriter::new(io::stderr));
        };
        let path = dir.join(LOG_FILE);
        let open = || {
            fs::create_dir_all(dir)?;
            RotatingFile::open(&path, self.file_size, self.file_num)
        };
        let file = open().map_err(|source| LogError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(BoxMakeWriter::new(SharedFile::new(file)))
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides the level for finer filters.
pub fn init(log: &pgha_config::Log) -> Result<(), LogError> {
    let settings = LogSettings::from_config(log);
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(settings.filter()));
    let res = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(settings.writer()?)
        .event_format(PatroniFormat {
            json: settings.json,
            dedupe: Dedupe::new(settings.dedupe_heartbeat),
        })
        .try_init();
    if let Err(e) = res {
        eprintln!("logging was already initialised: {e}");
    }
    Ok(())
}

#[cfg(test)]
#[path = "logging_tests.rs"]
mod tests;
