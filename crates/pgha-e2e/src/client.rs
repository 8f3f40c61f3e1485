//! Blocking SQL (tokio-postgres) and REST (reqwest) clients for the scenarios, driven by one
//! process-wide tokio runtime so test code stays synchronous and can poll in plain closures.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::runtime::Runtime;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use crate::config::superuser_conninfo_via;

const SQL_TIMEOUT: Duration = Duration::from_secs(10);
const REST_TIMEOUT: Duration = Duration::from_secs(2);

pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("pgha-e2e-io")
            .build()
            .expect("build the harness's tokio runtime")
    })
}

fn http() -> &'static reqwest::Client {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(REST_TIMEOUT)
            .connect_timeout(REST_TIMEOUT)
            // Agents come and go on the same port: never reuse a pooled connection.
            .pool_max_idle_per_host(0)
            .build()
            .expect("build the HTTP client")
    })
}

/// Rows of a simple query as text (`None` = SQL NULL).
pub type Rows = Vec<Vec<Option<String>>>;

pub fn collect_rows(msgs: Vec<SimpleQueryMessage>) -> Rows {
    msgs.into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// An open superuser connection; every call is bounded by a timeout.
pub struct PgConn {
    client: tokio_postgres::Client,
    port: u16,
}

impl PgConn {
    pub fn query(&self, sql: &str) -> Result<Rows> {
        let fut = self.client.simple_query(sql);
        let msgs = runtime()
            .block_on(async { tokio::time::timeout(SQL_TIMEOUT, fut).await })
            .map_err(|_| {
                anyhow!(
                    "query on port {} timed out after {SQL_TIMEOUT:?}: {sql}",
                    self.port
                )
            })?
            .with_context(|| format!("query on port {}: {sql}", self.port))?;
        Ok(collect_rows(msgs))
    }

    /// Like `query`, giving up (and so never seeing a commit acknowledged) after `limit`.
    pub fn query_within(&self, sql: &str, limit: Duration) -> Result<Rows> {
        let fut = self.client.simple_query(sql);
        let msgs = runtime()
            .block_on(async { tokio::time::timeout(limit, fut).await })
            .map_err(|_| anyhow!("query on port {} timed out after {limit:?}", self.port))?
            .with_context(|| format!("query on port {}: {sql}", self.port))?;
        Ok(collect_rows(msgs))
    }

    /// Executes a statement; the value of the first column of the first row, if any.
    pub fn one(&self, sql: &str) -> Result<Option<String>> {
        Ok(self
            .query(sql)?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten()))
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// Where one node's PostgreSQL listens; cheap to clone into a background thread.
#[derive(Debug, Clone)]
pub struct PgEndpoint {
    pub name: String,
    pub port: u16,
    /// Connect through this unix socket directory instead of 127.0.0.1 (clusters whose TCP
    /// rules want TLS client certificates).
    pub socket_dir: Option<std::path::PathBuf>,
}

impl PgEndpoint {
    pub fn connect(&self) -> Result<PgConn> {
        let host = match &self.socket_dir {
            Some(d) => d.display().to_string(),
            None => "127.0.0.1".to_string(),
        };
        let conninfo = superuser_conninfo_via(&host, self.port);
        let (client, conn) = runtime()
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio_postgres::connect(&conninfo, NoTls),
                )
                .await
            })
            .map_err(|_| anyhow!("connect to {} (port {}) timed out", self.name, self.port))?
            .with_context(|| format!("connect to {} (port {})", self.name, self.port))?;
        runtime().spawn(async move {
            let _ = conn.await;
        });
        Ok(PgConn {
            client,
            port: self.port,
        })
    }

    /// One query on a fresh connection.
    pub fn sql(&self, sql: &str) -> Result<Rows> {
        self.connect()?.query(sql)
    }

    /// First column of the first row on a fresh connection.
    pub fn sql_one(&self, sql: &str) -> Result<Option<String>> {
        self.connect()?.one(sql)
    }

    /// `pg_is_in_recovery()`.
    pub fn in_recovery(&self) -> Result<bool> {
        Ok(self.sql_one("SELECT pg_is_in_recovery()")?.as_deref() == Some("t"))
    }
}

/// Where one node's REST API listens.
#[derive(Debug, Clone)]
pub struct RestEndpoint {
    pub name: String,
    pub port: u16,
}

impl RestEndpoint {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// GET with a 2 s timeout: (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        let url = self.url(path);
        runtime().block_on(async {
            let resp = http()
                .get(&url)
                .send()
                .await
                .with_context(|| format!("GET {url}"))?;
            let status = resp.status().as_u16();
            let body = resp
                .text()
                .await
                .with_context(|| format!("read body of GET {url}"))?;
            Ok((status, body))
        })
    }

    /// POST `body` (with Basic auth when `auth` is given): (status, body).
    pub fn post(
        &self,
        path: &str,
        body: &str,
        auth: Option<(&str, &str)>,
    ) -> Result<(u16, String)> {
        let url = self.url(path);
        runtime().block_on(async {
            let mut req = http().post(&url).body(body.to_string());
            if let Some((user, password)) = auth {
                req = req.basic_auth(user, Some(password));
            }
            let resp = req.send().await.with_context(|| format!("POST {url}"))?;
            let status = resp.status().as_u16();
            let text = resp
                .text()
                .await
                .with_context(|| format!("read body of POST {url}"))?;
            Ok((status, text))
        })
    }

    /// GET and parse the body as JSON, whatever the status.
    pub fn get_json(&self, path: &str) -> Result<(u16, serde_json::Value)> {
        let (status, body) = self.get(path)?;
        let v = serde_json::from_str(&body)
            .with_context(|| format!("GET {path} -> {status}: body is not JSON: {body}"))?;
        Ok((status, v))
    }
}
