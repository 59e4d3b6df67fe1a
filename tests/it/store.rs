//! Schema, migrations and the Arrow-to-table contract.

use crate::common;
use common::TestDb;
use tokentrail::store::migrate::MIGRATIONS;
use tokentrail::store::rows::{CosmosRows, QuarantineRows, RawRows, SignInRows};
use tokentrail::store::{Store, StoreOptions};

#[test]
fn every_migration_file_is_applied_in_order() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".sql").to_string())
        .collect();
    files.sort();
    let known: Vec<String> = MIGRATIONS.iter().map(|m| m.name.to_string()).collect();
    assert_eq!(files, known, "migrations/ and store::migrate::MIGRATIONS must list the same files");
    for (i, m) in MIGRATIONS.iter().enumerate() {
        assert_eq!(m.version, i as i32 + 1);
        assert!(m.name.starts_with(&format!("{:04}_", m.version)));
    }
    let db = TestDb::new();
    let applied = db.rows("SELECT version::VARCHAR, name FROM schema_migrations ORDER BY version");
    let expected: Vec<Vec<String>> =
        MIGRATIONS.iter().map(|m| vec![m.version.to_string(), m.name.to_string()]).collect();
    assert_eq!(applied, expected);
}

#[test]
fn a_database_made_by_the_first_migration_upgrades_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.duckdb");
    {
        let old = Store::open(&path, &StoreOptions { migrate_up_to: Some(1), ..StoreOptions::default() }).unwrap();
        let conn = old.connection().unwrap();
        let versions: i64 = conn.query_row("SELECT max(version) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(versions, 1);
        let view: i64 = conn
            .query_row("SELECT count(*) FROM duckdb_views() WHERE view_name = 'ingest_status'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(view, 0, "version 1 has no ingest_status view");
        // What the version-1 binary's ingest wrote (today's writer also fills columns that
        // later migrations added, so it cannot write a version-1 database).
        conn.execute_batch(
            "INSERT INTO cosmos_requests (time, operation, status_code, batch_id)
                 VALUES ('2024-01-01T00:00:00Z', 'Read', 200, 1);
             INSERT INTO ingest_batches VALUES (1, now(), 'file:r.json', 'line 1', 1, 0, 0, 0);
             INSERT INTO checkpoints (source_id, kind, byte_offset, line, complete, updated_at, batch_id)
                 VALUES ('file:r.json', 'file', 120, 1, true, now(), 1);",
        )
        .unwrap();
    }
    let upgraded = Store::open(&path, &StoreOptions::default()).unwrap();
    let conn = upgraded.connection().unwrap();
    let versions: Vec<i32> = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let all: Vec<i32> = (1..=tokentrail::store::migrate::MIGRATIONS.len() as i32).collect();
    assert_eq!(versions, all);
    let (rows, cosmos): (i64, i64) = conn
        .query_row("SELECT count(*), sum(cosmos_rows) FROM ingest_status", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((rows, cosmos), (1, 1), "the old data shows through the new view");
    let line: i64 = conn.query_row("SELECT line FROM checkpoints", [], |r| r.get(0)).unwrap();
    assert_eq!(line, 1, "the source's checkpoint survives the move to a row per lane (migration 8)");
}

#[test]
fn a_changed_or_newer_schema_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.duckdb");
    {
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        store
            .connection()
            .unwrap()
            .execute_batch("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
            .unwrap();
    }
    let error = Store::open(&path, &StoreOptions::default()).err().expect("refused").to_string();
    assert!(error.contains("migration 1 was changed"), "{error}");
    let newer = dir.path().join("newer.duckdb");
    {
        let store = Store::open(&newer, &StoreOptions::default()).unwrap();
        let conn = store.connection().unwrap();
        conn.execute_batch("INSERT INTO schema_migrations (version, name, checksum) VALUES (99, '0099_future', 'x')")
            .unwrap();
    }
    let error = Store::open(&newer, &StoreOptions::default()).err().expect("refused").to_string();
    assert!(error.contains("newer version"), "{error}");
}

#[test]
fn read_only_open_of_a_missing_database_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let error =
        Store::open(&dir.path().join("none.duckdb"), &StoreOptions { read_only: true, ..StoreOptions::default() })
            .err()
            .expect("refused")
            .to_string();
    assert!(error.contains("no database at") && error.contains("tokentrail ingest"), "{error}");
}

fn arrow_to_duckdb(field: &arrow::datatypes::Field) -> String {
    use arrow::datatypes::DataType::*;
    match field.data_type() {
        Utf8 => "VARCHAR".into(),
        Int32 => "INTEGER".into(),
        Int64 => "BIGINT".into(),
        Float64 => "DOUBLE".into(),
        Boolean => "BOOLEAN".into(),
        Binary => "BLOB".into(),
        Timestamp(_, Some(tz)) if tz.as_ref() == "UTC" => "TIMESTAMP WITH TIME ZONE".into(),
        List(item) if item.data_type() == &Utf8 => "VARCHAR[]".into(),
        other => panic!("no DuckDB column type for {other:?}"),
    }
}

#[test]
fn arrow_batches_match_the_tables_column_for_column() {
    let db = TestDb::new();
    let tables = [
        ("cosmos_requests", CosmosRows::schema()),
        ("signins", SignInRows::schema()),
        ("raw_events", RawRows::schema()),
        ("quarantine", QuarantineRows::schema()),
    ];
    for (table, schema) in tables {
        let mut expected: Vec<Vec<String>> =
            schema.fields().iter().map(|f| vec![f.name().clone(), arrow_to_duckdb(f)]).collect();
        // batch_id ends the tables as created; migration 17 added the position columns after it.
        let batch_id_at = match table {
            "cosmos_requests" | "signins" => expected.iter().position(|c| c[0] == "source").unwrap(),
            _ => expected.len(),
        };
        expected.insert(batch_id_at, vec!["batch_id".into(), "BIGINT".into()]);
        if table == "raw_events" {
            // Stored as DuckDB's JSON type; Arrow carries it as text.
            let record = expected.iter_mut().find(|c| c[0] == "record").unwrap();
            record[1] = "JSON".into();
        }
        let actual = db.rows(&format!(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position"
        ));
        assert_eq!(actual, expected, "{table}");
    }
}

#[test]
fn one_writer_at_a_time_and_free_again_once_dropped() {
    let db = TestDb::new();
    let writer = db.store.writer().unwrap();
    let error = db.store.writer().err().expect("a second writer is refused").to_string();
    assert!(error.contains("already in use"), "{error}");
    drop(writer);
    assert!(db.store.writer().is_ok());
}

/// Insertion order is dropped only on the ingest writer's connections: every other
/// connection, a locked-down service's included, keeps it (an evidence population must
/// come out in the same order on every run), and a writer opened before lock-down keeps
/// committing with all its lanes after it.
#[test]
fn readers_keep_insertion_order_and_a_writer_opened_before_lock_down_still_commits() {
    use tokentrail::store::rows::TableBatches;
    let db = TestDb::new();
    let mut writer = db.store.writer().unwrap();
    db.store.lock_down(&[]).unwrap();
    let conn = db.store.connection().unwrap();
    let kept: bool = conn.query_row("SELECT current_setting('preserve_insertion_order')", [], |r| r.get(0)).unwrap();
    assert!(kept, "a reading connection keeps insertion order");
    let refused = conn.execute_batch("SET SESSION preserve_insertion_order = false");
    assert!(refused.is_err(), "a locked-down store refuses to change it");
    writer.commit(TableBatches::default(), &at_line("file:locked", 7)).unwrap();
    assert_eq!(writer.lanes(3).unwrap().len(), 3, "every lane's connection was opened before lock-down");
    assert_eq!(db.store.checkpoint("file:locked").unwrap().unwrap().line, Some(7));
}

/// A commit is written as whole DuckDB row groups plus one partial row group, and
/// checkpoints leave them so. DuckDB's default merges runs of row groups that fit in
/// fewer, which rewrote the whole row groups between two partial ones, single-threaded,
/// at every checkpoint (BENCHMARKS.md, "Row groups, commit size and priorities").
#[test]
fn checkpoints_keep_the_row_groups_commits_wrote() {
    const ROW_GROUP: i64 = tokentrail::store::ROW_GROUP_ROWS as i64;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cosmos.ndjson");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    tokentrail::synth::write_cosmos_ndjson(&mut out, 260_000, 1).unwrap();
    std::io::Write::flush(&mut out).unwrap();
    drop(out);
    let path = dir.path().join("row_groups.duckdb");
    {
        // One DuckDB thread, as `tokentrail ingest` runs: a commit's rows then stay in order.
        let store = Store::open(&path, &StoreOptions { threads: Some(1), ..StoreOptions::default() }).unwrap();
        let mut writer = store.writer().unwrap();
        let options = tokentrail::ingest::PipelineOptions { workers: 2, ..Default::default() };
        tokentrail::ingest::files::ingest_files(
            &store,
            &mut writer,
            &[input],
            options,
            indicatif::ProgressBar::hidden(),
        )
        .unwrap();
        // The file's last commit had DuckDB compress its row groups as they filled;
        // the setting is back to DuckDB's default for whatever comes next.
        let buffered: i64 = store
            .connection()
            .unwrap()
            .query_row("SELECT current_setting('write_buffer_row_group_count')::BIGINT", [], |r| r.get(0))
            .unwrap();
        assert_eq!(buffered, 5);
    } // closing the database checkpoints it
    let store = Store::open(&path, &StoreOptions { read_only: true, ..StoreOptions::default() }).unwrap();
    let conn = store.connection().unwrap();
    let ints = |sql: &str| -> Vec<i64> {
        conn.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let commits = ints("SELECT cosmos_rows FROM ingest_batches ORDER BY batch_id");
    assert_eq!(commits.iter().sum::<i64>(), 260_000);
    assert!(commits.len() >= 2, "commits of about a row group each: {commits:?}");
    let expected: Vec<i64> = commits
        .iter()
        .flat_map(|rows| {
            let whole = std::iter::repeat_n(ROW_GROUP, (rows / ROW_GROUP) as usize);
            whole.chain((rows % ROW_GROUP > 0).then_some(rows % ROW_GROUP))
        })
        .collect();
    let row_groups = ints(
        "SELECT max(count) FROM pragma_storage_info('cosmos_requests') GROUP BY row_group_id ORDER BY row_group_id",
    );
    assert_eq!(row_groups, expected, "row groups after the checkpoint (commits: {commits:?})");
    // Near the end of the file, commits share the rows left so that none falls under a
    // row group (it would go through the write-ahead log and be compressed on close).
    assert!(commits.iter().all(|rows| *rows >= ROW_GROUP), "every commit at least a row group: {commits:?}");
}

/// Where the source `source_id` stands after line `line`.
fn at_line(source_id: &str, line: i64) -> Vec<tokentrail::store::Checkpoint> {
    let mut checkpoint = tokentrail::store::Checkpoint::new(source_id, tokentrail::store::SourceKind::File);
    checkpoint.line = Some(line);
    vec![checkpoint]
}

/// A batch's input, whole: its rows, then where its sources stand.
fn batch_input(
    batches: tokentrail::store::rows::TableBatches,
    checkpoints: Vec<tokentrail::store::Checkpoint>,
) -> std::sync::mpsc::Receiver<tokentrail::store::Part> {
    let (parts, input) = std::sync::mpsc::channel();
    parts.send(tokentrail::store::Part::Rows(batches)).unwrap();
    parts.send(tokentrail::store::Part::End(checkpoints)).unwrap();
    input
}

/// Three lanes hold three open batches of one source at once: each replaces its own
/// checkpoint row (two open transactions replacing one row would conflict), and they
/// commit in batch order, round after round.
#[test]
fn three_open_batches_of_one_source_commit_in_order() {
    use tokentrail::store::{Checkpoint, rows::TableBatches};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("lanes3.duckdb"), &StoreOptions::default()).unwrap();
    let mut writer = store.writer().unwrap();
    let input = |line: i64| batch_input(TableBatches::default(), at_line("file:three", line));
    let first = writer.next_batch_id();
    let committed = std::sync::Mutex::new(Vec::new());
    let mut lanes = writer.lanes(3).unwrap();
    assert_eq!(lanes.len(), 3);
    for round in 0..2i64 {
        let base = first + 3 * round;
        let record = |receipt: &tokentrail::store::BatchReceipt, _: &[Checkpoint]| {
            committed.lock().unwrap().push(receipt.batch_id)
        };
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            // The last batch of the round is stored first, the first batch last.
            for (i, lane) in lanes.iter_mut().enumerate().rev() {
                let batch = base + i as i64;
                handles.push(scope.spawn(move || lane.commit(batch, input(10 * (batch + 1)), false, record)));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            for handle in handles {
                handle.join().unwrap().unwrap();
            }
        });
    }
    assert_eq!(*committed.lock().unwrap(), (first..first + 6).collect::<Vec<_>>());
    drop(lanes);
    assert_eq!(store.checkpoint("file:three").unwrap().unwrap().line, Some(10 * (first + 6)));
    let verified = tokentrail::evidence::chain::verify(&store, &|_, _| {}).unwrap();
    assert!(verified.failures.is_empty(), "{verified:?}");
}

