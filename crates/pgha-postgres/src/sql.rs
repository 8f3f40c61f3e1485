//! SQL quoting and the cached connection to the local postgres.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use crate::error::PgError;
use crate::params::{PgParams, PgUser};
use crate::tls::PreparedTls;
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

impl LocalPostgres {
    /// Connect to `host:port/postgres` as the superuser; bounded by `timeout`. The connection
    /// task is spawned on the current runtime and ends when the client is dropped.
    pub(crate) async fn connect(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Client, PgError> {
        self.connect_db(host, port, "postgres", timeout).await
    }

    /// As `connect`, to database `dbname` (logical slots live in one database).
    pub(crate) async fn connect_db(
        &self,
        host: &str,
        port: u16,
        dbname: &str,
        timeout: Duration,
    ) -> Result<Client, PgError> {
        let (_, tls) = self.superuser_tls()?;
        let user = self.params().superuser.clone();
        connect_with(host, port, &user, &tls, dbname, timeout).await
    }

    /// The superuser's TLS settings and their generation: read at the first connection and
    /// again at each reload (see [`LocalPostgres::reload_users`]), not at every connection.
    fn superuser_tls(&self) -> Result<(u64, Arc<PreparedTls>), PgError> {
        let mut cached = self.superuser_tls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((generation, tls)) = cached.as_ref() {
            return Ok((*generation, tls.clone()));
        }
        let tls = Arc::new(crate::tls::prepare(&self.params().superuser)?);
        let generation = self.tls_generation.load(Ordering::Relaxed);
        *cached = Some((generation, tls.clone()));
        Ok((generation, tls))
    }

    /// A reload: the database users (names, passwords, TLS options) of `users`, every TLS
    /// file of theirs read and checked first. On an error, naming the user and the file,
    /// nothing changes. Otherwise later connections (the cached one too), `primary_conninfo`,
    /// pg_basebackup and pg_rewind use the new settings, and the files are re-read even when
    /// their paths did not change (a rotated certificate).
    pub fn reload_users(&self, users: &PgParams) -> Result<(), PgError> {
        let superuser = crate::tls::prepare(&users.superuser)?;
        crate::tls::check_user_tls(&users.replication)?;
        if let Some(rewind) = &users.rewind {
            crate::tls::check_user_tls(rewind)?;
        }
        let mut cached = self.superuser_tls.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut params = self.params.write().unwrap_or_else(|p| p.into_inner());
            let mut next = PgParams::clone(&params);
            next.superuser = users.superuser.clone();
            next.replication = users.replication.clone();
            next.rewind = users.rewind.clone();
            *params = Arc::new(next);
        }
        let generation = self.tls_generation.fetch_add(1, Ordering::Relaxed) + 1;
        *cached = Some((generation, Arc::new(superuser)));
        Ok(())
    }
}

/// Connect to `host:port/dbname` as `user` with `tls`; bounded by `timeout`.
async fn connect_with(
    host: &str,
    port: u16,
    user: &PgUser,
    tls: &PreparedTls,
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
    let tls = tls.apply(&mut cfg, host);
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
            // A reload since the connection was made: connect again with the new settings.
            let generation = self.tls_generation.load(Ordering::Relaxed);
            if guard
                .as_ref()
                .is_none_or(|(g, c)| *g != generation || c.is_closed())
            {
                *guard = None;
                let p = self.params();
                let client = self.connect(&p.local_host, p.port, limit).await?;
                *guard = Some((generation, client));
            }
            let (_, client) = guard.as_ref().ok_or(PgError::NotRunning)?;
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
    pub fn forget_connection(&self) {
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

    #[test]
    fn a_reload_with_an_unreadable_file_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = pgha_tls::test_ca::TestCa::new("reload CA");
        let ca_file = tmp.path().join("ca.pem");
        ca.write(&ca_file).unwrap();
        let (crt, key) = ca.issue(tmp.path(), "client", &["postgres"]).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let s = |p: &std::path::Path| p.display().to_string();
        let pg = LocalPostgres::new(crate::test_support::params_in(tmp.path()));
        let (gen0, _) = pg.superuser_tls().unwrap();

        let mut next = PgParams::clone(&pg.params());
        next.superuser.options = [
            ("sslmode", "verify-ca".to_string()),
            ("sslrootcert", s(&ca_file)),
            ("sslcert", s(&crt)),
            ("sslkey", s(&key)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        next.replication.password = Some("new-rep-pass".into());
        pg.reload_users(&next).unwrap();
        let (gen1, tls) = pg.superuser_tls().unwrap();
        assert!(gen1 > gen0 && tls.uses_tls());
        assert_eq!(
            pg.params().replication.password.as_deref(),
            Some("new-rep-pass")
        );
        assert_eq!(pg.params().superuser.options["sslcert"], s(&crt));

        // A CA path that does not exist: refused naming it, the previous settings stay.
        let mut wrong = next.clone();
        wrong
            .superuser
            .options
            .insert("sslrootcert".into(), "/nonexistent/ca.pem".into());
        wrong.replication.password = Some("other".into());
        let e = pg.reload_users(&wrong).unwrap_err().to_string();
        assert!(e.contains("sslrootcert /nonexistent/ca.pem"), "{e}");
        assert_eq!(pg.superuser_tls().unwrap().0, gen1);
        assert_eq!(
            pg.params().replication.password.as_deref(),
            Some("new-rep-pass")
        );
        // The replication user's files are checked too.
        let mut wrong = next.clone();
        wrong
            .replication
            .options
            .insert("sslcert".into(), "/nonexistent/rep.crt".into());
        let e = pg.reload_users(&wrong).unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/rep.crt") && e.contains("replicator"),
            "{e}"
        );
        // A key rotated in place that no longer matches its certificate is refused too.
        std::fs::write(&key, ca.issue_pem(&["postgres"]).1).unwrap();
        let e = pg.reload_users(&next).unwrap_err().to_string();
        assert!(e.contains("postgres"), "{e}");
        assert_eq!(pg.superuser_tls().unwrap().0, gen1);
        // The matching pair rotated in place: taken, a new generation.
        let (c2, k2) = ca.issue_pem(&["postgres"]);
        std::fs::write(&crt, c2).unwrap();
        std::fs::write(&key, k2).unwrap();
        pg.reload_users(&next).unwrap();
        assert!(pg.superuser_tls().unwrap().0 > gen1);
    }
}
