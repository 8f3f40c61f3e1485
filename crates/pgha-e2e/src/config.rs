//! Node configuration files in Patroni's YAML schema, shaped like the node configuration of the
//! observed Patroni 4.1.5 cluster (see shared/reference/patroni-4.1.5-observed.md). Pure: no IO.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "e2e-su-pass";
pub const REPLICATION_USER: &str = "replicator";
pub const REPLICATION_PASSWORD: &str = "e2e-repl-pass";
pub const REWIND_USER: &str = "rewind_user";
pub const REWIND_PASSWORD: &str = "e2e-rewind-pass";
pub const NAMESPACE: &str = "/service/";
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// What a scenario may vary about a cluster. The defaults are the brief's timings
/// (ttl 10 / loop_wait 1 / retry_timeout 3) and three nodes.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    pub ttl: u64,
    pub loop_wait: u64,
    pub retry_timeout: u64,
    pub maximum_lag_on_failover: u64,
    pub max_connections: u32,
    pub max_wal_senders: u32,
    pub shared_buffers: String,
    /// PostgreSQL binaries (`bin_dir`).
    pub bin_dir: String,
    /// Changes a scenario makes to every node's YAML after the harness rendered it.
    pub customize: Option<Customize>,
    /// Extra environment of every agent (`PATRONI_*` overrides, ...).
    pub agent_env: Vec<(String, String)>,
    /// TLS on every link: etcd over https with client certificates, the REST API over https
    /// with `verify_client: required`, pghactl with `ctl.cacert/certfile/keyfile`; the
    /// certificates are made at cluster start by a private CA (see [`TlsFiles`]).
    pub tls: bool,
    /// With `tls`, PostgreSQL too: `ssl: on` with the node certificate, `hostssl ...
    /// clientcert=verify-ca` as the only TCP rules of pg_hba, every database user with
    /// `sslmode: verify-full` and the client certificate; the scenarios' own connections then
    /// go through the unix socket.
    pub pg_tls: bool,
    /// The scenario needs the machine to itself (a load test, Patroni's agents): it holds
    /// both e2e slots instead of one (see `cluster::exclusive_lock`).
    pub exclusive: bool,
}

/// The certificate files of a TLS cluster, under `<base>/tls`: one CA and one certificate (for
/// 127.0.0.1 and localhost) that etcd, every agent and pghactl present, plus a second CA that
/// signed nothing here (for wrong-CA scenarios).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub cert: PathBuf,
    /// Mode 0600, owned by the agents' user.
    pub key: PathBuf,
}

/// A scenario's edit of a node's configuration: gets the node and its parsed YAML.
#[derive(Clone)]
pub struct Customize(pub Arc<EditYaml>);

/// The signature of a [`Customize`] edit.
pub type EditYaml = dyn Fn(&NodeSpec, &mut serde_yaml_ng::Value) + Send + Sync;

impl std::fmt::Debug for Customize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Customize(..)")
    }
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            ttl: 10,
            loop_wait: 1,
            retry_timeout: 3,
            maximum_lag_on_failover: 1_048_576,
            max_connections: 100,
            max_wal_senders: 10,
            shared_buffers: "32MB".to_string(),
            bin_dir: DEFAULT_BIN_DIR.to_string(),
            customize: None,
            agent_env: Vec::new(),
            tls: false,
            pg_tls: false,
            exclusive: false,
        }
    }
}

impl ClusterOptions {
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Edit every node's YAML after rendering (see [`Customize`]).
    pub fn customize(
        mut self,
        f: impl Fn(&NodeSpec, &mut serde_yaml_ng::Value) + Send + Sync + 'static,
    ) -> Self {
        self.customize = Some(Customize(Arc::new(f)));
        self
    }

    /// TLS on every link (see [`ClusterOptions::tls`]).
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// TLS on every link, PostgreSQL's included (see [`ClusterOptions::pg_tls`]).
    pub fn with_pg_tls(mut self) -> Self {
        self.tls = true;
        self.pg_tls = true;
        self
    }

