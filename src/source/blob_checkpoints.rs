//! Event Hubs partition ownership and checkpoints on Azure Blob Storage, in the layout
//! every Event Hubs SDK shares (Python `azure-eventhub-checkpointstoreblob`, .NET, Java,
//! Go), so processors written in any of them can share one consumer group:
//!
//! - `<namespace>/<hub>/<consumer group>/ownership/<partition>`: an empty block blob,
//!   metadata `ownerid`; claimed with `If-Match: <etag>` (or `If-None-Match: *` for a first
//!   claim), so of two instances claiming with the same etag one wins.
//! - `<namespace>/<hub>/<consumer group>/checkpoint/<partition>`: an empty block blob,
//!   metadata `offset` and `sequencenumber`.
//!
//! Names are lower-cased whole (`$Default` is `$default`), as the other SDKs do.
//!
//! Written over the Blob REST API with `reqwest`: object_store cannot list blobs with
//! their metadata (`include=metadata`) nor set metadata alone, and the published Rust
//! blob store crate does not build beside `azure_messaging_eventhubs` 0.16.

use anyhow::{Context, bail};
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::Etag;
use azure_core::time::OffsetDateTime;
use azure_core::{Error, Result};
use azure_messaging_eventhubs::CheckpointStore;
use azure_messaging_eventhubs::models::{Checkpoint, Ownership};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The environment variable holding the Azurite account key (emulator only; never logged).
pub const EMULATOR_KEY_ENV: &str = "TOKENTRAIL_CHECKPOINT_ACCOUNT_KEY";

/// Azurite's development account.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";

/// Storage's token audience.
const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// The Blob REST API version sent (Azurite 3.35 accepts it with `--skipApiVersionCheck`).
const API_VERSION: &str = "2021-08-06";

/// Metadata keys, as the other SDKs write them.
const OWNER_ID: &str = "ownerid";
const OFFSET: &str = "offset";
const SEQUENCE_NUMBER: &str = "sequencenumber";

enum Auth {
    /// Azurite only: Shared Key signatures with its well-known development key.
    SharedKey { account: String, key: Vec<u8> },
    /// The service's Entra ID identity (azure_identity caches and refreshes tokens).
    Entra(Arc<dyn TokenCredential>),
}

/// A [`CheckpointStore`] on one blob container.
pub struct BlobCheckpointStore {
    http: reqwest::Client,
    /// `https://<account>.blob.core.windows.net/<container>`, or Azurite's path-style
    /// `http://127.0.0.1:<port>/<account>/<container>`.
    container: url::Url,
    auth: Auth,
    /// Blobs per List Blobs answer, if not the service's (at most 5,000).
    page_size: Option<u32>,
}

impl std::fmt::Debug for BlobCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobCheckpointStore({})", self.container)
    }
}

/// The outcome of one partition's claim.
enum Claim {
    Won(Ownership),
    /// Another instance claimed it first (412 `ConditionNotMet`, 409 `BlobAlreadyExists`).
    Lost,
}

impl BlobCheckpointStore {
    /// `text` is a container URL: `https://<account>.blob.core.windows.net/<container>`
    /// reached with `identity`, or Azurite's `http://127.0.0.1:<port>/<account>/<container>`
    /// with the account key in `TOKENTRAIL_CHECKPOINT_ACCOUNT_KEY`.
    pub fn parse(
        text: &str,
        identity: &dyn Fn() -> anyhow::Result<Arc<dyn TokenCredential>>,
    ) -> anyhow::Result<BlobCheckpointStore> {
        let url =
            url::Url::parse(text.trim()).with_context(|| format!("the checkpoint store {text:?} is not a URL"))?;
        match url.scheme() {
            "http" => {
                let key = std::env::var(EMULATOR_KEY_ENV).ok().filter(|k| !k.trim().is_empty()).with_context(|| {
                    format!("an Azurite checkpoint store needs its account key in {EMULATOR_KEY_ENV}")
                })?;
                BlobCheckpointStore::emulator(&url, &key)
            }
            "https" => {
                let credential = identity().context("the checkpoint store's Entra ID identity")?;
                BlobCheckpointStore::entra(&url, credential)
            }
            other => bail!(
                "the checkpoint store's scheme {other:?} is not one TokenTrail uses: give \
                 https://<account>.blob.core.windows.net/<container>"
            ),
        }
    }

