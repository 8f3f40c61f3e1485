//! The `postgresql` and `bootstrap` sections.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::build::check_connect_address;
use crate::model::{
    Authentication, Bootstrap, BootstrapMethod, InitdbOption, PgUser, Postgresql, ReplicaMethod,
};
use crate::reader::{
    boolean, join, kind, map_or_empty, required_string, section, strict_string_list, string,
    string_list, uint, Ctx,
};
use crate::{addr, schema};

const DEFAULT_PG_CTL_TIMEOUT: u64 = 60;

fn get<'a>(m: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a Value> {
    m.and_then(|m| m.get(key))
}

fn path_buf(ctx: &mut Ctx, path: &str, v: Option<&Value>) -> Option<PathBuf> {
    string(ctx, path, v)
        .filter(|s| !s.trim().is_empty())
        .map(PathBuf::from)
}

/// Keys of `postgresql` read into typed fields; the other known keys go to `extra`.
const PG_TYPED: &[&str] = &[
    "listen",
    "connect_address",
    "data_dir",
    "config_dir",
    "bin_dir",
    "pgpass",
    "authentication",
    "parameters",
    "pg_hba",
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
];

pub(crate) fn postgresql(ctx: &mut Ctx, v: Option<&Value>) -> Postgresql {
    let m = section(ctx, "postgresql", v);

    let listen = required_string(ctx, "postgresql.listen", get(m, "listen"));
    let parsed = if listen.is_empty() {
        None
    } else {
        addr::parse(&listen)
            .map_err(|e| ctx.problem("postgresql.listen", e))
            .ok()
    };
    let connect_address = match string(ctx, "postgresql.connect_address", get(m, "connect_address"))
    {
        Some(c) => {
            check_connect_address(ctx, "postgresql.connect_address", &c);
            c
        }
        None => match &parsed {
            Some(hp) => match hp.hosts.iter().find(|h| !addr::is_wildcard(h)) {
                Some(host) => addr::join(host, hp.port),
                None => {
                    ctx.problem(
                        "postgresql.connect_address",
                        format!("required when listen is a wildcard address ({listen}); set the host:port other members connect to"),
                    );
                    String::new()
                }
            },
            None => String::new(),
        },
    };

    let data_dir = required_string(ctx, "postgresql.data_dir", get(m, "data_dir"));
    let methods = string_list(
        ctx,
        "postgresql.create_replica_methods",
        get(m, "create_replica_methods"),
    )
    .filter(|l| !l.is_empty())
    .unwrap_or_else(|| vec!["basebackup".to_string()]);

    let pg_ctl_timeout = match uint(
        ctx,
        "postgresql.pg_ctl_timeout",
        get(m, "pg_ctl_timeout"),
        "a positive whole number of seconds",
    ) {
        Some(0) => {
            ctx.problem(
                "postgresql.pg_ctl_timeout",
                "expected a positive whole number of seconds, got 0",
            );
            DEFAULT_PG_CTL_TIMEOUT
        }
        Some(n) => n,
        None => DEFAULT_PG_CTL_TIMEOUT,
    };

    let callbacks = map_or_empty(ctx, "postgresql.callbacks", get(m, "callbacks"));
    for (name, cmd) in &callbacks {
        if !cmd.is_string() && !cmd.is_null() {
            ctx.problem(
                &format!("postgresql.callbacks.{name}"),
                format!("expected a command (string), got {}", kind(cmd)),
            );
        }
    }

    let extra = m
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !PG_TYPED.contains(&k.as_str()) && schema::postgresql_known(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();

    let replica_methods = methods
        .iter()
        .filter(|name| name.as_str() != "basebackup")
        .map(|name| replica_method(ctx, name, get(m, name)))
        .collect();

    Postgresql {
        listen,
        connect_address,
        data_dir: PathBuf::from(data_dir),
        config_dir: path_buf(ctx, "postgresql.config_dir", get(m, "config_dir")),
        bin_dir: path_buf(ctx, "postgresql.bin_dir", get(m, "bin_dir")),
        pgpass: path_buf(ctx, "postgresql.pgpass", get(m, "pgpass")),
        authentication: authentication(ctx, get(m, "authentication")),
        parameters: map_or_empty(ctx, "postgresql.parameters", get(m, "parameters")),
        pg_hba: strict_string_list(ctx, "postgresql.pg_hba", get(m, "pg_hba")).unwrap_or_default(),
        use_pg_rewind: boolean(ctx, "postgresql.use_pg_rewind", get(m, "use_pg_rewind")),
        use_slots: boolean(ctx, "postgresql.use_slots", get(m, "use_slots")),
        create_replica_methods: methods,
        replica_methods,
        basebackup: options(ctx, "postgresql.basebackup", get(m, "basebackup")),
        pg_ctl_timeout,
        remove_data_directory_on_rewind_failure: boolean(
            ctx,
            "postgresql.remove_data_directory_on_rewind_failure",
            get(m, "remove_data_directory_on_rewind_failure"),
        )
        .unwrap_or(false),
        remove_data_directory_on_diverged_timelines: boolean(
            ctx,
            "postgresql.remove_data_directory_on_diverged_timelines",
            get(m, "remove_data_directory_on_diverged_timelines"),
        )
        .unwrap_or(false),
        callbacks,
        pre_promote: string(ctx, "postgresql.pre_promote", get(m, "pre_promote")),
        before_stop: string(ctx, "postgresql.before_stop", get(m, "before_stop")),
        extra,
    }
}

fn authentication(ctx: &mut Ctx, v: Option<&Value>) -> Authentication {
    const PATH: &str = "postgresql.authentication";
    let m = section(ctx, PATH, v);
    Authentication {
        superuser: pg_user(ctx, &join(PATH, "superuser"), get(m, "superuser"), true),
        replication: pg_user(ctx, &join(PATH, "replication"), get(m, "replication"), true),
        rewind: pg_user(ctx, &join(PATH, "rewind"), get(m, "rewind"), false),
    }
}

fn pg_user(ctx: &mut Ctx, path: &str, v: Option<&Value>, required: bool) -> Option<PgUser> {
    let Some(m) = section(ctx, path, v) else {
        if required && v.is_none_or(Value::is_null) {
            ctx.required(&join(path, "username"));
        }
        return None;
    };
    let username = required_string(ctx, &join(path, "username"), m.get("username"));
    let password = string(ctx, &join(path, "password"), m.get("password"));
    let mut extra = Map::new();
    for (k, v) in m {
        if k == "username" || k == "password" || !schema::PG_USER.contains(&k.as_str()) {
            continue;
        }
        if let Some(s) = string(ctx, &join(path, k), Some(v)) {
            if let Some(allowed) = enumerated(k) {
                if !allowed.contains(&s.as_str()) {
                    // libpq would refuse the value too, but only when a connection is made,
                    // long after start (a replica's primary_conninfo, a rewind).
                    ctx.problem(
                        &join(path, k),
                        format!("{s:?} is not one of {}", allowed.join(", ")),
                    );
                    continue;
                }
            }
            extra.insert(k.clone(), Value::String(s));
        }
    }
    Some(PgUser {
        username,
        password,
        extra,
    })
}

/// The values libpq accepts for a connection option that takes one of a few words.
fn enumerated(key: &str) -> Option<&'static [&'static str]> {
    Some(match key {
        "sslmode" => &[
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ],
        "gssencmode" | "channel_binding" => &["disable", "prefer", "require"],
        "sslnegotiation" => &["postgres", "direct"],
        _ => return None,
    })
}

