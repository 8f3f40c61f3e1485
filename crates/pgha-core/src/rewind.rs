//! Whether a former primary can follow the new leader as it is.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Divergence {
    /// Its WAL is a prefix of the leader's history: start it as a replica.
    InSync,
    /// It wrote WAL the leader never saw: rewind (or re-clone) before following.
    Diverged(String),
}

/// Compares the local end of WAL (timeline, position of the last checkpoint) with the leader's
/// timeline history (`(timeline, switch position)` pairs: the position where that timeline
/// ended). A local position at or beyond the switch point counts as diverged: a shutdown
/// checkpoint written exactly at the switch point is not part of the leader's history either.
///
/// `local_history` is our own history file's `(timeline, switch position)` pairs (empty when
/// unknown): a timeline that ended somewhere else here than in the leader's history means the
/// two servers forked from different pasts, even on the same timeline number (two promotions
/// that picked the same number).
pub fn assess_divergence(
    local_tl: u32,
    local_lsn: u64,
    leader_tl: u32,
    history: &[(u32, u64)],
    local_history: &[(u32, u64)],
) -> Divergence {
    use pgha_types::Lsn;
    for (tl, ours) in local_history.iter().filter(|(tl, _)| *tl < local_tl) {
        if let Some((_, theirs)) = history.iter().find(|(t, _)| t == tl) {
            if theirs != ours {
                return Divergence::Diverged(format!(
                    "timeline {tl} ended at {} here and at {} in the leader's history",
                    Lsn(*ours),
                    Lsn(*theirs)
                ));
            }
        }
    }
    if local_tl == leader_tl {
        return Divergence::InSync;
    }
    if local_tl > leader_tl {
        return Divergence::Diverged(format!(
            "local timeline {local_tl} is newer than the leader's timeline {leader_tl}"
        ));
    }
    match history.iter().find(|(tl, _)| *tl == local_tl) {
        None => Divergence::Diverged(format!(
            "local timeline {local_tl} is not in the leader's history"
        )),
        Some((_, switch)) if local_lsn >= *switch => Divergence::Diverged(format!(
            "Local timeline={local_tl} lsn={} is at or past the switch point {} of the leader's history",
            Lsn(local_lsn),
            Lsn(*switch)
        )),
        Some(_) => Divergence::InSync,
    }
}
