//! The rules against small hand-made tenants: each case is one thing real tenants do (shared
//! office egress on a Monday morning, MFA prompts, an IPv6 client, a failing app secret)
//! or one attack, built from records of the generator's own shape with the fields that
//! matter set, ingested and evaluated by the real engine.

use crate::common;

use chrono::{DateTime, Duration, Utc};
use common::TestDb;
use serde_json::{Value, json};
use tokentrail::rules::{DetectionConfig, Detector};
use tokentrail::synth::{Event, Generator, Tenant};

pub(crate) const MONDAY_8AM: &str = "2025-03-03T08:00:00Z";

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("test time").with_timezone(&Utc)
}

/// Records made to order, then ingested and evaluated.
pub(crate) struct Case {
    pub(crate) db: TestDb,
    templates: Vec<Event>,
    pub(crate) records: Vec<Value>,
    next_id: u64,
}

impl Case {
    pub(crate) fn new() -> Case {
        // One generated hour holds a record of every category to copy the shape from.
        let generator = Generator::new(Tenant::new(3), 3);
        let templates = generator.baseline(at("2025-03-04T14:00:00Z"), at("2025-03-04T16:00:00Z"));
        Case { db: TestDb::new(), templates, records: Vec::new(), next_id: 0 }
    }

    pub(crate) fn template(&self, category: &str) -> Value {
        let event = self.templates.iter().find(|e| e.category == category);
        event.unwrap_or_else(|| panic!("no {category} record in the generated hours")).record.clone()
    }

