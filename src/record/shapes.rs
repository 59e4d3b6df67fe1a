//! Shapes sign-ins and Cosmos DB requests arrive in besides diagnostic settings.
//!
//! - **Microsoft Graph** `signIn` objects (`/auditLogs/signIns`, v1.0 and beta), alone
//!   or as a list page `{"@odata.context": ..., "value": [...], "@odata.nextLink": ...}`.
//!   A signIn object *is* the `properties` of a diagnostic sign-in record (the same
//!   names: `location`, `status`, `deviceDetail`, ...), so it is read as one, under the
//!   category its kind has: beta's `signInEventTypes`, else `isInteractive`, else who
//!   signed in.
//! - **Log Analytics** rows (`az monitor log-analytics query` prints an array of them;
//!   the portal exports JSON or CSV): PascalCase columns, `TimeGenerated`, `Type` naming
//!   the table, nested values as JSON text. Rows of `SigninLogs`,
//!   `AADNonInteractiveUserSignInLogs`, `AADServicePrincipalSignInLogs`,
//!   `AADManagedIdentitySignInLogs`, `CDBDataPlaneRequests` and `AzureDiagnostics`
//!   (category `DataPlaneRequests`, columns suffixed `_s`, `_d`, `_g`) are rewritten in
//!   diagnostic-settings shape and read by the usual reader, so they become the same
//!   rows. `TenantId` there is the workspace's id, not the directory's: `AADTenantId`
//!   is used when a table has it.
//!
//! None of this runs for a record in diagnostic-settings shape: [`super::parse_unit`]
//! comes here only for a record without a category, one with `TimeGenerated` and no
//! `time`, or one its typed reader refused.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// What a record that is not in diagnostic-settings shape turned out to be.
pub(crate) enum Reshaped<'a> {
    /// A Graph list page: its `value` items, each a record.
    Page(Vec<&'a RawValue>),
    /// The record rewritten in diagnostic-settings shape, to be read by the usual
    /// reader (its raw bytes stay the original's).
    Record(String),
}

/// Reads `text` as one of the shapes above, or says `None`. `top`: the unit itself
/// (a page is only flattened there).
pub(crate) fn reshape(text: &str, top: bool) -> Option<Reshaped<'_>> {
    let object: Map<String, Value> = serde_json::from_str(text).ok()?;
    let has = |name: &str| object.keys().any(|k| k.eq_ignore_ascii_case(name));
    if has("category") && !has("timegenerated") {
        return None;
    }
    if top && let Some(page) = graph_page(text, &object) {
        return Some(Reshaped::Page(page));
    }
    if has("timegenerated") {
        return log_analytics_row(object).map(Reshaped::Record);
    }
    graph_sign_in(text, &object).map(Reshaped::Record)
}

fn get<'v>(object: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

fn get_str<'v>(object: &'v Map<String, Value>, name: &str) -> Option<&'v str> {
    get(object, name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// `{"value": [...]}` with `@odata.*` keys (or nothing else): a Graph list response.
fn graph_page<'a>(text: &'a str, object: &Map<String, Value>) -> Option<Vec<&'a RawValue>> {
    let odata = object.keys().any(|k| k.starts_with("@odata."));
    if !get(object, "value").is_some_and(Value::is_array) || !(odata || object.len() == 1) {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Page<'a> {
        #[serde(borrow, alias = "Value")]
        value: Vec<&'a RawValue>,
    }
    serde_json::from_str::<Page>(text).ok().map(|page| page.value)
}

