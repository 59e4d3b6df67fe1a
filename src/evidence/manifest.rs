//! The manifest of an evidence pack (`manifest.json`): what the pack holds, for which
//! period, made by whom and with which key, and where the integrity chain stood.

use super::GeneratedBy;
use super::chain::{self, ChainReport};
use crate::store::append::AppendReport;
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
    /// Where a stream is known to have stopped in the period (rows of `cc7_2_gaps.sql`).
    pub gaps: Vec<Map<String, Json>>,
    /// Every stream expected or seen and what arrived of it (rows of `cc7_2_coverage.sql`).
    #[serde(default)]
    pub coverage: Vec<Map<String, Json>>,
    pub integrity_chain: ChainInfo,
    /// The stored state the populations read.
    #[serde(default)]
    pub as_of: AsOf,
    /// What ran the SQL, so it can be run again the same way.
    #[serde(default)]
    pub engine: EngineInfo,
    /// Tenants, accounts and sources the pack covers.
    #[serde(default)]
    pub scope: Scope,
    /// Why this pack is not evidence of a real tenant (generated data, a development signer);
    /// `None` for a real pack.
    #[serde(default)]
    pub demo: Option<String>,
    /// Rows of the period retention moved to the Parquet lake, which the populations do
    /// not hold; `None` when they hold every row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<String>,
    /// The Parquet lake files the populations read those rows from, when they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lake: Option<LakeRead>,
}

/// Where the populations read archived rows: the lake and each file, with the SHA-256 it
/// matched (the one recorded when it was archived).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LakeRead {
    pub location: String,
    pub files: Vec<LakeFile>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LakeFile {
    pub path: String,
    pub sha256: String,
}

/// The last ingest batch the populations include (`$as_of`), and when it was committed:
/// rows stored after it are in none of the populations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AsOf {
    pub batch_id: Option<i64>,
    pub committed_at: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineInfo {
    pub duckdb_version: String,
    /// The session time zone the SQL ran in.
    pub timezone: String,
    /// Macros the populations' SQL calls, with their definitions as stored.
    pub macros: Vec<MacroInfo>,
    /// Views the populations' SQL reads, with their definitions as stored.
    #[serde(default)]
    pub views: Vec<MacroInfo>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MacroInfo {
    pub name: String,
    pub definition: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scope {
    pub tenants: Vec<String>,
    pub accounts: Vec<String>,
    pub sources: Vec<String>,
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
    /// The append-only tables (access log, finding history), checked in the populations'
    /// snapshot; `verified` and `result` cover them too.
    #[serde(default)]
    pub append_chains: Vec<AppendChainInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppendChainInfo {
    pub table: String,
    pub links: u64,
    pub rows: u64,
    pub verified: bool,
    pub result: String,
}

impl ChainInfo {
    /// Adds the append-only tables' chains: the pack's chain is verified only if they are.
    pub fn with_appended(mut self, reports: &[AppendReport]) -> ChainInfo {
        for report in reports {
            self.verified &= report.verified();
            if !report.verified() {
                self.result = format!("{}; {}", self.result, report.summary());
            }
            self.append_chains.push(AppendChainInfo {
                table: report.table.clone(),
                links: report.links,
                rows: report.rows,
                verified: report.verified(),
                result: report.summary(),
            });
        }
        self
    }
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
            append_chains: Vec::new(),
        }
    }
}
