//! The integrity chain of append-only tables (the access log, finding history and the
//! access review log): each transaction that appends rows also stores a link over
//! them in `append_chain` (migration 9), chained to the table's previous link, so
//! `tokentrail verify` can name the first link whose rows changed.
//!
//! Contract:
//! - A chained table has an `id` that only grows (a sequence) and is only inserted
//!   into, in a transaction that also links what it inserted, in one of two ways:
//!   - [`append`] takes the table's lock (in this process), then runs the transaction,
//!     inserts, links and commits, then lets go: what people's actions and the access
//!     log's writer use.
//!   - [`link_in`] links inside a transaction the caller already holds (detection's
//!     refresh of findings, whose rows come from a statement run in a bigger
//!     transaction). It takes the table's lock and returns it as [`Linked`], which the
//!     caller keeps until its COMMIT (or ROLLBACK) has run and only then drops: holding
//!     it to the end is what keeps another appender from starting meanwhile.
//!
//!   Each link also updates the table's row of `append_heads` (migration 16). A
//!   transaction that began before another one linked the table and committed (its
//!   snapshot does not show that link) therefore fails on DuckDB's write conflict
//!   ("Conflict on update") when it links, and is run again ([`crate::store::retrying_conflicts`]);
//!   so is one that meets another's link not yet committed. Two transactions that
//!   appended to the same table never both commit, and a link never covers ids of rows
//!   another transaction commits later.
//! - Locks: one per table, and a transaction appends to one chained table (none takes
//!   two tables' locks). Nobody holding one waits for anything else of this process (a
//!   thread, a lock) before letting go, and DuckDB's transactions never wait for each
//!   other (its concurrency is optimistic), so waiting for one cannot deadlock:
//!   [`link_in`] waits for the lock with its transaction open, and the holder it waits
//!   for never waits for that transaction.
//! - Ids drawn by a transaction that rolled back are skipped by the sequence: a link
//!   covers every id after the previous link's last one up to its own last, so such a
//!   gap is inside it (its row count says how many rows are there).
//! - A link's digest is the table digest of [`super::chain`] (order-free SHA-256 over
//!   each row's canonical encoding: every column but none left out, a NULL column
//!   absent, so a column added later with a NULL default changes no digest) over the
//!   rows `first_id..=last_id`, plus its bounds and count; `chain_digest` follows the
//!   previous link's, as the ingest chain does. The first link of a table covers every
//!   row stored before it (rows written before the chain existed are vouched for from
//!   then on, not before: the service chains them when it starts).
//! - Linking reads only the rows after the previous link's last id (the table is
//!   filtered on `id`, its row groups skipped by their id range): its cost follows what
//!   was appended, not the table's size.
//! - [`verify`] recomputes each link from the rows as they are now: a changed, deleted
//!   or inserted row, a row past the last link, an edited link, or links deleted from
//!   the end (`append_heads` names a later one) is named.

use crate::store::Store;
use crate::store::chain::{Digest, TableDigest, chain_digest, hex};
use anyhow::{Context, Result, bail};
use sha2::{Digest as _, Sha256};
use std::sync::{Mutex, MutexGuard};

/// The tables chained by append, each with an `id` column.
pub const TABLES: [&str; 4] = ["access_log", "finding_history", "access_review_log", "incident_log"];

/// Encoding version of the links written now.
pub const VERSION: i32 = 1;

/// One appender at a time per table, in the order of [`TABLES`] (all of them live in
/// this process: DuckDB lets one process write the file).
static APPENDING: [Mutex<()>; TABLES.len()] = [const { Mutex::new(()) }; TABLES.len()];

/// The lock of `table`, held.
fn lock(table: &str) -> Result<MutexGuard<'static, ()>> {
    let Some(i) = TABLES.iter().position(|t| *t == table) else {
        bail!("{table} is not a chained append-only table");
    };
    Ok(APPENDING[i].lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// Runs `insert` (which appends rows to `table`) and chains what it appended, in one
/// transaction, run again on a write conflict ([`Store::transaction`]).
pub fn append<T>(
    store: &Store,
    table: &'static str,
    mut insert: impl FnMut(&duckdb::Connection) -> Result<T>,
) -> Result<T> {
    let _one_at_a_time = lock(table)?;
    store.transaction(|conn| {
        let out = insert(conn)?;
        link(conn, table)?;
        Ok(out)
    })
}

/// The lock of a table linked by [`link_in`]: keep it until the transaction has
/// committed or rolled back, then drop it.
#[must_use = "hold it until the transaction has committed"]
pub struct Linked {
    _held: MutexGuard<'static, ()>,
}

impl std::fmt::Debug for Linked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Linked")
    }
}

