//! Health checks: every `GET` path without a named handler, and every `HEAD` / `OPTIONS`
//! request, routed by substring in Patroni's order. All answers come from the published
//! [`NodeStatus`]; nothing here waits on anything.

use std::time::Instant;

use pgha_types::tag_is_true;
use serde_json::Value;

use crate::query::Query;
use crate::view::{
    dcs_available, holds_lock, is_running, leader_optime, own_sync_role, role_is, since_heartbeat,
    ttl,
};
use crate::{parse_lag, NodeStatus};

/// The status code of a health check on `path` (already stripped of its query string).
///
/// | path (substring)                      | 200 when |
/// |---|---|
/// | `standby_leader`, `standby-leader`    | holds the lock as a standby cluster's leader, running |
/// | `leader`                              | holds the leader lock |
/// | `/`, `master`, `primary`, `read-write`| holds the lock, runs as primary, state running |
/// | `replica`                             | running replica, no `noloadbalance`, `?lag`, `?replication_state` |
/// | `read-only` (not sync/quorum)         | the primary rule or the replica rule |
/// | `health`                              | state running |
/// | `/sync`, `/synchronous`, `/quorum`    | replica rule and listed in the `sync` key (DCS needed) |
/// | `/async`, `/asynchronous`             | replica rule and not listed in the `sync` key (DCS needed) |
/// | `/read-only-sync`, `/read-only-quorum`| primary rule, or the `/sync` / `/quorum` rule (DCS needed) |
///
/// Anything else is 503. On every path but the leader/primary ones, `?tag_<k>=<v>` turns a
/// 200 into a 503 unless the node has tag `k` equal to `v`. While the cluster is paused and the
/// DCS is unavailable, the leader and primary answers come from the local postgres role.
pub(crate) fn health_code(
    s: &NodeStatus,
    path: &str,
    q: &Query,
    started: Instant,
    now: Instant,
) -> u16 {
    let path = if path == "/" { "/primary" } else { path };

    let (leader_ok, primary_ok) = if !dcs_available(s) && s.pause {
        let primary = role_is(s, "primary");
        (primary, primary)
    } else if holds_lock(s, started, now) {
        (true, role_is(s, "primary") && is_running(s))
    } else {
        (false, false)
    };
    let replica_ok = replica_ok(s, q);

    let mut ignore_tags = false;
    let ok = if path.contains("standby_leader") || path.contains("standby-leader") {
        ignore_tags = true;
        holds_lock(s, started, now) && role_is(s, "standby_leader") && is_running(s)
    } else if path.contains("leader") {
        ignore_tags = true;
        leader_ok
    } else if path.contains("master") || path.contains("primary") || path.contains("read-write") {
        ignore_tags = true;
        primary_ok
    } else if path.contains("replica") {
        replica_ok
    } else if path.contains("read-only") && !path.contains("sync") && !path.contains("quorum") {
        primary_ok || replica_ok
    } else if path.contains("health") {
        is_running(s)
    } else if dcs_available(s) {
        let sync = own_sync_role(s);
        match path {
            "/sync" | "/synchronous" => sync.sync_standby && replica_ok,
            "/quorum" => sync.quorum_standby && replica_ok,
            "/async" | "/asynchronous" => !sync.sync_standby && !sync.quorum_standby && replica_ok,
            "/read-only-quorum" => primary_ok || (sync.quorum_standby && replica_ok),
            "/read-only-sync" | "/read-only-synchronous" => {
                primary_ok || (sync.sync_standby && replica_ok)
            }
            _ => false,
        }
    } else {
        false
    };

    if ok && (ignore_tags || tags_match(s, q)) {
        200
    } else {
        503
    }
}

/// Running replica, load-balanced, within `?lag` of the leader, in `?replication_state`.
///
/// As Patroni: the lag is the leader's optime minus this node's replayed position, and when the
/// leader's optime is unknown the node is not considered lagging. An unparsable `?lag` is
/// ignored.
fn replica_ok(s: &NodeStatus, q: &Query) -> bool {
    if !(role_is(s, "replica") && is_running(s)) || tag_is_true(s.tags.get("noloadbalance")) {
        return false;
    }
    if let Some(max_lag) = q.get("lag").and_then(parse_lag) {
        let replayed = s.replayed_location.unwrap_or(0);
        if let Some(optime) = leader_optime(s).filter(|o| *o > 0) {
            if optime > replayed.saturating_add(max_lag) {
                return false;
            }
        }
    }
    if let Some(wanted) = q.get("replication_state") {
        if s.replication_state.as_deref() != Some(wanted) {
            return false;
        }
    }
    true
}

