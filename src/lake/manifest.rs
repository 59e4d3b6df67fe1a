//! A segment's manifest (`manifests/batches-<first>-<last>.json`): its files with row
//! counts and SHA-256, and each batch's `ingest_batches` row and chain digests, so the
//! archive verifies on its own against the chain (see `crate::store::chain`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// "tokentrail-lake".
    pub format: String,
    /// [`super::SCHEMA_VERSION`]: files' layout and columns (only ever added to).
    pub schema_version: u32,
    pub first_batch: i64,
    pub last_batch: i64,
    pub files: Vec<FileEntry>,
    pub batches: Vec<BatchEntry>,
    /// The chain digest before the segment's first batch (hex; 64 zeros for the first).
    pub previous_chain_digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the lake.
    pub path: String,
    pub table: String,
    /// YYYY-MM-DD (UTC) of the rows' `time`; a row without one, its batch's commit.
    pub date: String,
    pub rows: i64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchEntry {
    pub batch_id: i64,
    /// Microseconds since the epoch, UTC.
    pub committed_at_us: i64,
    pub source_id: String,
    pub position: String,
    /// cosmos_requests, signins, raw_events, quarantine rows.
    pub counts: [i64; 4],
    /// `ingest_chain` (absent for a batch from before the chain, migration 7).
    pub chain: Option<ChainEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainEntry {
    pub version: i32,
    /// cosmos_requests, signins, raw_events, quarantine (hex SHA-256).
    pub tables: [String; 4],
    pub rows_digest: String,
    pub chain_digest: String,
}

pub const FORMAT: &str = "tokentrail-lake";
