//! The lake's journal (migration 24): the append-chained `access_log` and
//! `finding_history` archived by whole links of `append_chain`, and snapshots of
//! `findings`. Run at the end of every [`super::archive::run`].
//!
//! - Links: a table's links not archived yet are chosen in `lake_links` before a file is
//!   written, so a crash or a retry finishes the same links with the same file names:
//!   `table=<t>/date=<day>/links-<first>-<last>.parquet` (the day of the row's `time` or
//!   `changed_at`, UTC), written create-if-absent, then the manifest
//!   (`manifests/<t>-links-<first>-<last>.json`: the files with SHA-256 and the
//!   `append_chain` rows they hold). Every file is read back and each link's `rows_digest`
//!   recomputed from the Parquet rows with `store::append`'s own code ([`verify_links`],
//!   which needs nothing but the manifest and the files) before the manifest is written;
//!   then the links are recorded as archived.
//! - Findings are mutable (status changes; their history is the chained
//!   `finding_history`), so a snapshot file holds every row of `findings` as of an archive
//!   run: `table=findings/date=<run day>/snapshot-<n>-<UTC time>.parquet`, with a
//!   manifest, taken when the rows differ from the last snapshot's.
//! - Nothing here leaves the database: these tables are small and the service and evidence
//!   packs read them.

use super::manifest::FileEntry;
use super::read::{batches, fetch_checked, parquet_rows};
use super::{Lake, Put};
use crate::store::Store;
use crate::store::append;
use crate::store::chain::{TableDigest, chain_digest, decode_hex, hex};
use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray, Date32Array};
use arrow::datatypes::{Date32Type, Int64Type};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The append-chained tables archived by link, each with the column that gives a row's day.
pub const TABLES: [(&str, &str); 2] = [("access_log", "time"), ("finding_history", "changed_at")];

/// Links of one table archived together, up to about this many rows.
const LINK_ROWS: i64 = 1_000_000;

pub const LINKS_FORMAT: &str = "tokentrail-lake-links";
pub const SNAPSHOT_FORMAT: &str = "tokentrail-lake-snapshot";

/// `manifests/<t>-links-<first>-<last>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinksManifest {
    pub format: String,
    pub schema_version: u32,
    pub table: String,
    pub first_link: i64,
    pub last_link: i64,
    pub files: Vec<FileEntry>,
    /// The `append_chain` rows of the links, in order.
    pub links: Vec<LinkEntry>,
    /// The chain digest of the link before `first_link` (64 zeros before link 1).
    pub previous_chain_digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkEntry {
    pub link: i64,
    pub first_id: i64,
    pub last_id: i64,
    pub rows: i64,
    pub version: i32,
    pub rows_digest: String,
    pub chain_digest: String,
    /// Microseconds since the epoch, UTC.
    pub committed_at_us: i64,
}

/// `manifests/findings-snapshot-<n>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    pub format: String,
    pub schema_version: u32,
    pub table: String,
    pub snapshot: i64,
    /// When the run that took it planned it (RFC 3339, UTC, whole seconds).
    pub taken_at: String,
    pub note: String,
    pub files: Vec<FileEntry>,
}

/// Links archived in one go.
#[derive(Debug, Clone, Serialize)]
pub struct ArchivedLinks {
    pub table: String,
    pub first_link: i64,
    pub last_link: i64,
    pub rows: i64,
    pub files: usize,
    /// Files a previous, interrupted run had already written (kept, then verified).
    pub files_found: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub snapshot: i64,
    pub path: String,
    pub rows: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub links: Vec<ArchivedLinks>,
    /// Snapshots of findings finished by this run (an interrupted run's, then this one's
    /// when the rows changed since the last).
    pub snapshots: Vec<Snapshot>,
}

/// Archives every link not archived yet and, when findings changed, a snapshot of them;
/// first finishes what an earlier run left unfinished.
pub fn run(store: &Store, lake: &Lake) -> Result<Report> {
    let mut report = Report::default();
    for (table, time) in TABLES {
        loop {
            let conn = store.connection()?;
            let planned = match pending_links(&conn, table)? {
                Some((planned, planned_for)) => {
                    if planned_for != lake.describe() {
                        bail!(
                            "{table} links {}..{} were being archived to {planned_for} when that run stopped: \
                             archive to that lake again to finish them (this run was given {})",
                            planned.0,
                            planned.1,
                            lake.describe()
                        );
                    }
                    Some(planned)
                }
                None => plan_links(store, lake, table)?,
            };
            let Some(planned) = planned else { break };
            let archived = archive_links(store, lake, table, time, planned)
                .with_context(|| format!("archiving {table} links {}..{}", planned.0, planned.1))?;
            report.links.push(archived);
        }
    }
    report.snapshots = snapshot(store, lake).context("archiving a snapshot of findings")?;
    Ok(report)
}

