use pgha_types::Cluster;

use crate::race::{healthiest_verdict, Candidate, RaceVerdict};
use crate::{requests, switchover};
use crate::{
    slot_targets, Action, DcsView, Decision, HaState, JobKind, JobOutcome, LocalPg, LockRenewal,
    Observation, PeerStatus, PgProcess, PgRunning, Role, StopMode, WatchdogView,
};

/// One HA cycle: what to do given what was observed. Pure; see the crate docs.
pub fn decide(state: &HaState, obs: &Observation) -> Decision {
    let mut d = Draft {
        next: state.clone(),
        actions: Vec::new(),
        reply: None,
        recheck_soon: false,
    };
    let message = match &obs.dcs {
        DcsView::Unreachable(err) => dcs_unreachable(&mut d, obs, err),
        DcsView::Reachable(cluster) => {
            d.next.has_lock =
                cluster.leader_name() == Some(obs.me.as_str()) && obs.lock == LockRenewal::Renewed;
            // With the DCS back the lock, not the members' word, says who leads.
            d.next.failsafe_active = false;
            if let Some(l) = cluster.leader_name() {
                d.next.last_leader = Some(l.to_string());
            }
            with_cluster(&mut d, obs, cluster)
        }
    };
    if !d.next.has_lock {
        d.next.member_seen = None;
    }
    d.finish(message, obs.request.as_ref())
}

pub(crate) struct Draft {
    pub(crate) next: HaState,
    actions: Vec<Action>,
    pub(crate) reply: Option<crate::Reply>,
    pub(crate) recheck_soon: bool,
}

impl Draft {
    pub(crate) fn act(&mut self, a: Action) {
        match &a {
            Action::StartJob(JobKind::Start { role }) => {
                self.next.configured_as = Some(role.clone())
            }
            Action::StartJob(JobKind::Rejoin { leader }) | Action::Follow { leader } => {
                self.next.configured_as = Some(Role::Replica {
                    leader: Some(leader.clone()),
                })
            }
            Action::StartJob(JobKind::Promote) => self.next.configured_as = Some(Role::Primary),
            Action::Stop { .. } => self.next.configured_as = None,
            Action::ReleaseLock => self.next.has_lock = false,
            _ => {}
        }
        // The step after these (clone into the emptied directory; rewind and rejoin) follows
        // at once, not a loop_wait later.
        if matches!(a, Action::RemoveDataDirectory | Action::Stop { .. }) {
            self.recheck_soon = true;
        }
        self.actions.push(a);
    }

    fn finish(mut self, message: String, request: Option<&crate::AdminRequest>) -> Decision {
        if request.is_some() && self.reply.is_none() {
            // Whatever kept us from looking at the request (a running job, no DCS, ...).
            self.reply = Some(crate::Reply::Now(
                503,
                format!("cannot do that now: {message}"),
            ));
        }
        Decision {
            actions: self.actions,
            reply: self.reply,
            message,
            next: self.next,
            recheck_soon: self.recheck_soon,
        }
    }
}

fn dcs_unreachable(d: &mut Draft, obs: &Observation, err: &str) -> String {
    d.next.has_lock = false;
    d.next.failsafe_active = false;
    let LocalPg::Initialized { process, .. } = &obs.local else {
        return format!("DCS is not accessible: {err}");
    };
    if obs.job.is_some() {
        return format!("DCS is not accessible: {err}; waiting for the running action to finish");
    }
    match process {
        PgProcess::Running(r) if !r.in_recovery => {
            if obs.policy.pause {
                return "DCS is not accessible; the cluster is paused, so the primary keeps running"
                    .into();
            }
            let mut why = None;
            if obs.policy.failsafe_mode {
                match crate::failsafe::unreachable_primary(d, obs) {
                    Ok(msg) => return msg,
                    Err(reason) => why = Some(reason),
                }
            }
            // A clean stop lets the replicas receive every WAL record before we go read-only.
            d.next.needs_rejoin = true;
            d.act(Action::Stop {
                mode: StopMode::Fast,
            });
            match why {
                Some(why) => {
                    format!("demoted self because DCS is not accessible and I was a leader ({why})")
                }
                None => "demoted self because DCS is not accessible and I was a leader".into(),
            }
        }
        PgProcess::Stopped if !obs.policy.pause => {
            d.act(Action::StartJob(JobKind::Start {
                role: Role::Replica { leader: None },
            }));
            "DCS is not accessible; starting postgres as a read-only replica".into()
        }
        _ => format!("DCS is not accessible: {err}"),
    }
}

