//! SQL quoting and the cached connection to the local postgres.

use std::time::Duration;

use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use crate::error::PgError;
use crate::params::PgUser;
use crate::LocalPostgres;

/// Quote an SQL identifier: always double-quoted, embedded quotes doubled.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quote an SQL string literal; backslashes use the `E''` form so the result does not depend on
/// `standard_conforming_strings`.
pub fn quote_literal(s: &str) -> String {
    let doubled = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", doubled.replace('\\', "\\\\"))
    } else {
        format!("'{doubled}'")
    }
}

/// Connect to `host:port/postgres` as `user`; bounded by `timeout`. The connection task is
/// spawned on the current runtime and ends when the client is dropped.
pub(crate) async fn connect(
    host: &str,
    port: u16,
    user: &PgUser,
    timeout: Duration,
) -> Result<Client, PgError> {
    connect_db(host, port, user, "postgres", timeout).await
}

/// As `connect`, to database `dbname` (logical slots live in one database).
pub(crate) async fn connect_db(
    host: &str,
    port: u16,
    user: &PgUser,
    dbname: &str,
    timeout: Duration,
) -> Result<Client, PgError> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(host)
        .port(port)
        .user(&user.username)
        .dbname(dbname)
        .application_name("pgha")
        .connect_timeout(timeout);
    if let Some(pw) = &user.password {
        cfg.password(pw);
    }
    let tls = crate::tls::configure(&mut cfg, user, host)?;
    let target = format!("{host}:{port} as {}", user.username);
    let connecting = cfg.connect(tls);
    let (client, connection) = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(source)) => return Err(PgError::Connect { target, source }),
        Err(_) => {
            return Err(PgError::Timeout {
                what: format!("a connection to {target}"),
                secs: timeout.as_secs(),
            })
        }
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

/// The data rows of a simple-query answer.
pub(crate) fn rows(messages: Vec<SimpleQueryMessage>) -> Vec<SimpleQueryRow> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect()
}

impl LocalPostgres {
    /// Run `sql` (one or more statements, simple protocol: one round trip) on the cached
    /// superuser connection, reconnecting when it broke. The whole call is bounded by `limit`;
    /// on a timeout or a broken connection the cached connection is dropped.
    pub(crate) async fn simple_query(
        &self,
        sql: &str,
        limit: Duration,
    ) -> Result<Vec<SimpleQueryMessage>, PgError> {
        let timeout = || PgError::Timeout {
            what: "a query on the local postgres".into(),
            secs: limit.as_secs(),
        };
        let deadline = tokio::time::Instant::now() + limit;
        let mut guard = tokio::time::timeout_at(deadline, self.conn.lock())
            .await
            .map_err(|_| timeout())?;
        let work = async {
            if guard.as_ref().is_none_or(Client::is_closed) {
                *guard = None;
                let p = &self.params;
                let client = connect(&p.local_host, p.port, &p.superuser, limit).await?;
                *guard = Some(client);
            }
            let client = guard.as_ref().ok_or(PgError::NotRunning)?;
            client.simple_query(sql).await.map_err(PgError::Query)
        };
        let result = match tokio::time::timeout_at(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(timeout()),
        };
        if let Err(e) = &result {
            if e.is_connection_problem() {
                *guard = None;
            }
        }
        result
    }

    /// Drop the cached connection (after a stop, before a restart) without waiting for a user.
    pub(crate) fn forget_connection(&self) {
        if let Ok(mut guard) = self.conn.try_lock() {
            *guard = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("rewind_user"), "\"rewind_user\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("pa'ss"), "'pa''ss'");
        assert_eq!(quote_literal("a\\b'c"), "E'a\\\\b''c'");
    }
}
