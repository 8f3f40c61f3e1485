//! The commands: read the DCS, render, print; redraw in watch mode until Ctrl-C. The
//! commands that act on a cluster live in the submodules; [`run`] wires them to the process's
//! terminal, the DCS and the agents' REST API.

mod cluster_role;
mod common;
mod drill;
mod edit_config;
mod extras;
mod history;
mod members;
mod pause;
mod query;
mod restart;
mod switchover;
#[cfg(test)]
mod testutil;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

use crate::cli::{Cli, Command, ListArgs, OutputFormat, VersionArgs, WatchArgs};
use crate::config::{self, CtlConfig};
use crate::dcs::{ClusterReader, EtcdAccess};
use crate::render::{render_members, Format};
use crate::rest::Rest;
use crate::term::{prompt_secret, StdTerm};
use common::{reject_group, Ctx};
pub use drill::Drill;

pub async fn run(cli: Cli) -> Result<()> {
    // Needs no configuration at all.
    if let Command::Completion(a) = &cli.command {
        extras::completion(a);
        return Ok(());
    }
    if let Command::LabCerts(a) = &cli.command {
        return extras::lab_certs(a);
    }
    // Finds everything in the lab directory: no -c, no DCS URL.
    if let Command::Drill(a) = &cli.command {
        return match drill::run(a).await? {
            true => Ok(()),
            false => Err(crate::term::AlreadyReported.into()),
        };
    }
    let env = |k: &str| std::env::var(k).ok();
    let cfg = config::load(
        cli.config_file.as_deref(),
        cli.dcs_url.as_deref(),
        cli.insecure,
        &env,
    )?;
    match cli.command {
        Command::List(args) => {
            let fmt = format_of(args.format);
            list(&cfg, &args, fmt).await
        }
        Command::Topology(t) => {
            let args = ListArgs {
                cluster_names: t.cluster_names,
                group: t.group,
                extended: false,
                timestamp: false,
                format: OutputFormat::Pretty,
                watch: t.watch,
            };
            list(&cfg, &args, Format::Topology).await
        }
        Command::Version(v) => version(&cfg, &v).await,
        Command::HaproxyConfig(a) => extras::haproxy_config(&cfg, a).await,
        Command::Completion(a) => {
            extras::completion(&a);
            Ok(())
        }
        Command::Drill(_) | Command::LabCerts(_) => Ok(()),
        other => operate(&cfg, other).await,
    }
}

fn format_of(f: OutputFormat) -> Format {
    match f {
        OutputFormat::Pretty => Format::Pretty,
        OutputFormat::Tsv => Format::Tsv,
        OutputFormat::Json => Format::Json,
        OutputFormat::Yaml | OutputFormat::Yml => Format::Yaml,
    }
}

/// The cluster a command works on: the one named, else `scope` from the configuration.
fn scope_of(cfg: &CtlConfig, given: Option<String>) -> Result<String> {
    given
        .or_else(|| cfg.scope.clone())
        .ok_or_else(|| anyhow::anyhow!("no cluster name given and no `scope` in the configuration"))
}

/// A file's content for `--apply`/`--replace` (`-` is stdin).
fn read_source(name: &str) -> Result<String> {
    if name == "-" {
        Ok(std::io::read_to_string(std::io::stdin())?)
    } else {
        std::fs::read_to_string(name).map_err(|e| anyhow::anyhow!("cannot read {name}: {e}"))
    }
}

