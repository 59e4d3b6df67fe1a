//! Real-world quirks, and every kind of bad input, through the real pipeline.

use crate::common;
use common::TestDb;

const COSMOS: &str = r#"{"time":"2024-07-30T17:08:01.3688943Z","resourceId":"/SUBSCRIPTIONS/S1/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/ACME","category":"DataPlaneRequests","operationName":"Read","properties":{"statusCode":"200","duration":"1.5","requestCharge":"2.000000","requestLength":"10","responseLength":"2048","clientIpAddress":"203.0.113.7","aadPrincipalId":"AAAA0000-0000-0000-0000-00000000000A","authTokenType":"AADToken","requestResourceId":"/dbs/orders/colls/lines/docs"}}"#;

/// A Cosmos record with `time` replaced.
fn cosmos_at(time: &str) -> String {
    COSMOS.replace("2024-07-30T17:08:01.3688943Z", time)
}

#[test]
fn four_time_formats_become_the_same_utc_instant() {
    let db = TestDb::new();
    let lines = [
        cosmos_at("2024-07-30T17:08:01.5000000Z"),
        cosmos_at("2024-07-30T12:08:01.5-05:00"),
        cosmos_at("7/30/2024 5:08:01 PM"),
        cosmos_at("Tue, 30 Jul 2024 17:08:01.500 GMT"),
    ];
    db.ingest(&[db.file("times.ndjson", lines.join("\n"))]);
    let times = db.rows("SELECT time::VARCHAR FROM cosmos_requests ORDER BY time");
    assert_eq!(
        times,
        [
            ["2024-07-30 17:08:01+00"], // the US form has no fraction
            ["2024-07-30 17:08:01.5+00"],
            ["2024-07-30 17:08:01.5+00"],
            ["2024-07-30 17:08:01.5+00"],
        ]
    );
}

