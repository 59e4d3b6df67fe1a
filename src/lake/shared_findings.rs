//! One list of findings across instances. Each instance raises findings over what it
//! stores (and the rules lease holder over everyone's counts), so without this a page
//! lists only the findings of the instance that answers it. So, every
//! [`PUBLISH_EVERY`]:
//!
//! - Each instance publishes the findings it raised or changed since its last file, with
//!   their status, as one immutable JSON file (or several of [`ROWS_PER_FILE`]):
//!   `fleet/findings/<instance>/<latest change, µs>-<part>.json`, written create-if-absent.
//!   A change made in a transaction still open at the last file has an earlier clock than
//!   that file's latest change, so each file repeats [`OVERLAP_MICROS`] of changes before
//!   it: taking in is idempotent.
//! - Each instance takes in the files the others wrote since the last it read (by name:
//!   they sort in order). A finding new here is inserted with its status (and a history
//!   entry, "taken in from instance …"). A finding has two parts, each taken in when the
//!   file's is later:
//!   - its detection facts (count, times, summary), those of the instance that raised it
//!     (`raised_on`, which holds its evidence). A finding this instance raised itself
//!     keeps its own: a file never overwrites them.
//!   - its status, one across instances: the latest anyone set, on any instance. So a
//!     finding can be triaged on whichever instance answers, even when the instance that
//!     raised it is gone, and a file of the triaging instance carries the status to
//!     every other, the raiser's own copy included.
//! - Alerts are sent by the instance that raised it; taking in writes no `raised` alert
//!   event. A status taken in that resolves a finding writes a `resolved` event, so the
//!   instance that holds the alert claim of the finding's episode sends it.
//!
//! Files come from a store other instances write to: every field is checked (a
//! fingerprint is 32 hex digits, a status or severity one of ours, text is bounded) and a
//! file that fails is logged and skipped whole, never half taken in.

use super::Lake;
use crate::store::Store;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Where findings are published, one directory per instance.
pub const DIR: &str = "fleet/findings";

/// How often findings are published and taken in.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(5);

/// How far before the last file's latest change the next file starts (see the module).
const OVERLAP_MICROS: i64 = 10 * 60_000_000;

/// Findings in one file at most.
const ROWS_PER_FILE: usize = 5_000;

/// A file larger than this is not read (5,000 findings of bounded text fit well within).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Files of one instance taken in per pass at most: a long backlog is read over several.
const FILES_PER_PASS: usize = 100;

/// Characters of a text field kept at most (titles, summaries, comments, entities).
const MAX_TEXT: usize = 8_000;

pub const FORMAT: &str = "tokentrail-shared-findings";

/// One published file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub format: String,
    pub schema_version: u32,
    pub instance: String,
    pub findings: Vec<Finding>,
}

/// A finding as published: times in µs since the epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub fingerprint: String,
    pub rule_id: String,
    pub title: String,
    pub severity: String,
    pub principal_id: Option<String>,
    pub entity: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub count: i64,
    pub summary: Option<String>,
    pub status: String,
    pub status_by: Option<String>,
    pub status_at: Option<i64>,
    pub status_comment: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The instance that raised it, when not the one whose file this is (a finding taken
    /// in there and triaged there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raised_on: Option<String>,
}

impl Finding {
    /// Its last change: the later of `updated_at` and `status_at`.
    fn changed(&self) -> i64 {
        self.updated_at.max(self.status_at.unwrap_or(i64::MIN))
    }

