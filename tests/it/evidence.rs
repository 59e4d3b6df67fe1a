//! Evidence packs and the integrity chain, end to end: generated traffic with attack
//! scenarios ingested through the real pipeline in many batches, detection run, findings
//! acknowledged and resolved; packs built by the library, the real binary and the HTTP API,
//! then checked by `tokentrail evidence verify`; DuckDB edited behind TokenTrail's back and
//! `tokentrail verify` asked to find it.

use crate::common;

use chrono::{DateTime, Duration, Utc};
use common::jwks::TestIssuer;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use tokentrail::auth::Role;
use tokentrail::evidence::pack::{self, PackRequest, Verification};
use tokentrail::evidence::sign::{self, PackKey};
use tokentrail::evidence::{Criterion, GeneratedBy, Period, chain};
use tokentrail::ingest::PipelineOptions;
use tokentrail::ingest::files::ingest_files;
use tokentrail::rules::findings::{Status, set_status};
use tokentrail::rules::{DetectionConfig, Detector};
use tokentrail::store::{Store, StoreOptions};
use tokentrail::synth::{Generator, Scenario, Tenant};

const START: &str = "2025-03-03T00:00:00Z";
const DAYS: i64 = 2;
/// Names in access_log that a spreadsheet would run as formulas.
const FORMULAS: [&str; 6] = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"];

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(START).unwrap().with_timezone(&Utc)
}

fn period() -> Period {
    Period::new(start(), start() + Duration::days(DAYS)).unwrap()
}

/// A closed database file with the history (copy it before changing it).
struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    batches: i64,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("evidence.duckdb");
        let store = Store::open(&db, &StoreOptions::default()).unwrap();
        let generator = Generator::new(Tenant::new(7), 7);
        let (events, _) = generator.history(start(), start() + Duration::days(DAYS), Scenario::all());
        // Twelve files, ingested one by one: many batches to chain.
        common::ingest_in_files(&store, dir.path(), "history", &events, 12);
        let (detector, problems) = Detector::open(&store, &DetectionConfig::default()).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        detector.evaluate_after_commit(&store).unwrap();
        let conn = store.connection().unwrap();
        let ids: Vec<i64> =
            conn.prepare("SELECT id FROM findings ORDER BY id LIMIT 2").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(ids.len(), 2, "the scenarios raise findings");
        set_status(&store, ids[0], Status::Acknowledged, "Ann Responder (oid a tid t)", "looking").unwrap();
        set_status(&store, ids[0], Status::Resolved, "Ann Responder (oid a tid t)", "key rotated").unwrap();
        set_status(&store, ids[1], Status::Acknowledged, "Bob Responder (oid b tid t)", "").unwrap();
        // Through the access log's own writer path, which chains what it appends.
        tokentrail::store::append::append(&store, "access_log", |conn| {
            for (i, name) in FORMULAS.iter().enumerate() {
                conn.execute(
                    "INSERT INTO access_log (time, oid, tid, name, role, method, endpoint, path, parameters, status, duration_ms, auth)
                     VALUES (make_timestamp(?)::TIMESTAMPTZ, 'oid-1', 'tid-1', ?, 'TokenTrail.Auditor', 'GET', '/api/findings', '/api/findings', '{}', 200, 1.5, 'bearer')",
                    duckdb::params![start().timestamp_micros() + 3_600_000_000 * (i as i64 + 1), name],
                )?;
            }
            Ok(())
        })
        .unwrap();
        let batches: i64 = conn.query_row("SELECT count(*) FROM ingest_batches", [], |r| r.get(0)).unwrap();
        assert!(batches >= 10, "many batches to chain: {batches}");
        conn.execute_batch("CHECKPOINT").unwrap();
        drop(conn);
        drop(store);
        Fixture { _dir: dir, db, batches }
    })
}

/// A private copy of the fixture's database.
fn copy_db(dir: &Path) -> PathBuf {
    let db = dir.join("copy.duckdb");
    std::fs::copy(&fixture().db, &db).unwrap();
    db
}

fn tokentrail(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tokentrail")).args(args).env("TOKENTRAIL_LOG", "warn").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Builds a pack of every criterion with the library; returns the zip's path and the key.
fn build_pack(dir: &Path, db: &Path) -> (PathBuf, PackKey) {
    let store = Store::open(db, &StoreOptions::default()).unwrap();
    let key = PackKey::load_or_create(&sign::key_path(db, None), true).unwrap();
    let rules = tokentrail::rules::rule::load(None).0;
    let request = PackRequest {
        criteria: Criterion::ALL.to_vec(),
        period: period(),
        generated_by: GeneratedBy {
            oid: Some("oid-test".into()),
            tid: Some("tid-test".into()),
            name: "Test Auditor".into(),
        },
        rules: &rules,
        budget: tokentrail::evidence::Budget::unlimited(),
        expected: vec!["cosmos:never-sent".into()],
        development_signer: false,
        removal_hours: 24,
        lake: None,
    };
    let out = dir.join("pack.zip");
    pack::build_file(&store, &key, &request, &out, &|_, _, _| {}).unwrap();
    (out, key)
}

fn entries(zip_path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip_path).unwrap()).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (entry.name().to_string(), bytes)
        })
        .collect()
}

