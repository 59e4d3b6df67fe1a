//! Unit tests of the generator: tenant shape, determinism, correlation of sign-ins and
//! requests, scenario signals, volumes, NDJSON.

use super::cosmos::DATA_PLANE;
use super::scenarios::NOVEL_AGENTS;
use super::*;
use std::collections::{HashMap, HashSet};

const MONDAY: &str = "2025-03-03T00:00:00Z";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("test time").with_timezone(&Utc)
}

fn generator(seed: u64) -> Generator {
    Generator::new(Tenant::new(seed), seed)
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_else(|| panic!("{key} is not a string in {value}"))
}

fn prop<'a>(e: &'a Event, key: &str) -> &'a str {
    text(&e.record["properties"], key)
}

fn is_sign_in(e: &Event) -> bool {
    e.category.ends_with("SignInLogs")
}

fn is_request(e: &Event) -> bool {
    e.category == DATA_PLANE
}

/// An Azure Activity log record (its top-level category is the operation's kind).
fn is_control(e: &Event) -> bool {
    matches!(e.category, "Write" | "Delete" | "Action")
}

/// The object id a sign-in is for: `userId` for users, `servicePrincipalId` otherwise.
fn signed_in_id(e: &Event) -> &str {
    let props = &e.record["properties"];
    props["userId"].as_str().filter(|id| !id.is_empty()).unwrap_or_else(|| text(props, "servicePrincipalId"))
}

fn succeeded(e: &Event) -> bool {
    e.record["properties"]["status"]["errorCode"] == json!(0)
}

fn all_scenarios(g: &Generator, at: DateTime<Utc>) -> Vec<(Scenario, Vec<Event>, GroundTruth)> {
    Scenario::all()
        .iter()
        .map(|&s| {
            let (events, truth) = g.scenario(s, at);
            (s, events, truth)
        })
        .collect()
}

/// The largest hourly sum of `value` over the requests in `events`.
fn busiest_hour(events: &[Event], value: impl Fn(&Event) -> u64) -> u64 {
    let mut hours: HashMap<i64, u64> = HashMap::new();
    for e in events.iter().filter(|e| is_request(e)) {
        *hours.entry(e.time.timestamp().div_euclid(3600)).or_default() += value(e);
    }
    hours.into_values().max().unwrap_or(0)
}

#[test]
fn tenant_is_deterministic_and_has_the_promised_shape() {
    let tenant = Tenant::new(5);
    let again = Tenant::new(5);
    let other = Tenant::new(6);
    assert_eq!(tenant.tenant_id, again.tenant_id);
    let ids = |t: &Tenant| t.principals().map(|p| p.object_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&tenant), ids(&again));
    assert_ne!(tenant.tenant_id, other.tenant_id);
    assert_ne!(ids(&tenant), ids(&other));

    assert_eq!(tenant.users.len(), 40);
    assert_eq!(tenant.service_principals.len(), 10);
    assert_eq!(tenant.managed_identities.len(), 6);
    assert!((2..=3).contains(&tenant.accounts.len()));
    let upns: HashSet<&str> = tenant.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(upns.len(), 40, "UPNs are unique");
    for user in &tenant.users {
        let (local, domain) = user.name.split_once('@').expect("UPN has a domain");
        assert_eq!(domain, "contoso.com");
        assert!(local.contains('.') && local == local.to_lowercase(), "{local}");
        assert!((1..=3).contains(&user.ips.len()));
    }
    let object_ids: HashSet<String> = ids(&tenant).into_iter().collect();
    assert_eq!(object_ids.len(), 56, "object ids are unique");
    assert!(tenant.principals().all(|p| p.object_id != p.app_id && p.object_id.len() == 36));
    assert!(tenant.managed_identities.iter().all(|m| m.ips.iter().all(|ip| ip.starts_with("10."))));
    assert_eq!(tenant.principals().filter(|p| p.dormant && p.has_data()).count(), 1);
    assert!(tenant.principals().filter(|p| p.has_data()).count() >= 25);
    assert!(tenant.principals().any(|p| !p.has_data()), "some principals have no Cosmos role");
    for account in &tenant.accounts {
        let expected = format!(
            "/SUBSCRIPTIONS/{}/RESOURCEGROUPS/{}/PROVIDERS/MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/{}",
            account.subscription_id.to_uppercase(),
            account.resource_group.to_uppercase(),
            account.name.to_uppercase()
        );
        assert_eq!(account.resource_id.to_uppercase(), expected);
        assert!(account.databases.len() >= 2 && account.databases.iter().all(|d| !d.collections.is_empty()));
    }
}

#[test]
fn baseline_depends_only_on_the_seed() {
    let (from, to) = (at(MONDAY), at(MONDAY) + Duration::hours(6));
    let first = generator(1).baseline(from, to);
    assert!(first.len() > 500, "six hours produced {} events", first.len());
    assert_eq!(first, generator(1).baseline(from, to));
    assert_ne!(first, generator(2).baseline(from, to));
    assert!(first.windows(2).all(|w| w[0].time <= w[1].time), "sorted by time");
    assert!(first.iter().all(|e| e.time >= from && e.time < to));
}

#[test]
fn baseline_splits_on_hour_boundaries() {
    let g = generator(3);
    let a = at(MONDAY) + Duration::minutes(17);
    let c = at(MONDAY) + Duration::hours(14) + Duration::minutes(40);
    let whole = g.baseline(a, c);
    assert!(whole.len() > 2000);
    // Every boundary, since sessions spill into the hours on both sides of their own.
    for hours in 1..=14 {
        let b = at(MONDAY) + Duration::hours(hours);
        let mut parts = g.baseline(a, b);
        parts.extend(generator(3).baseline(b, c));
        assert!(whole == parts, "split at {b} differs");
    }
}

#[test]
fn every_record_has_its_category_and_an_rfc3339_time() {
    let g = generator(4);
    let mut events = g.baseline(at(MONDAY), at(MONDAY) + Duration::days(1));
    for (_, scenario_events, _) in all_scenarios(&g, at(MONDAY) + Duration::hours(30)) {
        events.extend(scenario_events);
    }
    let mut categories = HashSet::new();
    for e in &events {
        assert_eq!(text(&e.record, "category"), e.category);
        let time = text(&e.record, "time");
        assert!(time.ends_with('Z') && time.len() == 28, "seven fractional digits: {time}");
        assert_eq!(at(time), e.time);
        if is_sign_in(e) {
            let created = prop(e, "createdDateTime");
            assert!(created.ends_with("+00:00"));
            assert_eq!(at(created), e.time);
            let code = e.record["properties"]["status"]["errorCode"].as_u64().expect("errorCode is an int");
            assert_eq!(text(&e.record, "resultType"), code.to_string());
            assert_eq!(e.record["Level"], json!(4));
            assert_eq!(text(&e.record, "operationName"), "Sign-in activity");
        }
        categories.insert(e.category);
    }
    let expected = [
        "SignInLogs",
        "NonInteractiveUserSignInLogs",
        "ServicePrincipalSignInLogs",
        "ManagedIdentitySignInLogs",
        DATA_PLANE,
        "Write",
        "Delete",
        "Action",
        "AuditLogs",
        "QueryRuntimeStatistics",
    ];
    assert_eq!(categories, expected.into_iter().collect());
}

