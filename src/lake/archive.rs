//! `tokentrail archive`: committed, absorbed batches to the lake, one segment at a time
//! (see the module notes of [`super`] for the order that makes a crash harmless).

use super::manifest::{BatchEntry, ChainEntry, FileEntry, Manifest};
use super::read::{encodings, fetch_checked, parquet_rows, segment_tables_digests};
use super::{Lake, Put, TABLES};
use crate::store::Store;
use crate::store::chain;
use anyhow::{Context, Result, bail};
use arrow::array::{AsArray, Date32Array, RecordBatch};
use arrow::datatypes::Date32Type;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, compute_leaves};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A segment holds whole batches up to about this many rows (more when one batch has
/// more): its largest file is built in memory before it is written.
pub const SEGMENT_ROWS: i64 = 1_000_000;

/// A row's day (UTC): its event time, or its batch's commit when it has none
/// (quarantine). Reads the row as `t` and its `ingest_batches` row as `b`.
pub(crate) const DAY: &str = "CAST(CAST(coalesce(t.time, b.committed_at) AS TIMESTAMP) AS DATE)";

#[derive(Debug, Clone)]
pub struct Options {
    pub segment_rows: i64,
    /// Stops between segments once cancelled (the service stopping).
    pub stop: Option<tokio_util::sync::CancellationToken>,
}

impl Default for Options {
    fn default() -> Self {
        Options { segment_rows: SEGMENT_ROWS, stop: None }
    }
}

/// One archived segment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Segment {
    pub first_batch: i64,
    pub last_batch: i64,
    pub files: usize,
    pub rows: i64,
    pub bytes: u64,
    /// Files a previous, interrupted run had already written (kept, not written again).
    pub files_found: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub segments: Vec<Segment>,
    /// Committed batches detection has not absorbed yet (their derived rows are not all
    /// there): archived by a later run.
    pub not_absorbed: i64,
    /// access_log and finding_history by link, and findings' snapshot ([`super::journal`]).
    pub journal: super::journal::Report,
}

/// Archives every absorbed batch not archived yet; first finishes the segments an
/// earlier run left unverified. `progress(segment)` is called after each. A segment's
/// files are written while the one before is read back (on a thread of its own); each
/// is recorded, in order, once read back.
pub fn run(store: &Store, lake: &Lake, options: &Options, progress: &dyn Fn(&Segment)) -> Result<Report> {
    let mut report = Report::default();
    std::thread::scope(|scope| -> Result<()> {
        let mut reading: Option<Reading<'_>> = None;
        let written = (|| -> Result<()> {
            let mut after = i64::MIN;
            while !options.stop.as_ref().is_some_and(|s| s.is_cancelled()) {
                let conn = store.connection()?;
                let planned = match pending(&conn, after)? {
                    Some((first, last, planned_for)) => {
                        if planned_for != lake.describe() {
                            bail!(
                                "batches {first}..{last} were being archived to {planned_for} when that run stopped: \
                                 archive to that lake again to finish them (this run was given {})",
                                lake.describe()
                            );
                        }
                        Some((first, last))
                    }
                    None => plan(store, lake, options)?,
                };
                let Some((first, last)) = planned else { break };
                let written = write_segment(store, lake, first, last)?;
                finish(store, lake, reading.take(), progress, &mut report)?;
                let manifest = written.manifest.clone();
                let reader = scope.spawn(move || {
                    let at = std::time::Instant::now();
                    let conn = store.connection()?;
                    verify_segment(&conn, lake, &manifest)?;
                    Ok(at.elapsed())
                });
                reading = Some((written, reader));
                after = last;
            }
            Ok(())
        })();
        // The segment being read back is recorded even when writing the next one failed.
        let finished = finish(store, lake, reading.take(), progress, &mut report);
        written.and(finished)
    })?;
    let conn = store.connection()?;
    report.not_absorbed = conn.query_row(include_str!("sql/not_absorbed.sql"), [], |r| r.get(0))?;
    report.journal = super::journal::run(store, lake)?;
    Ok(report)
}

