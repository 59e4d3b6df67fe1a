//! Azure Event Hubs: the production source, on the official `azure_messaging_eventhubs`
//! client, authenticated with an Entra ID identity.
//!
//! One `ConsumerClient` per hub and one receiver task per partition (a balanced hub's
//! partitions: those the `EventProcessor` hands this instance, [`balanced`]) feed a bounded
//! channel; a batcher on the ingest thread cuts the events into [`Chunk`]s for the
//! spine's pipeline ([`crate::ingest::run`]). Each chunk carries the checkpoint of
//! every partition it holds events of (sequence number, offset, enqueued time), and
//! the pipeline commits those checkpoints in the same DuckDB transaction as the rows.
//! A partition's id is `eventhubs:<namespace>/<hub>/<consumer group>/<partition>`.
//!
//! Exactly once:
//! - On start each partition resumes right after its committed sequence number, or
//!   at the configured start when nothing is committed.
//! - After a receive error a receiver is reopened, with backoff, right after the
//!   last event it passed on. The client may also recover a link by itself and
//!   deliver again from where the link first started; a receiver drops every event
//!   at or below the last sequence number it passed on, so nothing is stored twice.
//! - A stream that started again is noticed, not skipped: a hub deleted and created
//!   again (or the emulator restarted) numbers its events from 0, so "after the
//!   committed sequence number" would skip the new events up to it. On (re)opening, a
//!   receiver checks that the partition's last enqueued sequence number is not below
//!   what it committed, and reads the committed event itself again (inclusive start) to
//!   check it is the same event (offset and enqueued time). If not, it stores a
//!   `TokenTrailSourceReset` record (a `raw_events` row; the `source_reset` rule raises
//!   it) whose checkpoint moves the partition to the start of the new stream (or its
//!   end: `on_reset`), in the same commit. Events that expired unread (the first event
//!   after the committed one is further on) are recorded the same way.
//!
//! Memory is bounded whatever the backlog: the client prefetches `prefetch` events
//! per partition, the channel holds at most [`CHANNEL_BYTES`] of event bodies (a
//! receiver waits for room: backpressure reaches the hub through link credit), and
//! the pipeline holds at most a few chunks and two commits of rows.

mod balanced;
pub mod lease;
mod segments;

use crate::config::{CONNECTION_STRING_ENV, CredentialKind, EventHubsConfig, OnReset, StartAt};
use crate::metrics::{Metrics, PartitionLabels};
use crate::record::Origin;
use crate::source::chunk::{Chunk, Rejected, Unit, Units};
use crate::store::{Checkpoint, SourceKind, Store};
use anyhow::{Context, Result, anyhow, bail};
use azure_core::credentials::TokenCredential;
use azure_core_amqp::message::AmqpMessageBody;
use azure_messaging_eventhubs::models::ReceivedEventData;
use azure_messaging_eventhubs::{ConsumerClient, OpenReceiverOptions, ProducerClient, StartLocation, StartPosition};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// Event bodies waiting in the channel between the receivers and the batcher.
pub const CHANNEL_BYTES: usize = 32 << 20;
/// DuckDB writer lanes for the stream: one. A second lane holds a second open commit in
/// DuckDB's memory, close to `serve`'s 1 GiB budget, and the stream's pace is set by the
/// senders, not by the writer (BENCHMARKS.md, design measurements).
pub const LANES: usize = 1;

/// A chunk is cut at this many bytes of event bodies.
const CHUNK_BYTES: usize = 8 << 20;

/// Received events are committed once no other event came for this long (or
/// `max_wait_ms` after the first of them): the end of a burst is stored at once.
/// Shorter cut more commits under a row group (BENCHMARKS.md, design measurements).
pub const QUIET_FLUSH: Duration = Duration::from_millis(250);

/// The write-ahead log size at which `serve`'s DuckDB checkpoints. Commits under a row
/// group go through the log and can be larger than DuckDB's default of 16 MiB, which
/// checkpointed (recompressing the last row group) after each (BENCHMARKS.md, design
/// measurements).
pub const SERVE_CHECKPOINT_WAL: &str = "256MB";
/// Longest wait for one call to the service (connect, properties, close).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Backoff between reconnects: doubles from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(30));

/// How the service reaches a namespace: an Entra ID credential, or (emulator and
/// local tests only) a connection string.
#[derive(Clone)]
pub enum Connect {
    Credential { namespace: String, credential: Arc<dyn TokenCredential> },
    ConnectionString { namespace: String, secret: String },
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never shows the secret.
        match self {
            Connect::Credential { namespace, .. } => write!(f, "Entra ID credential for {namespace}"),
            Connect::ConnectionString { namespace, .. } => write!(f, "connection string for {namespace}"),
        }
    }
}

impl Connect {
    /// The identity `config` names; `default` picks one from the environment.
    pub fn from_config(config: &EventHubsConfig) -> Result<Connect> {
        let kind = match config.credential {
            CredentialKind::Default => default_credential_kind(),
            kind => kind,
        };
        if kind == CredentialKind::ConnectionString {
            return Connect::from_connection_string_env(config.endpoint.as_deref());
        }
        let namespace = config.namespace.clone().context("eventhubs.namespace is not set")?;
        tracing::info!(credential = ?kind, namespace = %namespace, "authenticating to Event Hubs with Entra ID");
        let identity = Identity { credential: kind, ..Identity::of(config) };
        let credential = identity.credential()?;
        Ok(Connect::Credential { namespace, credential })
    }

    /// Reads [`CONNECTION_STRING_ENV`]. Refused unless it points at the emulator or
    /// this machine: production authenticates with an identity, never a shared key.
    pub fn from_connection_string_env(endpoint: Option<&str>) -> Result<Connect> {
        let secret = std::env::var(CONNECTION_STRING_ENV).ok().filter(|v| !v.trim().is_empty()).with_context(|| {
            format!("credential \"connection_string\" reads {CONNECTION_STRING_ENV}, which is not set")
        })?;
        let field = |name: &str| {
            secret.split(';').find_map(|part| {
                let (key, value) = part.split_once('=')?;
                key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
            })
        };
        let host = field("Endpoint")
            .and_then(|e| e.split("://").nth(1).map(|rest| rest.split(['/', ':']).next().unwrap_or("").to_owned()))
            .filter(|h| !h.is_empty())
            .with_context(|| format!("{CONNECTION_STRING_ENV} has no Endpoint=sb://HOST"))?;
        let emulator = field("UseDevelopmentEmulator").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let local = matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1") || endpoint.is_some();
        if !emulator && !local {
            bail!(
                "{CONNECTION_STRING_ENV} points at {host}: connection strings are accepted only for the emulator \
                 (UseDevelopmentEmulator=true) or a local endpoint; use an Entra ID credential for Azure"
            );
        }
        tracing::warn!(host = %host, "authenticating to Event Hubs with a connection string (emulator/testing only)");
        Ok(Connect::ConnectionString { namespace: host, secret })
    }

