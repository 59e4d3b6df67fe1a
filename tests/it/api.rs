//! The HTTP API end to end: a real server on a loopback socket, a real DuckDB file with
//! generated traffic and its findings, and real tokens signed by a test key that a
//! local OpenID/JWKS server publishes (tests/common/jwks.rs). No switch skips validation.

use crate::common;

use chrono::{DateTime, Duration, Utc};
use common::jwks::{OTHER_TENANT, TENANT, TestIssuer, TestKey};
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use tempfile::TempDir;
use tokentrail::auth::Role;
use tokentrail::http::AppState;
use tokentrail::ingest::PipelineOptions;
use tokentrail::ingest::files::ingest_files;
use tokentrail::rules::{DetectionConfig, Detector};
use tokentrail::store::{Store, StoreOptions};
use tokentrail::synth::{Generator, Scenario, Tenant};

struct Fixture {
    db: Db,
    issuer: TestIssuer,
    base: String,
    state: AppState,
}

/// One server for the whole file: generating and detecting takes seconds, and the
/// tests only add (status changes, saved queries, access log rows), never remove.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // The server's log (a 500's cause) in the test output.
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn,tokentrail=info").try_init();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("api.duckdb"), &StoreOptions::default()).unwrap());
        let db = Db { _dir: dir, store: store.clone() };
        let from = DateTime::parse_from_rfc3339("2025-03-03T00:00:00Z").unwrap().with_timezone(&Utc);
        let generator = Generator::new(Tenant::new(21), 21);
        let (mut events, _) = generator.history(from, from + Duration::days(4), Scenario::all());
        // A request whose user agent is a spreadsheet formula, for the CSV export.
        let mut formula = events.iter().find(|e| e.category == "DataPlaneRequests").unwrap().clone();
        formula.record["properties"]["userAgent"] = json!("=HYPERLINK(\"http://evil.example\",\"x\")");
        formula.record["properties"]["activityId"] = json!("formula-injection-row");
        events.push(formula);
        let path = db._dir.path().join("history.ndjson");
        common::write_ndjson(&path, &events);
        let mut writer = store.writer().unwrap();
        let options = PipelineOptions { workers: 2, ..PipelineOptions::default() };
        let report = ingest_files(&store, &mut writer, &[path], options, indicatif::ProgressBar::hidden()).unwrap();
        assert!(report.failed.is_empty());
        let (detector, problems) = Detector::open(&db.store, &DetectionConfig::default()).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        detector.evaluate_after_commit(&db.store).unwrap();
        assert!(db.count("findings") > 0, "the scenarios raised findings");

        let issuer = TestIssuer::start();
        let (state, base) = common::app::serve(store.clone(), &issuer, detector.rules().to_vec());
        Fixture { db, issuer, base, state }
    })
}

/// The fixture's database, read directly (the same DuckDB instance the server uses).
struct Db {
    _dir: TempDir,
    store: Arc<Store>,
}

impl Db {
    fn value<T: duckdb::types::FromSql>(&self, sql: &str) -> T {
        let conn = self.store.connection().unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn count(&self, table: &str) -> i64 {
        self.value(&format!("SELECT count(*) FROM {table}"))
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into()
}

fn call(method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
    let url = format!("{}{path}", fixture().base);
    let agent = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let response = match (method, body) {
        ("GET", _) => {
            let mut request = agent.get(&url);
            if let Some(auth) = &auth {
                request = request.header("Authorization", auth);
            }
            request.call()
        }
        (_, body) => {
            let mut request = match method {
                "POST" => agent.post(&url),
                "PUT" => agent.put(&url),
                "PATCH" => agent.patch(&url),
                other => panic!("method {other}"),
            };
            if let Some(auth) = &auth {
                request = request.header("Authorization", auth);
            }
            request.send_json(body.unwrap_or(json!({})))
        }
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status().as_u16();
    let headers =
        response.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let body = response.body_mut().with_config().limit(1 << 30).read_to_string().expect("body");
    Reply { status, headers, body }
}

fn get(path: &str, role: Role) -> Reply {
    call("GET", path, Some(&fixture().issuer.token(&[role])), None)
}

fn post(path: &str, role: Role, body: Value) -> Reply {
    call("POST", path, Some(&fixture().issuer.token(&[role])), Some(body))
}

/// Every operation of the OpenAPI document: (method, path template, roles allowed).
fn operations() -> Vec<(String, String, Vec<Role>)> {
    let spec = get("/openapi.json", Role::Auditor);
    assert_eq!(spec.status, 200, "{}", spec.body);
    let spec = spec.json();
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let roles: Vec<Role> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["entra"].as_array().cloned().unwrap_or_default())
                .filter_map(|r| Role::from_claim(r.as_str().unwrap()))
                .collect();
            out.push((method.to_ascii_uppercase(), path.clone(), roles));
        }
    }
    assert!(out.len() >= 15, "the document lists the API: {out:?}");
    out
}

/// A concrete path for a template: ids that exist.
fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
}

#[test]
fn every_operation_declares_roles() {
    for (method, path, roles) in operations() {
        assert!(!roles.is_empty(), "{method} {path} declares no role, so the guard refuses everyone");
    }
}

#[test]
fn every_operation_refuses_bad_tokens_with_401() {
    let f = fixture();
    let issuer = &f.issuer;
    let now = Utc::now().timestamp();
    let all = Role::ALL;
    let stranger = TestKey::generate("not-published");
    let bad: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("garbage", Some("not-a-jwt".into())),
        ("expired", Some(issuer.token_with(&all, json!({"exp": now - 600, "iat": now - 4000, "nbf": now - 4000})))),
        ("not yet valid", Some(issuer.token_with(&all, json!({"nbf": now + 600})))),
        ("wrong audience", Some(issuer.token_with(&all, json!({"aud": "api://someone-else"})))),
        (
            "wrong tenant",
            Some(issuer.token_with(&all, json!({"tid": OTHER_TENANT, "iss": TestIssuer::issuer_v2(OTHER_TENANT)}))),
        ),
        (
            "issuer in the wrong version form",
            Some(issuer.token_with(&all, json!({"iss": format!("https://sts.windows.net/{TENANT}/v2.0")}))),
        ),
        ("unknown kid", Some(stranger.sign(&issuer.claims(&all)))),
        ("alg none", Some(issuer.unsigned(&issuer.claims(&all)))),
        ("HS256 with the public key", Some(issuer.hs256_with_public_key(&issuer.claims(&all)))),
        ("no oid", Some(issuer.token_with(&all, json!({"oid": null})))),
    ];
    for (method, path, _) in operations() {
        for (what, token) in &bad {
            let reply = call(&method, &concrete(&path), token.as_deref(), (method != "GET").then(|| json!({})));
            if token.is_none() && method == "GET" && !path.starts_with("/api/") && path != "/openapi.json" {
                // A web page: a browser without a session is sent to sign in.
                assert_eq!(reply.status, 303, "{method} {path}");
                assert!(reply.header("location").is_some_and(|l| l.starts_with("/auth/login")));
                continue;
            }
            assert_eq!(reply.status, 401, "{method} {path} with a {what} token: {}", reply.body);
            assert_eq!(reply.json()["error"]["code"], "unauthorized", "{method} {path} ({what})");
            assert!(reply.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer")), "{method} {path}");
        }
    }
}

#[test]
fn every_operation_refuses_the_wrong_role_with_403() {
    for (method, path, roles) in operations() {
        let others: Vec<Role> = Role::ALL.into_iter().filter(|r| !roles.contains(r)).collect();
        let token = fixture().issuer.token(&others);
        let reply = call(&method, &concrete(&path), Some(&token), (method != "GET").then(|| json!({})));
        assert_eq!(reply.status, 403, "{method} {path} with roles {others:?}: {}", reply.body);
        assert_eq!(reply.json()["error"]["code"], "forbidden");
        // No roles at all is refused too.
        let reply = call(&method, &concrete(&path), Some(&fixture().issuer.token(&[])), None);
        assert_eq!(reply.status, 403, "{method} {path} with no roles");
    }
}

#[test]
fn a_v1_token_for_the_app_id_uri_is_accepted() {
    let issuer = &fixture().issuer;
    let token = issuer.token_with(
        &[Role::Responder],
        json!({"iss": TestIssuer::issuer_v1(TENANT), "aud": common::jwks::APP_ID_URI, "ver": "1.0"}),
    );
    let reply = call("GET", "/api/status", Some(&token), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[test]
fn probes_and_metrics_need_no_token_and_pages_send_browsers_to_sign_in() {
    assert_eq!(call("GET", "/healthz", None, None).status, 200);
    assert_eq!(call("GET", "/readyz", None, None).status, 200);
    let metrics = call("GET", "/metrics", None, None);
    assert_eq!(metrics.status, 200);
    get("/api/status", Role::Responder);
    let metrics = call("GET", "/metrics", None, None);
    assert!(metrics.body.contains("tokentrail_http_request_duration_seconds_bucket"), "{}", metrics.body);
    assert!(metrics.body.contains("endpoint=\"/api/status\""), "{}", metrics.body);
    let page = call("GET", "/", None, None);
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/auth/login?return_to=%2F"));
}

#[test]
fn findings_page_with_a_keyset_cursor_and_show_their_evidence() {
    let first = get("/api/findings?limit=2", Role::Auditor).json();
    let rows = first["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let cursor = first["next_cursor"].as_str().expect("more than two findings");
    let second = get(&format!("/api/findings?limit=2&cursor={cursor}"), Role::Auditor).json();
    let ids = |page: &Value| -> Vec<i64> {
        page["rows"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect()
    };
    assert!(ids(&second).iter().all(|id| !ids(&first).contains(id)), "pages do not overlap");
    let total = fixture().db.count("findings");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/findings?limit=3&cursor={c}"),
            None => "/api/findings?limit=3".into(),
        };
        let page = get(&path, Role::Responder).json();
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len() as i64, total, "paging visits every finding once");

    let key_finding: i64 = fixture().db.value(
        "SELECT min(f.id) FROM findings f JOIN finding_evidence e USING (fingerprint) WHERE e.evidence_table = 'cosmos_requests'",
    );
    let detail = get(&format!("/api/findings/{key_finding}"), Role::Auditor);
    assert_eq!(detail.status, 200, "{}", detail.body);
    let detail = detail.json();
    assert!(detail["rule"]["remediation"].as_str().is_some_and(|r| !r.is_empty()));
    let evidence = detail["evidence"].as_array().unwrap();
    assert!(!evidence.is_empty());
    let first = evidence.iter().find(|e| e["evidence_table"] == "cosmos_requests").unwrap();
    assert!(first["row"]["operation"].as_str().is_some(), "the evidence row itself: {first}");

    let filtered = get("/api/findings?severity=high,critical&status=open", Role::Responder).json();
    for row in filtered["rows"].as_array().unwrap() {
        assert!(["high", "critical"].contains(&row["severity"].as_str().unwrap()));
    }
}

#[test]
fn bad_parameters_are_4xx_with_a_message_that_says_what_to_fix() {
    let cases = [
        ("/api/findings?limit=0", "limit=0 is out of range"),
        ("/api/findings?limit=abc", "limit"),
        ("/api/findings?status=bogus", "status=\"bogus\" is not one of"),
        ("/api/findings?cursor=xyz", "cursor"),
        ("/api/findings?from=yesterday", "RFC 3339"),
        ("/api/findings?color=red", "unknown field `color`"),
        ("/api/findings/abc", "path"),
        ("/api/search/requests?ip=10.0.0.0/99", "CIDR"),
        // Not an address: a 400 naming the value and what an address looks like, not 0 rows.
        (
            "/api/search/requests?ip=10.0.0",
            "ip=\"10.0.0\" is not an address or a CIDR range: give an IPv4 address like 203.0.113.7",
        ),
        ("/api/search/signins?ip=bogus-host", "ip=\"bogus-host\" is not an address"),
        ("/api/search/signins?ip=2001:db8::zz", "2001:db8::1"),
        // The search page's tab name is no sign-in kind: a 400, not 0 rows.
        ("/api/search/signins?kind=signins", "kind=\"signins\" is not one of user_interactive, user_noninteractive"),
        ("/api/search/requests?auth=password", "unknown variant"),
        ("/api/search/requests?format=xml", "unknown variant"),
        ("/api/search/requests?limit=5000", "limit=5000 is out of range"),
    ];
    for (path, expected) in cases {
        let reply = get(path, Role::Responder);
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        let message = reply.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(expected), "{path}: {message}");
    }
    assert_eq!(get("/api/findings/999999", Role::Responder).status, 404);
    let reply = post("/api/findings/1/acknowledge", Role::Responder, json!({"note": "x"}));
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("comment"));
}

