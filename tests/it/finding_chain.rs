//! Finding history is append-only and chained like the access log (issue 29,
//! src/evidence/append.rs): detection raising, reopening and withdrawing findings and
//! people changing them (the library and the HTTP API) keep `tokentrail verify` green; a
//! row edited, deleted or inserted behind TokenTrail's back, or links cut from the end of
//! append_chain, make it fail naming finding_history; appenders at once (detection's
//! transaction linking inside, people's `append`, rolled-back attempts) never break it.

use crate::common;

use chrono::{DateTime, Duration, Utc};
use common::jwks::TestIssuer;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use tokentrail::auth::Role;
use tokentrail::ingest::PipelineOptions;
use tokentrail::ingest::files::ingest_files;
use tokentrail::rules::findings::{self, Status};
use tokentrail::rules::{DetectionConfig, Detector, ParamValue};
use tokentrail::store::append::{self, AppendReport};
use tokentrail::store::{Store, StoreOptions};
use tokentrail::synth::{Event, Generator, Scenario, Tenant};

const MONDAY: &str = "2025-03-03T00:00:00Z";

fn monday() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(MONDAY).unwrap().with_timezone(&Utc)
}

fn ingest(store: &Store, dir: &Path, name: &str, events: &[&Event]) {
    let path = dir.join(name);
    common::write_ndjson(&path, events.iter().copied());
    let mut writer = store.writer().unwrap();
    let options = PipelineOptions { workers: 2, ..PipelineOptions::default() };
    let report = ingest_files(store, &mut writer, &[path], options, indicatif::ProgressBar::hidden()).unwrap();
    assert!(report.failed.is_empty());
}

fn value<T: duckdb::types::FromSql>(store: &Store, sql: &str) -> T {
    store.connection().unwrap().query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// What `verify` says of finding_history.
fn history_chain(store: &Store) -> AppendReport {
    append::verify(store)
        .unwrap()
        .into_iter()
        .find(|t| t.table == "finding_history")
        .expect("finding_history is chained")
}

fn assert_chained(store: &Store) -> AppendReport {
    let report = history_chain(store);
    assert!(report.verified(), "{}: {:?}", report.summary(), report.failures);
    assert_eq!(report.rows as i64, value::<i64>(store, "SELECT count(*) FROM finding_history"), "every row is chained");
    report
}

fn detector(store: &Store) -> Detector {
    // Learning shortened to one day, so a three-day history raises key_auth_access.
    let mut config = DetectionConfig::default();
    config.params.insert("key_auth_access".into(), BTreeMap::from([("learning_days".into(), ParamValue::Int(1))]));
    let (detector, problems) = Detector::open(store, &config).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    detector
}

/// A closed database with a key client's findings raised by detection and changed by people.
struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    events: Vec<Event>,
    ip: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("chain.duckdb");
        let store = Store::open(&db, &StoreOptions::default()).unwrap();
        let generator = Generator::new(Tenant::new(11), 11);
        let (events, truths) = generator.history(monday(), monday() + Duration::days(3), &[Scenario::KeyBasedAccess]);
        let ip = truths[0].source_ip.clone().unwrap();
        ingest(&store, dir.path(), "three-days.ndjson", &events.iter().collect::<Vec<_>>());
        detector(&store).evaluate_after_commit(&store).unwrap();
        let id: i64 = value(&store, "SELECT min(id) FROM findings WHERE rule_id = 'key_auth_access'");
        findings::set_status(&store, id, Status::Acknowledged, "alice", "looking at it").unwrap();
        findings::set_status(&store, id, Status::Resolved, "bob", "keys rotated").unwrap();
        let report = assert_chained(&store);
        assert!(report.rows >= 3 && report.links >= 3, "raised, acknowledged, resolved: {}", report.summary());
        store.connection().unwrap().execute_batch("CHECKPOINT").unwrap();
        drop(store);
        Fixture { _dir: dir, db, events, ip }
    })
}

