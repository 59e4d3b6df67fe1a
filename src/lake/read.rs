//! Reading archived files back: each batch's table digests, recomputed from the Parquet
//! rows with the chain's encoding (`crate::store::chain::TableDigest`).

use super::Lake;
use crate::store::chain::{self, Digest, Encoding, TableDigest};
use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;

/// A file read back: its SHA-256 checked against what the manifest or DuckDB says.
pub fn fetch_checked(lake: &Lake, path: &str, sha256: &str) -> Result<Bytes> {
    let bytes = lake.get(path)?;
    let found = super::sha256_hex(&bytes);
    if found != sha256 {
        bail!(
            "{path} in the lake {} has changed: its SHA-256 is {found}, it was archived with {sha256}",
            lake.describe()
        );
    }
    Ok(bytes)
}

/// The row count a Parquet file's footer states.
pub fn parquet_rows(bytes: &Bytes) -> Result<i64> {
    use parquet::file::reader::FileReader as _;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(bytes.clone())?;
    Ok(reader.metadata().file_metadata().num_rows())
}

/// The Arrow batches of a Parquet file.
pub fn batches(bytes: Bytes) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.with_batch_size(8192).build()?;
    Ok(reader.map(|batch| batch.context("reading a Parquet file")))
}

/// Per batch: the digest of one chained table's rows (in the batch's encoding) and
/// their count, fed file by file.
pub struct BatchDigests {
    table: &'static str,
    columns: Vec<String>,
    encodings: BTreeMap<i64, Encoding>,
    digests: BTreeMap<i64, (TableDigest, i64)>,
}

impl BatchDigests {
    /// `table` is one of `store::chain::TABLES`; `encodings` each batch's stored encoding.
    pub fn new(table: &'static str, encodings: BTreeMap<i64, Encoding>) -> BatchDigests {
        let columns = chain::table_schema(table).fields().iter().map(|f| f.name().clone()).collect();
        BatchDigests { table, columns, encodings, digests: BTreeMap::new() }
    }

    /// Adds a file's rows: runs of one `batch_id` at a time.
    pub fn add_file(&mut self, bytes: Bytes) -> Result<()> {
        for batch in batches(bytes)? {
            let batch = batch?;
            let ids = batch
                .column_by_name("batch_id")
                .context("an archived file has no batch_id column")?
                .as_primitive_opt::<Int64Type>()
                .context("an archived file's batch_id is not BIGINT")?
                .clone();
            // Only the columns the digest covers, by name (files may hold more).
            let indices: Vec<usize> = self
                .columns
                .iter()
                .map(|name| batch.schema().index_of(name).with_context(|| format!("{}: no column {name}", self.table)))
                .collect::<Result<_>>()?;
            let projected = batch.project(&indices)?;
            let mut start = 0;
            while start < ids.len() {
                if ids.is_null(start) {
                    bail!("{}: an archived row has no batch_id", self.table);
                }
                let id = ids.value(start);
                let mut end = start + 1;
                while end < ids.len() && !ids.is_null(end) && ids.value(end) == id {
                    end += 1;
                }
                let encoding = self.encodings.get(&id).copied().unwrap_or(Encoding::CURRENT);
                let (digest, rows) =
                    self.digests.entry(id).or_insert_with(|| (TableDigest::in_encoding(self.table, encoding), 0));
                digest.add(&projected.slice(start, end - start))?;
                *rows += (end - start) as i64;
                start = end;
            }
        }
        Ok(())
    }

    /// Takes in what `other` (the same table and encodings, other files) was fed.
    fn merge(&mut self, other: BatchDigests) {
        for (id, (digest, rows)) in other.digests {
            match self.digests.entry(id) {
                std::collections::btree_map::Entry::Occupied(mut entry) => {
                    let (mine, count) = entry.get_mut();
                    mine.merge(digest);
                    *count += rows;
                }
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert((digest, rows));
                }
            }
        }
    }

    /// Reads `files` (path, SHA-256; each checked first) on [`READERS`] threads.
    fn read_files(
        table: &'static str,
        encodings: &BTreeMap<i64, Encoding>,
        lake: &Lake,
        files: &[(&str, &str)],
    ) -> Result<BatchDigests> {
        let parts: Vec<Result<BatchDigests>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..READERS)
                .map(|t| {
                    scope.spawn(move || {
                        let mut digests = BatchDigests::new(table, encodings.clone());
                        for (path, sha256) in files.iter().skip(t).step_by(READERS) {
                            digests.add_file(fetch_checked(lake, path, sha256)?)?;
                        }
                        Ok(digests)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a reader panicked"))))
                .collect()
        });
        let mut all = BatchDigests::new(table, encodings.clone());
        for part in parts {
            all.merge(part?);
        }
        Ok(all)
    }

    /// Each batch's digest and row count; `ids` with no row get the empty digest.
    fn finish(mut self, ids: impl IntoIterator<Item = i64>) -> BTreeMap<i64, (Digest, i64)> {
        let mut out = BTreeMap::new();
        for id in ids {
            let (digest, rows) = self.digests.remove(&id).unwrap_or_else(|| {
                let encoding = self.encodings.get(&id).copied().unwrap_or(Encoding::CURRENT);
                (TableDigest::in_encoding(self.table, encoding), 0)
            });
            out.insert(id, (digest.finish(), rows));
        }
        // Rows of batches outside the segment are reported as such by the caller.
        for (id, (digest, rows)) in self.digests {
            out.insert(id, (digest.finish(), rows));
        }
        out
    }
}