    /// A container of the Azure Blob service, reached with an Entra ID identity.
    pub fn entra(url: &url::Url, credential: Arc<dyn TokenCredential>) -> anyhow::Result<BlobCheckpointStore> {
        if url.scheme() != "https" {
            bail!("the checkpoint store {url} must be https");
        }
        if segments(url).len() != 1 {
            bail!("the checkpoint store is https://<account>.blob.core.windows.net/<container>, not {url}");
        }
        Ok(BlobCheckpointStore {
            http: http_client()?,
            container: bare(url),
            auth: Auth::Entra(credential),
            page_size: None,
        })
    }

    /// An Azurite container `http://<host>:<port>/<account>/<container>` signed with
    /// `key`. Plain http carries the signatures in the clear: loopback, or Azurite's own
    /// development account (a compose network's `azurite` host), never a real account.
    pub fn emulator(url: &url::Url, key: &str) -> anyhow::Result<BlobCheckpointStore> {
        let host = url.host_str().unwrap_or_default();
        let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1");
        let segments = segments(url);
        if url.scheme() == "http" && !loopback && segments.first() != Some(&EMULATOR_ACCOUNT) {
            bail!(
                "the checkpoint store {} uses plain http to {host}: only the Azurite emulator (on loopback, \
                 or its account {EMULATOR_ACCOUNT}) may",
                bare(url)
            );
        }
        let [account, _container] = segments.as_slice() else {
            bail!("an Azurite checkpoint store is http://127.0.0.1:<port>/<account>/<container>");
        };
        let key = STANDARD.decode(key.trim()).context("the Azurite account key is not base64")?;
        Ok(BlobCheckpointStore {
            http: http_client()?,
            container: bare(url),
            auth: Auth::SharedKey { account: (*account).to_owned(), key },
            page_size: None,
        })
    }

    /// The URL of blob `name` (each path segment percent-encoded).
    fn blob_url(&self, name: &str) -> url::Url {
        let mut url = self.container.clone();
        url.path_segments_mut().expect("an http(s) URL has a path").extend(name.split('/'));
        url
    }

    /// Sends one request with the x-ms- headers and the authorization; `headers` are
    /// the operation's own (conditions, metadata).
    async fn send(&self, method: Method, url: url::Url, headers: &[(&str, String)]) -> Result<reqwest::Response> {
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let mut all: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
        all.push(("x-ms-date".into(), date));
        all.push(("x-ms-version".into(), API_VERSION.into()));
        let authorization = match &self.auth {
            Auth::SharedKey { account, key } => {
                format!("SharedKey {account}:{}", shared_key_signature(&method, &url, &all, account, key))
            }
            Auth::Entra(credential) => {
                let token = credential.get_token(&[STORAGE_SCOPE], None).await?;
                format!("Bearer {}", token.token.secret())
            }
        };
        let mut request = self.http.request(method.clone(), url.clone()).header("authorization", authorization);
        for (name, value) in &all {
            request = request.header(name.as_str(), value.as_str());
        }
        if method == Method::PUT {
            // Empty blobs: the content is the metadata. hyper sends no Content-Length for
            // an empty body, and the service wants one (signed as empty when 0).
            request = request.header("content-length", "0").body(Vec::<u8>::new());
        }
        request.send().await.map_err(|e| {
            let kind = if e.is_connect() { ErrorKind::Connection } else { ErrorKind::Io };
            Error::with_error(kind, e, format!("{method} {}", without_query(&url)))
        })
    }

    /// Lists at most `blobs` a List Blobs answer (the service's default is 5,000): a
    /// consumer group of many hubs and partitions is read over several answers.
    pub fn with_page_size(mut self, blobs: u32) -> BlobCheckpointStore {
        self.page_size = Some(blobs.max(1));
        self
    }