fn zip_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in files {
        zip.start_file(name.as_str(), zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn csv_of(files: &[(String, Vec<u8>)], population: &str) -> Vec<csv::StringRecord> {
    let (_, bytes) = files
        .iter()
        .find(|(n, _)| n.ends_with(".csv") && n.rsplit('/').next().unwrap().starts_with(&format!("{population}_")))
        .unwrap_or_else(|| panic!("no {population} CSV"));
    csv::Reader::from_reader(bytes.as_slice()).records().map(Result::unwrap).collect()
}

fn header_index(files: &[(String, Vec<u8>)], population: &str, column: &str) -> usize {
    let (_, bytes) = files.iter().find(|(n, _)| n.contains(&format!("/{population}_")) && n.ends_with(".csv")).unwrap();
    csv::Reader::from_reader(bytes.as_slice()).headers().unwrap().iter().position(|h| h == column).unwrap()
}

fn value(db: &Path, sql: &str) -> i64 {
    let store = Store::open(db, &StoreOptions { read_only: true, ..StoreOptions::default() }).unwrap();
    let conn = store.connection().unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let bound: Vec<duckdb::types::Value> = (1..=stmt.parameter_count())
        .map(|i| match stmt.parameter_name(i).unwrap().as_str() {
            "from" => duckdb::types::Value::Timestamp(duckdb::types::TimeUnit::Microsecond, period().from),
            "to" => duckdb::types::Value::Timestamp(duckdb::types::TimeUnit::Microsecond, period().to),
            other => panic!("${other}"),
        })
        .collect();
    stmt.query_row(duckdb::params_from_iter(bound), |r| r.get(0)).unwrap()
}

#[test]
fn a_pack_holds_the_populations_of_the_database_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let db = copy_db(dir.path());
    let (zip_path, key) = build_pack(dir.path(), &db);
    let files = entries(&zip_path);
    let manifest: tokentrail::evidence::manifest::Manifest =
        serde_json::from_slice(&files.iter().find(|(n, _)| n == "manifest.json").unwrap().1).unwrap();

    // Every CSV and Parquet file has the rows the manifest says, and each is a population
    // counted here independently of the pack's SQL.
    let in_period = "time >= $from AND time < $to";
    let requests = value(&db, &format!("SELECT count(*) FROM cosmos_requests WHERE {in_period}"));
    let auth = csv_of(&files, "auth_methods");
    let i = header_index(&files, "auth_methods", "requests");
    assert_eq!(auth.iter().map(|r| r[i].parse::<i64>().unwrap()).sum::<i64>(), requests);
    let keyed = value(&db, &format!("SELECT count(*) FROM cosmos_requests WHERE principal_id IS NULL AND {in_period}"));
    let i = header_index(&files, "key_access", "requests");
    assert_eq!(csv_of(&files, "key_access").iter().map(|r| r[i].parse::<i64>().unwrap()).sum::<i64>(), keyed);
    let principals = value(
        &db,
        "SELECT count(DISTINCT principal_id) FROM (SELECT principal_id FROM signins WHERE time < $to
         UNION ALL SELECT principal_id FROM cosmos_requests WHERE time < $to) WHERE principal_id IS NOT NULL",
    );
    assert_eq!(csv_of(&files, "principals").len() as i64, principals);
    let streams = value(
        &db,
        &format!(
            "SELECT (SELECT count(DISTINCT account) FROM cosmos_requests WHERE {in_period})
                  + (SELECT count(DISTINCT category) FROM signins WHERE {in_period})
                  + (SELECT count(DISTINCT category) FROM raw_events WHERE {in_period})"
        ),
    );
    assert_eq!(csv_of(&files, "completeness").len() as i64, streams * 24 * DAYS);
    let logged = value(&db, &format!("SELECT count(*) FROM access_log WHERE {in_period}"));
    assert_eq!(csv_of(&files, "access_log").len() as i64, logged);
    // The history was ingested after the period, so its findings were raised (and answered)
    // after the period's end: they are in the pack (raised at), with no status at the end and
    // no response or history before it (a_closed_period_says_the_same_whenever_its_pack_is_made).
    let findings = csv_of(&files, "findings");
    let status = header_index(&files, "findings", "status_at_end");
    assert!(!findings.is_empty() && findings.iter().all(|r| r[status].is_empty()), "raised after the period's end");
    let response = csv_of(&files, "response");
    let by = header_index(&files, "response", "acknowledged_by");
    assert!(response.len() == findings.len() && response.iter().all(|r| r[by].is_empty()), "no answer by the end");
    assert!(csv_of(&files, "history").is_empty(), "no change before the period's end");
    // Coverage: the expected stream that never came, and every stream of the period.
    let coverage = csv_of(&files, "coverage");
    let (stream, status) = (header_index(&files, "coverage", "stream"), header_index(&files, "coverage", "status"));
    assert!(coverage.iter().any(|r| &r[stream] == "cosmos:never-sent" && &r[status] == "not ingested"), "{coverage:?}");
    assert_eq!(coverage.iter().filter(|r| &r[status] == "ingested").count() as i64, streams);
    // Sources: what each batch committed is what is stored under it.
    let reconciled = header_index(&files, "sources", "reconciled");
    assert!(csv_of(&files, "sources").iter().all(|r| &r[reconciled] == "true"));
    for file in &manifest.files {
        let bytes = &files.iter().find(|(n, _)| *n == file.path).unwrap().1;
        // Populations; controls.csv maps them to criteria and has no SQL of its own.
        if file.format == "csv" && file.population.is_some() {
            assert_eq!(
                csv::Reader::from_reader(bytes.as_slice()).records().count() as u64,
                file.rows.unwrap(),
                "{}",
                file.path
            );
            let sql = file.sql.as_deref().unwrap();
            let parameters = file.parameters.as_ref().unwrap();
            assert!(sql.contains("SELECT"), "{}: the SQL is stated", file.path);
            for name in ["from", "to", "as_of", "made_at", "expected"] {
                assert_eq!(
                    sql.contains(&format!("${name}")),
                    parameters.contains_key(name),
                    "{}: ${name} bound and stated",
                    file.path
                );
            }
        }
    }
    assert_eq!(manifest.period.from, "2025-03-03T00:00:00Z");
    assert_eq!(manifest.generated_by.oid.as_deref(), Some("oid-test"));
    assert!(manifest.integrity_chain.verified, "{}", manifest.integrity_chain.result);
    assert_eq!(manifest.integrity_chain.batches_checked, fixture().batches as u64);
    assert_eq!(manifest.as_of.batch_id, Some(value(&db, "SELECT max(batch_id) FROM ingest_batches")));
    assert!(!manifest.engine.duckdb_version.is_empty() && manifest.engine.timezone.starts_with("UTC"));
    let macros: Vec<&str> = manifest.engine.macros.iter().map(|m| m.name.as_str()).collect();
    assert!(
        ["findings_at", "stream_events", "stream_silences", "user_agent_family"].iter().all(|m| macros.contains(m)),
        "{macros:?}"
    );
    assert!(!manifest.scope.accounts.is_empty() && !manifest.scope.tenants.is_empty());
    assert!(manifest.demo.is_none(), "generated by a test's own ingest, not the demo's generator source");
    assert!(!manifest.sources.is_empty(), "sources are stated");
    let html = String::from_utf8(files.iter().find(|(n, _)| n == "report.html").unwrap().1.clone()).unwrap();
    assert!(html.contains("<svg") && html.contains("2025-03-03T00:00:00Z"), "the report has charts and the period");

    // The real binary agrees, with the key published by `evidence public-key`.
    let (ok, pem) = tokentrail(&["evidence", "public-key", "--db", db.to_str().unwrap()]);
    assert!(ok, "{pem}");
    assert_eq!(sign::parse_public_key(&pem).unwrap(), key.public());
    let pem_path = dir.path().join("key.pem");
    std::fs::write(&pem_path, &pem).unwrap();
    let (ok, out) =
        tokentrail(&["evidence", "verify", zip_path.to_str().unwrap(), "--public-key", pem_path.to_str().unwrap()]);
    assert!(ok && out.contains("VERIFIED"), "{out}");

    // Another key's public half is refused, naming the manifest.
    let other = PackKey::load_or_create(&dir.path().join("other.pem"), true).unwrap();
    let result = pack::verify(&zip_path, Some(&other.public())).unwrap();
    assert!(!result.ok() && result.problems.iter().any(|p| p.file == "manifest.json"), "{:?}", result.problems);
}

