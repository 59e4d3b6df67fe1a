//! `tokentrail inventory`: who may do what in Cosmos DB, read from Azure Resource Manager
//! (or from `az` output with `--from-file`) and stored with history. Progress and problems
//! go to stderr; a summary to stdout.

use crate::config::{CredentialKind, InventoryConfig};
use crate::inventory::{self, Snapshot, history::Changes};
use crate::store::{Store, StoreOptions};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct InventoryArgs {
    pub db: PathBuf,
    pub subscriptions: Vec<String>,
    pub from_file: Vec<PathBuf>,
    pub endpoint: Option<String>,
    pub credential: CredentialKind,
    /// When the `--from-file` output was taken (default: now).
    pub taken_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub fn run(args: InventoryArgs) -> Result<ExitCode> {
    if args.from_file.is_empty() && args.taken_at.is_some() {
        anyhow::bail!("--taken-at dates files given with --from-file; an inventory from Azure is taken now");
    }
    let (snapshot, store) = if args.from_file.is_empty() {
        let mut config =
            InventoryConfig { subscriptions: args.subscriptions, credential: args.credential, ..Default::default() };
        if let Some(endpoint) = args.endpoint {
            config.endpoint = endpoint;
        }
        config.check().map_err(|e| {
            anyhow::anyhow!(
                "{}",
                e.to_string()
                    .replace("inventory.subscriptions", "--subscription")
                    .replace("inventory.endpoint", "--endpoint")
            )
        })?;
        let client = inventory::client(&config)?;
        eprintln!("reading the inventory from {}", client.endpoint());
        let store = open(&args.db)?;
        let (snapshot, changes) = inventory::run(&store, &client, &config.subscriptions)?;
        summary(&snapshot, &changes);
        (snapshot, store)
    } else {
        if !args.subscriptions.is_empty() {
            anyhow::bail!(
                "--subscription reads from Azure; with --from-file the files say which subscriptions they hold"
            );
        }
        let now = chrono::Utc::now();
        let taken_at = args.taken_at.unwrap_or(now);
        if taken_at > now {
            anyhow::bail!("--taken-at {}: in the future; give when the az commands ran", taken_at.to_rfc3339());
        }
        let snapshot = inventory::files::read(&args.from_file, taken_at)?;
        eprintln!("read {} file(s)", args.from_file.len());
        let store = open(&args.db)?;
        let changes = inventory::history::record(&store, &snapshot)?;
        summary(&snapshot, &changes);
        (snapshot, store)
    };
    drop(store);
    for problem in &snapshot.problems {
        eprintln!("error: {problem}");
    }
    Ok(if snapshot.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn open(db: &Path) -> Result<Store> {
    Store::open(db, &StoreOptions::default())
}

fn summary(snapshot: &Snapshot, changes: &Changes) {
    println!(
        "inventory run {}: {} accounts, {} role definitions, {} data role assignments, {} Azure role assignments",
        changes.run_id,
        snapshot.accounts.len(),
        snapshot.definitions.len(),
        snapshot.assignments.len(),
        snapshot.azure_assignments.len()
    );
    println!("history: {} opened, {} closed, {} unchanged", changes.opened, changes.closed, changes.unchanged);
    if snapshot.failed > 0 {
        println!(
            "{} subscription(s) not read (their rows are kept as they were), {} read",
            snapshot.failed, snapshot.ok
        );
    }
}
