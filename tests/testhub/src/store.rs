//! In-memory event storage: hubs, partitions and their event logs.
//!
//! Storage is compact on purpose (tests preload gigabytes of backlog): an event keeps its
//! body bytes, its enqueued time and, only when the producer set any, a boxed [`Extras`]
//! (partition key, message properties, application properties). Everything else a producer
//! sends (header, delivery annotations, its own message annotations, footer) is dropped.
//!
//! Sequence numbers start at 0 in every partition and are the index into the partition's
//! log. **Offsets are sequence numbers**: the `x-opt-offset` of an event is its sequence
//! number as a string, and an offset filter is read as a sequence number filter.

use std::{
    ops::Range,
    sync::{
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use fe2o3_amqp_types::{
    messaging::{ApplicationProperties, Data, Properties},
    primitives::Binary,
};
use tokio::sync::watch;

use crate::{HubSpec, partition_key};

/// What the service reports as the enqueued time of an empty partition (0001-01-01T00:00:00Z).
pub(crate) const NEVER_MS: i64 = -62_135_596_800_000;

/// The consumer group every hub has.
pub(crate) const DEFAULT_CONSUMER_GROUP: &str = "$Default";

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// All hubs of one [`crate::TestHub`]. The set of hubs is fixed at start.
pub(crate) struct Store {
    hubs: Vec<Hub>,
}

impl Store {
    pub(crate) fn new(specs: &[HubSpec]) -> std::io::Result<Self> {
        let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
        let mut hubs: Vec<Hub> = Vec::with_capacity(specs.len());
        for spec in specs {
            let name = spec.name.trim();
            if name.is_empty() || name.contains('/') || name.starts_with('$') {
                return Err(invalid(format!("invalid event hub name {:?}", spec.name)));
            }
            if spec.partitions == 0 || spec.partitions > 1024 {
                return Err(invalid(format!(
                    "event hub {name:?}: partitions must be 1..=1024, not {}",
                    spec.partitions
                )));
            }
            if hubs.iter().any(|h| h.name.eq_ignore_ascii_case(name)) {
                return Err(invalid(format!("event hub {name:?} is declared twice")));
            }
            hubs.push(Hub::new(name, spec.partitions));
        }
        Ok(Self { hubs })
    }

    /// Looks a hub up by name, ignoring ASCII case like the service does.
    pub(crate) fn hub(&self, name: &str) -> Option<&Hub> {
        self.hubs.iter().find(|h| h.name.eq_ignore_ascii_case(name))
    }

    pub(crate) fn hubs(&self) -> &[Hub] {
        &self.hubs
    }
}

pub(crate) struct Hub {
    pub(crate) name: String,
    pub(crate) created_ms: i64,
    partitions: Vec<Partition>,
    /// Declared consumer groups besides `$Default`.
    consumer_groups: RwLock<Vec<String>>,
    round_robin: AtomicUsize,
}

impl Hub {
    fn new(name: &str, partitions: u32) -> Self {
        Self {
            name: name.to_string(),
            created_ms: now_ms(),
            partitions: (0..partitions).map(|_| Partition::new()).collect(),
            consumer_groups: RwLock::new(Vec::new()),
            round_robin: AtomicUsize::new(0),
        }
    }

    pub(crate) fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    pub(crate) fn partition(&self, id: u32) -> Option<&Partition> {
        self.partitions.get(id as usize)
    }

    /// Parses a partition id as the service spells it ("0", "1", ...), if it exists.
    pub(crate) fn parse_partition_id(&self, id: &str) -> Option<u32> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || (id.len() > 1 && id.starts_with('0')) {
            return None;
        }
        id.parse::<u32>().ok().filter(|&p| p < self.partition_count())
    }

    pub(crate) fn has_consumer_group(&self, group: &str) -> bool {
        group.eq_ignore_ascii_case(DEFAULT_CONSUMER_GROUP)
            || read(&self.consumer_groups).iter().any(|g| g.eq_ignore_ascii_case(group))
    }

    pub(crate) fn add_consumer_group(&self, group: &str) {
        if !self.has_consumer_group(group) {
            write(&self.consumer_groups).push(group.to_string());
        }
    }

    /// The partition for an event sent to the hub itself: by partition key (the service's
    /// hash, see [`partition_key`]) or else round robin.
    pub(crate) fn route(&self, partition_key: Option<&str>) -> u32 {
        match partition_key {
            Some(key) => partition_key::partition_for_key(key, self.partition_count()),
            None => (self.round_robin.fetch_add(1, Ordering::Relaxed) % self.partitions.len()) as u32,
        }
    }
}

/// Optional parts of an event, boxed so the common case (none) costs one pointer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extras {
    pub(crate) partition_key: Option<String>,
    pub(crate) properties: Option<Properties>,
    pub(crate) application_properties: Option<ApplicationProperties>,
}

