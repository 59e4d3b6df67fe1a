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
    let store_options = StoreOptions {
        memory_limit: Some(crate::config::DEFAULT_DB_MEMORY_LIMIT.into()),
        threads: Some(super::serve::default_db_threads()),
        ..StoreOptions::default()
    };
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
            stream(&cx.store, cx.writer, &source, (seed, profile), days, &cx.stop, &cx.metrics)
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
    mut writer: crate::store::Writer,
    source: &GeneratedSource,
    (seed, profile): (u64, crate::synth::Profile),
    days: u32,
    stop: &CancellationToken,
    metrics: &crate::metrics::Metrics,
) -> Result<()> {
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
    // Once detection has absorbed the backfill (the access review judges use by it).
    let mut reviews_seeded = false;
    let live = std::iter::from_fn(|| {
        if !reviews_seeded {
            match seed_reviews(store, Utc::now()) {
                Ok(done) => reviews_seeded = done,
                // Tried again next tick: a console query holding DuckDB's memory limit
                // (or any passing error) must not end the demo.
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "starting the demo's access reviews failed; retrying")
                }
            }
        }
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

/// The demo's reviewers: sign in with one of these names and the Reviewer role to decide.
pub const REVIEWERS: [&str; 2] = ["Reviewer One", "Reviewer Two"];

/// Two access reviews of the generated tenant, once per database: one completed (every
/// item decided by the two reviewers, as TokenTrail recommends) and one open (half decided),
/// so the Reviews page, its export and the evidence pack have something to show. False
/// while detection has not absorbed any data yet (try again later).
fn seed_reviews(store: &Store, now: DateTime<Utc>) -> Result<bool> {
    use crate::reviews::{self, Decision, NewReview, Person};
    let conn = store.connection()?;
    let started: i64 = conn.query_row("SELECT count(*) FROM access_reviews", [], |r| r.get(0))?;
    let end: Option<i64> = conn.query_row("SELECT epoch_us(history_end) FROM data_clock", [], |r| r.get(0))?;
    if started > 0 {
        return Ok(true);
    }
    let Some(end) = end.and_then(DateTime::from_timestamp_micros) else { return Ok(false) };
    let person = |name: &str| Person { oid: crate::auth::dev_oid(name), name: Some(name.to_string()) };
    let admin = person("Demo Admin");
    let reviewers: Vec<Person> = REVIEWERS.iter().map(|n| person(n)).collect();
    let account: Option<String> =
        conn.query_row("SELECT min(account) FROM cosmos_accounts WHERE valid_to IS NULL", [], |r| r.get(0))?;
    let plans = [
        ("Quarterly Cosmos DB access review (demo, completed)", "/".to_string(), TimeDelta::days(7), 1.0),
        ("Cosmos DB access review (demo, open)", account.unwrap_or_else(|| "/".into()), TimeDelta::days(10), 0.5),
    ];
    for (name, scope, due, share) in plans {
        let review = NewReview {
            name: name.into(),
            scope,
            reviewers: reviewers.clone(),
            due_at: now + due,
            since: end - TimeDelta::days(90),
            until: end,
        };
        let id = reviews::start(store, &review, &admin)?;
        let items: Vec<(i64, String, String)> = conn
            .prepare(
                "SELECT item_id, recommendation, advice FROM access_review_items WHERE review_id = ? ORDER BY item_id",
            )?
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<duckdb::Result<_>>()?;
        let decide = (items.len() as f64 * share).ceil() as usize;
        for (i, (item, recommendation, advice)) in items.into_iter().take(decide).enumerate() {
            let decision = match recommendation.as_str() {
                "approve" => Decision::Approve,
                "revoke" => Decision::Revoke,
                _ => Decision::DontKnow,
            };
            // Alternate reviewers; one who may not decide an item (a grant of theirs) leaves it to the other.
            let mut order = [&reviewers[i % 2], &reviewers[(i + 1) % 2]];
            if reviews::refusal(&conn, id, item, &order[0].oid).is_err() {
                order.swap(0, 1);
            }
            if reviews::refusal(&conn, id, item, &order[0].oid).is_ok() {
                reviews::decide(store, id, item, decision, &format!("demo: {advice}"), order[0])?;
            }
        }
    }
    tracing::info!(reviewers = ?REVIEWERS, "started the demo's access reviews: sign in with a reviewer's name and the Reviewer role to decide");
    Ok(true)
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
