//! The detections peers have that TokenTrail lacked (issue 26, section 3), each against the
//! attack it is for and the closest benign thing a real tenant does, in small cases built from
//! the generator's records (rule_cases.rs's `Case`).

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tokentrail::rules::{DetectionConfig, Detector};

use crate::rule_cases::{Case, HOME, MONDAY_8AM, account, at, user_id};

/// Ingests the case, evaluates the rules, then `rule` from its file in queries/ as a rules
/// folder (so it runs whether or not it is compiled in yet, and as written there); returns its
/// findings as (principal or "-", entity) and their summaries.
fn raised(case: &Case, rule: &str) -> Vec<(String, String)> {
    case.findings();
    let dir = case.db.dir.path().join("rules");
    std::fs::create_dir_all(&dir).unwrap();
    let file = format!("{rule}.sql");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("queries").join(&file), dir.join(&file)).unwrap();
    let config = DetectionConfig { rules_dir: Some(dir), ..DetectionConfig::default() };
    let (detector, problems) = Detector::open(&case.db.store, &config).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let evaluation = detector.evaluate_after_commit(&case.db.store).unwrap();
    assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
    let sql = format!(
        "SELECT coalesce(principal_id, '-'), entity FROM findings
         WHERE rule_id = '{rule}' AND status <> 'withdrawn' ORDER BY 1, 2"
    );
    case.db.rows(&sql).into_iter().map(|r| (r[0].clone(), r[1].clone())).collect()
}

/// The summaries (the latest evidence's detail) of `rule`'s findings, after [`raised`].
fn summaries(case: &Case, rule: &str) -> Vec<String> {
    let sql = format!("SELECT summary FROM findings WHERE rule_id = '{rule}' AND status <> 'withdrawn' ORDER BY 1");
    case.db.rows(&sql).into_iter().map(|r| r[0].clone()).collect()
}

/// The last record added: a request to adjust.
fn last(case: &mut Case) -> &mut Value {
    case.records.last_mut().expect("a record")
}

/// A request by user `user` of `operation` on a resource of `kind` (`path` its resource id).
fn resource_request(
    case: &mut Case,
    user: u32,
    time: DateTime<Utc>,
    operation: &str,
    kind: &str,
    path: &str,
    status: u16,
) {
    case.request(user, HOME, time);
    set_request(last(case), operation, kind, path, status);
}

fn set_request(r: &mut Value, operation: &str, kind: &str, path: &str, status: u16) {
    r["operationName"] = json!(operation);
    let p = &mut r["properties"];
    p["requestResourceType"] = json!(kind);
    p["requestResourceId"] = json!(path);
    p["statusCode"] = json!(status.to_string());
}

/// A key-based request from `ip` answered with `status`.
fn key_request_with(case: &mut Case, ip: &str, time: DateTime<Utc>, status: u16) {
    case.key_request(ip, time);
    last(case)["properties"]["statusCode"] = json!(status.to_string());
}

const OFFICE_NAT: &str = "73.215.40.10";
const PROXY: &str = "98.214.60.27";
const CARRIER: &str = "172.56.14.9";
const LATER: u32 = 90;

/// Sign-ins in both user logs long after everything else, so that they have caught up with
/// the requests (rules that correlate wait for them).
fn logs_caught_up(case: &mut Case, time: DateTime<Utc>) {
    case.user_sign_in(LATER, "99.61.1.1", time, 0);
    case.user_sign_in_to("NonInteractiveUserSignInLogs", LATER, "99.61.1.1", time, 0);
}

// --- container_or_database_deleted --------------------------------------------------------

#[test]
fn a_dropped_container_and_a_planted_stored_procedure_are_raised() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    resource_request(&mut case, 1, t, "Read", "Document", "/dbs/ordersdb/colls/orders/docs", 200);
    resource_request(&mut case, 1, t + Duration::minutes(5), "Delete", "Collection", "/dbs/ordersdb/colls/orders", 204);
    // A key client writes a trigger that will run on every write.
    case.key_request("105.112.7.9", t + Duration::minutes(7));
    set_request(last(&mut case), "Create", "Trigger", "/dbs/ordersdb/colls/payments/triggers/audit", 201);
    // User 2 tries to drop a database and is denied: an attempt is raised too.
    resource_request(&mut case, 2, t + Duration::minutes(9), "Delete", "Database", "/dbs/catalogdb", 403);
    let found = raised(&case, "container_or_database_deleted");
    let account = account(&case);
    assert_eq!(
        found,
        vec![
            ("-".to_string(), format!("account={account} ip=105.112.7.9")),
            (user_id(1), format!("account={account}")),
            (user_id(2), format!("account={account}")),
        ]
    );
    let summaries = summaries(&case, "container_or_database_deleted");
    assert!(summaries.iter().any(|s| s.starts_with("Delete of container /dbs/ordersdb/colls/orders")), "{summaries:?}");
    assert!(summaries.iter().any(|s| s.contains("denied")), "{summaries:?}");
}