impl Extras {
    fn boxed(self) -> Option<Box<Extras>> {
        if self.partition_key.is_none() && self.properties.is_none() && self.application_properties.is_none() {
            None
        } else {
            Some(Box::new(self))
        }
    }
}

/// An event to append.
pub(crate) struct NewEvent {
    pub(crate) body: Vec<u8>,
    pub(crate) extras: Extras,
}

impl NewEvent {
    pub(crate) fn body_only(body: Vec<u8>) -> Self {
        Self { body, extras: Extras::default() }
    }
}

struct StoredEvent {
    /// Shared with the receiver links that send it: a link serializes the message body
    /// from a reference to it, with no copy of the event first.
    body: Arc<Data>,
    enqueued_ms: i64,
    extras: Option<Box<Extras>>,
}

/// A copy of a stored event, handed to a receiver link.
pub(crate) struct EventCopy {
    pub(crate) sequence_number: i64,
    pub(crate) enqueued_ms: i64,
    pub(crate) body: Arc<Data>,
    pub(crate) extras: Option<Extras>,
}

/// What `$management` reports for a partition.
pub(crate) struct PartitionSnapshot {
    pub(crate) len: usize,
    pub(crate) last_enqueued_ms: i64,
}

pub(crate) struct Partition {
    log: RwLock<Vec<StoredEvent>>,
    /// The number of events in the log, published after every append; receiver links wait on it.
    tail: watch::Sender<usize>,
}

impl Partition {
    fn new() -> Self {
        Self { log: RwLock::new(Vec::new()), tail: watch::Sender::new(0) }
    }

    /// Appends events atomically (a batch stays contiguous) and returns their sequence numbers.
    /// Enqueued times never go backwards within a partition, so time filters can binary search.
    pub(crate) fn append(&self, events: impl IntoIterator<Item = NewEvent>) -> Range<i64> {
        let mut log = write(&self.log);
        let start = log.len() as i64;
        let enqueued_ms = now_ms().max(log.last().map_or(i64::MIN, |e| e.enqueued_ms));
        log.extend(events.into_iter().map(|e| StoredEvent {
            body: Arc::new(Data(Binary::from(e.body))),
            enqueued_ms,
            extras: e.extras.boxed(),
        }));
        let len = log.len();
        drop(log);
        self.tail.send_replace(len);
        start..len as i64
    }

    pub(crate) fn len(&self) -> usize {
        read(&self.log).len()
    }

