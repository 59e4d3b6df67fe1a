//! Who is calling: Entra ID bearer tokens, browser sessions, and the development
//! issuer of `tokentrail demo`.
//!
//! Contract: [`Auth::authenticate`] returns a [`Caller`] only for a bearer token that
//! passed every check of `token.rs` (signature by a key of a configured tenant's JWKS,
//! RS256, issuer, audience, times, `tid`, `oid`), or for a live session cookie, which
//! `/auth/callback` creates only from an ID token that passed the same checks. A
//! session on a state-changing method also needs its CSRF token. Roles come from the
//! token's `roles` claim; checking them is the caller's job.
//!
//! - `config.rs`: `[auth]` of the serve configuration.
//! - `keys.rs`: each tenant's signing keys, refreshed on unknown `kid`, rate-limited.
//! - `token.rs`: the validation steps.
//! - `session.rs`: sessions and sign-ins in progress, in memory.
//! - `signin.rs`: `/auth/login`, `/auth/callback`, `/auth/logout`, `/auth/me`.
//! - `dev.rs`: the development issuer (`/dev-issuer/`, `tokentrail token`).

mod config;
mod dev;
mod keys;
mod session;
mod signin;
mod token;

pub use config::{AuthConfig, CLIENT_SECRET_ENV};
pub use dev::{DEV_AUDIENCE, DEV_ISSUER, DEV_TENANT_ID, SignInSecret, dev_oid, dev_token, key_path as dev_key_path};

use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keys::KeySet;
use serde::{Deserialize, Serialize};
use session::{PendingLogins, Sessions};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;
use token::{Trusted, Validator};

/// App roles, as the `roles` claim carries them (interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// On-call: search, findings, acknowledge/resolve, read-only SQL.
    #[serde(rename = "TokenTrail.Responder")]
    Responder,
    /// Compliance: findings, evidence downloads, read-only.
    #[serde(rename = "TokenTrail.Auditor")]
    Auditor,
    /// Rules, suppressions, configuration views.
    #[serde(rename = "TokenTrail.Admin")]
    Admin,
    /// Access reviews: decides on the reviews that name them, and nothing else.
    #[serde(rename = "TokenTrail.Reviewer")]
    Reviewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Responder, Role::Auditor, Role::Admin, Role::Reviewer];

    pub fn claim(self) -> &'static str {
        match self {
            Role::Responder => "TokenTrail.Responder",
            Role::Auditor => "TokenTrail.Auditor",
            Role::Admin => "TokenTrail.Admin",
            Role::Reviewer => "TokenTrail.Reviewer",
        }
    }

    pub fn from_claim(claim: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.claim() == claim)
    }
}

/// How the caller proved who it is (interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Bearer,
    Session,
    /// A token of the development issuer (demo, loopback only).
    Development,
}

/// An authenticated caller (interface). Identified by `oid` + `tid`, never by name.
#[derive(Debug, Clone, Serialize)]
pub struct Caller {
    pub oid: String,
    pub tid: String,
    /// `name` or `preferred_username` claim, for display and the access log only.
    pub name: Option<String>,
    pub roles: Vec<Role>,
    pub via: Via,
}

/// Why a request was not authenticated (interface). `Missing` and `Invalid` map to
/// 401 with `WWW-Authenticate: Bearer ...`; `Csrf` to 403 (the caller is known, the
/// request is refused). See its `IntoResponse`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: send `Authorization: Bearer <token>` or sign in at /auth/login")]
    Missing,
    /// The token or session was presented and refused; the message says why
    /// (expired, wrong audience, unknown key, ...), never echoing the token.
    #[error("{0}")]
    Invalid(String),
    /// A session cookie of a session this service does not hold (signed out, expired, or
    /// held by the process before a restart): a page sends the browser to sign in again.
    #[error("the session has ended or is unknown; sign in again at /auth/login")]
    Ended,
    /// A state-changing request with a session cookie but no valid CSRF token.
    #[error("missing or wrong X-CSRF-Token header; get it from GET /auth/me")]
    Csrf,
}

impl AuthError {
    /// The stable `code` of the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Invalid(_) | AuthError::Ended => "unauthorized",
            AuthError::Csrf => "forbidden",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::Invalid(_) | AuthError::Ended => StatusCode::UNAUTHORIZED,
            AuthError::Csrf => StatusCode::FORBIDDEN,
        }
    }
}