    /// The blobs under `prefix` with their metadata (List Blobs, `include=metadata`).
    async fn list(&self, prefix: &str) -> Result<Vec<ListedBlob>> {
        let mut blobs = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut url = self.container.clone();
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("restype", "container").append_pair("comp", "list");
                query.append_pair("prefix", prefix).append_pair("include", "metadata");
                if let Some(marker) = &marker {
                    query.append_pair("marker", marker);
                }
                if let Some(size) = self.page_size {
                    query.append_pair("maxresults", &size.to_string());
                }
            }
            let response = self.send(Method::GET, url, &[]).await?;
            let status = response.status();
            let body = response.text().await.map_err(|e| Error::with_error(ErrorKind::Io, e, "List Blobs"))?;
            if !status.is_success() {
                return Err(http_error(status, &body, &format!("List Blobs {prefix}")));
            }
            let page: EnumerationResults = quick_xml::de::from_str(&body)
                .map_err(|e| Error::with_error(ErrorKind::DataConversion, e, "the List Blobs answer"))?;
            for blob in page.blobs.blob {
                let metadata = blob.metadata.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
                blobs.push(ListedBlob {
                    name: blob.name,
                    etag: quoted(&blob.properties.etag),
                    last_modified: azure_core::time::parse_rfc7231(&blob.properties.last_modified)?,
                    metadata,
                });
            }
            match page.next_marker.filter(|m| !m.is_empty()) {
                Some(next) => marker = Some(next),
                None => return Ok(blobs),
            }
        }
    }

    /// Sets blob `name`'s metadata, making the blob if absent, under `condition`
    /// (`If-Match` / `If-None-Match`). Returns the new etag and time, or `None` if the
    /// condition failed or a first claim found the blob made by another instance.
    async fn write(
        &self,
        name: &str,
        metadata: &[(&str, String)],
        condition: Option<(&str, String)>,
    ) -> Result<Option<(Etag, OffsetDateTime)>> {
        let mut headers: Vec<(&str, String)> = Vec::new();
        let meta_names: Vec<String> = metadata.iter().map(|(k, _)| format!("x-ms-meta-{k}")).collect();
        for ((_, value), header) in metadata.iter().zip(&meta_names) {
            headers.push((header.as_str(), value.clone()));
        }
        headers.extend(condition.clone());

        // A first claim goes straight to Put Blob: Azurite 3.35 ignores `If-None-Match: *`
        // on Set Blob Metadata (the Python store's first step), so two first claims both won.
        let first_claim = matches!(&condition, Some((h, _)) if h.eq_ignore_ascii_case("if-none-match"));
        if !first_claim {
            // Set Blob Metadata (the usual case: the blob is there), as the Python store does.
            let mut url = self.blob_url(name);
            url.query_pairs_mut().append_pair("comp", "metadata");
            let response = self.send(Method::PUT, url, &headers).await?;
            let missing = response.status() == StatusCode::NOT_FOUND
                && response.headers().get("x-ms-error-code").is_none_or(|c| c == "BlobNotFound");
            if !missing {
                return written(response, name).await;
            }
        }
        // Put Blob: an empty block blob with the metadata, under the same condition.
        headers.push(("x-ms-blob-type", "BlockBlob".into()));
        let response = self.send(Method::PUT, self.blob_url(name), &headers).await?;
        written(response, name).await
    }

    async fn claim_one(&self, ownership: &Ownership) -> Result<Claim> {
        let name = ownership_name(ownership)?;
        let condition = match &ownership.etag {
            Some(etag) => ("If-Match", quoted(etag.as_ref())),
            None => ("If-None-Match", "*".to_owned()),
        };
        let owner = ownership.owner_id.clone().unwrap_or_default();
        Ok(match self.write(&name, &[(OWNER_ID, owner)], Some(condition)).await? {
            Some((etag, last_modified)) => {
                let mut won = ownership.clone();
                won.etag = Some(etag);
                won.last_modified_time = Some(last_modified);
                Claim::Won(won)
            }
            None => Claim::Lost,
        })
    }
}

/// Blob leases (<https://learn.microsoft.com/rest/api/storageservices/lease-blob>): the
/// service's own lock with an expiry, for the rules lease (`eventhubs::lease`).
impl BlobCheckpointStore {
    /// Makes blob `name` if it is not there (an empty block blob to lease).
    pub async fn ensure_blob(&self, name: &str) -> Result<()> {
        let headers = [("x-ms-blob-type", "BlockBlob".to_owned()), ("If-None-Match", "*".to_owned())];
        let response = self.send(Method::PUT, self.blob_url(name), &headers).await?;
        accepted(response, name).await.map(|_| ())
    }

