//! Issue 32's investigation, the way on-call meets it: signed in on `tokentrail demo` in
//! real headless Chromium. Every address, principal, account and collection in a table is
//! a link (to Search with that filter, or the principal's page) for the roles those pages
//! let in; a principal's page opens by its UPN or display name and links out to Entra ID.

use crate::api::path_segment;
use crate::browser::{demo_and_browser, open, shot, sign_in_as, sign_out, text, wait_for};
use crate::common;

use common::demo::{Demo, http_get};
use fantoccini::{Client, Locator};
use serde_json::Value;
use std::time::{Duration, Instant};

fn api(demo: &Demo, path: &str) -> Value {
    let (status, body) = http_get(&demo.address, path, Some(&demo.token)).expect("the API answers");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn rows(page: &Value) -> Vec<Value> {
    page["rows"].as_array().cloned().unwrap_or_default()
}

/// The `href` of every link in `main` whose href starts with `prefix`.
async fn hrefs(client: &Client, prefix: &str) -> Vec<String> {
    let found = client
        .execute(
            "return [...document.querySelectorAll('main a[href]')].map(a => a.getAttribute('href'))\
             .filter(h => h.startsWith(arguments[0]))",
            vec![Value::String(prefix.into())],
        )
        .await
        .unwrap();
    found.as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_string()).collect()
}

/// Clicks `css` and waits until the page it loads is drawn.
async fn follow(client: &Client, css: &str) {
    client.execute("window.leaving = true", vec![]).await.unwrap();
    client.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
    wait_for(client, "the next page", "return (!window.leaving && document.body?.dataset.ready === 'true') || null")
        .await;
}

