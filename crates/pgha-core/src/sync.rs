//! Synchronous replication (`synchronous_mode`), as Patroni runs it: the leader chooses its
//! synchronous standbys, names them in `synchronous_standby_names`, and publishes in the `sync`
//! key who may take over. Only a member the key allows may be promoted, so a promotion never
//! loses an acknowledged commit.
//!
//! `synchronous_mode: on` (`FIRST k`): a standby enters `synchronous_standby_names` first and
//! the `sync` key only once PostgreSQL reports it `sync` and it has flushed everything
//! committed before that; it leaves the key first and the setting after. The key never names
//! a standby that may lack an acknowledged commit.
//!
//! `synchronous_mode: quorum` (`ANY k (V)`): a commit is acknowledged by any k of the voters
//! V. The key holds voters Vk and `quorum` q: a candidate must be a voter (or the leader) and
//! see q other voters it is at least as advanced as. That is safe while PostgreSQL's voters
//! are among the key's and q >= |Vk| - k: any q + 1 voters then include one of every k that
//! acknowledged a commit.

use pgha_types::{nosync_of, sync_priority_of, Cluster};

use crate::decide::Draft;
use crate::{Action, Observation, PgRunning};

/// Before a promotion in synchronous mode: the `sync` key names us alone, so no standby that
/// may lack what we commit from now on can be promoted; standbys join it as they confirm (the
/// leader's upkeep, within a second). Found by pgha-sim: without it, a new primary's first
/// commits (acknowledged before it named a synchronous standby) were lost when it died at once
/// and the old key let its predecessor's standby take over.
pub(crate) fn before_promotion(d: &mut Draft, obs: &Observation) {
    if obs.policy.synchronous_mode {
        d.act(Action::WriteSyncKey {
            standbys: Vec::new(),
            quorum: 0,
        });
        d.next.synchronous_standby_names = None;
        d.next.synchronous_since_lsn = None;
    }
}

/// The standbys the `sync` key lists for `leader` (empty when it names another leader).
pub(crate) fn listed(cluster: &Cluster, leader: &str) -> Vec<String> {
    cluster
        .sync
        .as_ref()
        .filter(|s| s.leader.as_deref() == Some(leader))
        .and_then(|s| s.sync_standby.as_deref())
        .map(split_names)
        .unwrap_or_default()
}

