//! Balanced hubs: the partitions of a hub shared among the instances of one consumer
//! group by Event Hubs' own partition ownership (`EventProcessor`, balanced strategy)
//! over ownership and checkpoint blobs every Event Hubs SDK reads
//! ([`crate::source::blob_checkpoints`]).
//!
//! Each balanced hub has a thread of its own: the processor's partition clients stream
//! events that are not `Send`, so the processor, its partition readers, the checkpoint
//! writer and the ownership watcher run on one current-thread runtime (a `LocalSet`).
//! A partition handed out is read by the same [`Receiver`] code as a broadcast one, into
//! the same channel, so its events go through the same pipeline and commits.
//!
//! Positions:
//! - DuckDB stays the exactly-once point for what this instance stores. A partition is
//!   opened after the later of the blob checkpoint and this instance's own committed
//!   position ([`Positions`]), so what this instance stored is never read again by it.
//! - The blob checkpoint follows DuckDB: after each commit, the committed positions of the
//!   balanced partitions are written to their checkpoint blobs (at most once a
//!   `checkpoint_interval_ms`, a second by default).
//!   What another owner stored after its last blob checkpoint (up to an interval and a
//!   commit of events) can reach a new owner's file too: DuckDB files are per instance.
//!
//! A failure of the processor's own cycle (the checkpoint store or the hub unreachable)
//! ends `EventProcessor::run`: the readers stop and a new processor (a new owner id) is
//! built after backoff; the old ownerships expire and are claimed again.

