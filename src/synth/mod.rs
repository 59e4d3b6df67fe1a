//! Synthetic audit traffic for one Entra ID tenant and its Azure Cosmos DB accounts.
//!
//! Job: produce `DataPlaneRequests` records and Entra sign-in records (all four sign-in
//! categories) exactly as diagnostic settings deliver them to Event Hubs, plus named attack
//! scenarios with ground truth, for demos, detection tests and the ingest benchmark.
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

use std::f64::consts::TAU;
use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc, Weekday};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Value, json};

/// Addresses the scenarios use as "known bad" (Tor exit style); detections take them as a
/// user-supplied threat-intelligence list.
pub const THREAT_INTEL_IPS: &[&str] =
    &["185.220.101.47", "185.220.100.252", "185.220.101.134", "185.220.102.8", "185.220.103.119"];

type Prng = ChaCha8Rng;
/// (display name, app id) of the resource a token is issued for.
type Resource = (&'static str, &'static str);

const COSMOS_RESOURCE: Resource = ("Azure Cosmos DB", "a232010e-820c-4083-83bb-3ace5fc29d0b");
const ARM_RESOURCE: Resource = ("Windows Azure Service Management API", "797f4846-ba00-4fd7-ba43-dac1f8f63013");
const GRAPH_RESOURCE: Resource = ("Microsoft Graph", "00000003-0000-0000-c000-000000000000");
const DATA_PLANE: &str = "DataPlaneRequests";
const DOMAIN: &str = "contoso.com";
const USER_COUNT: usize = 40;
/// Users with a Cosmos RBAC role assignment; the rest only sign in to Office, Teams, ARM.
const DATA_USERS: usize = 16;
const KEY_REQUESTS_PER_HOUR: f64 = 4.0;
const DORMANT_SP: &str = "legacy-migration";

// RNG streams, so that the tenant, each hour, each scenario and the benchmark never share draws.
const STREAM_TENANT: u64 = 1;
const STREAM_HOUR: u64 = 2;
const STREAM_HISTORY: u64 = 3;
const STREAM_NDJSON: u64 = 4;
const STREAM_SCENARIO: u64 = 16;

/// A city with the network its addresses come from.
#[derive(Debug)]
pub struct Place {
    pub city: &'static str,
    pub state: &'static str,
    pub country: &'static str,
    pub latitude: f64,
    pub longitude: f64,
    /// Local time offset, minutes; drives users' working hours (DST ignored).
    pub utc_offset_min: i32,
    pub asn: u32,
    /// First two octets of the addresses handed out there.
    pub prefix: [u8; 2],
}

#[allow(clippy::too_many_arguments)]
const fn place(
    city: &'static str,
    state: &'static str,
    country: &'static str,
    latitude: f64,
    longitude: f64,
    utc_offset_min: i32,
    asn: u32,
    prefix: [u8; 2],
) -> Place {
    Place { city, state, country, latitude, longitude, utc_offset_min, asn, prefix }
}

/// Homes of the tenant's users; the first four (US) are the most common.
const HOME_PLACES: &[Place] = &[
    place("New York", "New York", "US", 40.7128, -74.006, -300, 7922, [73, 215]),
    place("Seattle", "Washington", "US", 47.6062, -122.3321, -480, 7922, [73, 97]),
    place("Chicago", "Illinois", "US", 41.8781, -87.6298, -360, 7018, [99, 61]),
    place("Austin", "Texas", "US", 30.2672, -97.7431, -360, 11427, [70, 114]),
    place("London", "England", "GB", 51.5072, -0.1276, 0, 2856, [86, 150]),
    place("Manchester", "England", "GB", 53.4808, -2.2426, 0, 5089, [82, 23]),
    place("Berlin", "Berlin", "DE", 52.52, 13.405, 60, 3320, [87, 178]),
    place("Amsterdam", "Noord-Holland", "NL", 52.3676, 4.9041, 60, 1136, [77, 163]),
    place("Bengaluru", "Karnataka", "IN", 12.9716, 77.5946, 330, 24560, [122, 171]),
    place("Toronto", "Ontario", "CA", 43.6532, -79.3832, -300, 812, [174, 112]),
];
/// Where attackers come from: no user lives in these countries.
const FOREIGN_PLACES: &[Place] = &[
    place("Lagos", "Lagos", "NG", 6.5244, 3.3792, 60, 36873, [105, 112]),
    place("Sao Paulo", "Sao Paulo", "BR", -23.5505, -46.6333, -180, 28573, [177, 68]),
    place("Singapore", "Singapore", "SG", 1.3521, 103.8198, 480, 14061, [159, 89]),
    place("Hanoi", "Hanoi", "VN", 21.0278, 105.8342, 420, 45899, [113, 160]),
    place("Bucharest", "Bucuresti", "RO", 44.4268, 26.1025, 120, 9009, [185, 181]),
];
const TOR_PLACE: Place = place("Frankfurt am Main", "Hesse", "DE", 50.1109, 8.6821, 60, 60729, [185, 220]);
/// Azure East US egress, where the tenant's workloads run.
const AZURE_PLACE: Place = place("Boydton", "Virginia", "US", 36.6676, -78.3875, -300, 8075, [20, 121]);
/// Managed identity sign-ins carry no location at all.
const NOWHERE: Place = place("", "", "", 0.0, 0.0, 0, 0, [0, 0]);

/// A device as the sign-in log describes it.
#[derive(Debug)]
pub struct Browser {
    pub os: &'static str,
    pub browser: &'static str,
    pub agent: &'static str,
}

