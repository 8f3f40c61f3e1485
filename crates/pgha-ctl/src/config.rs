//! The few settings pghactl needs, read the way patronictl reads them: the YAML file given with
//! `-c` (or `~/.config/patroni/patronictl.yaml`, silently skipped when absent), a directory of
//! YAML files merged in name order, `PATRONI_*` environment overrides, then `-d/--dcs-url`,
//! which replaces the file's DCS section (and namespace, when the URL has a path).
//!
//! A ctl-only file needs nothing but a DCS section: agent-only keys (`name`, `postgresql`, ...)
//! are neither required nor validated here.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_yaml_ng::{Mapping, Value};

/// DCS sections patronictl knows; pgha speaks only etcd v3.
const OTHER_DCS: &[&str] = &[
    "etcd",
    "consul",
    "zookeeper",
    "exhibitor",
    "kubernetes",
    "raft",
];

#[derive(Clone, Default, PartialEq)]
pub struct EtcdSection {
    /// `host:port` or URLs, in the order given.
    pub hosts: Vec<String>,
    pub protocol: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl EtcdSection {
    /// Endpoints as URLs: `http://host:port` (https with `protocol: https` or a CA), port 2379
    /// when none is given.
    pub fn endpoints(&self) -> Vec<String> {
        let tls = self.cacert.is_some()
            || self
                .protocol
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case("https"));
        let scheme = if tls { "https" } else { "http" };
        self.hosts
            .iter()
            .map(|h| h.trim())
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.contains("://") {
                    h.trim_end_matches('/').to_string()
                } else if has_port(h) {
                    format!("{scheme}://{h}")
                } else if h.contains(':') && !h.starts_with('[') {
                    format!("{scheme}://[{h}]:2379")
                } else {
                    format!("{scheme}://{h}:2379")
                }
            })
            .collect()
    }
}

/// Debug output shows whether a secret is set, never its value: it ends up in logs.
const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for EtcdSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSection")
            .field("hosts", &self.hosts)
            .field("protocol", &self.protocol)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("cacert", &self.cacert)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl std::fmt::Debug for CtlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CtlConfig")
            .field("scope", &self.scope)
            .field("namespace", &self.namespace)
            .field("etcd3", &self.etcd3)
            .field("unsupported_dcs", &self.unsupported_dcs)
            .field("insecure", &self.insecure)
            .field("rest_tls", &self.rest_tls)
            .field(
                "rest_auth",
                &self.rest_auth.as_ref().map(|(u, _)| (u, REDACTED)),
            )
            .field(
                "superuser",
                &self
                    .superuser
                    .as_ref()
                    .map(|(u, p)| (u, p.as_ref().map(|_| REDACTED))),
            )
            .finish()
    }
}

fn has_port(h: &str) -> bool {
    match h.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => h.matches(':').count() == 1,
    }
}

#[derive(Clone, Default, PartialEq)]
pub struct CtlConfig {
    pub scope: Option<String>,
    /// As written (`/service/` by default); see [`CtlConfig::prefix`].
    pub namespace: String,
    pub etcd3: Option<EtcdSection>,
    /// A DCS section pgha cannot use (`consul`, `zookeeper`, `etcd` v2, ...), for the error text.
    pub unsupported_dcs: Option<String>,
    pub insecure: bool,
    /// TLS to the agents' REST API: `ctl.cacert` (else `restapi.cafile`), `ctl.certfile`,
    /// `ctl.keyfile`, `ctl.keyfile_password`, each overridable by `PATRONI_CTL_*`; `insecure`
    /// follows [`CtlConfig::insecure`].
    pub rest_tls: pgha_tls::ClientTls,
    /// Basic auth for the agents' REST API: `ctl.authentication`, else `restapi.authentication`
    /// (patronictl's order), each needing both `username` and `password`.
    pub rest_auth: Option<(String, String)>,
    /// `postgresql.authentication.superuser`: (username, password), for `query`.
    pub superuser: Option<(String, Option<String>)>,
}

