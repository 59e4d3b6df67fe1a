//! One principal over a period: who it is, where it signed in from, what it touched,
//! its volume per day, its findings, and one timeline of all of it; and the changes it
//! made and that were made to it (Activity log and Entra ID audit logs).

use super::filter;
use super::results::{RowCount, objects};
use crate::http::error::{ApiError, ApiResult, Path, Query};
use crate::http::state::AppState;
use axum::Extension;
use axum::extract::State;
use duckdb::types::Value;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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
    /// Requests, bytes out, sign-ins and failed sign-ins per hour of the period, oldest
    /// first, every hour listed (one without activity as zeros), each row's `start` the
    /// hour's start (UTC). Hours are cut at [`HOURLY_MAX_HOURS`] (14 days): a longer period
    /// is shown per day, and past [`HOURLY_MAX_BUCKETS`] days per a whole number of days, so
    /// never more than that many rows; `hourly_bucket_secs` says which. The first bucket
    /// starts at the hour (or day) `from` falls in, but only events from `from` to `to` count.
    #[schema(value_type = Vec<Object>)]
    pub hourly: Vec<Object>,
    /// The width of an `hourly` row in seconds: 3600 for a period of up to 14 days, else
    /// 86400 or a multiple of it.
    pub hourly_bucket_secs: i64,
    /// Its data-access addresses against its sign-in addresses in the period: each client
    /// address its Cosmos DB requests came from (requests, bytes out, accounts, first, last)
    /// with its sign-ins from that address if any (count, failed, kinds, apps), and each
    /// sign-in address never used for data access. `no_signin` is true for an address
    /// requests came from but no sign-in of the period did (its token was used from
    /// elsewhere); those come first. 300 addresses at most.
    #[schema(value_type = Vec<Object>)]
    pub addresses: Vec<Object>,
    #[schema(value_type = Vec<Object>)]
    pub findings: Vec<Object>,
    /// Sign-ins, data operations and findings in one list, newest first: a page of 500 at
    /// most, from `timeline_offset`.
    #[schema(value_type = Vec<Object>)]
    pub timeline: Vec<Object>,
    /// How many rows the timeline has in the period, all pages.
    pub timeline_total: i64,
    /// How many newer rows come before this page.
    pub timeline_offset: i64,
    /// Changes this principal made (it is the actor), newest first, 200 at most, whatever the
    /// period: role grants, key listings, group memberships, credentials, consents.
    pub changes_made: Vec<Change>,
    /// How many changes it made in all.
    pub changes_made_total: i64,
    /// Changes made to this principal (it is the target), newest first, 200 at most.
    pub changes_received: Vec<Change>,
    /// How many changes were made to it in all.
    pub changes_received_total: i64,
    /// What it may do, beside what it did: its data-plane role assignments with their use
    /// and recommendation (the access review of the last 90 days of data, whatever the
    /// period), and its Azure role assignments in force.
    pub entitlements: Entitlements,
    /// The Parquet lake's files read for the period's sign-ins and requests (retention moved
    /// them there), per table; empty when DuckDB alone answered.
    pub lake: Vec<crate::lake::view::Part>,
}

/// A principal's entitlements from the inventory.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Entitlements {
    /// The access review's period: 90 days up to the end of the data.
    pub since: String,
    pub until: String,
    /// Its data-plane role assignments in force at `until`, with use and recommendation.
    pub assignments: Vec<super::access::AssignmentReview>,
    /// Its Azure (control-plane) role assignments in force.
    pub azure_roles: Vec<AzureRole>,
}

/// An Azure role assignment of the principal, in force in the latest inventory.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AzureRole {
    pub assignment_id: String,
    pub principal_type: Option<String>,
    pub role_definition_id: String,
    /// The role's name when known (a built-in, or as `az` printed it).
    pub role_name: Option<String>,
    /// Subscription, resource group, account or below.
    pub scope: String,
    pub granted_since: Option<String>,
    /// The role may list the keys of the Cosmos DB accounts under its scope (cosmos_roles of kind 'keys').
    pub reads_keys: bool,
}