const BROWSERS: &[Browser] = &[
    Browser {
        os: "Windows10",
        browser: "Edge 124.0.2478",
        agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
    },
    Browser {
        os: "Windows10",
        browser: "Chrome 124.0.0",
        agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    },
    Browser {
        os: "MacOs",
        browser: "Chrome 123.0.0",
        agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
    },
    Browser {
        os: "MacOs",
        browser: "Safari 17.4",
        agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    },
    Browser {
        os: "Linux",
        browser: "Firefox 125.0",
        agent: "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    },
];
const SPRAY_TOOL: Browser = Browser { os: "", browser: "Python Requests 2.31", agent: "python-requests/2.31.0" };

/// First-party clients users sign in with: (name, app id, clientAppUsed).
const USER_APPS: &[(&str, &str, &str)] = &[
    ("Azure Portal", "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "Browser"),
    ("Microsoft Azure CLI", "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "Mobile Apps and Desktop clients"),
    ("Visual Studio Code", "aebc6443-996d-45c2-90f0-388ff96faa56", "Mobile Apps and Desktop clients"),
    ("Microsoft Teams", "1fec8e78-bce4-4aaf-ab1b-5451cc387264", "Mobile Apps and Desktop clients"),
    ("Microsoft Office", "d3590ed6-52b3-4102-aeff-aad2292ab01c", "Mobile Apps and Desktop clients"),
];
/// Password sprays use the resource-owner password flow of a public client.
const SPRAY_APP: usize = 1;

const USER_COSMOS_AGENTS: &[&str] = &[
    "azsdk-python-cosmos/4.5.1 Python/3.11.6 (Windows-10-10.0.22631-SP0)",
    "azsdk-python-cosmos/4.7.0 Python/3.12.2 (macOS-14.4.1-arm64-arm-64bit)",
    "azsdk-js-cosmos/4.0.0 core-rest-pipeline/1.15.1 Node/v20.11.1 OS/(arm64-Darwin-23.4.0)",
    "cosmos-netstandard-sdk/3.38.1|1|X64|Microsoft Windows 10.0.22631|.NET 8.0.3|N|",
];
const SERVICE_COSMOS_AGENTS: &[&str] = &[
    "cosmos-netstandard-sdk/3.38.1|1|X64|Linux 5.15.0-1057-azure 1|.NET 8.0.3|N|F 00000010|",
    "azsdk-java-cosmos/4.56.0 Linux/5.15.0-1057-azure JRE/17.0.10",
    "azsdk-python-cosmos/4.6.0 Python/3.10.12 (Linux-5.15.0-1057-azure-x86_64-with-glibc2.35)",
    "azsdk-js-cosmos/4.0.0 core-rest-pipeline/1.15.1 Node/v18.19.1 OS/(x64-Linux-5.15.0-1057-azure)",
];
/// The legitimate key-based client (an on-premises app nobody migrated to Entra ID).
const LEGACY_KEY_AGENT: &str =
    "cosmos-netstandard-sdk/3.9.1|3.9.0|01|X86|Microsoft Windows 10.0.20348|.NET Core 3.1.32|";
const KEY_THIEF_AGENT: &str = "azsdk-python-cosmos/4.5.1 Python/3.11.8 (Linux-6.6.9-amd64-x86_64-with-glibc2.37)";
const NOVEL_AGENTS: &[&str] = &["python-requests/2.31.0", "curl/8.5.0", "PostmanRuntime/7.37.3"];

const FIRST_NAMES: &[&str] = &[
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elena", "William",
    "Barbara", "Priya", "Arjun", "Sophie", "Lukas", "Emma", "Noah", "Olivia", "Liam",
];
const LAST_NAMES: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Patel", "Sharma", "Mueller",
    "Schmidt", "Taylor", "Wilson", "Anderson", "Thomas", "Moore", "Martin", "Clarke", "Dubois",
];

/// (account, resource group, region, databases with their collections).
type AccountTemplate = (&'static str, &'static str, &'static str, &'static [(&'static str, &'static [&'static str])]);
const ACCOUNT_TEMPLATES: &[AccountTemplate] = &[
    (
        "contoso-orders-prod",
        "rg-orders-prod",
        "East US",
        &[("ordersdb", &["orders", "customers", "payments"]), ("catalogdb", &["products", "inventory"])],
    ),
    (
        "contoso-telemetry",
        "rg-platform-prod",
        "West Europe",
        &[("telemetry", &["events", "devices"]), ("opsdb", &["leases", "jobs", "alerts"])],
    ),
    (
        "contoso-crm-dev",
        "rg-crm-dev",
        "East US 2",
        &[("crm", &["accounts", "contacts", "opportunities"]), ("audit", &["changes"])],
    ),
];

/// What a principal does with Cosmos, which sets its operation mix and rhythm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Signs in but has no data access.
    NoData,
    /// A person exploring data during working hours.
    Analyst,
    /// An application doing mixed CRUD all day.
    Service,
    /// Query-heavy reporting or indexing.
    Reader,
    /// Nightly batch: large feeds and upserts between 01:00 and 04:00 UTC.
    Etl,
}

const SERVICE_PRINCIPALS: &[(&str, Workload, f64)] = &[
    ("orders-api", Workload::Service, 40.0),
    ("etl-nightly", Workload::Etl, 150.0),
    ("billing-worker", Workload::Service, 15.0),
    ("catalog-sync", Workload::Service, 10.0),
    ("reporting-svc", Workload::Reader, 8.0),
    ("crm-integration", Workload::Service, 12.0),
    ("notifications-fn", Workload::Service, 8.0),
    ("search-indexer", Workload::Reader, 10.0),
    ("terraform-deploy", Workload::NoData, 0.0),
    (DORMANT_SP, Workload::Reader, 0.0),
];
const MANAGED_IDENTITIES: &[(&str, Workload, f64)] = &[
    ("func-orders-prod", Workload::Service, 10.0),
    ("func-telemetry-ingest", Workload::Service, 12.0),
    ("aks-platform-agentpool", Workload::Service, 8.0),
    ("adf-contoso-prod", Workload::Reader, 5.0),
    ("vm-backup-01", Workload::Reader, 3.0),
    ("app-portal-prod", Workload::Service, 6.0),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Query,
    ReadFeed,
    Create,
    Upsert,
    Replace,
    Delete,
    Patch,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Read => "Read",
            Op::Query => "Query",
            Op::ReadFeed => "ReadFeed",
            Op::Create => "Create",
            Op::Upsert => "Upsert",
            Op::Replace => "Replace",
            Op::Delete => "Delete",
            Op::Patch => "Patch",
        }
    }

    fn success_code(self) -> u16 {
        match self {
            Op::Create => 201,
            Op::Delete => 204,
            _ => 200,
        }
    }
}

const READS: &[(Op, u32)] = &[(Op::Query, 45), (Op::Read, 35), (Op::ReadFeed, 20)];
const EXPORT: &[(Op, u32)] = &[(Op::ReadFeed, 60), (Op::Query, 40)];
const DELETES: &[(Op, u32)] = &[(Op::Delete, 1)];
const PROBES: &[(Op, u32)] = &[(Op::Read, 40), (Op::Query, 40), (Op::Create, 20)];

impl Workload {
    fn operations(self) -> &'static [(Op, u32)] {
        match self {
            Workload::NoData | Workload::Analyst => &[
                (Op::Query, 45),
                (Op::Read, 30),
                (Op::ReadFeed, 10),
                (Op::Upsert, 6),
                (Op::Replace, 4),
                (Op::Patch, 3),
                (Op::Delete, 2),
            ],
            Workload::Service => &[
                (Op::Read, 40),
                (Op::Query, 22),
                (Op::Create, 12),
                (Op::Upsert, 10),
                (Op::Replace, 5),
                (Op::Patch, 6),
                (Op::Delete, 3),
                (Op::ReadFeed, 2),
            ],
            Workload::Reader => &[(Op::Query, 55), (Op::Read, 25), (Op::ReadFeed, 20)],
            Workload::Etl => &[(Op::ReadFeed, 35), (Op::Query, 30), (Op::Upsert, 30), (Op::Delete, 5)],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    ServicePrincipal,
    ManagedIdentity,
}

/// A Cosmos RBAC role assignment on one account, scoped to some collections.
#[derive(Debug, Clone)]
pub struct Grant {
    pub account: usize,
    pub role_assignment_id: String,
    /// (database index, collection index) pairs the assignment covers.
    pub collections: Vec<(usize, usize)>,
}

/// A user, service principal or managed identity of the tenant.
#[derive(Debug, Clone)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// The object id: `userId` / `servicePrincipalId` in sign-ins, `aadPrincipalId` in Cosmos.
    pub object_id: String,
    /// Client application: the user's usual app, or the service principal's own registration.
    pub app_id: String,
    pub app_name: String,
    pub client_app_used: &'static str,
    /// UPN for users, service principal name otherwise.
    pub name: String,
    pub display_name: String,
    pub home: &'static Place,
    /// Usual source addresses (managed identities: the private address Cosmos sees).
    pub ips: Vec<String>,
    pub browser: Option<&'static Browser>,
    pub cosmos_agent: &'static str,
    pub connection_mode: &'static str,
    pub workload: Workload,
    pub requests_per_hour: f64,
    pub grants: Vec<Grant>,
    /// Role-assigned but silent: never appears in baseline traffic.
    pub dormant: bool,
    pub credential_key_id: String,
}

impl Principal {
    pub fn has_data(&self) -> bool {
        !self.grants.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Collection {
    pub name: String,
    /// Physical partitions, reported as `partitionId` by direct-mode requests.
    pub partitions: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub collections: Vec<Collection>,
}

#[derive(Debug, Clone)]
pub struct CosmosAccount {
    pub name: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub region: &'static str,
    /// Upper-cased ARM path, as `resourceId` carries it.
    pub resource_id: String,
    pub databases: Vec<Database>,
}

#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub app_id: String,
}

/// The one legitimate client that still authenticates with an account key.
#[derive(Debug, Clone)]
pub struct KeyClient {
    pub account: usize,
    pub ip: String,
    pub user_agent: &'static str,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub tenant_id: String,
    pub users: Vec<Principal>,
    pub service_principals: Vec<Principal>,
    pub managed_identities: Vec<Principal>,
    pub accounts: Vec<CosmosAccount>,
    pub apps: Vec<App>,
    pub key_client: KeyClient,
}

impl Tenant {
    pub fn new(seed: u64) -> Tenant {
        let rng = &mut stream_rng(seed, STREAM_TENANT, 0);
        let tenant_id = guid(rng);
        let subscriptions = [guid(rng), guid(rng)];
        let account_count = rng.random_range(2..=ACCOUNT_TEMPLATES.len());
        let accounts: Vec<CosmosAccount> = ACCOUNT_TEMPLATES[..account_count]
            .iter()
            .enumerate()
            .map(|(i, &(name, rg, region, dbs))| {
                let subscription_id = subscriptions[i % 2].clone();
                let resource_id = format!(
                    "/SUBSCRIPTIONS/{subscription_id}/RESOURCEGROUPS/{}/PROVIDERS/MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/{}",
                    rg.to_uppercase(),
                    name.to_uppercase()
                );
                let databases = dbs
                    .iter()
                    .map(|&(db, colls)| Database {
                        name: db.to_string(),
                        collections: colls
                            .iter()
                            .map(|c| Collection {
                                name: c.to_string(),
                                partitions: (0..rng.random_range(1..=4)).map(|_| guid(rng)).collect(),
                            })
                            .collect(),
                    })
                    .collect();
                CosmosAccount { name: name.into(), subscription_id, resource_group: rg.into(), region, resource_id, databases }
            })
            .collect();

        let mut names: Vec<(usize, usize)> =
            (0..FIRST_NAMES.len()).flat_map(|f| (0..LAST_NAMES.len()).map(move |l| (f, l))).collect();
        names.shuffle(rng);
        let mut users = Vec::with_capacity(USER_COUNT);
        for (i, &(f, l)) in names.iter().take(USER_COUNT).enumerate() {
            // Six in ten users work from the US offices.
            let home = if rng.random_bool(0.6) {
                &HOME_PLACES[rng.random_range(0..4)]
            } else {
                &HOME_PLACES[rng.random_range(4..HOME_PLACES.len())]
            };
            let data_user = i < DATA_USERS;
            let apps: &[usize] = if data_user { &[0, 1, 2] } else { &[0, 3, 4] };
            let (app_name, app_id, client_app_used) = USER_APPS[*apps.choose(rng).unwrap_or(&0)];
            let grants = if data_user {
                let first = rng.random_range(0..accounts.len());
                let mut grants = vec![grant(rng, &accounts, first, 3)];
                if rng.random_bool(0.3) {
                    grants.push(grant(rng, &accounts, (first + 1) % accounts.len(), 3));
                }
                grants
            } else {
                Vec::new()
            };
            let (first, last) = (FIRST_NAMES[f], LAST_NAMES[l]);
            users.push(Principal {
                kind: PrincipalKind::User,
                object_id: guid(rng),
                app_id: app_id.into(),
                app_name: app_name.into(),
                client_app_used,
                name: format!("{}.{}@{DOMAIN}", first.to_lowercase(), last.to_lowercase()),
                display_name: format!("{first} {last}"),
                home,
                ips: (0..rng.random_range(1..=3)).map(|_| public_ip(rng, home)).collect(),
                browser: BROWSERS.choose(rng),
                cosmos_agent: USER_COSMOS_AGENTS.choose(rng).copied().unwrap_or_default(),
                connection_mode: "Gateway",
                workload: if data_user { Workload::Analyst } else { Workload::NoData },
                requests_per_hour: if data_user { 12.0 } else { 0.0 },
                grants,
                dormant: false,
                credential_key_id: String::new(),
            });
        }

        let mut workloads = |kind: PrincipalKind, table: &[(&str, Workload, f64)]| -> Vec<Principal> {
            table
                .iter()
                .enumerate()
                .map(|(i, &(name, workload, rate))| {
                    let grants = match workload {
                        Workload::NoData => Vec::new(),
                        Workload::Etl => (0..accounts.len()).map(|a| grant(rng, &accounts, a, usize::MAX)).collect(),
                        _ => vec![grant(rng, &accounts, i % accounts.len(), 3)],
                    };
                    let ips = if kind == PrincipalKind::ManagedIdentity {
                        let subnet = rng.random_range(0..=3u8);
                        vec![format!("10.{subnet}.{}.{}", rng.random_range(0..=255u8), rng.random_range(4..=250u8))]
                    } else {
                        (0..rng.random_range(1..=2)).map(|_| public_ip(rng, &AZURE_PLACE)).collect()
                    };
                    Principal {
                        kind,
                        object_id: guid(rng),
                        app_id: guid(rng),
                        app_name: name.into(),
                        client_app_used: "",
                        name: name.into(),
                        display_name: name.into(),
                        home: &AZURE_PLACE,
                        ips,
                        browser: None,
                        cosmos_agent: SERVICE_COSMOS_AGENTS.choose(rng).copied().unwrap_or_default(),
                        connection_mode: if rng.random_bool(0.7) { "Direct" } else { "Gateway" },
                        workload,
                        requests_per_hour: rate,
                        grants,
                        dormant: name == DORMANT_SP,
                        credential_key_id: if kind == PrincipalKind::ServicePrincipal {
                            guid(rng)
                        } else {
                            String::new()
                        },
                    }
                })
                .collect()
        };
        let service_principals = workloads(PrincipalKind::ServicePrincipal, SERVICE_PRINCIPALS);
        let managed_identities = workloads(PrincipalKind::ManagedIdentity, MANAGED_IDENTITIES);

        let apps = USER_APPS
            .iter()
            .map(|&(name, app_id, _)| App { name: name.into(), app_id: app_id.into() })
            .chain(
                service_principals
                    .iter()
                    .chain(&managed_identities)
                    .map(|p| App { name: p.app_name.clone(), app_id: p.app_id.clone() }),
            )
            .collect();
        let key_client = KeyClient { account: 0, ip: public_ip(rng, &HOME_PLACES[0]), user_agent: LEGACY_KEY_AGENT };
        Tenant { tenant_id, users, service_principals, managed_identities, accounts, apps, key_client }
    }

    /// Users, then service principals, then managed identities.
    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.users.iter().chain(&self.service_principals).chain(&self.managed_identities)
    }
}

/// A role assignment on `account` covering up to `max_collections` of its collections.
fn grant(rng: &mut Prng, accounts: &[CosmosAccount], account: usize, max_collections: usize) -> Grant {
    let mut collections: Vec<(usize, usize)> = accounts
        .get(account)
        .map(|a| {
            a.databases.iter().enumerate().flat_map(|(d, db)| (0..db.collections.len()).map(move |c| (d, c))).collect()
        })
        .unwrap_or_default();
    collections.shuffle(rng);
    let keep = rng.random_range(1..=max_collections.min(collections.len()).max(1));
    collections.truncate(keep);
    Grant { account, role_assignment_id: guid(rng), collections }
}

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
}

impl Scenario {
    pub fn all() -> &'static [Scenario] {
        use Scenario::*;
        &[
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

/// One diagnostic record, as it would sit inside an Event Hubs `{"records": [...]}` body.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub time: DateTime<Utc>,
    pub category: &'static str,
    pub record: Value,
}

/// Wraps records the way diagnostic settings send them to Event Hubs.
pub fn envelope(events: &[Event]) -> Value {
    json!({ "records": events.iter().map(|e| &e.record).collect::<Vec<_>>() })
}

pub struct Generator {
    tenant: Tenant,
    seed: u64,
    scale: f64,
}

/// Who is calling Cosmos and how.
#[derive(Clone, Copy)]
struct Caller<'a> {
    principal_id: &'a str,
    role_assignment_id: &'a str,
    /// "AADToken" or the key used.
    token_type: &'static str,
    ip: &'a str,
    user_agent: &'a str,
    connection_mode: &'static str,
}

/// One Cosmos request before it is rendered; scenarios adjust fields before rendering.
struct Request<'a> {
    time: DateTime<Utc>,
    account: &'a CosmosAccount,
    op: Op,
    resource_type: &'static str,
    resource_path: String,
    database: &'a str,
    collection: &'a str,
    partition: &'a str,
    status: u16,
    caller: Caller<'a>,
    bulk: bool,
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

/// What a scenario reports about itself; the window comes from its events.
struct Plan {
    principal: Option<(String, String)>,
    account: String,
    source_ip: Option<String>,
    description: String,
}

impl Plan {
    fn by(p: &Principal, account: &CosmosAccount, ip: &str, description: String) -> Option<Plan> {
        let principal = Some((p.object_id.clone(), p.name.clone()));
        Some(Plan { principal, account: account.name.clone(), source_ip: Some(ip.to_string()), description })
    }
}

/// The fields of one sign-in record that vary between traffic and scenarios.
struct SignIn<'a> {
    time: DateTime<Utc>,
    principal: &'a Principal,
    interactive: bool,
    ip: &'a str,
    place: &'a Place,
    resource: Resource,
    app: (&'a str, &'a str, &'a str),
    browser: Option<&'a Browser>,
    error: u32,
    risk: &'static str,
    risk_events: &'static [&'static str],
    conditional_access: &'static str,
}

impl<'a> SignIn<'a> {
    /// The token request that precedes data access: non-interactive for users.
    fn token(p: &'a Principal, time: DateTime<Utc>, ip: &'a str, place: &'a Place, resource: Resource) -> Self {
        let user = p.kind == PrincipalKind::User;
        SignIn {
            time,
            principal: p,
            interactive: false,
            ip,
            place,
            resource,
            app: (&p.app_name, &p.app_id, p.client_app_used),
            browser: p.browser,
            error: 0,
            risk: "none",
            risk_events: &[],
            conditional_access: if user { "success" } else { "notApplied" },
        }
    }

    fn interactive(p: &'a Principal, time: DateTime<Utc>, ip: &'a str, place: &'a Place) -> Self {
        SignIn { interactive: true, ..SignIn::token(p, time, ip, place, ARM_RESOURCE) }
    }

    /// A password-spray attempt through the ROPC flow, which conditional access does not cover.
    fn spray(p: &'a Principal, time: DateTime<Utc>, ip: &'a str, place: &'a Place) -> Self {
        let (name, id, used) = USER_APPS[SPRAY_APP];
        SignIn {
            app: (name, id, used),
            browser: Some(&SPRAY_TOOL),
            conditional_access: "notApplied",
            ..SignIn::interactive(p, time, ip, place)
        }
    }
}

impl Generator {
    pub fn new(tenant: Tenant, seed: u64) -> Generator {
        Generator { tenant, seed, scale: 1.0 }
    }

    /// Multiplies Cosmos request volume (sign-ins follow sessions, which do not scale).
    pub fn with_scale(mut self, scale: f64) -> Generator {
        self.scale = if scale.is_finite() && scale > 0.0 { scale } else { 0.0 };
        self
    }

    pub fn tenant(&self) -> &Tenant {
        &self.tenant
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

    /// The events of one scenario starting at `at`, and its ground truth.
    pub fn scenario(&self, scenario: Scenario, at: DateTime<Utc>) -> (Vec<Event>, GroundTruth) {
        let at = whole_ticks(at);
        let stream = STREAM_SCENARIO + scenario as u64;
        let rng = &mut stream_rng(self.seed, stream, at.timestamp_micros() as u64);
        let mut events = Vec::new();
        let out = &mut events;
        let plan = match scenario {
            Scenario::ForeignIpToken => self.foreign_ip_token(rng, at, out),
            Scenario::KeyBasedAccess => self.key_based_access(rng, at, out),
            Scenario::SprayThenDataAccess => self.spray_then_data_access(rng, at, out),
            Scenario::BulkExport => self.bulk_export(rng, at, out),
            Scenario::MassDelete => self.mass_delete(rng, at, out),
            Scenario::PermissionProbing => self.permission_probing(rng, at, out),
            Scenario::CollectionEnumeration => self.collection_enumeration(rng, at, out),
            Scenario::ImpossibleTravel => self.impossible_travel(rng, at, out),
            Scenario::DormantPrincipal => self.dormant_principal(rng, at, out),
            Scenario::NewUserAgent => self.new_user_agent(rng, at, out),
            Scenario::ThreatIntelIp => self.threat_intel_ip(rng, at, out),
            Scenario::TokenWithoutSignIn => self.token_without_sign_in(rng, at, out),
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

    /// Baseline for [from, to) plus each scenario at its own slot of the window's last three
    /// quarters (the first quarter stays clean so detections have a baseline to learn).
    pub fn history(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        scenarios: &[Scenario],
    ) -> (Vec<Event>, Vec<GroundTruth>) {
        let mut events = self.baseline(from, to);
        let mut truths = Vec::with_capacity(scenarios.len());
        if to > from && !scenarios.is_empty() {
            let rng = &mut stream_rng(self.seed, STREAM_HISTORY, from.timestamp() as u64);
            let first = from + (to - from) / 4;
            let slot = (to - first) / scenarios.len() as i32;
            // Leave room for the longest scenario (about an hour) inside its slot.
            let room = (slot - Duration::minutes(75)).max(Duration::zero());
            for (i, &scenario) in scenarios.iter().enumerate() {
                let at = first + slot * i as i32 + jitter(rng, room);
                let (scenario_events, truth) = self.scenario(scenario, at);
                events.extend(scenario_events);
                truths.push(truth);
            }
            events.sort_by_key(|e| e.time);
        }
        (events, truths)
    }

    fn hour(&self, hour: i64, out: &mut Vec<Event>) {
        let Some(start) = DateTime::from_timestamp(hour * 3600, 0) else {
            return;
        };
        let rng = &mut stream_rng(self.seed, STREAM_HOUR, hour as u64);
        for p in self.tenant.principals() {
            // Each session draws from its own stream, so a different scale (more or fewer requests)
            // leaves every other session and every sign-in as it was.
            let session_seed: u64 = rng.random();
            let (chance, rhythm) = activity(p, start);
            if p.dormant || !rng.random_bool(chance) {
                continue;
            }
            let rng = &mut Prng::seed_from_u64(session_seed);
            let signed_in = start + jitter(rng, Duration::minutes(50));
            let ip = p.ips.choose(rng).map_or("", String::as_str);
            self.session_sign_ins(rng, p, signed_in, ip, out);
            let count = expected_count(rng, p.requests_per_hour * rhythm * self.scale);
            let start = signed_in + Duration::seconds(2);
            let ops = p.workload.operations();
            let burst = Burst { ip, grants: &p.grants, start, span: Duration::minutes(55), count, ops };
            self.burst(rng, p, &burst, out, |_, _| {});
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
    }

    /// The sign-ins of one working session: for users an occasional interactive sign-in (now and
    /// then after a failed attempt), the token for Cosmos (or Graph) and some token refreshes.
    fn session_sign_ins(&self, rng: &mut Prng, p: &Principal, at: DateTime<Utc>, ip: &str, out: &mut Vec<Event>) {
        let resource = if p.has_data() {
            COSMOS_RESOURCE
        } else if p.kind == PrincipalKind::User {
            GRAPH_RESOURCE
        } else {
            ARM_RESOURCE
        };
        if p.kind != PrincipalKind::User {
            out.push(self.sign_in_event(rng, &SignIn::token(p, at, ip, p.home, resource)));
            return;
        }
        if rng.random_bool(0.35) {
            let t = at - Duration::seconds(rng.random_range(5..90));
            if rng.random_bool(0.08) {
                let error = [50126, 50074, 50140].choose(rng).copied().unwrap_or(50126);
                let failed = t - Duration::seconds(rng.random_range(20..120));
                let attempt =
                    SignIn { error, conditional_access: "notApplied", ..SignIn::interactive(p, failed, ip, p.home) };
                out.push(self.sign_in_event(rng, &attempt));
            }
            let risk = baseline_risk(rng);
            out.push(self.sign_in_event(rng, &SignIn { risk, ..SignIn::interactive(p, t, ip, p.home) }));
        }
        out.push(self.sign_in_event(rng, &SignIn::token(p, at, ip, p.home, resource)));
        for _ in 0..rng.random_range(0..=3) {
            let t = at + jitter(rng, Duration::minutes(55));
            let other = if rng.random_bool(0.5) { GRAPH_RESOURCE } else { ARM_RESOURCE };
            out.push(self.sign_in_event(rng, &SignIn::token(p, t, ip, p.home, other)));
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

    fn sign_in_event(&self, rng: &mut Prng, s: &SignIn) -> Event {
        let p = s.principal;
        let tenant = &self.tenant.tenant_id;
        let (id, correlation) = (guid(rng), guid(rng));
        let category = match (p.kind, s.interactive) {
            (PrincipalKind::User, true) => "SignInLogs",
            (PrincipalKind::User, false) => "NonInteractiveUserSignInLogs",
            (PrincipalKind::ServicePrincipal, _) => "ServicePrincipalSignInLogs",
            (PrincipalKind::ManagedIdentity, _) => "ManagedIdentitySignInLogs",
        };
        let managed = p.kind == PrincipalKind::ManagedIdentity;
        let (ip, place) = if managed { ("", &NOWHERE) } else { (s.ip, s.place) };
        let failure = failure_reason(s.error);
        let mut status = json!({ "errorCode": s.error });
        if s.error != 0 {
            status["failureReason"] = json!(failure);
        }
        let at_risk = matches!(s.risk, "medium" | "high");
        let mut props = json!({
            "id": id,
            "createdDateTime": WireTime(s.time, "+00:00").to_string(),
            "appId": s.app.1,
            "appDisplayName": s.app.0,
            "ipAddress": ip,
            "status": status,
            "location": {
                "city": place.city, "state": place.state, "countryOrRegion": place.country,
                "geoCoordinates": { "latitude": place.latitude, "longitude": place.longitude },
            },
            "correlationId": correlation,
            "conditionalAccessStatus": s.conditional_access,
            "appliedConditionalAccessPolicies": [],
            "isInteractive": s.interactive,
            "tokenIssuerName": "",
            "tokenIssuerType": "AzureAD",
            "processingTimeInMilliseconds": rng.random_range(15..400),
            "riskDetail": "none",
            "riskLevelAggregated": s.risk,
            "riskLevelDuringSignIn": s.risk,
            "riskState": if at_risk { "atRisk" } else { "none" },
            "riskEventTypes": s.risk_events,
            "riskEventTypes_v2": s.risk_events,
            "resourceDisplayName": s.resource.0,
            "resourceId": s.resource.1,
            "resourceTenantId": tenant,
            "homeTenantId": tenant,
            "flaggedForReview": false,
            "isTenantRestricted": false,
            "crossTenantAccessType": "none",
            "uniqueTokenIdentifier": token_identifier(rng),
            "incomingTokenType": "none",
            "authenticationProtocol": if s.app.0 == USER_APPS[SPRAY_APP].0 && s.interactive { "ropc" } else { "none" },
        });
        if !managed {
            props["autonomousSystemNumber"] = json!(place.asn);
        }
        if p.kind == PrincipalKind::User {
            let browser = s.browser.unwrap_or(&BROWSERS[0]);
            let mfa = s.interactive && s.error == 0 && s.conditional_access == "success";
            props["userId"] = json!(p.object_id);
            props["userPrincipalName"] = json!(p.name);
            props["userDisplayName"] = json!(p.display_name);
            props["userType"] = json!("Member");
            props["servicePrincipalId"] = json!("");
            props["originalRequestId"] = json!(id);
            props["clientAppUsed"] = json!(s.app.2);
            props["userAgent"] = json!(browser.agent);
            props["deviceDetail"] =
                json!({ "deviceId": "", "operatingSystem": browser.os, "browser": browser.browser });
            props["mfaDetail"] = json!({});
            props["authenticationRequirement"] =
                json!(if mfa { "multiFactorAuthentication" } else { "singleFactorAuthentication" });
        } else {
            props["userId"] = Value::Null;
            props["servicePrincipalId"] = json!(p.object_id);
            props["servicePrincipalName"] = json!(p.name);
            if p.kind == PrincipalKind::ServicePrincipal {
                props["servicePrincipalCredentialKeyId"] = json!(p.credential_key_id);
            }
        }
        let mut record = json!({
            "time": WireTime(s.time, "Z").to_string(),
            "resourceId": format!("/tenants/{tenant}/providers/Microsoft.aadiam"),
            "operationName": "Sign-in activity",
            "operationVersion": "1.0",
            "category": category,
            "tenantId": tenant,
            "resultType": s.error.to_string(),
            "resultSignature": "None",
            "durationMs": 0,
            "correlationId": correlation,
            "Level": 4,
            "properties": props,
        });
        // As in the managed identity sample: no caller address and no country at top level.
        if !managed {
            record["callerIpAddress"] = json!(ip);
            record["location"] = json!(place.country);
        }
        if p.kind == PrincipalKind::User {
            record["identity"] = json!(p.display_name);
        }
        if s.error != 0 {
            record["resultDescription"] = json!(failure);
        }
        Event { time: s.time, category, record }
    }

    // ---- scenarios -------------------------------------------------------------------------

    /// A data principal, excluding the dormant and the nightly batch, accepted by `allow`.
    fn pick(&self, rng: &mut Prng, allow: impl Fn(&Principal) -> bool) -> Option<&Principal> {
        let pool: Vec<&Principal> = self
            .tenant
            .principals()
            .filter(|p| p.has_data() && !p.dormant && p.workload != Workload::Etl && allow(p))
            .collect();
        pool.choose(rng).copied()
    }

    fn grant_of<'a>(&'a self, rng: &mut Prng, p: &'a Principal) -> Option<(&'a Grant, &'a CosmosAccount)> {
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

    fn spray_then_data_access(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let victim = self.pick(rng, |p| p.kind == PrincipalKind::User)?;
        let (grant, account) = self.grant_of(rng, victim)?;
        let place = FOREIGN_PLACES.choose(rng)?;
        let ip = public_ip(rng, place);
        let mut targets: Vec<&Principal> =
            self.tenant.users.iter().filter(|u| u.object_id != victim.object_id).collect();
        targets.shuffle(rng);
        targets.truncate(rng.random_range(11..=18));
        let step = Duration::seconds(540 / targets.len().max(1) as i64);
        for (i, user) in targets.iter().enumerate() {
            let t = at + step * i as i32 + jitter(rng, Duration::seconds(5));
            out.push(self.sign_in_event(rng, &SignIn { error: 50126, ..SignIn::spray(user, t, &ip, place) }));
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
        let what = format!(
            "password spray on {} users from {ip} ({}), then {} signed in and read {}",
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

fn baseline_risk(rng: &mut Prng) -> &'static str {
    pick_weighted(rng, &[("none", 960), ("low", 30), ("medium", 8), ("high", 2)])
}

fn failure_reason(code: u32) -> &'static str {
    match code {
        0 => "",
        50126 => "Error validating credentials due to invalid username or password.",
        50074 => "Strong Authentication is required.",
        50140 => "This error occurred due to 'Keep me signed in' interrupt when the user was signing-in.",
        _ => "Other.",
    }
}

/// A document request by `p` under `grant`, from `ip`, with an operation drawn from `ops`.
fn principal_request<'a>(
    rng: &mut Prng,
    accounts: &'a [CosmosAccount],
    p: &'a Principal,
    grant: &'a Grant,
    time: DateTime<Utc>,
    ip: &'a str,
    ops: &[(Op, u32)],
) -> Option<Request<'a>> {
    let account = accounts.get(grant.account)?;
    let &(d, c) = grant.collections.choose(rng)?;
    let db = account.databases.get(d)?;
    let coll = db.collections.get(c)?;
    let op = pick_weighted(rng, ops);
    Some(document_request(rng, time, account, db, coll, op, aad_caller(p, grant, ip)))
}

fn aad_caller<'a>(p: &'a Principal, grant: &'a Grant, ip: &'a str) -> Caller<'a> {
    Caller {
        principal_id: &p.object_id,
        role_assignment_id: &grant.role_assignment_id,
        token_type: "AADToken",
        ip,
        user_agent: p.cosmos_agent,
        connection_mode: p.connection_mode,
    }
}

fn key_caller<'a>(token_type: &'static str, ip: &'a str, user_agent: &'a str) -> Caller<'a> {
    Caller { principal_id: "", role_assignment_id: "", token_type, ip, user_agent, connection_mode: "Gateway" }
}

fn key_request<'a>(
    rng: &mut Prng,
    account: &'a CosmosAccount,
    time: DateTime<Utc>,
    ops: &[(Op, u32)],
    caller: Caller<'a>,
) -> Option<Request<'a>> {
    let db = account.databases.choose(rng)?;
    let coll = db.collections.choose(rng)?;
    let op = pick_weighted(rng, ops);
    Some(document_request(rng, time, account, db, coll, op, caller))
}

fn document_request<'a>(
    rng: &mut Prng,
    time: DateTime<Utc>,
    account: &'a CosmosAccount,
    db: &'a Database,
    coll: &'a Collection,
    op: Op,
    caller: Caller<'a>,
) -> Request<'a> {
    // Direct mode talks to a replica of one physical partition; the gateway hides it.
    let partition = match caller.connection_mode {
        "Direct" => coll.partitions.choose(rng).map_or("", String::as_str),
        _ => "",
    };
    Request {
        time,
        account,
        op,
        resource_type: "Document",
        resource_path: format!("/dbs/{}/colls/{}/docs", db.name, coll.name),
        database: &db.name,
        collection: &coll.name,
        partition,
        status: baseline_status(rng, op),
        caller,
        bulk: false,
    }
}

