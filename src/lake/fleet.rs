//! Rules over everyone's counts. Instances sharing a balanced hub each store part of a
//! principal's requests (Azure spreads them over every partition), so a rule that adds up
//! a principal's hour (volume, mass delete, enumeration, probing, a new collection) would
//! judge a third of it on each of three instances. Instead:
//!
//! - Each segment an instance puts in the shared lake carries its partial aggregates
//!   (`segments::PARTIALS`): its requests' `activity_hours` and `first_seen` rows.
//! - Every instance loads every segment's partials once ([`Fleet::load`]) into
//!   `fleet_activity` and `fleet_first_seen`: small, and ready before it may need them.
//! - The instance holding the rules lease ([`crate::source::eventhubs::lease`]) runs those
//!   rules ([`crate::rules::FLEET_RULES`]) over everyone's counts ([`Fleet::evaluate`]): on
//!   one connection, temporary views named like the tables the rules read give the fleet's
//!   `activity_hours` and `first_seen`, and a `cosmos_requests` of every instance's rows
//!   from the segments' files of the period (each event once: the claims' chains). The
//!   rows a finding names are copied into `fleet_requests`, so its evidence stays readable
//!   on the holder whoever stored them.
//!
//! Files are fetched into a cache directory, their SHA-256 checked against the claim
//! recorded in `hub_segments` (never by listing the lake), and DuckDB reads them there.

use super::Lake;
use super::segments::{ClaimedFile, PARTIALS};
use crate::rules::{Detector, Evaluation};
use crate::store::Store;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// Segments whose partials one pass loads at most: a long backlog loads over several.
const LOAD_PER_PASS: i64 = 2_000;

/// How far around a rule's period its query reads rows (the rules look an hour or two
/// past their window's edges).
const MARGIN_MICROS: i64 = 3 * 3_600_000_000;

/// The shared lake as the rules read it.
pub struct Fleet {
    lake: Lake,
    /// Where the segments' files are fetched to, and DuckDB reads them.
    cache: PathBuf,
    /// `hub_segments` rows (rowid) the rules over everyone's counts have seen: `None` until
    /// the first pass after taking the lease, which evaluates all history.
    seen: Option<i64>,
}

impl Fleet {
    pub fn new(lake: Lake, cache: &Path) -> Result<Fleet> {
        std::fs::create_dir_all(cache)
            .with_context(|| format!("creating the shared lake's cache directory {}", cache.display()))?;
        let cache =
            cache.canonicalize().with_context(|| format!("opening the shared lake's cache {}", cache.display()))?;
        Ok(Fleet { lake, cache, seen: None })
    }

    /// The one directory DuckDB reads the shared lake's files from.
    pub fn directory(&self) -> &Path {
        &self.cache
    }

    /// The lease was lost (or not yet held): the next [`Fleet::evaluate`] reads all history.
    pub fn forget(&mut self) {
        self.seen = None;
    }

