//! Serving the REST API over plain HTTP or HTTPS (`restapi.certfile`). With
//! `verify_client: optional` rustls accepts clients without a certificate, and, as with
//! Patroni, the unsafe methods (POST, PUT, PATCH, DELETE) then need one: a per-connection flag
//! set after the handshake tells the middleware whether a verified certificate was presented.

use std::io;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Layer;
use tracing::error;

/// Whether this connection presented a client certificate (rustls verified it).
#[derive(Debug, Clone, Copy)]
struct ClientCert(bool);

#[derive(Clone)]
struct FlagClientCert(RustlsAcceptor);

impl<I, S> Accept<I, S> for FlagClientCert
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = <RustlsAcceptor as Accept<I, S>>::Stream;
    type Service = <Extension<ClientCert> as Layer<S>>::Service;
    type Future = BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let acceptor = self.0.clone();
        Box::pin(async move {
            let (stream, service) = acceptor.accept(stream, service).await?;
            let has = stream
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            Ok((stream, Extension(ClientCert(has)).layer(service)))
        })
    }
}

async fn unsafe_needs_certificate(
    cert: Option<Extension<ClientCert>>,
    req: Request,
    next: Next,
) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !cert.is_some_and(|Extension(ClientCert(c))| c) {
        return (StatusCode::FORBIDDEN, "client certificate required").into_response();
    }
    next.run(req).await
}

/// Serves `app` on `listener` in the background: HTTPS with `tls`, plain HTTP without. The
/// handle of an HTTPS server swaps its certificate for new connections.
pub fn spawn(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<(rustls::ServerConfig, pgha_tls::VerifyClient)>,
) -> io::Result<Option<RustlsConfig>> {
    let Some((config, verify)) = tls else {
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                error!("REST API server stopped: {e}");
            }
        });
        return Ok(None);
    };
    let listener = listener.into_std()?;
    let handle = RustlsConfig::from_config(Arc::new(config));
    let acceptor = FlagClientCert(RustlsAcceptor::new(handle.clone()));
    let app = if verify == pgha_tls::VerifyClient::Optional {
        app.layer(middleware::from_fn(unsafe_needs_certificate))
    } else {
        app
    };
    tokio::spawn(async move {
        let server = axum_server::from_tcp(listener).acceptor(acceptor);
        if let Err(e) = server.serve(app.into_make_service()).await {
            error!("REST API server stopped: {e}");
        }
    });
    Ok(Some(handle))
}

/// SIGHUP: the REST API's certificate, key and CA are read again (a renewed certificate is
/// served to new connections without a restart); files that do not load leave the previous
/// ones in place, with the reason logged.
pub fn reload_on_sighup(handle: RustlsConfig, tls: pgha_tls::ServerTls) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reload(&handle, &tls);
        }
    });
}

fn reload(handle: &RustlsConfig, tls: &pgha_tls::ServerTls) {
    match tls.server_config() {
        Ok(c) => {
            handle.reload_from_config(Arc::new(c));
            tracing::info!(
                "REST API certificate reloaded from {}",
                tls.cert_file.display()
            );
        }
        Err(e) => {
            tracing::warn!("REST API certificate not reloaded, keeping the current one: {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use pgha_tls::test_ca::TestCa;
    use pgha_tls::{ClientTls, ServerTls, VerifyClient};

    /// verify_client optional: reads without a certificate, writes only with one; required:
    /// no request at all without one.
    #[tokio::test]
    async fn client_certificate_modes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = TestCa::new("test CA");
        ca.write(&d.join("ca.pem")).unwrap();
        let (cert, key) = ca.issue(d, "node", &["127.0.0.1"]).unwrap();
        let app =
            || Router::new().route("/patroni", get(|| async { "ok" }).post(|| async { "done" }));
        let serve = |verify| {
            let server = ServerTls {
                cert_file: cert.clone(),
                key_file: Some(key.clone()),
                key_password: None,
                ca_file: Some(d.join("ca.pem")),
                verify_client: verify,
                ciphers: None,
            };
            let config = server.server_config().unwrap();
            let app = app();
            async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let port = l.local_addr().unwrap().port();
                spawn(l, app, Some((config, verify))).unwrap();
                format!("https://127.0.0.1:{port}/patroni")
            }
        };
        let client = |with_cert: bool| {
            let tls = ClientTls {
                ca_file: Some(d.join("ca.pem")),
                cert_file: with_cert.then(|| cert.clone()),
                key_file: with_cert.then(|| key.clone()),
                ..Default::default()
            };
            crate::peers::http_client(&tls, std::time::Duration::from_secs(5)).unwrap()
        };
        let (anon, named) = (client(false), client(true));

        let url = serve(VerifyClient::Optional).await;
        assert_eq!(anon.get(&url).send().await.unwrap().status(), 200);
        let r = anon.post(&url).send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.text().await.unwrap(), "client certificate required");
        assert_eq!(named.post(&url).send().await.unwrap().status(), 200);

        let url = serve(VerifyClient::Required).await;
        assert!(anon.get(&url).send().await.is_err());
        assert_eq!(named.get(&url).send().await.unwrap().status(), 200);
        assert_eq!(named.post(&url).send().await.unwrap().status(), 200);
    }

    /// A certificate renewed in place (here: by another CA) is served after a reload; a broken
    /// file leaves the current one serving.
    #[tokio::test]
    async fn reload_swaps_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (old, new) = (TestCa::new("old CA"), TestCa::new("new CA"));
        old.write(&d.join("old.pem")).unwrap();
        new.write(&d.join("new.pem")).unwrap();
        let (cert, key) = old.issue(d, "node", &["127.0.0.1"]).unwrap();
        let tls = ServerTls {
            cert_file: cert.clone(),
            key_file: Some(key.clone()),
            key_password: None,
            ca_file: None,
            verify_client: VerifyClient::None,
            ciphers: None,
        };
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://127.0.0.1:{}/", l.local_addr().unwrap().port());
        let app = Router::new().route("/", get(|| async { "ok" }));
        let handle = spawn(
            l,
            app,
            Some((tls.server_config().unwrap(), tls.verify_client)),
        )
        .unwrap()
        .unwrap();
        let trusting = |ca: &str| {
            let c = ClientTls {
                ca_file: Some(d.join(ca)),
                ..Default::default()
            };
            crate::peers::http_client(&c, std::time::Duration::from_secs(5)).unwrap()
        };
        assert!(trusting("old.pem").get(&url).send().await.is_ok());
        assert!(trusting("new.pem").get(&url).send().await.is_err());

        std::fs::write(&key, "broken").unwrap();
        reload(&handle, &tls);
        assert!(trusting("old.pem").get(&url).send().await.is_ok());

        new.issue(d, "node", &["127.0.0.1"]).unwrap();
        reload(&handle, &tls);
        assert!(trusting("new.pem").get(&url).send().await.is_ok());
        assert!(trusting("old.pem").get(&url).send().await.is_err());
    }
}
