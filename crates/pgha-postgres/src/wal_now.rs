//! The local WAL positions at this moment. `GET /patroni` is how peers compare themselves in a
//! leader race; answering it from the HA loop's last snapshot (up to `loop_wait` old) would let
//! a less advanced replica think it is the most advanced one, so the API asks here first.

use std::time::Duration;

use pgha_types::Lsn;

use crate::sql::rows;
use crate::{LocalPostgres, PgError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalNow {
    pub in_recovery: bool,
    /// Primary: `pg_current_wal_lsn()`.
    pub current: Option<Lsn>,
    /// Standby: `pg_last_wal_receive_lsn()` and `pg_last_wal_replay_lsn()`.
    pub received: Option<Lsn>,
    pub replayed: Option<Lsn>,
}

const WAL_NOW_SQL: &str = "SELECT pg_catalog.pg_is_in_recovery(), \
     CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL ELSE pg_catalog.pg_current_wal_lsn() END, \
     pg_catalog.pg_last_wal_receive_lsn(), pg_catalog.pg_last_wal_replay_lsn()";

impl LocalPostgres {
    /// One round trip on the cached connection, bounded by `limit`.
    pub async fn wal_now(&self, limit: Duration) -> Result<WalNow, PgError> {
        let rows = rows(self.simple_query(WAL_NOW_SQL, limit).await?);
        let row = rows
            .first()
            .ok_or_else(|| PgError::Protocol("WAL positions: an empty answer".into()))?;
        let lsn = |i: usize| -> Result<Option<Lsn>, PgError> {
            row.get(i)
                .map(|v| {
                    v.parse::<Lsn>()
                        .map_err(|_| PgError::Protocol(format!("WAL positions: bad LSN {v:?}")))
                })
                .transpose()
        };
        Ok(WalNow {
            in_recovery: matches!(row.get(0), Some("t")),
            current: lsn(1)?,
            received: lsn(2)?,
            replayed: lsn(3)?,
        })
    }
}
