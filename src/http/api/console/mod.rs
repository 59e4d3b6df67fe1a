//! Read-only SQL for Responders (the console, saved queries) and the dashboards' panels.
//!
//! Layers, each enough on its own for the common case, together for the rest:
//! 1. [`guard`]: DuckDB's own parser (`json_serialize_sql`) must see exactly one query,
//!    and every node of its tree must be one known to read only: query nodes only (no
//!    COPY in a CTE), tables granted to the caller's roles ([`grants`], CTE names resolved
//!    per scope), built-in functions minus those that reach outside, and sizes a query
//!    cannot blow up.
//! 2. It runs on a connection of its own inside `BEGIN TRANSACTION READ ONLY`.
//! 3. `serve` and `demo` disable DuckDB's external access, bound its temp directory and
//!    lock its configuration once started ([`crate::store::Store::lock_down`]).
//! 4. While it runs, a watcher stops it (DuckDB's interrupt, seen between chunks of
//!    2,048 rows) at the timeout, when the client has gone, or when the process's
//!    resident memory passes DuckDB's memory limit plus [`MEMORY_HEADROOM`] (values
//!    built by a query are outside DuckDB's limit).
//! 5. Rows stream from DuckDB as Arrow batches and stop at the row cap or
//!    [`MAX_RESULT_BYTES`]; a value longer than [`MAX_VALUE_BYTES`] is cut.
//!
//! The console's handler writes its access-log row before the query runs, so a query
//! that brings the process down still left its trace.

pub mod grants;
pub mod guard;

use super::results::{BatchEvent, CellLimit, RowCount, cell, each_batch, objects};
use super::{AuditNote, Granted};
use crate::auth::Role;
use crate::http::error::{ApiError, ApiResult, Json};
use crate::http::state::AppState;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use duckdb::types::Value;
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

use super::results::Object;

pub const TIMEOUT: Duration = Duration::from_secs(15);
pub const MAX_ROWS: usize = 10_000;
pub const MAX_RESULT_BYTES: usize = 32 * 1024 * 1024;
/// One value's bytes in an answer; longer text is cut and says so.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_SQL_BYTES: usize = 32 * 1024;
/// How far past DuckDB's memory limit the process may grow while a console query runs.
pub const MEMORY_HEADROOM: u64 = 192 * 1024 * 1024;
/// How much a console query may grow the process when it is past that already.
pub const MEMORY_GROWTH: u64 = 64 * 1024 * 1024;
/// How often the watcher looks at the clock, the client and the memory.
const WATCH_EVERY: Duration = Duration::from_millis(10);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One SELECT (or WITH …, or EXPLAIN SELECT …) over TokenTrail's tables and views.
    pub sql: String,
    /// Rows to return, 1 to 10,000 (default 1,000).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SqlResult {
    pub columns: Vec<String>,
    /// Rows as arrays, in column order.
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<JsonValue>>,
    /// True when the query had more rows than `limit` (or than fit in 32 MiB).
    pub truncated: bool,
    /// Values longer than 64 KiB, cut (they end with "… [cut: N bytes in all]").
    #[serde(default)]
    pub cut_values: usize,
    pub elapsed_ms: f64,
}

/// Runs one read-only query.
#[utoipa::path(post, path = "/api/sql", tag = "sql", request_body = SqlRequest,
    security(("entra" = ["TokenTrail.Responder"])),
    responses((status = 200, body = SqlResult), (status = 400, body = crate::http::error::ErrorBody),
              (status = 504, description = "`query_timeout`: the query ran past the timeout and was stopped",
               body = crate::http::error::ErrorBody)))]
pub async fn run(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Extension(note): Extension<AuditNote>,
    Extension(granted): Extension<Granted>,
    Json(request): Json<SqlRequest>,
) -> ApiResult<axum::Json<SqlResult>> {
    note.add("sql", request.sql.clone());
    let limit = match request.limit {
        None => 1000,
        Some(n) if (1..=MAX_ROWS).contains(&n) => n,
        Some(n) => return Err(ApiError::bad_request(format!("limit={n} is out of range; use 1 to {MAX_ROWS}"))),
    };
    // The trace first: a query that takes the process down must still have its row.
    let audit = state.audit.clone();
    let started = note.clone();
    tokio::task::spawn_blocking(move || started.record_start(&audit))
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("writing the access log: {e}")))?;
    // A client that goes away (closed tab, Cancel in the console) drops this future,
    // and with it the guard, which stops the query.
    let cancelled = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancelled.clone());
    let roles = granted.caller.roles.clone();
    let result =
        super::db(&state, move |store| execute_with(&store, &request.sql, &[], &roles, limit, &cancelled)).await?;
    rows.add(result.rows.len() as i64);
    Ok(axum::Json(result))
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn refused(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "sql_refused", message)
}

