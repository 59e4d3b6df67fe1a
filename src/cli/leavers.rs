//! `tokentrail leavers import FILE.csv`: stores a list of leavers (who left, and when) for
//! the CC6.2 leavers population. A bad line refuses the file: `error: <file>: line N: ...`.

use crate::inventory::leavers;
use crate::store::{Store, StoreOptions};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::ExitCode;

/// The largest list read (the API's bound too).
pub const MAX_BYTES: u64 = leavers::MAX_BYTES as u64;

pub fn import(db: &Path, file: &Path) -> Result<ExitCode> {
    let name = file.display().to_string();
    let size = std::fs::metadata(file).with_context(|| name.clone())?.len();
    if size > MAX_BYTES {
        anyhow::bail!("{name}: {size} bytes; a list may hold at most {} MiB: split it", MAX_BYTES >> 20);
    }
    let bytes = std::fs::read(file).with_context(|| name.clone())?;
    // Checked before the database is opened (or created): a bad file changes nothing.
    leavers::parse(&name, &bytes)?;
    let store = Store::open(db, &StoreOptions::default())?;
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into());
    let imported = leavers::import(&store, &name, &bytes, &format!("{user} (command line)"))?;
    println!("leavers list {}: {} leavers from {name} (SHA-256 {})", imported.list_id, imported.rows, imported.sha256);
    Ok(ExitCode::SUCCESS)
}
