//! Log output in Patroni's layout (`2026-11-22 01:58:15,283 INFO: message`, level at column
//! 25) so existing log pipelines and greps keep working, or JSON lines when `log.type: json`.

use std::fmt;

use chrono::Local;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Marks an event as CRITICAL (tracing has no such level): `error!(critical = true, ...)`.
pub const CRITICAL_FIELD: &str = "critical";

struct PatroniFormat;

#[derive(Default)]
struct Fields {
    message: String,
    critical: bool,
    rest: String,
}

impl Visit for Fields {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == CRITICAL_FIELD {
            self.critical = value;
        } else {
            self.record_debug(field, &value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.rest.push_str(&format!(" {}={value}", field.name()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.rest.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
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
        let level = match *event.metadata().level() {
            Level::ERROR if fields.critical => "CRITICAL",
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            Level::DEBUG | Level::TRACE => "DEBUG",
        };
        writeln!(
            writer,
            "{} {level}: {}{}",
            Local::now().format("%Y-%m-%d %H:%M:%S,%3f"),
            fields.message,
            fields.rest
        )
    }
}

/// Installs the global subscriber. `level` is Patroni's (DEBUG, INFO, WARNING, ERROR,
/// CRITICAL); `RUST_LOG` overrides it for finer filters.
pub fn init(level: &str, json: bool) {
    let level = match level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ => "info",
    };
    // Library chatter (HTTP, gRPC internals) stays out of the operator's log.
    let default = format!(
        "{level},h2=warn,hyper=warn,tower=warn,tonic=warn,reqwest=warn,tokio_postgres=warn"
    );
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let res = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.event_format(PatroniFormat).try_init()
    };
    if let Err(e) = res {
        eprintln!("logging was already initialised: {e}");
    }
}
