//! One principal over a period: who it is, where it signed in from, what it touched,
//! its volume per day, its findings, and one timeline of all of it.

use super::filter;
use super::rows::{RowCount, objects};
use crate::http::error::{ApiError, ApiResult, Path, Query};
use crate::http::state::AppState;
use axum::Extension;
use axum::extract::State;
use duckdb::types::Value;
use serde::Serialize;
use utoipa::ToSchema;

use super::rows::Object;

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
        let principal = objects(&conn, include_str!("sql/principal_profile.sql"), &[Value::Text(id.clone()), Value::Text(id.clone())])?
            .pop()
            .ok_or_else(|| ApiError::not_found(format!("no sign-in or data operation of principal {id:?} is stored")))?;
        let last_seen = principal.get("last_seen").and_then(|v| v.as_str()).and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        let to = to.unwrap_or_else(|| last_seen.map_or(0, |t| t.timestamp_micros() + 1));
        let from = from.unwrap_or(to - 14 * 86_400_000_000);
        if from >= to {
            return Err(ApiError::bad_request("from must be before to"));
        }
        let p = [Value::Text(id.clone()), filter::timestamp(from), filter::timestamp(to)];
        let period = "principal_id = ? AND time >= ? AND time < ?";
        let signin_sources = objects(
            &conn,
            &format!(
                "SELECT ip_address, country, city, app_display_name, kind, count(*) AS signins,
                        count(*) FILTER (WHERE coalesce(error_code, 0) <> 0) AS failed,
                        max(risk_level) FILTER (WHERE risk_level NOT IN ('none', 'hidden')) AS risk,
                        min(time) AS first, max(time) AS last
                 FROM signins WHERE {period} GROUP BY ALL ORDER BY last DESC LIMIT 200"
            ),
            &p,
        )?;
        let data_access = objects(
            &conn,
            &format!(
                "SELECT account, database_name, collection_name, operation, count(*) AS requests,
                        sum(response_length) AS bytes_out, count(*) FILTER (WHERE status_code = 403) AS denied,
                        min(time) AS first, max(time) AS last
                 FROM cosmos_requests WHERE {period} GROUP BY ALL ORDER BY requests DESC LIMIT 500"
            ),
            &p,
        )?;
        let user_agents = objects(
            &conn,
            &format!(
                "SELECT user_agent, 'data' AS seen_in, count(*) AS events, max(time) AS last FROM cosmos_requests
                 WHERE {period} GROUP BY ALL
                 UNION ALL
                 SELECT user_agent, 'signin', count(*), max(time) FROM signins WHERE {period} GROUP BY ALL
                 ORDER BY events DESC LIMIT 100"
            ),
            &[p.clone(), p.clone()].concat(),
        )?;
        let daily = objects(
            &conn,
            "WITH days AS (
                SELECT date_trunc('day', time::TIMESTAMP) AS day, count(*) AS requests, sum(response_length) AS bytes_out
                FROM cosmos_requests WHERE principal_id = ? AND time >= utc_add(?, - INTERVAL 28 DAY) AND time < ? GROUP BY 1
             ), s AS (
                SELECT date_trunc('day', time::TIMESTAMP) AS day, count(*) AS signins
                FROM signins WHERE principal_id = ? AND time >= ? AND time < ? GROUP BY 1
             ), baseline AS (
                SELECT median(requests) AS baseline_requests, median(bytes_out) AS baseline_bytes_out
                FROM days WHERE day < ?::TIMESTAMP
             )
             SELECT coalesce(d.day, s.day) AS day, coalesce(d.requests, 0) AS requests,
                    coalesce(d.bytes_out, 0) AS bytes_out, coalesce(s.signins, 0) AS signins,
                    b.baseline_requests, b.baseline_bytes_out
             FROM days d FULL JOIN s USING (day), baseline b
             WHERE coalesce(d.day, s.day) >= ?::TIMESTAMP
             ORDER BY day",
            &[
                p[0].clone(),
                p[1].clone(),
                p[2].clone(),
                p[0].clone(),
                p[1].clone(),
                p[2].clone(),
                p[1].clone(),
                filter::timestamp(from - from.rem_euclid(86_400_000_000)),
            ],
        )?;
        let findings = objects(
            &conn,
            "SELECT id, rule_id, title, severity, status, entity, first_seen, last_seen, count FROM findings
             WHERE principal_id = ? AND last_seen >= ? AND first_seen < ? ORDER BY last_seen DESC LIMIT 200",
            &p,
        )?;
        let timeline = objects(
            &conn,
            &format!(
                "SELECT * FROM (
                    SELECT time, 'signin' AS type, rowid AS row_id,
                           concat_ws(' ', kind, CASE WHEN coalesce(error_code, 0) <> 0 THEN 'failed ' || error_code END,
                                     'from', coalesce(ip_address, '(no address)'), country, 'to', app_display_name) AS what
                    FROM signins WHERE {period}
                    UNION ALL
                    SELECT time, 'data', rowid,
                           concat_ws(' ', operation, status_code, account || '/' || database_name || '/' || collection_name,
                                     'from', client_ip, response_length || ' bytes out')
                    FROM cosmos_requests WHERE {period}
                    UNION ALL
                    SELECT last_seen, 'finding', id, severity || ' ' || title || ' (' || status || ')'
                    FROM findings WHERE principal_id = ? AND last_seen >= ? AND last_seen < ?
                 ) ORDER BY time DESC LIMIT 500"
            ),
            &[p.clone(), p.clone(), p.clone()].concat(),
        )?;
        let iso = |micros: i64| {
            chrono::DateTime::from_timestamp_micros(micros).map(|t| t.to_rfc3339()).unwrap_or_default()
        };
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
