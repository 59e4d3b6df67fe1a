//! Diagnostic records: from bytes on the wire to typed rows, never failing a batch.
//!
//! One unit of input (a file line, an Event Hubs message body) is a bare record, a
//! `{"records":[...]}` envelope, or a JSON array of records. [`parse_unit`] reads it
//! in one pass with the lenient types of [`lenient`], dispatches each record on its
//! `category` (any casing of the key, never on where it came from) and hands it to a
//! [`RecordSink`]: a Cosmos DB request, a sign-in, a record of another category (kept
//! whole), or a rejection with the raw bytes and the reason. Nothing is dropped.
//!
//! Cosmos DB requests take a fast path ([`fast`]) that builds the same [`Record`]
//! without serde, whatever their layout (key order and casing, whitespace, escapes);
//! anything else, or anything it is unsure of, goes through the lenient reader.

pub mod change;
pub mod fast;
pub mod lenient;
pub mod shapes;
pub mod time;

use lenient::{Flag, Level, Num, Text, TextList, lenient_object};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;

lenient_object! {
    /// One diagnostic record as Azure Monitor delivers it (common schema).
    pub struct Record<'a> {
        "time" => time: Text<'a>,
        "timegenerated" => time_generated: Text<'a>,
        "resourceid" => resource_id: Text<'a>,
        "tenantid" => tenant_id: Text<'a>,
        "operationname" => operation_name: Text<'a>,
        "category" => category: Text<'a>,
        "resulttype" => result_type: Text<'a>,
        "resultdescription" => result_description: Text<'a>,
        "durationms" => duration_ms: Num<f64>,
        "calleripaddress" => caller_ip: Text<'a>,
        "correlationid" => correlation_id: Text<'a>,
        "level" => level: Level,
        "location" => location: Text<'a>,
        "properties" => properties: Properties<'a>,
        "records" => records: Option<Vec<&'a RawValue>>,
    }
}

lenient_object! {
    /// `properties` of DataPlaneRequests and of the four sign-in categories, in one
    /// struct: their field names do not clash, and one pass is cheaper than two.
    pub struct Properties<'a> {
        // Cosmos DB DataPlaneRequests
        "activityid" => activity_id: Text<'a>,
        // `resourceType` in older Cosmos DB records.
        "requestresourcetype" | "resourcetype" => request_resource_type: Text<'a>,
        "requestresourceid" => request_resource_id: Text<'a>,
        "collectionrid" => collection_rid: Text<'a>,
        "databaserid" => database_rid: Text<'a>,
        "statuscode" => status_code: Num<i64>,
        "duration" => duration: Num<f64>,
        "useragent" => user_agent: Text<'a>,
        "clientipaddress" => client_ip: Text<'a>,
        "requestcharge" => request_charge: Num<f64>,
        "requestlength" => request_length: Num<i64>,
        "responselength" => response_length: Num<i64>,
        "resourcetokenpermissionid" => resource_token_permission_id: Text<'a>,
        "resourcetokenpermissionmode" => resource_token_permission_mode: Text<'a>,
        "resourcetokenuserrid" => resource_token_user_rid: Text<'a>,
        "region" => region: Text<'a>,
        "partitionid" => partition_id: Text<'a>,
        "aadprincipalid" => aad_principal_id: Text<'a>,
        "aadappliedroleassignmentid" => aad_role_assignment_id: Text<'a>,
        "authtokentype" => auth_token_type: Text<'a>,
        "keytype" => key_type: Text<'a>,
        "connectionmode" => connection_mode: Text<'a>,
        "subscriptionid" => subscription_id: Text<'a>,
        "databasename" => database_name: Text<'a>,
        "collectionname" => collection_name: Text<'a>,
        // Entra ID sign-ins
        "id" => id: Text<'a>,
        "createddatetime" => created_date_time: Text<'a>,
        "userid" => user_id: Text<'a>,
        "userprincipalname" => user_principal_name: Text<'a>,
        "userdisplayname" => user_display_name: Text<'a>,
        "serviceprincipalid" => service_principal_id: Text<'a>,
        "serviceprincipalname" => service_principal_name: Text<'a>,
        "appid" => app_id: Text<'a>,
        "appdisplayname" => app_display_name: Text<'a>,
        "ipaddress" => ip_address: Text<'a>,
        "status" => status: SignInStatus<'a>,
        "location" => location: SignInLocation<'a>,
        "risklevelduringsignin" => risk_level_during_sign_in: Text<'a>,
        "risklevelaggregated" => risk_level_aggregated: Text<'a>,
        "riskstate" => risk_state: Text<'a>,
        "riskdetail" => risk_detail: Text<'a>,
        "riskeventtypes_v2" => risk_event_types: TextList,
        "conditionalaccessstatus" => conditional_access_status: Text<'a>,
        "isinteractive" => is_interactive: Flag,
        "resourceid" => resource_id: Text<'a>,
        "resourcedisplayname" => resource_display_name: Text<'a>,
        "resourcetenantid" => resource_tenant_id: Text<'a>,
        "hometenantid" => home_tenant_id: Text<'a>,
        "authenticationrequirement" => authentication_requirement: Text<'a>,
        "clientappused" => client_app_used: Text<'a>,
        "devicedetail" => device_detail: DeviceDetail<'a>,
        "autonomoussystemnumber" => autonomous_system_number: Num<i64>,
        "uniquetokenidentifier" => unique_token_identifier: Text<'a>,
        "incomingtokentype" => incoming_token_type: Text<'a>,
        "authenticationprotocol" => authentication_protocol: Text<'a>,
        "serviceprincipalcredentialkeyid" => credential_key_id: Text<'a>,
        "crosstenantaccesstype" => cross_tenant_access_type: Text<'a>,
        "usertype" => user_type: Text<'a>,
        "correlationid" => correlation_id: Text<'a>,
    }
}

