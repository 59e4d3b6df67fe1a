//! The integrity chain: every committed ingest batch gets a digest over the rows it
//! added, chained to the previous batch's digest (`ingest_chain`, migration 7).
//!
//! Contract: each writer lane ([`super::lane`]) computes a batch's digests with
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
//!   and verification reads both.
//! - a table's digest is SHA-256 over its name, its row count and the sorted SHA-256 of
//!   each row: row order (which DuckDB does not keep for parallel inserts) does not matter,
//!   while editing, deleting, adding or duplicating a row does.
//! - `rows_digest` = SHA-256(version, the `ingest_batches` row, the four table digests);
//!   `chain_digest` = SHA-256(previous chain digest, batch id, rows digest). The first
//!   chained batch follows 32 zero bytes.
//!
//! Cost at ingest: one SHA-256 per row over its encoding (SHA-NI where the CPU has it);
//! see BENCHMARKS.md.

use super::rows::{CosmosRows, QuarantineRows, RawRows, SignInRows};
use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{self as types, DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use sha2::{Digest as _, Sha256};

/// Version of the canonical encoding new digests use, stored with each digest.
pub const VERSION: i32 = 2;

/// A version of the canonical encoding (see the module notes): 1 or 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding(i32);

impl Encoding {
    pub const CURRENT: Encoding = Encoding(VERSION);

    /// The version number stored with a digest.
    pub fn version(self) -> i32 {
        self.0
    }

    pub fn of(version: i32) -> Result<Encoding> {
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
pub fn table_schema(table: &str) -> SchemaRef {
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
    /// room of a [`TableDigest::finish_keeping`] before: a new vector per commit took
    /// fresh pages from the kernel every commit (BENCHMARKS.md, design measurements).
    pub fn reusing(table: &'static str, mut rows: Vec<Digest>) -> TableDigest {
        rows.clear();
        TableDigest { rows, ..TableDigest::new(table) }
    }

    pub fn in_encoding(table: &'static str, encoding: Encoding) -> TableDigest {
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

    /// Takes in the rows `other` was fed: one table's rows of a batch read in parts on
    /// several threads give the digest of all of them (row order never matters).
    pub fn merge(&mut self, other: TableDigest) {
        debug_assert!(self.table == other.table && self.encoding == other.encoding);
        self.rows.extend(other.rows);
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

pub fn decode_hex(text: &str) -> Option<Digest> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
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
}
