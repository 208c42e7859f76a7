//! Sharing a KV value between users of one org, through the Proxy against the real Backend: the
//! rules, the inbox, updates followed without re-wrapping, revocation with key rotation, removal,
//! deletion and expiry, and nothing in clear on the Backend.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{expect_error, expect_json, spawn_app, TestApp};

const OWNER_SECRET: &str = "the owner's own secret";
const RECIPIENT_SECRET: &str = "the recipient's secret";

struct Team {
    org: Uuid,
    owner: String,
    owner_id: Uuid,
    recipient: String,
    recipient_id: Uuid,
    third: String,
    third_id: Uuid,
}

impl TestApp {
    async fn with_secret(
        &self,
        method: Method,
        path: &str,
        key: &str,
        secret: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        self.proxy(method, path, &[("X-Api-Key", key), ("X-User-Secret", secret)], body).await
    }
}

async fn team(app: &TestApp) -> Team {
    let fx = app.org_with_users("acme").await;
    let (third_id, third) = app.create_user(fx.org, &fx.admin_key, "third", false).await;
    for (key, secret) in [(&fx.admin_key, OWNER_SECRET), (&fx.member_key, RECIPIENT_SECRET), (&third, RECIPIENT_SECRET)]
    {
        let res = app.with_secret(Method::POST, "/v1/keys/generate", key, secret, None).await;
        expect_json(res, StatusCode::CREATED).await;
    }
    Team {
        org: fx.org,
        owner: fx.admin_key,
        owner_id: fx.admin_id,
        recipient: fx.member_key,
        recipient_id: fx.member_id,
        third,
        third_id,
    }
}

