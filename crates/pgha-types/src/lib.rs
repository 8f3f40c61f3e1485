//! Shared vocabulary of pgha: WAL positions, member records and every DCS key value in the
//! exact shape Patroni 4.1 stores it, so a mixed Patroni/pgha cluster reads the same data.
//! No IO lives here.

mod cluster;
mod dynamic_config;
mod lsn;
mod member;
mod slots;

pub use cluster::{
    parse_timestamp_ms, Cluster, Failover, HistoryEntry, KeyValue, Leader, Status, SyncState,
};
pub use dynamic_config::{
    check_timings, ClusterPolicy, DynamicConfig, StandbyCluster, CLUSTER_WIDE_GUCS, MIN_LOOP_WAIT,
    MIN_RETRY_TIMEOUT, MIN_TTL,
};
pub use lsn::{Lsn, LsnParseError};
pub use member::{
    failover_priority_of, nofailover_of, nosync_of, replicatefrom_of, sync_priority_of,
    tag_is_true, Member, MemberData, ScheduledRestart,
};
pub use slots::{
    parse_ignore_slots, parse_permanent_slots, valid_slot_name, PermanentSlot, SlotInfo, SlotKind,
    SlotMatcher,
};

/// Version string published in member keys and `/patroni`. Patroni clients compare it to decide
/// which features a member supports, so it reports the Patroni release whose interface we match.
pub const PATRONI_COMPAT_VERSION: &str = "4.1.5";
/// pgha's own version.
pub const PGHA_VERSION: &str = env!("CARGO_PKG_VERSION");
