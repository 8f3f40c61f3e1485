//! Calls to the agents' REST API (Patroni-compatible endpoints), as patronictl makes them: the
//! URL is the member's `api_url` with its path replaced by the endpoint, bodies are JSON, and
//! every request carries Basic auth from `ctl.authentication` (else `restapi.authentication`).

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use pgha_types::Member;
use reqwest::Method;
use serde_json::Value;

use crate::pyfmt::json_dumps;

/// What an agent answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub text: String,
}

#[derive(Clone)]
pub struct Rest {
    client: reqwest::Client,
    auth: Option<(String, String)>,
}

/// How long one call may take. Switchover, failover and restart answer when they are done,
/// which takes a while; an unreachable host fails at connect time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// `scheme://host:port/<endpoint>` from an `api_url` such as `http://10.0.0.1:8008/patroni`.
pub fn endpoint_url(api_url: &str, endpoint: &str) -> Result<String> {
    let (scheme, rest) = api_url
        .split_once("://")
        .ok_or_else(|| anyhow!("invalid api_url {api_url:?}"))?;
    let netloc = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if netloc.is_empty() {
        bail!("invalid api_url {api_url:?}");
    }
    Ok(format!(
        "{scheme}://{netloc}/{}",
        endpoint.trim_start_matches('/')
    ))
}

/// The cause of a failed request in a few words: reqwest's errors nest the useful part deep.
fn explain(e: &reqwest::Error) -> String {
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    if chain.contains("invalid URL") || chain.contains("scheme is not http") {
        return "unsupported URL".into();
    }
    if let Some(why) = pgha_tls::explain(&format!("{chain} {e:?}")) {
        return format!("TLS: {why}");
    }
    crate::dcs::gist(&chain)
}

/// A reqwest builder with pghactl's user agent and TLS settings (`ctl.*`).
pub fn http_client(tls: &pgha_tls::ClientTls) -> Result<reqwest::ClientBuilder> {
    Ok(reqwest::Client::builder()
        .user_agent(concat!("pghactl/", env!("CARGO_PKG_VERSION")))
        .use_preconfigured_tls(tls.client_config()?))
}

impl Rest {
    #[cfg(test)]
    pub fn new(auth: Option<(String, String)>) -> Result<Rest> {
        Self::with_timeout(auth, REQUEST_TIMEOUT)
    }

    #[cfg(test)]
    pub fn with_timeout(auth: Option<(String, String)>, timeout: Duration) -> Result<Rest> {
        Self::with_tls(auth, &pgha_tls::ClientTls::default(), timeout)
    }

    /// A client for http and https agents; the TLS files are read and checked now.
    pub fn with_tls(
        auth: Option<(String, String)>,
        tls: &pgha_tls::ClientTls,
        timeout: Duration,
    ) -> Result<Rest> {
        let client = http_client(tls)?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .build()?;
        Ok(Rest { client, auth })
    }

    /// `method /endpoint` on `member`. Any HTTP answer is a [`Reply`]; not getting one (no
    /// `api_url`, connection refused, timeout) is an error naming the member.
    pub async fn call(
        &self,
        member: &Member,
        method: Method,
        endpoint: &str,
        body: Option<&Value>,
    ) -> Result<Reply> {
        let api_url = member
            .data
            .api_url
            .as_deref()
            .ok_or_else(|| anyhow!("member {} publishes no api_url", member.name))?;
        let url = endpoint_url(api_url, endpoint)?;
        let mut req = self.client.request(method, &url);
        if let Some((user, password)) = &self.auth {
            req = req.basic_auth(user, Some(password));
        }
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json_dumps(body));
        }
        let resp = req.send().await.map_err(|e| {
            anyhow!(
                "cannot reach member {} at {url}: {}",
                member.name,
                explain(&e)
            )
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| anyhow!("member {} at {url}: {}", member.name, explain(&e)))?;
        Ok(Reply { status, text })
    }

    /// `GET /patroni` as JSON.
    pub async fn status(&self, member: &Member) -> Result<Value> {
        let reply = self.call(member, Method::GET, "patroni", None).await?;
        serde_json::from_str(&reply.text)
            .map_err(|e| anyhow!("member {}: /patroni is not JSON ({e})", member.name))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method as AxMethod, StatusCode, Uri};
    use axum::Router;

    /// One request a stub agent received: method, path, Authorization header, body.
    pub type Seen = Arc<Mutex<Vec<(String, String, Option<String>, String)>>>;

    /// A tiny agent answering every request with `answer(method, path, body)`; returns its
    /// `api_url` and the log of requests.
    pub async fn stub_agent(
        answer: impl Fn(&str, &str, &str) -> (u16, String) + Clone + Send + Sync + 'static,
    ) -> (String, Seen) {
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let app = Router::new().fallback(
            move |method: AxMethod, uri: Uri, headers: HeaderMap, body: Bytes| {
                let answer = answer.clone();
                let log = log.clone();
                async move {
                    let body = String::from_utf8_lossy(&body).into_owned();
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    log.lock().unwrap().push((
                        method.to_string(),
                        uri.path().to_string(),
                        auth,
                        body.clone(),
                    ));
                    let (code, text) = answer(method.as_str(), uri.path(), &body);
                    (StatusCode::from_u16(code).unwrap(), text)
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}/patroni"), seen)
    }

    pub fn member(name: &str, api_url: &str) -> Member {
        let data = format!(
            r#"{{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"{api_url}","state":"running","role":"replica"}}"#
        );
        Member::parse(name, &data, 0).0
    }

    #[test]
    fn endpoint_urls() {
        assert_eq!(
            endpoint_url("http://10.0.0.1:8008/patroni", "switchover").unwrap(),
            "http://10.0.0.1:8008/switchover"
        );
        assert_eq!(
            endpoint_url("https://h:1", "/restart").unwrap(),
            "https://h:1/restart"
        );
        assert!(endpoint_url("nonsense", "x").is_err());
    }

    #[tokio::test]
    async fn sends_json_and_basic_auth() {
        let (url, seen) = stub_agent(|_, _, _| (200, "ok".into())).await;
        let rest = Rest::new(Some(("admin".into(), "secret".into()))).unwrap();
        let m = member("n1", &url);
        let reply = rest
            .call(
                &m,
                Method::POST,
                "restart",
                Some(&serde_json::json!({"a": 1})),
            )
            .await
            .unwrap();
        assert_eq!(
            reply,
            Reply {
                status: 200,
                text: "ok".into()
            }
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].0, "POST");
        assert_eq!(seen[0].1, "/restart");
        assert_eq!(seen[0].2.as_deref(), Some("Basic YWRtaW46c2VjcmV0"));
        assert_eq!(seen[0].3, r#"{"a": 1}"#);
    }

    #[tokio::test]
    async fn unreachable_member_is_one_line() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let rest = Rest::new(None).unwrap();
        let m = member("n1", &format!("http://127.0.0.1:{port}/patroni"));
        let err = rest
            .call(&m, Method::GET, "patroni", None)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot reach member n1 at http://127.0.0.1:{port}/patroni: connection refused"
            )
        );
    }
}
