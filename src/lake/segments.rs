//! Balanced partitions in the shared lake: what several instances stored, each event once.
//!
//! A partition of a balanced hub moves between instances (scale-up, crash, rolling
//! restart), and its new owner starts from the blob checkpoint, which lags what the old
//! owner stored: each instance's DuckDB file may hold some of the same events. The shared
//! lake holds each once. Each instance writes its committed rows of each partition as
//! **segments**: the events `first ..= last` of one partition, their rows in one Parquet
//! file per table, and a **claim** naming them, written last and create-if-absent at
//! `segments/partition=<p>/<first>.json`. A partition's claims form a chain: each next one
//! is named by the sequence number after the last one's end, so two instances writing the
//! same events after the same end meet on the same name, and the one that loses learns
//! the winner's end and goes on after it (its own files are deleted, its rows of those
//! events recorded as another's in `hub_segments`). Readers read the files claims name.
//!
//! Order, on each instance: DuckDB commit → segment claimed → blob checkpoint
//! (`source::eventhubs::balanced`). A blob checkpoint is never ahead of the lake, so a new
//! owner reads again only events no claim covers yet, or covered while it read them: those
//! it stores in DuckDB (nothing is lost if the lake is unreachable) and finds claimed.
//!
//! Whoever may write the lake's container may write claims: a claim that does not parse,
//! names another partition or range, or files outside its hub stops that partition's
//! segments (and so its blob checkpoint) with an error naming it, rather than be followed.

use super::{Lake, Put};
use crate::store::Store;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap};

/// The tables whose rows carry their event's partition and sequence number.
pub const TABLES: [&str; 4] = ["cosmos_requests", "signins", "raw_events", "quarantine"];

/// A segment's partial aggregates, a file each beside its rows: its requests' counts per
/// subject and hour, and their first-seen facts (`crate::rules::fleet` adds them up).
pub const PARTIALS: [&str; 2] = ["activity_hours", "first_seen"];

/// Events in one segment at most: its files are built in memory.
pub const SEGMENT_EVENTS: i64 = 2_000;

/// A claim: one partition's events `first ..= last`, and the files holding their rows.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// `eventhubs:<namespace>/<hub>`, as rows' `source`.
    pub source: String,
    pub partition: String,
    pub first: i64,
    pub last: i64,
    /// The instance that wrote it ([`crate::sys::instance_name`]).
    pub instance: String,
    pub written_at: DateTime<Utc>,
    /// The earliest and latest `time` of its rows (none: no rows), so that a reader of a
    /// period reads only the segments that meet it.
    #[serde(default)]
    pub first_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_time: Option<DateTime<Utc>>,
    pub files: Vec<ClaimedFile>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClaimedFile {
    pub table: String,
    /// Relative to the lake.
    pub path: String,
    pub rows: i64,
    pub sha256: String,
}

impl Claim {
    /// Its rows, all tables (partials are not rows).
    pub fn rows(&self) -> i64 {
        self.files.iter().filter(|f| TABLES.contains(&f.table.as_str())).map(|f| f.rows).sum()
    }

    /// Checks a claim read from the lake is the one its name says, with files of its hub.
    fn check(self, source: &str, partition: &str, first: i64, path: &str) -> Result<Claim> {
        let dir = format!("{}/", hub_dir(source));
        let tables_ok =
            self.files.iter().all(|f| is_segment_table(&f.table) && f.path.starts_with(&dir) && !f.path.contains(".."));
        if self.source != source
            || self.partition != partition
            || self.first != first
            || self.last < first
            || self.instance.is_empty()
            || !tables_ok
        {
            bail!(
                "the claim {path} in the shared lake is not partition {partition}'s segment from {first} \
                 (it names {}/{} {}..{}, files {:?}); this partition's segments stop until it is removed",
                self.source,
                self.partition,
                self.first,
                self.last,
                self.files.iter().map(|f| &f.path).collect::<Vec<_>>()
            );
        }
        Ok(self)
    }
}

/// A table a segment has a file of: rows ([`TABLES`]) or partials ([`PARTIALS`]).
pub fn is_segment_table(table: &str) -> bool {
    TABLES.contains(&table) || PARTIALS.contains(&table)
}

/// A name part for a namespace, hub or partition id: only characters every store keeps.
fn safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "-._".contains(c) { c } else { '_' }).collect()
}

