//! Writer lanes: the exactly-once transaction, streamed.
//!
//! A lane is one of the [`super::Writer`]'s DuckDB connections. It stores one batch at
//! a time in one transaction: the batch's rows as the pipeline hands them over
//! ([`Part::Rows`], while the parsers are still making the rest), then where its
//! sources stand ([`Part::End`]), the `ingest_batches` row and the chain digest. Its
//! `COMMIT` waits until the batch before it has committed, so with three lanes one batch's
//! rows go in while the one before waits for its turn and the one before that is
//! compressed and committed (DuckDB compresses a commit's full row groups before taking
//! its commit locks), and the database still only ever holds a prefix of the batches
//! handed over.
//!
//! The rows reach DuckDB through Arrow scan views made before the transaction begins (a
//! view must be made outside the transaction that reads it): the `cosmos_requests`
//! view's reader waits for each part as DuckDB pulls, and passes the other tables'
//! batches to their own views, which are read once the batch's parts have all come.
//! So DuckDB stores a batch's Cosmos DB rows while later ones are parsed, and each
//! Arrow batch is freed as soon as DuckDB has read it and the digest thread hashed it.

use super::chain;
use super::ffi::{self, Param, RawConnection};
use super::rows::{CosmosRows, QuarantineRows, RawRows, RowCounts, SignInRows, TableBatches};
use super::{BatchReceipt, Checkpoint, common_source, describe_all};
use anyhow::{Context, Result, bail};
use arrow::array::{ArrayRef, Int64Array, RecordBatchReader};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// The public tables in the order of [`TableBatches`]' fields.
const TABLES: [&str; 4] = ["cosmos_requests", "signins", "raw_events", "quarantine"];

/// What a lane receives for one batch, in order: rows as the parsers make them (any
/// number of parts), then where the sources stand after them. A batch whose input ends
/// without [`Part::End`] rolls back.
pub enum Part {
    Rows(TableBatches),
    End(Vec<Checkpoint>),
}

/// Whose turn it is to commit.
pub(super) struct Turns {
    state: Mutex<TurnState>,
    changed: Condvar,
}

struct TurnState {
    /// The last committed batch (0 before the first).
    committed: i64,
    /// Its chain digest (`ingest_chain`); None below migration 7.
    head: Option<chain::Digest>,
    /// The first batch that failed since the lanes were handed out: it and every batch
    /// after it roll back.
    failed: Option<i64>,
}

impl Turns {
    pub(super) fn new(committed: i64, head: Option<chain::Digest>) -> Turns {
        Turns { state: Mutex::new(TurnState { committed, head, failed: None }), changed: Condvar::new() }
    }

    fn state(&self) -> MutexGuard<'_, TurnState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn next_batch_id(&self) -> i64 {
        self.state().committed + 1
    }

    /// Lanes are handed out again: failures of earlier runs are over.
    pub(super) fn start(&self) {
        self.state().failed = None;
    }

    /// Waits until every batch before `batch_id` has committed; the chain digest of the
    /// last of them.
    fn wait(&self, batch_id: i64) -> Result<Option<chain::Digest>> {
        let mut state = self.state();
        loop {
            if let Some(failed) = state.failed.filter(|failed| *failed < batch_id) {
                bail!("not committed: batch {failed}, before it, failed");
            }
            if state.committed >= batch_id {
                bail!("batch {batch_id} is already committed");
            }
            if state.committed == batch_id - 1 {
                return Ok(state.head);
            }
            state = self.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn committed(&self, batch_id: i64, chain: Option<chain::Digest>) {
        let mut state = self.state();
        state.committed = batch_id;
        if chain.is_some() {
            state.head = chain;
        }
        self.changed.notify_all();
    }

    fn failed(&self, batch_id: i64) {
        let mut state = self.state();
        state.failed = Some(state.failed.map_or(batch_id, |failed| failed.min(batch_id)));
        self.changed.notify_all();
    }
}

/// One of a [`super::Writer`]'s connections; see [`super::Writer::lanes`].
pub struct Lane<'w> {
    raw: &'w mut RawConnection,
    turns: &'w Turns,
    lane_checkpoints: bool,
    /// The row digest vectors of the lane's last commit, reused by its next.
    spare: [Vec<chain::Digest>; 4],
}