    pub(crate) fn id(&mut self) -> String {
        self.next_id += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_id)
    }

    /// An interactive sign-in of user `user` (an object id made from it) from `ip` at `time`.
    pub(crate) fn user_sign_in(&mut self, user: u32, ip: &str, time: DateTime<Utc>, error: u32) {
        self.user_sign_in_to("SignInLogs", user, ip, time, error);
    }

    /// A sign-in of `category` (interactive or not) of user `user`; the last record.
    pub(crate) fn user_sign_in_to(
        &mut self,
        category: &str,
        user: u32,
        ip: &str,
        time: DateTime<Utc>,
        error: u32,
    ) -> &mut Value {
        let r = self.sign_in(category, ip, time, error);
        r["properties"]["userId"] = json!(user_id(user));
        r["properties"]["userPrincipalName"] = json!(format!("user{user}@contoso.com"));
        r
    }

    /// A service principal's sign-in from `ip`.
    pub(crate) fn app_sign_in(&mut self, app: u32, ip: &str, time: DateTime<Utc>, error: u32) {
        let r = self.sign_in("ServicePrincipalSignInLogs", ip, time, error);
        r["properties"]["servicePrincipalId"] = json!(user_id(app + 1000));
        r["properties"]["servicePrincipalName"] = json!(format!("app{app}"));
    }

    /// A sign-in record of `category` from `ip` at `time` with a new id; who it is for stays the
    /// template's until the caller sets it.
    pub(crate) fn sign_in(&mut self, category: &str, ip: &str, time: DateTime<Utc>, error: u32) -> &mut Value {
        let mut r = self.template(category);
        let id = self.id();
        let stamp = time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        r["time"] = json!(stamp);
        r["resultType"] = json!(error.to_string());
        r["callerIpAddress"] = json!(ip);
        let p = &mut r["properties"];
        p["id"] = json!(id);
        p["createdDateTime"] = json!(stamp);
        p["ipAddress"] = json!(ip);
        p["status"] = json!({ "errorCode": error });
        self.records.push(r);
        self.records.last_mut().expect("just pushed")
    }

    /// A data request by user `user` from `ip`.
    pub(crate) fn request(&mut self, user: u32, ip: &str, time: DateTime<Utc>) {
        let mut r = self.template("DataPlaneRequests");
        let id = self.id();
        r["time"] = json!(time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        r["properties"]["activityId"] = json!(id);
        r["properties"]["aadPrincipalId"] = json!(user_id(user));
        r["properties"]["clientIpAddress"] = json!(ip);
        self.records.push(r);
    }

    /// A request signed with the account's primary key from `ip`.
    pub(crate) fn key_request(&mut self, ip: &str, time: DateTime<Utc>) {
        self.request(0, ip, time);
        let r = self.records.last_mut().expect("just pushed");
        r["properties"]["aadPrincipalId"] = json!("");
        r["properties"]["authTokenType"] = json!("PrimaryMasterKey");
    }

    /// Ingests everything and evaluates every rule: (rule, principal, entity) per finding.
    pub(crate) fn findings(&self) -> Vec<(String, String, String)> {
        self.findings_with(&DetectionConfig::default())
    }

    /// [`Case::findings`] with the rules configured by `config`.
    pub(crate) fn findings_with(&self, config: &DetectionConfig) -> Vec<(String, String, String)> {
        let path = self.db.dir.path().join("case.ndjson");
        let mut text = String::new();
        for record in &self.records {
            text.push_str(&record.to_string());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        let report = self.db.ingest(&[path]);
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        let (detector, problems) = Detector::open(&self.db.store, config).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let evaluation = detector.evaluate_after_commit(&self.db.store).unwrap();
        assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
        self.db
            .rows("SELECT rule_id, coalesce(principal_id, '-'), entity FROM findings WHERE status <> 'withdrawn' ORDER BY 1, 2, 3")
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
            .collect()
    }

    pub(crate) fn raised(&self, rule: &str) -> Vec<(String, String)> {
        self.raised_with(&DetectionConfig::default(), rule)
    }

    pub(crate) fn raised_with(&self, config: &DetectionConfig, rule: &str) -> Vec<(String, String)> {
        self.findings_with(config).into_iter().filter(|f| f.0 == rule).map(|f| (f.1, f.2)).collect()
    }
}

pub(crate) fn user_id(n: u32) -> String {
    format!("11111111-0000-4000-8000-{n:012}")
}

const OFFICE_NAT: &str = "73.215.40.10";
const SPRAYER: &str = "185.181.20.33";

#[test]
fn a_monday_morning_of_typos_behind_the_office_nat_is_not_a_spray() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    for user in 0..8 {
        let failed = t + Duration::seconds(40 * user as i64);
        case.user_sign_in(user, OFFICE_NAT, failed, 50126);
        case.user_sign_in(user, OFFICE_NAT, failed + Duration::seconds(50), 0);
        // ...and they go on to work, with tokens from the office address.
        case.request(user, OFFICE_NAT, failed + Duration::minutes(5));
    }
    case.user_sign_in(90, "99.61.1.1", t + Duration::minutes(30), 0);
    let findings = case.findings();
    let sprays: Vec<_> = findings.iter().filter(|f| f.0.contains("spray")).collect();
    assert!(sprays.is_empty(), "typos that were followed by the same users getting in: {sprays:?}");
}

#[test]
fn prompts_expired_sessions_blocks_and_disabled_accounts_are_not_password_guesses() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    for (user, code) in [50074, 70008, 700082, 53003, 50057, 50097, 50125].into_iter().enumerate() {
        case.user_sign_in(user as u32, SPRAYER, t + Duration::seconds(30 * user as i64), code);
    }
    assert_eq!(case.raised("password_spray"), vec![], "no guess among them");
}

#[test]
fn an_app_failing_with_an_expired_secret_is_not_a_spray() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    for app in 0..8 {
        case.app_sign_in(app, "20.121.4.5", t + Duration::seconds(20 * app as i64), 7000215);
    }
    assert_eq!(case.raised("password_spray"), vec![], "service principals do not guess passwords");
}

