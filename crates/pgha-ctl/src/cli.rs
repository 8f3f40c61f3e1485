//! Command line of `pghactl`, shaped like patronictl's so scripts and fingers work unchanged:
//! global options first (`-c`, `-d`, `-k`), then the command and its options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "pghactl",
    about = "Command-line interface for interacting with pgha (patronictl-compatible).",
    disable_version_flag = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Configuration file [default: ~/.config/patroni/patronictl.yaml]
    #[arg(
        short = 'c',
        long = "config-file",
        env = "PATRONICTL_CONFIG_FILE",
        value_name = "PATH"
    )]
    pub config_file: Option<PathBuf>,

    /// The DCS connect url, e.g. etcd3://host:port[/namespace]
    #[arg(
        short = 'd',
        long = "dcs-url",
        visible_alias = "dcs",
        env = "DCS_URL",
        value_name = "URL"
    )]
    pub dcs_url: Option<String>,

    /// Allow connections to SSL sites without certs
    #[arg(short = 'k', long = "insecure")]
    pub insecure: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the Patroni members for a given Patroni
    List(ListArgs),
    /// Prints ASCII topology for given cluster
    Topology(TopologyArgs),
    /// Output version of pghactl command or a running Patroni instance
    Version(VersionArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Pretty,
    Tsv,
    Json,
    Yaml,
    Yml,
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Auto update the screen every 2 seconds
    #[arg(short = 'W')]
    pub w: bool,

    /// Auto update the screen every X seconds
    #[arg(short = 'w', long = "watch", value_name = "FLOAT")]
    pub watch: Option<f64>,
}

impl WatchArgs {
    /// The redraw interval in seconds, `None` to print once.
    pub fn interval(&self) -> Option<f64> {
        match self.watch {
            Some(s) if s > 0.0 => Some(s),
            _ if self.w => Some(2.0),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Cluster names (default: `scope` from the configuration)
    #[arg(value_name = "CLUSTER_NAMES")]
    pub cluster_names: Vec<String>,

    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,

    /// Show some extra information
    #[arg(short = 'e', long = "extended")]
    pub extended: bool,

    /// Print timestamp
    #[arg(short = 't', long = "timestamp")]
    pub timestamp: bool,

    /// Output format
    #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
    pub format: OutputFormat,

    #[command(flatten)]
    pub watch: WatchArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TopologyArgs {
    /// Cluster names (default: `scope` from the configuration)
    #[arg(value_name = "CLUSTER_NAMES")]
    pub cluster_names: Vec<String>,

    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,

    #[command(flatten)]
    pub watch: WatchArgs,
}

#[derive(Debug, Clone, Args)]
pub struct VersionArgs {
    /// Cluster whose members' versions to show
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: Option<String>,

    /// Only these members
    #[arg(value_name = "MEMBER_NAMES")]
    pub member_names: Vec<String>,

    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_patronictl_style_invocations() {
        let cli = Cli::try_parse_from([
            "pghactl",
            "-c",
            "/etc/p.yml",
            "--dcs",
            "h:1",
            "list",
            "-e",
            "-t",
            "-f",
            "json",
            "-w",
            "1.5",
            "a",
            "b",
        ])
        .unwrap();
        assert_eq!(
            cli.config_file.as_deref(),
            Some(std::path::Path::new("/etc/p.yml"))
        );
        assert_eq!(cli.dcs_url.as_deref(), Some("h:1"));
        let Command::List(l) = cli.command else {
            panic!()
        };
        assert_eq!(l.cluster_names, ["a", "b"]);
        assert!(l.extended && l.timestamp);
        assert_eq!(l.format, OutputFormat::Json);
        assert_eq!(l.watch.interval(), Some(1.5));

        let cli =
            Cli::try_parse_from(["pghactl", "--dcs-url", "etcd3://h:1", "topology", "-W"]).unwrap();
        let Command::Topology(t) = cli.command else {
            panic!()
        };
        assert_eq!(t.watch.interval(), Some(2.0));
        assert!(Cli::try_parse_from(["pghactl", "list", "-f", "xml"]).is_err());
        let cli = Cli::try_parse_from(["pghactl", "version", "c", "m1", "m2"]).unwrap();
        let Command::Version(v) = cli.command else {
            panic!()
        };
        assert_eq!(
            (v.cluster_name.as_deref(), v.member_names.len()),
            (Some("c"), 2)
        );
    }
}
