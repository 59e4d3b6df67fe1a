//! Several `tokentrail serve` instances share a balanced hub's partitions through Event
//! Hubs' own partition ownership over blobs ([eventhubs.balance]): the real binaries, the
//! test hub over AMQP (32 partitions), a real Azurite, short ownership intervals (300 ms,
//! expiry 3 s) so that takeovers take seconds, not the minutes of the defaults.

use crate::common::azurite::{Azurite, KEY};
use crate::eventhubs::{HUB, Service, cosmos_file, envelopes, hub, preload, value};
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokentrail_testhub::TestHub;

const PARTITIONS: u32 = 32;
const EXPIRY: Duration = Duration::from_secs(3);

fn balanced(azurite: &Azurite) -> String {
    format!(
        "[eventhubs.balance]\nhubs = [\"{HUB}\"]\ncheckpoint_store = \"{}/checkpoints\"\n\
         update_interval_ms = 300\nexpiry_ms = {}\n",
        azurite.endpoint(),
        EXPIRY.as_millis()
    )
}

fn instance(root: &Path, name: &str, hub: &TestHub, azurite: &Azurite) -> Service {
    configured(root, name, hub, azurite, "")
}

/// [`instance`] with `eventhubs` added to its `[eventhubs]` section.
fn configured(root: &Path, name: &str, hub: &TestHub, azurite: &Azurite, eventhubs: &str) -> Service {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut service = Service::new(&dir, hub, &format!("{eventhubs}{}", balanced(azurite)));
    service.env.push(("TOKENTRAIL_CHECKPOINT_ACCOUNT_KEY".into(), KEY.into()));
    service.start();
    service
}

/// An instance writing to the shared lake at `lake` (a directory or Azurite's URL;
/// segments every 300 ms).
fn sharing(root: &Path, name: &str, hub: &TestHub, azurite: &Azurite, lake: &str) -> Service {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let balance = format!("{}shared_lake = {lake:?}\nsegment_interval_ms = 300\n", balanced(azurite));
    let mut service = Service::new(&dir, hub, &balance);
    service.env.push(("TOKENTRAIL_CHECKPOINT_ACCOUNT_KEY".into(), KEY.into()));
    service.env.push(("TOKENTRAIL_LAKE_ACCOUNT_KEY".into(), KEY.into()));
    service.start();
    service
}

/// Partitions by owner id, as an instance's `/api/status` shows the ownership blobs, and
/// the partitions that instance reads itself.
/// Partitions by owner id (the ownership blobs), and those the instance reads itself.
type Ownership = (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>);

fn ownership(service: &Service) -> Option<Ownership> {
    let status = service.status()?;
    let mut owners = BTreeMap::new();
    for i in status["instances"].as_array()? {
        let partitions = i["partitions"].as_array()?.iter().filter_map(|p| p.as_str().map(str::to_owned)).collect();
        owners.insert(i["owner_id"].as_str()?.to_owned(), partitions);
    }
    let reading = status["eventhubs"]
        .as_array()?
        .iter()
        .filter(|p| p["owned"].as_bool() == Some(true))
        .filter_map(|p| p["partition"].as_str().map(str::to_owned))
        .collect();
    Some((owners, reading))
}