/// `hubs/<namespace>/<hub>` for rows' `source` (`eventhubs:<namespace>/<hub>`).
pub fn hub_dir(source: &str) -> String {
    let rest = source.strip_prefix("eventhubs:").unwrap_or(source);
    let (namespace, hub) = rest.split_once('/').unwrap_or(("", rest));
    format!("hubs/{}/{}", safe(namespace), safe(hub))
}

fn claims_dir(source: &str, partition: &str) -> String {
    format!("{}/segments/partition={}", hub_dir(source), safe(partition))
}

fn claim_name(first: i64) -> String {
    format!("{first:020}.json")
}

/// The first sequence number of the claim named `name`.
fn claim_first(name: &str) -> Option<i64> {
    name.strip_suffix(".json").filter(|n| n.len() == 20).and_then(|n| n.parse().ok())
}

/// A segment file's name: its events, its instance, and an attempt's random tag, so that
/// no two attempts write the same name (a file an interrupted attempt left is named by no
/// claim, and no reader reads it).
fn file_path(source: &str, table: &str, partition: &str, first: i64, last: i64, instance: &str, tag: u32) -> String {
    let (dir, partition, instance) = (hub_dir(source), safe(partition), safe(instance));
    format!("{dir}/table={table}/partition={partition}/{first:020}-{last:020}-{instance}-{tag:08x}.parquet")
}

/// What writing a partition's segments found.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// This instance claimed the events.
    Written(Claim),
    /// Another instance had claimed them (or some of them) first.
    Theirs(Claim),
}

/// One balanced hub's segments as this instance writes them.
pub struct Segments {
    /// `eventhubs:<namespace>/<hub>`.
    pub source: String,
    instance: String,
    /// Each partition's chain end as last seen: the last sequence number claimed.
    ends: HashMap<String, i64>,
}

impl Segments {
    pub fn new(source: &str, instance: &str) -> Segments {
        Segments { source: source.to_owned(), instance: instance.to_owned(), ends: HashMap::new() }
    }

    /// The last sequence number of `partition` the lake's claims cover (-1: none yet):
    /// the end recorded here, then the claims after it in the lake, followed in order.
    pub fn end(&mut self, store: &Store, lake: &Lake, partition: &str) -> Result<i64> {
        let known = match self.ends.get(partition) {
            Some(end) => *end,
            None => store.connection()?.query_row(
                "SELECT coalesce(max(last_sequence), -1) FROM hub_segments WHERE source = ? AND partition = ?",
                duckdb::params![self.source, partition],
                |r| r.get(0),
            )?,
        };
        let dir = claims_dir(&self.source, partition);
        let after = (known >= 0).then(|| claim_name(known));
        let firsts: BTreeSet<i64> = lake.list(&dir, after.as_deref())?.iter().filter_map(|n| claim_first(n)).collect();
        let mut end = known;
        while firsts.contains(&(end + 1)) {
            let claim = self.read_claim(lake, partition, end + 1)?;
            self.record(store, &claim)?;
            end = claim.last;
        }
        if let Some(stray) = firsts.iter().find(|f| **f > end + 1) {
            tracing::warn!(source = %self.source, partition, end, stray, "a claim in the shared lake follows no segment; left out");
        }
        self.ends.insert(partition.to_owned(), end);
        Ok(end)
    }

    fn read_claim(&self, lake: &Lake, partition: &str, first: i64) -> Result<Claim> {
        let path = format!("{}/{}", claims_dir(&self.source, partition), claim_name(first));
        parse_claim(&lake.get(&path)?, &self.source, partition, first, &path)
    }

