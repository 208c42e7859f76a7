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

use crate::files::{file_team, upload, with_secret, SECRET};
use crate::helpers::{expect_json, spawn_app};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Driver {
    http: reqwest::Client,
    base: String,
    session: String,
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
    /// Where the browser saves downloads.
    downloads: tempfile::TempDir,
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
        let downloads = tempfile::tempdir().unwrap();
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
                "prefs": {
                    "download.default_directory": downloads.path().display().to_string(),
                    "download.prompt_for_download": false,
                },
            },
        } } });
        let answer: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        let driver = Self { http, base, session, child, _profile: profile, downloads };
        let params = json!({ "behavior": "allow", "downloadPath": driver.downloads.path().display().to_string() });
        driver
            .call(
                reqwest::Method::POST,
                "/goog/cdp/execute",
                Some(json!({ "cmd": "Browser.setDownloadBehavior", "params": params })),
            )
            .await;
        driver
    }

    /// Waits (up to two minutes: Argon2id runs in the page's JavaScript) until `condition`, a
    /// script's expression, is true; panics with `what` and the page's text otherwise.
    async fn wait_until(&self, condition: &str, what: &str) {
        for _ in 0..480 {
            let script = json!({ "script": format!("return !!({condition});"), "args": [] });
            if self.try_call(reqwest::Method::POST, "/execute/sync", Some(script)).await == Ok(Value::Bool(true)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let text = self.script("return document.body.innerText;").await;
        panic!("waited for {what}: {text}");
    }

    /// Clipboard access for the copy buttons, as a person grants it when the browser asks.
    async fn grant_clipboard(&self, origin: &str) {
        let grant = json!({ "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"], "origin": origin });
        let command = json!({ "cmd": "Browser.grantPermissions", "params": grant });
        self.call(reqwest::Method::POST, "/goog/cdp/execute", Some(command)).await;
    }

    /// A downloaded file's bytes, once the browser finished writing it.
    async fn downloaded(&self, name: &str) -> Vec<u8> {
        let path = self.downloads.path().join(name);
        for _ in 0..240 {
            if let Ok(bytes) = std::fs::read(&path) {
                return bytes;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("{name} was not downloaded into {}", self.downloads.path().display());
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body).await.unwrap_or_else(|answer| panic!("WebDriver {path}: {answer}"))
    }

    async fn try_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if answer["value"].get("error").is_some() {
            return Err(answer);
        }
        Ok(answer["value"].clone())
    }

    /// Something done to the element `css` is, found again when the page replaced it meanwhile
    /// (a navigation that finished after the element was found).
    async fn on_element(&self, method: reqwest::Method, css: &str, action: &str, body: Option<Value>) -> Value {
        for _ in 0..20 {
            let el = self.find(css).await;
            match self.try_call(method.clone(), &format!("/element/{el}{action}"), body.clone()).await {
                Ok(value) => return value,
                Err(answer) if answer["value"]["error"] == "stale element reference" => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(answer) => panic!("WebDriver {css}{action}: {answer}"),
            }
        }
        panic!("{css} kept going stale");
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
        self.on_element(reqwest::Method::POST, css, "/value", Some(json!({ "text": text }))).await;
    }

    async fn clear(&self, css: &str) {
        self.on_element(reqwest::Method::POST, css, "/clear", Some(json!({}))).await;
    }

    async fn click(&self, css: &str) {
        self.on_element(reqwest::Method::POST, css, "/click", Some(json!({}))).await;
    }

    async fn text(&self, css: &str) -> String {
        self.on_element(reqwest::Method::GET, css, "/text", None).await.as_str().unwrap().to_owned()
    }

    async fn script(&self, script: &str) -> Value {
        self.script_with(script, json!([])).await
    }

    /// A script with `arguments` (a script answering a promise is awaited).
    async fn script_with(&self, script: &str, arguments: Value) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": arguments }))).await
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
    browser.wait_until("location.pathname === '/ui/'", "the overview after signing in").await;
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
    browser.grant_clipboard(&origin).await;
    browser.click("button[data-copy='#new-key']").await;
    browser
        .wait_until("document.querySelector(\"button[data-copy='#new-key']\").textContent === 'Copied'", "the copy")
        .await;
    assert_eq!(
        browser.script("return navigator.clipboard.readText();").await,
        json!(key),
        "the copy button copied the key"
    );
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
    browser.wait_until("location.pathname === '/ui/sign-in'", "the sign-in page after signing out").await;
    browser.goto(&format!("{origin}/ui/")).await;
    assert!(browser.url().await.ends_with("/ui/sign-in"), "closed after sign-out");

    // Nothing left the origin.
    let elsewhere: Vec<_> = loaded.iter().filter(|u| !u.starts_with(&origin)).collect();
    assert!(elsewhere.is_empty(), "requests leaving the origin: {elsewhere:?}");
    assert!(loaded.iter().any(|u| u.contains("/ui/assets/app-")), "the stylesheet was loaded: {loaded:?}");
}

