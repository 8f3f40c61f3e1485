//! Replication slot primitives: create, drop, advance, and copying a logical slot from the
//! primary onto a standby (PostgreSQL 15 cannot create logical slots on a standby; a copy of the
//! slot's state file, loaded at the next start, then moved forward with
//! `pg_replication_slot_advance`, can be used after a promotion).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgha_types::{Lsn, SlotKind};

use crate::error::PgError;
use crate::replica::ConnTarget;
use crate::sql::{quote_literal, rows};
use crate::LocalPostgres;

/// Bound for one slot command on another database or member. Advancing a logical slot decodes
/// the WAL in between, which can take a while after a long outage.
const SLOT_COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// A logical slot as the primary has it, with the bytes of its state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    pub name: String,
    pub database: String,
    pub plugin: String,
    pub state: Vec<u8>,
}

impl SlotState {
    pub fn is(&self, kind: &SlotKind) -> bool {
        matches!(kind, SlotKind::Logical { database, plugin }
            if *database == self.database && *plugin == self.plugin)
    }
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.strip_prefix("\\x").unwrap_or(s);
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn timed_out(what: String) -> PgError {
    PgError::Timeout {
        what,
        secs: SLOT_COMMAND_TIMEOUT.as_secs(),
    }
}

impl LocalPostgres {
    /// Run one statement on database `db` of the local server over a connection of its own.
    async fn query_in(&self, db: &str, sql: &str) -> Result<(), PgError> {
        let p = self.params();
        let client = self
            .connect_db(&p.local_host, p.port, db, SLOT_COMMAND_TIMEOUT)
            .await?;
        tokio::time::timeout(SLOT_COMMAND_TIMEOUT, client.simple_query(sql))
            .await
            .map_err(|_| timed_out(format!("a slot command in database {db}")))??;
        Ok(())
    }

    /// A physical slot reserving WAL at once.
    pub async fn create_physical_slot(&self, name: &str) -> Result<(), PgError> {
        let sql = format!(
            "SELECT pg_catalog.pg_create_physical_replication_slot({}, true)",
            quote_literal(name)
        );
        self.simple_query(&sql, self.timeouts.short_command)
            .await
            .map(|_| ())
    }

    /// A logical slot; it is created from a connection to its database.
    pub async fn create_logical_slot(
        &self,
        name: &str,
        database: &str,
        plugin: &str,
    ) -> Result<(), PgError> {
        let sql = format!(
            "SELECT pg_catalog.pg_create_logical_replication_slot({}, {})",
            quote_literal(name),
            quote_literal(plugin)
        );
        self.query_in(database, &sql).await
    }

    /// Drop the slot unless a session uses it. `Ok(false)`: it was active (or gone).
    pub async fn drop_inactive_slot(&self, name: &str) -> Result<bool, PgError> {
        let sql = format!(
            "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots \
             WHERE slot_name = {} AND NOT active",
            quote_literal(name)
        );
        let dropped = rows(self.simple_query(&sql, self.timeouts.short_command).await?);
        Ok(!dropped.is_empty())
    }

    /// `pg_replication_slot_advance`; a logical slot (`database` given) from a connection to
    /// its database. PostgreSQL stops at what this server has replayed (or flushed).
    pub async fn advance_slot(
        &self,
        name: &str,
        database: Option<&str>,
        lsn: Lsn,
    ) -> Result<(), PgError> {
        let sql = format!(
            "SELECT pg_catalog.pg_replication_slot_advance({}, {})",
            quote_literal(name),
            quote_literal(&lsn.to_string())
        );
        match database {
            Some(db) => self.query_in(db, &sql).await,
            None => self
                .simple_query(&sql, self.timeouts.short_command)
                .await
                .map(|_| ()),
        }
    }

    /// The logical slots `names` of the primary at `source`, with their state files (read over
    /// SQL as the superuser, as pg_rewind's connection does). Slots it lacks are left out.
    pub async fn primary_slot_states(
        &self,
        source: &ConnTarget,
        names: &[String],
    ) -> Result<Vec<SlotState>, PgError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let client = self
            .connect_db(&source.host, source.port, "postgres", SLOT_COMMAND_TIMEOUT)
            .await?;
        let list: Vec<String> = names.iter().map(|n| quote_literal(n)).collect();
        let sql = format!(
            "SELECT s.slot_name, d.datname, s.plugin, \
                    pg_catalog.encode(pg_catalog.pg_read_binary_file('pg_replslot/' || s.slot_name || '/state'), 'hex') \
             FROM pg_catalog.pg_replication_slots s JOIN pg_catalog.pg_database d ON d.oid = s.datoid \
             WHERE NOT pg_catalog.pg_is_in_recovery() AND s.slot_type = 'logical' AND s.slot_name IN ({})",
            list.join(", ")
        );
        let messages = tokio::time::timeout(SLOT_COMMAND_TIMEOUT, client.simple_query(&sql))
            .await
            .map_err(|_| timed_out(format!("the slot states from {source}")))??;
        rows(messages)
            .iter()
            .map(|r| {
                let col = |i: usize| r.get(i).unwrap_or_default().to_string();
                let state = from_hex(&col(3)).ok_or_else(|| {
                    PgError::Protocol(format!("slot {}: unreadable state file", col(0)))
                })?;
                Ok(SlotState {
                    name: col(0),
                    database: col(1),
                    plugin: col(2),
                    state,
                })
            })
            .collect()
    }

    /// Put `slot`'s state file into our `pg_replslot` (postgres must be stopped: it loads slots
    /// at start). Written to `NAME.tmp` first and renamed, each step synced, so a crash leaves
    /// either the old slot or the new one (postgres removes `*.tmp` leftovers at start).
    pub fn install_slot_state(&self, slot: &SlotState) -> Result<(), PgError> {
        if self.postmaster_pid().is_some() {
            return Err(PgError::InvalidInput(format!(
                "slot {}: postgres must be stopped to install a slot copy",
                slot.name
            )));
        }
        if !pgha_types::valid_slot_name(&slot.name) {
            return Err(PgError::InvalidInput(format!(
                "invalid slot name {:?} from the primary",
                slot.name
            )));
        }
        let base = self.params().data_dir.join("pg_replslot");
        let dir = base.join(&slot.name);
        let tmp = base.join(format!("{}.tmp", slot.name));
        let io = |p: &Path| {
            let p: PathBuf = p.to_path_buf();
            move |e| PgError::io(p, e)
        };
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(io(&tmp))?;
        self.fix_owner(&tmp)?;
        let file = tmp.join("state");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(io(&file))?;
        f.write_all(&slot.state).map_err(io(&file))?;
        f.sync_all().map_err(io(&file))?;
        drop(f);
        self.fix_owner(&file)?;
        sync_dir(&tmp)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
        sync_dir(&dir)?;
        sync_dir(&base)
    }
}

fn sync_dir(dir: &Path) -> Result<(), PgError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PgError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_of_bytea() {
        assert_eq!(from_hex("\\x00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(from_hex("a1"), Some(vec![0xa1]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
