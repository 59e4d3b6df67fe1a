//! Three `tokentrail serve` instances sharing a balanced hub and a shared lake
//! ([eventhubs.balance] shared_lake, Azurite): events streamed at a steady rate while an
//! instance is SIGKILLed and started again, ten times. Measures, per event, the time from
//! being enqueued to being committed in an instance's DuckDB (the baseline) and to being
//! in the shared lake (its segment claimed), and then checks the lake holds every record
//! once. A kill is of the rules lease holder when the last holder's successor has run its
//! first pass (it measures the time from the holder's death to the next holder's first pass
//! of the rules over everyone's counts), else of the instance killed last as it starts
//! again. Writes its section of BENCHMARKS.md.
//!
//! `cargo bench --bench shared_lake` (TOKENTRAIL_BENCH_SECONDS changes the 240 s stream,
//! TOKENTRAIL_BENCH_KILLS the 10 kills). Needs Azurite as `.ci/run` installs it.

#[path = "../tests/common/azurite.rs"]
#[allow(dead_code)] // the tests use more of it
mod azurite;
mod common;

use azurite::{Azurite, KEY};
use common::hub::{HUB, Service};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokentrail_testhub::{HubSpec, TestHub};

const PARTITIONS: u32 = 32;
const INTERVAL_MS: u64 = 200;
const EXPIRY_MS: u64 = 2_000;
/// Segments every 5 s (the default is 30 s): the lag measured is mostly this interval.
const SEGMENT_MS: u64 = 5_000;
const PER_EVENT: usize = 100;

/// When each event of each partition was enqueued, by sequence number.
type Enqueued = Mutex<Vec<Vec<Instant>>>;

/// How far a partition is known to be, in DuckDB (some instance's commit) and in the lake.
#[derive(Default, Clone, Copy)]
struct Seen {
    hot: i64,
    lake: i64,
}

/// Latencies (s) of the events between `from` (exclusive) and `to`, reached at `now`.
fn reached(enqueued: &Enqueued, partition: usize, from: i64, to: i64, now: Instant, into: &mut Vec<f64>) {
    let enqueued = enqueued.lock().unwrap();
    for sequence in (from + 1).max(0)..=to {
        if let Some(at) = enqueued[partition].get(sequence as usize) {
            into.push(now.saturating_duration_since(*at).as_secs_f64());
        }
    }
}

/// Passes of the rules over everyone's counts an instance ran (0 while it does not answer).
fn fleet_passes(service: &Service) -> f64 {
    let text = service.metrics().unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("tokentrail_fleet_rule_passes_total "))
        .map_or(0.0, |n| n.trim().parse().unwrap_or(0.0))
}

