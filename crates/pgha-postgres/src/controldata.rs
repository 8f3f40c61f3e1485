//! `pg_controldata` output: parsed into the few facts the HA loop uses, raw fields kept.

use std::collections::BTreeMap;

use pgha_types::Lsn;

use crate::error::PgError;

/// The control file of a data directory, as `pg_controldata` (LANG=C) prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    /// "Database system identifier", a decimal string.
    pub system_identifier: String,
    /// "Database cluster state": "in production", "shut down", "shut down in recovery",
    /// "in archive recovery", "in crash recovery", "shutting down", "starting up".
    pub cluster_state: String,
    /// "Latest checkpoint's TimeLineID".
    pub timeline: u32,
    /// "Latest checkpoint location".
    pub checkpoint_lsn: Lsn,
    /// "Latest checkpoint's REDO location".
    pub redo_lsn: Lsn,
    /// "Minimum recovery ending location" (0/0 when not set).
    pub min_recovery_end_lsn: Lsn,
    /// "Min recovery ending loc's timeline" (0 when not set).
    pub min_recovery_end_timeline: u32,
    /// Every "key: value" line, trimmed.
    pub raw: BTreeMap<String, String>,
}

const SYSTEM_ID: &str = "Database system identifier";
const STATE: &str = "Database cluster state";
const CHECKPOINT: &str = "Latest checkpoint location";
const REDO: &str = "Latest checkpoint's REDO location";
const TIMELINE: &str = "Latest checkpoint's TimeLineID";
const MIN_RECOVERY_LSN: &str = "Minimum recovery ending location";
const MIN_RECOVERY_TLI: &str = "Min recovery ending loc's timeline";

impl ControlData {
    /// Parse `pg_controldata` output. Fails (never panics) when a needed field is missing or
    /// malformed.
    pub fn parse(text: &str) -> Result<Self, PgError> {
        let raw: BTreeMap<String, String> = text
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .filter(|(k, _)| !k.is_empty())
            .collect();
        let get = |key: &str| {
            raw.get(key).cloned().ok_or_else(|| {
                PgError::ControlData(format!(
                    "field {key:?} missing (is this pg_controldata output, run with LANG=C?)"
                ))
            })
        };
        let lsn = |key: &str| -> Result<Lsn, PgError> {
            get(key)?
                .parse::<Lsn>()
                .map_err(|e| PgError::ControlData(format!("field {key:?}: {e}")))
        };
        let int = |key: &str| -> Result<u32, PgError> {
            let v = get(key)?;
            v.parse::<u32>()
                .map_err(|_| PgError::ControlData(format!("field {key:?}: {v:?} is not a number")))
        };
        let system_identifier = get(SYSTEM_ID)?;
        if system_identifier.is_empty() || !system_identifier.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PgError::ControlData(format!(
                "field {SYSTEM_ID:?}: {system_identifier:?} is not a decimal number"
            )));
        }
        Ok(ControlData {
            system_identifier,
            cluster_state: get(STATE)?,
            timeline: int(TIMELINE)?,
            checkpoint_lsn: lsn(CHECKPOINT)?,
            redo_lsn: lsn(REDO)?,
            min_recovery_end_lsn: lsn(MIN_RECOVERY_LSN)?,
            min_recovery_end_timeline: int(MIN_RECOVERY_TLI)?,
            raw,
        })
    }

    /// The data directory was shut down cleanly (as a primary or as a standby), so pg_rewind
    /// and a normal start are safe without crash recovery first.
    pub fn is_clean_shutdown(&self) -> bool {
        matches!(
            self.cluster_state.as_str(),
            "shut down" | "shut down in recovery"
        )
    }

    /// Where the local WAL ends, as far as the control file tells: for a shut-down primary the
    /// last checkpoint (timeline, location); for a shut-down standby the later of the checkpoint
    /// and the minimum recovery end point. For other states this is only a lower bound.
    pub fn end_of_wal_hint(&self) -> (u32, Lsn) {
        if self.cluster_state != "shut down" && self.min_recovery_end_lsn > self.checkpoint_lsn {
            let tl = if self.min_recovery_end_timeline > 0 {
                self.min_recovery_end_timeline
            } else {
                self.timeline
            };
            return (tl, self.min_recovery_end_lsn);
        }
        (self.timeline, self.checkpoint_lsn)
    }

    /// "Data page checksum version" is not 0.
    pub fn data_checksums(&self) -> bool {
        self.raw
            .get("Data page checksum version")
            .is_some_and(|v| v.trim() != "0")
    }

    /// "wal_log_hints setting" is on.
    pub fn wal_log_hints(&self) -> bool {
        self.raw
            .get("wal_log_hints setting")
            .is_some_and(|v| v == "on")
    }
}