    /// Writes `partition`'s committed rows up to sequence `through` as segments after the
    /// chain's end (at most [`SEGMENT_EVENTS`] events each), each claimed or found claimed.
    pub fn write(&mut self, store: &Store, lake: &Lake, partition: &str, through: i64) -> Result<Vec<Outcome>> {
        let mut outcomes = Vec::new();
        loop {
            let end = self.end(store, lake, partition)?;
            if end >= through {
                return Ok(outcomes);
            }
            let last = cut(store, &self.source, partition, end, through)?;
            let mut claim = Claim {
                source: self.source.clone(),
                partition: partition.to_owned(),
                first: end + 1,
                last,
                instance: self.instance.clone(),
                written_at: Utc::now(),
                first_time: None,
                last_time: None,
                files: Vec::new(),
            };
            let mut encoded = Vec::new();
            let tag = rand::random::<u32>();
            let partials = [include_str!("sql/segment_activity.sql"), include_str!("sql/segment_first_seen.sql")];
            let queries = TABLES
                .map(rows_query)
                .into_iter()
                .zip(TABLES)
                .chain(partials.map(String::from).into_iter().zip(PARTIALS));
            for (sql, table) in queries {
                if let Some(Encoded { bytes, rows, times }) = encode(store, &sql, &claim)? {
                    let path = file_path(&self.source, table, partition, claim.first, last, &self.instance, tag);
                    claim.files.push(ClaimedFile {
                        table: table.into(),
                        path: path.clone(),
                        rows,
                        sha256: super::sha256_hex(&bytes),
                    });
                    encoded.push((path, bytes));
                    let (first, last) = times
                        .map(|(lo, hi)| (DateTime::from_timestamp_micros(lo), DateTime::from_timestamp_micros(hi)))
                        .unwrap_or_default();
                    claim.first_time = claim.first_time.into_iter().chain(first).min();
                    claim.last_time = claim.last_time.into_iter().chain(last).max();
                }
            }
            for put in lake.put_new_all(encoded)? {
                if matches!(put, Put::Existed(_)) {
                    bail!("a segment file of a new attempt's name was there already");
                }
            }
            let path = format!("{}/{}", claims_dir(&self.source, partition), claim_name(claim.first));
            let body = Bytes::from(serde_json::to_vec_pretty(&claim)?);
            let outcome = match lake.put_new(&path, body)? {
                Put::Written => Outcome::Written(claim),
                Put::Existed(bytes) => {
                    let theirs = parse_claim(&bytes, &self.source, partition, claim.first, &path)?;
                    for file in &claim.files {
                        if let Err(error) = lake.delete(&file.path) {
                            tracing::warn!(file = %file.path, error = format!("{error:#}"), "removing a segment file another claim made unneeded");
                        }
                    }
                    Outcome::Theirs(theirs)
                }
            };
            let claimed = match &outcome {
                Outcome::Written(c) | Outcome::Theirs(c) => c,
            };
            self.record(store, claimed)?;
            let end = claimed.last;
            self.ends.insert(partition.to_owned(), end);
            outcomes.push(outcome);
            if end >= through {
                return Ok(outcomes);
            }
        }
    }

    /// `partition`'s chain end as last seen here.
    pub fn known_end(&self, partition: &str) -> Option<i64> {
        self.ends.get(partition).copied()
    }

    fn record(&self, store: &Store, claim: &Claim) -> Result<()> {
        store.connection()?.execute(
            "INSERT INTO hub_segments (source, partition, first_sequence, last_sequence, instance, ours, rows, claim, \
             recorded_at, first_time, last_time, files) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, now(), make_timestamp(?::BIGINT), make_timestamp(?::BIGINT), ?) \
             ON CONFLICT DO NOTHING",
            duckdb::params![
                claim.source,
                claim.partition,
                claim.first,
                claim.last,
                claim.instance,
                claim.instance == self.instance,
                claim.rows(),
                format!("{}/{}", claims_dir(&claim.source, &claim.partition), claim_name(claim.first)),
                claim.first_time.map(|t| t.timestamp_micros()),
                claim.last_time.map(|t| t.timestamp_micros()),
                serde_json::to_string(&claim.files)?,
            ],
        )?;
        Ok(())
    }
}

fn parse_claim(bytes: &[u8], source: &str, partition: &str, first: i64, path: &str) -> Result<Claim> {
    let claim: Claim = serde_json::from_slice(bytes)
        .with_context(|| format!("the claim {path} in the shared lake is not a segment claim; this partition's segments stop until it is removed"))?;
    claim.check(source, partition, first, path)
}