    /// Loads the partials of the segments recorded but not loaded yet (at most
    /// [`LOAD_PER_PASS`]); each segment's in one transaction with its mark, so each is
    /// added once. Returns the segments loaded.
    pub fn load(&self, store: &Store) -> Result<usize> {
        let conn = store.connection()?;
        let pending: Vec<(String, String, i64, Option<String>)> = conn
            .prepare(
                "SELECT source, partition, first_sequence, files FROM hub_segments \
                 WHERE NOT coalesce(partials_loaded, false) ORDER BY rowid LIMIT ?",
            )?
            .query_map([LOAD_PER_PASS], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<duckdb::Result<_>>()?;
        for (source, partition, first, files) in &pending {
            // Recorded before claims listed their files (migration 28): nothing to add.
            let files: Vec<ClaimedFile> = match files {
                Some(text) => serde_json::from_str(text).context("hub_segments.files")?,
                None => Vec::new(),
            };
            let mut paths = Vec::new();
            for file in files.iter().filter(|f| PARTIALS.contains(&f.table.as_str())) {
                paths.push((file.table.clone(), self.cached(file)?));
            }
            crate::store::in_transaction(&conn, |conn| {
                for (table, path) in &paths {
                    let path = path.to_str().context("a cache path is not UTF-8")?;
                    conn.execute("SET VARIABLE fleet_partial = ?", [path])?;
                    let sql = match table.as_str() {
                        "activity_hours" => include_str!("sql/fleet_load_activity.sql"),
                        _ => include_str!("sql/fleet_load_first_seen.sql"),
                    };
                    conn.execute_batch(sql).with_context(|| format!("adding up a segment's {table}"))?;
                }
                conn.execute(
                    "UPDATE hub_segments SET partials_loaded = true \
                     WHERE source = ? AND partition = ? AND first_sequence = ?",
                    duckdb::params![source, partition, first],
                )?;
                Ok(())
            })?;
            for (_, path) in paths {
                // Added up: the cached copy is not read again.
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(pending.len())
    }

    /// The rules over everyone's counts, on the lease holder: from the earliest new
    /// segment's rows (all history on the first pass after taking the lease) to the latest.
    pub fn evaluate(&mut self, store: &Store, detector: &Detector) -> Result<Evaluation> {
        let conn = store.connection()?;
        let (newest, earliest, start, end): (Option<i64>, Option<i64>, Option<i64>, Option<i64>) = conn.query_row(
            "SELECT max(rowid), epoch_us(min(first_time) FILTER (WHERE rowid > ?)), epoch_us(min(first_time)), \
             epoch_us(max(last_time)) FROM hub_segments WHERE partials_loaded",
            [self.seen.unwrap_or(-1)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let (Some(newest), Some(start), Some(end)) = (newest, start, end) else { return Ok(Evaluation::default()) };
        let full = self.seen.is_none();
        let from = if full { Some(start) } else { earliest };
        let runs = detector.fleet_rules(&conn, from, start)?;
        if runs.is_empty() {
            self.seen = Some(newest);
            return Ok(Evaluation::default());
        }
        let reach = runs.iter().map(|r| r.from).min().unwrap_or(start) - MARGIN_MICROS;
        self.views(&conn, reach, end + MARGIN_MICROS)?;
        let evaluation = detector.evaluate_fleet(&conn, &runs, end, &copy_evidence);
        // The views read this pass's files: gone with the connection.
        drop(conn);
        let evaluation = evaluation?;
        self.seen = Some(newest);
        if let Err(error) = self.evict(store, start.max(end - crate::rules::FLEET_HORIZON_MICROS)) {
            tracing::warn!(error = format!("{error:#}"), "clearing the shared lake's cache failed");
        }
        Ok(evaluation)
    }

    /// The fleet's `activity_hours`, `first_seen` and `cosmos_requests` on `conn`, the
    /// rows from the files of the segments whose rows meet `from..=to` (µs).
    fn views(&self, conn: &duckdb::Connection, from: i64, to: i64) -> Result<()> {
        let files: Vec<String> = conn
            .prepare(
                "SELECT files FROM hub_segments WHERE partials_loaded AND files IS NOT NULL \
                 AND epoch_us(last_time) >= ? AND epoch_us(first_time) <= ? ORDER BY rowid",
            )?
            .query_map([from, to], |r| r.get(0))?
            .collect::<duckdb::Result<_>>()?;
        let mut paths = Vec::new();
        for text in files {
            let files: Vec<ClaimedFile> = serde_json::from_str(&text).context("hub_segments.files")?;
            for file in files.iter().filter(|f| f.table == "cosmos_requests") {
                let path = self.cached(file)?;
                paths.push(path.to_str().context("a cache path is not UTF-8")?.to_owned());
            }
        }
        let database: String = conn.query_row("SELECT current_database()", [], |r| r.get(0))?;
        let database = database.replace('"', "\"\"");
        let requests = if paths.is_empty() {
            // No rows in the period: the view has the table's columns and none of its rows.
            format!("SELECT NULL::BIGINT AS rowid, * FROM \"{database}\".main.cosmos_requests WHERE false")
        } else {
            conn.execute("SET VARIABLE fleet_request_files = string_split(?, chr(10))", [paths.join("\n")])?;
            "SELECT fleet_row_id(source, partition, sequence_number, record_index) AS rowid, * \
             FROM read_parquet(getvariable('fleet_request_files'), hive_partitioning = false, union_by_name = true)"
                .to_owned()
        };
        conn.execute_batch(&format!(
            "CREATE OR REPLACE TEMP VIEW cosmos_requests AS {requests};\n{}",
            include_str!("sql/fleet_views.sql").replace("{database}", &database)
        ))
        .context("reading everyone's counts beside this instance's")?;
        Ok(())
    }

    /// The local copy of a claimed file, fetched and checked if it is not there yet.
    fn cached(&self, file: &ClaimedFile) -> Result<PathBuf> {
        if !plain(&file.path) {
            bail!("hub_segments names {:?}, which is not a path segments are written to", file.path);
        }
        let path = self.cache.join(&file.path);
        if !path.exists() {
            let bytes = super::read::fetch_checked(&self.lake, &file.path, &file.sha256)?;
            super::view::write_atomically(&path, &bytes)?;
        }
        Ok(path)
    }

    /// Removes the cached row files of segments whose rows all end before `before` (µs):
    /// no pass reads them again.
    fn evict(&self, store: &Store, before: i64) -> Result<()> {
        let conn = store.connection()?;
        let old: Vec<String> = conn
            .prepare("SELECT files FROM hub_segments WHERE files IS NOT NULL AND epoch_us(last_time) < ?")?
            .query_map([before], |r| r.get(0))?
            .collect::<duckdb::Result<_>>()?;
        for text in old {
            let files: Vec<ClaimedFile> = serde_json::from_str(&text).context("hub_segments.files")?;
            for file in files.iter().filter(|f| plain(&f.path)) {
                let _ = std::fs::remove_file(self.cache.join(&file.path));
            }
        }
        Ok(())
    }
}

impl crate::rules::live::FleetPass for Fleet {
    fn load(&mut self, store: &Store) -> Result<usize> {
        Fleet::load(self, store)
    }

    fn evaluate(&mut self, store: &Store, detector: &Detector) -> Result<Evaluation> {
        Fleet::evaluate(self, store, detector)
    }

    fn forget(&mut self) {
        Fleet::forget(self)
    }
}

/// Copies the rows of `rule_output`'s request evidence into `fleet_requests` (once per
/// row) and names them there: the holder's evidence for rows any instance stored.
fn copy_evidence(conn: &duckdb::Connection) -> Result<()> {
    conn.execute_batch(include_str!("sql/fleet_copy_evidence.sql")).context("copying the evidence rows")?;
    Ok(())
}

/// A path segments are written to (`segments::file_path`): under `hubs/`, nothing that
/// climbs out of the cache or quotes.
fn plain(path: &str) -> bool {
    path.starts_with("hubs/")
        && path.ends_with(".parquet")
        && !path.contains("..")
        && path.chars().all(|c| c.is_ascii_alphanumeric() || "_-=./".contains(c))
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn only_segment_paths_are_read() {
        assert!(plain(
            "hubs/ns.servicebus.windows.net/requests/table=activity_hours/partition=3/00000000000000000001-00000000000000000009-host-0a1b2c3d-0000abcd.parquet"
        ));
        for bad in ["/etc/passwd", "hubs/../x.parquet", "hubs/a'b.parquet", "table=x/y.parquet", "hubs/x.json"] {
            assert!(!plain(bad), "{bad}");
        }
    }
}
