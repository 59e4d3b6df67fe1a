//! What every source hands to ingest: [`Chunk`]s of input, each with the checkpoints
//! the source stands at once the chunk is stored.

use crate::record::Origin;
use crate::store::Checkpoint;
use std::ops::Range;
use std::sync::mpsc;

/// Longest unit (line, message) read as a record; longer ones are quarantined with
/// their first 1 MiB, their size and the reason.
pub const MAX_UNIT_BYTES: usize = 16 << 20;

/// Why a unit of `size` bytes was quarantined unread.
pub fn oversize_reason(size: usize) -> String {
    format!("{size} bytes is over the {} MiB limit for one record", MAX_UNIT_BYTES >> 20)
}

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
    /// group.
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
    Mapped(crate::sys::mmap::Stretch),
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
