//! Findings: list with filters and keyset pagination, detail with evidence and the
//! principal's context, the lifecycle (acknowledge, resolve, reopen, suppress) and
//! its history.

use super::filter::{self, Filter};
use super::results::{RowCount, objects};
use super::{AuditNote, Granted};
use crate::http::error::{ApiError, ApiResult, Json, Path, Query};
use crate::http::state::AppState;
use crate::rules::findings::{self as lifecycle, Status};
use axum::Extension;
use axum::extract::State;
use duckdb::types::Value;
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;
use utoipa::{IntoParams, ToSchema};

use super::results::Object;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Comma-separated statuses: open, acknowledged, resolved, suppressed, withdrawn.
    pub status: Option<String>,
    /// Comma-separated severities: low, medium, high, critical.
    pub severity: Option<String>,
    /// A rule id, e.g. `impossible_travel`.
    pub rule: Option<String>,
    /// A principal id (Entra object id).
    pub principal: Option<String>,
    /// Findings with evidence at or after this time (RFC 3339).
    pub from: Option<String>,
    /// Findings with evidence before this time (RFC 3339).
    pub to: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of rows, newest first, and the cursor of the next page (absent on the last).
#[derive(Serialize, ToSchema)]
pub struct Page {
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Object>,
    pub next_cursor: Option<String>,
}

const COLUMNS: &str = "f.id, f.fingerprint, f.rule_id, f.title, f.severity, f.status, f.principal_id,
    (SELECT arg_max(s.principal_name, s.time) FROM signins s WHERE s.principal_id = f.principal_id) AS principal_name,
    f.entity, f.first_seen, f.last_seen, f.count, f.summary, f.status_by, f.status_at, f.status_comment,
    f.created_at, f.updated_at, taken_in_from(f.fingerprint, f.updated_at) AS raised_on";

/// Findings, most recently active first.
#[utoipa::path(get, path = "/api/findings", tag = "findings", params(ListQuery),
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = Page), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Page>> {
    let limit = filter::limit(q.limit, 50, 500)?;
    let mut f = triage_filter("f", &q.status, &q.severity, &q.cursor)?;
    f.eq("f.rule_id", &q.rule);
    f.eq("f.principal_id", &q.principal);
    f.time_range("f.last_seen", &q.from, &None)?;
    f.time_range("f.first_seen", &None, &q.to)?;
    let rest = f.sql_limited("f.last_seen DESC, f.id DESC", limit + 1);
    let sql = format!("SELECT {COLUMNS}, epoch_us(f.last_seen) AS _sort FROM findings f {rest}");
    let mut found = super::db(&state, move |store| objects(&*store.connection()?, &sql, &f.params)).await?;
    Ok(axum::Json(page(&mut found, limit, &rows)))
}

/// What the findings and incidents lists filter on alike: statuses, severities (both
/// checked against their known values), and the keyset cursor on (`last_seen`, `id`) of
/// the table aliased `alias`.
pub fn triage_filter(
    alias: &str,
    status: &Option<String>,
    severity: &Option<String>,
    cursor: &Option<String>,
) -> ApiResult<Filter> {
    let mut f = Filter::default();
    filter::known("status", status, &["open", "acknowledged", "resolved", "suppressed", "withdrawn"])?;
    filter::known("severity", severity, &["low", "medium", "high", "critical"])?;
    f.any_of(&format!("{alias}.status"), status);
    f.any_of(&format!("{alias}.severity"), severity);
    if let Some((t, id)) = filter::parse_cursor(cursor)? {
        f.add(
            &format!("({alias}.last_seen < ? OR ({alias}.last_seen = ? AND {alias}.id < ?))"),
            [filter::timestamp(t), filter::timestamp(t), Value::BigInt(id)],
        );
    }
    Ok(f)
}

/// Cuts a page of `limit` from `limit + 1` rows with a `_sort` column and `id`.
pub fn page(found: &mut Vec<Object>, limit: i64, rows: &RowCount) -> Page {
    let more = found.len() as i64 > limit;
    found.truncate(limit as usize);
    let next_cursor = more.then(|| found.last()).flatten().and_then(|last| {
        Some(filter::cursor(last.get("_sort")?.as_i64()?, last.get("id").or(last.get("row_id"))?.as_i64()?))
    });
    for row in found.iter_mut() {
        row.remove("_sort");
    }
    rows.add(found.len() as i64);
    Page { rows: std::mem::take(found), next_cursor }
}