/// Checks `sql` (see the module documentation) for a caller with `roles` and runs it.
pub fn execute(store: &crate::store::Store, sql: &str, roles: &[Role], limit: usize) -> ApiResult<SqlResult> {
    execute_with(store, sql, &[], roles, limit, &AtomicBool::new(false))
}

/// Why the watcher stopped a query.
const RUNNING: u8 = 0;
const TIMED_OUT: u8 = 1;
const CANCELLED: u8 = 2;
const OUT_OF_MEMORY: u8 = 3;

/// [`execute`] with named parameters (`$from`) and a flag that, once set (the client
/// went away), interrupts the query.
pub fn execute_with(
    store: &crate::store::Store,
    sql: &str,
    params: &[(&str, Value)],
    roles: &[Role],
    limit: usize,
    cancelled: &AtomicBool,
) -> ApiResult<SqlResult> {
    let conn = store.connection()?;
    check(&conn, sql, roles)?;
    let started = Instant::now();
    let ceiling = memory_ceiling(store);
    conn.execute_batch("BEGIN TRANSACTION READ ONLY")?;
    let interrupt = conn.interrupt_handle();
    let stopped = AtomicU8::new(RUNNING);
    let outcome = std::thread::scope(|scope| {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (stopped, interrupt) = (&stopped, &interrupt);
        scope.spawn(move || {
            let deadline = started + TIMEOUT;
            loop {
                match done_rx.recv_timeout(WATCH_EVERY) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    // Done, or the query's side unwound (its sender dropped).
                    _ => return,
                }
                let reason = if Instant::now() >= deadline {
                    TIMED_OUT
                } else if cancelled.load(Ordering::Relaxed) {
                    CANCELLED
                } else if ceiling.is_some_and(|c| crate::sys::resident_bytes().is_some_and(|rss| rss > c)) {
                    OUT_OF_MEMORY
                } else {
                    continue;
                };
                stopped.store(reason, Ordering::Relaxed);
                interrupt.interrupt();
                return;
            }
        });
        // Dropped when this closure returns or unwinds, which ends the watcher.
        let _done = done_tx;
        run_rows(&conn, sql, params, limit)
    });
    let _ = conn.execute_batch("ROLLBACK");
    let elapsed = started.elapsed();
    match (outcome, stopped.load(Ordering::Relaxed)) {
        (Ok((columns, rows, truncated, cut_values)), _) => {
            Ok(SqlResult { columns, rows, truncated, cut_values, elapsed_ms: elapsed.as_secs_f64() * 1000.0 })
        }
        (Err(error), TIMED_OUT) => {
            tracing::info!(error = %error, "SQL console query interrupted at the timeout");
            // 504, not 408: browsers silently send a request answered 408 again, which
            // would run the query again (and again) while the page says "Running…".
            Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "query_timeout",
                format!(
                    "the query ran longer than {} s and was stopped; narrow it (a time range, a LIMIT)",
                    TIMEOUT.as_secs()
                ),
            ))
        }
        (Err(_), OUT_OF_MEMORY) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "sql_memory",
            format!(
                "the query was stopped: the service grew past {} MiB while it ran; narrow it (a time range, \
                 fewer columns, no large values)",
                ceiling.unwrap_or_default() / (1024 * 1024)
            ),
        )),
        (Err(error), _) if format!("{error:#}").contains("Out of Memory") => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "sql_memory",
            format!("the query needs more memory than the service gives DuckDB; narrow it ({error:#})"),
        )),
        // DuckDB's message names what is wrong (a column, a type, a function).
        (Err(error), _) => {
            let message = format!("{error:#}");
            Err(ApiError::new(StatusCode::BAD_REQUEST, "sql_error", without_icu(&message).unwrap_or(message)))
        }
    }
}

