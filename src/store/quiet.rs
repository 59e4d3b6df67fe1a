//! Checkpoints while ingest is quiet. Data committed since DuckDB's last checkpoint is
//! held in memory, uncompressed, until the write-ahead log reaches `checkpoint_threshold`.
//! `serve` sets that high so a backlog is not checkpointed after every commit
//! ([`crate::source::eventhubs::SERVE_CHECKPOINT_WAL`]), but at a steady trickle the log
//! then takes hours to fill and the memory grows all that time (BENCHMARKS.md, memory over
//! time). So once ingest is no longer cutting commits at their size limit, the log is
//! checkpointed as soon as it passes [`QUIET_WAL`].

use super::Store;
use prometheus_client::metrics::counter::Counter;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The write-ahead log size above which a quiet `serve` or `demo` checkpoints (DuckDB's
/// own default threshold).
pub const QUIET_WAL: u64 = 16 << 20;

/// How often the log is looked at.
pub const LOOK_EVERY: Duration = Duration::from_secs(10);

impl Store {
    /// Bytes in the write-ahead log (0 when there is none).
    pub fn wal_bytes(&self) -> u64 {
        std::fs::metadata(super::wal_path(&self.path)).map_or(0, |m| m.len())
    }

    /// Checkpoints if the write-ahead log holds more than `over` bytes. True if it did.
    /// A checkpoint that meets another writer's open transaction fails; the caller tries
    /// again later.
    pub fn checkpoint_over(&self, over: u64) -> anyhow::Result<bool> {
        if self.wal_bytes() <= over {
            return Ok(false);
        }
        self.connection()?.execute_batch("CHECKPOINT")?;
        Ok(true)
    }
}

/// Starts a thread that checkpoints `store` every [`LOOK_EVERY`] when its log is over
/// [`QUIET_WAL`] and `full_commits` (ingest's commits cut at their size limit: a backlog)
/// did not move since the last look. Ends soon after `stop`.
pub fn spawn(
    store: std::sync::Arc<Store>,
    full_commits: Counter,
    stop: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // The first look only notes where ingest is: a backlog shows as full commits since then.
    let mut seen: Option<u64> = None;
    crate::periodic::spawn_every("quiet-checkpoint", LOOK_EVERY, stop, move || {
        let now = full_commits.get();
        if seen.replace(now) != Some(now) {
            return;
        }
        let wal = store.wal_bytes();
        match store.checkpoint_over(QUIET_WAL) {
            Ok(true) => tracing::debug!(wal_bytes = wal, "checkpointed while ingest is quiet"),
            Ok(false) => {}
            Err(error) => tracing::debug!(error = format!("{error:#}"), "quiet checkpoint deferred"),
        }
    })
}
