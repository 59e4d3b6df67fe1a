//! Detection: correlation views, the rules of queries/ on generated traffic with attack
//! scenarios, replay equivalence, rule loading, findings and their lifecycle.

use crate::common;

use chrono::{DateTime, Duration, Utc};
use common::TestDb;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tokentrail::cli::output::Format;
use tokentrail::rules::findings::{self, Status};
use tokentrail::rules::{DetectionConfig, Detector, ParamValue};
use tokentrail::synth::{Event, Generator, GroundTruth, Scenario, THREAT_INTEL_IPS, Tenant};

const MONDAY: &str = "2025-03-03T00:00:00Z";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("test time").with_timezone(&Utc)
}

/// Writes `events` as NDJSON to `name` in the test's temp dir.
fn write_events(db: &TestDb, name: &str, events: &[&Event]) -> PathBuf {
    let path = db.dir.path().join(name);
    common::write_ndjson(&path, events.iter().copied());
    path
}

/// A threat intelligence folder with the generator's "known bad" addresses, one as a range.
fn threat_intel_dir(db: &TestDb) -> PathBuf {
    let dir = db.dir.path().join("threat-intel");
    std::fs::create_dir_all(&dir).unwrap();
    let mut list = String::from("# Tor exit nodes (test)\n185.220.101.0/24\n");
    for ip in THREAT_INTEL_IPS {
        list.push_str(&format!("{ip}\n"));
    }
    list.push_str("2001:db8:dead::/48\n");
    std::fs::write(dir.join("tor-exits.txt"), list).unwrap();
    dir
}

fn config(db: &TestDb) -> DetectionConfig {
    DetectionConfig { threat_intel_dir: Some(threat_intel_dir(db)), ..DetectionConfig::default() }
}

/// Everything about the findings that must not depend on how the data arrived: the
/// evidence is named by content (activity id, sign-in id), not by row position.
fn findings_by_content(db: &TestDb) -> Vec<Vec<String>> {
    db.rows(
        "SELECT f.rule_id, f.severity, coalesce(f.principal_id, '-'), f.entity, f.first_seen::VARCHAR,
                f.last_seen::VARCHAR, f.count::VARCHAR, f.summary,
                (SELECT string_agg(coalesce(r.activity_id, s.signin_id, e.evidence_table || ':' || e.time::VARCHAR), ','
                                   ORDER BY coalesce(r.activity_id, s.signin_id, e.time::VARCHAR))
                 FROM finding_evidence e
                 LEFT JOIN cosmos_requests r ON e.evidence_table = 'cosmos_requests' AND r.rowid = e.row_id
                 LEFT JOIN signins s ON e.evidence_table = 'signins' AND s.rowid = e.row_id
                 WHERE e.fingerprint = f.fingerprint)
         FROM findings f WHERE f.status <> 'withdrawn'
         ORDER BY f.fingerprint",
    )
}

struct Scenarios {
    db: TestDb,
    truths: Vec<GroundTruth>,
    /// The account silenced for `silence`, to raise source_silent.
    silenced: String,
    silence: (DateTime<Utc>, DateTime<Utc>),
    days: i64,
}

/// Two weeks of generated traffic from a Monday with every scenario, and six hours in which
/// one Cosmos DB account sends nothing (the gap source_silent is for), ingested and evaluated.
fn scenarios() -> Scenarios {
    let seed = 42;
    let db = TestDb::new();
    let days = 14;
    let from = at(MONDAY);
    let to = from + Duration::days(days);
    let generator = Generator::new(Tenant::new(seed), seed);
    let (events, truths) = generator.history(from, to, Scenario::all());
    // Six hours of day 10 (or the first later ones) in which no scenario runs.
    let silenced = generator.tenant().accounts[1].name.clone();
    let mut start = from + Duration::days(10) + Duration::hours(9);
    while truths.iter().any(|t| t.start < start + Duration::hours(7) && t.end > start - Duration::hours(1)) {
        start += Duration::hours(1);
    }
    let silence = (start, start + Duration::hours(6));
    let kept: Vec<&Event> = events
        .iter()
        .filter(|e| {
            let account = e.record["resourceId"].as_str().unwrap_or_default().to_ascii_lowercase();
            let in_gap = e.time >= silence.0 && e.time < silence.1;
            !(in_gap && e.category == "DataPlaneRequests" && account.ends_with(&format!("/{silenced}")))
        })
        .collect();
    assert!(kept.len() < events.len(), "the gap removed events");
    let path = write_events(&db, "history.ndjson", &kept);
    let report = db.ingest(&[path]);
    assert!(report.failed.is_empty());
    // The scenarios start on day 3: ip_not_in_signins learns for 3 days, not its 7.
    let mut config = config(&db);
    config.params.insert("ip_not_in_signins".into(), BTreeMap::from([("learning_days".into(), ParamValue::Int(3))]));
    // Two weeks cannot hold a 30-day silence: the dormant principal, last used on day 0, wakes
    // on one of the last days.
    config.params.insert("dormant_principal".into(), BTreeMap::from([("dormant_days".into(), ParamValue::Int(7))]));
    let (detector, problems) = Detector::open(&db.store, &config).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let evaluation = detector.evaluate_after_commit(&db.store).unwrap();
    assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
    assert_eq!(evaluation.runs.len(), detector.rules().len());
    Scenarios { db, truths, silenced, silence, days }
}

/// The rules `scenario` (by name) is there to raise ([`Scenario::rules`]).
fn intended(scenario: &str) -> (&'static [&'static str], &'static [&'static str]) {
    Scenario::parse(scenario).unwrap_or_else(|e| panic!("{e}")).rules()
}

