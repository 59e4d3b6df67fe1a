//! The named attack scenarios: each one's events and the ground truth a detection is
//! checked against.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use rand::RngExt;
use rand::seq::{IndexedRandom, SliceRandom};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::cosmos::{
    Caller, DELETES, EXPORT, Op, PROBES, READS, aad_caller, document_request, key_caller, key_request,
    metadata_request, push_request, query_statistics,
};
use super::realistic::residential_proxy;
use super::signins::{COSMOS_RESOURCE, SignIn};
use super::tenant::{SERVICE_COSMOS_AGENTS, grant, place, public_ip};
use super::wire::{Prng, STREAM_SCENARIO, guid, jitter, pick_weighted, rfc3339, stream_rng, whole_ticks};
use super::{Burst, CosmosAccount, Event, Generator, Grant, Habit, Place, Principal, PrincipalKind, Profile, Workload};

/// Addresses the scenarios use as "known bad" (Tor exit style); detections take them as a
/// user-supplied threat-intelligence list.
pub const THREAT_INTEL_IPS: &[&str] =
    &["185.220.101.47", "185.220.100.252", "185.220.101.134", "185.220.102.8", "185.220.103.119"];

/// Where attackers come from: no user lives in these countries.
pub(super) const FOREIGN_PLACES: &[Place] = &[
    place("Lagos", "Lagos", "NG", 6.5244, 3.3792, 60, 36873, [105, 112]),
    place("Sao Paulo", "Sao Paulo", "BR", -23.5505, -46.6333, -180, 28573, [177, 68]),
    place("Singapore", "Singapore", "SG", 1.3521, 103.8198, 480, 14061, [159, 89]),
    place("Hanoi", "Hanoi", "VN", 21.0278, 105.8342, 420, 45899, [113, 160]),
    place("Bucharest", "Bucuresti", "RO", 44.4268, 26.1025, 120, 9009, [185, 181]),
];
const TOR_PLACE: Place = place("Frankfurt am Main", "Hesse", "DE", 50.1109, 8.6821, 60, 60729, [185, 220]);
/// A virtual private server at a hosting provider: outside Azure, in the tenant's own country.
pub(super) const VPS_PLACE: Place =
    place("North Bergen", "New Jersey", "US", 40.8043, -74.0121, -300, 14061, [167, 99]);

pub(super) const KEY_THIEF_AGENT: &str =
    "azsdk-python-cosmos/4.5.1 Python/3.11.8 (Linux-6.6.9-amd64-x86_64-with-glibc2.37)";
/// What an attacker types into a customer id field that is pasted into a query: fuzzing
/// (each leaves the query malformed: Cosmos DB rejects it, 400), then filters that widen it.
const FUZZ_INPUTS: &[&str] = &["'", "')", "' AND", "'--", "1' ORDER BY 1", "' OR", "'))", "x'y"];
const INJECTED_INPUTS: &[&str] = &[
    "' OR 1=1 --",
    "x' OR 'a'='a",
    "' OR true --",
    "' OR IS_DEFINED(c.id) --",
    "'; SELECT * FROM c --",
    "' UNION SELECT * FROM c --",
];
/// Hours of the slow exfiltration scenario.
const SLOW_HOURS: i64 = 10;
pub(super) const NOVEL_AGENTS: &[&str] = &["python-requests/2.31.0", "curl/8.5.0", "PostmanRuntime/7.37.3"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    ForeignIpToken,
    KeyBasedAccess,
    SprayThenDataAccess,
    BulkExport,
    MassDelete,
    PermissionProbing,
    CollectionEnumeration,
    ImpossibleTravel,
    DormantPrincipal,
    NewUserAgent,
    ThreatIntelIp,
    TokenWithoutSignIn,
    DistributedSpray,
    ContainerDeleted,
    DisabledAccountAttempts,
    DeviceCodePhish,
    RotatedKeyTried,
    WorkloadTokenStolen,
    SlowExfiltration,
    KeysListedThenUsed,
    OffHoursRoleGrant,
    LocalAuthReenabled,
    SpCredentialAdded,
    DiagnosticSettingRemoved,
    QueryInjection,
}

