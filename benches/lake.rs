//! Lake benchmark: `tokentrail archive` (the real binary) of a database with about
//! 1,000,000 Cosmos DB requests into a local directory, against DuckDB's own
//! `COPY … TO … (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd)` of the same rows
//! of the same 8 tables from a copy of the same database, measured in the same run; then
//! `tokentrail archive` into a local Azurite (Azure Blob emulator). Writes its section of
//! BENCHMARKS.md.
//!
//! `cargo bench --bench lake` (TOKENTRAIL_BENCH_RECORDS to change the 1,000,000).

mod common;

#[allow(dead_code)]
#[path = "../tests/common/azurite.rs"]
mod azurite;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use tokentrail::lake::TABLES;

const ROUNDS: usize = 3;
/// Cosmos DB data-plane requests `tokentrail generate --days 7` writes per unit of
/// `--scale` (34.13 gave 1,154,431, with 5,788 sign-ins, which do not grow with it).
const REQUESTS_PER_SCALE: f64 = 33_800.0;
/// A row's day, as `tokentrail archive` partitions it: its event time, or its batch's
/// commit when it has none (src/lake/archive.rs).
const DAY: &str = "CAST(CAST(coalesce(t.time, (SELECT b.committed_at FROM ingest_batches b WHERE b.batch_id = t.batch_id)) AS TIMESTAMP) AS DATE)";

/// Set in the child process that runs the COPY baseline: `DB\tDIR`.
const COPY_CHILD: &str = "TOKENTRAIL_BENCH_LAKE_COPY";
/// Set in the child process that counts each table's rows: `DB`.
const COUNT_CHILD: &str = "TOKENTRAIL_BENCH_LAKE_COUNT";

/// The baseline: DuckDB's own COPY of each table's rows (with the `rowid` column the lake's
/// files carry for three of them), partitioned by the same day, zstd, 2 threads, from
/// opening the database on. Prints the seconds of the statements alone and the rows written.
fn copy_baseline(db: &Path, dir: &Path) {
    let started = Instant::now();
    let conn = duckdb::Connection::open(db).unwrap();
    conn.execute_batch("SET threads = 2").unwrap();
    let mut rows = 0;
    for (table, extra) in TABLES {
        let out = dir.join(format!("table={table}"));
        let sql = format!(
            "COPY (SELECT t.*{extra}, {DAY} AS date FROM {table} t) TO '{}' \
             (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd)",
            out.display()
        );
        rows += conn.execute(&sql, []).unwrap_or_else(|e| panic!("COPY {table}: {e}"));
    }
    drop(conn);
    println!("{}\t{rows}", started.elapsed().as_secs_f64());
}

fn count_rows(db: &Path) {
    let conn = duckdb::Connection::open(db).unwrap();
    for (table, _) in TABLES {
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap();
        println!("{table}\t{n}");
    }
}

/// Runs this benchmark again as a child with `var=spec`; returns what it measured and printed.
fn child(var: &str, spec: String, out: &Path) -> (common::Measured, String) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(var, spec).stdout(std::fs::File::create(out).unwrap()).stderr(Stdio::inherit());
    let measured = common::measure(command);
    assert!(measured.ok, "the {var} child failed");
    (measured, std::fs::read_to_string(out).unwrap())
}

fn tokentrail(args: &[&str]) -> common::Measured {
    let measured = common::run_measured(args, Stdio::null());
    assert!(measured.ok, "tokentrail {args:?} failed");
    measured
}

/// `tokentrail archive` with its stdout kept: what it measured, rows and bytes it reports.
fn archive(db: &Path, lake: &str, key: Option<&str>, out: &Path) -> (common::Measured, i64, u64) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokentrail"));
    command
        .args(["archive", "--db", db.to_str().unwrap(), "--lake", lake])
        .env("TOKENTRAIL_LOG", "warn")
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::inherit());
    if let Some(key) = key {
        command.env("TOKENTRAIL_LAKE_ACCOUNT_KEY", key);
    }
    let measured = common::measure(command);
    assert!(measured.ok, "tokentrail archive --lake {lake} failed");
    // "archived batches A..B: N rows in F files, B bytes; read back and verified"
    let (mut rows, mut bytes) = (0, 0);
    for line in std::fs::read_to_string(out).unwrap().lines().filter(|l| l.starts_with("archived batches")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        rows += words[3].parse::<i64>().unwrap();
        bytes += words[8].trim_end_matches(|c: char| !c.is_ascii_digit()).parse::<u64>().unwrap();
    }
    (measured, rows, bytes)
}

