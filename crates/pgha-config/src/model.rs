//! The typed local configuration. Built and validated by [`crate::load`] and friends; the
//! values here are already checked, so the accessors do not fail.

use std::fmt;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::addr;

/// A node's local configuration: Patroni's YAML schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub scope: String,
    /// Normalised to a leading slash and no trailing slash: `/service`. The root namespace
    /// (`/`) is the empty string.
    pub namespace: String,
    pub name: String,
    pub restapi: RestApi,
    pub ctl: Option<Ctl>,
    /// The `etcd3` section: the only DCS pgha talks to.
    pub etcd3: Option<Etcd>,
    /// The `etcd` (v2 API) section. Parsed only to say clearly that it is not supported; it is
    /// never `Some` without `etcd3` in a loaded configuration.
    pub etcd: Option<Etcd>,
    pub bootstrap: Bootstrap,
    pub postgresql: Postgresql,
    pub tags: Map<String, Value>,
    /// The `watchdog` section; Patroni's defaults (`automatic`, `/dev/watchdog`) when absent.
    pub watchdog: Watchdog,
    pub lease_guard: LeaseGuard,
    pub log: Log,
}

impl Config {
    /// The DCS key prefix of this cluster, `/service/batman/`: namespace, scope, each followed
    /// by exactly one slash.
    pub fn cluster_prefix(&self) -> String {
        format!("{}/{}/", normalize_namespace(&self.namespace), self.scope)
    }

    /// The etcd v3 endpoints as URLs (`http://127.0.0.1:2379`). Entries given as URLs keep their
    /// scheme; others get `https` when `protocol: https` is set (or `cacert` is set and
    /// `protocol` is not), `http` otherwise, and port 2379 when they have none.
    pub fn etcd_endpoints(&self) -> Vec<String> {
        self.etcd3.as_ref().map(Etcd::endpoints).unwrap_or_default()
    }

    /// Where the agent writes the password file it hands to `pg_basebackup`, `pg_rewind` and
    /// the bootstrap scripts: `postgresql.pgpass` when set. Otherwise `pgpass_<name>` next to
    /// the data directory (in its parent directory). Patroni's default is `~/.pgpass`, but the
    /// agent rewrites this file, so pgha does not overwrite the user's own `~/.pgpass`.
    pub fn pgpass_path(&self) -> PathBuf {
        if let Some(p) = &self.postgresql.pgpass {
            return p.clone();
        }
        let file = format!("pgpass_{}", self.name);
        match self.postgresql.data_dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.join(file),
            Some(_) => PathBuf::from(file),
            None => std::env::temp_dir().join(file),
        }
    }
}

/// How the agent uses a watchdog device while it leads (`watchdog.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogMode {
    Off,
    /// Use the device when it can be opened, lead without it otherwise.
    Automatic,
    /// Lead only with an active watchdog.
    Required,
}

/// `watchdog.driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogDriver {
    /// A Linux watchdog device, driven with its ioctls.
    Default,
    /// Patroni's test double: timeout and keepalives are plain writes to `device` (a FIFO),
    /// so a test can play the device.
    Testing,
}

/// The `lease_guard` section (pgha's own): a process apart from the agent that kills the
/// leader's postgres when the agent has not renewed the leader lease in time, so a frozen
/// agent cannot leave a primary committing after another node may have promoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGuard {
    /// On unless `mode: off`.
    pub enabled: bool,
    /// Milliseconds before the lease's expiry at which postgres is killed.
    pub safety_margin_ms: u64,
}

impl Default for LeaseGuard {
    fn default() -> Self {
        LeaseGuard {
            enabled: true,
            safety_margin_ms: 1000,
        }
    }
}

/// The `watchdog` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watchdog {
    pub mode: WatchdogMode,
    pub device: PathBuf,
    /// Seconds between the watchdog firing and the leader key expiring; -1 means the
    /// watchdog timeout is half the ttl.
    pub safety_margin: i64,
    pub driver: WatchdogDriver,
    /// The section was in the configuration (not Patroni's implicit `automatic`): a device
    /// that cannot be opened is then worth a warning.
    pub explicit: bool,
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog {
            mode: WatchdogMode::Automatic,
            device: PathBuf::from("/dev/watchdog"),
            safety_margin: 5,
            driver: WatchdogDriver::Default,
            explicit: false,
        }
    }
}

impl Watchdog {
    /// The watchdog timeout for a leader key `ttl`: `ttl - safety_margin`, or `ttl / 2` with
    /// `safety_margin: -1`. May be zero or negative for a bad combination; callers check.
    pub fn timeout(&self, ttl: u64) -> i64 {
        let ttl = i64::try_from(ttl).unwrap_or(i64::MAX);
        if self.safety_margin == -1 {
            ttl / 2
        } else {
            ttl.saturating_sub(self.safety_margin)
        }
    }
}

