//! Exactly once: re-ingest adds nothing, appends resume, in-place edits are refused,
//! and a crash between commits neither loses nor repeats a record.

use crate::common;
use common::TestDb;
use tokentrail::ingest::{PipelineOptions, run};
use tokentrail::source::file::{FileChunks, Plan, source_id};

fn record(n: usize) -> String {
    format!(
        r#"{{"time":"2024-07-30T17:08:01Z","category":"DataPlaneRequests","operationName":"Read","properties":{{"activityId":"a{n}","statusCode":"200"}}}}"#
    )
}

fn lines(range: std::ops::Range<usize>) -> String {
    range.map(|n| record(n) + "\n").collect()
}

#[test]
fn ingesting_the_same_file_twice_adds_nothing() {
    let db = TestDb::new();
    let path = db.file("once.ndjson", lines(0..100) + "garbage\n");
    let first = db.ingest(std::slice::from_ref(&path));
    assert_eq!((first.counts.cosmos, first.counts.quarantined), (100, 1));
    let second = db.ingest(std::slice::from_ref(&path));
    assert_eq!(second.counts.total(), 0);
    assert_eq!(second.unchanged, [path.display().to_string()]);
    assert_eq!((db.count("cosmos_requests"), db.count("quarantine")), (100, 1));
}

#[test]
fn an_appended_file_resumes_after_what_was_stored() {
    let db = TestDb::new();
    let path = db.file("grow.ndjson", lines(0..10));
    db.ingest(std::slice::from_ref(&path));
    std::fs::write(&path, lines(0..10) + &lines(10..15) + "oops\n").unwrap();
    let report = db.ingest(std::slice::from_ref(&path));
    assert_eq!((report.counts.cosmos, report.counts.quarantined), (5, 1));
    assert_eq!(db.count("cosmos_requests"), 15);
    let distinct: i64 = db.value("SELECT count(DISTINCT activity_id) FROM cosmos_requests");
    assert_eq!(distinct, 15);
    let line: i64 = db.value("SELECT line FROM quarantine");
    assert_eq!(line, 16, "line numbers continue across the resume");
}

#[test]
fn a_file_without_a_final_newline_that_grows_keeps_its_last_line_once() {
    let db = TestDb::new();
    let path = db.file("tail.ndjson", lines(0..3).trim_end());
    db.ingest(std::slice::from_ref(&path));
    std::fs::write(&path, lines(0..3) + &lines(3..4)).unwrap();
    // The last line was read whole at EOF; the bytes added after it are a new line.
    db.ingest(std::slice::from_ref(&path));
    let ids = db.rows("SELECT activity_id FROM cosmos_requests ORDER BY activity_id");
    assert_eq!(ids, [["a0"], ["a1"], ["a2"], ["a3"]]);
}

#[test]
fn a_file_changed_in_place_is_refused_not_ingested_twice() {
    let db = TestDb::new();
    let path = db.file("edit.ndjson", lines(0..10));
    db.ingest(std::slice::from_ref(&path));
    std::fs::write(&path, lines(0..10).replace("a3", "b3")).unwrap();
    let report = db.ingest(std::slice::from_ref(&path));
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].1.contains("changed in place"), "{}", report.failed[0].1);
    assert_eq!(db.count("cosmos_requests"), 10);
}