/// A Graph `signIn` object: `id`, `createdDateTime` and who signed in, no category.
fn graph_sign_in(text: &str, object: &Map<String, Value>) -> Option<String> {
    let signed_in = ["userId", "userPrincipalName", "servicePrincipalId", "appId"];
    if get_str(object, "id").is_none()
        || get_str(object, "createdDateTime").is_none()
        || !signed_in.iter().any(|k| get_str(object, k).is_some())
    {
        return None;
    }
    let category = graph_category(object);
    // The object is the record's `properties` as it stands: no value is rewritten.
    Some(format!(r#"{{"category":"{category}","operationName":"Sign-in activity","properties":{text}}}"#))
}

/// The diagnostic category of a Graph signIn: which of the four logs it belongs to.
fn graph_category(object: &Map<String, Value>) -> &'static str {
    let types: Vec<String> = match get(object, "signInEventTypes") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_ascii_lowercase).collect(),
        _ => Vec::new(),
    };
    let typed = |t: &str| types.iter().any(|x| x == t);
    if typed("managedidentity") {
        return "ManagedIdentitySignInLogs";
    }
    if typed("serviceprincipal") {
        return "ServicePrincipalSignInLogs";
    }
    if typed("noninteractiveuser") {
        return "NonInteractiveUserSignInLogs";
    }
    if typed("interactiveuser") {
        return "SignInLogs";
    }
    let user = get_str(object, "userId").is_some() || get_str(object, "userPrincipalName").is_some();
    let msi = get(object, "managedServiceIdentity")
        .and_then(|m| m.as_object())
        .and_then(|m| get_str(m, "msiType"))
        .is_some_and(|t| !t.eq_ignore_ascii_case("none"));
    match get(object, "isInteractive").and_then(Value::as_bool) {
        Some(true) => "SignInLogs",
        _ if msi && !user => "ManagedIdentitySignInLogs",
        _ if !user && get_str(object, "servicePrincipalId").is_some() => "ServicePrincipalSignInLogs",
        Some(false) => "NonInteractiveUserSignInLogs",
        // v1.0 lists interactive user sign-ins.
        None => "SignInLogs",
    }
}

/// Which table a Log Analytics row is of, as far as TokenTrail reads it.
#[derive(Clone, Copy, PartialEq)]
enum Table {
    /// A sign-in table, with the diagnostic category of its rows.
    SignIn(&'static str),
    /// `CDBDataPlaneRequests`, or `AzureDiagnostics` (`suffixed`: columns end `_s`, `_g` ...).
    Cosmos { suffixed: bool },
}

/// The names of the tables read, for messages.
pub const TABLES: &str = "SigninLogs, AADNonInteractiveUserSignInLogs, AADServicePrincipalSignInLogs, \
                          AADManagedIdentitySignInLogs, CDBDataPlaneRequests, AzureDiagnostics (DataPlaneRequests)";

fn table_of(object: &Map<String, Value>) -> Option<Table> {
    let category = get_str(object, "category");
    let by_category = || match category.map(super::Category::of) {
        Some(super::Category::SignIn(kind)) => Some(Table::SignIn(sign_in_category(kind))),
        Some(super::Category::DataPlaneRequests) => Some(Table::Cosmos { suffixed: true }),
        _ => None,
    };
    let table = get_str(object, "Type").or_else(|| get_str(object, "$table"));
    match table.map(str::to_ascii_lowercase).as_deref() {
        Some("signinlogs") => Some(Table::SignIn("SignInLogs")),
        Some("aadnoninteractiveusersigninlogs") => Some(Table::SignIn("NonInteractiveUserSignInLogs")),
        Some("aadserviceprincipalsigninlogs") => Some(Table::SignIn("ServicePrincipalSignInLogs")),
        Some("aadmanagedidentitysigninlogs") => Some(Table::SignIn("ManagedIdentitySignInLogs")),
        Some("cdbdataplanerequests") => Some(Table::Cosmos { suffixed: false }),
        Some("azurediagnostics") => by_category().filter(|t| matches!(t, Table::Cosmos { .. })),
        Some(_) => None,
        None if category.is_none() && get(object, "AccountName").is_some() => Some(Table::Cosmos { suffixed: false }),
        None => by_category(),
    }
}

fn sign_in_category(kind: super::SignInKind) -> &'static str {
    match kind {
        super::SignInKind::UserInteractive => "SignInLogs",
        super::SignInKind::UserNonInteractive => "NonInteractiveUserSignInLogs",
        super::SignInKind::ServicePrincipal => "ServicePrincipalSignInLogs",
        super::SignInKind::ManagedIdentity => "ManagedIdentitySignInLogs",
    }
}

/// Nested values Log Analytics keeps as JSON text (`dynamic`, or `string` in some tables).
fn nested(value: Value) -> Value {
    match &value {
        Value::String(s) if matches!(s.trim_start().as_bytes().first(), Some(b'{' | b'[')) => {
            serde_json::from_str(s).unwrap_or(value)
        }
        _ => value,
    }
}