/// `/service`, `service/`, `//service//` -> `/service`; `/` and `` -> ``.
pub(crate) fn normalize_namespace(ns: &str) -> String {
    let trimmed = ns.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

/// The `restapi` section.
#[derive(Clone, PartialEq)]
pub struct RestApi {
    /// `host:port` to bind.
    pub listen: String,
    /// `host:port` other members and clients use; defaults to `listen`.
    pub connect_address: String,
    pub authentication: Option<Auth>,
    pub certfile: Option<String>,
    pub keyfile: Option<String>,
    /// Opens an encrypted (PKCS#8) `keyfile`.
    pub keyfile_password: Option<String>,
    pub cafile: Option<String>,
    /// `none`, `optional` or `required`.
    pub verify_client: Option<String>,
    /// An OpenSSL cipher string, checked to select suites rustls offers.
    pub ciphers: Option<String>,
    /// IPs, CIDR networks and host names allowed to make unsafe (modifying) requests; empty:
    /// anyone (unless `allowlist_include_members`). CIDR entries are checked here.
    pub allowlist: Vec<String>,
    /// The hosts of the members' `api_url` in the DCS may make unsafe requests too.
    pub allowlist_include_members: bool,
    /// Headers added to every response, in the order written.
    pub http_extra_headers: Vec<(String, String)>,
    /// Headers added to every response when the REST API serves HTTPS (`certfile` set).
    pub https_extra_headers: Vec<(String, String)>,
    /// Keys Patroni knows that pgha keeps but does not act on (`request_queue_size`,
    /// `server_tokens`, `thread_pool_size`).
    pub extra: Map<String, Value>,
}

impl fmt::Debug for RestApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestApi")
            .field("listen", &self.listen)
            .field("connect_address", &self.connect_address)
            .field("authentication", &self.authentication)
            .field("certfile", &self.certfile)
            .field("keyfile", &self.keyfile)
            .field("keyfile_password", &redacted(&self.keyfile_password))
            .field("cafile", &self.cafile)
            .field("verify_client", &self.verify_client)
            .field("ciphers", &self.ciphers)
            .field("allowlist", &self.allowlist)
            .field("allowlist_include_members", &self.allowlist_include_members)
            .field("http_extra_headers", &self.http_extra_headers)
            .field("https_extra_headers", &self.https_extra_headers)
            .field("extra", &self.extra)
            .finish()
    }
}

/// How a secret shows in Debug output: whether it is set, never its value.
fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "<redacted>")
}

impl RestApi {
    /// `http(s)://<connect_address>/patroni`, as published in the member key.
    pub fn api_url(&self) -> String {
        let scheme = if self.certfile.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/patroni", self.connect_address)
    }

    /// Host part of `listen` (brackets removed; empty means all interfaces).
    pub fn listen_host(&self) -> String {
        addr::parse(&self.listen)
            .map(|hp| hp.hosts.join(","))
            .unwrap_or_default()
    }

    /// Port of `listen`.
    pub fn listen_port(&self) -> u16 {
        addr::parse(&self.listen).map(|hp| hp.port).unwrap_or(8008)
    }

    /// The headers every response carries: `http_extra_headers`, then, over HTTPS,
    /// `https_extra_headers`, as Patroni adds them.
    pub fn extra_headers(&self) -> Vec<(String, String)> {
        let mut h = self.http_extra_headers.clone();
        if self.certfile.is_some() {
            h.extend(self.https_extra_headers.iter().cloned());
        }
        h
    }
}

/// Username and password for the REST API (`restapi.authentication`, `ctl.authentication`).
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The `ctl` section (patronictl's client settings).
#[derive(Debug, Clone, PartialEq)]
pub struct Ctl {
    /// Falls back to `restapi.authentication` in the client when not set.
    pub authentication: Option<Auth>,
    pub insecure: bool,
    pub certfile: Option<String>,
    pub keyfile: Option<String>,
    pub cacert: Option<String>,
}

/// An `etcd3` (or `etcd`) section. `host`, `hosts`, `url` and `proxy` are all folded into
/// `hosts`, in that order; `url`/`proxy` entries keep their scheme.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Etcd {
    pub hosts: Vec<String>,
    /// `http` or `https`.
    pub protocol: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub cacert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

impl Etcd {
    /// True when endpoints without a scheme are reached over TLS.
    /// `protocol: https`, or a `cacert` without an explicit `protocol`.
    pub fn uses_tls(&self) -> bool {
        match self.protocol.as_deref() {
            Some(p) => p.eq_ignore_ascii_case("https"),
            None => self.cacert.is_some(),
        }
    }

    /// See [`Config::etcd_endpoints`].
    pub fn endpoints(&self) -> Vec<String> {
        let scheme = if self.uses_tls() { "https" } else { "http" };
        self.hosts
            .iter()
            .map(|h| h.trim())
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.contains("://") {
                    h.trim_end_matches('/').to_string()
                } else if has_port(h) {
                    format!("{scheme}://{h}")
                } else if h.starts_with('[') {
                    format!("{scheme}://{h}:2379")
                } else {
                    format!("{scheme}://{}", addr::join(h, 2379))
                }
            })
            .collect()
    }
}

