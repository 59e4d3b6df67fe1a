//! Incidents (src/rules/incidents.rs, src/http/api/incidents.rs) on a real DuckDB file:
//! generated traffic with attack scenarios, detected, grouped; the API's list, story and
//! triage; grouping's merge and window on findings written straight into the table.

use crate::common::{self, jwks::TestIssuer};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokentrail::auth::Role;
use tokentrail::rules::incidents;
use tokentrail::rules::{DetectionConfig, Detector};
use tokentrail::store::{Store, StoreOptions};
use tokentrail::synth::{Generator, GroundTruth, Scenario, Tenant};

struct Api {
    base: String,
    issuer: TestIssuer,
    store: Arc<Store>,
    truths: Vec<GroundTruth>,
    dir: tempfile::TempDir,
    _state: tokentrail::http::AppState,
}

impl Api {
    fn call(&self, role: Role, path: &str, body: Option<Value>) -> (u16, Value) {
        let token = self.issuer.token_with(&[role], json!({"name": "On Call"}));
        common::app::call_json(&self.base, path, &token, body)
    }

    fn value<T: duckdb::types::FromSql>(&self, sql: &str, params: impl duckdb::Params) -> T {
        self.store.connection().unwrap().query_row(sql, params, |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn truth(&self, scenario: Scenario) -> &GroundTruth {
        self.truths.iter().find(|t| t.scenario == scenario.name()).unwrap()
    }

    /// The incidents of the findings that name `principal` or `ip` in their entity.
    fn incidents_of(&self, principal: Option<&str>, ip: Option<&str>) -> BTreeSet<i64> {
        let conn = self.store.connection().unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT DISTINCT m.incident_id FROM findings f JOIN incident_findings m ON m.finding_id = f.id
                 WHERE f.principal_id = ? OR list_contains(string_split(f.entity, ' '), 'ip=' || ?)",
            )
            .unwrap();
        stmt.query_map(duckdb::params![principal, ip], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }
}

const SCENARIOS: &[Scenario] = &[Scenario::SprayThenDataAccess, Scenario::BulkExport, Scenario::ImpossibleTravel];

/// `now`: add a request of the sprayed principal made now (its events are still arriving).
fn api(now: bool) -> Api {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn,tokentrail=info").try_init();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("incidents.duckdb"), &StoreOptions::default()).unwrap());
    let from = DateTime::parse_from_rfc3339("2025-03-03T00:00:00Z").unwrap().with_timezone(&Utc);
    let (mut events, truths) = Generator::new(Tenant::new(33), 33).history(from, from + Duration::days(6), SCENARIOS);
    if now {
        let spray = truths.iter().find(|t| t.scenario == Scenario::SprayThenDataAccess.name()).unwrap();
        let mut request = events
            .iter()
            .rev()
            .find(|e| {
                e.category == "DataPlaneRequests"
                    && e.record["properties"]["aadPrincipalId"].as_str() == spray.principal_id.as_deref()
            })
            .expect("a request of the sprayed principal")
            .clone();
        request.record["time"] = json!(Utc::now().to_rfc3339());
        request.record["properties"]["activityId"] = json!("still-going");
        events.push(request);
    }
    common::ingest_in_files(&store, dir.path(), "history", &events, 1);
    let (detector, problems) = Detector::open(&store, &DetectionConfig::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    detector.evaluate_after_commit(&store).unwrap();
    let issuer = TestIssuer::start();
    let (state, base) = common::app::serve(store.clone(), &issuer, detector.rules().to_vec());
    Api { base, issuer, store, truths, dir, _state: state }
}

#[test]
fn a_spray_its_sign_in_and_the_data_it_read_are_one_incident_and_triage_reaches_each_finding() {
    let api = api(false);
    let findings: i64 = api.value("SELECT count(*) FROM findings WHERE status <> 'withdrawn'", []);
    let grouped: i64 = api.value("SELECT count(*) FROM incident_findings", []);
    assert!(findings > 0);
    assert_eq!(grouped, findings, "every finding not withdrawn has an incident");

    // The spray: its address's findings and its principal's are one incident.
    let spray = api.truth(Scenario::SprayThenDataAccess);
    let spray_incidents = api.incidents_of(spray.principal_id.as_deref(), spray.source_ip.as_deref());
    assert_eq!(spray_incidents.len(), 1, "one story, not {spray_incidents:?}");
    let spray_incident = *spray_incidents.first().unwrap();
    let rules: BTreeSet<String> = {
        let conn = api.store.connection().unwrap();
        let mut stmt = conn
            .prepare("SELECT f.rule_id FROM incident_findings m JOIN findings f ON f.id = m.finding_id WHERE m.incident_id = ?")
            .unwrap();
        stmt.query_map([spray_incident], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert!(rules.len() >= 2, "the spray and what followed it: {rules:?}");

    // No incident holds two scenarios' principals.
    for incident in api.incidents_of(None, None).iter().chain(&spray_incidents) {
        let principals: Vec<String> = {
            let conn = api.store.connection().unwrap();
            let mut stmt = conn
                .prepare("SELECT DISTINCT f.principal_id FROM incident_findings m JOIN findings f ON f.id = m.finding_id WHERE m.incident_id = ? AND f.principal_id IS NOT NULL")
                .unwrap();
            stmt.query_map([incident], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        };
        let scenarios: BTreeSet<&str> = api
            .truths
            .iter()
            .filter(|t| t.principal_id.as_ref().is_some_and(|p| principals.contains(p)))
            .map(|t| t.scenario.as_str())
            .collect();
        assert!(scenarios.len() <= 1, "incident {incident} mixes {scenarios:?}");
    }

    // The list leads with it, titled by its steps and naming who.
    let (status, list) = api.call(Role::Responder, "/api/incidents?status=open&limit=500", None);
    assert_eq!(status, 200, "{list}");
    let listed = list["rows"].as_array().unwrap().iter().find(|i| i["id"] == spray_incident).expect("listed").clone();
    assert!(listed["steps"].as_array().unwrap().len() >= 2);
    assert!(listed["title"].as_str().unwrap().contains(" → "), "{}", listed["title"]);
    let name = spray.principal_name.as_deref().unwrap();
    assert!(listed["principals"].as_array().unwrap().iter().any(|p| p["name"] == name), "{listed}");
    assert!(listed["addresses"].as_array().unwrap().iter().any(|a| a.as_str() == spray.source_ip.as_deref()));

    // Its page: the story in time order, whom the spray went after, what was read.
    let (status, detail) = api.call(Role::Responder, &format!("/api/incidents/{spray_incident}?limit=1000"), None);
    assert_eq!(status, 200, "{detail}");
    let story = detail["story"].as_array().unwrap();
    let events: i64 = api.value(
        "SELECT count(*) FROM incident_findings m JOIN findings f ON f.id = m.finding_id
         JOIN finding_evidence e ON e.fingerprint = f.fingerprint WHERE m.incident_id = ?",
        [spray_incident],
    );
    assert_eq!(detail["story_total"], events);
    assert_eq!(story.len() as i64, events.min(1000));
    let times: Vec<&str> = story.iter().map(|e| e["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
    assert!(
        story.iter().all(|e| e["row"].is_object() || e["evidence_table"] == "raw_events"),
        "each event has its row"
    );
    let targets = detail["targets"].as_array().unwrap();
    assert!(targets.len() > 1, "a spray goes after many accounts: {targets:?}");
    assert!(
        targets
            .iter()
            .any(|t| t["principal_id"] == spray.principal_id.as_deref().unwrap() && t["succeeded"].as_i64() > Some(0))
    );
    let reads = detail["reads"].as_array().unwrap();
    assert!(
        reads.iter().any(|r| r["account"] == spray.account.as_str() && r["requests"].as_i64() > Some(0)),
        "{reads:?}"
    );
    assert_eq!(detail["incident"]["active"], false, "its events are from 2025");
    assert_eq!(detail["log"][0]["action"], "created");

    // Paged: the second page starts where the first ended.
    let (_, first) = api.call(Role::Auditor, &format!("/api/incidents/{spray_incident}?limit=2"), None);
    let (_, second) = api.call(Role::Auditor, &format!("/api/incidents/{spray_incident}?limit=2&offset=2"), None);
    if events > 2 {
        assert!(first["story"][1]["time"].as_str() <= second["story"][0]["time"].as_str());
        assert_ne!(first["story"][0], second["story"][0]);
    }

    // Triage at the incident level reaches each finding, which keeps its own history.
    let (status, owned) = api.call(
        Role::Responder,
        &format!("/api/incidents/{spray_incident}/owner"),
        Some(json!({"owner": "alex@contoso.com"})),
    );
    assert_eq!(status, 200, "{owned}");
    assert_eq!(owned["owner"], "alex@contoso.com");
    let (status, acked) = api.call(
        Role::Responder,
        &format!("/api/incidents/{spray_incident}/acknowledge"),
        Some(json!({"comment": "looking at the spray"})),
    );
    assert_eq!(status, 200, "{acked}");
    let changed = acked["changed"].as_array().unwrap();
    assert!(!changed.is_empty());
    for finding in changed {
        let id = finding.as_i64().unwrap();
        let status: String = api.value("SELECT status FROM findings WHERE id = ?", [id]);
        assert_eq!(status, "acknowledged");
        let comment: String = api
            .value("SELECT comment FROM finding_history WHERE finding_id = ? ORDER BY changed_at DESC LIMIT 1", [id]);
        assert_eq!(comment, format!("incident {spray_incident}: looking at the spray"));
    }
    let (status, resolved) = api.call(
        Role::Responder,
        &format!("/api/incidents/{spray_incident}/resolve"),
        Some(json!({"comment": "password reset, sessions revoked"})),
    );
    assert_eq!(status, 200, "not active: no confirm needed: {resolved}");
    let (_, detail) = api.call(Role::Responder, &format!("/api/incidents/{spray_incident}"), None);
    assert_eq!(detail["incident"]["status"], "resolved");
    let actions: Vec<&str> = detail["log"].as_array().unwrap().iter().map(|l| l["action"].as_str().unwrap()).collect();
    assert!(actions.ends_with(&["owner", "acknowledged", "resolved"]), "{actions:?}");
    let again =
        api.call(Role::Responder, &format!("/api/incidents/{spray_incident}/resolve"), Some(json!({"comment": "x"})));
    assert_eq!(again.0, 409, "nothing left to resolve: {}", again.1);

    // The incident log is chained with the other append-only tables.
    let reports = tokentrail::store::append::verify(&api.store).unwrap();
    let log = reports.iter().find(|r| r.table == "incident_log").unwrap();
    assert!(log.verified() && log.rows > 0, "{}", log.summary());

    // Bulk: one refused does not stop the others.
    let open: Vec<i64> = list["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["id"] != spray_incident)
        .filter_map(|i| i["id"].as_i64())
        .take(2)
        .collect();
    let mut ids = open.clone();
    ids.push(spray_incident);
    let (status, bulk) = api.call(
        Role::Responder,
        "/api/incidents/bulk",
        Some(json!({"ids": ids, "action": "acknowledge", "comment": "triage sweep"})),
    );
    assert_eq!(status, 200, "{bulk}");
    let results = bulk["results"].as_array().unwrap();
    assert_eq!(results.len(), ids.len());
    for result in results {
        if result["incident"] == spray_incident {
            assert_eq!(result["error"]["code"], "conflict", "resolved: nothing open to acknowledge");
        } else {
            assert!(!result["changed"].as_array().unwrap().is_empty(), "{result}");
        }
    }
    drop(api.dir);
}

#[test]
fn resolving_an_incident_whose_events_still_arrive_needs_a_confirm() {
    let api = api(true);
    let spray = api.truth(Scenario::SprayThenDataAccess);
    let incident = *api.incidents_of(spray.principal_id.as_deref(), None).first().unwrap();
    let (_, detail) = api.call(Role::Responder, &format!("/api/incidents/{incident}"), None);
    assert_eq!(detail["incident"]["active"], true, "{}", detail["incident"]);
    let (status, refused) =
        api.call(Role::Responder, &format!("/api/incidents/{incident}/resolve"), Some(json!({"comment": "done"})));
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "still_active");
    assert!(refused["error"]["message"].as_str().unwrap().contains("confirm"), "{refused}");
    let still_open: String = api.value("SELECT status FROM incident_status WHERE id = ?", [incident]);
    assert_eq!(still_open, "open", "nothing was changed");
    let (status, resolved) = api.call(
        Role::Responder,
        &format!("/api/incidents/{incident}/resolve"),
        Some(json!({"comment": "done, watching", "confirm": true})),
    );
    assert_eq!(status, 200, "{resolved}");
}

#[test]
fn bad_requests_and_other_roles_are_refused_with_what_to_fix() {
    let api = api(false);
    let incident: i64 = api.value("SELECT min(id) FROM incident_status", []);
    for (role, path, body, code, says) in [
        (Role::Responder, "/api/incidents?status=burning".to_string(), None, 400, "status"),
        (Role::Responder, "/api/incidents/999999".to_string(), None, 404, "no incident 999999"),
        (Role::Responder, format!("/api/incidents/{incident}?offset=-1"), None, 400, "offset"),
        (
            Role::Responder,
            format!("/api/incidents/{incident}/acknowledge"),
            Some(json!({"comment": "  "})),
            400,
            "comment",
        ),
        (
            Role::Responder,
            format!("/api/incidents/{incident}/owner"),
            Some(json!({"owner": "a\u{7}b"})),
            400,
            "printable",
        ),
        (
            Role::Responder,
            "/api/incidents/bulk".to_string(),
            Some(json!({"ids": [incident], "action": "delete", "comment": "x"})),
            400,
            "acknowledge, resolve, reopen",
        ),
        (
            Role::Responder,
            "/api/incidents/bulk".to_string(),
            Some(json!({"ids": [], "action": "resolve", "comment": "x"})),
            400,
            "1 to 200",
        ),
        (
            Role::Responder,
            "/api/incidents/bulk".to_string(),
            Some(json!({"ids": (1..=201).collect::<Vec<i64>>(), "action": "resolve", "comment": "x"})),
            400,
            "1 to 200",
        ),
        (
            Role::Responder,
            format!("/api/incidents/{incident}/resolve"),
            Some(json!({"comment": "x".repeat(4001)})),
            400,
            "4,000",
        ),
        (
            Role::Responder,
            format!("/api/incidents/{incident}/owner"),
            Some(json!({"owner": "o".repeat(201)})),
            400,
            "200",
        ),
        (Role::Responder, "/api/incidents?limit=501".to_string(), None, 400, "limit"),
        (Role::Reviewer, "/api/incidents".to_string(), None, 403, ""),
        (Role::Auditor, format!("/api/incidents/{incident}/acknowledge"), Some(json!({"comment": "x"})), 403, ""),
    ] {
        let (status, reply) = api.call(role, &path, body);
        assert_eq!(status, code, "{path}: {reply}");
        assert!(reply.to_string().contains(says), "{path}: {reply}");
    }
}

/// Findings written straight into the table (as detection writes them), then grouped.
#[test]
fn a_finding_that_links_two_incidents_merges_the_newer_into_the_older() {
    let db = common::TestDb::new();
    let insert = |id: i64, principal: Option<&str>, entity: &str, hour: i64, status: &str| {
        let at = DateTime::parse_from_rfc3339("2025-03-03T00:00:00Z").unwrap() + Duration::hours(hour);
        db.store
            .connection()
            .unwrap()
            .execute(
                "INSERT INTO findings (id, fingerprint, rule_id, title, severity, principal_id, entity, first_seen, last_seen,
                                       count, evidence, status, created_at, updated_at)
                 VALUES (?, ?, 'r', 'T', 'high', ?, ?, ?::TIMESTAMPTZ, ?::TIMESTAMPTZ, 1, [], ?, now(), now())",
                duckdb::params![id, format!("fp{id}"), principal, entity, at.to_rfc3339(), at.to_rfc3339(), status],
            )
            .unwrap();
    };
    insert(1, Some("alice"), "ip=203.0.113.7", 0, "open");
    insert(2, Some("bob"), "ip=198.51.100.9", 1, "open");
    insert(3, None, "stream=signins", 1, "withdrawn");
    let first = incidents::group(&db.store).unwrap();
    assert_eq!(first, incidents::Grouped { created: 2, joined: 0, merged: 0 });
    assert_eq!(incidents::group(&db.store).unwrap(), incidents::Grouped::default(), "nothing left to group");

    insert(4, Some("alice"), "ip=198.51.100.9", 2, "open");
    insert(5, Some("alice"), "ip=192.0.2.1", 60, "open");
    let second = incidents::group(&db.store).unwrap();
    assert_eq!(second, incidents::Grouped { created: 1, joined: 1, merged: 1 });
    let of = |finding: i64| -> Option<i64> {
        db.store
            .connection()
            .unwrap()
            .query_row("SELECT incident_id FROM incident_findings WHERE finding_id = ?", [finding], |r| r.get(0))
            .ok()
    };
    assert_eq!(of(1), of(2), "bob's finding joined alice's incident through finding 4");
    assert_eq!(of(1), of(4));
    assert_ne!(of(5), of(1), "two days later is another story");
    assert_eq!(of(3), None, "a withdrawn finding is not grouped");
    let merged: Option<i64> = db.value("SELECT merged_into FROM incidents WHERE id = 2");
    assert_eq!(merged, of(1));
    let refused = incidents::triage(&db.store, 2, incidents::Action::Acknowledge, "someone", "x").unwrap_err();
    assert!(refused.to_string().contains("merged into incident 1"), "{refused}");
    let open: i64 = db.value("SELECT count(*) FROM incident_status WHERE status = 'open'");
    assert_eq!(open, 2);

    // Keys listed by carol, then a key (no principal) used on that account within two hours:
    // one story; another principal's finding on the account is not part of it.
    insert(6, Some("carol"), "account=prod ip=192.0.2.50", 100, "open");
    insert(7, None, "account=prod ip=192.0.2.99", 101, "open");
    insert(8, Some("dave"), "account=prod ip=192.0.2.77", 101, "open");
    insert(9, None, "account=prod ip=192.0.2.98", 110, "open");
    incidents::group(&db.store).unwrap();
    assert_eq!(of(6), of(7), "keys listed, then used");
    assert_ne!(of(8), of(6), "two principals on one account are two stories");
    assert_ne!(of(9), of(6), "a key used nine hours later is not linked by the account alone");
    let linked: String = db.value("SELECT linked_by FROM incident_findings WHERE finding_id = 7");
    assert_eq!(linked, "account=prod");
}
