//! `tokentrail serve` configuration: a TOML file, then environment overrides.
//!
//! Every key is optional except where noted; unknown keys are refused with the
//! list of known ones, so a typo never silently falls back to a default. Secrets
//! never live here: the service authenticates with an Entra ID identity, an emulator
//! connection string comes from the environment, and alert webhook URLs and signing
//! keys from environment variables or files that `[alerts]` names.
//!
//! Environment overrides use `TOKENTRAIL_` plus the key path joined by `__`, e.g.
//! `TOKENTRAIL_EVENTHUBS__CONSUMER_GROUP=audit` or `TOKENTRAIL_HTTP__LISTEN=0.0.0.0:8080`.

use anyhow::{Context, Result, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The environment variable holding an Event Hubs connection string (emulator and
/// local testing only; never logged).
pub const CONNECTION_STRING_ENV: &str = "TOKENTRAIL_EVENTHUBS_CONNECTION_STRING";

/// DuckDB's memory limit for `serve` (unless `db_memory_limit` says otherwise) and `demo`.
pub const DEFAULT_DB_MEMORY_LIMIT: &str = "384MB";

/// Environment variables with the `TOKENTRAIL_` prefix that are not configuration keys.
const NOT_KEYS: [&str; 10] = [
    "log",
    "lake_url",
    "lake_account_key",
    "checkpoint_account_key",
    "config",
    "eventhubs_connection_string",
    "rules_dir",
    "threat_intel_dir",
    "trusted_networks",
    "auth_client_secret",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// The DuckDB file.
    pub db: PathBuf,
    /// DuckDB's memory limit for its buffer pool and queries (DuckDB's syntax: `384MB`,
    /// `2GB`). The rest of the service (commits in flight, receive buffers) comes on top.
    pub db_memory_limit: String,
    /// DuckDB's threads. Default: half the cores (at least 1). Ingest's parser threads
    /// and the network take the other half; on 2 cores one DuckDB thread stored a
    /// stream faster, for less CPU, than two (BENCHMARKS.md, Event Hubs). More threads
    /// make large queries and dashboards faster.
    pub db_threads: Option<usize>,
    pub http: HttpConfig,
    /// Stream from Event Hubs; absent: serve what the database holds.
    pub eventhubs: Option<EventHubsConfig>,
    /// Entra ID tenants, audiences and browser sign-in (see `crate::auth::AuthConfig`).
    pub auth: Option<crate::auth::AuthConfig>,
    /// Rules folder, threat intelligence lists, trusted networks, parameters.
    #[serde(skip_serializing)]
    pub detection: crate::rules::DetectionConfig,
    /// Alert hooks: destinations (their URLs and keys from the environment or files),
    /// routes, grouping and retry timings (see `crate::alerts::AlertsConfig`).
    #[serde(skip_serializing)]
    pub alerts: crate::alerts::AlertsConfig,
    /// Evidence packs (`[evidence]`): the key that signs them.
    pub evidence: EvidenceConfig,
    /// The entitlements inventory (`[inventory]`): off unless enabled.
    pub inventory: InventoryConfig,
    /// The Parquet lake (`[lake]`): committed batches archived there every
    /// `interval_minutes`; absent: nothing is archived.
    pub lake: Option<LakeConfig>,
    /// `[retention]`: days each table keeps in DuckDB once archived (needs `[lake]`).
    pub retention: crate::lake::evict::Retention,
}

/// `[lake]`: where archived batches go (see `crate::lake`) and with which identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// A directory, `https://<account>.blob.core.windows.net/<container>[/<prefix>]`,
    /// `abfss://<container>@<account>.dfs.core.windows.net[/<prefix>]`, or Azurite's
    /// `http://<host>:<port>/devstoreaccount1/<container>` (key in `TOKENTRAIL_LAKE_ACCOUNT_KEY`).
    pub url: String,
    /// Minutes between archive runs (the first runs at start).
    #[serde(default = "default_lake_interval")]
    pub interval_minutes: u32,
    /// The Entra ID identity, as in `[eventhubs]` (no connection string here).
    #[serde(default)]
    pub credential: CredentialKind,
    #[serde(default)]
    pub managed_identity_client_id: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// Where files of an Azure Storage lake are kept once fetched for answers past
    /// retention (default: beside the database, `<db>.lake-cache`). A directory lake is
    /// read in place.
    #[serde(default)]
    pub cache_dir: Option<std::path::PathBuf>,
}

fn default_lake_interval() -> u32 {
    60
}

/// `[inventory]`: read who may do what in Cosmos DB from Azure Resource Manager every
/// `interval_hours` (see `crate::inventory`). The identity needs Reader on each subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    pub enabled: bool,
    /// Hours between inventories (the first runs at start).
    pub interval_hours: u32,
    /// Subscription ids to read; empty: every subscription the identity can see.
    pub subscriptions: Vec<String>,
    /// The Azure Resource Manager endpoint (another one for sovereign clouds).
    pub endpoint: String,
    /// The Entra ID identity, as in `[eventhubs]` (no connection string here).
    pub credential: CredentialKind,
    pub managed_identity_client_id: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            enabled: false,
            interval_hours: 24,
            subscriptions: Vec::new(),
            endpoint: "https://management.azure.com".into(),
            credential: CredentialKind::Default,
            managed_identity_client_id: None,
            tenant_id: None,
            client_id: None,
        }
    }
}

