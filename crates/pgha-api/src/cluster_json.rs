//! The `GET /cluster` body: the cluster topology as the last DCS view shows it.

use pgha_types::{Cluster, Lsn, Member};
use serde_json::{json, Map, Value};

use crate::view::{sync_key_lists, sync_mode, SyncMode};

/// Builds the `/cluster` JSON: `{"members": [...], "pause": true?, "scheduled_switchover":
/// {"at", "from", "to"}?, "scope": scope}`, members sorted by name.
///
/// Each member: `name`, `role` (`leader`, `sync_standby`, `quorum_standby` or `replica`),
/// `state` (a non-leader's `replication_state` if it has one, else its `state`), `api_url`,
/// `host`, `port`, then `timeline`, `pending_restart`, `pending_restart_reason`,
/// `scheduled_restart`, `tags` when the member publishes them; non-leaders add
/// `receive_lag`/`receive_lsn`, `replay_lag`/`replay_lsn`, `lag`/`lsn`, the lags in bytes behind
/// the `status` key's optime (never below 0) and `"unknown"` for positions the member does not
/// publish.
pub fn cluster_json(c: &Cluster, scope: &str) -> Value {
    let leader = c.leader_name();
    let cluster_lsn = c
        .status
        .optime
        .or_else(|| c.leader_member().and_then(|m| m.data.xlog_location))
        .unwrap_or(0);
    let mode = sync_mode(c);
    let mut members: Vec<&Member> = c.members.iter().collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let members: Vec<Value> = members
        .into_iter()
        .map(|m| member_json(m, leader == Some(m.name.as_str()), mode, c, cluster_lsn))
        .collect();

    let mut out = Map::new();
    out.insert("members".into(), Value::Array(members));
    if c.is_paused() {
        out.insert("pause".into(), Value::Bool(true));
    }
    if let Some(f) = &c.failover {
        if let Some(at) = &f.scheduled_at {
            let mut sw = Map::new();
            sw.insert("at".into(), Value::from(python_isoformat(at)));
            if let Some(from) = f.leader.as_deref().filter(|s| !s.is_empty()) {
                sw.insert("from".into(), Value::from(from));
            }
            if let Some(to) = f.member.as_deref().filter(|s| !s.is_empty()) {
                sw.insert("to".into(), Value::from(to));
            }
            out.insert("scheduled_switchover".into(), Value::Object(sw));
        }
    }
    out.insert("scope".into(), Value::from(scope));
    Value::Object(out)
}

/// `{"members": [], "scope": scope}`: the answer before the first DCS view.
pub(crate) fn empty_cluster_json(scope: &str) -> Value {
    json!({"members": [], "scope": scope})
}

fn member_json(
    m: &Member,
    is_leader: bool,
    mode: SyncMode,
    c: &Cluster,
    cluster_lsn: u64,
) -> Value {
    let d = &m.data;
    let role = if is_leader {
        "leader"
    } else if mode != SyncMode::Off && sync_key_lists(c, &m.name) {
        if mode == SyncMode::Quorum {
            "quorum_standby"
        } else {
            "sync_standby"
        }
    } else {
        "replica"
    };
    let replication_state = if is_leader {
        None
    } else {
        d.replication_state.as_deref().filter(|s| !s.is_empty())
    };
    let state = replication_state.or(d.state.as_deref()).unwrap_or("");

    let mut o = Map::new();
    o.insert("name".into(), Value::from(m.name.as_str()));
    o.insert("role".into(), Value::from(role));
    o.insert("state".into(), Value::from(state));
    o.insert("api_url".into(), json!(d.api_url));
    if let Some((host, port)) = d.conn_url.as_deref().and_then(host_port) {
        o.insert("host".into(), Value::from(host));
        if let Some(port) = port {
            o.insert("port".into(), Value::from(port));
        }
    }
    if let Some(tl) = d.timeline {
        o.insert("timeline".into(), Value::from(tl));
    }
    if let Some(p) = d.pending_restart {
        o.insert("pending_restart".into(), Value::Bool(p));
    }
    if let Some(r) = &d.pending_restart_reason {
        o.insert("pending_restart_reason".into(), Value::Object(r.clone()));
    }
    if let Some(sr) = &d.scheduled_restart {
        o.insert("scheduled_restart".into(), json!(sr));
    }
    if !d.tags.is_empty() {
        o.insert("tags".into(), Value::Object(d.tags.clone()));
    }
    if !is_leader {
        for (prefix, lsn) in [
            ("receive_", d.receive_lsn),
            ("replay_", d.replay_lsn),
            ("", d.xlog_location),
        ] {
            let (lsn_key, lag_key) = (format!("{prefix}lsn"), format!("{prefix}lag"));
            match lsn.filter(|l| *l != 0) {
                None => {
                    o.insert(lsn_key, Value::from("unknown"));
                    o.insert(lag_key, Value::from("unknown"));
                }
                Some(l) => {
                    o.insert(lag_key, Value::from(cluster_lsn.saturating_sub(l)));
                    o.insert(lsn_key, Value::from(Lsn(l).to_string()));
                }
            }
        }
    }
    Value::Object(o)
}

/// Host and explicit port of a `postgres://[user@]host[:port]/db` URL; the port is `None` when
/// the URL has none (Patroni then shows no `port`).
fn host_port(url: &str) -> Option<(String, Option<u16>)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let hostport = authority.rsplit('@').next()?;
    if hostport.is_empty() {
        return None;
    }
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((host.to_string(), port));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Some((h.to_string(), p.parse().ok())),
        Some(_) => None,
        None => Some((hostport.to_string(), None)),
    }
}

/// `scheduled_at` re-printed as Python's `datetime.isoformat()` (`2026-11-22T02:58:28+00:00`),
/// as Patroni parses and re-serializes it; kept verbatim when it does not parse.
fn python_isoformat(raw: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(raw.trim()) {
        Ok(t) if t.timestamp_subsec_micros() == 0 => t.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        Ok(t) => t.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string(),
        Err(_) => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_variants() {
        let hp = |u: &str| host_port(u);
        assert_eq!(
            hp("postgres://127.0.0.1:5451/postgres"),
            Some(("127.0.0.1".into(), Some(5451)))
        );
        assert_eq!(
            hp("postgres://u:p@db1:6432/x"),
            Some(("db1".into(), Some(6432)))
        );
        assert_eq!(hp("postgres://db1/postgres"), Some(("db1".into(), None)));
        assert_eq!(
            hp("postgres://[::1]:5433/postgres"),
            Some(("::1".into(), Some(5433)))
        );
        assert_eq!(hp("postgres:///postgres"), None);
        assert_eq!(hp("garbage"), None);
    }

    #[test]
    fn isoformat_like_python() {
        assert_eq!(
            python_isoformat("2026-11-22T02:58:28+00:00"),
            "2026-11-22T02:58:28+00:00"
        );
        assert_eq!(
            python_isoformat("2026-11-22T02:58:28Z"),
            "2026-11-22T02:58:28+00:00"
        );
        assert_eq!(
            python_isoformat("2026-11-22T02:58:28.5+02:00"),
            "2026-11-22T02:58:28.500000+02:00"
        );
        assert_eq!(python_isoformat("soon"), "soon");
    }
}
