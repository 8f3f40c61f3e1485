//! Wiring from the local configuration to the adapters' parameters, and the rendering of the
//! postgres server configuration for a role. Pure functions.

use std::path::PathBuf;
use std::time::Duration;

use pgha_config::Config;
use pgha_core::{slot_name, Role};
use pgha_dcs::EtcdSettings;
use pgha_postgres::{build_parameters, PgParams, PgUser, ServerConfig, StandbyConfig};
use pgha_types::{Cluster, ClusterPolicy, DynamicConfig};

pub fn etcd_settings(cfg: &Config, request_timeout: Duration) -> EtcdSettings {
    let etcd = cfg.etcd3.clone().unwrap_or_default();
    EtcdSettings {
        endpoints: cfg.etcd_endpoints(),
        username: etcd.username,
        password: etcd.password,
        ca_file: etcd.cacert.map(PathBuf::from),
        cert_file: etcd.cert.map(PathBuf::from),
        key_file: etcd.key.map(PathBuf::from),
        prefix: cfg.cluster_prefix(),
        request_timeout,
    }
}

/// The REST API's TLS (`restapi.certfile` and friends), `None` for plain HTTP.
pub fn rest_server_tls(cfg: &Config) -> Option<pgha_tls::ServerTls> {
    let r = &cfg.restapi;
    let cert = r.certfile.as_ref()?;
    Some(pgha_tls::ServerTls {
        cert_file: PathBuf::from(cert),
        key_file: r.keyfile.as_ref().map(PathBuf::from),
        key_password: r.keyfile_password.clone(),
        ca_file: r.cafile.as_ref().map(PathBuf::from),
        verify_client: match r.verify_client.as_deref() {
            Some("required") => pgha_tls::VerifyClient::Required,
            Some("optional") => pgha_tls::VerifyClient::Optional,
            _ => pgha_tls::VerifyClient::None,
        },
        ciphers: r.ciphers.clone(),
    })
}

/// Who may make unsafe REST requests: `restapi.allowlist` (host names resolved now; those
/// that do not resolve are returned for the caller to log), `allowlist_include_members`, and
/// a client certificate when the REST API serves HTTPS with `verify_client` set.
pub fn rest_access(cfg: &Config) -> (pgha_api::Access, Vec<String>) {
    let r = &cfg.restapi;
    let (allowlist, unresolved) = pgha_api::Access::resolve_allowlist(&r.allowlist);
    let access = pgha_api::Access {
        allowlist,
        include_members: r.allowlist_include_members,
        client_certificate: r.certfile.is_some()
            && matches!(r.verify_client.as_deref(), Some("required" | "optional")),
    };
    (access, unresolved)
}

/// How the agent's own HTTP client (leader race, failsafe, dead-leader check) talks to the
/// other members: trusting `ctl.cacert` or `restapi.cafile`, as Patroni does, and presenting
/// `ctl.certfile`; without one, the REST API's own certificate when the members verify
/// clients (a certificate without extended key usage serves both ends).
pub fn peer_client_tls(cfg: &Config) -> pgha_tls::ClientTls {
    let ctl = cfg.ctl.as_ref();
    let r = &cfg.restapi;
    let ca = ctl
        .and_then(|c| c.cacert.clone())
        .or_else(|| r.cafile.clone());
    let verifies_clients = matches!(r.verify_client.as_deref(), Some("required" | "optional"));
    let (cert, key, password) = match ctl.and_then(|c| c.certfile.clone()) {
        Some(c) => (Some(c), ctl.and_then(|c| c.keyfile.clone()), None),
        None if verifies_clients => (
            r.certfile.clone(),
            r.keyfile.clone(),
            r.keyfile_password.clone(),
        ),
        None => (None, None, None),
    };
    pgha_tls::ClientTls {
        ca_file: ca.map(PathBuf::from),
        cert_file: cert.map(PathBuf::from),
        key_file: key.map(PathBuf::from),
        key_password: password,
        insecure: ctl.is_some_and(|c| c.insecure),
    }
}

fn user(u: Option<&pgha_config::PgUser>, default_name: &str) -> PgUser {
    match u {
        Some(u) => PgUser {
            username: u.username.clone(),
            password: u.password.clone(),
            // Only libpq's option names get here (the schema lists them), all strings.
            options: u
                .extra
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect(),
        },
        None => PgUser {
            username: default_name.to_string(),
            ..Default::default()
        },
    }
}

