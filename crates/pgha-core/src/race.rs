//! Who may take the leader lock when there is no leader.

use pgha_types::{Cluster, ClusterPolicy};

use crate::{PeerStatus, PgRunning};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaceVerdict {
    /// Race for the lock.
    Eligible,
    /// Ask the other members for their positions first.
    NeedPeers,
    /// Stay out of the race; the reason is logged.
    NotHealthiest(String),
}

/// This node as a contender in the leader race.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub me: &'a str,
    pub local: &'a PgRunning,
    /// Not allowed to promote (`nofailover`, or `failover_priority` 0).
    pub nofailover: bool,
    pub failover_priority: i64,
    /// The leader seen last: a former leader still answering (e.g. after a switchover) does
    /// not keep us out of the race with its higher priority.
    pub former_leader: Option<&'a str>,
    /// Whether `maximum_lag_on_failover` applies; an operator's switchover or failover
    /// without a candidate skips it, as with Patroni.
    pub check_lag: bool,
}

/// Decides whether this node should race for the leader lock. A node races only if it may
/// fail over (no `nofailover` tag, `failover_priority` above 0), its WAL is within
/// `maximum_lag_on_failover` of the last position the old leader published, no peer is still
/// a running primary, no healthy peer that may fail over is ahead of it, and none at the same
/// position has a higher `failover_priority`. Peers that do not answer are left out: a dead
/// node cannot take the lock anyway, and waiting for it would stall the failover.
pub fn healthiest_verdict(
    c: &Candidate<'_>,
    policy: &ClusterPolicy,
    cluster: &Cluster,
    peers: Option<&[PeerStatus]>,
) -> RaceVerdict {
    let (me, local) = (c.me, c.local);
    if c.nofailover {
        return RaceVerdict::NotHealthiest(
            "following a different leader because I am not allowed to promote".into(),
        );
    }
    if c.check_lag && local.in_recovery {
        if let Some(optime) = cluster.status.optime {
            let lag = optime.saturating_sub(local.wal_position);
            if lag > policy.maximum_lag_on_failover {
                return RaceVerdict::NotHealthiest(format!(
                    "my wal position exceeds maximum replication lag: {lag} bytes behind the last leader position (maximum_lag_on_failover is {})",
                    policy.maximum_lag_on_failover
                ));
            }
        }
    }
    if let Some(why) = crate::failsafe::race_refusal(policy.failsafe_mode, cluster, me) {
        return RaceVerdict::NotHealthiest(why);
    }
    let extra = crate::failsafe::extra_race_peers(policy.failsafe_mode, cluster, me);
    let others: Vec<&str> = cluster
        .members
        .iter()
        .filter(|m| m.name != me && m.data.api_url.is_some())
        .map(|m| m.name.as_str())
        .chain(extra.iter().map(|(n, _)| n.as_str()))
        .collect();
    if others.is_empty() {
        return RaceVerdict::Eligible;
    }
    let Some(peers) = peers else {
        return RaceVerdict::NeedPeers;
    };
    for peer in peers {
        let Some(reply) = &peer.reply else { continue };
        if !reply.running {
            continue;
        }
        if reply.is_primary {
            return RaceVerdict::NotHealthiest(format!("Primary ({}) is still alive", peer.name));
        }
        if !reply.nofailover && reply.wal_position > local.wal_position {
            return RaceVerdict::NotHealthiest(format!(
                "Wal position of {} is ahead of my wal position",
                peer.name
            ));
        }
        if !reply.nofailover && reply.timeline > local.timeline {
            return RaceVerdict::NotHealthiest(format!(
                "{} is on a newer timeline ({}) than mine ({})",
                peer.name, reply.timeline, local.timeline
            ));
        }
        // Only a peer with postgres up and a position counts; the former leader's priority
        // is no reason to wait, it gave the lock up or lost it.
        let outranks = !reply.nofailover
            && reply.wal_position > 0
            && reply.wal_position == local.wal_position
            && reply.failover_priority > c.failover_priority
            && c.former_leader != Some(peer.name.as_str());
        if outranks {
            return RaceVerdict::NotHealthiest(format!(
                "{} is as far as I am and ranks higher: failover_priority {} > mine {}",
                peer.name, reply.failover_priority, c.failover_priority
            ));
        }
    }
    RaceVerdict::Eligible
}