impl Scenario {
    pub fn all() -> &'static [Scenario] {
        use Scenario::*;
        &[
            // First: a history's slots are in proportion to how long scenarios last, so the
            // out-of-hours grant (up to fourteen hours) placed before the others moves them
            // later, where rules that learn for a week (workload_identity_new_network) judge them.
            KeysListedThenUsed,
            OffHoursRoleGrant,
            LocalAuthReenabled,
            SpCredentialAdded,
            DiagnosticSettingRemoved,
            ForeignIpToken,
            KeyBasedAccess,
            SprayThenDataAccess,
            BulkExport,
            MassDelete,
            PermissionProbing,
            CollectionEnumeration,
            ImpossibleTravel,
            // Before DormantPrincipal: a history places scenarios in order, and the dormant
            // principal (last used in the window's first hours) must wake more than 30 days later.
            ContainerDeleted,
            DisabledAccountAttempts,
            DeviceCodePhish,
            RotatedKeyTried,
            WorkloadTokenStolen,
            SlowExfiltration,
            DormantPrincipal,
            NewUserAgent,
            ThreatIntelIp,
            TokenWithoutSignIn,
            DistributedSpray,
            QueryInjection,
        ]
    }

    pub fn name(&self) -> &'static str {
        match self {
            Scenario::ForeignIpToken => "foreign_ip_token",
            Scenario::KeyBasedAccess => "key_based_access",
            Scenario::SprayThenDataAccess => "spray_then_data_access",
            Scenario::BulkExport => "bulk_export",
            Scenario::MassDelete => "mass_delete",
            Scenario::PermissionProbing => "permission_probing",
            Scenario::CollectionEnumeration => "collection_enumeration",
            Scenario::ImpossibleTravel => "impossible_travel",
            Scenario::DormantPrincipal => "dormant_principal",
            Scenario::NewUserAgent => "new_user_agent",
            Scenario::ThreatIntelIp => "threat_intel_ip",
            Scenario::TokenWithoutSignIn => "token_without_signin",
            Scenario::DistributedSpray => "distributed_spray",
            Scenario::ContainerDeleted => "container_deleted",
            Scenario::DisabledAccountAttempts => "disabled_account_attempts",
            Scenario::DeviceCodePhish => "device_code_phish",
            Scenario::RotatedKeyTried => "rotated_key_tried",
            Scenario::WorkloadTokenStolen => "workload_token_stolen",
            Scenario::SlowExfiltration => "slow_exfiltration",
            Scenario::KeysListedThenUsed => "keys_listed_then_used",
            Scenario::OffHoursRoleGrant => "off_hours_role_grant",
            Scenario::LocalAuthReenabled => "local_auth_reenabled",
            Scenario::SpCredentialAdded => "sp_credential_added",
            Scenario::DiagnosticSettingRemoved => "diagnostic_setting_removed",
            Scenario::QueryInjection => "query_injection",
        }
    }

    /// The rules this scenario is there to raise for its principal (or, for findings
    /// without one, naming its address or account): the first list always; each rule of
    /// the second by at least one of the scenarios naming it (a user sprayed from a country
    /// earlier has no new country when travelling there later).
    pub fn rules(&self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Scenario::ForeignIpToken => (&["ip_not_in_signins"], &[]),
            Scenario::KeyBasedAccess => (&["key_auth_access"], &[]),
            Scenario::SprayThenDataAccess => {
                (&["spray_then_data_access", "password_spray"], &["risky_signin_data_access", "new_country_signin"])
            }
            Scenario::BulkExport => (&["data_volume_spike"], &[]),
            Scenario::MassDelete => (&["mass_delete"], &[]),
            Scenario::PermissionProbing => (&["permission_probing"], &["new_collection_for_principal"]),
            Scenario::CollectionEnumeration => (&["collection_enumeration"], &[]),
            Scenario::ImpossibleTravel => (&["impossible_travel"], &["new_country_signin"]),
            Scenario::DormantPrincipal => (&["dormant_principal"], &[]),
            Scenario::NewUserAgent => (&["new_user_agent"], &[]),
            Scenario::ThreatIntelIp => (&["threat_intel_ip"], &["risky_signin_data_access"]),
            Scenario::TokenWithoutSignIn => (&["no_prior_signin"], &[]),
            Scenario::DistributedSpray => (&["distributed_spray", "distributed_spray_then_data_access"], &[]),
            Scenario::ContainerDeleted => (&["container_or_database_deleted"], &[]),
            Scenario::DisabledAccountAttempts => (&["disabled_account_attempts"], &[]),
            Scenario::DeviceCodePhish => (&["weak_auth_token_reaches_data"], &[]),
            Scenario::RotatedKeyTried => (&["key_client_auth_failures"], &[]),
            Scenario::WorkloadTokenStolen => (&["workload_identity_new_network"], &[]),
            Scenario::SlowExfiltration => (&["data_volume_spike_daily"], &[]),
            Scenario::KeysListedThenUsed => (&["listkeys_then_key_access"], &["key_auth_access"]),
            Scenario::OffHoursRoleGrant => (&["role_granted_then_used"], &[]),
            Scenario::LocalAuthReenabled => (&["local_auth_reenabled"], &[]),
            Scenario::SpCredentialAdded => (&["sp_credential_added_then_data_access"], &[]),
            Scenario::DiagnosticSettingRemoved => (&["diagnostic_setting_removed"], &[]),
            Scenario::QueryInjection => (&["cosmos_query_injection"], &[]),
        }
    }

    /// About how long the scenario's events last from its start: a history gives it a slot
    /// that holds it.
    pub fn lasts(&self) -> Duration {
        match self {
            Scenario::SlowExfiltration => Duration::hours(SLOW_HOURS + 1),
            // Waits for the end of a working day (at most twelve hours), then an hour.
            Scenario::OffHoursRoleGrant => Duration::hours(14),
            _ => Duration::hours(1),
        }
    }

    pub fn parse(s: &str) -> Result<Scenario, String> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Scenario::all().iter().copied().find(|sc| sc.name() == wanted).ok_or_else(|| {
            let names: Vec<&str> = Scenario::all().iter().map(Scenario::name).collect();
            format!("unknown scenario {s:?}; valid: {}", names.join(", "))
        })
    }
}

/// A scenario's RNG stream key from its name (FNV-1a), so that adding or reordering
/// scenarios leaves the others' events as they were.
fn name_key(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)) >> 8
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Scenario, String> {
        Scenario::parse(s)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub scenario: String,
    pub principal_id: Option<String>,
    pub principal_name: Option<String>,
    /// Cosmos account name (the last segment of its `resourceId`, lower case).
    pub account: String,
    #[serde(with = "rfc3339")]
    pub start: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    pub end: DateTime<Utc>,
    pub source_ip: Option<String>,
    pub description: String,
}

