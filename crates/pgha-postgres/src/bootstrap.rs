//! After initdb: roles the cluster needs, and the user's post-bootstrap script.

use crate::cmd::Cmd;
use crate::error::PgError;
use crate::params::PgUser;
use crate::sql::{quote_ident, quote_literal, rows};
use crate::LocalPostgres;

/// Functions pg_rewind needs on the source server (PostgreSQL 11+), granted to the rewind role.
const REWIND_FUNCTIONS: &[&str] = &[
    "pg_catalog.pg_ls_dir(text, boolean, boolean)",
    "pg_catalog.pg_stat_file(text, boolean)",
    "pg_catalog.pg_read_binary_file(text)",
    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
];

/// Percent-encode everything but unreserved URL characters.
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `postgres://<user>@<host>:<port>/postgres` (no password: it is in the pgpass file).
pub(crate) fn connection_url(user: &str, host: &str, port: u16) -> String {
    let host = if host.starts_with('/') {
        url_encode(host)
    } else if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    format!("postgres://{}@{host}:{port}/postgres", url_encode(user))
}

/// `CREATE ROLE` or `ALTER ROLE` (when it exists) with `options` and the user's password.
fn upsert_role(user: &PgUser, exists: bool, options: &str) -> String {
    let verb = if exists { "ALTER" } else { "CREATE" };
    let mut sql = format!("{verb} ROLE {} WITH {options}", quote_ident(&user.username));
    if let Some(pw) = &user.password {
        sql.push_str(" PASSWORD ");
        sql.push_str(&quote_literal(pw));
    }
    sql.push(';');
    sql
}

/// The statements of `bootstrap_roles`, given which role names exist already.
pub(crate) fn role_statements(
    superuser: &PgUser,
    replication: &PgUser,
    rewind: Option<&PgUser>,
    exists: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut stmts = Vec::new();
    if let Some(pw) = &superuser.password {
        stmts.push(format!(
            "ALTER ROLE {} WITH PASSWORD {};",
            quote_ident(&superuser.username),
            quote_literal(pw)
        ));
    }
    if replication.username != superuser.username {
        stmts.push(upsert_role(
            replication,
            exists(&replication.username),
            "LOGIN REPLICATION",
        ));
    }
    if let Some(rw) = rewind.filter(|r| r.username != superuser.username) {
        if rw.username != replication.username {
            stmts.push(upsert_role(rw, exists(&rw.username), "LOGIN"));
        }
        for f in REWIND_FUNCTIONS {
            stmts.push(format!(
                "GRANT EXECUTE ON FUNCTION {f} TO {};",
                quote_ident(&rw.username)
            ));
        }
    }
    stmts
}