/// Principal `id`'s entitlements: the access review over the last 90 days of data, and its Azure roles.
fn entitlements(conn: &duckdb::Connection, id: &str) -> ApiResult<Entitlements> {
    let (since, until) = super::access::period(conn, super::access::DEFAULT_DAYS)?;
    let assignments = super::access::typed(
        objects(
            conn,
            include_str!("sql/principal_entitlements.sql"),
            &[Value::Text(id.to_owned()), filter::timestamp(since), filter::timestamp(until)],
        )?,
        "entitlement",
    )?;
    let azure_roles = super::access::typed(
        objects(conn, include_str!("sql/principal_azure_roles.sql"), &[Value::Text(id.to_owned())])?,
        "Azure role",
    )?;
    Ok(Entitlements { since: super::access::iso(since), until: super::access::iso(until), assignments, azure_roles })
}

/// The most hours `hourly` lists one by one: a longer period is shown per day.
pub const HOURLY_MAX_HOURS: i64 = 14 * 24;
/// The most rows `hourly` has: past this many days a row covers several days.
pub const HOURLY_MAX_BUCKETS: i64 = 400;

/// The buckets of the `hourly` chart of the period `from`..`to` (epoch microseconds): the
/// first bucket's start, a bucket's width and the end of the last bucket.
pub fn hourly_buckets(from: i64, to: i64) -> (i64, i64, i64) {
    const HOUR: i64 = 3_600_000_000;
    const DAY: i64 = 24 * HOUR;
    let width = if to - from <= HOURLY_MAX_HOURS * HOUR {
        HOUR
    } else {
        let start = from - from.rem_euclid(DAY);
        let days = (to - start + DAY - 1) / DAY;
        DAY * ((days + HOURLY_MAX_BUCKETS - 1) / HOURLY_MAX_BUCKETS).max(1)
    };
    let start = from - from.rem_euclid(width.min(DAY));
    let end = start + (to - start + width - 1) / width * width;
    (start, width, end)
}

/// The profile's `hourly` and `addresses`, from one query (one scan of the principal's requests
/// and one of its sign-ins): `params` are those of `principal_hours_addresses.sql`.
fn hours_and_addresses(conn: &duckdb::Connection, params: &[Value]) -> ApiResult<(Vec<Object>, Vec<Object>)> {
    const HOUR: [&str; 5] = ["start", "requests", "bytes_out", "signins", "failed_signins"];
    let (mut hours, mut addresses) = (Vec::new(), Vec::new());
    for mut row in objects(conn, include_str!("sql/principal_hours_addresses.sql"), params)? {
        let part = row.remove("part");
        row.remove("sort");
        if part.as_ref().and_then(|p| p.as_str()) == Some("hour") {
            row.retain(|k, _| HOUR.contains(&k.as_str()));
            hours.push(row);
        } else {
            row.remove("start");
            addresses.push(row);
        }
    }
    Ok((hours, addresses))
}

/// How many changes of each side a profile lists.
const CHANGES: i64 = 200;

/// One change from the `identity_changes` view: an Activity log operation (its final event)
/// or an Entra ID audit record.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Change {
    /// `control_changes` (Activity log) or `directory_changes` (Entra ID AuditLogs).
    pub source: String,
    /// The rowid of the change in `source` (what finding evidence's `row_id` names).
    pub change_row: i64,
    pub time: String,
    /// list_keys, read_only_keys, list_connection_strings, regenerate_key,
    /// data_role_assignment_write, role_assignment_write, account_write,
    /// diagnostic_setting_delete, group_member_added, app_role_assigned,
    /// sp_credentials_changed, consent, ... (migrations/0013_changes.sql).
    pub kind: String,
    /// The operation's name as logged.
    pub operation: String,
    /// Success, Failure, ... (Activity log) or success, failure (AuditLogs).
    pub result: Option<String>,
    pub succeeded: Option<bool>,
    /// Who made the change (Entra object id), its name and address.
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub actor_ip: Option<String>,
    /// The principal the change was made to: who was granted a role, added to a group, ...
    pub target_id: Option<String>,
    /// Its name when known (a sign-in name, or the audit log's).
    pub target_name: Option<String>,
    /// Activity log: the Cosmos DB account (or resource) changed.
    pub account: Option<String>,
    /// Role assignments: the role definition's GUID, and its name when it is a known Cosmos DB role.
    pub role: Option<String>,
    pub role_name: Option<String>,
    /// Role assignments: where the role applies.
    pub scope: Option<String>,
    /// Group membership: the group, and its name when the audit record carries it.
    pub group_id: Option<String>,
    pub group_name: Option<String>,
    /// App role assignments: the role's value.
    pub app_role: Option<String>,
    /// The `raw_events` rowid of the record as received.
    pub raw_row: Option<i64>,
}

