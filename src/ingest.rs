//! The ingest pipeline: chunks of input → parallel parsing → ordered, atomic commits.
//!
//! A source cuts its input into [`Chunk`]s, each carrying the [`Checkpoint`] the
//! source will stand at once the chunk is stored. A reader thread pulls chunks from
//! the source, worker threads parse them into Arrow batches ([`Rows`]), the calling
//! thread puts them back in source order and streams them to a writer lane, which
//! stores a commit's rows as they come and commits them with the checkpoint of its
//! last chunk ([`crate::store::Lane::commit`]), in order with the other lanes'. So a
//! commit never covers part of a chunk, a checkpoint is never ahead of the rows it
//! vouches for, and a crash at any point loses nothing that was committed and repeats
//! nothing on restart.
//!
//! Memory is bounded: at most `2 × workers` chunks wait for a parser, at most
//! [`PARTS_IN_FLIGHT`] parsed chunks wait for the lane storing the commit being
//! gathered, and the rows of a commit waiting for its turn are those DuckDB holds (the
//! Cosmos DB rows, stored as they came) and those of the other tables it has not read yet.

use crate::record::{Origin, RecordSink, Rejection, parse_unit};
use crate::store::rows::{RowCounts, Rows, TableBatches};
use crate::store::{BatchReceipt, Checkpoint, Part, Writer};
use anyhow::{Result, anyhow};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::mpsc;

/// Longest unit (line, message) read as a record; longer ones are quarantined with
/// their first 1 MiB, their size and the reason.
pub const MAX_UNIT_BYTES: usize = 16 << 20;

/// Rows per commit (`commit_rows`, for files and Event Hubs alike), counted in the
/// commit's largest table: one DuckDB row group. DuckDB writes a commit's whole row
/// groups of a table straight to the database file, compressed; a commit of fewer
/// rows of a table goes through the write-ahead log and is compressed again at the
/// next checkpoint. (Counting all tables' rows together cut mixed traffic into
/// commits under a row group of every table.) Larger commits held more memory for no
/// gain once checkpoints stopped merging row groups (`max_vacuum_tasks`,
/// `Store::open`): on the benchmark, with one writer and commits gathered whole,
/// commits of two row groups took 700 MiB RSS and 5.9–6.8 CPU-s, commits of one
/// 470–490 MiB and 5.3–5.9 CPU-s, in the same wall time (BENCHMARKS.md).
pub const COMMIT_ROWS: usize = ROW_GROUP_ROWS;

/// Rows of a DuckDB row group.
pub const ROW_GROUP_ROWS: usize = 122_880;

/// Arrow bytes per commit: a commit is stored sooner than [`COMMIT_ROWS`] once its
/// batches hold this much, so that the commits in DuckDB's hands stay well under 1 GiB
/// whatever the mix of tables (in `serve`, alongside DuckDB's
/// buffer pool, the receivers' prefetch and queries). Room for a row group of
/// Cosmos DB requests (~870 bytes a row in Arrow): at 96 MiB, commits were cut by
/// bytes at ~115,000 rows, under a row group.
pub const COMMIT_BYTES: usize = 128 << 20;

/// DuckDB writer lanes: three, so one commit's rows go in while the commit before waits
/// for its turn and the one before that is compressed and committed (see
/// [`Writer::lanes`]).
pub const LANES: usize = crate::store::MAX_LANES;

/// How much lower than the rest of ingest the parser threads run (nice). The DuckDB
/// writer thread is the pipeline's critical path: with the parsers at the same
/// priority it got a core only part of the time, and the parsers then waited for it.
/// On the benchmark file, `tokentrail ingest` took 3.6–4.4 s at 0, 3.2–3.6 s at 5 and
/// 3.25–3.3 s at 10 (alternated runs, same CPU time). 5 keeps parsing above detection
/// and the API ([`crate::rules::live::NICE`], [`crate::http::api::pool::QUERY_NICE`]).
pub const PARSE_NICE: i32 = 5;

/// A stretch of input and where its source stands after it.
pub struct Chunk {
    pub data: Data,
    pub units: Units,
    /// Input the source already knows it cannot read (a line over the size limit).
    pub rejected: Vec<(Origin, Rejected)>,
    /// Where the source stands after this chunk: one checkpoint per position it
    /// moves (a file; each Event Hubs partition the chunk holds events of).
    pub checkpoints: Vec<Checkpoint>,
    /// Commit right after this chunk, however few rows are waiting (end of a file,
    /// a live source's tick).
    pub flush: bool,
    /// Input bytes the source has left after this chunk, if it knows (a file of known
    /// size): near the end, commits share the rows left so that none falls under a row
    /// group (see [`tail_share`]).
    pub remaining: Option<u64>,
    /// Where `data` goes once parsed, for the source to read into again: a buffer
    /// that is reused is not faulted in and zeroed by the kernel again.
    pub recycle: Option<Recycle>,
}