impl InventoryConfig {
    /// The checks `serve` makes of `[inventory]` (the CLI makes them of its flags too).
    pub fn check(&self) -> Result<()> {
        if self.interval_hours == 0 || self.interval_hours > 24 * 31 {
            bail!("inventory.interval_hours: set between 1 and 744 (a month); 24 reads once a day");
        }
        let guid = |s: &str| {
            s.len() == 36
                && s.char_indices()
                    .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
        };
        if let Some(bad) = self.subscriptions.iter().find(|s| !guid(s.trim())) {
            bail!(
                "inventory.subscriptions: {bad:?} is not a subscription id (a GUID like \
                 \"00000000-0000-0000-0000-000000000000\"); leave the list empty to read every subscription"
            );
        }
        let endpoint = url::Url::parse(&self.endpoint).ok();
        if endpoint.as_ref().is_none_or(|u| !matches!(u.scheme(), "https" | "http") || u.host_str().is_none()) {
            bail!("inventory.endpoint: {:?} is not an https URL like \"https://management.azure.com\"", self.endpoint);
        }
        if self.credential == CredentialKind::ConnectionString {
            bail!("inventory.credential: connection_string is for the Event Hubs emulator; use an Entra ID identity");
        }
        Ok(())
    }
}

/// `[evidence]`: how packs are signed, and how much work one pack over the API may take.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    /// An Ed25519 private key, PKCS#8 PEM (keep it mode 0600). Default: the file
    /// `<db>.evidence-key.pem` beside the database, created on first use.
    pub signing_key: Option<PathBuf>,
    /// The longest period a pack may cover, in days (a SOC 2 Type II period is up to a
    /// year; longer packs can be made on the command line).
    pub max_period_days: u32,
    /// The most rows a pack's populations may hold together.
    pub max_rows: u64,
    /// How long building a pack may take before it is stopped.
    pub timeout_secs: u64,
    /// Streams every pack's coverage must list even without events (`cosmos:<account>`,
    /// `signins:<category>`, `raw:<category>`), so one that never arrived shows as
    /// "not ingested"; the inventory's accounts always are.
    pub expected_streams: Vec<String>,
    /// How many hours after a person leaves their role assignments must be removed: the
    /// deadline the CC6.2 leavers population judges each removal by (on time, late).
    pub removal_deadline_hours: u32,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            signing_key: None,
            max_period_days: 400,
            max_rows: 2_000_000,
            timeout_secs: 300,
            expected_streams: Vec::new(),
            removal_deadline_hours: 24,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            db: PathBuf::from("data/tokentrail.duckdb"),
            db_memory_limit: DEFAULT_DB_MEMORY_LIMIT.into(),
            db_threads: None,
            http: HttpConfig::default(),
            eventhubs: None,
            auth: None,
            detection: Default::default(),
            alerts: Default::default(),
            evidence: EvidenceConfig::default(),
            inventory: InventoryConfig::default(),
            lake: None,
            retention: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Without `[auth]`: sign in with the development issuer (any role, for trying
    /// TokenTrail out, e.g. in `docker compose`). Its sign-in page asks for a secret
    /// `serve` prints when it starts. Never for real data: configure `[auth]`.
    pub development_sign_in: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: SocketAddr::from(([127, 0, 0, 1], 8080)), development_sign_in: false }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventHubsConfig {
    /// Fully qualified namespace, e.g. `contoso-logs.servicebus.windows.net`.
    /// Not needed with `credential = "connection_string"`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// One or more event hubs, e.g. `insights-logs-dataplanerequests`.
    pub hubs: Vec<String>,
    #[serde(default = "default_consumer_group")]
    pub consumer_group: String,
    /// Partition ids to read; empty: all of each hub's partitions.
    #[serde(default)]
    pub partitions: Vec<String>,
    /// Where a partition with no committed position starts: `earliest`, `latest`,
    /// or an RFC 3339 time (events enqueued at or after it).
    #[serde(default)]
    pub start: StartAt,
    /// What a partition does when its stream started again (the hub was deleted and
    /// created again, or the emulator restarted: sequence numbers begin anew below what
    /// was committed): `earliest` reads the new stream from its start (nothing lost),
    /// `latest` from its end. Either way the reset is stored and raised as a finding.
    #[serde(default)]
    pub on_reset: OnReset,
    #[serde(default)]
    pub credential: CredentialKind,
    /// Client id of a user-assigned managed identity (system-assigned when absent).
    #[serde(default)]
    pub managed_identity_client_id: Option<String>,
    /// Tenant and client id for `client_secret`, `client_certificate` and
    /// `workload_identity`; default `AZURE_TENANT_ID` and `AZURE_CLIENT_ID`.
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// An AMQP endpoint to dial instead of `amqps://<namespace>`, e.g. a local
    /// emulator at `amqp://127.0.0.1:5672`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Events each receiver asks the service for ahead of use.
    #[serde(default = "default_prefetch")]
    pub prefetch: u32,
    /// Longest wait before received events are committed (batching by time),
    /// counted from the last commit while commits by size keep coming.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
    /// Rows per commit while events stream in (batching by count), counted in the
    /// commit's largest table; one DuckDB row group by default, the least DuckDB
    /// writes without its write-ahead log.
    #[serde(default = "default_commit_rows")]
    pub commit_rows: usize,
    /// A receiver that gets nothing for this long while events wait in its
    /// partition is reconnected (a stuck link).
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout_secs: u64,
    /// How often each partition's lag is measured and logged.
    #[serde(default = "default_lag_interval")]
    pub lag_interval_secs: u64,
    /// Hubs whose partitions several instances share (`balanced`); the other hubs are
    /// `broadcast`: this instance reads all of them with `consumer_group`.
    #[serde(default)]
    pub balance: Option<BalanceConfig>,
}

