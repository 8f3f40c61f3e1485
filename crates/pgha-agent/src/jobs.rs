//! Long actions (bootstrap, clone, start, rejoin, promote). Each runs as its own task so the HA
//! loop keeps renewing or giving up the leader lock while postgres copies data or recovers.

use std::sync::Arc;

use pgha_config::Config;
use pgha_config::{BootstrapMethod, ReplicaMethod};
use pgha_core::{assess_divergence, Divergence, JobKind, Role};
use pgha_dcs::EtcdDcs;
use pgha_postgres::{ConnTarget, DataDirState, LocalPostgres, RecoverySignal, RecoveryState};
use pgha_types::{Cluster, ClusterPolicy, Lsn};
use tracing::{error, info, warn};

use crate::settings::server_config;

/// What a job needs; `cluster` is the DCS view at the moment it was started.
#[derive(Clone)]
pub struct JobCtx {
    pub cfg: Arc<Config>,
    pub pg: Arc<LocalPostgres>,
    pub dcs: Arc<EtcdDcs>,
    pub policy: ClusterPolicy,
    pub cluster: Option<Cluster>,
    /// As a replica: (timeline, replay position) the agent last saw before this job.
    pub last_replay: Option<(u32, u64)>,
}

/// Why a job failed; `refused_by_pre_promote` tells the core postgres was left untouched.
#[derive(Debug)]
pub struct JobFailure {
    pub message: String,
    pub refused_by_pre_promote: bool,
}

impl From<String> for JobFailure {
    fn from(message: String) -> JobFailure {
        JobFailure {
            message,
            refused_by_pre_promote: false,
        }
    }
}

pub async fn run(kind: JobKind, ctx: JobCtx) -> Result<String, JobFailure> {
    match kind {
        JobKind::Bootstrap => bootstrap(&ctx).await.map_err(Into::into),
        JobKind::BootstrapStandby => bootstrap_standby(&ctx).await.map_err(Into::into),
        JobKind::Clone {
            from,
            basebackup_only,
        } => clone_from(&ctx, from.as_deref(), basebackup_only)
            .await
            .map_err(Into::into),
        JobKind::Start { role } => start(&ctx, &role).await.map_err(Into::into),
        JobKind::Rejoin { leader } => rejoin(&ctx, &leader).await.map_err(Into::into),
        JobKind::Promote => promote(&ctx).await,
        JobKind::Restart { role } => restart(&ctx, &role).await.map_err(Into::into),
    }
}

/// `before_stop`, waited for, before every stop of a running postgres (as Patroni; its exit
/// code is only logged).
pub async fn before_stop(cfg: &Config, pg: &LocalPostgres) {
    if let Some(cmd) = &cfg.postgresql.before_stop {
        if pg.postmaster_pid().is_some() {
            crate::callbacks::run_and_wait("postgresql.before_stop", cmd).await;
        }
    }
}

