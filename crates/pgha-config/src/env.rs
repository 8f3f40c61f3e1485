//! `PATRONI_*` environment variables, turned into a patch of the configuration tree.
//!
//! The environment is read through a lookup function so tests never touch the process
//! environment. Empty values are ignored, as Patroni does.

use std::path::Path;

use serde_json::{Map, Value};

use crate::reader::{parse_bool, split_commas};
use crate::schema::{ETCD, PG_USER};

/// The variable holding a whole YAML configuration.
pub const PATRONI_CONFIGURATION: &str = "PATRONI_CONFIGURATION";

#[derive(Clone, Copy)]
enum Kind {
    /// Kept as a string; numbers and booleans are parsed later by the typed readers.
    Text,
    /// `a,b` or a YAML list (`'h1:2379','h2:2379'` or `[h1, h2]`).
    List,
    /// A YAML mapping (`{foo: bar}`).
    Mapping,
    /// `true`/`false`/`on`/... become a boolean, anything else stays text.
    Flag,
    /// A whole number becomes a number, anything else stays text.
    Number,
}

const SIMPLE: &[(&str, &[&str], Kind)] = &[
    ("NAME", &["name"], Kind::Text),
    ("NAMESPACE", &["namespace"], Kind::Text),
    ("SCOPE", &["scope"], Kind::Text),
    ("LOG_TYPE", &["log", "type"], Kind::Text),
    ("LOG_LEVEL", &["log", "level"], Kind::Text),
    (
        "LOG_TRACEBACK_LEVEL",
        &["log", "traceback_level"],
        Kind::Text,
    ),
    ("LOG_FORMAT", &["log", "format"], Kind::Text),
    ("LOG_DATEFORMAT", &["log", "dateformat"], Kind::Text),
    (
        "LOG_STATIC_FIELDS",
        &["log", "static_fields"],
        Kind::Mapping,
    ),
    ("LOG_MAX_QUEUE_SIZE", &["log", "max_queue_size"], Kind::Text),
    ("LOG_DIR", &["log", "dir"], Kind::Text),
    ("LOG_MODE", &["log", "mode"], Kind::Text),
    ("LOG_FILE_NUM", &["log", "file_num"], Kind::Text),
    ("LOG_FILE_SIZE", &["log", "file_size"], Kind::Text),
    ("LOG_LOGGERS", &["log", "loggers"], Kind::Mapping),
    (
        "LOG_DEDUPLICATE_HEARTBEAT_LOGS",
        &["log", "deduplicate_heartbeat_logs"],
        Kind::Text,
    ),
    ("RESTAPI_LISTEN", &["restapi", "listen"], Kind::Text),
    (
        "RESTAPI_CONNECT_ADDRESS",
        &["restapi", "connect_address"],
        Kind::Text,
    ),
    (
        "RESTAPI_USERNAME",
        &["restapi", "authentication", "username"],
        Kind::Text,
    ),
    (
        "RESTAPI_PASSWORD",
        &["restapi", "authentication", "password"],
        Kind::Text,
    ),
    ("RESTAPI_CERTFILE", &["restapi", "certfile"], Kind::Text),
    ("RESTAPI_KEYFILE", &["restapi", "keyfile"], Kind::Text),
    (
        "RESTAPI_KEYFILE_PASSWORD",
        &["restapi", "keyfile_password"],
        Kind::Text,
    ),
    ("RESTAPI_CAFILE", &["restapi", "cafile"], Kind::Text),
    ("RESTAPI_CIPHERS", &["restapi", "ciphers"], Kind::Text),
    (
        "RESTAPI_VERIFY_CLIENT",
        &["restapi", "verify_client"],
        Kind::Text,
    ),
    ("RESTAPI_ALLOWLIST", &["restapi", "allowlist"], Kind::List),
    (
        "RESTAPI_ALLOWLIST_INCLUDE_MEMBERS",
        &["restapi", "allowlist_include_members"],
        Kind::Text,
    ),
    (
        "RESTAPI_HTTP_EXTRA_HEADERS",
        &["restapi", "http_extra_headers"],
        Kind::Mapping,
    ),
    (
        "RESTAPI_HTTPS_EXTRA_HEADERS",
        &["restapi", "https_extra_headers"],
        Kind::Mapping,
    ),
    (
        "RESTAPI_REQUEST_QUEUE_SIZE",
        &["restapi", "request_queue_size"],
        Kind::Text,
    ),
    (
        "RESTAPI_SERVER_TOKENS",
        &["restapi", "server_tokens"],
        Kind::Text,
    ),
    (
        "CTL_USERNAME",
        &["ctl", "authentication", "username"],
        Kind::Text,
    ),
    (
        "CTL_PASSWORD",
        &["ctl", "authentication", "password"],
        Kind::Text,
    ),
    ("CTL_INSECURE", &["ctl", "insecure"], Kind::Text),
    ("CTL_CACERT", &["ctl", "cacert"], Kind::Text),
    ("CTL_CERTFILE", &["ctl", "certfile"], Kind::Text),
    ("CTL_KEYFILE", &["ctl", "keyfile"], Kind::Text),
    (
        "CTL_KEYFILE_PASSWORD",
        &["ctl", "keyfile_password"],
        Kind::Text,
    ),
    ("POSTGRESQL_LISTEN", &["postgresql", "listen"], Kind::Text),
    (
        "POSTGRESQL_CONNECT_ADDRESS",
        &["postgresql", "connect_address"],
        Kind::Text,
    ),
    (
        "POSTGRESQL_PROXY_ADDRESS",
        &["postgresql", "proxy_address"],
        Kind::Text,
    ),
    (
        "POSTGRESQL_DATA_DIR",
        &["postgresql", "data_dir"],
        Kind::Text,
    ),
    (
        "POSTGRESQL_CONFIG_DIR",
        &["postgresql", "config_dir"],
        Kind::Text,
    ),
    ("POSTGRESQL_BIN_DIR", &["postgresql", "bin_dir"], Kind::Text),
    ("POSTGRESQL_PGPASS", &["postgresql", "pgpass"], Kind::Text),
    ("NOFAILOVER", &["tags", "nofailover"], Kind::Flag),
    ("NOLOADBALANCE", &["tags", "noloadbalance"], Kind::Flag),
    ("CLONEFROM", &["tags", "clonefrom"], Kind::Flag),
    ("NOSYNC", &["tags", "nosync"], Kind::Flag),
    ("NOSTREAM", &["tags", "nostream"], Kind::Flag),
    ("REPLICATEFROM", &["tags", "replicatefrom"], Kind::Text),
    (
        "FAILOVER_PRIORITY",
        &["tags", "failover_priority"],
        Kind::Number,
    ),
    ("SYNC_PRIORITY", &["tags", "sync_priority"], Kind::Number),
    // Other DCS: only so that the configuration says clearly that they are not supported.
    ("CONSUL_HOST", &["consul", "host"], Kind::Text),
    ("CONSUL_URL", &["consul", "url"], Kind::Text),
    ("ZOOKEEPER_HOSTS", &["zookeeper", "hosts"], Kind::List),
    ("EXHIBITOR_HOSTS", &["exhibitor", "hosts"], Kind::List),
    ("RAFT_SELF_ADDR", &["raft", "self_addr"], Kind::Text),
];