    /// Why it cannot be taken in, if it cannot.
    fn check(&self) -> Result<()> {
        if self.fingerprint.len() != 32 || !self.fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("fingerprint {:?} is not 32 hex digits", self.fingerprint.chars().take(64).collect::<String>());
        }
        if crate::rules::findings::Status::parse(&self.status).is_none() {
            bail!("finding {}: status {:?} is not one of ours", self.fingerprint, self.status);
        }
        if !["low", "medium", "high", "critical"].contains(&self.severity.as_str()) {
            bail!("finding {}: severity {:?} is not low, medium, high or critical", self.fingerprint, self.severity);
        }
        let rule_ok = !self.rule_id.is_empty()
            && self.rule_id.len() <= 128
            && self.rule_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !rule_ok {
            bail!("finding {}: rule id {:?} is not a rule's name", self.fingerprint, self.rule_id);
        }
        let texts = [Some(&self.title), self.principal_id.as_ref(), Some(&self.entity), self.summary.as_ref()];
        let more = [self.status_by.as_ref(), self.status_comment.as_ref()];
        if texts.iter().chain(&more).flatten().any(|t| t.chars().count() > MAX_TEXT) {
            bail!("finding {}: a text field is longer than {MAX_TEXT} characters", self.fingerprint);
        }
        if self.raised_on.as_deref().is_some_and(|name| !plain_instance(name)) {
            bail!("finding {}: raised_on is not an instance's name", self.fingerprint);
        }
        if self.count < 0 || self.first_seen > self.last_seen {
            bail!("finding {}: its count or times do not add up", self.fingerprint);
        }
        Ok(())
    }
}

/// An instance's name as files are named by it ([`crate::sys::instance_name`]).
fn plain_instance(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 80
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !name.starts_with('.')
}

/// A published file's name: `<20 digits>-<4 digits>.json`.
fn plain_file(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".json") else { return false };
    let Some((through, part)) = stem.split_once('-') else { return false };
    through.len() == 20 && part.len() == 4 && stem.bytes().all(|b| b.is_ascii_digit() || b == b'-')
}

/// Publishing and taking in, for one instance.
pub struct SharedFindings {
    instance: String,
    last: Option<Instant>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub published: usize,
    pub taken_in: usize,
    pub files_rejected: usize,
}

impl SharedFindings {
    pub fn new(instance: String) -> SharedFindings {
        SharedFindings { instance, last: None }
    }

    /// Publishes and takes in, once [`PUBLISH_EVERY`] has passed since the last pass.
    pub fn pass_if_due(&mut self, store: &Store, lake: &Lake) -> Result<Option<Pass>> {
        if self.last.is_some_and(|at| at.elapsed() < PUBLISH_EVERY) {
            return Ok(None);
        }
        self.last = Some(Instant::now());
        self.pass(store, lake).map(Some)
    }

    /// Publishes this instance's changed findings, then takes in the others'.
    pub fn pass(&self, store: &Store, lake: &Lake) -> Result<Pass> {
        let published = self.publish(store, lake).context("publishing this instance's findings")?;
        let (taken_in, files_rejected) = self.take_in(store, lake).context("taking in other instances' findings")?;
        Ok(Pass { published, taken_in, files_rejected })
    }