    /// Forgets every event: the next one appended has sequence number 0 again.
    pub(crate) fn clear(&self) {
        write(&self.log).clear();
        self.tail.send_replace(0);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<usize> {
        self.tail.subscribe()
    }

    pub(crate) fn snapshot(&self) -> PartitionSnapshot {
        let log = read(&self.log);
        PartitionSnapshot { len: log.len(), last_enqueued_ms: log.last().map_or(NEVER_MS, |e| e.enqueued_ms) }
    }

    /// Up to `max_events` events (and roughly at most `max_bytes` of body) from `from` on.
    pub(crate) fn read(&self, from: usize, max_events: usize, max_bytes: usize) -> Vec<EventCopy> {
        let log = read(&self.log);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let tail = log.get(from..).unwrap_or_default();
        for (i, e) in tail.iter().take(max_events).enumerate() {
            if !out.is_empty() && bytes + e.body.0.len() > max_bytes {
                break;
            }
            bytes += e.body.0.len();
            out.push(EventCopy {
                sequence_number: (from + i) as i64,
                enqueued_ms: e.enqueued_ms,
                body: e.body.clone(),
                extras: e.extras.as_deref().cloned(),
            });
        }
        out
    }

    /// The index of the first event enqueued after (or at, if `inclusive`) `ms`.
    pub(crate) fn first_after_time(&self, ms: i64, inclusive: bool) -> usize {
        let log = read(&self.log);
        log.partition_point(|e| if inclusive { e.enqueued_ms < ms } else { e.enqueued_ms <= ms })
    }

    /// The enqueued time of the event at `index`, if it exists.
    #[cfg(test)]
    pub(crate) fn enqueued_ms(&self, index: usize) -> Option<i64> {
        read(&self.log).get(index).map(|e| e.enqueued_ms)
    }

    /// The body of the event at `index`, if it exists.
    pub(crate) fn body(&self, index: usize) -> Option<Vec<u8>> {
        read(&self.log).get(index).map(|e| e.body.0.to_vec())
    }
}

// A panic while holding a storage lock cannot leave the log half-written (pushes are
// atomic), so a poisoned lock is still safe to use.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, partitions: u32) -> HubSpec {
        HubSpec { name: name.into(), partitions }
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(Store::new(&[spec("", 1)]).is_err());
        assert!(Store::new(&[spec("a/b", 1)]).is_err());
        assert!(Store::new(&[spec("hub", 0)]).is_err());
        assert!(Store::new(&[spec("hub", 1), spec("HUB", 2)]).is_err());
        assert!(Store::new(&[spec("hub", 4)]).is_ok());
    }

    #[test]
    fn partition_ids_are_canonical() {
        let store = Store::new(&[spec("hub", 4)]).unwrap();
        let hub = store.hub("HUB").unwrap();
        assert_eq!(hub.parse_partition_id("0"), Some(0));
        assert_eq!(hub.parse_partition_id("3"), Some(3));
        assert_eq!(hub.parse_partition_id("4"), None);
        assert_eq!(hub.parse_partition_id("01"), None);
        assert_eq!(hub.parse_partition_id("-1"), None);
        assert_eq!(hub.parse_partition_id(""), None);
    }

    #[test]
    fn append_read_and_time_search() {
        let store = Store::new(&[spec("hub", 1)]).unwrap();
        let p = store.hub("hub").unwrap().partition(0).unwrap();
        assert_eq!(p.append((0..3).map(|i| NewEvent::body_only(vec![i]))), 0..3);
        assert_eq!(p.append([NewEvent::body_only(vec![9])]), 3..4);
        let got = p.read(1, 2, usize::MAX);
        assert_eq!(got.iter().map(|e| e.sequence_number).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(got[1].body.0.as_slice(), [2]);
        assert!(p.read(4, 10, usize::MAX).is_empty());
        // The byte budget still lets one event through.
        assert_eq!(p.read(0, 10, 0).len(), 1);
        let t = p.enqueued_ms(0).unwrap();
        assert_eq!(p.first_after_time(t, true), 0);
        assert!(p.first_after_time(t, false) >= 1);
        assert_eq!(p.first_after_time(i64::MAX, true), 4);
        assert_eq!(p.snapshot().len, 4);
    }

    #[test]
    fn consumer_groups() {
        let store = Store::new(&[spec("hub", 1)]).unwrap();
        let hub = store.hub("hub").unwrap();
        assert!(hub.has_consumer_group("$Default"));
        assert!(hub.has_consumer_group("$default"));
        assert!(!hub.has_consumer_group("ingest"));
        hub.add_consumer_group("ingest");
        assert!(hub.has_consumer_group("Ingest"));
    }
}
