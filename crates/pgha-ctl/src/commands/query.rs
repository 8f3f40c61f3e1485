//! `query`: runs SQL on the leader (or a member chosen by `-r`/`-m`) and prints the rows, tsv
//! with a header line by default. Connection problems and SQL errors are printed as a row
//! `<time>\tERROR, SQLSTATE: <code or message>`, as patronictl prints them.
//!
//! Credentials, in order: `-U`, `PGUSER`, the configuration's superuser, the OS user; the
//! password from `--password` (asked for), `PGPASSWORD`, the configuration's superuser password
//! (for that user), or `~/.pgpass` (`PGPASSFILE`). The database is `-d`, `PGDATABASE` or the
//! user name, as libpq picks it.

use std::time::Duration;

use anyhow::{bail, Result};
use pgha_types::{Cluster, Member};
use serde_json::Value;
use tokio_postgres::SimpleQueryMessage;

use super::common::{timestamp, Ctx};
use super::history::print_rows;
use super::members::any_member;
use crate::args::RoleArg;
use crate::dcs::Store;
use crate::render::{host_port, Format};

#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub role: Option<RoleArg>,
    pub member: Option<String>,
    pub sql: String,
    pub user: String,
    pub password: Option<String>,
    pub dbname: Option<String>,
    pub format: Format,
    pub delimiter: String,
    pub watch: Option<f64>,
}

/// Who `query` connects as, when `-U` is not given: `PGUSER`, the superuser from the
/// configuration, then the operating system user.
pub fn default_user(
    superuser: Option<&(String, Option<String>)>,
    env: &dyn Fn(&str) -> Option<String>,
) -> String {
    env("PGUSER")
        .filter(|u| !u.is_empty())
        .or_else(|| superuser.map(|(u, _)| u.clone()))
        .or_else(|| env("USER"))
        .unwrap_or_else(|| "postgres".into())
}

/// A `.pgpass` line's field matches (`*` matches anything; `\:` and `\\` are escapes).
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    if let Some(f) = fields.last_mut() {
                        f.push(n);
                    }
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c)
                }
            }
        }
    }
    fields
}

/// The password `~/.pgpass` (or `PGPASSFILE`) holds for this connection.
pub fn pgpass_lookup(text: &str, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(pgpass_fields)
        .find(|f| {
            f.len() == 5
                && [host, port.as_str(), db, user]
                    .iter()
                    .zip(f.iter())
                    .all(|(want, got)| got == "*" || got == want)
        })
        .map(|f| f[4].clone())
}

fn pgpass(host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let path = std::env::var_os("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".pgpass"))
        })?;
    let text = std::fs::read_to_string(path).ok()?;
    pgpass_lookup(&text, host, port, db, user)
}

/// A text value typed as psycopg would return it (by the column's type).
fn typed(text: Option<&str>, ty: Option<&tokio_postgres::types::Type>) -> Value {
    use tokio_postgres::types::Type;
    let Some(t) = text else {
        return Value::Null;
    };
    let Some(ty) = ty else {
        return Value::String(t.to_string());
    };
    match *ty {
        Type::BOOL => Value::Bool(t == "t"),
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => t
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(t.to_string())),
        Type::FLOAT4 | Type::FLOAT8 => t
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(t.to_string())),
        // Python prints a timezone-aware datetime with a `+HH:MM` offset.
        Type::TIMESTAMPTZ => {
            let b = t.as_bytes();
            let n = b.len();
            if n >= 3 && (b[n - 3] == b'+' || b[n - 3] == b'-') {
                Value::String(format!("{t}:00"))
            } else {
                Value::String(t.to_string())
            }
        }
        _ => Value::String(t.to_string()),
    }
}

