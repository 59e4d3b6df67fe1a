//! Cosmos DB `DataPlaneRequests` records: who calls how (`Caller`), the request before it is
//! rendered (`Request`), its costs, the record as the wire has it, and the ingest
//! benchmark's NDJSON.

use std::io::{self, Write};

use chrono::{DateTime, Duration, Utc};
use rand::RngExt;
use rand::seq::IndexedRandom;
use serde::Serialize;

use super::wire::{Guid, Prng, STREAM_NDJSON, WireTime, as_text, pick_weighted, six_decimals, stream_rng};
use super::{Collection, CosmosAccount, Database, Event, Grant, Principal, Tenant, Workload};

pub(super) const DATA_PLANE: &str = "DataPlaneRequests";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
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

    pub(super) fn success_code(self) -> u16 {
        match self {
            Op::Create => 201,
            Op::Delete => 204,
            _ => 200,
        }
    }
}

pub(super) const READS: &[(Op, u32)] = &[(Op::Query, 45), (Op::Read, 35), (Op::ReadFeed, 20)];
pub(super) const EXPORT: &[(Op, u32)] = &[(Op::ReadFeed, 60), (Op::Query, 40)];
pub(super) const DELETES: &[(Op, u32)] = &[(Op::Delete, 1)];
pub(super) const PROBES: &[(Op, u32)] = &[(Op::Read, 40), (Op::Query, 40), (Op::Create, 20)];

impl Workload {
    pub(super) fn operations(self) -> &'static [(Op, u32)] {
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

/// Who is calling Cosmos and how.
#[derive(Clone, Copy)]
pub(super) struct Caller<'a> {
    pub(super) principal_id: &'a str,
    pub(super) role_assignment_id: &'a str,
    /// "AADToken" or the key used.
    pub(super) token_type: &'static str,
    pub(super) ip: &'a str,
    pub(super) user_agent: &'a str,
    pub(super) connection_mode: &'static str,
}

/// One Cosmos request before it is rendered; scenarios adjust fields before rendering.
pub(super) struct Request<'a> {
    pub(super) time: DateTime<Utc>,
    pub(super) account: &'a CosmosAccount,
    pub(super) op: Op,
    pub(super) resource_type: &'static str,
    pub(super) resource_path: String,
    pub(super) database: &'a str,
    pub(super) collection: &'a str,
    pub(super) partition: &'a str,
    pub(super) status: u16,
    pub(super) caller: Caller<'a>,
    pub(super) bulk: bool,
}

/// A document request by `p` under `grant`, from `ip`, with an operation drawn from `ops`.
pub(super) fn principal_request<'a>(
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

pub(super) fn aad_caller<'a>(p: &'a Principal, grant: &'a Grant, ip: &'a str) -> Caller<'a> {
    Caller {
        principal_id: &p.object_id,
        role_assignment_id: &grant.role_assignment_id,
        token_type: "AADToken",
        ip,
        user_agent: p.cosmos_agent,
        connection_mode: p.connection_mode,
    }
}

pub(super) fn key_caller<'a>(token_type: &'static str, ip: &'a str, user_agent: &'a str) -> Caller<'a> {
    Caller { principal_id: "", role_assignment_id: "", token_type, ip, user_agent, connection_mode: "Gateway" }
}

pub(super) fn key_request<'a>(
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

