//! The tenant: its users, service principals and managed identities with their Cosmos role
//! assignments, its Cosmos accounts, and the places, devices and clients they use. A pure
//! function of the seed.

use rand::RngExt;
use rand::seq::{IndexedRandom, SliceRandom};

use super::wire::{Prng, STREAM_TENANT, guid, stream_rng};

const DOMAIN: &str = "contoso.com";
const USER_COUNT: usize = 40;
/// Users with a Cosmos RBAC role assignment; the rest only sign in to Office, Teams, ARM.
pub(super) const DATA_USERS: usize = 16;
const DORMANT_SP: &str = "legacy-migration";

/// A city with the network its addresses come from.
#[derive(Debug, Clone)]
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
pub(super) const fn place(
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
pub(super) const HOME_PLACES: &[Place] = &[
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

/// Azure East US egress, where the tenant's workloads run.
pub(super) const AZURE_PLACE: Place = place("Boydton", "Virginia", "US", 36.6676, -78.3875, -300, 8075, [20, 121]);
/// Managed identity sign-ins carry no location at all.
pub(super) const NOWHERE: Place = place("", "", "", 0.0, 0.0, 0, 0, [0, 0]);

/// A device as the sign-in log describes it.
#[derive(Debug)]
pub struct Browser {
    pub os: &'static str,
    pub browser: &'static str,
    pub agent: &'static str,
}

pub(super) const BROWSERS: &[Browser] = &[
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

/// First-party clients users sign in with: (name, app id, clientAppUsed).
pub(super) const USER_APPS: &[(&str, &str, &str)] = &[
    ("Azure Portal", "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "Browser"),
    ("Microsoft Azure CLI", "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "Mobile Apps and Desktop clients"),
    ("Visual Studio Code", "aebc6443-996d-45c2-90f0-388ff96faa56", "Mobile Apps and Desktop clients"),
    ("Microsoft Teams", "1fec8e78-bce4-4aaf-ab1b-5451cc387264", "Mobile Apps and Desktop clients"),
    ("Microsoft Office", "d3590ed6-52b3-4102-aeff-aad2292ab01c", "Mobile Apps and Desktop clients"),
];

pub(super) const USER_COSMOS_AGENTS: &[&str] = &[
    "azsdk-python-cosmos/4.5.1 Python/3.11.6 (Windows-10-10.0.22631-SP0)",
    "azsdk-python-cosmos/4.7.0 Python/3.12.2 (macOS-14.4.1-arm64-arm-64bit)",
    "azsdk-js-cosmos/4.0.0 core-rest-pipeline/1.15.1 Node/v20.11.1 OS/(arm64-Darwin-23.4.0)",
    "cosmos-netstandard-sdk/3.38.1|1|X64|Microsoft Windows 10.0.22631|.NET 8.0.3|N|",
];
pub(super) const SERVICE_COSMOS_AGENTS: &[&str] = &[
    "cosmos-netstandard-sdk/3.38.1|1|X64|Linux 5.15.0-1057-azure 1|.NET 8.0.3|N|F 00000010|",
    "azsdk-java-cosmos/4.56.0 Linux/5.15.0-1057-azure JRE/17.0.10",
    "azsdk-python-cosmos/4.6.0 Python/3.10.12 (Linux-5.15.0-1057-azure-x86_64-with-glibc2.35)",
    "azsdk-js-cosmos/4.0.0 core-rest-pipeline/1.15.1 Node/v18.19.1 OS/(x64-Linux-5.15.0-1057-azure)",
];
/// The legitimate key-based client (an on-premises app nobody migrated to Entra ID).
const LEGACY_KEY_AGENT: &str =
    "cosmos-netstandard-sdk/3.9.1|3.9.0|01|X86|Microsoft Windows 10.0.20348|.NET Core 3.1.32|";

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
    /// How its addresses behave in the realistic profile ([`Habit::Plain`] in the tidy one).
    pub habit: Habit,
}

/// Where a principal's sign-ins and data requests come from, beyond its own addresses
/// (the realistic profile: `realistic.rs`).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Habit {
    #[default]
    Plain,
    /// Works from an office on weekdays, behind its shared NAT addresses (`Tenant::offices`).
    Office(usize),
    /// Signs in through the corporate VPN; data goes straight from home (split tunnel).
    Vpn,
    /// Signs in over IPv6 (one /64, a new interface id each time); data over IPv4.
    DualStack(String),
    /// Also a phone refreshing Outlook from a carrier's addresses all day.
    Phone,
    /// A workload running in a second region too, with these addresses there.
    TwoRegions(Vec<String>),
    /// An App Service or Functions app: requests leave from any address of its pool.
    AddressPool(Vec<String>),
    /// Reaches Cosmos DB through a private endpoint: the data plane sees this private address.
    PrivateEndpoint(String),
    /// Left the company: the account is disabled, and an old device keeps trying.
    Leaver,
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

/// An office: where it is and the NAT addresses its people share.
#[derive(Debug, Clone)]
pub struct Office {
    pub place: &'static Place,
    pub nat: Vec<String>,
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
    /// Offices and their shared NAT addresses (realistic profile only; empty otherwise).
    pub offices: Vec<Office>,
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
                habit: Habit::Plain,
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
                        habit: Habit::Plain,
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
        Tenant {
            tenant_id,
            offices: Vec::new(),
            users,
            service_principals,
            managed_identities,
            accounts,
            apps,
            key_client,
        }
    }

    /// Users, then service principals, then managed identities.
    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.users.iter().chain(&self.service_principals).chain(&self.managed_identities)
    }
}

/// A role assignment on `account` covering up to `max_collections` of its collections.
pub(super) fn grant(rng: &mut Prng, accounts: &[CosmosAccount], account: usize, max_collections: usize) -> Grant {
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

pub(super) fn public_ip(rng: &mut Prng, place: &Place) -> String {
    let [a, b] = place.prefix;
    format!("{a}.{b}.{}.{}", rng.random_range(0..=255u8), rng.random_range(1..=254u8))
}
