use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The dynamic configuration as stored in the DCS `config` key: kept as the JSON object the
/// operator wrote (unknown keys included) so writing it back never loses anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DynamicConfig(pub Map<String, Value>);

/// GUCs that must be equal on every member; Patroni takes them only from the dynamic
/// configuration and passes them on the postgres command line. (name, default, minimum)
pub const CLUSTER_WIDE_GUCS: &[(&str, &str, Option<i64>)] = &[
    ("max_connections", "100", Some(25)),
    ("max_locks_per_transaction", "64", Some(32)),
    ("max_worker_processes", "8", Some(2)),
    ("max_prepared_transactions", "0", Some(0)),
    ("wal_level", "hot_standby", None),
    ("track_commit_timestamp", "off", None),
    ("max_wal_senders", "10", Some(3)),
    ("max_replication_slots", "10", Some(4)),
    ("wal_keep_size", "128MB", None),
    ("wal_log_hints", "on", None),
];

/// The typed view of the dynamic configuration the HA loop runs with, after defaults and the
/// timing rules are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterPolicy {
    pub ttl: u64,
    pub loop_wait: u64,
    pub retry_timeout: u64,
    pub maximum_lag_on_failover: u64,
    pub primary_start_timeout: u64,
    pub pause: bool,
    pub check_timeline: bool,
    pub use_pg_rewind: bool,
    pub use_slots: bool,
    pub failsafe_mode: bool,
    /// `synchronous_mode: true` (or `on`, `quorum`): the leader names synchronous standbys.
    pub synchronous_mode: bool,
    /// `synchronous_mode: quorum`: `ANY k (...)` quorum commit instead of `FIRST k`.
    pub synchronous_quorum: bool,
    /// Without a synchronous standby, block commits (`synchronous_standby_names = '*'`) rather
    /// than fall back to asynchronous replication.
    pub synchronous_mode_strict: bool,
    /// How many synchronous standbys to name (lowered to the number of eligible ones).
    pub synchronous_node_count: u64,
    /// A standby further behind than this many bytes is not chosen as synchronous; 0 = off.
    pub maximum_lag_on_syncnode: u64,
    /// `member_slots_ttl` in seconds: how long the leader keeps the slot of a member whose
    /// key is gone (0: dropped at once).
    pub member_slots_ttl: u64,
    /// `standby_cluster`: this cluster replicates from a remote primary; its leader is a
    /// standby leader.
    pub standby_cluster: Option<StandbyCluster>,
    pub parameters: Map<String, Value>,
    pub pg_hba: Option<Vec<String>>,
    /// `postgresql.recovery_conf`: settings a standby runs with (restore_command, ...).
    pub recovery_conf: Map<String, Value>,
    /// `slots`: replication slots the cluster keeps whoever leads (valid entries only).
    pub permanent_slots: Vec<crate::PermanentSlot>,
    /// `ignore_slots`: slots the agent never drops.
    pub ignore_slots: Vec<crate::SlotMatcher>,
}

impl Default for ClusterPolicy {
    fn default() -> Self {
        ClusterPolicy {
            ttl: 30,
            loop_wait: 10,
            retry_timeout: 10,
            maximum_lag_on_failover: 1_048_576,
            primary_start_timeout: 300,
            pause: false,
            check_timeline: false,
            use_pg_rewind: false,
            use_slots: true,
            failsafe_mode: false,
            synchronous_mode: false,
            synchronous_quorum: false,
            synchronous_mode_strict: false,
            synchronous_node_count: 1,
            maximum_lag_on_syncnode: 0,
            member_slots_ttl: 1800,
            standby_cluster: None,
            parameters: Map::new(),
            pg_hba: None,
            recovery_conf: Map::new(),
            permanent_slots: Vec::new(),
            ignore_slots: Vec::new(),
        }
    }
}

/// Where a standby cluster's leader replicates from, and how (`standby_cluster`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StandbyCluster {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub primary_slot_name: Option<String>,
    pub restore_command: Option<String>,
    pub archive_cleanup_command: Option<String>,
    pub recovery_min_apply_delay: Option<String>,
    pub create_replica_methods: Vec<String>,
}

