//! Files into the database: `tokentrail ingest`. Each file under the paths given is
//! read from its checkpoint ([`crate::source::file`]) through the pipeline; a new
//! database is made while the first file is read and parsed.

use super::PipelineOptions;
use crate::source::file::{FileChunks, Plan, discover, source_id};
use crate::store::{Checkpoint, Store, StoreOptions, Writer, describe_all};
use anyhow::{Result, bail};
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};

/// What `tokentrail ingest` did.
#[derive(Debug, Default)]
pub struct FilesReport {
    pub files: usize,
    /// Files with nothing new since they were last ingested.
    pub unchanged: Vec<String>,
    /// Files that could not be (fully) read, with why; what preceded the error is stored.
    pub failed: Vec<(String, String)>,
    pub counts: crate::store::rows::RowCounts,
    /// The ingest batches this run committed.
    pub batches: Option<(i64, i64)>,
}

/// Ingests every file under `paths` (see [`discover`]), each from its checkpoint.
/// A file that fails is reported and the others go on.
pub fn ingest_files(
    store: &Store,
    writer: &mut Writer,
    paths: &[PathBuf],
    options: PipelineOptions,
    progress: ProgressBar,
) -> Result<FilesReport> {
    ingest_into(&mut Opened { store, writer }, paths, options, progress)
}

/// [`ingest_files`] into the database at `db`, made if it does not exist: then the
/// first file is read and parsed while DuckDB makes the database and its schema (~0.1 s
/// of one core: the migrations), since a new database holds no checkpoints. Returns the
/// store, open, with the report.
pub fn ingest_files_at(
    db: &Path,
    store_options: &StoreOptions,
    paths: &[PathBuf],
    options: PipelineOptions,
    progress: ProgressBar,
) -> Result<(Store, FilesReport)> {
    let mut wal = db.as_os_str().to_owned();
    wal.push(".wal");
    if db.exists() || Path::new(&wal).exists() {
        let store = Store::open(db, store_options)?;
        let mut writer = store.writer()?;
        let report = ingest_files(&store, &mut writer, paths, options, progress)?;
        return Ok((store, report));
    }
    let mut target = Creating { db, options: store_options, opened: None, assumed_new: Vec::new(), failed: None };
    let report = ingest_into(&mut target, paths, options, progress)?;
    let store = match target.opened {
        Some((store, _)) => store,
        None => target.open()?.0,
    };
    Ok((store, report))
}

/// Where [`ingest_into`] finds checkpoints and commits.
trait Target {
    fn checkpoint(&mut self, source_id: &str) -> Result<Option<Checkpoint>>;
    /// The writer, for the first commit of a file.
    fn writer(&mut self) -> Result<&mut Writer>;
    /// Why nothing more can be stored, if so.
    fn failed(&self) -> Option<&str>;
}

struct Opened<'a> {
    store: &'a Store,
    writer: &'a mut Writer,
}

impl Target for Opened<'_> {
    fn checkpoint(&mut self, source_id: &str) -> Result<Option<Checkpoint>> {
        self.store.checkpoint(source_id)
    }

    fn writer(&mut self) -> Result<&mut Writer> {
        Ok(self.writer)
    }

    fn failed(&self) -> Option<&str> {
        None
    }
}

/// A database that did not exist when ingest started, opened (made) at the first
/// commit. Until then every file starts from its beginning.
struct Creating<'a> {
    db: &'a Path,
    options: &'a StoreOptions,
    opened: Option<(Store, Writer)>,
    /// The sources read from their beginning before the database was open.
    assumed_new: Vec<String>,
    /// Why the database could not be opened.
    failed: Option<String>,
}

impl Creating<'_> {
    fn open(&self) -> Result<(Store, Writer)> {
        let store = Store::open(self.db, self.options)?;
        // Another process may have made it meanwhile: then a file read from its
        // beginning could be stored twice.
        for source_id in &self.assumed_new {
            if store.checkpoint(source_id)?.is_some() {
                bail!(
                    "{} was created by another process during this ingest, with {source_id} in it already; run the ingest again",
                    self.db.display()
                );
            }
        }
        let writer = store.writer()?;
        Ok((store, writer))
    }
}

impl Target for Creating<'_> {
    fn checkpoint(&mut self, source_id: &str) -> Result<Option<Checkpoint>> {
        match &self.opened {
            Some((store, _)) => store.checkpoint(source_id),
            None => {
                self.assumed_new.push(source_id.to_string());
                Ok(None)
            }
        }
    }

    fn writer(&mut self) -> Result<&mut Writer> {
        if self.opened.is_none() {
            let opened = self.open().inspect_err(|error| self.failed = Some(format!("{error:#}")))?;
            self.opened = Some(opened);
        }
        Ok(&mut self.opened.as_mut().expect("opened above").1)
    }

    fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }
}

