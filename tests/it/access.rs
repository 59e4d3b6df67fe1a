//! Granted against used (migration 15): the inventory's assignments with the Activity log
//! folded in, each assignment's use, and the recommendation an access review shows.

use crate::rule_cases::{Case, at, user_id};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tokentrail::inventory::{files, history};

/// `az cosmosdb sql role assignment list` output for `grants` (principal, role GUID, scope
/// below the account: "", "/dbs/db", "/dbs/db/colls/c").
fn assignments(account_id: &str, grants: &[(&str, &str, &str)]) -> Value {
    let rows: Vec<Value> = grants
        .iter()
        .enumerate()
        .map(|(i, (principal, role, below))| {
            let name = format!("aaaaaaaa-0000-4000-8000-{i:012}");
            json!({
                "id": format!("{account_id}/sqlRoleAssignments/{name}"), "name": name, "principalId": principal,
                "roleDefinitionId": format!("{account_id}/sqlRoleDefinitions/{role}"),
                "scope": format!("{account_id}{below}"), "type": "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments",
            })
        })
        .collect();
    Value::Array(rows)
}

fn inventory(case: &Case, taken_at: DateTime<Utc>, grants: &[(&str, &str, &str)]) {
    let account_id = case.template("DataPlaneRequests")["resourceId"].as_str().unwrap().to_string();
    let path = case.db.file("assignments.json", assignments(&account_id, grants).to_string());
    let snapshot = files::read(&[path], taken_at).unwrap();
    history::record(&case.db.store, &snapshot).unwrap();
}

const READER: &str = "00000000-0000-0000-0000-000000000001";
const CONTRIBUTOR: &str = "00000000-0000-0000-0000-000000000002";

/// A request of user `user` on `db/coll` with `operation`.
fn request(case: &mut Case, user: u32, time: DateTime<Utc>, operation: &str, db: &str, coll: &str) {
    case.request(user, "73.9.9.9", time);
    let r = case.records.last_mut().unwrap();
    r["operationName"] = json!(operation);
    r["properties"]["requestResourceType"] = json!("Document");
    r["properties"]["requestResourceId"] = json!(format!("/dbs/{db}/colls/{coll}/docs/x"));
    r["properties"]["databaseName"] = json!(db);
    r["properties"]["collectionName"] = json!(coll);
    r["properties"]["statusCode"] = json!(200);
}

#[test]
fn each_assignment_gets_the_recommendation_its_use_calls_for() {
    let mut case = Case::new();
    let start = at("2025-01-02T09:00:00Z");
    let (p_reads, p_narrow, p_unused, p_writes) = (user_id(1), user_id(2), user_id(3), user_id(4));
    // 90 days of logs; the inventory was taken on the first day
    for day in (0..90).step_by(3) {
        let t = start + Duration::days(day);
        request(&mut case, 1, t, "Read", "shop", "orders");
        request(&mut case, 1, t + Duration::minutes(1), "Query", "shop", "orders");
        request(&mut case, 2, t, "Read", "shop", "carts");
        request(&mut case, 4, t, "Upsert", "shop", "orders");
        request(&mut case, 4, t + Duration::minutes(2), "Read", "shop", "carts");
        request(&mut case, 9, t, "Read", "shop", "orders");
    }
    case.findings(); // ingest and absorb
    inventory(
        &case,
        start,
        &[
            (&p_reads, CONTRIBUTOR, ""),
            (&p_narrow, READER, ""),
            (&p_unused, CONTRIBUTOR, "/dbs/shop"),
            (&p_writes, CONTRIBUTOR, ""),
        ],
    );
    let review = case.db.rows(
        "SELECT principal_id, recommendation, advice, requests::VARCHAR FROM access_review(
             '2025-01-01'::TIMESTAMPTZ, '2025-04-02'::TIMESTAMPTZ) ORDER BY principal_id",
    );
    let by = |p: &str| review.iter().find(|r| r[0] == p).unwrap_or_else(|| panic!("{p} not in {review:?}")).clone();
    assert_eq!(by(&p_reads)[1], "reader", "{review:?}");
    assert!(
        by(&p_reads)[2].contains("Data Reader") && by(&p_reads)[2].contains("dbs/shop/colls/orders"),
        "{:?}",
        by(&p_reads)
    );
    assert_eq!(by(&p_narrow)[1], "narrow scope");
    assert!(by(&p_narrow)[2].ends_with("dbs/shop/colls/carts"), "{:?}", by(&p_narrow));
    assert_eq!(by(&p_unused)[1], "unused so far", "the logs start after the review period starts");
    assert_eq!(by(&p_writes)[1], "keep");
    assert!(by(&p_writes)[3].parse::<i64>().unwrap() > 0);
    // the same review from a start the logs cover: the unused assignment is to be removed
    let later: Vec<Vec<String>> = case.db.rows(&format!(
        "SELECT recommendation FROM access_review('2025-01-10'::TIMESTAMPTZ, '2025-04-02'::TIMESTAMPTZ) WHERE principal_id = '{p_unused}'"
    ));
    assert_eq!(later, vec![vec!["remove".to_string()]]);
    // user 9 read with no assignment: the review is of assignments, not of requests
    assert!(review.iter().all(|r| r[0] != user_id(9)));
}

