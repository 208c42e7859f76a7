//! The Proxy against the real Backend: keys, encrypted KV, errors that say what to do, the
//! pass-through, and the Backend holding nothing but ciphertext.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_error, expect_json, spawn_app, spawn_app_with, OrgFixture, TestApp};

const SECRET: &str = "correct horse battery staple";

async fn generate(app: &TestApp, key: &str, secret: &str) -> reqwest::Response {
    app.proxy(Method::POST, "/v1/keys/generate", &[("X-Api-Key", key), ("X-User-Secret", secret)], None).await
}

async fn put(app: &TestApp, key: &str, secret: &str, name: &str, value: &[u8]) -> reqwest::Response {
    let body = json!({ "valueB64": STANDARD.encode(value) });
    app.proxy(Method::PUT, &format!("/v1/kv/{name}"), &[("X-Api-Key", key), ("X-User-Secret", secret)], Some(body))
        .await
}

async fn get(app: &TestApp, key: &str, secret: &str, path: &str) -> reqwest::Response {
    app.proxy(Method::GET, path, &[("X-Api-Key", key), ("X-User-Secret", secret)], None).await
}

async fn rekey_request(app: &TestApp, key: &str, old: &str, new: &str) -> reqwest::Response {
    app.proxy(
        Method::POST,
        "/v1/keys/rekey",
        &[("X-Api-Key", key), ("X-User-Secret", old), ("X-New-User-Secret", new)],
        None,
    )
    .await
}

async fn read_value(app: &TestApp, key: &str, secret: &str, name: &str) -> Vec<u8> {
    let body = expect_json(get(app, key, secret, &format!("/v1/kv/{name}")).await, StatusCode::OK).await;
    STANDARD.decode(body["valueB64"].as_str().unwrap()).unwrap()
}

async fn with_keys(app: &TestApp) -> OrgFixture {
    let fx = app.org_with_users("acme").await;
    expect_json(generate(app, &fx.member_key, SECRET).await, StatusCode::CREATED).await;
    fx
}

