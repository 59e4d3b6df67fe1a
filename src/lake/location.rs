//! Where the lake is, and the object store that reaches it: a local directory, or Azure
//! Blob Storage / ADLS Gen2 with the service's Entra ID identity (an account key only for
//! the Azurite emulator on loopback, from the environment).

use anyhow::{Context, Result, bail};
use azure_core::credentials::TokenCredential;
use object_store::azure::{AzureCredential, MicrosoftAzureBuilder};
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{CredentialProvider, ObjectStore, RetryConfig};
use std::sync::Arc;

/// The environment variable holding the Azurite account key (emulator only; never logged).
pub const EMULATOR_KEY_ENV: &str = "TOKENTRAIL_LAKE_ACCOUNT_KEY";

/// Builds the lake's Entra ID credential (not yet used).
pub type Credential = dyn Fn() -> Result<Arc<dyn TokenCredential>>;

/// Azurite's development account.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";

/// Storage's token audience.
const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// The lake: its object store, the prefix everything goes under, and a description
/// without any credential, stored with each archived segment.
#[derive(Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: StorePath,
    pub description: String,
    /// A local lake's directory: a write killed midway leaves its staging file
    /// (`<file>#<n>`) there, which [`Location::remove_staging`] clears.
    pub directory: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl Location {
    /// `text` is a directory (a path, or `file:///…`), an Azure URL
    /// (`https://<account>.blob.core.windows.net/<container>[/<prefix>]`,
    /// `abfss://<container>@<account>.dfs.core.windows.net[/<prefix>]`) read with
    /// `identity`, or Azurite: `http://127.0.0.1:<port>/<account>/<container>[/<prefix>]`
    /// with the account key in `TOKENTRAIL_LAKE_ACCOUNT_KEY`. `identity` builds the
    /// Entra ID credential when an Azure URL needs one (`source::eventhubs::Identity`).
    pub fn parse(text: &str, identity: &Credential) -> Result<Location> {
        Location::parse_with_retry(text, identity, RetryConfig::default())
    }

    /// For callers that try again on their own (the shared lake's segments and alert
    /// claims): a few retries within seconds. object_store's default (10 retries, up to 3
    /// minutes) held such a caller about 55 s on one refused connection.
    pub fn short_retry() -> RetryConfig {
        RetryConfig { max_retries: 2, retry_timeout: std::time::Duration::from_secs(5), ..Default::default() }
    }

    /// [`Location::parse`] with how an object store's calls are retried (a directory's are
    /// not): callers that try again themselves fail sooner ([`Location::short_retry`]).
    pub fn parse_with_retry(text: &str, identity: &Credential, retry: RetryConfig) -> Result<Location> {
        if let Some(path) = directory_of(text)? {
            return Location::directory(path);
        }
        let url = url::Url::parse(text).with_context(|| format!("the lake location {text:?} is not a URL"))?;
        match url.scheme() {
            "http" => Location::emulator(&url, retry),
            "https" | "abfss" | "az" | "azure" | "adl" => Location::azure(&url, identity, retry),
            other => bail!(
                "the lake location's scheme {other:?} is not one TokenTrail writes to: give a directory, \
                 https://<account>.blob.core.windows.net/<container>, or abfss://<container>@<account>.dfs.core.windows.net"
            ),
        }
    }

    /// [`Location::parse`]'s checks without touching the disk or the network: a URL's
    /// form, an Azurite key's presence, the identity's configuration. A directory is
    /// made when the lake is opened.
    pub fn check(text: &str, identity: &Credential) -> Result<()> {
        if directory_of(text)?.is_none() {
            Location::parse(text, identity)?;
        }
        Ok(())
    }

    pub fn directory(path: &std::path::Path) -> Result<Location> {
        std::fs::create_dir_all(path).with_context(|| format!("creating the lake directory {}", path.display()))?;
        let path = path.canonicalize().with_context(|| format!("opening the lake directory {}", path.display()))?;
        // fsync: a row leaves DuckDB only after its file is on disk, power cut or not.
        let store = LocalFileSystem::new_with_prefix(&path)
            .with_context(|| format!("opening the lake directory {}", path.display()))?
            .with_fsync(true);
        Ok(Location {
            store: Arc::new(store),
            prefix: StorePath::default(),
            description: path.display().to_string(),
            directory: Some(path),
        })
    }

    /// Removes what a killed write of `relative` left in a local lake: object_store
    /// writes `<file>#<n>` and links it into place, and a reader listing the directory
    /// (Spark reads every file not starting with `_` or `.`) would count its rows twice.
    pub fn remove_staging(&self, relative: &str) -> Result<()> {
        let Some(root) = &self.directory else { return Ok(()) };
        let path = root.join(relative);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
            return Ok(());
        };
        let prefix = format!("{name}#");
        let entries = match std::fs::read_dir(parent) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", parent.display())),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
                std::fs::remove_file(entry.path())
                    .with_context(|| format!("removing {}, left by an interrupted write", entry.path().display()))?;
                tracing::info!(file = %entry.path().display(), "removed a staging file left by an interrupted write");
            }
        }
        Ok(())
    }

    fn azure(url: &url::Url, identity: &Credential, retry: RetryConfig) -> Result<Location> {
        let credential = identity().context("the lake's Entra ID identity")?;
        let store = MicrosoftAzureBuilder::new()
            .with_url(url.as_str())
            .with_credentials(Arc::new(EntraCredential { credential }))
            .with_retry(retry)
            .build()
            .with_context(|| format!("the lake location {url}"))?;
        // abfss://container@account.dfs…/prefix and https://account.blob…/container/prefix.
        let segments = segments(url);
        let skip = usize::from(url.scheme() == "https" && url.username().is_empty());
        let prefix = StorePath::from_iter(segments.into_iter().skip(skip));
        Ok(Location { store: Arc::new(store), prefix, description: without_query(url), directory: None })
    }

    fn emulator(url: &url::Url, retry: RetryConfig) -> Result<Location> {
        let host = url.host_str().unwrap_or_default();
        let segments = segments(url);
        let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1");
        // Plain http carries the key's signatures in the clear: loopback, or Azurite's own
        // development account (a compose network's `azurite` host), never a real account.
        if !loopback && segments.first() != Some(&EMULATOR_ACCOUNT) {
            bail!(
                "the lake location {} uses plain http to {host}: only the Azurite emulator (on loopback, or \
                 its account {EMULATOR_ACCOUNT}) may; use https://<account>.blob.core.windows.net/<container> \
                 with an Entra ID identity",
                without_query(url)
            );
        }
        let [account, container, rest @ ..] = segments.as_slice() else {
            bail!("an Azurite lake location is http://127.0.0.1:<port>/<account>/<container>[/<prefix>]");
        };
        let key = std::env::var(EMULATOR_KEY_ENV)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .with_context(|| format!("an Azurite lake needs its account key in {EMULATOR_KEY_ENV}"))?;
        let endpoint = format!("http://{host}:{}/{account}", url.port().unwrap_or(10000));
        let store = MicrosoftAzureBuilder::new()
            .with_account(*account)
            .with_access_key(key)
            .with_container_name(*container)
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_retry(retry)
            .build()
            .with_context(|| format!("the lake location {}", without_query(url)))?;
        Ok(Location {
            store: Arc::new(store),
            prefix: StorePath::from_iter(rest.iter().copied()),
            description: without_query(url),
            directory: None,
        })
    }

    /// `relative` under the lake's prefix.
    pub fn path(&self, relative: &str) -> StorePath {
        StorePath::from_iter(
            self.prefix.parts().map(|p| p.as_ref().to_owned()).chain(relative.split('/').map(str::to_owned)),
        )
    }
}

