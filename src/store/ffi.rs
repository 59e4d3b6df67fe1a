//! The only `unsafe` in TokenTrail: DuckDB's C API for what duckdb-rs does not offer.
//!
//! duckdb-rs has no safe way to scan an Arrow C stream with DuckDB's own (parallel,
//! zero-copy) Arrow scan, which is what makes ingest as fast as `read_json`
//! (`shared/brief/duckdb-ingest.md`). So the database handle is opened here, the
//! ingest writer gets a raw connection with [`RawConnection::insert_arrow`], and every
//! other connection is a normal `duckdb::Connection` on the same database
//! ([`RawDatabase::connection`]).
//!
//! Contract: a [`RawDatabase`] outlives every connection made from it (callers hold
//! it in an `Arc`); a [`RawConnection`] is used by one thread at a time.

use arrow::ffi_stream::FFI_ArrowArrayStream;
use arrow::record_batch::RecordBatchReader;
use duckdb::ffi;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;
use std::ptr;

#[derive(Debug, thiserror::Error)]
pub enum FfiError {
    #[error("cannot open DuckDB database {path}: {message}")]
    Open { path: String, message: String },
    #[error("{message}")]
    Query { message: String },
    #[error("text given to DuckDB contains a NUL byte")]
    Nul(#[from] std::ffi::NulError),
}

/// An open DuckDB database (the file and its buffer pool), closed on drop.
pub struct RawDatabase {
    db: ffi::duckdb_database,
}

// The DuckDB database object is thread-safe; connections are not, and are not shared.
unsafe impl Send for RawDatabase {}
unsafe impl Sync for RawDatabase {}

impl RawDatabase {
    /// Opens (creating if needed) the database at `path` with the given settings.
    pub fn open(path: &Path, settings: &[(&str, String)]) -> Result<RawDatabase, FfiError> {
        let display = path.display().to_string();
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())?;
        let mut config: ffi::duckdb_config = ptr::null_mut();
        let mut db: ffi::duckdb_database = ptr::null_mut();
        let mut error: *mut c_char = ptr::null_mut();
        // SAFETY: every pointer is valid for the call; config and error are freed
        // before returning, on every path.
        unsafe {
            if ffi::duckdb_create_config(&mut config) != ffi::DuckDBSuccess {
                return Err(FfiError::Open { path: display, message: "cannot create config".into() });
            }
            for (name, value) in settings {
                let (n, v) = (CString::new(*name)?, CString::new(value.as_str())?);
                if ffi::duckdb_set_config(config, n.as_ptr(), v.as_ptr()) != ffi::DuckDBSuccess {
                    ffi::duckdb_destroy_config(&mut config);
                    let message = format!("invalid setting {name}={value}");
                    return Err(FfiError::Open { path: display, message });
                }
            }
            let state = ffi::duckdb_open_ext(c_path.as_ptr(), &mut db, config, &mut error);
            ffi::duckdb_destroy_config(&mut config);
            if state != ffi::DuckDBSuccess {
                let message = take_c_string(error);
                return Err(FfiError::Open { path: display, message });
            }
        }
        Ok(RawDatabase { db })
    }

    /// A duckdb-rs connection to this database. The database must outlive it.
    pub fn connection(&self) -> duckdb::Result<duckdb::Connection> {
        // SAFETY: `self.db` is a valid open database; duckdb-rs does not close a
        // database it was handed (close_on_drop is false for open_from_raw).
        unsafe { duckdb::Connection::open_from_raw(self.db) }
    }

    /// A raw connection for the ingest writer.
    pub fn raw_connection(&self) -> Result<RawConnection, FfiError> {
        let mut con: ffi::duckdb_connection = ptr::null_mut();
        // SAFETY: `self.db` is valid; on failure DuckDB leaves `con` null.
        if unsafe { ffi::duckdb_connect(self.db, &mut con) } != ffi::DuckDBSuccess {
            return Err(FfiError::Query { message: "cannot connect to the database".into() });
        }
        // Arrow scan views of all connections live in the one `scratch` catalog.
        static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(RawConnection { con, id, scans: 0, home: None })
    }
}

unsafe extern "C" {
    /// `src/store/cpp/purge.cpp`.
    fn tokentrail_purge_idle_blocks(database: ffi::duckdb_database, max_age_secs: u32) -> i64;
}

