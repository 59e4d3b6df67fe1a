//! Answers past retention: search, a principal's page and an evidence pack over a period
//! that spans rows retention moved to the lake give what they gave before it did, with
//! the same SQL, and say which part came from the lake. A lake file cut or changed is
//! named; a file planted in the lake is never read.

use crate::common::app::{call_json, serve_with_lake};
use crate::common::jwks::TestIssuer;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use tokentrail::auth::Role;
use tokentrail::evidence::pack::{self, PackRequest};
use tokentrail::evidence::sign::{self, PackKey};
use tokentrail::evidence::{Criterion, GeneratedBy, Period};
use tokentrail::lake::view::Reader;
use tokentrail::lake::{Lake, Location, archive, evict};
use tokentrail::store::{Store, StoreOptions};

/// What on-call and auditors see of the period, with where each row was read removed.
#[derive(Debug)]
struct Answers {
    requests_page: Value,
    requests_csv: String,
    signins_csv: String,
    named_search: Value,
    profile: Value,
}

/// Asserts `a` equals `b`, naming the first place they differ (the answers are large).
fn same(a: &Answers, b: &Answers) {
    fn json(path: &str, a: &Value, b: &Value) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                keys.into_iter().find_map(|k| {
                    json(&format!("{path}.{k}"), x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null))
                })
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                x.iter().zip(y).enumerate().find_map(|(i, (x, y))| json(&format!("{path}[{i}]"), x, y))
            }
            _ => (a != b).then(|| format!("{path}: {a} against {b}")),
        }
    }
    fn lines(name: &str, a: &str, b: &str) -> Option<String> {
        let (x, y): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
        let at = x.iter().zip(&y).position(|(x, y)| x != y);
        match at {
            Some(i) => Some(format!("{name} line {i}: {} against {}", x[i], y[i])),
            None => (x.len() != y.len()).then(|| format!("{name}: {} lines against {}", x.len(), y.len())),
        }
    }
    let differs = json("requests_page", &a.requests_page, &b.requests_page)
        .or_else(|| lines("requests_csv", &a.requests_csv, &b.requests_csv))
        .or_else(|| lines("signins_csv", &a.signins_csv, &b.signins_csv))
        .or_else(|| json("named_search", &a.named_search, &b.named_search))
        .or_else(|| json("profile", &a.profile, &b.profile));
    assert_eq!(differs, None, "the same answers, hot and archived rows together");
}

fn get(base: &str, token: &str, path: &str) -> (u16, Value) {
    call_json(base, path, token, None)
}

fn text(base: &str, token: &str, path: &str) -> String {
    let (status, body) = get(base, token, path);
    assert_eq!(status, 200, "{path}: {body}");
    body.as_str().unwrap_or_else(|| panic!("{path}: not text")).to_owned()
}

/// `stored_in` (the last column) off every line of a CSV export.
fn without_origin(csv: &str) -> (String, usize) {
    let mut from_lake = 0;
    let lines: Vec<&str> = csv
        .lines()
        .map(|line| {
            let (rest, origin) = line.rsplit_once(',').unwrap();
            from_lake += usize::from(origin == "lake");
            rest
        })
        .collect();
    (lines.join("\n"), from_lake)
}

/// A JSON page's rows without `stored_in`, and how many came from the lake.
fn page_without_origin(mut page: Value) -> (Value, i64) {
    let from_lake = page["total_from_lake"].as_i64().unwrap();
    for row in page["rows"].as_array_mut().unwrap() {
        let origin = row.as_object_mut().unwrap().remove("stored_in").unwrap();
        assert!(origin == "duckdb" || origin == "lake", "{origin}");
    }
    let object = page.as_object_mut().unwrap();
    object.remove("total_from_lake");
    object.remove("lake");
    (page, from_lake)
}

struct Asked<'a> {
    base: &'a str,
    token: &'a str,
    period: String,
    principal: &'a str,
    upn: &'a str,
}