impl<'w> Lane<'w> {
    pub(super) fn new(raw: &'w mut RawConnection, turns: &'w Turns, lane_checkpoints: bool) -> Lane<'w> {
        Lane { raw, turns, lane_checkpoints, spare: Default::default() }
    }

    /// Stores the rows `input` brings as batch `batch_id` and moves the sources to the
    /// checkpoints of its [`Part::End`], atomically, once every batch before it has
    /// committed; `on_commit` runs right after the commit, before the next batch can
    /// commit. A failed batch fails every batch after it too.
    ///
    /// `last`: the last batch of its source, which nothing is parsed behind. Its full row
    /// groups are compressed as they fill, in the INSERT, while the batch before it is
    /// compressed and committed on another lane; other batches leave it to COMMIT, so
    /// that their INSERT keeps taking rows while the parsers work.
    pub fn commit(
        &mut self,
        batch_id: i64,
        input: Receiver<Part>,
        last: bool,
        on_commit: impl FnOnce(&BatchReceipt, &[Checkpoint]),
    ) -> Result<BatchReceipt> {
        let outcome = self.store(batch_id, input, last, on_commit);
        if outcome.is_err() {
            self.turns.failed(batch_id);
        }
        outcome
    }

    fn store(
        &mut self,
        batch_id: i64,
        input: Receiver<Part>,
        last: bool,
        on_commit: impl FnOnce(&BatchReceipt, &[Checkpoint]),
    ) -> Result<BatchReceipt> {
        let chained = self.turns.state().head.is_some();
        let schemas = [CosmosRows::schema(), SignInRows::schema(), RawRows::schema(), QuarantineRows::schema()];
        let routed = Arc::new(Mutex::new(Routed::default()));
        std::thread::scope(|scope| -> Result<BatchReceipt> {
            // The rows' digests are computed on a thread of their own while DuckDB
            // stores the rows (the writer lanes are ingest's bottleneck).
            let (hash, hashed) = std::sync::mpsc::channel::<(usize, RecordBatch)>();
            let mut spare = std::mem::take(&mut self.spare).into_iter();
            let hashing = chained.then(|| {
                scope.spawn(move || -> Result<[(chain::Digest, Vec<chain::Digest>); 4]> {
                    let mut tables =
                        TABLES.map(|table| chain::TableDigest::reusing(table, spare.next().unwrap_or_default()));
                    for (table, batch) in hashed {
                        tables[table].add(&batch)?;
                    }
                    Ok(tables.map(chain::TableDigest::finish_keeping))
                })
            });
            let kept = std::cell::Cell::new(None);
            let stored = schemas.each_ref().map(with_batch_id_schema);
            let mut readers: Vec<Box<dyn RecordBatchReader + Send>> = Vec::new();
            for (table, schema) in stored.iter().enumerate().skip(1) {
                readers.push(Box::new(Kept { table, schema: schema.clone(), routed: routed.clone() }));
            }
            let router = Router {
                input,
                batch_id,
                schemas,
                stored,
                waiting: VecDeque::new(),
                routed: routed.clone(),
                hash: chained.then_some(hash),
            };
            readers.insert(0, Box::new(router));
            let mut views = Vec::new();
            let mut outcome = Ok(());
            for (table, reader) in TABLES.into_iter().zip(readers) {
                match self.raw.create_arrow_view(reader) {
                    Ok(view) => views.push((table, view)),
                    Err(error) => {
                        outcome = Err(error.into());
                        break;
                    }
                }
            }
            let outcome = outcome.and_then(|()| {
                self.transaction(batch_id, chained, last, &views, &routed, || match hashing {
                    Some(handle) => {
                        let tables =
                            handle.join().map_err(|_| anyhow::anyhow!("the chain digest thread panicked"))??;
                        let [cosmos, signins, raw, quarantine] = tables;
                        kept.set(Some([cosmos.1, signins.1, raw.1, quarantine.1]));
                        Ok(Some([cosmos.0, signins.0, raw.0, quarantine.0]))
                    }
                    None => Ok(None),
                })
            });
            if let Some(rows) = kept.take() {
                self.spare = rows;
            }
            for (_, view) in views {
                if let Err(error) = self.raw.drop_arrow_view(view) {
                    tracing::warn!(error = %error, "dropping an Arrow scan view");
                }
            }
            let (receipt, checkpoints, chain) = outcome?;
            on_commit(&receipt, &checkpoints);
            self.turns.committed(batch_id, chain);
            Ok(receipt)
        })
    }

    /// Stores the batch in one transaction and commits it in its turn; `digests` gives
    /// its table digests once its rows are all in. Returns its receipt, checkpoints and
    /// chain digest.
    fn transaction(
        &mut self,
        batch_id: i64,
        chained: bool,
        last: bool,
        views: &[(&str, ffi::ArrowView)],
        routed: &Mutex<Routed>,
        digests: impl FnOnce() -> Result<Option<[chain::Digest; 4]>>,
    ) -> Result<(BatchReceipt, Vec<Checkpoint>, Option<chain::Digest>)> {
        if last {
            // DuckDB buffers 5 full row groups of a transaction and compresses them at
            // COMMIT, which a lane reaches only in its turn: for the last batch, with
            // nothing left to parse, the other core would be idle meanwhile. (A global
            // setting: the other lanes, if busy, are past their INSERT.)
            self.raw.execute_batch("SET write_buffer_row_group_count = 1")?;
        }
        self.raw.execute_batch("BEGIN TRANSACTION")?;
        let outcome = (|| {
            let mut inserted = [0u64; 4];
            for (i, (table, view)) in views.iter().enumerate() {
                // `BY NAME`: table columns not in the batch (added by later migrations)
                // take their defaults, and column order never matters.
                let sql = format!("INSERT INTO {table} BY NAME SELECT * FROM {}", view.name);
                inserted[i] =
                    self.raw.execute(&sql, &[]).with_context(|| format!("storing batch {batch_id} in {table}"))?;
            }
            let (counts, checkpoints) = {
                let mut routed = routed.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(checkpoints) = routed.end.take() else {
                    bail!("storing batch {batch_id}: its input ended before the batch did");
                };
                (routed.counts, checkpoints)
            };
            let expected = [counts.cosmos, counts.signins, counts.raw, counts.quarantined];
            for ((table, inserted), expected) in TABLES.iter().zip(inserted).zip(expected) {
                if inserted != expected {
                    bail!("storing batch {batch_id} in {table}: {inserted} of {expected} rows inserted");
                }
            }
            let header = chain::BatchHeader {
                batch_id,
                committed_at: chrono::Utc::now().timestamp_micros(),
                source_id: common_source(&checkpoints),
                position: describe_all(&checkpoints),
                counts: expected.map(|n| n as i64),
            };
            self.write(&header, &checkpoints, chained)?;
            let digests = digests()?;
            let previous = self.turns.wait(batch_id)?;
            let chain = match (digests, previous) {
                (Some(tables), Some(previous)) => Some(self.write_chain(&header, &tables, &previous)?),
                _ => None,
            };
            self.raw.execute_batch("COMMIT").context("committing ingest batch")?;
            Ok((BatchReceipt { batch_id, counts }, checkpoints, chain))
        })();
        if outcome.is_err() {
            let _ = self.raw.execute_batch("ROLLBACK");
        }
        if last && let Err(error) = self.raw.execute_batch("RESET write_buffer_row_group_count") {
            tracing::warn!(error = %error, "resetting write_buffer_row_group_count");
        }
        outcome
    }

    /// The batch's `ingest_batches` row and its sources' positions (per batch too, in
    /// `ingest_positions`, when the batch is `chained`).
    fn write(&mut self, header: &chain::BatchHeader, checkpoints: &[Checkpoint], chained: bool) -> Result<()> {
        let batch_id = header.batch_id;
        let now = header.committed_at;
        self.raw.execute(
            "INSERT INTO ingest_batches VALUES (?, make_timestamp(?::BIGINT)::TIMESTAMPTZ, ?, ?, ?, ?, ?, ?)",
            &[
                Param::Int(batch_id),
                Param::Int(now),
                Param::Text(&header.source_id),
                Param::Text(&header.position),
                Param::Int(header.counts[0]),
                Param::Int(header.counts[1]),
                Param::Int(header.counts[2]),
                Param::Int(header.counts[3]),
            ],
        )?;
        fn text(v: &Option<String>) -> Param<'_> {
            v.as_deref().map_or(Param::Null, Param::Text)
        }
        let int = |v: Option<i64>| v.map_or(Param::Null, Param::Int);
        for checkpoint in checkpoints {
            let position = [
                Param::Text(&checkpoint.source_id),
                Param::Text(checkpoint.kind.as_str()),
                int(checkpoint.byte_offset),
                int(checkpoint.line),
                text(&checkpoint.fingerprint),
                Param::Bool(checkpoint.complete),
                int(checkpoint.sequence_number),
                text(&checkpoint.event_offset),
                int(checkpoint.event_time),
                Param::Int(now),
                Param::Int(batch_id),
            ];
            if self.lane_checkpoints {
                // The row of this batch's lane; the other lanes' rows may belong to
                // batches still open in their transactions.
                let mut params =
                    vec![position[0].clone(), Param::Int(batch_id.rem_euclid(crate::store::MAX_LANES as i64))];
                params.extend_from_slice(&position[1..]);
                self.raw.execute(include_str!("sql/source_checkpoint_upsert.sql"), &params)?;
            } else {
                self.raw.execute(include_str!("sql/checkpoint_upsert.sql"), &position)?;
            }
            if !chained {
                continue;
            }
            self.raw.execute(
                "INSERT OR REPLACE INTO ingest_positions VALUES (?, ?, ?, ?, ?, ?, make_timestamp(?::BIGINT)::TIMESTAMPTZ)",
                &[
                    Param::Int(batch_id),
                    Param::Text(&checkpoint.source_id),
                    Param::Text(checkpoint.kind.as_str()),
                    int(checkpoint.byte_offset),
                    int(checkpoint.line),
                    int(checkpoint.sequence_number),
                    int(checkpoint.event_time),
                ],
            )?;
        }
        Ok(())
    }

    /// Stores the batch's digests (its `tables`' and its rows'), linked to the chain
    /// digest of the batch committed before it; returns its chain digest.
    fn write_chain(
        &mut self,
        header: &chain::BatchHeader,
        tables: &[chain::Digest; 4],
        previous: &chain::Digest,
    ) -> Result<chain::Digest> {
        let batch_id = header.batch_id;
        let rows = chain::rows_digest(header, tables, chain::VERSION);
        let link = chain::chain_digest(previous, batch_id, &rows);
        let digests = tables.iter().chain([&rows, &link]).map(chain::hex).collect::<Vec<_>>();
        self.raw.execute(
            "INSERT INTO ingest_chain VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            &[
                Param::Int(batch_id),
                Param::Int(chain::VERSION.into()),
                Param::Text(&digests[0]),
                Param::Text(&digests[1]),
                Param::Text(&digests[2]),
                Param::Text(&digests[3]),
                Param::Text(&digests[4]),
                Param::Text(&digests[5]),
            ],
        )?;
        Ok(link)
    }
}