fn fail(what: &str) -> impl Fn(pgha_postgres::PgError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

async fn bootstrap(ctx: &JobCtx) -> Result<String, String> {
    let result = bootstrap_steps(ctx).await;
    if result.is_err() && ctx.pg.postmaster_pid().is_some() {
        // The failed attempt's data directory is emptied next: no postmaster may run on it.
        if let Err(e) = ctx
            .pg
            .stop(
                pgha_postgres::StopMode::Immediate,
                ctx.pg.params().pg_ctl_timeout,
            )
            .await
        {
            warn!("could not stop postgres after the failed bootstrap: {e}");
        }
    }
    result
}

async fn bootstrap_steps(ctx: &JobCtx) -> Result<String, String> {
    let (cfg, pg) = (&ctx.cfg, &ctx.pg);
    let custom = cfg.bootstrap.custom_method();
    match custom {
        Some(m) => run_bootstrap_method(ctx, m).await?,
        None => pg.initdb().await.map_err(fail("initdb failed"))?,
    }
    let mut server = server_config(cfg, &ctx.policy, &Role::Primary, None, pg.major_version());
    if !cfg.bootstrap.pg_hba.is_empty() {
        server.hba = cfg.bootstrap.pg_hba.clone();
    }
    let plain_primary = server.clone();
    if let Some(m) = custom {
        recover_with(&mut server, m);
        // The restored cluster's passwords are unknown: until the roles are set up, the
        // superuser and the replication user may connect locally without one.
        server.hba = trust_hba(&pg.params());
    }
    pg.write_pgpass()
        .map_err(fail("writing the pgpass file failed"))?;
    pg.write_config(&mut server)
        .await
        .map_err(fail("writing the configuration failed"))?;
    pg.start(&server)
        .await
        .map_err(fail("starting the new cluster failed"))?;
    pg.wait_ready(pg.params().pg_ctl_timeout)
        .await
        .map_err(fail("the new cluster did not become ready"))?;
    if let Some(m) = custom {
        wait_for_end_of_recovery(pg, m).await?;
    }
    pg.bootstrap_roles()
        .await
        .map_err(fail("creating the roles failed"))?;
    if let Some(script) = &cfg.bootstrap.post_bootstrap {
        info!("running post_bootstrap script {script}");
        pg.run_post_bootstrap(script)
            .await
            .map_err(fail("post_bootstrap failed"))?;
    }
    if custom.is_some() {
        // From now on it runs as any primary does: the configured pg_hba, no recovery settings.
        let mut server = plain_primary;
        pg.write_config(&mut server)
            .await
            .map_err(fail("writing the configuration failed"))?;
        pg.reload()
            .await
            .map_err(fail("reloading the configuration failed"))?;
    }
    let sysid = pg
        .controldata()
        .await
        .map_err(fail("pg_controldata failed"))?
        .system_identifier;
    let dcs = &ctx.dcs;
    dcs.initialize(false, &sysid)
        .await
        .map_err(|e| format!("writing the initialize key failed: {e}"))?;
    let dynamic = serde_json::to_string(&cfg.bootstrap.dcs).unwrap_or_else(|_| "{}".into());
    if let Err(e) = dcs.set_config(&dynamic, Some(0)).await {
        warn!("could not store bootstrap.dcs as the cluster configuration: {e}");
    }
    // Take the lock right away so the other members can start cloning.
    match dcs.acquire_leader(&cfg.name).await {
        Ok(true) => info!("acquired session lock as a leader"),
        Ok(false) => warn!("another member holds the leader lock after our bootstrap"),
        Err(e) => warn!("could not take the leader lock after bootstrap: {e}"),
    }
    let how = match custom {
        Some(m) => format!("with bootstrap method {}", m.name),
        None => "with initdb".to_string(),
    };
    Ok(format!(
        "initialized a new cluster {how} (system identifier {sysid})"
    ))
}

/// A standby cluster's first member: pg_basebackup from the remote primary of
/// `standby_cluster`, start as the standby leader, then claim the cluster (initialize key,
/// dynamic configuration, leader key) as a bootstrap does.
async fn bootstrap_standby(ctx: &JobCtx) -> Result<String, String> {
    let (cfg, pg) = (&ctx.cfg, &ctx.pg);
    let sc = ctx
        .policy
        .standby_cluster
        .clone()
        .ok_or("standby_cluster is not configured")?;
    let host = sc.host.clone().ok_or(
        "standby_cluster has no host: a standby leader without one cannot be cloned (restore a base backup with a create_replica_methods entry instead)",
    )?;
    let source = pgha_postgres::ConnTarget {
        host,
        port: sc.port.unwrap_or(5432),
    };
    info!("cloning the remote primary {source} of standby_cluster");
    pg.basebackup(&source).await.map_err(fail(
        "Error creating the standby leader using basebackup from standby_cluster",
    ))?;
    start(ctx, &Role::StandbyLeader).await?;
    let sysid = pg
        .controldata()
        .await
        .map_err(fail("pg_controldata failed"))?
        .system_identifier;
    let dcs = &ctx.dcs;
    dcs.initialize(false, &sysid)
        .await
        .map_err(|e| format!("writing the initialize key failed: {e}"))?;
    let dynamic = serde_json::to_string(&cfg.bootstrap.dcs).unwrap_or_else(|_| "{}".into());
    if let Err(e) = dcs.set_config(&dynamic, Some(0)).await {
        warn!("could not store bootstrap.dcs as the cluster configuration: {e}");
    }
    match dcs.acquire_leader(&cfg.name).await {
        Ok(true) => info!("acquired session lock as a standby leader"),
        Ok(false) => warn!("another member holds the leader lock after our bootstrap"),
        Err(e) => warn!("could not take the leader lock after bootstrap: {e}"),
    }
    Ok(format!(
        "initialized a standby cluster from {source} (system identifier {sysid})"
    ))
}

/// `bootstrap.<method>.command` in place of initdb. It must leave a data directory.
async fn run_bootstrap_method(ctx: &JobCtx, m: &BootstrapMethod) -> Result<(), String> {
    let pg = &ctx.pg;
    let setting = format!("bootstrap.{}.command", m.name);
    let data_dir = pg.params().data_dir.display().to_string();
    let argv = m
        .argv(&ctx.cfg.scope, &data_dir)
        .map_err(|e| format!("{setting}: {e}"))?;
    info!("Running custom bootstrap script: {}", m.command);
    let run = pg
        .run_method(&argv, true)
        .await
        .map_err(|e| format!("{setting} `{}` could not be run: {e}", m.command))?;
    if !run.success {
        return Err(format!(
            "{setting} `{}` failed with {}\n{}",
            m.command, run.status, run.tail
        ));
    }
    info!("custom bootstrap script finished: {}", last_line(&run.tail));
    left_a_data_directory(pg, &setting, &m.command).await
}

/// After an operator's command: there must be a data directory, and no postmaster of its own
/// (the agent starts postgres with its configuration).
async fn left_a_data_directory(
    pg: &LocalPostgres,
    setting: &str,
    command: &str,
) -> Result<(), String> {
    if pg.data_dir_state() != DataDirState::Initialized {
        return Err(format!(
            "{setting} `{command}` succeeded but left no PostgreSQL data directory in {} ({:?})",
            pg.params().data_dir.display(),
            pg.data_dir_state()
        ));
    }
    pg.secure_data_dir()
        .map_err(fail("setting the data directory's mode failed"))?;
    if pg.postmaster_pid().is_some() {
        warn!("{setting} `{command}` left postgres running; stopping it");
        pg.stop(pgha_postgres::StopMode::Fast, pg.params().pg_ctl_timeout)
            .await
            .map_err(fail("stopping the postgres the command started failed"))?;
    }
    pg.remove_promote_trigger()
        .map_err(fail("removing the promote trigger file failed"))
}

/// pg_hba.conf while a custom bootstrap's cluster recovers: trust for the superuser and the
/// replication user over the unix socket and from the agent's own address.
fn trust_hba(p: &pgha_postgres::PgParams) -> Vec<String> {
    let (su, rep) = (&p.superuser.username, &p.replication.username);
    let mut kinds = vec!["local".to_string()];
    let host = p.local_host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<std::net::IpAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) if host == "localhost" => {
            vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()]
        }
        Err(_) => Vec::new(),
    };
    for ip in addrs {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        kinds.push(format!("host {ip}/{bits}"));
    }
    let quote = |u: &str| format!("\"{}\"", u.replace('"', "\"\""));
    kinds
        .iter()
        .flat_map(|k| {
            let (kind, addr) = k.split_once(' ').unwrap_or((k.as_str(), ""));
            [
                format!("{kind} replication {} {addr} trust", quote(rep)),
                format!("{kind} all {} {addr} trust", quote(su)),
            ]
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The recovery a custom bootstrap asks for: its `recovery_conf` (recovery.signal, or
/// standby.signal with `standby_mode`), else the signal files it left when
/// `keep_existing_recovery_conf` is set; otherwise none.
fn recover_with(server: &mut pgha_postgres::ServerConfig, m: &BootstrapMethod) {
    server.recovery_signal = match &m.recovery_conf {
        Some(conf) => {
            let mut standby = false;
            for (name, value) in conf {
                let name = name.to_ascii_lowercase();
                if name == "standby_mode" {
                    standby = pgha_types::tag_is_true(Some(value));
                    continue;
                }
                match pgha_postgres::render_value(value) {
                    Some(v) => server.parameters.insert(name, v),
                    None => server.parameters.remove(&name),
                };
            }
            if standby {
                RecoverySignal::Standby
            } else {
                RecoverySignal::Recovery
            }
        }
        None if m.keep_existing_recovery_conf => RecoverySignal::Keep,
        None => RecoverySignal::None,
    };
}

/// Wait until the server started after a custom bootstrap is a primary: archive recovery ends
/// by itself (end of the archive, or `recovery_target_action = promote`); a recovery paused
/// at its target is promoted, as the cluster needs a primary.
async fn wait_for_end_of_recovery(pg: &LocalPostgres, m: &BootstrapMethod) -> Result<(), String> {
    let limit = pg.timeouts().custom_method;
    let started = std::time::Instant::now();
    let mut last_note = started;
    loop {
        if pg.postmaster_pid().is_none() {
            return Err(format!(
                "postgres stopped while recovering after bootstrap.{}.command (see the postgres log {})",
                m.name,
                pg.params().log_file.display()
            ));
        }
        match pg.recovery_state(pg.timeouts().short_command).await {
            Ok(RecoveryState::Done) => {
                info!("recovery after the custom bootstrap is done; running as a primary");
                return Ok(());
            }
            Ok(RecoveryState::Paused) => {
                info!("recovery paused at its target after the custom bootstrap; promoting");
                pg.promote(pg.params().pg_ctl_timeout)
                    .await
                    .map_err(fail("promoting after the custom bootstrap failed"))?;
            }
            Ok(RecoveryState::Replaying) | Err(_) => {}
        }
        if started.elapsed() > limit {
            return Err(format!(
                "postgres still recovers {}s after bootstrap.{}.command; giving up",
                limit.as_secs(),
                m.name
            ));
        }
        if last_note.elapsed() > std::time::Duration::from_secs(30) {
            info!("waiting for end of recovery after bootstrap");
            last_note = std::time::Instant::now();
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or("")
}

fn member_target(cluster: Option<&Cluster>, name: &str) -> Result<ConnTarget, String> {
    let (host, port) = cluster
        .and_then(|c| c.member(name))
        .and_then(|m| m.host_port())
        .ok_or_else(|| format!("member {name} has no usable conn_url in the DCS"))?;
    Ok(ConnTarget { host, port })
}

/// Create this replica with `create_replica_methods`, in order, until one works: from the
/// running member `from`, or (`None`) with the methods that need no leader.
async fn clone_from(
    ctx: &JobCtx,
    from: Option<&str>,
    basebackup_only: bool,
) -> Result<String, String> {
    let (pg, pgcfg) = (&ctx.pg, &ctx.cfg.postgresql);
    let source = from
        .map(|f| member_target(ctx.cluster.as_ref(), f))
        .transpose()?;
    let mut methods: Vec<&str> = if basebackup_only {
        vec!["basebackup"]
    } else {
        pgcfg
            .create_replica_methods
            .iter()
            .map(String::as_str)
            .collect()
    };
    if source.is_none() {
        methods.retain(|m| pgcfg.replica_method(m).is_some_and(|r| r.no_leader));
        if methods.is_empty() {
            return Err("no entry of postgresql.create_replica_methods can create a replica without a leader (no_leader)".into());
        }
    }
    pg.write_pgpass()
        .map_err(fail("writing the pgpass file failed"))?;
    let mut failures = Vec::new();
    let mut created = None;
    for &name in &methods {
        let outcome = match (name, pgcfg.replica_method(name), &source) {
            ("basebackup", _, Some(src)) => {
                empty_data_dir(pg, false).await?;
                pg.basebackup(src).await.map_err(|e| e.to_string())
            }
            (_, Some(m), _) => run_replica_method(ctx, m, source.as_ref()).await,
            _ => continue,
        };
        match outcome {
            Ok(()) => {
                info!("replica has been created using {name}");
                created = Some(name);
                break;
            }
            Err(e) => {
                error!("Error creating replica using method {name}: {e}");
                failures.push(format!("{name}: {}", last_line(&e)));
            }
        }
    }
    let Some(method) = created else {
        return Err(format!(
            "no replica creation method worked ({})",
            failures.join("; ")
        ));
    };
    if method != "basebackup" {
        left_a_data_directory(pg, &format!("postgresql.{method}.command"), method).await?;
    }
    let leader = ctx
        .cluster
        .as_ref()
        .and_then(|c| c.leader_name())
        .or(from)
        .map(str::to_string);
    match from {
        Some(f) => info!("bootstrapped from leader '{f}'"),
        None => info!("bootstrapped (without leader)"),
    }
    start(ctx, &Role::Replica { leader }).await?;
    Ok(match from {
        Some(f) => format!("bootstrapped from '{f}' using {method}"),
        None => format!("bootstrapped (without leader) using {method}"),
    })
}

/// Empty the data directory before (or after) a method, unless `keep`.
async fn empty_data_dir(pg: &LocalPostgres, keep: bool) -> Result<(), String> {
    if matches!(
        pg.data_dir_state(),
        DataDirState::Missing | DataDirState::Empty
    ) {
        return Ok(());
    }
    if keep {
        info!("Leaving data directory uncleaned");
        return Ok(());
    }
    pg.remove_data_dir()
        .await
        .map_err(fail("removing the data directory failed"))
}

/// One custom replica creation method, with Patroni's arguments (`--scope`, `--role`,
/// `--datadir`, `--connstring` of the source, and the method's own keys).
async fn run_replica_method(
    ctx: &JobCtx,
    m: &ReplicaMethod,
    source: Option<&ConnTarget>,
) -> Result<(), String> {
    let pg = &ctx.pg;
    let setting = format!("postgresql.{}.command", m.name);
    let command = m.command.as_deref().unwrap_or(&m.name);
    empty_data_dir(pg, m.keep_data).await?;
    let connstring = source
        .map(|s| replication_dsn(&pg.params().replication.username, s))
        .unwrap_or_default();
    let data_dir = pg.params().data_dir.display().to_string();
    let argv = m
        .argv(&ctx.cfg.scope, &data_dir, &connstring)
        .map_err(|e| format!("{setting}: {e}"))?;
    info!("creating the replica with {setting} `{command}`");
    let result = match pg.run_method(&argv, true).await {
        Ok(run) if run.success => Ok(()),
        Ok(run) => Err(format!(
            "{setting} `{command}` exited with {}\n{}",
            run.status, run.tail
        )),
        Err(e) => Err(format!("{setting} `{command}` could not be run: {e}")),
    };
    if result.is_err() {
        if pg.postmaster_pid().is_some() {
            let _ = pg
                .stop(
                    pgha_postgres::StopMode::Immediate,
                    pg.params().pg_ctl_timeout,
                )
                .await;
        }
        empty_data_dir(pg, m.keep_data).await?;
    }
    result
}

/// `dbname=postgres user=U host=H port=P`, the source handed to replica methods (no
/// password: it is in the file PGPASSFILE names). Spaces, quotes and backslashes are
/// backslash-escaped.
fn replication_dsn(user: &str, source: &ConnTarget) -> String {
    let esc = |v: &str| {
        let mut out = String::new();
        for c in v.chars() {
            if matches!(c, '\'' | '\\' | ' ') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    };
    format!(
        "dbname=postgres user={} host={} port={}",
        esc(user),
        esc(&source.host),
        source.port
    )
}

async fn start(ctx: &JobCtx, role: &Role) -> Result<String, String> {
    let pg = &ctx.pg;
    let mut server = server_config(
        &ctx.cfg,
        &ctx.policy,
        role,
        ctx.cluster.as_ref(),
        pg.major_version(),
    );
    pg.write_pgpass()
        .map_err(fail("writing the pgpass file failed"))?;
    pg.write_config(&mut server)
        .await
        .map_err(fail("writing the configuration failed"))?;
    // Not for a standby leader: its slot lives in another cluster, with other credentials.
    if matches!(role, Role::Replica { .. }) {
        ensure_upstream_slot(pg, &server).await;
    }
    // A postmaster killed a moment ago can linger as a zombie until it is reaped, and a new
    // one then refuses its socket lock file: such an early exit is worth a quick retry.
    let mut attempt = 1;
    loop {
        pg.start(&server)
            .await
            .map_err(fail("postgres start failed"))?;
        match pg.wait_ready(pg.params().pg_ctl_timeout).await {
            Ok(()) => break,
            Err(pgha_postgres::PgError::StartupFailed { log_tail }) if attempt < 5 => {
                let last = log_tail.lines().last().unwrap_or("").to_string();
                warn!("postgres exited during startup (attempt {attempt}), retrying: {last}");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("postgres is not accepting connections yet: {e}")),
        }
    }
    info!("postmaster pid={}", pg.postmaster_pid().unwrap_or(0));
    Ok("postgres started".into())
}

/// A standby about to stream: its slot exists upstream before the walreceiver asks for it (see
/// `LocalPostgres::ensure_upstream_slot`: otherwise the first connection attempts fail and
/// PostgreSQL waits `wal_retrieve_retry_interval` before the next). Best effort: a failure is
/// logged and the upstream's own slot upkeep still creates the slot.
pub(crate) async fn ensure_upstream_slot(pg: &LocalPostgres, server: &pgha_postgres::ServerConfig) {
    let Some(standby) = &server.standby else {
        return;
    };
    let Some(slot) = &standby.primary_slot_name else {
        return;
    };
    if standby.primary_host.is_empty() {
        return;
    }
    let upstream = ConnTarget {
        host: standby.primary_host.clone(),
        port: standby.primary_port,
    };
    match pg.ensure_upstream_slot(&upstream, slot).await {
        Ok(true) => info!("created replication slot {slot} on {upstream} before streaming from it"),
        Ok(false) => {}
        Err(e) => warn!("could not make sure replication slot {slot} exists on {upstream}: {e}"),
    }
}

async fn start_replica(ctx: &JobCtx, leader: &str) -> Result<(), String> {
    start(
        ctx,
        &Role::Replica {
            leader: Some(leader.to_string()),
        },
    )
    .await
    .map(|_| ())
}

async fn rejoin(ctx: &JobCtx, leader: &str) -> Result<String, String> {
    let pg = &ctx.pg;
    let source = member_target(ctx.cluster.as_ref(), leader)?;
    let mut control = pg
        .controldata()
        .await
        .map_err(fail("pg_controldata failed"))?;
    if !control.is_clean_shutdown() {
        info!("doing crash recovery in a single user mode");
        pg.crash_recovery()
            .await
            .map_err(fail("crash recovery failed"))?;
        control = pg
            .controldata()
            .await
            .map_err(fail("pg_controldata failed"))?;
    }
    let (local_tl, mut local_lsn) = control.end_of_wal_hint();
    // A standby's control file may stop short of what it replayed (past a fork, say).
    if let Some((tl, replayed)) = ctx.last_replay {
        if tl == local_tl && replayed > local_lsn.0 {
            local_lsn = pgha_types::Lsn(replayed);
        }
    }
    info!("Local timeline={local_tl} lsn={local_lsn}");
    pg.write_pgpass()
        .map_err(fail("writing the pgpass file failed"))?;
    // Ask the leader itself: its member key may still describe it before its promotion.
    let leader_tl = match pg
        .primary_timeline(&source)
        .await
        .map_err(fail("asking the leader for its timeline failed"))?
    {
        Some(tl) => tl,
        None => {
            return Err(format!(
                "{leader} is still in recovery; checking again once it runs as the primary"
            ))
        }
    };
    info!("primary_timeline={leader_tl}");
    let history = if leader_tl > 1 {
        pg.timeline_history(&source, leader_tl)
            .await
            .map_err(fail("reading the leader's timeline history failed"))?
    } else {
        Vec::new()
    };
    let switches: Vec<(u32, u64)> = history.iter().map(|s| (s.timeline, s.lsn.0)).collect();
    let ours: Vec<(u32, u64)> = match pg.local_timeline_history(local_tl) {
        Ok(h) => h.iter().map(|s| (s.timeline, s.lsn.0)).collect(),
        Err(e) => {
            warn!("could not read our own timeline history: {e}");
            Vec::new()
        }
    };
    if let Divergence::Diverged(why) =
        assess_divergence(local_tl, local_lsn.0, leader_tl, &switches, &ours)
    {
        info!("{why}");
        let cfg = &ctx.cfg.postgresql;
        if ctx.policy.use_pg_rewind {
            info!("running pg_rewind from {leader}");
            match pg.rewind(&source).await {
                Ok(()) => info!("pg_rewind exit code=0"),
                Err(e) => {
                    error!("pg_rewind from {leader} failed: {e}");
                    if cfg.remove_data_directory_on_rewind_failure {
                        warn!("removing data directory after the failed rewind; the replica will be cloned again");
                        pg.remove_data_dir()
                            .await
                            .map_err(fail("removing the data directory failed"))?;
                        return Ok("data directory removed after a failed rewind".into());
                    }
                    return Err(format!("pg_rewind failed: {e}; set remove_data_directory_on_rewind_failure to re-clone automatically"));
                }
            }
        } else if cfg.remove_data_directory_on_diverged_timelines {
            warn!("removing data directory: it diverged from the leader and use_pg_rewind is off");
            pg.remove_data_dir()
                .await
                .map_err(fail("removing the data directory failed"))?;
            return Ok("data directory removed; the replica will be cloned again".into());
        } else {
            return Err(format!(
                "{why}; cannot follow {leader}: enable use_pg_rewind or remove_data_directory_on_diverged_timelines, or run reinit"
            ));
        }
    }
    info!("starting as a secondary");
    start_replica(ctx, leader).await?;
    Ok(format!("rejoined as a replica of {leader}"))
}

async fn promote(ctx: &JobCtx) -> Result<String, JobFailure> {
    let pg = &ctx.pg;
    // The fencing hook: it runs with the lock held, and a non-zero exit (or a script that
    // cannot run) cancels the promotion before postgres is touched.
    if let Some(cmd) = &ctx.cfg.postgresql.pre_promote {
        let code = crate::callbacks::run_and_wait("postgresql.pre_promote", cmd).await;
        if code != Some(0) {
            return Err(JobFailure {
                message: match code {
                    Some(c) => format!("pre_promote script `{cmd}` exited with {c}"),
                    None => format!("pre_promote script `{cmd}` could not be run"),
                },
                refused_by_pre_promote: true,
            });
        }
    }
    pg.promote(pg.params().pg_ctl_timeout)
        .await
        .map_err(fail("promote failed"))?;
    // A checkpoint puts the new timeline into pg_control, which pg_rewind on the old primary
    // reads from this node.
    if let Err(e) = pg.checkpoint().await {
        warn!("CHECKPOINT after promote failed: {e}");
    }
    let lsn = pg
        .probe()
        .await
        .ok()
        .and_then(|p| p.wal_lsn)
        .unwrap_or(Lsn(0));
    Ok(format!("promoted; WAL position {lsn}"))
}

async fn restart(ctx: &JobCtx, role: &Role) -> Result<String, String> {
    let pg = &ctx.pg;
    before_stop(&ctx.cfg, pg).await;
    pg.stop(pgha_postgres::StopMode::Fast, pg.params().pg_ctl_timeout)
        .await
        .map_err(fail("stopping postgres for the restart failed"))?;
    start(ctx, role).await?;
    Ok("postgres restarted".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_while_a_custom_bootstrap_recovers() {
        let mut p = crate::settings::pg_params(
            &pgha_config::parse_str(
                "scope: s\nname: n\nrestapi: {listen: 127.0.0.1:8008}\netcd3: {host: 127.0.0.1:2379}\n\
                 postgresql:\n  listen: 127.0.0.1:5432\n  data_dir: /d\n  authentication:\n    \
                 superuser: {username: postgres}\n    replication: {username: rep}\n",
            )
            .unwrap()
            .config,
        );
        assert_eq!(
            trust_hba(&p),
            vec![
                "local replication \"rep\" trust",
                "local all \"postgres\" trust",
                "host replication \"rep\" 127.0.0.1/32 trust",
                "host all \"postgres\" 127.0.0.1/32 trust",
            ]
        );
        p.local_host = "/run/postgresql".into();
        assert_eq!(trust_hba(&p).len(), 2);
    }

    #[test]
    fn dsn_for_replica_methods() {
        let t = ConnTarget {
            host: "127.0.0.1".into(),
            port: 5433,
        };
        assert_eq!(
            replication_dsn("replicator", &t),
            "dbname=postgres user=replicator host=127.0.0.1 port=5433"
        );
        assert_eq!(
            replication_dsn("o'k me", &t),
            "dbname=postgres user=o\\'k\\ me host=127.0.0.1 port=5433"
        );
    }
}