#[test]
fn cosmos_numbers_are_strings() {
    let g = generator(5);
    let mut events = g.baseline(at(MONDAY), at(MONDAY) + Duration::hours(12));
    for (_, scenario_events, _) in all_scenarios(&g, at(MONDAY) + Duration::hours(13)) {
        events.extend(scenario_events);
    }
    let requests: Vec<&Event> = events.iter().filter(|e| is_request(e)).collect();
    assert!(requests.len() > 1000);
    for e in requests {
        let props = e.record["properties"].as_object().expect("properties is an object");
        assert_eq!(props.len(), 25);
        assert!(props.values().all(Value::is_string), "non-string value in {props:?}");
        for key in ["statusCode", "requestLength", "responseLength"] {
            prop(e, key).parse::<u64>().unwrap_or_else(|_| panic!("{key} = {}", prop(e, key)));
        }
        for key in ["duration", "requestCharge"] {
            prop(e, key).parse::<f64>().unwrap_or_else(|_| panic!("{key} = {}", prop(e, key)));
        }
        assert!(text(&e.record, "resourceId").starts_with("/SUBSCRIPTIONS/"));
        assert!(e.record.get("tenantId").is_none());
        if prop(e, "requestResourceType") == "Document" {
            let path = format!("/dbs/{}/colls/{}/docs", prop(e, "databaseName"), prop(e, "collectionName"));
            assert_eq!(prop(e, "requestResourceId"), path);
        }
    }
}

#[test]
fn aad_requests_follow_a_recent_sign_in_of_the_same_principal_from_the_same_address() {
    let g = generator(6);
    let from = at(MONDAY);
    let events = g.baseline(from, from + Duration::days(3));
    let app_ids: HashSet<&str> = g.tenant().apps.iter().map(|a| a.app_id.as_str()).collect();
    let mut sign_ins: HashMap<&str, Vec<(DateTime<Utc>, &str)>> = HashMap::new();
    let mut checked = 0;
    for e in &events {
        if is_sign_in(e) {
            if e.category == "ManagedIdentitySignInLogs" {
                assert_eq!(prop(e, "ipAddress"), "");
                assert!(e.record.get("callerIpAddress").is_none());
            }
            if e.category.starts_with("ServicePrincipal") || e.category.starts_with("Managed") {
                assert!(e.record["properties"]["userId"].is_null());
            }
            if succeeded(e) {
                sign_ins.entry(signed_in_id(e)).or_default().push((e.time, prop(e, "ipAddress")));
            }
            continue;
        }
        if !is_request(e) {
            continue; // the control plane and the directory
        }
        if prop(e, "authTokenType") != "AADToken" || e.time < from + Duration::hours(1) {
            continue; // key traffic, or a token issued before the window
        }
        let principal = prop(e, "aadPrincipalId");
        assert!(!app_ids.contains(principal), "aadPrincipalId is an object id, never an appId");
        let ip = prop(e, "clientIpAddress");
        let recent = sign_ins.get(principal).map(Vec::as_slice).unwrap_or_default();
        let matching = recent
            .iter()
            .rev()
            .take_while(|(t, _)| e.time - *t <= Duration::minutes(65))
            .any(|&(_, signed_from)| signed_from == ip || (signed_from.is_empty() && ip.starts_with("10.")));
        assert!(matching, "request by {principal} from {ip} at {} has no sign-in in the hour before", e.time);
        checked += 1;
    }
    assert!(checked > 5000, "checked {checked} requests");
}

#[test]
fn key_based_requests_have_no_principal() {
    let events = generator(7).baseline(at(MONDAY), at(MONDAY) + Duration::days(2));
    let requests: Vec<&Event> = events.iter().filter(|e| is_request(e)).collect();
    let keyed: Vec<&&Event> = requests.iter().filter(|e| prop(e, "authTokenType") != "AADToken").collect();
    let share = keyed.len() as f64 / requests.len() as f64;
    assert!((0.01..0.06).contains(&share), "key-based share {share}");
    for e in keyed {
        assert_eq!(prop(e, "aadPrincipalId"), "");
        assert_eq!(prop(e, "aadAppliedRoleAssignmentId"), "");
        assert!(prop(e, "authTokenType").ends_with("MasterKey"));
        assert_eq!(prop(e, "keyType"), prop(e, "authTokenType"));
    }
    for e in requests.iter().filter(|e| prop(e, "authTokenType") == "AADToken") {
        assert_eq!(prop(e, "aadPrincipalId").len(), 36);
        assert_eq!(prop(e, "keyType"), "");
        if prop(e, "statusCode") != "403" {
            assert_eq!(prop(e, "aadAppliedRoleAssignmentId").len(), 36);
        }
    }
}

#[test]
fn scenario_events_lie_inside_their_ground_truth_window() {
    let g = generator(8);
    let start = at("2025-03-05T10:13:07.123456789Z");
    let tenant_accounts: HashSet<&str> = g.tenant().accounts.iter().map(|a| a.name.as_str()).collect();
    for (scenario, events, truth) in all_scenarios(&g, start) {
        let name = scenario.name();
        assert!(events.len() >= 10, "{name} emitted {} events", events.len());
        assert_eq!(truth.scenario, name);
        assert!(events.iter().all(|e| e.time >= truth.start && e.time <= truth.end), "{name}");
        assert!(events.windows(2).all(|w| w[0].time <= w[1].time), "{name} is sorted");
        // An out-of-hours grant waits for the end of the working day.
        let waits = if scenario == Scenario::OffHoursRoleGrant { Duration::hours(12) } else { Duration::zero() };
        assert!(
            truth.start >= start - Duration::nanoseconds(100) && truth.start - start < waits + Duration::minutes(1)
        );
        // Each lasts what it says it does (a history sizes its slot by that).
        assert!(
            truth.end > truth.start && truth.end - truth.start <= scenario.lasts() + Duration::minutes(10),
            "{name}"
        );
        // Attempts at a disabled account are sign-ins only: no Cosmos DB account is involved.
        let no_account = scenario == Scenario::DisabledAccountAttempts;
        assert!(no_account || tenant_accounts.contains(truth.account.as_str()), "{name}: {}", truth.account);
        assert!(truth.source_ip.is_some(), "{name}");
        let keys = matches!(scenario, Scenario::KeyBasedAccess | Scenario::RotatedKeyTried);
        assert_eq!(truth.principal_id.is_none(), keys, "{name}");
        assert!(!truth.description.is_empty());
        assert_eq!(g.scenario(scenario, start), (events.clone(), truth.clone()), "{name} is deterministic");
        assert_ne!(g.scenario(scenario, start + Duration::hours(1)).0, events, "{name} depends on its time");
    }
}