#[test]
fn each_scenario_raises_its_rules_and_benign_principals_almost_nothing() {
    let s = scenarios();
    let rows = s.db.rows(
        "SELECT rule_id, coalesce(principal_id, '-'), entity, epoch_us(first_seen)::VARCHAR,
                epoch_us(last_seen)::VARCHAR, count::VARCHAR
         FROM findings WHERE status <> 'withdrawn' ORDER BY first_seen",
    );
    let micros = |t: &DateTime<Utc>| t.timestamp_micros();
    let explains = |t: &GroundTruth, row: &[String]| {
        let time = |us: &str| DateTime::from_timestamp_micros(us.parse().unwrap()).unwrap();
        let principal = Some(row[1].as_str()).filter(|p| *p != "-");
        t.explains(&row[0], principal, &row[2], time(&row[3]), time(&row[4]))
    };
    let raised = |truth: &GroundTruth, rule: &str| rows.iter().any(|row| row[0] == rule && explains(truth, row));
    let mut missing = Vec::new();
    let mut secondary: BTreeMap<&str, bool> = BTreeMap::new();
    for truth in &s.truths {
        let (primary, also) = intended(&truth.scenario);
        for rule in primary {
            if !raised(truth, rule) {
                missing.push(format!("{} did not raise {rule} ({})", truth.scenario, truth.description));
            }
        }
        for rule in also {
            *secondary.entry(rule).or_default() |= raised(truth, rule);
        }
    }
    missing.extend(secondary.iter().filter(|(_, ok)| !**ok).map(|(rule, _)| format!("no scenario raised {rule}")));
    let silent = rows.iter().find(|row| row[0] == "source_silent" && row[2] == format!("stream=cosmos:{}", s.silenced));
    match silent {
        Some(row) => {
            let (first, last): (i64, i64) = (row[3].parse().unwrap(), row[4].parse().unwrap());
            assert!(first <= micros(&s.silence.0) && first > micros(&s.silence.0) - 600_000_000, "gap start {first}");
            assert!(last >= micros(&s.silence.1) && last < micros(&s.silence.1) + 600_000_000, "gap end {last}");
        }
        None => missing.push(format!("the silence of cosmos:{} raised no source_silent", s.silenced)),
    }
    let unexplained: Vec<&Vec<String>> = rows
        .iter()
        .filter(|row| !s.truths.iter().any(|t| explains(t, row)))
        .filter(|row| !(row[0] == "source_silent" && row[2] == format!("stream=cosmos:{}", s.silenced)))
        .collect();
    let scenario_principals: BTreeSet<&str> = s.truths.iter().filter_map(|t| t.principal_id.as_deref()).collect();
    let principals: i64 = s.db.value("SELECT count(*) FROM principals");
    let benign = principals - scenario_principals.len() as i64;
    let principal_days = benign * s.days;
    let per_thousand = unexplained.len() as f64 * 1000.0 / principal_days as f64;
    println!(
        "false positives: {} findings not explained by a scenario over {benign} benign principals x {} days = \
         {per_thousand:.2} per 1,000 benign principal-days",
        unexplained.len(),
        s.days
    );
    for row in &unexplained {
        println!("  unexplained: {row:?}");
    }
    assert!(missing.is_empty(), "{missing:#?}");
    let covered: BTreeSet<&str> = s
        .truths
        .iter()
        .flat_map(|t| intended(&t.scenario).0.iter().chain(intended(&t.scenario).1))
        .copied()
        // Rules of the sources' own health, tested where their cause is made:
        // source_silent below, source_reset in tests/it/eventhubs.rs (a recreated hub),
        // signin_log_missing in tests/it/rule_cases.rs (a sign-in log never exported),
        // balanced_hub_signins there too (sign-ins on a hub the instances share).
        .chain(["source_silent", "source_reset", "signin_log_missing", "balanced_hub_signins"])
        .collect();
    let built_in: BTreeSet<&str> = tokentrail::rules::rule::BUILT_IN.iter().map(|(id, _)| *id).collect();
    assert_eq!(covered, built_in, "every rule has a scenario");
    assert!(per_thousand < 1.0, "{per_thousand:.2} false positives per 1,000 benign principal-days: {unexplained:#?}");
    assert!(principals >= 57, "the tenant's 56 principals and the stranger are in the data: {principals}");
}

/// Benign traffic only, three tenants of two weeks each: what the rules raise there is false.
#[test]
fn benign_traffic_raises_under_one_finding_per_thousand_principal_days() {
    let mut findings = Vec::new();
    let mut principal_days = 0;
    for seed in [1, 2, 3] {
        let db = TestDb::new();
        let from = at(MONDAY) + Duration::days(7 * seed as i64);
        let events = Generator::new(Tenant::new(seed), seed).baseline(from, from + Duration::days(14));
        let path = write_events(&db, "benign.ndjson", &events.iter().collect::<Vec<_>>());
        db.ingest(&[path]);
        let (detector, problems) = Detector::open(&db.store, &config(&db)).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let evaluation = detector.evaluate_after_commit(&db.store).unwrap();
        assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
        let principals: i64 = db.value("SELECT count(*) FROM principals");
        assert_eq!(principals, 55, "the tenant's principals but the dormant one");
        principal_days += principals * 14;
        for row in db.rows("SELECT rule_id, coalesce(principal_id, '-'), entity, summary FROM findings") {
            findings.push((seed, row));
        }
    }
    let per_thousand = findings.len() as f64 * 1000.0 / principal_days as f64;
    println!(
        "benign traffic: {} findings over {principal_days} principal-days = {per_thousand:.2} per 1,000",
        findings.len()
    );
    for finding in &findings {
        println!("  {finding:?}");
    }
    assert!(per_thousand < 1.0, "{findings:#?}");
}

/// Contiguous pieces of `events`, each written to its own file: the sign-ins of piece
/// `late_signins` come last of all (Entra logs hours late), the others in shuffled order.
fn shuffled_pieces(db: &TestDb, events: &[Event], pieces: usize, late_signins: usize) -> Vec<PathBuf> {
    let size = events.len().div_ceil(pieces);
    let chunks: Vec<&[Event]> = events.chunks(size).collect();
    // A fixed permutation: every piece moves.
    let order: Vec<usize> = (0..chunks.len()).map(|i| (i * 7 + 3) % chunks.len()).collect();
    assert_eq!(order.iter().copied().collect::<BTreeSet<_>>().len(), chunks.len());
    let mut files = Vec::new();
    let mut held_back = Vec::new();
    for &i in &order {
        let (signins, rest): (Vec<&Event>, Vec<&Event>) =
            chunks[i].iter().partition(|e| i == late_signins && e.category != "DataPlaneRequests");
        held_back.extend(signins);
        files.push(write_events(db, &format!("piece-{i}.ndjson"), &rest));
    }
    files.push(write_events(db, "late-signins.ndjson", &held_back));
    files
}

