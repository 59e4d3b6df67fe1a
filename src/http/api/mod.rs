//! The HTTP API: findings, principals, search, read-only SQL, status, and the
//! OpenAPI document that describes them.
//!
//! The OpenAPI document is also the access table. Every operation declares the app
//! roles that may call it as its `security` requirement; [`guard`] looks the matched
//! route up in that table, authenticates the caller, checks the role and writes the
//! access log. A route missing from the table is refused to everyone (fail closed),
//! and the tests walk the same document, so a new endpoint cannot skip the check.

pub mod access;
pub mod alerts;
pub mod console;
pub mod dashboards;
pub mod evidence;
pub mod filter;
pub mod findings;
pub mod incidents;
pub mod leavers;
pub mod principal;
pub mod results;
pub mod reviews;
pub mod search;
pub mod status;

use crate::auth::{AuthError, Via};
pub use crate::http::access::Granted;
use crate::http::audit::{AuditLog, Entry};
use crate::http::callers;
use crate::http::error::{self, ApiError};
use crate::http::state::AppState;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use results::RowCount;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Paths anyone may call: probes and Prometheus (no data in them).
pub const PUBLIC: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "TokenTrail",
        description = "Audit log analytics for Azure Cosmos DB and Microsoft Entra ID. Every operation needs an Entra ID access token (`Authorization: Bearer`) or a browser session, and one of the app roles listed in its `security` requirement.",
    ),
    modifiers(&SecuritySchemes),
    components(schemas(error::ErrorBody))
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".into());
        bearer.description = Some(
            "An Entra ID access token for TokenTrail's app registration. The requirement lists the app roles (`roles` claim) of which the caller needs one.".into(),
        );
        components.add_security_scheme("entra", SecurityScheme::Http(bearer));
    }
}

/// Every API route with its documentation.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::retry))
        .routes(routes!(evidence::download))
        .routes(routes!(evidence::public_key))
        .routes(routes!(evidence::rerun))
        .routes(routes!(leavers::import))
        .routes(routes!(findings::list))
        .routes(routes!(findings::detail))
        .routes(routes!(findings::history))
        .routes(routes!(findings::acknowledge))
        .routes(routes!(findings::resolve))
        .routes(routes!(findings::reopen))
        .routes(routes!(findings::suppress))
        .routes(routes!(incidents::list))
        .routes(routes!(incidents::bulk))
        .routes(routes!(incidents::detail))
        .routes(routes!(incidents::acknowledge))
        .routes(routes!(incidents::resolve))
        .routes(routes!(incidents::reopen))
        .routes(routes!(incidents::owner))
        .routes(routes!(principal::profile))
        .routes(routes!(access::review_access))
        .routes(routes!(reviews::list, reviews::start))
        .routes(routes!(reviews::reviewers))
        .routes(routes!(reviews::detail_of))
        .routes(routes!(reviews::decide))
        .routes(routes!(reviews::complete))
        .routes(routes!(reviews::decisions))
        .routes(routes!(search::requests))
        .routes(routes!(search::signins))
        .routes(routes!(console::run))
        .routes(routes!(console::schema))
        .routes(routes!(console::saved_list))
        .routes(routes!(console::saved_create))
        .routes(routes!(status::status))
        .routes(routes!(status::quarantine))
        .routes(routes!(status::rules))
        .routes(routes!(status::access_log))
        .routes(routes!(status::openapi))
        .routes(routes!(status::activity))
        .routes(routes!(dashboards::list))
        .routes(routes!(dashboards::render))
        .merge(crate::http::ui::routes())
}

/// The lake's part of an answer over `period` ([`crate::lake::view`]), made readable on
/// `conn`, and with a shared lake the rows other instances stored; empty when neither is
/// configured or the period reaches no evicted row. A lake file missing or changed
/// answers 503, naming it.
pub fn lake_scope(
    state: &AppState,
    conn: &duckdb::Connection,
    tables: &[&'static str],
    period: (Option<i64>, Option<i64>),
    origin: bool,
) -> error::ApiResult<crate::lake::view::Scope> {
    let Some(lake) = &state.lake else { return others_scope(state, conn, tables, origin) };
    lake.scope(conn, tables, period, None, origin, state.others).map_err(|error| {
        tracing::error!(error = format!("{error:#}"), "the lake cannot answer");
        error::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "lake_unavailable",
            format!("part of this period is in the Parquet lake, which cannot be read now: {error:#}"),
        )
    })
}

