//! Rules over everyone's counts. Instances sharing a balanced hub each store part of a
//! principal's requests (Azure spreads them over every partition), so a rule that adds up
//! a principal's hour (volume, mass delete, enumeration, probing, a new collection) would
//! judge a third of it on each of three instances. Instead:
//!
//! - Each segment an instance puts in the shared lake carries its partial aggregates
//!   (`segments::PARTIALS`): its requests' `activity_hours` and `first_seen` rows.
//! - Every instance loads every segment's partials once ([`Fleet::load`]) into
//!   `fleet_activity` and `fleet_first_seen`: small, and ready before it may need them.
//! - Every instance also copies the requests of the last two days' segments into
//!   `fleet_requests` as they come (each event once: the claims' chains; dropped after
//!   two days), marking those its own DuckDB holds too (`here`). The search and principal
//!   pages read the others beside its own ([`crate::lake::view`]), and a new lease holder
//!   finds them there rather than copying them in its first pass.
//! - The instance holding the rules lease ([`crate::source::eventhubs::lease`]) runs those
//!   rules ([`crate::rules::FLEET_RULES`]) over everyone's counts ([`Fleet::evaluate`]): it
//!   copies what its rules' periods reach before the two days, and on one connection
//!   temporary views named like the tables the rules read give the fleet's
//!   `cosmos_requests`, `activity_hours` and `first_seen`. The rows a finding names are
//!   kept for good, so its evidence stays readable on the holder whoever stored them.
//!
//! - Every instance publishes its findings and takes in the others'
//!   ([`super::shared_findings`]), so every instance's pages list them all.
//!
//! Files are fetched into a cache directory, their SHA-256 checked against the claim
//! recorded in `hub_segments` (never by listing the lake), and DuckDB reads them there.

use super::Lake;
use super::segments::{ClaimedFile, PARTIALS};
use super::shared_findings::SharedFindings;
use crate::rules::{Detector, Evaluation};
use crate::store::Store;
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Segments whose partials one pass loads at most: a long backlog loads over several.
const LOAD_PER_PASS: i64 = 2_000;

/// How far before the last holder's end a new holder starts: rows of that time that
/// reached the lake after the last holder's last pass are judged too.
const HANDOVER_MARGIN_MICROS: i64 = 15 * 60_000_000;

/// How far the two-day horizon moves before the copied requests behind it are dropped.
const DROP_EVERY_MICROS: i64 = 3_600_000_000;

/// Segments whose requests one transaction copies.
const COPY_PER_TRANSACTION: usize = 256;

/// How far around a rule's period its query reads rows (the rules look an hour or two
/// past their window's edges).
const MARGIN_MICROS: i64 = 3 * 3_600_000_000;

/// The shared lake as the rules read it.
pub struct Fleet {
    lake: Lake,
    /// Where the segments' files are fetched to, and DuckDB reads them.
    cache: PathBuf,
    /// Where the next [`Fleet::evaluate`] starts after the lease was taken: the last
    /// holder's end (less [`HANDOVER_MARGIN_MICROS`]), or all history (`Some(None)`).
    restart: Option<Option<i64>>,
    /// The earliest row time (µs) of the segments loaded since the last evaluation.
    earliest: Option<i64>,
    /// Segments whose partials could not be loaded, and when: tried again after [`RETRY`].
    failed: Failed,
    /// Segments whose requests could not be copied, and when: tried again after [`RETRY`].
    failed_rows: Failed,
    /// The last [`Fleet::load`] left no segment unloaded but those that cannot be read.
    caught_up: bool,
    /// Copied requests of segments ending before this (µs) were last dropped.
    dropped: i64,
    /// This instance's requests of ingest batches up to this one have marked the copies
    /// of the same events `here`.
    marked: i64,
    /// Findings published to, and taken in from, the other instances.
    findings: SharedFindings,
}

/// A segment to load: source, partition, first sequence number, files (JSON), first row time.
type Pending = (String, String, i64, Option<String>, Option<i64>);

/// Segments (source, partition, first sequence number) that could not be read, and when.
type Failed = HashMap<(String, String, i64), Instant>;

