//! `tokentrail demo`: TokenTrail on generated traffic.
//!
//! The demo backfills history on first start, then streams generated events in
//! real time (scenarios included) into the database, and serves HTTP on loopback.
//! Its position is the generator's checkpoint, so a second start resumes where the
//! first stopped, and Ctrl-C stops it between commits.

use crate::http::{Application, Detection, Settings, SignIn, Source, SourceContext};
use crate::ingest::PipelineOptions;
use crate::source::chunk::Chunk;
use crate::source::generated::GeneratedSource;
use crate::store::{Store, StoreOptions};
use anyhow::{Result, bail};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub struct DemoOptions {
    pub db: PathBuf,
    pub port: u16,
    pub seed: u64,
    pub days: u32,
    pub profile: crate::synth::Profile,
}

/// How often the live demo generates and commits the events since its last tick.
const TICK: std::time::Duration = std::time::Duration::from_secs(2);
/// Backfill window per chunk.
const BACKFILL_WINDOW: TimeDelta = TimeDelta::hours(6);

pub fn run(options: DemoOptions) -> Result<()> {
    // The same memory limit as `serve`'s default: a demo left running must not take the machine.
    let store_options =
        StoreOptions { memory_limit: Some(crate::config::DEFAULT_DB_MEMORY_LIMIT.into()), ..StoreOptions::default() };
    let store = Arc::new(Store::open(&options.db, &store_options)?);
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], options.port));
    let sign_in = SignIn::Development { db: options.db.clone(), secret: None };
    let mode = "demo: generated data, development sign-in, loopback only";
    let mut settings = Settings::new(store, listen, mode, sign_in);
    settings.detection = Detection::Live(crate::rules::DetectionConfig::from_env());
    // Alerts from `TOKENTRAIL_ALERTS__*` (none by default: the outbox fills, nothing is sent).
    settings.alerts = Some(crate::alerts::AlertsConfig::from_env()?.resolve(&format!("http://{listen}"))?);
    let (seed, days, profile) = (options.seed, options.days, options.profile);
    settings.source = Some(Source {
        name: "demo-ingest",
        run: Box::new(move |cx: SourceContext| {
            let source = GeneratedSource::new(seed, 1.0).with_profile(profile);
            stream(&cx.store, &source, (seed, profile), days, &cx.stop, &cx.metrics)
        }),
    });
    let app = Application::build(settings)?;
    tracing::warn!("demo mode: generated data; sign-in by the development issuer (pick a role), loopback only");
    eprintln!("TokenTrail demo on http://{}  (database {})", app.address(), options.db.display());
    app.run_until_stopped()
}

/// Backfills from the checkpoint (or `days` ago) to now, then follows the clock.
fn stream(
    store: &Store,
    source: &GeneratedSource,
    (seed, profile): (u64, crate::synth::Profile),
    days: u32,
    stop: &CancellationToken,
    metrics: &crate::metrics::Metrics,
) -> Result<()> {
    let mut writer = store.writer()?;
    let checkpoint = store.checkpoint(&source.source_id)?;
    let resume = checkpoint.and_then(|c| c.event_time).and_then(DateTime::from_timestamp_micros);
    let now = Utc::now();
    let start = match resume {
        Some(t) if t > now => bail!("the database's generator position {t} is in the future; is the clock right?"),
        Some(t) => t,
        None => now.duration_trunc(TimeDelta::hours(1))? - TimeDelta::days(days as i64),
    };
    if !has_inventory(store)? {
        // Taken at the start of the history (of this start's, for a database from before the
        // demo had an inventory), so every assignment predates the period an access review looks at.
        let taken_at = if resume.is_some() { now - TimeDelta::days(days as i64) } else { start };
        load_inventory(store, seed, profile, taken_at)?;
    }
    if now - start > TimeDelta::from_std(TICK * 2)? {
        backfill(&mut writer, source, start, now, stop, metrics)?;
    }
    let mut position = now.max(start);
    let live = std::iter::from_fn(|| {
        let deadline = std::time::Instant::now() + TICK;
        while std::time::Instant::now() < deadline {
            if stop.is_cancelled() {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let to = Utc::now();
        let (chunk, truths) = source.chunk(position, to, true);
        for truth in truths {
            tracing::info!(scenario = %truth.scenario, principal = ?truth.principal_name, "scenario injected");
        }
        position = to;
        Some(Ok(chunk))
    });
    crate::ingest::run(&mut writer, live, PipelineOptions::default(), |receipt, _| {
        metrics.count_commit(&receipt.counts);
        tracing::debug!(batch = receipt.batch_id, rows = receipt.counts.total(), "live batch committed");
    })?;
    Ok(())
}

fn has_inventory(store: &Store) -> Result<bool> {
    let runs: i64 = store.connection()?.query_row("SELECT count(*) FROM inventory_runs", [], |r| r.get(0))?;
    Ok(runs > 0)
}

/// Stores the generated tenant's inventory as `tokentrail inventory --from-file` would: its
/// `az` output files written to a directory of their own, read back, and recorded.
fn load_inventory(store: &Store, seed: u64, profile: crate::synth::Profile, taken_at: DateTime<Utc>) -> Result<()> {
    let generator = crate::synth::Generator::new(crate::synth::Tenant::new(seed), seed).with_profile(profile);
    let dir = std::env::temp_dir().join(format!("tokentrail-demo-inventory-{}", std::process::id()));
    let result = (|| {
        let files = super::generate::write_inventory(&generator, &dir)?;
        let snapshot = crate::inventory::files::read(&files, taken_at)?;
        crate::inventory::history::record(store, &snapshot)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let changes = result?;
    tracing::info!(run_id = changes.run_id, opened = changes.opened, taken_at = %taken_at, "stored the generated inventory");
    Ok(())
}

fn backfill(
    writer: &mut crate::store::Writer,
    source: &GeneratedSource,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    stop: &CancellationToken,
    metrics: &crate::metrics::Metrics,
) -> Result<()> {
    let windows = ((to - from).num_seconds() / BACKFILL_WINDOW.num_seconds() + 1) as u64;
    let progress = crate::progress::bar("backfill {bar:30} {pos}/{len} windows {msg}")?;
    progress.set_length(windows);
    let mut at = from;
    let windows_done = progress.clone();
    let chunks = std::iter::from_fn(|| {
        if at >= to || stop.is_cancelled() {
            return None;
        }
        let end = (at + BACKFILL_WINDOW).min(to);
        let (chunk, _): (Chunk, _) = source.chunk(at, end, end == to);
        at = end;
        windows_done.inc(1);
        Some(Ok(chunk))
    });
    // A backfill runs flat out: its full commits hold detection back until it is done.
    let options = PipelineOptions { full_commits: Some(metrics.full_commits.clone()), ..PipelineOptions::default() };
    let counts = crate::ingest::run(writer, chunks, options, |receipt, checkpoints| {
        metrics.count_commit(&receipt.counts);
        progress.set_message(crate::store::describe_all(checkpoints));
    });
    progress.finish_and_clear();
    let counts = counts?;
    tracing::info!(cosmos = counts.cosmos, signins = counts.signins, from = %from, to = %to, "backfilled generated history");
    Ok(())
}
