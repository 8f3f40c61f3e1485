//! SQL facts about the running server (one round trip) and replication slot upkeep.

use pgha_types::{Lsn, SlotInfo};
use serde_json::Value;
use tokio_postgres::SimpleQueryRow;

use crate::error::PgError;
use crate::sql::rows;
use crate::LocalPostgres;

/// One row of `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRow {
    pub usename: String,
    pub application_name: String,
    /// `host(client_addr)`; None for unix-socket connections.
    pub client_addr: Option<String>,
    pub state: String,
    pub sync_state: String,
    pub sync_priority: i64,
    /// `flush_lsn`: how far the standby has made WAL durable.
    pub flush_lsn: Option<Lsn>,
}

/// What the running server says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    pub in_recovery: bool,
    /// `server_version_num`, e.g. 150018.
    pub server_version: u32,
    /// The timeline the server is on.
    /// * Primary: taken from the name of the WAL file of `pg_current_wal_lsn()`, which follows
    ///   the insert timeline immediately after a promotion (`pg_control_checkpoint()` lags until
    ///   the next checkpoint).
    /// * Standby: the larger of the WAL receiver's `received_tli` (when streaming) and the
    ///   control file's view (latest checkpoint / minimum recovery point timeline).
    pub timeline: u32,
    /// Primary: `pg_current_wal_lsn()`.
    pub wal_lsn: Option<Lsn>,
    /// Standby: `pg_last_wal_receive_lsn()`.
    pub receive_lsn: Option<Lsn>,
    /// Standby: `pg_last_wal_replay_lsn()`.
    pub replay_lsn: Option<Lsn>,
    /// `pg_last_xact_replay_timestamp()` as "2026-11-22 01:58:08.202807+00:00".
    pub replay_timestamp: Option<String>,
    pub replay_paused: bool,
    /// `pg_stat_wal_receiver.status = 'streaming'`.
    pub receiver_streaming: bool,
    /// `pg_stat_wal_receiver.sender_host`.
    pub receiver_conninfo_host: Option<String>,
    /// `pg_postmaster_start_time()` as "2026-11-22 01:58:08.202807+00:00".
    pub postmaster_start_time: String,
    pub replication: Vec<ReplicationRow>,
    /// GUCs waiting for a restart: (name, current value, value in the config files if known).
    pub pending_restart: Vec<(String, String, String)>,
    /// Replication slots, temporary ones excluded (they belong to a session).
    pub slots: Vec<SlotInfo>,
}

const TS_FORMAT: &str = "'YYYY-MM-DD HH24:MI:SS.US'";

fn probe_sql() -> String {
    format!(
        "SELECT pg_catalog.pg_is_in_recovery(), \
         pg_catalog.current_setting('server_version_num'), \
         CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL \
              ELSE pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()) END, \
         CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL ELSE pg_catalog.pg_current_wal_lsn() END, \
         pg_catalog.pg_last_wal_receive_lsn(), \
         pg_catalog.pg_last_wal_replay_lsn(), \
         pg_catalog.to_char(pg_catalog.pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', {TS_FORMAT}), \
         CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_is_wal_replay_paused() ELSE false END, \
         w.status, NULLIF(w.received_tli, 0), w.sender_host, \
         GREATEST(c.timeline_id, r.min_recovery_end_timeline), \
         pg_catalog.to_char(pg_catalog.pg_postmaster_start_time() AT TIME ZONE 'UTC', {TS_FORMAT}), \
         (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(usename, application_name, \
                 pg_catalog.host(client_addr), state, sync_state, sync_priority, flush_lsn) ORDER BY pid) \
            FROM pg_catalog.pg_stat_replication), \
         (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(s.name, pg_catalog.current_setting(s.name), \
                 (SELECT f.setting FROM pg_catalog.pg_file_settings f WHERE f.name = s.name \
                   ORDER BY f.seqno DESC LIMIT 1)) ORDER BY s.name) \
            FROM pg_catalog.pg_settings s WHERE s.pending_restart), \
         (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(slot_name, slot_type, database, plugin, \
                 active, restart_lsn, confirmed_flush_lsn) ORDER BY slot_name) \
            FROM pg_catalog.pg_replication_slots WHERE NOT temporary) \
         FROM pg_catalog.pg_control_checkpoint() c \
         CROSS JOIN pg_catalog.pg_control_recovery() r \
         LEFT JOIN pg_catalog.pg_stat_wal_receiver w ON true"
    )
}

fn bad(what: &str) -> PgError {
    PgError::Protocol(format!("probe: cannot interpret {what}"))
}

fn parse_bool(s: Option<&str>) -> bool {
    matches!(s, Some("t") | Some("true") | Some("on"))
}