#[test]
fn history_in_one_go_and_in_shuffled_batches_gives_the_same_findings() {
    let from = at(MONDAY);
    let generator = Generator::new(Tenant::new(7), 7);
    let (events, truths) = generator.history(from, from + Duration::days(7), Scenario::all());
    // Learn for one day only, so every scenario of the week is judged.
    let mut settings = BTreeMap::new();
    for rule in
        ["key_auth_access", "new_collection_for_principal", "new_user_agent", "new_country_signin", "ip_not_in_signins"]
    {
        settings.insert(rule.to_string(), BTreeMap::from([("learning_days".to_string(), ParamValue::Int(1))]));
    }

    let whole = TestDb::new();
    let path = write_events(&whole, "week.ndjson", &events.iter().collect::<Vec<_>>());
    whole.ingest(&[path]);
    let config_whole = DetectionConfig { params: settings.clone(), ..config(&whole) };
    let (detector, _) = Detector::open(&whole.store, &config_whole).unwrap();
    detector.evaluate_after_commit(&whole.store).unwrap();

    let pieces = TestDb::new();
    let config_pieces = DetectionConfig { params: settings, ..config(&pieces) };
    let (detector, _) = Detector::open(&pieces.store, &config_pieces).unwrap();
    let files = shuffled_pieces(&pieces, &events, 12, 5);
    let mut withdrawn_on_the_way = 0;
    for file in files {
        pieces.ingest(&[file]);
        let evaluation = detector.evaluate_after_commit(&pieces.store).unwrap();
        assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
        withdrawn_on_the_way =
            withdrawn_on_the_way.max(pieces.value::<i64>("SELECT count(*) FROM findings WHERE status = 'withdrawn'"));
    }
    println!("findings withdrawn along the way: {withdrawn_on_the_way}");

    let expected = findings_by_content(&whole);
    assert!(expected.len() >= truths.len(), "{} findings for {} scenarios", expected.len(), truths.len());
    let got = findings_by_content(&pieces);
    let only = |a: &[Vec<String>], b: &[Vec<String>]| -> Vec<Vec<String>> {
        a.iter().filter(|row| !b.contains(row)).cloned().collect()
    };
    assert!(
        got == expected,
        "only in one go: {:#?}\nonly in pieces: {:#?}",
        only(&expected, &got),
        only(&got, &expected)
    );
    // The correlation the engine keeps equals the view's.
    for db in [&whole, &pieces] {
        let differing: i64 = db.value(
            "SELECT count(*) FROM request_signins c
             FULL OUTER JOIN (SELECT * FROM request_context WHERE NOT unattributable) v USING (request_row)
             WHERE c.request_row IS NULL OR v.request_row IS NULL
                OR c.signin_time IS DISTINCT FROM v.signin_time OR c.signin_ip IS DISTINCT FROM v.signin_ip
                OR c.signin_risk_level IS DISTINCT FROM v.signin_risk_level
                OR c.signin_kind IS DISTINCT FROM v.signin_kind
                OR c.signin_resource_id IS DISTINCT FROM v.signin_resource_id
                OR c.ip_signin_time IS DISTINCT FROM v.ip_signin_time",
        );
        assert_eq!(differing, 0);
    }
    let tables =
        "SELECT (SELECT sum(events) FROM stream_hours)::VARCHAR, (SELECT sum(requests) FROM activity_hours)::VARCHAR,
                  (SELECT count(*) FROM first_seen)::VARCHAR, (SELECT count(*) FROM ip_addresses)::VARCHAR";
    assert_eq!(whole.rows(tables), pieces.rows(tables));
}

#[test]
fn the_correlation_view_keeps_every_request_and_names_who_was_behind_it() {
    let db = TestDb::new();
    let from = at(MONDAY);
    let generator = Generator::new(Tenant::new(5), 5);
    let (events, _) = generator.history(from, from + Duration::days(2), &[Scenario::KeyBasedAccess]);
    let path = write_events(&db, "two-days.ndjson", &events.iter().collect::<Vec<_>>());
    db.ingest(&[path]);
    let requests: i64 = db.value("SELECT count(*) FROM cosmos_requests");
    assert_eq!(db.value::<i64>("SELECT count(*) FROM request_context"), requests);
    let by_attribution = db.rows(
        "SELECT attribution, unattributable::VARCHAR, count(*)::VARCHAR, count(principal_kind)::VARCHAR,
                count(signin_time)::VARCHAR
         FROM request_context GROUP BY ALL ORDER BY 1",
    );
    let keyed: i64 = db.value("SELECT count(*) FROM cosmos_requests WHERE principal_id IS NULL");
    let signed: i64 = db.value("SELECT count(*) FROM cosmos_requests WHERE principal_id IS NOT NULL");
    // Only requests in the first hours can have their sign-in before the data begins.
    let early: i64 = db.value(
        "SELECT count(*) FROM request_context WHERE NOT unattributable AND signin_time IS NULL
         AND time >= TIMESTAMPTZ '2025-03-03 02:00:00+00'",
    );
    assert_eq!(early, 0);
    let with_signin: i64 = db.value("SELECT count(*) FROM cosmos_requests WHERE principal_id IS NOT NULL");
    let with_signin = with_signin
        - db.value::<i64>("SELECT count(*) FROM request_context WHERE NOT unattributable AND signin_time IS NULL");
    assert!(keyed > 100 && signed > 5000, "{keyed} {signed}");
    assert_eq!(
        by_attribution,
        [
            vec!["account_key".to_string(), "true".into(), keyed.to_string(), "0".into(), "0".into()],
            vec![
                "entra_id".to_string(),
                "false".into(),
                signed.to_string(),
                signed.to_string(),
                with_signin.to_string()
            ],
        ]
    );
    // Every request with a principal follows a sign-in of it from the same address within the
    // hour (the generator's promise), and the view finds that sign-in.
    let far: i64 = db.value(
        "SELECT count(*) FROM request_context
         WHERE NOT unattributable AND time >= TIMESTAMPTZ '2025-03-03 02:00:00+00'
           AND (signin_time < utc_add(time, - INTERVAL 70 MINUTE)
                OR NOT (ip_seen_in_signins_7d OR signin_kind = 'managed_identity'))",
    );
    assert_eq!(far, 0);
    let kinds = db.rows("SELECT kind, count(*)::VARCHAR FROM principals GROUP BY kind ORDER BY kind");
    assert_eq!(
        kinds,
        [
            vec!["managed_identity".to_string(), "6".into()],
            vec!["service_principal".to_string(), "9".into()],
            vec!["user".to_string(), "40".into()]
        ]
    );
    let user = db.rows(
        "SELECT (principal_name LIKE '%@contoso.com')::VARCHAR, (signins > 0)::VARCHAR, (data_ops >= 0)::VARCHAR,
                (first_seen <= last_seen)::VARCHAR
         FROM principals WHERE kind = 'user' LIMIT 1",
    );
    assert_eq!(user, [vec!["true", "true", "true", "true"]]);
}

