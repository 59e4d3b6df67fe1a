//! The DuckDB file: schema, the ingest writer, and connections for readers.
//!
//! Contract (exactly once): [`Writer::commit`] writes a batch's rows in all four
//! tables, its `ingest_batches` row and the source's [`Checkpoint`] in **one**
//! transaction. A source that restarts reads its checkpoint back with
//! [`Store::checkpoint`] and resumes right after it, so every input record is stored
//! once, whatever crashed when.

pub mod append;
pub mod chain;
#[allow(unsafe_code)] // DuckDB's C API: opening the database, its Arrow scan; the purge shim.
mod ffi;
mod lane;
pub mod migrate;
pub mod quiet;
pub mod rows;

use lane::Turns;
pub use lane::{Lane, Part};

use anyhow::{Context, Result, bail};
use ffi::{RawConnection, RawDatabase};
use rows::{RowCounts, TableBatches};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Rows per commit (`commit_rows`, for files and Event Hubs alike), counted in the
/// commit's largest table: one DuckDB row group. DuckDB writes a commit's whole row
/// groups of a table straight to the database file, compressed; a commit of fewer rows
/// goes through the write-ahead log and is compressed again at the next checkpoint.
/// Larger commits held more memory for no gain (BENCHMARKS.md, design measurements).
pub const COMMIT_ROWS: usize = ROW_GROUP_ROWS;

/// Rows of a DuckDB row group.
pub const ROW_GROUP_ROWS: usize = 122_880;

/// How to open the database.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// DuckDB worker threads; all cores when `None`.
    pub threads: Option<usize>,
    /// Open read-only (another process may hold the file for writing only if it is
    /// not running; DuckDB locks the file).
    pub read_only: bool,
    /// Apply migrations only up to this version (tests of upgrades).
    pub migrate_up_to: Option<i32>,
    /// DuckDB's `memory_limit` (e.g. `512MB`): its buffer pool otherwise keeps data
    /// blocks cached up to most of the machine's memory as the database grows.
    pub memory_limit: Option<String>,
    /// DuckDB's `checkpoint_threshold`, the write-ahead log size that triggers a
    /// checkpoint (DuckDB's default: 16 MiB).
    pub checkpoint_threshold: Option<String>,
}

/// A size as DuckDB prints it (`366.2 MiB`, `18.8 GiB`, `384.0 MB`, `512 bytes`), in bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "byte" | "bytes" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((number * scale) as u64)
}

/// DuckDB's write-ahead log beside the database file.
fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".wal");
    PathBuf::from(name)
}

/// The most a locked-down service lets DuckDB spill to its temp directory.
pub const TEMP_LIMIT: &str = "4GiB";

/// Tries [`Store::transaction`] makes of a transaction that meets write conflicts
/// (1.27 s of waiting in all).
pub const CONFLICT_TRIES: u32 = 8;

/// Another change to the same rows went first every time [`Store::transaction`] tried:
/// nothing was changed, and trying again later is the remedy (the API answers 409).
#[derive(Debug, thiserror::Error)]
#[error("another change to the same data went first; try again")]
pub struct Busy;

