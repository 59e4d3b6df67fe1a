//! Access reviews ([`crate::reviews`]): Admins start and complete them, Reviewers decide
//! on the ones that name them, Auditors read them and export the decisions in Microsoft
//! Graph's shape.

use super::results::{Object, RowCount, objects};
use super::{AuditNote, Granted};
use crate::auth::Role;
use crate::http::error::{ApiError, ApiResult, ErrorBody, Json, Path};
use crate::http::state::AppState;
use crate::reviews::{self, Decision, NewReview, Person, Refused};
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use duckdb::types::Value;
use serde::Deserialize;
use utoipa::ToSchema;

/// A review to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// 1 to 200 characters, e.g. "Q4 2026 Cosmos DB access".
    pub name: String,
    /// An ARM path (assignments at or under it, and above it reaching into it), an account
    /// name, or empty for every assignment.
    #[serde(default)]
    pub scope: Option<String>,
    /// Object ids of the reviewers (1 to 20).
    pub reviewers: Vec<String>,
    /// The due date: `YYYY-MM-DD` (that day's last second, 23:59:59 UTC) or an RFC 3339 time; in the future.
    pub due: String,
    /// Items show their use over this many days before the end of the data (1 to 365, default 90).
    #[serde(default)]
    pub days: Option<i64>,
}

/// A reviewer's decision on one item.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// approve, revoke or dont_know.
    pub decision: String,
    /// Why, 1 to 2,000 characters: the evidence an auditor reads.
    pub justification: String,
}

/// An empty body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// A review with its items and what happened to it.
#[derive(serde::Serialize, ToSchema)]
pub struct ReviewDetail {
    #[schema(value_type = Object)]
    pub review: Object,
    /// Each item with its latest decision and whether the caller may decide it.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Object>,
    /// Started, decided, reminded, completed: oldest first.
    #[schema(value_type = Vec<Object>)]
    pub log: Vec<Object>,
}

/// The refusals of [`crate::reviews`] as HTTP answers; anything else is a 500.
fn refused(error: anyhow::Error) -> ApiError {
    match error.downcast_ref::<Refused>() {
        Some(r @ (Refused::NoReview(_) | Refused::NoItem(..))) => ApiError::not_found(r.to_string()),
        Some(r @ (Refused::NotReviewer | Refused::OwnAccess | Refused::GrantedIt(_))) => {
            ApiError::forbidden(r.to_string())
        }
        Some(r @ Refused::Completed(_)) => ApiError::conflict(r.to_string()),
        Some(r @ Refused::Invalid(_)) => ApiError::bad_request(r.to_string()),
        None => error.into(),
    }
}

fn person(granted: &Granted) -> Person {
    Person { oid: granted.caller.oid.to_lowercase(), name: granted.caller.name.clone() }
}

/// Whether the caller reads every review (Auditors, Admins) or only those naming them.
fn reads_all(granted: &Granted) -> bool {
    granted.caller.roles.iter().any(|r| matches!(r, Role::Auditor | Role::Admin))
}

const SUMMARY: &str = include_str!("sql/review_summary.sql");

/// Reviews as `granted` may list them; with `id`, that one whoever it names (its reader
/// checks `mine`).
fn summaries(conn: &duckdb::Connection, id: Option<i64>, granted: &Granted) -> ApiResult<Vec<Object>> {
    let me = Value::Text(granted.caller.oid.to_lowercase());
    let all = Value::Boolean(id.is_some() || reads_all(granted));
    objects(conn, SUMMARY, &[me, all, id.map_or(Value::Null, Value::BigInt)])
}

/// Access reviews, newest first: Reviewers see the ones that name them.
#[utoipa::path(get, path = "/api/reviews", tag = "reviews",
    security(("entra" = ["TokenTrail.Reviewer", "TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = Vec<Object>)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Extension(granted): Extension<Granted>,
) -> ApiResult<axum::Json<Vec<Object>>> {
    let found = super::db(&state, move |store| summaries(&*store.connection()?, None, &granted)).await?;
    rows.add(found.len() as i64);
    Ok(axum::Json(found))
}

/// People who have signed in to TokenTrail with the Reviewer role (from the access log),
/// for naming reviewers.
#[utoipa::path(get, path = "/api/reviews/reviewers", tag = "reviews",
    security(("entra" = ["TokenTrail.Admin"])),
    responses((status = 200, body = Vec<Object>)))]
pub async fn reviewers(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
) -> ApiResult<axum::Json<Vec<Object>>> {
    super::list(&state, &rows, include_str!("sql/review_reviewers.sql"), vec![]).await
}

