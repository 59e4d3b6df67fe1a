//! The Parquet lake through the real binary: `tokentrail archive` to a directory and to
//! Azurite, retention, `tokentrail verify --lake`, SIGKILL during archiving, and the
//! readers we promise (DuckDB `read_parquet`, pyarrow datasets).

use crate::common::azurite::{self, Azurite};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TABLES: [&str; 8] = [
    "cosmos_requests",
    "signins",
    "raw_events",
    "quarantine",
    "control_changes",
    "directory_changes",
    "cosmos_queries",
    "cosmos_control_requests",
];

pub(crate) fn tokentrail(args: &[&str]) -> Output {
    command(args).output().expect("runs")
}

pub(crate) fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokentrail"));
    command.args(args).env("TOKENTRAIL_LOG", "warn");
    command
}

pub(crate) fn ok(output: Output) -> String {
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{text}\n{}", String::from_utf8_lossy(&output.stderr));
    text
}

/// A database with `days` of generated traffic in batches of about 3,000 records,
/// absorbed by detection (archiving waits for that).
pub(crate) fn database(dir: &Path, days: &str, seed: &str) -> PathBuf {
    let db = dir.join("t.duckdb");
    let file = dir.join(format!("g{seed}.ndjson"));
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    ok(tokentrail(&["generate", "--out", &path(&file), "--days", days, "--seed", seed, "--profile", "realistic"]));
    ok(tokentrail(&["ingest", "--db", &path(&db), "--commit-rows", "3000", &path(&file)]));
    ok(tokentrail(&["detect", "--db", &path(&db)]));
    db
}

pub(crate) fn connect(db: &Path) -> duckdb::Connection {
    duckdb::Connection::open(db).unwrap()
}

fn day_expr(table: &str) -> String {
    format!(
        "CAST(CAST(coalesce(t.time, (SELECT committed_at FROM ingest_batches b WHERE b.batch_id = t.batch_id)) \
         AS TIMESTAMP) AS DATE)::VARCHAR FROM {table} t"
    )
}

/// Rows per (table, day) in the database.
fn hot_days(conn: &duckdb::Connection) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for table in TABLES {
        let sql = format!("SELECT day, count(*) FROM (SELECT {}) AS d(day) GROUP BY day", day_expr(table));
        let mut stmt = conn.prepare(&sql).unwrap();
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap() {
            let (day, n) = row.unwrap();
            out.insert((table.to_owned(), day), n);
        }
    }
    out
}

/// The files holding rows evicted from the database, as a DuckDB list literal (they may
/// hold rows of batches still in the database too: [`EVICTED`] picks the others).
fn evicted_files(conn: &duckdb::Connection, lake: &Path, table: &str) -> Option<String> {
    let mut stmt = conn
        .prepare(
            "SELECT DISTINCT f.path FROM lake_files f JOIN lake_evictions e ON e.first_batch = f.first_batch \
             AND e.table_name = f.table_name WHERE f.table_name = ? ORDER BY f.path",
        )
        .unwrap();
    let paths: Vec<String> = stmt.query_map([table], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect();
    (!paths.is_empty()).then(|| {
        let quoted: Vec<String> = paths.iter().map(|p| format!("'{}'", lake.join(p).display())).collect();
        format!("[{}]", quoted.join(", "))
    })
}

/// The rows of a read_parquet the lake answers for: evicted batches only (the others are
/// still in the database).
const EVICTED: &str = "batch_id IN (SELECT batch_id FROM lake_evictions WHERE table_name = '{table}')";

/// Rows per (table, day) the lake answers for, counted by the `date` partition readers
/// discover.
fn archived_days(conn: &duckdb::Connection, lake: &Path) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for table in TABLES {
        let Some(files) = evicted_files(conn, lake, table) else { continue };
        let only = EVICTED.replace("{table}", table);
        let sql = format!(
            "SELECT date::VARCHAR, count(*) FROM read_parquet({files}, hive_partitioning = true) WHERE {only} GROUP BY 1"
        );
        let mut stmt = conn.prepare(&sql).unwrap();
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap() {
            let (day, n) = row.unwrap();
            *out.entry((table.to_owned(), day)).or_default() += n;
        }
    }
    out
}

fn sum(a: &BTreeMap<(String, String), i64>, b: &BTreeMap<(String, String), i64>) -> BTreeMap<(String, String), i64> {
    let mut out = a.clone();
    for (k, v) in b {
        *out.entry(k.clone()).or_default() += v;
    }
    out
}

