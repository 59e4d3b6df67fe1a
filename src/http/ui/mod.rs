//! The web UI: one HTML shell for every page (deep links work: `/findings/42`), and
//! the script, styles and chart library it loads, all compiled into the binary. No
//! CDN, no external fonts: it works air-gapped, and the Content-Security-Policy lets
//! a page reach nothing but this service. The pages read the API of [`crate::http::api`]
//! with the browser's session cookie.

use crate::auth::Role;
use crate::http::access::Granted;
use crate::http::state::AppState;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The assets, by file name: (content type, bytes).
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js")),
    ("app.css", "text/css; charset=utf-8", include_str!("assets/app.css")),
    ("uPlot.iife.min.js", "text/javascript; charset=utf-8", include_str!("assets/vendor/uPlot.iife.min.js")),
    ("uPlot.min.css", "text/css; charset=utf-8", include_str!("assets/vendor/uPlot.min.css")),
];

/// Pages may load and call only this service; no inline script, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(overview))
        .routes(routes!(incidents))
        .routes(routes!(incident))
        .routes(routes!(findings))
        .routes(routes!(finding))
        .routes(routes!(principal))
        .routes(routes!(search))
        .routes(routes!(sql))
        .routes(routes!(dashboards))
        .routes(routes!(dashboard))
        .routes(routes!(evidence))
        .routes(routes!(access))
        .routes(routes!(reviews))
        .routes(routes!(review))
        .routes(routes!(asset))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The nav: each page's link, and the API call the page cannot do without. A link is
/// shown to a caller holding one of the roles that call allows (read from the same
/// access table the guard enforces), so nobody is offered a page that would refuse them.
const NAV: &[(&str, &str, Method, &str)] = &[
    ("/", "Overview", Method::GET, "/api/status"),
    ("/incidents", "Incidents", Method::GET, "/api/incidents"),
    ("/findings", "Findings", Method::GET, "/api/findings"),
    ("/search", "Search", Method::GET, "/api/search/requests"),
    ("/sql", "SQL", Method::POST, "/api/sql"),
    ("/dashboards", "Dashboards", Method::GET, "/api/dashboards"),
    ("/access", "Access", Method::GET, "/api/access"),
    ("/evidence", "Evidence", Method::POST, "/api/evidence"),
    ("/reviews", "Reviews", Method::GET, "/api/reviews"),
];

/// The nav links `roles` may use.
fn nav(state: &AppState, roles: &[Role]) -> String {
    NAV.iter()
        .filter(|(_, _, method, api)| {
            state.access.roles(method, api).is_some_and(|allowed| allowed.iter().any(|r| roles.contains(r)))
        })
        .map(|(href, label, _, _)| format!(r#"<a href="{href}">{label}</a>"#))
        .collect()
}

/// The shell: the page's content is drawn by app.js from the URL.
fn shell(state: &AppState, granted: &Granted) -> Response {
    let development = state.auth.is_development();
    let banner = if development {
        "<div class=dev role=note>DEVELOPMENT sign-in: tokens from the built-in issuer, loopback only. Not for real data.</div>"
    } else {
        ""
    };
    let html = format!(
        r#"<!doctype html><html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width, initial-scale=1">
<title>TokenTrail</title>
<link rel=stylesheet href="/assets/uPlot.min.css"><link rel=stylesheet href="/assets/app.css">
<script src="/assets/uPlot.iife.min.js" defer></script><script src="/assets/app.js" defer></script>
</head><body data-mode="{mode}">
<a class=skip href=#main>Skip to content</a>
{banner}
<header><a class=brand href="/">TokenTrail</a>
<nav aria-label=Main>{nav}</nav>
<div id=who aria-live=polite></div></header>
<main id=main tabindex=-1><p class=muted>Loading…</p></main>
<footer class=muted>{mode}</footer>
</body></html>"#,
        mode = escape(state.mode),
        nav = nav(state, &granted.caller.roles),
    );
    secure(
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], html)
            .into_response(),
    )
}

macro_rules! page {
    ($name:ident, $path:literal, $doc:literal $(, $param:literal)?) => {
        #[doc = $doc]
        #[utoipa::path(get, path = $path, tag = "ui",
            $(params(($param = String, Path)),)?
            security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor", "TokenTrail.Admin", "TokenTrail.Reviewer"])),
            responses((status = 200, content_type = "text/html", body = String)))]
        pub async fn $name(State(state): State<AppState>, Extension(granted): Extension<Granted>) -> Response {
            shell(&state, &granted)
        }
    };
}

/// Overview: ingest health, open findings, activity. Someone whose only role is
/// Reviewer has nothing here, and is sent to their reviews.
#[utoipa::path(get, path = "/", tag = "ui",
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor", "TokenTrail.Admin", "TokenTrail.Reviewer"])),
    responses((status = 200, content_type = "text/html", body = String),
        (status = 303, description = "a Reviewer only: to /reviews")))]
pub async fn overview(State(state): State<AppState>, Extension(granted): Extension<Granted>) -> Response {
    if granted.caller.roles.iter().all(|r| *r == Role::Reviewer) {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/reviews"), (header::CACHE_CONTROL, "no-store")])
            .into_response();
    }
    shell(&state, &granted)
}

page!(incidents, "/incidents", "Incidents: related findings as one story, with bulk triage.");
page!(
    incident,
    "/incidents/{id}",
    "One incident: its story, who, what, from where, whether it is still going on.",
    "id"
);
page!(findings, "/findings", "Findings, filterable.");
page!(finding, "/findings/{id}", "One finding: evidence, the principal's sign-ins, actions.", "id");
page!(principal, "/principals/{id}", "One principal over a period.", "id");
page!(search, "/search", "Search data operations and sign-ins.");
page!(sql, "/sql", "The read-only SQL console.");
page!(dashboards, "/dashboards", "The dashboards of dashboards/.");
page!(dashboard, "/dashboards/{name}", "One dashboard.", "name");
page!(evidence, "/evidence", "SOC 2 evidence packs.");
page!(access, "/access", "Granted against used: accounts, who can read their keys, the access review.");
page!(reviews, "/reviews", "Access reviews: the list, and for Admins a form to start one.");
page!(review, "/reviews/{id}", "One access review: its items, the decisions, its log.", "id");

/// Script, styles and the chart library.
#[utoipa::path(get, path = "/assets/{file}", tag = "ui",
    params(("file" = String, Path)),
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor", "TokenTrail.Admin", "TokenTrail.Reviewer"])),
    responses((status = 200, body = String), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn asset(crate::http::error::Path(file): crate::http::error::Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => secure(
            ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "private, max-age=300")], *body)
                .into_response(),
        ),
        None => crate::http::error::ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no asset {file:?}"))
            .into_response(),
    }
}