impl StandbyCluster {
    /// Reads the `standby_cluster` section: None when absent or null, an error naming the
    /// problem when it can be neither streamed nor restored from.
    pub fn parse(v: Option<&Value>) -> Result<Option<StandbyCluster>, String> {
        let m = match v {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(m)) if m.is_empty() => return Ok(None),
            Some(Value::Object(m)) => m,
            Some(other) => return Err(format!("standby_cluster: {other} is not a mapping")),
        };
        let text = |k: &str| -> Option<String> {
            match m.get(k) {
                Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            }
        };
        let port = match m.get("port") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                as_u64(v)
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("standby_cluster.port: {v} is not a port number"))?,
            ),
        };
        let sc = StandbyCluster {
            host: text("host"),
            port,
            primary_slot_name: text("primary_slot_name"),
            restore_command: text("restore_command"),
            archive_cleanup_command: text("archive_cleanup_command"),
            recovery_min_apply_delay: text("recovery_min_apply_delay"),
            create_replica_methods: match m.get("create_replica_methods") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            },
        };
        if sc.host.is_none() && sc.restore_command.is_none() {
            return Err(
                "standby_cluster: needs host (to stream from) or restore_command (to restore from)"
                    .into(),
            );
        }
        Ok(Some(sc))
    }
}

/// Minimum values pgha accepts. Lower than Patroni's (ttl 20) on purpose: failover speed is
/// bounded by ttl, and etcd leases are exact enough for shorter ones.
pub const MIN_TTL: u64 = 5;
pub const MIN_LOOP_WAIT: u64 = 1;
pub const MIN_RETRY_TIMEOUT: u64 = 2;

impl DynamicConfig {
    pub fn parse(raw: &str) -> Result<DynamicConfig, String> {
        match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(m)) => Ok(DynamicConfig(m)),
            Ok(_) => Err("config: expected a JSON object".to_string()),
            Err(e) => Err(format!("config: not valid JSON ({e})")),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Typed policy plus warnings for values that were out of range and adjusted.
    pub fn policy(&self) -> (ClusterPolicy, Vec<String>) {
        let mut p = ClusterPolicy::default();
        let mut warnings = Vec::new();
        let m = &self.0;
        let num = |key: &str, target: &mut u64, warnings: &mut Vec<String>| {
            if let Some(v) = m.get(key) {
                match as_u64(v) {
                    Some(n) => *target = n,
                    None => warnings.push(format!("{key}: {v} is not a number, using {target}")),
                }
            }
        };
        num("ttl", &mut p.ttl, &mut warnings);
        num("loop_wait", &mut p.loop_wait, &mut warnings);
        num("retry_timeout", &mut p.retry_timeout, &mut warnings);
        num(
            "maximum_lag_on_failover",
            &mut p.maximum_lag_on_failover,
            &mut warnings,
        );
        num(
            "primary_start_timeout",
            &mut p.primary_start_timeout,
            &mut warnings,
        );
        if !m.contains_key("primary_start_timeout") {
            num(
                "master_start_timeout",
                &mut p.primary_start_timeout,
                &mut warnings,
            );
        }
        let flag = |v: Option<&Value>, default: bool| {
            if v.is_some() {
                crate::member::tag_is_true(v)
            } else {
                default
            }
        };
        p.pause = flag(m.get("pause"), false);
        p.check_timeline = flag(m.get("check_timeline"), false);
        p.failsafe_mode = flag(m.get("failsafe_mode"), false);
        let quorum = matches!(m.get("synchronous_mode"), Some(Value::String(s)) if s.eq_ignore_ascii_case("quorum"));
        p.synchronous_mode = quorum || flag(m.get("synchronous_mode"), false);
        p.synchronous_quorum = quorum;
        p.synchronous_mode_strict = flag(m.get("synchronous_mode_strict"), false);
        num(
            "synchronous_node_count",
            &mut p.synchronous_node_count,
            &mut warnings,
        );
        if p.synchronous_node_count == 0 {
            warnings.push("synchronous_node_count: 0 is below the minimum 1, using 1".into());
            p.synchronous_node_count = 1;
        }
        // Patroni's default is -1; zero and negative values both mean "never swap".
        match m.get("maximum_lag_on_syncnode") {
            None | Some(Value::Null) => {}
            Some(v) => match v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            {
                Some(n) => p.maximum_lag_on_syncnode = n.max(0) as u64,
                None => warnings.push(format!(
                    "maximum_lag_on_syncnode: {v} is not a number, using -1 (off)"
                )),
            },
        }
        match m.get("member_slots_ttl") {
            None | Some(Value::Null) => {}
            Some(v) => match duration_secs(v) {
                Some(n) => p.member_slots_ttl = n,
                None => warnings.push(format!(
                    "member_slots_ttl: {v} is not a duration (seconds, or e.g. 30min), using {}",
                    p.member_slots_ttl
                )),
            },
        }
        match StandbyCluster::parse(m.get("standby_cluster")) {
            Ok(sc) => p.standby_cluster = sc,
            Err(e) => warnings.push(format!("{e}; this cluster runs its own primary")),
        }
        if let Some(Value::Object(pg)) = m.get("postgresql") {
            p.use_pg_rewind = flag(pg.get("use_pg_rewind"), false);
            p.use_slots = flag(pg.get("use_slots"), true);
            if let Some(Value::Object(params)) = pg.get("parameters") {
                p.parameters = params.clone();
            }
            if let Some(Value::Object(rc)) = pg.get("recovery_conf") {
                p.recovery_conf = rc.clone();
            }
            if let Some(Value::Array(hba)) = pg.get("pg_hba") {
                p.pg_hba = Some(
                    hba.iter()
                        .filter_map(|l| l.as_str().map(str::to_string))
                        .collect(),
                );
            }
        }
        let (slots, slot_warnings) = crate::parse_permanent_slots(m);
        p.permanent_slots = slots;
        warnings.extend(slot_warnings);
        let (ignore, ignore_warnings) = crate::parse_ignore_slots(m.get("ignore_slots"));
        p.ignore_slots = ignore;
        warnings.extend(ignore_warnings);
        warnings.extend(adjust_timings(&mut p));
        (p, warnings)
    }
}

