//! The rules lease: of the instances sharing balanced hubs, the one holding it runs the
//! rules over everyone's counts (`crate::lake::fleet`) and the sign-in rules every
//! instance could run (`crate::rules::HOLDER_RULES`). It is a blob lease (Azure Storage's
//! own lock, with an expiry the service enforces) on one blob in the checkpoint
//! container: `<namespace>/<consumer group>/tokentrail/rules-lease`, its metadata naming
//! the holder for every instance's status page.
//!
//! The holder renews every third of [`SECONDS`], writing how far its rules have evaluated
//! the lake (`evaluated`, row time); an instance that is killed stops renewing and another
//! acquires the lease once it expires (the others try every [`ASKING`]), and starts where
//! the last holder had got to, not at the start of history. An instance proposes the same lease id
//! each time (from its name), so one restarted at once takes its own lease back.

use crate::source::blob_checkpoints::BlobCheckpointStore;
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The lease's duration: the shortest the service allows, so a dead holder is replaced soon.
pub const SECONDS: u32 = 15;

/// How often an instance that does not hold the lease tries to take it.
pub const ASKING: Duration = Duration::from_secs(1);

/// How often an instance that does not hold the lease reads who does.
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// No time: nothing evaluated, or nothing handed over (`rules::live::NONE` too).
pub const NONE: i64 = i64::MIN;

/// The rules lease as this instance sees it.
pub struct RulesLease {
    /// This instance holds it (read by detection before each pass).
    pub holding: Arc<AtomicBool>,
    /// How far (row time, µs) this instance's rules over everyone's counts have evaluated
    /// the lake while it held the lease: written to the blob's metadata at each renewal.
    pub evaluated_through: Arc<AtomicI64>,
    /// How far the holder before this one had evaluated, read when this one took the
    /// lease: its first pass starts there, not at the start of history.
    pub handed_over: Arc<AtomicI64>,
    /// This instance has followed every partition's claims once (the segment writer) and
    /// added up every segment's counts it recorded (the rules' thread): only then does it
    /// try to take the lease, so a new instance never judges with part of the counts.
    pub followed: Arc<AtomicBool>,
    pub counted: Arc<AtomicBool>,
    pub status: Mutex<Option<LeaseStatus>>,
}

impl Default for RulesLease {
    fn default() -> RulesLease {
        RulesLease {
            holding: Arc::default(),
            evaluated_through: Arc::new(AtomicI64::new(NONE)),
            handed_over: Arc::new(AtomicI64::new(NONE)),
            followed: Arc::default(),
            counted: Arc::default(),
            status: Mutex::default(),
        }
    }
}

/// What the status page shows.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct LeaseStatus {
    /// The lease's blob in the checkpoint container.
    pub blob: String,
    /// The instance holding it, as its metadata says (none: nobody holds it).
    pub holder: Option<String>,
    /// This instance holds it.
    pub held_here: bool,
    /// Since when the holder holds it (its metadata).
    pub since: Option<DateTime<Utc>>,
    pub duration_seconds: u32,
    /// When this instance last asked.
    pub checked_at: Option<DateTime<Utc>>,
    /// The last failure to reach the checkpoint store, if the last attempt failed.
    pub error: Option<String>,
    /// On the holder: the latest row time its rules over everyone's counts have judged.
    pub evaluated_through: Option<DateTime<Utc>>,
    /// This instance has caught up on everyone's counts and may take the lease.
    pub ready: bool,
}

impl RulesLease {
    pub fn status(&self) -> Option<LeaseStatus> {
        let mut status = self.status.lock().ok().and_then(|s| s.clone())?;
        let through = self.evaluated_through.load(Ordering::Acquire);
        status.evaluated_through =
            (status.held_here && through != NONE).then(|| DateTime::from_timestamp_micros(through)).flatten();
        status.ready = self.ready();
        Some(status)
    }

    /// Whether this instance has caught up on everyone's counts.
    pub fn ready(&self) -> bool {
        self.followed.load(Ordering::Acquire) && self.counted.load(Ordering::Acquire)
    }

    fn set(&self, change: impl FnOnce(&mut LeaseStatus)) {
        if let Ok(mut status) = self.status.lock() {
            change(status.get_or_insert_with(LeaseStatus::default));
        }
    }
}

/// The lease blob's name for a namespace and consumer group (lower-cased, as the SDKs'
/// ownership blobs are).
pub fn blob_name(namespace: &str, consumer_group: &str) -> String {
    format!("{namespace}/{consumer_group}/tokentrail/rules-lease").to_ascii_lowercase()
}

