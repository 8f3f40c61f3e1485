use pgha_types::{Cluster, ClusterPolicy};

/// What the DCS looked like this cycle.
#[derive(Debug, Clone, PartialEq)]
pub enum DcsView {
    Reachable(Box<Cluster>),
    /// The read failed after retrying for `retry_timeout`.
    Unreachable(String),
}

/// Outcome of the leader-lock renewal the driver attempts first thing in a cycle whenever the
/// DCS names this member as leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockRenewal {
    /// The lock does not name us; nothing was attempted.
    NotHeld,
    Renewed,
    /// The lock named us but renewing it failed (DCS error or the key changed under us).
    Failed,
}

/// What the data directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalPg {
    /// Missing or empty: the node has to bootstrap or clone.
    Empty,
    Initialized {
        system_id: String,
        process: PgProcess,
        /// From pg_controldata; read while postgres is stopped.
        control: Option<ControlSummary>,
    },
    /// Something that is not a PostgreSQL data directory; the agent must not touch it.
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgProcess {
    Stopped,
    /// A postmaster runs but does not accept connections yet (startup, crash recovery).
    NotReady,
    Running(PgRunning),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgRunning {
    pub in_recovery: bool,
    pub timeline: u32,
    /// Primary: current WAL insert position. Replica: the furthest of received and replayed.
    pub wal_position: u64,
    /// Replica: the WAL receiver is streaming.
    pub streaming: bool,
    /// A changed setting waits for a restart.
    pub pending_restart: bool,
    /// server_version_num, e.g. 150018.
    pub server_version: u32,
    /// Replica: shared-memory settings this standby runs below the values its primary now
    /// runs with (replayed into its control file). PostgreSQL pauses replay until the standby
    /// restarts with at least the primary's values.
    pub below_primary: Vec<SettingBelowPrimary>,
    /// Primary: the standbys connected to it (`pg_stat_replication`).
    pub standbys: Vec<StandbyConn>,
    /// Replica that is not streaming: its own timeline history (`pg_wal/<TLI>.history` of its
    /// timeline: each earlier timeline and the position where it ended); empty otherwise.
    pub history: Vec<(u32, u64)>,
}

/// A row of the primary's `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyConn {
    /// `application_name`: the member name for pgha and Patroni standbys.
    pub name: String,
    /// `state`: `streaming`, `catchup`, ...
    pub state: String,
    /// `sync_state`: `async`, `potential`, `sync`, `quorum`.
    pub sync_state: String,
    /// `flush_lsn` (0 when not reported).
    pub flush_lsn: u64,
}

/// A shared-memory setting (max_connections, max_wal_senders, ...) a standby runs below its
/// primary's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingBelowPrimary {
    pub name: String,
    pub standby: i64,
    pub primary: i64,
}

/// The parts of pg_controldata the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSummary {
    /// The cluster state says it last ran as a primary ("in production" after a crash, or
    /// "shut down" after a clean stop) rather than as a standby.
    pub was_primary: bool,
    pub clean_shutdown: bool,
    pub timeline: u32,
    pub lsn: u64,
}

/// A peer's answer to `GET /patroni` during the leader race.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub name: String,
    /// None: the peer did not answer in time.
    pub reply: Option<PeerReply>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReply {
    pub running: bool,
    pub is_primary: bool,
    pub wal_position: u64,
    pub nofailover: bool,
    /// Its `failover_priority` (0 with `nofailover`, 1 by default).
    pub failover_priority: i64,
    pub timeline: u32,
}

/// Long actions run outside the loop so it keeps renewing or giving up the lock meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobKind {
    /// initdb, start, create roles, post_bootstrap: the node won the bootstrap race.
    Bootstrap,
    /// A standby cluster's first member: clone the remote primary of `standby_cluster` and
    /// start as the standby leader.
    BootstrapStandby,
    /// Create a replica with `create_replica_methods`, from a running member, or with no
    /// source at all (`None`: only methods marked `no_leader` run, e.g. a restore from a
    /// backup while the cluster has no leader).
    Clone {
        from: Option<String>,
        /// `reinit --from-leader`: pg_basebackup only, whatever the configured methods.
        basebackup_only: bool,
    },
    /// Start postgres as a primary or as a replica of `leader` (None: read-only, no upstream).
    Start {
        role: Role,
    },
    /// A former primary rejoining: crash recovery if needed, then pg_rewind (or a fresh clone
    /// when allowed) if its history diverged from the leader's, then start as its replica.
    Rejoin {
        leader: String,
    },
    Promote,
    /// Stop cleanly and start again in the same role; a leader keeps its lock meanwhile.
    Restart {
        role: Role,
    },
}