use super::{BACKOFF, CALL_TIMEOUT, Connect, HubsStatus, InstanceStatus, Receiver, Resume};
use crate::config::{BalanceConfig, StartAt};
use crate::source::blob_checkpoints::BlobCheckpointStore;
use crate::store;
use anyhow::{Result, anyhow};
use azure_messaging_eventhubs::models::{Checkpoint, Ownership, StartPositions};
use azure_messaging_eventhubs::processor::PartitionClient;
use azure_messaging_eventhubs::{
    CheckpointStore, ConsumerClient, EventProcessor, ProcessorStrategy, StartLocation, StartPosition,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// What a balanced hub's thread and the pipeline's commits share.
pub struct Shared {
    pub hub: String,
    /// The hub's partition ids.
    partitions: Vec<String>,
    /// Positions this instance committed to DuckDB, by partition id: read from DuckDB at
    /// start, then after each commit.
    stored: Mutex<HashMap<String, store::Checkpoint>>,
    /// Committed positions not yet written to their checkpoint blobs.
    pending: Mutex<BTreeMap<String, store::Checkpoint>>,
    wake: tokio::sync::Notify,
    /// Partitions read here now.
    owned: Mutex<HashSet<String>>,
    /// The starting checkpoints the processor was last given, by partition id.
    started: Mutex<HashMap<String, Checkpoint>>,
    /// (namespace, hub, consumer group) as the processor names its blobs (it asks for
    /// checkpoints by them each cycle).
    names: Mutex<Option<(String, String, String)>>,
    /// This instance's owner id (the processor's connection id), once it owns a partition.
    me: Mutex<Option<String>>,
    /// The last event each partition's reader passed on when it ended, committed or not
    /// yet: a partition opened again in this process (after a receive error, or taken
    /// back) skips what is still on its way through the pipeline, as a broadcast
    /// partition's receiver does across reconnects.
    forwarded: Mutex<HashMap<String, Resume>>,
    /// The processor's last view of the blobs (its own listings, with the claims it won
    /// since), for the status page: no listings of its own.
    ownerships: Mutex<Vec<Ownership>>,
    checkpointed: Mutex<HashMap<String, Option<i64>>>,
    /// With a shared lake, the blob checkpoint follows the segments, not each commit:
    /// committed positions not yet in a segment, and since when ([`super::segments`]).
    segmenting: bool,
    unsegmented: Mutex<BTreeMap<String, (store::Checkpoint, Instant)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new(
        hub: &str,
        partitions: Vec<String>,
        stored: HashMap<String, store::Checkpoint>,
        segmenting: bool,
    ) -> Shared {
        // What a crash left out of the lake is written at the first pass.
        let now = Instant::now();
        let unsegmented = match segmenting {
            true => stored.iter().map(|(p, c)| (p.clone(), (c.clone(), now))).collect(),
            false => BTreeMap::new(),
        };
        Shared {
            segmenting,
            unsegmented: Mutex::new(unsegmented),
            hub: hub.to_owned(),
            partitions,
            stored: Mutex::new(stored),
            pending: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            owned: Mutex::default(),
            started: Mutex::default(),
            names: Mutex::default(),
            me: Mutex::default(),
            forwarded: Mutex::default(),
            ownerships: Mutex::default(),
            checkpointed: Mutex::default(),
        }
    }

    /// A commit of the pipeline holds `checkpoint` for `partition`: the blob follows it,
    /// or, with a shared lake, the segment that will hold it.
    pub fn committed(&self, partition: &str, checkpoint: &store::Checkpoint) {
        lock(&self.stored).insert(partition.to_owned(), checkpoint.clone());
        if self.segmenting {
            let mut unsegmented = lock(&self.unsegmented);
            match unsegmented.get_mut(partition) {
                Some((waiting, _)) => *waiting = checkpoint.clone(),
                None => drop(unsegmented.insert(partition.to_owned(), (checkpoint.clone(), Instant::now()))),
            }
            return;
        }
        self.segmented(partition, checkpoint.clone());
    }

    /// `partition`'s rows up to `checkpoint` are in the shared lake: the blob follows.
    pub fn segmented(&self, partition: &str, checkpoint: store::Checkpoint) {
        lock(&self.pending).insert(partition.to_owned(), checkpoint);
        self.wake.notify_one();
    }

    /// Committed positions waiting for a segment, taken by the segment writer.
    pub fn take_unsegmented(&self) -> BTreeMap<String, (store::Checkpoint, Instant)> {
        std::mem::take(&mut *lock(&self.unsegmented))
    }

    /// Puts back a position whose segment failed (a later commit's position stays, with
    /// the earlier time).
    pub fn unsegment(&self, partition: &str, checkpoint: store::Checkpoint, since: Instant) {
        lock(&self.unsegmented)
            .entry(partition.to_owned())
            .and_modify(|(_, s)| *s = (*s).min(since))
            .or_insert((checkpoint, since));
    }

    /// When the oldest committed rows of `partition` not in the shared lake were committed.
    pub fn unsegmented_since(&self, partition: &str) -> Option<Instant> {
        lock(&self.unsegmented).get(partition).map(|(_, since)| *since)
    }

    pub fn segmenting(&self) -> bool {
        self.segmenting
    }

    pub fn partitions(&self) -> &[String] {
        &self.partitions
    }
}

/// The blob store as the processor sees it: checkpoints are the later of the blob's and
/// this instance's own committed position, so a partition that comes back is not read
/// again from an older blob checkpoint.
struct Positions {
    blob: Arc<BlobCheckpointStore>,
    shared: Arc<Shared>,
    /// With `start = "latest"`: partition properties, to pin "latest" (below).
    pin_latest: Option<Arc<ConsumerClient>>,
}

impl Positions {
    /// With `start = "latest"`, a partition nobody has checkpointed is pinned before it is
    /// opened: its last enqueued sequence number becomes its checkpoint blob (only if it
    /// still has none), so an owner that dies before its first checkpoint does not leave
    /// the next one to open at a later "latest" and skip what came in between (broadcast
    /// receivers pin "latest" the same way, in DuckDB).
    async fn pin(&self, namespace: &str, hub: &str, group: &str, missing: Vec<String>) -> azure_core::Result<bool> {
        let Some(client) = &self.pin_latest else { return Ok(false) };
        let mut pinned = false;
        for partition in missing {
            let properties = client.get_partition_properties(&partition).await.map_err(|e| {
                azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Io,
                    format!("reading partition {partition}'s properties: {e}"),
                )
            })?;
            let last = properties.last_enqueued_sequence_number;
            let checkpoint = position((namespace, hub, group), &partition, last, None);
            let made = self.blob.create_checkpoint(&checkpoint).await?;
            tracing::info!(hub = %hub, partition = %partition, after = last, made, "start = latest: partition pinned");
            pinned = true;
        }
        Ok(pinned)
    }
}