/// A segment written, and the thread reading it back.
type Reading<'scope> = (Written, std::thread::ScopedJoinHandle<'scope, Result<Duration>>);

/// Records the segment once its read-back check has passed.
fn finish(
    store: &Store,
    lake: &Lake,
    reading: Option<Reading<'_>>,
    progress: &dyn Fn(&Segment),
    report: &mut Report,
) -> Result<()> {
    let Some((written, reader)) = reading else { return Ok(()) };
    let verifying = reader.join().map_err(|_| anyhow::anyhow!("a read-back check panicked"))??;
    let segment = record_segment(store, lake, written, verifying)?;
    progress(&segment);
    report.segments.push(segment);
    Ok(())
}

/// The first segment after batch `after` planned but not verified: (first, last, lake).
fn pending(conn: &duckdb::Connection, after: i64) -> Result<Option<(i64, i64, String)>> {
    let mut stmt = conn.prepare(
        "SELECT first_batch, last_batch, lake FROM lake_segments WHERE verified_at IS NULL AND first_batch > ? \
         ORDER BY first_batch LIMIT 1",
    )?;
    let mut rows = stmt.query([after])?;
    Ok(match rows.next()? {
        Some(r) => Some((r.get(0)?, r.get(1)?, r.get(2)?)),
        None => None,
    })
}

/// Chooses the next segment's batches and records them before any file is written.
fn plan(store: &Store, lake: &Lake, options: &Options) -> Result<Option<(i64, i64)>> {
    store.transaction(|conn| {
        let mut stmt = conn.prepare(include_str!("sql/next_batches.sql"))?;
        let mut rows = stmt.query([])?;
        let (mut first, mut last, mut total) = (None, None, 0i64);
        while let Some(r) = rows.next()? {
            let (id, count): (i64, i64) = (r.get(0)?, r.get(1)?);
            if first.is_some() && total + count > options.segment_rows {
                break;
            }
            first.get_or_insert(id);
            last = Some(id);
            total += count;
        }
        let (Some(first), Some(last)) = (first, last) else { return Ok(None) };
        conn.execute(
            "INSERT INTO lake_segments (first_batch, last_batch, lake, planned_at) VALUES (?, ?, ?, now())",
            duckdb::params![first, last, lake.describe()],
        )?;
        Ok(Some((first, last)))
    })
}

/// A segment's files and manifest, written and not yet read back.
struct Written {
    manifest: Manifest,
    manifest_path: String,
    manifest_sha256: String,
    files_found: usize,
    started: std::time::Instant,
    encoding: Duration,
    writing: Duration,
}