/// Of `pending`, those not failed in the last [`RETRY`].
fn due(failed: &Failed, pending: Vec<Pending>) -> Vec<Pending> {
    pending
        .into_iter()
        .filter(|p| failed.get(&(p.0.clone(), p.1.clone(), p.2)).is_none_or(|at| at.elapsed() >= RETRY))
        .collect()
}

/// The segments `outcomes` applied; each failure logged (`what`) and noted in `failed`,
/// each success forgetting an earlier failure.
fn settle<'s>(failed: &mut Failed, outcomes: Vec<(&'s Pending, Result<()>)>, what: &str) -> Vec<&'s Pending> {
    let mut applied = Vec::new();
    for (segment, outcome) in outcomes {
        let (source, partition, first, ..) = segment;
        let key = (source.clone(), partition.clone(), *first);
        match outcome {
            Ok(()) => {
                failed.remove(&key);
                applied.push(segment);
            }
            Err(error) => {
                tracing::warn!(source, partition, first, error = format!("{error:#}"), "{what}");
                failed.insert(key, Instant::now());
            }
        }
    }
    applied
}

/// One table's files of a segment and the statement that reads them (named in the
/// session variable `fleet_files`).
struct Step {
    table: &'static str,
    sql: &'static str,
}

/// Adding up a segment's partial counts.
const PARTIAL_STEPS: [Step; 2] = [
    Step { table: PARTIALS[0], sql: include_str!("sql/fleet_load_activity.sql") },
    Step { table: PARTIALS[1], sql: include_str!("sql/fleet_load_first_seen.sql") },
];

/// Copying a segment's requests.
const ROW_STEPS: [Step; 1] = [Step { table: "cosmos_requests", sql: include_str!("sql/fleet_load_rows.sql") }];

/// How long a segment whose partials could not be loaded waits before the next try.
const RETRY: Duration = Duration::from_secs(60);

impl Fleet {
    /// The shared lake `lake` as instance `instance` ([`crate::sys::instance_name`]) reads
    /// it, its files cached in `cache`.
    pub fn new(lake: Lake, cache: &Path, instance: String) -> Result<Fleet> {
        std::fs::create_dir_all(cache)
            .with_context(|| format!("creating the shared lake's cache directory {}", cache.display()))?;
        let cache =
            cache.canonicalize().with_context(|| format!("opening the shared lake's cache {}", cache.display()))?;
        Ok(Fleet {
            lake,
            cache,
            restart: Some(None),
            earliest: None,
            failed: HashMap::new(),
            failed_rows: HashMap::new(),
            caught_up: false,
            dropped: i64::MIN,
            marked: i64::MIN,
            findings: SharedFindings::new(instance),
        })
    }

    /// The one directory DuckDB reads the shared lake's files from.
    pub fn directory(&self) -> &Path {
        &self.cache
    }

    /// The lease was taken or lost: the next [`Fleet::evaluate`] starts at `from` (where
    /// the last holder had got to, µs), or at the start of history.
    pub fn start_over(&mut self, from: Option<i64>) {
        self.restart = Some(from.map(|f| f - HANDOVER_MARGIN_MICROS));
    }