/// One finding, its rule, its evidence rows, the principal's recent sign-ins, and history.
#[derive(Serialize, ToSchema)]
pub struct Detail {
    #[schema(value_type = Object)]
    pub finding: Object,
    /// The rule's description, remediation, SOC 2 criteria and MITRE technique.
    #[schema(value_type = Object)]
    pub rule: JsonValue,
    /// The first 200 evidence events by time, each with its row from its table.
    #[schema(value_type = Vec<Object>)]
    pub evidence: Vec<Object>,
    /// Evidence events in all (see `finding.count`; all are in `finding_evidence`).
    pub evidence_total: i64,
    /// The principal's sign-ins in the 7 days before the latest evidence, newest first (200 at most).
    #[schema(value_type = Vec<Object>)]
    pub signins: Vec<Object>,
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<Object>,
    /// The last time a person acknowledged it (`acknowledged_by`, `acknowledged_at`,
    /// `comment`), from its history: kept when detection reopens it, which sets its
    /// status (and `status_by`) again. Absent if nobody ever did.
    #[schema(value_type = Option<Object>)]
    pub acknowledged: Option<JsonValue>,
}

const EVIDENCE_ROWS: i64 = 200;

#[utoipa::path(get, path = "/api/findings/{id}", tag = "findings",
    params(("id" = i64, Path, description = "Finding id")),
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = Detail), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<Detail>> {
    let rules = state.rules.clone();
    let detail = super::db(&state, move |store| -> ApiResult<Detail> {
        let conn = store.connection()?;
        let finding =
            objects(&conn, &format!("SELECT {COLUMNS} FROM findings f WHERE f.id = ?"), &[Value::BigInt(id)])?
                .pop()
                .ok_or_else(|| ApiError::not_found(format!("there is no finding {id}")))?;
        let rule_id = finding.get("rule_id").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let rule = rules.iter().find(|r| r.id == rule_id).map_or(JsonValue::Null, |r| {
            serde_json::json!({
                "id": r.id, "title": r.title, "severity": r.severity.as_str(), "description": r.description,
                "remediation": r.remediation, "soc2": r.soc2, "mitre": r.mitre,
                "window_seconds": r.reach().num_seconds(),
            })
        });
        let evidence = evidence(&conn, id)?;
        let evidence_total = conn.query_row(
            "SELECT count(*) FROM finding_evidence e JOIN findings f USING (fingerprint) WHERE f.id = ?",
            [id],
            |r| r.get(0),
        )?;
        let signins = objects(&conn, include_str!("sql/finding_signins.sql"), &[Value::BigInt(id)])?;
        let history = objects(&conn, include_str!("sql/finding_history.sql"), &[Value::BigInt(id)])?;
        let acknowledged = objects(&conn, include_str!("sql/finding_acknowledged.sql"), &[Value::BigInt(id)])?
            .pop()
            .map(JsonValue::Object);
        Ok(Detail { finding, rule, evidence, evidence_total, signins, history, acknowledged })
    })
    .await?;
    rows.add(detail.evidence.len() as i64 + detail.signins.len() as i64);
    Ok(axum::Json(detail))
}

/// The tables evidence rows come from, each with what names its ids: the role of a change
/// by `cosmos_roles` (the page shows names, not GUIDs).
const EVIDENCE_TABLES: [(&str, &str); 6] = [
    // The address its token was signed in from (request_signins), to mark a request from elsewhere.
    (
        "cosmos_requests",
        ", s.signin_ip, s.signin_time FROM cosmos_requests t LEFT JOIN request_signins s ON s.request_row = t.rowid",
    ),
    // Requests any instance stored, copied by the rules lease holder (`crate::lake::fleet`).
    (
        "fleet_requests",
        " FROM (SELECT fleet_id AS rowid, * EXCLUDE (fleet_id, copied_at, kept, here) FROM fleet_requests) t",
    ),
    ("signins", " FROM signins t"),
    ("raw_events", " FROM raw_events t"),
    (
        "control_changes",
        ", r.role_name FROM control_changes t LEFT JOIN cosmos_roles r ON r.role_definition_id = t.role_definition_id",
    ),
    ("directory_changes", " FROM directory_changes t"),
];

/// The first evidence events of finding `id`, each with the columns of its row.
fn evidence(conn: &duckdb::Connection, id: i64) -> ApiResult<Vec<Object>> {
    let mut events =
        objects(conn, include_str!("sql/finding_evidence.sql"), &[Value::BigInt(id), Value::BigInt(EVIDENCE_ROWS)])?;
    attach_rows(conn, &mut events)?;
    Ok(events)
}

