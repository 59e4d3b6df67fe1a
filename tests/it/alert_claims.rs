//! One finding, one alert across instances (`src/alerts/claims.rs`): claims in a real
//! shared lake (a directory, a real Azurite behind a TCP relay that can be down), the
//! worker in-process; and two real `tokentrail serve` reading the same sign-ins from the
//! test hub, claiming in Azurite, alerting the same webhook receiver.
//!
//! A submodule of `alerts` (its receiver, test rule and service are reused):
//! `cargo test --release --test it alerts::claims::`.

use super::*;
use crate::common::azurite::{ACCOUNT, Azurite, KEY};
use crate::eventhubs::{HUB, Service as Serve, metric};
use tokentrail::alerts::claims::{self, Claims};
use tokentrail::lake::{Lake, Location};
use tokentrail_testhub::{HubSpec, TestHub};

impl Service {
    /// [`Service::start`] with alert claims.
    fn start_claiming(&mut self, config: AlertsConfig, claims: Claims) {
        let mut alerts = config.resolve("http://tokentrail.test").unwrap();
        alerts.claims = Some(Arc::new(claims));
        self.start_with(alerts);
    }

    fn fingerprint(&self, finding: i64) -> String {
        self.value(&format!("SELECT fingerprint FROM findings WHERE id = {finding}"))
    }

    /// A metric's value on the in-process `/metrics` text (0 if absent).
    fn metric(&self, line: &str) -> f64 {
        let text = self.metrics.render();
        text.lines().find_map(|l| l.strip_prefix(line)).map_or(0.0, |n| n.trim().parse().unwrap())
    }
}

/// (status, fingerprint, change) of every alert the receiver acknowledged.
/// The `[alerts]` of a `serve` that sends every finding to the receiver named by
/// [`sharing_env`], at once.
const HOOK_ALERTS: &str = r#"[alerts]
ui_base_url = "https://tokentrail.example"
group_wait_ms = 0
group_interval_secs = 0
poll_interval_ms = 100
backoff_initial_ms = 100
backoff_max_secs = 1
[[alerts.destinations]]
name = "hook"
kind = "webhook"
url_env = "TT_TEST_HOOK_URL"
signing_keys_env = "TT_TEST_HOOK_KEYS"
[[alerts.routes]]
destinations = ["hook"]
"#;

