use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{DynamicConfig, Member};

/// One key as read from the DCS, its name relative to the cluster prefix
/// (`leader`, `members/node1`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub lease: i64,
    pub mod_revision: i64,
}

/// The leader key: the holder's member name, and the etcd facts needed to update or delete it
/// conditionally.
#[derive(Debug, Clone, PartialEq)]
pub struct Leader {
    pub name: String,
    pub lease: i64,
    pub mod_revision: i64,
}

/// `status`: the leader's last WAL position and its slots' positions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optime: Option<u64>,
    #[serde(default)]
    pub slots: BTreeMap<String, u64>,
    #[serde(default)]
    pub retain_slots: Vec<String>,
}

/// `failover`: a requested switchover/failover. Patroni leaves `{}` behind after completion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Failover {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
}

impl Failover {
    pub fn is_empty(&self) -> bool {
        self.leader.is_none() && self.member.is_none()
    }

    /// When a scheduled switchover is due, in unix ms; `None` when it is not scheduled or the
    /// timestamp does not parse (an unparseable schedule never fires).
    pub fn scheduled_at_ms(&self) -> Option<Result<i64, String>> {
        let s = self.scheduled_at.as_deref()?;
        Some(parse_timestamp_ms(s))
    }

    /// Due at `now_ms`: not scheduled, or its time has come.
    pub fn is_due(&self, now_ms: u64) -> bool {
        match self.scheduled_at_ms() {
            None => true,
            Some(Ok(at)) => at <= now_ms as i64,
            Some(Err(_)) => false,
        }
    }
}

/// Parses an ISO 8601 timestamp with a time zone (`2026-11-22T02:29:15+00:00`, also with a
/// space instead of `T`) into unix milliseconds.
pub fn parse_timestamp_ms(s: &str) -> Result<i64, String> {
    let t = s.trim().replacen(' ', "T", 1);
    chrono::DateTime::parse_from_rfc3339(&t)
        .map(|d| d.timestamp_millis())
        .map_err(|e| format!("invalid timestamp {s:?}: {e}"))
}

/// `sync`: which members are synchronous standbys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    #[serde(default)]
    pub leader: Option<String>,
    #[serde(default)]
    pub quorum: Option<u64>,
    #[serde(default)]
    pub sync_standby: Option<String>,
}

/// One line of `history`: `[timeline, lsn, reason, timestamp, new_leader]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub timeline: u64,
    pub lsn: u64,
    pub reason: String,
    pub timestamp: Option<String>,
    pub new_leader: Option<String>,
}

impl HistoryEntry {
    pub fn to_json(&self) -> Value {
        let mut v = vec![
            Value::from(self.timeline),
            Value::from(self.lsn),
            Value::from(self.reason.clone()),
        ];
        if let Some(ts) = &self.timestamp {
            v.push(Value::from(ts.clone()));
            if let Some(l) = &self.new_leader {
                v.push(Value::from(l.clone()));
            }
        }
        Value::Array(v)
    }

    fn from_json(v: &Value) -> Option<HistoryEntry> {
        let a = v.as_array()?;
        Some(HistoryEntry {
            timeline: a.first()?.as_u64()?,
            lsn: a.get(1)?.as_u64()?,
            reason: a.get(2).and_then(Value::as_str).unwrap_or("").to_string(),
            timestamp: a.get(3).and_then(Value::as_str).map(str::to_string),
            new_leader: a.get(4).and_then(Value::as_str).map(str::to_string),
        })
    }
}

/// Everything under `<namespace>/<scope>/`, parsed. Keys that do not parse are reported in
/// `errors` and otherwise treated as absent, so garbage written by a person or another tool never
/// stops an agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cluster {
    /// The system identifier; `Some("")` while the bootstrapping node is still running initdb.
    pub initialize: Option<String>,
    pub config: Option<DynamicConfig>,
    /// modify revision of `config`, for compare-and-set writes.
    pub config_revision: i64,
    pub leader: Option<Leader>,
    pub members: Vec<Member>,
    pub status: Status,
    pub history: Vec<HistoryEntry>,
    pub failover: Option<Failover>,
    pub sync: Option<SyncState>,
    pub failsafe: Option<BTreeMap<String, String>>,
    pub errors: Vec<String>,
}

