//! API under load while ingest runs: 200 concurrent clients (each a thread with its
//! own keep-alive connection) call a mix of endpoints with real development tokens,
//! while the same process ingests a file into the same DuckDB database, as `serve`
//! does with Event Hubs. Measures p50/p99 latency per endpoint and ingest records/s,
//! against ingest of the same file with no API load, in the same run. Writes its
//! section of BENCHMARKS.md.
//!
//! Then one slow Responder: while one caller keeps the API busy with console queries
//! that run to the timeout and CSV exports read at 2 KB/s, another caller polls
//! `/api/status`; its latency is compared with the same polling alone, in the same run.
//!
//! `cargo bench --bench api` (TOKENTRAIL_BENCH_RECORDS to change the 1,000,000;
//! TOKENTRAIL_BENCH_CLIENTS to change the 200).

mod common;

use chrono::{DateTime, Duration as TimeDelta, Utc};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokentrail::auth::Role;
use tokentrail::ingest::PipelineOptions;
use tokentrail::ingest::files::ingest_files;
use tokentrail::rules::{DetectionConfig, Detector};
use tokentrail::store::{Store, StoreOptions};
use tokentrail::synth::{Generator, Scenario, Tenant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A database with a week of generated history (scenarios included) and its findings:
/// what the API reads while the load file streams in.
fn prepare(dir: &Path, name: &str, history: &Path) -> Arc<Store> {
    let store = Arc::new(Store::open(&dir.join(format!("{name}.duckdb")), &StoreOptions::default()).unwrap());
    ingest(&store, history);
    let (detector, _) = Detector::open(&store, &DetectionConfig::default()).unwrap();
    detector.evaluate_after_commit(&store).unwrap();
    store
}

fn ingest(store: &Store, path: &Path) -> Duration {
    let mut writer = store.writer().unwrap();
    let started = Instant::now();
    let options = PipelineOptions { workers: common::THREADS, ..PipelineOptions::default() };
    let report =
        ingest_files(store, &mut writer, &[path.to_path_buf()], options, indicatif::ProgressBar::hidden()).unwrap();
    assert!(report.failed.is_empty());
    started.elapsed()
}

/// The calls the clients make, round robin: what an on-call engineer's browser does.
fn endpoints(store: &Store) -> Vec<(&'static str, String, Option<String>)> {
    let conn = store.connection().unwrap();
    let one = |sql: &str| -> String { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let principal = one(
        "SELECT principal_id FROM cosmos_requests WHERE principal_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    );
    let finding: i64 = conn.query_row("SELECT min(id) FROM findings", [], |r| r.get(0)).unwrap();
    vec![
        ("GET /api/status", "/api/status".into(), None),
        ("GET /api/findings", "/api/findings?status=open&limit=50".into(), None),
        ("GET /api/findings/{id}", format!("/api/findings/{finding}"), None),
        ("GET /api/search/requests", format!("/api/search/requests?principal={principal}&limit=100"), None),
        ("GET /api/search/signins", "/api/search/signins?failed=true&limit=100".into(), None),
        ("GET /api/principals/{id}", format!("/api/principals/{principal}"), None),
        (
            "POST /api/sql",
            "/api/sql".into(),
            Some(r#"{"sql": "SELECT operation, count(*) FROM cosmos_requests GROUP BY 1"}"#.into()),
        ),
    ]
}

struct Load {
    latencies: BTreeMap<&'static str, Vec<f64>>,
    errors: usize,
    requests: usize,
}

/// Runs `clients` threads against `base` until `stop`, each as a user of its own (as
/// 200 people are); returns latencies by endpoint.
fn load(
    base: &str,
    db: &Path,
    calls: &[(&'static str, String, Option<String>)],
    clients: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Load> {
    let base = base.to_string();
    let tokens: Vec<String> = (0..clients)
        .map(|i| {
            let token = tokentrail::auth::dev_token(
                db,
                Role::Responder,
                &format!("bench user {i}"),
                chrono::Duration::hours(2),
            );
            format!("Bearer {}", token.unwrap())
        })
        .collect();
    let calls = calls.to_vec();
    std::thread::spawn(move || {
        let results = Arc::new(Mutex::new(Load { latencies: BTreeMap::new(), errors: 0, requests: 0 }));
        let threads: Vec<_> = (0..clients)
            .map(|i| {
                let (base, token, calls, stop, results) =
                    (base.clone(), tokens[i].clone(), calls.clone(), stop.clone(), results.clone());
                std::thread::spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(120)))
                        .build()
                        .into();
                    let mut mine: Vec<(&'static str, f64, bool)> = Vec::new();
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        let (name, path, body) = &calls[n % calls.len()];
                        n += 1;
                        let url = format!("{base}{path}");
                        let started = Instant::now();
                        let response = match body {
                            None => agent.get(&url).header("Authorization", &token).call(),
                            Some(body) => agent
                                .post(&url)
                                .header("Authorization", &token)
                                .header("Content-Type", "application/json")
                                .send(body.as_bytes()),
                        };
                        let ok = match response {
                            Ok(mut r) => r.status().is_success() && r.body_mut().read_to_vec().is_ok(),
                            Err(_) => false,
                        };
                        mine.push((name, started.elapsed().as_secs_f64() * 1000.0, ok));
                    }
                    let mut results = results.lock().unwrap();
                    for (name, ms, ok) in mine {
                        results.requests += 1;
                        if ok {
                            results.latencies.entry(name).or_default().push(ms);
                        } else {
                            results.errors += 1;
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(results).ok().unwrap().into_inner().unwrap()
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let records = env_or("TOKENTRAIL_BENCH_RECORDS", 1_000_000);
    let clients = env_or("TOKENTRAIL_BENCH_CLIENTS", 200);
    let dir = tempfile::tempdir().unwrap();

    let history = dir.path().join("history.ndjson");
    let from = DateTime::parse_from_rfc3339("2025-03-03T00:00:00Z").unwrap().with_timezone(&Utc);
    let (events, _) = Generator::new(Tenant::new(9), 9).history(from, from + TimeDelta::days(7), Scenario::all());
    let mut file = std::io::BufWriter::new(std::fs::File::create(&history).unwrap());
    for event in &events {
        serde_json::to_writer(&mut file, &event.record).unwrap();
        file.write_all(b"\n").unwrap();
    }
    file.flush().unwrap();
    drop(file);
    let input: PathBuf = dir.path().join("load.ndjson");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let bytes = tokentrail::synth::write_cosmos_ndjson(&mut file, records, 3).unwrap();
    file.flush().unwrap();
    drop(file);
    println!("history: {} events; load file: {records} records, {:.2} GB", events.len(), bytes as f64 / 1e9);

    // Quiet rounds before and after the loaded one, so drift in the machine shows.
    let quiet_before = {
        let store = prepare(dir.path(), "quiet1", &history);
        ingest(&store, &input)
    };

    let store = prepare(dir.path(), "loaded", &history);
    let calls = endpoints(&store);
    let db_path = store.path().to_path_buf();
    let (base, state) = common::serve(store.clone());
    let audit = state.audit.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let load_thread = load(&base, &db_path, &calls, clients, stop.clone());
    std::thread::sleep(Duration::from_secs(2)); // every client connected and calling
    let loaded = ingest(&store, &input);
    stop.store(true, Ordering::SeqCst);
    let load = load_thread.join().unwrap();
    audit.flush();
    let logged: i64 =
        store.connection().unwrap().query_row("SELECT count(*) FROM access_log", [], |r| r.get(0)).unwrap();

    let quiet_after = {
        let store = prepare(dir.path(), "quiet2", &history);
        ingest(&store, &input)
    };
    let quiet = (quiet_before + quiet_after) / 2;
    let rate = |d: Duration| records as f64 / d.as_secs_f64();
    let ratio = rate(loaded) / rate(quiet);
    let seconds = loaded.as_secs_f64() + 2.0;

    let mut table = String::from("| endpoint | requests | p50 ms | p99 ms |\n|---|---|---|---|\n");
    for (name, values) in &load.latencies {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        table += &format!(
            "| `{name}` | {} | {:.1} | {:.1} |\n",
            sorted.len(),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99)
        );
        println!(
            "{name:28} n={:6} p50={:8.1} ms p99={:8.1} ms",
            sorted.len(),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99)
        );
    }
    println!(
        "ingest: quiet {:.0} rec/s ({:.0} before, {:.0} after), under load {:.0} rec/s: {ratio:.2}x; {} requests, {} failed, {logged} access log rows",
        rate(quiet),
        rate(quiet_before),
        rate(quiet_after),
        rate(loaded),
        load.requests,
        load.errors
    );
    let verdict = if ratio >= 0.8 { "met" } else { "not met" };
    let section = format!(
        "<!-- bench:api -->\n## API under load while ingesting\n\n\
         `cargo bench --bench api` on this machine (2 cores): {clients} concurrent clients (threads with keep-alive \
         connections, development tokens validated like Entra ID ones) call the endpoints below round robin, while the \
         same process ingests {records} generated Cosmos DB records ({:.2} GB) into the same DuckDB database, which \
         already holds a week of generated history with its findings. The API runs at most {} database queries at a \
         time, on threads of their own at nice +{} ([`http::pool`](src/http/pool.rs)); the others wait. Every call is \
         also written to the access log.\n\n\
         {table}\n\
         {} requests in {seconds:.0} s ({:.0}/s), {} failed; {logged} access log rows.\n\n\
         | ingest | seconds | records/s |\n|---|---|---|\n\
         | no API load (mean of a round before and one after) | {:.2} | {:.0} |\n\
         | under API load | {:.2} | {:.0} |\n\n\
         Ingest under load keeps **{:.0}%** of its quiet rate (target at least 80%: {verdict}). \
         Generated {}.\n<!-- /bench:api -->\n",
        bytes as f64 / 1e9,
        tokentrail::http::pool::QUERY_THREADS,
        tokentrail::http::pool::QUERY_NICE,
        load.requests,
        load.requests as f64 / seconds,
        load.errors,
        quiet.as_secs_f64(),
        rate(quiet),
        loaded.as_secs_f64(),
        rate(loaded),
        ratio * 100.0,
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    common::write_section("api", &section);
    slow_caller(&base, &db_path);
}

/// `/api/status` latencies (ms) of one caller polling every 200 ms for `seconds`.
fn poll_status(base: &str, token: &str, seconds: u64) -> Vec<f64> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut out = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let reply = agent.get(&format!("{base}/api/status")).header("Authorization", &format!("Bearer {token}")).call();
        let ok = reply.is_ok_and(|mut r| r.status() == 200 && r.body_mut().read_to_vec().is_ok());
        assert!(ok, "/api/status failed");
        out.push(started.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(200).saturating_sub(started.elapsed()));
    }
    out
}

/// One Responder running console queries to the timeout and exports it reads at 2 KB/s,
/// against another caller's `/api/status`.
fn slow_caller(base: &str, db: &Path) {
    let token =
        |name: &str| tokentrail::auth::dev_token(db, Role::Responder, name, chrono::Duration::hours(1)).unwrap();
    let (hog, other) = (token("slow responder"), token("on-call engineer"));
    let seconds = 30;
    let alone = poll_status(base, &other, seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let mut hogs = Vec::new();
    for kind in ["query", "query", "export", "export"] {
        let (base, hog, stop) = (base.to_string(), hog.clone(), stop.clone());
        hogs.push(std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(120)))
                .build()
                .into();
            let auth = format!("Bearer {hog}");
            let mut calls = 0;
            while !stop.load(Ordering::Relaxed) {
                calls += 1;
                if kind == "query" {
                    let sql = "SELECT count(*) FROM range(100000) a, range(100000) b WHERE a.range + b.range = -1";
                    let _ = agent
                        .post(&format!("{base}/api/sql"))
                        .header("Authorization", &auth)
                        .send_json(serde_json::json!({"sql": sql}));
                } else {
                    let url = format!("{base}/api/search/requests?format=csv");
                    if let Ok(response) = agent.get(&url).header("Authorization", &auth).call() {
                        let mut body = response.into_body().into_reader();
                        let mut buffer = [0u8; 2048];
                        while !stop.load(Ordering::Relaxed) {
                            match std::io::Read::read(&mut body, &mut buffer) {
                                Ok(0) | Err(_) => break,
                                Ok(_) => std::thread::sleep(Duration::from_secs(1)),
                            }
                        }
                    }
                }
            }
            calls
        }));
    }
    std::thread::sleep(Duration::from_secs(2));
    let loaded = poll_status(base, &other, seconds);
    stop.store(true, Ordering::SeqCst);
    let hog_calls: usize = hogs.into_iter().map(|h| h.join().unwrap()).sum();
    let stats = |values: &[f64]| {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        (percentile(&sorted, 0.5), percentile(&sorted, 0.99), sorted.last().copied().unwrap_or(f64::NAN))
    };
    let (a50, a99, amax) = stats(&alone);
    let (l50, l99, lmax) = stats(&loaded);
    println!(
        "status alone p50 {a50:.1} p99 {a99:.1} max {amax:.1} ms; beside the slow responder p50 {l50:.1} p99 {l99:.1} max {lmax:.1} ms"
    );
    let verdict = if lmax < 1000.0 { "met" } else { "not met" };
    let section = format!(
        "<!-- bench:slow-caller -->\n## One slow Responder beside another caller\n\n\
         `cargo bench --bench api`, after the load above, on the same service: one Responder keeps two console \
         queries running to the 15 s timeout and two CSV exports it reads at 2 KB/s ({hog_calls} calls in all), while \
         another caller polls `/api/status` every 200 ms for {seconds} s. The same polling alone, just before, is the \
         baseline.\n\n\
         | `/api/status` | calls | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n\
         | alone | {} | {a50:.1} | {a99:.1} | {amax:.1} |\n\
         | beside the slow Responder | {} | {l50:.1} | {l99:.1} | {lmax:.1} |\n\n\
         p99 beside the slow Responder is {:.2}x the baseline's; the slowest call took {lmax:.0} ms \
         (target under 1 s: {verdict}). A caller runs one database job at a time and exports run on threads of \
         their own ([`http::callers`](src/http/callers.rs)). Generated {}.\n<!-- /bench:slow-caller -->\n",
        alone.len(),
        loaded.len(),
        l99 / a99,
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    common::write_section("slow-caller", &section);
}
