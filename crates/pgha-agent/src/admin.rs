//! The agent's side of the REST API's unsafe endpoints: DCS reads and writes directly, and
//! requests that only the HA loop may carry out through a channel into the loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use pgha_api::{Admin, LocalAnswer, LocalRequest, WalPositions};
use pgha_dcs::EtcdDcs;
use pgha_types::{Cluster, Failover};
use tokio::sync::{mpsc, oneshot, Notify};

/// A request waiting for the HA loop, with the way back to the HTTP handler.
pub struct Pending {
    pub request: LocalRequest,
    pub reply: oneshot::Sender<LocalAnswer>,
}

pub struct AgentAdmin {
    pub dcs: Arc<EtcdDcs>,
    pub pg: Arc<pgha_postgres::LocalPostgres>,
    pub requests: mpsc::Sender<Pending>,
    /// Wakes the loop so a request does not wait out `loop_wait`.
    pub wake: Arc<Notify>,
    pub loop_wait: Arc<AtomicU64>,
}

impl Admin for AgentAdmin {
    fn wal_positions(&self) -> BoxFuture<'_, Option<WalPositions>> {
        Box::pin(async move {
            // Short: a peer's race probe waits for this answer.
            let w = self
                .pg
                .wal_now(std::time::Duration::from_millis(500))
                .await
                .ok()?;
            Some(WalPositions {
                in_recovery: w.in_recovery,
                location: w.current.map(|l| l.0),
                received: w.received.map(|l| l.0),
                replayed: w.replayed.map(|l| l.0),
            })
        })
    }

    fn load_cluster(&self) -> BoxFuture<'_, Result<Cluster, String>> {
        Box::pin(async move { self.dcs.load_cluster().await.map_err(|e| e.to_string()) })
    }

    fn write_failover(&self, value: Option<Failover>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let json =
                serde_json::to_string(&value.unwrap_or_default()).map_err(|e| e.to_string())?;
            self.dcs
                .put_key("failover", &json)
                .await
                .map_err(|e| e.to_string())?;
            self.wake.notify_one();
            Ok(())
        })
    }

    fn write_config(
        &self,
        value: String,
        expected_revision: Option<i64>,
    ) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            self.dcs
                .set_config(&value, expected_revision)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn local(&self, request: LocalRequest) -> BoxFuture<'_, LocalAnswer> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            let busy = LocalAnswer {
                status: 503,
                text: "the HA loop is not accepting requests".into(),
            };
            if self
                .requests
                .try_send(Pending { request, reply: tx })
                .is_err()
            {
                return busy;
            }
            self.wake.notify_one();
            rx.await.unwrap_or(busy)
        })
    }

    fn loop_wait(&self) -> u64 {
        self.loop_wait.load(Ordering::Relaxed)
    }

    fn check_parameters(
        &self,
        parameters: serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            match self.pg.check_parameters(&parameters).await {
                Ok(problems) => problems,
                Err(e) => {
                    // The catalogue is unavailable (postgres down): postgres itself will
                    // complain on reload, and the agent reports it then.
                    tracing::warn!("cannot check postgresql.parameters against pg_settings: {e}");
                    Vec::new()
                }
            }
        })
    }
}
