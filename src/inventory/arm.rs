//! Reading the inventory from Azure Resource Manager with plain `reqwest` (there is no
//! official Rust crate for these APIs): subscriptions, their Cosmos DB accounts, each
//! account's data-plane role definitions and assignments, and the subscription's Azure
//! role assignments that reach an account.
//!
//! The bearer token goes only to the management endpoint: a `nextLink` on another scheme
//! or host is refused (and the subscription reported), never followed. 429 and 503 are
//! retried after their `Retry-After` (seconds or an HTTP date; capped, bounded tries). A
//! 401 or 403 fails that subscription only: it is reported and the others are stored. No
//! token is ever logged.

use super::{
    Account, ArmPath, AzureRoleAssignment, Origin, Problem, RoleAssignment, RoleDefinition, Snapshot, azure_role_name,
    last_segment,
};
use anyhow::{Context, Result, anyhow};
use azure_core::credentials::TokenCredential;
use futures::future::BoxFuture;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Azure's public cloud. Sovereign clouds (and the tests' stub) configure another.
pub const PUBLIC_ENDPOINT: &str = "https://management.azure.com";
const SUBSCRIPTIONS_API: &str = "2022-12-01";
const COSMOS_API: &str = "2025-10-15";
const AUTHORIZATION_API: &str = "2022-04-01";

/// Where bearer tokens for ARM come from. In the service: an Entra ID credential
/// ([`EntraToken`]). The integration tests inject a fixed token instead: that is the
/// one fake of the inventory tests (there is no Entra ID there); everything else, the
/// HTTP server included, is real.
pub trait TokenSource: Send + Sync {
    fn token(&self) -> BoxFuture<'_, Result<String>>;
}

/// A token from an Entra ID credential, for `{endpoint}/.default`.
pub struct EntraToken {
    pub credential: Arc<dyn TokenCredential>,
    pub scope: String,
}

impl EntraToken {
    pub fn new(credential: Arc<dyn TokenCredential>, endpoint: &Url) -> EntraToken {
        let base = endpoint.as_str().trim_end_matches('/');
        EntraToken { credential, scope: format!("{base}/.default") }
    }
}

impl TokenSource for EntraToken {
    fn token(&self) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move {
            let token = self
                .credential
                .get_token(&[self.scope.as_str()], None)
                .await
                .map_err(|e| anyhow!("getting a token for {}: {e}", self.scope))?;
            Ok(token.token.secret().to_owned())
        })
    }
}

/// How throttling is waited out.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries of one request, the first included.
    pub tries: u32,
    /// The longest wait honoured; a longer `Retry-After` waits this long.
    pub max_wait: Duration,
    /// The wait when 429/503 names none.
    pub default_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { tries: 5, max_wait: Duration::from_secs(60), default_wait: Duration::from_secs(5) }
    }
}