/// The commands that act on one cluster through the DCS and the agents.
async fn operate(cfg: &CtlConfig, command: Command) -> Result<()> {
    use switchover::{Action, Request};
    let mut term = StdTerm;
    let (scope, group) = match &command {
        Command::Switchover(a) => (a.cluster_name.clone(), a.group),
        Command::Failover(a) => (a.cluster_name.clone(), a.group),
        Command::EditConfig(a) => (a.cluster_name.clone(), a.group),
        Command::ShowConfig(a) => (a.cluster_name.clone(), a.group),
        Command::Restart(a) => (Some(a.cluster_name.clone()), a.group),
        Command::Reload(a) => (Some(a.cluster_name.clone()), a.group),
        Command::Reinit(a) => (Some(a.cluster_name.clone()), a.group),
        Command::Pause(a) | Command::Resume(a) => (a.cluster_name.clone(), a.group),
        Command::History(a) => (a.cluster_name.clone(), a.group),
        Command::Remove(a) => (Some(a.cluster_name.clone()), a.group),
        Command::Query(a) => (a.cluster_name.clone(), a.group),
        Command::Dsn(a) => (a.cluster_name.clone(), a.group),
        Command::Flush(a) => (Some(a.cluster_name().to_string()), a.group),
        Command::DemoteCluster(a) => (a.cluster_name.clone(), None),
        Command::PromoteCluster(a) => (a.cluster_name.clone(), None),
        Command::List(_)
        | Command::Topology(_)
        | Command::Version(_)
        | Command::HaproxyConfig(_)
        | Command::Drill(_)
        | Command::LabCerts(_)
        | Command::Completion(_) => return Ok(()),
    };
    reject_group(group)?;
    let scope = scope_of(cfg, scope)?;
    // Arguments that need the terminal come before the DCS, as in patronictl.
    let mut query_password = None;
    let mut edit_sources = (None, None);
    match &command {
        Command::Query(q) => {
            if q.file.is_some() && q.command.is_some() {
                bail!("--file and --command are mutually exclusive options");
            }
            if q.file.is_none() && q.command.is_none() {
                bail!("You need to specify either --command or --file");
            }
            if q.password {
                query_password = Some(prompt_secret(&mut term, "Password")?);
            }
        }
        Command::Flush(f) => {
            f.target().map_err(|e| anyhow::anyhow!(e))?;
        }
        Command::DemoteCluster(d) => {
            cluster_role::standby_section(d.host.clone(), d.port, d.restore_command.clone(), None)?;
        }
        Command::EditConfig(e) => {
            let read = |f: &Option<String>| -> Result<Option<(String, String)>> {
                f.as_ref()
                    .map(|n| Ok((n.clone(), read_source(n)?)))
                    .transpose()
            };
            edit_sources = (read(&e.replace)?, read(&e.apply)?);
        }
        _ => {}
    }
    let access = EtcdAccess::from(cfg.etcd()?);
    let store = ClusterReader::connect(&access, &cfg.prefix(&scope)).await?;
    let mut ctx = Ctx {
        term: &mut term,
        rest: Rest::with_tls(
            cfg.rest_auth.clone(),
            &cfg.rest_tls,
            crate::rest::REQUEST_TIMEOUT,
        )?,
    };
    let ctx = &mut ctx;
    match command {
        Command::Switchover(a) => {
            let req = Request {
                leader: a.leader,
                candidate: a.candidate,
                scheduled: a.scheduled,
                force: a.force,
            };
            switchover::run(ctx, &store, &scope, Action::Switchover, req).await
        }
        Command::Failover(a) => {
            let req = Request {
                candidate: a.candidate,
                force: a.force,
                ..Request::default()
            };
            switchover::run(ctx, &store, &scope, Action::Failover, req).await
        }
        Command::EditConfig(a) => {
            let req = edit_config::EditRequest {
                quiet: a.quiet,
                set: a.set,
                pg: a.pg,
                replace: edit_sources.0,
                apply: edit_sources.1,
                force: a.force,
            };
            edit_config::edit_config(ctx, &store, &scope, &req, &edit_config::invoke_editor).await
        }
        Command::ShowConfig(_) => edit_config::show_config(ctx, &store).await,
        Command::Restart(a) => {
            let req = restart::RestartRequest {
                members: a.member_names,
                role: a.role,
                any: a.any,
                scheduled: a.scheduled,
                pg_version: a.pg_version,
                pending: a.pending,
                timeout: a.timeout,
                force: a.force,
            };
            restart::restart(ctx, &store, &scope, req).await
        }
        Command::Reload(a) => {
            restart::reload(ctx, &store, &scope, &a.member_names, a.role, a.force).await
        }
        Command::Reinit(a) => {
            restart::reinit(
                ctx,
                &store,
                &scope,
                &a.member_names,
                a.force,
                a.from_leader,
                a.wait,
            )
            .await
        }
        Command::Pause(a) => pause::toggle_pause(ctx, &store, true, a.wait).await,
        Command::Resume(a) => pause::toggle_pause(ctx, &store, false, a.wait).await,
        Command::History(a) => history::history(ctx, &store, format_of(a.format)).await,
        Command::Remove(a) => history::remove(ctx, &store, &scope, format_of(a.format)).await,
        Command::Dsn(a) => history::dsn(ctx, &store, a.role, a.member.as_deref()).await,
        Command::Flush(a) => {
            let target = a.target().map_err(|e| anyhow::anyhow!(e))?;
            restart::flush(
                ctx,
                &store,
                &scope,
                &a.member_names(),
                target,
                a.role,
                a.force,
            )
            .await
        }
        Command::DemoteCluster(d) => {
            let section = cluster_role::standby_section(
                d.host,
                d.port,
                d.restore_command,
                d.primary_slot_name,
            )?;
            cluster_role::change_cluster_role(ctx, &store, &scope, d.force, Some(section)).await
        }
        Command::PromoteCluster(p) => {
            cluster_role::change_cluster_role(ctx, &store, &scope, p.force, None).await
        }
        Command::Query(q) => {
            let sql = match &q.file {
                Some(f) => std::fs::read_to_string(f)
                    .map_err(|e| anyhow::anyhow!("cannot read {f}: {e}"))?,
                None => q.command.clone().unwrap_or_default(),
            };
            let env = |k: &str| std::env::var(k).ok();
            let user = q
                .username
                .clone()
                .unwrap_or_else(|| query::default_user(cfg.superuser.as_ref(), &env));
            let password =
                query_password
                    .or_else(|| env("PGPASSWORD"))
                    .or_else(|| match &cfg.superuser {
                        Some((u, p)) if *u == user => p.clone(),
                        _ => None,
                    });
            let req = query::QueryRequest {
                role: q.role,
                member: q.member,
                sql,
                user,
                password,
                dbname: q.dbname.or_else(|| env("PGDATABASE")),
                format: format_of(q.format),
                delimiter: q.delimiter,
                watch: q.watch.interval(),
            };
            query::query(ctx, &store, &req).await
        }
        Command::List(_)
        | Command::Topology(_)
        | Command::Version(_)
        | Command::HaproxyConfig(_)
        | Command::Drill(_)
        | Command::LabCerts(_)
        | Command::Completion(_) => Ok(()),
    }
}

