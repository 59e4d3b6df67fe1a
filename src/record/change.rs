//! Control-plane and directory changes: an Azure Activity log event or an Entra ID
//! audit record, read into the typed rows of `control_changes` and `directory_changes`
//! (migration 13).
//!
//! These records are stored whole in `raw_events` first, like any category we do not
//! type at parse time; this reads one of them again. Which log a record belongs to is
//! decided by its shape: the Activity log's top-level `category` is `Write`, `Delete` or
//! `Action` (the log's own category is in `properties.eventCategory`), so a category
//! alone says little. Keys and names arrive in any case (`MICROSOFT.DOCUMENTDB/...`,
//! `Properties.PrincipalId`); request bodies and audit values are JSON inside strings.

use serde_json::{Map, Value};

/// The categories a change record may carry: only `raw_events` rows of these are read.
pub const CATEGORIES: &[&str] = &["write", "delete", "action", "administrative", "auditlogs"];

/// One Activity log event.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ControlChange {
    pub time: Option<i64>,
    pub kind: &'static str,
    pub operation: String,
    pub result: Option<String>,
    pub status: Option<String>,
    pub subscription_id: Option<String>,
    pub resource_group: Option<String>,
    pub account: Option<String>,
    pub resource_id: String,
    pub caller_id: Option<String>,
    pub caller_app_id: Option<String>,
    pub caller_name: Option<String>,
    pub caller_ip: Option<String>,
    pub target_principal_id: Option<String>,
    pub target_principal_type: Option<String>,
    pub role_definition_id: Option<String>,
    pub scope: Option<String>,
    pub disable_local_auth: Option<bool>,
    pub public_network_access: Option<String>,
    pub disabled_logs: Option<Vec<String>>,
    pub correlation_id: Option<String>,
    pub event_category: Option<String>,
    pub category: Option<String>,
}

/// One Entra ID audit record.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DirectoryChange {
    pub time: Option<i64>,
    pub kind: &'static str,
    pub operation: String,
    pub audit_category: Option<String>,
    pub result: Option<String>,
    pub tenant_id: Option<String>,
    pub actor_id: Option<String>,
    pub actor_kind: Option<&'static str>,
    pub actor_name: Option<String>,
    pub actor_ip: Option<String>,
    pub target_id: Option<String>,
    pub target_type: Option<String>,
    pub target_name: Option<String>,
    pub target_app_id: Option<String>,
    pub group_id: Option<String>,
    /// Every target's modified properties: `[{target, name, old, new}]`, values decoded.
    pub modified: Value,
    pub correlation_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Control(Box<ControlChange>),
    Directory(Box<DirectoryChange>),
}

/// Reads `record` (one JSON record) as a change; None when it has the shape of neither log.
pub fn read(record: &str) -> Option<Change> {
    let value: Value = serde_json::from_str(record).ok()?;
    let object = value.as_object()?;
    let category = text(object, "category");
    let resource_id = text(object, "resourceId").unwrap_or_default();
    let operation = text(object, "operationName");
    let properties = get(object, "properties").and_then(Value::as_object);
    let audit_shaped = category.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("auditlogs"))
        || (contains_ignore_case(&resource_id, "/providers/microsoft.aadiam")
            && properties.is_some_and(|p| get(p, "targetResources").is_some()));
    if audit_shaped {
        return Some(Change::Directory(Box::new(directory(object, properties, operation?))));
    }
    let operation = operation?;
    let arm_shaped = starts_with_ignore_case(resource_id.trim(), "/subscriptions/")
        && operation.contains('/')
        && (get(object, "identity").is_some() || properties.is_some_and(|p| get(p, "eventCategory").is_some()));
    arm_shaped.then(|| Change::Control(Box::new(control(object, properties, &operation, resource_id))))
}