/// Brings ttl / loop_wait / retry_timeout into a combination that can work:
/// `loop_wait + 2 * retry_timeout <= ttl`, so a leader that fails one renewal still has time to
/// retry and demote before its lock expires.
fn adjust_timings(p: &mut ClusterPolicy) -> Vec<String> {
    let mut w = Vec::new();
    if p.ttl < MIN_TTL {
        w.push(format!(
            "ttl={} can't be smaller than {MIN_TTL}, adjusting...",
            p.ttl
        ));
        p.ttl = MIN_TTL;
    }
    if p.loop_wait < MIN_LOOP_WAIT {
        w.push(format!(
            "loop_wait={} can't be smaller than {MIN_LOOP_WAIT}, adjusting...",
            p.loop_wait
        ));
        p.loop_wait = MIN_LOOP_WAIT;
    }
    if p.retry_timeout < MIN_RETRY_TIMEOUT {
        w.push(format!(
            "retry_timeout={} can't be smaller than {MIN_RETRY_TIMEOUT}, adjusting...",
            p.retry_timeout
        ));
        p.retry_timeout = MIN_RETRY_TIMEOUT;
    }
    if p.loop_wait + 2 * p.retry_timeout > p.ttl {
        let old = (p.loop_wait, p.retry_timeout);
        p.retry_timeout = ((p.ttl.saturating_sub(p.loop_wait)) / 2).max(MIN_RETRY_TIMEOUT);
        if p.loop_wait + 2 * p.retry_timeout > p.ttl {
            p.loop_wait = p.ttl.saturating_sub(2 * p.retry_timeout).max(MIN_LOOP_WAIT);
        }
        w.push(format!(
            "loop_wait={} + 2*retry_timeout={} must not exceed ttl={}, using loop_wait={} retry_timeout={}",
            old.0, old.1, p.ttl, p.loop_wait, p.retry_timeout
        ));
    }
    w
}

