//! Static parameters of the local postgres, and the pure rules that turn dynamic + local
//! configuration into the GUCs we write (config precedence, cluster-wide GUCs, forced values).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use pgha_types::CLUSTER_WIDE_GUCS;
use serde_json::{Map, Value};

use crate::versions::translate_parameters;

/// A database role the agent knows the credentials of.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PgUser {
    pub username: String,
    pub password: Option<String>,
    /// libpq connection options given with the user: `sslmode`, `sslcert`, `sslkey`,
    /// `sslpassword`, `sslrootcert`, `sslcrl`, `sslcrldir`, `sslnegotiation`, `gssencmode`,
    /// `channel_binding` (see [`crate::tls`]).
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for PgUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options: BTreeMap<&str, &str> = self
            .options
            .iter()
            .map(|(k, v)| {
                let v = if k == "sslpassword" { "<redacted>" } else { v };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("PgUser")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("options", &options)
            .finish()
    }
}

/// Everything this crate needs to know about the local PostgreSQL; fixed for the agent's life
/// but for the database users, which a reload replaces ([`crate::LocalPostgres::reload_users`]).
#[derive(Debug, Clone)]
pub struct PgParams {
    /// Member name: used as application_name of the WAL receiver and for slot names.
    pub name: String,
    /// Cluster name (scope): becomes the `cluster_name` GUC.
    pub scope: String,
    pub data_dir: PathBuf,
    /// Where postgresql.conf / pg_hba.conf live (usually equal to `data_dir`).
    pub config_dir: PathBuf,
    /// Directory of the PostgreSQL binaries, e.g. /usr/lib/postgresql/15/bin.
    pub bin_dir: PathBuf,
    /// Value of `listen_addresses`: "127.0.0.1", "*", "a,b".
    pub listen_addresses: String,
    pub port: u16,
    /// Host the agent itself uses to connect (127.0.0.1 when listening on a wildcard); a path
    /// starting with '/' means a unix socket directory.
    pub local_host: String,
    pub superuser: PgUser,
    pub replication: PgUser,
    pub rewind: Option<PgUser>,
    /// pgpass file this crate writes for libpq-based tools and for primary_conninfo (mode 0600).
    pub pgpass: PathBuf,
    pub pg_ctl_timeout: Duration,
    /// Where the postmaster's stderr goes (pg_ctl -l); should be outside `data_dir`.
    pub log_file: PathBuf,
    /// Ready-made initdb arguments, e.g. ["--encoding=UTF8", "--data-checksums"].
    pub initdb_options: Vec<String>,
    /// Ready-made pg_basebackup arguments; empty means ["--checkpoint=fast", "--wal-method=stream"].
    pub basebackup_options: Vec<String>,
}

/// Upper bounds for the long-running operations; every external command is bounded by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    pub initdb: Duration,
    pub basebackup: Duration,
    pub rewind: Duration,
    pub crash_recovery: Duration,
    pub post_bootstrap: Duration,
    /// An operator's bootstrap or replica creation command, and the recovery after a custom
    /// bootstrap (restores of large backups take hours).
    pub custom_method: Duration,
    /// Short commands: pg_ctl reload, pg_controldata, pg_isready.
    pub short_command: Duration,
    /// A whole `probe()` (connect + query).
    pub probe: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            initdb: Duration::from_secs(300),
            basebackup: Duration::from_secs(12 * 3600),
            rewind: Duration::from_secs(3600),
            crash_recovery: Duration::from_secs(3600),
            post_bootstrap: Duration::from_secs(1800),
            custom_method: Duration::from_secs(24 * 3600),
            short_command: Duration::from_secs(30),
            probe: Duration::from_secs(2),
        }
    }
}

/// GUCs that are always set by the agent and go on the postmaster command line.
pub const FORCED_GUCS: &[&str] = &["listen_addresses", "port", "cluster_name", "hot_standby"];

/// GUCs a user may not set through `parameters`: they would break how we locate files.
const REJECTED_GUCS: &[&str] = &["config_file", "data_directory"];

/// Accepted values of `wal_level` for a replicated cluster (hot_standby is an alias of replica
/// that PostgreSQL 15 still accepts).
const VALID_WAL_LEVELS: &[&str] = &["hot_standby", "replica", "logical"];

