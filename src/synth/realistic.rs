//! The realistic profile (`../shared/brief/realistic-tenants.md`): what real tenants do that
//! naive rules page someone for. Shared office egress with Monday-morning typos behind it;
//! benign failure codes in realistic proportions (MFA interrupts, keep-me-signed-in,
//! expired refresh tokens, Conditional Access blocks, typos, a disabled leaver's device, an
//! expired app secret after a deployment); a VPN user whose data goes around the tunnel; a
//! dual-stack user signing in over IPv6; a phone refreshing Outlook from carrier addresses
//! between Cosmos queries; an App Service app leaving from any address of its pool; a
//! workload through a private endpoint; a workload in two regions; new hires every three
//! weeks; month-end jobs at ten times their volume.
//!
//! Everything here draws from its own streams (`STREAM_REALISTIC`, and each session's seed
//! salted), so the tidy profile's output is unchanged.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc, Weekday};
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};

use super::signins::{COSMOS_RESOURCE, EXCHANGE_RESOURCE, OUTLOOK_MOBILE, SignIn};
use super::tenant::{DATA_USERS, HOME_PLACES, USER_APPS, USER_COSMOS_AGENTS, grant, place, public_ip};
use super::wire::{Prng, STREAM_REALISTIC, guid, jitter, stream_rng};
use super::{Burst, Event, Generator, Habit, Office, Place, Principal, PrincipalKind, Tenant, Workload};

/// People per office beyond the tenant's own users, none with data access.
const OFFICE_STAFF: usize = 20;
/// Salt of a session's realistic draws (the tidy ones use the seed as it is).
const SESSION_SALT: u64 = 0x5EA1_1571_C7E9_A3B1;
/// The corporate VPN's egress (a cloud security gateway's address range and ASN).
const VPN_PLACE: Place = place("New York", "New York", "US", 40.7128, -74.006, -300, 53813, [165, 225]);
/// A mobile carrier's addresses (they change with every refresh).
const CARRIER_PLACE: Place = place("New York", "New York", "US", 40.7128, -74.006, -300, 21928, [172, 56]);
/// The second region of the two-region workload (Azure West Europe egress).
const WEST_EUROPE: Place = place("Amsterdam", "Noord-Holland", "NL", 52.3676, 4.9041, 60, 8075, [20, 103]);
/// A new hire joins every this many weeks and stays (in the data) for `HIRE_TENURE_WEEKS`.
pub(super) const HIRE_EVERY_WEEKS: i64 = 3;
const HIRE_TENURE_WEEKS: i64 = 12;
/// Monday 1970-01-05, where hire slots are counted from.
pub(super) const FIRST_MONDAY: i64 = 4 * 86_400;

impl Tenant {
    /// Gives the tenant offices and its principals the habits of the realistic profile.
    pub(super) fn make_realistic(&mut self, seed: u64) {
        let rng = &mut stream_rng(seed, STREAM_REALISTIC, u64::MAX);
        // An office in each of the first five home cities; two NAT addresses in one /24.
        self.offices = HOME_PLACES[..5]
            .iter()
            .map(|place| {
                let [a, b] = place.prefix;
                let c = rng.random_range(0..=255u8);
                let host = rng.random_range(2..=200u8);
                Office { place, nat: vec![format!("{a}.{b}.{c}.{host}"), format!("{a}.{b}.{c}.{}", host + 1)] }
            })
            .collect();
        for user in &mut self.users {
            if let Some(office) = self.offices.iter().position(|o| std::ptr::eq(o.place, user.home))
                && rng.random_bool(0.75)
            {
                user.habit = Habit::Office(office);
            }
        }
        // Offices hold far more people than touch Cosmos DB: staff who sign in to mail and
        // chat, and who mistype behind the same NAT on Monday mornings.
        for office in 0..self.offices.len() {
            for n in 0..OFFICE_STAFF {
                let name = format!("staff{office}.{n}");
                let user = office_user(rng, self, office, name, format!("Staff {office}.{n}"), false);
                self.users.push(user);
            }
        }
        // Special habits go to data users who are not office workers, so each stands alone.
        let mut remote: Vec<usize> =
            (0..DATA_USERS.min(self.users.len())).filter(|&i| self.users[i].habit == Habit::Plain).collect();
        let prefix = format!("2a02:c7c:{:x}:{:x}", rng.random_range(0x1000..0xffffu32), rng.random_range(0..0xffffu32));
        for habit in [Habit::Vpn, Habit::DualStack(prefix), Habit::Phone] {
            if let Some(i) = remote.pop() {
                self.users[i].habit = habit;
            }
        }
        // A leaver among the users without data access.
        if let Some(user) = self.users.iter_mut().rev().find(|u| !u.has_data() && u.habit == Habit::Plain) {
            user.habit = Habit::Leaver;
        }
        let pool_of = |rng: &mut Prng, n: usize| -> Vec<String> {
            (0..n)
                .map(|i| {
                    let third = if i % 2 == 0 { 119 } else { 121 };
                    format!("20.{third}.{}.{}", rng.random_range(0..=255u8), rng.random_range(1..=254u8))
                })
                .collect()
        };
        let services = &mut self.service_principals;
        let workloads: Vec<usize> =
            (0..services.len()).filter(|&i| services[i].workload == Workload::Service).collect();
        if let [pool, private, two_regions, ..] = workloads[..] {
            services[pool].habit = Habit::AddressPool(pool_of(rng, 5));
            services[private].habit = Habit::PrivateEndpoint(format!(
                "10.40.{}.{}",
                rng.random_range(0..=255u8),
                rng.random_range(4..=250u8)
            ));
            services[two_regions].habit = Habit::TwoRegions(vec![public_ip(rng, &WEST_EUROPE)]);
        }
    }
}

