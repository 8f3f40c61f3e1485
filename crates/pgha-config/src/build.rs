//! From the merged JSON tree to a validated [`Config`]: top level, `restapi`, `ctl`, DCS,
//! `tags`, `watchdog`, `log`. `postgresql` and `bootstrap` are in [`crate::build_pg`].

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::error::{ConfigError, Problem};
use crate::model::{
    normalize_namespace, Auth, Config, Ctl, Etcd, LeaseGuard, Log, RestApi, Watchdog,
    WatchdogDriver, WatchdogMode,
};
use crate::reader::{
    boolean, join, kind, map_or_empty, required_string, section, split_commas, string, string_list,
    uint, Ctx,
};
use crate::{addr, build_pg, schema, Loaded};

/// Validates the tree and builds the configuration, or lists every problem found.
/// `warnings` are those found while reading the sources; they come first.
pub(crate) fn build(
    tree: &Map<String, Value>,
    warnings: Vec<String>,
) -> Result<Loaded, ConfigError> {
    let mut ctx = Ctx {
        problems: Vec::new(),
        warnings,
    };
    schema::warn_unknown_keys(tree, &mut ctx);

    let scope = required_string(&mut ctx, "scope", tree.get("scope"));
    let name = required_string(&mut ctx, "name", tree.get("name"));
    let namespace = string(&mut ctx, "namespace", tree.get("namespace"))
        .map(|ns| normalize_namespace(&ns))
        .unwrap_or_else(|| "/service".to_string());
    let restapi = restapi(&mut ctx, tree.get("restapi"));
    let ctl = ctl(&mut ctx, tree.get("ctl"));
    let (etcd3, etcd) = dcs(&mut ctx, tree);
    let bootstrap = build_pg::bootstrap(&mut ctx, tree.get("bootstrap"));
    let postgresql = build_pg::postgresql(&mut ctx, tree.get("postgresql"));
    let tags = tags(&mut ctx, tree.get("tags"));
    let watchdog = watchdog(&mut ctx, tree.get("watchdog"));
    let lease_guard = lease_guard(&mut ctx, tree.get("lease_guard"));
    let log = log(&mut ctx, tree.get("log"));

    if !ctx.problems.is_empty() {
        let mut problems = ctx.problems;
        add_hints(&mut problems, tree);
        return Err(ConfigError::Invalid(problems));
    }
    let config = Config {
        scope,
        namespace,
        name,
        restapi,
        ctl,
        etcd3,
        etcd,
        bootstrap,
        postgresql,
        tags,
        watchdog,
        lease_guard,
        log,
    };
    Ok(Loaded {
        config,
        warnings: ctx.warnings,
    })
}

/// Looks up `path` in the tree; `None` when a step is missing or not a mapping.
fn lookup<'a>(tree: &'a Map<String, Value>, path: &str) -> Option<&'a Map<String, Value>> {
    let mut node = tree;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        node = node.get(key)?.as_object()?;
    }
    Some(node)
}

/// For a missing key, points at a sibling that looks like a misspelling of it
/// (`data-dir` for `data_dir`).
fn add_hints(problems: &mut [Problem], tree: &Map<String, Value>) {
    for p in problems.iter_mut().filter(|p| p.message == "is required") {
        let (parent, key) = p.path.rsplit_once('.').unwrap_or(("", p.path.as_str()));
        let Some(siblings) = lookup(tree, parent) else {
            continue;
        };
        let want = normalize_key(key);
        if let Some(found) = siblings.keys().find(|k| {
            *k != key
                && (normalize_key(k) == want
                    || (want.len() >= 4 && edit_distance(&normalize_key(k), &want) <= 2))
        }) {
            p.message = format!(
                "is required (found '{}'; did you mean '{key}'?)",
                join(parent, found)
            );
        }
    }
}