const BIN_NAMES: &[&str] = &[
    "pg_ctl",
    "initdb",
    "pg_controldata",
    "pg_basebackup",
    "postgres",
    "pg_isready",
    "pg_rewind",
];

/// The configuration patch the `PATRONI_*` variables describe (without `PATRONI_CONFIGURATION`).
pub(crate) fn overrides(env: &dyn Fn(&str) -> Option<String>) -> Map<String, Value> {
    let mut patch = Map::new();
    let mut apply = |var: String, path: &[&str], kind: Kind| {
        if let Some(raw) = env(&var).filter(|v| !v.trim().is_empty()) {
            set(&mut patch, path, convert(&raw, kind));
        }
    };
    for (suffix, path, kind) in SIMPLE {
        apply(format!("PATRONI_{suffix}"), path, *kind);
    }
    for bin in BIN_NAMES {
        let var = format!("PATRONI_POSTGRESQL_BIN_{}", bin.to_ascii_uppercase());
        apply(var, &["postgresql", "bin_name", bin], Kind::Text);
    }
    for user in ["superuser", "replication", "rewind"] {
        for key in PG_USER {
            let var = format!(
                "PATRONI_{}_{}",
                user.to_ascii_uppercase(),
                key.to_ascii_uppercase()
            );
            apply(
                var,
                &["postgresql", "authentication", user, key],
                Kind::Text,
            );
        }
    }
    for section in ["etcd3", "etcd"] {
        for key in ETCD {
            let var = format!(
                "PATRONI_{}_{}",
                section.to_ascii_uppercase(),
                key.to_ascii_uppercase()
            );
            let kind = if *key == "hosts" {
                Kind::List
            } else {
                Kind::Text
            };
            apply(var, &[section, key], kind);
        }
    }
    patch
}

