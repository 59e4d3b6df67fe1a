//! Memory over hours: does a running service hold its memory flat once warm?
//!
//! 1. `tokentrail demo` live (generated events every 2 s, detection on each commit,
//!    nobody using the UI).
//! 2. `tokentrail serve` with a steady producer through the test hub (well under its
//!    capacity) while a client polls the API.
//!
//! Both run side by side, each for TOKENTRAIL_SOAK_MINUTES (default 60); resident memory is
//! read four times a second and summed up each minute (mean, lowest, highest, and the
//! reading at its end, with the kinds `/metrics` reports). After the first 10 minutes, the
//! target is each minute's mean and each minute's highest reading within ±10% of their
//! mean and no upward trend (least-squares slope under 0.1 MiB/min). Writes a table to
//! BENCHMARKS.md and a plot to `benches/soak.svg`.
//!
//! `cargo bench --bench soak` (TOKENTRAIL_SOAK_MINUTES=5 for a short look;
//! TOKENTRAIL_SOAK_LOG sets serve's log filter, `warn` by default, e.g.
//! `warn,tokentrail::rules=debug` for each rule's time; its log is `serve.log` in the
//! run's temporary folder).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary measured: this build's, or TOKENTRAIL_SOAK_BIN (a copy that a rebuild
/// during the hours of the run cannot replace).
fn bin() -> String {
    std::env::var("TOKENTRAIL_SOAK_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tokentrail").to_string())
}
/// Minutes at the start that are warm-up, not judged.
const WARM_UP: usize = 10;
const HUB: &str = "insights-logs-dataplanerequests";

/// Resident memory is read this often: each minute is judged on all its readings, since
/// one reading a minute lands anywhere in the cycle of a pass (memory rises while a pass
/// builds its hash tables and falls when it hands them back).
const READ_EVERY: Duration = Duration::from_millis(250);

/// One minute: its end (minutes since start), resident MiB read at its end, the lowest,
/// mean and highest of its readings every [`READ_EVERY`], and `/metrics` memory kinds (MiB)
/// at its end.
struct Sample {
    minute: f64,
    resident: f64,
    low: f64,
    mean: f64,
    high: f64,
    kinds: Vec<(String, f64)>,
}

fn resident_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l[6..].trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn memory_kinds(address: &str) -> Vec<(String, f64)> {
    let Ok(mut reply) = ureq::get(&format!("http://{address}/metrics")).call() else { return Vec::new() };
    let text = reply.body_mut().read_to_string().unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("tokentrail_memory_bytes{kind=\""))
        .filter_map(|l| {
            let (kind, value) = l.split_once("\"} ")?;
            Some((kind.to_string(), value.trim().parse::<f64>().ok()? / 1048576.0))
        })
        .collect()
}

/// Samples `child` for `minutes`: its resident memory every [`READ_EVERY`], summed up each
/// minute, calling `tick` every second meanwhile.
fn sample(name: &str, child: &mut Child, address: &str, minutes: usize, mut tick: impl FnMut()) -> Vec<Sample> {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut next_tick = started + Duration::from_secs(1);
    for minute in 0..=minutes {
        let due = started + Duration::from_secs(60 * minute as u64);
        let mut readings = Vec::with_capacity(256);
        while Instant::now() < due {
            readings.push(resident_mib(child.id()));
            // On a fixed schedule, so the ticks keep their rate whatever the readings take.
            if Instant::now() >= next_tick {
                next_tick += Duration::from_secs(1);
                tick();
            }
            std::thread::sleep(READ_EVERY.min(due.saturating_duration_since(Instant::now())));
        }
        assert!(child.try_wait().unwrap().is_none(), "the process ended during the soak");
        let resident = resident_mib(child.id());
        readings.push(resident);
        let s = Sample {
            minute: started.elapsed().as_secs_f64() / 60.0,
            resident,
            low: readings.iter().copied().fold(f64::MAX, f64::min),
            mean: readings.iter().sum::<f64>() / readings.len() as f64,
            high: readings.iter().copied().fold(0.0, f64::max),
            kinds: memory_kinds(address),
        };
        println!(
            "  {name:5} {:5.1} min  {:7.1} MiB (minute: {:.1}–{:.1}, mean {:.1}, {} readings)  {:?}",
            s.minute,
            s.resident,
            s.low,
            s.high,
            s.mean,
            readings.len(),
            s.kinds
        );
        out.push(s);
    }
    out
}

