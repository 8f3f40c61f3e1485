//! Reading a cluster's keys from etcd, with errors an operator can act on.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Result};
use pgha_dcs::{DcsError, EtcdDcs, EtcdSettings};
use pgha_types::Cluster;

use crate::config::EtcdSection;

/// How long one read (connect included) may take before pghactl gives up on etcd.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// How to reach etcd: endpoints as URLs plus optional credentials and TLS files.
#[derive(Debug, Clone, Default)]
pub struct EtcdAccess {
    pub endpoints: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl From<&EtcdSection> for EtcdAccess {
    fn from(e: &EtcdSection) -> Self {
        EtcdAccess {
            endpoints: e.endpoints(),
            username: e.username.clone(),
            password: e.password.clone(),
            ca_file: e.cacert.clone(),
            cert_file: e.cert.clone(),
            key_file: e.key.clone(),
        }
    }
}

/// A connection to one cluster's keys (`prefix` = `/service/<scope>/`), kept across redraws
/// in watch mode.
pub struct ClusterReader {
    dcs: EtcdDcs,
    endpoints: String,
}

/// The gist of a transport error: gRPC errors carry the whole source chain in Debug form.
pub(crate) fn gist(detail: &str) -> String {
    let known = [
        ("Connection refused", "connection refused"),
        ("failed to lookup address", "cannot resolve the host name"),
        ("dns error", "cannot resolve the host name"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network is unreachable"),
        ("Connection reset", "connection reset"),
        ("timed out", "timed out"),
        ("no answer within", "no answer in time"),
    ];
    known
        .iter()
        .find(|(needle, _)| detail.contains(needle))
        .map(|(_, short)| short.to_string())
        .unwrap_or_else(|| detail.to_string())
}

fn explain(endpoints: &str, e: DcsError) -> anyhow::Error {
    match e {
        DcsError::Unreachable { detail, .. } => {
            anyhow!("cannot reach etcd at {endpoints}: {}", gist(&detail))
        }
        other => anyhow!("etcd at {endpoints}: {other}"),
    }
}

impl ClusterReader {
    pub async fn connect(access: &EtcdAccess, prefix: &str) -> Result<ClusterReader> {
        let endpoints = access.endpoints.join(",");
        let settings = EtcdSettings {
            endpoints: access.endpoints.clone(),
            username: access.username.clone(),
            password: access.password.clone(),
            ca_file: access.ca_file.clone(),
            cert_file: access.cert_file.clone(),
            key_file: access.key_file.clone(),
            prefix: prefix.to_string(),
            request_timeout: REQUEST_TIMEOUT,
        };
        // The adapter bounds each request; this bounds the whole connect, whatever it does.
        let dcs = tokio::time::timeout(REQUEST_TIMEOUT * 2, EtcdDcs::connect(settings))
            .await
            .map_err(|_| anyhow!("cannot reach etcd at {endpoints}: timed out connecting"))?
            .map_err(|e| explain(&endpoints, e))?;
        Ok(ClusterReader { dcs, endpoints })
    }

    pub async fn load(&self) -> Result<Cluster> {
        tokio::time::timeout(REQUEST_TIMEOUT * 2, self.dcs.load_cluster())
            .await
            .map_err(|_| anyhow!("cannot reach etcd at {}: no answer", self.endpoints))?
            .map_err(|e| explain(&self.endpoints, e))
    }

    async fn bounded<T>(
        &self,
        what: &str,
        op: impl std::future::Future<Output = Result<T, DcsError>>,
    ) -> Result<T> {
        tokio::time::timeout(REQUEST_TIMEOUT * 2, op)
            .await
            .map_err(|_| {
                anyhow!(
                    "cannot reach etcd at {}: no answer to {what}",
                    self.endpoints
                )
            })?
            .map_err(|e| explain(&self.endpoints, e))
    }
}

/// What the commands need from the DCS: the cluster, and the few writes patronictl makes
/// directly (the configuration with compare-and-set, the `failover` key, removal).
#[allow(async_fn_in_trait)]
pub trait Store {
    async fn load(&self) -> Result<Cluster>;
    /// Writes `config` if its modify revision is still `revision`; `false` when it changed.
    async fn set_config(&self, value: &str, revision: i64) -> Result<bool>;
    async fn put_key(&self, key: &str, value: &str) -> Result<()>;
    async fn delete_cluster(&self) -> Result<()>;
}

impl Store for ClusterReader {
    async fn load(&self) -> Result<Cluster> {
        ClusterReader::load(self).await
    }

    async fn set_config(&self, value: &str, revision: i64) -> Result<bool> {
        self.bounded(
            "the config write",
            self.dcs.set_config(value, Some(revision)),
        )
        .await
    }

    async fn put_key(&self, key: &str, value: &str) -> Result<()> {
        self.bounded("the write", self.dcs.put_key(key, value))
            .await
    }

    async fn delete_cluster(&self) -> Result<()> {
        self.bounded("the removal", self.dcs.delete_cluster()).await
    }
}

/// Reads every key of the cluster under `prefix` once.
pub async fn load_cluster(access: &EtcdAccess, prefix: &str) -> Result<Cluster> {
    ClusterReader::connect(access, prefix).await?.load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_errors_are_short() {
        let e = DcsError::Unreachable {
            endpoints: "x".into(),
            detail: r#"read cluster: grpc request error: ConnectError("tcp connect error", Os { code: 111, kind: ConnectionRefused, message: "Connection refused" })"#.into(),
        };
        assert_eq!(
            explain("http://127.0.0.1:1", e).to_string(),
            "cannot reach etcd at http://127.0.0.1:1: connection refused"
        );
        assert_eq!(gist("something else"), "something else");
    }
}
