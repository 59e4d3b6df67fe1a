//! The real binary killed and restarted: nothing lost, nothing twice; and the demo
//! serving HTTP, stopping cleanly on Ctrl-C and resuming.

use crate::common;
use common::demo::{Demo, bin, http_get, http_post};
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokentrail::store::{Store, StoreOptions};

#[test]
fn ingest_killed_at_random_points_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.ndjson");
    let records = 150_000;
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    tokentrail::synth::write_cosmos_ndjson(&mut file, records, 7).unwrap();
    file.flush().unwrap();
    drop(file);
    let db = dir.path().join("k.duckdb");
    // Small commits, so kills land between commits as well as inside them.
    let args = ["ingest", "--commit-rows", "10000", "--db", db.to_str().unwrap(), input.to_str().unwrap()];
    // Kill at growing delays until a run gets to the end on its own.
    let mut killed_mid_file = 0;
    let mut resumed_positions = std::collections::BTreeSet::new();
    for delay_ms in [40u64, 90, 140, 200, 260, 330, 410, 500, 600, 720] {
        let mut child = bin().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let store = Store::open(&db, &StoreOptions::default()).unwrap();
        let id = tokentrail::source::file::source_id(&input).unwrap();
        let checkpoint = store.checkpoint(&id).unwrap();
        if !checkpoint.as_ref().is_some_and(|c| c.complete) {
            killed_mid_file += 1;
        }
        if let Some(line) = checkpoint.filter(|c| !c.complete).and_then(|c| c.line) {
            resumed_positions.insert(line);
        }
    }
    assert!(killed_mid_file >= 3, "only {killed_mid_file} kills landed mid-file; the test proved too little");
    assert!(
        resumed_positions.len() >= 2,
        "kills should leave the file part-committed at different lines: {resumed_positions:?}"
    );
    let out = bin().args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(requests_and_distinct_ids(&db), (records as i64, records as i64));
    let store = Store::open(&db, &StoreOptions::default()).unwrap();
    let lines: i64 = store.connection().unwrap().query_row("SELECT line FROM checkpoints", [], |r| r.get(0)).unwrap();
    assert_eq!(lines, records as i64);
}