/// What the batch's input brought besides Cosmos DB rows, for the lane to read once
/// the `cosmos_requests` view has read the input to its end.
#[derive(Default)]
struct Routed {
    /// Batches of `signins`, `raw_events` and `quarantine`, with their batch id.
    kept: [VecDeque<RecordBatch>; 3],
    counts: RowCounts,
    /// The checkpoints of [`Part::End`], once it came.
    end: Option<Vec<Checkpoint>>,
}

/// The `cosmos_requests` view's reader: waits for the batch's parts as DuckDB pulls,
/// hands the Cosmos DB rows to DuckDB, keeps the other tables' rows for their views,
/// and passes every batch to the digest thread.
struct Router {
    input: Receiver<Part>,
    batch_id: i64,
    /// The tables' schemas as parsed, and as stored (with the batch id).
    schemas: [SchemaRef; 4],
    stored: [SchemaRef; 4],
    waiting: VecDeque<RecordBatch>,
    routed: Arc<Mutex<Routed>>,
    hash: Option<Sender<(usize, RecordBatch)>>,
}

impl Router {
    fn route(&mut self, batches: TableBatches) -> Result<(), ArrowError> {
        let mut routed = self.routed.lock().unwrap_or_else(PoisonError::into_inner);
        routed.counts += batches.counts();
        let TableBatches { cosmos, signins, raw, quarantine } = batches;
        for (table, batches) in [cosmos, signins, raw, quarantine].into_iter().enumerate() {
            for batch in batches {
                if batch.schema().fields() != self.schemas[table].fields() {
                    return Err(ArrowError::SchemaError(format!(
                        "a batch for {} does not have the table's columns: {}",
                        TABLES[table],
                        batch.schema()
                    )));
                }
                let stored = with_batch_id(&batch, &self.stored[table], self.batch_id)?;
                if let Some(hash) = &self.hash {
                    // The digest thread stops early only on an error, reported at its join.
                    let _ = hash.send((table, batch));
                }
                match table {
                    0 => self.waiting.push_back(stored),
                    _ => routed.kept[table - 1].push_back(stored),
                }
            }
        }
        Ok(())
    }
}