async fn put(app: &TestApp, key: &str, name: &str, value: &[u8]) {
    let res = app
        .with_secret(
            Method::PUT,
            &format!("/v1/kv/{name}"),
            key,
            OWNER_SECRET,
            Some(json!({ "valueB64": STANDARD.encode(value) })),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
}

async fn share(app: &TestApp, t: &Team, name: &str, recipient: Uuid, extra: Value) -> reqwest::Response {
    let mut body = json!({ "recipientUserId": recipient, "permission": "read", "alias": "primary database" });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.with_secret(Method::POST, &format!("/v1/kv/{name}/shares"), &t.owner, OWNER_SECRET, Some(body)).await
}

async fn shared_value(app: &TestApp, key: &str, share_id: &str) -> reqwest::Response {
    app.with_secret(Method::GET, &format!("/v1/kv/shared/{share_id}"), key, RECIPIENT_SECRET, None).await
}

async fn inbox(app: &TestApp, key: &str) -> Vec<Value> {
    let res = app.with_secret(Method::GET, "/v1/kv/shared", key, RECIPIENT_SECRET, None).await;
    expect_json(res, StatusCode::OK).await.as_array().cloned().unwrap()
}

fn value_of(body: &Value) -> Vec<u8> {
    STANDARD.decode(body["valueB64"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_shared_value_reaches_the_recipient_and_follows_updates() {
    let app = spawn_app().await;
    let t = team(&app).await;
    put(&app, &t.owner, "db-connection", b"postgres://v1").await;
    let created =
        expect_json(share(&app, &t, "db-connection", t.recipient_id, json!({})).await, StatusCode::CREATED).await;
    let share_id = created["shareId"].as_str().unwrap().to_owned();

    let items = inbox(&app, &t.recipient).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["shareId"], share_id);
    assert_eq!(items[0]["ownerUserId"], t.owner_id.to_string());
    assert_eq!(items[0]["alias"], "primary database");
    assert_eq!(items[0]["permission"], "read");
    assert_eq!(items[0]["version"], 1);

    let opened = expect_json(shared_value(&app, &t.recipient, &share_id).await, StatusCode::OK).await;
    assert_eq!(value_of(&opened), b"postgres://v1");
    assert_eq!(opened["alias"], "primary database");

    // The owner updates: the share sees the new version at once, with no re-wrapping.
    let share_events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Share'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    put(&app, &t.owner, "db-connection", b"postgres://v2").await;
    let opened = expect_json(shared_value(&app, &t.recipient, &share_id).await, StatusCode::OK).await;
    assert_eq!(value_of(&opened), b"postgres://v2");
    assert_eq!(opened["version"], 2);
    let share_events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Share'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(share_events_before, share_events_after, "no re-wrapping on update");

    // The owner sees the outgoing share.
    let outgoing = expect_json(
        app.proxy(Method::GET, "/v1/kv/db-connection/shares", &[("X-Api-Key", &t.owner)], None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(outgoing[0]["recipientUserId"], t.recipient_id.to_string());
    assert_eq!(outgoing[0]["permission"], "read");

    // A recipient's read exposes nothing else of the owner's: another share id is 404, the owner's
    // own records are not theirs to read.
    put(&app, &t.owner, "other-secret", b"not shared").await;
    expect_error(shared_value(&app, &t.recipient, &Uuid::new_v4().to_string()).await, StatusCode::NOT_FOUND).await;
    expect_error(shared_value(&app, &t.third, &share_id).await, StatusCode::NOT_FOUND).await;
    assert!(inbox(&app, &t.third).await.is_empty());
}

#[tokio::test]
async fn sharing_rules_are_enforced() {
    let app = spawn_app().await;
    let t = team(&app).await;
    put(&app, &t.owner, "k", b"v").await;
    let other = app.org_with_users("other").await;
    let res = app.with_secret(Method::POST, "/v1/keys/generate", &other.member_key, RECIPIENT_SECRET, None).await;
    expect_json(res, StatusCode::CREATED).await;
    let (keyless_id, _) = app.create_user(t.org, &t.owner, "keyless", false).await;

    let cases: Vec<(Uuid, Value, StatusCode, &str)> = vec![
        (other.member_id, json!({}), StatusCode::NOT_FOUND, "user not found"),
        (t.owner_id, json!({}), StatusCode::BAD_REQUEST, "yourself"),
        (keyless_id, json!({}), StatusCode::BAD_REQUEST, "no keys yet"),
        (t.recipient_id, json!({ "permission": "write" }), StatusCode::BAD_REQUEST, "permission must be \"read\""),
        (t.recipient_id, json!({ "expiresUtc": "2020-01-01T00:00:00Z" }), StatusCode::BAD_REQUEST, "in the future"),
        (t.recipient_id, json!({ "expiresUtc": "tomorrow" }), StatusCode::BAD_REQUEST, "invalid request body"),
        (Uuid::new_v4(), json!({}), StatusCode::NOT_FOUND, "user not found"),
    ];
    for (recipient, extra, status, expected) in cases {
        let msg = expect_error(share(&app, &t, "k", recipient, extra.clone()).await, status).await;
        assert!(msg.contains(expected), "{extra}: expected {expected:?}, got {msg:?}");
    }
    // One open share per recipient and record.
    expect_json(share(&app, &t, "k", t.recipient_id, json!({})).await, StatusCode::CREATED).await;
    let msg = expect_error(share(&app, &t, "k", t.recipient_id, json!({})).await, StatusCode::CONFLICT).await;
    assert!(msg.contains("already shared"), "{msg}");
    // A missing record, and a missing secret.
    expect_error(share(&app, &t, "missing", t.recipient_id, json!({})).await, StatusCode::NOT_FOUND).await;
    let res = app
        .proxy(
            Method::POST,
            "/v1/kv/k/shares",
            &[("X-Api-Key", &t.owner)],
            Some(json!({ "recipientUserId": t.recipient_id, "permission": "read" })),
        )
        .await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let shares: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Share'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(shares, 1, "only the one accepted share was recorded");
}

#[tokio::test]
async fn revoking_refuses_the_recipient_at_once_and_rotates_the_key() {
    let app = spawn_app().await;
    let t = team(&app).await;
    put(&app, &t.owner, "k", b"secret value").await;
    let to_recipient = expect_json(share(&app, &t, "k", t.recipient_id, json!({})).await, StatusCode::CREATED).await;
    let to_third = expect_json(share(&app, &t, "k", t.third_id, json!({})).await, StatusCode::CREATED).await;
    let (revoked, kept) = (to_recipient["shareId"].as_str().unwrap(), to_third["shareId"].as_str().unwrap());
    let before: Value = expect_json(app.get("/kv/k", &t.owner).await, StatusCode::OK).await;

    let res =
        app.with_secret(Method::DELETE, &format!("/v1/kv/k/shares/{revoked}"), &t.owner, OWNER_SECRET, None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    expect_error(shared_value(&app, &t.recipient, revoked).await, StatusCode::NOT_FOUND).await;
    assert!(inbox(&app, &t.recipient).await.is_empty());

    // The record's key was rotated: a new version under a new key epoch, the value unchanged, and
    // the remaining recipient still reads it.
    let after: Value = expect_json(app.get("/kv/k", &t.owner).await, StatusCode::OK).await;
    assert_eq!(after["version"], 2);
    assert_ne!(after["keyEpoch"], before["keyEpoch"]);
    assert_eq!(after["rotationPending"], false);
    let opened = expect_json(shared_value(&app, &t.third, kept).await, StatusCode::OK).await;
    assert_eq!(value_of(&opened), b"secret value");
    let owner_read =
        expect_json(app.with_secret(Method::GET, "/v1/kv/k", &t.owner, OWNER_SECRET, None).await, StatusCode::OK).await;
    assert_eq!(value_of(&owner_read), b"secret value");
    // Every step is in the org's audit.
    crate::helpers::eventually("share steps in the audit", || async {
        let audit = expect_json(app.get("/audit?scope=all", &t.owner).await, StatusCode::OK).await.to_string();
        ["share.grant", "share.revoke", "share.rewrap"].iter().all(|a| audit.contains(a))
    })
    .await;
    // Revoking twice, or someone else's share, is 404.
    let res =
        app.with_secret(Method::DELETE, &format!("/v1/kv/k/shares/{revoked}"), &t.owner, OWNER_SECRET, None).await;
    expect_error(res, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_recipient_removing_access_is_refused_at_once_and_the_next_write_rotates() {
    let app = spawn_app().await;
    let t = team(&app).await;
    put(&app, &t.owner, "k", b"v1").await;
    let created = expect_json(share(&app, &t, "k", t.recipient_id, json!({})).await, StatusCode::CREATED).await;
    let id = created["shareId"].as_str().unwrap();
    let kept = expect_json(share(&app, &t, "k", t.third_id, json!({})).await, StatusCode::CREATED).await;
    let kept = kept["shareId"].as_str().unwrap();
    let res = app.proxy(Method::DELETE, &format!("/v1/kv/shared/{id}"), &[("X-Api-Key", &t.recipient)], None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    expect_error(shared_value(&app, &t.recipient, id).await, StatusCode::NOT_FOUND).await;
    // The owner cannot revoke what is gone; the third user cannot remove someone else's share.
    let res = app.proxy(Method::DELETE, &format!("/v1/kv/shared/{id}"), &[("X-Api-Key", &t.third)], None).await;
    expect_error(res, StatusCode::NOT_FOUND).await;

    let before: Value = expect_json(app.get("/kv/k", &t.owner).await, StatusCode::OK).await;
    assert_eq!(before["rotationPending"], true);
    put(&app, &t.owner, "k", b"v2").await;
    let after: Value = expect_json(app.get("/kv/k", &t.owner).await, StatusCode::OK).await;
    assert_ne!(after["keyEpoch"], before["keyEpoch"], "the write rotated the key");
    assert_eq!(after["rotationPending"], false);
    let owner_read =
        expect_json(app.with_secret(Method::GET, "/v1/kv/k", &t.owner, OWNER_SECRET, None).await, StatusCode::OK).await;
    assert_eq!(value_of(&owner_read), b"v2");
    // The remaining recipient got the new key with the rotation.
    let opened = expect_json(shared_value(&app, &t.third, kept).await, StatusCode::OK).await;
    assert_eq!(value_of(&opened), b"v2");
}

#[tokio::test]
async fn revoking_needs_only_the_api_key_and_a_garbage_alias_hides_only_itself() {
    let app = spawn_app().await;
    let t = team(&app).await;
    put(&app, &t.owner, "k", b"v").await;
    let created = expect_json(share(&app, &t, "k", t.recipient_id, json!({})).await, StatusCode::CREATED).await;
    let id = created["shareId"].as_str().unwrap();
    // No secret (forgotten, or throttled): the recipient is refused all the same; the key rotates
    // on the next write.
    let res = app.proxy(Method::DELETE, &format!("/v1/kv/k/shares/{id}"), &[("X-Api-Key", &t.owner)], None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    expect_error(shared_value(&app, &t.recipient, id).await, StatusCode::NOT_FOUND).await;
    let record: Value = expect_json(app.get("/kv/k", &t.owner).await, StatusCode::OK).await;
    assert_eq!(record["rotationPending"], true);

    // A share made around the Proxy with an alias nobody can open: the inbox still lists it.
    let b64 = |fill: u8, n: usize| STANDARD.encode(vec![fill; n]);
    let raw = json!({
        "recipientUserId": t.third_id, "permission": "read", "encryptedAliasB64": b64(1, 40),
        "encryptedAesKeyEccB64": b64(2, 33), "encryptedAesKeyKyberB64": b64(3, 1149), "keyEpoch": record["keyEpoch"]
    });
    expect_json(app.post("/kv/k/shares", &t.owner, raw).await, StatusCode::CREATED).await;
    let items = inbox(&app, &t.third).await;
    assert_eq!(items.len(), 1);
    assert!(items[0]["alias"].is_null());
}

#[tokio::test]
async fn deleting_the_record_ends_its_shares_even_when_it_is_written_again() {
    let app = spawn_app().await;
    let t = team(&app).await;
    put(&app, &t.owner, "k", b"v1").await;
    let created = expect_json(share(&app, &t, "k", t.recipient_id, json!({})).await, StatusCode::CREATED).await;
    let id = created["shareId"].as_str().unwrap();
    let res = app.proxy(Method::DELETE, "/v1/kv/k", &[("X-Api-Key", &t.owner)], None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    expect_error(shared_value(&app, &t.recipient, id).await, StatusCode::NOT_FOUND).await;
    assert!(inbox(&app, &t.recipient).await.is_empty());
    // A new life of the same name is not shared.
    put(&app, &t.owner, "k", b"a new life").await;
    expect_error(shared_value(&app, &t.recipient, id).await, StatusCode::NOT_FOUND).await;
    assert!(inbox(&app, &t.recipient).await.is_empty());
}

#[tokio::test]
async fn an_expired_share_is_404_and_gone_from_the_inbox() {
    let app = spawn_app().await;
    let t = team(&app).await;
    put(&app, &t.owner, "k", b"v").await;
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1_500)).to_rfc3339();
    let created =
        expect_json(share(&app, &t, "k", t.recipient_id, json!({ "expiresUtc": soon })).await, StatusCode::CREATED)
            .await;
    let id = created["shareId"].as_str().unwrap();
    expect_json(shared_value(&app, &t.recipient, id).await, StatusCode::OK).await;
    assert_eq!(inbox(&app, &t.recipient).await.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1_700)).await;
    expect_error(shared_value(&app, &t.recipient, id).await, StatusCode::NOT_FOUND).await;
    assert!(inbox(&app, &t.recipient).await.is_empty());
    // Expiry ended the share while the key was wrapped for it: the next write rotates.
    let record: Value = expect_json(app.get("/kv/k", &t.owner).await, StatusCode::OK).await;
    assert_eq!(record["rotationPending"], true);
}

#[tokio::test]
async fn the_backend_holds_no_plaintext_of_shared_values_or_aliases() {
    let app = spawn_app().await;
    let t = team(&app).await;
    let marker = format!("marker-{}", Uuid::new_v4().simple());
    put(&app, &t.owner, "k", marker.as_bytes()).await;
    let body = json!({ "recipientUserId": t.recipient_id, "permission": "read", "alias": format!("alias-{marker}") });
    let created = expect_json(
        app.with_secret(Method::POST, "/v1/kv/k/shares", &t.owner, OWNER_SECRET, Some(body)).await,
        StatusCode::CREATED,
    )
    .await;
    let id = created["shareId"].as_str().unwrap();
    let opened = expect_json(shared_value(&app, &t.recipient, id).await, StatusCode::OK).await;
    assert_eq!(opened["alias"], format!("alias-{marker}"));
    let res = app.with_secret(Method::DELETE, &format!("/v1/kv/k/shares/{id}"), &t.owner, OWNER_SECRET, None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    crate::helpers::assert_nowhere_in_the_database(&app, &marker, &[OWNER_SECRET, RECIPIENT_SECRET]).await;
    crate::helpers::assert_nowhere_on_the_stream(&app, &marker).await;
}

/// Two owners' tabs (or a retried request) granting the same record to the same user at once: the
/// share's id is derived from the owner, record, recipient and life, so the Share aggregate itself
/// lets one grant through and the others conflict at append, whatever the shares view says. Had
/// both passed, revoking the one the owner sees would leave the other open.
#[tokio::test]
async fn racing_grants_to_one_recipient_make_one_share_and_its_revocation_leaves_none() {
    let app = spawn_app().await;
    let t = team(&app).await;
    put(&app, &t.owner, "k", b"raced value").await;
    let answers = futures::future::join_all((0..6).map(|_| share(&app, &t, "k", t.recipient_id, json!({})))).await;
    let mut created = Vec::new();
    for res in answers {
        match res.status() {
            StatusCode::CREATED => created.push(expect_json(res, StatusCode::CREATED).await),
            StatusCode::CONFLICT => {
                let msg = expect_error(res, StatusCode::CONFLICT).await;
                assert!(msg.contains("already shared"), "{msg}");
            }
            other => panic!("a racing grant answered {other}: {}", res.text().await.unwrap()),
        }
    }
    assert_eq!(created.len(), 1, "exactly one of the racing grants made a share");
    let id = created[0]["shareId"].as_str().unwrap().to_owned();
    let granted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'Share' AND event_type = 'ShareGranted'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(granted, 1);
    // The record holds it as its one open share.
    let open: Vec<String> = sqlx::query_scalar(
        "SELECT jsonb_array_elements_text(payload -> 'SecretShareOpened' -> 'shares') FROM events
          WHERE aggregate_type = 'Secret' AND event_type = 'SecretShareOpened'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(open, vec![id.clone()]);

    let res = app.with_secret(Method::DELETE, &format!("/v1/kv/k/shares/{id}"), &t.owner, OWNER_SECRET, None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    expect_error(shared_value(&app, &t.recipient, &id).await, StatusCode::NOT_FOUND).await;
    assert!(inbox(&app, &t.recipient).await.is_empty(), "no second share survived the revocation");

    // Granting again after the revocation opens the same share anew, with the new key only.
    let again = expect_json(share(&app, &t, "k", t.recipient_id, json!({})).await, StatusCode::CREATED).await;
    assert_eq!(again["shareId"], id.as_str());
    let opened = expect_json(shared_value(&app, &t.recipient, &id).await, StatusCode::OK).await;
    assert_eq!(value_of(&opened), b"raced value");
    assert_eq!(inbox(&app, &t.recipient).await.len(), 1);
}

/// Which shares a rotation must re-wrap is decided by the record's own events, not by the shares
/// view: with a share's row gone from the view (a lagging or tampered read model), the rotation the
/// owner's next write makes is refused instead of leaving that share without the key.
#[tokio::test]
async fn a_rotation_must_cover_every_share_the_record_holds_whatever_the_shares_view_lists() {
    let app = spawn_app().await;
    let t = team(&app).await;
    put(&app, &t.owner, "k", b"v1").await;
    let ended = expect_json(share(&app, &t, "k", t.recipient_id, json!({})).await, StatusCode::CREATED).await;
    let hidden = expect_json(share(&app, &t, "k", t.third_id, json!({})).await, StatusCode::CREATED).await;
    let (ended, hidden) = (ended["shareId"].as_str().unwrap(), hidden["shareId"].as_str().unwrap().to_owned());
    // The recipient gives theirs up: the owner's next write rotates the key.
    let res = app.proxy(Method::DELETE, &format!("/v1/kv/shared/{ended}"), &[("X-Api-Key", &t.recipient)], None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.with_secret(Method::GET, &format!("/v1/kv/shared/{hidden}"), &t.third, RECIPIENT_SECRET, None).await;
    let before = expect_json(res, StatusCode::OK).await;
    let v1 = expect_json(app.get("/kv/k", &t.owner).await, StatusCode::OK).await;

    sqlx::query("DELETE FROM kv_shares WHERE share_id = $1")
        .bind(Uuid::parse_str(&hidden).unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    let res = app
        .with_secret(
            Method::PUT,
            "/v1/kv/k",
            &t.owner,
            OWNER_SECRET,
            Some(json!({ "valueB64": STANDARD.encode(b"v2") })),
        )
        .await;
    let msg = expect_error(res, StatusCode::CONFLICT).await;
    assert!(msg.contains(&hidden), "the refusal names the share the view left out: {msg}");
    // Nothing was written, and the hidden share still opens the current version.
    let now = expect_json(app.get("/kv/k", &t.owner).await, StatusCode::OK).await;
    assert_eq!(now["version"], v1["version"]);
    assert_eq!(now["keyEpoch"], v1["keyEpoch"]);
    let res = app.with_secret(Method::GET, &format!("/v1/kv/shared/{hidden}"), &t.third, RECIPIENT_SECRET, None).await;
    assert_eq!(value_of(&expect_json(res, StatusCode::OK).await), value_of(&before));
}