fn control(
    object: &Map<String, Value>,
    properties: Option<&Map<String, Value>>,
    operation: &str,
    resource_id: String,
) -> ControlChange {
    let operation = operation.trim().to_ascii_lowercase();
    let resource_id = resource_id.trim().to_ascii_lowercase();
    let arm = super::ArmPath::parse(&resource_id);
    let identity = get_object(object, "identity");
    let claims = identity.and_then(|i| get_object(i, "claims"));
    let claim = |name: &str| claims.and_then(|c| text(c, name));
    let evidence = identity.and_then(|i| get_object(i, "authorization")).and_then(|a| get_object(a, "evidence"));
    let caller_id = claim("http://schemas.microsoft.com/identity/claims/objectidentifier")
        .or_else(|| claim("oid"))
        .or_else(|| evidence.and_then(|e| text(e, "principalId")).map(|id| dashed_guid(&id)))
        .map(|id| id.to_ascii_lowercase());
    let caller_name = claim("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn")
        .or_else(|| claim("upn"))
        .or_else(|| claim("name"))
        .or_else(|| text(object, "caller"));
    let body = properties.and_then(|p| body(p, "requestbody").or_else(|| body(p, "responseBody")));
    let body_properties = body.as_ref().and_then(Value::as_object).and_then(|b| get_object(b, "properties"));
    let from_body = |name: &str| body_properties.and_then(|p| text(p, name));
    let role_definition_id = from_body("roleDefinitionId").map(|id| last_segment(&id).to_ascii_lowercase());
    let scope = from_body("scope").map(|s| s.trim().to_ascii_lowercase());
    // A role assignment's scope names the account when the record's resource does not.
    let account = arm
        .account
        .map(str::to_owned)
        .or_else(|| scope.as_deref().and_then(|s| super::ArmPath::parse(s).account.map(str::to_owned)));
    let disabled_logs = body_properties.and_then(|p| get(p, "logs")).and_then(Value::as_array).map(|logs| {
        logs.iter()
            .filter_map(Value::as_object)
            .filter(|log| get(log, "enabled").and_then(flag) == Some(false))
            .filter_map(|log| text(log, "category").or_else(|| text(log, "categoryGroup")))
            .collect()
    });
    ControlChange {
        time: None,
        kind: control_kind(&operation),
        result: text(object, "resultType"),
        status: properties.and_then(|p| text(p, "statusCode")).or_else(|| text(object, "resultSignature")),
        subscription_id: arm.subscription.map(str::to_owned),
        resource_group: arm.resource_group.map(str::to_owned),
        account,
        caller_id,
        caller_app_id: claim("appid").or_else(|| claim("azp")).map(|id| id.to_ascii_lowercase()),
        caller_name,
        caller_ip: text(object, "callerIpAddress"),
        target_principal_id: from_body("principalId").map(|id| id.to_ascii_lowercase()),
        target_principal_type: from_body("principalType"),
        role_definition_id,
        scope,
        disable_local_auth: body_properties.and_then(|p| get(p, "disableLocalAuth")).and_then(flag),
        public_network_access: from_body("publicNetworkAccess"),
        disabled_logs,
        correlation_id: text(object, "correlationId").map(|id| id.to_ascii_lowercase()),
        event_category: properties.and_then(|p| text(p, "eventCategory")),
        category: text(object, "category"),
        operation,
        resource_id,
    }
}

/// The kinds TokenTrail reasons about, from the lower-case operation name.
fn control_kind(operation: &str) -> &'static str {
    let op = operation.trim_end_matches('/');
    let kinds: &[(&str, &str)] = &[
        ("microsoft.documentdb/databaseaccounts/listkeys/action", "list_keys"),
        ("microsoft.documentdb/databaseaccounts/readonlykeys/action", "read_only_keys"),
        ("microsoft.documentdb/databaseaccounts/listconnectionstrings/action", "list_connection_strings"),
        ("microsoft.documentdb/databaseaccounts/regeneratekey/action", "regenerate_key"),
        ("microsoft.documentdb/databaseaccounts/sqlroleassignments/write", "data_role_assignment_write"),
        ("microsoft.documentdb/databaseaccounts/sqlroleassignments/delete", "data_role_assignment_delete"),
        ("microsoft.documentdb/databaseaccounts/sqlroledefinitions/write", "data_role_definition_write"),
        ("microsoft.documentdb/databaseaccounts/sqlroledefinitions/delete", "data_role_definition_delete"),
        ("microsoft.authorization/roleassignments/write", "role_assignment_write"),
        ("microsoft.authorization/roleassignments/delete", "role_assignment_delete"),
        ("microsoft.documentdb/databaseaccounts/write", "account_write"),
        ("microsoft.documentdb/databaseaccounts/delete", "account_delete"),
        ("microsoft.insights/diagnosticsettings/write", "diagnostic_setting_write"),
        ("microsoft.insights/diagnosticsettings/delete", "diagnostic_setting_delete"),
    ];
    kinds.iter().find(|(name, _)| *name == op).map_or("other", |(_, kind)| kind)
}

