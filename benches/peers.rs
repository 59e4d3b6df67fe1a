//! TokenTrail against its peer on Event Hubs: `tokentrail serve` and the Python consumer a
//! team would write instead (`benches/peers/python_consumer.py`: the PyPI `azure-eventhub`
//! client, orjson, pyarrow into DuckDB), each draining the same backlog from the same test
//! hub into a fresh database, in one run, rounds alternated, medians compared. Two shapes:
//! envelopes of 100 records and of 10 (small events stress per-event costs). Writes its
//! section of BENCHMARKS.md.
//!
//! `cargo bench --bench peers` (TOKENTRAIL_BENCH_RECORDS changes the 1,000,000). Needs the
//! venv `.ci/run` makes (`~/.cache/tokentrail-venv`, or TOKENTRAIL_PEER_PYTHON).
//!
//! The figures are the test hub's, not the Event Hubs service's: the same clients and
//! protocol, but an in-memory hub on loopback, on the same cores as both consumers.

mod common;

use common::hub::{HUB, PARTITIONS, Service, generate, preload};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokentrail_testhub::{HubSpec, TestHub};

/// Rounds per shape, alternated (odd rounds run the peer first); medians are reported
/// (TOKENTRAIL_BENCH_ROUNDS changes it, for profiling).
const ROUNDS: usize = 3;
/// Records per event of each shape.
const SHAPES: [usize; 2] = [100, 10];
/// TokenTrail's records/s against the peer's, required in both shapes.
const TARGET: f64 = 5.0;

/// One consumer's drain of the backlog.
struct Drain {
    seconds: f64,
    cpu: Duration,
    peak_rss_mib: u64,
}

/// A hub holding `input` in envelopes of `per_event` records, before any consumer starts.
fn loaded_hub(input: &Path, per_event: usize) -> TestHub {
    let hub = TestHub::start(&[HubSpec { name: HUB.into(), partitions: PARTITIONS }]).unwrap();
    preload(&hub, input, per_event);
    hub
}

/// `tokentrail serve` from its process start to its last committed row.
fn drain_tokentrail(dir: &Path, hub: &TestHub, name: &str, records: usize) -> Drain {
    let started = Instant::now();
    let service = Service::start(dir, hub, name);
    let stored_at = service.wait_rows(records as i64);
    let drain = Drain {
        seconds: (stored_at - started).as_secs_f64(),
        cpu: service.cpu(),
        peak_rss_mib: service.peak_rss_mib(),
    };
    service.stop();
    drain
}

fn python() -> PathBuf {
    std::env::var_os("TOKENTRAIL_PEER_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/tokentrail-venv/bin/python")
    })
}

/// The peer, timed by itself from its first receive call to its last commit (it prints
/// that); its CPU time and peak RSS are the whole process's, from wait4.
fn drain_peer(dir: &Path, hub: &TestHub, name: &str, records: usize) -> Drain {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/python_consumer.py");
    let db = dir.join(format!("{name}.duckdb"));
    let out = dir.join(format!("{name}.json"));
    let mut command = Command::new(python());
    command
        .arg(&script)
        .arg(hub.connection_string(HUB))
        .arg(HUB)
        .arg(&db)
        .arg(records.to_string())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null());
    let measured = common::measure(command);
    assert!(measured.ok, "the Python peer failed (is the venv made by .ci/run there? {})", python().display());
    let printed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(printed["rows"].as_u64(), Some(records as u64), "the peer stored every record once");
    Drain {
        seconds: printed["seconds"].as_f64().unwrap(),
        cpu: measured.cpu,
        peak_rss_mib: measured.peak_rss_kib as u64 / 1024,
    }
}

/// Medians of a shape's rounds: records/s, CPU seconds per million records, highest peak RSS.
struct Summary {
    rate: f64,
    cpu_per_million: f64,
    peak_rss_mib: u64,
    seconds: Vec<f64>,
}

fn summarise(drains: &[Drain], records: usize) -> Summary {
    let seconds: Vec<f64> = drains.iter().map(|d| d.seconds).collect();
    let cpu = common::median(drains.iter().map(|d| d.cpu.as_secs_f64()).collect());
    Summary {
        rate: records as f64 / common::median(seconds.clone()),
        cpu_per_million: cpu * 1e6 / records as f64,
        peak_rss_mib: drains.iter().map(|d| d.peak_rss_mib).max().unwrap_or(0),
        seconds,
    }
}

