//! Detection inside `serve` and `demo`: a thread that, when a commit lands (or every
//! [`INTERVAL`] at the latest), absorbs what was committed since its last pass and
//! evaluates the rules over it. A pass starts [`SETTLE`] after the commit that woke it,
//! so a burst of commits makes one pass: the time from an event to its finding is the
//! commit, that wait and the pass, not a fixed tick. After each pass the thread rests
//! [`REST_PER_PASS`] times as long as the pass took, so a steady stream does not keep it
//! running back to back.
//!
//! While ingest runs flat out (its commits are cut at their size limit because the
//! source has more waiting: [`Metrics::full_commits`]), passes wait, for at most
//! [`MAX_DEFER`] after the last one. Catching up on a backlog, the rows are in DuckDB
//! (searchable, in evidence) sooner, and detection takes them in after, in fewer and
//! larger passes (about the same CPU in all: BENCHMARKS.md, Event Hubs).

use super::Detector;
use crate::metrics::{FindingLabels, Metrics};
use crate::store::Store;
use anyhow::Result;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The longest the thread waits between passes when no commit wakes it.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// How long after a commit a pass starts: commits that follow within it join the pass.
pub const SETTLE: Duration = Duration::from_millis(100);

/// The longest a pass waits for ingest to stop running flat out.
pub const MAX_DEFER: Duration = Duration::from_secs(60);

/// After a pass that took T, the next starts no sooner than `REST_PER_PASS` × T later
/// (at most [`MAX_REST`]): while data flows in without a break, detection takes at most a
/// quarter of a core, and each pass covers what came during the rest. A pass costs about
/// its rules' windows whatever it covers (BENCHMARKS.md, memory over time: at 100 records
/// a second, back-to-back passes took 80% of a core and rewrote the same evidence).
pub const REST_PER_PASS: u32 = 3;

/// The longest rest after a pass.
pub const MAX_REST: Duration = Duration::from_secs(30);

/// How much lower than ingest the detection thread runs (nice; the API's threads run
/// lower still, [`crate::http::pool::QUERY_NICE`]). Detection is incremental over what
/// was committed, so when the CPU is short it falls behind and catches up in fewer,
/// larger passes, while ingest keeps its pace.
pub const NICE: i32 = 10;

/// When the Event Hubs source last had nothing left to read (see `HubsStatus::caught_up`).
pub type CaughtUp = Box<dyn Fn() -> Option<chrono::DateTime<chrono::Utc>> + Send>;

/// The rules over everyone's counts, with a shared lake (`crate::lake::fleet::Fleet`).
pub trait FleetPass: Send {
    /// Every pass, on every instance: adds up what the segments recorded since published.
    fn load(&mut self, store: &Store) -> Result<usize>;
    /// On the lease holder: the rules over everyone's counts, from where the last call
    /// left off; with the row time (µs) evaluated through, when a rule ran.
    fn evaluate(&mut self, store: &Store, detector: &Detector) -> Result<(super::Evaluation, Option<i64>)>;
    /// The lease was taken or lost: the next pass starts at `from` (µs; where the last
    /// holder had got to), or at the start of history.
    fn start_over(&mut self, from: Option<i64>);
    /// Every segment recorded has had its counts added up (but those that cannot be read).
    fn caught_up(&self) -> bool;
}

/// No time, in [`Shared`]'s atomics.
pub const NONE: i64 = i64::MIN;

/// With a shared lake: the rules lease as this instance holds it, and the pass it then runs.
pub struct Shared {
    /// This instance holds the lease.
    pub holding: Arc<AtomicBool>,
    /// Where the last holder had got to when this one took the lease ([`NONE`]: nowhere).
    pub handed_over: Arc<AtomicI64>,
    /// Where this holder has got to: the lease hands it over.
    pub evaluated_through: Arc<AtomicI64>,
    /// The segment writer has followed every partition's claims once (so every segment
    /// there is, is recorded), and this thread has then added up every segment's counts:
    /// this instance may take the lease.
    pub followed: Arc<AtomicBool>,
    pub counted: Arc<AtomicBool>,
    pub fleet: Box<dyn FleetPass>,
}

/// How often the thread of the rules over everyone's counts adds up new segments' counts.
pub const FLEET_INTERVAL: Duration = Duration::from_secs(1);

/// How often the lease holder runs the rules over everyone's counts (at once after it
/// takes the lease): each pass reads the rows of its rules' periods from the lake.
pub const FLEET_EVERY: Duration = Duration::from_secs(5);

