//! Alert hooks end to end: findings raised by the real engine on a real DuckDB file,
//! the delivery worker, and a real HTTP receiver on loopback that can be down, slow,
//! throttling (429 + Retry-After), answer like Teams (200 with an error) or refuse; and
//! the real `tokentrail serve` killed with SIGKILL mid-delivery.
//!
//! "Exactly once" here means: every message reaches the receiver, and the receiver
//! acknowledges each `webhook-id` once. Delivery itself is at least once: only a message
//! whose acknowledgement was not yet recorded when the service died is sent again, with
//! the same `webhook-id`, so a receiver that deduplicates by it sees each message once.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokentrail::alerts::config::{AlertsConfig, DestinationConfig, DestinationKind, RouteConfig};
use tokentrail::alerts::payload::{self, AlertStatus, FindingView};
use tokentrail::ingest::PipelineOptions;
use tokentrail::ingest::files::ingest_files;
use tokentrail::rules::{DetectionConfig, Detector};
use tokentrail::store::{Store, StoreOptions, Writer};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------
// The receiver: a real HTTP server on loopback.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    /// 200 "ok".
    Accept,
    /// Every attempt: this status.
    Fail(u16),
    /// The first attempt of each message: 429 with `Retry-After: secs`; then accept.
    ThrottleFirst(u64),
    /// The first attempt of each message: answer only after this long; then accept.
    SlowFirst(Duration),
    /// The first attempt of each message: 200 with an error text, as Teams does; then accept.
    TeamsErrorFirst,
    /// Accept, after this long.
    AcceptAfter(Duration),
}

#[derive(Debug, Clone)]
struct Hit {
    webhook_id: String,
    at: Instant,
    headers: BTreeMap<String, String>,
    body: String,
    /// The receiver acknowledged it (answered 2xx without an error, in time).
    acked: bool,
}

#[derive(Default)]
struct Record {
    hits: Mutex<Vec<Hit>>,
    behaviour: Mutex<Option<Behaviour>>,
}

struct Receiver {
    address: SocketAddr,
    record: Arc<Record>,
    runtime: tokio::runtime::Runtime,
    server: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    /// A path part that only the secret URL has.
    secret_path: String,
}

impl Receiver {
    fn start(behaviour: Behaviour) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address = listener.local_addr().unwrap();
        let record = Arc::new(Record::default());
        *record.behaviour.lock().unwrap() = Some(behaviour);
        let secret_path = format!("hook-secret-{:016x}", rand::random::<u64>());
        let mut receiver = Receiver { address, record, runtime, server: None, secret_path };
        receiver.serve(listener);
        receiver
    }

    fn url(&self) -> String {
        format!("http://{}/{}", self.address, self.secret_path)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let cancel = CancellationToken::new();
        let app = axum::Router::new().fallback(hook).with_state(self.record.clone());
        let stop = cancel.clone();
        let task = self.runtime.spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await.unwrap();
        });
        self.server = Some((cancel, task));
    }

    /// Closes the port: connections are refused.
    fn down(&mut self) {
        if let Some((cancel, task)) = self.server.take() {
            cancel.cancel();
            self.runtime.block_on(task).unwrap();
        }
    }

    /// Listens on the same port again.
    fn up(&mut self) {
        let listener = self.runtime.block_on(tokio::net::TcpListener::bind(self.address)).unwrap();
        self.serve(listener);
    }

    fn set(&self, behaviour: Behaviour) {
        *self.record.behaviour.lock().unwrap() = Some(behaviour);
    }

    fn hits(&self) -> Vec<Hit> {
        self.record.hits.lock().unwrap().clone()
    }

    /// Acknowledged hits per webhook-id.
    fn acked(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for hit in self.hits().into_iter().filter(|h| h.acked) {
            *out.entry(hit.webhook_id).or_default() += 1;
        }
        out
    }
}