/// Requests per principal, operation and day: hot rows and, given evicted files, theirs.
fn requests_by_principal(conn: &duckdb::Connection, lake: Option<&Path>) -> Vec<(String, String, String, i64)> {
    let archived = lake
        .and_then(|lake| evicted_files(conn, lake, "cosmos_requests"))
        .map(|files| {
            let only = EVICTED.replace("{table}", "cosmos_requests");
            format!("UNION ALL SELECT principal_id, operation, time FROM read_parquet({files}) WHERE {only}")
        })
        .unwrap_or_default();
    let sql = format!(
        "SELECT coalesce(principal_id, '-'), operation, CAST(CAST(time AS TIMESTAMP) AS DATE)::VARCHAR, count(*) \
         FROM (SELECT principal_id, operation, time FROM cosmos_requests {archived}) GROUP BY ALL ORDER BY ALL"
    );
    let mut stmt = conn.prepare(&sql).unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
}

/// The last day with rows, and the retention time that evicts the days before `keep` of them.
pub(crate) fn as_of_keeping(conn: &duckdb::Connection, keep: i64) -> String {
    let last: String = conn
        .query_row("SELECT max(CAST(CAST(time AS TIMESTAMP) AS DATE))::VARCHAR FROM cosmos_requests", [], |r| r.get(0))
        .unwrap();
    let last = chrono::NaiveDate::parse_from_str(&last, "%Y-%m-%d").unwrap();
    // --hot-days 1 at noon of (last - keep + 2): days up to last - keep are older than a day.
    format!("{}T12:00:00Z", last + chrono::Duration::days(2 - keep))
}