/// The newest [`CHANGES`] changes principal `id` made (`side` "made") or received ("received"),
/// and how many there are in all.
fn changes(conn: &duckdb::Connection, id: &str, side: &str) -> ApiResult<(Vec<Change>, i64)> {
    let found = objects(
        conn,
        include_str!("sql/principal_changes.sql"),
        &[Value::Text(id.to_owned()), Value::Text(side.to_owned()), Value::BigInt(CHANGES)],
    )?;
    let total = found.first().and_then(|row| row.get("total")).and_then(|t| t.as_i64()).unwrap_or(0);
    let changes = found
        .into_iter()
        .map(|mut row| {
            row.remove("total");
            serde_json::from_value(serde_json::Value::Object(row))
                .map_err(|e| ApiError::internal(anyhow::anyhow!("a change row does not fit its schema: {e}")))
        })
        .collect::<ApiResult<Vec<Change>>>()?;
    Ok((changes, total))
}

/// The period of a principal's page, and which page of its timeline.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProfileQuery {
    /// Start (RFC 3339); 14 days before `to` by default.
    pub from: Option<String>,
    /// End, exclusive (RFC 3339); just after its newest event by default.
    pub to: Option<String>,
    /// Timeline rows to skip (newest first): 500 per page.
    pub timeline_offset: Option<i64>,
}

/// The one principal whose sign-in name (UPN) or display name is `name`, ignoring case;
/// `None` if none, a 400 naming them if several are.
pub fn lookup(conn: &duckdb::Connection, name: &str) -> ApiResult<Option<String>> {
    let found = objects(conn, include_str!("sql/principal_lookup.sql"), &[Value::Text(name.to_owned())])?;
    let ids: Vec<String> =
        found.iter().filter_map(|row| row.get("principal_id").and_then(|v| v.as_str()).map(str::to_owned)).collect();
    match ids.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        several => Err(ApiError::bad_request(format!(
            "{} principals are named {name:?}: open one by its id ({})",
            several.len(),
            several.join(", ")
        ))),
    }
}