/// What each pass that raised findings tells (the alert worker's wake-up).
pub type Raised = Arc<dyn Fn(Vec<i64>) + Send + Sync>;

/// Starts the detection thread, and with `shared` the thread of the rules over everyone's
/// counts; they end soon after `stop` is cancelled. `raised` gets the ids of the findings
/// each pass raised for the first time (alert hooks start there).
pub fn spawn(
    store: Arc<Store>,
    mut detector: Detector,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    caught_up: Option<CaughtUp>,
    shared: Option<Shared>,
    raised: Raised,
) -> Result<Vec<std::thread::JoinHandle<()>>> {
    let holding = shared.as_ref().map(|s| s.holding.clone());
    if let Some(holding) = &holding {
        detector.share(holding.clone());
    }
    let detector = Arc::new(detector);
    let mut threads = Vec::new();
    if let Some(shared) = shared {
        let (store, detector, metrics, stop, raised) =
            (store.clone(), detector.clone(), metrics.clone(), stop.clone(), raised.clone());
        threads.push(std::thread::Builder::new().name("fleet rules".into()).spawn(move || {
            crate::sys::priority::lower(NICE);
            fleet_thread(&store, &detector, shared, &metrics, &stop, &*raised);
        })?);
    }
    threads.push(std::thread::Builder::new().name("detection".into()).spawn(move || {
        crate::sys::priority::lower(NICE);
        let mut seen = metrics.commits.get();
        // The caught-up time last stored: it is written once it moved a minute, not every pass.
        let mut noted: Option<chrono::DateTime<chrono::Utc>> = None;
        let mut held = false;
        while !stop.is_cancelled() {
            if let Some(holding) = &holding {
                let now = holding.load(Ordering::Acquire);
                if now && !held && let Err(error) = detector.took_lease(&store) {
                    tracing::error!(error = format!("{error:#}"), "preparing the sign-in rules for the rules lease failed");
                }
                held = now;
            }
            let at = caught_up.as_ref().and_then(|f| f());
            if let Some(at) = at.filter(|at| noted.is_none_or(|n| *at - n >= chrono::TimeDelta::minutes(1))) {
                match detector.note_caught_up(&store, "eventhubs", at) {
                    Ok(()) => {
                        if noted.is_none() {
                            tracing::info!(%at, "Event Hubs caught up: silences are measured up to when the hubs were last empty");
                        }
                        noted = Some(at);
                    }
                    Err(error) => tracing::warn!(error = format!("{error:#}"), "storing the Event Hubs caught-up time failed"),
                }
            }
            let pass = Instant::now();
            match detector.evaluate_after_commit(&store) {
                Ok(evaluation) => {
                    for failure in &evaluation.failures {
                        tracing::warn!(problem = %failure, "detection rule failed this pass");
                    }
                    let new = evaluation.raised();
                    if !new.is_empty() {
                        tracing::info!(findings = ?new, "findings raised");
                        raised(new);
                    }
                    if !evaluation.runs.is_empty() {
                        // The table blocks the pass read and its working memory (freed in
                        // scattered chunks glibc keeps resident) go back now, not at the
                        // memory sampler's next tick: between passes the process is at its
                        // resting size. The next pass reads its blocks again from the OS's
                        // page cache.
                        let trimming = std::time::Instant::now();
                        let unloaded = store.unload_unpinned_blocks();
                        crate::sys::trim_free_memory();
                        tracing::debug!(
                            unloaded_bytes = unloaded.unwrap_or(0),
                            trim_us = trimming.elapsed().as_micros() as u64,
                            "returned the pass's blocks and freed memory"
                        );
                    }
                }
                Err(error) => tracing::error!(error = format!("{error:#}"), "detection pass failed; retrying"),
            }
            if let Err(error) = count_findings(&store, &metrics) {
                tracing::warn!(error = format!("{error:#}"), "counting findings for /metrics failed");
            }
            if !rest(&stop, pass.elapsed()) {
                return;
            }
            let clocks = Clocks { commits: &metrics.commits, full_commits: &metrics.full_commits };
            if !wait_for_next_pass(&stop, clocks, &mut seen, &metrics.detection_waiting, INTERVAL, MAX_DEFER) {
                return;
            }
        }
    })?);
    Ok(threads)
}