#[tokio::test]
async fn generate_stores_public_keys_and_sealed_private_keys_once() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let keys = expect_json(generate(&app, &fx.member_key, SECRET).await, StatusCode::CREATED).await;
    assert_eq!(STANDARD.decode(keys["publicKeyEccB64"].as_str().unwrap()).unwrap().len(), 32);
    assert_eq!(STANDARD.decode(keys["publicKeyKyberB64"].as_str().unwrap()).unwrap().len(), 1184);
    let me = expect_json(app.get("/users/me", &fx.member_key).await, StatusCode::OK).await;
    assert_eq!(me["publicKeyEccB64"], keys["publicKeyEccB64"]);
    assert!(me["encryptedPrivateKeyKyberB64"].is_string());
    let msg = expect_error(generate(&app, &fx.member_key, SECRET).await, StatusCode::CONFLICT).await;
    assert!(msg.contains("never replaced"), "{msg}");
    let msg = expect_error(generate(&app, &fx.admin_key, "short").await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("at least 12 characters"), "{msg}");
    expect_error(
        app.proxy(Method::POST, "/v1/keys/generate", &[("X-Api-Key", &fx.admin_key)], None).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn values_round_trip_through_the_proxy_and_keep_their_versions() {
    let app = spawn_app().await;
    let fx = with_keys(&app).await;
    let created = expect_json(
        put(&app, &fx.member_key, SECRET, "db-url", b"postgres://app:pass@db/main").await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["version"], 1);
    expect_json(put(&app, &fx.member_key, SECRET, "db-url", b"v2").await, StatusCode::OK).await;
    assert_eq!(read_value(&app, &fx.member_key, SECRET, "db-url").await, b"v2");
    let old = expect_json(get(&app, &fx.member_key, SECRET, "/v1/kv/db-url?version=1").await, StatusCode::OK).await;
    assert_eq!(STANDARD.decode(old["valueB64"].as_str().unwrap()).unwrap(), b"postgres://app:pass@db/main");
    assert_eq!(old["version"], 1);
    for value in [&b""[..], &[0u8, 255, 10, 13][..], &vec![7u8; 900][..]] {
        put(&app, &fx.member_key, SECRET, "bytes", value).await;
        assert_eq!(read_value(&app, &fx.member_key, SECRET, "bytes").await, value);
    }
    // Listing and delete pass through.
    let listing =
        expect_json(app.proxy(Method::GET, "/v1/kv", &[("X-Api-Key", &fx.member_key)], None).await, StatusCode::OK)
            .await;
    assert_eq!(listing["keys"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.proxy(Method::DELETE, "/v1/kv/db-url", &[("X-Api-Key", &fx.member_key)], None).await.status(),
        StatusCode::NO_CONTENT
    );
    expect_error(get(&app, &fx.member_key, SECRET, "/v1/kv/db-url").await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn errors_say_what_to_do() {
    let app = spawn_app().await;
    let fx = with_keys(&app).await;
    put(&app, &fx.member_key, SECRET, "k", b"v").await;
    let msg =
        expect_error(get(&app, &fx.member_key, "a wrong secret entirely", "/v1/kv/k").await, StatusCode::UNAUTHORIZED)
            .await;
    assert_eq!(msg, "invalid user secret");
    let msg = expect_error(
        app.proxy(Method::GET, "/v1/kv/k", &[("X-Api-Key", &fx.member_key)], None).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(msg, "missing X-User-Secret header");
    let msg = expect_error(put(&app, &fx.admin_key, SECRET, "k", b"v").await, StatusCode::CONFLICT).await;
    assert!(msg.contains("/v1/keys/generate"), "no keys yet: {msg}");
    expect_error(get(&app, "hk_nonsense", SECRET, "/v1/kv/k").await, StatusCode::UNAUTHORIZED).await;
    expect_error(get(&app, &fx.member_key, SECRET, "/v1/kv/missing").await, StatusCode::NOT_FOUND).await;
    let bad = app
        .proxy(
            Method::PUT,
            "/v1/kv/k",
            &[("X-Api-Key", &fx.member_key), ("X-User-Secret", SECRET)],
            Some(json!({ "valueB64": "%%%" })),
        )
        .await;
    expect_error(bad, StatusCode::BAD_REQUEST).await;
    let name = "x".repeat(257);
    expect_error(put(&app, &fx.member_key, SECRET, &name, b"v").await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn repeated_wrong_secrets_are_throttled() {
    let app = spawn_app().await;
    let fx = with_keys(&app).await;
    put(&app, &fx.member_key, SECRET, "k", b"v").await;
    for i in 0..5 {
        let res = get(&app, &fx.member_key, &format!("wrong secret number {i}"), "/v1/kv/k").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    expect_error(get(&app, &fx.member_key, "wrong secret number 6", "/v1/kv/k").await, StatusCode::TOO_MANY_REQUESTS)
        .await;
}

#[tokio::test]
async fn rekey_replaces_the_secret_and_every_value_stays_readable() {
    let app = spawn_app().await;
    let fx = with_keys(&app).await;
    put(&app, &fx.member_key, SECRET, "a", b"alpha").await;
    put(&app, &fx.member_key, SECRET, "b", b"beta").await;
    let new_secret = "a completely new secret";
    // A wrong old secret changes nothing.
    expect_error(
        rekey_request(&app, &fx.member_key, "not the old secret at all", new_secret).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(read_value(&app, &fx.member_key, SECRET, "a").await, b"alpha");

    let before = expect_json(app.get("/users/me", &fx.member_key).await, StatusCode::OK).await;
    let keys = expect_json(rekey_request(&app, &fx.member_key, SECRET, new_secret).await, StatusCode::OK).await;
    let after = expect_json(app.get("/users/me", &fx.member_key).await, StatusCode::OK).await;
    assert_eq!(keys["publicKeyEccB64"], before["publicKeyEccB64"], "the same key pairs");
    assert_ne!(after["encryptedPrivateKeyEccB64"], before["encryptedPrivateKeyEccB64"], "sealed anew");
    expect_error(get(&app, &fx.member_key, SECRET, "/v1/kv/a").await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(read_value(&app, &fx.member_key, new_secret, "a").await, b"alpha");
    assert_eq!(read_value(&app, &fx.member_key, new_secret, "b").await, b"beta");
    // A second rekey proves the secret of the first one (from the unlock cache or a fresh unlock).
    let third = "and a third secret after that";
    expect_json(rekey_request(&app, &fx.member_key, new_secret, third).await, StatusCode::OK).await;
    assert_eq!(read_value(&app, &fx.member_key, third, "b").await, b"beta");
}

#[tokio::test]
async fn rekey_under_concurrent_reads_never_serves_a_wrong_value() {
    let app = spawn_app().await;
    let fx = with_keys(&app).await;
    put(&app, &fx.member_key, SECRET, "a", b"alpha").await;
    let new_secret = "the secret after rekey";
    // At most four failures, below the throttle (five), so the final read is not locked out.
    let reads = futures::future::join_all((0..4).map(|i| {
        let secret = if i % 2 == 0 { SECRET } else { new_secret };
        let app = &app;
        let key = fx.member_key.clone();
        async move { (secret, get(app, &key, secret, "/v1/kv/a").await) }
    }));
    let rekey = rekey_request(&app, &fx.member_key, SECRET, new_secret);
    let (reads, rekeyed) = tokio::join!(reads, rekey);
    assert_eq!(rekeyed.status(), StatusCode::OK);
    for (secret, res) in reads {
        match res.status() {
            StatusCode::OK => {
                let body: Value = res.json().await.unwrap();
                assert_eq!(STANDARD.decode(body["valueB64"].as_str().unwrap()).unwrap(), b"alpha", "{secret}");
            }
            StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("{secret}: unexpected {other}"),
        }
    }
    assert_eq!(read_value(&app, &fx.member_key, new_secret, "a").await, b"alpha");
}

#[tokio::test]
async fn of_two_racing_rekeys_exactly_one_wins() {
    let app = spawn_app().await;
    let fx = with_keys(&app).await;
    put(&app, &fx.member_key, SECRET, "a", b"alpha").await;
    let (first, second) = ("the first new secret", "the second new secret");
    let (a, b) = tokio::join!(
        rekey_request(&app, &fx.member_key, SECRET, first),
        rekey_request(&app, &fx.member_key, SECRET, second)
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    // Both may also run one after the other: the second then fails to unlock with the old secret.
    assert!(
        statuses == [StatusCode::OK, StatusCode::CONFLICT] || statuses == [StatusCode::OK, StatusCode::UNAUTHORIZED],
        "{statuses:?}"
    );
    let winner = if a.status() == StatusCode::OK { first } else { second };
    assert_eq!(read_value(&app, &fx.member_key, winner, "a").await, b"alpha");
}

#[tokio::test]
async fn two_users_of_one_org_cannot_read_each_others_values() {
    let app = spawn_app().await;
    let fx = with_keys(&app).await;
    expect_json(generate(&app, &fx.admin_key, "the admin's own secret").await, StatusCode::CREATED).await;
    put(&app, &fx.member_key, SECRET, "mine", b"member only").await;
    // The admin has their own namespace: the member's record does not exist for them ...
    expect_error(get(&app, &fx.admin_key, "the admin's own secret", "/v1/kv/mine").await, StatusCode::NOT_FOUND).await;
    // ... and with the member's secret they still cannot unlock the member's keys.
    expect_error(get(&app, &fx.admin_key, SECRET, "/v1/kv/mine").await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn admin_and_auth_routes_pass_through_unchanged() {
    let app = spawn_app().await;
    let via_proxy = app.proxy(Method::GET, "/auth/plans", &[], None).await;
    assert_eq!(via_proxy.status(), StatusCode::OK);
    let direct: Value =
        app.client.get(format!("{}/auth/plans", app.backend)).send().await.unwrap().json().await.unwrap();
    assert_eq!(via_proxy.json::<Value>().await.unwrap(), direct);
    let created = app
        .proxy(
            Method::POST,
            "/admin/orgs",
            &[("X-Api-Key", &app.global_admin_key)],
            Some(json!({ "name": "via proxy" })),
        )
        .await;
    let org = expect_json(created, StatusCode::CREATED).await;
    assert_eq!(org["name"], "via proxy");
    let refused =
        app.proxy(Method::POST, "/admin/orgs", &[("X-Api-Key", "hk_nonsense")], Some(json!({ "name": "x" }))).await;
    assert_eq!(
        expect_error(refused, StatusCode::UNAUTHORIZED).await,
        "invalid API key",
        "the Backend's own 4xx, as it is"
    );
    let users = app
        .proxy(
            Method::GET,
            &format!("/admin/orgs/{}/users", org["id"].as_str().unwrap()),
            &[("X-Api-Key", &app.global_admin_key)],
            None,
        )
        .await;
    assert_eq!(expect_json(users, StatusCode::OK).await, json!([]));
}

#[tokio::test]
async fn an_unreachable_backend_is_502() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = spawn_app_with(|s| s.proxy_backend_url = format!("http://127.0.0.1:{port}")).await;
    let msg = expect_error(
        app.proxy(Method::GET, "/v1/kv/x", &[("X-Api-Key", "hk_x"), ("X-User-Secret", SECRET)], None).await,
        StatusCode::BAD_GATEWAY,
    )
    .await;
    assert_eq!(msg, "the Backend is unreachable");
    expect_error(app.proxy(Method::GET, "/auth/plans", &[], None).await, StatusCode::BAD_GATEWAY).await;
}

#[tokio::test]
async fn the_backend_stores_no_plaintext_value() {
    let app = spawn_app().await;
    let fx = with_keys(&app).await;
    let marker = format!("MARKER-{}", uuid::Uuid::new_v4().simple());
    put(&app, &fx.member_key, SECRET, "k", marker.as_bytes()).await;
    put(&app, &fx.member_key, SECRET, "k", format!("{marker}-v2").as_bytes()).await;
    assert_eq!(read_value(&app, &fx.member_key, SECRET, "k").await, format!("{marker}-v2").as_bytes());
    crate::helpers::assert_nowhere_in_the_database(&app, &marker, &[SECRET]).await;
    crate::helpers::assert_nowhere_on_the_stream(&app, &marker).await;
}

#[tokio::test]
async fn neither_secrets_nor_values_appear_in_any_log_line_at_any_level() {
    use std::io::Read;
    use std::process::{Command, Stdio};

    let db = crate::helpers::TestDb::new();
    let data = tempfile::TempDir::new().unwrap();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (backend, proxy) = (free(), free());
    let mut child = Command::new(env!("CARGO_BIN_EXE_harden"))
        .arg("serve")
        .env("HARDEN_DATABASE_URL", db.url())
        .env("HARDEN_DATA_DIR", data.path())
        .env("HARDEN_BACKEND_ADDR", format!("127.0.0.1:{backend}"))
        .env("HARDEN_PROXY_ADDR", format!("127.0.0.1:{proxy}"))
        .env("HARDEN_NATS_STREAM", format!("T_{}", db.name.to_uppercase()))
        .env("HARDEN_NATS_SUBJECT_PREFIX", format!("t.{}", db.name))
        .env("HARDEN_ARGON2_M_KIB", "19456")
        .env("HARDEN_ARGON2_T", "2")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain both pipes while the server runs: trace logging would fill a pipe and block it.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build().unwrap();
    let (b, p) = (format!("http://127.0.0.1:{backend}"), format!("http://127.0.0.1:{proxy}"));
    crate::helpers::eventually("harden serves", || async { client.get(format!("{b}/health")).send().await.is_ok() })
        .await;
    let admin = std::fs::read_to_string(data.path().join("global-admin.key")).unwrap();
    let org: Value = client
        .post(format!("{p}/admin/orgs"))
        .header("X-Api-Key", &admin)
        .json(&json!({ "name": "logs" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user: Value = client
        .post(format!("{p}/admin/orgs/{}/users", org["id"].as_str().unwrap()))
        .header("X-Api-Key", &admin)
        .header("X-User-Secret", "SECRET-sent-where-it-does-not-belong")
        .json(&json!({ "name": "u", "isAdmin": true }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = user["apiKey"].as_str().unwrap();
    let secret = format!("SECRET-{}", uuid::Uuid::new_v4().simple());
    let value = format!("VALUE-{}", uuid::Uuid::new_v4().simple());
    let ok = |r: reqwest::Response| assert!(r.status().is_success(), "{}", r.status());
    ok(client
        .post(format!("{p}/v1/keys/generate"))
        .header("X-Api-Key", key)
        .header("X-User-Secret", &secret)
        .send()
        .await
        .unwrap());
    let body = json!({ "valueB64": STANDARD.encode(&value) });
    ok(client
        .put(format!("{p}/v1/kv/logged"))
        .header("X-Api-Key", key)
        .header("X-User-Secret", &secret)
        .json(&body)
        .send()
        .await
        .unwrap());
    ok(client
        .get(format!("{p}/v1/kv/logged"))
        .header("X-Api-Key", key)
        .header("X-User-Secret", &secret)
        .send()
        .await
        .unwrap());
    let wrong = client
        .get(format!("{p}/v1/kv/logged"))
        .header("X-Api-Key", key)
        .header("X-User-Secret", format!("{secret}-wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    child.kill().unwrap();
    let _ = child.wait();
    let logs = out.join().unwrap() + &err.join().unwrap();
    assert!(logs.lines().count() > 50, "trace logging was on");
    for needle in
        [secret.as_str(), value.as_str(), STANDARD.encode(&value).as_str(), "SECRET-sent-where", key, admin.trim()]
    {
        assert!(!logs.contains(needle), "{needle} appears in the logs");
    }
    if let Ok(nats) = async_nats::connect(crate::helpers::NATS).await {
        let _ = async_nats::jetstream::new(nats).delete_stream(format!("T_{}", db.name.to_uppercase())).await;
    }
}

#[tokio::test]
async fn org_directory_routes_pass_through_under_v1() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let peers = expect_json(
        app.proxy(Method::GET, "/v1/users/org", &[("X-Api-Key", &fx.member_key)], None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(peers.as_array().unwrap().len(), 2);
    let path = format!("/v1/users/org/{}", fx.admin_id);
    let admin =
        expect_json(app.proxy(Method::GET, &path, &[("X-Api-Key", &fx.member_key)], None).await, StatusCode::OK).await;
    assert_eq!(admin["isAdmin"], true);
    let other = app.org_with_users("other").await;
    let path = format!("/v1/users/org/{}", other.member_id);
    expect_error(app.proxy(Method::GET, &path, &[("X-Api-Key", &fx.member_key)], None).await, StatusCode::NOT_FOUND)
        .await;
}

/// Sends a request line as written (no client-side path normalisation) and returns the status.
pub async fn raw_status(base: &str, method: &str, path: &str, api_key: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nX-Api-Key: {api_key}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_pass_through_cannot_be_walked_out_of_its_subtree() {
    let app = spawn_app().await;
    let fx = with_keys(&app).await;
    for path in [
        "/auth/%2e%2e/users/me",
        "/auth/%2E%2E/kv/x",
        "/admin/%2e%2e/users/me/keys",
        "/admin/./../users/me",
        "/v1/users/org/%2e%2e/me",
    ] {
        let status = raw_status(&app.proxy, "GET", path, &fx.member_key).await;
        assert!(status == 400 || status == 404, "{path}: {status}");
        assert_ne!(status, 200, "{path} reached another Backend route");
    }
}

fn sealed_header(m_kib: u32, t: u32) -> String {
    let mut blob = vec![1u8];
    for word in [m_kib, t, 1] {
        blob.extend_from_slice(&word.to_be_bytes());
    }
    blob.extend_from_slice(&[0u8; 16 + 12 + 48]);
    STANDARD.encode(blob)
}

#[tokio::test]
async fn a_sealed_blob_cannot_make_an_unlock_arbitrarily_expensive() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let public = harden_domain::crypto::PrivateKeys::from_seeds([1; 32], [2; 64]).public_keys();
    let body = json!({
        "publicKeyEccB64": STANDARD.encode(public.ecc_bytes()),
        "publicKeyKyberB64": STANDARD.encode(public.kyber_bytes()),
        "encryptedPrivateKeyEccB64": sealed_header(1024 * 1024, 16),
        "encryptedPrivateKeyKyberB64": sealed_header(1024 * 1024, 16),
        "sealProofB64": STANDARD.encode([0; 32]),
    });
    expect_json(app.post("/users/me/keys", &fx.member_key, body).await, StatusCode::OK).await;
    let msg = expect_error(get(&app, &fx.member_key, SECRET, "/v1/kv/x").await, StatusCode::CONFLICT).await;
    assert!(msg.contains("above this server's limits"), "{msg}");
}

#[tokio::test]
async fn a_tampered_directory_cannot_redirect_a_records_data_key() {
    use harden_domain::crypto::{derive_kek, seal_private_keys, KdfParams, PrivateKeys};
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    // The directory shows public keys P1, but the sealed private keys are of another pair.
    let shown = PrivateKeys::from_seeds([1; 32], [2; 64]).public_keys();
    let real = PrivateKeys::from_seeds([3; 32], [4; 64]);
    let kek = derive_kek(SECRET.as_bytes(), [5; 16], KdfParams::MINIMUM).unwrap();
    let (ecc, kyber) = seal_private_keys(&kek, fx.member_id, &real, [[6; 12], [7; 12]]);
    let body = json!({
        "publicKeyEccB64": STANDARD.encode(shown.ecc_bytes()),
        "publicKeyKyberB64": STANDARD.encode(shown.kyber_bytes()),
        "encryptedPrivateKeyEccB64": STANDARD.encode(ecc),
        "encryptedPrivateKeyKyberB64": STANDARD.encode(kyber),
        "sealProofB64": STANDARD.encode(harden_domain::crypto::seal_proof(&kek, fx.member_id).as_ref()),
    });
    expect_json(app.post("/users/me/keys", &fx.member_key, body).await, StatusCode::OK).await;
    let before = app.event_count().await;
    expect_error(put(&app, &fx.member_key, SECRET, "k", b"v").await, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert_eq!(app.event_count().await, before, "nothing was wrapped to the directory's keys");
}

#[tokio::test]
async fn concurrent_wrong_guesses_cannot_slip_past_the_throttle() {
    let app = spawn_app().await;
    let fx = with_keys(&app).await;
    let guesses = futures::future::join_all((0..20).map(|i| {
        let (app, key) = (&app, fx.member_key.clone());
        async move { get(app, &key, &format!("guess number {i:02} of many"), "/v1/kv/k").await.status() }
    }))
    .await;
    let tried = guesses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = guesses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert!(tried <= 5, "at most five guesses ran: {guesses:?}");
    assert_eq!(tried + refused, 20, "{guesses:?}");
}

#[tokio::test]
async fn many_requests_of_one_user_on_a_cold_unlock_cache_are_not_throttled() {
    let app = spawn_app().await;
    // Generating keys leaves nothing in the unlock cache: the first requests all find it cold.
    let fx = with_keys(&app).await;
    let writes = futures::future::join_all((0..12).map(|i| {
        let (app, key) = (&app, fx.member_key.clone());
        async move { put(app, &key, SECRET, &format!("k{i}"), b"v").await.status() }
    }))
    .await;
    assert!(writes.iter().all(|s| *s == StatusCode::CREATED), "the right secret is never refused: {writes:?}");
}

#[tokio::test]
async fn concurrent_writes_without_if_match_all_land_and_a_stale_if_match_is_refused() {
    let app = spawn_app().await;
    let fx = with_keys(&app).await;
    expect_json(put(&app, &fx.member_key, SECRET, "hot", b"v0").await, StatusCode::CREATED).await;
    // Eight writers of one record at once, none asking for a check-and-set: each write that finds
    // its version taken is read again and written as a later one, so all land.
    let writes = (1..=8).map(|i| {
        let (app, key) = (&app, &fx.member_key);
        async move { put(app, key, SECRET, "hot", format!("v{i}").as_bytes()).await.status() }
    });
    let statuses = futures::future::join_all(writes).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    let current = expect_json(get(&app, &fx.member_key, SECRET, "/v1/kv/hot").await, StatusCode::OK).await;
    assert_eq!(current["version"], 9, "each write is a version of its own");
    assert!(current["ownerSealed"].as_bool().unwrap());
    // A write that names the version it expects gets the conflict as its answer.
    let stale = app
        .proxy(
            Method::PUT,
            "/v1/kv/hot",
            &[("X-Api-Key", &fx.member_key), ("X-User-Secret", SECRET), ("If-Match", "3")],
            Some(serde_json::json!({ "valueB64": STANDARD.encode(b"late") })),
        )
        .await;
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    assert_eq!(read_value(&app, &fx.member_key, SECRET, "hot").await.len(), 2, "the stale write changed nothing");
}