fn with_cluster(d: &mut Draft, obs: &Observation, cluster: &Cluster) -> String {
    let me = obs.me.as_str();
    if let Some(done) = &obs.finished {
        if !done.ok {
            if let Some(msg) = after_failed_job(d, obs, cluster, done) {
                return msg;
            }
        } else if matches!(done.kind, JobKind::Rejoin { .. }) {
            d.next.needs_rejoin = false;
            d.next.restart_after_demote = false;
        }
    }
    // While a long action runs the data directory may be half-written: judge it afterwards.
    if let Some(job) = &obs.job {
        return job_in_progress(obs, cluster, &job.kind);
    }
    let (system_id, process, control) = match &obs.local {
        LocalPg::Invalid(reason) => {
            d.act(Action::Exit(format!(
                "data directory is not usable: {reason}; fix or empty it"
            )));
            return format!("refusing to start: {reason}");
        }
        LocalPg::Empty => return empty_data_dir(d, obs, cluster),
        LocalPg::Initialized {
            system_id,
            process,
            control,
        } => (system_id, process, control),
    };
    if let Some(init) = cluster.initialize.as_deref() {
        if !init.is_empty() && init != system_id {
            let msg = format!(
                "system ID mismatch, node {me} belongs to a different cluster: {init} != {system_id}"
            );
            d.act(Action::Exit(msg.clone()));
            return msg;
        }
    }
    if let Some(req) = &obs.request {
        if let Some(msg) = requests::handle(d, obs, cluster, process, req) {
            return msg;
        }
    }
    if control.as_ref().is_some_and(|c| c.was_primary) && !d.next.has_lock {
        if let PgProcess::Stopped = process {
            d.next.needs_rejoin = true;
        }
    }
    match cluster.leader_name() {
        Some(leader) if leader == me => {
            if obs.lock == LockRenewal::Renewed {
                i_am_leader(d, obs, cluster, system_id, process)
            } else {
                lost_lock(d, obs, process)
            }
        }
        Some(leader) => follow_leader(d, obs, cluster, leader, process),
        None => no_leader(d, obs, cluster, process),
    }
}

fn after_failed_job(
    d: &mut Draft,
    obs: &Observation,
    cluster: &Cluster,
    done: &JobOutcome,
) -> Option<String> {
    match &done.kind {
        JobKind::Bootstrap | JobKind::BootstrapStandby => {
            if cluster.initialize.as_deref() == Some("") {
                d.act(Action::CancelInitialization);
            }
            let cause = failure_cause(&done.message);
            if d.next.bootstrap_failure_cause.as_deref() == Some(cause.as_str()) {
                d.next.bootstrap_failures += 1;
            } else {
                d.next.bootstrap_failures = 1;
                d.next.bootstrap_failure_cause = Some(cause.clone());
            }
            if d.next.bootstrap_failures >= BOOTSTRAP_ATTEMPTS {
                // The same failure again: another initdb would only fail the same way. Stop,
                // and leave this attempt's data directory for the operator to look at.
                let msg = format!(
                    "bootstrap failed {BOOTSTRAP_ATTEMPTS} times in a row: {cause}; giving up (the data directory of the last attempt is kept for inspection)"
                );
                d.act(Action::Exit(msg.clone()));
                return Some(msg);
            }
            d.act(Action::RemoveDataDirectory);
            Some(format!(
                "removing initialize key after failed attempt to bootstrap the cluster: {}",
                done.message
            ))
        }
        JobKind::Clone { from, .. } => {
            d.act(Action::RemoveDataDirectory);
            Some(match from {
                Some(from) => format!("failed to bootstrap from leader '{from}': {}", done.message),
                None => format!("failed to bootstrap (without leader): {}", done.message),
            })
        }
        JobKind::Promote if done.refused_by_pre_promote => {
            d.next.configured_as = None;
            d.next.has_lock = false;
            // As Patroni: out of the race for one ttl, so another member can take over.
            d.next.race_backoff_until = Some(obs.now + obs.policy.ttl * 1000);
            if cluster.leader_name() == Some(obs.me.as_str()) {
                d.act(Action::ReleaseLock);
            }
            Some(format!(
                "Promotion cancelled because the pre-promote script failed: {}; releasing the leader key voluntarily",
                done.message
            ))
        }
        JobKind::Promote if cluster.leader_name() == Some(obs.me.as_str()) => {
            d.act(Action::ReleaseLock);
            Some(format!(
                "releasing the leader lock: promote failed: {}",
                done.message
            ))
        }
        JobKind::Start {
            role: Role::Primary,
        } => {
            d.next.configured_as = None;
            None
        }
        _ => {
            d.next.configured_as = None;
            None
        }
    }
}

/// Identical bootstrap failures in a row after which the agent stops trying.
const BOOTSTRAP_ATTEMPTS: u32 = 3;

/// The line of a failed job's message that says why: PostgreSQL's FATAL (or PANIC) line,
/// preceded by the line naming the culprit when the FATAL only says the configuration file
/// "contains errors"; else the first line. Timestamps and pids are left out so two
/// attempts' causes compare equal.
pub(crate) fn failure_cause(message: &str) -> String {
    let lines: Vec<&str> = message.lines().map(str::trim).collect();
    let Some(at) = lines
        .iter()
        .position(|l| l.contains("FATAL:") || l.contains("PANIC:"))
    else {
        return lines.first().copied().unwrap_or("").to_string();
    };
    // "2026-12-05 20:29:38.289 GMT [26990] FATAL:  ..." → "FATAL:  ...".
    let strip = |l: &str| -> String {
        ["LOG:", "FATAL:", "PANIC:", "ERROR:", "WARNING:"]
            .iter()
            .filter_map(|level| l.find(level))
            .min()
            .map_or_else(|| l.to_string(), |i| l[i..].to_string())
    };
    let fatal = strip(lines[at]);
    let before = at
        .checked_sub(1)
        .map(|i| lines[i])
        .filter(|l| fatal.contains("contains errors") && !l.is_empty());
    match before {
        Some(b) => format!("{}; {fatal}", strip(b)),
        None => fatal,
    }
}

