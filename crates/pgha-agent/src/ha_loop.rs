//! The HA loop driver: observe → decide (pgha-core) → execute → publish, every `loop_wait`
//! seconds or sooner when the DCS watch sees the leader key change.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgha_api::{LocalAnswer, NodeStatus};
use pgha_config::Config;
use pgha_core::{
    decide, Action, ControlSummary, DcsView, Decision, HaState, Job, JobKind, JobOutcome, LocalPg,
    LockRenewal, Observation, PgProcess, PgRunning, Reply, Role, SettingBelowPrimary, StopMode,
    WatchdogView,
};
use pgha_dcs::{DcsError, EtcdDcs};
use pgha_postgres::{DataDirState, LocalPostgres};
use pgha_types::{Cluster, ClusterPolicy, MemberData};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::admin::Pending;
use crate::callbacks::Callbacks;
use crate::jobs::{self, JobCtx};
use crate::logging::CRITICAL_FIELD;
use crate::publish::{member_data, node_status, LocalFacts, StatusInputs};
use crate::settings::{dynamic_config, effective_policy, server_config};
use crate::watchdog::Watchdog;
use crate::{execute, peers};

mod requests;
pub use requests::ScheduledRestart;

struct RunningJob {
    job: Job,
    handle: JoinHandle<Result<String, jobs::JobFailure>>,
}

pub struct Agent {
    pub(crate) cfg: Arc<Config>,
    pub(crate) dcs: Arc<EtcdDcs>,
    pub(crate) pg: Arc<LocalPostgres>,
    pub(crate) http: reqwest::Client,
    pub(crate) state: HaState,
    pub(crate) policy: ClusterPolicy,
    policy_warnings: Vec<String>,
    job: Option<RunningJob>,
    finished: Option<JobOutcome>,
    status_tx: watch::Sender<Arc<NodeStatus>>,
    pub(crate) wake: Arc<Notify>,
    /// Set while this node waits for another member (to bootstrap, to run, to stream): then
    /// member key changes wake the loop too.
    wake_on_members: Arc<AtomicBool>,
    last_member: Option<MemberData>,
    dcs_last_seen: Option<i64>,
    /// The role postgres last ran as, reported while it is down.
    last_role: Option<&'static str>,
    system_id: Option<String>,
    dcs_errors: Vec<String>,
    pub(crate) last_probe: Option<pgha_postgres::Probe>,
    /// As a replica: (timeline, replay position) the last probe saw; a rejoin after a stop
    /// compares it with the leader's history, as pg_controldata may not show how far the
    /// replay went.
    last_replay: Option<(u32, u64)>,
    /// Slot upkeep lines logged in the previous cycle: a lasting problem is logged once.
    pub(crate) slot_notes: std::collections::BTreeSet<String>,
    /// When each logical slot was last copied from the primary, and the state copied (a copy
    /// restarts postgres).
    pub(crate) slot_copies: std::collections::HashMap<String, (std::time::Instant, Vec<u8>)>,
    config_path: Option<PathBuf>,
    requests: mpsc::Receiver<Pending>,
    loop_wait_shared: Arc<AtomicU64>,
    /// The HTTP handler waiting for the running job (a restart) to finish.
    pending_reply: Option<oneshot::Sender<LocalAnswer>>,
    /// The last decision asked for a quick next cycle (a step completing within a loop).
    recheck_soon: bool,
    pub(crate) scheduled_restart: Option<ScheduledRestart>,
    /// Reload postgres at the next config check even if postgresql.conf did not change.
    pub(crate) force_reload: bool,
    /// Postmaster command-line settings that differ from what runs: a restart is pending.
    pub(crate) cmdline_pending: Vec<(String, Option<String>, Option<String>)>,
    /// The configuration last applied and the start time of the postmaster it was applied to:
    /// while both stay the same there is nothing to write (checked every loop).
    pub(crate) applied_config: Option<(pgha_postgres::ServerConfig, Option<String>)>,
    stats: pgha_api::LoopStats,
    /// The dynamic configuration last saved as patroni.dynamic.json.
    pub(crate) saved_dynamic: Option<pgha_types::DynamicConfig>,
    /// The user's `postgresql.callbacks`, told of every start, stop, restart, reload and
    /// role change.
    pub(crate) callbacks: Callbacks,
    /// Armed while this node leads; reset by every cycle that renews the lock.
    pub(crate) watchdog: Watchdog,
    /// The watchdog as last shown to the decision, to log a change once.
    watchdog_view: WatchdogView,
    /// Leaders' `POST /failsafe` pings, shared with the REST API.
    pub(crate) failsafe_memory: Arc<pgha_api::FailsafeMemory>,
    /// The `failsafe` key as last read or written; kept while the DCS is down.
    pub(crate) failsafe_key: Option<std::collections::BTreeMap<String, String>>,
    /// When our lease (and with it the leader key) was last renewed.
    lease_renewed_at: Option<std::time::Instant>,
    /// When we last sent `POST /failsafe` pings that every member accepted.
    failsafe_confirmed_at: Option<std::time::Instant>,
    /// The same moment on the lease guard's clock (boottime ms).
    failsafe_confirmed_boot: Option<u64>,
    /// Kills our postgres when the leader lease runs out unrenewed, even with this process
    /// frozen; armed while this node leads.
    pub(crate) lease_guard: crate::lease_guard::LeaseGuard,
    /// The leader whose ports refused our connections in the last cycle (`GET
    /// /leader-refusing`).
    leader_refusing: Option<String>,
    /// The leader's REST address for `dead_leader::watch_leader`.
    leader_watch: crate::dead_leader::WatchTarget,
    /// Quick cycles spent waiting for the other members to confirm a refusing leader.
    refusing_rechecks: u32,
    /// Run the next cycle soon: the others have not confirmed a refusing leader yet.
    recheck_refusing: bool,
}

