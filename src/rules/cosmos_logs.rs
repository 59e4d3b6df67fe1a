//! Types the Cosmos DB `QueryRuntimeStatistics` and `ControlPlaneRequests` records of
//! absorbed batches into `cosmos_queries` and `cosmos_control_requests` (migration 21), in
//! the absorb transaction, as [`super::changes`] does for the Activity log: each row points
//! at its `raw_events` row, and a record whose time cannot be read stays raw only.
//!
//! Shapes read (names compared lower-cased, so any key casing):
//! - diagnostic settings (Event Hubs, storage): common top level (`time`, `resourceId`,
//!   `operationName`, `category`, ...) and the category's fields in `properties`
//!   (`activityId`, `databasename`, `collectionname`, `partitionkeyrangeid`, `querytext`;
//!   `httpstatusCode`, `resourceDetails`, ...);
//! - Log Analytics: the resource-specific tables' columns (`CDBQueryRuntimeStatistics`:
//!   `AccountName`, `ActivityId`, `QueryText`, `TimeGenerated`, ...; `CDBControlPlaneRequests`:
//!   `HttpStatusCode`, `ApiKindResourceType`, `IpRangeFilter`, ...) and `AzureDiagnostics`'
//!   type-suffixed names (`querytext_s`, `activityId_g`, `resourceDetails_s`), all at the top level.
//!
//! The query text may itself be JSON, `{"query": "...", "parameters": [...]}`: the query and
//! its parameters are stored apart. Resource details are JSON, a JSON string, or the
//! unquoted form Microsoft's own example shows (`{id:skewed,indexingPolicy:{...}}`): the
//! settings that matter for security are read from any of them.

use std::collections::HashMap;

use super::script::timestamp;
use crate::record::ArmPath;
use anyhow::{Context, Result};
use duckdb::types::Value as Db;
use serde_json::Value;

const CANDIDATES: &str = "SELECT rowid, epoch_us(time), batch_id, lower(category), record::VARCHAR FROM raw_events WHERE batch_id > ? AND batch_id <= ? AND lower(category) IN ('queryruntimestatistics', 'controlplanerequests')";
/// The columns each row gives, in the order of `params`: rows go in through DuckDB's appender
/// (an INSERT a row costs about a millisecond; an account logs a record per query).
const QUERY_COLUMNS: &[&str] = &[
    "time",
    "account",
    "subscription_id",
    "resource_group",
    "database_name",
    "collection_name",
    "activity_id",
    "correlated_activity_id",
    "partition_key_range_id",
    "query_text",
    "parameters",
    "raw_row",
    "batch_id",
];
const CONTROL_COLUMNS: &[&str] = &[
    "time",
    "kind",
    "operation",
    "operation_type",
    "account",
    "subscription_id",
    "resource_group",
    "api_kind",
    "resource_type",
    "resource_uri",
    "resource_details",
    "activity_id",
    "http_method",
    "http_status",
    "result",
    "caller_id",
    "caller_ip",
    "role_assignment_principal_id",
    "role_definition_id",
    "public_network_access",
    "ip_rules",
    "virtual_network_filter",
    "disable_local_auth",
    "disable_key_based_metadata_write_access",
    "key_kind",
    "full_text_query",
    "raw_row",
    "batch_id",
];

/// What typing the batches (`lo`, `hi`] stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Typed {
    pub queries: u64,
    pub control: u64,
    /// Records of these categories whose time or shape could not be read: kept raw only.
    pub untyped: u64,
}

pub fn absorb(conn: &duckdb::Connection, lo: i64, hi: i64) -> Result<Typed> {
    let mut select = conn.prepare(CANDIDATES)?;
    let mut rows = select.query(duckdb::params![lo, hi])?;
    let mut queries = conn.appender_with_columns("cosmos_queries", QUERY_COLUMNS)?;
    let mut control = conn.appender_with_columns("cosmos_control_requests", CONTROL_COLUMNS)?;
    let mut typed = Typed::default();
    while let Some(row) = rows.next()? {
        let (raw_row, time, batch_id, category, record): (i64, Option<i64>, i64, String, String) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
        let parsed = serde_json::from_str::<Value>(&record).ok();
        let fields = parsed.as_ref().and_then(Fields::of);
        match (time, fields) {
            (Some(time), Some(fields)) if category == "queryruntimestatistics" => {
                let q = QueryStatistics::read(&fields);
                queries
                    .append_row(duckdb::appender_params_from_iter(q.params(time, raw_row, batch_id)))
                    .context("storing a query")?;
                typed.queries += 1;
            }
            (Some(time), Some(fields)) => {
                let c = ControlRequest::read(&fields);
                control
                    .append_row(duckdb::appender_params_from_iter(c.params(time, raw_row, batch_id)))
                    .context("storing a control-plane request")?;
                typed.control += 1;
            }
            _ => {
                tracing::warn!(
                    raw_row,
                    batch_id,
                    "a Cosmos DB {category} record has no readable time or shape; kept in raw_events only"
                );
                typed.untyped += 1;
            }
        }
    }
    queries.flush().context("storing queries")?;
    control.flush().context("storing control-plane requests")?;
    Ok(typed)
}