fn empty_data_dir(d: &mut Draft, obs: &Observation, cluster: &Cluster) -> String {
    let me = obs.me.as_str();
    if cluster.leader.is_none() && cluster.initialize.is_none() && !obs.nofailover {
        // Bootstrapping makes this node the leader, which it may not be.
        if let WatchdogView::Unusable(why) = &obs.watchdog {
            return format!("not bootstrapping a new cluster: {why}");
        }
    }
    match cluster.leader.as_ref() {
        None if cluster.initialize.is_none() && !obs.nofailover => {
            d.act(Action::TakeInitializeLock);
            if obs.policy.standby_cluster.is_some() {
                d.act(Action::StartJob(JobKind::BootstrapStandby));
                return "trying to bootstrap a new standby leader".into();
            }
            d.act(Action::StartJob(JobKind::Bootstrap));
            "trying to bootstrap a new cluster".into()
        }
        // No leader to copy from: a replica method that needs none (a restore from a backup
        // or an archive) may still create this member, unless a bootstrap is under way.
        None if obs.clone_without_leader && cluster.initialize.as_deref() != Some("") => {
            d.act(Action::StartJob(JobKind::Clone {
                from: None,
                basebackup_only: false,
            }));
            "trying to bootstrap (without leader)".into()
        }
        None if cluster.initialize.is_none() => {
            format!(
                "Lock owner: None; I am {me}; waiting for leader to bootstrap (nofailover is set)"
            )
        }
        None => "waiting for leader to bootstrap".into(),
        Some(l) if l.name == me => {
            d.act(Action::ReleaseLock);
            "data directory is empty while holding the leader lock; releasing it".into()
        }
        Some(l) => {
            let from_leader = d.next.clone_from_leader;
            let source = if from_leader {
                cluster
                    .member(&l.name)
                    .filter(|m| m.is_running())
                    .map(|m| m.name.clone())
            } else {
                clone_source(cluster, &l.name)
            };
            match source {
                Some(src) => {
                    d.next.clone_from_leader = false;
                    let msg = if src == l.name {
                        format!("trying to bootstrap from leader '{src}'")
                    } else {
                        format!("trying to bootstrap from replica '{src}'")
                    };
                    d.act(Action::StartJob(JobKind::Clone {
                        from: Some(src),
                        basebackup_only: from_leader,
                    }));
                    msg
                }
                None => "waiting for leader to bootstrap".into(),
            }
        }
    }
}

/// A running member tagged `clonefrom`, else the leader if it is running.
fn clone_source(cluster: &Cluster, leader: &str) -> Option<String> {
    cluster
        .members
        .iter()
        .find(|m| m.tag_bool("clonefrom") && m.is_running() && m.name != leader)
        .or_else(|| cluster.member(leader).filter(|m| m.is_running()))
        .map(|m| m.name.clone())
}

fn job_in_progress(obs: &Observation, cluster: &Cluster, kind: &JobKind) -> String {
    let lock = match cluster.leader_name() {
        Some(l) => l.to_string(),
        None => "None".to_string(),
    };
    match kind {
        JobKind::Bootstrap => "bootstrap in progress".into(),
        JobKind::BootstrapStandby => "bootstrap of the standby leader in progress".into(),
        JobKind::Clone {
            from: Some(from), ..
        } => {
            format!("bootstrap from leader '{from}' in progress")
        }
        JobKind::Clone { from: None, .. } => "bootstrap (without leader) in progress".into(),
        JobKind::Start {
            role: Role::Primary,
        } => format!(
            "Lock owner: {lock}; I am {}; starting primary after failure in progress",
            obs.me
        ),
        JobKind::Start { .. } => format!(
            "Lock owner: {lock}; I am {}; starting as a secondary in progress",
            obs.me
        ),
        JobKind::Rejoin { leader } => {
            format!(
                "Lock owner: {lock}; I am {}; rejoining as a replica of {leader} in progress",
                obs.me
            )
        }
        JobKind::Promote => format!("Lock owner: {lock}; I am {}; promote in progress", obs.me),
        JobKind::Restart { .. } => {
            format!("Lock owner: {lock}; I am {}; restart in progress", obs.me)
        }
    }
}