/// Chains the rows appended to `table` inside the transaction the caller holds on
/// `conn` (and not yet linked), as the transaction's last write to `table`. Returns the
/// table's lock, to hold until COMMIT has run (see the module's contract). Fails with
/// DuckDB's write conflict when another transaction linked the table since this one
/// began: run the transaction again.
pub fn link_in(conn: &duckdb::Connection, table: &'static str) -> Result<Linked> {
    let held = lock(table)?;
    link(conn, table)?;
    Ok(Linked { _held: held })
}

/// The last link of `table`: its number, last id and chain digest.
fn last_link(conn: &duckdb::Connection, table: &str) -> Result<Option<(i64, i64, String)>> {
    let mut stmt = conn.prepare(
        "SELECT link, last_id, chain_digest FROM append_chain WHERE table_name = ? ORDER BY link DESC LIMIT 1",
    )?;
    let mut rows = stmt.query([table])?;
    Ok(match rows.next()? {
        Some(r) => Some((r.get(0)?, r.get(1)?, r.get(2)?)),
        None => None,
    })
}

/// What [`digest_rows`] found: the rows' digest, their count, and their smallest and
/// largest id.
struct Rows {
    digest: Digest,
    count: i64,
    bounds: Option<(i64, i64)>,
}

/// The digest of `table`'s rows with ids in `range` (inclusive), with their count and
/// id bounds.
fn digest_rows(conn: &duckdb::Connection, table: &'static str, range: (i64, i64)) -> Result<Rows> {
    // The table name is one of TABLES, never data.
    let mut stmt = conn.prepare(&format!("SELECT * FROM {table} WHERE id BETWEEN ? AND ?"))?;
    let mut digest = TableDigest::new(table);
    let (mut count, mut bounds): (i64, Option<(i64, i64)>) = (0, None);
    for batch in stmt.stream_arrow([range.0, range.1])? {
        let batch = batch?;
        let ids = batch
            .column_by_name("id")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::Int64Array>())
            .context("a chained table's id is a BIGINT")?;
        for id in ids.iter().flatten() {
            bounds = Some(bounds.map_or((id, id), |(a, b)| (a.min(id), b.max(id))));
        }
        count += batch.num_rows() as i64;
        digest.add(&batch)?;
    }
    Ok(Rows { digest: digest.finish(), count, bounds })
}

/// A link's `rows_digest` over the table digest `rows` ([`TableDigest`] of the table's
/// rows `first..=last`, `count` of them): public so the lake checks archived rows with
/// the code that chained them (`crate::lake::journal`).
pub fn rows_digest(table: &str, version: i32, first: i64, last: i64, count: i64, rows: &Digest) -> Digest {
    let mut h = Sha256::new();
    h.update(b"tokentrail.append.rows");
    h.update(version.to_le_bytes());
    h.update((table.len() as u64).to_le_bytes());
    h.update(table.as_bytes());
    for n in [first, last, count] {
        h.update(n.to_le_bytes());
    }
    h.update(rows);
    h.finalize().into()
}

/// Adds a link over the rows appended since the last one, if any.
fn link(conn: &duckdb::Connection, table: &'static str) -> Result<()> {
    let last = last_link(conn, table)?;
    let (number, after, previous) = match &last {
        Some((n, last_id, digest)) => (n + 1, *last_id, decode(digest)?),
        None => (1, i64::MIN, [0u8; 32]),
    };
    let Rows { digest, count, bounds } = digest_rows(conn, table, (after.saturating_add(1), i64::MAX))?;
    let Some((lowest, last_id)) = bounds else { return Ok(()) };
    // Right after the previous link, so ids skipped by a rolled-back transaction are
    // inside this one; the first link starts at the table's first row.
    let first = if last.is_some() { after + 1 } else { lowest };
    let rows = rows_digest(table, VERSION, first, last_id, count, &digest);
    let chain = chain_digest(&previous, number, &rows);
    // The head first: a transaction whose snapshot misses a link committed meanwhile (or
    // that meets one not yet committed) fails here on DuckDB's write conflict.
    let updated = conn.execute(
        "UPDATE append_heads SET link = ?, last_id = ?, updated_at = get_current_timestamp() WHERE table_name = ?",
        duckdb::params![number, last_id, table],
    )?;
    if updated == 0 {
        conn.execute(
            "INSERT INTO append_heads VALUES (?, ?, ?, get_current_timestamp())",
            duckdb::params![table, number, last_id],
        )?;
    }
    conn.execute(
        include_str!("sql/append_link_insert.sql"),
        duckdb::params![table, number, first, last_id, count, VERSION, hex(&rows), hex(&chain)],
    )?;
    Ok(())
}

fn decode(text: &str) -> Result<Digest> {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<_>>()
        .context("append_chain holds a digest that is not hex")?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("append_chain holds a digest that is not 32 bytes"))
}

