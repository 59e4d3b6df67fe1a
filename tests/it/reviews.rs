//! Access reviews through the API (src/reviews/, src/http/api/reviews.rs), on a real DuckDB
//! file with a real inventory and Activity log: an Admin starts a review, two reviewers
//! decide, one of them is refused the grant they made, the last decision completes it,
//! the decisions export in Microsoft Graph's shape and verify in the chain; reminders go
//! into the alert outbox once a day.

use crate::common::jwks::TestIssuer;
use crate::rule_cases::{Case, at, user_id};
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use std::sync::Arc;
use tokentrail::auth::Role;
use tokentrail::inventory::{files, history};
use tokentrail::store::{Store, StoreOptions};

const CONTRIBUTOR: &str = "00000000-0000-0000-0000-000000000002";
const READER: &str = "00000000-0000-0000-0000-000000000001";
const ADMIN: &str = "aaaaaaaa-1111-4000-8000-000000000001";
const ONE: &str = "aaaaaaaa-1111-4000-8000-000000000002";
const TWO: &str = "aaaaaaaa-1111-4000-8000-000000000003";
const OUTSIDER: &str = "aaaaaaaa-1111-4000-8000-000000000004";

struct Api {
    state: tokentrail::http::AppState,
    base: String,
    issuer: TestIssuer,
    store: Arc<Store>,
    _dir: tempfile::TempDir,
}

impl Api {
    fn token(&self, role: Role, oid: &str, name: &str) -> String {
        self.issuer.token_with(&[role], json!({"oid": oid, "name": name}))
    }

    /// `method` names the call in the test's text; a body makes it a POST.
    fn call(&self, _method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        crate::common::app::call_json(&self.base, path, token, body)
    }
}

/// Three data-plane assignments on one account (user 1 reads, user 2 and 3 contribute),
/// requests of users 1 and 2, and the Activity log's write of user 3's assignment by
/// reviewer TWO.
fn tenant() -> Api {
    let mut case = Case::new();
    let account_id = case.template("DataPlaneRequests")["resourceId"].as_str().unwrap().to_string();
    let start = at("2025-03-03T09:00:00Z");
    for day in 0..20 {
        let t = start + Duration::days(day);
        case.request(1, "73.9.9.9", t);
        case.request(2, "73.9.9.10", t + Duration::minutes(5));
    }
    let granted = start + Duration::days(3);
    let assignment = |n: u32| format!("{account_id}/sqlRoleAssignments/aaaaaaaa-0000-4000-8000-{n:012}");
    let event = |result: &str, body: Option<Value>| {
        let mut properties = json!({"eventCategory": "Administrative"});
        if let Some(body) = body {
            properties["requestbody"] = json!(body.to_string());
        }
        json!({"time": granted.to_rfc3339(), "resourceId": assignment(3),
               "operationName": "MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/SQLROLEASSIGNMENTS/WRITE",
               "category": "Write", "resultType": result, "correlationId": "grant-3", "callerIpAddress": "203.0.113.7",
               "identity": {"claims": {"http://schemas.microsoft.com/identity/claims/objectidentifier": TWO,
                                       "name": "Reviewer Two"}},
               "properties": properties})
    };
    let body = json!({"properties": {"principalId": user_id(3), "scope": account_id,
        "roleDefinitionId": format!("{account_id}/sqlRoleDefinitions/{CONTRIBUTOR}")}});
    case.records.push(event("Start", Some(body)));
    case.records.push(event("Success", None));
    case.findings();
    let rows: Vec<Value> = [(1, READER), (2, CONTRIBUTOR), (3, CONTRIBUTOR)]
        .iter()
        .map(|(n, role)| {
            json!({"id": assignment(*n), "name": format!("aaaaaaaa-0000-4000-8000-{n:012}"), "principalId": user_id(*n),
                   "roleDefinitionId": format!("{account_id}/sqlRoleDefinitions/{role}"), "scope": account_id,
                   "type": "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments"})
        })
        .collect();
    let path = case.db.file("assignments.json", Value::Array(rows).to_string());
    history::record(&case.db.store, &files::read(&[path], start).unwrap()).unwrap();
    let crate::common::TestDb { dir, store } = case.db;
    drop(store);
    let store = Arc::new(Store::open(&dir.path().join("test.duckdb"), &StoreOptions::default()).unwrap());
    let issuer = TestIssuer::start();
    let (state, base) = crate::common::app::serve(store.clone(), &issuer, Vec::new());
    Api { state, base, issuer, store, _dir: dir }
}

fn item_of<'a>(detail: &'a Value, principal: &str) -> &'a Value {
    detail["items"].as_array().unwrap().iter().find(|i| i["principal_id"] == principal).unwrap()
}