/// With a shared lake, the rows of `tables` other instances stored, made readable on `conn`
/// beside this one's; nothing of the lake.
pub fn others_scope(
    state: &AppState,
    conn: &duckdb::Connection,
    tables: &[&'static str],
    origin: bool,
) -> error::ApiResult<crate::lake::view::Scope> {
    if !state.others {
        return Ok(Default::default());
    }
    crate::lake::view::others_scope(conn, tables, origin).map_err(ApiError::internal)
}

/// A request body of at most `max` bytes; `None` when it is larger or its upload broke off.
/// Past `max`, the rest is read and dropped (up to `max` more, for at most 10 s) before
/// the handler answers 413: a client that sends its whole body before reading the answer
/// (most do) then reads the 413, where closing a socket with bytes unread would reset it.
pub async fn bounded_body(body: axum::body::Body, max: usize) -> Option<bytes::Bytes> {
    use futures::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut read = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.ok()?;
        if read.len() + chunk.len() > max {
            let drain = async {
                let mut dropped = 0usize;
                while let Some(Ok(chunk)) = stream.next().await {
                    dropped += chunk.len();
                    if dropped > max {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
            return None;
        }
        read.extend_from_slice(&chunk);
    }
    Some(read.freeze())
}

/// Runs `work` on one of the API's query threads ([`pool`]: a few at a time, at a
/// lower CPU priority than ingest, so ingest keeps its pace under a crowd of users;
/// see BENCHMARKS.md).
pub async fn db<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(Arc<crate::store::Store>) -> error::ApiResult<T> + Send + 'static,
) -> error::ApiResult<T> {
    let store = state.store.clone();
    // The caller's turn first: one job of theirs at a time ([`callers`]).
    let turn = callers::DATABASE_TURN.try_with(Arc::clone).ok();
    let _turn = match turn {
        Some(turn) => Some(turn.acquire_owned().await.map_err(|e| ApiError::internal(e.into()))?),
        None => None,
    };
    state
        .queries
        .run(move || work(store))
        .await
        .map_err(|_| ApiError::internal(anyhow::anyhow!("an API query thread failed while running this call")))?
}

/// Runs one query on a query thread and answers its rows as JSON objects, counted
/// for the access log: the whole body of the simple list handlers.
pub async fn list(
    state: &AppState,
    rows: &RowCount,
    sql: &'static str,
    params: Vec<duckdb::types::Value>,
) -> error::ApiResult<axum::Json<Vec<results::Object>>> {
    let found = db(state, move |store| results::objects(&*store.connection()?, sql, &params)).await?;
    rows.add(found.len() as i64);
    Ok(axum::Json(found))
}

/// Extra facts a handler adds to its access log entry (e.g. the SQL it ran), and the
/// entry as the guard knows it before the handler runs.
#[derive(Clone, Default)]
pub struct AuditNote {
    extra: Arc<Mutex<serde_json::Map<String, serde_json::Value>>>,
    start: Arc<Mutex<Option<Entry>>>,
}

impl AuditNote {
    pub fn add(&self, key: &str, value: impl Into<serde_json::Value>) {
        self.extra.lock().expect("audit note lock").insert(key.to_string(), value.into());
    }

    fn take(&self) -> serde_json::Map<String, serde_json::Value> {
        std::mem::take(&mut *self.extra.lock().expect("audit note lock"))
    }

    /// Writes a row saying this call has started (status 102, with what was added so
    /// far) and waits until it is stored: for calls that could end the process before
    /// their own row is written (a console query). Blocks: call it off the executor.
    pub fn record_start(&self, audit: &AuditLog) {
        let Some(mut entry) = self.start.lock().expect("audit note lock").clone() else { return };
        entry.time = chrono::Utc::now();
        entry.status = 102;
        if let serde_json::Value::Object(map) = &mut entry.parameters {
            map.extend(self.extra.lock().expect("audit note lock").clone());
        }
        audit.record(entry);
        audit.flush();
    }
}

/// Authentication, the role check and the access log, for every route.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let Some(route) = route else {
        // Not a route of ours: the router answers 404 itself.
        return next.run(request).await;
    };
    if PUBLIC.contains(&route.as_str()) || route.starts_with("/auth/") || route.starts_with("/dev-issuer/") {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let mut entry = Entry {
        time: chrono::Utc::now(),
        oid: None,
        tid: None,
        name: None,
        role: None,
        method: parts.method.to_string(),
        endpoint: route.clone(),
        path: parts.uri.path().to_string(),
        parameters: query_parameters(parts.uri.query()),
        status: 0,
        rows: None,
        duration_ms: 0.0,
        client_ip: parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()),
        user_agent: parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string),
        auth: "none",
        request_id: request_id(),
    };
    let wants_html = is_page(&route) && parts.method == Method::GET;
    let caller = match state.auth.authenticate(&parts).await {
        Ok(caller) => caller,
        Err(error) => {
            // No session, or one that ended (a restart forgets sessions): a page signs in again.
            let response = if wants_html && matches!(error, AuthError::Missing | AuthError::Ended) {
                sign_in_redirect(&parts.uri)
            } else {
                error.into_response()
            };
            return finish(&state, entry, response, started, None, None);
        }
    };
    entry.oid = Some(caller.oid.clone());
    entry.tid = Some(caller.tid.clone());
    entry.name = caller.name.clone();
    entry.auth = match caller.via {
        Via::Bearer => "bearer",
        Via::Session => "session",
        Via::Development => "development",
    };
    let Some(allowed) = state.access.roles(&parts.method, &route) else {
        let response = if state.access.has_route(&route) {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not a method of {route}", parts.method),
            )
        } else {
            ApiError::forbidden(format!("{route} declares no role, so no one may call it"))
        };
        return finish(&state, entry, response.into_response(), started, None, None);
    };
    let Some(role) = allowed.iter().copied().find(|r| caller.roles.contains(r)) else {
        let needed: Vec<&str> = allowed.iter().map(|r| r.claim()).collect();
        let held: Vec<&str> = caller.roles.iter().map(|r| r.claim()).collect();
        let response = ApiError::forbidden(format!(
            "{} {route} needs one of the app roles {}; your token has {}",
            parts.method,
            needed.join(", "),
            if held.is_empty() { "none".to_string() } else { held.join(", ") }
        ))
        .into_response();
        return finish(&state, entry, response, started, None, None);
    };
    entry.role = Some(role.claim().to_string());
    let in_flight = match state.callers.enter(&format!("{}/{}", caller.tid, caller.oid)) {
        Ok(in_flight) => in_flight,
        Err(busy) => {
            let (status, code, message) = match busy {
                callers::Busy::Caller => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_calls",
                    "you have as many calls in flight as one caller may; wait for one to end",
                ),
                callers::Busy::Service => {
                    (StatusCode::SERVICE_UNAVAILABLE, "busy", "the service has as many calls in flight as it takes")
                }
            };
            let mut response = ApiError::new(status, code, message).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return finish(&state, entry, response, started, None, None);
        }
    };
    let rows = RowCount::default();
    let note = AuditNote::default();
    *note.start.lock().expect("audit note lock") = Some(entry.clone());
    parts.extensions.insert(Granted { caller, role });
    parts.extensions.insert(rows.clone());
    parts.extensions.insert(note.clone());
    let turn = in_flight.database();
    let response = callers::DATABASE_TURN.scope(turn, next.run(Request::from_parts(parts, body))).await;
    let extra = note.take();
    if let serde_json::Value::Object(map) = &mut entry.parameters {
        map.extend(extra);
    }
    finish(&state, entry, response, started, Some(rows), Some(in_flight))
}

