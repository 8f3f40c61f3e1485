//! The agent's REST API, compatible with Patroni 4.1.5 (`patroni/api.py`'s observable behaviour).
//!
//! Every read endpoint answers from the [`NodeStatus`] the HA loop publishes after each cycle
//! through a `tokio::sync::watch` channel: no health check runs a postgres query or a DCS read,
//! so HAProxy polling never slows the loop and a stuck postgres or DCS never hangs the API.
//! Handlers clone an `Arc` out of the channel and format it; only `GET /patroni`, which peers
//! read in a leader race, first asks postgres for its WAL positions (bounded, see
//! [`Admin::wal_positions`]).
//!
//! Routing follows Patroni: the first path segment selects a named handler (`/patroni`,
//! `/cluster`, `/history`, `/config`, `/failsafe`, `/metrics`, `/liveness`, `/readiness`); every
//! other `GET` path, and every `HEAD` / `OPTIONS` request whatever the path, is a health check
//! routed by substring (see [`health`]). Unsafe methods go through [`ops`] after the Basic-auth
//! check of [`auth`].

mod access;
mod admin;
mod auth;
mod cluster_json;
mod failsafe;
mod health;
mod lag;
mod metrics;
mod ops;
mod query;
mod router;
mod status_json;
mod view;
mod wire;

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use access::{Access, ClientCertificate, Network};
pub use admin::{Admin, LocalAnswer, LocalRequest, WalPositions};
pub use cluster_json::cluster_json;
pub use failsafe::{FailsafeMemory, FailsafePing};
pub use lag::parse_lag;
pub use metrics::metrics_text;
pub use ops::Operation;
pub use router::router;
pub use status_json::patroni_json;
pub use wire::to_python_json;

pub use pgha_types::Cluster;

/// What the HA loop knows about this node after its last cycle. The REST API answers from the
/// latest value only.
#[derive(Debug, Clone, Default)]
pub struct NodeStatus {
    pub scope: String,
    pub name: String,
    /// Postgres state as Patroni names it: `running`, `stopped`, `starting`, `restarting`,
    /// `crashed`, `creating replica`, ... An empty string is shown as `unknown`.
    pub state: String,
    /// `creating replica` with pg_basebackup: how far it is, in percent.
    pub basebackup_progress: Option<u8>,
    /// `primary` | `replica` (or `standby_leader`), as last known.
    pub role: Option<String>,
    /// This node held the leader lock as of the last HA cycle. Like Patroni's `is_leader()`, the
    /// claim lapses `ttl` seconds after the last completed cycle (`loop_heartbeat`).
    pub is_leader: bool,
    /// `pg_postmaster_start_time()` as Patroni prints it: `2026-11-22 01:58:08.202807+00:00`.
    pub postmaster_start_time: Option<String>,
    /// e.g. 150018.
    pub server_version: Option<u32>,
    pub timeline: Option<u32>,
    /// Primary: flush position.
    pub xlog_location: Option<u64>,
    /// Replica: received (or written) position.
    pub received_location: Option<u64>,
    /// Replica: replayed position.
    pub replayed_location: Option<u64>,
    /// Replica: `pg_last_xact_replay_timestamp()` formatted like `postmaster_start_time`.
    pub replayed_timestamp: Option<String>,
    /// Replica: `pg_is_wal_replay_paused()`.
    pub replay_paused: bool,
    /// Primary (or cascading replica): `pg_stat_replication` rows.
    pub replication: Vec<ReplicationInfo>,
    /// Replica: `streaming` | `in archive recovery`.
    pub replication_state: Option<String>,
    /// No leader key was seen (or the DCS was unreachable).
    pub cluster_unlocked: bool,
    /// The cluster is in maintenance mode (kept from the last DCS view while the DCS is down).
    pub pause: bool,
    pub pending_restart: bool,
    pub pending_restart_reason: Map<String, Value>,
    /// A restart scheduled with `POST /restart {"schedule": ...}`: the request's keys as sent
    /// (`schedule`, `role`, `postgres_version`, `timeout`, `restart_pending`).
    pub scheduled_restart: Option<Map<String, Value>>,
    /// Epoch seconds of the last successful DCS read.
    pub dcs_last_seen: Option<i64>,
    /// Effective member tags (`nofailover`, `noloadbalance`, custom ones).
    pub tags: Map<String, Value>,
    /// Decimal string, e.g. `7710809278050705596`.
    pub database_system_identifier: Option<String>,
    /// When the HA loop last completed a cycle. `None` means "not yet": the time the router was
    /// built is used instead, as Patroni starts its liveness clock at start-up.
    pub loop_heartbeat: Option<Instant>,
    /// The running ttl in seconds; 0 means unknown and is read as Patroni's default, 30.
    pub ttl: u64,
    /// Default `?lag` of `/readiness`, in bytes.
    pub maximum_lag_on_failover: u64,
    /// The leader's last WAL position per the DCS `status` key (for `?lag`). When `None`, the
    /// `status` optime of `cluster` is used.
    pub leader_optime: Option<u64>,
    /// Last DCS view (for `/cluster`, `/history`, `/config`, sync roles).
    pub cluster: Option<Cluster>,
    /// The last DCS read succeeded. Paths that need the DCS (`/sync`, `/async`, ...) answer 503
    /// while it is false, as Patroni does once its cluster view has gone stale.
    pub dcs_reachable: bool,
    /// pgha's own figures for `/metrics` (`pgha_*`).
    pub loop_stats: LoopStats,
    /// `watchdog.mode` is required and the watchdog cannot be used (`watchdog_failed`).
    pub watchdog_failed: bool,
    /// `failsafe_mode` of the dynamic configuration (kept from the last DCS view).
    pub failsafe_mode: bool,
    /// Failsafe mode is active: the leader runs without the DCS on its members' word, or a
    /// replica accepted a leader's `POST /failsafe` less than ttl ago.
    pub failsafe_active: bool,
    /// The `failsafe` key as last read or written, for `GET /failsafe` while the DCS is down.
    pub failsafe_key: Option<std::collections::BTreeMap<String, String>>,
    /// The leader this member last knew of (the only one whose `POST /failsafe` it accepts).
    pub known_leader: Option<String>,
    /// The leader whose PostgreSQL and REST ports both refused this member's connections in
    /// its last cycle (`GET /leader-refusing`, pgha's own).
    pub leader_refusing: Option<String>,
}