#[test]
fn a_spray_is_raised_from_one_address_and_from_one_ipv6_network() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    for user in 0..8 {
        case.user_sign_in(user, SPRAYER, t + Duration::seconds(30 * user as i64), 50126);
        // The same attacker from an IPv6 /64: a new interface id for every attempt.
        let v6 = format!("2a02:c7c:4d21:9f00:{:x}::{:x}", 100 + user, 7 * user + 1);
        case.user_sign_in(user + 20, &v6, t + Duration::seconds(30 * user as i64 + 7), 50126);
    }
    // One guess was right: the attacker gets in and reads data.
    case.user_sign_in(3, SPRAYER, t + Duration::minutes(5), 0);
    case.request(3, SPRAYER, t + Duration::minutes(6));
    // Sign-in logs have come in past the request (correlation waits for them).
    case.user_sign_in(90, "99.61.1.1", t + Duration::minutes(20), 0);
    let sprays = case.raised("password_spray");
    assert!(sprays.contains(&("-".into(), format!("ip={SPRAYER}"))), "{sprays:?}");
    assert!(sprays.iter().any(|(_, entity)| entity.ends_with("/64")), "the /64 is one source: {sprays:?}");
    let then = case.raised("spray_then_data_access");
    assert_eq!(then, vec![(user_id(3), format!("ip={SPRAYER}"))]);
}

const VPN_EGRESS: &str = "165.225.8.20";
pub(crate) const HOME: &str = "82.23.83.128";

#[test]
fn a_split_tunnel_vpn_user_and_a_nat_pool_are_not_token_replays() {
    let mut case = Case::new();
    let start = at(MONDAY_8AM);
    for day in 0..12 {
        let t = start + Duration::days(day);
        // User 1 signs in through the VPN; its data goes straight from home.
        case.user_sign_in(1, VPN_EGRESS, t, 0);
        case.request(1, HOME, t + Duration::minutes(3));
        // User 2 signs in from one NAT address, its requests leave from the next one.
        case.user_sign_in(2, "73.215.40.10", t, 0);
        case.request(2, "73.215.40.11", t + Duration::minutes(4));
        case.user_sign_in(90, "99.61.1.1", t + Duration::hours(2), 0);
    }
    assert_eq!(case.raised("ip_not_in_signins"), vec![]);
}

#[test]
fn a_token_replayed_from_a_new_network_is_raised_once_per_network() {
    let mut case = Case::new();
    let start = at(MONDAY_8AM);
    for day in 0..12 {
        let t = start + Duration::days(day);
        case.user_sign_in(1, HOME, t, 0);
        case.request(1, HOME, t + Duration::minutes(3));
        case.user_sign_in(90, "99.61.1.1", t + Duration::hours(2), 0);
    }
    // Day 10: the token is replayed from abroad, from two addresses of one network.
    let replay = start + Duration::days(10) + Duration::minutes(20);
    case.request(1, "105.112.7.9", replay);
    case.request(1, "105.112.7.10", replay + Duration::minutes(1));
    assert_eq!(case.raised("ip_not_in_signins"), vec![(user_id(1), "ip=105.112.7.0/24".to_string())]);
}

#[test]
fn a_workload_in_two_regions_does_not_travel_impossibly() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    // Boydton (East US) and Amsterdam (West Europe) four minutes apart, every hour.
    for hour in 0..6 {
        let h = t + Duration::hours(hour);
        case.app_sign_in(1, "20.121.4.5", h, 0);
        case.app_sign_in(1, "20.103.9.7", h + Duration::minutes(4), 0);
    }
    let amsterdam = |r: &mut Value| {
        let location = &mut r["properties"]["location"];
        location["city"] = json!("Amsterdam");
        location["countryOrRegion"] = json!("NL");
        location["geoCoordinates"] = json!({ "latitude": 52.3676, "longitude": 4.9041 });
    };
    for r in case.records.iter_mut().filter(|r| r["properties"]["ipAddress"] == "20.103.9.7") {
        amsterdam(r);
    }
    assert_eq!(case.raised("impossible_travel"), vec![]);
}