/// Records the entry. A streamed body's rows are counted as it is sent, so its
/// entry is written when the stream ends.
/// `in_flight` (the caller's count) ends with the response, or with its streamed body.
fn finish(
    state: &AppState,
    mut entry: Entry,
    mut response: Response,
    started: Instant,
    rows: Option<RowCount>,
    in_flight: Option<callers::InFlight>,
) -> Response {
    entry.status = response.status().as_u16();
    if let Ok(id) = header::HeaderValue::from_str(&entry.request_id) {
        response.headers_mut().insert("x-request-id", id);
    }
    let labels = crate::metrics::HttpLabels {
        method: method_label(&entry.method).to_string(),
        endpoint: entry.endpoint.clone(),
        status: entry.status,
    };
    state.metrics.http_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    let streamed = response.extensions().get::<results::Streamed>().is_some();
    if !streamed {
        entry.rows = rows.as_ref().map(|r| r.get()).filter(|_| response.status().is_success());
        entry.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        state.audit.record(entry);
        return response;
    }
    let audit = state.audit.clone();
    let rows = rows.unwrap_or_default();
    let (parts, body) = response.into_parts();
    let body = results::on_end(body, move || {
        drop(in_flight);
        entry.rows = Some(rows.get());
        entry.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        audit.record(entry);
    });
    Response::from_parts(parts, body)
}

/// A method as a metrics label: the standard ones, anything else `OTHER` (a label set
/// per made-up method would grow `/metrics` without bound).
fn method_label(method: &str) -> &str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.iter().copied().find(|m| *m == method).unwrap_or("OTHER")
}

/// A random id for one call (its access log rows and its `x-request-id` header).
fn request_id() -> String {
    let mut bytes = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn query_parameters(query: Option<&str>) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        map.insert(key.into_owned(), serde_json::Value::String(value.into_owned()));
    }
    serde_json::Value::Object(map)
}

/// Web pages (not under /api): a browser without a session is sent to sign in.
fn is_page(route: &str) -> bool {
    !route.starts_with("/api/") && route != "/openapi.json"
}

fn sign_in_redirect(uri: &axum::http::Uri) -> Response {
    let return_to = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let target = format!(
        "/auth/login?return_to={}",
        url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>()
    );
    (StatusCode::SEE_OTHER, [(header::LOCATION, target)]).into_response()
}
