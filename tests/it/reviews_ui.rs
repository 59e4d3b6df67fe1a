//! An access review end to end, in real headless Chromium against the real binary: a
//! database made with `tokentrail ingest` (requests, sign-ins, an Activity log grant)
//! and `tokentrail inventory --from-file` (three data-plane role assignments), served by
//! `tokentrail serve` with the development sign-in. An Admin starts a review naming two
//! reviewers; Reviewer Two decides what they did not grant and is refused the grant they
//! made; Reviewer One decides it, which completes the review; an Auditor downloads the
//! decisions in Microsoft Graph's shape; `tokentrail verify` verifies the review's log.
//! Screenshots go to `<target>/tmp/ui-screenshots/reviews-*.png`.

use crate::browser::{
    browser, free_port, only_local_requests, open, ready, screenshots, shot, sign_in_as, sign_out, text, wait_for,
};
use crate::rule_cases::{Case, user_id};

use chrono::{DateTime, Duration, Utc};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const ONE: &str = "Reviewer One";
const TWO: &str = "Reviewer Two";
const CONTRIBUTOR: &str = "00000000-0000-0000-0000-000000000002";
const READER: &str = "00000000-0000-0000-0000-000000000001";
/// A justification that is HTML: shown as text, never made into an element.
const HOSTILE: &str = "<img src=x onerror=\"document.title='pwned'\"> keeps the nightly export";

fn tokentrail(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tokentrail")).args(args).env("TOKENTRAIL_LOG", "warn").output().expect("runs")
}