/// What the HA loop measured about itself, for the `pgha_*` metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoopStats {
    /// Duration of the last HA cycle, seconds.
    pub last_cycle_seconds: f64,
    /// Cycles run since start.
    pub cycles_total: u64,
    /// Latency of the last DCS read of the cluster, seconds.
    pub dcs_read_seconds: f64,
    /// DCS reads that failed since start.
    pub dcs_errors_total: u64,
    /// The last decision's log line.
    pub last_decision: String,
}

/// One `pg_stat_replication` row as `/patroni` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicationInfo {
    pub usename: String,
    pub application_name: String,
    pub client_addr: Option<String>,
    pub state: String,
    pub sync_state: String,
    pub sync_priority: i64,
}

/// What the router needs: the published status and the `restapi.authentication` credentials
/// that guard the unsafe methods (POST, PUT, PATCH, DELETE).
#[derive(Clone)]
pub struct ApiState {
    pub status: tokio::sync::watch::Receiver<Arc<NodeStatus>>,
    /// `(username, password)`; `None` leaves the unsafe methods open, as Patroni does.
    pub auth: Option<(String, String)>,
    /// The agent behind the unsafe endpoints; `None` answers them with 503.
    pub admin: Option<Arc<dyn Admin>>,
    /// Leaders' `POST /failsafe` pings, shared with the HA loop.
    pub failsafe: Arc<FailsafeMemory>,
    /// Who may make unsafe requests (allowlist, client certificate).
    pub access: Access,
    /// `restapi.http_extra_headers` (and `https_extra_headers` over TLS), set on every
    /// response.
    pub extra_headers: Vec<(axum::http::HeaderName, axum::http::HeaderValue)>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("auth", &self.auth.as_ref().map(|(u, _)| u))
            .field("admin", &self.admin.is_some())
            .finish_non_exhaustive()
    }
}

impl ApiState {
    pub fn new(
        status: tokio::sync::watch::Receiver<Arc<NodeStatus>>,
        auth: Option<(String, String)>,
    ) -> ApiState {
        ApiState {
            status,
            auth,
            admin: None,
            failsafe: Arc::default(),
            access: Access::default(),
            extra_headers: Vec::new(),
        }
    }

    pub fn with_access(mut self, access: Access) -> ApiState {
        self.access = access;
        self
    }

    /// Headers every response carries; a name or value HTTP does not allow is an error naming
    /// it.
    pub fn with_extra_headers(mut self, headers: &[(String, String)]) -> Result<ApiState, String> {
        for (name, value) in headers {
            let n = axum::http::HeaderName::try_from(name.as_str())
                .map_err(|e| format!("extra header name {name:?}: {e}"))?;
            let v = axum::http::HeaderValue::try_from(value.as_str())
                .map_err(|e| format!("extra header {name}: value {value:?}: {e}"))?;
            self.extra_headers.push((n, v));
        }
        Ok(self)
    }

    pub fn with_failsafe(mut self, memory: Arc<FailsafeMemory>) -> ApiState {
        self.failsafe = memory;
        self
    }

    pub fn with_admin(mut self, admin: Arc<dyn Admin>) -> ApiState {
        self.admin = Some(admin);
        self
    }
}
