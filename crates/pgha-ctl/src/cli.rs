//! Command line of `pghactl`, shaped like patronictl's so scripts and fingers work unchanged:
//! global options first (`-c`, `-d`, `-k`), then the command and its options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::args::*;

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
    /// Switchover to a replica
    Switchover(SwitchoverArgs),
    /// Failover to a replica
    Failover(FailoverArgs),
    /// Edit cluster configuration
    #[command(name = "edit-config")]
    EditConfig(EditConfigArgs),
    /// Show cluster configuration
    #[command(name = "show-config")]
    ShowConfig(ClusterArgs),
    /// Restart cluster member
    Restart(RestartArgs),
    /// Reload cluster member configuration
    Reload(ReloadArgs),
    /// Reinitialize cluster member
    Reinit(ReinitArgs),
    /// Disable auto failover
    Pause(PauseArgs),
    /// Resume auto failover
    Resume(PauseArgs),
    /// Show the history of failovers/switchovers
    History(HistoryArgs),
    /// Remove cluster from DCS
    Remove(RemoveArgs),
    /// Query a Patroni PostgreSQL member
    Query(QueryArgs),
    /// Generate a dsn for the provided member, defaults to a dsn of the leader
    Dsn(DsnArgs),
    /// Discard scheduled events
    Flush(FlushArgs),
    /// Demote cluster to a standby cluster
    #[command(name = "demote-cluster")]
    DemoteCluster(DemoteClusterArgs),
    /// Promote cluster, make it run standalone
    #[command(name = "promote-cluster")]
    PromoteCluster(PromoteClusterArgs),
    /// Print a haproxy.cfg routing to the cluster's primary and replicas
    #[command(name = "haproxy-config")]
    HaproxyConfig(HaproxyConfigArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion(CompletionArgs),
    /// Run fault drills under a write load against a lab made by scripts/cluster.sh
    Drill(DrillArgs),
    /// Make a private CA and certificates for a lab (scripts/cluster.sh up --tls)
    #[command(name = "lab-certs", hide = true)]
    LabCerts(LabCertsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LabCertsArgs {
    /// Directory to write ca.pem and NAME.crt / NAME.key (mode 0600) into; must not hold a
    /// ca.pem yet
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// One certificate per name, valid for the name, localhost and 127.0.0.1, usable by
    /// servers and clients
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
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

    #[test]
    fn parses_operation_commands() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.command);
        let Ok(Command::Flush(f)) = parse(&["pghactl", "flush", "b", "restart"]) else {
            panic!()
        };
        assert_eq!(f.cluster_name(), "b");
        assert!(f.member_names().is_empty());
        assert_eq!(f.target(), Ok(FlushTarget::Restart));
        let Ok(Command::Flush(f)) =
            parse(&["pghactl", "flush", "b", "n1", "n2", "switchover", "--force"])
        else {
            panic!()
        };
        assert_eq!(f.member_names(), ["n1", "n2"]);
        assert_eq!(f.target(), Ok(FlushTarget::Switchover));
        assert!(f.force);
        let Ok(Command::Flush(f)) = parse(&["pghactl", "flush", "b", "n1", "bogus"]) else {
            panic!()
        };
        assert!(f.target().is_err());
        assert!(parse(&["pghactl", "flush", "b"]).is_err());
        let Ok(Command::Switchover(s)) = parse(&[
            "pghactl",
            "switchover",
            "--primary",
            "a",
            "--candidate",
            "b",
            "--force",
        ]) else {
            panic!()
        };
        assert_eq!(
            (s.leader.as_deref(), s.candidate.as_deref()),
            (Some("a"), Some("b"))
        );
        let Ok(Command::EditConfig(e)) = parse(&[
            "pghactl",
            "edit-config",
            "-s",
            "ttl=20",
            "-s",
            "x=1",
            "-p",
            "work_mem=8MB",
            "-q",
        ]) else {
            panic!()
        };
        assert_eq!((e.set.len(), e.pg.len(), e.quiet), (2, 1, true));
        let Ok(Command::Restart(r)) =
            parse(&["pghactl", "restart", "b", "n1", "-r", "standby-leader"])
        else {
            panic!()
        };
        assert_eq!(r.role, RoleArg::StandbyLeader);
        let Ok(Command::Query(q)) =
            parse(&["pghactl", "-c", "/x", "query", "-c", "select 1", "-d", "db"])
        else {
            panic!()
        };
        assert_eq!(
            (q.command.as_deref(), q.dbname.as_deref()),
            (Some("select 1"), Some("db"))
        );
        assert_eq!((q.format, q.delimiter.as_str()), (OutputFormat::Tsv, "\t"));
        assert!(
            parse(&["pghactl", "restart"]).is_err(),
            "CLUSTER_NAME is required"
        );
    }
}
