//! Answers that reach back past retention: the API's search, principal pages and evidence
//! packs read the archived rows of their period beside the hot ones, with the same SQL.
//!
//! [`Reader::scope`] finds, per table, the files of the period's evicted rows (from
//! `lake_files` and `lake_evictions`, never by listing the lake, so a file planted there
//! is never read), checks them, hands DuckDB their paths in a session variable, and
//! creates a temporary view named like the table on that connection: the hot rows, and
//! the files' rows of evicted batches (a file also holds rows still hot), so each row is
//! read from exactly one place. DuckDB resolves a name to the temporary schema first, so
//! every query on the connection reads the view, the views and macros it uses too (the
//! coverage of an evidence pack, `request_context`). Other connections are untouched.
//!
//! With a shared lake, instances sharing a balanced hub each store part of the requests;
//! every instance keeps a copy of the last two days of everyone's (`fleet_requests`,
//! [`crate::lake::fleet`]). A scope asked to read [`OTHERS`] adds the copies of events this
//! instance did not store (`NOT here`) to the same view, so a page answers for every
//! instance, each event once.
//!
//! DuckDB reads the files itself (`read_parquet`): a local lake in place; files of Azure
//! Storage are first fetched through object_store into a cache directory, their SHA-256
//! checked. `serve` allows DuckDB that one directory (`Store::lock_down`).

use super::{Lake, Location};
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The lake as the service reads it.
pub struct Reader {
    lake: Lake,
    /// Where DuckDB reads the files: the lake's own directory, or the cache.
    directory: PathBuf,
    cached: bool,
}

/// The archived part of one table in an answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Part {
    pub table: String,
    /// Files read (one per table, day and segment).
    pub files: usize,
    /// Rows retention moved to the lake from batches with days in the period, whether
    /// the query's filters keep them or not.
    pub rows_evicted: i64,
    pub first_day: String,
    pub last_day: String,
}

/// What the queries of one connection read from the lake ([`Reader::scope`]).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub parts: Vec<Part>,
    /// For a manifest: each file read, with its SHA-256.
    pub files: Vec<(String, String)>,
    /// The tables whose view adds the rows other instances stored ([`OTHERS`]).
    pub others: Vec<&'static str>,
}

impl Scope {
    /// The view of `table` says where each row was read (`stored_in`).
    pub fn mixes(&self, table: &str) -> bool {
        self.parts.iter().any(|p| p.table == table) || self.others.contains(&table)
    }
}

/// The tables of which every instance keeps a copy of the rows other instances stored,
/// and the copy's table.
pub const OTHERS: [(&str, &str); 1] = [("cosmos_requests", "fleet_requests")];