/// The instance holding the rules lease, as its own status says.
fn lease_holder(services: &[Service]) -> Option<usize> {
    services.iter().position(|s| {
        s.status().is_some_and(|status| status["shared_lake"]["rules_lease"]["held_here"].as_bool() == Some(true))
    })
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(((values.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN)
}

fn main() {
    tokentrail_testhub::keep_freed_memory();
    let seconds = common::env_count("TOKENTRAIL_BENCH_SECONDS", 240u64);
    let kills = common::env_count("TOKENTRAIL_BENCH_KILLS", 10usize);
    let dir = tempfile::tempdir().unwrap();
    let azurite = Azurite::start();
    assert!(azurite.create_container("checkpoints"));
    assert!(azurite.create_container("lake"));
    let hub = TestHub::start(&[HubSpec { name: HUB.into(), partitions: PARTITIONS }]).unwrap();
    let extra = format!(
        "lag_interval_secs = 1\n[eventhubs.balance]\nhubs = [\"{HUB}\"]\ncheckpoint_store = \"{0}/checkpoints\"\n\
         update_interval_ms = {INTERVAL_MS}\nexpiry_ms = {EXPIRY_MS}\nshared_lake = \"{0}/lake\"\nsegment_interval_ms = {SEGMENT_MS}\n",
        azurite.endpoint()
    );
    let env = [("TOKENTRAIL_CHECKPOINT_ACCOUNT_KEY", KEY), ("TOKENTRAIL_LAKE_ACCOUNT_KEY", KEY)];
    let start =
        |i: usize, generation: usize| Service::spawn(dir.path(), &hub, &format!("lake-{i}-{generation}"), &extra, &env);
    let mut services: Vec<Service> = (0..3).map(|i| start(i, 0)).collect();

    // 50 events of 100 records a second: 5,000 records a second, well under what three store.
    let events = (seconds * 50) as usize;
    let streamed = dir.path().join("stream.ndjson");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&streamed).unwrap());
        tokentrail::synth::write_cosmos_ndjson(&mut out, events * PER_EVENT, 21).unwrap();
    }
    let bodies: Vec<Vec<u8>> = {
        // Each record's time is when it is sent, as a live log's is (the generator spreads
        // them over a week): the rules' periods then hold what they would in production.
        let text = std::fs::read_to_string(&streamed).unwrap();
        let step = chrono::TimeDelta::microseconds((seconds * 1_000_000 / (events * PER_EVENT) as u64) as i64);
        let first = chrono::Utc::now() + chrono::TimeDelta::seconds(10);
        let lines: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, line)| {
                let mut record: serde_json::Value = serde_json::from_str(line).unwrap();
                record["time"] = (first + step * i as i32).to_rfc3339().into();
                record.to_string()
            })
            .collect();
        lines.chunks(PER_EVENT).map(|c| format!("{{\"records\":[{}]}}", c.join(",")).into_bytes()).collect()
    };
    let enqueued: Enqueued = Mutex::new(vec![Vec::new(); PARTITIONS as usize]);
    let done = AtomicBool::new(false);
    let mut hot_latency = Vec::new();
    let mut lake_latency = Vec::new();
    let mut lag_samples = Vec::new();
    let mut takeovers: Vec<f64> = Vec::new();
    let mut seen = vec![Seen { hot: -1, lake: -1 }; PARTITIONS as usize];
    let sample =
        |services: &[Service], seen: &mut [Seen], hot: &mut Vec<f64>, lake: &mut Vec<f64>, lags: &mut Vec<f64>| {
            let now = Instant::now();
            let mut best: HashMap<usize, Seen> = HashMap::new();
            for service in services {
                let Some(status) = service.status() else { continue };
                if let Some(lag) = status["shared_lake"]["lag_seconds"].as_f64() {
                    lags.push(lag);
                }
                for p in status["eventhubs"].as_array().into_iter().flatten() {
                    let Some(partition) = p["partition"].as_str().and_then(|p| p.parse::<usize>().ok()) else {
                        continue;
                    };
                    let entry = best.entry(partition).or_insert(Seen { hot: -1, lake: -1 });
                    if p["owned"].as_bool() == Some(true) {
                        entry.hot = entry.hot.max(p["committed_sequence"].as_i64().unwrap_or(-1));
                    }
                    entry.lake = entry.lake.max(p["lake_sequence"].as_i64().unwrap_or(-1));
                }
            }
            for (partition, now_seen) in best {
                let before = seen[partition];
                if now_seen.hot > before.hot {
                    reached(&enqueued, partition, before.hot, now_seen.hot, now, hot);
                    seen[partition].hot = now_seen.hot;
                }
                if now_seen.lake > before.lake {
                    reached(&enqueued, partition, before.lake, now_seen.lake, now, lake);
                    seen[partition].lake = now_seen.lake;
                }
            }
        };
    let started = Instant::now();
    let (mut killed, mut holder_kills) = (0, 0);
    std::thread::scope(|scope| {
        let (hub, enqueued, done) = (&hub, &enqueued, &done);
        scope.spawn(move || {
            let period = Duration::from_millis(20);
            let mut next = Instant::now();
            for (i, body) in bodies.into_iter().enumerate() {
                let partition = i as u32 % PARTITIONS;
                let at = Instant::now();
                let sequence = hub.append(HUB, partition, body);
                let mut enqueued = enqueued.lock().unwrap();
                let list = &mut enqueued[partition as usize];
                assert_eq!(list.len() as i64, sequence, "one producer: sequence numbers in order");
                list.push(at);
                drop(enqueued);
                next += period;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            done.store(true, Ordering::Relaxed);
        });
        // Kills spread over the stream: of the lease holder once the last one's successor
        // has run its first pass, else of the instance killed last (starting again, so not
        // the one about to take over); sampling every 250 ms throughout.
        let every = Duration::from_secs(seconds) / (kills as u32 + 1);
        // A kill whose successor has not run a pass yet: when, and each instance's passes then.
        let mut pending: Option<(Instant, Vec<f64>)> = None;
        let mut last_victim = None;
        while !done.load(Ordering::Relaxed) {
            sample(&services, &mut seen, &mut hot_latency, &mut lake_latency, &mut lag_samples);
            if let Some((at, before)) = &pending {
                let now: Vec<f64> = services.iter().map(fleet_passes).collect();
                if now.iter().zip(before).any(|(n, b)| n > b) {
                    takeovers.push(at.elapsed().as_secs_f64());
                    println!(
                        "holder kill {holder_kills}: the next holder's first rule pass {:.1} s after",
                        at.elapsed().as_secs_f64()
                    );
                    pending = None;
                }
            }
            if killed < kills && started.elapsed() >= every * (killed as u32 + 1) {
                let victim = match (&pending, last_victim) {
                    (Some(_), Some(last)) => last,
                    _ => lease_holder(&services).unwrap_or(killed % 3),
                };
                services.remove(victim).kill();
                let at = Instant::now();
                services.insert(victim, start(victim, killed + 1));
                match &mut pending {
                    // The restarted instance counts from 0.
                    Some((_, before)) => before[victim] = 0.0,
                    None => {
                        let before =
                            services.iter().enumerate().map(|(i, s)| if i == victim { 0.0 } else { fleet_passes(s) });
                        pending = Some((at, before.collect()));
                        holder_kills += 1;
                    }
                }
                last_victim = Some(victim);
                killed += 1;
                println!("kill {killed} (instance {victim}) at {:.1} s", started.elapsed().as_secs_f64());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    // Until every event is in the lake.
    let deadline = Instant::now() + Duration::from_secs(300);
    let last: Vec<i64> = enqueued.lock().unwrap().iter().map(|l| l.len() as i64 - 1).collect();
    while seen.iter().zip(&last).any(|(s, l)| s.lake < *l) {
        assert!(Instant::now() < deadline, "the lake did not reach every partition's last event");
        sample(&services, &mut seen, &mut hot_latency, &mut lake_latency, &mut lag_samples);
        std::thread::sleep(Duration::from_millis(250));
    }
    for service in services {
        service.stop();
    }
    let location = tokentrail::lake::Location {
        store: Arc::new(azurite.object_store("lake")),
        prefix: Default::default(),
        description: format!("{}/lake", azurite.endpoint()),
        directory: None,
    };
    let reports = tokentrail::lake::segments::check(&tokentrail::lake::Lake::new(location).unwrap()).unwrap();
    let problems: Vec<&String> = reports.iter().flat_map(|r| &r.problems).collect();
    assert!(problems.is_empty(), "{problems:?}");
    let requests: i64 = reports.iter().map(|r| r.rows.get("cosmos_requests").copied().unwrap_or(0)).sum();
    let duplicates: i64 = reports.iter().map(|r| r.duplicate_rows).sum();
    let segments: usize = reports.iter().map(|r| r.segments).sum();
    let sent = events * PER_EVENT;
    assert_eq!((requests, duplicates), (sent as i64, 0), "every record in the lake once");

    let (hot50, hot95, hotmax) =
        (percentile(&mut hot_latency, 0.5), percentile(&mut hot_latency, 0.95), percentile(&mut hot_latency, 1.0));
    let (lake50, lake95, lakemax) =
        (percentile(&mut lake_latency, 0.5), percentile(&mut lake_latency, 0.95), percentile(&mut lake_latency, 1.0));
    let (lag50, lagmax) = (percentile(&mut lag_samples, 0.5), percentile(&mut lag_samples, 1.0));
    println!("enqueued → DuckDB: p50 {hot50:.2} s, p95 {hot95:.2} s, max {hotmax:.2} s");
    println!("enqueued → shared lake: p50 {lake50:.2} s, p95 {lake95:.2} s, max {lakemax:.2} s");
    println!("status lag_seconds: p50 {lag50:.0}, max {lagmax:.0}; {requests} requests in {segments} segments");
    let lease = tokentrail::source::eventhubs::lease::SECONDS as f64;
    let measured = takeovers.len();
    let (take50, takemax) = (percentile(&mut takeovers, 0.5), percentile(&mut takeovers, 1.0));
    println!(
        "holder killed → next holder's first rule pass: p50 {take50:.1} s, max {takemax:.1} s over {measured} kills"
    );

    let section = format!(
        "<!-- bench:shared_lake -->\n## Shared lake: each event once from many instances\n\n\
         `cargo bench --bench shared_lake` on this machine ({cores} cores): three `serve` instances share a \
         {PARTITIONS}-partition hub (`[eventhubs.balance]`, ownership renewed every {INTERVAL_MS} ms, expiring after \
         {EXPIRY_MS} ms) and a shared lake in Azurite (segments every {SEGMENT_MS} ms; the default is 30 s). \
         {events} events of {PER_EVENT} records (each timed when it is sent) stream in over {seconds} s (5,000 \
         records a second) while one instance \
         after another is SIGKILLed and started again, {killed} times ({kills} asked for): {holder_kills} of them of the \
         rules lease holder, each once the last one's successor had run its first pass; the others, while a \
         successor had not, of the instance killed last, as it started again. Each instance's `/api/status` is read every \
         250 ms: an event counts as stored when some instance's committed sequence passes it, and as in the lake when \
         a segment claim does (so both are up to 0.25 s late).\n\n\
         | enqueued → | p50 s | p95 s | max s |\n|---|---|---|---|\n\
         | committed in an instance's DuckDB (baseline) | {hot50:.2} | {hot95:.2} | {hotmax:.2} |\n\
         | in the shared lake | {lake50:.2} | {lake95:.2} | {lakemax:.2} |\n\n\
         The lake trails DuckDB by {ratio:.1}x at the median: by the segment interval, and after a kill by the expiry \
         and the events read again. The status page's lake lag (age of the oldest committed rows not in the lake, \
         target {target} s) was {lag50:.0} s at the median of the samples, {lagmax:.0} s at most. After the stream \
         `lake::segments::check` read every claim and file: {requests} requests in {segments} segments, each of the \
         {sent} records once, no problem found.\n\n\
         The rules lease is a blob lease of {lease:.0} s, renewed every 5 s. From a holder's SIGKILL to \
         the next holder's first pass of the rules over everyone's counts (`tokentrail_fleet_rule_passes_total` \
         moving on another instance, read every 250 ms): p50 {take50:.1} s, max {takemax:.1} s over {measured} kills, \
         {take_ratio:.2}x the lease's duration, which is the floor (the service lets nobody take a lease before it \
         expires). The rest is the new holder's first pass. Every instance has copied the requests already (the \
         last two days, as segments come); the pass runs the ten rules from 15 minutes before where the last holder \
         had got to, less the rules' windows of up to a day: here over the whole stream so far, so it grows from \
         kill to kill, on two cores shared with two more instances, Azurite and the test hub.\n\
         Generated {when}.\n<!-- /bench:shared_lake -->\n",
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
        ratio = lake50 / hot50,
        take_ratio = take50 / lease,
        target = tokentrail::source::eventhubs::lag_target(SEGMENT_MS),
        when = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    common::write_section("shared_lake", &section);
}