#[test]
fn a_review_from_start_to_completion_with_a_reviewer_refused_their_own_grant() {
    let api = tenant();
    let admin = api.token(Role::Admin, ADMIN, "Ada Admin");
    let one = api.token(Role::Reviewer, ONE, "Reviewer One");
    let two = api.token(Role::Reviewer, TWO, "Reviewer Two");
    let outsider = api.token(Role::Reviewer, OUTSIDER, "Not Named");
    let auditor = api.token(Role::Auditor, "aaaaaaaa-1111-4000-8000-000000000005", "Audra Auditor");
    let responder = api.token(Role::Responder, "aaaaaaaa-1111-4000-8000-000000000006", "Ray Responder");

    // reviewers who signed in once are the ones an Admin can pick by name
    assert_eq!(api.call("GET", "/api/reviews", &one, None).0, 200);
    api.state.audit.flush();
    let (status, known) = api.call("GET", "/api/reviews/reviewers", &admin, None);
    assert_eq!(status, 200);
    assert!(known.as_array().unwrap().iter().any(|k| k["oid"] == ONE && k["name"] == "Reviewer One"), "{known}");

    let due = (Utc::now() + Duration::days(14)).format("%Y-%m-%d").to_string();
    let start = json!({"name": "Q1 Cosmos DB access", "reviewers": [ONE, TWO.to_uppercase()], "due": due, "days": 30});
    assert_eq!(api.call("POST", "/api/reviews", &one, Some(start.clone())).0, 403, "reviewers do not start reviews");
    let (status, review) = api.call("POST", "/api/reviews", &admin, Some(start));
    assert_eq!(status, 201, "{review}");
    assert_eq!(review["items"], 3, "{review}");
    assert_eq!(review["state"], "open");
    assert_eq!(review["reviewers"][0], json!({"oid": ONE, "name": "Reviewer One"}), "named as they signed in");
    assert_eq!(review["reviewers"][1], json!({"oid": TWO, "name": null}), "{review}");
    let id = review["id"].as_i64().unwrap();

    // what each reviewer sees: last use and what was used, and who granted what
    let (status, detail) = api.call("GET", &format!("/api/reviews/{id}"), &two, None);
    assert_eq!(status, 200, "{detail}");
    let user2 = item_of(&detail, &user_id(2));
    assert!(user2["requests"].as_i64().unwrap() > 0 && user2["last_use"].is_string(), "{user2}");
    assert!(!user2["used_actions"].as_array().unwrap().is_empty(), "{user2}");
    assert_eq!(user2["can_decide"], true);
    let user3 = item_of(&detail, &user_id(3));
    assert_eq!(user3["granted_by_oid"], TWO);
    assert_eq!(user3["can_decide"], false);
    assert!(user3["refusal"].as_str().unwrap().contains("you wrote this role assignment"), "{user3}");
    let item = |p: &str| item_of(&detail, p)["item_id"].as_i64().unwrap();
    let decide = |token: &str, item: i64, decision: &str, why: &str| {
        api.call(
            "POST",
            &format!("/api/reviews/{id}/items/{item}/decision"),
            token,
            Some(json!({"decision": decision, "justification": why})),
        )
    };
    let (status, refused) = decide(&two, item(&user_id(3)), "approve", "I made it, it's fine");
    assert_eq!(status, 403, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("another reviewer must decide"), "{refused}");
    // not named, not a reviewer, bad bodies
    assert_eq!(api.call("GET", &format!("/api/reviews/{id}"), &outsider, None).0, 403);
    assert_eq!(decide(&outsider, item(&user_id(1)), "approve", "x").0, 403);
    assert_eq!(decide(&admin, item(&user_id(1)), "approve", "x").0, 403, "Admins start reviews, Reviewers decide");
    assert_eq!(api.call("GET", "/api/reviews", &responder, None).0, 403);
    assert_eq!(decide(&one, item(&user_id(1)), "maybe", "x").0, 400);
    assert_eq!(decide(&one, item(&user_id(1)), "approve", "   ").0, 400);
    assert_eq!(decide(&one, 999, "approve", "x").0, 404);
    let (status, _) = api.call(
        "POST",
        &format!("/api/reviews/{id}/items/1/decision"),
        &one,
        Some(json!({"decision": "approve", "justification": "x", "extra": 1})),
    );
    assert_eq!(status, 422, "a body with fields we do not know is refused, as every JSON body is");

    // decisions: TWO the two they did not grant, ONE the one TWO granted; the last completes
    assert_eq!(decide(&two, item(&user_id(1)), "approve", "reads orders daily for the shop app").0, 200);
    assert_eq!(decide(&two, item(&user_id(2)), "dont_know", "ask the team lead").0, 200);
    let (status, changed) = decide(&two, item(&user_id(2)), "approve", "team lead confirmed");
    assert_eq!((status, &changed["decision"]), (200, &json!("approve")), "a decision may change until the end");
    let (status, last) = decide(&one, item(&user_id(3)), "revoke", "no use in 30 days");
    assert_eq!(status, 200, "{last}");
    let (_, list) = api.call("GET", "/api/reviews", &auditor, None);
    assert_eq!(list[0]["state"], "completed", "{list}");
    assert_eq!(list[0]["decided"], 3);
    let (status, late) = decide(&one, item(&user_id(1)), "revoke", "too late");
    assert_eq!(status, 409, "{late}");

    // Graph's decision items, for an auditor
    assert_eq!(api.call("GET", &format!("/api/reviews/{id}/decisions"), &one, None).0, 403);
    let (status, graph) = api.call("GET", &format!("/api/reviews/{id}/decisions"), &auditor, None);
    assert_eq!(status, 200);
    let value = graph["value"].as_array().unwrap();
    assert_eq!(value.len(), 3);
    let by = |p: &str| value.iter().find(|v| v["principal"]["id"] == p).unwrap();
    assert_eq!(by(&user_id(3))["decision"], "Deny");
    assert_eq!(by(&user_id(3))["reviewedBy"]["id"], ONE);
    assert_eq!(by(&user_id(3))["justification"], "no use in 30 days");
    assert_eq!(by(&user_id(2))["decision"], "Approve");
    assert_eq!(by(&user_id(2))["reviewedBy"]["displayName"], "Reviewer Two");
    assert!(by(&user_id(1))["reviewedDateTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(graph["value"][0]["accessReviewId"], review["uuid"]);

    // the log is chained; an edited decision is named
    let reports = tokentrail::store::append::verify(&api.store).unwrap();
    let log = reports.iter().find(|r| r.table == "access_review_log").unwrap();
    assert!(log.verified(), "{}", log.summary());
    let conn = api.store.connection().unwrap();
    let started: String = conn
        .query_row("SELECT detail->>'items_sha256' FROM access_review_log WHERE action = 'started'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(started, tokentrail::reviews::items_digest(&conn, id).unwrap(), "the items are as they were started");
    conn.execute("UPDATE access_review_log SET decision = 'Approve' WHERE decision = 'Deny'", []).unwrap();
    drop(conn);
    let reports = tokentrail::store::append::verify(&api.store).unwrap();
    assert!(!reports.iter().find(|r| r.table == "access_review_log").unwrap().verified());
}

#[test]
fn reviews_due_soon_are_reminded_once_a_day_through_every_destination() {
    let api = tenant();
    let admin = api.token(Role::Admin, ADMIN, "Ada Admin");
    let soon = (Utc::now() + Duration::hours(20)).to_rfc3339();
    let later = (Utc::now() + Duration::days(30)).format("%Y-%m-%d").to_string();
    let (s1, due) =
        api.call("POST", "/api/reviews", &admin, Some(json!({"name": "due <soon>", "reviewers": [ONE], "due": soon})));
    let (s2, _) =
        api.call("POST", "/api/reviews", &admin, Some(json!({"name": "later", "reviewers": [ONE], "due": later})));
    assert_eq!((s1, s2), (201, 201));
    let config: tokentrail::alerts::config::AlertsConfig = serde_json::from_value(json!({
        "ui_base_url": "https://tokentrail.example",
        "destinations": [
            {"name": "chat", "kind": "slack", "url_env": "TT_TEST_REMINDER_SLACK"},
            {"name": "hook", "kind": "webhook", "url_env": "TT_TEST_REMINDER_HOOK", "signing_keys_env": "TT_TEST_REMINDER_KEYS"}
        ]
    }))
    .unwrap();
    // SAFETY: set before any thread of this test reads the environment; names unique to it.
    unsafe {
        std::env::set_var("TT_TEST_REMINDER_SLACK", "https://hooks.slack.example/x");
        std::env::set_var("TT_TEST_REMINDER_HOOK", "https://hook.example/x");
        std::env::set_var("TT_TEST_REMINDER_KEYS", "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
    }
    let alerts = config.resolve("http://127.0.0.1").unwrap();
    let now = Utc::now();
    assert_eq!(
        tokentrail::reviews::remind::send_due(&api.store, &alerts, now).unwrap(),
        2,
        "one review, two destinations"
    );
    assert_eq!(tokentrail::reviews::remind::send_due(&api.store, &alerts, now + Duration::hours(1)).unwrap(), 0);
    assert_eq!(tokentrail::reviews::remind::send_due(&api.store, &alerts, now + Duration::hours(25)).unwrap(), 2);
    let conn = api.store.connection().unwrap();
    let mut stmt =
        conn.prepare("SELECT destination, alert_status, body FROM alert_messages ORDER BY id LIMIT 2").unwrap();
    let messages: Vec<(String, String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    let slack: Value = serde_json::from_str(&messages[0].2).unwrap();
    assert_eq!(messages[0].1, "reminder");
    assert!(slack["text"].as_str().unwrap().contains(&format!("https://tokentrail.example/reviews/{}", due["id"])));
    assert!(messages[0].2.contains("due <soon>"), "the review's name goes as plain text: {}", messages[0].2);
    let hook: Value = serde_json::from_str(&messages[1].2).unwrap();
    assert_eq!(hook["alerts"][0]["labels"]["alertname"], "access_review_due");
    let reminded: i64 =
        conn.query_row("SELECT count(*) FROM access_review_log WHERE action = 'reminded'", [], |r| r.get(0)).unwrap();
    assert_eq!(reminded, 2);
}
