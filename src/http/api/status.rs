//! Ingest status (per source and partition, quarantine samples), the rule catalogue,
//! the access log, the OpenAPI document, and the status page.

use super::filter::{self, Filter};
use super::findings::{Page, page};
use super::results::{RowCount, objects};
use crate::http::error::{ApiResult, Query};
use crate::http::state::AppState;
use crate::source::eventhubs::{InstanceStatus, PartitionStatus};
use axum::Extension;
use axum::extract::State;
use duckdb::types::Value;
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;
use utoipa::{IntoParams, ToSchema};

use super::results::Object;

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// What this instance is, e.g. "demo: generated data".
    pub mode: String,
    /// Rows and time range of each public table.
    #[schema(value_type = Vec<Object>)]
    pub tables: Vec<Object>,
    /// Every source (file, generator, Event Hubs partition) with its position and rows.
    #[schema(value_type = Vec<Object>)]
    pub sources: Vec<Object>,
    /// Event Hubs partitions with their lag (last enqueued minus committed).
    #[schema(value_type = Vec<Object>)]
    pub eventhubs: Vec<PartitionStatus>,
    /// The instances sharing each balanced hub (one consumer group), from the ownership
    /// blobs, and the partitions each owns; `this_instance` marks this one.
    #[schema(value_type = Vec<Object>)]
    pub instances: Vec<InstanceStatus>,
    /// Findings by status and severity.
    #[schema(value_type = Vec<Object>)]
    pub findings: Vec<Object>,
    /// How far detection has come: the last ingest batch committed and the last one the
    /// rules have taken in, and whether a pass is waiting for ingest to stop running flat
    /// out (it waits at most a minute).
    pub detection: DetectionStatus,
    /// The Parquet lake per archived table: rows archived, rows retention deleted from the
    /// database (answered from the lake only), days held, the last archive. Empty: nothing
    /// archived.
    #[schema(value_type = Vec<Object>)]
    pub lake: Vec<Object>,
    /// The lake the instances sharing balanced hubs write their rows to (none: not
    /// configured): where, this instance's name in it, its segments, and the lag: the age
    /// of the oldest rows this instance committed and has not put there yet, against the
    /// target; and the rules lease (`rules_lease`: its holder, since when, this instance's
    /// last check) with the segments whose partial counts are not added up here yet
    /// (`partials_pending`); and the findings shared with the other instances
    /// (`findings`: the latest change this instance published, and per other instance the
    /// last file taken in and the findings listed here from it).
    #[schema(value_type = Option<Object>)]
    pub shared_lake: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DetectionStatus {
    pub committed_batch: i64,
    pub absorbed_batch: i64,
    /// Committed batches the rules have not taken in yet.
    pub batches_behind: i64,
    /// When the rules last took batches in (UTC), if ever.
    pub absorbed_at: Option<String>,
    pub waiting_for_ingest: bool,
}

