//! The Parquet lake: committed ingest batches copied, in segments of whole batches, to
//! Hive-partitioned Parquet files in a directory or on Azure Storage, where Spark,
//! Fabric, Azure Data Explorer and DuckDB read them; and retention, which deletes from
//! DuckDB only rows archived and read back.
//!
//! Contract (migration 23):
//! - [`archive::run`] chooses a segment's batches in DuckDB before writing anything, so a
//!   crash or a retry finishes the same segment with the same file names. Files are
//!   written create-if-absent: a file already there is a previous attempt's (object
//!   stores write whole objects) and is kept. The manifest comes last, then every file is
//!   read back and each batch's table digests recomputed and compared with
//!   `ingest_chain`; only then is the segment marked verified, with its files, in one
//!   transaction.
//! - [`evict::run`] deletes a table's rows of a batch of a verified segment once all of
//!   them are older than the table's `hot_days`, after checking the segment's files are
//!   still there, and records it in the same transaction. Each row is then in exactly one
//!   place: DuckDB until its eviction commits, the lake after.
//! - `tokentrail verify --lake` recomputes evicted rows' digests from the lake
//!   ([`read::evicted_digests`]), so the chain covers archived and hot rows alike.
//! - [`journal::run`] (end of every archive run, migration 24) copies `access_log` and
//!   `finding_history` by whole `append_chain` links, and snapshots `findings`. These are
//!   never deleted from DuckDB (no retention applies: they are small, and the service and
//!   evidence packs read them), so `verify --lake` needs no digest from the lake for them;
//!   it reads their files back through [`journal::check`].

pub mod archive;
pub mod evict;
pub mod fleet;
pub mod journal;
pub mod location;
pub mod manifest;
pub mod read;
pub mod segments;
pub mod shared_findings;
pub mod view;

pub use location::Location;

use crate::store::Store;
use anyhow::{Context, Result};
use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The tables archived, with what each file holds beyond the table's columns: the row's
/// `rowid` where other tables point at it (`raw_row`, `request_row`, `signin_row`).
pub const TABLES: [(&str, &str); 8] = [
    ("cosmos_requests", ", t.rowid AS row_id"),
    ("signins", ", t.rowid AS row_id"),
    ("raw_events", ", t.rowid AS row_id"),
    ("quarantine", ""),
    ("control_changes", ""),
    ("directory_changes", ""),
    ("cosmos_queries", ""),
    ("cosmos_control_requests", ""),
];

/// Archived but never deleted by retention: the role and directory histories that
/// entitlements, access reviews and leavers are replayed from (a few rows a day).
pub const KEPT_HOT: [&str; 2] = ["control_changes", "directory_changes"];

/// The tables retention may delete rows of.
pub fn evictable() -> impl Iterator<Item = &'static str> {
    TABLES.iter().map(|(t, _)| *t).filter(|t| !KEPT_HOT.contains(t))
}

/// Version of the files' layout and columns, in every manifest. Columns are only added.
pub const SCHEMA_VERSION: u32 = 1;

/// A lake and the runtime its object store's calls run on (the callers are threads that
/// hold DuckDB connections, never async tasks).
pub struct Lake {
    pub location: Location,
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Lake {
    fn drop(&mut self) {
        // The service's state drops its reader on an async thread, where waiting is not allowed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Files written (or read) at once.
const PUTS: usize = 8;

/// What a create-if-absent write found.
pub enum Put {
    Written,
    /// A file of that name was there already: its bytes.
    Existed(Bytes),
}

impl Lake {
    pub fn new(location: Location) -> Result<Lake> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Lake { location, runtime: Some(runtime) })
    }

    pub fn describe(&self) -> &str {
        &self.location.description
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.as_ref().expect("a lake's runtime lives until it is dropped").block_on(future)
    }

    /// Writes `bytes` at `relative` unless something is there already.
    pub fn put_new(&self, relative: &str, bytes: Bytes) -> Result<Put> {
        let mut put = self.put_new_all(vec![(relative.to_owned(), bytes)])?;
        put.pop().context("a write returned nothing")
    }

    /// [`Lake::put_new`] of several files at once (local writes wait on fsync, remote
    /// ones on the network).
    pub fn put_new_all(&self, files: Vec<(String, Bytes)>) -> Result<Vec<Put>> {
        use futures::{StreamExt as _, TryStreamExt as _};
        for (relative, _) in &files {
            self.location.remove_staging(relative)?;
        }
        let store = &self.location.store;
        let puts = files.into_iter().map(|(relative, bytes)| async move {
            let path = self.location.path(&relative);
            let options = PutOptions { mode: PutMode::Create, ..Default::default() };
            let written = match store.put_opts(&path, PutPayload::from_bytes(bytes), options).await {
                Ok(_) => Ok(Put::Written),
                Err(object_store::Error::AlreadyExists { .. }) => match store.get(&path).await {
                    Ok(existing) => existing.bytes().await.map(Put::Existed),
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            };
            written.with_context(|| format!("writing {relative} to the lake {}", self.describe()))
        });
        self.block_on(futures::stream::iter(puts).buffered(PUTS).try_collect())
    }

    pub fn get(&self, relative: &str) -> Result<Bytes> {
        let mut got = self.get_all(&[relative.to_owned()])?;
        got.pop().context("a read returned nothing")
    }

    /// [`Lake::get`] of several files at once (each a round trip to a remote store).
    pub fn get_all(&self, files: &[String]) -> Result<Vec<Bytes>> {
        self.get_each(files).into_iter().collect()
    }

    /// Each of `files` or why it could not be read, read several at once.
    pub fn get_each(&self, files: &[String]) -> Vec<Result<Bytes>> {
        use futures::StreamExt as _;
        let store = &self.location.store;
        let gets = files.iter().map(|relative| async move {
            let path = self.location.path(relative);
            let got = async { store.get(&path).await?.bytes().await }.await;
            got.with_context(|| format!("reading {relative} from the lake {}", self.describe()))
        });
        self.block_on(futures::stream::iter(gets).buffered(PUTS).collect())
    }

    /// The names of the files directly under `dir` that sort after `after` (a name in
    /// `dir`), in name order.
    pub fn list(&self, dir: &str, after: Option<&str>) -> Result<Vec<String>> {
        use futures::TryStreamExt as _;
        let prefix = self.location.path(dir);
        let store = &self.location.store;
        let listed: Vec<object_store::ObjectMeta> = self
            .block_on(async {
                match after {
                    Some(after) => {
                        let offset = self.location.path(&format!("{dir}/{after}"));
                        store.list_with_offset(Some(&prefix), &offset).try_collect().await
                    }
                    None => store.list(Some(&prefix)).try_collect().await,
                }
            })
            .with_context(|| format!("listing {dir} in the lake {}", self.describe()))?;
        let depth = prefix.parts().count() + 1;
        let mut names: Vec<String> = listed
            .into_iter()
            .filter(|m| m.location.parts().count() == depth)
            .filter_map(|m| m.location.filename().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The directories directly under `dir`, by name.
    pub fn list_dirs(&self, dir: &str) -> Result<Vec<String>> {
        let prefix = self.location.path(dir);
        let listed = self
            .block_on(self.location.store.list_with_delimiter(Some(&prefix)))
            .with_context(|| format!("listing {dir} in the lake {}", self.describe()))?;
        let mut names: Vec<String> =
            listed.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_owned)).collect();
        names.sort();
        Ok(names)
    }

    /// Deletes `relative` if it is there.
    pub fn delete(&self, relative: &str) -> Result<()> {
        let path = self.location.path(relative);
        match self.block_on(self.location.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error).with_context(|| format!("deleting {relative} from the lake {}", self.describe())),
        }
    }

    /// The size of `relative`, or `None` when it is not there.
    pub fn size(&self, relative: &str) -> Result<Option<u64>> {
        let path = self.location.path(relative);
        match self.block_on(self.location.store.head(&path)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error).with_context(|| format!("looking for {relative} in the lake {}", self.describe())),
        }
    }
}