/// A source's pool of chunk buffers (bounded: a full pool drops the buffer).
pub type Recycle = mpsc::SyncSender<Vec<u8>>;

/// A chunk's bytes: read into a buffer of its own, or a stretch of a file mapped into
/// memory (read where the kernel keeps it, not copied; see [`crate::source::file`]).
pub enum Data {
    Owned(Vec<u8>),
    Mapped(crate::source::file::Stretch),
}

impl Default for Data {
    fn default() -> Self {
        Data::Owned(Vec::new())
    }
}

impl From<Vec<u8>> for Data {
    fn from(bytes: Vec<u8>) -> Self {
        Data::Owned(bytes)
    }
}

impl std::ops::Deref for Data {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Data::Owned(bytes) => bytes,
            Data::Mapped(stretch) => stretch,
        }
    }
}

/// A record the source rejected before parsing.
pub struct Rejected {
    /// What was kept of it (a prefix, if it was too long to keep whole).
    pub raw: Vec<u8>,
    /// Its whole size.
    pub size: usize,
    pub reason: String,
}

/// How `Chunk::data` divides into units (records, envelopes or arrays).
pub enum Units {
    /// One unit per line; the first line of `data` is line `first_line` of `source`.
    Lines { source: String, first_line: i64 },
    /// Each range of `data` is a unit with its own origin.
    Listed(Vec<(Range<usize>, Origin)>),
    /// Units in buffers of their own, each with its origin (`data` stays empty): a
    /// received event moves into the chunk, its body read where the client put it.
    Owned(Vec<(Unit, Origin)>),
}

/// A unit in a buffer of its own (see [`Units::Owned`]).
pub type Unit = Box<dyn AsRef<[u8]> + Send>;

impl Chunk {
    fn parse(&self, rows: &mut Rows) {
        for (origin, rejected) in &self.rejected {
            let rejection =
                Rejection { raw: &rejected.raw, size: rejected.size, reason: rejected.reason.clone(), category: None };
            rows.reject(rejection, origin, None);
        }
        match &self.units {
            Units::Lines { source, first_line } => {
                let mut origin = Origin { source: source.clone(), ..Origin::default() };
                for (line, text) in (*first_line..).zip(lines(&self.data)) {
                    origin.line = Some(line);
                    parse_sized(text, &origin, rows);
                }
            }
            Units::Listed(units) => {
                for (range, origin) in units {
                    parse_sized(&self.data[range.clone()], origin, rows);
                }
            }
            Units::Owned(units) => {
                for (unit, origin) in units {
                    parse_sized((**unit).as_ref(), origin, rows);
                }
            }
        }
    }
}

/// `data` cut at each `\n`, as `data.split(|b| *b == b'\n')` would (the piece after
/// the last newline included, even when empty), but found with memchr: a line is
/// about a kilobyte, and a byte-by-byte search showed in profiles.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut ends = memchr::memchr_iter(b'\n', data);
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        match ends.next() {
            Some(end) => {
                start = Some(end + 1);
                Some(&data[from..end])
            }
            None => {
                start = None;
                Some(&data[from..])
            }
        }
    })
}

/// Why a unit of `size` bytes was quarantined unread.
pub fn oversize_reason(size: usize) -> String {
    format!("{size} bytes is over the {} MiB limit for one record", MAX_UNIT_BYTES >> 20)
}

fn parse_sized(unit: &[u8], origin: &Origin, rows: &mut Rows) {
    if unit.len() > MAX_UNIT_BYTES {
        return rows.reject(Rejection::new(unit, oversize_reason(unit.len()), None), origin, None);
    }
    parse_unit(unit, origin, rows);
}

/// How the pipeline runs.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub workers: usize,
    /// Rows of the largest table per commit ([`COMMIT_ROWS`] by default).
    pub commit_rows: usize,
    /// Arrow bytes per commit ([`COMMIT_BYTES`] by default).
    pub commit_bytes: usize,
    /// DuckDB writer lanes ([`LANES`] by default; see [`Writer::lanes`]).
    pub lanes: usize,
    /// Counts the commits cut at their size limit (not flushed by the source), if given:
    /// a steady count means the source has more waiting than the pipeline takes.
    pub full_commits: Option<prometheus_client::metrics::counter::Counter>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        PipelineOptions {
            workers: cores.clamp(1, 8),
            commit_rows: COMMIT_ROWS,
            commit_bytes: COMMIT_BYTES,
            lanes: LANES,
            full_commits: None,
        }
    }
}

