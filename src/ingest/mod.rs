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
//! [`gather::PARTS_IN_FLIGHT`] parsed chunks wait for the lane storing the commit being
//! gathered, and the rows of a commit waiting for its turn are those DuckDB holds (the
//! Cosmos DB rows, stored as they came) and those of the other tables it has not read yet.

pub mod eventhubs;
pub mod files;
mod gather;

use crate::record::{Origin, RecordSink, Rejection, parse_unit};
use crate::source::chunk::{Chunk, Data, MAX_UNIT_BYTES, Units, oversize_reason};
use crate::store::rows::{RowCounts, Rows, TableBatches};
use crate::store::{BatchReceipt, Checkpoint, Writer};
use anyhow::Result;
use std::sync::mpsc;

/// Arrow bytes per commit: a commit is stored sooner than [`crate::store::COMMIT_ROWS`]
/// once its batches hold this much, so that the commits in DuckDB's hands stay well
/// under 1 GiB whatever the mix of tables; room for a row group of Cosmos DB requests
/// (BENCHMARKS.md, design measurements).
pub const COMMIT_BYTES: usize = 128 << 20;

/// DuckDB writer lanes: three, so one commit's rows go in while the commit before waits
/// for its turn and the one before that is compressed and committed (see
/// [`Writer::lanes`]).
pub const LANES: usize = crate::store::MAX_LANES;

/// How much lower than the rest of ingest the parser threads run (nice). The DuckDB
/// writer thread is the pipeline's critical path: with the parsers at the same
/// priority it got a core only part of the time (BENCHMARKS.md, design measurements).
/// 5 keeps parsing above detection and the API ([`crate::rules::live::NICE`],
/// [`crate::http::pool::QUERY_NICE`]).
pub const PARSE_NICE: i32 = 5;

/// Parses a chunk's units (and records what the source rejected) into `rows`.
fn parse(chunk: &Chunk, rows: &mut Rows) {
    for (origin, rejected) in &chunk.rejected {
        let rejection =
            Rejection { raw: &rejected.raw, size: rejected.size, reason: rejected.reason.clone(), category: None };
        rows.reject(rejection, origin, None);
    }
    match &chunk.units {
        Units::Lines { source, first_line } => {
            let mut origin = Origin { source: source.clone(), ..Origin::default() };
            for (line, text) in (*first_line..).zip(lines(&chunk.data)) {
                origin.line = Some(line);
                parse_sized(text, &origin, rows);
            }
        }
        Units::Listed(units) => {
            for (range, origin) in units {
                parse_sized(&chunk.data[range.clone()], origin, rows);
            }
        }
        Units::Owned(units) => {
            for (unit, origin) in units {
                parse_sized((**unit).as_ref(), origin, rows);
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
    /// Rows of the largest table per commit ([`crate::store::COMMIT_ROWS`] by default).
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
            commit_rows: crate::store::COMMIT_ROWS,
            commit_bytes: COMMIT_BYTES,
            lanes: LANES,
            full_commits: None,
        }
    }
}

/// A parsed chunk, on its way to a commit.
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
                    parse(&chunk, &mut rows);
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
        gather::commit_in_order(writer, parsed_rx, options, &mut on_commit)
    })
}

/// Parsed chunks that may wait for their commit, per parser thread: the next commit
/// waits for a free lane, and meanwhile the parsers go on (BENCHMARKS.md, design
/// measurements).
const PARSED_PER_WORKER: usize = 6;

#[cfg(test)]
mod tests {
    #[test]
    fn lines_cut_like_split() {
        for data in ["", "\n", "a", "a\n", "a\nb", "\n\na\n\nb\n", "abc\r\ndef"] {
            let ours: Vec<&[u8]> = super::lines(data.as_bytes()).collect();
            let split: Vec<&[u8]> = data.as_bytes().split(|b| *b == b'\n').collect();
            assert_eq!(ours, split, "{data:?}");
        }
    }
}