/// The rules over everyone's counts: every [`FLEET_INTERVAL`], adds up what other
/// instances published; on the lease holder, runs the rules. Its own thread, so a local
/// pass waiting for ingest to stop running flat out never holds it up.
fn fleet_thread(
    store: &Store,
    detector: &Detector,
    mut shared: Shared,
    metrics: &Metrics,
    stop: &CancellationToken,
    raised: &dyn Fn(Vec<i64>),
) {
    let mut held = false;
    let mut evaluated: Option<Instant> = None;
    while !stop.is_cancelled() {
        let holding = shared.holding.load(Ordering::Acquire);
        if holding != held {
            // Taken: from where the last holder had got to. Lost: nothing until taken again.
            let from = shared.handed_over.load(Ordering::Acquire);
            shared.fleet.start_over((from != NONE).then_some(from));
            held = holding;
            evaluated = None;
            metrics.rules_lease_held.set(i64::from(holding));
        }
        let due = held && evaluated.is_none_or(|at| at.elapsed() >= FLEET_EVERY);
        if due {
            evaluated = Some(Instant::now());
        }
        fleet_pass(store, detector, &mut shared, due, metrics, raised);
        crate::periodic::sleep_unless_stopped(stop, FLEET_INTERVAL);
    }
}

/// Adds up what other instances published; when `evaluate` (the lease holder's turn),
/// runs the rules over everyone's counts. A failure is logged: the next pass tries again.
fn fleet_pass(
    store: &Store,
    detector: &Detector,
    shared: &mut Shared,
    evaluate: bool,
    metrics: &Metrics,
    raised: &dyn Fn(Vec<i64>),
) {
    // Read before the load: counts added up after every claim was recorded.
    let followed = shared.followed.load(Ordering::Acquire);
    match shared.fleet.load(store) {
        Ok(_) => shared.counted.store(followed && shared.fleet.caught_up(), Ordering::Release),
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "adding up the shared lake's partial counts failed; retrying")
        }
    }
    if !evaluate {
        return;
    }
    let started = Instant::now();
    match shared.fleet.evaluate(store, detector) {
        Ok((evaluation, through)) => {
            if let Some(through) = through {
                shared.evaluated_through.fetch_max(through, Ordering::AcqRel);
            }
            for failure in &evaluation.failures {
                tracing::warn!(problem = %failure, "a rule over everyone's counts failed this pass");
            }
            if !evaluation.runs.is_empty() {
                metrics.fleet_passes.inc();
                tracing::info!(
                    rules = evaluation.runs.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "rules over everyone's counts evaluated"
                );
            }
            let new = evaluation.raised();
            if !new.is_empty() {
                tracing::info!(findings = ?new, "findings raised over everyone's counts");
                raised(new);
            }
            super::group_incidents(store);
        }
        Err(error) => tracing::error!(error = format!("{error:#}"), "the pass over everyone's counts failed; retrying"),
    }
}

/// Ingest's commit counters, which wake and hold detection.
#[derive(Clone, Copy)]
struct Clocks<'a> {
    commits: &'a Counter,
    full_commits: &'a Counter,
}