/// Runs `attempt` (a transaction that rolls back when it fails) again while it fails on
/// a write conflict: after 10 ms, then twice as long each time; after
/// [`CONFLICT_TRIES`] the error says [`Busy`].
pub fn retrying_conflicts<T>(mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let mut wait = std::time::Duration::from_millis(10);
    let mut tried = 1;
    loop {
        match attempt() {
            Err(error) if is_write_conflict(&error) => {
                if tried == CONFLICT_TRIES {
                    return Err(error.context(Busy));
                }
                tracing::debug!(error = format!("{error:#}"), tried, "write conflict; trying again");
                std::thread::sleep(wait);
                wait *= 2;
                tried += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Write transactions ([`in_transaction`]) hold this shared; an evidence pack's snapshot
/// ([`snapshot_at`]) holds it alone while it begins. Rows such transactions stamp with
/// their start time (`get_current_timestamp()`: a finding raised, a status changed) are
/// then either committed and in the snapshot, or stamped after the pack's `made_at`:
/// never stamped before it yet committed after it began, which a re-run of the pack
/// would count and the pack did not.
static STAMPED: std::sync::RwLock<()> = std::sync::RwLock::new(());

thread_local! {
    /// [`in_transaction`]s open on this thread (on other connections): only the outermost
    /// takes [`STAMPED`], so a nested one never waits behind a pack that waits for it.
    static OPEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Begins a read snapshot on `conn` with no write transaction in flight, and answers the
/// time (µs) it stands for: every row a transaction stamped before it is in the snapshot.
pub fn snapshot_at(conn: &duckdb::Connection) -> Result<i64> {
    let _alone = STAMPED.write().unwrap_or_else(|p| p.into_inner());
    conn.execute_batch("BEGIN TRANSACTION")?;
    // DuckDB takes the snapshot at the transaction's first read.
    conn.query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get::<_, i64>(0))?;
    Ok(chrono::Utc::now().timestamp_micros())
}

/// Runs `work` in one transaction on `conn`: committed if it returns `Ok`, rolled back
/// if not (or if the commit fails).
pub fn in_transaction<T>(conn: &duckdb::Connection, work: impl FnOnce(&duckdb::Connection) -> Result<T>) -> Result<T> {
    struct Open;
    impl Drop for Open {
        fn drop(&mut self) {
            OPEN.with(|open| open.set(open.get() - 1));
        }
    }
    let outermost = OPEN.with(|open| open.replace(open.get() + 1)) == 0;
    let _open = Open;
    let _shared = outermost.then(|| STAMPED.read().unwrap_or_else(|p| p.into_inner()));
    conn.execute_batch("BEGIN TRANSACTION")?;
    let outcome = work(conn).and_then(|value| {
        conn.execute_batch("COMMIT").context("committing")?;
        Ok(value)
    });
    if outcome.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    outcome
}

/// Whether `error` is DuckDB's write conflict: a row another transaction changed
/// since this one began ("Conflict on update!", "Conflict on tuple deletion!").
pub fn is_write_conflict(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let text = cause.to_string();
        text.contains("TransactionContext Error") && text.contains("Conflict on")
    })
}

/// An open TokenTrail database.
pub struct Store {
    db: Arc<RawDatabase>,
    path: PathBuf,
    catalog: String,
    writer_taken: Arc<AtomicBool>,
    /// DuckDB's memory limit in bytes, as it reported it when opened.
    memory_limit: Option<u64>,
}

/// A duckdb-rs connection that keeps its database open.
pub struct Connection {
    // Declared first: dropped before the database it points into.
    conn: duckdb::Connection,
    _db: Arc<RawDatabase>,
}

impl std::ops::Deref for Connection {
    type Target = duckdb::Connection;
    fn deref(&self) -> &duckdb::Connection {
        &self.conn
    }
}

impl Store {
    /// Opens or creates the database at `path` and brings its schema up to date.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        if options.read_only && !path.exists() {
            bail!(
                "no database at {}: run `tokentrail ingest --db {}` or `tokentrail demo` first",
                path.display(),
                path.display()
            );
        }
        // preserve_insertion_order stays on for everyone but the ingest writer's
        // connections ([`Store::writer`]): with it off, DuckDB handed a large ORDER BY
        // result back with its chunks out of order under parallel load, and an evidence
        // population must come out byte for byte the same on every run.
        let mut settings = vec![
            // Never reach for the network: everything needed is built in.
            ("autoinstall_known_extensions", "false".to_string()),
            ("autoload_known_extensions", "false".to_string()),
            // No merging of row groups at checkpoints. An ingest commit writes its rows
            // as whole row groups plus a partial one; merging runs of up to three groups
            // that fit in fewer rewrote two whole row groups between each pair of
            // partial ones, single-threaded, at the next checkpoint (on the benchmark, a
            // third of all rows, 1.3 CPU-s, when `tokentrail ingest` closed the file).
            // Row groups left wholly deleted are still dropped.
            ("max_vacuum_tasks", "0".to_string()),
        ];
        if let Some(limit) = &options.memory_limit {
            settings.push(("memory_limit", limit.clone()));
        }
        if let Some(threads) = options.threads {
            settings.push(("threads", threads.to_string()));
        }
        if let Some(threshold) = &options.checkpoint_threshold {
            settings.push(("checkpoint_threshold", threshold.clone()));
        }
        if options.read_only {
            settings.push(("access_mode", "READ_ONLY".to_string()));
        }
        let db = RawDatabase::open(path, &settings).map_err(|e| {
            let hint = if e.to_string().contains("lock") {
                " (is another tokentrail process, such as `tokentrail demo`, using it?)"
            } else {
                ""
            };
            anyhow::anyhow!("{e}{hint}")
        })?;
        let db = Arc::new(db);
        if !options.read_only {
            // A database made by an older TokenTrail (or another umask) was readable by others.
            for file in [path.to_path_buf(), wal_path(path)] {
                crate::sys::make_private(&file).with_context(|| format!("making {} private", file.display()))?;
            }
        }
        let conn = db.connection()?;
        if !options.read_only {
            migrate::migrate(&conn, options.migrate_up_to)?;
        }
        let catalog: String = conn.query_row("SELECT current_database()", [], |r| r.get(0))?;
        let memory_limit: Option<String> =
            conn.query_row("SELECT value FROM duckdb_settings() WHERE name = 'memory_limit'", [], |r| r.get(0))?;
        drop(conn);
        Ok(Store {
            db,
            path: path.to_path_buf(),
            catalog,
            writer_taken: Arc::new(AtomicBool::new(false)),
            memory_limit: memory_limit.as_deref().and_then(parse_size),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// DuckDB's memory limit (its buffer pool, hash tables, sorts), in bytes.
    pub fn memory_limit(&self) -> Option<u64> {
        self.memory_limit
    }

    /// For a running service, whose users send SQL: DuckDB may no longer read or write
    /// files other than its own (no `read_csv`, `COPY`, `ATTACH`, extensions), and its
    /// settings can no longer change. Both hold for every connection, until the process
    /// ends. Ingest (an Arrow scan of our own memory) and detection need neither.
    /// `readable` are the directories left readable: the Parquet lake's files (or their
    /// cache) that answers past retention read ([`crate::lake::view`]), and the shared
    /// lake's cache the rules over everyone's counts read ([`crate::lake::fleet`]).
    pub fn lock_down(&self, readable: &[std::path::PathBuf]) -> Result<()> {
        let conn = self.connection()?;
        if !readable.is_empty() {
            let dirs = readable
                .iter()
                .map(|dir| {
                    let dir = dir.to_str().context("a lake's directory is not UTF-8")?;
                    Ok(format!("'{}/'", dir.replace('\'', "''")))
                })
                .collect::<Result<Vec<_>>>()?;
            // A SET takes no bound parameter; the paths are the configuration's, quoted.
            conn.execute_batch(&format!("SET allowed_directories = [{}]", dirs.join(", ")))
                .context("allowing DuckDB the lakes' directories")?;
        }
        // Spilled sorts and hash tables are DuckDB's only file writes left; bound them, so
        // one query cannot fill the disk (TEMP_LIMIT).
        conn.execute_batch(&format!(
            "SET max_temp_directory_size = '{TEMP_LIMIT}'; SET enable_external_access = false; SET lock_configuration = true;"
        ))
        .context("locking DuckDB down")?;
        Ok(())
    }

    /// Runs `work` in one transaction ([`in_transaction`]) on a connection of its own,
    /// run again on a write conflict ([`retrying_conflicts`]: DuckDB's concurrency is
    /// optimistic, the first transaction to change a row wins). `work` must only touch
    /// the database: it may run more than once.
    pub fn transaction<T>(&self, mut work: impl FnMut(&duckdb::Connection) -> Result<T>) -> Result<T> {
        retrying_conflicts(|| in_transaction(&*self.connection()?, &mut work))
    }

    /// Unloads DuckDB's unpinned blocks and frees the bookkeeping of freed ones
    /// ([`ffi::RawDatabase::unload_unpinned_blocks`]). Returns the bytes unloaded, or
    /// `None` if DuckDB refused.
    pub fn unload_unpinned_blocks(&self) -> Option<u64> {
        self.db.unload_unpinned_blocks()
    }

    /// A connection for reading (or for anything that is not ingest).
    pub fn connection(&self) -> Result<Connection> {
        Ok(Connection { conn: self.db.connection()?, _db: self.db.clone() })
    }

    /// The one ingest writer of this store.
    pub fn writer(&self) -> Result<Writer> {
        if self.writer_taken.swap(true, Ordering::SeqCst) {
            bail!("the ingest writer of {} is already in use", self.path.display());
        }
        let opened = (|| -> Result<(RawConnection, Option<i64>, Option<chain::Digest>, bool)> {
            let raw = writer_connection(&self.db, &self.catalog)?;
            let conn = self.connection()?;
            let last = conn.query_row("SELECT max(batch_id) FROM ingest_batches", [], |r| r.get(0))?;
            let lane_checkpoints: i64 = conn.query_row(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'source_checkpoints'",
                [],
                |r| r.get(0),
            )?;
            Ok((raw, last, chain::stored_head(&conn)?, lane_checkpoints > 0))
        })();
        let (raw, last, head, lane_checkpoints) =
            opened.inspect_err(|_| self.writer_taken.store(false, Ordering::SeqCst))?;
        let mut conns = vec![raw];
        // Every lane's connection now, while its session can still be configured (after
        // Store::lock_down no SET is accepted).
        while lane_checkpoints && conns.len() < MAX_LANES {
            conns.push(
                writer_connection(&self.db, &self.catalog)
                    .inspect_err(|_| self.writer_taken.store(false, Ordering::SeqCst))?,
            );
        }
        Ok(Writer {
            conns,
            turns: Turns::new(last.unwrap_or(0), head),
            lane_checkpoints,
            catalog: self.catalog.clone(),
            taken: self.writer_taken.clone(),
            db: self.db.clone(),
        })
    }

    /// Where `source_id` stood after its last committed batch.
    pub fn checkpoint(&self, source_id: &str) -> Result<Option<Checkpoint>> {
        let conn = self.connection()?;
        let mut stmt = conn.prepare(include_str!("sql/checkpoint.sql"))?;
        let mut rows = stmt.query([source_id])?;
        let Some(row) = rows.next()? else { return Ok(None) };
        let kind: String = row.get(0)?;
        Ok(Some(Checkpoint {
            source_id: source_id.to_owned(),
            kind: SourceKind::parse(&kind)?,
            byte_offset: row.get(1)?,
            line: row.get(2)?,
            fingerprint: row.get(3)?,
            complete: row.get(4)?,
            sequence_number: row.get(5)?,
            event_offset: row.get(6)?,
            event_time: row.get(7)?,
        }))
    }
}

/// A connection of the ingest writer: the `scratch` catalog attached for its Arrow scan
/// views, and insertion order not kept (log rows have none that matters, and keeping it
/// slowed inserts). Made before [`Store::lock_down`], which refuses the SET: a writer
/// opened later still stores everything, keeping the order, more slowly.
fn writer_connection(db: &RawDatabase, catalog: &str) -> Result<RawConnection> {
    let mut raw = db.raw_connection()?;
    raw.attach_scratch(catalog)?;
    if let Err(error) = raw.execute_batch("SET SESSION preserve_insertion_order = false") {
        tracing::warn!(%error, "an ingest connection keeps insertion order (the writer was opened after lock-down)");
    }
    Ok(raw)
}

/// What kind of source a checkpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    File,
    Generator,
    EventHubs,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Generator => "generator",
            SourceKind::EventHubs => "eventhubs",
        }
    }

    fn parse(text: &str) -> Result<SourceKind> {
        Ok(match text {
            "file" => SourceKind::File,
            "generator" => SourceKind::Generator,
            "eventhubs" => SourceKind::EventHubs,
            other => bail!("unknown source kind {other:?} in checkpoints"),
        })
    }
}

