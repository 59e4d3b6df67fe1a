//! Incidents: related findings as one story (`crate::rules::incidents` groups them). The
//! list leads the overview; an incident's page answers who, what, from where, how it
//! started and whether it is still going on; triage (owner, acknowledge, resolve, reopen,
//! in bulk too) changes each of its findings, which keep their own history.

use super::filter;
use super::findings::page;
use super::results::{Object, RowCount, objects};
use super::{AuditNote, Granted};
use crate::http::error::{ApiError, ApiResult, Json, Path, Query};
use crate::http::state::AppState;
use crate::rules::incidents::{self as grouping, Action, IncidentRefused};
use axum::Extension;
use axum::extract::State;
use chrono::{DateTime, TimeDelta, Utc};
use duckdb::types::Value;
use serde::{Deserialize, Serialize};
use serde_json::{Value as JsonValue, json};
use std::collections::{BTreeSet, HashMap};
use utoipa::{IntoParams, ToSchema};

/// An incident whose principals or addresses had an event this recently is active.
pub const ACTIVE_WITHIN: TimeDelta = TimeDelta::minutes(15);

const COLUMNS: &str = "s.id, s.severity, s.status, s.owner, s.owner_set_by, s.owner_set_at, s.first_seen, s.last_seen,
    s.findings, s.open_findings, s.events, s.created_at, s.updated_at";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Comma-separated statuses: open, acknowledged, resolved, suppressed, withdrawn.
    pub status: Option<String>,
    /// Comma-separated severities: low, medium, high, critical.
    pub severity: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Incidents, most recently active first; each with its story line's steps, principals
/// (with names), addresses and accounts.
#[utoipa::path(get, path = "/api/incidents", tag = "incidents", params(ListQuery),
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = super::findings::Page), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<super::findings::Page>> {
    let limit = filter::limit(q.limit, 50, 500)?;
    let mut f = super::findings::triage_filter("s", &q.status, &q.severity, &q.cursor)?;
    let rest = f.sql_limited("s.last_seen DESC, s.id DESC", limit + 1);
    let sql = format!("SELECT {COLUMNS}, epoch_us(s.last_seen) AS _sort FROM incident_status s {rest}");
    let mut found = super::db(&state, move |store| -> ApiResult<Vec<Object>> {
        let conn = store.connection()?;
        let mut found = objects(&conn, &sql, &f.params)?;
        describe(&conn, &mut found)?;
        Ok(found)
    })
    .await?;
    Ok(axum::Json(page(&mut found, limit, &rows)))
}

/// Adds to each incident row its steps (findings in the order they began), title,
/// principals with names, addresses and accounts.
fn describe(conn: &duckdb::Connection, incidents: &mut [Object]) -> ApiResult<()> {
    let ids: Vec<i64> = incidents.iter().filter_map(|i| i.get("id")?.as_i64()).collect();
    if ids.is_empty() {
        return Ok(());
    }
    let members =
        objects(conn, include_str!("sql/incident_members_of.sql"), &[Value::Text(JsonValue::from(ids).to_string())])?;
    let principals: BTreeSet<String> =
        members.iter().filter_map(|m| m.get("principal_id")?.as_str().map(str::to_string)).collect();
    let names = names(conn, &principals)?;
    for incident in incidents.iter_mut() {
        let id = incident.get("id").and_then(|v| v.as_i64());
        let mine: Vec<&Object> =
            members.iter().filter(|m| m.get("incident_id").and_then(|v| v.as_i64()) == id).collect();
        let story = Story::of(&mine, &names);
        incident.insert("title".into(), story.title().into());
        incident.insert("steps".into(), story.steps.into());
        incident.insert("principals".into(), story.principals.into());
        incident.insert("addresses".into(), story.addresses.into_iter().collect::<Vec<_>>().into());
        incident.insert("accounts".into(), story.accounts.into_iter().collect::<Vec<_>>().into());
    }
    Ok(())
}