/// Each batch's encoding from its stored version (none: a batch from before the chain,
/// read in the current encoding).
pub fn encodings(versions: impl IntoIterator<Item = (i64, Option<i32>)>) -> Result<BTreeMap<i64, Encoding>> {
    versions.into_iter().map(|(id, version)| Ok((id, version.map_or(Ok(Encoding::CURRENT), Encoding::of)?))).collect()
}

/// One chained table's rows of the segment `first..=last`, read back from its `files`
/// (path, SHA-256; each checked first): the digest and row count of every batch of
/// `encodings` (the segment's), the empty digest for a batch with no row. A row of any
/// other batch is an error.
pub fn segment_digests(
    lake: &Lake,
    table: &'static str,
    encodings: &BTreeMap<i64, Encoding>,
    files: &[(&str, &str)],
    (first, last): (i64, i64),
) -> Result<BTreeMap<i64, (Digest, i64)>> {
    let found = BatchDigests::read_files(table, encodings, lake, files)?.finish(encodings.keys().copied());
    if let Some(stray) = found.keys().find(|id| !(first..=last).contains(*id)) {
        bail!("the archived {table} files of batches {first}..{last} hold rows of batch {stray}");
    }
    Ok(found)
}

/// [`segment_digests`] of every chained table of a segment at once, one map per table
/// (`store::chain::TABLES` order): `files` are (index in that list, path, SHA-256,
/// size), read by [`READERS`] threads, each taking the largest file left.
pub fn segment_tables_digests(
    lake: &Lake,
    encodings: &BTreeMap<i64, Encoding>,
    files: &[(usize, &str, &str, u64)],
    (first, last): (i64, i64),
) -> Result<Vec<BTreeMap<i64, (Digest, i64)>>> {
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(files[*i].3));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let fresh =
        || -> Vec<BatchDigests> { chain::TABLES.iter().map(|&t| BatchDigests::new(t, encodings.clone())).collect() };
    let parts: Vec<Result<Vec<BatchDigests>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..READERS)
            .map(|_| {
                scope.spawn(|| {
                    let mut digests = fresh();
                    while let Some(&i) = order.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                        let (table, path, sha256, _) = files[i];
                        let digest = digests.get_mut(table).context("not a chained table")?;
                        digest.add_file(fetch_checked(lake, path, sha256)?)?;
                    }
                    Ok(digests)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a reader panicked")))).collect()
    });
    let mut all = fresh();
    for part in parts {
        for (mine, theirs) in all.iter_mut().zip(part?) {
            mine.merge(theirs);
        }
    }
    let mut out = Vec::new();
    for (table, digests) in chain::TABLES.iter().zip(all) {
        let found = digests.finish(encodings.keys().copied());
        if let Some(stray) = found.keys().find(|id| !(first..=last).contains(*id)) {
            bail!("the archived {table} files of batches {first}..{last} hold rows of batch {stray}");
        }
        out.push(found);
    }
    Ok(out)
}

/// Which chained tables (`store::chain::TABLES` order) of each batch were evicted.
pub fn evicted(conn: &duckdb::Connection) -> Result<BTreeMap<i64, [bool; 4]>> {
    let mut stmt = conn.prepare(include_str!("sql/evicted_batches.sql"))?;
    let mut rows = stmt.query([])?;
    let mut out: BTreeMap<i64, [bool; 4]> = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let (id, table): (i64, String) = (r.get(0)?, r.get(1)?);
        if let Some(i) = chain::TABLES.iter().position(|t| *t == table) {
            out.entry(id).or_default()[i] = true;
        }
    }
    Ok(out)
}

/// Threads reading a table's files back.
const READERS: usize = 2;

/// Evicted rows' digests recomputed from the lake, and what could not be read.
#[derive(Default)]
pub struct LakeDigests {
    /// (batch, index in `store::chain::TABLES`) → digest.
    pub digests: BTreeMap<(i64, usize), Digest>,
    /// (first batch of the segment, what is wrong).
    pub failures: Vec<(i64, String)>,
}

/// The digests of every evicted chained table's rows of the batches up to `up_to`,
/// from the files the lake holds (each checked against its SHA-256 first).
pub fn evicted_digests(conn: &duckdb::Connection, lake: &Lake, up_to: i64) -> Result<LakeDigests> {
    let mut out = LakeDigests::default();
    let mut segments = conn.prepare(include_str!("sql/evicted_segments.sql"))?;
    let evictions: Vec<(i64, i64, String)> =
        segments.query_map([up_to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<duckdb::Result<_>>()?;
    let mut files =
        conn.prepare("SELECT path, sha256 FROM lake_files WHERE first_batch = ? AND table_name = ? ORDER BY path")?;
    let mut versions = conn.prepare(
        "SELECT b.batch_id, c.version FROM ingest_batches b LEFT JOIN ingest_chain c USING (batch_id) \
         WHERE b.batch_id BETWEEN ? AND ? ORDER BY b.batch_id",
    )?;
    for (first, last, table) in evictions {
        let Some(index) = chain::TABLES.iter().position(|t| *t == table) else { continue };
        let batches: Vec<(i64, Option<i32>)> =
            versions.query_map([first, last], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<duckdb::Result<_>>()?;
        let encodings = encodings(batches)?;
        let paths: Vec<(String, String)> = files
            .query_map(duckdb::params![first, table], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<duckdb::Result<_>>()?;
        let paths: Vec<(&str, &str)> = paths.iter().map(|(p, s)| (p.as_str(), s.as_str())).collect();
        match segment_digests(lake, chain::TABLES[index], &encodings, &paths, (first, last)) {
            Ok(found) => out.digests.extend(found.into_iter().map(|(id, (digest, _))| ((id, index), digest))),
            Err(error) => {
                out.failures.push((first, format!("archived {table} rows of batches {first}..{last}: {error:#}")))
            }
        }
    }
    Ok(out)
}
