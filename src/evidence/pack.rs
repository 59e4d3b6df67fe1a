//! Building an evidence pack (one zip) and verifying one.
//!
//! Layout: `manifest.json`, `manifest.sig` (the base64 Ed25519 signature of the manifest's
//! bytes, one line), `SHA256SUMS` (`sha256sum -c` format, every file but itself and the
//! signature), `report.html` and `report.pdf` (for people), `controls.csv` (populations and rules
//! mapped to criteria), and `<criterion>/<population>_<period>.csv|.parquet`.
//! Every byte of every file is covered: populations and the report by their SHA-256 in the
//! manifest, the manifest by the signature, `SHA256SUMS` and `manifest.sig` by having exactly
//! one correct form.

use super::chain;
use super::manifest::{ChainInfo, FileEntry, KeyInfo, LakeFile, LakeRead, Manifest, PeriodInfo, ServiceInfo};
use super::populations::{self, Bindings, Population};
use super::report::Rows;
use super::sign::{self, PackKey};
use super::{Budget, Criterion, GeneratedBy, OverBudget, Period, csv_file, report, rfc3339, snapshot};
use crate::rules::rule::Rule;
use crate::store::Store;
use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use base64::Engine;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::Path;

pub const FORMAT: &str = "tokentrail-evidence-pack/1";
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
pub const SUMS: &str = "SHA256SUMS";

/// What to put in a pack.
pub struct PackRequest<'a> {
    pub criteria: Vec<Criterion>,
    pub period: Period,
    pub generated_by: GeneratedBy,
    /// The rule catalogue in force (for CC7.2).
    pub rules: &'a [Rule],
    /// How much work it may take.
    pub budget: Budget,
    /// Streams that must be there (`cosmos:<account>`, `signins:<category>`, `raw:<category>`),
    /// besides the inventory's accounts and what was seen before: `[evidence] expected_streams`.
    pub expected: Vec<String>,
    /// Whether the service signs people in with its development issuer (the demo), so the
    /// pack says it is not evidence of a real tenant.
    pub development_signer: bool,
    /// Hours within which a leaver's access is to be removed (`[evidence]
    /// removal_deadline_hours`): what the leavers population judges removals by.
    pub removal_hours: u32,
    /// The Parquet lake: the period's rows retention moved there are read from it.
    pub lake: Option<&'a crate::lake::view::Reader>,
}

/// The lake's part of a pack's populations: each reads the archived rows of its tables
/// and period beside the hot ones, from files whose SHA-256 is checked (once per pack)
/// against the one recorded when they were archived and verified against the chain.
struct LakeReads<'a> {
    reader: &'a crate::lake::view::Reader,
    hashed: std::collections::BTreeSet<String>,
    files: std::collections::BTreeMap<String, String>,
    /// The `from` the connection's views were made for: populations share one of two.
    made_for: Option<Option<i64>>,
}

