//! `failsafe_mode`: a primary that loses the DCS keeps running while every member it knows of
//! confirms, over the REST API, that it still follows it.
//!
//! The reasoning (Patroni 4.1.5's): while the DCS is down nobody can take the leader key, so
//! the only danger is a member that can still reach the DCS and takes the key once ours has
//! expired. The leader therefore keeps the list of all members in the `failsafe` key while the
//! DCS works; without the DCS it sends `POST /failsafe` to each of them every cycle and stays
//! primary only if all accept. A member that accepted treats the sender as leader for `ttl`
//! (it does not race for the key meanwhile), a member running as primary refuses, and one the
//! leader cannot reach makes it demote as it would without failsafe mode. A member the key does
//! not list never races while failsafe mode is on: the leader would not have asked it.

use std::collections::BTreeMap;

use pgha_types::{Cluster, Leader, Member, MemberData};

use crate::decide::Draft;
use crate::{Action, HaState, Observation};

/// What the agent knows about failsafe mode this cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailsafeObs {
    /// The `failsafe` key (member name → api_url) as last read from or written to the DCS;
    /// kept while the DCS is unreachable.
    pub topology: Option<BTreeMap<String, String>>,
    /// This member's own `/patroni` URL: the leader lists itself even before its member key
    /// is visible.
    pub my_api_url: Option<String>,
    /// Answers to `POST /failsafe`; filled only when the previous decision asked for them
    /// ([`Action::PostFailsafe`]).
    pub replies: Option<Vec<FailsafeReply>>,
    /// The last `POST /failsafe` this member accepted.
    pub leader_ping: Option<LeaderPing>,
}

/// A member's answer to our `POST /failsafe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailsafeReply {
    pub name: String,
    /// 200 with the body `Accepted`; anything else (no answer, an error, a refusal) is false.
    pub accepted: bool,
    /// Its received/replayed WAL position (the `lsn` header), if it sent one.
    pub lsn: Option<u64>,
}

/// A leader's `POST /failsafe` this member accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderPing {
    pub name: String,
    pub conn_url: Option<String>,
    pub api_url: Option<String>,
    /// Milliseconds since it arrived.
    pub age_ms: u64,
}

/// What a primary without the DCS does under failsafe mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every member confirmed (or there is nobody else): stay primary.
    Continue,
    /// Ask the members first.
    Ask,
    /// Demote; the reason is appended to the log line.
    Demote(String),
}

/// The decision for a running primary that cannot reach the DCS, with `failsafe_mode` on.
pub(crate) fn primary_without_dcs(obs: &Observation) -> Verdict {
    let me = obs.me.as_str();
    let Some(topology) = obs.failsafe.topology.as_ref() else {
        return Verdict::Demote("there is no failsafe key to know the members by".into());
    };
    if !topology.contains_key(me) {
        return Verdict::Demote("the failsafe key does not list me".into());
    }
    let others: Vec<&str> = topology
        .keys()
        .map(String::as_str)
        .filter(|n| *n != me)
        .collect();
    if others.is_empty() {
        return Verdict::Continue;
    }
    let Some(replies) = obs.failsafe.replies.as_ref() else {
        return Verdict::Ask;
    };
    let refused: Vec<&str> = others
        .into_iter()
        .filter(|n| !replies.iter().any(|r| r.name == *n && r.accepted))
        .collect();
    if refused.is_empty() {
        Verdict::Continue
    } else {
        Verdict::Demote(format!(
            "failsafe mode: not confirmed by {}",
            refused.join(", ")
        ))
    }
}

/// Handles a running primary without the DCS when `failsafe_mode` is on. Returns the log line
/// when it stays primary or asks first; `None` lets the caller demote (see `demote_reason`).
pub(crate) fn unreachable_primary(d: &mut Draft, obs: &Observation) -> Result<String, String> {
    match primary_without_dcs(obs) {
        Verdict::Continue => {
            // As Patroni: the leader claim holds (health checks keep routing writes here).
            d.next.has_lock = true;
            d.next.failsafe_active = true;
            Ok(
                "continue to run as a leader because failsafe mode is enabled and all members are accessible"
                    .into(),
            )
        }
        Verdict::Ask => {
            d.act(Action::PostFailsafe);
            Ok(format!(
                "DCS is not accessible; failsafe mode: asking the members whether {} may stay primary",
                obs.me
            ))
        }
        Verdict::Demote(why) => {
            d.next.failsafe_active = false;
            Err(why)
        }
    }
}

