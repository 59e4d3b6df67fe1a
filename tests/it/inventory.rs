//! The inventory against a real HTTP server on loopback that answers as Azure Resource
//! Manager does (`tests/armstub`): pages followed, throttling waited out, a denied
//! subscription reported while the others are stored, a `nextLink` to another host
//! refused, history over snapshots, and "who could read container X on day D" answered
//! from it. `--from-file` runs the real binary on `az` output.
//!
//! The one fake: the bearer token is a fixed string handed to the client (there is no
//! Entra ID here); the stub checks every request bears it.

use crate::common::TestDb;
use futures::future::BoxFuture;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokentrail::auth::Role;
use tokentrail::http::api::console;
use tokentrail::inventory::arm::{self, ArmClient, RetryPolicy, TokenSource};
use tokentrail::inventory::{Snapshot, history};
use tokentrail_armstub::{ArmStub, Tenant};

const TOKEN: &str = "test-token-not-a-secret";
const S1: &str = "11111111-1111-4111-8111-111111111111";
const S2: &str = "22222222-2222-4222-8222-222222222222";
const READER: &str = "00000000-0000-0000-0000-000000000001";
const CONTRIBUTOR: &str = "00000000-0000-0000-0000-000000000002";
const WRITER: &str = "7c1b2f4e-93a0-4d3e-8b5a-6f2c9d1e0a34";
const ITEMS_READ: &str = "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/read";

/// The fixed token (see the module doc: the one fake).
struct FixedToken;

impl TokenSource for FixedToken {
    fn token(&self) -> BoxFuture<'_, anyhow::Result<String>> {
        Box::pin(async { Ok(TOKEN.to_owned()) })
    }
}

fn client(stub: &ArmStub, retry: RetryPolicy) -> ArmClient {
    ArmClient::new(&stub.url(), Arc::new(FixedToken), retry).unwrap()
}

fn quick() -> RetryPolicy {
    RetryPolicy { tries: 4, max_wait: Duration::from_secs(2), default_wait: Duration::from_millis(10) }
}

fn collect(client: &ArmClient, subscriptions: &[&str]) -> Snapshot {
    let subscriptions: Vec<String> = subscriptions.iter().map(|s| s.to_string()).collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(arm::collect(client, &subscriptions)).unwrap()
}

fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&chrono::Utc)
}

/// Two subscriptions: S1 with the `orders` account (the built-in roles, a write-only custom
/// role, five assignments: more than two pages) and a Contributor group on the subscription;
/// S2 with the `telemetry` account and one assignment.
struct World {
    tenant: Tenant,
    orders: String,
    alice: String,
    bob: String,
    carol: String,
    dave: String,
    frank: String,
    telemetry_one: String,
}

fn world() -> World {
    let mut t = Tenant::default();
    t.subscription(S1).subscription(S2);
    let orders = t.account(S1, "RG-Orders", "Orders", false);
    t.builtin_roles(&orders);
    t.role_definition(
        &orders,
        WRITER,
        "Orders Ingest Writer",
        false,
        &["Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/create"],
    );
    let alice = t.role_assignment(
        &orders,
        "a0000000-0000-4000-8000-000000000001",
        "A11CE000-0000-4000-8000-000000000001",
        READER,
        "/dbs/shop/colls/invoices",
    );
    let bob = t.role_assignment(
        &orders,
        "a0000000-0000-4000-8000-000000000002",
        "b0b00000-0000-4000-8000-000000000002",
        CONTRIBUTOR,
        "",
    );
    let carol = t.role_assignment(
        &orders,
        "a0000000-0000-4000-8000-000000000003",
        "ca201000-0000-4000-8000-000000000003",
        WRITER,
        "/dbs/shop",
    );
    let dave = t.role_assignment(
        &orders,
        "a0000000-0000-4000-8000-000000000004",
        "da7e0000-0000-4000-8000-000000000004",
        READER,
        "/dbs/shop/colls/carts",
    );
    let frank = t.role_assignment(
        &orders,
        "a0000000-0000-4000-8000-000000000005",
        "f2a4c000-0000-4000-8000-000000000005",
        READER,
        "/dbs/other",
    );
    t.azure_role_assignment(
        &format!("/subscriptions/{S1}"),
        "c0000000-0000-4000-8000-000000000001",
        "9a0c0000-0000-4000-8000-000000000009",
        "Group",
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
    );
    // A resource group holding no account: not kept.
    t.azure_role_assignment(
        &format!("/subscriptions/{S1}/resourceGroups/rg-web"),
        "c0000000-0000-4000-8000-000000000002",
        "9a0c0000-0000-4000-8000-00000000000a",
        "User",
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
    );
    let telemetry = t.account(S2, "rg-telemetry", "telemetry", true);
    t.builtin_roles(&telemetry);
    let telemetry_one = t.role_assignment(
        &telemetry,
        "b0000000-0000-4000-8000-000000000001",
        "e1000000-0000-4000-8000-000000000001",
        READER,
        "",
    );
    World { tenant: t, orders, alice, bob, carol, dave, frank, telemetry_one }
}

