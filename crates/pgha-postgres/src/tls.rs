//! TLS of the agent's own connections to PostgreSQL (tokio-postgres over rustls), with the
//! connection options of `postgresql.authentication.<user>` read as libpq reads them:
//!
//! * `sslmode`: disable; allow and prefer (TLS when the server offers it; `allow` is taken as
//!   `prefer`, which differs only in which is tried first); require (encrypted; the server
//!   certificate checked against the root certificate only when there is one, as libpq);
//!   verify-ca (signed by the root certificate); verify-full (and valid for the host name).
//! * `sslrootcert`, `sslcert`, `sslkey` default to `~/.postgresql/root.crt`, `postgresql.crt`
//!   and `postgresql.key` when those exist. A file named in the configuration that cannot be
//!   read is an error naming it (libpq would silently go on without a missing client
//!   certificate, and the server's `clientcert` rule would then refuse the connection).
//! * `sslpassword`, `sslcrl`, `sslcrldir`, `channel_binding` (tls-server-end-point),
//!   `sslnegotiation` as libpq; `gssencmode=require` cannot be met (no GSSAPI here).
//! * Unix-socket connections never use TLS (as libpq).
//!
//! The files are read once ([`prepare`]), at the first connection and again at each reload,
//! so a file changed on disk in between is not used until it has been checked.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pgha_tls::pg::{PgClientTls, ServerCheck};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{ChannelBinding as CbMode, SslMode, SslNegotiation};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::error::PgError;
use crate::params::PgUser;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgSslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl PgSslMode {
    pub fn parse(s: &str) -> Option<PgSslMode> {
        Some(match s {
            "disable" => PgSslMode::Disable,
            "allow" => PgSslMode::Allow,
            "prefer" => PgSslMode::Prefer,
            "require" => PgSslMode::Require,
            "verify-ca" => PgSslMode::VerifyCa,
            "verify-full" => PgSslMode::VerifyFull,
            _ => return None,
        })
    }
}

fn bad(user: &PgUser, detail: impl std::fmt::Display) -> PgError {
    PgError::Tls {
        user: user.username.clone(),
        detail: detail.to_string(),
    }
}

/// The user's home directory as libpq finds it: `$HOME`, else the password database.
fn home_dir() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
}

/// The TLS files of `user`, libpq's defaults under `home/.postgresql` applied; `None` when
/// `sslmode=disable`. Errors name the option and file.
pub fn client_tls(user: &PgUser, home: Option<&Path>) -> Result<Option<PgClientTls>, PgError> {
    let opt = |k: &str| user.options.get(k).filter(|v| !v.is_empty());
    let mode = match opt("sslmode") {
        None => PgSslMode::Prefer,
        Some(m) => PgSslMode::parse(m).ok_or_else(|| {
            bad(
                user,
                format!("sslmode {m:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"),
            )
        })?,
    };
    if mode == PgSslMode::Disable {
        return Ok(None);
    }
    if opt("gssencmode").map(String::as_str) == Some("require") {
        return Err(bad(
            user,
            "gssencmode=require cannot be met: pgha's own connections have no GSSAPI encryption",
        ));
    }
    let default = |name: &str| {
        home.map(|h| h.join(".postgresql").join(name))
            .filter(|p| p.exists())
    };
    let must_exist = |key: &str, path: PathBuf| -> Result<PathBuf, PgError> {
        match std::fs::metadata(&path) {
            Ok(_) => Ok(path),
            Err(e) => Err(bad(
                user,
                format!("{key} {} cannot be read: {e}", path.display()),
            )),
        }
    };
    let root_cert =
        match opt("sslrootcert") {
            Some(s) if s == "system" => return Err(bad(
                user,
                "sslrootcert=system is not supported by pgha's own connections; name the CA file",
            )),
            Some(s) => Some(must_exist("sslrootcert", PathBuf::from(s))?),
            None => default("root.crt"),
        };
    let check = match (mode, &root_cert) {
        (PgSslMode::VerifyFull, Some(_)) => ServerCheck::ChainAndName,
        (_, Some(_)) => ServerCheck::Chain,
        (PgSslMode::VerifyCa | PgSslMode::VerifyFull, None) => {
            let where_ = home
                .map(|h| h.join(".postgresql/root.crt").display().to_string())
                .unwrap_or_else(|| "~/.postgresql/root.crt".into());
            return Err(bad(
                user,
                format!(
                    "sslmode {} needs a root certificate: set sslrootcert (there is no {where_})",
                    opt("sslmode").map(String::as_str).unwrap_or_default()
                ),
            ));
        }
        (_, None) => ServerCheck::None,
    };
    let cert_file = match opt("sslcert") {
        Some(s) => Some(must_exist("sslcert", PathBuf::from(s))?),
        None => default("postgresql.crt"),
    };
    let key_file = match (opt("sslkey"), &cert_file) {
        (Some(s), _) => Some(must_exist("sslkey", PathBuf::from(s))?),
        (None, Some(_)) => {
            let key = home
                .map(|h| h.join(".postgresql/postgresql.key"))
                .unwrap_or_else(|| PathBuf::from("postgresql.key"));
            Some(must_exist("sslkey", key)?)
        }
        (None, None) => None,
    };
    Ok(Some(PgClientTls {
        check,
        root_cert,
        crl_file: opt("sslcrl").map(PathBuf::from),
        crl_dir: opt("sslcrldir").map(PathBuf::from),
        cert_file,
        key_file,
        key_password: opt("sslpassword").cloned(),
    }))
}

