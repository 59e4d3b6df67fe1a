//! Web UI pages on 10,000,000 requests and 1,000,000 sign-ins: for each page, the API
//! calls its script makes (concurrently, as the browser does), timed from the first
//! request to the last response, through the real server with a real token. Median of
//! 5 rounds after one warm-up. Target: every page under 1 s. Writes its section of
//! BENCHMARKS.md.
//!
//! `cargo bench --bench pages` (TOKENTRAIL_BENCH_REQUESTS, TOKENTRAIL_BENCH_SIGNINS).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokentrail::auth::Role;
use tokentrail::rules::{DetectionConfig, Detector};
use tokentrail::store::{Store, StoreOptions};

const ROUNDS: usize = 5;

fn main() {
    let requests = common::env_count("TOKENTRAIL_BENCH_REQUESTS", 10_000_000i64);
    let signins = common::env_count("TOKENTRAIL_BENCH_SIGNINS", 1_000_000i64);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pages.duckdb");
    let store = Arc::new(Store::open(&db, &StoreOptions { threads: Some(2), ..StoreOptions::default() }).unwrap());
    let started = Instant::now();
    {
        let conn = store.connection().unwrap();
        // The 14 days before today, so "the last 7 days" of the dashboards hold data.
        let end = chrono::Utc::now().timestamp_micros() / 86_400_000_000 * 86_400_000_000;
        let span = 14 * 86_400_000_000;
        common::synthetic::insert_synthetic(&conn, 1, end - span, span, requests, signins, 2_000);
        conn.execute_batch("CHECKPOINT").unwrap();
    }
    let (detector, _) = Detector::open(&store, &DetectionConfig::default()).unwrap();
    detector.evaluate_after_commit(&store).unwrap();
    println!(
        "{requests} requests and {signins} sign-ins inserted and absorbed in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let (principal, finding, incident): (String, i64, i64) = {
        let conn = store.connection().unwrap();
        (
            conn.query_row(
                "SELECT principal_id FROM cosmos_requests WHERE principal_id IS NOT NULL LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap(),
            conn.query_row("SELECT coalesce(min(id), 1) FROM findings", [], |r| r.get(0)).unwrap(),
            // The incident with the most evidence: the longest story to draw.
            conn.query_row(
                "SELECT coalesce((SELECT m.incident_id FROM incident_findings m JOIN findings f ON f.id = m.finding_id
                                  GROUP BY 1 ORDER BY sum(f.count) DESC LIMIT 1), 1)",
                [],
                |r| r.get(0),
            )
            .unwrap(),
        )
    };
    let token = tokentrail::auth::dev_token(&db, Role::Responder, "bench", chrono::Duration::hours(1)).unwrap();
    let (base, _state) = common::serve(store.clone());

    // What each page's script fetches (src/ui/assets/app.js).
    let pages: Vec<(&str, Vec<String>)> = vec![
        (
            "Overview",
            vec![
                "/api/incidents?status=open,acknowledged&limit=10".into(),
                "/api/status".into(),
                "/api/activity?hours=168".into(),
                "/api/findings?status=open,acknowledged&limit=10".into(),
                "/api/alerts/messages?delivery=dead&limit=20".into(),
            ],
        ),
        ("Incidents", vec!["/api/incidents?status=open,acknowledged&limit=50".into()]),
        ("Incident", vec![format!("/api/incidents/{incident}?limit=200")]),
        ("Findings", vec!["/api/findings?limit=50".into()]),
        (
            "Finding",
            vec![format!("/api/findings/{finding}"), format!("/api/alerts/messages?finding={finding}&limit=20")],
        ),
        ("Principal", vec![format!("/api/principals/{principal}")]),
        ("Search (principal)", vec![format!("/api/search/requests?principal={principal}&limit=100")]),
        ("Search (CIDR)", vec!["/api/search/requests?ip=20.0.0.0/16&limit=100".into()]),
        ("Search (newest)", vec!["/api/search/requests?limit=100".into()]),
        ("SQL console", vec!["/api/sql/schema".into(), "/api/sql/saved".into()]),
        ("Dashboard: access overview", vec!["/api/dashboards/access-overview".into()]),
        ("Dashboard: identity hygiene", vec!["/api/dashboards/identity-hygiene".into()]),
        ("Dashboard: data movement", vec!["/api/dashboards/data-movement".into()]),
    ];
    let auth_header = format!("Bearer {token}");
    let load = |paths: &[String]| -> Duration {
        let started = Instant::now();
        std::thread::scope(|scope| {
            for path in paths {
                let (url, auth_header) = (format!("{base}{path}"), &auth_header);
                scope.spawn(move || {
                    let mut response = ureq::get(&url)
                        .header("Authorization", auth_header)
                        .call()
                        .unwrap_or_else(|e| panic!("{url}: {e}"));
                    response.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap();
                });
            }
        });
        started.elapsed()
    };
    let mut rows = String::new();
    let mut slowest = 0.0f64;
    for (name, paths) in &pages {
        load(paths);
        let mut times: Vec<f64> = (0..ROUNDS).map(|_| load(paths).as_secs_f64() * 1000.0).collect();
        times.sort_by(f64::total_cmp);
        let median = times[ROUNDS / 2];
        slowest = slowest.max(median);
        println!("{name:30} {median:7.0} ms  ({})", paths.join(" + "));
        rows += &format!("| {name} | {median:.0} | `{}` |\n", paths.join("` + `"));
    }
    let verdict = if slowest < 1000.0 { "met" } else { "not met" };
    let section = format!(
        "<!-- bench:pages -->\n## Web UI pages on 10M requests\n\n\
         `cargo bench --bench pages` on this machine (2 cores): {requests} Cosmos DB requests and {signins} sign-ins of \
         2,000 principals over the 14 days before today (`benches/rules_data.sql`), absorbed by detection. For each page, \
         the API calls its script makes, sent at once as the browser does, through the real server with a development \
         token; time from the first request to the last byte, median of {ROUNDS} rounds after a warm-up.\n\n\
         | page | ms | calls |\n|---|---|---|\n{rows}\n\
         Target: every page under 1 s ({verdict}; slowest {slowest:.0} ms). Generated {}.\n<!-- /bench:pages -->\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    common::write_section("pages", &section);
}
