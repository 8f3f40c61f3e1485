//! Commands pgha adds to patronictl's set: `haproxy-config` and `completion`.

use anyhow::Result;
use clap::CommandFactory;

use super::common::reject_group;
use super::{emit, scope_of};
use crate::cli::{Cli, CompletionArgs, HaproxyConfigArgs};
use crate::config::CtlConfig;
use crate::dcs::{ClusterReader, EtcdAccess};
use crate::haproxy::{render, validate, HaproxyOptions};

/// `pghactl haproxy-config`: reads the members from the DCS and prints the configuration.
pub async fn haproxy_config(cfg: &CtlConfig, args: HaproxyConfigArgs) -> Result<()> {
    reject_group(args.group)?;
    let scope = scope_of(cfg, args.cluster_name)?;
    let opts = HaproxyOptions {
        bind: args.bind,
        primary_port: args.primary_port,
        replica_port: args.replica_port,
        stats_port: args.stats_port,
        inter: args.inter,
        fall: args.fall,
        rise: args.rise,
        maxconn: args.maxconn,
        method: args.check_method,
        replica_lag: args.replica_lag,
        stats_socket: args.stats_socket,
        ssl: args.ssl,
    };
    // Bad options are reported before etcd is asked anything.
    validate(&opts)?;
    let access = EtcdAccess::from(cfg.etcd()?);
    let cluster = ClusterReader::connect(&access, &cfg.prefix(&scope))
        .await?
        .load()
        .await?;
    emit(&render(&scope, &cluster, &opts)?);
    Ok(())
}

/// `pghactl completion SHELL`: the completion script on stdout.
pub fn completion(args: &CompletionArgs) {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "pghactl", &mut out);
    emit(&String::from_utf8_lossy(&out));
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap_complete::Shell;

    #[test]
    fn completion_scripts_name_the_commands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "pghactl", &mut out);
            let text = String::from_utf8(out).unwrap();
            for word in ["pghactl", "switchover", "haproxy-config", "completion"] {
                assert!(text.contains(word), "{shell:?} script lacks {word}");
            }
        }
    }
}
