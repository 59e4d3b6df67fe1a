//! Every published sample (copies of shared/samples/public in tests/fixtures/samples) parses to the right values.

use crate::common;
use common::{TestDb, samples_dir};

fn ingested_samples() -> TestDb {
    let db = TestDb::new();
    let report = db.ingest(&[samples_dir()]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.files, 6);
    db
}

const COSMOS_COLUMNS: &str = "time::VARCHAR, account, subscription_id, resource_group, region, operation, \
    status_code::VARCHAR, duration_ms::VARCHAR, request_charge::VARCHAR, request_length::VARCHAR, \
    response_length::VARCHAR, client_ip, user_agent, principal_id, role_assignment_id, auth_token_type, key_type, \
    connection_mode, database_name, collection_name, request_resource_type, request_resource_id, partition_id, \
    activity_id";

#[test]
fn cosmos_samples_have_their_values() {
    let db = ingested_samples();
    let rows = db.rows(&format!("SELECT {COSMOS_COLUMNS} FROM cosmos_requests ORDER BY time"));
    let expected = [
        vec![
            "2019-04-23 23:12:52.381484+00",
            "<your_database_account>",
            "<your_subscription_ID>", // no GUID: kept as published
            "<your_resource_group>",
            "East US",
            "ReadFeed",
            "200",
            "0.0",
            "1.0",
            "0",
            "372",
            "10.0.0.24",
            "Microsoft.Azure.Documents.Common/2.2.0.0",
            "NULL",
            "NULL",
            "NULL",
            "PrimaryReadOnlyMasterKey",
            "NULL",
            "NULL",
            "NULL",
            "Database",
            "NULL",
            "062abe3e-de63-4aa5-b9de-4a77119c59f8",
            "66a0c647-af38-4b8d-a92a-c48a805d6460",
        ],
        vec![
            "2024-07-30 17:08:01.368894+00",
            "masked-cosmos-db",
            "00000000-0000-0000-0000-000000000000",
            "MASKED-RG",
            "East US",
            "Create",
            "200",
            "0.5837",
            "0.0",
            "803",
            "1163",
            "0.0.0.0",
            "cosmos-netstandard-sdk/3.9.1|3.9.0|01|X86|Microsoft Windows 10.0.20348|.NET Core 3.1.32|",
            "NULL",
            "NULL",
            "PrimaryMasterKey",
            "PrimaryMasterKey",
            "Gateway",
            "cdb-main01-prod",
            "Notifications",
            "Document",
            "/dbs/cdb-main01-prod/colls/Notifications/docs",
            "NULL",
            "8e78e651-e6da-4f09-b8bf-c5d605ae8161",
        ],
    ];
    assert_eq!(rows, expected);
}

const SIGNIN_COLUMNS: &str = "time::VARCHAR, kind, category, signin_id, tenant_id, principal_id, principal_name, \
    app_id, app_display_name, ip_address, country, state, city, latitude::VARCHAR, longitude::VARCHAR, \
    autonomous_system_number::VARCHAR, error_code::VARCHAR, failure_reason, risk_level, risk_level_aggregated, \
    conditional_access_status, is_interactive::VARCHAR, resource_display_name, credential_key_id, \
    device_browser, log_time::VARCHAR";

fn signin(db: &TestDb, kind: &str) -> Vec<Vec<String>> {
    db.rows(&format!("SELECT {SIGNIN_COLUMNS} FROM signins WHERE kind = '{kind}' ORDER BY time"))
}

#[test]
fn interactive_user_signin() {
    let db = ingested_samples();
    assert_eq!(
        signin(&db, "user_interactive"),
        [[
            "2019-10-18 09:45:48.072989+00", // -05:00 offset applied
            "user_interactive",
            "SignInLogs",
            "8a4de8b5-095c-47d0-a96f-a75130c61d53",
            "8a4de8b5-095c-47d0-a96f-a75130c61d53",
            "8a4de8b5-095c-47d0-a96f-a75130c61d53",
            "test@elastic.co",
            "8a4de8b5-095c-47d0-a96f-a75130c61d53",
            "Office 365",
            "81.2.69.144",
            "FR",
            "Seine-Et-Marne",
            "Champs-Sur-Marne",
            "48.12341234",
            "2.12341234",
            "NULL",
            "50140",
            "This error occurred due to 'Keep me signed in' interrupt when the user was signing-in.",
            "none",
            "none",
            "notApplied",
            "false", // as logged, though the category is the interactive log
            "NULL",
            "NULL",
            "Chrome 77.0.3865",
            "2019-10-18 09:45:48.072989+00",
        ]]
    );
}

