//! Control-plane and directory changes: Activity log and Entra ID AuditLogs records land
//! typed (`control_changes`, `directory_changes`), nothing is lost, a second ingest adds
//! nothing, and each rule on them fires on its attack and stays quiet on the benign twin.

use crate::common::TestDb;
use crate::rule_cases::{Case, at, user_id};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tokentrail::rules::rule::ParamValue;
use tokentrail::rules::{DetectionConfig, Detector};

const FIXTURE: &str = "tests/fixtures/changes/activity_and_audit.ndjson";
const ALICE: &str = "1f0c6f2e-3b7d-4f1a-9a51-2c8e7d6b5a41";
const BOB: &str = "6a2d9c1b-8e4f-4b3a-a7c2-5d1e0f9b8c72";

fn absorb(db: &TestDb) {
    let (detector, problems) = Detector::open(&db.store, &DetectionConfig::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let evaluation = detector.evaluate_after_commit(&db.store).unwrap();
    assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
}

#[test]
fn every_operation_lands_typed_and_nothing_is_lost() {
    let db = TestDb::new();
    let fixture = std::path::PathBuf::from(FIXTURE);
    let lines = std::fs::read_to_string(&fixture).unwrap().lines().count() as i64;
    db.ingest(&[fixture]);
    absorb(&db);
    assert_eq!(db.count("quarantine"), 0);
    assert_eq!(db.count("raw_events"), lines, "every record is kept whole");
    let typed = db.count("control_changes") + db.count("directory_changes");
    assert_eq!(typed, lines, "every record of the fixture is typed");
    // each typed row points at its own raw record
    let unmatched: i64 = db.value(
        "SELECT count(*) FROM (SELECT raw_row FROM control_changes UNION ALL SELECT raw_row FROM directory_changes) t
         WHERE raw_row NOT IN (SELECT rowid FROM raw_events)",
    );
    assert_eq!(unmatched, 0);
    let kinds = db.rows("SELECT DISTINCT kind FROM control_changes ORDER BY 1");
    let kinds: Vec<&str> = kinds.iter().map(|r| r[0].as_str()).collect();
    for kind in [
        "list_keys",
        "read_only_keys",
        "list_connection_strings",
        "regenerate_key",
        "data_role_assignment_write",
        "data_role_assignment_delete",
        "data_role_definition_write",
        "role_assignment_write",
        "role_assignment_delete",
        "account_write",
        "diagnostic_setting_write",
        "diagnostic_setting_delete",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    // The data-plane grant, from upper-case names and a body in a JSON string; its Success
    // event has no body, so the operation takes it from its Start event.
    let grant = db.rows(
        "SELECT caller_id, caller_name, caller_ip, target_principal_id, role_definition_id, scope, account
         FROM control_operations WHERE kind = 'data_role_assignment_write'",
    );
    assert_eq!(grant.len(), 1, "one finished operation: {grant:?}");
    assert_eq!(grant[0][0], ALICE);
    assert_eq!(grant[0][1], "alice@contoso.com");
    assert_eq!(grant[0][2], "203.0.113.7");
    assert_eq!(grant[0][3], BOB, "the principal id is lower-cased");
    assert_eq!(grant[0][4], "00000000-0000-0000-0000-000000000002");
    assert!(grant[0][5].ends_with("/databaseaccounts/contoso-orders/dbs/orders"), "{}", grant[0][5]);
    assert_eq!(grant[0][6], "contoso-orders");
    // PascalCase body of an Azure role assignment
    let azure = db.rows(
        "SELECT target_principal_id, target_principal_type, role_definition_id FROM control_changes
         WHERE kind = 'role_assignment_write'",
    );
    assert_eq!(azure, vec![vec![BOB.to_string(), "User".into(), "fbdf93bf-df7d-467e-a4d2-9458aa1360c8".into()]]);
    let settings = db.rows(
        "SELECT coalesce(disable_local_auth::VARCHAR, ''), coalesce(array_to_string(disabled_logs, ','), '') FROM control_changes
         WHERE kind IN ('account_write', 'diagnostic_setting_write') ORDER BY kind",
    );
    assert_eq!(
        settings,
        vec![vec!["false".to_string(), String::new()], vec![String::new(), "DataPlaneRequests".into()]]
    );
    // Directory changes: who did it, to whom, and the values decoded from their JSON strings.
    let membership = db.rows(
        "SELECT kind, actor_id, actor_kind, target_id, group_id FROM directory_changes WHERE kind LIKE 'group_member%' ORDER BY time",
    );
    let group = "4c3b2a19-0f8e-4d7c-b6a5-948372615abc";
    assert_eq!(membership[0], vec!["group_member_added", ALICE, "user", BOB, group]);
    assert_eq!(membership[1], vec!["group_member_removed", ALICE, "user", BOB, group]);
    let credentials = db.rows(
        "SELECT kind, actor_kind, actor_name, target_type, target_app_id, modified->>'$[0].name' FROM directory_changes
         WHERE kind LIKE '%credentials_changed' ORDER BY time",
    );
    assert_eq!(credentials.len(), 2);
    assert_eq!(
        credentials[0][..5],
        [
            "sp_credentials_changed",
            "user",
            "alice@contoso.com",
            "ServicePrincipal",
            "0a1b2c3d-4e5f-4607-8819-2a3b4c5d6e7f"
        ]
    );
    assert_eq!(credentials[1][..4], ["app_credentials_changed", "app", "kv-rotation", "Application"]);
    assert_eq!(credentials[0][5], "KeyDescription");
    let consent: String = db.value("SELECT modified->>'$[0].new' FROM directory_changes WHERE kind = 'consent'");
    assert_eq!(consent, "True", "the JSON-encoded value is decoded");
    // The principal's page reads both logs through one view.
    let made: i64 = db.value(&format!("SELECT count(*) FROM identity_changes WHERE actor_id = '{ALICE}'"));
    let received = db.rows(&format!("SELECT kind FROM identity_changes WHERE target_id = '{BOB}' ORDER BY time"));
    assert!(made >= 10, "{made}");
    let received: Vec<&str> = received.iter().map(|r| r[0].as_str()).collect();
    assert!(
        received.contains(&"data_role_assignment_write") && received.contains(&"group_member_added"),
        "{received:?}"
    );
}

#[test]
fn ingesting_the_same_file_again_adds_nothing() {
    let db = TestDb::new();
    let fixture = std::path::PathBuf::from(FIXTURE);
    db.ingest(std::slice::from_ref(&fixture));
    absorb(&db);
    let before = (db.count("raw_events"), db.count("control_changes"), db.count("directory_changes"));
    db.ingest(std::slice::from_ref(&fixture));
    absorb(&db);
    let after = (db.count("raw_events"), db.count("control_changes"), db.count("directory_changes"));
    assert_eq!(before, after);
    assert!(before.1 > 0 && before.2 > 0);
}

#[test]
fn records_of_a_change_category_in_another_shape_stay_raw_and_hostile_values_stay_data() {
    let db = TestDb::new();
    let lines = [
        // category Write, but neither an ARM resource nor an operation: not the Activity log
        json!({"time": "2026-11-02T10:00:00Z", "category": "Write", "operationName": "something"}),
        // an Activity log record whose body is not JSON and whose names are hostile text
        json!({"time": "2026-11-02T10:00:00Z", "category": "Action",
               "resourceId": "/subscriptions/x/resourceGroups/r'; DROP TABLE findings; --/providers/Microsoft.DocumentDB/databaseAccounts/<script>",
               "operationName": "Microsoft.DocumentDB/databaseAccounts/listKeys/action", "resultType": "Success",
               "identity": {"claims": {"name": "<img src=x onerror=alert(1)>"}},
               "properties": {"eventCategory": "Administrative", "requestbody": "{not json"}}),
        // an audit record without an operation
        json!({"time": "2026-11-02T10:00:00Z", "category": "AuditLogs", "properties": {}}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let path = db.file("odd.ndjson", text);
    db.ingest(&[path]);
    absorb(&db);
    assert_eq!(db.count("raw_events"), 3, "all kept whole");
    assert_eq!(db.count("quarantine"), 0);
    let typed = db.rows("SELECT account, caller_name, kind FROM control_changes");
    assert_eq!(typed, vec![vec!["<script>".to_string(), "<img src=x onerror=alert(1)>".into(), "list_keys".into()]]);
    assert_eq!(db.count("directory_changes"), 0);
    // stored as data, bound, never run: the resource id keeps its quote and the table is there
    let resource: String = db.value("SELECT resource_id FROM control_changes");
    assert!(resource.contains("r'; drop table findings; --"), "{resource}");
    assert_eq!(db.count("findings"), 0);
}

// ---- the rules ----

/// An Activity log event of `operation` on `resource` by `caller` (a user id of the cases).
#[allow(clippy::too_many_arguments)]
fn activity(
    case: &mut Case,
    operation: &str,
    resource: &str,
    result: &str,
    caller: &str,
    ip: &str,
    time: DateTime<Utc>,
    body: Option<Value>,
) -> Value {
    let correlation = case.id();
    let category = if operation.ends_with("/WRITE") {
        "Write"
    } else if operation.ends_with("/DELETE") {
        "Delete"
    } else {
        "Action"
    };
    let mut properties = json!({"eventCategory": "Administrative", "entity": resource});
    if let Some(body) = body {
        properties["requestbody"] = json!(body.to_string());
    }
    json!({
        "time": time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "resourceId": resource, "operationName": operation, "category": category,
        "resultType": result, "callerIpAddress": ip, "correlationId": correlation, "level": "Information",
        "identity": {"claims": {"http://schemas.microsoft.com/identity/claims/objectidentifier": caller, "name": format!("caller {caller}")}},
        "properties": properties,
    })
}

/// A finished operation: its Start event (with the body) and its Success event a second later.
#[allow(clippy::too_many_arguments)]
fn operation(
    case: &mut Case,
    operation: &str,
    resource: &str,
    caller: &str,
    ip: &str,
    time: DateTime<Utc>,
    body: Option<Value>,
) {
    let start = activity(case, operation, resource, "Start", caller, ip, time, body);
    let mut success = start.clone();
    success["resultType"] = json!("Success");
    success["time"] = json!((time + Duration::seconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    success["properties"].as_object_mut().unwrap().remove("requestbody");
    case.records.push(start);
    case.records.push(success);
}

/// The Cosmos DB account of the cases' requests: its ARM id and name.
fn account(case: &Case) -> (String, String) {
    let id = case.template("DataPlaneRequests")["resourceId"].as_str().unwrap().to_string();
    let name = id.rsplit('/').next().unwrap().to_ascii_lowercase();
    (id, name)
}

fn findings_with(case: &Case, rule: &str, params: &[(&str, &str)]) -> Vec<(String, String)> {
    if params.is_empty() {
        return case.raised(rule);
    }
    let values: BTreeMap<String, ParamValue> =
        params.iter().map(|(k, v)| ((*k).to_string(), ParamValue::parse(v).unwrap())).collect();
    let config = DetectionConfig { params: BTreeMap::from([(rule.to_string(), values)]), ..DetectionConfig::default() };
    case.raised_with(&config, rule)
}

const ATTACKER: &str = "185.181.20.77";

#[test]
fn keys_listed_then_used_by_a_new_client_names_who_listed_them() {
    let mut case = Case::new();
    let (resource, name) = account(&case);
    let t = at("2025-03-10T10:00:00Z");
    // a legacy key client, learned in the first days
    for day in 0..8 {
        case.key_request("52.1.1.1", at("2025-03-03T09:00:00Z") + Duration::days(day));
    }
    operation(
        &mut case,
        "MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/LISTKEYS/ACTION",
        &resource,
        &user_id(5),
        ATTACKER,
        t,
        None,
    );
    for minute in 0..5 {
        case.key_request(ATTACKER, t + Duration::minutes(20 + minute));
    }
    let raised = case.raised("listkeys_then_key_access");
    assert_eq!(raised, vec![(user_id(5), format!("account={name} ip={ATTACKER}"))]);
    let evidence = case.db.rows(
        "SELECT DISTINCT evidence_table FROM finding_evidence WHERE rule_id = 'listkeys_then_key_access' ORDER BY 1",
    );
    assert_eq!(evidence, vec![vec!["control_changes".to_string()], vec!["cosmos_requests".to_string()]]);
}

#[test]
fn a_rotation_job_listing_keys_does_not_name_a_client_first_seen_days_later_or_an_old_one() {
    let mut case = Case::new();
    let (resource, _) = account(&case);
    let t = at("2025-03-10T10:00:00Z");
    for day in 0..10 {
        case.key_request("52.1.1.1", at("2025-03-03T09:00:00Z") + Duration::days(day));
    }
    operation(
        &mut case,
        "MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/LISTKEYS/ACTION",
        &resource,
        &user_id(6),
        "20.42.7.9",
        t,
        None,
    );
    // a new client two days later: not the listing's doing (key_auth_access raises it, unnamed)
    case.key_request("52.9.9.9", t + Duration::days(2));
    assert_eq!(case.raised("listkeys_then_key_access"), vec![]);
    // and with the rotation identity listed, a client right after its listing is not named either
    let mut case = Case::new();
    for day in 0..10 {
        case.key_request("52.1.1.1", at("2025-03-03T09:00:00Z") + Duration::days(day));
    }
    operation(
        &mut case,
        "MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/LISTKEYS/ACTION",
        &resource,
        &user_id(6),
        "20.42.7.9",
        t,
        None,
    );
    case.key_request("52.9.9.9", t + Duration::minutes(30));
    let rotation = user_id(6);
    assert_eq!(findings_with(&case, "listkeys_then_key_access", &[("rotation_ids", &format!("'{rotation}'"))]), vec![]);
    assert_eq!(findings_with(&case, "listkeys_then_key_access", &[]).len(), 1, "without the setting it is named");
}

fn grant(case: &mut Case, resource: &str, granter: &str, grantee: &str, time: DateTime<Utc>) {
    let assignment = format!("{resource}/SQLROLEASSIGNMENTS/{}", case.id().to_uppercase());
    let body = json!({"properties": {
        "roleDefinitionId": format!("{resource}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002"),
        "scope": resource, "principalId": grantee.to_uppercase()}});
    operation(
        case,
        "MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/SQLROLEASSIGNMENTS/WRITE",
        &assignment,
        granter,
        "73.2.2.2",
        time,
        Some(body),
    );
}

#[test]
fn a_role_granted_at_night_then_used_is_raised_for_the_grantee_and_a_tuesday_grant_is_not() {
    let mut case = Case::new();
    let (resource, name) = account(&case);
    let saturday_night = at("2025-03-08T02:10:00Z");
    grant(&mut case, &resource, &user_id(1), &user_id(7), saturday_night);
    case.user_sign_in(7, "98.5.5.5", saturday_night + Duration::minutes(15), 0);
    case.request(7, "98.5.5.5", saturday_night + Duration::minutes(20));
    let tuesday = at("2025-03-11T10:00:00Z");
    grant(&mut case, &resource, &user_id(1), &user_id(8), tuesday);
    case.user_sign_in(8, "98.5.5.6", tuesday + Duration::minutes(15), 0);
    case.request(8, "98.5.5.6", tuesday + Duration::minutes(20));
    case.user_sign_in(90, "99.61.1.1", tuesday + Duration::hours(2), 0);
    assert_eq!(case.raised("role_granted_then_used"), vec![(user_id(7), format!("account={name}"))]);
}

#[test]
fn a_grant_in_hours_by_someone_outside_the_admin_group_is_raised_and_by_a_member_is_not() {
    let mut case = Case::new();
    let (resource, name) = account(&case);
    let group = "4c3b2a19-0f8e-4d7c-b6a5-948372615abc";
    // user 1 joins the admin group (AuditLogs), user 2 never does
    let mut join: Value =
        serde_json::from_str(std::fs::read_to_string(FIXTURE).unwrap().lines().nth(14).unwrap()).unwrap();
    assert_eq!(join["operationName"], "Add member to group");
    join["time"] = json!("2025-03-03T09:00:00Z");
    join["properties"]["activityDateTime"] = json!("2025-03-03T09:00:00Z");
    join["properties"]["targetResources"][0]["id"] = json!(user_id(1));
    case.records.push(join);
    let tuesday = at("2025-03-11T10:00:00Z");
    grant(&mut case, &resource, &user_id(1), &user_id(7), tuesday);
    grant(&mut case, &resource, &user_id(2), &user_id(8), tuesday + Duration::minutes(5));
    for user in [7, 8] {
        case.user_sign_in(user, "98.5.5.5", tuesday + Duration::minutes(15), 0);
        case.request(user, "98.5.5.5", tuesday + Duration::minutes(20));
    }
    case.user_sign_in(90, "99.61.1.1", tuesday + Duration::hours(2), 0);
    let raised = findings_with(&case, "role_granted_then_used", &[("admin_ids", &format!("'{group}'"))]);
    assert_eq!(raised, vec![(user_id(8), format!("account={name}"))]);
}

fn account_write(case: &mut Case, resource: &str, caller: &str, time: DateTime<Utc>, disable_local_auth: bool) {
    let body = json!({"location": "West Europe", "properties": {"disableLocalAuth": disable_local_auth}});
    operation(case, "MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/WRITE", resource, caller, "73.2.2.2", time, Some(body));
}

#[test]
fn local_auth_turned_back_on_is_raised_and_restating_its_value_is_not() {
    let mut case = Case::new();
    let (resource, name) = account(&case);
    let t = at("2025-03-04T10:00:00Z");
    account_write(&mut case, &resource, &user_id(1), t, false);
    account_write(&mut case, &resource, &user_id(1), t + Duration::days(1), false);
    account_write(&mut case, &resource, &user_id(1), t + Duration::days(2), true);
    account_write(&mut case, &resource, &user_id(1), t + Duration::days(3), true);
    assert_eq!(case.raised("local_auth_reenabled"), vec![], "false, false, true, true: never turned back on");
    account_write(&mut case, &resource, &user_id(4), t + Duration::days(4), false);
    assert_eq!(case.raised("local_auth_reenabled"), vec![(user_id(4), format!("account={name}"))]);
}

fn credential_added(case: &mut Case, by: &str, sp: &str, time: DateTime<Utc>) {
    let mut record: Value =
        serde_json::from_str(std::fs::read_to_string(FIXTURE).unwrap().lines().nth(17).unwrap()).unwrap();
    assert_eq!(record["operationName"], "Add service principal credentials");
    let stamp = time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    record["time"] = json!(stamp);
    record["properties"]["activityDateTime"] = json!(stamp);
    record["properties"]["initiatedBy"]["user"]["id"] = json!(by);
    record["properties"]["targetResources"][0]["id"] = json!(sp);
    case.records.push(record);
}

#[test]
fn a_credential_added_then_used_from_a_new_network_is_raised_and_a_rotation_used_at_home_is_not() {
    let app_home = "20.121.4.5";
    let build = |new_address: &str| {
        let mut case = Case::new();
        let t = at("2025-03-03T09:00:00Z");
        for day in 0..10 {
            case.app_sign_in(3, app_home, t + Duration::days(day), 0);
            case.request(1003, app_home, t + Duration::days(day) + Duration::minutes(1));
        }
        let added = at("2025-03-12T11:00:00Z");
        credential_added(&mut case, &user_id(2), &user_id(1003), added);
        case.app_sign_in(3, new_address, added + Duration::minutes(20), 0);
        case.request(1003, new_address, added + Duration::minutes(25));
        case
    };
    let raised = build("167.99.40.3").raised("sp_credential_added_then_data_access");
    assert_eq!(raised, vec![(user_id(1003), String::new())]);
    // the same rotation, the app signing in where it runs (another address of its /24)
    assert_eq!(build("20.121.4.9").raised("sp_credential_added_then_data_access"), vec![]);
}

#[test]
fn a_deleted_diagnostic_setting_or_a_watched_log_turned_off_is_raised_and_other_logs_off_are_not() {
    let mut case = Case::new();
    let (resource, name) = account(&case);
    let setting = format!("{resource}/PROVIDERS/MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/TO-EVENTHUB");
    let t = at("2025-03-04T10:00:00Z");
    let body = |category: &str| json!({"properties": {"logs": [{"category": category, "enabled": false}]}});
    operation(
        &mut case,
        "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE",
        &setting,
        &user_id(1),
        "73.2.2.2",
        t,
        Some(body("QueryRuntimeStatistics")),
    );
    assert_eq!(case.raised("diagnostic_setting_removed"), vec![], "a log TokenTrail does not read");
    operation(
        &mut case,
        "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE",
        &setting,
        &user_id(2),
        "73.2.2.2",
        t + Duration::hours(1),
        Some(body("DataPlaneRequests")),
    );
    operation(
        &mut case,
        "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE",
        &setting,
        &user_id(3),
        "73.2.2.2",
        t + Duration::hours(2),
        None,
    );
    let raised = case.raised("diagnostic_setting_removed");
    let entity = format!("account={name}");
    assert_eq!(raised, vec![(user_id(2), entity.clone()), (user_id(3), entity)]);
}

#[test]
fn a_look_at_the_read_only_keys_explains_only_a_client_using_a_read_only_key() {
    let build = |key: &str| {
        let mut case = Case::new();
        let (resource, _) = account(&case);
        for day in 0..8 {
            case.key_request("52.1.1.1", at("2025-03-03T09:00:00Z") + Duration::days(day));
        }
        let t = at("2025-03-11T10:00:00Z");
        operation(
            &mut case,
            "MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/READONLYKEYS/ACTION",
            &resource,
            &user_id(5),
            "73.2.2.2",
            t,
            None,
        );
        case.key_request(ATTACKER, t + Duration::minutes(30));
        let r = case.records.last_mut().unwrap();
        r["properties"]["authTokenType"] = json!(key);
        r["properties"]["keyType"] = json!(key);
        case
    };
    assert_eq!(build("PrimaryMasterKey").raised("listkeys_then_key_access"), vec![], "a read-write key");
    let (_, name) = account(&build("x"));
    assert_eq!(
        build("PrimaryReadonlyMasterKey").raised("listkeys_then_key_access"),
        vec![(user_id(5), format!("account={name} ip={ATTACKER}"))]
    );
}
