//! Replication slot names, one physical slot per member on the primary.

use pgha_types::Cluster;

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