/// Where a source stands: committed with the rows it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub source_id: String,
    pub kind: SourceKind,
    pub byte_offset: Option<i64>,
    pub line: Option<i64>,
    pub fingerprint: Option<String>,
    pub complete: bool,
    pub sequence_number: Option<i64>,
    pub event_offset: Option<String>,
    /// Microseconds since the epoch, UTC.
    pub event_time: Option<i64>,
}

impl Checkpoint {
    pub fn new(source_id: impl Into<String>, kind: SourceKind) -> Checkpoint {
        Checkpoint {
            source_id: source_id.into(),
            kind,
            byte_offset: None,
            line: None,
            fingerprint: None,
            complete: false,
            sequence_number: None,
            event_offset: None,
            event_time: None,
        }
    }

    /// A short readable form for `ingest_batches.position` and logs.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(line) = self.line {
            parts.push(format!("line {line}"));
        }
        if let Some(bytes) = self.byte_offset {
            parts.push(format!("byte {bytes}"));
        }
        if let Some(seq) = self.sequence_number {
            parts.push(format!("sequence {seq}"));
        }
        if let Some(t) = self.event_time.and_then(chrono::DateTime::from_timestamp_micros) {
            parts.push(format!("time {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
        }
        if self.complete {
            parts.push("complete".into());
        }
        parts.join(", ")
    }
}

