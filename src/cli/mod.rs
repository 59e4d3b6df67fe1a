//! The command line: parses arguments and runs one command, each in a file of its own
//! here; what a command prints is there, what it does is in the library.

mod archive;
mod demo;
pub mod detect;
mod evidence;
mod generate;
mod ingest;
mod inventory;
mod leavers;
pub mod output;
mod produce;
mod query;
mod serve;
mod token;

use crate::ingest::PipelineOptions;
use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use output::Format;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "tokentrail", version, about = "Audit log analytics for Azure Cosmos DB and Microsoft Entra ID")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
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
        /// DuckDB threads. Default 1: more took more CPU for no gain in wall time while the
        /// parser threads need the cores (BENCHMARKS.md, design measurements).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Rows per commit, counted in the commit's largest table (each commit also
        /// records where every file stands).
        #[arg(long, default_value_t = crate::store::COMMIT_ROWS)]
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
    /// Run the detection rules (queries/ and TOKENTRAIL_RULES_DIR) over a period of event time.
    Detect {
        #[arg(long, env = "TOKENTRAIL_DB")]
        db: PathBuf,
        /// Start of the period (RFC 3339); default: the beginning of the data.
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// End of the period (RFC 3339); default: the end of the data.
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
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
        /// `realistic` (shared office egress, benign failures, VPNs, address pools, new
        /// hires, month-end jobs; attacks as they look there) or `tidy` (every user on its
        /// own addresses: what the speed benchmarks use).
        #[arg(long, default_value = "tidy")]
        profile: crate::synth::Profile,
    },
    /// Run the service: stream Event Hubs into DuckDB (if configured) and serve HTTP.
    Serve {
        /// A TOML configuration file; `TOKENTRAIL_<KEY>` environment variables
        /// (nested keys joined by `__`) override it.
        #[arg(long, env = "TOKENTRAIL_CONFIG")]
        config: Option<PathBuf>,
        /// Load and check the configuration as `serve` would, print what would run, and
        /// exit: opens no database, binds no port, connects nowhere.
        #[arg(long)]
        check_config: bool,
    },
    /// Send diagnostic records from files to an event hub, in envelopes of N records.
    Produce {
        /// The event hub, e.g. insights-logs-dataplanerequests.
        #[arg(long)]
        hub: String,
        /// Fully qualified namespace (not needed with a connection string).
        #[arg(long)]
        namespace: Option<String>,
        /// default, managed_identity, workload_identity, client_secret,
        /// client_certificate, azure_cli, or connection_string (reads
        /// TOKENTRAIL_EVENTHUBS_CONNECTION_STRING; emulator and local tests only).
        #[arg(long, default_value = "default")]
        credential: String,
        /// An AMQP endpoint to dial instead of amqps://NAMESPACE (emulator, test hub).
        #[arg(long)]
        endpoint: Option<String>,
        /// Send every event to this partition (default: the hub spreads them).
        #[arg(long)]
        partition: Option<String>,
        /// Records per event.
        #[arg(long, default_value_t = 100)]
        records_per_event: usize,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a token of the development issuer, accepted by a `demo` running on that database.
    Token {
        /// Responder, Auditor or Admin.
        #[arg(long)]
        role: String,
        /// The demo's database: the signing key is the file `<db>.dev-issuer.pem` beside it.
        #[arg(long, default_value = "data/tokentrail.duckdb")]
        db: PathBuf,
        /// Display name in the token (and the access log); the same name is the same user.
        #[arg(long, default_value = "Demo User")]
        name: String,
        /// Lifetime in minutes.
        #[arg(long, default_value_t = 60)]
        minutes: u32,
    },
    /// SOC 2 evidence pack: `evidence --db PATH --criteria CC6.1,CC7.2 --from T --to T --out PACK.zip`;
    /// `evidence verify PACK.zip` checks one; `evidence public-key` prints the signing key's public half.
    #[command(args_conflicts_with_subcommands = true)]
    Evidence {
        #[command(subcommand)]
        action: Option<EvidenceAction>,
        #[command(flatten)]
        pack: EvidenceArgs,
    },
    /// Recompute the integrity chain of every committed ingest batch from the stored rows,
    /// and name the first batch that no longer matches.
    Verify {
        #[arg(long, env = "TOKENTRAIL_DB")]
        db: PathBuf,
        /// The lake rows were archived to: rows deleted from the database by retention are
        /// recomputed from its files (a directory, or an Azure Storage URL).
        #[arg(long, env = "TOKENTRAIL_LAKE_URL")]
        lake: Option<String>,
    },
    /// Copy committed batches to the Parquet lake (a directory, or Azure Blob / ADLS Gen2
    /// with the environment's Entra ID identity), read them back against the integrity
    /// chain; with --hot-days, delete from the database archived rows older than that.
    Archive {
        #[arg(long, env = "TOKENTRAIL_DB")]
        db: PathBuf,
        /// A directory, https://<account>.blob.core.windows.net/<container>[/<prefix>],
        /// abfss://<container>@<account>.dfs.core.windows.net[/<prefix>], or Azurite's
        /// http://127.0.0.1:<port>/<account>/<container> (key in TOKENTRAIL_LAKE_ACCOUNT_KEY).
        #[arg(long, env = "TOKENTRAIL_LAKE_URL")]
        lake: String,
        /// Days every archived table keeps in the database; older archived rows are deleted.
        #[arg(long)]
        hot_days: Option<u32>,
        /// One table's days, TABLE=DAYS (repeatable; overrides --hot-days for it).
        #[arg(long = "table-hot-days", value_parser = archive::table_days)]
        table_hot_days: Vec<(String, u32)>,
        /// Rows per segment of whole batches.
        #[arg(long, default_value_t = crate::lake::archive::SEGMENT_ROWS)]
        segment_rows: i64,
        /// Apply the retention as of this time (RFC 3339) instead of now.
        #[arg(long)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Check the shared lake of balanced hubs ([eventhubs.balance] shared_lake): every
    /// partition's chain of segment claims, every file's SHA-256, every row inside its
    /// claim's events, no event twice. Exits 1 on any problem.
    Segments {
        /// The shared lake: a directory or an Azure Storage URL, as in the configuration
        /// (Azurite's key in TOKENTRAIL_LAKE_ACCOUNT_KEY).
        #[arg(long)]
        lake: String,
        /// One JSON object per partition instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read who may do what in Cosmos DB (accounts, data-plane role definitions and
    /// assignments, Azure role assignments) from Azure Resource Manager, or from `az`
    /// output with --from-file, and store it with history. Needs Reader on each subscription.
    Inventory {
        /// The DuckDB file (created if missing).
        #[arg(long, env = "TOKENTRAIL_DB")]
        db: PathBuf,
        /// A subscription id to read (repeatable); default: every subscription the identity sees.
        #[arg(long = "subscription")]
        subscriptions: Vec<String>,
        /// Files printed by `az cosmosdb show`/`list`, `az cosmosdb sql role definition list`,
        /// `az cosmosdb sql role assignment list` or `az role assignment list --all` (JSON).
        #[arg(long = "from-file", num_args = 1..)]
        from_file: Vec<PathBuf>,
        /// default, managed_identity, workload_identity, client_secret, client_certificate or azure_cli.
        #[arg(long, default_value = "default")]
        credential: String,
        /// The management endpoint (sovereign clouds, tests).
        #[arg(long, hide = true)]
        endpoint: Option<String>,
        /// When the `--from-file` output was taken (RFC 3339; default: now). Inventories are
        /// stored oldest first.
        #[arg(long)]
        taken_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Lists of leavers for the CC6.2 evidence: `leavers import --db PATH FILE.csv`.
    Leavers {
        #[command(subcommand)]
        action: LeaversAction,
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
        /// The generated tenant: `realistic` or `tidy` (see `generate --help`).
        #[arg(long, default_value = "realistic")]
        profile: crate::synth::Profile,
    },
}

#[derive(clap::Args)]
struct EvidenceArgs {
    /// The DuckDB file.
    #[arg(long, env = "TOKENTRAIL_DB")]
    db: Option<PathBuf>,
    /// Comma-separated: CC6.1, CC6.2 (= CC6.3), CC7.2, CC7.3 (= CC7.4), access_log, or all.
    #[arg(long)]
    criteria: Option<String>,
    /// Start of the period (RFC 3339, e.g. 2025-01-01T00:00:00Z).
    #[arg(long)]
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// End of the period, exclusive (RFC 3339).
    #[arg(long)]
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// The zip to write, or a folder to write it in under a name that says the criteria and
    /// period (tokentrail-evidence_CC6.1+CC7.2_2025-01-01_to_2025-04-01.zip).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A stream that must be in the pack's coverage even without events: cosmos:<account>,
    /// signins:<category> or raw:<category> (repeat it; the inventory's accounts always are).
    #[arg(long = "expect", value_name = "STREAM")]
    expect: Vec<String>,
    /// Hours within which a leaver's access is to be removed: the CC6.2 leavers population
    /// says on time, late or not removed against it (as `[evidence] removal_deadline_hours`).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=8760))]
    removal_hours: u32,
    /// Ed25519 private key (PKCS#8 PEM); default `<db>.evidence-key.pem`, created on first use.
    #[arg(long, env = "TOKENTRAIL_EVIDENCE_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    /// The name recorded as "generated by" (default: the operating-system user).
    #[arg(long)]
    generated_by: Option<String>,
    /// The lake retention moved rows to: the populations read the period's archived rows
    /// from it (a directory, or an Azure Storage URL). Without it, a pack whose period
    /// reaches such rows says it is incomplete.
    #[arg(long, env = "TOKENTRAIL_LAKE_URL")]
    lake: Option<String>,
}

#[derive(Subcommand)]
enum LeaversAction {
    /// Store a CSV of people who left: a header naming who (principal_id / object id, or
    /// upn / email; name optional) and when (left_at / leave date / termination date:
    /// 2025-03-04, 2025-03-04 17:00 UTC or RFC 3339), one leaver a line.
    Import {
        #[arg(long, env = "TOKENTRAIL_DB")]
        db: PathBuf,
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum EvidenceAction {
    /// Check a pack: signature, every file's SHA-256 and row count, SHA256SUMS.
    Verify {
        pack: PathBuf,
        /// The service's public key (PEM, from /api/evidence/public-key or `evidence public-key`).
        #[arg(long, conflicts_with = "trust_embedded_key")]
        public_key: Option<PathBuf>,
        /// Accept the key named inside the pack (whoever made the pack chose it): checks that
        /// the pack is whole, not who made it.
        #[arg(long)]
        trust_embedded_key: bool,
    },
    /// Draw a sample of a pack's event-level populations (key_access_events of CC6.1,
    /// finding_evidence of CC7.2) and trace each item to its original log record: the pack is
    /// verified first; the draw orders items by SHA-256 of "<seed>:<event_id>" and takes the
    /// first N of each population, so an auditor can redraw it with sha256sum.
    Sample {
        pack: PathBuf,
        /// Items to draw from each population.
        #[arg(long)]
        size: usize,
        /// Any text; the same seed draws the same items.
        #[arg(long)]
        seed: String,
        /// Sample one population (key_access_events or finding_evidence); default: each one the pack holds.
        #[arg(long)]
        population: Option<String>,
        /// The database, for records kept whole in raw_events (control and directory changes) whose file is gone.
        #[arg(long, env = "TOKENTRAIL_DB")]
        db: Option<PathBuf>,
        /// The folder to write sample.csv, sample.json and items/ to (new or empty).
        #[arg(long)]
        out: PathBuf,
        /// The service's public key (PEM, from /api/evidence/public-key or `evidence public-key`).
        #[arg(long, conflicts_with = "trust_embedded_key")]
        public_key: Option<PathBuf>,
        /// Accept the key named inside the pack (whoever made the pack chose it).
        #[arg(long)]
        trust_embedded_key: bool,
    },
    /// Print the public key that verifies this database's packs (PEM), creating the key if needed.
    PublicKey {
        #[arg(long, env = "TOKENTRAIL_DB")]
        db: PathBuf,
        #[arg(long, env = "TOKENTRAIL_EVIDENCE_SIGNING_KEY")]
        signing_key: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    crate::sys::restrict_new_files();
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::progress::LogWriter::stderr)
        .with_ansi(ansi)
        .init();
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Ingest { db, workers, threads, commit_rows, paths } => {
            let mut options = PipelineOptions { commit_rows: commit_rows.max(1), ..PipelineOptions::default() };
            if let Some(workers) = workers {
                options.workers = workers.max(1);
            }
            ingest::ingest(db, options, threads, paths)
        }
        Command::Query { db, format, sql } => {
            query::run(&db, &sql, format, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Detect { db, from, to, format } => {
            detect::detect_command(&db, from, to, format, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate { out, days, seed, scenarios, scale, profile } => {
            let scenarios = generate::parse_scenarios(&scenarios)?;
            let summary = generate::generate_files(&out, days, seed, &scenarios, scale, profile)?;
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config: path, check_config } => {
            let config = crate::config::ServeConfig::load(path.as_deref())?;
            if check_config {
                let summary = serve::check(&config)?;
                let source = path.map_or("the environment".into(), |p| p.display().to_string());
                println!("configuration ok ({source} and TOKENTRAIL_* variables); serve would run:\n{summary}");
                return Ok(ExitCode::SUCCESS);
            }
            crate::sys::memory::cap_malloc_arenas();
            serve::run(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Produce { hub, namespace, credential, endpoint, partition, records_per_event, files } => {
            produce::produce(hub, namespace, credential, endpoint, partition, records_per_event, files)
        }
        Command::Token { role, db, name, minutes } => token::print(&role, &db, &name, minutes),
        Command::Evidence { action: Some(EvidenceAction::Verify { pack, public_key, trust_embedded_key }), .. } => {
            evidence::verify_pack(&pack, public_key.as_deref(), trust_embedded_key)
        }
        Command::Evidence {
            action:
                Some(EvidenceAction::Sample { pack, size, seed, population, db, out, public_key, trust_embedded_key }),
            ..
        } => evidence::sample_pack(evidence::SampleArgs {
            pack,
            size,
            seed,
            population,
            db,
            out,
            public_key,
            trust_embedded_key,
        }),
        Command::Evidence { action: Some(EvidenceAction::PublicKey { db, signing_key }), .. } => {
            evidence::public_key(&db, signing_key.as_deref())
        }
        Command::Evidence { action: None, pack } => {
            let missing =
                |name: &str| anyhow::anyhow!("evidence: --{name} is required (or use `evidence verify PACK.zip`)");
            evidence::make_pack(evidence::PackArgs {
                db: pack.db.ok_or_else(|| missing("db"))?,
                criteria: pack.criteria.ok_or_else(|| missing("criteria"))?,
                from: pack.from.ok_or_else(|| missing("from"))?,
                to: pack.to.ok_or_else(|| missing("to"))?,
                out: pack.out.ok_or_else(|| missing("out"))?,
                signing_key: pack.signing_key,
                generated_by: pack.generated_by,
                expected: pack.expect,
                removal_hours: pack.removal_hours,
                lake: pack.lake,
            })
        }
        Command::Verify { db, lake } => evidence::verify_chain(&db, lake.as_deref()),
        Command::Archive { db, lake, hot_days, table_hot_days, segment_rows, as_of } => archive::run(archive::Args {
            db: &db,
            lake: &lake,
            retention: crate::lake::evict::Retention { hot_days, tables: table_hot_days.into_iter().collect() },
            segment_rows,
            as_of,
        }),
        Command::Segments { lake, json } => segments(&lake, json),
        Command::Inventory { db, subscriptions, from_file, credential, endpoint, taken_at } => {
            let credential: crate::config::CredentialKind =
                serde_json::from_value(serde_json::Value::String(credential.clone())).map_err(|_| {
                    anyhow::anyhow!(
                        "--credential {credential:?}: use default, managed_identity, workload_identity, client_secret, \
                         client_certificate or azure_cli"
                    )
                })?;
            inventory::run(inventory::InventoryArgs { db, subscriptions, from_file, endpoint, credential, taken_at })
        }
        Command::Leavers { action: LeaversAction::Import { db, file } } => leavers::import(&db, &file),
        Command::Demo { db, port, seed, days, profile } => {
            crate::sys::memory::cap_malloc_arenas();
            demo::run(demo::DemoOptions { db, port, seed, days, profile })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `tokentrail segments`: the shared lake's check, a line per partition.
fn segments(lake: &str, json: bool) -> Result<ExitCode> {
    let lake = archive::open_lake(lake)?;
    let progress = crate::progress::bar("{spinner} reading the shared lake's claims and files {wide_msg}")?;
    let reports = crate::lake::segments::check(&lake).with_context(|| format!("checking {}", lake.describe()))?;
    progress.finish_and_clear();
    for r in &reports {
        if json {
            println!("{}", serde_json::to_string(r)?);
            continue;
        }
        let rows: Vec<String> = r.rows.iter().map(|(t, n)| format!("{t} {n}")).collect();
        println!(
            "{} partition {}: {} segments, events {}..{}, {}; {} by {} instances",
            r.source,
            r.partition,
            r.segments,
            r.first.map_or("-".into(), |f| f.to_string()),
            r.last.map_or("-".into(), |l| l.to_string()),
            if rows.is_empty() { "no rows".into() } else { rows.join(", ") },
            if r.duplicate_rows > 0 { format!("{} rows twice", r.duplicate_rows) } else { "no row twice".into() },
            r.instances.len()
        );
        for problem in &r.problems {
            println!("  problem: {problem}");
        }
    }
    let bad = reports.iter().filter(|r| !r.problems.is_empty() || r.duplicate_rows > 0).count();
    if bad > 0 {
        eprintln!("{bad} of {} partitions have problems", reports.len());
        return Ok(ExitCode::FAILURE);
    }
    if !json {
        println!("{} partitions checked: every event once", reports.len());
    }
    Ok(ExitCode::SUCCESS)
}
