//! The dashboard in a real headless browser: Debian's Chromium driven by its ChromeDriver over the
//! W3C WebDriver protocol (plain HTTP and JSON, spoken here with reqwest). The browser resolves no
//! host but 127.0.0.1, so a page that fetched anything from elsewhere would fail, and the test also
//! reads every resource the pages loaded. Each run saves a screenshot of every page, at 1280×800
//! and at 390 px wide, to `docs/screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{expect_json, spawn_app};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Driver {
    http: reqwest::Client,
    base: String,
    session: String,
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Driver {
    async fn start() -> Self {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} is missing: scripts/test installs Debian's chromium and chromium-driver"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        // A loaded machine (the whole suite runs at once on two cores) can take seconds to start it.
        let mut up = false;
        for _ in 0..600 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "ChromeDriver did not answer on {base} within 60 s");
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            // Finding an element waits for it (a page after a submit may still be loading), and a
            // page may take long to load when the machine is busy.
            "timeouts": { "implicit": 15000, "pageLoad": 120000, "script": 30000 },
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,800", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-default-apps",
                    format!("--user-data-dir={}", profile.path().display()),
                    // Nothing but this machine resolves: a request leaving the origin fails.
                    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                ],
            },
        } } });
        let answer: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        Self { http, base, session, child, _profile: profile }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if answer["value"].get("error").is_some() {
            panic!("WebDriver {path}: {answer}");
        }
        answer["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let found =
            self.call(reqwest::Method::POST, "/element", Some(json!({ "using": "css selector", "value": css }))).await;
        found.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap().to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{el}/value"), Some(json!({ "text": text }))).await;
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{el}/click"), Some(json!({}))).await;
    }

    async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{el}/text"), None).await.as_str().unwrap().to_owned()
    }

    async fn script(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": [] }))).await
    }

    async fn window(&self, width: u32, height: u32) {
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({ "width": width, "height": height }))).await;
    }

    /// The page as a PNG in `docs/screenshots/NAME.png`, at the desktop size and at 390 px wide.
    async fn screenshots(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs").join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        for (suffix, width, height) in [("", 1280, 800), ("-phone", 390, 844)] {
            self.window(width, height).await;
            let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
            std::fs::write(dir.join(format!("{name}{suffix}.png")), STANDARD.decode(png.as_str().unwrap()).unwrap())
                .unwrap();
        }
        self.window(1280, 800).await;
    }

    /// Every resource the page loaded, and the page itself.
    async fn loaded(&self) -> Vec<String> {
        let urls = self
            .script("return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));")
            .await;
        urls.as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()).collect()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn the_dashboard_in_headless_chromium() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    app.put_kv("db-url", &fx.member_key, 16).await;
    let browser = Driver::start().await;
    let origin = app.proxy.clone();
    let mut loaded = Vec::new();

    // Closed pages lead to the sign-in page.
    browser.goto(&format!("{origin}/ui/users")).await;
    assert!(browser.url().await.ends_with("/ui/sign-in"));
    browser.screenshots("sign-in").await;
    loaded.extend(browser.loaded().await);
    // What a first visit loads, all of it from the origin (README: "In a browser").
    let bytes = browser
        .script("return [performance.getEntriesByType('navigation')[0]].concat(performance.getEntriesByType('resource')).reduce((n, e) => n + e.decodedBodySize, 0);")
        .await;
    println!("first visit: {bytes} bytes");

    // Sign in with the API key, typed into the labelled field.
    browser.type_into("#api_key", &fx.admin_key).await;
    browser.click("form[action='/ui/sign-in'] button").await;
    assert!(browser.url().await.ends_with("/ui/"), "{}", browser.url().await);
    assert!(browser.text("main").await.contains("first admin"));
    // The session cookie is not readable by scripts.
    assert_eq!(browser.script("return document.cookie;").await, "");
    browser.screenshots("overview").await;
    loaded.extend(browser.loaded().await);

    // Create a user; the key is shown once and works.
    browser.click("nav a[href='/ui/users']").await;
    browser.type_into("#name", "dana").await;
    browser.click("form[action='/ui/users'] button").await;
    let key = browser.text("#new-key").await;
    let me = expect_json(app.get("/users/me", &key).await, StatusCode::OK).await;
    assert_eq!(me["name"], "dana");
    browser.screenshots("users").await;
    loaded.extend(browser.loaded().await);

    // A form whose CSRF token was taken out changes nothing.
    let before =
        expect_json(app.get(&format!("/admin/orgs/{}/users", fx.org), &fx.admin_key).await, StatusCode::OK).await;
    browser.script("document.querySelector(\"form[action='/ui/users'] input[name=csrf]\").remove();").await;
    browser.type_into("#name", "mallory").await;
    browser.click("form[action='/ui/users'] button").await;
    assert!(browser.text("main").await.contains("Nothing was changed"));
    let after =
        expect_json(app.get(&format!("/admin/orgs/{}/users", fx.org), &fx.admin_key).await, StatusCode::OK).await;
    assert_eq!(before, after);

    // The audit entries and the chain's status.
    // The audit view is a read model: on a busy machine it may trail the write by a moment.
    let mut audit = String::new();
    for _ in 0..40 {
        browser.goto(&format!("{origin}/ui/audit?scope=all")).await;
        audit = browser.text("main").await;
        if audit.contains("user.create") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(audit.contains("Intact:") && audit.contains("user.create"), "{audit}");
    browser.screenshots("audit").await;
    loaded.extend(browser.loaded().await);

    // Sign out: the pages are closed again.
    browser.click("header form button").await;
    assert!(browser.url().await.ends_with("/ui/sign-in"));
    browser.goto(&format!("{origin}/ui/")).await;
    assert!(browser.url().await.ends_with("/ui/sign-in"), "closed after sign-out");

    // Nothing left the origin.
    let elsewhere: Vec<_> = loaded.iter().filter(|u| !u.starts_with(&origin)).collect();
    assert!(elsewhere.is_empty(), "requests leaving the origin: {elsewhere:?}");
    assert!(loaded.iter().any(|u| u.contains("/ui/assets/app-")), "the stylesheet was loaded: {loaded:?}");
}
