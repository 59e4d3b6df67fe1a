//! The manifest of an evidence pack (`manifest.json`): what the pack holds, for which
//! period, made by whom and with which key, and where the integrity chain stood.

use super::GeneratedBy;
use super::chain::{self, ChainReport};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub period: PeriodInfo,
    pub criteria: Vec<String>,
    pub generated_at: String,
    pub generated_by: GeneratedBy,
    pub service: ServiceInfo,
    pub signing_key: KeyInfo,
    pub files: Vec<FileEntry>,
    /// Every source whose batches hold events of the period (rows of `cc7_2_sources.sql`).
    pub sources: Vec<Map<String, Json>>,
    /// Per stream, the hours of the period without events (rows of `cc7_2_gaps.sql`).
    pub gaps: Vec<Map<String, Json>>,
    pub integrity_chain: ChainInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeriodInfo {
    pub from: String,
    pub to: String,
    pub timezone: String,
    pub end: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyInfo {
    pub algorithm: String,
    pub key_id: String,
    pub public_key_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    /// csv, parquet or html.
    pub format: String,
    pub criterion: Option<String>,
    pub population: Option<String>,
    pub rows: Option<u64>,
    pub bytes: u64,
    pub sha256: String,
    /// The exact SQL that produced the rows, and the parameters bound to it.
    pub sql: Option<String>,
    pub parameters: Option<Map<String, Json>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainInfo {
    pub head_batch: Option<i64>,
    pub head_digest: Option<String>,
    pub batches: u64,
    pub batches_checked: u64,
    pub verified: bool,
    pub result: String,
    pub failures: Vec<chain::BatchFailure>,
    pub unchained_batches: Vec<i64>,
}

impl From<&ChainReport> for ChainInfo {
    fn from(r: &ChainReport) -> ChainInfo {
        ChainInfo {
            head_batch: r.head_batch,
            head_digest: r.head_digest.clone(),
            batches: r.batches,
            batches_checked: r.checked,
            verified: r.verified(),
            result: r.summary(),
            failures: r.failures.clone(),
            unchained_batches: r.unchained.clone(),
        }
    }
}
