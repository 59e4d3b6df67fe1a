//! The Event Hubs blob checkpoint store (src/source/blob_checkpoints.rs) against a real
//! Azurite: etag-conditional claims, the blob names and metadata keys every SDK shares,
//! and Python's `azure-eventhub-checkpointstoreblob` reading and writing the same blobs.

use crate::common::azurite::{Azurite, KEY};
use azure_messaging_eventhubs::models::{Checkpoint, Ownership, StartPositions};
use azure_messaging_eventhubs::{
    CheckpointStore, ConsumerClient, EventProcessor, ProcessorStrategy, StartLocation, StartPosition,
};
use futures::{StreamExt, TryStreamExt};
use object_store::{Attribute, ObjectStore};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokentrail::source::blob_checkpoints::BlobCheckpointStore;
use tokentrail_testhub::{HubSpec, TestHub};

/// Mixed case on purpose: the blob names are lower-cased, the returned fields are not.
const NAMESPACE: &str = "TokenTrail-Test.servicebus.windows.net";
const HUB: &str = "Audit";
const GROUP: &str = "$Default";
/// The lower-cased prefix the other SDKs use.
const PREFIX: &str = "tokentrail-test.servicebus.windows.net/audit/$default";

fn store(azurite: &Azurite, container: &str) -> BlobCheckpointStore {
    let url = url::Url::parse(&format!("{}/{container}", azurite.endpoint())).unwrap();
    BlobCheckpointStore::emulator(&url, KEY).expect("checkpoint store on Azurite")
}

fn ownership(partition: &str, owner: &str, etag: Option<&Ownership>) -> Ownership {
    Ownership {
        fully_qualified_namespace: NAMESPACE.into(),
        event_hub_name: HUB.into(),
        consumer_group: GROUP.into(),
        partition_id: partition.into(),
        owner_id: Some(owner.into()),
        etag: etag.and_then(|o| o.etag.clone()),
        last_modified_time: None,
    }
}

fn checkpoint(partition: &str, offset: &str, sequence_number: i64) -> Checkpoint {
    Checkpoint {
        fully_qualified_namespace: NAMESPACE.into(),
        event_hub_name: HUB.into(),
        consumer_group: GROUP.into(),
        partition_id: partition.into(),
        offset: Some(offset.into()),
        sequence_number: Some(sequence_number),
    }
}