pub async fn read(state: &AppState) -> ApiResult<Status> {
    let hubs = state.hubs.as_ref().map(|h| h.snapshot()).unwrap_or_default();
    let instances = state.hubs.as_ref().map(|h| h.instances()).unwrap_or_default();
    let shared_lake = state.hubs.as_ref().and_then(|h| h.shared_lake()).map(|lake| {
        let now = chrono::Utc::now();
        let oldest = hubs.iter().filter_map(|p| p.lake_pending_since).min();
        let lag = oldest.map_or(0, |t| (now - t).num_seconds().max(0));
        let mut value = serde_json::to_value(&lake).unwrap_or_default();
        value["lag_seconds"] = lag.into();
        value["within_target"] = (lag <= lake.lag_target_seconds as i64).into();
        let lease = state.hubs.as_ref().and_then(|h| h.rules_lease.status());
        value["rules_lease"] = serde_json::to_value(lease).unwrap_or_default();
        value
    });
    let mode = state.mode.to_string();
    let waiting_for_ingest = state.metrics.detection_waiting.get() > 0;
    let (tables, sources, findings, detection, lake, (pending, shared)) =
        super::db(state, move |store| -> ApiResult<_> {
            let conn = store.connection()?;
            // Segments recorded whose partial counts are not added up here yet (rules over everyone's counts).
            let pending: i64 = conn.query_row(
                "SELECT count(*) FROM hub_segments WHERE NOT coalesce(partials_loaded, false)",
                [],
                |r| r.get(0),
            )?;
            let detection = conn.query_row(include_str!("sql/status_detection.sql"), [], |r| {
                let (committed_batch, absorbed_batch): (i64, i64) = (r.get(0)?, r.get(1)?);
                Ok(DetectionStatus {
                    committed_batch,
                    absorbed_batch,
                    batches_behind: (committed_batch - absorbed_batch).max(0),
                    absorbed_at: r.get(2)?,
                    waiting_for_ingest,
                })
            })?;
            Ok((
                objects(&conn, include_str!("sql/status_tables.sql"), &[])?,
                objects(&conn, include_str!("sql/status_sources.sql"), &[])?,
                objects(
                    &conn,
                    "SELECT status, severity, count(*) AS findings FROM findings GROUP BY ALL ORDER BY ALL",
                    &[],
                )?,
                detection,
                objects(&conn, include_str!("sql/status_lake.sql"), &[])?,
                (pending, shared_findings(&conn)?),
            ))
        })
        .await?;
    let shared_lake = shared_lake.map(|mut value| {
        value["partials_pending"] = pending.into();
        value["findings"] = shared;
        value
    });
    Ok(Status { mode, tables, sources, eventhubs: hubs, instances, findings, detection, lake, shared_lake })
}

/// What this instance published of its findings and took in of the others'
/// (`crate::lake::shared_findings`).
fn shared_findings(conn: &duckdb::Connection) -> ApiResult<serde_json::Value> {
    let published = objects(
        conn,
        "SELECT max(published_through) AS published_through, max(published_at) AS published_at FROM shared_findings_out",
        &[],
    )?;
    let taken = objects(
        conn,
        "SELECT r.instance, r.last_file, count(h.fingerprint) AS findings, max(h.taken_at) AS last_taken_at \
         FROM shared_findings_read r LEFT JOIN shared_findings_in h ON h.instance = r.instance GROUP BY ALL ORDER BY 1",
        &[],
    )?;
    let mut value = serde_json::to_value(published.into_iter().next().unwrap_or_default()).unwrap_or_default();
    value["from_instances"] = serde_json::to_value(taken).unwrap_or_default();
    Ok(value)
}