#[test]
fn every_page_is_read_and_every_request_bears_the_token() {
    let w = world();
    let stub = ArmStub::start(w.tenant, TOKEN);
    let snapshot = collect(&client(&stub, quick()), &[]);
    assert_eq!((snapshot.ok, snapshot.failed), (2, 0), "{:?}", snapshot.problems);
    assert_eq!(snapshot.accounts.len(), 2);
    assert_eq!(snapshot.assignments.len(), 6, "five on orders (three pages of two) and one on telemetry");
    assert_eq!(snapshot.definitions.len(), 5);
    assert_eq!(
        snapshot.azure_assignments.len(),
        1,
        "the subscription's, not rg-web's: {:?}",
        snapshot.azure_assignments
    );
    let seen = stub.seen();
    let pages = seen
        .iter()
        .filter(|s| s.path_and_query.contains("sqlRoleAssignments") && s.path_and_query.contains("$skiptoken="))
        .count();
    assert_eq!(pages, 2, "the second and third pages of orders' assignments: {seen:?}");
    assert!(seen.iter().all(|s| s.status == 200), "{seen:?}");
    // Ids and principals are stored lower case.
    let alice = snapshot.assignments.iter().find(|a| a.assignment_id == w.alice.to_ascii_lowercase()).unwrap();
    assert_eq!(alice.principal_id, "a11ce000-0000-4000-8000-000000000001");
    assert_eq!(alice.role_definition_id, READER);
    assert!(alice.scope.ends_with("/databaseaccounts/orders/dbs/shop/colls/invoices"), "{}", alice.scope);
    let wrong = ArmClient::new(&stub.url(), Arc::new(WrongToken), quick()).unwrap();
    let denied = collect(&wrong, &[S1]);
    assert_eq!(denied.failed, 1);
    assert_eq!(denied.problems[0].status, Some(401), "the stub refuses a request without the token");
}

struct WrongToken;

impl TokenSource for WrongToken {
    fn token(&self) -> BoxFuture<'_, anyhow::Result<String>> {
        Box::pin(async { Ok("someone-else".to_owned()) })
    }
}

#[test]
fn throttling_is_waited_out_as_retry_after_says_and_given_up_after_the_tries() {
    let stub = ArmStub::start(world().tenant, TOKEN);
    stub.with(|s| {
        s.throttle = 2;
        s.retry_after = "1".into();
    });
    let started = Instant::now();
    let snapshot = collect(&client(&stub, quick()), &[S1]);
    assert_eq!((snapshot.ok, snapshot.failed), (1, 0), "{:?}", snapshot.problems);
    assert!(started.elapsed() >= Duration::from_secs(2), "waited {:?}, Retry-After said 1 s twice", started.elapsed());
    let throttled = stub.seen().iter().filter(|s| s.status == 429).count();
    assert_eq!(throttled, 2);
    assert_eq!(snapshot.assignments.len(), 5);

    // Throttled beyond the tries: that subscription fails, reported with its status; the
    // wait is capped (Retry-After one hour, max_wait 50 ms).
    stub.with(|s| {
        s.throttle = 100;
        s.retry_after = "3600".into();
    });
    let capped = RetryPolicy { tries: 3, max_wait: Duration::from_millis(50), default_wait: Duration::from_millis(10) };
    let started = Instant::now();
    let snapshot = collect(&client(&stub, capped), &[S1]);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!((snapshot.ok, snapshot.failed), (0, 1));
    assert_eq!(snapshot.problems[0].status, Some(429));
    assert!(snapshot.accounts.is_empty());
}