/// Each scenario shows the signal its detection looks for, and the baseline does not.
#[test]
fn scenarios_carry_their_signal_and_the_baseline_does_not() {
    let g = generator(9);
    let baseline = g.baseline(at(MONDAY), at(MONDAY) + Duration::days(4));
    let when = at(MONDAY) + Duration::days(4) + Duration::hours(15);
    let by = |events: &[Event], id: &str| -> Vec<Event> {
        let mine = |e: &&Event| match e {
            e if is_request(e) => prop(e, "aadPrincipalId") == id,
            e if is_sign_in(e) => signed_in_id(e) == id,
            _ => false,
        };
        events.iter().filter(mine).cloned().collect()
    };
    let requests_from = |events: &[Event], ip: &str| {
        events.iter().filter(|e| is_request(e) && prop(e, "clientIpAddress") == ip).count()
    };
    let baseline_ips: HashSet<&str> = baseline
        .iter()
        .filter(|e| is_request(e) || is_sign_in(e))
        .map(|e| if is_request(e) { prop(e, "clientIpAddress") } else { prop(e, "ipAddress") })
        .collect();
    for (scenario, events, truth) in all_scenarios(&g, when) {
        let ip = truth.source_ip.clone().unwrap_or_default();
        let id = truth.principal_id.clone().unwrap_or_default();
        let mine = by(&events, &id);
        let before = by(&baseline, &id);
        let requests = || mine.iter().filter(|e| is_request(e));
        match scenario {
            Scenario::ForeignIpToken => {
                assert!(!baseline_ips.contains(ip.as_str()));
                assert!(mine.iter().filter(|e| is_sign_in(e)).all(|e| prop(e, "ipAddress") != ip));
                assert!(requests_from(&mine, &ip) >= 25);
            }
            Scenario::KeyBasedAccess => {
                assert!(!baseline_ips.contains(ip.as_str()));
                assert!(events.len() >= 80);
                assert!(events.iter().all(
                    |e| prop(e, "authTokenType") == "PrimaryMasterKey" && prop(e, "aadPrincipalId").is_empty()
                ));
                assert_eq!(requests_from(&events, &ip), events.len());
            }
            Scenario::SprayThenDataAccess => {
                let failures: Vec<&Event> = events.iter().filter(|e| is_sign_in(e) && !succeeded(e)).collect();
                let users: HashSet<&str> = failures.iter().map(|e| signed_in_id(e)).collect();
                assert!(users.len() > 10 && !users.contains(id.as_str()));
                assert!(
                    failures.iter().all(|e| prop(e, "ipAddress") == ip && text(&e.record, "resultType") == "50126")
                );
                let last_failure = failures.iter().map(|e| e.time).max().expect("failures");
                assert!(last_failure - truth.start <= Duration::minutes(10));
                let hit = mine.iter().find(|e| e.category == "SignInLogs" && succeeded(e)).expect("successful spray");
                assert!(hit.time > last_failure && prop(hit, "ipAddress") == ip);
                assert!(requests().all(|e| e.time > hit.time && prop(e, "clientIpAddress") == ip));
                assert!(requests().count() >= 20);
            }
            Scenario::DistributedSpray => {
                let failures: Vec<&Event> = events.iter().filter(|e| is_sign_in(e) && !succeeded(e)).collect();
                let users: HashSet<&str> = failures.iter().map(|e| signed_in_id(e)).collect();
                let addresses: HashSet<&str> = failures.iter().map(|e| prop(e, "ipAddress")).collect();
                assert!(users.len() > 10 && !users.contains(id.as_str()));
                assert_eq!(addresses.len(), failures.len(), "one address per attempt");
                assert!(!addresses.contains(ip.as_str()) && !baseline_ips.contains(ip.as_str()));
                let hit = mine.iter().find(|e| e.category == "SignInLogs" && succeeded(e)).expect("successful spray");
                assert_eq!(prop(hit, "ipAddress"), ip);
                assert!(requests().all(|e| e.time > hit.time && prop(e, "clientIpAddress") == ip));
            }
            Scenario::BulkExport => {
                let bytes = |e: &Event| prop(e, "responseLength").parse::<u64>().unwrap_or(0);
                let exported: u64 = requests().map(bytes).sum();
                assert!(exported > 200 << 20, "exported {exported} bytes");
                let usual = busiest_hour(&before, bytes);
                assert!(exported > 20 * usual, "baseline read up to {usual} bytes an hour");
            }
            Scenario::MassDelete => {
                let deletes = requests().filter(|e| text(&e.record, "operationName") == "Delete").count();
                assert!(deletes >= 300);
                let usual = busiest_hour(&before, |e| u64::from(text(&e.record, "operationName") == "Delete"));
                assert!(usual < 30, "baseline deleted up to {usual} documents an hour");
            }
            Scenario::PermissionProbing => {
                let denied: Vec<&Event> = requests().filter(|e| prop(e, "statusCode") == "403").collect();
                let collections: HashSet<&str> = denied.iter().map(|e| prop(e, "requestResourceId")).collect();
                assert!(denied.len() >= 15 && collections.len() >= 2, "{} denials on {collections:?}", denied.len());
                assert!(denied.iter().all(|e| prop(e, "aadAppliedRoleAssignmentId").is_empty()));
                assert!(busiest_hour(&before, |e| u64::from(prop(e, "statusCode") == "403")) < 5);
            }
            Scenario::CollectionEnumeration => {
                let account = g.tenant().accounts.iter().find(|a| a.name == truth.account).expect("account");
                let listed = |kind: &str| {
                    requests()
                        .filter(|e| {
                            prop(e, "requestResourceType") == kind && text(&e.record, "operationName") == "ReadFeed"
                        })
                        .count()
                };
                assert_eq!(listed("Database"), 1);
                assert_eq!(listed("Collection"), account.databases.len());
                assert!(
                    baseline.iter().filter(|e| is_request(e)).all(|e| prop(e, "requestResourceType") == "Document")
                );
            }
            Scenario::ImpossibleTravel => {
                let logins: Vec<&Event> = mine.iter().filter(|e| e.category == "SignInLogs" && succeeded(e)).collect();
                assert_eq!(logins.len(), 2);
                assert_ne!(text(&logins[0].record, "location"), text(&logins[1].record, "location"));
                assert!(logins[1].time - logins[0].time <= Duration::hours(1));
                assert_eq!(prop(logins[1], "ipAddress"), ip);
            }
            Scenario::DormantPrincipal => {
                assert!(before.is_empty(), "the dormant principal is silent in the baseline");
                assert!(mine.iter().any(is_sign_in) && requests().count() >= 30);
            }
            Scenario::NewUserAgent => {
                let known: HashSet<&str> =
                    before.iter().filter(|e| is_request(e)).map(|e| prop(e, "userAgent")).collect();
                assert!(!known.is_empty(), "the principal is known");
                assert!(requests().all(|e| !known.contains(prop(e, "userAgent"))));
                assert!(requests().all(|e| NOVEL_AGENTS.contains(&prop(e, "userAgent"))));
            }
            Scenario::TokenWithoutSignIn => {
                assert!(g.tenant().principals().all(|p| p.object_id != id), "a stranger to the tenant");
                assert!(mine.iter().all(is_request) && requests().count() >= 20, "requests, no sign-in");
                assert!(requests().all(|e| prop(e, "clientIpAddress") == ip));
            }
            Scenario::ThreatIntelIp => {
                assert!(THREAT_INTEL_IPS.contains(&ip.as_str()));
                assert!(THREAT_INTEL_IPS.iter().all(|bad| !baseline_ips.contains(bad)));
                assert!(requests().filter(|e| prop(e, "statusCode").starts_with('2')).count() >= 5);
            }
            Scenario::ContainerDeleted => {
                let of = |kind: &str, op: &str| {
                    requests()
                        .filter(|e| prop(e, "requestResourceType") == kind && text(&e.record, "operationName") == op)
                        .count()
                };
                assert_eq!((of("Collection", "Delete"), of("Trigger", "Create")), (1, 1));
                assert!(
                    baseline.iter().filter(|e| is_request(e)).all(|e| prop(e, "requestResourceType") == "Document")
                );
            }
            Scenario::DisabledAccountAttempts => {
                let (failed, ok): (Vec<&Event>, Vec<&Event>) = events.iter().partition(|e| !succeeded(e));
                assert!(failed.len() >= 9 && failed.iter().all(|e| text(&e.record, "resultType") == "50057"));
                assert!(failed.iter().all(|e| signed_in_id(e) == id && prop(e, "ipAddress") == ip));
                assert!(ok.len() == 1 && signed_in_id(ok[0]) != id && prop(ok[0], "ipAddress") == ip);
                assert!(baseline.iter().filter(|e| is_sign_in(e)).all(|e| text(&e.record, "resultType") != "50057"));
            }
            Scenario::SlowExfiltration => {
                // Over 500 MiB in all, none of its hours near 100 MiB: a daily spike, not an hourly one.
                let bytes = |e: &Event| prop(e, "responseLength").parse::<u64>().unwrap_or(0);
                let total: u64 = requests().map(bytes).sum();
                assert!(total > 520 << 20, "read {total} bytes");
                let mut hours: std::collections::BTreeMap<i64, u64> = std::collections::BTreeMap::new();
                for e in requests() {
                    *hours.entry(e.time.timestamp() / 3600).or_default() += bytes(e);
                }
                assert!(hours.values().all(|b| *b < 90 << 20), "{hours:?}");
                assert!(requests().all(|e| prop(e, "clientIpAddress") == ip));
            }
            Scenario::DeviceCodePhish => {
                let phished: Vec<&Event> = mine.iter().filter(|e| e.category == "SignInLogs").collect();
                assert_eq!(phished.len(), 1);
                assert_eq!(prop(phished[0], "authenticationProtocol"), "deviceCode");
                assert!(succeeded(phished[0]) && prop(phished[0], "ipAddress") == ip);
                assert!(requests().count() >= 15);
                assert!(requests().all(|e| e.time > phished[0].time && prop(e, "clientIpAddress") == ip));
                let protocols: HashSet<&str> =
                    baseline.iter().filter(|e| is_sign_in(e)).map(|e| prop(e, "authenticationProtocol")).collect();
                assert!(!protocols.contains("deviceCode"), "{protocols:?}");
            }
            Scenario::WorkloadTokenStolen => {
                assert!(g.tenant().managed_identities.iter().any(|p| p.object_id == id));
                assert!(!baseline_ips.contains(ip.as_str()) && !ip.starts_with("10."));
                assert!(mine.iter().all(is_request) && requests().count() >= 20, "requests, no sign-in");
                assert!(requests().all(|e| prop(e, "clientIpAddress") == ip));
            }
            // What their records hold is checked in control_plane_scenarios_carry_what_their_rules_need.
            Scenario::KeysListedThenUsed | Scenario::SpCredentialAdded => {
                assert!(!baseline_ips.contains(ip.as_str()), "{ip} is new");
                assert!(requests_from(&events, &ip) >= 10);
            }
            Scenario::OffHoursRoleGrant => {
                assert!(requests().count() >= 10 && requests().all(|e| prop(e, "clientIpAddress") == ip));
            }
            Scenario::LocalAuthReenabled | Scenario::DiagnosticSettingRemoved => {
                assert!(events.iter().any(is_control));
                assert!(requests_from(&events, &ip) >= 6);
            }
            Scenario::RotatedKeyTried => {
                assert!(!baseline_ips.contains(ip.as_str()));
                assert!(events.len() >= 30);
                assert!(events.iter().all(|e| prop(e, "aadPrincipalId").is_empty() && prop(e, "statusCode") == "401"));
                assert_eq!(requests_from(&events, &ip), events.len());
            }
            Scenario::QueryInjection => {
                assert!(!baseline_ips.contains(ip.as_str()));
                let activity = |e: &&Event| e.record["properties"]["activityId"].as_str().unwrap_or("").to_string();
                let queries: Vec<&Event> = events.iter().filter(|e| e.category == "QueryRuntimeStatistics").collect();
                assert!(requests_from(&events, &ip) >= 18 && queries.len() == requests_from(&events, &ip));
                let ids: HashSet<String> = requests().map(|e| activity(&e)).collect();
                assert!(queries.iter().all(|q| ids.contains(&activity(q))), "each query names its request");
                assert!(requests().any(|e| prop(e, "statusCode") == "400"), "fuzzing first");
            }
        }
    }
}

