//! `tokentrail evidence sample`, end to end with the real binary: a JSON-lines file of
//! envelopes holding several records and of single-record lines is ingested, a pack made
//! and sampled; each item traces to the exact bytes on its source line, whose SHA-256 is
//! the one the pack and the stored row carry. The draw is the seed's; an edited source file
//! is reported; bad arguments get errors that say what to fix.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const ACCOUNT: &str = "/SUBSCRIPTIONS/11111111-2222-3333-4444-555555555555/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/SAMPLED";

fn tokentrail(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tokentrail")).args(args).env("TOKENTRAIL_LOG", "warn").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Cosmos DB request made with the primary key (`n` makes it unique), formatted with
/// blanks a re-serialisation would lose: only the exact bytes hash the same.
fn key_request(n: usize) -> String {
    format!(
        r#"{{ "time": "2026-11-20T10:{:02}:{:02}.000Z", "category": "DataPlaneRequests", "operationName": "Read", "resourceId": "{ACCOUNT}",
  "properties": {{"activityId": "aaaaaaaa-0000-0000-0000-{n:012}", "authTokenType": "PrimaryMasterKey", "keyType": "PrimaryMasterKey",
  "clientIpAddress": "203.0.113.{}", "statusCode": "200", "databaseName": "db", "collectionName": "c", "userAgent": "sdk/{n}" }} }}"#,
        n / 60,
        n % 60,
        n % 200
    )
    .replace('\n', "")
}

/// A request with an identity: not in key_access_events.
fn entra_request(n: usize) -> String {
    format!(
        r#"{{"time":"2026-11-20T11:00:{:02}Z","category":"DataPlaneRequests","operationName":"Query","resourceId":"{ACCOUNT}","properties":{{"activityId":"bbbbbbbb-0000-0000-0000-{n:012}","authTokenType":"AADToken","aadPrincipalId":"0e5a1f3c-1111-4222-8333-944444444444","clientIpAddress":"198.51.100.7","statusCode":"200"}}}}"#,
        n % 60
    )
}

fn sign_in(n: usize) -> String {
    format!(
        r#"{{"time":"2026-11-20T09:00:{:02}Z","category":"SignInLogs","properties":{{"id":"cccccccc-0000-0000-0000-{n:012}","createdDateTime":"2026-11-20T09:00:{:02}Z","userId":"0e5a1f3c-1111-4222-8333-944444444444","userPrincipalName":"ann@contoso.com","ipAddress":"198.51.100.7","status":{{"errorCode":0}}}}}}"#,
        n % 60,
        n % 60
    )
}

/// Lines of envelopes (several records, blanks between them) and single records.
fn source_lines() -> Vec<String> {
    let mut lines = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    for round in 0..6 {
        let records = [key_request(next()), entra_request(next()), key_request(next()), sign_in(next())];
        lines.push(
            format!("{{\"records\": [ {} ,\n{} ]}}", records.join(" , "), key_request(next())).replace('\n', " "),
        );
        lines.push(key_request(next()));
        if round % 2 == 0 {
            lines.push(sign_in(next()));
        }
        lines.push(format!("{{ \"records\":[{},{}]}}", entra_request(next()), key_request(next())));
    }
    lines
}

