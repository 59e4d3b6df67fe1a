//! The HTTP side: the API and pages of [`crate::http::api`], sign-in ([`crate::auth`]),
//! `/healthz`, `/readyz` and `/metrics`.
//!
//! DuckDB calls are synchronous, so every handler runs its queries on a blocking
//! thread, never on the async executor.

pub mod api;
pub mod ui;

use crate::auth::Auth;
use crate::http::api::audit::AuditLog;
use crate::metrics::Metrics;
use crate::rules::rule::Rule;
use crate::source::eventhubs::HubsStatus;
use crate::store::Store;
use api::AccessTable;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    /// Shown on every page, e.g. "demo: generated data".
    pub mode: &'static str,
    /// The Event Hubs source's partitions, when it runs.
    pub hubs: Option<Arc<HubsStatus>>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<Auth>,
    pub audit: AuditLog,
    /// The rule catalogue (what detection runs with).
    pub rules: Arc<Vec<Rule>>,
    /// Who may call what, from the OpenAPI document ([`router`] fills it).
    pub access: Arc<AccessTable>,
    pub openapi: Arc<serde_json::Value>,
    /// The threads API queries run on ([`crate::http::api::db`]).
    pub queries: crate::http::api::pool::QueryPool,
    /// The threads streamed exports run on, apart from the queries' so downloads never
    /// hold the threads that answer pages.
    pub exports: crate::http::api::pool::QueryPool,
    /// Each caller's share of the API ([`crate::http::api::callers`]).
    pub callers: crate::http::api::callers::Callers,
    /// Evidence packs: their bounds over the API.
    pub evidence: crate::config::EvidenceConfig,
}

impl AppState {
    pub fn new(store: Arc<Store>, mode: &'static str, auth: Arc<Auth>) -> AppState {
        AppState {
            audit: AuditLog::start(store.clone()),
            store,
            mode,
            hubs: None,
            metrics: Arc::default(),
            auth,
            rules: Arc::new(crate::rules::rule::load(None).0),
            access: Arc::default(),
            openapi: Arc::default(),
            queries: crate::http::api::pool::QueryPool::start(
                "api-query",
                crate::http::api::pool::QUERY_THREADS,
                crate::http::api::pool::QUERY_NICE,
            ),
            exports: crate::http::api::pool::QueryPool::start(
                "api-export",
                crate::http::api::pool::EXPORT_THREADS,
                crate::http::api::pool::QUERY_NICE,
            ),
            callers: Default::default(),
            evidence: Default::default(),
        }
    }
}

/// The runtime the HTTP side runs on: worker threads at the API query threads'
/// lower priority ([`crate::http::api::pool`]), so answering a crowd of users never takes
/// the CPU from ingest. Event Hubs receivers and alert delivery keep a runtime of
/// normal priority.
pub fn http_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .on_thread_start(|| crate::sys::priority::lower(crate::http::api::pool::QUERY_NICE))
        .build()
}

/// The whole application. Every route passes [`crate::http::api::guard`], which lets only
/// probes, `/metrics` and sign-in through without a token.
pub fn router(mut state: AppState) -> Router {
    let (api, doc) = crate::http::api::routes().split_for_parts();
    state.access = Arc::new(AccessTable::from_openapi(&doc));
    state.openapi = Arc::new(serde_json::to_value(&doc).expect("the OpenAPI document serialises"));
    api.route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(state.auth.router().with_state::<AppState>(()))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::http::api::guard))
        .with_state(state)
}

/// How long `/readyz` waits for a query thread before it says the API is starved.
pub const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready when the database answers a query on one of the API's query threads within
/// [`READY_WAIT`]: when every thread is held (slow queries), the API is not ready, and
/// a load balancer should know.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.store.clone();
    let job = state.queries.run(move || -> anyhow::Result<i64> {
        Ok(store.connection()?.query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))?)
    });
    match tokio::time::timeout(READY_WAIT, job).await {
        Ok(Ok(Ok(_))) => (StatusCode::OK, "ready").into_response(),
        Ok(_) => (StatusCode::SERVICE_UNAVAILABLE, "the database does not answer").into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the API's query threads are all busy ({} running, {} waiting): pages would wait",
                state.queries.running(),
                state.queries.waiting()
            ),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
}
