//! A local stand-in for Entra ID: a real HTTP server on 127.0.0.1 serving a tenant's
//! OpenID configuration, JWKS, authorize and token endpoints, for RSA keys it
//! generated; and tokens signed with those keys with whatever claims and headers a
//! test wants.
//!
//! ```ignore
//! let issuer = TestIssuer::start();
//! let auth = Auth::entra(issuer.config()).await?;
//! let token = issuer.token(&[Role::Responder]);
//! ```
//!
//! The server runs on its own thread and runtime, so sync and async tests can use
//! it; it stops when the `TestIssuer` is dropped.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokentrail::auth::{AuthConfig, Role};

/// The configured tenant.
pub const TENANT: &str = "3b0c6d2e-1f4a-4c5b-9d8e-7a6b5c4d3e2f";
/// A tenant the test server also serves keys for, but that is not configured.
pub const OTHER_TENANT: &str = "9e8d7c6b-5a49-4837-a261-504f3e2d1c0b";
/// The app's client id: the `aud` of v2 access tokens and of ID tokens.
pub const CLIENT_ID: &str = "6f1e2d3c-4b5a-4697-8877-665544332211";
/// The app's Application ID URI: the `aud` of v1 access tokens.
pub const APP_ID_URI: &str = "api://tokentrail-test";
/// The default user's object id.
pub const USER_OID: &str = "0a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9";

/// An RSA-2048 signing key with its `kid`.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    encoding: EncodingKey,
    n: String,
    e: String,
    /// The public key as PEM (`PUBLIC KEY`), as an attacker could download it.
    pub public_pem: String,
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

impl TestKey {
    pub fn generate(kid: &str) -> TestKey {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
        let private = pair.as_der().expect("PKCS#8");
        let public = pair.public_key();
        let spki: aws_lc_rs::encoding::PublicKeyX509Der = public.as_der().expect("SPKI");
        TestKey {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_rsa_pem(pem("PRIVATE KEY", private.as_ref()).as_bytes()).expect("key"),
            n: URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            e: URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
        }
    }

    fn jwk(&self) -> Value {
        json!({ "kty": "RSA", "use": "sig", "kid": self.kid, "n": self.n, "e": self.e, "x5t": self.kid })
    }