fn stamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The database: three data-plane assignments on one account (user 1 Contributor on the
/// account, granted by Reviewer Two in the Activity log; user 2 Reader on a container;
/// user 3 Contributor on a database, unused), their principals' sign-ins and requests.
/// Returns the principals in that order, and the account's name.
fn build(dir: &Path, db: &Path) -> ([String; 3], String) {
    let mut case = Case::new();
    let now = Utc::now();
    let account_id = case.template("DataPlaneRequests")["resourceId"].as_str().unwrap().to_string();
    let account = account_id.rsplit('/').next().unwrap().to_ascii_lowercase();
    let granted_by = tokentrail::auth::dev_oid(TWO);
    let assignment = |n: u32| format!("{account_id}/sqlRoleAssignments/aaaaaaaa-0000-4000-8000-{n:012}");
    let grants = [
        (1, CONTRIBUTOR, String::new()),
        (2, READER, "/dbs/shop/colls/orders".to_string()),
        (3, CONTRIBUTOR, "/dbs/shop".to_string()),
    ];

    // Sign-ins name the principals; requests use the first two assignments.
    for user in 1..=3 {
        case.user_sign_in(user, "73.9.9.9", now - Duration::days(12) + Duration::hours(user.into()), 0);
    }
    for day in (2..=10).step_by(2) {
        let t = now - Duration::days(day);
        for (user, operation, coll) in
            [(1, "Upsert", "orders"), (1, "Read", "carts"), (2, "Read", "orders"), (2, "Query", "orders")]
        {
            case.request(user, "73.9.9.9", t + Duration::minutes(user.into()));
            let r = case.records.last_mut().unwrap();
            r["operationName"] = json!(operation);
            r["properties"]["requestResourceType"] = json!("Document");
            r["properties"]["requestResourceId"] = json!(format!("/dbs/shop/colls/{coll}/docs/x"));
            r["properties"]["databaseName"] = json!("shop");
            r["properties"]["collectionName"] = json!(coll);
            r["properties"]["statusCode"] = json!(200);
        }
    }
    // Reviewer Two granted user 1's assignment: the Activity log's Start and Success.
    let granted_at = now - Duration::days(30);
    let body = json!({"properties": {"principalId": user_id(1), "scope": account_id,
        "roleDefinitionId": format!("{account_id}/sqlRoleDefinitions/{CONTRIBUTOR}")}});
    for (result, at, body) in [("Start", granted_at, Some(body)), ("Success", granted_at + Duration::seconds(2), None)]
    {
        let mut properties = json!({"eventCategory": "Administrative"});
        if let Some(body) = body {
            properties["requestbody"] = json!(body.to_string());
        }
        case.records.push(json!({
            "time": stamp(at), "resourceId": assignment(1),
            "operationName": "MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/SQLROLEASSIGNMENTS/WRITE",
            "category": "Write", "resultType": result, "resultSignature": if result == "Start" { "Started." } else { "Succeeded.OK" },
            "callerIpAddress": "203.0.113.7", "correlationId": "c0ffee00-0000-4000-8000-000000000001",
            "level": "Information", "location": "global",
            "identity": {"claims": {"http://schemas.microsoft.com/identity/claims/objectidentifier": granted_by, "name": TWO}},
            "properties": properties}));
    }
    let logs = dir.join("logs.ndjson");
    let mut text = String::new();
    for record in &case.records {
        text.push_str(&record.to_string());
        text.push('\n');
    }
    std::fs::write(&logs, text).unwrap();
    let out = tokentrail(&["ingest", "--db", db.to_str().unwrap(), logs.to_str().unwrap()]);
    assert!(out.status.success(), "ingest: {}", String::from_utf8_lossy(&out.stderr));

    // The inventory, as `az` prints it, taken before the requests.
    let assignments: Vec<Value> = grants
        .iter()
        .map(|(user, role, below)| {
            json!({"id": assignment(*user), "name": assignment(*user).rsplit('/').next().unwrap(), "principalId": user_id(*user),
                   "roleDefinitionId": format!("{account_id}/sqlRoleDefinitions/{role}"), "scope": format!("{account_id}{below}"),
                   "type": "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments"})
        })
        .collect();
    let files = [
        (
            "cosmosdb-list.json",
            json!([{"id": account_id, "name": account, "location": "West Europe", "disableLocalAuth": true,
            "publicNetworkAccess": "Enabled", "type": "Microsoft.DocumentDB/databaseAccounts"}]),
        ),
        ("sql-role-definition-list.json", json!([])),
        ("sql-role-assignment-list.json", Value::Array(assignments)),
        ("role-assignment-list.json", json!([])),
    ]
    .map(|(name, content)| {
        let path = dir.join(name);
        std::fs::write(&path, content.to_string()).unwrap();
        path
    });
    let taken_at = stamp(now - Duration::days(20));
    let mut args = vec!["inventory", "--db", db.to_str().unwrap(), "--taken-at", &taken_at, "--from-file"];
    args.extend(files.iter().map(|p| p.to_str().unwrap()));
    let out = tokentrail(&args);
    assert!(
        out.status.success(),
        "inventory: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ([user_id(1), user_id(2), user_id(3)], account)
}

/// `tokentrail serve` with the development sign-in on a free loopback port.
struct Serve {
    child: Child,
    base: String,
    secret: String,
}

impl Serve {
    fn start(dir: &Path, db: &Path) -> Serve {
        let port = free_port();
        let config = dir.join("tokentrail.toml");
        std::fs::write(
            &config,
            format!("db = {db:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\ndevelopment_sign_in = true\n"),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tokentrail"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("TOKENTRAIL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let secret = loop {
            let line = lines.next().expect("serve printed the sign-in secret").unwrap();
            if let Some((_, secret)) = line.split_once("enter this secret when asked: ") {
                break secret.trim().to_string();
            }
        };
        // Keep draining stderr so serve never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "serve did not listen");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Serve { child, base, secret }
    }

    /// Ctrl-C, and the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "serve did not stop within 60 s of Ctrl-C");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The visible nav links' paths.
async fn nav(client: &Client) -> Value {
    client
        .execute("return [...document.querySelectorAll('header nav a')].filter(a => !a.hidden).map(a => a.getAttribute('href'))", vec![])
        .await
        .unwrap()
}

/// GET or POST from the page with its session (and CSRF token for a POST): [status, body].
async fn fetch(client: &Client, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let answer = client
        .execute_async(
            "const [method, path, body, done] = arguments;
             fetch('/auth/me', {credentials: 'same-origin'}).then(r => r.json()).then(me => fetch(path, {
               method, credentials: 'same-origin',
               headers: Object.assign({Accept: 'application/json'}, body === null ? {} : {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf_token}),
               body: body === null ? undefined : JSON.stringify(body),
             })).then(async r => done([r.status, await r.text()])).catch(e => done([0, String(e)]));",
            vec![json!(method), json!(path), body.unwrap_or(Value::Null)],
        )
        .await
        .unwrap();
    let status = answer[0].as_u64().unwrap() as u16;
    let text = answer[1].as_str().unwrap_or_default();
    (status, serde_json::from_str(text).unwrap_or_else(|_| json!(text)))
}

/// The item id of `principal`'s row on a review page.
async fn item_of(client: &Client, principal: &str) -> i64 {
    let id = client
        .execute(
            "const r = [...document.querySelectorAll('#review-items tr.review-item')].find(r => r.textContent.includes(arguments[0]));
             return r ? Number(r.dataset.item) : null;",
            vec![json!(principal)],
        )
        .await
        .unwrap();
    id.as_i64().unwrap_or_else(|| panic!("a row of {principal} on the review page"))
}

/// Decides item `item` in the page: a choice, a justification, Save; waits for the row to show it.
async fn decide(client: &Client, item: i64, decision: &str, justification: &str) {
    let row = format!("#item-{item}");
    client.find(Locator::Css(&format!("{row} input[value={decision}]"))).await.unwrap().click().await.unwrap();
    let reason = client.find(Locator::Css(&format!("#justification-{item}"))).await.unwrap();
    reason.clear().await.unwrap();
    reason.send_keys(justification).await.unwrap();
    client.find(Locator::Css(&format!("{row} form.decide button[type=submit]"))).await.unwrap().click().await.unwrap();
    wait_for(
        client,
        "the decision saved",
        &format!("const r = document.querySelector('{row}'); return r && r.dataset.decision === '{decision}' && r.textContent.includes('Saved.');"),
    )
    .await;
}

async fn no_injection(client: &Client) {
    let injected = client
        .execute(
            "return document.querySelectorAll('main img, main script').length + (document.title === 'pwned' ? 100 : 0)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(injected, json!(0), "a justification made an element or ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_starts_a_review_reviewers_decide_and_an_auditor_exports_it() {
    let dir = tempfile::tempdir().unwrap();
    let db: PathBuf = dir.path().join("reviews.duckdb");
    let (principals, serve) = tokio::task::spawn_blocking({
        let (dir, db) = (dir.path().to_path_buf(), db.clone());
        move || {
            let principals = build(&dir, &db);
            (principals, Serve::start(&dir, &db))
        }
    })
    .await
    .unwrap();
    let ([granted_by_two, container_reader, unused], account) = principals;
    let base = serve.base.clone();
    let secret = Some(serve.secret.as_str());
    let (_driver, client) = browser(&dir.path().join("profile")).await;

    // A Responder is offered no Evidence (the API refuses them packs) and no Reviews.
    sign_in_as(&client, &base, "Responder", "Rory Responder", secret).await;
    assert_eq!(client.current_url().await.unwrap().path(), "/");
    assert_eq!(
        nav(&client).await,
        json!(["/", "/incidents", "/findings", "/search", "/sql", "/dashboards", "/access"])
    );
    sign_out(&client).await;

    // The reviewers sign in once (so the Admin can pick them): a Reviewer lands on
    // /reviews, sees only that link, and may not read findings.
    for name in [ONE, TWO] {
        sign_in_as(&client, &base, "Reviewer", name, secret).await;
        assert_eq!(client.current_url().await.unwrap().path(), "/reviews", "a Reviewer is sent to /reviews");
        assert_eq!(nav(&client).await, json!(["/reviews"]), "a Reviewer's nav shows only Reviews");
        assert!(text(&client, "#reviews-none").await.contains("No review names you"));
        let (status, body) = fetch(&client, "GET", "/api/findings", None).await;
        assert_eq!(status, 403, "{body}");
        if name == ONE {
            shot(&client, "reviews-reviewer-empty").await;
        }
        sign_out(&client).await;
    }

    // The Admin: an error stays beside the form, then the review starts.
    sign_in_as(&client, &base, "Admin", "Ada Admin", secret).await;
    assert_eq!(client.current_url().await.unwrap().path(), "/");
    // Each link only where the API lets the role in: no Evidence (packs are the
    // Auditor's), no Search, SQL or Access.
    assert_eq!(nav(&client).await, json!(["/", "/incidents", "/findings", "/dashboards", "/reviews"]));
    client.find(Locator::Css("header nav a[href='/reviews']")).await.unwrap().click().await.unwrap();
    ready(&client).await;
    assert_eq!(client.current_url().await.unwrap().path(), "/reviews");
    let one = tokentrail::auth::dev_oid(ONE);
    let two = tokentrail::auth::dev_oid(TWO);
    for oid in [&one, &two] {
        client
            .find(Locator::Css(&format!("#review-reviewers input[value='{oid}']")))
            .await
            .unwrap_or_else(|_| panic!("{oid} offered as a reviewer (signed in with the role)"));
    }
    client.find(Locator::Css("#review-name")).await.unwrap().send_keys("Q4 Cosmos DB data access").await.unwrap();
    client.find(Locator::Css("#start-review-submit")).await.unwrap().click().await.unwrap();
    let refused = wait_for(
        &client,
        "the API's refusal beside the form",
        "const e = document.querySelector('#start-review-status .error'); return e ? e.textContent : null;",
    )
    .await;
    assert!(refused.as_str().unwrap().contains("reviewer"), "no reviewer named: {refused}");
    assert!(client.find(Locator::Css("#reviews-list, #reviews-none")).await.is_ok(), "the page is still there");
    shot(&client, "reviews-start-refused").await;
    for oid in [&one, &two] {
        client
            .find(Locator::Css(&format!("#review-reviewers input[value='{oid}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    client.find(Locator::Css("#start-review-submit")).await.unwrap().click().await.unwrap();
    let path = wait_for(
        &client,
        "the new review's page",
        "return /^\\/reviews\\/\\d+$/.test(location.pathname) && document.body.dataset.ready === 'true' ? location.pathname : null",
    )
    .await;
    let path = path.as_str().unwrap().to_string();
    let id = path.trim_start_matches("/reviews/").to_string();
    assert_eq!(text(&client, "#review-state").await, "open");
    assert!(text(&client, "#review-progress").await.contains("0 of 3 decided"));
    let reviewers = text(&client, "#review-reviewers").await;
    assert!(reviewers.contains(ONE) && reviewers.contains(TWO), "{reviewers}");
    let items = text(&client, "#review-items").await;
    for part in [granted_by_two.as_str(), container_reader.as_str(), unused.as_str(), TWO, "user1@contoso.com"] {
        assert!(items.contains(part), "{part} in the items: {items}");
    }
    assert!(
        client.find(Locator::Css("#review-items form.decide")).await.is_err(),
        "an Admin who is no reviewer decides nothing"
    );
    assert!(client.find(Locator::Css("#complete-review")).await.is_ok());
    assert!(client.find(Locator::Css("#download-decisions")).await.is_ok());
    shot(&client, "reviews-started").await;
    open(&client, &base, "/reviews").await;
    let listed = text(&client, &format!("#reviews-list tr[data-review='{id}']")).await;
    assert!(
        listed.contains("Q4 Cosmos DB data access") && listed.contains("0 of 3 decided") && listed.contains("open"),
        "{listed}"
    );
    shot(&client, "reviews-list").await;

    // A second review, of the account by name, with its reviewer given by object id,
    // which the Admin completes before anyone decides (after a confirm).
    client.find(Locator::Css("#review-name")).await.unwrap().send_keys("Early close").await.unwrap();
    client.find(Locator::Css("#review-scope")).await.unwrap().send_keys(&account).await.unwrap();
    client.find(Locator::Css("#review-oids")).await.unwrap().send_keys(&one.to_uppercase()).await.unwrap();
    client.find(Locator::Css("#start-review-submit")).await.unwrap().click().await.unwrap();
    let early = wait_for(
        &client,
        "the second review's page",
        &format!(
            "return /^\\/reviews\\/\\d+$/.test(location.pathname) && location.pathname !== '{path}' && document.body.dataset.ready === 'true' ? location.pathname : null"
        ),
    )
    .await;
    let early = early.as_str().unwrap().to_string();
    assert_eq!(text(&client, "#review-reviewers").await, ONE);
    assert!(text(&client, "#review-progress").await.contains("0 of 3 decided"));
    client.find(Locator::Css("#complete-review")).await.unwrap().click().await.unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    let asked = loop {
        match client.get_alert_text().await {
            Ok(asked) => break asked,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            Err(e) => panic!("Complete asks first: {e}"),
        }
    };
    assert!(asked.contains("3 items not decided"), "{asked}");
    client.accept_alert().await.unwrap();
    wait_for(
        &client,
        "the review completed",
        "return document.querySelector('#review-state')?.textContent === 'completed' || null",
    )
    .await;
    assert!(text(&client, "#review-completed").await.contains("Ada Admin"));
    assert!(client.find(Locator::Css("#complete-review")).await.is_err());
    let undecided = client
        .execute(
            "return [...document.querySelectorAll('#review-items .decided .decision')].map(d => d.textContent)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(undecided, json!(["not reviewed", "not reviewed", "not reviewed"]));
    shot(&client, "reviews-completed-early").await;
    // A third, left open: it is made overdue below.
    open(&client, &base, "/reviews").await;
    client.find(Locator::Css("#review-name")).await.unwrap().send_keys("Left open").await.unwrap();
    client.find(Locator::Css(&format!("#review-reviewers input[value='{one}']"))).await.unwrap().click().await.unwrap();
    client.find(Locator::Css("#start-review-submit")).await.unwrap().click().await.unwrap();
    wait_for(
        &client,
        "the third review's page",
        "return document.querySelector('h1')?.textContent === 'Left open' && document.body.dataset.ready === 'true' || null",
    )
    .await;
    sign_out(&client).await;

    // Reviewer Two decides what they did not grant, and is refused what they granted.
    sign_in_as(&client, &base, "Reviewer", TWO, secret).await;
    assert!(text(&client, &format!("#reviews-list tr[data-review='{id}']")).await.contains("yours to review"));
    client.find(Locator::Css(&format!("#reviews-list a[href='{path}']"))).await.unwrap().click().await.unwrap();
    ready(&client).await;
    assert!(
        client.find(Locator::Css("#review-items a[href^='/principals/']")).await.is_err(),
        "no link to principal pages, which refuse a Reviewer"
    );
    let own = item_of(&client, &granted_by_two).await;
    let reader = item_of(&client, &container_reader).await;
    let idle = item_of(&client, &unused).await;
    let own_row = client.find(Locator::Css(&format!("#item-{own}"))).await.unwrap();
    assert_eq!(own_row.attr("data-can-decide").await.unwrap().as_deref(), Some("false"));
    assert!(own_row.find(Locator::Css("form.decide")).await.is_err(), "no form on the access they granted");
    let refusal = own_row.find(Locator::Css(".refusal")).await.unwrap().text().await.unwrap();
    assert!(
        refusal.contains("you wrote this role assignment") && refusal.contains("another reviewer must decide it"),
        "the refusal says why: {refusal}"
    );
    decide(&client, reader, "approve", "reads the orders container for the invoice job, used every day").await;
    assert!(text(&client, "#review-progress").await.contains("1 of 3 decided"));
    decide(&client, idle, "revoke", HOSTILE).await;
    assert!(text(&client, "#review-progress").await.contains("2 of 3 decided"));
    assert!(text(&client, &format!("#item-{idle}")).await.contains(HOSTILE), "the justification is shown as text");
    assert!(text(&client, "#review-log").await.contains("decided"));
    no_injection(&client).await;
    // A decision forced past the page is refused, with the reason.
    let (status, body) = fetch(
        &client,
        "POST",
        &format!("/api/reviews/{id}/items/{own}/decision"),
        Some(json!({"decision": "approve", "justification": "I granted it, so it is fine"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap_or_default().contains("another reviewer must decide it"),
        "{body}"
    );
    shot(&client, "reviews-reviewer-two").await;
    let wider = client
        .execute(
            "const s = document.querySelector('#review-items').parentElement; return s.scrollWidth - s.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert!(wider.as_i64().unwrap() <= 0, "the items fit 1280 px without scrolling: {wider} px more");
    client.set_window_size(390, 844).await.unwrap();
    open(&client, &base, &path).await;
    let overflow = client
        .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth", vec![])
        .await
        .unwrap();
    assert!(overflow.as_i64().unwrap() <= 0, "the page fits 390 px: {overflow} px more");
    shot(&client, "reviews-review-390px").await;
    client.execute(&format!("document.querySelector('#item-{own}').scrollIntoView()"), vec![]).await.unwrap();
    shot(&client, "reviews-review-390px-items").await;
    client.set_window_size(1280, 900).await.unwrap();
    sign_out(&client).await;

    // Reviewer One decides the last item, which completes the review.
    sign_in_as(&client, &base, "Reviewer", ONE, secret).await;
    open(&client, &base, &path).await;
    assert_eq!(item_of(&client, &granted_by_two).await, own);
    assert_eq!(
        client
            .find(Locator::Css(&format!("#item-{own}")))
            .await
            .unwrap()
            .attr("data-can-decide")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    decide(&client, own, "dont_know", "ask the owner of the ingest job whether it still writes").await;
    wait_for(
        &client,
        "the review completed",
        "return document.querySelector('#review-state')?.textContent === 'completed' || null",
    )
    .await;
    assert!(text(&client, "#review-progress").await.contains("3 of 3 decided"));
    assert!(client.find(Locator::Css("#review-items form.decide")).await.is_err(), "nothing left to decide");
    shot(&client, "reviews-completed").await;
    sign_out(&client).await;

    // The Auditor: the log, and the decisions in Microsoft Graph's shape.
    sign_in_as(&client, &base, "Auditor", "Avery Auditor", secret).await;
    assert_eq!(
        nav(&client).await,
        json!(["/", "/incidents", "/findings", "/dashboards", "/access", "/evidence", "/reviews"])
    );
    open(&client, &base, &path).await;
    assert_eq!(text(&client, "#review-state").await, "completed");
    client
        .find(Locator::Css(&format!("#review-items a[href='/principals/{granted_by_two}']")))
        .await
        .expect("an Auditor opens the principal's page from the item");
    let actions = client
        .execute(
            "return [...document.querySelectorAll('#review-log tr[data-action]')].map(r => r.dataset.action)",
            vec![],
        )
        .await
        .unwrap();
    let actions: Vec<&str> = actions.as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "decided").count(), 3, "{actions:?}");
    assert!(actions.contains(&"started") && actions.contains(&"completed"), "{actions:?}");
    no_injection(&client).await;
    shot(&client, "reviews-auditor").await;
    let href = client.find(Locator::Css("#download-decisions")).await.unwrap().attr("href").await.unwrap().unwrap();
    assert_eq!(href, format!("/api/reviews/{id}/decisions"));
    let (status, graph) = fetch(&client, "GET", &href, None).await;
    assert_eq!(status, 200, "{graph}");
    assert!(
        graph["@odata.context"].as_str().unwrap_or_default().contains("accessReviewInstanceDecisionItem"),
        "{graph}"
    );
    let decisions: Vec<(String, String, String)> = graph["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["principal"]["id"].as_str().unwrap_or_default().to_string(),
                d["decision"].as_str().unwrap_or_default().to_string(),
                d["reviewedBy"]["displayName"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected = [
        (granted_by_two.clone(), "DontKnow", ONE),
        (container_reader.clone(), "Approve", TWO),
        (unused.clone(), "Deny", TWO),
    ];
    assert_eq!(decisions.len(), 3, "{graph}");
    for (principal, decision, by) in expected {
        assert!(
            decisions.iter().any(|d| d.0 == principal && d.1 == decision && d.2 == by),
            "{principal}: {decision} by {by} in {decisions:?}"
        );
    }
    for d in graph["value"].as_array().unwrap() {
        let by = d["reviewedBy"]["id"].as_str().unwrap_or_default();
        assert!(by == one || by == two, "reviewedBy.id is the reviewer's object id: {d}");
        assert!(!d["justification"].as_str().unwrap_or_default().is_empty(), "{d}");
    }
    // The review completed early: every item not reviewed.
    let (status, graph) =
        fetch(&client, "GET", &format!("/api/{}/decisions", early.trim_start_matches('/')), None).await;
    assert_eq!(status, 200, "{graph}");
    let not_reviewed = graph["value"].as_array().unwrap().iter().filter(|d| d["decision"] == "NotReviewed").count();
    assert_eq!(not_reviewed, 3, "{graph}");
    only_local_requests(&client, &base).await;
    sign_out(&client).await;

    // Stopped, the database's chains verify, the review's log among them.
    let status = tokio::task::spawn_blocking(move || serve.stop()).await.unwrap();
    assert!(status.success(), "serve stopped cleanly: {status}");
    let out = tokentrail(&["verify", "--db", db.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("access_review_log chain verified"), "{stdout}");

    // The open review's due date moved into the past (the API takes only future ones):
    // the list and its page say it is overdue.
    let serve = tokio::task::spawn_blocking({
        let (dir, db) = (dir.path().to_path_buf(), db.clone());
        move || {
            {
                let store = tokentrail::store::Store::open(&db, &tokentrail::store::StoreOptions::default()).unwrap();
                let changed = store
                    .connection()
                    .unwrap()
                    .execute(
                        "UPDATE access_reviews SET due_at = ?::TIMESTAMPTZ WHERE name = 'Left open'",
                        [stamp(Utc::now() - Duration::days(2))],
                    )
                    .unwrap();
                assert_eq!(changed, 1);
            }
            Serve::start(&dir, &db)
        }
    })
    .await
    .unwrap();
    let base = serve.base.clone();
    sign_in_as(&client, &base, "Auditor", "Avery Auditor", Some(&serve.secret)).await;
    open(&client, &base, "/reviews").await;
    let late = client
        .execute(
            "return [...document.querySelectorAll('#reviews-list tr.review')].map(r => [r.querySelector('a').textContent, r.dataset.state, !!r.querySelector('.due.overdue'), r.querySelector('.state').textContent])",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        late,
        json!([
            ["Left open", "overdue", true, "overdue"],
            ["Early close", "completed", false, "completed"],
            ["Q4 Cosmos DB data access", "completed", false, "completed"]
        ])
    );
    shot(&client, "reviews-overdue").await;
    client.find(Locator::Css("#reviews-list tr[data-state=overdue] a")).await.unwrap().click().await.unwrap();
    ready(&client).await;
    assert_eq!(text(&client, "#review-state").await, "overdue");
    assert!(client.find(Locator::Css("#review-facts .due.overdue")).await.is_ok());
    client.close().await.unwrap();
    let status = tokio::task::spawn_blocking(move || serve.stop()).await.unwrap();
    assert!(status.success(), "serve stopped cleanly: {status}");
    println!("screenshots in {}", screenshots().display());
}