impl<'a> LakeReads<'a> {
    fn new(reader: &'a crate::lake::view::Reader) -> LakeReads<'a> {
        LakeReads { reader, hashed: Default::default(), files: Default::default(), made_for: None }
    }

    /// Makes `sql`, run next on `conn`, read the lake too where `period` reaches rows
    /// retention moved there: every evictable table, the macros it calls read them too.
    fn read(&mut self, conn: &duckdb::Connection, sql: &str, period: &Period) -> Result<()> {
        let tables: Vec<&'static str> = crate::lake::evictable().collect();
        // A population without `$from` reads everything before `to` (principals ever seen).
        let from = sql.contains("$from").then_some(period.from);
        if self.made_for == Some(from) {
            return Ok(());
        }
        let scope = self.reader.scope(conn, &tables, (from, Some(period.to)), Some(&mut self.hashed), false, false)?;
        self.files.extend(scope.files.iter().cloned());
        self.made_for = Some(from);
        Ok(())
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct PackSummary {
    pub manifest: Manifest,
    /// SHA-256 of manifest.json, which the signature covers.
    pub manifest_sha256: String,
}

/// `outcome`, or why the budget stopped it (an interrupted query's error says only
/// "interrupted").
fn over_budget<T>(budget: &Budget, outcome: Result<T>) -> Result<T> {
    match outcome {
        Ok(value) => Ok(value),
        Err(error) if matches!(error.downcast_ref::<OverBudget>(), Some(OverBudget::Rows(_))) => {
            Err(OverBudget::Rows(budget.max_rows).into())
        }
        Err(error) if error.downcast_ref::<OverBudget>().is_some() => Err(error),
        Err(_) if budget.stop.load(std::sync::atomic::Ordering::Relaxed) => Err(OverBudget::Cancelled.into()),
        Err(_) if budget.spent() => Err(OverBudget::Time.into()),
        Err(error) => Err(error),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    crate::store::chain::hex(&Sha256::digest(bytes).into())
}

/// Builds a pack into `out`. `progress(done, total, what)` is called as it goes.
pub fn build<W: Write + Seek>(
    store: &Store,
    key: &PackKey,
    request: &PackRequest<'_>,
    out: W,
    progress: &(dyn Fn(u64, u64, &str) + Sync),
) -> Result<PackSummary> {
    let chosen = populations::of(&request.criteria);
    let total = chosen.len() as u64 + 2;
    let by_name = |name: &str| *populations::ALL.iter().find(|p| p.name == name).expect("known population");

    let budget = &request.budget;
    let mut rows_left = budget.max_rows;
    let conn = store.connection()?;
    let timezone = snapshot::utc_session(&conn)?;
    // One read snapshot for every population: a batch committing meanwhile is in none of
    // them, and a finding or status change stamped before `made_at` is in all of them.
    let made_at = crate::store::snapshot_at(&conn)?;
    let generated_at = rfc3339(made_at);
    let facts = snapshot::read(&conn, timezone, &request.period, &chosen)?;
    let expected = super::expected_streams(&request.expected)?;
    let as_of = facts.as_of.batch_id.unwrap_or(0);
    let bindings = Bindings::new(&request.period, request.rules, as_of, made_at, &expected, request.removal_hours);
    let mut lake = request.lake.map(LakeReads::new);
    // The chain is recomputed from every stored row of the same batches while the
    // populations are queried.
    let (chain, ran) = std::thread::scope(|scope| -> Result<_> {
        let up_to = facts.as_of.batch_id.unwrap_or(0);
        let chain = scope.spawn(move || chain::verify_unless(store, Some(up_to), None, &|_, _| {}, &|| budget.spent()));
        // Stops the population query under way once the budget is spent.
        let interrupt = conn.interrupt_handle();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        scope.spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                done_rx.recv_timeout(std::time::Duration::from_millis(50))
            {
                if budget.spent() {
                    interrupt.interrupt();
                    return;
                }
            }
        });
        let _done = done_tx;
        let mut ran: Vec<(Rows, Map<String, Json>)> = Vec::new();
        let mut run = |population: &Population| -> Result<_> {
            if let Some(lake) = lake.as_mut() {
                lake.read(&conn, population.sql, &request.period).context("reading the lake")?;
            }
            let outcome = bindings.run(&conn, population, &mut rows_left);
            over_budget(budget, outcome)
        };
        for (i, population) in chosen.iter().enumerate() {
            progress(i as u64, total, &format!("{} {}", population.criterion.as_str(), population.name));
            let (batches, schema, parameters) = run(population)?;
            ran.push((Rows { population: *population, schema, batches }, parameters));
        }
        // The manifest states sources, coverage and gaps whatever the criteria.
        for name in ["sources", "coverage", "gaps"] {
            if !chosen.iter().any(|p| p.name == name) {
                let population = by_name(name);
                let (batches, schema, _) = run(&population)?;
                ran.push((Rows { population, schema, batches }, Map::new()));
            }
        }
        progress(chosen.len() as u64, total, "integrity chain");
        let appended = over_budget(budget, crate::store::append::verify_in(&conn))?;
        let chain = chain.join().map_err(|_| anyhow::anyhow!("the chain verification thread panicked"))?;
        Ok((ChainInfo::from(&over_budget(budget, chain)?).with_appended(&appended), ran))
    })?;
    progress(chosen.len() as u64 + 1, total, "writing the pack");

    let slug = request.period.slug();
    let mut zip = zip::ZipWriter::new(out);
    let deflate = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut files = Vec::new();
    let mut sources = Vec::new();
    let mut gaps = Vec::new();
    let mut coverage = Vec::new();
    for (rows, parameters) in &ran {
        let p = &rows.population;
        match p.name {
            "sources" => sources = json_rows(&rows.batches),
            "gaps" => gaps = json_rows(&rows.batches),
            "coverage" => coverage = json_rows(&rows.batches),
            _ => {}
        }
        if !chosen.iter().any(|c| c.name == p.name) {
            continue;
        }
        let folder = p.criterion.as_str();
        let csv = csv_file::write(&rows.schema, &rows.batches)?;
        let parquet = write_parquet(&rows.schema, &rows.batches, request, p)?;
        for (bytes, format, options) in [(csv, "csv", deflate), (parquet, "parquet", stored)] {
            let path = format!("{folder}/{}_{slug}.{format}", p.name);
            zip.start_file(path.as_str(), options)?;
            zip.write_all(&bytes)?;
            files.push(FileEntry {
                path,
                format: format.into(),
                criterion: Some(folder.into()),
                population: Some(p.name.into()),
                rows: Some(rows.count()),
                bytes: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
                sql: Some(p.sql.to_string()),
                parameters: Some(parameters.clone()),
            });
        }
    }

    let demo = facts.demo(request.development_signer);
    let mut scope = facts.scope;
    scope.sources = sources.iter().filter_map(|r| r.get("source_id")?.as_str().map(str::to_string)).collect();
    scope.sources.dedup();
    let mut manifest = Manifest {
        format: FORMAT.into(),
        period: PeriodInfo {
            from: rfc3339(request.period.from),
            to: rfc3339(request.period.to),
            timezone: "UTC".into(),
            end: "exclusive".into(),
        },
        criteria: request.criteria.iter().map(|c| c.as_str().to_string()).collect(),
        generated_at,
        generated_by: request.generated_by.clone(),
        service: ServiceInfo { name: "tokentrail".into(), version: env!("CARGO_PKG_VERSION").into() },
        signing_key: KeyInfo { algorithm: "Ed25519".into(), key_id: key.key_id(), public_key_pem: key.public_pem() },
        files,
        sources,
        gaps,
        coverage,
        integrity_chain: chain,
        demo,
        archived: archived_text(&facts.archived, lake.as_ref().map(|l| l.files.len()).filter(|n| *n > 0)),
        lake: lake.filter(|l| !l.files.is_empty()).map(|l| LakeRead {
            location: l.reader.describe().to_owned(),
            files: l.files.into_iter().map(|(path, sha256)| LakeFile { path, sha256 }).collect(),
        }),
        as_of: facts.as_of,
        engine: facts.engine,
        scope,
    };
    let shown: Vec<&Rows> =
        ran.iter().map(|(r, _)| r).filter(|r| chosen.iter().any(|c| c.name == r.population.name)).collect();
    for file in report::files(&manifest, &shown, request.rules)? {
        zip.start_file(file.path, deflate)?;
        zip.write_all(&file.bytes)?;
        manifest.files.push(FileEntry {
            path: file.path.into(),
            format: file.format.into(),
            criterion: None,
            population: None,
            rows: None,
            bytes: file.bytes.len() as u64,
            sha256: sha256_hex(&file.bytes),
            sql: None,
            parameters: None,
        });
    }

    let manifest_bytes = serde_json::to_vec_pretty(&manifest)?;
    let manifest_sha256 = sha256_hex(&manifest_bytes);
    zip.start_file(MANIFEST, deflate)?;
    zip.write_all(&manifest_bytes)?;
    zip.start_file(SIGNATURE, deflate)?;
    zip.write_all(format!("{}\n", key.sign(&manifest_bytes)).as_bytes())?;
    zip.start_file(SUMS, deflate)?;
    zip.write_all(sums(&manifest, &manifest_sha256).as_bytes())?;
    zip.finish()?.flush()?;
    progress(total, total, "done");
    Ok(PackSummary { manifest, manifest_sha256 })
}

/// What the manifest says of the period's rows retention moved to the lake (`parts`, per
/// table), read from `lake_files` files of it or not read at all.
fn archived_text(parts: &[String], lake_files: Option<usize>) -> Option<String> {
    if parts.is_empty() {
        return None;
    }
    let parts = parts.join(", ");
    Some(match lake_files {
        Some(files) => format!(
            "Rows of this period that retention moved from TokenTrail's database to its Parquet lake were read \
             from the lake: {parts}. Each of the {files} files read matched the SHA-256 recorded when it was \
             archived, after its rows had been checked against the integrity chain."
        ),
        None => format!(
            "Rows of this period that retention moved from TokenTrail's database to its Parquet lake are not in \
             these populations: {parts}. They are in the lake (tokentrail verify --lake checks them against the \
             chain; tokentrail evidence --lake reads them)."
        ),
    })
}

/// A pack's file name that says what it holds:
/// `tokentrail-evidence_CC6.1+CC7.2_2025-01-01_to_2025-04-01.zip` (whole days), with hours and
/// minutes when the period does not start or end at midnight UTC.
pub fn file_name(criteria: &[Criterion], period: &Period) -> String {
    let names: Vec<&str> = criteria.iter().map(|c| c.as_str()).collect();
    let day = |us: i64| {
        let t = chrono::DateTime::from_timestamp_micros(us).unwrap_or_default();
        match t.time() == chrono::NaiveTime::MIN {
            true => t.format("%Y-%m-%d").to_string(),
            false => t.format("%Y-%m-%dT%H%MZ").to_string(),
        }
    };
    format!("tokentrail-evidence_{}_{}_to_{}.zip", names.join("+"), day(period.from), day(period.to))
}

/// The one correct `SHA256SUMS` of a manifest.
fn sums(manifest: &Manifest, manifest_sha256: &str) -> String {
    let mut out = String::new();
    for file in &manifest.files {
        out.push_str(&format!("{}  {}\n", file.sha256, file.path));
    }
    out.push_str(&format!("{manifest_sha256}  {MANIFEST}\n"));
    out
}

fn write_parquet(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    request: &PackRequest<'_>,
    population: &Population,
) -> Result<Vec<u8>> {
    use parquet::file::metadata::KeyValue;
    let metadata = vec![
        KeyValue::new("tokentrail.period".into(), request.period.describe()),
        KeyValue::new("tokentrail.criterion".into(), population.criterion.as_str().to_string()),
        KeyValue::new("tokentrail.population".into(), population.name.to_string()),
    ];
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_key_value_metadata(Some(metadata))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties))?;
    for batch in batches {
        writer.write(batch)?;
    }
    Ok(writer.into_inner()?)
}