/// The page's crypto makes the bytes the Rust code makes from harden's test vectors, and opens them.
const VECTORS_CHECK: &str = r#"
const v = JSON.parse(arguments[0]), c = hardenCrypto, h = c.fromHex, i = v.inputs;
return (async () => {
  const owner = c.privateKeys(h(i.ownerX25519Secret), h(i.ownerMlKemSeed));
  const ctx = { kind: i.kind, org: i.org, owner: i.owner, name: h(i.name) };
  const w = await c.wrapForOwner(owner, ctx, i.epoch, h(i.dataKey), h(v.ownerSealedWrap.eseed), h(v.ownerSealedWrap.nonce));
  const opened = await c.decryptValueAt(h(i.dataKey), ctx, i.version, i.epoch, h(v.valueV2.blob));
  const recipient = c.privateKeys(h(i.recipientX25519Secret), h(i.recipientMlKemSeed));
  const key = await c.unwrapDataKey(recipient, i.recipient, ctx, h(v.shareWrap.encryptedAesKeyEcc), h(v.shareWrap.encryptedAesKeyKyber));
  return {
    ownerSealedWrap: c.toHex(w.ecc) === v.ownerSealedWrap.encryptedAesKeyEcc && c.toHex(w.kyber) === v.ownerSealedWrap.encryptedAesKeyKyber,
    valueV2: opened.bound && c.toHex(opened.plaintext) === i.plaintext,
    shareWrap: c.toHex(key) === i.dataKey,
    bundleVerifies: c.verifyBundle(h(v.keyBundle.bundle), i.org, i.owner).fingerprint === v.keyBundle.fingerprint,
    bundleSigned: c.toHex(c.signBundle(owner, i.org, i.owner)) === v.keyBundle.bundle,
  };
})();
"#;

fn row_text(css: &str) -> String {
    format!("document.querySelector(\"{css}\")?.closest('tr')?.querySelector('[data-plaintext]')?.textContent")
}

async fn sign_in_with_key(browser: &Driver, origin: &str, key: &str) {
    browser.goto(&format!("{origin}/ui/sign-in")).await;
    browser.type_into("#api_key", key).await;
    browser.click("form[action='/ui/sign-in'] button").await;
    browser.wait_until("location.pathname === '/ui/'", "the overview after signing in").await;
    let url = browser.url().await;
    assert!(url.ends_with("/ui/"), "{url}: {}", browser.text("main").await);
}

async fn unlock(browser: &Driver) {
    browser.type_into("#user-secret", SECRET).await;
    browser.click("#unlock button[type=submit]").await;
    browser.wait_until("!document.querySelector('#locked-bar').hidden", "the page to unlock the keys").await;
}

