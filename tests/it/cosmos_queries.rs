//! Cosmos DB `QueryRuntimeStatistics` and `ControlPlaneRequests` typed into `cosmos_queries`
//! and `cosmos_control_requests` (migration 21) from the shapes Microsoft documents
//! (`tests/fixtures/cosmos_queries/README.md`), each field checked; a query beside its request
//! and the sign-in behind it (`cosmos_query_requests`); the `cosmos_query_injection` rule on
//! injection shapes, fuzzing, and on benign parameterised, obfuscated and literal-laden queries;
//! the console's grants of the new tables; and the generator's `query_injection` scenario caught
//! in a realistic tenant's traffic.

use crate::common::TestDb;
use crate::rule_cases::{Case, MONDAY_8AM, at, user_id};

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tokentrail::rules::{DetectionConfig, Detector};
use tokentrail::synth::{Generator, Profile, Scenario, Tenant};

const QUERIES: &str = "tests/fixtures/cosmos_queries/query_runtime_statistics.ndjson";
const CONTROL: &str = "tests/fixtures/cosmos_queries/control_plane_requests.ndjson";
const RULE: &str = "cosmos_query_injection";

fn absorb(db: &TestDb) {
    let (detector, problems) = Detector::open(&db.store, &DetectionConfig::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let evaluation = detector.evaluate_after_commit(&db.store).unwrap();
    assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter().map(|r| r.iter().map(|v| v.to_string()).collect()).collect()
}

#[test]
fn query_runtime_statistics_land_typed_in_every_documented_shape() {
    let db = TestDb::new();
    db.ingest(&[QUERIES.into()]);
    absorb(&db);
    assert_eq!(db.count("quarantine"), 0);
    assert_eq!(db.count("raw_events"), 3);
    let rows = db.rows(
        "SELECT time::VARCHAR, account, subscription_id, resource_group, database_name, collection_name, activity_id,
                correlated_activity_id, partition_key_range_id, query_text, parameters::VARCHAR,
                (raw_row IN (SELECT rowid FROM raw_events))::VARCHAR, (batch_id = (SELECT max(batch_id) FROM ingest_batches))::VARCHAR
         FROM cosmos_queries ORDER BY time",
    );
    let sub = "5c9d2a1e-0b7f-4a51-9d3c-7e2f1a8b6c40";
    assert_eq!(
        rows,
        strings(&[
            // diagnostic settings: the query and its parameters in a JSON string
            &[
                "2026-11-02 10:05:01.123456+00",
                "contoso-orders",
                sub,
                "rg-data",
                "sales",
                "orders",
                "3f2c1a9e-5b7d-4e21-9c3a-1d2e3f4a5b6c",
                "NULL",
                "0",
                "SELECT * FROM c WHERE c.customerId = @customerId",
                r#"[{"name":"@customerId","value":"c-18427"}]"#,
                "true",
                "true",
            ],
            // PascalCase keys, obfuscated text, the correlated activity id
            &[
                "2026-11-02 10:05:30+00",
                "contoso-orders",
                sub,
                "rg-data",
                "sales",
                "customers",
                "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
                "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
                "3",
                "SELECT c.id FROM c WHERE c.region = '__'",
                "[]",
                "true",
                "true",
            ],
            // AzureDiagnostics: flat, type-suffixed names, plain query text
            &[
                "2026-11-02 10:06:00+00",
                "contoso-orders",
                sub,
                "rg-data",
                "sales",
                "orders",
                "5d6e7f80-9a1b-4c2d-8e3f-405162738495",
                "NULL",
                "1",
                "SELECT * FROM c WHERE c.status = 'open'",
                "NULL",
                "true",
                "true",
            ],
        ])
    );
    // Typed once: another pass adds nothing.
    absorb(&db);
    assert_eq!(db.count("cosmos_queries"), 3);
}

#[test]
fn control_plane_requests_land_typed_with_their_security_settings() {
    let db = TestDb::new();
    db.ingest(&[CONTROL.into()]);
    absorb(&db);
    assert_eq!(db.count("quarantine"), 0);
    assert_eq!(db.count("raw_events"), 5);
    let rows = db.rows(
        "SELECT time::VARCHAR, kind, operation, operation_type, account, subscription_id, resource_group, api_kind,
                resource_type, resource_uri, activity_id, http_method, http_status::VARCHAR, result, caller_id, caller_ip,
                role_assignment_principal_id, role_definition_id, public_network_access, ip_rules,
                virtual_network_filter::VARCHAR, disable_local_auth::VARCHAR,
                disable_key_based_metadata_write_access::VARCHAR, key_kind, full_text_query::VARCHAR,
                (raw_row IN (SELECT rowid FROM raw_events))::VARCHAR, (resource_details IS NOT NULL)::VARCHAR
         FROM cosmos_control_requests ORDER BY time",
    );
    let sub = "5c9d2a1e-0b7f-4a51-9d3c-7e2f1a8b6c40";
    let uri = "/subscriptions/5c9d2a1e-0b7f-4a51-9d3c-7e2f1a8b6c40/resourceGroups/rg-data/providers/Microsoft.DocumentDB/databaseAccounts/contoso-orders";
    let activity = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f";
    assert_eq!(
        rows,
        strings(&[
            // the account opened to every address: the body in a JSON string
            &[
                "2026-11-02 11:00:00+00",
                "account_update",
                "AccountUpdateStart",
                "Update",
                "contoso-orders",
                sub,
                "rg-data",
                "Sql",
                "DatabaseAccounts",
                uri,
                activity,
                "PATCH",
                "202",
                "Success",
                "NULL",
                "203.0.113.7",
                "NULL",
                "NULL",
                "Enabled",
                "0.0.0.0,198.51.100.0/24",
                "false",
                "false",
                "false",
                "NULL",
                "NULL",
                "true",
                "true",
            ],
            // Log Analytics' CDBControlPlaneRequests columns
            &[
                "2026-11-02 11:02:00+00",
                "account_update",
                "AccountUpdateComplete",
                "NULL",
                "contoso-orders",
                sub,
                "rg-data",
                "Sql",
                "NULL",
                "NULL",
                activity,
                "PATCH",
                "200",
                "Success",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "Disabled",
                "104.42.195.92,40.76.54.131",
                "true",
                "NULL",
                "NULL",
                "NULL",
                "true",
                "true",
                "false",
            ],
            // AzureDiagnostics, with Microsoft's own unquoted resourceDetails example
            &[
                "2026-11-02 11:10:00+00",
                "resource_update",
                "SqlContainersUpdate",
                "Update",
                "contoso-orders",
                sub,
                "rg-data",
                "Sql",
                "Containers",
                "NULL",
                "7e8f9a0b-1c2d-4e3f-8a4b-5c6d7e8f9a0b",
                "NULL",
                "200",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "true",
                "true",
            ],
            // a key rotation
            &[
                "2026-11-02 11:20:00+00",
                "key_rotation",
                "AccountRegenerateKeyStart",
                "NULL",
                "contoso-orders",
                sub,
                "rg-data",
                "Sql",
                "NULL",
                "NULL",
                "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d",
                "POST",
                "200",
                "Success",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "primary",
                "NULL",
                "true",
                "true",
            ],
            // a data-plane role assignment, with the caller's identity
            &[
                "2026-11-02 11:30:00+00",
                "role_assignment",
                "SqlRoleAssignmentCreate",
                "NULL",
                "contoso-orders",
                sub,
                "rg-data",
                "Sql",
                "SqlRoleAssignments",
                "NULL",
                "4b5c6d7e-8f9a-4b0c-9d1e-2f3a4b5c6d7e",
                "PUT",
                "200",
                "Success",
                "1f0c6f2e-3b7d-4f1a-9a51-2c8e7d6b5a41",
                "NULL",
                "6a2d9c1b-8e4f-4b3a-a7c2-5d1e0f9b8c72",
                "00000000-0000-0000-0000-000000000001",
                "NULL",
                "NULL",
                "NULL",
                "true",
                "NULL",
                "NULL",
                "NULL",
                "true",
                "false",
            ],
        ])
    );
    let unquoted: String =
        db.value("SELECT resource_details FROM cosmos_control_requests WHERE kind = 'resource_update'");
    assert!(unquoted.starts_with("{id:skewed,indexingPolicy:"), "kept as sent: {unquoted}");
}

/// A Query request of user `user` from `ip` (status `status`) and its QueryRuntimeStatistics
/// record with `text` (full text, as an account that enabled it logs it).
fn query(case: &mut Case, user: u32, ip: &str, t: DateTime<Utc>, text: &str, status: u16) {
    case.request(user, ip, t);
    let request = case.records.last_mut().expect("just pushed");
    request["operationName"] = json!("Query");
    request["properties"]["statusCode"] = json!(status.to_string());
    let activity = request["properties"]["activityId"].as_str().unwrap().to_uppercase();
    let (time, resource_id, db, coll) = (
        request["time"].clone(),
        request["resourceId"].clone(),
        request["properties"]["databaseName"].clone(),
        request["properties"]["collectionName"].clone(),
    );
    let querytext = json!({ "query": text, "parameters": [] }).to_string();
    case.records.push(json!({
        "time": time,
        "resourceId": resource_id,
        "category": "QueryRuntimeStatistics",
        "operationName": "Query",
        "properties": {"activityId": activity, "databasename": db, "collectionname": coll,
                       "partitionkeyrangeid": "0", "querytext": querytext},
    }));
}

const HOME: &str = "82.23.83.128";
const ATTACKER: &str = "185.181.20.33";

#[test]
fn a_query_sits_beside_its_request_and_the_sign_in_that_issued_its_token() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    case.user_sign_in(1, HOME, t, 0);
    query(&mut case, 1, HOME, t + Duration::minutes(3), "SELECT * FROM c WHERE c.id = @id", 200);
    // Sign-in logs have come in past the request (correlation waits for them).
    case.user_sign_in(90, "99.61.1.1", t + Duration::minutes(20), 0);
    case.findings();
    let rows = case.db.rows(
        "SELECT query_text, principal_id, client_ip, status_code::VARCHAR, operation, signin_ip, signin_time::VARCHAR,
                (request_row IS NOT NULL)::VARCHAR, (raw_row IN (SELECT rowid FROM raw_events))::VARCHAR
         FROM cosmos_query_requests",
    );
    assert_eq!(
        rows,
        vec![vec![
            "SELECT * FROM c WHERE c.id = @id".to_string(),
            user_id(1),
            HOME.into(),
            "200".into(),
            "Query".into(),
            HOME.into(),
            "2025-03-03 08:00:00+00".into(),
            "true".into(),
            "true".into(),
        ]]
    );
}