    /// `action` (acquire, renew, release) on blob `name`'s lease with id `lease_id` (for
    /// acquire, the proposed id and `seconds`, 15 to 60). False if the service refused it:
    /// another holds the lease, or this one lost it.
    pub async fn lease(&self, name: &str, action: &str, lease_id: &str, seconds: u32) -> Result<bool> {
        let mut url = self.blob_url(name);
        url.query_pairs_mut().append_pair("comp", "lease");
        let mut headers = vec![("x-ms-lease-action", action.to_owned())];
        if action == "acquire" {
            headers.push(("x-ms-lease-duration", seconds.to_string()));
            headers.push(("x-ms-proposed-lease-id", lease_id.to_owned()));
        } else {
            headers.push(("x-ms-lease-id", lease_id.to_owned()));
        }
        let response = self.send(Method::PUT, url, &headers).await?;
        accepted(response, &format!("{name} ({action} its lease)")).await
    }

    /// Sets the metadata of blob `name`, whose lease `lease_id` this instance holds.
    pub async fn set_leased_metadata(&self, name: &str, lease_id: &str, metadata: &[(&str, String)]) -> Result<bool> {
        let mut url = self.blob_url(name);
        url.query_pairs_mut().append_pair("comp", "metadata");
        let names: Vec<String> = metadata.iter().map(|(k, _)| format!("x-ms-meta-{k}")).collect();
        let mut headers: Vec<(&str, String)> = vec![("x-ms-lease-id", lease_id.to_owned())];
        headers.extend(names.iter().map(String::as_str).zip(metadata.iter().map(|(_, v)| v.clone())));
        let response = self.send(Method::PUT, url, &headers).await?;
        accepted(response, name).await
    }

    /// Blob `name`'s metadata and lease state (`leased`, `available`, `expired`, ...), or
    /// `None` if there is no such blob.
    pub async fn lease_state(&self, name: &str) -> Result<Option<(HashMap<String, String>, String)>> {
        let response = self.send(Method::HEAD, self.blob_url(name), &[]).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(http_error(response.status(), "", &format!("reading {name}")));
        }
        let headers = response.headers();
        let metadata = headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().strip_prefix("x-ms-meta-")?.to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let state = headers.get("x-ms-lease-state").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        Ok(Some((metadata, state)))
    }
}