    /// `claims` signed RS256 with this key, `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

/// The user the authorize endpoint signs in.
#[derive(Clone)]
pub struct TestUser {
    pub oid: String,
    pub name: String,
    pub roles: Vec<Role>,
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    tenant: String,
    user: TestUser,
}

struct Shared {
    base: String,
    /// Published in the JWKS, in order; the first one signs.
    keys: Mutex<Vec<TestKey>>,
    jwks_hits: AtomicUsize,
    down: AtomicBool,
    user: Mutex<TestUser>,
    codes: Mutex<HashMap<String, Grant>>,
    /// Claims merged into the next ID tokens (to test refusals in the browser flow).
    id_token_overrides: Mutex<Value>,
}

pub struct TestIssuer {
    /// `http://127.0.0.1:<port>`: `auth.authority`.
    pub authority: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestIssuer {
    /// Starts the server with one key (`kid` "test-key-1").
    pub fn start() -> TestIssuer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).unwrap();
        let authority = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            base: authority.clone(),
            keys: Mutex::new(vec![TestKey::generate("test-key-1")]),
            jwks_hits: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            user: Mutex::new(TestUser { oid: USER_OID.into(), name: "Test User".into(), roles: vec![Role::Responder] }),
            codes: Mutex::new(HashMap::new()),
            id_token_overrides: Mutex::new(json!({})),
        });
        let app = Router::new()
            .route("/{tenant}/v2.0/.well-known/openid-configuration", get(openid_configuration))
            .route("/{tenant}/discovery/v2.0/keys", get(jwks))
            .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .with_state(shared.clone());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        TestIssuer { authority, shared, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// Bearer-only configuration trusting [`TENANT`], audiences [`CLIENT_ID`] and
    /// [`APP_ID_URI`], keys from this server.
    pub fn config(&self) -> AuthConfig {
        let mut config = AuthConfig::new(vec![TENANT.into()], vec![CLIENT_ID.into(), APP_ID_URI.into()]);
        config.authority = self.authority.clone();
        config
    }

    /// [`config`](Self::config) plus browser sign-in with `redirect_url`
    /// (`http://127.0.0.1:<port>/auth/callback` of the server under test).
    pub fn sign_in_config(&self, redirect_url: &str) -> AuthConfig {
        let mut config = self.config();
        config.client_id = Some(CLIENT_ID.into());
        config.redirect_url = Some(redirect_url.into());
        config
    }

    /// The v2 issuer of `tenant`.
    pub fn issuer_v2(tenant: &str) -> String {
        format!("https://login.microsoftonline.com/{tenant}/v2.0")
    }

    /// The v1 issuer of `tenant`.
    pub fn issuer_v1(tenant: &str) -> String {
        format!("https://sts.windows.net/{tenant}/")
    }

    /// Valid v2 access token claims for the default user with `roles`, valid for an hour.
    pub fn claims(&self, roles: &[Role]) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": Self::issuer_v2(TENANT),
            "aud": CLIENT_ID,
            "tid": TENANT,
            "oid": USER_OID,
            "sub": "subject-of-test-user",
            "name": "Test User",
            "preferred_username": "test.user@example.com",
            "roles": roles.iter().map(|r| r.claim()).collect::<Vec<_>>(),
            "iat": now - 10,
            "nbf": now - 10,
            "exp": now + 3600,
            "ver": "2.0",
        })
    }

    /// A valid token for the default user with `roles`.
    pub fn token(&self, roles: &[Role]) -> String {
        self.sign(&self.claims(roles))
    }

    /// `claims` signed by the current signing key.
    pub fn sign(&self, claims: &Value) -> String {
        self.signing_key().sign(claims)
    }

    /// `claims` with `changes` merged in (a `null` removes the claim), signed.
    pub fn token_with(&self, roles: &[Role], changes: Value) -> String {
        self.sign(&merged(self.claims(roles), changes))
    }

    pub fn signing_key(&self) -> TestKey {
        self.shared.keys.lock().unwrap()[0].clone()
    }

    /// Adds `key` to the JWKS; `sign_with_it`: it signs from now on (rotation).
    pub fn publish(&self, key: TestKey, sign_with_it: bool) {
        let mut keys = self.shared.keys.lock().unwrap();
        if sign_with_it { keys.insert(0, key) } else { keys.push(key) }
    }

    /// Removes the key `kid` from the JWKS (a revoked key).
    pub fn unpublish(&self, kid: &str) {
        self.shared.keys.lock().unwrap().retain(|k| k.kid != kid);
    }

    /// How often the JWKS was fetched (successfully or not).
    pub fn jwks_hits(&self) -> usize {
        self.shared.jwks_hits.load(Ordering::SeqCst)
    }

    /// While down, the OpenID configuration and JWKS answer 503.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// The user the authorize endpoint signs in from now on.
    pub fn set_user(&self, user: TestUser) {
        *self.shared.user.lock().unwrap() = user;
    }

    /// Claims merged into the ID tokens the token endpoint issues from now on.
    pub fn override_id_token(&self, changes: Value) {
        *self.shared.id_token_overrides.lock().unwrap() = changes;
    }

    /// `claims` with `alg: none` and no signature.
    pub fn unsigned(&self, claims: &Value) -> String {
        let header = json!({ "alg": "none", "typ": "JWT", "kid": self.signing_key().kid });
        format!("{}.{}.", b64_json(&header), b64_json(claims))
    }

    /// The algorithm-confusion attack: HS256 with the tenant's RSA public key (PEM,
    /// as published) as the HMAC secret, and the real `kid`.
    pub fn hs256_with_public_key(&self, claims: &Value) -> String {
        let key = self.signing_key();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key.public_pem.as_bytes())).unwrap()
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// `base` with the keys of `changes` set (`null`: removed).
pub fn merged(mut base: Value, changes: Value) -> Value {
    let object = base.as_object_mut().unwrap();
    for (key, value) in changes.as_object().cloned().unwrap_or_default() {
        if value.is_null() {
            object.remove(&key);
        } else {
            object.insert(key, value);
        }
    }
    base
}