/// Every `?tag_<k>=<v>` names a tag this node has with value `v`; non-string tag values compare
/// by their lower-cased text (`true`, `1`).
fn tags_match(s: &NodeStatus, q: &Query) -> bool {
    q.first_values().into_iter().all(|(key, wanted)| {
        let Some(tag) = key.strip_prefix("tag_") else {
            return true;
        };
        match s.tags.get(tag) {
            None | Some(Value::Null) => false,
            Some(Value::String(v)) => v == wanted,
            Some(other) => other.to_string().to_lowercase() == wanted,
        }
    })
}

/// `/liveness`: the HA loop completed a cycle within ttl (a running primary) or 2 × ttl
/// (anything else), or the cluster is paused.
pub(crate) fn liveness_code(s: &NodeStatus, started: Instant, now: Instant) -> u16 {
    let factor = if role_is(s, "primary") && is_running(s) {
        1
    } else {
        2
    };
    if s.pause || since_heartbeat(s, started, now) < ttl(s) * factor {
        200
    } else {
        503
    }
}

/// `/readiness?lag=&mode=apply|write`: the leader, or a running streaming replica within `lag`
/// (default `maximum_lag_on_failover`) of the leader's optime, measured on the replayed position
/// (`mode=apply`, the default) or the received one (`mode=write`). Needs an available DCS view.
pub(crate) fn readiness_code(s: &NodeStatus, q: &Query, started: Instant, now: Instant) -> u16 {
    match readiness_failure(s, q, started, now) {
        None => 200,
        Some(reason) => {
            tracing::debug!("Readiness check failure: {reason}");
            503
        }
    }
}

fn readiness_failure(s: &NodeStatus, q: &Query, started: Instant, now: Instant) -> Option<String> {
    if holds_lock(s, started, now) {
        return None;
    }
    if !is_running(s) {
        return Some("PostgreSQL is not running".into());
    }
    if s.replication_state.as_deref() != Some("streaming") {
        return Some("PostgreSQL replication state is not streaming".into());
    }
    if !dcs_available(s) {
        return Some("DCS is not accessible".into());
    }
    let write_mode = q.get("mode") == Some("write");
    let position = if write_mode {
        s.received_location.or(s.replayed_location)
    } else {
        s.replayed_location
    };
    let lag = leader_optime(s)
        .unwrap_or(0)
        .saturating_sub(position.unwrap_or(0));
    let max_lag = q
        .get("lag")
        .and_then(parse_lag)
        .unwrap_or(s.maximum_lag_on_failover);
    if lag > max_lag {
        let mode = if write_mode { "write" } else { "apply" };
        return Some(format!(
            "Replication {mode} lag {lag} exceeds maximum allowable {max_lag}"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_reasons() {
        let now = Instant::now();
        let mut s = NodeStatus {
            state: "running".into(),
            role: Some("replica".into()),
            replication_state: Some("streaming".into()),
            dcs_reachable: true,
            cluster: Some(Default::default()),
            leader_optime: Some(100),
            replayed_location: Some(40),
            received_location: Some(90),
            maximum_lag_on_failover: 50,
            ..Default::default()
        };
        let q = |raw: &str| Query::parse(Some(raw));
        assert_eq!(
            readiness_failure(&s, &q(""), now, now).as_deref(),
            Some("Replication apply lag 60 exceeds maximum allowable 50")
        );
        assert_eq!(readiness_failure(&s, &q("mode=write"), now, now), None);
        assert_eq!(readiness_failure(&s, &q("lag=60"), now, now), None);
        s.dcs_reachable = false;
        assert_eq!(
            readiness_failure(&s, &q("lag=60"), now, now).as_deref(),
            Some("DCS is not accessible")
        );
        s.is_leader = true;
        assert_eq!(readiness_failure(&s, &q(""), now, now), None);
    }
}
