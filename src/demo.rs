//! `tokentrail demo` and `tokentrail generate`: TokenTrail on generated traffic.
//!
//! The demo backfills history on first start, then streams generated events in
//! real time (scenarios included) into the database, and serves HTTP on loopback.
//! Its position is the generator's checkpoint, so a second start resumes where the
//! first stopped, and Ctrl-C stops it between commits.

use crate::http::AppState;
use crate::ingest::{Chunk, PipelineOptions};
use crate::source::generated::GeneratedSource;
use crate::store::{Store, StoreOptions};
use crate::synth::{GroundTruth, Scenario};
use anyhow::{Context, Result, bail};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct DemoOptions {
    pub db: PathBuf,
    pub port: u16,
    pub seed: u64,
    pub days: u32,
}

/// How often the live demo generates and commits the events since its last tick.
const TICK: std::time::Duration = std::time::Duration::from_secs(2);
/// Backfill window per chunk.
const BACKFILL_WINDOW: TimeDelta = TimeDelta::hours(6);

pub fn parse_scenarios(names: &[String]) -> Result<Vec<Scenario>> {
    if names.iter().any(|n| n == "all") {
        return Ok(Scenario::all().to_vec());
    }
    names.iter().map(|n| Scenario::parse(n.trim()).map_err(anyhow::Error::msg)).collect()
}

/// Writes `days` of traffic ending at the start of today (UTC), so the same seed on
/// the same day gives the same files. `out` is an `.ndjson`/`.json` file, or a
/// directory filled in Azure's storage-archive layout. The scenarios' ground truth
/// goes beside it, in `<out without extension>.truth.json`.
pub fn generate_files(out: &Path, days: u32, seed: u64, scenarios: &[Scenario], scale: f64) -> Result<String> {
    let to = Utc::now().duration_trunc(TimeDelta::days(1))?;
    let from = to - TimeDelta::days(days as i64);
    let generator = crate::synth::Generator::new(crate::synth::Tenant::new(seed), seed).with_scale(scale);
    let (events, truths) = generator.history(from, to, scenarios);
    let name = out.to_string_lossy().to_ascii_lowercase();
    let single_file = [".ndjson", ".json", ".jsonl"].iter().any(|ext| name.ends_with(ext));
    let truth_path = if single_file {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut file =
            std::io::BufWriter::new(std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?);
        for event in &events {
            serde_json::to_writer(&mut file, &event.record)?;
            file.write_all(b"\n")?;
        }
        file.flush()?;
        out.with_extension("truth.json")
    } else {
        write_archive(out, &events)?;
        // Beside the directory, not in it: ingesting the directory must not read it.
        out.with_extension("truth.json")
    };
    write_truth(&truth_path, &truths)?;
    Ok(format!(
        "wrote {} records ({} to {}) to {}, ground truth of {} scenarios to {}",
        events.len(),
        from.format("%Y-%m-%d"),
        to.format("%Y-%m-%d"),
        out.display(),
        truths.len(),
        truth_path.display()
    ))
}

fn write_truth(path: &Path, truths: &[GroundTruth]) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    serde_json::to_writer_pretty(file, truths)?;
    Ok(())
}