#[test]
fn non_interactive_user_signin() {
    let db = ingested_samples();
    assert_eq!(
        signin(&db, "user_noninteractive"),
        [[
            "2022-01-24 05:10:14.18756+00",
            "user_noninteractive",
            "NonInteractiveUserSignInLogs",
            "290faffa-477b-4b28-ae92-579daae7b000",
            "4bbb79f7-5724-4c9e-95f3-de075f6ec090",
            "2ce85a15-8640-465d-b916-d2eac620a717",
            "mpliftrelastic20210901@outlook.com",
            "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
            "Azure Portal",
            "1.128.3.4",
            "IN",
            "Telangana",
            "Nizampet",
            "17.5164794921875",
            "78.37663269042969",
            "55836",
            "0",
            "NULL",
            "none",
            "none",
            "notApplied",
            "false",
            "Windows Azure Service Management API",
            "NULL",
            "Rich Client 4.40.0.0",
            "2022-01-24 05:10:14.18756+00",
        ]]
    );
}

#[test]
fn service_principal_signins_including_us_time_format() {
    let db = ingested_samples();
    let rows = signin(&db, "service_principal");
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        [
            "2022-02-08 06:22:28.35184+00",
            "service_principal",
            "ServicePrincipalSignInLogs",
            "d5935dca-86f2-4ac9-a42c-3593b00af801",
            "4bbb79f7-5724-4c9e-95f3-de075f6ec090",
            "b029d485-a308-4311-8720-fb3192e5284e", // servicePrincipalId, never appId
            "Terraform-Datadog-CLI",
            "6131d760-7fda-4db5-8bb1-b771898e9f15",
            "NULL",
            "1.128.3.4",
            "IN",
            "Telangana",
            "Hyderabad",
            "17.385000228881836",
            "78.48670196533203",
            "NULL",
            "0",
            "NULL",
            "low",
            "low",
            "notApplied",
            "false",
            "Windows Azure Service Management API",
            "dbcd79c0-c3ea-46b9-9604-ff40d43b8618",
            "NULL",
            "2022-02-08 06:22:28.35184+00",
        ]
    );
    assert_eq!(
        rows[1],
        [
            "2025-11-14 01:46:16.428297+00", // createdDateTime, the sign-in itself
            "service_principal",
            "ServicePrincipalSignInLogs",
            "66666666-6666-6666-6666-666666666666",
            "33333333-3333-3333-3333-333333333333",
            "99999999-9999-9999-9999-999999999999",
            "Placeholder Application Name", // no servicePrincipalName: the app's name
            "22222222-2222-2222-2222-222222222222",
            "Placeholder Application Name",
            "0.0.0.0",
            "AU", // only the top-level location
            "NULL",
            "NULL",
            "NULL",
            "NULL",
            "7545",
            "0",
            "NULL",
            "none",
            "NULL",
            "notApplied",
            "false",
            "MDATPNetworkScanAgent",
            "NULL",
            "NULL",
            "2025-11-14 01:48:53+00", // "11/14/2025 1:48:53 AM"
        ]
    );
}

#[test]
fn managed_identity_signin_without_ip() {
    let db = ingested_samples();
    assert_eq!(
        signin(&db, "managed_identity"),
        [[
            "2022-01-24 04:59:49.227983+00",
            "managed_identity",
            "ManagedIdentitySignInLogs",
            "a08869a8-3b15-46e4-8de3-273849e60100",
            "4bbb79f7-5724-4c9e-95f3-de075f6ec090",
            "9d370547-cb61-4753-be23-68534909af90",
            "testplatformlogslube",
            "b3b975ac-995b-426e-8b5d-363a165df41c",
            "NULL",
            "NULL", // ipAddress "" and no callerIpAddress
            "NULL",
            "NULL",
            "NULL",
            "NULL", // 0,0 with no place is unknown
            "NULL",
            "NULL",
            "0",
            "NULL",
            "low",
            "low",
            "notApplied",
            "false",
            "Windows Azure Service Management API",
            "NULL",
            "NULL",
            "2022-01-24 04:59:49.227983+00",
        ]]
    );
}

#[test]
fn nothing_else_is_stored_and_levels_are_names() {
    let db = ingested_samples();
    assert_eq!(db.count("cosmos_requests"), 2);
    assert_eq!(db.count("signins"), 5);
    assert_eq!(db.count("raw_events"), 0);
    assert_eq!(db.count("quarantine"), 0);
    let levels = db.rows("SELECT DISTINCT level FROM cosmos_requests");
    assert_eq!(levels, [["NULL"]]);
}