fn i_am_leader(
    d: &mut Draft,
    obs: &Observation,
    cluster: &Cluster,
    system_id: &str,
    process: &PgProcess,
) -> String {
    let me = obs.me.as_str();
    if obs.policy.standby_cluster.is_some() {
        if let Some(msg) = standby_leader(d, obs, cluster, system_id, process) {
            return msg;
        }
    }
    if !obs.policy.pause {
        if let WatchdogView::Unusable(why) = &obs.watchdog {
            return refuse_to_lead(d, process, why);
        }
    }
    match process {
        PgProcess::Running(r) if !r.in_recovery => {
            d.next.primary_start_began = None;
            d.next.unresponsive_since = None;
            d.next.configured_as = Some(Role::Primary);
            d.next.needs_rejoin = false;
            if let Some(f) = switchover::due(cluster, obs.now) {
                if let Some(msg) = switchover::leader_side(d, obs, cluster, f) {
                    return msg;
                }
            }
            watchdog_before_leading(d, obs);
            leader_housekeeping(d, obs, cluster, system_id, r);
            // The sync key before the configuration: see `sync` for the order.
            let note = crate::sync::leader_upkeep(d, obs, cluster, r);
            d.act(Action::ApplyConfig {
                role: Role::Primary,
            });
            note.unwrap_or_else(|| format!("no action. I am ({me}), the leader with the lock"))
        }
        PgProcess::Running(_) => {
            watchdog_before_leading(d, obs);
            crate::sync::before_promotion(d, obs);
            d.act(Action::StartJob(JobKind::Promote));
            "promoted self to leader because I had the session lock".into()
        }
        PgProcess::NotReady if state_is_serving(d) => {
            // It was serving as our primary and stopped answering (hung, SIGSTOP, I/O stall):
            // after `ttl` without an answer a replica should take over, as it would if this
            // whole node had hung.
            let since = *d.next.unresponsive_since.get_or_insert(obs.now);
            let limit = obs.policy.ttl.saturating_mul(1000);
            if obs.now.saturating_sub(since) > limit && !obs.policy.pause {
                // A stopped postmaster's backends still serve their connections, and after
                // SIGCONT it would be a second primary: dead first, then the lock.
                d.act(Action::KillPostgres);
                d.act(Action::ReleaseLock);
                d.next.unresponsive_since = None;
                d.next.needs_rejoin = true;
                d.next.configured_as = None;
                format!(
                    "killing postgres and releasing the leader lock: postgres has not answered for {}s",
                    obs.now.saturating_sub(since) / 1000
                )
            } else {
                format!("Lock owner: {me}; I am {me}; postgres is not answering")
            }
        }
        PgProcess::NotReady => {
            let began = state_start_began(d, obs.now);
            let limit = obs.policy.primary_start_timeout.saturating_mul(1000);
            if obs.now.saturating_sub(began) > limit && limit > 0 && !obs.policy.pause {
                d.act(Action::ReleaseLock);
                d.next.primary_start_began = None;
                format!(
                    "releasing the leader lock: postgres did not start within primary_start_timeout ({}s)",
                    obs.policy.primary_start_timeout
                )
            } else {
                format!("Lock owner: {me}; I am {me}; waiting for postgres to start as the primary")
            }
        }
        PgProcess::Stopped if obs.policy.pause => {
            format!("Lock owner: {me}; I am {me}; paused: postgres stays stopped")
        }
        PgProcess::Stopped => {
            d.act(Action::StartJob(JobKind::Start {
                role: Role::Primary,
            }));
            d.next.primary_start_began = Some(obs.now);
            "starting primary after failure".into()
        }
    }
}

/// The leader of a standby cluster: keeps postgres in recovery, replicating from the remote
/// primary. A primary told to become one (`standby_cluster` added, `demote-cluster`) stops and
/// comes back as the standby leader. None: not a case for this rule (postgres not answering
/// yet: the primary rules apply).
fn standby_leader(
    d: &mut Draft,
    obs: &Observation,
    cluster: &Cluster,
    system_id: &str,
    process: &PgProcess,
) -> Option<String> {
    let me = obs.me.as_str();
    match process {
        PgProcess::Running(r) if r.in_recovery => {
            d.next.primary_start_began = None;
            d.next.unresponsive_since = None;
            d.next.configured_as = Some(Role::StandbyLeader);
            if cluster.initialize.as_deref().is_none_or(str::is_empty) {
                d.act(Action::SetInitialize(system_id.to_string()));
            }
            d.act(Action::SyncSlots(slot_targets(
                cluster,
                &obs.me,
                &obs.policy,
                true,
                obs.nofailover,
            )));
            d.act(Action::ApplyConfig {
                role: Role::StandbyLeader,
            });
            Some(format!(
                "no action. I am ({me}), the standby leader with the lock"
            ))
        }
        PgProcess::Running(_) => {
            d.next.configured_as = None;
            d.act(Action::Stop {
                mode: StopMode::Fast,
            });
            Some("demoting to a standby leader: standby_cluster is configured".into())
        }
        PgProcess::Stopped if !obs.policy.pause => {
            d.act(Action::StartJob(JobKind::Start {
                role: Role::StandbyLeader,
            }));
            Some("starting as a standby leader".into())
        }
        _ => None,
    }
}