#[test]
fn document_deletes_metadata_reads_and_scripts_that_already_exist_are_not_raised() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    for n in 0..20 {
        let time = t + Duration::seconds(20 * n);
        resource_request(&mut case, 1, time, "Delete", "Document", "/dbs/ordersdb/colls/orders/docs", 204);
    }
    resource_request(&mut case, 1, t, "Read", "Collection", "/dbs/ordersdb/colls/orders", 200);
    resource_request(&mut case, 1, t, "ReadFeed", "Database", "", 200);
    // An application creates its stored procedure at every start; it exists (409).
    let start = t + Duration::minutes(30);
    resource_request(&mut case, 3, start, "Create", "StoredProcedure", "/dbs/ordersdb/colls/orders/sprocs/bulk", 409);
    // Runs it: executing a script is not writing one.
    resource_request(&mut case, 3, start, "Execute", "StoredProcedure", "/dbs/ordersdb/colls/orders/sprocs/bulk", 200);
    // A cleanup job deletes a container that is already gone (404).
    resource_request(&mut case, 4, start, "Delete", "Collection", "/dbs/ordersdb/colls/tmp-2025-03-02", 404);
    assert_eq!(raised(&case, "container_or_database_deleted"), vec![]);
}

// --- disabled_account_attempts ------------------------------------------------------------

#[test]
fn a_disabled_account_tried_where_another_account_gets_in_is_raised_and_so_is_a_script() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    // A credential list: the disabled user 5 fails, user 6 gets in from the same proxy.
    for n in 0..2 {
        case.user_sign_in(5, PROXY, t + Duration::minutes(n), 50057);
    }
    case.user_sign_in(6, PROXY, t + Duration::minutes(3), 0);
    // A script hammering the disabled user 7 from elsewhere, nobody else there.
    for n in 0..12 {
        case.user_sign_in(7, "185.181.20.33", t + Duration::minutes(2 * n), 50057);
    }
    assert_eq!(
        raised(&case, "disabled_account_attempts"),
        vec![(user_id(5), format!("ip={PROXY}")), (user_id(7), "ip=185.181.20.33".to_string())]
    );
    let summaries = summaries(&case, "disabled_account_attempts");
    assert_eq!(summaries.iter().filter(|s| s.contains("HIGHER CONCERN: 1 other user")).count(), 1, "{summaries:?}");
}

#[test]
fn a_leavers_phone_retrying_and_an_old_desktop_behind_the_office_nat_are_not_raised() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM) + Duration::hours(5);
    // The leaver's phone: once today, four times tomorrow, from the carrier's addresses.
    case.user_sign_in_to("NonInteractiveUserSignInLogs", 5, CARRIER, t, 50057);
    for n in 0..4 {
        let time = t + Duration::days(1) + Duration::minutes(12 * n);
        case.user_sign_in_to("NonInteractiveUserSignInLogs", 5, "172.56.14.10", time, 50057);
    }
    // The leaver's old desktop at the office, where eight colleagues sign in that hour.
    let office = t + Duration::days(2);
    case.user_sign_in(5, OFFICE_NAT, office, 50057);
    for user in 10..18 {
        case.user_sign_in(user, OFFICE_NAT, office + Duration::minutes(user as i64), 0);
    }
    assert_eq!(raised(&case, "disabled_account_attempts"), vec![]);
}

// --- weak_auth_token_reaches_data ---------------------------------------------------------

/// An interactive sign-in of `user`, with its flow and what it required set.
fn interactive(case: &mut Case, user: u32, ip: &str, time: DateTime<Utc>, requirement: &str, protocol: &str) {
    let r = case.user_sign_in_to("SignInLogs", user, ip, time, 0);
    r["properties"]["authenticationRequirement"] = json!(requirement);
    r["properties"]["authenticationProtocol"] = json!(protocol);
    r["properties"]["clientAppUsed"] = json!("Mobile Apps and Desktop clients");
}

