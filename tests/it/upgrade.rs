//! A database and an evidence pack made by an older TokenTrail still open, migrate and
//! verify. The fixtures in tests/fixtures/upgrade were made by the binary of commit
//! 099f9be (2026-12-04): `generate --days 1 --seed 7 --scale 0.05 --scenarios all`
//! ingested with one unreadable line and one record of an unknown category, and an
//! evidence pack of all criteria for 2026-12-03..2026-12-06 with its public key.

use crate::common::TestDb;
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePublicKey;
use std::path::{Path, PathBuf};
use tokentrail::evidence::{chain, pack};
use tokentrail::rules::{DetectionConfig, Detector};
use tokentrail::store::append;
use tokentrail::synth::{Generator, Scenario, Tenant};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade")
}

/// The fixture database, unpacked into a temp dir and opened (which migrates it).
fn old_database() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let packed = std::fs::File::open(fixtures().join("fixture.duckdb.gz")).unwrap();
    let mut out = std::fs::File::create(dir.path().join("old.duckdb")).unwrap();
    std::io::copy(&mut flate2::read::GzDecoder::new(packed), &mut out).unwrap();
    out.sync_all().unwrap();
    TestDb::open_in(dir, "old.duckdb")
}

fn assert_chains_verify(db: &TestDb, batches: u64) {
    let report = chain::verify(&db.store, &|_, _| {}).unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.batches, batches);
    assert_eq!(report.checked, batches, "every batch is chained: {:?}", report.unchained);
    for table in append::verify(&db.store).unwrap() {
        assert!(table.verified(), "{}: {:?}", table.table, table.failures);
    }
}