/// Where one session's sign-ins and requests come from.
pub(super) struct Addresses {
    pub(super) sign_in: String,
    pub(super) place: &'static Place,
    pub(super) data: Vec<String>,
}

impl Generator {
    /// The addresses of `p`'s session at `at`, given the address the tidy profile chose.
    pub(super) fn addresses(&self, rng: &mut Prng, p: &Principal, at: DateTime<Utc>, ip: &str) -> Addresses {
        let plain = |ip: &str| Addresses { sign_in: ip.to_string(), place: p.home, data: vec![ip.to_string()] };
        match &p.habit {
            Habit::Office(i) if at_work(p, at) => {
                let Some(office) = self.tenant.offices.get(*i) else { return plain(ip) };
                // NAT pools hand a session's connections any of their addresses.
                let pick = |rng: &mut Prng| office.nat.choose(rng).cloned().unwrap_or_default();
                Addresses { sign_in: pick(rng), place: office.place, data: vec![pick(rng), pick(rng)] }
            }
            Habit::Vpn => {
                Addresses { sign_in: public_ip(rng, &VPN_PLACE), place: &VPN_PLACE, data: vec![ip.to_string()] }
            }
            Habit::DualStack(prefix) => Addresses {
                sign_in: format!(
                    "{prefix}:{:x}:{:x}:{:x}:{:x}",
                    rng.random::<u16>(),
                    rng.random::<u16>(),
                    rng.random::<u16>(),
                    rng.random::<u16>()
                ),
                place: p.home,
                data: vec![ip.to_string()],
            },
            Habit::AddressPool(pool) => {
                let sign_in = pool.choose(rng).cloned().unwrap_or_default();
                Addresses { sign_in, place: p.home, data: pool.clone() }
            }
            Habit::PrivateEndpoint(private) => {
                Addresses { sign_in: ip.to_string(), place: p.home, data: vec![private.clone()] }
            }
            _ => plain(ip),
        }
    }

    /// What a realistic session adds around the tidy one: benign failures before its
    /// sign-in, a phone's refreshes, the second region's instance.
    pub(super) fn session_extras(
        &self,
        rng: &mut Prng,
        p: &Principal,
        signed_in: DateTime<Utc>,
        addresses: &Addresses,
        count: usize,
        out: &mut Vec<Event>,
    ) {
        let ip = addresses.sign_in.as_str();
        if p.kind == PrincipalKind::User {
            // (code, share of sessions, interactive, followed by a success)
            const FAILURES: &[(u32, f64, bool, bool)] = &[
                (50074, 0.08, true, true),   // MFA required: the user completes it
                (50140, 0.04, true, true),   // keep me signed in interrupt
                (70008, 0.03, false, true),  // refresh token expired: signs in again
                (700082, 0.02, false, true), // refresh token expired by inactivity
                (53003, 0.01, true, false),  // Conditional Access blocked an unmanaged device
                (50126, 0.02, true, true),   // a typo
            ];
            for &(code, share, interactive, recovers) in FAILURES {
                if !rng.random_bool(share) {
                    continue;
                }
                let failed = signed_in - Duration::seconds(rng.random_range(40..240));
                let base = SignIn::token(p, failed, ip, addresses.place, COSMOS_RESOURCE);
                let attempt = SignIn { error: code, interactive, conditional_access: "notApplied", ..base };
                out.push(self.sign_in_event(rng, &attempt));
                if recovers {
                    let t = failed + Duration::seconds(rng.random_range(15..90));
                    out.push(self.sign_in_event(rng, &SignIn::interactive(p, t, ip, addresses.place)));
                }
            }
            if p.habit == Habit::Phone {
                for _ in 0..rng.random_range(1..=3) {
                    let t = signed_in + jitter(rng, Duration::minutes(55));
                    let carrier = public_ip(rng, &CARRIER_PLACE);
                    let refresh = SignIn {
                        app: OUTLOOK_MOBILE,
                        browser: None,
                        ..SignIn::token(p, t, &carrier, &CARRIER_PLACE, EXCHANGE_RESOURCE)
                    };
                    out.push(self.sign_in_event(rng, &refresh));
                }
            }
        }
        if let Habit::TwoRegions(ips) = &p.habit
            && let Some(ip) = ips.choose(rng)
        {
            // The instance in the other region gets its own token minutes later.
            let t = signed_in + Duration::seconds(rng.random_range(30..600));
            out.push(self.sign_in_event(rng, &SignIn::token(p, t, ip, &WEST_EUROPE, COSMOS_RESOURCE)));
            let burst = Burst {
                ip,
                grants: &p.grants,
                start: t,
                span: Duration::minutes(55),
                count: count / 2,
                ops: p.workload.operations(),
            };
            self.burst(rng, p, &burst, out, |_, _| {});
        }
    }