pub(crate) fn count(conn: &duckdb::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn archived_rows_verify_against_the_chain_and_answer_beside_the_hot_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), "5", "7");
    let lake = dir.path().join("lake");
    let (db_arg, lake_arg) = (db.to_str().unwrap(), lake.to_str().unwrap());
    let (before, requests_before, as_of) = {
        let conn = connect(&db);
        (hot_days(&conn), requests_by_principal(&conn, None), as_of_keeping(&conn, 2))
    };

    let printed = ok(tokentrail(&[
        "archive",
        "--db",
        db_arg,
        "--lake",
        lake_arg,
        "--segment-rows",
        "5000",
        "--hot-days",
        "1",
        "--as-of",
        &as_of,
    ]));
    assert!(printed.contains("read back and verified") && printed.contains("from the database"), "{printed}");

    let conn = connect(&db);
    let segments = count(&conn, "SELECT count(*) FROM lake_segments WHERE verified_at IS NOT NULL");
    assert!(segments >= 4, "several segments: {segments}");
    assert_eq!(count(&conn, "SELECT count(*) FROM lake_segments WHERE verified_at IS NULL"), 0);
    let evicted = count(&conn, "SELECT count(*) FROM lake_evictions WHERE table_name = 'cosmos_requests'");
    let hot = count(&conn, "SELECT count(*) FROM cosmos_requests");
    assert!(evicted > 0 && hot > 0, "the period spans archived ({evicted} segments) and hot ({hot} rows) data");
    // Every row is in exactly one place, day by day.
    assert_eq!(sum(&hot_days(&conn), &archived_days(&conn, &lake)), before);
    // A query over the whole period gives what it gave before anything left the database.
    assert_eq!(requests_by_principal(&conn, Some(&lake)), requests_before);
    // Every batch was archived (detection had absorbed them all): pyarrow's dataset
    // discovery finds the table's days and as many rows as were ingested.
    let total: i64 = before.iter().filter(|((t, _), _)| t == "cosmos_requests").map(|(_, n)| n).sum();
    let python = PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/tokentrail-venv/bin/python");
    let script = "import sys, pyarrow.dataset as ds\n\
        d = ds.dataset(sys.argv[1] + '/table=cosmos_requests', format='parquet', partitioning='hive')\n\
        t = d.to_table(columns=['principal_id', 'date'])\n\
        print(t.num_rows, len(set(t.column('date').to_pylist())))";
    let out = Command::new(python).args(["-c", script, lake_arg]).output().expect("the venv .ci/run makes");
    let out = ok(out);
    let (rows, days) = out.trim().split_once(' ').unwrap();
    assert_eq!(rows.parse::<i64>().unwrap(), total, "{out}");
    let days_before = before.keys().filter(|(t, _)| t == "cosmos_requests").count();
    assert_eq!(days.parse::<usize>().unwrap(), days_before);
    drop(conn);

    let verified = ok(tokentrail(&["verify", "--db", db_arg, "--lake", lake_arg]));
    assert!(verified.starts_with("chain verified") && verified.contains("recomputed from it;"), "{verified}");
    let unread = ok(tokentrail(&["verify", "--db", db_arg]));
    assert!(unread.contains("NOT read (give --lake"), "{unread}");

    // An evidence pack over the period says which of its rows are in the lake, not in it.
    let pack = dir.path().join("pack.zip");
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    ok(tokentrail(&[
        "evidence",
        "--db",
        db_arg,
        "--criteria",
        "CC7.2",
        "--from",
        "2020-01-01T00:00:00Z",
        "--to",
        &now,
        "--out",
        pack.to_str().unwrap(),
    ]));
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&pack).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_reader(zip.by_name("manifest.json").unwrap()).unwrap();
    let archived = manifest["archived"].as_str().expect("the manifest states the archived rows");
    let evicted_requests = {
        let conn = connect(&db);
        count(&conn, "SELECT sum(rows) FROM lake_evictions WHERE table_name = 'cosmos_requests'")
    };
    assert!(archived.contains(&format!("{evicted_requests} cosmos_requests rows")), "{archived}");
    let mut report = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("report.html").unwrap(), &mut report).unwrap();
    assert!(report.contains("INCOMPLETE PERIOD: Rows of this period that retention moved"), "the report's banner");

    // A changed archived file is named by verify.
    let conn = connect(&db);
    let victim: String = count_path(&conn);
    drop(conn);
    let path = lake.join(&victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    let broken = tokentrail(&["verify", "--db", db_arg, "--lake", lake_arg]);
    let text = String::from_utf8_lossy(&broken.stdout);
    assert!(!broken.status.success() && text.contains("chain BROKEN") && text.contains(&victim), "{text}");

    // The status API and page say what is in the lake and what left the database.
    // (last: the application keeps the database open)
    {
        let store = std::sync::Arc::new(
            tokentrail::store::Store::open(&db, &tokentrail::store::StoreOptions::default()).unwrap(),
        );
        let issuer = crate::common::jwks::TestIssuer::start();
        let (_, base) = crate::common::app::serve(store, &issuer, Vec::new());
        let token = issuer.token(&[tokentrail::auth::Role::Responder]);
        let (code, status) = crate::common::app::call_json(&base, "/api/status", &token, None);
        assert_eq!(code, 200, "{status}");
        let lake_rows = status["lake"].as_array().expect("a lake list");
        let requests = lake_rows.iter().find(|r| r["table_name"] == "cosmos_requests").expect("cosmos_requests");
        assert_eq!(requests["archived_rows"].as_i64(), Some(total), "{requests}");
        assert!(requests["evicted_rows"].as_i64().unwrap() > 0 && requests["evicted_rows"].as_i64() < Some(total));
        assert_eq!(requests["unfinished_segments"].as_i64(), Some(0));
    }
}

