//! Which keys Patroni's schema knows. Keys outside it produce a warning, never an error, so a
//! typo does not stop a node, and a key from a newer Patroni does not either.

use serde_json::{Map, Value};

use crate::reader::{join, split_commas, Ctx};

const TOP: &[&str] = &[
    "scope",
    "namespace",
    "name",
    "restapi",
    "ctl",
    "etcd",
    "etcd3",
    "consul",
    "zookeeper",
    "exhibitor",
    "kubernetes",
    "raft",
    "citus",
    "bootstrap",
    "postgresql",
    "tags",
    "watchdog",
    // pgha's own: the fence of a leader whose agent cannot renew its lease.
    "lease_guard",
    "log",
    "thread_pool_size",
    "thread_stack_size",
];

/// DCS sections Patroni supports and pgha does not.
pub(crate) const OTHER_DCS: &[&str] = &["consul", "zookeeper", "exhibitor", "kubernetes", "raft"];

const RESTAPI: &[&str] = &[
    "listen",
    "connect_address",
    "authentication",
    "certfile",
    "keyfile",
    "keyfile_password",
    "cafile",
    "ciphers",
    "verify_client",
    "allowlist",
    "allowlist_include_members",
    "http_extra_headers",
    "https_extra_headers",
    "request_queue_size",
    "server_tokens",
    "thread_pool_size",
];

const AUTH: &[&str] = &["username", "password"];

const CTL: &[&str] = &[
    "authentication",
    "insecure",
    "cacert",
    "certfile",
    "keyfile",
    "keyfile_password",
];

pub(crate) const ETCD: &[&str] = &[
    "host",
    "hosts",
    "url",
    "proxy",
    "srv",
    "srv_suffix",
    "use_proxies",
    "protocol",
    "username",
    "password",
    "cacert",
    "cert",
    "key",
    "key_password",
];

const BOOTSTRAP: &[&str] = &[
    "dcs",
    "method",
    "initdb",
    "pg_hba",
    "post_bootstrap",
    "post_init",
];

const POSTGRESQL: &[&str] = &[
    "listen",
    "connect_address",
    "proxy_address",
    "data_dir",
    "config_dir",
    "bin_dir",
    "bin_name",
    "pgpass",
    "authentication",
    "parameters",
    "pg_hba",
    "pg_ident",
    "use_pg_rewind",
    "use_slots",
    "create_replica_methods",
    "basebackup",
    "pg_ctl_timeout",
    "remove_data_directory_on_rewind_failure",
    "remove_data_directory_on_diverged_timelines",
    "callbacks",
    "pre_promote",
    "before_stop",
    "recovery_conf",
    "custom_conf",
    "use_unix_socket",
    "use_unix_socket_repl",
];

/// A `postgresql` key Patroni knows and pgha keeps (typed or in `Postgresql::extra`).
pub(crate) fn postgresql_known(key: &str) -> bool {
    POSTGRESQL.contains(&key)
}

/// Role-specific settings of Patroni's development branch. pgha does not apply them, and
/// ignoring them silently would change what the node runs with.
const POSTGRESQL_UNSUPPORTED: &[&str] = &[
    "parameters_primary",
    "parameters_replica",
    "parameters_standby_leader",
    "pg_hba_primary",
    "pg_hba_replica",
    "pg_hba_standby_leader",
    "pg_ident_primary",
    "pg_ident_replica",
    "pg_ident_standby_leader",
    "rewind",
];

const PG_AUTH: &[&str] = &["superuser", "replication", "rewind"];

pub(crate) const PG_USER: &[&str] = &[
    "username",
    "password",
    "sslmode",
    "sslkey",
    "sslpassword",
    "sslcert",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslnegotiation",
    "gssencmode",
    "channel_binding",
];

const CALLBACKS: &[&str] = &[
    "on_reload",
    "on_restart",
    "on_role_change",
    "on_start",
    "on_stop",
];

const BIN_NAME: &[&str] = &[
    "pg_ctl",
    "initdb",
    "pg_controldata",
    "pg_basebackup",
    "postgres",
    "pg_isready",
    "pg_rewind",
];

const LOG: &[&str] = &[
    "type",
    "level",
    "traceback_level",
    "format",
    "dateformat",
    "static_fields",
    "max_queue_size",
    "dir",
    "mode",
    "file_num",
    "file_size",
    "loggers",
    "deduplicate_heartbeat_logs",
];