#[test]
fn a_denied_subscription_is_reported_and_its_rows_are_kept_while_the_others_change() {
    let w = world();
    let stub = ArmStub::start(w.tenant, TOKEN);
    let client = client(&stub, quick());
    let db = TestDb::new();
    let mut first = collect(&client, &[]);
    first.taken_at = at("2026-11-01T00:00:00Z");
    history::record(&db.store, &first).unwrap();
    assert_eq!(db.value::<i64>("SELECT count(*) FROM data_role_assignments WHERE valid_to IS NULL"), 6);

    // S2 now answers 403; an assignment is gone from each subscription.
    stub.with(|s| {
        s.forbidden.insert(S2.to_owned());
        s.tenant.remove(&w.dave);
        s.tenant.remove(&w.telemetry_one);
    });
    let mut second = collect(&client, &[]);
    second.taken_at = at("2026-11-02T00:00:00Z");
    assert_eq!((second.ok, second.failed), (1, 1));
    let changes = history::record(&db.store, &second).unwrap();
    assert_eq!(changes.closed, 1, "only dave's, in the subscription that was read: {changes:?}");
    let closed: Vec<Vec<String>> =
        db.rows("SELECT assignment_id, epoch(valid_to::TIMESTAMP)::BIGINT::VARCHAR FROM data_role_assignments WHERE valid_to IS NOT NULL");
    assert_eq!(closed, vec![vec![w.dave.to_ascii_lowercase(), at("2026-11-02T00:00:00Z").timestamp().to_string()]]);
    let telemetry: Option<String> = db.value(&format!(
        "SELECT valid_to::VARCHAR FROM data_role_assignments WHERE assignment_id = '{}'",
        w.telemetry_one.to_ascii_lowercase()
    ));
    assert_eq!(telemetry, None, "unknown is not removed");
    assert_eq!(db.value::<i64>("SELECT count(*) FROM cosmos_accounts WHERE valid_to IS NULL"), 2);
    let run: Vec<Vec<String>> = db.rows(
        "SELECT subscriptions_ok::VARCHAR, subscriptions_failed::VARCHAR, problems->>'$[0].subscription_id', problems->>'$[0].status'
         FROM inventory_runs WHERE run_id = 2",
    );
    assert_eq!(run, vec![vec!["1".to_owned(), "1".into(), S2.into(), "403".into()]]);
}

#[test]
fn a_next_link_to_another_host_is_refused_and_never_called() {
    let w = world();
    let stub = ArmStub::start(w.tenant.clone(), TOKEN);
    let elsewhere = ArmStub::start(w.tenant, TOKEN);
    let path = format!("{}/sqlroleassignments", w.orders.to_ascii_lowercase());
    let link = format!("{}{path}?api-version=2025-10-15&$skiptoken=2", elsewhere.url());
    stub.with(|s| s.foreign_next_link = Some((path, link)));
    let snapshot = collect(&client(&stub, quick()), &[]);
    assert_eq!((snapshot.ok, snapshot.failed), (1, 1), "{:?}", snapshot.problems);
    let problem = &snapshot.problems[0];
    assert_eq!(problem.subscription_id.as_deref(), Some(S1));
    assert!(problem.message.contains("refused to follow nextLink"), "{problem}");
    assert!(elsewhere.seen().is_empty(), "the token went to another host: {:?}", elsewhere.seen());
    assert!(snapshot.assignments.iter().all(|a| a.subscription_id == S2), "nothing of S1 is kept");
}