/// A request on a Database or Collection resource (listing or reading containers).
fn metadata_request<'a>(
    time: DateTime<Utc>,
    account: &'a CosmosAccount,
    op: Op,
    resource_type: &'static str,
    database: &'a str,
    collection: &'a str,
    caller: Caller<'a>,
) -> Request<'a> {
    let resource_path = match (database, collection) {
        ("", _) => String::new(),
        (db, "") => format!("/dbs/{db}"),
        (db, coll) => format!("/dbs/{db}/colls/{coll}"),
    };
    Request {
        time,
        account,
        op,
        resource_type,
        resource_path,
        database,
        collection,
        partition: "",
        status: 200,
        caller,
        bulk: false,
    }
}

fn baseline_status(rng: &mut Prng, op: Op) -> u16 {
    let roll: f64 = rng.random();
    match op {
        _ if roll < 0.012 => 429,
        _ if roll < 0.014 => 403,
        Op::Read | Op::Replace | Op::Patch | Op::Delete if roll < 0.05 => 404,
        Op::Create if roll < 0.04 => 409,
        _ => op.success_code(),
    }
}

/// Renders a request, records it and returns its response size.
fn push_request(rng: &mut Prng, r: &Request, out: &mut Vec<Event>) -> u64 {
    let record = cosmos_record(rng, r);
    let bytes = record.properties.response_length;
    // A struct of strings and numbers has no way to fail serialization.
    let record = serde_json::to_value(&record).expect("Cosmos record serializes");
    out.push(Event { time: r.time, category: DATA_PLANE, record });
    bytes
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CosmosRecord<'a> {
    #[serde(serialize_with = "as_text")]
    time: WireTime,
    resource_id: &'a str,
    category: &'static str,
    operation_name: &'static str,
    properties: CosmosProperties<'a>,
}