/// DuckDB here is built without ICU, so `now() - INTERVAL 1 DAY` (any TIMESTAMPTZ with an
/// INTERVAL) fails with a binder error listing every candidate of `-`, and `date_trunc` on
/// one tries to load the extension: for those, the first line and the form that works.
fn without_icu(message: &str) -> Option<String> {
    let tz_arithmetic = message.contains("(TIMESTAMP WITH TIME ZONE, INTERVAL)")
        || message.contains("(INTERVAL, TIMESTAMP WITH TIME ZONE)");
    let icu = message.contains("extension 'icu") || message.contains("Extension \"icu\"");
    if !tz_arithmetic && !icu {
        return None;
    }
    let first = message.lines().next().unwrap_or_default().trim_end_matches(':').trim();
    Some(format!(
        "{first}. This DuckDB has no time-zone support (ICU), so now(), current_timestamp and the time \
         columns (TIMESTAMP WITH TIME ZONE) take no INTERVAL arithmetic or date_trunc directly. \
         Use utc_add(now(), - INTERVAL 1 DAY) or now()::TIMESTAMP - INTERVAL 1 DAY (both UTC), \
         and utc_hour(time) or date_trunc('hour', time::TIMESTAMP) for an hour"
    ))
}

/// The resident memory at which a console query is stopped: DuckDB's limit plus
/// [`MEMORY_HEADROOM`], or, when the process is past that already (a backlog being
/// ingested), [`MEMORY_GROWTH`] more than now.
fn memory_ceiling(store: &crate::store::Store) -> Option<u64> {
    let limit = store.memory_limit()?;
    let now = crate::sys::resident_bytes()?;
    Some((limit + MEMORY_HEADROOM).max(now + MEMORY_GROWTH))
}

type Rows = (Vec<String>, Vec<Vec<JsonValue>>, bool, usize);

/// The columns, up to `limit` rows (and at most [`MAX_RESULT_BYTES`]), whether more
/// were left, and how many values were cut.
fn run_rows(conn: &duckdb::Connection, sql: &str, params: &[(&str, Value)], limit: usize) -> anyhow::Result<Rows> {
    let mut columns = Vec::new();
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut truncated = false;
    let mut cells = CellLimit { max_bytes: MAX_VALUE_BYTES, cut: 0 };
    let mut stmt = conn.prepare(sql)?;
    let values = crate::rules::script::bind(&stmt, params)?;
    each_batch(&mut stmt, &values, &mut |event| match event {
        BatchEvent::Columns(names) => {
            columns = names;
            true
        }
        BatchEvent::Batch(batch) => {
            for row in 0..batch.num_rows() {
                if out.len() == limit || bytes > MAX_RESULT_BYTES {
                    truncated = true;
                    return false;
                }
                let values: Vec<JsonValue> =
                    batch.columns().iter().map(|c| cell(c.as_ref(), row, &mut cells)).collect();
                bytes += values.iter().map(|v| v.to_string().len()).sum::<usize>();
                out.push(values);
            }
            true
        }
    })?;
    Ok((columns, out, truncated, cells.cut))
}

/// Refuses anything but one read-only query over tables `roles` may read (see
/// [`guard`]).
pub fn check(conn: &duckdb::Connection, sql: &str, roles: &[Role]) -> ApiResult<()> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(refused(format!("the statement is longer than {MAX_SQL_BYTES} bytes")));
    }
    let body = strip_explain(sql);
    let tree: String = conn.query_row("SELECT json_serialize_sql(?::VARCHAR)", [body], |r| r.get(0))?;
    let tree: JsonValue = serde_json::from_str(&tree).map_err(|e| ApiError::internal(e.into()))?;
    if tree["error"].as_bool() == Some(true) {
        let message = tree["error_message"].as_str().unwrap_or("the statement could not be parsed");
        if message.contains("Only SELECT") {
            return Err(refused(
                "only SELECT, WITH … SELECT and EXPLAIN SELECT are allowed here: the SQL console is read-only",
            ));
        }
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "sql_error", message.to_string()));
    }
    let statements = tree["statements"].as_array().map_or(&[][..], |s| s.as_slice());
    if statements.len() != 1 {
        return Err(refused(format!("send exactly one statement (this has {})", statements.len())));
    }
    let catalog = guard::Catalog { tables: grants::tables_of(roles), functions: functions(conn)? };
    let problems = guard::check(&statements[0], &catalog);
    if problems.is_empty() { Ok(()) } else { Err(refused(problems.join("; "))) }
}