/// An evicted signins file.
fn count_path(conn: &duckdb::Connection) -> String {
    conn.query_row(
        "SELECT f.path FROM lake_files f JOIN lake_evictions e USING (first_batch, table_name) \
         WHERE f.table_name = 'signins' ORDER BY f.path LIMIT 1",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// `tokentrail archive` with a retention that lets every archived row go.
fn archive_keeping_nothing(db: &str, lake: &str) -> Output {
    tokentrail(&["archive", "--db", db, "--lake", lake, "--hot-days", "1", "--as-of", "2099-01-01T00:00:00Z"])
}

#[test]
fn retention_deletes_only_rows_that_are_archived() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), "3", "11");
    let lake = dir.path().join("lake");
    let (db_arg, lake_arg) = (db.to_str().unwrap(), lake.to_str().unwrap());
    ok(tokentrail(&["archive", "--db", db_arg, "--lake", lake_arg]));
    // More batches, not absorbed by detection yet: not archivable, so not deletable.
    let file = dir.path().join("more.ndjson");
    let path = file.to_str().unwrap();
    ok(tokentrail(&["generate", "--out", path, "--days", "3", "--seed", "12"]));
    ok(tokentrail(&["ingest", "--db", db_arg, "--commit-rows", "3000", path]));
    let (new_batches, new_rows) = {
        let conn = connect(&db);
        let archived: i64 = count(&conn, "SELECT max(last_batch) FROM lake_segments");
        (
            count(&conn, &format!("SELECT count(*) FROM ingest_batches WHERE batch_id > {archived}")),
            count(&conn, &format!("SELECT count(*) FROM cosmos_requests WHERE batch_id > {archived}")),
        )
    };
    assert!(new_batches > 0 && new_rows > 0);
    let printed = ok(archive_keeping_nothing(db_arg, lake_arg));
    assert!(printed.contains(&format!("{new_batches} batch(es) wait for detection")), "{printed}");
    let conn = connect(&db);
    assert_eq!(count(&conn, "SELECT count(*) FROM cosmos_requests"), new_rows, "only the unarchived rows stay");
    let archived_before: i64 = count(&conn, "SELECT max(last_batch) FROM lake_segments");
    assert_eq!(count(&conn, &format!("SELECT count(*) FROM cosmos_requests WHERE batch_id <= {archived_before}")), 0);
    drop(conn);
    // A lake that lost a file costs no rows: nothing is deleted, and the error names it.
    ok(tokentrail(&["detect", "--db", db_arg]));
    ok(tokentrail(&["archive", "--db", db_arg, "--lake", lake_arg]));
    let conn = connect(&db);
    let gone: String = conn
        .query_row(
            "SELECT path FROM lake_files WHERE table_name = 'cosmos_requests' AND first_batch > ? LIMIT 1",
            [archived_before],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    std::fs::remove_file(lake.join(&gone)).unwrap();
    let refused = archive_keeping_nothing(db_arg, lake_arg);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains(&gone) && stderr.contains("no longer in the lake"),
        "{stderr}"
    );
    let conn = connect(&db);
    assert_eq!(count(&conn, "SELECT count(*) FROM cosmos_requests"), new_rows, "nothing deleted");
}

#[test]
fn killed_ten_times_while_archiving_every_row_ends_in_exactly_one_place() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), "6", "21");
    let lake = dir.path().join("lake");
    let (db_arg, lake_arg) = (db.to_str().unwrap(), lake.to_str().unwrap());
    let (before, as_of) = {
        let conn = connect(&db);
        (hot_days(&conn), as_of_keeping(&conn, 3))
    };
    let args =
        ["archive", "--db", db_arg, "--lake", lake_arg, "--segment-rows", "1500", "--hot-days", "1", "--as-of", &as_of];
    let mut killed_running = 0;
    for round in 0..10u64 {
        // Killed just after a new file lands (and, every other round, a few ms later):
        // mid-segment, between the files, the manifest and the commit that records them.
        let files_before = files_in(&lake);
        let mut child = command(&args).spawn().unwrap();
        while files_in(&lake) == files_before && child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(round % 2 * (5 + 7 * round)));
        if child.try_wait().unwrap().is_none() {
            killed_running += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    assert!(killed_running >= 8, "the kills land while archiving: {killed_running} of 10");
    ok(tokentrail(&args));

    let conn = connect(&db);
    assert_eq!(count(&conn, "SELECT count(*) FROM lake_segments WHERE verified_at IS NULL"), 0);
    assert_eq!(sum(&hot_days(&conn), &archived_days(&conn, &lake)), before);
    // Every file in the lake is one the database knows (no half-archived copy of a row).
    let known: std::collections::BTreeSet<String> = {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT path FROM lake_files UNION ALL SELECT manifest FROM lake_segments {JOURNAL_FILES}"
            ))
            .unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
    };
    let on_disk: std::collections::BTreeSet<String> = walkdir::WalkDir::new(&lake)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(&lake).unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(on_disk, known);
    drop(conn);
    ok(tokentrail(&["verify", "--db", db_arg, "--lake", lake_arg]));
}

/// The journal's files and manifests the database records (src/lake/journal.rs), to add
/// to the segments' with UNION ALL.
pub(crate) const JOURNAL_FILES: &str = "UNION ALL SELECT path FROM lake_link_files UNION ALL SELECT manifest FROM lake_links \
     UNION ALL SELECT path FROM lake_snapshots UNION ALL SELECT manifest FROM lake_snapshots";

fn files_in(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).count()
}