/// A `serve`'s environment for the checkpoint store and shared lake in Azurite, and the
/// webhook `receiver` of [`HOOK_ALERTS`].
fn sharing_env(receiver: &Receiver) -> Vec<(String, String)> {
    [
        ("TOKENTRAIL_CHECKPOINT_ACCOUNT_KEY", KEY.to_owned()),
        ("TOKENTRAIL_LAKE_ACCOUNT_KEY", KEY.to_owned()),
        ("TT_TEST_HOOK_URL", receiver.url()),
        ("TT_TEST_HOOK_KEYS", KEY_A.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A `serve` (not started) in `root/<name>` reading the test hub's broadcast `HUB` in a
/// consumer group of its own and sharing `balanced.0` (with `balanced.1` added to its
/// `[eventhubs.balance]`) through Azurite's `checkpoints` and `shared` containers, with
/// `more` configuration and the alerts of [`HOOK_ALERTS`] to `receiver`.
pub(super) fn sharing_serve(
    root: &Path,
    name: &str,
    hub: &TestHub,
    azurite: &Azurite,
    balanced: (&str, &str),
    more: &str,
    receiver: &Receiver,
) -> Serve {
    let group = format!("instance-{name}");
    hub.add_consumer_group(HUB, &group);
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let (endpoint, (hub_name, balance)) = (azurite.endpoint(), balanced);
    let extra = format!(
        "consumer_group = \"{group}\"\n[eventhubs.balance]\nhubs = [\"{hub_name}\"]\n\
         checkpoint_store = \"{endpoint}/checkpoints\"\nupdate_interval_ms = 300\nexpiry_ms = 3000\n\
         shared_lake = \"{endpoint}/shared\"\n{balance}{more}{HOOK_ALERTS}"
    );
    let mut service = Serve::with_hubs(&dir, hub, &[HUB, hub_name], &extra);
    service.env.extend(sharing_env(receiver));
    service
}

pub(super) fn acked_alerts(receiver: &Receiver) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for hit in receiver.hits().into_iter().filter(|h| h.acked) {
        let body: Value = serde_json::from_str(&hit.body).unwrap();
        for alert in body["alerts"].as_array().unwrap() {
            out.push((
                alert["status"].as_str().unwrap().to_owned(),
                alert["fingerprint"].as_str().unwrap().to_owned(),
                alert["annotations"]["change"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

fn claim_body(fingerprint: &str, episode: i64, instance: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "fingerprint": fingerprint, "episode": episode, "instance": instance,
        "rule_id": "alert_test", "claimed_at": "2026-01-01T00:00:00Z"
    }))
    .unwrap()
}

#[test]
fn claims_lost_to_another_instance_or_an_unreadable_file_send_nothing_and_the_winner_sends_its_episode() {
    let receiver = Receiver::start(Behaviour::Accept);
    let mut service = Service::new();
    let raised = service.raise(4);
    assert_eq!(raised.len(), 4);
    let fps: Vec<String> = raised.iter().map(|id| service.fingerprint(*id)).collect();
    let shared = service.dir.path().join("shared");
    let plant = |fingerprint: &str, bytes: &[u8]| {
        let path = shared.join(claims::key(fingerprint, 0));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    let garbage: &[u8] = b"\x00\xff{not a claim";
    plant(&fps[0], garbage);
    plant(&fps[1], &claim_body(&fps[1], 0, "other-host-0a0b0c0d"));
    // A well-formed claim of another fingerprint, in this one's place.
    plant(&fps[2], &claim_body(&fps[0], 0, "other-host-0a0b0c0d"));
    // fps[3]: nothing there, this instance wins.

    let lake = Lake::new(Location::directory(&shared).unwrap()).unwrap();
    let url = receiver.url();
    let config = config(&service, DestinationKind::Webhook, &url, &[KEY_A]);
    service.start_claiming(config, Claims::new(lake, "this-host-01020304"));
    wait_for("four claims recorded and one alert", Duration::from_secs(20), || {
        service.value::<i64>("SELECT count(*) FROM alert_claims") == 4 && receiver.acked().len() == 1
    });
    std::thread::sleep(Duration::from_millis(500)); // nothing more goes out
    assert_eq!(
        acked_alerts(&receiver),
        vec![("firing".to_owned(), fps[3].clone(), "raised".to_owned())],
        "only the claim won is sent"
    );
    let claims: BTreeMap<String, (bool, String)> = {
        let conn = service.store.connection().unwrap();
        let mut stmt = conn.prepare("SELECT fingerprint, won, holder FROM alert_claims").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))).unwrap().collect::<Result<_, _>>().unwrap()
    };
    let unreadable = (false, claims::UNREADABLE.to_owned());
    assert_eq!(claims[&fps[0]], unreadable, "garbage bytes");
    assert_eq!(claims[&fps[1]], (false, "other-host-0a0b0c0d".to_owned()));
    assert_eq!(claims[&fps[2]], unreadable, "a claim of another fingerprint");
    assert_eq!(claims[&fps[3]], (true, "this-host-01020304".to_owned()));
    assert_eq!(service.metric("tokentrail_alert_claims_total{outcome=\"lost\"} "), 3.0);
    assert_eq!(service.metric("tokentrail_alert_claims_total{outcome=\"won\"} "), 1.0);
    // The lost episodes' events went into no message, saying why.
    let reasons = service.strings(&format!(
        "SELECT superseded_reason FROM alert_pending WHERE message_id = 0 AND finding_id IN ({}, {}, {}) \
         ORDER BY finding_id",
        raised[0], raised[1], raised[2]
    ));
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].starts_with("unreadable claim"), "{reasons:?}");
    assert_eq!(reasons[1], "claimed by instance other-host-0a0b0c0d");
    assert!(reasons[2].starts_with("unreadable claim"), "{reasons:?}");
    // The planted file is left as it was; the claim won is this instance's.
    assert_eq!(std::fs::read(shared.join(claims::key(&fps[0], 0))).unwrap(), garbage);
    let won: Value = serde_json::from_slice(&std::fs::read(shared.join(claims::key(&fps[3], 0))).unwrap()).unwrap();
    assert_eq!((won["instance"].as_str(), won["fingerprint"].as_str()), (Some("this-host-01020304"), Some(&*fps[3])));

    // Resolutions follow their episode's claim: the lost one is not sent, the won one is;
    // neither makes a claim of its own.
    for finding in [raised[1], raised[3]] {
        tokentrail::rules::findings::set_status(
            &service.store,
            finding,
            tokentrail::rules::findings::Status::Resolved,
            "responder",
            "done",
        )
        .unwrap();
    }
    service.worker.as_ref().unwrap().wake();
    wait_for("the won episode's resolution", Duration::from_secs(10), || receiver.acked().len() == 2);
    wait_for("the lost episode's resolution routed", Duration::from_secs(10), || {
        service.value::<i64>("SELECT count(*) FROM alert_events WHERE routed_at IS NULL") == 0
    });
    std::thread::sleep(Duration::from_millis(300));
    let alerts = acked_alerts(&receiver);
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!((alerts[1].0.as_str(), alerts[1].1.as_str()), ("resolved", fps[3].as_str()));
    assert_eq!(service.value::<i64>("SELECT count(*) FROM alert_claims"), 4);
    let reason: String = service.value(&format!(
        "SELECT superseded_reason FROM alert_pending WHERE change = 'resolved' AND finding_id = {}",
        raised[1]
    ));
    assert_eq!(reason, "claimed by instance other-host-0a0b0c0d");
}

/// A TCP relay on a port of its own to `target`, which can be closed (connections
/// refused) and opened again on the same port.
pub(crate) struct Relay {
    pub(crate) port: u16,
    target: u16,
    runtime: tokio::runtime::Runtime,
    server: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Relay {
    /// Closed until [`Relay::up`].
    pub(crate) fn closed(target: u16) -> Relay {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        Relay { port: crate::eventhubs::free_port(), target, runtime, server: None }
    }

    pub(crate) fn up(&mut self) {
        let listener = self.runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", self.port))).unwrap();
        let (cancel, target) = (CancellationToken::new(), self.target);
        let stop = cancel.clone();
        let task = self.runtime.spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap(),
                    _ = stop.cancelled() => return,
                };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        self.server = Some((cancel, task));
    }
}

#[test]
fn a_claim_that_cannot_be_made_sends_nothing_drops_nothing_and_is_made_once_storage_is_back() {
    let receiver = Receiver::start(Behaviour::Accept);
    let azurite = Azurite::start();
    assert!(azurite.create_container("shared"));
    let mut relay = Relay::closed(azurite.port());
    let store = object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(ACCOUNT)
        .with_access_key(KEY)
        .with_container_name("shared")
        .with_endpoint(format!("http://127.0.0.1:{}/{ACCOUNT}", relay.port))
        .with_allow_http(true)
        .with_retry(tokentrail::lake::Location::short_retry())
        .build()
        .unwrap();
    let location = Location {
        store: Arc::new(store),
        prefix: Default::default(),
        description: format!("azurite via 127.0.0.1:{}", relay.port),
        directory: None,
    };
    let mut service = Service::new();
    let raised = service.raise(1);
    let fingerprint = service.fingerprint(raised[0]);
    let url = receiver.url();
    let config = config(&service, DestinationKind::Webhook, &url, &[KEY_A]);
    service.start_claiming(config, Claims::new(Lake::new(location).unwrap(), "this-host-01020304"));

    wait_for("failed claims counted", Duration::from_secs(20), || {
        service.metric("tokentrail_alert_claim_failures_total ") >= 2.0
    });
    assert!(receiver.hits().is_empty(), "nothing is sent without a claim");
    assert_eq!(service.value::<i64>("SELECT count(*) FROM alert_claims"), 0);
    assert_eq!(service.value::<i64>("SELECT count(*) FROM alert_pending"), 0);
    assert_eq!(
        service.value::<i64>("SELECT count(*) FROM alert_events WHERE routed_at IS NULL"),
        1,
        "the event waits, unrouted"
    );

    relay.up();
    wait_for("the alert sent once storage is back", Duration::from_secs(20), || receiver.acked().len() == 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(acked_alerts(&receiver), vec![("firing".to_owned(), fingerprint.clone(), "raised".to_owned())]);
    let (won, holder): (bool, String) = service
        .store
        .connection()
        .unwrap()
        .query_row("SELECT won, holder FROM alert_claims", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((won, holder.as_str()), (true, "this-host-01020304"));
    let blob = azurite.object_store("shared");
    let bytes = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use object_store::ObjectStoreExt as _;
        blob.get(&object_store::path::Path::from(claims::key(&fingerprint, 0))).await.unwrap().bytes().await.unwrap()
    });
    let claim: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(claim["instance"], "this-host-01020304");
}

#[test]
fn two_instances_reading_the_same_sign_ins_alert_each_finding_once() {
    const SIGNINS: usize = 4;
    const BALANCED: &str = "balanced-requests";
    let receiver = Receiver::start(Behaviour::Accept);
    let azurite = Azurite::start();
    assert!(azurite.create_container("checkpoints"));
    assert!(azurite.create_container("shared"));
    let hub = TestHub::start(&[HubSpec::new(HUB, 2), HubSpec::new(BALANCED, 2)]).unwrap();
    let start = chrono::Utc::now() - chrono::TimeDelta::minutes(30);
    for n in 0..SIGNINS {
        let record = signin(n, start + chrono::TimeDelta::milliseconds(n as i64));
        hub.append(HUB, n as u32 % 2, format!("{{\"records\":[{record}]}}").into_bytes());
    }
    let root = tempfile::tempdir().unwrap();
    let rules = root.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("alert_test.sql"), TEST_RULE).unwrap();
    let built_in: Vec<String> =
        tokentrail::rules::rule::load(None).0.into_iter().map(|r| format!("{:?}", r.id)).collect();
    let detection = format!("[detection]\nrules_dir = {rules:?}\ndisabled_rules = [{}]\n", built_in.join(", "));
    // Each its own consumer group on the broadcast hub (every sign-in), the balanced hub
    // shared (nothing on it), the claims in one Azurite container.
    let mut services: Vec<Serve> = ["a", "b"]
        .into_iter()
        .map(|name| sharing_serve(root.path(), name, &hub, &azurite, (BALANCED, ""), &detection, &receiver))
        .collect();
    // Both at once: their claims race.
    services.iter_mut().for_each(Serve::start);
    // 0 while an instance is not answering yet.
    let claimed = |s: &Serve| {
        let up = ureq::get(&format!("http://127.0.0.1:{}/metrics", s.port)).call().is_ok();
        if up { metric(s, "tokentrail_alert_claims_total").0 } else { 0.0 }
    };
    let started = Instant::now();
    while !services.iter().all(|s| claimed(s) == SIGNINS as f64) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "both instances did not claim every finding: {:?}\n{}",
            services.iter().map(claimed).collect::<Vec<_>>(),
            services.iter().map(Serve::log).collect::<Vec<_>>().join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for("every finding alerted", Duration::from_secs(20), || {
        acked_alerts(&receiver).iter().map(|a| &a.1).collect::<BTreeSet<_>>().len() == SIGNINS
    });
    std::thread::sleep(Duration::from_millis(500)); // nothing more goes out
    for service in &mut services {
        service.stop();
    }

    let alerts = acked_alerts(&receiver);
    let mut raised: BTreeMap<String, usize> = BTreeMap::new();
    for (status, fingerprint, change) in &alerts {
        assert_eq!((status.as_str(), change.as_str()), ("firing", "raised"), "{alerts:?}");
        *raised.entry(fingerprint.clone()).or_default() += 1;
    }
    assert_eq!(raised.len(), SIGNINS, "{alerts:?}");
    assert!(raised.values().all(|n| *n == 1), "each finding alerted once across the instances: {raised:?}");

    let names: Vec<String> = services.iter().map(|s| tokentrail::sys::instance_name(&s.db)).collect();
    assert_ne!(names[0], names[1]);
    let mut winners: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (me, service) in services.iter().enumerate() {
        let other = &names[1 - me];
        let store = service.store();
        let conn = store.connection().unwrap();
        let rows: Vec<(String, bool, String)> = conn
            .prepare("SELECT fingerprint, won, holder FROM alert_claims ORDER BY fingerprint")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), SIGNINS, "instance {me} claimed every finding: {rows:?}");
        for (fingerprint, won, holder) in &rows {
            assert!(raised.contains_key(fingerprint), "{fingerprint} was alerted");
            assert_eq!(holder, if *won { &names[me] } else { other }, "{rows:?}");
            if *won {
                winners.entry(fingerprint.clone()).or_default().push(me);
            }
        }
        let lost = rows.iter().filter(|r| !r.1).count() as i64;
        let superseded: i64 = conn
            .query_row(
                "SELECT count(*) FROM alert_pending p JOIN alert_claims c ON c.event_id = p.event_id \
                 WHERE NOT c.won AND p.message_id = 0 AND p.superseded_reason = 'claimed by instance ' || c.holder",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(superseded, lost, "instance {me}: each lost episode's event superseded, naming the holder");
        let messages: i64 = conn.query_row("SELECT count(*) FROM alert_messages", [], |r| r.get(0)).unwrap();
        assert_eq!(messages, SIGNINS as i64 - lost, "instance {me} made messages of its won episodes only");
    }
    assert_eq!(winners.len(), SIGNINS, "{winners:?}");
    assert!(winners.values().all(|w| w.len() == 1), "one winner per finding: {winners:?}");
}
