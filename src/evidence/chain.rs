//! The integrity chain: every committed ingest batch gets a digest over the rows it
//! added, chained to the previous batch's digest (`ingest_chain`, migration 7).
//!
//! Contract: each writer lane (`store::lane`) computes a batch's digests with
//! [`TableDigest`] on the Arrow batches it stores, in the batch's transaction, and
//! [`verify`] recomputes the same digests from the rows DuckDB holds, so the
//! encoding depends on values only, never on how Arrow or DuckDB represent them:
//! - a row is its non-NULL columns sorted by name (`batch_id` left out), each as its
//!   name and a tagged value: text and blobs with their length, every integer width as
//!   i64, doubles as IEEE bits with `-0.0` → `0.0` and one NaN, timestamps of any unit
//!   as UTC microseconds, lists as their length and elements. A NULL column is absent,
//!   so a column added later with a NULL default leaves older digests unchanged.
//!   Encoding version 2 (the one written now) names a column by the first 4 bytes of the
//!   SHA-256 of its name (unique within each table: `tests` checks) and writes lengths
//!   as u32; version 1 wrote the name itself (u32 length and bytes) and u64 lengths. A
//!   Cosmos DB request is ~740 bytes in version 2 against ~1,200 in version 1, which
//!   spent 496 of them on names. Each batch's digests are stored with their version,
//!   and [`verify`] reads both.
//! - a table's digest is SHA-256 over its name, its row count and the sorted SHA-256 of
//!   each row: row order (which DuckDB does not keep for parallel inserts) does not matter,
//!   while editing, deleting, adding or duplicating a row does.
//! - `rows_digest` = SHA-256(version, the `ingest_batches` row, the four table digests);
//!   `chain_digest` = SHA-256(previous chain digest, batch id, rows digest). The first
//!   chained batch follows 32 zero bytes.
//!
//! Cost at ingest: one SHA-256 per row over its encoding (SHA-NI where the CPU has it);
//! see BENCHMARKS.md.