fn tokentrail(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tokentrail")).args(args).env("TOKENTRAIL_LOG", "warn").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Detection raising and reopening, a person through the API and through the library:
/// every row chained, in the transaction that wrote it.
#[test]
fn detection_and_people_through_the_api_keep_finding_history_verified() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("copy.duckdb");
    std::fs::copy(&f.db, &db).unwrap();
    let store = Arc::new(Store::open(&db, &StoreOptions::default()).unwrap());
    let detector = detector(&store);
    let before = assert_chained(&store);

    // The same client comes back half an hour later: new evidence reopens the resolved finding.
    let mut again: Vec<Event> = f
        .events
        .iter()
        .filter(|e| e.record["properties"]["clientIpAddress"] == f.ip.as_str())
        .take(5)
        .cloned()
        .collect();
    for (i, event) in again.iter_mut().enumerate() {
        event.time += Duration::minutes(30);
        event.record["time"] = json!(event.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        event.record["properties"]["activityId"] = json!(format!("00000000-0000-4000-8000-00000000000{i}"));
    }
    ingest(&store, dir.path(), "again.ndjson", &again.iter().collect::<Vec<_>>());
    detector.evaluate_after_commit(&store).unwrap();
    let reopened: i64 = value(
        &store,
        "SELECT count(*) FROM finding_history WHERE comment LIKE 'reopened%' AND changed_by = 'tokentrail'",
    );
    assert_eq!(reopened, 1);
    let after_detection = assert_chained(&store);
    assert!(after_detection.links > before.links, "{}", after_detection.summary());

    // An acknowledgement through the API.
    let id: i64 = value(&store, "SELECT min(id) FROM findings WHERE status = 'open'");
    let issuer = TestIssuer::start();
    let (_state, base) = common::app::serve(store.clone(), &issuer, detector.rules().to_vec());
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    // Detection reopened it, setting its status and author anew: who acknowledged it, and
    // why, is still in its detail (read from its history).
    let reopened: i64 = value(
        &store,
        "SELECT finding_id FROM finding_history WHERE comment LIKE 'reopened%' AND changed_by = 'tokentrail'",
    );
    let detail: serde_json::Value = agent
        .get(&format!("{base}/api/findings/{reopened}"))
        .header("Authorization", &format!("Bearer {}", issuer.token(&[Role::Responder])))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(detail["finding"]["status"], "open");
    assert_eq!(detail["finding"]["status_by"], "tokentrail");
    assert_eq!(detail["acknowledged"]["acknowledged_by"], "alice", "{detail}");
    assert_eq!(detail["acknowledged"]["comment"], "looking at it", "{detail}");
    let reply = agent
        .post(&format!("{base}/api/findings/{id}/acknowledge"))
        .header("Authorization", &format!("Bearer {}", issuer.token(&[Role::Responder])))
        .send_json(json!({"comment": "on it"}))
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    let by_api: i64 =
        value(&store, &format!("SELECT count(*) FROM finding_history WHERE finding_id = {id} AND comment = 'on it'"));
    assert_eq!(by_api, 1);
    let end = assert_chained(&store);
    assert_eq!(end.links, after_detection.links + 1, "one link for the acknowledgement: {}", end.summary());
    // Ids follow the order the changes were written in.
    let ids: Vec<i64> = store
        .connection()
        .unwrap()
        .prepare("SELECT id FROM finding_history ORDER BY changed_at, id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

/// Sign-ins that arrive late explain a finding: detection withdraws it, and the
/// withdrawal is chained.
#[test]
fn a_withdrawal_by_detection_is_chained() {
    let db = common::TestDb::new();
    let generator = Generator::new(Tenant::new(13), 13);
    let events = generator.baseline(monday(), monday() + Duration::days(3));
    let sp = generator.tenant().service_principals.iter().find(|p| p.has_data() && !p.dormant).unwrap();
    let hidden = (monday() + Duration::hours(30), monday() + Duration::hours(66));
    let is_hidden = |e: &Event| {
        e.category == "ServicePrincipalSignInLogs"
            && e.record["properties"]["servicePrincipalId"] == sp.object_id.as_str()
            && e.time >= hidden.0
            && e.time < hidden.1
    };
    let (late, on_time): (Vec<&Event>, Vec<&Event>) = events.iter().partition(|e| is_hidden(e));
    let (detector, _) = Detector::open(&db.store, &DetectionConfig::default()).unwrap();
    ingest(&db.store, db.dir.path(), "on-time.ndjson", &on_time);
    detector.evaluate_after_commit(&db.store).unwrap();
    assert_chained(&db.store);
    ingest(&db.store, db.dir.path(), "late.ndjson", &late);
    detector.evaluate_after_commit(&db.store).unwrap();
    let withdrawn: i64 = db.value("SELECT count(*) FROM finding_history WHERE to_status = 'withdrawn'");
    assert!(withdrawn >= 1, "the late sign-ins withdrew a finding");
    assert_chained(&db.store);
}

/// Edits behind TokenTrail's back: `tokentrail verify` fails and names finding_history.
#[test]
fn verify_names_finding_history_when_a_row_is_edited_deleted_or_inserted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("copy.duckdb");
    std::fs::copy(&fixture().db, &db).unwrap();
    let (ok, text) = tokentrail(&["verify", "--db", db.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("finding_history chain verified"), "{text}");
    let edits = [
        (
            "UPDATE finding_history SET comment = 'nothing to see' WHERE id = (SELECT max(id) FROM finding_history)",
            "rows differ",
        ),
        (
            "UPDATE finding_history SET changed_by = 'mallory' WHERE id = (SELECT min(id) FROM finding_history)",
            "rows differ",
        ),
        (
            "DELETE FROM finding_history WHERE id = (SELECT min(id) + 1 FROM finding_history)",
            "rows deleted or inserted",
        ),
        (
            "INSERT INTO finding_history (finding_id, changed_at, changed_by, from_status, to_status, comment)
             VALUES (1, now(), 'mallory', 'open', 'resolved', 'fine')",
            "outside every link",
        ),
        (
            "DELETE FROM finding_history WHERE id = (SELECT max(id) FROM finding_history);
             DELETE FROM append_chain WHERE table_name = 'finding_history'
                 AND link = (SELECT max(link) FROM append_chain WHERE table_name = 'finding_history')",
            "links deleted",
        ),
        ("DELETE FROM append_chain WHERE table_name = 'finding_history'", "append_chain was emptied"),
    ];
    crate::evidence::each_edit_breaks_the_chain(&db, dir.path(), "finding_history", &edits);
}

/// Detection's transactions (linking inside, `link_in`), people's (`append`) and
/// attempts rolled back, all at once: each row chained once, ids skipped by rollbacks
/// inside links, and the chain verifies.
#[test]
fn appenders_at_once_and_rolled_back_attempts_keep_the_chain_whole() {
    let db = common::TestDb::new();
    let store = &db.store;
    const INSERT: &str =
        "INSERT INTO finding_history (finding_id, changed_at, changed_by, from_status, to_status, comment)
                          VALUES (?, get_current_timestamp(), ?, 'open', 'acknowledged', ?)";
    const ROUNDS: i64 = 40;
    std::thread::scope(|scope| {
        // As detection does: a transaction that reads first (its snapshot), appends, then
        // links inside and holds the lock until it has committed; every fifth attempt fails
        // after appending and rolls back.
        let engine = scope.spawn(|| {
            let conn = store.connection().unwrap();
            for round in 0..ROUNDS {
                let outcome = tokentrail::store::retrying_conflicts(|| {
                    tokentrail::store::in_transaction(&conn, |c| {
                        let _: i64 = c.query_row("SELECT count(*) FROM finding_history", [], |r| r.get(0))?;
                        std::thread::sleep(std::time::Duration::from_micros(300));
                        for i in 0..3 {
                            c.execute(INSERT, duckdb::params![round, "tokentrail", format!("engine {round}.{i}")])?;
                        }
                        if round % 5 == 4 {
                            c.execute(INSERT, duckdb::params![round, "tokentrail", "rolled back"])?;
                            anyhow::bail!("an attempt that fails after appending");
                        }
                        append::link_in(c, "finding_history")
                    })
                });
                match outcome {
                    Ok(linked) => drop(linked), // committed: the lock goes now
                    Err(e) if round % 5 == 4 && format!("{e:#}").contains("fails after appending") => {}
                    Err(e) => panic!("{e:#}"),
                }
            }
        });
        let people = scope.spawn(|| {
            for round in 0..ROUNDS {
                append::append(store, "finding_history", |c| {
                    c.execute(INSERT, duckdb::params![round, "alice", format!("person {round}")])?;
                    Ok(())
                })
                .unwrap();
                // People are slower than detection: a change now and then.
                std::thread::sleep(std::time::Duration::from_millis(4));
            }
        });
        let audit = scope.spawn(|| {
            for _ in 0..ROUNDS {
                append::append(store, "access_log", |c| {
                    c.execute_batch(
                        "INSERT INTO access_log (time, method, endpoint, path, status, duration_ms) VALUES (now(), 'GET', '/x', '/x', 200, 1)",
                    )?;
                    Ok(())
                })
                .unwrap();
            }
        });
        engine.join().unwrap();
        people.join().unwrap();
        audit.join().unwrap();
    });
    let report = assert_chained(store);
    let committed_rounds = ROUNDS - ROUNDS / 5;
    assert_eq!(report.rows as i64, committed_rounds * 3 + ROUNDS);
    assert_eq!(db.value::<i64>("SELECT count(*) FROM finding_history WHERE comment = 'rolled back'"), 0);
    let gaps: i64 = db.value("SELECT max(id) - count(*) FROM finding_history");
    assert!(gaps > 0, "rolled-back attempts left ids unused, inside links");
    for table in append::verify(store).unwrap() {
        assert!(table.verified(), "{}", table.summary());
    }
}

/// Linking reads only what was appended since the last link: with many rows already
/// chained, a detection refresh's few new rows (or none) link in about the same time as
/// on an empty table.
#[test]
fn linking_costs_what_was_appended_not_the_table() {
    let db = common::TestDb::new();
    let store = &db.store;
    let conn = store.connection().unwrap();
    // The time link_in takes in a transaction that appended `rows` rows (as detection's).
    let link = |round: i64, rows: i64| {
        let (elapsed, _linked) = tokentrail::store::in_transaction(&conn, |c| {
            c.execute_batch(&format!(
                "INSERT INTO finding_history (finding_id, changed_at, changed_by, to_status)
                 SELECT {round}, now(), 'tokentrail', 'open' FROM range({rows})"
            ))?;
            let started = std::time::Instant::now();
            let linked = append::link_in(c, "finding_history")?;
            Ok((started.elapsed(), linked))
        })
        .unwrap();
        elapsed
    };
    let link_three = |round: i64| link(round, 3);
    let nothing = || link(0, 0);
    let median = |mut times: Vec<std::time::Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let small = median((0..20).map(link_three).collect());
    let small_nothing = median((0..20).map(|_| nothing()).collect());
    append::append(store, "finding_history", |c| {
        c.execute_batch(
            "INSERT INTO finding_history (finding_id, changed_at, changed_by, to_status, comment)
             SELECT i % 5000, now(), 'tokentrail', 'open', 'raised again: the rule matches again' FROM range(1000000) t(i)",
        )?;
        Ok(())
    })
    .unwrap();
    store.connection().unwrap().execute_batch("CHECKPOINT").unwrap();
    let large = median((100..120).map(link_three).collect());
    let large_nothing = median((0..20).map(|_| nothing()).collect());
    println!(
        "link_in of 3 new rows: {small:?} over 60 rows, {large:?} over a million; of none: {small_nothing:?}, \
         {large_nothing:?}"
    );
    assert!(large < small * 10 + std::time::Duration::from_millis(20), "{small:?} then {large:?}");
    assert!(append::verify(store).unwrap().iter().all(|t| t.verified()));
}