#[cfg(test)]
pub(crate) const FIXTURE_PG15: &str = "\
pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7710809278050705596
Database cluster state:               shut down in recovery
pg_control last modified:             Sun Nov 22 01:58:40 2026
Latest checkpoint location:           0/4000060
Latest checkpoint's REDO location:    0/4000028
Latest checkpoint's REDO WAL file:    000000020000000000000004
Latest checkpoint's TimeLineID:       2
Latest checkpoint's PrevTimeLineID:   2
Latest checkpoint's full_page_writes: on
Latest checkpoint's NextXID:          0:739
Latest checkpoint's NextOID:          16389
Latest checkpoint's NextMultiXactId:  1
Latest checkpoint's NextMultiOffset:  0
Latest checkpoint's oldestXID:        716
Latest checkpoint's oldestXID's DB:   1
Latest checkpoint's oldestActiveXID:  739
Latest checkpoint's oldestMultiXid:   1
Latest checkpoint's oldestMulti's DB: 1
Latest checkpoint's oldestCommitTsXid:0
Latest checkpoint's newestCommitTsXid:0
Time of latest checkpoint:            Sun Nov 22 01:58:35 2026
Fake LSN counter for unlogged rels:   0/3E8
Minimum recovery ending location:     0/5000148
Min recovery ending loc's timeline:   3
Backup start location:                0/0
Backup end location:                  0/0
End-of-backup record required:        no
wal_level setting:                    replica
wal_log_hints setting:                on
max_connections setting:              100
max_worker_processes setting:         8
max_wal_senders setting:              10
max_prepared_xacts setting:           0
max_locks_per_xact setting:           64
track_commit_timestamp setting:       off
Maximum data alignment:               8
Database block size:                  8192
Blocks per segment of large relation: 131072
WAL block size:                       8192
Bytes per WAL segment:                16777216
Maximum length of identifiers:        64
Maximum columns in an index:          32
Maximum size of a TOAST chunk:        1996
Size of a large-object chunk:         2048
Date/time type storage:               64-bit integers
Float8 argument passing:              by value
Data page checksum version:           1
Mock authentication nonce:            5d2c7d4a0a52b5e0f2b1f0b1d2a3c4e5f60718293a4b5c6d7e8f90a1b2c3d4e5
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pg15_output() {
        let cd = ControlData::parse(FIXTURE_PG15).expect("fixture parses");
        assert_eq!(cd.system_identifier, "7710809278050705596");
        assert_eq!(cd.cluster_state, "shut down in recovery");
        assert_eq!(cd.timeline, 2);
        assert_eq!(cd.checkpoint_lsn, "0/4000060".parse().unwrap());
        assert_eq!(cd.redo_lsn, "0/4000028".parse().unwrap());
        assert_eq!(cd.min_recovery_end_lsn, "0/5000148".parse().unwrap());
        assert_eq!(cd.min_recovery_end_timeline, 3);
        assert_eq!(cd.raw["wal_level setting"], "replica");
        assert_eq!(cd.raw["Latest checkpoint's oldestCommitTsXid"], "0");
        assert!(cd.is_clean_shutdown());
        assert!(cd.data_checksums());
        assert!(cd.wal_log_hints());
        assert_eq!(cd.end_of_wal_hint(), (3, "0/5000148".parse().unwrap()));
    }

    #[test]
    fn end_of_wal_for_shut_down_primary_is_the_checkpoint() {
        let text = FIXTURE_PG15
            .replace("shut down in recovery", "shut down")
            .replace(
                "Minimum recovery ending location:     0/5000148",
                "Minimum recovery ending location:     0/0",
            )
            .replace(
                "Min recovery ending loc's timeline:   3",
                "Min recovery ending loc's timeline:   0",
            );
        let cd = ControlData::parse(&text).unwrap();
        assert!(cd.is_clean_shutdown());
        assert_eq!(cd.end_of_wal_hint(), (2, "0/4000060".parse().unwrap()));
    }

    #[test]
    fn replica_with_checkpoint_ahead_of_min_recovery_point() {
        let text = FIXTURE_PG15.replace("0/5000148", "0/3000000");
        let cd = ControlData::parse(&text).unwrap();
        assert_eq!(cd.end_of_wal_hint(), (2, "0/4000060".parse().unwrap()));
    }

    #[test]
    fn crashed_primary_is_not_clean() {
        let cd =
            ControlData::parse(&FIXTURE_PG15.replace("shut down in recovery", "in production"))
                .unwrap();
        assert!(!cd.is_clean_shutdown());
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for text in [
            "",
            "hello",
            "Database system identifier: abc",
            &FIXTURE_PG15.replace(
                "Latest checkpoint location:           0/4000060",
                "Latest checkpoint location: zzz",
            ),
            &FIXTURE_PG15.replace(
                "Latest checkpoint's TimeLineID:       2",
                "Latest checkpoint's TimeLineID: -1",
            ),
        ] {
            assert!(
                matches!(ControlData::parse(text), Err(PgError::ControlData(_))),
                "{text:?}"
            );
        }
    }
}