/// Why one listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    #[error("{status} from {path}: the identity may not read it (give it Reader on the subscription)")]
    Denied { status: u16, path: String },
    #[error("refused to follow nextLink to {link}: it is not on {endpoint} (the bearer token goes only there)")]
    ForeignNextLink { link: String, endpoint: String },
    #[error("{status} from {path} after {tries} tries (throttled or unavailable)")]
    Throttled { status: u16, path: String, tries: u32 },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl ArmError {
    fn status(&self) -> Option<u16> {
        match self {
            ArmError::Denied { status, .. } | ArmError::Throttled { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An ARM client: one endpoint, one token source.
pub struct ArmClient {
    http: reqwest::Client,
    endpoint: Url,
    token: Arc<dyn TokenSource>,
    retry: RetryPolicy,
}

impl ArmClient {
    pub fn new(endpoint: &str, token: Arc<dyn TokenSource>, retry: RetryPolicy) -> Result<ArmClient> {
        let endpoint = parse_endpoint(endpoint)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            // Redirects would carry the token elsewhere: none are followed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?;
        Ok(ArmClient { http, endpoint, token, retry })
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// Every item of a listing at `path` (with its query), following `nextLink`.
    pub async fn list(&self, path: &str) -> Result<Vec<Value>, ArmError> {
        let mut url = self.endpoint.join(path).map_err(|e| anyhow!("bad path {path}: {e}"))?;
        let mut items = Vec::new();
        loop {
            let page = self.get(&url, path).await?;
            if let Some(value) = page.get("value").and_then(Value::as_array) {
                items.extend(value.iter().cloned());
            }
            let Some(next) = page.get("nextLink").and_then(Value::as_str).filter(|l| !l.is_empty()) else {
                return Ok(items);
            };
            let next = Url::parse(next).map_err(|e| anyhow!("bad nextLink from {path}: {e}"))?;
            if !same_origin(&next, &self.endpoint) {
                return Err(ArmError::ForeignNextLink {
                    link: format!("{}://{}", next.scheme(), next.authority()),
                    endpoint: self.endpoint.origin().ascii_serialization(),
                });
            }
            url = next;
        }
    }

    /// One GET, throttling waited out.
    async fn get(&self, url: &Url, path: &str) -> Result<Value, ArmError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let token = self.token.token().await?;
            let response = self
                .http
                .get(url.clone())
                .bearer_auth(token)
                .header("accept", "application/json")
                .send()
                .await
                .map_err(|e| anyhow!("GET {path}: {e}"))?;
            let status = response.status().as_u16();
            match status {
                200..=299 => {
                    return Ok(response.json().await.map_err(|e| anyhow!("GET {path}: reading the body: {e}"))?);
                }
                401 | 403 => return Err(ArmError::Denied { status, path: path_only(path) }),
                429 | 503 => {
                    if tries >= self.retry.tries {
                        return Err(ArmError::Throttled { status, path: path_only(path), tries });
                    }
                    let wait = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry_after(v, chrono::Utc::now()))
                        .unwrap_or(self.retry.default_wait)
                        .min(self.retry.max_wait);
                    tracing::info!(status, path = %path_only(path), wait_ms = wait.as_millis() as u64, "ARM throttled; waiting");
                    tokio::time::sleep(wait).await;
                }
                _ => {
                    let body = response.text().await.unwrap_or_default();
                    let body: String = body.chars().take(300).collect();
                    return Err(anyhow!("GET {}: HTTP {status}: {body}", path_only(path)).into());
                }
            }
        }
    }

    /// Subscription ids the identity can see.
    pub async fn subscriptions(&self) -> Result<Vec<String>, ArmError> {
        let items = self.list(&format!("/subscriptions?api-version={SUBSCRIPTIONS_API}")).await?;
        Ok(items
            .iter()
            .filter_map(|s| s.get("subscriptionId").and_then(Value::as_str))
            .map(str::to_ascii_lowercase)
            .collect())
    }

    /// Reads one subscription into `snapshot` (nothing is added if any part fails).
    pub async fn read_subscription(&self, subscription_id: &str, snapshot: &mut Snapshot) -> Result<(), ArmError> {
        let sub = subscription_id.to_ascii_lowercase();
        let accounts = self
            .list(&format!(
                "/subscriptions/{sub}/providers/Microsoft.DocumentDB/databaseAccounts?api-version={COSMOS_API}"
            ))
            .await?;
        let accounts: Vec<Account> = accounts.iter().filter_map(account).collect();
        let mut definitions = Vec::new();
        let mut assignments = Vec::new();
        for account in &accounts {
            let base = &account.resource_id;
            for item in self.list(&format!("{base}/sqlRoleDefinitions?api-version={COSMOS_API}")).await? {
                definitions.extend(role_definition(&item));
            }
            for item in self.list(&format!("{base}/sqlRoleAssignments?api-version={COSMOS_API}")).await? {
                assignments.extend(role_assignment(&item));
            }
        }
        let groups: BTreeSet<&str> = accounts.iter().filter_map(|a| a.resource_group.as_deref()).collect();
        let account_ids: Vec<&str> = accounts.iter().map(|a| a.resource_id.as_str()).collect();
        let azure: Vec<AzureRoleAssignment> = self
            .list(&format!(
                "/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments?api-version={AUTHORIZATION_API}"
            ))
            .await?
            .iter()
            .filter_map(azure_role_assignment)
            .filter(|a| reaches_an_account(&a.scope, &sub, &groups, &account_ids))
            .collect();
        tracing::info!(
            subscription = %sub,
            accounts = accounts.len(),
            role_definitions = definitions.len(),
            role_assignments = assignments.len(),
            azure_role_assignments = azure.len(),
            "inventory: subscription read"
        );
        snapshot.accounts.extend(accounts);
        snapshot.definitions.extend(definitions);
        snapshot.assignments.extend(assignments);
        snapshot.azure_assignments.extend(azure);
        snapshot.cover_subscription(&sub);
        Ok(())
    }
}

/// Reads the inventory: the subscriptions given (or every one the identity sees), each
/// on its own; a subscription that fails is a [`Problem`] of the snapshot.
pub async fn collect(client: &ArmClient, subscriptions: &[String]) -> Result<Snapshot> {
    let mut snapshot = Snapshot::new(Origin::Arm, chrono::Utc::now());
    let subscriptions = if subscriptions.is_empty() {
        client.subscriptions().await.context("listing subscriptions")?
    } else {
        subscriptions.iter().map(|s| s.trim().to_ascii_lowercase()).collect()
    };
    for sub in &subscriptions {
        match client.read_subscription(sub, &mut snapshot).await {
            Ok(()) => snapshot.ok += 1,
            Err(error) => {
                tracing::warn!(subscription = %sub, error = %error, "inventory: subscription not read; its rows are kept as they were");
                snapshot.failed += 1;
                snapshot.problems.push(Problem {
                    subscription_id: Some(sub.clone()),
                    file: None,
                    status: error.status(),
                    message: error.to_string(),
                });
            }
        }
    }
    Ok(snapshot)
}

/// Whether an Azure role assignment's scope reaches a Cosmos DB account: the subscription,
/// a resource group holding an account, or an account or below.
fn reaches_an_account(scope: &str, sub: &str, groups: &BTreeSet<&str>, accounts: &[&str]) -> bool {
    let scope = scope.trim_end_matches('/');
    let path = ArmPath::parse(scope);
    if path.subscription_id.as_deref() != Some(sub) {
        return false;
    }
    if scope == format!("/subscriptions/{sub}") {
        return true;
    }
    if let Some(rg) = &path.resource_group
        && scope == format!("/subscriptions/{sub}/resourcegroups/{rg}")
    {
        return groups.contains(rg.as_str());
    }
    accounts.iter().any(|a| scope == *a || scope.starts_with(&format!("{a}/")))
}

fn parse_endpoint(endpoint: &str) -> Result<Url> {
    let url =
        Url::parse(endpoint.trim()).with_context(|| format!("the management endpoint {endpoint:?} is not a URL"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        anyhow::bail!("the management endpoint {endpoint:?} must be an http(s) URL with a host");
    }
    Ok(url)
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// A path without its query (for messages and logs).
fn path_only(path: &str) -> String {
    path.split('?').next().unwrap_or(path).to_owned()
}

/// `Retry-After`: seconds, or an HTTP date (a date in the past is no wait).
pub fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&chrono::Utc) - now).to_std().unwrap_or(Duration::ZERO))
}