/// `bootstrap.initdb` / `postgresql.basebackup`: a list of `flag` and `{name: value}` items, or
/// one mapping.
pub(crate) fn options(ctx: &mut Ctx, path: &str, v: Option<&Value>) -> Vec<InitdbOption> {
    let mut out = Vec::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                match item {
                    Value::String(s) if !s.trim().is_empty() => {
                        out.push(InitdbOption::Flag(s.trim().to_string()))
                    }
                    Value::Object(m) => option_pairs(ctx, &item_path, m, &mut out),
                    Value::Null => {}
                    other => ctx.problem(
                        &item_path,
                        format!("expected an option name or a `name: value` mapping, got {}", kind(other)),
                    ),
                }
            }
        }
        Some(Value::Object(m)) => option_pairs(ctx, path, m, &mut out),
        Some(other) => ctx.problem(
            path,
            format!(
                "expected a list of options (`- data-checksums`, `- encoding: UTF8`) or a mapping, got {}",
                kind(other)
            ),
        ),
    }
    out
}

fn option_pairs(ctx: &mut Ctx, path: &str, m: &Map<String, Value>, out: &mut Vec<InitdbOption>) {
    for (k, v) in m {
        match v {
            Value::Null => out.push(InitdbOption::Flag(k.clone())),
            Value::String(s) => out.push(InitdbOption::KeyValue(k.clone(), s.clone())),
            Value::Number(_) | Value::Bool(_) => {
                out.push(InitdbOption::KeyValue(k.clone(), v.to_string()))
            }
            other => ctx.problem(
                &join(path, k),
                format!("expected a single value, got {}", kind(other)),
            ),
        }
    }
}

pub(crate) fn bootstrap(ctx: &mut Ctx, v: Option<&Value>) -> Bootstrap {
    let m = section(ctx, "bootstrap", v);
    let dcs = map_or_empty(ctx, "bootstrap.dcs", get(m, "dcs"));
    check_dcs(ctx, &dcs);

    let post_bootstrap = string(ctx, "bootstrap.post_bootstrap", get(m, "post_bootstrap"));
    let post_init = string(ctx, "bootstrap.post_init", get(m, "post_init"));
    if post_bootstrap.is_some() && post_init.is_some() {
        ctx.warn("bootstrap.post_init is ignored: bootstrap.post_bootstrap is set");
    }
    let method = string(ctx, "bootstrap.method", get(m, "method"));
    let custom = method
        .as_deref()
        .filter(|n| *n != "initdb")
        .and_then(|name| bootstrap_method(ctx, name, get(m, name)));
    Bootstrap {
        dcs,
        initdb: options(ctx, "bootstrap.initdb", get(m, "initdb")),
        pg_hba: strict_string_list(ctx, "bootstrap.pg_hba", get(m, "pg_hba")).unwrap_or_default(),
        post_bootstrap: post_bootstrap.or(post_init),
        method,
        custom,
    }
}

