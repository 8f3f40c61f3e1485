//! Long actions (bootstrap, clone, start, rejoin, promote). Each runs as its own task so the HA
//! loop keeps renewing or giving up the leader lock while postgres copies data or recovers.

use std::sync::Arc;

use pgha_config::Config;
use pgha_core::{assess_divergence, Divergence, JobKind, Role};
use pgha_dcs::EtcdDcs;
use pgha_postgres::{ConnTarget, LocalPostgres};
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
        JobKind::Clone { from } => clone_from(&ctx, &from).await.map_err(Into::into),
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
    let (cfg, pg) = (&ctx.cfg, &ctx.pg);
    pg.initdb().await.map_err(fail("initdb failed"))?;
    let mut server = server_config(cfg, &ctx.policy, &Role::Primary, None, pg.major_version());
    if !cfg.bootstrap.pg_hba.is_empty() {
        server.hba = cfg.bootstrap.pg_hba.clone();
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
    pg.bootstrap_roles()
        .await
        .map_err(fail("creating the roles failed"))?;
    if let Some(script) = &cfg.bootstrap.post_bootstrap {
        info!("running post_bootstrap script {script}");
        pg.run_post_bootstrap(script)
            .await
            .map_err(fail("post_bootstrap failed"))?;
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
    Ok(format!(
        "initialized a new cluster (system identifier {sysid})"
    ))
}

fn member_target(cluster: Option<&Cluster>, name: &str) -> Result<ConnTarget, String> {
    let (host, port) = cluster
        .and_then(|c| c.member(name))
        .and_then(|m| m.host_port())
        .ok_or_else(|| format!("member {name} has no usable conn_url in the DCS"))?;
    Ok(ConnTarget { host, port })
}

async fn clone_from(ctx: &JobCtx, from: &str) -> Result<String, String> {
    let pg = &ctx.pg;
    let source = member_target(ctx.cluster.as_ref(), from)?;
    pg.write_pgpass()
        .map_err(fail("writing the pgpass file failed"))?;
    pg.basebackup(&source)
        .await
        .map_err(fail("Error creating replica using method basebackup"))?;
    info!("replica has been created using basebackup");
    info!("bootstrapped from leader '{from}'");
    let leader = ctx
        .cluster
        .as_ref()
        .and_then(|c| c.leader_name())
        .unwrap_or(from)
        .to_string();
    start_replica(ctx, &leader).await?;
    Ok(format!("bootstrapped from '{from}'"))
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
    let (local_tl, local_lsn) = control.end_of_wal_hint();
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
    if let Divergence::Diverged(why) =
        assess_divergence(local_tl, local_lsn.0, leader_tl, &switches)
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