struct Parsed {
    batches: TableBatches,
    counts: RowCounts,
    /// Memory the batches hold.
    bytes: usize,
    checkpoints: Vec<Checkpoint>,
    flush: bool,
    /// Input bytes the chunk held, and the source's after it (see [`Chunk::remaining`]).
    input: usize,
    remaining: Option<u64>,
}

/// Parses and commits every chunk `chunks` yields, in order. `on_commit` hears of
/// each commit. Stops at the first error of the source or of DuckDB, after
/// committing every chunk before it.
pub fn run(
    writer: &mut Writer,
    chunks: impl Iterator<Item = Result<Chunk>> + Send,
    options: PipelineOptions,
    on_commit: impl FnMut(&BatchReceipt, &[Checkpoint]) + Send,
) -> Result<RowCounts> {
    run_opening(|| Ok(writer), chunks, options, on_commit)
}

/// [`run`], with the writer got by `open` on this thread once the reader and parser
/// threads are started: a database being created is made while the first chunks are
/// read and parsed. An error of `open` ends the run before anything is committed.
pub fn run_opening<'w>(
    open: impl FnOnce() -> Result<&'w mut Writer>,
    chunks: impl Iterator<Item = Result<Chunk>> + Send,
    options: PipelineOptions,
    mut on_commit: impl FnMut(&BatchReceipt, &[Checkpoint]) + Send,
) -> Result<RowCounts> {
    let workers = options.workers.max(1);
    std::thread::scope(|scope| {
        let (chunk_tx, chunk_rx) = mpsc::sync_channel::<(u64, Chunk)>(workers * 2);
        // Shared by the workers only: when they stop, the feeder's sends fail and it
        // stops too, so an early return never leaves a thread blocked.
        let chunk_rx = std::sync::Arc::new(std::sync::Mutex::new(chunk_rx));
        let (parsed_tx, parsed_rx) = mpsc::sync_channel::<(u64, Result<Parsed>)>(workers * PARSED_PER_WORKER);

        let feeder_tx = parsed_tx.clone();
        std::thread::Builder::new().name("ingest-read".into()).spawn_scoped(scope, move || {
            for (seq, chunk) in (0u64..).zip(chunks) {
                let sent = match chunk {
                    Ok(chunk) => chunk_tx.send((seq, chunk)).is_ok(),
                    Err(error) => {
                        let _ = feeder_tx.send((seq, Err(error)));
                        false
                    }
                };
                if !sent {
                    break;
                }
            }
        })?;
        for _ in 0..workers {
            let (chunk_rx, parsed_tx) = (chunk_rx.clone(), parsed_tx.clone());
            std::thread::Builder::new().name("ingest-parse".into()).spawn_scoped(scope, move || {
                crate::sys::priority::lower(PARSE_NICE);
                loop {
                    let next = chunk_rx.lock().map_err(|_| ()).and_then(|rx| rx.recv().map_err(|_| ()));
                    let Ok((seq, chunk)) = next else { break };
                    let mut rows = Rows::default();
                    chunk.parse(&mut rows);
                    let Chunk { data, checkpoints, flush, remaining, recycle, .. } = chunk;
                    let input = data.len();
                    if let (Some(recycle), Data::Owned(buffer)) = (recycle, data) {
                        let _ = recycle.try_send(buffer);
                    }
                    let mut batches = TableBatches::default();
                    batches.take_from(&mut rows);
                    let (counts, bytes) = (batches.counts(), batches.memory_size());
                    let parsed = Parsed { batches, counts, bytes, checkpoints, flush, input, remaining };
                    if parsed_tx.send((seq, Ok(parsed))).is_err() {
                        break;
                    }
                }
            })?;
        }
        drop((parsed_tx, chunk_rx));
        // On an error the receiver drops, and the threads stop at their next send.
        let writer = open()?;
        commit_in_order(writer, parsed_rx, options, &mut on_commit)
    })
}