async fn value_of(client: &Client, css: &str) -> String {
    client.find(Locator::Css(css)).await.unwrap().prop("value").await.unwrap().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_principals_accounts_and_collections_are_links_for_those_let_in() {
    let dir = tempfile::tempdir().unwrap();
    let (demo, base, _driver, client) = demo_and_browser(dir.path(), "investigation.duckdb").await;
    sign_in_as(&client, &base, "Responder", "Investigating Responder", None).await;

    // A data operation of a principal that signed in, with an address, account and collection.
    let deadline = Instant::now() + Duration::from_secs(90);
    let request = loop {
        let found = rows(&api(&demo, "/api/search/requests?auth=entra_id&limit=200"))
            .into_iter()
            .find(|r| r["client_ip"].is_string() && r["collection_name"].is_string() && r["account"].is_string());
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no data operation within 90 s of the demo start");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let s = |k: &str| request[k].as_str().unwrap().to_string();
    let (ip, account, collection, principal) = (s("client_ip"), s("account"), s("collection_name"), s("principal_id"));

    // Search's table: each value a link to Search with that filter (encoded), the principal to its page.
    open(&client, &base, &format!("/search?tab=requests&principal={principal}")).await;
    let to_search = hrefs(&client, "/search?").await;
    let enc = |v: &str| -> String { url::form_urlencoded::byte_serialize(v.as_bytes()).collect() };
    for (param, value) in [("ip", &ip), ("account", &account), ("collection", &collection)] {
        let want = format!("/search?tab=requests&{param}={}", enc(value));
        assert!(to_search.contains(&want), "a link {want} among {to_search:?}");
    }
    assert!(hrefs(&client, "/principals/").await.contains(&format!("/principals/{principal}")));
    // Following the address opens Search filtered by it, with rows, the filter in its form.
    follow(&client, &format!("main td a[href='/search?tab=requests&ip={}']", enc(&ip))).await;
    assert_eq!(value_of(&client, "#f-ip").await, ip);
    assert_eq!(text(&client, ".tabs a[aria-current]").await, "Data operations");
    let shown: usize = text(&client, "#search-count").await.split(' ').next().unwrap().parse().unwrap();
    assert!(shown > 0, "Search by the linked address shows rows");

    // The sign-ins tab: the sign-in address links to the sign-ins filtered by it.
    let signin = rows(&api(&demo, &format!("/api/search/signins?principal={principal}&limit=100")))
        .into_iter()
        .find(|r| r["ip_address"].is_string());
    if let Some(signin) = signin {
        let address = signin["ip_address"].as_str().unwrap();
        open(&client, &base, &format!("/search?tab=signins&principal={principal}")).await;
        let want = format!("/search?tab=signins&ip={}", enc(address));
        assert!(hrefs(&client, "/search?").await.contains(&want), "a link {want}");
    }

    // The principal page opens by its UPN (or display name) as well as its id, and links out to Entra ID.
    let profile = api(&demo, &format!("/api/principals/{principal}"));
    let names = [profile["principal"]["principal_name"].as_str(), profile["principal"]["display_name"].as_str()];
    let mut opened = 0;
    for name in names.into_iter().flatten() {
        // Only a name that is this principal's alone resolves to it.
        let (status, _) =
            http_get(&demo.address, &format!("/api/principals/{}", path_segment(name)), Some(&demo.token)).unwrap();
        if status != 200 {
            continue;
        }
        open(&client, &base, &format!("/principals/{}", path_segment(name))).await;
        assert!(text(&client, "main .facts").await.contains(&principal), "{name} opens {principal}");
        let entra = client.find(Locator::Css("#entra-link")).await.unwrap().attr("href").await.unwrap().unwrap();
        assert!(entra.starts_with("https://portal.azure.com/#view/") && entra.contains(&principal), "{entra}");
        // Its tables link addresses and accounts to Search too.
        assert!(!hrefs(&client, "/search?tab=").await.is_empty(), "the principal page links to Search");
        opened += 1;
    }
    assert!(opened > 0, "the principal's page opened by a name of its own: {names:?}");
    // Search's principal filter takes the UPN.
    if let Some(upn) = names[0] {
        open(&client, &base, &format!("/search?tab=requests&principal={}", enc(upn))).await;
        let shown: usize = text(&client, "#search-count").await.split(' ').next().unwrap().parse().unwrap();
        assert!(shown > 0, "Search by {upn} shows rows");
    }

    // Presets: the last 24 h up to now on the principal page and on Search, into the From and To fields.
    open(&client, &base, &format!("/principals/{principal}")).await;
    assert!(text(&client, "#timeline-title").await.contains(" of "), "the timeline says how many rows in all");
    for path in [format!("/principals/{principal}"), format!("/search?tab=requests&principal={principal}")] {
        open(&client, &base, &path).await;
        follow(&client, "main a[data-preset='24 h']").await;
        let url = client.current_url().await.unwrap();
        let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        let from = chrono::DateTime::parse_from_rfc3339(&query["from"]).unwrap();
        let to = chrono::DateTime::parse_from_rfc3339(&query["to"]).unwrap();
        assert_eq!((to - from).num_hours(), 24, "{url}");
        assert!((chrono::Utc::now() - to.to_utc()).num_minutes().abs() < 5, "{url} ends now");
        assert_eq!(value_of(&client, "#f-from").await, query["from"], "{url}");
        assert!(client.find(Locator::Css("#filter-error")).await.is_err(), "{url} is accepted");
    }

    // Readable tables: a skip link first, and every scrolling table reachable and named for a keyboard.
    let first = client
        .execute("const a = document.querySelector('body a'); return [a.className, a.getAttribute('href')]", vec![])
        .await
        .unwrap();
    assert_eq!(first, serde_json::json!(["skip", "#main"]));
    let unreachable = client
        .execute(
            "return [...document.querySelectorAll('main .scroll')].filter(s => s.tabIndex !== 0 || !s.getAttribute('aria-label')).length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unreachable, 0, "every .scroll has tabindex=0 and a label");

    // A finding's evidence opens in the SQL console, pre-filled, and runs there.
    let deadline = Instant::now() + Duration::from_secs(90);
    let finding = loop {
        if let Some(found) = rows(&api(&demo, "/api/findings?limit=1")).into_iter().next() {
            break found;
        }
        assert!(Instant::now() < deadline, "no finding within 90 s of the demo start");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    {
        open(&client, &base, &format!("/findings/{}", finding["id"])).await;
        // Each evidence row says where its token was signed in from, marked when the request came from elsewhere.
        let (rows_shown, signin_cells, marked, elsewhere) = {
            let counts = client
                .execute(
                    "return ['#evidence-table tr.evidence-row', '#evidence-table td.signin-address',
                             '#evidence-table tr[data-elsewhere] .elsewhere', '#evidence-table tr[data-elsewhere]']
                        .map(css => document.querySelectorAll(css).length)",
                    vec![],
                )
                .await
                .unwrap();
            let n = |i: usize| counts[i].as_u64().unwrap();
            (n(0), n(1), n(2), n(3))
        };
        assert_eq!(rows_shown, signin_cells, "each evidence row has its token's sign-in address");
        assert_eq!(marked, elsewhere, "each row from elsewhere is marked");
        follow(&client, "#evidence-sql").await;
        let sql = value_of(&client, "#sql").await;
        assert!(sql.contains(&format!("WHERE f.id = {}", finding["id"])), "{sql}");
        client.find(Locator::Css("#run")).await.unwrap().click().await.unwrap();
        let outcome = wait_for(
            &client,
            "the evidence query's result",
            "const r = document.querySelector('#result'); return (r && (r.querySelector('table') || r.querySelector('.error'))) ? r.textContent : null",
        )
        .await;
        assert!(!text(&client, "#result").await.is_empty());
        assert!(client.find(Locator::Css("#result .error")).await.is_err(), "the evidence SQL runs: {outcome}");
        assert!(client.find(Locator::Css("#result table")).await.is_ok(), "the evidence SQL gives rows: {outcome}");
    }

    // An Auditor may open principals but not Search: the addresses are text, not links that refuse them.
    sign_out(&client).await;
    sign_in_as(&client, &base, "Auditor", "Looking Auditor", None).await;
    open(&client, &base, &format!("/principals/{principal}")).await;
    assert!(hrefs(&client, "/search").await.is_empty(), "an Auditor is offered no Search link");
    assert!(text(&client, "main").await.contains(&account));

    client.close().await.unwrap();
    assert!(demo.interrupt().success());
}

/// A path segment encoded as JavaScript's `encodeURIComponent` does.
fn uri_component(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The boxes of every text of the hourly chart that overlap another's: none when its labels fit.
async fn overlapping_chart_labels(client: &Client) -> (usize, Vec<String>) {
    let found = client
        .execute(
            "const texts = [...document.querySelectorAll('#hourly-chart svg text')];
             const boxes = texts.map(t => [t.textContent, t.getBoundingClientRect()]);
             const bad = [];
             for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
               const [a, p] = boxes[i], [b, q] = boxes[j];
               if (p.left < q.right && q.left < p.right && p.top < q.bottom && q.top < p.bottom) bad.push(a + ' / ' + b);
             }
             return [document.querySelectorAll('#hourly-chart svg text.x-label').length, bad];",
            vec![],
        )
        .await
        .unwrap();
    let labels = found[0].as_u64().unwrap() as usize;
    (labels, found[1].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect())
}

/// How many CSS pixels the document is wider than the window.
async fn wider_than_window(client: &Client) -> i64 {
    let v = client.execute("return document.scrollingElement.scrollWidth - window.innerWidth", vec![]).await.unwrap();
    v.as_i64().unwrap()
}

/// Issue 32's on-call page: a principal's activity per hour (SVG bars, labels that do not
/// overlap), its data-access addresses against its sign-in addresses with the ones that never
/// signed in marked, links out to the Azure portal for each account; and at 390 px every
/// table of the principal, incident, finding, findings and search pages is cards, nothing to
/// scroll sideways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_principal_page_shows_hours_addresses_and_portal_links_and_cards_on_a_phone() {
    let dir = tempfile::tempdir().unwrap();
    let (demo, base, _driver, client) = demo_and_browser(dir.path(), "oncall-page.duckdb").await;
    sign_in_as(&client, &base, "Responder", "Paged Responder", None).await;

    // A principal whose requests came from an address none of its sign-ins did, one that signed
    // in from where it read if there is one, and with a known subscription and group.
    let deadline = Instant::now() + Duration::from_secs(180);
    let (principal, profile) = 'found: loop {
        let requests = rows(&api(&demo, "/api/search/requests?auth=entra_id&limit=500"));
        let mut seen = std::collections::BTreeSet::new();
        let mut fallback = None;
        for r in &requests {
            let Some(p) = r["principal_id"].as_str() else { continue };
            if !seen.insert(p.to_string()) {
                continue;
            }
            let profile = api(&demo, &format!("/api/principals/{p}"));
            let addresses = profile["addresses"].as_array().unwrap();
            let marked = addresses.iter().any(|a| a["no_signin"] == true);
            let both = addresses.iter().any(|a| a["data_access"] == true && a["signed_in"] == true);
            let portal = profile["data_access"][0]["subscription_id"].is_string();
            if marked && both && portal {
                break 'found (p.to_string(), profile);
            }
            if marked && portal && fallback.is_none() {
                fallback = Some((p.to_string(), profile));
            }
        }
        if let Some(found) = fallback.filter(|_| Instant::now() + Duration::from_secs(60) > deadline) {
            break found;
        }
        assert!(Instant::now() < deadline, "no principal with data access from an address it never signed in from");
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    open(&client, &base, &format!("/principals/{principal}")).await;

    // The hourly chart: an SVG with bars, four strips, axis labels that do not overlap.
    wait_for(
        &client,
        "the hourly chart's bars",
        "return document.querySelectorAll('#hourly-chart svg rect.hbar').length || null",
    )
    .await;
    let hours = profile["hourly"].as_array().unwrap();
    assert_eq!(profile["hourly_bucket_secs"], 3600);
    let requests: i64 = hours.iter().map(|h| h["requests"].as_i64().unwrap()).sum();
    assert!(requests > 0 && hours.len() >= 24, "{} hours, {requests} requests", hours.len());
    let strips = client.find_all(Locator::Css("#hourly-chart svg text.strip-title")).await.unwrap();
    assert_eq!(strips.len(), 4);
    let (labels, overlapping) = overlapping_chart_labels(&client).await;
    assert!(labels >= 2 && labels < hours.len(), "{labels} axis labels for {} hours: thinned, not gone", hours.len());
    assert!(overlapping.is_empty(), "chart labels overlap: {overlapping:?}");

    // The addresses: exactly the API's unsigned ones marked, an address with both not.
    let addresses = profile["addresses"].as_array().unwrap();
    let marked: Vec<String> = addresses
        .iter()
        .filter(|a| a["no_signin"] == true)
        .map(|a| a["address"].as_str().unwrap().to_string())
        .collect();
    let shown = client
        .execute(
            "return [...document.querySelectorAll('#addresses tr[data-no-signin]')]
                .filter(tr => tr.querySelector('.no-signin')).map(tr => tr.dataset.address)",
            vec![],
        )
        .await
        .unwrap();
    let shown: Vec<String> = shown.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(shown, marked.iter().take(300).cloned().collect::<Vec<_>>(), "the marked addresses, first");
    if let Some(both) = addresses.iter().find(|a| a["data_access"] == true && a["signed_in"] == true) {
        let ip = both["address"].as_str().unwrap();
        let row = client
            .execute(
                "const tr = [...document.querySelectorAll('#addresses tbody tr')].find(tr => tr.dataset.address === arguments[0]);
                 return tr ? [tr.hasAttribute('data-no-signin'), !!tr.querySelector('.no-signin'), tr.textContent] : null",
                vec![Value::String(ip.into())],
            )
            .await
            .unwrap();
        assert_eq!((&row[0], &row[1]), (&Value::Bool(false), &Value::Bool(false)), "{ip} signed in and read: {row}");
    }
    let link = format!(
        "/search?tab=requests&ip={}",
        url::form_urlencoded::byte_serialize(marked[0].as_bytes()).collect::<String>()
    );
    assert!(
        hrefs(&client, "/search?tab=requests&ip=").await.contains(&link),
        "the marked address links to Search: {link}"
    );

    // What it touched: each account with its link out to the Azure portal.
    let first = &profile["data_access"][0];
    let s = |k: &str| first[k].as_str().unwrap().to_string();
    let want = format!(
        "https://portal.azure.com/#@/resource/subscriptions/{}/resourceGroups/{}/providers/Microsoft.DocumentDB/databaseAccounts/{}/overview",
        uri_component(&s("subscription_id")),
        uri_component(&s("resource_group")),
        uri_component(&s("account"))
    );
    let href = client
        .find(Locator::Css("#data-access tbody tr:first-child a.portal-link"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(href, want);
    // The README's picture: the last 24 hours of its data, the addresses and the chart in view.
    let to = profile["to"].as_str().unwrap();
    let from = (chrono::DateTime::parse_from_rfc3339(to).unwrap() - chrono::Duration::hours(24)).to_rfc3339();
    let enc = |v: &str| -> String { url::form_urlencoded::byte_serialize(v.as_bytes()).collect() };
    client.set_window_size(1400, 1150).await.unwrap();
    open(&client, &base, &format!("/principals/{principal}?from={}&to={}", enc(&from), enc(to))).await;
    wait_for(&client, "the chart", "return document.querySelector('#hourly-chart svg') || null").await;
    let (labels, overlapping) = overlapping_chart_labels(&client).await;
    assert!(labels >= 2 && overlapping.is_empty(), "24 h: {labels} labels, overlapping {overlapping:?}");
    shot(&client, "principal-oncall").await;

    // The other pages of the night: an incident, a finding, the findings list, Search.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (finding, incident) = loop {
        let finding = rows(&api(&demo, "/api/findings?limit=1")).into_iter().next();
        let incident = rows(&api(&demo, "/api/incidents?limit=1")).into_iter().next();
        if let (Some(f), Some(i)) = (finding, incident) {
            break (f["id"].clone(), i["id"].clone());
        }
        assert!(Instant::now() < deadline, "no finding and incident within 120 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };

    // At 390 px: each table's rows are cards, each cell labelled before it; nothing wider than the window.
    client.set_window_size(390, 900).await.unwrap();
    let pages = [
        format!("/principals/{principal}"),
        format!("/incidents/{incident}"),
        format!("/findings/{finding}"),
        "/findings".to_string(),
        format!("/search?tab=requests&principal={principal}"),
    ];
    for path in &pages {
        open(&client, &base, path).await;
        let inner = client.execute("return window.innerWidth", vec![]).await.unwrap().as_i64().unwrap();
        assert!(inner <= 420, "the window is a phone's: {inner} px");
        let cards = client
            .execute(
                "const tds = [...document.querySelectorAll('main table:not(.u-legend) tbody td')];
                 const label = (td) => getComputedStyle(td, '::before').content;
                 return [tds.length,
                         tds.filter(td => getComputedStyle(td).display !== 'block').length,
                         tds.filter(td => td.dataset.label && label(td) !== JSON.stringify(td.dataset.label)).length,
                         tds.filter(td => td.dataset.label).length,
                         document.querySelectorAll('main table:not(.u-legend) thead th').length
                           - [...document.querySelectorAll('main table:not(.u-legend) thead')].filter(h => getComputedStyle(h).display === 'none')
                               .reduce((n, h) => n + h.querySelectorAll('th').length, 0)]",
                vec![],
            )
            .await
            .unwrap();
        let n = |i: usize| cards[i].as_i64().unwrap();
        assert!(n(0) > 0, "{path} has table cells");
        assert_eq!(n(1), 0, "{path}: every cell is a block (a card's line)");
        assert_eq!(n(3), n(0), "{path}: every cell has its column's label");
        assert_eq!(n(2), 0, "{path}: every cell shows its label before it");
        assert_eq!(n(4), 0, "{path}: no column headings shown above the cards");
        let wider = wider_than_window(&client).await;
        if wider > 0 {
            let culprits = client
                .execute(
                    "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth)
                        .slice(-8).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right) + ': ' + (e.textContent || '').slice(0, 60))",
                    vec![],
                )
                .await
                .unwrap();
            panic!("{path} is {wider} px wider than the window at 390 px: {culprits}");
        }
        if path.starts_with("/principals/") {
            let (labels, overlapping) = overlapping_chart_labels(&client).await;
            assert!(labels >= 2 && overlapping.is_empty(), "at 390 px: {labels} labels, overlapping {overlapping:?}");
            shot(&client, "principal-oncall-390px").await;
        }
    }

    client.close().await.unwrap();
    assert!(demo.interrupt().success());
}
