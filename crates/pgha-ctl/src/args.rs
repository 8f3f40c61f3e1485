//! Options of the commands that act on a cluster, named and shaped as patronictl 4.1's.

use clap::{Args, ValueEnum};

use crate::cli::{OutputFormat, WatchArgs};

/// `-r/--role`: which members a command picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// The leader of a regular or a standby cluster
    Leader,
    /// The leader of a regular cluster
    Primary,
    /// The leader of a standby cluster
    StandbyLeader,
    /// A replica
    Replica,
    /// Same as replica
    Standby,
    /// Any member
    Any,
}

impl RoleArg {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleArg::Leader => "leader",
            RoleArg::Primary => "primary",
            RoleArg::StandbyLeader => "standby-leader",
            RoleArg::Replica => "replica",
            RoleArg::Standby => "standby",
            RoleArg::Any => "any",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct SwitchoverArgs {
    /// Cluster name (default: `scope` from the configuration)
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,
    /// The name of the current leader
    #[arg(long = "leader", visible_alias = "primary", value_name = "LEADER")]
    pub leader: Option<String>,
    /// The name of the candidate
    #[arg(long, value_name = "CANDIDATE")]
    pub candidate: Option<String>,
    /// Timestamp of a scheduled switchover in unambiguous format (e.g. ISO 8601)
    #[arg(long, value_name = "TIMESTAMP")]
    pub scheduled: Option<String>,
    /// Do not ask for confirmation at any point
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    /// Cluster name (default: `scope` from the configuration)
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,
    /// The name of the candidate
    #[arg(long, value_name = "CANDIDATE")]
    pub candidate: Option<String>,
    /// Do not ask for confirmation at any point
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct EditConfigArgs {
    /// Cluster name (default: `scope` from the configuration)
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,
    /// Do not show changes
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Set specific configuration value. Can be specified multiple times
    #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Set specific PostgreSQL parameter value. Shorthand for -s postgresql.parameters. Can be
    /// specified multiple times
    #[arg(short = 'p', long = "pg", value_name = "PARAM=VALUE")]
    pub pg: Vec<String>,
    /// Apply configuration from file. Use - for stdin.
    #[arg(long, value_name = "FILE")]
    pub apply: Option<String>,
    /// Apply configuration from file, replacing existing configuration. Use - for stdin.
    #[arg(long, value_name = "FILE")]
    pub replace: Option<String>,
    /// Do not ask for confirmation at any point
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Cluster name (default: `scope` from the configuration)
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,
}

#[derive(Debug, Clone, Args)]
pub struct RestartArgs {
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: String,
    #[arg(value_name = "MEMBER_NAMES")]
    pub member_names: Vec<String>,
    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,
    /// Restart only members with this role
    #[arg(short = 'r', long, value_enum, default_value = "any")]
    pub role: RoleArg,
    /// Restart a single member only
    #[arg(long = "any")]
    pub any: bool,
    /// Timestamp of a scheduled restart in unambiguous format (e.g. ISO 8601)
    #[arg(long, value_name = "TIMESTAMP")]
    pub scheduled: Option<String>,
    /// Restart if the PostgreSQL version is less than provided (e.g. 9.5.2)
    #[arg(long = "pg-version", value_name = "VERSION")]
    pub pg_version: Option<String>,
    /// Restart if pending
    #[arg(long)]
    pub pending: bool,
    /// Return error and fail over if necessary when restarting takes longer than this.
    #[arg(long, value_name = "TIMEOUT")]
    pub timeout: Option<String>,
    /// Do not ask for confirmation at any point
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ReloadArgs {
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: String,
    #[arg(value_name = "MEMBER_NAMES")]
    pub member_names: Vec<String>,
    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,
    /// Reload only members with this role
    #[arg(short = 'r', long, value_enum, default_value = "any")]
    pub role: RoleArg,
    /// Do not ask for confirmation at any point
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ReinitArgs {
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: String,
    #[arg(value_name = "MEMBER_NAMES")]
    pub member_names: Vec<String>,
    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,
    /// Do not ask for confirmation at any point
    #[arg(long)]
    pub force: bool,
    /// Get basebackup from leader
    #[arg(long = "from-leader")]
    pub from_leader: bool,
    /// Wait until reinitialization completes
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PauseArgs {
    /// Cluster name (default: `scope` from the configuration)
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,
    /// Wait until the change is applied on all nodes
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Cluster name (default: `scope` from the configuration)
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,
    /// Output format
    #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Args)]
pub struct RemoveArgs {
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: String,
    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,
    /// Output format
    #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Args)]
pub struct DsnArgs {
    /// Cluster name (default: `scope` from the configuration)
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,
    /// Give a dsn of any member with this role
    #[arg(short = 'r', long, value_enum)]
    pub role: Option<RoleArg>,
    /// Generate a dsn for this member
    #[arg(short = 'm', long, value_name = "MEMBER")]
    pub member: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// Cluster name (default: `scope` from the configuration)
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,
    /// Output format (pretty, tsv, json, yaml)
    #[arg(long = "format", value_enum, default_value = "tsv")]
    pub format: OutputFormat,
    /// Execute the SQL commands from this file
    #[arg(short = 'f', long = "file", value_name = "FILENAME")]
    pub file: Option<String>,
    /// force password prompt
    #[arg(long)]
    pub password: bool,
    /// database user name
    #[arg(short = 'U', long = "username", value_name = "USERNAME")]
    pub username: Option<String>,
    #[command(flatten)]
    pub watch: WatchArgs,
    /// The role of the query
    #[arg(short = 'r', long, value_enum)]
    pub role: Option<RoleArg>,
    /// Query a specific member
    #[arg(short = 'm', long, value_name = "MEMBER")]
    pub member: Option<String>,
    /// The column delimiter
    #[arg(long, default_value = "\t")]
    pub delimiter: String,
    /// The SQL commands to execute
    #[arg(short = 'c', long = "command", value_name = "COMMAND")]
    pub command: Option<String>,
    /// database name to connect to
    #[arg(short = 'd', long = "dbname", value_name = "DBNAME")]
    pub dbname: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushTarget {
    Restart,
    Switchover,
}

#[derive(Debug, Clone, Args)]
pub struct FlushArgs {
    /// CLUSTER_NAME [MEMBER_NAMES]... {restart|switchover}
    #[arg(value_name = "ARGS", num_args = 2.., required = true)]
    pub positional: Vec<String>,
    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,
    /// Flush only members with this role
    #[arg(short = 'r', long, value_enum, default_value = "any")]
    pub role: RoleArg,
    /// Do not ask for confirmation at any point
    #[arg(long)]
    pub force: bool,
}

impl FlushArgs {
    pub fn cluster_name(&self) -> &str {
        &self.positional[0]
    }

    /// The members between the cluster name and the target.
    pub fn member_names(&self) -> Vec<String> {
        let n = self.positional.len();
        self.positional[1..n.saturating_sub(1).max(1)].to_vec()
    }

    /// The last argument: what to flush.
    pub fn target(&self) -> Result<FlushTarget, String> {
        let last = self
            .positional
            .last()
            .map(String::as_str)
            .unwrap_or_default();
        match last {
            "restart" => Ok(FlushTarget::Restart),
            "switchover" => Ok(FlushTarget::Switchover),
            other => Err(format!(
                "Invalid value for '{{restart|switchover}}': '{other}' is not one of 'restart', 'switchover'."
            )),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct DemoteClusterArgs {
    /// Cluster name (default: `scope` from the configuration)
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Do not ask for confirmation at any point
    #[arg(long)]
    pub force: bool,
    /// Address of the remote node
    #[arg(long)]
    pub host: Option<String>,
    /// Port of the remote node
    #[arg(long)]
    pub port: Option<u16>,
    /// Command to restore WAL records from the remote primary
    #[arg(long = "restore-command")]
    pub restore_command: Option<String>,
    /// Name of the slot on the remote node to use for replication
    #[arg(long = "primary-slot-name")]
    pub primary_slot_name: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct PromoteClusterArgs {
    /// Cluster name (default: `scope` from the configuration)
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Do not ask for confirmation at any point
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct HaproxyConfigArgs {
    /// Cluster name (default: `scope` from the configuration)
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Port of the read-write listener (checks `/primary`)
    #[arg(long, default_value_t = 5000, value_name = "PORT")]
    pub primary_port: u16,
    /// Port of the read-only listener (checks `/replica`)
    #[arg(long, default_value_t = 5001, value_name = "PORT")]
    pub replica_port: u16,
    /// Port of the HAProxy statistics page
    #[arg(long, default_value_t = 7000, value_name = "PORT")]
    pub stats_port: u16,
    /// Address the listeners bind to
    #[arg(long, default_value = "*", value_name = "ADDRESS")]
    pub bind: String,
    /// Time between two health checks of a server (HAProxy time: 3s, 500ms, ...)
    #[arg(long, default_value = "3s", value_name = "TIME")]
    pub inter: String,
    /// Failed checks before a server is taken out
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub fall: u32,
    /// Passed checks before a server is put back
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub rise: u32,
    /// Connection limit per server
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub maxconn: u32,
    /// HTTP method of the health checks
    #[arg(long, value_enum, default_value = "options")]
    pub check_method: crate::haproxy::CheckMethod,
    /// Leave out replicas lagging more than this (`/replica?lag=LAG`, e.g. 16MB)
    #[arg(long, value_name = "LAG")]
    pub replica_lag: Option<String>,
    /// Add a `stats socket` at this path to the global section
    #[arg(long, value_name = "PATH")]
    pub stats_socket: Option<String>,
    /// Health checks over TLS (`check-ssl verify none`) on every server, not only on members
    /// whose api_url is https
    #[arg(long)]
    pub ssl: bool,
    /// PEM file with the client certificate and its key that HAProxy presents in TLS health
    /// checks (`crt`), for members with `restapi.verify_client: required`
    #[arg(long, value_name = "PEM")]
    pub check_cert: Option<String>,
    /// CA file HAProxy verifies the members' REST certificates with in TLS health checks
    /// (`verify required ca-file`) instead of `verify none`
    #[arg(long, value_name = "PEM")]
    pub check_ca: Option<String>,
    /// Citus group
    #[arg(long)]
    pub group: Option<i64>,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionArgs {
    /// The shell to complete in
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
#[command(after_long_help = DRILL_AFTER_HELP)]
pub struct DrillArgs {
    /// The lab directory (PGHA_LAB_DIR of `scripts/cluster.sh up`)
    #[arg(long, value_name = "DIR", required_unless_present = "config")]
    pub lab: Option<std::path::PathBuf>,

    /// Instead of a lab: a node's configuration file (pgha's or Patroni's), once per node of a
    /// test cluster running on this host; its agent is the process whose command line names it
    #[arg(long = "config", value_name = "FILE", conflicts_with = "lab")]
    pub config: Vec<std::path::PathBuf>,

    /// With --config: the shell command that starts one node's agent again ({name}, {index}
    /// and {config} are filled in); without it, drills that restart an agent are not run
    #[arg(long, value_name = "CMD", requires = "config")]
    pub start_command: Option<String>,

    /// With --config: the PID of an etcd member of the cluster's DCS on this host, once per
    /// member; the etcd drills need them
    #[arg(long = "etcd-pid", value_name = "PID", requires = "config")]
    pub etcd_pid: Vec<i32>,

    /// The node the faults hit: before each drill it is made the leader by a switchover when
    /// it is not (default: whichever node leads)
    #[arg(long, value_name = "NODE")]
    pub target: Option<String>,

    /// Drills to run, comma-separated [default: all, in the order below]
    #[arg(long, value_enum, value_delimiter = ',', value_name = "DRILL,...")]
    pub drills: Vec<crate::commands::Drill>,

    /// Run the drills this many times (with --random: this many drills drawn from them)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,

    /// Draw the schedule at random (printed, with its seed)
    #[arg(long)]
    pub random: bool,

    /// Seed of the random schedule: the same seed gives the same schedule
    #[arg(long, requires = "random")]
    pub seed: Option<u64>,

    /// Milliseconds between two of the writer's INSERTs
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub write_interval_ms: u64,

    /// Seconds the cluster may take to be healthy again after a fault
    #[arg(long, default_value_t = 120, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub healthy_timeout: u64,

    /// Print the results as JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

const DRILL_AFTER_HELP: &str = "\
Each drill waits for a healthy cluster, starts a writer (one INSERT per interval through the \
node whose REST API answers /primary, every acknowledged id recorded) and a probe (a write on \
every node every 100 ms), inflicts the fault on the leader, undoes it, waits until the cluster \
is healthy again (a leader, every replica streaming, a synchronous standby in synchronous \
mode), then looks for every acknowledged id on the new primary.

Columns: Write gap = longest time without an acknowledged write from the fault on; Lost = \
acknowledged rows missing on the new primary; Overlap = longest time two nodes were both \
provably writable; Healthy after = from the fault to a healthy cluster. A drill is safe when \
nothing is lost, there is no overlap and the cluster is healthy within --healthy-timeout; the \
exit status is 1 when any drill is UNSAFE.";