/// What a query of an application that pastes a customer id into its text becomes with `input`.
fn pasted(input: &str) -> String {
    format!("SELECT * FROM c WHERE c.customerId = '{input}' AND c.type = 'order'")
}

#[test]
fn injection_shapes_are_raised_per_caller_with_the_query_text() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    let shapes = [
        (pasted("' OR 1=1 --"), "tautology"),
        (pasted("x' OR 'a'='a"), "tautology"),
        (pasted("' OR true --"), "tautology"),
        (pasted("') OR ('a'='a"), "tautology"),
        (pasted("' UNION SELECT * FROM c --"), "stacked or unioned clause"),
        (pasted("'; DELETE FROM c --"), "stacked or unioned clause"),
        (pasted("x' --"), "comment cutting off a quote"),
        (pasted("' OR IS_DEFINED(c.id) --"), "comment cutting off a quote"),
        (pasted("x'"), "string left open"),
        (pasted("1' ORDER BY 1"), "string left open"),
    ];
    for (i, (text, _)) in shapes.iter().enumerate() {
        let user = i as u32 + 1;
        case.user_sign_in(user, HOME, t, 0);
        // Three of a shape within minutes, from a stolen token's address.
        for minute in [5, 7, 9] {
            query(&mut case, user, ATTACKER, t + Duration::minutes(minute), text, 200);
        }
    }
    case.user_sign_in(90, "99.61.1.1", t + Duration::minutes(30), 0);
    let raised = case.raised(RULE);
    let principals: Vec<String> = raised.iter().map(|(p, _)| p.clone()).collect();
    let expected: Vec<String> = (1..=shapes.len() as u32).map(user_id).collect();
    assert_eq!(principals, expected, "one finding per caller, every shape: {raised:?}");
    assert!(raised.iter().all(|(_, entity)| entity.starts_with("account=") && !entity.contains("ip=")), "{raised:?}");
    let details = case.db.rows(&format!(
        "SELECT principal_id, summary, count::VARCHAR FROM findings WHERE rule_id = '{RULE}' ORDER BY principal_id"
    ));
    for (row, (text, shape)) in details.iter().zip(&shapes) {
        let expected = format!(
            "{shape}: {text} by {} from {ATTACKER} (status 200); 3 injection-shaped queries within 10 minutes",
            row[0]
        );
        assert_eq!(row[1], expected);
        assert_eq!(row[2], "3", "every query is evidence");
    }
}