/// Two writer lanes store batches at once and commit them in batch order; a batch that
/// fails rolls back the batches after it, never those before.
#[test]
fn lanes_commit_in_order_and_a_failure_stops_the_batches_after_it() {
    use tokentrail::store::{Checkpoint, Part, rows::TableBatches};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("lanes.duckdb"), &StoreOptions::default()).unwrap();
    let mut writer = store.writer().unwrap();
    let input = |batches: TableBatches, line: i64| batch_input(batches, at_line("file:lanes", line));
    let first = writer.next_batch_id();
    let committed = std::sync::Mutex::new(Vec::new());
    {
        let mut lanes = writer.lanes(2).unwrap();
        assert_eq!(lanes.len(), 2);
        let (a, b) = lanes.split_at_mut(1);
        let (a, b) = (&mut a[0], &mut b[0]);
        let record = |receipt: &tokentrail::store::BatchReceipt, _: &[Checkpoint]| {
            committed.lock().unwrap().push(receipt.batch_id)
        };
        std::thread::scope(|scope| {
            // The second batch is stored first; its commit waits for the first.
            let second = scope
                .spawn(|| b.commit(first + 1, input(TableBatches::default(), 20), false, record).map(|r| r.batch_id));
            std::thread::sleep(std::time::Duration::from_millis(300));
            assert!(committed.lock().unwrap().is_empty(), "batch {} committed before batch {first}", first + 1);
            a.commit(first, input(TableBatches::default(), 10), false, record).unwrap();
            assert_eq!(second.join().unwrap().unwrap(), first + 1);
        });
    }
    assert_eq!(*committed.lock().unwrap(), [first, first + 1]);
    assert_eq!(store.checkpoint("file:lanes").unwrap().unwrap().line, Some(20));

    // A batch whose rows DuckDB refuses (a column the table does not have) fails, and the
    // batch after it rolls back, while the one before it commits.
    let bogus = {
        let schema = arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "no_such_column",
            arrow::datatypes::DataType::Int64,
            false,
        )]);
        let column: arrow::array::ArrayRef = std::sync::Arc::new(arrow::array::Int64Array::from(vec![1]));
        arrow::record_batch::RecordBatch::try_new(std::sync::Arc::new(schema), vec![column]).unwrap()
    };
    {
        let mut lanes = writer.lanes(2).unwrap();
        let (a, b) = lanes.split_at_mut(1);
        let (a, b) = (&mut a[0], &mut b[0]);
        let failed = b.commit(
            first + 3,
            input(TableBatches { cosmos: vec![bogus], ..TableBatches::default() }, 40),
            false,
            |_, _| {},
        );
        assert!(failed.unwrap_err().to_string().contains("cosmos_requests"), "the failing batch names its table");
        a.commit(first + 2, input(TableBatches::default(), 30), false, |_, _| {}).unwrap();
        let after = a.commit(first + 4, input(TableBatches::default(), 50), false, |_, _| {}).unwrap_err().to_string();
        assert!(after.contains(&format!("batch {}, before it, failed", first + 3)), "{after}");
    }
    assert_eq!(store.checkpoint("file:lanes").unwrap().unwrap().line, Some(30));
    let conn = store.connection().unwrap();
    let last: i64 = conn.query_row("SELECT max(batch_id) FROM ingest_batches", [], |r| r.get(0)).unwrap();
    assert_eq!(last, first + 2);
    // The writer goes on after the failed batch's id.
    assert_eq!(writer.next_batch_id(), first + 3);
    writer.commit(TableBatches::default(), &at_line("file:lanes", 60)).unwrap();
    assert_eq!(store.checkpoint("file:lanes").unwrap().unwrap().line, Some(60));
    // A batch whose input stops before its end rolls back.
    {
        let mut lanes = writer.lanes(2).unwrap();
        let (parts, cut) = std::sync::mpsc::channel();
        parts.send(Part::Rows(TableBatches::default())).unwrap();
        drop(parts);
        let next = first + 4;
        let error = lanes[0].commit(next, cut, false, |_, _| {}).unwrap_err().to_string();
        assert!(error.contains("ended before the batch did"), "{error}");
    }
    assert_eq!(store.checkpoint("file:lanes").unwrap().unwrap().line, Some(60));
    let verified = tokentrail::evidence::chain::verify(&store, &|_, _| {}).unwrap();
    assert!(verified.failures.is_empty(), "the chain links the batches in commit order: {verified:?}");
}

