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

/// Slots the leader keeps: one for every other member that streams (not `nostream`).
pub fn wanted_slots(cluster: &Cluster, me: &str) -> Vec<String> {
    let mut v: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| m.name != me && !m.tag_bool("nostream"))
        .map(|m| slot_name(&m.name))
        .collect();
    v.sort();
    v.dedup();
    v
}
