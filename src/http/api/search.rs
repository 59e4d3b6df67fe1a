//! Search over data operations and sign-ins, as a JSON page (keyset pagination) or
//! streamed as CSV or NDJSON for large results.

use super::filter::{self, Filter};
use super::findings::page;
use super::results::{self, Format, RowCount, objects};
use crate::http::error::{ApiError, ApiResult, Query};
use crate::http::state::AppState;
use crate::lake::view::Scope;
use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use duckdb::types::Value;
use serde::Deserialize;
use utoipa::IntoParams;

/// Rows a streamed export may carry; a JSON page carries at most [`MAX_PAGE`].
pub const MAX_EXPORT: i64 = 1_000_000;
pub const MAX_PAGE: i64 = 1_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RequestQuery {
    /// Principal id (`aadPrincipalId`, the Entra object id), or a UPN or display name its sign-ins carry.
    pub principal: Option<String>,
    /// Client address, or a CIDR range (10.0.0.0/8, 2001:db8::/32).
    pub ip: Option<String>,
    /// Cosmos DB account name.
    pub account: Option<String>,
    pub database: Option<String>,
    pub collection: Option<String>,
    /// Comma-separated operations: Read, Query, Create, Upsert, Replace, Delete, ...
    pub operation: Option<String>,
    /// HTTP status code of the request.
    pub status: Option<i32>,
    /// How it was authorised: entra_id, account_key, resource_token, unknown.
    #[param(inline)]
    pub auth: Option<AuthKind>,
    /// At or after (RFC 3339).
    pub from: Option<String>,
    /// Before (RFC 3339).
    pub to: Option<String>,
    /// Rows: 1 to 1,000 for JSON (default 100), up to 1,000,000 for CSV and NDJSON (default all up to that).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page (JSON).
    pub cursor: Option<String>,
    #[param(inline)]
    pub format: Option<Format>,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    EntraId,
    AccountKey,
    ResourceToken,
    Unknown,
}

/// The SQL condition for an attribution, as `request_context` defines it.
fn auth_condition(kind: AuthKind) -> &'static str {
    match kind {
        AuthKind::EntraId => "principal_id IS NOT NULL",
        AuthKind::ResourceToken => "principal_id IS NULL AND auth_token_type ILIKE '%resource%'",
        AuthKind::AccountKey => {
            "principal_id IS NULL AND auth_token_type ILIKE '%key%' AND auth_token_type NOT ILIKE '%resource%'"
        }
        AuthKind::Unknown => {
            "principal_id IS NULL AND coalesce(auth_token_type, '') NOT ILIKE '%key%' AND coalesce(auth_token_type, '') NOT ILIKE '%resource%'"
        }
    }
}

const REQUEST_COLUMNS: &str = "rowid AS row_id, time, account, database_name, collection_name, operation, status_code,
    principal_id, auth_token_type, key_type, role_assignment_id, client_ip, user_agent, duration_ms, request_charge,
    request_length, response_length, region, connection_mode, activity_id";

/// The principal filter: its id, or (ignoring case) a UPN or display name its sign-ins
/// carry, which is what on-call is usually told. A GUID is only ever an id, which keeps
/// the plain comparison for it.
fn principal(f: &mut Filter, value: &Option<String>) {
    let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else { return };
    if uuid_like(v) {
        f.add("principal_id = ?", [Value::Text(v.to_string())]);
    } else {
        f.add(
            "(principal_id = ? OR principal_id IN (SELECT s.principal_id FROM signins s \
             WHERE lower(s.principal_name) = lower(?) OR lower(s.user_display_name) = lower(?)))",
            [Value::Text(v.to_string()), Value::Text(v.to_string()), Value::Text(v.to_string())],
        );
    }
}