/// Where the segment after `end` ends: at the [`SEGMENT_EVENTS`]th event this instance
/// stored rows of, or at `through` when there are fewer.
fn cut(store: &Store, source: &str, partition: &str, end: i64, through: i64) -> Result<i64> {
    use duckdb::OptionalExt as _;
    let scans: Vec<String> = TABLES
        .iter()
        .map(|t| {
            format!(
                "SELECT sequence_number s FROM {t} \
                 WHERE source = ? AND partition = ? AND sequence_number > ? AND sequence_number <= ?"
            )
        })
        .collect();
    let sql = format!("SELECT s FROM ({}) ORDER BY s LIMIT 1 OFFSET ?", scans.join(" UNION "));
    let mut params: Vec<duckdb::types::Value> = Vec::new();
    for _ in TABLES {
        params.extend([source.to_owned().into(), partition.to_owned().into(), end.into(), through.into()]);
    }
    params.push((SEGMENT_EVENTS - 1).into());
    let nth: Option<i64> =
        store.connection()?.query_row(&sql, duckdb::params_from_iter(params), |r| r.get(0)).optional()?;
    Ok(nth.unwrap_or(through))
}

/// One table's rows of a segment, as a Parquet file in memory.
struct Encoded {
    bytes: Bytes,
    rows: i64,
    /// The earliest and latest `time` of its rows (µs), if any has one.
    times: Option<(i64, i64)>,
}

/// The query of `table`'s rows of a claim's events (the table name comes from our own list).
fn rows_query(table: &str) -> String {
    format!(
        "SELECT * FROM {table} WHERE source = ? AND partition = ? AND sequence_number BETWEEN ? AND ? \
         ORDER BY sequence_number, record_index"
    )
}

/// What `sql` (bound to the claim's source, partition, first and last event) returns, as
/// one Parquet file, or `None` if it returns no row.
fn encode(store: &Store, sql: &str, claim: &Claim) -> Result<Option<Encoded>> {
    use arrow::array::AsArray as _;
    let conn = store.connection()?;
    let mut stmt = conn.prepare(sql)?;
    let params = duckdb::params![claim.source, claim.partition, claim.first, claim.last];
    let arrow = stmt.query_arrow(params)?;
    let schema = arrow.get_schema();
    let mut writer = parquet::arrow::ArrowWriter::try_new(Vec::new(), schema, Some(super::archive::properties()))?;
    let (mut rows, mut times) = (0i64, None::<(i64, i64)>);
    for batch in arrow {
        rows += batch.num_rows() as i64;
        if let Some(time) = batch.column_by_name("time") {
            let micros = arrow::compute::cast(time, &arrow::datatypes::DataType::Int64)?;
            let micros = micros.as_primitive::<arrow::datatypes::Int64Type>();
            if let (Some(lo), Some(hi)) = (arrow::compute::min(micros), arrow::compute::max(micros)) {
                times = Some(times.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
            }
        }
        writer.write(&batch)?;
    }
    if rows == 0 {
        return Ok(None);
    }
    Ok(Some(Encoded { bytes: Bytes::from(writer.into_inner()?), rows, times }))
}

/// What [`check`] found of one partition.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PartitionReport {
    pub source: String,
    pub partition: String,
    pub segments: usize,
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// The earliest and latest row time its claims give.
    pub first_time: Option<DateTime<Utc>>,
    pub last_time: Option<DateTime<Utc>>,
    /// Rows by table.
    pub rows: std::collections::BTreeMap<String, i64>,
    /// Segments by the instance that claimed them.
    pub instances: std::collections::BTreeMap<String, usize>,
    /// Rows whose event position (sequence, record index) is in its file twice.
    pub duplicate_rows: i64,
    /// Problems: a claim that follows no segment, a file changed or missing, a row
    /// outside its claim's events.
    pub problems: Vec<String>,
}

/// Reads every claim in the shared lake and every file they name: the chain of each
/// partition, each file's digest, each row inside its claim's events and partition, no
/// event position twice in a file. Claims do not overlap by construction, so with all of
/// these an event's rows are in the lake once.
pub fn check(lake: &Lake) -> Result<Vec<PartitionReport>> {
    let mut reports = Vec::new();
    for namespace in lake.list_dirs("hubs")? {
        for hub in lake.list_dirs(&format!("hubs/{namespace}"))? {
            let segments = format!("hubs/{namespace}/{hub}/segments");
            for partition_dir in lake.list_dirs(&segments)? {
                let dir = format!("{segments}/{partition_dir}");
                let partition = partition_dir.strip_prefix("partition=").unwrap_or(&partition_dir).to_owned();
                reports.push(check_partition(lake, &dir, &partition)?);
            }
        }
    }
    Ok(reports)
}