/// (first link, last link, first id, last id).
type Planned = (i64, i64, i64, i64);

fn pending_links(conn: &duckdb::Connection, table: &str) -> Result<Option<(Planned, String)>> {
    let mut stmt = conn.prepare(
        "SELECT first_link, last_link, first_id, last_id, lake FROM lake_links \
         WHERE table_name = ? AND archived_at IS NULL ORDER BY first_link LIMIT 1",
    )?;
    let mut rows = stmt.query([table])?;
    Ok(match rows.next()? {
        Some(r) => Some(((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?), r.get(4)?)),
        None => None,
    })
}

/// Chooses the next links of `table` and records them before any file is written.
fn plan_links(store: &Store, lake: &Lake, table: &str) -> Result<Option<Planned>> {
    store.transaction(|conn| {
        let mut stmt = conn.prepare(
            "SELECT link, first_id, last_id, rows FROM append_chain WHERE table_name = ? \
             AND link > coalesce((SELECT max(last_link) FROM lake_links WHERE table_name = ?), 0) ORDER BY link",
        )?;
        let mut rows = stmt.query([table, table])?;
        // (link, id) of the first and the last link chosen.
        let (mut first, mut last) = (None::<(i64, i64)>, None::<(i64, i64)>);
        let mut total = 0i64;
        while let Some(r) = rows.next()? {
            let (link, first_id, last_id, count): (i64, i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            if first.is_some() && total + count > LINK_ROWS {
                break;
            }
            first.get_or_insert((link, first_id));
            last = Some((link, last_id));
            total += count;
        }
        let (Some((first_link, first_id)), Some((last_link, last_id))) = (first, last) else { return Ok(None) };
        conn.execute(
            "INSERT INTO lake_links (table_name, first_link, last_link, first_id, last_id, lake, planned_at) \
             VALUES (?, ?, ?, ?, ?, ?, now())",
            duckdb::params![table, first_link, last_link, first_id, last_id, lake.describe()],
        )?;
        Ok(Some((first_link, last_link, first_id, last_id)))
    })
}

pub fn links_path(table: &str, day: chrono::NaiveDate, first: i64, last: i64) -> String {
    format!("table={table}/date={day}/links-{first:012}-{last:012}.parquet")
}

pub fn links_manifest_path(table: &str, first: i64, last: i64) -> String {
    format!("manifests/{table}-links-{first:012}-{last:012}.json")
}

fn archive_links(store: &Store, lake: &Lake, table: &str, time: &str, planned: Planned) -> Result<ArchivedLinks> {
    let (first_link, last_link, first_id, last_id) = planned;
    let conn = store.connection()?;
    let mut stmt = conn.prepare(
        "SELECT link, first_id, last_id, rows, version, rows_digest, chain_digest, epoch_us(committed_at) \
         FROM append_chain WHERE table_name = ? AND link BETWEEN ? AND ? ORDER BY link",
    )?;
    let links: Vec<LinkEntry> = stmt
        .query_map(duckdb::params![table, first_link, last_link], |r| {
            Ok(LinkEntry {
                link: r.get(0)?,
                first_id: r.get(1)?,
                last_id: r.get(2)?,
                rows: r.get(3)?,
                version: r.get(4)?,
                rows_digest: r.get(5)?,
                chain_digest: r.get(6)?,
                committed_at_us: r.get(7)?,
            })
        })?
        .collect::<duckdb::Result<_>>()?;
    let previous: Option<String> = conn
        .prepare("SELECT chain_digest FROM append_chain WHERE table_name = ? AND link = ?")?
        .query_map(duckdb::params![table, first_link - 1], |r| r.get(0))?
        .next()
        .transpose()?;
    let previous_chain_digest = match previous {
        Some(digest) => digest,
        None if first_link == 1 => hex(&[0u8; 32]),
        None => bail!("append_chain has no link {} of {table} (links deleted?)", first_link - 1),
    };
    // The table and its time column come from TABLES, never data.
    let sql = format!(
        "SELECT t.*, CAST(CAST(t.{time} AS TIMESTAMP) AS DATE) AS lake_day FROM {table} t \
         WHERE t.id BETWEEN ? AND ? ORDER BY t.id"
    );
    let mut files = Vec::new();
    let mut files_found = 0;
    for (day, bytes) in parquet_by_day(&conn, &sql, first_id, last_id)? {
        let path = links_path(table, day, first_link, last_link);
        let (bytes, found) = match lake.put_new(&path, bytes.clone())? {
            Put::Written => (bytes, false),
            Put::Existed(existing) => (existing, true),
        };
        files_found += usize::from(found);
        let rows = parquet_rows(&bytes).with_context(|| format!("{path} in the lake {}", lake.describe()))?;
        files.push(FileEntry {
            sha256: super::sha256_hex(&bytes),
            path,
            table: table.into(),
            date: day.to_string(),
            rows,
            bytes: bytes.len() as u64,
        });
    }
    let manifest = LinksManifest {
        format: LINKS_FORMAT.into(),
        schema_version: super::SCHEMA_VERSION,
        table: table.into(),
        first_link,
        last_link,
        files,
        links,
        previous_chain_digest,
    };
    // Read back before the manifest is written: a manifest only ever lists files that
    // matched the chain (a planted file, once removed, costs no stuck manifest).
    verify_links(lake, &manifest)?;
    let manifest_path = links_manifest_path(table, first_link, last_link);
    let text = put_manifest(lake, &manifest_path, &manifest)?;
    let archived = ArchivedLinks {
        table: table.into(),
        first_link,
        last_link,
        rows: manifest.files.iter().map(|f| f.rows).sum(),
        files: manifest.files.len(),
        files_found,
    };
    store.transaction(|conn| {
        conn.execute(
            "UPDATE lake_links SET manifest = ?, manifest_sha256 = ?, files = ?, rows = ?, bytes = ?, \
             archived_at = now() WHERE table_name = ? AND first_link = ?",
            duckdb::params![
                manifest_path,
                super::sha256_hex(&text),
                archived.files as i64,
                archived.rows,
                manifest.files.iter().map(|f| f.bytes).sum::<u64>() as i64,
                table,
                first_link
            ],
        )?;
        let mut insert = conn.prepare(
            "INSERT INTO lake_link_files (table_name, first_link, path, day, rows, bytes, sha256) \
             VALUES (?, ?, ?, CAST(? AS DATE), ?, ?, ?)",
        )?;
        for f in &manifest.files {
            insert.execute(duckdb::params![table, first_link, f.path, f.date, f.rows, f.bytes as i64, f.sha256])?;
        }
        Ok(())
    })?;
    tracing::info!(table, first_link, last_link, rows = archived.rows, lake = lake.describe(), "archived links");
    Ok(archived)
}

/// Writes a manifest create-if-absent; one already there must say the same (a previous
/// attempt's). Returns the bytes in the lake.
fn put_manifest<M: Serialize + serde::de::DeserializeOwned + PartialEq>(
    lake: &Lake,
    path: &str,
    manifest: &M,
) -> Result<Bytes> {
    let text = Bytes::from(serde_json::to_vec_pretty(manifest)?);
    match lake.put_new(path, text.clone())? {
        Put::Written => Ok(text),
        Put::Existed(existing) => {
            let theirs: M = serde_json::from_slice(&existing)
                .with_context(|| format!("{path} in the lake {} is not a manifest", lake.describe()))?;
            if theirs != *manifest {
                bail!(
                    "{path} in the lake {} describes other files or rows than this database holds: \
                     was another database archived to the same place?",
                    lake.describe()
                );
            }
            Ok(existing)
        }
    }
}

/// Checks archived links from their manifest and files alone: each file against its
/// SHA-256, every row inside one of the links, each link's row count and `rows_digest`
/// recomputed ([`append::rows_digest`] over the rows' table digest, as `store::append`
/// chains them), and each link's chain digest following the one before.
pub fn verify_links(lake: &Lake, manifest: &LinksManifest) -> Result<()> {
    let Some(table) = append::TABLES.into_iter().find(|t| *t == manifest.table) else {
        bail!("{} is not an append-chained table", manifest.table);
    };
    let links = &manifest.links;
    let mut found: Vec<(TableDigest, i64, Vec<&str>)> =
        links.iter().map(|_| (TableDigest::new(table), 0, Vec::new())).collect();
    for file in &manifest.files {
        let path = file.path.as_str();
        let in_file = (|| -> Result<()> {
            let bytes = fetch_checked(lake, path, &file.sha256)?;
            for batch in batches(bytes)? {
                let batch = batch?;
                let ids = batch
                    .column_by_name("id")
                    .context("no id column")?
                    .as_primitive_opt::<Int64Type>()
                    .context("its id is not BIGINT")?
                    .clone();
                let mut start = 0;
                while start < ids.len() {
                    let link_of = |i: usize| -> Result<usize> {
                        let id = if ids.is_null(i) { bail!("a row has no id") } else { ids.value(i) };
                        let at = links.partition_point(|l| l.first_id <= id);
                        match at.checked_sub(1) {
                            Some(at) if id <= links[at].last_id => Ok(at),
                            _ => bail!(
                                "a row with id {id} belongs to none of links {}..{}",
                                manifest.first_link,
                                manifest.last_link
                            ),
                        }
                    };
                    let link = link_of(start)?;
                    let mut end = start + 1;
                    while end < ids.len() && link_of(end)? == link {
                        end += 1;
                    }
                    let (digest, rows, paths) = &mut found[link];
                    digest.add(&batch.slice(start, end - start))?;
                    *rows += (end - start) as i64;
                    if paths.last() != Some(&path) {
                        paths.push(path);
                    }
                    start = end;
                }
            }
            Ok(())
        })();
        in_file.with_context(|| format!("{path} in the lake {}", lake.describe()))?;
    }
    let mut previous =
        decode_hex(&manifest.previous_chain_digest).context("the manifest's previous chain digest is not hex")?;
    let all_files = || manifest.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>().join(", ");
    for (link, (digest, rows, paths)) in links.iter().zip(found) {
        let named = if paths.is_empty() { all_files() } else { paths.join(", ") };
        if link.version != append::VERSION {
            bail!("{table} link {}: encoding version {} is unknown to this TokenTrail", link.link, link.version);
        }
        if rows != link.rows {
            bail!(
                "{table} link {} (ids {}..{}): the lake holds {rows} rows, the link chained {} ({named})",
                link.link,
                link.first_id,
                link.last_id,
                link.rows
            );
        }
        let recomputed = append::rows_digest(table, link.version, link.first_id, link.last_id, rows, &digest.finish());
        if hex(&recomputed) != link.rows_digest {
            bail!(
                "{table} link {} (ids {}..{}): the archived rows do not match the link's rows_digest ({named})",
                link.link,
                link.first_id,
                link.last_id
            );
        }
        if hex(&chain_digest(&previous, link.link, &recomputed)) != link.chain_digest {
            bail!("{table} link {}: its chain digest does not follow the link before", link.link);
        }
        previous = decode_hex(&link.chain_digest).context("a chain digest is not hex")?;
    }
    Ok(())
}

/// The rows `sql` returns for ids `first..=last` (with a `lake_day` DATE column, left out
/// of the files), one Parquet file in memory per day.
fn parquet_by_day(
    conn: &duckdb::Connection,
    sql: &str,
    first: i64,
    last: i64,
) -> Result<Vec<(chrono::NaiveDate, Bytes)>> {
    let mut stmt = conn.prepare(sql)?;
    let mut writers: BTreeMap<i32, ArrowWriter<Vec<u8>>> = BTreeMap::new();
    for batch in stmt.stream_arrow(duckdb::params![first, last])? {
        let batch = batch?;
        let at = batch.schema().index_of("lake_day")?;
        let days = batch.column(at).as_primitive_opt::<Date32Type>().context("lake_day is a DATE")?.clone();
        let keep: Vec<usize> = (0..batch.num_columns()).filter(|i| *i != at).collect();
        let rows = batch.project(&keep)?;
        let mut distinct = days.values().to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        for day in distinct {
            let mask = arrow::compute::kernels::cmp::eq(&days, &Date32Array::new_scalar(day))?;
            let part = arrow::compute::filter_record_batch(&rows, &mask)?;
            let writer = match writers.entry(day) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(ArrowWriter::try_new(Vec::new(), part.schema(), Some(properties()))?)
                }
            };
            writer.write(&part)?;
        }
    }
    writers
        .into_iter()
        .map(|(day, writer)| {
            let date = chrono::NaiveDate::from_num_days_from_ce_opt(day + 719_163).context("a day out of range")?;
            Ok((date, Bytes::from(writer.into_inner()?)))
        })
        .collect()
}