#[test]
fn an_old_database_opens_migrates_verifies_and_takes_more() {
    let db = old_database();
    // Its rows, as the old binary stored them.
    assert_eq!(db.count("cosmos_requests"), 1568);
    assert_eq!(db.count("signins"), 991);
    assert_eq!(db.count("raw_events"), 1);
    assert_eq!(db.count("quarantine"), 1);
    let newest: i64 = db.value("SELECT max(version) FROM schema_migrations");
    let known = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")).unwrap().count() as i64;
    assert_eq!(newest, known, "every migration applied");
    assert_chains_verify(&db, 3);

    // More data goes in after the old, and the chain goes on from the old head.
    let start = chrono::DateTime::parse_from_rfc3339("2026-12-06T00:00:00Z").unwrap().to_utc();
    let (events, _) = Generator::new(Tenant::new(7), 7).with_scale(0.05).history(
        start,
        start + chrono::Duration::hours(6),
        &[Scenario::all()[0]],
    );
    let path = db.dir.path().join("more.ndjson");
    crate::common::write_ndjson(&path, &events);
    let report = db.ingest(&[path]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    // the old database held one raw record; the new history's change records join it
    let stored = db.count("cosmos_requests") + db.count("signins") + db.count("raw_events") - 1;
    assert_eq!(stored, 1568 + 991 + events.len() as i64);
    assert_eq!(db.count("quarantine"), 1);
    assert_chains_verify(&db, 4);
    // Old rows have no position (migration 17 added it), new rows all have one; the chain
    // above verified both.
    for (table, old) in [("cosmos_requests", 1568), ("signins", 991)] {
        let without: i64 = db.value(&format!(
            "SELECT count(*) FROM {table} WHERE source IS NULL AND line IS NULL AND record_sha256 IS NULL"
        ));
        let with: i64 = db.value(&format!(
            "SELECT count(*) FROM {table} WHERE octet_length(record_sha256) = 32 AND line > 0 AND source IS NOT NULL"
        ));
        assert_eq!((without, without + with), (old, db.count(table)), "{table}");
    }

    // Detection runs over old and new rows alike.
    let (detector, problems) = Detector::open(&db.store, &DetectionConfig::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    // The rules in force are recorded whole, those carried over from before migration 18 too.
    let in_force: i64 = db.value("SELECT count(*) FROM rule_versions WHERE in_force_to IS NULL AND sql <> ''");
    assert_eq!(in_force, detector.rules().len() as i64);
    assert_eq!(db.value::<i64>("SELECT count(*) FROM rule_versions WHERE sql = ''"), 0);
    let evaluation = detector.evaluate_after_commit(&db.store).unwrap();
    assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
    assert!(db.count("findings") > 0, "the scenarios of the old data raise findings");
}

#[test]
fn an_old_evidence_pack_verifies_with_its_key_and_not_with_another() {
    let pem = std::fs::read_to_string(fixtures().join("pack-public-key.pem")).unwrap();
    let key = VerifyingKey::from_public_key_pem(&pem).unwrap();
    let verification = pack::verify(&fixtures().join("pack.zip"), Some(&key)).unwrap();
    assert!(verification.ok(), "{:?}", verification.problems);
    let manifest = verification.manifest.expect("the manifest is read");
    assert_eq!(manifest.files.len(), 25, "the files the manifest lists");

    let other = VerifyingKey::from_bytes(&[
        215, 90, 152, 1, 130, 177, 10, 183, 213, 75, 254, 211, 201, 100, 7, 58, 14, 225, 114, 243, 218, 166, 35, 37,
        175, 2, 26, 104, 247, 7, 8, 26,
    ])
    .unwrap();
    assert!(!pack::verify(&fixtures().join("pack.zip"), Some(&other)).unwrap().ok());
}

/// A database from before finding history was chained (migration 16): its rows get ids
/// in the order they were written, `id` first as in access_log; verify says they are not
/// chained yet until detection starts, which chains them; new rows go on after them.
#[test]
fn finding_history_from_before_its_chain_gets_ids_in_order_and_is_chained_when_detection_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.duckdb");
    {
        let options = tokentrail::store::StoreOptions { migrate_up_to: Some(15), ..Default::default() };
        let old = tokentrail::store::Store::open(&path, &options).unwrap();
        // Written in this order; the second and third at the same time, so rowid decides.
        old.connection()
            .unwrap()
            .execute_batch(
                "INSERT INTO finding_history VALUES (7, '2026-12-01 10:00:00+00', 'tokentrail', NULL, 'open', 'raised');
                 INSERT INTO finding_history VALUES (7, '2026-12-01 11:00:00+00', 'alice', 'open', 'acknowledged', 'a');
                 INSERT INTO finding_history VALUES (7, '2026-12-01 11:00:00+00', 'bob', 'acknowledged', 'resolved', 'b');
                 INSERT INTO finding_history VALUES (3, '2026-11-30 09:00:00+00', 'tokentrail', NULL, 'open', 'raised');",
            )
            .unwrap();
    }
    let db = crate::common::TestDb::open_in(dir, "old.duckdb");
    let columns: Vec<Vec<String>> = db.rows("SELECT name FROM pragma_table_info('finding_history') ORDER BY cid");
    let columns: Vec<&str> = columns.iter().map(|c| c[0].as_str()).collect();
    assert_eq!(columns, ["id", "finding_id", "changed_at", "changed_by", "from_status", "to_status", "comment"]);
    let rows = db.rows("SELECT id::VARCHAR, finding_id::VARCHAR, changed_by FROM finding_history ORDER BY id");
    assert_eq!(rows, [["1", "3", "tokentrail"], ["2", "7", "tokentrail"], ["3", "7", "alice"], ["4", "7", "bob"]]);
    let history = |db: &crate::common::TestDb| {
        append::verify(&db.store).unwrap().into_iter().find(|t| t.table == "finding_history").unwrap()
    };
    let before = history(&db);
    assert!(!before.verified() && before.summary().contains("upgraded and not served since"), "{}", before.summary());

    let (_detector, problems) = Detector::open(&db.store, &DetectionConfig::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let chained = history(&db);
    assert!(chained.verified(), "{}", chained.summary());
    assert_eq!((chained.links, chained.rows), (1, 4));
    append::append(&db.store, "finding_history", |conn| {
        conn.execute_batch(
            "INSERT INTO finding_history (finding_id, changed_at, changed_by, to_status) VALUES (3, now(), 'carol', 'resolved')",
        )?;
        Ok(())
    })
    .unwrap();
    assert_eq!(db.value::<i64>("SELECT id FROM finding_history WHERE changed_by = 'carol'"), 5, "after the old ids");
    let after = history(&db);
    assert!(after.verified() && after.links == 2 && after.rows == 5, "{}", after.summary());
}

#[test]
fn findings_taken_in_before_status_was_shared_keep_their_raiser_and_one_triaged_here_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.duckdb");
    {
        let options = tokentrail::store::StoreOptions { migrate_up_to: Some(30), ..Default::default() };
        let old = tokentrail::store::Store::open(&path, &options).unwrap();
        // Both taken in from instance b; the second acknowledged here since (its last change
        // is later than the one taken in). The first was acknowledged on b before it came.
        old.connection()
            .unwrap()
            .execute_batch(
                "INSERT INTO findings (id, fingerprint, rule_id, title, severity, principal_id, entity, first_seen,
                    last_seen, count, evidence, summary, status, status_by, status_at, status_comment, created_at, updated_at)
                 VALUES
                 (1, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'key_auth_access', 't', 'medium', NULL, 'e',
                  '2026-12-01 10:00:00+00', '2026-12-01 11:00:00+00', 3, [], NULL, 'acknowledged', 'bob',
                  '2026-12-01 12:30:00+00', 'b', '2026-12-01 12:00:00+00', '2026-12-01 12:00:00+00'),
                 (2, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'key_auth_access', 't', 'medium', NULL, 'e',
                  '2026-12-01 10:00:00+00', '2026-12-01 11:00:00+00', 3, [], NULL, 'acknowledged', 'alice',
                  '2026-12-01 13:00:00+00', 'here', '2026-12-01 12:00:00+00', '2026-12-01 12:00:00+00');
                 INSERT INTO shared_findings_in VALUES
                 ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'b-0b0b0b0b', '2026-12-01 12:30:00+00', '2026-12-01 12:31:00+00'),
                 ('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'b-0b0b0b0b', '2026-12-01 12:00:00+00', '2026-12-01 12:01:00+00');",
            )
            .unwrap();
    }
    let db = crate::common::TestDb::open_in(dir, "old.duckdb");
    let rows = db.rows(
        "SELECT id::VARCHAR, coalesce(taken_in_from(fingerprint, updated_at), '-'),
            as_taken_in(fingerprint, updated_at, status_at)::VARCHAR FROM findings ORDER BY id",
    );
    // The first: still b's, and not published here. The second: raised on b, triaged here,
    // so published.
    assert_eq!(rows, [["1", "b-0b0b0b0b", "true"], ["2", "b-0b0b0b0b", "false"]]);
}