/// The latest name of each principal.
fn names(conn: &duckdb::Connection, principals: &BTreeSet<String>) -> ApiResult<HashMap<String, String>> {
    if principals.is_empty() {
        return Ok(HashMap::new());
    }
    let list = JsonValue::from(principals.iter().cloned().collect::<Vec<_>>()).to_string();
    let found = objects(conn, include_str!("sql/principal_names.sql"), &[Value::Text(list)])?;
    Ok(found
        .into_iter()
        .filter_map(|r| Some((r.get("principal_id")?.as_str()?.to_string(), r.get("name")?.as_str()?.to_string())))
        .collect())
}

/// What an incident's findings say together.
struct Story {
    steps: Vec<JsonValue>,
    principals: Vec<JsonValue>,
    addresses: BTreeSet<String>,
    accounts: BTreeSet<String>,
}

impl Story {
    fn of(members: &[&Object], names: &HashMap<String, String>) -> Story {
        let mut story =
            Story { steps: Vec::new(), principals: Vec::new(), addresses: BTreeSet::new(), accounts: BTreeSet::new() };
        let mut seen = BTreeSet::new();
        for m in members {
            let text = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            story.steps.push(json!({
                "finding_id": m.get("id"), "rule_id": text("rule_id"), "title": text("title"),
                "severity": text("severity"), "status": text("status"),
            }));
            let entity = text("entity");
            story.addresses.extend(grouping::entity_part(&entity, "ip").map(str::to_string));
            story.accounts.extend(grouping::entity_part(&entity, "account").map(str::to_string));
            if let Some(p) = m.get("principal_id").and_then(|v| v.as_str())
                && seen.insert(p.to_string())
            {
                story.principals.push(json!({"id": p, "name": names.get(p)}));
            }
        }
        story
    }

    /// The rules' titles in the order they began ("A → B → C"), then who or where.
    fn title(&self) -> String {
        let mut titles: Vec<&str> = Vec::new();
        for step in &self.steps {
            let title = step["title"].as_str().unwrap_or_default();
            if !titles.contains(&title) {
                titles.push(title);
            }
        }
        let mut text = titles.iter().take(3).copied().collect::<Vec<_>>().join(" → ");
        if titles.len() > 3 {
            text.push_str(&format!(" (+{} more)", titles.len() - 3));
        }
        let who = self
            .principals
            .first()
            .map(|p| p["name"].as_str().or(p["id"].as_str()).unwrap_or_default().to_string())
            .or_else(|| self.addresses.first().cloned());
        match who {
            Some(who) => format!("{text}: {who}"),
            None => text,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DetailQuery {
    /// The story's page: events to skip (default 0).
    pub offset: Option<i64>,
    /// The story's page size, 1 to 1,000 (default 200).
    pub limit: Option<i64>,
}

/// One incident: its findings, its story (evidence events of all its findings in time
/// order, paged), whom its sign-ins went after, what was done to data, whether it is still
/// going on, and its log.
#[derive(Serialize, ToSchema)]
pub struct Detail {
    /// The incident as listed, plus `latest_event` (its principals' or addresses' latest
    /// request or sign-in), `active` (that within 15 minutes of `now`) and `now`.
    #[schema(value_type = Object)]
    pub incident: Object,
    #[schema(value_type = Vec<Object>)]
    pub findings: Vec<Object>,
    /// A page of evidence events, each with its row (`row`).
    #[schema(value_type = Vec<Object>)]
    pub story: Vec<Object>,
    /// Evidence events in all; page with `offset`.
    pub story_total: i64,
    #[schema(value_type = Vec<Object>)]
    pub targets: Vec<Object>,
    #[schema(value_type = Vec<Object>)]
    pub reads: Vec<Object>,
    #[schema(value_type = Vec<Object>)]
    pub log: Vec<Object>,
}

#[utoipa::path(get, path = "/api/incidents/{id}", tag = "incidents",
    params(("id" = i64, Path, description = "Incident id"), DetailQuery),
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = Detail), (status = 404, body = crate::http::error::ErrorBody),
              (status = 409, description = "merged into another incident", body = crate::http::error::ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Path(id): Path<i64>,
    Query(q): Query<DetailQuery>,
) -> ApiResult<axum::Json<Detail>> {
    let limit = filter::limit(q.limit, 200, 1000)?;
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::bad_request(format!("offset={offset} is negative: give 0 or more")));
    }
    let detail = super::db(&state, move |store| -> ApiResult<Detail> {
        let conn = store.connection()?;
        let mut incident =
            objects(&conn, &format!("SELECT {COLUMNS} FROM incident_status s WHERE s.id = ?"), &[Value::BigInt(id)])?
                .pop()
                .ok_or_else(|| missing(&conn, id))?;
        describe(&conn, std::slice::from_mut(&mut incident))?;
        let findings = objects(&conn, include_str!("sql/incident_findings.sql"), &[Value::BigInt(id)])?;
        let mut story = objects(
            &conn,
            include_str!("sql/incident_evidence.sql"),
            &[Value::BigInt(id), Value::BigInt(limit), Value::BigInt(offset)],
        )?;
        super::findings::attach_rows(&conn, &mut story)?;
        let story_total = conn.query_row(include_str!("sql/incident_evidence_count.sql"), [id], |r| r.get(0))?;
        let targets = objects(&conn, include_str!("sql/incident_targets.sql"), &[Value::BigInt(id)])?;
        let who = activity_of(&incident);
        let reads = objects(&conn, include_str!("sql/incident_reads.sql"), &who)?;
        let latest = latest_event(&conn, &who)?;
        let now = Utc::now();
        incident.insert("latest_event".into(), latest.map(|t| t.to_rfc3339()).into());
        incident.insert("active".into(), latest.is_some_and(|t| now - t <= ACTIVE_WITHIN).into());
        incident.insert("now".into(), now.to_rfc3339().into());
        let log = objects(&conn, include_str!("sql/incident_log.sql"), &[Value::BigInt(id)])?;
        Ok(Detail { incident, findings, story, story_total, targets, reads, log })
    })
    .await?;
    rows.add(1 + detail.findings.len() as i64 + detail.story.len() as i64);
    Ok(axum::Json(detail))
}

