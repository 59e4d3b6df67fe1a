//! CC6.2/CC6.3 populations against a tenant whose grants, removals and leavers are known:
//! two inventory snapshots, Activity log records of role assignments written and deleted
//! (with their callers and addresses), Entra ID audit records of accounts disabled, Cosmos DB
//! requests, a leavers list imported and an access review; a pack made for the period, and
//! its CSV files compared row by row with what the tenant says. And the leavers import's
//! abuse cases: SQL and formulas are data, a bad date names its line, a large body is 413.

use crate::common::TestDb;
use crate::common::jwks::TestIssuer;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use tokentrail::auth::Role;
use tokentrail::evidence::pack::{self, PackRequest};
use tokentrail::evidence::sign::{self, PackKey};
use tokentrail::evidence::{Criterion, GeneratedBy, Period};
use tokentrail::inventory::{
    Account, AzureRoleAssignment, Origin, RoleAssignment, Snapshot, history, leavers as leaver_lists,
};
use tokentrail::rules::{DetectionConfig, Detector};

const S: &str = "5c9d2a1e-0b7f-4a51-9d3c-7e2f1a8b6c40";
const FROM: &str = "2025-03-03T00:00:00Z";
const TO: &str = "2025-03-05T00:00:00Z";

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001"; // on the leavers list: removed on time
const BOB: &str = "b0b00000-0000-4000-8000-000000000002"; // account disabled: removed late
const CAROL: &str = "ca401000-0000-4000-8000-000000000003"; // AccountEnabled set false: not removed
const DAVE: &str = "da7e0000-0000-4000-8000-000000000004"; // a reader who stopped reading: remove
const ERIN: &str = "e2100000-0000-4000-8000-000000000005"; // Azure role removed with no Activity log record
const FRANK: &str = "f4a4c000-0000-4000-8000-000000000006"; // granted in the period (data and Azure)
const GINA: &str = "6140a000-0000-4000-8000-000000000007"; // granted with no Activity log record
const IVAN: &str = "1fa40000-0000-4000-8000-000000000009"; // a contributor who only reads: reader
const JUDY: &str = "10d70000-0000-4000-8000-00000000000a"; // a contributor on the whole account: over-broad
const GROUP: &str = "96000000-0000-4000-8000-00000000000b"; // Contributor on the subscription: over-broad
const ADMIN: &str = "ad000000-0000-4000-8000-0000000000ad";
const SECOPS: &str = "ad200000-0000-4000-8000-0000000000a2";

const READER: &str = "00000000-0000-0000-0000-000000000001";
const CONTRIBUTOR: &str = "00000000-0000-0000-0000-000000000002";
const AZ_CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const AZ_ACCOUNT_READER: &str = "fbdf93bf-df7d-467e-a4d2-9458aa1360c8";
const AZ_DOCDB_CONTRIBUTOR: &str = "5bd9cd88-fe45-4216-938b-f97437e15450";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn account_id() -> String {
    format!("/subscriptions/{S}/resourcegroups/rg-data/providers/microsoft.documentdb/databaseaccounts/contoso-orders")
}

/// The data-plane assignment `n` (its GUID ends in n).
fn data_id(n: u32) -> String {
    format!("{}/sqlroleassignments/{}", account_id(), guid(n))
}

fn guid(n: u32) -> String {
    format!("aaaa0000-0000-4000-8000-{n:012}")
}

fn azure_id(scope: &str, n: u32) -> String {
    format!("{scope}/providers/microsoft.authorization/roleassignments/cccc0000-0000-4000-8000-{n:012}")
}

fn subscription() -> String {
    format!("/subscriptions/{S}")
}

fn data(n: u32, principal: &str, role: &str, under: &str) -> RoleAssignment {
    RoleAssignment {
        assignment_id: data_id(n),
        account: "contoso-orders".into(),
        subscription_id: S.into(),
        principal_id: principal.into(),
        role_definition_id: role.into(),
        scope: format!("{}{under}", account_id()),
    }
}

fn azure(id: String, principal: &str, kind: &str, role: &str, name: &str, scope: String) -> AzureRoleAssignment {
    AzureRoleAssignment {
        assignment_id: id,
        subscription_id: S.into(),
        principal_id: principal.into(),
        principal_type: Some(kind.into()),
        role_definition_id: role.into(),
        role_name: Some(name.into()),
        scope,
    }
}