#[test]
fn fuzzing_that_leaves_strings_open_is_raised_and_a_broken_deployment_is_not() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    // A key-based client fuzzing: each input leaves the query malformed (400).
    for (i, input) in ["'", "')", "' AND", "'--", "'))", "x'y"].iter().enumerate() {
        let when = t + Duration::minutes(3) + Duration::seconds(15 * i as i64);
        query(&mut case, 0, "203.0.113.99", when, &pasted(input), 400);
        let request = case.records.len() - 2;
        case.records[request]["properties"]["aadPrincipalId"] = json!("");
        case.records[request]["properties"]["authTokenType"] = json!("PrimaryMasterKey");
    }
    // An application deployed with a broken query: malformed, hundreds of times, but no shape.
    case.user_sign_in(1, HOME, t, 0);
    for i in 0..40 {
        let text = format!("SELECT * FROM c WHERE c.customerId = 'c-{i}' ORDER BY");
        query(&mut case, 1, HOME, t + Duration::minutes(2) + Duration::seconds(10 * i), &text, 400);
    }
    case.user_sign_in(90, "99.61.1.1", t + Duration::minutes(30), 0);
    let raised = case.raised(RULE);
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].0, "-", "named by its account and address");
    assert!(raised[0].1.starts_with("account=") && raised[0].1.ends_with(" ip=203.0.113.99"), "{raised:?}");
    let shapes = case.db.rows(&format!(
        "SELECT split_part(detail, ':', 1), count(*)::VARCHAR FROM finding_evidence WHERE rule_id = '{RULE}' GROUP BY 1 ORDER BY 1"
    ));
    assert_eq!(shapes, strings(&[&["comment cutting off a quote", "1"], &["string left open", "5"]]));
}

