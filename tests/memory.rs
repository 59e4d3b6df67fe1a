//! TokenTrail's own heap over repeated work: live ingest's commits and detection passes
//! leave it where it was. The counter is process-wide, so these tests run one at a time
//! ([`ALONE`]) in a binary of their own: other tests beside them would move the count.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::TestDb;
use tokentrail::ingest::PipelineOptions;
use tokentrail::rules::{DetectionConfig, Detector};
use tokentrail::source::generated::GeneratedSource;

/// Held by each test for its whole run.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heap() -> i64 {
    RUST_HEAP.load(std::sync::atomic::Ordering::Relaxed)
}
use tokentrail::synth::{Event, Generator, Scenario, Tenant};

/// Counts the bytes this test binary's Rust code holds, so a test can tell TokenTrail's
/// allocations from DuckDB's (which go to the C allocator directly).
struct Counting;

static RUST_HEAP: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only counted.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        RUST_HEAP.fetch_add(layout.size() as i64, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        RUST_HEAP.fetch_sub(layout.size() as i64, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        RUST_HEAP.fetch_add(new_size as i64 - layout.size() as i64, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn detection_passes_over_a_fixed_database_do_not_grow_memory() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let (db, detector) = three_days();
    detector.evaluate_after_commit(&db.store).unwrap();
    let mut rust = Vec::new();
    for _ in 0..24 {
        // A full pass: every rule over all history, evidence compared and kept.
        detector.evaluate_period(&db.store, None, None).unwrap();
        rust.push(heap());
    }
    // TokenTrail's own allocations are the same after every pass once warm. (DuckDB's own
    // grow until its eviction queues reach the size at which it purges them: bounded, see
    // BENCHMARKS.md, "Memory over time".)
    let warm = rust[4];
    let spread = rust[4..].iter().map(|r| (r - warm).abs()).max().unwrap_or(0);
    assert!(spread < 64 * 1024, "TokenTrail's heap moved by {spread} bytes from pass to pass: {rust:?}");
}

/// A database of three days of every scenario's traffic, and its detector.
fn three_days() -> (TestDb, Detector) {
    let db = TestDb::new();
    let generator = Generator::new(Tenant::new(3), 3);
    let path = {
        let monday = DateTime::parse_from_rfc3339("2025-03-03T00:00:00Z").unwrap().with_timezone(&Utc);
        let (events, _) = generator.history(monday, monday + Duration::days(3), Scenario::all());
        write_events(&db, &events)
    };
    db.ingest(&[path]);
    let (detector, problems) = Detector::open(&db.store, &DetectionConfig::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    (db, detector)
}

fn write_events(db: &TestDb, events: &[Event]) -> std::path::PathBuf {
    let path = db.dir.path().join("history.ndjson");
    common::write_ndjson(&path, events);
    path
}

#[test]
fn live_commits_do_not_grow_memory() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let db = TestDb::new();
    let source = GeneratedSource::new(5, 1.0);
    let start = DateTime::parse_from_rfc3339("2025-03-03T09:00:00Z").unwrap().with_timezone(&Utc);
    let mut writer = db.store.writer().unwrap();
    // As the live demo commits: a few seconds of traffic each, one commit per window; in
    // rounds, the heap measured once each round's pipeline has drained (what is in flight
    // at a commit depends on how busy the machine is, not on what the commits keep).
    let (rounds, windows) = (6, 60);
    let mut after = Vec::new();
    let mut commits = 0;
    for round in 0..rounds {
        let chunks = (0..windows).map(|i| {
            let from = start + Duration::seconds(10 * (round * windows + i));
            Ok(source.chunk(from, from + Duration::seconds(10), true).0)
        });
        tokentrail::ingest::run(&mut writer, chunks, PipelineOptions::default(), |_, _| commits += 1).unwrap();
        after.push(heap());
    }
    assert!(commits >= rounds * windows / 2, "{commits} commits for {} windows", rounds * windows);
    // Warm after the first round; from there each round leaves the heap where it was (each
    // commit leaked its Arrow schema export, tens of KB, before it was fixed: megabytes here).
    eprintln!("heap after each round of {windows} windows: {after:?}");
    let warm = after[1];
    let grown = after[2..].iter().map(|h| h - warm).max().unwrap_or(0);
    assert!(grown < 256 * 1024, "TokenTrail's heap grew by {grown} bytes over {commits} commits: {after:?}");
}

/// DuckDB's heap (the C allocator's bytes in use, less this binary's Rust heap, which the
/// counting allocator also puts there).
fn duckdb_heap() -> i64 {
    let (in_use, _) = tokentrail::sys::malloc_bytes().expect("glibc's mallinfo2");
    in_use as i64 - heap()
}

#[test]
fn purging_idle_blocks_holds_duckdbs_heap_flat_over_detection_passes() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let (db, detector) = three_days();
    for _ in 0..4 {
        detector.evaluate_period(&db.store, None, None).unwrap();
    }
    let passes = 30;
    let run = |purge: bool| {
        let mut after = Vec::new();
        for _ in 0..passes {
            detector.evaluate_period(&db.store, None, None).unwrap();
            if purge {
                // What a live pass does as it ends (and the memory sampler every 10 s).
                assert!(db.store.unload_unpinned_blocks().is_some());
            }
            after.push(duckdb_heap());
        }
        after
    };
    let kept = run(false);
    let purged = run(true);
    let growth = |after: &[i64]| after[after.len() - 1] - after[2];
    eprintln!("DuckDB's heap after each pass, entries kept: {kept:?}\nafter each pass, idle blocks purged: {purged:?}");
    // Without the purge DuckDB keeps the bookkeeping of every buffer a pass freed (until a
    // queue holds 32,768 entries); with it, the heap is where it was from pass to pass.
    assert!(growth(&kept) > 1 << 20, "the passes no longer leave DuckDB's bookkeeping behind: {kept:?}");
    let spread = purged[2..].iter().map(|h| (h - purged[2]).abs()).max().unwrap_or(0);
    assert!(
        spread < 512 * 1024,
        "DuckDB's heap moved by {spread} bytes over {passes} passes with the purge: {purged:?}"
    );
}