/// Rows a commit near the end of a source should hold, when the source knows how much
/// input it has left: the rows of this commit and the rest (estimated at this commit's
/// rows per input byte) in equal commits of at least a row group each. A commit under a
/// row group goes through DuckDB's write-ahead log and is compressed at the next
/// checkpoint, single-threaded: at the end of a file, on closing it, after everything
/// else. With equal commits of a row group or more, every commit is compressed by a
/// lane. Far from the end the share is a row group and a little more.
fn tail_share(rows: u64, input: usize, remaining: u64, commit_rows: usize) -> u64 {
    let (commits, total) = tail_commits(rows, input, remaining, commit_rows);
    (total / commits as f64).ceil() as u64
}

/// How many commits the rows of this commit and the rest of the source make (see
/// [`tail_share`]), and how many rows that is, estimated.
fn tail_commits(rows: u64, input: usize, remaining: u64, commit_rows: usize) -> (u64, f64) {
    let left = remaining as f64 * rows as f64 / input.max(1) as f64;
    let total = rows as f64 + left;
    // A margin, so that the estimate falling short leaves no commit under a row group.
    let commits = (total / (commit_rows as f64 * 1.03)).floor().max(1.0);
    (commits as u64, total)
}

/// Parsed chunks that may wait for their commit, per parser thread. The next commit
/// waits for a free lane, and a lane is free once its commit's turn came and it
/// committed (10–60 ms after its rows were in, on the benchmark file); meanwhile the
/// parsers go on. With 2 a parser, they stopped: `tokentrail ingest` of the benchmark
/// file took 2.64 → 2.54 s and 2.80 → 2.75 s with 6 (medians of 5 alternated runs; 12
/// was no faster and held ~30 MiB more).
const PARSED_PER_WORKER: usize = 6;

/// Parts in flight to the lane storing the current commit: its rows are handed over as
/// they are parsed, and DuckDB stores them as they come.
const PARTS_IN_FLIGHT: usize = 4;