/// `watchdog.mode: required` and no usable watchdog while we hold the lock: give it back, and
/// stop a primary at once (as Patroni's "immediate" demotion), rather than lead unguarded.
fn refuse_to_lead(d: &mut Draft, process: &PgProcess, why: &str) -> String {
    d.next.configured_as = None;
    match process {
        PgProcess::Running(r) if !r.in_recovery => {
            d.next.needs_rejoin = true;
            d.act(Action::Stop {
                mode: StopMode::Immediate,
            });
            d.act(Action::ReleaseLock);
            format!("Demoting self because watchdog could not be activated: {why}")
        }
        _ => {
            d.act(Action::ReleaseLock);
            format!("Not promoting self because watchdog could not be activated: {why}")
        }
    }
}

/// Before this node leads (takes the lock, promotes, or goes on as primary): the watchdog is
/// to run. Not while paused: maintenance mode keeps it off, as with Patroni.
pub(crate) fn watchdog_before_leading(d: &mut Draft, obs: &Observation) {
    if obs.watchdog != WatchdogView::Off && !obs.policy.pause {
        d.act(Action::ActivateWatchdog);
    }
}

/// We run postgres as the primary and did not just start it.
fn state_is_serving(d: &Draft) -> bool {
    d.next.configured_as == Some(Role::Primary) && d.next.primary_start_began.is_none()
}

fn state_start_began(d: &mut Draft, now: u64) -> u64 {
    *d.next.primary_start_began.get_or_insert(now)
}

fn leader_housekeeping(
    d: &mut Draft,
    obs: &Observation,
    cluster: &Cluster,
    system_id: &str,
    r: &PgRunning,
) {
    if cluster.initialize.as_deref().is_none_or(str::is_empty) {
        d.act(Action::SetInitialize(system_id.to_string()));
    }
    if cluster.config.is_none() && cluster.config_revision == 0 {
        d.act(Action::WriteInitialConfig);
    }
    // Also with `use_slots: false`: then slots nobody wants are dropped, as Patroni does.
    let retained = crate::slots::retain_departed(&mut d.next, obs, cluster);
    let mut targets = slot_targets(cluster, &obs.me, &obs.policy, true, obs.nofailover);
    if obs.policy.use_slots {
        targets
            .members
            .extend(retained.iter().map(|n| crate::slot_name(n)));
        targets.members.sort();
        targets.members.dedup();
    }
    d.act(Action::SyncSlots(targets));
    d.act(Action::WriteStatus);
    crate::failsafe::leader_upkeep(d, obs, cluster);
    if r.timeline > 1 && cluster.history_timeline() != Some(u64::from(r.timeline)) {
        d.act(Action::UpdateHistory);
    }
}

fn lost_lock(d: &mut Draft, obs: &Observation, process: &PgProcess) -> String {
    d.next.has_lock = false;
    if obs.policy.pause {
        return "failed to update leader lock in DCS; paused: not demoting".into();
    }
    match process {
        PgProcess::Running(r) if !r.in_recovery => {
            d.next.needs_rejoin = true;
            d.act(Action::Stop {
                mode: StopMode::Immediate,
            });
            "demoted self because failed to update leader lock in DCS".into()
        }
        _ => "failed to update leader lock in DCS".into(),
    }
}