/// Timing combinations a write of the dynamic configuration must satisfy; the message names the
/// offending key.
pub fn check_timings(ttl: u64, loop_wait: u64, retry_timeout: u64) -> Result<(), String> {
    if ttl < MIN_TTL {
        return Err(format!("ttl: {ttl} is below the minimum of {MIN_TTL}"));
    }
    if loop_wait < MIN_LOOP_WAIT {
        return Err(format!(
            "loop_wait: {loop_wait} is below the minimum of {MIN_LOOP_WAIT}"
        ));
    }
    if retry_timeout < MIN_RETRY_TIMEOUT {
        return Err(format!(
            "retry_timeout: {retry_timeout} is below the minimum of {MIN_RETRY_TIMEOUT}"
        ));
    }
    if loop_wait + 2 * retry_timeout > ttl {
        return Err(format!(
            "ttl: {ttl} is too small for loop_wait={loop_wait} and retry_timeout={retry_timeout} (need loop_wait + 2*retry_timeout <= ttl)"
        ));
    }
    Ok(())
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A duration as Patroni reads one: a number of seconds, or a number with a unit (`ms`, `s`,
/// `min`, `h`, `d`).
fn duration_secs(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let s = v.as_str()?.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000,
        "min" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return None,
    };
    Some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_reads_patroni_config() {
        let c = DynamicConfig::parse(r#"{"ttl":20,"loop_wait":1,"retry_timeout":3,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true,"use_slots":true,"parameters":{"max_connections":100}}}"#).unwrap();
        let (p, w) = c.policy();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!((p.ttl, p.loop_wait, p.retry_timeout), (20, 1, 3));
        assert!(p.use_pg_rewind && p.use_slots);
        assert_eq!(p.parameters["max_connections"], 100);
    }

    #[test]
    fn member_slots_ttl_reads_seconds_and_units() {
        let ttl = |v: &str| {
            let (p, w) = DynamicConfig::parse(&format!(r#"{{"member_slots_ttl":{v}}}"#))
                .unwrap()
                .policy();
            (p.member_slots_ttl, w.len())
        };
        assert_eq!(
            DynamicConfig::parse("{}")
                .unwrap()
                .policy()
                .0
                .member_slots_ttl,
            1800
        );
        assert_eq!(ttl("0"), (0, 0));
        assert_eq!(ttl("600"), (600, 0));
        assert_eq!(ttl(r#""30min""#), (1800, 0));
        assert_eq!(ttl(r#""2h""#), (7200, 0));
        assert_eq!(ttl(r#""45s""#), (45, 0));
        assert_eq!(ttl(r#""soon""#), (1800, 1));
    }

    #[test]
    fn impossible_timings_are_adjusted_with_a_warning() {
        let c = DynamicConfig::parse(r#"{"ttl":6,"loop_wait":2,"retry_timeout":10}"#).unwrap();
        let (p, w) = c.policy();
        assert!(p.loop_wait + 2 * p.retry_timeout <= p.ttl, "{p:?}");
        assert_eq!(w.len(), 1);
        assert!(check_timings(6, 2, 10).unwrap_err().starts_with("ttl:"));
        assert!(check_timings(10, 1, 3).is_ok());
    }

    #[test]
    fn unimplemented_modes_are_named_in_warnings() {
        let c = DynamicConfig::parse(
            r#"{"synchronous_mode":true,"standby_cluster":{"host":"10.0.0.1","port":5432}}"#,
        )
        .unwrap();
        let (p, w) = c.policy();
        assert!(p.synchronous_mode);
        assert!(w.is_empty(), "{w:?}");
        let sc = p.standby_cluster.expect("a standby cluster");
        assert_eq!(
            (sc.host.as_deref(), sc.port),
            (Some("10.0.0.1"), Some(5432))
        );
        let (p, w) = DynamicConfig::parse(r#"{"standby_cluster":{"primary_slot_name":"x"}}"#)
            .unwrap()
            .policy();
        assert!(p.standby_cluster.is_none());
        assert!(w[0].contains("needs host"), "{w:?}");
        let (_, w) = DynamicConfig::parse(r#"{"standby_cluster":{"host":"h","port":"x"}}"#)
            .unwrap()
            .policy();
        assert!(w[0].starts_with("standby_cluster.port"), "{w:?}");
        let (_, w) = DynamicConfig::parse(r#"{"synchronous_mode":false}"#)
            .unwrap()
            .policy();
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn synchronous_mode_settings() {
        let c = DynamicConfig::parse(
            r#"{"synchronous_mode":"on","synchronous_mode_strict":true,"synchronous_node_count":2,"maximum_lag_on_syncnode":-1}"#,
        )
        .unwrap();
        let (p, w) = c.policy();
        assert!(w.is_empty(), "{w:?}");
        assert!(p.synchronous_mode && p.synchronous_mode_strict);
        assert_eq!(
            (p.synchronous_node_count, p.maximum_lag_on_syncnode),
            (2, 0)
        );
        let (p, w) = DynamicConfig::parse(
            r#"{"synchronous_mode":"quorum","synchronous_node_count":0,"maximum_lag_on_syncnode":"1048576"}"#,
        )
        .unwrap()
        .policy();
        assert!(p.synchronous_mode && p.synchronous_quorum);
        assert_eq!(
            (p.synchronous_node_count, p.maximum_lag_on_syncnode),
            (1, 1_048_576)
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("synchronous_node_count"));
    }

    #[test]
    fn non_object_is_an_error() {
        assert!(DynamicConfig::parse("[1]").is_err());
        assert!(DynamicConfig::parse("{bad").is_err());
    }
}