#[tokio::test]
async fn the_vault_decrypts_and_encrypts_in_the_browser_as_the_rust_client_does() {
    let app = crate::files::app().await;
    let team = file_team(&app, "starter").await;
    let origin = app.proxy.clone();
    let put = |key: &'static str, value: &'static str| {
        let (app, owner) = (&app, team.owner.clone());
        async move {
            let body = json!({ "valueB64": STANDARD.encode(value) });
            expect_json(
                with_secret(app, reqwest::Method::PUT, &format!("/v1/kv/{key}"), &owner, Some(body)).await,
                StatusCode::CREATED,
            )
            .await
        }
    };
    // Written by the Rust client library (behind the Proxy): two values, one shared; two files, one shared.
    put("db-url", "postgres://written-by-rust").await;
    put("page-shares-this", "shared by the page").await;
    let body = json!({ "recipientUserId": team.member_id, "permission": "read", "alias": "the database" });
    expect_json(
        with_secret(&app, reqwest::Method::POST, "/v1/kv/db-url/shares", &team.owner, Some(body)).await,
        StatusCode::CREATED,
    )
    .await;
    let rust_file: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let made = expect_json(upload(&app, &team.owner, "from-rust.bin", &rust_file).await, StatusCode::CREATED).await;
    let rust_file_id = made["id"].as_str().unwrap().to_owned();
    let made =
        expect_json(upload(&app, &team.owner, "page-shares.txt", b"a file the page shares").await, StatusCode::CREATED)
            .await;
    let page_shared_file = made["id"].as_str().unwrap().to_owned();
    let body = json!({ "recipientUserId": team.member_id, "permission": "read" });
    expect_json(
        with_secret(&app, reqwest::Method::POST, &format!("/v1/files/{rust_file_id}/shares"), &team.owner, Some(body))
            .await,
        StatusCode::CREATED,
    )
    .await;

    let browser = Driver::start().await;
    sign_in_with_key(&browser, &origin, &team.owner).await;
    assert!(browser.text("#usage").await.contains("Plan: starter"), "{}", browser.text("main").await);
    browser.screenshots("overview-admin").await;
    browser.click("nav a[href='/ui/vault']").await;
    let loaded = browser.loaded().await;
    assert!(loaded.iter().any(|u| u.contains("/ui/assets/vault-")), "{loaded:?}");
    assert!(loaded.iter().all(|u| u.starts_with(&origin)), "requests leaving the origin: {loaded:?}");
    let vault_bytes = browser
        .script("return [performance.getEntriesByType('navigation')[0]].concat(performance.getEntriesByType('resource')).reduce((n, e) => n + e.decodedBodySize, 0);")
        .await;
    println!("the vault page loads {vault_bytes} bytes");
    let checks =
        browser.script_with(VECTORS_CHECK, json!([include_str!("../../domain/tests/harden-vectors.json")])).await;
    assert!(checks.as_object().unwrap().values().all(|ok| ok == true), "test vectors in the page: {checks}");
    browser.screenshots("vault-locked").await;

    // Reveal on click: the secret asked once, the value decrypted in the page.
    browser.click("button[data-reveal='db-url']").await;
    unlock(&browser).await;
    browser
        .wait_until(
            &format!("{} === 'postgres://written-by-rust'", row_text("button[data-reveal='db-url']")),
            "db-url revealed",
        )
        .await;
    // The names of files, sealed, open in the page too; the second reveal asks for nothing.
    browser
        .wait_until("document.querySelector('#file-list').innerText.includes('from-rust.bin')", "file names opened")
        .await;
    browser.click("button[data-reveal='page-shares-this']").await;
    browser
        .wait_until(
            &format!("{} === 'shared by the page'", row_text("button[data-reveal='page-shares-this']")),
            "a second reveal",
        )
        .await;
    browser.screenshots("vault").await;

    // Written in the page, read by Rust: owner-sealed and bound to its version.
    browser.type_into("#secret-name", "from-the-page").await;
    browser.type_into("#secret-value", "encrypted in the browser").await;
    browser.click("#put-secret button[type=submit]").await;
    browser
        .wait_until(
            "document.querySelector('#put-secret [data-result]').textContent.startsWith('Stored')",
            "the page's write",
        )
        .await;
    let read = expect_json(
        with_secret(&app, reqwest::Method::GET, "/v1/kv/from-the-page", &team.owner, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(STANDARD.decode(read["valueB64"].as_str().unwrap()).unwrap(), b"encrypted in the browser");
    assert_eq!(read["ownerSealed"], true, "the page sealed it as its owner");
    // Written again in the page: the key is reused (it verified as the owner's), the version bound.
    browser.clear("#secret-name").await;
    browser.type_into("#secret-name", "from-the-page").await;
    browser.type_into("#secret-value", "second version").await;
    browser.click("#put-secret button[type=submit]").await;
    browser
        .wait_until(
            "document.querySelector('#put-secret [data-result]').textContent.includes('version 2')",
            "the second write",
        )
        .await;
    let read = expect_json(
        with_secret(&app, reqwest::Method::GET, "/v1/kv/from-the-page", &team.owner, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(STANDARD.decode(read["valueB64"].as_str().unwrap()).unwrap(), b"second version");
    assert_eq!((read["version"].as_i64(), read["ownerSealed"].as_bool()), (Some(2), Some(true)));

    // Shared in the page (the recipient's bundle verified and pinned in the page), a record and a file.
    browser.click("details[data-details='page-shares-this'] summary").await;
    browser.type_into("details[data-details='page-shares-this'] input[name=alias]", "from the page").await;
    browser.click("details[data-details='page-shares-this'] button[type=submit]").await;
    browser.wait_until("document.querySelector(\"details[data-details='page-shares-this'] [data-result]\").textContent.startsWith('Shared')", "the page's share").await;
    let file_row = format!("tr:has(button[data-download='{page_shared_file}'])");
    browser.click(&format!("{file_row} details summary")).await;
    browser.click(&format!("{file_row} button[type=submit]")).await;
    browser
        .wait_until(
            &format!("document.querySelector(\"{file_row} [data-result]\").textContent.startsWith('Shared')"),
            "the page's file share",
        )
        .await;

    // A file written by Rust, downloaded and decrypted in the page, byte for byte.
    browser.click(&format!("button[data-download='{rust_file_id}']")).await;
    assert_eq!(browser.downloaded("from-rust.bin").await, rust_file);
    // A file encrypted and uploaded by the page, with progress, read by Rust.
    let local = browser.downloads.path().join("to-upload.txt");
    std::fs::write(&local, b"uploaded from the browser").unwrap();
    browser.type_into("#file", &local.display().to_string()).await;
    browser.type_into("#filename", "from-the-page.txt").await;
    browser.click("#upload button[type=submit]").await;
    browser
        .wait_until(
            "document.querySelector('#upload [data-result]').textContent.startsWith('Uploaded')",
            "the page's upload",
        )
        .await;
    assert_eq!(browser.script("return document.querySelector('#upload progress').value;").await, json!(1));
    let files =
        expect_json(with_secret(&app, reqwest::Method::GET, "/v1/files", &team.owner, None).await, StatusCode::OK)
            .await;
    let id = files["files"].as_array().unwrap().iter().find(|f| f["fileName"] == "from-the-page.txt").expect("listed")
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let opened = expect_json(
        with_secret(&app, reqwest::Method::GET, &format!("/v1/files/{id}"), &team.owner, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(STANDARD.decode(opened["contentB64"].as_str().unwrap()).unwrap(), b"uploaded from the browser");
    assert_eq!(opened["ownerSealed"], true, "the page sealed the file's key as its owner, as the Rust client does");

    // Lock: the plaintext leaves the page, and the next reveal asks again.
    browser.click("#lock").await;
    assert_eq!(browser.script(&format!("return {};", row_text("button[data-reveal='db-url']"))).await, json!(""));
    assert!(browser.script("return document.querySelector('#unlock').hidden;").await == json!(false));

    // The recipient: a share made by Rust and one made by the page open in the page; the page's
    // shares open with Rust.
    browser.click("header form button").await;
    sign_in_with_key(&browser, &origin, &team.member).await;
    browser.goto(&format!("{origin}/ui/vault")).await;
    let inbox =
        expect_json(with_secret(&app, reqwest::Method::GET, "/v1/kv/shared", &team.member, None).await, StatusCode::OK)
            .await;
    let share_of = |alias: &str| {
        inbox.as_array().unwrap().iter().find(|s| s["alias"] == alias).unwrap_or_else(|| panic!("{alias} in {inbox}"))
            ["shareId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (from_rust, from_page) = (share_of("the database"), share_of("from the page"));
    let opened = expect_json(
        with_secret(&app, reqwest::Method::GET, &format!("/v1/kv/shared/{from_page}"), &team.member, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(STANDARD.decode(opened["valueB64"].as_str().unwrap()).unwrap(), b"shared by the page");
    browser.click(&format!("button[data-share='{from_rust}']")).await;
    unlock(&browser).await;
    browser
        .wait_until(
            &format!("{} === 'postgres://written-by-rust'", row_text(&format!("button[data-share='{from_rust}']"))),
            "the Rust share revealed",
        )
        .await;
    browser.click(&format!("button[data-share='{from_page}']")).await;
    browser
        .wait_until(
            &format!("{} === 'shared by the page'", row_text(&format!("button[data-share='{from_page}']"))),
            "the page's share revealed",
        )
        .await;
    assert!(browser.text("#shared-secrets").await.contains("the database"), "aliases opened in the page");
    let shared_files = expect_json(
        with_secret(&app, reqwest::Method::GET, "/v1/files/shared", &team.member, None).await,
        StatusCode::OK,
    )
    .await;
    let file_share = |name: &str| {
        shared_files
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["fileName"] == name)
            .unwrap_or_else(|| panic!("{name} in {shared_files}"))["shareId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let page_file_share = file_share("page-shares.txt");
    let opened = expect_json(
        with_secret(&app, reqwest::Method::GET, &format!("/v1/files/shared/{page_file_share}"), &team.member, None)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(STANDARD.decode(opened["contentB64"].as_str().unwrap()).unwrap(), b"a file the page shares");
    browser
        .wait_until(
            "document.querySelector('#shared-file-list').innerText.includes('from-rust.bin')",
            "shared file names opened",
        )
        .await;
    browser.click(&format!("button[data-shared-file='{}']", file_share("from-rust.bin"))).await;
    assert_eq!(browser.downloaded("from-rust.bin").await, rust_file);
    browser.screenshots("vault-shared").await;

    // The page's API reaches only the caller's own routes, and changes nothing without the token.
    let answer = browser.script("return fetch('/ui/api/admin/orgs').then(r => r.status);").await;
    assert_eq!(answer, json!(404));

    // As the owner: a delete without the session's token is refused and deletes nothing.
    browser.click("header form button").await;
    sign_in_with_key(&browser, &origin, &team.owner).await;
    let answer = browser.script("return fetch('/ui/api/kv/db-url', { method: 'DELETE' }).then(r => r.status);").await;
    assert_eq!(answer, json!(403));
    expect_json(with_secret(&app, reqwest::Method::GET, "/v1/kv/db-url", &team.owner, None).await, StatusCode::OK)
        .await;

    // Storage: the live check's refusal shown in place.
    browser.goto(&format!("{origin}/ui/storage")).await;
    browser.screenshots("storage").await;
    browser.clear("#bucket").await;
    browser.type_into("#bucket", "no-such-bucket-here").await;
    browser.click("form[action='/ui/storage'] button").await;
    // The live check answers after a round trip to the S3 server: wait for the page it renders.
    browser.wait_until("document.querySelector('main').innerText.includes('Not saved:')", "the refused check").await;
    let text = browser.text("main").await;
    assert!(text.contains("Not saved:") && text.contains("the bucket does not exist"), "{text}");
    assert_eq!(browser.script("return document.querySelector('#bucket').value;").await, "no-such-bucket-here");
    let saved =
        expect_json(app.get(&format!("/admin/orgs/{}/storage", team.org), &team.owner).await, StatusCode::OK).await;
    assert_eq!(saved["bucket"], team.bucket.as_str(), "the refused settings were not saved");
}

/// A session token of `sub` that lasts ten minutes (a dashboard session ends with its token).
fn long_token(idp: &crate::idp::Idp, sub: &str) -> String {
    let mut claims = idp.claims(sub);
    claims["exp"] = json!(chrono::Utc::now().timestamp() + 600);
    idp.sign(crate::idp::RSA_1, jsonwebtoken::Algorithm::RS256, &claims)
}

async fn sign_in_with_token(browser: &Driver, origin: &str, token: &str) {
    browser.goto(&format!("{origin}/ui/sign-in")).await;
    browser.type_into("#session_token", token).await;
    browser.click("form:has(#session_token) button").await;
    browser.wait_until("location.pathname.startsWith('/ui/org')", "the organizations page after signing in").await;
}

#[tokio::test]
async fn the_cloud_pages_with_an_identity_provider_session() {
    let idp = crate::idp::Idp::start().await;
    let app = crate::helpers::spawn_app_with(|s| {
        s.cloud_jwt_issuer = Some(idp.issuer.clone());
        s.cloud_jwks_url = Some(idp.jwks_url.clone());
        s.cloud_authorized_parties = crate::idp::AZP.to_owned();
        s.cloud_jwks_min_refresh_ms = 0;
    })
    .await;
    let origin = app.proxy.clone();
    let browser = Driver::start().await;
    browser.grant_clipboard(&origin).await;

    // A token that does not verify opens nothing.
    browser.goto(&format!("{origin}/ui/sign-in")).await;
    browser.type_into("#session_token", &idp.none_token("user_alice")).await;
    browser.click("form:has(#session_token) button").await;
    assert!(browser.text("main").await.contains("invalid or expired session token"), "{}", browser.text("main").await);

    // Signed in with the identity provider: no org yet, so the page says how to make one.
    sign_in_with_token(&browser, &origin, &long_token(&idp, "user_alice")).await;
    assert!(browser.text("main").await.contains("You are in no organization yet"));
    browser.type_into("#org_name", "Acme Corp").await;
    browser.click("form[action='/ui/org'] button").await;
    browser.wait_until("document.querySelector('h1').textContent === 'Acme Corp'", "the new organization").await;
    let org_path: String = browser.script("return location.pathname;").await.as_str().unwrap().to_owned();

    // An invite, its link copied with the button.
    browser.type_into("#invite-email", "user_bob@example.test").await;
    browser.click("form[action$='/invites'] button").await;
    browser.wait_until("document.querySelector('#new-invite')", "the invite's link").await;
    let link = browser.text("#new-invite").await;
    browser.click("button[data-copy='#new-invite']").await;
    browser
        .wait_until("document.querySelector(\"button[data-copy='#new-invite']\").textContent === 'Copied'", "the copy")
        .await;
    let copied = browser.script("return navigator.clipboard.readText();").await;
    assert_eq!(copied, json!(format!("{origin}{link}")));

    // An API key: its secret shown once, and it works as an org-admin key.
    browser.type_into("#key-name", "Production").await;
    browser.click("form[action$='/api-keys'] button").await;
    browser.wait_until("document.querySelector('#new-secret')", "the new key's secret").await;
    let secret = browser.text("#new-secret").await;
    let me = expect_json(app.get("/users/me", &secret).await, StatusCode::OK).await;
    assert_eq!(me["isAdmin"], true);
    assert!(browser.text("#key-list").await.contains("Production"));
    browser.screenshots("organization").await;
    let loaded = browser.loaded().await;
    assert!(loaded.iter().all(|u| u.starts_with(&origin)), "requests leaving the origin: {loaded:?}");
    browser.goto(&format!("{origin}{org_path}")).await;
    assert!(!browser.text("main").await.contains(&secret), "the secret is shown once only");

    // Bob accepts the invite through its link, as a developer, and cannot create keys.
    browser.click("header form button").await;
    sign_in_with_token(&browser, &origin, &long_token(&idp, "user_bob")).await;
    browser.goto(&format!("{origin}{link}")).await;
    browser.screenshots("invitation").await;
    browser.click("form[action^='/ui/invites/'] button").await;
    browser.wait_until("document.querySelector('h1').textContent === 'Acme Corp'", "the joined organization").await;
    assert!(browser.text("#invite-list").await.contains("accepted"));
    browser.type_into("#key-name", "mine").await;
    browser.click("form[action$='/api-keys'] button").await;
    browser.wait_until("document.querySelector('main .error')", "the refusal").await;
    assert!(browser.text("main .error").await.contains("insufficient permissions"), "{}", browser.text("main").await);

    // Alice makes Bob a viewer, revokes the key, removes nobody by accident.
    browser.click("header form button").await;
    sign_in_with_token(&browser, &origin, &long_token(&idp, "user_alice")).await;
    browser.goto(&format!("{origin}{org_path}")).await;
    browser.script("document.querySelector('select[name=role]').value = 'viewer';").await;
    browser.click("form[action$='/role'] button").await;
    browser.wait_until("document.querySelector('main .ok')", "the role change").await;
    let members = browser.script("return document.querySelector('select[name=role]').value;").await;
    assert_eq!(members, json!("viewer"));
    // The role change's "Done." is still on the page: take it away, so that the one waited for is
    // the revocation's (which answers only after the authentication cache's lease has run out).
    browser.script("document.querySelector('main .ok').remove();").await;
    browser.click("form[action$='/revoke'][action*='/api-keys/'] button").await;
    browser.wait_until("document.querySelector('main .ok')", "the revocation").await;
    assert_eq!(
        app.get("/users/me", &secret).await.status(),
        StatusCode::UNAUTHORIZED,
        "the revoked key stopped working"
    );
    // The API-key pages are not this session's.
    let nav = browser.text("nav").await;
    assert!(nav.contains("Organizations") && !nav.contains("Vault"), "{nav}");
}