/// The `failsafe` key the leader wants: every member with an api_url, and itself.
pub fn wanted_topology(obs: &Observation, cluster: &Cluster) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = cluster
        .members
        .iter()
        .filter_map(|m| Some((m.name.clone(), m.data.api_url.clone()?)))
        .collect();
    if !map.contains_key(&obs.me) {
        if let Some(url) = &obs.failsafe.my_api_url {
            map.insert(obs.me.clone(), url.clone());
        }
    }
    map
}

/// The leader keeps the `failsafe` key current while failsafe mode is on. When it is off the
/// key is left as it is, as Patroni does (a leftover key is only shown by `GET /failsafe`; it
/// is rewritten before it is used again).
pub(crate) fn leader_upkeep(d: &mut Draft, obs: &Observation, cluster: &Cluster) {
    if !obs.policy.failsafe_mode {
        return;
    }
    let wanted = wanted_topology(obs, cluster);
    if wanted.is_empty() || cluster.failsafe.as_ref() == Some(&wanted) {
        return;
    }
    d.act(Action::WriteFailsafe(wanted));
}

/// The cluster as this member should act on it: with failsafe mode on and no leader key, a
/// leader whose `POST /failsafe` we accepted less than `ttl` ago is still our leader (its key
/// may have expired because only it lost the DCS). `None`: use the DCS view unchanged.
pub fn effective_cluster(obs: &Observation, cluster: &Cluster) -> Option<Cluster> {
    if !obs.policy.failsafe_mode || cluster.leader.is_some() {
        return None;
    }
    let ping = obs.failsafe.leader_ping.as_ref()?;
    if ping.name == obs.me || ping.age_ms >= obs.policy.ttl.saturating_mul(1000) {
        return None;
    }
    let mut c = cluster.clone();
    c.leader = Some(Leader {
        name: ping.name.clone(),
        lease: 0,
        mod_revision: 0,
    });
    if c.member(&ping.name).is_none() {
        c.members.push(Member {
            name: ping.name.clone(),
            data: MemberData {
                conn_url: ping.conn_url.clone(),
                api_url: ping.api_url.clone(),
                state: Some("running".into()),
                role: Some("primary".into()),
                ..MemberData::default()
            },
            lease: 0,
        });
    }
    Some(c)
}

/// Failsafe mode is active on this member: as the leader, it stays primary without the DCS
/// on its members' word; as a replica, a leader's `POST /failsafe` arrived less than `ttl` ago.
pub fn is_active(state: &HaState, obs: &Observation) -> bool {
    let ttl_ms = obs.policy.ttl.saturating_mul(1000);
    state.failsafe_active
        || (obs.policy.failsafe_mode
            && obs
                .failsafe
                .leader_ping
                .as_ref()
                .is_some_and(|p| p.age_ms < ttl_ms))
}

/// Why a member stays out of the leader race under failsafe mode: the `failsafe` key lists the
/// members the last leader asked, and a member it does not list was never asked.
pub(crate) fn race_refusal(failsafe_mode: bool, cluster: &Cluster, me: &str) -> Option<String> {
    let listed = cluster.failsafe.as_ref().filter(|m| !m.is_empty())?;
    (failsafe_mode && !listed.contains_key(me)).then(|| {
        "not racing: failsafe_mode is on and the failsafe key does not list me".to_string()
    })
}

/// Members to ask in a leader race besides those with a member key: under failsafe mode, those
/// the `failsafe` key lists (a leader cut off from the DCS has lost its member key).
pub fn extra_race_peers(failsafe_mode: bool, cluster: &Cluster, me: &str) -> Vec<(String, String)> {
    let Some(listed) = cluster.failsafe.as_ref().filter(|_| failsafe_mode) else {
        return Vec::new();
    };
    listed
        .iter()
        .filter(|(name, _)| name.as_str() != me && cluster.member(name).is_none())
        .map(|(n, u)| (n.clone(), u.clone()))
        .collect()
}