impl GroundTruth {
    /// Whether a finding (its rule, principal, entity, and first and last evidence times) is
    /// this scenario's doing: it overlaps the scenario's window, from two hours before to a day
    /// after it (the compromised principal's next sign-in from home is impossible travel too),
    /// and involves the scenario's principal, or, without one, names its address or account,
    /// or comes from a rule meant for it (a spray over many addresses names none of them).
    pub fn explains(
        &self,
        rule: &str,
        principal_id: Option<&str>,
        entity: &str,
        first: DateTime<Utc>,
        last: DateTime<Utc>,
    ) -> bool {
        let overlaps = first <= self.end + Duration::hours(24) && last >= self.start - Duration::hours(2);
        let meant = || {
            Scenario::parse(&self.scenario).is_ok_and(|s| {
                let (primary, also) = s.rules();
                primary.contains(&rule) || also.contains(&rule)
            })
        };
        let who = match (&self.principal_id, principal_id) {
            (Some(ours), Some(theirs)) => ours == theirs,
            (Some(_), None) | (None, None) => {
                self.source_ip.as_deref().is_some_and(|ip| entity.contains(ip))
                    || (!self.account.is_empty() && entity.contains(&self.account))
                    || meant()
            }
            (None, Some(_)) => false,
        };
        overlaps && who
    }
}

/// What a scenario reports about itself; the window comes from its events.
pub(super) struct Plan {
    principal: Option<(String, String)>,
    account: String,
    source_ip: Option<String>,
    description: String,
}

impl Plan {
    pub(super) fn by(p: &Principal, account: &CosmosAccount, ip: &str, description: String) -> Option<Plan> {
        let principal = Some((p.object_id.clone(), p.name.clone()));
        Some(Plan { principal, account: account.name.clone(), source_ip: Some(ip.to_string()), description })
    }
}

impl Generator {
    /// The events of one scenario starting at `at`, and its ground truth.
    pub fn scenario(&self, scenario: Scenario, at: DateTime<Utc>) -> (Vec<Event>, GroundTruth) {
        let at = whole_ticks(at);
        let stream = STREAM_SCENARIO + name_key(scenario.name());
        let rng = &mut stream_rng(self.seed, stream, at.timestamp_micros() as u64);
        let mut events = Vec::new();
        let out = &mut events;
        let plan = match scenario {
            Scenario::ForeignIpToken => self.foreign_ip_token(rng, at, out),
            Scenario::KeyBasedAccess => self.key_based_access(rng, at, out),
            Scenario::SprayThenDataAccess => self.spray_then_data_access(rng, at, out, false),
            Scenario::DistributedSpray => self.spray_then_data_access(rng, at, out, true),
            Scenario::BulkExport => self.bulk_export(rng, at, out),
            Scenario::MassDelete => self.mass_delete(rng, at, out),
            Scenario::PermissionProbing => self.permission_probing(rng, at, out),
            Scenario::CollectionEnumeration => self.collection_enumeration(rng, at, out),
            Scenario::ImpossibleTravel => self.impossible_travel(rng, at, out),
            Scenario::DormantPrincipal => self.dormant_principal(rng, at, out),
            Scenario::NewUserAgent => self.new_user_agent(rng, at, out),
            Scenario::ThreatIntelIp => self.threat_intel_ip(rng, at, out),
            Scenario::TokenWithoutSignIn => self.token_without_sign_in(rng, at, out),
            Scenario::ContainerDeleted => self.container_deleted(rng, at, out),
            Scenario::DisabledAccountAttempts => self.disabled_account_attempts(rng, at, out),
            Scenario::DeviceCodePhish => self.device_code_phish(rng, at, out),
            Scenario::RotatedKeyTried => self.rotated_key_tried(rng, at, out),
            Scenario::WorkloadTokenStolen => self.workload_token_stolen(rng, at, out),
            Scenario::SlowExfiltration => self.slow_exfiltration(rng, at, out),
            Scenario::KeysListedThenUsed => self.keys_listed_then_used(rng, at, out),
            Scenario::OffHoursRoleGrant => self.off_hours_role_grant(rng, at, out),
            Scenario::LocalAuthReenabled => self.local_auth_reenabled(rng, at, out),
            Scenario::SpCredentialAdded => self.sp_credential_added(rng, at, out),
            Scenario::DiagnosticSettingRemoved => self.diagnostic_setting_removed(rng, at, out),
            Scenario::QueryInjection => self.query_injection(rng, at, out),
        };
        events.sort_by_key(|e| e.time);
        let plan = plan.unwrap_or_else(|| {
            events.clear();
            let description = "the tenant has no principal or account eligible for this scenario".to_string();
            Plan { principal: None, account: String::new(), source_ip: None, description }
        });
        let (principal_id, principal_name) = plan.principal.unzip();
        let truth = GroundTruth {
            scenario: scenario.name().to_string(),
            principal_id,
            principal_name,
            account: plan.account,
            start: events.first().map_or(at, |e| e.time),
            end: events.last().map_or(at, |e| e.time),
            source_ip: plan.source_ip,
            description: plan.description,
        };
        (events, truth)
    }

