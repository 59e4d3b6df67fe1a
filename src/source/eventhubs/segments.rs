//! The balanced hubs' segment writer: every `segment_interval_ms`, each partition's rows
//! committed since its last segment go to the shared lake ([`crate::lake::segments`]);
//! then, and only then, the partition's blob checkpoint may move to where the segment
//! ends. A thread of its own: encoding and uploading never hold up a partition's reader.

use super::HubsStatus;
use super::balanced::Shared;
use crate::lake::Lake;
use crate::lake::segments::{Outcome, Segments};
use crate::metrics::{Metrics, PartitionLabels, SegmentLabels};
use crate::store::Store;
use anyhow::Result;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Failed calls a pass spends this long on before leaving the rest to the next pass.
const FAILING: Duration = Duration::from_secs(10);

pub(super) struct Writer {
    pub store: Arc<Store>,
    pub lake: Lake,
    /// Each balanced hub's share, and its segments.
    pub hubs: Vec<(Arc<Shared>, Segments)>,
    pub interval: Duration,
    pub status: Arc<HubsStatus>,
    pub metrics: Arc<Metrics>,
}

/// The running writer: dropping `stop` makes it write what the last commits left and end.
pub(super) struct Running {
    pub stop: mpsc::Sender<()>,
    pub thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// After the pipeline's last commit: the last segments, then the thread ends.
    pub fn finish(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

impl Writer {
    pub fn spawn(mut self) -> Result<Running> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("shared-lake".into()).spawn(move || {
            loop {
                let last = !matches!(stopped.recv_timeout(self.interval), Err(mpsc::RecvTimeoutError::Timeout));
                self.pass();
                if last {
                    return;
                }
            }
        })?;
        Ok(Running { stop, thread })
    }

    fn pass(&mut self) {
        let mut written = 0;
        let mut theirs = 0;
        // Some partition could not be written or followed this pass.
        let mut failed = false;
        for (share, segments) in &mut self.hubs {
            let due = share.take_unsegmented();
            let mut others: Vec<String> =
                share.partitions().iter().filter(|p| !due.contains_key(*p)).cloned().collect();
            // Time spent on calls that failed this pass: past `FAILING`, the lake is taken to
            // be unreachable and the rest wait for the next pass (a stop waits for a pass).
            let mut failing = Duration::ZERO;
            for (partition, (checkpoint, since)) in due {
                let Some(through) = checkpoint.sequence_number else { continue };
                if failing > FAILING {
                    share.unsegment(&partition, checkpoint, since);
                    continue;
                }
                let started = Instant::now();
                match segments.write(&self.store, &self.lake, &partition, through) {
                    Ok(outcomes) => {
                        for outcome in &outcomes {
                            let (claim, outcome) = match outcome {
                                Outcome::Written(claim) => (claim, "written"),
                                Outcome::Theirs(claim) => (claim, "theirs"),
                            };
                            if outcome == "written" {
                                written += 1;
                            } else {
                                theirs += 1;
                                tracing::info!(hub = %share.hub, partition = %partition, first = claim.first,
                                    last = claim.last, instance = %claim.instance,
                                    "these events were put in the shared lake by another instance; ours are not written again");
                            }
                            let labels = SegmentLabels { hub: share.hub.clone(), outcome: outcome.into() };
                            self.metrics.shared_segments.get_or_create(&labels).inc();
                        }
                        // Another instance already further: its checkpoint stands.
                        let lake_sequence = segments.known_end(&partition);
                        if lake_sequence == Some(through) {
                            share.segmented(&partition, checkpoint);
                        }
                        self.status.update_named(&share.hub, &partition, |p| {
                            p.lake_sequence = lake_sequence;
                            p.lake_error = None;
                        });
                    }
                    Err(error) => {
                        let message = format!("{error:#}");
                        tracing::warn!(hub = %share.hub, partition = %partition, error = %message,
                            "writing to the shared lake failed; the next pass tries again (the blob checkpoint waits)");
                        let labels = crate::metrics::LakeLabels { step: "shared_segments".into() };
                        self.metrics.lake_failures.get_or_create(&labels).inc();
                        self.status.update_named(&share.hub, &partition, |p| p.lake_error = Some(message));
                        share.unsegment(&partition, checkpoint, since);
                        failing += started.elapsed();
                    }
                }
            }
            // The chains of the partitions others write (one listing each), so that this
            // instance's status shows how far every partition is in the lake.
            others.retain(|p| share.unsegmented_since(p).is_none());
            for partition in others {
                if failing > FAILING {
                    break;
                }
                let started = Instant::now();
                let followed = segments.end(&self.store, &self.lake, &partition);
                if followed.is_err() {
                    failing += started.elapsed();
                    let labels = crate::metrics::LakeLabels { step: "shared_segments".into() };
                    self.metrics.lake_failures.get_or_create(&labels).inc();
                }
                self.status.update_named(&share.hub, &partition, |p| match followed {
                    Ok(end) => {
                        p.lake_sequence = (end >= 0).then_some(end);
                        p.lake_error = None;
                    }
                    Err(error) => p.lake_error = Some(format!("{error:#}")),
                });
            }
            failed |= failing > Duration::ZERO;
            // The lag after this pass: what is still waiting, and since when.
            let now = Instant::now();
            for partition in share.partitions() {
                let since = share.unsegmented_since(partition);
                let age = since.map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
                let labels = PartitionLabels { hub: share.hub.clone(), partition: partition.clone() };
                self.metrics.shared_lake_lag_seconds.get_or_create(&labels).set(age.as_secs() as i64);
                let pending = since.map(|_| chrono::Utc::now() - chrono::TimeDelta::from_std(age).unwrap_or_default());
                self.status.update_named(&share.hub, partition, |p| p.lake_pending_since = pending);
            }
        }
        if !failed {
            // Every partition's claims followed once: the rules lease may be taken.
            self.status.rules_lease.followed.store(true, std::sync::atomic::Ordering::Release);
        }
        if let Ok(mut status) = self.status.shared_lake.lock()
            && let Some(status) = status.as_mut()
        {
            status.segments_written += written;
            status.segments_theirs += theirs;
            status.last_pass = Some(chrono::Utc::now());
        }
    }
}