#[test]
fn the_activity_log_dates_grants_and_removals_between_snapshots() {
    let mut case = Case::new();
    let account_id = case.template("DataPlaneRequests")["resourceId"].as_str().unwrap().to_string();
    let granted = at("2025-03-04T10:00:00Z");
    let assignment_id = format!("{account_id}/sqlRoleAssignments/aaaaaaaa-0000-4000-8000-000000000000");
    let event = |operation: &str, result: &str, time: DateTime<Utc>, body: Option<Value>, correlation: &str| {
        let mut properties = json!({"eventCategory": "Administrative"});
        if let Some(body) = body {
            properties["requestbody"] = json!(body.to_string());
        }
        json!({"time": time.to_rfc3339(), "resourceId": assignment_id, "operationName": operation,
               "category": "Write", "resultType": result, "correlationId": correlation,
               "identity": {"claims": {"http://schemas.microsoft.com/identity/claims/objectidentifier": user_id(1)}},
               "properties": properties})
    };
    let body = json!({"properties": {"principalId": user_id(7), "scope": account_id,
        "roleDefinitionId": format!("{account_id}/sqlRoleDefinitions/{CONTRIBUTOR}")}});
    let write = "MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/SQLROLEASSIGNMENTS/WRITE";
    case.records.push(event(write, "Start", granted, Some(body.clone()), "c1"));
    case.records.push(event(write, "Success", granted + Duration::seconds(1), None, "c1"));
    // and one grant no snapshot ever saw
    let other = json!({"properties": {"principalId": user_id(8), "scope": account_id,
        "roleDefinitionId": format!("{account_id}/sqlRoleDefinitions/{READER}")}});
    let mut start = event(write, "Start", granted + Duration::days(5), Some(other), "c2");
    start["resourceId"] = json!(format!("{account_id}/sqlRoleAssignments/bbbbbbbb-0000-4000-8000-000000000000"));
    let mut done = start.clone();
    done["resultType"] = json!("Success");
    done["properties"].as_object_mut().unwrap().remove("requestbody");
    case.records.push(start);
    case.records.push(done);
    // an Azure role that reads the keys, granted on the account after the snapshot
    let reader = json!({"Properties": {"PrincipalId": user_id(9), "PrincipalType": "User", "Scope": account_id,
        "RoleDefinitionId": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/fbdf93bf-df7d-467e-a4d2-9458aa1360c8"}});
    let azure_write = "MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE";
    let mut start = event(azure_write, "Start", granted + Duration::days(6), Some(reader), "c3");
    start["resourceId"] = json!(format!("{account_id}/providers/Microsoft.Authorization/roleAssignments/cccc"));
    let mut done = start.clone();
    done["resultType"] = json!("Success");
    case.records.push(start);
    case.records.push(done);
    case.findings();
    // the weekly snapshot sees the first grant two days later
    inventory(&case, granted + Duration::days(2), &[(&user_id(7), CONTRIBUTOR, "")]);
    let rows = case.db.rows(
        "SELECT principal_id, origin, strftime(valid_from::TIMESTAMP, '%Y-%m-%d %H:%M'), coalesce(valid_to::VARCHAR, '')
         FROM data_access_grants ORDER BY principal_id",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[0][..3],
        [user_id(7), "inventory".into(), "2025-03-04 10:00".into()],
        "dated by the log, not the snapshot"
    );
    assert_eq!(rows[1][..3], [user_id(8), "activity_log".into(), "2025-03-09 10:00".into()]);
    let azure = case.db.rows(
        "SELECT principal_id, role_name, origin, strftime(valid_from::TIMESTAMP, '%Y-%m-%d') FROM azure_role_assignment_history",
    );
    assert_eq!(
        azure,
        vec![vec![user_id(9), "Cosmos DB Account Reader Role".into(), "activity_log".into(), "2025-03-10".into()]]
    );
    // who could read the account's items on the 5th: user 7 already
    let readers = case.db.rows(&format!(
        "SELECT principal_id FROM data_readers_at('{}', '2025-03-05'::TIMESTAMPTZ)",
        account_id.to_ascii_lowercase() + "/dbs/shop/colls/orders"
    ));
    assert_eq!(readers, vec![vec![user_id(7)]]);
}

#[test]
fn key_exposure_takes_an_account_write_after_the_inventory() {
    let db = crate::common::TestDb::new();
    let fixture = std::path::Path::new("tests/fixtures/inventory/cosmosdb-list.json");
    let taken = at("2026-11-01T00:00:00Z");
    history::record(&db.store, &files::read(&[fixture], taken).unwrap()).unwrap();
    let exposed = |db: &crate::common::TestDb| {
        db.rows("SELECT account FROM key_exposure('2026-10-01'::TIMESTAMPTZ, '2026-12-01'::TIMESTAMPTZ) ORDER BY 1")
    };
    assert_eq!(exposed(&db), vec![vec!["contoso-orders".to_string()]], "telemetry has local auth off");
    // someone turns key auth back on for telemetry after the inventory
    let account = "/subscriptions/3f2a9c1e-7b4d-4e8a-9f0c-2d6b1a8e5c47/resourceGroups/rg-telemetry/providers/Microsoft.DocumentDB/databaseAccounts/contoso-telemetry";
    let record = |result: &str| {
        json!({"time": "2026-11-03T10:00:00Z", "resourceId": account, "category": "Write", "resultType": result,
               "operationName": "MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/WRITE", "correlationId": "c-telemetry",
               "identity": {}, "properties": {"eventCategory": "Administrative",
               "requestbody": json!({"properties": {"disableLocalAuth": false}}).to_string()}})
    };
    let path = db.file("write.ndjson", format!("{}\n{}\n", record("Start"), record("Success")));
    db.ingest(&[path]);
    let (detector, _) = tokentrail::rules::Detector::open(&db.store, &Default::default()).unwrap();
    detector.evaluate_after_commit(&db.store).unwrap();
    assert_eq!(exposed(&db), vec![vec!["contoso-orders".to_string()], vec!["contoso-telemetry".to_string()]]);
}