/// The positions of one commit, for `ingest_batches.position` and logs.
pub fn describe_all(checkpoints: &[Checkpoint]) -> String {
    match checkpoints {
        [one] => one.describe(),
        many => many.iter().map(|c| format!("{}: {}", c.source_id, c.describe())).collect::<Vec<_>>().join("; "),
    }
}

/// The `ingest_batches.source_id` of one commit: the source, or the common part of
/// several (the hub of several partitions).
fn common_source(checkpoints: &[Checkpoint]) -> String {
    let Some((first, rest)) = checkpoints.split_first() else { return String::new() };
    let mut common = first.source_id.as_str();
    for other in rest {
        let shared = common.bytes().zip(other.source_id.bytes()).take_while(|(a, b)| a == b).count();
        common = &common[..shared];
    }
    if rest.is_empty() { common.to_owned() } else { format!("{}* ({} positions)", common, checkpoints.len()) }
}

/// What one commit stored.
#[derive(Debug, Clone, Copy)]
pub struct BatchReceipt {
    pub batch_id: i64,
    pub counts: RowCounts,
}

/// The ingest writer: the only code that adds rows to the public tables.
///
/// It commits batches one at a time ([`Writer::commit`]), or through up to
/// [`MAX_LANES`] lanes ([`Writer::lanes`]): connections of their own that store
/// batches in turn at once, each in its own transaction, and commit them in batch
/// order. A batch's rows go in while the batch before it waits for its turn and the
/// one before that is compressed and committed (DuckDB compresses a commit's full row
/// groups before taking its commit locks); its `COMMIT` waits for the batch before's.
/// So the database only ever holds a prefix of the batches handed over, every
/// checkpoint covers only rows committed with or before it, and the integrity chain
/// links each batch to the one committed before it.
pub struct Writer {
    /// One connection per lane; the first is the one [`Writer::commit`] uses.
    conns: Vec<RawConnection>,
    turns: Turns,
    /// Whether the schema keeps a checkpoint row per lane (`source_checkpoints`,
    /// migration 8). Below it, one lane writes `checkpoints` itself.
    lane_checkpoints: bool,
    /// The database's catalog, for the lanes' `scratch` views.
    catalog: String,
    /// Cleared on drop, so the store can hand out a writer again.
    taken: Arc<AtomicBool>,
    db: Arc<RawDatabase>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.taken.store(false, Ordering::SeqCst);
    }
}