#[test]
fn a_quiet_checkpoint_empties_a_log_over_its_threshold_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    // As `serve` opens it: a high threshold, so DuckDB itself does not checkpoint.
    let options = StoreOptions { checkpoint_threshold: Some("1GB".into()), ..StoreOptions::default() };
    let db = TestDb { store: Store::open(&dir.path().join("q.duckdb"), &options).unwrap(), dir };
    let events = {
        let generator = tokentrail::synth::Generator::new(tokentrail::synth::Tenant::new(2), 2);
        let monday = chrono::DateTime::parse_from_rfc3339("2025-03-03T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
        generator.history(monday, monday + chrono::Duration::hours(12), &[]).0
    };
    let path = db.dir.path().join("h.ndjson");
    common::write_ndjson(&path, &events);
    db.ingest(&[path]);
    let (rows, wal) = (db.count("cosmos_requests"), db.store.wal_bytes());
    assert!(wal > 64 * 1024, "the commit went to the log: {wal} bytes");
    assert!(!db.store.checkpoint_over(wal).unwrap(), "a log at the threshold is left alone");
    assert!(db.store.checkpoint_over(64 * 1024).unwrap());
    assert!(db.store.wal_bytes() < 64 * 1024, "{} bytes left in the log", db.store.wal_bytes());
    assert_eq!(db.count("cosmos_requests"), rows);
    assert!(!db.store.checkpoint_over(64 * 1024).unwrap(), "nothing left to checkpoint");
}