fn problems_name(result: &Verification, file: &str) -> bool {
    result.problems.iter().any(|p| p.file == file)
}

#[test]
fn changing_any_byte_of_any_file_fails_verify_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = copy_db(dir.path());
    let (zip_path, key) = build_pack(dir.path(), &db);
    let files = entries(&zip_path);
    assert!(pack::verify(&zip_path, Some(&key.public())).unwrap().ok());
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    for must in ["manifest.json", "manifest.sig", "SHA256SUMS", "report.html"] {
        assert!(names.iter().any(|n| n == must), "{must} in {names:?}");
    }
    for (target, bytes) in &files {
        // First, middle and last byte of each file.
        for at in [0, bytes.len() / 2, bytes.len() - 1] {
            let mut changed = files.clone();
            let entry = &mut changed.iter_mut().find(|(n, _)| n == target).unwrap().1;
            entry[at] ^= 0x01;
            let result = pack::verify_reader(std::io::Cursor::new(zip_of(&changed)), Some(&key.public())).unwrap();
            assert!(!result.ok(), "{target} byte {at} changed, yet the pack verifies");
            assert!(problems_name(&result, target), "{target} byte {at}: {:?}", result.problems);
        }
    }
    // The manifest changed and not re-signed: the signature fails, naming the manifest.
    let mut changed = files.clone();
    let manifest = &mut changed.iter_mut().find(|(n, _)| n == "manifest.json").unwrap().1;
    let text = String::from_utf8(manifest.clone()).unwrap().replacen("\"rows\": ", "\"rows\": 1", 1);
    *manifest = text.into_bytes();
    let result = pack::verify_reader(std::io::Cursor::new(zip_of(&changed)), Some(&key.public())).unwrap();
    assert!(
        result.problems.iter().any(|p| p.file == "manifest.json" && p.message.contains("signature")),
        "{:?}",
        result.problems
    );
    // A removed file and an added one are named too.
    let mut changed: Vec<_> =
        files.iter().filter(|(n, _)| !n.ends_with(".parquet") || !n.contains("principals")).cloned().collect();
    changed.push(("extra.csv".into(), b"a\n1\n".to_vec()));
    let result = pack::verify_reader(std::io::Cursor::new(zip_of(&changed)), Some(&key.public())).unwrap();
    assert!(problems_name(&result, "extra.csv"), "{:?}", result.problems);
    assert!(
        result.problems.iter().any(|p| p.file.contains("principals") && p.message.contains("missing")),
        "{:?}",
        result.problems
    );

    // The binary says exactly what differs, and fails.
    let mut changed = files.clone();
    let target = changed.iter_mut().find(|(n, _)| n.ends_with(".csv")).unwrap();
    let name = target.0.clone();
    target.1.push(b'\n');
    let bad = dir.path().join("bad.zip");
    std::fs::write(&bad, zip_of(&changed)).unwrap();
    let (ok, out) = tokentrail(&["evidence", "verify", bad.to_str().unwrap()]);
    assert!(!ok && out.contains(&format!("DIFFERS: {name}: SHA-256")), "{out}");
}

#[test]
fn csv_cells_that_start_a_formula_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let db = copy_db(dir.path());
    let (zip_path, _) = build_pack(dir.path(), &db);
    let files = entries(&zip_path);
    let names: Vec<String> = {
        let i = header_index(&files, "access_log", "name");
        csv_of(&files, "access_log").iter().map(|r| r[i].to_string()).collect()
    };
    for formula in FORMULAS {
        assert!(names.contains(&format!("'{formula}")), "{formula:?} escaped in {names:?}");
        assert!(!names.contains(&formula.to_string()), "{formula:?} left as is");
    }
    // The same cells in Parquet keep their exact value (a typed format is not a spreadsheet).
    let (_, parquet) = files.iter().find(|(n, _)| n.contains("/access_log_") && n.ends_with(".parquet")).unwrap();
    let parquet_path = dir.path().join("access_log.parquet");
    std::fs::write(&parquet_path, parquet).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&parquet_path).unwrap(),
    )
    .unwrap();
    let mut exact = Vec::new();
    for batch in reader.build().unwrap() {
        let batch = batch.unwrap();
        let column = arrow::array::AsArray::as_string::<i32>(batch.column_by_name("name").unwrap().as_ref()).clone();
        exact.extend((0..batch.num_rows()).map(|i| column.value(i).to_string()));
    }
    assert!(exact.contains(&FORMULAS[0].to_string()), "{exact:?}");
}

