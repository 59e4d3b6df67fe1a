//! Several `tokentrail serve` instances sharing one balanced hub ([eventhubs.balance]:
//! Event Hubs' partition ownership over blobs in Azurite), against one instance reading
//! the hub as today (broadcast), on the same backlog in the same run; then takeovers: an
//! instance SIGKILLed while events stream in, the time until the others read all its
//! partitions. Writes its section of BENCHMARKS.md.
//!
//! `cargo bench --bench scale_out` (TOKENTRAIL_BENCH_RECORDS changes the 2,000,000 of the
//! backlog, TOKENTRAIL_BENCH_KILLS the 10 kills). Needs Azurite as `.ci/run` installs it.
//!
//! On this 2-core machine every instance shares the same two cores (and the hub, in this
//! process, too): more instances cannot store more records a second here, so the figure
//! that carries to real nodes is the CPU each record costs.

#[path = "../tests/common/azurite.rs"]
#[allow(dead_code)] // the tests use more of it
mod azurite;
mod common;

use azurite::{Azurite, KEY};
use common::hub::{HUB, Service, generate, preload_partitions};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokentrail_testhub::{HubSpec, TestHub};

const PARTITIONS: u32 = 32;
/// Ownership renewed every 200 ms, expired after 2 s: seconds, not the defaults' minute,
/// so that a run is about storing, not waiting (a new instance claims one partition a cycle).
const INTERVAL_MS: u64 = 200;
const EXPIRY_MS: u64 = 2_000;

fn balanced(azurite: &Azurite, container: &str) -> String {
    format!(
        "lag_interval_secs = 1\n[eventhubs.balance]\nhubs = [\"{HUB}\"]\ncheckpoint_store = \"{}/{container}\"\n\
         update_interval_ms = {INTERVAL_MS}\nexpiry_ms = {EXPIRY_MS}\n",
        azurite.endpoint()
    )
}