#[async_trait::async_trait]
impl CheckpointStore for Positions {
    async fn claim_ownership(&self, ownerships: &[Ownership]) -> azure_core::Result<Vec<Ownership>> {
        let won = self.blob.claim_ownership(ownerships).await?;
        let mut seen = lock(&self.shared.ownerships);
        seen.retain(|o| !won.iter().any(|w| w.partition_id == o.partition_id));
        seen.extend(won.iter().cloned());
        Ok(won)
    }

    async fn list_checkpoints(&self, namespace: &str, hub: &str, group: &str) -> azure_core::Result<Vec<Checkpoint>> {
        let listed = |list: Vec<Checkpoint>| -> HashMap<String, Checkpoint> {
            *lock(&self.shared.checkpointed) =
                list.iter().map(|c| (c.partition_id.clone(), c.sequence_number)).collect();
            list.into_iter().filter_map(usable).map(|c| (c.partition_id.clone(), c)).collect()
        };
        let mut by_partition = listed(self.blob.list_checkpoints(namespace, hub, group).await?);
        let missing: Vec<String> = {
            let stored = lock(&self.shared.stored);
            let unknown = |p: &&String| !by_partition.contains_key(*p) && !stored.contains_key(*p);
            self.shared.partitions.iter().filter(unknown).cloned().collect()
        };
        if !missing.is_empty() && self.pin(namespace, hub, group, missing).await? {
            // Another instance may have pinned first: its pin is the one.
            by_partition = listed(self.blob.list_checkpoints(namespace, hub, group).await?);
        }
        for (partition, ours) in lock(&self.shared.stored).iter() {
            let Some(sequence) = ours.sequence_number else { continue };
            let theirs = by_partition.get(partition).and_then(|c| c.sequence_number);
            if theirs.is_none_or(|theirs| theirs < sequence) {
                by_partition.insert(partition.clone(), position((namespace, hub, group), partition, sequence, None));
            }
        }
        *lock(&self.shared.started) = by_partition.clone();
        *lock(&self.shared.names) = Some((namespace.to_owned(), hub.to_owned(), group.to_owned()));
        Ok(by_partition.into_values().collect())
    }

    async fn list_ownerships(&self, namespace: &str, hub: &str, group: &str) -> azure_core::Result<Vec<Ownership>> {
        let listed = self.blob.list_ownerships(namespace, hub, group).await?;
        *lock(&self.shared.ownerships) = listed.clone();
        Ok(listed)
    }

    async fn update_checkpoint(&self, checkpoint: Checkpoint) -> azure_core::Result<()> {
        self.blob.update_checkpoint(checkpoint).await
    }
}

/// The checkpoint of `partition` at `sequence` in a consumer group's (namespace, hub, group).
fn position(names: (&str, &str, &str), partition: &str, sequence: i64, offset: Option<String>) -> Checkpoint {
    let (namespace, hub, group) = names;
    Checkpoint {
        fully_qualified_namespace: namespace.to_owned(),
        event_hub_name: hub.to_owned(),
        consumer_group: group.to_owned(),
        partition_id: partition.to_owned(),
        offset,
        sequence_number: Some(sequence),
    }
}