pub fn pg_params(cfg: &Config) -> PgParams {
    let pg = &cfg.postgresql;
    let auth = &pg.authentication;
    let listen = pg.listen_addresses();
    let first = listen.split(',').next().unwrap_or("").trim().to_string();
    let tcp_host = if first.is_empty() || first == "*" || first == "0.0.0.0" || first == "::" {
        "127.0.0.1".to_string()
    } else {
        first
    };
    // use_unix_socket: the agent's own connections go through the first absolute
    // unix_socket_directories entry (a relative one cannot be connected to); TCP otherwise.
    let local_host = if pgha_types::tag_is_true(pg.extra.get("use_unix_socket")) {
        unix_socket_dir(pg.parameters.get("unix_socket_directories")).unwrap_or(tcp_host)
    } else {
        tcp_host
    };
    let data_dir = pg.data_dir.clone();
    // postgres's own log goes next to the data directory, never inside it: pg_basebackup and
    // pg_rewind would copy it around.
    let log_file = {
        let name = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data".into());
        data_dir
            .parent()
            .map(|p| p.join(format!("{name}.postgresql.log")))
            .unwrap_or_else(|| PathBuf::from(format!("/tmp/{}-postgresql.log", cfg.name)))
    };
    PgParams {
        name: cfg.name.clone(),
        scope: cfg.scope.clone(),
        data_dir,
        config_dir: pg.config_dir_or_data(),
        bin_dir: pg.bin_dir.clone().unwrap_or_else(default_bin_dir),
        listen_addresses: listen,
        port: pg.port(),
        local_host,
        superuser: user(auth.superuser.as_ref(), "postgres"),
        replication: user(auth.replication.as_ref(), "replicator"),
        rewind: auth.rewind.as_ref().map(|u| user(Some(u), "rewind_user")),
        pgpass: cfg.pgpass_path(),
        pg_ctl_timeout: Duration::from_secs(pg.pg_ctl_timeout.max(1)),
        log_file,
        initdb_options: cfg.bootstrap.initdb.iter().map(|o| o.to_arg()).collect(),
        basebackup_options: pg.basebackup.iter().map(|o| o.to_arg()).collect(),
    }
}

/// A standby's `recovery_conf` (dynamic, then local on top), Patroni's way of giving replicas
/// restore_command, archive_cleanup_command, recovery_min_apply_delay, ...; where it streams
/// from stays ours to decide.
fn add_recovery_conf(
    parameters: &mut std::collections::BTreeMap<String, String>,
    policy: &ClusterPolicy,
    cfg: &Config,
) {
    let local = cfg
        .postgresql
        .extra
        .get("recovery_conf")
        .and_then(|v| v.as_object());
    for (name, value) in policy
        .recovery_conf
        .iter()
        .chain(local.into_iter().flatten())
    {
        let name = name.to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "primary_conninfo" | "primary_slot_name" | "recovery_target_timeline" | "standby_mode"
        ) {
            continue;
        }
        match pgha_postgres::render_value(value) {
            Some(v) => {
                parameters.insert(name, v);
            }
            None => {
                parameters.remove(&name);
            }
        }
    }
}

/// The first absolute directory of a `unix_socket_directories` value.
fn unix_socket_dir(value: Option<&serde_json::Value>) -> Option<String> {
    let text = pgha_postgres::render_value(value?)?;
    text.split(',')
        .map(str::trim)
        .find(|d| d.starts_with('/'))
        .map(str::to_string)
}

/// Without `postgresql.bin_dir`, Patroni runs the binaries found in PATH: the first PATH
/// directory holding both `postgres` and `pg_ctl`; else Debian's PostgreSQL 15 directory.
fn default_bin_dir() -> PathBuf {
    let from_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|d| d.is_absolute() && d.join("postgres").is_file() && d.join("pg_ctl").is_file())
    });
    from_path.unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// The dynamic configuration in force: the DCS `config` key, else the last one seen
/// (`patroni.dynamic.json`), else `bootstrap.dcs`.
pub fn dynamic_config(cfg: &Config, cluster: Option<&Cluster>) -> DynamicConfig {
    cluster
        .and_then(|c| c.config.clone())
        .or_else(|| crate::dynamic_cache::load(&cfg.postgresql.data_dir))
        .unwrap_or_else(|| DynamicConfig(cfg.bootstrap.dcs.clone()))
}

/// Local `use_pg_rewind` / `use_slots` win over the dynamic ones.
pub fn effective_policy(cfg: &Config, dynamic: &DynamicConfig) -> (ClusterPolicy, Vec<String>) {
    let (mut p, warnings) = dynamic.policy();
    if let Some(v) = cfg.postgresql.use_pg_rewind {
        p.use_pg_rewind = v;
    }
    if let Some(v) = cfg.postgresql.use_slots {
        p.use_slots = v;
    }
    (p, warnings)
}

/// Whether this member keeps copies of permanent logical slots as a replica (see
/// `pgha_core::slot_targets`: not with `use_slots: false`, `nofailover` or `nostream`).
fn keeps_logical_slots(cfg: &Config, policy: &ClusterPolicy) -> bool {
    policy.use_slots
        && !pgha_types::nofailover_of(&cfg.tags)
        && !pgha_types::tag_is_true(cfg.tags.get("nostream"))
        && policy.permanent_slots.iter().any(|s| s.is_logical())
}

