//! Synthetic audit traffic for one Entra ID tenant and its Azure Cosmos DB accounts.
//!
//! Job: produce `DataPlaneRequests` records, Entra sign-in records (all four sign-in
//! categories), Azure Activity log records and Entra ID AuditLogs records exactly as
//! diagnostic settings deliver them to Event Hubs, plus named attack scenarios with ground
//! truth, for demos, detection tests and the ingest benchmark.
//!
//! Contract:
//! - Everything is a pure function of the seed. `Tenant::new(seed)` always builds the same
//!   tenant; baseline traffic is generated hour by hour, each hour from its own RNG stream
//!   keyed by (seed, hour since the epoch), so any window can be regenerated piecewise.
//! - Wire shape: camelCase top level with `properties`; every Cosmos number is a string;
//!   sign-in `resultType` is a string while `status.errorCode` is an int; times carry seven
//!   fractional digits (`Z` at top level, `+00:00` in `createdDateTime`).
//! - A principal signs in before it touches data. Its Cosmos `aadPrincipalId` is the object
//!   id found in the sign-in's `userId` / `servicePrincipalId` (never the appId), and the
//!   request comes from that sign-in's IP; managed identities sign in without an IP and reach
//!   Cosmos from a private 10.x address.
//! - Every scenario event lies inside its ground-truth window [start, end].
//! - An Activity log operation is a Start and a Success event with one correlation id; benign
//!   grants come from admins, Monday to Friday, 09:00 to 17:00 UTC (`control.rs`).
//!
//! Layout: `tenant.rs` builds the tenant (principals, role assignments, accounts, places,
//! devices); `signins.rs` renders sign-in records, `cosmos.rs` DataPlaneRequests records (and
//! the benchmark's NDJSON); `control.rs` the Activity log and AuditLogs records, the admins'
//! routine and the attacks on them; `scenarios.rs` holds the attacks, `Generator::scenario` and the
//! ground truth; `inventory.rs` the tenant's role assignments and accounts as `az` prints them
//! (some over-granted on purpose); `wire.rs` the wire formats and RNG streams. This file: the public API and the
//! baseline, hour by hour.

mod control;
mod cosmos;
mod inventory;
mod realistic;
mod scenarios;
mod signins;
mod tenant;
mod wire;

use std::f64::consts::TAU;

use chrono::{DateTime, Datelike, Duration, DurationRound, Timelike, Utc, Weekday};
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use cosmos::{Op, READS, Request, key_caller, key_request, principal_request, push_request};
use wire::{Prng, STREAM_HISTORY, STREAM_HOUR, STREAM_QUERIES, jitter, stream_rng};

pub use cosmos::{write_cosmos_ndjson, write_cosmos_ndjson_until};
pub use inventory::{INVENTORY_FILES, Inventory, OverGrant};
pub use scenarios::{GroundTruth, Scenario, THREAT_INTEL_IPS};
pub use tenant::{
    App, Browser, Collection, CosmosAccount, Database, Grant, Habit, KeyClient, Office, Place, Principal,
    PrincipalKind, Tenant, Workload,
};

const KEY_REQUESTS_PER_HOUR: f64 = 4.0;

/// One diagnostic record, as it would sit inside an Event Hubs `{"records": [...]}` body.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub time: DateTime<Utc>,
    pub category: &'static str,
    pub record: Value,
}

