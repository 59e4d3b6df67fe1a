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
// Five: single runs on this shared 2-core machine spread by ±20% (read_json alone took
// 2.9–4.5 s in one session).
const ROUNDS: usize = 5;

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

/// Wall time, CPU time and peak RSS of one path's rounds.
#[derive(Default)]
struct Runs {
    wall: Vec<f64>,
    cpu: Vec<f64>,
    peak_rss_kib: i64,
}

impl Runs {
    fn push(&mut self, wall: Duration, cpu: Duration, peak_rss_kib: i64) {
        self.wall.push(wall.as_secs_f64());
        self.cpu.push(cpu.as_secs_f64());
        self.peak_rss_kib = self.peak_rss_kib.max(peak_rss_kib);
    }

    /// Median wall seconds and median CPU seconds.
    fn median(self) -> (f64, f64) {
        (common::median(self.wall), common::median(self.cpu))
    }

    fn peak_mib(&self) -> i64 {
        self.peak_rss_kib / 1024
    }
}

/// Set in the child process that runs the `read_json` baseline: `DB\tINPUT`.
const READ_JSON_CHILD: &str = "TOKENTRAIL_BENCH_READ_JSON";

/// Runs the `read_json` baseline in a child process (this benchmark again), so that its
/// wall time, CPU time and peak RSS are measured as `tokentrail ingest`'s are: the whole
/// process, which makes the database and its tables (the migrations), fills the table and
/// closes it, as `tokentrail ingest` does. This process does not keep DuckDB's memory
/// either (the next child's peak RSS would count it). Also returns the child's own timing
/// of the `INSERT … SELECT` statement and its CHECKPOINT alone, for reference.
fn run_read_json_child(db: &Path, input: &Path) -> (common::Measured, Duration) {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    let spec = format!("{}\t{}", db.display(), input.display());
    let out = db.with_extension("out");
    command.env(READ_JSON_CHILD, spec).stdout(std::fs::File::create(&out).unwrap());
    let measured = common::measure(command);
    assert!(measured.ok, "read_json baseline failed");
    let printed = std::fs::read_to_string(&out).unwrap();
    let statement = Duration::from_secs_f64(printed.trim().parse().expect("the child prints its seconds"));
    (measured, statement)
}