lenient_object! {
    pub struct SignInStatus<'a> {
        "errorcode" => error_code: Num<i64>,
        "failurereason" => failure_reason: Text<'a>,
    }
}

lenient_object! {
    pub struct SignInLocation<'a> {
        "city" => city: Text<'a>,
        "state" => state: Text<'a>,
        "countryorregion" => country: Text<'a>,
        "geocoordinates" => coordinates: GeoCoordinates<'a>,
    }
}

lenient_object! {
    pub struct GeoCoordinates<'a> {
        "latitude" => latitude: Num<f64>,
        "longitude" => longitude: Num<f64>,
    }
}

lenient_object! {
    pub struct DeviceDetail<'a> {
        "deviceid" => device_id: Text<'a>,
        "operatingsystem" => operating_system: Text<'a>,
        "browser" => browser: Text<'a>,
    }
}

/// Which of the four Entra ID sign-in logs a sign-in came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInKind {
    UserInteractive,
    UserNonInteractive,
    ServicePrincipal,
    ManagedIdentity,
}

impl SignInKind {
    /// The value of `signins.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignInKind::UserInteractive => "user_interactive",
            SignInKind::UserNonInteractive => "user_noninteractive",
            SignInKind::ServicePrincipal => "service_principal",
            SignInKind::ManagedIdentity => "managed_identity",
        }
    }

    pub fn is_user(self) -> bool {
        matches!(self, SignInKind::UserInteractive | SignInKind::UserNonInteractive)
    }
}

/// Where a record goes, decided by its `category` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    DataPlaneRequests,
    SignIn(SignInKind),
    /// Any other category: kept whole in `raw_events`.
    Other,
}

impl Category {
    pub fn of(category: &str) -> Category {
        let mut buf = [0u8; 64];
        match lenient::lowercase_key(category.trim(), &mut buf) {
            "dataplanerequests" => Category::DataPlaneRequests,
            "signinlogs" => Category::SignIn(SignInKind::UserInteractive),
            "noninteractiveusersigninlogs" => Category::SignIn(SignInKind::UserNonInteractive),
            "serviceprincipalsigninlogs" | "microsoftserviceprincipalsigninlogs" => {
                Category::SignIn(SignInKind::ServicePrincipal)
            }
            "managedidentitysigninlogs" => Category::SignIn(SignInKind::ManagedIdentity),
            _ => Category::Other,
        }
    }
}

/// Where one unit of input came from: a file and line, or a hub partition and
/// sequence number. Stored with every raw and quarantined row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origin {
    /// File path, or `namespace/hub` for Event Hubs.
    pub source: String,
    pub line: Option<i64>,
    pub partition: Option<String>,
    pub sequence: Option<i64>,
    /// The header of the CSV export the unit is a row of (a unit is JSON otherwise).
    pub csv: Option<Arc<shapes::CsvHeader>>,
}

