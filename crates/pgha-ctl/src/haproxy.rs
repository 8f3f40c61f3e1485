//! `pghactl haproxy-config`: a ready `haproxy.cfg` for the members found in the DCS, shaped like
//! the HAProxy configurations operators write by hand for Patroni (a `listen stats` page, a
//! `listen primary` checked against `/primary`, a `listen replicas` checked against `/replica`).
//!
//! Routing is decided by the agents' health endpoints, not by this file: every member is listed
//! in both sections and HAProxy's HTTP check on the member's REST port keeps only the ones that
//! answer 200 (so a `noloadbalance` replica, which answers 503 on `/replica`, gets no replica
//! traffic, and a switchover needs no new configuration). The file only has to be regenerated
//! when members are added or removed.

use std::fmt::Write as _;

use pgha_types::{Cluster, Member};

use crate::render::host_port;

/// How the HTTP check asks (`option httpchk <METHOD> <path>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckMethod {
    /// `OPTIONS`: no body, as Patroni's documentation configures HAProxy
    Options,
    /// `GET`: the status JSON comes back with the code
    Get,
}

impl CheckMethod {
    fn as_str(self) -> &'static str {
        match self {
            CheckMethod::Options => "OPTIONS",
            CheckMethod::Get => "GET",
        }
    }
}

/// Everything the generated file depends on besides the members.
#[derive(Debug, Clone, PartialEq)]
pub struct HaproxyOptions {
    /// Address the three listeners bind to (`*` for all).
    pub bind: String,
    pub primary_port: u16,
    pub replica_port: u16,
    pub stats_port: u16,
    /// HAProxy time between checks (`3s`, `500ms`, ...).
    pub inter: String,
    pub fall: u32,
    pub rise: u32,
    /// Per-server connection limit.
    pub maxconn: u32,
    pub method: CheckMethod,
    /// `/replica?lag=...` when set: replicas further behind get no traffic.
    pub replica_lag: Option<String>,
    /// `stats socket` path in `global` (for `show stat` from scripts).
    pub stats_socket: Option<String>,
    /// `--ssl`: TLS health checks on every server (members whose `api_url` is https get them
    /// anyway).
    pub ssl: bool,
    /// `--check-cert`: client certificate (with its key) presented in TLS checks.
    pub check_cert: Option<String>,
    /// `--check-ca`: verify the members' certificates against this CA in TLS checks.
    pub check_ca: Option<String>,
}

