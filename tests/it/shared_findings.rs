//! One list of findings across instances (issue 36, src/lake/shared_findings.rs): what one
//! instance raised is listed on another with its count, times and status; its status is
//! one on every instance, set on any of them (the raiser may be gone); a file never
//! overwrites the count of a finding the instance raised itself.
//! Files in the shared lake are written by other machines: each is checked whole.

use crate::common;

use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use std::path::Path;
use tokentrail::lake::shared_findings::{DIR, SharedFindings};
use tokentrail::lake::{Lake, Location};
use tokentrail::rules::findings::{self, Status};
use tokentrail::rules::{DetectionConfig, Detector, ParamValue};
use tokentrail::store::{Store, StoreOptions};
use tokentrail::synth::{Generator, Scenario, Tenant};

const A: &str = "alpha-0a0a0a0a";
const B: &str = "beta-0b0b0b0b";

fn lake(dir: &Path) -> Lake {
    Lake::new(Location::directory(dir).unwrap()).unwrap()
}

fn value<T: duckdb::types::FromSql>(store: &Store, sql: &str) -> T {
    store.connection().unwrap().query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// fingerprint → (rule, status, count, raised on) of every finding in `store`.
fn listed(store: &Store) -> BTreeMap<String, (String, String, i64, Option<String>)> {
    let conn = store.connection().unwrap();
    let mut statement = conn
        .prepare("SELECT fingerprint, rule_id, status, count, taken_in_from(fingerprint, updated_at) FROM findings")
        .unwrap();
    statement
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Instance A with key-based access raised by detection over three days.
fn raised_on_a(path: &Path) -> Store {
    let store = Store::open(path, &StoreOptions::default()).unwrap();
    let monday = DateTime::parse_from_rfc3339("2025-03-03T00:00:00Z").unwrap().with_timezone(&Utc);
    let generator = Generator::new(Tenant::new(11), 11);
    let (events, _) = generator.history(monday, monday + Duration::days(3), &[Scenario::KeyBasedAccess]);
    common::ingest_in_files(&store, path.parent().unwrap(), "a.ndjson", &events, 1);
    let mut config = DetectionConfig::default();
    config.params.insert("key_auth_access".into(), BTreeMap::from([("learning_days".into(), ParamValue::Int(1))]));
    let (detector, problems) = Detector::open(&store, &config).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    detector.evaluate_after_commit(&store).unwrap();
    store
}

#[test]
fn a_finding_raised_on_one_instance_is_listed_on_another_and_follows_the_raisers_status() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir.path().join("lake"));
    let a = raised_on_a(&dir.path().join("a.duckdb"));
    let b = Store::open(&dir.path().join("b.duckdb"), &StoreOptions::default()).unwrap();
    let (share_a, share_b) = (SharedFindings::new(A.into()), SharedFindings::new(B.into()));

    let on_a = listed(&a);
    assert!(on_a.values().any(|f| f.0 == "key_auth_access"), "detection raised findings on A: {on_a:?}");
    let published = share_a.pass(&a, &lake).unwrap();
    assert_eq!(published.published, on_a.len(), "A publishes every finding it raised");
    let taken = share_b.pass(&b, &lake).unwrap();
    assert_eq!((taken.taken_in, taken.files_rejected, taken.published), (on_a.len(), 0, 0));

    // B lists A's findings as A has them, each raised on A; A's own are not marked.
    let on_b = listed(&b);
    assert_eq!(on_b.len(), on_a.len());
    for (fingerprint, (rule, status, count, raised_on)) in &on_a {
        assert_eq!(raised_on, &None, "A raised {fingerprint} itself");
        assert_eq!(on_b[fingerprint], (rule.clone(), status.clone(), *count, Some(A.to_owned())));
    }
    let (key_fp, _) = on_a.iter().find(|(_, f)| f.0 == "key_auth_access").unwrap();
    let id_on =
        |store: &Store| -> i64 { value(store, &format!("SELECT id FROM findings WHERE fingerprint = '{key_fp}'")) };
    // Its history on B says where it came from, and B's history chain holds.
    let history = findings::history(&b, id_on(&b)).unwrap();
    assert!(history[0].comment.as_deref().unwrap().contains(A), "{history:?}");
    let chain = tokentrail::store::append::verify(&b).unwrap();
    assert!(chain.iter().all(|t| t.verified()), "{:?}", chain.iter().map(|t| t.summary()).collect::<Vec<_>>());

    // Triaged on B, with A gone: the status goes out in B's file, naming A as the raiser.
    findings::set_status(&b, id_on(&b), Status::Acknowledged, "carol", "mine").unwrap();
    assert_eq!(listed(&b)[key_fp].3.as_deref(), Some(A), "still raised on A, which holds its evidence");
    assert_eq!(share_b.pass(&b, &lake).unwrap().published, 1, "B publishes what it triaged, nothing else");
    let names = lake.list(&format!("{DIR}/{B}"), None).unwrap();
    let file: serde_json::Value =
        serde_json::from_slice(&lake.get(&format!("{DIR}/{B}/{}", names[0])).unwrap()).unwrap();
    assert_eq!(file["findings"][0]["raised_on"], A, "{file}");
    assert_eq!(file["findings"][0]["status"], "acknowledged", "{file}");

    // A, back, takes B's status for its own finding, keeps its own count, and says who and where.
    let taken = share_a.pass(&a, &lake).unwrap();
    assert_eq!(taken.taken_in, 1, "{taken:?}");
    assert_eq!(listed(&a)[key_fp], (on_a[key_fp].0.clone(), "acknowledged".into(), on_a[key_fp].2, None));
    let last = findings::history(&a, id_on(&a)).unwrap().pop().unwrap();
    assert_eq!(
        (last.changed_by.as_str(), last.from.as_deref(), last.to.as_str()),
        ("carol", Some("open"), "acknowledged")
    );
    assert!(last.comment.as_deref().unwrap().contains(&format!("on instance {B}: mine")), "{last:?}");

    // Resolved on A: B follows, and writes the `resolved` alert event the episode's claim holder sends.
    findings::set_status(&a, id_on(&a), Status::Resolved, "alice", "rotating the keys").unwrap();
    assert!(share_a.pass(&a, &lake).unwrap().published >= 1);
    assert_eq!(share_b.pass(&b, &lake).unwrap().taken_in, 1);
    assert_eq!(listed(&b)[key_fp].1, "resolved", "B follows A's status");
    let last = findings::history(&b, id_on(&b)).unwrap().pop().unwrap();
    assert_eq!((last.changed_by.as_str(), last.to.as_str()), ("alice", "resolved"));
    assert!(last.comment.as_deref().unwrap().contains("rotating the keys"), "{last:?}");
    let resolved_events: i64 = value(
        &b,
        &format!("SELECT count(*) FROM alert_events WHERE finding_id = {} AND change = 'resolved'", id_on(&b)),
    );
    assert_eq!(resolved_events, 1);
    let chain = tokentrail::store::append::verify(&a).unwrap();
    assert!(chain.iter().all(|t| t.verified()), "{:?}", chain.iter().map(|t| t.summary()).collect::<Vec<_>>());

    // Nothing new: nothing published, nothing taken in; neither echoes the other's change back.
    for _ in 0..2 {
        assert_eq!(share_a.pass(&a, &lake).unwrap(), Default::default());
        assert_eq!(share_b.pass(&b, &lake).unwrap(), Default::default());
    }
    assert!(listed(&a).values().all(|f| f.3.is_none()), "A's findings stay raised on A");
}