/// A checkpoint blob as the processor may start from: by its sequence number (as exact
/// as the offset, and checked as a number), or by a numeric offset if it has no sequence
/// number. Anyone who may write the container may write anything there: a value the
/// service would refuse would stop the processor's cycle at every try, so it is left out
/// (the partition starts from the configured start) and logged.
fn usable(mut checkpoint: Checkpoint) -> Option<Checkpoint> {
    let (partition, offset) = (checkpoint.partition_id.clone(), checkpoint.offset.take());
    checkpoint.sequence_number = checkpoint.sequence_number.filter(|s| *s >= -1);
    if checkpoint.sequence_number.is_none() {
        checkpoint.offset = offset.filter(|o| o.parse::<u64>().is_ok());
    }
    if checkpoint.sequence_number.is_none() && checkpoint.offset.is_none() {
        tracing::warn!(partition = %partition, "a checkpoint blob names no usable position; the partition starts from the configured start");
        return None;
    }
    Some(checkpoint)
}

/// One balanced hub's thread.
pub(super) struct Balancer {
    pub shared: Arc<Shared>,
    pub blob: Arc<BlobCheckpointStore>,
    pub config: BalanceConfig,
    pub connect: Connect,
    pub endpoint: Option<String>,
    pub start: StartAt,
    pub prefetch: u32,
    /// A receiver for each of the hub's partitions, by partition id, ready but for its
    /// position.
    pub templates: HashMap<String, Receiver>,
    /// Stops reading (the service is stopping).
    pub cancel: CancellationToken,
    /// The pipeline has committed its last rows: write their checkpoints and let go.
    pub finish: CancellationToken,
    pub status: Arc<HubsStatus>,
}