/// Runs `change` on a copy of the database, then `tokentrail verify`.
fn tampered(change: &str, params: &[i64]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = copy_db(dir.path());
    {
        let store = Store::open(&db, &StoreOptions::default()).unwrap();
        let conn = store.connection().unwrap();
        let changed = conn.execute(change, duckdb::params_from_iter(params)).unwrap();
        assert_eq!(changed, 1, "{change}");
        conn.execute_batch("CHECKPOINT").unwrap();
    }
    tokentrail(&["verify", "--db", db.to_str().unwrap()])
}

#[test]
fn editing_deleting_or_inserting_a_row_makes_verify_name_the_batch() {
    let f = fixture();
    let (ok, out) = tokentrail(&["verify", "--db", f.db.to_str().unwrap()]);
    assert!(
        ok && out.contains("chain verified") && out.contains(&format!("{} of {} batches", f.batches, f.batches)),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let db = copy_db(dir.path());
    let (row, batch, signin_row, signin_batch) = {
        let store = Store::open(&db, &StoreOptions { read_only: true, ..StoreOptions::default() }).unwrap();
        let conn = store.connection().unwrap();
        let (row, batch): (i64, i64) = conn
            .query_row(
                "SELECT rowid, batch_id FROM cosmos_requests WHERE batch_id > 3 ORDER BY rowid LIMIT 1 OFFSET 500",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let (srow, sbatch): (i64, i64) = conn
            .query_row("SELECT rowid, batch_id FROM signins ORDER BY rowid DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        (row, batch, srow, sbatch)
    };
    let named = |out: &str, batch: i64| out.contains(&format!("batch {batch} no longer matches"));

    let (ok, out) =
        tampered("UPDATE cosmos_requests SET status_code = 200 + status_code % 7 + 1 WHERE rowid = ?", &[row]);
    assert!(!ok && named(&out, batch) && out.contains("cosmos_requests rows differ"), "edit: {out}");
    let (ok, out) = tampered("UPDATE signins SET latitude = latitude + 0.000001 WHERE rowid = ?", &[signin_row]);
    assert!(!ok && named(&out, signin_batch) && out.contains("signins rows differ"), "edit a double: {out}");
    let (ok, out) = tampered("DELETE FROM cosmos_requests WHERE rowid = ?", &[row]);
    assert!(!ok && named(&out, batch) && out.contains("now"), "delete: {out}");
    let (ok, out) = tampered("INSERT INTO cosmos_requests SELECT * FROM cosmos_requests WHERE rowid = ?", &[row]);
    assert!(!ok && named(&out, batch), "insert a copy: {out}");
    let (ok, out) = tampered(
        "INSERT INTO cosmos_requests SELECT * REPLACE (99999 AS batch_id) FROM cosmos_requests WHERE rowid = ?",
        &[row],
    );
    assert!(!ok && out.contains("batch_id 99999") && out.contains("no committed batch"), "insert into no batch: {out}");
    let (ok, out) = tampered("UPDATE ingest_batches SET position = 'line 1' WHERE batch_id = ?", &[batch]);
    assert!(!ok && named(&out, batch) && out.contains("ingest_batches row"), "edit the batch: {out}");
}

#[test]
fn the_chain_is_reproducible_and_a_second_ingest_extends_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = copy_db(dir.path());
    let store = Store::open(&db, &StoreOptions::default()).unwrap();
    let before = chain::verify(&store, &|_, _| {}).unwrap();
    assert!(before.verified(), "{}", before.summary());
    let file = dir.path().join("more.ndjson");
    let generator = Generator::new(Tenant::new(7), 8);
    let (events, _) =
        generator.history(start() + Duration::days(DAYS), start() + Duration::days(DAYS) + Duration::hours(3), &[]);
    std::fs::write(&file, events.iter().map(|e| format!("{}\n", e.record)).collect::<String>()).unwrap();
    let mut writer = store.writer().unwrap();
    ingest_files(
        &store,
        &mut writer,
        &[file],
        PipelineOptions { workers: 2, ..PipelineOptions::default() },
        indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    let after = chain::verify(&store, &|_, _| {}).unwrap();
    assert!(after.verified(), "{}", after.summary());
    assert!(after.head_batch > before.head_batch && after.head_digest != before.head_digest);
}

#[test]
fn bad_criteria_and_periods_say_what_to_fix() {
    let e = Criterion::parse_list("CC6.1,CC9.9").unwrap_err().to_string();
    assert!(e.contains("CC9.9") && e.contains("CC7.2"), "{e}");
    assert_eq!(
        Criterion::parse_list("cc6.3, CC7.4,access_log").unwrap(),
        vec![Criterion::Cc6_2, Criterion::Cc7_3, Criterion::AccessLog]
    );
    let e = Period::new(start(), start()).unwrap_err().to_string();
    assert!(e.contains("before"), "{e}");
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.zip");
    let (ok, text) = tokentrail(&[
        "evidence",
        "--db",
        f.db.to_str().unwrap(),
        "--criteria",
        "CC1.1",
        "--from",
        START,
        "--to",
        "2025-03-04T00:00:00Z",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && text.contains("CC1.1"), "{text}");
    // An expected stream that is not one: refused with the form to use, no pack written.
    let db = copy_db(dir.path());
    for hostile in ["orders-prod", "cosmos:", "signins:x'); DROP TABLE findings; --x"] {
        let (ok, text) = tokentrail(&[
            "evidence",
            "--db",
            db.to_str().unwrap(),
            "--criteria",
            "CC7.2",
            "--from",
            START,
            "--to",
            "2025-03-04T00:00:00Z",
            "--out",
            out.to_str().unwrap(),
            "--expect",
            hostile,
        ]);
        if hostile.starts_with("signins:x") {
            // A category is data: bound as a parameter, it is one more stream, never SQL.
            assert!(ok, "{text}");
            let findings = value(&db, "SELECT count(*) FROM findings");
            assert!(findings > 0, "the findings table is still there");
            continue;
        }
        assert!(!ok && text.contains("cosmos:<account>") && !out.exists(), "{hostile}: {text}");
    }
}

#[test]
fn the_command_line_makes_a_pack_with_a_key_beside_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = copy_db(dir.path());
    let out = dir.path().join("cli.zip");
    let (ok, text) = tokentrail(&[
        "evidence",
        "--db",
        db.to_str().unwrap(),
        "--criteria",
        "CC6.1,CC7.2",
        "--from",
        START,
        "--to",
        "2025-03-05T00:00:00Z",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let key_path = sign::key_path(&db, None);
    assert!(
        text.contains(&key_path.display().to_string()) && text.contains("created signing key"),
        "says where: {text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let (ok, text) = tokentrail(&["evidence", "verify", out.to_str().unwrap()]);
    assert!(!ok && text.contains("no public key pinned"), "a pack's own key proves nothing: {text}");
    let (ok, text) = tokentrail(&["evidence", "verify", out.to_str().unwrap(), "--trust-embedded-key"]);
    assert!(ok && text.contains("VERIFIED"), "{text}");
    // The export itself is in the access log.
    let logged = value(&db, "SELECT count(*) FROM access_log WHERE endpoint = 'tokentrail evidence'");
    assert_eq!(logged, 1);
}

#[test]
fn the_api_streams_a_pack_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let db = copy_db(dir.path());
    let store = Arc::new(Store::open(&db, &StoreOptions::default()).unwrap());
    let issuer = TestIssuer::start();
    let (state, base) = common::app::serve(store.clone(), &issuer, tokentrail::rules::rule::load(None).0);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let get = |path: &str, role: Role| {
        let mut response = agent
            .get(&format!("{base}{path}"))
            .header("Authorization", format!("Bearer {}", issuer.token(&[role])))
            .call()
            .unwrap();
        let status = response.status().as_u16();
        let kind = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        (status, kind, response.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap())
    };
    let (status, _, body) = get("/api/evidence/public-key", Role::Admin);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let published: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let public = sign::parse_public_key(published["public_key_pem"].as_str().unwrap()).unwrap();

    let post = |body: serde_json::Value, role: Role| {
        let mut response = agent
            .post(&format!("{base}/api/evidence"))
            .header("Authorization", format!("Bearer {}", issuer.token(&[role])))
            .send_json(body)
            .unwrap();
        let status = response.status().as_u16();
        let kind = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        (status, kind, response.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap())
    };
    let pack = |criteria: &str, from: &str, to: &str| serde_json::json!({"criteria": criteria, "from": from, "to": to});
    let all = pack("CC6.1,CC6.2,CC7.2,CC7.3,access_log", "2025-03-03T00:00:00Z", "2025-03-05T00:00:00Z");
    let (status, kind, body) = post(all.clone(), Role::Auditor);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(kind, "application/zip");
    let downloaded = body.clone();
    let result = pack::verify_reader(std::io::Cursor::new(body), Some(&public)).unwrap();
    assert!(result.ok(), "{:?}", result.problems);
    let manifest = result.manifest.unwrap();

    // An Auditor asks the service to run the pack's populations again: the same bytes.
    let rerun = |body: &[u8], role: Role| {
        let mut response = agent
            .post(&format!("{base}/api/evidence/rerun"))
            .header("Authorization", format!("Bearer {}", issuer.token(&[role])))
            .header("Content-Type", "application/zip")
            .send(body)
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    };
    let (status, text) = rerun(&downloaded, Role::Auditor);
    assert_eq!(status, 200, "{text}");
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["all_same"], true, "{text}");
    assert_eq!(
        report["populations"].as_array().unwrap().len(),
        manifest.files.iter().filter(|f| f.format == "csv" && f.sql.is_some()).count()
    );
    // Refused before the body is read (a large one would meet a closed connection).
    assert_eq!(rerun(b"PK", Role::Responder).0, 403, "only auditors re-run packs");
    // Larger than the bound: refused with 413 (or the connection closed while the rest was
    // still being sent), never read whole; the service goes on answering.
    let oversized = vec![0u8; tokentrail::http::api::evidence::MAX_RERUN_PACK_BYTES + 1];
    let sent = agent
        .post(&format!("{base}/api/evidence/rerun"))
        .header("Authorization", format!("Bearer {}", issuer.token(&[Role::Auditor])))
        .header("Content-Type", "application/octet-stream")
        .send(&oversized[..]);
    if let Ok(response) = sent {
        assert_eq!(response.status().as_u16(), 413);
    }
    drop(oversized);
    let (status, text) = rerun(b"not a zip", Role::Auditor);
    assert!(status == 400 && text.contains("not a readable evidence pack"), "{status} {text}");
    // A pack signed by another key (made elsewhere, or forged) is not run.
    let other_dir = tempfile::tempdir().unwrap();
    let other_db = copy_db(other_dir.path());
    let (other_pack, _) = build_pack(other_dir.path(), &other_db);
    let (status, text) = rerun(&std::fs::read(other_pack).unwrap(), Role::Auditor);
    assert!(status == 400 && text.contains("does not verify with this service's key"), "{status} {text}");
    assert_eq!(manifest.generated_by.oid.as_deref(), issuer.claims(&[]).get("oid").and_then(|v| v.as_str()));
    assert_eq!(manifest.generated_by.tid.as_deref(), Some(common::jwks::TENANT));
    assert_eq!(manifest.signing_key.key_id, published["key_id"].as_str().unwrap());

    let (status, _, body) = post(pack("CC6.9", "2025-03-03T00:00:00Z", "2025-03-05T00:00:00Z"), Role::Auditor);
    let text = String::from_utf8_lossy(&body);
    assert!(status == 400 && text.contains("CC6.9"), "{status} {text}");
    let (status, _, body) = post(pack("CC6.1", "2025-03-05T00:00:00Z", "2025-03-03T00:00:00Z"), Role::Auditor);
    assert!(status == 400 && String::from_utf8_lossy(&body).contains("before"), "{status}");
    let (status, _, body) = post(pack("CC6.1", "yesterday", "2025-03-03T00:00:00Z"), Role::Auditor);
    assert!(status == 400 && String::from_utf8_lossy(&body).contains("RFC 3339"), "{status}");
    let (status, _, _) = post(all, Role::Responder);
    assert_eq!(status, 403, "only auditors download packs");
    // The download is in the access log, with the manifest's digest.
    state.audit.flush();
    let conn = store.connection().unwrap();
    let logged: String = conn
        .query_row(
            "SELECT parameters::VARCHAR FROM access_log WHERE endpoint = '/api/evidence' AND status = 200",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(logged.contains("manifest_sha256"), "{logged}");
}

#[test]
fn the_access_log_is_chained_and_verify_names_a_changed_deleted_or_inserted_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = copy_db(dir.path());
    let (ok, text) = tokentrail(&["verify", "--db", db.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("access_log chain verified"), "{text}");
    let edits = [
        ("UPDATE access_log SET status = 403 WHERE id = (SELECT min(id) + 2 FROM access_log)", "rows differ"),
        ("DELETE FROM access_log WHERE id = (SELECT min(id) + 1 FROM access_log)", "rows deleted or inserted"),
        (
            "INSERT INTO access_log (time, method, endpoint, path, status, duration_ms) VALUES (now(), 'GET', '/x', '/x', 200, 1)",
            "outside every link",
        ),
        ("UPDATE append_chain SET rows_digest = chain_digest WHERE table_name = 'access_log'", "rows differ"),
        ("DELETE FROM append_chain WHERE table_name = 'access_log'", "append_chain was emptied"),
    ];
    each_edit_breaks_the_chain(&db, dir.path(), "access_log", &edits);
}

/// `tokentrail verify` on a copy of `db` with each edit (SQL, and what verify must say)
/// fails and names `table`'s chain as broken, and only that chain.
pub fn each_edit_breaks_the_chain(db: &Path, dir: &Path, table: &str, edits: &[(&str, &str)]) {
    let other = if table == "access_log" { "finding_history" } else { "access_log" };
    for (edit, said) in edits {
        let edited = dir.join("edited.duckdb");
        std::fs::copy(db, &edited).unwrap();
        {
            let store = Store::open(&edited, &StoreOptions::default()).unwrap();
            store.connection().unwrap().execute_batch(edit).unwrap();
        }
        let (ok, text) = tokentrail(&["verify", "--db", edited.to_str().unwrap()]);
        assert!(!ok, "{edit}: {text}");
        assert!(text.contains(&format!("{table} chain BROKEN")) && text.contains(said), "{edit}: {text}");
        assert!(!text.contains(&format!("{other} chain BROKEN")), "{edit}: {text}");
    }
}

#[test]
fn a_pack_past_its_row_budget_or_cancelled_is_refused_and_not_built() {
    let dir = tempfile::tempdir().unwrap();
    let db = copy_db(dir.path());
    let store = Store::open(&db, &StoreOptions::default()).unwrap();
    let key = PackKey::load_or_create(&sign::key_path(&db, None), true).unwrap();
    let rules = tokentrail::rules::rule::load(None).0;
    let request = |budget: tokentrail::evidence::Budget| PackRequest {
        criteria: Criterion::ALL.to_vec(),
        period: period(),
        generated_by: GeneratedBy::local_user(),
        rules: &rules,
        budget,
        expected: Vec::new(),
        development_signer: false,
        removal_hours: 24,
        lake: None,
    };
    let small = tokentrail::evidence::Budget { max_rows: 10, ..tokentrail::evidence::Budget::unlimited() };
    let error = pack::build_file(&store, &key, &request(small), &dir.path().join("a.zip"), &|_, _, _| {}).unwrap_err();
    assert!(format!("{error:#}").contains("more than 10 rows"), "{error:#}");
    let cancelled = tokentrail::evidence::Budget::unlimited();
    cancelled.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let error =
        pack::build_file(&store, &key, &request(cancelled), &dir.path().join("b.zip"), &|_, _, _| {}).unwrap_err();
    assert!(format!("{error:#}").contains("cancelled"), "{error:#}");
    let past = tokentrail::evidence::Budget {
        deadline: Some(std::time::Instant::now()),
        ..tokentrail::evidence::Budget::unlimited()
    };
    let error = pack::build_file(&store, &key, &request(past), &dir.path().join("c.zip"), &|_, _, _| {}).unwrap_err();
    assert!(format!("{error:#}").contains("took longer than allowed"), "{error:#}");
}

/// A pack edited and signed again with the forger's own key is whole, and signed: only the
/// service's pinned key tells it apart.
#[test]
fn a_pack_signed_again_by_another_key_fails_unless_its_key_is_trusted() {
    use sha2::Digest as _;
    let hex = |bytes: &[u8]| sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let dir = tempfile::tempdir().unwrap();
    let db = copy_db(dir.path());
    let (zip_path, service) = build_pack(dir.path(), &db);
    let mut files = entries(&zip_path);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|(n, _)| n == pack::MANIFEST).unwrap().1).unwrap();
    // the forger rewrites the report and every hash that covers it, and signs with its own key
    let report = files.iter_mut().find(|(n, _)| n == "report.html").unwrap();
    report.1 = b"<html>nothing to see</html>".to_vec();
    let (report_hash, report_len) = (hex(&report.1), report.1.len());
    let entry = manifest["files"].as_array_mut().unwrap().iter_mut().find(|f| f["path"] == "report.html").unwrap();
    entry["sha256"] = serde_json::json!(report_hash);
    entry["bytes"] = serde_json::json!(report_len);
    let forger = PackKey::load_or_create(&dir.path().join("forger.pem"), true).unwrap();
    manifest["signing_key"]["public_key_pem"] = serde_json::json!(forger.public_pem());
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    let mut sums = String::new();
    for file in manifest["files"].as_array().unwrap() {
        sums.push_str(&format!("{}  {}\n", file["sha256"].as_str().unwrap(), file["path"].as_str().unwrap()));
    }
    sums.push_str(&format!("{}  {}\n", hex(&manifest_bytes), pack::MANIFEST));
    for (name, bytes) in files.iter_mut() {
        match name.as_str() {
            pack::MANIFEST => *bytes = manifest_bytes.clone(),
            pack::SIGNATURE => *bytes = format!("{}\n", forger.sign(&manifest_bytes)).into_bytes(),
            pack::SUMS => *bytes = sums.clone().into_bytes(),
            _ => {}
        }
    }
    let forged = dir.path().join("forged.zip");
    std::fs::write(&forged, zip_of(&files)).unwrap();
    let forged = forged.to_str().unwrap();
    let (ok, text) = tokentrail(&["evidence", "verify", forged, "--trust-embedded-key"]);
    assert!(ok, "whole and signed, by someone: {text}");
    let (ok, text) = tokentrail(&["evidence", "verify", forged]);
    assert!(!ok && text.contains("NOT TRUSTED: no public key pinned"), "{text}");
    let pem = dir.path().join("service.pem");
    std::fs::write(&pem, service.public_pem()).unwrap();
    let (ok, text) = tokentrail(&["evidence", "verify", forged, "--public-key", pem.to_str().unwrap()]);
    assert!(!ok && text.contains("NOT VERIFIED"), "{text}");
}

#[test]
fn a_period_ending_in_the_future_is_refused() {
    let e = Period::new(Utc::now() - Duration::days(1), Utc::now() + Duration::hours(1)).unwrap_err().to_string();
    assert!(e.contains("in the future"), "{e}");
}

#[test]
fn a_pack_made_over_a_broken_chain_does_not_verify() {
    // A stored request edited, and a finding's history rewritten (who resolved it).
    let edits = [
        ("UPDATE cosmos_requests SET status_code = -7 WHERE rowid = (SELECT min(rowid) FROM cosmos_requests)", "batch"),
        (
            "UPDATE finding_history SET changed_by = 'Someone Else' WHERE id = (SELECT max(id) FROM finding_history)",
            "finding_history chain BROKEN",
        ),
    ];
    for (edit, named) in edits {
        let dir = tempfile::tempdir().unwrap();
        let db = copy_db(dir.path());
        {
            let store = Store::open(&db, &StoreOptions::default()).unwrap();
            store.connection().unwrap().execute_batch(edit).unwrap();
        }
        let (zip_path, key) = build_pack(dir.path(), &db);
        let pem = dir.path().join("service.pem");
        std::fs::write(&pem, key.public_pem()).unwrap();
        let (ok, text) =
            tokentrail(&["evidence", "verify", zip_path.to_str().unwrap(), "--public-key", pem.to_str().unwrap()]);
        assert!(!ok && text.contains("NOT TRUSTED: the integrity chain did not verify"), "{edit}: {text}");
        assert!(text.contains(named), "{edit}: {text}");
    }
}

/// Builds a pack of `criteria` for `period` with the library and returns its manifest.
fn pack_of(
    store: &Store,
    key: &PackKey,
    criteria: &[Criterion],
    period: Period,
    expected: &[&str],
    out: &Path,
) -> tokentrail::evidence::manifest::Manifest {
    let rules = tokentrail::rules::rule::load(None).0;
    let request = PackRequest {
        criteria: criteria.to_vec(),
        period,
        generated_by: GeneratedBy::local_user(),
        rules: &rules,
        budget: tokentrail::evidence::Budget::unlimited(),
        expected: expected.iter().map(|s| s.to_string()).collect(),
        development_signer: false,
        removal_hours: 24,
        lake: None,
    };
    pack::build_file(store, key, &request, out, &|_, _, _| {}).unwrap().manifest
}

/// The SHA-256 of each population's CSV, by population.
fn population_digests(manifest: &tokentrail::evidence::manifest::Manifest) -> Vec<(String, String)> {
    manifest
        .files
        .iter()
        .filter(|f| f.format == "csv" && f.population.is_some())
        .map(|f| (f.population.clone().unwrap(), f.sha256.clone()))
        .collect()
}

/// A closed period's pack says the same whenever it is made: status changes after the
/// period's end, a rule disabled later, and late logs of the period stored after the pack
/// change none of its populations, and the Auditor's re-run of its SQL gives the same bytes.
#[test]
fn a_closed_period_says_the_same_whenever_its_pack_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let db = copy_db(dir.path());
    let store = Store::open(&db, &StoreOptions::default()).unwrap();
    let key = PackKey::load_or_create(&sign::key_path(&db, None), true).unwrap();
    // The fixture raised and answered its findings before now: a period ending now holds them.
    let period = Period::new(start(), Utc::now()).unwrap();
    let criteria = [Criterion::Cc6_2, Criterion::Cc7_2, Criterion::Cc7_3];
    let first = pack_of(&store, &key, &criteria, period, &[], &dir.path().join("first.zip"));
    let files = entries(&dir.path().join("first.zip"));
    let response = csv_of(&files, "response");
    let by = header_index(&files, "response", "acknowledged_by");
    assert!(response.iter().any(|r| r[by].starts_with("Ann Responder")), "answered in the period");
    assert!(!csv_of(&files, "rules").is_empty() && !csv_of(&files, "findings").is_empty());

    // After the period: a finding resolved, a rule no longer run, late logs of the period.
    let open: i64 = store
        .connection()
        .unwrap()
        .query_row("SELECT min(id) FROM findings WHERE status = 'acknowledged'", [], |r| r.get(0))
        .unwrap();
    set_status(&store, open, Status::Resolved, "Carl Late (oid c tid t)", "after the period").unwrap();
    let config = DetectionConfig { disabled_rules: vec!["key_auth_access".into()], ..DetectionConfig::default() };
    Detector::open(&store, &config).unwrap();
    let (late, _) = Generator::new(Tenant::new(7), 99).history(start(), start() + Duration::hours(2), &[]);
    common::ingest_in_files(&store, dir.path(), "late", &late, 2);

    // The Auditor's re-run of the first pack: the same bytes, late logs and all.
    let rerun = pack::rerun(&store, &first, None).unwrap();
    assert_eq!(rerun.len(), first.files.iter().filter(|f| f.format == "csv" && f.sql.is_some()).count());
    for population in &rerun {
        assert!(population.same, "{population:?}");
    }
    // A new pack of the period: the findings' side is unchanged; the late logs are in it.
    let second = pack_of(&store, &key, &criteria, period, &[], &dir.path().join("second.zip"));
    assert!(second.as_of.batch_id > first.as_of.batch_id);
    let (then, now) = (population_digests(&first), population_digests(&second));
    for name in ["rules", "findings", "response", "history"] {
        let find = |d: &[(String, String)]| d.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(find(&then), find(&now), "{name} changed after the period's end");
    }
    let find = |d: &[(String, String)]| d.iter().find(|(n, _)| n == "principals").unwrap().1.clone();
    assert_ne!(find(&then), find(&now), "late logs of the period are in a later pack");
    let text = String::from_utf8(
        entries(&dir.path().join("second.zip")).into_iter().find(|(n, _)| n.contains("history_")).unwrap().1,
    )
    .unwrap();
    assert!(!text.contains("Carl Late"), "a change after the period's end is not in its history");
}

/// Packs made while batches commit are consistent: each is bounded by the last batch of its
/// snapshot, its chain verifies (no false "row deleted"), every batch reconciles, and the
/// re-run of its SQL afterwards gives the same bytes.
#[test]
fn a_pack_made_while_batches_commit_is_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let db = copy_db(dir.path());
    let store = Arc::new(Store::open(&db, &StoreOptions::default()).unwrap());
    let key = PackKey::load_or_create(&sign::key_path(&db, None), true).unwrap();
    let (more, _) = Generator::new(Tenant::new(7), 8).history(start(), start() + Duration::hours(8), &[]);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, done, dir) = (store.clone(), done.clone(), dir.path().to_path_buf());
        std::thread::spawn(move || {
            common::ingest_in_files(&store, &dir, "more", &more, 24);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let mut packs = Vec::new();
    while !done.load(std::sync::atomic::Ordering::SeqCst) || packs.len() < 2 {
        let out = dir.path().join(format!("pack-{}.zip", packs.len()));
        let manifest = pack_of(&store, &key, &[Criterion::Cc6_1, Criterion::Cc7_2], period(), &[], &out);
        assert!(manifest.integrity_chain.verified, "{}", manifest.integrity_chain.result);
        let files = entries(&out);
        let reconciled = header_index(&files, "sources", "reconciled");
        assert!(csv_of(&files, "sources").iter().all(|r| &r[reconciled] == "true"));
        assert!(pack::verify(&out, Some(&key.public())).unwrap().ok());
        packs.push(manifest);
    }
    writer.join().unwrap();
    let as_of: Vec<Option<i64>> = packs.iter().map(|m| m.as_of.batch_id).collect();
    assert!(as_of.first() < as_of.last(), "packs were made while batches committed: {as_of:?}");
    for manifest in &packs {
        assert!(
            pack::rerun(&store, manifest, None).unwrap().iter().all(|p| p.same),
            "as of batch {:?}",
            manifest.as_of
        );
    }
}

/// A Cosmos DB account whose logs stop is reported as stopped, with its gap, and an
/// expected stream that never came as not ingested; the quiet hours of streams that are
/// quiet at those hours every week are not gaps.
#[test]
fn a_stream_that_stops_is_reported_and_quiet_hours_are_not_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stops.duckdb");
    let store = Store::open(&db, &StoreOptions::default()).unwrap();
    let key = PackKey::load_or_create(&sign::key_path(&db, None), true).unwrap();
    let (begin, days) = (start(), 10);
    let (mut events, _) = Generator::new(Tenant::new(3), 3).history(begin, begin + Duration::days(days), &[]);
    // The busiest account's diagnostic setting is removed on day 8, at noon.
    let account_of = |e: &tokentrail::synth::Event| {
        let id = e.record["resourceId"].as_str().unwrap_or("").to_ascii_lowercase();
        id.split("/databaseaccounts/").nth(1).map(|a| a.split('/').next().unwrap().to_string())
    };
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for e in events.iter().filter(|e| e.category == "DataPlaneRequests") {
        *counts.entry(account_of(e).unwrap()).or_default() += 1;
    }
    let busiest = counts.iter().max_by_key(|(_, n)| **n).unwrap().0.clone();
    let cut = begin + Duration::days(8) + Duration::hours(12);
    events.retain(|e| {
        !(e.category == "DataPlaneRequests" && account_of(e).as_deref() == Some(&busiest) && e.time >= cut)
    });
    common::ingest_in_files(&store, dir.path(), "history", &events, 4);
    let (detector, _) = Detector::open(&store, &DetectionConfig::default()).unwrap();
    detector.evaluate_after_commit(&store).unwrap();

    let period = Period::new(begin + Duration::days(8), begin + Duration::days(days)).unwrap();
    let out = dir.path().join("pack.zip");
    let manifest = pack_of(&store, &key, &[Criterion::Cc7_2], period, &["cosmos:Never-Sent"], &out);
    let files = entries(&out);
    let coverage = csv_of(&files, "coverage");
    let (stream, status) = (header_index(&files, "coverage", "stream"), header_index(&files, "coverage", "status"));
    let status_of = |name: &str| coverage.iter().find(|r| &r[stream] == name).map(|r| r[status].to_string());
    assert_eq!(status_of(&format!("cosmos:{busiest}")).as_deref(), Some("stopped"), "{coverage:?}");
    assert_eq!(status_of("cosmos:never-sent").as_deref(), Some("not ingested"), "{coverage:?}");
    let gaps = csv_of(&files, "gaps");
    let gap_stream = header_index(&files, "gaps", "stream");
    assert!(gaps.iter().any(|r| r[gap_stream] == format!("cosmos:{busiest}")), "{gaps:?}");
    assert!(
        gaps.iter().all(|r| r[gap_stream] == format!("cosmos:{busiest}")),
        "only the stopped stream has gaps, not quiet nights: {gaps:?}"
    );
    // The completeness table still shows every quiet hour, as counts.
    let zero_hours = csv_of(&files, "completeness").iter().filter(|r| r[2] == *"0").count();
    assert!(zero_hours > gaps.len(), "quiet hours are counted, not called gaps");
    assert_eq!(manifest.gaps.len(), gaps.len());
}
