//! `tokentrail evidence sample`: items drawn from a pack's event-level populations, each
//! traced to the original log record.
//!
//! The pack is verified first ([`pack::verify`], with the same key rules as `evidence
//! verify`). The draw depends on the seed and the event ids only, so an auditor can redraw
//! it without TokenTrail: within each event-level population, items are ordered by the
//! SHA-256 of `<seed>:<event_id>` (lower-case hex, ascending;
//! `printf '%s' "<seed>:<event_id>" | sha256sum`) and the first N are taken.
//!
//! For each item the record is looked up where it came from: a file that is still there is
//! read at the row's line (a gzip file decompressed), and the record at `record_index` of
//! the envelope on it taken exactly as the parser took it ([`crate::record::parse_unit`]);
//! its SHA-256 is compared with the `record_sha256` the row stored at ingest. A record of
//! another category (a control or directory change) is also kept whole in `raw_events`,
//! read with `--db` when the file is gone. Event Hubs records are not kept by TokenTrail:
//! the item says which partition and sequence number to find in the hub's Capture archive.

use super::csv_file;
use super::pack;
use super::sign;
use crate::record::{Accepted, Origin, RecordSink, Rejection, parse_unit};
use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use serde_json::{Map, Value as Json};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The populations whose rows are single events with a stable `event_id`, and the criterion
/// that holds each.
pub const EVENT_POPULATIONS: [(&str, &str); 2] = [("key_access_events", "CC6.1"), ("finding_evidence", "CC7.2")];

/// How the draw is made, as `sample.json` and the command state it.
pub const METHOD: &str = "Within each population, items are ordered by the SHA-256 of \"<seed>:<event_id>\" \
     (UTF-8, lower-case hex, ascending; ties by row order in the pack) and the first N are taken. Redraw it with: \
     printf '%s' \"<seed>:<event_id>\" | sha256sum, for every event_id of the population's CSV.";

/// Largest file read whole to find a record that starts on a line but spans several (a
/// pretty-printed document, as ingest reads up to this size too).
const MAX_DOCUMENT_BYTES: u64 = 512 << 20;

/// What to sample.
pub struct SampleRequest<'a> {
    pub pack: &'a Path,
    /// The service's public key; `None` with `trust_embedded_key` accepts the pack's own.
    pub public_key: Option<&'a ed25519_dalek::VerifyingKey>,
    pub trust_embedded_key: bool,
    pub size: usize,
    pub seed: &'a str,
    /// One population's name; all event-level populations of the pack when `None`.
    pub population: Option<&'a str>,
    /// The database, for records kept whole in `raw_events` whose file is gone.
    pub db: Option<&'a Path>,
    pub out: &'a Path,
}

/// What a sample holds, per population: (name, rows in the pack, items drawn).
pub struct SampleSummary {
    pub populations: Vec<(String, usize, usize)>,
    pub items: usize,
    /// Items whose raw record was found and matched, found and did not match, not found.
    pub matched: usize,
    pub differed: usize,
    pub not_found: usize,
}

/// One drawn item.
struct Item {
    population: &'static str,
    criterion: &'static str,
    draw_key: String,
    row: Map<String, Json>,
    trace: Trace,
}

/// Where the raw record was looked for and what was found.
#[derive(Default)]
struct Trace {
    raw: Option<Vec<u8>>,
    from: Option<String>,
    note: Option<String>,
}

impl Item {
    fn text(&self, column: &str) -> Option<&str> {
        self.row.get(column).and_then(Json::as_str).filter(|s| !s.is_empty())
    }

    fn number(&self, column: &str) -> Option<i64> {
        self.row.get(column).and_then(Json::as_i64)
    }

    fn event_id(&self) -> &str {
        self.text("event_id").unwrap_or("")
    }

    fn raw_sha256(&self) -> Option<String> {
        self.trace.raw.as_deref().map(|raw| hex(&Sha256::digest(raw)))
    }

    fn matches(&self) -> Option<bool> {
        let stored = self.text("record_sha256")?;
        Some(self.raw_sha256()? == stored)
    }