struct Setup {
    dir: tempfile::TempDir,
    source: PathBuf,
    db: PathBuf,
    pack: PathBuf,
    key: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("requests.ndjson");
    std::fs::write(&source, source_lines().join("\n") + "\n").unwrap();
    let db = dir.path().join("store.duckdb");
    let (ok, _, err) = tokentrail(&["ingest", "--db", path(&db), path(&source)]);
    assert!(ok, "{err}");
    let pack = dir.path().join("pack.zip");
    let to = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (ok, out, err) = tokentrail(&[
        "evidence",
        "--db",
        path(&db),
        "--criteria",
        "CC6.1,CC7.2",
        "--from",
        "2026-11-01T00:00:00Z",
        "--to",
        &to,
        "--out",
        path(&pack),
    ]);
    assert!(ok, "{out}{err}");
    let (ok, pem, err) = tokentrail(&["evidence", "public-key", "--db", path(&db)]);
    assert!(ok, "{err}");
    let key = dir.path().join("public.pem");
    std::fs::write(&key, pem).unwrap();
    Setup { dir, source, db, pack, key }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `sample.csv` as one map per item.
fn items(out: &Path) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(out.join("sample.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| header.iter().zip(r.unwrap().iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect())
        .collect()
}

fn sample(s: &Setup, out: &str, seed: &str, size: &str) -> (bool, String, String) {
    let out = s.dir.path().join(out);
    tokentrail(&[
        "evidence",
        "sample",
        path(&s.pack),
        "--size",
        size,
        "--seed",
        seed,
        "--population",
        "key_access_events",
        "--public-key",
        path(&s.key),
        "--out",
        path(&out),
    ])
}

#[test]
fn a_sample_traces_each_item_to_its_exact_source_line_and_the_seed_decides_the_draw() {
    let s = setup();
    let (ok, stdout, err) = sample(&s, "first", "audit-2026", "5");
    assert!(ok, "{stdout}{err}");
    assert!(stdout.contains("VERIFIED") && stdout.contains("sha256sum"), "{stdout}");
    let first = items(&s.dir.path().join("first"));
    assert_eq!(first.len(), 5);

    let conn = duckdb::Connection::open(&s.db).unwrap();
    let text = std::fs::read_to_string(&s.source).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut from_envelopes = 0;
    for (n, item) in first.iter().enumerate() {
        assert_eq!(item["population"], "key_access_events");
        assert_eq!((item["raw_found"].as_str(), item["raw_sha256_matches"].as_str()), ("true", "true"), "{item:?}");
        // The record's exact bytes are on the line the item names, and hash to record_sha256.
        let record = std::fs::read(s.dir.path().join(format!("first/items/{:03}.record", n + 1))).unwrap();
        let record = String::from_utf8(record).unwrap();
        let line: usize = item["line"].parse().unwrap();
        assert!(lines[line - 1].contains(&record), "line {line} holds the record exactly: {record}");
        assert!(record.starts_with('{') && record.ends_with('}') && !record.contains("\"records\""));
        assert_eq!(hex(&Sha256::digest(record.as_bytes())), item["record_sha256"]);
        assert_eq!(item["raw_sha256"], item["record_sha256"]);
        // The stored row carries the same digest and position.
        let activity = &item["activity_id"];
        assert!(record.contains(activity.as_str()));
        let (stored, stored_line, index): (String, i64, Option<i32>) = conn
            .query_row(
                "SELECT lower(hex(record_sha256)), line, record_index FROM cosmos_requests WHERE activity_id = ?",
                [activity],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((stored, stored_line), (item["record_sha256"].clone(), line as i64));
        let expected_id = match index {
            Some(i) => {
                from_envelopes += 1;
                format!("{}:{line}#{i}", s.source.display())
            }
            None => format!("{}:{line}", s.source.display()),
        };
        assert_eq!(item["event_id"], expected_id);
        let json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(s.dir.path().join(format!("first/items/{:03}.json", n + 1))).unwrap(),
        )
        .unwrap();
        assert_eq!(json["raw"]["record"], record.as_str());
        assert_eq!(json["origin"]["line"], line as i64);
    }
    assert!(from_envelopes <= first.len());

    // The draw is the first N by SHA-256 of "<seed>:<event_id>", redrawn here from the stored rows.
    let ids: Vec<String> = conn
        .prepare(
            "SELECT record_event_id('cosmos_requests', source, line, record_index, partition, sequence_number, batch_id, rowid)
             FROM cosmos_requests WHERE principal_id IS NULL",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids.len(), 30, "every key request, from envelopes and single lines");
    let mut keyed: Vec<(String, &String)> =
        ids.iter().map(|id| (hex(&Sha256::digest(format!("audit-2026:{id}").as_bytes())), id)).collect();
    keyed.sort();
    let redrawn: Vec<&str> = keyed.iter().take(5).map(|(_, id)| id.as_str()).collect();
    let drawn: Vec<&str> = first.iter().map(|i| i["event_id"].as_str()).collect();
    assert_eq!(drawn, redrawn);

    // The same seed draws the same items; another seed others.
    let (ok, _, err) = sample(&s, "again", "audit-2026", "5");
    assert!(ok, "{err}");
    let again: Vec<String> = items(&s.dir.path().join("again")).into_iter().map(|i| i["event_id"].clone()).collect();
    assert_eq!(again, drawn);
    let (ok, _, err) = sample(&s, "other", "another-seed", "5");
    assert!(ok, "{err}");
    let other: Vec<String> = items(&s.dir.path().join("other")).into_iter().map(|i| i["event_id"].clone()).collect();
    assert_ne!(other, drawn);

    // A sample larger than the population takes all of it: every record, from an envelope
    // (its event id ends in #<record_index>) or alone on its line, traces and matches.
    let (ok, stdout, err) = sample(&s, "all", "audit-2026", "100");
    assert!(ok, "{err}");
    assert!(stdout.contains("30 found and matching"), "{stdout}");
    let all = items(&s.dir.path().join("all"));
    let in_envelopes = all.iter().filter(|i| !i["record_index"].is_empty()).count();
    assert_eq!((all.len(), in_envelopes), (30, 24));
    assert!(all.iter().all(|i| i["raw_sha256_matches"] == "true"));

    // An edited source file: the edited record no longer matches, the others still do.
    let edited = &first[0];
    let activity = &edited["activity_id"];
    let changed =
        text.replace(&format!("{activity}\", \"authTokenType\""), &format!("{activity}\", \"authTokenType\" "));
    assert_ne!(changed, text, "the test edits one record");
    std::fs::write(&s.source, changed).unwrap();
    let (ok, stdout, err) = sample(&s, "edited", "audit-2026", "5");
    assert!(ok, "{err}");
    assert!(stdout.contains("1 found and different"), "{stdout}");
    let after = items(&s.dir.path().join("edited"));
    assert_eq!(after[0]["event_id"], edited["event_id"]);
    assert_eq!((after[0]["raw_found"].as_str(), after[0]["raw_sha256_matches"].as_str()), ("true", "false"));
    assert_ne!(after[0]["raw_sha256"], after[0]["record_sha256"]);
    assert!(after[1..].iter().all(|i| i["raw_sha256_matches"] == "true"));

    // A source file that is gone: named in the note, nothing found.
    std::fs::remove_file(&s.source).unwrap();
    let (ok, _, err) = sample(&s, "gone", "audit-2026", "2");
    assert!(ok, "{err}");
    let gone = items(&s.dir.path().join("gone"));
    assert!(gone.iter().all(|i| i["raw_found"] == "false" && i["note"].contains("is not here")), "{gone:?}");
}

#[test]
fn bad_arguments_get_errors_that_say_what_to_fix() {
    let s = setup();
    let out = s.dir.path().join("out");
    let base = |pack: &Path, size: &str| -> (bool, String, String) {
        tokentrail(&[
            "evidence",
            "sample",
            path(pack),
            "--size",
            size,
            "--seed",
            "x",
            "--public-key",
            path(&s.key),
            "--out",
            path(&out),
        ])
    };
    let no_panic = |err: &str| assert!(!err.contains("panicked"), "{err}");

    let (ok, _, err) = base(&s.pack, "0");
    assert!(!ok && err.contains("--size 0"), "{err}");
    no_panic(&err);

    let missing = s.dir.path().join("missing.zip");
    let (ok, _, err) = base(&missing, "3");
    assert!(!ok && err.contains("missing.zip") && err.contains("no such pack"), "{err}");
    no_panic(&err);

    // Without a pinned key, as evidence verify.
    let (ok, _, err) =
        tokentrail(&["evidence", "sample", path(&s.pack), "--size", "3", "--seed", "x", "--out", path(&out)]);
    assert!(!ok && err.contains("--public-key"), "{err}");

    // A pack of criteria without event-level populations.
    let to = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let other = s.dir.path().join("cc73.zip");
    let (ok, o, e) = tokentrail(&[
        "evidence",
        "--db",
        path(&s.db),
        "--criteria",
        "CC7.3",
        "--from",
        "2026-11-01T00:00:00Z",
        "--to",
        &to,
        "--out",
        path(&other),
    ]);
    assert!(ok, "{o}{e}");
    let (ok, _, err) = base(&other, "3");
    assert!(!ok && err.contains("no event-level population") && err.contains("CC6.1"), "{err}");
    no_panic(&err);

    // A population the pack does not hold.
    let (ok, _, err) = tokentrail(&[
        "evidence",
        "sample",
        path(&s.pack),
        "--size",
        "3",
        "--seed",
        "x",
        "--population",
        "findings",
        "--public-key",
        path(&s.key),
        "--out",
        path(&out),
    ]);
    assert!(!ok && err.contains("--population findings") && err.contains("key_access_events"), "{err}");

    // A pack that was changed does not verify and is not sampled.
    let mut bytes = std::fs::read(&s.pack).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let changed = s.dir.path().join("changed.zip");
    std::fs::write(&changed, bytes).unwrap();
    let (ok, _, err) = base(&changed, "3");
    assert!(!ok && err.contains("changed.zip"), "{err}");
    no_panic(&err);

    // An output folder that is not empty.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    let (ok, _, err) = base(&s.pack, "3");
    assert!(!ok && err.contains("--out") && err.contains("not empty"), "{err}");
}