/// `properties` of a DataPlaneRequests record; on the wire every value is a string.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CosmosProperties<'a> {
    #[serde(serialize_with = "as_text")]
    activity_id: Guid,
    request_resource_type: &'static str,
    request_resource_id: &'a str,
    collection_rid: &'static str,
    database_rid: &'static str,
    #[serde(serialize_with = "as_text")]
    status_code: u16,
    #[serde(serialize_with = "six_decimals")]
    duration: f64,
    user_agent: &'a str,
    client_ip_address: &'a str,
    #[serde(serialize_with = "six_decimals")]
    request_charge: f64,
    #[serde(serialize_with = "as_text")]
    request_length: u64,
    #[serde(serialize_with = "as_text")]
    response_length: u64,
    resource_token_permission_id: &'static str,
    resource_token_permission_mode: &'static str,
    resource_token_user_rid: &'static str,
    region: &'a str,
    partition_id: &'a str,
    aad_applied_role_assignment_id: &'a str,
    aad_principal_id: &'a str,
    auth_token_type: &'a str,
    key_type: &'a str,
    connection_mode: &'static str,
    subscription_id: &'a str,
    database_name: &'a str,
    collection_name: &'a str,
}

fn cosmos_record<'a>(rng: &mut Prng, r: &'a Request<'a>) -> CosmosRecord<'a> {
    let (duration, request_charge, request_length, response_length) = costs(rng, r);
    let aad = r.caller.token_type == "AADToken";
    // A denied request was allowed by no role assignment.
    let role = if r.status == 403 { "" } else { r.caller.role_assignment_id };
    CosmosRecord {
        time: WireTime(r.time, "Z"),
        resource_id: &r.account.resource_id,
        category: DATA_PLANE,
        operation_name: r.op.name(),
        properties: CosmosProperties {
            activity_id: Guid::new(rng),
            request_resource_type: r.resource_type,
            request_resource_id: &r.resource_path,
            collection_rid: "",
            database_rid: "",
            status_code: r.status,
            duration,
            user_agent: r.caller.user_agent,
            client_ip_address: r.caller.ip,
            request_charge,
            request_length,
            response_length,
            resource_token_permission_id: "",
            resource_token_permission_mode: "",
            resource_token_user_rid: "",
            region: r.account.region,
            partition_id: r.partition,
            aad_applied_role_assignment_id: if aad { role } else { "" },
            aad_principal_id: if aad { r.caller.principal_id } else { "" },
            auth_token_type: r.caller.token_type,
            key_type: if aad { "" } else { r.caller.token_type },
            connection_mode: r.caller.connection_mode,
            subscription_id: &r.account.subscription_id,
            database_name: r.database,
            collection_name: r.collection,
        },
    }
}