fn snapshot(taken_at: &str, assignments: Vec<RoleAssignment>, azure: Vec<AzureRoleAssignment>) -> Snapshot {
    let mut s = Snapshot::new(Origin::File, at(taken_at));
    s.accounts.push(Account {
        account: "contoso-orders".into(),
        resource_id: account_id(),
        subscription_id: S.into(),
        resource_group: Some("rg-data".into()),
        location: Some("westeurope".into()),
        disable_local_auth: Some(true),
        public_network_access: Some("Enabled".into()),
        ip_rules: Vec::new(),
        virtual_network_rules: Vec::new(),
        disable_key_based_metadata_write_access: None,
    });
    s.assignments = assignments;
    s.azure_assignments = azure;
    s.cover_subscription(S);
    s.ok = 1;
    s
}

/// An Activity log operation: its Start event (with the request body) and its Success.
#[allow(clippy::too_many_arguments)]
fn activity(
    time: &str,
    resource: &str,
    operation: &str,
    category: &str,
    caller: (&str, &str, &str),
    correlation: u32,
    body: Option<Value>,
) -> Vec<Value> {
    let (oid, upn, ip) = caller;
    let event = |result: &str, time: &str| {
        let mut properties = json!({"eventCategory": "Administrative", "entity": resource.to_uppercase()});
        if let (Some(body), "Start") = (&body, result) {
            properties["requestbody"] = Value::String(body.to_string());
        }
        json!({
            "time": time,
            "resourceId": resource.to_uppercase(),
            "operationName": operation,
            "category": category,
            "resultType": result,
            "resultSignature": if result == "Start" { "Started." } else { "Succeeded.OK" },
            "callerIpAddress": ip,
            "correlationId": format!("c0000000-0000-4000-8000-{correlation:012}"),
            "level": "Information",
            "identity": {"claims": {
                "http://schemas.microsoft.com/identity/claims/objectidentifier": oid,
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": upn,
                "name": upn,
            }},
            "properties": properties,
        })
    };
    let done = at(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let start = (at(time) - chrono::Duration::seconds(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    vec![event("Start", &start), event("Success", &done)]
}

/// An Entra ID audit record about user `target`.
fn audit(time: &str, operation: &str, target: &str, upn: &str, modified: Value, correlation: u32) -> Value {
    json!({
        "time": time,
        "resourceId": "/tenants/72f988bf-86f1-41af-91ab-2d7cd011db47/providers/Microsoft.aadiam",
        "operationName": operation,
        "category": "AuditLogs",
        "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "correlationId": format!("a0000000-0000-4000-8000-{correlation:012}"),
        "properties": {
            "category": "UserManagement",
            "result": "success",
            "activityDisplayName": operation,
            "activityDateTime": time,
            "initiatedBy": {"user": {"id": SECOPS, "userPrincipalName": "secops@contoso.com", "ipAddress": "198.51.100.9"}},
            "targetResources": [{"id": target, "type": "User", "userPrincipalName": upn, "modifiedProperties": modified}],
        }
    })
}

/// A successful Cosmos DB request of `principal` through assignment `n`.
fn request(time: &str, principal: &str, n: u32, operation: &str, container: &str, i: u32) -> Value {
    json!({
        "time": time,
        "resourceId": account_id().to_uppercase(),
        "category": "DataPlaneRequests",
        "operationName": operation,
        "properties": {
            "activityId": format!("bbbb0000-0000-4000-8000-{i:012}"),
            "requestResourceType": "Document",
            "statusCode": "200",
            "clientIpAddress": "10.0.0.5",
            "aadPrincipalId": principal,
            "aadAppliedRoleAssignmentId": guid(n),
            "authTokenType": "AadToken",
            "databaseName": "orders",
            "collectionName": container,
        }
    })
}

fn data_body(principal: &str, role: &str, under: &str) -> Value {
    json!({"properties": {
        "roleDefinitionId": format!("{}/sqlRoleDefinitions/{role}", account_id()),
        "scope": format!("{}{under}", account_id()),
        "principalId": principal.to_uppercase(),
    }})
}

/// The tenant: inventories on 1 and 4 March, the logs of the period, a leavers list.
fn tenant() -> TestDb {
    let db = TestDb::new();
    let admin = (ADMIN, "admin@contoso.com", "203.0.113.7");
    let secops = (SECOPS, "secops@contoso.com", "198.51.100.9");
    let mut records: Vec<Value> = Vec::new();
    // Dave read before the period (the logs start on 2 March), not in it.
    records.push(request("2025-03-02T10:00:00Z", DAVE, 4, "Read", "invoices", 1));
    records.extend(activity(
        "2025-03-03T09:00:00Z",
        &data_id(5),
        "MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/SQLROLEASSIGNMENTS/WRITE",
        "Write",
        admin,
        1,
        Some(data_body(FRANK, READER, "/dbs/orders/colls/invoices")),
    ));
    records.extend(activity(
        "2025-03-03T09:30:00Z",
        &azure_id(&account_id(), 3),
        "MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE",
        "Write",
        admin,
        2,
        Some(json!({"Properties": {
            "PrincipalId": FRANK, "PrincipalType": "User",
            "RoleDefinitionId": format!("/subscriptions/{S}/providers/Microsoft.Authorization/roleDefinitions/{AZ_DOCDB_CONTRIBUTOR}"),
            "Scope": account_id(),
        }})),
    ));
    records.push(request("2025-03-03T10:00:00Z", IVAN, 7, "Read", "invoices", 2));
    records.push(request("2025-03-03T10:05:00Z", IVAN, 7, "Query", "invoices", 3));
    records.push(request("2025-03-03T11:00:00Z", JUDY, 8, "Create", "invoices", 4));
    records.push(request("2025-03-03T11:10:00Z", JUDY, 8, "Upsert", "customers", 5));
    records.push(audit("2025-03-03T12:00:00Z", "Disable account", BOB, "bob@contoso.com", json!([]), 1));
    records.extend(activity(
        "2025-03-03T20:00:00Z",
        &data_id(1),
        "MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/SQLROLEASSIGNMENTS/DELETE",
        "Delete",
        secops,
        3,
        None,
    ));
    records.push(audit(
        "2025-03-04T00:00:00Z",
        "Update user",
        CAROL,
        "carol@contoso.com",
        json!([{"displayName": "AccountEnabled", "oldValue": "[true]", "newValue": "[false]"}]),
        2,
    ));
    // Another change to a user is not leaving.
    records.push(audit(
        "2025-03-04T01:00:00Z",
        "Update user",
        DAVE,
        "dave@contoso.com",
        json!([{"displayName": "Department", "oldValue": "[\"Sales\"]", "newValue": "[\"Finance\"]"}]),
        3,
    ));
    records.extend(activity(
        "2025-03-04T18:00:00Z",
        &data_id(2),
        "MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/SQLROLEASSIGNMENTS/DELETE",
        "Delete",
        secops,
        4,
        None,
    ));
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    let path = db.file("logs.ndjson", lines.join("\n") + "\n");
    let report = db.ingest(&[path]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let (detector, problems) = Detector::open(&db.store, &DetectionConfig::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    detector.evaluate_after_commit(&db.store).unwrap();
    assert_eq!(db.count("quarantine"), 0);

    let group = || azure(azure_id(&subscription(), 1), GROUP, "Group", AZ_CONTRIBUTOR, "Contributor", subscription());
    let frank_azure = || {
        azure(
            azure_id(&account_id(), 3),
            FRANK,
            "User",
            AZ_DOCDB_CONTRIBUTOR,
            "DocumentDB Account Contributor",
            account_id(),
        )
    };
    let first = snapshot(
        "2025-03-01T00:00:00Z",
        vec![
            data(1, ALICE, CONTRIBUTOR, ""),
            data(2, BOB, READER, "/dbs/orders"),
            data(3, CAROL, READER, "/dbs/orders/colls/invoices"),
            data(4, DAVE, READER, "/dbs/orders"),
            data(7, IVAN, CONTRIBUTOR, "/dbs/orders"),
            data(8, JUDY, CONTRIBUTOR, ""),
        ],
        vec![
            group(),
            azure(
                azure_id(&account_id(), 2),
                ERIN,
                "User",
                AZ_ACCOUNT_READER,
                "Cosmos DB Account Reader Role",
                account_id(),
            ),
        ],
    );
    history::record(&db.store, &first).unwrap();
    let second = snapshot(
        "2025-03-04T12:00:00Z",
        vec![
            data(2, BOB, READER, "/dbs/orders"),
            data(3, CAROL, READER, "/dbs/orders/colls/invoices"),
            data(4, DAVE, READER, "/dbs/orders"),
            data(5, FRANK, READER, "/dbs/orders/colls/invoices"),
            data(6, GINA, READER, "/dbs/orders/colls/invoices"),
            data(7, IVAN, CONTRIBUTOR, "/dbs/orders"),
            data(8, JUDY, CONTRIBUTOR, ""),
        ],
        vec![group(), frank_azure()],
    );
    history::record(&db.store, &second).unwrap();

    // Bob is on the list too, an hour after his account was disabled: the earlier counts.
    let list = format!(
        "Object ID,UPN,Display name,Leave date\n\
         {},,Alice Leaver,2025-03-03T10:00:00Z\n\
         ,henry@contoso.com,Henry Nobody,2025-03-04\n\
         {BOB},bob@contoso.com,Bob,2025-03-03 13:00\n",
        ALICE.to_uppercase()
    );
    let imported = leaver_lists::import(&db.store, "leavers.csv", list.as_bytes(), "HR Admin (oid h tid t)").unwrap();
    assert_eq!(imported.rows, 3);
    db
}

/// The pack's CSV of `population` (CC6.2-CC6.3) as rows of column → value.
fn csv_rows(zip_path: &Path, population: &str) -> Vec<BTreeMap<String, String>> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip_path).unwrap()).unwrap();
    let name = (0..archive.len())
        .map(|i| archive.by_index(i).unwrap().name().to_string())
        .find(|n| n.starts_with(&format!("CC6.2-CC6.3/{population}_")) && n.ends_with(".csv"))
        .unwrap_or_else(|| panic!("no {population} in the pack"));
    let mut text = String::new();
    archive.by_name(&name).unwrap().read_to_string(&mut text).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| headers.iter().zip(r.unwrap().iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect())
        .collect()
}

/// The columns `columns` of each row.
fn pick(rows: &[BTreeMap<String, String>], columns: &[&str]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| columns.iter().map(|c| r.get(*c).unwrap_or_else(|| panic!("no column {c}: {r:?}")).clone()).collect())
        .collect()
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect()
}

fn make_pack(db: &TestDb, dir: &Path) -> std::path::PathBuf {
    let key = PackKey::load_or_create(&sign::key_path(&dir.join("pack.duckdb"), None), true).unwrap();
    let rules = tokentrail::rules::rule::load(None).0;
    let request = PackRequest {
        criteria: vec![Criterion::Cc6_1, Criterion::Cc6_2],
        period: Period::new(at(FROM), at(TO)).unwrap(),
        generated_by: GeneratedBy {
            oid: Some("oid-test".into()),
            tid: Some("tid-test".into()),
            name: "Auditor".into(),
        },
        rules: &rules,
        budget: tokentrail::evidence::Budget::unlimited(),
        expected: Vec::new(),
        development_signer: false,
        removal_hours: 24,
        lake: None,
    };
    let out = dir.join("pack.zip");
    pack::build_file(&db.store, &key, &request, &out, &|_, _, _| {}).unwrap();
    out
}

#[test]
fn the_pack_shows_access_granted_removed_and_leavers_against_the_deadline() {
    let db = tenant();
    assert_eq!(
        db.rows("SELECT target_id, kind FROM directory_changes WHERE kind LIKE 'user_%' ORDER BY time"),
        strings(&[&[BOB, "user_disabled"], &[CAROL, "user_disabled"]])
    );
    // Rows typed before those kinds existed are recognised by their operation and modified
    // properties: the populations below are the same with them.
    db.store.connection().unwrap().execute_batch("UPDATE directory_changes SET kind = 'other'").unwrap();
    // An access review started in the period: two items, one decided twice (the latest
    // counts), one not decided.
    {
        let conn = db.store.connection().unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO access_reviews (uuid, name, scope, reviewers, usage_since, usage_until, due_at, created_at, created_by, created_by_oid)
             VALUES ('rev-1', 'Q1 orders', '{account}', '[{{\"oid\": \"{ADMIN}\", \"name\": \"Ann Admin\"}}]',
                     '2025-02-01T00:00:00Z', '2025-03-03T00:00:00Z', '2025-03-10T00:00:00Z', '2025-03-03T08:00:00Z',
                     'Ann Admin (oid {ADMIN} tid t)', '{ADMIN}');
             INSERT INTO access_review_items (review_id, item_id, uuid, plane, assignment_id, account, principal_id,
                 principal_name, principal_kind, role_definition_id, role_name, scope, requests, used_actions, recommendation, advice)
             VALUES (1, 1, 'item-1', 'data', '{d4}', 'contoso-orders', '{DAVE}', 'dave@contoso.com', 'user', '{READER}',
                     'Cosmos DB Built-in Data Reader', '{account}/dbs/orders', 0, [], 'revoke', 'not used'),
                    (1, 2, 'item-2', 'data', '{d7}', 'contoso-orders', '{IVAN}', NULL, 'unknown', '{CONTRIBUTOR}',
                     'Cosmos DB Built-in Data Contributor', '{account}/dbs/orders', 2, [], 'approve', 'used');",
            account = account_id(),
            d4 = data_id(4),
            d7 = data_id(7),
        ))
        .unwrap();
    }
    tokentrail::store::append::append(&db.store, "access_review_log", |conn| {
        conn.execute_batch(&format!(
            "INSERT INTO access_review_log (review_id, item_id, action, decision, justification, by_oid, by_name, logged_at)
             VALUES (1, NULL, 'started', NULL, NULL, '{ADMIN}', 'Ann Admin', '2025-03-03T08:00:00Z'),
                    (1, 1, 'decided', 'Approve', 'first look', '{ADMIN}', 'Ann Admin', '2025-03-03T09:00:00Z'),
                    (1, 1, 'decided', 'Deny', '=HYPERLINK(\"http://x\") not used since February', '{ADMIN}', 'Ann Admin', '2025-03-04T09:00:00Z');"
        ))?;
        Ok(())
    })
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let zip = make_pack(&db, dir.path());
    let cols = ["plane", "account", "principal_id", "principal_kind", "role_name", "scope", "assignment_id"];
    let acc = account_id();
    let start = pick(&csv_rows(&zip, "entitlements_start"), &cols);
    let row = |plane: &str, account: &str, who: &str, kind: &str, role: &str, scope: &str, id: &str| -> Vec<String> {
        [plane, account, who, kind, role, scope, id].iter().map(|s| s.to_string()).collect()
    };
    let sub = subscription();
    let (db_orders, invoices) = (format!("{acc}/dbs/orders"), format!("{acc}/dbs/orders/colls/invoices"));
    let (az1, az2, az3) = (azure_id(&sub, 1), azure_id(&acc, 2), azure_id(&acc, 3));
    let (dr, dc) = ("Cosmos DB Built-in Data Reader", "Cosmos DB Built-in Data Contributor");
    assert_eq!(
        start,
        vec![
            row("azure", "contoso-orders", ERIN, "user", "Cosmos DB Account Reader Role", &acc, &az2),
            row("azure", "", GROUP, "group", "Contributor", &sub, &az1),
            row("data", "contoso-orders", JUDY, "unknown", dc, &acc, &data_id(8)),
            row("data", "contoso-orders", IVAN, "unknown", dc, &db_orders, &data_id(7)),
            row("data", "contoso-orders", ALICE, "unknown", dc, &acc, &data_id(1)),
            row("data", "contoso-orders", BOB, "user", dr, &db_orders, &data_id(2)),
            row("data", "contoso-orders", CAROL, "user", dr, &invoices, &data_id(3)),
            row("data", "contoso-orders", DAVE, "user", dr, &db_orders, &data_id(4)),
        ]
    );
    let end_rows = csv_rows(&zip, "entitlements_end");
    assert_eq!(
        pick(&end_rows, &cols),
        vec![
            row("azure", "contoso-orders", FRANK, "user", "DocumentDB Account Contributor", &acc, &az3),
            row("azure", "", GROUP, "group", "Contributor", &sub, &az1),
            row("data", "contoso-orders", JUDY, "unknown", dc, &acc, &data_id(8)),
            row("data", "contoso-orders", IVAN, "unknown", dc, &db_orders, &data_id(7)),
            row("data", "contoso-orders", GINA, "unknown", dr, &invoices, &data_id(6)),
            row("data", "contoso-orders", CAROL, "user", dr, &invoices, &data_id(3)),
            row("data", "contoso-orders", DAVE, "user", dr, &db_orders, &data_id(4)),
            row("data", "contoso-orders", FRANK, "user", dr, &invoices, &data_id(5)),
        ]
    );
    // Frank's assignments are dated by the Activity log's writes and name who made them.
    let granted = pick(
        &end_rows,
        &[
            "principal_id",
            "assignment_id",
            "granted_at",
            "granted_by_id",
            "granted_by_name",
            "granted_from_ip",
            "origin",
        ],
    );
    assert!(granted.contains(
        &strings(&[&[
            FRANK,
            &data_id(5),
            "2025-03-03T09:00:00Z",
            ADMIN,
            "admin@contoso.com",
            "203.0.113.7",
            "inventory"
        ]])[0]
    ));
    let data_actions = pick(&end_rows, &["assignment_id", "data_actions"]);
    assert!(
        data_actions.iter().any(|r| r[0] == data_id(4) && r[1].contains("containers/items/read")),
        "{data_actions:?}"
    );

    let grants = pick(
        &csv_rows(&zip, "grants"),
        &[
            "granted_at",
            "plane",
            "principal_id",
            "role_name",
            "scope",
            "granted_by_id",
            "granted_by_name",
            "granted_from_ip",
            "source",
            "note",
        ],
    );
    assert_eq!(
        grants,
        strings(&[
            &[
                "2025-03-03T09:00:00Z",
                "data",
                FRANK,
                dr,
                &invoices,
                ADMIN,
                "admin@contoso.com",
                "203.0.113.7",
                "activity_log",
                ""
            ],
            &[
                "2025-03-03T09:30:00Z",
                "azure",
                FRANK,
                "DocumentDB Account Contributor",
                &acc,
                ADMIN,
                "admin@contoso.com",
                "203.0.113.7",
                "activity_log",
                ""
            ],
            &[
                "2025-03-04T12:00:00Z",
                "data",
                GINA,
                dr,
                &invoices,
                "",
                "",
                "",
                "inventory",
                "not in the Activity log: first seen by the inventory run of 2025-03-04T12:00:00Z"
            ],
        ])
    );
    let removals = pick(
        &csv_rows(&zip, "removals"),
        &[
            "removed_at",
            "plane",
            "principal_id",
            "role_name",
            "scope",
            "granted_at",
            "removed_by_name",
            "removed_from_ip",
            "source",
        ],
    );
    assert_eq!(
        removals,
        strings(&[
            &[
                "2025-03-03T20:00:00Z",
                "data",
                ALICE,
                dc,
                &acc,
                "2025-03-01T00:00:00Z",
                "secops@contoso.com",
                "198.51.100.9",
                "activity_log"
            ],
            &[
                "2025-03-04T12:00:00Z",
                "azure",
                ERIN,
                "Cosmos DB Account Reader Role",
                &acc,
                "2025-03-01T00:00:00Z",
                "",
                "",
                "inventory"
            ],
            &[
                "2025-03-04T18:00:00Z",
                "data",
                BOB,
                dr,
                &db_orders,
                "2025-03-01T00:00:00Z",
                "secops@contoso.com",
                "198.51.100.9",
                "activity_log"
            ],
        ])
    );

    let leavers = pick(
        &csv_rows(&zip, "leavers"),
        &[
            "principal_id",
            "principal_name",
            "left_at",
            "leaver_source",
            "assignment_id",
            "removed_at",
            "hours_to_removal",
            "deadline_hours",
            "verdict",
        ],
    );
    assert_eq!(
        leavers,
        strings(&[
            &[
                ALICE,
                "Alice Leaver",
                "2025-03-03T10:00:00Z",
                "list:leavers.csv",
                &data_id(1),
                "2025-03-03T20:00:00Z",
                "10.00",
                "24",
                "on time"
            ],
            &[
                BOB,
                "bob@contoso.com",
                "2025-03-03T12:00:00Z",
                "audit_log; list:leavers.csv",
                &data_id(2),
                "2025-03-04T18:00:00Z",
                "30.00",
                "24",
                "late"
            ],
            &[
                CAROL,
                "carol@contoso.com",
                "2025-03-04T00:00:00Z",
                "audit_log",
                &data_id(3),
                "",
                "",
                "24",
                "not removed"
            ],
            &[
                "",
                "Henry Nobody",
                "2025-03-04T00:00:00Z",
                "list:leavers.csv",
                "",
                "",
                "",
                "24",
                "not matched: henry@contoso.com is no principal TokenTrail has seen"
            ],
        ])
    );

    let exceptions = pick(&csv_rows(&zip, "exceptions"), &["exception", "principal_id", "assignment_id", "reason"]);
    let short: Vec<(String, String, String)> =
        exceptions.iter().map(|r| (r[0].clone(), r[1].clone(), r[2].clone())).collect();
    assert_eq!(
        short,
        vec![
            ("over-broad scope".to_string(), JUDY.to_string(), data_id(8)),
            ("over-broad scope".into(), GROUP.into(), az1.clone()),
            ("reader".into(), IVAN.into(), data_id(7)),
            ("remove".into(), CAROL.into(), data_id(3)),
            ("remove".into(), DAVE.into(), data_id(4)),
        ]
    );
    assert!(exceptions[0][3].starts_with("wildcard data actions"), "{}", exceptions[0][3]);
    assert!(exceptions[1][3].contains("every Cosmos DB account in the subscription"), "{}", exceptions[1][3]);
    assert!(exceptions[2][3].starts_with("only read"), "{}", exceptions[2][3]);

    let in_use = pick(
        &csv_rows(&zip, "role_assignments"),
        &["role_assignment_id", "role_name", "scope", "holder_id", "principal_id", "requests"],
    );
    assert_eq!(
        in_use,
        strings(&[&[&guid(7), dc, &db_orders, IVAN, IVAN, "2"], &[&guid(8), dc, &acc, JUDY, JUDY, "2"]])
    );

    let principals = pick(&csv_rows(&zip, "principals"), &["principal_id", "status", "assignments_at_end"]);
    let status: BTreeMap<String, (String, String)> =
        principals.into_iter().map(|r| (r[0].clone(), (r[1].clone(), r[2].clone()))).collect();
    let expect = |who: &str, s: &str, n: &str| {
        assert_eq!(status.get(who), Some(&(s.to_string(), n.to_string())), "{who}: {status:?}");
    };
    expect(DAVE, "dormant", "1"); // read before the period, not in it
    expect(FRANK, "dormant", "2"); // never seen, holds two assignments
    expect(GINA, "dormant", "1");
    expect(IVAN, "new", "1");
    expect(JUDY, "new", "1");
    expect(GROUP, "group", "1");

    let reviews = pick(
        &csv_rows(&zip, "access_reviews"),
        &["name", "reviewers", "items", "decided", "completed_at", "state_at_pack"],
    );
    assert_eq!(reviews, strings(&[&["Q1 orders", &format!("Ann Admin ({ADMIN})"), "2", "1", "", "overdue"]]));
    let decisions = pick(
        &csv_rows(&zip, "review_decisions"),
        &["item_id", "decision", "decided_by_name", "decided_at", "justification"],
    );
    assert_eq!(
        decisions,
        strings(&[
            &["1", "Deny", "Ann Admin", "2025-03-04T09:00:00Z", "'=HYPERLINK(\"http://x\") not used since February"],
            &["2", "NotReviewed", "", "", ""],
        ])
    );

    // The manifest states the deadline the leavers were judged by, and the pack verifies.
    let verified = pack::verify(&zip, None).unwrap();
    assert!(verified.ok(), "{:?}", verified.problems);
    let manifest = verified.manifest.unwrap();
    let leavers_file =
        manifest.files.iter().find(|f| f.path.contains("/leavers_") && f.path.ends_with(".csv")).unwrap();
    assert_eq!(leavers_file.parameters.as_ref().unwrap().get("removal_hours"), Some(&json!(24)));

    // Made again later, after a grant of the period logged late and another inventory
    // (which finds most assignments gone), the pack gives the same rows.
    let late = activity(
        "2025-03-04T10:00:00Z",
        &data_id(9),
        "MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/SQLROLEASSIGNMENTS/WRITE",
        "Write",
        (ADMIN, "admin@contoso.com", "203.0.113.7"),
        9,
        Some(data_body(DAVE, CONTRIBUTOR, "")),
    );
    let lines: Vec<String> = late.iter().map(Value::to_string).collect();
    let path = db.file("late.ndjson", lines.join("\n") + "\n");
    assert!(db.ingest(&[path]).failed.is_empty());
    let (detector, _) = Detector::open(&db.store, &DetectionConfig::default()).unwrap();
    detector.evaluate_after_commit(&db.store).unwrap();
    let logged: i64 =
        db.value(&format!("SELECT count(*) FROM control_operations WHERE resource_id = '{}'", data_id(9)));
    assert_eq!(logged, 1, "the late record is typed");
    let mut third = snapshot("2025-03-04T23:00:00Z", vec![data(4, DAVE, READER, "/dbs/orders")], Vec::new());
    third.taken_at = Utc::now();
    history::record(&db.store, &third).unwrap();
    let rerun = pack::rerun(&db.store, &manifest, None).unwrap();
    let changed: Vec<&str> = rerun.iter().filter(|r| !r.same).map(|r| r.path.as_str()).collect();
    assert!(changed.is_empty(), "populations changed by an inventory run after the pack was made: {changed:?}");
}

