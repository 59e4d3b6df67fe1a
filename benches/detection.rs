//! Detection quality benchmark (issue 26): for every rule of queries/, the false findings it
//! raises on benign traffic, per 1,000 benign principal-days, and whether the attack
//! scenarios it is meant for are caught. Two tenants (seeds 7 and 42), each a window of
//! generated traffic with every scenario once, written as NDJSON, ingested through the real
//! pipeline into a fresh DuckDB file and evaluated by the real engine; a finding that no
//! scenario's ground truth explains is a false finding. Writes its section of BENCHMARKS.md.
//!
//! Targets: under 1 false finding per 1,000 benign principal-days over all rules, and every
//! scenario raising the rules meant for it. Missing a target is a result, written down; only
//! a failed ingest or evaluation stops the benchmark.
//!
//! `cargo bench --bench detection`. TOKENTRAIL_DETECTION_DAYS changes the 45-day window (7 for
//! a quick trial), TOKENTRAIL_DETECTION_PROFILE=tidy|realistic the kind of tenant (realistic).

mod common;

use anyhow::{Context, Result, bail, ensure};
use chrono::{DateTime, Duration, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokentrail::ingest::PipelineOptions;
use tokentrail::ingest::files::ingest_files;
use tokentrail::rules::{DetectionConfig, Detector};
use tokentrail::store::{Store, StoreOptions};
use tokentrail::synth::{Event, Generator, GroundTruth, Profile, Scenario, THREAT_INTEL_IPS, Tenant};

const SEEDS: [u64; 2] = [7, 42];
const DEFAULT_DAYS: i64 = 45;
/// The window ends at a fixed Monday 00:00 UTC, so every run judges the same traffic.
const END: &str = "2026-11-02T00:00:00Z";
/// False findings listed by name in the report; the counts cover all of them.
const LISTED: usize = 40;
/// Target: false findings per 1,000 benign principal-days, all rules together.
const TARGET_PER_THOUSAND: f64 = 1.0;

/// What a run covers, from the environment.
struct Settings {
    days: i64,
    profile: Profile,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let days = match std::env::var("TOKENTRAIL_DETECTION_DAYS") {
            Ok(text) => text.trim().parse().with_context(|| format!("TOKENTRAIL_DETECTION_DAYS={text:?}"))?,
            Err(_) => DEFAULT_DAYS,
        };
        ensure!(days >= 4, "TOKENTRAIL_DETECTION_DAYS must be at least 4 (the scenarios need room), not {days}");
        let profile = match std::env::var("TOKENTRAIL_DETECTION_PROFILE") {
            Ok(text) => text.parse::<Profile>().map_err(anyhow::Error::msg)?,
            Err(_) => Profile::Realistic,
        };
        Ok(Settings { days, profile })
    }

    fn window(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let end = DateTime::parse_from_rfc3339(END).expect("END is RFC 3339").with_timezone(&Utc);
        (end - Duration::days(self.days), end)
    }

    /// The command that reproduces this run.
    fn command(&self) -> String {
        let mut env = String::new();
        if self.days != DEFAULT_DAYS {
            env.push_str(&format!("TOKENTRAIL_DETECTION_DAYS={} ", self.days));
        }
        if self.profile != Profile::Realistic {
            env.push_str(&format!("TOKENTRAIL_DETECTION_PROFILE={} ", self.profile));
        }
        format!("{env}cargo bench --bench detection")
    }
}

/// One finding as stored, with the name of its principal where the data has one.
struct Finding {
    rule: String,
    principal_id: Option<String>,
    principal_name: Option<String>,
    entity: String,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

impl Finding {
    fn explained_by(&self, truth: &GroundTruth) -> bool {
        truth.explains(&self.rule, self.principal_id.as_deref(), &self.entity, self.first, self.last)
    }
}

/// What one seed's tenant gave.
struct SeedRun {
    seed: u64,
    principals: i64,
    benign_principals: i64,
    principal_days: i64,
    findings: Vec<Finding>,
    truths: Vec<GroundTruth>,
}

impl SeedRun {
    fn false_findings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !self.truths.iter().any(|t| f.explained_by(t)))
    }

    fn raised(&self, truth: &GroundTruth, rule: &str) -> bool {
        self.findings.iter().any(|f| f.rule == rule && f.explained_by(truth))
    }
}

/// Prints how long a phase took, for following a long run.
fn phase<T>(seed: u64, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let value = f().with_context(|| format!("seed {seed}: {name} failed"))?;
    println!("seed {seed}: {name} in {:.1} s", started.elapsed().as_secs_f64());
    Ok(value)
}