impl JobKind {
    /// It starts postgres as the primary (a start or restart in that role).
    pub fn starts_primary(&self) -> bool {
        matches!(
            self,
            JobKind::Start {
                role: Role::Primary
            } | JobKind::Restart {
                role: Role::Primary
            }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub kind: JobKind,
    /// Unix ms when it began.
    pub started_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    pub kind: JobKind,
    pub ok: bool,
    pub message: String,
    /// A promotion the `pre_promote` script refused (non-zero exit): postgres was not touched.
    pub refused_by_pre_promote: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica {
        leader: Option<String>,
    },
    /// The leader of a standby cluster: read-only, replicating from the remote primary of
    /// `standby_cluster`.
    StandbyLeader,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Clean shutdown: every WAL record reaches the streaming replicas.
    Fast,
    /// No checkpoint; used when another node may already be writable.
    Immediate,
}

/// Everything the agent knows at the start of a cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Unix milliseconds.
    pub now: u64,
    pub me: String,
    /// The member may not promote: `nofailover`, or `failover_priority` 0.
    pub nofailover: bool,
    /// The member's `failover_priority`: among equally advanced candidates the higher wins.
    pub failover_priority: i64,
    /// The member's `replicatefrom` tag: stream from that member instead of the leader.
    pub replicatefrom: Option<String>,
    /// One of `create_replica_methods` can create a replica without a leader (`no_leader`).
    pub clone_without_leader: bool,
    pub dcs: DcsView,
    pub policy: ClusterPolicy,
    pub lock: LockRenewal,
    pub local: LocalPg,
    pub job: Option<Job>,
    /// A job that finished since the previous cycle.
    pub finished: Option<JobOutcome>,
    /// Answers of the other members; filled only when a previous decision asked for them.
    pub peers: Option<Vec<PeerStatus>>,
    /// An operator's request for this node (REST API, or a scheduled restart that is due).
    pub request: Option<AdminRequest>,
    /// Whether leading needs, or could use, the watchdog, and whether it can be had.
    pub watchdog: WatchdogView,
    /// failsafe_mode: the `failsafe` key, answers to our `POST /failsafe`, a leader's ping.
    pub failsafe: crate::FailsafeObs,
    /// The leader whose PostgreSQL and REST ports refuse connections for us and for every other
    /// member (the adapter's proof that it is dead; see the agent's `dead_leader`).
    pub dead_leader: Option<String>,
    /// `postgresql.remove_data_directory_on_diverged_timelines`: a replica whose WAL diverged
    /// from the leader's in a way no rewind fixes may remove its data directory and clone again.
    pub reclone_on_divergence: bool,
}

/// The watchdog as the decision sees it (`watchdog.mode` and what the device allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchdogView {
    /// `mode: off`: nothing to activate.
    Off,
    /// `automatic`: activated when leading, never in the way of leading.
    Automatic,
    /// `required` and usable as far as the agent can tell (or already running).
    Required,
    /// `required`, but the device cannot be used: this node must not lead. The reason names
    /// the key or device at fault.
    Unusable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    Restart(RestartRequest),
    Reinitialize { from_leader: bool },
}

/// A restart and the conditions it is subject to (Patroni's `/restart` filters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartRequest {
    /// Only if the node runs in this role (`primary`/`master`/`replica`).
    pub role: Option<String>,
    /// Only if a setting waits for a restart.
    pub pending_only: bool,
    /// Only if the server's version (server_version_num) is below this one.
    pub below_version: Option<u32>,
}

/// How the core answers an operator's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer now with this HTTP status and text.
    Now(u16, String),
    /// The job started by this decision answers when it finishes.
    WhenJobEnds,
}

