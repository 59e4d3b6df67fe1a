//! Granted against used: the inventory's Cosmos DB accounts (local auth, network access,
//! who may list their keys, key traffic) and the access review of every data-plane role
//! assignment (migrations/0014_inventory.sql, 0015_access.sql).

use super::results::{Object, RowCount, objects};
use crate::http::error::{ApiError, ApiResult, Query};
use crate::http::state::AppState;
use axum::Extension;
use axum::extract::State;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// The recommendations of `access_review`, in the order a reviewer acts on them.
pub const RECOMMENDATIONS: [&str; 6] = ["remove", "reader", "narrow scope", "unused so far", "group", "keep"];

/// Days a review spans when `days` is not given.
pub const DEFAULT_DAYS: i64 = 90;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccessQuery {
    /// Days the review looks back from the end of the data, 1 to 365 (default 90).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 365)]
    pub days: Option<String>,
}

/// The period of a review: `until` the end of the data (now when there is none), `since`
/// `days` before it; both in microseconds since the epoch.
pub(crate) fn period(conn: &duckdb::Connection, days: i64) -> ApiResult<(i64, i64)> {
    let end = objects(conn, include_str!("sql/access_clock.sql"), &[])?
        .pop()
        .and_then(|row| row.get("history_end").and_then(|v| v.as_i64()));
    let until = end.unwrap_or_else(|| chrono::Utc::now().timestamp_micros());
    Ok((until - days * 86_400_000_000, until))
}

/// `days` as the caller sent it, checked.
fn days(text: Option<&str>) -> ApiResult<i64> {
    let Some(text) = text else { return Ok(DEFAULT_DAYS) };
    match text.trim().parse::<i64>() {
        Ok(days) if (1..=365).contains(&days) => Ok(days),
        Ok(days) => Err(ApiError::bad_request(format!(
            "days={days} is out of range: give a whole number of days from 1 to 365 (default {DEFAULT_DAYS})"
        ))),
        Err(_) => Err(ApiError::bad_request(format!(
            "days={text:?} is not a whole number: give the days to look back, 1 to 365 (default {DEFAULT_DAYS})"
        ))),
    }
}

/// Rows as `T`, or a 500 naming what did not fit.
pub(crate) fn typed<T: DeserializeOwned>(rows: Vec<Object>, what: &str) -> ApiResult<Vec<T>> {
    rows.into_iter()
        .map(|row| {
            serde_json::from_value(serde_json::Value::Object(row))
                .map_err(|e| ApiError::internal(anyhow::anyhow!("a {what} row does not fit its schema: {e}")))
        })
        .collect()
}

pub(crate) fn iso(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros).map(|t| t.to_rfc3339()).unwrap_or_default()
}

/// The access review of one period.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AccessReview {
    /// Start of the period (RFC 3339): `until` minus `days`.
    pub since: String,
    /// End of the period: the end of the stored data, or now when nothing is stored.
    pub until: String,
    pub days: i64,
    /// Every Cosmos DB account of the latest inventory, local auth on or off.
    pub accounts: Vec<AccountAccess>,
    /// Every data-plane role assignment in force at `until`, with its use and what to do.
    pub assignments: Vec<AssignmentReview>,
    /// Assignments per recommendation (every recommendation present, 0 when none).
    pub counts: BTreeMap<String, i64>,
    /// When the latest inventory was taken; null when none was ever taken (the page then
    /// says how to take one).
    pub inventory_taken_at: Option<String>,
}

/// A Cosmos DB account: what decides who gets in, its key traffic, who may list its keys.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AccountAccess {
    pub account: String,
    pub resource_id: String,
    pub subscription_id: String,
    pub resource_group: Option<String>,
    pub location: Option<String>,
    /// true: keys and resource tokens are refused (Entra ID only). null when unknown.
    pub disable_local_auth: Option<bool>,
    /// Enabled, Disabled or SecuredByPerimeter.
    pub public_network_access: Option<String>,
    /// Clients that used a key in the period (local auth on only; 0 otherwise).
    pub key_clients: i64,
    /// Their requests since each was first seen.
    pub key_requests: i64,
    pub last_use: Option<String>,
    /// Who may list the keys: Azure roles with listKeys or readonlykeys at the account or above.
    pub key_readers: Vec<KeyReader>,
}

/// An Azure role assignment that lets its principal list an account's keys.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct KeyReader {
    pub principal_id: String,
    /// User, Group, ServicePrincipal, ... as the inventory read it.
    pub principal_type: Option<String>,
    pub role_definition_id: String,
    pub role_name: String,
    pub scope: String,
    pub assignment_id: String,
}

