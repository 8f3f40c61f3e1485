//! The `GET /patroni` body, also the body of every health check and what peers read during the
//! leader race. Field order and presence follow Patroni 4.1.5.

use pgha_types::PATRONI_COMPAT_VERSION;
use serde_json::{json, Map, Value};

use crate::view::{own_sync_role, role_is};
use crate::NodeStatus;

/// Postgres states in which Patroni reports the live details (start time, version, WAL
/// positions, timeline, replication). In any other state it reports only `state` and `role`.
const DETAILED_STATES: &[&str] = &["running", "starting", "restarting"];

/// Builds the `/patroni` JSON:
///
/// `state`, `postmaster_start_time`, `role`, `server_version`, `xlog`, `sync_standby` /
/// `quorum_standby`, `timeline`, `replication_state`, `replication`, `pause`,
/// `cluster_unlocked`, `failsafe_mode_is_active`, `dcs_last_seen`, `tags`, `database_system_identifier`,
/// `pending_restart`, `pending_restart_reason`, `patroni {version, scope, name}`,
/// `scheduled_restart`, `watchdog_failed`.
///
/// Unknown values are omitted; flags appear only when true.
pub fn patroni_json(s: &NodeStatus) -> Value {
    let mut m = Map::new();
    let state = if s.state.is_empty() {
        "unknown"
    } else {
        s.state.as_str()
    };
    m.insert("state".into(), Value::from(state));
    if let Some(pct) = s.basebackup_progress {
        m.insert("basebackup_progress".into(), Value::from(pct));
    }
    if DETAILED_STATES.contains(&state) {
        detailed(s, &mut m);
    } else if let Some(role) = &s.role {
        m.insert("role".into(), Value::from(role.as_str()));
    }
    if s.pause {
        m.insert("pause".into(), Value::Bool(true));
    }
    if s.cluster_unlocked {
        m.insert("cluster_unlocked".into(), Value::Bool(true));
    }
    if s.failsafe_active {
        m.insert("failsafe_mode_is_active".into(), Value::Bool(true));
    }
    m.insert(
        "dcs_last_seen".into(),
        Value::from(s.dcs_last_seen.unwrap_or(0)),
    );
    if !s.tags.is_empty() {
        m.insert("tags".into(), Value::Object(s.tags.clone()));
    }
    if let Some(id) = &s.database_system_identifier {
        m.insert(
            "database_system_identifier".into(),
            Value::from(id.as_str()),
        );
    }
    if s.pending_restart || !s.pending_restart_reason.is_empty() {
        m.insert("pending_restart".into(), Value::Bool(true));
        m.insert(
            "pending_restart_reason".into(),
            Value::Object(s.pending_restart_reason.clone()),
        );
    }
    m.insert(
        "patroni".into(),
        json!({"version": PATRONI_COMPAT_VERSION, "scope": s.scope, "name": s.name}),
    );
    if let Some(sr) = s.scheduled_restart.as_ref().filter(|sr| !sr.is_empty()) {
        m.insert("scheduled_restart".into(), Value::Object(sr.clone()));
    }
    if s.watchdog_failed {
        m.insert("watchdog_failed".into(), Value::Bool(true));
    }
    Value::Object(m)
}

fn detailed(s: &NodeStatus, m: &mut Map<String, Value>) {
    if let Some(t) = &s.postmaster_start_time {
        m.insert("postmaster_start_time".into(), Value::from(t.as_str()));
    }
    if let Some(role) = &s.role {
        m.insert("role".into(), Value::from(role.as_str()));
    }
    if let Some(v) = s.server_version {
        m.insert("server_version".into(), Value::from(v));
    }
    if let Some(xlog) = xlog(s) {
        m.insert("xlog".into(), xlog);
    }
    let sync = own_sync_role(s);
    if sync.sync_standby {
        m.insert("sync_standby".into(), Value::Bool(true));
    }
    if sync.quorum_standby {
        m.insert("quorum_standby".into(), Value::Bool(true));
    }
    if let Some(tl) = s.timeline {
        m.insert("timeline".into(), Value::from(tl));
    }
    if let Some(rs) = &s.replication_state {
        m.insert("replication_state".into(), Value::from(rs.as_str()));
    }
    if !s.replication.is_empty() {
        let rows = s.replication.iter().map(|r| {
            json!({
                "usename": r.usename,
                "application_name": r.application_name,
                "client_addr": r.client_addr,
                "state": r.state,
                "sync_state": r.sync_state,
                "sync_priority": r.sync_priority,
            })
        });
        m.insert("replication".into(), Value::Array(rows.collect()));
    }
}

/// Primary: `{"location"}`; replica (or standby leader): `{"received_location",
/// "replayed_location", "replayed_timestamp", "paused"}`; nothing when the positions are unknown.
fn xlog(s: &NodeStatus) -> Option<Value> {
    if role_is(s, "primary") {
        return s.xlog_location.map(|l| json!({"location": l}));
    }
    if s.received_location.is_none() && s.replayed_location.is_none() {
        return None;
    }
    Some(json!({
        "received_location": s.received_location.or(s.replayed_location),
        "replayed_location": s.replayed_location,
        "replayed_timestamp": s.replayed_timestamp,
        "paused": s.replay_paused,
    }))
}