#[async_trait::async_trait]
impl CheckpointStore for BlobCheckpointStore {
    /// Returns the ownerships won. One lost to another instance is left out, not an
    /// error: an `Err` here ends `EventProcessor::run` (the other SDKs' stores skip too).
    /// Other failures are logged and skipped, unless every claim failed that way.
    async fn claim_ownership(&self, ownerships: &[Ownership]) -> Result<Vec<Ownership>> {
        let mut won = Vec::new();
        let mut failed = None;
        let mut lost = 0;
        for ownership in ownerships {
            match self.claim_one(ownership).await {
                Ok(Claim::Won(o)) => won.push(o),
                Ok(Claim::Lost) => {
                    lost += 1;
                    tracing::debug!(partition = %ownership.partition_id, "ownership claimed by another instance first");
                }
                Err(e) => {
                    tracing::warn!(partition = %ownership.partition_id, error = %e, "claiming partition ownership failed");
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) if won.is_empty() && lost == 0 => Err(e),
            _ => Ok(won),
        }
    }

    async fn list_checkpoints(&self, namespace: &str, hub: &str, consumer_group: &str) -> Result<Vec<Checkpoint>> {
        let prefix = Checkpoint::get_checkpoint_blob_prefix_name(namespace, hub, consumer_group)?.to_lowercase();
        let mut checkpoints: Vec<Checkpoint> = self
            .list(&prefix)
            .await?
            .into_iter()
            .map(|blob| Checkpoint {
                fully_qualified_namespace: namespace.to_owned(),
                event_hub_name: hub.to_owned(),
                consumer_group: consumer_group.to_owned(),
                partition_id: partition_of(&blob.name),
                // Python writes `str(None)` for a value it did not have.
                offset: blob.metadata.get(OFFSET).filter(|v| !v.is_empty() && *v != "None").cloned(),
                sequence_number: blob.metadata.get(SEQUENCE_NUMBER).and_then(|v| v.parse().ok()),
            })
            .collect();
        checkpoints.sort_by(|a, b| a.partition_id.cmp(&b.partition_id));
        Ok(checkpoints)
    }

    /// Ownerships as listed; an empty `ownerid` (a processor that let go) is `None`,
    /// which the load balancer reads as unowned.
    async fn list_ownerships(&self, namespace: &str, hub: &str, consumer_group: &str) -> Result<Vec<Ownership>> {
        let prefix = Ownership::get_ownership_prefix_name(namespace, hub, consumer_group)?.to_lowercase();
        let mut ownerships: Vec<Ownership> = self
            .list(&prefix)
            .await?
            .into_iter()
            .map(|blob| Ownership {
                fully_qualified_namespace: namespace.to_owned(),
                event_hub_name: hub.to_owned(),
                consumer_group: consumer_group.to_owned(),
                partition_id: partition_of(&blob.name),
                owner_id: blob.metadata.get(OWNER_ID).filter(|v| !v.is_empty()).cloned(),
                etag: Some(Etag::from(blob.etag)),
                last_modified_time: Some(blob.last_modified),
            })
            .collect();
        ownerships.sort_by(|a, b| a.partition_id.cmp(&b.partition_id));
        Ok(ownerships)
    }

    /// Unconditional, as in the other SDKs: only the owner checkpoints a partition.
    /// Python's `list_checkpoints` needs both values, so write both when there are both.
    async fn update_checkpoint(&self, checkpoint: Checkpoint) -> Result<()> {
        let (name, metadata) = checkpoint_blob(&checkpoint)?;
        match self.write(&name, &metadata, None).await? {
            Some(_) => Ok(()),
            None => Err(Error::with_message(ErrorKind::Other, format!("writing {name}: refused (412/409)"))),
        }
    }
}

impl BlobCheckpointStore {
    /// Writes `checkpoint` only if its partition has no checkpoint blob yet (Put Blob with
    /// `If-None-Match: *`): true if this call made it.
    pub async fn create_checkpoint(&self, checkpoint: &Checkpoint) -> Result<bool> {
        let (name, metadata) = checkpoint_blob(checkpoint)?;
        Ok(self.write(&name, &metadata, Some(("If-None-Match", "*".to_owned()))).await?.is_some())
    }
}

/// A checkpoint's blob name (lower-cased) and metadata; an error if it names no position.
fn checkpoint_blob(checkpoint: &Checkpoint) -> Result<(String, Vec<(&'static str, String)>)> {
    let name = Checkpoint::get_checkpoint_blob_name(
        &checkpoint.fully_qualified_namespace,
        &checkpoint.event_hub_name,
        &checkpoint.consumer_group,
        &checkpoint.partition_id,
    )?
    .to_lowercase();
    let mut metadata = Vec::new();
    if let Some(offset) = &checkpoint.offset {
        metadata.push((OFFSET, offset.clone()));
    }
    if let Some(sequence_number) = checkpoint.sequence_number {
        metadata.push((SEQUENCE_NUMBER, sequence_number.to_string()));
    }
    if metadata.is_empty() {
        return Err(Error::with_message(
            ErrorKind::Other,
            format!("a checkpoint of partition {} names no position", checkpoint.partition_id),
        ));
    }
    Ok((name, metadata))
}

/// The ownership blob's name, lower-cased.
pub fn ownership_name(o: &Ownership) -> Result<String> {
    Ok(Ownership::get_ownership_name(
        &o.fully_qualified_namespace,
        &o.event_hub_name,
        &o.consumer_group,
        &o.partition_id,
    )?
    .to_lowercase())
}

struct ListedBlob {
    name: String,
    etag: String,
    last_modified: OffsetDateTime,
    /// Keys lower-cased.
    metadata: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnumerationResults {
    #[serde(default)]
    blobs: Blobs,
    #[serde(default)]
    next_marker: Option<String>,
}

#[derive(Deserialize, Default)]
struct Blobs {
    #[serde(rename = "Blob", default)]
    blob: Vec<ListBlob>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBlob {
    name: String,
    properties: Properties,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Properties {
    #[serde(rename = "Last-Modified")]
    last_modified: String,
    #[serde(rename = "Etag")]
    etag: String,
}

/// The last segment of a blob name.
fn partition_of(name: &str) -> String {
    name.rsplit('/').next().unwrap_or_default().to_owned()
}

/// One form for etags: List Blobs gives them bare, headers quoted; both are accepted
/// in `If-Match`, and equal ones compare equal.
fn quoted(etag: &str) -> String {
    let bare = etag.trim().trim_matches('"');
    format!("\"{bare}\"")
}

/// Shared Key (<https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key>):
/// the verb, eleven standard headers (Content-Length 0 signed as empty), the x-ms-
/// headers sorted, then `/<account><path>` and the query parameters sorted, decoded.
fn shared_key_signature(
    method: &Method,
    url: &url::Url,
    headers: &[(String, String)],
    account: &str,
    key: &[u8],
) -> String {
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("");
    let standard = [
        "content-encoding",
        "content-language",
        "content-length",
        "content-md5",
        "content-type",
        "date",
        "if-modified-since",
        "if-match",
        "if-none-match",
        "if-unmodified-since",
        "range",
    ];
    let mut text = format!("{method}\n");
    for name in standard {
        text.push_str(get(name));
        text.push('\n');
    }
    let mut ms: Vec<_> = headers.iter().filter(|(k, _)| k.starts_with("x-ms-")).collect();
    ms.sort();
    for (k, v) in ms {
        text.push_str(&format!("{k}:{}\n", v.trim()));
    }
    text.push_str(&format!("/{account}{}", url.path()));
    let mut query: Vec<(String, String)> =
        url.query_pairs().map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned())).collect();
    query.sort();
    for (k, v) in query {
        text.push_str(&format!("\n{k}:{v}"));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(text.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The new etag and time of a write, `None` if its condition failed (412, or 409
/// `BlobAlreadyExists` for a first claim).
async fn written(response: reqwest::Response, name: &str) -> Result<Option<(Etag, OffsetDateTime)>> {
    let status = response.status();
    if status == StatusCode::PRECONDITION_FAILED || status == StatusCode::CONFLICT {
        return Ok(None);
    }
    if !status.is_success() {
        // A HEAD-like answer has no body: the code is in x-ms-error-code.
        let code = response.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.text().await.unwrap_or_default();
        let body = code.map(|c| format!("<Code>{c}</Code>{body}")).unwrap_or(body);
        return Err(http_error(status, &body, &format!("writing {name}")));
    }
    let header = |h: &str| response.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let etag = header("etag").ok_or_else(|| Error::with_message(ErrorKind::DataConversion, "no ETag in the answer"))?;
    let modified = header("last-modified")
        .ok_or_else(|| Error::with_message(ErrorKind::DataConversion, "no Last-Modified in the answer"))?;
    Ok(Some((Etag::from(quoted(&etag)), azure_core::time::parse_rfc7231(&modified)?)))
}

/// Whether a request was done (2xx) or refused on a condition or lease (409, 412).
async fn accepted(response: reqwest::Response, what: &str) -> Result<bool> {
    let status = response.status();
    if status == StatusCode::PRECONDITION_FAILED || status == StatusCode::CONFLICT {
        return Ok(false);
    }
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(http_error(status, &body, what));
    }
    Ok(true)
}

fn http_error(status: StatusCode, body: &str, what: &str) -> Error {
    // The service's error code is in the body's <Code> element.
    let code = body.split("<Code>").nth(1).and_then(|s| s.split("</Code>").next()).map(str::to_owned);
    Error::with_message(
        ErrorKind::HttpResponse {
            status: azure_core::http::StatusCode::from(status.as_u16()),
            error_code: code.clone(),
            raw_response: None,
        },
        format!("{what}: HTTP {status} {}", code.unwrap_or_else(|| body.chars().take(300).collect())),
    )
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        // Claims are renewed every few seconds: a hung request must not outlive the expiry.
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client for the checkpoint store")
}

fn segments(url: &url::Url) -> Vec<&str> {
    url.path_segments().map(|s| s.filter(|p| !p.is_empty()).collect()).unwrap_or_default()
}

/// The container URL without query (a SAS would be there), password or trailing slash.
fn bare(url: &url::Url) -> url::Url {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_password(None);
    let path = format!("/{}", segments(&url).join("/"));
    url.set_path(&path);
    url
}

fn without_query(url: &url::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}