impl RawDatabase {
    /// Unloads every block of the buffer pool that nothing pins, and frees the pool's
    /// eviction-queue entries of blocks that are gone. Returns the bytes unloaded.
    ///
    /// Why: every buffer DuckDB unpins (a query's hash table, a scanned block) leaves an
    /// entry in one of eight eviction queues, and the entry keeps the block's bookkeeping
    /// allocated after the block is freed. DuckDB purges a queue only once it holds 32,768
    /// entries, so its heap grows by that bookkeeping, about 1 MiB a minute under live
    /// detection, for the first hour or more (BENCHMARKS.md, memory over time).
    ///
    /// Every unpinned block, whatever its age: DuckDB's purge takes an age, but the pool
    /// records when a block was unpinned only with `buffer_manager_track_eviction_timestamps`
    /// (off by default, no SQL setting), so every block counts as old. A persistent block
    /// unloaded is read again from the file (the OS's page cache) when next needed.
    pub fn unload_unpinned_blocks(&self) -> Option<u64> {
        // SAFETY: `self.db` is a valid open database; the shim catches every C++ exception.
        let unloaded = unsafe { tokentrail_purge_idle_blocks(self.db, 0) };
        u64::try_from(unloaded).ok()
    }
}

impl Drop for RawDatabase {
    fn drop(&mut self) {
        // SAFETY: the handle is valid and closed exactly once.
        unsafe { ffi::duckdb_close(&mut self.db) }
    }
}

/// A value bound to a `?` parameter of [`RawConnection::execute`].
#[derive(Debug, Clone)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Bool(bool),
    Text(&'a str),
}

/// A raw connection; see the module doc.
pub struct RawConnection {
    con: ffi::duckdb_connection,
    /// Unique in the process: names this connection's Arrow scan views.
    id: u64,
    scans: u64,
    /// The database's own catalog, quoted, once `scratch` is attached.
    home: Option<String>,
}

unsafe impl Send for RawConnection {}

impl RawConnection {
    /// Runs SQL that takes no parameters (schema changes, BEGIN/COMMIT).
    pub fn execute_batch(&mut self, sql: &str) -> Result<(), FfiError> {
        let sql = CString::new(sql)?;
        // SAFETY: `con` is valid; the result is destroyed on every path.
        unsafe {
            let mut result: ffi::duckdb_result = std::mem::zeroed();
            let state = ffi::duckdb_query(self.con, sql.as_ptr(), &mut result);
            let outcome = if state == ffi::DuckDBSuccess { Ok(()) } else { Err(result_error(&mut result)) };
            ffi::duckdb_destroy_result(&mut result);
            outcome
        }
    }

