//! The whole HTTP application in-process on a loopback port, with Entra ID sign-in
//! pointed at a local test issuer: what the API tests call.

use super::jwks::TestIssuer;
use std::sync::Arc;
use tokentrail::auth::Auth;
use tokentrail::http::AppState;
use tokentrail::rules::rule::Rule;
use tokentrail::store::Store;

/// Serves `store` (locked down, as `serve` does) on 127.0.0.1 from a thread of its own;
/// returns the state and the base URL.
pub fn serve(store: Arc<Store>, issuer: &TestIssuer, rules: Vec<Rule>) -> (AppState, String) {
    serve_as(store, issuer, rules, true)
}

/// [`serve`] with the service's own limits on refused calls and on each caller's share.
pub fn serve_with_limits(store: Arc<Store>, issuer: &TestIssuer) -> (AppState, String) {
    serve_as(store, issuer, Vec::new(), false)
}

fn serve_as(store: Arc<Store>, issuer: &TestIssuer, rules: Vec<Rule>, shared: bool) -> (AppState, String) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let auth = runtime.block_on(Auth::entra(issuer.config())).unwrap();
    let mut state = AppState::new(store.clone(), "test", auth);
    state.rules = Arc::new(rules);
    if shared {
        lift_limits(&mut state, &store);
    }
    store.lock_down().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = tokentrail::http::router(state.clone());
    std::thread::spawn(move || {
        runtime.block_on(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
        })
    });
    (state, base)
}

/// Every test of a file shares one server, one address and one user, many calls at once:
/// the limits on refused calls written per address and on each caller's share are lifted
/// for it, and tested on servers of their own ([`serve_with_limits`]).
fn lift_limits(state: &mut AppState, store: &Arc<Store>) {
    state.audit = tokentrail::http::api::audit::AuditLog::start_with(store.clone(), u32::MAX);
    state.callers = tokentrail::http::api::callers::Callers::new(usize::MAX, usize::MAX >> 4);
}
