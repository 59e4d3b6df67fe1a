//! The HTTP side: a status page, `/healthz`, `/api/status` and `/metrics`.
//!
//! DuckDB calls are synchronous, so every handler runs its queries on a blocking
//! thread, never on the async executor.

use crate::metrics::Metrics;
use crate::source::eventhubs::{HubsStatus, PartitionStatus};
use crate::store::Store;
use anyhow::Result;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    /// Shown on every page, e.g. "demo: generated data".
    pub mode: &'static str,
    /// The Event Hubs source's partitions, when it runs.
    pub hubs: Option<Arc<HubsStatus>>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(store: Arc<Store>, mode: &'static str) -> AppState {
        AppState { store, mode, hubs: None, metrics: Arc::default() }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/status", get(status_json))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The one place errors become HTTP responses: users see a safe message, the log
/// gets the whole chain.
pub struct AppError(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for AppError {
    fn from(error: E) -> Self {
        AppError(error.into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        tracing::error!(error = format!("{:#}", self.0), "request failed");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error; the server log has the details").into_response()
    }
}

#[derive(Debug, Serialize)]
pub struct TableStatus {
    pub table: String,
    pub rows: i64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SourceStatus {
    pub source_id: String,
    pub kind: String,
    pub complete: bool,
    pub line: Option<i64>,
    pub sequence_number: Option<i64>,
    pub event_time: Option<String>,
    pub updated_at: String,
    pub batches: Option<i64>,
    pub cosmos_rows: Option<i64>,
    pub signin_rows: Option<i64>,
    pub raw_rows: Option<i64>,
    pub quarantined_rows: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub mode: &'static str,
    pub tables: Vec<TableStatus>,
    pub sources: Vec<SourceStatus>,
    /// Event Hubs partitions with their lag (last enqueued minus committed).
    pub eventhubs: Vec<PartitionStatus>,
}

fn read_status(store: &Store, mode: &'static str) -> Result<Status> {
    let conn = store.connection()?;
    let tables = conn
        .prepare(include_str!("sql/status_tables.sql"))?
        .query_map([], |r| {
            Ok(TableStatus { table: r.get(0)?, rows: r.get(1)?, first_time: r.get(2)?, last_time: r.get(3)? })
        })?
        .collect::<duckdb::Result<_>>()?;
    let sources = conn
        .prepare(include_str!("sql/status_sources.sql"))?
        .query_map([], |r| {
            Ok(SourceStatus {
                source_id: r.get(0)?,
                kind: r.get(1)?,
                complete: r.get(2)?,
                line: r.get(3)?,
                sequence_number: r.get(4)?,
                event_time: r.get(5)?,
                updated_at: r.get(6)?,
                batches: r.get(7)?,
                cosmos_rows: r.get(8)?,
                signin_rows: r.get(9)?,
                raw_rows: r.get(10)?,
                quarantined_rows: r.get(11)?,
            })
        })?
        .collect::<duckdb::Result<_>>()?;
    Ok(Status { mode, tables, sources, eventhubs: Vec::new() })
}

async fn status(state: AppState) -> Result<Status, AppError> {
    let hubs = state.hubs.as_ref().map(|h| h.snapshot()).unwrap_or_default();
    let mut status = tokio::task::spawn_blocking(move || read_status(&state.store, state.mode)).await??;
    status.eventhubs = hubs;
    Ok(status)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
}

async fn status_json(State(state): State<AppState>) -> Result<Json<Status>, AppError> {
    Ok(Json(status(state).await?))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn status_page(State(state): State<AppState>) -> Result<Html<String>, AppError> {
    let status = status(state).await?;
    let opt = |v: &Option<String>| escape(v.as_deref().unwrap_or("–"));
    let num = |v: Option<i64>| v.map_or("–".to_string(), |n| n.to_string());
    let mut tables = String::new();
    for t in &status.tables {
        tables += &format!(
            "<tr><td>{}</td><td class=n>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&t.table),
            t.rows,
            opt(&t.first_time),
            opt(&t.last_time)
        );
    }
    let mut sources = String::new();
    for s in &status.sources {
        sources += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            escape(&s.source_id),
            escape(&s.kind),
            opt(&s.event_time),
            escape(&s.updated_at),
            num(s.cosmos_rows),
            num(s.signin_rows),
            num(s.raw_rows),
            num(s.quarantined_rows),
        );
    }
    let mut partitions = String::new();
    for p in &status.eventhubs {
        partitions += &format!(
            "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>",
            escape(&p.hub),
            escape(&p.partition),
            num(p.committed_sequence),
            num(p.last_enqueued_sequence),
            num(p.lag),
            p.receive_errors,
            opt(&p.last_error),
        );
    }
    let partitions = if partitions.is_empty() {
        String::new()
    } else {
        format!(
            "<h2>Event Hubs partitions</h2><table><tr><th>hub</th><th>partition</th><th>committed</th><th>last enqueued</th><th>lag</th><th>receive errors</th><th>last error</th></tr>{partitions}</table>"
        )
    };
    Ok(Html(format!(
        r#"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width">
<meta http-equiv=refresh content=10><title>TokenTrail status</title>
<style>body{{font:14px system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse;margin-bottom:2rem}}
td,th{{border-bottom:1px solid #ddd;padding:.3rem .8rem;text-align:left}}.n{{text-align:right;font-variant-numeric:tabular-nums}}
.mode{{background:#fff3cd;padding:.4rem .8rem;display:inline-block}}</style></head><body>
<h1>TokenTrail</h1><p class=mode>{mode}</p>
<h2>Tables</h2><table><tr><th>table</th><th>rows</th><th>first (UTC)</th><th>last (UTC)</th></tr>{tables}</table>
<h2>Sources</h2><table><tr><th>source</th><th>kind</th><th>event time</th><th>updated (UTC)</th><th>cosmos</th><th>sign-ins</th><th>raw</th><th>quarantined</th></tr>{sources}</table>
{partitions}
</body></html>"#,
        mode = escape(status.mode),
    )))
}