#[test]
fn a_spray_from_many_proxies_is_raised_and_two_offices_mistyping_at_once_are_not() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    // Two offices' Monday typos at the same minutes: 12 users from 2 addresses, all get in.
    for user in 0..12 {
        let nat = if user % 2 == 0 { OFFICE_NAT } else { "99.61.40.10" };
        let failed = t + Duration::seconds(45 * user as i64);
        case.user_sign_in(user, nat, failed, 50126);
        case.user_sign_in(user, nat, failed + Duration::seconds(40), 0);
    }
    // An hour later: 10 users fail once each, each from a different residential proxy...
    let spray = t + Duration::hours(1);
    for user in 20..30 {
        let proxy = format!("98.{}.{}.{}", 200 + user, user * 3, user + 7);
        case.user_sign_in(user, &proxy, spray + Duration::seconds(50 * (user as i64 - 20)), 50126);
    }
    // ...then user 25, who always signed in from home, gets in from one more proxy and reads data.
    case.user_sign_in(25, HOME, t - Duration::days(3), 0);
    case.user_sign_in(25, "76.33.9.14", spray + Duration::minutes(9), 0);
    case.request(25, "76.33.9.14", spray + Duration::minutes(10));
    case.user_sign_in(90, "99.61.1.1", spray + Duration::minutes(40), 0);
    let findings = case.findings();
    let distributed: Vec<_> = findings.iter().filter(|f| f.0 == "distributed_spray").collect();
    assert_eq!(distributed.len(), 1, "one finding for the day: {findings:?}");
    let then: Vec<_> = findings.iter().filter(|f| f.0 == "distributed_spray_then_data_access").collect();
    assert_eq!(then.len(), 1, "{findings:?}");
    assert_eq!(then[0].1, user_id(25));
    assert!(findings.iter().all(|f| !f.0.contains("spray") || f.2 != format!("ip={OFFICE_NAT}")), "{findings:?}");
    let office_day: i64 = case.db.value(
        "SELECT count(*) FROM finding_evidence e JOIN signins s ON s.rowid = e.row_id
         WHERE e.rule_id = 'distributed_spray' AND s.ip_address IN ('73.215.40.10', '99.61.40.10')",
    );
    assert_eq!(office_day, 0, "the offices' typos are not evidence of the spray");
}

#[test]
fn a_risky_portal_sign_in_is_raised_when_its_silent_refresh_reaches_data() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM);
    case.user_sign_in(1, HOME, t - Duration::days(1), 0);
    // High risk, interactive, to the portal: a refresh token for everything the user may do...
    let risky = case.user_sign_in_to("SignInLogs", 1, "105.112.7.9", t, 0);
    for field in ["riskLevelDuringSignIn", "riskLevelAggregated"] {
        risky["properties"][field] = json!("high");
    }
    risky["properties"]["riskState"] = json!("atRisk");
    risky["properties"]["resourceId"] = json!("797f4846-ba00-4fd7-ba43-dac1f8f63013");
    risky["properties"]["authenticationRequirement"] = json!("singleFactorAuthentication");
    // ...used minutes later, silently, for a Cosmos DB token rated on its own (no risk).
    case.user_sign_in_to("NonInteractiveUserSignInLogs", 1, "105.112.7.9", t + Duration::minutes(10), 0);
    case.request(1, "105.112.7.9", t + Duration::minutes(11));
    // User 2's risky sign-in passed MFA: the risk policy remediated it.
    let remediated = case.user_sign_in_to("SignInLogs", 2, HOME, t, 0);
    remediated["properties"]["riskLevelDuringSignIn"] = json!("medium");
    remediated["properties"]["authenticationRequirement"] = json!("multiFactorAuthentication");
    case.request(2, HOME, t + Duration::minutes(2));
    // Both user logs go on past the requests (each is a clock of its own).
    case.user_sign_in(90, "99.61.1.1", t + Duration::minutes(40), 0);
    case.user_sign_in_to("NonInteractiveUserSignInLogs", 90, "99.61.1.1", t + Duration::minutes(40), 0);
    assert_eq!(case.raised("risky_signin_data_access"), vec![(user_id(1), "ip=105.112.7.9".to_string())]);
}

