//! `pgha`: the agent that runs beside one PostgreSQL server and keeps the cluster available.

mod admin;
mod callbacks;
mod dead_leader;
mod dynamic_cache;
mod execute;
mod ha_loop;
mod jobs;
mod lease_guard;
mod logging;
mod peers;
mod publish;
mod rest_server;
mod settings;
mod slot_upkeep;
mod watchdog;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use pgha_api::{ApiState, NodeStatus};
use pgha_config::{ConfigError, Loaded};
use pgha_dcs::EtcdDcs;
use pgha_postgres::LocalPostgres;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::admin::{AgentAdmin, Pending};
use crate::ha_loop::{Agent, Exit, Wiring};

#[derive(Parser, Debug)]
#[command(
    name = "pgha",
    version,
    about = "High availability for PostgreSQL: runs beside one PostgreSQL server, holds or follows the leader lock in etcd (Patroni-compatible)"
)]
struct Cli {
    /// Configuration file or directory (Patroni's YAML schema). Without it the configuration
    /// comes from PATRONI_CONFIGURATION / PATRONI_* variables.
    config: Option<PathBuf>,
    /// Check the configuration, report every problem with its key path, and exit.
    #[arg(long, value_name = "FILE")]
    validate_config: Option<PathBuf>,
    /// Print a commented sample configuration (Patroni's YAML schema), or write it to FILE, and
    /// exit.
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    generate_sample_config: Option<Option<PathBuf>>,
    /// Internal: run as the lease guard the agent starts (see lease_guard.rs).
    #[arg(long, hide = true, value_name = "NAME")]
    lease_guard: Option<String>,
}

/// The sample `--generate-sample-config` prints (also installed as packaging/pgha.yml).
const SAMPLE_CONFIG: &str = include_str!("../../../packaging/pgha.yml");