fn parse_lsn(s: Option<&str>, what: &str) -> Result<Option<Lsn>, PgError> {
    s.map(|v| v.parse::<Lsn>().map_err(|_| bad(what)))
        .transpose()
}

fn utc_timestamp(s: Option<&str>) -> Option<String> {
    s.map(|v| format!("{v}+00:00"))
}

/// Timeline of a WAL file name: its first 8 hex digits.
/// The highest timeline of the segment files among `names` that hold the byte before `at`
/// (the end of what was received), for segments of `seg_size` bytes.
pub(crate) fn timeline_holding(
    names: impl Iterator<Item = String>,
    at: u64,
    seg_size: u64,
) -> Option<u32> {
    if at == 0 || seg_size == 0 {
        return None;
    }
    let seg = (at - 1) / seg_size;
    let per_xlogid = 0x1_0000_0000 / seg_size;
    let want = format!("{:08X}{:08X}", seg / per_xlogid, seg % per_xlogid);
    names
        .filter(|n| n.len() == 24 && n[8..] == want)
        .filter_map(|n| u32::from_str_radix(&n[..8], 16).ok())
        .max()
}

pub(crate) fn timeline_from_walfile(name: &str) -> Option<u32> {
    name.get(..8).and_then(|h| u32::from_str_radix(h, 16).ok())
}

fn json_array(s: Option<&str>, what: &str) -> Result<Vec<Value>, PgError> {
    match s {
        None => Ok(Vec::new()),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => Ok(items),
            _ => Err(bad(what)),
        },
    }
}