#[test]
fn daily_volume_and_mix_are_believable() {
    let day = (at(MONDAY) + Duration::days(1), at(MONDAY) + Duration::days(2));
    let events = generator(10).baseline(day.0, day.1);
    let count = |category: &str| events.iter().filter(|e| e.category == category).count();
    let requests = count(DATA_PLANE);
    let interactive = count("SignInLogs");
    let non_interactive = count("NonInteractiveUserSignInLogs");
    let sign_ins = events.len() - requests;
    assert!((2000..9000).contains(&requests), "{requests} requests");
    assert!((300..2500).contains(&sign_ins), "{sign_ins} sign-ins");
    let ratio = non_interactive as f64 / interactive as f64;
    assert!((4.0..=12.0).contains(&ratio), "non-interactive / interactive = {ratio}");
    assert!(count("ServicePrincipalSignInLogs") >= 150 && count("ManagedIdentitySignInLogs") >= 100);
    let statuses: Vec<&str> = events.iter().filter(|e| is_request(e)).map(|e| prop(e, "statusCode")).collect();
    let ok = statuses.iter().filter(|s| s.starts_with('2')).count();
    assert!(ok as f64 / requests as f64 > 0.9);
    for code in ["200", "201", "204", "404", "409", "429"] {
        assert!(statuses.contains(&code), "no {code}");
    }
    let ops: HashSet<&str> =
        events.iter().filter(|e| is_request(e)).map(|e| text(&e.record, "operationName")).collect();
    assert_eq!(ops.len(), 8, "{ops:?}");
    let failures: HashSet<&str> =
        events.iter().filter(|e| e.category == "SignInLogs").map(|e| text(&e.record, "resultType")).collect();
    assert!(failures.len() >= 2, "no failed interactive sign-in: {failures:?}");

    let doubled = generator(10).with_scale(2.0).baseline(day.0, day.1);
    let doubled_requests = doubled.iter().filter(|e| is_request(e)).count();
    let growth = doubled_requests as f64 / requests as f64;
    assert!((1.7..2.3).contains(&growth), "scale 2 grew requests by {growth}");
    assert_eq!(doubled.len() - doubled_requests, sign_ins, "sign-ins follow sessions, not scale");
}

#[test]
fn history_places_each_scenario_once_inside_the_window() {
    let (from, to) = (at(MONDAY), at(MONDAY) + Duration::days(3));
    let (events, truths) = generator(11).history(from, to, Scenario::all());
    assert_eq!(truths.len(), Scenario::all().len());
    let names: Vec<&str> = truths.iter().map(|t| t.scenario.as_str()).collect();
    assert_eq!(names, Scenario::all().iter().map(Scenario::name).collect::<Vec<_>>());
    for pair in truths.windows(2) {
        assert!(pair[0].end < pair[1].start, "scenarios overlap: {pair:?}");
    }
    assert!(truths.iter().all(|t| t.start >= from + (to - from) / 4 && t.end < to));
    assert!(events.windows(2).all(|w| w[0].time <= w[1].time));
    let (again, _) = generator(11).history(from, to, Scenario::all());
    assert_eq!(events, again);
}