/// Puts parsed chunks back in source order and streams each commit's worth to the
/// DuckDB writer lanes in turn (see [`Writer::lanes`]): a lane stores a commit's rows as
/// they are parsed, and one commit's rows go in while those before it are compressed,
/// committed or wait for their turn. The lanes commit in order and report each commit
/// as soon as it is made: a live source that goes quiet shows its last commit in the
/// status and metrics at once, not when the next event comes.
fn commit_in_order(
    writer: &mut Writer,
    parsed_rx: mpsc::Receiver<(u64, Result<Parsed>)>,
    options: PipelineOptions,
    on_commit: &mut (impl FnMut(&BatchReceipt, &[Checkpoint]) + Send),
) -> Result<RowCounts> {
    let first_batch = writer.next_batch_id();
    let lanes = writer.lanes(options.lanes)?;
    let on_commit = std::sync::Mutex::new(on_commit);
    std::thread::scope(|scope| {
        let mut senders = Vec::new();
        let mut stored = Vec::new();
        for mut lane in lanes {
            // A lane takes the next commit only once it is done with its last: with the
            // bounded parts, memory stays bounded.
            let (job_tx, job_rx) = mpsc::sync_channel::<(i64, mpsc::Receiver<Part>, bool)>(0);
            senders.push(job_tx);
            let on_commit = &on_commit;
            let lane_thread = std::thread::Builder::new().name("ingest-write".into()).spawn_scoped(
                scope,
                move || -> Result<RowCounts, (i64, anyhow::Error)> {
                    let mut total = RowCounts::default();
                    for (batch_id, parts, last) in job_rx {
                        let report = |receipt: &BatchReceipt, checkpoints: &[Checkpoint]| {
                            let mut on_commit = on_commit.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                            (*on_commit)(receipt, checkpoints)
                        };
                        let receipt = lane.commit(batch_id, parts, last, report).map_err(|error| (batch_id, error))?;
                        total += receipt.counts;
                    }
                    Ok(total)
                },
            );
            match lane_thread {
                Ok(handle) => stored.push(handle),
                // Lanes already started end when `senders` drops.
                Err(error) => return Err(error.into()),
            }
        }
        let mut jobs = 0usize;
        // The parts of the commit being streamed, if one is.
        let mut current: Option<mpsc::SyncSender<Part>> = None;
        let mut waiting: BTreeMap<u64, Result<Parsed>> = BTreeMap::new();
        let mut next = 0u64;
        let mut pending_counts = RowCounts::default();
        let mut pending_bytes = 0usize;
        let mut pending_input = 0usize;
        // The latest checkpoint of each position the commit's chunks moved.
        let mut pending_checkpoints: BTreeMap<String, Checkpoint> = BTreeMap::new();
        let mut failure = None;
        let mut lane_stopped = false;
        'receive: for (seq, parsed) in parsed_rx.iter() {
            waiting.insert(seq, parsed);
            while let Some(parsed) = waiting.remove(&next) {
                next += 1;
                let Parsed { batches, counts, bytes, checkpoints, flush, input, remaining } = match parsed {
                    Ok(parsed) => parsed,
                    Err(error) => {
                        failure = Some(error);
                        break 'receive;
                    }
                };
                if counts.total() > 0 || !checkpoints.is_empty() {
                    if current.is_none() {
                        let (parts, parts_rx) = mpsc::sync_channel(PARTS_IN_FLIGHT);
                        // The source's last commit, by the estimate of the rows it has left.
                        let last = remaining.is_some_and(|remaining| {
                            tail_commits(counts.largest(), input, remaining, options.commit_rows).0 <= 1
                        });
                        let job = (first_batch + jobs as i64, parts_rx, last);
                        if senders[jobs % senders.len()].send(job).is_err() {
                            lane_stopped = true;
                            break 'receive; // a lane stopped: its error comes from the join
                        }
                        jobs += 1;
                        current = Some(parts);
                    }
                    let parts = current.as_ref().expect("opened above");
                    if counts.total() > 0 && parts.send(Part::Rows(batches)).is_err() {
                        lane_stopped = true;
                        break 'receive;
                    }
                }
                pending_counts += counts;
                pending_bytes += bytes;
                pending_input += input;
                for checkpoint in checkpoints {
                    pending_checkpoints.insert(checkpoint.source_id.clone(), checkpoint);
                }
                let largest = pending_counts.largest();
                let by_rows = largest >= options.commit_rows as u64;
                let by_bytes = pending_bytes >= options.commit_bytes;
                let mut full = by_rows || by_bytes;
                if by_rows
                    && !by_bytes
                    && !flush
                    && let Some(remaining) = remaining
                {
                    full = largest >= tail_share(largest, pending_input, remaining, options.commit_rows);
                }
                if (full || flush) && current.is_some() {
                    if full
                        && !flush
                        && let Some(counter) = &options.full_commits
                    {
                        counter.inc();
                    }
                    let parts = current.take().expect("checked");
                    let checkpoints = std::mem::take(&mut pending_checkpoints).into_values().collect();
                    pending_counts = RowCounts::default();
                    pending_bytes = 0;
                    pending_input = 0;
                    if parts.send(Part::End(checkpoints)).is_err() {
                        lane_stopped = true;
                        break 'receive;
                    }
                }
            }
        }
        // Whatever preceded a failure is sound: commit it before reporting.
        if let Some(parts) = current.take()
            && !lane_stopped
        {
            let _ = parts.send(Part::End(pending_checkpoints.into_values().collect()));
        }
        drop(senders);
        let mut total = RowCounts::default();
        // The error of the earliest batch that failed: later ones failed for it.
        let mut first_error: Option<(i64, anyhow::Error)> = None;
        for handle in stored {
            match handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)) {
                Ok(counts) => total += counts,
                Err((batch_id, error)) => {
                    if first_error.as_ref().is_none_or(|(first, _)| batch_id < *first) {
                        first_error = Some((batch_id, error));
                    }
                }
            }
        }
        if let Some((_, error)) = first_error {
            return Err(error);
        }
        match failure {
            Some(error) => Err(error),
            None if !waiting.is_empty() => Err(anyhow!("ingest pipeline stopped before chunk {next}")),
            None => Ok(total),
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_commit_opened_with_one_commit_of_rows_left_is_the_last() {
        // 4,000 rows in this 4 MB chunk; commits of 100,000 rows (3% margin).
        let commits = |remaining_mb: u64| super::tail_commits(4_000, 4_000_000, remaining_mb * 1_000_000, 100_000).0;
        assert_eq!(commits(0), 1);
        assert_eq!(commits(100), 1, "104,000 rows: one commit");
        assert_eq!(commits(200), 1, "204,000 rows: one commit, not two under 103,000");
        assert_eq!(commits(300), 2, "304,000 rows: two commits");
        assert_eq!(super::tail_share(4_000, 4_000_000, 300_000_000, 100_000), 152_000);
    }

    #[test]
    fn lines_cut_like_split() {
        for data in ["", "\n", "a", "a\n", "a\nb", "\n\na\n\nb\n", "abc\r\ndef"] {
            let ours: Vec<&[u8]> = super::lines(data.as_bytes()).collect();
            let split: Vec<&[u8]> = data.as_bytes().split(|b| *b == b'\n').collect();
            assert_eq!(ours, split, "{data:?}");
        }
    }
}
