//! The development issuer of `tokentrail demo`: an RSA-2048 key in a file beside the
//! database, its own OpenID endpoints under `/dev-issuer/`, and `tokentrail token`.
//!
//! Its tokens are checked by the same validator as Entra's (the key is preloaded into
//! a key set, there is no switch that skips validation). The key lives beside the
//! database, not in it, because the running demo holds DuckDB's lock while
//! `tokentrail token` signs. `demo` (loopback only) trusts it; `serve` only with
//! `http.development_sign_in = true`, and then its sign-in page asks for a secret made
//! at start and printed on the terminal (never logged, never stored), so reaching the
//! port is not enough to pick a role. Its endpoints answer only requests whose `Host`
//! is a loopback name, GET and POST alike.

use super::keys::shown;
use super::session::{random_token, same};
use super::{Auth, Role};
use anyhow::{Context, Result, bail};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `iss` of development tokens (`.invalid`: never a real host).
pub const DEV_ISSUER: &str = "https://tokentrail.invalid/dev-issuer";
/// The `aud` of development tokens, and the client id of the demo's browser sign-in.
pub const DEV_AUDIENCE: &str = "tokentrail-dev";
/// The `tid` of development tokens: GUID-shaped like Entra's, all zeros but for
/// `de`(velopment), so it cannot be mistaken for a real tenant.
pub const DEV_TENANT_ID: &str = "00000000-0000-0000-0000-0000000000de";

/// How long an authorization code of the development issuer stays usable.
const CODE_LIFETIME: Duration = Duration::from_secs(120);

/// `<db path>.dev-issuer.pem`.
pub fn key_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".dev-issuer.pem");
    PathBuf::from(name)
}

/// The development signing key.
pub(crate) struct DevKey {
    pub path: PathBuf,
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// Public modulus and exponent, base64url, for the JWKS.
    n: String,
    e: String,
}

impl DevKey {
    /// Reads the key beside `db_path`, creating it (mode 0600) if missing.
    pub fn load_or_create(db_path: &Path) -> Result<DevKey> {
        let path = key_path(db_path);
        if !path.exists() {
            create_key_file(&path)?;
        }
        let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let der = pem_body(&pem).with_context(|| format!("{}: not a PKCS#8 PEM private key", path.display()))?;
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).map_err(|e| {
            anyhow::anyhow!("{}: not an RSA private key ({e}); delete it to make a new one", path.display())
        })?;
        let public = pair.public_key();
        let (n, e) = (public.modulus(), public.exponent());
        let (n, e) = (n.big_endian_without_leading_zero(), e.big_endian_without_leading_zero());
        // The kid names the key (a hash of its public half), so a new key file is a new kid.
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest([n, e].concat())[..12]);
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes())
            .with_context(|| format!("{}: cannot sign with this key", path.display()))?;
        Ok(DevKey {
            path,
            kid,
            encoding,
            decoding: DecodingKey::from_rsa_raw_components(n, e),
            n: URL_SAFE_NO_PAD.encode(n),
            e: URL_SAFE_NO_PAD.encode(e),
        })
    }

    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": self.n, "e": self.e,
        }]})
    }

    /// A token of the development issuer for `name` with `role`; `extra` claims
    /// (e.g. `nonce`) are added.
    pub fn sign(&self, role: Role, name: &str, lifetime: chrono::Duration, extra: serde_json::Value) -> Result<String> {
        if lifetime <= chrono::Duration::zero() {
            bail!("token lifetime must be positive");
        }
        let now = chrono::Utc::now().timestamp();
        let mut claims = serde_json::json!({
            "iss": DEV_ISSUER,
            "aud": DEV_AUDIENCE,
            "tid": DEV_TENANT_ID,
            "oid": dev_oid(name),
            "sub": dev_oid(name),
            "name": name,
            "roles": [role.claim()],
            "iat": now,
            "nbf": now,
            "exp": now + lifetime.num_seconds().max(1),
            "ver": "2.0",
        });
        if let (Some(claims), serde_json::Value::Object(extra)) = (claims.as_object_mut(), extra) {
            claims.extend(extra);
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).context("signing a development token")
    }
}