/// An evidence pack's snapshot (`store::snapshot_at`) begins with no write transaction in
/// flight: a status change stamped (its transaction's start) before the pack's `made_at`
/// but committing after the pack began would be counted by a re-run of the pack and not
/// by the pack itself.
#[test]
fn a_pack_snapshot_holds_every_change_stamped_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open(&dir.path().join("pack.duckdb"), &StoreOptions::default()).unwrap());
    let began = std::sync::mpsc::channel();
    let writer = {
        let store = store.clone();
        let began = began.0;
        std::thread::spawn(move || {
            tokentrail::store::in_transaction(&store.connection().unwrap(), |conn| {
                conn.execute(
                    "INSERT INTO finding_history (finding_id, changed_at, changed_by, from_status, to_status) \
                     VALUES (1, get_current_timestamp(), 'someone', 'open', 'acknowledged')",
                    [],
                )?;
                began.send(()).unwrap();
                // Still writing when the pack begins.
                std::thread::sleep(std::time::Duration::from_millis(700));
                Ok(())
            })
            .unwrap();
        })
    };
    began.1.recv().unwrap();
    let pack = store.connection().unwrap();
    let started = std::time::Instant::now();
    let made_at = tokentrail::store::snapshot_at(&pack).unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "the snapshot waited for the writer");
    writer.join().unwrap();
    let stamped_before = "SELECT count(*) FROM finding_history WHERE epoch_us(changed_at) < ?";
    let in_pack: i64 = pack.query_row(stamped_before, [made_at], |r| r.get(0)).unwrap();
    let rerun: i64 = store.connection().unwrap().query_row(stamped_before, [made_at], |r| r.get(0)).unwrap();
    assert_eq!((in_pack, rerun), (1, 1), "the change is in the pack's snapshot as in a re-run's");
}