/// `[eventhubs.balance]`: the hubs whose partitions the instances of one consumer group
/// share, through Event Hubs' own partition ownership (`EventProcessor`, balanced) over
/// ownership and checkpoint blobs in the layout every Event Hubs SDK shares.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceConfig {
    /// The balanced hubs (data-plane requests, the bulk of the volume); each is one of
    /// `eventhubs.hubs`. Sign-in hubs stay broadcast: every correlation needs all of them.
    pub hubs: Vec<String>,
    /// The blob container of the ownership and checkpoint blobs,
    /// `https://<account>.blob.core.windows.net/<container>`, reached with the
    /// `[eventhubs]` identity (Azurite: `http://127.0.0.1:<port>/<account>/<container>`
    /// with its key in `TOKENTRAIL_CHECKPOINT_ACCOUNT_KEY`).
    pub checkpoint_store: String,
    /// The consumer group the instances share (`eventhubs.consumer_group` is this
    /// instance's own, for the broadcast hubs).
    #[serde(default = "default_consumer_group")]
    pub consumer_group: String,
    /// How often an instance renews its ownerships and claims its share.
    #[serde(default = "default_balance_interval")]
    pub update_interval_ms: u64,
    /// An ownership not renewed for this long is free: how long a dead instance's
    /// partitions wait for another. Above `update_interval_ms`.
    #[serde(default = "default_balance_expiry")]
    pub expiry_ms: u64,
    /// Committed positions are written to the checkpoint blobs at most this often: one
    /// blob write per partition with new events each time (storage transactions are
    /// billed), and what a crashed instance stored after the last one is stored again by
    /// the next owner.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval_ms: u64,
    /// The lake the instances share (a directory or an Azure Storage URL, as `[lake] url`,
    /// reached with the `[eventhubs]` identity; Azurite's key in
    /// `TOKENTRAIL_LAKE_ACCOUNT_KEY`): each balanced partition's committed rows, in segments
    /// claimed create-if-absent (`crate::lake::segments`), and the alert claims, so that
    /// several instances store each event once and alert each finding once. Unset: each
    /// instance keeps what it read, and a moved partition's last events may be stored twice.
    #[serde(default)]
    pub shared_lake: Option<String>,
    /// How often each partition's new rows are written to the shared lake as a segment; the
    /// blob checkpoint follows the segments, so a takeover reads again at most this much.
    #[serde(default = "default_segment_interval")]
    pub segment_interval_ms: u64,
}

