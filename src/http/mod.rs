//! The HTTP side: the API and pages of [`crate::http::api`], sign-in ([`crate::auth`]),
//! `/healthz`, `/readyz` and `/metrics`.
//!
//! DuckDB calls are synchronous, so every handler runs its queries on a blocking
//! thread, never on the async executor.

pub mod api;
pub mod app;
pub mod ui;

pub use app::{Application, Detection, Settings, SignIn, Source, SourceContext};

use crate::auth::Auth;
use crate::http::api::audit::AuditLog;
use crate::metrics::Metrics;
use crate::rules::rule::Rule;
use crate::source::eventhubs::HubsStatus;
use crate::store::Store;
use api::AccessTable;
use api::callers::Callers;
use api::pool::{self, QueryPool};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

/// What every handler reads. Built once, complete, by [`AppState::new`]; cheap to clone.
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
    /// Who may call what, from the OpenAPI document.
    pub access: Arc<AccessTable>,
    pub openapi: Arc<serde_json::Value>,
    /// The threads API queries run on ([`crate::http::api::db`]).
    pub queries: QueryPool,
    /// The threads streamed exports run on, apart from the queries' so downloads never
    /// hold the threads that answer pages.
    pub exports: QueryPool,
    /// Each caller's share of the API ([`crate::http::api::callers`]).
    pub callers: Callers,
    /// Evidence packs: their bounds over the API.
    pub evidence: crate::config::EvidenceConfig,
}

/// What [`AppState::new`] is made from.
pub struct StateParts {
    pub store: Arc<Store>,
    pub mode: &'static str,
    pub auth: Arc<Auth>,
    pub hubs: Option<Arc<HubsStatus>>,
    pub metrics: Arc<Metrics>,
    pub rules: Vec<Rule>,
    pub evidence: crate::config::EvidenceConfig,
    pub limits: Limits,
}

/// The API's limits per caller and per source address.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Calls in flight per caller ([`crate::http::api::callers::MAX_CALLS`]).
    pub calls_per_caller: usize,
    /// A caller's database jobs at once.
    pub database_jobs_per_caller: usize,
    /// Refused calls written to the access log per source address and minute
    /// ([`crate::http::api::audit::REFUSED_PER_MINUTE`]).
    pub refused_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            calls_per_caller: crate::http::api::callers::MAX_CALLS,
            database_jobs_per_caller: 1,
            refused_per_minute: crate::http::api::audit::REFUSED_PER_MINUTE,
        }
    }
}

impl AppState {
    /// Starts the access log and the query threads, and derives the access table from the
    /// OpenAPI document, so the state is whole before any request can see it.
    pub fn new(parts: StateParts) -> AppState {
        let StateParts { store, mode, auth, hubs, metrics, rules, evidence, limits } = parts;
        let doc = crate::http::api::routes().into_openapi();
        AppState {
            audit: AuditLog::start_with(store.clone(), limits.refused_per_minute),
            store,
            mode,
            hubs,
            metrics,
            auth,
            rules: Arc::new(rules),
            access: Arc::new(AccessTable::from_openapi(&doc)),
            openapi: Arc::new(serde_json::to_value(&doc).expect("the OpenAPI document serialises")),
            queries: QueryPool::start("api-query", pool::QUERY_THREADS, pool::QUERY_NICE),
            exports: QueryPool::start("api-export", pool::EXPORT_THREADS, pool::QUERY_NICE),
            callers: Callers::new(limits.calls_per_caller, limits.database_jobs_per_caller),
            evidence,
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
pub fn router(state: AppState) -> Router {
    let (api, _) = crate::http::api::routes().split_for_parts();
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