/// A Log Analytics row of a table TokenTrail reads, in diagnostic-settings shape;
/// `None` for any other row (and for one that carries `properties`: that is a
/// diagnostic record with a `TimeGenerated`, read as it is).
fn log_analytics_row(object: Map<String, Value>) -> Option<String> {
    if get(&object, "properties").is_some_and(Value::is_object) {
        return None;
    }
    let table = table_of(&object)?;
    let cosmos = matches!(table, Table::Cosmos { .. });
    let mut top = Map::new();
    let mut properties = Map::new();
    let (mut resource_id, mut account, mut resource_identity) = (None, None, None);
    let category = match table {
        Table::SignIn(category) => category,
        Table::Cosmos { .. } => "DataPlaneRequests",
    };
    top.insert("category".into(), Value::String(category.into()));
    for (key, value) in object {
        let mut name = key.to_ascii_lowercase();
        if let Table::Cosmos { suffixed: true } = table
            && let Some(stem) = ["_s", "_d", "_g", "_b"].iter().find_map(|s| name.strip_suffix(s))
        {
            name = stem.to_owned();
        }
        let to_top = |top: &mut Map<String, Value>, k: &str, v: Value| {
            top.insert(k.into(), v);
        };
        match name.as_str() {
            "timegenerated" => to_top(&mut top, "time", value),
            "operationname" => to_top(&mut top, "operationName", value),
            "resulttype" => to_top(&mut top, "resultType", value),
            "resultdescription" => to_top(&mut top, "resultDescription", value),
            "durationms" => to_top(&mut top, "durationMs", value),
            "calleripaddress" => to_top(&mut top, "callerIpAddress", value),
            "level" => to_top(&mut top, "level", value),
            "correlationid" => to_top(&mut top, "correlationId", value),
            "aadtenantid" => to_top(&mut top, "tenantId", value),
            // The workspace's id, and what names the table: not the record's.
            "tenantid" | "type" | "category" | "tablename" | "sourcesystem" | "$table" => {}
            "location" if !cosmos => to_top(&mut top, "location", value),
            // Objects in a sign-in's properties; text that is no JSON object is left out
            // (the row keeps its other columns).
            "locationdetails" | "status" | "devicedetail" if !cosmos => {
                let value = nested(value);
                if value.is_object() {
                    let name = if name == "locationdetails" { "location".to_owned() } else { name };
                    properties.insert(name, value);
                }
            }
            "riskeventtypes_v2" if !cosmos => {
                properties.insert(name, nested(value));
            }
            // Names that mean something else in `properties` (AzureDiagnostics' ResourceType
            // is "DATABASEACCOUNTS", not the request's resource type).
            "location" | "locationdetails" | "status" | "devicedetail" | "resourcetype" | "resourceprovider"
            | "resourcegroup" => {}
            "resourceid" | "_resourceid" if cosmos => {
                if value.as_str().is_some_and(|s| !s.trim().is_empty())
                    && (resource_id.is_none() || name == "resourceid")
                {
                    resource_id = Some(value);
                }
            }
            "_resourceid" | "_subscriptionid" | "_itemid" | "_billedsize" | "_isbillable" => {}
            "accountname" | "resource" if cosmos => account = Some(value),
            // The service principal and managed identity tables name the resource so.
            "resourceidentity" if !cosmos => resource_identity = Some(value),
            "regionname" => {
                properties.insert("region".into(), value);
            }
            _ => {
                properties.insert(name, value);
            }
        }
    }
    if let Some(identity) = resource_identity
        && properties.get("resourceid").and_then(Value::as_str).is_none_or(|s| s.trim().is_empty())
    {
        properties.insert("resourceid".into(), identity);
    }
    // An account's ARM path, or its bare name (read as the account).
    if let Some(resource) = resource_id.or(account) {
        top.insert("resourceId".into(), resource);
    }
    top.insert("properties".into(), Value::Object(properties));
    Some(Value::Object(top).to_string())
}

/// The header of a CSV export, carried with each of its rows (`Origin::csv`).
#[derive(Debug, PartialEq)]
pub struct CsvHeader {
    /// Column names, without the portal's unit suffix (`TimeGenerated [UTC]`).
    pub columns: Vec<String>,
    /// Why rows under this header are not read (it is no table TokenTrail reads).
    pub refused: Option<String>,
}