/// The answers, and how many rows (or parts) of each came from the lake.
fn answers(a: &Asked<'_>) -> (Answers, [i64; 4]) {
    let (base, token, period) = (a.base, a.token, &a.period);
    let (status, page) = get(base, token, &format!("/api/search/requests?limit=1000&{period}"));
    assert_eq!(status, 200, "{page}");
    let (requests_page, page_lake) = page_without_origin(page);
    let (requests_csv, csv_lake) =
        without_origin(&text(base, token, &format!("/api/search/requests?format=csv&{period}")));
    let (signins_csv, signins_lake) =
        without_origin(&text(base, token, &format!("/api/search/signins?format=csv&{period}")));
    let (status, named) = get(base, token, &format!("/api/search/requests?limit=1000&principal={}&{period}", a.upn));
    assert_eq!(status, 200, "{named}");
    let (named_search, _) = page_without_origin(named);
    let (status, mut profile) = get(base, token, &format!("/api/principals/{}?{period}", a.principal));
    assert_eq!(status, 200, "{profile}");
    let profile_parts = profile.as_object_mut().unwrap().remove("lake").unwrap().as_array().unwrap().len() as i64;
    let answers = Answers { requests_page, requests_csv, signins_csv, named_search, profile };
    (answers, [page_lake, csv_lake as i64, signins_lake as i64, profile_parts])
}

fn pack_request<'a>(
    period: &Period,
    rules: &'a [tokentrail::rules::rule::Rule],
    lake: Option<&'a Reader>,
) -> PackRequest<'a> {
    PackRequest {
        criteria: vec![Criterion::Cc6_1, Criterion::Cc6_2],
        period: *period,
        generated_by: GeneratedBy { oid: None, tid: None, name: "Test Auditor".into() },
        rules,
        budget: tokentrail::evidence::Budget::unlimited(),
        expected: Vec::new(),
        development_signer: false,
        removal_hours: 24,
        lake,
    }
}

/// A pack's populations: CSV path → SHA-256; and its manifest.
fn pack(
    store: &Store,
    db: &Path,
    out: &Path,
    request: &PackRequest<'_>,
) -> anyhow::Result<(Vec<(String, String)>, tokentrail::evidence::manifest::Manifest)> {
    let key = PackKey::load_or_create(&sign::key_path(db, None), true).unwrap();
    let summary = pack::build_file(store, &key, request, out, &|_, _, _| {})?;
    let csv = summary.manifest.files.iter().filter(|f| f.format == "csv").map(|f| (f.path.clone(), f.sha256.clone()));
    Ok((csv.collect(), summary.manifest))
}