async fn hook(State(record): State<Arc<Record>>, headers: HeaderMap, body: String) -> Response {
    let webhook_id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let headers: BTreeMap<String, String> =
        headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let behaviour = record.behaviour.lock().unwrap().expect("a behaviour");
    let first = !record.hits.lock().unwrap().iter().any(|h| h.webhook_id == webhook_id);
    let index = {
        let mut hits = record.hits.lock().unwrap();
        hits.push(Hit { webhook_id, at: Instant::now(), headers, body, acked: false });
        hits.len() - 1
    };
    let ack = |record: &Record| record.hits.lock().unwrap()[index].acked = true;
    match behaviour {
        Behaviour::Fail(status) => (StatusCode::from_u16(status).unwrap(), "failing on purpose").into_response(),
        Behaviour::ThrottleFirst(secs) if first => {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs.to_string())], "slow down").into_response()
        }
        Behaviour::SlowFirst(delay) if first => {
            tokio::time::sleep(delay).await;
            // Too late: the sender gave up on this attempt (not an acknowledgement).
            (StatusCode::OK, "ok").into_response()
        }
        Behaviour::AcceptAfter(delay) => {
            tokio::time::sleep(delay).await;
            ack(&record);
            (StatusCode::OK, "ok").into_response()
        }
        Behaviour::TeamsErrorFirst if first => {
            (StatusCode::OK, "Microsoft Teams endpoint returned HTTP error 429 with ContextId tcid=0,server=x")
                .into_response()
        }
        _ => {
            ack(&record);
            (StatusCode::OK, "ok").into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------
// The service side: a DuckDB file, the engine with one test rule, the worker in-process.

/// One finding per sign-in of the app `AlertTest`.
const TEST_RULE: &str = "-- id: alert_test
-- title: Alert test sign-in
-- severity: high
-- soc2: CC7.2
-- mitre: T1078 Valid Accounts
-- window: 1h
-- description: Every sign-in of the app AlertTest, so a test decides how many findings there are.
-- remediation: None: a test rule.
SELECT time, 'signins' AS evidence_table, rowid AS row_id, principal_id, 'signin=' || signin_id AS entity,
       'sign-in <' || signin_id || '> & more' AS detail
FROM signins
WHERE time >= $from AND time < $to AND app_display_name = 'AlertTest'
";

/// A sign-in log record (the Azure Monitor diagnostic-settings form).
fn signin(n: usize, at: chrono::DateTime<chrono::Utc>) -> Value {
    let id = format!("00000000-0000-4000-8000-{n:012}");
    json!({
        "time": at.to_rfc3339(),
        "category": "SignInLogs",
        "operationName": "Sign-in activity",
        "resourceId": "/tenants/11111111-1111-1111-1111-111111111111/providers/Microsoft.aadiam",
        "properties": {
            "id": id,
            "createdDateTime": at.to_rfc3339(),
            "userId": format!("22222222-0000-4000-8000-{:012}", n % 7),
            "userPrincipalName": format!("user{}@contoso.example", n % 7),
            "userDisplayName": format!("User {}", n % 7),
            "appDisplayName": "AlertTest",
            "appId": "33333333-3333-3333-3333-333333333333",
            "ipAddress": "203.0.113.7",
            "isInteractive": true,
            "location": {"countryOrRegion": "FR", "city": "Paris"},
            "status": {"errorCode": 0}
        }
    })
}

struct Service {
    dir: tempfile::TempDir,
    db: PathBuf,
    store: Arc<Store>,
    writer: Writer,
    detector: Detector,
    signins: usize,
    runtime: tokio::runtime::Runtime,
    cancel: CancellationToken,
    /// Stops the worker when the service is dropped.
    _stop: tokio_util::sync::DropGuard,
    worker: Option<tokentrail::alerts::AlertWorker>,
    metrics: Arc<tokentrail::metrics::Metrics>,
}

fn detection_config(dir: &Path) -> DetectionConfig {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("alert_test.sql"), TEST_RULE).unwrap();
    let built_in: Vec<String> = tokentrail::rules::rule::load(None).0.into_iter().map(|r| r.id).collect();
    DetectionConfig { rules_dir: Some(rules), disabled_rules: built_in, ..DetectionConfig::default() }
}

impl Service {
    fn new() -> Service {
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn,tokentrail=info").try_init();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("alerts.duckdb");
        let store = Arc::new(Store::open(&db, &StoreOptions::default()).unwrap());
        let writer = store.writer().unwrap();
        let (detector, problems) = Detector::open(&store, &detection_config(dir.path())).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(detector.rules().len(), 1);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let cancel = CancellationToken::new();
        Service {
            dir,
            db,
            store,
            writer,
            detector,
            signins: 0,
            runtime,
            _stop: cancel.clone().drop_guard(),
            cancel,
            worker: None,
            metrics: Arc::default(),
        }
    }

    /// `tokentrail_alert_deliveries_total` of the `hook` destination for `outcome` (0 if absent).
    fn deliveries(&self, outcome: &str) -> u64 {
        let line = format!("tokentrail_alert_deliveries_total{{destination=\"hook\",outcome=\"{outcome}\"}} ");
        let text = self.metrics.render();
        text.lines().find_map(|l| l.strip_prefix(&line)).map_or(0, |n| n.trim().parse().unwrap())
    }

    /// Ingests `n` more sign-ins of the test app and runs detection: `n` findings raised,
    /// each with its outbox event in the same transaction.
    fn raise(&mut self, n: usize) -> Vec<i64> {
        self.raise_with(n, |signin| signin)
    }

    /// `raise`, each sign-in record changed by `change` first.
    fn raise_with(&mut self, n: usize, mut change: impl FnMut(Value) -> Value) -> Vec<i64> {
        let start = chrono::Utc::now() - chrono::TimeDelta::minutes(30);
        let path = self.dir.path().join(format!("signins-{}.ndjson", self.signins));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for i in 0..n {
            let k = self.signins + i;
            let record = change(signin(k, start + chrono::TimeDelta::milliseconds(k as i64)));
            serde_json::to_writer(&mut file, &record).unwrap();
            file.write_all(b"\n").unwrap();
        }
        file.flush().unwrap();
        drop(file);
        self.signins += n;
        let options = PipelineOptions { workers: 1, ..PipelineOptions::default() };
        let report =
            ingest_files(&self.store, &mut self.writer, &[path], options, indicatif::ProgressBar::hidden()).unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        let evaluation = self.detector.evaluate_after_commit(&self.store).unwrap();
        assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
        if let Some(worker) = &self.worker {
            worker.wake();
        }
        evaluation.raised()
    }

    fn start(&mut self, config: AlertsConfig) {
        self.start_with(config.resolve("http://tokentrail.test").unwrap());
    }

    fn start_with(&mut self, alerts: tokentrail::alerts::Alerts) {
        let worker = tokentrail::alerts::start(
            self.store.clone(),
            alerts,
            self.metrics.clone(),
            self.runtime.handle(),
            self.cancel.clone(),
        )
        .unwrap();
        self.worker = Some(worker);
    }