    /// Events of the hour starting at `start` that belong to no one session: Monday-morning
    /// typos behind each office's NAT, the leaver's device, an app secret that expired with a
    /// deployment, and the new hires' sessions.
    pub(super) fn realistic_hour(&self, hour: i64, start: DateTime<Utc>, out: &mut Vec<Event>) {
        let rng = &mut stream_rng(self.seed, STREAM_REALISTIC, hour as u64);
        for (i, office) in self.tenant.offices.iter().enumerate() {
            let local = start + Duration::minutes(i64::from(office.place.utc_offset_min));
            if local.weekday() != Weekday::Mon || local.hour() != 8 {
                continue;
            }
            // After a weekend (and every few weeks a password change), a handful of people
            // mistype, then get in from the same address a minute later.
            let staff: Vec<&Principal> = self.tenant.users.iter().filter(|u| u.habit == Habit::Office(i)).collect();
            let typing = rng.random_range(5..=9).min(staff.len());
            let burst_at = start + jitter(rng, Duration::minutes(40));
            // One site, one address: the NAT keeps a site's logins on its first address.
            let nat = office.nat.first().map_or("", String::as_str);
            for user in staff.sample(rng, typing) {
                let t = burst_at + jitter(rng, Duration::minutes(10));
                let code = if rng.random_bool(0.85) { 50126 } else { 50053 };
                let typo = SignIn {
                    error: code,
                    conditional_access: "notApplied",
                    ..SignIn::interactive(user, t, nat, office.place)
                };
                out.push(self.sign_in_event(rng, &typo));
                let ok = t + Duration::seconds(rng.random_range(20..180));
                out.push(self.sign_in_event(rng, &SignIn::interactive(user, ok, nat, office.place)));
            }
        }
        if let Some(leaver) = self.tenant.users.iter().find(|u| u.habit == Habit::Leaver)
            && start.hour() == 13
        {
            let ip = public_ip(rng, &CARRIER_PLACE);
            for _ in 0..rng.random_range(2..=5) {
                let t = start + jitter(rng, Duration::minutes(60));
                let attempt = SignIn {
                    error: 50057,
                    app: OUTLOOK_MOBILE,
                    browser: None,
                    conditional_access: "notApplied",
                    ..SignIn::token(leaver, t, &ip, &CARRIER_PLACE, EXCHANGE_RESOURCE)
                };
                out.push(self.sign_in_event(rng, &attempt));
            }
        }
        // The first Tuesday of a month, 10:00 UTC: a deployment shipped an expired secret;
        // the app fails for a quarter of an hour until it is fixed.
        if start.weekday() == Weekday::Tue
            && start.day() <= 7
            && start.hour() == 10
            && let Some(app) = self.tenant.service_principals.iter().find(|p| p.workload == Workload::Service)
        {
            let ip = app.ips.first().map_or("", String::as_str);
            for _ in 0..rng.random_range(12..30) {
                let t = start + jitter(rng, Duration::minutes(15));
                let code = if rng.random_bool(0.8) { 7000215 } else { 7000222 };
                out.push(self.sign_in_event(
                    rng,
                    &SignIn { error: code, ..SignIn::token(app, t, ip, app.home, COSMOS_RESOURCE) },
                ));
            }
        }
        for hire in self.hires(start) {
            let session_seed: u64 = rng.random();
            let (chance, rhythm) = super::activity(&hire, start);
            if rng.random_bool(chance) {
                self.session(&hire, session_seed, start, rhythm, out);
            }
        }
    }