/// A stable, GUID-shaped object id for a development user name: the same name is the
/// same user in the access log.
pub fn dev_oid(name: &str) -> String {
    let h = Sha256::digest(format!("tokentrail-dev-user:{name}").as_bytes());
    let hex: String = h[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

fn create_key_file(path: &Path) -> Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| anyhow::anyhow!("generating an RSA key failed"))?;
    let der = pair.as_der().map_err(|_| anyhow::anyhow!("encoding the RSA key failed"))?;
    let body = STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");

    // Written under a temporary name, then linked into place: a concurrent `token`
    // and `demo` never read half a key, and the first one to finish wins.
    let tmp = path.with_extension(format!("pem.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(pem.as_bytes())
        .and_then(|_| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(file);
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created the development issuer's signing key");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN PRIVATE KEY-----")? + "-----BEGIN PRIVATE KEY-----".len();
    let end = pem.find("-----END PRIVATE KEY-----")?;
    let body: String = pem.get(start..end)?.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(body).ok()
}

/// Signs a development token with the key beside `db_path` (created if missing), for
/// a `tokentrail demo` running on that database.
pub fn dev_token(db_path: &Path, role: Role, name: &str, lifetime: chrono::Duration) -> Result<String> {
    DevKey::load_or_create(db_path)?.sign(role, name, lifetime, serde_json::json!({}))
}

/// The issuer's running state: its key, the authorization codes it handed out, and
/// the sign-in secret when one is required.
pub(crate) struct DevIssuer {
    pub key: DevKey,
    codes: Mutex<HashMap<String, DevCode>>,
    secret: Option<SignInSecret>,
}

/// The secret `serve`'s development sign-in asks for, and the wrong guesses of the
/// current minute: past [`MAX_GUESSES`], every attempt is refused until it ends.
pub struct SignInSecret {
    value: String,
    guesses: Mutex<(Instant, u32)>,
}

const MAX_GUESSES: u32 = 10;

impl Default for SignInSecret {
    /// A new random secret.
    fn default() -> SignInSecret {
        SignInSecret { value: random_token(), guesses: Mutex::new((Instant::now(), 0)) }
    }
}

impl SignInSecret {
    /// A new random secret.
    pub fn new() -> SignInSecret {
        SignInSecret::default()
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    fn accepts(&self, sent: &str) -> Result<(), &'static str> {
        let mut guesses = self.guesses.lock().expect("guesses lock");
        if guesses.0.elapsed() > Duration::from_secs(60) {
            *guesses = (Instant::now(), 0);
        }
        if guesses.1 >= MAX_GUESSES {
            return Err("too many wrong secrets; wait a minute");
        }
        if same(sent.trim(), &self.value) {
            Ok(())
        } else {
            guesses.1 += 1;
            Err("wrong sign-in secret: use the one `tokentrail serve` printed when it started")
        }
    }
}

struct DevCode {
    role: Role,
    name: String,
    nonce: Option<String>,
    challenge: String,
    redirect_uri: String,
    created: Instant,
}

impl DevIssuer {
    pub fn new(key: DevKey, secret: Option<SignInSecret>) -> DevIssuer {
        DevIssuer { key, codes: Mutex::new(HashMap::new()), secret }
    }
}

/// The headers of the issuer's page: nothing from elsewhere, never in a frame.
const PAGE_HEADERS: [(header::HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// `http://<host>` of a request to the loopback-bound demo; `None` unless the Host
/// header is a loopback name or address (it is used to build absolute URLs).
pub(crate) fn loopback_base(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let url = url::Url::parse(&format!("http://{host}/")).ok()?;
    (super::config::is_loopback_url(&url) && url.path() == "/" && url.username().is_empty())
        .then(|| format!("http://{}", host))
}

pub(crate) fn routes() -> Router<Arc<Auth>> {
    Router::new()
        .route("/dev-issuer/.well-known/openid-configuration", get(openid_configuration))
        .route("/dev-issuer/keys", get(keys))
        .route("/dev-issuer/authorize", get(authorize_page).post(authorize))
        .route("/dev-issuer/token", axum::routing::post(token))
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    super::error_response(status, "bad_request", message.into())
}

async fn openid_configuration(headers: HeaderMap) -> Response {
    let Some(base) = loopback_base(&headers) else {
        return refuse(StatusCode::BAD_REQUEST, "the development issuer answers on loopback only");
    };
    Json(serde_json::json!({
        "issuer": DEV_ISSUER,
        "authorization_endpoint": format!("{base}/dev-issuer/authorize"),
        "token_endpoint": format!("{base}/dev-issuer/token"),
        "jwks_uri": format!("{base}/dev-issuer/keys"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
    }))
    .into_response()
}

async fn keys(State(auth): State<Arc<Auth>>) -> Response {
    match &auth.dev {
        Some(dev) => Json(dev.key.jwks()).into_response(),
        None => refuse(StatusCode::NOT_FOUND, "no development issuer"),
    }
}

#[derive(Deserialize)]
struct AuthorizeRequest {
    client_id: String,
    redirect_uri: String,
    response_type: String,
    state: String,
    #[serde(default)]
    nonce: Option<String>,
    code_challenge: String,
    code_challenge_method: String,
    /// Only on the form's POST.
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    name: Option<String>,
    /// The sign-in secret, when `serve` requires one.
    #[serde(default)]
    secret: Option<String>,
}

impl AuthorizeRequest {
    fn check(&self) -> Result<(), String> {
        if self.client_id != DEV_AUDIENCE {
            return Err(format!("client_id must be {DEV_AUDIENCE}"));
        }
        if self.response_type != "code" || self.code_challenge_method != "S256" || self.code_challenge.len() < 43 {
            return Err("only response_type=code with a S256 code_challenge is supported".into());
        }
        let url = url::Url::parse(&self.redirect_uri).map_err(|_| "redirect_uri is not a URL".to_string())?;
        if url.scheme() != "http" || !super::config::is_loopback_url(&url) || url.path() != "/auth/callback" {
            return Err("redirect_uri must be http://<loopback>/auth/callback".into());
        }
        Ok(())
    }
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect()
}

/// A page to pick who to be: the demo's stand-in for Entra's sign-in page.
async fn authorize_page(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Query(request): Query<AuthorizeRequest>,
) -> Response {
    if loopback_base(&headers).is_none() {
        return refuse(StatusCode::BAD_REQUEST, "the development issuer answers on loopback only");
    }
    if let Err(message) = request.check() {
        return refuse(StatusCode::BAD_REQUEST, message);
    }
    let asks_secret = auth.dev.as_ref().is_some_and(|d| d.secret.is_some());
    let secret_field = if asks_secret {
        "<label>Sign-in secret (printed by <code>tokentrail serve</code> when it started) \
         <input name=\"secret\" type=\"password\" required autocomplete=\"off\"></label>\n"
    } else {
        ""
    };
    let hidden: String = [
        ("client_id", request.client_id.as_str()),
        ("redirect_uri", &request.redirect_uri),
        ("response_type", &request.response_type),
        ("state", &request.state),
        ("nonce", request.nonce.as_deref().unwrap_or("")),
        ("code_challenge", &request.code_challenge),
        ("code_challenge_method", &request.code_challenge_method),
    ]
    .iter()
    .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">\n", escape(v)))
    .collect();
    let options: String = Role::ALL.iter().map(|r| format!("<option value=\"{0}\">{0}</option>", r.claim())).collect();
    let page = Html(format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>DEVELOPMENT sign-in - TokenTrail</title>
<style>body{{font-family:sans-serif;max-width:32em;margin:3em auto}}
.dev{{background:#b00020;color:#fff;padding:.6em 1em;font-weight:bold}}
label{{display:block;margin:1em 0}}</style></head>
<body>
<p class="dev">DEVELOPMENT ISSUER: not Entra ID. Tokens from here are accepted only by
<code>tokentrail demo</code> and a <code>tokentrail serve</code> started with development sign-in, on loopback.</p>
<h1>Sign in to the TokenTrail demo</h1>
<form method="post" action="/dev-issuer/authorize">
{hidden}{secret_field}<label>Role <select name="role">{options}</select></label>
<label>Name <input name="name" value="Demo User" maxlength="100"></label>
<button type="submit">Sign in (development)</button>
</form></body></html>"#
    ))
    .into_response();
    (PAGE_HEADERS, page).into_response()
}

async fn authorize(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Form(request): Form<AuthorizeRequest>,
) -> Response {
    let Some(dev) = &auth.dev else { return refuse(StatusCode::NOT_FOUND, "no development issuer") };
    if loopback_base(&headers).is_none() {
        return refuse(StatusCode::BAD_REQUEST, "the development issuer answers on loopback only");
    }
    if let Err(message) = request.check() {
        return refuse(StatusCode::BAD_REQUEST, message);
    }
    if let Some(secret) = &dev.secret
        && let Err(message) = secret.accepts(request.secret.as_deref().unwrap_or_default())
    {
        tracing::warn!("development sign-in refused: wrong or missing secret");
        return refuse(StatusCode::FORBIDDEN, message);
    }
    let Some(role) = request.role.as_deref().and_then(Role::from_claim) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "role must be one of TokenTrail.Responder, TokenTrail.Auditor, TokenTrail.Admin, TokenTrail.Reviewer",
        );
    };
    let name = request.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or("Demo User");
    let name: String = name.chars().take(100).collect();
    let code = random_token();
    {
        let mut codes = dev.codes.lock().expect("codes lock");
        codes.retain(|_, c| c.created.elapsed() < CODE_LIFETIME);
        codes.insert(
            code.clone(),
            DevCode {
                role,
                name,
                nonce: request.nonce.filter(|n| !n.is_empty()),
                challenge: request.code_challenge,
                redirect_uri: request.redirect_uri.clone(),
                created: Instant::now(),
            },
        );
    }
    let mut target = url::Url::parse(&request.redirect_uri).expect("checked above");
    target.query_pairs_mut().append_pair("code", &code).append_pair("state", &request.state);
    Redirect::to(target.as_str()).into_response()
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: String,
    code: String,
    redirect_uri: String,
    client_id: String,
    code_verifier: String,
}

/// OAuth errors as RFC 6749 puts them, so the sign-in code reads them as it reads Entra's.
fn oauth_error(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": error, "error_description": description })))
        .into_response()
}

async fn token(State(auth): State<Arc<Auth>>, headers: HeaderMap, Form(request): Form<TokenRequest>) -> Response {
    let Some(dev) = &auth.dev else { return refuse(StatusCode::NOT_FOUND, "no development issuer") };
    if loopback_base(&headers).is_none() {
        return refuse(StatusCode::BAD_REQUEST, "the development issuer answers on loopback only");
    }
    if request.grant_type != "authorization_code" {
        return oauth_error("unsupported_grant_type", "only authorization_code");
    }
    let Some(code) = dev.codes.lock().expect("codes lock").remove(&request.code) else {
        return oauth_error("invalid_grant", "unknown or used authorization code");
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(request.code_verifier.as_bytes()));
    if code.created.elapsed() >= CODE_LIFETIME
        || request.client_id != DEV_AUDIENCE
        || request.redirect_uri != code.redirect_uri
        || !same(&challenge, &code.challenge)
    {
        return oauth_error("invalid_grant", "the code expired, or the redirect_uri or code_verifier do not match");
    }
    let lifetime = chrono::Duration::hours(1);
    let mut extra = serde_json::Map::new();
    if let Some(nonce) = &code.nonce {
        extra.insert("nonce".into(), nonce.clone().into());
    }
    let id_token = match dev.key.sign(code.role, &code.name, lifetime, extra.into()) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "development issuer could not sign");
            return (StatusCode::INTERNAL_SERVER_ERROR, "signing failed").into_response();
        }
    };
    tracing::info!(name = %shown(&code.name), role = code.role.claim(), "development issuer signed in a user");
    Json(serde_json::json!({
        "token_type": "Bearer",
        "id_token": id_token,
        "access_token": id_token,
        "expires_in": lifetime.num_seconds(),
    }))
    .into_response()
}