#[utoipa::path(get, path = "/api/principals/{id}", tag = "principals",
    params(("id" = String, Path, description = "Principal id (Entra object id), or its UPN or display name (ignoring case)"), ProfileQuery),
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor"])),
    responses((status = 200, body = Profile), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn profile(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Path(id): Path<String>,
    Query(q): Query<ProfileQuery>,
) -> ApiResult<axum::Json<Profile>> {
    let offset = match q.timeline_offset {
        None => 0,
        Some(n) if n >= 0 => n,
        Some(n) => return Err(ApiError::bad_request(format!("timeline_offset={n} is out of range; use 0 or more"))),
    };
    let to = q.to.as_deref().map(|t| crate::http::error::parse_time("to", t)).transpose()?;
    let from = q.from.as_deref().map(|t| crate::http::error::parse_time("from", t)).transpose()?;
    let on = state.clone();
    let profile = super::db(&state, move |store| -> ApiResult<Profile> {
        let conn = store.connection()?;
        const TABLES: [&str; 2] = ["cosmos_requests", "signins"];
        // A period asked for reaches the lake from the start; without one, the principal
        // is found in DuckDB and its last 14 days may reach it (below).
        match from {
            Some(from) => super::lake_scope(&on, &conn, &TABLES, (Some(from), to), false)?,
            None => super::others_scope(&on, &conn, &TABLES, false)?,
        };
        // The `principals` view's columns for one principal, filtered before grouping
        // (the view itself groups every principal first).
        let one = |id: &str| {
            objects(
                &conn,
                include_str!("sql/principal_profile.sql"),
                &[Value::Text(id.to_owned()), Value::Text(id.to_owned())],
            )
        };
        let mut id = id;
        let mut principal = one(&id)?.pop();
        // No principal has that id: it may be a UPN or a display name, as on-call is told.
        if principal.is_none()
            && let Some(found) = lookup(&conn, &id)?
        {
            principal = one(&found)?.pop();
            id = found;
        }
        // One that never signed in nor touched data may still have made or received changes, or
        // hold a role assignment it has not used.
        let principal = match principal {
            Some(principal) => principal,
            None => objects(&conn, include_str!("sql/principal_elsewhere.sql"), &[Value::Text(id.clone())])?
                .pop()
                .ok_or_else(|| {
                    let older = if on.lake.is_some() && from.is_none() {
                        "; rows past retention are in the Parquet lake: give from= to search them too"
                    } else {
                        ""
                    };
                    ApiError::not_found(format!(
                        "no sign-in, data operation, change or role assignment of principal {id:?} is stored{older}"
                    ))
                })?,
        };
        let last_seen = principal
            .get("last_seen")
            .and_then(|v| v.as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        let to = match (to, last_seen) {
            (Some(to), _) => to,
            (None, Some(t)) => t.timestamp_micros() + 1,
            // known only from the inventory: the end of the data
            (None, None) => super::access::period(&conn, 0)?.1,
        };
        let from = from.unwrap_or(to - 14 * 86_400_000_000);
        if from >= to {
            return Err(ApiError::bad_request("from must be before to"));
        }
        // The daily baseline reads the 28 days before `from` too.
        let since = from - 28 * 86_400_000_000;
        let scope = super::lake_scope(&on, &conn, &TABLES, (Some(since), Some(to)), false)?;
        let p = [Value::Text(id.clone()), filter::timestamp(from), filter::timestamp(to)];
        let day = filter::timestamp(from - from.rem_euclid(86_400_000_000));
        let signin_sources = objects(&conn, include_str!("sql/principal_signin_sources.sql"), &p)?;
        let data_access = objects(&conn, include_str!("sql/principal_data_access.sql"), &p)?;
        let user_agents = objects(&conn, include_str!("sql/principal_user_agents.sql"), &p)?;
        let daily =
            objects(&conn, include_str!("sql/principal_daily.sql"), &[p[0].clone(), p[1].clone(), p[2].clone(), day])?;
        let (start, width, end) = hourly_buckets(from, to);
        let (hourly, addresses) = hours_and_addresses(
            &conn,
            &[p[0].clone(), p[1].clone(), p[2].clone(), Value::BigInt(start), Value::BigInt(width), Value::BigInt(end)],
        )?;
        let findings = objects(&conn, include_str!("sql/principal_findings.sql"), &p)?;
        let timeline = objects(
            &conn,
            include_str!("sql/principal_timeline.sql"),
            &[p[0].clone(), p[1].clone(), p[2].clone(), Value::BigInt(offset)],
        )?;
        let timeline_total: i64 = conn
            .prepare_cached(include_str!("sql/principal_timeline_count.sql"))?
            .query_row(duckdb::params_from_iter(p.iter()), |r| r.get(0))?;
        let (changes_made, changes_made_total) = changes(&conn, &id, "made")?;
        let (changes_received, changes_received_total) = changes(&conn, &id, "received")?;
        let entitlements = entitlements(&conn, &id)?;
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
            hourly,
            hourly_bucket_secs: width / 1_000_000,
            addresses,
            findings,
            timeline,
            timeline_total,
            timeline_offset: offset,
            changes_made,
            changes_made_total,
            changes_received,
            changes_received_total,
            entitlements,
            lake: scope.parts,
        })
    })
    .await?;
    rows.add(
        (profile.timeline.len()
            + profile.signin_sources.len()
            + profile.data_access.len()
            + profile.addresses.len()
            + profile.changes_made.len()
            + profile.changes_received.len()
            + profile.entitlements.assignments.len()
            + profile.entitlements.azure_roles.len()) as i64,
    );
    Ok(axum::Json(profile))
}

#[cfg(test)]
mod tests {
    use super::{HOURLY_MAX_BUCKETS, hourly_buckets};

    const HOUR: i64 = 3_600_000_000;
    const DAY: i64 = 24 * HOUR;

    #[test]
    fn hourly_buckets_are_hours_up_to_fourteen_days_then_days_and_never_too_many() {
        let from = 20_000 * DAY + 90 * 60_000_000; // 01:30
        assert_eq!(hourly_buckets(from, from + HOUR), (from - 30 * 60_000_000, HOUR, from + 30 * 60_000_000 + HOUR));
        let (start, width, end) = hourly_buckets(from, from + 14 * DAY);
        assert_eq!((width, (end - start) / width), (HOUR, 14 * 24 + 1));
        let (start, width, end) = hourly_buckets(from, from + 15 * DAY);
        assert_eq!((start, width, (end - start) / width), (20_000 * DAY, DAY, 16));
        for days in [399, 400, 401, 1000, 3650] {
            let (start, width, end) = hourly_buckets(from, from + days * DAY);
            assert_eq!(width % DAY, 0);
            assert!((end - start) / width <= HOURLY_MAX_BUCKETS, "{days} days");
            assert!(start <= from && end >= from + days * DAY);
        }
    }
}