#[test]
fn ndjson_lines_are_one_kilobyte_records() {
    let end = at(MONDAY);
    let mut out = Vec::new();
    let written = write_cosmos_ndjson_until(&mut out, 500, 12, end).expect("writes to memory");
    assert_eq!(written, out.len() as u64);
    let text_out = String::from_utf8(out.clone()).expect("UTF-8");
    let lines: Vec<&str> = text_out.lines().collect();
    assert_eq!(lines.len(), 500);
    for line in &lines {
        assert!((800..=1300).contains(&line.len()), "line of {} bytes", line.len());
        let record: Value = serde_json::from_str(line).expect("valid JSON");
        assert_eq!(record["category"], json!(DATA_PLANE));
        let time = at(text(&record, "time"));
        assert!(time >= end - Duration::days(7) && time < end);
        assert!(record["properties"].as_object().expect("properties").values().all(Value::is_string));
    }
    let mut again = Vec::new();
    write_cosmos_ndjson_until(&mut again, 500, 12, end).expect("writes to memory");
    assert_eq!(out, again);
    let mut other = Vec::new();
    write_cosmos_ndjson_until(&mut other, 500, 13, end).expect("writes to memory");
    assert_ne!(out, other);
}

#[test]
fn scenario_names_round_trip() {
    let names: HashSet<&str> = Scenario::all().iter().map(Scenario::name).collect();
    assert_eq!(names.len(), Scenario::all().len(), "names are unique");
    for &scenario in Scenario::all() {
        assert_eq!(Scenario::parse(scenario.name()), Ok(scenario));
        assert_eq!(scenario.to_string().parse::<Scenario>(), Ok(scenario));
    }
    assert_eq!(Scenario::parse(" Mass-Delete "), Ok(Scenario::MassDelete));
    let error = Scenario::parse("exfiltration").expect_err("unknown name");
    assert!(error.contains("exfiltration") && error.contains("foreign_ip_token") && error.contains("threat_intel_ip"));
}

#[test]
fn ground_truth_round_trips_through_json() {
    let (_, truth) = generator(13).scenario(Scenario::BulkExport, at("2025-03-04T09:30:00.5Z"));
    let encoded = serde_json::to_value(&truth).expect("serializes");
    assert_eq!(encoded["start"], json!("2025-03-04T09:30:00.500Z"));
    let decoded: GroundTruth = serde_json::from_value(encoded).expect("deserializes");
    assert_eq!(decoded, truth);
}

/// Each item of the realistic profile is in its traffic (two weeks spanning a month end).
#[test]
fn the_realistic_profile_has_what_real_tenants_have() {
    let seed = 11;
    let realistic = Generator::new(Tenant::new(seed), seed).with_profile(Profile::Realistic);
    let (from, to) = (at("2025-03-24T00:00:00Z"), at("2025-04-07T00:00:00Z"));
    let events = realistic.baseline(from, to);
    let sign_ins: Vec<&Event> = events.iter().filter(|e| is_sign_in(e)).collect();
    let code = |e: &Event| e.record["properties"]["status"]["errorCode"].as_u64().unwrap_or(0);
    let codes: HashSet<u64> = sign_ins.iter().map(|e| code(e)).collect();
    for benign in [50074, 50140, 70008, 700082, 53003, 50126, 50053, 50057, 7000215] {
        assert!(codes.contains(&benign), "no benign failure {benign}: {codes:?}");
    }
    // Shared egress: some address has many users, failing and succeeding, within a Monday hour.
    let mut users_by_ip: HashMap<&str, HashSet<&str>> = HashMap::new();
    for e in &sign_ins {
        users_by_ip.entry(prop(e, "ipAddress")).or_default().insert(signed_in_id(e));
    }
    assert!(users_by_ip.values().any(|u| u.len() >= 20), "an office NAT shared by many users");
    assert!(sign_ins.iter().any(|e| prop(e, "ipAddress").contains(':')), "IPv6 sign-ins");
    assert!(
        sign_ins.iter().any(|e| prop(e, "resourceId") == "00000002-0000-0ff1-ce00-000000000000"),
        "a phone refreshing Exchange"
    );
    assert!(
        sign_ins.iter().any(|e| e.record["identity"].as_str().is_some_and(|n| n.starts_with("New Hire"))),
        "new hires work"
    );
    // Data from an address the principal never signed in from (VPN split tunnel, pools).
    let mut signed_from: HashMap<&str, HashSet<&str>> = HashMap::new();
    for e in &sign_ins {
        signed_from.entry(signed_in_id(e)).or_default().insert(prop(e, "ipAddress"));
    }
    let elsewhere = events
        .iter()
        .filter(|e| is_request(e) && !prop(e, "aadPrincipalId").is_empty())
        .filter(|e| {
            !signed_from.get(prop(e, "aadPrincipalId")).is_some_and(|ips| ips.contains(prop(e, "clientIpAddress")))
        })
        .filter(|e| !prop(e, "clientIpAddress").starts_with("10."))
        .count();
    assert!(elsewhere > 100, "{elsewhere} requests from an address the principal signed in from elsewhere");
    // Month end: the nightly batch reads ten times its volume on March 31.
    let etl = |day: &str| {
        let day = at(day);
        events.iter().filter(|e| is_request(e) && e.time >= day && e.time < day + Duration::days(1)).count()
    };
    assert!(etl("2025-03-31T00:00:00Z") > etl("2025-03-27T00:00:00Z") + 1000, "month-end volume");
    // The tidy profile is as it was.
    assert_eq!(
        generator(seed).baseline(from, from + Duration::hours(6)),
        Generator::new(Tenant::new(seed), seed).with_profile(Profile::Tidy).baseline(from, from + Duration::hours(6))
    );
}

fn operation(e: &Event) -> &str {
    text(&e.record, "operationName")
}

/// The caller's object id in an Activity log record's claims.
fn caller(e: &Event) -> &str {
    text(&e.record["identity"]["claims"], "http://schemas.microsoft.com/identity/claims/objectidentifier")
}

/// A body the Activity log carries as JSON in a string.
fn body(e: &Event, key: &str) -> Value {
    serde_json::from_str(prop(e, key)).unwrap_or_else(|_| panic!("{key} is not JSON in {}", e.record))
}

/// The successful Activity log events of `action`, each after its Start (same correlation id).
fn succeeded_ops<'a>(events: &'a [Event], action: &str) -> Vec<&'a Event> {
    let upper = action.to_uppercase();
    let mine: Vec<&Event> = events.iter().filter(|e| is_control(e) && operation(e) == upper).collect();
    let started: HashMap<&str, &Event> = mine
        .iter()
        .filter(|e| text(&e.record, "resultType") == "Start")
        .map(|e| (text(&e.record, "correlationId"), *e))
        .collect();
    let done: Vec<&Event> = mine.into_iter().filter(|e| text(&e.record, "resultType") == "Success").collect();
    for e in &done {
        let start = started.get(text(&e.record, "correlationId")).expect("a Start before each Success");
        assert!(start.time < e.time && e.time - start.time < Duration::seconds(5), "{}", e.record);
        assert_eq!(text(&start.record, "resultSignature"), "Started.");
        // A write's body goes in with its Start and comes back with its Success.
        let request = start.record["properties"].get("requestbody").map(|_| body(start, "requestbody"));
        let response = e.record["properties"].get("responseBody").map(|_| body(e, "responseBody"));
        if text(&e.record, "category") == "Write" {
            assert!(request.is_some() && response.is_some(), "{}", e.record);
        }
        if let (Some(request), Some(response)) = (request, response) {
            let (request, response) = (&request["properties"], &response["properties"]);
            assert!(request.is_null() || request == response, "{request} came back as {response}");
        }
    }
    done
}