/// The silent refresh for Azure Cosmos DB that follows a sign-in (single-factor by nature).
fn refresh(case: &mut Case, user: u32, ip: &str, time: DateTime<Utc>) {
    let r = case.user_sign_in_to("NonInteractiveUserSignInLogs", user, ip, time, 0);
    r["properties"]["authenticationRequirement"] = json!("singleFactorAuthentication");
    r["properties"]["resourceId"] = json!("a232010e-820c-4083-83bb-3ace5fc29d0b");
}

const MFA: &str = "multiFactorAuthentication";
const ONE_FACTOR: &str = "singleFactorAuthentication";

#[test]
fn a_device_code_sign_in_whose_token_reads_data_is_raised() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    // User 1 signs in with MFA in the morning, as every day...
    interactive(&mut case, 1, HOME, t, MFA, "none");
    refresh(&mut case, 1, HOME, t + Duration::minutes(1));
    case.request(1, HOME, t + Duration::minutes(2));
    // ...and a phished device code is redeemed at noon; its refresh token reaches Cosmos DB.
    let noon = t + Duration::hours(4);
    interactive(&mut case, 1, PROXY, noon, ONE_FACTOR, "deviceCode");
    refresh(&mut case, 1, PROXY, noon + Duration::minutes(20));
    for n in 0..5 {
        case.request(1, PROXY, noon + Duration::minutes(21 + n));
    }
    // User 2 signs in with a password alone (ROPC, a script) and reads data directly.
    interactive(&mut case, 2, "185.181.20.33", noon, ONE_FACTOR, "ropc");
    case.request(2, "185.181.20.33", noon + Duration::minutes(1));
    logs_caught_up(&mut case, noon + Duration::hours(1));
    assert_eq!(
        raised(&case, "weak_auth_token_reaches_data"),
        vec![(user_id(1), format!("ip={PROXY}")), (user_id(2), "ip=185.181.20.33".to_string())]
    );
    let count: i64 = case.db.value("SELECT sum(count) FROM findings WHERE rule_id = 'weak_auth_token_reaches_data'");
    assert_eq!(count, 6, "the noon requests, not the morning's");
}

#[test]
fn refreshes_workloads_mfa_and_single_factor_in_a_trusted_network_are_not_raised() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    // User 1: MFA, then hourly silent refreshes (single-factor by nature) and queries all day.
    interactive(&mut case, 1, HOME, t, MFA, "none");
    for hour in 0..8 {
        let h = t + Duration::hours(hour);
        refresh(&mut case, 1, HOME, h + Duration::minutes(1));
        case.request(1, HOME, h + Duration::minutes(2));
    }
    // A service principal (client credentials: single factor) reading data.
    case.app_sign_in(1, "20.121.4.5", t, 0);
    case.request(1001, "20.121.4.5", t + Duration::minutes(1));
    // User 3 from a network where policy waives MFA (a private range: trusted by default).
    interactive(&mut case, 3, "10.20.30.40", t, ONE_FACTOR, "none");
    case.request(3, "10.20.30.40", t + Duration::minutes(1));
    // User 5's password flow satisfied MFA, as its record says: not a password alone.
    interactive(&mut case, 5, HOME, t, MFA, "ropc");
    case.request(5, HOME, t + Duration::minutes(1));
    // User 4's single-factor sign-in was yesterday: its tokens are long gone.
    interactive(&mut case, 4, HOME, t - Duration::days(1), ONE_FACTOR, "none");
    refresh(&mut case, 4, HOME, t);
    case.request(4, HOME, t + Duration::minutes(1));
    logs_caught_up(&mut case, t + Duration::hours(9));
    assert_eq!(raised(&case, "weak_auth_token_reaches_data"), vec![]);
}

// --- key_client_auth_failures -------------------------------------------------------------

#[test]
fn a_burst_of_rejected_key_requests_is_raised_once_per_client() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    // A leaked, since-rotated key tried from abroad: 30 rejections in five minutes.
    for n in 0..30 {
        key_request_with(&mut case, "105.112.7.9", t + Duration::seconds(10 * n), 401);
    }
    let found = raised(&case, "key_client_auth_failures");
    assert_eq!(found, vec![("-".to_string(), format!("account={} ip=105.112.7.9", account(&case)))]);
    let count: i64 = case.db.value("SELECT count FROM findings WHERE rule_id = 'key_client_auth_failures'");
    assert_eq!(count, 30);
}