/// Waits until the live instances (`alive`) read `PARTITIONS` between them, each about
/// its share (`PARTITIONS / n`, rounded down or up), no partition read by two, and the
/// ownership blobs agree. Returns how long it took.
fn wait_for_even_spread(alive: &[&Service], others: usize, timeout: Duration) -> Duration {
    let started = Instant::now();
    let members = alive.len() + others;
    let (low, high) = (PARTITIONS as usize / members, (PARTITIONS as usize).div_ceil(members));
    let mut last = String::new();
    loop {
        let views: Vec<_> = alive.iter().map(|s| ownership(s)).collect();
        if let Some(views) = views.into_iter().collect::<Option<Vec<_>>>() {
            let read: Vec<&BTreeSet<String>> = views.iter().map(|(_, reading)| reading).collect();
            let all: BTreeSet<&String> = read.iter().flat_map(|r| r.iter()).collect();
            let total: usize = read.iter().map(|r| r.len()).sum();
            let (owners, _) = &views[0];
            let blob_counts: Vec<usize> = owners.values().map(BTreeSet::len).collect();
            let even = read.iter().all(|r| (low..=high).contains(&r.len()))
                && owners.len() == members
                && blob_counts.iter().all(|n| (low..=high).contains(n));
            if even && all.len() == total && (others > 0 || total == PARTITIONS as usize) {
                return started.elapsed();
            }
            last = format!(
                "read here: {:?}; ownership blobs: {:?}",
                read.iter().map(|r| r.len()).collect::<Vec<_>>(),
                blob_counts
            );
        }
        assert!(
            started.elapsed() < timeout,
            "partitions not spread over {members} members in {timeout:?}: {last}\nstatus: {:?}\nlog:\n{}",
            alive[0].status().map(|s| s["instances"].clone()),
            alive[0].log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `service` shows no lag on any partition: those it reads committed to their
/// last event, the others checkpointed there by their owners.
fn wait_for_no_lag(service: &Service) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let partitions = service.status().and_then(|s| s["eventhubs"].as_array().cloned()).unwrap_or_default();
        if partitions.len() == PARTITIONS as usize && partitions.iter().all(|p| p["lag"].as_i64() == Some(0)) {
            return;
        }
        assert!(Instant::now() < deadline, "partitions still lag: {partitions:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Cosmos DB rows stored by an instance so far (its `/api/status`).
fn cosmos_rows(service: &Service) -> i64 {
    service
        .status()
        .and_then(|s| {
            s["tables"]
                .as_array()?
                .iter()
                .find(|t| t["table_name"] == "cosmos_requests")
                .and_then(|t| t["rows"].as_i64())
        })
        .unwrap_or(0)
}

fn db_files(services: &[&Service]) -> Vec<PathBuf> {
    services.iter().map(|s| s.db.clone()).collect()
}

/// Every request's activity id over all the instances' databases (read after they stop):
/// (rows, distinct ids), and each database's own rows and distinct ids.
fn stored(dbs: &[PathBuf]) -> (i64, i64, Vec<(i64, i64)>) {
    let connection = duckdb::Connection::open_in_memory().unwrap();
    let mut each = Vec::new();
    let mut union = Vec::new();
    for (i, db) in dbs.iter().enumerate() {
        connection.execute(&format!("ATTACH '{}' AS db{i} (READ_ONLY)", db.display()), []).unwrap();
        let (rows, distinct): (i64, i64) = connection
            .query_row(&format!("SELECT count(*), count(DISTINCT activity_id) FROM db{i}.cosmos_requests"), [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        each.push((rows, distinct));
        union.push(format!("SELECT activity_id FROM db{i}.cosmos_requests"));
    }
    let sql = format!("SELECT count(*), count(DISTINCT activity_id) FROM ({})", union.join(" UNION ALL "));
    let (rows, distinct) = connection.query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    (rows, distinct, each)
}

#[test]
fn instances_share_32_partitions_take_over_after_kills_and_make_room_for_a_newcomer() {
    let root = tempfile::tempdir().unwrap();
    let hub = hub(PARTITIONS);
    let azurite = Azurite::start();
    assert!(azurite.create_container("checkpoints"));
    // A backlog before anyone reads, then more while instances are killed.
    let backlog = envelopes(&cosmos_file(root.path(), 32_000, 1), 50);
    let live = envelopes(&cosmos_file(root.path(), 16_000, 2), 50);
    preload(&hub, backlog, PARTITIONS);
    // A checkpoint blob anyone who may write the container could plant, with values the
    // service would refuse: partition 5 starts from the configured start instead, and the
    // processors' cycles go on.
    let blobs = azurite.object_store("checkpoints");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut planted = object_store::Attributes::new();
    planted.insert(object_store::Attribute::Metadata("offset".into()), "'; DROP TABLE checkpoints; --".into());
    planted.insert(object_store::Attribute::Metadata("sequencenumber".into()), "-7".into());
    let options = object_store::PutOptions { attributes: planted, ..Default::default() };
    let name = format!("127.0.0.1/{HUB}/$default/checkpoint/5");
    runtime.block_on(blobs.put_opts(&name.as_str().into(), object_store::PutPayload::default(), options)).unwrap();

    let mut a = instance(root.path(), "a", &hub, &azurite);
    let mut b = instance(root.path(), "b", &hub, &azurite);
    let mut c = instance(root.path(), "c", &hub, &azurite);
    let spread = wait_for_even_spread(&[&a, &b, &c], 0, Duration::from_secs(90));
    eprintln!("three instances spread 32 partitions in {spread:?}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while cosmos_rows(&a) + cosmos_rows(&b) + cosmos_rows(&c) < 32_000 {
        assert!(Instant::now() < deadline, "the backlog was not stored by the three:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let each: Vec<i64> = [&a, &b, &c].iter().map(|s| cosmos_rows(s)).collect();
    assert!(each.iter().all(|n| *n > 0), "every instance stored part of the backlog: {each:?}");
    // On-call sees the instances and what each owns on the overview, in headless Chromium.
    overview_shows_the_instances(&a, 3);

    // Events keep coming while instances die: a third of them before each kill.
    let mut live = live.into_iter();
    let mut send = |n: usize| {
        for (i, body) in live.by_ref().take(n).enumerate() {
            hub.append(HUB, i as u32 % PARTITIONS, body);
        }
    };
    // Kill 1: the two others take its partitions once its ownerships expire.
    send(107);
    a.signal(libc::SIGKILL);
    let taken = wait_for_even_spread(&[&b, &c], 0, EXPIRY + Duration::from_secs(30));
    eprintln!("kill 1: the survivors read all 32 partitions {taken:?} after the kill");
    // A fourth joins and takes its share.
    let mut d = instance(root.path(), "d", &hub, &azurite);
    wait_for_even_spread(&[&b, &c, &d], 0, Duration::from_secs(60));
    // Kill 2 and 3, with the first instance back in between.
    send(107);
    b.signal(libc::SIGKILL);
    let taken = wait_for_even_spread(&[&c, &d], 0, EXPIRY + Duration::from_secs(30));
    eprintln!("kill 2: taken over in {taken:?}");
    a.start();
    wait_for_even_spread(&[&a, &c, &d], 0, Duration::from_secs(60));
    send(106);
    c.signal(libc::SIGKILL);
    let taken = wait_for_even_spread(&[&a, &d], 0, EXPIRY + Duration::from_secs(30));
    eprintln!("kill 3: taken over in {taken:?}");

    // Everything sent is stored: wait until every partition is checkpointed to its end.
    wait_for_no_lag(&a);
    a.stop();
    d.stop();
    let (rows, distinct, each) = stored(&db_files(&[&a, &b, &c, &d]));
    assert_eq!(distinct, 48_000, "every request stored by some instance ({rows} rows in all)");
    for (i, (rows, distinct)) in each.iter().enumerate() {
        assert_eq!(rows, distinct, "instance {i} stored no request twice");
    }
    // What a killed owner stored after its last blob checkpoint may be stored again by
    // the next owner (each instance has its own file): at most about a second of events.
    eprintln!("stored {rows} rows for 48000 requests over 4 instances ({} overlap)", rows - distinct);
    assert!(rows - distinct <= 9_000, "overlap beyond the last blob checkpoints: {}", rows - distinct);

    // A clean stop gives its ownerships up (owner id emptied), and the checkpoint blobs
    // hold each partition's last event.
    let metadata = |name: String| {
        runtime.block_on(async {
            let got = blobs.get(&name.as_str().into()).await.unwrap();
            got.attributes
                .iter()
                .filter_map(|(k, v)| match k {
                    object_store::Attribute::Metadata(k) => Some((k.to_string(), v.to_string())),
                    _ => None,
                })
                .collect::<BTreeMap<String, String>>()
        })
    };
    let prefix = format!("127.0.0.1/{HUB}/$default");
    for partition in 0..PARTITIONS {
        let events = hub.event_count(HUB, partition) as i64;
        let checkpoint = metadata(format!("{prefix}/checkpoint/{partition}"));
        assert_eq!(checkpoint.get("sequencenumber"), Some(&(events - 1).to_string()), "partition {partition}");
        let owner = metadata(format!("{prefix}/ownership/{partition}"));
        assert_eq!(owner.get("ownerid").map(String::as_str), Some(""), "partition {partition} given up");
    }
    let store = d.store();
    assert_eq!(
        value::<String>(&store, &format!("SELECT role FROM hub_roles WHERE hub = '{HUB}'")),
        "balanced",
        "the hub's role is recorded"
    );
}

/// A Python processor (`azure-eventhub` 5.15 `EventHubConsumerClient` with
/// `azure-eventhub-checkpointstoreblob` 1.2, balanced, the venv `.ci/run` makes) in the
/// same consumer group. It prints each partition it claims and each event it processes,
/// checkpointing every event, and stops (giving its partitions up) when stdin closes.
///
/// One adjustment for the loopback hub only: the Rust client names the namespace by the
/// endpoint's host (`127.0.0.1`), Python by host and port (`127.0.0.1:PORT`), so the store
/// below uses the Rust name. On Azure both are the namespace's FQDN.
const PYTHON_PROCESSOR: &str = r#"
import json, sys, threading
sys.path.insert(0, sys.argv[1])
import eventhub_client  # the loopback adjustments of the test hub's Python client
from azure.eventhub import EventHubConsumerClient, LoadBalancingStrategy
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore
_, _, conn, hub, blob_endpoint, key, namespace = sys.argv
blob = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint={blob_endpoint};"

class Loopback(BlobCheckpointStore):
    def list_ownership(self, ns, *args, **kwargs):
        return super().list_ownership(namespace, *args, **kwargs)
    def claim_ownership(self, ownerships, **kwargs):
        for o in ownerships:
            o["fully_qualified_namespace"] = namespace
        return super().claim_ownership(ownerships, **kwargs)
    def list_checkpoints(self, ns, *args, **kwargs):
        return super().list_checkpoints(namespace, *args, **kwargs)
    def update_checkpoint(self, checkpoint, **kwargs):
        checkpoint["fully_qualified_namespace"] = namespace
        return super().update_checkpoint(checkpoint, **kwargs)

client = EventHubConsumerClient.from_connection_string(
    conn, consumer_group="$Default", eventhub_name=hub,
    checkpoint_store=Loopback.from_connection_string(blob, "checkpoints"),
    load_balancing_interval=0.3, partition_ownership_expiration_interval=3.0,
    load_balancing_strategy=LoadBalancingStrategy.BALANCED)
lock = threading.Lock()
def say(**fields):
    with lock:
        print(json.dumps(fields), flush=True)
def on_event(context, event):
    say(partition=context.partition_id, sequence=event.sequence_number)
    context.update_checkpoint(event)
def on_partition_initialize(context):
    say(claimed=context.partition_id)
def on_partition_close(context, reason):
    say(released=context.partition_id)
def close_at_eof():
    sys.stdin.read()
    client.close()
threading.Thread(target=close_at_eof, daemon=True).start()
with client:
    client.receive(on_event=on_event, on_partition_initialize=on_partition_initialize,
                   on_partition_close=on_partition_close, starting_position="-1")
say(stopped=True)
"#;

#[test]
fn a_python_processor_shares_the_consumer_group_and_its_checkpoints() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let root = tempfile::tempdir().unwrap();
    let hub = hub(PARTITIONS);
    let azurite = Azurite::start();
    assert!(azurite.create_container("checkpoints"));
    preload(&hub, envelopes(&cosmos_file(root.path(), 16_000, 3), 50), PARTITIONS);
    let a = instance(root.path(), "a", &hub, &azurite);
    let b = instance(root.path(), "b", &hub, &azurite);
    wait_for_even_spread(&[&a, &b], 0, Duration::from_secs(60));

    let python = PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/tokentrail-venv/bin/python");
    let testhub_python = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testhub/python");
    let mut peer = Command::new(&python)
        .args(["-c", PYTHON_PROCESSOR, testhub_python, &hub.connection_string(HUB), HUB])
        .args([&format!("{}/", azurite.endpoint()), KEY, "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (.ci/run makes the venv)", python.display()));
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let reader = {
        let (lines, stdout) = (lines.clone(), peer.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str(&line) {
                    lines.lock().unwrap().push(value);
                }
            }
        })
    };
    // Three members now: the Python processor takes its share from the two instances,
    // and no partition is read by an instance and by Python at once.
    wait_for_even_spread(&[&a, &b], 1, Duration::from_secs(60));
    let claimed: BTreeSet<String> =
        lines.lock().unwrap().iter().filter_map(|l| l["claimed"].as_str().map(str::to_owned)).collect();
    let (owners, _) = ownership(&a).unwrap();
    let ours: BTreeSet<String> = [&a, &b].iter().flat_map(|s| ownership(s).unwrap().1).collect();
    assert!(!claimed.is_empty() && claimed.is_disjoint(&ours), "Python {claimed:?}, instances {ours:?}");
    assert!(
        owners.values().any(|p| claimed.is_subset(p)),
        "the ownership blobs name Python's owner id for what it claimed: {owners:?} / {claimed:?}"
    );
    // Events while Python holds its share: it processes those of its partitions.
    preload(&hub, envelopes(&cosmos_file(root.path(), 3_200, 4), 50), PARTITIONS);
    std::thread::sleep(Duration::from_secs(3));
    // Python stops and gives its partitions up: the instances take them back and go on
    // from Python's checkpoints.
    drop(peer.stdin.take());
    let stopped = peer.wait().unwrap();
    reader.join().unwrap();
    assert!(stopped.success(), "the Python processor stopped cleanly");
    wait_for_even_spread(&[&a, &b], 0, Duration::from_secs(60));
    preload(&hub, envelopes(&cosmos_file(root.path(), 3_200, 5), 50), PARTITIONS);
    wait_for_no_lag(&a);
    let (mut a, mut b) = (a, b);
    a.stop();
    b.stop();
    // Every event of every partition was processed by an instance or by Python.
    let python_events: BTreeSet<(String, i64)> = lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| Some((l["partition"].as_str()?.to_owned(), l["sequence"].as_i64()?)))
        .collect();
    assert!(!python_events.is_empty(), "Python processed events of its partitions");
    let connection = duckdb::Connection::open_in_memory().unwrap();
    let mut ours = BTreeSet::new();
    for (i, service) in [&a, &b].iter().enumerate() {
        connection.execute(&format!("ATTACH '{}' AS db{i} (READ_ONLY)", service.db.display()), []).unwrap();
        let mut query = connection
            .prepare(&format!("SELECT DISTINCT partition, sequence_number FROM db{i}.cosmos_requests"))
            .unwrap();
        let rows = query.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap();
        ours.extend(rows.map(Result::unwrap));
    }
    for partition in 0..PARTITIONS {
        for sequence in 0..hub.event_count(HUB, partition) as i64 {
            let event = (partition.to_string(), sequence);
            assert!(
                ours.contains(&event) || python_events.contains(&event),
                "event {sequence} of partition {partition} was processed by no one"
            );
        }
    }
    eprintln!("Python processed {} events, the instances {}", python_events.len(), ours.len());
}

/// Signs in to `service`'s overview page in real headless Chromium (with the newest
/// development sign-in secret its log printed) and waits for `script` to return a value.
fn on_overview(service: &Service, what: &str, script: &str) -> serde_json::Value {
    let log = std::fs::read_to_string(service.db.parent().unwrap().join("serve.log")).unwrap();
    let secret = log
        .lines()
        .rev()
        .find_map(|l| l.split_once("enter this secret when asked: ").map(|(_, s)| s.trim().to_owned()))
        .expect("serve prints the development sign-in secret");
    let base = format!("http://127.0.0.1:{}", service.port);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use crate::browser::{browser, open, sign_in_as, wait_for};
        let profile = tempfile::tempdir().unwrap();
        let (_driver, client) = browser(profile.path()).await;
        sign_in_as(&client, &base, "Responder", "On Call", Some(&secret)).await;
        open(&client, &base, "/").await;
        let seen = wait_for(&client, what, script).await;
        client.close().await.unwrap();
        seen
    })
}

/// The overview of `service` lists `instances` instances of the balanced hub with their
/// partitions, this one marked.
fn overview_shows_the_instances(service: &Service, instances: usize) {
    let rows = on_overview(
        service,
        "the instances table",
        "const rows = [...document.querySelectorAll('#instances tbody tr')]; \
         return rows.length ? rows.map((r) => [...r.cells].map((c) => c.textContent)) : null",
    );
    // hub, owner id, this instance, "<count>: <partitions>"
    let rows: Vec<Vec<String>> = serde_json::from_value(rows).unwrap();
    assert_eq!(rows.len(), instances, "{rows:?}");
    assert_eq!(rows.iter().filter(|r| r[2] == "this instance").count(), 1, "{rows:?}");
    let owned: usize = rows.iter().map(|r| r[3].split_once(':').unwrap().0.parse::<usize>().unwrap()).sum();
    assert_eq!(owned, PARTITIONS as usize, "every partition owned, once: {rows:?}");
}

/// The overview shows the shared lake's lag within its target and this instance's name,
/// and every partition's end in the lake with nothing left out.
fn overview_shows_the_shared_lake(service: &Service) {
    let status = service.status().unwrap();
    let instance = status["shared_lake"]["instance"].as_str().unwrap().to_owned();
    // Who holds the rules lease, as this instance sees it. It can still move while the
    // page loads (a killed holder's lease runs out after the stream ends): the page must
    // name the holder of just before or just after it was read.
    let holder_in = |status: &serde_json::Value| {
        let lease = &status["shared_lake"]["rules_lease"];
        if lease["held_here"] == true {
            "this instance".to_owned()
        } else {
            lease["holder"].as_str().unwrap_or_default().to_owned()
        }
    };
    let holder = holder_in(&status);
    let seen = on_overview(
        service,
        "the shared lake and the partitions' lake columns",
        "const lake = document.querySelector('#shared-lake'); \
         const table = [...document.querySelectorAll('table')].find((t) => \
           [...t.querySelectorAll('th')].some((h) => h.textContent === 'lake_lag')); \
         if (!lake || !table) return null; \
         const at = [...table.querySelectorAll('th')].map((h) => h.textContent).indexOf('lake_lag'); \
         return { lake: lake.textContent, warned: !!lake.querySelector('.error'), \
           lags: [...table.querySelectorAll('tbody tr')].map((r) => r.cells[at].textContent) }",
    );
    let lake = seen["lake"].as_str().unwrap();
    assert!(lake.contains("Lag: ") && lake.contains("target") && lake.contains(&instance), "{seen}");
    let holder_after = holder_in(&service.status().unwrap());
    assert!(
        [&holder, &holder_after].iter().any(|h| !h.is_empty() && lake.contains(&format!("Rules lease: {h}"))),
        "the lease's holder ({holder}, then {holder_after}): {seen}"
    );
    assert_eq!(seen["warned"], false, "within its target: {seen}");
    let lags: Vec<String> = serde_json::from_value(seen["lags"].clone()).unwrap();
    assert_eq!(lags.len(), PARTITIONS as usize, "{seen}");
    assert!(lags.iter().all(|l| l == "0"), "every partition in the lake: {seen}");
}

#[test]
fn a_missing_container_is_shown_beside_each_partition_and_reading_starts_once_it_exists() {
    let root = tempfile::tempdir().unwrap();
    let hub = hub(PARTITIONS);
    let azurite = Azurite::start();
    preload(&hub, envelopes(&cosmos_file(root.path(), 3_200, 6), 50), PARTITIONS);
    // No container yet: the processor's first cycle fails, and says why on the status page.
    let a = instance(root.path(), "a", &hub, &azurite);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let partitions = a.status().and_then(|s| s["eventhubs"].as_array().cloned()).unwrap_or_default();
        let told = partitions.len() == PARTITIONS as usize
            && partitions.iter().all(|p| {
                p["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("partition balancing") && e.contains("ContainerNotFound"))
            });
        if told {
            break;
        }
        assert!(Instant::now() < deadline, "no partition says why it is not read: {:?}", partitions.first());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(cosmos_rows(&a), 0, "nothing read without ownership");
    assert!(azurite.create_container("checkpoints"));
    wait_for_even_spread(&[&a], 0, Duration::from_secs(90));
    wait_for_no_lag(&a);
    assert_eq!(cosmos_rows(&a), 3_200, "the backlog stored once the container exists");
}

#[test]
fn with_start_latest_partitions_are_pinned_before_they_are_read_so_a_crash_skips_nothing_after() {
    let root = tempfile::tempdir().unwrap();
    let hub = hub(PARTITIONS);
    let azurite = Azurite::start();
    assert!(azurite.create_container("checkpoints"));
    // History from before the service: `latest` leaves it.
    preload(&hub, envelopes(&cosmos_file(root.path(), 3_200, 7), 50), PARTITIONS);
    let latest = "start = \"latest\"\n";
    let mut a = configured(root.path(), "a", &hub, &azurite, latest);
    wait_for_even_spread(&[&a], 0, Duration::from_secs(90));
    // It dies before its first commit; events come while nobody reads.
    a.signal(libc::SIGKILL);
    preload(&hub, envelopes(&cosmos_file(root.path(), 3_200, 8), 50), PARTITIONS);
    // The next owner opens each partition after the pin, not at its own "latest".
    let b = configured(root.path(), "b", &hub, &azurite, latest);
    wait_for_even_spread(&[&b], 0, EXPIRY + Duration::from_secs(90));
    wait_for_no_lag(&b);
    assert_eq!(cosmos_rows(&b), 3_200, "what came after the first claims is stored, the history is not");
}

/// The shared lake of [`three_instances_killed_during_a_stream_put_each_event_in_the_shared_lake_once`].
fn shared_lake(azurite: &Azurite) -> tokentrail::lake::Lake {
    let location = tokentrail::lake::Location {
        store: std::sync::Arc::new(azurite.object_store("lake")),
        prefix: Default::default(),
        description: format!("{}/lake", azurite.endpoint()),
        directory: None,
    };
    tokentrail::lake::Lake::new(location).unwrap()
}

/// Rows of `db`'s requests inside the segments it recorded as its own (`ours`) and as
/// another instance's, and rows in no recorded segment.
fn rows_by_claim(db: &Path) -> (i64, i64, i64) {
    let connection = duckdb::Connection::open_in_memory().unwrap();
    connection.execute(&format!("ATTACH '{}' AS db (READ_ONLY)", db.display()), []).unwrap();
    connection
        .query_row(
            "SELECT count(*) FILTER (WHERE s.ours), count(*) FILTER (WHERE NOT s.ours), count(*) FILTER (WHERE s.ours IS NULL) \
             FROM db.cosmos_requests r LEFT JOIN db.hub_segments s ON s.source = r.source AND s.partition = r.partition \
             AND r.sequence_number BETWEEN s.first_sequence AND s.last_sequence",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
}

#[test]
fn three_instances_killed_during_a_stream_put_each_event_in_the_shared_lake_once() {
    let root = tempfile::tempdir().unwrap();
    let hub = hub(PARTITIONS);
    let azurite = Azurite::start();
    assert!(azurite.create_container("checkpoints"));
    assert!(azurite.create_container("lake"));
    let backlog = envelopes(&cosmos_file(root.path(), 16_000, 3), 50);
    let live = envelopes(&cosmos_file(root.path(), 24_000, 4), 50);
    preload(&hub, backlog, PARTITIONS);
    let lake = format!("{}/lake", azurite.endpoint());
    let start = |name: &str| sharing(root.path(), name, &hub, &azurite, &lake);
    let mut services = [start("a"), start("b"), start("c")];
    wait_for_even_spread(&services.iter().collect::<Vec<_>>(), 0, Duration::from_secs(90));

    // The stream goes on (480 events of 50 requests over 12 s) while each instance in
    // turn is killed and started again.
    std::thread::scope(|scope| {
        let hub = &hub;
        scope.spawn(move || {
            for (i, body) in live.into_iter().enumerate() {
                hub.append(HUB, i as u32 % PARTITIONS, body);
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        for kill in 0..3 {
            std::thread::sleep(Duration::from_millis(2_500));
            services[kill].signal(libc::SIGKILL);
            let alive: Vec<&Service> =
                services.iter().enumerate().filter(|(i, _)| *i != kill).map(|(_, s)| s).collect();
            let taken = wait_for_even_spread(&alive, 0, EXPIRY + Duration::from_secs(30));
            eprintln!("kill {}: its partitions taken over in {taken:?}", kill + 1);
            services[kill].start();
        }
    });
    wait_for_even_spread(&services.iter().collect::<Vec<_>>(), 0, Duration::from_secs(60));
    wait_for_no_lag(&services[0]);
    // Any instance shows how far every partition is in the lake, whoever wrote it.
    for service in &services {
        wait_for_partitions(service, "every partition in the lake to its last event", |p| {
            p["lake_lag"].as_i64() == Some(0) && p["lake_sequence"] == p["last_enqueued_sequence"]
        });
    }
    let status = services[0].status().unwrap();
    assert_eq!(status["shared_lake"]["lag_target_seconds"], 60 + 2, "the lake's lag target: {status}");
    overview_shows_the_shared_lake(&services[0]);
    for service in &mut services {
        service.stop();
    }

    // The lake: every request once, in one unbroken chain of claims per partition.
    let reports = tokentrail::lake::segments::check(&shared_lake(&azurite)).unwrap();
    assert_eq!(reports.len(), PARTITIONS as usize, "{reports:?}");
    let problems: Vec<&String> = reports.iter().flat_map(|r| &r.problems).collect();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(reports.iter().map(|r| r.duplicate_rows).sum::<i64>(), 0);
    let requests: i64 = reports.iter().map(|r| r.rows.get("cosmos_requests").copied().unwrap_or(0)).sum();
    assert_eq!(requests, 40_000, "every request in the lake, once");
    for report in &reports {
        let events = hub.event_count(HUB, report.partition.parse().unwrap()) as i64;
        assert_eq!(report.last, Some(events - 1), "partition {} in the lake to its last event", report.partition);
        assert_eq!(report.first, Some(0), "partition {} from its first event", report.partition);
        let (first, last) = (report.first_time.unwrap(), report.last_time.unwrap());
        assert!(first <= last && last <= chrono::Utc::now(), "the claims give their rows' times: {report:?}");
    }
    let writers: BTreeSet<&String> = reports.iter().flat_map(|r| r.instances.keys()).collect();
    assert_eq!(writers.len(), 3, "every instance wrote segments: {writers:?}");

    // Each instance's own segments hold what it stored and the lake took from it; what it
    // stored of events another claimed first is recorded as theirs. Its own, over the three
    // instances, is the lake: each request once, none left out.
    let (rows, distinct, _) = stored(&db_files(&services.iter().collect::<Vec<_>>()));
    assert_eq!(distinct, 40_000);
    let claims: Vec<(i64, i64, i64)> = services.iter().map(|s| rows_by_claim(&s.db)).collect();
    eprintln!("{rows} rows stored by the three for 40000 requests; (ours, theirs, none) by instance: {claims:?}");
    assert!(claims.iter().all(|c| c.2 == 0), "every stored row is in a recorded segment: {claims:?}");
    assert_eq!(claims.iter().map(|c| c.0).sum::<i64>(), 40_000, "{claims:?}");
    assert_eq!(claims.iter().map(|c| c.1).sum::<i64>(), rows - 40_000, "{claims:?}");
}

/// Waits until `service`'s status satisfies `done` for every partition, or panics with it.
fn wait_for_partitions(service: &Service, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let partitions = service.status().and_then(|s| s["eventhubs"].as_array().cloned()).unwrap_or_default();
        if !partitions.is_empty() && partitions.iter().all(&done) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {partitions:?}\nlog:\n{}", service.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn segments_check(lake: &Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args(["segments", "--lake", &lake.display().to_string()])
        .env("TOKENTRAIL_LOG", "warn")
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Anyone who may write the shared lake may plant a claim: a partition whose next claim
/// is not one stops there, named on the status page and by `tokentrail segments`, and its
/// blob checkpoint waits (its rows are in DuckDB, nothing is lost); the other partitions
/// go on; once the claim is removed the partition catches up.
#[test]
fn a_planted_claim_stops_its_partition_in_the_shared_lake_named_and_nothing_is_lost() {
    let root = tempfile::tempdir().unwrap();
    let hub = hub(4);
    let azurite = Azurite::start();
    assert!(azurite.create_container("checkpoints"));
    preload(&hub, envelopes(&cosmos_file(root.path(), 2_000, 5), 50), 4);
    let lake = root.path().join("shared-lake");
    let planted = lake.join(format!("hubs/127.0.0.1/{HUB}/segments/partition=2/{:020}.json", 0));
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    std::fs::write(&planted, b"'; DROP TABLE hub_segments; --").unwrap();
    let mut service = sharing(root.path(), "a", &hub, &azurite, &lake.display().to_string());

    let last = |p: &serde_json::Value| p["last_enqueued_sequence"].as_i64();
    wait_for_partitions(&service, "the planted claim named, the others in the lake", |p| {
        if p["partition"] == "2" {
            p["lake_error"].as_str().is_some_and(|e| e.contains("is not a segment claim") && e.contains("partition=2"))
                && p["committed_sequence"].as_i64() == last(p)
                && p["checkpointed_sequence"].as_i64().is_none_or(|c| c < 0)
        } else {
            p["lake_sequence"].as_i64() == last(p) && p["checkpointed_sequence"].as_i64() == last(p)
        }
    });
    assert_eq!(cosmos_rows(&service), 2_000, "every request stored in DuckDB");
    let (ok, out) = segments_check(&lake);
    assert!(!ok, "the check fails: {out}");
    assert!(out.contains("partition=2/00000000000000000000.json: not a claim"), "{out}");
    assert_eq!(
        std::fs::read(&planted).unwrap(),
        b"'; DROP TABLE hub_segments; --",
        "a planted claim is left for a person"
    );

    std::fs::remove_file(&planted).unwrap();
    wait_for_partitions(&service, "partition 2 caught up once the claim is gone", |p| {
        p["lake_sequence"].as_i64() == last(p)
            && p["checkpointed_sequence"].as_i64() == last(p)
            && p["lake_error"].is_null()
    });
    service.stop();
    let (ok, out) = segments_check(&lake);
    assert!(ok, "{out}");
    assert!(out.contains("4 partitions checked: every event once"), "{out}");
    let requests: i64 = out
        .lines()
        .filter_map(|l| l.split("cosmos_requests ").nth(1)?.split([',', ';']).next()?.trim().parse::<i64>().ok())
        .sum();
    assert_eq!(requests, 2_000, "{out}");
}

/// A shared lake that cannot be reached (Azurite behind a closed relay): every partition's
/// segment waits, named beside it and counted; the blob checkpoints wait with it; every
/// row is in DuckDB; a stop does not wait on the lake; after a restart, still unreachable,
/// nothing is forgotten: once the lake is back, everything committed reaches it, once.
#[test]
fn an_unreachable_shared_lake_holds_the_checkpoints_and_everything_reaches_it_once_back() {
    let root = tempfile::tempdir().unwrap();
    let hub = hub(4);
    let azurite = Azurite::start();
    assert!(azurite.create_container("checkpoints"));
    assert!(azurite.create_container("lake"));
    let mut relay = crate::alerts::claims::Relay::closed(azurite.port());
    preload(&hub, envelopes(&cosmos_file(root.path(), 2_000, 6), 50), 4);
    let lake = format!("http://127.0.0.1:{}/devstoreaccount1/lake", relay.port);
    let mut service = sharing(root.path(), "a", &hub, &azurite, &lake);

    let last = |p: &serde_json::Value| p["last_enqueued_sequence"].as_i64();
    let waiting = |p: &serde_json::Value| {
        p["committed_sequence"].as_i64() == last(p)
            && p["lake_error"].as_str().is_some()
            && p["lake_pending_since"].as_str().is_some()
            && p["lake_sequence"].is_null()
            && p["checkpointed_sequence"].as_i64().is_none_or(|c| c < 0)
    };
    wait_for_partitions(&service, "segments wait while the lake is unreachable", waiting);
    assert_eq!(cosmos_rows(&service), 2_000, "every request in DuckDB");
    let (failures, _) = crate::eventhubs::metric(&service, "tokentrail_lake_failures_total");
    assert!(failures >= 1.0, "failures counted: {failures}");
    let status = service.status().unwrap();
    assert_eq!(status["shared_lake"]["segments_written"], 0, "{status}");
    let stopping = Instant::now();
    service.stop();
    assert!(stopping.elapsed() < Duration::from_secs(30), "a stop waited {:?} on the lake", stopping.elapsed());
    service.start();
    wait_for_partitions(&service, "after a restart, still waiting", waiting);

    relay.up();
    wait_for_partitions(&service, "everything in the lake once it is back", |p| {
        p["lake_sequence"].as_i64() == last(p)
            && p["checkpointed_sequence"].as_i64() == last(p)
            && p["lake_error"].is_null()
    });
    service.stop();
    let reports = tokentrail::lake::segments::check(&shared_lake(&azurite)).unwrap();
    let problems: Vec<&String> = reports.iter().flat_map(|r| &r.problems).collect();
    assert!(problems.is_empty(), "{problems:?}");
    let requests: i64 = reports.iter().map(|r| r.rows.get("cosmos_requests").copied().unwrap_or(0)).sum();
    assert_eq!((requests, reports.iter().map(|r| r.duplicate_rows).sum::<i64>()), (2_000, 0));
}