use crate::store::Store;
use crate::store::rows::{CosmosRows, QuarantineRows, RawRows, SignInRows};
use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{self as types, DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

/// Version of the canonical encoding new digests use, stored with each digest.
pub const VERSION: i32 = 2;

/// A version of the canonical encoding (see the module notes): 1 or 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Encoding(i32);

impl Encoding {
    const CURRENT: Encoding = Encoding(VERSION);

    fn of(version: i32) -> Result<Encoding> {
        match version {
            1 | 2 => Ok(Encoding(version)),
            other => {
                bail!("ingest_chain has digests of encoding version {other}; this TokenTrail reads versions 1 and 2")
            }
        }
    }

    /// How each row's encoding names the column `name`.
    fn column(self, name: &str) -> Vec<u8> {
        if self.0 == 1 {
            let mut prefix = (name.len() as u32).to_le_bytes().to_vec();
            prefix.extend_from_slice(name.as_bytes());
            prefix
        } else {
            Sha256::digest(name.as_bytes())[..4].to_vec()
        }
    }

    fn length(self, out: &mut Vec<u8>, length: usize) {
        if self.0 == 1 {
            out.extend_from_slice(&(length as u64).to_le_bytes());
        } else {
            out.extend_from_slice(&(length as u32).to_le_bytes());
        }
    }
}

pub type Digest = [u8; 32];

/// The public tables a digest covers, in `ingest_chain` column order.
pub const TABLES: [&str; 4] = ["cosmos_requests", "signins", "raw_events", "quarantine"];

/// The columns the digest covers: those the ingest writer stores (`store::rows`).
fn table_schema(table: &str) -> SchemaRef {
    match table {
        "cosmos_requests" => CosmosRows::schema(),
        "signins" => SignInRows::schema(),
        "raw_events" => RawRows::schema(),
        _ => QuarantineRows::schema(),
    }
}

pub fn hex(digest: &Digest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `ingest_batches` row of a batch, as the digest covers it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchHeader {
    pub batch_id: i64,
    /// Microseconds since the epoch, UTC.
    pub committed_at: i64,
    pub source_id: String,
    pub position: String,
    /// cosmos, signin, raw, quarantined rows.
    pub counts: [i64; 4],
}

/// The rows digest of a batch whose table digests are `tables`, in encoding `version`.
pub fn rows_digest(header: &BatchHeader, tables: &[Digest; 4], version: i32) -> Digest {
    let mut h = Sha256::new();
    h.update(b"tokentrail.chain.rows");
    h.update(version.to_le_bytes());
    h.update(header.batch_id.to_le_bytes());
    h.update(header.committed_at.to_le_bytes());
    for text in [&header.source_id, &header.position] {
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    for count in header.counts {
        h.update(count.to_le_bytes());
    }
    for table in tables {
        h.update(table);
    }
    h.finalize().into()
}

pub fn chain_digest(previous: &Digest, batch_id: i64, rows: &Digest) -> Digest {
    let mut h = Sha256::new();
    h.update(b"tokentrail.chain.link");
    h.update(previous);
    h.update(batch_id.to_le_bytes());
    h.update(rows);
    h.finalize().into()
}

/// The digest of one table's rows of one batch, fed batch by batch.
pub struct TableDigest {
    table: &'static str,
    encoding: Encoding,
    rows: Vec<Digest>,
    buffer: Vec<u8>,
}

impl TableDigest {
    /// In the current encoding ([`VERSION`]).
    pub fn new(table: &'static str) -> TableDigest {
        TableDigest::in_encoding(table, Encoding::CURRENT)
    }

    /// In the current encoding, keeping its row digests in `rows` (emptied first): the
    /// room of a [`TableDigest::finish_keeping`] before. A writer lane hashes ~145,000
    /// rows a commit: growing a new vector for them took fresh (huge) pages from the
    /// kernel, zeroed, and copies, every commit (~2% of ingest's samples).
    pub fn reusing(table: &'static str, mut rows: Vec<Digest>) -> TableDigest {
        rows.clear();
        TableDigest { rows, ..TableDigest::new(table) }
    }

    fn in_encoding(table: &'static str, encoding: Encoding) -> TableDigest {
        TableDigest { table, encoding, rows: Vec::new(), buffer: Vec::with_capacity(1024) }
    }

    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let schema = batch.schema();
        let mut columns: Vec<Column> = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(f, _)| f.name() != "batch_id")
            .map(|(f, c)| Column::new(f.name(), c.as_ref(), self.encoding))
            .collect();
        columns.sort_by(|a, b| a.name.cmp(b.name));
        self.rows.reserve(batch.num_rows());
        for row in 0..batch.num_rows() {
            self.buffer.clear();
            for column in &columns {
                if column.nulls.is_some_and(|nulls| nulls.is_null(row)) {
                    continue;
                }
                self.buffer.extend_from_slice(&column.prefix);
                column
                    .encode(row, &mut self.buffer)
                    .with_context(|| format!("{}.{}: cannot encode for the chain digest", self.table, column.name))?;
            }
            self.rows.push(Sha256::digest(&self.buffer).into());
        }
        Ok(())
    }

    pub fn finish(self) -> Digest {
        self.finish_keeping().0
    }

    /// The digest, and the vector its rows' digests were in, for [`TableDigest::reusing`].
    pub fn finish_keeping(mut self) -> (Digest, Vec<Digest>) {
        // Byte order, as two big-endian u128 (inline compares, where comparing the
        // arrays called memcmp: ~1% of ingest's CPU).
        self.rows.sort_unstable_by_key(|row| {
            let (high, low) = row.split_at(16);
            (
                u128::from_be_bytes(high.try_into().expect("16 bytes")),
                u128::from_be_bytes(low.try_into().expect("16 bytes")),
            )
        });
        let mut h = Sha256::new();
        h.update(b"tokentrail.chain.table");
        h.update((self.table.len() as u64).to_le_bytes());
        h.update(self.table.as_bytes());
        h.update((self.rows.len() as u64).to_le_bytes());
        for row in &self.rows {
            h.update(row);
        }
        (h.finalize().into(), self.rows)
    }
}

/// A column of a batch, resolved once per batch: its name's encoding, and for the
/// common types the typed array, so a row costs no type dispatch. The result is the
/// same as [`encode_value`]'s (`tests` checks both over every type).
struct Column<'a> {
    name: &'a str,
    /// The column's name as each row's encoding has it ([`Encoding::column`]).
    prefix: Vec<u8>,
    array: &'a dyn Array,
    /// Its validity, as `Array::is_null` reads it, but inline (not a call through the
    /// trait object for every value).
    nulls: Option<&'a arrow::buffer::NullBuffer>,
    typed: Typed<'a>,
    encoding: Encoding,
}