/// `serve`'s archive thread: at start and every `interval`, archives what is new, then
/// applies `retention`. A failed run is logged and tried again at the next interval.
pub fn spawn_schedule(
    store: Arc<Store>,
    lake: Lake,
    retention: evict::Retention,
    interval: Duration,
    metrics: Arc<crate::metrics::Metrics>,
    stop: CancellationToken,
) -> Result<std::thread::JoinHandle<()>> {
    let options = archive::Options { stop: Some(stop.clone()), ..Default::default() };
    let failed = |metrics: &crate::metrics::Metrics, step: &str, error: anyhow::Error| {
        metrics.lake_failures.get_or_create(&crate::metrics::LakeLabels { step: step.into() }).inc();
        tracing::error!(error = format!("{error:#}"), step, "the lake's run failed; the next interval tries again");
    };
    Ok(crate::periodic::spawn_every("lake", interval, stop, move || {
        let archived = archive::run(&store, &lake, &options, &|_| {
            metrics.lake_segments.inc();
        });
        match archived {
            Ok(report) if report.not_absorbed > 0 => {
                tracing::debug!(batches = report.not_absorbed, "archive: batches wait for detection")
            }
            Ok(_) => {}
            Err(error) => return failed(&metrics, "archive", error.context(lake.describe().to_owned())),
        }
        if retention == evict::Retention::default() {
            return;
        }
        match evict::run(&store, &lake, &retention, chrono::Utc::now()) {
            Ok(evictions) => {
                for e in evictions {
                    let labels = crate::metrics::TableLabels { table: e.table };
                    metrics.lake_evicted_rows.get_or_create(&labels).inc_by(e.rows as u64);
                }
            }
            Err(error) => failed(&metrics, "retention", error.context(lake.describe().to_owned())),
        }
    })?)
}

/// What every lake file is written with: Zstandard level 1 (a Cosmos DB request is mostly
/// repeated names and ids; level 3 encoded 1M requests in 2.4 s against 1.5–1.7 s for files
/// 3% smaller, BENCHMARKS.md, lake), DuckDB's row groups, and who wrote it.
pub fn writer_properties() -> parquet::file::properties::WriterPropertiesBuilder {
    use parquet::basic::{Compression, ZstdLevel};
    parquet::file::properties::WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("a valid level")))
        .set_max_row_group_row_count(Some(crate::store::ROW_GROUP_ROWS))
        .set_created_by(format!("tokentrail {}", env!("CARGO_PKG_VERSION")))
}

/// `table=<t>/date=<day>/batches-<first>-<last>.parquet`: the table and day for readers'
/// partition discovery, the batches for a retry to find its own file.
pub fn file_path(table: &str, day: chrono::NaiveDate, first: i64, last: i64) -> String {
    format!("table={table}/date={day}/batches-{first:012}-{last:012}.parquet")
}

pub fn manifest_path(first: i64, last: i64) -> String {
    format!("manifests/batches-{first:012}-{last:012}.json")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    crate::store::chain::hex(&sha2::Sha256::digest(bytes).into())
}
