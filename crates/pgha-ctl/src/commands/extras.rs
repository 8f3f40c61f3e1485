//! Commands pgha adds to patronictl's set: `haproxy-config`, `completion` and the hidden
//! `lab-certs`.

use anyhow::{bail, Context, Result};
use clap::CommandFactory;

use super::common::reject_group;
use super::{emit, scope_of};
use crate::cli::{Cli, CompletionArgs, HaproxyConfigArgs, LabCertsArgs};
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
        check_cert: args.check_cert,
        check_ca: args.check_ca,
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

/// `pghactl lab-certs`: a private CA (its key is not kept: a new lab makes a new CA) and one
/// certificate per name for `scripts/cluster.sh up --tls`.
pub fn lab_certs(args: &LabCertsArgs) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let ca_path = dir.join("ca.pem");
    if ca_path.exists() {
        bail!(
            "{} exists: certificates of another CA would not be trusted by the lab",
            ca_path.display()
        );
    }
    for n in &args.names {
        if n.is_empty() || n.contains('/') {
            bail!("certificate name {n:?} cannot be a file name");
        }
    }
    let ca = pgha_tls::test_ca::TestCa::new("pgha lab CA");
    for name in &args.names {
        let (cert, key) = ca
            .issue(dir, name, &[name.as_str(), "localhost", "127.0.0.1"])
            .with_context(|| format!("write the certificate of {name} in {}", dir.display()))?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod {}", key.display()))?;
        std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("chmod {}", cert.display()))?;
    }
    // Last: its presence says the directory is complete.
    ca.write(&ca_path)
        .with_context(|| format!("write {}", ca_path.display()))?;
    std::fs::set_permissions(&ca_path, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
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
