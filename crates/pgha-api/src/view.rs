//! Facts derived from a published [`NodeStatus`] that several endpoints share: whether the DCS
//! view counts as available, whether the leader claim is still fresh, sync roles from the `sync`
//! key, the effective ttl. Pure functions of the status and the current time.

use std::time::{Duration, Instant};

use pgha_types::{tag_is_true, Cluster};
use serde_json::Value;

use crate::NodeStatus;

/// Patroni's default ttl, used while the published ttl is 0 (unknown).
pub(crate) const DEFAULT_TTL: u64 = 30;

pub(crate) fn ttl(s: &NodeStatus) -> Duration {
    Duration::from_secs(if s.ttl == 0 { DEFAULT_TTL } else { s.ttl })
}

/// Time since the HA loop last completed a cycle; before the first one, since `started`.
pub(crate) fn since_heartbeat(s: &NodeStatus, started: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(s.loop_heartbeat.unwrap_or(started))
}

/// Patroni's `ha.is_leader()`: the lock was held at the last cycle and that is less than ttl
/// ago (after that the lock would have expired in the DCS anyway).
pub(crate) fn holds_lock(s: &NodeStatus, started: Instant, now: Instant) -> bool {
    s.is_leader && since_heartbeat(s, started, now) < ttl(s)
}

/// Patroni's `dcs.cluster` is not `None`: the last DCS read worked and produced a view.
pub(crate) fn dcs_available(s: &NodeStatus) -> bool {
    s.dcs_reachable && s.cluster.is_some()
}

pub(crate) fn role_is(s: &NodeStatus, role: &str) -> bool {
    s.role.as_deref() == Some(role)
}

pub(crate) fn is_running(s: &NodeStatus) -> bool {
    s.state == "running"
}

/// Synchronous replication mode as the dynamic configuration sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncMode {
    Off,
    Sync,
    Quorum,
}

pub(crate) fn sync_mode(c: &Cluster) -> SyncMode {
    let Some(cfg) = c.config.as_ref() else {
        return SyncMode::Off;
    };
    if is_standby_cluster(cfg.get("standby_cluster")) {
        return SyncMode::Off;
    }
    match cfg.get("synchronous_mode") {
        Some(Value::String(s)) if s == "quorum" => SyncMode::Quorum,
        v if tag_is_true(v) => SyncMode::Sync,
        _ => SyncMode::Off,
    }
}

fn is_standby_cluster(v: Option<&Value>) -> bool {
    let Some(Value::Object(m)) = v else {
        return false;
    };
    ["host", "port", "restore_command"]
        .iter()
        .any(|k| m.get(*k).is_some_and(truthy))
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `name` is listed as a synchronous standby in the `sync` key (case-insensitively, as
/// PostgreSQL compares `synchronous_standby_names`). A `sync` key without a leader is empty.
pub(crate) fn sync_key_lists(c: &Cluster, name: &str) -> bool {
    let Some(sync) = c.sync.as_ref() else {
        return false;
    };
    if sync.leader.as_deref().is_none_or(str::is_empty) {
        return false;
    }
    sync.sync_standby.as_deref().is_some_and(|list| {
        list.split(',')
            .map(str::trim)
            .any(|m| !m.is_empty() && m.eq_ignore_ascii_case(name))
    })
}

/// This node is a synchronous / quorum standby: a running replica listed in the `sync` key
/// while synchronous mode is on. Needs an available DCS view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SyncRole {
    pub sync_standby: bool,
    pub quorum_standby: bool,
}

pub(crate) fn own_sync_role(s: &NodeStatus) -> SyncRole {
    let mut r = SyncRole::default();
    if !role_is(s, "replica") || !dcs_available(s) {
        return r;
    }
    let Some(c) = s.cluster.as_ref() else {
        return r;
    };
    if !sync_key_lists(c, &s.name) {
        return r;
    }
    match sync_mode(c) {
        SyncMode::Off => {}
        SyncMode::Sync => r.sync_standby = true,
        SyncMode::Quorum => r.quorum_standby = true,
    }
    r
}

/// The leader's WAL position to measure lag against: the published one, else the `status`
/// key of the last DCS view.
pub(crate) fn leader_optime(s: &NodeStatus) -> Option<u64> {
    s.leader_optime
        .or_else(|| s.cluster.as_ref().and_then(|c| c.status.optime))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgha_types::KeyValue;

    fn cluster(keys: &[(&str, &str)]) -> Cluster {
        let kvs: Vec<KeyValue> = keys
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.to_string(),
                value: v.to_string(),
                lease: 0,
                mod_revision: 1,
            })
            .collect();
        Cluster::from_keys(&kvs)
    }

    #[test]
    fn sync_modes() {
        let c = cluster(&[("config", r#"{"synchronous_mode":true}"#)]);
        assert_eq!(sync_mode(&c), SyncMode::Sync);
        let c = cluster(&[("config", r#"{"synchronous_mode":"quorum"}"#)]);
        assert_eq!(sync_mode(&c), SyncMode::Quorum);
        let c = cluster(&[("config", r#"{"synchronous_mode":"off"}"#)]);
        assert_eq!(sync_mode(&c), SyncMode::Off);
        let c = cluster(&[(
            "config",
            r#"{"synchronous_mode":true,"standby_cluster":{"host":"x"}}"#,
        )]);
        assert_eq!(sync_mode(&c), SyncMode::Off);
        assert_eq!(sync_mode(&Cluster::default()), SyncMode::Off);
    }

    #[test]
    fn sync_key_membership() {
        let c = cluster(&[(
            "sync",
            r#"{"leader":"node3","sync_standby":"node1, Node2"}"#,
        )]);
        assert!(sync_key_lists(&c, "node2"));
        assert!(sync_key_lists(&c, "NODE1"));
        assert!(!sync_key_lists(&c, "node3"));
        let c = cluster(&[("sync", r#"{"leader":null,"sync_standby":"node1"}"#)]);
        assert!(!sync_key_lists(&c, "node1"));
    }

    #[test]
    fn leader_claim_lapses_after_ttl() {
        let start = Instant::now();
        let s = NodeStatus {
            is_leader: true,
            ttl: 20,
            loop_heartbeat: Some(start),
            ..Default::default()
        };
        assert!(holds_lock(&s, start, start + Duration::from_secs(19)));
        assert!(!holds_lock(&s, start, start + Duration::from_secs(20)));
        let s = NodeStatus {
            is_leader: true,
            ..Default::default()
        };
        assert!(holds_lock(&s, start, start + Duration::from_secs(29)));
        assert!(!holds_lock(&s, start, start + Duration::from_secs(31)));
    }
}