/// A record's fields by normalised name: lower case, without Log Analytics' type suffix
/// (`_s`, `_g`, `_b`, `_d`), from the top level and from `properties` (which wins).
pub struct Fields<'a>(HashMap<String, &'a Value>);

impl<'a> Fields<'a> {
    pub fn of(record: &'a Value) -> Option<Fields<'a>> {
        let top = record.as_object()?;
        let mut map = HashMap::new();
        for (key, value) in top {
            map.insert(normalise(key), value);
        }
        if let Some(Value::Object(properties)) = map.get("properties").copied() {
            for (key, value) in properties {
                map.insert(normalise(key), value);
            }
        }
        Some(Fields(map))
    }

    fn value(&self, names: &[&str]) -> Option<&'a Value> {
        names.iter().find_map(|n| self.0.get(*n).copied().filter(|v| !v.is_null()))
    }

    /// A field as text: strings as they are (empty and `&lt;null&gt;` are absent), numbers and
    /// booleans written out, objects and arrays as JSON.
    pub fn text(&self, names: &[&str]) -> Option<String> {
        self.value(names).and_then(text_of)
    }

    fn boolean(&self, names: &[&str]) -> Option<bool> {
        self.value(names).and_then(boolean_of)
    }
}

fn normalise(key: &str) -> String {
    let lower = key.to_ascii_lowercase();
    for suffix in ["_s", "_g", "_b", "_d"] {
        if let Some(stripped) = lower.strip_suffix(suffix)
            && !stripped.is_empty()
        {
            return stripped.to_owned();
        }
    }
    lower
}

fn text_of(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) => s.trim().to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    };
    (!text.is_empty() && text != "&lt;null&gt;" && text != "<null>").then_some(text)
}

fn boolean_of(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn lower(value: Option<String>) -> Option<String> {
    value.map(|v| v.to_ascii_lowercase())
}

/// The account, subscription and resource group from `resourceId` (or `_ResourceId`), the
/// account also from `AccountName` or `Resource`; lower case.
fn location(f: &Fields) -> (Option<String>, Option<String>, Option<String>) {
    let resource_id = f.text(&["resourceid", "_resourceid"]).unwrap_or_default();
    let path = ArmPath::parse(&resource_id);
    let account = path.account.map(str::to_owned).or_else(|| f.text(&["accountname", "resource"]));
    (lower(account), lower(path.subscription.map(str::to_owned)), lower(path.resource_group.map(str::to_owned)))
}

fn db_text(value: &Option<String>) -> Db {
    value.clone().map_or(Db::Null, Db::Text)
}

fn db_bool(value: Option<bool>) -> Db {
    value.map_or(Db::Null, Db::Boolean)
}

/// One `QueryRuntimeStatistics` record.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct QueryStatistics {
    pub account: Option<String>,
    pub subscription_id: Option<String>,
    pub resource_group: Option<String>,
    pub database_name: Option<String>,
    pub collection_name: Option<String>,
    pub activity_id: Option<String>,
    pub correlated_activity_id: Option<String>,
    pub partition_key_range_id: Option<String>,
    /// The query as logged: obfuscated unless the account enabled full-text query logging.
    pub query_text: Option<String>,
    /// The parameters the query text carried (`{"query":..., "parameters":[...]}`), as JSON.
    pub parameters: Option<String>,
}