fn write_segment(store: &Store, lake: &Lake, first: i64, last: i64) -> Result<Written> {
    let conn = store.connection()?;
    let batches = batch_entries(&conn, first, last)?;
    let previous: Option<String> = conn
        .query_row(
            "SELECT chain_digest FROM ingest_chain WHERE batch_id < ? ORDER BY batch_id DESC LIMIT 1",
            [first],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| if matches!(e, duckdb::Error::QueryReturnedNoRows) { Ok(None) } else { Err(e) })?;
    let ids: Vec<i64> = batches.iter().map(|b| b.batch_id).collect();
    let mut files = Vec::new();
    let mut files_found = 0;
    let (started, mut encoding, mut writing) = (std::time::Instant::now(), Duration::ZERO, Duration::ZERO);
    for (table, extra) in TABLES {
        let at = std::time::Instant::now();
        let parts = table_parquet(store, table, extra, &ids)
            .with_context(|| format!("writing {table} (batches {first}..{last})"))?;
        encoding += at.elapsed();
        let at = std::time::Instant::now();
        let paths: Vec<String> = parts.iter().map(|p| super::file_path(table, p.day, first, last)).collect();
        let puts = lake.put_new_all(paths.iter().cloned().zip(parts.iter().map(|p| p.bytes.clone())).collect())?;
        for ((part, path), put) in parts.into_iter().zip(paths).zip(puts) {
            let (bytes, rows, sha256) = match put {
                Put::Written => (part.bytes, part.rows, part.sha256),
                Put::Existed(existing) => {
                    files_found += 1;
                    let rows =
                        parquet_rows(&existing).with_context(|| format!("{path} in the lake {}", lake.describe()))?;
                    let sha256 = super::sha256_hex(&existing);
                    (existing, rows, sha256)
                }
            };
            files.push(FileEntry {
                sha256,
                path,
                table: table.into(),
                date: part.day.to_string(),
                rows,
                bytes: bytes.len() as u64,
            });
        }
        writing += at.elapsed();
    }
    let manifest = Manifest {
        format: super::manifest::FORMAT.into(),
        schema_version: super::SCHEMA_VERSION,
        first_batch: first,
        last_batch: last,
        files,
        batches,
        previous_chain_digest: previous,
    };
    let text = Bytes::from(serde_json::to_vec_pretty(&manifest)?);
    let manifest_path = super::manifest_path(first, last);
    let text = match lake.put_new(&manifest_path, text.clone())? {
        Put::Written => text,
        Put::Existed(existing) => {
            let theirs: Manifest = serde_json::from_slice(&existing)
                .with_context(|| format!("{manifest_path} in the lake {} is not a manifest", lake.describe()))?;
            if theirs != manifest {
                bail!(
                    "{manifest_path} in the lake {} describes other files or batches than this database holds \
                     for batches {first}..{last}: was another database archived to the same place?",
                    lake.describe()
                );
            }
            existing
        }
    };
    let manifest_sha256 = super::sha256_hex(&text);
    Ok(Written { manifest, manifest_path, manifest_sha256, files_found, started, encoding, writing })
}

/// Records a segment read back, with its files, in one transaction.
fn record_segment(store: &Store, lake: &Lake, written: Written, verifying: Duration) -> Result<Segment> {
    let Written { manifest, manifest_path, manifest_sha256, files_found, started, encoding, writing } = written;
    let first = manifest.first_batch;
    let segment = Segment {
        first_batch: first,
        last_batch: manifest.last_batch,
        files: manifest.files.len(),
        rows: manifest.files.iter().map(|f| f.rows).sum(),
        bytes: manifest.files.iter().map(|f| f.bytes).sum(),
        files_found,
    };
    store.transaction(|conn| {
        conn.execute(
            "UPDATE lake_segments SET manifest = ?, manifest_sha256 = ?, files = ?, rows = ?, bytes = ?, \
             verified_at = now() WHERE first_batch = ?",
            duckdb::params![
                manifest_path,
                manifest_sha256,
                segment.files as i64,
                segment.rows,
                segment.bytes as i64,
                first
            ],
        )?;
        let mut insert = conn.prepare(
            "INSERT INTO lake_files (first_batch, path, table_name, day, rows, bytes, sha256) \
             VALUES (?, ?, ?, CAST(? AS DATE), ?, ?, ?)",
        )?;
        for f in &manifest.files {
            insert.execute(duckdb::params![first, f.path, f.table, f.date, f.rows, f.bytes as i64, f.sha256])?;
        }
        Ok(())
    })?;
    tracing::info!(
        first,
        last = segment.last_batch,
        files = segment.files,
        rows = segment.rows,
        lake = lake.describe(),
        scan_and_encode_ms = encoding.as_millis() as u64,
        write_ms = writing.as_millis() as u64,
        read_back_and_verify_ms = verifying.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "archived"
    );
    Ok(segment)
}