/// Lag of each partition as `/metrics` shows it (`tokentrail_eventhubs_lag_events`).
fn lags(service: &Service) -> Vec<i64> {
    service
        .metrics()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("tokentrail_eventhubs_lag_events{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok().map(|v| v as i64))
        .collect()
}

/// Waits until every partition shows no lag (it is measured once a second).
fn wait_drained(service: &Service, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        let lag = lags(service);
        if lag.len() == PARTITIONS as usize && lag.iter().all(|l| *l == 0) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "partitions still lag after {timeout:?}: {lag:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Partitions each instance reads now (`owned` in its status).
fn reading(service: &Service) -> Option<BTreeSet<String>> {
    let status = service.status()?;
    Some(
        status["eventhubs"]
            .as_array()?
            .iter()
            .filter(|p| p["owned"].as_bool() == Some(true))
            .filter_map(|p| p["partition"].as_str().map(str::to_owned))
            .collect(),
    )
}

/// Waits until `alive` read all partitions between them, none twice, each its share.
fn wait_spread(alive: &[&Service], timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    let n = alive.len();
    let (low, high) = (PARTITIONS as usize / n, (PARTITIONS as usize).div_ceil(n));
    loop {
        if let Some(read) = alive.iter().map(|s| reading(s)).collect::<Option<Vec<_>>>() {
            let all: BTreeSet<&String> = read.iter().flatten().collect();
            let total: usize = read.iter().map(BTreeSet::len).sum();
            if total == PARTITIONS as usize
                && all.len() == total
                && read.iter().all(|r| (low..=high).contains(&r.len()))
            {
                return Instant::now();
            }
        }
        assert!(Instant::now() < deadline, "partitions not spread over {n} instances in {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Requests stored over all the databases: (rows, distinct activity ids).
fn stored(dbs: &[&Path]) -> (i64, i64) {
    let connection = duckdb::Connection::open_in_memory().unwrap();
    let mut union = Vec::new();
    for (i, db) in dbs.iter().enumerate() {
        connection.execute(&format!("ATTACH '{}' AS db{i} (READ_ONLY)", db.display()), []).unwrap();
        union.push(format!("SELECT activity_id FROM db{i}.cosmos_requests"));
    }
    let sql = format!("SELECT count(*), count(DISTINCT activity_id) FROM ({})", union.join(" UNION ALL "));
    connection.query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap()
}

struct Run {
    label: String,
    seconds: f64,
    cpu: f64,
    peak_rss_mib: u64,
    duplicates: i64,
}

/// `instances` services (balanced over `azurite`'s `container`, or one broadcast when
/// `None`) drain `input` from a fresh 32-partition hub: from the first start to no lag.
fn drain(dir: &Path, input: &Path, records: usize, instances: usize, azurite: Option<(&Azurite, &str)>) -> Run {
    common::settle();
    let hub = TestHub::start(&[HubSpec { name: HUB.into(), partitions: PARTITIONS }]).unwrap();
    preload_partitions(&hub, input, 100, PARTITIONS);
    let (extra, label) = match azurite {
        Some((azurite, container)) => {
            assert!(azurite.create_container(container));
            (
                balanced(azurite, container),
                format!("balanced, {instances} instance{}", if instances > 1 { "s" } else { "" }),
            )
        }
        None => ("lag_interval_secs = 1\n".to_owned(), "broadcast, 1 instance (today's path)".to_owned()),
    };
    let started = Instant::now();
    let services: Vec<Service> = (0..instances)
        .map(|i| {
            let name = format!("{}-{instances}-{i}", azurite.map_or("broadcast", |(_, c)| c));
            Service::spawn(dir, &hub, &name, &extra, &[("TOKENTRAIL_CHECKPOINT_ACCOUNT_KEY", KEY)])
        })
        .collect();
    let done = wait_drained(&services[0], Duration::from_secs(900));
    let seconds = (done - started).as_secs_f64();
    let cpu: f64 = services.iter().map(|s| s.cpu().as_secs_f64()).sum();
    let peak_rss_mib = services.iter().map(Service::peak_rss_mib).max().unwrap_or(0);
    let dbs: Vec<std::path::PathBuf> = services.iter().map(|s| s.db().to_path_buf()).collect();
    for service in services {
        service.stop();
    }
    let (rows, distinct) = stored(&dbs.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    assert_eq!(distinct, records as i64, "{label}: every record stored");
    println!("{label}: {seconds:.2} s, {cpu:.2} CPU-s, {peak_rss_mib} MiB, {} stored twice", rows - distinct);
    Run { label, seconds, cpu, peak_rss_mib, duplicates: rows - distinct }
}

fn main() {
    tokentrail_testhub::keep_freed_memory();
    let records = common::env_count("TOKENTRAIL_BENCH_RECORDS", 2_000_000usize);
    let kills = common::env_count("TOKENTRAIL_BENCH_KILLS", 10usize);
    let dir = tempfile::tempdir().unwrap();
    let (input, bytes) = generate(dir.path(), records, 11);
    println!("generated {records} records, {:.2} GB", bytes as f64 / 1e9);
    let azurite = Azurite::start();

    let mut runs = vec![drain(dir.path(), &input, records, 1, None)];
    for instances in 1..=3 {
        runs.push(drain(dir.path(), &input, records, instances, Some((&azurite, &format!("drain{instances}")))));
    }
    let baseline = runs[0].seconds;
    let mut rows = String::new();
    for run in &runs {
        rows += &format!(
            "| {} | {:.0} | {:.2}x | {:.2} | {:.2} | {} | {} |\n",
            run.label,
            records as f64 / run.seconds,
            baseline / run.seconds,
            run.seconds,
            run.cpu * 1e6 / records as f64,
            run.peak_rss_mib,
            run.duplicates
        );
    }

    // Takeovers: three instances, events streaming in, one SIGKILLed each round.
    let hub = TestHub::start(&[HubSpec { name: HUB.into(), partitions: PARTITIONS }]).unwrap();
    assert!(azurite.create_container("takeover"));
    let extra = balanced(&azurite, "takeover");
    let env = [("TOKENTRAIL_CHECKPOINT_ACCOUNT_KEY", KEY)];
    let start = |i: usize, generation: usize| {
        Service::spawn(dir.path(), &hub, &format!("takeover-{i}-{generation}"), &extra, &env)
    };
    let mut services: Vec<Service> = (0..3).map(|i| start(i, 0)).collect();
    let mut dbs: Vec<std::path::PathBuf> = services.iter().map(|s| s.db().to_path_buf()).collect();
    wait_spread(&services.iter().collect::<Vec<_>>(), Duration::from_secs(120));
    // A steady stream of 100-record events, well under what the three store.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let streamed = dir.path().join("stream.ndjson");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&streamed).unwrap());
        tokentrail::synth::write_cosmos_ndjson(&mut out, 1_000_000, 12).unwrap();
    }
    let bodies: Vec<Vec<u8>> = {
        let text = std::fs::read_to_string(&streamed).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        lines.chunks(100).map(|c| format!("{{\"records\":[{}]}}", c.join(",")).into_bytes()).collect()
    };
    let takeovers = std::thread::scope(|scope| {
        let producer = scope.spawn(|| {
            for (i, body) in bodies.into_iter().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                hub.append(HUB, i as u32 % PARTITIONS, body);
                sent.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20)); // 5,000 records a second
            }
        });
        let mut takeovers = Vec::new();
        for round in 0..kills {
            let victim = round % 3;
            let killed_at = Instant::now();
            services.remove(victim).kill();
            let taken = wait_spread(&services.iter().collect::<Vec<_>>(), Duration::from_secs(60));
            let seconds = (taken - killed_at).as_secs_f64();
            println!("kill {}: its partitions read by the two others {seconds:.2} s later", round + 1);
            takeovers.push(seconds);
            let restarted = start(victim, round + 1);
            dbs.push(restarted.db().to_path_buf());
            services.insert(victim, restarted);
            wait_spread(&services.iter().collect::<Vec<_>>(), Duration::from_secs(120));
        }
        stop.store(true, Ordering::Relaxed);
        producer.join().unwrap();
        takeovers
    });
    wait_drained(&services[0], Duration::from_secs(300));
    for service in services {
        service.stop();
    }
    let sent_records = sent.load(Ordering::Relaxed) * 100;
    let (stored_rows, distinct) = stored(&dbs.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    assert_eq!(distinct as usize, sent_records, "every streamed record stored through {kills} kills");
    let mut sorted = takeovers.clone();
    sorted.sort_by(f64::total_cmp);
    let median = common::median(takeovers.clone());
    let max = sorted.last().copied().unwrap_or(0.0);
    println!("takeover: median {median:.2} s, max {max:.2} s; {} stored twice", stored_rows - distinct);

    let section = format!(
        "<!-- bench:scale_out -->\n## Event Hubs: instances sharing a balanced hub\n\n\
         `cargo bench --bench scale_out` on this machine ({cores} cores): {records} generated Cosmos DB records \
         ({gb:.2} GB, envelopes of 100) waiting in the test hub ({PARTITIONS} partitions, in the benchmark's process) \
         before the instances start; each run drains them into fresh DuckDB files, timed from the first instance's start \
         to no lag on any partition (measured once a second, so up to a second late). Balanced runs share the hub through \
         `[eventhubs.balance]` (ownership blobs in Azurite, renewed every {INTERVAL_MS} ms, expiring after {EXPIRY_MS} ms; \
         an instance claims one partition a cycle). CPU-s: user plus system time of all the instances per million \
         records. Stored twice: rows a new owner stored again after a partition moved (from the blob checkpoint, up \
         to a second behind what the old owner stored; each instance has its own file).\n\n\
         | run | records/s | vs today's path | seconds | CPU-s per million | peak RSS MiB (an instance) | stored twice |\n\
         |---|---|---|---|---|---|---|\n{rows}\n\
         All instances share this machine's {cores} cores and the hub runs beside them, so a second and third instance \
         cannot add records a second here; on real nodes each brings its own cores, and what scales is the CPU per \
         record above.\n\n\
         Takeover: three instances, {events_sent} events of 100 records streamed at 5,000 records a second, one \
         instance SIGKILLed {kills} times (in turn, restarted after the two others had all partitions): from the kill \
         to the two others reading all {PARTITIONS} partitions, median **{median:.2} s**, max {max:.2} s (expiry \
         {expiry:.1} s). Every one of the {sent_records} records streamed was stored; {twice} rows twice. \
         Generated {when}.\n<!-- /bench:scale_out -->\n",
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
        gb = bytes as f64 / 1e9,
        events_sent = sent_records / 100,
        expiry = EXPIRY_MS as f64 / 1000.0,
        twice = stored_rows - distinct,
        when = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    common::write_section("scale_out", &section);
}
