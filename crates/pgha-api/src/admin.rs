//! The seam between the REST API's unsafe endpoints and the agent. The API validates requests
//! and shapes Patroni's answers; what it needs from the outside world goes through [`Admin`]:
//! fresh DCS reads and writes, and requests that only the HA loop may carry out.

use futures::future::BoxFuture;
use pgha_types::{Cluster, Failover};

/// A request for the local HA loop; it answers with an HTTP status and Patroni's text.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalRequest {
    /// Restart postgres now (keeping the lock if leader). Conditions are checked by the loop
    /// against its current state; unmet ones answer 503 `restart conditions are not satisfied`.
    Restart {
        role: Option<String>,
        pending_only: bool,
        postgres_version: Option<String>,
        timeout: Option<u64>,
    },
    /// Remember a restart for later (`schedule` is ISO 8601 with a time zone); 409 if one is
    /// already scheduled.
    ScheduleRestart {
        schedule: String,
        role: Option<String>,
        pending_only: bool,
        postgres_version: Option<String>,
        timeout: Option<u64>,
        /// The request as Patroni keeps it and shows it (`scheduled_restart` of `GET /patroni`
        /// and of the member key): every key in the order sent, `schedule` normalised,
        /// `timeout` in seconds.
        details: serde_json::Map<String, serde_json::Value>,
    },
    /// 200 `scheduled restart deleted` / 404 `no restarts are scheduled`.
    CancelScheduledRestart,
    /// Re-read the local configuration and reload postgres (same as SIGHUP): 202 `reload scheduled`.
    Reload,
    /// Rebuild this replica from the leader: 200 `reinitialize started`, 503 with the reason
    /// (`I am the leader, can not reinitialize`, ...).
    Reinitialize { force: bool, from_leader: bool },
}

/// The local WAL positions at this moment, for `GET /patroni` (see [`Admin::wal_positions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalPositions {
    pub in_recovery: bool,
    /// Primary: `pg_current_wal_lsn()`.
    pub location: Option<u64>,
    /// Standby: received and replayed positions.
    pub received: Option<u64>,
    pub replayed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAnswer {
    pub status: u16,
    pub text: String,
}

/// What the unsafe endpoints need from the agent. Errors are one-line texts for a 503/502.
pub trait Admin: Send + Sync + 'static {
    /// A fresh read of the cluster from the DCS (not the published snapshot).
    fn load_cluster(&self) -> BoxFuture<'_, Result<Cluster, String>>;
    /// Writes the `failover` key; `None` empties it (`{}`), as Patroni leaves it.
    fn write_failover(&self, value: Option<Failover>) -> BoxFuture<'_, Result<(), String>>;
    /// Writes the `config` key; with `expected_revision` only if unchanged since (false = lost).
    fn write_config(
        &self,
        value: String,
        expected_revision: Option<i64>,
    ) -> BoxFuture<'_, Result<bool, String>>;
    /// Hands a request to the HA loop and waits for its answer.
    fn local(&self, request: LocalRequest) -> BoxFuture<'_, LocalAnswer>;
    /// The dynamic `loop_wait`, for polling intervals.
    fn loop_wait(&self) -> u64;
    /// The local WAL positions right now. Peers compare themselves through `GET /patroni` in
    /// a leader race, so that answer must not be a loop old; `None` (postgres cannot say
    /// quickly) keeps the published snapshot's positions.
    fn wal_positions(&self) -> BoxFuture<'_, Option<WalPositions>> {
        Box::pin(async { None })
    }
    /// Problems PostgreSQL would have with these `postgresql.parameters` (each naming its key);
    /// empty when they are fine or cannot be checked right now.
    fn check_parameters(
        &self,
        _parameters: serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async { Vec::new() })
    }
}