#[test]
fn answers_past_retention_equal_those_before_it_and_say_where_they_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::lake::database(dir.path(), "5", "53");
    let (as_of, principal, upn) = {
        let conn = duckdb::Connection::open(&db).unwrap();
        let (principal, upn): (String, String) = conn
            .query_row(
                "SELECT r.principal_id, any_value(s.principal_name) FROM cosmos_requests r \
                 JOIN signins s ON s.principal_id = r.principal_id AND s.principal_name LIKE '%@%' \
                 GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        (crate::lake::as_of_keeping(&conn, 2), principal, upn)
    };
    let as_of: chrono::DateTime<chrono::Utc> = as_of.parse().unwrap();
    let store = Arc::new(Store::open(&db, &StoreOptions::default()).unwrap());
    let lake_dir = dir.path().join("lake");
    let reader = || Reader::new(Location::directory(&lake_dir).unwrap(), &dir.path().join("cache")).unwrap();
    let issuer = TestIssuer::start();
    let (_state, base) = serve_with_lake(store.clone(), &issuer, reader());
    let token = issuer.token(&[Role::Responder]);
    let now = chrono::Utc::now();
    let from = now - chrono::Duration::days(10);
    let z = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let asked = Asked {
        base: &base,
        token: &token,
        period: format!("from={}&to={}", z(from), z(now)),
        principal: &principal,
        upn: &upn,
    };
    let period = Period::new(from, now).unwrap();
    let rules = tokentrail::rules::rule::load(None).0;

    let (before, from_lake) = answers(&asked);
    assert_eq!(from_lake, [0; 4], "nothing is in the lake yet");
    assert!(
        before.requests_page["total"].as_i64().unwrap() > 1000,
        "more than a page: {}",
        before.requests_page["total"]
    );
    let (pack_before, _) =
        pack(&store, &db, &dir.path().join("before.zip"), &pack_request(&period, &rules, None)).unwrap();

    // Archive everything, then let retention keep the last 2 days (the service locked
    // DuckDB down already, as `serve` does before its archive thread runs).
    let lake = Lake::new(Location::directory(&lake_dir).unwrap()).unwrap();
    archive::run(&store, &lake, &archive::Options::default(), &|_| {}).unwrap();
    let retention = evict::Retention { hot_days: Some(1), tables: Default::default() };
    let evicted = evict::run(&store, &lake, &retention, as_of).unwrap();
    let moved = |table: &str| evicted.iter().filter(|e| e.table == table).map(|e| e.rows).sum::<i64>();
    assert!(moved("cosmos_requests") > 0 && moved("signins") > 0, "{evicted:?}");
    assert_eq!(moved("control_changes") + moved("directory_changes"), 0, "the histories entitlements replay stay");

    let (after, from_lake) = answers(&asked);
    same(&after, &before);
    let [page, csv, signins, profile_parts] = from_lake;
    assert!(page > 0 && csv > 0 && signins > 0 && profile_parts > 0, "{from_lake:?}");
    assert_eq!(page, csv, "the page's total_from_lake counts the rows the export marks `lake`");

    // The pack: the same populations, row for row, and it says it read the lake.
    let with_lake = reader();
    let (pack_after, manifest) =
        pack(&store, &db, &dir.path().join("after.zip"), &pack_request(&period, &rules, Some(&with_lake))).unwrap();
    assert_eq!(pack_after, pack_before);
    let archived = manifest.archived.clone().unwrap();
    assert!(archived.contains("were read from the lake") && archived.contains("cosmos_requests"), "{archived}");
    let read = manifest.lake.clone().unwrap();
    assert!(!read.files.is_empty() && read.files.iter().all(|f| f.sha256.len() == 64));
    // Without the lake the period is incomplete, and says so.
    let (pack_without, manifest) =
        pack(&store, &db, &dir.path().join("without.zip"), &pack_request(&period, &rules, None)).unwrap();
    assert_ne!(pack_without, pack_before, "the lake's rows are missing without it");
    assert!(manifest.archived.unwrap().contains("are not in these populations") && manifest.lake.is_none());

    // A file planted beside the archive's own is never read.
    let victim = lake_dir.join(&read.files.iter().find(|f| f.path.starts_with("table=cosmos_requests/")).unwrap().path);
    let planted = victim.with_file_name("batches-999999999998-999999999999.parquet");
    std::fs::copy(&victim, &planted).unwrap();
    same(&answers(&asked).0, &before);
    std::fs::remove_file(&planted).unwrap();

    // A cut file stops the answer with the file named, a 503 and not a wrong count.
    let original = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &original[..original.len() / 2]).unwrap();
    let (status, body) = get(&base, &token, &format!("/api/search/requests?{}", asked.period));
    let message = body["error"]["message"].as_str().unwrap_or_default();
    let name = victim.strip_prefix(&lake_dir).unwrap().to_str().unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("lake_unavailable")), "{body}");
    assert!(message.contains(name) && message.contains("has changed"), "{message}");
    // A file changed but not resized passes the size check searches make; the evidence
    // pack's SHA-256 check names it.
    let mut changed = original.clone();
    changed[original.len() / 2] ^= 0x55;
    std::fs::write(&victim, &changed).unwrap();
    let error = pack(&store, &db, &dir.path().join("changed.zip"), &pack_request(&period, &rules, Some(&with_lake)))
        .map(|_| ())
        .unwrap_err();
    let error = format!("{error:#}");
    assert!(error.contains(name) && error.contains("SHA-256"), "{error}");
    std::fs::write(&victim, &original).unwrap();
    same(&answers(&asked).0, &before);
}

