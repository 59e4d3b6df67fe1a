//! Real headless Chromium (Debian's `chromium` and `chromedriver`) driven over
//! WebDriver, for the UI tests: start a session, sign in through the development
//! issuer's page, wait for a page to be drawn, take screenshots (to
//! `<target>/tmp/ui-screenshots/`), check that a page loaded nothing from elsewhere.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `tokentrail demo` on a fresh database `name` in `dir` (started off the async runtime: it
/// takes a core for most of a minute), its base URL, and headless Chromium at 1400 × 900.
pub(crate) async fn demo_and_browser(
    dir: &std::path::Path,
    name: &str,
) -> (crate::common::demo::Demo, String, Driver, Client) {
    let db = dir.join(name);
    let demo = tokio::task::spawn_blocking(move || crate::common::demo::Demo::start(&db)).await.unwrap();
    let base = format!("http://{}", demo.address);
    let (driver, client) = browser(&dir.join("profile")).await;
    client.set_window_size(1400, 900).await.unwrap();
    (demo, base, driver, client)
}

/// chromedriver on a free port, and a WebDriver session in headless Chromium.
pub(crate) async fn browser(profile: &std::path::Path) -> (Driver, Client) {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (.ci/run installs Debian's chromium-driver)");
    let driver = Driver(driver);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                "--window-size=1280,900", format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    let client = ClientBuilder::rustls()
        .expect("TLS roots")
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session");
    (driver, client)
}

pub(crate) fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.len() > 1000, "a real screenshot of {name}");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Waits until the page script has drawn the page (`body[data-ready]`).
pub(crate) async fn ready(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done =
            client.execute("return document.body && document.body.dataset.ready === 'true'", vec![]).await.unwrap();
        if done == Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "page {} not drawn in 30 s", client.current_url().await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn open(client: &Client, base: &str, path: &str) {
    client.goto(&format!("{base}{path}")).await.unwrap();
    ready(client).await;
    let error = client
        .execute("const e = document.querySelector('main .error'); return e ? e.textContent : null", vec![])
        .await
        .unwrap();
    assert_eq!(error, Value::Null, "{path} shows an error");
}

pub(crate) async fn text(client: &Client, css: &str) -> String {
    client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
}

pub(crate) async fn sign_out(client: &Client) {
    client.find(Locator::Css("#who button")).await.unwrap().click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.current_url().await.unwrap().path().starts_with("/dev-issuer/") {
        assert!(Instant::now() < deadline, "signed out and sent to sign in again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every resource the page loaded came from the service.
pub(crate) async fn only_local_requests(client: &Client, base: &str) {
    let urls = client
        .execute("return performance.getEntriesByType('resource').map(e => e.name).concat([location.href])", vec![])
        .await
        .unwrap();
    for url in urls.as_array().unwrap() {
        let url = url.as_str().unwrap();
        assert!(url.starts_with(base), "{url} is outside the service");
    }
}

pub(crate) async fn wait_for(client: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = client.execute(script, vec![]).await.unwrap();
        if !value.is_null() && value != Value::Bool(false) {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs in through the development issuer's page (the same OIDC code + PKCE flow as
/// Entra ID) as `name` with `role`, giving the sign-in `secret` when the page asks for
/// one (`tokentrail serve` prints it), and waits for the page it lands on.
pub(crate) async fn sign_in_as(client: &Client, base: &str, role: &str, name: &str, secret: Option<&str>) {
    client.goto(&format!("{base}/")).await.unwrap();
    let url = client.current_url().await.unwrap();
    assert!(url.path().starts_with("/dev-issuer/authorize"), "sent to sign in: {url}");
    let page = client.source().await.unwrap();
    assert!(page.to_lowercase().contains("development"), "the sign-in page says it is for development");
    if let Some(secret) = secret {
        client
            .find(Locator::Css("input[name=secret]"))
            .await
            .expect("the page asks for the secret")
            .send_keys(secret)
            .await
            .unwrap();
    }
    client
        .find(Locator::Css("select[name=role]"))
        .await
        .unwrap()
        .select_by_value(&format!("TokenTrail.{role}"))
        .await
        .unwrap();
    let field = client.find(Locator::Css("input[name=name]")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(name).await.unwrap();
    client.find(Locator::Css("form button[type=submit]")).await.unwrap().click().await.unwrap();
    ready(client).await;
    assert!(text(client, "#who").await.contains(role));
    assert!(text(client, ".dev").await.contains("DEVELOPMENT"));
}

/// Words (runs of non-space text) in `css` elements of the page that a line break cuts in
/// two: each word's range has one box per line it is on. Raw bytes (`code.raw`) and text
/// that may break (`[data-may-break]`) are left out; at most 20 are returned.
pub(crate) async fn broken_words(client: &Client, css: &str) -> Vec<String> {
    let found = client
        .execute(
            "const bad = [];
             for (const root of document.querySelectorAll(arguments[0])) {
               const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
               let node;
               while ((node = walker.nextNode()) && bad.length < 20) {
                 if (node.parentElement.closest('code.raw, [data-may-break]')) continue;
                 const words = /\\S+/g;
                 let m;
                 while ((m = words.exec(node.data))) {
                   const range = document.createRange();
                   range.setStart(node, m.index);
                   range.setEnd(node, m.index + m[0].length);
                   const boxes = [...range.getClientRects()].filter((r) => r.width > 0 && r.height > 0);
                   const lines = new Set(boxes.map((r) => Math.round(r.top)));
                   if (lines.size > 1) bad.push(m[0] + ' (in ' + root.tagName.toLowerCase() + ')');
                 }
               }
             }
             return bad;",
            vec![json!(css)],
        )
        .await
        .unwrap();
    found.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

/// "null", "undefined" or "NaN" printed as a word in the page's main part (a value that
/// was absent, shown as text), with the text around it.
pub(crate) async fn absent_values_shown(client: &Client) -> Option<String> {
    let found = client
        .execute(
            "const t = document.querySelector('main').innerText;
             const m = /\\b(null|undefined|NaN)\\b/.exec(t);
             return m ? t.slice(Math.max(0, m.index - 60), m.index + 40) : null;",
            vec![],
        )
        .await
        .unwrap();
    found.as_str().map(String::from)
}

/// How many CSS pixels the page is wider than the window (0 when it fits).
pub(crate) async fn page_overflow(client: &Client) -> i64 {
    let wider = client
        .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth", vec![])
        .await
        .unwrap();
    wider.as_i64().unwrap_or(0)
}