/// The lease id an instance proposes: a UUID made of its name's SHA-256.
fn lease_id(instance: &str) -> String {
    use sha2::Digest as _;
    let hex = crate::store::chain::hex(&sha2::Sha256::digest(instance.as_bytes()).into());
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Holds (or waits for) the lease until `cancel`, then lets it go.
pub async fn run(
    store: Arc<BlobCheckpointStore>,
    blob: String,
    instance: String,
    lease: Arc<RulesLease>,
    cancel: CancellationToken,
) {
    let id = lease_id(&instance);
    let every = Duration::from_secs(u64::from(SECONDS) / 3);
    lease.set(|s| {
        s.blob = blob.clone();
        s.duration_seconds = SECONDS;
    });
    let mut tries = Tries::default();
    loop {
        let outcome = step(&store, &blob, &id, &instance, &lease, &mut tries).await;
        if outcome.is_err() {
            tries.made = false;
        }
        lease.set(|s| {
            s.checked_at = Some(Utc::now());
            s.error = outcome.as_ref().err().map(|e| format!("{e:#}"));
        });
        if let Err(error) = outcome {
            tracing::warn!(error = format!("{error:#}"), blob = %blob, "the rules lease could not be checked; trying again");
            if tries.renewed.is_some_and(|at| at.elapsed() >= Duration::from_secs(u64::from(SECONDS)) - every) {
                // Not renewed in time: another instance may hold it by now.
                tries.renewed = None;
                lost(&lease, "it could not be renewed in time");
            }
        }
        // The holder renews every third of the duration; the others ask more often, so a
        // lease that expires is taken within ASKING of it.
        let wait = if lease.holding.load(Ordering::Acquire) { every } else { ASKING };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if lease.holding.swap(false, Ordering::AcqRel) {
        match store.lease(&blob, "release", &id, SECONDS).await {
            Ok(_) => tracing::info!(blob = %blob, "rules lease released"),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "releasing the rules lease failed; it expires"),
        }
    }
}

/// What the tries to hold the lease remember.
#[derive(Default)]
struct Tries {
    /// When the lease was last renewed: past its duration without one, it may be another's.
    renewed: Option<Instant>,
    /// The blob is there (made once; made again after a failure, in case it was deleted).
    made: bool,
    /// When the holder's name was last read from the blob.
    looked: Option<Instant>,
    /// Since when this instance holds the lease, and the evaluated time last written.
    since: DateTime<Utc>,
    written: i64,
}

/// The lease blob's metadata: its holder, since when, how far it evaluated (µs; absent
/// while nothing was).
fn metadata(instance: &str, since: DateTime<Utc>, evaluated: i64) -> Vec<(&'static str, String)> {
    let mut metadata = vec![("holder", instance.to_owned()), ("since", since.to_rfc3339())];
    if evaluated != NONE {
        metadata.push(("evaluated", evaluated.to_string()));
    }
    metadata
}

/// One renewal, or one attempt to acquire and else learn who holds it.
async fn step(
    store: &BlobCheckpointStore,
    blob: &str,
    id: &str,
    instance: &str,
    lease: &RulesLease,
    tries: &mut Tries,
) -> anyhow::Result<()> {
    if lease.holding.load(Ordering::Acquire) {
        if store.lease(blob, "renew", id, SECONDS).await? {
            tries.renewed = Some(Instant::now());
            let evaluated = lease.evaluated_through.load(Ordering::Acquire);
            if evaluated != tries.written {
                store.set_leased_metadata(blob, id, &metadata(instance, tries.since, evaluated)).await?;
                tries.written = evaluated;
            }
            return Ok(());
        }
        tries.renewed = None;
        lost(lease, "the service no longer has it as ours");
    }
    if !tries.made {
        store.ensure_blob(blob).await?;
        tries.made = true;
    }
    if lease.ready() && store.lease(blob, "acquire", id, SECONDS).await? {
        tries.renewed = Some(Instant::now());
        let since = Utc::now();
        // How far the holder before evaluated (kept in the blob's metadata): handed over.
        let before = store.lease_state(blob).await?.and_then(|(m, _)| m.get("evaluated")?.parse::<i64>().ok());
        let before = before.unwrap_or(NONE);
        lease.handed_over.store(before, Ordering::Release);
        lease.evaluated_through.store(before, Ordering::Release);
        store.set_leased_metadata(blob, id, &metadata(instance, since, before)).await?;
        (tries.since, tries.written) = (since, before);
        lease.holding.store(true, Ordering::Release);
        lease.set(|s| {
            s.holder = Some(instance.to_owned());
            s.held_here = true;
            s.since = Some(since);
        });
        tracing::info!(blob = %blob, instance = %instance, "this instance holds the rules lease: it runs the rules over everyone's counts");
        return Ok(());
    }
    // Another instance holds it: who, for the status page (read every few tries).
    if tries.looked.is_some_and(|at| at.elapsed() < LOOK_EVERY) {
        return Ok(());
    }
    tries.looked = Some(Instant::now());
    let (holder, since) = match store.lease_state(blob).await? {
        Some((metadata, state)) if state == "leased" => (
            metadata.get("holder").cloned(),
            metadata.get("since").and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc)),
        ),
        _ => (None, None),
    };
    lease.set(|s| {
        s.holder = holder;
        s.held_here = false;
        s.since = since;
    });
    Ok(())
}

fn lost(lease: &RulesLease, why: &str) {
    if lease.holding.swap(false, Ordering::AcqRel) {
        tracing::warn!(why, "this instance no longer holds the rules lease");
        lease.set(|s| {
            s.held_here = false;
            s.holder = None;
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_instance_proposes_one_lease_id_shaped_as_a_uuid() {
        let id = super::lease_id("host-0a1b2c3d");
        assert_eq!(id, super::lease_id("host-0a1b2c3d"));
        assert_ne!(id, super::lease_id("host-0a1b2c3e"));
        let parts: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }
}
