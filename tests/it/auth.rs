//! Authentication against a real local OpenID provider (`common::jwks::TestIssuer`):
//! bearer tokens through `Auth::entra` + `authenticate`, the browser sign-in flow
//! over HTTP, and the development issuer of `tokentrail demo`.

use crate::common;

use axum::http::request::Parts;
use axum::http::{Method, Request, header};
use common::jwks::{APP_ID_URI, OTHER_TENANT, TENANT, TestIssuer, TestKey, TestUser, USER_OID};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokentrail::auth::{Auth, AuthError, Caller, DEV_ISSUER, DEV_TENANT_ID, Role, Via};

fn parts(method: Method, headers: &[(&str, &str)]) -> Parts {
    let mut request = Request::builder().method(method).uri("/api/findings");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap().into_parts().0
}

fn bearer(token: &str) -> Parts {
    parts(Method::GET, &[("authorization", &format!("Bearer {token}"))])
}

async fn accepted(auth: &Auth, token: &str) -> Caller {
    auth.authenticate(&bearer(token)).await.unwrap_or_else(|e| panic!("refused: {e}"))
}

/// The refusal message; it never repeats the token or its signature.
async fn refused(auth: &Auth, token: &str) -> String {
    match auth.authenticate(&bearer(token)).await {
        Ok(caller) => panic!("accepted: {caller:?}"),
        Err(AuthError::Invalid(message)) => {
            assert!(!message.contains(token), "{message}");
            if let Some(signature) = token.rsplit('.').next().filter(|s| s.len() > 8) {
                assert!(!message.contains(signature), "{message}");
            }
            message
        }
        Err(other) => panic!("expected Invalid, got {other:?}"),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn a_valid_token_gives_the_caller_with_known_roles() {
    let issuer = TestIssuer::start();
    let auth = Auth::entra(issuer.config()).await.unwrap();
    let token = issuer.token_with(
        &[],
        json!({ "roles": ["TokenTrail.Admin", "Someone.Else", "TokenTrail.Responder", "TokenTrail.Admin"] }),
    );
    let caller = accepted(&auth, &token).await;
    assert_eq!(caller.oid, USER_OID);
    assert_eq!(caller.tid, TENANT);
    assert_eq!(caller.name.as_deref(), Some("Test User"));
    assert_eq!(caller.roles, vec![Role::Responder, Role::Admin], "unknown roles ignored, duplicates once");
    assert_eq!(caller.via, Via::Bearer);
    assert!(!auth.is_development());

    // No roles is still a caller (the API then answers 403).
    assert!(accepted(&auth, &issuer.token(&[])).await.roles.is_empty());
    // `name` falls back to `preferred_username`.
    let caller = accepted(&auth, &issuer.token_with(&[], json!({ "name": null }))).await;
    assert_eq!(caller.name.as_deref(), Some("test.user@example.com"));
}

#[tokio::test]
async fn missing_and_malformed_credentials_are_refused() {
    let issuer = TestIssuer::start();
    let auth = Auth::entra(issuer.config()).await.unwrap();
    assert!(matches!(auth.authenticate(&parts(Method::GET, &[])).await, Err(AuthError::Missing)));
    let basic = parts(Method::GET, &[("authorization", "Basic dXNlcjpwYXNz")]);
    let Err(AuthError::Invalid(message)) = auth.authenticate(&basic).await else { panic!("accepted Basic") };
    assert!(message.contains("Bearer <token>"), "{message}");
    assert!(refused(&auth, "not-a-jwt").await.contains("not a JWT"));
    assert!(refused(&auth, "a.b.c").await.contains("base64url"));
}

#[tokio::test]
async fn times_are_checked_with_the_configured_skew() {
    let issuer = TestIssuer::start();
    let auth = Auth::entra(issuer.config()).await.unwrap();
    let expired = issuer.token_with(&[], json!({ "exp": now() - 3600, "nbf": now() - 7200 }));
    let message = refused(&auth, &expired).await;
    assert!(message.starts_with("token expired at 20"), "{message}");

    let early = issuer.token_with(&[], json!({ "nbf": now() + 3600 }));
    assert!(refused(&auth, &early).await.starts_with("token is not valid before"));

    // Within the default 120 s skew both ways.
    accepted(&auth, &issuer.token_with(&[], json!({ "exp": now() - 60 }))).await;
    accepted(&auth, &issuer.token_with(&[], json!({ "nbf": now() + 60 }))).await;

    let no_exp = issuer.token_with(&[], json!({ "exp": null }));
    assert!(refused(&auth, &no_exp).await.contains("no exp claim"));
}

#[tokio::test]
async fn audience_tenant_and_issuer_form_are_checked() {
    let issuer = TestIssuer::start();
    let auth = Auth::entra(issuer.config()).await.unwrap();

    let other_app = issuer.token_with(&[], json!({ "aud": "api://someone-else" }));
    assert_eq!(refused(&auth, &other_app).await, "audience api://someone-else is not accepted");
    assert!(refused(&auth, &issuer.token_with(&[], json!({ "aud": null }))).await.contains("no aud"));

    // v1 (sts.windows.net, Application ID URI audience) and v2 forms are both accepted.
    let v1 = issuer.token_with(&[], json!({ "iss": TestIssuer::issuer_v1(TENANT), "aud": APP_ID_URI, "ver": "1.0" }));
    assert_eq!(accepted(&auth, &v1).await.tid, TENANT);
    accepted(&auth, &issuer.token_with(&[], json!({ "iss": TestIssuer::issuer_v2(TENANT) }))).await;

    // A tenant that is not configured, though its keys are served by the same host.
    let other = issuer.token_with(&[], json!({ "iss": TestIssuer::issuer_v2(OTHER_TENANT), "tid": OTHER_TENANT }));
    let message = refused(&auth, &other).await;
    assert!(
        message.starts_with(&format!(
            "issuer https://login.microsoftonline.com/{OTHER_TENANT}/v2.0 is not a configured tenant"
        )),
        "{message}"
    );

    // The right tenant in the wrong issuer form.
    for wrong in [
        format!("https://sts.windows.net/{TENANT}/v2.0"),
        format!("https://login.microsoftonline.com/{TENANT}/"),
        format!("https://login.microsoftonline.com/{TENANT}/v2.0/"),
        format!("{}/{TENANT}/v2.0", issuer.authority),
    ] {
        let token = issuer.token_with(&[], json!({ "iss": wrong }));
        assert!(refused(&auth, &token).await.contains("is not a configured tenant"), "{wrong}");
    }

    // iss says our tenant, tid says another.
    let mixed = issuer.token_with(&[], json!({ "tid": OTHER_TENANT }));
    assert!(refused(&auth, &mixed).await.contains("differs from its issuer's tenant"));
    assert!(refused(&auth, &issuer.token_with(&[], json!({ "tid": null }))).await.contains("no tid"));
}

#[tokio::test]
async fn tokens_without_oid_are_refused() {
    let issuer = TestIssuer::start();
    let auth = Auth::entra(issuer.config()).await.unwrap();
    let token = issuer.token_with(&[Role::Admin], json!({ "oid": null }));
    assert_eq!(refused(&auth, &token).await, "the token has no oid claim");
}

#[tokio::test]
async fn only_rs256_is_accepted_and_decided_before_any_key_lookup() {
    let issuer = TestIssuer::start();
    let auth = Auth::entra(issuer.config()).await.unwrap();
    let hits = issuer.jwks_hits();
    let claims = issuer.claims(&[Role::Admin]);

    assert_eq!(refused(&auth, &issuer.unsigned(&claims)).await, "algorithm none is not allowed (only RS256)");
    let confused = issuer.hs256_with_public_key(&claims);
    assert_eq!(refused(&auth, &confused).await, "algorithm HS256 is not allowed (only RS256)");
    assert_eq!(issuer.jwks_hits(), hits, "refused before looking for a key");

    // A valid RS256 header over a signature by another key.
    let stranger = TestKey::generate(&issuer.signing_key().kid);
    assert!(refused(&auth, &stranger.sign(&claims)).await.contains("signature does not verify"));
    // A tampered payload.
    let token = issuer.sign(&claims);
    let mut pieces: Vec<String> = token.split('.').map(str::to_owned).collect();
    pieces[1] = issuer.token(&[Role::Admin, Role::Responder]).split('.').nth(1).unwrap().to_owned();
    assert!(refused(&auth, &pieces.join(".")).await.contains("signature does not verify"));
}

#[tokio::test]
async fn unknown_kids_refresh_the_jwks_at_most_once_per_interval() {
    let issuer = TestIssuer::start();
    let auth = Auth::entra(issuer.config()).await.unwrap();
    assert_eq!(issuer.jwks_hits(), 1, "loaded at start");

    let claims = issuer.claims(&[]);
    let message = refused(&auth, &TestKey::generate("unknown-1").sign(&claims)).await;
    assert_eq!(message, format!("signing key kid=unknown-1 is not in the JWKS of tenant {TENANT}"));
    assert_eq!(issuer.jwks_hits(), 2, "one refresh for the unknown kid");

    // A flood of made-up kids: no more requests within the interval.
    let flood = TestKey::generate("x");
    for i in 0..50 {
        let mut key = flood.clone();
        key.kid = format!("flood-{i}");
        assert!(refused(&auth, &key.sign(&claims)).await.contains("is not in the JWKS"));
    }
    assert_eq!(issuer.jwks_hits(), 2);
    accepted(&auth, &issuer.token(&[])).await;
}

#[tokio::test]
async fn concurrent_requests_with_a_new_kid_share_one_refresh() {
    let issuer = TestIssuer::start();
    let auth = Auth::entra(issuer.config()).await.unwrap();
    let rotated = TestKey::generate("test-key-2");
    issuer.publish(rotated.clone(), true);
    let token = issuer.token(&[Role::Auditor]);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (auth, token) = (auth.clone(), token.clone());
            tokio::spawn(async move { auth.authenticate(&bearer(&token)).await.map(|c| c.roles) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), vec![Role::Auditor]);
    }
    assert_eq!(issuer.jwks_hits(), 2);
}

#[tokio::test]
async fn key_rotation_is_picked_up_and_removed_keys_stop_working() {
    let issuer = TestIssuer::start();
    let auth = Auth::entra(issuer.config()).await.unwrap();
    let old = issuer.token(&[Role::Responder]);
    let old_kid = issuer.signing_key().kid;
    accepted(&auth, &old).await;

    // Entra publishes the new key, signs with it, and later drops the old one.
    issuer.publish(TestKey::generate("test-key-2"), true);
    issuer.unpublish(&old_kid);
    let new = issuer.token(&[Role::Responder]);
    assert_eq!(accepted(&auth, &new).await.roles, vec![Role::Responder]);
    assert_eq!(issuer.jwks_hits(), 2);
    // The refresh replaced the key set: the dropped key is gone (no further fetch).
    assert!(refused(&auth, &old).await.contains(&format!("kid={old_kid} is not in the JWKS")));
    assert_eq!(issuer.jwks_hits(), 2);
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_jwks_endpoint_is_down() {
    let issuer = TestIssuer::start();
    let auth = Auth::entra(issuer.config()).await.unwrap();
    issuer.set_down(true);
    accepted(&auth, &issuer.token(&[Role::Responder])).await;

    let message = refused(&auth, &TestKey::generate("new-kid").sign(&issuer.claims(&[]))).await;
    assert!(message.contains("kid=new-kid is not in the JWKS"), "{message}");
    assert!(message.contains("the last refresh failed") && message.contains("503"), "{message}");
    accepted(&auth, &issuer.token(&[Role::Responder])).await;
}

#[tokio::test]
async fn starts_while_the_jwks_endpoint_is_down_and_loads_keys_later() {
    let issuer = TestIssuer::start();
    issuer.set_down(true);
    let mut config = issuer.config();
    config.jwks_retry_secs = 1;
    let auth = Auth::entra(config).await.expect("starts without keys");
    let token = issuer.token(&[Role::Auditor]);
    let message = refused(&auth, &token).await;
    assert!(message.starts_with(&format!("the signing keys of tenant {TENANT} are not loaded yet")), "{message}");
    assert!(message.contains("503"), "{message}");

    issuer.set_down(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match auth.authenticate(&bearer(&token)).await {
            Ok(caller) => {
                assert_eq!(caller.roles, vec![Role::Auditor]);
                break;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("not loaded yet"), "{e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("keys never loaded: {e}"),
        }
    }
}

#[tokio::test]
async fn an_unreachable_authority_still_starts_and_says_why_tokens_fail() {
    let issuer = TestIssuer::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = issuer.config();
    config.authority = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let auth = Auth::entra(config).await.unwrap();
    let message = refused(&auth, &issuer.token(&[])).await;
    assert!(message.contains("not loaded yet") && message.contains("OpenID configuration"), "{message}");
}

#[tokio::test]
async fn bad_configuration_is_refused_with_what_to_fix() {
    let issuer = TestIssuer::start();
    let mut config = issuer.config();
    config.tenants = vec!["common".into()];
    let error = Auth::entra(config).await.err().unwrap().to_string();
    assert!(error.contains("auth.tenants") && error.contains("GUID"), "{error}");
}

// ---------------------------------------------------------------------------
// Browser sign-in over HTTP.

/// The auth routes of `auth` served on `listener`.
fn serve(listener: tokio::net::TcpListener, auth: &Arc<Auth>) {
    let router = auth.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response.headers().get(header::LOCATION).expect("a redirect").to_str().unwrap().to_owned()
}

/// `name=value` of the `Set-Cookie` for `name`, and the whole header.
fn set_cookie(response: &reqwest::Response, name: &str) -> (String, String) {
    let header = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie"));
    (header.split(';').next().unwrap().to_owned(), header)
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

struct SignedIn {
    session_cookie: String,
    set_cookie_header: String,
    return_location: String,
}

/// `/auth/login` → the provider's authorize endpoint (which answers at once with a
/// redirect, or for the development issuer a form that the test submits) → `/auth/callback`.
async fn sign_in(base: &str, return_to: &str) -> Result<SignedIn, (u16, Value)> {
    let http = client();
    let login = http.get(format!("{base}/auth/login?return_to={return_to}")).send().await.unwrap();
    assert_eq!(login.status(), 303);
    let authorize = location(&login);
    let (binding, binding_header) = set_cookie(&login, "tokentrail_login");
    assert!(binding_header.contains("HttpOnly") && binding_header.contains("SameSite=Lax"), "{binding_header}");
    assert_eq!(query_param(&authorize, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(query_param(&authorize, "response_type").as_deref(), Some("code"));
    assert_eq!(query_param(&authorize, "code_challenge").map(|c| c.len()), Some(43));
    assert!(query_param(&authorize, "nonce").is_some() && query_param(&authorize, "state").is_some());

    let mut answer = http.get(&authorize).send().await.unwrap();
    if answer.status() == 200 {
        // The development issuer's page: pick a role and a name, as a person would.
        let page = answer.text().await.unwrap();
        assert!(page.contains("DEVELOPMENT"), "{page}");
        let mut form: Vec<(String, String)> = url::Url::parse(&authorize).unwrap().query_pairs().into_owned().collect();
        form.push(("role".into(), "TokenTrail.Auditor".into()));
        form.push(("name".into(), "Ada <b>Lovelace</b>".into()));
        answer = http.post(authorize.split('?').next().unwrap()).form(&form).send().await.unwrap();
    }
    assert!(answer.status().is_redirection(), "{}", answer.status());
    let callback = location(&answer);
    assert!(callback.starts_with(&format!("{base}/auth/callback?")), "{callback}");

    let done = http.get(&callback).header(header::COOKIE, &binding).send().await.unwrap();
    if done.status() != 303 {
        return Err((done.status().as_u16(), done.json().await.unwrap()));
    }
    let (session_cookie, set_cookie_header) = set_cookie(&done, "tokentrail_session");
    // The same callback again: the sign-in is used up.
    let again = http.get(&callback).header(header::COOKIE, &binding).send().await.unwrap();
    assert_eq!(again.status(), 400);
    Ok(SignedIn { session_cookie, set_cookie_header, return_location: location(&done) })
}

async fn me(base: &str, cookie: &str) -> (u16, Value) {
    let response = client().get(format!("{base}/auth/me")).header(header::COOKIE, cookie).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn entra_app(issuer: &TestIssuer) -> (String, Arc<Auth>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let auth = Auth::entra(issuer.sign_in_config(&format!("{base}/auth/callback"))).await.unwrap();
    serve(listener, &auth);
    (base, auth)
}

#[tokio::test]
async fn browser_sign_in_against_entra_makes_a_session_with_csrf_protection() {
    let issuer = TestIssuer::start();
    issuer.set_user(TestUser {
        oid: USER_OID.into(),
        name: "Grace Hopper".into(),
        roles: vec![Role::Responder, Role::Admin],
    });
    let (base, auth) = entra_app(&issuer).await;
    assert!(!auth.secure_cookies(), "plain-http loopback callback");

    let signed_in = sign_in(&base, "/findings%3Fstatus%3Dopen").await.unwrap();
    assert_eq!(signed_in.return_location, "/findings?status=open");
    let header = &signed_in.set_cookie_header;
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(header.contains(attribute), "{header}");
    }
    assert!(!header.contains("Secure"), "{header}");

    let cookie = signed_in.session_cookie.clone();
    let (status, body) = me(&base, &cookie).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["oid"], USER_OID);
    assert_eq!(body["tid"], TENANT);
    assert_eq!(body["name"], "Grace Hopper");
    assert_eq!(body["roles"], json!(["TokenTrail.Responder", "TokenTrail.Admin"]));
    assert_eq!(body["via"], "session");
    assert_eq!(body["development"], false);
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(csrf.len(), 43);

    // The session authenticates reads; writes need the CSRF token.
    let caller = auth.authenticate(&parts(Method::GET, &[("cookie", &cookie)])).await.unwrap();
    assert_eq!((caller.via, caller.roles.clone()), (Via::Session, vec![Role::Responder, Role::Admin]));
    for method in [Method::HEAD, Method::OPTIONS] {
        auth.authenticate(&parts(method, &[("cookie", &cookie)])).await.unwrap();
    }
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let missing = auth.authenticate(&parts(method.clone(), &[("cookie", &cookie)])).await;
        assert!(matches!(missing, Err(AuthError::Csrf)), "{method}");
        let wrong = auth.authenticate(&parts(method.clone(), &[("cookie", &cookie), ("x-csrf-token", "nope")])).await;
        assert!(matches!(wrong, Err(AuthError::Csrf)), "{method}");
        auth.authenticate(&parts(method, &[("cookie", &cookie), ("x-csrf-token", &csrf)])).await.unwrap();
    }
    // A bearer header wins over the cookie, and is judged on its own.
    let both = parts(Method::GET, &[("cookie", &cookie), ("authorization", "Bearer x.y.z")]);
    assert!(matches!(auth.authenticate(&both).await, Err(AuthError::Invalid(_))));
    // A made-up session id.
    let forged = parts(Method::GET, &[("cookie", "tokentrail_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]);
    let Err(error @ AuthError::Ended) = auth.authenticate(&forged).await else { panic!("forged session accepted") };
    assert!(error.to_string().contains("sign in again"), "{error}");

    // Logout is a state change: CSRF first.
    let http = client();
    let refused = http.post(format!("{base}/auth/logout")).header(header::COOKIE, &cookie).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    let out = http
        .post(format!("{base}/auth/logout"))
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(set_cookie(&out, "tokentrail_session").1.contains("Max-Age=0"));
    let (status, body) = me(&base, &cookie).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn auth_me_without_credentials_is_a_json_401_with_a_bearer_challenge() {
    let issuer = TestIssuer::start();
    let (base, _auth) = entra_app(&issuer).await;
    let response = client().get(format!("{base}/auth/me")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(body["error"]["message"].as_str().unwrap().contains("/auth/login"));

    // A bearer token works on /auth/me too (no CSRF token: none is needed).
    let token = issuer.token(&[Role::Auditor]);
    let response = client().get(format!("{base}/auth/me")).bearer_auth(&token).send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!((body["via"].as_str(), body["csrf_token"].is_null()), (Some("bearer"), true));

    let expired = issuer.token_with(&[], json!({ "exp": now() - 3600 }));
    let response = client().get(format!("{base}/auth/me")).bearer_auth(&expired).send().await.unwrap();
    let challenge = response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().to_owned();
    assert!(challenge.contains("error=\"invalid_token\"") && challenge.contains("token expired at"), "{challenge}");
}

#[tokio::test]
async fn sign_in_refuses_foreign_return_to_and_callbacks_not_started_here() {
    let issuer = TestIssuer::start();
    let (base, _auth) = entra_app(&issuer).await;
    let http = client();
    // The last three normalise to `//evil.example/x`, which a browser reads as a host.
    for bad in [
        "https://evil.example/",
        "//evil.example/x",
        "evil",
        "/.//evil.example/x",
        "/..//evil.example/x",
        "/%2e//evil.example",
    ] {
        let mut url = url::Url::parse(&format!("{base}/auth/login")).unwrap();
        url.query_pairs_mut().append_pair("return_to", bad);
        let response = http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }

    // Login CSRF: a callback for a sign-in this browser did not start.
    let login = http.get(format!("{base}/auth/login")).send().await.unwrap();
    let answer = http.get(location(&login)).send().await.unwrap();
    let callback = location(&answer);
    let response = http.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("not started in this browser"), "{body}");

    // The identity provider's own refusal is passed on.
    let response = http
        .get(format!("{base}/auth/callback?error=access_denied&error_description=AADSTS50105%3A+not+assigned"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("access_denied: AADSTS50105"), "{body}");
}

#[tokio::test]
async fn id_tokens_are_validated_like_bearer_tokens_plus_nonce() {
    let issuer = TestIssuer::start();
    let (base, _auth) = entra_app(&issuer).await;

    issuer.override_id_token(json!({ "nonce": "replayed-from-another-sign-in" }));
    let (status, body) = sign_in(&base, "/").await.err().expect("refused");
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("nonce"), "{body}");

    // An ID token for another app (its audience is not our client id, even if it is
    // an accepted bearer audience).
    issuer.override_id_token(json!({ "aud": APP_ID_URI }));
    let (status, body) = sign_in(&base, "/").await.err().expect("refused");
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("audience api://tokentrail-test is not accepted"));

    issuer.override_id_token(json!({ "exp": now() - 3600 }));
    let (_, body) = sign_in(&base, "/").await.err().expect("refused");
    assert!(body["error"]["message"].as_str().unwrap().contains("token expired"), "{body}");

    issuer.override_id_token(json!({ "iss": TestIssuer::issuer_v2(OTHER_TENANT), "tid": OTHER_TENANT }));
    let (_, body) = sign_in(&base, "/").await.err().expect("refused");
    assert!(body["error"]["message"].as_str().unwrap().contains("not a configured tenant"), "{body}");

    issuer.override_id_token(json!({}));
    sign_in(&base, "/").await.expect("signs in once the ID token is right");
}

#[tokio::test]
async fn secure_cookies_outside_loopback_and_sign_in_off_without_client_id() {
    let issuer = TestIssuer::start();
    let auth = Auth::entra(issuer.sign_in_config("https://tokentrail.contoso.com/auth/callback")).await.unwrap();
    assert!(auth.secure_cookies());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    serve(listener, &auth);
    let login = client().get(format!("{base}/auth/login")).send().await.unwrap();
    assert!(set_cookie(&login, "tokentrail_login").1.contains("; Secure"));
    assert!(location(&login).contains("redirect_uri=https%3A%2F%2Ftokentrail.contoso.com%2Fauth%2Fcallback"));

    let (base, _auth) = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let auth = Auth::entra(issuer.config()).await.unwrap();
        serve(listener, &auth);
        (base, auth)
    };
    let response = client().get(format!("{base}/auth/login")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

// ---------------------------------------------------------------------------
// The development issuer.

#[tokio::test]
async fn the_demo_signs_in_through_the_development_issuer_with_the_same_flow() {
    let dir = tempfile::tempdir().unwrap();
    let auth = Auth::development(&dir.path().join("demo.duckdb"), None).unwrap();
    assert!(auth.is_development());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    serve(listener, &auth);

    let configuration: Value = client()
        .get(format!("{base}/dev-issuer/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(configuration["issuer"], DEV_ISSUER);
    assert_eq!(configuration["token_endpoint"], format!("{base}/dev-issuer/token"));
    let keys: Value = client().get(format!("{base}/dev-issuer/keys")).send().await.unwrap().json().await.unwrap();
    assert_eq!(keys["keys"][0]["kty"], "RSA");
    assert!(keys["keys"][0].get("d").is_none(), "public half only");

    let signed_in = sign_in(&base, "/").await.unwrap();
    assert_eq!(signed_in.return_location, "/");
    let (status, body) = me(&base, &signed_in.session_cookie).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["roles"], json!(["TokenTrail.Auditor"]));
    assert_eq!(body["name"], "Ada <b>Lovelace</b>");
    assert_eq!(body["tid"], DEV_TENANT_ID);
    assert_eq!(body["via"], "session");
    assert_eq!(body["development"], true);
}

#[tokio::test]
async fn the_development_token_endpoint_checks_pkce() {
    let dir = tempfile::tempdir().unwrap();
    let auth = Auth::development(&dir.path().join("demo.duckdb"), None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    serve(listener, &auth);
    let http = client();
    let redirect_uri = format!("{base}/auth/callback");
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"; // of the RFC 7636 example verifier
    let form = [
        ("client_id", "tokentrail-dev"),
        ("redirect_uri", redirect_uri.as_str()),
        ("response_type", "code"),
        ("state", "s"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("role", "TokenTrail.Admin"),
    ];
    let answer = http.post(format!("{base}/dev-issuer/authorize")).form(&form).send().await.unwrap();
    let code = query_param(&location(&answer), "code").unwrap();
    let exchange = |verifier: &'static str, code: String| {
        let (http, base, redirect_uri) = (http.clone(), base.clone(), redirect_uri.clone());
        async move {
            let form = [
                ("grant_type", "authorization_code".to_owned()),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("client_id", "tokentrail-dev".to_owned()),
                ("code_verifier", verifier.to_owned()),
            ];
            let response = http.post(format!("{base}/dev-issuer/token")).form(&form).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = exchange("the-wrong-verifier-the-wrong-verifier-the-wrong", code).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));

    // A redirect URI off loopback is refused at authorize.
    let mut foreign = form.to_vec();
    foreign[1] = ("redirect_uri", "https://evil.example/auth/callback");
    let answer = http.post(format!("{base}/dev-issuer/authorize")).form(&foreign).send().await.unwrap();
    assert_eq!(answer.status(), 400);

    let answer = http.post(format!("{base}/dev-issuer/authorize")).form(&form).send().await.unwrap();
    let code = query_param(&location(&answer), "code").unwrap();
    let (status, body) = exchange("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", code).await;
    assert_eq!(status, 200, "{body}");
    let caller = accepted(&auth, body["id_token"].as_str().unwrap()).await;
    assert_eq!((caller.roles, caller.via), (vec![Role::Admin], Via::Development));
}

#[tokio::test]
async fn dev_tokens_are_accepted_by_the_demo_on_that_database_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("tokentrail.duckdb");
    // `tokentrail token` may run before the demo ever did: it creates the key.
    let token = tokentrail::auth::dev_token(&db, Role::Responder, "Grace", chrono::Duration::minutes(10)).unwrap();
    let key_file = dir.path().join("data").join("tokentrail.duckdb.dev-issuer.pem");
    assert_eq!(tokentrail::auth::dev_key_path(&db), key_file);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(std::fs::read_to_string(&key_file).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));

    let demo = Auth::development(&db, None).unwrap();
    let caller = accepted(&demo, &token).await;
    assert_eq!((caller.tid.as_str(), caller.name.as_deref()), (DEV_TENANT_ID, Some("Grace")));
    assert_eq!((caller.roles.clone(), caller.via), (vec![Role::Responder], Via::Development));
    // The same name is the same user.
    let again = tokentrail::auth::dev_token(&db, Role::Admin, "Grace", chrono::Duration::minutes(1)).unwrap();
    assert_eq!(accepted(&demo, &again).await.oid, caller.oid);

    assert!(tokentrail::auth::dev_token(&db, Role::Admin, "x", chrono::Duration::zero()).is_err());

    // Another database's demo has another key.
    let other = Auth::development(&dir.path().join("other.duckdb"), None).unwrap();
    assert!(refused(&other, &token).await.contains("is not in the JWKS"));

    // Production never trusts the development issuer.
    let issuer = TestIssuer::start();
    let entra = Auth::entra(issuer.config()).await.unwrap();
    assert!(refused(&entra, &token).await.starts_with(&format!("issuer {DEV_ISSUER} is not a configured tenant")));
    // Nor does the demo trust Entra tokens.
    assert!(refused(&demo, &issuer.token(&[Role::Admin])).await.contains("is not a configured tenant"));
}

#[test]
fn the_token_command_prints_a_token_the_demo_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.duckdb");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tokentrail"))
            .args(args)
            .env("TOKENTRAIL_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = run(&["token", "--role", "auditor", "--db", db.to_str().unwrap(), "--name", "Ada", "--minutes", "5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let demo = Auth::development(&db, None).unwrap();
    let caller = runtime.block_on(demo.authenticate(&bearer(&token))).unwrap();
    assert_eq!((caller.roles, caller.name.as_deref()), (vec![Role::Auditor], Some("Ada")));

    let out = run(&["token", "--role", "root", "--db", db.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("use Responder, Auditor or Admin"));
}

#[tokio::test]
async fn development_sign_in_asks_for_its_secret_answers_loopback_only_and_cannot_be_framed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = tokentrail::auth::SignInSecret::new();
    let value = secret.value().to_owned();
    let auth = Auth::development(&dir.path().join("serve.duckdb"), Some(secret)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    serve(listener, &auth);
    let http = client();
    let redirect_uri = format!("{base}/auth/callback");
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let form = |secret: Option<&str>| {
        let mut form = vec![
            ("client_id", "tokentrail-dev".to_owned()),
            ("redirect_uri", redirect_uri.clone()),
            ("response_type", "code".to_owned()),
            ("state", "s".to_owned()),
            ("code_challenge", challenge.to_owned()),
            ("code_challenge_method", "S256".to_owned()),
            ("role", "TokenTrail.Admin".to_owned()),
        ];
        if let Some(secret) = secret {
            form.push(("secret", secret.to_owned()));
        }
        form
    };
    // The page asks for the secret, and may not be framed or load anything.
    let mut url = url::Url::parse(&format!("{base}/dev-issuer/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs(form(None)[..6].iter());
    let page = http.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers().get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(page.headers().get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
    assert!(page.text().await.unwrap().contains("name=\"secret\""));
    // Two POSTs without the secret no longer make an Admin.
    let answer = http.post(format!("{base}/dev-issuer/authorize")).form(&form(None)).send().await.unwrap();
    assert_eq!(answer.status(), 403);
    let answer = http.post(format!("{base}/dev-issuer/authorize")).form(&form(Some("guess"))).send().await.unwrap();
    assert_eq!(answer.status(), 403);
    // A Host that is not loopback (a reverse proxy, a shared host) is refused, POST too.
    let answer = http
        .post(format!("{base}/dev-issuer/authorize"))
        .header(header::HOST, "tokentrail.example.com")
        .form(&form(Some(&value)))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let answer = http.post(format!("{base}/dev-issuer/authorize")).form(&form(Some(&value))).send().await.unwrap();
    assert_eq!(answer.status(), 303, "{:?}", answer.text().await);
    // Guessing is cut off: after ten wrong secrets in a minute even the right one waits.
    for _ in 0..10 {
        http.post(format!("{base}/dev-issuer/authorize")).form(&form(Some("guess"))).send().await.unwrap();
    }
    let answer = http.post(format!("{base}/dev-issuer/authorize")).form(&form(Some(&value))).send().await.unwrap();
    assert_eq!(answer.status(), 403);
}

#[test]
fn serve_without_auth_or_the_development_switch_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    let db = dir.path().join("s.duckdb");
    std::fs::write(&config, format!("db = {db:?}\n[http]\nlisten = \"127.0.0.1:0\"\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("TOKENTRAIL_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("configure [auth]") && stderr.contains("development_sign_in"), "{stderr}");
}
