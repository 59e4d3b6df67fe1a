//! Event Hubs into the database: `serve`'s stream. The source
//! ([`crate::source::eventhubs`]) receives every partition and cuts chunks; this runs
//! them through the pipeline until `cancel` fires, with each commit's checkpoints in
//! the same transaction as its rows.

use super::PipelineOptions;
use crate::config::EventHubsConfig;
use crate::metrics::Metrics;
use crate::source::eventhubs::{self, Connect, HubsStatus, Stream};
use crate::store::{Store, Writer};
use anyhow::Result;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Streams the configured hubs into `store` until `cancel` fires. Runs the pipeline on
/// the calling thread and the receivers on `runtime`.
#[allow(clippy::too_many_arguments)] // the service's parts, each used once
pub fn run(
    store: &Arc<Store>,
    mut writer: Writer,
    config: &EventHubsConfig,
    connect: &Connect,
    runtime: &tokio::runtime::Handle,
    cancel: CancellationToken,
    status: Arc<HubsStatus>,
    metrics: Arc<Metrics>,
) -> Result<()> {
    let Some(Stream { chunks, committed, receivers }) =
        eventhubs::open(store, config, connect, runtime, &cancel, &status, &metrics)?
    else {
        return Ok(());
    };
    let options = PipelineOptions {
        commit_rows: config.commit_rows,
        lanes: eventhubs::LANES,
        full_commits: Some(metrics.full_commits.clone()),
        ..PipelineOptions::default()
    };
    let outcome =
        super::run(&mut writer, chunks, options, |receipt, checkpoints| committed.record(receipt, checkpoints));
    // Stop the receivers whatever ended the pipeline, and wait for them.
    receivers.stop();
    let counts = outcome?;
    tracing::info!(
        cosmos = counts.cosmos,
        signins = counts.signins,
        raw = counts.raw,
        quarantined = counts.quarantined,
        "Event Hubs source stopped"
    );
    Ok(())
}