    pub fn namespace(&self) -> &str {
        match self {
            Connect::Credential { namespace, .. } | Connect::ConnectionString { namespace, .. } => namespace,
        }
    }

    /// The AMQP endpoint to dial instead of `amqps://<namespace>`, if any. The emulator
    /// speaks plain AMQP on 5672 (or the port its connection string names).
    fn endpoint(&self, configured: Option<&str>) -> Option<String> {
        if let Some(endpoint) = configured {
            return Some(endpoint.to_owned());
        }
        match self {
            Connect::ConnectionString { secret, namespace }
                if secret.to_ascii_lowercase().contains("usedevelopmentemulator=true") =>
            {
                let port = secret
                    .split(';')
                    .find_map(|p| p.trim().strip_prefix("Endpoint=").and_then(|e| e.rsplit_once(':')))
                    .and_then(|(_, port)| port.trim_end_matches('/').parse::<u16>().ok())
                    .unwrap_or(5672);
                Some(format!("amqp://{namespace}:{port}"))
            }
            _ => None,
        }
    }

    pub async fn consumer(&self, hub: &str, consumer_group: &str, endpoint: Option<&str>) -> Result<ConsumerClient> {
        let mut builder = ConsumerClient::builder().with_consumer_group(consumer_group.to_owned());
        if let Some(endpoint) = self.endpoint(endpoint) {
            builder = builder.with_custom_endpoint(endpoint);
        }
        let client = match self {
            Connect::Credential { namespace, credential } => {
                builder.open(namespace, hub.to_owned(), credential.clone()).await
            }
            Connect::ConnectionString { secret, .. } => builder.open_with_connection_string(secret, Some(hub)).await,
        };
        client.map_err(|e| anyhow!("opening a consumer for hub {hub} on {}: {e}", self.namespace()))
    }

    pub async fn producer(&self, hub: &str, endpoint: Option<&str>) -> Result<ProducerClient> {
        let mut builder = ProducerClient::builder();
        if let Some(endpoint) = self.endpoint(endpoint) {
            builder = builder.with_custom_endpoint(endpoint);
        }
        let client = match self {
            Connect::Credential { namespace, credential } => builder.open(namespace, hub, credential.clone()).await,
            Connect::ConnectionString { secret, .. } => builder.open_with_connection_string(secret, Some(hub)).await,
        };
        client.map_err(|e| anyhow!("opening a producer for hub {hub} on {}: {e}", self.namespace()))
    }
}

/// An Entra ID identity as configured: the kind (`default` picks one from the
/// environment), and the ids some kinds need. `[eventhubs]` and `[inventory]` both name one.
#[derive(Debug, Clone)]
pub struct Identity {
    pub credential: CredentialKind,
    pub managed_identity_client_id: Option<String>,
    /// Default `AZURE_TENANT_ID`.
    pub tenant_id: Option<String>,
    /// Default `AZURE_CLIENT_ID`.
    pub client_id: Option<String>,
}

impl Identity {
    /// The `[eventhubs]` identity (also the checkpoint store's and the shared lake's).
    pub fn of(config: &EventHubsConfig) -> Identity {
        Identity {
            credential: config.credential,
            managed_identity_client_id: config.managed_identity_client_id.clone(),
            tenant_id: config.tenant_id.clone(),
            client_id: config.client_id.clone(),
        }
    }