fn properties() -> parquet::file::properties::WriterProperties {
    super::writer_properties().build()
}

const SNAPSHOT_NOTE: &str = "findings are mutable (their status changes): this file is every row of findings \
     as of the run that took it; the chained record of their changes is finding_history";

pub fn snapshot_manifest_path(snapshot: i64) -> String {
    format!("manifests/findings-snapshot-{snapshot:06}.json")
}

/// Every row of findings, by id, as one Parquet file. The same rows give the same bytes,
/// which is how an unchanged table is told (were the encoder to differ, the cost is one
/// more snapshot).
fn findings_parquet(conn: &duckdb::Connection) -> Result<(Bytes, i64)> {
    let mut stmt = conn.prepare("SELECT * FROM findings ORDER BY id")?;
    let arrow = stmt.query_arrow([])?;
    let mut writer = ArrowWriter::try_new(Vec::new(), arrow.get_schema(), Some(properties()))?;
    let mut rows = 0;
    for batch in arrow {
        rows += batch.num_rows() as i64;
        writer.write(&batch)?;
    }
    Ok((Bytes::from(writer.into_inner()?), rows))
}

/// Finishes a snapshot an interrupted run planned, then takes this run's when findings
/// differ from the last snapshot.
fn snapshot(store: &Store, lake: &Lake) -> Result<Vec<Snapshot>> {
    let mut done = Vec::new();
    let conn = store.connection()?;
    let pending: Option<(i64, String, String, i64)> = conn
        .prepare(
            "SELECT snapshot, path, lake, epoch_us(planned_at) // 1000000 FROM lake_snapshots \
             WHERE archived_at IS NULL ORDER BY snapshot LIMIT 1",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .next()
        .transpose()?;
    if let Some((n, path, planned_for, taken)) = pending {
        if planned_for != lake.describe() {
            bail!(
                "findings snapshot {n} was being archived to {planned_for} when that run stopped: archive to \
                 that lake again to finish it (this run was given {})",
                lake.describe()
            );
        }
        done.push(finish_snapshot(store, lake, n, &path, taken)?);
    }
    let (bytes, _) = findings_parquet(&conn)?;
    let last: Option<String> = conn
        .prepare("SELECT sha256 FROM lake_snapshots WHERE archived_at IS NOT NULL ORDER BY snapshot DESC LIMIT 1")?
        .query_map([], |r| r.get(0))?
        .next()
        .transpose()?;
    if last.as_deref() == Some(super::sha256_hex(&bytes).as_str()) {
        return Ok(done);
    }
    let taken = chrono::Utc::now().timestamp();
    let (n, path) = store.transaction(|conn| {
        let n: i64 = conn.query_row("SELECT coalesce(max(snapshot), 0) + 1 FROM lake_snapshots", [], |r| r.get(0))?;
        let at = chrono::DateTime::from_timestamp(taken, 0).context("a time out of range")?;
        let path =
            format!("table=findings/date={}/snapshot-{n:06}-{}.parquet", at.date_naive(), at.format("%Y%m%dT%H%M%SZ"));
        conn.execute(
            "INSERT INTO lake_snapshots (snapshot, table_name, path, lake, planned_at) \
             VALUES (?, 'findings', ?, ?, CAST(? AS TIMESTAMPTZ))",
            duckdb::params![n, path, lake.describe(), at.format("%Y-%m-%d %H:%M:%S+00").to_string()],
        )?;
        Ok((n, path))
    })?;
    done.push(finish_snapshot(store, lake, n, &path, taken)?);
    Ok(done)
}

/// Writes snapshot `n` (the rows as they are now) unless an interrupted run already did,
/// writes its manifest, reads it back and records it. Its `taken_at` stays the planned
/// time: an interrupted run's file holds that run's rows (had it written none, the file
/// holds the rows of the run that finishes it, that much later).
fn finish_snapshot(store: &Store, lake: &Lake, n: i64, path: &str, taken: i64) -> Result<Snapshot> {
    let conn = store.connection()?;
    let (bytes, _) = findings_parquet(&conn)?;
    let columns: Vec<String> = arrow::datatypes::Schema::clone(
        &*conn.prepare("SELECT * FROM findings LIMIT 0")?.query_arrow([])?.get_schema(),
    )
    .fields()
    .iter()
    .map(|f| f.name().clone())
    .collect();
    let bytes = match lake.put_new(path, bytes.clone())? {
        Put::Written => bytes,
        Put::Existed(existing) => existing,
    };
    let sha256 = super::sha256_hex(&bytes);
    // Read back: the bytes in the lake are these, and they are a findings table.
    let mut rows = 0;
    let read = (|| -> Result<()> {
        for batch in batches(fetch_checked(lake, path, &sha256)?)? {
            let batch = batch?;
            let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
            if names != columns {
                bail!("its columns are not findings' ({})", names.join(", "));
            }
            rows += batch.num_rows() as i64;
        }
        if rows != parquet_rows(&bytes)? {
            bail!("its rows and its footer disagree");
        }
        Ok(())
    })();
    read.with_context(|| format!("{path} in the lake {}", lake.describe()))?;
    let at = chrono::DateTime::from_timestamp(taken, 0).context("a time out of range")?;
    let manifest = SnapshotManifest {
        format: SNAPSHOT_FORMAT.into(),
        schema_version: super::SCHEMA_VERSION,
        table: "findings".into(),
        snapshot: n,
        taken_at: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        note: SNAPSHOT_NOTE.into(),
        files: vec![FileEntry {
            path: path.into(),
            table: "findings".into(),
            date: at.date_naive().to_string(),
            rows,
            bytes: bytes.len() as u64,
            sha256: sha256.clone(),
        }],
    };
    let manifest_path = snapshot_manifest_path(n);
    let text = put_manifest(lake, &manifest_path, &manifest)?;
    store.transaction(|conn| {
        conn.execute(
            "UPDATE lake_snapshots SET manifest = ?, manifest_sha256 = ?, rows = ?, bytes = ?, sha256 = ?, \
             archived_at = now() WHERE snapshot = ?",
            duckdb::params![manifest_path, super::sha256_hex(&text), rows, bytes.len() as i64, sha256, n],
        )?;
        Ok(())
    })?;
    Ok(Snapshot { snapshot: n, path: path.into(), rows })
}

/// What [`check`] found.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub links: i64,
    pub rows: i64,
    pub snapshots: i64,
    pub failures: Vec<String>,
}

