//! Read-only SQL for Responders.
//!
//! Layers, each enough on its own for the common case, together for the rest:
//! 1. DuckDB's own parser (`json_serialize_sql`) must see exactly one SELECT (WITH
//!    and set operations included; EXPLAIN of one is allowed): no INSERT, COPY,
//!    ATTACH, SET, PRAGMA, INSTALL, ...
//! 2. In its syntax tree, every table is one of ours (or a CTE of the query) and every
//!    table function is on a short allow-list: no `read_csv`, `read_text`, `glob`,
//!    `query`, file paths as tables, other catalogs.
//! 3. It runs on a connection of its own inside `BEGIN TRANSACTION READ ONLY`.
//! 4. `serve` and `demo` disable DuckDB's external access and lock its configuration
//!    once started ([`crate::store::Store::lock_down`]).
//!
//! Limits: a statement timeout (the query is interrupted), a row cap and a cap on the
//! bytes of the result; DuckDB's memory limit is per database, set at start.

use super::error::{ApiError, ApiResult, Json};
use super::rows::{RowCount, RowEvent, each_row, objects};
use super::{AuditNote, Granted};
use crate::server::AppState;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use duckdb::types::Value;
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

use super::rows::Object;

pub const TIMEOUT: Duration = Duration::from_secs(15);
pub const MAX_ROWS: usize = 10_000;
pub const MAX_RESULT_BYTES: usize = 32 * 1024 * 1024;
pub const MAX_SQL_BYTES: usize = 100_000;

/// Table functions a console query may use: they make rows from their arguments and
/// read nothing else.
const TABLE_FUNCTIONS: [&str; 3] = ["range", "generate_series", "unnest"];
/// Scalar functions that reach outside the query or change state.
const DENIED_FUNCTIONS: [&str; 6] = ["getenv", "nextval", "setval", "current_setting", "read_text", "read_blob"];

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
    pub elapsed_ms: f64,
}

/// Runs one read-only query.
#[utoipa::path(post, path = "/api/sql", tag = "sql", request_body = SqlRequest,
    security(("entra" = ["TokenTrail.Responder"])),
    responses((status = 200, body = SqlResult), (status = 400, body = super::error::ErrorBody),
              (status = 408, body = super::error::ErrorBody)))]
pub async fn run(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Extension(note): Extension<AuditNote>,
    Json(request): Json<SqlRequest>,
) -> ApiResult<axum::Json<SqlResult>> {
    note.add("sql", request.sql.clone());
    let limit = match request.limit {
        None => 1000,
        Some(n) if (1..=MAX_ROWS).contains(&n) => n,
        Some(n) => return Err(ApiError::bad_request(format!("limit={n} is out of range; use 1 to {MAX_ROWS}"))),
    };
    // A client that goes away (closed tab, Cancel in the console) drops this future,
    // and with it the guard, which stops the query.
    let cancelled = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancelled.clone());
    let result = super::db(&state, move |store| execute_with(&store, &request.sql, &[], limit, &cancelled)).await?;
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

/// Checks `sql` (see the module documentation) and runs it.
pub fn execute(store: &crate::store::Store, sql: &str, limit: usize) -> ApiResult<SqlResult> {
    execute_with(store, sql, &[], limit, &AtomicBool::new(false))
}

/// [`execute`] with named parameters (`$from`) and a flag that, once set (the client
/// went away), interrupts the query.
pub fn execute_with(
    store: &crate::store::Store,
    sql: &str,
    params: &[(&str, Value)],
    limit: usize,
    cancelled: &AtomicBool,
) -> ApiResult<SqlResult> {
    let conn = store.connection()?;
    check(&conn, sql)?;
    let started = Instant::now();
    conn.execute_batch("BEGIN TRANSACTION READ ONLY")?;
    let interrupt = conn.interrupt_handle();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let timed_out = AtomicBool::new(false);
    let outcome = std::thread::scope(|scope| {
        // Stops the query at the timeout, or as soon as the client has gone.
        let (timed_out, interrupt) = (&timed_out, &interrupt);
        scope.spawn(move || {
            let deadline = started + TIMEOUT;
            loop {
                match done_rx.recv_timeout(Duration::from_millis(100)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let late = Instant::now() >= deadline;
                if late || cancelled.load(Ordering::Relaxed) {
                    timed_out.store(late, Ordering::Relaxed);
                    interrupt.interrupt();
                    return;
                }
            }
        });
        let outcome = run_rows(&conn, sql, params, limit);
        let _ = done_tx.send(());
        outcome
    });
    let _ = conn.execute_batch("ROLLBACK");
    let elapsed = started.elapsed();
    match outcome {
        Ok((columns, rows, truncated)) => {
            Ok(SqlResult { columns, rows, truncated, elapsed_ms: elapsed.as_secs_f64() * 1000.0 })
        }
        Err(error) if timed_out.load(Ordering::Relaxed) => {
            tracing::info!(error = %error, "SQL console query interrupted");
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the query ran longer than {} s and was stopped; narrow it (a time range, a LIMIT)",
                    TIMEOUT.as_secs()
                ),
            ))
        }
        // DuckDB's message names what is wrong (a column, a type, a function).
        Err(error) => Err(ApiError::new(StatusCode::BAD_REQUEST, "sql_error", format!("{error:#}"))),
    }
}

type Rows = (Vec<String>, Vec<Vec<JsonValue>>, bool);