#[test]
fn a_finding_this_instance_raised_itself_keeps_its_count_and_takes_the_latest_status() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir.path().join("lake"));
    let a = raised_on_a(&dir.path().join("a.duckdb"));
    // B: a copy of A's database as another instance that raised the same findings itself.
    a.connection().unwrap().execute_batch("CHECKPOINT").unwrap();
    drop(a);
    std::fs::copy(dir.path().join("a.duckdb"), dir.path().join("b.duckdb")).unwrap();
    let a = Store::open(&dir.path().join("a.duckdb"), &StoreOptions::default()).unwrap();
    let b = Store::open(&dir.path().join("b.duckdb"), &StoreOptions::default()).unwrap();
    let on_b = listed(&b);
    let (key_fp, _) = on_b.iter().find(|(_, f)| f.0 == "key_auth_access").unwrap();
    let id: i64 = value(&a, &format!("SELECT id FROM findings WHERE fingerprint = '{key_fp}'"));
    findings::set_status(&a, id, Status::Resolved, "alice", "done on A").unwrap();
    // Give A's copy another count: B keeps its own, and takes the status alone.
    a.connection().unwrap().execute("UPDATE findings SET count = count + 1000 WHERE id = ?", [id]).unwrap();
    SharedFindings::new(A.into()).pass(&a, &lake).unwrap();
    assert_eq!(SharedFindings::new(B.into()).pass(&b, &lake).unwrap().taken_in, 1);
    let mut expected = on_b.clone();
    expected.get_mut(key_fp.as_str()).unwrap().1 = "resolved".into();
    assert_eq!(listed(&b), expected, "B's own findings keep B's counts and stay raised on B");
}