/// Everything the agent is wired to.
pub struct Wiring {
    pub cfg: Arc<Config>,
    pub config_path: Option<PathBuf>,
    pub dcs: Arc<EtcdDcs>,
    pub pg: Arc<LocalPostgres>,
    pub status_tx: watch::Sender<Arc<NodeStatus>>,
    pub requests: mpsc::Receiver<Pending>,
    pub wake: Arc<Notify>,
    pub loop_wait: Arc<AtomicU64>,
    pub failsafe: Arc<pgha_api::FailsafeMemory>,
    /// To the other members' REST APIs (see `peers::http_client`).
    pub http: reqwest::Client,
}

/// Why the loop ended.
pub enum Exit {
    /// SIGTERM/SIGINT: postgres was stopped and the lock released.
    Shutdown,
    /// A condition that must not be acted on automatically; the CRITICAL line is logged.
    Critical,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Agent {
    pub fn new(w: Wiring) -> Agent {
        let Wiring {
            cfg,
            config_path,
            dcs,
            pg,
            status_tx,
            requests,
            wake,
            loop_wait,
            failsafe,
            http,
        } = w;
        let (policy, policy_warnings) = effective_policy(&cfg, &dynamic_config(&cfg, None));
        let callbacks = Callbacks::new(&cfg.postgresql.callbacks, &cfg.scope);
        Agent {
            dcs,
            pg,
            http,
            state: HaState::default(),
            policy,
            policy_warnings,
            job: None,
            finished: None,
            status_tx,
            wake,
            wake_on_members: Arc::new(AtomicBool::new(true)),
            last_member: None,
            dcs_last_seen: None,
            last_role: None,
            system_id: None,
            dcs_errors: Vec::new(),
            last_probe: None,
            last_replay: None,
            slot_notes: Default::default(),
            slot_copies: Default::default(),
            config_path,
            requests,
            loop_wait_shared: loop_wait,
            pending_reply: None,
            recheck_soon: false,
            scheduled_restart: None,
            force_reload: false,
            cmdline_pending: Vec::new(),
            applied_config: None,
            stats: pgha_api::LoopStats::default(),
            saved_dynamic: None,
            callbacks,
            watchdog: Watchdog::new(&cfg.watchdog),
            watchdog_view: WatchdogView::Off,
            failsafe_memory: failsafe,
            failsafe_key: None,
            lease_renewed_at: None,
            failsafe_confirmed_at: None,
            failsafe_confirmed_boot: None,
            leader_refusing: None,
            leader_watch: Default::default(),
            refusing_rechecks: 0,
            recheck_refusing: false,
            lease_guard: crate::lease_guard::LeaseGuard::new(
                &cfg.lease_guard,
                &cfg.postgresql.data_dir,
            ),
            cfg,
        }
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Exit {
        for w in &self.policy_warnings {
            warn!("{w}");
        }
        let _watch = self
            .dcs
            .watch(self.wake.clone(), self.wake_on_members.clone());
        let leader_watch =
            crate::dead_leader::watch_leader(self.leader_watch.clone(), self.wake.clone());
        let _stop_leader_watch = AbortOnDrop(leader_watch);
        loop {
            if *shutdown.borrow() {
                self.shutdown().await;
                return Exit::Shutdown;
            }
            let started = std::time::Instant::now();
            if self.cycle().await.is_some() {
                return Exit::Critical;
            }
            let loop_wait = if self.recheck_soon {
                Duration::from_millis(pgha_core::RECHECK_SOON_MS)
            } else {
                Duration::from_secs(self.policy.loop_wait)
            };
            let wait = loop_wait.saturating_sub(started.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => debug!("woken by a DCS change"),
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One HA cycle. Returns a CRITICAL message when the agent must stop.
    async fn cycle(&mut self) -> Option<String> {
        self.reap_job().await;
        let (mut request, reply_to) = self.take_request();
        if request.is_none() && reply_to.is_none() {
            request = self.due_scheduled_restart().await;
        }
        let cycle_started = std::time::Instant::now();
        let session = self.keep_session().await;
        if matches!(session, Session::Renewed) {
            self.lease_renewed_at = Some(cycle_started);
        }
        let read_started = std::time::Instant::now();
        let read = match &session {
            // etcd's quorum renewed our lease just now: the watch-fed view is good enough.
            Session::Renewed => self.dcs.load_cluster_cached().await,
            // Down for the whole retry budget already: reading would only wait that long again.
            Session::Failed(e) if e.is_unreachable() => Err(e.clone()),
            _ => self.dcs.load_cluster().await,
        };
        self.stats.dcs_read_seconds = read_started.elapsed().as_secs_f64();
        if read.is_err() {
            self.stats.dcs_errors_total += 1;
        }
        let dcs_view = match read {
            Ok(c) => {
                self.dcs_last_seen = Some((now_ms() / 1000) as i64);
                self.failsafe_key = c.failsafe.clone();
                // Garbage stays until someone fixes it: say so once, not every second.
                if c.errors != self.dcs_errors {
                    for e in &c.errors {
                        warn!("ignoring unreadable DCS key: {e}");
                    }
                    self.dcs_errors = c.errors.clone();
                }
                DcsView::Reachable(Box::new(c))
            }
            Err(e) => DcsView::Unreachable(e.to_string()),
        };
        let raw_cluster = match &dcs_view {
            DcsView::Reachable(c) => Some(c.as_ref().clone()),
            DcsView::Unreachable(_) => None,
        };
        if let (Some(c), Ok(mut target)) = (&raw_cluster, self.leader_watch.lock()) {
            *target = crate::dead_leader::watch_target(c, &self.cfg.name);
        }
        let mut cluster = raw_cluster.clone();
        if let Some(c) = &raw_cluster {
            self.refresh_policy(c);
        }
        let lock = self.renew_lock(cluster.as_ref(), session).await;
        if lock == LockRenewal::Renewed {
            // Only a loop that runs and still holds the lock keeps the machine alive.
            self.watchdog.keepalive(self.policy.ttl);
            if let Some(t) = self.dcs.lease_renewed_boot_ms() {
                let margin = self.lease_guard.margin_ms();
                self.lease_guard
                    .extend(pgha_core::guard_deadline(t, self.policy.ttl, margin));
            }
        }
        let local = self.observe_local().await;
        if self.job.is_none() {
            self.tell_callbacks(&local);
        }
        let mut obs = Observation {
            now: now_ms(),
            me: self.cfg.name.clone(),
            nofailover: pgha_types::nofailover_of(&self.cfg.tags),
            failover_priority: pgha_types::failover_priority_of(&self.cfg.tags),
            replicatefrom: pgha_types::replicatefrom_of(&self.cfg.tags).map(str::to_string),
            clone_without_leader: self.cfg.postgresql.can_create_replica_without_leader(),
            dcs: dcs_view,
            policy: self.policy.clone(),
            lock,
            local,
            job: self.job.as_ref().map(|j| j.job.clone()),
            finished: self.finished.take(),
            peers: None,
            request,
            watchdog: self.observe_watchdog(),
            failsafe: self.failsafe_obs(),
            dead_leader: None,
            reclone_on_divergence: self
                .cfg
                .postgresql
                .remove_data_directory_on_diverged_timelines,
        };
        obs.dead_leader = self.prove_leader_dead(&obs).await;
        // failsafe_mode: a leader that pinged us within ttl still leads, whatever the DCS says
        // about an expired key.
        let effective = match &obs.dcs {
            DcsView::Reachable(c) => pgha_core::failsafe::effective_cluster(&obs, c),
            DcsView::Unreachable(_) => None,
        };
        if let Some(eff) = effective {
            debug!(
                "failsafe mode: {:?} pinged us within ttl; following it as the leader",
                eff.leader_name()
            );
            obs.dcs = DcsView::Reachable(Box::new(eff.clone()));
            cluster = Some(eff);
        }
        let mut decision = decide(&self.state, &obs);
        if decision.actions.first() == Some(&Action::ProbePeers) {
            info!("{}", decision.message);
            if let Some(c) = &cluster {
                let timeout = Duration::from_secs(2);
                let extra = pgha_core::failsafe::extra_race_peers(
                    self.policy.failsafe_mode,
                    c,
                    &self.cfg.name,
                );
                obs.peers =
                    Some(peers::probe_peers(&self.http, c, &self.cfg.name, extra, timeout).await);
                decision = decide(&self.state, &obs);
            }
        }
        if decision.actions.first() == Some(&Action::PostFailsafe) {
            info!("{}", decision.message);
            obs.failsafe.replies = Some(self.post_failsafe().await);
            decision = decide(&self.state, &obs);
        }
        // A race's message ("promoted self to leader by acquiring session lock") is only true
        // once the lock is ours, so it is logged after the attempt.
        let races = decision.actions.contains(&Action::AcquireLock);
        let exits = matches!(decision.actions.first(), Some(Action::Exit(_)));
        if !races && !exits {
            info!("{}", decision.message);
        }
        self.answer(decision.reply.clone(), reply_to);
        let critical = self.execute(&decision, &obs, cluster.as_ref()).await;
        if critical.is_some() {
            return critical;
        }
        self.disarm_watchdog_unless_leading();
        let starting_primary = self
            .job
            .as_ref()
            .is_some_and(|j| j.job.kind.starts_primary());
        self.update_lease_guard(starting_primary);
        if let Some(c) = &cluster {
            self.save_dynamic_cache(c, &obs.local);
        }
        if races && self.state.has_lock {
            info!("{}", decision.message);
        }
        if decision.reply == Some(Reply::WhenJobEnds) && self.job.is_none() {
            // The action that was to start the job failed.
            if let Some(tx) = self.pending_reply.take() {
                let _ = tx.send(LocalAnswer {
                    status: 503,
                    text: "restart failed".into(),
                });
            }
        }
        self.stats.cycles_total += 1;
        self.stats.last_decision = decision.message.clone();
        self.stats.last_cycle_seconds = cycle_started.elapsed().as_secs_f64();
        // The REST API refuses leaders' pings while we hold (or race for) the key.
        self.failsafe_memory.set_claimed(self.state.has_lock);
        if self.state.has_lock && !self.state.failsafe_active {
            self.failsafe_memory.forget();
        }
        self.publish(raw_cluster.as_ref(), &obs).await;
        self.wake_on_members
            .store(!self.settled(&obs.local), Ordering::Relaxed);
        None
    }

    fn observe_watchdog(&mut self) -> WatchdogView {
        let view = self
            .watchdog
            .view(self.policy.ttl, self.policy.loop_wait, now_ms());
        if view != self.watchdog_view {
            if let WatchdogView::Unusable(why) = &view {
                warn!("watchdog.mode is required and the watchdog is not usable, so this node will not lead: {why}");
            }
            self.watchdog_view = view.clone();
        }
        view
    }

    /// The watchdog runs only while we hold the lock and the cluster is not paused. Without
    /// the lock it stays armed (and unfed) while postgres may still run as a primary, e.g.
    /// after a demotion whose stop failed: then the reset fences it.
    fn disarm_watchdog_unless_leading(&mut self) {
        if !self.watchdog.is_running() {
            return;
        }
        let primary_may_run =
            self.pg.postmaster_pid().is_some() && self.last_role == Some("primary");
        if self.policy.pause || (!self.state.has_lock && !primary_may_run) {
            self.watchdog.disable();
        }
    }

    /// Arms the lease guard while we lead with a postgres running, with the deadline of the
    /// latest lease renewal or failsafe confirmation; keeps it armed (no longer moved forward)
    /// while a primary we were leading may still run; disarms it otherwise and when paused.
    /// Arms, keeps or disarms the lease guard as `pgha_core::guard_plan` says.
    /// `starting_primary`: a job starts (or is about to start) postgres as the primary.
    fn update_lease_guard(&mut self, starting_primary: bool) {
        let pid = self.pg.postmaster_pid();
        let renewed = [
            self.dcs.lease_renewed_boot_ms(),
            self.failsafe_confirmed_boot,
        ]
        .into_iter()
        .flatten()
        .max();
        let plan = pgha_core::guard_plan(&pgha_core::GuardInputs {
            enabled: self.lease_guard.enabled(),
            paused: self.policy.pause,
            leading: self.state.has_lock && self.policy.standby_cluster.is_none(),
            postmaster_runs: pid.is_some(),
            ran_as_primary: self.last_role == Some("primary"),
            starting_primary,
            renewed_boot_ms: renewed,
            ttl: self.policy.ttl,
            margin_ms: self.lease_guard.margin_ms(),
        });
        match (plan, pid) {
            (pgha_core::GuardPlan::Disarm, _) => self.lease_guard.disarm(),
            (pgha_core::GuardPlan::Arm { deadline_ms }, Some(pid)) => {
                self.lease_guard.arm(pid, deadline_ms)
            }
            (pgha_core::GuardPlan::ArmDataDir { deadline_ms }, _) => {
                self.lease_guard.arm_data_dir(deadline_ms)
            }
            _ => {}
        }
    }

    /// As a replica whose walreceiver has stopped: does the leader refuse connections on both
    /// its PostgreSQL and REST ports, for us and for every other member? (probes in
    /// `dead_leader`, the judgement in pgha-core)
    async fn prove_leader_dead(&mut self, obs: &Observation) -> Option<String> {
        let probe = match (&obs.local, &obs.dcs) {
            (
                LocalPg::Initialized {
                    process: PgProcess::Running(r),
                    ..
                },
                DcsView::Reachable(c),
            ) if pgha_core::should_probe_leader(
                r.in_recovery,
                r.streaming,
                self.policy.pause,
                pgha_types::tag_is_true(self.cfg.tags.get("nostream")),
            ) =>
            {
                Some(c)
            }
            _ => None,
        };
        let Some(cluster) = probe else {
            self.leader_refusing = None;
            self.refusing_rechecks = 0;
            return None;
        };
        self.leader_refusing = crate::dead_leader::check_leader(cluster, &self.cfg.name).await;
        let answers = match self.leader_refusing.as_deref() {
            Some(leader) => {
                crate::dead_leader::ask_others(&self.http, cluster, &self.cfg.name, leader).await
            }
            None => Vec::new(),
        };
        let verdict = pgha_core::judge_dead_leader(
            cluster,
            &self.cfg.name,
            self.leader_refusing.as_deref(),
            &answers,
            self.refusing_rechecks,
        );
        self.refusing_rechecks = verdict.rechecks;
        self.recheck_refusing = verdict.recheck;
        if let Some(leader) = &verdict.proven {
            info!("every member finds {leader}'s PostgreSQL and REST ports refusing connections");
        }
        verdict.proven
    }

    /// What failsafe mode needs to know this cycle (the answers to our pings come later).
    fn failsafe_obs(&self) -> pgha_core::FailsafeObs {
        let leader_ping = self
            .failsafe_memory
            .last_ping()
            .map(|p| pgha_core::LeaderPing {
                name: p.name,
                conn_url: p.conn_url,
                api_url: p.api_url,
                age_ms: p.at.elapsed().as_millis() as u64,
            });
        pgha_core::FailsafeObs {
            topology: self.failsafe_key.clone(),
            my_api_url: Some(self.cfg.restapi.api_url()),
            replies: None,
            leader_ping,
        }
    }

    /// `POST /failsafe` to every other member of the `failsafe` key. The answers must be in
    /// before the members that can still reach the DCS would stop taking our word: our leader
    /// key lasts `ttl` from its last renewal, and a member that accepted our last ping holds
    /// back from the race for `ttl` after it. Past that deadline (less a margin for the
    /// demotion itself) nothing is asked and no answer counts, so we demote.
    async fn post_failsafe(&mut self) -> Vec<pgha_core::FailsafeReply> {
        let Some(topology) = self.failsafe_key.clone() else {
            return Vec::new();
        };
        let sent = std::time::Instant::now();
        let sent_boot = pgha_dcs::clock::boottime_ms();
        let timeout = failsafe_timeout(
            sent,
            [self.lease_renewed_at, self.failsafe_confirmed_at],
            Duration::from_secs(self.policy.ttl),
        );
        if timeout < Duration::from_millis(100) {
            warn!("failsafe mode: too late to ask the members (our leader key has expired and no recent confirmation holds the replicas back)");
            return Vec::new();
        }
        let mut slots = serde_json::Map::new();
        if let Some(p) = &self.last_probe {
            if let Some(lsn) = p.wal_lsn {
                slots.insert(pgha_core::slot_name(&self.cfg.name), lsn.0.into());
            }
            for s in &p.slots {
                let lsn = if s.is_logical() {
                    s.confirmed_flush_lsn
                } else {
                    s.restart_lsn
                };
                if let Some(lsn) = lsn {
                    slots.insert(s.name.clone(), lsn.0.into());
                }
            }
        }
        let body = serde_json::json!({
            "name": self.cfg.name,
            "conn_url": self.cfg.postgresql.conn_url(),
            "api_url": self.cfg.restapi.api_url(),
            "slots": slots,
        });
        let auth = self
            .cfg
            .ctl
            .as_ref()
            .and_then(|c| c.authentication.as_ref())
            .or(self.cfg.restapi.authentication.as_ref())
            .map(|a| (a.username.as_str(), a.password.as_str()));
        let replies =
            peers::post_failsafe(&self.http, &topology, &self.cfg.name, &body, auth, timeout).await;
        let all = topology
            .keys()
            .filter(|n| **n != self.cfg.name)
            .all(|n| replies.iter().any(|r| &r.name == n && r.accepted));
        if all && sent.elapsed() <= timeout + FAILSAFE_MARGIN {
            self.failsafe_confirmed_at = Some(sent);
            self.failsafe_confirmed_boot = Some(sent_boot);
        }
        replies
    }

    /// Running as the leader with the lock, or as a streaming replica, with no job under way:
    /// nothing this node does next depends on another member's key changing.
    fn settled(&self, local: &LocalPg) -> bool {
        let LocalPg::Initialized {
            process: PgProcess::Running(r),
            ..
        } = local
        else {
            return false;
        };
        self.job.is_none()
            && ((!r.in_recovery && self.state.has_lock) || (r.in_recovery && r.streaming))
    }

    /// Keeps `patroni.dynamic.json` current, but only in a data directory that belongs to this
    /// cluster: a foreign one (system ID mismatch) is left exactly as it was found.
    fn save_dynamic_cache(&mut self, cluster: &Cluster, local: &LocalPg) {
        let Some(config) = &cluster.config else {
            return;
        };
        let ours = matches!(local, LocalPg::Initialized { system_id, .. }
            if cluster.initialize.as_deref() == Some(system_id.as_str()));
        if !ours || self.saved_dynamic.as_ref() == Some(config) {
            return;
        }
        match crate::dynamic_cache::save(&self.cfg.postgresql.data_dir, config) {
            Ok(true) => self.saved_dynamic = Some(config.clone()),
            Ok(false) => {}
            Err(e) => warn!("could not save {}: {e}", crate::dynamic_cache::FILE),
        }
    }

    fn refresh_policy(&mut self, cluster: &Cluster) {
        let (policy, warnings) =
            effective_policy(&self.cfg, &dynamic_config(&self.cfg, Some(cluster)));
        if warnings != self.policy_warnings {
            for w in &warnings {
                warn!("{w}");
            }
            self.policy_warnings = warnings;
        }
        if policy.retry_timeout != self.policy.retry_timeout {
            self.dcs
                .set_retry_timeout(Duration::from_secs(policy.retry_timeout));
        }
        self.policy = policy;
        self.loop_wait_shared
            .store(self.policy.loop_wait, Ordering::Relaxed);
    }

    /// Renews our lease (and with it our member key and, while we lead, the lock) before
    /// anything else in the cycle.
    async fn keep_session(&mut self) -> Session {
        if self.dcs.lease_id().await.is_none() {
            return Session::NoLease;
        }
        match self.dcs.refresh_lease().await {
            Ok(()) => Session::Renewed,
            Err(DcsError::LeaseExpired(id)) => {
                // Our member key went with the lease; it is written again on a fresh one.
                self.last_member = None;
                Session::Expired(id)
            }
            Err(e) => Session::Failed(e),
        }
    }

    /// Makes sure we have a lease, and tells the core whether the lock is still ours: when the
    /// DCS names us leader, the renewal of our lease at the start of the cycle renewed it.
    async fn renew_lock(&mut self, cluster: Option<&Cluster>, session: Session) -> LockRenewal {
        let Some(cluster) = cluster else {
            return LockRenewal::NotHeld;
        };
        let before = self.dcs.lease_id().await;
        match self.dcs.ensure_lease(self.policy.ttl).await {
            // A new lease (first one, after expiry, or for a new ttl): the member key still
            // sits on the old one, which nobody renews now; write it again on this one.
            Ok(id) if before != Some(id) => self.last_member = None,
            Ok(_) => {}
            Err(e) => warn!("could not create an etcd lease: {e}"),
        }
        let leads = cluster.leader.as_ref().filter(|l| l.name == self.cfg.name);
        let Some(leader) = leads else {
            if let Session::Failed(e) = &session {
                warn!("could not renew our etcd lease: {e}");
            }
            return LockRenewal::NotHeld;
        };
        match session {
            Session::Renewed | Session::NoLease => {
                // After a lease re-creation (an agent restart within ttl) the key still sits
                // on the old lease: move it to ours while it names us.
                match self
                    .dcs
                    .keep_leader_on_our_lease(&self.cfg.name, leader.lease)
                    .await
                {
                    Ok(true) => LockRenewal::Renewed,
                    Ok(false) => {
                        warn!("the leader key changed under us; the lock is lost");
                        LockRenewal::Failed
                    }
                    Err(e) => {
                        error!("failed to update leader lock: {e}");
                        LockRenewal::Failed
                    }
                }
            }
            Session::Expired(id) => {
                error!("failed to update leader lock: our etcd lease {id:x} has expired");
                LockRenewal::Failed
            }
            Session::Failed(e) => {
                error!("failed to update leader lock: {e}");
                LockRenewal::Failed
            }
        }
    }

    async fn observe_local(&mut self) -> LocalPg {
        let mut probe = None;
        let local = match self.pg.data_dir_state() {
            DataDirState::Missing | DataDirState::Empty => {
                self.system_id = None;
                LocalPg::Empty
            }
            DataDirState::Invalid(reason) => LocalPg::Invalid(reason),
            DataDirState::Initialized => {
                if self.system_id.is_none() || self.job.is_some() {
                    // pg_controldata is a process spawn: read the identifier once, and again
                    // after jobs that may replace the data directory.
                    match self.pg.controldata().await {
                        Ok(c) => self.system_id = Some(c.system_identifier),
                        Err(e) => warn!("pg_controldata failed: {e}"),
                    }
                }
                let pid = self.pg.postmaster_pid();
                let process = if pid.is_some_and(pgha_postgres::process_stopped) {
                    // Our probe's connection would still answer through its backend, but no
                    // client can connect: as good as down.
                    warn!(
                        pid,
                        "the postmaster is stopped (SIGSTOP?): it accepts no connections"
                    );
                    PgProcess::NotReady
                } else if pid.is_some() {
                    match self.pg.probe().await {
                        Ok(p) => {
                            // PostgreSQL pauses replay when the primary raised a shared-memory
                            // setting above ours; the control file then says by how much.
                            let below_primary = if p.in_recovery && p.replay_paused {
                                self.settings_below_primary().await
                            } else {
                                Vec::new()
                            };
                            let running = PgRunning {
                                in_recovery: p.in_recovery,
                                timeline: p.timeline,
                                wal_position: if p.in_recovery {
                                    p.receive_lsn
                                        .map(|l| l.0)
                                        .unwrap_or(0)
                                        .max(p.replay_lsn.map(|l| l.0).unwrap_or(0))
                                } else {
                                    p.wal_lsn.map(|l| l.0).unwrap_or(0)
                                },
                                streaming: p.receiver_streaming,
                                pending_restart: !p.pending_restart.is_empty()
                                    || !self.cmdline_pending.is_empty(),
                                server_version: p.server_version,
                                below_primary,
                                standbys: p
                                    .replication
                                    .iter()
                                    .map(|r| pgha_core::StandbyConn {
                                        name: r.application_name.clone(),
                                        state: r.state.clone(),
                                        sync_state: r.sync_state.clone(),
                                        flush_lsn: r.flush_lsn.map_or(0, |l| l.0),
                                    })
                                    .collect(),
                                history: if p.in_recovery && !p.receiver_streaming {
                                    // A small file, read only while the replica is cut off.
                                    match self.pg.local_timeline_history(p.timeline) {
                                        Ok(h) => h.iter().map(|s| (s.timeline, s.lsn.0)).collect(),
                                        Err(e) => {
                                            debug!("could not read our timeline history: {e}");
                                            Vec::new()
                                        }
                                    }
                                } else {
                                    Vec::new()
                                },
                            };
                            self.last_role =
                                Some(if p.in_recovery { "replica" } else { "primary" });
                            probe = Some(p);
                            PgProcess::Running(running)
                        }
                        Err(e) => {
                            debug!("postgres is not answering yet: {e}");
                            PgProcess::NotReady
                        }
                    }
                } else {
                    PgProcess::Stopped
                };
                let control = if process == PgProcess::Stopped {
                    match self.pg.controldata().await {
                        Ok(c) => {
                            let standby = self.pg.params().data_dir.join("standby.signal").exists();
                            let clean = c.is_clean_shutdown();
                            let (tl, lsn) = c.end_of_wal_hint();
                            Some(ControlSummary {
                                was_primary: !standby
                                    && matches!(
                                        c.cluster_state.as_str(),
                                        "in production" | "shut down" | "in crash recovery"
                                    ),
                                clean_shutdown: clean,
                                timeline: tl,
                                lsn: lsn.0,
                            })
                        }
                        Err(e) => {
                            warn!("pg_controldata failed: {e}");
                            None
                        }
                    }
                } else {
                    None
                };
                match &self.system_id {
                    Some(sysid) => LocalPg::Initialized {
                        system_id: sysid.clone(),
                        process,
                        control,
                    },
                    None => LocalPg::Invalid(
                        "cannot read the system identifier with pg_controldata".into(),
                    ),
                }
            }
        };
        if let Some(p) = &probe {
            self.last_replay = match (p.in_recovery, p.replay_lsn) {
                (true, Some(lsn)) => Some((p.timeline, lsn.0)),
                _ => None,
            };
        }
        self.last_probe = probe;
        local
    }

    async fn settings_below_primary(&self) -> Vec<SettingBelowPrimary> {
        match self.pg.replay_blockers().await {
            Ok(list) => list
                .into_iter()
                .map(|s| SettingBelowPrimary {
                    name: s.name,
                    standby: s.standby,
                    primary: s.primary,
                })
                .collect(),
            Err(e) => {
                warn!("replay is paused and pg_controldata failed: {e}");
                Vec::new()
            }
        }
    }

    async fn reap_job(&mut self) {
        let Some(running) = &self.job else { return };
        if !running.handle.is_finished() {
            return;
        }
        let running = self.job.take().expect("checked above");
        let result = running
            .handle
            .await
            .unwrap_or_else(|e| Err(format!("the job task failed: {e}").into()));
        let (ok, message, refused_by_pre_promote) = match result {
            Ok(m) => (true, m, false),
            Err(f) => (false, f.message, f.refused_by_pre_promote),
        };
        if ok {
            info!("{message}");
        } else {
            error!("{message}");
        }
        if matches!(
            running.job.kind,
            JobKind::Bootstrap | JobKind::Clone { .. } | JobKind::Rejoin { .. }
        ) {
            self.system_id = None;
        }
        if let Some(tx) = self.pending_reply.take() {
            let text = if ok {
                "restarted successfully"
            } else {
                "restart failed"
            };
            let _ = tx.send(LocalAnswer {
                status: if ok { 200 } else { 503 },
                text: text.into(),
            });
        }
        if ok && matches!(running.job.kind, JobKind::Restart { .. }) {
            self.cmdline_pending.clear();
        }
        self.finished = Some(JobOutcome {
            kind: running.job.kind,
            ok,
            message,
            refused_by_pre_promote,
        });
    }

    pub(crate) fn start_job(&mut self, kind: JobKind, cluster: Option<&Cluster>) {
        let ctx = JobCtx {
            cfg: self.cfg.clone(),
            pg: self.pg.clone(),
            dcs: self.dcs.clone(),
            policy: self.policy.clone(),
            cluster: cluster.cloned(),
            last_replay: self.last_replay,
        };
        // Any job may replace or rewind the data directory: the next probe tells anew.
        self.last_replay = None;
        let job = Job {
            kind: kind.clone(),
            started_at: now_ms(),
        };
        if matches!(kind, JobKind::Restart { .. }) {
            self.callbacks.restarting();
        }
        if kind.starts_primary() {
            // Fenced before the postmaster exists: a freeze of this agent from now on must
            // not leave a writable primary past the lease.
            self.update_lease_guard(true);
        }
        // Its end is news for the loop (promoted, started, cloned): act on it at once.
        let wake = self.wake.clone();
        let handle = tokio::spawn(async move {
            let result = jobs::run(kind, ctx).await;
            // A failed job is tried again at the next regular cycle: waking at once would
            // retry one that fails in milliseconds (leader unreachable) in a tight loop.
            if result.is_ok() {
                wake.notify_one();
            }
            result
        });
        self.job = Some(RunningJob { job, handle });
    }

    /// Runs the decided actions in order, stopping at the first that fails or loses a race.
    async fn execute(
        &mut self,
        decision: &Decision,
        obs: &Observation,
        cluster: Option<&Cluster>,
    ) -> Option<String> {
        self.state = decision.next.clone();
        self.recheck_soon = decision.recheck_soon || std::mem::take(&mut self.recheck_refusing);
        for action in &decision.actions {
            if let Action::Exit(msg) = action {
                error!({ CRITICAL_FIELD } = true, "{msg}");
                return Some(msg.clone());
            }
            match execute::run(self, action, obs, cluster).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    error!("{e:#}");
                    // Whatever we believed about postgres's configuration may be stale now.
                    self.state.configured_as = None;
                    // A refused watchdog ahead of the race means the lock was never taken.
                    let never_took_lock = matches!(action, Action::ActivateWatchdog)
                        && obs.lock != LockRenewal::Renewed;
                    if matches!(action, Action::AcquireLock) || never_took_lock {
                        self.state.has_lock = false;
                    }
                    break;
                }
            }
        }
        None
    }

    /// Postgres came up (after a start, a restart, a promotion) or went down on its own: the
    /// callbacks hear about it once. Not during a job: a half-done clone or restart is no news.
    fn tell_callbacks(&self, local: &LocalPg) {
        if let LocalPg::Initialized { process, .. } = local {
            match process {
                PgProcess::Running(r) => self.callbacks.postgres_running(if r.in_recovery {
                    "replica"
                } else {
                    "primary"
                }),
                PgProcess::Stopped => self.callbacks.postgres_down(),
                PgProcess::NotReady => {}
            }
        } else {
            self.callbacks.postgres_down();
        }
    }

    /// The decision assumed the race would be won; forget what it planned for postgres.
    pub(crate) fn lost_race(&mut self) {
        self.state.has_lock = false;
        self.state.configured_as = None;
    }

    async fn publish(&mut self, cluster: Option<&Cluster>, obs: &Observation) {
        let facts = LocalFacts {
            state: self.facts_state(obs),
            probe: self.last_probe.clone(),
            system_id: self.system_id.clone(),
            standby_leader: self.state.has_lock
                && self.state.configured_as == Some(Role::StandbyLeader),
            basebackup_progress: self
                .job
                .as_ref()
                .filter(|j| matches!(j.job.kind, JobKind::Clone { .. }))
                .and_then(|_| self.pg.basebackup_progress()),
        };
        let scheduled = self
            .scheduled_restart
            .as_ref()
            .map(ScheduledRestart::published);
        let data = member_data(
            &self.cfg,
            &facts,
            self.last_role,
            &self.cmdline_pending,
            scheduled,
            self.policy.pause,
        );
        if cluster.is_some() && self.last_member.as_ref() != Some(&data) {
            match self.dcs.touch_member(&self.cfg.name, &data).await {
                Ok(()) => self.last_member = Some(data.clone()),
                Err(e) => warn!("could not publish our member key: {e}"),
            }
        }
        let mut status = node_status(StatusInputs {
            member: data,
            loop_stats: self.stats.clone(),
            cfg: &self.cfg,
            facts: &facts,
            is_leader: self.state.has_lock,
            cluster,
            policy: &self.policy,
            dcs_reachable: cluster.is_some(),
            dcs_last_seen: self.dcs_last_seen,
            last_role: self.last_role,
            scheduled_restart: self.scheduled_restart.as_ref().map(|s| s.details.clone()),
            watchdog_failed: self
                .watchdog
                .failed(self.policy.ttl, self.policy.loop_wait, now_ms()),
        });
        status.failsafe_mode = self.policy.failsafe_mode;
        status.failsafe_active = pgha_core::failsafe::is_active(&self.state, obs);
        status.failsafe_key = self.failsafe_key.clone();
        status.known_leader = self.state.last_leader.clone();
        status.leader_refusing = self.leader_refusing.clone();
        self.status_tx.send_replace(Arc::new(status));
    }

    fn facts_state(&self, obs: &Observation) -> String {
        if let Some(job) = &self.job {
            return match &job.job.kind {
                JobKind::Bootstrap if self.cfg.bootstrap.custom_method().is_some() => {
                    "running custom bootstrap script"
                }
                JobKind::Bootstrap => "initializing new cluster",
                JobKind::BootstrapStandby => "creating replica",
                JobKind::Clone { .. } => "creating replica",
                JobKind::Start { .. } | JobKind::Rejoin { .. } => "starting",
                JobKind::Restart { .. } => "restarting",
                JobKind::Promote => "running",
            }
            .into();
        }
        match &obs.local {
            LocalPg::Empty => "stopped".into(),
            LocalPg::Invalid(_) => "stopped".into(),
            LocalPg::Initialized {
                process, control, ..
            } => match process {
                PgProcess::Running(_) => "running".into(),
                PgProcess::NotReady => "starting".into(),
                PgProcess::Stopped
                    if control
                        .as_ref()
                        .is_some_and(|c| !c.clean_shutdown && c.was_primary) =>
                {
                    "crashed".into()
                }
                PgProcess::Stopped => "stopped".into(),
            },
        }
    }

    /// SIGTERM/SIGINT: stop postgres cleanly first, so every acknowledged write has reached the
    /// streaming replicas, then release the lock so one of them takes over at once.
    async fn shutdown(&mut self) {
        if let Some(job) = self.job.take() {
            info!("cancelling {:?} for shutdown", job.job.kind);
            job.handle.abort();
        }
        let timeout = self.pg.params().pg_ctl_timeout;
        if self.pg.postmaster_pid().is_some() {
            info!("stopping postgres (fast) before shutting down");
            jobs::before_stop(&self.cfg, &self.pg).await;
            match self
                .stop_postgres(pgha_postgres::StopMode::Fast, timeout)
                .await
            {
                Ok(()) => self.callbacks.stopped(),
                Err(e) => error!("stopping postgres failed: {e}"),
            }
        }
        // A postgres we could not stop keeps the watchdog armed (and unfed once we exit), and
        // the lease guard too: it kills that postgres when our lease runs out.
        if self.pg.postmaster_pid().is_none() || self.policy.pause {
            self.watchdog.disable();
            self.lease_guard.disarm();
        } else if self.watchdog.is_running() {
            warn!("postgres is still running; leaving the watchdog running");
        }
        // Peers racing for the lock read our /patroni: it must not say "running primary" now.
        if self.pg.postmaster_pid().is_none() {
            self.status_tx.send_modify(|s| {
                let mut stopped = NodeStatus::clone(s);
                stopped.state = "stopped".into();
                stopped.is_leader = false;
                *s = Arc::new(stopped);
            });
        }
        let cluster = self.dcs.load_cluster().await.ok();
        let holds = cluster
            .as_ref()
            .and_then(|c| c.leader_name())
            .is_some_and(|l| l == self.cfg.name);
        if holds && self.pg.postmaster_pid().is_none() {
            if let Ok(c) = self.pg.controldata().await {
                // The replicas compare themselves to this in the leader race.
                let (_, lsn) = c.end_of_wal_hint();
                execute::write_final_status(self, lsn.0).await;
            }
            match self.dcs.delete_leader(&self.cfg.name).await {
                Ok(true) => info!("Leader key released"),
                Ok(false) => info!("the leader key was no longer ours"),
                Err(e) => error!("could not release the leader key: {e}"),
            }
        } else if holds {
            // Revoking the lease would drop the leader key too and let a replica promote
            // next to a primary that still runs.
            warn!("postgres is still running; keeping the leader key until it expires");
            return;
        }
        if let Err(e) = self.dcs.revoke_lease().await {
            warn!("could not revoke our etcd lease: {e}");
        }
        info!("pgha stopped");
    }

    /// Stops postgres with the watchdog disarmed first, as Patroni disarms it once the stop is
    /// under way: a long shutdown checkpoint must not reset the machine. If the stop fails
    /// and postgres still runs, the watchdog is armed again, so a primary that could not be
    /// stopped stays fenced.
    pub(crate) async fn stop_postgres(
        &mut self,
        mode: pgha_postgres::StopMode,
        timeout: Duration,
    ) -> Result<(), pgha_postgres::PgError> {
        let armed = self.watchdog.is_running();
        self.watchdog.disable();
        let stopped = self.pg.stop(mode, timeout).await;
        if stopped.is_err() && armed && self.pg.postmaster_pid().is_some() {
            let (ttl, loop_wait) = (self.policy.ttl, self.policy.loop_wait);
            if let Err(e) = self.watchdog.activate(ttl, loop_wait, now_ms()) {
                error!("{e}");
            }
        }
        stopped
    }

    pub(crate) fn server_config_for(
        &self,
        role: &Role,
        cluster: Option<&Cluster>,
    ) -> pgha_postgres::ServerConfig {
        let mut server = server_config(
            &self.cfg,
            &self.policy,
            role,
            cluster,
            self.pg.major_version(),
        );
        // In synchronous mode the leader decides the synchronous standbys, whatever the user
        // set (as Patroni).
        if *role == Role::Primary {
            if let Some(names) = &self.state.synchronous_standby_names {
                server
                    .parameters
                    .insert("synchronous_standby_names".into(), names.clone());
            }
        }
        server
    }
}

/// Time kept for the demotion itself when the members' answers come late.
const FAILSAFE_MARGIN: Duration = Duration::from_secs(1);

/// How long the `POST /failsafe` pings sent at `now` may take: at most 2 s (as Patroni), and
/// the answers must be in `FAILSAFE_MARGIN` before the latest of `since` + `ttl` (our last
/// lease renewal, the last round every member confirmed), after which a member that can reach
/// the DCS no longer waits for us. Zero when that time has passed.
fn failsafe_timeout(
    now: std::time::Instant,
    since: [Option<std::time::Instant>; 2],
    ttl: Duration,
) -> Duration {
    since
        .into_iter()
        .flatten()
        .map(|t| (t + ttl).saturating_duration_since(now))
        .max()
        .unwrap_or_default()
        .saturating_sub(FAILSAFE_MARGIN)
        .min(Duration::from_secs(2))
}

/// How renewing our lease went at the start of a cycle.
enum Session {
    Renewed,
    /// No lease yet (first cycle, or after a revoke): `renew_lock` grants one.
    NoLease,
    /// etcd forgot the lease (we were away longer than ttl): our keys are gone.
    Expired(i64),
    Failed(DcsError),
}

pub(crate) fn stop_mode(m: StopMode) -> pgha_postgres::StopMode {
    match m {
        StopMode::Fast => pgha_postgres::StopMode::Fast,
        StopMode::Immediate => pgha_postgres::StopMode::Immediate,
    }
}

/// Aborts a background task when the HA loop that started it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod failsafe_timing {
    use super::*;
    use std::time::Instant;

    #[test]
    fn pings_must_be_answered_before_the_replicas_stop_waiting() {
        let t = Instant::now();
        let ttl = Duration::from_secs(10);
        let s = Duration::from_secs;
        // Lease renewed 4 s ago: plenty of time, capped at 2 s.
        assert_eq!(failsafe_timeout(t + s(4), [Some(t), None], ttl), s(2));
        // 8.5 s ago: 0.5 s left after the margin.
        assert_eq!(
            failsafe_timeout(t + Duration::from_millis(8500), [Some(t), None], ttl),
            Duration::from_millis(500)
        );
        // Key long expired, but every member confirmed 3 s ago.
        assert_eq!(
            failsafe_timeout(t + s(30), [Some(t), Some(t + s(27))], ttl),
            s(2)
        );
        // Nothing recent: too late to ask.
        assert_eq!(
            failsafe_timeout(t + s(30), [Some(t), Some(t + s(15))], ttl),
            Duration::ZERO
        );
        assert_eq!(failsafe_timeout(t, [None, None], ttl), Duration::ZERO);
    }
}