/// DuckDB's built-in scalar, aggregate and window functions and macros, and the macros
/// our migrations made (lower case).
fn functions(conn: &duckdb::Connection) -> ApiResult<std::collections::HashSet<String>> {
    let mut stmt = conn.prepare(include_str!("sql/functions.sql"))?;
    let names = stmt.query_map([], |r| r.get(0))?.collect::<duckdb::Result<_>>()?;
    Ok(names)
}

/// The statement after a leading `EXPLAIN` or `EXPLAIN ANALYZE`.
fn strip_explain(sql: &str) -> &str {
    let trimmed = sql.trim_start();
    let mut rest = trimmed;
    for word in ["explain", "analyze"] {
        let head = rest.get(..word.len()).unwrap_or_default();
        let next = rest[head.len()..].chars().next();
        if head.eq_ignore_ascii_case(word) && next.is_some_and(char::is_whitespace) {
            rest = rest[word.len()..].trim_start();
        } else {
            break;
        }
    }
    rest
}

/// The tables and views the caller's roles may query, with their columns.
#[utoipa::path(get, path = "/api/sql/schema", tag = "sql",
    security(("entra" = ["TokenTrail.Responder"])),
    responses((status = 200, body = Vec<Object>)))]
pub async fn schema(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Extension(granted): Extension<Granted>,
) -> ApiResult<axum::Json<Vec<Object>>> {
    let readable = grants::tables_of(&granted.caller.roles);
    let mut found =
        super::db(&state, |store| objects(&*store.connection()?, include_str!("sql/schema.sql"), &[])).await?;
    found.retain(|t| t.get("table_name").and_then(JsonValue::as_str).is_some_and(|name| readable.contains(name)));
    rows.add(found.len() as i64);
    Ok(axum::Json(found))
}

#[utoipa::path(get, path = "/api/sql/saved", tag = "sql",
    security(("entra" = ["TokenTrail.Responder"])),
    responses((status = 200, body = Vec<Object>)))]
pub async fn saved_list(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
) -> ApiResult<axum::Json<Vec<Object>>> {
    super::list(
        &state,
        &rows,
        "SELECT id, name, sql, created_at, created_by_name, created_by_oid FROM saved_queries ORDER BY name, id",
        Vec::new(),
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveRequest {
    /// 1 to 200 characters.
    pub name: String,
    /// Checked like a query the console runs.
    pub sql: String,
}

/// Saves a query for everyone with the Responder role.
#[utoipa::path(post, path = "/api/sql/saved", tag = "sql", request_body = SaveRequest,
    security(("entra" = ["TokenTrail.Responder"])),
    responses((status = 201, body = Object), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn saved_create(
    State(state): State<AppState>,
    Extension(granted): Extension<Granted>,
    Extension(note): Extension<AuditNote>,
    Json(request): Json<SaveRequest>,
) -> ApiResult<(StatusCode, axum::Json<Object>)> {
    let name = request.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad_request("name must be 1 to 200 characters"));
    }
    note.add("name", name.clone());
    note.add("sql", request.sql.clone());
    let saved = super::db(&state, move |store| -> ApiResult<Object> {
        let conn = store.connection()?;
        check(&conn, &request.sql, &granted.caller.roles)?;
        let caller = &granted.caller;
        let id: i64 = conn.query_row(
            include_str!("sql/saved_query_insert.sql"),
            duckdb::params![name, request.sql, caller.oid, caller.tid, caller.name],
            |r| r.get(0),
        )?;
        let mut found = objects(
            &conn,
            "SELECT id, name, sql, created_at, created_by_name, created_by_oid FROM saved_queries WHERE id = ?",
            &[Value::BigInt(id)],
        )?;
        Ok(found.pop().unwrap_or_default())
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(saved)))
}
