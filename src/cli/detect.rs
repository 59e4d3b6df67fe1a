//! `tokentrail detect`: detection brought up to date over a period, findings printed.

use super::output::Format;
use crate::rules::{DetectionConfig, Detector, FindingSummary, data_clock, findings_in_period};
use crate::store::{Store, StoreOptions};
use anyhow::Result;
use chrono::{DateTime, Utc};
use std::io::Write;
use std::path::Path;

/// `tokentrail detect --db PATH [--from T] [--to T] [--format table|csv|json]`: brings
/// detection up to date (absorbing what was ingested, evaluating every rule over the period
/// asked for, the whole history by default) and prints the findings with evidence in it.
/// Rules and lists come from [`DetectionConfig::from_env`]; problems with them go to
/// stderr as warnings, and the other rules run.
pub fn detect_command(
    db: &Path,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    format: Format,
    out: &mut impl Write,
) -> Result<()> {
    detect_with(db, &DetectionConfig::from_env(), from, to, format, out)
}

/// [`detect_command`] with explicit settings.
pub fn detect_with(
    db: &Path,
    config: &DetectionConfig,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    format: Format,
    out: &mut impl Write,
) -> Result<()> {
    if !db.exists() {
        anyhow::bail!("no database at {}: run `tokentrail ingest --db {}` first", db.display(), db.display());
    }
    let store = Store::open(db, &StoreOptions::default())?;
    let (detector, problems) = Detector::open(&store, config)?;
    for problem in &problems {
        eprintln!("warning: {problem}");
    }
    let (from, to) = (from.map(|t| t.timestamp_micros()), to.map(|t| t.timestamp_micros()));
    // Caught up, all history is evaluated; a period asked for is evaluated again on top.
    let evaluation = if from.is_some() || to.is_some() {
        detector.evaluate_period(&store, from, to)?
    } else {
        detector.evaluate_after_commit(&store)?
    };
    for failure in &evaluation.failures {
        eprintln!("warning: {failure}");
    }
    let conn = store.connection()?;
    let Some((start, end)) = data_clock(&conn)? else {
        return write_findings(&[], format, out);
    };
    let found = findings_in_period(&store, from.unwrap_or(start), to.unwrap_or(end + 1))?;
    write_findings(&found, format, out)
}

fn write_findings(found: &[FindingSummary], format: Format, out: &mut impl Write) -> Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, found)?;
            writeln!(out)?;
        }
        Format::Csv | Format::Table => {
            let batch = summaries_batch(found)?;
            super::output::write_batches(&[batch], format, out)?;
        }
    }
    Ok(())
}

fn summaries_batch(found: &[FindingSummary]) -> Result<arrow::record_batch::RecordBatch> {
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    let text = |f: fn(&FindingSummary) -> Option<&str>| -> ArrayRef {
        std::sync::Arc::new(found.iter().map(f).collect::<StringArray>())
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", std::sync::Arc::new(found.iter().map(|f| f.id).collect::<Int64Array>())),
        ("rule", text(|f| Some(&f.rule))),
        ("severity", text(|f| Some(&f.severity))),
        ("status", text(|f| Some(&f.status))),
        ("principal", text(|f| f.principal_name.as_deref().or(f.principal_id.as_deref()))),
        ("entity", text(|f| Some(&f.entity))),
        ("first_seen", text(|f| Some(&f.first_seen))),
        ("last_seen", text(|f| Some(&f.last_seen))),
        ("count", std::sync::Arc::new(found.iter().map(|f| f.count).collect::<Int64Array>())),
        ("summary", text(|f| f.summary.as_deref())),
    ];
    Ok(arrow::record_batch::RecordBatch::try_from_iter(columns)?)
}