    /// Runs one statement with bound parameters; returns the rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, FfiError> {
        let sql = CString::new(sql)?;
        // SAFETY: `con` is valid; the statement and result are destroyed on every path;
        // bound text is copied by DuckDB during the bind call.
        unsafe {
            let mut stmt: ffi::duckdb_prepared_statement = ptr::null_mut();
            if ffi::duckdb_prepare(self.con, sql.as_ptr(), &mut stmt) != ffi::DuckDBSuccess {
                let message = c_str(ffi::duckdb_prepare_error(stmt));
                ffi::duckdb_destroy_prepare(&mut stmt);
                return Err(FfiError::Query { message });
            }
            for (i, param) in params.iter().enumerate() {
                let index = (i + 1) as ffi::idx_t;
                let state = match param {
                    Param::Null => ffi::duckdb_bind_null(stmt, index),
                    Param::Int(v) => ffi::duckdb_bind_int64(stmt, index, *v),
                    Param::Bool(v) => ffi::duckdb_bind_boolean(stmt, index, *v),
                    Param::Text(v) => {
                        ffi::duckdb_bind_varchar_length(stmt, index, v.as_ptr().cast(), v.len() as ffi::idx_t)
                    }
                };
                if state != ffi::DuckDBSuccess {
                    let message = format!("cannot bind parameter {index}: {}", c_str(ffi::duckdb_prepare_error(stmt)));
                    ffi::duckdb_destroy_prepare(&mut stmt);
                    return Err(FfiError::Query { message });
                }
            }
            let mut result: ffi::duckdb_result = std::mem::zeroed();
            let state = ffi::duckdb_execute_prepared(stmt, &mut result);
            let outcome = if state == ffi::DuckDBSuccess {
                Ok(ffi::duckdb_rows_changed(&mut result))
            } else {
                Err(result_error(&mut result))
            };
            ffi::duckdb_destroy_result(&mut result);
            ffi::duckdb_destroy_prepare(&mut stmt);
            outcome
        }
    }

    /// Attaches the in-memory catalog `scratch` that holds Arrow scan views;
    /// `home_catalog` is the database's own catalog (`SELECT current_database()`).
    pub fn attach_scratch(&mut self, home_catalog: &str) -> Result<(), FfiError> {
        self.execute_batch("ATTACH IF NOT EXISTS ':memory:' AS scratch")?;
        self.home = Some(format!("\"{}\"", home_catalog.replace('"', "\"\"")));
        Ok(())
    }

    /// Makes the batches of `reader` readable as the view `scratch.<name>` through
    /// DuckDB's Arrow scan, which pulls them as it reads (the reader may wait for
    /// batches still being made). The view lives in the in-memory catalog `scratch`: a
    /// view over process-local pointers cannot be written to the database file, and it
    /// must be made outside the transaction that reads it (a transaction writes to one
    /// database only). Each view can be read once; drop it with [`Self::drop_arrow_view`].
    pub fn create_arrow_view(&mut self, reader: Box<dyn RecordBatchReader + Send>) -> Result<ArrowView, FfiError> {
        let home =
            self.home.clone().ok_or_else(|| FfiError::Query { message: "scratch catalog not attached".into() })?;
        self.scans += 1;
        let name = format!("arrow_scan_{}_{}", self.id, self.scans);
        // Boxed: DuckDB keeps a pointer to the stream struct itself.
        let mut stream = SchemaKeepingStream::export(FFI_ArrowArrayStream::new(reader));
        let c_name = CString::new(name.as_str())?;
        // duckdb_arrow_scan makes the view in the connection's default catalog.
        self.execute_batch("USE scratch")?;
        // SAFETY: `stream` is owned by the returned ArrowView, which outlives the
        // view (it is dropped only after DROP VIEW, or with the connection).
        let state =
            unsafe { ffi::duckdb_arrow_scan(self.con, c_name.as_ptr(), (&mut *stream as *mut RawStream).cast()) };
        let restored = self.execute_batch(&format!("USE {home}"));
        if state != ffi::DuckDBSuccess {
            return Err(FfiError::Query { message: "DuckDB refused the Arrow stream".into() });
        }
        restored?;
        Ok(ArrowView { name: format!("scratch.{name}"), _stream: stream })
    }

    pub fn drop_arrow_view(&mut self, view: ArrowView) -> Result<(), FfiError> {
        self.execute_batch(&format!("DROP VIEW IF EXISTS {}", view.name))
    }
}

/// An Arrow stream readable from SQL by [`ArrowView::name`], once.
pub struct ArrowView {
    pub name: String,
    _stream: Box<RawStream>,
}

// The Arrow C stream and schema structs as the C Data Interface defines them: arrow-rs
// keeps their fields private, and the stream below must reach them.
#[repr(C)]
struct RawSchema {
    format: *const c_char,
    name: *const c_char,
    metadata: *const c_char,
    flags: i64,
    n_children: i64,
    children: *mut *mut RawSchema,
    dictionary: *mut RawSchema,
    release: Option<unsafe extern "C" fn(*mut RawSchema)>,
    private_data: *mut c_void,
}

#[repr(C)]
pub struct RawStream {
    get_schema: Option<unsafe extern "C" fn(*mut RawStream, *mut RawSchema) -> c_int>,
    get_next: Option<unsafe extern "C" fn(*mut RawStream, *mut c_void) -> c_int>,
    get_last_error: Option<unsafe extern "C" fn(*mut RawStream) -> *const c_char>,
    release: Option<unsafe extern "C" fn(*mut RawStream)>,
    private_data: *mut c_void,
}

// SAFETY: the stream's private data is a `SchemaKeepingStream`, whose parts are Send
// (arrow-rs's stream is; the kept schemas are owned heap memory no one else frees).
unsafe impl Send for RawStream {}

impl Drop for RawStream {
    fn drop(&mut self) {
        if let Some(release) = self.release {
            // SAFETY: a live stream made by `SchemaKeepingStream::export`, released once.
            unsafe { release(self) }
        }
    }
}

/// An Arrow stream whose schemas stay owned by it. `duckdb_arrow_scan` (DuckDB 1.4,
/// `capi/v1/arrow-c.cpp`) asks the stream for its schema and never releases it, which
/// leaked the whole schema export on every commit (tens of KB: 7 MB over 144 commits in
/// tests/memory.rs). So every schema handed out here is a copy whose
/// release does nothing, and the stream frees the originals when it is released itself
/// (after DROP VIEW). A DuckDB that does release its schemas changes nothing.
struct SchemaKeepingStream {
    inner: FFI_ArrowArrayStream,
    schemas: std::sync::Mutex<Vec<RawSchema>>,
}