/// What [`verify`] found for one table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppendReport {
    pub table: String,
    pub links: u64,
    pub rows: u64,
    pub head_digest: Option<String>,
    /// Each problem, first first: the link (0 for rows past the last one) and what differs.
    pub failures: Vec<(i64, String)>,
}

impl AppendReport {
    pub fn verified(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn summary(&self) -> String {
        match self.failures.first() {
            None => format!(
                "{} chain verified: {} links over {} rows recomputed and match{}",
                self.table,
                self.links,
                self.rows,
                self.head_digest.as_deref().map(|d| format!("; head digest {d}")).unwrap_or_default()
            ),
            Some((link, reason)) if *link > 0 => {
                format!("{} chain BROKEN: link {link} no longer matches: {reason}", self.table)
            }
            Some((_, reason)) => format!("{} chain BROKEN: {reason}", self.table),
        }
    }
}

/// Recomputes every link of every chained table from the rows as they are now.
pub fn verify(store: &Store) -> Result<Vec<AppendReport>> {
    let conn = store.connection()?;
    conn.execute_batch("BEGIN TRANSACTION")?;
    verify_in(&conn)
}

/// [`verify`] through `conn`: in a transaction, everything is read from one snapshot, so an
/// append committing meanwhile is wholly in it (rows and link) or not at all.
pub fn verify_in(conn: &duckdb::Connection) -> Result<Vec<AppendReport>> {
    let mut reports = Vec::new();
    for table in TABLES {
        let mut stmt = conn.prepare(include_str!("sql/append_links.sql"))?;
        let links: Vec<(i64, i64, i64, i64, i32, String, String)> = stmt
            .query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))?
            .collect::<duckdb::Result<_>>()?;
        let mut report = AppendReport {
            table: table.into(),
            links: links.len() as u64,
            rows: 0,
            head_digest: None,
            failures: vec![],
        };
        let mut previous = [0u8; 32];
        let mut expected_first = None;
        for (number, first, last, rows, version, stored_rows, stored_chain) in &links {
            if *version != VERSION {
                report.failures.push((*number, format!("encoding version {version} is unknown to this TokenTrail")));
                continue;
            }
            if expected_first.is_some_and(|e| e != *first) {
                report.failures.push((*number, format!("it starts at id {first}, not right after the link before")));
            }
            let Rows { digest, count, .. } = digest_rows(conn, table, (*first, *last))?;
            let recomputed = rows_digest(table, *version, *first, *last, count, &digest);
            if count != *rows {
                report.failures.push((
                    *number,
                    format!("ids {first}..{last}: {rows} rows were chained, {count} are there now (rows deleted or inserted)"),
                ));
            } else if hex(&recomputed) != *stored_rows {
                report.failures.push((*number, format!("ids {first}..{last}: rows differ from what was chained")));
            } else if hex(&chain_digest(&previous, *number, &recomputed)) != *stored_chain {
                report.failures.push((
                    *number,
                    "its chain digest does not follow the link before (append_chain was edited)".into(),
                ));
            }
            report.rows += count as u64;
            previous = decode(stored_chain).unwrap_or(previous);
            expected_first = Some(last + 1);
            report.head_digest = Some(stored_chain.clone());
        }
        let after = links.last().map_or(i64::MIN, |l| l.2);
        let before = links.first().map_or(i64::MAX, |l| l.1);
        let unchained: i64 =
            conn.query_row(&format!("SELECT count(*) FROM {table} WHERE id > ? OR id < ?"), [after, before], |r| {
                r.get(0)
            })?;
        // The last link written, by the head every link updates (none for a table no
        // TokenTrail of migration 16 or later has linked).
        let head: Option<i64> = conn
            .prepare("SELECT link FROM append_heads WHERE table_name = ?")?
            .query_map([table], |r| r.get(0))?
            .next()
            .transpose()?;
        let last_link = links.last().map_or(0, |l| l.0);
        if head.is_some_and(|h| h > last_link) {
            let written = head.unwrap_or_default();
            report.failures.push((
                0,
                match last_link {
                    0 => format!("append_chain was emptied: link {written} was written, none is there"),
                    _ => {
                        format!("append_chain ends at link {last_link}, but link {written} was written (links deleted)")
                    }
                },
            ));
        }
        if unchained > 0 && links.is_empty() && head.is_none_or(|h| h == 0) {
            report.failures.push((
                0,
                format!(
                    "{unchained} row(s) and no link: append_chain was emptied, or the database was upgraded and \
                     not served since (the service chains older rows when it starts)"
                ),
            ));
        } else if unchained > 0 {
            report
                .failures
                .push((0, format!("{unchained} row(s) lie outside every link (inserted outside TokenTrail)")));
        }
        reports.push(report);
    }
    Ok(reports)
}
