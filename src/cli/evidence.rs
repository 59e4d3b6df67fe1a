//! `tokentrail evidence` (make, verify, public key) and `tokentrail verify` (the integrity
//! chains): what the commands print and return.

use crate::evidence::pack::{self, PackRequest};
use crate::evidence::sign::{self, PackKey};
use crate::evidence::{Criterion, GeneratedBy, Period, chain};
use crate::progress::bar;
use crate::rules::DetectionConfig;
use crate::store::{Store, StoreOptions};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct PackArgs {
    pub db: PathBuf,
    pub criteria: String,
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
    pub out: PathBuf,
    pub signing_key: Option<PathBuf>,
    pub generated_by: Option<String>,
    pub expected: Vec<String>,
    pub removal_hours: u32,
    pub lake: Option<String>,
}

/// `tokentrail evidence --db --criteria --from --to --out`.
pub fn make_pack(mut args: PackArgs) -> Result<ExitCode> {
    let criteria = Criterion::parse_list(&args.criteria)?;
    let period = Period::new(args.from, args.to)?;
    if args.out.is_dir() {
        args.out = args.out.join(pack::file_name(&criteria, &period));
    }
    if !args.db.exists() {
        anyhow::bail!("no database at {}: run `tokentrail ingest --db {}` first", args.db.display(), args.db.display());
    }
    let store = Store::open(&args.db, &StoreOptions::default())?;
    let lake = match &args.lake {
        Some(text) => {
            let cache = args.db.with_extension("lake-cache");
            Some(crate::lake::view::Reader::new(super::archive::open_location(text)?, &cache)?)
        }
        None => None,
    };
    let key_path = sign::key_path(&args.db, args.signing_key.as_deref());
    let key = PackKey::load_or_create(&key_path, true)?;
    if key.created {
        eprintln!(
            "created signing key {} (mode 0600; keep it safe, and keep it: packs are verified with its public key)",
            key_path.display()
        );
    }
    let (rules, problems) = crate::rules::rule::load(DetectionConfig::from_env().rules_dir.as_deref());
    for problem in &problems {
        eprintln!("warning: {problem}");
    }
    let mut generated_by = GeneratedBy::local_user();
    if let Some(name) = args.generated_by {
        generated_by.name = name;
    }
    let request = PackRequest {
        criteria,
        period,
        generated_by: generated_by.clone(),
        rules: &rules,
        budget: crate::evidence::Budget::unlimited(),
        expected: args.expected,
        development_signer: false,
        removal_hours: args.removal_hours,
        lake: lake.as_ref(),
    };
    let progress = bar("{spinner} [{bar:30}] {pos}/{len} {wide_msg}")?;
    let started = std::time::Instant::now();
    let summary = pack::build_file(&store, &key, &request, &args.out, &|done, total, what| {
        progress.set_length(total);
        progress.set_position(done);
        progress.set_message(what.to_string());
    })?;
    progress.finish_and_clear();
    let manifest = &summary.manifest;
    let rows: u64 = manifest.files.iter().filter(|f| f.format == "csv").filter_map(|f| f.rows).sum();
    record_export(&store, &generated_by, &args.out, manifest, &summary.manifest_sha256, rows, started.elapsed())?;
    println!(
        "wrote {} ({} files, {rows} rows, period {})",
        args.out.display(),
        manifest.files.len() + 3,
        period.describe()
    );
    for file in &manifest.files {
        println!(
            "  {:<60} {:>10} rows  {}",
            file.path,
            file.rows.map(|r| r.to_string()).unwrap_or_default(),
            &file.sha256[..16]
        );
    }
    println!("manifest sha256 {}", summary.manifest_sha256);
    println!("signed with {} (Ed25519, key id {})", key_path.display(), key.key_id());
    println!("{}", manifest.integrity_chain.result);
    println!(
        "check it with: tokentrail evidence verify {} --public-key <(tokentrail evidence public-key --db {})",
        args.out.display(),
        args.db.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Every export is recorded in the tool's own access log, the command line's too.
fn record_export(
    store: &Store,
    by: &GeneratedBy,
    out: &Path,
    manifest: &crate::evidence::manifest::Manifest,
    manifest_sha256: &str,
    rows: u64,
    elapsed: std::time::Duration,
) -> Result<()> {
    let parameters = serde_json::json!({
        "criteria": manifest.criteria, "from": manifest.period.from, "to": manifest.period.to,
        "manifest_sha256": manifest_sha256,
    });
    crate::store::append::append(store, "access_log", |conn| {
        conn.execute(
            include_str!("sql/access_log_export.sql"),
            duckdb::params![
                by.name,
                out.display().to_string(),
                parameters.to_string(),
                rows as i64,
                elapsed.as_secs_f64() * 1000.0
            ],
        )?;
        Ok(())
    })
    .context("recording the export in access_log")
}

/// `tokentrail evidence public-key --db PATH`.
pub fn public_key(db: &Path, signing_key: Option<&Path>) -> Result<ExitCode> {
    let path = sign::key_path(db, signing_key);
    let key = PackKey::load_or_create(&path, true)?;
    if key.created {
        eprintln!("created signing key {} (mode 0600; keep it safe)", path.display());
    }
    print!("{}", key.public_pem());
    Ok(ExitCode::SUCCESS)
}

/// `tokentrail evidence verify PACK.zip [--public-key KEY.pem | --trust-embedded-key]`.
pub fn verify_pack(path: &Path, public_key: Option<&Path>, trust_embedded_key: bool) -> Result<ExitCode> {
    let key = match public_key {
        Some(file) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            Some(sign::parse_public_key(&text).with_context(|| file.display().to_string())?)
        }
        None => None,
    };
    let result = pack::verify(path, key.as_ref())?;
    if let Some(manifest) = &result.manifest {
        println!(
            "pack: {} to {} ({}), generated {} by {}",
            manifest.period.from,
            manifest.period.to,
            manifest.criteria.join(", "),
            manifest.generated_at,
            manifest.generated_by.name
        );
        println!("integrity chain at generation: {}", manifest.integrity_chain.result);
        if let Some(batch) = manifest.as_of.batch_id {
            println!(
                "populations as of ingest batch {batch} (committed {})",
                manifest.as_of.committed_at.as_deref().unwrap_or("?")
            );
        }
        if !manifest.coverage.is_empty() {
            let mut counts = std::collections::BTreeMap::<&str, usize>::new();
            for row in &manifest.coverage {
                *counts.entry(row.get("status").and_then(|s| s.as_str()).unwrap_or("unknown")).or_default() += 1;
            }
            let said: Vec<String> = counts.iter().map(|(status, n)| format!("{n} {status}")).collect();
            println!("coverage: {} streams: {}", manifest.coverage.len(), said.join(", "));
        }
        if let Some(demo) = &manifest.demo {
            println!("{demo}");
        }
    }
    for line in &result.passed {
        println!("ok: {line}");
    }
    // A pack is only as good as the key that signed it: one edited and signed again with the
    // forger's key carries the forger's key. And a pack that reports a broken chain proves
    // that the data was changed, not that it is whole.
    let mut refusals = Vec::new();
    if key.is_none() && !trust_embedded_key {
        refusals.push(
            "no public key pinned: give --public-key with the service's key (tokentrail evidence public-key, or \
             GET /api/evidence/public-key), or --trust-embedded-key to accept the key inside the pack, which whoever \
             made the pack chose"
                .to_string(),
        );
    }
    if let Some(manifest) = result.manifest.as_ref().filter(|m| !m.integrity_chain.verified) {
        refusals.push(format!(
            "the integrity chain did not verify when the pack was made: {}",
            manifest.integrity_chain.result
        ));
    }
    if result.ok() && refusals.is_empty() {
        println!("VERIFIED: {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &result.problems {
        println!("DIFFERS: {problem}");
    }
    for refusal in &refusals {
        println!("NOT TRUSTED: {refusal}");
    }
    println!("NOT VERIFIED: {} ({} problem(s))", path.display(), result.problems.len() + refusals.len());
    Ok(ExitCode::FAILURE)
}

pub struct SampleArgs {
    pub pack: PathBuf,
    pub size: usize,
    pub seed: String,
    pub population: Option<String>,
    pub db: Option<PathBuf>,
    pub out: PathBuf,
    pub public_key: Option<PathBuf>,
    pub trust_embedded_key: bool,
}

/// `tokentrail evidence sample PACK.zip --size N --seed S --out DIR`.
pub fn sample_pack(args: SampleArgs) -> Result<ExitCode> {
    let key = match &args.public_key {
        Some(file) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("--public-key {}", file.display()))?;
            Some(sign::parse_public_key(&text).with_context(|| format!("--public-key {}", file.display()))?)
        }
        None => None,
    };
    let request = crate::evidence::sample::SampleRequest {
        pack: &args.pack,
        public_key: key.as_ref(),
        trust_embedded_key: args.trust_embedded_key,
        size: args.size,
        seed: &args.seed,
        population: args.population.as_deref(),
        db: args.db.as_deref(),
        out: &args.out,
    };
    let progress = bar("{spinner} [{bar:30}] {pos}/{len} items {wide_msg}")?;
    let summary = crate::evidence::sample::sample(&request, &|done, total, what| {
        progress.set_length(total);
        progress.set_position(done);
        progress.set_message(what.to_string());
    })?;
    progress.finish_and_clear();
    println!("VERIFIED: {} (sampled only after it verified)", args.pack.display());
    for (population, rows, drawn) in &summary.populations {
        println!("  {population}: {drawn} of {rows} rows drawn");
    }
    println!("draw: {}", crate::evidence::sample::METHOD.replace("<seed>", &args.seed));
    println!(
        "raw records: {} found and matching record_sha256, {} found and different, {} not found (see note)",
        summary.matched, summary.differed, summary.not_found
    );
    println!("wrote {} items to {} (sample.csv, sample.json, items/)", summary.items, args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// `tokentrail verify --db PATH [--lake LOCATION]`.
pub fn verify_chain(db: &Path, lake: Option<&str>) -> Result<ExitCode> {
    if !db.exists() {
        anyhow::bail!("no database at {}", db.display());
    }
    let store = Store::open(db, &StoreOptions::default())?;
    let lake = lake.map(super::archive::open_lake).transpose()?;
    let progress = bar("{spinner} [{bar:30}] {pos}/{len} batches {wide_msg}")?;
    let report = chain::verify_unless(
        &store,
        None,
        lake.as_ref(),
        &|done, total| {
            progress.set_length(total);
            progress.set_position(done);
        },
        &|| false,
    )?;
    progress.finish_and_clear();
    println!("{}", report.summary());
    for failure in &report.failures {
        println!("  batch {}: {}", failure.batch_id, failure.reason);
    }
    // The service's own audit trail (and later other append-only tables).
    let appended = crate::store::append::verify(&store)?;
    for table in &appended {
        println!("{}", table.summary());
        for (link, reason) in &table.failures {
            match link {
                0 => println!("  {reason}"),
                n => println!("  link {n}: {reason}"),
            }
        }
    }
    // Archived links and findings' snapshots (their rows stay in the database too).
    let journal = match &lake {
        Some(lake) => Some(crate::lake::journal::check(&store, lake)?),
        None => None,
    };
    if let Some(j) = &journal {
        match j.failures.is_empty() {
            true => println!(
                "lake journal verified: {} archived link(s) over {} rows recomputed from the lake, {} findings snapshot(s) match",
                j.links, j.rows, j.snapshots
            ),
            false => println!("lake journal BROKEN:"),
        }
        for failure in &j.failures {
            println!("  {failure}");
        }
    }
    let verified =
        report.verified() && appended.iter().all(|t| t.verified()) && journal.is_none_or(|j| j.failures.is_empty());
    Ok(if verified { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