impl SchemaKeepingStream {
    fn export(inner: FFI_ArrowArrayStream) -> Box<RawStream> {
        let keeper = Box::new(SchemaKeepingStream { inner, schemas: std::sync::Mutex::new(Vec::new()) });
        Box::new(RawStream {
            get_schema: Some(Self::get_schema),
            get_next: Some(Self::get_next),
            get_last_error: Some(Self::get_last_error),
            release: Some(Self::release),
            private_data: Box::into_raw(keeper).cast(),
        })
    }

    /// # Safety
    /// `stream` is a live stream made by [`Self::export`].
    unsafe fn inner<'a>(stream: *mut RawStream) -> (*mut RawStream, &'a SchemaKeepingStream) {
        // SAFETY: the private data is the boxed keeper until `release`.
        let keeper = unsafe { &mut *(*stream).private_data.cast::<SchemaKeepingStream>() };
        let inner = (&mut keeper.inner as *mut FFI_ArrowArrayStream).cast::<RawStream>();
        (inner, keeper)
    }

    unsafe extern "C" fn get_schema(stream: *mut RawStream, out: *mut RawSchema) -> c_int {
        // SAFETY: DuckDB calls this on the stream it was given, with room for a schema.
        unsafe {
            let (inner, keeper) = Self::inner(stream);
            let Some(get_schema) = (*inner).get_schema else { return EINVAL };
            let status = get_schema(inner, out);
            if status != 0 {
                return status;
            }
            let mut kept = keeper.schemas.lock().unwrap_or_else(|p| p.into_inner());
            kept.push(ptr::read(out));
            (*out).release = Some(Self::release_nothing);
            0
        }
    }

    unsafe extern "C" fn release_nothing(schema: *mut RawSchema) {
        // SAFETY: the caller's schema; releasing it marks it released, as the interface asks.
        unsafe { (*schema).release = None }
    }

    unsafe extern "C" fn get_next(stream: *mut RawStream, out: *mut c_void) -> c_int {
        // SAFETY: forwarded to arrow-rs's stream, which this one wraps.
        unsafe {
            let (inner, _) = Self::inner(stream);
            match (*inner).get_next {
                Some(get_next) => get_next(inner, out),
                None => EINVAL,
            }
        }
    }

    unsafe extern "C" fn get_last_error(stream: *mut RawStream) -> *const c_char {
        // SAFETY: as above.
        unsafe {
            let (inner, _) = Self::inner(stream);
            match (*inner).get_last_error {
                Some(get_last_error) => get_last_error(inner),
                None => ptr::null(),
            }
        }
    }

    unsafe extern "C" fn release(stream: *mut RawStream) {
        // SAFETY: called once (the release field is cleared), with the keeper still boxed.
        unsafe {
            let keeper = Box::from_raw((*stream).private_data.cast::<SchemaKeepingStream>());
            for mut schema in keeper.schemas.into_inner().unwrap_or_else(|p| p.into_inner()) {
                if let Some(release) = schema.release {
                    release(&mut schema);
                }
            }
            drop(keeper.inner);
            (*stream).release = None;
            (*stream).private_data = ptr::null_mut();
        }
    }
}

/// EINVAL, what the Arrow C stream interface returns for a call it cannot make.
const EINVAL: c_int = 22;

impl Drop for RawConnection {
    fn drop(&mut self) {
        // SAFETY: the handle is valid and disconnected exactly once.
        unsafe { ffi::duckdb_disconnect(&mut self.con) }
    }
}

/// # Safety
/// `result` must be a result DuckDB filled in.
unsafe fn result_error(result: &mut ffi::duckdb_result) -> FfiError {
    FfiError::Query { message: unsafe { c_str(ffi::duckdb_result_error(result)) } }
}

/// # Safety
/// `text` must be null or a NUL-terminated string.
unsafe fn c_str(text: *const c_char) -> String {
    if text.is_null() {
        return "unknown DuckDB error".into();
    }
    unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
}

/// # Safety
/// `text` must be null or a string DuckDB allocated for the caller to free.
unsafe fn take_c_string(text: *mut c_char) -> String {
    let message = unsafe { c_str(text) };
    if !text.is_null() {
        unsafe { ffi::duckdb_free(text.cast()) };
    }
    message
}