/// A series of the minutes: its name, its value in each minute, and whether the target
/// judges it.
type Series = (&'static str, fn(&Sample) -> f64, bool);

/// What each run is judged on; the reading at each minute's end is shown, not judged.
const SERIES: [Series; 3] = [
    ("each minute's mean", |s| s.mean, true),
    ("each minute's highest", |s| s.high, true),
    ("one reading at each minute's end", |s| s.resident, false),
];

/// Mean, spread (max deviation from the mean, %), and least-squares slope (MiB/min) of
/// one series (`value` of each minute) after the warm-up; `None` for a run too short to
/// judge (two minutes past the warm-up at least).
fn judge(samples: &[Sample], value: impl Fn(&Sample) -> f64) -> Option<(f64, f64, f64)> {
    let judged: Vec<(f64, f64)> =
        samples.iter().filter(|s| s.minute >= WARM_UP as f64 - 0.01).map(|s| (s.minute, value(s))).collect();
    if judged.len() < 2 {
        return None;
    }
    let n = judged.len() as f64;
    let mean = judged.iter().map(|(_, v)| v).sum::<f64>() / n;
    let spread = judged.iter().map(|(_, v)| (v - mean).abs() / mean * 100.0).fold(0.0, f64::max);
    let mx = judged.iter().map(|(m, _)| m).sum::<f64>() / n;
    let (num, den) =
        judged.iter().fold((0.0, 0.0), |(a, b), (m, v)| (a + (m - mx) * (v - mean), b + (m - mx) * (m - mx)));
    Some((mean, spread, if den > 0.0 { num / den } else { 0.0 }))
}

/// The binary, without this benchmark's own settings in its environment: `serve` refuses
/// `TOKENTRAIL_` variables it does not know.
fn child_command() -> Command {
    let mut command = Command::new(bin());
    command
        .env_remove("TOKENTRAIL_SOAK_BIN")
        .env_remove("TOKENTRAIL_SOAK_MINUTES")
        .env_remove("TOKENTRAIL_SOAK_DB_MEMORY_LIMIT")
        .env_remove("TOKENTRAIL_SOAK_LOG");
    command
}

fn demo(dir: &std::path::Path, minutes: usize) -> Vec<Sample> {
    let mut child = child_command()
        .args(["demo", "--db", dir.join("demo.duckdb").to_str().unwrap(), "--port", "0"])
        .env("TOKENTRAIL_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines.next().expect("demo printed its address").unwrap();
        if let Some(rest) = line.strip_prefix("TokenTrail demo on http://") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let samples = sample("demo", &mut child, &address, minutes, || {});
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let _ = child.wait();
    samples
}

/// `serve`'s DuckDB memory limit: TOKENTRAIL_SOAK_DB_MEMORY_LIMIT, or its default.
fn serve_limit() -> String {
    std::env::var("TOKENTRAIL_SOAK_DB_MEMORY_LIMIT")
        .unwrap_or_else(|_| tokentrail::config::DEFAULT_DB_MEMORY_LIMIT.into())
}

/// Records reach the hub this long after the request (Azure Monitor delivers diagnostic
/// logs within minutes).
const DELIVERY_LAG: chrono::TimeDelta = chrono::TimeDelta::minutes(3);
/// The stream's hours before `serve` starts, ingested from a file first: a service that has
/// run for months has its rules' windows (up to two hours of rows; longer ones over hourly
/// counts) full and its principals' baselines made (`data_volume_spike` wants six active
/// hours before the hour pair it judges, which reaches three hours back), so the soak judges
/// that state, not windows filling and every heavy reader judged by the floor alone.
const PREFILL: chrono::TimeDelta = chrono::TimeDelta::hours(12);
/// Records a second in the stream (and in the prefill).
const RATE: i64 = 100;

/// `record` with its `time` set to `at`, in the wire's format (seven fractional digits).
fn stamped(record: &serde_json::Value, at: chrono::DateTime<chrono::Utc>) -> String {
    let mut record = record.clone();
    record["time"] = format!("{}.{:07}Z", at.format("%Y-%m-%dT%H:%M:%S"), at.timestamp_subsec_nanos() / 100).into();
    record.to_string()
}

/// Ingests [`PREFILL`] of the stream, at [`RATE`], ending where the stream starts.
fn prefill(db: &std::path::Path, pool: &[serde_json::Value], dir: &std::path::Path) {
    let file = dir.join("prefill.ndjson");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let n = PREFILL.num_seconds() * RATE;
    let start = chrono::Utc::now() - DELIVERY_LAG - PREFILL;
    for i in 0..n {
        let at = start + chrono::TimeDelta::microseconds(i * 1_000_000 / RATE);
        writeln!(out, "{}", stamped(&pool[i as usize % pool.len()], at)).unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let status = child_command()
        .args(["ingest", "--db"])
        .arg(db)
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "ingesting the prefill failed");
    std::fs::remove_file(&file).unwrap();
    println!("  serve: {n} records of the {} hours before the stream ingested first", PREFILL.num_hours());
}

fn serve(dir: &std::path::Path, minutes: usize) -> Vec<Sample> {
    let hub = tokentrail_testhub::TestHub::start(&[tokentrail_testhub::HubSpec::new(HUB, 4)]).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let db = dir.join("serve.duckdb");
    let config = dir.join("tokentrail.toml");
    std::fs::write(
        &config,
        format!(
            "db = {db:?}\ndb_memory_limit = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\ndevelopment_sign_in = true\n[eventhubs]\n\
             hubs = [\"{HUB}\"]\ncredential = \"connection_string\"\nendpoint = \"{}\"\n",
            serve_limit(),
            hub.endpoint()
        ),
    )
    .unwrap();
    // The tenant's records, stamped afresh as they are sent: a stream of the same week
    // over and over would pile ever more rows into the same hours, so each pass's windows
    // would grow all hour long (BENCHMARKS.md, "Memory over time").
    let mut records = Vec::new();
    tokentrail::synth::write_cosmos_ndjson(&mut records, 20_000, 5).unwrap();
    let pool: Vec<serde_json::Value> =
        std::str::from_utf8(&records).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    prefill(&db, &pool, dir);
    let mut child = child_command()
        .args(["serve", "--config"])
        .arg(&config)
        .env("TOKENTRAIL_EVENTHUBS_CONNECTION_STRING", hub.connection_string(HUB))
        .env("TOKENTRAIL_LOG", std::env::var("TOKENTRAIL_SOAK_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let address = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&address).is_err() {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            panic!("serve did not start:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let token = tokentrail::auth::dev_token(&db, tokentrail::auth::Role::Responder, "soak", chrono::Duration::hours(4))
        .unwrap();
    let mut polled = Instant::now();
    // A steady stream: [`RATE`] records a second in envelopes of 20, over the partitions.
    let mut next = 0usize;
    let samples = sample("serve", &mut child, &address, minutes, || {
        for _ in 0..RATE / 20 {
            let at = chrono::Utc::now() - DELIVERY_LAG;
            let records: Vec<String> = (0..20).map(|i| stamped(&pool[(next * 20 + i) % pool.len()], at)).collect();
            hub.append(HUB, (next % 4) as u32, format!("{{\"records\":[{}]}}", records.join(",")).into_bytes());
            next += 1;
        }
        // An on-call engineer's browser: status and findings every 5 s.
        if polled.elapsed() >= Duration::from_secs(5) {
            polled = Instant::now();
            for path in ["/api/status", "/api/findings?limit=50"] {
                let _ = ureq::get(&format!("http://{address}{path}"))
                    .header("Authorization", &format!("Bearer {token}"))
                    .call()
                    .map(|mut r| r.body_mut().read_to_vec());
            }
        }
    });
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    samples
}

/// The two runs' resident memory as an SVG line plot.
fn plot(runs: &[(&str, &[Sample])]) -> String {
    let (w, h, pad) = (640.0, 280.0, 40.0);
    let max_x = runs.iter().flat_map(|(_, s)| s.iter().map(|s| s.minute)).fold(1.0, f64::max);
    let max_y = runs.iter().flat_map(|(_, s)| s.iter().map(|s| s.high)).fold(1.0, f64::max) * 1.1;
    let x = |m: f64| pad + m / max_x * (w - 2.0 * pad);
    let y = |v: f64| h - pad - v / max_y * (h - 2.0 * pad);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">minutes</text>\n\
         <text x=\"6\" y=\"{}\" >MiB</text>\n<text x=\"{pad}\" y=\"{}\" text-anchor=\"middle\">0</text>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{max_x:.0}</text>\n<text x=\"4\" y=\"{}\">{max_y:.0}</text>\n",
        h - pad,
        w - pad,
        h - pad,
        h - pad,
        w / 2.0,
        h - 8.0,
        pad - 10.0,
        h - pad + 14.0,
        w - pad,
        h - pad + 14.0,
        pad + 4.0,
    );
    for (i, (name, samples)) in runs.iter().enumerate() {
        let color = ["#1f6feb", "#d1242f"][i % 2];
        let points: Vec<String> = samples.iter().map(|s| format!("{:.1},{:.1}", x(s.minute), y(s.mean))).collect();
        // Each minute's lowest to highest reading, as a band behind its mean.
        let band: Vec<String> = samples
            .iter()
            .map(|s| (s.minute, s.high))
            .chain(samples.iter().rev().map(|s| (s.minute, s.low)))
            .map(|(m, v)| format!("{:.1},{:.1}", x(m), y(v)))
            .collect();
        svg += &format!(
            "<polygon fill=\"{color}\" fill-opacity=\"0.15\" stroke=\"none\" points=\"{}\"/>\n",
            band.join(" ")
        );
        svg += &format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n\
             <text x=\"{}\" y=\"{}\" fill=\"{color}\">{name}</text>\n",
            points.join(" "),
            w - pad - 150.0,
            pad + 14.0 * i as f64,
        );
    }
    svg + "</svg>\n"
}

fn main() {
    let minutes: usize = std::env::var("TOKENTRAIL_SOAK_MINUTES").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    // Side by side: each is its own process, sampled on its own.
    println!("demo live and serve with a steady producer and an API poller, {minutes} min each, side by side:");
    let demo_dir = dir.path().to_path_buf();
    let demo = std::thread::spawn(move || demo(&demo_dir, minutes));
    let serve = serve(dir.path(), minutes);
    let demo = demo.join().expect("the demo's soak ran");
    let svg = plot(&[("demo live", &demo), ("serve, 100 records/s", &serve)]);
    std::fs::write(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/soak.svg"), svg).unwrap();

    let mut rows = String::from(
        "| minute | demo: mean (lowest–highest) | demo: at the minute's end | serve: mean (lowest–highest) | serve: at the minute's end |\n|---|---|---|---|---|\n",
    );
    let every = (minutes / 12).max(1);
    for (d, s) in demo.iter().zip(&serve).step_by(every) {
        rows += &format!(
            "| {:.0} | {:.1} ({:.1}–{:.1}) | {:.1} | {:.1} ({:.1}–{:.1}) | {:.1} |\n",
            d.minute, d.mean, d.low, d.high, d.resident, s.mean, s.low, s.high, s.resident
        );
    }
    let kinds = |samples: &[Sample]| {
        samples
            .last()
            .map(|s| s.kinds.iter().map(|(k, v)| format!("{k} {v:.1}")).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let mut verdicts = String::new();
    let mut all_met = true;
    for (name, samples) in [("demo", &demo), ("serve", &serve)] {
        for (what, value, judged) in SERIES {
            let Some((mean, spread, slope)) = judge(samples, value) else {
                all_met = false;
                verdicts += &format!("| {name} | {what} | | | | too short to judge |\n");
                continue;
            };
            let met = spread <= 10.0 && slope < 0.1;
            if judged {
                all_met &= met;
            }
            verdicts += &format!(
                "| {name} | {what} | {mean:.1} | ±{spread:.1}% | {slope:+.3} | {} |\n",
                match (judged, met) {
                    (true, true) => "met",
                    (true, false) => "not met",
                    (false, true) => "(met)",
                    (false, false) => "(not met)",
                }
            );
            println!("{name}, {what}: mean {mean:.1} MiB, within ±{spread:.1}%, slope {slope:+.3} MiB/min");
        }
    }
    let section = format!(
        "<!-- bench:soak -->\n## Memory over time\n\n\
         `cargo bench --bench soak`: {minutes} minutes of `tokentrail demo` live (events every 2 s, detection on \
         each commit, nobody using the UI) and, side by side, {minutes} minutes of `tokentrail serve` with a producer appending \
         {RATE} records a second to the test hub (the tenant's records stamped {lag} minutes before they are sent, after \
         {prefill} hours of the same stream ingested from a file, so rules' windows are full from the start) and a client polling `/api/status` and `/api/findings` every 5 s \
         (DuckDB memory limit {limit}, as `db_memory_limit`; the demo's is the default). \
         Resident memory is read every {every_ms} ms; each minute gives the mean, lowest and highest of its \
         readings, and the reading at its end (plot: each minute's mean, with a band from its lowest to its highest \
         reading: [benches/soak.svg](benches/soak.svg)):\n\n{rows}\n\
         After the first {WARM_UP} minutes (target: within ±10% of the mean and a slope under 0.1 MiB/min, for each \
         minute's mean and each minute's highest reading; one reading a minute is shown in brackets, not judged: \
         it lands anywhere in the rise and fall of a detection pass):\n\n\
         | run | series | mean MiB | spread | slope MiB/min | target |\n|---|---|---|---|---|---|\n{verdicts}\n\
         At the end, `/metrics` said (MiB): demo: {}; serve: {}. {}Generated {}.\n<!-- /bench:soak -->\n",
        kinds(&demo),
        kinds(&serve),
        if all_met { "" } else { "Not met: see the table above. " },
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        limit = serve_limit(),
        lag = DELIVERY_LAG.num_minutes(),
        prefill = PREFILL.num_hours(),
        every_ms = READ_EVERY.as_millis(),
    );
    print!("{section}");
    common::write_section("soak", &section);
    std::io::stdout().flush().unwrap();
}
