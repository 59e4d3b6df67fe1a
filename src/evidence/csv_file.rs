//! Populations as CSV: a header line, then one line per row. Times are RFC 3339 UTC,
//! NULL is an empty cell, and a cell that a spreadsheet would run as a formula (one
//! starting with `=`, `+`, `-`, `@`, tab or carriage return; OWASP ASVS 5.0 V1.2.10)
//! gets a leading `'`. Numbers are cells too: a negative number shows as `'-3`, which
//! a spreadsheet still reads as text, never as a formula.

use anyhow::Result;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use std::borrow::Cow;

/// `text` as a spreadsheet must show it.
pub fn escape(text: &str) -> Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// The CSV of a population.
pub fn write(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
    let header: Vec<Cow<'_, str>> = schema.fields().iter().map(|f| escape(f.name())).collect();
    writer.write_record(header.iter().map(|c| c.as_bytes()))?;
    let options = FormatOptions::default().with_null("");
    let mut row: Vec<String> = Vec::new();
    for batch in batches {
        let formatters: Vec<Cell<'_>> = batch
            .columns()
            .iter()
            .map(|c| match c.data_type() {
                DataType::Timestamp(TimeUnit::Microsecond, _) => Ok(Cell::Time(c.as_ref())),
                _ => ArrayFormatter::try_new(c.as_ref(), &options).map(Cell::Other),
            })
            .collect::<Result<_, _>>()?;
        for i in 0..batch.num_rows() {
            row.clear();
            for cell in &formatters {
                row.push(cell.text(i));
            }
            writer.write_record(row.iter().map(|c| escape(c).into_owned()))?;
        }
    }
    writer.into_inner().map_err(|e| anyhow::anyhow!("CSV: {e}"))
}

enum Cell<'a> {
    Time(&'a dyn Array),
    Other(ArrayFormatter<'a>),
}

/// Cell `i` of `array` as the CSV files and the report show it.
pub fn cell(array: &dyn Array, i: usize) -> String {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => Cell::Time(array).text(i),
        _ => match ArrayFormatter::try_new(array, &FormatOptions::default().with_null("")) {
            Ok(formatter) => Cell::Other(formatter).text(i),
            Err(error) => format!("({error})"),
        },
    }
}

impl Cell<'_> {
    fn text(&self, i: usize) -> String {
        match self {
            Cell::Time(array) if array.is_null(i) => String::new(),
            Cell::Time(array) => super::rfc3339(array.as_primitive::<TimestampMicrosecondType>().value(i)),
            Cell::Other(formatter) => formatter.value(i).to_string(),
        }
    }
}

/// Data rows of a CSV file (the header line not counted), as a reader of the pack counts them.
pub fn count_rows(bytes: &[u8]) -> Result<u64> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes);
    let mut n = 0;
    for record in reader.byte_records() {
        record?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn formula_starts_are_escaped() {
        for text in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(escape(text), format!("'{text}"));
        }
        for text in ["a=1", "", "1", " =x"] {
            assert_eq!(escape(text), text);
        }
    }
}