#[test]
fn the_finding_lifecycle_goes_through_the_api_with_who_and_why() {
    let id: i64 = fixture().db.value("SELECT max(id) FROM findings WHERE status = 'open'");
    let path = |action: &str| format!("/api/findings/{id}/{action}");
    assert_eq!(post(&path("acknowledge"), Role::Responder, json!({"comment": "  "})).status, 400);
    let acked = post(&path("acknowledge"), Role::Responder, json!({"comment": "looking at it"}));
    assert_eq!(acked.status, 200, "{}", acked.body);
    assert_eq!(acked.json()["status"], "acknowledged");
    assert_eq!(post(&path("acknowledge"), Role::Responder, json!({"comment": "again"})).status, 409);
    // Suppressing is for admins.
    assert_eq!(post(&path("suppress"), Role::Responder, json!({"comment": "noise"})).status, 403);
    let suppressed = post(&path("suppress"), Role::Admin, json!({"comment": "known batch job"}));
    assert_eq!(suppressed.status, 200, "{}", suppressed.body);
    let history = get(&path("history"), Role::Auditor).json();
    let history = history.as_array().unwrap();
    let last = history.last().unwrap();
    assert_eq!(last["to_status"], "suppressed");
    assert_eq!(last["comment"], "known batch job");
    assert!(last["changed_by"].as_str().unwrap().contains(common::jwks::USER_OID), "{last}");
}

/// Who acknowledged a finding stays in its detail after it moves on (resolved, then open
/// again: detection reopening it sets the status and its author anew).
#[test]
fn a_finding_keeps_who_acknowledged_it_after_it_is_reopened() {
    let db = &fixture().db;
    // Neither the lowest open id (the test of changes at once) nor the highest (the lifecycle test's).
    assert!(db.value::<i64>("SELECT count(*) FROM findings WHERE status = 'open'") >= 3);
    let id: i64 = db.value("SELECT id FROM findings WHERE status = 'open' ORDER BY id LIMIT 1 OFFSET 1");
    let path = |action: &str| format!("/api/findings/{id}/{action}");
    let detail = get(&format!("/api/findings/{id}"), Role::Responder).json();
    assert!(detail["acknowledged"].is_null(), "nobody acknowledged it yet: {}", detail["acknowledged"]);
    for (action, comment) in
        [("acknowledge", "paged the app owner"), ("resolve", "key rotated"), ("reopen", "it is back")]
    {
        let reply = post(&path(action), Role::Responder, json!({ "comment": comment }));
        assert_eq!(reply.status, 200, "{action}: {}", reply.body);
    }
    let detail = get(&format!("/api/findings/{id}"), Role::Auditor).json();
    assert_eq!(detail["finding"]["status"], "open");
    let acknowledged = &detail["acknowledged"];
    assert_eq!(acknowledged["comment"], "paged the app owner", "{acknowledged}");
    assert!(acknowledged["acknowledged_by"].as_str().unwrap().contains(common::jwks::USER_OID), "{acknowledged}");
    assert!(acknowledged["acknowledged_at"].is_string(), "{acknowledged}");
}

/// Changes of one finding at once (two people, or a person and detection): each is made
/// or refused with a 409, never a server error, and the history has each one made.
#[test]
fn changes_of_one_finding_at_once_are_made_or_refused_never_a_500() {
    let db = &fixture().db;
    let id: i64 = db.value("SELECT min(id) FROM findings WHERE status = 'open'");
    assert!(id < db.value::<i64>("SELECT max(id) FROM findings WHERE status = 'open'"), "not the lifecycle test's");
    let history = format!("SELECT count(*) FROM finding_history WHERE finding_id = {id}");
    let before: i64 = db.value(&history);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..24)
            .map(|i| {
                let action = ["acknowledge", "resolve", "reopen"][i % 3];
                let body = json!({"comment": format!("at once {i}")});
                scope.spawn(move || post(&format!("/api/findings/{id}/{action}"), Role::Responder, body).status)
            })
            .collect();
        calls.into_iter().map(|call| call.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|status| [200, 409].contains(status)), "{statuses:?}");
    let made = statuses.iter().filter(|status| **status == 200).count() as i64;
    assert!(made > 0, "{statuses:?}");
    assert_eq!(db.value::<i64>(&history) - before, made);
}