impl QueryStatistics {
    pub fn read(f: &Fields) -> QueryStatistics {
        let (account, subscription_id, resource_group) = location(f);
        let (query_text, parameters) = match f.value(&["querytext"]) {
            Some(value) => split_query(value),
            None => (None, None),
        };
        QueryStatistics {
            account,
            subscription_id,
            resource_group,
            database_name: f.text(&["databasename"]),
            collection_name: f.text(&["collectionname"]),
            activity_id: lower(f.text(&["activityid"])),
            correlated_activity_id: lower(f.text(&["correlatedactivityid"])),
            partition_key_range_id: f.text(&["partitionkeyrangeid"]),
            query_text,
            parameters,
        }
    }

    fn params(&self, time: i64, raw_row: i64, batch_id: i64) -> Vec<Db> {
        vec![
            timestamp(time),
            db_text(&self.account),
            db_text(&self.subscription_id),
            db_text(&self.resource_group),
            db_text(&self.database_name),
            db_text(&self.collection_name),
            db_text(&self.activity_id),
            db_text(&self.correlated_activity_id),
            db_text(&self.partition_key_range_id),
            db_text(&self.query_text),
            db_text(&self.parameters),
            Db::BigInt(raw_row),
            Db::BigInt(batch_id),
        ]
    }
}

/// The query and its parameters from a `querytext` value: an object or a JSON string
/// holding `{"query": ..., "parameters": [...]}`, else the text itself.
fn split_query(value: &Value) -> (Option<String>, Option<String>) {
    let parsed;
    let object = match value {
        Value::Object(_) => Some(value),
        Value::String(s) if s.trim_start().starts_with('{') => {
            parsed = serde_json::from_str::<Value>(s.trim()).ok();
            parsed.as_ref().filter(|v| v.is_object())
        }
        _ => None,
    };
    let Some(Value::Object(object)) = object else {
        return (text_of(value), None);
    };
    let field = |name: &str| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
    match field("query") {
        Some(query) => {
            let parameters = field("parameters").filter(|p| !p.is_null()).map(Value::to_string);
            (text_of(query), parameters)
        }
        None => (text_of(value), None),
    }
}

/// One `ControlPlaneRequests` record.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ControlRequest {
    /// key_rotation, account_create, account_update, account_delete, network_update,
    /// region_failover, role_assignment, role_definition, diagnostic_settings,
    /// resource_create, resource_update, resource_delete, other
    pub kind: &'static str,
    pub operation: String,
    pub operation_type: Option<String>,
    pub account: Option<String>,
    pub subscription_id: Option<String>,
    pub resource_group: Option<String>,
    pub api_kind: Option<String>,
    /// ApiKindResourceType: Database, Container, ...
    pub resource_type: Option<String>,
    pub resource_uri: Option<String>,
    /// ResourceDetails as sent (the request body).
    pub resource_details: Option<String>,
    pub activity_id: Option<String>,
    pub http_method: Option<String>,
    pub http_status: Option<i32>,
    pub result: Option<String>,
    pub caller_id: Option<String>,
    pub caller_ip: Option<String>,
    pub role_assignment_principal_id: Option<String>,
    pub role_definition_id: Option<String>,
    pub public_network_access: Option<String>,
    /// The firewall's allowed addresses and ranges, comma-separated as Azure writes them.
    pub ip_rules: Option<String>,
    pub virtual_network_filter: Option<bool>,
    pub disable_local_auth: Option<bool>,
    pub disable_key_based_metadata_write_access: Option<bool>,
    /// Key rotations: primary, secondary, primaryReadonly, secondaryReadonly.
    pub key_kind: Option<String>,
    /// SqlQueryTextTraceType / diagnosticLogSettings.enableFullTextQuery.
    pub full_text_query: Option<bool>,
}