    /// A data principal, excluding the dormant and the nightly batch, accepted by `allow`.
    pub(super) fn pick(&self, rng: &mut Prng, allow: impl Fn(&Principal) -> bool) -> Option<&Principal> {
        let pool: Vec<&Principal> = self
            .tenant
            .principals()
            .filter(|p| p.has_data() && !p.dormant && p.workload != Workload::Etl && allow(p))
            .collect();
        pool.choose(rng).copied()
    }

    pub(super) fn grant_of<'a>(&'a self, rng: &mut Prng, p: &'a Principal) -> Option<(&'a Grant, &'a CosmosAccount)> {
        let grant = p.grants.choose(rng)?;
        Some((grant, self.tenant.accounts.get(grant.account)?))
    }

    fn token_sign_in(&self, rng: &mut Prng, p: &Principal, t: DateTime<Utc>, ip: &str, place: &Place) -> Event {
        self.sign_in_event(rng, &SignIn::token(p, t, ip, place, COSMOS_RESOURCE))
    }

    fn foreign_ip_token(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let p = self.pick(rng, |p| p.kind != PrincipalKind::ManagedIdentity)?;
        let (grant, account) = self.grant_of(rng, p)?;
        let home_ip = p.ips.first()?;
        let place = FOREIGN_PLACES.choose(rng)?;
        let ip = public_ip(rng, place);
        // Realistic: replayed through a residential proxy in the owner's own country.
        let proxy = (self.profile == Profile::Realistic).then(|| residential_proxy(rng, p.home));
        let (place, ip) = match &proxy {
            Some(proxy) => (proxy, public_ip(rng, proxy)),
            None => (place, ip),
        };
        // The owner keeps signing in from home while the stolen token is replayed abroad.
        out.push(self.token_sign_in(rng, p, at, home_ip, p.home));
        let refresh = at + Duration::minutes(30) + jitter(rng, Duration::minutes(15));
        out.push(self.token_sign_in(rng, p, refresh, home_ip, p.home));
        let count = rng.random_range(25..60);
        let burst = Burst::one(grant, &ip, at + Duration::minutes(1), Duration::minutes(50), count, READS);
        self.burst(rng, p, &burst, out, |_, _| {});
        let what = format!(
            "{} read {} from {ip} ({}), where it never signed in; its sign-ins stayed in {}",
            p.name, account.name, place.country, p.home.country
        );
        Plan::by(p, account, &ip, what)
    }

    fn key_based_access(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let account = self.tenant.accounts.choose(rng)?;
        let place = FOREIGN_PLACES.choose(rng)?;
        let ip = public_ip(rng, place);
        let span = Duration::minutes(rng.random_range(3..10));
        let caller = key_caller("PrimaryMasterKey", &ip, KEY_THIEF_AGENT);
        for _ in 0..rng.random_range(80..200) {
            let time = at + jitter(rng, span);
            let r = key_request(rng, account, time, EXPORT, caller)?;
            push_request(rng, &r, out);
        }
        let description = format!(
            "burst of primary-key requests on {} from {ip} ({}), not the known key client",
            account.name, place.country
        );
        Some(Plan { principal: None, account: account.name.clone(), source_ip: Some(ip), description })
    }

    /// A password spray that finds a password, and the victim's data read with it: from one
    /// foreign address, or (`distributed`) from residential proxies in the victim's country,
    /// one address per attempt.
    fn spray_then_data_access(
        &self,
        rng: &mut Prng,
        at: DateTime<Utc>,
        out: &mut Vec<Event>,
        distributed: bool,
    ) -> Option<Plan> {
        let victim = self.pick(rng, |p| p.kind == PrincipalKind::User)?;
        let (grant, account) = self.grant_of(rng, victim)?;
        let place = FOREIGN_PLACES.choose(rng)?;
        let ip = public_ip(rng, place);
        let proxy = distributed.then(|| residential_proxy(rng, victim.home));
        let (place, ip) = match &proxy {
            Some(proxy) => (proxy, public_ip(rng, proxy)),
            None => (place, ip),
        };
        let mut targets: Vec<&Principal> =
            self.tenant.users.iter().filter(|u| u.object_id != victim.object_id).collect();
        targets.shuffle(rng);
        targets.truncate(rng.random_range(11..=18));
        let step = Duration::seconds(540 / targets.len().max(1) as i64);
        for (i, user) in targets.iter().enumerate() {
            let t = at + step * i as i32 + jitter(rng, Duration::seconds(5));
            let (place, ip) = match distributed {
                true => {
                    let other = residential_proxy(rng, victim.home);
                    let ip = public_ip(rng, &other);
                    (other, ip)
                }
                false => (place.clone(), ip.clone()),
            };
            out.push(self.sign_in_event(rng, &SignIn { error: 50126, ..SignIn::spray(user, t, &ip, &place) }));
        }
        let hit = at + Duration::seconds(560);
        out.push(self.sign_in_event(rng, &SignIn { risk: "medium", ..SignIn::spray(victim, hit, &ip, place) }));
        let token = SignIn {
            risk: "medium",
            ..SignIn::token(victim, hit + Duration::seconds(20), &ip, place, COSMOS_RESOURCE)
        };
        out.push(self.sign_in_event(rng, &token));
        let count = rng.random_range(20..50);
        let burst = Burst::one(grant, &ip, hit + Duration::seconds(30), Duration::minutes(20), count, READS);
        self.burst(rng, victim, &burst, out, |_, _| {});
        let from = if distributed { "residential proxies, one address each, the last " } else { "" };
        let what = format!(
            "password spray on {} users from {from}{ip} ({}), then {} signed in and read {}",
            targets.len() + 1,
            place.country,
            victim.name,
            account.name
        );
        Plan::by(victim, account, &ip, what)
    }

    fn bulk_export(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let p = self.pick(rng, |p| p.kind != PrincipalKind::ManagedIdentity)?;
        let (grant, account) = self.grant_of(rng, p)?;
        let ip = p.ips.first()?;
        out.push(self.token_sign_in(rng, p, at, ip, p.home));
        let count = rng.random_range(200..400);
        let span = Duration::minutes(rng.random_range(20..40));
        let burst = Burst::one(grant, ip, at + Duration::seconds(10), span, count, EXPORT);
        let bytes = self.burst(rng, p, &burst, out, |_, r| {
            r.bulk = true;
            r.status = 200;
        });
        let what = format!(
            "{} pulled {} MB from {} in {count} ReadFeed/Query pages, far above its baseline",
            p.name,
            bytes >> 20,
            account.name
        );
        Plan::by(p, account, ip, what)
    }

    fn mass_delete(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let p = self.pick(rng, |p| p.kind != PrincipalKind::ManagedIdentity)?;
        let (grant, account) = self.grant_of(rng, p)?;
        let ip = p.ips.first()?;
        // Everything lands on one collection, as a wiper script would do.
        let target = Grant { collections: grant.collections.iter().take(1).copied().collect(), ..grant.clone() };
        let (d, c) = *target.collections.first()?;
        let collection = &account.databases.get(d)?.collections.get(c)?.name;
        out.push(self.token_sign_in(rng, p, at, ip, p.home));
        let count = rng.random_range(300..600);
        let span = Duration::minutes(rng.random_range(3..8));
        let burst = Burst::one(&target, ip, at + Duration::seconds(5), span, count, DELETES);
        self.burst(rng, p, &burst, out, |rng, r| {
            r.status = pick_weighted(rng, &[(204, 92), (404, 5), (429, 3)]);
        });
        let what = format!("{} deleted {count} documents from {}/{collection} in minutes", p.name, account.name);
        Plan::by(p, account, ip, what)
    }

    fn permission_probing(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        // A role that leaves at least two collections of its account out of reach.
        let probing_room = |g: &Grant| {
            let total: usize = self
                .tenant
                .accounts
                .get(g.account)
                .map_or(0, |a| a.databases.iter().map(|d| d.collections.len()).sum());
            total >= g.collections.len() + 2
        };
        let p = self.pick(rng, |p| p.kind != PrincipalKind::ManagedIdentity && p.grants.iter().any(probing_room))?;
        let grant = p.grants.iter().find(|g| probing_room(g))?;
        let account = self.tenant.accounts.get(grant.account)?;
        let ip = p.ips.first()?;
        out.push(self.token_sign_in(rng, p, at, ip, p.home));
        let span = Duration::minutes(rng.random_range(5..15));
        let count = rng.random_range(40..80);
        let (inside, outside): (Vec<(usize, usize)>, _) = account
            .databases
            .iter()
            .enumerate()
            .flat_map(|(d, db)| (0..db.collections.len()).map(move |c| (d, c)))
            .partition(|target| grant.collections.contains(target));
        let caller = aad_caller(p, grant, ip);
        for _ in 0..count {
            // Mostly collections outside the role's scope: the caller is looking for what it can reach.
            let allowed = outside.is_empty() || rng.random_bool(0.2);
            let &(d, c) = if allowed { &inside } else { &outside }.choose(rng)?;
            let db = account.databases.get(d)?;
            let time = at + Duration::seconds(3) + jitter(rng, span);
            let op = pick_weighted(rng, PROBES);
            let mut r = document_request(rng, time, account, db, db.collections.get(c)?, op, caller);
            r.status = if allowed { r.op.success_code() } else { 403 };
            push_request(rng, &r, out);
        }
        let what = format!(
            "{} tried {count} operations across the collections of {}, most outside its role (403)",
            p.name, account.name
        );
        Plan::by(p, account, ip, what)
    }

    fn collection_enumeration(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let p = self.pick(rng, |_| true)?;
        let (grant, account) = self.grant_of(rng, p)?;
        let ip = p.ips.first()?;
        out.push(self.token_sign_in(rng, p, at, ip, p.home));
        let caller = Caller { connection_mode: "Gateway", ..aad_caller(p, grant, ip) };
        let mut t = at + Duration::seconds(5);
        let mut next = |rng: &mut Prng| {
            t += Duration::milliseconds(rng.random_range(150..3000));
            t
        };
        let list_dbs = metadata_request(next(rng), account, Op::ReadFeed, "Database", "", "", caller);
        push_request(rng, &list_dbs, out);
        for (d, db) in account.databases.iter().enumerate() {
            let list = metadata_request(next(rng), account, Op::ReadFeed, "Collection", &db.name, "", caller);
            push_request(rng, &list, out);
            for (c, coll) in db.collections.iter().enumerate() {
                let read = metadata_request(next(rng), account, Op::Read, "Collection", &db.name, &coll.name, caller);
                push_request(rng, &read, out);
                // Then a first page of every collection, denied outside the role's scope.
                let time = next(rng);
                let mut page = document_request(rng, time, account, db, coll, Op::ReadFeed, caller);
                page.status = if grant.collections.contains(&(d, c)) { 200 } else { 403 };
                push_request(rng, &page, out);
            }
        }
        let what =
            format!("{} listed every database and collection of {} and read a page of each", p.name, account.name);
        Plan::by(p, account, ip, what)
    }

    fn impossible_travel(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let p = self.pick(rng, |p| p.kind == PrincipalKind::User)?;
        let (grant, account) = self.grant_of(rng, p)?;
        let home_ip = p.ips.first()?;
        let far = FOREIGN_PLACES.choose(rng)?;
        let far_ip = public_ip(rng, far);
        out.push(self.sign_in_event(rng, &SignIn::interactive(p, at, home_ip, p.home)));
        out.push(self.token_sign_in(rng, p, at + Duration::seconds(15), home_ip, p.home));
        let count = rng.random_range(5..10);
        let burst = Burst::one(grant, home_ip, at + Duration::seconds(30), Duration::minutes(15), count, READS);
        self.burst(rng, p, &burst, out, |_, _| {});
        let away = at + Duration::minutes(rng.random_range(25..45));
        out.push(self.sign_in_event(rng, &SignIn::interactive(p, away, &far_ip, far)));
        out.push(self.token_sign_in(rng, p, away + Duration::seconds(15), &far_ip, far));
        let count = rng.random_range(5..15);
        let burst = Burst::one(grant, &far_ip, away + Duration::seconds(30), Duration::minutes(10), count, READS);
        self.burst(rng, p, &burst, out, |_, _| {});
        let what = format!(
            "{} signed in from {} and, {} minutes later, from {far_ip} in {}",
            p.name,
            p.home.country,
            (away - at).num_minutes(),
            far.country
        );
        Plan::by(p, account, &far_ip, what)
    }

    fn dormant_principal(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let p = self.tenant.principals().find(|p| p.dormant && p.has_data())?;
        let (grant, account) = self.grant_of(rng, p)?;
        let ip = p.ips.first()?;
        out.push(self.token_sign_in(rng, p, at, ip, p.home));
        let count = rng.random_range(30..80);
        let span = Duration::minutes(rng.random_range(10..30));
        let burst = Burst::one(grant, ip, at + Duration::seconds(5), span, count, READS);
        self.burst(rng, p, &burst, out, |_, _| {});
        let what = format!("{}, silent until now, signed in and read {} ({count} requests)", p.name, account.name);
        Plan::by(p, account, ip, what)
    }

    fn new_user_agent(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let p = self.pick(rng, |_| true)?;
        let (grant, account) = self.grant_of(rng, p)?;
        let ip = p.ips.first()?;
        let agent = *NOVEL_AGENTS.choose(rng)?;
        out.push(self.token_sign_in(rng, p, at, ip, p.home));
        let count = rng.random_range(15..40);
        let span = Duration::minutes(rng.random_range(5..15));
        let burst = Burst::one(grant, ip, at + Duration::seconds(5), span, count, READS);
        self.burst(rng, p, &burst, out, |_, r| {
            // Hand-rolled REST calls go through the gateway.
            r.caller.user_agent = agent;
            r.caller.connection_mode = "Gateway";
            r.partition = "";
        });
        let what = format!("{} called {} with a user agent it never used: {agent}", p.name, account.name);
        Plan::by(p, account, ip, what)
    }

    fn threat_intel_ip(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let p = self.pick(rng, |p| p.kind != PrincipalKind::ManagedIdentity)?;
        let (grant, account) = self.grant_of(rng, p)?;
        let ip = *THREAT_INTEL_IPS.choose(rng)?;
        let token = SignIn {
            risk: "medium",
            risk_events: &["anonymizedIPAddress"],
            ..SignIn::token(p, at, ip, &TOR_PLACE, COSMOS_RESOURCE)
        };
        out.push(self.sign_in_event(rng, &token));
        let count = rng.random_range(10..30);
        let span = Duration::minutes(rng.random_range(5..20));
        let burst = Burst::one(grant, ip, at + Duration::seconds(5), span, count, READS);
        self.burst(rng, p, &burst, out, |_, _| {});
        let what = format!("{} read {} from {ip}, an address on the threat-intelligence list", p.name, account.name);
        Plan::by(p, account, ip, what)
    }

    /// A principal that no sign-in log knows reads data with a token from elsewhere: another
    /// tenant's application, a forged token, or a sign-in log category nobody exports.
    fn token_without_sign_in(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let index = rng.random_range(0..self.tenant.accounts.len());
        let account = self.tenant.accounts.get(index)?;
        let place = FOREIGN_PLACES.choose(rng)?;
        let ip = public_ip(rng, place);
        let object_id = guid(rng);
        let stranger = Principal {
            kind: PrincipalKind::ServicePrincipal,
            app_id: guid(rng),
            app_name: String::new(),
            client_app_used: "",
            name: format!("unknown-{}", &object_id[..8]),
            display_name: String::new(),
            object_id,
            home: place,
            ips: vec![ip.clone()],
            browser: None,
            cosmos_agent: SERVICE_COSMOS_AGENTS.choose(rng).copied().unwrap_or_default(),
            connection_mode: "Gateway",
            workload: Workload::Reader,
            requests_per_hour: 0.0,
            grants: vec![grant(rng, &self.tenant.accounts, index, 3)],
            dormant: false,
            credential_key_id: String::new(),
            habit: Default::default(),
        };
        let count = rng.random_range(20..40);
        let span = Duration::minutes(rng.random_range(10..30));
        let burst = Burst::one(stranger.grants.first()?, &ip, at, span, count, READS);
        self.burst(rng, &stranger, &burst, out, |_, _| {});
        let what = format!(
            "{} (in no sign-in log) read {} from {ip} ({}) with {count} requests",
            stranger.object_id, account.name, place.country
        );
        Plan::by(&stranger, account, &ip, what)
    }

    /// A principal reads a little, plants a trigger, then drops a container of its role.
    fn container_deleted(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let p = self.pick(rng, |p| p.kind != PrincipalKind::ManagedIdentity)?;
        let (grant, account) = self.grant_of(rng, p)?;
        let ip = p.ips.first()?;
        let &(d, c) = grant.collections.choose(rng)?;
        let db = account.databases.get(d)?;
        let coll = db.collections.get(c)?;
        out.push(self.token_sign_in(rng, p, at, ip, p.home));
        let count = rng.random_range(8..15);
        let burst = Burst::one(grant, ip, at + Duration::seconds(5), Duration::minutes(10), count, READS);
        self.burst(rng, p, &burst, out, |_, _| {});
        let caller = Caller { connection_mode: "Gateway", ..aad_caller(p, grant, ip) };
        let planted = at + Duration::minutes(11) + jitter(rng, Duration::minutes(2));
        let mut trigger = metadata_request(planted, account, Op::Create, "Trigger", &db.name, &coll.name, caller);
        trigger.resource_path =
            format!("/dbs/{}/colls/{}/triggers/audit-{}", db.name, coll.name, rng.random_range(1..99));
        trigger.status = 201;
        push_request(rng, &trigger, out);
        let dropped = planted + Duration::minutes(2) + jitter(rng, Duration::minutes(3));
        let mut delete = metadata_request(dropped, account, Op::Delete, "Collection", &db.name, &coll.name, caller);
        delete.status = 204;
        push_request(rng, &delete, out);
        let what = format!(
            "{} wrote a trigger on {}/{}/{} and then deleted the container",
            p.name, account.name, db.name, coll.name
        );
        Plan::by(p, account, ip, what)
    }

    /// A credential list tried at a disabled account (the leaver's, or a user without data
    /// access in a tidy tenant) from one address, where another user's password then works.
    fn disabled_account_attempts(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let users = &self.tenant.users;
        let leaver = users.iter().find(|u| u.habit == Habit::Leaver);
        let disabled = match leaver {
            Some(leaver) => leaver,
            None => *users.iter().filter(|u| !u.has_data()).collect::<Vec<_>>().choose(rng)?,
        };
        let pool: Vec<&Principal> =
            users.iter().filter(|u| u.object_id != disabled.object_id && u.habit != Habit::Leaver).collect();
        let other = *pool.choose(rng)?;
        // A residential proxy near the account that works, so its sign-in does not stand out.
        let place = residential_proxy(rng, other.home);
        let ip = public_ip(rng, &place);
        let attempts = rng.random_range(9..14);
        for i in 0..attempts {
            let t = at + Duration::seconds(40 * i) + jitter(rng, Duration::seconds(20));
            let attempt = SignIn { error: 50057, ..SignIn::spray(disabled, t, &ip, &place) };
            out.push(self.sign_in_event(rng, &attempt));
        }
        let hit = at + Duration::seconds(40 * attempts + 30);
        out.push(self.sign_in_event(rng, &SignIn::spray(other, hit, &ip, &place)));
        let what = format!(
            "{attempts} sign-in attempts on the disabled account {} from {ip} ({}), where {} then signed in",
            disabled.name, place.country, other.name
        );
        // Sign-ins only: no Cosmos DB account is involved.
        let principal = Some((disabled.object_id.clone(), disabled.name.clone()));
        Some(Plan { principal, account: String::new(), source_ip: Some(ip), description: what })
    }

    /// A device-code phish: the user enters the attacker's code, the attacker's client redeems
    /// it (a flow Conditional Access rarely blocks) and reads Cosmos DB with the refresh token.
    fn device_code_phish(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let victim = self.pick(rng, |p| p.kind == PrincipalKind::User)?;
        let (grant, account) = self.grant_of(rng, victim)?;
        let foreign = FOREIGN_PLACES.choose(rng)?.clone();
        // Realistic: the attacker's infrastructure sits behind a proxy in the victim's country.
        let place = match self.profile {
            Profile::Realistic => residential_proxy(rng, victim.home),
            Profile::Tidy => foreign,
        };
        let ip = public_ip(rng, &place);
        let mut phished = self.sign_in_event(rng, &SignIn::interactive(victim, at, &ip, &place));
        phished.record["properties"]["authenticationProtocol"] = json!("deviceCode");
        out.push(phished);
        let refresh = at + Duration::minutes(rng.random_range(3..20));
        out.push(self.token_sign_in(rng, victim, refresh, &ip, &place));
        let count = rng.random_range(15..40);
        let burst = Burst::one(grant, &ip, refresh + Duration::seconds(10), Duration::minutes(25), count, READS);
        self.burst(rng, victim, &burst, out, |_, _| {});
        let what = format!(
            "{} signed in through a phished device code from {ip} ({}); its token read {}",
            victim.name, place.country, account.name
        );
        Plan::by(victim, account, &ip, what)
    }

    /// An account key that was rotated after a leak, still tried from outside: every request
    /// is rejected (401) within minutes.
    fn rotated_key_tried(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let account = self.tenant.accounts.choose(rng)?;
        let place = FOREIGN_PLACES.choose(rng)?;
        let ip = public_ip(rng, place);
        let span = Duration::minutes(rng.random_range(4..12));
        let caller = key_caller("PrimaryMasterKey", &ip, KEY_THIEF_AGENT);
        let count = rng.random_range(30..90);
        for _ in 0..count {
            let time = at + jitter(rng, span);
            let mut r = key_request(rng, account, time, READS, caller)?;
            r.status = 401;
            push_request(rng, &r, out);
        }
        let description = format!(
            "{count} requests on {} from {ip} ({}) signed with a rotated primary key, all rejected (401)",
            account.name, place.country
        );
        Some(Plan { principal: None, account: account.name.clone(), source_ip: Some(ip), description })
    }

    /// A managed identity's token taken from its instance metadata endpoint (server-side request
    /// forgery) and used from a server outside Azure: no sign-in, its cached token read data.
    /// A reader's token drains an account slowly: about 60 MiB an hour, under
    /// data_volume_spike's hourly floor, for SLOW_HOURS hours (some 600 MiB), each hour after a
    /// silent refresh from the principal's own address.
    fn slow_exfiltration(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let p = self.pick(rng, |p| p.kind == PrincipalKind::User)?;
        let (grant, account) = self.grant_of(rng, p)?;
        let ip = p.ips.first()?;
        let mut bytes = 0;
        for hour in 0..SLOW_HOURS {
            let start = at + Duration::hours(hour);
            out.push(self.token_sign_in(rng, p, start, ip, p.home));
            let burst = Burst::one(grant, ip, start + Duration::seconds(10), Duration::minutes(55), 24, EXPORT);
            bytes += self.burst(rng, p, &burst, out, |_, r| {
                r.bulk = true;
                r.status = 200;
            });
        }
        let what = format!(
            "{} read {} MB from {} over {SLOW_HOURS} hours, about 60 MB an hour: under an hourly limit, far above its day",
            p.name,
            bytes >> 20,
            account.name
        );
        Plan::by(p, account, ip, what)
    }

    fn workload_token_stolen(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let p = self.pick(rng, |p| p.kind == PrincipalKind::ManagedIdentity)?;
        let (grant, account) = self.grant_of(rng, p)?;
        let foreign = FOREIGN_PLACES.choose(rng)?;
        let place = if self.profile == Profile::Realistic { &VPS_PLACE } else { foreign };
        let ip = public_ip(rng, place);
        let count = rng.random_range(20..50);
        let span = Duration::minutes(rng.random_range(10..30));
        let burst = Burst::one(grant, &ip, at, span, count, READS);
        self.burst(rng, p, &burst, out, |_, r| {
            // Hand-rolled calls with the stolen token go through the gateway.
            r.caller.connection_mode = "Gateway";
            r.partition = "";
        });
        let what = format!(
            "the managed identity {}'s token, taken through SSRF, read {} from {ip} ({}) outside Azure",
            p.name, account.name, place.country
        );
        Plan::by(p, account, &ip, what)
    }

    /// A stolen token in the hands of someone who found an application building queries from
    /// its input: first fuzzing (queries Cosmos DB rejects as malformed, 400), then injected
    /// filters that widen what the query returns. The account logs full query text (the
    /// tenant's first account; the others log it obfuscated, as Cosmos DB does by default).
    fn query_injection(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let p =
            self.pick(rng, |p| p.kind != PrincipalKind::ManagedIdentity && p.grants.iter().any(|g| g.account == 0))?;
        let grants: Vec<&Grant> = p.grants.iter().filter(|g| g.account == 0).collect();
        let grant = *grants.choose(rng)?;
        let account = self.tenant.accounts.first()?;
        let home_ip = p.ips.first()?;
        let place = FOREIGN_PLACES.choose(rng)?;
        let ip = public_ip(rng, place);
        // The owner keeps signing in from home while the stolen token is used abroad.
        out.push(self.token_sign_in(rng, p, at, home_ip, p.home));
        let fuzz = rng.random_range(12..25);
        let inject = rng.random_range(6..12);
        let span = Duration::minutes(rng.random_range(6..15));
        let mut t = at + Duration::minutes(2);
        for i in 0..fuzz + inject {
            t += jitter(rng, span / (fuzz + inject)) + Duration::seconds(1);
            let &(d, c) = grant.collections.choose(rng)?;
            let db = account.databases.get(d)?;
            let coll = db.collections.get(c)?;
            let mut r = document_request(rng, t, account, db, coll, Op::Query, aad_caller(p, grant, &ip));
            let (input, status) =
                if i < fuzz { (*FUZZ_INPUTS.choose(rng)?, 400) } else { (*INJECTED_INPUTS.choose(rng)?, 200) };
            r.status = status;
            push_request(rng, &r, out);
            let request = out.last()?.clone();
            let query = format!("SELECT * FROM c WHERE c.customerId = '{input}' AND c.type = 'order'");
            out.push(query_statistics(&request, &query, &[], true));
        }
        let what = format!(
            "{}'s token sent {fuzz} malformed and {inject} injection-shaped queries to {} from {ip} ({})",
            p.name, account.name, place.country
        );
        Plan::by(p, account, &ip, what)
    }
}
