//! Parsed chunks, back in source order, gathered into commits and streamed to the DuckDB
//! writer lanes ([`Writer::lanes`]).
//!
//! A lane stores a commit's rows as they are parsed, so one commit's rows go in while
//! those before it are compressed, committed or wait for their turn. The lanes commit in
//! order and report each commit as soon as it is made: a live source that goes quiet
//! shows its last commit in the status and metrics at once, not when the next event
//! comes. Whatever preceded a failure of the source is committed before the failure is
//! reported.

use super::{Parsed, PipelineOptions};
use crate::store::rows::RowCounts;
use crate::store::{BatchReceipt, Checkpoint, Lane, Part, Writer};
use anyhow::{Result, anyhow};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::thread::{Scope, ScopedJoinHandle};

/// Parts in flight to the lane storing the current commit: its rows are handed over as
/// they are parsed, and DuckDB stores them as they come.
pub const PARTS_IN_FLIGHT: usize = 4;

/// A commit for a lane: its batch id, its parts as they come, and whether it is the
/// source's last (see [`tail_commits`]).
type Job = (i64, mpsc::Receiver<Part>, bool);

/// What a lane thread returns: the rows it committed, or the batch that failed and why.
type LaneOutcome = Result<RowCounts, (i64, anyhow::Error)>;

/// Commits what `parsed` brings, in `seq` order, and returns the rows committed. The
/// error of the earliest batch that failed wins (later ones failed for it), then the
/// source's.
pub(super) fn commit_in_order(
    writer: &mut Writer,
    parsed: mpsc::Receiver<(u64, Result<Parsed>)>,
    options: PipelineOptions,
    on_commit: &mut (impl FnMut(&BatchReceipt, &[Checkpoint]) + Send),
) -> Result<RowCounts> {
    let first_batch = writer.next_batch_id();
    let lanes = writer.lanes(options.lanes)?;
    let on_commit = std::sync::Mutex::new(on_commit);
    std::thread::scope(|scope| {
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for lane in lanes {
            // Lanes already started end when `senders` drops.
            let (sender, thread) = start_lane(scope, lane, &on_commit)?;
            senders.push(sender);
            threads.push(thread);
        }
        let mut order = InOrder::default();
        let mut gather = Gather::new(senders, first_batch, &options);
        let end = feed(parsed, &mut order, &mut gather);
        // Dropping the lanes' senders lets each lane end after its last commit.
        match end {
            End::LaneStopped => drop(gather),
            _ => gather.finish(),
        }
        let total = join(threads)?;
        match end {
            End::Failed(error) => Err(error),
            _ if !order.is_empty() => Err(anyhow!("ingest pipeline stopped before chunk {}", order.next)),
            _ => Ok(total),
        }
    })
}

/// A lane's thread: it takes the next commit only once it is done with its last, so
/// with the bounded parts, memory stays bounded.
fn start_lane<'scope, 'env, F>(
    scope: &'scope Scope<'scope, 'env>,
    mut lane: Lane<'env>,
    on_commit: &'scope std::sync::Mutex<&'env mut F>,
) -> Result<(mpsc::SyncSender<Job>, ScopedJoinHandle<'scope, LaneOutcome>)>
where
    F: FnMut(&BatchReceipt, &[Checkpoint]) + Send,
{
    let (sender, jobs) = mpsc::sync_channel::<Job>(0);
    let thread = std::thread::Builder::new().name("ingest-write".into()).spawn_scoped(scope, move || {
        let mut total = RowCounts::default();
        for (batch_id, parts, last) in jobs {
            let report = |receipt: &BatchReceipt, checkpoints: &[Checkpoint]| {
                let mut on_commit = on_commit.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                (*on_commit)(receipt, checkpoints)
            };
            total += lane.commit(batch_id, parts, last, report).map_err(|error| (batch_id, error))?.counts;
        }
        Ok(total)
    })?;
    Ok((sender, thread))
}

/// The rows every lane committed, or the error of the earliest batch that failed.
fn join(threads: Vec<ScopedJoinHandle<'_, LaneOutcome>>) -> Result<RowCounts> {
    let mut total = RowCounts::default();
    let mut first_error: Option<(i64, anyhow::Error)> = None;
    for thread in threads {
        match thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)) {
            Ok(counts) => total += counts,
            Err((batch_id, error)) => {
                if first_error.as_ref().is_none_or(|(first, _)| batch_id < *first) {
                    first_error = Some((batch_id, error));
                }
            }
        }
    }
    match first_error {
        Some((_, error)) => Err(error),
        None => Ok(total),
    }
}

/// Why [`feed`] stopped.
enum End {
    /// The parsers are done: everything was handed over.
    Drained,
    /// The source or a parser failed.
    Failed(anyhow::Error),
    /// A lane stopped taking work; its error comes from its thread.
    LaneStopped,
}

/// Hands every parsed chunk to `gather` in source order.
fn feed(
    parsed: mpsc::Receiver<(u64, Result<Parsed>)>,
    order: &mut InOrder<Result<Parsed>>,
    gather: &mut Gather,
) -> End {
    for (seq, chunk) in parsed {
        order.insert(seq, chunk);
        while let Some(chunk) = order.pop() {
            let added = match chunk {
                Ok(chunk) => gather.add(chunk),
                Err(error) => return End::Failed(error),
            };
            if added.is_err() {
                return End::LaneStopped;
            }
        }
    }
    End::Drained
}