impl ControlRequest {
    pub fn read(f: &Fields) -> ControlRequest {
        let (account, subscription_id, resource_group) = location(f);
        let operation = f.text(&["operationname"]).unwrap_or_default();
        let details_value = f.value(&["resourcedetails"]);
        let details = details_value.map(Details::of).unwrap_or_default();
        // A setting is read from the record's own fields first, then from the request body.
        let setting = |names: &[&str]| f.text(names).or_else(|| details.text(names));
        let flag = |names: &[&str]| f.boolean(names).or_else(|| details.boolean(names));
        let ip_rules = f.text(&["iprangefilter"]).or_else(|| details.ip_rules());
        let key_kind = setting(&["keykind"]);
        let http_status = f
            .text(&["httpstatuscode", "statuscode"])
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).find(|p| !p.is_empty()).map(str::to_owned))
            .and_then(|s| s.parse().ok());
        let caller_id =
            f.value(&["identity"]).and_then(caller_of).or_else(|| lower(f.text(&["callerid", "callerobjectid"])));
        ControlRequest {
            kind: kind_of(&operation, key_kind.is_some()),
            operation_type: f.text(&["operationtype"]),
            account,
            subscription_id,
            resource_group,
            api_kind: f.text(&["apikind"]),
            resource_type: f.text(&["apikindresourcetype"]),
            resource_uri: f.text(&["resourceuri"]),
            resource_details: details_value.and_then(text_of),
            activity_id: lower(f.text(&["activityid"])),
            http_method: f.text(&["httpmethod"]),
            http_status,
            result: f.text(&["result", "resulttype"]),
            caller_id,
            caller_ip: f.text(&["calleripaddress", "clientipaddress"]),
            role_assignment_principal_id: lower(setting(&["roleassignmentprincipalid"])),
            role_definition_id: lower(setting(&["roledefinitionid", "associatedroledefinitionid"])),
            public_network_access: setting(&["publicnetworkaccess"]),
            ip_rules,
            virtual_network_filter: flag(&["enablevirtualnetworkfilter", "isvirtualnetworkfilterenabled"]),
            disable_local_auth: flag(&["disablelocalauth"]),
            disable_key_based_metadata_write_access: flag(&["disablekeybasedmetadatawriteaccess"]),
            key_kind,
            full_text_query: flag(&["sqlquerytexttracetype"])
                .or_else(|| details.text(&["enablefulltextquery"]).map(|v| v.eq_ignore_ascii_case("true"))),
            operation,
        }
    }

    fn params(&self, time: i64, raw_row: i64, batch_id: i64) -> Vec<Db> {
        vec![
            timestamp(time),
            Db::Text(self.kind.to_owned()),
            Db::Text(self.operation.clone()),
            db_text(&self.operation_type),
            db_text(&self.account),
            db_text(&self.subscription_id),
            db_text(&self.resource_group),
            db_text(&self.api_kind),
            db_text(&self.resource_type),
            db_text(&self.resource_uri),
            db_text(&self.resource_details),
            db_text(&self.activity_id),
            db_text(&self.http_method),
            self.http_status.map_or(Db::Null, Db::Int),
            db_text(&self.result),
            db_text(&self.caller_id),
            db_text(&self.caller_ip),
            db_text(&self.role_assignment_principal_id),
            db_text(&self.role_definition_id),
            db_text(&self.public_network_access),
            db_text(&self.ip_rules),
            db_bool(self.virtual_network_filter),
            db_bool(self.disable_local_auth),
            db_bool(self.disable_key_based_metadata_write_access),
            db_text(&self.key_kind),
            db_bool(self.full_text_query),
            Db::BigInt(raw_row),
            Db::BigInt(batch_id),
        ]
    }
}

/// The caller's object id from a common-schema `identity` (claims `oid` or the
/// objectidentifier claim), lower case.
fn caller_of(identity: &Value) -> Option<String> {
    let claims = identity.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case("claims"))?.1.as_object()?;
    claims
        .iter()
        .find(|(k, _)| {
            k.eq_ignore_ascii_case("oid")
                || k.eq_ignore_ascii_case("http://schemas.microsoft.com/identity/claims/objectidentifier")
        })
        .and_then(|(_, v)| text_of(v))
        .map(|v| v.to_ascii_lowercase())
}

fn kind_of(operation: &str, has_key_kind: bool) -> &'static str {
    let op = operation.to_ascii_lowercase();
    let has = |s: &str| op.contains(s);
    if has_key_kind || has("regeneratekey") || has("keysupdate") || has("keyrotat") || has("accountkeys") {
        "key_rotation"
    } else if has("roleassignment") {
        "role_assignment"
    } else if has("roledefinition") {
        "role_definition"
    } else if has("diagnosticlog") || has("diagnosticsetting") {
        "diagnostic_settings"
    } else if has("virtualnetwork") || has("firewall") || has("iprule") || has("privateendpoint") || has("network") {
        "network_update"
    } else if has("failover") {
        "region_failover"
    } else if has("accountcreate") {
        "account_create"
    } else if has("accountdelete") {
        "account_delete"
    } else if has("accountupdate") || has("region") {
        "account_update"
    } else if has("delete") {
        "resource_delete"
    } else if has("create") {
        "resource_create"
    } else if has("update") {
        "resource_update"
    } else {
        "other"
    }
}