#[test]
fn two_snapshots_make_history_and_answer_who_could_read_a_container_on_a_day() {
    let w = world();
    let stub = ArmStub::start(w.tenant, TOKEN);
    let client = client(&stub, quick());
    let db = TestDb::new();
    let mut first = collect(&client, &[S1]);
    first.taken_at = at("2026-11-01T00:00:00Z");
    history::record(&db.store, &first).unwrap();

    // Alice's assignment is removed, Erin gets Reader on the database, the account turns
    // local auth off; Bob, Carol, Frank stay as they were.
    let erin = stub.with(|s| {
        s.tenant.remove(&w.alice);
        s.tenant.items.iter_mut().find(|i| i["id"] == w.orders).unwrap()["properties"]["disableLocalAuth"] =
            serde_json::json!(true);
        s.tenant.role_assignment(
            &w.orders,
            "a0000000-0000-4000-8000-000000000006",
            "e2100000-0000-4000-8000-000000000006",
            READER,
            "/dbs/shop",
        )
    });
    let mut second = collect(&client, &[S1]);
    second.taken_at = at("2026-11-10T00:00:00Z");
    let changes = history::record(&db.store, &second).unwrap();
    assert_eq!((changes.opened, changes.closed), (2, 2), "erin and the account opened; alice and the account closed");

    let alice: Vec<Vec<String>> = db.rows(&format!(
        "SELECT epoch(valid_from::TIMESTAMP)::BIGINT::VARCHAR, epoch(valid_to::TIMESTAMP)::BIGINT::VARCHAR, run_id::VARCHAR FROM data_role_assignments WHERE assignment_id = '{}'",
        w.alice.to_ascii_lowercase()
    ));
    let (t1, t2) =
        (at("2026-11-01T00:00:00Z").timestamp().to_string(), at("2026-11-10T00:00:00Z").timestamp().to_string());
    assert_eq!(alice, vec![vec![t1.clone(), t2.clone(), "1".into()]]);
    let bob: Vec<Vec<String>> = db.rows(&format!(
        "SELECT epoch(valid_from::TIMESTAMP)::BIGINT::VARCHAR, coalesce(valid_to::VARCHAR, 'current'), run_id::VARCHAR FROM data_role_assignments WHERE assignment_id = '{}'",
        w.bob.to_ascii_lowercase()
    ));
    assert_eq!(bob, vec![vec![t1.clone(), "current".into(), "1".into()]], "an unchanged row keeps its one row");
    let account: Vec<Vec<String>> = db.rows(
        "SELECT disable_local_auth::VARCHAR, epoch(valid_from::TIMESTAMP)::BIGINT::VARCHAR, coalesce(epoch(valid_to::TIMESTAMP)::BIGINT::VARCHAR, 'current')
         FROM cosmos_accounts ORDER BY valid_from",
    );
    assert_eq!(
        account,
        vec![vec!["false".to_owned(), t1.clone(), t2.clone()], vec!["true".into(), t2, "current".into()]]
    );

    let invoices = format!("{}/dbs/shop/colls/invoices", w.orders);
    let readers = |day: &str| -> Vec<String> {
        let sql = format!(
            "SELECT DISTINCT principal_id FROM data_access_grants
             WHERE valid_from <= TIMESTAMPTZ '{day}' AND (valid_to IS NULL OR valid_to > TIMESTAMPTZ '{day}')
               AND scope_covers(scope, '{invoices}')
               AND data_action_allowed(data_actions, not_data_actions, '{ITEMS_READ}')
             ORDER BY 1"
        );
        // The plain query is one a Responder may run in the SQL console.
        let conn = db.store.connection().unwrap();
        if let Err(error) = console::check(&conn, &sql, &[Role::Responder]) {
            panic!("the console refuses {sql}: {error:?}");
        }
        let plain: Vec<String> = db.rows(&sql).into_iter().map(|r| r[0].clone()).collect();
        let by_macro: Vec<String> = db
            .rows(&format!(
                "SELECT DISTINCT principal_id FROM data_readers_at('{invoices}', TIMESTAMPTZ '{day}') ORDER BY 1"
            ))
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        assert_eq!(plain, by_macro, "{day}");
        plain
    };
    // Alice (Reader on the container) and Bob (Contributor, `containers/*`, on the account);
    // not Carol (a write-only custom role), Dave (another container), Frank (another database).
    assert_eq!(
        readers("2026-11-05T12:00:00Z"),
        vec!["a11ce000-0000-4000-8000-000000000001", "b0b00000-0000-4000-8000-000000000002"]
    );
    assert_eq!(
        readers("2026-11-12T00:00:00Z"),
        vec!["b0b00000-0000-4000-8000-000000000002", "e2100000-0000-4000-8000-000000000006"]
    );
    assert!(readers("2026-10-01T00:00:00Z").is_empty(), "before the first snapshot nothing is known");
    let _ = (erin, w.carol, w.dave, w.frank);
}