/// Rows as JSON objects for the manifest: integers as numbers, everything else as its CSV text.
fn json_rows(batches: &[RecordBatch]) -> Vec<Map<String, Json>> {
    let mut out = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        for i in 0..batch.num_rows() {
            let mut row = Map::new();
            for (field, column) in schema.fields().iter().zip(batch.columns()) {
                let value = if column.is_null(i) {
                    Json::Null
                } else {
                    match column.data_type() {
                        DataType::Int64 => column.as_primitive::<arrow::datatypes::Int64Type>().value(i).into(),
                        DataType::Int32 => column.as_primitive::<arrow::datatypes::Int32Type>().value(i).into(),
                        _ => Json::String(csv_file::cell(column.as_ref(), i)),
                    }
                };
                row.insert(field.name().clone(), value);
            }
            out.push(row);
        }
    }
    out
}

/// One thing that differs, and the file it is in.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

/// What verifying a pack found.
#[derive(Debug, Clone)]
pub struct Verification {
    pub problems: Vec<Problem>,
    /// What was checked and held, one line each.
    pub passed: Vec<String>,
    pub manifest: Option<Manifest>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks a pack: the signature (with `public_key` when given, else the key the manifest
/// names), each file's SHA-256 and row count against the manifest, and `SHA256SUMS`.
pub fn verify(path: &Path, public_key: Option<&ed25519_dalek::VerifyingKey>) -> Result<Verification> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    verify_reader(file, public_key).with_context(|| format!("{} is not a readable zip", path.display()))
}

pub fn verify_reader<R: Read + Seek>(
    reader: R,
    public_key: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<Verification> {
    let mut archive = zip::ZipArchive::new(reader)?;
    let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let name = entry.name().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).with_context(|| format!("reading {name} from the zip"))?;
        entries.insert(name, bytes);
    }
    let mut problems = Vec::new();
    let mut passed = Vec::new();
    let mut problem = |file: &str, message: String| problems.push(Problem { file: file.into(), message });

