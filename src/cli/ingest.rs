//! `tokentrail ingest`: files into the database, with a progress bar and a summary by category.

use crate::ingest::PipelineOptions;
use crate::store::StoreOptions;
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn ingest(db: PathBuf, options: PipelineOptions, threads: usize, paths: Vec<PathBuf>) -> Result<ExitCode> {
    let progress = crate::progress::bar("{spinner} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {wide_msg}")?;
    let store_options = StoreOptions { threads: Some(threads.max(1)), ..StoreOptions::default() };
    let (store, report) = crate::ingest::files::ingest_files_at(&db, &store_options, &paths, options, progress)?;
    println!("files: {} ({} unchanged, {} failed)", report.files, report.unchanged.len(), report.failed.len());
    if let Some((first, last)) = report.batches {
        for (table, category, rows) in crate::ingest::files::counts_by_category(&store, first, last)? {
            println!("  {table:<16} {category:<36} {rows:>12}");
        }
    }
    let c = report.counts;
    println!(
        "stored: {} cosmos requests, {} sign-ins, {} raw, {} quarantined",
        c.cosmos, c.signins, c.raw, c.quarantined
    );
    if c.quarantined > 0 {
        println!(
            "see them with: tokentrail query --db {} \"SELECT source, line, reason FROM quarantine\"",
            db.display()
        );
    }
    for (file, error) in &report.failed {
        eprintln!("error: {file}: {error}");
    }
    Ok(if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