/// Starts a review of the role assignments in a scope, as they are now.
#[utoipa::path(post, path = "/api/reviews", tag = "reviews", request_body = StartBody,
    security(("entra" = ["TokenTrail.Admin"])),
    responses((status = 201, body = Object), (status = 400, body = ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    Extension(granted): Extension<Granted>,
    Extension(note): Extension<AuditNote>,
    Json(body): Json<StartBody>,
) -> ApiResult<(StatusCode, axum::Json<Object>)> {
    let now = chrono::Utc::now();
    let due_at = due(&body.due, now)?;
    let days = match body.days {
        None => super::access::DEFAULT_DAYS,
        Some(d) if (1..=365).contains(&d) => d,
        Some(d) => return Err(ApiError::bad_request(format!("days={d} is out of range: give 1 to 365 (default 90)"))),
    };
    let mut oids: Vec<String> = Vec::new();
    for oid in &body.reviewers {
        let oid = oid.trim().to_lowercase();
        if uuid_shaped(&oid).is_none() {
            return Err(ApiError::bad_request(format!(
                "reviewers: {oid:?} is not an object id (a GUID like 00000000-0000-0000-0000-000000000000)"
            )));
        }
        if !oids.contains(&oid) {
            oids.push(oid);
        }
    }
    note.add("name", body.name.clone());
    note.add("reviewers", oids.clone());
    let by = person(&granted);
    let scope = body.scope.clone().unwrap_or_default();
    let name = body.name.clone();
    let summary = super::db(&state, move |store| -> ApiResult<Object> {
        let (since, until) = {
            let conn = store.connection()?;
            super::access::period(&conn, days)?
        };
        let reviewers = named(&*store.connection()?, &oids)?;
        let review = NewReview {
            name,
            scope,
            reviewers,
            due_at,
            since: chrono::DateTime::from_timestamp_micros(since).unwrap_or(now),
            until: chrono::DateTime::from_timestamp_micros(until).unwrap_or(now),
        };
        let id = reviews::start(&store, &review, &by).map_err(refused)?;
        summaries(&*store.connection()?, Some(id), &granted)?
            .pop()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("review {id} was started but is not found")))
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(summary)))
}

/// A due date as given: a day means the end of that day (UTC).
fn due(text: &str, now: chrono::DateTime<chrono::Utc>) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    let text = text.trim();
    let at = if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        day.and_hms_opt(23, 59, 59).map(|t| t.and_utc())
    } else {
        chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&chrono::Utc))
    };
    match at {
        Some(at) if at > now && at < now + chrono::TimeDelta::days(366) => Ok(at),
        Some(_) => Err(ApiError::bad_request(format!("due={text:?}: give a date within the next year"))),
        None => Err(ApiError::bad_request(format!(
            "due={text:?} is not a date: give YYYY-MM-DD (the end of that day, UTC) or an RFC 3339 time"
        ))),
    }
}

/// `text` when it is a GUID's shape.
fn uuid_shaped(text: &str) -> Option<&str> {
    let groups: Vec<&str> = text.split('-').collect();
    let sizes = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups.iter().zip(sizes).all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
    ok.then_some(text)
}

/// Reviewers with the name they last signed in to TokenTrail with, when they have.
fn named(conn: &duckdb::Connection, oids: &[String]) -> ApiResult<Vec<Person>> {
    let known = objects(conn, include_str!("sql/review_reviewers.sql"), &[])?;
    Ok(oids
        .iter()
        .map(|oid| Person {
            oid: oid.clone(),
            name: known
                .iter()
                .find(|k| k.get("oid").and_then(|v| v.as_str()) == Some(oid))
                .and_then(|k| k.get("name").and_then(|v| v.as_str()).map(str::to_owned)),
        })
        .collect())
}

fn detail(conn: &duckdb::Connection, id: i64, granted: &Granted) -> ApiResult<ReviewDetail> {
    let Some(review) = summaries(conn, Some(id), granted)?.pop() else {
        return Err(ApiError::not_found(format!("no access review {id}")));
    };
    if !reads_all(granted) && review.get("mine") != Some(&serde_json::Value::Bool(true)) {
        return Err(refused(Refused::NotReviewer.into()));
    }
    let me = Value::Text(granted.caller.oid.to_lowercase());
    let reviewer = Value::Boolean(granted.caller.roles.contains(&Role::Reviewer));
    let items = objects(conn, include_str!("sql/review_items.sql"), &[Value::BigInt(id), me, reviewer])?;
    let log = objects(
        conn,
        "SELECT id, item_id, action, decision, justification, by_name, logged_at AS \"at\" FROM access_review_log WHERE review_id = ? ORDER BY id",
        &[Value::BigInt(id)],
    )?;
    Ok(ReviewDetail { review, items, log })
}