/// Render a JSON configuration value as a GUC value: booleans become on/off, numbers and
/// strings are used as they are; `null` means "not set".
pub fn render_value(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bool(true) => Some("on".into()),
        Value::Bool(false) => Some("off".into()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn is_cluster_wide(name: &str) -> bool {
    CLUSTER_WIDE_GUCS.iter().any(|(n, _, _)| *n == name)
}

/// Merge dynamic and local `postgresql.parameters` into (postgresql.conf GUCs, command-line
/// GUCs).
///
/// * Local values override dynamic ones, except the cluster-wide GUCs
///   ([`pgha_types::CLUSTER_WIDE_GUCS`]), which come only from `dynamic`: the default when
///   missing or unusable, raised to the minimum when below it.
/// * The cluster-wide GUCs go on the command line (so they beat ALTER SYSTEM), except
///   `wal_keep_size` which goes to postgresql.conf.
/// * `listen_addresses`, `port`, `cluster_name` (= scope) and `hot_standby = on` are forced and
///   also go on the command line; values for them in either map are ignored.
/// * `config_file` and `data_directory` are ignored (the agent decides where files live).
/// * Both maps are first translated for PostgreSQL `major` ([`translate_parameters`]; 0 =
///   unknown, no translation): `wal_keep_segments: 8` is `wal_keep_size = 128MB` on 13+.
pub fn build_parameters(
    dynamic: &Map<String, Value>,
    local: &Map<String, Value>,
    listen_addresses: &str,
    port: u16,
    scope: &str,
    major: u32,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let dynamic = &translate_parameters(dynamic, major);
    let local = &translate_parameters(local, major);
    let mut conf = BTreeMap::new();
    for (name, value) in dynamic.iter().chain(local.iter()) {
        if is_cluster_wide(name)
            || FORCED_GUCS.contains(&name.as_str())
            || REJECTED_GUCS.contains(&name.as_str())
        {
            continue;
        }
        match render_value(value) {
            Some(v) => {
                conf.insert(name.clone(), v);
            }
            None => {
                // A local null removes a dynamic value.
                conf.remove(name);
            }
        }
    }

    let mut cmdline = BTreeMap::new();
    for (name, default, minimum) in CLUSTER_WIDE_GUCS {
        let value = cluster_wide_value(name, dynamic.get(*name), default, *minimum);
        if *name == "wal_keep_size" {
            conf.insert(name.to_string(), value);
        } else {
            cmdline.insert(name.to_string(), value);
        }
    }
    cmdline.insert("listen_addresses".into(), listen_addresses.to_string());
    cmdline.insert("port".into(), port.to_string());
    cmdline.insert("cluster_name".into(), scope.to_string());
    cmdline.insert("hot_standby".into(), "on".into());
    (conf, cmdline)
}

fn cluster_wide_value(
    name: &str,
    given: Option<&Value>,
    default: &str,
    minimum: Option<i64>,
) -> String {
    let Some(value) = given.and_then(render_value) else {
        return default.to_string();
    };
    if name == "wal_level" {
        let lower = value.trim().to_ascii_lowercase();
        if !VALID_WAL_LEVELS.contains(&lower.as_str()) {
            tracing::warn!(value = %value, default, "wal_level must allow replication; using the default");
            return default.to_string();
        }
        return lower;
    }
    match minimum {
        Some(min) => match value.trim().parse::<i64>() {
            Ok(n) if n < min => {
                tracing::warn!(
                    parameter = name,
                    value = n,
                    minimum = min,
                    "value below the minimum; raised"
                );
                min.to_string()
            }
            Ok(n) => n.to_string(),
            Err(_) => {
                tracing::warn!(parameter = name, value = %value, default, "not an integer; using the default");
                default.to_string()
            }
        },
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("test input is an object")
    }

    #[test]
    fn local_overrides_dynamic_except_cluster_wide() {
        let dynamic = map(json!({
            "shared_buffers": "64MB",
            "work_mem": "4MB",
            "max_connections": 200,
            "wal_level": "logical",
            "wal_log_hints": true,
        }));
        let local = map(json!({
            "work_mem": "8MB",
            "max_connections": 500,
            "wal_level": "minimal",
            "unix_socket_directories": "/tmp",
            "port": 9999,
            "data_directory": "/elsewhere",
        }));
        let (conf, cmd) = build_parameters(&dynamic, &local, "*", 5432, "demo", 15);
        assert_eq!(conf["shared_buffers"], "64MB");
        assert_eq!(conf["work_mem"], "8MB");
        assert_eq!(conf["unix_socket_directories"], "/tmp");
        assert!(!conf.contains_key("max_connections"));
        assert!(!conf.contains_key("port"));
        assert!(!conf.contains_key("data_directory"));
        assert_eq!(cmd["max_connections"], "200");
        assert_eq!(cmd["wal_level"], "logical");
        assert_eq!(cmd["wal_log_hints"], "on");
        assert_eq!(cmd["port"], "5432");
    }

    #[test]
    fn cluster_wide_defaults_minimums_and_placement() {
        let dynamic = map(json!({
            "max_connections": "10",
            "max_wal_senders": 1,
            "max_replication_slots": "abc",
            "max_prepared_transactions": "-5",
            "wal_level": "minimal",
        }));
        let (conf, cmd) = build_parameters(&dynamic, &Map::new(), "127.0.0.1", 5433, "scope1", 15);
        assert_eq!(cmd["max_connections"], "25");
        assert_eq!(cmd["max_wal_senders"], "3");
        assert_eq!(cmd["max_replication_slots"], "10");
        assert_eq!(cmd["max_prepared_transactions"], "0");
        assert_eq!(cmd["max_locks_per_transaction"], "64");
        assert_eq!(cmd["max_worker_processes"], "8");
        assert_eq!(cmd["wal_level"], "hot_standby");
        assert_eq!(cmd["track_commit_timestamp"], "off");
        assert_eq!(cmd["wal_log_hints"], "on");
        assert!(!cmd.contains_key("wal_keep_size"));
        assert_eq!(conf["wal_keep_size"], "128MB");
        assert_eq!(cmd["listen_addresses"], "127.0.0.1");
        assert_eq!(cmd["port"], "5433");
        assert_eq!(cmd["cluster_name"], "scope1");
        assert_eq!(cmd["hot_standby"], "on");
        assert_eq!(conf.len(), 1, "only wal_keep_size: {conf:?}");
    }

    #[test]
    fn forced_values_ignore_user_input() {
        let dynamic =
            map(json!({"hot_standby": "off", "cluster_name": "x", "listen_addresses": "0.0.0.0"}));
        let (conf, cmd) = build_parameters(&dynamic, &Map::new(), "*", 1, "s", 15);
        assert_eq!(cmd["hot_standby"], "on");
        assert_eq!(cmd["cluster_name"], "s");
        assert_eq!(cmd["listen_addresses"], "*");
        assert!(!conf.contains_key("hot_standby"));
    }

    #[test]
    fn local_null_removes_dynamic_value_and_values_render() {
        let dynamic =
            map(json!({"archive_mode": true, "archive_command": "cp %p /a/%f", "x": 1.5}));
        let local = map(json!({"archive_mode": null, "y": false}));
        let (conf, _) = build_parameters(&dynamic, &local, "*", 1, "s", 15);
        assert!(!conf.contains_key("archive_mode"));
        assert_eq!(conf["archive_command"], "cp %p /a/%f");
        assert_eq!(conf["x"], "1.5");
        assert_eq!(conf["y"], "off");
    }

    #[test]
    fn sample_wal_keep_segments_reaches_postgres_as_wal_keep_size() {
        let dynamic = map(json!({"wal_keep_segments": 8, "wal_level": "hot_standby"}));
        let (conf, cmd) = build_parameters(&dynamic, &Map::new(), "*", 1, "s", 15);
        assert_eq!(conf["wal_keep_size"], "128MB");
        assert!(!conf.contains_key("wal_keep_segments"));
        assert_eq!(cmd["wal_level"], "replica");
        let (conf, _) = build_parameters(&dynamic, &Map::new(), "*", 1, "s", 0);
        assert_eq!(
            conf["wal_keep_segments"], "8",
            "unknown version: left as written"
        );
    }
}
