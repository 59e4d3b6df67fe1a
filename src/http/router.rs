//! The whole application's routes and the runtime they run on.

use crate::http::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

/// The runtime the HTTP side runs on: worker threads at the API query threads'
/// lower priority ([`crate::http::pool`]), so answering a crowd of users never takes
/// the CPU from ingest. Event Hubs receivers and alert delivery keep a runtime of
/// normal priority.
pub fn http_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .on_thread_start(|| crate::sys::priority::lower(crate::http::pool::QUERY_NICE))
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
