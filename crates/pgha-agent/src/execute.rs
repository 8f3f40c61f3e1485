//! Carrying out the core's actions with the adapters.

use anyhow::{Context, Result};
use chrono::Utc;
use pgha_core::{Action, Observation, Role};
use pgha_postgres::ConnTarget;
use pgha_types::{Cluster, HistoryEntry, Status};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::ha_loop::{stop_mode, Agent};

/// Runs one action. `Ok(false)` means "lost a race": the remaining actions are skipped.
pub async fn run(
    agent: &mut Agent,
    action: &Action,
    obs: &Observation,
    cluster: Option<&Cluster>,
) -> Result<bool> {
    let me = agent.cfg.name.clone();
    match action {
        Action::TakeInitializeLock => {
            let won = agent
                .dcs
                .initialize(true, "")
                .await
                .context("race for the initialize key")?;
            if !won {
                info!("failed to acquire initialize lock");
            }
            Ok(won)
        }
        Action::CancelInitialization => {
            agent
                .dcs
                .cancel_initialization()
                .await
                .context("remove the initialize key")?;
            Ok(true)
        }
        Action::AcquireLock => {
            // failsafe_mode: a leader that lost the DCS may still run and ping us; the REST
            // API stops accepting its pings before we race, or we stay out.
            let ttl = std::time::Duration::from_secs(agent.policy.ttl);
            if agent.policy.failsafe_mode && !agent.failsafe_memory.claim(ttl) {
                info!("not racing: a leader's POST /failsafe arrived less than ttl ago");
                agent.lost_race();
                return Ok(false);
            }
            agent
                .dcs
                .ensure_lease(agent.policy.ttl)
                .await
                .context("create an etcd lease")?;
            let won = agent
                .dcs
                .acquire_leader(&me)
                .await
                .context("race for the leader lock")?;
            if won {
                if cluster.is_some_and(|c| c.failover.is_some()) {
                    info!("Cleaning up failover key after acquiring leader lock...");
                    agent.dcs.put_key("failover", "{}").await.ok();
                }
            } else {
                info!("Could not take out TTL lock");
                agent.lost_race();
            }
            Ok(won)
        }
        Action::ReleaseLock => {
            agent
                .dcs
                .delete_leader(&me)
                .await
                .context("release the leader lock")?;
            info!("Leader key released");
            Ok(true)
        }
        // Both ask and decide again before the actions run (see the HA loop).
        Action::ProbePeers | Action::PostFailsafe => Ok(true),
        Action::ActivateWatchdog => {
            let (ttl, loop_wait) = (agent.policy.ttl, agent.policy.loop_wait);
            match agent
                .watchdog
                .activate(ttl, loop_wait, crate::ha_loop::now_ms())
            {
                Ok(()) => Ok(true),
                Err(why) => {
                    // The next cycle gives up the lock (or stays out of the race) at once.
                    agent.wake.notify_one();
                    Err(anyhow::anyhow!("not leading: {why}"))
                }
            }
        }
        Action::WriteFailsafe(map) => {
            let value = serde_json::to_string(map).context("encode the failsafe key")?;
            agent
                .dcs
                .put_key("failsafe", &value)
                .await
                .context("write the failsafe key")?;
            agent.failsafe_key = Some(map.clone());
            Ok(true)
        }
        Action::StartJob(kind) => {
            agent.start_job(kind.clone(), cluster);
            Ok(true)
        }
        Action::RemoveDeadLeader { leader, lease } => {
            if agent
                .dcs
                .delete_dead_leader(leader, *lease)
                .await
                .context("remove the dead leader's key")?
            {
                info!("removed the leader key of {leader}: its PostgreSQL and REST API refuse every member's connections");
                // The race follows at once, not a loop_wait later.
                agent.wake.notify_one();
            }
            Ok(true)
        }
        Action::KillPostgres => {
            let was_running = agent
                .pg
                .kill_instance()
                .context("kill postgres before giving up the lock")?;
            agent.watchdog.disable();
            if was_running {
                agent.callbacks.stopped();
            }
            Ok(true)
        }
        Action::Stop { mode } => {
            info!(
                "Demoting self ({})",
                match mode {
                    pgha_core::StopMode::Fast => "offline",
                    pgha_core::StopMode::Immediate => "immediate-nolock",
                }
            );
            let timeout = agent.pg.params().pg_ctl_timeout;
            let was_running = agent.pg.postmaster_pid().is_some();
            crate::jobs::before_stop(&agent.cfg, &agent.pg).await;
            agent
                .stop_postgres(stop_mode(*mode), timeout)
                .await
                .context("stop postgres")?;
            if was_running {
                agent.callbacks.stopped();
            }
            Ok(true)
        }
        Action::Follow { leader } => {
            let mut server = agent.server_config_for(
                &Role::Replica {
                    leader: Some(leader.clone()),
                },
                cluster,
            );
            let outcome = agent
                .pg
                .write_config(&mut server)
                .await
                .context("write the standby configuration")?;
            if outcome.changed {
                if outcome.standby_changed {
                    crate::jobs::ensure_upstream_slot(&agent.pg, &server).await;
                }
                info!("following new leader {leader}: primary_conninfo changed, reloading");
                agent.pg.reload().await.context("reload postgres")?;
                agent.callbacks.reloaded();
            }
            Ok(true)
        }
        Action::RemoveDataDirectory => {
            warn!("removing the contents of the data directory");
            agent
                .pg
                .remove_data_dir()
                .await
                .context("remove the data directory")?;
            Ok(true)
        }
        Action::SyncSlots(targets) => {
            // Slot problems are logged per slot and never stop the cycle.
            crate::slot_upkeep::sync(agent, targets, obs, cluster).await;
            Ok(true)
        }
        Action::WriteStatus => {
            let lsn = agent
                .last_probe
                .as_ref()
                .and_then(|p| p.wal_lsn)
                .map(|l| l.0)
                .unwrap_or(0);
            write_status(agent, cluster, lsn).await;
            Ok(true)
        }
        Action::UpdateHistory => {
            update_history(agent, obs, cluster).await;
            Ok(true)
        }
        Action::SetInitialize(sysid) => {
            agent
                .dcs
                .initialize(false, sysid)
                .await
                .context("write the initialize key")?;
            Ok(true)
        }
        Action::WriteInitialConfig => {
            // As Patroni, the leader stores the dynamic configuration it runs with: after the
            // key was deleted that is the last one seen (kept in memory and in
            // patroni.dynamic.json), so edits made before are not lost; at bootstrap it is
            // bootstrap.dcs.
            let (value, what) = match agent
                .saved_dynamic
                .clone()
                .or_else(|| crate::dynamic_cache::load(&agent.cfg.postgresql.data_dir))
            {
                Some(last) => (
                    serde_json::to_string(&last).context("serialise the dynamic configuration")?,
                    "the config key was missing: stored the last dynamic configuration seen",
                ),
                None => (
                    serde_json::to_string(&agent.cfg.bootstrap.dcs)
                        .context("serialise bootstrap.dcs")?,
                    "stored bootstrap.dcs as the cluster's dynamic configuration",
                ),
            };
            if agent
                .dcs
                .set_config(&value, Some(0))
                .await
                .context("write the config key")?
            {
                info!("{what}");
            }
            Ok(true)
        }
        Action::ClearFailover => {
            agent
                .dcs
                .put_key("failover", "{}")
                .await
                .context("empty the failover key")?;
            Ok(true)
        }
        Action::ApplyConfig { role } => {
            apply_config(agent, role, cluster).await?;
            Ok(true)
        }
        Action::WriteSyncKey { standbys, quorum } => {
            let value = serde_json::json!({
                "leader": agent.cfg.name,
                "quorum": quorum,
                "sync_standby": if standbys.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::String(standbys.join(","))
                },
            });
            agent
                .dcs
                .put_key("sync", &value.to_string())
                .await
                .context("write the sync key")?;
            Ok(true)
        }
        Action::DeleteSyncKey => {
            agent
                .dcs
                .delete_key("sync")
                .await
                .context("delete the sync key")?;
            info!("Disabled synchronous replication");
            Ok(true)
        }
        Action::Exit(_) => Ok(false),
    }
}