impl CtlConfig {
    /// The key prefix of cluster `scope`: `/<namespace>/<scope>/` with runs of `/` collapsed,
    /// as Patroni builds it.
    pub fn prefix(&self, scope: &str) -> String {
        let raw = format!("/{}/{}/", self.namespace, scope);
        let mut out = String::with_capacity(raw.len());
        for c in raw.chars() {
            if !(c == '/' && out.ends_with('/')) {
                out.push(c);
            }
        }
        out
    }

    /// The etcd section to use, or an error that says what is missing.
    pub fn etcd(&self) -> Result<&EtcdSection> {
        match (&self.etcd3, &self.unsupported_dcs) {
            (Some(e), _) if !e.hosts.is_empty() => Ok(e),
            (_, Some(other)) => bail!(
                "pghactl talks to etcd v3 only, but the configuration uses `{other}`; \
                 add an `etcd3` section or pass -d etcd3://host:port"
            ),
            _ => bail!(
                "Can not find suitable configuration of distributed configuration store. \
                 Available implementations: etcd3 (set it in the configuration file or pass \
                 -d etcd3://host:port)"
            ),
        }
    }
}

/// patronictl's default configuration file: `$XDG_CONFIG_HOME/patroni/patronictl.yaml`.
pub fn default_config_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"));
    base.join("patroni").join("patronictl.yaml")
}

/// Loads the configuration. `path` is `None` when `-c` was not given (the default file may then
/// be missing); `env` yields the process environment (a parameter for tests).
pub fn load(
    path: Option<&Path>,
    dcs_url: Option<&str>,
    insecure: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CtlConfig> {
    let explicit = path.is_some();
    let path = path
        .map(Path::to_path_buf)
        .unwrap_or_else(default_config_path);
    let doc = if path.exists() {
        read_path(&path)?
    } else if explicit {
        bail!(
            "Provided config file {} not existing or no read rights. Check the -c/--config-file parameter",
            path.display()
        )
    } else {
        Mapping::new()
    };
    let mut cfg = from_mapping(&doc, env)?;
    if let Some(url) = dcs_url.filter(|u| !u.trim().is_empty()) {
        let (hosts, namespace) = parse_dcs_url(url)?;
        cfg.etcd3 = Some(EtcdSection {
            hosts: vec![hosts],
            ..Default::default()
        });
        cfg.unsupported_dcs = None;
        if let Some(ns) = namespace {
            cfg.namespace = ns;
        }
    }
    cfg.insecure |= insecure;
    cfg.rest_tls.insecure = cfg.insecure;
    Ok(cfg)
}

fn read_path(path: &Path) -> Result<Mapping> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read configuration directory {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
            .collect();
        files.sort();
        let mut merged = Mapping::new();
        for f in files {
            merge(&mut merged, read_file(&f)?);
        }
        Ok(merged)
    } else {
        read_file(path)
    }
}

fn read_file(path: &Path) -> Result<Mapping> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration file {}", path.display()))?;
    match serde_yaml_ng::from_str::<Value>(&text)
        .with_context(|| format!("configuration file {} is not valid YAML", path.display()))?
    {
        Value::Mapping(m) => Ok(m),
        Value::Null => Ok(Mapping::new()),
        _ => bail!(
            "configuration file {} is not a YAML mapping",
            path.display()
        ),
    }
}

fn merge(into: &mut Mapping, from: Mapping) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Mapping(a)), Value::Mapping(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `hosts` as patronictl accepts it: a YAML list or a comma-separated string.
fn host_list(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items.iter().filter_map(|i| text(Some(i))).collect(),
        other => text(Some(other))
            .map(|s| split_list(&s))
            .unwrap_or_default(),
    }
}