/// (duration ms, request units, request bytes, response bytes) of a request.
fn costs(rng: &mut Prng, r: &Request) -> (f64, f64, u64, u64) {
    if r.status >= 400 {
        let charge = if r.status == 404 { 1.0 } else { 0.0 };
        return (rng.random_range(0.2..2.5), charge, rng.random_range(0..600), rng.random_range(150..420));
    }
    if r.bulk {
        return (
            rng.random_range(150.0..1800.0),
            rng.random_range(250.0..1200.0),
            rng.random_range(200..900),
            rng.random_range(1_000_000..4_200_000),
        );
    }
    if r.resource_type != "Document" {
        return (rng.random_range(0.3..3.0), 1.0, 0, rng.random_range(300..2500));
    }
    let (duration, charge, request, response) = match r.op {
        Op::Read => (0.3..4.0, 1.0..2.4, 0..1, 400..6000),
        Op::Query => (2.0..40.0, 2.8..60.0, 200..900, 800..40_000),
        Op::ReadFeed => (3.0..60.0, 5.0..120.0, 0..1, 5000..120_000),
        Op::Create | Op::Upsert | Op::Replace => (3.0..15.0, 5.7..25.0, 400..4000, 400..4000),
        Op::Patch => (3.0..12.0, 10.0..20.0, 100..600, 400..4000),
        Op::Delete => (2.0..10.0, 5.7..12.0, 0..1, 0..1),
    };
    (rng.random_range(duration), rng.random_range(charge), rng.random_range(request), rng.random_range(response))
}

