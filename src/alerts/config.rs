//! `[alerts]` configuration: destinations, routes, timings; and the secrets the
//! destinations need, read from the environment or a file when the service starts.
//!
//! A webhook URL is a secret (whoever has it can post to the channel), and so is a
//! signing key: the configuration names the environment variable or the file that holds
//! each, never the value. [`Secret`] never prints its value, and nothing here puts one in
//! an error message.

use crate::rules::Severity;
use anyhow::{Context, Result, bail};
use base64::Engine;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Alert hooks (`[alerts]` in the configuration file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Where the web UI is, for links in messages: `<ui_base_url>/findings/<id>`.
    /// Default: `http://<http.listen>`.
    pub ui_base_url: Option<String>,
    /// Changes are grouped by what belongs together: one rule about one principal (or, for
    /// findings about no principal, one entity such as an address or a key client). A
    /// group's first message waits this long for the rest of the group's changes (a burst
    /// of events raises and updates a finding within a pass or two), then goes.
    pub group_wait_ms: u64,
    /// After a group's message, its further new or updated findings wait until this long
    /// after it, and go together in one message: a noisy incident cannot flood a channel,
    /// while another principal's finding never waits for it. 0: one message per change.
    pub group_interval_secs: u64,
    /// A message still failing this long after it was made is given up (dead).
    pub give_up_after_secs: u64,
    /// One attempt's time limit (connect, send, answer).
    pub timeout_ms: u64,
    /// The first retry waits about this long; each further one twice as long (with jitter).
    pub backoff_initial_ms: u64,
    /// The longest wait between retries (a `Retry-After` may ask for longer, up to an hour).
    pub backoff_max_secs: u64,
    /// How often the worker looks for new events besides being woken by detection.
    pub poll_interval_ms: u64,
    pub destinations: Vec<DestinationConfig>,
    pub routes: Vec<RouteConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            ui_base_url: None,
            group_wait_ms: 1_000,
            group_interval_secs: 60,
            give_up_after_secs: 24 * 3600,
            timeout_ms: 10_000,
            backoff_initial_ms: 1_000,
            backoff_max_secs: 600,
            poll_interval_ms: 1_000,
            destinations: Vec::new(),
            routes: Vec::new(),
        }
    }
}

/// One place messages go (`[[alerts.destinations]]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// The name routes use, shown in the API (e.g. `soc-slack`).
    pub name: String,
    pub kind: DestinationKind,
    /// The environment variable that holds the URL (Slack incoming webhook, Teams
    /// Workflows "When a Teams webhook request is received" URL, or any HTTPS endpoint).
    #[serde(default)]
    pub url_env: Option<String>,
    /// Or a file that holds it (e.g. a mounted Kubernetes secret).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// `webhook` only: the environment variable with the signing keys (`whsec_<base64>`,
    /// several separated by spaces while rotating: each message is signed with every one).
    #[serde(default)]
    pub signing_keys_env: Option<String>,
    /// Or a file with them, one a line.
    #[serde(default)]
    pub signing_keys_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// Slack incoming webhook: Block Kit with a plain-text fallback.
    Slack,
    /// Microsoft Teams Workflows webhook: an Adaptive Card in a `message` envelope.
    Teams,
    /// Any endpoint: Alertmanager's webhook body, signed per Standard Webhooks.
    Webhook,
}

impl DestinationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Slack => "slack",
            DestinationKind::Teams => "teams",
            DestinationKind::Webhook => "webhook",
        }
    }
}

/// Which findings go where (`[[alerts.routes]]`). A finding change goes to the
/// destinations of every route it matches; an empty list matches everything.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub destinations: Vec<String>,
    /// low, medium, high or critical: this severity and above.
    #[serde(default)]
    pub min_severity: Option<String>,
    /// Rule ids.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Cosmos DB account names (lower case, as stored).
    #[serde(default)]
    pub accounts: Vec<String>,
}

/// A value that must not be logged or returned. Its `Debug` shows no part of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// A Standard Webhooks signing key: the bytes of `whsec_<base64>`.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// Parses `whsec_<base64>` (the prefix is optional). The specification asks for 24 to
    /// 64 random bytes.
    pub fn parse(text: &str) -> Result<SigningKey> {
        let encoded = text.trim().strip_prefix("whsec_").unwrap_or(text.trim());
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| anyhow::anyhow!("a signing key is not `whsec_` followed by base64"))?;
        if !(24..=64).contains(&bytes.len()) {
            bail!("a signing key has {} bytes; Standard Webhooks keys have 24 to 64", bytes.len());
        }
        Ok(SigningKey(bytes))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(redacted)")
    }
}

