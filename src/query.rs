//! Read-only SQL from the command line, printed as a table, CSV or JSON.

use crate::store::{Store, StoreOptions};
use anyhow::{Context, Result};
use arrow::record_batch::RecordBatch;
use std::io::Write;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Runs `sql` against the database at `db`, opened read-only, and writes the result.
pub fn run(db: &Path, sql: &str, format: Format, out: &mut impl Write) -> Result<()> {
    let store = Store::open(db, &StoreOptions { read_only: true, ..StoreOptions::default() })?;
    let conn = store.connection()?;
    let mut stmt = conn.prepare(sql).context("the query is not valid SQL for this database")?;
    let batches: Vec<RecordBatch> = stmt.query_arrow([]).context("running the query")?.collect();
    write_batches(&batches, format, out)
}

/// Writes `batches` in `format`.
pub fn write_batches(batches: &[RecordBatch], format: Format, out: &mut impl Write) -> Result<()> {
    match format {
        Format::Table => writeln!(out, "{}", arrow::util::pretty::pretty_format_batches(batches)?)?,
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut *out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut *out);
            writer.write_batches(&batches.iter().collect::<Vec<_>>())?;
            writer.finish()?;
            writeln!(out)?;
        }
    }
    Ok(())
}