    /// Run with no other scenario beside it (see [`ClusterOptions::exclusive`]).
    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }

    /// Set an environment variable for every agent.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.agent_env.push((key.to_string(), value.to_string()));
        self
    }
}

/// Everything that differs between two nodes' configuration files.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub scope: String,
    pub name: String,
    pub etcd_client_port: u16,
    pub rest_port: u16,
    pub pg_port: u16,
    /// The node's own directory: config, pgpass, unix socket, log.
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub tls: Option<TlsFiles>,
}

impl NodeSpec {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(format!("{}.yml", self.name))
    }

    pub fn pgpass_path(&self) -> PathBuf {
        self.dir.join("pgpass")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("agent.log")
    }
}

fn q(s: &str) -> String {
    // serde_json's string escaping is valid YAML double-quoted scalar syntax.
    serde_json::Value::String(s.to_string()).to_string()
}

/// Renders the node's YAML configuration, with the scenario's [`Customize`] applied.
pub fn render_node_config(spec: &NodeSpec, opts: &ClusterOptions) -> String {
    let base = render_base_config(spec, opts);
    let Some(Customize(f)) = &opts.customize else {
        return base;
    };
    let mut v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&base).expect("the harness renders valid YAML");
    f(spec, &mut v);
    serde_yaml_ng::to_string(&v).expect("a YAML value serialises")
}