const CUSTOM_RULE: &str = "-- id: large_response
-- title: One very large response
-- severity: low
-- soc2: CC7.2
-- mitre: T1530 Data from Cloud Storage
-- window: 0m
-- description: A user's own rule: a single response larger than min_bytes, which none of the
--   built-in rules looks at, raised once per principal.
-- remediation: Look at what was read.
-- param: min_bytes = 1000000
--   Bytes in one response.
SELECT time, 'cosmos_requests' AS evidence_table, rowid AS row_id, principal_id, '' AS entity,
       response_length || ' bytes' AS detail
FROM cosmos_requests
WHERE time >= $from AND time < $to AND response_length >= $min_bytes;
";

fn rule_file(dir: &Path, id: &str, text: &str) {
    std::fs::write(dir.join(format!("{id}.sql")), text).unwrap();
}

#[test]
fn user_rules_load_without_recompiling_and_a_broken_one_stops_only_itself() {
    let db = TestDb::new();
    let dir = db.dir.path().join("my-rules");
    std::fs::create_dir_all(&dir).unwrap();
    rule_file(&dir, "large_response", CUSTOM_RULE);
    let broken_header =
        CUSTOM_RULE.replace("large_response", "bad_severity").replace("severity: low", "severity: urgent");
    rule_file(&dir, "bad_severity", &broken_header);
    let no_table =
        CUSTOM_RULE.replace("large_response", "no_table").replace("FROM cosmos_requests", "FROM cosmos_request");
    rule_file(&dir, "no_table", &no_table);
    let undeclared = CUSTOM_RULE.replace("large_response", "undeclared").replace("$min_bytes;", "$max_bytes;");
    rule_file(&dir, "undeclared", &undeclared);
    let no_entity = CUSTOM_RULE.replace("large_response", "no_entity").replace("'' AS entity,", "");
    rule_file(&dir, "no_entity", &no_entity);
    // A user's copy of a built-in rule replaces it.
    let stricter = tokentrail::rules::rule::BUILT_IN
        .iter()
        .find(|(id, _)| *id == "mass_delete")
        .map(|(_, text)| text.replace("-- param: min_deletes = 100", "-- param: min_deletes = 50"))
        .unwrap();
    rule_file(&dir, "mass_delete", &stricter);
    std::fs::write(dir.join("notes.txt"), "not a rule").unwrap();

    let mut config = config(&db);
    config.rules_dir = Some(dir.clone());
    config.disabled_rules = vec!["new_user_agent".into()];
    config.params.insert("password_spray".into(), BTreeMap::from([("min_users".into(), ParamValue::Int(3))]));
    config
        .params
        .insert("impossible_travel".into(), BTreeMap::from([("min_km".into(), ParamValue::Text("far".into()))]));
    config.params.insert("no_such_rule".into(), BTreeMap::new());

    let (detector, problems) = Detector::open(&db.store, &config).unwrap();
    let problem = |needle: &str| {
        problems.iter().find(|p| p.to_string().contains(needle)).unwrap_or_else(|| panic!("{needle}: {problems:#?}"))
    };
    assert!(problem("bad_severity.sql").reason.contains("severity `urgent`"));
    assert!(problem("no_table.sql").reason.contains("cosmos_request"));
    assert!(problem("undeclared.sql").reason.contains("$max_bytes"));
    assert!(problem("no_entity.sql").reason.contains("no `entity` column"));
    assert!(problem("impossible_travel").reason.contains("`min_km` is an integer, not a string"));
    assert!(problem("no_such_rule").reason.contains("no rule has this id"));
    assert_eq!(problems.len(), 6, "{problems:#?}");

    let ids: BTreeSet<&str> = detector.rules().iter().map(|r| r.id.as_str()).collect();
    let built_in = tokentrail::rules::rule::BUILT_IN.len();
    assert_eq!(ids.len(), built_in - 2 + 1, "{ids:?}");
    assert!(ids.contains("large_response") && ids.contains("mass_delete") && ids.contains("password_spray"));
    assert!(!ids.contains("new_user_agent") && !ids.contains("impossible_travel"));
    let rule = |id: &str| detector.rules().iter().find(|r| r.id == id).unwrap();
    assert_eq!(rule("mass_delete").param("min_deletes").unwrap().effective(), &ParamValue::Int(50));
    assert_eq!(rule("password_spray").param("min_users").unwrap().effective(), &ParamValue::Int(3));

    // The working rules run, the user's among them.
    let from = at(MONDAY);
    let generator = Generator::new(Tenant::new(3), 3);
    let (events, _) = generator.history(from, from + Duration::days(2), &[Scenario::BulkExport]);
    let path = write_events(&db, "two-days.ndjson", &events.iter().collect::<Vec<_>>());
    db.ingest(&[path]);
    let evaluation = detector.evaluate_after_commit(&db.store).unwrap();
    assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
    assert_eq!(evaluation.runs.len(), ids.len());
    let large: i64 = db.value("SELECT count(*) FROM cosmos_requests WHERE response_length >= 1000000");
    assert!(large > 100);
    assert_eq!(db.value::<i64>("SELECT sum(count) FROM findings WHERE rule_id = 'large_response'"), large);
    assert_eq!(db.value::<String>("SELECT min(severity) FROM findings WHERE rule_id = 'large_response'"), "low");
}

/// Key-based requests by a new client (learning shortened to one day, so a two-day history will do).
fn key_client_history(db: &TestDb) -> (Vec<Event>, GroundTruth, Detector) {
    let from = at(MONDAY);
    let generator = Generator::new(Tenant::new(11), 11);
    let (events, truths) = generator.history(from, from + Duration::days(3), &[Scenario::KeyBasedAccess]);
    let truth = truths.into_iter().next().unwrap();
    assert!(truth.start > from + Duration::days(1), "after the learning day");
    let path = write_events(db, "three-days.ndjson", &events.iter().collect::<Vec<_>>());
    db.ingest(&[path]);
    let mut config = config(db);
    config.params.insert("key_auth_access".into(), BTreeMap::from([("learning_days".into(), ParamValue::Int(1))]));
    let (detector, problems) = Detector::open(&db.store, &config).unwrap();
    assert!(problems.is_empty());
    detector.evaluate_after_commit(&db.store).unwrap();
    (events, truth, detector)
}