    /// Loads the partials of the segments recorded but not loaded yet (at most
    /// [`LOAD_PER_PASS`]), [`COPY_PER_TRANSACTION`] segments a transaction with their marks,
    /// so each is added once. A segment whose files cannot be read (missing, changed, not
    /// Parquet of partials) is logged, left unloaded (the status page counts it) and tried
    /// again after [`RETRY`]; the others go on. Then copies the requests of the last two
    /// days' segments the same way (at most [`LOAD_PER_PASS`] segments), drops older copies
    /// once the horizon has moved an hour, and marks `here` the copies of events stored here
    /// since. Returns the segments whose partials were loaded.
    pub fn load(&mut self, store: &Store) -> Result<usize> {
        let conn = store.connection()?;
        let pending: Vec<Pending> = conn
            .prepare(
                "SELECT source, partition, first_sequence, files, epoch_us(first_time) FROM hub_segments \
                 WHERE NOT coalesce(partials_loaded, false) ORDER BY rowid LIMIT ?",
            )?
            .query_map([LOAD_PER_PASS], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
            .collect::<duckdb::Result<_>>()?;
        let (count, more) = (pending.len(), pending.len() as i64 >= LOAD_PER_PASS);
        let due = due(&self.failed, pending);
        let outcomes = self.apply(&conn, &due, &PARTIAL_STEPS, "partials_loaded");
        let added = settle(
            &mut self.failed,
            outcomes,
            "a segment's partial counts could not be added up; tried again in a minute",
        );
        self.earliest = self.earliest.into_iter().chain(added.iter().filter_map(|s| s.4)).min();
        let loaded = added.len();
        // The last two days' requests too, so that they are here before a holder or a page
        // needs them.
        let end: Option<i64> =
            conn.query_row("SELECT epoch_us(max(last_time)) FROM hub_segments WHERE partials_loaded", [], |r| {
                r.get(0)
            })?;
        let mut copied_all = true;
        if let Some(end) = end {
            copied_all = self.copy_rows(&conn, end - crate::rules::FLEET_HORIZON_MICROS, Some(LOAD_PER_PASS))?;
            // Once the horizon has moved an hour: not a range join every pass.
            let before = end - crate::rules::FLEET_HORIZON_MICROS;
            if before >= self.dropped.saturating_add(DROP_EVERY_MICROS) {
                match drop_rows(store, before) {
                    Ok(()) => self.dropped = before,
                    Err(error) => tracing::warn!(error = format!("{error:#}"), "dropping old copied requests failed"),
                }
            }
        }
        self.mark_here(store)?;
        match self.findings.pass_if_due(store, &self.lake) {
            Ok(Some(pass)) if pass != Default::default() => tracing::debug!(?pass, "findings shared"),
            Ok(_) => {}
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "sharing findings with the other instances failed; retrying"
            ),
        }
        // Those that cannot be read are in `failed`; they do not hold the lease back.
        self.caught_up = !more && loaded + self.failed.len() >= count && copied_all;
        Ok(loaded)
    }