/// Gives each evidence event (`evidence_table`, `row_id`) its row from its table, as `row`.
pub(super) fn attach_rows(conn: &duckdb::Connection, events: &mut [Object]) -> ApiResult<()> {
    // One query per table for the rows behind the events; the table name comes from
    // our own list, never from the data.
    for (table, named) in EVIDENCE_TABLES {
        let ids: Vec<Value> = events
            .iter()
            .filter(|e| e.get("evidence_table").and_then(|t| t.as_str()) == Some(table))
            .filter_map(|e| e.get("row_id")?.as_i64().map(Value::BigInt))
            .collect();
        if ids.is_empty() {
            continue;
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let found = objects(
            conn,
            &format!("SELECT t.rowid AS row_id, t.* EXCLUDE (batch_id){named} WHERE t.rowid IN ({marks})"),
            &ids,
        )?;
        for event in events.iter_mut().filter(|e| e.get("evidence_table").and_then(|t| t.as_str()) == Some(table)) {
            let row_id = event.get("row_id").and_then(|v| v.as_i64());
            let row = found.iter().find(|r| r.get("row_id").and_then(|v| v.as_i64()) == row_id);
            event.insert("row".into(), row.cloned().map_or(JsonValue::Null, JsonValue::Object));
        }
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/findings/{id}/history", tag = "findings",
    params(("id" = i64, Path, description = "Finding id")),
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = Vec<Object>), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<Vec<Object>>> {
    let found = super::db(&state, move |store| -> ApiResult<Vec<Object>> {
        let conn = store.connection()?;
        let exists: i64 = conn.query_row("SELECT count(*) FROM findings WHERE id = ?", [id], |r| r.get(0))?;
        if exists == 0 {
            return Err(ApiError::not_found(format!("there is no finding {id}")));
        }
        objects(&conn, include_str!("sql/finding_history.sql"), &[Value::BigInt(id)])
    })
    .await?;
    rows.add(found.len() as i64);
    Ok(axum::Json(found))
}

/// A status change needs a comment: the next person on call reads it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Comment {
    /// Why (1 to 4,000 characters).
    pub comment: String,
}

async fn change(
    state: AppState,
    granted: Granted,
    note: AuditNote,
    id: i64,
    to: Status,
    comment: String,
) -> ApiResult<axum::Json<Object>> {
    let comment = comment.trim().to_string();
    if comment.is_empty() || comment.chars().count() > 4000 {
        return Err(ApiError::bad_request(
            "comment must be 1 to 4,000 characters: say why, for whoever reads this next",
        ));
    }
    note.add("comment", comment.clone());
    super::db(&state, move |store| -> ApiResult<Object> {
        // The status is checked in the change's own transaction: two people (or a
        // person and detection) acting on one finding at once get a 409, never a 500.
        lifecycle::set_status(&store, id, to, &granted.who(), &comment).map_err(|error| {
            match error.downcast_ref::<lifecycle::Refused>() {
                Some(refused @ lifecycle::Refused::NoFinding(_)) => ApiError::not_found(refused.to_string()),
                Some(refused) => ApiError::conflict(refused.to_string()),
                None => error.into(),
            }
        })?;
        let conn = store.connection()?;
        let finding =
            objects(&conn, &format!("SELECT {COLUMNS} FROM findings f WHERE f.id = ?"), &[Value::BigInt(id)])?;
        Ok(finding.into_iter().next().unwrap_or_default())
    })
    .await
    .map(axum::Json)
}

macro_rules! transition {
    ($name:ident, $path:literal, $status:expr, $roles:tt, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "findings",
                            params(("id" = i64, Path, description = "Finding id")),
                            request_body = Comment,
                            security(("entra" = $roles)),
                            responses((status = 200, body = Object), (status = 404, body = crate::http::error::ErrorBody),
                                      (status = 409, body = crate::http::error::ErrorBody)))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(granted): Extension<Granted>,
            Extension(note): Extension<AuditNote>,
            Path(id): Path<i64>,
            Json(body): Json<Comment>,
        ) -> ApiResult<axum::Json<Object>> {
            change(state, granted, note, id, $status, body.comment).await
        }
    };
}

transition!(
    acknowledge,
    "/api/findings/{id}/acknowledge",
    Status::Acknowledged,
    ["TokenTrail.Responder"],
    "Someone is on it."
);
transition!(
    resolve,
    "/api/findings/{id}/resolve",
    Status::Resolved,
    ["TokenTrail.Responder"],
    "Dealt with; newer evidence reopens it."
);
transition!(reopen, "/api/findings/{id}/reopen", Status::Open, ["TokenTrail.Responder"], "Back to open.");
transition!(
    suppress,
    "/api/findings/{id}/suppress",
    Status::Suppressed,
    ["TokenTrail.Admin"],
    "Known and accepted: it keeps updating but asks for no one's attention."
);
