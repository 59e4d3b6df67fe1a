//! SOC 2 evidence packs, and the integrity chain behind them.
//!
//! A pack is one zip an auditor can check on their own: each population of the chosen
//! criteria as CSV (formula injection escaped) and Parquet, a printable HTML report,
//! `manifest.json` (period, who made it and when, every file's rows, SHA-256, exact SQL
//! and bound parameters, the sources and their positions, the integrity chain's head and
//! whether it verified), `manifest.sig` (Ed25519 over the manifest's bytes) and
//! `SHA256SUMS`. [`pack::build`] writes one, [`pack::verify`] checks one.
//!
//! - `chain`: digests of every committed ingest batch, chained; `tokentrail verify`.
//! - `populations`: what each criterion contains and the SQL that makes it.
//! - `pack`: building and verifying the zip; `csv_file`, `report`: its files.
//! - `sign`: the signing key.

pub mod chain;
mod csv_file;
pub mod manifest;
pub mod pack;
pub mod pdf;
pub mod populations;
mod report;
pub mod sample;
pub mod sign;
mod snapshot;

use anyhow::{Result, bail};
use chrono::{DateTime, SecondsFormat, Utc};

/// A SOC 2 criterion (or group) a pack can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Criterion {
    /// Logical access: who can reach the data and how they authenticate.
    Cc6_1,
    /// CC6.2/CC6.3: access granted, removed (leavers' too) and reviewed; least privilege.
    Cc6_2,
    /// Monitoring: sources and completeness, rules, findings.
    Cc7_2,
    /// CC7.3/CC7.4: evaluation and response to findings.
    Cc7_3,
    /// The tool's own access log.
    AccessLog,
}

impl Criterion {
    pub const ALL: [Criterion; 5] =
        [Criterion::Cc6_1, Criterion::Cc6_2, Criterion::Cc7_2, Criterion::Cc7_3, Criterion::AccessLog];

    /// The name in packs and folders.
    pub fn as_str(self) -> &'static str {
        match self {
            Criterion::Cc6_1 => "CC6.1",
            Criterion::Cc6_2 => "CC6.2-CC6.3",
            Criterion::Cc7_2 => "CC7.2",
            Criterion::Cc7_3 => "CC7.3-CC7.4",
            Criterion::AccessLog => "access_log",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Criterion::Cc6_1 => "CC6.1 Logical access: who can reach the data and how they authenticate",
            Criterion::Cc6_2 => "CC6.2 / CC6.3 Access granted, removed and reviewed; leavers and least privilege",
            Criterion::Cc7_2 => "CC7.2 Monitoring: sources, completeness, detection rules and findings",
            Criterion::Cc7_3 => "CC7.3 / CC7.4 Evaluation of and response to findings",
            Criterion::AccessLog => "Use of the monitoring tool itself (access log)",
        }
    }

    /// One name: `CC6.1`, `CC6.2`, `CC6.3`, `CC6.2/CC6.3`, `CC7.2`, `CC7.3`, `CC7.4`,
    /// `access_log` (any case).
    pub fn parse(text: &str) -> Option<Criterion> {
        let t = text.trim().to_ascii_uppercase().replace(['/', '_', ' '], "-");
        Some(match t.as_str() {
            "CC6.1" => Criterion::Cc6_1,
            "CC6.2" | "CC6.3" | "CC6.2-CC6.3" => Criterion::Cc6_2,
            "CC7.2" => Criterion::Cc7_2,
            "CC7.3" | "CC7.4" | "CC7.3-CC7.4" => Criterion::Cc7_3,
            "ACCESS-LOG" | "ACCESSLOG" => Criterion::AccessLog,
            _ => return None,
        })
    }

    /// A comma-separated list; `all` is every criterion. Says which name is unknown.
    pub fn parse_list(text: &str) -> Result<Vec<Criterion>> {
        let mut out = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name.eq_ignore_ascii_case("all") {
                out.extend(Criterion::ALL);
                continue;
            }
            match Criterion::parse(name) {
                Some(c) => out.push(c),
                None => bail!(
                    "criteria: {name:?} is not one of CC6.1, CC6.2 (or CC6.3), CC7.2, CC7.3 (or CC7.4), access_log, all"
                ),
            }
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            bail!("criteria: name at least one of CC6.1, CC6.2, CC7.2, CC7.3, access_log (comma-separated), or all");
        }
        Ok(out)
    }
}

