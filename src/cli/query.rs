//! `tokentrail query`: read-only SQL from the command line.

use super::output::{Format, write_batches};
use crate::store::{Store, StoreOptions};
use anyhow::{Context, Result};
use arrow::record_batch::RecordBatch;
use std::io::Write;
use std::path::Path;

/// Runs `sql` against the database at `db`, opened read-only, and writes the result.
pub fn run(db: &Path, sql: &str, format: Format, out: &mut impl Write) -> Result<()> {
    let store = Store::open(db, &StoreOptions { read_only: true, ..StoreOptions::default() })?;
    let conn = store.connection()?;
    let mut stmt = conn.prepare(sql).context("the query is not valid SQL for this database")?;
    let batches: Vec<RecordBatch> = stmt.query_arrow([]).context("running the query")?.collect();
    write_batches(&batches, format, out)
}