#[test]
fn parameterised_obfuscated_and_literal_laden_queries_are_not_injection() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    let benign = [
        "SELECT * FROM c WHERE c.customerId = @customerId",
        "SELECT * FROM c WHERE c.id = @id OR c.legacyId = @id",
        "SELECT * FROM c WHERE c.a = @a OR @all = true",
        "SELECT * FROM c WHERE 1=1 AND c.region = @region",
        "SELECT * FROM c WHERE (c.deleted = false OR NOT IS_DEFINED(c.deleted)) AND c.pk = @pk",
        "SELECT * FROM c WHERE c.status = 'active' OR NOT IS_DEFINED(c.status)",
        "SELECT * FROM c WHERE c.type = 'order' AND IS_DEFINED(c.total)",
        "SELECT * FROM c WHERE c.sku = @sku -- catalogue lookup",
        // quotes, keywords and comment marks inside literals
        "SELECT * FROM c WHERE c.name = 'O\\'Brien Ltd' AND c.active = true",
        "SELECT * FROM c WHERE c.name = \"O'Brien Ltd\" OR c.alias = \"O'B\"",
        "SELECT * FROM c WHERE CONTAINS(c.text, 'where a = 1 or 1=1; drop table') OR c.t = 'union select'",
        "SELECT * FROM c WHERE c.note = 'don\\'t ship; hold -- call first' AND c.pk = @pk",
        "SELECT * FROM c WHERE c.path = 'C:\\\\' OR c.path = 'D:\\\\'",
        "SELECT VALUE COUNT(1) FROM c WHERE c.type = 'order' AND c.total > 100",
        "SELECT c.id, c['first-name'] FROM c WHERE c.score >= 10 OR c.vip = true",
        "SELECT * FROM c WHERE c.or = 1 OR c.color = 'red' OR c.origin = 'x'",
        // the .NET LINQ provider
        "SELECT VALUE root FROM root WHERE ((root[\"status\"] = \"open\") OR (root[\"status\"] = \"held\"))",
        "SELECT VALUE root FROM root WHERE ((root[\"status\"] = \"open\") OR true)",
        // Cosmos DB's default: literal values masked
        "SELECT * FROM c WHERE c.email = '__' OR c.alias = '__'",
        "SELECT c.id FROM c WHERE c.region = '__' AND c.total > 0",
        "SELECT * FROM c WHERE c.customerId = {str} OR c.id = {str}",
    ];
    case.user_sign_in(1, HOME, t, 0);
    for round in 0..4 {
        for (i, text) in benign.iter().enumerate() {
            let when = t + Duration::minutes(2 + round * 3) + Duration::seconds(5 * i as i64);
            query(&mut case, 1, HOME, when, text, 200);
        }
    }
    // Two injection-shaped queries, fewer than min_shaped: a developer's typos.
    case.user_sign_in(2, HOME, t, 0);
    query(&mut case, 2, HOME, t + Duration::minutes(4), "SELECT * FROM c WHERE c.name = 'O'Brien'", 400);
    query(&mut case, 2, HOME, t + Duration::minutes(5), "SELECT * FROM c WHERE c.x = '' OR 1=1", 200);
    case.user_sign_in(90, "99.61.1.1", t + Duration::minutes(30), 0);
    assert_eq!(case.raised(RULE), vec![]);
    assert_eq!(case.db.count("cosmos_queries"), 4 * benign.len() as i64 + 2);
}

