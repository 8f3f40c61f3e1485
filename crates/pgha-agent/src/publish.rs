//! What the agent tells the world after each cycle: its member key in the DCS and the status
//! the REST API answers from.

use pgha_api::{NodeStatus, ReplicationInfo};
use pgha_config::Config;
use pgha_postgres::Probe;
use pgha_types::{Cluster, ClusterPolicy, MemberData, ScheduledRestart, PATRONI_COMPAT_VERSION};
use serde_json::{Map, Value};

/// Facts about the local postgres gathered this cycle.
#[derive(Debug, Clone, Default)]
pub struct LocalFacts {
    /// Patroni's state word: running, starting, stopped, crashed, creating replica, ...
    pub state: String,
    pub probe: Option<Probe>,
    pub system_id: Option<String>,
    /// This node leads a standby cluster (it holds the lock and replicates from the remote
    /// primary): its role is `standby_leader`, not `replica`.
    pub standby_leader: bool,
    /// pg_basebackup's progress while it creates this replica.
    pub basebackup_progress: Option<u8>,
}

impl LocalFacts {
    pub fn role(&self) -> Option<&'static str> {
        self.probe.as_ref().map(|p| match p.in_recovery {
            true if self.standby_leader => "standby_leader",
            true => "replica",
            false => "primary",
        })
    }
}

fn pending_reason(p: &Probe) -> Map<String, Value> {
    p.pending_restart
        .iter()
        .map(|(name, old, new)| {
            let mut m = Map::new();
            m.insert("old_value".into(), Value::from(old.clone()));
            m.insert("new_value".into(), Value::from(new.clone()));
            (name.clone(), Value::Object(m))
        })
        .collect()
}

/// The member record, with postmaster settings that wait for a restart and a scheduled restart.
pub fn member_data(
    cfg: &Config,
    facts: &LocalFacts,
    last_role: Option<&str>,
    cmdline_pending: &[(String, Option<String>, Option<String>)],
    scheduled: Option<ScheduledRestart>,
    paused: bool,
) -> MemberData {
    let mut d = MemberData {
        conn_url: Some(cfg.postgresql.conn_url()),
        api_url: Some(cfg.restapi.api_url()),
        state: Some(facts.state.clone()),
        role: Some(
            facts
                .role()
                .or(last_role)
                .unwrap_or("uninitialized")
                .to_string(),
        ),
        version: Some(PATRONI_COMPAT_VERSION.to_string()),
        tags: cfg
            .tags
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ..MemberData::default()
    };
    if let Some(pct) = facts.basebackup_progress {
        // Patroni's readers ignore keys they do not know; pghactl shows it in `list`.
        d.extra
            .insert("basebackup_progress".into(), Value::from(pct));
    }
    // Patroni publishes only the tags that are set; `false` ones are noise in `list -e`.
    d.tags.retain(|_, v| !matches!(v, Value::Bool(false)));
    if let Some(p) = &facts.probe {
        d.timeline = Some(p.timeline);
        if p.in_recovery {
            let recv = p.receive_lsn.map(|l| l.0);
            let replay = p.replay_lsn.map(|l| l.0);
            d.xlog_location = Some(recv.unwrap_or(0).max(replay.unwrap_or(0)));
            d.replay_lsn = replay;
            d.receive_lsn = recv;
            if p.receiver_streaming {
                d.replication_state = Some("streaming".into());
            }
        } else {
            d.xlog_location = p.wal_lsn.map(|l| l.0);
        }
        let mut reason = pending_reason(p);
        for (name, old, new) in cmdline_pending {
            let mut m = Map::new();
            m.insert(
                "old_value".into(),
                Value::from(old.clone().unwrap_or_default()),
            );
            m.insert(
                "new_value".into(),
                Value::from(new.clone().unwrap_or_default()),
            );
            reason.insert(name.clone(), Value::Object(m));
        }
        if !reason.is_empty() {
            d.pending_restart = Some(true);
            d.pending_restart_reason = Some(reason);
        }
    }
    d.scheduled_restart = scheduled;
    // patronictl's `pause --wait` watches the member keys for this.
    d.pause = paused.then_some(true);
    d
}

pub struct StatusInputs<'a> {
    pub member: MemberData,
    pub loop_stats: pgha_api::LoopStats,
    pub cfg: &'a Config,
    pub facts: &'a LocalFacts,
    pub is_leader: bool,
    pub cluster: Option<&'a Cluster>,
    pub policy: &'a ClusterPolicy,
    pub dcs_reachable: bool,
    pub dcs_last_seen: Option<i64>,
    pub last_role: Option<&'a str>,
    /// What `GET /patroni` shows as `scheduled_restart`.
    pub scheduled_restart: Option<Map<String, Value>>,
    /// `watchdog.mode` is required and the watchdog cannot be used.
    pub watchdog_failed: bool,
}

pub fn node_status(i: StatusInputs<'_>) -> NodeStatus {
    let p = i.facts.probe.as_ref();
    let member = i.member;
    NodeStatus {
        scope: i.cfg.scope.clone(),
        name: i.cfg.name.clone(),
        state: i.facts.state.clone(),
        basebackup_progress: i.facts.basebackup_progress,
        role: i.facts.role().or(i.last_role).map(str::to_string),
        is_leader: i.is_leader,
        postmaster_start_time: p.map(|p| p.postmaster_start_time.clone()),
        server_version: p.map(|p| p.server_version),
        timeline: p.map(|p| p.timeline),
        xlog_location: p.and_then(|p| p.wal_lsn).map(|l| l.0),
        received_location: p.and_then(|p| p.receive_lsn).map(|l| l.0),
        replayed_location: p.and_then(|p| p.replay_lsn).map(|l| l.0),
        replayed_timestamp: p.and_then(|p| p.replay_timestamp.clone()),
        replay_paused: p.is_some_and(|p| p.replay_paused),
        replication: p
            .map(|p| {
                p.replication
                    .iter()
                    .map(|r| ReplicationInfo {
                        usename: r.usename.clone(),
                        application_name: r.application_name.clone(),
                        client_addr: r.client_addr.clone(),
                        state: r.state.clone(),
                        sync_state: r.sync_state.clone(),
                        sync_priority: r.sync_priority,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        replication_state: member.replication_state.clone(),
        cluster_unlocked: !i.dcs_reachable || i.cluster.is_none_or(|c| c.leader.is_none()),
        pause: i.policy.pause,
        pending_restart: member.pending_restart.unwrap_or(false),
        pending_restart_reason: member.pending_restart_reason.clone().unwrap_or_default(),
        scheduled_restart: i.scheduled_restart,
        dcs_last_seen: i.dcs_last_seen,
        tags: member.tags.clone(),
        database_system_identifier: i.facts.system_id.clone(),
        loop_heartbeat: Some(std::time::Instant::now()),
        ttl: i.policy.ttl,
        maximum_lag_on_failover: i.policy.maximum_lag_on_failover,
        leader_optime: i.cluster.and_then(|c| c.status.optime),
        cluster: i.cluster.cloned(),
        dcs_reachable: i.dcs_reachable,
        loop_stats: i.loop_stats,
        watchdog_failed: i.watchdog_failed,
        // Set by the HA loop, which knows the failsafe state.
        failsafe_mode: i.policy.failsafe_mode,
        ..NodeStatus::default()
    }
}