    let Some(manifest_bytes) = entries.get(MANIFEST) else {
        problem(MANIFEST, "missing: this is not a TokenTrail evidence pack, or its manifest was removed".into());
        return Ok(Verification { problems, passed, manifest: None });
    };
    let manifest: Option<Manifest> = match serde_json::from_slice(manifest_bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            problem(MANIFEST, format!("not a valid manifest ({e})"));
            None
        }
    };

    // The signature.
    let named_key = manifest.as_ref().map(|m| sign::parse_public_key(&m.signing_key.public_key_pem));
    let key = match (public_key, named_key) {
        (Some(given), Some(Ok(named))) if given != &named => {
            problem(
                MANIFEST,
                format!(
                    "signed with key {} (per the manifest), not the public key given (key id {})",
                    sign::key_id(&named),
                    sign::key_id(given)
                ),
            );
            Some((*given, "the public key given"))
        }
        (Some(given), _) => Some((*given, "the public key given")),
        (None, Some(Ok(named))) => {
            Some((named, "the key embedded in the manifest; pass --public-key to check it is your service's"))
        }
        (None, Some(Err(e))) => {
            problem(MANIFEST, format!("signing_key.public_key_pem: {e}"));
            None
        }
        (None, None) => None,
    };
    match entries.get(SIGNATURE) {
        None => problem(SIGNATURE, "missing: the manifest is not signed".into()),
        Some(sig) => {
            let text = String::from_utf8_lossy(sig);
            let decoded = base64::engine::general_purpose::STANDARD.decode(text.trim_end_matches('\n'));
            let canonical =
                decoded.as_ref().map(|raw| format!("{}\n", base64::engine::general_purpose::STANDARD.encode(raw)));
            if canonical.as_deref().ok() != Some(text.as_ref()) {
                problem(SIGNATURE, "not one line of base64 (it was changed)".into());
            } else if let Some((key, source)) = &key {
                match sign::verify(key, manifest_bytes, &text) {
                    Ok(()) => passed.push(format!(
                        "signature: Ed25519 over {MANIFEST} is valid for key {} ({source})",
                        sign::key_id(key)
                    )),
                    Err(_) => {
                        // SHA256SUMS tells which of the two changed: the manifest's line in it.
                        let listed = format!("{}  {MANIFEST}\n", sha256_hex(manifest_bytes));
                        let sums_agree =
                            entries.get(SUMS).is_some_and(|s| String::from_utf8_lossy(s).contains(&listed));
                        if sums_agree {
                            problem(
                                SIGNATURE,
                                format!(
                                    "the Ed25519 signature does not verify {MANIFEST} (whose SHA-256 matches {SUMS}): {SIGNATURE} was changed, or another key signed it"
                                ),
                            );
                        } else {
                            problem(
                                MANIFEST,
                                format!(
                                    "changed after signing: the Ed25519 signature in {SIGNATURE} does not verify it, and its SHA-256 is not the one in {SUMS}"
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
    let Some(manifest) = manifest else {
        return Ok(Verification { problems, passed, manifest: None });
    };

    // Each file against the manifest.
    let mut good = 0;
    for file in &manifest.files {
        let Some(bytes) = entries.get(&file.path) else {
            problem(&file.path, "listed in the manifest but missing from the pack".into());
            continue;
        };
        let actual = sha256_hex(bytes);
        let mut fine = true;
        if actual != file.sha256 {
            problem(&file.path, format!("SHA-256 is {actual}, the manifest says {}", file.sha256));
            fine = false;
        }
        if bytes.len() as u64 != file.bytes {
            problem(&file.path, format!("{} bytes, the manifest says {}", bytes.len(), file.bytes));
            fine = false;
        }
        if let Some(expected) = file.rows {
            let counted = match file.format.as_str() {
                "csv" => csv_file::count_rows(bytes).map_err(|e| e.to_string()),
                "parquet" => parquet_rows(bytes).map_err(|e| e.to_string()),
                other => Err(format!("unknown format {other}")),
            };
            match counted {
                Ok(n) if n == expected => {}
                Ok(n) => {
                    problem(&file.path, format!("{n} rows, the manifest says {expected}"));
                    fine = false;
                }
                Err(e) => {
                    problem(&file.path, format!("cannot count its rows: {e}"));
                    fine = false;
                }
            }
        }
        good += fine as usize;
    }
    if good == manifest.files.len() {
        passed.push(format!("files: all {good} files match their SHA-256, size and row count in the manifest"));
    }

    // SHA256SUMS has exactly one correct form.
    match entries.get(SUMS) {
        None => problem(SUMS, "missing".into()),
        Some(bytes) => {
            let expected = sums(&manifest, &sha256_hex(manifest_bytes));
            if bytes.as_slice() == expected.as_bytes() {
                passed.push(format!("{SUMS}: matches every file"));
            } else {
                let actual = String::from_utf8_lossy(bytes);
                let line = actual
                    .split_inclusive('\n')
                    .zip(expected.split_inclusive('\n').map(Some).chain(std::iter::repeat(None)))
                    .position(|(a, e)| Some(a) != e)
                    .unwrap_or_else(|| actual.split_inclusive('\n').count());
                problem(SUMS, format!("line {} differs from the files' SHA-256 (it was changed)", line + 1));
            }
        }
    }
    let listed: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).chain([MANIFEST, SIGNATURE, SUMS]).collect();
    for name in entries.keys().filter(|n| !listed.contains(&n.as_str())) {
        problem(name, "in the pack but not in the manifest (it was added)".into());
    }
    Ok(Verification { problems, passed, manifest: Some(manifest) })
}

/// Rows of a Parquet file, from its footer.
fn parquet_rows(bytes: &[u8]) -> Result<u64> {
    let n = bytes.len();
    if n < 12 || &bytes[n - 4..] != b"PAR1" {
        bail!("not a Parquet file");
    }
    let length = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    let start = (n - 8).checked_sub(length).context("Parquet footer longer than the file")?;
    let metadata = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&bytes[start..n - 8])?;
    Ok(metadata.file_metadata().num_rows() as u64)
}

/// Builds a pack into the file `out` (written to a temporary name beside it, then renamed).
pub fn build_file(
    store: &Store,
    key: &PackKey,
    request: &PackRequest<'_>,
    out: &Path,
    progress: &(dyn Fn(u64, u64, &str) + Sync),
) -> Result<PackSummary> {
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let file = std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let built = build(store, key, request, std::io::BufWriter::new(file), progress);
    match built {
        Ok(summary) => {
            std::fs::rename(&partial, out).with_context(|| format!("renaming to {}", out.display()))?;
            Ok(summary)
        }
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            Err(error)
        }
    }
}

/// The criteria named in a manifest, parsed back.
pub fn criteria_of(manifest: &Manifest) -> Vec<Criterion> {
    manifest.criteria.iter().filter_map(|c| Criterion::parse(c)).collect()
}

/// One population of a pack run again: its rows and SHA-256 then (the manifest) and now.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Rerun {
    pub path: String,
    pub criterion: Option<String>,
    pub population: Option<String>,
    pub rows_then: Option<u64>,
    pub rows_now: u64,
    pub sha256_then: String,
    pub sha256_now: String,
    pub same: bool,
}

/// Runs the populations of a pack's manifest again, with the SQL and parameters it states,
/// in one read snapshot of `store` (and the period's archived rows in `lake`), and compares
/// each CSV's SHA-256 with the manifest's. The caller checks first that the manifest is
/// signed by this service's key: its SQL is run.
pub fn rerun(store: &Store, manifest: &Manifest, lake: Option<&crate::lake::view::Reader>) -> Result<Vec<Rerun>> {
    let conn = store.connection()?;
    // The same session the pack was made in.
    snapshot::utc_session(&conn)?;
    conn.execute_batch("BEGIN TRANSACTION")?;
    let time = |t: &str| -> Result<chrono::DateTime<chrono::Utc>> {
        Ok(chrono::DateTime::parse_from_rfc3339(t).with_context(|| format!("the manifest's period {t:?}"))?.into())
    };
    let period = Period::new(time(&manifest.period.from)?, time(&manifest.period.to)?)?;
    let mut lake = lake.map(LakeReads::new);
    let mut out = Vec::new();
    for file in manifest.files.iter().filter(|f| f.format == "csv") {
        let (Some(sql), Some(parameters)) = (&file.sql, &file.parameters) else { continue };
        let bindings = Bindings::from_stated(parameters).with_context(|| format!("{} in the manifest", file.path))?;
        if let Some(lake) = lake.as_mut() {
            lake.read(&conn, sql, &period).context("reading the lake")?;
        }
        let (batches, schema, _) = bindings.query(&conn, sql, &file.path, &mut u64::MAX.clone())?;
        let csv = csv_file::write(&schema, &batches)?;
        let sha256_now = sha256_hex(&csv);
        out.push(Rerun {
            path: file.path.clone(),
            criterion: file.criterion.clone(),
            population: file.population.clone(),
            rows_then: file.rows,
            rows_now: batches.iter().map(|b| b.num_rows() as u64).sum(),
            same: sha256_now == file.sha256,
            sha256_then: file.sha256.clone(),
            sha256_now,
        });
    }
    Ok(out)
}