/// A record that was read and typed, ready for its table.
pub struct Accepted<'r, 'a> {
    pub record: &'r Record<'a>,
    /// `time` in microseconds since the epoch, UTC. Always set for Cosmos DB requests
    /// and sign-ins; records of other categories may lack one.
    pub time: Option<i64>,
    pub category: Category,
    /// The record's own bytes (kept for `raw_events`).
    pub raw: &'r [u8],
}

/// Receives what [`parse_unit`] reads; implemented by the Arrow row builders.
pub trait RecordSink {
    fn accept(&mut self, record: Accepted<'_, '_>, origin: &Origin, index: Option<i32>);
    fn reject(&mut self, rejection: Rejection<'_>, origin: &Origin, index: Option<i32>);
}

/// A record that cannot be stored typed: its raw bytes, why, and its category if known.
pub struct Rejection<'r> {
    pub raw: &'r [u8],
    /// Size of the whole record; more than `raw.len()` when only a prefix was kept.
    pub size: usize,
    pub reason: String,
    pub category: Option<String>,
}

impl<'r> Rejection<'r> {
    pub fn new(raw: &'r [u8], reason: impl Into<String>, category: Option<String>) -> Rejection<'r> {
        Rejection { raw, size: raw.len(), reason: reason.into(), category }
    }
}

/// Limits on what one unit may be.
pub const MAX_RECORDS_PER_UNIT: usize = 100_000;

/// Which readers [`parse_unit_with`] may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// The [`fast`] path where it applies, the lenient reader elsewhere (the default).
    FastThenLenient,
    /// The lenient reader only: what the fast path is checked against.
    LenientOnly,
}

/// Reads one unit (bare record, envelope or array) and hands every record in it to
/// `sink`. Never fails: what cannot be read is rejected with its bytes and reason.
pub fn parse_unit(unit: &[u8], origin: &Origin, sink: &mut impl RecordSink) {
    parse_unit_with(Readers::FastThenLenient, unit, origin, sink);
}

/// [`parse_unit`] with a choice of readers; `tests/it/fast_path.rs` compares them.
pub fn parse_unit_with(readers: Readers, unit: &[u8], origin: &Origin, sink: &mut impl RecordSink) {
    let trimmed = trim_ascii(unit);
    if trimmed.is_empty() {
        return;
    }
    if let Some(header) = &origin.csv {
        return parse_csv_row(header, trimmed, origin, sink);
    }
    // Validating UTF-8 once here lets serde read every string without checking it again.
    let Ok(text) = simdutf8::basic::from_utf8(trimmed) else {
        let valid = std::str::from_utf8(trimmed).map_or_else(|e| e.valid_up_to(), |_| trimmed.len());
        let reason = format!("invalid JSON: not UTF-8 after byte {valid}");
        return sink.reject(Rejection::new(trimmed, reason, None), origin, None);
    };
    if text.starts_with('[') {
        match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) => parse_many(readers, &items, origin, sink),
            Err(e) => reject_unreadable(text, e, origin, None, sink),
        }
        return;
    }
    parse_record(readers, text, origin, None, sink);
}

/// A row of a Log Analytics CSV export: read in diagnostic-settings shape, kept as its
/// own bytes.
#[cold]
fn parse_csv_row(header: &shapes::CsvHeader, row: &[u8], origin: &Origin, sink: &mut impl RecordSink) {
    let text = match std::str::from_utf8(row) {
        Ok(text) => text,
        Err(e) => {
            let reason = format!("invalid CSV: not UTF-8 after byte {}", e.valid_up_to());
            return sink.reject(Rejection::new(row, reason, None), origin, None);
        }
    };
    match shapes::csv_row(header, row) {
        Ok(json) => match serde_json::from_str::<Record>(&json) {
            Ok(record) => store_record(&record, text, origin, None, sink),
            Err(e) => {
                let rejection = Rejection::new(row, format!("wrong type: {e}"), None);
                sink.reject(rejection, origin, None)
            }
        },
        Err(reason) => sink.reject(Rejection::new(row, reason, None), origin, None),
    }
}