/// A shared-findings file as `instance` with `findings` (JSON values).
pub(crate) fn file(instance: &str, findings: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "format": "tokentrail-shared-findings", "schema_version": 1, "instance": instance, "findings": findings,
    }))
    .unwrap()
}

pub(crate) fn finding(fingerprint: &str, title: &str) -> serde_json::Value {
    serde_json::json!({
        "fingerprint": fingerprint, "rule_id": "key_auth_access", "title": title, "severity": "medium",
        "principal_id": null, "entity": "account=contoso", "first_seen": 1_741_000_000_000_000i64,
        "last_seen": 1_741_000_100_000_000i64, "count": 3, "summary": "3 requests with an account key",
        "status": "open", "status_by": "tokentrail", "status_at": 1_741_000_200_000_000i64, "status_comment": "raised",
        "created_at": 1_741_000_200_000_000i64, "updated_at": 1_741_000_200_000_000i64,
    })
}

#[test]
fn hostile_files_of_shared_findings_are_rejected_whole_and_the_rest_is_taken_in() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let lake = lake(&root);
    let b = Store::open(&dir.path().join("b.duckdb"), &StoreOptions::default()).unwrap();
    let good = "0123456789abcdef0123456789abcdef";
    let mut bad_status = finding("1123456789abcdef0123456789abcdef", "x");
    bad_status["status"] = "pwned".into();
    let mut bad_severity = finding("2123456789abcdef0123456789abcdef", "x");
    bad_severity["severity"] = "'); DROP TABLE findings; --".into();
    let mut extra_field = finding("3123456789abcdef0123456789abcdef", "x");
    extra_field["evidence"] = serde_json::json!([{"table": "cosmos_requests", "row_id": 1}]);
    let mut bad_rule = finding("4123456789abcdef0123456789abcdef", "x");
    bad_rule["rule_id"] = "../../etc".into();
    let mut bad_raiser = finding("6123456789abcdef0123456789abcdef", "x");
    bad_raiser["raised_on"] = "<script>alert(1)</script>".into();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("00000000000000000001-0000.json", b"{not json".to_vec()),
        ("00000000000000000002-0000.json", file("mallory-00000000", vec![finding(good, "x")])), // another's name
        ("00000000000000000003-0000.json", file("evil-00000000", vec![finding("' OR 1=1 --", "x")])),
        ("00000000000000000004-0000.json", file("evil-00000000", vec![finding(good, "ok"), bad_status])),
        ("00000000000000000005-0000.json", file("evil-00000000", vec![bad_severity])),
        ("00000000000000000006-0000.json", file("evil-00000000", vec![extra_field])),
        ("00000000000000000007-0000.json", file("evil-00000000", vec![bad_rule])),
        ("00000000000000000008-0000.json", file("evil-00000000", vec![finding(good, &"long ".repeat(2000))])),
        ("00000000000000000008-0001.json", file("evil-00000000", vec![bad_raiser])),
        // The one good file: markup in a title is text, shown as such by the UI.
        ("00000000000000000009-0000.json", file("evil-00000000", vec![finding(good, "<img src=x onerror=alert(1)>")])),
        ("not-a-findings-file.json", file("evil-00000000", vec![finding("5123456789abcdef0123456789abcdef", "x")])),
    ];
    let instance_dir = root.join(DIR).join("evil-00000000");
    std::fs::create_dir_all(&instance_dir).unwrap();
    for (name, bytes) in &files {
        std::fs::write(instance_dir.join(name), bytes).unwrap();
    }
    // A directory not named like an instance is not read at all.
    std::fs::create_dir_all(root.join(DIR).join("bad name")).unwrap();
    std::fs::write(
        root.join(DIR).join("bad name").join("00000000000000000001-0000.json"),
        file("bad name", vec![finding(good, "x")]),
    )
    .unwrap();

    let pass = SharedFindings::new(B.into()).pass(&b, &lake).unwrap();
    assert_eq!((pass.taken_in, pass.files_rejected), (1, 9), "{pass:?}");
    let rows: Vec<(String, String, Option<String>)> = {
        let conn = b.connection().unwrap();
        let mut statement = conn.prepare("SELECT fingerprint, title, summary FROM findings").unwrap();
        statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap()
    };
    assert_eq!(
        rows,
        vec![(
            good.to_owned(),
            "<img src=x onerror=alert(1)>".to_owned(),
            Some("3 requests with an account key".into())
        )]
    );
    assert_eq!(value::<i64>(&b, "SELECT count(*) FROM alert_events"), 0, "taking in alerts nothing");
    // Every file was read once: the next pass reads none of them again.
    assert_eq!(SharedFindings::new(B.into()).pass(&b, &lake).unwrap(), Default::default());
}