#[test]
fn search_filters_by_principal_cidr_and_auth_and_streams_csv_and_ndjson() {
    let f = fixture();
    let principal: String = f.db.value(
        "SELECT principal_id FROM cosmos_requests WHERE principal_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    );
    let expected: i64 = f.db.value(&format!("SELECT count(*) FROM cosmos_requests WHERE principal_id = '{principal}'"));
    let page = get(&format!("/api/search/requests?principal={principal}&limit=1000"), Role::Responder).json();
    let rows = page["rows"].as_array().unwrap();
    assert_eq!(rows.len() as i64, expected.min(1000));
    assert!(rows.iter().all(|r| r["principal_id"] == principal.as_str()));

    let ip: String = f.db.value("SELECT client_ip FROM cosmos_requests WHERE client_ip LIKE '%.%.%.%' LIMIT 1");
    let octets: Vec<&str> = ip.split('.').collect();
    let cidr = format!("{}.{}.0.0/16", octets[0], octets[1]);
    let in_range = get(&format!("/api/search/requests?ip={cidr}&limit=1000"), Role::Responder).json();
    let in_range = in_range["rows"].as_array().unwrap();
    assert!(!in_range.is_empty());
    assert!(
        in_range.iter().all(|r| r["client_ip"].as_str().unwrap().starts_with(&format!("{}.{}.", octets[0], octets[1])))
    );

    let exact = get(&format!("/api/search/requests?ip={ip}&limit=1000"), Role::Responder).json();
    let exact = exact["rows"].as_array().unwrap();
    assert!(!exact.is_empty() && exact.iter().all(|r| r["client_ip"] == ip.as_str()), "an address finds its rows");

    // The total is every match, the same on every page.
    let first = get("/api/search/requests?auth=account_key&limit=2", Role::Responder).json();
    let matching: i64 = fixture().db.value("SELECT count(*) FROM cosmos_requests WHERE principal_id IS NULL AND auth_token_type ILIKE '%key%' AND auth_token_type NOT ILIKE '%resource%'");
    assert_eq!(first["total"], matching, "{first}");
    let cursor = first["next_cursor"].as_str().expect("more than one page");
    let second = get(&format!("/api/search/requests?auth=account_key&limit=2&cursor={cursor}"), Role::Responder).json();
    assert_eq!(second["total"], matching);
    let keys = get("/api/search/requests?auth=account_key&limit=1000", Role::Responder).json();
    let keys = keys["rows"].as_array().unwrap();
    assert!(!keys.is_empty(), "the key-based scenario's requests");
    assert!(keys.iter().all(|r| r["principal_id"].is_null()));

    let total: i64 = f.db.count("cosmos_requests");
    let ndjson = get("/api/search/requests?format=ndjson", Role::Responder);
    assert_eq!(ndjson.status, 200);
    assert_eq!(ndjson.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(ndjson.body.lines().count() as i64, total, "every request, streamed");
    let csv = get("/api/search/requests?format=csv", Role::Responder);
    assert_eq!(csv.status, 200);
    assert!(csv.body.starts_with("row_id,time,account"), "{}", &csv.body[..200]);
    let formula = csv.body.lines().find(|l| l.contains("formula-injection-row")).expect("the crafted row");
    assert!(formula.contains("'=HYPERLINK"), "a formula is neutralised: {formula}");
    assert!(!formula.contains(",=HYPERLINK") && !formula.contains(",\"=HYPERLINK"), "{formula}");

    let signins = get("/api/search/signins?failed=false&limit=5", Role::Responder).json();
    assert_eq!(signins["rows"].as_array().unwrap().len(), 5);
}

#[test]
fn sql_injection_through_filters_is_harmless() {
    let f = fixture();
    let before = (f.db.count("cosmos_requests"), f.db.count("signins"), f.db.count("findings"));
    let attacks = [
        "' OR '1'='1",
        "x'; DROP TABLE signins; --",
        "1) OR (1=1",
        "\" OR \"\"=\"",
        "'; COPY cosmos_requests TO '/tmp/x.csv'; --",
    ];
    for attack in attacks {
        let q: String = url::form_urlencoded::byte_serialize(attack.as_bytes()).collect();
        for path in [
            format!("/api/search/requests?principal={q}"),
            format!("/api/search/requests?account={q}&database={q}&collection={q}&operation={q}"),
            format!("/api/search/signins?principal={q}&country={q}&app={q}"),
            format!("/api/findings?rule={q}&principal={q}"),
            format!("/api/quarantine?source={q}"),
        ] {
            let reply = get(&path, Role::Responder);
            assert_eq!(reply.status, 200, "{path}: {}", reply.body);
            assert_eq!(reply.json()["rows"].as_array().unwrap().len(), 0, "{path} matched nothing");
        }
        let reply = get(&format!("/api/principals/{q}"), Role::Responder);
        assert_eq!(reply.status, 404, "{}", reply.body);
        // A sign-in kind is one of four: anything else is refused before any SQL.
        let reply = get(&format!("/api/search/signins?kind={q}"), Role::Responder);
        assert_eq!(reply.status, 400, "{}", reply.body);
    }
    let after = (f.db.count("cosmos_requests"), f.db.count("signins"), f.db.count("findings"));
    assert_eq!(before.0, after.0);
    assert_eq!(before.1, after.1);
    assert!(!std::path::Path::new("/tmp/x.csv").exists());
}

#[test]
fn the_sql_console_runs_selects_and_refuses_everything_else() {
    let ok = post(
        "/api/sql",
        Role::Responder,
        json!({"sql": "SELECT operation, count(*) AS n FROM cosmos_requests GROUP BY 1 ORDER BY 2 DESC"}),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let ok = ok.json();
    assert_eq!(ok["columns"], json!(["operation", "n"]));
    assert!(!ok["rows"].as_array().unwrap().is_empty());
    for sql in [
        "WITH r AS (SELECT * FROM cosmos_requests) SELECT count(*) FROM r",
        "EXPLAIN SELECT * FROM signins",
        "SELECT * FROM principals LIMIT 3",
        "SELECT * FROM range(3)",
    ] {
        let reply = post("/api/sql", Role::Responder, json!({"sql": sql}));
        assert_eq!(reply.status, 200, "{sql}: {}", reply.body);
    }
    let capped = post("/api/sql", Role::Responder, json!({"sql": "SELECT * FROM range(50000)", "limit": 10}));
    let capped = capped.json();
    assert_eq!(capped["rows"].as_array().unwrap().len(), 10);
    assert_eq!(capped["truncated"], true);

    let refused = [
        "INSERT INTO findings (id) VALUES (1)",
        "DELETE FROM access_log",
        "UPDATE findings SET status = 'resolved'",
        "DROP TABLE signins",
        "COPY cosmos_requests TO '/tmp/out.csv'",
        "ATTACH '/tmp/other.duckdb' AS other",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_json_auto('/etc/hostname')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM glob('/*')",
        "SELECT * FROM query('DELETE FROM findings')",
        "SET memory_limit = '100GB'",
        "PRAGMA enable_profiling",
        "INSTALL httpfs",
        "SELECT 1; DELETE FROM findings",
        "SELECT getenv('HOME')",
        "SELECT nextval('finding_ids')",
        "SELECT * FROM other.main.t",
        "CREATE TABLE x AS SELECT 1",
        "CALL pragma_version()",
        "CHECKPOINT",
        "EXPORT DATABASE '/tmp/dump'",
    ];
    for sql in refused {
        let reply = post("/api/sql", Role::Responder, json!({"sql": sql}));
        assert_eq!(reply.status, 400, "{sql}: {}", reply.body);
        let code = reply.json()["error"]["code"].as_str().unwrap().to_string();
        assert!(code == "sql_refused" || code == "sql_error", "{sql}: {}", reply.body);
    }
    assert!(fixture().db.count("findings") > 0);
    let broken = post("/api/sql", Role::Responder, json!({"sql": "SELECT no_such_column FROM signins"}));
    assert_eq!(broken.status, 400);
    assert!(broken.json()["error"]["message"].as_str().unwrap().contains("no_such_column"));
}

/// DuckDB here has no ICU: `now() - INTERVAL 1 DAY` is a binder error listing every
/// candidate of `-`. The 400 is short and names the forms that work, and they do.
#[test]
fn time_arithmetic_without_icu_is_answered_with_the_form_that_works() {
    for sql in [
        "SELECT count(*) FROM signins WHERE time > now() - INTERVAL 1 DAY",
        "SELECT current_timestamp - INTERVAL '1 hour' AS t",
        "SELECT date_trunc('hour', time) FROM signins",
    ] {
        let reply = post("/api/sql", Role::Responder, json!({"sql": sql}));
        assert_eq!(reply.status, 400, "{sql}: {}", reply.body);
        let message = reply.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("utc_add(now(), - INTERVAL 1 DAY)"), "{sql}: {message}");
        assert!(message.contains("now()::TIMESTAMP - INTERVAL 1 DAY"), "{sql}: {message}");
        assert!(!message.contains("Candidate functions") && message.lines().count() == 1, "{sql}: {message}");
    }
    for sql in [
        "SELECT count(*) AS n FROM signins WHERE time > utc_add(now(), - INTERVAL 1 DAY)",
        "SELECT count(*) AS n FROM signins WHERE time > now()::TIMESTAMP - INTERVAL 1 DAY",
        "SELECT count(*) AS n FROM (SELECT utc_hour(time), date_trunc('hour', time::TIMESTAMP) FROM signins)",
    ] {
        let reply = post("/api/sql", Role::Responder, json!({"sql": sql}));
        assert_eq!(reply.status, 200, "{sql}: {}", reply.body);
    }
    // Other errors keep DuckDB's own message.
    let other = post("/api/sql", Role::Responder, json!({"sql": "SELECT no_such_column FROM signins"}));
    assert_eq!(other.status, 400);
    assert!(!other.json()["error"]["message"].as_str().unwrap().contains("utc_add"), "{}", other.body);
}

#[test]
fn a_long_query_is_stopped_at_the_timeout() {
    let started = std::time::Instant::now();
    let reply = post(
        "/api/sql",
        Role::Responder,
        json!({"sql": "SELECT count(*) FROM range(100000000) a, range(100000000) b WHERE a.range + b.range = 7"}),
    );
    // 504, which browsers do not send again (they re-send a 408 on their own).
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.json()["error"]["code"], "query_timeout");
    assert!(started.elapsed() < tokentrail::http::api::console::TIMEOUT + std::time::Duration::from_secs(10));
}

#[test]
fn saved_queries_are_checked_and_listed() {
    let saved = post(
        "/api/sql/saved",
        Role::Responder,
        json!({"name": "deletes by principal", "sql": "SELECT principal_id, count(*) FROM cosmos_requests WHERE operation = 'Delete' GROUP BY 1"}),
    );
    assert_eq!(saved.status, 201, "{}", saved.body);
    let bad = post("/api/sql/saved", Role::Responder, json!({"name": "bad", "sql": "DELETE FROM findings"}));
    assert_eq!(bad.status, 400);
    let list = get("/api/sql/saved", Role::Responder).json();
    assert!(list.as_array().unwrap().iter().any(|q| q["name"] == "deletes by principal"));
    let schema = get("/api/sql/schema", Role::Responder).json();
    assert!(schema.as_array().unwrap().iter().any(|t| t["table_name"] == "cosmos_requests"));
}

#[test]
fn a_principal_profile_shows_where_it_signed_in_and_what_it_touched() {
    let principal: String = fixture().db.value(
        "SELECT principal_id FROM cosmos_requests WHERE principal_id IN (SELECT principal_id FROM signins)
         GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    );
    let reply = get(&format!("/api/principals/{principal}"), Role::Responder);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let profile = reply.json();
    assert_eq!(profile["principal"]["principal_id"], principal.as_str());
    assert!(!profile["signin_sources"].as_array().unwrap().is_empty());
    assert!(!profile["data_access"].as_array().unwrap().is_empty());
    assert!(!profile["daily"].as_array().unwrap().is_empty());
    let timeline = profile["timeline"].as_array().unwrap();
    assert!(timeline.iter().any(|e| e["type"] == "signin") && timeline.iter().any(|e| e["type"] == "data"));
}

/// Each data operation among a finding's evidence carries the address its token was signed
/// in from (request_signins), so the page can mark a request from elsewhere; the fixture's
/// token-theft scenarios give some that differ.
#[test]
fn evidence_requests_carry_their_tokens_signin_address() {
    let db = &fixture().db;
    let expected = |row: i64| -> Option<String> {
        db.store
            .connection()
            .unwrap()
            .query_row("SELECT signin_ip FROM request_signins WHERE request_row = ?", [row], |r| r.get(0))
            .ok()
            .flatten()
    };
    let ids: Vec<i64> = {
        let conn = db.store.connection().unwrap();
        let mut stmt = conn.prepare("SELECT id FROM findings ORDER BY id").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let (mut checked, mut elsewhere) = (0, 0);
    for id in ids {
        let detail = get(&format!("/api/findings/{id}"), Role::Responder).json();
        for e in detail["evidence"].as_array().unwrap().iter().filter(|e| e["evidence_table"] == "cosmos_requests") {
            let row = &e["row"];
            let signin_ip = expected(e["row_id"].as_i64().unwrap());
            assert_eq!(row["signin_ip"].as_str().map(String::from), signin_ip, "finding {id}: {row}");
            checked += 1;
            if signin_ip.is_some_and(|ip| row["client_ip"].as_str() != Some(ip.as_str())) {
                elsewhere += 1;
            }
        }
    }
    assert!(checked > 0, "some evidence is data operations");
    assert!(elsewhere > 0, "some evidence requests came from another address than their token's sign-in");
}

/// The principal's timeline is paged, not cut at 500 rows: the total in the period, and
/// pages by `timeline_offset` that neither repeat nor skip a row.
#[test]
fn a_principal_timeline_is_paged_with_its_total() {
    let principal: String = fixture().db.value(
        "SELECT principal_id FROM cosmos_requests WHERE principal_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    );
    let first = get(&format!("/api/principals/{principal}"), Role::Responder).json();
    let total = first["timeline_total"].as_i64().unwrap();
    assert!(total > 500, "the busiest principal has more than a page: {total}");
    let (from, to) = (first["from"].as_str().unwrap().to_string(), first["to"].as_str().unwrap().to_string());
    let enc = |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
    let key = |r: &Value| format!("{}/{}/{}", r["type"], r["row_id"], r["time"]);
    let mut seen = std::collections::HashSet::new();
    let mut offset = 0;
    while offset < total {
        let path = format!("/api/principals/{principal}?from={}&to={}&timeline_offset={offset}", enc(&from), enc(&to));
        let page = get(&path, Role::Responder);
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let page = page.json();
        assert_eq!(page["timeline_total"], total);
        assert_eq!(page["timeline_offset"], offset);
        let rows = page["timeline"].as_array().unwrap();
        assert_eq!(rows.len() as i64, (total - offset).min(500), "{path}");
        for row in rows {
            assert!(seen.insert(key(row)), "{path}: {} is on an earlier page too", key(row));
        }
        offset += rows.len() as i64;
    }
    assert_eq!(seen.len() as i64, total);
    let bad = get(&format!("/api/principals/{principal}?timeline_offset=-1"), Role::Responder);
    assert_eq!(bad.status, 400, "{}", bad.body);
}

/// On-call is told a UPN or a name, not an object id: the principal page and Search's
/// principal filter take either (ignoring case), as bound parameters.
#[test]
fn a_principal_is_found_by_upn_or_display_name_as_well_as_id() {
    let db = &fixture().db;
    // A user whose UPN and display name belong to it alone.
    let (id, upn, display): (String, String, String) = {
        let conn = db.store.connection().unwrap();
        conn.query_row(
            "SELECT principal_id, any_value(principal_name), any_value(user_display_name) FROM signins
             WHERE principal_name LIKE '%@%' AND user_display_name IS NOT NULL
               AND lower(user_display_name) IN (SELECT lower(user_display_name) FROM signins
                   GROUP BY 1 HAVING count(DISTINCT principal_id) = 1)
               AND lower(principal_name) IN (SELECT lower(principal_name) FROM signins
                   GROUP BY 1 HAVING count(DISTINCT principal_id) = 1)
               AND principal_id IN (SELECT principal_id FROM cosmos_requests)
             GROUP BY principal_id ORDER BY count(*) DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    let by_id = get(&format!("/api/principals/{id}"), Role::Responder).json();
    let segment = |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
    for name in [upn.clone(), upn.to_uppercase(), display.clone(), display.to_lowercase()] {
        let reply = get(&format!("/api/principals/{}", path_segment(&name)), Role::Responder);
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
        let profile = reply.json();
        assert_eq!(profile["principal"]["principal_id"], id.as_str(), "{name}");
        assert_eq!(profile["timeline"], by_id["timeline"], "{name}");
        for tab in ["requests", "signins"] {
            let by_name = get(&format!("/api/search/{tab}?principal={}&limit=1000", segment(&name)), Role::Responder);
            let by_id = get(&format!("/api/search/{tab}?principal={id}&limit=1000"), Role::Responder);
            assert_eq!(by_name.status, 200, "{tab} {name}: {}", by_name.body);
            let rows = by_name.json()["rows"].clone();
            assert!(!rows.as_array().unwrap().is_empty(), "{tab} {name}");
            assert_eq!(rows, by_id.json()["rows"], "{tab} {name}");
        }
    }
    // A name no sign-in carries is still a 404; one several principals share names them.
    let reply = get("/api/principals/nobody%40nowhere.example", Role::Responder);
    assert_eq!(reply.status, 404, "{}", reply.body);
    let shared: Option<String> = db
        .store
        .connection()
        .unwrap()
        .query_row(
            "SELECT user_display_name FROM signins WHERE user_display_name IS NOT NULL
             GROUP BY 1 HAVING count(DISTINCT principal_id) > 1 LIMIT 1",
            [],
            |r| r.get(0),
        )
        .ok();
    if let Some(shared) = shared {
        let reply = get(&format!("/api/principals/{}", path_segment(&shared)), Role::Responder);
        assert_eq!(reply.status, 400, "{shared}: {}", reply.body);
        assert!(reply.json()["error"]["message"].as_str().unwrap().contains("by its id"), "{}", reply.body);
    }
}

#[test]
fn status_quarantine_and_rules_answer() {
    let status = get("/api/status", Role::Auditor).json();
    assert!(status["tables"].as_array().unwrap().iter().any(|t| t["table_name"] == "cosmos_requests"));
    // The fixture ran detection after its last commit: nothing is waiting.
    let detection = &status["detection"];
    assert!(detection["committed_batch"].as_i64().unwrap() >= 1, "{detection}");
    assert_eq!(detection["absorbed_batch"], detection["committed_batch"], "{detection}");
    assert_eq!(detection["batches_behind"], 0, "{detection}");
    assert_eq!(detection["waiting_for_ingest"], false, "{detection}");
    assert!(detection["absorbed_at"].is_string(), "{detection}");
    let rules = get("/api/rules", Role::Auditor).json();
    assert!(rules.as_array().unwrap().iter().any(|r| r["id"] == "key_auth_access" && r["soc2"].is_array()));
    let quarantine = get("/api/quarantine", Role::Responder);
    assert_eq!(quarantine.status, 200, "{}", quarantine.body);
}

#[test]
fn every_call_is_in_the_access_log_which_the_api_cannot_change() {
    let marker = format!("marker-{}", rand_marker());
    let token = fixture().issuer.token(&[Role::Responder]);
    let reply = call("GET", &format!("/api/search/signins?principal={marker}"), Some(&token), None);
    assert_eq!(reply.status, 200);
    call("POST", "/api/sql", Some(&token), Some(json!({"sql": format!("SELECT '{marker}' AS m")})));
    call("GET", &format!("/api/search/requests?principal={marker}"), None, None);
    fixture().state.audit.flush();
    let log = get("/api/access-log?limit=1000", Role::Auditor).json();
    let rows = log["rows"].as_array().unwrap();
    let mine: Vec<&Value> =
        rows.iter().filter(|r| r["parameters"].as_str().unwrap_or_default().contains(&marker)).collect();
    let search = mine.iter().find(|r| r["endpoint"] == "/api/search/signins").expect("the search is logged");
    assert_eq!(search["oid"], common::jwks::USER_OID);
    assert_eq!(search["tid"], TENANT);
    assert_eq!(search["role"], "TokenTrail.Responder");
    assert_eq!(search["status"], 200);
    assert_eq!(search["rows"], 0);
    assert_eq!(search["auth"], "bearer");
    let sql = mine
        .iter()
        .find(|r| r["endpoint"] == "/api/sql" && r["status"] == 200)
        .expect("the SQL console call is logged with its SQL");
    assert_eq!(sql["rows"], 1);
    assert!(mine.iter().any(|r| r["endpoint"] == "/api/sql" && r["status"] == 102), "and its start, before it ran");
    let refused = mine.iter().find(|r| r["endpoint"] == "/api/search/requests").expect("a refused call is logged");
    assert_eq!(refused["status"], 401);
    assert!(refused["oid"].is_null());
    // The access log is read-only: no route writes it, and the SQL console refuses to.
    for method in ["POST", "PUT", "PATCH"] {
        let reply = call(method, "/api/access-log", Some(&fixture().issuer.token(&Role::ALL)), Some(json!({})));
        assert_eq!(reply.status, 405, "{method} /api/access-log");
    }
    let reply = post("/api/sql", Role::Responder, json!({"sql": "DELETE FROM access_log"}));
    assert_eq!(reply.status, 400);
}

fn rand_marker() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[test]
fn every_dashboard_file_is_compiled_in_and_renders_without_a_failed_panel() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".toml").map(String::from))
        .collect();
    files.sort();
    let compiled: Vec<String> =
        tokentrail::http::api::dashboards::DASHBOARDS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(files, compiled, "src/http/api/dashboards.rs lists every file of dashboards/");
    let list = get("/api/dashboards", Role::Auditor).json();
    assert_eq!(list.as_array().unwrap().len(), compiled.len());
    for name in compiled {
        let reply = get(&format!("/api/dashboards/{name}"), Role::Auditor);
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
        let dashboard = reply.json();
        for panel in dashboard["panels"].as_array().unwrap() {
            assert!(panel["error"].is_null(), "{name} / {}: {}", panel["title"], panel["error"]);
        }
        let with_rows = dashboard["panels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| !p["rows"].as_array().unwrap().is_empty())
            .count();
        assert!(
            with_rows * 2 >= dashboard["panels"].as_array().unwrap().len(),
            "{name}: most panels show data over the generated week"
        );
    }
    assert_eq!(get("/api/dashboards/nope", Role::Auditor).status, 404);
}

#[test]
fn ui_pages_are_served_with_a_strict_content_security_policy() {
    for path in ["/", "/findings/1", "/sql", "/dashboards/access-overview", "/assets/app.js"] {
        let reply = get(path, Role::Responder);
        assert_eq!(reply.status, 200, "{path}");
        let csp = reply.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{path}: {csp}");
    }
    assert_eq!(get("/assets/nope.js", Role::Responder).status, 404);
}

/// Escapes from the read-only console, each refused with a 400 that says why, and
/// leaving the database and the file system as they were.
const CONSOLE_ESCAPES: &[&str] = &[
    // COPY … TO inside WITH, at every depth: DuckDB parses it as a query node.
    "WITH c AS (COPY (SELECT 1 AS x) TO '{db}' (FORMAT csv, HEADER false, USE_TMP_FILE false)) SELECT * FROM c",
    "WITH c AS (COPY (SELECT 1 AS x) TO '{file}' (FORMAT csv)) SELECT * FROM c",
    "WITH c AS MATERIALIZED (COPY (SELECT 1 AS x) TO '{file}') SELECT * FROM c",
    "SELECT * FROM (WITH c AS (COPY (SELECT 1) TO '{file}') SELECT 1)",
    "SELECT (WITH c AS (COPY (SELECT 1) TO '{file}') SELECT 1)",
    "SELECT 1 WHERE EXISTS (WITH c AS (COPY (SELECT 1) TO '{file}') SELECT 1)",
    "WITH a AS (SELECT 1), c AS (COPY (SELECT 1) TO '{file}') SELECT * FROM a",
    "SELECT 1 UNION ALL (WITH c AS (COPY (SELECT 1) TO '{file}') SELECT 2)",
    "SELECT * FROM range(3) r, (WITH c AS (COPY (SELECT 1) TO '{file}') SELECT 1) s",
    "EXPLAIN WITH c AS (COPY (SELECT 1) TO '{file}') SELECT 1",
    "EXPLAIN ANALYZE WITH c AS (COPY (SELECT 1) TO '{file}') SELECT 1",
    "WITH c AS (COPY findings TO '{file}') SELECT 1",
    // Writes inside WITH.
    "WITH c AS (DELETE FROM findings RETURNING *) SELECT count(*) FROM c",
    "WITH c AS (UPDATE findings SET status = 'resolved' RETURNING *) SELECT count(*) FROM c",
    "WITH c AS (INSERT INTO saved_queries (name, sql, created_at) VALUES ('x', 'y', now()) RETURNING *) SELECT * FROM c",
    // A CTE name in one scope does not make the same name elsewhere a CTE.
    "SELECT * FROM (WITH duckdb_databases AS (SELECT 1) SELECT 1), duckdb_databases",
    "SELECT * FROM (WITH pg_settings AS (SELECT 1) SELECT 1) t, pg_settings",
    "SELECT * FROM (WITH access_log AS (SELECT 1) SELECT 1) t, access_log",
    // A non-recursive CTE's body, a recursive CTE's anchor and an earlier CTE's body
    // read the catalog's table of that name.
    "WITH access_log AS (SELECT * FROM access_log) SELECT * FROM access_log",
    "WITH RECURSIVE access_log AS (SELECT * FROM access_log) SELECT * FROM access_log",
    "WITH RECURSIVE access_log(id) AS (SELECT id FROM access_log UNION ALL SELECT id + 1 FROM access_log WHERE id < 0) SELECT * FROM access_log",
    "WITH a AS (SELECT * FROM access_log), access_log AS (SELECT 1) SELECT * FROM a",
    // Tables no Responder reads, named however.
    "SELECT * FROM access_log",
    "SELECT * FROM main.access_log",
    "SELECT * FROM \"ACCESS_LOG\"",
    "SELECT * FROM detection_state",
    "SELECT * FROM ingest_chain",
    // Catalogs, settings, files.
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_databases()",
    "SELECT * FROM pragma_database_list()",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM pg_catalog.pg_settings",
    "SELECT * FROM system.main.duckdb_tables",
    "SELECT * FROM temp.main.t",
    "FROM '/etc/passwd'",
    "SELECT * FROM '{db}'",
    "SELECT * FROM \"/etc/hostname\"",
    "SELECT * FROM 'https://example.com/x.csv'",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_parquet('{db}')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM test_all_types()",
    "SHOW TABLES",
    "SHOW ALL TABLES",
    "SHOW DATABASES",
    "DESCRIBE access_log",
    "SUMMARIZE access_log",
    "SELECT * FROM (DESCRIBE access_log)",
    "SELECT current_setting('temp_directory')",
    "SELECT getenv('HOME')",
    "SELECT main.getenv('HOME')",
    "SELECT system.main.getenv('HOME')",
    "SELECT pg_sleep(100)",
    "SELECT sleep_ms(100000)",
    "SELECT write_log('forged')",
    "SELECT pg_get_viewdef(1)",
    "SELECT currval('finding_ids')",
    // Sizes a query could blow up.
    "SELECT repeat('x', 300000000)",
    "SELECT length(repeat(repeat('x', 1000), 1000))",
    "SELECT repeat(user_agent, 1000) FROM cosmos_requests",
    "SELECT lpad('x', 1000000000, 'y')",
    "SELECT printf('%1000000000d', 1)",
    "SELECT format('{:>1000000000}', 1)",
    "SELECT len(range(1000000000))",
    "SELECT list_resize([1], 1000000000)",
    "SELECT string_agg(user_agent, '') FROM cosmos_requests, range(1000)",
    "SELECT list(range) FROM range(100000000)",
    "SELECT array_agg(client_ip) FROM cosmos_requests",
    "SELECT histogram(client_ip) FROM cosmos_requests",
    "SELECT max(user_agent, 1000000) FROM cosmos_requests",
    "SELECT max(user_agent, 5) OVER () FROM cosmos_requests",
    "SELECT list(client_ip) OVER () FROM cosmos_requests",
    "SELECT list_transform(string_split(user_agent, ' '), x -> user_agent) FROM cosmos_requests",
    "SELECT [user_agent FOR x IN range(10)] FROM cosmos_requests",
    "SELECT replace(user_agent, 'a', '{long}') FROM cosmos_requests",
];

fn escape(sql: &str, db: &str, file: &str) -> String {
    sql.replace("{db}", db).replace("{file}", file).replace("{long}", &"y".repeat(1000))
}

#[test]
fn the_console_refuses_every_escape_and_the_database_and_files_stay() {
    let f = fixture();
    let db = f.db.store.path().display().to_string();
    let file = f.db._dir.path().join("escape.csv").display().to_string();
    let size = std::fs::metadata(&db).unwrap().len();
    let findings = f.db.count("findings");
    for sql in CONSOLE_ESCAPES {
        let sql = escape(sql, &db, &file);
        let reply = post("/api/sql", Role::Responder, json!({"sql": sql}));
        assert_eq!(reply.status, 400, "{sql}: {}", reply.body);
        let error = &reply.json()["error"];
        assert!(error["code"] == "sql_refused" || error["code"] == "sql_error", "{sql}: {}", reply.body);
        assert!(error["message"].as_str().is_some_and(|m| m.len() > 10), "{sql}: says why");
        // A saved query is checked the same way.
        let saved = post("/api/sql/saved", Role::Responder, json!({"name": "escape", "sql": sql}));
        assert_eq!(saved.status, 400, "saved {sql}: {}", saved.body);
    }
    assert!(!std::path::Path::new(&file).exists(), "no file was written");
    assert!(std::fs::metadata(&db).unwrap().len() >= size, "the database was not cut");
    assert_eq!(f.db.count("findings"), findings);
    assert_eq!(get("/api/status", Role::Responder).status, 200);
}

#[test]
fn the_console_still_reads_what_responders_need() {
    for sql in [
        "WITH findings AS (SELECT 1 AS x) SELECT * FROM findings",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
        "WITH a AS (SELECT 1 AS x), b AS (SELECT * FROM a) SELECT * FROM b",
        "SELECT * FROM (WITH s AS (SELECT principal_id FROM signins) SELECT count(*) FROM s)",
        "DESCRIBE findings",
        "SELECT * FROM (DESCRIBE signins)",
        "SELECT NULL",
        "SELECT NULL AS a, 1::HUGEINT AS b, 1.5::DECIMAL(10, 2) AS c, INTERVAL 90 MINUTE AS d, [1, NULL] AS e, {'k': 1} AS f, MAP {'a': 1} AS g, '00000000-0000-0000-0000-000000000001'::UUID AS h, 'x'::BLOB AS i, TIME '10:00:00' AS j, DATE '2025-01-01' AS k, 1::UTINYINT AS l, 2.5::FLOAT AS m",
        "SELECT repeat('-', 20), lpad('7', 3, '0'), printf('%5.1f', 3.14159), bar(5, 0, 10, 20)",
        "SELECT max(client_ip, 5), arg_max(principal_id, time, 3) FROM cosmos_requests",
        "SELECT principal_id, count(DISTINCT client_ip) FROM cosmos_requests GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
        "SELECT unnest(string_split('a,b', ','))",
        "SELECT x FROM range(5) t(x) QUALIFY row_number() OVER (ORDER BY x DESC) <= 2",
        "SELECT replace(user_agent, 'a', 'b') FROM cosmos_requests LIMIT 3",
        "SELECT utc_hour(time), user_agent_family(user_agent) FROM cosmos_requests LIMIT 3",
        "SELECT * FROM request_context LIMIT 3",
    ] {
        let reply = post("/api/sql", Role::Responder, json!({"sql": sql}));
        assert_eq!(reply.status, 200, "{sql}: {}", reply.body);
    }
    let null = post("/api/sql", Role::Responder, json!({"sql": "SELECT NULL AS nothing"})).json();
    assert_eq!(null["rows"], json!([[null]]));
}

#[test]
fn table_grants_decide_every_table_and_the_access_log_is_not_a_responders() {
    use tokentrail::http::api::console::grants;
    let tables: Vec<String> = {
        let conn = fixture().db.store.connection().unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND database_name = current_database()
                 UNION SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal
                   AND database_name = current_database()",
            )
            .unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    for table in &tables {
        let granted = Role::ALL.iter().any(|r| grants::tables(*r).contains(&table.as_str()));
        assert!(
            granted || grants::INTERNAL.contains(&table.as_str()),
            "{table} is neither granted to a role nor listed as internal in src/http/api/console/grants.rs"
        );
    }
    let schema = get("/api/sql/schema", Role::Responder).json();
    let names: Vec<&str> = schema.as_array().unwrap().iter().map(|t| t["table_name"].as_str().unwrap()).collect();
    assert!(names.contains(&"cosmos_requests") && !names.contains(&"access_log"), "{names:?}");
    // A Responder who is also an Auditor reads the access log, as the API lets them.
    let both = fixture().issuer.token(&[Role::Responder, Role::Auditor]);
    let reply = call("POST", "/api/sql", Some(&both), Some(json!({"sql": "SELECT count(*) FROM access_log"})));
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[test]
fn every_duckdb_type_becomes_json_without_a_panic() {
    let conn = fixture().db.store.connection().unwrap();
    let rows = tokentrail::http::api::results::objects(&conn, "SELECT * FROM test_all_types()", &[]).unwrap();
    assert!(rows.len() >= 3, "{rows:?}");
    let first = &rows[0];
    assert!(first.len() > 40, "every column is there: {}", first.len());
    assert_eq!(first["bool"], json!(false));
    assert_eq!(first["hugeint"], json!("-170141183460469231731687303715884105728"));
    assert!(rows[2].values().all(Value::is_null), "the third row is all NULL");
}

#[test]
fn the_console_writes_its_access_log_row_before_it_runs() {
    let marker = format!("before-{}", rand_marker());
    let reply = post("/api/sql", Role::Responder, json!({"sql": format!("SELECT '{marker}' AS m")}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let request_id = reply.header("x-request-id").expect("every answer names its request").to_string();
    fixture().state.audit.flush();
    let conn = fixture().db.store.connection().unwrap();
    let mut stmt =
        conn.prepare("SELECT status, request_id FROM access_log WHERE parameters::VARCHAR LIKE ? ORDER BY id").unwrap();
    let rows: Vec<(i32, String)> =
        stmt.query_map([format!("%{marker}%")], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(rows, vec![(102, request_id.clone()), (200, request_id)], "the start row comes first");
}

#[test]
fn made_up_methods_and_huge_headers_do_not_grow_metrics_or_the_access_log() {
    use std::io::{Read, Write as _};
    let address = fixture().base.trim_start_matches("http://").to_string();
    let agent = "A".repeat(60_000);
    for i in 0..50 {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        let method = format!("M{i}{}", "X".repeat(4000));
        write!(
            stream,
            "{method} /api/status HTTP/1.1\r\nHost: {address}\r\nUser-Agent: {agent}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
    }
    let metrics = call("GET", "/metrics", None, None).body;
    assert!(!metrics.contains("M17X"), "made-up methods are not label values");
    assert!(metrics.len() < 2_000_000, "{} bytes of metrics", metrics.len());
    fixture().state.audit.flush();
    let longest: i64 =
        fixture().db.value("SELECT max(length(user_agent) + length(method) + length(path)) FROM access_log");
    assert!(longest <= 3 * 1024, "stored fields are cut: {longest}");
}

#[test]
fn refused_calls_past_a_rate_are_counted_per_address_not_written_one_by_one() {
    use tokentrail::http::audit::{AuditLog, Entry, REFUSED_PER_MINUTE};
    let db = common::TestDb::new();
    let store = Arc::new(Store::open(&db.dir.path().join("refusals.duckdb"), &StoreOptions::default()).unwrap());
    let audit = AuditLog::start(store.clone());
    let entry = |ip: &str, status: u16| Entry {
        time: Utc::now(),
        oid: None,
        tid: None,
        name: None,
        role: None,
        method: "GET".into(),
        endpoint: "/api/status".into(),
        path: "/api/status".into(),
        parameters: json!({}),
        status,
        rows: None,
        duration_ms: 1.0,
        client_ip: Some(ip.into()),
        user_agent: Some("x".repeat(100_000)),
        auth: "none",
        request_id: "r".into(),
    };
    for _ in 0..500 {
        audit.record(entry("203.0.113.9", 401));
    }
    audit.record(entry("198.51.100.7", 401));
    audit.record(entry("203.0.113.9", 200));
    audit.flush();
    let conn = store.connection().unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count(
            "SELECT count(*) FROM access_log WHERE client_ip = '203.0.113.9' AND status = 401
             AND endpoint <> '(refused calls)'"
        ),
        REFUSED_PER_MINUTE as i64
    );
    assert_eq!(
        count("SELECT sum(rows) FROM access_log WHERE endpoint = '(refused calls)' AND client_ip = '203.0.113.9'"),
        500 - REFUSED_PER_MINUTE as i64,
        "the rest are counted"
    );
    assert_eq!(count("SELECT count(*) FROM access_log WHERE client_ip = '198.51.100.7'"), 1);
    assert_eq!(count("SELECT count(*) FROM access_log WHERE status = 200"), 1, "allowed calls are never held back");
    assert!(count("SELECT max(length(user_agent)) FROM access_log") <= 1024);
    audit.close();
}

/// A server of its own, with the service's limits on each caller's share (the shared
/// fixture lifts them: every test there is the same user).
fn limited_server() -> (common::TestDb, String) {
    let db = common::TestDb::new();
    let store = Arc::new(Store::open(&db.dir.path().join("limited.duckdb"), &StoreOptions::default()).unwrap());
    let (_, base) = common::app::serve_with_limits(store, &fixture().issuer);
    (db, base)
}

/// A console query that runs until the timeout, sent by `oid` from a client that hangs
/// up after `patience` (which stops the query); the status, or None if it hung up.
fn slow_query(base: &str, oid: &str, patience: std::time::Duration) -> std::thread::JoinHandle<Option<u16>> {
    let token = fixture().issuer.token_with(&[Role::Responder], json!({"oid": oid}));
    let url = format!("{base}/api/sql");
    std::thread::spawn(move || {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(patience)).build().into();
        let sql = "SELECT count(*) FROM range(100000) a, range(100000) b WHERE a.range + b.range = -1";
        agent
            .post(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(json!({"sql": sql}))
            .ok()
            .map(|r| r.status().as_u16())
    })
}

fn timed_get(base: &str, path: &str, oid: &str) -> (u16, std::time::Duration) {
    let token = fixture().issuer.token_with(&[Role::Responder], json!({"oid": oid}));
    let started = std::time::Instant::now();
    let reply = agent().get(&format!("{base}{path}")).header("Authorization", &format!("Bearer {token}")).call();
    (reply.map(|r| r.status().as_u16()).unwrap_or(0), started.elapsed())
}

#[test]
fn one_caller_cannot_hold_every_query_thread_or_call_without_bound() {
    let (_db, base) = limited_server();
    let hog = "11111111-1111-1111-1111-111111111111";
    let patience = std::time::Duration::from_secs(4);
    // The hog's slow queries run one at a time, so a query thread stays free.
    let slow: Vec<_> = (0..2).map(|_| slow_query(&base, hog, patience)).collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (status, took) = timed_get(&base, "/api/status", "33333333-3333-3333-3333-333333333333");
    assert_eq!(status, 200);
    assert!(took < std::time::Duration::from_secs(2), "another caller waited {took:?} behind the hog");
    // Past its share of calls in flight, the hog is told to wait.
    let more: Vec<_> = (0..tokentrail::http::callers::MAX_CALLS).map(|_| slow_query(&base, hog, patience)).collect();
    let statuses: Vec<Option<u16>> = more.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.contains(&Some(429)), "a caller past its share is answered 429: {statuses:?}");
    for t in slow {
        t.join().unwrap();
    }
}

#[test]
fn readyz_says_not_ready_while_slow_queries_hold_every_query_thread() {
    let (_db, base) = limited_server();
    let patience = std::time::Duration::from_secs(4);
    let slow: Vec<_> = (0..tokentrail::http::pool::QUERY_THREADS)
        .map(|i| slow_query(&base, &format!("22222222-2222-2222-2222-00000000000{i}"), patience))
        .collect();
    // The slow queries take every thread within a moment, a longer one on a loaded machine:
    // asked until then, within the clients' patience.
    let deadline = std::time::Instant::now() + patience - std::time::Duration::from_secs(1);
    let ready = loop {
        let ready = agent().get(&format!("{base}/readyz")).call().unwrap().into_body().read_to_string().unwrap();
        if ready.contains("busy") || std::time::Instant::now() >= deadline {
            break ready;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(ready.contains("busy"), "{ready}");
    for t in slow {
        t.join().unwrap();
    }
    // The clients hung up, which stops their queries: ready again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while agent().get(&format!("{base}/readyz")).call().unwrap().status() != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready again");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn evidence_packs_are_posted_and_bounded() {
    let body = json!({"criteria": "CC6.1", "from": "2010-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"});
    let reply = post("/api/evidence", Role::Auditor, body);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("400 days"), "{}", reply.body);
    let future = json!({"criteria": "CC6.1", "from": "2026-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"});
    let reply = post("/api/evidence", Role::Auditor, future);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("in the future"), "{}", reply.body);
    let get = get("/api/evidence?criteria=CC6.1&from=2025-03-03T00:00:00Z&to=2025-03-04T00:00:00Z", Role::Auditor);
    assert_eq!(get.status, 405, "a link cannot build a pack: {}", get.body);
}

/// The Activity log and Entra ID AuditLogs fixture (alice grants bob roles, adds him to a
/// group, ...) with one more audit record whose actor's id and name are SQL and HTML,
/// ingested, detected and served on a server of its own (the shared fixture's generated
/// traffic is not these records).
struct ChangesServer {
    db: Db,
    issuer: TestIssuer,
    base: String,
}

pub(crate) const ALICE: &str = "1f0c6f2e-3b7d-4f1a-9a51-2c8e7d6b5a41";
pub(crate) const BOB: &str = "6a2d9c1b-8e4f-4b3a-a7c2-5d1e0f9b8c72";
pub(crate) const HOSTILE_ID: &str = "x' or '1'='1\"; drop table findings; --<script>";
pub(crate) const HOSTILE_NAME: &str = "<img src=x onerror=\"document.title='pwned'\">'; DROP TABLE signins; --";

/// The fixture's records and the hostile one, as NDJSON.
pub(crate) fn changes_records() -> String {
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/changes/activity_and_audit.ndjson"
    ))
    .unwrap();
    let mut hostile: Value = fixture
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["operationName"] == "Add member to group")
        .expect("the fixture adds bob to a group");
    hostile["time"] = json!("2026-11-02T12:00:00Z");
    hostile["correlationId"] = json!("a0000000-0000-4000-8000-0000000000ff");
    hostile["properties"]["id"] = json!("Directory_a0000000-0000-4000-8000-0000000000ff_1");
    hostile["properties"]["correlationId"] = json!("a0000000-0000-4000-8000-0000000000ff");
    hostile["properties"]["activityDateTime"] = json!("2026-11-02T12:00:00Z");
    hostile["properties"]["initiatedBy"]["user"]["id"] = json!(HOSTILE_ID);
    hostile["properties"]["initiatedBy"]["user"]["userPrincipalName"] = json!(HOSTILE_NAME);
    hostile["properties"]["initiatedBy"]["user"]["ipAddress"] = json!("192.0.2.66");
    format!("{}\n{hostile}\n", fixture.trim_end())
}

fn changes_server() -> &'static ChangesServer {
    static SERVER: OnceLock<ChangesServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("changes.duckdb"), &StoreOptions::default()).unwrap());
        let path = dir.path().join("changes.ndjson");
        std::fs::write(&path, changes_records()).unwrap();
        let mut writer = store.writer().unwrap();
        let options = PipelineOptions { workers: 2, ..PipelineOptions::default() };
        let report = ingest_files(&store, &mut writer, &[path], options, indicatif::ProgressBar::hidden()).unwrap();
        assert!(report.failed.is_empty());
        drop(writer);
        let db = Db { _dir: dir, store: store.clone() };
        let (detector, problems) = Detector::open(&db.store, &DetectionConfig::default()).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        detector.evaluate_after_commit(&db.store).unwrap();
        assert!(db.count("directory_changes") >= 7, "the audit records are typed");
        let issuer = TestIssuer::start();
        let (_, base) = common::app::serve(store, &issuer, detector.rules().to_vec());
        ChangesServer { db, issuer, base }
    })
}

