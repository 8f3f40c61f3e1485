use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a member publishes under `members/<name>`: the same JSON fields, in the same order, as a
/// Patroni 4.1 agent writes them. Unknown fields written by other versions are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub tags: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xlog_location: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_restart: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_restart_reason: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_restart: Option<ScheduledRestart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_after_promote: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduledRestart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_version: Option<String>,
    /// The other keys Patroni keeps: `role`, `restart_pending`, `timeout`,
    /// `postmaster_start_time`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A member as read from the DCS.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    pub data: MemberData,
    /// etcd lease the key is attached to (0 when none).
    pub lease: i64,
}

impl Member {
    /// Parses a member value. Patroni also accepts a bare `postgres://` URL (very old agents);
    /// anything else that is not JSON yields a member with no data plus the error text, so one
    /// bad key never hides the rest of the cluster.
    pub fn parse(name: &str, value: &str, lease: i64) -> (Member, Option<String>) {
        let (data, err) = if value.starts_with("postgres://") {
            (
                MemberData {
                    conn_url: Some(value.to_string()),
                    ..Default::default()
                },
                None,
            )
        } else {
            match serde_json::from_str::<MemberData>(value) {
                Ok(d) => (d, None),
                Err(e) => (
                    MemberData::default(),
                    Some(format!("members/{name}: not a valid member record ({e})")),
                ),
            }
        };
        (
            Member {
                name: name.to_string(),
                data,
                lease,
            },
            err,
        )
    }

    pub fn tag_bool(&self, tag: &str) -> bool {
        tag_is_true(self.data.tags.get(tag))
    }

    /// Not allowed to promote: `nofailover`, or `failover_priority` 0 without it.
    pub fn nofailover(&self) -> bool {
        nofailover_of(&self.data.tags)
    }

    /// A candidate for promotion: running, and neither tagged `nofailover` nor given a
    /// `failover_priority` of 0 or less (which means the same when `nofailover` is absent).
    pub fn may_promote(&self) -> bool {
        self.is_running() && !nofailover_of(&self.data.tags)
    }

    /// The member's `failover_priority` (see [`failover_priority_of`]).
    pub fn failover_priority(&self) -> i64 {
        failover_priority_of(&self.data.tags)
    }

    pub fn is_running(&self) -> bool {
        self.data.state.as_deref() == Some("running")
    }

    /// The member's WAL position as Patroni ranks failover candidates: what it received or
    /// wrote, whichever is further.
    pub fn wal_position(&self) -> u64 {
        let d = &self.data;
        d.xlog_location
            .unwrap_or(0)
            .max(d.receive_lsn.unwrap_or(0))
            .max(d.replay_lsn.unwrap_or(0))
    }

    /// Host and port from `conn_url` (`postgres://host:port/db`).
    pub fn host_port(&self) -> Option<(String, u16)> {
        let url = self.data.conn_url.as_deref()?;
        let rest = url.split_once("://")?.1;
        let hostport = rest.split('/').next()?;
        let hostport = hostport.rsplit('@').next()?;
        match hostport.rsplit_once(':') {
            Some((h, p)) => Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?)),
            None => Some((hostport.to_string(), 5432)),
        }
    }
}

/// Whether tags forbid promotion: the `nofailover` tag when it is set at all (it wins over
/// `failover_priority`), else a `failover_priority` of 0 or less.
pub fn nofailover_of(tags: &Map<String, Value>) -> bool {
    match tags.get("nofailover") {
        Some(v) if !v.is_null() => tag_is_true(Some(v)),
        _ => priority_tag(tags.get("failover_priority")).is_some_and(|p| p <= 0),
    }
}

/// The rank among equally advanced failover candidates: 0 when `nofailover` is set, else
/// `failover_priority`, 1 when absent or not a number (Patroni's default).
pub fn failover_priority_of(tags: &Map<String, Value>) -> i64 {
    if tag_is_true(tags.get("nofailover")) {
        return 0;
    }
    priority_tag(tags.get("failover_priority")).unwrap_or(1)
}

fn priority_tag(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// Whether tags keep the member from being a synchronous standby: `nosync` when set at all
/// (it wins over `sync_priority`), else a `sync_priority` of 0 or less.
pub fn nosync_of(tags: &Map<String, Value>) -> bool {
    match tags.get("nosync") {
        Some(v) if !v.is_null() => tag_is_true(Some(v)),
        _ => priority_tag(tags.get("sync_priority")).is_some_and(|p| p <= 0),
    }
}

/// The rank among synchronous standby candidates: `sync_priority`, 1 when absent.
pub fn sync_priority_of(tags: &Map<String, Value>) -> i64 {
    priority_tag(tags.get("sync_priority")).unwrap_or(1)
}

/// The `replicatefrom` tag's value, when it is a non-empty string.
pub fn replicatefrom_of(tags: &Map<String, Value>) -> Option<&str> {
    tags.get("replicatefrom")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Patroni treats tag values `true`, `"true"`, `"on"`, `"yes"`, 1 as set.
pub fn tag_is_true(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => {
            matches!(s.to_ascii_lowercase().as_str(), "true" | "on" | "yes" | "1")
        }
        Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n != 0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn failover_priority_and_nofailover_derive_from_each_other() {
        let cases = [
            (r#"{}"#, false, 1),
            (r#"{"failover_priority": 3}"#, false, 3),
            (r#"{"failover_priority": "2"}"#, false, 2),
            (r#"{"failover_priority": 0}"#, true, 0),
            (r#"{"failover_priority": -1}"#, true, -1),
            (r#"{"failover_priority": "x"}"#, false, 1),
            (r#"{"nofailover": true}"#, true, 0),
            (r#"{"nofailover": true, "failover_priority": 5}"#, true, 0),
            // An explicit nofailover: false wins over a priority of 0.
            (r#"{"nofailover": false, "failover_priority": 0}"#, false, 0),
        ];
        for (json, nofailover, priority) in cases {
            let t = tags(json);
            assert_eq!(nofailover_of(&t), nofailover, "{json}");
            assert_eq!(failover_priority_of(&t), priority, "{json}");
        }
    }

    #[test]
    fn parses_patroni_member_and_keeps_field_order() {
        let raw = r#"{"conn_url":"postgres://127.0.0.1:5451/postgres","api_url":"http://127.0.0.1:8021/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":67108864,"replay_lsn":67108864,"receive_lsn":67108864,"replication_state":"streaming","timeline":1}"#;
        let (m, err) = Member::parse("node1", raw, 7);
        assert!(err.is_none());
        assert_eq!(m.host_port(), Some(("127.0.0.1".into(), 5451)));
        assert_eq!(serde_json::to_string(&m.data).unwrap(), raw);
    }

    #[test]
    fn garbage_member_is_reported_not_fatal() {
        let (m, err) = Member::parse("x", "{not json", 0);
        assert_eq!(m.name, "x");
        assert!(err.unwrap().contains("members/x"));
    }

    #[test]
    fn tag_truthiness() {
        assert!(tag_is_true(Some(&Value::String("on".into()))));
        assert!(!tag_is_true(Some(&Value::Bool(false))));
        assert!(!tag_is_true(None));
    }
}
