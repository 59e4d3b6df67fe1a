//! The web UI end to end in real headless Chromium (Debian's `chromium` and
//! `chromedriver`, installed by `.ci/run`), driven over WebDriver: sign in through the
//! demo's development issuer, open a finding a generated scenario raised, acknowledge
//! it, run SQL, open every dashboard, download an evidence pack; screenshots of each
//! page go to `<target>/tmp/ui-screenshots/`. No page may request anything outside
//! the service.

use crate::browser::{
    browser, only_local_requests, open, ready, screenshots, shot, sign_in_as, sign_out, text, wait_for,
};
use crate::common;

use common::demo::Demo;
use fantoccini::{Client, Locator};
use serde_json::json;
use std::time::{Duration, Instant};

/// Signs in as "UI {role}", landing on the overview.
async fn sign_in(client: &Client, base: &str, role: &str) {
    sign_in_as(client, base, role, &format!("UI {role}"), None).await;
    assert_eq!(client.current_url().await.unwrap().path(), "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_call_engineer_and_an_auditor_use_the_ui() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ui.duckdb");
    let demo = tokio::task::spawn_blocking({
        let db = db.clone();
        move || Demo::start(&db)
    })
    .await
    .unwrap();
    let base = format!("http://{}", demo.address);
    let (_driver, client) = browser(&dir.path().join("profile")).await;

    sign_in(&client, &base, "Responder").await;
    // Findings appear once detection has run over the backfilled day.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        open(&client, &base, "/findings?status=open").await;
        if client.find(Locator::Css("main table a[href^='/findings/']")).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no open finding within 60 s of the demo start");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    open(&client, &base, "/").await;
    shot(&client, "overview").await;
    assert!(client.find(Locator::Css(".chart canvas")).await.is_ok(), "the activity chart is drawn");
    let detection = client.find(Locator::Css("#detection")).await.unwrap().text().await.unwrap();
    assert!(detection.starts_with("Detection is "), "the overview says how far detection has come: {detection}");
    only_local_requests(&client, &base).await;

    open(&client, &base, "/findings?status=open").await;
    shot(&client, "findings").await;
    let link = client.find(Locator::Css("main table a[href^='/findings/']")).await.unwrap();
    let href = link.attr("href").await.unwrap().unwrap();
    link.click().await.unwrap();
    ready(&client).await;
    assert_eq!(client.current_url().await.unwrap().path(), href);
    assert!(text(&client, "main").await.contains("What to do"), "the rule's remediation is shown");
    shot(&client, "finding").await;
    assert_eq!(text(&client, "#finding-status").await, "open");
    client.find(Locator::Css("#comment")).await.unwrap().send_keys("on it: checking with the app owner").await.unwrap();
    client.find(Locator::Css("button[data-action=acknowledge]")).await.unwrap().click().await.unwrap();
    wait_for(
        &client,
        "the status to change",
        "return document.querySelector('#finding-status')?.textContent === 'acknowledged' || null",
    )
    .await;
    assert!(
        text(&client, "main").await.contains("on it: checking with the app owner"),
        "the comment is in the history"
    );
    shot(&client, "finding-acknowledged").await;

    // The principal behind it, if there is one.
    if let Ok(principal) = client.find(Locator::Css("main .facts a[href^='/principals/']")).await {
        principal.click().await.unwrap();
        ready(&client).await;
        assert!(text(&client, "main").await.contains("Where it signed in from"));
        shot(&client, "principal").await;
    }

    open(&client, &base, "/sql").await;
    let editor = client.find(Locator::Css("#sql")).await.unwrap();
    editor.clear().await.unwrap();
    editor.send_keys("SELECT kind, count(*) AS signins FROM signins GROUP BY 1 ORDER BY 1").await.unwrap();
    client.find(Locator::Css("#run")).await.unwrap().click().await.unwrap();
    wait_for(&client, "the query result", "return document.querySelector('#result table') ? true : null").await;
    assert!(text(&client, "#result").await.contains("managed_identity"));
    shot(&client, "sql").await;

    open(&client, &base, "/search?kind=requests&all=1").await;
    assert!(client.find(Locator::Css("main table")).await.is_ok());
    shot(&client, "search").await;

    open(&client, &base, "/dashboards").await;
    let names: Vec<String> = tokentrail::http::api::dashboards::DASHBOARDS.iter().map(|(n, _)| n.to_string()).collect();
    assert!(names.len() >= 3);
    for name in &names {
        open(&client, &base, &format!("/dashboards/{name}")).await;
        let panels = client.find_all(Locator::Css("section.panel")).await.unwrap();
        assert!(!panels.is_empty(), "{name} has panels");
        shot(&client, &format!("dashboard-{name}")).await;
        only_local_requests(&client, &base).await;
    }

    // A phone-sized window still works.
    client.set_window_size(390, 844).await.unwrap();
    open(&client, &base, "/").await;
    shot(&client, "overview-390px").await;
    client.set_window_size(1280, 900).await.unwrap();

    sign_out(&client).await;
    sign_in(&client, &base, "Auditor").await;
    open(&client, &base, "/evidence").await;
    shot(&client, "evidence").await;
    // The page builds the pack with a POST carrying the session's CSRF token, and saves it.
    client.find(Locator::Css("#download")).await.unwrap().click().await.unwrap();
    let status = wait_for(
        &client,
        "the pack's download",
        "const s = document.querySelector('#download-status').textContent;
         return s.startsWith('Downloaded') || s.startsWith('Not built') ? s : null;",
    )
    .await;
    let status = status.as_str().unwrap_or_default().to_string();
    assert!(status.contains("Downloaded"), "{status}");
    // The pack just downloaded, run again by the service: the same rows.
    client.find(Locator::Css("#rerun")).await.unwrap().click().await.unwrap();
    let checked = wait_for(
        &client,
        "the pack's re-run",
        "const s = document.querySelector('#rerun-status').textContent;
         return s.startsWith('Same') || s.startsWith('Different') || s.startsWith('Not run') ? s : null;",
    )
    .await;
    let checked = checked.as_str().unwrap_or_default().to_string();
    assert!(checked.starts_with("Same: all"), "{checked}");
    shot(&client, "evidence-rerun").await;
    // The same POST without the CSRF token (a form on another site) is refused; a GET
    // (a link) is not a way to build one at all.
    let refused = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const body = JSON.stringify({criteria: 'CC6.1', from: '2025-01-01T00:00:00Z', to: '2025-01-02T00:00:00Z'});
             Promise.all([
               fetch('/api/evidence', {method: 'POST', body, headers: {'Content-Type': 'application/json'}, credentials: 'same-origin'}),
               fetch('/api/evidence?criteria=CC6.1&from=2025-01-01T00:00:00Z&to=2025-01-02T00:00:00Z', {credentials: 'same-origin'}),
             ]).then(rs => done(rs.map(r => r.status))).catch(e => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(refused, serde_json::json!([403, 405]), "{refused}");
    only_local_requests(&client, &base).await;

    client.close().await.unwrap();
    assert!(demo.interrupt().success());
    println!("screenshots in {}", screenshots().display());
}

/// The Activity log and Entra ID AuditLogs fixture (with the hostile audit record of
/// `api::changes_records`) ingested and detected, served with the development sign-in
/// (as `demo` does) on a loopback port. Returns the base URL and what stops the server.
fn serve_changes(dir: &std::path::Path) -> (String, tokio_util::sync::CancellationToken, std::thread::JoinHandle<()>) {
    use std::sync::Arc;
    use tokentrail::http::{Application, Detection, Settings, SignIn};
    use tokentrail::ingest::PipelineOptions;
    use tokentrail::rules::{DetectionConfig, Detector};
    use tokentrail::store::{Store, StoreOptions};
    let db = dir.join("changes.duckdb");
    let store = Arc::new(Store::open(&db, &StoreOptions::default()).unwrap());
    let path = dir.join("changes.ndjson");
    std::fs::write(&path, crate::api::changes_records()).unwrap();
    let mut writer = store.writer().unwrap();
    let options = PipelineOptions { workers: 2, ..PipelineOptions::default() };
    let report = tokentrail::ingest::files::ingest_files(
        &store,
        &mut writer,
        &[path],
        options,
        indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    assert!(report.failed.is_empty());
    drop(writer);
    let (detector, problems) = Detector::open(&store, &DetectionConfig::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    detector.evaluate_after_commit(&store).unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let mut settings = Settings::new(store, listen, "test: changes fixture", SignIn::Development { db, secret: None });
    settings.detection = Detection::Catalogue(detector.rules().to_vec());
    let app = Application::build(settings).unwrap();
    let (base, stop) = (format!("http://{}", app.address()), app.stopper());
    let thread = std::thread::spawn(move || app.run_until_stopped().unwrap());
    (base, stop, thread)
}

/// The finding's evidence row in `control_changes` of a rule, from the database the server reads.
async fn finding_with_change(client: &Client, base: &str, rule: &str) -> (i64, i64) {
    open(client, base, &format!("/findings?rule={rule}")).await;
    let href = client
        .find(Locator::Css("main table a[href^='/findings/']"))
        .await
        .unwrap_or_else(|_| panic!("a {rule} finding is listed"))
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let id: i64 = href.trim_start_matches("/findings/").parse().unwrap();
    let row = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0], {credentials: 'same-origin', headers: {Accept: 'application/json'}})
               .then(r => r.json()).then(d => done(d.evidence.find(e => e.evidence_table === 'control_changes').row_id))
               .catch(e => done(String(e)));",
            vec![json!(format!("/api/findings/{id}"))],
        )
        .await
        .unwrap();
    (id, row.as_i64().unwrap_or_else(|| panic!("the finding's evidence has a control_changes row: {row}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_page_lists_its_changes_and_a_finding_links_to_the_change() {
    use crate::api::{ALICE, BOB, HOSTILE_ID, HOSTILE_NAME, path_segment};
    let dir = tempfile::tempdir().unwrap();
    let (base, stop, server) = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || serve_changes(&dir)
    })
    .await
    .unwrap();
    let (_driver, client) = browser(&dir.path().join("profile")).await;
    sign_in(&client, &base, "Responder").await;

    // Alice's page: the grant she made to bob, in words, linking to bob.
    open(&client, &base, &format!("/principals/{ALICE}")).await;
    shot(&client, "principal-changes-made").await;
    let made = text(&client, "#changes-made").await;
    assert!(made.contains("Changes made by this identity"), "{made}");
    let grant = client
        .find(Locator::Css("#changes-made tr[data-kind=data_role_assignment_write]"))
        .await
        .expect("the data-plane grant is a row of the changes alice made");
    let anchor = grant.attr("id").await.unwrap().unwrap();
    assert!(anchor.starts_with("change-control_changes-"), "{anchor}");
    let row = grant.text().await.unwrap();
    for part in
        ["granted Cosmos DB Built-in Data Contributor", "contoso-orders", "bob@contoso.com", "203.0.113.7", "succeeded"]
    {
        assert!(row.contains(part), "{part} in the grant's row: {row}");
    }
    let to_bob =
        grant.find(Locator::Css("a[href^='/principals/']")).await.unwrap().attr("href").await.unwrap().unwrap();
    assert_eq!(to_bob, format!("/principals/{BOB}"));
    assert!(text(&client, "#changes-made").await.contains("listed the account keys"));
    assert!(
        text(&client, "#changes-received").await.contains("No changes recorded for this identity"),
        "nobody changed alice"
    );

    // Bob's page: the same grant and the group membership, made to him, by alice.
    open(&client, &base, &format!("/principals/{BOB}")).await;
    shot(&client, "principal-changes-received").await;
    let received = text(&client, "#changes-received").await;
    assert!(received.contains("Changes made to this identity"), "{received}");
    assert!(received.contains("granted Cosmos DB Built-in Data Contributor"), "{received}");
    assert!(received.contains("added a member to Cosmos DB Admins"), "{received}");
    assert!(received.contains("alice@contoso.com"), "{received}");
    assert!(
        client.find(Locator::Css(&format!("#changes-received #{anchor}"))).await.is_ok(),
        "same anchor on bob's page"
    );
    assert!(client.find(Locator::Css(&format!("#changes-received a[href='/principals/{ALICE}']"))).await.is_ok());
    // The hostile actor's name is text: no element of it, no script of it run.
    assert!(received.contains(HOSTILE_NAME), "the hostile name is shown as it is: {received}");
    let injected = client
        .execute("return document.querySelectorAll('main img').length + (document.title === 'pwned' ? 100 : 0)", vec![])
        .await
        .unwrap();
    assert_eq!(injected, json!(0), "the hostile name made an element or ran");
    // And its own page, whose id is SQL and HTML too.
    open(&client, &base, &format!("/principals/{}", path_segment(HOSTILE_ID))).await;
    assert_eq!(text(&client, "main h1").await, HOSTILE_NAME);
    assert!(text(&client, "#changes-made").await.contains("added a member to Cosmos DB Admins"));
    let injected =
        client.execute("return document.querySelectorAll('main img, main script').length", vec![]).await.unwrap();
    assert_eq!(injected, json!(0));

    // A finding whose evidence is a change links to it on the actor's page.
    let (finding, change_row) = finding_with_change(&client, &base, "diagnostic_setting_removed").await;
    open(&client, &base, &format!("/findings/{finding}")).await;
    shot(&client, "finding-change-evidence").await;
    let target = format!("change-control_changes-{change_row}");
    let link = client
        .find(Locator::Css(&format!("tr.evidence-change a[href='/principals/{ALICE}#{target}']")))
        .await
        .expect("the change in the evidence links to alice's page at the change");
    let evidence = text(&client, "tr.evidence-change").await;
    for part in ["deleted a diagnostic setting", "contoso-orders", "alice@contoso.com", "203.0.113.7"] {
        assert!(evidence.contains(part), "{part} in the evidence change: {evidence}");
    }
    link.click().await.unwrap();
    ready(&client).await;
    let url = client.current_url().await.unwrap();
    assert_eq!(url.path(), format!("/principals/{ALICE}"));
    assert_eq!(url.fragment(), Some(target.as_str()));
    let marked = client
        .execute("const r = document.getElementById(arguments[0]); return r ? r.classList.contains('targeted') && r.textContent : null", vec![json!(target)])
        .await
        .unwrap();
    assert!(
        marked.as_str().is_some_and(|t| t.contains("deleted a diagnostic setting")),
        "the change's row is marked: {marked}"
    );
    shot(&client, "principal-change-targeted").await;
    only_local_requests(&client, &base).await;

    client.close().await.unwrap();
    stop.cancel();
    tokio::task::spawn_blocking(move || server.join().unwrap()).await.unwrap();
}

/// `api::access_store` (an inventory and 88 days of requests) served with the development
/// sign-in on a loopback port. Returns the base URL, what stops the server, and the
/// requests' account name.
fn serve_access()
-> (String, tokio_util::sync::CancellationToken, std::thread::JoinHandle<()>, tempfile::TempDir, String) {
    use tokentrail::http::{Application, Settings, SignIn};
    let (dir, store, account) = crate::api::access_store();
    let db = dir.path().join("test.duckdb");
    let listen = "127.0.0.1:0".parse().unwrap();
    let settings = Settings::new(store, listen, "test: access", SignIn::Development { db, secret: None });
    let app = Application::build(settings).unwrap();
    let (base, stop) = (format!("http://{}", app.address()), app.stopper());
    let thread = std::thread::spawn(move || app.run_until_stopped().unwrap());
    (base, stop, thread, dir, account)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_page_shows_accounts_and_assignments_and_a_principal_its_entitlements() {
    use crate::api::{ACCESS_HOSTILE_ID, ACCESS_HOSTILE_ROLE, LOCKED_ACCOUNT};
    use crate::rule_cases::user_id;
    let profile = tempfile::tempdir().unwrap();
    let (base, stop, server, _dir, account) = tokio::task::spawn_blocking(serve_access).await.unwrap();
    let (_driver, client) = browser(&profile.path().join("profile")).await;
    sign_in(&client, &base, "Responder").await;

    // The nav leads to it.
    client.find(Locator::Css("header nav a[href='/access']")).await.expect("Access in the nav").click().await.unwrap();
    ready(&client).await;
    assert_eq!(client.current_url().await.unwrap().path(), "/access");
    shot(&client, "access").await;
    let accounts = text(&client, "#access-accounts").await;
    for part in [account.as_str(), "Enabled", LOCKED_ACCOUNT, "Disabled", "Owner", "Cosmos DB Account Reader Role"] {
        assert!(accounts.contains(part), "{part} in the accounts: {accounts}");
    }
    let local_auth = |name: &str| format!("#access-accounts tr[data-account='{name}'] td:nth-child(2)");
    assert_eq!(text(&client, &local_auth(&account)).await, "on", "the keys open {account}");
    assert_eq!(text(&client, &local_auth(LOCKED_ACCOUNT)).await, "off");
    let readers = text(&client, &format!("#access-accounts tr[data-account='{account}'] td:nth-child(7)")).await;
    assert!(readers.contains(ACCESS_HOSTILE_ID), "the hostile owner is listed as text: {readers}");
    // Who can read the keys links to their page.
    let links = client
        .execute(
            "return [...document.querySelectorAll('#access-accounts a[href^=\"/principals/\"]')].map(a => [a.textContent, a.getAttribute('href')])",
            vec![],
        )
        .await
        .unwrap();
    let hostile_href = links
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l[0] == ACCESS_HOSTILE_ID)
        .unwrap_or_else(|| panic!("the owner's link: {links}"))[1]
        .as_str()
        .unwrap()
        .to_string();

    // An assignment with its recommendation as a badge.
    let reader = client
        .find(Locator::Css("#access-assignments tr.assignment[data-recommendation='reader']"))
        .await
        .expect("user 1's assignment is to become a reader's");
    let row = reader.text().await.unwrap();
    for part in [user_id(1).as_str(), "Cosmos DB Built-in Data Contributor", "Data Reader", "dbs/shop/colls/orders"] {
        assert!(row.contains(part), "{part} in {row}");
    }
    assert_eq!(reader.find(Locator::Css("span.rec")).await.unwrap().text().await.unwrap(), "reader");
    assert!(
        text(&client, "#access-assignments").await.contains(ACCESS_HOSTILE_ROLE),
        "the hostile role name is shown as text"
    );
    // Filtered by recommendation, in the page.
    client.find(Locator::Css("#recommendation-filter")).await.unwrap().select_by_value("narrow scope").await.unwrap();
    let visible = wait_for(
        &client,
        "the filter",
        "const v = [...document.querySelectorAll('#access-assignments tr.assignment')].filter(r => !r.hidden);
         return v.length === 1 ? v.map(r => r.dataset.recommendation) : null;",
    )
    .await;
    assert_eq!(visible, json!(["narrow scope"]));
    assert!(client.current_url().await.unwrap().query().unwrap_or_default().contains("recommendation=narrow"));
    let injected = client
        .execute(
            "return document.querySelectorAll('main img, main script').length + (document.title === 'pwned' ? 100 : 0)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(injected, json!(0), "the hostile id or role name made an element or ran");

    // The hostile owner's page: known from the inventory only, its entitlements as text.
    open(&client, &base, &hostile_href).await;
    shot(&client, "principal-entitlements-hostile").await;
    assert_eq!(text(&client, "main h1").await, ACCESS_HOSTILE_ID);
    let entitlements = text(&client, "#entitlements").await;
    for part in ["Entitlements", ACCESS_HOSTILE_ROLE, "Owner", "can read account keys"] {
        assert!(entitlements.contains(part), "{part} in {entitlements}");
    }
    let injected = client
        .execute(
            "return document.querySelectorAll('main img, main script').length + (document.title === 'pwned' ? 100 : 0)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(injected, json!(0));

    // User 1's page: what it may do beside what it did.
    open(&client, &base, &format!("/principals/{}", user_id(1))).await;
    shot(&client, "principal-entitlements").await;
    let entitlements = text(&client, "#entitlements").await;
    assert!(entitlements.contains("Cosmos DB Built-in Data Contributor"), "{entitlements}");
    assert_eq!(text(&client, "#entitlements span.rec").await, "reader");
    assert!(text(&client, "main").await.contains("What it touched"));
    only_local_requests(&client, &base).await;

    client.close().await.unwrap();
    stop.cancel();
    tokio::task::spawn_blocking(move || server.join().unwrap()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_inventory_the_access_page_says_how_to_take_one() {
    let dir = tempfile::tempdir().unwrap();
    let (base, stop, server) = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || serve_changes(&dir)
    })
    .await
    .unwrap();
    let (_driver, client) = browser(&dir.path().join("profile")).await;
    sign_in(&client, &base, "Auditor").await;
    open(&client, &base, "/access").await;
    shot(&client, "access-empty").await;
    let empty = text(&client, "#access-empty").await;
    for part in ["tokentrail inventory", "--from-file", "README"] {
        assert!(empty.contains(part), "{part} in {empty}");
    }
    assert!(client.find(Locator::Css("#access-accounts")).await.is_err(), "no table of nothing");
    client.close().await.unwrap();
    stop.cancel();
    tokio::task::spawn_blocking(move || server.join().unwrap()).await.unwrap();
}
