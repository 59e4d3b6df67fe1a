//! Alert messages (`crate::alerts`): what was sent where, what is still trying, what
//! gave up (dead), and sending a dead one again by hand. Destination URLs and signing
//! keys are not in the database, so nothing here can return them.

use super::filter::{self, Filter};
use super::findings::{Page, page};
use super::results::{RowCount, objects};
use super::{AuditNote, Granted};
use crate::alerts::outbox::{self, Retry};
use crate::http::error::{ApiError, ApiResult, Path, Query};
use crate::http::state::AppState;
use axum::Extension;
use axum::extract::State;
use duckdb::types::Value;
use serde::Deserialize;
use utoipa::IntoParams;

use super::results::Object;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Comma-separated delivery states: pending, sent, dead.
    pub delivery: Option<String>,
    /// A destination's name from `[[alerts.destinations]]`.
    pub destination: Option<String>,
    /// Messages about this finding.
    pub finding: Option<i64>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

const COLUMNS: &str = "id, webhook_id, destination, destination_kind, alert_status, finding_ids, delivery, attempts,
    created_at, next_attempt_at, give_up_at, last_attempt_at, last_status, last_error, sent_at, dead_at,
    retried_by, retried_at";

/// Alert messages, newest first: `delivery=dead` lists those that gave up.
#[utoipa::path(get, path = "/api/alerts/messages", tag = "alerts", params(ListQuery),
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = Page), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Page>> {
    let limit = filter::limit(q.limit, 50, 500)?;
    for v in q.delivery.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()) {
        if !["pending", "sent", "dead"].contains(&v) {
            return Err(ApiError::bad_request(format!("delivery={v:?} is not one of pending, sent, dead")));
        }
    }
    let mut f = Filter::default();
    f.any_of("delivery", &q.delivery);
    f.eq("destination", &q.destination);
    if let Some(finding) = q.finding {
        f.add("list_contains(finding_ids, ?)", [Value::BigInt(finding)]);
    }
    if let Some((t, id)) = filter::parse_cursor(&q.cursor)? {
        f.add(
            "(created_at < ? OR (created_at = ? AND id < ?))",
            [filter::timestamp(t), filter::timestamp(t), Value::BigInt(id)],
        );
    }
    let rest = f.sql_limited("created_at DESC, id DESC", limit + 1);
    let sql = format!("SELECT {COLUMNS}, epoch_us(created_at) AS _sort FROM alert_messages {rest}");
    let mut found = super::db(&state, move |store| objects(&*store.connection()?, &sql, &f.params)).await?;
    Ok(axum::Json(page(&mut found, limit, &rows)))
}

/// Sends a dead message again, with the same `webhook-id` and body, and a fresh time
/// before it gives up.
#[utoipa::path(post, path = "/api/alerts/messages/{id}/retry", tag = "alerts",
    params(("id" = i64, Path, description = "Alert message id")),
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Admin"])),
    responses((status = 200, body = Object), (status = 404, body = crate::http::error::ErrorBody),
              (status = 409, body = crate::http::error::ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    Extension(granted): Extension<Granted>,
    Extension(note): Extension<AuditNote>,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<Object>> {
    note.add("message", id);
    super::db(&state, move |store| -> ApiResult<Object> {
        match outbox::retry(&store, id, &granted.who())? {
            Retry::Queued => {}
            Retry::NotFound => return Err(ApiError::not_found(format!("there is no alert message {id}"))),
            Retry::NotDead(delivery) => {
                return Err(ApiError::conflict(format!(
                    "alert message {id} is {delivery}; only a dead message is sent again by hand"
                )));
            }
        }
        let conn = store.connection()?;
        let found =
            objects(&conn, &format!("SELECT {COLUMNS} FROM alert_messages WHERE id = ?"), &[Value::BigInt(id)])?;
        Ok(found.into_iter().next().unwrap_or_default())
    })
    .await
    .map(axum::Json)
}