#[test]
fn a_new_key_client_is_raised_for_its_start_not_every_day_after() {
    let mut case = Case::new();
    let start = at(MONDAY_8AM);
    for day in 0..10 {
        let t = start + Duration::days(day);
        case.user_sign_in(1, HOME, t, 0);
        case.request(1, HOME, t + Duration::minutes(1));
        // From day 4 (after the 3 learning days) an old app uses the key, three times a day.
        if day >= 4 {
            for n in 0..3 {
                case.key_request("52.168.4.4", t + Duration::minutes(10 * n));
            }
        }
    }
    assert_eq!(case.raised("key_auth_access").len(), 1);
    let evidence: i64 = case.db.value("SELECT count FROM findings WHERE rule_id = 'key_auth_access'");
    assert_eq!(evidence, 3, "the client's first hour, not its next six days");
}

#[test]
fn a_token_used_past_its_lifetime_is_raised_once_an_hour_and_a_managed_identity_has_a_day() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM) + Duration::days(2);
    case.user_sign_in(1, HOME, t - Duration::days(2), 0);
    // User 1 signs in once; its "token" is still used three hours later, every ten minutes,
    // with no refresh on record: minted elsewhere.
    case.user_sign_in(1, HOME, t, 0);
    for n in 0..18 {
        case.request(1, HOME, t + Duration::minutes(10 * n));
    }
    // A managed identity's token, cached by the platform, used ten hours after its sign-in.
    let mi = case.sign_in("ManagedIdentitySignInLogs", "", t, 0);
    mi["properties"]["servicePrincipalId"] = json!(user_id(500));
    case.request(500, "10.1.2.3", t + Duration::hours(10));
    // Every sign-in log arrives, up to past the requests.
    case.user_sign_in(90, "99.61.1.1", t + Duration::hours(12), 0);
    case.user_sign_in_to("NonInteractiveUserSignInLogs", 90, "99.61.1.1", t + Duration::hours(12), 0);
    case.app_sign_in(90, "52.168.9.9", t + Duration::hours(12), 0);
    assert_eq!(case.raised("no_prior_signin"), vec![(user_id(1), "account=".to_string() + &account(&case))]);
    // 18 requests over three hours; the first 90 minutes are the token's life; then one an hour.
    let count: i64 = case.db.value("SELECT count FROM findings WHERE rule_id = 'no_prior_signin'");
    assert_eq!(count, 2, "one request for each hour past the token's life");
}

/// The account of the template's requests.
pub(crate) fn account(case: &Case) -> String {
    case.db.value("SELECT any_value(account) FROM cosmos_requests")
}

#[test]
fn a_principal_back_after_forty_days_is_dormant_and_a_new_hire_is_not() {
    let mut case = Case::new();
    let start = at(MONDAY_8AM);
    // User 2 reads data on day 0, then nothing for 40 days, then reads again; someone else keeps
    // the data flowing every day in between.
    case.user_sign_in(2, HOME, start, 0);
    case.request(2, HOME, start + Duration::minutes(1));
    for day in 0..=41 {
        let t = start + Duration::days(day);
        case.user_sign_in(1, HOME, t, 0);
        case.request(1, HOME, t + Duration::minutes(1));
    }
    let back = start + Duration::days(40) + Duration::hours(2);
    case.user_sign_in(2, HOME, back, 0);
    case.request(2, HOME, back + Duration::minutes(1));
    // User 3 joins on day 40: the first request of someone never seen proves no silence.
    case.user_sign_in(3, "73.215.40.11", back, 0);
    case.request(3, "73.215.40.11", back + Duration::minutes(2));
    assert_eq!(case.raised("dormant_principal"), vec![(user_id(2), String::new())]);
    let detail: String = case.db.value("SELECT summary FROM findings WHERE rule_id = 'dormant_principal'");
    assert!(detail.contains("40 days of silence"), "{detail}");
}

