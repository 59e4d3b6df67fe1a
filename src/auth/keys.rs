//! Signing keys of one issuer, by `kid`: fetched from the tenant's OpenID
//! configuration (`jwks_uri`), or fixed (the development issuer).
//!
//! Contract: a lookup never waits on the network when the key is cached. An unknown
//! `kid` refreshes the keys at most once per `refresh_min` (a flood of made-up kids
//! costs the JWKS endpoint one request per interval); while no keys could ever be
//! loaded, once per `retry`. A failed refresh keeps the keys we have, so an outage of
//! the JWKS endpoint does not stop tokens signed with known keys.

use anyhow::{Context, Result, bail};
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The parts of an OpenID configuration we use.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OidcEndpoints {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// One entry of a JWKS. Entra also publishes `x5c`, `x5t` and `issuer`; the modulus
/// and exponent are all we need.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(rename = "use")]
    usage: Option<String>,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// The outcome of looking a `kid` up.
pub(crate) enum Lookup {
    Found(Arc<DecodingKey>),
    /// Keys are loaded but this kid is not among them (after a refresh, or with the
    /// refresh rate-limited). `refresh_error` says why the last refresh failed, if it did.
    Unknown {
        refresh_error: Option<String>,
    },
    /// No keys could be loaded yet.
    NotLoaded {
        error: String,
    },
}

#[derive(Default)]
struct Cached {
    keys: HashMap<String, Arc<DecodingKey>>,
    endpoints: Option<OidcEndpoints>,
    loaded: bool,
    /// When keys were last loaded.
    loaded_at: Option<Instant>,
    /// When an unknown kid (or a missing key set) last caused a fetch.
    last_on_demand: Option<Instant>,
    last_error: Option<String>,
}

pub(crate) struct KeySet {
    /// The tenant id, for messages and logs.
    pub tenant: String,
    /// `None`: fixed keys (the development issuer), never fetched.
    discovery_url: Option<String>,
    /// `None` with fixed keys.
    http: Option<reqwest::Client>,
    refresh_min: Duration,
    retry: Duration,
    cached: RwLock<Cached>,
    /// One fetch at a time: concurrent requests with the same new kid wait for it
    /// instead of each fetching.
    fetching: tokio::sync::Mutex<()>,
}

impl KeySet {
    pub fn remote(
        tenant: &str,
        discovery_url: String,
        http: reqwest::Client,
        refresh_min: Duration,
        retry: Duration,
    ) -> KeySet {
        KeySet {
            tenant: tenant.to_owned(),
            discovery_url: Some(discovery_url),
            http: Some(http),
            refresh_min,
            retry,
            cached: RwLock::new(Cached::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    pub fn fixed(tenant: &str, keys: HashMap<String, DecodingKey>) -> KeySet {
        let cached = Cached {
            keys: keys.into_iter().map(|(kid, key)| (kid, Arc::new(key))).collect(),
            loaded: true,
            loaded_at: Some(Instant::now()),
            ..Cached::default()
        };
        KeySet {
            tenant: tenant.to_owned(),
            discovery_url: None,
            http: None,
            refresh_min: Duration::MAX,
            retry: Duration::MAX,
            cached: RwLock::new(cached),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    pub fn endpoints(&self) -> Option<OidcEndpoints> {
        self.cached.read().expect("key cache lock").endpoints.clone()
    }

    pub fn last_error(&self) -> Option<String> {
        self.cached.read().expect("key cache lock").last_error.clone()
    }

    fn cached_key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.cached.read().expect("key cache lock").keys.get(kid).cloned()
    }

    /// The key for `kid`, refreshing (rate-limited) when it is not cached.
    pub async fn get(&self, kid: &str) -> Lookup {
        if let Some(key) = self.cached_key(kid) {
            return Lookup::Found(key);
        }
        if self.discovery_url.is_some() {
            let _one_at_a_time = self.fetching.lock().await;
            // Another request may have fetched while we waited.
            if let Some(key) = self.cached_key(kid) {
                return Lookup::Found(key);
            }
            if self.on_demand_due() {
                tracing::info!(tenant = %self.tenant, kid = %shown(kid), "unknown signing key: refreshing the JWKS");
                self.refresh_locked().await;
                if let Some(key) = self.cached_key(kid) {
                    return Lookup::Found(key);
                }
            }
        }
        let cached = self.cached.read().expect("key cache lock");
        if cached.loaded {
            Lookup::Unknown { refresh_error: cached.last_error.clone() }
        } else {
            Lookup::NotLoaded { error: cached.last_error.clone().unwrap_or_else(|| "not fetched yet".into()) }
        }
    }

    /// Whether a request may cause a fetch now (rate limit); if so, records it.
    fn on_demand_due(&self) -> bool {
        let mut cached = self.cached.write().expect("key cache lock");
        let interval = if cached.loaded { self.refresh_min } else { self.retry };
        let due = cached.last_on_demand.is_none_or(|at| at.elapsed() >= interval);
        if due {
            cached.last_on_demand = Some(Instant::now());
        }
        due
    }

    /// The OpenID endpoints, fetching them (rate-limited like unknown kids) if they
    /// never loaded. `Err`: why they are not available.
    pub async fn endpoints_on_demand(&self) -> Result<OidcEndpoints, String> {
        if let Some(endpoints) = self.endpoints() {
            return Ok(endpoints);
        }
        if self.discovery_url.is_some() {
            let _one_at_a_time = self.fetching.lock().await;
            if self.endpoints().is_none() && self.on_demand_due() {
                self.refresh_locked().await;
            }
        }
        self.endpoints().ok_or_else(|| self.last_error().unwrap_or_else(|| "not fetched yet".into()))
    }

    /// Fetches again if the keys never loaded or are older than `max_age`.
    pub async fn refresh_if_stale(&self, max_age: Duration) {
        let stale = {
            let cached = self.cached.read().expect("key cache lock");
            !cached.loaded || cached.loaded_at.is_some_and(|at| at.elapsed() >= max_age)
        };
        if stale && self.discovery_url.is_some() {
            self.refresh().await;
        }
    }

    /// Fetches the OpenID configuration and the keys (not rate-limited: for start-up
    /// and the periodic refresh). Returns whether it worked; failures are logged and
    /// kept for messages.
    pub async fn refresh(&self) -> bool {
        if self.discovery_url.is_none() {
            return true;
        }
        let _one_at_a_time = self.fetching.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> bool {
        match self.fetch().await {
            Ok((endpoints, keys)) => {
                tracing::info!(tenant = %self.tenant, keys = keys.len(), "loaded signing keys");
                let mut cached = self.cached.write().expect("key cache lock");
                // Replace, not merge: a key the tenant stopped publishing is revoked.
                cached.keys = keys;
                cached.endpoints = Some(endpoints);
                cached.loaded = true;
                cached.loaded_at = Some(Instant::now());
                cached.last_error = None;
                true
            }
            Err(error) => {
                let error = format!("{error:#}");
                tracing::warn!(tenant = %self.tenant, error = %error, "could not load signing keys; keeping the cached ones");
                self.cached.write().expect("key cache lock").last_error = Some(error);
                false
            }
        }
    }

    async fn fetch(&self) -> Result<(OidcEndpoints, HashMap<String, Arc<DecodingKey>>)> {
        let url = self.discovery_url.as_deref().expect("remote key set");
        let endpoints: OidcEndpoints = self.get_json(url).await.context("OpenID configuration")?;
        let jwks: Jwks = self.get_json(&endpoints.jwks_uri).await.context("JWKS")?;
        let mut keys = HashMap::new();
        for jwk in jwks.keys {
            // Entra's JWKS holds RSA signing keys; anything else cannot verify RS256.
            if jwk.kty != "RSA" || jwk.usage.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let (Some(kid), Some(n), Some(e)) = (jwk.kid, jwk.n, jwk.e) else { continue };
            match DecodingKey::from_rsa_components(&n, &e) {
                Ok(key) => {
                    keys.insert(kid, Arc::new(key));
                }
                Err(error) => {
                    tracing::warn!(tenant = %self.tenant, kid = %shown(&kid), error = %error, "skipping unusable JWKS key")
                }
            }
        }
        if keys.is_empty() {
            bail!("{} has no RSA signing keys", endpoints.jwks_uri);
        }
        Ok((endpoints, keys))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T> {
        let http = self.http.as_ref().expect("remote key set");
        let response = http.get(url).send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!("GET {url}: HTTP {status}");
        }
        response.json().await.with_context(|| format!("GET {url}: not the expected JSON"))
    }
}

/// A value from a token, safe to put in a message, a log line or a
/// `WWW-Authenticate` header: at most 80 characters, no quotes or control characters.
pub(crate) fn shown(value: &str) -> String {
    limited(value, 80)
}

/// Like [`shown`], for our own longer texts (fetch errors with their URL).
pub(crate) fn limited(value: &str, max: usize) -> String {
    let mut out: String = value
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '?' })
        .collect();
    if value.chars().count() > max {
        out.push_str("...");
    }
    out
}
