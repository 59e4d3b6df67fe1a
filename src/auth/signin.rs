//! Browser sign-in: OpenID Connect authorization code flow with PKCE (S256).
//!
//! `/auth/login` remembers a sign-in (state, nonce, PKCE verifier, where to return)
//! and binds it to the browser with a short-lived cookie holding the state, so a
//! callback started elsewhere (login CSRF) is refused. `/auth/callback` exchanges the
//! code at the token endpoint, validates the ID token like a bearer token (audience:
//! the client id) plus its nonce, and starts a session. The same code runs against
//! Entra ID and against the development issuer.

use super::dev::{DEV_AUDIENCE, loopback_base};
use super::keys::{limited, shown};
use super::session::{PENDING_LIFETIME, random_token, same};
use super::{Auth, SESSION_COOKIE, SignIn, Via, error_response};
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The cookie binding a sign-in in progress to the browser that started it.
const LOGIN_COOKIE: &str = "tokentrail_login";

pub(crate) fn routes() -> Router<Arc<Auth>> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
}

fn sign_in_error(status: StatusCode, message: impl Into<String>) -> Response {
    error_response(status, "sign_in_failed", message.into())
}

/// `text` if it is a path on this server (`/findings?x=1`), never another origin. The
/// answer is checked after normalisation: `/.//evil.example/x` normalises to
/// `//evil.example/x`, which a browser reads as another host.
fn local_path(text: &str) -> Option<String> {
    if !text.starts_with('/') || text.starts_with("//") || text.contains('\\') || text.chars().any(char::is_control) {
        return None;
    }
    let base = url::Url::parse("http://tokentrail.invalid/").expect("constant URL");
    let url = base.join(text).ok()?;
    let path = &url[url::Position::BeforePath..];
    let local = url.host_str() == Some("tokentrail.invalid") && path.starts_with('/') && !path.starts_with("//");
    local.then(|| path.to_owned())
}

/// `Set-Cookie` for an HttpOnly, SameSite=Lax cookie (Secure outside loopback).
/// Values are base64url, so nothing needs quoting.
fn cookie(auth: &Auth, name: &'static str, value: String, path: &'static str, max_age_secs: u64) -> HeaderValue {
    let secure = if auth.secure_cookies { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&text).expect("cookie values are base64url")
}