/// What the core remembers between cycles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaState {
    /// We held the leader lock at the end of the last cycle.
    pub has_lock: bool,
    /// How we last configured postgres (None: unknown, e.g. after the agent restarted).
    pub configured_as: Option<Role>,
    /// Unix ms when we began starting postgres as a primary while holding the lock.
    pub primary_start_began: Option<u64>,
    /// This node ran as a primary without the lock (demoted, or found so at start): before it
    /// follows a leader, its WAL must be checked against the leader's history.
    pub needs_rejoin: bool,
    /// Stopped by a switchover or manual failover: postgres is started again as a replica of
    /// the new leader even while the cluster is paused (Patroni's graceful demotion follows the
    /// new leader at once), where a postgres found stopped otherwise stays stopped.
    pub restart_after_demote: bool,
    /// Unix ms since when our running primary has not answered the probe.
    pub unresponsive_since: Option<u64>,
    /// Unix ms since when our replica, not streaming, holds WAL past the point where the
    /// leader's history says our timeline ended.
    pub diverged_since: Option<u64>,
    /// Unix ms since when this replica has not streamed from a leader that runs on its
    /// timeline (see `STUCK_GRACE_MS`).
    pub stuck_since: Option<u64>,
    /// The last stop for being cut off led to a rejoin (no streaming since): being cut off
    /// again means a divergence no rewind can see.
    pub stuck_rejoined: bool,
    /// The highest timeline our running replica streamed on since postgres started: once the
    /// walreceiver stops, the probe only shows the control file's (possibly older) timeline.
    pub streamed_timeline: Option<u32>,
    /// The next clone must come from the leader, not a `clonefrom` member (reinit --from-leader).
    pub clone_from_leader: bool,
    /// Bootstraps of a new cluster that failed in a row for the same cause, and that cause.
    pub bootstrap_failures: u32,
    pub bootstrap_failure_cause: Option<String>,
    /// The leader seen most recently: when it is gone, its priority does not hold back the race.
    pub last_leader: Option<String>,
    /// Unix ms until which this node stays out of the leader race: its `pre_promote` script
    /// refused a promotion and it gave the lock back, so another member gets a turn.
    pub race_backoff_until: Option<u64>,
    /// Synchronous mode: the `synchronous_standby_names` the primary runs with, set by the
    /// leader (None: the user's own setting).
    pub synchronous_standby_names: Option<String>,
    /// The primary's WAL position seen in the first cycle that ran with the current
    /// `synchronous_standby_names`: a standby that has flushed this far has every commit
    /// acknowledged under the previous setting too.
    pub synchronous_since_lsn: Option<u64>,
    /// Quick cycles spent waiting for a new synchronous standby to be confirmed; bounded so a
    /// standby that never confirms costs one cycle per `loop_wait` again.
    pub sync_rechecks: u32,
    /// failsafe_mode: this primary runs without the DCS because every member confirmed.
    pub failsafe_active: bool,
    /// The leader's memory of members (name → unix ms last seen in the DCS), for
    /// `member_slots_ttl`: a departed member's slot stays that long. None until this node
    /// leads (it then starts from the previous leader's `status.retain_slots`).
    pub member_seen: Option<std::collections::BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Race for `initialize`; on success the next action runs, otherwise the list stops.
    TakeInitializeLock,
    /// Remove our empty claim on `initialize` after a failed bootstrap.
    CancelInitialization,
    /// The leader race: create `leader` if absent. The list stops if we lose.
    AcquireLock,
    ReleaseLock,
    /// Open the watchdog (if it is not open yet) before leading. Fails, ending the list, when
    /// `watchdog.mode` is `required` and the device cannot be activated.
    ActivateWatchdog,
    /// Ask every other member for `GET /patroni` and decide again with the answers.
    ProbePeers,
    StartJob(JobKind),
    /// Stop postgres (a demotion: the next cycles start it again as a replica).
    Stop {
        mode: StopMode,
    },
    /// SIGKILL postgres, the postmaster and every backend (a hung or stopped server ignores
    /// anything gentler), and wait until they are gone. The list stops when that fails: the
    /// lock is not given up while our postgres might still commit.
    KillPostgres,
    /// Remove `leader`'s key while it still is the one observed (same lease): its death is
    /// proven, no need to wait for the lease. The next cycle races for the lock.
    RemoveDeadLeader {
        leader: String,
        lease: i64,
    },
    /// Point a running replica at `leader`: rewrite primary_conninfo and reload.
    Follow {
        leader: String,
    },
    /// Remove the contents of the data directory (failed clone or bootstrap).
    RemoveDataDirectory,
    /// Make the local replication slots match: member slots, permanent slots, `ignore_slots`.
    SyncSlots(crate::SlotTargets),
    WriteStatus,
    UpdateHistory,
    /// The leader restores `initialize` (its system identifier) when someone removed it.
    SetInitialize(String),
    /// Empty the `failover` key (switchover done, impossible, or aimed at someone else).
    ClearFailover,
    /// Render postgresql.conf for the current role; if it changed, write it and reload.
    ApplyConfig {
        role: Role,
    },
    /// The leader stores its local `bootstrap.dcs` as the dynamic configuration when the
    /// cluster has none (e.g. an existing postgres adopted into a fresh DCS).
    WriteInitialConfig,
    /// Synchronous mode: write the `sync` key naming us as leader and these standbys.
    WriteSyncKey {
        standbys: Vec<String>,
        /// Quorum mode: how many other voters a candidate must see; 0 otherwise.
        quorum: u64,
    },
    /// Synchronous mode was switched off: remove the `sync` key.
    DeleteSyncKey,
    /// failsafe_mode: send `POST /failsafe` to every other member of the `failsafe` key and
    /// decide again with the answers.
    PostFailsafe,
    /// failsafe_mode: write the `failsafe` key (member name → api_url).
    WriteFailsafe(std::collections::BTreeMap<String, String>),
    /// Refuse to continue: the agent exits with this CRITICAL message.
    Exit(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub actions: Vec<Action>,
    /// The answer to `Observation::request`, if there was one.
    pub reply: Option<Reply>,
    /// The INFO line for this cycle, in the words operators grep for.
    pub message: String,
    pub next: HaState,
    /// Run the next cycle after `RECHECK_SOON_MS`, not `loop_wait`: a step in progress (a
    /// synchronous standby being confirmed) completes in a fraction of a loop.
    pub recheck_soon: bool,
}

/// The pause before the next cycle when a decision asks to recheck soon.
pub const RECHECK_SOON_MS: u64 = 200;
