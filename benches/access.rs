//! Granted against used (issue 28): the access review (`access_review`, migration 15) over
//! 10,000,000 Cosmos DB requests of 2,000 principals and 5,000 role assignments (benches/
//! rules_data.sql and benches/access_data.sql), against the yardstick of the same run: the
//! grouped scan of the requests that any such review needs (principal, account, container,
//! operation). Target: under 2 s. Writes its section of BENCHMARKS.md.
//!
//! `cargo bench --bench access` (TOKENTRAIL_BENCH_REQUESTS changes the 10,000,000).

mod common;

use std::time::Instant;
use tokentrail::store::{Store, StoreOptions};

const START: &str = "2025-01-01T00:00:00Z";
const DAYS: i64 = 90;
const BATCHES: i64 = 10;
const PRINCIPALS: i64 = 2_000;
const ASSIGNMENTS: i64 = 5_000;
const TARGET_SECONDS: f64 = 2.0;

const YARDSTICK: &str = "SELECT count(*) FROM (
    SELECT principal_id, account, database_name, collection_name, operation, request_resource_type, count(*), max(time)
    FROM cosmos_requests WHERE time >= ?::TIMESTAMPTZ AND time < ?::TIMESTAMPTZ AND principal_id IS NOT NULL
    GROUP BY ALL)";
const REVIEW: &str = "SELECT count(*), count(*) FILTER (WHERE recommendation <> 'keep') FROM access_review(?::TIMESTAMPTZ, ?::TIMESTAMPTZ)";
/// What a principal's page asks: one principal's assignments (principal 7 has three).
const ONE: &str = "SELECT count(*), count(*) FILTER (WHERE recommendation <> 'keep') FROM access_review_of(
    '00000007-0000-4000-8000-000000000007', ?::TIMESTAMPTZ, ?::TIMESTAMPTZ)";

fn main() {
    let requests: i64 = std::env::var("TOKENTRAIL_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open(&dir.path().join("access.duckdb"), &StoreOptions { threads: Some(2), ..StoreOptions::default() })
            .unwrap();
    let conn = store.connection().unwrap();
    let start = chrono::DateTime::parse_from_rfc3339(START).unwrap();
    let span = DAYS * 86_400_000_000;
    let part = span / BATCHES;
    let begun = Instant::now();
    for batch in 0..BATCHES {
        let at = start.timestamp_micros() + batch * part;
        common::synthetic::insert_synthetic(&conn, batch + 1, at, part, requests / BATCHES, 0, PRINCIPALS);
    }
    let values = [("start", start.timestamp_micros()), ("principals", PRINCIPALS), ("assignments", ASSIGNMENTS)];
    common::synthetic::run_script(&conn, include_str!("access_data.sql"), &values);
    conn.execute_batch("CHECKPOINT").unwrap();
    println!("{requests} requests and {ASSIGNMENTS} assignments made in {:.1} s", begun.elapsed().as_secs_f64());
    let (since, until) = (start.to_rfc3339(), (start + chrono::Duration::days(DAYS)).to_rfc3339());
    let time = |sql: &str| {
        let mut seconds = Vec::new();
        let mut result = (0i64, 0i64);
        for _ in 0..5 {
            let begun = Instant::now();
            result = conn
                .query_row(sql, [&since, &until], |r| {
                    Ok((r.get(0)?, r.get::<_, Option<i64>>(1).ok().flatten().unwrap_or(0)))
                })
                .unwrap();
            seconds.push(begun.elapsed().as_secs_f64());
        }
        (common::median(seconds), result)
    };
    let (yardstick, (groups, _)) = time(YARDSTICK);
    let (review, (reviewed, recommended)) = time(REVIEW);
    let (one, (its, _)) = time(ONE);
    assert!(its > 0, "the principal has assignments");
    assert_eq!(reviewed, ASSIGNMENTS, "every assignment in force is reviewed");
    let ratio = review / yardstick;
    println!(
        "yardstick (grouped scan, {groups} groups): {yardstick:.3} s; access review: {review:.3} s ({ratio:.2}x); {recommended} with a recommendation; one principal {one:.3} s"
    );
    let met = if review < TARGET_SECONDS { "met" } else { "NOT met" };
    let section = format!(
        "<!-- bench:access -->\n## Granted against used\n\n\
         `cargo bench --bench access`: `access_review` (migration 15) over {requests} Cosmos DB requests of {PRINCIPALS} \
         principals across {DAYS} days (benches/rules_data.sql) and {ASSIGNMENTS} data-plane role assignments \
         (benches/access_data.sql: Reader or Contributor at the account, a database or a container; one in ten to a \
         principal that sends nothing), DuckDB with 2 threads, median of 5 runs. Yardstick, same run: the grouped scan \
         of the requests any review needs (principal, account, container, operation).\n\n\
         | query | median |\n|---|---|\n\
         | yardstick: grouped scan ({groups} groups) | {yardstick:.3} s |\n\
         | `access_review` ({reviewed} assignments, {recommended} with a recommendation) | {review:.3} s ({ratio:.2}x) |\n\
         | `access_review_of` one principal ({its} assignments: a principal's page) | {one:.3} s |\n\n\
         - Target under {TARGET_SECONDS} s: {met}.\n<!-- /bench:access -->\n"
    );
    common::write_section("access", &section);
}