/// Bytes of the files under `dir` (none when it is not there: an empty table).
fn size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn files(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).count()
}

/// A fresh copy of the database (and its WAL, if any).
fn copy_db(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    let wal = |p: &Path| PathBuf::from(format!("{}.wal", p.display()));
    if wal(from).exists() {
        std::fs::copy(wal(from), wal(to)).unwrap();
    }
}

fn remove_db(db: &Path) {
    let _ = std::fs::remove_file(db);
    let _ = std::fs::remove_file(format!("{}.wal", db.display()));
}

fn main() {
    if let Ok(spec) = std::env::var(COPY_CHILD) {
        let (db, dir) = spec.split_once('\t').expect("DB<TAB>DIR");
        copy_baseline(Path::new(db), Path::new(dir));
        return;
    }
    if let Ok(db) = std::env::var(COUNT_CHILD) {
        count_rows(Path::new(&db));
        return;
    }
    let records: usize = common::env_count("TOKENTRAIL_BENCH_RECORDS", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let arg = |p: &Path| p.to_str().unwrap().to_owned();

    // The database: generated traffic (requests, sign-ins, control-plane and directory
    // records), ingested with the default commit size, absorbed by detection.
    let scale = format!("{:.2}", records as f64 / REQUESTS_PER_SCALE);
    let input = path("traffic.ndjson");
    let base = path("base.duckdb");
    let started = Instant::now();
    tokentrail(&["generate", "--out", &arg(&input), "--days", "7", "--scale", &scale]);
    let input_bytes = std::fs::metadata(&input).unwrap().len();
    println!(
        "generated {:.2} GB (--days 7 --scale {scale}) in {:.1} s",
        input_bytes as f64 / 1e9,
        started.elapsed().as_secs_f64()
    );
    let ingest = tokentrail(&["ingest", "--db", &arg(&base), &arg(&input)]);
    println!("ingested in {:.1} s", ingest.elapsed.as_secs_f64());
    let detect = tokentrail(&["detect", "--db", &arg(&base)]);
    println!("detect (absorbs every batch) in {:.1} s", detect.elapsed.as_secs_f64());
    std::fs::remove_file(&input).unwrap();
    let counts: Vec<(String, i64)> = child(COUNT_CHILD, arg(&base), &path("count.out"))
        .1
        .lines()
        .map(|l| {
            let (t, n) = l.split_once('\t').unwrap();
            (t.to_owned(), n.parse().unwrap())
        })
        .collect();
    let total_rows: i64 = counts.iter().map(|c| c.1).sum();
    let requests = counts.iter().find(|c| c.0 == "cosmos_requests").unwrap().1;
    let db_bytes = std::fs::metadata(&base).unwrap().len();
    println!(
        "database {:.0} MB: {}",
        db_bytes as f64 / 1e6,
        counts.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", ")
    );

    // 1. Into a local directory: ours and COPY alternated, each on a fresh copy of the
    // database and into a fresh directory.
    let (mut ours, mut baseline) = (common::Runs::default(), common::Runs::default());
    let (mut ours_sizes, mut copy_sizes) = (Vec::new(), Vec::new());
    let mut statements = Vec::new();
    for round in 0..ROUNDS {
        let (ours_db, copy_dbfile) = (path(&format!("ours{round}.duckdb")), path(&format!("copy{round}.duckdb")));
        let (ours_dir, copy_dir) = (path(&format!("lake{round}")), path(&format!("copy{round}")));
        copy_db(&base, &ours_db);
        copy_db(&base, &copy_dbfile);
        std::fs::create_dir(&copy_dir).unwrap();
        let run_ours = || {
            common::settle();
            archive(&ours_db, &arg(&ours_dir), None, &path("archive.out"))
        };
        let run_copy = || {
            common::settle();
            child(COPY_CHILD, format!("{}\t{}", copy_dbfile.display(), copy_dir.display()), &path("copy.out"))
        };
        // Odd rounds run COPY first: neither always runs after the other's disk writes.
        let ((a, a_rows, a_bytes), (b, printed)) = if round % 2 == 0 {
            let a = run_ours();
            (a, run_copy())
        } else {
            let b = run_copy();
            (run_ours(), b)
        };
        let (statement, b_rows) = printed.trim().split_once('\t').unwrap();
        let (statement, b_rows): (f64, i64) = (statement.parse().unwrap(), b_rows.parse().unwrap());
        assert_eq!(a_rows, total_rows, "tokentrail archive archived every row");
        assert_eq!(b_rows, total_rows, "COPY wrote every row");
        let tables_size = |dir: &Path| TABLES.iter().map(|(t, _)| size(&dir.join(format!("table={t}")))).sum::<u64>();
        assert_eq!(tables_size(&ours_dir), a_bytes, "the lake's table files are the bytes archive reports");
        let ours_req = size(&ours_dir.join("table=cosmos_requests"));
        let copy_req = size(&copy_dir.join("table=cosmos_requests"));
        let copy_bytes = size(&copy_dir);
        println!(
            "round {round}: tokentrail archive {:.2} s, {:.2} CPU-s, peak RSS {} MiB, {} files, {a_bytes} bytes; \
             COPY {:.2} s ({statement:.2} s the statements), {:.2} CPU-s, peak RSS {} MiB, {} files, {copy_bytes} bytes",
            a.elapsed.as_secs_f64(),
            a.cpu.as_secs_f64(),
            a.peak_rss_kib / 1024,
            files(&ours_dir),
            b.elapsed.as_secs_f64(),
            b.cpu.as_secs_f64(),
            b.peak_rss_kib / 1024,
            files(&copy_dir),
        );
        ours.push(&a);
        baseline.push(&b);
        statements.push(statement);
        ours_sizes.push((ours_req, a_bytes, files(&ours_dir.join("table=cosmos_requests"))));
        copy_sizes.push((copy_req, copy_bytes, files(&copy_dir.join("table=cosmos_requests"))));
        for db in [&ours_db, &copy_dbfile] {
            remove_db(db);
        }
        for d in [&ours_dir, &copy_dir] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
    let ((a_s, a_c), (b_s, b_c)) = (ours.median(), baseline.median());
    let statement = common::median(statements);
    let rate = |s: f64| total_rows as f64 / s;
    let ratio = b_s / a_s;
    let (ours_req, ours_bytes, ours_req_files) = ours_sizes[0];
    let (copy_req, copy_bytes, copy_req_files) = copy_sizes[0];
    // Bytes a row are megabytes a million rows.
    let per_million = |bytes: u64| bytes as f64 / requests as f64;
    println!(
        "median: tokentrail archive {:.0} rows/s ({ratio:.2}x of COPY), COPY {:.0} rows/s; CPU-s {a_c:.2}, {b_c:.2}; \
         peak RSS {} MiB, {} MiB; cosmos_requests {:.1} MB per million rows ours, {:.1} MB COPY's",
        rate(a_s),
        rate(b_s),
        ours.peak_rss_kib / 1024,
        baseline.peak_rss_kib / 1024,
        per_million(ours_req),
        per_million(copy_req),
    );

    // 2. Into Azurite: a fresh container each round.
    let azurite = azurite::Azurite::start();
    let mut azure = common::Runs::default();
    let mut azure_bytes = 0;
    for round in 0..ROUNDS {
        let db = path(&format!("azure{round}.duckdb"));
        copy_db(&base, &db);
        let container = format!("lake{round}");
        assert!(azurite.create_container(&container));
        let lake = format!("{}/{container}", azurite.endpoint());
        common::settle();
        let (m, rows, bytes) = archive(&db, &lake, Some(azurite::KEY), &path("azure.out"));
        assert_eq!(rows, total_rows, "tokentrail archive archived every row into Azurite");
        println!(
            "round {round}, Azurite: tokentrail archive {:.2} s, {:.2} CPU-s, peak RSS {} MiB, {bytes} bytes",
            m.elapsed.as_secs_f64(),
            m.cpu.as_secs_f64(),
            m.peak_rss_kib / 1024
        );
        azure.push(&m);
        azure_bytes = bytes;
        remove_db(&db);
    }
    drop(azurite);
    let (z_s, z_c) = azure.median();
    println!("median, Azurite: {:.0} rows/s, {z_c:.2} CPU-s, {azure_bytes} bytes", rate(z_s));

    let met = if ratio >= 1.0 { "met" } else { "not met" };
    let section = format!(
        "<!-- bench:lake -->\n## Parquet lake: `tokentrail archive` vs DuckDB `COPY … TO` Parquet\n\n\
         `cargo bench --bench lake` on this machine ({cores} cores): a database made by `tokentrail generate --days 7 \
         --scale {scale}` ({input_gb:.2} GB NDJSON), `tokentrail ingest` (default commit size) and `tokentrail detect` \
         (archiving waits for detection to absorb each batch): {total_rows} rows in the 8 archived tables, \
         {requests} of them `cosmos_requests` ({tables}); {db_mb:.0} MB of DuckDB. Each round copies the database \
         twice and runs, on fresh copies into fresh directories, alternated (odd rounds COPY first): \
         `tokentrail archive --db DB --lake DIR` (default segments of {segment_rows} rows) and, in a child \
         process of its own, DuckDB's `COPY (SELECT t.*[, rowid AS row_id], <the row's day> AS date FROM <table> t) \
         TO 'DIR/table=<table>' (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd)` for each of the 8 tables, \
         2 DuckDB threads, timed from opening the database to closing it (the same columns and the same \
         `table=/date=` partitions as the lake). Seconds and CPU-s (user plus system) of the whole process, median of \
         {ROUNDS} rounds; every round checks both wrote every row. Then `tokentrail archive` into a fresh container \
         of a local Azurite 3.35 (Azure Blob emulator, `--lake http://127.0.0.1:PORT/devstoreaccount1/CONTAINER`), \
         {ROUNDS} rounds.\n\n\
         | path | seconds | rows/s | vs COPY | CPU-s | peak RSS |\n|---|---|---|---|---|---|\n\
         | `tokentrail archive` into a directory | {a_s:.2} | {a_r:.0} | **{ratio:.2}x** | {a_c:.2} | {a_rss} MiB |\n\
         | DuckDB `COPY … TO` Parquet, 8 tables | {b_s:.2} | {b_r:.0} | 1.00x | {b_c:.2} | {b_rss} MiB |\n\
         | the same, its COPY statements alone (timed inside the child) | {statement:.2} | {st_r:.0} | `tokentrail archive`: {st_x:.2}x of it | | |\n\
         | `tokentrail archive` into Azurite | {z_s:.2} | {z_r:.0} | {z_x:.2}x | {z_c:.2} | {z_rss} MiB |\n\n\
         - Target for rows/s: at least 1.00x of COPY: {met}.\n\
         - Size: `cosmos_requests` files {ours_mb:.1} MB per million rows in the lake ({ours_req_files} files), \
         {copy_mb:.1} MB in COPY's ({copy_req_files} files); all tables {ours_total:.1} MB and {copy_total:.1} MB; \
         {azure_mb:.1} MB written to Azurite. Sizes of the first round (row order within a file, and so the sizes, vary slightly between runs).\n\
         - Beyond COPY, `tokentrail archive` plans each segment in DuckDB before writing, writes every file \
         create-if-absent and a manifest, then reads every file back and recomputes each batch's chain digests \
         (compared with `ingest_chain`), takes the SHA-256 of every file, and records the segment and its files in \
         one transaction.\n\
         - Generated {when}.\n<!-- /bench:lake -->\n",
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
        input_gb = input_bytes as f64 / 1e9,
        tables = counts
            .iter()
            .filter(|c| c.0 != "cosmos_requests")
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        db_mb = db_bytes as f64 / 1e6,
        segment_rows = tokentrail::lake::archive::SEGMENT_ROWS,
        a_r = rate(a_s),
        b_r = rate(b_s),
        st_r = rate(statement),
        st_x = statement / a_s,
        z_r = rate(z_s),
        z_x = b_s / z_s,
        a_rss = ours.peak_rss_kib / 1024,
        b_rss = baseline.peak_rss_kib / 1024,
        z_rss = azure.peak_rss_kib / 1024,
        ours_mb = per_million(ours_req),
        copy_mb = per_million(copy_req),
        ours_total = ours_bytes as f64 / 1e6,
        copy_total = copy_bytes as f64 / 1e6,
        azure_mb = azure_bytes as f64 / 1e6,
        when = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    common::write_section("lake", &section);
}
