//! Ingest benchmark: `tokentrail ingest` against DuckDB's own `read_json` on the
//! same generated file, into the same typed table, both on 2 threads, measured
//! in the same run. Writes its section of BENCHMARKS.md.
//!
//! `cargo bench --bench ingest` (TOKENTRAIL_BENCH_RECORDS to change the 1,000,000).

mod common;

// As in the binary, so that parsing alone is measured with the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use tokentrail::store::{Store, StoreOptions};

use common::THREADS;
const ROUNDS: usize = 3;

fn run_read_json(db: &Path, input: &Path) -> Duration {
    let store = Store::open(db, &StoreOptions { threads: Some(THREADS), ..StoreOptions::default() }).unwrap();
    let conn = store.connection().unwrap();
    let started = Instant::now();
    conn.execute(include_str!("read_json_baseline.sql"), [input.to_str().unwrap()]).expect("read_json baseline");
    conn.execute_batch("CHECKPOINT").unwrap();
    started.elapsed()
}

fn table_digest(db: &Path) -> (i64, i64, f64) {
    let store = Store::open(db, &StoreOptions { read_only: true, ..StoreOptions::default() }).unwrap();
    let conn = store.connection().unwrap();
    conn.query_row("SELECT count(*), sum(response_length), sum(request_charge) FROM cosmos_requests", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .unwrap()
}

/// Microseconds a record for one parser thread to turn the first `n` lines of
/// `input` into Arrow batches, with the lenient reader only and with the fast path.
fn parse_only(input: &Path, n: usize) -> (f64, f64) {
    use std::io::BufRead;
    use tokentrail::record::{Origin, Readers, parse_unit_with};
    use tokentrail::store::rows::{Rows, TableBatches};
    let file = std::io::BufReader::new(std::fs::File::open(input).unwrap());
    let lines: Vec<Vec<u8>> = file.split(b'\n').take(n).map(Result::unwrap).collect();
    let origin = Origin { source: "bench".into(), ..Origin::default() };
    let time = |readers: Readers| {
        let started = Instant::now();
        for chunk in lines.chunks(3_700) {
            let mut rows = Rows::new(0);
            for line in chunk {
                parse_unit_with(readers, line, &origin, &mut rows);
            }
            TableBatches::default().take_from(&mut rows);
        }
        started.elapsed().as_secs_f64() * 1e6 / lines.len() as f64
    };
    let rounds = || [time(Readers::LenientOnly), time(Readers::FastThenLenient)];
    let (first, second) = (rounds(), rounds());
    (first[0].min(second[0]), first[1].min(second[1]))
}

fn main() {
    let records: usize =
        std::env::var("TOKENTRAIL_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cosmos.ndjson");
    let started = Instant::now();
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let bytes = tokentrail::generate::write_cosmos_ndjson(&mut file, records, 1).unwrap();
    file.flush().unwrap();
    drop(file);
    println!("generated {records} records, {:.2} GB, in {:.1} s", bytes as f64 / 1e9, started.elapsed().as_secs_f64());

    // (a) the CLI's default (2 parser threads, 2 DuckDB threads), (a') with 1 DuckDB
    // thread, (b) read_json with 2 DuckDB threads; alternated, fresh files each time.
    let mut ours = Vec::new();
    let mut ours_1 = Vec::new();
    let mut baseline = Vec::new();
    let mut rss = Vec::new();
    for round in 0..ROUNDS {
        let db = |name: &str| dir.path().join(format!("{name}{round}.duckdb"));
        let (a, kib) = common::run_ingest(&db("a"), &input, None);
        let (a1, kib1) = common::run_ingest(&db("c"), &input, Some(1));
        let b = run_read_json(&db("b"), &input);
        let digests = [table_digest(&db("a")), table_digest(&db("c")), table_digest(&db("b"))];
        assert_eq!(digests[0].0, records as i64, "tokentrail stored every record");
        for d in &digests[1..] {
            assert_eq!((digests[0].0, digests[0].1), (d.0, d.1), "every path stored the same data");
        }
        println!(
            "round {round}: tokentrail ingest {:.2} s (peak RSS {} MiB); with 1 DuckDB thread {:.2} s (peak RSS {} MiB); read_json {:.2} s",
            a.as_secs_f64(),
            kib / 1024,
            a1.as_secs_f64(),
            kib1 / 1024,
            b.as_secs_f64(),
        );
        ours.push(a.as_secs_f64());
        ours_1.push(a1.as_secs_f64());
        baseline.push(b.as_secs_f64());
        rss.push((kib, kib1));
        for name in ["a", "b", "c"] {
            let _ = std::fs::remove_file(db(name));
            let _ = std::fs::remove_file(db(name).with_extension("duckdb.wal"));
        }
    }
    // After the rounds: the child processes would otherwise count this process's
    // memory in their peak RSS (it is theirs between fork and exec).
    let (lenient_us, fast_us) = parse_only(&input, 200_000);
    println!("parsing alone, one thread: lenient reader {lenient_us:.2} µs a record, fast path {fast_us:.2} µs");
    let (a, a1, b) = (common::median(ours), common::median(ours_1), common::median(baseline));
    let rate = |seconds: f64| records as f64 / seconds;
    let peak = rss.iter().map(|r| r.0).max().unwrap_or(0) / 1024;
    let peak_1 = rss.iter().map(|r| r.1).max().unwrap_or(0) / 1024;
    println!(
        "median: tokentrail {:.0} rec/s ({:.2}x), with 1 DuckDB thread {:.0} rec/s ({:.2}x), read_json {:.0} rec/s; target >= 1.00x; peak RSS {peak} MiB, {peak_1} MiB with 1 DuckDB thread (target < 1024)",
        rate(a),
        b / a,
        rate(a1),
        b / a1,
        rate(b)
    );

    let section = format!(
        "<!-- bench:ingest -->\n## File ingest vs DuckDB `read_json`\n\n\
         `cargo bench --bench ingest` on this machine ({} cores): {records} generated Cosmos DB records \
         ({:.2} GB NDJSON), median of {ROUNDS} rounds, each into a fresh DuckDB file, all measured in the same run. \
         Every round checks that all paths stored the same row count and byte total.\n\n\
         | path | seconds | records/s | vs read_json |\n|---|---|---|---|\n\
         | `tokentrail ingest` (default: 2 parser threads, 2 DuckDB threads; parse → Arrow → DuckDB Arrow scan, committed with checkpoints on whole row groups, up to 192 MiB of Arrow data) | {a:.2} | {:.0} | **{:.2}x** |\n\
         | `tokentrail ingest --threads 1` (1 DuckDB thread) | {a1:.2} | {:.0} | {:.2}x |\n\
         | DuckDB `read_json` → `INSERT … SELECT` into the same table, 2 DuckDB threads, one transaction | {b:.2} | {:.0} | 1.00x |\n\n\
         Peak RSS of `tokentrail ingest`: **{peak} MiB** (target under 1024), {peak_1} MiB with `--threads 1`. Target for records/s: 1.00x; {}. \
         Parsing alone (one thread, the first 200,000 records into Arrow batches, best of 2): \
         {lenient_us:.2} µs a record with the lenient serde reader only, {fast_us:.2} µs with the fast path \
         for Azure's Cosmos DB layout ({:.1}x). Generated {}.\n<!-- /bench:ingest -->\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        bytes as f64 / 1e9,
        rate(a),
        b / a,
        rate(a1),
        b / a1,
        rate(b),
        if b / a >= 1.0 { "met" } else { "not met" },
        lenient_us / fast_us,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    common::write_section("ingest", &section);
}
