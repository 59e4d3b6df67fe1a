//! Query results as the API sends them: DuckDB values to JSON, rows to JSON objects,
//! CSV (with spreadsheet formula injection neutralised) or NDJSON, streamed from a
//! blocking thread so a million-row export never sits in memory.

use crate::http::error::ApiError;
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::record_batch::RecordBatch;
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
        Value::Float(f) => number(f as f64),
        Value::Double(f) => number(f),
        Value::Decimal(d) => Json::String(d.to_string()),
        Value::Timestamp(unit, v) => timestamp(unit.to_micros(v)),
        Value::Text(s) | Value::Enum(s) => Json::String(s),
        Value::Blob(b) | Value::Geometry(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Date32(days) => date(days),
        Value::Time64(unit, v) => time(unit.to_micros(v)),
        Value::Interval { months, days, nanos } => interval(months, days, nanos),
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

fn number(f: f64) -> Json {
    serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)
}

fn timestamp(micros: i64) -> Json {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map_or(Json::Null, |t| Json::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)))
}

fn date(days: i32) -> Json {
    NaiveDate::from_num_days_from_ce_opt(days + 719_163)
        .map_or(Json::Null, |d| Json::String(d.format("%Y-%m-%d").to_string()))
}

fn time(micros: i64) -> Json {
    NaiveTime::from_num_seconds_from_midnight_opt(
        micros.div_euclid(1_000_000) as u32,
        (micros.rem_euclid(1_000_000) * 1_000) as u32,
    )
    .map_or(Json::Null, |t| Json::String(t.format("%H:%M:%S%.f").to_string()))
}

fn interval(months: i32, days: i32, nanos: i64) -> Json {
    Json::String(format!("{months} months {days} days {} seconds", nanos as f64 / 1e9))
}

/// How large one cell may be when it becomes JSON: text and blobs longer than `max_bytes`
/// are cut (and `cut` counts them), so one huge value cannot fill an answer.
pub struct CellLimit {
    pub max_bytes: usize,
    pub cut: usize,
}

impl CellLimit {
    /// No cut (exports and pages, whose values are whole records at most).
    pub fn none() -> CellLimit {
        CellLimit { max_bytes: usize::MAX, cut: 0 }
    }
}