fn changes_get(path: &str) -> Reply {
    let server = changes_server();
    let token = server.issuer.token(&[Role::Responder]);
    let mut response = agent()
        .get(&format!("{}{path}", server.base))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().expect("body");
    Reply { status, headers: Vec::new(), body }
}

pub(crate) fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'-' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[test]
fn a_principal_profile_lists_the_changes_it_made_and_those_made_to_it() {
    // Alice never signed in nor touched data here: her page is there for her changes.
    let reply = changes_get(&format!("/api/principals/{ALICE}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let alice = reply.json();
    assert_eq!(alice["principal"]["principal_name"], "alice@contoso.com", "{alice}");
    let made = alice["changes_made"].as_array().unwrap();
    assert_eq!(alice["changes_made_total"].as_i64().unwrap(), made.len() as i64);
    assert!(made.len() >= 10, "her key listings, grants, group changes, consent: {made:?}");
    assert!(made.iter().all(|c| c["actor_id"] == ALICE), "only hers: {made:?}");
    let times: Vec<&str> = made.iter().map(|c| c["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    let grant = made
        .iter()
        .find(|c| c["kind"] == "data_role_assignment_write")
        .unwrap_or_else(|| panic!("the data-plane grant is among her changes: {made:?}"));
    assert_eq!(grant["source"], "control_changes");
    assert_eq!(grant["target_id"], BOB);
    assert_eq!(grant["target_name"], "bob@contoso.com", "bob is named from the audit log");
    assert_eq!(grant["role"], "00000000-0000-0000-0000-000000000002");
    assert_eq!(grant["role_name"], "Cosmos DB Built-in Data Contributor");
    assert_eq!(grant["account"], "contoso-orders");
    assert!(grant["scope"].as_str().unwrap().ends_with("/databaseaccounts/contoso-orders/dbs/orders"), "{grant}");
    assert_eq!(grant["actor_ip"], "203.0.113.7");
    assert_eq!(grant["succeeded"], true);
    assert!(made.iter().any(|c| c["kind"] == "list_keys" && c["account"] == "contoso-orders"));
    // The change_row is the control_changes rowid of the operation's final event, as findings name it.
    let row = grant["change_row"].as_i64().unwrap();
    let kind: String =
        changes_server().db.value(&format!("SELECT kind || ' ' || result FROM control_changes WHERE rowid = {row}"));
    assert_eq!(kind, "data_role_assignment_write Success");
    assert!(alice["changes_received"].as_array().unwrap().is_empty(), "nobody changed alice: {alice}");
    assert_eq!(alice["changes_received_total"], 0);

    let reply = changes_get(&format!("/api/principals/{BOB}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let bob = reply.json();
    let received = bob["changes_received"].as_array().unwrap();
    assert!(received.iter().all(|c| c["target_id"] == BOB), "{received:?}");
    let grant = received.iter().find(|c| c["kind"] == "data_role_assignment_write").expect("the grant, seen from bob");
    assert_eq!(grant["actor_id"], ALICE);
    assert_eq!(grant["actor_name"], "alice@contoso.com");
    assert_eq!(grant["role_name"], "Cosmos DB Built-in Data Contributor");
    let member = received
        .iter()
        .find(|c| c["kind"] == "group_member_added" && c["actor_id"] == ALICE)
        .expect("the group membership alice made");
    assert_eq!(member["source"], "directory_changes");
    assert_eq!(member["group_id"], "4c3b2a19-0f8e-4d7c-b6a5-948372615abc");
    assert_eq!(member["group_name"], "Cosmos DB Admins");
    assert_eq!(member["actor_ip"], "198.51.100.23");
    assert!(!received.iter().any(|c| c["kind"] == "list_keys"), "listing keys was not done to bob");
    assert!(bob["changes_made"].as_array().unwrap().is_empty());

    // A principal with nothing at all is still a 404.
    let reply = changes_get("/api/principals/00000000-0000-4000-8000-000000000000");
    assert_eq!(reply.status, 404, "{}", reply.body);
}

#[test]
fn hostile_principal_ids_and_names_in_changes_are_only_data() {
    let before = (changes_server().db.count("findings"), changes_server().db.count("identity_changes"));
    for attack in ["' OR '1'='1", "x'; DROP TABLE findings; --", "%", "_", "\" OR \"\"=\"", "<script>alert(1)</script>"]
    {
        let reply = changes_get(&format!("/api/principals/{}", path_segment(attack)));
        assert_eq!(reply.status, 404, "{attack}: {}", reply.body);
        assert!(reply.json()["error"]["message"].is_string());
    }
    // The actor whose id and name are SQL and HTML has a page with its one change, as data.
    let reply = changes_get(&format!("/api/principals/{}", path_segment(HOSTILE_ID)));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let hostile = reply.json();
    assert_eq!(hostile["principal"]["principal_id"], HOSTILE_ID);
    let made = hostile["changes_made"].as_array().unwrap();
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0]["actor_name"], HOSTILE_NAME);
    assert_eq!(made[0]["target_id"], BOB);
    // Bob sees it among the changes made to him, the name as sent.
    let bob = changes_get(&format!("/api/principals/{BOB}")).json();
    assert!(bob["changes_received"].as_array().unwrap().iter().any(|c| c["actor_name"] == HOSTILE_NAME));
    let after = (changes_server().db.count("findings"), changes_server().db.count("identity_changes"));
    assert_eq!(before, after);
}

// ---- Access: granted against used (/api/access, a principal's entitlements) ----------

/// A principal id and a custom data role name from the inventory that are HTML and SQL.
pub(crate) const ACCESS_HOSTILE_ID: &str = "<img src=x onerror=\"document.title='pwned'\">' or '1'='1";
pub(crate) const ACCESS_HOSTILE_ROLE: &str = "<script>document.title='pwned'</script> Orders Reader";
/// A group with Cosmos DB Account Reader Role on the subscription and a data-plane role.
pub(crate) const ACCESS_GROUP: &str = "33333333-0000-4000-8000-000000000005";
pub(crate) const LOCKED_ACCOUNT: &str = "locked-account";

/// A store with 88 days of requests (as tests/it/access.rs builds them), a few key requests,
/// and one inventory taken on the first day: the requests' account (local auth on) and a
/// second one with local auth off, four users' data-plane assignments, a group's, a custom
/// role with a hostile name given to a hostile principal id who also owns the account, and
/// the group's Account Reader Role on the subscription. Returns the store's directory (keep
/// it), the store, and the requests' account name.
pub(crate) fn access_store() -> (TempDir, Arc<Store>, String) {
    use crate::rule_cases::{Case, at, user_id};
    let mut case = Case::new();
    let account_id = case.template("DataPlaneRequests")["resourceId"].as_str().unwrap().to_string();
    let account = account_id.rsplit('/').next().unwrap().to_ascii_lowercase();
    let lower = account_id.to_ascii_lowercase();
    let subscription = &account_id[..lower.find("/resourcegroups/").unwrap()];
    let locked_id = format!(
        "{subscription}/resourceGroups/rg-locked/providers/Microsoft.DocumentDB/databaseAccounts/{LOCKED_ACCOUNT}"
    );
    let start = at("2025-01-02T09:00:00Z");
    let request = |case: &mut Case, user: u32, time: DateTime<Utc>, operation: &str, coll: &str| {
        case.request(user, "73.9.9.9", time);
        let r = case.records.last_mut().unwrap();
        r["operationName"] = json!(operation);
        r["properties"]["requestResourceType"] = json!("Document");
        r["properties"]["requestResourceId"] = json!(format!("/dbs/shop/colls/{coll}/docs/x"));
        r["properties"]["databaseName"] = json!("shop");
        r["properties"]["collectionName"] = json!(coll);
        r["properties"]["statusCode"] = json!(200);
    };
    for day in (0..90).step_by(3) {
        let t = start + Duration::days(day);
        request(&mut case, 1, t, "Read", "orders");
        request(&mut case, 1, t + Duration::minutes(1), "Query", "orders");
        request(&mut case, 2, t, "Read", "carts");
        request(&mut case, 4, t, "Upsert", "orders");
        request(&mut case, 4, t + Duration::minutes(2), "Read", "carts");
    }
    for i in 0..3 {
        case.key_request("198.51.100.77", start + Duration::days(80) + Duration::hours(i));
    }
    case.findings(); // ingest and absorb (key clients are absorbed by detection)
    let custom = "cccccccc-0000-4000-8000-000000000001";
    let grants = [
        (user_id(1), "00000000-0000-0000-0000-000000000002".to_string(), String::new()),
        (user_id(2), "00000000-0000-0000-0000-000000000001".to_string(), String::new()),
        (user_id(3), "00000000-0000-0000-0000-000000000002".to_string(), "/dbs/shop".to_string()),
        (user_id(4), "00000000-0000-0000-0000-000000000002".to_string(), String::new()),
        (ACCESS_GROUP.to_string(), "00000000-0000-0000-0000-000000000001".to_string(), String::new()),
        (ACCESS_HOSTILE_ID.to_string(), custom.to_string(), "/dbs/shop/colls/orders".to_string()),
    ];
    let assignments: Vec<Value> = grants
        .iter()
        .enumerate()
        .map(|(i, (principal, role, below))| {
            let name = format!("aaaaaaaa-0000-4000-8000-{i:012}");
            json!({"id": format!("{account_id}/sqlRoleAssignments/{name}"), "name": name, "principalId": principal,
                   "roleDefinitionId": format!("{account_id}/sqlRoleDefinitions/{role}"),
                   "scope": format!("{account_id}{below}"),
                   "type": "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments"})
        })
        .collect();
    let definitions = json!([{
        "id": format!("{account_id}/sqlRoleDefinitions/{custom}"), "name": custom, "roleName": ACCESS_HOSTILE_ROLE,
        "typePropertiesType": "CustomRole", "assignableScopes": [account_id],
        "permissions": [{"dataActions": ["Microsoft.DocumentDB/databaseAccounts/readMetadata"], "notDataActions": []}],
        "type": "Microsoft.DocumentDB/databaseAccounts/sqlRoleDefinitions"}]);
    let accounts = json!([
        {"id": account_id, "name": account, "location": "West Europe", "disableLocalAuth": false,
         "publicNetworkAccess": "Enabled", "type": "Microsoft.DocumentDB/databaseAccounts"},
        {"id": locked_id, "name": LOCKED_ACCOUNT, "location": "North Europe", "disableLocalAuth": true,
         "publicNetworkAccess": "Disabled", "type": "Microsoft.DocumentDB/databaseAccounts"},
    ]);
    let azure = json!([
        {"id": format!("{account_id}/providers/Microsoft.Authorization/roleAssignments/8f7e6d5c-4b3a-4291-8f0e-9d8c7b6a5f4e"),
         "principalId": ACCESS_HOSTILE_ID, "principalType": "User",
         "roleDefinitionId": format!("{subscription}/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635"),
         "roleDefinitionName": "Owner", "scope": account_id, "type": "Microsoft.Authorization/roleAssignments"},
        {"id": format!("{subscription}/providers/Microsoft.Authorization/roleAssignments/1e2d3c4b-5a69-4788-9a0b-1c2d3e4f5a6b"),
         "principalId": ACCESS_GROUP, "principalType": "Group",
         "roleDefinitionId": format!("{subscription}/providers/Microsoft.Authorization/roleDefinitions/fbdf93bf-df7d-467e-a4d2-9458aa1360c8"),
         "roleDefinitionName": "Cosmos DB Account Reader Role", "scope": subscription, "type": "Microsoft.Authorization/roleAssignments"},
    ]);
    let files = [
        case.db.file("cosmosdb-list.json", accounts.to_string()),
        case.db.file("sql-role-definition-list.json", definitions.to_string()),
        case.db.file("sql-role-assignment-list.json", Value::Array(assignments).to_string()),
        case.db.file("role-assignment-list.json", azure.to_string()),
    ];
    let snapshot = tokentrail::inventory::files::read(&files, start).unwrap();
    tokentrail::inventory::history::record(&case.db.store, &snapshot).unwrap();
    let db = case.db;
    (db.dir, Arc::new(db.store), account)
}

struct AccessServer {
    _dir: TempDir,
    issuer: TestIssuer,
    base: String,
    account: String,
}

fn access_server() -> &'static AccessServer {
    static SERVER: OnceLock<AccessServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (dir, store, account) = access_store();
        let issuer = TestIssuer::start();
        let (_, base) = common::app::serve(store, &issuer, Vec::new());
        AccessServer { _dir: dir, issuer, base, account }
    })
}

fn access_get(path: &str, role: Option<Role>) -> Reply {
    let server = access_server();
    let mut request = agent().get(&format!("{}{path}", server.base));
    if let Some(role) = role {
        request = request.header("Authorization", &format!("Bearer {}", server.issuer.token(&[role])));
    }
    let mut response = request.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().expect("body");
    Reply { status, headers: Vec::new(), body }
}

#[test]
fn the_access_review_recommends_per_assignment_and_names_who_can_read_the_keys() {
    use crate::rule_cases::user_id;
    let reply = access_get("/api/access?days=90", Some(Role::Responder));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let review = reply.json();
    let assignments = review["assignments"].as_array().unwrap();
    assert_eq!(assignments.len(), 6, "{assignments:?}");
    let of = |review: &Value, p: &str| -> Value {
        review["assignments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["principal_id"] == p)
            .unwrap_or_else(|| panic!("{p} not in {review}"))
            .clone()
    };
    assert_eq!(of(&review, &user_id(1))["recommendation"], "reader");
    assert!(of(&review, &user_id(1))["advice"].as_str().unwrap().contains("dbs/shop/colls/orders"));
    assert!(of(&review, &user_id(1))["requests"].as_i64().unwrap() > 0);
    assert_eq!(of(&review, &user_id(2))["recommendation"], "narrow scope");
    assert_eq!(of(&review, &user_id(3))["recommendation"], "unused so far", "the logs start after 90 days back");
    assert_eq!(of(&review, &user_id(4))["recommendation"], "keep");
    assert_eq!(of(&review, ACCESS_GROUP)["recommendation"], "group");
    let hostile = of(&review, ACCESS_HOSTILE_ID);
    assert_eq!(hostile["role_name"], ACCESS_HOSTILE_ROLE, "the role name as the inventory read it");
    let counts = &review["counts"];
    for (recommendation, n) in
        [("reader", 1), ("narrow scope", 1), ("unused so far", 2), ("keep", 1), ("group", 1), ("remove", 0)]
    {
        assert_eq!(counts[recommendation], n, "{recommendation}: {counts}");
    }
    assert!(review["until"].as_str().unwrap().starts_with("2025-03-3"), "the end of the data: {review}");
    assert!(review["inventory_taken_at"].as_str().unwrap().starts_with("2025-01-02"));

    // The accounts: the one the keys open, with its key clients and who may list the keys,
    // and the one with local auth off, whose key readers are listed all the same.
    let accounts = review["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 2, "{accounts:?}");
    let account = |name: &str| accounts.iter().find(|a| a["account"] == name).unwrap_or_else(|| panic!("{name}"));
    let open = account(&access_server().account);
    assert_eq!(open["disable_local_auth"], false);
    assert_eq!(open["public_network_access"], "Enabled");
    assert_eq!(open["key_clients"], 1, "{open}");
    assert_eq!(open["key_requests"], 3, "{open}");
    let readers: Vec<(String, String)> = open["key_readers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["principal_id"].as_str().unwrap().to_string(), r["role_name"].as_str().unwrap().to_string()))
        .collect();
    assert!(readers.contains(&(ACCESS_HOSTILE_ID.to_string(), "Owner".to_string())), "{readers:?}");
    assert!(readers.contains(&(ACCESS_GROUP.to_string(), "Cosmos DB Account Reader Role".to_string())), "{readers:?}");
    let locked = account(LOCKED_ACCOUNT);
    assert_eq!(locked["disable_local_auth"], true);
    assert_eq!(locked["public_network_access"], "Disabled");
    assert_eq!(locked["key_clients"], 0);
    let locked_readers = locked["key_readers"].as_array().unwrap();
    assert_eq!(locked_readers.len(), 1, "the group on the subscription, not the owner of the other account: {locked}");
    assert_eq!(locked_readers[0]["principal_id"], ACCESS_GROUP);

    // From a start the logs cover, the unused assignment is to be removed.
    let later = access_get("/api/access?days=30", Some(Role::Responder)).json();
    assert_eq!(of(&later, &user_id(3))["recommendation"], "remove");
    assert_eq!(later["counts"]["remove"], 2, "user 3 and the hostile principal: {}", later["counts"]);
    assert_eq!(later["days"], 30);
}

#[test]
fn the_access_review_checks_days_and_who_calls() {
    for bad in ["0", "366", "abc", "-5", "7.5"] {
        let reply = access_get(&format!("/api/access?days={bad}"), Some(Role::Responder));
        assert_eq!(reply.status, 400, "days={bad}: {}", reply.body);
        let message = reply.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("days") && message.contains("1 to 365"), "days={bad}: {message}");
    }
    let reply = access_get("/api/access?day=3", Some(Role::Responder));
    assert_eq!(reply.status, 400, "an unknown parameter is named: {}", reply.body);
    for role in [Role::Responder, Role::Auditor] {
        assert_eq!(access_get("/api/access", Some(role)).status, 200, "{role:?}");
    }
    // who may read what is principal data: the Admin, who runs the service, sees it no more
    // than a principal's page
    assert_eq!(access_get("/api/access", Some(Role::Admin)).status, 403);
    let reply = access_get("/api/access", None);
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.json()["error"]["code"], "unauthorized");
}

#[test]
fn a_principal_profile_shows_its_entitlements_beside_its_use() {
    use crate::rule_cases::user_id;
    let reply = access_get(&format!("/api/principals/{}", user_id(1)), Some(Role::Responder));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let profile = reply.json();
    let e = &profile["entitlements"];
    let assignments = e["assignments"].as_array().unwrap();
    assert_eq!(assignments.len(), 1, "{e}");
    assert_eq!(assignments[0]["role_name"], "Cosmos DB Built-in Data Contributor");
    assert_eq!(assignments[0]["recommendation"], "reader");
    assert!(e["azure_roles"].as_array().unwrap().is_empty());

    // The hostile principal: known only from the inventory, it has a page all the same,
    // with its custom role and the Owner role that can read the account keys.
    let reply = access_get(&format!("/api/principals/{}", path_segment(ACCESS_HOSTILE_ID)), Some(Role::Auditor));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let hostile = reply.json();
    assert_eq!(hostile["principal"]["principal_id"], ACCESS_HOSTILE_ID);
    let e = &hostile["entitlements"];
    assert_eq!(e["assignments"][0]["role_name"], ACCESS_HOSTILE_ROLE, "{e}");
    let roles = e["azure_roles"].as_array().unwrap();
    assert_eq!(roles.len(), 1, "{e}");
    assert_eq!(roles[0]["role_name"], "Owner");
    assert_eq!(roles[0]["reads_keys"], true);

    // The group: Account Reader Role (which lists the read-only keys) on the subscription.
    let group = access_get(&format!("/api/principals/{ACCESS_GROUP}"), Some(Role::Responder)).json();
    assert_eq!(group["entitlements"]["azure_roles"][0]["reads_keys"], true, "{group}");
    assert_eq!(group["entitlements"]["assignments"][0]["recommendation"], "group");
    // Still nothing at all is a 404.
    let reply = access_get("/api/principals/00000000-0000-4000-8000-000000000000", Some(Role::Responder));
    assert_eq!(reply.status, 404, "{}", reply.body);
}

#[test]
fn without_an_inventory_the_access_review_has_only_the_activity_logs_grants() {
    let reply = get("/api/access", Role::Auditor);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let review = reply.json();
    assert!(review["accounts"].as_array().unwrap().is_empty(), "no inventory, no account: {review}");
    assert_eq!(review["inventory_taken_at"], Value::Null);
    assert_eq!(review["days"], 90);
    // The generated tenant's grants come from the Activity log alone.
    let assignments = review["assignments"].as_array().unwrap();
    assert!(assignments.iter().all(|a| a["origin"] == "activity_log"), "{assignments:?}");
    let counted: i64 = review["counts"].as_object().unwrap().values().map(|n| n.as_i64().unwrap()).sum();
    assert_eq!(counted, assignments.len() as i64, "{}", review["counts"]);
    assert_eq!(review["counts"].as_object().unwrap().len(), 6, "every recommendation counted");
}

/// The principal page's activity per hour and its addresses, on a hand-made tenant: user 41
/// signs in from HOME and reads from it, reads from an address it never signed in from, and
/// fails a sign-in from a third it never reads from.
#[test]
fn a_principal_profile_counts_per_hour_and_marks_data_access_from_an_address_without_a_sign_in() {
    use crate::rule_cases::{Case, at, user_id};
    const HOME: &str = "82.23.83.128";
    const ELSEWHERE: &str = "45.134.26.7";
    const SIGNIN_ONLY: &str = "73.215.40.99";
    let mut case = Case::new();
    let t = at("2025-03-05T09:10:00Z");
    let read = |case: &mut Case, ip: &str, time: DateTime<Utc>, bytes: u64| {
        case.request(41, ip, time);
        case.records.last_mut().unwrap()["properties"]["responseLength"] = json!(bytes.to_string());
    };
    case.user_sign_in(41, HOME, t, 0);
    read(&mut case, HOME, t + Duration::minutes(1), 1000);
    read(&mut case, HOME, t + Duration::minutes(40), 2500);
    // Nothing at 10:00 and 11:00; then reads from elsewhere at 12:20, and a failed sign-in.
    read(&mut case, ELSEWHERE, t + Duration::minutes(190), 70_000);
    read(&mut case, ELSEWHERE, t + Duration::minutes(195), 30_000);
    case.user_sign_in(41, SIGNIN_ONLY, t + Duration::minutes(200), 50126);
    // Outside the period asked for: not counted.
    read(&mut case, HOME, t + Duration::days(3), 9);
    case.findings();
    let crate::common::TestDb { dir, store } = case.db;
    let store = Arc::new(store);
    let issuer = TestIssuer::start();
    let (_, base) = common::app::serve(store.clone(), &issuer, Vec::new());
    let token = issuer.token(&[Role::Responder]);
    let profile = |query: &str| -> Value {
        let mut reply = agent()
            .get(&format!("{base}/api/principals/{}?{query}", user_id(41)))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        assert_eq!(reply.status().as_u16(), 200);
        serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap()
    };
    let db = |sql: &str| -> i64 {
        store.connection().unwrap().query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    let (from, to) = ("2025-03-05T08:30:00Z", "2025-03-05T14:00:00Z");
    let p = profile(&format!("from={from}&to={to}"));

    // Per hour: every hour from 08:00 to 13:00, the empty ones as zeros, summing to the database's counts.
    assert_eq!(p["hourly_bucket_secs"], 3600);
    let hourly = p["hourly"].as_array().unwrap();
    let starts: Vec<&str> = hourly.iter().map(|h| h["start"].as_str().unwrap()).collect();
    assert_eq!(starts.len(), 6, "{starts:?}");
    assert!(starts[0].starts_with("2025-03-05T08:00:00") && starts[5].starts_with("2025-03-05T13:00:00"), "{starts:?}");
    let sum = |k: &str| hourly.iter().map(|h| h[k].as_i64().unwrap()).sum::<i64>();
    let user = user_id(41);
    let period = format!("principal_id = '{user}' AND time >= TIMESTAMPTZ '{from}' AND time < TIMESTAMPTZ '{to}'");
    assert_eq!(sum("requests"), db(&format!("SELECT count(*) FROM cosmos_requests WHERE {period}")));
    assert_eq!(sum("requests"), 4);
    assert_eq!(sum("bytes_out"), db(&format!("SELECT sum(response_length) FROM cosmos_requests WHERE {period}")));
    assert_eq!(sum("signins"), db(&format!("SELECT count(*) FROM signins WHERE {period}")));
    assert_eq!(sum("failed_signins"), db(&format!("SELECT count(*) FROM signins WHERE {period} AND error_code <> 0")));
    assert_eq!(sum("failed_signins"), 1);
    let at_hour = |h: usize, k: &str| hourly[h][k].as_i64().unwrap();
    assert_eq!((at_hour(1, "requests"), at_hour(1, "bytes_out"), at_hour(1, "signins")), (2, 3500, 1), "09:00");
    assert_eq!(
        (at_hour(2, "requests"), at_hour(3, "requests"), at_hour(2, "signins")),
        (0, 0, 0),
        "10:00 and 11:00 are empty"
    );
    assert_eq!(
        (at_hour(4, "requests"), at_hour(4, "bytes_out"), at_hour(4, "failed_signins")),
        (2, 100_000, 1),
        "12:00"
    );

    // Addresses: the one read from without a sign-in is marked; the one with both, and the sign-in-only one, are not.
    let addresses = p["addresses"].as_array().unwrap();
    let of =
        |ip: &str| addresses.iter().find(|a| a["address"] == ip).unwrap_or_else(|| panic!("{ip} in {addresses:?}"));
    assert_eq!(addresses.len(), 3, "{addresses:?}");
    assert_eq!(addresses[0]["address"], ELSEWHERE, "the marked address first");
    let elsewhere = of(ELSEWHERE);
    assert_eq!(
        (&elsewhere["no_signin"], &elsewhere["requests"], &elsewhere["bytes_out"]),
        (&json!(true), &json!(2), &json!(100_000))
    );
    assert_eq!((&elsewhere["signed_in"], &elsewhere["accounts"]), (&json!(false), &json!(1)));
    let home = of(HOME);
    assert_eq!(
        (&home["no_signin"], &home["data_access"], &home["signed_in"]),
        (&json!(false), &json!(true), &json!(true))
    );
    assert_eq!(
        (&home["requests"], &home["signins"], &home["signin_kinds"]),
        (&json!(2), &json!(1), &json!("user_interactive"))
    );
    let only = of(SIGNIN_ONLY);
    assert_eq!(
        (&only["no_signin"], &only["data_access"], &only["failed_signins"]),
        (&json!(false), &json!(false), &json!(1))
    );

    // What it touched carries each account's subscription and resource group (the portal link).
    let touched = &p["data_access"][0];
    let subscription: String = store
        .connection()
        .unwrap()
        .query_row("SELECT any_value(subscription_id) FROM cosmos_requests", [], |r| r.get(0))
        .unwrap();
    assert_eq!(touched["subscription_id"], subscription.as_str());
    assert!(touched["resource_group"].is_string(), "{touched}");

    // A period longer than 14 days is shown per day, still summing to the database's counts.
    let (from, to) = ("2025-02-20T00:00:00Z", "2025-03-10T00:00:00Z");
    let p = profile(&format!("from={from}&to={to}"));
    assert_eq!(p["hourly_bucket_secs"], 86400);
    let hourly = p["hourly"].as_array().unwrap();
    assert_eq!(hourly.len(), 18);
    let period = format!("principal_id = '{user}' AND time >= TIMESTAMPTZ '{from}' AND time < TIMESTAMPTZ '{to}'");
    let sum = |k: &str| hourly.iter().map(|h| h[k].as_i64().unwrap()).sum::<i64>();
    assert_eq!(sum("requests"), db(&format!("SELECT count(*) FROM cosmos_requests WHERE {period}")));
    assert_eq!(sum("requests"), 5);
    assert_eq!(sum("signins"), db(&format!("SELECT count(*) FROM signins WHERE {period}")));
    drop(dir);
}