/// Another transaction changes a finding's status (someone else's change, or detection
/// reopening or withdrawing it) while someone changes it too: DuckDB lets the first
/// writer of the row win, and the second change is tried again, not failed.
#[test]
fn a_status_change_waits_out_a_concurrent_change_of_the_finding() {
    let db = TestDb::new();
    let _ = key_client_history(&db);
    let id: i64 = db.value("SELECT min(id) FROM findings WHERE status = 'open'");
    let other = db.store.connection().unwrap();
    let reopen = "UPDATE findings SET status = 'open', status_by = 'tokentrail' WHERE id = ?";
    other.execute_batch("BEGIN TRANSACTION").unwrap();
    other.execute(reopen, [id]).unwrap();
    std::thread::scope(|scope| {
        let change = scope.spawn(|| findings::set_status(&db.store, id, Status::Acknowledged, "alice", "on it"));
        std::thread::sleep(std::time::Duration::from_millis(150));
        other.execute_batch("COMMIT").unwrap();
        change.join().unwrap().expect("the change goes through once the other committed");
    });
    let row = db.rows(&format!("SELECT status, status_by FROM findings WHERE id = {id}"));
    assert_eq!(row, [vec!["acknowledged".to_string(), "alice".to_string()]]);
    // A change that meets the other's first: tried again, it sees the new status.
    other.execute_batch("BEGIN TRANSACTION").unwrap();
    other.execute("UPDATE findings SET status = 'resolved', status_by = 'bob' WHERE id = ?", [id]).unwrap();
    std::thread::scope(|scope| {
        let change = scope.spawn(|| findings::set_status(&db.store, id, Status::Resolved, "carol", "done too"));
        std::thread::sleep(std::time::Duration::from_millis(100));
        other.execute_batch("COMMIT").unwrap();
        let refused = change.join().unwrap().unwrap_err();
        assert!(
            matches!(refused.downcast_ref::<findings::Refused>(), Some(findings::Refused::CannotBecome { .. })),
            "{refused:#}"
        );
    });
    // One that stays open past the retries: the change says the finding is busy.
    other.execute_batch("BEGIN TRANSACTION").unwrap();
    other.execute(reopen, [id]).unwrap();
    let busy = findings::set_status(&db.store, id, Status::Open, "dave", "not done").unwrap_err();
    other.execute_batch("ROLLBACK").unwrap();
    assert!(busy.downcast_ref::<tokentrail::store::Busy>().is_some(), "{busy:#}");
    assert!(format!("{busy:#}").contains("try again"), "{busy:#}");
}

#[test]
fn a_finding_moves_through_its_lifecycle_and_keeps_its_history() {
    let db = TestDb::new();
    let (events, truth, detector) = key_client_history(&db);
    let ip = truth.source_ip.clone().unwrap();
    let entity = format!("account={} ip={ip}", truth.account);
    let id: i64 =
        db.value(&format!("SELECT id FROM findings WHERE rule_id = 'key_auth_access' AND entity = '{entity}'"));
    let finding = db.rows(&format!(
        "SELECT status, (principal_id IS NULL)::VARCHAR, (count = len(evidence))::VARCHAR,
                epoch_us(first_seen)::VARCHAR, severity
         FROM findings WHERE id = {id}"
    ));
    let start = truth.start.timestamp_micros().to_string();
    assert_eq!(finding, [vec!["open", "true", "true", start.as_str(), "medium"]]);
    let burst = events.iter().filter(|e| e.record["properties"]["clientIpAddress"] == ip.as_str()).count() as i64;
    assert_eq!(db.value::<i64>(&format!("SELECT count FROM findings WHERE id = {id}")), burst);

    findings::set_status(&db.store, id, Status::Acknowledged, "alice", "looking at it").unwrap();
    findings::set_status(&db.store, id, Status::Resolved, "bob", "keys rotated").unwrap();
    let refused = findings::set_status(&db.store, id, Status::Acknowledged, "alice", "").unwrap_err();
    assert!(refused.to_string().contains("is resolved; it cannot become acknowledged"), "{refused}");
    assert!(findings::set_status(&db.store, id, Status::Open, " ", "").is_err(), "who is required");
    assert!(findings::set_status(&db.store, 999_999, Status::Open, "alice", "").is_err());

    // The same client comes back half an hour later (its first hour, which the rule raises):
    // new evidence reopens the resolved finding.
    let mut again: Vec<Event> =
        events.iter().filter(|e| e.record["properties"]["clientIpAddress"] == ip.as_str()).take(5).cloned().collect();
    for (i, event) in again.iter_mut().enumerate() {
        event.time += Duration::minutes(30);
        let time = event.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        event.record["time"] = serde_json::json!(time);
        event.record["properties"]["activityId"] = serde_json::json!(format!("00000000-0000-4000-8000-00000000000{i}"));
    }
    let path = write_events(&db, "again.ndjson", &again.iter().collect::<Vec<_>>());
    db.ingest(&[path]);
    let evaluation = detector.evaluate_after_commit(&db.store).unwrap();
    assert!(evaluation.raised().is_empty(), "the same incident, not a new finding");
    let row = db.rows(&format!("SELECT status, count::VARCHAR, status_by FROM findings WHERE id = {id}"));
    assert_eq!(row, [vec!["open".to_string(), (burst + 5).to_string(), "tokentrail".into()]]);

    let history: Vec<(String, Option<String>, String, Option<String>)> = findings::history(&db.store, id)
        .unwrap()
        .into_iter()
        .map(|c| (c.changed_by, c.from, c.to, c.comment))
        .collect();
    let expected = [
        ("tokentrail", None, "open", Some("raised")),
        ("alice", Some("open"), "acknowledged", Some("looking at it")),
        ("bob", Some("acknowledged"), "resolved", Some("keys rotated")),
        ("tokentrail", Some("resolved"), "open", Some("reopened: new evidence after it was resolved")),
    ];
    let expected: Vec<(String, Option<String>, String, Option<String>)> = expected
        .iter()
        .map(|(by, from, to, comment)| {
            (by.to_string(), from.map(str::to_string), to.to_string(), comment.map(str::to_string))
        })
        .collect();
    assert_eq!(history, expected);
}