#[test]
fn archive_to_azure_storage_in_azurite() {
    let azurite = Azurite::start();
    azurite.create_container("lake");
    let dir = tempfile::tempdir().unwrap();
    // Four days: a batch holds about two days of this traffic, so with three, whether one
    // lay wholly before the retention depended on the day the test ran (it did not just
    // after midnight UTC on 2026-12-08).
    let db = database(dir.path(), "4", "5");
    let db_arg = db.to_str().unwrap();
    let url = format!("{}/lake/tenant-a", azurite.endpoint());
    let as_of = as_of_keeping(&connect(&db), 2);
    let run = |args: &[&str]| command(args).env("TOKENTRAIL_LAKE_ACCOUNT_KEY", azurite::KEY).output().unwrap();
    let printed = ok(run(&[
        "archive",
        "--db",
        db_arg,
        "--lake",
        &url,
        "--segment-rows",
        "3000",
        "--hot-days",
        "1",
        "--as-of",
        &as_of,
    ]));
    assert!(printed.contains("read back and verified"), "{printed}");
    let conn = connect(&db);
    let files = count(&conn, &format!("SELECT count(*) FROM (SELECT path FROM lake_files {JOURNAL_FILES})"));
    let segments = count(&conn, "SELECT count(*) FROM lake_segments");
    assert!(count(&conn, "SELECT count(*) FROM lake_evictions") > 0);
    drop(conn);
    // The blobs are there, under the prefix, one per file and manifest.
    let store = azurite.object_store("lake");
    let listed: Vec<String> = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let prefix = object_store::path::Path::from("tenant-a");
        store.list(Some(&prefix)).map_ok(|m| m.location.to_string()).try_collect().await.unwrap()
    });
    assert_eq!(listed.len() as i64, files + segments, "{listed:?}");
    assert!(listed.iter().all(|p| p.starts_with("tenant-a/")));
    let verified = ok(run(&["verify", "--db", db_arg, "--lake", &url]));
    assert!(verified.contains("recomputed from it;"), "{verified}");
    // Without the key, an Azurite lake is refused with what to set.
    let refused = tokentrail(&["verify", "--db", db_arg, "--lake", &url]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("TOKENTRAIL_LAKE_ACCOUNT_KEY"));
}

#[test]
fn bad_lake_locations_and_retentions_are_refused_with_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.duckdb");
    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, "").unwrap();
    ok(tokentrail(&["ingest", "--db", db.to_str().unwrap(), empty.to_str().unwrap()]));
    let db_arg = db.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["--lake", "http://storage.example.com/acct/lake"], "only the Azurite emulator"),
        (&["--lake", "ftp://example.com/lake"], "not one TokenTrail writes to"),
        (&["--lake", "http://127.0.0.1:10000/acct"], "http://127.0.0.1:<port>/<account>/<container>"),
        (&["--lake", "x", "--table-hot-days", "users=3"], "not archived: use one of"),
        (&["--lake", "x", "--table-hot-days", "signins=0"], "keep at least 1"),
        (&["--lake", "x", "--table-hot-days", "signins"], "give TABLE=DAYS"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["archive", "--db", db_arg];
        args.extend_from_slice(extra);
        let out = command(&args).current_dir(dir.path()).env_remove("TOKENTRAIL_LAKE_ACCOUNT_KEY").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(expected), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn serve_archives_on_its_schedule_and_keeps_the_hot_days() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), "5", "31");
    let lake = dir.path().join("lake");
    let before = hot_days(&connect(&db));
    let config = dir.path().join("tokentrail.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        &config,
        format!(
            "db = {db:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\ndevelopment_sign_in = true\n\
             [lake]\nurl = {lake:?}\ninterval_minutes = 1\n[retention]\nhot_days = 2\n"
        ),
    )
    .unwrap();
    let checked = ok(tokentrail(&["serve", "--config", config.to_str().unwrap(), "--check-config"]));
    assert!(checked.contains("lake: ") && checked.contains("retention 2 days"), "{checked}");
    let mut child = command(&["serve", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first run starts with the service: its manifest appears in the lake.
    let started = std::time::Instant::now();
    while files_in(&lake.join("manifests")) == 0 && started.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Retention follows the archive in the same run, and /metrics counts both.
    let metrics = |name: &str| -> f64 {
        let text =
            ureq::get(&format!("http://127.0.0.1:{port}/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
        text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    };
    let waiting = std::time::Instant::now();
    while metrics("tokentrail_lake_evicted_rows_total{table=\"cosmos_requests\"}") == 0.0
        && waiting.elapsed() < std::time::Duration::from_secs(30)
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(metrics("tokentrail_lake_segments_total") >= 1.0);
    assert!(metrics("tokentrail_lake_evicted_rows_total{table=\"cosmos_requests\"}") > 0.0);
    assert_eq!(metrics("tokentrail_lake_failures_total"), 0.0);
    assert!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) } == 0);
    assert!(child.wait().unwrap().success());

    let conn = connect(&db);
    assert!(count(&conn, "SELECT count(*) FROM lake_segments WHERE verified_at IS NOT NULL") >= 1);
    assert!(count(&conn, "SELECT count(*) FROM lake_evictions") >= 1, "rows older than 2 days left the database");
    let oldest_hot: String = conn
        .query_row("SELECT min(CAST(CAST(time AS TIMESTAMP) AS DATE))::VARCHAR FROM cosmos_requests", [], |r| r.get(0))
        .unwrap_or_default();
    let first_day = before.keys().find(|(t, _)| t == "cosmos_requests").map(|(_, d)| d.clone()).unwrap();
    assert!(oldest_hot.is_empty() || oldest_hot > first_day, "the oldest day left: {oldest_hot} > {first_day}");
    assert_eq!(sum(&hot_days(&conn), &archived_days(&conn, &lake)), before);
}