/// Sets `path` (created as mappings where missing) in a YAML document to `value`; `Null`
/// removes the key instead.
pub fn yaml_set(doc: &mut serde_yaml_ng::Value, path: &[&str], value: serde_yaml_ng::Value) {
    use serde_yaml_ng::{Mapping, Value};
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut cur = doc;
    for p in parents {
        if !cur.is_mapping() {
            *cur = Value::Mapping(Mapping::new());
        }
        let m = cur.as_mapping_mut().expect("made a mapping above");
        cur = m
            .entry(Value::String((*p).to_string()))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    if !cur.is_mapping() {
        *cur = Value::Mapping(Mapping::new());
    }
    let m = cur.as_mapping_mut().expect("made a mapping above");
    if value.is_null() {
        m.remove(*last);
    } else {
        m.insert(Value::String((*last).to_string()), value);
    }
}

fn render_base_config(spec: &NodeSpec, opts: &ClusterOptions) -> String {
    let mut y = String::new();
    let w = &mut y;
    let dir = spec.dir.display().to_string();
    let _ = writeln!(w, "# node configuration written by the pgha e2e harness");
    let _ = writeln!(w, "scope: {}", q(&spec.scope));
    let _ = writeln!(w, "namespace: {}", q(NAMESPACE));
    let _ = writeln!(w, "name: {}", q(&spec.name));
    let _ = writeln!(w, "restapi:");
    let _ = writeln!(
        w,
        "  listen: {}",
        q(&format!("127.0.0.1:{}", spec.rest_port))
    );
    let _ = writeln!(
        w,
        "  connect_address: {}",
        q(&format!("127.0.0.1:{}", spec.rest_port))
    );
    if let Some(t) = &spec.tls {
        let path = |p: &PathBuf| q(&p.display().to_string());
        let _ = writeln!(w, "  certfile: {}", path(&t.cert));
        let _ = writeln!(w, "  keyfile: {}", path(&t.key));
        let _ = writeln!(w, "  cafile: {}", path(&t.ca));
        let _ = writeln!(w, "  verify_client: required");
        // The REST hardening keys too: every agent and pghactl connects from 127.0.0.1.
        let _ = writeln!(w, "  ciphers: 'HIGH:!aNULL'");
        let _ = writeln!(w, "  allowlist: [127.0.0.1]");
        let _ = writeln!(w, "  allowlist_include_members: true");
        let _ = writeln!(
            w,
            "  https_extra_headers: {{Strict-Transport-Security: max-age=31536000}}"
        );
        let _ = writeln!(w, "ctl:");
        let _ = writeln!(w, "  cacert: {}", path(&t.ca));
        let _ = writeln!(w, "  certfile: {}", path(&t.cert));
        let _ = writeln!(w, "  keyfile: {}", path(&t.key));
    }
    let _ = writeln!(w, "etcd3:");
    if let Some(t) = &spec.tls {
        let path = |p: &PathBuf| q(&p.display().to_string());
        let _ = writeln!(w, "  protocol: https");
        let _ = writeln!(w, "  cacert: {}", path(&t.ca));
        let _ = writeln!(w, "  cert: {}", path(&t.cert));
        let _ = writeln!(w, "  key: {}", path(&t.key));
    }
    let _ = writeln!(w, "  hosts:");
    let _ = writeln!(
        w,
        "    - {}",
        q(&format!("127.0.0.1:{}", spec.etcd_client_port))
    );
    let _ = writeln!(w, "bootstrap:");
    let _ = writeln!(w, "  dcs:");
    let _ = writeln!(w, "    ttl: {}", opts.ttl);
    let _ = writeln!(w, "    loop_wait: {}", opts.loop_wait);
    let _ = writeln!(w, "    retry_timeout: {}", opts.retry_timeout);
    let _ = writeln!(
        w,
        "    maximum_lag_on_failover: {}",
        opts.maximum_lag_on_failover
    );
    let _ = writeln!(w, "    postgresql:");
    let _ = writeln!(w, "      use_pg_rewind: true");
    let _ = writeln!(w, "      use_slots: true");
    let _ = writeln!(w, "      parameters:");
    let _ = writeln!(w, "        wal_level: \"replica\"");
    let _ = writeln!(w, "        hot_standby: \"on\"");
    let _ = writeln!(w, "        max_wal_senders: {}", opts.max_wal_senders);
    let _ = writeln!(w, "        max_replication_slots: 10");
    let _ = writeln!(w, "        wal_log_hints: \"on\"");
    let _ = writeln!(w, "        max_connections: {}", opts.max_connections);
    let _ = writeln!(w, "        shared_buffers: {}", q(&opts.shared_buffers));
    let _ = writeln!(w, "  initdb:");
    let _ = writeln!(w, "    - encoding: \"UTF8\"");
    let _ = writeln!(w, "    - locale: \"C.UTF-8\"");
    let _ = writeln!(w, "    - \"data-checksums\"");
    let _ = writeln!(w, "postgresql:");
    let _ = writeln!(w, "  listen: {}", q(&format!("127.0.0.1:{}", spec.pg_port)));
    let _ = writeln!(
        w,
        "  connect_address: {}",
        q(&format!("127.0.0.1:{}", spec.pg_port))
    );
    let _ = writeln!(w, "  data_dir: {}", q(&spec.data_dir.display().to_string()));
    let _ = writeln!(w, "  bin_dir: {}", q(&opts.bin_dir));
    let _ = writeln!(
        w,
        "  pgpass: {}",
        q(&spec.pgpass_path().display().to_string())
    );
    let _ = writeln!(w, "  authentication:");
    let pg_tls = spec.tls.as_ref().filter(|_| opts.pg_tls);
    let path = |p: &PathBuf| q(&p.display().to_string());
    for (role, user, pass) in [
        ("superuser", SUPERUSER, SUPERUSER_PASSWORD),
        ("replication", REPLICATION_USER, REPLICATION_PASSWORD),
        ("rewind", REWIND_USER, REWIND_PASSWORD),
    ] {
        let _ = writeln!(w, "    {role}:");
        let _ = writeln!(w, "      username: {}", q(user));
        let _ = writeln!(w, "      password: {}", q(pass));
        if let Some(t) = pg_tls {
            let _ = writeln!(w, "      sslmode: verify-full");
            let _ = writeln!(w, "      sslrootcert: {}", path(&t.ca));
            let _ = writeln!(w, "      sslcert: {}", path(&t.cert));
            let _ = writeln!(w, "      sslkey: {}", path(&t.key));
        }
    }
    let _ = writeln!(w, "  parameters:");
    let _ = writeln!(w, "    unix_socket_directories: {}", q(&dir));
    if let Some(t) = pg_tls {
        let _ = writeln!(w, "    ssl: \"on\"");
        let _ = writeln!(w, "    ssl_cert_file: {}", path(&t.cert));
        let _ = writeln!(w, "    ssl_key_file: {}", path(&t.key));
        let _ = writeln!(w, "    ssl_ca_file: {}", path(&t.ca));
    }
    let _ = writeln!(w, "  pg_hba:");
    let hba: &[&str] = if pg_tls.is_some() {
        &[
            "local all all trust",
            "hostssl replication replicator 127.0.0.1/32 md5 clientcert=verify-ca",
            "hostssl all all 127.0.0.1/32 md5 clientcert=verify-ca",
        ]
    } else {
        &[
            "local all all trust",
            "host replication replicator 127.0.0.1/32 md5",
            "host all all 127.0.0.1/32 md5",
        ]
    };
    for line in hba {
        let _ = writeln!(w, "    - {}", q(line));
    }
    let _ = writeln!(w, "tags:");
    for tag in ["nofailover", "noloadbalance", "clonefrom", "nosync"] {
        let _ = writeln!(w, "  {tag}: false");
    }
    y
}

/// Connection string of a node for the superuser over TCP on loopback, as the scenarios
/// connect (see [`superuser_conninfo_via`] for a unix socket).
pub fn superuser_conninfo(port: u16) -> String {
    superuser_conninfo_via("127.0.0.1", port)
}

/// As [`superuser_conninfo`] through `host` (an address or a unix socket directory).
pub fn superuser_conninfo_via(host: &str, port: u16) -> String {
    format!(
        "host={host} port={port} user={SUPERUSER} password={SUPERUSER_PASSWORD} dbname=postgres connect_timeout=3"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NodeSpec {
        NodeSpec {
            scope: "e2e-abc".into(),
            name: "node2".into(),
            etcd_client_port: 23790,
            rest_port: 18022,
            pg_port: 15452,
            dir: PathBuf::from("/tmp/pgha-e2e-x/node2"),
            data_dir: PathBuf::from("/tmp/pgha-e2e-x/node2/data"),
            tls: None,
        }
    }

    #[test]
    fn paths() {
        let s = spec();
        assert_eq!(
            s.config_path(),
            PathBuf::from("/tmp/pgha-e2e-x/node2/node2.yml")
        );
        assert_eq!(
            s.pgpass_path(),
            PathBuf::from("/tmp/pgha-e2e-x/node2/pgpass")
        );
    }

    #[test]
    fn rendered_yaml_has_the_observed_shape() {
        let opts = ClusterOptions::default().max_connections(120);
        let text = render_node_config(&spec(), &opts);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
        let s = |path: &[&str]| -> serde_yaml_ng::Value {
            let mut cur = &v;
            for p in path {
                cur = cur
                    .get(*p)
                    .unwrap_or_else(|| panic!("missing {path:?} in\n{text}"));
            }
            cur.clone()
        };
        assert_eq!(s(&["scope"]).as_str(), Some("e2e-abc"));
        assert_eq!(s(&["namespace"]).as_str(), Some("/service/"));
        assert_eq!(s(&["name"]).as_str(), Some("node2"));
        assert_eq!(s(&["restapi", "listen"]).as_str(), Some("127.0.0.1:18022"));
        assert_eq!(
            s(&["restapi", "connect_address"]).as_str(),
            Some("127.0.0.1:18022")
        );
        assert_eq!(s(&["etcd3", "hosts"])[0].as_str(), Some("127.0.0.1:23790"));
        assert_eq!(s(&["bootstrap", "dcs", "ttl"]).as_u64(), Some(10));
        assert_eq!(s(&["bootstrap", "dcs", "loop_wait"]).as_u64(), Some(1));
        assert_eq!(s(&["bootstrap", "dcs", "retry_timeout"]).as_u64(), Some(3));
        assert_eq!(
            s(&["bootstrap", "dcs", "maximum_lag_on_failover"]).as_u64(),
            Some(1048576)
        );
        assert_eq!(
            s(&["bootstrap", "dcs", "postgresql", "use_pg_rewind"]).as_bool(),
            Some(true)
        );
        assert_eq!(
            s(&["bootstrap", "dcs", "postgresql", "use_slots"]).as_bool(),
            Some(true)
        );
        let params = s(&["bootstrap", "dcs", "postgresql", "parameters"]);
        assert_eq!(params["max_connections"].as_u64(), Some(120));
        assert_eq!(params["max_wal_senders"].as_u64(), Some(10));
        assert_eq!(params["hot_standby"].as_str(), Some("on"));
        assert_eq!(params["wal_log_hints"].as_str(), Some("on"));
        assert_eq!(params["wal_level"].as_str(), Some("replica"));
        assert_eq!(params["shared_buffers"].as_str(), Some("32MB"));
        let initdb = s(&["bootstrap", "initdb"]);
        assert_eq!(initdb[0]["encoding"].as_str(), Some("UTF8"));
        assert_eq!(initdb[1]["locale"].as_str(), Some("C.UTF-8"));
        assert_eq!(initdb[2].as_str(), Some("data-checksums"));
        assert_eq!(
            s(&["postgresql", "listen"]).as_str(),
            Some("127.0.0.1:15452")
        );
        assert_eq!(
            s(&["postgresql", "connect_address"]).as_str(),
            Some("127.0.0.1:15452")
        );
        assert_eq!(
            s(&["postgresql", "data_dir"]).as_str(),
            Some("/tmp/pgha-e2e-x/node2/data")
        );
        assert_eq!(
            s(&["postgresql", "bin_dir"]).as_str(),
            Some(DEFAULT_BIN_DIR)
        );
        assert_eq!(
            s(&["postgresql", "pgpass"]).as_str(),
            Some("/tmp/pgha-e2e-x/node2/pgpass")
        );
        let auth = s(&["postgresql", "authentication"]);
        assert_eq!(auth["superuser"]["username"].as_str(), Some("postgres"));
        assert_eq!(auth["replication"]["username"].as_str(), Some("replicator"));
        assert_eq!(auth["rewind"]["username"].as_str(), Some("rewind_user"));
        assert_eq!(auth["rewind"]["password"].as_str(), Some(REWIND_PASSWORD));
        assert_eq!(
            s(&["postgresql", "parameters", "unix_socket_directories"]).as_str(),
            Some("/tmp/pgha-e2e-x/node2")
        );
        let hba = s(&["postgresql", "pg_hba"]);
        assert_eq!(hba.as_sequence().map(Vec::len), Some(3));
        assert_eq!(
            hba[1].as_str(),
            Some("host replication replicator 127.0.0.1/32 md5")
        );
        for tag in ["nofailover", "noloadbalance", "clonefrom", "nosync"] {
            assert_eq!(s(&["tags", tag]).as_bool(), Some(false), "{tag}");
        }
    }

    #[test]
    fn quoting_survives_odd_characters() {
        let mut sp = spec();
        sp.scope = "e2e-\"q\": #x".into();
        let text = render_node_config(&sp, &ClusterOptions::default());
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(v["scope"].as_str(), Some("e2e-\"q\": #x"));
    }

    #[test]
    fn conninfo_mentions_port_and_password() {
        let c = superuser_conninfo(5999);
        assert!(
            c.contains("port=5999") && c.contains(SUPERUSER_PASSWORD),
            "{c}"
        );
    }
}