/// Cosmos DB requests stored, and how many distinct activity ids they have.
fn requests_and_distinct_ids(db: &std::path::Path) -> (i64, i64) {
    let store = Store::open(db, &StoreOptions::default()).unwrap();
    let conn = store.connection().unwrap();
    conn.query_row("SELECT count(*), count(DISTINCT activity_id) FROM cosmos_requests", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .unwrap()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn demo_serves_streams_stops_cleanly_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/demo.duckdb");
    let demo = Demo::start(&db);
    assert_eq!(http_get(&demo.address, "/healthz", None), Some((200, "ok".into())));
    let (code, body) = http_get(&demo.address, "/api/status", None).unwrap();
    assert_eq!(code, 401, "no token, no status: {body}");
    wait_for("backfill and a live tick", || demo.generated_until().is_some());
    let first_position = demo.generated_until().unwrap();
    wait_for("a live tick", || demo.generated_until().is_some_and(|p| p > first_position));
    let page = http_get(&demo.address, "/", Some(&demo.token)).unwrap();
    assert!(page.0 == 200 && page.1.contains("demo: generated data"), "the UI shell: {page:?}");
    assert!(demo.status()["tables"].to_string().contains("cosmos_requests"));
    assert!(demo.interrupt().success(), "Ctrl-C is a clean exit");

    let stopped_at = {
        let store = Store::open(&db, &StoreOptions::default()).unwrap();
        let conn = store.connection().unwrap();
        let rows: i64 = conn.query_row("SELECT count(*) FROM cosmos_requests", [], |r| r.get(0)).unwrap();
        assert!(rows > 1000, "a day of history was backfilled: {rows}");
        conn.query_row("SELECT event_time::VARCHAR FROM checkpoints WHERE kind = 'generator'", [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap()
    };
    let demo = Demo::start(&db);
    wait_for("the restarted demo to move on", || demo.generated_until().is_some_and(|p| p > stopped_at));
    assert!(demo.interrupt().success());
    let (rows, distinct) = requests_and_distinct_ids(&db);
    assert_eq!(rows, distinct, "no request stored twice across the restart");
    let store = Store::open(&db, &StoreOptions::default()).unwrap();
    let sources: i64 =
        store.connection().unwrap().query_row("SELECT count(*) FROM checkpoints", [], |r| r.get(0)).unwrap();
    assert_eq!(sources, 1);
}

#[test]
fn demo_stops_with_an_error_when_its_ingest_cannot_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("future.duckdb");
    {
        // A generator position a day in the future: the demo must refuse, not serve.
        let store = Store::open(&db, &StoreOptions::default()).unwrap();
        let mut writer = store.writer().unwrap();
        let source = tokentrail::source::generated::GeneratedSource::new(42, 1.0);
        let mut checkpoint =
            tokentrail::store::Checkpoint::new(source.source_id.clone(), tokentrail::store::SourceKind::Generator);
        checkpoint.event_time = Some((chrono::Utc::now() + chrono::TimeDelta::days(1)).timestamp_micros());
        writer.commit(Default::default(), &[checkpoint]).unwrap();
    }
    let out = bin()
        .args(["demo", "--db", db.to_str().unwrap(), "--port", "0"])
        .env("TOKENTRAIL_LOG", "error")
        .output()
        .expect("demo runs and exits");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in the future") && stderr.contains("stopping: ingest ended"), "{stderr}");
}

/// Queries that would make values, lists or results bigger than the process can hold.
const MEMORY_BOMBS: &[&str] = &[
    "SELECT repeat('x', 300000000)",
    "SELECT length(repeat(repeat('x', 1000), 1000))",
    "SELECT lpad('x', 1000000000, 'y')",
    "SELECT printf('%1000000000d', 1)",
    "SELECT len(range(1000000000))",
    "SELECT length(string_agg(user_agent, '')) FROM cosmos_requests, range(1000)",
    "SELECT len(list(range)) FROM range(100000000)",
    "SELECT array_agg(a.range) FROM range(100000000) a",
    "SELECT max(user_agent, 1000000) FROM cosmos_requests",
    "WITH RECURSIVE r(s, n) AS (SELECT 'x', 0 UNION ALL SELECT s || s, n + 1 FROM r WHERE n < 40) SELECT max(length(s)) FROM r",
    "SELECT count(*) FROM range(100000) a, range(100000) b WHERE a.range + b.range = -1",
    "SELECT a.range, b.range FROM range(3000000) a, range(1000) b ORDER BY random() LIMIT 5",
    "SELECT md5(user_agent || a.range::VARCHAR), * FROM cosmos_requests, range(1000) a",
    "SELECT * FROM raw_events, range(1000)",
];

/// The peak resident memory of a process since [`reset_peak`] (Linux).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line[6..].trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
}

fn reset_peak(pid: u32) {
    // Writing 5 to clear_refs resets VmHWM to the current resident size.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

#[test]
fn memory_bombs_in_the_console_stay_under_the_ceiling_and_the_demo_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bombs.duckdb");
    let demo = Demo::start(&db);
    wait_for("the backfill", || demo.generated_until().is_some());
    let pid = demo.child.id();
    reset_peak(pid);
    let limit = tokentrail::store::parse_size(tokentrail::config::DEFAULT_DB_MEMORY_LIMIT).unwrap();
    let ceiling = limit + 256 * 1024 * 1024;
    for sql in MEMORY_BOMBS {
        let answer = http_post(&demo.address, "/api/sql", &demo.token, &serde_json::json!({"sql": sql}));
        let (status, body) = answer.unwrap_or_else(|| panic!("{sql}: the demo did not answer (did it die?)"));
        assert!([200, 400, 504].contains(&status), "{sql}: {status} {body}");
        let peak = peak_rss(pid);
        println!("{status} peak {} MiB: {sql}", peak >> 20);
        assert!(peak <= ceiling, "{sql}: resident memory reached {} MiB (ceiling {} MiB)", peak >> 20, ceiling >> 20);
        // Alive and serving: right after a bomb, on two cores shared with the other tests,
        // an answer has once taken over the 10 s one read waits.
        let deadline = Instant::now() + Duration::from_secs(40);
        let health = loop {
            let health = http_get(&demo.address, "/healthz", None).map(|r| r.0);
            if health.is_some() || Instant::now() >= deadline {
                break health;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        assert_eq!(health, Some(200), "{sql}: the demo still serves");
    }
    // The database and its neighbours are the user's alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [db.clone(), tokentrail::auth::dev_key_path(&db)] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}: {mode:o}", file.display());
        }
    }
    assert!(demo.interrupt().success());
}