fn normalize_key(k: &str) -> String {
    k.trim().to_ascii_lowercase().replace('-', "_")
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn get<'a>(m: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a Value> {
    m.and_then(|m| m.get(key))
}

/// Keeps the keys of `m` that are not in `typed` (and are known to Patroni, see `schema`).
fn rest(m: Option<&Map<String, Value>>, typed: &[&str], known: &[&str]) -> Map<String, Value> {
    m.map(|m| {
        m.iter()
            .filter(|(k, _)| !typed.contains(&k.as_str()) && known.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
    .unwrap_or_default()
}

fn restapi(ctx: &mut Ctx, v: Option<&Value>) -> RestApi {
    let m = section(ctx, "restapi", v);
    let listen = required_string(ctx, "restapi.listen", get(m, "listen"));
    let parsed = if listen.is_empty() {
        None
    } else {
        match addr::parse(&listen) {
            Ok(hp) if hp.hosts.len() == 1 => Some(hp),
            Ok(_) => {
                ctx.problem(
                    "restapi.listen",
                    "expected a single host:port, got several hosts",
                );
                None
            }
            Err(e) => {
                ctx.problem("restapi.listen", e);
                None
            }
        }
    };
    let connect_address = match string(ctx, "restapi.connect_address", get(m, "connect_address")) {
        Some(c) => {
            check_connect_address(ctx, "restapi.connect_address", &c);
            c
        }
        None => {
            if let Some(hp) = &parsed {
                if hp.hosts.iter().all(|h| addr::is_wildcard(h)) {
                    ctx.warn(format!(
                        "restapi.connect_address is not set and restapi.listen ({listen}) is a wildcard address: other members and clients cannot reach this node's REST API there; set restapi.connect_address"
                    ));
                }
            }
            listen.clone()
        }
    };
    let certfile = string(ctx, "restapi.certfile", get(m, "certfile"));
    let verify_client = string(ctx, "restapi.verify_client", get(m, "verify_client"));
    if let Some(vc) = &verify_client {
        if !matches!(vc.as_str(), "none" | "optional" | "required") {
            ctx.problem(
                "restapi.verify_client",
                format!("expected none, optional or required, got {vc:?}"),
            );
        }
    }
    let ciphers = string(ctx, "restapi.ciphers", get(m, "ciphers"));
    if let Some(spec) = &ciphers {
        if let Err(e) = pgha_tls::cipher_suites(spec) {
            ctx.problem("restapi.ciphers", e.to_string());
        }
    }
    let allowlist = string_list(ctx, "restapi.allowlist", get(m, "allowlist")).unwrap_or_default();
    for (i, entry) in allowlist.iter().enumerate() {
        if let Err(e) = check_allowlist_entry(entry) {
            ctx.problem(&format!("restapi.allowlist[{i}]"), e);
        }
    }
    RestApi {
        listen,
        connect_address,
        authentication: auth(ctx, "restapi.authentication", get(m, "authentication")),
        certfile,
        keyfile: string(ctx, "restapi.keyfile", get(m, "keyfile")),
        keyfile_password: string(ctx, "restapi.keyfile_password", get(m, "keyfile_password")),
        cafile: string(ctx, "restapi.cafile", get(m, "cafile")),
        verify_client,
        ciphers,
        allowlist,
        allowlist_include_members: boolean(
            ctx,
            "restapi.allowlist_include_members",
            get(m, "allowlist_include_members"),
        )
        .unwrap_or(false),
        http_extra_headers: headers(
            ctx,
            "restapi.http_extra_headers",
            get(m, "http_extra_headers"),
        ),
        https_extra_headers: headers(
            ctx,
            "restapi.https_extra_headers",
            get(m, "https_extra_headers"),
        ),
        extra: rest(
            m,
            &[
                "listen",
                "connect_address",
                "authentication",
                "certfile",
                "keyfile",
                "keyfile_password",
                "cafile",
                "verify_client",
                "ciphers",
                "allowlist",
                "allowlist_include_members",
                "http_extra_headers",
                "https_extra_headers",
            ],
            &["request_queue_size", "server_tokens", "thread_pool_size"],
        ),
    }
}

/// An allowlist entry: a CIDR network must parse (Patroni only logs a bad one and goes on,
/// which silently narrows the list); IPs and host names are resolved when the agent starts.
fn check_allowlist_entry(entry: &str) -> Result<(), String> {
    let Some((ip, bits)) = entry.split_once('/') else {
        return if entry.trim().is_empty() {
            Err("an empty entry".into())
        } else {
            Ok(())
        };
    };
    let ip: std::net::IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| format!("{entry:?} is not a network (address/prefix length)"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match bits.trim().parse::<u8>() {
        Ok(b) if b <= max => Ok(()),
        _ => Err(format!(
            "{entry:?}: the prefix length must be a number from 0 to {max}"
        )),
    }
}

/// `http_extra_headers` / `https_extra_headers`: header names and values as HTTP allows
/// them (a bad one would otherwise fail every response, or split it).
fn headers(ctx: &mut Ctx, path: &str, v: Option<&Value>) -> Vec<(String, String)> {
    let Some(m) = section(ctx, path, v) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, value) in m {
        let key = format!("{path}.{name}");
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            ctx.problem(&key, "is not a valid HTTP header name");
            continue;
        }
        let Some(value) = string(ctx, &key, Some(value)) else {
            continue;
        };
        if value.chars().any(|c| c.is_control() && c != '\t') {
            ctx.problem(
                &key,
                "a header value cannot hold line breaks or control characters",
            );
            continue;
        }
        out.push((name.clone(), value));
    }
    out
}

/// A `host:port` others connect to: one host, a valid port, not a wildcard.
pub(crate) fn check_connect_address(ctx: &mut Ctx, path: &str, value: &str) {
    match addr::parse(value) {
        Ok(hp) if hp.hosts.len() != 1 => {
            ctx.problem(path, format!("expected a single host:port, got {value:?}"))
        }
        Ok(hp) if hp.hosts.iter().any(|h| addr::is_wildcard(h)) => ctx.warn(format!(
            "{path} ({value}) is a wildcard address; other members cannot connect to it"
        )),
        Ok(_) => {}
        Err(e) => ctx.problem(path, e),
    }
}

fn auth(ctx: &mut Ctx, path: &str, v: Option<&Value>) -> Option<Auth> {
    let m = section(ctx, path, v)?;
    Some(Auth {
        username: required_string(ctx, &join(path, "username"), m.get("username")),
        password: required_string(ctx, &join(path, "password"), m.get("password")),
    })
}

fn ctl(ctx: &mut Ctx, v: Option<&Value>) -> Option<Ctl> {
    let m = section(ctx, "ctl", v)?;
    Some(Ctl {
        authentication: auth(ctx, "ctl.authentication", m.get("authentication")),
        insecure: boolean(ctx, "ctl.insecure", m.get("insecure")).unwrap_or(false),
        certfile: string(ctx, "ctl.certfile", m.get("certfile")),
        keyfile: string(ctx, "ctl.keyfile", m.get("keyfile")),
        cacert: string(ctx, "ctl.cacert", m.get("cacert")),
    })
}

/// Picks the DCS: `etcd3` is required; the other sections Patroni supports are errors when
/// they stand alone and warnings next to `etcd3`.
fn dcs(ctx: &mut Ctx, tree: &Map<String, Value>) -> (Option<Etcd>, Option<Etcd>) {
    let etcd3 = tree
        .contains_key("etcd3")
        .then(|| etcd_section(ctx, "etcd3", tree.get("etcd3")));
    // The v2 section is not used: its own problems would only be noise.
    let etcd = tree
        .contains_key("etcd")
        .then(|| etcd_section(&mut Ctx::default(), "etcd", tree.get("etcd")));
    let others: Vec<&str> = schema::OTHER_DCS
        .iter()
        .copied()
        .filter(|k| tree.contains_key(*k))
        .collect();
    if etcd3.is_some() {
        if etcd.is_some() {
            ctx.warn("the etcd (v2 API) section is ignored: pgha uses the etcd3 section");
        }
        for o in &others {
            ctx.warn(format!(
                "the {o} section is ignored: pgha only supports etcd3 as DCS"
            ));
        }
    } else if etcd.is_some() {
        ctx.problem(
            "etcd",
            "etcd (v2 API) is not supported; use the etcd3 section (same keys). Note that v2 and v3 keys are separate, so the cluster state stored through v2 is not visible through v3",
        );
    } else if let Some(first) = others.first() {
        ctx.problem(
            first,
            format!(
                "only etcd3 is supported as DCS; found {}",
                others.join(", ")
            ),
        );
    } else {
        ctx.problem(
            "etcd3",
            "is required: pgha keeps the cluster state in etcd (v3 API); add an etcd3 section with hosts",
        );
    }
    if tree.contains_key("citus") {
        ctx.problem(
            "citus",
            "Citus clusters are not supported by pgha; remove the citus section",
        );
    }
    (etcd3, etcd)
}

fn etcd_section(ctx: &mut Ctx, path: &str, v: Option<&Value>) -> Etcd {
    let m = section(ctx, path, v);
    let mut hosts = Vec::new();
    if let Some(h) = string(ctx, &join(path, "host"), get(m, "host")) {
        hosts.extend(split_commas(&h));
    }
    hosts.extend(string_list(ctx, &join(path, "hosts"), get(m, "hosts")).unwrap_or_default());
    for key in ["url", "proxy"] {
        if let Some(u) = string(ctx, &join(path, key), get(m, key)) {
            hosts.extend(split_commas(&u));
        }
    }
    let srv = string(ctx, &join(path, "srv"), get(m, "srv"));
    if hosts.is_empty() {
        match srv {
            Some(_) => ctx.problem(
                &join(path, "srv"),
                format!("DNS SRV discovery is not supported by pgha; list the endpoints in {path}.hosts"),
            ),
            None => ctx.problem(
                path,
                format!("no endpoints; set {path}.hosts (a list, or \"h1:2379,h2:2379\"), {path}.host or {path}.url"),
            ),
        }
    } else if srv.is_some() {
        ctx.warn(format!(
            "{path}.srv is ignored: pgha uses the listed endpoints"
        ));
    }
    for h in &hosts {
        check_etcd_endpoint(ctx, path, h);
    }
    let protocol = string(ctx, &join(path, "protocol"), get(m, "protocol"));
    if let Some(p) = &protocol {
        if !p.eq_ignore_ascii_case("http") && !p.eq_ignore_ascii_case("https") {
            ctx.problem(
                &join(path, "protocol"),
                format!("expected http or https, got {p:?}"),
            );
        }
    }
    Etcd {
        hosts,
        protocol,
        username: string(ctx, &join(path, "username"), get(m, "username")),
        password: string(ctx, &join(path, "password"), get(m, "password")),
        cacert: string(ctx, &join(path, "cacert"), get(m, "cacert")),
        cert: string(ctx, &join(path, "cert"), get(m, "cert")),
        key: string(ctx, &join(path, "key"), get(m, "key")),
    }
}

fn check_etcd_endpoint(ctx: &mut Ctx, path: &str, h: &str) {
    let hostport = match h.split_once("://") {
        Some((scheme, rest)) => {
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                ctx.problem(
                    path,
                    format!("endpoint {h:?}: expected an http:// or https:// URL"),
                );
                return;
            }
            rest.trim_end_matches('/')
        }
        None => h,
    };
    // A port is present for `host:port` and `[v6]:port`; a bare IPv6 literal has none.
    let port = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split_once("]:").map(|(_, p)| p)
    } else if hostport.matches(':').count() == 1 {
        hostport.rsplit_once(':').map(|(_, p)| p)
    } else {
        None
    };
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            ctx.problem(
                path,
                format!("endpoint {h:?}: port {p:?} is not a number between 1 and 65535"),
            );
        }
    }
}

