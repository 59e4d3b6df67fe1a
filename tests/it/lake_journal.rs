//! The lake's journal through the real binary: `tokentrail archive` copies access_log and
//! finding_history by whole links of append_chain, and snapshots findings; each row lands
//! once whatever runs are repeated or interrupted, and a file that is not what was chained
//! never counts and is named.

use crate::lake::{connect, count, ok, tokentrail};
use std::path::{Path, PathBuf};

/// A database with `days` of generated traffic and every attack scenario, detected: it
/// has findings and their (chained) history.
fn database(dir: &Path, days: &str, seed: &str) -> PathBuf {
    let db = dir.join("t.duckdb");
    let file = dir.join("g.ndjson");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    ok(tokentrail(&["generate", "--out", &path(&file), "--days", days, "--seed", seed, "--scenarios", "all"]));
    ok(tokentrail(&["ingest", "--db", &path(&db), &path(&file)]));
    ok(tokentrail(&["detect", "--db", &path(&db)]));
    db
}

/// Appends `rows` access_log rows, one per hour back from `end`, in one transaction (one
/// link), as the service's access log writer does.
fn log_access(db: &Path, end: &str, rows: i64) {
    let store = tokentrail::store::Store::open(db, &tokentrail::store::StoreOptions::default()).unwrap();
    tokentrail::store::append::append(&store, "access_log", |conn| {
        conn.execute(
            "INSERT INTO access_log (time, oid, method, endpoint, path, parameters, status, rows, duration_ms, auth) \
             SELECT CAST(CAST(? AS TIMESTAMP) - to_hours(i) AS TIMESTAMPTZ), 'oid-' || i, 'GET', '/api/findings', '/api/findings', \
             '{\"limit\": 10}', 200, i, 1.5 * i, 'bearer' FROM range(?) t(i)",
            duckdb::params![end, rows],
        )?;
        Ok(())
    })
    .unwrap();
}

/// Rows of `table` in the lake, and how many distinct ids, as readers see the directory.
fn in_lake(lake: &Path, table: &str) -> (i64, i64) {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    conn.query_row(
        &format!(
            "SELECT count(*), count(DISTINCT id) FROM read_parquet('{}/table={table}/*/*.parquet', hive_partitioning = true)",
            lake.display()
        ),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

fn archive(db: &str, lake: &str) -> std::process::Output {
    tokentrail(&["archive", "--db", db, "--lake", lake])
}

/// Every access_log and finding_history row is in the lake once, under its own day.
fn assert_each_row_once(db: &Path, lake: &Path) {
    let conn = connect(db);
    for (table, time) in [("access_log", "time"), ("finding_history", "changed_at")] {
        let rows = count(&conn, &format!("SELECT count(*) FROM {table}"));
        assert!(rows > 0, "{table} has rows");
        assert_eq!(in_lake(lake, table), (rows, rows), "{table}");
        let misplaced = count(
            &conn,
            &format!(
                "SELECT count(*) FROM read_parquet('{}/table={table}/*/*.parquet', hive_partitioning = true) \
                 WHERE date <> CAST(CAST({time} AS TIMESTAMP) AS DATE)",
                lake.display()
            ),
        );
        assert_eq!(misplaced, 0, "{table}: every row under its day");
    }
}

#[test]
fn archiving_twice_puts_each_chained_row_in_the_lake_once_and_verify_names_a_changed_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), "2", "51");
    let lake = dir.path().join("lake");
    let (db_arg, lake_arg) = (db.to_str().unwrap(), lake.to_str().unwrap());
    log_access(&db, "2026-03-03 12:00:00", 60);
    log_access(&db, "2026-03-04 06:00:00", 5);

    let printed = ok(archive(db_arg, lake_arg));
    assert!(printed.contains("archived access_log links 1..2: 65 rows"), "{printed}");
    assert!(printed.contains("archived finding_history links 1.."), "{printed}");
    assert!(printed.contains("archived findings snapshot 1"), "{printed}");
    assert_each_row_once(&db, &lake);

    // Again, with one more link: only it is written; findings unchanged, no new snapshot.
    log_access(&db, "2026-03-05 01:00:00", 3);
    let printed = ok(archive(db_arg, lake_arg));
    assert!(printed.contains("archived access_log links 3..3: 3 rows"), "{printed}");
    assert!(!printed.contains("finding_history links") && !printed.contains("snapshot"), "{printed}");
    assert_each_row_once(&db, &lake);
    {
        let conn = connect(&db);
        assert_eq!(count(&conn, "SELECT count(*) FROM lake_links WHERE archived_at IS NULL"), 0);
        let archived = count(&conn, "SELECT sum(rows) FROM lake_links WHERE table_name = 'access_log'");
        assert_eq!(archived, count(&conn, "SELECT count(*) FROM access_log"));
        // The snapshot holds findings as they are, all columns; nothing left the database.
        assert_eq!(count(&conn, "SELECT count(*) FROM lake_snapshots"), 1);
        let path: String = conn.query_row("SELECT path FROM lake_snapshots", [], |r| r.get(0)).unwrap();
        let snapshot = count(&conn, &format!("SELECT count(*) FROM read_parquet('{}')", lake.join(&path).display()));
        assert_eq!(snapshot, count(&conn, "SELECT count(*) FROM findings"));
        let differ = count(
            &conn,
            &format!(
                "SELECT count(*) FROM (SELECT * FROM findings EXCEPT SELECT * FROM read_parquet('{}', hive_partitioning = false))",
                lake.join(&path).display()
            ),
        );
        assert_eq!(differ, 0, "the snapshot's rows are findings' rows");
    }
    // The manifest lists the files with their SHA-256 and the links they hold.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lake.join("manifests/access_log-links-000000000003-000000000003.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["links"][0]["rows"], 3, "{manifest}");
    assert_eq!(manifest["files"][0]["sha256"].as_str().unwrap().len(), 64, "{manifest}");

    let verified = ok(tokentrail(&["verify", "--db", db_arg, "--lake", lake_arg]));
    assert!(verified.contains("lake journal verified: "), "{verified}");

    // A changed archived links file is named by verify.
    let victim = "table=access_log/date=2026-03-03/links-000000000001-000000000002.parquet";
    let path = lake.join(victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    let broken = tokentrail(&["verify", "--db", db_arg, "--lake", lake_arg]);
    let text = String::from_utf8_lossy(&broken.stdout);
    assert!(!broken.status.success() && text.contains("lake journal BROKEN") && text.contains(victim), "{text}");
}