/// Most lanes a writer runs: open transactions write different lane rows of a source's
/// checkpoint (`batch_id % MAX_LANES`; migration 8 made the table when there were two).
/// With two, a lane done with its rows waited for the other's COMMIT while the parsers
/// stalled behind it: one core idle for 30–110 ms a commit (see BENCHMARKS.md).
pub const MAX_LANES: usize = 3;

impl Writer {
    /// The id the next batch committed gets.
    pub fn next_batch_id(&self) -> i64 {
        self.turns.next_batch_id()
    }

    /// Stores `batches` and moves the sources to `checkpoints`, atomically.
    pub fn commit(&mut self, batches: TableBatches, checkpoints: &[Checkpoint]) -> Result<BatchReceipt> {
        let batch_id = self.next_batch_id();
        let (parts, input) = std::sync::mpsc::channel();
        // Both sends succeed: `input` is still held here.
        let _ = parts.send(Part::Rows(batches));
        let _ = parts.send(Part::End(checkpoints.to_vec()));
        drop(parts);
        let mut lanes = self.lanes(1)?;
        lanes[0].commit(batch_id, input, false, |_, _| {})
    }

    /// `count` lanes (at most [`MAX_LANES`]; one below migration 8) that commit the
    /// batches handed to them in batch-id order, starting at [`Writer::next_batch_id`].
    pub fn lanes(&mut self, count: usize) -> Result<Vec<Lane<'_>>> {
        let count = count.clamp(1, if self.lane_checkpoints { MAX_LANES } else { 1 });
        while self.conns.len() < count {
            self.conns.push(writer_connection(&self.db, &self.catalog)?);
        }
        self.turns.start();
        let (turns, lane_checkpoints) = (&self.turns, self.lane_checkpoints);
        Ok(self.conns[..count].iter_mut().map(|raw| Lane::new(raw, turns, lane_checkpoints)).collect())
    }
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_as_duckdb_prints_them() {
        assert_eq!(parse_size("366.2 MiB"), Some((366.2 * 1048576.0) as u64));
        assert_eq!(parse_size("384MB"), Some(384_000_000));
        assert_eq!(parse_size("512 bytes"), Some(512));
        assert_eq!(parse_size("1.5 GiB"), Some(1_610_612_736));
        assert_eq!(parse_size("lots"), None);
    }
}
