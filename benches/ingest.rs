//! Ingest benchmark: `tokentrail ingest` against DuckDB's own `read_json` on the
//! same generated file, into the same typed table, both on 2 threads, measured
//! in the same run; and both again on the same records re-serialised in another
//! layout (keys sorted, a space after every `:` and `,`), so that a layout the fast
//! path was not written for shows. Writes its section of BENCHMARKS.md.
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
    // Insertion order off, as on `tokentrail ingest`'s writer connections (the store keeps
    // it for every other connection): the same terms for both.
    conn.execute_batch("SET SESSION preserve_insertion_order = false").unwrap();
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
    let before = tokentrail::record::fast::records_read();
    let (first, second) = (rounds(), rounds());
    let fast = tokentrail::record::fast::records_read() - before;
    assert_eq!(fast, 2 * lines.len() as u64, "the fast path read every record of {}", input.display());
    (first[0].min(second[0]), first[1].min(second[1]))
}

/// Writes JSON with a space after every `:` and `,`, as Python's `json.dumps` and many
/// re-serialisers do.
struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// The records of `input` re-serialised into `output`: each line read as a JSON value
/// (its keys then sorted, as serde_json keeps them) and written [`Spaced`]. Returns the
/// bytes written.
fn reserialise(input: &Path, output: &Path) -> u64 {
    use serde::Serialize;
    use std::io::BufRead;
    let lines = std::io::BufReader::new(std::fs::File::open(input).unwrap());
    let mut out = std::io::BufWriter::new(std::fs::File::create(output).unwrap());
    let mut buf = Vec::with_capacity(4096);
    let mut bytes = 0;
    for line in lines.split(b'\n') {
        let value: serde_json::Value = serde_json::from_slice(&line.unwrap()).unwrap();
        buf.clear();
        value.serialize(&mut serde_json::Serializer::with_formatter(&mut buf, Spaced)).unwrap();
        buf.push(b'\n');
        out.write_all(&buf).unwrap();
        bytes += buf.len() as u64;
    }
    out.flush().unwrap();
    bytes
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
    // TOKENTRAIL_BENCH_KEEP=DIR leaves a copy of both input files there, for profiling
    // `tokentrail ingest` on them outside this benchmark.
    let keep = std::env::var_os("TOKENTRAIL_BENCH_KEEP").map(std::path::PathBuf::from);
    let input = dir.path().join("cosmos.ndjson");
    let started = Instant::now();
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let bytes = tokentrail::synth::write_cosmos_ndjson(&mut file, records, 1).unwrap();
    file.flush().unwrap();
    drop(file);
    println!("generated {records} records, {:.2} GB, in {:.1} s", bytes as f64 / 1e9, started.elapsed().as_secs_f64());
    let spaced = dir.path().join("cosmos-spaced.ndjson");
    let started = Instant::now();
    let spaced_bytes = reserialise(&input, &spaced);
    let first = std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(&spaced).unwrap())).next();
    let first = first.unwrap().unwrap();
    assert!(first.starts_with(r#"{"category": "DataPlaneRequests", "operationName": "#), "another key order: {first}");
    println!(
        "re-serialised them (keys sorted, spaces after separators), {:.2} GB, in {:.1} s",
        spaced_bytes as f64 / 1e9,
        started.elapsed().as_secs_f64()
    );
    if let Some(keep) = &keep {
        std::fs::create_dir_all(keep).unwrap();
        for file in [&input, &spaced] {
            std::fs::copy(file, keep.join(file.file_name().unwrap())).unwrap();
        }
        println!("kept both files in {}", keep.display());
    }

    // (a) the CLI's default (2 parser threads, 1 DuckDB thread), (a') with 2 DuckDB
    // threads, (b) read_json with 2 DuckDB threads; alternated, fresh files each time.
    // (d) the CLI's default and (e) read_json on the re-serialised file.
    let (mut ours, mut ours_2, mut baseline) =
        (common::Runs::default(), common::Runs::default(), common::Runs::default());
    let (mut spaced_ours, mut spaced_baseline) = (common::Runs::default(), common::Runs::default());
    let mut statements = Vec::new();
    for round in 0..ROUNDS {
        let db = |name: &str| dir.path().join(format!("{name}{round}.duckdb"));
        // Each run starts with what earlier runs (and the generator) wrote on disk.
        let spaced_pair = || {
            common::settle();
            let d = common::run_ingest(&db("d"), &spaced, None);
            common::settle();
            (d, run_read_json_child(&db("e"), &spaced).0)
        };
        // Odd rounds take the re-serialised file first: neither file always runs after
        // the other's disk writes.
        let early = (round % 2 == 1).then(spaced_pair);
        common::settle();
        let a = common::run_ingest(&db("a"), &input, None);
        common::settle();
        let a2 = common::run_ingest(&db("c"), &input, Some(THREADS));
        common::settle();
        let (b, statement) = run_read_json_child(&db("b"), &input);
        let (d, e) = early.unwrap_or_else(spaced_pair);
        let digests = [db("a"), db("c"), db("b"), db("d"), db("e")].map(|db| table_digest(&db));
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
        println!(
            "round {round}, re-serialised: tokentrail ingest {:.2} s, {:.2} CPU-s (peak RSS {} MiB); read_json {:.2} s, {:.2} CPU-s",
            d.elapsed.as_secs_f64(),
            d.cpu.as_secs_f64(),
            d.peak_rss_kib / 1024,
            e.elapsed.as_secs_f64(),
            e.cpu.as_secs_f64(),
        );
        spaced_ours.push(&d);
        spaced_baseline.push(&e);
        statements.push(statement.as_secs_f64());
        ours.push(&a);
        ours_2.push(&a2);
        baseline.push(&b);
        for name in ["a", "b", "c", "d", "e"] {
            let _ = std::fs::remove_file(db(name));
            let _ = std::fs::remove_file(db(name).with_extension("duckdb.wal"));
        }
    }
    // After the rounds: the child processes would otherwise count this process's
    // memory in their peak RSS (it is theirs between fork and exec).
    let (lenient_us, fast_us) = parse_only(&input, 200_000);
    println!("parsing alone, one thread: lenient reader {lenient_us:.2} µs a record, fast path {fast_us:.2} µs");
    let (spaced_lenient_us, spaced_fast_us) = parse_only(&spaced, 200_000);
    println!(
        "parsing alone, re-serialised: lenient reader {spaced_lenient_us:.2} µs a record, fast path {spaced_fast_us:.2} µs"
    );
    let (peak, peak_2, peak_b) = (ours.peak_mib(), ours_2.peak_mib(), baseline.peak_mib());
    let (peak_d, peak_e) = (spaced_ours.peak_mib(), spaced_baseline.peak_mib());
    let (a, a2, b) = (ours.median(), ours_2.median(), baseline.median());
    let (d, e) = (spaced_ours.median(), spaced_baseline.median());
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
    println!(
        "median, re-serialised: tokentrail {:.0} rec/s ({:.2}x of read_json on that file), read_json {:.0} rec/s; target >= 0.90x; CPU-s {:.2}, {:.2}; peak RSS {peak_d} MiB, read_json {peak_e} MiB",
        rate(d.0),
        e.0 / d.0,
        rate(e.0),
        d.1,
        e.1,
    );

    let met = |ratio: f64, target: f64| if ratio >= target { "met" } else { "not met" };
    let section = format!(
        "<!-- bench:ingest -->\n## File ingest vs DuckDB `read_json`\n\n\
         `cargo bench --bench ingest` on this machine ({cores} cores): {records} generated Cosmos DB records \
         in two files: Azure's layout ({gb:.2} GB NDJSON) and the same records re-serialised ({spaced_gb:.2} GB: \
         each line read as a JSON value and written again with its keys sorted, so `category` comes first and \
         `time` last, and a space after every `:` and `,`, as Python's `json.dumps` writes). Median of {ROUNDS} \
         rounds, each into fresh DuckDB files, all measured in the same run (odd rounds take the re-serialised file first); each ratio is against `read_json` \
         on the same file. Every round checks that all paths on both files stored the same row count and byte \
         total. Seconds: wall time of the whole process, from its start to its exit, median of the rounds: \
         `read_json` runs in a child process of its own that, like `tokentrail ingest`, makes the database and \
         its tables, fills the table and closes it. CPU-s: user plus system CPU time of the process, median of \
         the rounds.\n\n\
         | file | path | seconds | records/s | vs read_json | CPU-s |\n|---|---|---|---|---|---|\n\
         | Azure's layout | `tokentrail ingest` (default: 2 parser threads, 3 writer lanes on 1 DuckDB thread each; parse → Arrow → DuckDB Arrow scan, committed with checkpoints every {commit_rows} rows of a table, a row group (near the end of the file, equal shares of at least that), or {commit_mib} MiB of Arrow data; the file is read and parsed while the new database and its tables are made) | {a_s:.2} | {a_r:.0} | **{a_x:.2}x** | {a_c:.2} |\n\
         | Azure's layout | `tokentrail ingest --threads 2` (2 DuckDB threads) | {a2_s:.2} | {a2_r:.0} | {a2_x:.2}x | {a2_c:.2} |\n\
         | Azure's layout | DuckDB `read_json` → `INSERT … SELECT` into the same table, 2 DuckDB threads, one transaction | {b_s:.2} | {b_r:.0} | 1.00x | {b_c:.2} |\n\
         | Azure's layout | the same, its `INSERT … SELECT` and `CHECKPOINT` statements alone (timed inside the child) | {statement:.2} | {st_r:.0} | `tokentrail ingest`: {st_x:.2}x of it | |\n\
         | re-serialised | `tokentrail ingest` (default) | {d_s:.2} | {d_r:.0} | **{d_x:.2}x** | {d_c:.2} |\n\
         | re-serialised | DuckDB `read_json` → `INSERT … SELECT`, as above | {e_s:.2} | {e_r:.0} | 1.00x | {e_c:.2} |\n\n\
         Peak RSS of `tokentrail ingest`: **{peak} MiB** (target under 1024), {peak_2} MiB with `--threads 2`, {peak_b} MiB for `read_json`; \
         re-serialised: {peak_d} MiB, `read_json` {peak_e} MiB. Target for records/s: 1.00x on Azure's layout, {a_met}; \
         at least 0.90x on the re-serialised file, {d_met}. \
         Parsing alone (one thread, the first 200,000 records into Arrow batches, best of 2; every record read by the fast path): \
         Azure's layout {lenient_us:.2} µs a record with the lenient serde reader only, {fast_us:.2} µs with the fast path \
         ({fast_x:.1}x); re-serialised {spaced_lenient_us:.2} µs and {spaced_fast_us:.2} µs ({spaced_x:.1}x). Generated {when}.\n<!-- /bench:ingest -->\n",
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
        gb = bytes as f64 / 1e9,
        spaced_gb = spaced_bytes as f64 / 1e9,
        a_s = a.0,
        a_r = rate(a.0),
        a_x = b.0 / a.0,
        a_c = a.1,
        a2_s = a2.0,
        a2_r = rate(a2.0),
        a2_x = b.0 / a2.0,
        a2_c = a2.1,
        b_s = b.0,
        b_r = rate(b.0),
        b_c = b.1,
        st_r = rate(statement),
        st_x = statement / a.0,
        d_s = d.0,
        d_r = rate(d.0),
        d_x = e.0 / d.0,
        d_c = d.1,
        e_s = e.0,
        e_r = rate(e.0),
        e_c = e.1,
        a_met = met(b.0 / a.0, 1.0),
        d_met = met(e.0 / d.0, 0.9),
        fast_x = lenient_us / fast_us,
        spaced_x = spaced_lenient_us / spaced_fast_us,
        when = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        commit_rows = tokentrail::store::COMMIT_ROWS,
        commit_mib = tokentrail::ingest::COMMIT_BYTES >> 20,
    );
    common::write_section("ingest", &section);
}