impl LocalPostgres {
    /// On a freshly initialised, running primary: set the superuser's password, create (or
    /// update) the replication role (LOGIN REPLICATION) and the rewind role (LOGIN, with the
    /// function grants pg_rewind needs). Idempotent. Statements are not logged by the server
    /// (they carry passwords).
    pub async fn bootstrap_roles(&self) -> Result<(), PgError> {
        let p = self.params();
        let limit = self.timeouts.short_command;
        let mut names = vec![p.replication.username.as_str()];
        if let Some(r) = &p.rewind {
            names.push(&r.username);
        }
        let list = names
            .iter()
            .map(|n| quote_literal(n))
            .collect::<Vec<_>>()
            .join(", ");
        let existing: Vec<String> = rows(
            self.simple_query(
                &format!("SELECT rolname FROM pg_catalog.pg_roles WHERE rolname IN ({list})"),
                limit,
            )
            .await?,
        )
        .iter()
        .filter_map(|r| r.get(0).map(str::to_string))
        .collect();
        let stmts = role_statements(&p.superuser, &p.replication, p.rewind.as_ref(), |n| {
            existing.iter().any(|e| e == n)
        });
        if stmts.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "BEGIN; SET LOCAL log_statement TO 'none'; SET LOCAL log_min_duration_statement TO -1; \
             SET LOCAL log_min_error_statement TO 'panic'; {} COMMIT;",
            stmts.join(" ")
        );
        if let Err(e) = self.simple_query(&sql, limit).await {
            // Leave the cached connection usable.
            let _ = self.simple_query("ROLLBACK", limit).await;
            return Err(e);
        }
        tracing::info!(replication = %p.replication.username, rewind = ?p.rewind.as_ref().map(|r| &r.username), "roles created");
        Ok(())
    }

    /// Run the user's post-bootstrap script as `sh -c '<script> "$1"'` with one argument, the
    /// connection URL `postgres://<superuser>@<local_host>:<port>/postgres`, and PGPASSFILE set
    /// to our pgpass file (written first). Bounded by `Timeouts::post_bootstrap`; a non-zero
    /// exit is an error carrying the script's output.
    pub async fn run_post_bootstrap(&self, script: &str) -> Result<(), PgError> {
        let p = self.params();
        if script.trim().is_empty() {
            return Err(PgError::InvalidInput("empty post_bootstrap script".into()));
        }
        self.write_pgpass()?;
        let url = connection_url(&p.superuser.username, &p.local_host, p.port);
        let cmd = Cmd::new("/bin/sh")
            .arg("-c")
            .arg(format!("{script} \"$1\""))
            .arg("pgha-post-bootstrap")
            .arg(url)
            .env("PGPASSFILE", &p.pgpass);
        tracing::info!(script, "running post_bootstrap script");
        self.run_ok(&cmd, self.timeouts.post_bootstrap).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::params_in;

    fn user(name: &str, pw: Option<&str>) -> PgUser {
        PgUser {
            username: name.into(),
            password: pw.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            connection_url("postgres", "127.0.0.1", 5432),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        assert_eq!(
            connection_url("a b", "::1", 1),
            "postgres://a%20b@[::1]:1/postgres"
        );
        assert_eq!(
            connection_url("u", "/tmp/s", 5),
            "postgres://u@%2Ftmp%2Fs:5/postgres"
        );
    }

    #[test]
    fn statements_create_then_alter() {
        let su = user("postgres", Some("s'p"));
        let rep = user("replicator", Some("r"));
        let rw = user("rewind_user", None);
        let fresh = role_statements(&su, &rep, Some(&rw), |_| false);
        assert_eq!(fresh[0], "ALTER ROLE \"postgres\" WITH PASSWORD 's''p';");
        assert_eq!(
            fresh[1],
            "CREATE ROLE \"replicator\" WITH LOGIN REPLICATION PASSWORD 'r';"
        );
        assert_eq!(fresh[2], "CREATE ROLE \"rewind_user\" WITH LOGIN;");
        assert_eq!(
            fresh[3],
            "GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean) TO \"rewind_user\";"
        );
        assert_eq!(fresh.len(), 7);
        let again = role_statements(&su, &rep, Some(&rw), |_| true);
        assert!(again[1].starts_with("ALTER ROLE \"replicator\""));
        assert!(again[2].starts_with("ALTER ROLE \"rewind_user\""));
        // Rewinding as the superuser needs nothing extra.
        assert_eq!(role_statements(&su, &rep, Some(&su), |_| false).len(), 2);
    }

    #[tokio::test]
    async fn post_bootstrap_gets_url_and_pgpass() {
        let tmp = tempfile::tempdir().unwrap();
        let p = params_in(tmp.path());
        let out = tmp.path().join("out");
        let script_path = tmp.path().join("script.sh");
        std::fs::write(
            &script_path,
            format!("#!/bin/sh\necho \"$1 $PGPASSFILE\" > {}\n", out.display()),
        )
        .unwrap();
        let pg = LocalPostgres::new(p.clone());
        pg.run_post_bootstrap(&format!("sh {}", script_path.display()))
            .await
            .unwrap();
        let written = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            written.trim(),
            format!(
                "postgres://postgres@127.0.0.1:5432/postgres {}",
                p.pgpass.display()
            )
        );
        let err = pg
            .run_post_bootstrap("echo broken >&2; exit 4;")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("broken"), "{err}");
    }
}
