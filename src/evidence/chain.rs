//! Verifying the integrity chain: [`verify`] recomputes every committed batch's digests
//! from the rows DuckDB holds, with the encoding the writer used
//! ([`crate::store::chain`]), and names the batches that no longer match.

use crate::lake::Lake;
use crate::store::Store;
use crate::store::chain::{
    BatchHeader, Digest, Encoding, TABLES, TableDigest, VERSION, chain_digest, decode_hex, hex, rows_digest,
    table_schema,
};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

/// What `tokentrail verify` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChainReport {
    /// Batches in `ingest_batches`.
    pub batches: u64,
    /// Batches whose digests were recomputed.
    pub checked: u64,
    /// The last chained batch and its stored chain digest.
    pub head_batch: Option<i64>,
    pub head_digest: Option<String>,
    /// Batches from before the chain (committed before migration 7): not covered.
    pub unchained: Vec<i64>,
    /// Every batch that no longer matches, first first (at most [`MAX_FAILURES`]).
    pub failures: Vec<BatchFailure>,
    /// Batches with rows evicted to the lake whose archived rows were recomputed from it.
    pub archived_checked: u64,
    /// Batches with rows evicted to the lake, not read (no lake given): their chain links
    /// are checked with the archived tables' stored digests.
    pub archived_unchecked: u64,
}

pub const MAX_FAILURES: usize = 20;

/// A batch that no longer matches its digest, and what differs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BatchFailure {
    pub batch_id: i64,
    pub reason: String,
}

impl ChainReport {
    pub fn verified(&self) -> bool {
        self.failures.is_empty()
    }

    /// One paragraph: the result, and the first batch that no longer matches.
    pub fn summary(&self) -> String {
        let head = match (&self.head_batch, &self.head_digest) {
            (Some(batch), Some(digest)) => format!("head batch {batch}, digest {digest}"),
            _ => "no chained batch yet".into(),
        };
        let legacy = match (self.unchained.first(), self.unchained.last()) {
            (Some(a), Some(b)) => format!(
                "; {} batch(es) {a}..{b} predate the chain (migration 7) and are not covered",
                self.unchained.len()
            ),
            _ => String::new(),
        };
        let archived = match (self.archived_checked, self.archived_unchecked) {
            (0, 0) => String::new(),
            (checked, 0) => format!("; {checked} batch(es) with rows in the lake, recomputed from it"),
            (checked, unchecked) => format!(
                "; {checked} batch(es) with rows in the lake recomputed from it, {unchecked} NOT read \
                 (give --lake to check the archived rows)"
            ),
        };
        match self.failures.first() {
            None => format!(
                "chain verified: {} of {} batches recomputed and match{archived}; {head}{legacy}",
                self.checked, self.batches
            ),
            Some(first) => format!(
                "chain BROKEN: batch {} no longer matches: {}{}; {head}{legacy}",
                first.batch_id,
                first.reason,
                if self.failures.len() > 1 {
                    format!(
                        " ({} batches fail in all{})",
                        self.failures.len(),
                        if self.failures.len() >= MAX_FAILURES { " or more" } else { "" }
                    )
                } else {
                    String::new()
                }
            ),
        }
    }
}

struct StoredDigests {
    encoding: Encoding,
    tables: [String; 4],
    rows: String,
    chain: String,
}

fn load_headers(conn: &duckdb::Connection, up_to: i64) -> Result<Vec<BatchHeader>> {
    let mut stmt = conn.prepare(include_str!("sql/chain_batches.sql"))?;
    let rows = stmt.query_map([up_to], |r| {
        Ok(BatchHeader {
            batch_id: r.get(0)?,
            committed_at: r.get(1)?,
            source_id: r.get(2)?,
            position: r.get(3)?,
            counts: [r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?],
        })
    })?;
    Ok(rows.collect::<duckdb::Result<_>>()?)
}

fn load_stored(conn: &duckdb::Connection, up_to: i64) -> Result<BTreeMap<i64, StoredDigests>> {
    let mut stmt = conn.prepare(include_str!("sql/chain_stored_digests.sql"))?;
    let mut rows = stmt.query([up_to])?;
    let mut out = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let encoding = Encoding::of(r.get(1)?)?;
        out.insert(
            r.get::<_, i64>(0)?,
            StoredDigests {
                encoding,
                tables: [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
                rows: r.get(6)?,
                chain: r.get(7)?,
            },
        );
    }
    Ok(out)
}