fn convert(raw: &str, kind: Kind) -> Value {
    match kind {
        Kind::Text => Value::String(raw.to_string()),
        Kind::List => Value::Array(parse_list(raw).into_iter().map(Value::String).collect()),
        Kind::Mapping => match crate::source::parse_yaml(raw, Path::new("environment")) {
            Ok(p) => Value::Object(p.tree),
            Err(_) => Value::String(raw.to_string()),
        },
        Kind::Flag => parse_bool(raw).map_or_else(|| Value::String(raw.to_string()), Value::Bool),
        Kind::Number => raw
            .trim()
            .parse::<i64>()
            .map_or_else(|_| Value::String(raw.to_string()), Value::from),
    }
}

/// `h1:2379,h2:2379`, `'h1:2379','h2:2379'` (Patroni's documented form) or `[h1, h2]`.
fn parse_list(raw: &str) -> Vec<String> {
    let t = raw.trim();
    let yaml = if t.starts_with('[') {
        Some(t.to_string())
    } else if t.contains('\'') || t.contains('"') {
        Some(format!("[{t}]"))
    } else {
        None
    };
    if let Some(text) = yaml {
        if let Ok(serde_yaml_ng::Value::Sequence(items)) = serde_yaml_ng::from_str(&text) {
            let out: Option<Vec<String>> = items
                .into_iter()
                .map(|i| match i {
                    serde_yaml_ng::Value::String(s) => Some(s),
                    serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect();
            if let Some(out) = out {
                return out;
            }
        }
    }
    split_commas(&t.replace(['\'', '"', '[', ']'], ""))
}

fn set(tree: &mut Map<String, Value>, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = tree;
    for key in parents {
        let entry = node
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else { return };
        node = next;
    }
    node.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn patch(vars: &[(&str, &str)]) -> Value {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Value::Object(overrides(&|k: &str| env.get(k).cloned()))
    }

    #[test]
    fn variables_land_at_their_paths() {
        let p = patch(&[
            ("PATRONI_NAME", "n1"),
            ("PATRONI_RESTAPI_USERNAME", "admin"),
            ("PATRONI_SUPERUSER_PASSWORD", "pw"),
            ("PATRONI_REPLICATION_SSLMODE", "require"),
            ("PATRONI_ETCD3_PROTOCOL", "https"),
            ("PATRONI_POSTGRESQL_BIN_PG_CTL", "pg_ctl15"),
            ("PATRONI_NOFAILOVER", "true"),
            ("PATRONI_CLONEFROM", "maybe"),
            ("PATRONI_FAILOVER_PRIORITY", "2"),
            ("PATRONI_SCOPE", ""),
            ("PATRONI_LOG_LOGGERS", "{urllib3: DEBUG}"),
        ]);
        assert_eq!(
            p,
            json!({
                "name": "n1",
                "log": {"loggers": {"urllib3": "DEBUG"}},
                "restapi": {"authentication": {"username": "admin"}},
                "postgresql": {
                    "bin_name": {"pg_ctl": "pg_ctl15"},
                    "authentication": {"superuser": {"password": "pw"}, "replication": {"sslmode": "require"}},
                },
                "tags": {"nofailover": true, "clonefrom": "maybe", "failover_priority": 2},
                "etcd3": {"protocol": "https"},
            })
        );
    }

    #[test]
    fn host_lists() {
        assert_eq!(parse_list("h1:2379,h2:2379"), vec!["h1:2379", "h2:2379"]);
        assert_eq!(
            parse_list("'h1:2379','h2:2379'"),
            vec!["h1:2379", "h2:2379"]
        );
        assert_eq!(
            parse_list("\"h1:2379\", \"h2:2379\""),
            vec!["h1:2379", "h2:2379"]
        );
        assert_eq!(parse_list("[h1:2379, h2:2379]"), vec!["h1:2379", "h2:2379"]);
        assert_eq!(parse_list("['h1:2379'"), vec!["h1:2379"]);
    }
}