enum Typed<'a> {
    Utf8(&'a arrow::array::StringArray),
    Int64(&'a arrow::array::Int64Array),
    Int32(&'a arrow::array::Int32Array),
    Float64(&'a arrow::array::Float64Array),
    TimestampMicros(&'a arrow::array::TimestampMicrosecondArray),
    Other,
}

impl<'a> Column<'a> {
    fn new(name: &'a str, array: &'a dyn Array, encoding: Encoding) -> Column<'a> {
        let prefix = encoding.column(name);
        let typed = match array.data_type() {
            DataType::Utf8 => Typed::Utf8(array.as_string::<i32>()),
            DataType::Int64 => Typed::Int64(array.as_primitive()),
            DataType::Int32 => Typed::Int32(array.as_primitive()),
            DataType::Float64 => Typed::Float64(array.as_primitive()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Typed::TimestampMicros(array.as_primitive()),
            _ => Typed::Other,
        };
        Column { name, prefix, array, nulls: array.nulls(), typed, encoding }
    }

    fn encode(&self, i: usize, out: &mut Vec<u8>) -> Result<()> {
        match self.typed {
            Typed::Utf8(a) => bytes(out, b's', a.value(i).as_bytes(), self.encoding),
            Typed::Int64(a) => int(out, a.value(i)),
            Typed::Int32(a) => int(out, a.value(i).into()),
            Typed::Float64(a) => float(out, a.value(i)),
            Typed::TimestampMicros(a) => {
                out.push(b't');
                out.extend_from_slice(&a.value(i).to_le_bytes());
            }
            Typed::Other => encode_value(self.array, i, out, self.encoding)?,
        }
        Ok(())
    }
}

fn bytes(out: &mut Vec<u8>, tag: u8, value: &[u8], encoding: Encoding) {
    out.push(tag);
    encoding.length(out, value.len());
    out.extend_from_slice(value);
}

fn int(out: &mut Vec<u8>, value: i64) {
    out.push(b'i');
    out.extend_from_slice(&value.to_le_bytes());
}

fn encode_value(array: &dyn Array, i: usize, out: &mut Vec<u8>, encoding: Encoding) -> Result<()> {
    match array.data_type() {
        DataType::Utf8 => bytes(out, b's', array.as_string::<i32>().value(i).as_bytes(), encoding),
        DataType::LargeUtf8 => bytes(out, b's', array.as_string::<i64>().value(i).as_bytes(), encoding),
        DataType::Utf8View => bytes(out, b's', array.as_string_view().value(i).as_bytes(), encoding),
        DataType::Binary => bytes(out, b'x', array.as_binary::<i32>().value(i), encoding),
        DataType::LargeBinary => bytes(out, b'x', array.as_binary::<i64>().value(i), encoding),
        DataType::BinaryView => bytes(out, b'x', array.as_binary_view().value(i), encoding),
        DataType::Boolean => {
            out.push(b'b');
            out.push(array.as_boolean().value(i) as u8);
        }
        DataType::Int8 => int(out, array.as_primitive::<types::Int8Type>().value(i).into()),
        DataType::Int16 => int(out, array.as_primitive::<types::Int16Type>().value(i).into()),
        DataType::Int32 => int(out, array.as_primitive::<types::Int32Type>().value(i).into()),
        DataType::Int64 => int(out, array.as_primitive::<types::Int64Type>().value(i)),
        DataType::UInt8 => int(out, array.as_primitive::<types::UInt8Type>().value(i).into()),
        DataType::UInt16 => int(out, array.as_primitive::<types::UInt16Type>().value(i).into()),
        DataType::UInt32 => int(out, array.as_primitive::<types::UInt32Type>().value(i).into()),
        DataType::Float32 => float(out, array.as_primitive::<types::Float32Type>().value(i).into()),
        DataType::Float64 => float(out, array.as_primitive::<types::Float64Type>().value(i)),
        DataType::Timestamp(unit, _) => {
            let micros = match unit {
                TimeUnit::Second => array.as_primitive::<types::TimestampSecondType>().value(i) * 1_000_000,
                TimeUnit::Millisecond => array.as_primitive::<types::TimestampMillisecondType>().value(i) * 1_000,
                TimeUnit::Microsecond => array.as_primitive::<types::TimestampMicrosecondType>().value(i),
                TimeUnit::Nanosecond => array.as_primitive::<types::TimestampNanosecondType>().value(i) / 1_000,
            };
            out.push(b't');
            out.extend_from_slice(&micros.to_le_bytes());
        }
        DataType::List(_) => list(out, array.as_list::<i32>().value(i).as_ref(), encoding)?,
        DataType::LargeList(_) => list(out, array.as_list::<i64>().value(i).as_ref(), encoding)?,
        other => bail!("type {other} is not part of the canonical encoding"),
    }
    Ok(())
}

fn float(out: &mut Vec<u8>, value: f64) {
    let value = if value.is_nan() {
        f64::NAN
    } else if value == 0.0 {
        0.0
    } else {
        value
    };
    out.push(b'f');
    out.extend_from_slice(&value.to_bits().to_le_bytes());
}

fn list(out: &mut Vec<u8>, items: &dyn Array, encoding: Encoding) -> Result<()> {
    out.push(b'l');
    encoding.length(out, items.len());
    for j in 0..items.len() {
        if items.is_null(j) {
            out.push(b'n');
        } else {
            encode_value(items, j, out, encoding)?;
        }
    }
    Ok(())
}

/// What `tokentrail verify` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChainReport {
    /// Batches in `ingest_batches`.
    pub batches: u64,
    /// Batches whose digests were recomputed.
    pub checked: u64,
    /// The last chained batch and its stored chain digest.
    pub head_batch: Option<i64>,
    pub head_digest: Option<String>,
    /// Batches from before the chain (committed before migration 7): not covered.
    pub unchained: Vec<i64>,
    /// Every batch that no longer matches, first first (at most [`MAX_FAILURES`]).
    pub failures: Vec<BatchFailure>,
}

pub const MAX_FAILURES: usize = 20;

/// A batch that no longer matches its digest, and what differs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BatchFailure {
    pub batch_id: i64,
    pub reason: String,
}

impl ChainReport {
    pub fn verified(&self) -> bool {
        self.failures.is_empty()
    }

    /// One paragraph: the result, and the first batch that no longer matches.
    pub fn summary(&self) -> String {
        let head = match (&self.head_batch, &self.head_digest) {
            (Some(batch), Some(digest)) => format!("head batch {batch}, digest {digest}"),
            _ => "no chained batch yet".into(),
        };
        let legacy = match (self.unchained.first(), self.unchained.last()) {
            (Some(a), Some(b)) => format!(
                "; {} batch(es) {a}..{b} predate the chain (migration 7) and are not covered",
                self.unchained.len()
            ),
            _ => String::new(),
        };
        match self.failures.first() {
            None => format!(
                "chain verified: {} of {} batches recomputed and match; {head}{legacy}",
                self.checked, self.batches
            ),
            Some(first) => format!(
                "chain BROKEN: batch {} no longer matches: {}{}; {head}{legacy}",
                first.batch_id,
                first.reason,
                if self.failures.len() > 1 {
                    format!(
                        " ({} batches fail in all{})",
                        self.failures.len(),
                        if self.failures.len() >= MAX_FAILURES { " or more" } else { "" }
                    )
                } else {
                    String::new()
                }
            ),
        }
    }
}

struct StoredDigests {
    encoding: Encoding,
    tables: [String; 4],
    rows: String,
    chain: String,
}

fn load_headers(conn: &duckdb::Connection) -> Result<Vec<BatchHeader>> {
    let mut stmt = conn.prepare(
        "SELECT batch_id, epoch_us(committed_at), source_id, position, cosmos_rows, signin_rows, raw_rows, quarantined_rows
         FROM ingest_batches ORDER BY batch_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(BatchHeader {
            batch_id: r.get(0)?,
            committed_at: r.get(1)?,
            source_id: r.get(2)?,
            position: r.get(3)?,
            counts: [r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?],
        })
    })?;
    Ok(rows.collect::<duckdb::Result<_>>()?)
}

fn load_stored(conn: &duckdb::Connection) -> Result<BTreeMap<i64, StoredDigests>> {
    let mut stmt = conn.prepare(
        "SELECT batch_id, version, cosmos_digest, signin_digest, raw_digest, quarantine_digest, rows_digest, chain_digest
         FROM ingest_chain ORDER BY batch_id",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let encoding = Encoding::of(r.get(1)?)?;
        out.insert(
            r.get::<_, i64>(0)?,
            StoredDigests {
                encoding,
                tables: [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
                rows: r.get(6)?,
                chain: r.get(7)?,
            },
        );
    }
    Ok(out)
}

/// The four table digests of `batch_id` as the rows are now, in `encoding`.
fn recompute_tables(conn: &duckdb::Connection, batch_id: i64, encoding: Encoding) -> Result<[Digest; 4]> {
    let mut out = [[0u8; 32]; 4];
    for (i, table) in TABLES.into_iter().enumerate() {
        let schema = table_schema(table);
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        // Column and table names come from our own schema, never from data.
        let sql = format!("SELECT {} FROM {table} WHERE batch_id = ?", columns.join(", "));
        let mut stmt = conn.prepare(&sql).with_context(|| format!("reading {table}"))?;
        let mut digest = TableDigest::in_encoding(TABLES[i], encoding);
        for batch in stmt.stream_arrow([batch_id])? {
            digest.add(&batch?)?;
        }
        out[i] = digest.finish();
    }
    Ok(out)
}

/// Rows whose `batch_id` is no committed batch, per table: (table, batch_id, rows).
fn orphan_rows(conn: &duckdb::Connection) -> Result<Vec<(&'static str, i64, i64)>> {
    let mut out = Vec::new();
    for table in TABLES {
        let sql = format!(
            "SELECT batch_id, count(*) FROM {table} WHERE batch_id NOT IN (SELECT batch_id FROM ingest_batches)
             GROUP BY batch_id ORDER BY batch_id"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], |r| Ok((table, r.get(0)?, r.get(1)?)))?;
        out.extend(rows.collect::<duckdb::Result<Vec<_>>>()?);
    }
    Ok(out)
}

/// Recomputes every chained batch's digests from the stored rows, in batch order, and
/// checks each link. `progress(done, total)` is called as batches are checked.
pub fn verify(store: &Store, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<ChainReport> {
    verify_unless(store, progress, &|| false)
}

/// [`verify`], giving up (with an error) once `stop()` says so.
pub fn verify_unless(
    store: &Store,
    progress: &(dyn Fn(u64, u64) + Sync),
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<ChainReport> {
    let conn = store.connection()?;
    let headers = load_headers(&conn)?;
    let stored = load_stored(&conn)?;
    let first_chained = stored.keys().next().copied();
    let unchained: Vec<i64> =
        headers.iter().map(|h| h.batch_id).filter(|id| first_chained.is_none_or(|first| *id < first)).collect();
    let to_check: Vec<&BatchHeader> = headers.iter().filter(|h| !unchained.contains(&h.batch_id)).collect();
    let total = to_check.len() as u64;

    // The table digests of each batch are independent: spread them over the cores.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
    let done = std::sync::atomic::AtomicU64::new(0);
    let recomputed: Vec<Result<(i64, [Digest; 4])>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let mine: Vec<(i64, Encoding)> = to_check
                    .iter()
                    .skip(w)
                    .step_by(workers)
                    .map(|h| (h.batch_id, stored.get(&h.batch_id).map_or(Encoding::CURRENT, |s| s.encoding)))
                    .collect();
                let done = &done;
                scope.spawn(move || -> Vec<Result<(i64, [Digest; 4])>> {
                    let conn = match store.connection() {
                        Ok(conn) => conn,
                        Err(error) => return vec![Err(error)],
                    };
                    mine.into_iter()
                        .map(|(id, encoding)| {
                            if stop() {
                                bail!("verifying the chain was stopped");
                            }
                            let tables =
                                recompute_tables(&conn, id, encoding).with_context(|| format!("batch {id}"))?;
                            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                            progress(n, total);
                            Ok((id, tables))
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("chain worker panicked")).collect()
    });
    let mut tables = BTreeMap::new();
    for item in recomputed {
        let (id, digests) = item?;
        tables.insert(id, digests);
    }

    let mut failures = Vec::new();
    let mut fail = |batch_id: i64, reason: String| {
        if failures.len() < MAX_FAILURES {
            failures.push(BatchFailure { batch_id, reason });
        }
    };
    let mut previous = [0u8; 32];
    let mut head = None;
    for header in &to_check {
        let id = header.batch_id;
        let Some(saved) = stored.get(&id) else {
            fail(id, "it has no digest in ingest_chain (it was not committed by TokenTrail's ingest writer, or its digest was deleted)".into());
            continue;
        };
        let digests = &tables[&id];
        let rows = rows_digest(header, digests, saved.encoding.0);
        let chain = chain_digest(&previous, id, &rows);
        if hex(&chain) != saved.chain {
            let changed: Vec<String> = TABLES
                .iter()
                .zip(digests)
                .zip(&saved.tables)
                .filter(|((_, now), then)| hex(now) != **then)
                .map(|((table, _), _)| table.to_string())
                .collect();
            let reason = if !changed.is_empty() {
                let counts = row_counts(&conn, id).unwrap_or_default();
                let detail: Vec<String> = changed
                    .iter()
                    .map(|t| {
                        let i = TABLES.iter().position(|x| x == t).expect("known table");
                        let now = counts.get(i).copied().unwrap_or(-1);
                        format!("{t} rows differ from what was committed ({} committed, {now} now)", header.counts[i])
                    })
                    .collect();
                detail.join("; ")
            } else if hex(&rows) != saved.rows {
                "its ingest_batches row (time, source, position or counts) was changed".into()
            } else {
                "its chain digest does not follow from the previous batch's (ingest_chain was edited)".into()
            };
            fail(id, reason);
        }
        // Later links are checked against what is stored, so one edit names one batch.
        previous = decode_hex(&saved.chain).unwrap_or(chain);
        head = Some((id, saved.chain.clone()));
    }
    let header_ids: std::collections::BTreeSet<i64> = headers.iter().map(|h| h.batch_id).collect();
    for id in stored.keys().filter(|id| !header_ids.contains(id)) {
        fail(*id, "its ingest_batches row was deleted".into());
    }
    for (table, batch_id, rows) in orphan_rows(&conn)? {
        fail(
            batch_id,
            format!(
                "{rows} row(s) in {table} carry batch_id {batch_id}, which no committed batch has (rows were inserted)"
            ),
        );
    }
    failures.sort_by_key(|f| f.batch_id);
    Ok(ChainReport {
        batches: headers.len() as u64,
        checked: total,
        head_batch: head.as_ref().map(|(id, _)| *id),
        head_digest: head.map(|(_, d)| d),
        unchained,
        failures,
    })
}

fn row_counts(conn: &duckdb::Connection, batch_id: i64) -> Result<Vec<i64>> {
    TABLES
        .iter()
        .map(|t| Ok(conn.query_row(&format!("SELECT count(*) FROM {t} WHERE batch_id = ?"), [batch_id], |r| r.get(0))?))
        .collect()
}

fn decode_hex(text: &str) -> Option<Digest> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Chains the batches committed after the chain's head without a digest, from their rows
/// as they are now. For databases whose rows were not written by the ingest writer
/// (synthetic benchmark data) or that predate migration 7 and should be covered from now
/// on; it vouches for nothing that happened before it ran.
pub fn seal_unchained(store: &Store) -> Result<u64> {
    let conn = store.connection()?;
    let stored = load_stored(&conn)?;
    let (last, mut previous) = match stored.iter().next_back() {
        Some((id, saved)) => (*id, decode_hex(&saved.chain).context("ingest_chain head is not a digest")?),
        None => (i64::MIN, [0u8; 32]),
    };
    let mut sealed = 0;
    for header in load_headers(&conn)?.into_iter().filter(|h| h.batch_id > last) {
        let tables = recompute_tables(&conn, header.batch_id, Encoding::CURRENT)?;
        let rows = rows_digest(&header, &tables, VERSION);
        let chain = chain_digest(&previous, header.batch_id, &rows);
        conn.execute(
            "INSERT INTO ingest_chain VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            duckdb::params![
                header.batch_id,
                VERSION,
                hex(&tables[0]),
                hex(&tables[1]),
                hex(&tables[2]),
                hex(&tables[3]),
                hex(&rows),
                hex(&chain)
            ],
        )?;
        previous = chain;
        sealed += 1;
    }
    Ok(sealed)
}

/// The stored head of the chain, for a new writer: the last chain digest, or zeros; None
/// when the schema has no chain yet (a database kept below migration 7, in tests of upgrades).
pub fn stored_head(conn: &duckdb::Connection) -> Result<Option<Digest>> {
    let chained: i64 =
        conn.query_row("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'ingest_chain'", [], |r| r.get(0))?;
    if chained == 0 {
        return Ok(None);
    }
    let head: Option<String> = conn
        .query_row("SELECT chain_digest FROM ingest_chain ORDER BY batch_id DESC LIMIT 1", [], |r| r.get(0))
        .or_else(|e| if matches!(e, duckdb::Error::QueryReturnedNoRows) { Ok(None) } else { Err(e) })?;
    match head {
        None => Ok(Some([0u8; 32])),
        Some(text) => decode_hex(&text).context("ingest_chain head is not a hex SHA-256 digest").map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, ListBuilder, StringArray, StringBuilder,
        TimestampMicrosecondArray, TimestampMillisecondArray,
    };
    use std::sync::Arc;

    /// The per-batch typed columns encode every value exactly as `encode_value` does,
    /// so digests (and the stored chain) are unchanged.
    #[test]
    fn typed_columns_encode_like_encode_value() {
        let mut list = ListBuilder::new(StringBuilder::new());
        list.values().append_value("a");
        list.values().append_null();
        list.append(true);
        list.append(false);
        list.append(true);
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("x"), None, Some("")])),
            Arc::new(Int64Array::from(vec![Some(i64::MIN), Some(7), None])),
            Arc::new(Int32Array::from(vec![Some(-1), None, Some(i32::MAX)])),
            Arc::new(Float64Array::from(vec![Some(-0.0), Some(f64::NAN), Some(1.5)])),
            Arc::new(TimestampMicrosecondArray::from(vec![Some(1), None, Some(-5)]).with_timezone("UTC")),
            Arc::new(TimestampMillisecondArray::from(vec![Some(1), Some(2), None])),
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            Arc::new(list.finish()),
        ];
        for encoding in [Encoding(1), Encoding(2)] {
            for array in &arrays {
                let column = Column::new("c", array.as_ref(), encoding);
                for row in 0..array.len() {
                    let (mut typed, mut generic) = (Vec::new(), Vec::new());
                    column.encode(row, &mut typed).unwrap();
                    encode_value(array.as_ref(), row, &mut generic, encoding).unwrap();
                    assert_eq!(typed, generic, "{} row {row}, version {}", array.data_type(), encoding.0);
                }
            }
        }
    }

    #[test]
    fn a_reused_digest_vector_starts_empty() {
        let batch = |values: Vec<&str>| {
            let column: ArrayRef = Arc::new(StringArray::from(values));
            RecordBatch::try_from_iter([("operation", column)]).unwrap()
        };
        let digest_of = |mut digest: TableDigest, values: Vec<&str>| {
            digest.add(&batch(values)).unwrap();
            digest.finish_keeping()
        };
        let (fresh, _) = digest_of(TableDigest::new("cosmos_requests"), vec!["Read", "Query"]);
        let (other, kept) = digest_of(TableDigest::new("cosmos_requests"), vec!["Delete", "Upsert", "Create"]);
        assert_eq!(kept.len(), 3);
        let (reused, _) = digest_of(TableDigest::reusing("cosmos_requests", kept), vec!["Read", "Query"]);
        assert_eq!(reused, fresh);
        assert_ne!(other, fresh);
    }

    #[test]
    fn a_table_digest_sorts_its_rows_in_byte_order() {
        // Rows equal in their first 16 bytes, or in their last, and differing anywhere.
        let mut rows: Vec<Digest> = Vec::new();
        for (i, j) in [(0u8, 0u8), (0, 255), (255, 0), (1, 2), (2, 1), (128, 127), (127, 128)] {
            let mut row = [7u8; 32];
            row[15] = i;
            row[31] = j;
            rows.push(row);
            row[0] = i ^ j;
            rows.push(row);
        }
        let mut digest = TableDigest::new("cosmos_requests");
        digest.rows = rows.iter().rev().copied().collect();
        let mut sorted = rows.clone();
        sorted.sort();
        let mut h = Sha256::new();
        h.update(b"tokentrail.chain.table");
        h.update(15u64.to_le_bytes());
        h.update(b"cosmos_requests");
        h.update((sorted.len() as u64).to_le_bytes());
        for row in &sorted {
            h.update(row);
        }
        assert_eq!(digest.finish(), <Digest>::from(h.finalize()));
    }

    /// Version 2 names a column by 4 bytes of its name's SHA-256: two columns of a table
    /// with the same 4 bytes could trade values unnoticed, so none may.
    #[test]
    fn column_ids_of_version_2_are_unique_within_each_table() {
        for table in TABLES {
            let schema = table_schema(table);
            let mut ids: Vec<(Vec<u8>, &str)> =
                schema.fields().iter().map(|f| (Encoding(2).column(f.name()), f.name().as_str())).collect();
            ids.sort();
            for pair in ids.windows(2) {
                assert_ne!(pair[0].0, pair[1].0, "{table}: {} and {} share an id", pair[0].1, pair[1].1);
            }
            assert!(schema.fields().len() > 5, "{table} has its columns");
        }
    }

    /// Batches sealed in version 1 (before version 2 existed) still verify, beside
    /// batches of version 2, and an edit of a version-1 batch's rows is still found.
    #[test]
    fn batches_of_version_1_verify_beside_version_2() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("v1.duckdb"), &Default::default()).unwrap();
        let record = |n: u32| {
            format!(
                r#"{{"time":"2024-05-01T10:00:0{n}Z","category":"DataPlaneRequests","operationName":"Read","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/A","properties":{{"statusCode":"200","requestCharge":"1.5","clientIpAddress":"10.0.0.{n}"}}}}"#
            )
        };
        let ingest = |name: &str, n: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, record(n)).unwrap();
            let mut writer = store.writer().unwrap();
            let options = crate::ingest::PipelineOptions::default();
            crate::ingest::files::ingest_files(&store, &mut writer, &[path], options, indicatif::ProgressBar::hidden())
                .unwrap();
        };
        ingest("first.json", 1);
        let conn = store.connection().unwrap();
        let id: i64 = conn.query_row("SELECT max(batch_id) FROM ingest_chain", [], |r| r.get(0)).unwrap();
        let (version, stored): (i32, String) = conn
            .query_row("SELECT version, cosmos_digest FROM ingest_chain WHERE batch_id = ?", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(version, VERSION);
        // Seal the batch again as a version-1 TokenTrail did.
        let header = load_headers(&conn).unwrap().into_iter().find(|h| h.batch_id == id).unwrap();
        let tables = recompute_tables(&conn, id, Encoding(1)).unwrap();
        assert_ne!(hex(&tables[0]), stored, "the two encodings give different digests");
        let rows = rows_digest(&header, &tables, 1);
        let chain = chain_digest(&[0u8; 32], id, &rows);
        conn.execute(
            "UPDATE ingest_chain SET version = 1, cosmos_digest = ?, signin_digest = ?, raw_digest = ?,
                 quarantine_digest = ?, rows_digest = ?, chain_digest = ? WHERE batch_id = ?",
            duckdb::params![
                hex(&tables[0]),
                hex(&tables[1]),
                hex(&tables[2]),
                hex(&tables[3]),
                hex(&rows),
                hex(&chain),
                id
            ],
        )
        .unwrap();
        // The next batch (version 2) links to the version-1 head.
        ingest("second.json", 2);
        let report = verify(&store, &|_, _| {}).unwrap();
        assert_eq!((report.checked, report.failures.len()), (2, 0), "{report:?}");
        conn.execute("UPDATE cosmos_requests SET status_code = 500 WHERE batch_id = ?", [id]).unwrap();
        let report = verify(&store, &|_, _| {}).unwrap();
        assert_eq!(report.failures.iter().map(|f| f.batch_id).collect::<Vec<_>>(), [id], "{report:?}");
    }
}