/// `'a:1','b:2'`, `[a:1, b:2]` or `a:1,b:2` (the forms `PATRONI_ETCD3_HOSTS` takes).
fn split_list(s: &str) -> Vec<String> {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|h| h.trim().trim_matches(['\'', '"']).trim().to_string())
        .filter(|h| !h.is_empty())
        .collect()
}

fn from_mapping(doc: &Mapping, env: &dyn Fn(&str) -> Option<String>) -> Result<CtlConfig> {
    let get = |k: &str| doc.get(k);
    let mut cfg = CtlConfig {
        scope: text(get("scope")),
        namespace: text(get("namespace")).unwrap_or_else(|| "/service/".into()),
        ..Default::default()
    };
    if let Some(Value::Mapping(e)) = get("etcd3") {
        let field = |k: &str| text(e.get(k));
        let mut hosts = Vec::new();
        for key in ["url", "proxy"] {
            hosts.extend(field(key));
        }
        if let Some(h) = e.get("hosts") {
            hosts.extend(host_list(h));
        }
        hosts.extend(field("host"));
        cfg.etcd3 = Some(EtcdSection {
            hosts,
            protocol: field("protocol"),
            username: field("username").or_else(|| field("user")),
            password: field("password"),
            cacert: field("cacert").map(PathBuf::from),
            cert: field("cert").map(PathBuf::from),
            key: field("key").map(PathBuf::from),
        });
    }
    cfg.unsupported_dcs = OTHER_DCS
        .iter()
        .find(|d| doc.contains_key(**d))
        .map(|d| d.to_string());
    if let Some(Value::Mapping(ctl)) = get("ctl") {
        cfg.insecure = matches!(ctl.get("insecure"), Some(Value::Bool(true)));
    }
    apply_env(&mut cfg, env);
    let env_nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(v) = env_nonempty("PATRONI_CTL_INSECURE") {
        cfg.insecure = matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "1");
    }
    let section_text = |section: &str, key: &str| text(get(section).and_then(|s| s.get(key)));
    let ctl_file = |key: &str| {
        env_nonempty(&format!("PATRONI_CTL_{}", key.to_ascii_uppercase()))
            .or_else(|| section_text("ctl", key))
    };
    cfg.rest_tls = pgha_tls::ClientTls {
        ca_file: ctl_file("cacert")
            .or_else(|| section_text("restapi", "cafile"))
            .map(PathBuf::from),
        cert_file: ctl_file("certfile").map(PathBuf::from),
        key_file: ctl_file("keyfile").map(PathBuf::from),
        key_password: ctl_file("keyfile_password"),
        insecure: cfg.insecure,
    };
    // `<section>.authentication.{username,password}`, each overridable by `PATRONI_<ENV>_*`.
    let credentials = |path: &[&str], env_prefix: &str| {
        let mut node = Some(&Value::Mapping(doc.clone()));
        for key in path {
            node = node.and_then(|n| n.get(*key));
        }
        let field = |k: &str| {
            env_nonempty(&format!("PATRONI_{env_prefix}_{}", k.to_ascii_uppercase()))
                .or_else(|| text(node.and_then(|n| n.get(k))))
        };
        (field("username"), field("password"))
    };
    let pair = |(u, p): (Option<String>, Option<String>)| u.zip(p);
    cfg.rest_auth = pair(credentials(&["ctl", "authentication"], "CTL"))
        .or_else(|| pair(credentials(&["restapi", "authentication"], "RESTAPI")));
    let (user, password) = credentials(&["postgresql", "authentication", "superuser"], "SUPERUSER");
    cfg.superuser = user.map(|u| (u, password));
    Ok(cfg)
}