/// Reads every file of the segment back from the lake and checks it against the chain:
/// each chained table's per-batch digests and counts, the others' row counts.
pub fn verify_segment(conn: &duckdb::Connection, lake: &Lake, manifest: &Manifest) -> Result<()> {
    let (first, last) = (manifest.first_batch, manifest.last_batch);
    let encodings = encodings(manifest.batches.iter().map(|b| (b.batch_id, b.chain.as_ref().map(|c| c.version))))?;
    let files: Vec<(usize, &str, &str, u64)> = manifest
        .files
        .iter()
        .filter_map(|f| {
            let table = chain::TABLES.iter().position(|t| *t == f.table)?;
            Some((table, f.path.as_str(), f.sha256.as_str(), f.bytes))
        })
        .collect();
    let found = segment_tables_digests(lake, &encodings, &files, (first, last))?;
    for (i, (table, found)) in chain::TABLES.into_iter().zip(found).enumerate() {
        for batch in &manifest.batches {
            let (digest, rows) = found[&batch.batch_id];
            if rows != batch.counts[i] {
                bail!(
                    "batch {}: the lake holds {rows} {table} rows, the batch committed {}",
                    batch.batch_id,
                    batch.counts[i]
                );
            }
            if let Some(stored) = &batch.chain
                && chain::hex(&digest) != stored.tables[i]
            {
                bail!("batch {}: the archived {table} rows do not match the batch's chain digest", batch.batch_id);
            }
        }
    }
    for (table, _) in &TABLES[chain::TABLES.len()..] {
        let mut archived = 0;
        for file in manifest.files.iter().filter(|f| f.table == *table) {
            archived += parquet_rows(&fetch_checked(lake, &file.path, &file.sha256)?)?;
        }
        let hot: i64 = conn.query_row(
            &format!("SELECT count(*) FROM {table} WHERE batch_id BETWEEN ? AND ?"),
            [first, last],
            |r| r.get(0),
        )?;
        if hot != archived {
            bail!("batches {first}..{last}: the lake holds {archived} {table} rows, the database {hot}");
        }
    }
    Ok(())
}

fn batch_entries(conn: &duckdb::Connection, first: i64, last: i64) -> Result<Vec<BatchEntry>> {
    let mut stmt = conn.prepare(include_str!("sql/segment_batches.sql"))?;
    let rows = stmt.query_map([first, last], |r| {
        let version: Option<i32> = r.get(8)?;
        Ok(BatchEntry {
            batch_id: r.get(0)?,
            committed_at_us: r.get(1)?,
            source_id: r.get(2)?,
            position: r.get(3)?,
            counts: [r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?],
            chain: match version {
                Some(version) => Some(ChainEntry {
                    version,
                    tables: [r.get(9)?, r.get(10)?, r.get(11)?, r.get(12)?],
                    rows_digest: r.get(13)?,
                    chain_digest: r.get(14)?,
                }),
                None => None,
            },
        })
    })?;
    Ok(rows.collect::<duckdb::Result<_>>()?)
}

/// Threads encoding a table's files (zstd is most of the work). The unit of work is a
/// row group: rows come in time order, one day at a time, and an encoder per day left
/// the other idle.
const ENCODERS: usize = 2;

/// Threads scanning DuckDB, a batch at a time, and splitting the rows by day: turning
/// DuckDB's chunks into Arrow took one thread as long as both encoders' work.
const SCANNERS: usize = 2;

/// One day's file of a table, encoded.
pub struct Encoded {
    pub day: chrono::NaiveDate,
    pub bytes: Bytes,
    pub rows: i64,
    pub sha256: String,
}

/// A row group of a day's file: (day, the scanner that filled it, its index among that
/// scanner's groups of the day).
type Group = (i32, usize, usize);

/// A day's row groups, each with (scanner, index), in no order.
type DayGroups = Vec<((usize, usize), Vec<ArrowColumnChunk>)>;

enum Work {
    Rows(Group, RecordBatch),
    /// The group has all its rows.
    Close(Group),
}

