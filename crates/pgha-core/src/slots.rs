//! Replication slot names, one physical slot per member on the primary.

use std::collections::BTreeMap;

use pgha_types::{Cluster, ClusterPolicy, Lsn, PermanentSlot, SlotInfo, SlotKind, SlotMatcher};

/// The slot name for a member: lower case, every character outside `[a-z0-9_]` replaced by
/// `_`, at most 63 bytes, so any member name maps to a valid slot name.
pub fn slot_name(member: &str) -> String {
    member
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect()
}

/// The member whose `replicatefrom` tag names another member that is in the DCS: it streams
/// from that member, not from the leader.
fn cascades_from<'a>(cluster: &'a Cluster, m: &'a pgha_types::Member) -> Option<&'a str> {
    let from = pgha_types::replicatefrom_of(&m.data.tags)?;
    (from != m.name && cluster.member(from).is_some()).then_some(from)
}

/// Where a replica streams from: the member its `replicatefrom` names while that member is in
/// the DCS, else the leader (also when the tag names itself).
pub fn upstream(cluster: &Cluster, me: &str, replicatefrom: Option<&str>, leader: &str) -> String {
    match replicatefrom {
        Some(from) if from != me && cluster.member(from).is_some() => from.to_string(),
        _ => leader.to_string(),
    }
}

/// Physical slots this member keeps for the others that stream from it (never `nostream`
/// ones). The leader: every member that does not cascade from another member present in the
/// DCS. A replica: the members whose `replicatefrom` names it (the leader excepted).
pub fn wanted_slots(cluster: &Cluster, me: &str) -> Vec<String> {
    let i_lead = cluster.leader_name() == Some(me);
    let mut v: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| m.name != me && !m.tag_bool("nostream"))
        .filter(|m| match cascades_from(cluster, m) {
            Some(from) => from == me,
            None => i_lead,
        })
        .filter(|m| i_lead || cluster.leader_name() != Some(m.name.as_str()))
        .map(|m| slot_name(&m.name))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// `member_slots_ttl` on the leader: remembers when each member was last in the DCS and
/// returns the departed ones whose slots must stay. A new leader starts from the previous
/// one's `status.retain_slots`, as if it had just seen them.
pub(crate) fn retain_departed(
    next: &mut crate::HaState,
    obs: &crate::Observation,
    cluster: &Cluster,
) -> Vec<String> {
    let ttl_ms = obs.policy.member_slots_ttl.saturating_mul(1000);
    if ttl_ms == 0 {
        next.member_seen = Some(BTreeMap::new());
        return Vec::new();
    }
    let seen = next.member_seen.get_or_insert_with(|| {
        cluster
            .status
            .retain_slots
            .iter()
            .map(|n| (n.clone(), obs.now))
            .collect()
    });
    for m in &cluster.members {
        seen.insert(m.name.clone(), obs.now);
    }
    seen.remove(&obs.me);
    seen.retain(|_, at| obs.now.saturating_sub(*at) < ttl_ms);
    seen.keys()
        .filter(|n| cluster.member(n).is_none())
        .cloned()
        .collect()
}

/// What the slot upkeep of one cycle works towards on this member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotTargets {
    /// Physical slots for the members that stream from here.
    pub members: Vec<String>,
    /// Permanent slots this member keeps (already filtered for its role and tags).
    pub permanent: Vec<PermanentSlot>,
    /// `ignore_slots`: never dropped.
    pub ignore: Vec<SlotMatcher>,
    /// We run the primary: logical slots are created here, not copied.
    pub primary: bool,
    /// Paused: nothing is dropped.
    pub paused: bool,
    /// The leader's published positions (`status.slots`): a replica advances its copies to them.
    pub positions: BTreeMap<String, u64>,
    /// Permanent slots left out because of the cluster's members (name clashes), one line each.
    pub skipped: Vec<String>,
}

/// The slot targets of `me`: member slots as `wanted_slots` (none with `use_slots: false`),
/// permanent slots as Patroni keeps them: none with `use_slots: false` or on a member that may
/// not become leader (`nofailover`), physical only on a `nostream` member (no feedback reaches
/// the primary, so a logical copy would not be safe), never a physical one named after `me`,
/// and no logical one whose name is a member's slot.
pub fn slot_targets(
    cluster: &Cluster,
    me: &str,
    policy: &ClusterPolicy,
    primary: bool,
    nofailover: bool,
) -> SlotTargets {
    let nostream = cluster.member(me).is_some_and(|m| m.tag_bool("nostream"));
    let mut t = SlotTargets {
        primary,
        paused: policy.pause,
        ignore: policy.ignore_slots.clone(),
        positions: cluster.status.slots.clone(),
        ..SlotTargets::default()
    };
    if !policy.use_slots {
        return t;
    }
    t.members = wanted_slots(cluster, me);
    if nofailover {
        return t;
    }
    let mine = slot_name(me);
    for s in &policy.permanent_slots {
        match &s.kind {
            SlotKind::Physical if s.name == mine => {}
            SlotKind::Physical => t.permanent.push(s.clone()),
            SlotKind::Logical { .. } if nostream => {}
            SlotKind::Logical { .. } => {
                let owner = cluster
                    .members
                    .iter()
                    .map(|m| m.name.as_str())
                    .chain(std::iter::once(me))
                    .find(|m| slot_name(m) == s.name);
                match owner {
                    Some(m) => t.skipped.push(format!(
                        "slots.{}: the name is the replication slot of member {m}; permanent logical slot skipped",
                        s.name
                    )),
                    None => t.permanent.push(s.clone()),
                }
            }
        }
    }
    t
}

