//! Sources of diagnostic records. Each cuts its input into [`chunk::Chunk`]s
//! that carry the checkpoint the source stands at after them, and resumes from the
//! checkpoint the store gives back (see `crate::store` for the exactly-once contract).
//!
//! - [`file`]: files and directories (`.json`, `.ndjson`, `.gz`, storage-archive
//!   layout); identity is the path, the checkpoint a byte offset plus a hash of
//!   the bytes before it.
//! - [`generated`]: the traffic generator as a live source for `demo`; its
//!   checkpoint is the event time generated up to.
//! - [`eventhubs`]: Azure Event Hubs partitions; the checkpoint is each
//!   partition's sequence number, offset and enqueued time.
//! - [`produce`]: the other direction, records from files sent to an event hub
//!   (`tokentrail produce`, the tests and benchmarks).

pub mod blob_checkpoints;
pub mod chunk;
pub mod eventhubs;
pub mod file;
pub mod generated;
pub mod produce;