fn status_value(
    me: &str,
    optime: u64,
    cluster: Option<&Cluster>,
    probe_slots: &[(String, u64)],
    remembered: Option<&std::collections::BTreeMap<String, u64>>,
) -> Status {
    let mut status = Status {
        optime: Some(optime),
        ..Status::default()
    };
    status.slots.insert(pgha_core::slot_name(me), optime);
    for (name, lsn) in probe_slots {
        status.slots.insert(name.clone(), *lsn);
    }
    if let Some(c) = cluster {
        // Members present, and the departed ones whose slots member_slots_ttl keeps.
        let mut retain: Vec<String> = c.members.iter().map(|m| m.name.clone()).collect();
        retain.extend(remembered.into_iter().flat_map(|m| m.keys().cloned()));
        retain.sort();
        retain.dedup();
        status.retain_slots = retain;
    }
    status
}

async fn write_status(agent: &Agent, cluster: Option<&Cluster>, optime: u64) {
    // Physical slots and the permanent logical ones: what replicas advance their copies to.
    let permanent_logical = |name: &str| {
        agent
            .policy
            .permanent_slots
            .iter()
            .any(|s| s.is_logical() && s.name == name)
    };
    let slots: Vec<(String, u64)> = agent
        .last_probe
        .as_ref()
        .map(|p| {
            p.slots
                .iter()
                .filter(|s| !s.is_logical() || permanent_logical(&s.name))
                .filter_map(|s| Some((s.name.clone(), s.position()?.0)))
                .collect()
        })
        .unwrap_or_default();
    let status = status_value(
        &agent.cfg.name,
        optime,
        cluster,
        &slots,
        agent.state.member_seen.as_ref(),
    );
    if cluster.is_some_and(|c| c.status == status) {
        return;
    }
    let value = serde_json::to_string(&status).expect("status always serializes");
    if let Err(e) = agent.dcs.put_key("status", &value).await {
        warn!("could not write the status key: {e}");
    }
}