fn tags(ctx: &mut Ctx, v: Option<&Value>) -> Map<String, Value> {
    let tags = map_or_empty(ctx, "tags", v);
    for (flag, priority) in [
        ("nofailover", "failover_priority"),
        ("nosync", "sync_priority"),
    ] {
        if let (Some(f), Some(p)) = (tags.get(flag), tags.get(priority)) {
            ctx.warn(format!(
                "Conflicting configuration between {flag}: {f} and {priority}: {p}; {flag} takes precedence"
            ));
        }
    }
    for priority in ["failover_priority", "sync_priority"] {
        let Some(v) = tags.get(priority) else {
            continue;
        };
        let n = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match n {
            None => ctx.warn(format!(
                "tags.{priority}: {v} is not an integer; it counts as 1 (the default)"
            )),
            Some(n) if n < 0 => ctx.warn(format!(
                "tags.{priority}: {n} is negative; it counts as 0 (never chosen)"
            )),
            Some(_) => {}
        }
    }
    tags
}

/// The `watchdog` section, read as Patroni reads it: `mode` also takes `false` (YAML's `off`),
/// `require`, `auto`, `disable(d)`; an unknown mode is a warning and turns the watchdog off.
fn watchdog(ctx: &mut Ctx, v: Option<&Value>) -> Watchdog {
    let mut w = Watchdog::default();
    let Some(m) = section(ctx, "watchdog", v) else {
        return w;
    };
    w.explicit = true;
    if let Some(mode) = m.get("mode") {
        w.mode = match watchdog_mode(mode) {
            Some(mode) => mode,
            None => {
                ctx.warn(format!(
                    "watchdog.mode: {mode} is not one of off, automatic, required; the watchdog is disabled"
                ));
                WatchdogMode::Off
            }
        };
    }
    match m.get("device").filter(|d| !d.is_null()) {
        None => {}
        Some(Value::String(d)) if !d.trim().is_empty() => w.device = PathBuf::from(d),
        Some(other) => ctx.problem(
            "watchdog.device",
            format!("expected the path of the watchdog device, got {other}"),
        ),
    }
    if let Some(sm) = m.get("safety_margin").filter(|d| !d.is_null()) {
        let n = match sm {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n >= -1 => w.safety_margin = n,
            _ => ctx.problem(
                "watchdog.safety_margin",
                format!("expected a whole number of seconds (-1 for half the ttl), got {sm}"),
            ),
        }
    }
    if let Some(d) = m.get("driver").filter(|d| !d.is_null()) {
        match d.as_str().map(str::trim) {
            Some("default") => {}
            Some("testing") => w.driver = WatchdogDriver::Testing,
            _ if w.mode == WatchdogMode::Required => ctx.problem(
                "watchdog.driver",
                format!(
                    "unknown watchdog driver {d} (expected default or testing); watchdog.mode is required, so this node could never lead"
                ),
            ),
            _ => {
                if w.mode != WatchdogMode::Off {
                    ctx.warn(format!(
                        "watchdog.driver: unknown watchdog driver {d} (expected default or testing); the watchdog is disabled"
                    ));
                }
                w.mode = WatchdogMode::Off;
            }
        }
    }
    w
}

