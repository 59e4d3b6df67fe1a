//! The pack for people: `report.html` (one self-contained page, no scripts, no outside
//! resources), `report.pdf` (the same report, laid out by `pdf`) and `controls.csv` (which
//! control of the pack stands for which criterion).
//!
//! Page 1 is the summary: scope, period, one line per criterion with its result and its
//! exceptions, the integrity chain in plain words, and a banner when the pack is a demo
//! pack. Then, per criterion, its populations: a chart where one helps (dated when over
//! time), the first rows with readable headers and names beside ids, and where the rest
//! is. SQL, parameters and SHA-256 come last, in the appendix. Everything is driven by
//! each population's columns by name: a population or a column that is not there is left
//! out, never an error.

use super::Criterion;
use super::csv_file::{self, cell};
use super::manifest::Manifest;
use super::pdf::{self, Bars, Block, Table, Timeline, Tone, number};
use super::populations::Population;
use anyhow::Result;
use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::sync::Arc;

/// Rows shown per population (the files hold every row).
const SHOWN_ROWS: usize = 25;
/// The rules in force are the control inventory: shown whole up to this many.
const SHOWN_RULES: usize = 80;

/// A population's rows, for the report.
pub struct Rows {
    pub population: Population,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Rows {
    pub fn count(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }

    /// Every value of column `name` as text, or `None` when the population has no such column.
    fn column(&self, name: &str) -> Option<Vec<String>> {
        self.schema.index_of(name).ok()?;
        let mut out = Vec::new();
        for batch in &self.batches {
            if let Some(array) = batch.column_by_name(name) {
                out.extend((0..batch.num_rows()).map(|i| cell(array.as_ref(), i)));
            }
        }
        Some(out)
    }

    /// A finding's status as at the period's end (`status_at_end`), else `status`.
    fn status(&self) -> Option<Vec<String>> {
        self.column("status_at_end").or_else(|| self.column("status"))
    }

    fn sum(&self, name: &str) -> f64 {
        self.column(name).map(|v| v.iter().filter_map(|t| t.parse::<f64>().ok()).sum()).unwrap_or(0.0)
    }
}

/// A file of the report, for the pack.
// Used by pack.rs once it writes report.pdf and controls.csv (until then by the tests).
pub struct ReportFile {
    pub path: &'static str,
    pub format: &'static str,
    pub bytes: Vec<u8>,
}

/// report.html, report.pdf and controls.csv for a pack.
pub fn files(manifest: &Manifest, shown: &[&Rows], rules: &[crate::rules::rule::Rule]) -> Result<Vec<ReportFile>> {
    files_of(manifest, &json_of(manifest), shown, rules)
}

/// `files`, with the manifest also as JSON (where fields a manifest may lack are read).
fn files_of(
    manifest: &Manifest,
    json: &Json,
    shown: &[&Rows],
    rules: &[crate::rules::rule::Rule],
) -> Result<Vec<ReportFile>> {
    let report = Report::new(manifest, json, shown);
    Ok(vec![
        ReportFile { path: "report.html", format: "html", bytes: report.html().into_bytes() },
        ReportFile { path: "report.pdf", format: "pdf", bytes: pdf::write(&report.pdf())? },
        ReportFile { path: "controls.csv", format: "csv", bytes: controls(manifest, shown, rules, &report)? },
    ])
}

// ---------------------------------------------------------------------------------------
// What the report says, whatever it is written as.

/// One line of page 1: a criterion, what was examined, and its exceptions.
struct Line {
    criterion: Criterion,
    summary: String,
    exceptions: Vec<String>,
}

impl Line {
    fn result(&self) -> String {
        match self.exceptions.len() {
            0 => "No exceptions".into(),
            1 => "1 exception".into(),
            n => format!("{n} exceptions"),
        }
    }
}

enum Chart {
    Bars(Bars),
    Timeline(Timeline),
}

/// A population as shown.
struct Shown {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    count: u64,
    /// The population's CSV file in the pack.
    file: String,
    headers: Vec<String>,
    /// Per shown column: ids and other long unbroken text, which may wrap anywhere.
    long: Vec<bool>,
    rows: Vec<Vec<String>>,
    /// Columns only in the files (SQL, hashes, long definitions).
    file_only: Vec<String>,
    chart: Option<Chart>,
}

struct Appendix {
    criterion: String,
    title: String,
    files: Vec<(String, Option<u64>, u64, String)>,
    sql: Option<String>,
    parameters: Option<String>,
}

struct Report {
    period: String,
    header: String,
    generated: String,
    demo: Option<String>,
    archived: Option<String>,
    scope: Vec<(String, String)>,
    lines: Vec<Line>,
    integrity_ok: bool,
    integrity: String,
    coverage: Vec<Vec<String>>,
    sections: Vec<(Criterion, Vec<Shown>)>,
    appendix: Vec<Appendix>,
    details: Vec<(String, String)>,
    macros: Vec<(String, String)>,
}

/// The manifest as JSON, for fields that a manifest may or may not have (newer fields are
/// read by name, so an older manifest still makes a report).
fn json_of(manifest: &Manifest) -> Json {
    serde_json::to_value(manifest).unwrap_or(Json::Null)
}

fn text_of(value: &Json) -> String {
    match value {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn strings(value: Option<&Json>) -> Vec<String> {
    value
        .and_then(Json::as_array)
        .map(|a| a.iter().map(text_of).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

fn time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// "3 March 2025 00:00".
fn long_date(text: &str) -> String {
    time(text).map(|t| t.format("%-d %B %Y %H:%M").to_string()).unwrap_or_else(|| text.to_string())
}

/// An RFC 3339 time as a table shows it: "2025-03-03 01:00:07" (all times are UTC).
fn short_time(text: &str) -> Option<String> {
    let b = text.as_bytes();
    if b.len() >= 19 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && text.ends_with('Z') {
        Some(format!("{} {}", &text[..10], &text[11..19]))
    } else {
        None
    }
}

/// A column name in words: `minutes_to_respond` → "Minutes to respond".
pub(crate) fn words(column: &str) -> String {
    let known = match column {
        "principal_id" => "Principal",
        "oid" => "Caller",
        "tid" => "Tenant ID",
        "id" => "ID",
        "soc2" => "SOC 2 criteria",
        "mitre" => "MITRE ATT&CK",
        "attribution" => "Authentication",
        "auth" => "Sign-in",
        "auth_token_type" => "Token type",
        "user_agent_family" => "Client application",
        "batch_id" => "Ingest batch",
        "rule_id" => "Rule",
        "source_id" => "Source",
        "kind" => "Kind",
        "role_assignment_id" => "Role assignment",
        "evidence_in_period" => "Evidence in period",
        "gap_from" => "Gap from",
        "gap_to" => "Gap to",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let mut out = Vec::new();
    for (i, word) in column.split('_').filter(|w| !w.is_empty()).enumerate() {
        let word = match word {
            "id" => "ID".to_string(),
            "ids" => "IDs".to_string(),
            "ip" => "IP".to_string(),
            "ips" => "IPs".to_string(),
            "sha256" => "SHA-256".to_string(),
            "ms" => "(ms)".to_string(),
            "url" => "URL".to_string(),
            "api" => "API".to_string(),
            "utc" => "UTC".to_string(),
            "sql" => "SQL".to_string(),
            w if i == 0 => {
                let mut c = w.chars();
                c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
            }
            w => w.to_string(),
        };
        out.push(word);
    }
    out.join(" ")
}

/// Columns that hold ids, hashes, paths: long unbroken text that may wrap anywhere.
fn is_long(column: &str) -> bool {
    column.ends_with("_id")
        || column.ends_with("id")
        || column.contains("sha256")
        || column.contains("digest")
        || column.contains("fingerprint")
        || matches!(column, "oid" | "tid" | "entity" | "path" | "stream" | "user_agent" | "key" | "endpoint")
}

/// Columns left to the files: SQL, rule definitions, hashes, raw parameters.
fn file_only(column: &str) -> bool {
    column.contains("sha256")
        || column.contains("digest")
        || matches!(column, "definition" | "sql" | "parameters" | "record" | "detail" | "latest_detail")
}

/// Name columns that go beside an id column: (id, names in order of preference).
const NAMED: [(&str, &[&str]); 2] =
    [("principal_id", &["principal_name", "app_name", "display_name"]), ("oid", &["name"])];

fn short_id(id: &str) -> String {
    if id.chars().count() > 12 { format!("{}…", id.chars().take(8).collect::<String>()) } else { id.to_string() }
}

fn plural(n: f64, one: &str, many: &str) -> String {
    format!("{} {}", number(n), if n.round() == 1.0 { one } else { many })
}

impl Report {
    fn new(manifest: &Manifest, json: &Json, shown: &[&Rows]) -> Report {
        let find = |name: &str| shown.iter().copied().find(|r| r.population.name == name);
        let period =
            format!("{} to {} UTC (end exclusive)", long_date(&manifest.period.from), long_date(&manifest.period.to));
        let header = format!("TokenTrail SOC 2 evidence · {period}");
        let generated = format!(
            "Generated {} by {}",
            short_time(&manifest.generated_at)
                .map(|t| format!("{t} UTC"))
                .unwrap_or_else(|| manifest.generated_at.clone()),
            manifest.generated_by.name
        );
        // The manifest says why (generated data, a development signer); a reason that names
        // neither gets the general warning.
        let demo = json.get("demo").map(text_of).filter(|d| !d.is_empty()).map(|why| {
            let why = why.trim_end_matches('.');
            let lower = why.to_lowercase();
            let general = if lower.contains("generat") || lower.contains("development") {
                ""
            } else {
                " It holds generated data and/or is signed by the development key."
            };
            format!("DEMO PACK: do not use it in an audit. {why}.{general}")
        });

        // Rows retention moved to the lake: read from it (the manifest lists the files), or
        // missing from the populations.
        let read = json.get("lake").is_some_and(|l| !l.is_null());
        let heading = if read { "ARCHIVED ROWS INCLUDED" } else { "INCOMPLETE PERIOD" };
        let archived = json.get("archived").map(text_of).filter(|a| !a.is_empty()).map(|a| format!("{heading}: {a}"));

        // Scope: from the manifest, else from what the populations show.
        let scope_json = json.get("scope");
        let mut tenants = strings(scope_json.and_then(|s| s.get("tenants")));
        let mut accounts = strings(scope_json.and_then(|s| s.get("accounts")));
        let mut sources = strings(scope_json.and_then(|s| s.get("sources")));
        if accounts.is_empty() {
            let mut set = BTreeSet::new();
            for name in ["auth_methods", "role_assignments", "key_access"] {
                if let Some(v) = find(name).and_then(|r| r.column("account")) {
                    set.extend(v.into_iter().filter(|a| !a.is_empty()));
                }
            }
            accounts = set.into_iter().collect();
        }
        if sources.is_empty() {
            sources = manifest
                .sources
                .iter()
                .map(|s| {
                    let id = s.get("source_id").map(text_of).unwrap_or_default();
                    match s.get("kind").map(text_of) {
                        Some(kind) if !kind.is_empty() => format!("{id} ({kind})"),
                        _ => id,
                    }
                })
                .collect();
        }
        if tenants.is_empty() {
            tenants = manifest.generated_by.tid.iter().cloned().collect();
        }
        let none = |v: &[String], what: &str| if v.is_empty() { format!("none {what}") } else { v.join(", ") };
        let mut scope = vec![
            ("Period".to_string(), period.clone()),
            ("Tenants".to_string(), none(&tenants, "recorded")),
            ("Cosmos DB accounts".to_string(), none(&accounts, "with requests in the period")),
            ("Sources".to_string(), none(&sources, "with events in the period")),
            ("Criteria".to_string(), manifest.criteria.join(", ")),
        ];
        let as_of = json.get("as_of");
        if let Some(batch) = as_of.and_then(|a| a.get("batch_id")).filter(|b| !b.is_null()) {
            let at = as_of.and_then(|a| a.get("committed_at")).map(text_of).unwrap_or_default();
            scope.push((
                "Data as of".to_string(),
                format!(
                    "ingest batch {}{}",
                    text_of(batch),
                    short_time(&at).map(|t| format!(", committed {t} UTC")).unwrap_or_default()
                ),
            ));
        }
        scope.push(("Prepared".to_string(), generated.clone()));

        // Names for ids, from every population that has both.
        let mut names: HashMap<(&str, String), String> = HashMap::new();
        for rows in shown {
            for (id, name_columns) in NAMED {
                let Some(ids) = rows.column(id) else { continue };
                let columns: Vec<Vec<String>> = name_columns.iter().filter_map(|n| rows.column(n)).collect();
                for (i, value) in ids.iter().enumerate() {
                    if let Some(name) = columns.iter().map(|c| &c[i]).find(|n| !n.is_empty() && *n != value) {
                        names.entry((id, value.clone())).or_insert_with(|| name.clone());
                    }
                }
            }
        }

        let coverage: Vec<Vec<String>> = json
            .get("coverage")
            .and_then(Json::as_array)
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        ["stream", "expected", "status", "events", "last_event", "note"]
                            .iter()
                            .map(|k| {
                                let t = r.get(*k).map(text_of).unwrap_or_default();
                                short_time(&t).unwrap_or(t)
                            })
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default();

        let criteria: Vec<Criterion> = manifest.criteria.iter().filter_map(|c| Criterion::parse(c)).collect();
        let lines = criteria.iter().map(|c| line(*c, manifest, &find, &coverage)).collect();

        let chain = &manifest.integrity_chain;
        let integrity_ok = chain.verified;
        let integrity = integrity(chain);

        let mut sections: Vec<(Criterion, Vec<Shown>)> = Vec::new();
        for rows in shown {
            let p = &rows.population;
            let s = show(rows, manifest, &names);
            match sections.last_mut() {
                Some((c, list)) if *c == p.criterion => list.push(s),
                _ => sections.push((p.criterion, vec![s])),
            }
        }

        let mut appendix = Vec::new();
        let mut seen = BTreeSet::new();
        for file in &manifest.files {
            let key = (file.criterion.clone(), file.population.clone());
            if file.population.is_none() || !seen.insert(key.clone()) {
                continue;
            }
            let same: Vec<_> =
                manifest.files.iter().filter(|f| (f.criterion.clone(), f.population.clone()) == key).collect();
            let title = shown
                .iter()
                .find(|r| Some(r.population.name) == file.population.as_deref())
                .map(|r| r.population.title.to_string())
                .unwrap_or_else(|| file.population.clone().unwrap_or_default());
            appendix.push(Appendix {
                criterion: file.criterion.clone().unwrap_or_default(),
                title,
                files: same.iter().map(|f| (f.path.clone(), f.rows, f.bytes, f.sha256.clone())).collect(),
                sql: file.sql.clone(),
                parameters: file.parameters.as_ref().filter(|p| !p.is_empty()).map(|p| {
                    p.iter()
                        .map(|(k, v)| {
                            let mut t = text_of(v);
                            if t.chars().count() > 300 {
                                t = format!(
                                    "{}… ({} characters; in manifest.json)",
                                    t.chars().take(300).collect::<String>(),
                                    t.len()
                                );
                            }
                            format!("${k} = {t}")
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                }),
            });
        }
        let others: Vec<_> = manifest.files.iter().filter(|f| f.population.is_none()).collect();
        if !others.is_empty() {
            appendix.push(Appendix {
                criterion: String::new(),
                title: "Other files".into(),
                files: others.iter().map(|f| (f.path.clone(), f.rows, f.bytes, f.sha256.clone())).collect(),
                sql: None,
                parameters: None,
            });
        }

        let by = &manifest.generated_by;
        let mut details = vec![
            ("Format".to_string(), manifest.format.clone()),
            ("Service".to_string(), format!("{} {}", manifest.service.name, manifest.service.version)),
            (
                "Generated by".to_string(),
                format!(
                    "{} (object ID {}, tenant ID {})",
                    by.name,
                    by.oid.as_deref().unwrap_or("none"),
                    by.tid.as_deref().unwrap_or("none")
                ),
            ),
            ("Generated at".to_string(), manifest.generated_at.clone()),
            (
                "Signing key".to_string(),
                format!("{}, key ID {}", manifest.signing_key.algorithm, manifest.signing_key.key_id),
            ),
            ("Integrity chain".to_string(), chain.result.clone()),
        ];
        if let Some(engine) = json.get("engine") {
            let version = engine.get("duckdb_version").map(text_of).unwrap_or_default();
            let tz = engine.get("timezone").map(text_of).unwrap_or_default();
            if !version.is_empty() || !tz.is_empty() {
                details.push(("Query engine".to_string(), format!("DuckDB {version}, time zone {tz}")));
            }
        }
        let mut macros: Vec<(String, String)> = Vec::new();
        for (key, kind) in [("macros", "macro"), ("views", "view")] {
            for m in json.get("engine").and_then(|e| e.get(key)).and_then(Json::as_array).into_iter().flatten() {
                let name = m.get("name").map(text_of).unwrap_or_default();
                macros.push((format!("{kind} {name}"), m.get("definition").map(text_of).unwrap_or_default()));
            }
        }

        Report {
            period,
            header,
            generated,
            demo,
            archived,
            scope,
            lines,
            integrity_ok,
            integrity,
            coverage,
            sections,
            appendix,
            details,
            macros,
        }
    }
}

/// The integrity chain in plain words: the ingest batches, then the append-only tables.
fn integrity(chain: &super::manifest::ChainInfo) -> String {
    let mut text = if chain.failures.is_empty() {
        let mut text = format!(
            "All {} ingest batches verified; no row was changed, added or removed since ingest.",
            number(chain.batches_checked as f64)
        );
        if !chain.unchained_batches.is_empty() {
            let _ = write!(
                text,
                " {} from before the integrity chain existed cannot be checked this way.",
                plural(chain.unchained_batches.len() as f64, "batch", "batches")
            );
        }
        text
    } else {
        let first = chain
            .failures
            .first()
            .map(|f| format!(" The first is batch {}: {}.", f.batch_id, f.reason))
            .unwrap_or_default();
        format!(
            "Integrity check FAILED: {} of {} ingest batches no longer match what was ingested: rows were changed, added or removed after ingest.{first}",
            number(chain.failures.len() as f64),
            number(chain.batches as f64)
        )
    };
    let name = |table: &str| table.replace('_', " ");
    let whole: Vec<String> = chain
        .append_chains
        .iter()
        .filter(|a| a.verified)
        .map(|a| format!("{} ({})", name(&a.table), plural(a.rows as f64, "entry", "entries")))
        .collect();
    if !whole.is_empty() {
        let _ = write!(
            text,
            " The {} {} whole: no entry was changed or removed.",
            whole.join(" and the "),
            if whole.len() == 1 { "is" } else { "are" }
        );
    }
    for broken in chain.append_chains.iter().filter(|a| !a.verified) {
        let _ = write!(
            text,
            " Integrity check FAILED for the {}: {}.",
            name(&broken.table),
            broken.result.trim_end_matches('.')
        );
    }
    if !chain.verified && chain.failures.is_empty() && chain.append_chains.iter().all(|a| a.verified) {
        let _ = write!(text, " Integrity check FAILED: {}.", chain.result.trim_end_matches('.'));
    }
    text
}

/// The page-1 line of `criterion`, read from its populations' columns by name.
fn line<'a>(
    criterion: Criterion,
    manifest: &Manifest,
    find: &dyn Fn(&str) -> Option<&'a Rows>,
    coverage: &[Vec<String>],
) -> Line {
    let mut parts: Vec<String> = Vec::new();
    let mut exceptions: Vec<String> = Vec::new();
    let count = |name: &str| find(name).map(|r| r.count() as f64);
    match criterion {
        Criterion::Cc6_1 => {
            if let Some(rows) = find("auth_methods") {
                let total = rows.sum("requests");
                let mut by: BTreeMap<String, f64> = BTreeMap::new();
                if let (Some(a), Some(r)) = (rows.column("attribution"), rows.column("requests")) {
                    for (a, r) in a.iter().zip(&r) {
                        *by.entry(a.clone()).or_default() += r.parse::<f64>().unwrap_or(0.0);
                    }
                }
                let get = |k: &str| by.get(k).copied().unwrap_or(0.0);
                parts.push(format!(
                    "{}: {} with Entra ID, {} with account keys, {} with resource tokens",
                    plural(total, "Cosmos DB request", "Cosmos DB requests"),
                    number(get("entra_id")),
                    number(get("account_key")),
                    number(get("resource_token"))
                ));
                let keyed = get("account_key") + get("resource_token");
                if keyed > 0.0 {
                    let addresses = find("key_access")
                        .and_then(|r| r.column("client_ip"))
                        .map(|v| v.into_iter().filter(|a| !a.is_empty()).collect::<BTreeSet<_>>().len());
                    exceptions.push(format!(
                        "{} without an identity (account keys or resource tokens){}",
                        plural(keyed, "request", "requests"),
                        addresses
                            .map(|n| format!(" from {}", plural(n as f64, "client address", "client addresses")))
                            .unwrap_or_default()
                    ));
                }
                if get("unknown") > 0.0 {
                    exceptions.push(format!(
                        "{} whose authentication is unknown",
                        plural(get("unknown"), "request", "requests")
                    ));
                }
            }
            if let Some(n) = count("key_access_events") {
                parts.push(format!("{} listed one by one", plural(n, "key-based request", "key-based requests")));
            }
        }
        Criterion::Cc6_2 => {
            if let Some(rows) = find("principals") {
                let statuses = rows.column("status").unwrap_or_default();
                let n = |s: &str| statuses.iter().filter(|x| *x == s).count() as f64;
                parts.push(format!(
                    "{}: {} new, {} active, {} dormant",
                    plural(rows.count() as f64, "principal", "principals"),
                    number(n("new")),
                    number(n("active")),
                    number(n("dormant"))
                ));
                if n("dormant") > 0.0 {
                    exceptions.push(format!(
                        "{} with no activity in the period, to review for removal",
                        plural(n("dormant"), "dormant principal", "dormant principals")
                    ));
                }
                let failed = rows.sum("failed_signins");
                if failed > 0.0 {
                    parts.push(format!("{} in the period", plural(failed, "failed sign-in", "failed sign-ins")));
                }
            }
            if let (Some(start), Some(end)) = (count("entitlements_start"), count("entitlements_end")) {
                parts.push(format!(
                    "{} at the start, {} at the end",
                    plural(start, "role assignment", "role assignments"),
                    number(end)
                ));
            }
            if let (Some(granted), Some(removed)) = (find("grants"), find("removals")) {
                parts.push(format!(
                    "{} granted, {} removed",
                    plural(granted.count() as f64, "assignment", "assignments"),
                    number(removed.count() as f64)
                ));
                let unlogged = |rows: &Rows| {
                    rows.column("source").map(|v| v.iter().filter(|s| *s == "inventory").count()).unwrap_or(0) as f64
                };
                let unlogged = unlogged(granted) + unlogged(removed);
                if unlogged > 0.0 {
                    exceptions.push(format!(
                        "{} not in the Activity log (seen only by the inventory)",
                        plural(unlogged, "access change", "access changes")
                    ));
                }
            }
            if let Some(rows) = find("leavers")
                && let Some(verdicts) = rows.column("verdict")
            {
                let n = |v: &str| verdicts.iter().filter(|x| *x == v).count() as f64;
                let leavers = rows.column("principal_id").map(|p| p.into_iter().collect::<BTreeSet<_>>().len());
                parts.push(format!(
                    "{}: {} removed on time",
                    plural(leavers.unwrap_or(0) as f64, "leaver", "leavers"),
                    plural(n("on time"), "assignment", "assignments")
                ));
                if n("late") > 0.0 {
                    exceptions
                        .push(format!("{} of leavers removed late", plural(n("late"), "assignment", "assignments")));
                }
                if n("not removed") > 0.0 {
                    exceptions.push(format!(
                        "{} of leavers not removed",
                        plural(n("not removed"), "assignment", "assignments")
                    ));
                }
            }
            if let Some(n) = count("exceptions")
                && n > 0.0
            {
                exceptions.push(format!("{} of least privilege", plural(n, "exception", "exceptions")));
            }
            if let Some(n) = count("role_assignments") {
                parts.push(format!("{} in use", plural(n, "role assignment", "role assignments")));
            }
            if let Some(rows) = find("access_reviews") {
                let states = rows.column("state_at_pack").unwrap_or_default();
                let n = |s: &str| states.iter().filter(|x| *x == s).count() as f64;
                parts.push(format!(
                    "{} ({} completed)",
                    plural(rows.count() as f64, "access review", "access reviews"),
                    number(n("completed"))
                ));
                if n("overdue") > 0.0 {
                    exceptions.push(plural(n("overdue"), "overdue access review", "overdue access reviews"));
                }
            }
        }
        Criterion::Cc7_2 => {
            if let Some(n) = count("rules") {
                parts.push(plural(n, "rule in force", "rules in force"));
                if n == 0.0 {
                    exceptions.push("no detection rule was recorded as in force in the period".into());
                }
            }
            if let Some(n) = count("findings") {
                parts.push(plural(n, "finding", "findings"));
            }
            parts.push(plural(manifest.sources.len() as f64, "source", "sources"));
            // Coverage: the manifest's, else the population's.
            let mut statuses: Vec<(String, String)> = coverage.iter().map(|r| (r[0].clone(), r[2].clone())).collect();
            if statuses.is_empty()
                && let Some(rows) = find("coverage")
                && let (Some(s), Some(st)) = (rows.column("stream"), rows.column("status"))
            {
                statuses = s.into_iter().zip(st).collect();
            }
            if !statuses.is_empty() {
                parts.push(plural(statuses.len() as f64, "stream monitored", "streams monitored"));
                for status in ["stopped", "interrupted", "not ingested"] {
                    let streams: Vec<&str> =
                        statuses.iter().filter(|(_, s)| s == status).map(|(n, _)| n.as_str()).collect();
                    if !streams.is_empty() {
                        exceptions.push(format!(
                            "{} {status}: {}",
                            plural(streams.len() as f64, "stream", "streams"),
                            streams.join(", ")
                        ));
                    }
                }
            }
            if !manifest.gaps.is_empty() {
                let streams: BTreeSet<String> =
                    manifest.gaps.iter().filter_map(|g| g.get("stream").map(text_of)).collect();
                let hours: f64 = manifest.gaps.iter().filter_map(|g| g.get("hours").and_then(Json::as_f64)).sum();
                exceptions.push(format!(
                    "{} ({}) without events in {}",
                    plural(manifest.gaps.len() as f64, "gap", "gaps"),
                    plural(hours, "hour", "hours"),
                    plural(streams.len() as f64, "stream", "streams")
                ));
            }
        }
        Criterion::Cc7_3 => {
            if let Some(rows) = find("response") {
                let total = rows.count() as f64;
                let filled =
                    |c: &str| rows.column(c).map(|v| v.iter().filter(|x| !x.is_empty()).count() as f64).unwrap_or(0.0);
                let statuses = rows.status().unwrap_or_default();
                let open_unanswered = match (rows.column("first_response_at"), rows.status()) {
                    (Some(first), Some(status)) => {
                        first.iter().zip(&status).filter(|(f, s)| f.is_empty() && s.as_str() == "open").count() as f64
                    }
                    _ => 0.0,
                };
                let mut minutes: Vec<f64> = rows
                    .column("minutes_to_respond")
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|m| m.parse().ok())
                    .collect();
                minutes.sort_by(f64::total_cmp);
                parts.push(format!(
                    "{}: {} resolved, {} acknowledged, {} open",
                    plural(total, "finding", "findings"),
                    number(filled("resolved_at")),
                    number(filled("acknowledged_at")),
                    number(statuses.iter().filter(|s| *s == "open").count() as f64)
                ));
                let later = statuses.iter().filter(|s| s.is_empty()).count() as f64;
                if later > 0.0 && rows.column("status_at_end").is_some() {
                    parts.push(format!("{} raised after the period ended", number(later)));
                }
                if !minutes.is_empty() {
                    parts.push(format!(
                        "median {} to first response",
                        plural(minutes[minutes.len() / 2], "minute", "minutes")
                    ));
                }
                if open_unanswered > 0.0 {
                    exceptions.push(format!(
                        "{} open with no response by a person",
                        plural(open_unanswered, "finding", "findings")
                    ));
                }
            }
        }
        Criterion::AccessLog => {
            if let Some(rows) = find("access_log") {
                let people = rows
                    .column("oid")
                    .or_else(|| rows.column("name"))
                    .map(|v| v.into_iter().filter(|x| !x.is_empty()).collect::<BTreeSet<_>>().len())
                    .unwrap_or(0);
                let refused = rows
                    .column("status")
                    .map(|v| v.iter().filter(|s| s.parse::<u32>().is_ok_and(|n| n >= 400)).count())
                    .unwrap_or(0);
                parts.push(format!(
                    "{} by {}; {} refused",
                    plural(rows.count() as f64, "API call or UI action", "API calls and UI actions"),
                    plural(people as f64, "person", "people"),
                    number(refused as f64)
                ));
            }
        }
    }
    if parts.is_empty() {
        parts.push("No population of this criterion in the pack".into());
    }
    Line { criterion, summary: parts.join("; "), exceptions }
}

/// `rows` as the report shows them: words for headers, names beside ids, the first rows.
fn show(rows: &Rows, manifest: &Manifest, names: &HashMap<(&str, String), String>) -> Shown {
    let p = &rows.population;
    let file = manifest
        .files
        .iter()
        .find(|f| f.population.as_deref() == Some(p.name) && f.format == "csv")
        .map(|f| f.path.clone())
        .unwrap_or_else(|| format!("{}/{}_….csv", p.criterion.as_str(), p.name));
    let columns: Vec<&str> = rows.schema.fields().iter().map(|f| f.name().as_str()).collect();
    // Name columns shown inside their id column.
    let merged: BTreeSet<&str> = NAMED
        .iter()
        .filter(|(id, _)| columns.contains(id))
        .flat_map(|(_, n)| n.iter().copied())
        .filter(|n| columns.contains(n))
        .collect();
    let kept: Vec<usize> =
        (0..columns.len()).filter(|i| !merged.contains(columns[*i]) && !file_only(columns[*i])).collect();
    let limit = if p.name == "rules" { SHOWN_RULES } else { SHOWN_ROWS };
    let mut out = Vec::new();
    'batches: for batch in &rows.batches {
        for i in 0..batch.num_rows() {
            if out.len() == limit || p.name == "completeness" {
                break 'batches;
            }
            let row = kept
                .iter()
                .map(|&c| {
                    let text = cell(batch.column(c).as_ref(), i);
                    let name = columns[c];
                    if let Some((id, _)) = NAMED.iter().find(|(id, _)| *id == name) {
                        if text.is_empty() {
                            return text;
                        }
                        return match names.get(&(*id, text.clone())) {
                            Some(n) => format!("{n} ({})", short_id(&text)),
                            None => text,
                        };
                    }
                    short_time(&text).unwrap_or(text)
                })
                .collect();
            out.push(row);
        }
    }
    Shown {
        name: p.name,
        title: p.title,
        description: p.description,
        count: rows.count(),
        file,
        headers: kept.iter().map(|&c| words(columns[c])).collect(),
        long: kept.iter().map(|&c| is_long(columns[c])).collect(),
        rows: out,
        file_only: columns.iter().filter(|c| file_only(c)).map(|c| words(c)).collect(),
        chart: chart(rows),
    }
}

fn sum_by(rows: &Rows, key: &str, value: Option<&str>, label: &dyn Fn(&str) -> String) -> Vec<(String, f64)> {
    let keys = if key == "status" { rows.status() } else { rows.column(key) };
    let Some(keys) = keys else { return Vec::new() };
    let values: Vec<f64> = match value.and_then(|v| rows.column(v)) {
        Some(v) => v.iter().map(|t| t.parse().unwrap_or(0.0)).collect(),
        None => vec![1.0; keys.len()],
    };
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for (k, v) in keys.into_iter().zip(values) {
        let name = match (k.is_empty(), key) {
            (true, "status") if rows.column("status_at_end").is_some() => "not raised by the period's end".into(),
            (true, _) => "(none)".into(),
            (false, _) => label(&k),
        };
        *sums.entry(name).or_default() += v;
    }
    let mut bars: Vec<(String, f64)> = sums.into_iter().collect();
    bars.sort_by(|a, b| b.1.total_cmp(&a.1));
    bars
}

fn chart(rows: &Rows) -> Option<Chart> {
    let plain = |s: &str| s.to_string();
    let auth = |s: &str| {
        match s {
            "entra_id" => "Entra ID",
            "account_key" => "Account key",
            "resource_token" => "Resource token",
            "unknown" => "Unknown",
            other => other,
        }
        .to_string()
    };
    let bars = |title: &str, unit: &str, bars: Vec<(String, f64)>| {
        (!bars.is_empty()).then(|| Chart::Bars(Bars { title: title.into(), unit: unit.into(), bars }))
    };
    match rows.population.name {
        "auth_methods" => {
            bars("Requests by authentication method", "requests", sum_by(rows, "attribution", Some("requests"), &auth))
        }
        "key_access" => {
            bars("Key-based requests by account", "requests", sum_by(rows, "account", Some("requests"), &plain))
        }
        "principals" => bars("Principals by status", "principals", sum_by(rows, "status", None, &plain)),
        "findings" => bars("Findings by severity", "findings", sum_by(rows, "severity", None, &plain)),
        "response" => bars("Findings by status at the period's end", "findings", sum_by(rows, "status", None, &plain)),
        "access_log" => {
            let mut b = sum_by(rows, "endpoint", None, &plain);
            b.truncate(10);
            bars("Calls by endpoint (the 10 most called)", "calls", b)
        }
        "completeness" => completeness(rows).map(Chart::Timeline),
        _ => None,
    }
}

/// Per stream, hours with events over the period: one cell per hour (up to four days) or
/// per day, dated under the axis.
fn completeness(rows: &Rows) -> Option<Timeline> {
    let (streams, hours, events) = (rows.column("stream")?, rows.column("hour")?, rows.column("events")?);
    let times: Vec<Option<DateTime<Utc>>> = hours.iter().map(|h| time(h)).collect();
    let first = times.iter().flatten().min().copied()?;
    let last = times.iter().flatten().max().copied()?;
    let span_hours = (last - first).num_hours() + 1;
    let hourly = span_hours <= 96;
    let start = if hourly { first } else { first.date_naive().and_hms_opt(0, 0, 0)?.and_utc() };
    let columns = if hourly { span_hours } else { (last - start).num_days() + 1 } as usize;
    let mut per: BTreeMap<&str, Vec<(u32, u32)>> = BTreeMap::new();
    for ((stream, t), e) in streams.iter().zip(&times).zip(&events) {
        let Some(t) = t else { continue };
        let c = if hourly { (*t - start).num_hours() } else { (*t - start).num_days() } as usize;
        let cells = per.entry(stream).or_insert_with(|| vec![(0, 0); columns]);
        if let Some(cell) = cells.get_mut(c) {
            cell.0 += 1;
            cell.1 += (e != "0") as u32;
        }
    }
    let rows_out = per
        .into_iter()
        .map(|(s, cells)| (s.to_string(), cells.iter().map(|(n, w)| (*n > 0).then(|| *w as f32 / *n as f32)).collect()))
        .collect();
    let mut ticks = Vec::new();
    if hourly {
        for c in 0..columns {
            let t = start + Duration::hours(c as i64);
            if t.format("%H").to_string() == "00" || c == 0 {
                ticks.push((c, t.format("%a %-d %b").to_string()));
            } else if t.format("%H").to_string() == "12" {
                ticks.push((c, "12:00".to_string()));
            }
        }
    } else {
        let step = columns.div_ceil(10).max(1);
        for c in (0..columns).step_by(step) {
            ticks.push((c, (start + Duration::days(c as i64)).format("%-d %b %Y").to_string()));
        }
    }
    Some(Timeline {
        title: format!("Completeness: events per stream, per {} (UTC)", if hourly { "hour" } else { "day" }),
        legend: if hourly {
            "Each cell is one hour: blue, events arrived; red, none (a gap); grey, outside the period.".into()
        } else {
            "Each cell is one day, darker the more of its hours had events; red: no event all day.".into()
        },
        rows: rows_out,
        ticks,
    })
}

// ---------------------------------------------------------------------------------------
// HTML.

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = r#"
* { box-sizing: border-box; }
body { font: 10pt/1.45 "DejaVu Sans", system-ui, -apple-system, "Segoe UI", sans-serif; color: #111; margin: 0 auto; max-width: 290mm; padding: 14mm 8mm; }
header.run { font-size: 7.5pt; color: #555; border-bottom: 1px solid #bbb; padding-bottom: 2px; margin-bottom: 6mm; display: flex; justify-content: space-between; }
h1 { font-size: 20pt; margin: 0 0 1mm; } p.sub { color: #444; margin: 0 0 5mm; }
h2 { font-size: 13.5pt; border-bottom: 2px solid #333; margin: 7mm 0 2mm; padding-bottom: 1mm; }
h3 { font-size: 11pt; margin: 5mm 0 1mm; } h3 .n { font-weight: normal; color: #555; font-size: 9pt; }
table { border-collapse: collapse; width: 100%; font-size: 8pt; margin: 1.5mm 0 3mm; }
th, td { border-bottom: 1px solid #ccd; padding: 2px 4px; text-align: left; vertical-align: top;
  word-break: normal; overflow-wrap: normal; hyphens: none; }
th { background: #e4e7ec; font-weight: 600; }
td.long { overflow-wrap: anywhere; min-width: 9em; } table.wide { font-size: 7pt; } td.num { text-align: right; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #f5f6f8; }
table.kv th { width: 42mm; background: none; } table.kv td, table.kv th { border-bottom: 1px solid #e3e3e3; font-size: 9.5pt; }
table.criteria td, table.criteria th { font-size: 9pt; padding: 4px 5px; }
table.criteria td.code { font-weight: 700; white-space: nowrap; }
.ok { color: #1b5e20; font-weight: 700; } .bad { color: #b71c1c; font-weight: 700; }
ul.ex { margin: 0; padding-left: 1.1em; } ul.ex li { color: #8a1c1c; }
.banner { background: #b71c1c; color: #fff; font-weight: 700; padding: 3mm 4mm; margin: 0 0 5mm; font-size: 11pt; border-radius: 2px; }
.integrity { padding: 3mm 4mm; margin: 4mm 0; font-weight: 600; border-left: 5px solid; }
.integrity.ok { background: #eef6ee; border-color: #1b5e20; } .integrity.bad { background: #fbeaea; border-color: #b71c1c; }
p.note, p.more { color: #555; font-size: 8.5pt; margin: 1mm 0 3mm; }
pre.sql { font: 7.5pt/1.35 "DejaVu Sans Mono", monospace; background: #f6f6f6; border: 1px solid #ddd; padding: 2mm; white-space: pre-wrap; overflow-wrap: anywhere; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: 8pt; overflow-wrap: anywhere; }
svg { max-width: 100%; height: auto; } svg text { font-size: 9px; font-family: inherit; fill: #222; } svg .ct { font-size: 11px; font-weight: 700; }
svg .axis { fill: #555; font-size: 8px; } .bar { fill: #3a6ea5; }
figure { margin: 2mm 0 3mm; break-inside: avoid; }
section.criterion, section.appendix { break-before: page; }
.population { break-inside: auto; }
tr { break-inside: avoid; } thead { display: table-header-group; }
@page { size: A4; margin: 14mm 12mm; }
@page wide { size: A4 landscape; margin: 12mm 12mm; }
section.criterion { page: wide; }
@media print { body { padding: 0; max-width: none; } }
"#;

impl Report {
    fn html(&self) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>SOC 2 evidence report · {p}</title><style>{STYLE}</style></head><body>
<header class="run"><span>{hd}</span><span>{g}</span></header>
"#,
            p = esc(&self.period),
            hd = esc(&self.header),
            g = esc(&self.generated)
        );
        h.push_str(r#"<section class="summary">"#);
        for banner in [&self.demo, &self.archived].into_iter().flatten() {
            let _ = write!(h, r#"<div class="banner" role="alert">{}</div>"#, esc(banner));
        }
        let _ = write!(h, r#"<h1>SOC 2 evidence report</h1><p class="sub">{}</p>"#, esc(&self.period));
        h.push_str(r#"<table class="kv"><tbody>"#);
        for (k, v) in &self.scope {
            let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
        }
        h.push_str("</tbody></table><h2>Results by criterion</h2>");
        h.push_str(r#"<table class="criteria"><thead><tr><th>Criterion</th><th>What the pack shows</th><th>Result</th><th>Exceptions</th></tr></thead><tbody>"#);
        for line in &self.lines {
            let exceptions = if line.exceptions.is_empty() {
                "None".to_string()
            } else {
                format!(
                    r#"<ul class="ex">{}</ul>"#,
                    line.exceptions.iter().map(|e| format!("<li>{}</li>", esc(e))).collect::<String>()
                )
            };
            let _ = write!(
                h,
                r#"<tr><td class="code">{}</td><td><b>{}:</b> {}</td><td class="{}">{}</td><td>{}</td></tr>"#,
                esc(code(line.criterion)),
                esc(short_title(line.criterion)),
                esc(&line.summary),
                if line.exceptions.is_empty() { "ok" } else { "bad" },
                esc(&line.result()),
                exceptions
            );
        }
        h.push_str("</tbody></table>");
        let _ = write!(
            h,
            r#"<div class="integrity {}"><span>Integrity: </span>{}</div>"#,
            if self.integrity_ok { "ok" } else { "bad" },
            esc(&self.integrity)
        );
        h.push_str(r#"<p class="note">Each population is in the pack as CSV and Parquet with every row; this report shows the first rows. Every file's SHA-256, the exact SQL and its parameters are in the appendix and in <code>manifest.json</code>, which <code>manifest.sig</code> signs (Ed25519). Check the pack with <code>tokentrail evidence verify PACK.zip --public-key KEY.pem</code>. All times are UTC.</p></section>"#);

        for (criterion, shown) in &self.sections {
            let _ = write!(
                h,
                r#"<section class="criterion"><h2>{}</h2><p class="note">{}</p>"#,
                esc(criterion.title()),
                esc(&self.period)
            );
            if *criterion == Criterion::Cc7_2 && !self.coverage.is_empty() {
                h.push_str(r#"<div class="population"><h3>Coverage of the expected streams</h3>"#);
                let headers: Vec<String> =
                    ["stream", "expected", "status", "events", "last_event", "note"].iter().map(|c| words(c)).collect();
                h.push_str(&html_table(&headers, &[true, false, false, false, false, false], &self.coverage));
                h.push_str("</div>");
            }
            for s in shown {
                let _ = write!(
                    h,
                    r#"<div class="population" id="{}"><h3>{} <span class="n">· {}</span></h3><p>{}</p>"#,
                    esc(s.name),
                    esc(s.title),
                    esc(&plural(s.count as f64, "row", "rows")),
                    esc(s.description)
                );
                match &s.chart {
                    Some(Chart::Bars(b)) => h.push_str(&svg_bars(b)),
                    Some(Chart::Timeline(t)) => h.push_str(&svg_timeline(t)),
                    None => {}
                }
                if !s.rows.is_empty() {
                    h.push_str(&html_table(&s.headers, &s.long, &s.rows));
                }
                let _ = write!(h, r#"<p class="more">{}</p></div>"#, esc(&more(s)));
            }
            h.push_str("</section>");
        }

        h.push_str(r#"<section class="appendix"><h2>Appendix: files, SQL, parameters and hashes</h2>"#);
        h.push_str(r#"<h3>The pack</h3><table class="kv"><tbody>"#);
        for (k, v) in &self.details {
            let _ = write!(h, r#"<tr><th>{}</th><td class="long">{}</td></tr>"#, esc(k), esc(v));
        }
        h.push_str("</tbody></table>");
        for a in &self.appendix {
            let _ = write!(
                h,
                "<h3>{}{}</h3>",
                if a.criterion.is_empty() { String::new() } else { format!("{} · ", esc(&a.criterion)) },
                esc(&a.title)
            );
            h.push_str(
                "<table><thead><tr><th>File</th><th>Rows</th><th>Bytes</th><th>SHA-256</th></tr></thead><tbody>",
            );
            for (path, rows, bytes, sha) in &a.files {
                let _ = write!(
                    h,
                    r#"<tr><td class="long">{}</td><td class="num">{}</td><td class="num">{}</td><td class="long"><code>{}</code></td></tr>"#,
                    esc(path),
                    rows.map(|r| number(r as f64)).unwrap_or_default(),
                    number(*bytes as f64),
                    esc(sha)
                );
            }
            h.push_str("</tbody></table>");
            if let Some(parameters) = &a.parameters {
                let _ = write!(h, r#"<p class="note">Parameters</p><pre class="sql">{}</pre>"#, esc(parameters));
            }
            if let Some(sql) = &a.sql {
                let _ = write!(h, r#"<p class="note">SQL</p><pre class="sql">{}</pre>"#, esc(sql));
            }
        }
        if !self.macros.is_empty() {
            h.push_str("<h3>Macros and views the SQL uses</h3>");
            for (name, definition) in &self.macros {
                let _ = write!(h, r#"<p class="note">{}</p><pre class="sql">{}</pre>"#, esc(name), esc(definition));
            }
        }
        h.push_str("</section></body></html>\n");
        h
    }
}

fn code(criterion: Criterion) -> &'static str {
    match criterion {
        Criterion::AccessLog => "Tool use",
        c => c.as_str(),
    }
}

/// A criterion in a few words, for page 1.
fn short_title(criterion: Criterion) -> &'static str {
    match criterion {
        Criterion::Cc6_1 => "Logical access",
        Criterion::Cc6_2 => "Access provisioning, removal and review",
        Criterion::Cc7_2 => "Monitoring",
        Criterion::Cc7_3 => "Response to findings",
        Criterion::AccessLog => "Use of TokenTrail (access log)",
    }
}

fn more(s: &Shown) -> String {
    let mut text = if s.count > s.rows.len() as u64 {
        let left = s.count - s.rows.len() as u64;
        if s.rows.is_empty() {
            format!("{} in {}.", plural(left as f64, "row", "rows"), s.file)
        } else {
            format!("{} more in {}.", plural(left as f64, "row", "rows"), s.file)
        }
    } else if s.count == 0 {
        format!("No rows in the period ({}).", s.file)
    } else {
        format!("All rows shown; also in {}.", s.file)
    };
    if !s.file_only.is_empty() && !s.rows.is_empty() {
        let _ = write!(text, " Only in the file: {}.", s.file_only.join(", "));
    }
    text
}

fn html_table(headers: &[String], long: &[bool], rows: &[Vec<String>]) -> String {
    // A table of many columns: smaller type (the criteria's pages print landscape).
    let mut h =
        String::from(if headers.len() > 12 { r#"<table class="wide"><thead><tr>"# } else { "<table><thead><tr>" });
    for header in headers {
        let _ = write!(h, "<th>{}</th>", esc(header));
    }
    h.push_str("</tr></thead><tbody>");
    for row in rows {
        h.push_str("<tr>");
        for (i, text) in row.iter().enumerate() {
            let class = if long.get(i).copied().unwrap_or(false) {
                r#" class="long""#
            } else if !text.is_empty() && text.parse::<f64>().is_ok() {
                r#" class="num""#
            } else {
                ""
            };
            let _ = write!(h, "<td{class}>{}</td>", esc(text));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    h
}

fn svg_bars(chart: &Bars) -> String {
    let max = chart.bars.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1.0);
    let (row, label_w, bar_w) = (20.0, 190.0, 380.0);
    let height = chart.bars.len() as f64 * row + 30.0;
    let width = label_w + bar_w + 150.0;
    let mut svg = format!(
        r#"<figure><svg role="img" aria-label="{t}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><text x="0" y="14" class="ct">{t} ({u})</text>"#,
        t = esc(&chart.title),
        u = esc(&chart.unit)
    );
    for (i, (label, value)) in chart.bars.iter().enumerate() {
        let y = 24.0 + i as f64 * row;
        let w = (value / max * bar_w).max(1.0);
        let _ = write!(
            svg,
            r#"<text x="{lx}" y="{ty}" text-anchor="end">{l}</text><rect x="{label_w}" y="{y}" width="{w:.1}" height="{h}" class="bar"/><text x="{vx:.1}" y="{ty}">{v} {u}</text>"#,
            lx = label_w - 6.0,
            ty = y + 12.0,
            l = esc(label),
            h = row - 5.0,
            vx = label_w + w + 4.0,
            v = number(*value),
            u = esc(if number(*value) == "1" {
                chart.unit.strip_suffix('s').unwrap_or(&chart.unit)
            } else {
                &chart.unit
            })
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn svg_timeline(chart: &Timeline) -> String {
    let columns = chart.rows.iter().map(|(_, c)| c.len()).max().unwrap_or(1).max(1) as f64;
    let (label_w, row) = (190.0, 16.0);
    let cell_w = (520.0 / columns).clamp(2.0, 24.0);
    let width = label_w + cell_w * columns + 20.0;
    let axis = 24.0 + chart.rows.len() as f64 * row;
    let height = axis + 36.0;
    let mut svg = format!(
        r#"<figure><svg role="img" aria-label="{t}" width="{width:.0}" height="{height}" viewBox="0 0 {width:.0} {height}" xmlns="http://www.w3.org/2000/svg"><text x="0" y="14" class="ct">{t}</text>"#,
        t = esc(&chart.title)
    );
    for (r, (stream, cells)) in chart.rows.iter().enumerate() {
        let y = 22.0 + r as f64 * row;
        let _ = write!(svg, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, label_w - 6.0, y + 11.0, esc(stream));
        for (c, share) in cells.iter().enumerate() {
            let fill = match share {
                None => "#ebebeb".to_string(),
                Some(s) if *s <= 0.0 => "#c62828".to_string(),
                Some(s) => format!(
                    "rgb({},{},{})",
                    (220.0 - 180.0 * s) as u8,
                    (230.0 - 150.0 * s) as u8,
                    (240.0 - 100.0 * s) as u8
                ),
            };
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{y}" width="{:.1}" height="{}" fill="{fill}"/>"#,
                label_w + c as f64 * cell_w,
                (cell_w - 0.6).max(0.5),
                row - 4.0
            );
        }
    }
    for (c, label) in &chart.ticks {
        let x = label_w + *c as f64 * cell_w;
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{a}" width="0.8" height="5" fill="#555"/><text x="{x:.1}" y="{ty}" class="axis">{l}</text>"##,
            a = axis - 2.0,
            ty = axis + 12.0,
            l = esc(label)
        );
    }
    let _ = write!(svg, r#"<text x="{label_w}" y="{}" class="axis">{}</text>"#, axis + 28.0, esc(&chart.legend));
    svg.push_str("</svg></figure>");
    svg
}

// ---------------------------------------------------------------------------------------
// PDF.

impl Report {
    fn pdf(&self) -> pdf::Document {
        let mut blocks = Vec::new();
        for banner in [&self.demo, &self.archived].into_iter().flatten() {
            blocks.push(Block::Banner(banner.clone()));
        }
        blocks.push(Block::Title("SOC 2 evidence report".into()));
        blocks.push(Block::Paragraph(self.period.clone()));
        blocks.push(Block::Table(Table {
            rows: self.scope.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect(),
            weights: vec![1.0, 3.2],
            marks: (0..self.scope.len()).map(|r| (r, 0, Tone::TEXT)).collect(),
            size: 8.5,
            ..Table::default()
        }));
        blocks.push(Block::Heading("Results by criterion".into()));
        let mut marks = Vec::new();
        let rows = self
            .lines
            .iter()
            .enumerate()
            .map(|(r, line)| {
                marks.push((r, 0, Tone::TEXT));
                marks.push((r, 2, if line.exceptions.is_empty() { Tone::GOOD } else { Tone::BAD }));
                let exceptions = if line.exceptions.is_empty() {
                    "None".to_string()
                } else {
                    line.exceptions.iter().map(|e| format!("• {e}")).collect::<Vec<_>>().join("\n")
                };
                vec![
                    code(line.criterion).to_string(),
                    format!("{}: {}", short_title(line.criterion), line.summary),
                    line.result(),
                    exceptions,
                ]
            })
            .collect();
        blocks.push(Block::Table(Table {
            headers: vec!["Criterion".into(), "What the pack shows".into(), "Result".into(), "Exceptions".into()],
            rows,
            weights: vec![1.3, 4.0, 1.5, 4.0],
            marks,
            size: 8.0,
        }));
        blocks.push(Block::Callout(
            if self.integrity_ok { Tone::GOOD } else { Tone::BAD },
            format!("Integrity: {}", self.integrity),
        ));
        blocks.push(Block::Note(
            "Each population is in the pack as CSV and Parquet with every row; this report shows the first rows. \
             Every file's SHA-256, the exact SQL and its parameters are in the appendix and in manifest.json, which \
             manifest.sig signs (Ed25519). Check the pack with: tokentrail evidence verify PACK.zip --public-key KEY.pem. \
             All times are UTC."
                .into(),
        ));

        for (criterion, shown) in &self.sections {
            blocks.push(Block::Page { landscape: true });
            blocks.push(Block::Heading(criterion.title().to_string()));
            if *criterion == Criterion::Cc7_2 && !self.coverage.is_empty() {
                blocks.push(Block::Subheading("Coverage of the expected streams".into()));
                blocks.push(Block::Table(Table {
                    headers: ["stream", "expected", "status", "events", "last_event", "note"]
                        .iter()
                        .map(|c| words(c))
                        .collect(),
                    rows: self.coverage.clone(),
                    ..Table::default()
                }));
            }
            for s in shown {
                blocks.push(Block::Subheading(format!("{} · {}", s.title, plural(s.count as f64, "row", "rows"))));
                blocks.push(Block::Paragraph(s.description.to_string()));
                match &s.chart {
                    Some(Chart::Bars(b)) => blocks.push(Block::Bars(b.clone())),
                    Some(Chart::Timeline(t)) => blocks.push(Block::Timeline(t.clone())),
                    None => {}
                }
                if !s.rows.is_empty() {
                    blocks.push(Block::Table(Table {
                        headers: s.headers.clone(),
                        rows: s.rows.clone(),
                        size: if s.headers.len() > 12 { 6.5 } else { 7.2 },
                        ..Table::default()
                    }));
                }
                blocks.push(Block::Note(more(s)));
            }
        }

        blocks.push(Block::Page { landscape: false });
        blocks.push(Block::Heading("Appendix: files, SQL, parameters and hashes".into()));
        blocks.push(Block::Table(Table {
            rows: self.details.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect(),
            weights: vec![1.0, 3.6],
            marks: (0..self.details.len()).map(|r| (r, 0, Tone::TEXT)).collect(),
            size: 7.5,
            ..Table::default()
        }));
        for a in &self.appendix {
            blocks.push(Block::Subheading(if a.criterion.is_empty() {
                a.title.clone()
            } else {
                format!("{} · {}", a.criterion, a.title)
            }));
            blocks.push(Block::Table(Table {
                headers: vec!["File".into(), "Rows".into(), "Bytes".into(), "SHA-256".into()],
                rows: a
                    .files
                    .iter()
                    .map(|(p, r, b, s)| {
                        vec![p.clone(), r.map(|r| number(r as f64)).unwrap_or_default(), number(*b as f64), s.clone()]
                    })
                    .collect(),
                weights: vec![3.6, 0.8, 1.0, 4.4],
                size: 6.5,
                ..Table::default()
            }));
            if let Some(parameters) = &a.parameters {
                blocks.push(Block::Note("Parameters".into()));
                blocks.push(Block::Code(parameters.clone()));
            }
            if let Some(sql) = &a.sql {
                blocks.push(Block::Note("SQL".into()));
                blocks.push(Block::Code(sql.clone()));
            }
        }
        if !self.macros.is_empty() {
            blocks.push(Block::Subheading("Macros and views the SQL uses".into()));
            for (name, definition) in &self.macros {
                blocks.push(Block::Note(name.clone()));
                blocks.push(Block::Code(definition.clone()));
            }
        }
        pdf::Document {
            title: format!("SOC 2 evidence report · {}", self.period),
            header: self.header.clone(),
            footer: self
                .demo
                .as_ref()
                .map(|_| "DEMO PACK: generated data and/or the development key; not audit evidence".into()),
            blocks,
        }
    }
}

// ---------------------------------------------------------------------------------------
// controls.csv.

/// One row per population and per detection rule: which criterion it stands for, what it
/// shows, where it is and what it found.
fn controls(
    manifest: &Manifest,
    shown: &[&Rows],
    rules: &[crate::rules::rule::Rule],
    report: &Report,
) -> Result<Vec<u8>> {
    let columns = ["criterion", "criterion_title", "control", "kind", "what_it_shows", "file", "rows", "result"];
    let mut out: Vec<[String; 8]> = Vec::new();
    let mut counts: Vec<Option<i64>> = Vec::new();
    let file_of = |name: &str| {
        manifest
            .files
            .iter()
            .find(|f| f.population.as_deref() == Some(name) && f.format == "csv")
            .map(|f| f.path.clone())
            .unwrap_or_default()
    };
    for rows in shown {
        let p = &rows.population;
        let result = report
            .lines
            .iter()
            .find(|l| l.criterion == p.criterion)
            .map(|l| format!("; {}: {}", code(p.criterion), l.result().to_lowercase()))
            .unwrap_or_default();
        out.push([
            p.criterion.as_str().to_string(),
            p.criterion.title().to_string(),
            p.name.to_string(),
            "population".to_string(),
            p.description.to_string(),
            file_of(p.name),
            String::new(),
            format!("{}{result}", plural(rows.count() as f64, "row", "rows")),
        ]);
        counts.push(Some(rows.count() as i64));
    }
    // Findings per rule and when each rule was last evaluated, from the populations.
    let mut findings: BTreeMap<String, i64> = BTreeMap::new();
    if let Some(rows) = shown.iter().find(|r| r.population.name == "findings")
        && let Some(ids) = rows.column("rule_id")
    {
        for id in ids {
            *findings.entry(id).or_default() += 1;
        }
    }
    // When each rule was in force in the period (rule versions), or last evaluated.
    let mut in_force: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut catalogue: Vec<(String, String, String)> =
        rules.iter().map(|r| (r.id.clone(), r.title.clone(), r.soc2.join(", "))).collect();
    if let Some(rows) = shown.iter().find(|r| r.population.name == "rules")
        && let Some(ids) = rows.column("rule_id")
    {
        let blank = || vec![String::new(); ids.len()];
        let from = rows.column("in_force_from");
        let until = rows.column("in_force_until").unwrap_or_else(blank);
        let last = rows.column("last_evaluated").unwrap_or_else(blank);
        let titles = rows.column("title").unwrap_or_else(blank);
        let soc2 = rows.column("soc2").unwrap_or_else(blank);
        for (i, id) in ids.iter().enumerate() {
            let when = match &from {
                Some(from) if until[i].is_empty() => format!("in force from {}", from[i]),
                Some(from) => format!("in force from {} until {}", from[i], until[i]),
                None if !last[i].is_empty() => format!("last evaluated {}", last[i]),
                None => "in force".to_string(),
            };
            in_force.entry(id.clone()).or_default().push(when);
            if rules.is_empty() && !catalogue.iter().any(|(c, ..)| c == id) {
                catalogue.push((id.clone(), titles[i].clone(), soc2[i].clone()));
            }
        }
    }
    let recorded = shown.iter().any(|r| r.population.name == "rules");
    let rules_file = file_of("rules");
    let findings_file = file_of("findings");
    for (id, title, soc2) in catalogue {
        let criteria: Vec<&str> = soc2.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
        let titles: Vec<&str> = criteria.iter().filter_map(|c| Criterion::parse(c)).map(Criterion::title).collect();
        let n = findings.get(&id).copied().unwrap_or(0);
        let mut result =
            if n == 0 { "no findings in the period".to_string() } else { plural(n as f64, "finding", "findings") };
        match in_force.get(&id) {
            Some(when) => {
                let _ = write!(result, "; {}", when.join("; "));
            }
            None if recorded => result.push_str("; not recorded as in force in the period"),
            None => {}
        }
        let what = if in_force.contains_key(&id) { format!("{title} (rule listed in {rules_file})") } else { title };
        out.push([
            if criteria.is_empty() { "CC7.2".to_string() } else { criteria.join(", ") },
            if titles.is_empty() { Criterion::Cc7_2.title().to_string() } else { titles.join("; ") },
            id,
            "detection rule".to_string(),
            what,
            findings_file.clone(),
            String::new(),
            result,
        ]);
        counts.push(Some(n));
    }
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, if *c == "rows" { DataType::Int64 } else { DataType::Utf8 }, true))
            .collect::<Vec<_>>(),
    ));
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| -> ArrayRef {
            if columns[i] == "rows" {
                Arc::new(Int64Array::from(counts.clone()))
            } else {
                Arc::new(StringArray::from(out.iter().map(|r| Some(r[i].as_str())).collect::<Vec<_>>()))
            }
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    csv_file::write(&schema, &[batch])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::pack::{self, PackRequest};
    use crate::evidence::populations;
    use crate::evidence::sign::{self, PackKey};
    use crate::evidence::{Budget, GeneratedBy, Period};
    use crate::store::{Store, StoreOptions};
    use arrow::array::{Array, AsArray};
    use std::io::Read;

    #[test]
    fn headers_are_words() {
        assert_eq!(words("minutes_to_respond"), "Minutes to respond");
        assert_eq!(words("client_ips"), "Client IPs");
        assert_eq!(words("record_sha256"), "Record SHA-256");
        assert_eq!(words("duration_ms"), "Duration (ms)");
        assert_eq!(words("principal_id"), "Principal");
    }

    #[test]
    fn times_read_as_dates() {
        assert_eq!(short_time("2025-03-03T01:00:07Z").as_deref(), Some("2025-03-03 01:00:07"));
        assert_eq!(short_time("2025-03-03T01:00:07.123Z").as_deref(), Some("2025-03-03 01:00:07"));
        assert_eq!(short_time("not a time"), None);
    }

    #[test]
    fn integrity_in_plain_words() {
        use crate::evidence::manifest::{AppendChainInfo, ChainInfo};
        let append = |verified: bool| AppendChainInfo {
            table: "finding_history".into(),
            links: 3,
            rows: 12,
            verified,
            result: if verified { "verified".into() } else { "link 2 does not match its rows".into() },
        };
        let mut chain = ChainInfo {
            head_batch: Some(9),
            head_digest: None,
            batches: 9,
            batches_checked: 9,
            verified: true,
            result: "chain verified".into(),
            failures: Vec::new(),
            unchained_batches: Vec::new(),
            append_chains: vec![append(true)],
        };
        assert_eq!(
            integrity(&chain),
            "All 9 ingest batches verified; no row was changed, added or removed since ingest. \
             The finding history (12 entries) is whole: no entry was changed or removed."
        );
        chain.verified = false;
        chain.failures = vec![crate::evidence::chain::BatchFailure { batch_id: 4, reason: "rows differ".into() }];
        chain.append_chains = vec![append(false)];
        let text = integrity(&chain);
        assert!(text.starts_with("Integrity check FAILED: 1 of 9 ingest batches no longer match"), "{text}");
        assert!(text.contains("The first is batch 4: rows differ."), "{text}");
        assert!(
            text.contains("Integrity check FAILED for the finding history: link 2 does not match its rows."),
            "{text}"
        );
    }

    const NAME: &str = "José Müller 李雷";

    /// A pack built from a store of generated traffic with its attack scenarios (ingested
    /// through the real pipeline, detection run, a finding acknowledged), read back: its
    /// manifest and each population from its Parquet file. The first principal with a
    /// name is renamed `NAME`; returns its id too.
    fn pack() -> (Manifest, Vec<Rows>, Vec<crate::rules::rule::Rule>, String) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("report.duckdb");
        let store = Store::open(&db, &StoreOptions::default()).unwrap();
        let start = DateTime::parse_from_rfc3339("2025-03-03T00:00:00Z").unwrap().with_timezone(&Utc);
        let end = start + Duration::days(2);
        let generator = crate::synth::Generator::new(crate::synth::Tenant::new(7), 7);
        let (events, _) = generator.history(start, end, crate::synth::Scenario::all());
        let mut writer = store.writer().unwrap();
        for (i, slice) in events.chunks(events.len().div_ceil(3)).enumerate() {
            let path = dir.path().join(format!("history-{i}.ndjson"));
            crate::synth::write_ndjson(std::fs::File::create(&path).unwrap(), slice).unwrap();
            let options = crate::ingest::PipelineOptions { workers: 2, ..Default::default() };
            crate::ingest::files::ingest_files(&store, &mut writer, &[path], options, indicatif::ProgressBar::hidden())
                .unwrap();
        }
        drop(writer);
        let (detector, _) = crate::rules::Detector::open(&store, &crate::rules::DetectionConfig::default()).unwrap();
        detector.evaluate_after_commit(&store).unwrap();
        let first: i64 =
            store.connection().unwrap().query_row("SELECT min(id) FROM findings", [], |r| r.get(0)).unwrap();
        crate::rules::findings::set_status(
            &store,
            first,
            crate::rules::findings::Status::Acknowledged,
            "Ann Responder",
            "",
        )
        .unwrap();
        let key = PackKey::load_or_create(&sign::key_path(&db, None), true).unwrap();
        let rules = crate::rules::rule::load(None).0;
        let request = PackRequest {
            criteria: Criterion::ALL.to_vec(),
            period: Period::new(start, end).unwrap(),
            generated_by: GeneratedBy {
                oid: Some("oid-test".into()),
                tid: Some("tid-test".into()),
                name: "Test Auditor".into(),
            },
            rules: &rules,
            budget: Budget::unlimited(),
            expected: Vec::new(),
            development_signer: false,
            removal_hours: 24,
            lake: None,
        };
        let mut zip_bytes = std::io::Cursor::new(Vec::new());
        let summary = pack::build(&store, &key, &request, &mut zip_bytes, &|_, _, _| {}).unwrap();
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes.into_inner())).unwrap();
        let mut all = Vec::new();
        let mut renamed = String::new();
        for file in summary.manifest.files.iter().filter(|f| f.format == "parquet") {
            let population = *populations::ALL
                .iter()
                .find(|p| {
                    Some(p.name) == file.population.as_deref()
                        && Some(p.criterion.as_str()) == file.criterion.as_deref()
                })
                .unwrap();
            let mut bytes = Vec::new();
            zip.by_name(&file.path).unwrap().read_to_end(&mut bytes).unwrap();
            let mut parquet_file = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut parquet_file, &bytes).unwrap();
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(parquet_file).unwrap();
            let schema = reader.schema().clone();
            let mut batches: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
            if population.name == "principals" {
                let batch = &batches[0];
                let names = batch.column_by_name("principal_name").unwrap().as_string::<i32>();
                let row = (0..names.len()).find(|i| !names.is_null(*i)).unwrap();
                renamed = batch.column_by_name("principal_id").unwrap().as_string::<i32>().value(row).to_string();
                let changed: StringArray = (0..names.len())
                    .map(|i| if i == row { Some(NAME) } else { (!names.is_null(i)).then(|| names.value(i)) })
                    .collect();
                let index = schema.index_of("principal_name").unwrap();
                let mut columns = batch.columns().to_vec();
                columns[index] = Arc::new(changed);
                batches[0] = RecordBatch::try_new(schema.clone(), columns).unwrap();
            }
            all.push(Rows { population, schema, batches });
        }
        assert!(!renamed.is_empty());
        (summary.manifest, all, rules, renamed)
    }

    fn file<'a>(files: &'a [ReportFile], path: &str) -> &'a [u8] {
        &files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("{path} missing")).bytes
    }

    #[test]
    fn report_files_of_a_real_pack() {
        let (manifest, rows, rules, renamed) = pack();
        let shown: Vec<&Rows> = rows.iter().collect();
        let mut json = json_of(&manifest);
        let plain = files_of(&manifest, &json, &shown, &rules).unwrap();
        json["demo"] = Json::String("Made by tokentrail demo from traffic it made up".into());
        let demo = files_of(&manifest, &json, &shown, &rules).unwrap();
        if let Ok(out) = std::env::var("TT_REPORT_OUT") {
            for (prefix, files) in [("", &plain), ("demo-", &demo)] {
                for f in files.iter() {
                    std::fs::write(format!("{out}/{prefix}{}", f.path), &f.bytes).unwrap();
                }
            }
        }
        let short = format!("({}…)", &renamed[..8]);

        // The PDF: page 1 is the summary.
        let pdf = file(&plain, "report.pdf");
        assert!(pdf.starts_with(b"%PDF-"));
        let pages = pdf::page_texts(pdf);
        let total = pages.len();
        assert!((4..=40).contains(&total), "{total} pages");
        let page1 = pages[0].replace('\n', " ");
        for expected in [
            "SOC 2 evidence report",
            "3 March 2025 00:00 to 5 March 2025 00:00 UTC",
            "Results by criterion",
            "Cosmos DB accounts",
            "rules in force",
            "All ",
            "ingest batches verified; no row was changed, added or removed since ingest.",
            &format!("page 1 of {total}"),
        ] {
            assert!(page1.contains(expected), "page 1 lacks {expected:?}:\n{}", pages[0]);
        }
        for criterion in ["CC6.1", "CC6.2-CC6.3", "CC7.2", "CC7.3-CC7.4", "Tool use"] {
            assert!(pages[0].lines().any(|l| l == criterion), "page 1 has no line for {criterion}");
        }
        assert!(!page1.contains("DEMO PACK"), "no demo banner on a real pack");
        assert!(!page1.contains("SELECT"), "no SQL on page 1");
        assert!(pages[total - 1].contains(&format!("page {total} of {total}")));
        // The name beside its id, with the characters the font lacks named, not dropped.
        let all = pages.join(" ").replace('\n', " ");
        assert!(all.contains(&format!("José Müller [U+674E][U+96F7] {short}")), "no name beside {renamed}");
        // Headers are words; SQL only in the appendix (the last pages).
        let first_sql = pages.iter().position(|p| p.contains("SELECT")).unwrap();
        let appendix = pages.iter().position(|p| p.contains("Appendix: files, SQL, parameters and hashes")).unwrap();
        let body = pages[..appendix].join(" ").replace('\n', " ");
        assert!(body.contains("Minutes to respond"));
        assert!(!body.contains("minutes_to_respond"), "code names before the appendix");
        assert!(first_sql >= appendix, "SQL on page {first_sql}, appendix from page {appendix}");
        assert!(all.contains("more in CC7.2/completeness_") || all.contains("rows in CC7.2/completeness_"));

        let demo_pdf = pdf::page_texts(file(&demo, "report.pdf"));
        let demo_page1 = demo_pdf[0].replace('\n', " ");
        assert!(
            demo_page1.contains(
                "DEMO PACK: do not use it in an audit. Made by tokentrail demo from traffic it made up. It holds generated data and/or is signed by the development key."
            ),
            "{demo_page1}"
        );
        assert!(demo_pdf.iter().all(|p| p.contains("DEMO PACK")), "the demo footer is on every page");

        // The HTML: the same summary, the banner only on the demo pack, names beside ids,
        // headers in words, SQL after the appendix heading.
        let html = String::from_utf8(file(&plain, "report.html").to_vec()).unwrap();
        let demo_html = String::from_utf8(file(&demo, "report.html").to_vec()).unwrap();
        assert!(!html.contains(r#"class="banner""#));
        assert!(demo_html.contains(r#"<div class="banner" role="alert">DEMO PACK"#));
        assert!(html.contains(&format!("{NAME} {short}")));
        assert!(html.contains("ingest batches verified; no row was changed, added or removed since ingest."));
        let headers: Vec<&str> = html.split("<th>").skip(1).map(|h| &h[..h.find("</th>").unwrap()]).collect();
        assert!(headers.contains(&"Minutes to respond"));
        assert!(headers.iter().all(|h| !h.contains('_')), "{headers:?}");
        let appendix = html.find("Appendix: files, SQL").unwrap();
        assert!(html.find("SELECT").unwrap() > appendix);
        assert!(html.contains("word-break: normal; overflow-wrap: normal; hyphens: none"));

        // controls.csv: one row per population and per rule.
        let csv = file(&plain, "controls.csv");
        let mut reader = csv::Reader::from_reader(csv);
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(
            header,
            ["criterion", "criterion_title", "control", "kind", "what_it_shows", "file", "rows", "result"]
        );
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        let populations = records.iter().filter(|r| &r[3] == "population").count();
        let rule_rows = records.iter().filter(|r| &r[3] == "detection rule").count();
        assert_eq!(populations, rows.len());
        assert_eq!(rule_rows, rules.len());
        assert_eq!(records.len(), rows.len() + rules.len());
        let principals = records.iter().find(|r| &r[2] == "principals").unwrap();
        assert_eq!(&principals[0], "CC6.2-CC6.3");
        assert!(principals[5].starts_with("CC6.2-CC6.3/principals_"));
        assert_eq!(
            principals[6].parse::<u64>().unwrap(),
            rows.iter().find(|r| r.population.name == "principals").unwrap().count()
        );
        let findings: u64 =
            records.iter().filter(|r| &r[3] == "detection rule").map(|r| r[6].parse::<u64>().unwrap()).sum();
        assert_eq!(findings, rows.iter().find(|r| r.population.name == "findings").unwrap().count());
    }
}