/// One cell of an Arrow array (as DuckDB exports query results) as JSON, in the forms
/// of [`to_json`]. Every Arrow type has an answer, never a panic: types without a
/// JSON form of their own are written as Arrow displays them.
pub fn cell(array: &dyn Array, row: usize, limit: &mut CellLimit) -> Json {
    use arrow::datatypes::{self as t, DataType, IntervalUnit, TimeUnit};
    if array.is_null(row) || matches!(array.data_type(), DataType::Null) {
        return Json::Null;
    }
    let micros = |unit: &TimeUnit, v: i64| match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1_000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v.div_euclid(1_000),
    };
    match array.data_type() {
        DataType::Boolean => Json::Bool(array.as_boolean().value(row)),
        DataType::Int8 => array.as_primitive::<t::Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<t::Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<t::Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<t::Int64Type>().value(row).into(),
        DataType::UInt8 => array.as_primitive::<t::UInt8Type>().value(row).into(),
        DataType::UInt16 => array.as_primitive::<t::UInt16Type>().value(row).into(),
        DataType::UInt32 => array.as_primitive::<t::UInt32Type>().value(row).into(),
        DataType::UInt64 => array.as_primitive::<t::UInt64Type>().value(row).into(),
        DataType::Float16 => number(array.as_primitive::<t::Float16Type>().value(row).to_f64()),
        DataType::Float32 => number(array.as_primitive::<t::Float32Type>().value(row) as f64),
        DataType::Float64 => number(array.as_primitive::<t::Float64Type>().value(row)),
        DataType::Utf8 => text(array.as_string::<i32>().value(row), limit),
        DataType::LargeUtf8 => text(array.as_string::<i64>().value(row), limit),
        DataType::Utf8View => text(array.as_string_view().value(row), limit),
        DataType::Binary => blob(array.as_binary::<i32>().value(row), limit),
        DataType::LargeBinary => blob(array.as_binary::<i64>().value(row), limit),
        DataType::BinaryView => blob(array.as_binary_view().value(row), limit),
        DataType::FixedSizeBinary(_) => blob(array.as_fixed_size_binary().value(row), limit),
        DataType::Date32 => date(array.as_primitive::<t::Date32Type>().value(row)),
        DataType::Date64 => date(array.as_primitive::<t::Date64Type>().value(row).div_euclid(86_400_000) as i32),
        DataType::Time32(unit) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<t::Time32SecondType>().value(row) as i64,
                _ => array.as_primitive::<t::Time32MillisecondType>().value(row) as i64,
            };
            time(micros(unit, v))
        }
        DataType::Time64(unit) => {
            let v = match unit {
                TimeUnit::Nanosecond => array.as_primitive::<t::Time64NanosecondType>().value(row),
                _ => array.as_primitive::<t::Time64MicrosecondType>().value(row),
            };
            time(micros(unit, v))
        }
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<t::TimestampSecondType>().value(row),
                TimeUnit::Millisecond => array.as_primitive::<t::TimestampMillisecondType>().value(row),
                TimeUnit::Microsecond => array.as_primitive::<t::TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => array.as_primitive::<t::TimestampNanosecondType>().value(row),
            };
            timestamp(micros(unit, v))
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<t::IntervalMonthDayNanoType>().value(row);
            interval(v.months, v.days, v.nanoseconds)
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = array.as_primitive::<t::IntervalDayTimeType>().value(row);
            interval(0, v.days, v.milliseconds as i64 * 1_000_000)
        }
        DataType::Interval(IntervalUnit::YearMonth) => {
            interval(array.as_primitive::<t::IntervalYearMonthType>().value(row), 0, 0)
        }
        DataType::List(_) => list(&array.as_list::<i32>().value(row), limit),
        DataType::LargeList(_) => list(&array.as_list::<i64>().value(row), limit),
        DataType::FixedSizeList(..) => list(&array.as_fixed_size_list().value(row), limit),
        DataType::Struct(_) => {
            let array = array.as_struct();
            Json::Object(
                array
                    .column_names()
                    .iter()
                    .zip(array.columns())
                    .map(|(name, column)| (name.to_string(), cell(column.as_ref(), row, limit)))
                    .collect(),
            )
        }
        DataType::Map(..) => {
            let entries = array.as_map().value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            Json::Array(
                (0..entries.len())
                    .map(|i| Json::Array(vec![cell(keys.as_ref(), i, limit), cell(values.as_ref(), i, limit)]))
                    .collect(),
            )
        }
        DataType::Dictionary(..) => {
            let array = array.as_any_dictionary();
            match array.normalized_keys().get(row) {
                Some(key) => cell(array.values().as_ref(), *key, limit),
                None => Json::Null,
            }
        }
        DataType::Union(..) => {
            let array = array.as_union();
            let child = array.child(array.type_id(row));
            cell(child.as_ref(), array.value_offset(row), limit)
        }
        // Decimals (as strings, like DuckDB's DECIMAL and HUGEINT always were) and the
        // rest: as Arrow displays them.
        _ => match arrow::util::display::array_value_to_string(array, row) {
            Ok(text) => Json::String(text),
            Err(error) => Json::String(format!("<{}: {error}>", array.data_type())),
        },
    }
}

fn text(value: &str, limit: &mut CellLimit) -> Json {
    if value.len() <= limit.max_bytes {
        return Json::String(value.to_string());
    }
    limit.cut += 1;
    let mut end = limit.max_bytes;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Json::String(format!("{}… [cut: {} bytes in all]", &value[..end], value.len()))
}

fn blob(value: &[u8], limit: &mut CellLimit) -> Json {
    let shown = if value.len() > limit.max_bytes {
        limit.cut += 1;
        &value[..limit.max_bytes]
    } else {
        value
    };
    Json::String(base64::engine::general_purpose::STANDARD.encode(shown))
}