/// Every archived link and snapshot read back again from its manifest (checked against
/// the SHA-256 the database recorded) and its files: `tokentrail verify --lake`.
pub fn check(store: &Store, lake: &Lake) -> Result<Checked> {
    let conn = store.connection()?;
    let mut out = Checked::default();
    let mut stmt = conn.prepare(
        "SELECT table_name, first_link, last_link, manifest, manifest_sha256, rows FROM lake_links \
         WHERE archived_at IS NOT NULL ORDER BY table_name, first_link",
    )?;
    let archived: Vec<(String, i64, i64, String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
        .collect::<duckdb::Result<_>>()?;
    for (table, first, last, path, sha256, rows) in archived {
        let checked = (|| -> Result<()> {
            let text = fetch_checked(lake, &path, &sha256)?;
            let manifest: LinksManifest = serde_json::from_slice(&text).context("not a links manifest")?;
            verify_links(lake, &manifest)
        })();
        match checked {
            Ok(()) => {
                out.links += last - first + 1;
                out.rows += rows;
            }
            Err(error) => out.failures.push(format!("archived {table} links {first}..{last}: {error:#}")),
        }
    }
    let mut stmt = conn.prepare(
        "SELECT snapshot, path, sha256, manifest, manifest_sha256 FROM lake_snapshots \
         WHERE archived_at IS NOT NULL ORDER BY snapshot",
    )?;
    let snapshots: Vec<(i64, String, String, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<duckdb::Result<_>>()?;
    for (n, path, sha256, manifest, manifest_sha256) in snapshots {
        match fetch_checked(lake, &manifest, &manifest_sha256).and_then(|_| fetch_checked(lake, &path, &sha256)) {
            Ok(_) => out.snapshots += 1,
            Err(error) => out.failures.push(format!("findings snapshot {n}: {error:#}")),
        }
    }
    Ok(out)
}
