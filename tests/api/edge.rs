//! The public edge as a client written from the documents meets it: CORS for browsers on both
//! listeners, bad input refused (400) before any state is consulted, and the compose layout (the
//! Backend private, the Proxy the only public edge, each its own process) walked through the Proxy
//! alone.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{eventually, expect_error, expect_json, spawn_app, spawn_app_with, TestApp, TestDb};

const SECRET: &str = "the owner's user secret";
const OTHER_SECRET: &str = "the recipient's secret";
const WRONG_SECRET: &str = "not anybody's user secret";
const ORIGIN: &str = "https://dashboard.example.test";

fn b64(n: usize) -> String {
    STANDARD.encode(vec![7u8; n])
}

// ---- CORS --------------------------------------------------------------------------------------

async fn preflight(base: &str, path: &str, origin: &str, method: &str, headers: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, format!("{base}{path}"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header("Access-Control-Request-Headers", headers)
        .send()
        .await
        .unwrap()
}

fn header<'r>(res: &'r reqwest::Response, name: &str) -> &'r str {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn browsers_of_a_listed_origin_may_call_the_cloud_api_and_the_proxy_with_every_header_harden_reads() {
    let app = spawn_app_with(|s| s.cors_allowed_origins = ORIGIN.to_owned()).await;
    let every =
        "authorization,content-type,x-api-key,x-api-secret,x-user-secret,x-new-user-secret,x-recovery-secret,if-match";
    let cases = [
        (&app.backend, "/cloud/organizations/00000000-0000-0000-0000-000000000001", "PATCH"),
        (&app.backend, "/users/me", "GET"),
        (&app.proxy, "/v1/recovery/complete", "POST"),
        (&app.proxy, "/v1/kv/db-url", "PUT"),
        (&app.proxy, "/cloud/organizations", "GET"),
    ];
    for (base, path, method) in cases {
        let res = preflight(base, path, ORIGIN, method, every).await;
        assert!(res.status().is_success(), "{method} {path}: preflight answered {}", res.status());
        assert_eq!(header(&res, "access-control-allow-origin"), ORIGIN, "{method} {path}");
        let allowed = header(&res, "access-control-allow-headers").to_ascii_lowercase();
        for wanted in every.split(',') {
            assert!(allowed.contains(wanted), "{method} {path}: {wanted} missing from {allowed}");
        }
        assert!(header(&res, "access-control-allow-methods").contains(method), "{method} {path}");
        // Another origin gets no permission at all.
        let other = preflight(base, path, "https://evil.example.test", method, every).await;
        assert_eq!(header(&other, "access-control-allow-origin"), "", "{method} {path}: another origin");
    }
    // A real answer tells the page which headers it may read.
    let res = app.client.get(format!("{}/auth/plans", app.backend)).header("Origin", ORIGIN).send().await.unwrap();
    let exposed = header(&res, "access-control-expose-headers").to_ascii_lowercase();
    for wanted in ["x-request-id", "retry-after"] {
        assert!(exposed.contains(wanted), "{wanted} missing from exposed headers {exposed}");
    }
}

#[tokio::test]
async fn without_listed_origins_no_listener_answers_cors() {
    let app = spawn_app().await;
    for base in [&app.backend, &app.proxy] {
        let res = preflight(base, "/users/me", ORIGIN, "GET", "x-api-key").await;
        assert_eq!(header(&res, "access-control-allow-origin"), "", "{base}");
    }
}

// ---- Bad input is 400 before any state -----------------------------------------------------------

struct Team {
    owner: String,
    recipient_id: Uuid,
}

async fn team(app: &TestApp) -> Team {
    let fx = app.org_with_users("edge").await;
    for (key, secret) in [(&fx.admin_key, SECRET), (&fx.member_key, OTHER_SECRET)] {
        let res =
            app.proxy(Method::POST, "/v1/keys/generate", &[("X-Api-Key", key), ("X-User-Secret", secret)], None).await;
        expect_json(res, StatusCode::CREATED).await;
    }
    Team { owner: fx.admin_key, recipient_id: fx.member_id }
}