/// `tables`' rows stored by other instances, read on `conn` beside this one's (a temporary
/// view per table in [`OTHERS`]; other tables' views of an earlier scope dropped): the
/// scope of a service with a shared lake and no lake of its own.
pub fn others_scope(conn: &duckdb::Connection, tables: &[&'static str], origin: bool) -> Result<Scope> {
    let database: String = conn.query_row("SELECT current_database()", [], |r| r.get(0))?;
    drop_views(conn)?;
    let mut scope = Scope::default();
    for &table in tables.iter().filter(|t| OTHERS.iter().any(|(o, _)| o == *t)) {
        others_view(conn, &database, table, origin)?;
        scope.others.push(table);
    }
    Ok(scope)
}

/// The view of `table` that reads this instance's rows and other instances' (no lake files).
fn others_view(conn: &duckdb::Connection, database: &str, table: &str, origin: bool) -> Result<()> {
    conn.execute_batch(&view(database, table, origin, false, true))
        .with_context(|| format!("reading other instances' {table} beside this one's"))
}

fn drop_views(conn: &duckdb::Connection) -> Result<()> {
    for (table, _) in super::TABLES {
        conn.execute_batch(&format!("DROP VIEW IF EXISTS temp.main.{table}"))?;
    }
    Ok(())
}

impl Reader {
    /// `cache` holds the files of an object-store lake; a directory lake is read in place.
    pub fn new(location: Location, cache: &Path) -> Result<Reader> {
        let (directory, cached) = match &location.directory {
            Some(directory) => (directory.clone(), false),
            None => {
                std::fs::create_dir_all(cache)
                    .with_context(|| format!("creating the lake's cache directory {}", cache.display()))?;
                let cache = cache
                    .canonicalize()
                    .with_context(|| format!("opening the lake's cache directory {}", cache.display()))?;
                (cache, true)
            }
        };
        Ok(Reader { lake: Lake::new(location)?, directory, cached })
    }

    /// The one directory DuckDB must be allowed to read.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    pub fn describe(&self) -> &str {
        self.lake.describe()
    }

    /// The evicted rows of `tables` whose days meet `from..to` (epoch microseconds, `to`
    /// excluded; `None`: unbounded), read on `conn` from here on beside the hot ones (a
    /// temporary view per table; tables of an earlier scope it no longer reaches are
    /// DuckDB's alone again). `origin` adds each row's `stored_in` (`duckdb`, `lake`, or
    /// `other_instance`). With `others`, the tables in [`OTHERS`] add the rows other
    /// instances stored. Each file's size is checked; with `hashed` (evidence), its
    /// SHA-256 too, against the one recorded when it was archived, unless `hashed` holds it
    /// already.
    pub fn scope(
        &self,
        conn: &duckdb::Connection,
        tables: &[&'static str],
        period: (Option<i64>, Option<i64>),
        mut hashed: Option<&mut BTreeSet<String>>,
        origin: bool,
        others: bool,
    ) -> Result<Scope> {
        let day = |micros: i64| chrono::DateTime::from_timestamp_micros(micros).map(|t| t.date_naive());
        let first = period.0.and_then(day).map_or("0001-01-01".into(), |d| d.to_string());
        let last = period.1.and_then(|to| day(to - 1)).map_or("9999-12-31".into(), |d| d.to_string());
        let mut scope = Scope::default();
        let mut stmt = conn.prepare(include_str!("sql/scope_files.sql"))?;
        let database: String = conn.query_row("SELECT current_database()", [], |r| r.get(0))?;
        drop_views(conn)?;
        for &table in tables {
            if !super::TABLES.iter().any(|(t, _)| *t == table) {
                bail!("{table} is not archived");
            }
            let files: Vec<(String, String, i64, String)> = stmt
                .query_map(duckdb::params![table, first, last], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<duckdb::Result<_>>()?;
            let beside = others && OTHERS.iter().any(|(t, _)| *t == table);
            if beside {
                scope.others.push(table);
            }
            if files.is_empty() {
                if beside {
                    others_view(conn, &database, table, origin)?;
                }
                continue;
            }
            let mut paths = Vec::with_capacity(files.len());
            for (relative, sha256, bytes, _) in &files {
                paths.push(self.readable(relative, sha256, *bytes, hashed.as_deref_mut())?);
                scope.files.push((relative.clone(), sha256.clone()));
            }
            let local =
                paths.iter().map(|p| p.to_str().context("a lake path is not UTF-8")).collect::<Result<Vec<_>>>()?;
            // The paths travel as a bound value; only our own table names are in the text.
            conn.execute(&format!("SET VARIABLE lake_files_{table} = string_split(?, chr(10))"), [local.join("\n")])
                .with_context(|| format!("naming the lake's {table} files"))?;
            conn.execute_batch(&view(&database, table, origin, true, beside))
                .with_context(|| format!("reading the lake's {table} beside the database's"))?;
            let rows_evicted: i64 = conn.query_row(
                "SELECT coalesce(sum(rows), 0)::BIGINT FROM lake_evictions \
                 WHERE table_name = ? AND last_day >= CAST(? AS DATE) AND first_day <= CAST(? AS DATE)",
                duckdb::params![table, first, last],
                |r| r.get(0),
            )?;
            scope.parts.push(Part {
                table: table.to_owned(),
                files: files.len(),
                rows_evicted,
                first_day: files.iter().map(|f| f.3.clone()).min().unwrap_or_default(),
                last_day: files.iter().map(|f| f.3.clone()).max().unwrap_or_default(),
            });
        }
        Ok(scope)
    }

    /// The local path of an archived file DuckDB may read, checked (and fetched into the
    /// cache for an object store).
    fn readable(
        &self,
        relative: &str,
        sha256: &str,
        bytes: i64,
        hashed: Option<&mut BTreeSet<String>>,
    ) -> Result<PathBuf> {
        if !plain_relative(relative) {
            bail!("lake_files names {relative:?}, which is not a path the archive writes");
        }
        let path = self.directory.join(relative);
        let size = std::fs::metadata(&path).ok().map(|m| m.len() as i64);
        if self.cached && size != Some(bytes) {
            let fetched = super::read::fetch_checked(&self.lake, relative, sha256)?;
            write_atomically(&path, &fetched)?;
            // Its SHA-256 was just checked.
            if let Some(hashed) = hashed {
                hashed.insert(relative.to_owned());
            }
            return Ok(path);
        }
        match size {
            None => bail!(
                "{relative} is missing from the lake {}: restore it (tokentrail verify --lake names every missing file)",
                self.describe()
            ),
            Some(size) if size != bytes => bail!(
                "{relative} in the lake {} is {size} bytes, it was archived with {bytes}: it has changed; restore it",
                self.describe()
            ),
            Some(_) => {}
        }
        if let Some(hashed) = hashed.filter(|h| !h.contains(relative)) {
            let found = sha256_file(&path)?;
            if found != sha256 {
                bail!(
                    "{relative} in the lake {} has changed: its SHA-256 is {found}, it was archived with {sha256}",
                    self.describe()
                );
            }
            hashed.insert(relative.to_owned());
        }
        Ok(path)
    }
}

/// The temporary view that reads `table` from `database`, and the lake (`lake`: the files
/// named in `lake_files_<table>`) and the copies of other instances' rows (`others`): the
/// table's own name, so the connection's queries, views and macros read them all.
fn view(database: &str, table: &str, origin: bool, lake: bool, others: bool) -> String {
    let database = database.replace('"', "\"\"");
    let with_row_id = super::TABLES.iter().any(|(t, extra)| *t == table && !extra.is_empty());
    let stored_in = |place: &str| if origin { format!(", '{place}' AS stored_in") } else { String::new() };
    let hot_id = if with_row_id { "rowid AS rowid, " } else { "" };
    // Qualified by the database: `main.<table>` would be the temporary schema's, this view.
    let mut parts = vec![format!("SELECT {hot_id}*{} FROM \"{database}\".main.{table}", stored_in("duckdb"))];
    if lake {
        let columns = if with_row_id { "* EXCLUDE (row_id), row_id AS rowid" } else { "*" };
        parts.push(format!(
            "SELECT {columns}{} FROM read_parquet(getvariable('lake_files_{table}'), \
             hive_partitioning = false, union_by_name = true) \
             WHERE batch_id IN (SELECT batch_id FROM \"{database}\".main.lake_evictions WHERE table_name = '{table}')",
            stored_in("lake")
        ));
    }
    if let Some((_, copy)) = OTHERS.iter().find(|(t, _)| *t == table).filter(|_| others) {
        // Their row id across instances (`fleet_row_id`) stands for the rowid.
        parts.push(format!(
            "SELECT fleet_id AS rowid, * EXCLUDE (fleet_id, copied_at, kept, here){} \
             FROM \"{database}\".main.{copy} WHERE NOT here",
            stored_in("other_instance")
        ));
    }
    format!("CREATE OR REPLACE TEMP VIEW {table} AS {}", parts.join(" UNION ALL BY NAME "))
}

/// A path as `lake::file_path` makes them: `table=…/date=…/….parquet`, nothing that
/// climbs out of the lake or quotes.
fn plain_relative(path: &str) -> bool {
    path.starts_with("table=")
        && path.ends_with(".parquet")
        && !path.contains("..")
        && path.chars().all(|c| c.is_ascii_alphanumeric() || "_-=./".contains(c))
}

fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest as _;
    let mut file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(crate::store::chain::hex(&hasher.finalize().into()))
}

/// Writes the cache's copy so a reader never sees half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().context("a cached file has no directory")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = path.with_extension("parquet.part");
    std::fs::write(&staging, bytes).with_context(|| format!("writing {}", staging.display()))?;
    std::fs::rename(&staging, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_archives_own_paths_are_read() {
        assert!(plain_relative("table=signins/date=2026-01-01/batches-000000000001-000000000002.parquet"));
        for bad in [
            "/etc/passwd",
            "table=signins/../../etc/x.parquet",
            "table=signins/date=x/a'.parquet",
            "table=signins/date=2026-01-01/a.csv",
            "manifests/batches-1-2.json",
        ] {
            assert!(!plain_relative(bad), "{bad}");
        }
    }
}