#[test]
fn an_interrupted_archive_is_finished_without_duplicating_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), "1", "52");
    let lake = dir.path().join("lake");
    let (db_arg, lake_arg) = (db.to_str().unwrap(), lake.to_str().unwrap());
    log_access(&db, "2026-03-03 12:00:00", 40);
    ok(archive(db_arg, lake_arg));
    // As if killed after the files and manifests were written but before the commit
    // that records them: the rerun finds them, checks them and records them once.
    {
        let conn = connect(&db);
        conn.execute_batch(
            "UPDATE lake_links SET archived_at = NULL, manifest = NULL; DELETE FROM lake_link_files; \
             UPDATE lake_snapshots SET archived_at = NULL",
        )
        .unwrap();
    }
    let printed = ok(archive(db_arg, lake_arg));
    assert!(printed.contains("found from an interrupted run"), "{printed}");
    assert_each_row_once(&db, &lake);
    // As if killed after the plan, with half a file written: the half is not counted
    // and is named; removed, the same links are archived.
    log_access(&db, "2026-03-06 12:00:00", 8);
    let name = "table=access_log/date=2026-03-06/links-000000000002-000000000002.parquet";
    let first = lake.join("table=access_log/date=2026-03-03/links-000000000001-000000000001.parquet");
    let half = std::fs::read(&first).unwrap();
    std::fs::create_dir_all(lake.join(name).parent().unwrap()).unwrap();
    std::fs::write(lake.join(name), &half[..half.len() / 2]).unwrap();
    let refused = archive(db_arg, lake_arg);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains(name), "{stderr}");
    {
        let conn = connect(&db);
        assert_eq!(count(&conn, "SELECT count(*) FROM lake_links WHERE archived_at IS NULL"), 1);
        assert_eq!(count(&conn, "SELECT count(*) FROM lake_link_files WHERE first_link = 2"), 0);
    }
    std::fs::remove_file(lake.join(name)).unwrap();
    ok(archive(db_arg, lake_arg));
    assert_each_row_once(&db, &lake);
    ok(tokentrail(&["verify", "--db", db_arg, "--lake", lake_arg]));
}

#[test]
fn a_planted_links_file_with_other_rows_never_counts_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), "1", "53");
    let lake = dir.path().join("lake");
    let (db_arg, lake_arg) = (db.to_str().unwrap(), lake.to_str().unwrap());
    log_access(&db, "2026-03-03 12:00:00", 10);
    let name = "table=access_log/date=2026-03-03/links-000000000001-000000000001.parquet";
    std::fs::create_dir_all(lake.join(name).parent().unwrap()).unwrap();
    // Valid Parquet with the table's columns: one value changed, then one row left out.
    let plants = [
        (
            "SELECT * REPLACE (CASE WHEN id = 3 THEN 'evil' ELSE endpoint END AS endpoint) FROM access_log",
            "rows_digest",
        ),
        ("SELECT * FROM access_log WHERE id <> 3", "the lake holds 9 rows, the link chained 10"),
    ];
    for (query, expected) in plants {
        {
            let conn = connect(&db);
            conn.execute_batch(&format!("COPY ({query}) TO '{}' (FORMAT parquet)", lake.join(name).display())).unwrap();
        }
        let refused = archive(db_arg, lake_arg);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && stderr.contains(name) && stderr.contains(expected), "{stderr}");
        let conn = connect(&db);
        assert_eq!(count(&conn, "SELECT count(*) FROM lake_links WHERE archived_at IS NOT NULL"), 0);
        assert_eq!(count(&conn, "SELECT count(*) FROM lake_link_files"), 0);
        drop(conn);
        std::fs::remove_file(lake.join(name)).unwrap();
    }
    // Refused before its manifest was written: the real files are archived now.
    ok(archive(db_arg, lake_arg));
    assert_each_row_once(&db, &lake);
}