#[test]
fn numbers_as_strings_and_as_numbers_are_typed() {
    let db = TestDb::new();
    let numbers = COSMOS
        .replace(r#""statusCode":"200""#, r#""statusCode":429"#)
        .replace(r#""duration":"1.5""#, r#""duration":3"#);
    db.ingest(&[db.file("n.ndjson", format!("{COSMOS}\n{numbers}\n"))]);
    let rows = db.rows(
        "SELECT status_code::VARCHAR, duration_ms::VARCHAR, request_charge::VARCHAR, response_length::VARCHAR, \
         typeof(status_code), typeof(duration_ms), typeof(response_length) FROM cosmos_requests ORDER BY status_code",
    );
    assert_eq!(
        rows,
        [
            ["200", "1.5", "2.0", "2048", "INTEGER", "DOUBLE", "BIGINT"],
            ["429", "3.0", "2.0", "2048", "INTEGER", "DOUBLE", "BIGINT"],
        ]
    );
}

#[test]
fn derived_fields_account_database_collection_and_lowercase_principal() {
    let db = TestDb::new();
    db.ingest(&[db.file("d.json", COSMOS)]);
    let row = db.rows("SELECT account, subscription_id, resource_group, database_name, collection_name, principal_id FROM cosmos_requests");
    // A GUID is lower-cased; "S1" is no GUID and keeps its case.
    assert_eq!(row, [["acme", "S1", "RG", "orders", "lines", "aaaa0000-0000-0000-0000-00000000000a"]]);
}

#[test]
fn pascal_case_keys_and_level_spellings() {
    let db = TestDb::new();
    let pascal = r#"{"Time":"2024-01-01T00:00:00Z","Category":"DataPlaneRequests","OperationName":"Query","ResourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/X","Level":4,"Properties":{"StatusCode":"201","ClientIpAddress":"198.51.100.1"}}"#;
    let level_text = COSMOS.replace(r#""category""#, r#""level":"Informational","category""#);
    let level_string_number = COSMOS.replace(r#""category""#, r#""Level":"2","category""#);
    db.ingest(&[db.file("p.ndjson", [pascal, &level_text, &level_string_number].join("\n"))]);
    let rows = db.rows(
        "SELECT operation, status_code::VARCHAR, client_ip, level FROM cosmos_requests ORDER BY level, operation",
    );
    assert_eq!(
        rows,
        [
            ["Read", "200", "203.0.113.7", "Error"],
            ["Query", "201", "198.51.100.1", "Informational"],
            ["Read", "200", "203.0.113.7", "Informational"],
        ]
    );
}

#[test]
fn null_spellings_empty_ids_and_missing_ips_are_null() {
    let db = TestDb::new();
    let key_auth = COSMOS
        .replace(r#""aadPrincipalId":"AAAA0000-0000-0000-0000-00000000000A""#, r#""aadPrincipalId":"""#)
        .replace(r#""clientIpAddress":"203.0.113.7""#, r#""clientIpAddress":"&lt;null&gt;""#)
        .replace(r#""authTokenType":"AADToken""#, r#""authTokenType":"PrimaryMasterKey""#);
    let signin = r#"{"time":"2024-01-01T00:00:00Z","category":"ManagedIdentitySignInLogs","callerIpAddress":"&lt;null&gt;","properties":{"id":"s1","userId":null,"servicePrincipalId":"MI-1","ipAddress":"","appId":""}}"#;
    db.ingest(&[db.file("nulls.ndjson", format!("{key_auth}\n{signin}\n"))]);
    assert_eq!(
        db.rows("SELECT principal_id, client_ip, auth_token_type FROM cosmos_requests"),
        [["NULL", "NULL", "PrimaryMasterKey"]]
    );
    assert_eq!(
        db.rows("SELECT principal_id, ip_address, app_id, kind FROM signins"),
        [["MI-1", "NULL", "NULL", "managed_identity"]]
    );
}

#[test]
fn envelopes_arrays_and_bare_records_in_one_ndjson_file() {
    let db = TestDb::new();
    let envelope = format!(r#"{{"records":[{COSMOS},{COSMOS}]}}"#);
    let array = format!("[{COSMOS},{COSMOS},{COSMOS}]");
    db.ingest(&[db.file("mixed.ndjson", format!("{envelope}\n{array}\r\n\n{COSMOS}\n"))]);
    assert_eq!(db.count("cosmos_requests"), 6);
    assert_eq!(db.count("quarantine"), 0);
}

#[test]
fn pretty_printed_document_is_read_whole() {
    let db = TestDb::new();
    let value: serde_json::Value = serde_json::from_str(&format!(r#"{{"records":[{COSMOS},{COSMOS}]}}"#)).unwrap();
    db.ingest(&[db.file("pretty.json", serde_json::to_string_pretty(&value).unwrap())]);
    assert_eq!(db.count("cosmos_requests"), 2);
    assert_eq!(db.count("quarantine"), 0);
}

#[test]
fn gzip_files_and_storage_archive_layout() {
    use std::io::Write;
    let db = TestDb::new();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(format!("{COSMOS}\n{COSMOS}\n").as_bytes()).unwrap();
    db.file("in/a.ndjson.gz", gz.finish().unwrap());
    let archive = "in/insights-logs-dataplanerequests/resourceId=/SUBSCRIPTIONS/S1/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/ACME/y=2024/m=07/d=30/h=17/m=00/PT1H.json";
    db.file(archive, format!("{COSMOS}\n"));
    db.file("in/notes.txt", "not a log file");
    let report = db.ingest(&[db.dir.path().join("in")]);
    assert_eq!(report.files, 2, "the .txt file is not picked from a directory");
    assert_eq!(db.count("cosmos_requests"), 3);
}

#[test]
fn other_categories_are_kept_whole_in_raw_events() {
    let db = TestDb::new();
    let query_stats = r#"{"time":"2024-07-30T17:08:01Z","category":"QueryRuntimeStatistics","properties":{"activityId":"a1","querytext":"SELECT * FROM c"}}"#;
    // AuditLogs put an object where sign-ins have a string: still not quarantined.
    let audit =
        r#"{"time":"2024-07-30T17:09:01Z","Category":"AuditLogs","properties":{"id":{"odd":"shape"},"status":"ok"}}"#;
    let no_time = r#"{"category":"ControlPlaneRequests","properties":{}}"#;
    db.ingest(&[db.file("other.ndjson", [query_stats, audit, no_time].join("\n"))]);
    assert_eq!(
        db.rows("SELECT category, time::VARCHAR, line::VARCHAR, record->>'$.properties.activityId' FROM raw_events ORDER BY line"),
        [
            ["QueryRuntimeStatistics", "2024-07-30 17:08:01+00", "1", "a1"],
            ["AuditLogs", "2024-07-30 17:09:01+00", "2", "NULL"],
            ["ControlPlaneRequests", "NULL", "3", "NULL"],
        ]
    );
    let record: String = db.value("SELECT record::VARCHAR FROM raw_events WHERE line = 2");
    assert_eq!(record, audit, "kept byte for byte");
    assert_eq!(db.count("quarantine"), 0);
}

/// Each bad line, the reason it must be quarantined with.
#[test]
fn bad_input_is_quarantined_with_bytes_reason_and_line() {
    let db = TestDb::new();
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"{'time':'2024-01-01T00:00:00Z','category':'DataPlaneRequests'}".to_vec(), "invalid JSON"),
        (
            br#"{"category":"DataPlaneRequests","properties":{"statusCode":[ 218 B blob data ]}}"#.to_vec(),
            "invalid JSON",
        ),
        (COSMOS.replace(r#""statusCode":"200""#, r#""statusCode":"OK""#).into(), "wrong type: properties: statusCode"),
        (COSMOS.replace(r#""responseLength":"2048""#, r#""responseLength":{"bytes":1}"#).into(), "responseLength"),
        (cosmos_at("last tuesday").into(), "time: unrecognised timestamp \"last tuesday\""),
        (COSMOS.replace(r#""time":"2024-07-30T17:08:01.3688943Z","#, "").into(), "record has no time"),
        (br#"{"time":"2024-01-01T00:00:00Z","properties":{}}"#.to_vec(), "record has no category"),
        (b"not json at all".to_vec(), "invalid JSON"),
        (
            b"{\"category\":\"SignInLogs\",\"time\":\"2024-01-01T00:00:00Z\",\"properties\":{\"userId\":\"\xff\xfe\"}}"
                .to_vec(),
            "invalid JSON",
        ),
        // A raw newline inside a string splits the record over two lines; both halves are kept.
        (br#"{"category":"DataPlaneRequests","operationName":"Re"#.to_vec(), "invalid JSON"),
        (br#"ad"}"#.to_vec(), "invalid JSON"),
    ];
    let mut content = format!("{COSMOS}\n").into_bytes();
    for (line, _) in &bad {
        content.extend_from_slice(line);
        content.push(b'\n');
    }
    content.extend_from_slice(COSMOS.as_bytes());
    let path = db.file("bad.ndjson", &content);
    let report = db.ingest(std::slice::from_ref(&path));
    assert!(report.failed.is_empty());
    assert_eq!(report.counts.cosmos, 2, "the good records around the bad ones are stored");
    assert_eq!(report.counts.quarantined, bad.len() as u64);
    let rows = db.rows("SELECT line::VARCHAR, reason, source FROM quarantine ORDER BY line");
    let conn = db.store.connection().unwrap();
    for (i, (row, (bytes, expected))) in rows.iter().zip(&bad).enumerate() {
        assert_eq!(row[0], (i + 2).to_string());
        assert!(row[1].contains(expected), "line {}: {:?} should mention {expected:?}", row[0], row[1]);
        assert_eq!(row[2], path.display().to_string());
        // The bytes are kept exactly, invalid UTF-8 included.
        let raw: Vec<u8> =
            conn.query_row("SELECT raw FROM quarantine WHERE line = ?", [i as i64 + 2], |r| r.get(0)).unwrap();
        assert_eq!(&raw, bytes);
    }
    let categories = db.rows("SELECT line::VARCHAR, category FROM quarantine WHERE category IS NOT NULL ORDER BY line");
    assert_eq!(
        categories,
        [
            ["4", "DataPlaneRequests"],
            ["5", "DataPlaneRequests"],
            ["6", "DataPlaneRequests"],
            ["7", "DataPlaneRequests"]
        ]
    );
}

#[test]
fn an_endless_line_is_cut_off_without_buffering_it_whole() {
    let db = TestDb::new();
    // 40 MiB without a newline: the reader stops buffering at 16 MiB.
    let endless = "y".repeat(40 << 20);
    db.ingest(&[db.file("endless.ndjson", format!("{COSMOS}\n{endless}"))]);
    assert_eq!(db.count("cosmos_requests"), 1);
    let row = db.rows("SELECT line::VARCHAR, raw_size::VARCHAR, truncated::VARCHAR, reason FROM quarantine");
    assert_eq!(row[0][..3], ["2", &(40usize << 20).to_string(), "true"]);
    assert!(row[0][3].contains("over the 16 MiB limit"), "{}", row[0][3]);
}

#[test]
fn an_over_long_line_is_quarantined_truncated_and_the_rest_goes_on() {
    let db = TestDb::new();
    let huge = format!("{{\"category\":\"DataPlaneRequests\",\"pad\":\"{}\"}}", "x".repeat(17 << 20));
    let path = db.file("huge.ndjson", format!("{COSMOS}\n{huge}\n{COSMOS}\n"));
    db.ingest(&[path]);
    assert_eq!(db.count("cosmos_requests"), 2);
    let row = db.rows("SELECT line::VARCHAR, raw_size::VARCHAR, truncated::VARCHAR, octet_length(raw)::VARCHAR, reason FROM quarantine");
    assert_eq!(row.len(), 1);
    assert_eq!(row[0][..4], ["2", &huge.len().to_string(), "true", &(1 << 20).to_string()]);
    assert!(row[0][4].contains("over the 16 MiB limit"), "{}", row[0][4]);
    let kept: Vec<u8> =
        db.store.connection().unwrap().query_row("SELECT raw FROM quarantine", [], |r| r.get(0)).unwrap();
    assert_eq!(kept, huge.as_bytes()[..1 << 20]);
    let lines = db.rows("SELECT line::VARCHAR, complete::VARCHAR FROM checkpoints");
    assert_eq!(lines, [["3", "true"]]);
}

#[test]
fn a_document_that_breaks_off_keeps_its_rest_in_quarantine() {
    let db = TestDb::new();
    let value: serde_json::Value = serde_json::from_str(&format!(r#"{{"records":[{COSMOS}]}}"#)).unwrap();
    let pretty = serde_json::to_string_pretty(&value).unwrap();
    let lines = pretty.lines().count() as i64;
    let broken = format!("{pretty}\n{{\n  \"records\": [ 218 B blob data ]\n}}\n");
    db.ingest(&[db.file("broken.json", &broken)]);
    assert_eq!(db.count("cosmos_requests"), 1);
    let row = db.rows("SELECT line::VARCHAR, reason, raw::VARCHAR FROM quarantine");
    assert_eq!(row.len(), 1);
    assert_eq!(row[0][0], (lines + 1).to_string(), "the line where the bad value starts");
    assert!(row[0][1].starts_with("invalid JSON"), "{}", row[0][1]);
    assert!(row[0][2].contains("218 B blob data"), "{}", row[0][2]);
}