fn main() {
    if let Ok(spec) = std::env::var(READ_JSON_CHILD) {
        let (db, input) = spec.split_once('\t').expect("DB<TAB>INPUT");
        println!("{}", run_read_json(Path::new(db), Path::new(input)).as_secs_f64());
        return;
    }
    let records: usize =
        std::env::var("TOKENTRAIL_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cosmos.ndjson");
    let started = Instant::now();
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let bytes = tokentrail::synth::write_cosmos_ndjson(&mut file, records, 1).unwrap();
    file.flush().unwrap();
    drop(file);
    println!("generated {records} records, {:.2} GB, in {:.1} s", bytes as f64 / 1e9, started.elapsed().as_secs_f64());

    // (a) the CLI's default (2 parser threads, 1 DuckDB thread), (a') with 2 DuckDB
    // threads, (b) read_json with 2 DuckDB threads; alternated, fresh files each time.
    let (mut ours, mut ours_2, mut baseline) = (Runs::default(), Runs::default(), Runs::default());
    let mut statements = Vec::new();
    for round in 0..ROUNDS {
        let db = |name: &str| dir.path().join(format!("{name}{round}.duckdb"));
        // Each run starts with what earlier runs (and the generator) wrote on disk.
        common::settle();
        let a = common::run_ingest(&db("a"), &input, None);
        common::settle();
        let a2 = common::run_ingest(&db("c"), &input, Some(THREADS));
        common::settle();
        let (b, statement) = run_read_json_child(&db("b"), &input);
        let digests = [table_digest(&db("a")), table_digest(&db("c")), table_digest(&db("b"))];
        assert_eq!(digests[0].0, records as i64, "tokentrail stored every record");
        for d in &digests[1..] {
            assert_eq!((digests[0].0, digests[0].1), (d.0, d.1), "every path stored the same data");
        }
        println!(
            "round {round}: tokentrail ingest {:.2} s, {:.2} CPU-s (peak RSS {} MiB); with 2 DuckDB threads {:.2} s, {:.2} CPU-s (peak RSS {} MiB); read_json {:.2} s ({:.2} s the statement alone), {:.2} CPU-s",
            a.elapsed.as_secs_f64(),
            a.cpu.as_secs_f64(),
            a.peak_rss_kib / 1024,
            a2.elapsed.as_secs_f64(),
            a2.cpu.as_secs_f64(),
            a2.peak_rss_kib / 1024,
            b.elapsed.as_secs_f64(),
            statement.as_secs_f64(),
            b.cpu.as_secs_f64(),
        );
        statements.push(statement.as_secs_f64());
        ours.push(a.elapsed, a.cpu, a.peak_rss_kib);
        ours_2.push(a2.elapsed, a2.cpu, a2.peak_rss_kib);
        baseline.push(b.elapsed, b.cpu, b.peak_rss_kib);
        for name in ["a", "b", "c"] {
            let _ = std::fs::remove_file(db(name));
            let _ = std::fs::remove_file(db(name).with_extension("duckdb.wal"));
        }
    }
    // After the rounds: the child processes would otherwise count this process's
    // memory in their peak RSS (it is theirs between fork and exec).
    let (lenient_us, fast_us) = parse_only(&input, 200_000);
    println!("parsing alone, one thread: lenient reader {lenient_us:.2} µs a record, fast path {fast_us:.2} µs");
    let (peak, peak_2, peak_b) = (ours.peak_mib(), ours_2.peak_mib(), baseline.peak_mib());
    let (a, a2, b) = (ours.median(), ours_2.median(), baseline.median());
    let statement = common::median(statements);
    let rate = |seconds: f64| records as f64 / seconds;
    println!(
        "median: tokentrail {:.0} rec/s ({:.2}x), with 2 DuckDB threads {:.0} rec/s ({:.2}x), read_json {:.0} rec/s; target >= 1.00x; CPU-s {:.2}, {:.2}, {:.2}; peak RSS {peak} MiB, {peak_2} MiB with 2 DuckDB threads (target < 1024), read_json {peak_b} MiB; read_json's statement alone {statement:.2} s ({:.2}x)",
        rate(a.0),
        b.0 / a.0,
        rate(a2.0),
        b.0 / a2.0,
        rate(b.0),
        a.1,
        a2.1,
        b.1,
        statement / a.0,
    );

    let section = format!(
        "<!-- bench:ingest -->\n## File ingest vs DuckDB `read_json`\n\n\
         `cargo bench --bench ingest` on this machine ({} cores): {records} generated Cosmos DB records \
         ({:.2} GB NDJSON), median of {ROUNDS} rounds, each into a fresh DuckDB file, all measured in the same run. \
         Every round checks that all paths stored the same row count and byte total. Seconds: wall time of \
         the whole process, from its start to its exit, median of the rounds: `read_json` runs in a child process \
         of its own that, like `tokentrail ingest`, makes the database and its tables, fills the table and closes \
         it. CPU-s: user plus system CPU time of the process, median of the rounds.\n\n\
         | path | seconds | records/s | vs read_json | CPU-s |\n|---|---|---|---|---|\n\
         | `tokentrail ingest` (default: 2 parser threads, 3 writer lanes on 1 DuckDB thread each; parse → Arrow → DuckDB Arrow scan, committed with checkpoints every {commit_rows} rows of a table, a row group (near the end of the file, equal shares of at least that), or {commit_mib} MiB of Arrow data; the file is read and parsed while the new database and its tables are made) | {:.2} | {:.0} | **{:.2}x** | {:.2} |\n\
         | `tokentrail ingest --threads 2` (2 DuckDB threads) | {:.2} | {:.0} | {:.2}x | {:.2} |\n\
         | DuckDB `read_json` → `INSERT … SELECT` into the same table, 2 DuckDB threads, one transaction | {:.2} | {:.0} | 1.00x | {:.2} |\n\
         | the same, its `INSERT … SELECT` and `CHECKPOINT` statements alone (timed inside the child) | {statement:.2} | {:.0} | `tokentrail ingest`: {:.2}x of it | |\n\n\
         Peak RSS of `tokentrail ingest`: **{peak} MiB** (target under 1024), {peak_2} MiB with `--threads 2`, {peak_b} MiB for `read_json`. Target for records/s: 1.00x; {}. \
         Parsing alone (one thread, the first 200,000 records into Arrow batches, best of 2): \
         {lenient_us:.2} µs a record with the lenient serde reader only, {fast_us:.2} µs with the fast path \
         for Azure's Cosmos DB layout ({:.1}x). Generated {}.\n<!-- /bench:ingest -->\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        bytes as f64 / 1e9,
        a.0,
        rate(a.0),
        b.0 / a.0,
        a.1,
        a2.0,
        rate(a2.0),
        b.0 / a2.0,
        a2.1,
        b.0,
        rate(b.0),
        b.1,
        rate(statement),
        statement / a.0,
        if b.0 / a.0 >= 1.0 { "met" } else { "not met" },
        lenient_us / fast_us,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        commit_rows = tokentrail::store::COMMIT_ROWS,
        commit_mib = tokentrail::ingest::COMMIT_BYTES >> 20,
    );
    common::write_section("ingest", &section);
}