/// Waits until a commit lands after `seen` commits (then [`SETTLE`] more), or `interval`
/// ([`INTERVAL`]) at the latest; and more while ingest cut a commit at its size limit
/// (`full_commits` moved) meanwhile, up to `max_defer` ([`MAX_DEFER`]); `deferred` is 1
/// while it waits for that. Leaves `seen` at the commits there were when it returned.
/// False once `stop` is cancelled.
fn wait_for_next_pass(
    stop: &CancellationToken,
    clocks: Clocks<'_>,
    seen: &mut u64,
    deferred: &Gauge,
    interval: Duration,
    max_defer: Duration,
) -> bool {
    let waiting = Instant::now();
    let mut full = clocks.full_commits.get();
    loop {
        // Short steps, so a commit or a stop is noticed at once.
        let until = Instant::now() + interval;
        while let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
            if stop.is_cancelled() {
                return false;
            }
            if clocks.commits.get() != *seen {
                std::thread::sleep(SETTLE);
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
        *seen = clocks.commits.get();
        let now = clocks.full_commits.get();
        if now == full || waiting.elapsed() >= max_defer {
            deferred.set(0);
            return !stop.is_cancelled();
        }
        deferred.set(1);
        tracing::debug!(full_commits = now - full, "detection waits: ingest is running flat out");
        full = now;
    }
}

/// Waits [`REST_PER_PASS`] times a pass's duration `took` (at most [`MAX_REST`]); false
/// if `stop` was cancelled meanwhile.
fn rest(stop: &CancellationToken, took: Duration) -> bool {
    crate::periodic::sleep_unless_stopped(stop, (took * REST_PER_PASS).min(MAX_REST))
}

fn count_findings(store: &Store, metrics: &Metrics) -> Result<()> {
    let conn = store.connection()?;
    let mut stmt = conn.prepare("SELECT status, severity, count(*) FROM findings GROUP BY ALL")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
    metrics.findings.clear();
    for row in rows {
        let (status, severity, count) = row?;
        metrics.findings.get_or_create(&FindingLabels { status, severity }).set(count);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Clocks, REST_PER_PASS, rest, wait_for_next_pass};
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    use tokio_util::sync::CancellationToken;

    const INTERVAL: Duration = Duration::from_millis(50);

    #[test]
    fn a_rest_lasts_a_multiple_of_the_pass_and_a_stop_ends_it() {
        let stop = CancellationToken::new();
        let pass = Duration::from_millis(40);
        let started = Instant::now();
        assert!(rest(&stop, pass));
        let rested = started.elapsed();
        assert!(rested >= pass * REST_PER_PASS && rested < Duration::from_secs(5), "rested {rested:?}");
        stop.cancel();
        let started = Instant::now();
        assert!(!rest(&stop, Duration::from_secs(20)));
        assert!(started.elapsed() < Duration::from_secs(5), "a stop did not end the rest");
    }

    #[test]
    fn a_pass_waits_one_interval_when_ingest_is_not_flat_out() {
        let (stop, full, commits) = (CancellationToken::new(), Counter::default(), Counter::default());
        let started = Instant::now();
        let deferred = Gauge::default();
        let clocks = Clocks { commits: &commits, full_commits: &full };
        assert!(wait_for_next_pass(&stop, clocks, &mut 0, &deferred, INTERVAL, Duration::from_secs(30)));
        let waited = started.elapsed();
        assert!(waited >= INTERVAL && waited < Duration::from_secs(10), "waited {waited:?}");
        assert_eq!(deferred.get(), 0);
    }

    #[test]
    fn a_commit_starts_a_pass_without_waiting_out_the_interval() {
        let (stop, full, commits) = (CancellationToken::new(), Counter::default(), Counter::default());
        let clocks = Clocks { commits: &commits, full_commits: &full };
        let mut seen = 0;
        let started = Instant::now();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(200));
                commits.inc();
            });
            let interval = Duration::from_secs(30);
            assert!(wait_for_next_pass(&stop, clocks, &mut seen, &Gauge::default(), interval, interval));
        });
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(5), "waited {waited:?}");
        assert_eq!(seen, 1, "the commit it saw is counted as seen");
    }

    #[test]
    fn full_commits_defer_a_pass_until_they_stop_or_for_at_most_max_defer() {
        let (stop, full) = (CancellationToken::new(), Counter::default());
        let (done, deferred) = (AtomicBool::new(false), Gauge::default());
        // Every commit of a backlog is full: the same counter is both clocks here.
        let clocks = Clocks { commits: &full, full_commits: &full };
        let mut commits_seen = 0;
        std::thread::scope(|scope| {
            // Ingest running flat out: a commit cut at its size limit every 10 ms.
            scope.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    full.inc();
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
            let started = Instant::now();
            std::thread::scope(|watch| {
                // The gauge shows the wait while it lasts.
                let seen = watch.spawn(|| {
                    let until = Instant::now() + Duration::from_secs(5);
                    while deferred.get() == 0 && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    deferred.get()
                });
                let max_defer = Duration::from_millis(400);
                assert!(wait_for_next_pass(&stop, clocks, &mut commits_seen, &deferred, INTERVAL, max_defer));
                assert_eq!(seen.join().unwrap(), 1, "detection_waiting was 1 during the wait");
            });
            let waited = started.elapsed();
            assert!(waited >= Duration::from_millis(400), "the pass waited out max_defer, not {waited:?}");
            assert_eq!(deferred.get(), 0, "and is 0 once the pass goes ahead");
            // Ingest stops running flat out: the next wait ends after the interval that saw no full commit.
            done.store(true, Ordering::SeqCst);
            let started = Instant::now();
            let max_defer = Duration::from_secs(30);
            assert!(wait_for_next_pass(&stop, clocks, &mut commits_seen, &deferred, INTERVAL, max_defer));
            assert!(started.elapsed() < Duration::from_secs(10), "waited {:?}", started.elapsed());
        });
    }

    #[test]
    fn a_stop_ends_the_wait() {
        let (stop, full) = (CancellationToken::new(), Counter::default());
        stop.cancel();
        let started = Instant::now();
        let clocks = Clocks { commits: &full, full_commits: &full };
        let (interval, max) = (Duration::from_secs(30), Duration::from_secs(60));
        assert!(!wait_for_next_pass(&stop, clocks, &mut 0, &Gauge::default(), interval, max));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