/// The columns, up to `limit` rows (and at most [`MAX_RESULT_BYTES`]), and whether more were left.
fn run_rows(conn: &duckdb::Connection, sql: &str, params: &[(&str, Value)], limit: usize) -> anyhow::Result<Rows> {
    let mut columns = Vec::new();
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut truncated = false;
    let outcome = (|| -> anyhow::Result<()> {
        let mut stmt = conn.prepare(sql)?;
        let values = crate::rules::script::bind(&stmt, params)?;
        each_row(&mut stmt, &values, &mut |event| match event {
            RowEvent::Columns(names) => {
                columns = names;
                true
            }
            RowEvent::Row(values) => {
                bytes += values.iter().map(|v| v.to_string().len()).sum::<usize>();
                if out.len() == limit || bytes > MAX_RESULT_BYTES {
                    truncated = true;
                    return false;
                }
                out.push(values);
                true
            }
        })
    })();
    outcome.map(|()| (columns, out, truncated))
}

/// Refuses anything but one SELECT over our own tables (see the module documentation).
pub fn check(conn: &duckdb::Connection, sql: &str) -> ApiResult<()> {
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
    let statements = tree["statements"].as_array().map_or(0, |s| s.len());
    if statements != 1 {
        return Err(refused(format!("send exactly one statement (this has {statements})")));
    }
    let known: HashSet<String> = conn
        .prepare(
            "SELECT lower(table_name) FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main'
             UNION SELECT lower(view_name) FROM duckdb_views() WHERE database_name = current_database() AND schema_name = 'main' AND NOT internal",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<duckdb::Result<_>>()?;
    let mut ctes = HashSet::new();
    collect_ctes(&tree, &mut ctes);
    let mut problems = Vec::new();
    walk(&tree, &mut |node| {
        match node["type"].as_str() {
            Some("BASE_TABLE") => {
                let name = node["table_name"].as_str().unwrap_or_default().to_ascii_lowercase();
                let catalog = node["catalog_name"].as_str().unwrap_or_default();
                let schema = node["schema_name"].as_str().unwrap_or_default();
                let local = catalog.is_empty() && (schema.is_empty() || schema.eq_ignore_ascii_case("main"));
                if !local || !(known.contains(&name) || (schema.is_empty() && ctes.contains(&name))) {
                    problems.push(format!("{name:?} is not a TokenTrail table or view"));
                }
            }
            Some("TABLE_FUNCTION") => {
                let name = node["function"]["function_name"].as_str().unwrap_or_default().to_ascii_lowercase();
                if !TABLE_FUNCTIONS.contains(&name.as_str()) {
                    problems.push(format!(
                        "table function {name} is not allowed (allowed: {})",
                        TABLE_FUNCTIONS.join(", ")
                    ));
                }
            }
            _ => {}
        }
        if node["class"].as_str() == Some("FUNCTION") {
            let name = node["function_name"].as_str().unwrap_or_default().to_ascii_lowercase();
            if DENIED_FUNCTIONS.contains(&name.as_str()) {
                problems.push(format!("function {name} is not allowed in the SQL console"));
            }
        }
    });
    if problems.is_empty() {
        Ok(())
    } else {
        problems.dedup();
        Err(refused(problems.join("; ")))
    }
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

fn collect_ctes(node: &JsonValue, out: &mut HashSet<String>) {
    walk(node, &mut |n| {
        if let Some(map) = n["cte_map"]["map"].as_array() {
            for entry in map {
                if let Some(key) = entry["key"].as_str() {
                    out.insert(key.to_ascii_lowercase());
                }
            }
        }
    });
}

fn walk(node: &JsonValue, visit: &mut dyn FnMut(&JsonValue)) {
    match node {
        JsonValue::Object(map) => {
            visit(node);
            for value in map.values() {
                walk(value, visit);
            }
        }
        JsonValue::Array(items) => {
            for item in items {
                walk(item, visit);
            }
        }
        _ => {}
    }
}

/// The tables and views a console user can query, with their columns.
#[utoipa::path(get, path = "/api/sql/schema", tag = "sql",
    security(("entra" = ["TokenTrail.Responder"])),
    responses((status = 200, body = Vec<Object>)))]
pub async fn schema(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
) -> ApiResult<axum::Json<Vec<Object>>> {
    super::list(
        &state,
        &rows,
        "SELECT c.table_name, any_value(t.kind) AS kind, any_value(t.comment) AS comment,
                    list({'name': c.column_name, 'type': c.data_type} ORDER BY c.column_index) AS columns
             FROM duckdb_columns() c
             JOIN (SELECT table_name, 'table' AS kind, comment FROM duckdb_tables() WHERE schema_name = 'main'
                   UNION ALL SELECT view_name, 'view', comment FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal) t
               USING (table_name)
             WHERE c.schema_name = 'main' AND c.database_name = current_database()
             GROUP BY c.table_name ORDER BY c.table_name",
        Vec::new(),
    )
    .await
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
    responses((status = 201, body = Object), (status = 400, body = super::error::ErrorBody)))]
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
        check(&conn, &request.sql)?;
        let caller = &granted.caller;
        let id: i64 = conn.query_row(
            "INSERT INTO saved_queries (name, sql, created_at, created_by_oid, created_by_tid, created_by_name)
             VALUES (?, ?, get_current_timestamp(), ?, ?, ?) RETURNING id",
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