/// The four table digests of `batch_id` as the rows are now, in `encoding`; tables
/// `evicted` (their rows in the lake) are left zero.
fn recompute_tables(
    conn: &duckdb::Connection,
    batch_id: i64,
    encoding: Encoding,
    evicted: [bool; 4],
) -> Result<[Digest; 4]> {
    let mut out = [[0u8; 32]; 4];
    for (i, table) in TABLES.into_iter().enumerate() {
        if evicted[i] {
            continue;
        }
        let schema = table_schema(table);
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        // Column and table names come from our own schema, never from data.
        let sql = format!("SELECT {} FROM {table} WHERE batch_id = ?", columns.join(", "));
        let mut stmt = conn.prepare(&sql).with_context(|| format!("reading {table}"))?;
        let mut digest = TableDigest::in_encoding(TABLES[i], encoding);
        for batch in stmt.stream_arrow([batch_id])? {
            digest.add(&batch?)?;
        }
        out[i] = digest.finish();
    }
    Ok(out)
}

/// Rows whose `batch_id` is no committed batch, per table: (table, batch_id, rows).
fn orphan_rows(conn: &duckdb::Connection) -> Result<Vec<(&'static str, i64, i64)>> {
    let mut out = Vec::new();
    for table in TABLES {
        let sql = format!(
            "SELECT batch_id, count(*) FROM {table} WHERE batch_id NOT IN (SELECT batch_id FROM ingest_batches)
             GROUP BY batch_id ORDER BY batch_id"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], |r| Ok((table, r.get(0)?, r.get(1)?)))?;
        out.extend(rows.collect::<duckdb::Result<Vec<_>>>()?);
    }
    Ok(out)
}

/// Recomputes every chained batch's digests from the stored rows, in batch order, and
/// checks each link. `progress(done, total)` is called as batches are checked.
pub fn verify(store: &Store, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<ChainReport> {
    verify_unless(store, None, None, progress, &|| false)
}

/// [`verify`] of the batches up to `up_to` (all when `None`), giving up (with an error)
/// once `stop()` says so. What is stored is read in one snapshot, so a batch committing
/// meanwhile is either wholly in it or not at all (never "rows without their batch").
/// Rows evicted to the lake are recomputed from `lake` when given.
pub fn verify_unless(
    store: &Store,
    up_to: Option<i64>,
    lake: Option<&Lake>,
    progress: &(dyn Fn(u64, u64) + Sync),
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<ChainReport> {
    let conn = store.connection()?;
    conn.execute_batch("BEGIN TRANSACTION")?;
    let up_to = up_to.unwrap_or(i64::MAX);
    let headers = load_headers(&conn, up_to)?;
    let stored = load_stored(&conn, up_to)?;
    let first_chained = stored.keys().next().copied();
    let unchained: Vec<i64> =
        headers.iter().map(|h| h.batch_id).filter(|id| first_chained.is_none_or(|first| *id < first)).collect();
    let to_check: Vec<&BatchHeader> = headers.iter().filter(|h| !unchained.contains(&h.batch_id)).collect();
    let total = to_check.len() as u64;
    let evicted = crate::lake::read::evicted(&conn)?;
    let evicted_of = |id: i64| evicted.get(&id).copied().unwrap_or([false; 4]);

    // The table digests of each batch are independent: spread them over the cores.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
    let done = std::sync::atomic::AtomicU64::new(0);
    let recomputed: Vec<Result<(i64, [Digest; 4])>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let mine: Vec<(i64, Encoding)> = to_check
                    .iter()
                    .skip(w)
                    .step_by(workers)
                    .map(|h| (h.batch_id, stored.get(&h.batch_id).map_or(Encoding::CURRENT, |s| s.encoding)))
                    .collect();
                let done = &done;
                scope.spawn(move || -> Vec<Result<(i64, [Digest; 4])>> {
                    let conn = match store.connection() {
                        Ok(conn) => conn,
                        Err(error) => return vec![Err(error)],
                    };
                    mine.into_iter()
                        .map(|(id, encoding)| {
                            if stop() {
                                bail!("verifying the chain was stopped");
                            }
                            let tables = recompute_tables(&conn, id, encoding, evicted_of(id))
                                .with_context(|| format!("batch {id}"))?;
                            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                            progress(n, total);
                            Ok((id, tables))
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("chain worker panicked")).collect()
    });
    let mut tables = BTreeMap::new();
    for item in recomputed {
        let (id, digests) = item?;
        tables.insert(id, digests);
    }

    let mut failures = Vec::new();
    let mut fail = |batch_id: i64, reason: String| {
        if failures.len() < MAX_FAILURES {
            failures.push(BatchFailure { batch_id, reason });
        }
    };
    // Evicted tables: recomputed from the lake, or (no lake given) their stored digests.
    let (mut archived_checked, mut archived_unchecked) = (0, 0);
    let from_lake = match lake {
        Some(lake) => crate::lake::read::evicted_digests(&conn, lake, up_to)?,
        None => Default::default(),
    };
    for (lake_failure_batch, reason) in &from_lake.failures {
        fail(*lake_failure_batch, reason.clone());
    }
    for (id, mask) in &evicted {
        let (Some(saved), Some(digests)) = (stored.get(id), tables.get_mut(id)) else { continue };
        let mut read = true;
        for i in (0..4).filter(|i| mask[*i]) {
            match from_lake.digests.get(&(*id, i)) {
                Some(digest) => digests[i] = *digest,
                None => {
                    read = false;
                    digests[i] = decode_hex(&saved.tables[i]).unwrap_or([0u8; 32]);
                }
            }
        }
        if read && lake.is_some() {
            archived_checked += 1;
        } else {
            archived_unchecked += 1;
        }
    }
    let mut previous = [0u8; 32];
    let mut head = None;
    for header in &to_check {
        let id = header.batch_id;
        let Some(saved) = stored.get(&id) else {
            fail(id, "it has no digest in ingest_chain (it was not committed by TokenTrail's ingest writer, or its digest was deleted)".into());
            continue;
        };
        let digests = &tables[&id];
        let rows = rows_digest(header, digests, saved.encoding.version());
        let chain = chain_digest(&previous, id, &rows);
        if hex(&chain) != saved.chain {
            let changed: Vec<String> = TABLES
                .iter()
                .zip(digests)
                .zip(&saved.tables)
                .filter(|((_, now), then)| hex(now) != **then)
                .map(|((table, _), _)| table.to_string())
                .collect();
            let reason = if !changed.is_empty() {
                let counts = row_counts(&conn, id).unwrap_or_default();
                let detail: Vec<String> = changed
                    .iter()
                    .map(|t| {
                        let i = TABLES.iter().position(|x| x == t).expect("known table");
                        let now = counts.get(i).copied().unwrap_or(-1);
                        format!("{t} rows differ from what was committed ({} committed, {now} now)", header.counts[i])
                    })
                    .collect();
                detail.join("; ")
            } else if hex(&rows) != saved.rows {
                "its ingest_batches row (time, source, position or counts) was changed".into()
            } else {
                "its chain digest does not follow from the previous batch's (ingest_chain was edited)".into()
            };
            fail(id, reason);
        }
        // Later links are checked against what is stored, so one edit names one batch.
        previous = decode_hex(&saved.chain).unwrap_or(chain);
        head = Some((id, saved.chain.clone()));
    }
    let header_ids: std::collections::BTreeSet<i64> = headers.iter().map(|h| h.batch_id).collect();
    for id in stored.keys().filter(|id| !header_ids.contains(id)) {
        fail(*id, "its ingest_batches row was deleted".into());
    }
    for (table, batch_id, rows) in orphan_rows(&conn)? {
        fail(
            batch_id,
            format!(
                "{rows} row(s) in {table} carry batch_id {batch_id}, which no committed batch has (rows were inserted)"
            ),
        );
    }
    failures.sort_by_key(|f| f.batch_id);
    Ok(ChainReport {
        batches: headers.len() as u64,
        checked: total,
        head_batch: head.as_ref().map(|(id, _)| *id),
        head_digest: head.map(|(_, d)| d),
        unchained,
        failures,
        archived_checked,
        archived_unchecked,
    })
}

fn row_counts(conn: &duckdb::Connection, batch_id: i64) -> Result<Vec<i64>> {
    TABLES
        .iter()
        .map(|t| Ok(conn.query_row(&format!("SELECT count(*) FROM {t} WHERE batch_id = ?"), [batch_id], |r| r.get(0))?))
        .collect()
}

/// Chains the batches committed after the chain's head without a digest, from their rows
/// as they are now. For databases whose rows were not written by the ingest writer
/// (synthetic benchmark data) or that predate migration 7 and should be covered from now
/// on; it vouches for nothing that happened before it ran.
pub fn seal_unchained(store: &Store) -> Result<u64> {
    let conn = store.connection()?;
    let stored = load_stored(&conn, i64::MAX)?;
    let (last, mut previous) = match stored.iter().next_back() {
        Some((id, saved)) => (*id, decode_hex(&saved.chain).context("ingest_chain head is not a digest")?),
        None => (i64::MIN, [0u8; 32]),
    };
    let mut sealed = 0;
    for header in load_headers(&conn, i64::MAX)?.into_iter().filter(|h| h.batch_id > last) {
        let tables = recompute_tables(&conn, header.batch_id, Encoding::CURRENT, [false; 4])?;
        let rows = rows_digest(&header, &tables, VERSION);
        let chain = chain_digest(&previous, header.batch_id, &rows);
        conn.execute(
            "INSERT INTO ingest_chain VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            duckdb::params![
                header.batch_id,
                VERSION,
                hex(&tables[0]),
                hex(&tables[1]),
                hex(&tables[2]),
                hex(&tables[3]),
                hex(&rows),
                hex(&chain)
            ],
        )?;
        previous = chain;
        sealed += 1;
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches sealed in version 1 (before version 2 existed) still verify, beside
    /// batches of version 2, and an edit of a version-1 batch's rows is still found.
    #[test]
    fn batches_of_version_1_verify_beside_version_2() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("v1.duckdb"), &Default::default()).unwrap();
        let record = |n: u32| {
            format!(
                r#"{{"time":"2024-05-01T10:00:0{n}Z","category":"DataPlaneRequests","operationName":"Read","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/A","properties":{{"statusCode":"200","requestCharge":"1.5","clientIpAddress":"10.0.0.{n}"}}}}"#
            )
        };
        let ingest = |name: &str, n: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, record(n)).unwrap();
            let mut writer = store.writer().unwrap();
            let options = crate::ingest::PipelineOptions::default();
            crate::ingest::files::ingest_files(&store, &mut writer, &[path], options, indicatif::ProgressBar::hidden())
                .unwrap();
        };
        ingest("first.json", 1);
        let conn = store.connection().unwrap();
        let id: i64 = conn.query_row("SELECT max(batch_id) FROM ingest_chain", [], |r| r.get(0)).unwrap();
        let (version, stored): (i32, String) = conn
            .query_row("SELECT version, cosmos_digest FROM ingest_chain WHERE batch_id = ?", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(version, VERSION);
        // Seal the batch again as a version-1 TokenTrail did.
        let header = load_headers(&conn, i64::MAX).unwrap().into_iter().find(|h| h.batch_id == id).unwrap();
        let tables = recompute_tables(&conn, id, Encoding::of(1).unwrap(), [false; 4]).unwrap();
        assert_ne!(hex(&tables[0]), stored, "the two encodings give different digests");
        let rows = rows_digest(&header, &tables, 1);
        let chain = chain_digest(&[0u8; 32], id, &rows);
        conn.execute(
            "UPDATE ingest_chain SET version = 1, cosmos_digest = ?, signin_digest = ?, raw_digest = ?,
                 quarantine_digest = ?, rows_digest = ?, chain_digest = ? WHERE batch_id = ?",
            duckdb::params![
                hex(&tables[0]),
                hex(&tables[1]),
                hex(&tables[2]),
                hex(&tables[3]),
                hex(&rows),
                hex(&chain),
                id
            ],
        )
        .unwrap();
        // The next batch (version 2) links to the version-1 head.
        ingest("second.json", 2);
        let report = verify(&store, &|_, _| {}).unwrap();
        assert_eq!((report.checked, report.failures.len()), (2, 0), "{report:?}");
        conn.execute("UPDATE cosmos_requests SET status_code = 500 WHERE batch_id = ?", [id]).unwrap();
        let report = verify(&store, &|_, _| {}).unwrap();
        assert_eq!(report.failures.iter().map(|f| f.batch_id).collect::<Vec<_>>(), [id], "{report:?}");
    }
}
