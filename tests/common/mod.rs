//! What the integration tests share: a real DuckDB file in a temp dir, ingest of
//! real files through the real pipeline, and small query helpers.
#![allow(dead_code)]

pub mod app;
pub mod azurite;
pub mod demo;
pub mod jwks;

use std::path::{Path, PathBuf};
use tempfile::TempDir;
use tokentrail::ingest::PipelineOptions;
use tokentrail::ingest::files::{FilesReport, ingest_files};
use tokentrail::store::{Store, StoreOptions};

pub struct TestDb {
    pub dir: TempDir,
    pub store: Store,
}

impl TestDb {
    pub fn new() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("test.duckdb"), &StoreOptions::default()).expect("open store");
        TestDb { dir, store }
    }

    /// The database file `name` already in `dir` (migrated as `Store::open` does).
    pub fn open_in(dir: TempDir, name: &str) -> TestDb {
        let store = Store::open(&dir.path().join(name), &StoreOptions::default()).expect("open store");
        TestDb { dir, store }
    }

    /// Writes `content` to a file named `name` in the temp dir and returns its path.
    pub fn file(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn ingest(&self, paths: &[PathBuf]) -> FilesReport {
        let mut writer = self.store.writer().expect("writer");
        self.ingest_with(&mut writer, paths)
    }

    pub fn ingest_with(&self, writer: &mut tokentrail::store::Writer, paths: &[PathBuf]) -> FilesReport {
        let options = PipelineOptions { workers: 2, ..PipelineOptions::default() };
        ingest_files(&self.store, writer, paths, options, indicatif::ProgressBar::hidden()).expect("ingest")
    }

    /// One value from one row.
    pub fn value<T: duckdb::types::FromSql>(&self, sql: &str) -> T {
        let conn = self.store.connection().unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn count(&self, table: &str) -> i64 {
        self.value(&format!("SELECT count(*) FROM {table}"))
    }

    /// Every row of `sql` as strings (NULL as "NULL"), for comparing whole rows.
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let conn = self.store.connection().unwrap();
        let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let mut rows = stmt.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let n = row.as_ref().column_count();
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                let v: Option<String> = row.get(i).unwrap_or_else(|e| panic!("{sql} column {i}: {e}"));
                values.push(v.unwrap_or_else(|| "NULL".into()));
            }
            out.push(values);
        }
        out
    }
}

/// Copies of the published samples (`shared/samples/public`), kept in the repo so
/// the tests run on a machine that has only this repository.
pub fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples")
}

/// Writes the records of `events` to `path`, one JSON object a line, as Azure Monitor
/// archives them.
pub fn write_ndjson<'a>(path: &Path, events: impl IntoIterator<Item = &'a tokentrail::synth::Event>) {
    tokentrail::synth::write_ndjson(std::fs::File::create(path).unwrap(), events).unwrap();
}

/// Ingests `events` into `store` as `files` NDJSON files written in `dir` (`<name>-<i>.ndjson`),
/// one by one: a batch each at least, as many files arriving over time give.
pub fn ingest_in_files(store: &Store, dir: &Path, name: &str, events: &[tokentrail::synth::Event], files: usize) {
    let mut writer = store.writer().expect("writer");
    for (i, slice) in events.chunks(events.len().div_ceil(files).max(1)).enumerate() {
        let path = dir.join(format!("{name}-{i}.ndjson"));
        write_ndjson(&path, slice);
        let options = PipelineOptions { workers: 2, ..PipelineOptions::default() };
        let report =
            ingest_files(store, &mut writer, &[path], options, indicatif::ProgressBar::hidden()).expect("ingest");
        assert!(report.failed.is_empty(), "{:?}", report.failed);
    }
}