fn directory(
    object: &Map<String, Value>,
    properties: Option<&Map<String, Value>>,
    operation: String,
) -> DirectoryChange {
    let property = |name: &str| properties.and_then(|p| text(p, name));
    let initiated = properties.and_then(|p| get_object(p, "initiatedBy"));
    let user = initiated.and_then(|i| get_object(i, "user"));
    let app = initiated.and_then(|i| get_object(i, "app"));
    let (actor_id, actor_kind, actor_name, actor_ip) = match (user, app) {
        (Some(u), _) if text(u, "id").is_some() => (
            text(u, "id"),
            Some("user"),
            text(u, "userPrincipalName").or_else(|| text(u, "displayName")),
            text(u, "ipAddress"),
        ),
        (_, Some(a)) => (
            text(a, "servicePrincipalId").or_else(|| text(a, "appId")),
            Some("app"),
            text(a, "displayName").or_else(|| text(a, "servicePrincipalName")),
            None,
        ),
        _ => (None, None, None, None),
    };
    let targets: Vec<&Map<String, Value>> = properties
        .and_then(|p| get(p, "targetResources"))
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default();
    let mut modified = Vec::new();
    let mut group_id = None;
    for target in &targets {
        let changes = get(target, "modifiedProperties").and_then(Value::as_array);
        for change in changes.into_iter().flatten().filter_map(Value::as_object) {
            let name = text(change, "displayName").unwrap_or_default();
            let new = decoded(get(change, "newValue"));
            if name.eq_ignore_ascii_case("Group.ObjectID") && group_id.is_none() {
                group_id = new.as_str().map(|id| id.to_ascii_lowercase());
            }
            let old = decoded(get(change, "oldValue"));
            modified.push(serde_json::json!({ "target": text(target, "id"), "name": name, "old": old, "new": new }));
        }
    }
    let kind = directory_kind(&operation, &modified);
    let first = targets.first();
    if group_id.is_none() && kind.starts_with("group_member") {
        let group = targets.iter().find(|t| text(t, "type").is_some_and(|ty| ty.eq_ignore_ascii_case("group")));
        group_id = group.and_then(|g| text(g, "id")).map(|id| id.to_ascii_lowercase());
    }
    let details = properties.and_then(|p| get(p, "additionalDetails")).and_then(Value::as_array);
    let detail_app_id = details
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .find_map(|d| text(d, "key").filter(|k| k.eq_ignore_ascii_case("appid")).and(text(d, "value")));
    let time = property("activityDateTime").as_deref().and_then(super::time::parse_timestamp);
    DirectoryChange {
        time,
        kind,
        audit_category: property("category"),
        result: property("result").map(|r| r.to_ascii_lowercase()),
        tenant_id: text(object, "tenantId")
            .or_else(|| text(object, "resourceId").as_deref().and_then(super::tenant_of_resource).map(str::to_owned))
            .map(|id| id.to_ascii_lowercase()),
        actor_id: actor_id.map(|id| id.to_ascii_lowercase()),
        actor_kind,
        actor_name,
        actor_ip: actor_ip.or_else(|| text(object, "callerIpAddress")),
        target_id: first.and_then(|t| text(t, "id")).map(|id| id.to_ascii_lowercase()),
        target_type: first.and_then(|t| text(t, "type")),
        target_name: first.and_then(|t| text(t, "userPrincipalName").or_else(|| text(t, "displayName"))),
        target_app_id: detail_app_id.or_else(|| first.and_then(|t| text(t, "appId"))).map(|id| id.to_ascii_lowercase()),
        group_id,
        modified: Value::Array(modified),
        correlation_id: property("correlationId")
            .or_else(|| text(object, "correlationId"))
            .map(|id| id.to_ascii_lowercase()),
        operation,
    }
}

fn directory_kind(operation: &str, modified: &[Value]) -> &'static str {
    let op = operation.trim().to_lowercase();
    // "Update user" disables an account when it sets AccountEnabled to false (its new value
    // arrives as `[false]`).
    let disables = || {
        modified.iter().any(|m| {
            m.get("name").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case("AccountEnabled"))
                && match m.get("new") {
                    Some(Value::Array(values)) => values.first().is_some_and(is_false),
                    Some(value) => is_false(value),
                    None => false,
                }
        })
    };
    if op == "disable account" || (op == "update user" && disables()) {
        "user_disabled"
    } else if op == "delete user" {
        "user_deleted"
    } else if op == "add member to group" {
        "group_member_added"
    } else if op == "remove member from group" {
        "group_member_removed"
    } else if op.starts_with("add app role assignment") {
        "app_role_assigned"
    } else if op.starts_with("remove app role assignment") {
        "app_role_removed"
    } else if op.contains("service principal credentials") {
        "sp_credentials_changed"
    } else if op.starts_with("update application") && op.contains("certificates and secrets") {
        "app_credentials_changed"
    } else if op.starts_with("consent to application") {
        "consent"
    } else {
        "other"
    }
}

fn is_false(value: &Value) -> bool {
    match value {
        Value::Bool(b) => !b,
        Value::String(s) => s.trim().eq_ignore_ascii_case("false"),
        _ => false,
    }
}

/// The value of key `name` in any case.
fn get<'v>(object: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    object.get(name).or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

fn get_object<'v>(object: &'v Map<String, Value>, name: &str) -> Option<&'v Map<String, Value>> {
    get(object, name).and_then(Value::as_object)
}

/// A non-empty text value, numbers and booleans as their text; `<null>` (how some exports
/// write null) is none.
fn text(object: &Map<String, Value>, name: &str) -> Option<String> {
    let text = match get(object, name)? {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!text.is_empty() && text != "<null>").then_some(text)
}