/// Reads and checks every TLS file of `user` now (at start), so a missing or unusable
/// certificate or key is reported naming it instead of failing each connection.
pub fn check_user_tls(user: &PgUser) -> Result<(), PgError> {
    prepare(user).map(|_| ())
}

/// The TLS settings of a user with every file read once: what the agent's connections use
/// until the next reload, so a certificate rotated (or broken) on disk in between changes
/// nothing until the files have been checked again.
#[derive(Clone)]
pub struct PreparedTls {
    /// `None`: `sslmode=disable`.
    config: Option<Arc<ClientConfig>>,
    /// sslmode other than allow/prefer: TLS or no connection.
    strict: bool,
    channel_binding: CbMode,
    direct: bool,
}

impl std::fmt::Debug for PreparedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedTls")
            .field("tls", &self.config.is_some())
            .field("strict", &self.strict)
            .finish_non_exhaustive()
    }
}

impl PreparedTls {
    /// False with `sslmode=disable`.
    pub fn uses_tls(&self) -> bool {
        self.config.is_some()
    }

    /// No TLS, the user's channel binding and negotiation options kept.
    fn plain(user: &PgUser) -> PreparedTls {
        let opt = |k: &str| user.options.get(k).map(String::as_str);
        PreparedTls {
            config: None,
            strict: false,
            channel_binding: match opt("channel_binding") {
                Some("disable") => CbMode::Disable,
                Some("require") => CbMode::Require,
                _ => CbMode::Prefer,
            },
            direct: opt("sslnegotiation") == Some("direct"),
        }
    }

    /// These settings on `cfg` for a connection to `host`, and the connector to pass to
    /// `connect`. Unix sockets never use TLS (as libpq).
    pub fn apply(&self, cfg: &mut tokio_postgres::Config, host: &str) -> PgTlsConnect {
        cfg.channel_binding(self.channel_binding);
        if self.direct {
            cfg.ssl_negotiation(SslNegotiation::Direct);
        }
        match &self.config {
            Some(config) if !host.starts_with('/') => {
                cfg.ssl_mode(if self.strict {
                    SslMode::Require
                } else {
                    SslMode::Prefer
                });
                PgTlsConnect(Some(config.clone()))
            }
            _ => {
                cfg.ssl_mode(SslMode::Disable);
                PgTlsConnect(None)
            }
        }
    }
}