fn generate_sample_config(dest: Option<&std::path::Path>) -> ExitCode {
    let Some(path) = dest else {
        print!("{SAMPLE_CONFIG}");
        return ExitCode::SUCCESS;
    };
    if path.exists() {
        eprintln!("{} exists: not overwriting it", path.display());
        return ExitCode::FAILURE;
    }
    match std::fs::write(path, SAMPLE_CONFIG) {
        Ok(()) => {
            println!("wrote a sample configuration to {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<&std::path::Path>) -> Result<Loaded, ConfigError> {
    match path {
        Some(p) => pgha_config::load(p),
        None => pgha_config::load_from_env_and_path(None, &|k| std::env::var(k).ok()),
    }
}

fn report_config_error(e: &ConfigError) {
    match e {
        ConfigError::Invalid(problems) => {
            eprintln!("invalid configuration:");
            for p in problems {
                eprintln!("  {p}");
            }
        }
        other => eprintln!("cannot load the configuration: {other}"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(name) = &cli.lease_guard {
        return lease_guard::run_guard(name);
    }
    if let Some(dest) = &cli.generate_sample_config {
        return generate_sample_config(dest.as_deref());
    }
    if let Some(path) = &cli.validate_config {
        return match load_config(Some(path)) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("warning: {w}");
                }
                println!("{}: configuration is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                report_config_error(&e);
                ExitCode::FAILURE
            }
        };
    }
    if nix::unistd::geteuid().is_root() {
        eprintln!(
            "pgha must not run as root: PostgreSQL refuses to run as root. Start it as the user that owns the data directory, e.g. `runuser -u postgres -- pgha /etc/pgha/pgha.yml`"
        );
        return ExitCode::FAILURE;
    }
    let loaded = match load_config(cli.config.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            report_config_error(&e);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = logging::init(&loaded.config.log) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    for w in &loaded.warnings {
        warn!("{w}");
    }
    // One thread: the agent waits on the network almost all the time, and handing events
    // between worker threads cost more CPU than the work itself (futex wake-ups). Blocking
    // work (removing a data directory) goes to tokio's blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(loaded, cli.config.clone())) {
        Ok(Exit::Shutdown) => ExitCode::SUCCESS,
        Ok(Exit::Critical) => ExitCode::FAILURE,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(loaded: Loaded, config_path: Option<PathBuf>) -> Result<Exit> {
    let cfg = Arc::new(loaded.config);
    info!(
        "pgha {} starting: member {} of cluster {} (Patroni {} interface)",
        pgha_types::PGHA_VERSION,
        cfg.name,
        cfg.scope,
        pgha_types::PATRONI_COMPAT_VERSION
    );
    let (status_tx, status_rx) = watch::channel(Arc::new(NodeStatus {
        scope: cfg.scope.clone(),
        name: cfg.name.clone(),
        ..NodeStatus::default()
    }));
    let (policy, _) = settings::effective_policy(&cfg, &settings::dynamic_config(&cfg, None));
    let etcd = settings::etcd_settings(&cfg, Duration::from_secs(policy.retry_timeout));
    let listener = tokio::net::TcpListener::bind(&cfg.restapi.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on restapi.listen {}; is another agent running there?",
                cfg.restapi.listen
            )
        })?;
    // TLS files are read now: a missing or bad certificate or key stops the agent naming it.
    let server_tls = match settings::rest_server_tls(&cfg) {
        Some(t) => Some(
            t.server_config()
                .context("restapi.certfile/keyfile/cafile/ciphers")?,
        ),
        None => None,
    };
    let http = peers::member_client(&cfg)?;
    let pg_params = settings::pg_params(&cfg);
    // Certificates and keys of the database users are read now, so a missing or unusable
    // file stops the agent naming it rather than failing every connection and replica.
    for (role, user) in [
        ("superuser", Some(&pg_params.superuser)),
        ("replication", Some(&pg_params.replication)),
        ("rewind", pg_params.rewind.as_ref()),
    ] {
        if let Some(user) = user {
            pgha_postgres::tls::check_user_tls(user)
                .with_context(|| format!("postgresql.authentication.{role}"))?;
        }
    }
    let dcs = Arc::new(loop_connect(etcd).await?);
    // Before anything touches postgres or the DCS: two agents of one name would fight over
    // one member key and one slot.
    if let Ok(cluster) = dcs.load_cluster().await {
        if let Some(url) =
            peers::name_taken(&http, &cluster, &cfg.name, &cfg.restapi.api_url()).await
        {
            error!(
                { logging::CRITICAL_FIELD } = true,
                "Can't start; there is already a node named '{}' running", cfg.name
            );
            info!("member {} answers at {url}", cfg.name);
            return Ok(Exit::Critical);
        }
    }
    let pg = Arc::new(LocalPostgres::new(pg_params));
    let wake = Arc::new(tokio::sync::Notify::new());
    let loop_wait = Arc::new(AtomicU64::new(policy.loop_wait));
    let (req_tx, req_rx) = mpsc::channel::<Pending>(16);
    let admin = Arc::new(AgentAdmin {
        dcs: dcs.clone(),
        pg: pg.clone(),
        requests: req_tx.clone(),
        wake: wake.clone(),
        loop_wait: loop_wait.clone(),
    });
    let auth = cfg
        .restapi
        .authentication
        .as_ref()
        .map(|a| (a.username.clone(), a.password.clone()));
    let failsafe = Arc::new(pgha_api::FailsafeMemory::default());
    let (access, unresolved) = settings::rest_access(&cfg);
    for e in unresolved {
        // As Patroni: an entry that does not resolve allows nobody, and the agent goes on.
        warn!("restapi.allowlist: {e}");
    }
    let app = pgha_api::router(
        ApiState::new(status_rx, auth)
            .with_admin(admin)
            .with_failsafe(failsafe.clone())
            .with_access(access)
            .with_extra_headers(&cfg.restapi.extra_headers())
            .map_err(|e| anyhow::anyhow!("restapi.http_extra_headers/https_extra_headers: {e}"))?,
    );
    let tls_handle = rest_server::spawn(listener, app, server_tls).context("REST API listener")?;
    if let (Some(handle), Some(tls)) = (tls_handle, settings::rest_server_tls(&cfg)) {
        rest_server::reload_on_sighup(handle, tls);
    }
    info!("REST API listening on {}", cfg.restapi.listen);
    spawn_sighup_reload(req_tx, wake.clone());
    reload_etcd_tls_on_sighup(dcs.clone());

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("received a termination signal; shutting down");
        let _ = shutdown_tx.send(true);
    });
    let agent = Agent::new(Wiring {
        cfg,
        config_path,
        dcs,
        pg,
        status_tx,
        requests: req_rx,
        wake,
        loop_wait,
        failsafe,
        http,
    });
    Ok(agent.run(shutdown_rx).await)
}

/// etcd may not be up yet when the agent starts (e.g. all machines booting together): keep
/// trying, but let a signal stop us.
async fn loop_connect(settings: pgha_dcs::EtcdSettings) -> Result<EtcdDcs> {
    let mut logged = false;
    loop {
        match EtcdDcs::connect(settings.clone()).await {
            Ok(d) => {
                info!("connected to etcd at {}", settings.endpoints.join(","));
                return Ok(d);
            }
            Err(e @ pgha_dcs::DcsError::Settings(_)) => bail!("{e}"),
            Err(e) => {
                if !logged {
                    warn!("cannot reach etcd yet ({e}); retrying");
                    logged = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = wait_for_signal() => bail!("stopped before etcd became reachable"),
        }
    }
}

/// SIGHUP: re-read the local configuration and reload postgres, like `POST /reload`.
fn spawn_sighup_reload(requests: mpsc::Sender<Pending>, wake: Arc<tokio::sync::Notify>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("cannot listen for SIGHUP; reload through POST /reload instead");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            info!("received SIGHUP: reloading the configuration");
            let (reply, _) = tokio::sync::oneshot::channel();
            let _ = requests.try_send(Pending {
                request: pgha_api::LocalRequest::Reload,
                reply,
            });
            wake.notify_one();
        }
    });
}