#[test]
fn a_finding_that_late_sign_ins_explain_is_withdrawn() {
    let db = TestDb::new();
    let from = at(MONDAY);
    let generator = Generator::new(Tenant::new(13), 13);
    let events = generator.baseline(from, from + Duration::days(3));
    // Sign-ins of one service principal for a day and a half never arrive... until later.
    let sp = generator.tenant().service_principals.iter().find(|p| p.has_data() && !p.dormant).unwrap();
    let hidden = (from + Duration::hours(30), from + Duration::hours(66));
    let is_hidden = |e: &Event| {
        e.category == "ServicePrincipalSignInLogs"
            && e.record["properties"]["servicePrincipalId"] == sp.object_id.as_str()
            && e.time >= hidden.0
            && e.time < hidden.1
    };
    let (late, on_time): (Vec<&Event>, Vec<&Event>) = events.iter().partition(|e| is_hidden(e));
    assert!(late.len() > 20);
    let (detector, _) = Detector::open(&db.store, &config(&db)).unwrap();
    db.ingest(&[write_events(&db, "on-time.ndjson", &on_time)]);
    detector.evaluate_after_commit(&db.store).unwrap();
    let raised = db.rows(&format!(
        "SELECT id::VARCHAR, status FROM findings WHERE rule_id = 'no_prior_signin' AND principal_id = '{}'",
        sp.object_id
    ));
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0][1], "open");

    db.ingest(&[write_events(&db, "late.ndjson", &late)]);
    detector.evaluate_after_commit(&db.store).unwrap();
    let id: i64 = raised[0][0].parse().unwrap();
    let after = db.rows(&format!("SELECT status, count::VARCHAR, status_comment FROM findings WHERE id = {id}"));
    assert_eq!(after[0][0..2], ["withdrawn".to_string(), "0".into()]);
    assert!(after[0][2].contains("data that arrived later"), "{after:?}");
    assert_eq!(db.value::<i64>("SELECT count(*) FROM findings WHERE status <> 'withdrawn'"), 0);
}