#[test]
fn a_leavers_list_is_data_and_a_bad_line_is_refused_by_line() {
    let db = TestDb::new();
    // SQL and formulas in fields: stored as written, bound, never run.
    let list = "upn,name,left_at\n\
                o'brien'--@contoso.com,\"Robert'); DROP TABLE leavers_listed;--\",2025-03-03\n\
                formula@contoso.com,=HYPERLINK(\"http://evil\"),2025-03-04T08:00:00Z\n";
    let imported = leaver_lists::import(&db.store, "abuse.csv", list.as_bytes(), "tester").unwrap();
    assert_eq!(imported.rows, 2);
    assert_eq!(
        db.rows("SELECT upn, name FROM leavers_listed ORDER BY line"),
        strings(&[
            &["o'brien'--@contoso.com", "Robert'); DROP TABLE leavers_listed;--"],
            &["formula@contoso.com", "=HYPERLINK(\"http://evil\")"],
        ])
    );
    assert_eq!(
        db.rows("SELECT source, name FROM leavers ORDER BY left_at"),
        strings(&[
            &["list:abuse.csv", "Robert'); DROP TABLE leavers_listed;--"],
            &["list:abuse.csv", "=HYPERLINK(\"http://evil\")"],
        ])
    );

    // The command line: a malformed date names the file and the line, and stores nothing.
    let bad = db.file("bad.csv", "principal_id,left_at\na11ce000-0000-4000-8000-000000000001,2025-03-03\nb0b00000-0000-4000-8000-000000000002,03/04/2025\n");
    let path = db.dir.path().join("test.duckdb");
    drop(db.store);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args(["leavers", "import", "--db", path.to_str().unwrap(), bad.to_str().unwrap()])
        .env("TOKENTRAIL_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("{}: line 3: date \"03/04/2025\"", bad.display())), "{stderr}");
    let good = bad.with_file_name("good.csv");
    std::fs::write(&good, "Email;Termination Date\nzoe@contoso.com;2025-03-04\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args(["leavers", "import", "--db", path.to_str().unwrap(), good.to_str().unwrap()])
        .env("TOKENTRAIL_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 leavers"), "{}", String::from_utf8_lossy(&out.stdout));
    let db = TestDb::open_in(db.dir, "test.duckdb");
    assert_eq!(db.count("leavers_listed"), 3, "the refused file stored nothing");
    assert_eq!(db.count("leaver_lists"), 2);

    // The API: Admin only, 400 naming the line, 413 over the bound, who loaded it recorded.
    let store = Arc::new(db.store);
    let issuer = TestIssuer::start();
    let (_state, base) = crate::common::app::serve(store.clone(), &issuer, Vec::new());
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let post = |body: Vec<u8>, role: Role| {
        let mut response = agent
            .post(&format!("{base}/api/leavers?file_name=hr-march.csv"))
            .header("Authorization", format!("Bearer {}", issuer.token(&[role])))
            .header("Content-Type", "text/csv")
            .send(&body[..])
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap_or_default())
    };
    let (status, body) = post(b"upn,left_at\nann@contoso.com,2025-03-04\n".to_vec(), Role::Auditor);
    assert_eq!(status, 403, "{body}");
    let (status, body) = {
        let mut response = agent
            .post(&format!("{base}/api/leavers"))
            .header("Authorization", format!("Bearer {}", issuer.token(&[Role::Admin])))
            .header("Content-Type", "application/json")
            .send(&b"{}"[..])
            .unwrap();
        (response.status().as_u16(), response.body_mut().read_to_string().unwrap_or_default())
    };
    assert_eq!(status, 415, "{body}");
    let (status, body) =
        post(b"upn,left_at\nann@contoso.com,2025-03-04\nbo@contoso.com,yesterday\n".to_vec(), Role::Admin);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("hr-march.csv: line 3: date \\\"yesterday\\\""), "{body}");
    let mut huge = b"upn,left_at\n".to_vec();
    while huge.len() <= leaver_lists::MAX_BYTES {
        huge.extend_from_slice(b"ann@contoso.com,2025-03-04\n");
    }
    // The service reads and drops the rest of an oversized body before it answers, so a
    // client that sends the whole body first reads the 413 (not a reset connection), every time.
    for _ in 0..3 {
        let sent = agent
            .post(&format!("{base}/api/leavers?file_name=hr-march.csv"))
            .header("Authorization", format!("Bearer {}", issuer.token(&[Role::Admin])))
            .header("Content-Type", "text/csv")
            .send(&huge[..]);
        let mut response = sent.expect("the service answered the oversized list, not a reset");
        let body = response.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(response.status().as_u16(), 413, "{body}");
        assert!(body.contains("larger than 16 MiB"), "{body}");
    }
    let (status, body) = post(b"upn,left_at\nann@contoso.com,2025-03-04\n".to_vec(), Role::Admin);
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["rows"], 1);
    let conn = store.connection().unwrap();
    let (file, by): (String, String) = conn
        .query_row("SELECT file_name, loaded_by FROM leaver_lists ORDER BY list_id DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(file, "hr-march.csv");
    assert!(by.starts_with("Test User (oid "), "{by}");
}