/// Reads a CSV header line (a UTF-8 BOM and a trailing `\r` allowed).
pub fn csv_header(line: &[u8]) -> CsvHeader {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    let fields = csv_fields(line).unwrap_or_default();
    let columns: Vec<String> = fields
        .iter()
        .map(|c| {
            let c = c.trim();
            match c.rfind(" [") {
                Some(i) if c.ends_with(']') => c[..i].trim().to_owned(),
                _ => c.to_owned(),
            }
        })
        .collect();
    let has = |name: &str| columns.iter().any(|c| c.eq_ignore_ascii_case(name));
    let known = has("TimeGenerated") && (has("Type") || has("Category") || has("AccountName"));
    let refused = (!known).then(|| {
        let shown: Vec<&str> = columns.iter().take(8).map(String::as_str).collect();
        let more = if columns.len() > 8 { ", ..." } else { "" };
        format!(
            "CSV header is not a Log Analytics export of a table TokenTrail reads ({TABLES}): \
             it needs TimeGenerated and Type, Category or AccountName; its columns: {}{more}",
            shown.join(", ")
        )
    });
    CsvHeader { columns, refused }
}

/// Whether `line` (a file's first) is the header of a Log Analytics CSV export.
pub fn looks_like_csv_header(line: &[u8]) -> bool {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line).trim_ascii_start();
    if matches!(line.first(), None | Some(b'{' | b'[')) || !line.contains(&b',') {
        return false;
    }
    csv_header(line).refused.is_none()
}

fn csv_fields(line: &[u8]) -> Option<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(line);
    let record = reader.records().next()?.ok()?;
    Some(record.iter().map(str::to_owned).collect())
}

/// One CSV row under `header`, in diagnostic-settings shape, or why it cannot be read.
pub(crate) fn csv_row(header: &CsvHeader, row: &[u8]) -> Result<String, String> {
    if let Some(refused) = &header.refused {
        return Err(refused.clone());
    }
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(row);
    let record = match reader.records().next() {
        Some(Ok(record)) => record,
        Some(Err(e)) => return Err(format!("invalid CSV: {e}")),
        None => return Err("invalid CSV: no fields".into()),
    };
    if record.len() != header.columns.len() {
        return Err(format!("invalid CSV: {} fields where the header has {}", record.len(), header.columns.len()));
    }
    if reader.records().next().is_some() {
        return Err("invalid CSV: more than one row".into());
    }
    let object: Map<String, Value> =
        header.columns.iter().zip(record.iter()).map(|(k, v)| (k.clone(), Value::String(v.to_owned()))).collect();
    let table = get_str(&object, "Type").unwrap_or("").to_owned();
    log_analytics_row(object).ok_or_else(|| match table.as_str() {
        "" => format!("a CSV row of no table TokenTrail reads ({TABLES})"),
        table => format!("Log Analytics table {table} is not one TokenTrail reads ({TABLES})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_kinds() {
        let kind = |json: &str| graph_category(&serde_json::from_str(json).unwrap());
        assert_eq!(kind(r#"{"signInEventTypes":["managedIdentity"]}"#), "ManagedIdentitySignInLogs");
        assert_eq!(kind(r#"{"signInEventTypes":["servicePrincipal"]}"#), "ServicePrincipalSignInLogs");
        assert_eq!(kind(r#"{"signInEventTypes":["nonInteractiveUser"]}"#), "NonInteractiveUserSignInLogs");
        assert_eq!(kind(r#"{"signInEventTypes":["interactiveUser"]}"#), "SignInLogs");
        assert_eq!(kind(r#"{"isInteractive":true,"userId":"u"}"#), "SignInLogs");
        assert_eq!(kind(r#"{"isInteractive":false,"userId":"u"}"#), "NonInteractiveUserSignInLogs");
        assert_eq!(kind(r#"{"isInteractive":false,"servicePrincipalId":"s"}"#), "ServicePrincipalSignInLogs");
        assert_eq!(kind(r#"{"userId":"u"}"#), "SignInLogs");
    }

    #[test]
    fn csv_headers() {
        let h = csv_header(b"\xEF\xBB\xBFTimeGenerated [UTC],Type,Id\r");
        assert_eq!((h.columns.join(","), h.refused.is_none()), ("TimeGenerated,Type,Id".to_owned(), true));
        assert!(csv_header(b"name,left_at").refused.unwrap().contains("name, left_at"));
        assert!(looks_like_csv_header(b"TimeGenerated,AccountName,OperationName"));
        assert!(!looks_like_csv_header(br#"{"TimeGenerated":1,"Type":2}"#));
    }
}
