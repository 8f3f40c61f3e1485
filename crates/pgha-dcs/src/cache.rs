//! The cluster as the watch has seen it. A range read fills it, the watch's events keep it
//! current, so an idle HA cycle reads the cluster without a request to etcd (as Patroni's etcd3
//! cache does). When it may be trusted is decided by `EtcdDcs::load_cluster_cached`.

use std::collections::BTreeMap;

use pgha_types::{Cluster, KeyValue};

/// Keys under the cluster prefix, by their path relative to it.
#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    keys: BTreeMap<String, KeyValue>,
    /// The newest revision the cache reflects: the range read's, then each event's.
    revision: i64,
    /// False until a range read and a watch from just after it are both in place, and again
    /// as soon as that watch ends: events may then be missing.
    synced: bool,
    /// The cluster parsed from `keys`, until they change: idle loops parse nothing.
    parsed: Option<Cluster>,
}

impl KeyCache {
    /// A fresh range read taken at `revision`; events after it follow through `put`/`delete`.
    pub(crate) fn reset(&mut self, keys: Vec<KeyValue>, revision: i64) {
        self.keys = keys.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        self.revision = revision;
        self.synced = false;
        self.parsed = None;
    }

    /// The watch from `revision + 1` is in place: the cache is now complete.
    pub(crate) fn mark_synced(&mut self) {
        self.synced = true;
    }

    /// The watch ended; until the next `reset` and `mark_synced` nothing here may be trusted.
    pub(crate) fn mark_lost(&mut self) {
        self.synced = false;
    }

    pub(crate) fn put(&mut self, kv: KeyValue) {
        self.revision = self.revision.max(kv.mod_revision);
        self.keys.insert(kv.key.clone(), kv);
        self.parsed = None;
    }

    pub(crate) fn delete(&mut self, key: &str, revision: i64) {
        self.revision = self.revision.max(revision);
        self.keys.remove(key);
        self.parsed = None;
    }

    /// The cluster, if the cache is synced and has seen at least `min_revision` (our own newest
    /// write under the prefix, so the caller never reads a state older than what it wrote).
    pub(crate) fn snapshot(&mut self, min_revision: i64) -> Option<Cluster> {
        if !self.synced || self.revision < min_revision {
            return None;
        }
        let keys = &self.keys;
        let parsed = self.parsed.get_or_insert_with(|| {
            let keys: Vec<KeyValue> = keys.values().cloned().collect();
            Cluster::from_keys(&keys)
        });
        Some(parsed.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, rev: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            lease: 7,
            mod_revision: rev,
        }
    }

    #[test]
    fn nothing_is_served_before_the_watch_is_in_place() {
        let mut c = KeyCache::default();
        assert!(c.snapshot(0).is_none());
        c.reset(vec![kv("leader", "pg1", 5)], 9);
        assert!(c.snapshot(0).is_none(), "range read without a watch yet");
        c.mark_synced();
        let cluster = c.snapshot(0).expect("synced");
        assert_eq!(cluster.leader_name(), Some("pg1"));
    }

    #[test]
    fn events_update_the_view_and_its_revision() {
        let mut c = KeyCache::default();
        c.reset(vec![kv("leader", "pg1", 5), kv("initialize", "123", 2)], 9);
        c.mark_synced();
        c.delete("leader", 10);
        assert_eq!(c.snapshot(10).expect("seen 10").leader_name(), None);
        c.put(kv("leader", "pg2", 11));
        let cluster = c.snapshot(11).expect("seen 11");
        assert_eq!(cluster.leader_name(), Some("pg2"));
        assert_eq!(cluster.initialize.as_deref(), Some("123"));
    }

    #[test]
    fn a_view_older_than_our_own_write_is_refused() {
        let mut c = KeyCache::default();
        c.reset(vec![kv("failover", "{\"leader\":\"pg1\"}", 8)], 9);
        c.mark_synced();
        // We cleared the failover key at revision 12; its event has not arrived yet.
        assert!(c.snapshot(12).is_none());
        c.put(kv("failover", "{}", 12));
        assert!(c.snapshot(12).is_some());
    }

    #[test]
    fn a_lost_watch_makes_the_cache_unusable_until_the_next_reset() {
        let mut c = KeyCache::default();
        c.reset(Vec::new(), 3);
        c.mark_synced();
        c.mark_lost();
        assert!(c.snapshot(0).is_none());
        c.reset(vec![kv("leader", "pg3", 20)], 21);
        assert!(c.snapshot(0).is_none());
        c.mark_synced();
        assert_eq!(c.snapshot(21).unwrap().leader_name(), Some("pg3"));
    }
}