/// Writes the records of `events` as NDJSON, one record a line, as Azure Monitor archives them.
fn write_ndjson(path: &Path, events: &[Event]) -> Result<()> {
    tokentrail::synth::write_ndjson(std::fs::File::create(path)?, events)?;
    Ok(())
}

/// A threat intelligence folder listing the generator's "known bad" addresses.
fn threat_intel_dir(dir: &Path) -> Result<PathBuf> {
    let intel = dir.join("threat-intel");
    std::fs::create_dir_all(&intel)?;
    let list: String = THREAT_INTEL_IPS.iter().map(|ip| format!("{ip}\n")).collect();
    std::fs::write(intel.join("tor-exits.txt"), list)?;
    Ok(intel)
}

/// Generates, ingests and evaluates one seed's tenant; returns its findings and ground truth.
fn run_seed(settings: &Settings, seed: u64) -> Result<SeedRun> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let (from, to) = settings.window();
    let generator = Generator::new(Tenant::new(seed), seed).with_profile(settings.profile);
    let (events, truths) = phase(seed, "generating", || Ok(generator.history(from, to, Scenario::all())))?;
    println!("seed {seed}: {} events, {} scenarios", events.len(), truths.len());
    let path = dir.path().join("history.ndjson");
    phase(seed, "writing NDJSON", || write_ndjson(&path, &events))?;
    drop(events); // the records are on disk now; the ingest needs the memory more

    let store = Store::open(&dir.path().join("detection.duckdb"), &StoreOptions::default())?;
    phase(seed, "ingesting", || {
        let mut writer = store.writer()?;
        let progress = indicatif::ProgressBar::hidden();
        let report =
            ingest_files(&store, &mut writer, std::slice::from_ref(&path), PipelineOptions::default(), progress)?;
        if !report.failed.is_empty() {
            bail!("files failed: {:?}", report.failed);
        }
        Ok(())
    })?;
    phase(seed, "evaluating the rules", || {
        let config = DetectionConfig { threat_intel_dir: Some(threat_intel_dir(dir.path())?), ..Default::default() };
        let (detector, problems) = Detector::open(&store, &config)?;
        ensure!(problems.is_empty(), "rules that did not load: {problems:?}");
        let evaluation = detector.evaluate_after_commit(&store)?;
        ensure!(evaluation.failures.is_empty(), "rules that failed: {:?}", evaluation.failures);
        Ok(())
    })?;

    let conn = store.connection()?;
    let principals: i64 = conn.query_row("SELECT count(*) FROM principals", [], |r| r.get(0))?;
    let findings = read_findings(&conn)?;
    let scenario_principals: BTreeSet<&str> = truths.iter().filter_map(|t| t.principal_id.as_deref()).collect();
    let benign_principals = principals - scenario_principals.len() as i64;
    Ok(SeedRun {
        seed,
        principals,
        benign_principals,
        principal_days: benign_principals * settings.days,
        findings,
        truths,
    })
}