/// Why incident `id` is not listed: merged into another (409 naming it), or unknown (404).
fn missing(conn: &duckdb::Connection, id: i64) -> ApiError {
    let merged: Option<Option<i64>> =
        conn.query_row("SELECT merged_into FROM incidents WHERE id = ?", [id], |r| r.get(0)).ok();
    match merged {
        Some(Some(into)) => ApiError::conflict(IncidentRefused::Merged { id, into }.to_string()),
        _ => ApiError::not_found(format!("there is no incident {id}")),
    }
}

/// A triage action: why (the next person on call reads it), and for a resolve of an
/// incident that is still active, that the caller means it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Triage {
    /// Why (1 to 4,000 characters).
    pub comment: String,
    /// Resolve although its principals or addresses had events in the last 15 minutes.
    #[serde(default)]
    pub confirm: bool,
}

/// What a triage action changed: the findings changed, those someone else changed first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Triaged {
    pub incident: i64,
    pub changed: Vec<i64>,
    pub skipped: Vec<i64>,
}

fn comment_of(text: &str) -> ApiResult<String> {
    let comment = text.trim().to_string();
    if comment.is_empty() || comment.chars().count() > 4000 {
        return Err(ApiError::bad_request(
            "comment must be 1 to 4,000 characters: say why, for whoever reads this next",
        ));
    }
    Ok(comment)
}

/// Takes `action` on incident `id` in the calling (database) thread.
fn act(store: &crate::store::Store, id: i64, action: Action, who: &str, triage: &Triage) -> ApiResult<Triaged> {
    if action == Action::Resolve && !triage.confirm {
        let conn = store.connection()?;
        if let Some(ago) = still_active(&conn, id)? {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "still_active",
                format!(
                    "incident {id} is still active: its last event was {} ago; resolve it anyway with \"confirm\": true, or acknowledge it",
                    human(ago)
                ),
            ));
        }
    }
    let done = grouping::triage(store, id, action, who, &triage.comment).map_err(refused)?;
    Ok(Triaged { incident: id, changed: done.changed, skipped: done.skipped })
}