    fn value<T: duckdb::types::FromSql>(&self, sql: &str) -> T {
        let conn = self.store.connection().unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn strings(&self, sql: &str) -> Vec<String> {
        let conn = self.store.connection().unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    fn secret_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

/// A config with one destination of `kind` at `url`, every finding routed to it, and
/// quick retries.
fn config(service: &Service, kind: DestinationKind, url: &str, keys: &[&str]) -> AlertsConfig {
    let url_file = service.secret_file("url", url);
    let signing_keys_file = (!keys.is_empty()).then(|| service.secret_file("keys", &keys.join("\n")));
    AlertsConfig {
        ui_base_url: Some("https://tokentrail.example".into()),
        group_interval_secs: 0,
        timeout_ms: 2_000,
        backoff_initial_ms: 100,
        backoff_max_secs: 1,
        poll_interval_ms: 100,
        destinations: vec![DestinationConfig {
            name: "hook".into(),
            kind,
            url_env: None,
            url_file: Some(url_file),
            signing_keys_env: None,
            signing_keys_file,
        }],
        routes: vec![RouteConfig {
            destinations: vec!["hook".into()],
            min_severity: Some("medium".into()),
            rules: vec![],
            accounts: vec![],
        }],
        ..AlertsConfig::default()
    }
}

const KEY_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const KEY_B: &str = "whsec_c2Vjb25kIGtleSBmb3Igcm90YXRpb24sIDMyIGJ5dGVzIQ==";

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn all_sent(service: &Service, messages: i64) -> impl FnMut() -> bool + '_ {
    move || {
        service.value::<i64>("SELECT count(*) FROM alert_messages WHERE delivery = 'sent'") == messages
            && service.value::<i64>("SELECT count(*) FROM alert_messages") == messages
    }
}

/// The finding ids an Alertmanager-shaped body speaks of.
fn finding_ids(body: &str) -> Vec<i64> {
    let body: Value = serde_json::from_str(body).unwrap();
    body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["finding_id"].as_str().unwrap().parse().unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------
// The outbox.

#[test]
fn outbox_rows_commit_with_the_finding_change() {
    let mut service = Service::new();
    let raised = service.raise(5);
    assert_eq!(raised.len(), 5);
    // Each raised finding has its event; an unchanged evaluation adds none.
    assert_eq!(service.value::<i64>("SELECT count(*) FROM alert_events WHERE change = 'raised'"), 5);
    assert_eq!(
        service.value::<i64>("SELECT count(*) FROM findings f ANTI JOIN alert_events e ON e.finding_id = f.id"),
        0
    );
    service.detector.evaluate_after_commit(&service.store).unwrap();
    assert_eq!(service.value::<i64>("SELECT count(*) FROM alert_events"), 5);

    // A person's resolution writes its event in the same transaction; a refused change writes none.
    let id = raised[0];
    tokentrail::rules::findings::set_status(
        &service.store,
        id,
        tokentrail::rules::findings::Status::Resolved,
        "t",
        "done",
    )
    .unwrap();
    assert_eq!(service.value::<i64>("SELECT count(*) FROM alert_events WHERE change = 'resolved'"), 1);
    let refused = tokentrail::rules::findings::set_status(
        &service.store,
        id,
        tokentrail::rules::findings::Status::Resolved,
        "t",
        "again",
    );
    assert!(refused.is_err());
    assert_eq!(service.value::<i64>("SELECT count(*) FROM alert_events WHERE change = 'resolved'"), 1);
}

// ---------------------------------------------------------------------------------------
// Delivery against a real receiver.

#[test]
fn a_destination_down_then_up_receives_every_message_exactly_once() {
    let mut receiver = Receiver::start(Behaviour::Accept);
    receiver.down();
    let mut service = Service::new();
    let raised = service.raise(12);
    service.start(config(&service, DestinationKind::Webhook, &receiver.url(), &[KEY_A]));
    // Down: attempts fail (connection refused) and are retried with backoff.
    wait_for("failed attempts while the receiver is down", Duration::from_secs(20), || {
        service.value::<i64>("SELECT coalesce(max(attempts), 0) FROM alert_messages") >= 3
    });
    let error = service.strings("SELECT last_error FROM alert_messages WHERE last_error IS NOT NULL LIMIT 1");
    assert!(error[0].contains("cannot connect"), "{error:?}");
    assert!(!error[0].contains(&receiver.secret_path), "the URL is a secret: {error:?}");
    receiver.up();
    wait_for("every message delivered", Duration::from_secs(30), all_sent(&service, 12));

    let acked = receiver.acked();
    assert_eq!(acked.len(), 12, "one message per finding");
    assert!(acked.values().all(|n| *n == 1), "each message acknowledged once: {acked:?}");
    let ids: BTreeSet<String> = service.strings("SELECT webhook_id FROM alert_messages").into_iter().collect();
    assert_eq!(ids, acked.keys().cloned().collect());
    let delivered: BTreeSet<i64> =
        receiver.hits().iter().filter(|h| h.acked).flat_map(|h| finding_ids(&h.body)).collect();
    assert_eq!(delivered, raised.into_iter().collect(), "every finding reached the receiver");
}

#[test]
fn retry_after_on_429_is_honoured() {
    let receiver = Receiver::start(Behaviour::ThrottleFirst(2));
    let mut service = Service::new();
    service.raise(2);
    // Backoff alone would retry after 50-100 ms.
    service.start(config(&service, DestinationKind::Webhook, &receiver.url(), &[KEY_A]));
    wait_for("both messages delivered", Duration::from_secs(20), all_sent(&service, 2));
    let hits = receiver.hits();
    for id in receiver.acked().keys() {
        let times: Vec<Instant> = hits.iter().filter(|h| &h.webhook_id == id).map(|h| h.at).collect();
        assert_eq!(times.len(), 2, "{id}: throttled once, then delivered");
        let waited = times[1] - times[0];
        assert!(waited >= Duration::from_millis(1950), "{id}: retried after {waited:?}, before Retry-After: 2");
        assert!(waited < Duration::from_secs(4), "{id}: retried after {waited:?}, much later than asked");
    }
    assert_eq!(service.value::<i64>("SELECT count(*) FROM alert_messages WHERE attempts = 2 AND last_status = 200"), 2);
}

#[test]
fn a_slow_receiver_times_out_and_is_retried_with_the_same_id() {
    let receiver = Receiver::start(Behaviour::SlowFirst(Duration::from_secs(3)));
    let mut service = Service::new();
    service.raise(1);
    let mut config = config(&service, DestinationKind::Webhook, &receiver.url(), &[KEY_A]);
    config.timeout_ms = 500;
    service.start(config);
    wait_for("the message delivered", Duration::from_secs(20), all_sent(&service, 1));
    let hits = receiver.hits();
    assert_eq!(hits.len(), 2, "the slow attempt, then the retry");
    assert_eq!(hits[0].webhook_id, hits[1].webhook_id, "the same idempotency key on both");
    assert_eq!(hits[0].body, hits[1].body, "the same body on both");
    assert!(hits[1].at - hits[0].at < Duration::from_secs(3), "retried before the slow answer came");
    assert_eq!(service.value::<i32>("SELECT attempts FROM alert_messages"), 2);
}

#[test]
fn teams_200_with_an_error_body_is_a_failure_and_is_retried() {
    let receiver = Receiver::start(Behaviour::TeamsErrorFirst);
    let mut service = Service::new();
    service.raise(1);
    service.start(config(&service, DestinationKind::Teams, &receiver.url(), &[]));
    wait_for("the card delivered", Duration::from_secs(20), all_sent(&service, 1));
    let hits = receiver.hits();
    assert_eq!(hits.len(), 2, "the 200-with-error was not taken as delivered");
    let card: Value = serde_json::from_str(&hits[1].body).unwrap();
    assert_eq!(card["type"], "message");
    assert_eq!(card["attachments"][0]["content"]["type"], "AdaptiveCard");
    assert!(!hits[1].headers.contains_key("webhook-signature"), "only generic webhooks are signed");
    // On /metrics: one failed attempt to be retried, one delivery.
    assert_eq!((service.deliveries("retry"), service.deliveries("delivered"), service.deliveries("dead")), (1, 1, 0));
}

#[test]
fn refused_and_expired_messages_die_and_a_retry_by_hand_sends_them_again() {
    let receiver = Receiver::start(Behaviour::Fail(400));
    let mut service = Service::new();
    service.raise(1);
    let mut config = config(&service, DestinationKind::Slack, &receiver.url(), &[]);
    config.give_up_after_secs = 2;
    service.start(config);
    // 400: retrying cannot help, so it is dead at once.
    wait_for("a dead message", Duration::from_secs(10), || {
        service.value::<i64>("SELECT count(*) FROM alert_messages WHERE delivery = 'dead'") == 1
    });
    assert_eq!(service.value::<i32>("SELECT attempts FROM alert_messages"), 1);
    assert_eq!(service.value::<i32>("SELECT last_status FROM alert_messages"), 400);
    assert_eq!((service.deliveries("dead"), service.deliveries("delivered")), (1, 0));

    // 503 is worth retrying, until give_up_after_secs has passed.
    receiver.set(Behaviour::Fail(503));
    let id: i64 = service.value("SELECT id FROM alert_messages");
    let retried = tokentrail::alerts::outbox::retry(&service.store, id, "test responder").unwrap();
    assert_eq!(retried, tokentrail::alerts::outbox::Retry::Queued);
    wait_for("dead again after the give-up time", Duration::from_secs(15), || {
        service.value::<i64>("SELECT count(*) FROM alert_messages WHERE delivery = 'dead' AND attempts > 2") == 1
    });
    let tried: i64 = service.value("SELECT attempts FROM alert_messages");
    assert!(tried >= 3, "retried with backoff until it gave up ({tried} attempts)");

    // By hand, once the destination works: the same message, the same id.
    receiver.set(Behaviour::Accept);
    tokentrail::alerts::outbox::retry(&service.store, id, "test responder").unwrap();
    wait_for("sent after the retry by hand", Duration::from_secs(10), all_sent(&service, 1));
    assert_eq!(receiver.acked().len(), 1);
    let ids: BTreeSet<String> = receiver.hits().into_iter().map(|h| h.webhook_id).collect();
    assert_eq!(ids.len(), 1, "every attempt carried the same webhook-id");
    assert_eq!(service.strings("SELECT retried_by FROM alert_messages"), ["test responder"]);
    let refused = tokentrail::alerts::outbox::retry(&service.store, id, "test responder").unwrap();
    assert!(matches!(refused, tokentrail::alerts::outbox::Retry::NotDead(_)));
}

#[test]
fn changes_are_grouped_by_rule_and_principal_and_a_resolution_sends_a_resolved_message() {
    let receiver = Receiver::start(Behaviour::Accept);
    let mut service = Service::new();
    let mut config = config(&service, DestinationKind::Webhook, &receiver.url(), &[KEY_A]);
    config.group_interval_secs = 3;
    service.start(config);
    let as_user = |user: usize| {
        move |mut signin: Value| {
            signin["properties"]["userId"] = json!(format!("22222222-0000-4000-8000-{user:012}"));
            signin["properties"]["userPrincipalName"] = json!(format!("user{user}@contoso.example"));
            signin
        }
    };
    // Two findings about one principal: one group, one message, after the group's wait.
    let started = Instant::now();
    let first = service.raise_with(2, as_user(1));
    wait_for("the first message", Duration::from_secs(10), || receiver.acked().len() == 1);
    assert!(started.elapsed() >= Duration::from_millis(900), "the group waited for the rest of its changes");
    let first_sent = Instant::now();
    // Within the interval: more about the same principal (they wait for the interval),
    // and a finding about another principal (a group of its own: it does not wait).
    let again = service.raise_with(2, as_user(1));
    let other_at = Instant::now();
    let other = service.raise_with(1, as_user(2));
    wait_for("the other principal's message", Duration::from_secs(10), || receiver.acked().len() == 2);
    assert!(other_at.elapsed() < Duration::from_millis(2500), "another principal's finding did not wait");
    wait_for("the grouped message", Duration::from_secs(10), || receiver.acked().len() == 3);
    assert!(first_sent.elapsed() >= Duration::from_millis(2500), "the group's update waited for the interval");
    let hits: Vec<Hit> = receiver.hits().into_iter().filter(|h| h.acked).collect();
    assert_eq!(finding_ids(&hits[0].body), first);
    assert_eq!(finding_ids(&hits[1].body), other);
    assert_eq!(finding_ids(&hits[2].body), again, "one message for the group's findings of the interval");
    let grouped: Value = serde_json::from_str(&hits[2].body).unwrap();
    assert_eq!(grouped["status"], "firing");

    // A resolution goes at once, although the interval has not passed since the last message.
    let resolved_at = Instant::now();
    tokentrail::rules::findings::set_status(
        &service.store,
        first[0],
        tokentrail::rules::findings::Status::Resolved,
        "responder",
        "fixed",
    )
    .unwrap();
    wait_for("the resolved message", Duration::from_secs(10), || receiver.acked().len() == 4);
    assert!(resolved_at.elapsed() < Duration::from_secs(2));
    let hits: Vec<Hit> = receiver.hits().into_iter().filter(|h| h.acked).collect();
    let resolved: Value = serde_json::from_str(&hits[3].body).unwrap();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["labels"]["finding_id"], first[0].to_string());
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
}

#[test]
fn the_generic_webhook_is_alertmanager_shaped_and_its_signature_verifies_with_the_reference_library() {
    let receiver = Receiver::start(Behaviour::Accept);
    let mut service = Service::new();
    let raised = service.raise(1);
    // Two keys at once, as while rotating.
    service.start(config(&service, DestinationKind::Webhook, &receiver.url(), &[KEY_A, KEY_B]));
    wait_for("the message delivered", Duration::from_secs(10), all_sent(&service, 1));
    let hit = receiver.hits().remove(0);

    let body: Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "hook");
    let alert = &body["alerts"][0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["alertname"], "alert_test");
    assert_eq!(alert["labels"]["severity"], "high");
    assert_eq!(alert["annotations"]["summary"], "Alert test sign-in");
    assert_eq!(alert["generatorURL"], format!("https://tokentrail.example/findings/{}", raised[0]));
    assert_eq!(alert["fingerprint"].as_str().unwrap().len(), 32);
    assert!(alert["startsAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(hit.headers["webhook-signature"].split(' ').count(), 2, "one signature per key");

    // The Standard Webhooks reference implementation (PyPI `standardwebhooks`) checks it.
    let verify = |key: &str, body: &str| -> bool {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("body"), body).unwrap();
        std::fs::write(dir.path().join("headers.json"), serde_json::to_string(&hit.headers).unwrap()).unwrap();
        let python = PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/tokentrail-venv/bin/python");
        let out = std::process::Command::new(&python)
            .arg("-c")
            .arg(
                "import json, sys\nfrom standardwebhooks.webhooks import Webhook\n\
                 headers = json.load(open(sys.argv[1]))\nbody = open(sys.argv[2], 'rb').read()\n\
                 Webhook(sys.argv[3]).verify(body, headers)\n",
            )
            .arg(dir.path().join("headers.json"))
            .arg(dir.path().join("body"))
            .arg(key)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} (.ci/run installs standardwebhooks there)", python.display()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() || stderr.contains("WebhookVerificationError"), "{stderr}");
        out.status.success()
    };
    assert!(verify(KEY_A, &hit.body), "the first key verifies");
    assert!(verify(KEY_B, &hit.body), "the second key verifies");
    assert!(!verify("whsec_d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkh", &hit.body), "another key does not");
    assert!(!verify(KEY_A, &hit.body.replace("firing", "FIRING")), "a changed body does not");
}

// ---------------------------------------------------------------------------------------
// Payloads against the formats' documented limits.

fn views(n: usize, long: usize) -> Vec<FindingView> {
    let t = chrono::DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z").unwrap().to_utc();
    (0..n)
        .map(|i| FindingView {
            id: i as i64 + 1,
            fingerprint: format!("{:032x}", i),
            rule_id: "impossible_travel".into(),
            title: format!("Impossible travel <!channel> & {}", "x".repeat(long)),
            severity: ["low", "medium", "high", "critical"][i % 4].into(),
            status: "open".into(),
            principal_id: Some("22222222-0000-4000-8000-000000000001".into()),
            principal_name: Some(format!("<@U123> {}", "n".repeat(long))),
            entity: format!("ip=203.0.113.{i} {}", "e".repeat(long)),
            account: Some("contoso".into()),
            first_seen: t,
            last_seen: t,
            count: 3,
            summary: Some(format!(
                "read 2 GB <https://evil.example|click> [click](https://evil.example/md) {}",
                "s".repeat(long * 3)
            )),
        })
        .collect()
}

fn build(kind: DestinationKind, status: AlertStatus, findings: &[FindingView]) -> Value {
    let config = AlertsConfig { ui_base_url: Some("https://tokentrail.example".into()), ..AlertsConfig::default() };
    let alerts = config.resolve("http://unused").unwrap();
    let destination =
        tokentrail::alerts::config::Destination { name: "d".into(), kind, url: unreachable_secret(), keys: vec![] };
    let new: BTreeSet<i64> = findings.iter().map(|f| f.id).filter(|id| id % 2 == 0).collect();
    payload::build(&destination, &alerts, status, findings, &new, chrono::Utc::now())
}

/// A destination URL for payload tests (never sent to).
fn unreachable_secret() -> tokentrail::alerts::config::Secret {
    tokentrail::alerts::config::Secret::new("http://127.0.0.1:9/unused".into())
}

fn chars(v: &Value) -> usize {
    v.as_str().unwrap().chars().count()
}

#[test]
fn slack_messages_keep_to_block_kit_limits_and_escape_log_text() {
    for (n, long) in [(1, 0), (3, 50), (60, 5_000)] {
        for status in [AlertStatus::Firing, AlertStatus::Resolved] {
            let message = build(DestinationKind::Slack, status, &views(n, long));
            let text = chars(&message["text"]);
            assert!(text > 0 && text <= 40_000, "fallback text of {text} characters");
            let blocks = message["blocks"].as_array().unwrap();
            assert!(!blocks.is_empty() && blocks.len() <= 50, "{} blocks", blocks.len());
            for block in blocks {
                match block["type"].as_str().unwrap() {
                    "header" => {
                        assert_eq!(block["text"]["type"], "plain_text");
                        assert!(chars(&block["text"]["text"]) <= 150);
                    }
                    "section" => {
                        assert_eq!(block["text"]["type"], "mrkdwn");
                        let text = block["text"]["text"].as_str().unwrap();
                        assert!(text.chars().count() <= 3000);
                        // Log text cannot mention people or make links of its own.
                        assert!(!text.contains("<!channel>") && !text.contains("<@U123>"), "{text}");
                        assert!(!text.contains("<https://evil"), "{text}");
                        assert!(text.contains("<https://tokentrail.example/findings/"), "links to the finding");
                        assert_eq!(block["text"]["verbatim"], true, "Slack adds no links of its own");
                        // Log text goes in plain_text fields, which Slack never formats.
                        let fields = block["fields"].as_array().unwrap();
                        assert!(fields.len() <= 10);
                        for field in fields {
                            assert_eq!((&field["type"], &field["emoji"]), (&json!("plain_text"), &json!(false)));
                            assert!(chars(&field["text"]) <= 2000);
                        }
                    }
                    "context" => {
                        let elements = block["elements"].as_array().unwrap();
                        assert!(!elements.is_empty() && elements.len() <= 10);
                        assert!(elements.iter().all(|e| chars(&e["text"]) <= 3000));
                    }
                    "actions" => {
                        let elements = block["elements"].as_array().unwrap();
                        assert!(elements.len() <= 25);
                        for button in elements {
                            assert_eq!(button["type"], "button");
                            assert!(chars(&button["text"]["text"]) <= 75);
                            assert!(chars(&button["url"]) <= 3000);
                        }
                    }
                    other => panic!("unexpected block type {other}"),
                }
            }
            if n > payload::CHAT_FINDINGS {
                let last = serde_json::to_string(&blocks[blocks.len() - 1]).unwrap();
                assert!(last.contains(&format!("{} more", n - payload::CHAT_FINDINGS)), "{last}");
            }
        }
    }
}

#[test]
fn teams_messages_are_adaptive_cards_in_a_message_envelope() {
    for (n, long) in [(1, 0), (28, 10_000), (60, 5_000)] {
        let message = build(DestinationKind::Teams, AlertStatus::Firing, &views(n, long));
        assert_eq!(message["type"], "message");
        let attachments = message["attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 1);
        assert_eq!(attachments[0]["contentType"], "application/vnd.microsoft.card.adaptive");
        let card = &attachments[0]["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["$schema"], "http://adaptivecards.io/schemas/adaptive-card.json");
        assert!(["1.4", "1.5"].contains(&card["version"].as_str().unwrap()));
        let known = ["TextBlock", "Container", "RichTextBlock"];
        let mut runs = Vec::new();
        let mut stack: Vec<&Value> = card["body"].as_array().unwrap().iter().collect();
        while let Some(element) = stack.pop() {
            let ty = element["type"].as_str().unwrap();
            assert!(known.contains(&ty), "element type {ty}");
            if ty == "TextBlock" {
                assert!(element["text"].is_string() && element["wrap"] == true);
                // Markdown: only our own words, never log text.
                let text = element["text"].as_str().unwrap();
                assert!(!text.contains("click") && !text.contains("<@U123>"), "{text}");
            }
            if ty == "RichTextBlock" {
                for run in element["inlines"].as_array().unwrap() {
                    assert_eq!(run["type"], "TextRun");
                    runs.push(run["text"].as_str().unwrap());
                }
            }
            stack.extend(element["items"].as_array().into_iter().flatten());
        }
        // Log text in TextRuns, which Teams never reads as Markdown: as written, no backslashes.
        assert!(runs.iter().any(|r| r.contains("<https://evil.example|click> [click](https://evil.example/md)")));
        assert!(runs.iter().any(|r| r.starts_with("<@U123>")), "{runs:?}");
        assert!(!runs.iter().any(|r| r.contains('\\')), "{runs:?}");
        let action = &card["actions"][0];
        assert_eq!(action["type"], "Action.OpenUrl");
        assert!(action["url"].as_str().unwrap().starts_with("https://tokentrail.example/findings"));
        // Teams refuses cards over about 28 KB.
        let size = serde_json::to_string(&message).unwrap().len();
        assert!(size < 28_000, "{n} findings make a {size}-byte card");
    }
}

/// Log values an attacker writes: a sign-in's id (the test rule's entity and detail) and
/// the user's names (the principal).
const HOSTILE: [&str; 3] = [
    "x\n*Status:* resolved <!channel> https://evil.example [click](https://evil.example) \u{202E}fdp.exe",
    "\u{2066}<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<",
    "\r\n- item &amp;&lt;!here&gt; \u{0}\u{1b}[2J _it_ `code` 👩‍💻 日本語",
];

#[test]
fn hostile_log_values_reach_slack_teams_and_webhooks_as_plain_single_lines_within_limits() {
    let receiver = Receiver::start(Behaviour::Accept);
    let mut service = Service::new();
    let mut config = config(&service, DestinationKind::Slack, &receiver.url(), &[]);
    for (name, kind) in [("teams", DestinationKind::Teams), ("webhook", DestinationKind::Webhook)] {
        config.destinations.push(DestinationConfig {
            name: name.into(),
            kind,
            url_env: None,
            url_file: Some(service.secret_file(&format!("{name}-url"), &receiver.url())),
            signing_keys_env: None,
            signing_keys_file: (kind == DestinationKind::Webhook).then(|| service.secret_file("keys", KEY_A)),
        });
    }
    config.routes[0].destinations = vec!["hook".into(), "teams".into(), "webhook".into()];
    // Each value repeated to about 10,000 characters.
    let values: Vec<String> = HOSTILE.iter().map(|v| v.repeat(10_000 / v.chars().count().min(100))).collect();
    let mut next = values.iter();
    let raised = service.raise_with(HOSTILE.len(), |mut signin| {
        let value = next.next().unwrap();
        signin["properties"]["id"] = json!(value);
        signin["properties"]["userPrincipalName"] = json!(value);
        signin
    });
    assert_eq!(raised.len(), HOSTILE.len());
    service.start(config);
    wait_for("every message delivered", Duration::from_secs(30), all_sent(&service, 3 * HOSTILE.len() as i64));

    let stored: BTreeSet<String> = service.strings("SELECT body FROM alert_messages").into_iter().collect();
    let hits: Vec<Hit> = receiver.hits().into_iter().filter(|h| h.acked).collect();
    assert_eq!(hits.len(), 3 * HOSTILE.len());
    // One line of visible text: no control, line break or bidirectional character.
    let one_line = |text: &str| {
        !text.chars().any(|c| {
            c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        })
    };
    let (mut slack, mut teams, mut webhook) = (0, 0, 0);
    for hit in &hits {
        assert!(stored.contains(&hit.body), "the body sent is the body stored");
        let body: Value = serde_json::from_str(&hit.body).unwrap();
        if let Some(blocks) = body["blocks"].as_array() {
            slack += 1;
            assert!(blocks.len() <= 50);
            let section = &blocks[1];
            let mrkdwn = section["text"]["text"].as_str().unwrap();
            assert_eq!(section["text"]["verbatim"], true);
            assert!(
                mrkdwn.starts_with("🟧 *<https://tokentrail.example/findings/") && mrkdwn.ends_with(">*"),
                "{mrkdwn}"
            );
            for field in section["fields"].as_array().unwrap() {
                assert_eq!((&field["type"], &field["emoji"]), (&json!("plain_text"), &json!(false)));
                let text = field["text"].as_str().unwrap();
                assert!(text.chars().count() <= 2000 && one_line(text), "{text:?}");
            }
            let entity = section["fields"][5]["text"].as_str().unwrap();
            assert!(entity.starts_with("Entity: signin=") && entity.ends_with('…'), "{entity}");
            if entity.contains("evil") {
                assert!(entity.starts_with(
                    "Entity: signin=x *Status:* resolved <!channel> https://evil.example [click](https://evil.example) fdp.exex *Status:*"
                ));
            }
        } else if body["type"] == "message" {
            teams += 1;
            assert!(hit.body.len() < 28_000, "a {}-byte card", hit.body.len());
            let container = &body["attachments"][0]["content"]["body"][1];
            let runs: Vec<&str> = container["items"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|line| line["inlines"].as_array().unwrap())
                .map(|run| run["text"].as_str().unwrap())
                .collect();
            assert!(runs.iter().all(|r| one_line(r)), "{runs:?}");
            assert!(runs.iter().any(|r| r.starts_with("signin=")), "the entity: {runs:?}");
            if hit.body.contains("evil") {
                assert!(
                    runs.iter().any(|r| r.starts_with("signin=x *Status:* resolved <!channel> https://evil.example"))
                );
            }
        } else {
            webhook += 1;
            assert!(hit.body.len() <= 64 * 1024, "a {}-byte webhook body", hit.body.len());
            assert!(hit.headers.contains_key("webhook-signature"));
            assert_eq!(body["version"], "4");
            assert_eq!(body["truncatedAlerts"], 0);
            let alert = &body["alerts"][0];
            for value in
                alert["labels"].as_object().unwrap().values().chain(alert["annotations"].as_object().unwrap().values())
            {
                assert!(one_line(value.as_str().unwrap()), "{value}");
            }
            assert!(alert["labels"]["entity"].as_str().unwrap().chars().count() <= 256);
        }
    }
    assert_eq!((slack, teams, webhook), (3, 3, 3));
}

// ---------------------------------------------------------------------------------------
// The real binary, killed mid-delivery.

fn serve(db: &Path, dir: &Path, receiver: &Receiver, log: &Path) -> std::process::Child {
    let config = dir.join("tokentrail.toml");
    let rules = dir.join("rules");
    let built_in: Vec<String> =
        tokentrail::rules::rule::load(None).0.into_iter().map(|r| format!("{:?}", r.id)).collect();
    std::fs::write(
        &config,
        format!(
            r#"db = {db:?}
[http]
listen = "127.0.0.1:0"
development_sign_in = true
[detection]
rules_dir = {rules:?}
disabled_rules = [{built_in}]
[alerts]
ui_base_url = "https://tokentrail.example"
group_interval_secs = 0
backoff_initial_ms = 100
backoff_max_secs = 1
poll_interval_ms = 200
[[alerts.destinations]]
name = "hook"
kind = "webhook"
url_env = "TT_TEST_HOOK_URL"
signing_keys_env = "TT_TEST_HOOK_KEYS"
[[alerts.routes]]
destinations = ["hook"]
"#,
            built_in = built_in.join(", ")
        ),
    )
    .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("TOKENTRAIL_LOG", "debug")
        .env("TT_TEST_HOOK_URL", receiver.url())
        .env("TT_TEST_HOOK_KEYS", format!("{KEY_A} {KEY_B}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn killed_mid_delivery_the_service_sends_nothing_acknowledged_twice_and_loses_nothing() {
    const FINDINGS: usize = 30;
    // Each answer takes 150 ms, so the kill lands while messages are going out.
    let receiver = Receiver::start(Behaviour::AcceptAfter(Duration::from_millis(150)));
    // The findings and their outbox events, made before the service starts; the database
    // is closed at the end of the block (the service opens it).
    let (tempdir, db, raised) = {
        let mut service = Service::new();
        let raised: BTreeSet<i64> = service.raise(FINDINGS).into_iter().collect();
        assert_eq!(raised.len(), FINDINGS);
        (service.dir, service.db, raised)
    };
    let dir = tempdir.path().to_path_buf();
    let log = dir.join("serve.log");

    let mut child = serve(&db, &dir, &receiver, &log);
    wait_for("some messages delivered", Duration::from_secs(60), || receiver.acked().len() >= 8);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed_at = Instant::now();

    // What the service had recorded as acknowledged when it died.
    let acknowledged: BTreeSet<String> = {
        let store = Store::open(&db, &StoreOptions::default()).unwrap();
        let conn = store.connection().unwrap();
        let mut stmt = conn.prepare("SELECT webhook_id FROM alert_messages WHERE delivery = 'sent'").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };
    assert!(!acknowledged.is_empty() && acknowledged.len() < FINDINGS, "killed mid-delivery: {}", acknowledged.len());

    let mut child = serve(&db, &dir, &receiver, &log);
    wait_for("every finding delivered after the restart", Duration::from_secs(60), || {
        receiver.acked().len() == FINDINGS
    });
    // Nothing more arrives (no late repeats).
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();

    let hits = receiver.hits();
    let after_restart: Vec<&Hit> = hits.iter().filter(|h| h.at > killed_at).collect();
    for hit in &after_restart {
        assert!(
            !acknowledged.contains(&hit.webhook_id),
            "{} was acknowledged and recorded, yet sent again",
            hit.webhook_id
        );
    }
    let acked = receiver.acked();
    assert_eq!(acked.len(), FINDINGS, "one message per finding, each with its own webhook-id");
    let repeats: Vec<(&String, &usize)> = acked.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeats.len() <= 1,
        "only the message in flight at the kill (one per destination) may arrive twice: {repeats:?}"
    );
    let delivered: BTreeSet<i64> = hits.iter().filter(|h| h.acked).flat_map(|h| finding_ids(&h.body)).collect();
    assert_eq!(delivered, raised, "every finding reached the receiver");

    let store = Store::open(&db, &StoreOptions::default()).unwrap();
    let conn = store.connection().unwrap();
    let (sent, total): (i64, i64) = conn
        .query_row("SELECT count(*) FILTER (WHERE delivery = 'sent'), count(*) FROM alert_messages", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((sent, total), (FINDINGS as i64, FINDINGS as i64));
    // The URL (its secret path) and the keys are in no log line and no row.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("alert delivered"), "the log has the deliveries");
    for secret in [receiver.secret_path.as_str(), KEY_A, KEY_B, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] {
        assert!(!log.contains(secret), "the log shows a secret");
        let in_rows: i64 = conn
            .query_row(
                "SELECT count(*) FROM alert_messages WHERE contains(body, ?) OR contains(coalesce(last_error, ''), ?)",
                [secret, secret],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(in_rows, 0, "a row holds a secret");
    }
    drop(tempdir);
}

// ---------------------------------------------------------------------------------------
// One finding, one alert across instances.

#[path = "alert_claims.rs"]
pub(crate) mod claims;

// Rules over everyone's counts, on the rules lease holder of three instances.
#[path = "fleet_rules.rs"]
pub(crate) mod fleet;
