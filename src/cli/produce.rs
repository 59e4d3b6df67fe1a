//! `tokentrail produce`: diagnostic records from files sent to an event hub.

use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn produce(
    hub: String,
    namespace: Option<String>,
    credential: String,
    endpoint: Option<String>,
    partition: Option<String>,
    records_per_event: usize,
    files: Vec<PathBuf>,
) -> Result<ExitCode> {
    let credential = serde_json::from_value(serde_json::Value::String(credential.clone())).map_err(|_| {
        anyhow::anyhow!("--credential {credential:?}: use default, managed_identity, workload_identity, client_secret, client_certificate, azure_cli or connection_string")
    })?;
    let config = crate::config::EventHubsConfig {
        namespace,
        hubs: vec![hub.clone()],
        credential,
        endpoint: endpoint.clone(),
        ..crate::config::EventHubsConfig::for_hub(&hub)
    };
    let connect = crate::source::eventhubs::Connect::from_config(&config)?;
    let progress = crate::progress::bar("{spinner} {pos}/{len} files {wide_msg}")?;
    progress.set_length(files.len() as u64);
    let options = crate::source::produce::ProduceOptions {
        connect: &connect,
        hub: &hub,
        endpoint: endpoint.as_deref(),
        partition,
        records_per_event,
        files: &files,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let produced = runtime.block_on(crate::source::produce::produce(options, &progress))?;
    progress.finish_and_clear();
    println!("sent {} records in {} events ({} batches) to {hub}", produced.records, produced.events, produced.batches);
    Ok(ExitCode::SUCCESS)
}