/// An incident action's refusal as the API says it: 404 for an unknown incident, 409 for
/// the rest (merged, nothing to change).
fn refused(error: anyhow::Error) -> ApiError {
    match error.downcast_ref::<IncidentRefused>() {
        Some(refused @ IncidentRefused::NoIncident(_)) => ApiError::not_found(refused.to_string()),
        Some(refused) => ApiError::conflict(refused.to_string()),
        None => error.into(),
    }
}

/// How long ago the incident's latest event was, if within [`ACTIVE_WITHIN`].
fn still_active(conn: &duckdb::Connection, id: i64) -> ApiResult<Option<TimeDelta>> {
    let mut incident =
        objects(conn, &format!("SELECT {COLUMNS} FROM incident_status s WHERE s.id = ?"), &[Value::BigInt(id)])?;
    let Some(incident) = incident.first_mut() else { return Ok(None) };
    describe(conn, std::slice::from_mut(incident))?;
    let latest = latest_event(conn, &activity_of(incident))?;
    Ok(latest.map(|t| Utc::now() - t).filter(|ago| *ago <= ACTIVE_WITHIN))
}

/// What identifies the incident's activity: since when, its principals and its addresses
/// (JSON arrays), the parameters of `incident_reads.sql` and, twice, `incident_latest.sql`.
fn activity_of(incident: &Object) -> [Value; 3] {
    let since = incident.get("first_seen").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let principals: Vec<&str> = incident
        .get("principals")
        .and_then(|v| v.as_array())
        .map(|ps| ps.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    let addresses = incident.get("addresses").cloned().unwrap_or_else(|| json!([]));
    [Value::Text(since), Value::Text(JsonValue::from(principals).to_string()), Value::Text(addresses.to_string())]
}

/// The latest event of the incident's principals or addresses, request or sign-in.
fn latest_event(conn: &duckdb::Connection, who: &[Value; 3]) -> ApiResult<Option<DateTime<Utc>>> {
    let latest: Option<i64> = conn.query_row(
        include_str!("sql/incident_latest.sql"),
        duckdb::params_from_iter(who.iter().chain(who.iter())),
        |r| r.get(0),
    )?;
    Ok(latest.and_then(DateTime::from_timestamp_micros))
}

fn human(ago: TimeDelta) -> String {
    let s = ago.num_seconds().max(0);
    if s < 120 { format!("{s} s") } else { format!("{} min", s / 60) }
}

macro_rules! incident_action {
    ($name:ident, $path:literal, $action:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "incidents",
                            params(("id" = i64, Path, description = "Incident id")),
                            request_body = Triage,
                            security(("entra" = ["TokenTrail.Responder"])),
                            responses((status = 200, body = Triaged), (status = 400, body = crate::http::error::ErrorBody),
                                      (status = 404, body = crate::http::error::ErrorBody),
                                      (status = 409, body = crate::http::error::ErrorBody)))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(granted): Extension<Granted>,
            Extension(note): Extension<AuditNote>,
            Path(id): Path<i64>,
            Json(body): Json<Triage>,
        ) -> ApiResult<axum::Json<Triaged>> {
            let triage = Triage { comment: comment_of(&body.comment)?, confirm: body.confirm };
            note.add("comment", triage.comment.clone());
            let who = granted.who();
            super::db(&state, move |store| act(&store, id, $action, &who, &triage)).await.map(axum::Json)
        }
    };
}

incident_action!(
    acknowledge,
    "/api/incidents/{id}/acknowledge",
    Action::Acknowledge,
    "Someone is on it: each open finding of the incident becomes acknowledged."
);
incident_action!(
    resolve,
    "/api/incidents/{id}/resolve",
    Action::Resolve,
    "Dealt with: each open or acknowledged finding becomes resolved. Refused (409 `still_active`) while its principals or addresses had events in the last 15 minutes, unless `confirm` is true."
);
incident_action!(
    reopen,
    "/api/incidents/{id}/reopen",
    Action::Reopen,
    "Back to open: each resolved or suppressed finding of the incident."
);