/// A destination ready to send to: its secrets read.
#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    pub kind: DestinationKind,
    pub url: Secret,
    pub keys: Vec<SigningKey>,
}

/// A route with its values parsed.
#[derive(Debug, Clone)]
pub struct Route {
    pub destinations: Vec<String>,
    pub min_severity: Option<Severity>,
    pub rules: Vec<String>,
    pub accounts: Vec<String>,
}

impl Route {
    pub fn matches(&self, rule: &str, severity: Option<Severity>, account: Option<&str>) -> bool {
        let severe = match (self.min_severity, severity) {
            (None, _) => true,
            (Some(min), Some(s)) => s >= min,
            (Some(_), None) => false,
        };
        let rule_ok = self.rules.is_empty() || self.rules.iter().any(|r| r == rule);
        let account_ok = self.accounts.is_empty()
            || account.is_some_and(|a| self.accounts.iter().any(|x| x.eq_ignore_ascii_case(a)));
        severe && rule_ok && account_ok
    }
}

/// Everything the worker needs: checked configuration and secrets.
#[derive(Debug, Clone)]
pub struct Alerts {
    pub ui_base_url: String,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub give_up_after: Duration,
    pub timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub poll_interval: Duration,
    pub destinations: Vec<Destination>,
    pub routes: Vec<Route>,
    /// Where this instance claims each finding's alerts before sending them, when several
    /// instances share a lake (`[eventhubs.balance] shared_lake`, [`super::claims`]).
    /// `None`: every alert is sent.
    pub claims: Option<std::sync::Arc<super::claims::Claims>>,
}

impl AlertsConfig {
    /// For `demo`: `TOKENTRAIL_ALERTS__*` environment variables (nested keys joined by `__`),
    /// e.g. `TOKENTRAIL_ALERTS__DESTINATIONS='[{name="x", kind="slack", url_env="X_URL"}]'`.
    pub fn from_env() -> Result<AlertsConfig> {
        use figment::providers::{Env, Serialized};
        let defaults = Serialized::defaults(serde_json::json!({}));
        figment::Figment::from(defaults).merge(Env::prefixed("TOKENTRAIL_ALERTS__").split("__")).extract().map_err(
            |error| {
                let messages: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
                anyhow::anyhow!("alerts configuration from the environment: {}", messages.join("; "))
            },
        )
    }

    /// Checks the values and reads the secrets. `default_ui` is the service's own address.
    pub fn resolve(&self, default_ui: &str) -> Result<Alerts> {
        let positive = [
            ("timeout_ms", self.timeout_ms),
            ("backoff_initial_ms", self.backoff_initial_ms),
            ("backoff_max_secs", self.backoff_max_secs),
            ("poll_interval_ms", self.poll_interval_ms),
            ("give_up_after_secs", self.give_up_after_secs),
        ];
        for (name, value) in positive {
            if value == 0 {
                bail!("alerts.{name} must be above 0");
            }
        }
        let ui = self.ui_base_url.clone().unwrap_or_else(|| default_ui.to_owned());
        let ui = ui.trim().trim_end_matches('/').to_owned();
        match url::Url::parse(&ui) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => bail!("alerts.ui_base_url: {ui:?} is not an http(s) URL like https://tokentrail.contoso.com"),
        }
        let mut destinations: Vec<Destination> = Vec::new();
        for d in &self.destinations {
            let name = d.name.trim();
            if name.is_empty() || destinations.iter().any(|x| x.name == name) {
                bail!("alerts.destinations: every destination needs a name of its own ({:?})", d.name);
            }
            let url = read_secret(name, "url", &d.url_env, &d.url_file)?;
            match url::Url::parse(url.expose().trim()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                // Not the value: it is a secret even when it is wrong.
                _ => bail!("alerts destination {name}: its URL is not an http(s) URL"),
            }
            let url = Secret(url.expose().trim().to_owned());
            let keys = if d.signing_keys_env.is_some() || d.signing_keys_file.is_some() {
                if d.kind != DestinationKind::Webhook {
                    bail!("alerts destination {name}: signing keys are for kind = \"webhook\" only");
                }
                let text = read_secret(name, "signing_keys", &d.signing_keys_env, &d.signing_keys_file)?;
                text.expose()
                    .split_whitespace()
                    .map(SigningKey::parse)
                    .collect::<Result<Vec<_>>>()
                    .with_context(|| format!("alerts destination {name}: signing keys"))?
            } else {
                Vec::new()
            };
            if d.kind == DestinationKind::Webhook && keys.is_empty() {
                bail!(
                    "alerts destination {name}: a webhook is signed; set signing_keys_env or signing_keys_file \
                     (keys like whsec_<base64 of 32 random bytes>)"
                );
            }
            destinations.push(Destination { name: name.to_owned(), kind: d.kind, url, keys });
        }
        let mut routes = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            if r.destinations.is_empty() {
                bail!("alerts.routes[{i}]: list the destinations it sends to");
            }
            for name in &r.destinations {
                if !destinations.iter().any(|d| &d.name == name) {
                    bail!("alerts.routes[{i}]: there is no destination named {name:?}");
                }
            }
            let min_severity = match &r.min_severity {
                None => None,
                Some(text) => Some(Severity::parse(text).with_context(|| {
                    format!("alerts.routes[{i}].min_severity: {text:?} is not low, medium, high or critical")
                })?),
            };
            routes.push(Route {
                destinations: r.destinations.clone(),
                min_severity,
                rules: r.rules.clone(),
                accounts: r.accounts.clone(),
            });
        }
        Ok(Alerts {
            ui_base_url: ui,
            group_wait: Duration::from_millis(self.group_wait_ms),
            group_interval: Duration::from_secs(self.group_interval_secs),
            give_up_after: Duration::from_secs(self.give_up_after_secs),
            timeout: Duration::from_millis(self.timeout_ms),
            backoff_initial: Duration::from_millis(self.backoff_initial_ms),
            backoff_max: Duration::from_secs(self.backoff_max_secs),
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            destinations,
            routes,
            claims: None,
        })
    }
}