fn redirect(location: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_str(location).expect("URL is a valid header value"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for value in cookies {
        headers.append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
struct LoginQuery {
    return_to: Option<String>,
}

async fn login(State(auth): State<Arc<Auth>>, headers: HeaderMap, Query(query): Query<LoginQuery>) -> Response {
    let return_to = match query.return_to.as_deref() {
        None | Some("") => "/".to_owned(),
        Some(text) => match local_path(text) {
            Some(path) => path,
            None => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "return_to must be a path on this server, like /findings".into(),
                );
            }
        },
    };
    let (authorize_url, redirect_uri, client_id) = match &auth.sign_in {
        None => {
            return error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                "browser sign-in is not configured: set auth.client_id and auth.redirect_url".into(),
            );
        }
        Some(SignIn::Entra { client_id, redirect_url, keys, .. }) => match keys.endpoints_on_demand().await {
            Ok(endpoints) => (endpoints.authorization_endpoint, redirect_url.clone(), client_id.clone()),
            Err(error) => {
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!(
                        "the OpenID configuration of tenant {} is not loaded ({}); try again shortly",
                        keys.tenant,
                        limited(&error, 300)
                    ),
                );
            }
        },
        Some(SignIn::Development) => match loopback_base(&headers) {
            Some(base) => {
                (format!("{base}/dev-issuer/authorize"), format!("{base}/auth/callback"), DEV_AUDIENCE.into())
            }
            None => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the development issuer signs in on loopback only (http://127.0.0.1 or http://localhost)".into(),
                );
            }
        },
    };
    let verifier = random_token();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let nonce = random_token();
    let state = auth.pending.start(nonce.clone(), verifier, return_to, redirect_uri.clone());
    let mut url = match url::Url::parse(&authorize_url) {
        Ok(url) => url,
        Err(_) => {
            return sign_in_error(
                StatusCode::BAD_GATEWAY,
                "the OpenID configuration's authorization_endpoint is not a URL",
            );
        }
    };
    url.query_pairs_mut()
        .append_pair("client_id", &client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("response_mode", "query")
        .append_pair("scope", "openid profile")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let binding = cookie(&auth, LOGIN_COOKIE, state, "/auth", PENDING_LIFETIME.as_secs());
    redirect(url.as_str(), vec![binding])
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(State(auth): State<Arc<Auth>>, headers: HeaderMap, Query(query): Query<CallbackQuery>) -> Response {
    if let Some(error) = &query.error {
        return sign_in_error(
            StatusCode::BAD_REQUEST,
            format!(
                "the identity provider refused the sign-in: {}: {}",
                shown(error),
                shown(query.error_description.as_deref().unwrap_or(""))
            ),
        );
    }
    let (Some(code), Some(state)) = (query.code, query.state) else {
        return sign_in_error(StatusCode::BAD_REQUEST, "the callback needs code and state; start at /auth/login");
    };
    let bound = CookieJar::from_headers(&headers).get(LOGIN_COOKIE).is_some_and(|c| same(c.value(), &state));
    let pending = if bound { auth.pending.finish(&state) } else { None };
    let Some(pending) = pending else {
        return sign_in_error(
            StatusCode::BAD_REQUEST,
            "this sign-in was not started in this browser, was already used, or took longer than 10 minutes; \
             start again at /auth/login",
        );
    };

    let (token_endpoint, client_id, secret) = match &auth.sign_in {
        Some(SignIn::Entra { client_id, keys, client_secret, .. }) => match keys.endpoints_on_demand().await {
            Ok(endpoints) => (endpoints.token_endpoint, client_id.clone(), client_secret.as_ref().map(|s| s.0.clone())),
            Err(error) => {
                return sign_in_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the OpenID configuration is not loaded ({}); try again shortly", limited(&error, 300)),
                );
            }
        },
        // The redirect URI was checked to be loopback at /auth/login; the issuer is
        // this same server.
        Some(SignIn::Development) => {
            let base = pending.redirect_uri.trim_end_matches("/auth/callback");
            (format!("{base}/dev-issuer/token"), DEV_AUDIENCE.to_owned(), None)
        }
        None => return sign_in_error(StatusCode::NOT_FOUND, "browser sign-in is not configured"),
    };
    let mut form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code),
        ("redirect_uri", pending.redirect_uri.clone()),
        ("client_id", client_id.clone()),
        ("code_verifier", pending.verifier.clone()),
        ("scope", "openid profile".to_owned()),
    ];
    if let Some(secret) = secret {
        form.push(("client_secret", secret));
    }
    let response = match auth.http.post(&token_endpoint).form(&form).send().await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(error = %error, endpoint = %token_endpoint, "code exchange failed");
            return sign_in_error(StatusCode::BAD_GATEWAY, "could not reach the token endpoint; try again");
        }
    };
    let status = response.status();
    let body: TokenResponse = match response.json().await {
        Ok(body) => body,
        Err(_) => {
            return sign_in_error(
                StatusCode::BAD_GATEWAY,
                format!("the token endpoint answered HTTP {status} without JSON"),
            );
        }
    };
    let Some(id_token) = body.id_token.filter(|_| status.is_success()) else {
        return sign_in_error(
            StatusCode::BAD_REQUEST,
            format!(
                "the token endpoint refused the code: {}: {}",
                shown(body.error.as_deref().unwrap_or("no id_token")),
                shown(body.error_description.as_deref().unwrap_or(""))
            ),
        );
    };
    let verified = match auth.validator.validate(&id_token, std::slice::from_ref(&client_id)).await {
        Ok(verified) => verified,
        Err(message) => {
            tracing::info!(reason = %message, "ID token refused");
            return sign_in_error(StatusCode::UNAUTHORIZED, format!("the ID token was refused: {message}"));
        }
    };
    if !verified.nonce.as_deref().is_some_and(|n| same(n, &pending.nonce)) {
        return sign_in_error(StatusCode::UNAUTHORIZED, "the ID token's nonce does not match this sign-in");
    }
    let caller = verified.caller(Via::Session);
    tracing::info!(
        oid = %caller.oid,
        tid = %caller.tid,
        roles = ?caller.roles.iter().map(|r| r.claim()).collect::<Vec<_>>(),
        development = verified.development,
        "browser signed in"
    );
    let (id, _csrf) = auth.sessions.create(caller);
    let session = cookie(&auth, SESSION_COOKIE, id, "/", auth.session_max.as_secs());
    let clear = cookie(&auth, LOGIN_COOKIE, String::new(), "/auth", 0);
    redirect(&pending.return_to, vec![session, clear])
}

async fn logout(State(auth): State<Arc<Auth>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    match auth.identify(&parts).await {
        Ok(identified) => {
            if let Some(session) = identified.session {
                auth.sessions.remove(&session.id);
            }
            let mut response = StatusCode::NO_CONTENT.into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie(&auth, SESSION_COOKIE, String::new(), "/", 0));
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn me(State(auth): State<Arc<Auth>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    match auth.identify(&parts).await {
        Ok(identified) => {
            let caller = identified.caller;
            axum::Json(serde_json::json!({
                "oid": caller.oid,
                "tid": caller.tid,
                "name": caller.name,
                "roles": caller.roles,
                "via": caller.via,
                "csrf_token": identified.session.map(|s| s.csrf),
                "development": auth.is_development(),
            }))
            .into_response()
        }
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn return_to_accepts_local_paths_only() {
        assert_eq!(local_path("/findings?status=open").as_deref(), Some("/findings?status=open"));
        assert_eq!(local_path("/a/../b").as_deref(), Some("/b"));
        for bad in [
            "https://evil.example/",
            "//evil.example/x",
            "/\\evil.example",
            "evil",
            "/x\ny",
            "javascript:alert(1)",
            // Normalised to `//evil.example/x`.
            "/.//evil.example/x",
            "/..//evil.example/x",
            "/a/..//evil.example",
            "/%2e//evil.example",
        ] {
            assert_eq!(local_path(bad), None, "{bad}");
        }
    }
}
