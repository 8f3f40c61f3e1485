//! When a replica may take a dead leader's key without waiting for its lease.
//!
//! The adapter probes the leader's PostgreSQL and REST ports (a refused TCP connection comes
//! from the leader's host itself: it answers and nothing listens) and asks every other member
//! for its own probe (`GET /leader-refusing`). This module judges those facts. The proof must
//! hold for every member: a member that does not answer, answers about another leader, or has
//! no such endpoint (a Patroni member in a mixed cluster) leaves the lease to decide, because a
//! partition that isolates us from the leader looks like a refusal to nobody else.

use pgha_types::Cluster;

/// How many quick rechecks a replica runs while its own probe finds the leader refusing and
/// the others have not confirmed it yet (they probe in their own cycles, woken like ours).
pub const REFUSING_RECHECKS: u32 = 10;

/// What the other members said about the leader (`GET /leader-refusing`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalAnswer {
    pub member: String,
    /// The leader that member finds refusing; None when it does not, or did not answer.
    pub refusing: Option<String>,
}

/// The judgement of one cycle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeadLeaderVerdict {
    /// The leader proven dead: its key may be removed before it expires.
    pub proven: Option<String>,
    /// Run the next cycle soon: our probe finds it refusing, the others have not confirmed yet.
    pub recheck: bool,
    /// The recheck counter for the next cycle.
    pub rechecks: u32,
}

/// Whether this member should probe the leader at all: only a running replica whose streaming
/// stopped (a live leader keeps it streaming), not paused, not `nostream` (never streams).
pub fn should_probe(in_recovery: bool, streaming: bool, pause: bool, nostream: bool) -> bool {
    in_recovery && !streaming && !pause && !nostream
}

/// Every member other than us and the leader must name the same leader as refusing.
/// `own` is our own probe's result; `rechecks` how many quick rechecks were already spent.
pub fn judge(
    cluster: &Cluster,
    me: &str,
    own: Option<&str>,
    answers: &[RefusalAnswer],
    rechecks: u32,
) -> DeadLeaderVerdict {
    let Some(leader) = own.filter(|l| cluster.leader_name() == Some(*l) && *l != me) else {
        return DeadLeaderVerdict::default();
    };
    let all_agree = cluster
        .members
        .iter()
        .filter(|m| m.name != me && m.name != leader)
        .all(|m| {
            answers
                .iter()
                .any(|a| a.member == m.name && a.refusing.as_deref() == Some(leader))
        });
    if all_agree {
        return DeadLeaderVerdict {
            proven: Some(leader.to_string()),
            recheck: false,
            rechecks,
        };
    }
    let recheck = rechecks < REFUSING_RECHECKS;
    DeadLeaderVerdict {
        proven: None,
        recheck,
        rechecks: if recheck { rechecks + 1 } else { rechecks },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgha_types::{Leader, Member, MemberData};

    fn cluster(members: &[&str], leader: &str) -> Cluster {
        Cluster {
            leader: Some(Leader {
                name: leader.into(),
                lease: 7,
                mod_revision: 1,
            }),
            members: members
                .iter()
                .map(|n| Member {
                    name: n.to_string(),
                    data: MemberData::default(),
                    lease: 1,
                })
                .collect(),
            ..Cluster::default()
        }
    }

    fn says(member: &str, refusing: Option<&str>) -> RefusalAnswer {
        RefusalAnswer {
            member: member.into(),
            refusing: refusing.map(str::to_string),
        }
    }

    #[test]
    fn every_other_member_agreeing_proves_the_leader_dead() {
        let c = cluster(&["pg1", "pg2", "pg3"], "pg1");
        let v = judge(&c, "pg2", Some("pg1"), &[says("pg3", Some("pg1"))], 0);
        assert_eq!(v.proven.as_deref(), Some("pg1"));
        assert!(!v.recheck);
    }

    #[test]
    fn a_member_that_does_not_confirm_leaves_it_to_the_lease_and_asks_again_soon() {
        let c = cluster(&["pg1", "pg2", "pg3"], "pg1");
        for answers in [
            vec![says("pg3", None)],
            vec![],
            vec![says("pg3", Some("pg9"))],
        ] {
            let v = judge(&c, "pg2", Some("pg1"), &answers, 3);
            assert_eq!(v.proven, None, "{answers:?}");
            assert!(v.recheck);
            assert_eq!(v.rechecks, 4);
        }
    }

    #[test]
    fn quick_rechecks_are_bounded() {
        let c = cluster(&["pg1", "pg2", "pg3"], "pg1");
        let v = judge(&c, "pg2", Some("pg1"), &[], REFUSING_RECHECKS);
        assert_eq!(v.proven, None);
        assert!(!v.recheck);
        assert_eq!(v.rechecks, REFUSING_RECHECKS);
    }

    #[test]
    fn nothing_refusing_resets_the_rechecks() {
        let c = cluster(&["pg1", "pg2", "pg3"], "pg1");
        assert_eq!(judge(&c, "pg2", None, &[], 5), DeadLeaderVerdict::default());
    }

    #[test]
    fn a_probe_of_a_member_that_no_longer_leads_proves_nothing() {
        // The key moved between our probe and the judgement (or we lead now ourselves).
        let c = cluster(&["pg1", "pg2", "pg3"], "pg3");
        let v = judge(&c, "pg2", Some("pg1"), &[says("pg3", Some("pg1"))], 0);
        assert_eq!(v, DeadLeaderVerdict::default());
        let c = cluster(&["pg1", "pg2"], "pg2");
        assert_eq!(
            judge(&c, "pg2", Some("pg2"), &[], 0),
            DeadLeaderVerdict::default()
        );
    }

    #[test]
    fn with_two_members_our_own_probe_is_the_whole_proof() {
        let c = cluster(&["pg1", "pg2"], "pg1");
        let v = judge(&c, "pg2", Some("pg1"), &[], 0);
        assert_eq!(v.proven.as_deref(), Some("pg1"));
    }

    #[test]
    fn only_a_replica_that_stopped_streaming_probes() {
        assert!(should_probe(true, false, false, false));
        assert!(!should_probe(true, true, false, false), "streaming");
        assert!(!should_probe(false, false, false, false), "a primary");
        assert!(!should_probe(true, false, true, false), "paused");
        assert!(!should_probe(true, false, false, true), "nostream");
    }
}