#[test]
fn a_request_is_tied_to_the_sign_in_to_cosmos_db_not_a_later_one_for_mail() {
    let mut case = Case::new();
    let t = at(MONDAY_8AM) + Duration::days(1);
    let phone = "172.58.20.7";
    case.user_sign_in(4, HOME, t - Duration::days(1), 0);
    case.user_sign_in_to("SignInLogs", 4, HOME, t, 0)["properties"]["resourceId"] =
        json!("a232010e-820c-4083-83bb-3ace5fc29d0b");
    // Twenty minutes later the user's phone refreshes mail from the carrier's network.
    let mail = case.user_sign_in_to("NonInteractiveUserSignInLogs", 4, phone, t + Duration::minutes(20), 0);
    mail["properties"]["resourceId"] = json!("00000002-0000-0ff1-ce00-000000000000");
    case.request(4, HOME, t + Duration::minutes(30));
    // Without any sign-in to Cosmos DB, the latest sign-in of any kind still stands.
    case.user_sign_in_to("SignInLogs", 5, HOME, t, 0)["properties"]["resourceId"] =
        json!("c44b4083-3bb0-49c1-b47d-974e53cbdf3c");
    case.request(5, HOME, t + Duration::minutes(30));
    case.findings();
    for source in ["request_signins", "request_context"] {
        let got = case
            .db
            .rows(&format!("SELECT principal_id, signin_ip, signin_resource_id FROM {source} ORDER BY principal_id"));
        assert_eq!(
            got,
            [
                vec![user_id(4), HOME.to_string(), "a232010e-820c-4083-83bb-3ace5fc29d0b".into()],
                vec![user_id(5), HOME.to_string(), "c44b4083-3bb0-49c1-b47d-974e53cbdf3c".into()],
            ],
            "{source}"
        );
    }
}

/// A read of `bytes` by user `user` from HOME.
fn read(case: &mut Case, user: u32, time: DateTime<Utc>, bytes: u64) {
    case.request(user, HOME, time);
    let r = case.records.last_mut().expect("just pushed");
    r["properties"]["operationName"] = json!("Read");
    r["properties"]["responseLength"] = json!(bytes.to_string());
}

const MIB: u64 = 1 << 20;

#[test]
fn an_export_across_two_clock_hours_is_one_spike_and_drips_over_a_day_or_across_midnight_are_daily_ones() {
    let mut case = Case::new();
    let start = at(MONDAY_8AM);
    for day in 0..12 {
        let t = start + Duration::days(day);
        case.user_sign_in(6, HOME, t, 0);
        case.user_sign_in(7, HOME, t, 0);
        read(&mut case, 6, t + Duration::minutes(10), MIB);
        read(&mut case, 7, t + Duration::minutes(10), 5 * MIB);
        case.user_sign_in(8, HOME, t, 0);
        read(&mut case, 8, t + Duration::minutes(10), 5 * MIB);
    }
    // Day 12: user 6 exports 120 MiB from 10:30 to 11:29, 60 MiB in each clock hour (the floor
    // is 100 MiB an hour).
    let export = start + Duration::days(12) + Duration::minutes(150);
    case.user_sign_in(6, HOME, export - Duration::minutes(5), 0);
    for n in 0..60 {
        read(&mut case, 6, export + Duration::minutes(n), 2 * MIB);
    }
    // Day 13: user 7 reads 30 MiB every hour of the day: 720 MiB, no hour near the floor.
    let drip = start + Duration::days(13) - Duration::hours(8);
    for hour in 0..24 {
        let t = drip + Duration::hours(hour);
        case.user_sign_in(7, HOME, t, 0);
        read(&mut case, 7, t + Duration::minutes(5), 30 * MIB);
    }
    // User 8 drips 50 MiB an hour from 18:00 on day 12 to 06:00 on day 13: 600 MiB in twelve
    // hours, 300 MiB on each side of midnight.
    let night = start + Duration::days(12) + Duration::hours(10);
    for hour in 0..12 {
        let t = night + Duration::hours(hour);
        case.user_sign_in(8, HOME, t, 0);
        read(&mut case, 8, t + Duration::minutes(5), 50 * MIB);
    }
    let findings = case.findings();
    let of = |rule: &str| -> Vec<String> { findings.iter().filter(|f| f.0 == rule).map(|f| f.1.clone()).collect() };
    assert_eq!(of("data_volume_spike"), vec![user_id(6)]);
    assert_eq!(of("data_volume_spike_daily"), vec![user_id(7), user_id(8)]);
    let counts = case.db.rows(
        "SELECT rule_id, coalesce(principal_id, ''), count::VARCHAR FROM findings
         WHERE rule_id LIKE 'data_volume_spike%' ORDER BY 1, 2",
    );
    assert_eq!(
        counts,
        [
            vec!["data_volume_spike".to_string(), user_id(6), "60".into()],
            vec!["data_volume_spike_daily".to_string(), user_id(7), "24".into()],
            vec!["data_volume_spike_daily".to_string(), user_id(8), "12".into()],
        ],
        "the export's 60 reads; the first read of each of the drips' hours"
    );
}