fn follow_leader(
    d: &mut Draft,
    obs: &Observation,
    cluster: &Cluster,
    leader: &str,
    process: &PgProcess,
) -> String {
    let me = obs.me.as_str();
    // Running as the leader: a member key still saying `replica` is a candidate that has not
    // finished its promotion (a rewind against it would find it in recovery).
    let leader_running = cluster
        .member(leader)
        .is_some_and(|m| m.is_running() && m.data.role.as_deref() != Some("replica"));
    // Cascading: stream from the `replicatefrom` member while it is in the DCS.
    let source = crate::slots::upstream(cluster, me, obs.replicatefrom.as_deref(), leader);
    if let Some(msg) = replica_past_the_fork(d, obs, cluster, leader, leader_running, process) {
        return msg;
    }
    if let (Some(dead), Some(key)) = (obs.dead_leader.as_deref(), cluster.leader.as_ref()) {
        let replica = matches!(process, PgProcess::Running(r) if r.in_recovery);
        if dead == leader && replica && !obs.policy.pause {
            d.act(Action::RemoveDeadLeader {
                leader: leader.to_string(),
                lease: key.lease,
            });
            return format!(
                "Lock owner: {leader}; I am {me}; {leader}'s PostgreSQL and REST API refuse connections for every member: removing its leader key without waiting for it to expire"
            );
        }
    }
    match process {
        PgProcess::Running(r) if !r.in_recovery => {
            if obs.policy.pause {
                return format!(
                    "Lock owner: {leader}; I am {me}; paused: not demoting the running primary"
                );
            }
            // Another node may already accept writes: stop at once, no checkpoint.
            d.next.needs_rejoin = true;
            d.act(Action::Stop {
                mode: StopMode::Immediate,
            });
            "demoting self because I do not have the lock and I was a leader".into()
        }
        PgProcess::Running(_) if d.next.needs_rejoin => {
            if !leader_running {
                return format!("Lock owner: {leader}; I am {me}; waiting for the leader to run before rejoining");
            }
            d.act(Action::Stop {
                mode: StopMode::Fast,
            });
            format!("Lock owner: {leader}; I am {me}; stopping to check my WAL against the new leader's history")
        }
        PgProcess::Running(r) if !r.below_primary.is_empty() => {
            let what = below_primary_text(&r.below_primary);
            if obs.policy.pause {
                return format!(
                    "Lock owner: {leader}; I am {me}; paused: replay has stopped because the primary runs {what}; restart this member to resume it"
                );
            }
            d.act(Action::StartJob(JobKind::Restart {
                role: Role::Replica {
                    leader: Some(source.clone()),
                },
            }));
            format!(
                "Lock owner: {leader}; I am {me}; restarting postgres: the primary now runs {what}, and replay waits until this standby has as much"
            )
        }
        PgProcess::Running(_) => {
            let following = Some(Role::Replica {
                leader: Some(source.clone()),
            });
            let msg = if d.next.configured_as == following {
                d.act(Action::ApplyConfig {
                    role: Role::Replica {
                        leader: Some(source.clone()),
                    },
                });
                if source == leader {
                    format!(
                        "no action. I am ({me}), a secondary, and following a leader ({leader})"
                    )
                } else {
                    format!("no action. I am ({me}), a secondary, and following a leader ({leader}) through {source} (replicatefrom)")
                }
            } else {
                d.act(Action::Follow {
                    leader: source.clone(),
                });
                if source == leader {
                    format!("Lock owner: {leader}; I am {me}; following a new leader ({leader})")
                } else {
                    format!(
                        "Lock owner: {leader}; I am {me}; streaming from {source} (replicatefrom)"
                    )
                }
            };
            // Members cascading from this replica need their slots here; last, so a slot
            // error never keeps the replica from following its upstream.
            d.act(Action::SyncSlots(slot_targets(
                cluster,
                me,
                &obs.policy,
                false,
                obs.nofailover,
            )));
            msg
        }
        PgProcess::NotReady => format!("Lock owner: {leader}; I am {me}; postgres is starting up"),
        PgProcess::Stopped if obs.policy.pause && !d.next.restart_after_demote => {
            format!("Lock owner: {leader}; I am {me}; paused: postgres stays stopped")
        }
        PgProcess::Stopped if d.next.needs_rejoin => {
            if !leader_running {
                return format!("Lock owner: {leader}; I am {me}; waiting for the leader to run before rejoining");
            }
            // `restart_after_demote` stays until the rejoin succeeded: a failed one is tried
            // again, also while paused.
            d.act(Action::StartJob(JobKind::Rejoin {
                leader: leader.to_string(),
            }));
            format!("Lock owner: {leader}; I am {me}; checking whether my data diverged from {leader} before following it")
        }
        PgProcess::Stopped => {
            d.act(Action::StartJob(JobKind::Start {
                role: Role::Replica {
                    leader: Some(source),
                },
            }));
            "starting as a secondary".into()
        }
    }
}

/// How long a non-streaming replica must look diverged before it is stopped for a rewind: a
/// replica between two walreceiver runs on the new timeline can look so for a moment (its
/// control file still names the old timeline).
pub(crate) const DIVERGED_GRACE_MS: u64 = 3000;