fn split_names(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether `me` may take over in synchronous mode: the `sync` key names it as a standby or as
/// the leader. Without a key nobody may: commits may have been acknowledged by anyone.
pub(crate) fn may_promote(cluster: &Cluster, me: &str) -> bool {
    let Some(sync) = &cluster.sync else {
        return false;
    };
    sync.leader.as_deref() == Some(me)
        || sync
            .sync_standby
            .as_deref()
            .is_some_and(|l| split_names(l).iter().any(|n| n == me))
}

/// Members that may be synchronous standbys of `me` now, best first: streaming from us, not
/// `nosync` (or `sync_priority` ≤ 0), within `maximum_lag_on_syncnode`; the ones already
/// listed first (no needless swaps), then by `sync_priority`, then by name.
fn candidates(
    obs: &Observation,
    cluster: &Cluster,
    r: &PgRunning,
    listed: &[String],
) -> Vec<String> {
    let max_lag = obs.policy.maximum_lag_on_syncnode;
    let mut c: Vec<(bool, i64, String)> = cluster
        .members
        .iter()
        .filter(|m| m.name != obs.me && !nosync_of(&m.data.tags))
        .filter(|m| {
            r.standbys
                .iter()
                .any(|s| s.name == m.name && s.state == "streaming")
        })
        .filter(|m| {
            max_lag == 0
                || m.data
                    .xlog_location
                    .is_none_or(|at| r.wal_position.saturating_sub(at) <= max_lag)
        })
        .map(|m| {
            (
                !listed.contains(&m.name),
                -sync_priority_of(&m.data.tags),
                m.name.clone(),
            )
        })
        .collect();
    c.sort();
    c.into_iter().map(|(_, _, n)| n).collect()
}

/// A standby name as `synchronous_standby_names` needs it: double-quoted unless it is a plain
/// lower-case identifier.
fn quote(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `synchronous_standby_names` for `names`: `a` for one, `2 (a,b)` for several; without any,
/// `*` in strict mode (every commit waits for some standby) and empty otherwise.
pub(crate) fn standby_names_setting(names: &[String], strict: bool) -> String {
    match names {
        [] if strict => "*".into(),
        [] => String::new(),
        [one] => quote(one),
        many => format!(
            "{} ({})",
            many.len(),
            many.iter().map(|n| quote(n)).collect::<Vec<_>>().join(",")
        ),
    }
}

/// The leader's synchronous-mode upkeep for this cycle, before the configuration is applied:
/// the `sync` key first (it may only shrink to, or grow by, confirmed standbys), then the
/// `synchronous_standby_names` that `ApplyConfig` writes. Returns a note for the log when the
/// set changes.
pub(crate) fn leader_upkeep(
    d: &mut Draft,
    obs: &Observation,
    cluster: &Cluster,
    r: &PgRunning,
) -> Option<String> {
    let me = obs.me.as_str();
    if !obs.policy.synchronous_mode {
        d.next.synchronous_standby_names = None;
        let ours = cluster
            .sync
            .as_ref()
            .is_some_and(|s| s.leader.as_deref() == Some(me));
        if ours {
            d.act(Action::DeleteSyncKey);
            return Some("Disabled synchronous replication".into());
        }
        return None;
    }
    let listed = listed(cluster, me);
    let count = usize::try_from(obs.policy.synchronous_node_count)
        .unwrap_or(usize::MAX)
        .max(1);
    let want: Vec<String> = candidates(obs, cluster, r, &listed)
        .into_iter()
        .take(count)
        .collect();
    if obs.policy.synchronous_quorum {
        return quorum_upkeep(d, obs, cluster, r);
    }
    let setting = standby_names_setting(&want, obs.policy.synchronous_mode_strict);
    // Confirmed under the setting in force when this cycle's probe ran, and caught up with
    // what was committed before it.
    let since = in_force_since(d, &setting, r);
    let mut key: Vec<String> = want
        .iter()
        .filter(|n| {
            listed.contains(n)
                || since.is_some_and(|since| {
                    r.standbys
                        .iter()
                        .any(|s| &s.name == *n && s.sync_state == "sync" && s.flush_lsn >= since)
                })
        })
        .cloned()
        .collect();
    key.sort();
    let key_is_ours = cluster
        .sync
        .as_ref()
        .is_some_and(|s| s.leader.as_deref() == Some(me));
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    let mut note = None;
    if !key_is_ours || key != listed_sorted {
        d.act(Action::WriteSyncKey {
            standbys: key.clone(),
            quorum: 0,
        });
        note = Some(if key.is_empty() {
            "no synchronous standby confirmed; the sync key lists none".to_string()
        } else {
            format!("Synchronous standby status assigned to {key:?}")
        });
    }
    if d.next.synchronous_standby_names.as_deref() != Some(setting.as_str()) {
        if note.is_none() {
            note = Some(if want.is_empty() && obs.policy.synchronous_mode_strict {
                "No synchronous standby available and synchronous_mode_strict is requested: commits wait (synchronous_standby_names = '*')".to_string()
            } else if want.is_empty() {
                "No synchronous standby available: replicating asynchronously until one streams"
                    .to_string()
            } else {
                format!("Assigning synchronous standby status to {want:?}")
            });
        }
        d.next.synchronous_standby_names = Some(setting);
        d.next.synchronous_since_lsn = None;
    }
    recheck_while(d, want.iter().any(|n| !key.contains(n)));
    note
}

/// Most quick rechecks one pending step gets (with `RECHECK_SOON_MS`, about 4 s).
const MAX_SYNC_RECHECKS: u32 = 20;

/// While a synchronous standby waits for confirmation (or the quorum key for tightening),
/// ask for the next cycle soon: the key then follows PostgreSQL within a fraction of a
/// second instead of two loops, and a switchover to the new standby is accepted right away.
fn recheck_while(d: &mut Draft, pending: bool) {
    if !pending {
        d.next.sync_rechecks = 0;
    } else if d.next.sync_rechecks < MAX_SYNC_RECHECKS {
        d.next.sync_rechecks += 1;
        d.recheck_soon = true;
    }
}

/// The WAL position from which `setting` is known to be in force (the first cycle that ran
/// with it), recorded on that cycle; None while it is new.
fn in_force_since(d: &mut Draft, setting: &str, r: &PgRunning) -> Option<u64> {
    if d.next.synchronous_standby_names.as_deref() != Some(setting) {
        return None;
    }
    if d.next.synchronous_since_lsn.is_none() {
        d.next.synchronous_since_lsn = Some(r.wal_position);
        return None;
    }
    d.next.synchronous_since_lsn
}

/// `ANY k (a,b)` for quorum commit; `*` (strict) or empty without voters.
fn quorum_setting(voters: &[String], k: usize, strict: bool) -> String {
    if voters.is_empty() || k == 0 {
        return if strict { "*".into() } else { String::new() };
    }
    format!(
        "ANY {k} ({})",
        voters
            .iter()
            .map(|n| quote(n))
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// The voters and k of a setting `quorum_setting` wrote; none for anything else.
fn parse_quorum_setting(setting: Option<&str>) -> (Vec<String>, usize) {
    let Some(rest) = setting.and_then(|s| s.strip_prefix("ANY ")) else {
        return (Vec::new(), 0);
    };
    let Some((k, list)) = rest.split_once(' ') else {
        return (Vec::new(), 0);
    };
    let names = list
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(|n| n.trim().trim_matches('"').replace("\"\"", "\""))
        .filter(|n| !n.is_empty())
        .collect();
    (names, k.parse().unwrap_or(0))
}

/// Quorum commit upkeep: one safe step towards every eligible standby voting, with
/// k = min(synchronous_node_count, voters). The key written first holds for the setting in
/// force and for the new one (voters of both, quorum for the smaller k); the new setting
/// follows in the same cycle, and the next cycle tightens the key to it.
fn quorum_upkeep(
    d: &mut Draft,
    obs: &Observation,
    cluster: &Cluster,
    r: &PgRunning,
) -> Option<String> {
    let me = obs.me.as_str();
    let listed_now = listed(cluster, me);
    let mut target = candidates(obs, cluster, r, &listed_now);
    target.sort();
    let count = usize::try_from(obs.policy.synchronous_node_count).unwrap_or(usize::MAX);
    let k_target = count.min(target.len());
    let (mut pg_voters, pg_k) = parse_quorum_setting(d.next.synchronous_standby_names.as_deref());
    pg_voters.sort();
    let key_is_ours = cluster
        .sync
        .as_ref()
        .is_some_and(|s| s.leader.as_deref() == Some(me));
    let key_quorum = cluster.sync.as_ref().and_then(|s| s.quorum).unwrap_or(0);
    let mut key_voters: Vec<String> = pg_voters.iter().chain(&target).cloned().collect();
    key_voters.sort();
    key_voters.dedup();
    let key_q = key_voters.len().saturating_sub(pg_k.min(k_target)) as u64;
    let mut listed_sorted = listed_now;
    listed_sorted.sort();
    let mut note = None;
    if !key_is_ours || listed_sorted != key_voters || key_quorum != key_q {
        d.act(Action::WriteSyncKey {
            standbys: key_voters.clone(),
            quorum: key_q,
        });
        note = Some(format!(
            "Setting leader to '{me}', quorum to {key_q} and sync_standby to {key_voters:?}"
        ));
    }
    let setting = quorum_setting(&target, k_target, obs.policy.synchronous_mode_strict);
    if d.next.synchronous_standby_names.as_deref() != Some(setting.as_str()) {
        note.get_or_insert_with(|| format!("Setting synchronous_standby_names to '{setting}'"));
        d.next.synchronous_standby_names = Some(setting);
        d.next.synchronous_since_lsn = None;
    }
    let tight_q = target.len().saturating_sub(k_target) as u64;
    recheck_while(d, key_voters != target || key_q != tight_q);
    note
}

/// Quorum mode: the other voters (the key's standbys and its leader) and how many of them a
/// candidate must see, at least as advanced as it is, before it may take over.
pub(crate) fn quorum_needed(obs: &Observation, cluster: &Cluster) -> Option<(Vec<String>, u64)> {
    if !obs.policy.synchronous_quorum {
        return None;
    }
    let sync = cluster.sync.as_ref()?;
    let mut voters: Vec<String> = sync
        .sync_standby
        .as_deref()
        .map(split_names)
        .unwrap_or_default();
    if let Some(l) = &sync.leader {
        voters.push(l.clone());
    }
    voters.retain(|v| *v != obs.me);
    Some((voters, sync.quorum.unwrap_or(0)))
}