fn json_str(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn parse_probe_row(row: &SimpleQueryRow) -> Result<Probe, PgError> {
    let cols: Vec<Option<&str>> = (0..row.len()).map(|i| row.get(i)).collect();
    parse_probe_columns(&cols)
}

/// Interpret the columns of the probe query (text format, NULL = None).
pub(crate) fn parse_probe_columns(cols: &[Option<&str>]) -> Result<Probe, PgError> {
    if cols.len() < 16 {
        return Err(bad("the row shape"));
    }
    let col = |i: usize| cols[i];
    let in_recovery = parse_bool(col(0));
    let server_version = col(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("server_version_num"))?;
    let control_tli: u32 = col(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let received_tli: Option<u32> = col(9).and_then(|v| v.parse().ok());
    let timeline = if in_recovery {
        received_tli.unwrap_or(0).max(control_tli)
    } else {
        col(2)
            .and_then(timeline_from_walfile)
            .ok_or_else(|| bad("the current WAL file name"))?
    };
    let replication = json_array(col(13), "pg_stat_replication")?
        .iter()
        .map(|r| {
            let f = |i: usize| r.get(i).and_then(json_str);
            ReplicationRow {
                usename: f(0).unwrap_or_default(),
                application_name: f(1).unwrap_or_default(),
                client_addr: f(2),
                state: f(3).unwrap_or_default(),
                sync_state: f(4).unwrap_or_default(),
                sync_priority: r.get(5).and_then(Value::as_i64).unwrap_or(0),
                flush_lsn: f(6).and_then(|v| v.parse().ok()),
            }
        })
        .collect();
    // Recovery settings change with the role (a promotion drops them) and are not the
    // operator's business: they never make a restart "pending".
    let pending_restart = json_array(col(14), "pending_restart settings")?
        .iter()
        .map(|r| {
            let f = |i: usize| r.get(i).and_then(json_str).unwrap_or_default();
            (f(0), f(1), f(2))
        })
        .filter(|(name, _, _)| !crate::conf::RECOVERY_GUCS.contains(&name.as_str()))
        .collect();
    let slots = json_array(col(15), "replication slots")?
        .iter()
        .map(|r| {
            let text = |i: usize| r.get(i).and_then(json_str);
            let lsn = |i: usize| text(i).and_then(|s| s.parse::<Lsn>().ok());
            SlotInfo {
                name: text(0).unwrap_or_default(),
                kind: text(1).unwrap_or_default(),
                database: text(2),
                plugin: text(3),
                active: r.get(4).and_then(Value::as_bool).unwrap_or(false),
                restart_lsn: lsn(5),
                confirmed_flush_lsn: lsn(6),
            }
        })
        .collect();
    Ok(Probe {
        in_recovery,
        server_version,
        timeline,
        wal_lsn: if in_recovery {
            None
        } else {
            parse_lsn(col(3), "pg_current_wal_lsn")?
        },
        receive_lsn: if in_recovery {
            parse_lsn(col(4), "pg_last_wal_receive_lsn")?
        } else {
            None
        },
        replay_lsn: if in_recovery {
            parse_lsn(col(5), "pg_last_wal_replay_lsn")?
        } else {
            None
        },
        replay_timestamp: if in_recovery {
            utc_timestamp(col(6))
        } else {
            None
        },
        replay_paused: in_recovery && parse_bool(col(7)),
        receiver_streaming: col(8) == Some("streaming"),
        receiver_conninfo_host: col(10).map(str::to_string),
        postmaster_start_time: utc_timestamp(col(12))
            .ok_or_else(|| bad("pg_postmaster_start_time"))?,
        replication,
        pending_restart,
        slots,
    })
}

impl LocalPostgres {
    /// Everything the HA loop needs from SQL, in one round trip on the cached connection. The
    /// whole call (including a reconnect) is bounded by `Timeouts::probe` (2 s by default), so
    /// a stuck postgres never hangs the caller.
    pub async fn probe(&self) -> Result<Probe, PgError> {
        let messages = self.simple_query(&probe_sql(), self.timeouts.probe).await?;
        let rows = rows(messages);
        let row = rows.first().ok_or_else(|| bad("an empty answer"))?;
        let mut probe = parse_probe_row(row)?;
        if probe.in_recovery && !probe.receiver_streaming {
            // No WAL receiver to ask, and the control file lags a timeline switch until the
            // next restartpoint: the WAL files themselves say which timeline the received WAL
            // is on (a replica that just switched to a new leader is not "behind the fork").
            let at = probe.receive_lsn.max(probe.replay_lsn).map_or(0, |l| l.0);
            if let Some(tl) = self.wal_file_timeline(at).await {
                probe.timeline = probe.timeline.max(tl);
            }
        }
        Ok(probe)
    }

    /// The highest timeline among the WAL segment files in pg_wal that hold position `at`.
    async fn wal_file_timeline(&self, at: u64) -> Option<u32> {
        let rows = rows(
            self.simple_query(
                "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'wal_segment_size'",
                self.timeouts.probe,
            )
            .await
            .ok()?,
        );
        let seg_size: u64 = rows.first()?.get(0)?.parse().ok()?;
        let names = std::fs::read_dir(self.params().data_dir.join("pg_wal"))
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok());
        timeline_holding(names, at, seg_size)
    }

    /// `pg_is_in_recovery()`, bounded like `probe`.
    pub async fn is_in_recovery(&self) -> Result<bool, PgError> {
        let rows = rows(
            self.simple_query("SELECT pg_catalog.pg_is_in_recovery()", self.timeouts.probe)
                .await?,
        );
        let row = rows.first().ok_or_else(|| bad("pg_is_in_recovery"))?;
        Ok(parse_bool(row.get(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_of_the_segment_holding_a_position() {
        let names = |v: &[&str]| {
            v.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .into_iter()
        };
        let mb16 = 16 * 1024 * 1024;
        // 0/4000D90 lies in segment 4; the switch to timeline 2 copied it.
        let files = [
            "000000010000000000000004",
            "000000020000000000000004",
            "000000010000000000000005",
            "00000002.history",
            "archive_status",
        ];
        assert_eq!(timeline_holding(names(&files), 0x4000D90, mb16), Some(2));
        assert_eq!(timeline_holding(names(&files), 0x5000100, mb16), Some(1));
        // The end of segment 4 exactly is still in segment 4.
        assert_eq!(timeline_holding(names(&files), 0x5000000, mb16), Some(2));
        assert_eq!(timeline_holding(names(&files), 0x6000100, mb16), None);
        assert_eq!(timeline_holding(names(&files), 0, mb16), None);
        // Past 4 GB the high word counts: 1/00000010 is log 1, segment 0 (16 MB segments).
        let hi = ["000000030000000100000000"];
        assert_eq!(timeline_holding(names(&hi), 0x1_0000_0010, mb16), Some(3));
    }

    #[test]
    fn walfile_timeline() {
        assert_eq!(timeline_from_walfile("000000020000000000000004"), Some(2));
        assert_eq!(timeline_from_walfile("0000000A0000000000000004"), Some(10));
        assert_eq!(timeline_from_walfile("zz"), None);
        assert_eq!(timeline_from_walfile("é0000000000"), None);
    }

    fn columns<'a>(v: &[Option<&'a str>]) -> Vec<Option<&'a str>> {
        v.to_vec()
    }

    #[test]
    fn parses_a_primary_row() {
        let cols = columns(&[
            Some("f"),
            Some("150018"),
            Some("000000030000000000000004"),
            Some("0/4000150"),
            None,
            Some("0/3000000"),
            None,
            Some("f"),
            None,
            None,
            None,
            Some("2"),
            Some("2026-11-22 01:58:08.202807"),
            Some(
                r#"[["replicator","node2","127.0.0.1","streaming","async",0],["replicator","node3",null,"catchup","sync",1]]"#,
            ),
            Some(r#"[["shared_buffers","64MB","128MB"],["max_wal_size","1GB",null]]"#),
            Some(
                r#"[["node2","physical",null,null,true,"0/4000150",null],["node3","physical",null,null,false,null,null],["cdc","logical","app","pgoutput",false,"0/3000000","0/3000100"]]"#,
            ),
        ]);
        let p = parse_probe_columns(&cols).unwrap();
        assert!(!p.in_recovery);
        assert_eq!(p.server_version, 150018);
        assert_eq!(
            p.timeline, 3,
            "from the WAL file name, not the stale checkpoint"
        );
        assert_eq!(p.wal_lsn, Some("0/4000150".parse().unwrap()));
        assert_eq!(
            p.replay_lsn, None,
            "static after promotion; not reported on a primary"
        );
        assert_eq!(p.postmaster_start_time, "2026-11-22 01:58:08.202807+00:00");
        assert_eq!(p.replication.len(), 2);
        assert_eq!(p.replication[0].client_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(p.replication[1].client_addr, None);
        assert_eq!(p.replication[1].sync_priority, 1);
        assert_eq!(
            p.pending_restart[0],
            ("shared_buffers".into(), "64MB".into(), "128MB".into())
        );
        assert_eq!(p.pending_restart[1].2, "");
        assert_eq!(p.slots.len(), 3);
        assert_eq!(p.slots[0].name, "node2");
        assert!(p.slots[0].active && !p.slots[0].is_logical());
        assert_eq!(p.slots[0].position(), Some("0/4000150".parse().unwrap()));
        assert_eq!(p.slots[1].restart_lsn, None);
        assert_eq!(p.slots[2].database.as_deref(), Some("app"));
        assert_eq!(p.slots[2].plugin.as_deref(), Some("pgoutput"));
        assert_eq!(p.slots[2].position(), Some("0/3000100".parse().unwrap()));
    }

    #[test]
    fn parses_a_replica_row() {
        let cols = columns(&[
            Some("t"),
            Some("150018"),
            None,
            None,
            Some("0/5000060"),
            Some("0/5000000"),
            Some("2026-11-22 01:58:10.439380"),
            Some("t"),
            Some("streaming"),
            Some("4"),
            Some("10.0.0.1"),
            Some("3"),
            Some("2026-11-22 01:58:10.439380"),
            None,
            None,
            None,
        ]);
        let p = parse_probe_columns(&cols).unwrap();
        assert!(p.in_recovery && p.replay_paused && p.receiver_streaming);
        assert_eq!(p.timeline, 4);
        assert_eq!(p.wal_lsn, None);
        assert_eq!(p.receive_lsn, Some("0/5000060".parse().unwrap()));
        assert_eq!(p.replay_lsn, Some("0/5000000".parse().unwrap()));
        assert_eq!(
            p.replay_timestamp.as_deref(),
            Some("2026-11-22 01:58:10.439380+00:00")
        );
        assert_eq!(p.receiver_conninfo_host.as_deref(), Some("10.0.0.1"));
        assert!(p.replication.is_empty() && p.slots.is_empty());

        // Receiver not running: the control file's timeline.
        let mut cols = cols;
        cols[8] = None;
        cols[9] = None;
        let p = parse_probe_columns(&cols).unwrap();
        assert_eq!(p.timeline, 3);
        assert!(!p.receiver_streaming);
    }

    #[test]
    fn bad_rows_are_errors() {
        assert!(parse_probe_columns(&[Some("t")]).is_err());
        let mut cols = vec![None; 16];
        assert!(parse_probe_columns(&cols).is_err());
        cols[1] = Some("150018");
        cols[12] = Some("2026-11-22 01:58:10.439380");
        assert!(
            parse_probe_columns(&cols).is_err(),
            "primary without a WAL file name"
        );
        cols[2] = Some("000000010000000000000001");
        cols[3] = Some("garbage");
        assert!(parse_probe_columns(&cols).is_err());
        cols[3] = Some("0/1");
        cols[13] = Some("{not json");
        assert!(parse_probe_columns(&cols).is_err());
        cols[13] = None;
        assert!(parse_probe_columns(&cols).is_ok());
    }

    #[test]
    fn probe_sql_is_one_statement() {
        let sql = probe_sql();
        assert!(!sql.contains(';'));
        assert!(sql.starts_with("SELECT "));
    }
}
