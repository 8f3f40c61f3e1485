//! Serving the REST API over plain HTTP or HTTPS (`restapi.certfile`). Every request carries
//! the client's address (`ConnectInfo`, for `restapi.allowlist`) and, over HTTPS, whether the
//! connection presented a verified client certificate ([`pgha_api::ClientCertificate`], for
//! `verify_client: optional`): the API decides what needs them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::{Extension, Router};
use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use futures::future::BoxFuture;
use pgha_api::ClientCertificate;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Layer;
use tracing::error;

#[derive(Clone)]
struct FlagClientCert(RustlsAcceptor);

impl<I, S> Accept<I, S> for FlagClientCert
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = <RustlsAcceptor as Accept<I, S>>::Stream;
    type Service = <Extension<ClientCertificate> as Layer<S>>::Service;
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
            Ok((stream, Extension(ClientCertificate(has)).layer(service)))
        })
    }
}

/// Serves `app` on `listener` in the background: HTTPS with `tls`, plain HTTP without. The
/// handle of an HTTPS server swaps its certificate for new connections.
pub fn spawn(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<rustls::ServerConfig>,
) -> io::Result<Option<RustlsConfig>> {
    let Some(config) = tls else {
        tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, service).await {
                error!("REST API server stopped: {e}");
            }
        });
        return Ok(None);
    };
    let listener = listener.into_std()?;
    let handle = RustlsConfig::from_config(Arc::new(config));
    let acceptor = FlagClientCert(RustlsAcceptor::new(handle.clone()));
    tokio::spawn(async move {
        let server = axum_server::from_tcp(listener).acceptor(acceptor);
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = server.serve(service).await {
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
    use pgha_api::{Access, ApiState, NodeStatus};
    use pgha_tls::test_ca::TestCa;
    use pgha_tls::{ClientTls, ServerTls, VerifyClient};
    use std::net::IpAddr;
    use std::time::Duration;

    /// pgha's REST API over `status`, with `access` and `headers`.
    fn api(status: NodeStatus, access: Access, headers: &[(&str, &str)]) -> Router {
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(status));
        // The API reads the channel for as long as the test runs.
        std::mem::forget(tx);
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        pgha_api::router(
            ApiState::new(rx, None)
                .with_access(access)
                .with_extra_headers(&headers)
                .unwrap(),
        )
    }

    async fn serve(app: Router, tls: Option<rustls::ServerConfig>) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        spawn(l, app, tls).unwrap();
        format!("{scheme}://127.0.0.1:{port}")
    }

    /// A plain HTTP client whose connections come from `source`.
    fn client_from(source: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .local_address(source.parse::<IpAddr>().unwrap())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    async fn answer(r: reqwest::RequestBuilder) -> (u16, String) {
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// verify_client optional: reads without a certificate, writes only with one; required:
    /// no request at all without one. `https_extra_headers` reach the client over TLS.
    #[tokio::test]
    async fn client_certificate_modes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = TestCa::new("test CA");
        ca.write(&d.join("ca.pem")).unwrap();
        let (cert, key) = ca.issue(d, "node", &["127.0.0.1"]).unwrap();
        let start = |verify| {
            let server = ServerTls {
                cert_file: cert.clone(),
                key_file: Some(key.clone()),
                key_password: None,
                ca_file: Some(d.join("ca.pem")),
                verify_client: verify,
                ciphers: None,
            };
            let access = Access {
                client_certificate: verify != VerifyClient::None,
                ..Access::default()
            };
            let app = api(
                NodeStatus::default(),
                access,
                &[("Strict-Transport-Security", "max-age=31536000")],
            );
            serve(app, Some(server.server_config().unwrap()))
        };
        let client = |with_cert: bool| {
            let tls = ClientTls {
                ca_file: Some(d.join("ca.pem")),
                cert_file: with_cert.then(|| cert.clone()),
                key_file: with_cert.then(|| key.clone()),
                ..Default::default()
            };
            crate::peers::http_client(&tls, Duration::from_secs(5)).unwrap()
        };
        let (anon, named) = (client(false), client(true));

        let base = start(VerifyClient::Optional).await;
        let read = anon.get(format!("{base}/liveness")).send().await.unwrap();
        assert_eq!(read.status(), 200);
        assert_eq!(
            read.headers()["strict-transport-security"],
            "max-age=31536000"
        );
        assert_eq!(
            answer(anon.post(format!("{base}/reload"))).await,
            (403, "client certificate required".into())
        );
        // Past the checks: this test API has no agent behind it.
        assert_eq!(answer(named.post(format!("{base}/reload"))).await.0, 503);

        let base = start(VerifyClient::Required).await;
        assert!(anon.get(format!("{base}/liveness")).send().await.is_err());
        assert_eq!(answer(named.get(format!("{base}/liveness"))).await.0, 200);
        assert_eq!(answer(named.post(format!("{base}/reload"))).await.0, 503);
    }

    /// `restapi.allowlist`: unsafe requests from an address outside it get 403 `Access is
    /// denied`; reads are open to all. Real connections from 127.0.0.1 and 127.0.0.2.
    #[tokio::test]
    async fn allowlist_refuses_unsafe_requests_from_other_addresses() {
        let (allowlist, failed) = Access::resolve_allowlist(&["127.0.0.1".into()]);
        assert!(failed.is_empty());
        let access = Access {
            allowlist,
            ..Access::default()
        };
        let base = serve(
            api(NodeStatus::default(), access, &[("X-Test", "yes")]),
            None,
        )
        .await;
        let (inside, outside) = (client_from("127.0.0.1"), client_from("127.0.0.2"));

        assert_eq!(answer(inside.post(format!("{base}/reload"))).await.0, 503);
        let denied = outside.post(format!("{base}/reload")).send().await.unwrap();
        assert_eq!(denied.status(), 403);
        // http_extra_headers are on every answer, refusals too.
        assert_eq!(denied.headers()["x-test"], "yes");
        assert_eq!(denied.text().await.unwrap(), "Access is denied");
        assert_eq!(
            answer(outside.patch(format!("{base}/config")).body("{}")).await,
            (403, "Access is denied".into())
        );
        let read = outside
            .get(format!("{base}/liveness"))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200);
        assert_eq!(read.headers()["x-test"], "yes");
        // An unknown unsafe request is 501 before any check, as with Patroni.
        assert_eq!(answer(outside.post(format!("{base}/nothing"))).await.0, 501);
    }

    /// `allowlist_include_members`: the hosts of the members' api_url in the DCS view may make
    /// unsafe requests; others not. `POST /failsafe` does not count the members (Patroni).
    #[tokio::test]
    async fn allowlist_include_members_admits_the_members_hosts() {
        let member = pgha_types::KeyValue {
            key: "members/n2".into(),
            value: r#"{"api_url":"http://127.0.0.2:8008/patroni","conn_url":"postgres://127.0.0.2:5432/postgres"}"#.into(),
            lease: 0,
            mod_revision: 1,
        };
        let status = NodeStatus {
            cluster: Some(pgha_types::Cluster::from_keys(&[member])),
            ..NodeStatus::default()
        };
        let (member, stranger) = (client_from("127.0.0.2"), client_from("127.0.0.1"));

        let only_members = Access {
            include_members: true,
            ..Access::default()
        };
        let base = serve(api(status.clone(), only_members, &[]), None).await;
        assert_eq!(answer(member.post(format!("{base}/reload"))).await.0, 503);
        assert_eq!(
            answer(stranger.post(format!("{base}/reload"))).await,
            (403, "Access is denied".into())
        );
        // No allowlist and the members not counted for failsafe: nothing is checked (502:
        // failsafe mode is off).
        let ping = r#"{"name":"n1"}"#;
        let failsafe = |c: &reqwest::Client| c.post(format!("{base}/failsafe")).body(ping);
        assert_eq!(answer(failsafe(&stranger)).await.0, 502);

        let (allowlist, _) = Access::resolve_allowlist(&["127.0.0.1".into()]);
        let both = Access {
            allowlist,
            include_members: true,
            ..Access::default()
        };
        let base = serve(api(status, both, &[]), None).await;
        assert_eq!(answer(member.post(format!("{base}/reload"))).await.0, 503);
        assert_eq!(answer(stranger.post(format!("{base}/reload"))).await.0, 503);
        let failsafe = |c: &reqwest::Client| c.post(format!("{base}/failsafe")).body(ping);
        assert_eq!(answer(failsafe(&member)).await.0, 403);
        assert_eq!(answer(failsafe(&stranger)).await.0, 502);
    }

    /// `restapi.ciphers` over a real connection: a client offering only a TLS 1.2 suite the
    /// string leaves out is refused; one offering a selected suite is served.
    #[tokio::test]
    async fn ciphers_refuse_a_client_offering_only_an_excluded_suite() {
        use rustls::crypto::ring::cipher_suite as cs;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = TestCa::new("test CA");
        ca.write(&d.join("ca.pem")).unwrap();
        let (cert, key) = ca.issue(d, "node", &["127.0.0.1"]).unwrap();
        let server = ServerTls {
            cert_file: cert,
            key_file: Some(key),
            key_password: None,
            ca_file: None,
            verify_client: VerifyClient::None,
            ciphers: Some("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384".into()),
        };
        let app = api(NodeStatus::default(), Access::default(), &[]);
        let base = serve(app, Some(server.server_config().unwrap())).await;
        let offering = |suite| {
            #[allow(deprecated)]
            let provider = rustls::crypto::CryptoProvider {
                cipher_suites: vec![suite],
                ..rustls::crypto::ring::default_provider()
            };
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .with_root_certificates(pgha_tls::load_roots(&d.join("ca.pem")).unwrap())
                .with_no_client_auth();
            reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap()
        };
        let url = format!("{base}/liveness");
        let ok = offering(cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384);
        assert_eq!(ok.get(&url).send().await.unwrap().status(), 200);
        let refused = offering(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
        let e = refused.get(&url).send().await.unwrap_err();
        assert!(format!("{e:?}").contains("HandshakeFailure"), "{e:?}");
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
        let handle = spawn(l, app, Some(tls.server_config().unwrap()))
            .unwrap()
            .unwrap();
        let trusting = |ca: &str| {
            let c = ClientTls {
                ca_file: Some(d.join(ca)),
                ..Default::default()
            };
            crate::peers::http_client(&c, Duration::from_secs(5)).unwrap()
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