/// The blob's user metadata, read with object_store (not the code under test).
async fn metadata(azurite: &Azurite, container: &str, name: &str) -> Vec<(String, String)> {
    let blob = azurite.object_store(container);
    let got = blob
        .get_opts(&name.into(), object_store::GetOptions { head: true, ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("head {name}: {e}"));
    let mut pairs: Vec<(String, String)> = got
        .attributes
        .iter()
        .filter_map(|(k, v)| match k {
            Attribute::Metadata(key) => Some((key.to_string(), v.to_string())),
            _ => None,
        })
        .collect();
    pairs.sort();
    pairs
}

#[tokio::test]
async fn claims_are_etag_conditional_in_the_layout_every_sdk_shares() {
    let azurite = Azurite::start();
    assert!(azurite.create_container("checkpoints"));
    let a = store(&azurite, "checkpoints");
    let b = store(&azurite, "checkpoints");

    // First claims (If-None-Match: *).
    let wanted: Vec<Ownership> = ["0", "1", "2", "3"].iter().map(|p| ownership(p, "a", None)).collect();
    let won = a.claim_ownership(&wanted).await.expect("first claims");
    assert_eq!(won.iter().map(|o| o.partition_id.as_str()).collect::<Vec<_>>(), ["0", "1", "2", "3"]);
    assert!(won.iter().all(|o| o.etag.is_some() && o.last_modified_time.is_some()));
    assert_eq!(won[0].consumer_group, GROUP, "the returned fields keep the caller's case");

    // A second first claim finds the blob there: lost, not an error (an error would end
    // the EventProcessor's run loop).
    let lost = b.claim_ownership(&[ownership("0", "b", None)]).await.expect("a lost claim is not an error");
    assert!(lost.is_empty(), "{lost:?}");

    // b takes partition 0 with the etag it saw; a's renewal with its old etag then fails.
    let listed = b.list_ownerships(NAMESPACE, HUB, GROUP).await.expect("list");
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0].etag, won[0].etag, "a listed etag equals the claimed one");
    assert_eq!(listed[0].owner_id.as_deref(), Some("a"));
    let taken = b.claim_ownership(&[ownership("0", "b", Some(&listed[0]))]).await.expect("steal");
    assert_eq!(taken.len(), 1);
    assert_ne!(taken[0].etag, won[0].etag, "a claim rotates the etag");
    let stale = a.claim_ownership(&[ownership("0", "a", Some(&won[0]))]).await.expect("stale renewal");
    assert!(stale.is_empty(), "a stale etag must not win: {stale:?}");
    // A renewal with the current etag wins, and only the partitions claimed come back.
    let renewed = a
        .claim_ownership(&[ownership("0", "a", Some(&won[0])), ownership("1", "a", Some(&won[1]))])
        .await
        .expect("renewal");
    assert_eq!(renewed.iter().map(|o| o.partition_id.as_str()).collect::<Vec<_>>(), ["1"]);

    // Two instances claiming one unowned partition at once: exactly one wins.
    let (for_a, for_b) = ([ownership("4", "a", None)], [ownership("4", "b", None)]);
    let (x, y) = tokio::join!(a.claim_ownership(&for_a), b.claim_ownership(&for_b));
    assert_eq!(x.unwrap().len() + y.unwrap().len(), 1, "one winner of a contested first claim");

    let owners: Vec<(String, Option<String>)> = a
        .list_ownerships(NAMESPACE, HUB, GROUP)
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.partition_id, o.owner_id))
        .collect();
    assert_eq!(
        &owners[..4],
        [
            ("0".into(), Some("b".into())),
            ("1".into(), Some("a".into())),
            ("2".into(), Some("a".into())),
            ("3".into(), Some("a".into()))
        ]
    );

    // Checkpoints: written unconditionally, listed back.
    a.update_checkpoint(checkpoint("1", "4096", 17)).await.expect("first checkpoint");
    a.update_checkpoint(checkpoint("1", "8192", 33)).await.expect("second checkpoint");
    let checkpoints = b.list_checkpoints(NAMESPACE, HUB, GROUP).await.expect("list checkpoints");
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].partition_id, "1");
    assert_eq!(checkpoints[0].offset.as_deref(), Some("8192"));
    assert_eq!(checkpoints[0].sequence_number, Some(33));
    assert!(a.list_checkpoints(NAMESPACE, "other", GROUP).await.unwrap().is_empty());

    // The exact names and metadata keys, read without the code under test.
    let names: Vec<String> =
        azurite.object_store("checkpoints").list(None).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
    let mut names = names;
    names.sort();
    let expected: Vec<String> =
        ["checkpoint/1", "ownership/0", "ownership/1", "ownership/2", "ownership/3", "ownership/4"]
            .iter()
            .map(|n| format!("{PREFIX}/{n}"))
            .collect();
    assert_eq!(names, expected);
    assert_eq!(
        metadata(&azurite, "checkpoints", &format!("{PREFIX}/ownership/0")).await,
        [("ownerid".to_owned(), "b".to_owned())]
    );
    assert_eq!(
        metadata(&azurite, "checkpoints", &format!("{PREFIX}/checkpoint/1")).await,
        [("offset".to_owned(), "8192".to_owned()), ("sequencenumber".to_owned(), "33".to_owned())]
    );
}

#[tokio::test]
async fn a_missing_container_is_an_error_not_an_empty_list() {
    let azurite = Azurite::start();
    let store = store(&azurite, "absent");
    let err = store.list_ownerships(NAMESPACE, HUB, GROUP).await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    // Every claim failing for that reason is an error too (the caller must see it).
    assert!(store.claim_ownership(&[ownership("0", "a", None)]).await.is_err());
}

/// Python's store (`azure-eventhub-checkpointstoreblob`, sync) in the venv `.ci/run` makes.
const PYTHON: &str = r#"
import json, sys
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore
endpoint, key, container, ns, hub, group, stale = sys.argv[1:8]
conn = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint={endpoint};"
store = BlobCheckpointStore.from_connection_string(conn, container)
seen = {
    "ownerships": [{"partition_id": o["partition_id"], "owner_id": o["owner_id"], "etag": o["etag"]}
                   for o in store.list_ownership(ns, hub, group)],
    "checkpoints": [{"partition_id": c["partition_id"], "offset": c["offset"], "sequence_number": c["sequence_number"]}
                    for c in store.list_checkpoints(ns, hub, group)],
}
def ownership(partition, etag=None):
    o = {"fully_qualified_namespace": ns, "eventhub_name": hub, "consumer_group": group,
         "partition_id": partition, "owner_id": "python"}
    if etag:
        o["etag"] = etag
    return o
# Partition 0 is Rust's, renewed since the etag `stale`: a claim with it must lose. (Not a
# first claim: Azurite 3.35 ignores If-None-Match: * on Set Blob Metadata, Python's first
# step, so on Azurite Python's first claim of an owned partition wins; Azure refuses it.)
# Partition 2 is free.
lost = store.claim_ownership([ownership("0", stale)])
won = store.claim_ownership([ownership("2")])
store.update_checkpoint({"fully_qualified_namespace": ns, "eventhub_name": hub, "consumer_group": group,
                         "partition_id": "2", "offset": "512", "sequence_number": 5})