fn uuid_like(v: &str) -> bool {
    v.len() == 36
        && v.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

/// Cosmos DB data operations, newest first.
#[utoipa::path(get, path = "/api/search/requests", tag = "search", params(RequestQuery),
    security(("entra" = ["TokenTrail.Responder"])),
    responses((status = 200, description = "JSON page, or CSV/NDJSON stream by `format`", body = SearchPage,
               content_type = "application/json"),
              (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn requests(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Query(q): Query<RequestQuery>,
) -> ApiResult<Response> {
    let mut f = Filter::default();
    principal(&mut f, &q.principal);
    f.ip("client_ip", &q.ip)?;
    f.eq("account", &q.account.as_ref().map(|a| a.to_ascii_lowercase()));
    f.eq("database_name", &q.database);
    f.eq("collection_name", &q.collection);
    f.any_of("operation", &q.operation);
    if let Some(status) = q.status {
        f.add("status_code = ?", [Value::Int(status)]);
    }
    if let Some(kind) = q.auth {
        f.add(auth_condition(kind), []);
    }
    let period = f.time_range("time", &q.from, &q.to)?;
    // A UPN or display name is looked up in the period's sign-ins, archived ones too.
    let named = q.principal.as_deref().map(str::trim).is_some_and(|p| !p.is_empty() && !uuid_like(p));
    let tables: &'static [&'static str] = if named { &["cosmos_requests", "signins"] } else { &["cosmos_requests"] };
    let search = Search { table: "cosmos_requests", columns: REQUEST_COLUMNS, tables, period };
    run(state, rows, search, f, q.limit, &q.cursor, q.format.unwrap_or_default()).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SigninQuery {
    /// Principal id (userId for users, servicePrincipalId otherwise), or a UPN or display name.
    pub principal: Option<String>,
    /// Address, or a CIDR range.
    pub ip: Option<String>,
    /// Comma-separated kinds: user_interactive, user_noninteractive, service_principal, managed_identity.
    pub kind: Option<String>,
    /// ISO country code.
    pub country: Option<String>,
    /// Application id.
    pub app: Option<String>,
    /// Only failed (true) or only successful (false) sign-ins.
    pub failed: Option<bool>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    #[param(inline)]
    pub format: Option<Format>,
}

/// The values of `signins.kind` (`record::SignInKind`).
const SIGNIN_KINDS: [&str; 4] = ["user_interactive", "user_noninteractive", "service_principal", "managed_identity"];

const SIGNIN_COLUMNS: &str = "rowid AS row_id, time, kind, principal_id, principal_name, app_id, app_display_name,
    ip_address, country, city, error_code, failure_reason, risk_level, risk_level_aggregated, risk_state,
    conditional_access_status, resource_display_name, user_agent, signin_id, correlation_id";

/// Entra ID sign-ins of all four kinds, newest first.
#[utoipa::path(get, path = "/api/search/signins", tag = "search", params(SigninQuery),
    security(("entra" = ["TokenTrail.Responder"])),
    responses((status = 200, description = "JSON page, or CSV/NDJSON stream by `format`", body = SearchPage,
               content_type = "application/json"),
              (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn signins(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Query(q): Query<SigninQuery>,
) -> ApiResult<Response> {
    let mut f = Filter::default();
    principal(&mut f, &q.principal);
    f.ip("ip_address", &q.ip)?;
    // `kind` is one of the four sign-in logs; anything else (`kind=signins`, the search
    // page's tab name) would match nothing and answer 0 rows without saying why.
    filter::known("kind", &q.kind, &SIGNIN_KINDS)?;
    f.any_of("kind", &q.kind);
    f.eq("country", &q.country.as_ref().map(|c| c.to_ascii_uppercase()));
    f.eq("app_id", &q.app);
    match q.failed {
        Some(true) => f.add("coalesce(error_code, 0) <> 0", []),
        Some(false) => f.add("coalesce(error_code, 0) = 0", []),
        None => {}
    }
    let period = f.time_range("time", &q.from, &q.to)?;
    let search = Search { table: "signins", columns: SIGNIN_COLUMNS, tables: &["signins"], period };
    run(state, rows, search, f, q.limit, &q.cursor, q.format.unwrap_or_default()).await
}

/// A page of search results, newest first, with the number of rows matching the filters
/// in all (every page, not only this one).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SearchPage {
    #[schema(value_type = Vec<super::results::Object>)]
    pub rows: Vec<super::results::Object>,
    pub next_cursor: Option<String>,
    pub total: i64,
    /// Of `total`, the rows read from the Parquet lake (retention moved them there); each
    /// row's `stored_in` says where it was read (`duckdb`, `lake` or `other_instance`).
    pub total_from_lake: i64,
    /// Of `total`, the rows other instances sharing the hub stored (read from this one's
    /// copy of the shared lake, `stored_in` `other_instance`); 0 without a shared lake.
    pub total_from_other_instances: i64,
    /// The lake's files this answer read, per table (empty: DuckDB alone answered).
    pub lake: Vec<crate::lake::view::Part>,
}

/// One search: its table and columns, the tables the lake may add rows of, its period.
#[derive(Clone)]
struct Search {
    table: &'static str,
    columns: &'static str,
    tables: &'static [&'static str],
    period: (Option<i64>, Option<i64>),
}

impl Search {
    /// The lake's part on `conn`, and the columns with each row's `stored_in`.
    fn scope(&self, state: &AppState, conn: &duckdb::Connection) -> ApiResult<(Scope, String)> {
        let scope = super::lake_scope(state, conn, self.tables, self.period, true)?;
        let origin = if scope.mixes(self.table) { "stored_in" } else { "'duckdb' AS stored_in" };
        Ok((scope, format!("{}, {origin}", self.columns)))
    }
}

async fn run(
    state: AppState,
    rows: RowCount,
    search: Search,
    mut f: Filter,
    limit: Option<i64>,
    cursor: &Option<String>,
    format: Format,
) -> ApiResult<Response> {
    let table = search.table;
    // Every match, whichever page this is: counted before the cursor narrows the filter.
    let counted = (format!("SELECT count(*) FROM {table} {}", f.sql()), f.params.clone());
    if let Some((t, id)) = filter::parse_cursor(cursor)? {
        f.add(
            "(time < ? OR (time = ? AND rowid < ?))",
            [filter::timestamp(t), filter::timestamp(t), Value::BigInt(id)],
        );
    }
    if format == Format::Json {
        let limit = filter::limit(limit, 100, MAX_PAGE)?;
        let rest = f.sql_limited("time DESC, rowid DESC", limit + 1);
        let on = state.clone();
        let (mut found, total, total_from_lake, total_from_other_instances, lake) =
            super::db(&state, move |store| -> ApiResult<_> {
                let conn = store.connection()?;
                let (scope, columns) = search.scope(&on, &conn)?;
                let sql = format!("SELECT {columns}, epoch_us(time) AS _sort FROM {table} {rest}");
                let found = objects(&conn, &sql, &f.params)?;
                let params = duckdb::params_from_iter(counted.1.iter());
                let (total, from_lake, from_others) = if scope.mixes(table) {
                    let sql = counted.0.replacen(
                        "count(*)",
                        "count(*), count(*) FILTER (WHERE stored_in = 'lake'), \
                     count(*) FILTER (WHERE stored_in = 'other_instance')",
                        1,
                    );
                    conn.query_row(&sql, params, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                } else {
                    (conn.query_row(&counted.0, params, |r| r.get(0))?, 0, 0)
                };
                Ok((found, total, from_lake, from_others, scope.parts))
            })
            .await?;
        let page = page(&mut found, limit, &rows);
        let body = SearchPage {
            rows: page.rows,
            next_cursor: page.next_cursor,
            total,
            total_from_lake,
            total_from_other_instances,
            lake,
        };
        return Ok(axum::Json(body).into_response());
    }
    let limit = filter::limit(limit, MAX_EXPORT, MAX_EXPORT)?;
    let rest = f.sql_limited("time DESC, rowid DESC", limit);
    let sql = move |state: &AppState, conn: &duckdb::Connection| -> ApiResult<String> {
        let (_, columns) = search.scope(state, conn)?;
        Ok(format!("SELECT {columns} FROM {table} {rest}"))
    };
    // Check the query (and the lake's files) before the 200 goes out, so a mistake is a
    // 4xx or 503, not a broken stream.
    let (check, on) = (sql.clone(), state.clone());
    super::db(&state, move |store| {
        let conn = store.connection()?;
        conn.prepare(&check(&on, &conn)?).map(|_| ()).map_err(ApiError::from)
    })
    .await?;
    let (store, on) = (state.store.clone(), state.clone());
    Ok(results::stream(&state.exports, format, table, rows, move |sink| {
        let conn = store.connection()?;
        let sql = sql(&on, &conn).map_err(|e| anyhow::anyhow!(e.message))?;
        let mut stmt = conn.prepare(&sql)?;
        results::each_row(&mut stmt, &f.params, sink)
    }))
}