    /// The credential (built, not yet used). A connection string is not an identity.
    pub fn credential(&self) -> Result<Arc<dyn TokenCredential>> {
        let kind = match self.credential {
            CredentialKind::Default => default_credential_kind(),
            kind => kind,
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let tenant = self.tenant_id.clone().or_else(|| env("AZURE_TENANT_ID"));
        let client = self.client_id.clone().or_else(|| env("AZURE_CLIENT_ID"));
        let need = |value: Option<String>, what: &str| {
            value.with_context(|| {
                format!("credential {kind:?} needs {what}: set it in the configuration or the environment")
            })
        };
        Ok(match kind {
            CredentialKind::ManagedIdentity => {
                use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
                let options = ManagedIdentityCredentialOptions {
                    user_assigned_id: self.managed_identity_client_id.clone().map(UserAssignedId::ClientId),
                    ..Default::default()
                };
                ManagedIdentityCredential::new(Some(options))?
            }
            CredentialKind::WorkloadIdentity => {
                use azure_identity::{WorkloadIdentityCredential, WorkloadIdentityCredentialOptions};
                let options =
                    WorkloadIdentityCredentialOptions { tenant_id: tenant, client_id: client, ..Default::default() };
                WorkloadIdentityCredential::new(Some(options))?
            }
            CredentialKind::ClientSecret => {
                let secret = need(env("AZURE_CLIENT_SECRET"), "AZURE_CLIENT_SECRET")?;
                let tenant = need(tenant, "tenant_id (or AZURE_TENANT_ID)")?;
                let client = need(client, "client_id (or AZURE_CLIENT_ID)")?;
                azure_identity::ClientSecretCredential::new(&tenant, client, secret.into(), None)?
            }
            CredentialKind::ClientCertificate => {
                use azure_identity::{ClientCertificateCredential, ClientCertificateCredentialOptions};
                let path =
                    need(env("AZURE_CLIENT_CERTIFICATE_PATH"), "AZURE_CLIENT_CERTIFICATE_PATH (a PKCS #12 file)")?;
                let bytes = std::fs::read(&path).with_context(|| format!("reading the client certificate {path}"))?;
                let options = ClientCertificateCredentialOptions {
                    password: env("AZURE_CLIENT_CERTIFICATE_PASSWORD").map(Into::into),
                    ..Default::default()
                };
                let tenant = need(tenant, "tenant_id (or AZURE_TENANT_ID)")?;
                let client = need(client, "client_id (or AZURE_CLIENT_ID)")?;
                ClientCertificateCredential::new(tenant, client, bytes.into(), Some(options))?
            }
            CredentialKind::AzureCli => azure_identity::AzureCliCredential::new(None)?,
            CredentialKind::ConnectionString => bail!("a connection string is not an Entra ID identity"),
            CredentialKind::Default => unreachable!("resolved above"),
        })
    }
}

/// What `credential = "default"` means: the identity the environment was set up for.
fn default_credential_kind() -> CredentialKind {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("AZURE_FEDERATED_TOKEN_FILE") {
        CredentialKind::WorkloadIdentity
    } else if set("AZURE_CLIENT_SECRET") {
        CredentialKind::ClientSecret
    } else if set("AZURE_CLIENT_CERTIFICATE_PATH") {
        CredentialKind::ClientCertificate
    } else if set("IDENTITY_ENDPOINT") || set("MSI_ENDPOINT") || !on_path("az") {
        // App Service, Functions, Container Apps and Arc set IDENTITY_ENDPOINT; a VM
        // or AKS node without it still has IMDS. A machine with the Azure CLI and
        // none of these is a developer's.
        CredentialKind::ManagedIdentity
    } else {
        CredentialKind::AzureCli
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The checkpoint id of one partition.
pub fn source_id(namespace: &str, hub: &str, consumer_group: &str, partition: &str) -> String {
    format!("eventhubs:{namespace}/{hub}/{consumer_group}/{partition}")
}

/// A received event's body, read in place (the client's `event_data()` would copy it).
enum Body {
    /// One Data section, as Azure sends diagnostic logs (boxed: the event is large, and
    /// moves into the chunk's unit box anyway).
    Received(Box<ReceivedEventData>),
    /// Several Data sections, joined.
    Joined(Vec<u8>),
}

impl Body {
    /// None: the event has no Data section.
    fn of(event: ReceivedEventData) -> Option<Body> {
        match &event.raw_amqp_message().body {
            AmqpMessageBody::Binary(sections) if sections.len() == 1 => Some(Body::Received(Box::new(event))),
            AmqpMessageBody::Binary(sections) if !sections.is_empty() => Some(Body::Joined(sections.concat())),
            _ => None,
        }
    }
}

/// The event's enqueued time, microseconds since the epoch.
fn enqueued_us(event: &ReceivedEventData) -> Option<i64> {
    event.enqueued_time().and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_micros() as i64)
}

impl AsRef<[u8]> for Body {
    fn as_ref(&self) -> &[u8] {
        match self {
            Body::Received(event) => match &event.raw_amqp_message().body {
                AmqpMessageBody::Binary(sections) => sections.first().map_or(&[], Vec::as_slice),
                _ => &[],
            },
            Body::Joined(bytes) => bytes,
        }
    }
}

/// One received event on its way to a chunk.
struct Event {
    partition: usize,
    sequence: i64,
    offset: Option<String>,
    enqueued_us: Option<i64>,
    body: Option<Body>,
    /// Room in the channel, given back when the event moves into a chunk.
    _room: OwnedSemaphorePermit,
}

/// What the service knows of one partition, for `/api/status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PartitionStatus {
    pub hub: String,
    pub partition: String,
    /// `broadcast` (this instance reads the whole hub) or `balanced` (the instances of
    /// a consumer group share its partitions).
    pub role: String,
    /// Read by this instance now (always, for a broadcast hub).
    pub owned: bool,
    /// A balanced partition's owner (an instance's owner id), if its ownership is live.
    pub owner: Option<String>,
    /// A balanced partition's checkpoint blob: how far its owners have stored it.
    pub checkpointed_sequence: Option<i64>,
    pub received_sequence: Option<i64>,
    pub committed_sequence: Option<i64>,
    pub last_enqueued_sequence: Option<i64>,
    pub lag: Option<i64>,
    pub receive_errors: u64,
    pub last_error: Option<String>,
    /// Times the partition's stream was found to have started again, or to have lost
    /// events to retention before they were read.
    pub resets: u64,
    pub last_reset: Option<String>,
    /// A balanced partition's end in the shared lake: the last sequence number a segment
    /// claims (this instance's or another's).
    pub lake_sequence: Option<i64>,
    /// Events enqueued and not yet in the shared lake (whoever reads the partition).
    pub lake_lag: Option<i64>,
    /// When the oldest rows this instance committed and has not yet put in the shared
    /// lake were committed (none: all are there).
    pub lake_pending_since: Option<chrono::DateTime<chrono::Utc>>,
    pub lake_error: Option<String>,
}

/// The shared lake of the balanced hubs, as this instance writes to it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SharedLakeStatus {
    /// Where it is (no credential).
    pub location: String,
    /// This instance's name in it.
    pub instance: String,
    /// How often segments are written.
    pub segment_interval_ms: u64,
    /// The lag it should stay under: committed rows reach the lake within this.
    pub lag_target_seconds: u64,
    /// Segments this instance claimed, and found claimed by another.
    pub segments_written: u64,
    pub segments_theirs: u64,
    pub last_pass: Option<chrono::DateTime<chrono::Utc>>,
}

/// An instance of a balanced hub's consumer group and the partitions it owns.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceStatus {
    pub hub: String,
    pub owner_id: String,
    /// This instance.
    pub this_instance: bool,
    pub partitions: Vec<String>,
}

/// Live state of the Event Hubs source, shared with the HTTP side.
#[derive(Default)]
pub struct HubsStatus {
    pub partitions: Mutex<Vec<PartitionStatus>>,
    /// The instances sharing each balanced hub, from its ownership blobs.
    pub instances: Mutex<Vec<InstanceStatus>>,
    /// When every partition was last found with nothing left to read (all enqueued events
    /// committed): the hubs had delivered everything up to then. Detection measures a
    /// silence of every log stream up to it (`source_clock`).
    pub caught_up: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    pub shared_lake: Mutex<Option<SharedLakeStatus>>,
    /// The rules lease (with a shared lake): who runs the rules over everyone's counts.
    pub rules_lease: Arc<lease::RulesLease>,
}

impl HubsStatus {
    fn update(&self, index: usize, change: impl FnOnce(&mut PartitionStatus)) {
        if let Ok(mut partitions) = self.partitions.lock()
            && let Some(p) = partitions.get_mut(index)
        {
            change(p);
            // A balanced partition is as far as its blob checkpoint says, when another
            // instance stored it further (read elsewhere now, or before it came here).
            let done = match p.checkpointed_sequence {
                Some(blob) => Some(p.committed_sequence.map_or(blob, |ours| ours.max(blob))),
                None => p.committed_sequence,
            };
            p.lag = match (p.last_enqueued_sequence, done) {
                (Some(last), Some(done)) => Some((last - done).max(0)),
                (Some(last), None) => Some(last + 1),
                _ => None,
            };
            p.lake_lag = match (p.last_enqueued_sequence, p.lake_sequence) {
                (Some(last), Some(in_lake)) => Some((last - in_lake).max(0)),
                _ => None,
            };
        }
    }

    /// Changes the status of `hub`'s partition `partition`.
    fn update_named(&self, hub: &str, partition: &str, change: impl FnOnce(&mut PartitionStatus)) {
        let index =
            self.partitions.lock().ok().and_then(|p| p.iter().position(|p| p.hub == hub && p.partition == partition));
        if let Some(index) = index {
            self.update(index, change);
        }
    }

    pub fn shared_lake(&self) -> Option<SharedLakeStatus> {
        self.shared_lake.lock().ok().and_then(|s| s.clone())
    }

