//! Retention: a table's rows of a batch of a verified segment leave DuckDB once every one
//! of them is older than the table's days (`[retention]`), a whole batch at a time.
//!
//! Space: DuckDB frees the blocks of deleted rows at its next checkpoint and new rows reuse
//! them; the file does not shrink (vacuum is off, `Store::open`). Measured: after the rows
//! of two ingests were evicted, a third of the same size left the file at its size
//! (BENCHMARKS.md, design measurements). A file can be made smaller offline by copying the
//! database (DuckDB's `COPY FROM DATABASE`); TokenTrail has no command for it.

use super::{Lake, TABLES};
use crate::store::Store;
use anyhow::{Result, bail};
use std::collections::BTreeMap;

/// `[retention]`: days each table keeps in DuckDB (tables not named stay whole, and so do
/// [`super::KEPT_HOT`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Every archived table, unless `tables` says otherwise.
    pub hot_days: Option<u32>,
    pub tables: BTreeMap<String, u32>,
}

impl Retention {
    pub fn check(&self) -> Result<()> {
        for name in self.tables.keys() {
            if !TABLES.iter().any(|(t, _)| t == name) {
                let known: Vec<&str> = TABLES.iter().map(|(t, _)| *t).collect();
                bail!("[retention.tables] names {name:?}, which is not archived: use one of {}", known.join(", "));
            }
            if super::KEPT_HOT.contains(&name.as_str()) {
                bail!(
                    "[retention.tables] names {name:?}: it stays whole in the database (entitlements and access \
                     reviews are replayed from it); it is archived, never deleted"
                );
            }
        }
        let zero = self.tables.iter().find(|(_, days)| **days == 0).map(|(name, _)| name.as_str());
        if let Some(name) = zero.or((self.hot_days == Some(0)).then_some("every table")) {
            bail!("retention of {name} is 0 days: keep at least 1 (detection reads the last day's sign-ins)");
        }
        Ok(())
    }

    pub fn days(&self, table: &str) -> Option<u32> {
        if super::KEPT_HOT.contains(&table) {
            return None;
        }
        self.tables.get(table).copied().or(self.hot_days)
    }
}

/// One table's rows of some batches of one segment, deleted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Eviction {
    pub first_batch: i64,
    pub last_batch: i64,
    pub table: String,
    pub batches: usize,
    pub rows: i64,
}

/// Deletes what `retention` lets go as of `now`: per verified segment and table, the
/// batches whose rows in that table are all older than its days, oldest first.
pub fn run(
    store: &Store,
    lake: &Lake,
    retention: &Retention,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Eviction>> {
    retention.check()?;
    let conn = store.connection()?;
    let mut stmt = conn.prepare(include_str!("sql/evictable.sql"))?;
    let candidates: Vec<(i64, i64, String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<duckdb::Result<_>>()?;
    let mut files =
        conn.prepare("SELECT path, bytes FROM lake_files WHERE first_batch = ? AND table_name = ? ORDER BY path")?;
    let mut done = Vec::new();
    for (first, last, table, oldest) in candidates {
        let Some(days) = retention.days(&table) else { continue };
        let Some(table) = TABLES.iter().map(|(t, _)| *t).find(|t| *t == table) else { continue };
        let cutoff = (now - chrono::Duration::days(i64::from(days))).date_naive();
        // No row of the segment is old enough: no batch is.
        if chrono::NaiveDate::parse_from_str(&oldest, "%Y-%m-%d").is_ok_and(|d| d >= cutoff) {
            continue;
        }
        // Table names come from our own list.
        let sql = include_str!("sql/batch_ages.sql").replace("{table}", table).replace("{day}", super::archive::DAY);
        let ages: Vec<Old> = conn
            .prepare(&sql)?
            .query_map(duckdb::params![first, last, table], |r| {
                Ok(Old { batch_id: r.get(0)?, first_day: r.get(1)?, last_day: r.get(2)?, rows: r.get(3)? })
            })?
            .collect::<duckdb::Result<_>>()?;
        let old: Vec<Old> = ages
            .into_iter()
            .filter(|b| chrono::NaiveDate::parse_from_str(&b.last_day, "%Y-%m-%d").is_ok_and(|d| d < cutoff))
            .collect();
        if old.is_empty() {
            continue;
        }
        // Archived and verified; still there? (A lake emptied by hand must not cost rows.)
        let archived: Vec<(String, i64)> = files
            .query_map(duckdb::params![first, table], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<duckdb::Result<_>>()?;
        for (path, size) in &archived {
            match lake.size(path)? {
                Some(found) if found == *size as u64 => {}
                Some(found) => bail!(
                    "{path} in the lake {} is {found} bytes, {size} when archived: nothing deleted \
                     (run tokentrail verify --lake to see what changed)",
                    lake.describe()
                ),
                None => bail!(
                    "{path} is no longer in the lake {}: nothing deleted from {table} (batches {first}..{last})",
                    lake.describe()
                ),
            }
        }
        let rows = store.transaction(|conn| evict(conn, table, first, &old))?;
        tracing::info!(table, first, last, batches = old.len(), rows, "evicted: answered from the lake from now on");
        done.push(Eviction { first_batch: first, last_batch: last, table: table.into(), batches: old.len(), rows });
    }
    Ok(done)
}

/// A batch whose rows of a table are all older than the retention.
struct Old {
    batch_id: i64,
    /// YYYY-MM-DD of its oldest and newest row.
    first_day: String,
    last_day: String,
    /// Counted when chosen.
    rows: i64,
}

/// Deletes `table`'s rows of `batches`, checking each count again inside the transaction
/// and, for the chained tables, against what the batch committed.
fn evict(conn: &duckdb::Connection, table: &'static str, first: i64, batches: &[Old]) -> Result<i64> {
    let chained = crate::store::chain::TABLES.iter().position(|t| *t == table);
    let mut total = 0;
    for Old { batch_id: id, first_day, last_day, rows: counted } in batches {
        let hot: i64 =
            conn.query_row(&format!("SELECT count(*) FROM {table} WHERE batch_id = ?"), [id], |r| r.get(0))?;
        let committed: Option<i64> = match chained {
            Some(i) => Some(conn.query_row(
                "SELECT [cosmos_rows, signin_rows, raw_rows, quarantined_rows][? + 1] FROM ingest_batches WHERE batch_id = ?",
                duckdb::params![i as i64, id],
                |r| r.get(0),
            )?),
            None => None,
        };
        if hot != *counted || committed.is_some_and(|c| c != hot) {
            bail!(
                "{table} holds {hot} rows of batch {id}{}: nothing deleted (were rows added or deleted since \
                 they were archived? run tokentrail verify)",
                committed.map_or(String::new(), |c| format!(", the batch committed {c}"))
            );
        }
        if table == "cosmos_requests" {
            // The requests' correlation goes with them (it points at their rowids).
            conn.execute(
                "DELETE FROM request_signins WHERE request_row IN (SELECT rowid FROM cosmos_requests WHERE batch_id = ?)",
                [id],
            )?;
        }
        conn.execute(&format!("DELETE FROM {table} WHERE batch_id = ?"), [id])?;
        conn.execute(
            "INSERT INTO lake_evictions (batch_id, table_name, first_batch, rows, first_day, last_day, evicted_at) \
             VALUES (?, ?, ?, ?, CAST(? AS DATE), CAST(? AS DATE), now())",
            duckdb::params![id, table, first, hot, first_day, last_day],
        )?;
        total += hot;
    }
    Ok(total)
}