/// Items numbered from 0, given in any order, taken in order.
struct InOrder<T> {
    waiting: BTreeMap<u64, T>,
    next: u64,
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        InOrder { waiting: BTreeMap::new(), next: 0 }
    }
}

impl<T> InOrder<T> {
    fn insert(&mut self, seq: u64, item: T) {
        self.waiting.insert(seq, item);
    }

    /// The next item in order, if it has come.
    fn pop(&mut self) -> Option<T> {
        let item = self.waiting.remove(&self.next)?;
        self.next += 1;
        Some(item)
    }

    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// A lane no longer takes work.
struct LaneStopped;

/// The commit being gathered: its parts go to a lane as they come; it ends when it is
/// full (rows, bytes, or its share of what the source has left) or the source flushes.
struct Gather<'o> {
    options: &'o PipelineOptions,
    lanes: Vec<mpsc::SyncSender<Job>>,
    first_batch: i64,
    /// Commits handed to the lanes so far, in turn.
    jobs: usize,
    /// The parts of the commit being streamed, if one is open.
    open: Option<mpsc::SyncSender<Part>>,
    pending: Pending,
}

/// What the open commit holds so far.
#[derive(Default)]
struct Pending {
    counts: RowCounts,
    /// Arrow bytes.
    bytes: usize,
    /// Input bytes its chunks held.
    input: usize,
    /// The latest checkpoint of each position its chunks moved.
    checkpoints: BTreeMap<String, Checkpoint>,
}

impl<'o> Gather<'o> {
    fn new(lanes: Vec<mpsc::SyncSender<Job>>, first_batch: i64, options: &'o PipelineOptions) -> Gather<'o> {
        Gather { options, lanes, first_batch, jobs: 0, open: None, pending: Pending::default() }
    }

    fn add(&mut self, chunk: Parsed) -> Result<(), LaneStopped> {
        let Parsed { batches, counts, bytes, checkpoints, flush, input, remaining } = chunk;
        if counts.total() > 0 || !checkpoints.is_empty() {
            let parts = self.open(counts.largest(), input, remaining)?;
            if counts.total() > 0 {
                parts.send(Part::Rows(batches)).map_err(|_| LaneStopped)?;
            }
        }
        let pending = &mut self.pending;
        pending.counts += counts;
        pending.bytes += bytes;
        pending.input += input;
        for checkpoint in checkpoints {
            pending.checkpoints.insert(checkpoint.source_id.clone(), checkpoint);
        }
        let full = self.full(flush, remaining);
        if (full || flush) && self.open.is_some() {
            if full
                && !flush
                && let Some(counter) = &self.options.full_commits
            {
                counter.inc();
            }
            self.end()?;
        }
        Ok(())
    }

    /// The open commit's parts, opening one (handing it to the next lane) if none is.
    fn open(
        &mut self,
        rows: u64,
        input: usize,
        remaining: Option<u64>,
    ) -> Result<&mpsc::SyncSender<Part>, LaneStopped> {
        if self.open.is_none() {
            let (parts, parts_rx) = mpsc::sync_channel(PARTS_IN_FLIGHT);
            // The source's last commit, by the estimate of the rows it has left.
            let last = remaining.is_some_and(|left| tail_commits(rows, input, left, self.options.commit_rows).0 <= 1);
            let job = (self.first_batch + self.jobs as i64, parts_rx, last);
            self.lanes[self.jobs % self.lanes.len()].send(job).map_err(|_| LaneStopped)?;
            self.jobs += 1;
            self.open = Some(parts);
        }
        Ok(self.open.as_ref().expect("opened above"))
    }

    /// Whether the open commit holds enough: a row group of its largest table, or
    /// [`PipelineOptions::commit_bytes`]; near the end of a source that knows what it
    /// has left, its share of the rest ([`tail_share`]).
    fn full(&self, flush: bool, remaining: Option<u64>) -> bool {
        let largest = self.pending.counts.largest();
        let by_rows = largest >= self.options.commit_rows as u64;
        let by_bytes = self.pending.bytes >= self.options.commit_bytes;
        match remaining {
            Some(left) if by_rows && !by_bytes && !flush => {
                largest >= tail_share(largest, self.pending.input, left, self.options.commit_rows)
            }
            _ => by_rows || by_bytes,
        }
    }

    /// Ends the open commit with the checkpoints of its chunks.
    fn end(&mut self) -> Result<(), LaneStopped> {
        let parts = self.open.take().expect("a commit is open");
        let pending = std::mem::take(&mut self.pending);
        parts.send(Part::End(pending.checkpoints.into_values().collect())).map_err(|_| LaneStopped)
    }

    /// Ends the open commit, if any: what came before a failure is sound, and committed.
    fn finish(mut self) {
        if self.open.is_some() {
            let _ = self.end();
        }
    }
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
    fn items_come_out_in_order_whatever_order_they_went_in() {
        let mut order = super::InOrder::default();
        order.insert(2, "c");
        assert_eq!(order.pop(), None, "0 has not come");
        order.insert(0, "a");
        order.insert(1, "b");
        assert_eq!((order.pop(), order.pop(), order.pop(), order.pop()), (Some("a"), Some("b"), Some("c"), None));
        assert!(order.is_empty());
    }
}