/// Sign-ins of every category but managed identities', each day of `days` from `start`, and a
/// request of user 1 after each.
fn every_log_but_managed_identities(case: &mut Case, start: DateTime<Utc>, days: i64) {
    for day in 0..days {
        let t = start + Duration::days(day);
        case.user_sign_in(1, HOME, t, 0);
        case.user_sign_in_to("NonInteractiveUserSignInLogs", 1, HOME, t + Duration::minutes(30), 0);
        case.app_sign_in(1, "52.168.9.9", t, 0);
        case.request(1, HOME, t + Duration::minutes(31));
    }
}

#[test]
fn a_managed_identity_log_never_exported_is_one_configuration_finding_not_one_an_hour() {
    let mut case = Case::new();
    let start = at(MONDAY_8AM);
    every_log_but_managed_identities(&mut case, start, 4);
    // A managed identity works every hour of days 2 and 3; its sign-ins are not exported.
    for hour in 0..48 {
        case.request(500, "10.1.2.3", start + Duration::days(2) + Duration::hours(hour));
    }
    let findings = case.findings();
    assert!(findings.iter().all(|f| f.0 != "no_prior_signin"), "{findings:?}");
    let missing: Vec<_> = findings.iter().filter(|f| f.0 == "signin_log_missing").collect();
    assert_eq!(missing.len(), 1, "{findings:?}");
    assert_eq!(missing[0].2, "missing=ManagedIdentitySignInLogs");
}

#[test]
fn late_user_sign_in_logs_hold_back_user_requests_but_not_service_principals() {
    let mut case = Case::new();
    let start = at(MONDAY_8AM);
    every_log_but_managed_identities(&mut case, start, 3);
    for day in 0..3 {
        let mi = case.sign_in("ManagedIdentitySignInLogs", "", start + Duration::days(day), 0);
        mi["properties"]["servicePrincipalId"] = json!(user_id(500));
    }
    // The user logs stop at day 2 08:30; the service principal and managed identity logs go on
    // to 13:00, as Entra ID's categories arrive with their own delays.
    let t = start + Duration::days(2);
    for hour in 1..=5 {
        case.app_sign_in(1, "52.168.9.9", t + Duration::hours(hour), 0);
        let mi = case.sign_in("ManagedIdentitySignInLogs", "", t + Duration::hours(hour), 0);
        mi["properties"]["servicePrincipalId"] = json!(user_id(500));
    }
    // User 1 at 10:45: its refresh is in logs that have not arrived yet. App 2 at 10:45, last
    // signed in on day 0: its log is here and has nothing.
    case.request(1, HOME, t + Duration::minutes(165));
    case.app_sign_in(2, "52.168.9.10", start, 0);
    case.request(1002, "52.168.9.10", t + Duration::minutes(165));
    assert_eq!(case.raised("no_prior_signin"), vec![(user_id(1002), "account=".to_string() + &account(&case))]);
    assert!(case.raised("signin_log_missing").is_empty());
}