/// `{"error": {"code", "message"}}` with `WWW-Authenticate` on 401 (RFC 6750).
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let mut response = error_response(self.status(), self.code(), self.to_string());
        let challenge = match &self {
            AuthError::Missing => Some("Bearer realm=\"tokentrail\"".to_owned()),
            AuthError::Invalid(_) | AuthError::Ended => {
                // Header-safe: messages quote token values only through `keys::shown`,
                // but the whole message is filtered again here.
                let description: String = self
                    .to_string()
                    .chars()
                    .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '?' })
                    .collect();
                Some(format!(
                    "Bearer realm=\"tokentrail\", error=\"invalid_token\", error_description=\"{description}\""
                ))
            }
            AuthError::Csrf => None,
        };
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// The JSON error body every auth route answers with.
pub(crate) fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": { "code": code, "message": message } }))).into_response()
}

/// The cookie holding the browser session id.
pub const SESSION_COOKIE: &str = "tokentrail_session";
/// The header a session must send its CSRF token in on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The app registration's client secret; kept out of `Debug` and logs.
struct ClientSecret(String);

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// How a browser signs in.
enum SignIn {
    /// Entra ID's authorize and token endpoints, from the first tenant's OpenID configuration.
    Entra { client_id: String, redirect_url: String, keys: Arc<KeySet>, client_secret: Option<ClientSecret> },
    /// The development issuer's, on this server (`/dev-issuer/`).
    Development,
}

/// Authentication for the HTTP side: validates bearer tokens and sessions, and
/// serves the browser sign-in routes ([`Auth::router`]).
pub struct Auth {
    validator: Validator,
    /// Accepted `aud` of bearer tokens.
    audiences: Vec<String>,
    /// Remote key sets, for the periodic refresh.
    key_sets: Vec<Arc<KeySet>>,
    sign_in: Option<SignIn>,
    sessions: Sessions,
    pending: PendingLogins,
    dev: Option<dev::DevIssuer>,
    secure_cookies: bool,
    session_max: Duration,
    http: reqwest::Client,
}

/// Keys older than this are fetched again even without an unknown `kid`.
const KEYS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| anyhow::anyhow!("building the HTTP client for Entra ID: {e}"))
}

impl Auth {
    /// Production: trusts the tenants of `config`. Loads their keys now, but starts
    /// even if that fails (tokens are then refused with the reason until keys load;
    /// a background task retries every `jwks_retry_secs`). Needs a tokio runtime.
    pub async fn entra(config: AuthConfig) -> anyhow::Result<Arc<Auth>> {
        config.check()?;
        let http = http_client()?;
        let authority = config.authority.trim_end_matches('/');
        let mut issuers = HashMap::new();
        let mut key_sets = Vec::new();
        for tenant in &config.tenants {
            let keys = Arc::new(KeySet::remote(
                tenant,
                format!("{authority}/{tenant}/v2.0/.well-known/openid-configuration"),
                http.clone(),
                Duration::from_secs(config.jwks_refresh_min_secs),
                Duration::from_secs(config.jwks_retry_secs),
            ));
            for iss in token::entra_issuers(tenant) {
                issuers.insert(iss, Trusted { tenant: tenant.clone(), keys: keys.clone(), development: false });
            }
            key_sets.push(keys);
        }
        futures::future::join_all(key_sets.iter().map(|k| k.refresh())).await;

        let sign_in = config.client_id.as_ref().map(|client_id| SignIn::Entra {
            client_id: client_id.clone(),
            redirect_url: config.redirect_url.clone().expect("checked: redirect_url comes with client_id"),
            keys: key_sets[0].clone(),
            client_secret: std::env::var(CLIENT_SECRET_ENV).ok().filter(|s| !s.is_empty()).map(ClientSecret),
        });
        // Secure cookies except for a plain-http loopback callback (local testing).
        let secure_cookies = !config
            .redirect_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .is_some_and(|u| u.scheme() == "http" && config::is_loopback_url(&u));
        tracing::info!(
            tenants = %config.tenants.join(","),
            audiences = %config.audiences.join(","),
            browser_sign_in = sign_in.is_some(),
            client_secret = matches!(&sign_in, Some(SignIn::Entra { client_secret: Some(_), .. })),
            "Entra ID authentication"
        );
        let auth = Arc::new(Auth {
            validator: Validator { issuers, skew_secs: config.clock_skew_secs as i64 },
            audiences: config.audiences.clone(),
            key_sets,
            sign_in,
            sessions: Sessions::new(
                Duration::from_secs(config.session_idle_minutes * 60),
                Duration::from_secs(config.session_max_hours * 3600),
            ),
            pending: PendingLogins::new(),
            dev: None,
            secure_cookies,
            session_max: Duration::from_secs(config.session_max_hours * 3600),
            http,
        });
        spawn_key_refresh(Arc::downgrade(&auth), Duration::from_secs(config.jwks_retry_secs));
        Ok(auth)
    }