    pub fn snapshot(&self) -> Vec<PartitionStatus> {
        self.partitions.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn instances(&self) -> Vec<InstanceStatus> {
        self.instances.lock().map(|i| i.clone()).unwrap_or_default()
    }
}

/// One partition the source reads.
struct Partition {
    hub: usize,
    id: String,
    source_id: String,
    labels: PartitionLabels,
    committed: Option<i64>,
    /// The committed event, to check it is still there when reading resumes.
    resume: Option<Resume>,
    /// The balanced hub it belongs to (an index into the balancers), if balanced.
    balanced: Option<usize>,
}

/// The last event stored of a partition: where reading resumes, and what it must find
/// there if the stream is the one it was.
#[derive(Debug, Clone)]
struct Resume {
    sequence: i64,
    offset: Option<String>,
    enqueued_us: Option<i64>,
}

/// The configured hubs' partitions being received, each from after its checkpoint in
/// `store`: [`Stream::chunks`] for the pipeline, [`Stream::committed`] to hear of each
/// commit, and [`Stream::receivers`] to stop at the end.
pub struct Stream {
    pub chunks: Batcher,
    pub committed: Committed,
    pub receivers: Receivers,
}

/// Connects to every hub (retrying until `cancel` fires: then `None`) and starts a
/// receiver per partition on `runtime`, and a thread per balanced hub.
pub fn open(
    store: &Arc<Store>,
    config: &EventHubsConfig,
    connect: &Connect,
    runtime: &tokio::runtime::Handle,
    cancel: &CancellationToken,
    status: &Arc<HubsStatus>,
    metrics: &Arc<Metrics>,
) -> Result<Option<Stream>> {
    let namespace = connect.namespace().to_owned();
    let endpoint = config.endpoint.as_deref();
    // The checkpoint store first: a bad one stops the start before anything is spawned.
    let blob = match &config.balance {
        Some(balance) => {
            let identity = Identity::of(config);
            let store = crate::source::blob_checkpoints::BlobCheckpointStore::parse(&balance.checkpoint_store, &|| {
                identity.credential()
            })
            .context("eventhubs.balance.checkpoint_store")?;
            Some(Arc::new(store))
        }
        None => None,
    };
    let shared_lake = match config.balance.as_ref().and_then(|b| b.shared_lake.as_deref()) {
        Some(text) => {
            let identity = Identity::of(config);
            // A segment that fails is written again next pass: no minutes of retries.
            let credential = move || identity.credential();
            let location =
                crate::lake::Location::parse_with_retry(text, &credential, crate::lake::Location::short_retry())
                    .context("eventhubs.balance.shared_lake")?;
            Some(crate::lake::Lake::new(location)?)
        }
        None => None,
    };
    // One client per hub; a hub that cannot be reached yet is retried, not fatal.
    let mut clients = Vec::new();
    let mut partitions = Vec::new();
    let mut shares = Vec::new();
    for (hub_index, hub) in config.hubs.iter().enumerate() {
        let balance = config.balance.as_ref().filter(|b| b.hubs.contains(hub));
        let group = balance.map_or(&config.consumer_group, |b| &b.consumer_group);
        let opened = runtime.block_on(retry(cancel, &format!("connecting to hub {hub}"), || async {
            let client = connect.consumer(hub, group, endpoint).await?;
            let ids = client
                .get_eventhub_properties()
                .await
                .map_err(|e| anyhow!("reading the properties of hub {hub}: {e}"))?
                .partition_ids;
            Ok((client, ids))
        }));
        let Some((client, ids)) = opened else { return Ok(None) };
        let chosen: Vec<String> = if config.partitions.is_empty() {
            ids.clone()
        } else {
            if let Some(missing) = config.partitions.iter().find(|p| !ids.contains(p)) {
                bail!("eventhubs.partitions: hub {hub} has no partition {missing:?} (it has {})", ids.join(", "));
            }
            config.partitions.clone()
        };
        let mut stored = std::collections::HashMap::new();
        let ids = chosen.clone();
        for id in chosen {
            let source_id = source_id(&namespace, hub, group, &id);
            let checkpoint = store.checkpoint(&source_id)?;
            let committed = checkpoint.as_ref().and_then(|c| c.sequence_number);
            if let Some(checkpoint) = checkpoint.clone().filter(|_| balance.is_some()) {
                stored.insert(id.clone(), checkpoint);
            }
            let resume = checkpoint.and_then(|c| {
                Some(Resume { sequence: c.sequence_number?, offset: c.event_offset, enqueued_us: c.event_time })
            });
            let labels = PartitionLabels { hub: hub.clone(), partition: id.clone() };
            let balanced = balance.map(|_| shares.len());
            partitions.push(Partition { hub: hub_index, id, source_id, labels, committed, resume, balanced });
        }
        if balance.is_some() {
            shares.push(Arc::new(balanced::Shared::new(hub, ids, stored, shared_lake.is_some())));
        }
        clients.push(Arc::new(client));
    }
    record_hub_roles(store, &namespace, config)?;
    *status.partitions.lock().map_err(|_| anyhow!("status lock poisoned"))? = partitions
        .iter()
        .map(|p| PartitionStatus {
            hub: config.hubs[p.hub].clone(),
            partition: p.id.clone(),
            role: if p.balanced.is_some() { "balanced" } else { "broadcast" }.into(),
            owned: p.balanced.is_none(),
            committed_sequence: p.committed,
            ..Default::default()
        })
        .collect();
    tracing::info!(namespace = %namespace, hubs = ?config.hubs, partitions = partitions.len(), consumer_group = %config.consumer_group, "streaming from Event Hubs");

    let (tx, rx) = mpsc::channel::<Event>(4096);
    let room = Arc::new(Semaphore::new(CHANNEL_BYTES >> 10));
    let receivers = cancel.child_token();
    let finish = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut templates = vec![std::collections::HashMap::new(); shares.len()];
    for (index, partition) in partitions.iter().enumerate() {
        let balance = config.balance.as_ref().filter(|_| partition.balanced.is_some());
        let receiver = Receiver {
            connect: connect.clone(),
            hub: config.hubs[partition.hub].clone(),
            consumer_group: balance.map_or(&config.consumer_group, |b| &b.consumer_group).clone(),
            endpoint: config.endpoint.clone(),
            stall: Duration::from_secs(config.stall_timeout_secs),
            index,
            id: partition.id.clone(),
            labels: partition.labels.clone(),
            last: partition.committed,
            verify: partition.resume.clone().filter(|r| r.sequence >= 0),
            last_time: partition.resume.as_ref().and_then(|r| r.enqueued_us),
            last_offset: partition.resume.as_ref().and_then(|r| r.offset.clone()),
            stream: partition.source_id.clone(),
            on_reset: config.on_reset,
            start: config.start.clone(),
            prefetch: config.prefetch,
            tx: tx.clone(),
            room: room.clone(),
            cancel: receivers.clone(),
            status: status.clone(),
            metrics: metrics.clone(),
        };
        match partition.balanced {
            Some(share) => {
                templates[share].insert(partition.id.clone(), receiver);
            }
            None => tasks.push(runtime.spawn(receiver.run())),
        }
    }
    drop(tx);
    let mut balancers = Vec::new();
    if let (Some(balance), Some(blob)) = (&config.balance, blob.clone()) {
        for (shared, templates) in shares.iter().zip(templates) {
            let balancer = balanced::Balancer {
                shared: shared.clone(),
                blob: blob.clone(),
                config: balance.clone(),
                connect: connect.clone(),
                endpoint: config.endpoint.clone(),
                start: config.start.clone(),
                prefetch: config.prefetch,
                templates,
                cancel: receivers.clone(),
                finish: finish.clone(),
                status: status.clone(),
            };
            balancers.push(balancer.spawn()?);
        }
    }
    let segments = match (shared_lake, &config.balance) {
        (Some(lake), Some(balance)) => {
            let instance = crate::sys::instance_name(store.path());
            if let Some(blob) = &blob {
                let name = lease::blob_name(&namespace, &balance.consumer_group);
                let run =
                    lease::run(blob.clone(), name, instance.clone(), status.rules_lease.clone(), receivers.clone());
                tasks.push(runtime.spawn(run));
            }
            *status.shared_lake.lock().map_err(|_| anyhow!("status lock poisoned"))? = Some(SharedLakeStatus {
                location: lake.describe().to_owned(),
                instance: instance.clone(),
                segment_interval_ms: balance.segment_interval_ms,
                lag_target_seconds: lag_target(balance.segment_interval_ms),
                ..Default::default()
            });
            let hubs = shares
                .iter()
                .map(|s| {
                    (
                        s.clone(),
                        crate::lake::segments::Segments::new(&format!("eventhubs:{namespace}/{}", s.hub), &instance),
                    )
                })
                .collect();
            let writer = segments::Writer {
                store: store.clone(),
                lake,
                hubs,
                interval: Duration::from_millis(balance.segment_interval_ms),
                status: status.clone(),
                metrics: metrics.clone(),
            };
            tracing::info!(lake = %writer.lake.describe(), instance = %instance, "balanced partitions go to the shared lake in segments");
            Some(writer.spawn()?)
        }
        _ => None,
    };
    let lag = runtime.spawn(watch_lag(
        clients.clone(),
        partitions.iter().map(|p| (p.hub, p.id.clone(), p.labels.clone())).collect(),
        Duration::from_secs(config.lag_interval_secs),
        receivers.clone(),
        status.clone(),
        metrics.clone(),
    ));

    let origins: Vec<Origin> = partitions
        .iter()
        .map(|p| Origin {
            source: format!("eventhubs:{namespace}/{}", config.hubs[p.hub]),
            partition: Some(p.id.clone()),
            ..Origin::default()
        })
        .collect();
    let commits = Arc::new(CommitClock::default());
    let batcher = Batcher {
        rx,
        runtime: runtime.clone(),
        cancel: cancel.clone(),
        max_wait: Duration::from_millis(config.max_wait_ms),
        pending_since: None,
        last_event: None,
        commits: commits.clone(),
        origins,
        source_ids: partitions.iter().map(|p| p.source_id.clone()).collect(),
        finished: false,
    };
    let committed = Committed {
        partitions: partitions
            .into_iter()
            .map(|p| {
                let share = p.balanced.map(|i| shares[i].clone());
                (p.source_id, p.labels, share)
            })
            .collect(),
        commits,
        status: status.clone(),
        metrics: metrics.clone(),
    };
    let receivers = Receivers { cancel: receivers, finish, tasks, balancers, segments, lag, runtime: runtime.clone() };
    Ok(Some(Stream { chunks: batcher, committed, receivers }))
}

/// The shared lake's lag target: two segment intervals and a minute to write them.
pub fn lag_target(segment_interval_ms: u64) -> u64 {
    2 * segment_interval_ms.div_ceil(1000) + 60
}

/// Stores each hub's role (`hub_roles`), which the `balanced_hub_signins` rule reads: a
/// balanced hub that carries sign-ins gives each instance only part of them.
fn record_hub_roles(store: &Store, namespace: &str, config: &EventHubsConfig) -> Result<()> {
    let connection = store.connection()?;
    let tx = connection.unchecked_transaction()?;
    tx.execute("DELETE FROM hub_roles", [])?;
    for hub in &config.hubs {
        let balanced = config.balance.as_ref().is_some_and(|b| b.hubs.contains(hub));
        let role = if balanced { "balanced" } else { "broadcast" };
        tx.execute(
            "INSERT INTO hub_roles (source, hub, role, updated_at) VALUES (?, ?, ?, now())",
            duckdb::params![format!("eventhubs:{namespace}/{hub}"), hub, role],
        )?;
    }
    tx.commit().context("recording the hubs' roles")?;
    Ok(())
}

/// Hears of each commit: the partitions' committed positions go to the status page and
/// the metrics, and the batcher learns when the last commit was.
pub struct Committed {
    /// Each partition's source id and labels, in the order of [`HubsStatus`], and its
    /// balanced hub's share, if balanced (its blob checkpoint follows each commit).
    partitions: Vec<(String, PartitionLabels, Option<Arc<balanced::Shared>>)>,
    commits: Arc<CommitClock>,
    status: Arc<HubsStatus>,
    metrics: Arc<Metrics>,
}

impl Committed {
    pub fn record(&self, receipt: &crate::store::BatchReceipt, checkpoints: &[Checkpoint]) {
        self.commits.mark();
        self.metrics.count_commit(&receipt.counts);
        for checkpoint in checkpoints {
            if let Some(index) = self.partitions.iter().position(|(id, ..)| *id == checkpoint.source_id) {
                let (_, labels, share) = &self.partitions[index];
                let sequence = checkpoint.sequence_number;
                self.status.update(index, |p| p.committed_sequence = sequence);
                if let Some(sequence) = sequence {
                    self.metrics.committed_sequence.get_or_create(labels).set(sequence);
                }
                if let Some(share) = share {
                    share.committed(&labels.partition, checkpoint);
                    if share.segmenting() {
                        let now = chrono::Utc::now();
                        self.status.update(index, |p| {
                            p.lake_pending_since.get_or_insert(now);
                        });
                    }
                }
            }
        }
        tracing::debug!(
            batch = receipt.batch_id,
            rows = receipt.counts.total(),
            partitions = checkpoints.len(),
            "committed"
        );
    }
}

/// The receiver tasks, the balanced hubs' threads and the lag watcher.
pub struct Receivers {
    cancel: CancellationToken,
    /// Told once the pipeline has stopped: the balanced hubs write their last
    /// checkpoints and give up their partitions.
    finish: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    balancers: Vec<std::thread::JoinHandle<()>>,
    /// The shared lake's segment writer: its last pass comes before the last checkpoints.
    segments: Option<segments::Running>,
    lag: tokio::task::JoinHandle<()>,
    runtime: tokio::runtime::Handle,
}

impl Receivers {
    /// Stops them and waits until they have.
    pub fn stop(self) {
        self.cancel.cancel();
        self.runtime.block_on(async {
            for task in self.tasks {
                let _ = task.await;
            }
            let _ = self.lag.await;
        });
        // Segments first: a blob checkpoint never runs ahead of the shared lake.
        if let Some(segments) = self.segments {
            segments.finish();
        }
        self.finish.cancel();
        for balancer in self.balancers {
            let _ = balancer.join();
        }
    }
}

/// Calls `attempt` until it succeeds, with backoff; `None` if cancelled first.
async fn retry<T, F, Fut>(cancel: &CancellationToken, what: &str, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = BACKOFF.0;
    loop {
        match attempt().await {
            Ok(value) => return Some(value),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), retry_in = ?delay, "{what} failed");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(BACKOFF.1);
    }
}

