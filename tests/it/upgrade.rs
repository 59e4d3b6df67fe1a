//! A database and an evidence pack made by an older TokenTrail still open, migrate and
//! verify. The fixtures in tests/fixtures/upgrade were made by the binary of commit
//! 099f9be (2026-12-04): `generate --days 1 --seed 7 --scale 0.05 --scenarios all`
//! ingested with one unreadable line and one record of an unknown category, and an
//! evidence pack of all criteria for 2026-12-03..2026-12-06 with its public key.

use crate::common::TestDb;
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePublicKey;
use std::path::{Path, PathBuf};
use tokentrail::evidence::{append, chain, pack};
use tokentrail::rules::{DetectionConfig, Detector};
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