fn flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A request or response body: JSON in a string (as Azure sends it), or an object.
fn body(properties: &Map<String, Value>, name: &str) -> Option<Value> {
    match get(properties, name)? {
        Value::String(s) => serde_json::from_str::<Value>(s).ok().filter(Value::is_object),
        v @ Value::Object(_) => Some(v.clone()),
        _ => None,
    }
}

/// An audit `oldValue`/`newValue`: JSON-encoded in a string; kept as the string if it is not.
fn decoded(value: Option<&Value>) -> Value {
    match value {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

fn last_segment(path: &str) -> &str {
    path.trim().trim_end_matches('/').rsplit('/').next().unwrap_or(path)
}

/// The Activity log's `evidence.principalId` is a GUID without dashes.
fn dashed_guid(id: &str) -> String {
    let id = id.trim();
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("{}-{}-{}-{}-{}", &id[..8], &id[8..12], &id[12..16], &id[16..20], &id[20..])
    } else {
        id.to_owned()
    }
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len() && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn contains_ignore_case(text: &str, needle: &str) -> bool {
    text.to_ascii_lowercase().contains(needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(record: serde_json::Value) -> ControlChange {
        match read(&record.to_string()) {
            Some(Change::Control(c)) => *c,
            other => panic!("not a control change: {other:?}"),
        }
    }

    #[test]
    fn accounts_disabled_or_deleted_are_leavers_kinds() {
        let kind = |operation: &str, modified: serde_json::Value| {
            let record = serde_json::json!({"category": "AuditLogs", "operationName": operation,
                "properties": {"activityDateTime": "2025-03-03T12:00:00Z", "result": "success",
                    "targetResources": [{"id": "u1", "type": "User", "modifiedProperties": modified}]}});
            match read(&record.to_string()) {
                Some(Change::Directory(d)) => d.kind,
                other => panic!("not a directory change: {other:?}"),
            }
        };
        assert_eq!(kind("Disable account", serde_json::json!([])), "user_disabled");
        assert_eq!(kind("Delete user", serde_json::json!([])), "user_deleted");
        let enabled =
            |new: &str| serde_json::json!([{"displayName": "AccountEnabled", "oldValue": "[true]", "newValue": new}]);
        assert_eq!(kind("Update user", enabled("[false]")), "user_disabled");
        assert_eq!(kind("Update user", enabled("[true]")), "other");
        assert_eq!(
            kind("Update user", serde_json::json!([{"displayName": "Department", "newValue": "[\"x\"]"}])),
            "other"
        );
    }

    #[test]
    fn the_shape_decides_not_the_category_alone() {
        // Cosmos DB's own ControlPlaneRequests: an ARM resource, but no provider operation
        let cosmos = serde_json::json!({"category": "ControlPlaneRequests", "operationName": "SqlRoleAssignmentCreate",
            "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/A",
            "properties": {"eventCategory": "x"}});
        assert_eq!(read(&cosmos.to_string()), None);
        // category Write with no ARM resource
        assert_eq!(read(r#"{"category":"Write","operationName":"a/b"}"#), None);
        // an Activity log record exported with its log category on top, names in lower case
        let lower = control(
            serde_json::json!({"category": "Administrative", "operationname": "microsoft.documentdb/databaseaccounts/listkeys/action",
            "resourceid": "/subscriptions/s/resourcegroups/r/providers/microsoft.documentdb/databaseaccounts/a", "resulttype": "Success",
            "identity": {"authorization": {"evidence": {"principalId": "1F0C6F2E3B7D4F1A9A512C8E7D6B5A41"}}}}),
        );
        assert_eq!(lower.kind, "list_keys");
        assert_eq!(lower.account.as_deref(), Some("a"));
        assert_eq!(lower.caller_id.as_deref(), Some("1f0c6f2e-3b7d-4f1a-9a51-2c8e7d6b5a41"), "evidence's id, dashed");
    }

    #[test]
    fn a_body_given_as_an_object_or_with_string_flags_is_read_and_a_broken_one_ignored() {
        let base = serde_json::json!({"category": "Write", "operationName": "Microsoft.DocumentDB/databaseAccounts/write",
            "resourceId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.DocumentDB/databaseAccounts/A", "identity": {}});
        let mut object = base.clone();
        object["properties"] = serde_json::json!({"requestbody": {"properties": {"disableLocalAuth": "True"}}});
        assert_eq!(control(object).disable_local_auth, Some(true));
        let mut broken = base.clone();
        broken["properties"] = serde_json::json!({"requestbody": "{\"properties\": {\"disableLocalAuth\": fa"});
        let broken = control(broken);
        assert_eq!((broken.kind, broken.disable_local_auth), ("account_write", None));
    }
}
