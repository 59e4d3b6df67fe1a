//! JWT validation, as Microsoft documents it for Entra ID access and ID tokens; the
//! development issuer's tokens go through exactly the same steps.
//!
//! Order: the token's shape; the algorithm (RS256 only, decided from the header
//! before any key is looked at, so `alg=none` and HS256 signed with a public key as
//! the HMAC secret never reach a key); the issuer (one of the configured tenants, in
//! its exact v1 or v2 form), which picks the tenant's key set; the key by `kid`; the
//! signature; then `exp`/`nbf` with the skew, `aud`, `tid` (the issuer's tenant), `oid`.
//! Every refusal says why, and never repeats the token.

use super::keys::{KeySet, Lookup, limited, shown};
use super::{Caller, Role, Via};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Where a trusted `iss` value leads.
#[derive(Clone)]
pub(crate) struct Trusted {
    pub tenant: String,
    pub keys: Arc<KeySet>,
    pub development: bool,
}

/// A token that passed every check.
#[derive(Debug)]
pub(crate) struct Verified {
    pub oid: String,
    pub tid: String,
    pub name: Option<String>,
    pub roles: Vec<Role>,
    pub nonce: Option<String>,
    pub development: bool,
}

impl Verified {
    pub fn caller(&self, via: Via) -> Caller {
        Caller { oid: self.oid.clone(), tid: self.tid.clone(), name: self.name.clone(), roles: self.roles.clone(), via }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<Audience>,
    exp: Option<f64>,
    nbf: Option<f64>,
    tid: Option<String>,
    oid: Option<String>,
    name: Option<String>,
    preferred_username: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    nonce: Option<String>,
}

pub(crate) struct Validator {
    /// Exact `iss` values accepted, e.g. both forms of each configured tenant.
    pub issuers: HashMap<String, Trusted>,
    pub skew_secs: i64,
}

/// The `iss` values Entra ID uses for a tenant: v1 and v2 access tokens.
pub(crate) fn entra_issuers(tenant: &str) -> [String; 2] {
    [format!("https://sts.windows.net/{tenant}/"), format!("https://login.microsoftonline.com/{tenant}/v2.0")]
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, String> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| format!("the token's {what} is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("the token's {what} is not valid: {}", shown(&e.to_string())))
}

fn time(secs: f64) -> String {
    chrono::DateTime::from_timestamp(secs.floor() as i64, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("{secs}"))
}

impl Validator {
    /// Validates `token` for one of `audiences`; the error is a message for the caller.
    pub async fn validate(&self, token: &str, audiences: &[String]) -> Result<Verified, String> {
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 || parts[..2].iter().any(|p| p.is_empty()) {
            return Err("not a JWT: expected three base64url parts separated by dots".into());
        }
        let header: Header = decode_part(parts[0], "header")?;
        match header.alg.as_deref() {
            Some("RS256") => {}
            Some(alg) => return Err(format!("algorithm {} is not allowed (only RS256)", shown(alg))),
            None => return Err("the token header has no alg".into()),
        }
        let kid = header.kid.ok_or("the token header has no kid")?;
        // Unverified yet: only used to choose whose keys to verify with.
        let claims: Claims = decode_part(parts[1], "claims")?;
        let iss = claims.iss.as_deref().ok_or("the token has no iss claim")?;
        let trusted = self.issuers.get(iss).ok_or_else(|| {
            format!(
                "issuer {} is not a configured tenant (accepted: https://sts.windows.net/<tenant>/ and \
                 https://login.microsoftonline.com/<tenant>/v2.0 for the tenants in auth.tenants)",
                shown(iss)
            )
        })?;
        let key = match trusted.keys.get(&kid).await {
            Lookup::Found(key) => key,
            Lookup::Unknown { refresh_error } => {
                let mut message =
                    format!("signing key kid={} is not in the JWKS of tenant {}", shown(&kid), trusted.tenant);
                if let Some(error) = refresh_error {
                    message.push_str(&format!(" (the last refresh failed: {})", limited(&error, 300)));
                }
                return Err(message);
            }
            Lookup::NotLoaded { error } => {
                return Err(format!(
                    "the signing keys of tenant {} are not loaded yet ({}); retrying",
                    trusted.tenant,
                    limited(&error, 300)
                ));
            }
        };

        // The signature only; the claims are checked below, with our own messages.
        let mut validation = Validation::new(Algorithm::RS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                format!("the signature does not verify with key kid={}", shown(&kid))
            }
            _ => format!("the token could not be verified: {}", shown(&e.to_string())),
        })?;

        let now = chrono::Utc::now().timestamp() as f64;
        let skew = self.skew_secs as f64;
        let exp = claims.exp.ok_or("the token has no exp claim")?;
        if now > exp + skew {
            return Err(format!("token expired at {}", time(exp)));
        }
        if let Some(nbf) = claims.nbf
            && now + skew < nbf
        {
            return Err(format!("token is not valid before {}", time(nbf)));
        }
        let accepted = |aud: &String| audiences.contains(aud);
        match &claims.aud {
            None => return Err("the token has no aud claim".into()),
            Some(Audience::One(aud)) if !accepted(aud) => {
                return Err(format!("audience {} is not accepted", shown(aud)));
            }
            Some(Audience::Many(auds)) if !auds.iter().any(accepted) => {
                return Err(format!("audience {} is not accepted", shown(&auds.join(","))));
            }
            _ => {}
        }
        let tid = claims.tid.ok_or("the token has no tid claim")?;
        if tid != trusted.tenant {
            return Err(format!("the token's tid {} differs from its issuer's tenant {}", shown(&tid), trusted.tenant));
        }
        let oid = claims.oid.filter(|o| !o.is_empty()).ok_or("the token has no oid claim")?;
        let mut roles: Vec<Role> = claims.roles.iter().filter_map(|r| Role::from_claim(r)).collect();
        roles.sort_by_key(|r| Role::ALL.iter().position(|x| x == r));
        roles.dedup();
        Ok(Verified {
            oid,
            tid,
            name: claims.name.or(claims.preferred_username),
            roles,
            nonce: claims.nonce,
            development: trusted.development,
        })
    }
}