/// `host:port`, `[v6]:port` have a port; `host`, `[v6]` and a bare `::1` do not.
fn has_port(h: &str) -> bool {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split_once("]:").is_some();
    }
    h.matches(':').count() == 1
}

impl fmt::Debug for Etcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd")
            .field("hosts", &self.hosts)
            .field("protocol", &self.protocol)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("cacert", &self.cacert)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

/// The `bootstrap` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bootstrap {
    /// Written to the DCS `config` key once, when the cluster is initialised.
    pub dcs: Map<String, Value>,
    pub initdb: Vec<InitdbOption>,
    pub pg_hba: Vec<String>,
    /// `post_bootstrap`, or its older name `post_init`.
    pub post_bootstrap: Option<String>,
    /// Custom bootstrap method name; `None` or `initdb` means initdb.
    pub method: Option<String>,
    /// The section of a custom `method` (`bootstrap.<method>`), when one is chosen.
    pub custom: Option<BootstrapMethod>,
}

impl Bootstrap {
    /// The custom bootstrap method, when a method other than `initdb` is chosen.
    pub fn custom_method(&self) -> Option<&BootstrapMethod> {
        self.custom.as_ref()
    }
}

/// `bootstrap.<method>`: a command that creates the data directory instead of initdb.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapMethod {
    pub name: String,
    pub command: String,
    /// Leave the recovery.signal / standby.signal the command wrote (and its recovery
    /// settings) in place.
    pub keep_existing_recovery_conf: bool,
    /// Do not pass `--scope=` and `--datadir=`.
    pub no_params: bool,
    /// Recovery settings (restore_command, recovery_target_*, ...) to recover with before the
    /// node is taken as the new primary.
    pub recovery_conf: Option<Map<String, Value>>,
    /// Every other key, in the order written: passed as `--key=value`.
    pub extra: Map<String, Value>,
}

impl BootstrapMethod {
    /// The command line: the command split as a shell would, then `--scope=` and `--datadir=`
    /// (unless `no_params`), then the other keys as `--key=value`, as Patroni calls it.
    pub fn argv(&self, scope: &str, data_dir: &str) -> Result<Vec<String>, String> {
        let mut argv = split_command(&self.command)?;
        if !self.no_params {
            argv.push(format!("--scope={scope}"));
            argv.push(format!("--datadir={data_dir}"));
        }
        for (k, v) in &self.extra {
            argv.push(format!("--{k}={}", python_str(v)));
        }
        Ok(argv)
    }
}

/// A custom entry of `postgresql.create_replica_methods` and its section `postgresql.<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaMethod {
    pub name: String,
    /// `None`: the method's name is the command.
    pub command: Option<String>,
    /// Do not empty the data directory before running the command.
    pub keep_data: bool,
    /// The method can create a replica while the cluster has no leader (restore from a
    /// backup or an archive).
    pub no_leader: bool,
    /// Do not pass `--scope=`, `--role=`, `--datadir=` and `--connstring=`.
    pub no_params: bool,
    /// The section's keys but `command`, in the order written (including `keep_data`,
    /// `no_leader`, `no_params`: Patroni passes them on too).
    pub options: Map<String, Value>,
}

impl ReplicaMethod {
    /// The command line as Patroni builds it: the command split as a shell would, then every
    /// key of the section as `--key=value` with `--scope`, `--role=replica`, `--datadir` and
    /// `--connstring` set; with `no_params` those four and the three flags are left out.
    pub fn argv(
        &self,
        scope: &str,
        data_dir: &str,
        connstring: &str,
    ) -> Result<Vec<String>, String> {
        let mut argv = split_command(self.command.as_deref().unwrap_or(&self.name))?;
        let mut options = self.options.clone();
        if self.no_params {
            for flag in ["no_params", "no_leader", "keep_data"] {
                options.shift_remove(flag);
            }
        } else {
            for (k, v) in [
                ("scope", scope),
                ("role", "replica"),
                ("datadir", data_dir),
                ("connstring", connstring),
            ] {
                options.insert(k.to_string(), Value::String(v.to_string()));
            }
        }
        for (k, v) in &options {
            argv.push(format!("--{k}={}", python_str(v)));
        }
        Ok(argv)
    }
}