#[test]
fn detect_prints_the_findings_of_a_period_as_json_or_a_table() {
    let db = TestDb::new();
    let (_, truth, _) = key_client_history(&db);
    let config = DetectionConfig {
        params: BTreeMap::from([(
            "key_auth_access".to_string(),
            BTreeMap::from([("learning_days".to_string(), ParamValue::Int(1))]),
        )]),
        ..config(&db)
    };
    let TestDb { dir, store } = db;
    drop(store); // detect opens the file itself
    let path = dir.path().join("test.duckdb");
    let detect = |from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>, format: Format| {
        let mut out = Vec::new();
        tokentrail::cli::detect::detect_with(&path, &config, from, to, format, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&detect(None, None, Format::Json)).unwrap();
    let list = json.as_array().expect("an array of findings");
    let key = list.iter().find(|f| f["rule"] == "key_auth_access").expect("the key-based finding");
    assert_eq!(key["severity"], "medium");
    assert_eq!(key["principal_id"], serde_json::Value::Null);
    assert!(key["count"].as_i64().unwrap() >= 80);
    let first = at(key["first_seen"].as_str().unwrap());
    let last = at(key["last_seen"].as_str().unwrap());
    let micros = |t: DateTime<Utc>| t.timestamp_micros();
    assert_eq!((micros(first), micros(last)), (micros(truth.start), micros(truth.end)));
    for finding in list {
        for field in ["rule", "severity", "first_seen", "last_seen", "count", "status", "entity"] {
            assert!(!finding[field].is_null(), "{field} in {finding}");
        }
        assert!(finding.get("principal_id").is_some(), "principal_id is always there, null or not");
    }

    // A period after the burst has none of its evidence; one inside it has part.
    let after: serde_json::Value =
        serde_json::from_str(&detect(Some(truth.end + Duration::seconds(1)), None, Format::Json)).unwrap();
    assert!(after.as_array().unwrap().iter().all(|f| f["rule"] != "key_auth_access"));
    let middle = truth.start + (truth.end - truth.start) / 2;
    let part: serde_json::Value = serde_json::from_str(&detect(Some(middle), Some(truth.end), Format::Json)).unwrap();
    let part = part.as_array().unwrap().iter().find(|f| f["rule"] == "key_auth_access").unwrap().clone();
    assert!(part["count"].as_i64().unwrap() < key["count"].as_i64().unwrap());
    assert!(at(part["first_seen"].as_str().unwrap()) >= middle);

    let table = detect(None, None, Format::Table);
    assert!(table.contains("key_auth_access") && table.contains("| rule") && table.contains("medium"), "{table}");
}

/// A rule that raises every request to an account: its findings keep growing.
const EVERY_REQUEST_RULE: &str = "-- id: every_request
-- title: Every request
-- severity: low
-- soc2: CC7.2
-- mitre: T1530 Data from Cloud Storage
-- window: 0m
-- description: Each account's requests, all of them: a finding that goes on.
-- remediation: None.
SELECT time, 'cosmos_requests' AS evidence_table, rowid AS row_id, NULL::VARCHAR AS principal_id,
       'account=' || account AS entity, operation AS detail
FROM cosmos_requests
WHERE time >= $from AND time < $to AND account IS NOT NULL;
";

/// A detector with the built-in rules and `text` as the user's rule `id`.
fn detector_with_rule(db: &TestDb, id: &str, text: &str) -> Detector {
    let dir = db.dir.path().join("my-rules");
    std::fs::create_dir_all(&dir).unwrap();
    rule_file(&dir, id, text);
    let mut config = config(db);
    config.rules_dir = Some(dir);
    let (detector, problems) = Detector::open(&db.store, &config).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    detector
}

/// Ingests `generator`'s traffic of [from, to) as the file `name`, then runs a pass.
fn ingest_and_detect(
    db: &TestDb,
    detector: &Detector,
    generator: &Generator,
    name: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) {
    let (events, _) = generator.history(from, to, &[]);
    let path = write_events(db, name, &events.iter().collect::<Vec<_>>());
    db.ingest(&[path]);
    let evaluation = detector.evaluate_after_commit(&db.store).unwrap();
    assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
}

/// A finding lists its first 1000 evidence rows by time (then row), however many it has and
/// in whatever order they arrive: checked against a sort of all of them.
#[test]
fn a_finding_with_more_than_a_thousand_events_lists_its_first_thousand() {
    let db = TestDb::new();
    let detector = detector_with_rule(&db, "every_request", EVERY_REQUEST_RULE);
    let generator = Generator::new(Tenant::new(3), 3);
    let mismatched = "SELECT count(*) FROM findings f
         WHERE f.rule_id = 'every_request' AND f.evidence IS DISTINCT FROM (
             SELECT (list({'table': e.evidence_table, 'row_id': e.row_id} ORDER BY e.time, e.row_id))[1:1000]
             FROM finding_evidence e WHERE e.fingerprint = f.fingerprint)";
    let counts = "SELECT (count(*) FILTER (WHERE count > 1000))::VARCHAR,
                (count(*) FILTER (WHERE len(evidence) = least(count, 1000)))::VARCHAR, count(*)::VARCHAR
         FROM findings WHERE rule_id = 'every_request'";

    // Two days, then the day before them, as late logs do.
    let monday = at(MONDAY);
    let kept = "SELECT count(*)::VARCHAR, coalesce(max(rowid), -1)::VARCHAR FROM finding_evidence WHERE rule_id = 'every_request'";
    let mut before: Option<(i64, i64)> = None;
    for (name, from, to) in [
        ("two-days.ndjson", monday, monday + Duration::days(2)),
        ("day-before.ndjson", monday - Duration::days(1), monday),
    ] {
        ingest_and_detect(&db, &detector, &generator, name, from, to);
        let row = db.rows(counts).remove(0);
        let (large, right_length, all): (i64, i64, i64) =
            (row[0].parse().unwrap(), row[1].parse().unwrap(), row[2].parse().unwrap());
        assert!(large >= 2, "{name}: {large} of {all} findings have more than 1000 events");
        assert_eq!(right_length, all, "{name}");
        assert_eq!(db.value::<i64>(mismatched), 0, "{name}: a finding's first 1000 are not its earliest");
        // The evidence already stored stays where it is: only the new rows are written, so
        // a pass leaves no dead copies of the rows it evaluated again.
        if let Some((rows, last)) = before {
            let still: i64 = db.value(&format!(
                "SELECT count(*) FROM finding_evidence WHERE rule_id = 'every_request' AND rowid <= {last}"
            ));
            assert_eq!(still, rows, "{name}: evidence rows stored before were written again");
        }
        let row = db.rows(kept).remove(0);
        before = Some((row[0].parse().unwrap(), row[1].parse().unwrap()));
    }
    // The late day's requests now lead the lists.
    let earliest: String = db.value(
        "SELECT min(r.time)::VARCHAR FROM findings f, cosmos_requests r
         WHERE f.rule_id = 'every_request' AND r.rowid = f.evidence[1].row_id",
    );
    assert!(earliest < MONDAY.replace('T', " "), "{earliest}");
}

const BUSY_ACCOUNT_RULE: &str = "-- id: busy_account
-- title: Busy account
-- severity: low
-- soc2: CC7.2
-- mitre: T1530 Data from Cloud Storage
-- window: 1h
-- description: Each account's requests, with how many came within half an hour either side: a
--   detail that later requests change.
-- remediation: None.
SELECT time, 'cosmos_requests' AS evidence_table, rowid AS row_id, NULL::VARCHAR AS principal_id,
       'account=' || account AS entity,
       count(*) OVER (PARTITION BY account ORDER BY time::TIMESTAMP
                      RANGE BETWEEN INTERVAL 30 MINUTE PRECEDING AND INTERVAL 30 MINUTE FOLLOWING)
           || ' requests within 30 minutes' AS detail
FROM cosmos_requests
WHERE time >= utc_add($from, - INTERVAL 30 MINUTE) AND time < $to AND account IS NOT NULL;
";

/// A pass writes what changed and nothing else: an evidence row whose detail later events
/// change is updated where it is, and a finding's first thousand, when they stay the same,
/// are not written again (DuckDB rewrites a whole row, under a new row id, to change a
/// list, and each commit's log then grew until the next checkpoint).
#[test]
fn a_pass_updates_changed_details_in_place_and_leaves_unchanged_lists_alone() {
    let db = TestDb::new();
    let detector = detector_with_rule(&db, "busy_account", BUSY_ACCOUNT_RULE);
    let generator = Generator::new(Tenant::new(3), 3);
    let monday = at(MONDAY);
    let evidence = "SELECT rowid::VARCHAR, detail FROM finding_evidence WHERE rule_id = 'busy_account' ORDER BY rowid";
    let findings = "SELECT fingerprint, rowid::VARCHAR, count::VARCHAR, evidence::VARCHAR, updated_at::VARCHAR
         FROM findings WHERE rule_id = 'busy_account' ORDER BY fingerprint";
    let mut passes = Vec::new();
    for (name, from, to) in [
        ("morning.ndjson", monday, monday + Duration::hours(12)),
        ("next-minutes.ndjson", monday + Duration::hours(12), monday + Duration::hours(12) + Duration::minutes(20)),
    ] {
        ingest_and_detect(&db, &detector, &generator, name, from, to);
        passes.push((db.rows(evidence), db.rows(findings)));
    }
    let ((rows_before, findings_before), (rows_after, findings_after)) = (&passes[0], &passes[1]);

    // Every row stored by the first pass is where it was; those the new requests reach
    // have their new count.
    let after: BTreeMap<&str, &str> = rows_after.iter().map(|r| (r[0].as_str(), r[1].as_str())).collect();
    let mut changed = 0;
    for row in rows_before {
        let now = after.get(row[0].as_str()).unwrap_or_else(|| panic!("evidence row {} was written again", row[0]));
        changed += usize::from(*now != row[1]);
    }
    assert!(changed > 0, "no detail changed: the test's rule does not exercise the update");
    let recount: i64 = db.value(
        "SELECT count(*) FROM finding_evidence e JOIN cosmos_requests r ON r.rowid = e.row_id
         WHERE e.rule_id = 'busy_account' AND e.detail <> (
             SELECT count(*) || ' requests within 30 minutes' FROM cosmos_requests o
             WHERE o.account = r.account AND o.time BETWEEN utc_add(r.time, - INTERVAL 30 MINUTE) AND utc_add(r.time, INTERVAL 30 MINUTE))",
    );
    assert_eq!(recount, 0, "an evidence row's detail is not its count now");

    // A finding whose first thousand did not change keeps its row; its count moved on.
    let before: BTreeMap<&str, &Vec<String>> = findings_before.iter().map(|r| (r[0].as_str(), r)).collect();
    let mut kept = 0;
    for finding in findings_after {
        let Some(old) = before.get(finding[0].as_str()) else { continue };
        if old[3] == finding[3] {
            assert_eq!(old[1], finding[1], "finding {} was rewritten though its list did not change", finding[0]);
            kept += 1;
        }
        if old[2] != finding[2] {
            assert!(finding[4] > old[4], "finding {}'s count changed but not its updated_at", finding[0]);
        } else if old[3] == finding[3] {
            assert_eq!(old[4], finding[4], "finding {} did not change but its updated_at moved", finding[0]);
        }
    }
    assert!(kept > 0, "no finding kept its list: the test does not exercise a long finding");
}

/// Rule `rule_id`'s findings whose first and last seen, count, first thousand or summary
/// (the detail of a latest event) are not those of all their evidence, or that are
/// withdrawn with evidence left or open without any.
fn differing_from_evidence(db: &TestDb, rule_id: &str) -> i64 {
    db.value(&format!(
        "WITH whole AS (
             SELECT fingerprint, min(time) AS first_seen, max(coalesce(end_time, time)) AS last_seen,
                    count(*) AS count, max(time) AS latest,
                    (list({{'table': evidence_table, 'row_id': row_id}} ORDER BY time, row_id))[1:1000] AS evidence
             FROM finding_evidence WHERE rule_id = '{rule_id}' GROUP BY fingerprint)
         SELECT count(*) FROM findings f LEFT JOIN whole w ON w.fingerprint = f.fingerprint
         WHERE f.rule_id = '{rule_id}' AND (
             (f.status = 'withdrawn') <> (w.fingerprint IS NULL)
             OR (w.fingerprint IS NULL AND f.count <> 0)
             OR f.first_seen <> w.first_seen OR f.last_seen <> w.last_seen
             OR f.count <> w.count OR f.evidence <> w.evidence
             OR NOT coalesce(f.summary IN (SELECT e.detail FROM finding_evidence e
                                           WHERE e.fingerprint = f.fingerprint AND e.time = w.latest), false))"
    ))
}

