//! The Event Hubs source end to end: the real `tokentrail` binary (`serve`, `produce`)
//! with the real `azure_messaging_eventhubs` client, over AMQP on a loopback socket,
//! against the test hub (`tests/testhub`: no Event Hubs service or emulator can run
//! on CI machines), into a real DuckDB file.

use rand::{RngExt, SeedableRng};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokentrail::store::{Store, StoreOptions};
use tokentrail_testhub::{HubSpec, TestHub};

pub(crate) const HUB: &str = "insights-logs-dataplanerequests";
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_tokentrail");

pub(crate) fn hub(partitions: u32) -> TestHub {
    TestHub::start(&[HubSpec { name: HUB.into(), partitions }]).expect("start the test hub")
}

/// `n` generated Cosmos DB requests as NDJSON, each with a unique activity id.
pub(crate) fn cosmos_file(dir: &Path, n: usize, seed: u64) -> PathBuf {
    let path = dir.join(format!("cosmos-{seed}.ndjson"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    tokentrail::synth::write_cosmos_ndjson(&mut out, n, seed).unwrap();
    out.flush().unwrap();
    path
}

/// Envelopes of `per_event` records from `file`, as Azure diagnostic settings send them.
pub(crate) fn envelopes(file: &Path, per_event: usize) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines.chunks(per_event).map(|records| format!("{{\"records\":[{}]}}", records.join(",")).into_bytes()).collect()
}

/// Appends the envelopes round-robin over the partitions, straight into the hub.
pub(crate) fn preload(hub: &TestHub, bodies: Vec<Vec<u8>>, partitions: u32) {
    for (i, body) in bodies.into_iter().enumerate() {
        hub.append(HUB, i as u32 % partitions, body);
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One `tokentrail serve` process and its configuration.
pub(crate) struct Service {
    dir: PathBuf,
    pub(crate) db: PathBuf,
    pub(crate) port: u16,
    config: PathBuf,
    connection_string: String,
    /// More environment for the process (e.g. Azurite's key).
    pub(crate) env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Service {
    pub(crate) fn new(dir: &Path, hub: &TestHub, extra: &str) -> Service {
        Service::with_hubs(dir, hub, &[HUB], extra)
    }

    /// [`Service::new`] reading `hubs` of the test hub.
    pub(crate) fn with_hubs(dir: &Path, hub: &TestHub, hubs: &[&str], extra: &str) -> Service {
        let db = dir.join("service.duckdb");
        let port = free_port();
        let config = dir.join("tokentrail.toml");
        std::fs::write(
            &config,
            format!(
                "db = {db:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\ndevelopment_sign_in = true\n[eventhubs]\nhubs = {hubs:?}\n\
                 credential = \"connection_string\"\nendpoint = \"{}\"\nmax_wait_ms = 200\nlag_interval_secs = 1\n{extra}\n",
                hub.endpoint()
            ),
        )
        .unwrap();
        Service {
            dir: dir.into(),
            db,
            port,
            config,
            // One hub: its EntityPath; several: none (the client refuses a hub not named there).
            connection_string: match hubs {
                [one] => hub.connection_string(one),
                _ => hub.connection_string(HUB).split(";EntityPath=").next().unwrap_or_default().to_owned(),
            },
            env: Vec::new(),
            child: None,
        }
    }

    pub(crate) fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("serve.log")).unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("TOKENTRAIL_EVENTHUBS_CONNECTION_STRING", &self.connection_string)
            .env("TOKENTRAIL_LOG", "info,azure_core_amqp=warn,azure_messaging_eventhubs=warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tokentrail serve");
        self.child = Some(child);
    }

    /// Rows committed so far, from `/api/status` (DuckDB locks the file while the
    /// service runs); `None` while the service is not answering.
    pub(crate) fn committed_rows(&self) -> Option<i64> {
        let status = self.status()?;
        Some(status["tables"].as_array()?.iter().filter_map(|t| t["rows"].as_i64()).sum())
    }

    /// `/api/status`; `None` while the service is not answering.
    pub(crate) fn status(&self) -> Option<serde_json::Value> {
        self.get("/api/status")
    }

    /// The JSON answer of the API's `path` (with its query); `None` while the service is
    /// not answering.
    pub(crate) fn get(&self, path: &str) -> Option<serde_json::Value> {
        self.get_as(tokentrail::auth::Role::Auditor, path)
    }

    /// [`Service::get`] with a token of `role`.
    pub(crate) fn get_as(&self, role: tokentrail::auth::Role, path: &str) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let token = self.token(role)?;
        ureq::get(&url).header("Authorization", format!("Bearer {token}")).call().ok()?.body_mut().read_json().ok()
    }

    /// POSTs `body` to the API's `path` with a token of `role`: the status and the answer.
    pub(crate) fn post_as(&self, role: tokentrail::auth::Role, path: &str, body: serde_json::Value) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let token = self.token(role).expect("the service answers");
        let mut response = ureq::post(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .header("Authorization", format!("Bearer {token}"))
            .send_json(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        (response.status().as_u16(), response.body_mut().read_to_string().unwrap_or_default())
    }

    /// Waits until every partition's status shows `committed` as its committed
    /// sequence number and no lag.
    fn wait_for_no_lag(&self, committed: &[i64], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status();
            let partitions = status.as_ref().and_then(|s| s["eventhubs"].as_array().cloned()).unwrap_or_default();
            let caught_up = partitions.len() == committed.len()
                && partitions.iter().all(|p| {
                    let partition: usize = p["partition"].as_str().and_then(|id| id.parse().ok()).unwrap_or(usize::MAX);
                    p["lag"].as_i64() == Some(0)
                        && p["committed_sequence"].as_i64() == committed.get(partition).copied()
                });
            if caught_up {
                return;
            }
            assert!(Instant::now() < deadline, "partitions not caught up in {timeout:?}: {partitions:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn wait_for_rows(&mut self, rows: i64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.committed_rows().is_some_and(|n| n >= rows) {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("tokentrail serve exited ({status}) before storing {rows} rows:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "{rows} rows not stored in {timeout:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn signal(&mut self, signal: i32) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, signal) };
            child.wait().unwrap();
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let status = child.wait().unwrap();
            assert!(status.success(), "serve did not stop cleanly ({status}):\n{}", self.log());
        }
    }

    /// The HTTP API wants a bearer token: on loopback `serve` accepts the development
    /// issuer's, signed with the key beside its database (made by whichever comes first).
    fn token(&self, role: tokentrail::auth::Role) -> Option<String> {
        tokentrail::auth::dev_token(&self.db, role, "eventhubs test", chrono::Duration::hours(2)).ok()
    }

    pub(crate) fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub(crate) fn store(&self) -> Store {
        Store::open(&self.db, &StoreOptions { read_only: true, ..StoreOptions::default() }).unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn value<T: duckdb::types::FromSql>(store: &Store, sql: &str) -> T {
    store.connection().unwrap().query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every one of `expected` requests stored exactly once, and each partition's
/// checkpoint at its last event.
fn assert_stored_once(service: &Service, hub: &TestHub, expected: i64, partitions: u32) {
    let store = service.store();
    let (rows, distinct): (i64, i64) = store
        .connection()
        .unwrap()
        .query_row("SELECT count(*), count(DISTINCT activity_id) FROM cosmos_requests", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((rows, distinct), (expected, expected), "rows and distinct activity ids");
    assert_eq!(value::<i64>(&store, "SELECT count(*) FROM quarantine"), 0, "nothing quarantined");
    for partition in 0..partitions {
        let events = hub.event_count(HUB, partition) as i64;
        let sql =
            format!("SELECT sequence_number FROM checkpoints WHERE source_id LIKE '%/{HUB}/$Default/{partition}'");
        assert_eq!(value::<i64>(&store, &sql), events - 1, "checkpoint of partition {partition}");
    }
}

#[test]
fn records_produced_to_several_partitions_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(4);
    let file = cosmos_file(dir.path(), 6_000, 7);
    // The real ProducerClient, through `tokentrail produce`, which sends its batches to
    // the partitions in turn.
    let produced = Command::new(BIN)
        .args(["produce", "--hub", HUB, "--credential", "connection_string", "--records-per-event", "50"])
        .args(["--endpoint", &hub.endpoint()])
        .arg(&file)
        .env("TOKENTRAIL_EVENTHUBS_CONNECTION_STRING", hub.connection_string(HUB))
        .output()
        .unwrap();
    assert!(produced.status.success(), "produce failed: {}", String::from_utf8_lossy(&produced.stderr));
    assert!(String::from_utf8_lossy(&produced.stdout).contains("sent 6000 records in 120 events"));
    let per_partition: Vec<usize> = (0..4).map(|p| hub.event_count(HUB, p)).collect();
    assert_eq!(per_partition.iter().sum::<usize>(), 120);
    assert!(per_partition.iter().all(|n| *n > 0), "every partition got events: {per_partition:?}");

    let mut service = Service::new(dir.path(), &hub, "");
    service.start();
    service.wait_for_rows(6_000, Duration::from_secs(60));
    // Once the stream goes quiet, its last commit shows in the status (and metrics)
    // though no event follows it: every partition committed to its last event, no lag.
    let last: Vec<i64> = per_partition.iter().map(|n| *n as i64 - 1).collect();
    service.wait_for_no_lag(&last, Duration::from_secs(10));
    // With nothing left to read, detection records that the hubs were empty: the clock a
    // silence of every stream at once is measured by. It is logged after the first pass over
    // the 6,000 rows, which runs at a lowered priority: on a busy machine that took over 20 s.
    wait_for_log(&service, "Event Hubs caught up", Duration::from_secs(60));
    service.stop();
    assert_stored_once(&service, &hub, 6_000, 4);
    let store = Store::open(&service.db, &StoreOptions::default()).unwrap();
    let caught_up: i64 = value(&store, "SELECT count(*) FROM source_clock WHERE source = 'eventhubs'");
    assert_eq!(caught_up, 1);
    drop(store);

    // A restart resumes after the committed positions: nothing is read twice.
    service.start();
    hub.append(HUB, 2, envelopes(&cosmos_file(dir.path(), 10, 8), 10).remove(0));
    service.wait_for_rows(6_010, Duration::from_secs(30));
    service.stop();
    assert_stored_once(&service, &hub, 6_010, 4);
}

#[test]
fn dropped_connections_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(4);
    preload(&hub, envelopes(&cosmos_file(dir.path(), 40_000, 11), 100), 4);
    let mut service = Service::new(dir.path(), &hub, "prefetch = 20\nstall_timeout_secs = 3");
    // Drop every connection mid-stream, three times: after 60 more events each time.
    hub.drop_connections_after_deliveries(60);
    service.start();
    for drops in 1..=3 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while hub.connections_accepted() <= drops {
            assert!(Instant::now() < deadline, "no reconnect after drop {drops}:\n{}", service.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        if drops < 3 {
            hub.drop_connections_after_deliveries(60);
        }
    }
    service.wait_for_rows(40_000, Duration::from_secs(120));
    // The client re-attached with its first filter and delivered events again;
    // the service skipped them.
    let (redelivered, metrics) = metric(&service, "tokentrail_eventhubs_redelivered_events_total");
    assert!(redelivered > 0.0, "the replay after recovery was exercised:\n{metrics}");
    service.stop();
    assert_stored_once(&service, &hub, 40_000, 4);
}

/// The sum of a metric's samples on `/metrics` (all label sets), and the whole page.
pub(crate) fn metric(service: &Service, name: &str) -> (f64, String) {
    let metrics = ureq::get(&format!("http://127.0.0.1:{}/metrics", service.port))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let sum = metrics
        .lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    (sum, metrics)
}

#[test]
fn a_backlog_is_committed_in_full_commits_and_a_quiet_stream_is_not() {
    // Detection defers its passes while commits are cut at their size limit
    // (`tokentrail_commits_full_total` rising): that must mean a backlog, not a trickle.
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(4);
    preload(&hub, envelopes(&cosmos_file(dir.path(), 20_000, 21), 100), 4);
    let mut service = Service::new(dir.path(), &hub, "commit_rows = 2000");
    service.start();
    service.wait_for_rows(20_000, Duration::from_secs(60));
    let (full, metrics) = metric(&service, "tokentrail_commits_full_total");
    // Chunks of received events overshoot 2,000 rows, so a few commits hold them all;
    // every one but the last (the stream then goes quiet) was cut at the limit.
    assert!(full >= 1.0, "20,000 waiting rows in commits of 2,000 make full commits:\n{metrics}");
    // A few events after the backlog: committed when the stream goes quiet, not full.
    hub.append(HUB, 1, envelopes(&cosmos_file(dir.path(), 10, 22), 10).remove(0));
    service.wait_for_rows(20_010, Duration::from_secs(30));
    let (after, metrics) = metric(&service, "tokentrail_commits_full_total");
    assert_eq!(after, full, "a quiet stream's commit is not a full one:\n{metrics}");
    let (commits, _) = metric(&service, "tokentrail_commits_total");
    assert!(commits > full, "the quiet commit was counted as a commit:\n{metrics}");
    service.stop();
    assert_stored_once(&service, &hub, 20_010, 4);
}

#[test]
fn killed_and_restarted_ten_times_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(4);
    let total = 150_000;
    preload(&hub, envelopes(&cosmos_file(dir.path(), total, 13), 100), 4);
    let mut service = Service::new(dir.path(), &hub, "commit_rows = 20000");
    let seed: u64 = rand::random();
    eprintln!("kill schedule seed: {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..10 {
        service.start();
        std::thread::sleep(Duration::from_millis(rng.random_range(300..2_500)));
        service.signal(libc::SIGKILL);
    }
    service.start();
    service.wait_for_rows(total as i64, Duration::from_secs(180));
    service.stop();
    assert_stored_once(&service, &hub, total as i64, 4);
    let store = service.store();
    let batches: i64 = value(&store, "SELECT count(*) FROM ingest_batches");
    assert!(batches > 1, "ingest was spread over several commits ({batches})");
}

#[test]
fn a_poison_message_is_quarantined_with_its_partition_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(2);
    let mut bodies = envelopes(&cosmos_file(dir.path(), 300, 17), 100).into_iter();
    hub.append(HUB, 1, bodies.next().unwrap());
    let poison = hub.append(HUB, 1, b"this is not JSON \x00\xff".to_vec());
    hub.append(HUB, 1, bodies.next().unwrap());
    hub.append(HUB, 0, bodies.next().unwrap());
    let mut service = Service::new(dir.path(), &hub, "");
    service.start();
    service.wait_for_rows(301, Duration::from_secs(60));
    service.stop();
    let store = service.store();
    assert_eq!(value::<i64>(&store, "SELECT count(*) FROM cosmos_requests"), 300, "ingestion went on after it");
    let conn = store.connection().unwrap();
    let (source, partition, sequence, reason, raw): (String, String, i64, String, Vec<u8>) = conn
        .query_row("SELECT source, partition, sequence_number, reason, raw FROM quarantine", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap();
    assert!(source.ends_with(&format!("/{HUB}")), "{source}");
    assert_eq!((partition.as_str(), sequence), ("1", poison));
    assert_eq!(raw, b"this is not JSON \x00\xff", "the raw bytes are kept");
    assert!(reason.contains("UTF-8") || reason.contains("JSON"), "{reason}");
}

#[test]
fn a_configured_start_position_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(1);
    let mut bodies = envelopes(&cosmos_file(dir.path(), 400, 19), 100).into_iter();
    hub.append(HUB, 0, bodies.next().unwrap());
    hub.append(HUB, 0, bodies.next().unwrap());
    std::thread::sleep(Duration::from_millis(50));
    let start = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(50));
    hub.append(HUB, 0, bodies.next().unwrap());

    // From a time: only what was enqueued at or after it.
    let timed = dir.path().join("timed");
    std::fs::create_dir_all(&timed).unwrap();
    let mut service = Service::new(&timed, &hub, &format!("start = \"{}\"", start.to_rfc3339()));
    service.start();
    service.wait_for_rows(100, Duration::from_secs(60));
    service.stop();
    assert_eq!(value::<i64>(&service.store(), "SELECT count(*) FROM cosmos_requests"), 100);

    // Latest: nothing that was there before the service started.
    let latest = dir.path().join("latest");
    std::fs::create_dir_all(&latest).unwrap();
    let mut service = Service::new(&latest, &hub, "start = \"latest\"");
    service.start();
    wait_for_log(&service, "receiving", Duration::from_secs(30));
    hub.append(HUB, 0, bodies.next().unwrap());
    service.wait_for_rows(100, Duration::from_secs(60));
    service.stop();
    let store = service.store();
    assert_eq!(value::<i64>(&store, "SELECT count(*) FROM cosmos_requests"), 100);
    assert_eq!(value::<i64>(&store, "SELECT max(sequence_number) FROM checkpoints"), 3);
}

fn wait_for_log(service: &Service, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let file = std::fs::File::open(service.dir.join("serve.log"));
        if file.is_ok_and(|f| BufReader::new(f).lines().map_while(Result::ok).any(|l| l.contains(needle))) {
            return;
        }
        assert!(Instant::now() < deadline, "{needle:?} not logged in {timeout:?}:\n{}", service.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_configuration_is_refused_with_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[eventhubs]\nhubs = [\"h\"]\nnamespace = \"n\"\nconsumer_grup = \"x\"\n").unwrap();
    let out = Command::new(BIN).args(["serve", "--config"]).arg(&config).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("consumer_grup") && stderr.contains("consumer_group"), "{stderr}");

    // A connection string for a real namespace is refused: production uses an identity.
    std::fs::write(&config, "[eventhubs]\nhubs = [\"h\"]\ncredential = \"connection_string\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env(
            "TOKENTRAIL_EVENTHUBS_CONNECTION_STRING",
            "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=SECRETVALUE",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only for the emulator"), "{stderr}");
    assert!(!stderr.contains("SECRETVALUE"), "the secret is never printed: {stderr}");

    // Environment overrides reach nested keys.
    std::fs::write(&config, "[eventhubs]\nhubs = [\"h\"]\nnamespace = \"n\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("TOKENTRAIL_EVENTHUBS__START", "the day before yesterday")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("RFC 3339"), "{stderr}");

    // A checkpoint store over plain http to another host would send its signatures in the
    // clear: refused at start, naming the key, the Azurite key never printed.
    std::fs::write(
        &config,
        format!(
            "db = {:?}\n[http]\nlisten = \"127.0.0.1:{}\"\ndevelopment_sign_in = true\n[eventhubs]\nhubs = [\"h\"]\ncredential = \"connection_string\"\nendpoint = \"amqp://127.0.0.1:9\"\n\
             [eventhubs.balance]\nhubs = [\"h\"]\ncheckpoint_store = \"http://storage.example.com/account/container\"\n",
            dir.path().join("balance.duckdb"),
            free_port()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env(
            "TOKENTRAIL_EVENTHUBS_CONNECTION_STRING",
            "Endpoint=sb://127.0.0.1:9/;SharedAccessKeyName=k;SharedAccessKey=x",
        )
        .env("TOKENTRAIL_CHECKPOINT_ACCOUNT_KEY", "S0VZU0VDUkVUS0VZ")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("eventhubs.balance.checkpoint_store") && stderr.contains("plain http"), "{stderr}");
    assert!(!stderr.contains("S0VZU0VDUkVUS0VZ"), "the key is never printed: {stderr}");
}

#[test]
fn a_recreated_hub_is_noticed_recorded_and_its_new_events_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(2);
    // Ten events of ten records on each partition: sequence numbers 0..9 committed.
    preload(&hub, envelopes(&cosmos_file(dir.path(), 200, 31), 10), 2);
    // A quiet partition whose new stream is shorter is found when it has been quiet this long.
    let mut service = Service::new(dir.path(), &hub, "stall_timeout_secs = 3");
    service.start();
    service.wait_for_rows(200, Duration::from_secs(60));
    service.wait_for_no_lag(&[9, 9], Duration::from_secs(10));

    // The hub is deleted and created again (the emulator restarting does this): its
    // numbering begins at 0. Partition 0 gets fewer events than were committed (its last
    // sequence number is below the committed one); partition 1 more (the event at the
    // committed sequence number is another one).
    hub.recreate();
    let fresh = envelopes(&cosmos_file(dir.path(), 150, 32), 10);
    for (i, body) in fresh.into_iter().enumerate() {
        hub.append(HUB, if i < 3 { 0 } else { 1 }, body);
    }
    // Every new record is stored, plus one reset record per partition.
    service.wait_for_rows(200 + 150 + 2, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(20);
    let resets = loop {
        let status = service.status().unwrap_or_default();
        let resets: Vec<i64> = status["eventhubs"]
            .as_array()
            .map(|ps| ps.iter().map(|p| p["resets"].as_i64().unwrap_or(0)).collect())
            .unwrap_or_default();
        if resets == [1, 1] || Instant::now() > deadline {
            break resets;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(resets, [1, 1], "the status page counts each partition's reset");
    let (count, text) = metric(&service, "tokentrail_eventhubs_source_resets_total");
    assert_eq!(count, 2.0, "{text}");
    // The rule raises it (detection runs every few seconds after commits).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let url = format!("http://127.0.0.1:{}/api/findings?rule=source_reset", service.port);
        let token = service.token(tokentrail::auth::Role::Auditor).unwrap();
        let findings: serde_json::Value = ureq::get(&url)
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json().ok())
            .unwrap_or_default();
        if findings["rows"].as_array().is_some_and(|rows| rows.len() == 2) {
            break;
        }
        assert!(Instant::now() < deadline, "no source_reset findings: {findings}");
        std::thread::sleep(Duration::from_millis(500));
    }
    service.stop();
    let store = service.store();
    assert_eq!(value::<i64>(&store, "SELECT count(*) FROM cosmos_requests"), 350);
    assert_eq!(value::<i64>(&store, "SELECT count(DISTINCT activity_id) FROM cosmos_requests"), 350);
    let details: String = value(
        &store,
        "SELECT string_agg(record->>'$.properties.detail', ' | ' ORDER BY partition) FROM raw_events
         WHERE category = 'TokenTrailSourceReset'",
    );
    assert_eq!(details.matches("numbering began again").count(), 2, "{details}");
    drop(store);
    // Restarted, the service finds the stream it stored and reads on: no second reset.
    service.start();
    hub.append(HUB, 0, envelopes(&cosmos_file(dir.path(), 10, 33), 10).remove(0));
    service.wait_for_rows(200 + 150 + 2 + 10, Duration::from_secs(60));
    service.stop();
    let store = service.store();
    assert_eq!(value::<i64>(&store, "SELECT count(*) FROM raw_events WHERE category = 'TokenTrailSourceReset'"), 2);
    assert_eq!(value::<i64>(&store, "SELECT count(*) FROM cosmos_requests"), 360);
    drop(store);

    // Recreated while the service is down: found when it starts, from the committed
    // positions (partition 0's new stream is shorter; partition 1's event at the
    // committed sequence number is another event).
    hub.recreate();
    let fresh = envelopes(&cosmos_file(dir.path(), 200, 34), 10);
    for (i, body) in fresh.into_iter().enumerate() {
        hub.append(HUB, if i < 2 { 0 } else { 1 }, body);
    }
    service.start();
    service.wait_for_rows(200 + 150 + 2 + 10 + 200 + 2, Duration::from_secs(60));
    service.stop();
    let store = service.store();
    assert_eq!(value::<i64>(&store, "SELECT count(*) FROM raw_events WHERE category = 'TokenTrailSourceReset'"), 4);
    assert_eq!(value::<i64>(&store, "SELECT count(DISTINCT activity_id) FROM cosmos_requests"), 560);
    assert_eq!(value::<i64>(&store, "SELECT count(*) FROM cosmos_requests"), 560, "nothing twice");
}