impl Balancer {
    pub fn spawn(self) -> Result<std::thread::JoinHandle<()>> {
        let name = format!("eh-balance-{}", self.shared.hub);
        Ok(std::thread::Builder::new().name(name.chars().take(15).collect()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => return tracing::error!(error = %error, "starting the balanced hub's runtime"),
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, self.run());
        })?)
    }

    async fn run(self) {
        let this = Rc::new(self);
        let writer = tokio::task::spawn_local(this.clone().write_checkpoints());
        let watcher = tokio::task::spawn_local(this.clone().watch_ownership());
        let mut delay = BACKOFF.0;
        while !this.cancel.is_cancelled() {
            match this.clone().process().await {
                Ok(()) => break,
                Err(error) => {
                    let message = format!("partition balancing: {error:#}");
                    tracing::warn!(hub = %this.shared.hub, error = %message, retry_in = ?delay,
                        "the partition balancer stopped; starting a new one");
                    // On the status page beside each of the hub's partitions: while this
                    // lasts none is read here (e.g. the container is missing or refused).
                    for template in this.templates.values() {
                        this.status.update(template.index, |p| p.last_error = Some(message.clone()));
                    }
                }
            }
            tokio::select! {
                _ = this.cancel.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(BACKOFF.1);
        }
        let _ = watcher.await;
        let _ = writer.await;
    }

    fn positions(&self, properties: &Arc<ConsumerClient>) -> Arc<Positions> {
        let pin_latest = (self.start == StartAt::Latest).then(|| properties.clone());
        Arc::new(Positions { blob: self.blob.clone(), shared: self.shared.clone(), pin_latest })
    }

    /// One processor, until the service stops (`Ok`) or its cycle fails (`Err`).
    async fn process(self: Rc<Self>) -> Result<()> {
        let hub = &self.shared.hub;
        let opening = self.connect.consumer(hub, &self.config.consumer_group, self.endpoint.as_deref());
        let consumer =
            tokio::time::timeout(CALL_TIMEOUT, opening).await.map_err(|_| anyhow!("connecting timed out"))??;
        // Partition properties for the readers (the processor keeps its client to itself).
        let opening = self.connect.consumer(hub, &self.config.consumer_group, self.endpoint.as_deref());
        let properties =
            Arc::new(tokio::time::timeout(CALL_TIMEOUT, opening).await.map_err(|_| anyhow!("connecting timed out"))??);
        let default = match self.start {
            StartAt::Earliest => StartLocation::Earliest,
            StartAt::Latest => StartLocation::Latest,
            StartAt::Time(us) => {
                StartLocation::EnqueuedTime(SystemTime::UNIX_EPOCH + Duration::from_micros(us.max(0) as u64))
            }
        };
        let inclusive = !matches!(default, StartLocation::Latest);
        let processor = EventProcessor::builder()
            .with_load_balancing_strategy(ProcessorStrategy::Balanced)
            .with_update_interval(azure_core::time::Duration::milliseconds(self.config.update_interval_ms as i64))
            .with_partition_expiration_duration(azure_core::time::Duration::milliseconds(self.config.expiry_ms as i64))
            .with_prefetch(self.prefetch)
            .with_start_positions(StartPositions {
                default: StartPosition { location: default, inclusive },
                ..Default::default()
            })
            .build(consumer, self.positions(&properties))
            .await
            .map_err(|e| anyhow!("building the event processor: {e}"))?;
        tracing::info!(hub = %hub, consumer_group = %self.config.consumer_group, "balancing partitions with the other instances");
        let readers = self.cancel.child_token();
        let mut tasks = Vec::new();
        let outcome = {
            let run = processor.run();
            tokio::pin!(run);
            loop {
                tokio::select! {
                    _ = self.cancel.cancelled() => break Ok(()),
                    ended = &mut run => break Err(match ended {
                        Ok(()) => anyhow!("the event processor stopped"),
                        Err(e) => anyhow!("the event processor's cycle failed: {e}"),
                    }),
                    next = processor.next_partition_client() => match next {
                        Ok(client) => {
                            let read = self.clone().read(client, properties.clone(), readers.clone());
                            tasks.push(tokio::task::spawn_local(read));
                        }
                        // The readers must stop with this processor (below), never outlive it.
                        Err(e) => break Err(anyhow!("the next partition: {e}")),
                    },
                }
            }
        };
        let _ = processor.shutdown().await;
        readers.cancel();
        for task in tasks {
            let _ = task.await;
        }
        // The processor holds a clone of the client (in `Positions`).
        drop(processor);
        if let Ok(properties) = Arc::try_unwrap(properties)
            && tokio::time::timeout(CALL_TIMEOUT, properties.close()).await.is_err()
        {
            tracing::debug!(hub = %hub, "closing the properties client timed out");
        }
        outcome
    }

    /// Reads one partition handed out by the processor until it is taken away (its
    /// stream ends), a receive error, or `cancel`.
    async fn read(
        self: Rc<Self>,
        client: Arc<PartitionClient>,
        properties: Arc<ConsumerClient>,
        cancel: CancellationToken,
    ) {
        let id = client.get_partition_id().to_owned();
        let Some(template) = self.templates.get(&id) else {
            return tracing::error!(hub = %self.shared.hub, partition = %id, "a partition the hub did not list at start");
        };
        let mut receiver = template.clone();
        receiver.cancel = cancel.clone();
        // Where the processor opened it: the checkpoint it was given (after that event).
        let start = lock(&self.shared.started).get(&id).cloned();
        if let Some(sequence) = start.as_ref().and_then(|c| c.sequence_number) {
            let ours = lock(&self.shared.stored).get(&id).cloned().filter(|c| c.sequence_number == Some(sequence));
            receiver.last = Some(sequence);
            receiver.last_offset = start.as_ref().and_then(|c| c.offset.clone());
            receiver.last_time = ours.as_ref().and_then(|c| c.event_time);
            // Only to notice events that expired unread (the first one is further on).
            receiver.verify = (sequence >= 0).then_some(Resume { sequence, offset: None, enqueued_us: None });
        }
        let forwarded = lock(&self.shared.forwarded).remove(&id);
        if let Some(passed) = forwarded.filter(|f| receiver.last.is_none_or(|last| f.sequence > last)) {
            // Still on its way to DuckDB: skipped as delivered again, not passed on twice.
            receiver.last = Some(passed.sequence);
            receiver.last_offset = passed.offset;
            receiver.last_time = passed.enqueued_us;
        }
        let opened_after = receiver.last;
        lock(&self.shared.owned).insert(id.clone());
        let index = receiver.index;
        self.status.update(index, |p| p.owned = true);
        tracing::info!(hub = %self.shared.hub, partition = %id, after = ?receiver.last, "partition taken: receiving");
        let outcome = tokio::select! {
            _ = cancel.cancelled() => Ok(()),
            outcome = receiver.forward(&properties, client.stream_events()) => outcome,
        };
        match outcome {
            Ok(()) => {}
            Err(error) if error.is::<super::StreamEnded>() => {
                tracing::info!(hub = %self.shared.hub, partition = %id, "partition released (claimed by another instance)");
            }
            Err(error) => {
                let message = format!("{error:#}");
                tracing::warn!(hub = %self.shared.hub, partition = %id, error = %message, "receive failed; the partition is opened again at the next cycle");
                receiver.note_error(message);
            }
        }
        // Not after a reset moved the partition back: then its new stream is read from
        // where the reset's record (committed) put it.
        if let Some(sequence) = receiver.last.filter(|end| opened_after.is_none_or(|start| *end >= start)) {
            let passed = Resume { sequence, offset: receiver.last_offset.clone(), enqueued_us: receiver.last_time };
            lock(&self.shared.forwarded).insert(id.clone(), passed);
        }
        lock(&self.shared.owned).remove(&id);
        self.status.update(index, |p| p.owned = false);
        // Out of the processor's map, so that it opens the partition again next cycle
        // if it still owns it.
        match Arc::try_unwrap(client) {
            Ok(client) => {
                if tokio::time::timeout(CALL_TIMEOUT, client.close()).await.is_err() {
                    tracing::debug!(partition = %id, "closing the partition client timed out");
                }
            }
            Err(_) => tracing::warn!(partition = %id, "the partition client is still in use; not closed"),
        }
    }

    /// Writes each committed position to its checkpoint blob, at most once a
    /// `checkpoint_interval_ms`; the last ones once the pipeline has finished.
    async fn write_checkpoints(self: Rc<Self>) {
        loop {
            let finished = tokio::select! {
                _ = self.shared.wake.notified() => false,
                _ = self.finish.cancelled() => true,
            };
            self.flush().await;
            if finished {
                self.relinquish().await;
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(self.config.checkpoint_interval_ms)) => {}
                _ = self.finish.cancelled() => {}
            }
        }
    }

    async fn flush(&self) {
        let Some((namespace, hub, group)) = lock(&self.shared.names).clone() else { return };
        let pending = std::mem::take(&mut *lock(&self.shared.pending));
        if pending.is_empty() {
            return;
        }
        let owned = lock(&self.shared.owned).clone();
        // A partition that moved on: its checkpoint only moves forward (the new owner
        // may be further already).
        let listed = if pending.keys().any(|p| !owned.contains(p)) {
            match self.blob.list_checkpoints(&namespace, &hub, &group).await {
                Ok(list) => list.into_iter().map(|c| (c.partition_id, c.sequence_number)).collect(),
                Err(error) => {
                    tracing::warn!(hub = %hub, error = %error, "listing checkpoints");
                    self.retry_later(pending);
                    return;
                }
            }
        } else {
            HashMap::new()
        };
        let mut failed = BTreeMap::new();
        for (partition, ours) in pending {
            let Some(sequence) = ours.sequence_number else { continue };
            if !owned.contains(&partition)
                && listed.get(&partition).copied().flatten().is_some_and(|theirs: i64| theirs >= sequence)
            {
                continue;
            }
            // Both, as the other SDKs write them (Python needs both to read it).
            let offset = ours.event_offset.clone().filter(|_| sequence >= 0);
            let checkpoint = position((&namespace, &hub, &group), &partition, sequence, offset);
            if let Err(error) = self.blob.update_checkpoint(checkpoint).await {
                tracing::warn!(hub = %hub, partition = %partition, error = %error, "writing the blob checkpoint");
                failed.insert(partition, ours);
            }
        }
        self.retry_later(failed);
    }

    /// Puts positions back for the next flush, unless a later commit replaced them.
    fn retry_later(&self, positions: BTreeMap<String, store::Checkpoint>) {
        if positions.is_empty() {
            return;
        }
        let mut pending = lock(&self.shared.pending);
        for (partition, checkpoint) in positions {
            pending.entry(partition).or_insert(checkpoint);
        }
        drop(pending);
        self.shared.wake.notify_one();
    }

    /// At a clean stop, gives up this instance's ownerships (owner id emptied, as the
    /// other SDKs do), so the others take them at their next cycle, not after the expiry.
    async fn relinquish(&self) {
        let Some((namespace, hub, group)) = lock(&self.shared.names).clone() else { return };
        let Some(me) = lock(&self.shared.me).clone() else { return };
        let ours: Vec<Ownership> = match self.blob.list_ownerships(&namespace, &hub, &group).await {
            Ok(list) => list
                .into_iter()
                .filter(|o| o.owner_id.as_deref() == Some(me.as_str()))
                .map(|o| Ownership { owner_id: None, ..o })
                .collect(),
            Err(error) => return tracing::warn!(hub = %hub, error = %error, "listing ownerships to give them up"),
        };
        match self.blob.claim_ownership(&ours).await {
            Ok(given) => tracing::info!(hub = %hub, partitions = given.len(), "gave up partition ownership"),
            Err(error) => tracing::warn!(hub = %hub, error = %error, "giving up partition ownership"),
        }
    }

    /// Keeps the status page's view of the consumer group: which instance owns which
    /// partition, and each partition's blob checkpoint, as the processor last listed them.
    async fn watch_ownership(self: Rc<Self>) {
        let every = Duration::from_millis(self.config.update_interval_ms);
        let expiry = Duration::from_millis(self.config.expiry_ms);
        loop {
            self.observe(expiry);
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    fn observe(&self, expiry: Duration) {
        let ownerships = lock(&self.shared.ownerships).clone();
        let checkpointed = lock(&self.shared.checkpointed).clone();
        let reading = lock(&self.shared.owned).clone();
        let me = ownerships.iter().filter(|o| reading.contains(&o.partition_id)).find_map(|o| o.owner_id.clone());
        if me.is_some() {
            *lock(&self.shared.me) = me.clone();
        }
        let me = lock(&self.shared.me).clone();
        let now = SystemTime::now();
        fn live(o: &Ownership, now: SystemTime, expiry: Duration) -> Option<&String> {
            o.owner_id.as_ref().filter(|_| o.last_modified_time.is_some_and(|t| SystemTime::from(t) + expiry > now))
        }
        let mut instances: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let owner_of: HashMap<&str, Option<&String>> =
            ownerships.iter().map(|o| (o.partition_id.as_str(), live(o, now, expiry))).collect();
        for o in &ownerships {
            if let Some(owner) = live(o, now, expiry) {
                instances.entry(owner.clone()).or_default().push(o.partition_id.clone());
            }
        }
        for (id, template) in &self.templates {
            let owner = owner_of.get(id.as_str()).copied().flatten().cloned();
            let sequence = checkpointed.get(id).copied().flatten();
            self.status.update(template.index, |p| {
                p.owner = owner;
                p.checkpointed_sequence = sequence;
            });
        }
        let mut all = lock(&self.status.instances);
        all.retain(|i| i.hub != self.shared.hub);
        for (owner, mut partitions) in instances {
            partitions.sort_by_key(|p| (p.len(), p.clone()));
            let this_instance = me.as_deref() == Some(owner.as_str());
            all.push(InstanceStatus { hub: self.shared.hub.clone(), owner_id: owner, this_instance, partitions });
        }
    }
}