/// A crash after some commits: the chunks after the failure are never stored, the
/// checkpoint stands at the last commit, and the next run stores exactly the rest.
#[test]
fn a_failure_mid_file_resumes_from_the_last_commit() {
    let db = TestDb::new();
    // Long records so the file spans several 4 MiB chunks.
    let pad = "p".repeat(900);
    let content: String =
        (0..20_000).map(|n| record(n).replace("\"Read\"", &format!("\"Read\",\"pad\":\"{pad}\"")) + "\n").collect();
    let path = db.file("big.ndjson", &content);
    let id = source_id(&path).unwrap();
    let mut writer = db.store.writer().unwrap();
    let options = PipelineOptions { workers: 2, commit_rows: 1, ..PipelineOptions::default() };
    {
        let Plan::Read(chunks) = FileChunks::open(&path, None, indicatif::ProgressBar::hidden()).unwrap() else {
            panic!("new file")
        };
        let mut taken = 0;
        let failing = chunks.map_while(|c| {
            taken += 1;
            (taken <= 2).then_some(c)
        });
        let counts =
            run(&mut writer, failing.chain(std::iter::once(Err(anyhow::anyhow!("power cut")))), options, |_, _| {});
        assert_eq!(counts.unwrap_err().to_string(), "power cut");
    }
    let stored = db.count("cosmos_requests");
    assert!(stored > 0 && stored < 20_000, "partly stored: {stored}");
    let checkpoint = db.store.checkpoint(&id).unwrap().unwrap();
    assert_eq!(checkpoint.line, Some(stored), "the checkpoint vouches for exactly the stored lines");
    assert!(!checkpoint.complete);
    let report = db.ingest_with(&mut writer, &[path]);
    assert_eq!(report.counts.cosmos as i64, 20_000 - stored);
    let (rows, distinct): (i64, i64) = {
        let conn = db.store.connection().unwrap();
        conn.query_row("SELECT count(*), count(DISTINCT activity_id) FROM cosmos_requests", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    assert_eq!((rows, distinct), (20_000, 20_000));
}

/// The generator source stopped mid-stream and restarted from its checkpoint stores
/// exactly the events the generator defines for the whole window.
#[test]
fn generated_source_resumes_to_exactly_the_events_of_the_window() {
    use chrono::{TimeDelta, TimeZone, Utc};
    use tokentrail::source::generated::GeneratedSource;
    let db = TestDb::new();
    let source = GeneratedSource::new(5, 1.0);
    let start = Utc.with_ymd_and_hms(2026, 3, 2, 7, 13, 0).unwrap();
    let end = start + TimeDelta::hours(30);
    let windows: Vec<_> = (0..30).map(|h| (start + TimeDelta::hours(h), start + TimeDelta::hours(h + 1))).collect();
    let options = PipelineOptions { workers: 2, commit_rows: 2_000, ..PipelineOptions::default() };
    let mut writer = db.store.writer().unwrap();
    // First run: stops after 11 windows (whatever was not committed is lost with it).
    let first = windows[..11].iter().map(|(a, b)| Ok(source.chunk(*a, *b, false).0));
    run(&mut writer, first, options.clone(), |_, _| {}).unwrap();
    let resume = db.store.checkpoint(&source.source_id).unwrap().unwrap().event_time.unwrap();
    let resume = chrono::DateTime::from_timestamp_micros(resume).unwrap();
    assert!(resume > start && resume <= windows[10].1);
    // Second run: from the checkpoint, in windows of another size (10 minutes).
    let mut at = resume;
    let rest = std::iter::from_fn(|| {
        (at < end).then(|| {
            let to = (at + TimeDelta::minutes(10)).min(end);
            let chunk = source.chunk(at, to, to == end).0;
            at = to;
            Ok(chunk)
        })
    });
    run(&mut writer, rest, options, |_, _| {}).unwrap();
    let (events, _) = source.events_between(start, end);
    let cosmos = events.iter().filter(|e| e.category == "DataPlaneRequests").count() as i64;
    assert!(cosmos > 100, "the window has traffic: {cosmos}");
    const SIGNINS: [&str; 4] =
        ["SignInLogs", "NonInteractiveUserSignInLogs", "ServicePrincipalSignInLogs", "ManagedIdentitySignInLogs"];
    let signins = events.iter().filter(|e| SIGNINS.contains(&e.category)).count() as i64;
    assert_eq!(db.count("cosmos_requests"), cosmos);
    assert_eq!(db.count("signins"), signins);
    assert_eq!(
        db.count("raw_events"),
        events.len() as i64 - cosmos - signins,
        "Activity log, AuditLogs and Cosmos DB query records are kept whole"
    );
    assert_eq!(db.count("quarantine"), 0);
}
