//! Answers that reach back past retention: the API's search, principal pages and evidence
//! packs read the archived rows of their period beside the hot ones, with the same SQL.
//!
//! [`Reader::scope`] finds, per table, the files of the period's evicted rows (from
//! `lake_files` and `lake_evictions`, never by listing the lake, so a file planted there
//! is never read), checks them, and hands DuckDB their paths in a session variable.
//! [`Scope::wrap`] then puts a common table expression named like the table in front of
//! the query: the hot rows, and the files' rows of evicted batches (a file also holds
//! rows still hot), so each row is read from exactly one place. Tables with no evicted
//! file in the period are left alone, and the query runs as it did.
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

/// What one query reads from the lake ([`Reader::scope`]).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub parts: Vec<Part>,
    /// Whether the CTEs carry a `stored_in` column (`duckdb` or `lake`) per row.
    origin: bool,
    /// For a manifest: each file read, with its SHA-256.
    pub files: Vec<(String, String)>,
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
    /// excluded; `None`: unbounded), made readable on `conn` for [`Scope::wrap`]. `origin`
    /// adds each row's `stored_in`. Each file's size is checked; with `hashed` (evidence),
    /// its SHA-256 too, against the one recorded when it was archived, unless `hashed`
    /// holds it already.
    pub fn scope(
        &self,
        conn: &duckdb::Connection,
        tables: &[&'static str],
        period: (Option<i64>, Option<i64>),
        mut hashed: Option<&mut BTreeSet<String>>,
        origin: bool,
    ) -> Result<Scope> {
        let day = |micros: i64| chrono::DateTime::from_timestamp_micros(micros).map(|t| t.date_naive());
        let first = period.0.and_then(day).map_or("0001-01-01".into(), |d| d.to_string());
        let last = period.1.and_then(|to| day(to - 1)).map_or("9999-12-31".into(), |d| d.to_string());
        let mut scope = Scope { origin, ..Scope::default() };
        let mut stmt = conn.prepare(include_str!("sql/scope_files.sql"))?;
        for &table in tables {
            if !super::TABLES.iter().any(|(t, _)| *t == table) {
                bail!("{table} is not archived");
            }
            let files: Vec<(String, String, i64, String)> = stmt
                .query_map(duckdb::params![table, first, last], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<duckdb::Result<_>>()?;
            if files.is_empty() {
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

impl Scope {
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// `sql` with each table of the scope read from DuckDB and the lake alike: a CTE of
    /// the table's name in front (a query's own `WITH` is continued). Views and macros the
    /// query uses still read DuckDB only.
    pub fn wrap(&self, sql: &str) -> String {
        if self.parts.is_empty() {
            return sql.to_owned();
        }
        let ctes: Vec<String> = self.parts.iter().map(|p| self.cte(&p.table)).collect();
        let ctes = ctes.join(",\n");
        let body = skip_comments(sql);
        let head = &sql[..sql.len() - body.len()];
        let keyword = |text: &str, word: &str| {
            text.len() >= word.len()
                && text[..word.len()].eq_ignore_ascii_case(word)
                && text[word.len()..].starts_with(|c: char| c.is_whitespace())
        };
        if keyword(body, "WITH") {
            let rest = body[4..].trim_start();
            if keyword(rest, "RECURSIVE") {
                return format!("{head}WITH RECURSIVE {ctes},\n{}", &rest[9..]);
            }
            return format!("{head}WITH {ctes},\n{rest}");
        }
        format!("{head}WITH {ctes}\n{body}")
    }

    fn cte(&self, table: &str) -> String {
        let with_row_id = super::TABLES.iter().any(|(t, extra)| *t == table && !extra.is_empty());
        let (hot_origin, lake_origin) =
            if self.origin { (", 'duckdb' AS stored_in", ", 'lake' AS stored_in") } else { ("", "") };
        let (hot_id, lake_columns) =
            if with_row_id { ("rowid AS rowid, ", "* EXCLUDE (row_id), row_id AS rowid") } else { ("", "*") };
        // NOT MATERIALIZED: filters reach both scans when a query reads the table twice.
        format!(
            "{table} AS NOT MATERIALIZED (\
             SELECT {hot_id}*{hot_origin} FROM main.{table} \
             UNION ALL BY NAME \
             SELECT {lake_columns}{lake_origin} FROM read_parquet(getvariable('lake_files_{table}'), \
             hive_partitioning = false, union_by_name = true) \
             WHERE batch_id IN (SELECT batch_id FROM main.lake_evictions WHERE table_name = '{table}'))"
        )
    }
}

/// A path as `lake::file_path` makes them: `table=…/date=…/….parquet`, nothing that
/// climbs out of the lake or quotes.
fn plain_relative(path: &str) -> bool {
    path.starts_with("table=")
        && path.ends_with(".parquet")
        && !path.contains("..")
        && path.chars().all(|c| c.is_ascii_alphanumeric() || "_-=./".contains(c))
}

/// `sql` past its leading blanks and comments.
fn skip_comments(mut sql: &str) -> &str {
    loop {
        let trimmed = sql.trim_start();
        if let Some(rest) = trimmed.strip_prefix("--") {
            sql = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = trimmed.strip_prefix("/*") {
            sql = rest.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return trimmed;
        }
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest as _;
    let mut file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(crate::store::chain::hex(&hasher.finalize().into()))
}

/// Writes the cache's copy so a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
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

    fn scope(tables: &[&str]) -> Scope {
        let parts = tables
            .iter()
            .map(|t| Part {
                table: t.to_string(),
                files: 1,
                rows_evicted: 1,
                first_day: "2026-01-01".into(),
                last_day: "2026-01-01".into(),
            })
            .collect();
        Scope { parts, origin: false, files: Vec::new() }
    }

    #[test]
    fn a_query_keeps_its_comments_and_its_own_with() {
        let s = scope(&["signins"]);
        let plain = s.wrap("-- a note\nSELECT count(*) FROM signins");
        assert!(plain.starts_with("-- a note\nWITH signins AS NOT MATERIALIZED ("), "{plain}");
        assert!(plain.ends_with("\nSELECT count(*) FROM signins"), "{plain}");
        let with = s.wrap("/* x */ with recent AS (SELECT 1) SELECT * FROM recent");
        assert!(with.starts_with("/* x */ WITH signins AS NOT MATERIALIZED ("), "{with}");
        assert!(with.ends_with("),\nrecent AS (SELECT 1) SELECT * FROM recent"), "{with}");
        let recursive = s.wrap("WITH RECURSIVE r AS (SELECT 1) SELECT * FROM r");
        assert!(recursive.starts_with("WITH RECURSIVE signins AS"), "{recursive}");
        assert!(recursive.ends_with("),\nr AS (SELECT 1) SELECT * FROM r"), "{recursive}");
        // A column or table that merely starts with "with" is not a WITH.
        assert!(s.wrap("SELECT 1").starts_with("WITH signins"));
        assert_eq!(Scope::default().wrap("SELECT 1"), "SELECT 1");
    }

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