/// Warns about every key outside Patroni's schema, at the top level and inside the sections
/// pgha reads. Sections of the wrong type are skipped here (the builders report them).
pub(crate) fn warn_unknown_keys(tree: &Map<String, Value>, ctx: &mut Ctx) {
    check(ctx, "", Some(tree), TOP, &[]);

    if let Some(r) = obj(tree.get("restapi")) {
        check(ctx, "restapi", Some(r), RESTAPI, &[]);
        check(
            ctx,
            "restapi.authentication",
            obj(r.get("authentication")),
            AUTH,
            &[],
        );
    }
    if let Some(c) = obj(tree.get("ctl")) {
        check(ctx, "ctl", Some(c), CTL, &[]);
        check(
            ctx,
            "ctl.authentication",
            obj(c.get("authentication")),
            AUTH,
            &[],
        );
    }
    for dcs in ["etcd3", "etcd"] {
        check(ctx, dcs, obj(tree.get(dcs)), ETCD, &[]);
    }
    check(
        ctx,
        "lease_guard",
        obj(tree.get("lease_guard")),
        &["mode", "safety_margin"],
        &[],
    );
    if let Some(b) = obj(tree.get("bootstrap")) {
        let method: Vec<String> = b
            .get("method")
            .and_then(Value::as_str)
            .map(|m| vec![m.to_string()])
            .unwrap_or_default();
        for (key, _) in b.iter().filter(|(k, _)| k.as_str() == "users") {
            ctx.warn(format!(
                "configuration key 'bootstrap.{key}' is no longer supported (removed in Patroni 4.0; ignored): create users in a post_bootstrap script"
            ));
        }
        let known: Vec<&str> = BOOTSTRAP.iter().copied().chain(["users"]).collect();
        check(ctx, "bootstrap", Some(b), &known, &method);
    }
    if let Some(pg) = obj(tree.get("postgresql")) {
        warn_postgresql(pg, ctx);
    }
    check(ctx, "log", obj(tree.get("log")), LOG, &[]);
}

fn warn_postgresql(pg: &Map<String, Value>, ctx: &mut Ctx) {
    let methods: Vec<String> = match pg.get("create_replica_methods") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => split_commas(s),
        _ => Vec::new(),
    };
    for key in pg.keys() {
        if POSTGRESQL_UNSUPPORTED.contains(&key.as_str()) && !methods.contains(key) {
            ctx.warn(format!(
                "configuration key 'postgresql.{key}' is not supported by pgha (ignored)"
            ));
        }
    }
    let known: Vec<&str> = POSTGRESQL
        .iter()
        .chain(POSTGRESQL_UNSUPPORTED)
        .copied()
        .collect();
    check(ctx, "postgresql", Some(pg), &known, &methods);
    if let Some(auth) = obj(pg.get("authentication")) {
        check(ctx, "postgresql.authentication", Some(auth), PG_AUTH, &[]);
        for user in PG_AUTH {
            let path = format!("postgresql.authentication.{user}");
            check(ctx, &path, obj(auth.get(*user)), PG_USER, &[]);
        }
    }
    check(
        ctx,
        "postgresql.callbacks",
        obj(pg.get("callbacks")),
        CALLBACKS,
        &[],
    );
    check(
        ctx,
        "postgresql.bin_name",
        obj(pg.get("bin_name")),
        BIN_NAME,
        &[],
    );
}

fn obj(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v.and_then(Value::as_object)
}

fn check(
    ctx: &mut Ctx,
    path: &str,
    section: Option<&Map<String, Value>>,
    known: &[&str],
    also_known: &[String],
) {
    let Some(section) = section else { return };
    for key in section.keys() {
        if !known.contains(&key.as_str()) && !also_known.contains(key) {
            ctx.warn(format!(
                "unknown configuration key '{}' (ignored)",
                join(path, key)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn warnings(v: Value) -> Vec<String> {
        let mut ctx = Ctx::default();
        if let Value::Object(m) = v {
            warn_unknown_keys(&m, &mut ctx);
        }
        ctx.warnings
    }

    #[test]
    fn unknown_keys() {
        let w = warnings(json!({
            "scope": "a", "foo": 1, "thread_pool_size": 5, "watchdog": {"mode": "off", "x": 1},
            "tags": {"anything": 1},
            "restapi": {"listen": "a:1", "ciphers": "x", "bar": 1, "authentication": {"user": "u"}},
            "postgresql": {"data_dir": "d", "wal_e": {"command": "x"}, "custom": {},
                           "create_replica_methods": ["wal_e", "basebackup"],
                           "callbacks": {"on_start": "x", "on_promote": "y"},
                           "authentication": {"superuser": {"username": "u", "sslmode": "x", "pw": 1}}},
            "bootstrap": {"method": "clone", "clone": {"command": "x"}, "other": 1},
            "log": {"loggers": {}, "colour": true},
        }));
        assert_eq!(
            w,
            vec![
                "unknown configuration key 'foo' (ignored)",
                "unknown configuration key 'restapi.bar' (ignored)",
                "unknown configuration key 'restapi.authentication.user' (ignored)",
                "unknown configuration key 'bootstrap.other' (ignored)",
                "unknown configuration key 'postgresql.custom' (ignored)",
                "unknown configuration key 'postgresql.authentication.superuser.pw' (ignored)",
                "unknown configuration key 'postgresql.callbacks.on_promote' (ignored)",
                "unknown configuration key 'log.colour' (ignored)",
            ]
        );
    }

    #[test]
    fn removed_and_unsupported_keys() {
        let w = warnings(json!({
            "bootstrap": {"users": {"admin": {}}},
            "postgresql": {"parameters_primary": {}},
        }));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("bootstrap.users") && w[0].contains("Patroni 4.0"));
        assert!(w[1].contains("postgresql.parameters_primary") && w[1].contains("not supported"));
    }
}