#[test]
fn a_query_over_several_partition_ranges_counts_once() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    case.user_sign_in(1, HOME, t, 0);
    // Two injected queries, each logged for four partition key ranges: two executions, not eight.
    for minute in [3, 6] {
        query(&mut case, 1, ATTACKER, t + Duration::minutes(minute), &pasted("' OR 1=1 --"), 200);
        let stats = case.records.last().expect("just pushed").clone();
        for range in 1..4 {
            let mut more = stats.clone();
            more["properties"]["partitionkeyrangeid"] = json!(range.to_string());
            case.records.push(more);
        }
    }
    case.user_sign_in(90, "99.61.1.1", t + Duration::minutes(30), 0);
    assert_eq!(case.raised(RULE), vec![]);
    assert_eq!(case.db.count("cosmos_queries"), 8);
}

#[test]
fn the_console_lets_every_role_but_reviewers_read_the_new_tables() {
    use tokentrail::auth::Role;
    use tokentrail::http::api::console;
    let db = TestDb::new();
    db.ingest(&[QUERIES.into(), CONTROL.into()]);
    absorb(&db);
    for (table, rows) in [("cosmos_queries", 3), ("cosmos_control_requests", 5), ("cosmos_query_requests", 3)] {
        let sql = format!("SELECT count(*) AS n FROM {table}");
        for role in [Role::Responder, Role::Auditor, Role::Admin] {
            let result = console::execute(&db.store, &sql, &[role], 10)
                .unwrap_or_else(|e| panic!("{role:?} reads {table}: {e:?}"));
            assert_eq!(result.rows, vec![vec![json!(rows)]], "{role:?} {table}");
        }
        assert!(console::execute(&db.store, &sql, &[Role::Reviewer], 10).is_err(), "a Reviewer reads no logs: {table}");
    }
}

#[test]
fn the_query_injection_scenario_is_caught_in_a_realistic_tenant() {
    let generator = Generator::new(Tenant::new(7), 7).with_profile(Profile::Realistic);
    let from = at("2025-03-04T06:00:00Z");
    let mut events = generator.baseline(from, from + Duration::hours(8));
    let (attack, truth) = generator.scenario(Scenario::QueryInjection, from + Duration::hours(3));
    assert!(!attack.is_empty(), "the tenant has a principal on the account that logs full text");
    events.extend(attack);
    events.sort_by_key(|e| e.time);
    let benign = events.iter().filter(|e| e.category == "QueryRuntimeStatistics").count();
    let db = TestDb::new();
    let path = db.dir.path().join("tenant.ndjson");
    crate::common::write_ndjson(&path, &events);
    db.ingest(&[path]);
    absorb(&db);
    let typed = db.count("cosmos_queries") as usize;
    assert_eq!(typed, benign, "every QueryRuntimeStatistics record is typed");
    let obfuscated: i64 =
        db.value("SELECT count(*) FROM cosmos_queries WHERE query_text LIKE '%''\\_\\_''%' ESCAPE '\\'");
    let parameterised: i64 = db.value("SELECT count(*) FROM cosmos_queries WHERE query_text LIKE '%@%'");
    assert!(obfuscated > 10 && parameterised > 10, "benign traffic to judge: {obfuscated} obfuscated, {parameterised}");
    let joined: i64 = db.value("SELECT count(*) FROM cosmos_query_requests WHERE request_row IS NOT NULL");
    assert_eq!(joined as usize, typed, "every query has its request");
    let found = db.rows(&format!(
        "SELECT coalesce(principal_id, '-'), entity, epoch_us(first_seen)::VARCHAR, epoch_us(last_seen)::VARCHAR
         FROM findings WHERE rule_id = '{RULE}'"
    ));
    assert!(!found.is_empty(), "the scenario is caught: {}", truth.description);
    for f in &found {
        let micros = |s: &str| DateTime::from_timestamp_micros(s.parse().unwrap()).unwrap();
        let principal = (f[0] != "-").then_some(f[0].as_str());
        assert!(truth.explains(RULE, principal, &f[1], micros(&f[2]), micros(&f[3])), "a false finding: {f:?}");
    }
}
