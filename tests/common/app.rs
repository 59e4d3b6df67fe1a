//! The whole HTTP application in-process on a loopback port, with Entra ID sign-in
//! pointed at a local test issuer: what the API tests call. It is the same
//! [`Application`] `serve` runs, without a source or live detection.

use super::jwks::TestIssuer;
use std::sync::Arc;
use tokentrail::http::{AppState, Application, Limits, Settings, SignIn};
use tokentrail::rules::rule::Rule;
use tokentrail::store::Store;

/// Calls the API at `base`: GET `path`, or POST `body` as JSON, with `token` as bearer.
/// Returns the status and the answer (JSON, or the text as a JSON string), whatever the
/// status: the tests assert on refusals too.
pub fn call_json(base: &str, path: &str, token: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{base}{path}");
    let auth = format!("Bearer {token}");
    let response = match body {
        None => agent.get(&url).header("Authorization", &auth).call(),
        Some(body) => agent.post(&url).header("Authorization", &auth).send_json(body),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// Serves `store` (locked down, as `serve` does) on 127.0.0.1 from a thread of its own;
/// returns the state and the base URL.
pub fn serve(store: Arc<Store>, issuer: &TestIssuer, rules: Vec<Rule>) -> (AppState, String) {
    // Every test of a file shares one server, one address and one user, many calls at
    // once: the limits on refused calls written per address and on each caller's share
    // are lifted for it, and tested on servers of their own ([`serve_with_limits`]).
    let lifted = Limits {
        calls_per_caller: usize::MAX,
        database_jobs_per_caller: usize::MAX >> 4,
        refused_per_minute: u32::MAX,
    };
    serve_as(store, issuer, rules, lifted, None)
}

/// [`serve`] with the service's own limits on refused calls and on each caller's share.
pub fn serve_with_limits(store: Arc<Store>, issuer: &TestIssuer) -> (AppState, String) {
    serve_as(store, issuer, Vec::new(), Limits::default(), None)
}

/// [`serve`] with answers past retention read from `lake`.
pub fn serve_with_lake(
    store: Arc<Store>,
    issuer: &TestIssuer,
    lake: tokentrail::lake::view::Reader,
) -> (AppState, String) {
    let lifted =
        Limits { calls_per_caller: usize::MAX, database_jobs_per_caller: 1 << 20, refused_per_minute: u32::MAX };
    serve_as(store, issuer, Vec::new(), lifted, Some(Arc::new(lake)))
}

fn serve_as(
    store: Arc<Store>,
    issuer: &TestIssuer,
    rules: Vec<Rule>,
    limits: Limits,
    lake: Option<Arc<tokentrail::lake::view::Reader>>,
) -> (AppState, String) {
    let listen = "127.0.0.1:0".parse().unwrap();
    let mut settings = Settings::new(store, listen, "test", SignIn::Entra(issuer.config()));
    settings.detection = tokentrail::http::Detection::Catalogue(rules);
    settings.limits = limits;
    settings.lake = lake;
    let app = Application::build(settings).unwrap();
    let (state, base) = (app.state().clone(), format!("http://{}", app.address()));
    std::thread::spawn(move || app.run_until_stopped().unwrap());
    (state, base)
}