fn parse_many(readers: Readers, items: &[&RawValue], origin: &Origin, sink: &mut impl RecordSink) {
    for (i, item) in items.iter().enumerate().take(MAX_RECORDS_PER_UNIT) {
        let index = i32::try_from(i).ok();
        parse_record(readers, item.get(), origin, index, sink);
    }
    if items.len() > MAX_RECORDS_PER_UNIT {
        for (i, item) in items.iter().enumerate().skip(MAX_RECORDS_PER_UNIT) {
            let reason = format!("more than {MAX_RECORDS_PER_UNIT} records in one unit");
            let rejection = Rejection::new(item.get().as_bytes(), reason, None);
            sink.reject(rejection, origin, i32::try_from(i).ok());
        }
    }
}

fn parse_record(readers: Readers, text: &str, origin: &Origin, index: Option<i32>, sink: &mut impl RecordSink) {
    if readers == Readers::FastThenLenient && index.is_none() {
        // Azure's envelope of Cosmos DB requests: one scan, no serde pass first.
        if let Some(records) = fast::cosmos_envelope(text, MAX_RECORDS_PER_UNIT) {
            for (i, (text, record)) in records.iter().enumerate() {
                store_record(record, text, origin, i32::try_from(i).ok(), sink);
            }
            return;
        }
    }
    let mut record = Record::default();
    if !(readers == Readers::FastThenLenient && fast::read_cosmos_record(text, &mut record)) {
        record = match serde_json::from_str::<Record>(text) {
            Ok(record) => record,
            Err(e) => return reject_unreadable(text, e, origin, index, sink),
        };
    }
    if let Some(records) = &record.records {
        // An envelope inside an envelope is not something Azure sends; flattening
        // one level is what every pipeline does.
        if index.is_none() {
            return parse_many(readers, records, origin, sink);
        }
        let rejection = Rejection::new(text.as_bytes(), "nested records envelope", None);
        return sink.reject(rejection, origin, index);
    }
    // A Graph signIn or page, a Log Analytics row: no category, or `TimeGenerated` and
    // no `time` (two checks on the path of every record, nothing more).
    if (record.category.0.is_none() || (record.time.0.is_none() && record.time_generated.0.is_some()))
        && reshaped(readers, text, origin, index, sink)
    {
        return;
    }
    store_record(&record, text, origin, index, sink);
}

/// Reads `text` in one of the other shapes ([`shapes`]), if it is in one; says whether
/// it was (and so handed to `sink`).
#[cold]
fn reshaped(readers: Readers, text: &str, origin: &Origin, index: Option<i32>, sink: &mut impl RecordSink) -> bool {
    match shapes::reshape(text, index.is_none()) {
        None => false,
        Some(shapes::Reshaped::Page(items)) => {
            parse_many(readers, &items, origin, sink);
            true
        }
        Some(shapes::Reshaped::Record(json)) => {
            match serde_json::from_str::<Record>(&json) {
                Ok(record) => store_record(&record, text, origin, index, sink),
                Err(e) => {
                    let rejection = Rejection::new(text.as_bytes(), format!("wrong type: {e}"), None);
                    sink.reject(rejection, origin, index);
                }
            }
            true
        }
    }
}

/// Hands a record that was read to `sink`, or rejects it for what it lacks.
fn store_record(record: &Record<'_>, text: &str, origin: &Origin, index: Option<i32>, sink: &mut impl RecordSink) {
    let raw = text.as_bytes();
    let Some(category_text) = record.category.get() else {
        let rejection = Rejection::new(raw, "record has no category", None);
        return sink.reject(rejection, origin, index);
    };
    let category = Category::of(category_text);
    let time_text = match category {
        Category::SignIn(_) => record.properties.created_date_time.get().or(record.time.get()),
        _ => record.time.get().or(record.time_generated.get()),
    };
    let time = time_text.and_then(time::parse_timestamp);
    if time.is_none() && category != Category::Other {
        // Other categories are kept whole whatever their time; ours need one.
        let reason = match time_text {
            Some(text) => format!("time: unrecognised timestamp {text:?}"),
            None => "record has no time".to_owned(),
        };
        let rejection = Rejection::new(raw, reason, Some(category_text.to_owned()));
        return sink.reject(rejection, origin, index);
    }
    sink.accept(Accepted { record, time, category, raw }, origin, index);
}