/// Writes to stdout; a closed pipe (`pghactl list | head -1`) ends the program quietly.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// patronictl's warning format (`logging.basicConfig`): `2024-02-07 18:50:54,947 - WARNING - ...`
/// on stderr.
pub(crate) fn warn(message: &str) {
    let now = chrono::Local::now();
    eprintln!(
        "{} - WARNING - {message}",
        now.format("%Y-%m-%d %H:%M:%S,%3f")
    );
}

async fn list(cfg: &CtlConfig, args: &ListArgs, fmt: Format) -> Result<()> {
    reject_group(args.group)?;
    let names: Vec<String> = if args.cluster_names.is_empty() {
        cfg.scope.iter().cloned().collect()
    } else {
        args.cluster_names.clone()
    };
    if names.is_empty() {
        warn("Listing members: No cluster names were provided");
        return Ok(());
    }
    let access = EtcdAccess::from(cfg.etcd()?);
    let mut readers = Vec::with_capacity(names.len());
    for name in &names {
        readers.push((
            name,
            ClusterReader::connect(&access, &cfg.prefix(name)).await?,
        ));
    }
    watching(&args.watch, || async {
        let mut text = String::new();
        if args.timestamp {
            text.push_str(&format!(
                "{}\n",
                chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
            ));
        }
        for (name, reader) in &readers {
            let cluster = reader.load().await?;
            text.push_str(&render_members(&cluster, name, args.extended, fmt));
        }
        Ok(text)
    })
    .await
}

/// Prints what `draw` returns once, or every interval (screen cleared first on a terminal)
/// until Ctrl-C.
async fn watching<F, Fut>(watch: &WatchArgs, mut draw: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String>>,
{
    let Some(interval) = watch.interval() else {
        emit(&draw().await?);
        return Ok(());
    };
    let interval = Duration::from_secs_f64(interval);
    let clear = std::io::stdout().is_terminal();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let started = Instant::now();
        let text = tokio::select! {
            text = draw() => text?,
            _ = &mut ctrl_c => break,
        };
        emit(&format!(
            "{}{text}",
            if clear { "\x1b[2J\x1b[1;1H" } else { "" }
        ));
        tokio::select! {
            _ = tokio::time::sleep(interval.saturating_sub(started.elapsed())) => {}
            _ = &mut ctrl_c => break,
        }
    }
    eprintln!("\nAborted!");
    std::process::exit(1);
}

/// `server_version` (150018) as PostgreSQL prints it (15.18; 9.6.24 before 10).
fn format_pg_version(v: u64) -> String {
    if v < 100_000 {
        format!("{}.{}.{}", v / 10_000, v / 100 % 100, v % 100)
    } else {
        format!("{}.{}", v / 10_000, v % 100)
    }
}

async fn version(cfg: &CtlConfig, args: &VersionArgs) -> Result<()> {
    reject_group(args.group)?;
    emit(&format!("pghactl version {}\n", pgha_types::PGHA_VERSION));
    let Some(name) = args.cluster_name.as_deref() else {
        return Ok(());
    };
    emit("\n");
    let access = EtcdAccess::from(cfg.etcd()?);
    let cluster = crate::dcs::load_cluster(&access, &cfg.prefix(name)).await?;
    let http = crate::rest::http_client(&cfg.rest_tls)?
        .timeout(Duration::from_secs(5))
        .build()?;
    for m in &cluster.members {
        let Some(url) = m.data.api_url.as_deref() else {
            continue;
        };
        if !args.member_names.is_empty() && !args.member_names.contains(&m.name) {
            continue;
        }
        let answer = async {
            let body: Value = http.get(url).send().await?.json().await?;
            Ok::<Value, reqwest::Error>(body)
        }
        .await;
        let line = match answer {
            Ok(body) => {
                let patroni = body
                    .pointer("/patroni/version")
                    .and_then(Value::as_str)
                    .unwrap_or("None");
                let pg = body
                    .get("server_version")
                    .and_then(Value::as_u64)
                    .filter(|v| *v > 0)
                    .map(|v| format!(" PostgreSQL {}", format_pg_version(v)))
                    .unwrap_or_default();
                format!("{}: Patroni {patroni}{pg}\n", m.name)
            }
            Err(e) => format!("{}: failed to get version: {e}\n", m.name),
        };
        emit(&line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_versions() {
        assert_eq!(format_pg_version(150018), "15.18");
        assert_eq!(format_pg_version(90624), "9.6.24");
        assert_eq!(format_pg_version(100000), "10.0");
    }
}
