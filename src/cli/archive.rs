//! `tokentrail archive`: committed batches to the Parquet lake, read back against the
//! integrity chain; with a retention, archived rows older than it leave the database.

use crate::lake::{Lake, Location, archive, evict};
use crate::source::eventhubs::Identity;
use crate::store::{Store, StoreOptions};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::ExitCode;

pub struct Args<'a> {
    pub db: &'a Path,
    pub lake: &'a str,
    pub retention: evict::Retention,
    pub segment_rows: i64,
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
}

/// The lake a CLI command was given: the identity is the environment's (as `default`
/// picks it for Event Hubs), an account key only for Azurite.
pub fn open_lake(text: &str) -> Result<Lake> {
    Lake::new(open_location(text)?)
}

/// A lake's location, reached with the environment's Entra ID identity.
pub fn open_location(text: &str) -> Result<Location> {
    let identity = Identity {
        credential: crate::config::CredentialKind::Default,
        managed_identity_client_id: None,
        tenant_id: None,
        client_id: None,
    };
    Location::parse(text, &move || identity.credential())
}

pub fn run(args: Args<'_>) -> Result<ExitCode> {
    if !args.db.exists() {
        bail!("no database at {}", args.db.display());
    }
    args.retention.check()?;
    let store = Store::open(args.db, &StoreOptions::default())?;
    let lake = open_lake(args.lake)?;
    let progress = crate::progress::bar("{spinner} {pos} segment(s) archived {wide_msg}")?;
    let options = archive::Options { segment_rows: args.segment_rows.max(1), ..Default::default() };
    let report = archive::run(&store, &lake, &options, &|segment| {
        progress.inc(1);
        progress.set_message(format!("batches {}..{}", segment.first_batch, segment.last_batch));
    })
    .with_context(|| format!("archiving to {}", lake.describe()))?;
    progress.finish_and_clear();
    for s in &report.segments {
        println!(
            "archived batches {}..{}: {} rows in {} files, {} bytes{}; read back and verified",
            s.first_batch,
            s.last_batch,
            s.rows,
            s.files,
            s.bytes,
            found(s.files_found)
        );
    }
    for l in &report.journal.links {
        println!(
            "archived {} links {}..{}: {} rows in {} files{}; read back and each link's digest matched",
            l.table,
            l.first_link,
            l.last_link,
            l.rows,
            l.files,
            found(l.files_found)
        );
    }
    for s in &report.journal.snapshots {
        println!("archived findings snapshot {} ({} rows): {}; read back", s.snapshot, s.rows, s.path);
    }
    if report.segments.is_empty() {
        println!("nothing new to archive in {}", lake.describe());
    }
    if report.not_absorbed > 0 {
        println!(
            "{} batch(es) wait for detection (run tokentrail detect, or let serve run) before they are archived",
            report.not_absorbed
        );
    }
    if args.retention != evict::Retention::default() {
        let now = args.as_of.unwrap_or_else(chrono::Utc::now);
        let evicted = evict::run(&store, &lake, &args.retention, now)?;
        for e in &evicted {
            println!(
                "deleted {} {} rows of {} batch(es) of segment {}..{} from the database: archived and verified",
                e.rows, e.table, e.batches, e.first_batch, e.last_batch
            );
        }
        if evicted.is_empty() {
            println!("no archived rows are older than the retention");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--table-hot-days TABLE=DAYS`.
pub fn table_days(text: &str) -> Result<(String, u32), String> {
    let (table, days) = text.split_once('=').ok_or_else(|| format!("{text:?}: give TABLE=DAYS, e.g. signins=90"))?;
    let days = days.trim().parse().map_err(|_| format!("{text:?}: {days:?} is not a number of days"))?;
    Ok((table.trim().to_owned(), days))
}

/// Files an interrupted run had written, when there were some.
fn found(files: usize) -> String {
    if files > 0 { format!(" ({files} found from an interrupted run)") } else { String::new() }
}
