//! One principal over a period: who it is, where it signed in from, what it touched,
//! its volume per day, its findings, and one timeline of all of it.

use super::filter;
use super::results::{RowCount, objects};
use crate::http::error::{ApiError, ApiResult, Path, Query};
use crate::http::state::AppState;
use axum::Extension;
use axum::extract::State;
use duckdb::types::Value;
use serde::Serialize;
use utoipa::ToSchema;

use super::results::Object;

#[derive(Serialize, ToSchema)]
pub struct Profile {
    /// From the `principals` view: kind, names, app, first and last seen, counts.
    #[schema(value_type = Object)]
    pub principal: Object,
    pub from: String,
    pub to: String,
    /// Sign-ins by address, country, city and app, with counts and risk.
    #[schema(value_type = Vec<Object>)]
    pub signin_sources: Vec<Object>,
    /// Data operations by account, database, collection and operation.
    #[schema(value_type = Vec<Object>)]
    pub data_access: Vec<Object>,
    /// User agents of its requests and sign-ins.
    #[schema(value_type = Vec<Object>)]
    pub user_agents: Vec<Object>,
    /// Requests, bytes out and sign-ins per day, with the median of the days before `from` as baseline.
    #[schema(value_type = Vec<Object>)]
    pub daily: Vec<Object>,
    #[schema(value_type = Vec<Object>)]
    pub findings: Vec<Object>,
    /// Sign-ins, data operations and findings in one list, newest first (500 at most).
    #[schema(value_type = Vec<Object>)]
    pub timeline: Vec<Object>,
}

#[utoipa::path(get, path = "/api/principals/{id}", tag = "principals",
    params(("id" = String, Path, description = "Principal id (Entra object id)"), filter::PeriodQuery),
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor"])),
    responses((status = 200, body = Profile), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn profile(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Path(id): Path<String>,
    Query(q): Query<filter::PeriodQuery>,
) -> ApiResult<axum::Json<Profile>> {
    let to = q.to.as_deref().map(|t| crate::http::error::parse_time("to", t)).transpose()?;
    let from = q.from.as_deref().map(|t| crate::http::error::parse_time("from", t)).transpose()?;
    let profile = super::db(&state, move |store| -> ApiResult<Profile> {
        let conn = store.connection()?;
        // The `principals` view's columns for one principal, filtered before grouping
        // (the view itself groups every principal first).
        let principal = objects(
            &conn,
            include_str!("sql/principal_profile.sql"),
            &[Value::Text(id.clone()), Value::Text(id.clone())],
        )?
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("no sign-in or data operation of principal {id:?} is stored")))?;
        let last_seen = principal
            .get("last_seen")
            .and_then(|v| v.as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        let to = to.unwrap_or_else(|| last_seen.map_or(0, |t| t.timestamp_micros() + 1));
        let from = from.unwrap_or(to - 14 * 86_400_000_000);
        if from >= to {
            return Err(ApiError::bad_request("from must be before to"));
        }
        let p = [Value::Text(id.clone()), filter::timestamp(from), filter::timestamp(to)];
        let day = filter::timestamp(from - from.rem_euclid(86_400_000_000));
        let signin_sources = objects(&conn, include_str!("sql/principal_signin_sources.sql"), &p)?;
        let data_access = objects(&conn, include_str!("sql/principal_data_access.sql"), &p)?;
        let user_agents = objects(&conn, include_str!("sql/principal_user_agents.sql"), &p)?;
        let daily =
            objects(&conn, include_str!("sql/principal_daily.sql"), &[p[0].clone(), p[1].clone(), p[2].clone(), day])?;
        let findings = objects(&conn, include_str!("sql/principal_findings.sql"), &p)?;
        let timeline = objects(&conn, include_str!("sql/principal_timeline.sql"), &p)?;
        let iso =
            |micros: i64| chrono::DateTime::from_timestamp_micros(micros).map(|t| t.to_rfc3339()).unwrap_or_default();
        Ok(Profile {
            principal,
            from: iso(from),
            to: iso(to),
            signin_sources,
            data_access,
            user_agents,
            daily,
            findings,
            timeline,
        })
    })
    .await?;
    rows.add((profile.timeline.len() + profile.signin_sources.len() + profile.data_access.len()) as i64);
    Ok(axum::Json(profile))
}
