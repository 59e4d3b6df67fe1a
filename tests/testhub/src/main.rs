//! `tokentrail-testhub serve [--port N] --hub NAME:PARTITIONS [--hub ...] [--consumer-group HUB:GROUP ...]`
//!
//! Runs the test hub in the foreground for manual runs; prints its endpoint and one
//! connection string per hub. Logs go to stderr (`RUST_LOG`, default `info`).

use std::process::ExitCode;

use tokentrail_testhub::{HubSpec, TestHub};

const USAGE: &str = "usage: tokentrail-testhub serve [--port N] --hub NAME:PARTITIONS [--hub NAME:PARTITIONS ...] \
                     [--consumer-group HUB:GROUP ...] [--disposition-delay-ms N]";

struct Args {
    port: u16,
    hubs: Vec<HubSpec>,
    consumer_groups: Vec<(String, String)>,
    /// See `TestHub::set_disposition_delay`; 0 suits producers on a current-thread
    /// runtime, like `tokentrail produce`.
    disposition_delay_ms: Option<u64>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("serve") => {}
        Some("-h" | "--help") | None => return Err(USAGE.to_string()),
        Some(other) => return Err(format!("unknown command {other:?}\n{USAGE}")),
    }
    let mut parsed = Args { port: 0, hubs: Vec::new(), consumer_groups: Vec::new(), disposition_delay_ms: None };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--port" => parsed.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--hub" => {
                let v = value()?;
                let (name, partitions) =
                    v.rsplit_once(':').ok_or_else(|| format!("--hub {v:?}: expected NAME:PARTITIONS"))?;
                let partitions = partitions.parse().map_err(|e| format!("--hub {v:?}: {e}"))?;
                parsed.hubs.push(HubSpec::new(name, partitions));
            }
            "--consumer-group" => {
                let v = value()?;
                let (hub, group) =
                    v.split_once(':').ok_or_else(|| format!("--consumer-group {v:?}: expected HUB:GROUP"))?;
                parsed.consumer_groups.push((hub.to_string(), group.to_string()));
            }
            "--disposition-delay-ms" => {
                parsed.disposition_delay_ms =
                    Some(value()?.parse().map_err(|e| format!("--disposition-delay-ms: {e}"))?)
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    if parsed.hubs.is_empty() {
        return Err(format!("give at least one --hub\n{USAGE}"));
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    tokentrail_testhub::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&args) {
        Ok(a) => a,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    for (hub, _) in &args.consumer_groups {
        if !args.hubs.iter().any(|h| h.name.eq_ignore_ascii_case(hub)) {
            eprintln!("--consumer-group: no --hub named {hub:?}");
            return ExitCode::from(2);
        }
    }
    let hub = match TestHub::start_on_port(&args.hubs, args.port) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cannot start the test hub: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(ms) = args.disposition_delay_ms {
        hub.set_disposition_delay(std::time::Duration::from_millis(ms));
    }
    for (name, group) in &args.consumer_groups {
        hub.add_consumer_group(name, group);
    }
    println!("endpoint: {}", hub.endpoint());
    for spec in &args.hubs {
        println!("{} ({} partitions): {}", spec.name, spec.partitions, hub.connection_string(&spec.name));
    }
    println!("Ctrl-C to stop.");
    // The hub serves on its own thread; this one only waits.
    loop {
        std::thread::park();
    }
}