/// SIGHUP: the etcd client certificate, key and CA are read again and the agent moves to a new
/// etcd connection made with them; files that do not load, or that etcd refuses, keep the
/// current connection, logged.
fn reload_etcd_tls_on_sighup(dcs: Arc<EtcdDcs>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match dcs.reload_tls().await {
                Ok(true) => info!("etcd TLS files reloaded: new etcd connection in use"),
                Ok(false) => {}
                Err(e) => warn!("etcd TLS files not reloaded, keeping the current connection: {e}"),
            }
        }
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["pgha", "--generate-sample-config"]).unwrap();
        assert_eq!(cli.generate_sample_config, Some(None));
        let cli = Cli::try_parse_from(["pgha", "--generate-sample-config", "/x.yml"]).unwrap();
        assert_eq!(
            cli.generate_sample_config,
            Some(Some(PathBuf::from("/x.yml")))
        );
        let cli = Cli::try_parse_from(["pgha", "/etc/pgha/pgha.yml"]).unwrap();
        assert_eq!(cli.generate_sample_config, None);
    }

    #[test]
    fn sample_config_validates() {
        let dir = std::env::temp_dir().join(format!("pgha-sample-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pgha.yml");
        let _ = std::fs::remove_file(&path);
        assert_eq!(generate_sample_config(Some(&path)), ExitCode::SUCCESS);
        assert_eq!(
            generate_sample_config(Some(&path)),
            ExitCode::FAILURE,
            "never overwrites"
        );
        let loaded = load_config(Some(&path));
        // The commented-out log keys are valid too.
        let uncommented = SAMPLE_CONFIG
            .replace("  # dir:", "  dir:")
            .replace("  # file_", "  file_")
            .replace("  # deduplicate_", "  deduplicate_");
        let path2 = dir.join("full.yml");
        std::fs::write(&path2, uncommented).unwrap();
        let full = load_config(Some(&path2));
        let _ = std::fs::remove_dir_all(&dir);
        let loaded = loaded.unwrap_or_else(|e| panic!("sample rejected: {e:?}"));
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.config.scope, "main");
        let full = full.unwrap_or_else(|e| panic!("full sample rejected: {e:?}"));
        let log = logging::LogSettings::from_config(&full.config.log);
        assert!(log.dedupe_heartbeat);
        assert_eq!((log.file_num, log.file_size), (4, 25_000_000));
    }

    #[test]
    fn replica_settings_follow_use_slots_and_logical_permanent_slots() {
        use pgha_core::Role;
        use pgha_types::DynamicConfig;
        let dir = std::env::temp_dir().join(format!("pgha-slots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pgha.yml");
        std::fs::write(&path, SAMPLE_CONFIG).unwrap();
        let loaded = load_config(Some(&path));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = loaded
            .unwrap_or_else(|e| panic!("sample rejected: {e:?}"))
            .config;
        let replica = Role::Replica {
            leader: Some("other".into()),
        };
        let run = |dynamic: &str| {
            let (policy, _) =
                settings::effective_policy(&cfg, &DynamicConfig::parse(dynamic).unwrap());
            settings::server_config(&cfg, &policy, &replica, None, 15)
        };
        let plain = run("{}");
        let slot = plain
            .standby
            .as_ref()
            .and_then(|s| s.primary_slot_name.clone());
        assert_eq!(
            slot.as_deref(),
            Some(pgha_core::slot_name(&cfg.name).as_str())
        );
        assert!(!plain.parameters.contains_key("hot_standby_feedback"));

        let logical =
            r#"{"slots":{"cdc":{"type":"logical","database":"postgres","plugin":"pgoutput"}}}"#;
        assert_eq!(
            run(logical)
                .parameters
                .get("hot_standby_feedback")
                .map(String::as_str),
            Some("on"),
            "a replica keeping a logical slot copy needs feedback"
        );
        let physical_only = r#"{"slots":{"arch":{"type":"physical"}}}"#;
        assert!(!run(physical_only)
            .parameters
            .contains_key("hot_standby_feedback"));

        // use_slots: false: no primary_slot_name, and no logical copies to protect.
        let off = run(&logical.replace(
            r#"{"slots""#,
            r#"{"postgresql":{"use_slots":false},"slots""#,
        ));
        assert_eq!(off.standby.unwrap().primary_slot_name, None);
        assert!(!off.parameters.contains_key("hot_standby_feedback"));
    }
}