/// Reads and checks the TLS files of `user` (libpq's defaults under `~/.postgresql` applied);
/// errors name the option and the file.
pub fn prepare(user: &PgUser) -> Result<PreparedTls, PgError> {
    let mut out = PreparedTls::plain(user);
    if let Some(tls) = client_tls(user, home_dir().as_deref())? {
        let config = tls.client_config().map_err(|e| bad(user, e))?;
        out.config = Some(Arc::new(config));
        out.strict = !matches!(
            user.options.get("sslmode").map(String::as_str),
            None | Some("" | "allow" | "prefer")
        );
    }
    Ok(out)
}

/// The tokio-postgres settings of `user` for `host` and the TLS connector to pass to
/// `connect`, the files read now (pghactl's connections).
pub fn configure(
    cfg: &mut tokio_postgres::Config,
    user: &PgUser,
    host: &str,
) -> Result<PgTlsConnect, PgError> {
    // A unix socket never uses TLS: its files do not matter.
    let prepared = if host.starts_with('/') {
        PreparedTls::plain(user)
    } else {
        prepare(user)?
    };
    Ok(prepared.apply(cfg, host))
}

/// tokio-postgres's TLS hook over rustls; `None` goes with `sslmode=disable` only.
#[derive(Clone)]
pub struct PgTlsConnect(Option<Arc<ClientConfig>>);

impl<S> MakeTlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnector;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnector, io::Error> {
        // tokio-postgres asks for a connector for every host, a unix socket's directory too;
        // without TLS the name is never used. With TLS it matters only to verify-full (an
        // address is checked against IP SANs).
        let name = match &self.0 {
            None => ServerName::try_from("localhost").expect("a valid DNS name"),
            Some(_) => ServerName::try_from(domain.to_string())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        };
        Ok(PgTlsConnector {
            config: self.0.clone(),
            name,
        })
    }
}

pub struct PgTlsConnector {
    config: Option<Arc<ClientConfig>>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for PgTlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let config = self
                .config
                .ok_or_else(|| io::Error::other("TLS is not configured"))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(self.name, stream)
                .await?;
            Ok(PgTlsStream(tls))
        })
    }
}

pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, conn) = self.0.get_ref();
        conn.peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| pgha_tls::pg::server_end_point(c))
            .map(ChannelBinding::tls_server_end_point)
            .unwrap_or_else(ChannelBinding::none)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// The connection options libpq reads from the environment (`PGSSLMODE`, `PGSSLROOTCERT`,
/// ...), as `sslmode`, `sslrootcert`, ...: what pghactl's connections take, as psql's do.
pub fn options_from_env(env: &dyn Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
    const VARS: &[(&str, &str)] = &[
        ("PGSSLMODE", "sslmode"),
        ("PGSSLCERT", "sslcert"),
        ("PGSSLKEY", "sslkey"),
        ("PGSSLROOTCERT", "sslrootcert"),
        ("PGSSLCRL", "sslcrl"),
        ("PGSSLCRLDIR", "sslcrldir"),
        ("PGSSLNEGOTIATION", "sslnegotiation"),
        ("PGGSSENCMODE", "gssencmode"),
        ("PGCHANNELBINDING", "channel_binding"),
    ];
    VARS.iter()
        .filter_map(|(var, key)| Some((key.to_string(), env(var).filter(|v| !v.is_empty())?)))
        .collect()
}