/// Split a command line as a POSIX shell would (quotes, backslashes), without running a shell.
pub fn split_command(command: &str) -> Result<Vec<String>, String> {
    match shlex::split(command) {
        Some(argv) if !argv.is_empty() => Ok(argv),
        Some(_) => Err("the command is empty".to_string()),
        None => Err(format!(
            "cannot split {command:?} into arguments (unbalanced quotes?)"
        )),
    }
}

/// A value the way Patroni (Python's `str()`) writes it into `--key=value`: `True`, `None`,
/// `5`, strings as they are, lists and mappings in Python's notation.
pub fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => python_repr(other),
    }
}

fn python_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            if s.contains('\'') && !s.contains('"') {
                format!("\"{s}\"")
            } else {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!(
                    "{}: {}",
                    python_repr(&Value::String(k.clone())),
                    python_repr(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// One option of `bootstrap.initdb` or `postgresql.basebackup`: `- data-checksums` or
/// `- encoding: UTF8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitdbOption {
    Flag(String),
    KeyValue(String, String),
}

impl InitdbOption {
    /// `--data-checksums`, `--encoding=UTF8`.
    pub fn to_arg(&self) -> String {
        match self {
            InitdbOption::Flag(f) => format!("--{}", f.trim_start_matches('-')),
            InitdbOption::KeyValue(k, v) => format!("--{}={v}", k.trim_start_matches('-')),
        }
    }
}

/// A database user of `postgresql.authentication`.
#[derive(Clone, PartialEq)]
pub struct PgUser {
    pub username: String,
    pub password: Option<String>,
    /// Connection options given with the user: `sslmode`, `sslkey`, `sslcert`, `sslrootcert`,
    /// `sslpassword`, `sslcrl`, `sslcrldir`, `sslnegotiation`, `gssencmode`, `channel_binding`.
    pub extra: Map<String, Value>,
}

impl fmt::Debug for PgUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra: Map<String, Value> = self
            .extra
            .iter()
            .map(|(k, v)| {
                let v = if k == "sslpassword" {
                    Value::from("<redacted>")
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect();
        f.debug_struct("PgUser")
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("extra", &extra)
            .finish()
    }
}

/// `postgresql.authentication`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Authentication {
    /// Required in a loaded configuration.
    pub superuser: Option<PgUser>,
    /// Required in a loaded configuration.
    pub replication: Option<PgUser>,
    pub rewind: Option<PgUser>,
}

/// The `postgresql` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Postgresql {
    /// `host:port`, hosts comma separated: `127.0.0.1:5432`, `10.0.0.1,127.0.0.1:5432`.
    pub listen: String,
    /// `host:port` published in the member key; defaults to the first concrete `listen` host.
    pub connect_address: String,
    pub data_dir: PathBuf,
    pub config_dir: Option<PathBuf>,
    pub bin_dir: Option<PathBuf>,
    /// See [`Config::pgpass_path`] for the default.
    pub pgpass: Option<PathBuf>,
    pub authentication: Authentication,
    pub parameters: Map<String, Value>,
    pub pg_hba: Vec<String>,
    /// Local override of the dynamic value; `None` when not set locally.
    pub use_pg_rewind: Option<bool>,
    /// Local override of the dynamic value; `None` when not set locally.
    pub use_slots: Option<bool>,
    /// Default `["basebackup"]`.
    pub create_replica_methods: Vec<String>,
    /// The custom entries of `create_replica_methods` (all but `basebackup`), in that order.
    pub replica_methods: Vec<ReplicaMethod>,
    pub basebackup: Vec<InitdbOption>,
    /// Seconds; default 60.
    pub pg_ctl_timeout: u64,
    pub remove_data_directory_on_rewind_failure: bool,
    pub remove_data_directory_on_diverged_timelines: bool,
    /// `on_start`, `on_stop`, `on_restart`, `on_reload`, `on_role_change` -> command.
    pub callbacks: Map<String, Value>,
    pub pre_promote: Option<String>,
    /// Run (and waited for) before every stop of postgres the agent makes.
    pub before_stop: Option<String>,
    /// Keys Patroni knows that are kept as written: `recovery_conf`, `custom_conf`, `bin_name`,
    /// `use_unix_socket`, `use_unix_socket_repl`, `pg_ident`, `proxy_address`.
    pub extra: Map<String, Value>,
}

impl Postgresql {
    /// The custom replica creation method `name` (its section), if it is one.
    pub fn replica_method(&self, name: &str) -> Option<&ReplicaMethod> {
        self.replica_methods.iter().find(|m| m.name == name)
    }

    /// Some entry of `create_replica_methods` can create a replica while there is no leader.
    pub fn can_create_replica_without_leader(&self) -> bool {
        self.replica_methods.iter().any(|m| m.no_leader)
    }

    /// The `listen_addresses` GUC: the host part of `listen`, `a,b` for several hosts.
    pub fn listen_addresses(&self) -> String {
        addr::parse(&self.listen)
            .map(|hp| hp.hosts.join(","))
            .unwrap_or_default()
    }

    /// The `port` GUC, from `listen`.
    pub fn port(&self) -> u16 {
        addr::parse(&self.listen).map(|hp| hp.port).unwrap_or(5432)
    }

    /// Host of `connect_address`.
    pub fn connect_host(&self) -> String {
        addr::parse(&self.connect_address)
            .ok()
            .and_then(|hp| hp.hosts.into_iter().next())
            .unwrap_or_default()
    }

    /// Port of `connect_address`.
    pub fn connect_port(&self) -> u16 {
        addr::parse(&self.connect_address)
            .map(|hp| hp.port)
            .unwrap_or_else(|_| self.port())
    }

    /// `postgres://<connect_address>/postgres`, as published in the member key.
    pub fn conn_url(&self) -> String {
        format!("postgres://{}/postgres", self.connect_address)
    }

    /// `config_dir`, or the data directory when not set.
    pub fn config_dir_or_data(&self) -> PathBuf {
        self.config_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.clone())
    }

    /// `bin_dir/<name>` (with `bin_name.<name>` applied), or just the name (found through
    /// `PATH`) when `bin_dir` is not set.
    pub fn binary(&self, name: &str) -> PathBuf {
        let file = match self.extra.get("bin_name") {
            Some(Value::Object(m)) => m
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or(name),
            _ => name,
        };
        match &self.bin_dir {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(file),
            _ => PathBuf::from(file),
        }
    }
}

