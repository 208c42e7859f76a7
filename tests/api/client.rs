//! The client library on its own, as the command-line client uses it: the vault's flows run on
//! the user's side against the Backend's routes through the public edge (the Proxy's
//! pass-through), and what they write is what the Proxy reads, and the reverse.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::json;

use harden_client::vault::ShareTerms;
use harden_client::{ApiCredential, Backend, Error, Unlocker, Vault, Writer};
use harden_domain::crypto::KdfParams;
use harden_domain::secret::KeyName;

use crate::helpers::{expect_json, spawn_app, TestApp};

const OWNER_SECRET: &str = "the library user's secret";
const RECIPIENT_SECRET: &str = "the proxy user's secret";

/// A vault on the user's machine, reaching the Backend only through the public edge.
fn vault(app: &TestApp) -> Vault {
    let unlocker = Unlocker::new(KdfParams::MINIMUM, Duration::ZERO, 64).unwrap();
    Vault { backend: Backend::new(&app.proxy).unwrap(), unlocker: Arc::new(unlocker) }
}

fn name(raw: &str) -> KeyName {
    KeyName::parse(raw).unwrap()
}

async fn proxy_get(app: &TestApp, key: &str, secret: &str, path: &str) -> serde_json::Value {
    let res = app.proxy(Method::GET, path, &[("X-Api-Key", key), ("X-User-Secret", secret)], None).await;
    expect_json(res, StatusCode::OK).await
}

#[tokio::test]
async fn values_and_shares_written_with_the_library_are_read_through_the_proxy_and_the_reverse() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let vault = vault(&app);
    let owner = ApiCredential::key(&fx.admin_key);
    let recipient = ApiCredential::key(&fx.member_key);

    // Keys made on the user's side; the Proxy unlocks them.
    vault.generate_keys(owner, OWNER_SECRET).await.unwrap();
    let res = app
        .proxy(
            Method::POST,
            "/v1/keys/generate",
            &[("X-Api-Key", &fx.member_key), ("X-User-Secret", RECIPIENT_SECRET)],
            None,
        )
        .await;
    expect_json(res, StatusCode::CREATED).await;

    // A value written with the library reads back through the Proxy, sealed by its owner.
    let caller = vault.unlock(owner, OWNER_SECRET).await.unwrap();
    let written = vault.put_value(&Writer::Owner(caller), &name("db-url"), b"postgres://from-the-library", None).await;
    assert_eq!(written.unwrap().status, StatusCode::CREATED);
    let read = proxy_get(&app, &fx.admin_key, OWNER_SECRET, "/v1/kv/db-url").await;
    assert_eq!(STANDARD.decode(read["valueB64"].as_str().unwrap()).unwrap(), b"postgres://from-the-library");
    assert_eq!(read["ownerSealed"], true);

    // A value written through the Proxy opens with the library, as the version the Backend names.
    let res = app
        .proxy(
            Method::PUT,
            "/v1/kv/api-token",
            &[("X-Api-Key", &fx.admin_key), ("X-User-Secret", OWNER_SECRET)],
            Some(json!({ "valueB64": STANDARD.encode(b"from the proxy") })),
        )
        .await;
    expect_json(res, StatusCode::CREATED).await;
    let caller = vault.unlock(owner, OWNER_SECRET).await.unwrap();
    let opened = vault.get_value(&caller, &name("api-token"), None).await.unwrap();
    assert_eq!(opened.value.as_slice(), b"from the proxy");
    assert!(opened.owner_sealed);
    assert_eq!(opened.version, 1);

    // A share made with the library opens for its recipient through the Proxy.
    let terms = ShareTerms {
        recipient: fx.member_id,
        permission: "read",
        alias: "the database",
        expires_utc: None,
        expected_fingerprint: None,
    };
    let granted =
        vault.share_value(&caller, &name("db-url"), terms).await.unwrap().json::<serde_json::Value>().unwrap();
    let share_id = granted["shareId"].as_str().unwrap();
    let shared = proxy_get(&app, &fx.member_key, RECIPIENT_SECRET, &format!("/v1/kv/shared/{share_id}")).await;
    assert_eq!(STANDARD.decode(shared["valueB64"].as_str().unwrap()).unwrap(), b"postgres://from-the-library");
    assert_eq!(shared["alias"], "the database");

    // And the reverse: a share the Proxy made opens with the library on the recipient's side.
    let res = app
        .proxy(
            Method::POST,
            "/v1/kv/api-token/shares",
            &[("X-Api-Key", &fx.admin_key), ("X-User-Secret", OWNER_SECRET)],
            Some(json!({ "recipientUserId": fx.member_id, "permission": "read", "alias": "token" })),
        )
        .await;
    let share_id: uuid::Uuid =
        expect_json(res, StatusCode::CREATED).await["shareId"].as_str().unwrap().parse().unwrap();
    let reader = vault.unlock(recipient, RECIPIENT_SECRET).await.unwrap();
    let opened = vault.read_shared(&reader, share_id).await.unwrap();
    assert_eq!(STANDARD.decode(&opened.value_b64).unwrap(), b"from the proxy");
    assert_eq!(opened.alias, "token");
    let inbox = vault.inbox(&reader).await.unwrap();
    assert_eq!(inbox.len(), 2);

    // Refusals come back as the server's own answers: a wrong secret is 401 with its message.
    match vault.unlock(owner, "not the secret at all").await {
        Err(e @ Error::Status(StatusCode::UNAUTHORIZED, _)) => assert_eq!(e.message(), "invalid user secret"),
        Err(other) => panic!("expected 401, got {other}"),
        Ok(_) => panic!("a wrong secret unlocked the keys"),
    }
    match vault.get_value(&caller, &name("missing"), None).await {
        Err(e) => assert_eq!((e.http_status(), e.message().as_str()), (StatusCode::NOT_FOUND, "key not found")),
        Ok(_) => panic!("a missing record opened"),
    }
}