/// Moving a slot forward (`pg_replication_slot_advance`); `database` is set for a logical
/// slot, which can only be advanced from a connection to its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotAdvance {
    pub name: String,
    pub database: Option<String>,
    pub lsn: Lsn,
}

/// What to do about the slots a server has, so they match its targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotPlan {
    /// Inactive slots nobody wants (or of the wrong kind), not matched by `ignore_slots`.
    pub drop: Vec<String>,
    pub create_physical: Vec<String>,
    /// Primary: permanent logical slots to create.
    pub create_logical: Vec<PermanentSlot>,
    /// Replica: permanent logical slots to copy from the primary (a standby cannot create
    /// them on PostgreSQL 15); only those the leader publishes a position for.
    pub copy: Vec<String>,
    /// Replica: permanent slots behind the leader's published position.
    pub advance: Vec<SlotAdvance>,
}

impl SlotPlan {
    pub fn is_empty(&self) -> bool {
        self.drop.is_empty()
            && self.create_physical.is_empty()
            && self.create_logical.is_empty()
            && self.copy.is_empty()
            && self.advance.is_empty()
    }
}

/// Compares the slots a server has (`existing`, temporary ones excluded) with `t`.
/// `replay_lsn` bounds how far a replica can move a logical slot.
pub fn plan_slots(t: &SlotTargets, existing: &[SlotInfo], replay_lsn: Option<Lsn>) -> SlotPlan {
    let mut plan = SlotPlan::default();
    // Permanent definitions win over member slots of the same name (both physical anyway).
    let mut wanted: Vec<(&str, SlotKind, bool)> = t
        .permanent
        .iter()
        .map(|p| (p.name.as_str(), p.kind.clone(), true))
        .collect();
    for m in &t.members {
        if !wanted.iter().any(|(n, _, _)| n == m) {
            wanted.push((m.as_str(), SlotKind::Physical, false));
        }
    }
    let may_drop = |e: &SlotInfo| !t.paused && !e.active && !t.ignore.iter().any(|m| m.matches(e));
    for e in existing {
        match wanted.iter().find(|(n, _, _)| *n == e.name) {
            Some((_, kind, _)) if e.is(kind) => {}
            // The wrong kind (or database, plugin): dropped, then made right next cycle.
            Some(_) | None => {
                if may_drop(e) {
                    plan.drop.push(e.name.clone());
                }
            }
        }
    }
    for (name, kind, permanent) in &wanted {
        let have = existing.iter().find(|e| e.name == *name);
        let position = t.positions.get(*name).copied().map(Lsn);
        match (kind, have) {
            (SlotKind::Physical, None) => plan.create_physical.push(name.to_string()),
            (SlotKind::Logical { .. }, None) if t.primary => {
                plan.create_logical.push(PermanentSlot {
                    name: name.to_string(),
                    kind: kind.clone(),
                })
            }
            (SlotKind::Logical { .. }, None) => {
                if position.is_some() {
                    plan.copy.push(name.to_string());
                }
            }
            (_, Some(e)) if t.primary || !permanent || e.active || !e.is(kind) => {}
            (SlotKind::Physical, Some(e)) => match (e.restart_lsn, position) {
                // Created without reserving WAL (not by us): it could never be advanced.
                (None, _) if !t.paused && !t.ignore.iter().any(|m| m.matches(e)) => {
                    plan.drop.push(e.name.clone())
                }
                (Some(have), Some(want)) if want > have => plan.advance.push(SlotAdvance {
                    name: e.name.clone(),
                    database: None,
                    lsn: want,
                }),
                _ => {}
            },
            (SlotKind::Logical { database, .. }, Some(e)) => {
                let target = match (position, replay_lsn) {
                    (Some(p), Some(r)) => p.min(r),
                    _ => continue,
                };
                if e.confirmed_flush_lsn.is_some_and(|c| c < target) {
                    plan.advance.push(SlotAdvance {
                        name: e.name.clone(),
                        database: Some(database.clone()),
                        lsn: target,
                    });
                }
            }
        }
    }
    plan
}