/// Who owns an incident; `null` clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// A person's name or address, 1 to 200 characters; `null` for nobody.
    pub owner: Option<String>,
}

/// Sets who owns the incident.
#[utoipa::path(post, path = "/api/incidents/{id}/owner", tag = "incidents",
    params(("id" = i64, Path, description = "Incident id")), request_body = Owner,
    security(("entra" = ["TokenTrail.Responder"])),
    responses((status = 200, body = Object), (status = 400, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody), (status = 409, body = crate::http::error::ErrorBody)))]
pub async fn owner(
    State(state): State<AppState>,
    Extension(granted): Extension<Granted>,
    Extension(note): Extension<AuditNote>,
    Path(id): Path<i64>,
    Json(body): Json<Owner>,
) -> ApiResult<axum::Json<Object>> {
    let owner = body.owner.map(|o| o.trim().to_string());
    if let Some(o) = &owner
        && (o.is_empty() || o.chars().count() > 200 || o.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request("owner must be 1 to 200 printable characters, or null for nobody"));
    }
    note.add("owner", owner.clone().unwrap_or_default());
    let who = granted.who();
    super::db(&state, move |store| -> ApiResult<Object> {
        grouping::set_owner(&store, id, owner.as_deref(), &who).map_err(refused)?;
        let conn = store.connection()?;
        objects(&conn, &format!("SELECT {COLUMNS} FROM incident_status s WHERE s.id = ?"), &[Value::BigInt(id)])?
            .pop()
            .ok_or_else(|| ApiError::not_found(format!("there is no incident {id}")))
    })
    .await
    .map(axum::Json)
}

/// One action on several incidents.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Bulk {
    /// 1 to 200 incident ids.
    pub ids: Vec<i64>,
    /// `acknowledge`, `resolve` or `reopen`.
    pub action: String,
    pub comment: String,
    #[serde(default)]
    pub confirm: bool,
}

/// Each incident's outcome: what changed, or the error that refused it.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<JsonValue>,
}

/// Takes one action on each of several incidents; one refused does not stop the others.
#[utoipa::path(post, path = "/api/incidents/bulk", tag = "incidents", request_body = Bulk,
    security(("entra" = ["TokenTrail.Responder"])),
    responses((status = 200, body = BulkResult), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn bulk(
    State(state): State<AppState>,
    Extension(granted): Extension<Granted>,
    Extension(note): Extension<AuditNote>,
    Json(body): Json<Bulk>,
) -> ApiResult<axum::Json<BulkResult>> {
    let action = match body.action.as_str() {
        "acknowledge" => Action::Acknowledge,
        "resolve" => Action::Resolve,
        "reopen" => Action::Reopen,
        other => {
            return Err(ApiError::bad_request(format!("action={other:?} is not one of acknowledge, resolve, reopen")));
        }
    };
    let ids: Vec<i64> = body.ids.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
    if ids.is_empty() || ids.len() > 200 {
        return Err(ApiError::bad_request("ids must name 1 to 200 incidents"));
    }
    let triage = Triage { comment: comment_of(&body.comment)?, confirm: body.confirm };
    note.add("comment", triage.comment.clone());
    note.add("incidents", JsonValue::from(ids.clone()).to_string());
    let who = granted.who();
    let results = super::db(&state, move |store| -> ApiResult<Vec<JsonValue>> {
        Ok(ids
            .iter()
            .map(|&id| match act(&store, id, action, &who, &triage) {
                Ok(done) => json!({"incident": id, "changed": done.changed, "skipped": done.skipped}),
                Err(error) => json!({"incident": id, "error": {"code": error.code, "message": error.message}}),
            })
            .collect())
    })
    .await?;
    Ok(axum::Json(BulkResult { results }))
}