/// A record our typed reader refused. If it is valid JSON of a category we do not
/// type, that is no fault of the record: keep it whole in `raw_events`.
#[cold]
fn reject_unreadable(
    text: &str,
    error: serde_json::Error,
    origin: &Origin,
    index: Option<i32>,
    sink: &mut impl RecordSink,
) {
    let raw = text.as_bytes();
    #[derive(serde::Deserialize)]
    struct CategoryOnly {
        #[serde(alias = "Category", alias = "CATEGORY")]
        category: Option<String>,
        #[serde(alias = "Time")]
        time: Option<serde_json::Value>,
    }
    if let Err(syntax) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        let rejection = Rejection::new(raw, format!("invalid JSON: {syntax}"), None);
        return sink.reject(rejection, origin, index);
    }
    // A Graph signIn (its `location` is an object) or a Log Analytics row.
    if reshaped(Readers::LenientOnly, text, origin, index, sink) {
        return;
    }
    let category = serde_json::from_str::<CategoryOnly>(text).ok().and_then(|c| c.category.map(|cat| (cat, c.time)));
    if let Some((category_text, time)) = &category
        && Category::of(category_text) == Category::Other
    {
        let record = Record { category: Text(Some(category_text.as_str().into())), ..Record::default() };
        let time = time.as_ref().and_then(|t| t.as_str()).and_then(time::parse_timestamp);
        return sink.accept(Accepted { record: &record, time, category: Category::Other, raw }, origin, index);
    }
    let rejection = Rejection::new(raw, format!("wrong type: {error}"), category.map(|(c, _)| c));
    sink.reject(rejection, origin, index);
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes); // UTF-8 BOM
    bytes.trim_ascii()
}

/// `.../DATABASEACCOUNTS/<NAME>` → `name`; the subscription and resource group too.
pub struct ArmPath<'a> {
    pub subscription: Option<&'a str>,
    pub resource_group: Option<&'a str>,
    pub account: Option<&'a str>,
}

impl<'a> ArmPath<'a> {
    /// Names pair with the segment right after them, empty or not
    /// (`/SUBSCRIPTIONS//RESOURCEGROUPS/rg` has no subscription, and the group `rg`).
    /// A bare name with no `/` (older Cosmos DB records) is the account's.
    pub fn parse(resource_id: &'a str) -> ArmPath<'a> {
        let mut path = ArmPath { subscription: None, resource_group: None, account: None };
        let bare = resource_id.trim();
        if !bare.is_empty() && !bare.contains('/') {
            path.account = Some(bare);
            return path;
        }
        let mut parts = resource_id.split('/');
        while let Some(part) = parts.next() {
            let slot = if part.eq_ignore_ascii_case("subscriptions") {
                &mut path.subscription
            } else if part.eq_ignore_ascii_case("resourcegroups") {
                &mut path.resource_group
            } else if part.eq_ignore_ascii_case("databaseaccounts") {
                &mut path.account
            } else {
                continue;
            };
            *slot = parts.next().filter(|value| !value.is_empty());
        }
        path
    }
}

/// An object id as stored: a GUID lower-cased (Entra sends them in lower case, but
/// joins must not depend on every exporter doing so), anything else as it is
/// ("ParseMe", "<USER ID>" are not GUIDs and keep their case). Borrowed unless changed.
pub fn object_id(text: &str) -> Cow<'_, str> {
    let text = text.trim();
    if is_guid(text) && text.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex digits of either case, optionally in braces.
pub fn is_guid(text: &str) -> bool {
    let b = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')).unwrap_or(text).as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `/dbs/<db>/colls/<coll>/docs` → the segment after `marker` (`dbs` or `colls`).
pub fn resource_path_segment<'a>(request_resource_id: &'a str, marker: &str) -> Option<&'a str> {
    let mut parts = request_resource_id.split('/');
    parts.by_ref().find(|p| p.eq_ignore_ascii_case(marker))?;
    parts.next().filter(|s| !s.is_empty())
}

/// `/tenants/<tid>/providers/Microsoft.aadiam` → `tid`.
pub fn tenant_of_resource(resource_id: &str) -> Option<&str> {
    resource_path_segment(resource_id, "tenants")
}