/// The directory `text` names (a path, or `file://…`), or `None` for a URL.
fn directory_of(text: &str) -> Result<Option<&std::path::Path>> {
    let text = text.trim();
    if text.is_empty() {
        bail!("the lake location is empty: give a directory or an Azure Storage URL");
    }
    Ok(match text.strip_prefix("file://") {
        Some(path) => Some(std::path::Path::new(path)),
        None => (!text.contains("://")).then(|| std::path::Path::new(text)),
    })
}

/// The URL's path segments, empty ones left out.
fn segments(url: &url::Url) -> Vec<&str> {
    url.path_segments().map(|s| s.filter(|p| !p.is_empty()).collect()).unwrap_or_default()
}

/// A URL as stored and shown: no query (a SAS would be there) and no password.
fn without_query(url: &url::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    let _ = url.set_password(None);
    url.to_string()
}

/// object_store's Azure client asking our Entra ID credential (the same kinds and
/// environment as Event Hubs) for Storage tokens; azure_identity caches and refreshes them.
#[derive(Debug)]
struct EntraCredential {
    credential: Arc<dyn TokenCredential>,
}

#[async_trait::async_trait]
impl CredentialProvider for EntraCredential {
    type Credential = AzureCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AzureCredential>> {
        let token = self
            .credential
            .get_token(&[STORAGE_SCOPE], None)
            .await
            .map_err(|e| object_store::Error::Unauthenticated { path: String::new(), source: Box::new(e) })?;
        Ok(Arc::new(AzureCredential::BearerToken(token.token.secret().to_owned())))
    }
}