    /// The rules over everyone's counts, on the lease holder: from the earliest new
    /// segment's rows (after taking the lease: from where the last holder had got to, or
    /// all history) to the latest; with the row time evaluated through, when a rule ran.
    pub fn evaluate(&mut self, store: &Store, detector: &Detector) -> Result<(Evaluation, Option<i64>)> {
        let conn = store.connection()?;
        let (start, end): (Option<i64>, Option<i64>) = conn.query_row(
            "SELECT epoch_us(min(first_time)), epoch_us(max(last_time)) FROM hub_segments WHERE partials_loaded",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (Some(start), Some(end)) = (start, end) else { return Ok((Evaluation::default(), None)) };
        let from = match self.restart {
            Some(restart) => Some(restart.unwrap_or(start).max(start)),
            None => self.earliest,
        };
        let runs = detector.fleet_rules(&conn, from, start)?;
        if runs.is_empty() {
            (self.restart, self.earliest) = (None, None);
            return Ok((Evaluation::default(), None));
        }
        // The last two days are copied already (`load`); a rule's first pass reaches further.
        let reach = runs.iter().map(|r| r.from).min().unwrap_or(start) - MARGIN_MICROS;
        self.copy_rows(&conn, reach, None)?;
        views(&conn)?;
        let evaluation = detector.evaluate_fleet(&conn, &runs, end, &copy_evidence);
        // The views are this connection's: gone with it.
        drop(conn);
        let evaluation = evaluation?;
        // A rule that failed forgot its state: the next pass runs it over all history.
        (self.restart, self.earliest) = (None, None);
        Ok((evaluation, Some(end)))
    }

    /// Copies into `fleet_requests` the requests of the segments whose rows reach `from`
    /// (µs) or later and are not there yet (at most `limit` segments). A segment whose file
    /// cannot be read is logged and left out (its counts are in) until [`RETRY`] has passed.
    /// Whether none is left to copy but those.
    fn copy_rows(&mut self, conn: &duckdb::Connection, from: i64, limit: Option<i64>) -> Result<bool> {
        let limit = limit.unwrap_or(i64::MAX);
        let segments: Vec<Pending> = conn
            .prepare(
                "SELECT source, partition, first_sequence, files, epoch_us(first_time) FROM hub_segments \
                 WHERE partials_loaded AND NOT coalesce(rows_loaded, false) AND epoch_us(last_time) >= ? \
                 ORDER BY rowid LIMIT ?",
            )?
            .query_map([from, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
            .collect::<duckdb::Result<_>>()?;
        let more = segments.len() as i64 >= limit;
        let due = due(&self.failed_rows, segments);
        let outcomes = self.apply(conn, &due, &ROW_STEPS, "rows_loaded");
        settle(
            &mut self.failed_rows,
            outcomes,
            "a segment's requests could not be copied; the rules and pages go without them until it can",
        );
        // Those that cannot be read are in `failed_rows`; they do not hold the lease back.
        Ok(!more)
    }

    /// Marks `here` the copies of events this instance stored after they were copied: a
    /// partition that moved here is read again from its blob checkpoint, which can lag the
    /// lake. (A copy of an event stored before is marked as it is copied.) Only the
    /// requests of batches committed since the last pass are joined.
    fn mark_here(&mut self, store: &Store) -> Result<()> {
        let marked = self.marked;
        let through = store.transaction(|conn| {
            // In one transaction: a batch committed meanwhile is the next pass's. Only a
            // request at or before another instance's claims of its partition can have a
            // copy from there: usually none, and then fleet_requests is not read.
            let (through, overlapping): (Option<i64>, i64) = conn.query_row(
                "WITH theirs AS (SELECT source, partition, max(last_sequence) AS last FROM hub_segments \
                 WHERE NOT ours GROUP BY ALL) \
                 SELECT max(c.batch_id), count(*) FILTER (WHERE c.sequence_number <= t.last) \
                 FROM cosmos_requests c LEFT JOIN theirs t ON t.source = c.source AND t.partition = c.partition \
                 WHERE c.batch_id > ?",
                [marked],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if let Some(through) = through.filter(|_| overlapping > 0) {
                conn.execute(
                    "UPDATE fleet_requests f SET here = true FROM cosmos_requests c \
                     WHERE c.batch_id > ? AND c.batch_id <= ? AND NOT f.here AND c.source = f.source \
                     AND c.partition = f.partition AND c.sequence_number = f.sequence_number \
                     AND c.record_index = f.record_index",
                    [marked, through],
                )?;
            }
            Ok(through)
        })?;
        self.marked = through.unwrap_or(marked);
        Ok(())
    }

    /// Runs `steps` over the files `segments` name and marks each segment `mark`:
    /// [`COPY_PER_TRANSACTION`] segments a transaction, one at a time only to find one
    /// whose files cannot be read. Each segment with its outcome.
    fn apply<'s>(
        &self,
        conn: &duckdb::Connection,
        segments: &'s [Pending],
        steps: &[Step],
        mark: &str,
    ) -> Vec<(&'s Pending, Result<()>)> {
        let mut outcomes = Vec::new();
        for chunk in segments.chunks(COPY_PER_TRANSACTION) {
            if self.apply_once(conn, chunk, steps, mark).is_ok() {
                outcomes.extend(chunk.iter().map(|s| (s, Ok(()))));
                continue;
            }
            for segment in chunk {
                outcomes.push((segment, self.apply_once(conn, std::slice::from_ref(segment), steps, mark)));
            }
        }
        outcomes
    }

    /// [`Fleet::apply`] of `segments` in one transaction; the cached files are removed after.
    fn apply_once(&self, conn: &duckdb::Connection, segments: &[Pending], steps: &[Step], mark: &str) -> Result<()> {
        let mut wanted = Vec::new();
        for (_, _, _, files, _) in segments {
            // Recorded before claims listed their files (migration 28): nothing to read.
            let files: Vec<ClaimedFile> =
                serde_json::from_str(files.as_deref().unwrap_or("[]")).context("hub_segments.files")?;
            wanted.extend(files.into_iter().filter(|f| steps.iter().any(|s| s.table == f.table)));
        }
        let paths = self.cache_all(&wanted)?;
        let applied = crate::store::in_transaction(conn, |conn| {
            for step in steps {
                let files = wanted
                    .iter()
                    .zip(&paths)
                    .filter(|(f, _)| f.table == step.table)
                    .map(|(_, p)| p.to_str().context("a cache path is not UTF-8"))
                    .collect::<Result<Vec<_>>>()?;
                if !files.is_empty() {
                    conn.execute("SET VARIABLE fleet_files = string_split(?, chr(10))", [files.join("\n")])?;
                    conn.execute_batch(step.sql).with_context(|| format!("adding segments' {}", step.table))?;
                }
            }
            // `mark` is one of this file's column names.
            let sql = format!(
                "UPDATE hub_segments SET {mark} = true WHERE source = ? AND partition = ? AND first_sequence = ?"
            );
            for (source, partition, first, ..) in segments {
                conn.execute(&sql, duckdb::params![source, partition, first])?;
            }
            Ok(())
        });
        for path in &paths {
            // In the database now (or not readable): the cached copy is not read again.
            let _ = std::fs::remove_file(path);
        }
        applied
    }

    /// The local copies of claimed files: those not there yet fetched (several at once)
    /// and their SHA-256 checked against the claim's.
    fn cache_all(&self, files: &[ClaimedFile]) -> Result<Vec<PathBuf>> {
        if let Some(bad) = files.iter().find(|f| !plain(&f.path)) {
            bail!("hub_segments names {:?}, which is not a path segments are written to", bad.path);
        }
        let paths: Vec<PathBuf> = files.iter().map(|f| self.cache.join(&f.path)).collect();
        let missing: Vec<&ClaimedFile> =
            files.iter().zip(&paths).filter(|(_, p)| !p.exists()).map(|(f, _)| f).collect();
        let fetched = self.lake.get_all(&missing.iter().map(|f| f.path.clone()).collect::<Vec<_>>())?;
        for (file, bytes) in missing.into_iter().zip(fetched) {
            let found = super::sha256_hex(&bytes);
            if found != file.sha256 {
                bail!(
                    "{} in the shared lake {} has changed: its SHA-256 is {found}, its claim says {}",
                    file.path,
                    self.lake.describe(),
                    file.sha256
                );
            }
            super::view::write_atomically(&self.cache.join(&file.path), &bytes)?;
        }
        Ok(paths)
    }
}

impl crate::rules::live::FleetPass for Fleet {
    fn load(&mut self, store: &Store) -> Result<usize> {
        Fleet::load(self, store)
    }

    fn evaluate(&mut self, store: &Store, detector: &Detector) -> Result<(Evaluation, Option<i64>)> {
        Fleet::evaluate(self, store, detector)
    }

    fn start_over(&mut self, from: Option<i64>) {
        Fleet::start_over(self, from)
    }

    fn caught_up(&self) -> bool {
        self.caught_up
    }
}

/// The fleet's `activity_hours`, `first_seen` and `cosmos_requests` on `conn`, named like
/// the tables so the rules read them unchanged.
fn views(conn: &duckdb::Connection) -> Result<()> {
    let database: String = conn.query_row("SELECT current_database()", [], |r| r.get(0))?;
    conn.execute_batch(&include_str!("sql/fleet_views.sql").replace("{database}", &database.replace('"', "\"\"")))
        .context("reading everyone's counts beside this instance's")
}

/// Drops the copied requests of segments whose rows all end before `before` (µs), but
/// those a finding names.
fn drop_rows(store: &Store, before: i64) -> Result<()> {
    store.transaction(|conn| {
        conn.execute(
            "DELETE FROM fleet_requests f USING hub_segments s \
             WHERE NOT f.kept AND s.rows_loaded AND epoch_us(s.last_time) < ? \
             AND f.source = s.source AND f.partition = s.partition \
             AND f.sequence_number BETWEEN s.first_sequence AND s.last_sequence",
            [before],
        )?;
        conn.execute(
            "UPDATE hub_segments SET rows_loaded = false WHERE rows_loaded AND epoch_us(last_time) < ?",
            [before],
        )?;
        Ok(())
    })
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