    /// Writes the findings this instance raised or changed since its last file (with
    /// [`OVERLAP_MICROS`] before it); how many.
    fn publish(&self, store: &Store, lake: &Lake) -> Result<usize> {
        let conn = store.connection()?;
        let through: Option<i64> =
            conn.query_row("SELECT epoch_us(max(published_through)) FROM shared_findings_out", [], |r| r.get(0))?;
        let latest: Option<i64> =
            conn.query_row(&format!("SELECT epoch_us(max({CHANGED})) FROM findings f WHERE {OWN}"), [], |r| r.get(0))?;
        let Some(latest) = latest.filter(|l| through.is_none_or(|t| *l > t)) else { return Ok(0) };
        let from = through.map_or(i64::MIN, |t| t - OVERLAP_MICROS);
        let mut statement = conn.prepare(&format!(
            "SELECT fingerprint, rule_id, title, severity, principal_id, entity, epoch_us(first_seen), \
             epoch_us(last_seen), count, summary, status, status_by, epoch_us(status_at), status_comment, \
             epoch_us(created_at), epoch_us(updated_at), taken_in_from(f.fingerprint, f.updated_at) FROM findings f \
             WHERE {OWN} AND epoch_us({CHANGED}) > ? AND epoch_us({CHANGED}) <= ? ORDER BY {CHANGED}, fingerprint"
        ))?;
        let findings: Vec<Finding> = statement
            .query_map([from, latest], |r| {
                Ok(Finding {
                    fingerprint: r.get(0)?,
                    rule_id: r.get(1)?,
                    title: r.get(2)?,
                    severity: r.get(3)?,
                    principal_id: r.get(4)?,
                    entity: r.get(5)?,
                    first_seen: r.get(6)?,
                    last_seen: r.get(7)?,
                    count: r.get(8)?,
                    summary: r.get(9)?,
                    status: r.get(10)?,
                    status_by: r.get(11)?,
                    status_at: r.get(12)?,
                    status_comment: r.get(13)?,
                    created_at: r.get(14)?,
                    updated_at: r.get(15)?,
                    raised_on: r.get(16)?,
                })
            })?
            .collect::<duckdb::Result<_>>()?;
        drop(statement);
        let files: Vec<(String, bytes::Bytes)> = findings
            .chunks(ROWS_PER_FILE)
            .enumerate()
            .map(|(part, chunk)| {
                let file = File {
                    format: FORMAT.into(),
                    schema_version: 1,
                    instance: self.instance.clone(),
                    findings: chunk.to_vec(),
                };
                let name = format!("{DIR}/{}/{latest:020}-{part:04}.json", self.instance);
                Ok((name, bytes::Bytes::from(serde_json::to_vec(&file)?)))
            })
            .collect::<Result<_>>()?;
        // A file of that name already there is this instance's own from a pass that
        // stopped before noting it: the same changes.
        lake.put_new_all(files)?;
        crate::store::in_transaction(&conn, |conn| {
            conn.execute("DELETE FROM shared_findings_out", [])?;
            conn.execute("INSERT INTO shared_findings_out VALUES (?, get_current_timestamp())", [time(latest)])?;
            Ok(())
        })?;
        Ok(findings.len())
    }

    /// Takes in the files other instances wrote since the last read; the findings taken in
    /// and the files rejected.
    fn take_in(&self, store: &Store, lake: &Lake) -> Result<(usize, usize)> {
        let (mut taken, mut rejected) = (0, 0);
        for instance in lake.list_dirs(DIR)? {
            if instance == self.instance {
                continue;
            }
            if !plain_instance(&instance) {
                tracing::warn!(instance = %instance.chars().take(100).collect::<String>(), "a directory of shared findings is not named like an instance; not read");
                continue;
            }
            let conn = store.connection()?;
            let after: Option<String> = conn
                .prepare("SELECT max(last_file) FROM shared_findings_read WHERE instance = ?")?
                .query_row([&instance], |r| r.get(0))?;
            drop(conn);
            let dir = format!("{DIR}/{instance}");
            let names: Vec<String> =
                lake.list(&dir, after.as_deref())?.into_iter().filter(|n| plain_file(n)).take(FILES_PER_PASS).collect();
            for name in names {
                let path = format!("{dir}/{name}");
                let outcome = match lake.size(&path)? {
                    Some(size) if size > MAX_FILE_BYTES => {
                        Err(anyhow::anyhow!("{size} bytes, more than the {MAX_FILE_BYTES} a file of findings may be"))
                    }
                    _ => lake.get(&path).and_then(|bytes| parse(&bytes, &instance)),
                };
                let findings = match outcome {
                    Ok(findings) => findings,
                    Err(error) => {
                        tracing::warn!(file = %path, error = format!("{error:#}"), "a file of shared findings was rejected; none of its findings were taken in");
                        rejected += 1;
                        Vec::new()
                    }
                };
                taken += take(store, &instance, &name, &findings)?;
            }
        }
        Ok((taken, rejected))
    }
}

