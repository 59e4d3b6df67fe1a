//! Query results as the API sends them: DuckDB values to JSON, rows to JSON objects,
//! CSV (with spreadsheet formula injection neutralised) or NDJSON, streamed from a
//! blocking thread so a million-row export never sits in memory.

use super::error::ApiError;
use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use duckdb::types::Value;
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use utoipa::ToSchema;

/// One result row as a JSON object (column name → value), as the API answers it.
pub type Object = Map<String, Json>;

/// One DuckDB value as JSON: timestamps in RFC 3339 (UTC), blobs in base64, huge
/// integers and decimals as strings (JSON numbers would lose digits).
pub fn to_json(value: Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(b),
        Value::TinyInt(n) => n.into(),
        Value::SmallInt(n) => n.into(),
        Value::Int(n) => n.into(),
        Value::BigInt(n) => n.into(),
        Value::UTinyInt(n) => n.into(),
        Value::USmallInt(n) => n.into(),
        Value::UInt(n) => n.into(),
        Value::UBigInt(n) => n.into(),
        Value::HugeInt(n) => Json::String(n.to_string()),
        Value::UHugeInt(n) => Json::String(n.to_string()),
        Value::Float(f) => serde_json::Number::from_f64(f as f64).map_or(Json::Null, Json::Number),
        Value::Double(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
        Value::Decimal(d) => Json::String(d.to_string()),
        Value::Timestamp(unit, v) => timestamp(unit.to_micros(v)),
        Value::Text(s) | Value::Enum(s) => Json::String(s),
        Value::Blob(b) | Value::Geometry(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Date32(days) => NaiveDate::from_num_days_from_ce_opt(days + 719_163)
            .map_or(Json::Null, |d| Json::String(d.format("%Y-%m-%d").to_string())),
        Value::Time64(unit, v) => {
            let micros = unit.to_micros(v);
            NaiveTime::from_num_seconds_from_midnight_opt(
                (micros / 1_000_000) as u32,
                ((micros % 1_000_000) * 1_000) as u32,
            )
            .map_or(Json::Null, |t| Json::String(t.format("%H:%M:%S%.f").to_string()))
        }
        Value::Interval { months, days, nanos } => {
            Json::String(format!("{months} months {days} days {} seconds", nanos as f64 / 1e9))
        }
        Value::List(items) | Value::Array(items) => Json::Array(items.into_iter().map(to_json).collect()),
        Value::Struct(fields) => Json::Object(fields.iter().map(|(k, v)| (k.clone(), to_json(v.clone()))).collect()),
        Value::Map(entries) => Json::Array(
            entries.iter().map(|(k, v)| Json::Array(vec![to_json(k.clone()), to_json(v.clone())])).collect(),
        ),
        Value::Union(inner) => to_json(*inner),
        // A type newer than this code: its debug text, rather than nothing.
        other => Json::String(format!("{other:?}")),
    }
}

fn timestamp(micros: i64) -> Json {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map_or(Json::Null, |t| Json::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)))
}

/// A cell for CSV: text as is, except that a leading `=`, `+`, `-`, `@`, tab or
/// carriage return gets a `'` in front, so a spreadsheet shows it instead of running
/// it as a formula (OWASP "CSV injection"). Numbers are written as numbers.
pub fn csv_cell(value: &Json) -> String {
    let text = match value {
        Json::Null => return String::new(),
        Json::String(s) => s.clone(),
        Json::Number(n) => return n.to_string(),
        Json::Bool(b) => return b.to_string(),
        other => other.to_string(),
    };
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text }
}

/// How rows leave the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON document with the rows and the cursor of the next page.
    #[default]
    Json,
    /// CSV with a header line, streamed.
    Csv,
    /// One JSON object a line, streamed.
    Ndjson,
}

/// Counts the rows a response carried, for the access log; shared between the
/// handler (or its streaming thread) and the audit middleware.
#[derive(Clone, Default)]
pub struct RowCount(pub Arc<AtomicI64>);