/// The `lease_guard` section: `mode: on|off` (booleans too), `safety_margin` in seconds
/// (fractions allowed).
fn lease_guard(ctx: &mut Ctx, v: Option<&Value>) -> LeaseGuard {
    let mut g = LeaseGuard::default();
    let Some(m) = section(ctx, "lease_guard", v) else {
        return g;
    };
    if let Some(mode) = m.get("mode").filter(|v| !v.is_null()) {
        match mode {
            Value::Bool(b) => g.enabled = *b,
            Value::String(s) => match crate::reader::parse_bool(s) {
                Some(b) => g.enabled = b,
                None => ctx.problem("lease_guard.mode", format!("expected on or off, got {s:?}")),
            },
            other => ctx.problem(
                "lease_guard.mode",
                format!("expected on or off, got {other}"),
            ),
        }
    }
    if let Some(sm) = m.get("safety_margin").filter(|v| !v.is_null()) {
        let secs = match sm {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match secs {
            Some(s) if (0.0..=60.0).contains(&s) => g.safety_margin_ms = (s * 1000.0) as u64,
            _ => ctx.problem(
                "lease_guard.safety_margin",
                format!("expected seconds between 0 and 60, got {sm}"),
            ),
        }
    }
    g
}

/// Patroni's spellings of `watchdog.mode`; `None` for anything else.
fn watchdog_mode(v: &Value) -> Option<WatchdogMode> {
    let text = match v {
        Value::Bool(false) => return Some(WatchdogMode::Off),
        Value::String(s) => s.trim().to_ascii_lowercase(),
        _ => return None,
    };
    match text.as_str() {
        "require" | "required" => Some(WatchdogMode::Required),
        "auto" | "automatic" => Some(WatchdogMode::Automatic),
        "off" | "disable" | "disabled" => Some(WatchdogMode::Off),
        _ => None,
    }
}

fn log(ctx: &mut Ctx, v: Option<&Value>) -> Log {
    let m = section(ctx, "log", v);
    let mut log = Log::default();
    if let Some(level) = string(ctx, "log.level", get(m, "level")) {
        match level.trim().to_ascii_uppercase().as_str() {
            l @ ("DEBUG" | "INFO" | "WARNING" | "ERROR" | "CRITICAL") => log.level = l.to_string(),
            "WARN" => log.level = "WARNING".to_string(),
            "FATAL" => log.level = "CRITICAL".to_string(),
            _ => ctx.problem(
                "log.level",
                format!("expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {level:?}"),
            ),
        }
    }
    if let Some(t) = string(ctx, "log.type", get(m, "type")) {
        match t.trim().to_ascii_lowercase().as_str() {
            t @ ("plain" | "json") => log.r#type = t.to_string(),
            _ => ctx.problem("log.type", format!("expected plain or json, got {t:?}")),
        }
    }
    match get(m, "format") {
        Some(Value::String(s)) => log.format = Some(s.clone()),
        Some(Value::Array(_) | Value::Object(_)) if log.r#type == "json" => {}
        Some(other) if !other.is_null() => ctx.problem(
            "log.format",
            format!(
                "expected a string (or a list with type: json), got {}",
                kind(other)
            ),
        ),
        _ => {}
    }
    log.dateformat = string(ctx, "log.dateformat", get(m, "dateformat"));
    log.dir = string(ctx, "log.dir", get(m, "dir"))
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    if let Some(n) = uint(
        ctx,
        "log.file_num",
        get(m, "file_num"),
        "a whole number of files",
    ) {
        match u32::try_from(n) {
            Ok(n) => log.file_num = Some(n),
            Err(_) => ctx.problem("log.file_num", format!("{n} is too large")),
        }
    }
    log.file_size = uint(ctx, "log.file_size", get(m, "file_size"), "a size in bytes");
    log.extra = rest(
        m,
        &[
            "level",
            "type",
            "dateformat",
            "dir",
            "file_num",
            "file_size",
        ],
        &[
            "format",
            "traceback_level",
            "static_fields",
            "max_queue_size",
            "mode",
            "loggers",
            "deduplicate_heartbeat_logs",
        ],
    );
    if log.format.is_some() {
        log.extra.remove("format");
    }
    log
}