/// One review: its items (who holds what, granted by whom, last use, what was used,
/// TokenTrail's recommendation, the decision) and its log.
#[utoipa::path(get, path = "/api/reviews/{id}", tag = "reviews",
    params(("id" = i64, Path, description = "Review id")),
    security(("entra" = ["TokenTrail.Reviewer", "TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = ReviewDetail), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn detail_of(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Extension(granted): Extension<Granted>,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<ReviewDetail>> {
    let found = super::db(&state, move |store| detail(&*store.connection()?, id, &granted)).await?;
    rows.add(found.items.len() as i64);
    Ok(axum::Json(found))
}

/// A reviewer decides on one item: approve, revoke or don't know, with a justification.
/// Refused (403) on access the reviewer holds or granted, and on reviews that do not name
/// them; 409 once the review is completed. The last decision completes the review.
#[utoipa::path(post, path = "/api/reviews/{id}/items/{item}/decision", tag = "reviews",
    params(("id" = i64, Path, description = "Review id"), ("item" = i64, Path, description = "Item id")),
    request_body = DecisionBody,
    security(("entra" = ["TokenTrail.Reviewer"])),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn decide(
    State(state): State<AppState>,
    Extension(granted): Extension<Granted>,
    Extension(note): Extension<AuditNote>,
    Path((id, item)): Path<(i64, i64)>,
    Json(body): Json<DecisionBody>,
) -> ApiResult<axum::Json<Object>> {
    let Some(decision) = Decision::parse(body.decision.trim()) else {
        return Err(ApiError::bad_request(format!(
            "decision={:?} is not one of approve, revoke, dont_know",
            body.decision.chars().take(40).collect::<String>()
        )));
    };
    note.add("decision", body.decision.trim());
    let by = person(&granted);
    super::db(&state, move |store| -> ApiResult<Object> {
        reviews::decide(&store, id, item, decision, &body.justification, &by).map_err(refused)?;
        let detail = detail(&*store.connection()?, id, &granted)?;
        detail
            .items
            .into_iter()
            .find(|i| i.get("item_id").and_then(|v| v.as_i64()) == Some(item))
            .ok_or_else(|| ApiError::not_found(format!("access review {id} has no item {item}")))
    })
    .await
    .map(axum::Json)
}

/// Completes a review now; items without a decision stay not reviewed.
#[utoipa::path(post, path = "/api/reviews/{id}/complete", tag = "reviews",
    params(("id" = i64, Path, description = "Review id")),
    request_body = Empty,
    security(("entra" = ["TokenTrail.Admin"])),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn complete(
    State(state): State<AppState>,
    Extension(granted): Extension<Granted>,
    Path(id): Path<i64>,
    Json(_empty): Json<Empty>,
) -> ApiResult<axum::Json<Object>> {
    let by = person(&granted);
    super::db(&state, move |store| -> ApiResult<Object> {
        reviews::complete(&store, id, &by).map_err(refused)?;
        summaries(&*store.connection()?, Some(id), &granted)?
            .pop()
            .ok_or_else(|| ApiError::not_found(format!("no access review {id}")))
    })
    .await
    .map(axum::Json)
}

/// A review's decisions as Microsoft Graph's `accessReviewInstanceDecisionItem` collection.
#[utoipa::path(get, path = "/api/reviews/{id}/decisions", tag = "reviews",
    params(("id" = i64, Path, description = "Review id")),
    security(("entra" = ["TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn decisions(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let found = super::db(&state, move |store| -> ApiResult<serde_json::Value> {
        reviews::graph::decisions(&*store.connection()?, id)?
            .ok_or_else(|| ApiError::not_found(format!("no access review {id}")))
    })
    .await?;
    rows.add(found["value"].as_array().map_or(0, |v| v.len() as i64));
    Ok(axum::Json(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_dates_are_days_or_times_in_the_next_year() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(due("2026-12-06", now).unwrap().to_rfc3339(), "2026-12-06T23:59:59+00:00");
        assert_eq!(due("2026-12-05T12:00:00Z", now).unwrap().to_rfc3339(), "2026-12-05T12:00:00+00:00");
        for bad in ["2026-12-04", "2028-01-01", "tomorrow", "", "2026-13-01", "'; DROP TABLE access_reviews; --"] {
            assert!(due(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn reviewers_are_object_ids() {
        assert!(uuid_shaped("0d9a2c4e-1111-4b2c-9d3e-0123456789ab").is_some());
        for bad in
            ["", "someone@contoso.com", "0d9a2c4e11114b2c9d3e0123456789ab", "0d9a2c4e-1111-4b2c-9d3e-0123456789ag"]
        {
            assert!(uuid_shaped(bad).is_none(), "{bad}");
        }
    }
}