/// One data-plane role assignment of `access_review`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AssignmentReview {
    pub principal_id: String,
    pub account: String,
    pub assignment_id: String,
    pub role_definition_id: String,
    pub role_name: Option<String>,
    /// Where it applies: the account, a database or a container (ARM path).
    pub scope: String,
    pub data_actions: Option<Vec<String>>,
    pub granted_since: Option<String>,
    /// `inventory` or `activity_log` (granted after the last snapshot).
    pub origin: String,
    pub is_group: bool,
    /// Successful requests of its principal in its scope that it grants, in the period.
    pub requests: i64,
    pub last_use: Option<String>,
    pub used_actions: Vec<String>,
    /// remove, unused so far, reader, narrow scope, group or keep.
    pub recommendation: String,
    /// The recommendation in one sentence.
    pub advice: String,
}

#[derive(Deserialize)]
struct AccountRow {
    account: String,
    resource_id: String,
    subscription_id: String,
    resource_group: Option<String>,
    location: Option<String>,
    disable_local_auth: Option<bool>,
    public_network_access: Option<String>,
    key_clients: i64,
    key_requests: i64,
    last_use: Option<String>,
}

#[derive(Deserialize)]
struct KeyReaderRow {
    account_resource_id: String,
    #[serde(flatten)]
    reader: KeyReader,
}

/// The review's assignments over [since, until).
pub(crate) fn assignments(conn: &duckdb::Connection, since: i64, until: i64) -> ApiResult<Vec<AssignmentReview>> {
    let rows = objects(
        conn,
        include_str!("sql/access_review.sql"),
        &[super::filter::timestamp(since), super::filter::timestamp(until)],
    )?;
    typed(rows, "access review")
}

fn review(conn: &duckdb::Connection, days: i64) -> ApiResult<AccessReview> {
    let (since, until) = period(conn, days)?;
    let p = [super::filter::timestamp(since), super::filter::timestamp(until)];
    let accounts: Vec<AccountRow> = typed(objects(conn, include_str!("sql/access_accounts.sql"), &p)?, "account")?;
    let readers: Vec<KeyReaderRow> =
        typed(objects(conn, include_str!("sql/access_key_readers.sql"), &[])?, "key reader")?;
    let mut by_account: BTreeMap<String, Vec<KeyReader>> = BTreeMap::new();
    for row in readers {
        by_account.entry(row.account_resource_id).or_default().push(row.reader);
    }
    let accounts = accounts
        .into_iter()
        .map(|a| AccountAccess {
            key_readers: by_account.remove(&a.resource_id).unwrap_or_default(),
            account: a.account,
            resource_id: a.resource_id,
            subscription_id: a.subscription_id,
            resource_group: a.resource_group,
            location: a.location,
            disable_local_auth: a.disable_local_auth,
            public_network_access: a.public_network_access,
            key_clients: a.key_clients,
            key_requests: a.key_requests,
            last_use: a.last_use,
        })
        .collect();
    let assignments = assignments(conn, since, until)?;
    let mut counts: BTreeMap<String, i64> = RECOMMENDATIONS.iter().map(|r| (r.to_string(), 0)).collect();
    for a in &assignments {
        *counts.entry(a.recommendation.clone()).or_default() += 1;
    }
    let taken = objects(conn, "SELECT max(started_at) AS taken_at FROM inventory_runs", &[])?
        .pop()
        .and_then(|row| row.get("taken_at").and_then(|v| v.as_str().map(str::to_owned)));
    Ok(AccessReview {
        since: iso(since),
        until: iso(until),
        days,
        accounts,
        assignments,
        counts,
        inventory_taken_at: taken,
    })
}

/// Granted against used: the inventory's accounts (local auth, public network access, key
/// traffic, who may list the keys) and the review of every data-plane role assignment over
/// the last `days` of data, with a recommendation each.
#[utoipa::path(get, path = "/api/access", tag = "access",
    params(AccessQuery),
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor"])),
    responses((status = 200, body = AccessReview), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn review_access(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Query(q): Query<AccessQuery>,
) -> ApiResult<axum::Json<AccessReview>> {
    let days = days(q.days.as_deref())?;
    let review = super::db(&state, move |store| {
        let conn = store.connection()?;
        review(&conn, days)
    })
    .await?;
    rows.add((review.accounts.len() + review.assignments.len()) as i64);
    Ok(axum::Json(review))
}

#[cfg(test)]
mod tests {
    use super::days;

    #[test]
    fn days_are_checked_with_a_message_that_says_what_to_give() {
        assert_eq!(days(None).unwrap(), 90);
        assert_eq!(days(Some("30")).unwrap(), 30);
        assert_eq!(days(Some("365")).unwrap(), 365);
        for bad in ["0", "366", "-1", "abc", "1.5", ""] {
            let e = days(Some(bad)).unwrap_err();
            assert!(format!("{e:?}").contains("1 to 365"), "{bad}: {e:?}");
        }
    }
}