impl Default for HaproxyOptions {
    fn default() -> Self {
        HaproxyOptions {
            bind: "*".into(),
            primary_port: 5000,
            replica_port: 5001,
            stats_port: 7000,
            inter: "3s".into(),
            fall: 3,
            rise: 2,
            maxconn: 100,
            method: CheckMethod::Options,
            replica_lag: None,
            stats_socket: None,
            ssl: false,
            check_cert: None,
            check_ca: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HaproxyError {
    #[error("no members of cluster {0} found in the DCS (is the cluster name right and are its agents running?)")]
    NoMembers(String),
    #[error("no member of cluster {0} publishes a usable conn_url and api_url: {1}")]
    NoUsableMembers(String, String),
    #[error("--inter {0:?} is not an HAProxy time (a number with an optional unit us, ms, s, m, h or d)")]
    BadInterval(String),
    #[error("--fall and --rise must be at least 1")]
    BadCount,
    #[error("the primary, replica and stats ports must differ (got {0}, {1} and {2})")]
    PortClash(u16, u16, u16),
    #[error("{what} {value:?} contains characters HAProxy cannot take (whitespace, quotes, '#')")]
    BadValue { what: &'static str, value: String },
}

/// One `server` line's facts.
#[derive(Debug, Clone, PartialEq)]
struct Server {
    name: String,
    addr: String,
    check_host: Option<String>,
    check_port: u16,
    tls: bool,
}

/// Checks the options alone (no members needed), so bad ones fail before the DCS is read.
pub fn validate(opts: &HaproxyOptions) -> Result<(), HaproxyError> {
    let unit_ok = |u: &str| ["", "us", "ms", "s", "m", "h", "d"].contains(&u);
    let digits = opts.inter.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 || !unit_ok(&opts.inter[digits..]) {
        return Err(HaproxyError::BadInterval(opts.inter.clone()));
    }
    if opts.fall == 0 || opts.rise == 0 {
        return Err(HaproxyError::BadCount);
    }
    let (p, r, s) = (opts.primary_port, opts.replica_port, opts.stats_port);
    if p == r || p == s || r == s {
        return Err(HaproxyError::PortClash(p, r, s));
    }
    let plain = |what: &'static str, v: &str| {
        if v.is_empty() || v.chars().any(|c| c.is_whitespace() || "\"'#\\".contains(c)) {
            Err(HaproxyError::BadValue {
                what,
                value: v.to_string(),
            })
        } else {
            Ok(())
        }
    };
    plain("--bind", &opts.bind)?;
    if let Some(l) = &opts.replica_lag {
        plain("--replica-lag", l)?;
    }
    if let Some(s) = &opts.stats_socket {
        plain("--stats-socket", s)?;
    }
    if let Some(c) = &opts.check_cert {
        plain("--check-cert", c)?;
    }
    if let Some(c) = &opts.check_ca {
        plain("--check-ca", c)?;
    }
    Ok(())
}

/// `host:port` for HAProxy (IPv6 in brackets).
fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// HAProxy server names take letters, digits and `-_.:`; anything else becomes `_`.
fn server_name(member: &str) -> String {
    member
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Scheme, host and port of an `api_url` (`http://127.0.0.1:8008/patroni`).
fn parse_api_url(url: &str) -> Option<(bool, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None if tls => 443,
        None => 80,
    };
    (!host.is_empty()).then_some((tls, host, port))
}

fn server_of(m: &Member) -> Result<Server, String> {
    let (host, port) = host_port(m).ok_or_else(|| format!("{}: no conn_url", m.name))?;
    let port = if port == 0 { 5432 } else { port };
    let api = m
        .data
        .api_url
        .as_deref()
        .ok_or_else(|| format!("{}: no api_url", m.name))?;
    let (tls, api_host, check_port) =
        parse_api_url(api).ok_or_else(|| format!("{}: unreadable api_url {api:?}", m.name))?;
    let check_host = (!api_host.eq_ignore_ascii_case(&host)).then_some(api_host);
    Ok(Server {
        name: server_name(&m.name),
        addr: address(&host, port),
        check_host,
        check_port,
        tls,
    })
}

/// The `haproxy.cfg` text for `cluster` (named `scope`).
pub fn render(
    scope: &str,
    cluster: &Cluster,
    opts: &HaproxyOptions,
) -> Result<String, HaproxyError> {
    validate(opts)?;
    if cluster.members.is_empty() {
        return Err(HaproxyError::NoMembers(scope.to_string()));
    }
    let mut members: Vec<&Member> = cluster.members.iter().collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let mut servers = Vec::new();
    let mut skipped = Vec::new();
    for m in members {
        match server_of(m) {
            Ok(s) => servers.push(s),
            Err(why) => skipped.push(why),
        }
    }
    if servers.is_empty() {
        return Err(HaproxyError::NoUsableMembers(
            scope.to_string(),
            skipped.join("; "),
        ));
    }
    let mut o = String::with_capacity(2048);
    let w = &mut o;
    let _ = writeln!(
        w,
        "# haproxy.cfg for pgha cluster {scope}, written by `pghactl haproxy-config`."
    );
    let _ = writeln!(
        w,
        "# Primary on :{}, replicas on :{}, stats page on :{}. The agents' REST checks decide the",
        opts.primary_port, opts.replica_port, opts.stats_port
    );
    let _ = writeln!(
        w,
        "# routing: regenerate only when members are added or removed."
    );
    for why in &skipped {
        let _ = writeln!(w, "# skipped {why}");
    }
    let _ = writeln!(w, "global");
    let _ = writeln!(w, "    maxconn 1000");
    if let Some(sock) = &opts.stats_socket {
        let _ = writeln!(w, "    stats socket {sock} mode 600 level admin");
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "defaults");
    for line in [
        "log global",
        "mode tcp",
        "retries 2",
        "timeout client 30m",
        "timeout connect 4s",
        "timeout server 30m",
        "timeout check 5s",
    ] {
        let _ = writeln!(w, "    {line}");
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "listen stats");
    let _ = writeln!(w, "    mode http");
    let _ = writeln!(w, "    bind {}:{}", opts.bind, opts.stats_port);
    let _ = writeln!(w, "    stats enable");
    let _ = writeln!(w, "    stats uri /");
    let replica_path = match &opts.replica_lag {
        Some(lag) => format!("/replica?lag={lag}"),
        None => "/replica".to_string(),
    };
    for (section, port, path, balance) in [
        ("primary", opts.primary_port, "/primary".to_string(), false),
        ("replicas", opts.replica_port, replica_path, true),
    ] {
        let _ = writeln!(w);
        let _ = writeln!(w, "listen {section}");
        let _ = writeln!(w, "    bind {}:{port}", opts.bind);
        if balance {
            let _ = writeln!(w, "    balance roundrobin");
        }
        let _ = writeln!(w, "    option httpchk {} {path}", opts.method.as_str());
        let _ = writeln!(w, "    http-check expect status 200");
        let _ = writeln!(
            w,
            "    default-server inter {} fall {} rise {} on-marked-down shutdown-sessions",
            opts.inter, opts.fall, opts.rise
        );
        for s in &servers {
            let addr = s
                .check_host
                .as_deref()
                .map(|h| format!(" addr {h}"))
                .unwrap_or_default();
            let tls = if s.tls || opts.ssl {
                let verify = match &opts.check_ca {
                    Some(ca) => format!(" verify required ca-file {ca}"),
                    None => " verify none".to_string(),
                };
                let crt = opts
                    .check_cert
                    .as_ref()
                    .map(|c| format!(" crt {c}"))
                    .unwrap_or_default();
                format!(" check-ssl{verify}{crt}")
            } else {
                String::new()
            };
            let _ = writeln!(
                w,
                "    server {} {} maxconn {} check{addr} port {}{tls}",
                s.name, s.addr, opts.maxconn, s.check_port
            );
        }
    }
    Ok(o)
}

#[cfg(test)]
#[path = "haproxy_tests.rs"]
mod tests;