#[test]
fn lake_configuration_mistakes_stop_the_check_with_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tokentrail.toml");
    let cases = [
        ("[retention]\nhot_days = 30\n", "[retention] is set but [lake] is not"),
        ("[lake]\nurl = \"http://127.0.0.1:10000/devstoreaccount1/lake\"\n", "TOKENTRAIL_LAKE_ACCOUNT_KEY"),
        ("[lake]\nurl = \"http://storage.example.com/acct/lake\"\n", "only the Azurite emulator"),
        ("[lake]\nurl = \"/tmp/x\"\n[retention.tables]\nusers = 3\n", "not archived: use one of"),
    ];
    for (section, expected) in cases {
        std::fs::write(&config, format!("[http]\ndevelopment_sign_in = true\n{section}")).unwrap();
        let out = command(&["serve", "--config", config.to_str().unwrap(), "--check-config"])
            .env_remove("TOKENTRAIL_LAKE_ACCOUNT_KEY")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(expected), "{section}: {stderr}");
    }
}

#[test]
fn files_planted_in_the_lake_never_count_as_archived() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), "2", "41");
    let lake = dir.path().join("lake");
    let (db_arg, lake_arg) = (db.to_str().unwrap(), lake.to_str().unwrap());
    let (last, day, rows) = {
        let conn = connect(&db);
        let last = count(&conn, "SELECT max(batch_id) FROM ingest_batches");
        let day: String = conn
            .query_row("SELECT min(CAST(CAST(time AS TIMESTAMP) AS DATE))::VARCHAR FROM signins", [], |r| r.get(0))
            .unwrap();
        (last, day, count(&conn, "SELECT count(*) FROM signins"))
    };
    // What the first segment (every batch: under a million rows) will name: one file not
    // Parquet at all, and a manifest that is not one.
    let name = format!("batches-{:012}-{last:012}", 1);
    let parquet = lake.join(format!("table=signins/date={day}/{name}.parquet"));
    let manifest = lake.join(format!("manifests/{name}.json"));
    for (path, bytes) in [(&parquet, &b"PAR1 not really"[..]), (&manifest, &b"{\"files\": 1}"[..])] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let refused = archive_keeping_nothing(db_arg, lake_arg);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains(&format!("{name}.parquet")), "{stderr}");
    std::fs::remove_file(&parquet).unwrap();
    let refused = archive_keeping_nothing(db_arg, lake_arg);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("is not a manifest"), "{stderr}");
    {
        let conn = connect(&db);
        assert_eq!(count(&conn, "SELECT count(*) FROM lake_segments WHERE verified_at IS NOT NULL"), 0);
        assert_eq!(count(&conn, "SELECT count(*) FROM signins"), rows, "nothing deleted");
    }
    // Once the planted manifest is gone the same segment is finished, and verifies.
    std::fs::remove_file(&manifest).unwrap();
    ok(archive_keeping_nothing(db_arg, lake_arg));
    assert_eq!(count(&connect(&db), "SELECT count(*) FROM signins"), 0);
    ok(tokentrail(&["verify", "--db", db_arg, "--lake", lake_arg]));
}
