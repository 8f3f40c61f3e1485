//! Synchronous replication (`synchronous_mode`), as Patroni runs it: the leader chooses up to
//! `synchronous_node_count` standbys, names them in `synchronous_standby_names`, and lists in
//! the `sync` key only those PostgreSQL already treats as synchronous. Only a member the `sync`
//! key lists (or its leader) may be promoted, so a promotion never loses an acknowledged
//! commit.
//!
//! The order is what makes it safe. A standby enters `synchronous_standby_names` first and the
//! `sync` key only once `pg_stat_replication` shows it `sync`; a standby leaves the `sync` key
//! first and `synchronous_standby_names` after. At no moment does the key name a standby that
//! has not confirmed every commit acknowledged since it was named.

use pgha_types::{nosync_of, sync_priority_of, Cluster};

use crate::decide::Draft;
use crate::{Action, Observation, PgRunning};

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
    let setting = standby_names_setting(&want, obs.policy.synchronous_mode_strict);
    // Confirmed under the setting in force when this cycle's probe ran.
    let in_force = d.next.synchronous_standby_names.as_deref() == Some(setting.as_str());
    let mut key: Vec<String> = want
        .iter()
        .filter(|n| {
            listed.contains(n)
                || (in_force
                    && r.standbys
                        .iter()
                        .any(|s| &s.name == *n && s.sync_state == "sync"))
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
    }
    note
}