/// A request body (`resourceDetails`): JSON, JSON in a string, or Microsoft's unquoted
/// rendering, flattened to the first value of each key (lower case) at any depth.
#[derive(Default)]
struct Details {
    json: Option<Value>,
    loose: String,
}

impl Details {
    fn of(value: &Value) -> Details {
        match value {
            Value::Object(_) | Value::Array(_) => Details { json: Some(value.clone()), loose: String::new() },
            Value::String(s) => match serde_json::from_str::<Value>(s.trim()) {
                Ok(v @ (Value::Object(_) | Value::Array(_))) => Details { json: Some(v), loose: String::new() },
                _ => Details { json: None, loose: s.clone() },
            },
            _ => Details::default(),
        }
    }

    fn find(&self, names: &[&str]) -> Option<&Value> {
        fn walk<'v>(v: &'v Value, names: &[&str]) -> Option<&'v Value> {
            match v {
                Value::Object(map) => map
                    .iter()
                    .find(|(k, v)| !v.is_null() && names.iter().any(|n| k.eq_ignore_ascii_case(n)))
                    .map(|(_, v)| v)
                    .or_else(|| map.values().find_map(|v| walk(v, names))),
                Value::Array(items) => items.iter().find_map(|v| walk(v, names)),
                _ => None,
            }
        }
        walk(self.json.as_ref()?, names)
    }

    /// `key:value` in the unquoted rendering, the value up to `,` or `}`.
    fn loose(&self, names: &[&str]) -> Option<String> {
        let lower = self.loose.to_ascii_lowercase();
        names.iter().find_map(|name| {
            let mut from = 0;
            while let Some(at) = lower[from..].find(name) {
                let start = from + at;
                let before = lower[..start].chars().next_back();
                let rest = &self.loose[start + name.len()..];
                let rest = rest.trim_start_matches(['"', ' ']);
                if before.is_none_or(|c| !c.is_ascii_alphanumeric()) && rest.starts_with(':') {
                    let value = rest[1..].trim_start();
                    let end = value.find([',', '}']).unwrap_or(value.len());
                    let value = value[..end].trim().trim_matches('"');
                    return (!value.is_empty()).then(|| value.to_owned());
                }
                from = start + name.len();
            }
            None
        })
    }

    fn text(&self, names: &[&str]) -> Option<String> {
        self.find(names).and_then(text_of).or_else(|| self.loose(names))
    }

    fn boolean(&self, names: &[&str]) -> Option<bool> {
        match self.find(names) {
            Some(v) => boolean_of(v),
            None => self.loose(names).and_then(|v| boolean_of(&Value::String(v))),
        }
    }

    /// `ipRules: [{"ipAddressOrRange": "..."}, ...]` or `ipRangeFilter: "a,b"`.
    fn ip_rules(&self) -> Option<String> {
        if let Some(Value::Array(rules)) = self.find(&["iprules"]) {
            let ranges: Vec<String> = rules
                .iter()
                .filter_map(|r| match r {
                    Value::Object(_) => {
                        Details { json: Some(r.clone()), loose: String::new() }.text(&["ipaddressorrange"])
                    }
                    other => text_of(other),
                })
                .collect();
            return Some(ranges.join(","));
        }
        self.text(&["iprangefilter"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_text_in_json_is_split_from_its_parameters() {
        let record = json!({"category": "QueryRuntimeStatistics", "properties": {
            "querytext": "{\"query\":\"SELECT * FROM c WHERE c.id = @id\",\"parameters\":[{\"name\":\"@id\",\"value\":\"1\"}]}"}});
        let f = Fields::of(&record).unwrap();
        let q = QueryStatistics::read(&f);
        assert_eq!(q.query_text.as_deref(), Some("SELECT * FROM c WHERE c.id = @id"));
        assert_eq!(q.parameters.as_deref(), Some(r#"[{"name":"@id","value":"1"}]"#));
    }

    #[test]
    fn loose_resource_details_are_read() {
        let d = Details::of(&json!("{id:acct,properties:{publicNetworkAccess:Enabled,disableLocalAuth:false}}"));
        assert_eq!(d.text(&["publicnetworkaccess"]).as_deref(), Some("Enabled"));
        assert_eq!(d.boolean(&["disablelocalauth"]), Some(false));
        assert_eq!(normalise("activityId_g"), "activityid");
    }
}