/// Writes each event's record as one line of NDJSON (what `tokentrail ingest` reads).
pub fn write_ndjson<'a>(out: impl std::io::Write, events: impl IntoIterator<Item = &'a Event>) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(out);
    for event in events {
        serde_json::to_writer(&mut out, &event.record)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Wraps records the way diagnostic settings send them to Event Hubs.
pub fn envelope(events: &[Event]) -> Value {
    json!({ "records": events.iter().map(|e| &e.record).collect::<Vec<_>>() })
}

/// What kind of tenant the traffic comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Every user signs in from its own addresses and fails only when attacked: the
    /// benchmarks of ingest and rule speed use it.
    Tidy,
    /// A tenant as it is (`../shared/brief/realistic-tenants.md`): shared office egress,
    /// benign failure codes, VPN and dual-stack users, a phone refreshing mail, App
    /// Service address pools, a workload in two regions, new hires, month-end jobs, and
    /// sign-in logs that arrive late; attacks in the form they take there.
    #[default]
    Realistic,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Tidy => "tidy",
            Profile::Realistic => "realistic",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Profile, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tidy" => Ok(Profile::Tidy),
            "realistic" => Ok(Profile::Realistic),
            other => Err(format!("unknown profile {other:?}; valid: tidy, realistic")),
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub struct Generator {
    tenant: Tenant,
    seed: u64,
    scale: f64,
    profile: Profile,
    /// Who runs the control plane (admins, the key rotation identity); follows the tenant.
    control: control::Control,
}

/// A series of requests by one principal from one address.
struct Burst<'a> {
    ip: &'a str,
    grants: &'a [Grant],
    start: DateTime<Utc>,
    span: Duration,
    count: usize,
    ops: &'static [(Op, u32)],
}

impl<'a> Burst<'a> {
    /// A burst through one grant: a scenario acts through a single role, unlike a baseline session.
    /// Builds nothing random, so callers keep drawing `count` and `span` in their own order.
    fn one(
        grant: &'a Grant,
        ip: &'a str,
        start: DateTime<Utc>,
        span: Duration,
        count: usize,
        ops: &'static [(Op, u32)],
    ) -> Self {
        Burst { ip, grants: std::slice::from_ref(grant), start, span, count, ops }
    }
}

impl Generator {
    pub fn new(tenant: Tenant, seed: u64) -> Generator {
        let control = control::Control::new(seed, &tenant);
        Generator { tenant, seed, scale: 1.0, profile: Profile::Tidy, control }
    }

