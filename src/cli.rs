//! The command line: parses arguments and calls the library. Nothing else.

use crate::ingest::PipelineOptions;
use crate::query::Format;
use crate::store::{Store, StoreOptions};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "tokentrail", version, about = "Audit log analytics for Azure Cosmos DB and Microsoft Entra ID")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest diagnostic-log files or directories (.json, .ndjson, .gz, storage-archive layout).
    Ingest {
        /// The DuckDB file (created if missing).
        #[arg(long, env = "TOKENTRAIL_DB")]
        db: PathBuf,
        /// Parser threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// DuckDB threads. Default 1: DuckDB's parallel insert costs more CPU than it
        /// saves while the parser threads need the cores (see BENCHMARKS.md).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Rows per commit (each commit also records where every file stands).
        #[arg(long, default_value_t = crate::ingest::COMMIT_ROWS)]
        commit_rows: usize,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run read-only SQL against the database.
    Query {
        #[arg(long, env = "TOKENTRAIL_DB")]
        db: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        sql: String,
    },
    /// Generate realistic traffic (and attack scenarios with their ground truth) as files.
    Generate {
        /// An .ndjson file, or a directory to fill in Azure's storage-archive layout.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 7)]
        days: u32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Comma-separated scenario names, or `all`.
        #[arg(long, value_delimiter = ',')]
        scenarios: Vec<String>,
        /// Traffic volume multiplier.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
    },
    /// Run everything locally on generated traffic: no Azure account needed.
    Demo {
        #[arg(long, default_value = "data/tokentrail.duckdb")]
        db: PathBuf,
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Days of history to backfill on first start.
        #[arg(long, default_value_t = 14)]
        days: u32,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOKENTRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Ingest { db, workers, threads, commit_rows, paths } => {
            let mut options = PipelineOptions { commit_rows: commit_rows.max(1), ..PipelineOptions::default() };
            if let Some(workers) = workers {
                options.workers = workers.max(1);
            }
            ingest(db, options, threads, paths)
        }
        Command::Query { db, format, sql } => {
            crate::query::run(&db, &sql, format, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate { out, days, seed, scenarios, scale } => {
            let scenarios = crate::demo::parse_scenarios(&scenarios)?;
            let summary = crate::demo::generate_files(&out, days, seed, &scenarios, scale)?;
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { db, port, seed, days } => {
            crate::demo::run(crate::demo::DemoOptions { db, port, seed, days })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn ingest(db: PathBuf, options: PipelineOptions, threads: usize, paths: Vec<PathBuf>) -> Result<ExitCode> {
    let store = Store::open(&db, &StoreOptions { threads: Some(threads.max(1)), ..StoreOptions::default() })?;
    let mut writer = store.writer()?;
    let progress = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {wide_msg}")
            .context("progress bar template")?,
    );
    let report = crate::source::file::ingest_files(&store, &mut writer, &paths, options, progress)?;
    println!("files: {} ({} unchanged, {} failed)", report.files, report.unchanged.len(), report.failed.len());
    if let Some((first, last)) = report.batches {
        for (table, category, rows) in crate::source::file::counts_by_category(&store, first, last)? {
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