/// Receives one partition and passes its events on, in order, once each.
///
/// Each receiver has its own client (AMQP connection), opened anew after any
/// error: a partition's failure or recovery never holds up another's. A balanced
/// partition's events come from the processor's client instead ([`balanced`]).
#[derive(Clone)]
struct Receiver {
    connect: Connect,
    hub: String,
    consumer_group: String,
    endpoint: Option<String>,
    /// Quiet this long while events wait in the partition: the link is stuck.
    stall: Duration,
    index: usize,
    id: String,
    labels: PartitionLabels,
    /// The last sequence number passed on (or committed, at start). Below 0: read the
    /// stream from its start (a reset moved it there).
    last: Option<i64>,
    /// The event reading resumes at, still to be checked (the first one received).
    verify: Option<Resume>,
    /// When the last event passed on (or committed) was enqueued, microseconds; and its offset.
    last_time: Option<i64>,
    last_offset: Option<String>,
    /// The partition's source id, for the records of resets.
    stream: String,
    on_reset: OnReset,
    start: StartAt,
    prefetch: u32,
    tx: mpsc::Sender<Event>,
    room: Arc<Semaphore>,
    cancel: CancellationToken,
    status: Arc<HubsStatus>,
    metrics: Arc<Metrics>,
}

impl Receiver {
    async fn run(mut self) {
        let mut delay = BACKOFF.0;
        let cancel = self.cancel.clone();
        while !cancel.is_cancelled() {
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                outcome = self.receive() => outcome,
            };
            match outcome {
                Ok(()) => return, // the batcher is gone: the service is stopping
                Err(error) => {
                    let message = format!("{error:#}");
                    tracing::warn!(hub = %self.labels.hub, partition = %self.id, error = %message, retry_in = ?delay, "receive failed; reconnecting");
                    self.note_error(message);
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(BACKOFF.1);
        }
    }

    fn note_error(&self, message: String) {
        self.metrics.receive_errors.get_or_create(&self.labels).inc();
        self.status.update(self.index, |p| {
            p.receive_errors += 1;
            p.last_error = Some(message);
        });
    }

    fn position(&self) -> StartPosition {
        if let Some(resume) = &self.verify {
            // The committed event itself, to check the stream is still the one it was.
            return StartPosition { location: StartLocation::SequenceNumber(resume.sequence), inclusive: true };
        }
        let location = match (&self.last, &self.start) {
            (Some(sequence), _) if *sequence < 0 => StartLocation::Earliest,
            (Some(sequence), _) => StartLocation::SequenceNumber(*sequence),
            (None, StartAt::Earliest) => StartLocation::Earliest,
            (None, StartAt::Latest) => StartLocation::Latest,
            (None, StartAt::Time(us)) => {
                StartLocation::EnqueuedTime(SystemTime::UNIX_EPOCH + Duration::from_micros((*us).max(0) as u64))
            }
        };
        // After a sequence number: exclusive. From a time: events at or after it.
        let inclusive = matches!(location, StartLocation::EnqueuedTime(_));
        StartPosition { location, inclusive }
    }

    /// Streams until an error (returned) or until the batcher hangs up (`Ok`).
    async fn receive(&mut self) -> Result<()> {
        let opening = self.connect.consumer(&self.hub, &self.consumer_group, self.endpoint.as_deref());
        let client =
            tokio::time::timeout(CALL_TIMEOUT, opening).await.map_err(|_| anyhow!("connecting timed out"))??;
        let outcome = self.receive_with(&client).await;
        if tokio::time::timeout(CALL_TIMEOUT, client.close()).await.is_err() {
            tracing::debug!(partition = %self.id, "closing the client timed out");
        }
        outcome
    }

    async fn last_enqueued(&self, client: &ConsumerClient) -> Result<i64> {
        let properties = tokio::time::timeout(CALL_TIMEOUT, client.get_partition_properties(&self.id))
            .await
            .map_err(|_| anyhow!("reading partition properties timed out"))?
            .map_err(|e| anyhow!("reading partition properties: {e}"))?;
        Ok(properties.last_enqueued_sequence_number)
    }

    /// Records that the stream is not the one read so far (`detail` says how) and moves
    /// the partition to the start of the new stream, or its end (`on_reset`): a
    /// `TokenTrailSourceReset` record goes through the pipeline like an event, so it
    /// commits with the checkpoint that moves the partition. `kind` is `reset` or
    /// `expired`; `resume_after` overrides where an `expired` record leaves the position.
    async fn reset(
        &mut self,
        client: &ConsumerClient,
        kind: &str,
        detail: String,
        resume_after: Option<i64>,
    ) -> Result<()> {
        let committed = self.last;
        let after = match (resume_after, self.on_reset) {
            (Some(sequence), _) => sequence,
            (None, OnReset::Earliest) => -1,
            (None, OnReset::Latest) => self.last_enqueued(client).await?,
        };
        let action = match (kind, after) {
            ("reset", -1) => "the new stream is read from its start".to_string(),
            ("reset", n) => format!("the new stream is read after sequence number {n} (on_reset = latest)"),
            _ => "reading goes on with the first event still there".to_string(),
        };
        tracing::error!(hub = %self.labels.hub, partition = %self.id, kind, committed = ?committed, detail = %detail, action = %action, "event stream started again or lost events");
        self.metrics.source_resets.get_or_create(&self.labels).inc();
        let summary = format!("{detail}; {action}");
        self.status.update(self.index, |p| {
            p.resets += 1;
            p.last_reset = Some(summary.clone());
        });
        let record = serde_json::json!({
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "category": "TokenTrailSourceReset",
            "operationName": "SourceReset",
            "properties": {
                "kind": kind,
                "stream": self.stream,
                "hub": self.labels.hub,
                "partition": self.id,
                "consumerGroup": self.consumer_group,
                "committedSequenceNumber": committed,
                "resumesAfterSequenceNumber": after,
                "detail": summary,
            }
        });
        let room = self.room.clone().acquire_many_owned(1).await?;
        let body = Some(Body::Joined(serde_json::to_vec(&record)?));
        let event =
            Event { partition: self.index, sequence: after, offset: None, enqueued_us: None, body, _room: room };
        self.tx.send(event).await.map_err(|_| anyhow!("the service is stopping"))?;
        self.last = Some(after);
        self.last_time = None;
        self.last_offset = None;
        self.verify = None;
        Ok(())
    }

    async fn receive_with(&mut self, client: &ConsumerClient) -> Result<()> {
        if self.last.is_none() && self.start == StartAt::Latest {
            // Pin "latest" to a sequence number now, so a reconnect before the first
            // event neither skips nor repeats anything.
            self.last = Some(self.last_enqueued(client).await?);
        }
        if let Some(committed) = self.last.filter(|c| *c >= 0) {
            let last = self.last_enqueued(client).await?;
            if last < committed {
                let detail = format!(
                    "partition {} of {} holds events up to sequence number {last}, below the {committed} already \
                     stored: the hub was recreated (or the emulator restarted) and its numbering began again",
                    self.id, self.labels.hub
                );
                self.reset(client, "reset", detail, None).await?;
            }
        }
        // Open at the last event passed on, inclusive: the first event received must be
        // that one (else the stream started again), and the client's own link recovery,
        // which reopens with the same start, delivers it again too.
        if let Some(last) = self.last.filter(|last| *last >= 0) {
            self.verify =
                Some(Resume { sequence: last, offset: self.last_offset.clone(), enqueued_us: self.last_time });
        }
        let options = OpenReceiverOptions {
            start_position: Some(self.position()),
            prefetch: Some(self.prefetch),
            ..Default::default()
        };
        let receiver = client
            .open_receiver_on_partition(self.id.clone(), Some(options))
            .await
            .map_err(|e| anyhow!("opening the receiver: {e}"))?;
        tracing::info!(hub = %self.labels.hub, partition = %self.id, after = ?self.last, "receiving");
        let outcome = self.forward(client, Box::pin(receiver.stream_events())).await;
        match tokio::time::timeout(CALL_TIMEOUT, receiver.close()).await {
            Ok(Err(error)) => tracing::debug!(partition = %self.id, error = %error, "closing the receiver"),
            Err(_) => tracing::debug!(partition = %self.id, "closing the receiver timed out"),
            Ok(Ok(())) => {}
        }
        outcome
    }

    /// Passes on the events of `events` (`client` answers partition properties).
    async fn forward(
        &mut self,
        client: &ConsumerClient,
        mut events: impl futures::Stream<Item = azure_messaging_eventhubs::Result<ReceivedEventData>> + Unpin,
    ) -> Result<()> {
        loop {
            let received = match tokio::time::timeout(self.stall, events.next()).await {
                Ok(Some(received)) => received,
                Ok(None) => return Err(StreamEnded.into()),
                Err(_) => {
                    // Quiet: fine if the partition is, a stuck link if events wait, a
                    // new stream if its numbering is below what was read.
                    let last = self.last_enqueued(client).await?;
                    if let Some(read) = self.last.filter(|read| last < *read) {
                        let detail = format!(
                            "partition {} of {} holds events up to sequence number {last}, below the {read} already \
                             read: the hub was recreated (or the emulator restarted) and its numbering began again",
                            self.id, self.labels.hub
                        );
                        self.reset(client, "reset", detail, None).await?;
                        bail!("the stream started again; reopening the receiver");
                    }
                    if last > self.last.unwrap_or(-1) {
                        bail!(
                            "stalled: events up to sequence {last} wait in the partition, none arrived in {:?}",
                            self.stall
                        );
                    }
                    continue;
                }
            };
            let event = received.map_err(|e| anyhow!("receiving: {e}"))?;
            let sequence = event.sequence_number().context("an event without x-opt-sequence-number")?;
            if let Some(expected) = self.verify.take() {
                let (offset, enqueued) = (event.offset().clone(), enqueued_us(&event));
                let same = |stored: &Option<String>, now: &Option<String>| stored.is_none() || stored == now;
                let same_time = expected.enqueued_us.is_none() || expected.enqueued_us == enqueued;
                if sequence == expected.sequence && (!same(&expected.offset, &offset) || !same_time) {
                    let detail = format!(
                        "partition {} of {}: the event at sequence number {sequence} is not the one stored \
                         (offset {:?}, enqueued {:?}; stored offset {:?}, enqueued {:?}): the hub was recreated and \
                         its numbering began again",
                        self.id, self.labels.hub, offset, enqueued, expected.offset, expected.enqueued_us
                    );
                    self.reset(client, "reset", detail, None).await?;
                    // Read again from where the reset moved the partition.
                    bail!("the stream started again; reopening the receiver");
                }
                if sequence > expected.sequence + 1 {
                    let detail = format!(
                        "partition {} of {}: events {}..{} expired (retention) before they were read",
                        self.id,
                        self.labels.hub,
                        expected.sequence + 1,
                        sequence - 1
                    );
                    self.reset(client, "expired", detail, Some(sequence - 1)).await?;
                }
            }
            if let Some(last) = self.last.filter(|last| sequence <= *last) {
                // Delivered again (the client recovered its link and started over), or
                // a new stream numbered from 0: an event delivered again was enqueued no
                // later than the last one read, since enqueued times only grow within a
                // partition.
                let enqueued = enqueued_us(&event);
                if let (Some(now), Some(then)) = (enqueued, self.last_time)
                    && now > then
                {
                    let detail = format!(
                        "partition {} of {}: event {sequence} was enqueued at {} µs, after event {last} (the last \
                         read, enqueued at {then} µs): the hub was recreated and its numbering began again",
                        self.id, self.labels.hub, now
                    );
                    self.reset(client, "reset", detail, None).await?;
                    bail!("the stream started again; reopening the receiver");
                }
                self.metrics.redelivered.get_or_create(&self.labels).inc();
                continue;
            }
            let (offset, enqueued_us) = (event.offset().clone(), enqueued_us(&event));
            let offset_passed = offset.clone();
            let body = Body::of(event);
            let kib = body.as_ref().map_or(1, |b| (b.as_ref().len() >> 10).max(1)).min(CHANNEL_BYTES >> 10);
            let room = self.room.clone().acquire_many_owned(kib as u32).await?;
            let event = Event { partition: self.index, sequence, offset, enqueued_us, body, _room: room };
            if self.tx.send(event).await.is_err() {
                return Ok(());
            }
            self.last = Some(sequence);
            self.last_time = enqueued_us;
            self.last_offset = offset_passed;
            self.status.update(self.index, |p| p.received_sequence = Some(sequence));
        }
    }
}

/// The client ended a partition's event stream: for a balanced partition, the processor
/// took it away (another instance claimed it), which is not a receive error.
#[derive(Debug)]
struct StreamEnded;

impl std::fmt::Display for StreamEnded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the event stream ended")
    }
}

