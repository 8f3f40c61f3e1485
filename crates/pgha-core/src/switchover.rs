//! Planned switchover and manual failover, driven by the DCS `failover` key
//! (`{"leader": old, "member": candidate, "scheduled_at": ...}`), as Patroni does.

use pgha_types::{Cluster, Failover};

use crate::decide::Draft;
use crate::{Action, JobKind, Observation, PgRunning, StopMode, WatchdogView};

/// The `failover` key if it asks for something now.
pub(crate) fn due(cluster: &Cluster, now: u64) -> Option<&Failover> {
    cluster.failover.as_ref().filter(|f| f.is_due(now))
}

fn healthy(cluster: &Cluster, name: &str) -> bool {
    cluster.member(name).is_some_and(|m| m.may_promote())
}

/// Allowed by synchronous mode (if on) to become the leader.
fn eligible_to_promote(obs: &Observation, cluster: &Cluster, name: &str) -> bool {
    !obs.policy.synchronous_mode || crate::sync::may_promote(cluster, name)
}

/// Healthy, and in synchronous mode listed in the `sync` key.
fn eligible(obs: &Observation, cluster: &Cluster, name: &str) -> bool {
    healthy(cluster, name) && eligible_to_promote(obs, cluster, name)
}

/// The leader's part: check the request, then stop cleanly (every WAL record reaches the
/// candidate) and hand over the lock. `None` when there is nothing to do.
pub(crate) fn leader_side(
    d: &mut Draft,
    obs: &Observation,
    cluster: &Cluster,
    f: &Failover,
) -> Option<String> {
    let me = obs.me.as_str();
    let kind = if f.leader.is_some() {
        "switchover"
    } else {
        "manual failover"
    };
    let refuse = |d: &mut Draft, why: String| {
        d.act(Action::ClearFailover);
        Some(format!("{kind}: {why}"))
    };
    if let Some(l) = f.leader.as_deref() {
        if l != me {
            return refuse(d, format!("leader name does not match: {l} != {me}"));
        }
    }
    match f.member.as_deref() {
        Some(c) if c == me => {
            return refuse(d, "I am already the leader, no need to switch over".into())
        }
        Some(c) if cluster.member(c).is_none() => {
            return refuse(d, format!("candidate {c} does not exist"))
        }
        Some(c) if !healthy(cluster, c) => return refuse(d, format!("member {c} is not healthy")),
        Some(c) if !eligible(obs, cluster, c) => {
            return refuse(
                d,
                format!("candidate {c} is not a synchronous standby (synchronous_mode is on)"),
            )
        }
        Some(_) => {}
        None => {
            if !cluster
                .members
                .iter()
                .any(|m| m.name != me && eligible(obs, cluster, &m.name))
            {
                return refuse(d, "no healthy members found to switch over to".into());
            }
        }
    }
    d.next.has_lock = false;
    d.next.needs_rejoin = true;
    d.next.restart_after_demote = true;
    d.act(Action::Stop {
        mode: StopMode::Fast,
    });
    d.act(Action::ReleaseLock);
    Some(format!("{kind}: demoting myself"))
}

/// A member's part while the cluster has no leader and a switchover or failover is pending.
/// `None`: race as usual.
pub(crate) fn leaderless_side(
    d: &mut Draft,
    obs: &Observation,
    cluster: &Cluster,
    f: &Failover,
    running: Option<&PgRunning>,
) -> Option<String> {
    let me = obs.me.as_str();
    match f.member.as_deref() {
        // In synchronous mode only a member the sync key allows may take over, whoever the
        // operator named: anyone else may lack acknowledged commits. The race decides then.
        Some(c) if c == me && eligible_to_promote(obs, cluster, me) => {
            let r = running?;
            if let (WatchdogView::Unusable(why), false) = (&obs.watchdog, obs.policy.pause) {
                // As with Patroni, the others then race as if no candidate had been named.
                d.act(Action::ClearFailover);
                return Some(format!(
                    "Lock owner: None; I am {me}; cannot take over as the designated candidate: {why}"
                ));
            }
            // Quorum commit: the named candidate must prove it holds every acknowledged
            // commit as any racer must; if it cannot, the others race without it.
            if crate::sync::quorum_needed(obs, cluster).is_some() {
                if obs.peers.is_none() {
                    d.act(Action::ProbePeers);
                    return Some(format!("Lock owner: None; I am {me}"));
                }
                if let Some(why) = crate::decide::quorum_refusal(obs, cluster, r) {
                    d.act(Action::ClearFailover);
                    return Some(format!("{why}; giving up the designated candidacy"));
                }
            }
            crate::decide::watchdog_before_leading(d, obs);
            d.act(Action::AcquireLock);
            d.next.has_lock = true;
            if r.in_recovery {
                crate::sync::before_promotion(d, obs);
                d.act(Action::StartJob(JobKind::Promote));
                Some("promoted self to leader by acquiring session lock".into())
            } else {
                d.act(Action::WriteStatus);
                Some("acquired session lock as a leader".into())
            }
        }
        Some(c) if eligible(obs, cluster, c) => Some(format!(
            "Lock owner: None; I am {me}; waiting for the designated candidate {c} to take the lock"
        )),
        None if f.leader.as_deref() == Some(me)
            && cluster
                .members
                .iter()
                .any(|m| m.name != me && eligible(obs, cluster, &m.name)) =>
        {
            Some(format!(
                "Lock owner: None; I am {me}; not racing: I handed over leadership in a switchover"
            ))
        }
        _ => None,
    }
}