/// A replica that received WAL from the old primary past the new leader's fork point cannot
/// stream from it ("requested starting point is ahead of the WAL flush position"): it stops,
/// and the rejoin that follows compares it with the leader's timeline history and rewinds.
fn replica_past_the_fork(
    d: &mut Draft,
    obs: &Observation,
    cluster: &Cluster,
    leader: &str,
    leader_running: bool,
    process: &PgProcess,
) -> Option<String> {
    let PgProcess::Running(r) = process else {
        d.next.diverged_since = None;
        d.next.stuck_since = None;
        d.next.streamed_timeline = None;
        return None;
    };
    if r.streaming {
        d.next.streamed_timeline = d.next.streamed_timeline.max(Some(r.timeline));
        d.next.stuck_rejoined = false;
    }
    let timeline = r.timeline.max(d.next.streamed_timeline.unwrap_or(0));
    let nostream = cluster
        .member(&obs.me)
        .is_some_and(|m| m.tag_bool("nostream"));
    let cut_off = r.in_recovery && !r.streaming && !d.next.needs_rejoin && leader_running;
    let fork = cut_off
        .then(|| past_the_fork(cluster, timeline, r.wal_position, &r.history))
        .flatten();
    // Not streaming from a leader that runs, long after anything a restart of the WAL
    // receiver would fix: its WAL may have diverged in a way the timeline number does not show
    // (two promotions that picked the same number), also when it is on an older timeline the
    // leader's history says it could follow; the rejoin compares the histories.
    let stuck = fork.is_none()
        && cut_off
        && !nostream
        && obs.replicatefrom.is_none()
        && cluster
            .history_timeline()
            .is_some_and(|tl| tl >= u64::from(timeline));
    if !stuck {
        d.next.stuck_since = None;
    }
    if fork.is_none() {
        d.next.diverged_since = None;
    }
    if fork.is_none() && !stuck {
        return None;
    }
    let since = match fork {
        Some(_) => *d.next.diverged_since.get_or_insert(obs.now),
        None => *d.next.stuck_since.get_or_insert(obs.now),
    };
    let ttl_ms = obs.policy.ttl.saturating_mul(1000);
    // At least ttl: a leader that died looks the same to a replica whose control file lags,
    // and its key is gone (and this rule with it) within ttl.
    // Cut off again right after a rejoin: that is no walreceiver between two runs any more.
    let grace = match fork {
        Some(_) => DIVERGED_GRACE_MS.max(ttl_ms),
        None if d.next.stuck_rejoined => DIVERGED_GRACE_MS.max(ttl_ms),
        None => STUCK_GRACE_MS.max(3 * ttl_ms),
    };
    if obs.now.saturating_sub(since) < grace || obs.policy.pause {
        return None;
    }
    if fork.is_none() && d.next.stuck_rejoined {
        // Cut off again after a rejoin that found nothing to rewind: the two WAL streams
        // diverged where the timeline histories do not show it (pg_rewind cannot see it
        // either). Only a new clone heals that; the data here is not the leader's.
        let secs = obs.now.saturating_sub(since) / 1000;
        if !obs.reclone_on_divergence {
            // Said once per grace period; the cycles in between go on as usual (a new leader
            // may be one this replica can follow).
            d.next.stuck_since = Some(obs.now);
            return Some(format!(
                "Lock owner: {leader}; I am {}; not streaming from {leader} for {secs} s although it runs, and a rejoin found nothing to rewind: my WAL diverged from the leader's; run `pghactl reinit` for this member (or set remove_data_directory_on_diverged_timelines)",
                obs.me
            ));
        }
        d.next.stuck_since = None;
        d.next.stuck_rejoined = false;
        requests::remove_to_clone(d, process, true);
        return Some(format!(
            "Lock owner: {leader}; I am {}; not streaming from {leader} for {secs} s again after a rejoin found nothing to rewind: removing the data directory to clone it again (remove_data_directory_on_diverged_timelines)",
            obs.me
        ));
    }
    d.next.diverged_since = None;
    d.next.stuck_since = None;
    d.next.stuck_rejoined = fork.is_none();
    d.next.needs_rejoin = true;
    d.act(Action::Stop {
        mode: StopMode::Fast,
    });
    Some(match fork {
        Some(why) => format!("Lock owner: {leader}; I am {}; {why}: stopping to rewind", obs.me),
        None => format!(
            "Lock owner: {leader}; I am {}; not streaming from {leader} for {} s although it runs: stopping to check my WAL against its history",
            obs.me,
            obs.now.saturating_sub(since) / 1000
        ),
    })
}

/// How long a replica may stay without streaming from a running leader on the same timeline
/// before it stops and rejoins (at least 3 × ttl).
pub(crate) const STUCK_GRACE_MS: u64 = 30_000;

/// Why a replica's WAL cannot continue on the leader's timeline history: it goes past the
/// end of its timeline there, or an earlier timeline ended elsewhere in its own history than
/// in the leader's (two promotions that picked the same timeline number).
fn past_the_fork(
    cluster: &Cluster,
    timeline: u32,
    wal_position: u64,
    own_history: &[(u32, u64)],
) -> Option<String> {
    let leader_tl = cluster.history_timeline()?;
    for &(t, mine_ended) in own_history {
        let Some(theirs) = cluster.history.iter().find(|h| h.timeline == u64::from(t)) else {
            continue;
        };
        if theirs.lsn != mine_ended {
            return Some(format!(
                "timeline {t} ended at {} in my history but at {} in the leader's",
                pgha_types::Lsn(mine_ended),
                pgha_types::Lsn(theirs.lsn)
            ));
        }
    }
    let mine = u64::from(timeline);
    if mine == 0 || mine >= leader_tl {
        return None;
    }
    let end = cluster.history.iter().find(|h| h.timeline == mine)?.lsn;
    (wal_position > end).then(|| {
        format!(
            "my WAL ({}) goes past the end of timeline {timeline} on the leader ({})",
            pgha_types::Lsn(wal_position),
            pgha_types::Lsn(end)
        )
    })
}