fn list(items: &ArrayRef, limit: &mut CellLimit) -> Json {
    Json::Array((0..items.len()).map(|i| cell(items.as_ref(), i, limit)).collect())
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

/// A streamed export stops when its client has not taken the next 64 KiB for this
/// long (a client reading slowly on purpose would hold an export thread otherwise)…
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// …or when it has run this long in all.
pub const EXPORT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Runs `query` on an export thread (`exports`, a pool of its own, so downloads never
/// hold the threads that answer pages), which it holds until the last row is sent,
/// and streams its rows as CSV or NDJSON. `query` gets a sink to call with the column
/// names once, then with each row; it stops early (returning Ok) when the sink says
/// the client has gone, is too slow ([`SEND_TIMEOUT`]) or the export is past
/// [`EXPORT_DEADLINE`]. Must be called on the tokio runtime.
pub fn stream<F>(
    exports: &crate::http::pool::QueryPool,
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
    let runtime = tokio::runtime::Handle::current();
    let spawned = exports.spawn(move || {
        let deadline = std::time::Instant::now() + EXPORT_DEADLINE;
        let send = |chunk: Result<Vec<u8>, std::io::Error>| -> bool {
            // The timer is made inside the runtime's context, not before it.
            let waited = runtime.block_on(async { tokio::time::timeout(SEND_TIMEOUT, tx.send(chunk)).await });
            match waited {
                Ok(Ok(())) if std::time::Instant::now() < deadline => true,
                Ok(Ok(())) => {
                    tracing::warn!("export stopped: it ran past its deadline");
                    let _ = tx.try_send(Err(std::io::Error::other("the export ran too long; narrow it")));
                    false
                }
                Ok(Err(_)) => false, // the client has gone
                Err(_) => {
                    tracing::warn!(timeout_secs = SEND_TIMEOUT.as_secs(), "export stopped: its client stopped reading");
                    false
                }
            }
        };
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
                return send(Ok(chunk));
            }
            true
        };
        let outcome = query(&mut sink);
        match outcome {
            Ok(()) => {
                if !buffer.is_empty() {
                    send(Ok(buffer));
                }
            }
            Err(error) => {
                // The status line is gone already; end the body with an error, so the
                // client sees a broken transfer, not a short but valid-looking file.
                tracing::error!(error = format!("{error:#}"), "streamed query failed");
                send(Err(std::io::Error::other("query failed; see the server log")));
            }
        }
    });
    if spawned.is_err() {
        let _ = failed.try_send(Err(std::io::Error::other("the API's export threads have stopped")));
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

/// Runs a prepared query, streaming (DuckDB makes each chunk of rows as it is asked
/// for, so a cap on rows or bytes stops the work, not just the answer), and hands its
/// column names, then each Arrow batch, to `sink`; stops when the sink returns false.
pub fn each_batch(
    stmt: &mut duckdb::Statement<'_>,
    params: &[duckdb::types::Value],
    sink: &mut dyn FnMut(BatchEvent<'_>) -> bool,
) -> anyhow::Result<()> {
    let mut batches = stmt.stream_arrow(duckdb::params_from_iter(params.iter()))?;
    let names: Vec<String> = batches.get_schema().fields().iter().map(|f| f.name().clone()).collect();
    if !sink(BatchEvent::Columns(names)) {
        return Ok(());
    }
    for batch in &mut batches {
        if !sink(BatchEvent::Batch(&batch?)) {
            break;
        }
    }
    Ok(())
}

pub enum BatchEvent<'a> {
    Columns(Vec<String>),
    Batch(&'a RecordBatch),
}

/// Runs a prepared query and hands its column names, then each row as JSON values,
/// to `sink`; stops when the sink returns false.
pub fn each_row(
    stmt: &mut duckdb::Statement<'_>,
    params: &[duckdb::types::Value],
    sink: &mut dyn FnMut(RowEvent) -> bool,
) -> anyhow::Result<()> {
    let mut limit = CellLimit::none();
    each_batch(stmt, params, &mut |event| match event {
        BatchEvent::Columns(names) => sink(RowEvent::Columns(names)),
        BatchEvent::Batch(batch) => {
            for row in 0..batch.num_rows() {
                let values = batch.columns().iter().map(|c| cell(c.as_ref(), row, &mut limit)).collect();
                if !sink(RowEvent::Row(values)) {
                    return false;
                }
            }
            true
        }
    })
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
