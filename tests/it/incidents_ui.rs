//! The 3 a.m. path through incidents, in real headless Chromium against `tokentrail demo`
//! signed in as a Responder: the overview leads with open incidents; one click opens an
//! incident whose who / from where / what / how it started / still going on are all in
//! the first screen at 1400 px; the story line, the evidence in time order and the log
//! are below; bulk acknowledge from the list reaches each incident's findings.

use crate::browser::{absent_values_shown, demo_and_browser, open, ready, shot, sign_in_as, text, wait_for};
use crate::common;

use common::demo::{Demo, http_get};
use fantoccini::Locator;
use serde_json::Value;
use std::time::{Duration, Instant};

fn api(demo: &Demo, path: &str) -> Value {
    let (status, body) = http_get(&demo.address, path, Some(&demo.token)).expect("the API answers");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_the_overview_to_an_incident_that_answers_who_what_where_and_whether_it_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (demo, base, _driver, client) = demo_and_browser(dir.path(), "incidents-ui.duckdb").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let incidents = loop {
        let page = api(&demo, "/api/incidents?status=open&limit=50");
        let rows = page["rows"].as_array().cloned().unwrap_or_default();
        if rows.len() >= 3 {
            break rows;
        }
        assert!(Instant::now() < deadline, "fewer than 3 open incidents 120 s after the demo started");
        tokio::time::sleep(Duration::from_secs(2)).await;
    };

    sign_in_as(&client, &base, "Responder", "Night Responder", None).await;

    // The overview leads with open incidents: above the findings' cards.
    open(&client, &base, "/").await;
    let order = client
        .execute(
            "const i = document.getElementById('open-incidents'), c = document.getElementById('overview-cards');
             return i && c ? i.getBoundingClientRect().top < c.getBoundingClientRect().top : null",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(order, Value::Bool(true), "open incidents come first on the overview");
    let listed = client.find_all(Locator::Css("#open-incidents tr[data-incident]")).await.unwrap();
    assert!(!listed.is_empty(), "the overview lists open incidents");

    // One click to the newest incident.
    let first = client.find(Locator::Css("#open-incidents tr[data-incident] a[href^='/incidents/']")).await.unwrap();
    let href = first.attr("href").await.unwrap().unwrap();
    client.execute("window.leaving = true", vec![]).await.unwrap();
    first.click().await.unwrap();
    wait_for(
        &client,
        "the incident page",
        "return (!window.leaving && document.body?.dataset.ready === 'true') || null",
    )
    .await;
    assert!(client.current_url().await.unwrap().path().ends_with(&href));
    let id: i64 = href.trim_start_matches("/incidents/").parse().unwrap();
    let detail = api(&demo, &format!("/api/incidents/{id}"));

    // Who, from where, what, how it started and whether it goes on: all in the first screen.
    let glance = client
        .execute(
            "const g = document.getElementById('glance'); if (!g) return null;
             const r = g.getBoundingClientRect();
             return {bottom: r.bottom, height: innerHeight,
                     rows: [...g.querySelectorAll('dt')].map(dt => [dt.textContent, dt.nextElementSibling.textContent.trim()])}",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        glance["bottom"].as_f64().unwrap() <= glance["height"].as_f64().unwrap(),
        "the answers fit the first screen: {glance}"
    );
    let rows: Vec<(String, String)> = glance["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_str().unwrap().to_string()))
        .collect();
    let labels: Vec<&str> = rows.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["Who", "From where", "What", "How it started", "Still going on"]);
    assert!(rows.iter().all(|(_, v)| !v.is_empty()), "every question has an answer: {rows:?}");
    let who = &rows[0].1;
    for p in detail["incident"]["principals"].as_array().unwrap() {
        let name = p["name"].as_str().or(p["id"].as_str()).unwrap();
        assert!(who.contains(name), "Who names {name}: {who}");
    }
    let first_finding = &detail["findings"][0];
    assert!(rows[3].1.contains(first_finding["title"].as_str().unwrap()), "how it started: {rows:?}");
    let going_on = &rows[4].1;
    match detail["incident"]["latest_event"].as_str() {
        Some(_) => {
            assert!(going_on.contains("last event") && going_on.contains("ago"), "{going_on}");
            // Live: the age counts up while the page is open (to the second in its data;
            // in its text only within the hour, past which it says hours).
            let age = || async {
                let age = client.find(Locator::Css("#active-badge")).await.unwrap().attr("data-age-seconds").await;
                age.unwrap().expect("the badge carries its age").parse::<i64>().unwrap()
            };
            let before = age().await;
            tokio::time::sleep(Duration::from_millis(2100)).await;
            let (after, later) = (age().await, text(&client, "#active-badge").await);
            assert!((2..=4).contains(&(after - before)), "the badge keeps time: {before} s, then {after} s");
            if after < 3600 {
                assert_ne!(&later, going_on, "within the hour its text counts the seconds");
            }
        }
        None => assert!(going_on.contains("no event"), "{going_on}"),
    }

    // Below: the story line (each finding linked), the evidence in time order, the log.
    let steps = client.find_all(Locator::Css("#story-line li a[href^='/findings/']")).await.unwrap();
    assert_eq!(steps.len(), detail["findings"].as_array().unwrap().len());
    let times = client
        .execute(
            "return [...document.querySelectorAll('#incident-events #evidence-table tbody tr td:first-child time')].map(t => t.getAttribute('datetime'))",
            vec![],
        )
        .await
        .unwrap();
    let times: Vec<&str> = times.as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(!times.is_empty() && times.windows(2).all(|w| w[0] <= w[1]), "evidence in time order: {times:?}");
    let log = text(&client, "#incident-log").await;
    assert!(log.contains("created"), "{log}");
    if let Some(around) = absent_values_shown(&client).await {
        panic!("the incident page prints an absent value: …{around}…");
    }
    shot(&client, "incident").await;
    // The README's pictures of the pages an incident links to.
    open(&client, &base, &format!("/findings/{}", first_finding["id"])).await;
    shot(&client, "finding").await;
    if let Some(p) = detail["incident"]["principals"][0]["id"].as_str() {
        open(&client, &base, &format!("/principals/{p}")).await;
        shot(&client, "principal").await;
    }

    // Triage from the list: select two incidents, acknowledge them with a comment.
    open(&client, &base, "/incidents").await;
    let picked: Vec<i64> = incidents.iter().take(2).map(|i| i["id"].as_i64().unwrap()).collect();
    for id in &picked {
        client.find(Locator::Css(&format!("input.pick[value='{id}']"))).await.unwrap().click().await.unwrap();
    }
    client.find(Locator::Css("#bulk-comment")).await.unwrap().send_keys("night sweep: on it").await.unwrap();
    client.find(Locator::Css("button[data-bulk=acknowledge]")).await.unwrap().click().await.unwrap();
    let note = wait_for(
        &client,
        "the bulk result",
        "const n = document.getElementById('bulk-note'); return n && /incidents changed/.test(n.textContent) ? n.textContent : null",
    )
    .await;
    assert!(note.as_str().unwrap().contains("2 of 2 incidents changed"), "{note}");
    ready(&client).await;
    for id in picked {
        let d = api(&demo, &format!("/api/incidents/{id}"));
        assert_eq!(d["incident"]["status"], "acknowledged", "incident {id}");
        assert!(d["log"].as_array().unwrap().iter().any(|l| l["action"] == "acknowledged" && l["changed_by"].as_str().unwrap().contains("Night Responder")));
        let finding = d["findings"][0]["id"].as_i64().unwrap();
        let history = api(&demo, &format!("/api/findings/{finding}/history"));
        assert!(
            history.as_array().unwrap().iter().any(|h| h["comment"] == format!("incident {id}: night sweep: on it")),
            "each finding keeps its own history: {history}"
        );
    }

    client.close().await.unwrap();
    assert!(demo.interrupt().success());
}