/// `bootstrap.<name>` of a custom bootstrap method.
fn bootstrap_method(ctx: &mut Ctx, name: &str, v: Option<&Value>) -> Option<BootstrapMethod> {
    let path = format!("bootstrap.{name}");
    let Some(s) = section(ctx, &path, v) else {
        ctx.problem(
            &path,
            format!(
                "is required when bootstrap.method is {name:?}: a mapping with the command to run"
            ),
        );
        return None;
    };
    let command = string(ctx, &join(&path, "command"), s.get("command")).unwrap_or_default();
    if command.trim().is_empty() {
        ctx.problem(
            &join(&path, "command"),
            format!("is required when bootstrap.method is {name:?}"),
        );
    } else if let Err(e) = crate::model::split_command(&command) {
        ctx.problem(&join(&path, "command"), e);
    }
    let flag =
        |ctx: &mut Ctx, key: &str| boolean(ctx, &join(&path, key), s.get(key)).unwrap_or(false);
    let keep_existing_recovery_conf = flag(ctx, "keep_existing_recovery_conf");
    let no_params = flag(ctx, "no_params");
    let recovery_conf = match s.get("recovery_conf") {
        None | Some(Value::Null) => None,
        v => section(ctx, &join(&path, "recovery_conf"), v).cloned(),
    };
    const RESERVED: &[&str] = &[
        "command",
        "no_params",
        "keep_existing_recovery_conf",
        "recovery_conf",
        "scope",
        "datadir",
    ];
    let extra = s
        .iter()
        .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(BootstrapMethod {
        name: name.to_string(),
        command,
        keep_existing_recovery_conf,
        no_params,
        recovery_conf,
        extra,
    })
}

/// `postgresql.<name>` of a custom entry of `create_replica_methods`; the section may be
/// missing (the method's name is then the command).
fn replica_method(ctx: &mut Ctx, name: &str, v: Option<&Value>) -> ReplicaMethod {
    let path = format!("postgresql.{name}");
    let s = section(ctx, &path, v).cloned().unwrap_or_default();
    let command =
        string(ctx, &join(&path, "command"), s.get("command")).filter(|c| !c.trim().is_empty());
    if let Err(e) = crate::model::split_command(command.as_deref().unwrap_or(name)) {
        ctx.problem(&join(&path, "command"), e);
    }
    let mut flag = |key: &str| boolean(ctx, &join(&path, key), s.get(key)).unwrap_or(false);
    let (keep_data, no_leader, no_params) =
        (flag("keep_data"), flag("no_leader"), flag("no_params"));
    let mut options = s;
    options.shift_remove("command");
    ReplicaMethod {
        name: name.to_string(),
        command,
        keep_data,
        no_leader,
        no_params,
        options,
    }
}

/// The parts of `bootstrap.dcs` that would break the cluster if written to the DCS as they are.
fn check_dcs(ctx: &mut Ctx, dcs: &Map<String, Value>) {
    let timing = |ctx: &mut Ctx, key: &str, default: u64| {
        let path = format!("bootstrap.dcs.{key}");
        match dcs.get(key) {
            None | Some(Value::Null) => Some(default),
            v => uint(ctx, &path, v, "a whole number of seconds"),
        }
    };
    let ttl = timing(ctx, "ttl", 30);
    let loop_wait = timing(ctx, "loop_wait", 10);
    let retry_timeout = timing(ctx, "retry_timeout", 10);
    if let (Some(ttl), Some(loop_wait), Some(retry)) = (ttl, loop_wait, retry_timeout) {
        if let Err(msg) = pgha_types::check_timings(ttl, loop_wait, retry) {
            let (key, rest) = match msg.split_once(": ") {
                Some((k, r)) if ["ttl", "loop_wait", "retry_timeout"].contains(&k) => (k, r),
                _ => ("", msg.as_str()),
            };
            ctx.problem(&join("bootstrap.dcs", key), rest);
        }
    }
    if let Some(pg) = section(ctx, "bootstrap.dcs.postgresql", dcs.get("postgresql")) {
        section(
            ctx,
            "bootstrap.dcs.postgresql.parameters",
            pg.get("parameters"),
        );
        if pg.get("pg_hba").is_some() {
            strict_string_list(ctx, "bootstrap.dcs.postgresql.pg_hba", pg.get("pg_hba"));
        }
    }
}