pub(super) fn document_request<'a>(
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
pub(super) fn metadata_request<'a>(
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
pub(super) fn push_request(rng: &mut Prng, r: &Request, out: &mut Vec<Event>) -> u64 {
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

pub(super) const QUERY_STATISTICS: &str = "QueryRuntimeStatistics";

/// Benign queries as applications send them: parameterised, some with a literal kept in the
/// text by the developer (an apostrophe escaped or inside double quotes, words like `or`,
/// `select` and `--` inside literals), a query builder's `1=1`, a comment, `NOT IS_DEFINED` for
/// documents written before a property existed, the .NET LINQ provider's `root["..."]`.
/// (query, parameters as name and example value)
const BENIGN_QUERIES: &[(&str, &[(&str, &str)])] = &[
    ("SELECT * FROM c WHERE c.customerId = @customerId", &[("@customerId", "c-18427")]),
    (
        "SELECT c.id, c.status, c.total FROM c WHERE c.customerId = @customerId AND c.createdAt >= @since ORDER BY c.createdAt DESC",
        &[("@customerId", "c-20931"), ("@since", "2025-01-01T00:00:00Z")],
    ),
    ("SELECT VALUE COUNT(1) FROM c WHERE c.type = @type", &[("@type", "invoice")]),
    (
        "SELECT TOP 50 * FROM c WHERE c.tenantId = @tenantId AND ARRAY_CONTAINS(c.tags, @tag)",
        &[("@tenantId", "t-07"), ("@tag", "priority")],
    ),
    ("SELECT * FROM c WHERE c.type = 'order' AND c.status IN (@s0, @s1)", &[("@s0", "open"), ("@s1", "held")]),
    ("SELECT * FROM c WHERE 1=1 AND c.region = @region", &[("@region", "emea")]),
    ("SELECT * FROM c WHERE c.id = @id OR c.legacyId = @id", &[("@id", "8815")]),
    ("SELECT * FROM c WHERE (c.deleted = false OR NOT IS_DEFINED(c.deleted)) AND c.pk = @pk", &[("@pk", "store-112")]),
    ("SELECT * FROM c WHERE c.sku = @sku -- catalogue lookup", &[("@sku", "SKU-4471")]),
    ("SELECT * FROM c WHERE c.name = 'O\\'Brien Ltd' AND c.active = true", &[]),
    ("SELECT * FROM c WHERE c.name = \"O'Brien & Sons\" OR c.alias = @alias", &[("@alias", "obs")]),
    (
        "SELECT c.id, c.title FROM c WHERE CONTAINS(LOWER(c.title), 'select or union') AND c.type = @type",
        &[("@type", "article")],
    ),
    ("SELECT * FROM c WHERE c.note = 'don\\'t ship; hold -- call first' AND c.pk = @pk", &[("@pk", "store-9")]),
    ("SELECT VALUE root FROM root WHERE ((root[\"status\"] = \"open\") OR (root[\"status\"] = \"held\"))", &[]),
    ("SELECT * FROM c WHERE c.total > 100 OR c.vip = true", &[]),
];

/// The QueryRuntimeStatistics record of a query request (`request`, a DataPlaneRequests
/// record), in diagnostic-settings shape: `querytext` is a JSON string of the query and its
/// parameters; with `full_text` off, as Cosmos DB logs by default, values are masked.
pub(super) fn query_statistics(request: &Event, query: &str, parameters: &[(&str, &str)], full_text: bool) -> Event {
    let p = &request.record["properties"];
    let parameters: Vec<serde_json::Value> = parameters
        .iter()
        .map(|(name, value)| serde_json::json!({ "name": name, "value": if full_text { *value } else { "__" } }))
        .collect();
    let text = if full_text { query.to_string() } else { obfuscate(query) };
    let querytext = serde_json::json!({ "query": text, "parameters": parameters }).to_string();
    let record = serde_json::json!({
        "time": request.record["time"],
        "resourceId": request.record["resourceId"],
        "category": QUERY_STATISTICS,
        "operationName": "Query",
        "properties": {
            "activityId": p["activityId"],
            "databasename": p["databaseName"],
            "collectionname": p["collectionName"],
            "partitionkeyrangeid": "0",
            "querytext": querytext,
        },
    });
    Event { time: request.time, category: QUERY_STATISTICS, record }
}

/// Literal values masked, the query's shape kept (a rendering of Cosmos DB's default
/// obfuscation, whose exact form Microsoft does not publish): strings become `'__'`.
fn obfuscate(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut chars = query.chars();
    while let Some(c) = chars.next() {
        if c == '\'' || c == '"' {
            let mut escaped = false;
            for d in chars.by_ref() {
                match d {
                    '\\' if !escaped => escaped = true,
                    _ if d == c && !escaped => break,
                    _ => escaped = false,
                }
            }
            out.push_str("'__'");
        } else {
            out.push(c);
        }
    }
    out
}

/// The benign QueryRuntimeStatistics records of the query requests among `events`: full text
/// on `full_text_account` (which enabled it), masked elsewhere.
pub(super) fn benign_query_statistics(rng: &mut Prng, events: &[Event], full_text_account: &str) -> Vec<Event> {
    let mut out = Vec::new();
    for e in events {
        if e.category != DATA_PLANE || e.record["operationName"] != "Query" {
            continue;
        }
        let Some(&(query, parameters)) = BENIGN_QUERIES.choose(rng) else { continue };
        let full_text = e.record["resourceId"].as_str() == Some(full_text_account);
        out.push(query_statistics(e, query, parameters, full_text));
    }
    out
}