impl Cluster {
    pub fn from_keys(keys: &[KeyValue]) -> Cluster {
        let mut c = Cluster::default();
        let mut legacy_optime = None;
        for kv in keys {
            let key = kv.key.trim_start_matches('/');
            let v = kv.value.as_str();
            match key {
                // An empty value means a node won the bootstrap race and is still running initdb.
                "initialize" => c.initialize = Some(v.to_string()),
                "config" => match DynamicConfig::parse(v) {
                    Ok(cfg) => {
                        c.config = Some(cfg);
                        c.config_revision = kv.mod_revision;
                    }
                    Err(e) => {
                        c.config_revision = kv.mod_revision;
                        c.errors.push(e)
                    }
                },
                "leader" => {
                    if !v.is_empty() {
                        c.leader = Some(Leader {
                            name: v.to_string(),
                            lease: kv.lease,
                            mod_revision: kv.mod_revision,
                        })
                    }
                }
                "status" => match serde_json::from_str::<Status>(v) {
                    Ok(s) => c.status = s,
                    Err(e) => c.errors.push(format!("status: not valid JSON ({e})")),
                },
                "optime/leader" => legacy_optime = v.trim().parse::<u64>().ok(),
                "history" => match serde_json::from_str::<Value>(v) {
                    Ok(Value::Array(items)) => {
                        c.history = items.iter().filter_map(HistoryEntry::from_json).collect()
                    }
                    _ => c.errors.push("history: expected a JSON list".to_string()),
                },
                "failover" => {
                    if let Some(f) = parse_failover(v) {
                        if !f.is_empty() {
                            c.failover = Some(f)
                        }
                    } else if !v.trim().is_empty() {
                        c.errors.push("failover: not valid JSON".to_string())
                    }
                }
                "sync" => match serde_json::from_str::<SyncState>(v) {
                    Ok(s) => c.sync = Some(s),
                    Err(e) => c.errors.push(format!("sync: not valid JSON ({e})")),
                },
                "failsafe" => match serde_json::from_str::<BTreeMap<String, String>>(v) {
                    Ok(s) => c.failsafe = Some(s),
                    Err(e) => c.errors.push(format!("failsafe: not valid JSON ({e})")),
                },
                _ => {
                    if let Some(name) = key.strip_prefix("members/") {
                        if !name.is_empty() && !name.contains('/') {
                            let (m, err) = Member::parse(name, v, kv.lease);
                            c.errors.extend(err);
                            c.members.push(m);
                        }
                    }
                }
            }
        }
        if c.status.optime.is_none() {
            c.status.optime = legacy_optime;
        }
        c.members.sort_by(|a, b| a.name.cmp(&b.name));
        c
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    pub fn leader_name(&self) -> Option<&str> {
        self.leader.as_ref().map(|l| l.name.as_str())
    }

    pub fn leader_member(&self) -> Option<&Member> {
        self.leader_name().and_then(|n| self.member(n))
    }

    /// The dynamic configuration's typed view (defaults when the key is missing or bad).
    pub fn policy(&self) -> (crate::ClusterPolicy, Vec<String>) {
        self.config.clone().unwrap_or_default().policy()
    }

    pub fn is_paused(&self) -> bool {
        self.config
            .as_ref()
            .and_then(|c| c.get("pause"))
            .map(|v| crate::tag_is_true(Some(v)))
            .unwrap_or(false)
    }

    /// The last timeline recorded in `history` + 1, i.e. the leader's current timeline as far
    /// as the DCS knows.
    pub fn history_timeline(&self) -> Option<u64> {
        self.history.last().map(|h| h.timeline + 1)
    }
}

fn parse_failover(v: &str) -> Option<Failover> {
    if let Ok(f) = serde_json::from_str::<Failover>(v) {
        return Some(f);
    }
    // Legacy "leader:candidate" form.
    let (l, m) = v.split_once(':')?;
    let none_if_empty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    Some(Failover {
        leader: none_if_empty(l),
        member: none_if_empty(m),
        scheduled_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            lease: 0,
            mod_revision: 1,
        }
    }

    #[test]
    fn parses_patroni_keys() {
        let c = Cluster::from_keys(&[
            kv("initialize", "7710809278050705596"),
            kv("leader", "node3"),
            kv(
                "status",
                r#"{"optime":67108864,"slots":{"node1":67108864},"retain_slots":["node1"]}"#,
            ),
            kv(
                "history",
                r#"[[1,67109200,"no recovery target specified","2026-11-22T01:29:11.388136+00:00","node1"]]"#,
            ),
            kv("failover", "{}"),
            kv(
                "members/node3",
                r#"{"conn_url":"postgres://127.0.0.1:5453/postgres","state":"running","role":"primary"}"#,
            ),
        ]);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(c.leader_name(), Some("node3"));
        assert_eq!(c.status.optime, Some(67108864));
        assert_eq!(c.history[0].new_leader.as_deref(), Some("node1"));
        assert_eq!(c.history_timeline(), Some(2));
        assert!(c.failover.is_none());
        assert!(c.leader_member().is_some());
    }

    #[test]
    fn garbage_is_collected_not_fatal() {
        let c = Cluster::from_keys(&[
            kv("config", "{oops"),
            kv("status", "nope"),
            kv("members/x", "[["),
            kv("leader", "a"),
        ]);
        assert_eq!(c.errors.len(), 3, "{:?}", c.errors);
        assert_eq!(c.leader_name(), Some("a"));
        assert_eq!(c.members.len(), 1);
    }

    #[test]
    fn legacy_failover_string() {
        let c = Cluster::from_keys(&[kv("failover", "a:b")]);
        let f = c.failover.unwrap();
        assert_eq!(
            (f.leader.as_deref(), f.member.as_deref()),
            (Some("a"), Some("b"))
        );
    }
}