fn ingest_into(
    target: &mut dyn Target,
    paths: &[PathBuf],
    options: PipelineOptions,
    progress: ProgressBar,
) -> Result<FilesReport> {
    let files = discover(paths)?;
    let total: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    progress.set_length(total);
    let mut report = FilesReport { files: files.len(), ..FilesReport::default() };
    for path in &files {
        let shown = path.display().to_string();
        progress.set_message(shown.clone());
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let started_at = progress.position();
        let plan = source_id(path)
            .and_then(|id| target.checkpoint(&id))
            .and_then(|checkpoint| FileChunks::open(path, checkpoint.as_ref(), progress.clone()));
        let outcome = match plan {
            Ok(Plan::Unchanged) => {
                tracing::info!(file = %shown, "unchanged since last ingest");
                report.unchanged.push(shown.clone());
                Ok(())
            }
            Ok(Plan::Read(chunks)) => {
                super::run_opening(|| target.writer(), chunks, options.clone(), |receipt, checkpoints| {
                    let first = report.batches.map_or(receipt.batch_id, |(first, _)| first);
                    report.batches = Some((first, receipt.batch_id));
                    report.counts += receipt.counts;
                    tracing::debug!(file = %shown, batch = receipt.batch_id, position = %describe_all(checkpoints), "committed");
                })
                .map(|_| ())
            }
            Err(error) => Err(error),
        };
        if let Err(error) = outcome {
            if target.failed().is_some() {
                return Err(error);
            }
            tracing::warn!(file = %shown, error = format!("{error:#}"), "file not fully ingested");
            report.failed.push((shown, format!("{error:#}")));
        }
        progress.set_position(started_at + size);
    }
    progress.finish_and_clear();
    Ok(report)
}

/// Rows the batches `first..=last` stored, by table and category.
pub fn counts_by_category(store: &Store, first: i64, last: i64) -> Result<Vec<(String, String, i64)>> {
    let conn = store.connection()?;
    let mut stmt = conn.prepare(include_str!("sql/counts_by_category.sql"))?;
    let rows = stmt.query_map([first, last], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<duckdb::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::file::tests::ndjson;

    fn ingest_at(db: &Path, paths: &[PathBuf]) -> Result<(Store, FilesReport)> {
        let options = crate::ingest::PipelineOptions::default();
        ingest_files_at(db, &StoreOptions::default(), paths, options, ProgressBar::hidden())
    }

    #[test]
    fn a_new_database_is_made_while_its_first_file_is_parsed_and_resumed_after() {
        let dir = tempfile::tempdir().unwrap();
        let (db, file) = (dir.path().join("new.duckdb"), dir.path().join("a.ndjson"));
        let record = r#"{"time":"2024-07-30T17:08:01Z","category":"DataPlaneRequests","operationName":"Read"}"#;
        std::fs::write(&file, format!("{record}\n").repeat(3_000)).unwrap();
        let (store, report) = ingest_at(&db, std::slice::from_ref(&file)).unwrap();
        assert_eq!((report.files, report.counts.cosmos, report.failed.len()), (1, 3_000, 0));
        let head = crate::store::chain::stored_head(&store.connection().unwrap()).unwrap();
        assert!(head.is_some(), "the first commit into a new database is chained");
        drop(store);
        // Now the database exists: the file's checkpoint is read, and nothing is added.
        let (store, again) = ingest_at(&db, std::slice::from_ref(&file)).unwrap();
        assert_eq!((again.counts.total(), again.unchanged.len()), (0, 1));
        let rows: i64 =
            store.connection().unwrap().query_row("SELECT count(*) FROM cosmos_requests", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 3_000);
        assert!(crate::evidence::chain::verify(&store, &|_, _| {}).unwrap().verified());
    }

    #[test]
    fn an_ingest_of_no_files_still_makes_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let (db, logs) = (dir.path().join("new.duckdb"), dir.path().join("logs"));
        std::fs::create_dir(&logs).unwrap();
        let (store, report) = ingest_at(&db, &[logs]).unwrap();
        assert_eq!((report.files, report.counts.total()), (0, 0));
        assert!(db.exists());
        let migrated: i64 =
            store.connection().unwrap().query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert!(migrated > 0);
    }

    #[test]
    fn a_database_another_process_made_meanwhile_is_not_ingested_into_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (db, file) = (dir.path().join("raced.duckdb"), dir.path().join("a.ndjson"));
        std::fs::write(&file, ndjson(10, 50)).unwrap();
        // This ingest found no database and reads the file from its start...
        let options = StoreOptions::default();
        let mut target = Creating { db: &db, options: &options, opened: None, assumed_new: Vec::new(), failed: None };
        assert!(target.checkpoint(&source_id(&file).unwrap()).unwrap().is_none());
        // ...while another one makes the database and stores the file.
        drop(ingest_at(&db, std::slice::from_ref(&file)).unwrap());
        let error = target.writer().err().expect("the first commit is refused");
        assert!(format!("{error:#}").contains("created by another process during this ingest"), "{error:#}");
        assert!(target.failed().is_some());
    }

    #[test]
    fn a_database_that_cannot_be_made_fails_the_ingest_once_not_each_file() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = ["a.ndjson", "b.ndjson"].iter().map(|name| dir.path().join(name)).collect();
        for file in &files {
            std::fs::write(file, ndjson(10, 50)).unwrap();
        }
        // Its directory would have to be made where a file is.
        let db = files[0].join("x.duckdb");
        let error = ingest_at(&db, &files).err().expect("no database, no ingest");
        assert!(format!("{error:#}").contains(&files[0].display().to_string()), "{error:#}");
    }
}