impl Iterator for Router {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(batch) = self.waiting.pop_front() {
                return Some(Ok(batch));
            }
            match self.input.recv() {
                Ok(Part::Rows(batches)) => {
                    if let Err(error) = self.route(batches) {
                        return Some(Err(error));
                    }
                }
                Ok(Part::End(checkpoints)) => {
                    self.routed.lock().unwrap_or_else(PoisonError::into_inner).end = Some(checkpoints);
                    self.hash = None; // the digest thread finishes
                    return None;
                }
                // The input stopped before the batch's end: the lane rolls back.
                Err(_) => {
                    self.hash = None;
                    return None;
                }
            }
        }
    }
}

impl RecordBatchReader for Router {
    fn schema(&self) -> SchemaRef {
        self.stored[0].clone()
    }
}

/// The view of one of the other tables: reads what the [`Router`] kept.
struct Kept {
    /// 1, 2 or 3: `signins`, `raw_events`, `quarantine`.
    table: usize,
    schema: SchemaRef,
    routed: Arc<Mutex<Routed>>,
}

impl Iterator for Kept {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.routed.lock().unwrap_or_else(PoisonError::into_inner).kept[self.table - 1].pop_front().map(Ok)
    }
}

impl RecordBatchReader for Kept {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// A table's schema with the `batch_id` column the writer adds.
fn with_batch_id_schema(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new("batch_id", DataType::Int64, false)));
    Arc::new(Schema::new(fields))
}

fn with_batch_id(batch: &RecordBatch, schema: &SchemaRef, batch_id: i64) -> Result<RecordBatch, ArrowError> {
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns.push(Arc::new(Int64Array::from_value(batch_id, batch.num_rows())));
    RecordBatch::try_new(schema.clone(), columns)
}