fn no_leader(d: &mut Draft, obs: &Observation, cluster: &Cluster, process: &PgProcess) -> String {
    let me = obs.me.as_str();
    // Whatever looked diverged was measured against a leader that is gone.
    d.next.diverged_since = None;
    d.next.stuck_since = None;
    d.next.stuck_rejoined = false;
    if let Some(until) = d.next.race_backoff_until {
        if obs.now >= until {
            d.next.race_backoff_until = None;
        } else if matches!(process, PgProcess::Running(_)) {
            return "backoff: skip leader race after pre_promote script failure and releasing the lock voluntarily".into();
        }
    }
    // A switchover or manual failover is an operator's decision: it proceeds even when paused.
    if let Some(f) = switchover::due(cluster, obs.now) {
        let running = match process {
            PgProcess::Running(r) => Some(r),
            _ => None,
        };
        if let Some(msg) = switchover::leaderless_side(d, obs, cluster, f, running) {
            return msg;
        }
    }
    if obs.policy.pause {
        return format!("Lock owner: None; I am {me}; paused: no automatic failover");
    }
    if obs.policy.synchronous_mode
        && matches!(process, PgProcess::Running(_))
        && !crate::sync::may_promote(cluster, me)
    {
        let listed = cluster
            .sync
            .as_ref()
            .and_then(|s| s.sync_standby.clone())
            .unwrap_or_else(|| "none".into());
        return format!(
            "Lock owner: None; I am {me}; not racing: synchronous_mode is on and the sync key lists {listed}, not me"
        );
    }
    if let (PgProcess::Running(_), WatchdogView::Unusable(why)) = (process, &obs.watchdog) {
        return format!("Lock owner: None; I am {me}; not racing for the leader lock: {why}");
    }
    match process {
        PgProcess::Running(r) => {
            // In synchronous mode only members the sync key lists may take over: the others'
            // positions are no reason to hold back.
            let sync_peers: Option<Vec<PeerStatus>> = obs
                .policy
                .synchronous_mode
                .then_some(obs.peers.as_deref())
                .flatten()
                .map(|peers| {
                    peers
                        .iter()
                        .cloned()
                        .map(|mut p| {
                            if !crate::sync::may_promote(cluster, &p.name) {
                                if let Some(r) = p.reply.as_mut() {
                                    r.nofailover = true;
                                }
                            }
                            p
                        })
                        .collect()
                });
            let peers = sync_peers.as_deref().or(obs.peers.as_deref());
            let candidate = Candidate {
                me,
                local: r,
                nofailover: obs.nofailover,
                failover_priority: obs.failover_priority,
                former_leader: d.next.last_leader.as_deref(),
                check_lag: switchover::due(cluster, obs.now).is_none(),
            };
            match healthiest_verdict(&candidate, &obs.policy, cluster, peers) {
                RaceVerdict::NeedPeers => {
                    d.act(Action::ProbePeers);
                    format!("Lock owner: None; I am {me}")
                }
                RaceVerdict::NotHealthiest(why) => why,
                RaceVerdict::Eligible if crate::sync::quorum_needed(obs, cluster).is_some() => {
                    match quorum_refusal(obs, cluster, r) {
                        Some(why) => why,
                        None => take_over(d, obs, r),
                    }
                }
                RaceVerdict::Eligible => take_over(d, obs, r),
            }
        }
        PgProcess::NotReady => "not healthy enough for leader race".into(),
        PgProcess::Stopped => {
            d.act(Action::StartJob(JobKind::Start {
                role: Role::Replica { leader: None },
            }));
            format!("Lock owner: None; I am {me}; starting postgres as a read-only replica to join the leader race")
        }
    }
}

/// Quorum commit: why this candidate may not take over yet, if it may not. It must see, among
/// the other voters of the `sync` key, `quorum` that answer, and none of those may be ahead
/// of it (whatever their tags: a voter that acknowledged a commit has it).
pub(crate) fn quorum_refusal(
    obs: &Observation,
    cluster: &Cluster,
    r: &PgRunning,
) -> Option<String> {
    let (voters, needed) = crate::sync::quorum_needed(obs, cluster)?;
    let seen: Vec<&PeerStatus> = obs
        .peers
        .iter()
        .flatten()
        .filter(|p| voters.contains(&p.name))
        .filter(|p| p.reply.as_ref().is_some_and(|x| x.running))
        .collect();
    if let Some(ahead) = seen.iter().find(|p| {
        p.reply
            .as_ref()
            .is_some_and(|x| x.wal_position > r.wal_position)
    }) {
        return Some(format!(
            "Wal position of {} is ahead of my wal position (quorum voter)",
            ahead.name
        ));
    }
    let seen = seen.len() as u64;
    (seen < needed).then(|| {
        format!(
            "Lock owner: None; I am {}; not racing: quorum not reached, I see {seen} of the {needed} other voters needed ({})",
            obs.me,
            voters.join(",")
        )
    })
}

/// The race is ours: take the lock, then promote (or, already a primary, lead).
fn take_over(d: &mut Draft, obs: &Observation, r: &PgRunning) -> String {
    // The watchdog first: a node that cannot have one never takes the lock. A standby leader
    // is no primary and needs none (Patroni arms it only to run a primary).
    if !(r.in_recovery && obs.policy.standby_cluster.is_some()) {
        watchdog_before_leading(d, obs);
    }
    d.act(Action::AcquireLock);
    d.next.has_lock = true;
    if r.in_recovery && obs.policy.standby_cluster.is_some() {
        // A standby cluster stays one: the new leader follows the remote primary instead.
        return "acquired session lock as a standby leader".into();
    }
    if r.in_recovery {
        crate::sync::before_promotion(d, obs);
        d.act(Action::StartJob(JobKind::Promote));
        "promoted self to leader by acquiring session lock".into()
    } else {
        d.next.needs_rejoin = false;
        d.act(Action::WriteStatus);
        "acquired session lock as a leader".into()
    }
}

/// "max_connections = 150 (here 100), max_wal_senders = 12 (here 10)".
fn below_primary_text(settings: &[crate::SettingBelowPrimary]) -> String {
    settings
        .iter()
        .map(|s| format!("{} = {} (here {})", s.name, s.primary, s.standby))
        .collect::<Vec<_>>()
        .join(", ")
}