    /// The kind of tenant ([`Profile::Tidy`] unless set).
    pub fn with_profile(mut self, profile: Profile) -> Generator {
        if profile == Profile::Realistic && self.profile != Profile::Realistic {
            self.tenant.make_realistic(self.seed);
            // Admins and rotated principals are chosen among the habits the tenant has now.
            self.control = control::Control::new(self.seed, &self.tenant);
        }
        self.profile = profile;
        self
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Multiplies Cosmos request volume (sign-ins follow sessions, which do not scale).
    pub fn with_scale(mut self, scale: f64) -> Generator {
        self.scale = if scale.is_finite() && scale > 0.0 { scale } else { 0.0 };
        self
    }

    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// The members of the "Cosmos DB Admins" group, who make the benign grants and account
    /// writes (what a rule's admin list names).
    pub fn admins(&self) -> &[Principal] {
        &self.control.admins
    }

    /// The object id of the "Cosmos DB Admins" group.
    pub fn admin_group_id(&self) -> &str {
        &self.control.admin_group_id
    }

    /// The managed identity that lists and regenerates every account's keys each week (what
    /// a rule's list of key rotation identities names): one of the tenant's own.
    pub fn key_rotation_identity(&self) -> &Principal {
        &self.control.rotation
    }

    /// All baseline traffic with time in [from, to), sorted by time. Each hour comes from an RNG
    /// seeded by (seed, hour since epoch), so [a,c) equals [a,b) + [b,c) for any hour-aligned b.
    pub fn baseline(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Event> {
        let mut events = Vec::new();
        // A session's events reach from a few minutes before its hour (an interactive sign-in
        // ahead of the token) to well into the next hour (requests on that token), so the hours
        // on both sides of the window contribute.
        let first = from.timestamp().div_euclid(3600) - 1;
        let last = to.timestamp().div_euclid(3600) + 1;
        for hour in first..=last {
            self.hour(hour, &mut events);
        }
        events.retain(|e| e.time >= from && e.time < to);
        events.sort_by_key(|e| e.time); // stable: equal times keep their per-hour order
        events
    }

    /// Baseline for [from, to) plus each scenario at its own slot of the window's last three
    /// quarters (the first quarter stays clean so detections have a baseline to learn).
    pub fn history(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        scenarios: &[Scenario],
    ) -> (Vec<Event>, Vec<GroundTruth>) {
        let mut events = self.baseline(from, to);
        self.control_setup(from, to, &mut events);
        events.sort_by_key(|e| e.time);
        let mut truths = Vec::with_capacity(scenarios.len());
        if to > from && !scenarios.is_empty() {
            let rng = &mut stream_rng(self.seed, STREAM_HISTORY, from.timestamp() as u64);
            let first = from + (to - from) / 4;
            // Each scenario's slot is in proportion to how long it lasts, with a quarter of an
            // hour to spare; within its slot it starts where it still ends inside.
            let weight = |s: &Scenario| (s.lasts() + Duration::minutes(15)).num_seconds();
            let total: i64 = scenarios.iter().map(weight).sum::<i64>().max(1);
            let span = (to - first).num_seconds();
            let mut start = first;
            for &scenario in scenarios {
                let slot = Duration::seconds(span * weight(&scenario) / total);
                let room = (slot - scenario.lasts() - Duration::minutes(15)).max(Duration::zero());
                let at = start + jitter(rng, room);
                start += slot;
                if scenario == Scenario::DormantPrincipal {
                    // Dormant means silent since an earlier use: the principal's last job runs in
                    // the window's first hours (the scenario comes last in `Scenario::all`, so in
                    // a window of 40 days or more it wakes over 30 days later).
                    self.dormant_last_use(from, &mut events);
                }
                let (scenario_events, truth) = self.scenario(scenario, at);
                events.extend(scenario_events);
                truths.push(truth);
            }
            events.sort_by_key(|e| e.time);
        }
        (events, truths)
    }

    /// The dormant principal's last working session, in the hour after `from`.
    fn dormant_last_use(&self, from: DateTime<Utc>, out: &mut Vec<Event>) {
        let Some(p) = self.tenant.principals().find(|p| p.dormant && p.has_data()) else {
            return;
        };
        let start = from.duration_trunc(Duration::hours(1)).unwrap_or(from) + Duration::hours(1);
        let session_seed = stream_rng(self.seed, STREAM_HISTORY, start.timestamp() as u64).random();
        // Its rate is nil now; back then it ran like a small reader.
        let then = Principal { requests_per_hour: 20.0, ..p.clone() };
        self.session(&then, session_seed, start, 1.0, out);
    }

    fn hour(&self, hour: i64, out: &mut Vec<Event>) {
        let Some(start) = DateTime::from_timestamp(hour * 3600, 0) else {
            return;
        };
        let first = out.len();
        let rng = &mut stream_rng(self.seed, STREAM_HOUR, hour as u64);
        for p in self.tenant.principals() {
            // Each session draws from its own stream, so a different scale (more or fewer requests)
            // leaves every other session and every sign-in as it was.
            let session_seed: u64 = rng.random();
            let (chance, rhythm) = activity(p, start);
            if p.dormant || !rng.random_bool(chance) {
                continue;
            }
            self.session(p, session_seed, start, rhythm, out);
        }
        let key = &self.tenant.key_client;
        if let Some(account) = self.tenant.accounts.get(key.account) {
            for _ in 0..expected_count(rng, KEY_REQUESTS_PER_HOUR * self.scale) {
                let time = start + jitter(rng, Duration::hours(1));
                let read_only = rng.random_bool(0.8);
                let token_type = if read_only { "PrimaryReadOnlyMasterKey" } else { "PrimaryMasterKey" };
                let ops = if read_only { READS } else { Workload::Service.operations() };
                let caller = key_caller(token_type, &key.ip, key.user_agent);
                if let Some(r) = key_request(rng, account, time, ops, caller) {
                    push_request(rng, &r, out);
                }
            }
        }
        if self.profile == Profile::Realistic {
            self.realistic_hour(hour, start, out);
        }
        self.control_hour(hour, start, out);
        if self.profile == Profile::Realistic {
            // The hour's queries, as QueryRuntimeStatistics logs them: on a stream of its own.
            let rng = &mut stream_rng(self.seed, STREAM_QUERIES, hour as u64);
            let full_text = self.tenant.accounts.first().map_or("", |a| a.resource_id.as_str());
            let statistics = cosmos::benign_query_statistics(rng, &out[first..], full_text);
            out.extend(statistics);
        }
    }

    /// One working session of `p` in the hour from `start`: its sign-ins, then its requests.
    fn session(&self, p: &Principal, session_seed: u64, start: DateTime<Utc>, rhythm: f64, out: &mut Vec<Event>) {
        let rng = &mut Prng::seed_from_u64(session_seed);
        let signed_in = start + jitter(rng, Duration::minutes(50));
        let ip = p.ips.choose(rng).map_or("", String::as_str);
        let ops = p.workload.operations();
        // Only a realistic tenant has a leaver, or habits other than Plain; a Plain habit keeps
        // the address drawn above and draws nothing more, so the tidy bytes stay as they were.
        if p.habit == Habit::Leaver {
            return;
        }
        let realistic = self.profile == Profile::Realistic;
        let extra = &mut realistic::session_rng(session_seed);
        let addresses = self.addresses(extra, p, start, ip);
        self.session_sign_ins(rng, p, signed_in, &addresses.sign_in, out);
        let month_end = if realistic { realistic::month_end(p, start) } else { 1.0 };
        let count = expected_count(rng, p.requests_per_hour * rhythm * self.scale * month_end);
        let per_address = count.div_ceil(addresses.data.len().max(1));
        for (i, ip) in addresses.data.iter().enumerate() {
            let count = per_address.min(count.saturating_sub(i * per_address));
            let start = signed_in + Duration::seconds(2);
            let burst = Burst { ip, grants: &p.grants, start, span: Duration::minutes(55), count, ops };
            self.burst(rng, p, &burst, out, |_, _| {});
        }
        if realistic {
            self.session_extras(extra, p, signed_in, &addresses, count, out);
        }
    }

    /// Issues `b.count` requests at random times in the burst's span; returns the response bytes.
    fn burst<'a>(
        &'a self,
        rng: &mut Prng,
        p: &'a Principal,
        b: &Burst<'a>,
        out: &mut Vec<Event>,
        mut shape: impl FnMut(&mut Prng, &mut Request<'a>),
    ) -> u64 {
        let mut bytes = 0;
        for _ in 0..b.count {
            let time = b.start + jitter(rng, b.span);
            let Some(grant) = b.grants.choose(rng) else {
                break;
            };
            let Some(mut r) = principal_request(rng, &self.tenant.accounts, p, grant, time, b.ip, b.ops) else {
                break;
            };
            shape(rng, &mut r);
            bytes += push_request(rng, &r, out);
        }
        bytes
    }
}

/// How likely `p` is to work in the hour starting at `hour`, and a volume factor for that hour.
fn activity(p: &Principal, hour: DateTime<Utc>) -> (f64, f64) {
    match (p.kind, p.workload) {
        (PrincipalKind::User, _) => {
            let local = hour + Duration::minutes(i64::from(p.home.utc_offset_min));
            let weekend = matches!(local.weekday(), Weekday::Sat | Weekday::Sun);
            let chance = match (weekend, local.hour()) {
                (true, 10..=18) => 0.05,
                (true, _) => 0.01,
                (false, 9..=17) => 0.55,
                (false, 8 | 18..=21) => 0.15,
                (false, _) => 0.02,
            };
            (chance, 1.0)
        }
        (_, Workload::Etl) if (1..=3).contains(&hour.hour()) => (1.0, 1.0),
        (_, Workload::Etl) => (0.0, 0.0),
        (_, Workload::NoData) => (0.15, 0.0),
        // Customer-facing services follow a gentle daily curve that peaks around 14:00 UTC.
        _ => (0.97, 1.0 + 0.4 * ((f64::from(hour.hour()) - 14.0) / 24.0 * TAU).cos()),
    }
}

/// Uniform draw of a count with the given mean (±40%), rounding stochastically.
fn expected_count(rng: &mut Prng, mean: f64) -> usize {
    let x = mean * rng.random_range(0.6..1.4);
    let whole = x.floor();
    whole as usize + usize::from(rng.random_bool((x - whole).clamp(0.0, 1.0)))
}

#[cfg(test)]
mod tests;
