//! Helpers shared by the scenarios.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use pgha_e2e::{report, Cluster, PgEndpoint};

/// `PGHA_E2E_SKIP=1` skips the scenarios (machines without etcd/PostgreSQL).
pub fn skip(name: &str) -> bool {
    let skip = std::env::var("PGHA_E2E_SKIP")
        .map(|v| v == "1")
        .unwrap_or(false);
    if skip {
        report(&format!("{name}: skipped (PGHA_E2E_SKIP=1)"));
    }
    skip
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The timeline the primary currently writes on (from its current WAL file name).
pub fn primary_timeline(pg: &PgEndpoint) -> Result<u32> {
    let tl = pg
        .sql_one(
            "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int",
        )?
        .ok_or_else(|| anyhow!("no timeline"))?;
    Ok(tl.parse()?)
}

/// `SELECT timeline_id FROM pg_control_checkpoint()`.
pub fn checkpoint_timeline(pg: &PgEndpoint) -> Result<u32> {
    let tl = pg
        .sql_one("SELECT timeline_id FROM pg_control_checkpoint()")?
        .ok_or_else(|| anyhow!("no checkpoint timeline"))?;
    Ok(tl.parse()?)
}

/// A replica's WAL receiver: (status, received timeline).
pub fn wal_receiver(pg: &PgEndpoint) -> Result<(String, u32)> {
    let rows = pg.sql("SELECT status, received_tli FROM pg_stat_wal_receiver")?;
    let row = rows
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("{}: no WAL receiver", pg.name))?;
    let status = row.first().cloned().flatten().unwrap_or_default();
    let tli = row
        .get(1)
        .cloned()
        .flatten()
        .unwrap_or_default()
        .parse()
        .unwrap_or(0);
    Ok((status, tli))
}

/// Ids in `table` on `pg`.
pub fn ids(pg: &PgEndpoint, table: &str) -> Result<BTreeSet<i64>> {
    pg.sql(&format!("SELECT id FROM {table}"))?
        .into_iter()
        .map(|r| {
            r.into_iter()
                .next()
                .flatten()
                .ok_or_else(|| anyhow!("NULL id"))?
                .parse::<i64>()
                .context("parse id")
        })
        .collect()
}

/// Waits until `table` on `name` contains every id of `want`.
pub fn wait_rows(
    c: &Cluster,
    name: &str,
    table: &str,
    want: &BTreeSet<i64>,
    timeout: Duration,
) -> Result<()> {
    let pg = c.pg(name);
    c.wait(
        &format!("{} rows of {table} on {name}", want.len()),
        timeout,
        || {
            let have = ids(&pg, table)?;
            let missing: Vec<_> = want.difference(&have).take(10).collect();
            ensure!(missing.is_empty(), "missing ids (first 10) {missing:?}");
            Ok(())
        },
    )
}

/// Tries an INSERT on `pg`; Ok only if it committed.
pub fn try_write(pg: &PgEndpoint, table: &str, id: i64) -> Result<()> {
    pg.sql(&format!("INSERT INTO {table}(id) VALUES ({id})"))
        .map(|_| ())
}

/// One data row of `pghactl list` (pretty format).
#[derive(Debug, Clone, PartialEq)]
pub struct ListRow {
    pub member: String,
    pub host: String,
    pub role: String,
    pub state: String,
    pub tl: String,
}

/// Parses the `pghactl list` table: the title line and the member rows.
pub fn parse_list(out: &str) -> Result<(String, Vec<ListRow>)> {
    let title = out
        .lines()
        .find(|l| l.contains("Cluster:"))
        .ok_or_else(|| anyhow!("no title line in:\n{out}"))?
        .to_string();
    let mut rows = Vec::new();
    let mut header_seen = false;
    for line in out.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|s| s.trim().to_string())
            .collect();
        if !header_seen {
            ensure!(
                cells.first().map(String::as_str) == Some("Member"),
                "first table row is not the header: {line}"
            );
            header_seen = true;
            continue;
        }
        if cells.len() < 5 {
            bail!("short row: {line}");
        }
        rows.push(ListRow {
            member: cells[0].clone(),
            host: cells[1].clone(),
            role: cells[2].clone(),
            state: cells[3].clone(),
            tl: cells[4].clone(),
        });
    }
    Ok((title, rows))
}

/// Stdout of a successful command, else an error with its stderr.
pub fn stdout_ok(out: &std::process::Output, what: &str) -> Result<String> {
    ensure!(
        out.status.success(),
        "{what} failed ({}): stdout: {} stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_observed_list_table() {
        let out = "\
+ Cluster: pgha-bench (7710801750160872329) ----+----+-------------+-----+------------+-----+
| Member | Host           | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+
| node1  | 127.0.0.1:5451 | Replica | streaming |  1 |   0/4000000 |   0 |  0/4000000 |   0 |
| node2  | 127.0.0.1:5452 | Leader  | running   |  1 |             |     |            |     |
| node3  | 127.0.0.1:5453 | Replica | streaming |  1 |   0/4000000 |   0 |  0/4000000 |   0 |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+
";
        let (title, rows) = parse_list(out).unwrap();
        assert!(title.contains("(7710801750160872329)"));
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].role, "Leader");
        assert_eq!(rows[1].state, "running");
        assert_eq!(rows[0].state, "streaming");
        assert_eq!(rows[2].tl, "1");
        assert_eq!(rows[0].host, "127.0.0.1:5451");
    }
}