/// Ingest health: tables, sources, partitions and their lag, findings by status.
#[utoipa::path(get, path = "/api/status", tag = "status",
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = Status)))]
pub async fn status(State(state): State<AppState>) -> ApiResult<axum::Json<Status>> {
    Ok(axum::Json(read(&state).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QuarantineQuery {
    /// A source id, e.g. `eventhubs:ns/hub/$Default/0` or a file path.
    pub source: Option<String>,
    /// 1 to 200 (default 20).
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Quarantined records, newest first: why, where from, and the first 2 KiB of the bytes.
#[utoipa::path(get, path = "/api/quarantine", tag = "status", params(QuarantineQuery),
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Admin"])),
    responses((status = 200, body = Page), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn quarantine(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Query(q): Query<QuarantineQuery>,
) -> ApiResult<axum::Json<Page>> {
    let limit = filter::limit(q.limit, 20, 200)?;
    let mut f = Filter::default();
    f.eq("source", &q.source);
    if let Some((t, id)) = filter::parse_cursor(&q.cursor)? {
        f.add(
            "(time < ? OR (time = ? AND rowid < ?))",
            [filter::timestamp(t), filter::timestamp(t), Value::BigInt(id)],
        );
    }
    let sql = format!(
        // The first 2 KiB as text when it is UTF-8 (NULL otherwise), and always in base64.
        "SELECT rowid AS row_id, time, reason, category, source, line, record_index, partition, sequence_number,
                raw_size, truncated, try(decode(raw[1:2048])) AS raw_start, base64(raw[1:2048]) AS raw_start_base64,
                epoch_us(time) AS _sort
         FROM quarantine {}",
        f.sql_limited("time DESC, rowid DESC", limit + 1)
    );
    let mut found = super::db(&state, move |store| objects(&*store.connection()?, &sql, &f.params)).await?;
    Ok(axum::Json(page(&mut found, limit, &rows)))
}

/// The detection rules in force: what each looks for, its severity, SOC 2 criteria,
/// MITRE technique, parameters and remediation.
#[utoipa::path(get, path = "/api/rules", tag = "status",
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = Vec<Object>)))]
pub async fn rules(State(state): State<AppState>, Extension(rows): Extension<RowCount>) -> axum::Json<Vec<JsonValue>> {
    let catalogue: Vec<JsonValue> = state
        .rules
        .iter()
        .map(|r| {
            let params: Vec<JsonValue> = r
                .params
                .iter()
                .map(|p| serde_json::json!({"name": p.name, "value": format!("{:?}", p.effective()), "description": p.description}))
                .collect();
            serde_json::json!({
                "id": r.id, "title": r.title, "severity": r.severity.as_str(), "soc2": r.soc2, "mitre": r.mitre,
                "description": r.description, "remediation": r.remediation, "window": r.reach().to_string(),
                "params": params, "origin": r.origin.to_string(),
            })
        })
        .collect();
    rows.add(catalogue.len() as i64);
    axum::Json(catalogue)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccessLogQuery {
    /// The caller's object id.
    pub oid: Option<String>,
    /// A route template, e.g. `/api/sql`.
    pub endpoint: Option<String>,
    /// An HTTP status, e.g. 403.
    pub status: Option<i32>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// 1 to 1,000 (default 100).
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Who called what: TokenTrail's own access log, newest first. Read-only.
#[utoipa::path(get, path = "/api/access-log", tag = "status", params(AccessLogQuery),
    security(("entra" = ["TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = Page), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn access_log(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Query(q): Query<AccessLogQuery>,
) -> ApiResult<axum::Json<Page>> {
    let limit = filter::limit(q.limit, 100, 1000)?;
    let mut f = Filter::default();
    f.eq("oid", &q.oid);
    f.eq("endpoint", &q.endpoint);
    if let Some(status) = q.status {
        f.add("status = ?", [Value::Int(status)]);
    }
    f.time_range("time", &q.from, &q.to)?;
    if let Some((t, id)) = filter::parse_cursor(&q.cursor)? {
        f.add("(time < ? OR (time = ? AND id < ?))", [filter::timestamp(t), filter::timestamp(t), Value::BigInt(id)]);
    }
    let sql = format!(
        "SELECT id, time, oid, tid, name, role, method, endpoint, path, parameters, status, rows, duration_ms,
                client_ip, user_agent, auth, epoch_us(time) AS _sort
         FROM access_log {}",
        f.sql_limited("time DESC, id DESC", limit + 1)
    );
    let mut found = super::db(&state, move |store| objects(&*store.connection()?, &sql, &f.params)).await?;
    Ok(axum::Json(page(&mut found, limit, &rows)))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "status",
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = Object)))]
pub async fn openapi(State(state): State<AppState>) -> axum::Json<JsonValue> {
    axum::Json((*state.openapi).clone())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ActivityQuery {
    /// Hours back from the newest data, 1 to 2,160 (default 48).
    pub hours: Option<i64>,
}

/// Data operations, sign-ins and other records per hour (from the detection engine's
/// hourly counts, so it is fast on any volume), newest hours last.
#[utoipa::path(get, path = "/api/activity", tag = "status", params(ActivityQuery),
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = Vec<Object>), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn activity(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Query(q): Query<ActivityQuery>,
) -> ApiResult<axum::Json<Vec<Object>>> {
    let hours = filter::limit(q.hours, 48, 2160)?;
    super::list(&state, &rows, include_str!("sql/activity.sql"), vec![Value::BigInt(hours)]).await
}
