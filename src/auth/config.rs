//! `[auth]` of the serve configuration: which Entra ID tenants and audiences are
//! trusted, and the browser sign-in app registration.
//!
//! The one secret (the app registration's client secret, if the code exchange needs
//! one) never lives here: it comes from `TOKENTRAIL_AUTH_CLIENT_SECRET` and is never
//! logged.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use url::Url;

/// The environment variable holding the app registration's client secret for the
/// browser sign-in code exchange (optional: public clients with PKCE need none).
pub const CLIENT_SECRET_ENV: &str = "TOKENTRAIL_AUTH_CLIENT_SECRET";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Directory (tenant) ids whose tokens are accepted, e.g.
    /// `["72f988bf-86f1-41af-91ab-2d7cd011db47"]`. The first one is where browsers
    /// sign in.
    pub tenants: Vec<String>,
    /// Accepted `aud` values: the app's client id (v2 tokens) and its Application ID
    /// URI such as `api://tokentrail` (v1 tokens).
    pub audiences: Vec<String>,
    /// The app registration's client id, for browser sign-in (absent: bearer only).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Where OpenID configurations and keys are fetched from. Issuers are checked
    /// against the fixed Entra forms whatever this is; tests point it at a local server.
    #[serde(default = "default_authority")]
    pub authority: String,
    /// This service's `/auth/callback` URL as registered in the app registration,
    /// e.g. `https://tokentrail.contoso.com/auth/callback`. Required with `client_id`.
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// Tolerance for `exp` and `nbf` between our clock and Entra's.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_secs: u64,
    /// A token with an unknown `kid` refreshes the tenant's keys at most this often.
    #[serde(default = "default_jwks_refresh_min")]
    pub jwks_refresh_min_secs: u64,
    /// While a tenant's keys could not be loaded at all, retry this often.
    #[serde(default = "default_jwks_retry")]
    pub jwks_retry_secs: u64,
    /// A browser session unused for this long ends.
    #[serde(default = "default_session_idle")]
    pub session_idle_minutes: u64,
    /// A browser session ends this long after sign-in, used or not.
    #[serde(default = "default_session_max")]
    pub session_max_hours: u64,
}

pub fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}
fn default_clock_skew() -> u64 {
    120
}
fn default_jwks_refresh_min() -> u64 {
    300
}
fn default_jwks_retry() -> u64 {
    30
}
fn default_session_idle() -> u64 {
    60
}
fn default_session_max() -> u64 {
    12
}

impl AuthConfig {
    /// Defaults for the given tenants and audiences (bearer tokens only).
    pub fn new(tenants: Vec<String>, audiences: Vec<String>) -> AuthConfig {
        AuthConfig {
            tenants,
            audiences,
            client_id: None,
            authority: default_authority(),
            redirect_url: None,
            clock_skew_secs: default_clock_skew(),
            jwks_refresh_min_secs: default_jwks_refresh_min(),
            jwks_retry_secs: default_jwks_retry(),
            session_idle_minutes: default_session_idle(),
            session_max_hours: default_session_max(),
        }
    }