/// The `log` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    /// `DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`; default `INFO`.
    pub level: String,
    /// `plain` (default) or `json`.
    pub r#type: String,
    pub format: Option<String>,
    pub dateformat: Option<String>,
    pub dir: Option<PathBuf>,
    pub file_num: Option<u32>,
    pub file_size: Option<u64>,
    /// Other keys Patroni knows (`traceback_level`, `loggers`, `static_fields`, `mode`,
    /// `max_queue_size`, `deduplicate_heartbeat_logs`, and a non-string `format`).
    pub extra: Map<String, Value>,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "INFO".to_string(),
            r#type: "plain".to_string(),
            format: None,
            dateformat: None,
            dir: None,
            file_num: None,
            file_size: None,
            extra: Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        assert_eq!(normalize_namespace("/service/"), "/service");
        assert_eq!(normalize_namespace("service"), "/service");
        assert_eq!(normalize_namespace("//a/b//"), "/a/b");
        assert_eq!(normalize_namespace("/"), "");
    }

    #[test]
    fn options_to_args() {
        assert_eq!(
            InitdbOption::Flag("data-checksums".into()).to_arg(),
            "--data-checksums"
        );
        assert_eq!(
            InitdbOption::Flag("--data-checksums".into()).to_arg(),
            "--data-checksums"
        );
        assert_eq!(
            InitdbOption::KeyValue("encoding".into(), "UTF8".into()).to_arg(),
            "--encoding=UTF8"
        );
    }

    #[test]
    fn endpoints() {
        let e = Etcd {
            hosts: vec![
                "a:2379".into(),
                "b".into(),
                "https://c:2379/".into(),
                "[::1]:2379".into(),
                "::1".into(),
            ],
            ..Etcd::default()
        };
        assert_eq!(
            e.endpoints(),
            vec![
                "http://a:2379",
                "http://b:2379",
                "https://c:2379",
                "http://[::1]:2379",
                "http://[::1]:2379"
            ]
        );
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let a = Auth {
            username: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{a:?}").contains("secret"));
        let e = Etcd {
            password: Some("secret".into()),
            ..Etcd::default()
        };
        assert!(!format!("{e:?}").contains("secret"));
        let u = PgUser {
            username: "u".into(),
            password: Some("secret".into()),
            extra: Map::new(),
        };
        assert!(!format!("{u:?}").contains("secret"));
    }
}