fn audits<'a>(events: &'a [Event], operation_name: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.category == "AuditLogs" && operation(e) == operation_name).collect()
}

fn in_change_window(t: DateTime<Utc>) -> bool {
    !matches!(t.weekday(), Weekday::Sat | Weekday::Sun) && (7..19).contains(&t.hour())
}

/// Three weeks of benign traffic in both profiles hold what the control-plane rules learn
/// from, and nothing they raise.
#[test]
fn benign_control_plane_traffic_has_the_routine_and_nothing_the_rules_raise() {
    use super::control::*;
    for profile in [Profile::Tidy, Profile::Realistic] {
        let seed = 21;
        let g = Generator::new(Tenant::new(seed), seed).with_profile(profile);
        let (from, to) = (at(MONDAY) + Duration::hours(5), at(MONDAY) + Duration::days(21) + Duration::hours(5));
        let (events, truths) = g.history(from, to, &[]);
        assert!(truths.is_empty());
        let tenant = g.tenant();
        let control = &g.control;
        let admins: HashSet<&str> = g.admins().iter().map(|a| a.object_id.as_str()).collect();
        assert_eq!(g.key_rotation_identity().object_id, control.rotation.object_id);
        assert!(tenant.managed_identities.iter().any(|p| p.object_id == g.key_rotation_identity().object_id));
        assert_eq!(admins.len(), 2, "{profile}");

        // The admins join their group at the start; so does every account's diagnostic setting.
        let joined: Vec<&Event> = audits(&events, ADD_MEMBER)
            .into_iter()
            .filter(|e| e.record["properties"]["targetResources"][1]["displayName"] == json!(ADMIN_GROUP))
            .collect();
        let members: HashSet<&str> =
            joined.iter().map(|e| text(&e.record["properties"]["targetResources"][0], "id")).collect();
        assert_eq!(members, admins);
        assert!(joined.iter().all(|e| e.time < from + Duration::hours(1)));
        let group = &joined[0].record["properties"]["targetResources"][0]["modifiedProperties"][0];
        assert_eq!(text(group, "displayName"), "Group.ObjectID");
        assert_eq!(text(group, "newValue"), format!("\"{}\"", control.admin_group_id));
        let settings = succeeded_ops(&events, DIAGNOSTIC_WRITE);
        assert_eq!(settings.len(), tenant.accounts.len());
        for e in &settings {
            let logs = body(e, "responseBody")["properties"]["logs"].clone();
            assert!(logs.as_array().is_some_and(|l| l.iter().all(|log| log["enabled"] == json!(true))));
        }
        assert!(events.iter().all(|e| operation(e) != DIAGNOSTIC_DELETE.to_uppercase()), "no setting deleted");

        // The weekly key rotation: one identity, from its one Azure address; the key client stays
        // the only one, at its own address.
        let listed = succeeded_ops(&events, LIST_KEYS);
        assert!(listed.len() >= 3 * tenant.accounts.len(), "{} listings", listed.len());
        assert!(succeeded_ops(&events, REGENERATE_KEY).len() >= 3 * tenant.accounts.len());
        let rotation = &control.rotation;
        for e in &listed {
            assert_eq!(caller(e), rotation.object_id);
            assert_eq!(text(&e.record, "callerIpAddress"), control.rotation_ip);
            assert!(!control.rotation_ip.starts_with("10."), "ARM sees a public address");
            assert_eq!(text(&e.record, "category"), "Action");
        }
        let key_clients: HashSet<(&str, &str)> = events
            .iter()
            .filter(|e| is_request(e) && prop(e, "authTokenType") != "AADToken")
            .map(|e| (text(&e.record, "resourceId"), prop(e, "clientIpAddress")))
            .collect();
        let key_account = &tenant.accounts[tenant.key_client.account].resource_id;
        assert_eq!(key_clients, HashSet::from([(key_account.as_str(), tenant.key_client.ip.as_str())]));

        // Grants: by admins, in working hours only.
        let grants = succeeded_ops(&events, DATA_ROLE_WRITE);
        let key_roles = succeeded_ops(&events, ROLE_WRITE);
        assert!(grants.len() >= 2 && !key_roles.is_empty(), "{} grants, {} key roles", grants.len(), key_roles.len());
        for e in grants.iter().chain(&key_roles) {
            assert!(admins.contains(caller(e)), "granted by {}", caller(e));
            assert!(in_change_window(e.time) && (9..17).contains(&e.time.hour()), "granted at {}", e.time);
            assert_eq!(text(&e.record, "category"), "Write");
        }
        for e in &grants {
            let request = body(e, "responseBody");
            let role = text(&request["properties"], "roleDefinitionId");
            assert!(role.ends_with(DATA_READER) || role.ends_with(DATA_CONTRIBUTOR), "{role}");
            let id = text(&request["properties"], "principalId");
            let uses: Vec<DateTime<Utc>> =
                events.iter().filter(|r| is_request(r) && prop(r, "aadPrincipalId") == id).map(|r| r.time).collect();
            assert!(!uses.is_empty(), "the grantee {id} uses its role");
            // New hires are granted before their first request.
            if tenant.principals().all(|p| p.object_id != id) {
                assert!(uses.iter().all(|t| *t > e.time), "hire {id} worked before its grant");
            }
        }
        if profile == Profile::Realistic {
            let hires = grants.iter().filter(|e| {
                let id = text(&body(e, "responseBody")["properties"], "principalId").to_string();
                tenant.principals().all(|p| p.object_id != id)
            });
            assert!(hires.count() >= 1, "a new hire's grant");
        }

        // Account writes re-state disableLocalAuth: never true to false; keys-only stays false.
        let writes = succeeded_ops(&events, ACCOUNT_WRITE);
        assert!(writes.len() >= tenant.accounts.len(), "{} account writes", writes.len());
        let mut last: HashMap<&str, bool> = HashMap::new();
        for e in &writes {
            assert!(admins.contains(caller(e)) && in_change_window(e.time));
            let disabled = body(e, "responseBody")["properties"]["disableLocalAuth"].as_bool().expect("a flag");
            let account = text(&e.record, "resourceId");
            assert!(last.get(account) != Some(&true) || disabled, "{account} re-enabled local auth");
            assert!(!(account == key_account && disabled), "the key client's account refuses keys");
            last.insert(account, disabled);
        }

        // Credentials rotated; the principal goes on signing in from where it always did.
        let rotations: Vec<&Event> =
            audits(&events, SP_CREDENTIALS).into_iter().chain(audits(&events, APP_CREDENTIALS)).collect();
        assert!(!rotations.is_empty(), "a credential rotation");
        for e in &rotations {
            let app_id = text(&e.record["properties"]["additionalDetails"][0], "value");
            let sp = tenant.service_principals.iter().find(|p| p.app_id == app_id).expect("a tenant principal");
            let ips: HashSet<&str> = events
                .iter()
                .filter(|s| is_sign_in(s) && signed_in_id(s) == sp.object_id)
                .map(|s| prop(s, "ipAddress"))
                .collect();
            assert!(ips.iter().all(|ip| sp.ips.iter().any(|own| own == ip)), "{} from {ips:?}", sp.name);
        }

        // Light: a handful of records a day.
        let changes = events.iter().filter(|e| is_control(e) || e.category == "AuditLogs").count();
        assert!((21..=21 * 12).contains(&changes), "{changes} control and directory records in 21 days");
        assert!(events.windows(2).all(|w| w[0].time <= w[1].time));
    }
}