/// `serve` over a lake in Azure Storage (Azurite): archived rows are fetched through
/// object_store into the cache beside the database, SHA-256 checked, and answered; a
/// cached copy that no longer matches is fetched again; the search page says which rows
/// came from the lake.
#[test]
fn serve_answers_from_a_lake_in_azure_storage_through_its_cache() {
    use crate::common::azurite::{self, Azurite};
    use crate::common::demo;
    let azurite = Azurite::start();
    azurite.create_container("answers");
    let dir = tempfile::tempdir().unwrap();
    let db = crate::lake::database(dir.path(), "3", "57");
    let url = format!("{}/answers", azurite.endpoint());
    let (as_of, period, total) = {
        let conn = duckdb::Connection::open(&db).unwrap();
        let total: i64 = conn.query_row("SELECT count(*) FROM cosmos_requests", [], |r| r.get(0)).unwrap();
        let z = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let now = chrono::Utc::now();
        let period = format!("from={}&to={}", z(now - chrono::Duration::days(10)), z(now));
        (crate::lake::as_of_keeping(&conn, 1), period, total)
    };
    let db_arg = db.to_str().unwrap();
    let archived = demo::bin()
        .args(["archive", "--db", db_arg, "--lake", &url, "--hot-days", "1", "--as-of", &as_of])
        .env("TOKENTRAIL_LAKE_ACCOUNT_KEY", azurite::KEY)
        .output()
        .unwrap();
    assert!(archived.status.success(), "{}", String::from_utf8_lossy(&archived.stderr));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("tokentrail.toml");
    std::fs::write(
        &config,
        format!(
            "db = {db:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\ndevelopment_sign_in = true\n\
             [lake]\nurl = {url:?}\ninterval_minutes = 600\n"
        ),
    )
    .unwrap();
    let mut child = demo::bin()
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("TOKENTRAIL_LAKE_ACCOUNT_KEY", azurite::KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The development sign-in's secret, printed on the terminal only.
    use std::io::BufRead as _;
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let secret = loop {
        let line = lines.next().expect("serve printed its sign-in secret").unwrap();
        if let Some((_, secret)) = line.split_once("enter this secret when asked: ") {
            break secret.trim().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let address = format!("127.0.0.1:{port}");
    let started = std::time::Instant::now();
    while demo::http_get(&address, "/healthz", None).is_none_or(|(s, _)| s != 200) {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let token = demo::token(&db, "Responder");
    let search = || {
        let (status, body) =
            demo::http_get(&address, &format!("/api/search/requests?limit=1&{period}"), Some(&token)).unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let page = search();
    assert_eq!(page["total"].as_i64(), Some(total), "every request, hot or archived: {page}");
    assert!(page["total_from_lake"].as_i64().unwrap() > 0, "{page}");
    let cache = db.with_extension("lake-cache");
    let cached: Vec<std::path::PathBuf> = walk(&cache);
    assert!(!cached.is_empty() && cached.iter().all(|p| p.extension().is_some_and(|e| e == "parquet")), "{cached:?}");
    // A cached copy cut short is fetched again, not answered from.
    std::fs::write(&cached[0], b"PAR1").unwrap();
    assert_eq!(search()["total"].as_i64(), Some(total));
    assert!(std::fs::metadata(&cached[0]).unwrap().len() > 4, "fetched again");
    // On-call sees it on the search page, in real headless Chromium.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use crate::browser::{browser, open, sign_in_as, wait_for};
        let base = format!("http://{address}");
        let (_driver, client) = browser(&dir.path().join("profile")).await;
        sign_in_as(&client, &base, "Responder", "On Call", Some(&secret)).await;
        open(&client, &base, &format!("/search?tab=requests&{period}")).await;
        let note = wait_for(
            &client,
            "the lake's note",
            "const n = document.querySelector('#lake-note'); return n ? n.textContent : null",
        )
        .await;
        let note = note.as_str().unwrap();
        assert!(note.contains("came from the Parquet lake: cosmos_requests"), "{note}");
        assert!(note.contains("stored_in"), "{note}");
        client.close().await.unwrap();
    });
    assert!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) } == 0);
    assert!(child.wait().unwrap().success(), "serve stops cleanly with the lake's reader");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}
