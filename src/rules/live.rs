//! Detection inside `serve` and `demo`: a thread that, every few seconds, absorbs what
//! was committed since its last pass and evaluates the rules over it.

use super::Detector;
use crate::metrics::{FindingLabels, Metrics};
use crate::store::Store;
use anyhow::Result;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long the thread waits between passes when nothing failed.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// How much lower than ingest the detection thread runs (nice; the API's threads run
/// lower still, [`crate::api::pool::QUERY_NICE`]). Detection is incremental over what
/// was committed, so when the CPU is short it falls behind and catches up in fewer,
/// larger passes, while ingest keeps its pace.
pub const NICE: i32 = 10;

/// Starts the detection thread; it ends soon after `stop` is set. `raised` gets the ids
/// of the findings each pass raised for the first time (alert hooks start there).
pub fn spawn(
    store: Arc<Store>,
    detector: Detector,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    raised: impl Fn(Vec<i64>) + Send + 'static,
) -> Result<std::thread::JoinHandle<()>> {
    Ok(std::thread::Builder::new().name("detection".into()).spawn(move || {
        crate::priority::lower(NICE);
        while !stop.load(Ordering::SeqCst) {
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
                }
                Err(error) => tracing::error!(error = format!("{error:#}"), "detection pass failed; retrying"),
            }
            if let Err(error) = count_findings(&store, &metrics) {
                tracing::warn!(error = format!("{error:#}"), "counting findings for /metrics failed");
            }
            // Sleep in short steps so a stop is quick.
            for _ in 0..(INTERVAL.as_millis() / 100) {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })?)
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