async fn openid_configuration(State(shared): State<Arc<Shared>>, Path(tenant): Path<String>) -> Response {
    if shared.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let base = &shared.base;
    Json(json!({
        "issuer": TestIssuer::issuer_v2(&tenant),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_types_supported": ["code", "id_token", "code id_token"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
    .into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if shared.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys: Vec<Value> = shared.keys.lock().unwrap().iter().map(TestKey::jwk).collect();
    Json(json!({ "keys": keys })).into_response()
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    client_id: String,
    redirect_uri: String,
    response_type: String,
    state: String,
    nonce: Option<String>,
    code_challenge: String,
    code_challenge_method: String,
}

/// Signs the current user in at once (no page) and redirects back with a code.
async fn authorize(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Query(query): Query<AuthorizeQuery>,
) -> Response {
    if query.response_type != "code" || query.code_challenge_method != "S256" {
        return (StatusCode::BAD_REQUEST, "code flow with S256 PKCE only").into_response();
    }
    let code = format!("code-{}", URL_SAFE_NO_PAD.encode(Sha256::digest(query.state.as_bytes())));
    let user = shared.user.lock().unwrap().clone();
    shared.codes.lock().unwrap().insert(
        code.clone(),
        Grant {
            client_id: query.client_id,
            redirect_uri: query.redirect_uri.clone(),
            challenge: query.code_challenge,
            nonce: query.nonce,
            tenant,
            user,
        },
    );
    let mut target = url::Url::parse(&query.redirect_uri).unwrap();
    target.query_pairs_mut().append_pair("code", &code).append_pair("state", &query.state);
    Redirect::to(target.as_str()).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    code: String,
    redirect_uri: String,
    client_id: String,
    code_verifier: String,
}

fn invalid_grant(description: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": "invalid_grant", "error_description": description })))
        .into_response()
}

async fn token(State(shared): State<Arc<Shared>>, Form(form): Form<TokenForm>) -> Response {
    if form.grant_type != "authorization_code" {
        return invalid_grant("grant_type");
    }
    let Some(grant) = shared.codes.lock().unwrap().remove(&form.code) else {
        return invalid_grant("AADSTS54005: OAuth2 Authorization code was already redeemed or is unknown");
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(form.code_verifier.as_bytes()));
    if challenge != grant.challenge {
        return invalid_grant("AADSTS501481: The Code_Verifier does not match the code_challenge");
    }
    if form.client_id != grant.client_id || form.redirect_uri != grant.redirect_uri {
        return invalid_grant("client_id or redirect_uri differ from the authorize request");
    }
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": TestIssuer::issuer_v2(&grant.tenant),
        "aud": grant.client_id,
        "tid": grant.tenant,
        "oid": grant.user.oid,
        "sub": "pairwise-subject",
        "name": grant.user.name,
        "roles": grant.user.roles.iter().map(|r| r.claim()).collect::<Vec<_>>(),
        "iat": now, "nbf": now, "exp": now + 3600, "ver": "2.0",
    });
    if let Some(nonce) = grant.nonce {
        claims["nonce"] = nonce.into();
    }
    let claims = merged(claims, shared.id_token_overrides.lock().unwrap().clone());
    let id_token = shared.keys.lock().unwrap()[0].sign(&claims);
    Json(json!({ "token_type": "Bearer", "id_token": id_token, "access_token": "opaque", "expires_in": 3600 }))
        .into_response()
}