#[test]
fn every_stream_stopping_at_once_is_a_silence_once_the_hubs_are_found_empty() {
    let mut case = Case::new();
    let start = at(MONDAY_8AM);
    // Nine days of steady traffic on every stream, five events an hour each, until 12:00 on day
    // 9, when the diagnostic settings are removed everywhere.
    let stop = start + Duration::days(9) + Duration::hours(4);
    let mut t = start;
    while t < stop {
        for n in 0..5 {
            let at = t + Duration::minutes(10 * n);
            case.user_sign_in(1, HOME, at, 0);
            case.user_sign_in_to("NonInteractiveUserSignInLogs", 1, HOME, at, 0);
            case.request(1, HOME, at + Duration::minutes(1));
        }
        t += Duration::hours(1);
    }
    assert!(case.findings().iter().all(|f| f.0 != "source_silent"), "nothing is silent yet");
    // Six hours later the Event Hubs source finds its hubs empty: every stream stopped.
    let (detector, _) = Detector::open(&case.db.store, &DetectionConfig::default()).unwrap();
    detector.note_caught_up(&case.db.store, "eventhubs", stop + Duration::hours(6)).unwrap();
    let evaluation = detector.evaluate_after_commit(&case.db.store).unwrap();
    assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
    let silent = case.db.rows(
        "SELECT entity, strftime(last_seen::TIMESTAMP, '%H:%M'), summary FROM findings
         WHERE rule_id = 'source_silent' ORDER BY entity",
    );
    let streams: Vec<&str> = silent.iter().map(|r| r[0].as_str()).collect();
    let account = account(&case);
    assert_eq!(
        streams,
        [
            format!("stream=cosmos:{account}").as_str(),
            "stream=signins:NonInteractiveUserSignInLogs",
            "stream=signins:SignInLogs"
        ]
    );
    assert!(silent.iter().all(|r| r[2].contains("(still silent)")), "{silent:?}");
    // The same hub found empty again a few seconds later changes nothing.
    detector.note_caught_up(&case.db.store, "eventhubs", stop + Duration::hours(6) + Duration::seconds(5)).unwrap();
    let clock: String = case.db.value("SELECT strftime(caught_up_until::TIMESTAMP, '%H:%M:%S') FROM source_clock");
    assert_eq!(clock, "18:00:00");
}

#[test]
fn a_large_tenant_mistyping_all_day_is_not_a_distributed_spray_but_a_surge_is() {
    let mut case = Case::new();
    let start = at(MONDAY_8AM);
    // Eight days in which, every quarter of an hour, ten users somewhere fail a password once
    // and give up: the background of a big tenant.
    for span in 0..(8 * 96) {
        let t = start + Duration::minutes(15 * span);
        for n in 0..10 {
            let user = 100 + ((span * 10 + n) % 500) as u32;
            let ip = format!("98.{}.{}.{}", 10 + n, (span / 200) % 200, span % 200 + 1);
            case.user_sign_in(user, &ip, t + Duration::seconds(60 * n), 50126);
        }
    }
    // Then forty users fail within ten minutes from thirty proxies.
    let spray = start + Duration::days(8) + Duration::hours(3);
    for n in 0..40 {
        case.user_sign_in(
            700 + n,
            &format!("45.83.{}.{}", n % 30, 7),
            spray + Duration::seconds(15 * i64::from(n)),
            50126,
        );
    }
    let days: Vec<String> = case.raised("distributed_spray").into_iter().map(|(_, entity)| entity).collect();
    assert_eq!(days, vec![format!("day={}", spray.format("%Y-%m-%d"))], "only the surge");
}

#[test]
fn sign_ins_on_a_balanced_hub_are_a_configuration_finding_on_a_broadcast_hub_not() {
    for (role, raised) in [("balanced", vec![("-".to_string(), "hub=signins-hub".to_string())]), ("broadcast", vec![])]
    {
        let mut case = Case::new();
        case.user_sign_in(1, "203.0.113.9", at(MONDAY_8AM), 0);
        case.user_sign_in(2, "198.51.100.7", at(MONDAY_8AM) + Duration::minutes(1), 0);
        // The rows' source is the file the case is ingested from: here it stands for the hub.
        let source = case.db.dir.path().join("case.ndjson").display().to_string();
        case.db
            .store
            .connection()
            .unwrap()
            .execute("INSERT INTO hub_roles VALUES (?, 'signins-hub', ?, now())", duckdb::params![source, role])
            .unwrap();
        assert_eq!(case.raised("balanced_hub_signins"), raised, "a {role} hub");
    }
}