fn check_partition(lake: &Lake, dir: &str, partition: &str) -> Result<PartitionReport> {
    let mut report = PartitionReport { partition: partition.to_owned(), ..Default::default() };
    let mut expected: Option<i64> = None;
    for name in lake.list(dir, None)? {
        let path = format!("{dir}/{name}");
        let Some(first) = claim_first(&name) else {
            report.problems.push(format!("{path}: not a claim's name"));
            continue;
        };
        let claim: Claim = match serde_json::from_slice(&lake.get(&path)?) {
            Ok(claim) => claim,
            Err(error) => {
                report.problems.push(format!("{path}: not a claim: {error}"));
                continue;
            }
        };
        if report.source.is_empty() {
            report.source = claim.source.clone();
        }
        let claim = match claim.check(&report.source, partition, first, &path) {
            Ok(claim) => claim,
            Err(error) => {
                report.problems.push(format!("{error:#}"));
                continue;
            }
        };
        if let Some(expected) = expected.filter(|e| *e != first) {
            report.problems.push(format!("{path}: follows no segment (the one before ends at {})", expected - 1));
        }
        expected = Some(claim.last + 1);
        report.segments += 1;
        report.first = report.first.or(Some(claim.first));
        report.last = Some(claim.last);
        report.first_time = report.first_time.into_iter().chain(claim.first_time).min();
        report.last_time = report.last_time.into_iter().chain(claim.last_time).max();
        *report.instances.entry(claim.instance.clone()).or_default() += 1;
        for file in &claim.files {
            let bytes = match lake.get(&file.path) {
                Ok(bytes) => bytes,
                Err(error) => {
                    report.problems.push(format!("{}: {error:#}", file.path));
                    continue;
                }
            };
            if super::sha256_hex(&bytes) != file.sha256 {
                report.problems.push(format!("{}: its SHA-256 is not the claim's", file.path));
                continue;
            }
            if PARTIALS.contains(&file.table.as_str()) {
                let rows = super::read::parquet_rows(&bytes)?;
                if rows != file.rows {
                    report.problems.push(format!("{}: {rows} rows, the claim says {}", file.path, file.rows));
                }
                continue;
            }
            let (rows, duplicates, outside) = file_positions(bytes, &claim)?;
            if rows != file.rows {
                report.problems.push(format!("{}: {rows} rows, the claim says {}", file.path, file.rows));
            }
            if outside > 0 {
                report.problems.push(format!("{}: {outside} rows outside the claim's events", file.path));
            }
            report.duplicate_rows += duplicates;
            *report.rows.entry(file.table.clone()).or_default() += rows;
        }
    }
    Ok(report)
}

/// A file's rows, rows whose (sequence, record index) came before in it, and rows
/// outside the claim's source, partition or events.
fn file_positions(bytes: Bytes, claim: &Claim) -> Result<(i64, i64, i64)> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, Int64Type};
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    let (mut rows, mut duplicates, mut outside) = (0i64, 0i64, 0i64);
    let mut seen = std::collections::HashSet::new();
    for batch in reader {
        let batch = batch?;
        let column = |name: &str| batch.column_by_name(name).with_context(|| format!("a segment file without {name}"));
        let cast = |name: &str, to: &arrow::datatypes::DataType| -> Result<arrow::array::ArrayRef> {
            Ok(arrow::compute::cast(column(name)?, to)?)
        };
        let source = cast("source", &arrow::datatypes::DataType::Utf8)?;
        let partition = cast("partition", &arrow::datatypes::DataType::Utf8)?;
        let sequence = cast("sequence_number", &arrow::datatypes::DataType::Int64)?;
        let index = cast("record_index", &arrow::datatypes::DataType::Int32)?;
        let (source, partition) = (source.as_string::<i32>(), partition.as_string::<i32>());
        let (sequence, index) = (sequence.as_primitive::<Int64Type>(), index.as_primitive::<Int32Type>());
        for i in 0..batch.num_rows() {
            rows += 1;
            let s = (!sequence.is_null(i)).then(|| sequence.value(i));
            let inside = source.value(i) == claim.source
                && partition.value(i) == claim.partition
                && s.is_some_and(|s| (claim.first..=claim.last).contains(&s));
            outside += i64::from(!inside);
            let r = (!index.is_null(i)).then(|| index.value(i));
            if !seen.insert((s, r)) {
                duplicates += 1;
            }
        }
    }
    Ok((rows, duplicates, outside))
}