# Partition 1 with the etag Rust's claim gave, as listed: Python takes it.
etag1 = [o["etag"] for o in seen["ownerships"] if o["partition_id"] == "1"][0]
taken = store.claim_ownership([ownership("1", etag1)])
seen["lost"] = len(lost)
seen["won"] = len(won)
seen["taken"] = len(taken)
print(json.dumps(seen))
"#;

#[tokio::test]
async fn python_and_rust_stores_read_and_respect_each_others_blobs() {
    let python = PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/tokentrail-venv/bin/python");
    let azurite = Azurite::start();
    assert!(azurite.create_container("shared"));
    let rust = store(&azurite, "shared");

    let won = rust.claim_ownership(&[ownership("0", "rust", None), ownership("1", "rust", None)]).await.unwrap();
    assert_eq!(won.len(), 2);
    rust.update_checkpoint(checkpoint("0", "1024", 9)).await.unwrap();
    let renewed = rust.claim_ownership(&[ownership("0", "rust", Some(&won[0]))]).await.unwrap();
    assert_eq!(renewed.len(), 1);
    let stale = won[0].etag.as_ref().unwrap().to_string();

    let out = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(PYTHON)
        .args([&azurite.endpoint(), KEY, "shared", NAMESPACE, HUB, GROUP, &stale])
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}: {e} (.ci/run makes the venv)", python.display()));
    assert!(
        out.status.success(),
        "python (.ci/run installs azure-eventhub-checkpointstoreblob==1.2.0 in the venv): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("python's JSON");

    // Python read what Rust wrote: owners, etags and checkpoint values.
    let owners: Vec<(&str, &str)> = seen["ownerships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["partition_id"].as_str().unwrap(), o["owner_id"].as_str().unwrap()))
        .collect();
    assert_eq!(owners, [("0", "rust"), ("1", "rust")]);
    assert_eq!(seen["checkpoints"][0]["partition_id"], "0");
    assert_eq!(seen["checkpoints"][0]["offset"], "1024");
    assert_eq!(seen["checkpoints"][0]["sequence_number"], 9);
    // And respected Rust's claim, while taking a free partition and one by its etag.
    assert_eq!((seen["lost"].as_i64(), seen["won"].as_i64(), seen["taken"].as_i64()), (Some(0), Some(1), Some(1)));

    // Rust reads what Python wrote, and its renewal of partition 1 with the old etag fails.
    let listed = rust.list_ownerships(NAMESPACE, HUB, GROUP).await.unwrap();
    let owners: Vec<(&str, Option<&str>)> =
        listed.iter().map(|o| (o.partition_id.as_str(), o.owner_id.as_deref())).collect();
    assert_eq!(owners, [("0", Some("rust")), ("1", Some("python")), ("2", Some("python"))]);
    let stale = rust.claim_ownership(&[ownership("1", "rust", Some(&won[1]))]).await.unwrap();
    assert!(stale.is_empty(), "{stale:?}");
    let checkpoints = rust.list_checkpoints(NAMESPACE, HUB, GROUP).await.unwrap();
    let positions: Vec<(&str, Option<&str>, Option<i64>)> =
        checkpoints.iter().map(|c| (c.partition_id.as_str(), c.offset.as_deref(), c.sequence_number)).collect();
    assert_eq!(positions, [("0", Some("1024"), Some(9)), ("2", Some("512"), Some(5))]);
    // Rust takes partition 2 back with the etag Python's claim left (as listed).
    let back = rust.claim_ownership(&[ownership("2", "rust", Some(&listed[2]))]).await.unwrap();
    assert_eq!(back.len(), 1);
}

/// One `EventProcessor` (balanced) over the blob store, its partitions read in tasks
/// that checkpoint every event; aborting them is a crash (no ownership given back).
struct Processor {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Processor {
    async fn start(hub: &TestHub, azurite: &Azurite) -> Processor {
        let consumer = ConsumerClient::builder()
            .with_custom_endpoint(hub.endpoint())
            .open_with_connection_string(&hub.connection_string(EH_HUB), Some(EH_HUB))
            .await
            .expect("consumer on the test hub");
        // Seconds, not the 30 s / 2 min defaults (the expiry must exceed the interval).
        let processor = EventProcessor::builder()
            .with_load_balancing_strategy(ProcessorStrategy::Balanced)
            .with_update_interval(azure_core::time::Duration::milliseconds(200))
            .with_partition_expiration_duration(azure_core::time::Duration::seconds(2))
            .with_start_positions(StartPositions {
                default: StartPosition { location: StartLocation::Earliest, inclusive: true },
                ..Default::default()
            })
            .build(consumer, Arc::new(store(azurite, "processors")))
            .await
            .expect("event processor");
        let runner = tokio::spawn({
            let processor = processor.clone();
            async move {
                if let Err(e) = processor.run().await {
                    panic!("EventProcessor::run ended: {e:?}");
                }
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let dispatcher = tokio::spawn({
            let stop = stop.clone();
            async move {
                while let Ok(client) = processor.next_partition_client().await {
                    // The event stream is not Send: each partition on a thread of its own.
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                        runtime.block_on(async {
                            let stream = client.stream_events();
                            futures::pin_mut!(stream);
                            while let Some(Ok(event)) = stream.next().await {
                                if stop.load(Ordering::Relaxed) || client.update_checkpoint(&event).await.is_err() {
                                    break;
                                }
                            }
                        })
                    });
                }
            }
        });
        Processor { tasks: vec![runner, dispatcher], stop }
    }

    fn crash(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.abort();
        }
    }
}

const EH_HUB: &str = "audit";

/// Owners' partition counts, largest first, from the blobs (unexpired claims only).
async fn owner_counts(store: &BlobCheckpointStore, namespace: &str, expiry: Duration) -> Vec<usize> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for o in store.list_ownerships(namespace, EH_HUB, GROUP).await.unwrap() {
        let fresh = o.last_modified_time.is_some_and(|t| t + expiry > std::time::SystemTime::now());
        if let (Some(owner), true) = (o.owner_id, fresh) {
            *counts.entry(owner).or_default() += 1;
        }
    }
    let mut counts: Vec<usize> = counts.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    counts
}

async fn wait_for(what: &str, store: &BlobCheckpointStore, namespace: &str, want: &[usize]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = owner_counts(store, namespace, Duration::from_secs(2)).await;
        if counts == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: owners hold {counts:?}, not {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_processors_share_partitions_through_the_blobs_and_take_over_a_crashed_one() {
    let azurite = Azurite::start();
    assert!(azurite.create_container("processors"));
    let hub = TestHub::start(&[HubSpec { name: EH_HUB.into(), partitions: 8 }]).expect("test hub");
    for partition in 0..8 {
        hub.append_batch(EH_HUB, partition, (0..5).map(|i| format!("{{\"n\":{i}}}").into_bytes()));
    }
    let observer = store(&azurite, "processors");

    let a = Processor::start(&hub, &azurite).await;
    // The namespace the processor writes under: the one blob prefix there is.
    let namespace = loop {
        let names: Vec<String> = azurite
            .object_store("processors")
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        if let Some(name) = names.first() {
            break name.split('/').next().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    wait_for("one processor", &observer, &namespace, &[8]).await;

    let b = Processor::start(&hub, &azurite).await;
    wait_for("two processors", &observer, &namespace, &[4, 4]).await;

    // Every partition was read and checkpointed to its last event (sequence number 4).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let checkpoints = observer.list_checkpoints(&namespace, EH_HUB, GROUP).await.unwrap();
        if checkpoints.len() == 8 && checkpoints.iter().all(|c| c.sequence_number == Some(4)) {
            break;
        }
        assert!(Instant::now() < deadline, "checkpoints: {checkpoints:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A crash: b's claims expire and a takes its partitions back.
    b.crash();
    wait_for("after a crash", &observer, &namespace, &[8]).await;
    a.crash();
}

#[tokio::test]
async fn ownerships_and_checkpoints_listed_over_several_pages_are_all_there() {
    let azurite = Azurite::start();
    assert!(azurite.create_container("paged"));
    // Two blobs an answer: seven partitions take four answers, followed by their markers.
    let paged = store(&azurite, "paged").with_page_size(2);
    let claims: Vec<Ownership> = (0..7).map(|p| ownership(&p.to_string(), "a", None)).collect();
    assert_eq!(paged.claim_ownership(&claims).await.unwrap().len(), 7);
    for p in 0..7 {
        paged.update_checkpoint(checkpoint(&p.to_string(), "4096", p)).await.unwrap();
    }
    let owned = paged.list_ownerships(NAMESPACE, HUB, GROUP).await.unwrap();
    let partitions: Vec<&str> = owned.iter().map(|o| o.partition_id.as_str()).collect();
    assert_eq!(partitions, ["0", "1", "2", "3", "4", "5", "6"]);
    let checkpoints = paged.list_checkpoints(NAMESPACE, HUB, GROUP).await.unwrap();
    let sequences: Vec<Option<i64>> = checkpoints.iter().map(|c| c.sequence_number).collect();
    assert_eq!(sequences, (0..7).map(Some).collect::<Vec<_>>());
}