#[test]
fn a_rotated_key_tried_twice_and_expired_resource_tokens_are_not_raised() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    // The legacy client after a key rotation: two rejections, then the new key works.
    key_request_with(&mut case, "52.168.4.4", t, 401);
    key_request_with(&mut case, "52.168.4.4", t + Duration::seconds(30), 401);
    for n in 0..10 {
        key_request_with(&mut case, "52.168.4.4", t + Duration::minutes(1 + n), 200);
    }
    // A mobile backend's resource tokens expire: its clients get 401 and renew them.
    for n in 0..15 {
        key_request_with(&mut case, "76.32.1.9", t + Duration::seconds(20 * n), 401);
        last(&mut case)["properties"]["authTokenType"] = json!("ResourceToken");
    }
    // A principal denied many times is permission_probing's business, not this rule's.
    for n in 0..15 {
        case.request(1, HOME, t + Duration::seconds(20 * n));
        last(&mut case)["properties"]["statusCode"] = json!("403");
    }
    assert_eq!(raised(&case, "key_client_auth_failures"), vec![]);
}

// --- workload_identity_new_network -------------------------------------------------------

const MI: u32 = 500;

/// Twelve days from `MONDAY_8AM` of a managed identity (its private address) and a service
/// principal (app 1) at work, each signing in and reading Cosmos DB every hour of the working
/// day from its usual networks; `extra` adds what the case is about on day `day`.
fn workloads_at_work(case: &mut Case, mut extra: impl FnMut(&mut Case, i64, DateTime<Utc>)) {
    let start = at(MONDAY_8AM);
    for day in 0..12 {
        for hour in 0..8 {
            let t = start + Duration::days(day) + Duration::hours(hour);
            case.sign_in("ManagedIdentitySignInLogs", "", t, 0)["properties"]["servicePrincipalId"] =
                json!(user_id(MI));
            case.request(MI, "10.1.2.3", t + Duration::minutes(1));
            case.app_sign_in(1, "20.121.4.5", t, 0);
            // An App Service's outbound addresses: any of its pool, in one /24.
            let pool = if hour % 2 == 0 { "20.121.4.5" } else { "20.121.4.77" };
            case.request(1001, pool, t + Duration::minutes(2));
        }
        extra(case, day, start + Duration::days(day));
    }
    // Both logs catch up with the last requests.
    let end = start + Duration::days(12);
    case.sign_in("ManagedIdentitySignInLogs", "", end, 0)["properties"]["servicePrincipalId"] = json!(user_id(MI));
    case.app_sign_in(1, "20.121.4.5", end, 0);
}

#[test]
fn a_managed_identitys_token_used_outside_azure_and_a_service_principal_from_a_new_network_are_raised() {
    let mut case = Case::new();
    workloads_at_work(&mut case, |case, day, t| {
        if day == 10 {
            // The managed identity's token, taken through SSRF, read from a VPS an hour later.
            for n in 0..6 {
                case.request(MI, "104.28.3.9", t + Duration::hours(2) + Duration::minutes(2 * n));
            }
            // The service principal's secret, from a leaked repository.
            case.app_sign_in(1, "185.181.20.33", t + Duration::hours(3), 0);
            case.request(1001, "185.181.20.33", t + Duration::hours(3) + Duration::minutes(1));
        }
    });
    let found = raised(&case, "workload_identity_new_network");
    assert_eq!(
        found,
        vec![(user_id(MI), "ip=104.28.3.0/24".to_string()), (user_id(1001), "ip=185.181.20.0/24".to_string())]
    );
    let count: i64 = case.db.value("SELECT sum(count) FROM findings WHERE rule_id = 'workload_identity_new_network'");
    assert_eq!(count, 7);
}

#[test]
fn a_new_deployment_an_address_pool_two_regions_and_a_private_endpoint_are_not_raised() {
    let mut case = Case::new();
    workloads_at_work(&mut case, |case, day, t| {
        // App 2 runs in two regions from its first day.
        case.app_sign_in(2, "20.121.9.9", t, 0);
        case.request(1002, "20.121.9.9", t + Duration::minutes(1));
        case.app_sign_in(2, "20.103.9.7", t + Duration::minutes(4), 0);
        case.request(1002, "20.103.9.7", t + Duration::minutes(5));
        if day == 10 {
            // App 3 is deployed today: no history to compare with.
            case.app_sign_in(3, "20.119.7.1", t, 0);
            case.request(1003, "20.119.7.1", t + Duration::minutes(1));
            // The managed identity moves behind a private endpoint.
            case.request(MI, "10.40.8.9", t + Duration::hours(2));
        }
    });
    assert_eq!(raised(&case, "workload_identity_new_network"), vec![]);
}