    /// Whether the pack's row points at a record kept whole in `raw_events`.
    fn kept_in_raw_events(&self) -> bool {
        matches!(self.text("evidence_table"), Some("raw_events" | "control_changes" | "directory_changes"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The draw key of `event_id` under `seed`: lower-case hex SHA-256 of `<seed>:<event_id>`.
pub fn draw_key(seed: &str, event_id: &str) -> String {
    hex(&Sha256::digest(format!("{seed}:{event_id}").as_bytes()))
}

/// Verifies the pack, draws the sample and writes `sample.csv`, `sample.json` and
/// `items/<nnn>.json` (with `items/<nnn>.record`, the record's exact bytes, when found) to
/// `request.out`. `progress(done, total, what)` is called as items are traced.
pub fn sample(request: &SampleRequest<'_>, progress: &dyn Fn(u64, u64, &str)) -> Result<SampleSummary> {
    if request.size == 0 {
        bail!("--size 0: give the number of items to draw from each population (at least 1)");
    }
    if !request.pack.is_file() {
        bail!("{}: no such pack (give the path of an evidence pack zip)", request.pack.display());
    }
    let verification = pack::verify(request.pack, request.public_key)?;
    let mut problems: Vec<String> = verification.problems.iter().map(ToString::to_string).collect();
    if request.public_key.is_none() && !request.trust_embedded_key {
        problems.push(
            "no public key pinned: give --public-key with the service's key (tokentrail evidence public-key), or \
             --trust-embedded-key to accept the key inside the pack"
                .into(),
        );
    }
    let Some(manifest) = verification.manifest else {
        bail!("{}: not verified: {}", request.pack.display(), problems.join("; "));
    };
    if !manifest.integrity_chain.verified {
        problems.push(format!(
            "the integrity chain did not verify when the pack was made: {}",
            manifest.integrity_chain.result
        ));
    }
    if !problems.is_empty() {
        bail!("{}: not verified, nothing sampled: {}", request.pack.display(), problems.join("; "));
    }

    // The event-level populations in the pack (Parquet), in pack order.
    let in_pack: Vec<(&'static str, &'static str, String)> = manifest
        .files
        .iter()
        .filter(|f| f.format == "parquet")
        .filter_map(|f| {
            let name = f.population.as_deref()?;
            let (name, criterion) = EVENT_POPULATIONS.iter().find(|(n, _)| *n == name)?;
            Some((*name, *criterion, f.path.clone()))
        })
        .collect();
    let wanted_list = || EVENT_POPULATIONS.map(|(n, c)| format!("{n} ({c})")).join(", ");
    if in_pack.is_empty() {
        bail!(
            "{}: the pack holds no event-level population to sample ({} are); make a pack with --criteria \
             CC6.1,CC7.2 with this version of TokenTrail",
            request.pack.display(),
            wanted_list()
        );
    }
    let chosen: Vec<_> = match request.population {
        None => in_pack,
        Some(name) => {
            let found: Vec<_> = in_pack.iter().filter(|(n, ..)| *n == name).cloned().collect();
            if found.is_empty() {
                let here: Vec<&str> = in_pack.iter().map(|(n, ..)| *n).collect();
                bail!(
                    "--population {name}: not an event-level population of {} (it has {}; event-level populations \
                     are {})",
                    request.pack.display(),
                    here.join(", "),
                    wanted_list()
                );
            }
            found
        }
    };
    prepare_out(request.out)?;

    let mut entries = zip::ZipArchive::new(std::fs::File::open(request.pack)?)?;
    let mut items = Vec::new();
    let mut populations = Vec::new();
    // The pack's columns, in the order they first appear across the populations.
    let mut columns: Vec<String> = Vec::new();
    for (name, criterion, path) in &chosen {
        let (names, rows) =
            read_rows(&mut entries, path, request.out).with_context(|| format!("{path} in the pack"))?;
        for column in names {
            if column != "event_id" && !columns.contains(&column) {
                columns.push(column);
            }
        }
        let total = rows.len();
        let mut drawn: Vec<(String, usize, Map<String, Json>)> = rows
            .into_iter()
            .enumerate()
            .filter_map(|(i, row)| {
                let id = row.get("event_id").and_then(Json::as_str)?.to_string();
                Some((draw_key(request.seed, &id), i, row))
            })
            .collect();
        drawn.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        drawn.truncate(request.size);
        populations.push((name.to_string(), total, drawn.len()));
        items.extend(drawn.into_iter().map(|(draw_key, _, row)| Item {
            population: name,
            criterion,
            draw_key,
            row,
            trace: Trace::default(),
        }));
    }

    trace(&mut items, request.db, progress)?;
    write_out(request, &manifest, &populations, &columns, &items)?;
    let matched = items.iter().filter(|i| i.matches() == Some(true)).count();
    let differed = items.iter().filter(|i| i.trace.raw.is_some() && i.matches() != Some(true)).count();
    Ok(SampleSummary {
        populations,
        items: items.len(),
        matched,
        differed,
        not_found: items.iter().filter(|i| i.trace.raw.is_none()).count(),
    })
}

/// The output folder: created, or empty already (a sample never mixes with another).
fn prepare_out(out: &Path) -> Result<()> {
    if out.exists() {
        let empty = std::fs::read_dir(out).with_context(|| format!("--out {}", out.display()))?.next().is_none();
        if !empty {
            bail!("--out {}: the folder is not empty; give a new or empty folder for the sample", out.display());
        }
    }
    std::fs::create_dir_all(out.join("items")).with_context(|| format!("--out {}: cannot create", out.display()))
}

/// A population's column names and rows.
type Table = (Vec<String>, Vec<Map<String, Json>>);

/// The columns and rows of one Parquet file of the pack, as JSON values (times as RFC 3339
/// text).
fn read_rows(zip: &mut zip::ZipArchive<std::fs::File>, path: &str, scratch_dir: &Path) -> Result<Table> {
    let mut bytes = Vec::new();
    zip.by_name(path)?.read_to_end(&mut bytes)?;
    // The Parquet reader reads from a file (or the `bytes` crate's buffer, not a dependency).
    let scratch = scratch_dir.join(".population.parquet");
    std::fs::write(&scratch, &bytes).with_context(|| format!("writing {}", scratch.display()))?;
    let rows = (|| -> Result<Table> {
        let file = std::fs::File::open(&scratch)?;
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?;
        let columns = builder.schema().fields().iter().map(|f| f.name().clone()).collect();
        let reader = builder.build()?;
        let mut rows = Vec::new();
        for batch in reader {
            let batch = batch?;
            let schema = batch.schema();
            for i in 0..batch.num_rows() {
                let mut row = Map::new();
                for (field, column) in schema.fields().iter().zip(batch.columns()) {
                    row.insert(field.name().clone(), json_value(column.as_ref(), i));
                }
                rows.push(row);
            }
        }
        Ok((columns, rows))
    })();
    let _ = std::fs::remove_file(&scratch);
    rows
}

fn json_value(column: &dyn Array, i: usize) -> Json {
    if column.is_null(i) {
        return Json::Null;
    }
    match column.data_type() {
        DataType::Int64 => column.as_primitive::<arrow::datatypes::Int64Type>().value(i).into(),
        DataType::Int32 => column.as_primitive::<arrow::datatypes::Int32Type>().value(i).into(),
        DataType::Boolean => column.as_boolean().value(i).into(),
        _ => Json::String(csv_file::cell(column, i)),
    }
}

/// Finds each item's raw record: files are read once each, for all their items' lines.
fn trace(items: &mut [Item], db: Option<&Path>, progress: &dyn Fn(u64, u64, &str)) -> Result<()> {
    let mut by_file: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter_mut().enumerate() {
        let source = item.text("source").map(str::to_owned);
        let (line, sequence) = (item.number("line"), item.number("sequence_number"));
        match (source, line, sequence) {
            (Some(source), Some(_), _) => {
                let path = PathBuf::from(&source);
                if path.is_file() {
                    by_file.entry(path).or_default().push(i);
                } else {
                    item.trace.note = Some(format!(
                        "the source file {source} is not here (a relative path is as given to `tokentrail ingest`, \
                         from the folder it ran in): run the sample where the file is, or find line {} in a copy",
                        line.unwrap_or(0)
                    ));
                }
            }
            (Some(source), None, Some(sequence)) => {
                let hub = source.strip_prefix("eventhubs:").unwrap_or(&source);
                let partition = item.text("partition").unwrap_or("?");
                let index = item.number("record_index").map(|r| format!(", record {r} of its records envelope"));
                item.trace.note = Some(format!(
                    "an Event Hubs event: TokenTrail does not keep the raw record of {hub}. Find partition {partition}, \
                     sequence number {sequence}{} in the hub's Event Hubs Capture archive (Avro, one file per partition \
                     and time window; the SequenceNumber field), and compare the SHA-256 of the record's bytes with \
                     record_sha256",
                    index.unwrap_or_default()
                ));
            }
            (Some(source), None, None) => {
                item.trace.note =
                    Some(format!("{source} is not a file or an Event Hubs partition: no original record"));
            }
            (None, ..) => {
                item.trace.note = Some(
                    "stored before TokenTrail kept record positions (migration 17): trace it by its activity_id or \
                     signin_id in the original logs"
                        .into(),
                );
            }
        }
    }
    let total = items.len() as u64;
    let mut done = 0;
    for (path, wanted) in &by_file {
        progress(done, total, &path.display().to_string());
        let lines: BTreeSet<i64> = wanted.iter().filter_map(|&i| items[i].number("line")).collect();
        match read_lines(path, &lines) {
            Ok(found) => {
                for &i in wanted {
                    let item = &mut items[i];
                    let line = item.number("line").unwrap_or(0);
                    let index = item.number("record_index").and_then(|r| i32::try_from(r).ok());
                    let record = match found.get(&line) {
                        Some(text) => record_in(text, index).or_else(|| record_in_document(path, line, index)),
                        None => None,
                    };
                    match record {
                        Some(raw) => {
                            item.trace.raw = Some(raw);
                            item.trace.from = Some(format!("{} line {line}", path.display()));
                        }
                        None => {
                            item.trace.note = Some(match found.get(&line) {
                                Some(_) => format!(
                                    "line {line} of {} holds no record{}: the file was changed since ingest",
                                    path.display(),
                                    index.map(|r| format!(" {r}")).unwrap_or_default()
                                ),
                                None => format!(
                                    "{} has no line {line}: the file was cut or replaced since ingest",
                                    path.display()
                                ),
                            });
                        }
                    }
                }
            }
            Err(error) => {
                for &i in wanted {
                    items[i].trace.note = Some(format!("{}: cannot read: {error:#}", path.display()));
                }
            }
        }
        done += wanted.len() as u64;
    }
    progress(total, total, "");

    // Records kept whole in raw_events, when their file was not read.
    let stored: Vec<usize> =
        (0..items.len()).filter(|&i| items[i].kept_in_raw_events() && items[i].trace.raw.is_none()).collect();
    if let (Some(db), false) = (db, stored.is_empty()) {
        if !db.exists() {
            bail!("--db {}: no such database", db.display());
        }
        let options = crate::store::StoreOptions { read_only: true, ..Default::default() };
        let store = crate::store::Store::open(db, &options).with_context(|| format!("--db {}", db.display()))?;
        let conn = store.connection()?;
        let mut stmt = conn.prepare(
            "SELECT record::VARCHAR FROM raw_events WHERE source = ? AND line IS NOT DISTINCT FROM ? AND record_index IS NOT DISTINCT FROM ? AND partition IS NOT DISTINCT FROM ? AND sequence_number IS NOT DISTINCT FROM ? LIMIT 1",
        )?;
        for i in stored {
            let item = &mut items[i];
            let Some(source) = item.text("source").map(str::to_owned) else { continue };
            let found: Option<String> = stmt
                .query_map(
                    duckdb::params![
                        source,
                        item.number("line"),
                        item.number("record_index"),
                        item.text("partition"),
                        item.number("sequence_number")
                    ],
                    |r| r.get(0),
                )?
                .next()
                .transpose()?;
            if let Some(record) = found {
                item.trace.raw = Some(record.into_bytes());
                item.trace.from = Some(format!("raw_events.record in {} (kept whole at ingest)", db.display()));
            }
        }
    }
    Ok(())
}

/// The lines of `path` (1-based) in `wanted`, without their line break; a `.gz` file is
/// read decompressed, as ingest reads it.
fn read_lines(path: &Path, wanted: &BTreeSet<i64>) -> Result<BTreeMap<i64, Vec<u8>>> {
    let file = std::fs::File::open(path)?;
    let gzip = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let input: Box<dyn Read> = if gzip { Box::new(flate2::read::MultiGzDecoder::new(file)) } else { Box::new(file) };
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut found = BTreeMap::new();
    let Some(&last) = wanted.last() else { return Ok(found) };
    let mut line = Vec::new();
    for number in 1..=last {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if wanted.contains(&number) {
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            found.insert(number, line.clone());
        }
    }
    Ok(found)
}

/// The bytes the parser took for record `index` of `unit` (the whole record when `index`
/// is `None`): [`parse_unit`] itself finds them, so they are the bytes it hashed.
fn record_in(unit: &[u8], index: Option<i32>) -> Option<Vec<u8>> {
    struct Capture {
        index: Option<i32>,
        found: Option<Vec<u8>>,
    }
    impl RecordSink for Capture {
        fn accept(&mut self, record: Accepted<'_, '_>, _: &Origin, index: Option<i32>) {
            if index == self.index && self.found.is_none() {
                self.found = Some(record.raw.to_vec());
            }
        }
        fn reject(&mut self, rejection: Rejection<'_>, _: &Origin, index: Option<i32>) {
            if index == self.index && self.found.is_none() {
                self.found = Some(rejection.raw.to_vec());
            }
        }
    }
    let mut capture = Capture { index, found: None };
    parse_unit(unit, &Origin::default(), &mut capture);
    capture.found
}

/// A record in a file read as one JSON document: the value that starts on `line`.
fn record_in_document(path: &Path, line: i64, index: Option<i32>) -> Option<Vec<u8>> {
    let gzip = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    if gzip || std::fs::metadata(path).ok()?.len() > MAX_DOCUMENT_BYTES {
        return None;
    }
    let data = std::fs::read(path).ok()?;
    let start = if line <= 1 { 0 } else { memchr::memchr_iter(b'\n', &data).nth(usize::try_from(line - 2).ok()?)? + 1 };
    let mut values = serde_json::Deserializer::from_slice(&data[start..]).into_iter::<&serde_json::value::RawValue>();
    let value = values.next()?.ok()?;
    record_in(value.get().as_bytes(), index)
}

/// `sample.csv`, `sample.json` and the items.
fn write_out(
    request: &SampleRequest<'_>,
    manifest: &super::manifest::Manifest,
    populations: &[(String, usize, usize)],
    columns: &[String],
    items: &[Item],
) -> Result<()> {
    let width = items.len().to_string().len().max(3);
    let mut csv = csv::WriterBuilder::new().from_writer(Vec::new());
    let mut header: Vec<String> = ["item", "population", "event_id"].map(String::from).to_vec();
    header.extend(columns.iter().cloned());
    header.extend(["raw_found", "raw_from", "raw_sha256", "raw_sha256_matches", "note", "draw_key"].map(String::from));
    csv.write_record(header.iter().map(|h| csv_file::escape(h).into_owned()))?;
    for (n, item) in items.iter().enumerate() {
        let number = format!("{:0width$}", n + 1);
        let mut record = vec![number.clone(), item.population.to_string(), item.event_id().to_string()];
        for column in columns {
            record.push(match item.row.get(column) {
                None | Some(Json::Null) => String::new(),
                Some(Json::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            });
        }
        record.push(item.trace.raw.is_some().to_string());
        record.push(item.trace.from.clone().unwrap_or_default());
        record.push(item.raw_sha256().unwrap_or_default());
        record.push(item.matches().map(|m| m.to_string()).unwrap_or_default());
        record.push(item.trace.note.clone().unwrap_or_default());
        record.push(item.draw_key.clone());
        csv.write_record(record.iter().map(|c| csv_file::escape(c).into_owned()))?;

        let origin = serde_json::json!({
            "source": item.row.get("source"),
            "line": item.row.get("line"),
            "record_index": item.row.get("record_index"),
            "partition": item.row.get("partition"),
            "sequence_number": item.row.get("sequence_number"),
        });
        let raw = item.trace.raw.as_deref();
        let text = raw.map(String::from_utf8_lossy);
        let record_file = format!("{number}.record");
        let json = serde_json::json!({
            "item": n + 1,
            "population": item.population,
            "criterion": item.criterion,
            "event_id": item.event_id(),
            "draw_key": item.draw_key,
            "row": item.row,
            "origin": origin,
            "record_sha256": item.row.get("record_sha256"),
            "raw": {
                "found": raw.is_some(),
                "from": item.trace.from,
                "file": raw.map(|_| format!("items/{record_file}")),
                "sha256": item.raw_sha256(),
                "sha256_matches": item.matches(),
                "record": text,
                "note": item.trace.note,
            },
        });
        let items_dir = request.out.join("items");
        std::fs::write(items_dir.join(format!("{number}.json")), pretty(&json)?)?;
        if let Some(raw) = raw {
            std::fs::write(items_dir.join(record_file), raw)?;
        }
    }
    let bytes = csv.into_inner().map_err(|e| anyhow::anyhow!("CSV: {e}"))?;
    std::fs::write(request.out.join("sample.csv"), bytes)?;
    let pack_bytes = std::fs::read(request.pack)?;
    let summary = serde_json::json!({
        "pack": request.pack.display().to_string(),
        "pack_sha256": hex(&Sha256::digest(&pack_bytes)),
        "pack_signing_key_id": sign::parse_public_key(&manifest.signing_key.public_key_pem).ok().map(|k| sign::key_id(&k)),
        "period": manifest.period,
        "seed": request.seed,
        "size": request.size,
        "method": METHOD,
        "populations": populations.iter().map(|(name, rows, drawn)| serde_json::json!({
            "population": name, "rows_in_pack": rows, "drawn": drawn,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(request.out.join("sample.json"), pretty(&summary)?)?;
    Ok(())
}

fn pretty(value: &Json) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::{draw_key, record_in};

    #[test]
    fn the_draw_key_is_what_sha256sum_prints() {
        // printf '%s' "audit:file.ndjson:7#2" | sha256sum
        assert_eq!(
            draw_key("audit", "file.ndjson:7#2"),
            "b2e454850b200114da4f371556d16a8638a38c1ea09dfb0f3807677561cdd3ab"
        );
    }

    #[test]
    fn the_record_is_the_span_the_parser_took() {
        let a = r#"{"category":"Other","time":"2026-01-01T00:00:00Z","x": 1}"#;
        let b = r#"{ "category" : "Other", "time":"2026-01-01T00:00:01Z" }"#;
        let envelope = format!("{{\"records\": [ {a} ,\t{b}\n]}}\r");
        assert_eq!(record_in(envelope.as_bytes(), Some(0)).unwrap(), a.as_bytes());
        assert_eq!(record_in(envelope.as_bytes(), Some(1)).unwrap(), b.as_bytes());
        assert_eq!(record_in(envelope.as_bytes(), Some(2)), None);
        let line = format!("  {b} \r");
        assert_eq!(record_in(line.as_bytes(), None).unwrap(), b.as_bytes());
        // What no longer parses is still taken whole, to be compared (and differ).
        assert_eq!(record_in(b"{ broken ", None).unwrap(), b"{ broken");
    }
}
