//! Carrying out the core's slot plan: member slots, permanent slots (created on the primary,
//! created or copied and advanced on replicas), `ignore_slots`. Every problem is logged with the
//! slot's name and skipped; nothing here stops the HA cycle.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pgha_core::{plan_slots, Observation, Role, SlotTargets};
use pgha_postgres::{ConnTarget, StopMode};
use pgha_types::{Cluster, SlotKind};
use tracing::{info, warn};

use crate::ha_loop::Agent;

/// A logical slot is copied from the primary (a postgres restart) at most this often.
const MIN_COPY_INTERVAL: Duration = Duration::from_secs(10);

/// Lines of this cycle; each is logged only when it was not logged in the previous cycle, so
/// a lasting problem (a bad setting, a slot that cannot be created) shows once, not every loop.
#[derive(Default)]
struct Notes {
    lines: BTreeSet<String>,
}

impl Notes {
    fn warn(&mut self, line: String) {
        self.lines.insert(line);
    }
}

pub async fn sync(
    agent: &mut Agent,
    t: &SlotTargets,
    obs: &Observation,
    cluster: Option<&Cluster>,
) {
    let mut notes = Notes::default();
    for line in &t.skipped {
        notes.warn(line.clone());
    }
    run(agent, t, obs, cluster, &mut notes).await;
    for line in &notes.lines {
        if !agent.slot_notes.contains(line) {
            warn!("{line}");
        }
    }
    agent.slot_notes = notes.lines;
}

async fn run(
    agent: &mut Agent,
    t: &SlotTargets,
    obs: &Observation,
    cluster: Option<&Cluster>,
    notes: &mut Notes,
) {
    // This cycle's probe listed the slots: nothing is queried unless something is to change.
    let Some(probe) = agent.last_probe.as_ref() else {
        return;
    };
    let plan = plan_slots(t, &probe.slots, probe.replay_lsn);
    if plan.is_empty() {
        return;
    }
    let pg = agent.pg.clone();
    for name in &plan.drop {
        match pg.drop_inactive_slot(name).await {
            Ok(true) => info!("dropped unknown replication slot {name}"),
            Ok(false) => {}
            Err(e) => notes.warn(format!("could not drop replication slot {name}: {e}")),
        }
    }
    for name in &plan.create_physical {
        match pg.create_physical_slot(name).await {
            Ok(()) => info!("created replication slot {name}"),
            Err(e) => notes.warn(format!(
                "could not create physical replication slot {name}: {e}"
            )),
        }
    }
    for s in &plan.create_logical {
        let SlotKind::Logical { database, plugin } = &s.kind else {
            continue;
        };
        match pg.create_logical_slot(&s.name, database, plugin).await {
            Ok(()) => info!(
                "created logical replication slot {} (database {database}, plugin {plugin})",
                s.name
            ),
            Err(e) => notes.warn(format!(
                "slots.{}: could not create the logical replication slot (database {database}, plugin {plugin}): {e}",
                s.name
            )),
        }
    }
    let mut copy = plan.copy.clone();
    for a in &plan.advance {
        if let Err(e) = pg.advance_slot(&a.name, a.database.as_deref(), a.lsn).await {
            notes.warn(format!(
                "could not advance replication slot {} to {}: {e}",
                a.name, a.lsn
            ));
            // A copy that cannot move on (e.g. the WAL it starts from is gone here) is
            // replaced by a fresh one from the primary, as Patroni does.
            if a.database.is_some() {
                copy.push(a.name.clone());
            }
        }
    }
    if !copy.is_empty() && !t.primary {
        copy_logical_slots(agent, t, obs, cluster, &copy, notes).await;
    }
}

/// Copies the primary's state of the logical slots `names` into this standby and restarts
/// postgres to load them (PostgreSQL 15 reads slots only at start).
async fn copy_logical_slots(
    agent: &mut Agent,
    t: &SlotTargets,
    obs: &Observation,
    cluster: Option<&Cluster>,
    names: &[String],
    notes: &mut Notes,
) {
    let now = Instant::now();
    let Some(cluster) = cluster else {
        return;
    };
    let Some(leader) = cluster.leader_name() else {
        return;
    };
    let Some((host, port)) = cluster.member(leader).and_then(|m| m.host_port()) else {
        return;
    };
    let source = ConnTarget { host, port };
    let states = match agent.pg.primary_slot_states(&source, names).await {
        Ok(s) => s,
        Err(e) => {
            notes.warn(format!(
                "could not read logical slots {} from the leader {leader}: {e}",
                names.join(", ")
            ));
            return;
        }
    };
    let states: Vec<_> = states
        .into_iter()
        .filter(|s| {
            let wanted = t.permanent.iter().find(|p| p.name == s.name);
            let fits = wanted.is_some_and(|p| s.is(&p.kind));
            if !fits {
                notes.warn(format!(
                    "slots.{}: the leader's slot (database {}, plugin {}) is not as configured; not copied",
                    s.name, s.database, s.plugin
                ));
            }
            // A copy restarts postgres: not again soon, nor of the very state copied last (it
            // would fail the same way).
            let last = agent.slot_copies.get(&s.name);
            fits && last.is_none_or(|(at, state)| {
                now.duration_since(*at) >= MIN_COPY_INTERVAL && *state != s.state
            })
        })
        .collect();
    if states.is_empty() {
        return;
    }
    for s in &states {
        agent
            .slot_copies
            .insert(s.name.clone(), (now, s.state.clone()));
    }
    let list: Vec<&str> = states.iter().map(|s| s.name.as_str()).collect();
    info!(
        "copying logical replication slots {} from the leader {leader}; restarting postgres to load them",
        list.join(", ")
    );
    crate::jobs::before_stop(&agent.cfg, &agent.pg).await;
    let timeout = agent.pg.params().pg_ctl_timeout;
    if let Err(e) = agent.pg.stop(StopMode::Fast, timeout).await {
        notes.warn(format!(
            "could not stop postgres to copy logical slots: {e}"
        ));
        return;
    }
    for s in &states {
        match agent.pg.install_slot_state(s) {
            Ok(()) => info!("copied logical replication slot {} from {leader}", s.name),
            Err(e) => notes.warn(format!(
                "slots.{}: could not install the copy of the slot: {e}",
                s.name
            )),
        }
    }
    // Started as a job, as after any stop: the loop keeps running while postgres starts.
    let upstream = pgha_core::upstream(cluster, &obs.me, obs.replicatefrom.as_deref(), leader);
    agent.start_job(
        pgha_core::JobKind::Start {
            role: Role::Replica {
                leader: Some(upstream),
            },
        },
        Some(cluster),
    );
}