/// A file's findings, each checked; an error names what is wrong.
fn parse(bytes: &[u8], instance: &str) -> Result<Vec<Finding>> {
    let file: File = serde_json::from_slice(bytes).context("not a file of shared findings")?;
    if file.format != FORMAT || file.schema_version != 1 {
        bail!("format {:?} version {} is not {FORMAT} version 1", file.format, file.schema_version);
    }
    if file.instance != instance {
        bail!("it says it is instance {:?}'s, but is in {instance}'s directory", file.instance);
    }
    if file.findings.len() > ROWS_PER_FILE {
        bail!("{} findings, more than the {ROWS_PER_FILE} a file holds", file.findings.len());
    }
    for finding in &file.findings {
        finding.check()?;
    }
    Ok(file.findings)
}

/// A time in µs since the epoch, as DuckDB binds it.
fn time(micros: i64) -> duckdb::types::Value {
    duckdb::types::Value::Timestamp(duckdb::types::TimeUnit::Microsecond, micros)
}

/// A finding's last change, in SQL over `findings f` (migration 30's macro).
const CHANGED: &str = "finding_changed(f.updated_at, f.status_at)";

/// `findings f` rows this instance raised or triaged itself: not taken in, or raised or
/// triaged here since (migration 31's macro).
const OWN: &str = "NOT as_taken_in(f.fingerprint, f.updated_at, f.status_at)";

/// Takes in `findings` of `instance`'s file `name` and notes the file read, in one
/// transaction with the history entries; how many were inserted or brought up to date.
fn take(store: &Store, instance: &str, name: &str, findings: &[Finding]) -> Result<usize> {
    // The latest change of each fingerprint in the file (a file can repeat one).
    let mut latest: std::collections::HashMap<&str, &Finding> = std::collections::HashMap::new();
    for finding in findings {
        let slot = latest.entry(finding.fingerprint.as_str()).or_insert(finding);
        if finding.changed() > slot.changed() {
            *slot = finding;
        }
    }
    crate::store::append::append(store, "finding_history", |conn| {
        conn.execute_batch(
            "CREATE OR REPLACE TEMP TABLE incoming (fingerprint VARCHAR, rule_id VARCHAR, title VARCHAR, \
             severity VARCHAR, principal_id VARCHAR, entity VARCHAR, first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ, \
             count BIGINT, summary VARCHAR, status VARCHAR, status_by VARCHAR, status_at TIMESTAMPTZ, \
             status_comment VARCHAR, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, raised_on VARCHAR);",
        )?;
        let mut insert =
            conn.prepare("INSERT INTO incoming VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")?;
        for f in latest.values() {
            insert.execute(duckdb::params![
                f.fingerprint,
                f.rule_id,
                f.title,
                f.severity,
                f.principal_id,
                f.entity,
                time(f.first_seen),
                time(f.last_seen),
                f.count,
                f.summary,
                f.status,
                f.status_by,
                f.status_at.map(time),
                f.status_comment,
                time(f.created_at),
                time(f.updated_at),
                f.raised_on.as_deref().unwrap_or(instance)
            ])?;
        }
        drop(insert);
        conn.execute("SET VARIABLE shared_instance = ?", [instance])?;
        conn.execute_batch(include_str!("sql/shared_findings_take.sql"))?;
        let taken: i64 = conn.query_row("SELECT count(*) FROM takes", [], |r| r.get(0))?;
        conn.execute_batch(include_str!("sql/shared_findings_apply.sql"))?;
        conn.execute("DELETE FROM shared_findings_read WHERE instance = ?", [instance])?;
        conn.execute("INSERT INTO shared_findings_read VALUES (?, ?)", [instance, name])?;
        conn.execute_batch("DROP TABLE incoming; DROP TABLE takes;")?;
        Ok(taken as usize)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_written_here_are_read() {
        assert!(plain_instance("host-0a1b2c3d") && plain_instance("web.1-ffffffff"));
        for bad in ["", "..", ".hidden", "a/b", "a b", "a'b", &"x".repeat(81)] {
            assert!(!plain_instance(bad), "{bad}");
        }
        assert!(plain_file("00000001733500000000-0000.json"));
        for bad in ["x.json", "00000001733500000000-0000.parquet", "0000000173350000000a-0000.json", "1-2.json"] {
            assert!(!plain_file(bad), "{bad}");
        }
    }
}