    /// Checks values, with messages that say what to fix.
    pub fn check(&self) -> Result<()> {
        if self.tenants.is_empty() {
            bail!("auth.tenants: list at least one directory (tenant) id, e.g. tenants = [\"<GUID>\"]");
        }
        for tenant in &self.tenants {
            if !is_guid(tenant) {
                bail!(
                    "auth.tenants: {tenant:?} is not a tenant id; use the directory (tenant) id GUID shown in \
                     Entra ID > Overview (tokens carry the GUID, not domain names, `common` or `organizations`)"
                );
            }
        }
        if self.audiences.is_empty() || self.audiences.iter().any(|a| a.trim().is_empty()) {
            bail!(
                "auth.audiences: list the app's client id and/or Application ID URI, e.g. audiences = [\"<client id>\", \"api://tokentrail\"]"
            );
        }
        let authority = Url::parse(&self.authority)
            .map_err(|e| anyhow::anyhow!("auth.authority: {:?} is not a URL ({e})", self.authority))?;
        if authority.scheme() != "https" && !(authority.scheme() == "http" && is_loopback_url(&authority)) {
            bail!("auth.authority: {:?} must be https (plain http only on loopback, for tests)", self.authority);
        }
        if let Some(client_id) = &self.client_id {
            if client_id.trim().is_empty() {
                bail!("auth.client_id: empty; set the app registration's Application (client) id or remove the key");
            }
            let Some(redirect) = &self.redirect_url else {
                bail!(
                    "auth.redirect_url: browser sign-in (auth.client_id) needs this service's callback URL, \
                     e.g. redirect_url = \"https://tokentrail.contoso.com/auth/callback\", registered as a Web redirect URI"
                );
            };
            let url = Url::parse(redirect)
                .map_err(|e| anyhow::anyhow!("auth.redirect_url: {redirect:?} is not a URL ({e})"))?;
            if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback_url(&url)) {
                bail!("auth.redirect_url: {redirect:?} must be https (plain http only on 127.0.0.1 or localhost)");
            }
            if url.path() != "/auth/callback" || url.query().is_some() || url.fragment().is_some() {
                bail!("auth.redirect_url: {redirect:?} must end in /auth/callback, with no query or fragment");
            }
        } else if self.redirect_url.is_some() {
            bail!("auth.redirect_url is set but auth.client_id is not: browser sign-in needs both");
        }
        if self.clock_skew_secs > 600 {
            bail!(
                "auth.clock_skew_secs: {} is more than 600; Entra's clocks are accurate, keep it small",
                self.clock_skew_secs
            );
        }
        if self.jwks_refresh_min_secs < 10 {
            bail!(
                "auth.jwks_refresh_min_secs: {} is below 10; it bounds how often made-up key ids can make us \
                 fetch the JWKS (default 300)",
                self.jwks_refresh_min_secs
            );
        }
        if self.jwks_retry_secs == 0 || self.session_idle_minutes == 0 || self.session_max_hours == 0 {
            bail!("auth: jwks_retry_secs, session_idle_minutes and session_max_hours must be above 0");
        }
        Ok(())
    }
}

/// `8-4-4-4-12` hex digits, the shape of Entra's tenant and object ids.
pub(crate) fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(crate) fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn config() -> AuthConfig {
        AuthConfig::new(vec![TENANT.into()], vec!["api://tokentrail".into()])
    }

    fn error(config: AuthConfig) -> String {
        format!("{:#}", config.check().unwrap_err())
    }

    #[test]
    fn good_configurations_pass() {
        config().check().unwrap();
        let mut c = config();
        c.client_id = Some("11111111-2222-3333-4444-555555555555".into());
        c.redirect_url = Some("https://tokentrail.contoso.com/auth/callback".into());
        c.check().unwrap();
        c.redirect_url = Some("http://127.0.0.1:8080/auth/callback".into());
        c.check().unwrap();
    }

    #[test]
    fn bad_values_say_what_to_fix() {
        let mut c = config();
        c.tenants = vec!["contoso.onmicrosoft.com".into()];
        assert!(error(c).contains("not a tenant id"));
        let mut c = config();
        c.tenants.clear();
        assert!(error(c).contains("at least one"));
        let mut c = config();
        c.audiences = vec![" ".into()];
        assert!(error(c).contains("auth.audiences"));
        let mut c = config();
        c.authority = "http://login.example.com".into();
        assert!(error(c).contains("must be https"));
        let mut c = config();
        c.client_id = Some("x".into());
        assert!(error(c.clone()).contains("auth.redirect_url"));
        c.redirect_url = Some("http://tokentrail.contoso.com/auth/callback".into());
        assert!(error(c.clone()).contains("must be https"));
        c.redirect_url = Some("https://tokentrail.contoso.com/callback".into());
        assert!(error(c).contains("/auth/callback"));
        let mut c = config();
        c.jwks_refresh_min_secs = 0;
        assert!(error(c).contains("auth.jwks_refresh_min_secs"));
    }

    #[test]
    fn the_serve_configuration_embeds_it_as_auth() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokentrail.toml");
        std::fs::write(
            &path,
            format!(
                "[auth]\ntenants = [\"{TENANT}\"]\naudiences = [\"api://tokentrail\"]\n\
                 client_id = \"c\"\nredirect_url = \"https://tt.contoso.com/auth/callback\"\n"
            ),
        )
        .unwrap();
        let auth = crate::config::ServeConfig::load(Some(&path)).unwrap().auth.unwrap();
        assert_eq!((auth.clock_skew_secs, auth.authority.as_str()), (120, "https://login.microsoftonline.com"));
        std::fs::write(&path, "[auth]\ntenants = [\"x\"]\naudiences = [\"a\"]\n").unwrap();
        let e = crate::config::ServeConfig::load(Some(&path)).unwrap_err();
        assert!(format!("{e:#}").contains("not a tenant id"), "{e:#}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = serde_json::from_str::<AuthConfig>(r#"{"tenants":[],"audiences":[],"tenant":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("tenant"), "{e}");
    }
}
