//! The commands: read the DCS, render, print; redraw in watch mode until Ctrl-C.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

use crate::cli::{Cli, Command, ListArgs, OutputFormat, VersionArgs, WatchArgs};
use crate::config::{self, CtlConfig};
use crate::dcs::{ClusterReader, EtcdAccess};
use crate::render::{render_members, Format};

pub async fn run(cli: Cli) -> Result<()> {
    let env = |k: &str| std::env::var(k).ok();
    let cfg = config::load(
        cli.config_file.as_deref(),
        cli.dcs_url.as_deref(),
        cli.insecure,
        &env,
    )?;
    match cli.command {
        Command::List(args) => {
            let fmt = match args.format {
                OutputFormat::Pretty => Format::Pretty,
                OutputFormat::Tsv => Format::Tsv,
                OutputFormat::Json => Format::Json,
                OutputFormat::Yaml | OutputFormat::Yml => Format::Yaml,
            };
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
    }
}

fn reject_group(group: Option<i64>) -> Result<()> {
    if group.is_some() {
        bail!("--group: Citus clusters are not supported by pgha");
    }
    Ok(())
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

/// patronictl's warning format (`logging.basicConfig`), for the one warning `list` prints.
fn warn(message: &str) {
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
    let http = reqwest::Client::builder()
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
