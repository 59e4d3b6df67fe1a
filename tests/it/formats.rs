//! Every shape sign-ins and Cosmos DB requests arrive in besides diagnostic settings
//! (issue 31): Microsoft Graph signIn objects and list pages, Log Analytics rows as
//! JSON (`az monitor log-analytics query`) and as the portal's CSV export, older Cosmos
//! DB field names, ARM paths with an empty segment. The records are in
//! tests/fixtures/formats (provenance in its README.md); each test checks every column
//! of the stored rows, and that nothing is lost: typed + raw + quarantined rows equal
//! the records in the file.

use crate::common;
use common::TestDb;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats").join(name)
}

const SIGNIN_COLUMNS: &[&str] = &[
    "time",
    "kind",
    "category",
    "signin_id",
    "tenant_id",
    "principal_id",
    "principal_name",
    "user_display_name",
    "app_id",
    "app_display_name",
    "ip_address",
    "country",
    "state",
    "city",
    "latitude",
    "longitude",
    "autonomous_system_number",
    "error_code",
    "failure_reason",
    "risk_level",
    "risk_level_aggregated",
    "risk_state",
    "risk_detail",
    "risk_event_types",
    "conditional_access_status",
    "is_interactive",
    "resource_id",
    "resource_display_name",
    "resource_tenant_id",
    "home_tenant_id",
    "authentication_requirement",
    "client_app_used",
    "user_agent",
    "device_os",
    "device_browser",
    "unique_token_identifier",
    "incoming_token_type",
    "authentication_protocol",
    "credential_key_id",
    "cross_tenant_access_type",
    "user_type",
    "correlation_id",
    "log_time",
];

const COSMOS_COLUMNS: &[&str] = &[
    "time",
    "account",
    "subscription_id",
    "resource_group",
    "region",
    "operation",
    "status_code",
    "duration_ms",
    "request_charge",
    "request_length",
    "response_length",
    "client_ip",
    "user_agent",
    "principal_id",
    "role_assignment_id",
    "auth_token_type",
    "key_type",
    "connection_mode",
    "database_name",
    "collection_name",
    "request_resource_type",
    "request_resource_id",
    "partition_id",
    "activity_id",
    "resource_token_permission_id",
    "resource_token_permission_mode",
    "resource_token_user_rid",
    "level",
];

/// Rows of `table` (every column named, as text) ordered by `order`.
fn table_rows(db: &TestDb, table: &str, columns: &[&str], order: &str) -> Vec<Vec<(String, String)>> {
    let select: Vec<String> = columns.iter().map(|c| format!("{c}::VARCHAR")).collect();
    let rows = db.rows(&format!("SELECT {} FROM {table} ORDER BY {order}", select.join(", ")));
    rows.into_iter().map(|r| columns.iter().map(|c| c.to_string()).zip(r).collect()).collect()
}

/// Compares a stored row with what is expected of every column, naming the columns
/// that differ.
fn assert_row(actual: &[(String, String)], expected: &[(&str, &str)], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: every column is checked");
    let wrong: Vec<String> = actual
        .iter()
        .zip(expected)
        .filter(|((column, value), (want_column, want))| column != want_column || value != want)
        .map(|((column, value), (_, want))| format!("{column}: stored {value:?}, expected {want:?}"))
        .collect();
    assert!(wrong.is_empty(), "{what}:\n{}", wrong.join("\n"));
}

/// Typed + raw + quarantined rows from `path` equal the records in it.
fn assert_nothing_lost(db: &TestDb, path: &Path, records: i64) {
    let source = path.display().to_string().replace('\'', "''");
    let count = |table: &str| db.value::<i64>(&format!("SELECT count(*) FROM {table} WHERE source = '{source}'"));
    let stored = count("cosmos_requests") + count("signins") + count("raw_events") + count("quarantine");
    assert_eq!(stored, records, "{}: every record is a row, a raw row or a quarantined row", path.display());
}