/// `insights-logs-<category>/resourceId=<id>/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`,
/// one record per line, as Azure Monitor archives to a storage account.
fn write_archive(dir: &Path, events: &[crate::synth::Event]) -> Result<()> {
    let mut files: std::collections::BTreeMap<PathBuf, Vec<u8>> = Default::default();
    for event in events {
        let resource = event.record.get("resourceId").and_then(|v| v.as_str()).unwrap_or("/unknown");
        let path = dir
            .join(format!("insights-logs-{}", event.category.to_ascii_lowercase()))
            .join(format!("resourceId={}", resource.trim_start_matches('/')))
            .join(event.time.format("y=%Y/m=%m/d=%d/h=%H/m=00").to_string())
            .join("PT1H.json");
        let buf = files.entry(path).or_default();
        serde_json::to_writer(&mut *buf, &event.record)?;
        buf.push(b'\n');
    }
    for (path, content) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

pub fn run(options: DemoOptions) -> Result<()> {
    // The same memory limit as `serve`'s default: a demo left running must not take the machine.
    let store_options =
        StoreOptions { memory_limit: Some(crate::config::DEFAULT_DB_MEMORY_LIMIT.into()), ..StoreOptions::default() };
    let store = Arc::new(Store::open(&options.db, &store_options)?);
    // Ingest runs on its own thread at normal priority; all else here is the HTTP side.
    let runtime = crate::http::http_runtime()?;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], options.port));
    let listener = runtime.block_on(tokio::net::TcpListener::bind(address)).with_context(|| {
        format!("cannot listen on {address}: is another program using port {}? Pass --port", options.port)
    })?;
    let address = listener.local_addr()?;
    tracing::warn!("demo mode: generated data; sign-in by the development issuer (pick a role), loopback only");
    eprintln!("TokenTrail demo on http://{address}  (database {})", options.db.display());

    let stop = Arc::new(AtomicBool::new(false));
    // Ingest counts its commits here; detection wakes on them.
    let metrics = Arc::new(crate::metrics::Metrics::default());
    // If ingest stops on an error, the demo stops too, rather than serve stale data.
    let ingest_ended = Arc::new(tokio::sync::Notify::new());
    let ingest = {
        let (store, stop, ended, metrics) = (store.clone(), stop.clone(), ingest_ended.clone(), metrics.clone());
        let (seed, days) = (options.seed, options.days);
        std::thread::Builder::new().name("demo-ingest".into()).spawn(move || {
            let outcome = stream(&store, seed, days, &stop, &metrics);
            if let Err(error) = &outcome {
                tracing::error!(error = format!("{error:#}"), "demo ingest stopped");
            }
            ended.notify_one();
            outcome
        })?
    };
    let auth = crate::auth::Auth::development(&options.db, None)?;
    let (detector, _problems) = crate::rules::Detector::open(&store, &crate::rules::DetectionConfig::from_env())?;
    let rules = Arc::new(detector.rules().to_vec());
    let mut state = AppState::new(store.clone(), "demo: generated data, development sign-in, loopback only", auth);
    state.metrics = metrics;
    // Alerts from `TOKENTRAIL_ALERTS__*` (none by default: the outbox fills, nothing is sent).
    let alerts = crate::alerts::AlertsConfig::from_env()?.resolve(&format!("http://{address}"))?;
    let alerts_stop = tokio_util::sync::CancellationToken::new();
    let alerts =
        crate::alerts::start(store.clone(), alerts, state.metrics.clone(), runtime.handle(), alerts_stop.clone())?;
    let detection = crate::rules::live::spawn(store.clone(), detector, state.metrics.clone(), stop.clone(), {
        move |_| alerts.wake()
    })?;
    let sampler = crate::metrics::spawn_memory_sampler(store.clone(), state.metrics.clone(), stop.clone())?;
    store.lock_down()?;
    state.rules = rules;
    let audit = state.audit.clone();
    let serve_stop = stop.clone();
    let served = runtime.block_on(async move {
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => eprintln!("stopping: finishing the current commit"),
                _ = ingest_ended.notified() => eprintln!("stopping: ingest ended"),
            }
            serve_stop.store(true, Ordering::SeqCst);
        };
        axum::serve(listener, crate::http::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await
    });
    stop.store(true, Ordering::SeqCst);
    alerts_stop.cancel();
    let ingested = ingest.join().map_err(|_| anyhow::anyhow!("the demo ingest thread panicked"))?;
    let _ = detection.join();
    let _ = sampler.join();
    // Every thread that holds the database ends before the process does.
    audit.close();
    drop(runtime);
    served?;
    ingested
}

/// Backfills from the checkpoint (or `days` ago) to now, then follows the clock.
fn stream(store: &Store, seed: u64, days: u32, stop: &AtomicBool, metrics: &crate::metrics::Metrics) -> Result<()> {
    let source = GeneratedSource::new(seed, 1.0);
    let mut writer = store.writer()?;
    let checkpoint = store.checkpoint(&source.source_id)?;
    let resume = checkpoint.and_then(|c| c.event_time).and_then(DateTime::from_timestamp_micros);
    let now = Utc::now();
    let start = match resume {
        Some(t) if t > now => bail!("the database's generator position {t} is in the future; is the clock right?"),
        Some(t) => t,
        None => now.duration_trunc(TimeDelta::hours(1))? - TimeDelta::days(days as i64),
    };
    if now - start > TimeDelta::from_std(TICK * 2)? {
        backfill(&mut writer, &source, start, now, stop, metrics)?;
    }
    let mut position = now.max(start);
    let live = std::iter::from_fn(|| {
        let deadline = std::time::Instant::now() + TICK;
        while std::time::Instant::now() < deadline {
            if stop.load(Ordering::SeqCst) {
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

fn backfill(
    writer: &mut crate::store::Writer,
    source: &GeneratedSource,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    stop: &AtomicBool,
    metrics: &crate::metrics::Metrics,
) -> Result<()> {
    let windows = ((to - from).num_seconds() / BACKFILL_WINDOW.num_seconds() + 1) as u64;
    let progress = crate::progress::bar("backfill {bar:30} {pos}/{len} windows {msg}")?;
    progress.set_length(windows);
    let mut at = from;
    let windows_done = progress.clone();
    let chunks = std::iter::from_fn(|| {
        if at >= to || stop.load(Ordering::SeqCst) {
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