/// For the ingest benchmark: `n` DataPlaneRequests records as NDJSON (about 1 KB each), spread
/// over the seven days before the start of today (UTC). Deterministic per seed within a day;
/// use [`write_cosmos_ndjson_until`] for a fixed window. Returns the bytes written.
pub fn write_cosmos_ndjson(out: &mut impl Write, n: usize, seed: u64) -> io::Result<u64> {
    let today = Utc::now().timestamp().div_euclid(86_400) * 86_400;
    let end = DateTime::from_timestamp(today, 0).unwrap_or_else(Utc::now);
    write_cosmos_ndjson_until(out, n, seed, end)
}

/// As [`write_cosmos_ndjson`], with the records spread over the seven days before `end`.
pub fn write_cosmos_ndjson_until(out: &mut impl Write, n: usize, seed: u64, end: DateTime<Utc>) -> io::Result<u64> {
    let tenant = Tenant::new(seed);
    let rng = &mut stream_rng(seed, STREAM_NDJSON, 0);
    let callers: Vec<&Principal> = tenant.principals().filter(|p| p.has_data() && !p.dormant).collect();
    let Some(key_account) = tenant.accounts.get(tenant.key_client.account) else {
        return Ok(0);
    };
    let key = key_caller("PrimaryReadOnlyMasterKey", &tenant.key_client.ip, tenant.key_client.user_agent);
    let span_ticks = Duration::days(7).num_microseconds().unwrap_or(0) * 10;
    let step = (span_ticks / n.max(1) as i64).max(1);
    let start = end - Duration::days(7);
    let mut buf = Vec::with_capacity(1 << 16);
    let mut written = 0u64;
    for i in 0..n {
        let time = start + Duration::nanoseconds((step * i as i64 + rng.random_range(0..step)) * 100);
        let caller = callers.choose(rng).copied();
        let request = match caller {
            Some(p) if !rng.random_bool(0.03) => {
                let ip = p.ips.choose(rng).map_or("", String::as_str);
                let grant = p.grants.choose(rng);
                grant.and_then(|g| principal_request(rng, &tenant.accounts, p, g, time, ip, p.workload.operations()))
            }
            _ => None,
        };
        let Some(request) = request.or_else(|| key_request(rng, key_account, time, READS, key)) else {
            continue;
        };
        serde_json::to_writer(&mut buf, &cosmos_record(rng, &request))?;
        buf.push(b'\n');
        if buf.len() >= 1 << 16 {
            out.write_all(&buf)?;
            written += buf.len() as u64;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(written + buf.len() as u64)
}

/// Uniform draw of a count with the given mean (±40%), rounding stochastically.
fn expected_count(rng: &mut Prng, mean: f64) -> usize {
    let x = mean * rng.random_range(0.6..1.4);
    let whole = x.floor();
    whole as usize + usize::from(rng.random_bool((x - whole).clamp(0.0, 1.0)))
}

/// Picks from a non-empty constant table by integer weight.
fn pick_weighted<T: Copy>(rng: &mut Prng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|e| e.1).sum();
    let mut roll = rng.random_range(0..total.max(1));
    for &(item, weight) in table {
        if roll < weight {
            return item;
        }
        roll -= weight;
    }
    table[table.len() - 1].0
}

fn public_ip(rng: &mut Prng, place: &Place) -> String {
    let [a, b] = place.prefix;
    format!("{a}.{b}.{}.{}", rng.random_range(0..=255u8), rng.random_range(1..=254u8))
}

/// A random span shorter than `span`, in whole 100 ns ticks (the wire's resolution).
fn jitter(rng: &mut Prng, span: Duration) -> Duration {
    let ticks = span.num_microseconds().unwrap_or(0) * 10;
    if ticks <= 0 {
        return Duration::zero();
    }
    Duration::nanoseconds(rng.random_range(0..ticks) * 100)
}

/// Drops what the wire's seven fractional digits cannot carry, so `Event::time` and the
/// record's `time` agree.
fn whole_ticks(t: DateTime<Utc>) -> DateTime<Utc> {
    t - Duration::nanoseconds(i64::from(t.timestamp_subsec_nanos() % 100))
}

fn stream_rng(seed: u64, stream: u64, index: u64) -> Prng {
    Prng::seed_from_u64(splitmix(splitmix(seed ^ stream.rotate_left(40)) ^ index))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random (version 4) GUID.
struct Guid(u128);

impl Guid {
    fn new(rng: &mut Prng) -> Guid {
        let v: u128 = rng.random();
        Guid((v & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62))
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            v >> 96,
            (v >> 80) & 0xffff,
            (v >> 64) & 0xffff,
            (v >> 48) & 0xffff,
            v & 0xffff_ffff_ffff
        )
    }
}

fn guid(rng: &mut Prng) -> String {
    Guid::new(rng).to_string()
}

/// The base64url form `uniqueTokenIdentifier` takes (22 characters for 128 bits).
fn token_identifier(rng: &mut Prng) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits: u128 = rng.random();
    (0..22).map(|i| char::from(ALPHABET[((bits >> (i * 6)) & 63) as usize])).collect()
}