impl RowCount {
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs `query` on a query thread, which it holds until the last row is sent, and
/// streams its rows as CSV or NDJSON. `query` gets a sink to call with the column
/// names once, then with each row; it stops early (returning Ok) when the sink says
/// the client has gone.
pub fn stream<F>(
    queries: &super::pool::QueryPool,
    format: Format,
    file_name: &str,
    rows: RowCount,
    query: F,
) -> Response
where
    F: FnOnce(&mut dyn FnMut(RowEvent) -> bool) -> anyhow::Result<()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let failed = tx.clone();
    let spawned = queries.spawn(move || {
        let mut buffer = Vec::with_capacity(64 * 1024);
        let mut columns: Vec<String> = Vec::new();
        let mut sink = |event: RowEvent| -> bool {
            match event {
                RowEvent::Columns(names) => {
                    if format == Format::Csv {
                        let header: Vec<Json> = names.iter().map(|n| Json::String(n.clone())).collect();
                        write_csv_line(&mut buffer, &header);
                    }
                    columns = names;
                }
                RowEvent::Row(values) => {
                    rows.add(1);
                    if format == Format::Csv {
                        write_csv_line(&mut buffer, &values);
                    } else {
                        let object: Map<String, Json> = columns.iter().cloned().zip(values).collect();
                        serde_json::to_writer(&mut buffer, &object).expect("JSON to memory cannot fail");
                        buffer.push(b'\n');
                    }
                }
            }
            if buffer.len() >= 64 * 1024 {
                let chunk = std::mem::replace(&mut buffer, Vec::with_capacity(64 * 1024));
                return tx.blocking_send(Ok(chunk)).is_ok();
            }
            true
        };
        let outcome = query(&mut sink);
        match outcome {
            Ok(()) => {
                if !buffer.is_empty() {
                    let _ = tx.blocking_send(Ok(buffer));
                }
            }
            Err(error) => {
                // The status line is gone already; end the body with an error, so the
                // client sees a broken transfer, not a short but valid-looking file.
                tracing::error!(error = format!("{error:#}"), "streamed query failed");
                let _ = tx.blocking_send(Err(std::io::Error::other("query failed; see the server log")));
            }
        }
    });
    if spawned.is_err() {
        let _ = failed.try_send(Err(std::io::Error::other("the API's query threads have stopped")));
    }
    drop(failed);
    let body = Body::from_stream(tokio_stream(rx));
    let content_type = match format {
        Format::Csv => "text/csv; charset=utf-8",
        _ => "application/x-ndjson",
    };
    let extension = if format == Format::Csv { "csv" } else { "ndjson" };
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file_name}.{extension}\"")),
        ],
        body,
    )
        .into_response();
    response.extensions_mut().insert(Streamed);
    response
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn write_csv_line(buffer: &mut Vec<u8>, values: &[Json]) {
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(&mut *buffer);
    let cells: Vec<String> = values.iter().map(csv_cell).collect();
    writer.write_record(&cells).expect("CSV to memory cannot fail");
    writer.flush().expect("CSV to memory cannot fail");
}

pub enum RowEvent {
    Columns(Vec<String>),
    Row(Vec<Json>),
}

/// Runs a prepared query and hands its column names, then each row as JSON values,
/// to `sink`; stops when the sink returns false.
pub fn each_row(
    stmt: &mut duckdb::Statement<'_>,
    params: &[duckdb::types::Value],
    sink: &mut dyn FnMut(RowEvent) -> bool,
) -> anyhow::Result<()> {
    let mut rows = stmt.query(duckdb::params_from_iter(params.iter()))?;
    let names = rows.as_ref().map(|s| s.column_names()).unwrap_or_default();
    let width = names.len();
    if !sink(RowEvent::Columns(names)) {
        return Ok(());
    }
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(to_json(row.get::<_, Value>(i)?));
        }
        if !sink(RowEvent::Row(values)) {
            break;
        }
    }
    Ok(())
}

/// All rows of a query as JSON objects (for pages of bounded size).
pub fn objects(
    conn: &duckdb::Connection,
    sql: &str,
    params: &[duckdb::types::Value],
) -> Result<Vec<Map<String, Json>>, ApiError> {
    let mut stmt = conn.prepare(sql)?;
    let mut columns = Vec::new();
    let mut out = Vec::new();
    each_row(&mut stmt, params, &mut |event| {
        match event {
            RowEvent::Columns(names) => columns = names,
            RowEvent::Row(values) => out.push(columns.iter().cloned().zip(values).collect()),
        }
        true
    })?;
    Ok(out)
}

/// Marks a response whose body is streamed, so the access log entry waits for its end.
#[derive(Clone, Copy)]
pub struct Streamed;

/// `body`, calling `done` once when it has been sent or dropped (client gone).
pub fn on_end(body: Body, done: impl FnOnce() + Send + Unpin + 'static) -> Body {
    struct OnEnd<S, F: FnOnce()> {
        inner: S,
        done: Option<F>,
    }
    impl<S, F: FnOnce()> Drop for OnEnd<S, F> {
        fn drop(&mut self) {
            if let Some(done) = self.done.take() {
                done();
            }
        }
    }
    impl<S: futures::Stream + Unpin, F: FnOnce() + Unpin> futures::Stream for OnEnd<S, F> {
        type Item = S::Item;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<S::Item>> {
            std::pin::Pin::new(&mut self.inner).poll_next(cx)
        }
    }
    Body::from_stream(OnEnd { inner: body.into_data_stream(), done: Some(done) })
}