fn read_findings(conn: &duckdb::Connection) -> Result<Vec<Finding>> {
    let mut stmt = conn.prepare(
        "SELECT f.rule_id, f.principal_id, p.principal_name, f.entity, epoch_us(f.first_seen), epoch_us(f.last_seen)
         FROM findings f LEFT JOIN principals p USING (principal_id)
         WHERE f.status <> 'withdrawn'
         ORDER BY f.first_seen, f.rule_id",
    )?;
    let time = |us: i64| DateTime::from_timestamp_micros(us).expect("a finding's time is in range");
    let rows = stmt.query_map([], |r| {
        Ok(Finding {
            rule: r.get(0)?,
            principal_id: r.get(1)?,
            principal_name: r.get(2)?,
            entity: r.get(3)?,
            first: time(r.get(4)?),
            last: time(r.get(5)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One rule's line of the table.
struct RuleRow {
    rule: String,
    severity: String,
    /// False findings per seed, in the order of [`SEEDS`].
    false_findings: Vec<usize>,
    /// Scenarios (over both seeds) that have this rule as a primary one, and how many raised it.
    caught: usize,
    meant: usize,
    /// Per seed: whether some scenario naming this rule as a secondary one raised it (None:
    /// no scenario names it so).
    secondary: Vec<Option<bool>>,
}

/// A rule a scenario should have raised and did not.
struct Miss {
    seed: u64,
    scenario: String,
    rule: String,
    description: String,
    /// A secondary rule that none of the scenarios naming it raised.
    secondary: bool,
}

fn tally(runs: &[SeedRun], severities: &BTreeMap<String, String>) -> (Vec<RuleRow>, Vec<Miss>) {
    let mut misses = Vec::new();
    let rows = tokentrail::rules::rule::BUILT_IN
        .iter()
        .map(|&(rule, _)| {
            let severity = severities.get(rule).cloned().unwrap_or_else(|| "?".into());
            rule_row(rule, severity, runs, &mut misses)
        })
        .collect();
    (rows, misses)
}

/// One rule over both seeds; what its scenarios failed to raise goes to `misses`.
fn rule_row(rule: &str, severity: String, runs: &[SeedRun], misses: &mut Vec<Miss>) -> RuleRow {
    let mut row = RuleRow {
        rule: rule.to_string(),
        severity,
        false_findings: Vec::new(),
        caught: 0,
        meant: 0,
        secondary: Vec::new(),
    };
    for run in runs {
        row.false_findings.push(run.false_findings().filter(|f| f.rule == rule).count());
        for truth in run.truths.iter().filter(|t| scenario_of(t).rules().0.contains(&rule)) {
            row.meant += 1;
            if run.raised(truth, rule) {
                row.caught += 1;
            } else {
                let description = truth.description.clone();
                let scenario = truth.scenario.clone();
                misses.push(Miss { seed: run.seed, scenario, rule: rule.into(), description, secondary: false });
            }
        }
        row.secondary.push(secondary_raised(run, rule, misses));
    }
    row
}

/// Whether one of the scenarios naming `rule` as a secondary one raised it (None: none names
/// it so). Only one needs to: a user sprayed from a country earlier has no new country when
/// travelling there later.
fn secondary_raised(run: &SeedRun, rule: &str, misses: &mut Vec<Miss>) -> Option<bool> {
    let naming: Vec<&GroundTruth> = run.truths.iter().filter(|t| scenario_of(t).rules().1.contains(&rule)).collect();
    if naming.is_empty() {
        return None;
    }
    let raised = naming.iter().any(|t| run.raised(t, rule));
    if !raised {
        let names: Vec<&str> = naming.iter().map(|t| t.scenario.as_str()).collect();
        misses.push(Miss {
            seed: run.seed,
            scenario: names.join(" or "),
            rule: rule.to_string(),
            description: "none of the scenarios naming it as a secondary rule raised it".into(),
            secondary: true,
        });
    }
    Some(raised)
}

fn scenario_of(truth: &GroundTruth) -> Scenario {
    Scenario::parse(&truth.scenario).unwrap_or_else(|e| panic!("ground truth of an unknown scenario: {e}"))
}

/// Per 1,000 principal-days.
fn rate(count: usize, principal_days: i64) -> f64 {
    if principal_days > 0 { count as f64 * 1000.0 / principal_days as f64 } else { f64::NAN }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

fn caught_cell(row: &RuleRow) -> String {
    let mut cell = if row.meant > 0 { format!("{}/{}", row.caught, row.meant) } else { "–".to_string() };
    // Secondary rules need only one of their scenarios per seed to raise them.
    if row.secondary.iter().any(Option::is_some) {
        let raised = row.secondary.iter().filter(|s| **s == Some(true)).count();
        let named = row.secondary.iter().filter(|s| s.is_some()).count();
        cell.push_str(&format!(" (also raised in {raised}/{named} seeds by a scenario naming it)"));
    }
    cell
}

fn report(settings: &Settings, runs: &[SeedRun], rows: &[RuleRow], misses: &[Miss], elapsed: f64) -> String {
    let principal_days: i64 = runs.iter().map(|r| r.principal_days).sum();
    let seeds: Vec<String> = runs.iter().map(|r| r.seed.to_string()).collect();
    let principals: Vec<String> = runs
        .iter()
        .map(|r| format!("{} principals ({} benign) for seed {}", r.principals, r.benign_principals, r.seed))
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "`{command}` on this machine ({cores} cores), {elapsed:.0} s: for each of seeds {seeds}, {days} days of \
         generated traffic of the {profile} profile ending {END}, with every one of the {scenarios} attack \
         scenarios once in the last three quarters of the window, written as NDJSON, ingested into a fresh \
         DuckDB file and evaluated by every rule, with the generator's threat intelligence list. \
         {principals}: **{principal_days} benign principal-days** in all. A finding is false when no scenario's \
         ground truth explains it (`GroundTruth::explains`: the scenario's principal, or its address or account, \
         from two hours before to a day after it). Caught: the scenarios that have the rule as a primary one \
         and raised it, both seeds.\n",
        command = settings.command(),
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
        seeds = seeds.join(" and "),
        days = settings.days,
        profile = settings.profile,
        scenarios = Scenario::all().len(),
        principals = principals.join(", "),
    );
    let _ = writeln!(
        out,
        "| rule | severity | false findings seed {} | seed {} | per 1,000 principal-days | scenarios meant for it caught |",
        SEEDS[0], SEEDS[1]
    );
    out.push_str("|---|---|---|---|---|---|\n");
    for row in rows {
        let total: usize = row.false_findings.iter().sum();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {:.2} | {} |",
            row.rule,
            row.severity,
            row.false_findings[0],
            row.false_findings[1],
            rate(total, principal_days),
            caught_cell(row)
        );
    }
    let per_seed: Vec<usize> = (0..runs.len()).map(|i| rows.iter().map(|r| r.false_findings[i]).sum()).collect();
    let total_false: usize = per_seed.iter().sum();
    let (caught, meant) = rows.iter().fold((0, 0), |(c, m), r| (c + r.caught, m + r.meant));
    let per_thousand = rate(total_false, principal_days);
    let _ = writeln!(
        out,
        "| **total** | | **{}** | **{}** | **{per_thousand:.2}** | **{caught}/{meant}** |\n",
        per_seed[0], per_seed[1]
    );
    let _ = writeln!(
        out,
        "- False findings: {per_thousand:.2} per 1,000 benign principal-days; target under {TARGET_PER_THOUSAND:.0}: {}.",
        met(per_thousand < TARGET_PER_THOUSAND)
    );
    let unraised = misses.iter().filter(|m| m.secondary).count();
    let _ = writeln!(
        out,
        "- Scenarios caught by the rules meant for them: {caught} of {meant} (primary rules), and {unraised} \
         secondary rule(s) that none of the scenarios naming it raised; target every one: {}.\n",
        met(misses.is_empty())
    );
    out.push_str(&false_findings_list(runs, total_false));
    out.push_str(&misses_list(misses));
    out
}

fn false_findings_list(runs: &[SeedRun], total: usize) -> String {
    if total == 0 {
        return "No false findings.\n\n".into();
    }
    let shown = total.min(LISTED);
    let mut out = format!("False findings ({shown} of {total}, by seed and time):\n\n");
    out.push_str("| seed | rule | principal | entity | first seen |\n|---|---|---|---|---|\n");
    let listed = runs.iter().flat_map(|run| run.false_findings().map(move |f| (run.seed, f))).take(LISTED);
    for (seed, f) in listed {
        let who = f.principal_name.as_deref().or(f.principal_id.as_deref()).unwrap_or("–");
        let entity = if f.entity.is_empty() { "–" } else { &f.entity };
        let _ = writeln!(out, "| {seed} | `{}` | {who} | {entity} | {} |", f.rule, f.first.format("%Y-%m-%d %H:%M:%S"));
    }
    out.push('\n');
    out
}

fn misses_list(misses: &[Miss]) -> String {
    if misses.is_empty() {
        return "No scenario missed.\n\n".into();
    }
    let mut out = format!(
        "Scenarios missed ({}):\n\n| seed | scenario | rule | description |\n|---|---|---|---|\n",
        misses.len()
    );
    for m in misses {
        let _ = writeln!(out, "| {} | {} | `{}` | {} |", m.seed, m.scenario, m.rule, m.description);
    }
    out.push('\n');
    out
}

fn main() -> Result<()> {
    let started = Instant::now();
    let settings = Settings::from_env()?;
    println!("detection quality: seeds {SEEDS:?}, {} days ending {END}, profile {}", settings.days, settings.profile);
    let runs: Vec<SeedRun> = SEEDS.iter().map(|&seed| run_seed(&settings, seed)).collect::<Result<_>>()?;
    // Severities as the engine loads the built-in rules.
    let severities: BTreeMap<String, String> =
        tokentrail::rules::rule::load(None).0.into_iter().map(|rule| (rule.id, rule.severity.to_string())).collect();
    let (rows, misses) = tally(&runs, &severities);
    let elapsed = started.elapsed().as_secs_f64();
    let body = report(&settings, &runs, &rows, &misses, elapsed);
    println!("\n{body}");
    let section = format!(
        "<!-- bench:detection -->\n## Detection quality\n\n{body}Generated {}.\n<!-- /bench:detection -->\n",
        Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    common::write_section("detection", &section);
    println!("done in {elapsed:.0} s");
    Ok(())
}