/// One table's rows of the segment's `batches`, one Parquet file (in memory) per day.
fn table_parquet(store: &Store, table: &str, extra: &str, batches: &[i64]) -> Result<Vec<Encoded>> {
    // The table name and extra columns come from our own list.
    let sql = format!(
        "SELECT t.*{extra}, {DAY} AS lake_day \
         FROM {table} t JOIN ingest_batches b ON b.batch_id = t.batch_id WHERE t.batch_id BETWEEN ? AND ?"
    );
    let full = {
        let conn = store.connection()?;
        let mut stmt = conn.prepare(&sql)?;
        let stream = stmt.stream_arrow(duckdb::params![1, 0])?;
        stream.get_schema()
    };
    let at = full.index_of("lake_day")?;
    let keep: Vec<usize> = (0..full.fields().len()).filter(|i| *i != at).collect();
    let schema = Arc::new(full.project(&keep)?);
    let (_, factory) =
        ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties()))?.into_serialized_writer()?;
    // Rows sent to each encoder and not yet encoded: a new group goes to the least busy.
    let backlog: Vec<AtomicUsize> = (0..ENCODERS).map(|_| AtomicUsize::new(0)).collect();
    let next_batch = AtomicUsize::new(0);
    let groups: Vec<(Group, Vec<ArrowColumnChunk>)> = std::thread::scope(|scope| -> Result<_> {
        let (senders, encoders): (Vec<_>, Vec<_>) = (0..ENCODERS)
            .map(|e| {
                // About a row group of 2,048-row chunks queued per encoder bounds memory.
                let (send, receive) = std::sync::mpsc::sync_channel::<Work>(64);
                let (factory, schema, backlog) = (&factory, &schema, &backlog[e]);
                let encoder = scope.spawn(move || -> Result<Vec<(Group, Vec<ArrowColumnChunk>)>> {
                    let mut open: BTreeMap<Group, Vec<ArrowColumnWriter>> = BTreeMap::new();
                    let mut done = Vec::new();
                    for work in receive {
                        match work {
                            Work::Rows(group, rows) => {
                                let writers = match open.entry(group) {
                                    std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                                    std::collections::btree_map::Entry::Vacant(entry) => {
                                        entry.insert(factory.create_column_writers(0)?)
                                    }
                                };
                                let mut leaves = writers.iter_mut();
                                for (field, column) in schema.fields().iter().zip(rows.columns()) {
                                    for leaf in compute_leaves(field, column)? {
                                        leaves.next().context("a column without its writer")?.write(&leaf)?;
                                    }
                                }
                                backlog.fetch_sub(rows.num_rows(), Ordering::Relaxed);
                            }
                            Work::Close(group) => {
                                if let Some(writers) = open.remove(&group) {
                                    done.push((
                                        group,
                                        writers.into_iter().map(|w| w.close()).collect::<Result<_, _>>()?,
                                    ));
                                }
                            }
                        }
                    }
                    for (group, writers) in open {
                        done.push((group, writers.into_iter().map(|w| w.close()).collect::<Result<_, _>>()?));
                    }
                    Ok(done)
                });
                (send, encoder)
            })
            .unzip();
        let scanners: Vec<_> = (0..SCANNERS)
            .map(|lane| {
                let (senders, backlog, next_batch, schema, keep, sql) =
                    (senders.clone(), &backlog, &next_batch, &schema, &keep, &sql);
                scope.spawn(move || -> Result<()> {
                    let conn = store.connection()?;
                    let mut stmt = conn.prepare(sql)?;
                    // Per day: this scanner's open group, the rows in it, the encoder it went to.
                    let mut days: BTreeMap<i32, (usize, usize, usize)> = BTreeMap::new();
                    let least_busy = || (0..ENCODERS).min_by_key(|e| backlog[*e].load(Ordering::Relaxed)).unwrap_or(0);
                    // A closed channel means that encoder failed: its error is reported below.
                    let send = |encoder: usize, work: Work| senders[encoder].send(work).is_ok();
                    while let Some(&id) = batches.get(next_batch.fetch_add(1, Ordering::Relaxed)) {
                        for batch in stmt.stream_arrow(duckdb::params![id, id])? {
                            let batch = batch?;
                            let days_column = batch
                                .column(at)
                                .as_primitive_opt::<Date32Type>()
                                .context("lake_day is a DATE")?
                                .clone();
                            let rows = batch.project(keep)?;
                            if rows.schema() != *schema {
                                bail!("DuckDB's Arrow batches are not of the query's schema");
                            }
                            let mut distinct = days_column.values().to_vec();
                            distinct.sort_unstable();
                            distinct.dedup();
                            for &day in &distinct {
                                let mut part = if distinct.len() == 1 {
                                    rows.clone()
                                } else {
                                    let mask =
                                        arrow::compute::kernels::cmp::eq(&days_column, &Date32Array::new_scalar(day))?;
                                    arrow::compute::filter_record_batch(&rows, &mask)?
                                };
                                while part.num_rows() > 0 {
                                    let (index, filled, encoder) =
                                        days.entry(day).or_insert_with(|| (0, 0, least_busy()));
                                    let take = part.num_rows().min(crate::store::ROW_GROUP_ROWS - *filled);
                                    backlog[*encoder].fetch_add(take, Ordering::Relaxed);
                                    if !send(*encoder, Work::Rows((day, lane, *index), part.slice(0, take))) {
                                        return Ok(());
                                    }
                                    *filled += take;
                                    if *filled == crate::store::ROW_GROUP_ROWS {
                                        if !send(*encoder, Work::Close((day, lane, *index))) {
                                            return Ok(());
                                        }
                                        (*index, *filled, *encoder) = (*index + 1, 0, least_busy());
                                    }
                                    part = part.slice(take, part.num_rows() - take);
                                }
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        drop(senders);
        let mut scanned = Vec::new();
        for scanner in scanners {
            scanned.push(scanner.join().map_err(|_| anyhow::anyhow!("a DuckDB scanner panicked"))?);
        }
        let mut groups = Vec::new();
        for encoder in encoders {
            groups.extend(encoder.join().map_err(|_| anyhow::anyhow!("a Parquet encoder panicked"))??);
        }
        scanned.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(groups)
    })?;
    let mut by_day: BTreeMap<i32, DayGroups> = BTreeMap::new();
    for ((day, lane, index), chunks) in groups {
        by_day.entry(day).or_default().push(((lane, index), chunks));
    }
    // Each day's file put together and hashed, the days shared by two threads.
    let days: Vec<_> = by_day.into_iter().collect();
    let schema = &schema;
    let files: Vec<Result<Vec<Encoded>>> = std::thread::scope(|scope| {
        let mut shares: Vec<Vec<_>> = (0..ENCODERS).map(|_| Vec::new()).collect();
        for (i, day) in days.into_iter().enumerate() {
            shares[i % ENCODERS].push(day);
        }
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || share.into_iter().map(|(day, groups)| assemble(schema, day, groups)).collect())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a Parquet writer panicked"))))
            .collect()
    });
    let mut out = Vec::new();
    for share in files {
        out.extend(share?);
    }
    out.sort_by_key(|f| f.day);
    Ok(out)
}

/// A day's file from its row groups' column chunks, in order.
fn assemble(schema: &SchemaRef, day: i32, mut groups: DayGroups) -> Result<Encoded> {
    groups.sort_by_key(|(order, _)| *order);
    let (mut writer, _) =
        ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties()))?.into_serialized_writer()?;
    for (_, chunks) in groups {
        let mut group = writer.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
    }
    let rows = writer.flushed_row_groups().iter().map(|g| g.num_rows()).sum();
    let bytes = Bytes::from(writer.into_inner()?);
    let day = chrono::NaiveDate::from_num_days_from_ce_opt(day + 719_163).context("a day out of range")?;
    Ok(Encoded { day, rows, sha256: super::sha256_hex(&bytes), bytes })
}

/// Columns of (nearly) unique values: a dictionary is built for each row group and
/// given up once it reaches its size limit, which cost CPU and made files larger.
const NO_DICTIONARY: [&str; 8] =
    ["time", "activity_id", "record_sha256", "line", "row_id", "duration_ms", "request_charge", "response_length"];

/// The lake's writer settings ([`super::writer_properties`]), with statistics per column
/// chunk and no dictionary for the columns of unique values.
pub fn properties() -> WriterProperties {
    // Min and max per column chunk, for readers' pruning; no page index.
    let mut builder = super::writer_properties().set_statistics_enabled(EnabledStatistics::Chunk);
    for column in NO_DICTIONARY {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    builder.build()
}