/// One run: the rows and column names, or patronictl's one-row error report.
async fn query_member(
    cluster: &Cluster,
    req: &QueryRequest,
) -> Result<(Vec<Vec<Value>>, Option<Vec<String>>)> {
    let error_row = |msg: String| {
        (
            vec![vec![Value::String(timestamp(0)), Value::String(msg)]],
            None,
        )
    };
    let member: Option<Member> = any_member(cluster, req.role, req.member.as_deref())?;
    let unavailable = || match (&req.member, req.role) {
        (Some(m), _) => format!("No connection to member {m} is available"),
        (None, Some(r)) => format!("No connection to role '{}' is available", r.as_str()),
        (None, None) => "No connection is available".to_string(),
    };
    let Some((host, port)) = member.as_ref().and_then(host_port) else {
        return Ok(error_row(unavailable()));
    };
    let db = req.dbname.clone().unwrap_or_else(|| req.user.clone());
    let mut config = tokio_postgres::Config::new();
    config
        .host(&host)
        .port(port)
        .user(&req.user)
        .dbname(&db)
        .application_name("Patroni ctl")
        .connect_timeout(Duration::from_secs(5));
    let password = req
        .password
        .clone()
        .or_else(|| pgpass(&host, port, &db, &req.user));
    if let Some(p) = &password {
        config.password(p);
    }
    let sql_error = |e: tokio_postgres::Error| {
        let msg = match e.code() {
            Some(c) => c.code().to_string(),
            None => {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text.push_str(&format!(": {s}"));
                    source = s.source();
                }
                text
            }
        }
        .replace('\n', " ");
        error_row(format!("ERROR, SQLSTATE: {msg}"))
    };
    // TLS as psql would: the PGSSL* variables (libpq's rules; prefer when none is set).
    let user = pgha_postgres::PgUser {
        username: req.user.clone(),
        password: None,
        options: pgha_postgres::tls::options_from_env(&|k| std::env::var(k).ok()),
    };
    let tls = match pgha_postgres::tls::configure(&mut config, &user, &host) {
        Ok(t) => t,
        Err(e) => return Ok(error_row(format!("ERROR: {e}"))),
    };
    let (client, connection) = match config.connect(tls).await {
        Ok(c) => c,
        Err(e) => return Ok(sql_error(e)),
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let needs_recovery = match req.role {
        Some(RoleArg::Replica | RoleArg::Standby | RoleArg::StandbyLeader) => Some(true),
        Some(RoleArg::Primary) => Some(false),
        _ => None,
    };
    if let Some(want) = needs_recovery {
        match client
            .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
            .await
        {
            Ok(row) if row.get::<_, bool>(0) == want => {}
            Ok(_) => return Ok(error_row(unavailable())),
            Err(e) => return Ok(sql_error(e)),
        }
    }
    // Column types (for typed values) when the text is a single statement.
    let types: Vec<tokio_postgres::types::Type> = match client.prepare(&req.sql).await {
        Ok(stmt) => stmt.columns().iter().map(|c| c.type_().clone()).collect(),
        Err(_) => Vec::new(),
    };
    let messages = match client.simple_query(&req.sql).await {
        Ok(m) => m,
        Err(e) => return Ok(sql_error(e)),
    };
    let mut columns: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for m in messages {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                columns = Some(cols.iter().map(|c| c.name().to_string()).collect());
                rows.clear();
            }
            SimpleQueryMessage::Row(r) => {
                rows.push(
                    (0..r.len())
                        .map(|i| typed(r.get(i), types.get(i)))
                        .collect::<Vec<_>>(),
                );
            }
            _ => {}
        }
    }
    match columns {
        Some(c) => Ok((rows, Some(c))),
        None => Ok(error_row("ERROR, SQLSTATE: no results to fetch".into())),
    }
}

pub async fn query(ctx: &mut Ctx<'_>, store: &impl Store, req: &QueryRequest) -> Result<()> {
    if req.role.is_some() && req.member.is_some() {
        bail!("--role and --member are mutually exclusive options");
    }
    let cluster = store.load().await?;
    loop {
        let (rows, columns) = query_member(&cluster, req).await?;
        ctx.term.print(&print_rows(
            columns.as_deref(),
            &rows,
            &[],
            req.format,
            &req.delimiter,
        ));
        match req.watch {
            Some(s) if s > 0.0 => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials() {
        let env = |k: &str| match k {
            "USER" => Some("alice".to_string()),
            _ => None,
        };
        let su = ("postgres".to_string(), Some("pw".to_string()));
        assert_eq!(default_user(Some(&su), &env), "postgres");
        assert_eq!(default_user(None, &env), "alice");
        let pgpass = "# comment\n127.0.0.1:5433:*:postgres:other\n*:5432:*:postgres:s\\:ecret\n";
        assert_eq!(
            pgpass_lookup(pgpass, "127.0.0.1", 5432, "postgres", "postgres").as_deref(),
            Some("s:ecret")
        );
        assert_eq!(
            pgpass_lookup(pgpass, "127.0.0.1", 5433, "x", "postgres").as_deref(),
            Some("other")
        );
        assert_eq!(pgpass_lookup(pgpass, "h", 5434, "x", "postgres"), None);
    }

    #[test]
    fn values_typed_like_psycopg() {
        use tokio_postgres::types::Type;
        assert_eq!(typed(Some("t"), Some(&Type::BOOL)), Value::Bool(true));
        assert_eq!(typed(Some("42"), Some(&Type::INT8)), Value::from(42));
        assert_eq!(typed(None, Some(&Type::TEXT)), Value::Null);
        assert_eq!(
            typed(
                Some("2023-09-12 18:10:53.228084+00"),
                Some(&Type::TIMESTAMPTZ)
            ),
            Value::from("2023-09-12 18:10:53.228084+00:00")
        );
        assert_eq!(typed(Some("x"), None), Value::from("x"));
        let rows = vec![vec![Value::from(5434), Value::Bool(true), Value::Null]];
        let cols = ["port".to_string(), "ok".to_string(), "n".to_string()];
        assert_eq!(
            print_rows(Some(&cols), &rows, &[], Format::Tsv, "\t"),
            "port\tok\tn\n5434\tTrue\tNone\n"
        );
        assert_eq!(
            print_rows(None, &[vec![Value::from("a"), Value::from("b")]], &[], Format::Pretty, "\t"),
            "+---------+---------+\n| Field 1 | Field 2 |\n+---------+---------+\n| a       | b       |\n+---------+---------+\n"
        );
    }
}