fn lower(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_ascii_lowercase)
}

fn string(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

/// The object's `properties` if it has them, else the object itself (`az` flattens them).
pub(super) fn props(item: &Value) -> &Value {
    item.get("properties").filter(|p| p.is_object()).unwrap_or(item)
}

fn strings(v: Option<&Value>, field: Option<&str>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| match field {
                    Some(f) => i.get(f).and_then(Value::as_str),
                    None => i.as_str(),
                })
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A Cosmos DB account, from ARM or `az cosmosdb show`/`list`.
pub(super) fn account(item: &Value) -> Option<Account> {
    let id = lower(item.get("id"))?;
    let path = ArmPath::parse(&id);
    let p = props(item);
    Some(Account {
        account: path.account.clone().or_else(|| lower(item.get("name")))?,
        resource_id: path.account_id.clone()?,
        subscription_id: path.subscription_id?,
        resource_group: path.resource_group,
        location: string(item.get("location")),
        disable_local_auth: p.get("disableLocalAuth").and_then(Value::as_bool),
        public_network_access: string(p.get("publicNetworkAccess")),
        ip_rules: strings(p.get("ipRules"), Some("ipAddressOrRange")),
        virtual_network_rules: strings(p.get("virtualNetworkRules"), Some("id"))
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        disable_key_based_metadata_write_access: p.get("disableKeyBasedMetadataWriteAccess").and_then(Value::as_bool),
    })
}

/// A data-plane role definition, from ARM (`properties.type`) or `az` (`typePropertiesType`).
pub(super) fn role_definition(item: &Value) -> Option<RoleDefinition> {
    let id = lower(item.get("id"))?;
    let path = ArmPath::parse(&id);
    let p = props(item);
    let permissions = p.get("permissions").and_then(Value::as_array);
    let mut data_actions = Vec::new();
    let mut not_data_actions = Vec::new();
    for permission in permissions.into_iter().flatten() {
        data_actions.extend(strings(permission.get("dataActions"), None));
        not_data_actions.extend(strings(permission.get("notDataActions"), None));
    }
    let role_type = if std::ptr::eq(p, item) {
        string(item.get("typePropertiesType")).or_else(|| string(item.get("roleType")))
    } else {
        string(p.get("type"))
    };
    Some(RoleDefinition {
        role_definition_id: last_segment(&id),
        account: path.account?,
        subscription_id: path.subscription_id?,
        resource_id: id,
        role_name: string(p.get("roleName")),
        role_type,
        assignable_scopes: strings(p.get("assignableScopes"), None)
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        data_actions,
        not_data_actions,
    })
}

/// A data-plane role assignment.
pub(super) fn role_assignment(item: &Value) -> Option<RoleAssignment> {
    let id = lower(item.get("id"))?;
    let path = ArmPath::parse(&id);
    let p = props(item);
    Some(RoleAssignment {
        account: path.account?,
        subscription_id: path.subscription_id?,
        assignment_id: id,
        principal_id: lower(p.get("principalId"))?,
        role_definition_id: last_segment(p.get("roleDefinitionId")?.as_str()?),
        scope: lower(p.get("scope"))?.trim_end_matches('/').to_owned(),
    })
}

/// An Azure role assignment, from ARM or `az role assignment list`.
pub(super) fn azure_role_assignment(item: &Value) -> Option<AzureRoleAssignment> {
    let id = lower(item.get("id"))?;
    let p = props(item);
    let scope = lower(p.get("scope"))?.trim_end_matches('/').to_owned();
    let role_definition_id = last_segment(p.get("roleDefinitionId")?.as_str()?);
    Some(AzureRoleAssignment {
        subscription_id: ArmPath::parse(&scope).subscription_id.or_else(|| ArmPath::parse(&id).subscription_id)?,
        assignment_id: id,
        principal_id: lower(p.get("principalId"))?,
        principal_type: string(p.get("principalType")),
        role_name: azure_role_name(&role_definition_id)
            .map(str::to_owned)
            .or_else(|| string(item.get("roleDefinitionName"))),
        role_definition_id,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:50Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn next_links_must_stay_on_the_endpoint() {
        let e = Url::parse("https://management.azure.com").unwrap();
        assert!(same_origin(&Url::parse("https://management.azure.com/x?y").unwrap(), &e));
        assert!(same_origin(&Url::parse("https://management.azure.com:443/x").unwrap(), &e));
        assert!(!same_origin(&Url::parse("http://management.azure.com/x").unwrap(), &e));
        assert!(!same_origin(&Url::parse("https://evil.example/x").unwrap(), &e));
        assert!(!same_origin(&Url::parse("https://management.azure.com.evil.example/x").unwrap(), &e));
    }
}