    /// The new hires working at `at`: one joins every [`HIRE_EVERY_WEEKS`] weeks on a Monday,
    /// with a data role, and is in the data for [`HIRE_TENURE_WEEKS`] weeks.
    fn hires(&self, at: DateTime<Utc>) -> Vec<Principal> {
        let week = (at.timestamp() - FIRST_MONDAY).div_euclid(7 * 86_400);
        let latest = week.div_euclid(HIRE_EVERY_WEEKS);
        let tenure = HIRE_TENURE_WEEKS / HIRE_EVERY_WEEKS;
        (latest - tenure + 1..=latest).map(|slot| self.hire(slot)).collect()
    }

    pub(super) fn hire(&self, slot: i64) -> Principal {
        let rng = &mut stream_rng(self.seed, STREAM_REALISTIC, (1 << 48) | slot as u64);
        let office = rng.random_range(0..self.tenant.offices.len().max(1));
        let n = slot.rem_euclid(10_000);
        office_user(rng, &self.tenant, office, format!("new.hire{n}"), format!("New Hire {n}"), true)
    }
}

/// A user of `office` (its home is the office's city), with a data role if `data`.
fn office_user(
    rng: &mut Prng,
    tenant: &Tenant,
    office: usize,
    name: String,
    display_name: String,
    data: bool,
) -> Principal {
    let home = tenant.offices.get(office).map_or(&HOME_PLACES[0], |o| o.place);
    let apps: &[usize] = if data { &[0, 1, 2] } else { &[0, 3, 4] };
    let (app_name, app_id, client_app_used) = USER_APPS[*apps.choose(rng).unwrap_or(&0)];
    let accounts = &tenant.accounts;
    let grants = if data {
        let account = rng.random_range(0..accounts.len().max(1));
        vec![grant(rng, accounts, account, 3)]
    } else {
        Vec::new()
    };
    Principal {
        kind: PrincipalKind::User,
        object_id: guid(rng),
        app_id: app_id.into(),
        app_name: app_name.into(),
        client_app_used,
        name: format!("{name}@contoso.com"),
        display_name,
        home,
        ips: vec![public_ip(rng, home)],
        browser: super::tenant::BROWSERS.choose(rng),
        cosmos_agent: USER_COSMOS_AGENTS.choose(rng).copied().unwrap_or_default(),
        connection_mode: "Gateway",
        workload: if data { Workload::Analyst } else { Workload::NoData },
        requests_per_hour: if data { 12.0 } else { 0.0 },
        grants,
        dormant: false,
        credential_key_id: String::new(),
        habit: if tenant.offices.is_empty() { Habit::Plain } else { Habit::Office(office) },
    }
}

/// Whether `p` is at the office at `at`: weekdays, 08:00 to 18:00 local.
fn at_work(p: &Principal, at: DateTime<Utc>) -> bool {
    let local = at + Duration::minutes(i64::from(p.home.utc_offset_min));
    !matches!(local.weekday(), Weekday::Sat | Weekday::Sun) && (8..18).contains(&local.hour())
}

/// Month-end jobs read ten times their usual volume on the last day of a month.
pub(super) fn month_end(p: &Principal, at: DateTime<Utc>) -> f64 {
    let last_day = (at + Duration::days(1)).month() != at.month();
    if p.workload == Workload::Etl && last_day { 10.0 } else { 1.0 }
}

/// A residential proxy's exit near `home`: same country and city, some consumer ISP's
/// network (the attacker rents an address that looks local).
pub(super) fn residential_proxy(rng: &mut Prng, home: &'static Place) -> Place {
    const ISPS: &[(u32, [u8; 2])] =
        &[(7922, [98, 210]), (20115, [76, 32]), (701, [71, 168]), (5089, [81, 98]), (3320, [91, 4]), (6830, [84, 115])];
    let &(asn, prefix) = ISPS.choose(rng).unwrap_or(&ISPS[0]);
    let prefix = [prefix[0], prefix[1].wrapping_add(rng.random_range(0..8u8))];
    place(
        home.city,
        home.state,
        home.country,
        home.latitude + 0.2,
        home.longitude - 0.1,
        home.utc_offset_min,
        asn,
        prefix,
    )
}

/// A realistic session's own generator, apart from the tidy draws.
pub(super) fn session_rng(session_seed: u64) -> Prng {
    Prng::seed_from_u64(session_seed ^ SESSION_SALT)
}