impl std::error::Error for StreamEnded {}

/// Measures each partition's lag (last enqueued against committed) every `every`.
async fn watch_lag(
    clients: Vec<Arc<ConsumerClient>>,
    partitions: Vec<(usize, String, PartitionLabels)>,
    every: Duration,
    cancel: CancellationToken,
    status: Arc<HubsStatus>,
    metrics: Arc<Metrics>,
) {
    loop {
        let asked = chrono::Utc::now();
        let mut answered = true;
        for (index, (hub, id, labels)) in partitions.iter().enumerate() {
            match clients[*hub].get_partition_properties(id).await {
                Ok(properties) => {
                    let last = properties.last_enqueued_sequence_number;
                    metrics.last_enqueued_sequence.get_or_create(labels).set(last);
                    status.update(index, |p| p.last_enqueued_sequence = Some(last));
                }
                Err(error) => {
                    answered = false;
                    tracing::debug!(hub = %labels.hub, partition = %id, error = %error, "reading partition properties")
                }
            }
        }
        let snapshot = status.snapshot();
        if answered && !snapshot.is_empty() && snapshot.iter().all(|p| p.lag == Some(0)) {
            // Nothing was left to read when we asked: the hubs had delivered all they held.
            *status.caught_up.lock().unwrap_or_else(|p| p.into_inner()) = Some(asked);
        }
        for (index, p) in snapshot.iter().enumerate() {
            if let (Some(lag), Some((_, _, labels))) = (p.lag, partitions.get(index)) {
                metrics.lag_events.get_or_create(labels).set(lag);
                tracing::info!(hub = %p.hub, partition = %p.partition, committed = ?p.committed_sequence, last_enqueued = ?p.last_enqueued_sequence, lag, "partition lag");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// When the pipeline last committed (the writer thread marks it, the [`Batcher`] reads it).
#[derive(Default)]
struct CommitClock(Mutex<Option<Instant>>);

impl CommitClock {
    fn mark(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    fn last(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Cuts received events into chunks: at [`CHUNK_BYTES`], and with a flush (commit)
/// [`QUIET_FLUSH`] after the last event, or `max_wait` after the first event not yet
/// flushed or after the last commit if that came later (the pipeline also commits by
/// size, [`crate::store::COMMIT_ROWS`]).
/// Cuts received events into chunks: an iterator for the pipeline.
pub struct Batcher {
    rx: mpsc::Receiver<Event>,
    runtime: tokio::runtime::Handle,
    cancel: CancellationToken,
    max_wait: Duration,
    /// When the first event not yet flushed came.
    pending_since: Option<Instant>,
    /// When the last event came.
    last_event: Option<Instant>,
    commits: Arc<CommitClock>,
    origins: Vec<Origin>,
    source_ids: Vec<String>,
    finished: bool,
}

impl Batcher {
    /// The next event, `Ok(None)` when the source stops, `Err(())` at `deadline`.
    fn next_event(&mut self, deadline: Option<Instant>) -> Result<Option<Event>, ()> {
        let (rx, cancel) = (&mut self.rx, &self.cancel);
        self.runtime.block_on(async {
            let event = async {
                tokio::select! {
                    // Events already received are taken before a stop is noticed.
                    biased;
                    event = rx.recv() => event,
                    _ = cancel.cancelled() => None,
                }
            };
            match deadline {
                None => Ok(event.await),
                Some(deadline) => tokio::time::timeout_at(deadline.into(), event).await.map_err(|_| ()),
            }
        })
    }
}

impl Iterator for Batcher {
    type Item = Result<Chunk>;

    fn next(&mut self) -> Option<Result<Chunk>> {
        if self.finished {
            return None;
        }
        let mut bytes = 0;
        let mut units = Vec::new();
        let mut rejected = Vec::new();
        let mut positions: BTreeMap<usize, Checkpoint> = BTreeMap::new();
        let mut flush = false;
        while bytes < CHUNK_BYTES {
            // Flush once the stream has been quiet for QUIET_FLUSH, or max_wait after
            // the first pending event.
            let quiet = self.last_event.map(|last| last + QUIET_FLUSH);
            let deadline = self.pending_since.map(|since| quiet.map_or(since, |q| q.min(since + self.max_wait)));
            let event = match self.next_event(deadline) {
                Ok(Some(event)) => event,
                Ok(None) => {
                    self.finished = true;
                    flush = true;
                    break;
                }
                Err(()) => {
                    // Still streaming, and a commit by size since the first pending
                    // event took it (and maybe more): wait out `max_wait` from that
                    // commit instead, so a steady stream commits whole row groups, not
                    // a remainder each tick.
                    let streaming = quiet.is_some_and(|q| Instant::now() < q);
                    if let (true, Some(since), Some(committed)) = (streaming, self.pending_since, self.commits.last())
                        && committed > since
                    {
                        self.pending_since = Some(committed);
                        continue;
                    }
                    flush = true;
                    break;
                }
            };
            let now = Instant::now();
            self.pending_since.get_or_insert(now);
            self.last_event = Some(now);
            let mut origin = self.origins[event.partition].clone();
            origin.sequence = Some(event.sequence);
            match event.body {
                Some(body) => {
                    bytes += body.as_ref().len();
                    units.push((Box::new(body) as Unit, origin));
                }
                None => rejected
                    .push((origin, Rejected { raw: Vec::new(), size: 0, reason: "the event has no data body".into() })),
            }
            let mut checkpoint = Checkpoint::new(self.source_ids[event.partition].clone(), SourceKind::EventHubs);
            checkpoint.sequence_number = Some(event.sequence);
            checkpoint.event_offset = event.offset;
            checkpoint.event_time = event.enqueued_us;
            positions.insert(event.partition, checkpoint);
        }
        if flush {
            self.pending_since = None;
        }
        if positions.is_empty() && !flush {
            return None;
        }
        if positions.is_empty() && self.finished {
            return None;
        }
        let checkpoints = positions.into_values().collect();
        Some(Ok(Chunk {
            data: Default::default(),
            units: Units::Owned(units),
            rejected,
            checkpoints,
            flush,
            remaining: None,
            recycle: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core_amqp::{AmqpMessage, AmqpValue};

    fn received(body: AmqpMessageBody) -> ReceivedEventData {
        ReceivedEventData::from(AmqpMessage::builder().with_body(body).build())
    }

    #[test]
    fn a_body_is_read_in_place_or_joined() {
        let one = Body::of(received(AmqpMessageBody::Binary(vec![b"{\"records\":[]}".to_vec()]))).unwrap();
        assert!(matches!(one, Body::Received(_)), "one Data section is not copied");
        assert_eq!(one.as_ref(), b"{\"records\":[]}");
        let two = Body::of(received(AmqpMessageBody::Binary(vec![b"{\"rec".to_vec(), b"ords\":[]}".to_vec()])));
        assert_eq!(two.unwrap().as_ref(), b"{\"records\":[]}");
        assert!(Body::of(received(AmqpMessageBody::Binary(Vec::new()))).is_none());
        assert!(Body::of(received(AmqpMessageBody::Value(AmqpValue::String("x".into())))).is_none());
        assert!(Body::of(received(AmqpMessageBody::Empty)).is_none());
    }
}