/// Reads a secret from the environment variable or the file named, one of the two.
fn read_secret(destination: &str, what: &str, env: &Option<String>, file: &Option<PathBuf>) -> Result<Secret> {
    let text = match (env, file) {
        (Some(var), None) => std::env::var(var).map_err(|_| {
            anyhow::anyhow!("alerts destination {destination}: the environment variable {var} ({what}) is not set")
        })?,
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("alerts destination {destination}: reading {what} from {}", path.display()))?,
        (Some(_), Some(_)) => bail!("alerts destination {destination}: set {what}_env or {what}_file, not both"),
        (None, None) => bail!("alerts destination {destination}: set {what}_env or {what}_file"),
    };
    if text.trim().is_empty() {
        bail!("alerts destination {destination}: {what} is empty");
    }
    Ok(Secret(text.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret("https://hooks.slack.com/services/T/B/xyz".into());
        assert!(!format!("{secret:?}").contains("hooks"));
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(redacted)");
    }

    #[test]
    fn routes_match_by_severity_rule_and_account() {
        let route = Route {
            destinations: vec!["x".into()],
            min_severity: Some(Severity::High),
            rules: vec![],
            accounts: vec!["prod".into()],
        };
        assert!(route.matches("r", Some(Severity::Critical), Some("PROD")));
        assert!(!route.matches("r", Some(Severity::Medium), Some("prod")));
        assert!(!route.matches("r", Some(Severity::High), None));
    }

    #[test]
    fn bad_values_say_what_to_fix_without_the_secret() {
        let mut config = AlertsConfig::default();
        config.destinations.push(DestinationConfig {
            name: "hook".into(),
            kind: DestinationKind::Webhook,
            url_env: Some("TOKENTRAIL_TEST_ALERT_URL_UNSET".into()),
            url_file: None,
            signing_keys_env: None,
            signing_keys_file: None,
        });
        let e = config.resolve("http://127.0.0.1:8080").unwrap_err().to_string();
        assert!(e.contains("TOKENTRAIL_TEST_ALERT_URL_UNSET"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "ftp://secret-host/x\n").unwrap();
        config.destinations[0].url_env = None;
        config.destinations[0].url_file = Some(file.clone());
        let e = format!("{:#}", config.resolve("http://127.0.0.1:8080").unwrap_err());
        assert!(e.contains("not an http(s) URL") && !e.contains("secret-host"), "{e}");
        std::fs::write(&file, "https://example.com/hook\n").unwrap();
        let e = format!("{:#}", config.resolve("http://127.0.0.1:8080").unwrap_err());
        assert!(e.contains("signing_keys_env"), "{e}");
    }
}