/// After a clean shutdown the leader publishes its final position for the replicas' race.
pub async fn write_final_status(agent: &Agent, optime: u64) {
    let cluster = agent.dcs.load_cluster().await.ok();
    write_status(agent, cluster.as_ref(), optime).await;
}

/// Records the timelines of our history file that the `history` key lacks, stamping the newest
/// with now and our name, as Patroni does after a promotion.
async fn update_history(agent: &Agent, obs: &Observation, cluster: Option<&Cluster>) {
    let Some(probe) = &agent.last_probe else {
        return;
    };
    let target = ConnTarget {
        host: agent.pg.params().local_host.clone(),
        port: agent.pg.params().port,
    };
    let switches = match agent.pg.timeline_history(&target, probe.timeline).await {
        Ok(s) => s,
        Err(e) => {
            warn!("could not read our timeline history: {e}");
            return;
        }
    };
    let mut entries: Vec<HistoryEntry> = cluster.map(|c| c.history.clone()).unwrap_or_default();
    let known: Vec<u64> = entries.iter().map(|e| e.timeline).collect();
    let stamp = chrono::DateTime::<Utc>::from_timestamp_millis(obs.now as i64)
        .unwrap_or_else(Utc::now)
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string();
    let last = switches.iter().map(|s| u64::from(s.timeline)).max();
    for s in &switches {
        let tl = u64::from(s.timeline);
        if known.contains(&tl) {
            continue;
        }
        let newest = Some(tl) == last;
        entries.push(HistoryEntry {
            timeline: tl,
            lsn: s.lsn.0,
            reason: s.reason.clone(),
            timestamp: Some(stamp.clone()),
            new_leader: newest.then(|| agent.cfg.name.clone()),
        });
    }
    entries.sort_by_key(|e| e.timeline);
    let value = Value::Array(entries.iter().map(HistoryEntry::to_json).collect());
    if let Err(e) = agent.dcs.put_key("history", &value.to_string()).await {
        warn!("could not write the history key: {e}");
    }
}

/// "Changed work_mem from 4096 to 8MB", one line per parameter: the old value as the server
/// runs it (pg_settings, in its base unit), the new one as configured, and "(restart might be
/// required)" for postmaster-context settings, as operators know it from Patroni. Falls back to
/// the old file value when postgres cannot tell.
async fn log_changed_parameters(
    agent: &Agent,
    changed: &[(String, Option<String>, Option<String>)],
) {
    if changed.is_empty() {
        return;
    }
    let names: Vec<String> = changed.iter().map(|(n, _, _)| n.clone()).collect();
    let specs = if agent.pg.postmaster_pid().is_some() {
        agent.pg.guc_specs(&names).await.unwrap_or_else(|e| {
            debug!("cannot read pg_settings for the change log: {e}");
            Vec::new()
        })
    } else {
        Vec::new()
    };
    for (name, old, new) in changed {
        let spec = specs.iter().find(|s| &s.name == name);
        let old = spec
            .map(|s| s.setting.as_str())
            .or(old.as_deref())
            .unwrap_or("(default)");
        let restart = if spec.is_some_and(|s| s.context == "postmaster") {
            " (restart might be required)"
        } else {
            ""
        };
        info!(
            "Changed {name} from {old} to {}{restart}",
            new.as_deref().unwrap_or("(default)")
        );
    }
}

/// Brings postgresql.conf in line with the dynamic and local configuration; reloads postgres
/// when it changed and notes what only a restart applies.
async fn apply_config(agent: &mut Agent, role: &Role, cluster: Option<&Cluster>) -> Result<()> {
    let mut server = agent.server_config_for(role, cluster);
    let started = agent
        .last_probe
        .as_ref()
        .map(|p| p.postmaster_start_time.clone());
    let applied = (server.clone(), started);
    if !agent.force_reload && agent.applied_config.as_ref() == Some(&applied) {
        return Ok(());
    }
    agent.applied_config = None;
    let outcome = agent
        .pg
        .write_config(&mut server)
        .await
        .context("write postgresql.conf")?;
    // A standby holding the primary's higher settings keeps checking the control file.
    let settled = outcome.held.is_empty();
    log_changed_parameters(agent, &outcome.changed_parameters).await;
    if outcome.command_line_changes != agent.cmdline_pending {
        for (name, old, new) in &outcome.command_line_changes {
            info!(
                "Changed {name} from {} to {} (restart might be required)",
                old.as_deref().unwrap_or("(default)"),
                new.as_deref().unwrap_or("(default)")
            );
        }
        agent.cmdline_pending = outcome.command_line_changes.clone();
    }
    if outcome.changed || agent.force_reload {
        agent.force_reload = false;
        agent.pg.reload().await.context("reload postgres")?;
        info!("Reloading PostgreSQL configuration.");
        agent.callbacks.reloaded();
    }
    if settled {
        agent.applied_config = Some(applied);
    }
    Ok(())
}