async fn as_owner(app: &TestApp, t: &Team, method: Method, path: &str, secret: &str, body: Option<Value>) -> String {
    let res = app.proxy(method, path, &[("X-Api-Key", &t.owner), ("X-User-Secret", secret)], body).await;
    expect_error(res, StatusCode::BAD_REQUEST).await
}

#[tokio::test]
async fn a_share_with_a_past_expiry_or_an_unknown_permission_is_400_even_when_a_share_exists() {
    let app = spawn_app().await;
    let t = team(&app).await;
    let put = app
        .proxy(
            Method::PUT,
            "/v1/kv/db-url",
            &[("X-Api-Key", &t.owner), ("X-User-Secret", SECRET)],
            Some(json!({ "valueB64": STANDARD.encode("postgres://") })),
        )
        .await;
    expect_json(put, StatusCode::CREATED).await;
    let share = |extra: Value| {
        let mut body = json!({ "recipientUserId": t.recipient_id, "permission": "read", "alias": "db" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let first = app
        .proxy(
            Method::POST,
            "/v1/kv/db-url/shares",
            &[("X-Api-Key", &t.owner), ("X-User-Secret", SECRET)],
            Some(share(json!({}))),
        )
        .await;
    expect_json(first, StatusCode::CREATED).await;
    // The Proxy: a body bad on its own is 400, before the unlock (a wrong secret) and before the
    // record, the recipient or the existing share are looked at.
    let msg = as_owner(
        &app,
        &t,
        Method::POST,
        "/v1/kv/db-url/shares",
        SECRET,
        Some(share(json!({ "expiresUtc": "2020-01-01T00:00:00Z" }))),
    )
    .await;
    assert!(msg.contains("expiresUtc"), "{msg}");
    let msg = as_owner(
        &app,
        &t,
        Method::POST,
        "/v1/kv/db-url/shares",
        WRONG_SECRET,
        Some(share(json!({ "permission": "write" }))),
    )
    .await;
    assert!(msg.contains("permission"), "{msg}");
    as_owner(
        &app,
        &t,
        Method::POST,
        "/v1/kv/no-such-record/shares",
        WRONG_SECRET,
        Some(share(json!({ "expiresUtc": "2020-01-01T00:00:00Z" }))),
    )
    .await;
    // The Backend: the same body with wraps made by a client.
    let direct = json!({
        "recipientUserId": t.recipient_id, "permission": "read", "encryptedAliasB64": b64(40),
        "encryptedAesKeyEccB64": b64(33), "encryptedAesKeyKyberB64": b64(1149), "keyEpoch": 1,
        "expiresUtc": "2020-01-01T00:00:00Z",
    });
    let msg =
        expect_error(app.post("/kv/db-url/shares", &t.owner, direct.clone()).await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("expiresUtc"), "{msg}");
    expect_error(app.post("/kv/no-such-record/shares", &t.owner, direct).await, StatusCode::BAD_REQUEST).await;
    // A rotation's malformed re-wrap is refused before the record is looked up.
    let rotate = json!({
        "expectedVersion": 1, "ciphertextB64": b64(40), "encryptedAesKeyEccB64": b64(33),
        "encryptedAesKeyKyberB64": b64(1149),
        "shares": [{ "shareId": Uuid::new_v4(), "encryptedAesKeyEccB64": "not base64!", "encryptedAesKeyKyberB64": b64(1149) }],
    });
    expect_error(app.post("/kv/no-such-record/rotate", &t.owner, rotate).await, StatusCode::BAD_REQUEST).await;
    // Exactly one share exists: nothing bad was recorded.
    let shares = app.get("/kv/db-url/shares", &t.owner).await;
    assert_eq!(expect_json(shares, StatusCode::OK).await.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_kv_request_with_a_bad_version_or_if_match_is_400_whatever_the_record_or_the_secret() {
    let app = spawn_app().await;
    let t = team(&app).await;
    let body = Some(json!({ "valueB64": STANDARD.encode("v") }));
    let headers = [("X-Api-Key", t.owner.as_str()), ("X-User-Secret", WRONG_SECRET), ("If-Match", "three")];
    let msg = expect_error(app.proxy(Method::PUT, "/v1/kv/k", &headers, body).await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("If-Match"), "{msg}");
    for version in ["0", "-1"] {
        let path = format!("/v1/kv/k?version={version}");
        as_owner(&app, &t, Method::GET, &path, WRONG_SECRET, None).await;
        expect_error(
            app.get(&format!("/kv/no-such-record?version={version}"), &t.owner).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    // Nothing was written.
    expect_error(app.get("/kv/k", &t.owner).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_file_request_bad_on_its_own_is_400_before_the_unlock_or_the_file_is_looked_up() {
    let app = spawn_app().await;
    let t = team(&app).await;
    let upload = json!({ "fileName": "a.txt", "contentB64": STANDARD.encode("x"), "contentType": "not a type" });
    let msg = as_owner(&app, &t, Method::POST, "/v1/files", WRONG_SECRET, Some(upload)).await;
    assert!(msg.contains("contentType"), "{msg}");
    as_owner(&app, &t, Method::GET, "/v1/files?limit=0", WRONG_SECRET, None).await;
    as_owner(&app, &t, Method::GET, "/v1/files?cursor=%%%", WRONG_SECRET, None).await;
    let past = json!({ "recipientUserId": t.recipient_id, "permission": "read", "expiresUtc": "2020-01-01T00:00:00Z" });
    let path = format!("/v1/files/{}/shares", Uuid::new_v4());
    let msg = as_owner(&app, &t, Method::POST, &path, WRONG_SECRET, Some(past)).await;
    assert!(msg.contains("expiresUtc"), "{msg}");
    let direct = json!({
        "recipientUserId": t.recipient_id, "permission": "owner", "encryptedAliasB64": b64(40),
        "encryptedAesKeyEccB64": b64(33), "encryptedAesKeyKyberB64": b64(1149), "keyEpoch": 1,
    });
    let res = app.post(&format!("/files/{}/shares", Uuid::new_v4()), &t.owner, direct).await;
    let msg = expect_error(res, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("permission"), "{msg}");
}

#[tokio::test]
async fn a_recovery_request_bad_on_its_own_is_400_before_the_trustee_is_looked_up() {
    let app = spawn_app().await;
    let t = team(&app).await;
    let path = format!("/v1/recovery/trustees/{}", Uuid::new_v4());
    let hint = json!({ "xorApplied": true, "xorAnswer": "the name of my first cat", "xorSaltHint": "h".repeat(101) });
    let msg = as_owner(&app, &t, Method::PUT, &path, WRONG_SECRET, Some(hint)).await;
    assert!(msg.contains("xorSaltHint"), "{msg}");
    // One half of client-made material is refused, not silently dropped.
    let half = json!({ "encryptedPrivateKeyEccShareB64": b64(64), "xorApplied": false });
    let msg = as_owner(&app, &t, Method::PUT, &path, WRONG_SECRET, Some(half)).await;
    assert!(msg.contains("both"), "{msg}");
    let restore = format!("/v1/recovery/restore/{}", Uuid::new_v4());
    as_owner(&app, &t, Method::POST, &restore, WRONG_SECRET, Some(json!({ "encryptedPrivateKeyKyberB64": b64(64) })))
        .await;
}

#[tokio::test]
async fn storage_settings_bad_on_their_own_are_400_for_an_org_that_does_not_exist() {
    let app = spawn_app().await;
    let missing = Uuid::new_v4();
    let bad = json!({ "serviceUrl": "ftp://x", "bucket": "B!", "accessKey": "a", "secretKey": "s" });
    let res = app.put(&format!("/admin/orgs/{missing}/storage"), &app.global_admin_key, bad).await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = app
        .put(&format!("/admin/orgs/{missing}/storage"), &app.global_admin_key, crate::storage::body("good-bucket"))
        .await;
    expect_error(res, StatusCode::NOT_FOUND).await;
}

// ---- The compose layout: two processes, the Proxy the only edge --------------------------------

struct Served {
    child: std::process::Child,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve_only(surface: &str, db: &TestDb, data: &std::path::Path, env: &[(&str, String)]) -> Served {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_harden"));
    command
        .args(["serve", "--only", surface])
        .env("HARDEN_DATABASE_URL", db.url())
        .env("HARDEN_DATA_DIR", data)
        .env("HARDEN_NATS_STREAM", format!("T_{}", db.name.to_uppercase()))
        .env("HARDEN_NATS_SUBJECT_PREFIX", format!("t.{}", db.name))
        .env("HARDEN_ARGON2_M_KIB", "19456")
        .env("HARDEN_ARGON2_T", "2")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    Served { child: command.spawn().unwrap() }
}

/// A client of the edge alone.
struct Edge {
    base: String,
    http: reqwest::Client,
}

impl Edge {
    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }
    async fn ok(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> Value {
        let res = self.call(method.clone(), path, headers, body).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(status.is_success(), "{method} {path} through the Proxy: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn with_the_backend_private_every_users_and_org_admins_route_works_through_the_proxy_alone() {
    let db = TestDb::new();
    let data = tempfile::TempDir::new().unwrap();
    let (backend_port, proxy_port) = (free_port(), free_port());
    let _backend =
        serve_only("backend", &db, data.path(), &[("HARDEN_BACKEND_ADDR", format!("127.0.0.1:{backend_port}"))]);
    let _proxy = serve_only(
        "proxy",
        &db,
        data.path(),
        &[
            ("HARDEN_PROXY_ADDR", format!("127.0.0.1:{proxy_port}")),
            ("HARDEN_PROXY_BACKEND_URL", format!("http://127.0.0.1:{backend_port}")),
        ],
    );
    let edge = Edge {
        base: format!("http://127.0.0.1:{proxy_port}"),
        http: reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build().unwrap(),
    };
    eventually("the Proxy and its Backend are ready", || async {
        edge.http.get(format!("{}/ready", edge.base)).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    let global = std::fs::read_to_string(data.path().join("global-admin.key")).unwrap();

    // The README's bootstrap: an org, its first admin, a member.
    let org = edge.ok(Method::POST, "/admin/orgs", &[("X-Api-Key", &global)], Some(json!({ "name": "acme" }))).await;
    let org = org["id"].as_str().unwrap().to_owned();
    let admin = edge
        .ok(
            Method::POST,
            &format!("/admin/orgs/{org}/users"),
            &[("X-Api-Key", &global)],
            Some(json!({ "name": "Jane", "isAdmin": true })),
        )
        .await;
    let admin_key = admin["apiKey"].as_str().unwrap().to_owned();
    let member = edge
        .ok(
            Method::POST,
            &format!("/admin/orgs/{org}/users"),
            &[("X-Api-Key", &admin_key)],
            Some(json!({ "name": "svc", "isAdmin": false })),
        )
        .await;
    let (member_key, member_id) =
        (member["apiKey"].as_str().unwrap().to_owned(), member["id"].as_str().unwrap().to_owned());
    for (k, secret) in [(&admin_key, SECRET), (&member_key, OTHER_SECRET)] {
        edge.ok(Method::POST, "/v1/keys/generate", &[("X-Api-Key", k), ("X-User-Secret", secret)], None).await;
    }
    let owner = [("X-Api-Key", admin_key.as_str()), ("X-User-Secret", SECRET)];

    // The caller and their org, at the Backend's own paths.
    let me = edge.ok(Method::GET, "/users/me", &[("X-Api-Key", &admin_key)], None).await;
    assert!(me["encryptedPrivateKeyEccB64"].is_string(), "{me}");
    let directory = edge.ok(Method::GET, "/users/org", &[("X-Api-Key", &admin_key)], None).await;
    assert_eq!(directory.as_array().unwrap().len(), 2, "{directory}");
    edge.ok(Method::GET, &format!("/users/org/{member_id}"), &[("X-Api-Key", &admin_key)], None).await;

    // KV through /v1, and the Backend's ciphertext routes beside it.
    edge.ok(Method::PUT, "/v1/kv/db-url", &owner, Some(json!({ "valueB64": STANDARD.encode("postgres://db") }))).await;
    let listed = edge.ok(Method::GET, "/kv", &[("X-Api-Key", &admin_key)], None).await;
    assert_eq!(listed["keys"][0]["key"], "db-url", "{listed}");
    let stored = edge.ok(Method::GET, "/kv/db-url", &[("X-Api-Key", &admin_key)], None).await;
    assert!(stored["ciphertextB64"].is_string(), "{stored}");
    let versions = edge.ok(Method::GET, "/kv/db-url/versions", &[("X-Api-Key", &admin_key)], None).await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);

    // A share and its inbox (use case 8).
    let share = json!({ "recipientUserId": member_id, "permission": "read", "alias": "db" });
    edge.ok(Method::POST, "/v1/kv/db-url/shares", &owner, Some(share)).await;
    let inbox = edge.ok(Method::GET, "/kv/shared", &[("X-Api-Key", &member_key)], None).await;
    assert_eq!(inbox.as_array().unwrap().len(), 1, "{inbox}");
    let opened = edge
        .ok(Method::GET, "/v1/kv/shared", &[("X-Api-Key", &member_key), ("X-User-Secret", OTHER_SECRET)], None)
        .await;
    assert_eq!(opened[0]["alias"], "db");

    // Recovery: a trustee designated through /v1, read back at the Backend's paths.
    let trustee = json!({ "xorApplied": true, "xorAnswer": "the name of my first cat" });
    edge.ok(Method::PUT, &format!("/v1/recovery/trustees/{member_id}"), &owner, Some(trustee)).await;
    let trustees = edge.ok(Method::GET, "/users/me/recovery/trustees", &[("X-Api-Key", &admin_key)], None).await;
    assert_eq!(trustees.as_array().map(Vec::len).unwrap_or_default(), 1, "{trustees}");
    let owners = edge.ok(Method::GET, "/users/me/recovery/shares", &[("X-Api-Key", &member_key)], None).await;
    assert_eq!(owners.as_array().map(Vec::len).unwrap_or_default(), 1, "{owners}");

    // Files at the Backend's paths (an org without storage has none).
    let files = edge.ok(Method::GET, "/files", &[("X-Api-Key", &admin_key)], None).await;
    assert_eq!(files["files"].as_array().unwrap().len(), 0, "{files}");
    edge.ok(Method::GET, "/files/shared", &[("X-Api-Key", &member_key)], None).await;

    // The org admin's audit; a member is refused by the Backend, as on the Backend itself.
    let audit = edge.ok(Method::GET, "/audit", &[("X-Api-Key", &admin_key)], None).await;
    let entries = audit["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["action"] == "create" && e["key"] == "db-url"), "{audit}");
    let refused = edge.call(Method::GET, "/audit", &[("X-Api-Key", &member_key)], None).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // The same safeguards as /admin/*: no walking out of a subtree, no credential, no secret passed on.
    // Sent as written (an HTTP client would resolve the dot segments itself).
    for path in
        ["/users/%2e%2e/admin/orgs", "/kv/%2E%2E/admin/orgs", "/files/x\\..\\..\\admin\\orgs", "/audit/../admin/orgs"]
    {
        let status = crate::proxy::raw_status(&edge.base, "GET", path, &global).await;
        assert!(status == 400 || status == 404, "{path}: {status}");
    }
    expect_error(edge.call(Method::GET, "/users/me", &[], None).await, StatusCode::UNAUTHORIZED).await;
}