/// The libpq connection options of `user` that go into a connection string (primary_conninfo,
/// pg_basebackup, pg_rewind), in Patroni's order, those the server's libpq (`major`) does not
/// know left out. `sslmode`, `gssencmode` and `channel_binding` default to `prefer` as
/// Patroni writes them.
pub fn conninfo_options(user: &PgUser, major: u32, defaults: bool) -> Vec<(String, String)> {
    const KEYS: &[(&str, u32)] = &[
        ("sslmode", 0),
        ("sslcert", 0),
        ("sslkey", 0),
        ("sslpassword", 13),
        ("sslrootcert", 0),
        ("sslcrl", 0),
        ("sslcrldir", 14),
        ("sslnegotiation", 17),
        ("gssencmode", 12),
        ("channel_binding", 13),
    ];
    let mut out = Vec::new();
    for (key, since) in KEYS {
        if major != 0 && major < *since {
            continue;
        }
        let value = user.options.get(*key).filter(|v| !v.is_empty()).cloned();
        let value = match (value, defaults) {
            (Some(v), _) => v,
            (None, true) if matches!(*key, "sslmode" | "gssencmode" | "channel_binding") => {
                "prefer".to_string()
            }
            (None, _) => continue,
        };
        out.push((key.to_string(), value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(opts: &[(&str, &str)]) -> PgUser {
        crate::test_support::user_with("rep", opts)
    }

    #[test]
    fn modes_as_libpq() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let ca_s = ca.display().to_string();
        let home = tempfile::tempdir().unwrap();
        let h = Some(home.path());
        assert_eq!(
            client_tls(&user(&[("sslmode", "disable")]), h).unwrap(),
            None
        );
        let t = client_tls(&user(&[]), h).unwrap().unwrap();
        assert_eq!(t.check, ServerCheck::None);
        let t = client_tls(&user(&[("sslmode", "require")]), h)
            .unwrap()
            .unwrap();
        assert_eq!(t.check, ServerCheck::None);
        let t = client_tls(&user(&[("sslmode", "require"), ("sslrootcert", &ca_s)]), h)
            .unwrap()
            .unwrap();
        assert_eq!(t.check, ServerCheck::Chain);
        let t = client_tls(
            &user(&[("sslmode", "verify-ca"), ("sslrootcert", &ca_s)]),
            h,
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.check, ServerCheck::Chain);
        let t = client_tls(
            &user(&[("sslmode", "verify-full"), ("sslrootcert", &ca_s)]),
            h,
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.check, ServerCheck::ChainAndName);
        let e = client_tls(&user(&[("sslmode", "verify-ca")]), h)
            .unwrap_err()
            .to_string();
        assert!(e.contains("root.crt") && e.contains("sslrootcert"), "{e}");
        // libpq's default root certificate.
        std::fs::create_dir(home.path().join(".postgresql")).unwrap();
        std::fs::write(home.path().join(".postgresql/root.crt"), "x").unwrap();
        let t = client_tls(&user(&[("sslmode", "verify-full")]), h)
            .unwrap()
            .unwrap();
        assert_eq!(t.check, ServerCheck::ChainAndName);
        let e = client_tls(&user(&[("sslmode", "verify_ca")]), h)
            .unwrap_err()
            .to_string();
        assert!(e.contains("verify_ca"), "{e}");
    }

    #[test]
    fn libpq_environment() {
        let env = |k: &str| match k {
            "PGSSLMODE" => Some("verify-ca".to_string()),
            "PGSSLROOTCERT" => Some("/ca.pem".to_string()),
            "PGSSLCERT" => Some(String::new()),
            _ => None,
        };
        let got = options_from_env(&env);
        assert_eq!(got.len(), 2);
        assert_eq!(got["sslmode"], "verify-ca");
        assert_eq!(got["sslrootcert"], "/ca.pem");
    }

    #[test]
    fn missing_client_certificate_is_named() {
        let e = client_tls(
            &user(&[("sslmode", "require"), ("sslcert", "/nonexistent/rep.crt")]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sslcert /nonexistent/rep.crt"), "{e}");
        assert!(e.contains("rep"), "{e}");
    }

    #[test]
    fn conninfo_options_in_order_and_by_version() {
        let u = user(&[
            ("channel_binding", "require"),
            ("sslmode", "verify-ca"),
            ("sslrootcert", "/ca.pem"),
            ("sslcrldir", "/crl"),
            ("sslnegotiation", "direct"),
        ]);
        let got: Vec<String> = conninfo_options(&u, 15, true)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            got,
            [
                "sslmode=verify-ca",
                "sslrootcert=/ca.pem",
                "sslcrldir=/crl",
                "gssencmode=prefer",
                "channel_binding=require"
            ]
        );
        assert_eq!(conninfo_options(&user(&[]), 15, false), vec![]);
    }
}