fn tokentrail(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tokentrail")).args(args).env("TOKENTRAIL_LOG", "warn").output().expect("runs")
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/inventory/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn az_output_is_read_from_files_and_answers_who_could_read() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("inv.duckdb");
    let db = db_path.to_str().unwrap();
    let files = [
        "cosmosdb-list.json",
        "sql-role-definition-list.json",
        "sql-role-assignment-list.json",
        "role-assignment-list.json",
    ]
    .map(fixture);
    let mut args = vec!["inventory", "--db", db, "--from-file"];
    args.extend(files.iter().map(String::as_str));
    let out = tokentrail(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("2 accounts, 3 role definitions, 3 data role assignments, 2 Azure role assignments"),
        "{stdout}"
    );

    let db = TestDb::open_in(dir, "inv.duckdb");
    let accounts = db.rows(
        "SELECT account, resource_group, disable_local_auth::VARCHAR, public_network_access, ip_rules::VARCHAR, len(virtual_network_rules)::VARCHAR
         FROM cosmos_accounts ORDER BY account",
    );
    assert_eq!(
        accounts[0],
        ["contoso-orders", "rg-orders-prod", "false", "Enabled", "[198.51.100.17, 203.0.113.0/24]", "1"]
    );
    assert_eq!(accounts[1][..4], ["contoso-telemetry", "rg-telemetry", "true", "Disabled"]);
    let custom = db.rows("SELECT role_name, role_type FROM data_role_definitions WHERE role_type = 'CustomRole'");
    assert_eq!(custom, vec![vec!["Orders Ingest Writer".to_owned(), "CustomRole".into()]]);
    let azure = db.rows("SELECT principal_type, role_name FROM azure_role_assignments ORDER BY principal_type");
    assert_eq!(
        azure,
        vec![
            vec!["Group".to_owned(), "Contributor".into()],
            vec!["ServicePrincipal".into(), "Cosmos DB Account Reader Role".into()]
        ]
    );
    let readers = db.rows(
        "SELECT principal_id FROM data_readers_at('/subscriptions/3f2a9c1e-7b4d-4e8a-9f0c-2d6b1a8e5c47/resourceGroups/rg-orders-prod/providers/Microsoft.DocumentDB/databaseAccounts/contoso-orders/dbs/orders/colls/invoices', now()) ORDER BY 1",
    );
    assert_eq!(
        readers,
        vec![
            vec!["0f9e8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f".to_owned()],
            vec!["a1b2c3d4-1111-4222-8333-944455556666".into()]
        ]
    );
    assert_eq!(
        db.rows("SELECT origin, subscriptions_ok::VARCHAR, subscriptions_failed::VARCHAR FROM inventory_runs"),
        vec![vec!["file".to_owned(), "4".into(), "0".into()]]
    );
}

#[test]
fn a_file_that_is_not_az_output_is_an_error_naming_it_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inv.duckdb");
    let cases = [
        (
            "servers.json",
            r#"[{"id": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Sql/servers/s", "type": "Microsoft.Sql/servers"}]"#,
        ),
        ("broken.json", r#"[{"id": "/subscriptions/x/res"#),
        ("number.json", "42"),
    ];
    for (name, content) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let out = tokentrail(&[
            "inventory",
            "--db",
            db.to_str().unwrap(),
            "--from-file",
            &fixture("cosmosdb-list.json"),
            path.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains(path.to_str().unwrap()) && stderr.contains("expected the JSON that `az cosmosdb show`"),
            "{name}: {stderr}"
        );
    }
    let out = tokentrail(&["inventory", "--db", db.to_str().unwrap(), "--subscription", "prod"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--subscription: \"prod\" is not a subscription id"), "{stderr}");
    assert!(!db.exists(), "a failed read stores nothing, not even an empty database");
}