/// `PATRONI_SCOPE`, `PATRONI_NAMESPACE` and `PATRONI_ETCD3_*` override the file, as in Patroni.
fn apply_env(cfg: &mut CtlConfig, env: &dyn Fn(&str) -> Option<String>) {
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(s) = env("PATRONI_SCOPE") {
        cfg.scope = Some(s);
    }
    if let Some(n) = env("PATRONI_NAMESPACE") {
        cfg.namespace = n;
    }
    let hosts: Vec<String> = ["PATRONI_ETCD3_URL", "PATRONI_ETCD3_PROXY"]
        .iter()
        .filter_map(|k| env(k))
        .chain(
            env("PATRONI_ETCD3_HOSTS")
                .map(|h| split_list(&h))
                .into_iter()
                .flatten(),
        )
        .chain(env("PATRONI_ETCD3_HOST"))
        .collect();
    let fields = [
        "PATRONI_ETCD3_PROTOCOL",
        "PATRONI_ETCD3_USERNAME",
        "PATRONI_ETCD3_PASSWORD",
        "PATRONI_ETCD3_CACERT",
        "PATRONI_ETCD3_CERT",
        "PATRONI_ETCD3_KEY",
    ];
    if hosts.is_empty() && fields.iter().all(|k| env(k).is_none()) {
        return;
    }
    let e = cfg.etcd3.get_or_insert_with(EtcdSection::default);
    if !hosts.is_empty() {
        e.hosts = hosts;
    }
    let set = |target: &mut Option<String>, k: &str| {
        if let Some(v) = env(k) {
            *target = Some(v);
        }
    };
    set(&mut e.protocol, fields[0]);
    set(&mut e.username, fields[1]);
    set(&mut e.password, fields[2]);
    for (target, k) in [
        (&mut e.cacert, fields[3]),
        (&mut e.cert, fields[4]),
        (&mut e.key, fields[5]),
    ] {
        if let Some(v) = env(k) {
            *target = Some(PathBuf::from(v));
        }
    }
}