fn default_segment_interval() -> u64 {
    30_000
}

fn default_checkpoint_interval() -> u64 {
    1_000
}

fn default_balance_interval() -> u64 {
    10_000
}
fn default_balance_expiry() -> u64 {
    60_000
}

impl EventHubsConfig {
    /// Defaults for reading (or writing) one hub.
    pub fn for_hub(hub: &str) -> EventHubsConfig {
        EventHubsConfig {
            namespace: None,
            hubs: vec![hub.to_owned()],
            consumer_group: default_consumer_group(),
            partitions: Vec::new(),
            start: StartAt::default(),
            on_reset: OnReset::default(),
            credential: CredentialKind::default(),
            managed_identity_client_id: None,
            tenant_id: None,
            client_id: None,
            endpoint: None,
            prefetch: default_prefetch(),
            max_wait_ms: default_max_wait_ms(),
            commit_rows: default_commit_rows(),
            stall_timeout_secs: default_stall_timeout(),
            lag_interval_secs: default_lag_interval(),
            balance: None,
        }
    }
}

fn default_consumer_group() -> String {
    "$Default".into()
}
/// Diagnostic-settings events carry many records (up to ~1 MB each), so 100 events
/// ahead per partition is plenty to keep a receiver busy, and bounds what waits in
/// the client (~100 MB over 4 partitions at 250 KB an event).
fn default_prefetch() -> u32 {
    100
}
fn default_max_wait_ms() -> u64 {
    1000
}
fn default_commit_rows() -> usize {
    crate::store::COMMIT_ROWS
}
fn default_stall_timeout() -> u64 {
    30
}
fn default_lag_interval() -> u64 {
    30
}

/// Where a partition reads on after its stream started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnReset {
    #[default]
    Earliest,
    Latest,
}

/// Where to start reading a partition that has no committed position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StartAt {
    #[default]
    Earliest,
    Latest,
    /// Microseconds since the epoch, UTC.
    Time(i64),
}

impl TryFrom<String> for StartAt {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "earliest" => Ok(StartAt::Earliest),
            "latest" => Ok(StartAt::Latest),
            _ => {
                chrono::DateTime::parse_from_rfc3339(text.trim()).map(|t| StartAt::Time(t.timestamp_micros())).map_err(
                    |_| format!("{text:?} is not `earliest`, `latest` or an RFC 3339 time like 2026-11-01T00:00:00Z"),
                )
            }
        }
    }
}