/// Each control-plane scenario holds the records its rule joins, in order, naming its principal.
#[test]
fn control_plane_scenarios_carry_what_their_rules_need() {
    use super::control::*;
    for profile in [Profile::Tidy, Profile::Realistic] {
        let g = Generator::new(Tenant::new(14), 14).with_profile(profile);
        let tenant = g.tenant();
        // A Wednesday morning: the out-of-hours grant waits until 19:00.
        let when = at("2025-03-05T10:13:07Z");
        let baseline = g.baseline(when - Duration::days(7), when);
        let admins: HashSet<&str> = g.control.admins.iter().map(|a| a.object_id.as_str()).collect();
        let keys = |events: &[Event], ip: &str| -> Vec<DateTime<Utc>> {
            events
                .iter()
                .filter(|e| {
                    is_request(e)
                        && prop(e, "authTokenType") == "PrimaryMasterKey"
                        && prop(e, "aadPrincipalId").is_empty()
                        && prop(e, "clientIpAddress") == ip
                })
                .map(|e| e.time)
                .collect()
        };
        let local_auth = |account: &str| {
            let i = tenant.accounts.iter().position(|a| a.name == account).expect("a tenant account");
            g.control.local_auth_disabled[i]
        };
        for &scenario in &[
            Scenario::KeysListedThenUsed,
            Scenario::OffHoursRoleGrant,
            Scenario::LocalAuthReenabled,
            Scenario::SpCredentialAdded,
            Scenario::DiagnosticSettingRemoved,
        ] {
            let (events, truth) = g.scenario(scenario, when);
            let id = truth.principal_id.clone().expect("a principal");
            let ip = truth.source_ip.clone().expect("an address");
            let name = format!("{profile} {}", scenario.name());
            assert!(!admins.contains(id.as_str()), "{name}: the principal is no admin");
            match scenario {
                Scenario::KeysListedThenUsed => {
                    let listed = succeeded_ops(&events, LIST_KEYS);
                    assert_eq!(listed.len(), 1, "{name}");
                    assert_eq!(
                        (caller(listed[0]), text(&listed[0].record, "callerIpAddress")),
                        (id.as_str(), ip.as_str())
                    );
                    assert!(text(&listed[0].record, "resourceId").ends_with(&truth.account.to_uppercase()));
                    let used = keys(&events, &ip);
                    assert!((20..=60).contains(&used.len()), "{name}: {} key requests", used.len());
                    let wait = used.iter().min().copied().expect("key requests") - listed[0].time;
                    assert!(wait >= Duration::minutes(15) && wait <= Duration::minutes(41), "{name}: {wait}");
                    assert!(keys(&baseline, &ip).is_empty(), "{name}: {ip} never used a key before");
                    assert!(!local_auth(&truth.account), "{name}: the account takes keys");
                }
                Scenario::OffHoursRoleGrant => {
                    let granted = succeeded_ops(&events, DATA_ROLE_WRITE);
                    assert_eq!(granted.len(), 1, "{name}");
                    let grant = granted[0];
                    assert!(!in_change_window(grant.time), "{name}: granted at {}", grant.time);
                    assert_eq!(grant.time.date_naive(), when.date_naive(), "{name}: that evening");
                    assert!(grant.time.hour() == 19, "{name}: the first moment out of hours");
                    assert!(caller(grant) != id && !admins.contains(caller(grant)), "{name}: granted by a non-admin");
                    let request = body(grant, "responseBody");
                    assert_eq!(text(&request["properties"], "principalId"), id);
                    assert!(text(&request["properties"], "roleDefinitionId").ends_with(DATA_CONTRIBUTOR));
                    let account = tenant.accounts.iter().find(|a| a.name == truth.account).expect("account");
                    let scope = text(&request["properties"], "scope");
                    assert!(scope.ends_with(&format!("/databaseAccounts/{}", account.name)), "{scope}");
                    let index = tenant.accounts.iter().position(|a| a.name == truth.account);
                    let grantee = tenant.principals().find(|p| p.object_id == id).expect("a tenant principal");
                    assert!(grantee.grants.iter().all(|gr| Some(gr.account) != index), "{name}: no grant before");
                    let sign_in = events.iter().find(|e| is_sign_in(e) && signed_in_id(e) == id).expect("sign-in");
                    assert!(succeeded(sign_in) && prop(sign_in, "resourceDisplayName") == "Azure Cosmos DB");
                    assert!(grantee.kind != PrincipalKind::User || sign_in.category == "SignInLogs");
                    let wait = sign_in.time - grant.time;
                    assert!(wait >= Duration::minutes(10) && wait <= Duration::minutes(51), "{name}: {wait}");
                    let reads: Vec<&Event> = events.iter().filter(|e| is_request(e)).collect();
                    assert!((10..=40).contains(&reads.len()), "{name}");
                    assert!(reads.iter().all(|e| prop(e, "aadPrincipalId") == id
                        && prop(e, "clientIpAddress") == prop(sign_in, "ipAddress")
                        && e.time > sign_in.time
                        && matches!(text(&e.record, "operationName"), "Read" | "Query")));
                }
                Scenario::LocalAuthReenabled => {
                    let writes = succeeded_ops(&events, ACCOUNT_WRITE);
                    assert_eq!(writes.len(), 2, "{name}");
                    let flag = |e: &Event| body(e, "responseBody")["properties"]["disableLocalAuth"].as_bool();
                    assert_eq!((flag(writes[0]), flag(writes[1])), (Some(true), Some(false)), "{name}");
                    assert!(admins.contains(caller(writes[0])) && caller(writes[1]) == id, "{name}");
                    assert_eq!(text(&writes[1].record, "callerIpAddress"), ip);
                    let gap = writes[1].time - writes[0].time;
                    assert!(gap >= Duration::minutes(20) && gap <= Duration::minutes(41), "{name}: {gap}");
                    let listed = succeeded_ops(&events, LIST_KEYS);
                    assert!(listed.len() == 1 && caller(listed[0]) == id && listed[0].time > writes[1].time);
                    let used = keys(&events, &ip);
                    assert!(used.len() >= 6 && used.iter().all(|t| *t > listed[0].time), "{name}");
                }
                Scenario::SpCredentialAdded => {
                    let added = audits(&events, SP_CREDENTIALS);
                    assert_eq!(added.len(), 1, "{name}");
                    let props = &added[0].record["properties"];
                    let sp = tenant.service_principals.iter().find(|p| p.object_id == id).expect("a service principal");
                    assert_eq!(text(&props["targetResources"][0], "id"), id);
                    assert_eq!(text(&props["targetResources"][0], "type"), "ServicePrincipal");
                    assert_eq!(text(&props["additionalDetails"][0], "value"), sp.app_id);
                    let by = text(&props["initiatedBy"]["user"], "id");
                    assert!(by != id && tenant.users.iter().any(|u| u.object_id == by), "{name}");
                    let new_value = text(&props["targetResources"][0]["modifiedProperties"][0], "newValue");
                    assert!(new_value.starts_with("[\"[KeyIdentifier=") && new_value.contains("KeyType=Password"));
                    let sign_in = events
                        .iter()
                        .find(|e| e.category == "ServicePrincipalSignInLogs" && signed_in_id(e) == id)
                        .expect("the service principal signs in");
                    assert!(succeeded(sign_in) && prop(sign_in, "ipAddress") == ip);
                    assert!(!sp.ips.contains(&ip), "{name}: {ip} is new to it");
                    let wait = sign_in.time - added[0].time;
                    assert!(wait >= Duration::minutes(10) && wait <= Duration::minutes(31), "{name}: {wait}");
                    assert!(sp.has_data(), "{name}: it reads the account normally");
                    let reads = events.iter().filter(|e| is_request(e));
                    assert!(reads.clone().count() >= 10);
                    assert!(reads.into_iter().all(|e| prop(e, "aadPrincipalId") == id
                        && prop(e, "clientIpAddress") == ip
                        && e.time > sign_in.time));
                }
                Scenario::DiagnosticSettingRemoved => {
                    let deleted = succeeded_ops(&events, DIAGNOSTIC_DELETE);
                    assert_eq!(deleted.len(), 1, "{name}");
                    assert_eq!(text(&deleted[0].record, "category"), "Delete");
                    assert_eq!(caller(deleted[0]), id);
                    assert!(text(&deleted[0].record, "resourceId").ends_with("/DIAGNOSTICSETTINGS/COSMOS-TO-EVENTHUB"));
                    let listed = succeeded_ops(&events, LIST_KEYS);
                    assert!(listed.len() == 1 && caller(listed[0]) == id && listed[0].time > deleted[0].time);
                    let used = keys(&events, &ip);
                    assert!(used.len() >= 8 && used.iter().all(|t| *t > listed[0].time), "{name}");
                    assert!(!local_auth(&truth.account), "{name}: the account takes keys");
                }
                _ => unreachable!(),
            }
        }
    }
}