    /// `tokentrail demo`, or `serve` with development sign-in: trusts only the
    /// development issuer, whose key is kept in `<db_path>.dev-issuer.pem` (created if
    /// missing). With a `secret`, its sign-in page asks for it.
    pub fn development(db_path: &Path, secret: Option<SignInSecret>) -> anyhow::Result<Arc<Auth>> {
        let key = dev::DevKey::load_or_create(db_path)?;
        let keys = Arc::new(KeySet::fixed(DEV_TENANT_ID, HashMap::from([(key.kid.clone(), key.decoding.clone())])));
        let issuers = HashMap::from([(
            DEV_ISSUER.to_owned(),
            Trusted { tenant: DEV_TENANT_ID.to_owned(), keys, development: true },
        )]);
        tracing::warn!("development issuer: tokens signed by {} are accepted; loopback only", key.path.display());
        let session_max = Duration::from_secs(12 * 3600);
        Ok(Arc::new(Auth {
            validator: Validator { issuers, skew_secs: 120 },
            audiences: vec![DEV_AUDIENCE.to_owned()],
            key_sets: Vec::new(),
            sign_in: Some(SignIn::Development),
            sessions: Sessions::new(Duration::from_secs(3600), session_max),
            pending: PendingLogins::new(),
            dev: Some(dev::DevIssuer::new(key, secret)),
            secure_cookies: false,
            session_max,
            http: http_client()?,
        }))
    }

    /// Whether this is the development issuer (the UI should say so).
    pub fn is_development(&self) -> bool {
        self.dev.is_some()
    }

    /// Whether session cookies carry `Secure` (all but plain-http loopback).
    pub fn secure_cookies(&self) -> bool {
        self.secure_cookies
    }

    /// Whether browsers can sign in (`/auth/login` works).
    pub fn browser_sign_in(&self) -> bool {
        self.sign_in.is_some()
    }

    /// The caller of a request: a bearer token if there is an `Authorization` header,
    /// else the session cookie (plus `X-CSRF-Token` unless GET, HEAD or OPTIONS).
    pub async fn authenticate(&self, parts: &Parts) -> Result<Caller, AuthError> {
        self.identify(parts).await.map(|identified| identified.caller)
    }

    async fn identify(&self, parts: &Parts) -> Result<Identified, AuthError> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| AuthError::Invalid("the Authorization header must be `Bearer <token>`".into()))?;
            let verified = self.validator.validate(token, &self.audiences).await.map_err(|message| {
                tracing::debug!(reason = %message, "bearer token refused");
                AuthError::Invalid(message)
            })?;
            let via = if verified.development { Via::Development } else { Via::Bearer };
            return Ok(Identified { caller: verified.caller(via), session: None });
        }
        let jar = axum_extra::extract::cookie::CookieJar::from_headers(&parts.headers);
        let Some(id) = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()) else {
            return Err(AuthError::Missing);
        };
        let (caller, csrf) = self.sessions.get(&id).ok_or(AuthError::Ended)?;
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if !session::same(sent, &csrf) {
                return Err(AuthError::Csrf);
            }
        }
        Ok(Identified { caller, session: Some(SessionRef { id, csrf }) })
    }

    /// The sign-in routes (`/auth/login`, `/auth/callback`, `/auth/logout`,
    /// `/auth/me`), and for the development issuer its `/dev-issuer/` endpoints.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        let mut router = signin::routes();
        if self.dev.is_some() {
            router = router.merge(dev::routes());
        }
        router.with_state(self.clone())
    }
}

/// Who a request is, and its session if it came with one.
struct Identified {
    caller: Caller,
    session: Option<SessionRef>,
}

struct SessionRef {
    id: String,
    csrf: String,
}

/// Keeps remote keys fresh: retries tenants whose keys never loaded every `retry`,
/// and fetches loaded ones again once a day. Ends with the `Auth`.
fn spawn_key_refresh(auth: Weak<Auth>, retry: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(retry).await;
            let Some(auth) = auth.upgrade() else { return };
            for keys in &auth.key_sets {
                keys.refresh_if_stale(KEYS_MAX_AGE).await;
            }
        }
    });
}