/// A pass brings a finding up to date from the period it evaluated where that suffices
/// (finding_totals.sql), and from all its evidence where not: either way, each finding's
/// first and last seen, count, first thousand and summary are those of all its evidence,
/// after passes that extend it, bring late requests into its middle, and go back before it.
#[test]
fn findings_brought_up_to_date_from_a_pass_period_equal_their_whole_evidence() {
    let db = TestDb::new();
    let detector = detector_with_rule(&db, "busy_account", BUSY_ACCOUNT_RULE);
    let generator = Generator::new(Tenant::new(3), 3);
    let late = Generator::new(Tenant::new(3), 4);
    let monday = at(MONDAY);
    let mut ways = Vec::new();
    for (name, generator, from, to) in [
        ("monday.ndjson", &generator, monday, monday + Duration::hours(24)),
        (
            "next-minutes.ndjson",
            &generator,
            monday + Duration::hours(24),
            monday + Duration::hours(24) + Duration::minutes(20),
        ),
        (
            "late-in-the-middle.ndjson",
            &late,
            monday + Duration::hours(22),
            monday + Duration::hours(22) + Duration::minutes(10),
        ),
        ("day-before.ndjson", &generator, monday - Duration::days(1), monday),
    ] {
        let (events, _) = generator.history(from, to, &[]);
        db.ingest(&[write_events(&db, name, &events.iter().collect::<Vec<_>>())]);
        let evaluation = detector.evaluate_after_commit(&db.store).unwrap();
        assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
        let run = evaluation.runs.iter().find(|r| r.rule_id == "busy_account").expect("busy_account ran");
        assert_eq!(
            differing_from_evidence(&db, "busy_account"),
            0,
            "{name}: a finding's totals are not those of its evidence"
        );
        ways.push((name, run.totals_from_period, run.totals_read_whole));
    }
    println!("busy_account's findings brought up to date (from the period, from all evidence): {ways:?}");
    assert!(ways[0].1 == 0 && ways[0].2 > 0, "the first pass raises its findings from their evidence: {ways:?}");
    assert!(ways[1].1 > 0, "no finding was brought up to date from the period alone: {ways:?}");
    assert!(ways[2].1 > 0, "late requests in the middle: no finding kept from the period: {ways:?}");
    assert!(ways[3].1 == 0 && ways[3].2 > 0, "a day before every finding reads them whole: {ways:?}");
}

const UNEXCUSED_RULE: &str = "-- id: unexcused
-- title: Unexcused request
-- severity: low
-- soc2: CC7.2
-- mitre: T1530 Data from Cloud Storage
-- window: 0m
-- description: Each account's requests but those the table `excused` lists: evidence a test
--   changes in the middle and at the end of a finding without new data.
-- remediation: None.
SELECT time, 'cosmos_requests' AS evidence_table, rowid AS row_id, NULL::VARCHAR AS principal_id,
       'account=' || account AS entity, operation || ' ' || rowid AS detail
FROM cosmos_requests
WHERE time >= $from AND time < $to AND account IS NOT NULL AND rowid NOT IN (SELECT row_id FROM excused);
";

/// A period evaluated again (`tokentrail detect --from --to`) whose evidence changed has
/// evidence after it: a finding is brought up to date from the period and what follows it
/// when its events in the middle go, and read whole when its latest events go.
#[test]
fn a_period_evaluated_again_in_a_long_findings_middle_or_end_keeps_it_equal_to_its_evidence() {
    let db = TestDb::new();
    db.store.connection().unwrap().execute_batch("CREATE TABLE excused (row_id BIGINT)").unwrap();
    let detector = detector_with_rule(&db, "unexcused", UNEXCUSED_RULE);
    let generator = Generator::new(Tenant::new(3), 3);
    let monday = at(MONDAY);
    ingest_and_detect(&db, &detector, &generator, "monday.ndjson", monday, monday + Duration::hours(24));
    assert_eq!(differing_from_evidence(&db, "unexcused"), 0);
    let end: i64 = db.value("SELECT epoch_us(max(time)) FROM cosmos_requests");
    let hour = 3_600_000_000_i64;
    let mut ways = Vec::new();
    for (what, from, to) in [
        ("the middle", monday.timestamp_micros() + 20 * hour, monday.timestamp_micros() + 21 * hour),
        ("the end", end - hour, end + 1),
    ] {
        db.store
            .connection()
            .unwrap()
            .execute(
                "INSERT INTO excused SELECT rowid FROM cosmos_requests
                 WHERE time >= make_timestamp(?::BIGINT) AND time < make_timestamp(?::BIGINT)",
                [from, to],
            )
            .unwrap();
        let evaluation = detector.evaluate_period(&db.store, Some(from), Some(to)).unwrap();
        assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
        let run = evaluation.runs.iter().find(|r| r.rule_id == "unexcused").expect("unexcused ran");
        assert_eq!(
            differing_from_evidence(&db, "unexcused"),
            0,
            "{what}: a finding's totals are not those of its evidence"
        );
        ways.push((what, run.totals_from_period, run.totals_read_whole));
    }
    println!("unexcused's findings brought up to date (from the period, from all evidence): {ways:?}");
    assert!(ways[0].1 > 0, "events gone in the middle: no finding kept from the period: {ways:?}");
    assert!(ways[1].2 > 0, "a finding's latest events gone: none read whole: {ways:?}");
    let excused: i64 = db.value("SELECT count(*) FROM excused");
    let left: i64 = db.value(
        "SELECT count(*) FROM finding_evidence e JOIN excused x ON x.row_id = e.row_id WHERE e.rule_id = 'unexcused'",
    );
    assert!(excused > 0 && left == 0, "{excused} requests excused, {left} of them still evidence");
}