/// `-d/--dcs-url`: `[scheme://]host[:port][/namespace]` → (`host:port`, namespace). No scheme
/// means etcd; pgha reads etcd through its v3 API whichever of `etcd`/`etcd3` is named.
pub fn parse_dcs_url(url: &str) -> Result<(String, Option<String>)> {
    let url = url.trim();
    let (scheme, rest) = match url.split_once("//") {
        Some((s, r)) => (s.trim_end_matches(':').to_ascii_lowercase(), r),
        None => (String::new(), url),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, p) = v6
                .split_once(']')
                .ok_or_else(|| anyhow!("invalid DCS url {url}"))?;
            (format!("[{h}]"), p.strip_prefix(':').unwrap_or(""))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (authority.to_string(), ""),
        },
    };
    let port: Option<u16> = if port.is_empty() {
        None
    } else {
        Some(
            port.parse()
                .map_err(|_| anyhow!("invalid port in DCS url {url}"))?,
        )
    };
    match scheme.as_str() {
        "etcd3" | "etcd" => {}
        "" => match port {
            Some(2181) => bail!("pghactl talks to etcd v3 only (zookeeper url {url})"),
            Some(8181) => bail!("pghactl talks to etcd v3 only (exhibitor url {url})"),
            Some(8500) => bail!("pghactl talks to etcd v3 only (consul url {url})"),
            _ => {}
        },
        "zookeeper" | "exhibitor" | "consul" => {
            bail!("pghactl talks to etcd v3 only (got dcs scheme {scheme})")
        }
        other => bail!("Unknown dcs scheme: {other}"),
    }
    let host = if host.is_empty() {
        "localhost".to_string()
    } else {
        host.to_ascii_lowercase()
    };
    let namespace =
        (!path.trim().is_empty() && path.trim() != "/").then(|| path.trim().to_string());
    Ok((format!("{host}:{}", port.unwrap_or(2379)), namespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> CtlConfig {
        let Value::Mapping(m) = serde_yaml_ng::from_str(yaml).unwrap() else {
            panic!()
        };
        from_mapping(&m, env).unwrap()
    }

    #[test]
    fn dcs_urls() {
        let p = |u| parse_dcs_url(u).unwrap();
        assert_eq!(
            p("etcd3://127.0.0.1:23790"),
            ("127.0.0.1:23790".into(), None)
        );
        assert_eq!(p("127.0.0.1:2379"), ("127.0.0.1:2379".into(), None));
        assert_eq!(p("etcd://:2399"), ("localhost:2399".into(), None));
        assert_eq!(p("etcd3://test"), ("test:2379".into(), None));
        assert_eq!(
            p("etcd3://Random.com:2399/customnamespace"),
            ("random.com:2399".into(), Some("/customnamespace".into()))
        );
        assert_eq!(p("etcd3://h:1/"), ("h:1".into(), None));
        assert_eq!(p("etcd3://[::1]:2379"), ("[::1]:2379".into(), None));
        assert!(parse_dcs_url("consul://h:8500").is_err());
        assert!(parse_dcs_url("h:8500").is_err());
        assert_eq!(
            parse_dcs_url("foo://h").unwrap_err().to_string(),
            "Unknown dcs scheme: foo"
        );
        assert!(parse_dcs_url("etcd3://h:port").is_err());
    }

    #[test]
    fn ctl_tls_keys_and_their_environment_overrides() {
        let yaml = "etcd3:\n  host: h:1\nrestapi:\n  cafile: /r/ca.pem\n\
                    ctl:\n  certfile: /c/ctl.crt\n  keyfile: /c/ctl.key\n  insecure: false\n";
        let c = parse(yaml, &no_env);
        assert_eq!(
            c.rest_tls,
            pgha_tls::ClientTls {
                // No ctl.cacert: restapi.cafile, as patronictl does.
                ca_file: Some("/r/ca.pem".into()),
                cert_file: Some("/c/ctl.crt".into()),
                key_file: Some("/c/ctl.key".into()),
                key_password: None,
                insecure: false,
            }
        );
        let env = |k: &str| match k {
            "PATRONI_CTL_CACERT" => Some("/e/ca.pem".to_string()),
            "PATRONI_CTL_CERTFILE" => Some("/e/c.crt".to_string()),
            "PATRONI_CTL_KEYFILE" => Some("/e/c.key".to_string()),
            "PATRONI_CTL_INSECURE" => Some("true".to_string()),
            _ => None,
        };
        let c = parse(yaml, &env);
        assert_eq!(c.rest_tls.ca_file.as_deref(), Some(Path::new("/e/ca.pem")));
        assert_eq!(c.rest_tls.cert_file.as_deref(), Some(Path::new("/e/c.crt")));
        assert_eq!(c.rest_tls.key_file.as_deref(), Some(Path::new("/e/c.key")));
        assert!(c.insecure && c.rest_tls.insecure);
    }

    #[test]
    fn ctl_only_file() {
        let c = parse(
            "etcd3:\n  hosts: 10.0.0.1:2379,10.0.0.2\n  username: u\n",
            &no_env,
        );
        assert_eq!(c.scope, None);
        assert_eq!(c.namespace, "/service/");
        assert_eq!(c.prefix("batman"), "/service/batman/");
        let e = c.etcd().unwrap();
        assert_eq!(
            e.endpoints(),
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(e.username.as_deref(), Some("u"));

        let c = parse(
            "scope: b\nnamespace: ns\netcd3:\n  host: h:1\n  protocol: https\n",
            &no_env,
        );
        assert_eq!(c.prefix("b"), "/ns/b/");
        assert_eq!(c.etcd().unwrap().endpoints(), ["https://h:1"]);
        let c = parse(
            "etcd3:\n  hosts: [a:1, 'b:2']\n  url: http://u:3\n",
            &no_env,
        );
        assert_eq!(
            c.etcd().unwrap().endpoints(),
            ["http://u:3", "http://a:1", "http://b:2"]
        );
    }

    #[test]
    fn unsupported_dcs_and_missing_dcs() {
        let c = parse("scope: x\nconsul:\n  host: h:8500\n", &no_env);
        assert!(c.etcd().unwrap_err().to_string().contains("consul"));
        let c = parse("scope: x\n", &no_env);
        assert!(c
            .etcd()
            .unwrap_err()
            .to_string()
            .contains("Can not find suitable configuration"));
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let c = parse(
            "etcd3:\n  host: h:1\n  username: u\n  password: S3cretEtcd\n\
             ctl:\n  keyfile_password: S3cretKey\n  certfile: /c.pem\n\
             restapi:\n  authentication:\n    username: r\n    password: S3cretRest\n\
             postgresql:\n  authentication:\n    superuser:\n      username: postgres\n      password: S3cretSuper\n",
            &no_env,
        );
        assert_eq!(c.rest_tls.key_password.as_deref(), Some("S3cretKey"));
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("S3cret") && debug.contains("<redacted>"),
            "{debug}"
        );
    }

    #[test]
    fn environment_overrides() {
        let vars: HashMap<&str, &str> = [
            ("PATRONI_SCOPE", "envscope"),
            ("PATRONI_ETCD3_HOSTS", "'e1:2379','e2:2379'"),
            ("PATRONI_ETCD3_PASSWORD", "pw"),
        ]
        .into();
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        let c = parse("scope: file\netcd3:\n  host: f:1\n  username: u\n", &env);
        assert_eq!(c.scope.as_deref(), Some("envscope"));
        let e = c.etcd().unwrap();
        assert_eq!(e.hosts, ["e1:2379", "e2:2379"]);
        assert_eq!(
            (e.username.as_deref(), e.password.as_deref()),
            (Some("u"), Some("pw"))
        );
    }

    #[test]
    fn rest_and_superuser_credentials() {
        let c = parse(
            "restapi:\n  authentication:\n    username: r\n    password: rp\n\
             postgresql:\n  authentication:\n    superuser:\n      username: postgres\n      password: pw\n",
            &no_env,
        );
        assert_eq!(c.rest_auth, Some(("r".into(), "rp".into())));
        assert_eq!(c.superuser, Some(("postgres".into(), Some("pw".into()))));
        let c = parse(
            "ctl:\n  authentication:\n    username: c\n    password: cp\n\
             restapi:\n  authentication:\n    username: r\n    password: rp\n",
            &no_env,
        );
        assert_eq!(c.rest_auth, Some(("c".into(), "cp".into())));
        let vars: HashMap<&str, &str> = [("PATRONI_RESTAPI_PASSWORD", "envpw")].into();
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        let c = parse("restapi:\n  authentication:\n    username: r\n", &env);
        assert_eq!(c.rest_auth, Some(("r".into(), "envpw".into())));
        assert_eq!(
            parse("restapi:\n  authentication:\n    username: r\n", &no_env).rest_auth,
            None
        );
    }

    #[test]
    fn dcs_url_replaces_file_section_and_namespace() {
        let dir = std::env::temp_dir().join(format!("pghactl-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ctl.yml");
        std::fs::write(
            &f,
            "scope: s\nnamespace: /a\netcd3:\n  host: f:1\n  username: u\n",
        )
        .unwrap();
        let c = load(Some(&f), Some("etcd3://x:2/b"), false, &no_env).unwrap();
        assert_eq!(c.etcd().unwrap().hosts, ["x:2"]);
        assert_eq!(c.etcd().unwrap().username, None);
        assert_eq!(c.prefix("s"), "/b/s/");
        // A directory of files is merged in name order.
        std::fs::write(dir.join("zz.yaml"), "etcd3:\n  username: v\n").unwrap();
        let c = load(Some(&dir), None, true, &no_env).unwrap();
        assert_eq!(c.etcd().unwrap().username.as_deref(), Some("v"));
        assert_eq!(c.etcd().unwrap().hosts, ["f:1"]);
        assert!(c.insecure);
        let missing = dir.join("nope.yml");
        let err = load(Some(&missing), None, false, &no_env)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("Provided config file") && err.contains("-c/--config-file"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