/// postgresql.conf, command line, pg_hba and standby settings for running as `role` on
/// PostgreSQL `major` (settings written for other versions are translated; 0 = unknown).
pub fn server_config(
    cfg: &Config,
    policy: &ClusterPolicy,
    role: &Role,
    cluster: Option<&Cluster>,
    major: u32,
) -> ServerConfig {
    let pg = &cfg.postgresql;
    let (parameters, command_line) = build_parameters(
        &policy.parameters,
        &pg.parameters,
        &pg.listen_addresses(),
        pg.port(),
        &cfg.scope,
        major,
    );
    let hba = match &policy.pg_hba {
        Some(h) if pg.pg_hba.is_empty() => h.clone(),
        _ => pg.pg_hba.clone(),
    };
    let mut parameters = parameters;
    let standby = match role {
        Role::Primary => None,
        // A standby cluster's leader: from the remote primary, with the standby_cluster
        // section's recovery settings; restore-only when it names no host.
        Role::StandbyLeader => {
            add_recovery_conf(&mut parameters, policy, cfg);
            let sc = policy.standby_cluster.clone().unwrap_or_default();
            for (name, value) in [
                ("restore_command", &sc.restore_command),
                ("archive_cleanup_command", &sc.archive_cleanup_command),
                ("recovery_min_apply_delay", &sc.recovery_min_apply_delay),
            ] {
                if let Some(v) = value {
                    parameters.insert(name.into(), v.clone());
                }
            }
            Some(StandbyConfig {
                primary_host: sc.host.clone().unwrap_or_default(),
                primary_port: if sc.host.is_some() {
                    sc.port.unwrap_or(5432)
                } else {
                    0
                },
                primary_slot_name: sc.host.as_ref().and(sc.primary_slot_name.clone()),
            })
        }
        // nostream: replay from the archive only (restore_command); no upstream, no slot.
        Role::Replica { .. } if pgha_types::tag_is_true(cfg.tags.get("nostream")) => {
            add_recovery_conf(&mut parameters, policy, cfg);
            Some(StandbyConfig {
                primary_host: String::new(),
                primary_port: 0,
                primary_slot_name: None,
            })
        }
        Role::Replica { leader } => {
            add_recovery_conf(&mut parameters, policy, cfg);
            // A copied logical slot stays safe to use only while the primary keeps the catalog
            // rows it needs: this standby's feedback holds them back (as Patroni enforces).
            if keeps_logical_slots(cfg, policy) {
                parameters.insert("hot_standby_feedback".into(), "on".into());
            }
            let upstream = leader
                .as_deref()
                .and_then(|l| cluster.and_then(|c| c.member(l)))
                .and_then(|m| m.host_port());
            let (primary_host, primary_port) = upstream.unwrap_or_default();
            Some(StandbyConfig {
                primary_host,
                primary_port,
                primary_slot_name: policy.use_slots.then(|| slot_name(&cfg.name)),
            })
        }
    };
    ServerConfig {
        parameters,
        command_line,
        hba,
        standby,
        recovery_signal: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(restapi: &str) -> Config {
        let yaml = format!(
            "scope: s\nname: n1\nrestapi:\n  listen: 127.0.0.1:8008\n{restapi}etcd3:\n  hosts: 127.0.0.1:2379\n\
             postgresql:\n  listen: 127.0.0.1:5432\n  data_dir: /tmp/d\n  authentication:\n    \
             superuser: {{username: postgres}}\n    replication: {{username: replicator}}\n"
        );
        pgha_config::parse_str(&yaml).expect("valid").config
    }

    /// The REST access rules and TLS come from `restapi`: the client certificate is asked of
    /// unsafe requests only over HTTPS with verify_client set.
    #[test]
    fn rest_access_and_tls_follow_the_restapi_section() {
        let c = config(
            "  certfile: /c.pem\n  verify_client: optional\n  ciphers: HIGH\n  \
             allowlist: [127.0.0.1, 10.0.0.0/8]\n  allowlist_include_members: true\n",
        );
        let (access, unresolved) = rest_access(&c);
        assert!(unresolved.is_empty());
        assert_eq!(access.allowlist.len(), 2);
        assert!(access.include_members && access.client_certificate);
        assert_eq!(
            rest_server_tls(&c).unwrap().ciphers.as_deref(),
            Some("HIGH")
        );

        let (access, _) = rest_access(&config("  verify_client: optional\n"));
        assert!(access.allowlist.is_empty() && !access.include_members);
        assert!(!access.client_certificate, "plain HTTP has no certificates");
    }
}