/// ISO 8601 with seven fractional digits and the given zone suffix, as Azure writes it.
struct WireTime(DateTime<Utc>, &'static str);

impl fmt::Display for WireTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (t, zone) = (self.0, self.1);
        write!(f, "{}.{:07}{zone}", t.format("%Y-%m-%dT%H:%M:%S"), t.timestamp_subsec_nanos() / 100)
    }
}

/// GroundTruth times as RFC 3339 strings (chrono's own serde support is not enabled).
mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
    }
}

fn as_text<T: fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn six_decimals<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{value:.6}"))
}

#[cfg(test)]
mod tests {
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
            assert!(truth.start >= start - Duration::nanoseconds(100) && truth.start - start < Duration::minutes(1));
            assert!(truth.end > truth.start && truth.end - truth.start <= Duration::minutes(70), "{name}");
            assert!(tenant_accounts.contains(truth.account.as_str()), "{name}: {}", truth.account);
            assert!(truth.source_ip.is_some(), "{name}");
            assert_eq!(truth.principal_id.is_none(), scenario == Scenario::KeyBasedAccess, "{name}");
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
            let mine = |e: &&Event| if is_request(e) { prop(e, "aadPrincipalId") == id } else { signed_in_id(e) == id };
            events.iter().filter(mine).cloned().collect()
        };
        let requests_from = |events: &[Event], ip: &str| {
            events.iter().filter(|e| is_request(e) && prop(e, "clientIpAddress") == ip).count()
        };
        let baseline_ips: HashSet<&str> = baseline
            .iter()
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
                    let hit =
                        mine.iter().find(|e| e.category == "SignInLogs" && succeeded(e)).expect("successful spray");
                    assert!(hit.time > last_failure && prop(hit, "ipAddress") == ip);
                    assert!(requests().all(|e| e.time > hit.time && prop(e, "clientIpAddress") == ip));
                    assert!(requests().count() >= 20);
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
                    assert!(
                        denied.len() >= 15 && collections.len() >= 2,
                        "{} denials on {collections:?}",
                        denied.len()
                    );
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
                    let logins: Vec<&Event> =
                        mine.iter().filter(|e| e.category == "SignInLogs" && succeeded(e)).collect();
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
        assert_eq!(names.len(), 12);
        for &scenario in Scenario::all() {
            assert_eq!(Scenario::parse(scenario.name()), Ok(scenario));
            assert_eq!(scenario.to_string().parse::<Scenario>(), Ok(scenario));
        }
        assert_eq!(Scenario::parse(" Mass-Delete "), Ok(Scenario::MassDelete));
        let error = Scenario::parse("exfiltration").expect_err("unknown name");
        assert!(
            error.contains("exfiltration") && error.contains("foreign_ip_token") && error.contains("threat_intel_ip")
        );
    }

    #[test]
    fn ground_truth_round_trips_through_json() {
        let (_, truth) = generator(13).scenario(Scenario::BulkExport, at("2025-03-04T09:30:00.5Z"));
        let encoded = serde_json::to_value(&truth).expect("serializes");
        assert_eq!(encoded["start"], json!("2025-03-04T09:30:00.500Z"));
        let decoded: GroundTruth = serde_json::from_value(encoded).expect("deserializes");
        assert_eq!(decoded, truth);
    }
}