#[test]
fn out_of_hours_is_outside_monday_to_friday_seven_to_nineteen() {
    use super::control::off_hours;
    // Wednesday morning waits for 19:00; a weekday night and a Saturday are out of hours already.
    assert_eq!(off_hours(at("2025-03-05T10:13:07Z")), at("2025-03-05T19:00:00Z"));
    assert_eq!(off_hours(at("2025-03-05T07:00:00Z")), at("2025-03-05T19:00:00Z"));
    assert_eq!(off_hours(at("2025-03-05T19:00:00Z")), at("2025-03-05T19:00:00Z"));
    assert_eq!(off_hours(at("2025-03-05T06:59:00Z")), at("2025-03-05T06:59:00Z"));
    assert_eq!(off_hours(at("2025-03-08T12:00:00Z")), at("2025-03-08T12:00:00Z"));
}

/// The data-plane assignment with ARM id `id` (lower case) in `inventory`.
fn assignment<'a>(inventory: &'a Inventory, id: &str) -> &'a Value {
    let rows = inventory.role_assignments.as_array().expect("a list");
    rows.iter().find(|a| text(a, "id").eq_ignore_ascii_case(id)).unwrap_or_else(|| panic!("{id} not in the list"))
}

#[test]
fn the_inventory_holds_its_over_grants_and_is_deterministic() {
    for profile in [Profile::Tidy, Profile::Realistic] {
        for seed in [1, 42, 7] {
            let g = generator(seed).with_profile(profile);
            let inventory = g.inventory();
            assert_eq!(inventory, generator(seed).with_profile(profile).inventory(), "{profile} seed {seed}");
            let by = |r: &str| inventory.over_grants.iter().filter(|o| o.recommendation == r).collect::<Vec<_>>();
            let principal = |id: &str| g.tenant().principals().find(|p| p.object_id.eq_ignore_ascii_case(id));
            let account_path = |name: &str| {
                let a = g.tenant().accounts.iter().find(|a| a.name == name).expect("an account");
                control::arm_path(a)
            };
            // readers holding Data Contributor on the whole account
            assert_eq!(by("reader").len(), 2, "{profile} seed {seed}");
            for o in by("reader") {
                let p = principal(&o.principal_id).expect("a principal");
                assert_eq!(p.workload, Workload::Reader);
                let a = assignment(&inventory, &o.assignment_id);
                assert!(text(a, "roleDefinitionId").ends_with(control::DATA_CONTRIBUTOR));
                assert_eq!(text(a, "scope"), account_path(&o.account));
            }
            // writers in one container holding the whole account
            assert_eq!(by("narrow scope").len(), 2);
            for o in by("narrow scope") {
                let p = principal(&o.principal_id).expect("a principal");
                assert!(matches!(p.workload, Workload::Service | Workload::Analyst));
                assert_eq!((p.grants.len(), p.grants[0].collections.len()), (1, 1), "{}", p.name);
                assert_eq!(text(assignment(&inventory, &o.assignment_id), "scope"), account_path(&o.account));
            }
            // principals that never send a request
            assert_eq!(by("remove").len(), 3);
            for o in by("remove") {
                let p = principal(&o.principal_id).expect("a principal");
                assert!(!p.has_data() && p.workload == Workload::NoData && !g.control.is_admin(p), "{}", p.name);
            }
            // a group, named one by an Azure role assignment
            let group = by("group");
            assert_eq!(group.len(), 1);
            assert_eq!(group[0].principal_id, inventory.group_id);
            let azure = inventory.azure_role_assignments.as_array().expect("a list");
            assert!(
                azure
                    .iter()
                    .any(|a| text(a, "principalId") == inventory.group_id && text(a, "principalType") == "Group")
            );
            let custom = text(assignment(&inventory, &group[0].assignment_id), "roleDefinitionId").to_string();
            let definitions = inventory.role_definitions.as_array().expect("a list");
            let role = definitions.iter().find(|d| text(d, "id") == custom).expect("the custom role defined");
            assert_eq!(text(role, "typePropertiesType"), "CustomRole");
            assert!(!role["permissions"][0]["dataActions"].to_string().contains("delete"));
            // every grant of the tenant has its assignment, under the id its requests carry
            for p in g.tenant().principals() {
                for grant in &p.grants {
                    let a = assignment(
                        &inventory,
                        &format!(
                            "{}/sqlRoleAssignments/{}",
                            control::arm_path(&g.tenant().accounts[grant.account]),
                            grant.role_assignment_id
                        ),
                    );
                    assert_eq!(text(a, "principalId"), p.object_id);
                }
            }
            // local auth as control.rs has it; the key readers of the key client's account
            let accounts = inventory.accounts.as_array().expect("a list");
            for (i, a) in accounts.iter().enumerate() {
                assert_eq!(a["disableLocalAuth"], json!(g.control.local_auth_disabled[i]));
            }
            assert_eq!(accounts[g.tenant().key_client.account]["disableLocalAuth"], json!(false));
            let rotation = &g.key_rotation_identity().object_id;
            assert!(inventory.key_readers.contains(&(rotation.clone(), "DocumentDB Account Contributor")));
            assert!(inventory.key_readers.iter().any(|(_, role)| *role == "Cosmos DB Account Reader Role"));
            for admin in g.admins() {
                assert!(inventory.key_readers.contains(&(admin.object_id.clone(), "Owner")));
            }
        }
    }
    assert_ne!(generator(1).inventory(), generator(2).inventory());
}

#[test]
fn the_inventory_leaves_every_other_stream_as_it_was() {
    let g = generator(42);
    let from = at(MONDAY);
    let before = g.history(from, from + Duration::days(2), &[]).0;
    let _ = g.inventory();
    assert_eq!(before, g.history(from, from + Duration::days(2), &[]).0);
}