/// The period of a pack: [from, to), microseconds since the epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: i64,
    pub to: i64,
}

impl Period {
    /// Checks that `from` is before `to`, and `to` not after now: a pack is evidence of what
    /// happened, and an hour still to come would read as a gap.
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Period> {
        let now = Utc::now();
        if to > now {
            bail!(
                "the period ends in the future ({}, now is {}): end it at or before now",
                rfc3339(to.timestamp_micros()),
                rfc3339(now.timestamp_micros())
            );
        }
        if from >= to {
            bail!(
                "the period is empty: from ({}) must be before to ({})",
                rfc3339(from.timestamp_micros()),
                rfc3339(to.timestamp_micros())
            );
        }
        Ok(Period { from: from.timestamp_micros(), to: to.timestamp_micros() })
    }

    /// For file names: `20250303T0000Z-20250601T0000Z`.
    pub fn slug(&self) -> String {
        let f = |us: i64| {
            DateTime::from_timestamp_micros(us).map(|t| t.format("%Y%m%dT%H%MZ").to_string()).unwrap_or_default()
        };
        format!("{}-{}", f(self.from), f(self.to))
    }

    pub fn describe(&self) -> String {
        format!("{} to {} (UTC, end exclusive)", rfc3339(self.from), rfc3339(self.to))
    }
}

/// Checks the names of expected streams: `cosmos:<account>` (lower-cased, as stored),
/// `signins:<category>` or `raw:<category>`.
pub fn expected_streams(names: &[String]) -> Result<Vec<String>> {
    names
        .iter()
        .map(|name| {
            let name = name.trim();
            match name.split_once(':') {
                Some(("cosmos", account)) if !account.is_empty() => Ok(format!("cosmos:{}", account.to_lowercase())),
                Some(("signins" | "raw", category)) if !category.is_empty() => Ok(name.to_string()),
                _ => bail!(
                    "expected stream {name:?}: write cosmos:<account>, signins:<category> (e.g. signins:SignInLogs) or raw:<category>"
                ),
            }
        })
        .collect()
}

/// RFC 3339 in UTC with a `Z`.
pub fn rfc3339(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| micros.to_string())
}

/// How much work one pack may take: rows held in memory across its populations, time,
/// and a flag that stops it (its client went away). Over the API a pack is bounded by
/// configuration (`[evidence]`); the command line has no limits but Ctrl-C.
#[derive(Debug, Clone)]
pub struct Budget {
    pub max_rows: u64,
    pub deadline: Option<std::time::Instant>,
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Budget {
    pub fn unlimited() -> Budget {
        Budget { max_rows: u64::MAX, deadline: None, stop: Default::default() }
    }

    /// Whether the work must stop now (stopped, or past the deadline).
    pub fn spent(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Relaxed)
            || self.deadline.is_some_and(|d| std::time::Instant::now() >= d)
    }
}

/// A pack stopped by its [`Budget`]: the caller asked for more than it allows.
#[derive(Debug, thiserror::Error)]
pub enum OverBudget {
    #[error("the pack would hold more than {0} rows; choose a shorter period or fewer criteria")]
    Rows(u64),
    #[error("building the pack took longer than allowed and was stopped; choose a shorter period or fewer criteria")]
    Time,
    #[error("the pack was cancelled")]
    Cancelled,
}

/// Who asked for a pack: the caller's Entra ID object and tenant id, and name.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GeneratedBy {
    pub oid: Option<String>,
    pub tid: Option<String>,
    pub name: String,
}

impl GeneratedBy {
    /// For the command line: the operating-system user (no Entra ID identity).
    pub fn local_user() -> GeneratedBy {
        let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into());
        GeneratedBy { oid: None, tid: None, name: format!("{user} (tokentrail command line)") }
    }
}