fn main() {
    // The hub runs in this process.
    tokentrail_testhub::keep_freed_memory();
    let records = common::env_count("TOKENTRAIL_BENCH_RECORDS", 1_000_000usize);
    let rounds = common::env_count("TOKENTRAIL_BENCH_ROUNDS", ROUNDS);
    let dir = tempfile::tempdir().unwrap();
    let (input, bytes) = generate(dir.path(), records, 1);
    println!("generated {records} records, {:.2} GB", bytes as f64 / 1e9);

    // File ingest of the same records, the reference for CPU per record.
    let file: Vec<common::Measured> = (0..rounds)
        .map(|round| {
            common::settle();
            common::run_ingest(&dir.path().join(format!("file{round}.duckdb")), &input, None)
        })
        .collect();
    let file_cpu = common::median(file.iter().map(|m| m.cpu.as_secs_f64()).collect()) * 1e6 / records as f64;
    println!("file ingest: {file_cpu:.2} CPU-s a million records");

    let mut rows = String::new();
    let mut verdicts = Vec::new();
    for per_event in SHAPES {
        let (mut ours, mut peer) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            type DrainFn = fn(&Path, &TestHub, &str, usize) -> Drain;
            let run = |who: &str, drain: DrainFn, drains: &mut Vec<Drain>| {
                common::settle();
                let hub = loaded_hub(&input, per_event);
                let d = drain(dir.path(), &hub, &format!("{who}-{per_event}-{round}"), records);
                println!(
                    "envelopes of {per_event}, round {round}: {who} {:.2} s, {:.2} CPU-s, {} MiB",
                    d.seconds,
                    d.cpu.as_secs_f64(),
                    d.peak_rss_mib
                );
                drains.push(d);
            };
            if round % 2 == 1 {
                run("python", drain_peer, &mut peer);
                run("tokentrail", drain_tokentrail, &mut ours);
            } else {
                run("tokentrail", drain_tokentrail, &mut ours);
                run("python", drain_peer, &mut peer);
            }
        }
        let (ours, peer) = (summarise(&ours, records), summarise(&peer, records));
        let ratio = ours.rate / peer.rate;
        let spread = |s: &Summary| s.seconds.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>().join(", ");
        println!("envelopes of {per_event}: tokentrail {:.0} records/s, peer {:.0}: {ratio:.2}x", ours.rate, peer.rate);
        rows += &format!(
            "| {per_event} | `tokentrail serve` | {:.0} | **{ratio:.2}x** | {:.2} ({:.2}x file ingest) | {} | {} |\n\
             | {per_event} | Python peer | {:.0} | 1.00x | {:.2} | {} | {} |\n",
            ours.rate,
            ours.cpu_per_million,
            ours.cpu_per_million / file_cpu,
            ours.peak_rss_mib,
            spread(&ours),
            peer.rate,
            peer.cpu_per_million,
            peer.peak_rss_mib,
            spread(&peer),
        );
        verdicts.push((per_event, ratio, ours.cpu_per_million / file_cpu));
    }

    let met = |ok: bool| if ok { "met" } else { "not met" };
    let required = verdicts.iter().map(|(n, r, _)| format!("envelopes of {n}: {r:.2}x, {}", met(*r >= TARGET)));
    let stretch = verdicts.iter().map(|(n, _, c)| format!("envelopes of {n}: {c:.2}x, {}", met(*c <= 1.3)));
    let section = format!(
        "<!-- bench:peers -->\n## Event Hubs: TokenTrail against the Python peer\n\n\
         `cargo bench --bench peers` on this machine ({cores} cores): {records} generated Cosmos DB records ({gb:.2} GB) \
         waiting in the test hub (`tests/testhub`, {PARTITIONS} partitions, loopback, in the benchmark's process) before \
         either consumer starts; each drains them from the earliest position into a fresh DuckDB file. `tokentrail serve` \
         is timed from its process start to its last committed row (seen in `/metrics`); the peer \
         (`benches/peers/python_consumer.py`, unchanged from `shared/peers`: `azure-eventhub` 5.15.1 `receive_batch` over \
         all partitions, orjson, pyarrow into DuckDB 2.0.0 with each partition's position in the same transaction; 20 \
         columns, no integrity chain, no quarantine) from its first receive call to its last commit, as it prints. \
         {rounds} rounds per shape, alternated (odd rounds run the peer first), medians. CPU-s: user plus system time of \
         the consumer's process per million records, median (the hub's is not counted; it runs in this benchmark's \
         process for both); file ingest of the same records takes {file_cpu:.2} CPU-s a million (`tokentrail ingest`, \
         median of {rounds}). Peak RSS: the highest of the rounds.\n\n\
         | records per event | consumer | records/s | vs the peer | CPU-s per million | peak RSS MiB | seconds (rounds) |\n\
         |---|---|---|---|---|---|---|\n{rows}\n\
         Target (required), TokenTrail at least {TARGET}x the peer's records/s: {required}. Stretch, its CPU per record \
         within 1.3x of file ingest's: {stretch}. Test-hub figures: the same clients and protocol as Azure, an in-memory \
         hub on loopback sharing the cores. Generated {when}.\n<!-- /bench:peers -->\n",
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
        gb = bytes as f64 / 1e9,
        required = required.collect::<Vec<_>>().join("; "),
        stretch = stretch.collect::<Vec<_>>().join("; "),
        when = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    common::write_section("peers", &section);
}