fn ingest(db: &TestDb, path: &Path) {
    let report = db.ingest(&[path.to_path_buf()]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
}

const V1_SIGNIN: &[(&str, &str)] = &[
    ("time", "2020-03-13 19:15:41.619583+00"),
    ("kind", "user_interactive"),
    ("category", "SignInLogs"),
    ("signin_id", "66ea54eb-6301-4ee5-be62-ff5a759b0100"),
    ("tenant_id", "NULL"),
    ("principal_id", "26be570a-ae82-4189-b4e2-a37c6808512d"),
    ("principal_name", "testaccount1@contoso.com"),
    ("user_display_name", "Test Contoso"),
    ("app_id", "de8bc8b5-d9f9-48b1-a8ad-b748da725064"),
    ("app_display_name", "Graph explorer"),
    ("ip_address", "131.107.159.37"),
    ("country", "US"),
    ("state", "Washington"),
    ("city", "Redmond"),
    ("latitude", "47.68050003051758"),
    ("longitude", "-122.12094116210938"),
    ("autonomous_system_number", "NULL"),
    ("error_code", "0"),
    ("failure_reason", "NULL"),
    ("risk_level", "none"),
    ("risk_level_aggregated", "none"),
    ("risk_state", "none"),
    ("risk_detail", "none"),
    ("risk_event_types", "NULL"),
    ("conditional_access_status", "notApplied"),
    ("is_interactive", "true"),
    ("resource_id", "00000003-0000-0000-c000-000000000000"),
    ("resource_display_name", "Microsoft Graph"),
    ("resource_tenant_id", "NULL"),
    ("home_tenant_id", "NULL"),
    ("authentication_requirement", "NULL"),
    ("client_app_used", "Browser"),
    ("user_agent", "NULL"),
    ("device_os", "Windows 10"),
    ("device_browser", "Edge 80.0.361"),
    ("unique_token_identifier", "NULL"),
    ("incoming_token_type", "NULL"),
    ("authentication_protocol", "NULL"),
    ("credential_key_id", "NULL"),
    ("cross_tenant_access_type", "NULL"),
    ("user_type", "NULL"),
    ("correlation_id", "d79f5bee-5860-4832-928f-3133e22ae912"),
    ("log_time", "NULL"),
];

#[test]
fn a_graph_v1_signin_object_is_an_interactive_sign_in() {
    let db = TestDb::new();
    let path = fixture("graph_signin_v1_get.json");
    ingest(&db, &path);
    let rows = table_rows(&db, "signins", SIGNIN_COLUMNS, "time");
    assert_eq!(rows.len(), 1);
    assert_row(&rows[0], V1_SIGNIN, "Graph v1.0 GET signIn");
    assert_nothing_lost(&db, &path, 1);
}

#[test]
fn a_graph_beta_list_page_with_a_next_link_is_read_item_by_item() {
    let db = TestDb::new();
    let path = fixture("graph_signins_beta_page.json");
    ingest(&db, &path);
    let rows = table_rows(&db, "signins", SIGNIN_COLUMNS, "time");
    assert_eq!(rows.len(), 1);
    let expected: &[(&str, &str)] = &[
        ("time", "2021-06-30 16:34:32+00"),
        ("kind", "user_interactive"),
        ("category", "SignInLogs"),
        ("signin_id", "1691d37b-8579-43a7-966a-0f35583c1300"),
        ("tenant_id", "NULL"),
        ("principal_id", "26be570a-1111-5555-b4e2-a37c6808512d"),
        ("principal_name", "testaccount1@contoso.com"),
        ("user_display_name", "Test contoso"),
        ("app_id", "c44b4083-3bb0-49c1-b47d-974e53cbdf3c"),
        ("app_display_name", "Azure Portal"),
        ("ip_address", "131.107.159.37"),
        ("country", "US"),
        ("state", "Washington"),
        ("city", "Redmond"),
        ("latitude", "NULL"),
        ("longitude", "NULL"),
        ("autonomous_system_number", "3598"),
        ("error_code", "50126"),
        ("failure_reason", "Error validating credentials due to invalid username or password."),
        ("risk_level", "none"),
        ("risk_level_aggregated", "none"),
        ("risk_state", "none"),
        ("risk_detail", "none"),
        ("risk_event_types", "[]"),
        ("conditional_access_status", "notApplied"),
        ("is_interactive", "true"),
        ("resource_id", "797f4846-ba00-4fd7-ba43-dac1f8f63013"),
        ("resource_display_name", "Windows Azure Service Management API"),
        ("resource_tenant_id", "99081087-73c4-48d1-a112-f60ff75114f7"),
        // The published example repeats homeTenantId: the last one counts, as in any JSON reader.
        ("home_tenant_id", "99081087-73c4-48d1-a112-f60ff75114f7"),
        ("authentication_requirement", "singleFactorAuthentication"),
        ("client_app_used", "Browser"),
        (
            "user_agent",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/91.0.4472.114 Safari/537.36 Edg/91.0.864.54",
        ),
        ("device_os", "Windows 10"),
        ("device_browser", "Edge 91.0.864"),
        ("unique_token_identifier", "ZTE0OTk3YTQtZjg5Mi00YjBiLWIwNTEtZmViZTA1YzJhNDli"),
        ("incoming_token_type", "Primary Refresh Token"),
        ("authentication_protocol", "oAuth2"),
        ("credential_key_id", "NULL"),
        ("cross_tenant_access_type", "none"),
        ("user_type", "member"),
        ("correlation_id", "5d295068-919b-4017-85d8-44be2f5f5483"),
        ("log_time", "NULL"),
    ];
    assert_row(&rows[0], expected, "Graph beta list page");
    // The item's own bytes are what is hashed, not the page's.
    let index = db.rows("SELECT record_index::VARCHAR, line::VARCHAR FROM signins");
    assert_eq!(index, [["0", "1"]], "the page is one document from line 1");
    assert_nothing_lost(&db, &path, 1);
}

#[test]
fn graph_beta_objects_of_each_kind_are_stored_as_their_kind() {
    let db = TestDb::new();
    let path = fixture("graph_signins_beta_kinds.ndjson");
    ingest(&db, &path);
    let rows = table_rows(&db, "signins", SIGNIN_COLUMNS, "time");
    assert_eq!(rows.len(), 3);
    let non_interactive: &[(&str, &str)] = &[
        ("time", "2024-05-02 08:00:01.5+00"),
        ("kind", "user_noninteractive"),
        ("category", "NonInteractiveUserSignInLogs"),
        ("signin_id", "0c5f3a10-9d7e-4b8a-8f2d-6a1e0b7c9d01"),
        ("tenant_id", "NULL"),
        ("principal_id", "2d4e6f80-1a2b-4c3d-8e9f-0a1b2c3d4e5f"),
        ("principal_name", "dana@contoso.com"),
        ("user_display_name", "Dana Ruiz"),
        ("app_id", "04b07795-8ddb-461a-bbee-02f9e1bf7b46"),
        ("app_display_name", "Microsoft Azure CLI"),
        ("ip_address", "2001:db8::17"),
        ("country", "PT"),
        ("state", "Lisboa"),
        ("city", "Lisbon"),
        ("latitude", "38.7223"),
        ("longitude", "-9.1393"),
        ("autonomous_system_number", "8075"),
        ("error_code", "0"),
        ("failure_reason", "Other."),
        ("risk_level", "low"),
        ("risk_level_aggregated", "none"),
        ("risk_state", "none"),
        ("risk_detail", "none"),
        ("risk_event_types", "[unfamiliarFeatures]"),
        ("conditional_access_status", "success"),
        ("is_interactive", "false"),
        ("resource_id", "a232010e-820c-4083-83bb-3ace5fc29d0b"),
        ("resource_display_name", "Azure Cosmos DB"),
        ("resource_tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("home_tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("authentication_requirement", "singleFactorAuthentication"),
        ("client_app_used", "Mobile Apps and Desktop clients"),
        ("user_agent", "python-requests/2.31.0"),
        ("device_os", "MacOs"),
        ("device_browser", "Python Requests 2.31.0"),
        ("unique_token_identifier", "bmktdW5pcXVlLXRva2VuLWlk"),
        ("incoming_token_type", "refreshToken"),
        ("authentication_protocol", "none"),
        ("credential_key_id", "NULL"),
        ("cross_tenant_access_type", "none"),
        ("user_type", "member"),
        ("correlation_id", "8c1d2e3f-4a5b-4c6d-9e8f-7a6b5c4d3e2f"),
        ("log_time", "NULL"),
    ];
    assert_row(&rows[0], non_interactive, "Graph beta nonInteractiveUser");
    let service_principal: &[(&str, &str)] = &[
        ("time", "2024-05-02 08:05:00+00"),
        ("kind", "service_principal"),
        ("category", "ServicePrincipalSignInLogs"),
        ("signin_id", "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"),
        ("tenant_id", "NULL"),
        ("principal_id", "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"),
        ("principal_name", "billing-sync"),
        ("user_display_name", "NULL"),
        ("app_id", "3f2e1d0c-b9a8-4765-8432-10fedcba9876"),
        ("app_display_name", "billing-sync"),
        ("ip_address", "198.51.100.20"),
        ("country", "NL"),
        ("state", "Noord-Holland"),
        ("city", "Amsterdam"),
        ("latitude", "52.3676"),
        ("longitude", "4.9041"),
        ("autonomous_system_number", "NULL"),
        ("error_code", "7000215"),
        ("failure_reason", "Invalid client secret provided."),
        ("risk_level", "none"),
        ("risk_level_aggregated", "none"),
        ("risk_state", "none"),
        ("risk_detail", "none"),
        ("risk_event_types", "[]"),
        ("conditional_access_status", "notApplied"),
        ("is_interactive", "false"),
        ("resource_id", "a232010e-820c-4083-83bb-3ace5fc29d0b"),
        ("resource_display_name", "Azure Cosmos DB"),
        ("resource_tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("home_tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("authentication_requirement", "singleFactorAuthentication"),
        ("client_app_used", "NULL"),
        ("user_agent", "NULL"),
        ("device_os", "NULL"),
        ("device_browser", "NULL"),
        ("unique_token_identifier", "c3AtdW5pcXVlLXRva2Vu"),
        ("incoming_token_type", "none"),
        ("authentication_protocol", "none"),
        ("credential_key_id", "c0ffee00-1234-4cde-8f00-abcdefabcdef"),
        ("cross_tenant_access_type", "none"),
        ("user_type", "NULL"),
        ("correlation_id", "11112222-3333-4444-5555-666677778888"),
        ("log_time", "NULL"),
    ];
    assert_row(&rows[1], service_principal, "Graph beta servicePrincipal");
    let managed_identity: &[(&str, &str)] = &[
        ("time", "2024-05-02 08:10:00+00"),
        ("kind", "managed_identity"),
        ("category", "ManagedIdentitySignInLogs"),
        ("signin_id", "7f8e9d0c-1b2a-4c3d-8e4f-5a6b7c8d9e0f"),
        ("tenant_id", "NULL"),
        ("principal_id", "4b3c2d1e-0f9a-4b8c-9d7e-6f5a4b3c2d1e"),
        ("principal_name", "func-orders"),
        ("user_display_name", "NULL"),
        ("app_id", "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d"),
        ("app_display_name", "func-orders"),
        ("ip_address", "NULL"),
        ("country", "NULL"),
        ("state", "NULL"),
        ("city", "NULL"),
        // 0,0 with no place named is "unknown".
        ("latitude", "NULL"),
        ("longitude", "NULL"),
        ("autonomous_system_number", "NULL"),
        ("error_code", "0"),
        ("failure_reason", "NULL"),
        ("risk_level", "none"),
        ("risk_level_aggregated", "none"),
        ("risk_state", "none"),
        ("risk_detail", "none"),
        ("risk_event_types", "[]"),
        ("conditional_access_status", "notApplied"),
        ("is_interactive", "false"),
        ("resource_id", "a232010e-820c-4083-83bb-3ace5fc29d0b"),
        ("resource_display_name", "Azure Cosmos DB"),
        ("resource_tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("home_tenant_id", "NULL"),
        ("authentication_requirement", "NULL"),
        ("client_app_used", "NULL"),
        ("user_agent", "NULL"),
        ("device_os", "NULL"),
        ("device_browser", "NULL"),
        ("unique_token_identifier", "bWktdW5pcXVlLXRva2Vu"),
        ("incoming_token_type", "none"),
        ("authentication_protocol", "none"),
        ("credential_key_id", "NULL"),
        ("cross_tenant_access_type", "NULL"),
        ("user_type", "NULL"),
        ("correlation_id", "99990000-aaaa-4bbb-8ccc-ddddeeeeffff"),
        ("log_time", "NULL"),
    ];
    assert_row(&rows[2], managed_identity, "Graph beta managedIdentity");
    assert_nothing_lost(&db, &path, 3);
}

/// The SigninLogs row of la_signins_az.json (the CSV export holds the same sign-in).
const LA_INTERACTIVE: &[(&str, &str)] = &[
    // CreatedDateTime is the sign-in's time; TimeGenerated its log time, as `time` is.
    ("time", "2024-05-02 09:15:27+00"),
    ("kind", "user_interactive"),
    ("category", "SignInLogs"),
    ("signin_id", "1691d37b-8579-43a7-966a-0f35583c1300"),
    // AADTenantId: TenantId is the workspace's.
    ("tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
    ("principal_id", "26be570a-1111-5555-b4e2-a37c6808512d"),
    ("principal_name", "testaccount1@contoso.com"),
    ("user_display_name", "Test contoso"),
    ("app_id", "c44b4083-3bb0-49c1-b47d-974e53cbdf3c"),
    ("app_display_name", "Azure Portal"),
    ("ip_address", "131.107.159.37"),
    ("country", "US"),
    ("state", "Washington"),
    ("city", "Redmond"),
    ("latitude", "47.68050003051758"),
    ("longitude", "-122.12094116210938"),
    ("autonomous_system_number", "3598"),
    ("error_code", "50126"),
    ("failure_reason", "Error validating credentials due to invalid username or password."),
    ("risk_level", "medium"),
    ("risk_level_aggregated", "low"),
    ("risk_state", "atRisk"),
    ("risk_detail", "none"),
    ("risk_event_types", "[unfamiliarFeatures, anonymizedIPAddress]"),
    ("conditional_access_status", "failure"),
    ("is_interactive", "true"),
    ("resource_id", "797f4846-ba00-4fd7-ba43-dac1f8f63013"),
    ("resource_display_name", "Windows Azure Service Management API"),
    ("resource_tenant_id", "99081087-73c4-48d1-a112-f60ff75114f7"),
    ("home_tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
    ("authentication_requirement", "multiFactorAuthentication"),
    ("client_app_used", "Browser"),
    (
        "user_agent",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/91.0.4472.114 Safari/537.36 Edg/91.0.864.54",
    ),
    ("device_os", "Windows 10"),
    ("device_browser", "Edge 91.0.864"),
    ("unique_token_identifier", "ZTE0OTk3YTQtZjg5Mi00YjBiLWIwNTEtZmViZTA1YzJhNDli"),
    ("incoming_token_type", "none"),
    ("authentication_protocol", "none"),
    ("credential_key_id", "NULL"),
    ("cross_tenant_access_type", "none"),
    ("user_type", "Member"),
    ("correlation_id", "5d295068-919b-4017-85d8-44be2f5f5483"),
    ("log_time", "2024-05-02 09:15:30.123456+00"),
];

/// The four sign-in tables as `az monitor log-analytics query` prints them: every
/// value a string, nested columns as JSON text.
#[test]
fn log_analytics_sign_in_rows_are_stored_as_their_kind() {
    let db = TestDb::new();
    let path = fixture("la_signins_az.json");
    ingest(&db, &path);
    let rows = table_rows(&db, "signins", SIGNIN_COLUMNS, "time");
    assert_eq!(rows.len(), 4);
    let kinds: Vec<&str> = rows.iter().map(|r| r[1].1.as_str()).collect();
    assert_eq!(kinds, ["user_noninteractive", "service_principal", "managed_identity", "user_interactive"]);
    assert_row(&rows[3], LA_INTERACTIVE, "SigninLogs row");
    let non_interactive: &[(&str, &str)] = &[
        ("time", "2024-05-02 08:00:01.5+00"),
        ("kind", "user_noninteractive"),
        ("category", "NonInteractiveUserSignInLogs"),
        ("signin_id", "0c5f3a10-9d7e-4b8a-8f2d-6a1e0b7c9d01"),
        ("tenant_id", "NULL"),
        ("principal_id", "2d4e6f80-1a2b-4c3d-8e9f-0a1b2c3d4e5f"),
        ("principal_name", "dana@contoso.com"),
        ("user_display_name", "Dana Ruiz"),
        ("app_id", "04b07795-8ddb-461a-bbee-02f9e1bf7b46"),
        ("app_display_name", "Microsoft Azure CLI"),
        ("ip_address", "2001:db8::17"),
        ("country", "PT"),
        ("state", "Lisboa"),
        ("city", "Lisbon"),
        ("latitude", "38.7223"),
        ("longitude", "-9.1393"),
        ("autonomous_system_number", "8075"),
        ("error_code", "0"),
        ("failure_reason", "Other."),
        ("risk_level", "none"),
        ("risk_level_aggregated", "none"),
        ("risk_state", "none"),
        ("risk_detail", "none"),
        ("risk_event_types", "[]"),
        ("conditional_access_status", "success"),
        ("is_interactive", "false"),
        ("resource_id", "a232010e-820c-4083-83bb-3ace5fc29d0b"),
        ("resource_display_name", "Azure Cosmos DB"),
        ("resource_tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("home_tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("authentication_requirement", "singleFactorAuthentication"),
        ("client_app_used", "Mobile Apps and Desktop clients"),
        ("user_agent", "python-requests/2.31.0"),
        ("device_os", "MacOs"),
        ("device_browser", "Python Requests 2.31.0"),
        ("unique_token_identifier", "bmktdW5pcXVlLXRva2VuLWlk"),
        ("incoming_token_type", "refreshToken"),
        ("authentication_protocol", "none"),
        ("credential_key_id", "NULL"),
        ("cross_tenant_access_type", "none"),
        ("user_type", "Member"),
        ("correlation_id", "8c1d2e3f-4a5b-4c6d-9e8f-7a6b5c4d3e2f"),
        ("log_time", "2024-05-02 08:00:09+00"),
    ];
    assert_row(&rows[0], non_interactive, "AADNonInteractiveUserSignInLogs row");
    let service_principal: &[(&str, &str)] = &[
        // No CreatedDateTime in this table: TimeGenerated is the time.
        ("time", "2024-05-02 08:05:00+00"),
        ("kind", "service_principal"),
        ("category", "ServicePrincipalSignInLogs"),
        ("signin_id", "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"),
        ("tenant_id", "NULL"),
        ("principal_id", "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"),
        ("principal_name", "billing-sync"),
        ("user_display_name", "NULL"),
        ("app_id", "3f2e1d0c-b9a8-4765-8432-10fedcba9876"),
        ("app_display_name", "NULL"),
        ("ip_address", "198.51.100.20"),
        ("country", "NL"),
        ("state", "Noord-Holland"),
        ("city", "Amsterdam"),
        ("latitude", "52.3676"),
        ("longitude", "4.9041"),
        ("autonomous_system_number", "NULL"),
        // No Status column: ResultType and ResultDescription.
        ("error_code", "7000215"),
        ("failure_reason", "Invalid client secret provided."),
        ("risk_level", "NULL"),
        ("risk_level_aggregated", "NULL"),
        ("risk_state", "NULL"),
        ("risk_detail", "NULL"),
        ("risk_event_types", "NULL"),
        ("conditional_access_status", "notApplied"),
        ("is_interactive", "false"),
        // ResourceIdentity: this table has no ResourceId.
        ("resource_id", "a232010e-820c-4083-83bb-3ace5fc29d0b"),
        ("resource_display_name", "Azure Cosmos DB"),
        ("resource_tenant_id", "NULL"),
        ("home_tenant_id", "NULL"),
        ("authentication_requirement", "NULL"),
        ("client_app_used", "NULL"),
        ("user_agent", "NULL"),
        ("device_os", "NULL"),
        ("device_browser", "NULL"),
        ("unique_token_identifier", "c3AtdW5pcXVlLXRva2Vu"),
        ("incoming_token_type", "NULL"),
        ("authentication_protocol", "NULL"),
        ("credential_key_id", "c0ffee00-1234-4cde-8f00-abcdefabcdef"),
        ("cross_tenant_access_type", "NULL"),
        ("user_type", "NULL"),
        ("correlation_id", "11112222-3333-4444-5555-666677778888"),
        ("log_time", "2024-05-02 08:05:00+00"),
    ];
    assert_row(&rows[1], service_principal, "AADServicePrincipalSignInLogs row");
    let managed_identity: &[(&str, &str)] = &[
        ("time", "2024-05-02 08:10:00+00"),
        ("kind", "managed_identity"),
        ("category", "ManagedIdentitySignInLogs"),
        ("signin_id", "7f8e9d0c-1b2a-4c3d-8e4f-5a6b7c8d9e0f"),
        ("tenant_id", "NULL"),
        ("principal_id", "4b3c2d1e-0f9a-4b8c-9d7e-6f5a4b3c2d1e"),
        ("principal_name", "func-orders"),
        ("user_display_name", "NULL"),
        ("app_id", "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d"),
        ("app_display_name", "NULL"),
        ("ip_address", "NULL"),
        ("country", "NULL"),
        ("state", "NULL"),
        ("city", "NULL"),
        ("latitude", "NULL"),
        ("longitude", "NULL"),
        ("autonomous_system_number", "NULL"),
        ("error_code", "0"),
        ("failure_reason", "NULL"),
        ("risk_level", "NULL"),
        ("risk_level_aggregated", "NULL"),
        ("risk_state", "NULL"),
        ("risk_detail", "NULL"),
        ("risk_event_types", "NULL"),
        ("conditional_access_status", "notApplied"),
        ("is_interactive", "false"),
        ("resource_id", "a232010e-820c-4083-83bb-3ace5fc29d0b"),
        ("resource_display_name", "Azure Cosmos DB"),
        ("resource_tenant_id", "NULL"),
        ("home_tenant_id", "NULL"),
        ("authentication_requirement", "NULL"),
        ("client_app_used", "NULL"),
        ("user_agent", "NULL"),
        ("device_os", "NULL"),
        ("device_browser", "NULL"),
        ("unique_token_identifier", "bWktdW5pcXVlLXRva2Vu"),
        ("incoming_token_type", "NULL"),
        ("authentication_protocol", "NULL"),
        ("credential_key_id", "NULL"),
        ("cross_tenant_access_type", "NULL"),
        ("user_type", "NULL"),
        ("correlation_id", "99990000-aaaa-4bbb-8ccc-ddddeeeeffff"),
        ("log_time", "2024-05-02 08:10:00+00"),
    ];
    assert_row(&rows[2], managed_identity, "AADManagedIdentitySignInLogs row");
    assert_nothing_lost(&db, &path, 4);
}

const CDB_ROW: &[(&str, &str)] = &[
    ("time", "2024-05-02 10:00:00.5+00"),
    ("account", "orders-prod"),
    ("subscription_id", "0b1f6471-1bf0-4dda-aec3-111122223333"),
    ("resource_group", "rg-orders"),
    ("region", "West Europe"),
    ("operation", "Create"),
    ("status_code", "201"),
    ("duration_ms", "5.21"),
    ("request_charge", "7.62"),
    ("request_length", "512"),
    ("response_length", "1024"),
    ("client_ip", "203.0.113.9"),
    ("user_agent", "azsdk-python-cosmos/4.5.1 Python/3.11.4 (Linux-5.15)"),
    ("principal_id", "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"),
    ("role_assignment_id", "00000000-0000-0000-0000-000000000002"),
    ("auth_token_type", "AadToken"),
    ("key_type", "None"),
    ("connection_mode", "Gateway"),
    ("database_name", "orders"),
    ("collection_name", "lines"),
    ("request_resource_type", "Document"),
    ("request_resource_id", "/dbs/orders/colls/lines/docs"),
    ("partition_id", "a6bd1c2e-3f40-4a5b-8c6d-7e8f9a0b1c2d"),
    ("activity_id", "c1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8"),
    ("resource_token_permission_id", "NULL"),
    ("resource_token_permission_mode", "NULL"),
    ("resource_token_user_rid", "NULL"),
    ("level", "NULL"),
];

/// `CDBDataPlaneRequests` and `AzureDiagnostics` (category DataPlaneRequests, columns
/// suffixed `_s`, `_g`) become the same rows; another AzureDiagnostics category is kept whole.
#[test]
fn log_analytics_cosmos_rows_are_requests() {
    let db = TestDb::new();
    let path = fixture("la_cosmos_az.json");
    ingest(&db, &path);
    let rows = table_rows(&db, "cosmos_requests", COSMOS_COLUMNS, "time");
    assert_eq!(rows.len(), 2);
    assert_row(&rows[0], CDB_ROW, "CDBDataPlaneRequests row");
    let diagnostics: &[(&str, &str)] = &[
        ("time", "2024-05-02 10:01:00+00"),
        ("account", "orders-prod"),
        ("subscription_id", "0b1f6471-1bf0-4dda-aec3-111122223333"),
        ("resource_group", "RG-ORDERS"),
        ("region", "West Europe"),
        ("operation", "Query"),
        ("status_code", "200"),
        ("duration_ms", "4.21"),
        ("request_charge", "2.89"),
        ("request_length", "112"),
        ("response_length", "1840"),
        ("client_ip", "203.0.113.10"),
        ("user_agent", "Microsoft.Azure.Documents.Common/2.14.0"),
        ("principal_id", "4b3c2d1e-0f9a-4b8c-9d7e-6f5a4b3c2d1e"),
        ("role_assignment_id", "00000000-0000-0000-0000-000000000001"),
        ("auth_token_type", "AadToken"),
        ("key_type", "None"),
        ("connection_mode", "Gateway"),
        ("database_name", "orders"),
        ("collection_name", "lines"),
        // Not the table's ResourceType ("DATABASEACCOUNTS").
        ("request_resource_type", "Document"),
        ("request_resource_id", "/dbs/orders/colls/lines/docs"),
        ("partition_id", "a6bd1c2e-3f40-4a5b-8c6d-7e8f9a0b1c2d"),
        ("activity_id", "d2b3c4d5-e6f7-4081-92a3-b4c5d6e7f809"),
        ("resource_token_permission_id", "NULL"),
        ("resource_token_permission_mode", "NULL"),
        ("resource_token_user_rid", "NULL"),
        ("level", "NULL"),
    ];
    assert_row(&rows[1], diagnostics, "AzureDiagnostics row");
    assert_eq!(
        db.rows("SELECT category, time::VARCHAR, record_index::VARCHAR FROM raw_events"),
        [["QueryRuntimeStatistics", "2024-05-02 10:02:00+00", "2"]]
    );
    assert_nothing_lost(&db, &path, 3);
}

/// The portal's "Export to CSV": a BOM, `TimeGenerated [UTC]`, US times with a comma,
/// CRLF, nested values as quoted JSON text, a line break inside a quoted field. A row
/// cut short is quarantined with its bytes and line; the others are stored.
#[test]
fn a_portal_csv_of_sign_ins_is_read_row_by_row() {
    let db = TestDb::new();
    let path = fixture("la_signinlogs_portal.csv");
    ingest(&db, &path);
    let rows = table_rows(&db, "signins", SIGNIN_COLUMNS, "time");
    assert_eq!(rows.len(), 2);
    // The same sign-in as the JSON row, its log time to the millisecond the portal shows.
    let interactive: Vec<(&str, &str)> = LA_INTERACTIVE
        .iter()
        .map(|&(c, v)| if c == "log_time" { (c, "2024-05-02 09:15:30.123+00") } else { (c, v) })
        .collect();
    assert_row(&rows[1], &interactive, "SigninLogs CSV row");
    assert_eq!(rows[0][1].1, "user_noninteractive");
    assert_eq!(rows[0][3].1, "0c5f3a10-9d7e-4b8a-8f2d-6a1e0b7c9d01");
    let lines = db.rows("SELECT line::VARCHAR, kind FROM signins ORDER BY line");
    assert_eq!(lines, [["2", "user_interactive"], ["4", "user_noninteractive"]], "line 2's record spans two lines");
    let quarantined = db.rows("SELECT line::VARCHAR, reason, decode(raw) FROM quarantine");
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0][0], "5");
    assert!(quarantined[0][1].contains("6 fields where the header has"), "{:?}", quarantined[0][1]);
    assert_eq!(quarantined[0][2], "a,row,that,is,cut,short");
    assert_nothing_lost(&db, &path, 3);
}

#[test]
fn a_portal_csv_of_cosmos_requests_is_read_row_by_row() {
    let db = TestDb::new();
    let path = fixture("la_cdbdataplanerequests_portal.csv");
    ingest(&db, &path);
    let rows = table_rows(&db, "cosmos_requests", COSMOS_COLUMNS, "activity_id");
    assert_eq!(rows.len(), 2);
    assert_row(&rows[0], CDB_ROW, "CDBDataPlaneRequests CSV row");
    let key_read: Vec<(&str, &str)> = CDB_ROW
        .iter()
        .map(|&(c, v)| match c {
            "operation" => (c, "Read"),
            "status_code" => (c, "404"),
            "activity_id" => (c, "e3c4d5e6-f7a8-4192-a3b4-c5d6e7f80912"),
            "principal_id" | "role_assignment_id" => (c, "NULL"),
            "auth_token_type" | "key_type" => (c, "PrimaryMasterKey"),
            "request_charge" => (c, "1.0"),
            "client_ip" => (c, "10.0.0.4"),
            _ => (c, v),
        })
        .collect();
    assert_row(&rows[1], &key_read, "CDBDataPlaneRequests CSV row, key auth");
    assert_eq!(db.rows("SELECT line::VARCHAR FROM cosmos_requests ORDER BY line"), [["2"], ["3"]]);
    assert_nothing_lost(&db, &path, 2);
}

/// A CSV that is no Log Analytics table TokenTrail reads goes whole to quarantine,
/// its header first, each record with why.
#[test]
fn a_csv_of_no_known_table_is_quarantined_whole_with_why() {
    let db = TestDb::new();
    let path = fixture("not_a_table.csv");
    ingest(&db, &path);
    let rows = db.rows("SELECT line::VARCHAR, decode(raw), reason FROM quarantine ORDER BY line");
    let raws: Vec<(&str, &str)> = rows.iter().map(|r| (r[0].as_str(), r[1].as_str())).collect();
    assert_eq!(raws, [("1", "name,left_at"), ("2", "Ada Lovelace,2024-04-30"), ("3", "\"Grace, Hopper\",2024-05-01")]);
    for row in &rows {
        assert!(row[2].starts_with("CSV header is not a Log Analytics export"), "{}", row[2]);
        assert!(row[2].contains("columns: name, left_at"), "{}", row[2]);
    }
    assert_nothing_lost(&db, &path, 3);
}

/// A CSV appended to resumes after its checkpoint, reading the header again; an
/// unchanged one adds nothing.
#[test]
fn an_appended_csv_resumes_with_its_header() {
    let db = TestDb::new();
    let content = std::fs::read(fixture("la_cdbdataplanerequests_portal.csv")).unwrap();
    let text = String::from_utf8(content).unwrap();
    let mut lines: Vec<&str> = text.split_inclusive("\r\n").collect();
    let last = lines.pop().unwrap();
    let path = db.file("export.csv", lines.concat());
    ingest(&db, &path);
    assert_eq!(db.count("cosmos_requests"), 1);
    ingest(&db, &path);
    assert_eq!(db.count("cosmos_requests"), 1, "nothing new");
    std::fs::write(&path, text.as_bytes()).unwrap();
    ingest(&db, &path);
    assert_eq!(
        db.rows("SELECT line::VARCHAR, operation FROM cosmos_requests ORDER BY line"),
        [["2", "Create"], ["3", "Read"]]
    );
    assert!(last.starts_with("b1e7a0c2"));
    assert_eq!(db.count("quarantine"), 0);
}

/// The 2017 documentation's record: `resourceType`, the account's bare name as
/// `resourceId`, an RFC 1123 time.
#[test]
fn older_cosmos_field_names_fill_their_columns() {
    let db = TestDb::new();
    let path = fixture("cosmos_2017_docs.json");
    ingest(&db, &path);
    let rows = table_rows(&db, "cosmos_requests", COSMOS_COLUMNS, "time");
    assert_eq!(rows.len(), 1);
    let expected: &[(&str, &str)] = &[
        ("time", "2017-06-23 19:29:50.266+00"),
        ("account", "contosocosmosdb"),
        ("subscription_id", "NULL"),
        ("resource_group", "NULL"),
        ("region", "NULL"),
        ("operation", "Query"),
        ("status_code", "200"),
        ("duration_ms", "9250.0"),
        ("request_charge", "2.26"),
        ("request_length", "72"),
        ("response_length", "209"),
        ("client_ip", "13.92.241.0"),
        (
            "user_agent",
            "documentdb-dotnet-sdk/1.12.0 Host/64-bit MicrosoftWindowsNT/6.2.9200.0 AzureSearchIndexer/1.0.0",
        ),
        ("principal_id", "NULL"),
        ("role_assignment_id", "NULL"),
        ("auth_token_type", "NULL"),
        ("key_type", "NULL"),
        ("connection_mode", "NULL"),
        ("database_name", "NULL"),
        ("collection_name", "NULL"),
        ("request_resource_type", "Database"),
        ("request_resource_id", "NULL"),
        ("partition_id", "NULL"),
        ("activity_id", "05fcf607-6f64-48fe-81a5-f13ac13dd1eb"),
        ("resource_token_permission_id", "NULL"),
        ("resource_token_permission_mode", "NULL"),
        ("resource_token_user_rid", "NULL"),
        ("level", "NULL"),
    ];
    assert_row(&rows[0], expected, "2017 Cosmos DB record");
    assert_nothing_lost(&db, &path, 1);
}

/// `/SUBSCRIPTIONS//RESOURCEGROUPS/rg/...`: no subscription (not "resourcegroups"),
/// and the group and account still found by position.
#[test]
fn an_empty_subscription_segment_is_null() {
    let db = TestDb::new();
    let record = r#"{"time":"2024-07-30T17:08:01Z","resourceId":"/SUBSCRIPTIONS//RESOURCEGROUPS/RG-A/PROVIDERS/MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/ACME","category":"DataPlaneRequests","operationName":"Read","properties":{"statusCode":"200"}}"#;
    let empty_group = record.replace("/SUBSCRIPTIONS//RESOURCEGROUPS/RG-A/", "/SUBSCRIPTIONS/S1/RESOURCEGROUPS//");
    db.ingest(&[db.file("empty.ndjson", format!("{record}\n{empty_group}\n"))]);
    assert_eq!(
        db.rows("SELECT coalesce(subscription_id, 'NULL'), coalesce(resource_group, 'NULL'), account FROM cosmos_requests ORDER BY line"),
        [["NULL", "RG-A", "acme"], ["S1", "NULL", "acme"]]
    );
    let arm = tokentrail::record::ArmPath::parse("/SUBSCRIPTIONS//RESOURCEGROUPS/rg/PROVIDERS/X/DATABASEACCOUNTS/");
    assert_eq!((arm.subscription, arm.resource_group, arm.account), (None, Some("rg"), None));
}

/// Only GUIDs are lower-cased (`record::object_id`, the rule for stored object ids).
#[test]
fn only_guids_are_lower_cased() {
    use tokentrail::record::object_id;
    assert_eq!(object_id("AAAA0000-0000-0000-0000-00000000000A"), "aaaa0000-0000-0000-0000-00000000000a");
    assert_eq!(object_id(" 2d4e6f80-1a2b-4c3d-8e9f-0a1b2c3d4e5f "), "2d4e6f80-1a2b-4c3d-8e9f-0a1b2c3d4e5f");
    assert_eq!(object_id("ParseMe"), "ParseMe");
    assert_eq!(object_id("<USER ID>"), "<USER ID>");
    assert_eq!(object_id("AAAA0000-0000-0000-0000-00000000000AX"), "AAAA0000-0000-0000-0000-00000000000AX");
}

/// Stored rows keep the case of ids that are not GUIDs; GUIDs are lower-cased.
#[test]
fn non_guid_ids_keep_their_case_in_stored_rows() {
    let db = TestDb::new();
    let signin = r#"{"time":"2024-01-01T00:00:00Z","category":"ServicePrincipalSignInLogs","properties":{"id":"s1","servicePrincipalId":"ParseMe","userId":"<USER ID>","appId":"AAAA0000-0000-0000-0000-00000000000A"}}"#;
    db.ingest(&[db.file("ids.ndjson", signin)]);
    assert_eq!(
        db.rows("SELECT principal_id, app_id FROM signins"),
        [["ParseMe", "aaaa0000-0000-0000-0000-00000000000a"]]
    );
}

/// A CSV export not named `.csv` is recognised by its header.
#[test]
fn a_csv_export_is_recognised_by_its_header() {
    let db = TestDb::new();
    let content = std::fs::read(fixture("la_cdbdataplanerequests_portal.csv")).unwrap();
    let path = db.file("export-2024-05-02.txt", content);
    ingest(&db, &path);
    assert_eq!(db.count("cosmos_requests"), 2);
    assert_nothing_lost(&db, &path, 2);
}