impl From<StartAt> for String {
    fn from(start: StartAt) -> String {
        match start {
            StartAt::Earliest => "earliest".into(),
            StartAt::Latest => "latest".into(),
            StartAt::Time(us) => {
                chrono::DateTime::from_timestamp_micros(us).map(|t| t.to_rfc3339()).unwrap_or_default()
            }
        }
    }
}

/// Which Entra ID identity the service authenticates with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// Workload identity if AKS set it up, else a client secret or certificate from
    /// the environment, else managed identity when running in Azure, else the Azure CLI.
    #[default]
    Default,
    ManagedIdentity,
    WorkloadIdentity,
    ClientSecret,
    ClientCertificate,
    AzureCli,
    /// `TOKENTRAIL_EVENTHUBS_CONNECTION_STRING`: the emulator and local tests only.
    ConnectionString,
}

impl ServeConfig {
    /// Reads `path` (if given) and the environment, and checks the result.
    pub fn load(path: Option<&Path>) -> Result<ServeConfig> {
        let mut figment = Figment::from(Serialized::defaults(ServeConfig::default()));
        if let Some(path) = path {
            if !path.exists() {
                bail!("configuration file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = Env::prefixed("TOKENTRAIL_")
            .split("__")
            .filter(|key| !NOT_KEYS.iter().any(|k| key.as_str().eq_ignore_ascii_case(k)));
        let config: ServeConfig = figment.merge(env).extract().map_err(|error| {
            let messages: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
            anyhow::anyhow!("{}", messages.join("; "))
        })?;
        config.check().with_context(|| match path {
            Some(path) => format!("configuration {}", path.display()),
            None => "configuration from the environment".into(),
        })?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        if let Some(auth) = &self.auth {
            auth.check()?;
        }
        if self.db_threads == Some(0) {
            bail!("db_threads: set at least 1 (or leave it out: half the cores)");
        }
        let e = &self.evidence;
        if e.max_period_days == 0 || e.max_rows == 0 || e.timeout_secs == 0 || e.removal_deadline_hours == 0 {
            bail!("evidence: max_period_days, max_rows, timeout_secs and removal_deadline_hours must be above 0");
        }
        crate::evidence::expected_streams(&e.expected_streams).context("evidence.expected_streams")?;
        self.inventory.check()?;
        self.retention.check().context("retention")?;
        match &self.lake {
            None if self.retention != crate::lake::evict::Retention::default() => bail!(
                "[retention] is set but [lake] is not: rows leave the database only once archived; \
                 set lake.url (a directory or an Azure Storage URL)"
            ),
            Some(lake) if lake.url.trim().is_empty() || lake.interval_minutes == 0 => {
                bail!("lake: url must be set and interval_minutes above 0")
            }
            Some(lake) if lake.credential == CredentialKind::ConnectionString => bail!(
                "lake.credential: a connection string is not an identity; Azurite's key comes from TOKENTRAIL_LAKE_ACCOUNT_KEY"
            ),
            _ => {}
        }
        // Reads the alert secrets too, so a missing one stops the start, with its name.
        self.alerts.resolve(&format!("http://{}", self.http.listen))?;
        let Some(hubs) = &self.eventhubs else { return Ok(()) };
        if hubs.hubs.is_empty() || hubs.hubs.iter().any(|h| h.trim().is_empty()) {
            bail!(
                "eventhubs.hubs: list at least one event hub name, e.g. hubs = [\"insights-logs-dataplanerequests\"]"
            );
        }
        if hubs.credential != CredentialKind::ConnectionString && hubs.namespace.as_deref().is_none_or(str::is_empty) {
            bail!("eventhubs.namespace: set the fully qualified namespace, e.g. \"contoso.servicebus.windows.net\"");
        }
        let zero = [
            hubs.prefetch as u64,
            hubs.commit_rows as u64,
            hubs.max_wait_ms,
            hubs.lag_interval_secs,
            hubs.stall_timeout_secs,
        ];
        if zero.contains(&0) {
            bail!(
                "eventhubs: prefetch, commit_rows, max_wait_ms, stall_timeout_secs and lag_interval_secs must be above 0"
            );
        }
        if let Some(endpoint) = &hubs.endpoint
            && !(endpoint.starts_with("amqp://") || endpoint.starts_with("amqps://"))
        {
            bail!("eventhubs.endpoint: {endpoint:?} must start with amqp:// or amqps://");
        }
        if let Some(balance) = &hubs.balance {
            if let Some(hub) = balance.hubs.iter().find(|h| !hubs.hubs.contains(h)) {
                bail!("eventhubs.balance.hubs: {hub:?} is not one of eventhubs.hubs ({})", hubs.hubs.join(", "));
            }
            if balance.hubs.is_empty() {
                bail!("eventhubs.balance.hubs: name the hubs whose partitions the instances share");
            }
            if balance.checkpoint_interval_ms == 0 {
                bail!("eventhubs.balance.checkpoint_interval_ms must be above 0");
            }
            if balance.segment_interval_ms == 0 {
                bail!("eventhubs.balance.segment_interval_ms must be above 0");
            }
            if balance.shared_lake.as_deref().is_some_and(|l| l.trim().is_empty()) {
                bail!(
                    "eventhubs.balance.shared_lake is empty: give a directory or an Azure Storage URL, or leave it out"
                );
            }
            if balance.update_interval_ms == 0 || balance.expiry_ms <= balance.update_interval_ms {
                bail!(
                    "eventhubs.balance: update_interval_ms must be above 0 and expiry_ms above it (got {} and {})",
                    balance.update_interval_ms,
                    balance.expiry_ms
                );
            }
            if !hubs.partitions.is_empty() {
                bail!(
                    "eventhubs.partitions: a balanced hub's partitions are shared by ownership; leave partitions out"
                );
            }
            let url = url::Url::parse(balance.checkpoint_store.trim()).with_context(|| {
                format!("eventhubs.balance.checkpoint_store: {:?} is not a URL", balance.checkpoint_store)
            })?;
            if !matches!(url.scheme(), "https" | "http") {
                bail!(
                    "eventhubs.balance.checkpoint_store: give https://<account>.blob.core.windows.net/<container> \
                     (http only for Azurite), not {url}"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ServeConfig> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("tokentrail.toml");
        std::fs::write(&path, text)?;
        ServeConfig::load(Some(&path))
    }

    #[test]
    fn a_full_file_reads() {
        let config = load(
            r#"
            db = "x.duckdb"
            [http]
            listen = "0.0.0.0:9000"
            [eventhubs]
            namespace = "contoso.servicebus.windows.net"
            hubs = ["insights-logs-dataplanerequests", "insights-logs-signinlogs"]
            partitions = ["0", "2"]
            start = "2026-11-01T00:00:00Z"
            credential = "managed_identity"
            managed_identity_client_id = "11111111-2222-3333-4444-555555555555"
            "#,
        )
        .unwrap();
        let hubs = config.eventhubs.unwrap();
        assert_eq!(config.http.listen.port(), 9000);
        assert_eq!(hubs.hubs.len(), 2);
        assert_eq!(hubs.consumer_group, "$Default");
        assert_eq!(hubs.start, StartAt::Time(1_793_491_200_000_000));
        assert_eq!(hubs.credential, CredentialKind::ManagedIdentity);
        assert_eq!(hubs.prefetch, 100);
    }

    #[test]
    fn a_balance_section_is_checked_with_what_to_fix() {
        let base = "[eventhubs]\nhubs = [\"requests\", \"signins\"]\nnamespace = \"n\"\n[eventhubs.balance]\n";
        let store = "checkpoint_store = \"https://acct.blob.core.windows.net/checkpoints\"\n";
        let config = load(&format!("{base}hubs = [\"requests\"]\n{store}")).unwrap();
        let balance = config.eventhubs.unwrap().balance.unwrap();
        assert_eq!(
            (balance.consumer_group.as_str(), balance.update_interval_ms, balance.expiry_ms),
            ("$Default", 10_000, 60_000)
        );
        let refused = |text: String, needle: &str| {
            let e = format!("{:#}", load(&text).unwrap_err());
            assert!(e.contains(needle), "{needle:?} not in {e}");
        };
        refused(format!("{base}hubs = [\"other\"]\n{store}"), "\"other\" is not one of eventhubs.hubs");
        refused(format!("{base}hubs = []\n{store}"), "name the hubs");
        refused(
            format!("{base}hubs = [\"requests\"]\n{store}expiry_ms = 500\nupdate_interval_ms = 500\n"),
            "expiry_ms above it",
        );
        refused(format!("{base}hubs = [\"requests\"]\n{store}lease_ms = 5\n"), "lease_ms");
        refused(format!("{base}hubs = [\"requests\"]\n{store}checkpoint_interval_ms = 0\n"), "checkpoint_interval_ms");
        refused(format!("{base}hubs = [\"requests\"]\n{store}segment_interval_ms = 0\n"), "segment_interval_ms");
        refused(format!("{base}hubs = [\"requests\"]\n{store}shared_lake = \" \"\n"), "shared_lake is empty");
        refused(format!("{base}hubs = [\"requests\"]\n"), "checkpoint_store");
        refused(format!("{base}hubs = [\"requests\"]\ncheckpoint_store = \"ftp://x/y\"\n"), "https://<account>");
        refused(format!("{base}hubs = [\"requests\"]\ncheckpoint_store = \"not a url\"\n"), "is not a URL");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let e =
            load("[eventhubs]\nhubs = [\"h\"]\nnamespace = \"n\"\nconsumergroup = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("consumergroup") && e.contains("consumer_group"), "{e}");
        let e = load("dbpath = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("dbpath"), "{e}");
    }

    #[test]
    fn bad_values_say_what_to_fix() {
        let e = load("[eventhubs]\nhubs = [\"h\"]\nnamespace = \"n\"\nstart = \"yesterday\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("RFC 3339"), "{e:#}");
        let e = load("[eventhubs]\nhubs = []\nnamespace = \"n\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("at least one event hub"), "{e:#}");
        let e = load("[eventhubs]\nhubs = [\"h\"]\n").unwrap_err();
        assert!(format!("{e:#}").contains("eventhubs.namespace"), "{e:#}");
        let e = load("[eventhubs]\nhubs = [\"h\"]\nnamespace = \"n\"\ncredential = \"password\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("managed_identity"), "{e:#}");
        let e = load("db_threads = 0\n").unwrap_err();
        assert!(format!("{e:#}").contains("db_threads: set at least 1"), "{e:#}");
        let e = load("[inventory]\nenabled = true\ninterval_hours = 0\n").unwrap_err();
        assert!(format!("{e:#}").contains("inventory.interval_hours"), "{e:#}");
        let e = load("[inventory]\nsubscriptions = [\"prod\"]\n").unwrap_err();
        assert!(format!("{e:#}").contains("\"prod\" is not a subscription id"), "{e:#}");
        let e = load("[inventory]\nendpoint = \"management.azure.com\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("inventory.endpoint"), "{e:#}");
        let e = load("[evidence]\nexpected_streams = [\"orders-prod\"]\n").unwrap_err();
        assert!(
            format!("{e:#}").contains("evidence.expected_streams") && format!("{e:#}").contains("cosmos:<account>"),
            "{e:#}"
        );
        let streams = load("[evidence]\nexpected_streams = [\"cosmos:Orders\", \"signins:SignInLogs\"]\n").unwrap();
        assert_eq!(streams.evidence.expected_streams.len(), 2);
        let e = load("[inventory]\nintervall_hours = 3\n").unwrap_err();
        assert!(format!("{e:#}").contains("intervall_hours"), "{e:#}");
        let off = load("").unwrap().inventory;
        assert!(!off.enabled && off.interval_hours == 24 && off.subscriptions.is_empty());
        let e = ServeConfig::load(Some(Path::new("/nonexistent/tokentrail.toml"))).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
