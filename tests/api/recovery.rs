//! Trusted-user recovery, end to end through the Proxy against the real Backend: the owner forgets
//! their secret, a trustee restores, the owner completes with the temporary secret, the answer and a
//! new secret, and reads their old values; and everything that must not work does not.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{expect_error, expect_json, spawn_app, TestApp};

const OWNER_SECRET: &str = "owner secret before forgetting";
const TRUSTEE_SECRET: &str = "the trustee's own secret";
const TEMPORARY: &str = "temporary secret from the trustee";
const NEW_SECRET: &str = "the owner's brand new secret";
const ANSWER: &str = "the name of my first dog was Rex";

struct People {
    owner: String,
    owner_id: Uuid,
    trustee: String,
    trustee_id: Uuid,
    stranger: String,
}

async fn people(app: &TestApp) -> People {
    let fx = app.org_with_users("acme").await;
    let (_, stranger) = app.create_user(fx.org, &fx.admin_key, "stranger", false).await;
    for (key, secret) in [(&fx.member_key, OWNER_SECRET), (&fx.admin_key, TRUSTEE_SECRET), (&stranger, TRUSTEE_SECRET)]
    {
        let res =
            app.proxy(Method::POST, "/v1/keys/generate", &[("X-Api-Key", key), ("X-User-Secret", secret)], None).await;
        expect_json(res, StatusCode::CREATED).await;
    }
    People { owner: fx.member_key, owner_id: fx.member_id, trustee: fx.admin_key, trustee_id: fx.admin_id, stranger }
}

async fn put_value(app: &TestApp, key: &str, secret: &str, name: &str, value: &str) {
    let body = json!({ "valueB64": STANDARD.encode(value) });
    let res = app
        .proxy(Method::PUT, &format!("/v1/kv/{name}"), &[("X-Api-Key", key), ("X-User-Secret", secret)], Some(body))
        .await;
    assert!(res.status().is_success());
}

async fn read_value(app: &TestApp, key: &str, secret: &str, name: &str) -> reqwest::Response {
    app.proxy(Method::GET, &format!("/v1/kv/{name}"), &[("X-Api-Key", key), ("X-User-Secret", secret)], None).await
}

async fn name_trustee(app: &TestApp, p: &People, body: Value) -> reqwest::Response {
    app.proxy(
        Method::PUT,
        &format!("/v1/recovery/trustees/{}", p.trustee_id),
        &[("X-Api-Key", &p.owner), ("X-User-Secret", OWNER_SECRET)],
        Some(body),
    )
    .await
}

async fn restore(app: &TestApp, key: &str, owner: Uuid) -> reqwest::Response {
    app.proxy(
        Method::POST,
        &format!("/v1/recovery/restore/{owner}"),
        &[("X-Api-Key", key), ("X-User-Secret", TRUSTEE_SECRET), ("X-Recovery-Secret", TEMPORARY)],
        None,
    )
    .await
}

async fn complete(app: &TestApp, p: &People, temporary: &str, answer: Option<&str>) -> reqwest::Response {
    let body = match answer {
        Some(a) => json!({ "xorAnswer": a }),
        None => json!({}),
    };
    app.proxy(
        Method::POST,
        "/v1/recovery/complete",
        &[("X-Api-Key", &p.owner), ("X-Recovery-Secret", temporary), ("X-New-User-Secret", NEW_SECRET)],
        Some(body),
    )
    .await
}

async fn requires_rekey(app: &TestApp, key: &str) -> bool {
    expect_json(app.get("/users/me", key).await, StatusCode::OK).await["requiresRekey"].as_bool().unwrap()
}

#[tokio::test]
async fn a_forgotten_secret_is_recovered_through_a_trustee_and_the_answer() {
    let app = spawn_app().await;
    let p = people(&app).await;
    let marker = format!("recovered-{}", Uuid::new_v4().simple());
    put_value(&app, &p.owner, OWNER_SECRET, "db", &marker).await;
    let body = json!({ "xorApplied": true, "xorSaltHint": "dog-name", "xorAnswer": ANSWER });
    let named = expect_json(name_trustee(&app, &p, body).await, StatusCode::OK).await;
    assert_eq!(named["trusteeUserId"], p.trustee_id.to_string());
    assert_eq!(named["xorApplied"], true);
    assert_eq!(named["xorSaltHint"], "dog-name");

    // Both sides see the arrangement.
    let trustees = expect_json(app.get("/users/me/recovery/trustees", &p.owner).await, StatusCode::OK).await;
    assert_eq!(trustees[0]["trusteeUserId"], p.trustee_id.to_string());
    let owners = expect_json(app.get("/users/me/recovery/shares", &p.trustee).await, StatusCode::OK).await;
    assert_eq!(owners[0]["ownerUserId"], p.owner_id.to_string());
    assert_eq!(owners[0]["xorSaltHint"], "dog-name");
    let share =
        expect_json(app.get(&format!("/users/me/recovery/shares/{}", p.owner_id), &p.trustee).await, StatusCode::OK)
            .await;
    assert!(share["encryptedPrivateKeyEccShareB64"].is_string());

    // The owner forgot their secret; the trustee restores under a temporary secret.
    let restored = expect_json(restore(&app, &p.trustee, p.owner_id).await, StatusCode::OK).await;
    assert_eq!(restored["requiresRekey"], true);
    assert!(requires_rekey(&app, &p.owner).await);
    // The restore replaced nothing: the old secret still works.
    let old = expect_json(read_value(&app, &p.owner, OWNER_SECRET, "db").await, StatusCode::OK).await;
    assert_eq!(STANDARD.decode(old["valueB64"].as_str().unwrap()).unwrap(), marker.as_bytes());

    // Wrong answer, missing answer, wrong temporary secret: nothing changes.
    expect_error(complete(&app, &p, TEMPORARY, Some("the name of my first cat")).await, StatusCode::UNAUTHORIZED).await;
    expect_error(complete(&app, &p, TEMPORARY, None).await, StatusCode::BAD_REQUEST).await;
    expect_error(complete(&app, &p, "not the temporary secret", Some(ANSWER)).await, StatusCode::UNAUTHORIZED).await;
    assert!(requires_rekey(&app, &p.owner).await);

    // Temporary secret + answer (any case) + new secret: recovered.
    let keys =
        expect_json(complete(&app, &p, TEMPORARY, Some(" THE NAME of my first dog was rex ")).await, StatusCode::OK)
            .await;
    let me = expect_json(app.get("/users/me", &p.owner).await, StatusCode::OK).await;
    assert_eq!(keys["publicKeyEccB64"], me["publicKeyEccB64"], "the same key pairs");
    assert!(!requires_rekey(&app, &p.owner).await);
    expect_error(read_value(&app, &p.owner, OWNER_SECRET, "db").await, StatusCode::UNAUTHORIZED).await;
    let now = expect_json(read_value(&app, &p.owner, NEW_SECRET, "db").await, StatusCode::OK).await;
    assert_eq!(STANDARD.decode(now["valueB64"].as_str().unwrap()).unwrap(), marker.as_bytes());
    // Completing twice: nothing is pending any more.
    expect_error(complete(&app, &p, TEMPORARY, Some(ANSWER)).await, StatusCode::NOT_FOUND).await;

    // Every step is in the org's audit.
    crate::helpers::eventually("recovery steps in the audit", || async {
        let audit = expect_json(app.get("/audit?scope=all", &p.trustee).await, StatusCode::OK).await.to_string();
        ["recovery.trustee_set", "recovery.restore_submit", "recovery.complete", "user.keys_reseal"]
            .iter()
            .all(|a| audit.contains(a))
    })
    .await;
    // The Backend never held the value, the secrets or the answer in clear.
    crate::helpers::assert_nowhere_in_the_database(
        &app,
        &marker,
        &[OWNER_SECRET, TRUSTEE_SECRET, TEMPORARY, NEW_SECRET, ANSWER, "first dog"],
    )
    .await;
    crate::helpers::assert_nowhere_on_the_stream(&app, &marker).await;
}

#[tokio::test]
async fn only_a_configured_trustee_restores_and_without_the_answer_nothing_opens() {
    let app = spawn_app().await;
    let p = people(&app).await;
    let body = json!({ "xorApplied": true, "xorSaltHint": "dog-name", "xorAnswer": ANSWER });
    expect_json(name_trustee(&app, &p, body).await, StatusCode::OK).await;
    // A stranger has no share and cannot restore.
    expect_error(
        app.get(&format!("/users/me/recovery/shares/{}", p.owner_id), &p.stranger).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_error(restore(&app, &p.stranger, p.owner_id).await, StatusCode::NOT_FOUND).await;
    let raw = json!({ "encryptedPrivateKeyEccB64": "AAAA", "encryptedPrivateKeyKyberB64": "AAAA", "usedXor": true });
    expect_error(
        app.post(&format!("/users/me/recovery/restore/{}", p.owner_id), &p.stranger, raw).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(!requires_rekey(&app, &p.owner).await);

    // The trustee restores, but the masked keys are useless without the answer: completing
    // (even with the owner's API key and the temporary secret) fails with a wrong answer.
    expect_json(restore(&app, &p.trustee, p.owner_id).await, StatusCode::OK).await;
    expect_error(complete(&app, &p, TEMPORARY, Some("a guess")).await, StatusCode::UNAUTHORIZED).await;
    // Removing the trustee voids their restore.
    let res = app.delete(&format!("/users/me/recovery/trustees/{}", p.trustee_id), &p.owner).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(!requires_rekey(&app, &p.owner).await);
    expect_error(complete(&app, &p, TEMPORARY, Some(ANSWER)).await, StatusCode::NOT_FOUND).await;
    expect_error(restore(&app, &p.trustee, p.owner_id).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn the_seeds_shapes_pass_through_the_proxy_for_clients_that_do_their_own_crypto() {
    let app = spawn_app().await;
    let p = people(&app).await;
    let seed = json!({
        "encryptedPrivateKeyEccShareB64": "c2hhcmUtZWNj", "encryptedPrivateKeyKyberShareB64": "c2hhcmUta3liZXI=",
        "xorApplied": true, "xorSaltHint": "dog-name"
    });
    let res = app
        .proxy(Method::PUT, &format!("/v1/recovery/trustees/{}", p.trustee_id), &[("X-Api-Key", &p.owner)], Some(seed))
        .await;
    let stored = expect_json(res, StatusCode::OK).await;
    assert_eq!(stored["encryptedPrivateKeyEccShareB64"], "c2hhcmUtZWNj");
    let restore_seed = json!({
        "encryptedPrivateKeyEccB64": "cmVzdG9yZWQ=", "encryptedPrivateKeyKyberB64": "cmVzdG9yZWQ=",
        "usedXor": true, "xorSaltHint": "dog-name"
    });
    let res = app
        .proxy(
            Method::POST,
            &format!("/v1/recovery/restore/{}", p.owner_id),
            &[("X-Api-Key", &p.trustee)],
            Some(restore_seed),
        )
        .await;
    assert_eq!(expect_json(res, StatusCode::OK).await["requiresRekey"], true);
    assert!(requires_rekey(&app, &p.owner).await);
}

#[tokio::test]
async fn trustee_rules_follow_the_spec() {
    let app = spawn_app().await;
    let p = people(&app).await;
    let other = app.org_with_users("other").await;
    let share = |ecc: &str| json!({ "encryptedPrivateKeyEccShareB64": ecc, "encryptedPrivateKeyKyberShareB64": "AAAA", "xorApplied": false });
    let path = |id: Uuid| format!("/users/me/recovery/trustees/{id}");
    let msg = expect_error(app.put(&path(p.owner_id), &p.owner, share("AAAA")).await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("own trustee"), "{msg}");
    let msg = expect_error(app.put(&path(other.member_id), &p.owner, share("AAAA")).await, StatusCode::NOT_FOUND).await;
    assert!(msg.contains("trustee not found"), "{msg}");
    expect_error(app.put(&path(Uuid::new_v4()), &p.owner, share("AAAA")).await, StatusCode::NOT_FOUND).await;
    let msg =
        expect_error(app.put(&path(p.trustee_id), &p.owner, share("not base64!")).await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("encryptedPrivateKeyEccShareB64"), "{msg}");
    // Through the Proxy: a mask needs an answer.
    let msg = expect_error(name_trustee(&app, &p, json!({ "xorApplied": true })).await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("xorAnswer"), "{msg}");
    let recovery_events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Recovery'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(recovery_events, 0);
    // A short answer is refused; without a mask (explicitly), recovery needs no answer.
    let short = json!({ "xorAnswer": "rex" });
    expect_error(name_trustee(&app, &p, short).await, StatusCode::BAD_REQUEST).await;
    expect_json(name_trustee(&app, &p, json!({ "xorApplied": false })).await, StatusCode::OK).await;
    expect_json(restore(&app, &p.trustee, p.owner_id).await, StatusCode::OK).await;
    expect_json(complete(&app, &p, TEMPORARY, None).await, StatusCode::OK).await;
    expect_error(app.get(&path(Uuid::new_v4()), &p.owner).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn an_org_admin_with_a_made_up_trustee_and_a_junk_restore_cannot_replace_a_members_keys() {
    let app = spawn_app().await;
    let p = people(&app).await;
    put_value(&app, &p.owner, OWNER_SECRET, "db", "the member's value").await;
    // A2: the org admin (here also p.trustee) rotates the member's API key, and so holds it.
    let me = expect_json(app.get("/users/me", &p.owner).await, StatusCode::OK).await;
    let org = me["orgId"].as_str().unwrap();
    let rotated =
        app.post(&format!("/admin/orgs/{org}/users/{}/apikey/rotate", p.owner_id), &p.trustee, json!({})).await;
    let member_key = expect_json(rotated, StatusCode::OK).await["apiKey"].as_str().unwrap().to_owned();
    // As the member, names the admin a trustee with made-up material; as trustee, submits junk.
    let junk = |n: usize| STANDARD.encode(vec![0x5a; n]);
    let share = json!({ "encryptedPrivateKeyEccShareB64": junk(80), "encryptedPrivateKeyKyberShareB64": junk(120), "xorApplied": false });
    expect_json(
        app.put(&format!("/users/me/recovery/trustees/{}", p.trustee_id), &member_key, share).await,
        StatusCode::OK,
    )
    .await;
    let restore =
        json!({ "encryptedPrivateKeyEccB64": junk(90), "encryptedPrivateKeyKyberB64": junk(130), "usedXor": false });
    let res = app.post(&format!("/users/me/recovery/restore/{}", p.owner_id), &p.trustee, restore).await;
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    // Completes with keys of its own making: no proof of the restored keys, a guessed one, a replayed challenge.
    let pending = expect_json(app.get("/users/me/recovery/pending", &member_key).await, StatusCode::OK).await;
    for answer in [STANDARD.encode([0u8; 32]), pending["challengeB64"].as_str().unwrap()[..44].to_owned()] {
        let complete = json!({
            "encryptedPrivateKeyEccB64": junk(100), "encryptedPrivateKeyKyberB64": junk(140),
            "sealProofB64": STANDARD.encode([7u8; 32]), "challengeAnswerB64": answer,
        });
        let res = app.post("/users/me/recovery/complete", &member_key, complete).await;
        assert!(matches!(res.status(), StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST), "{}", res.status());
    }
    let missing = json!({ "encryptedPrivateKeyEccB64": junk(100), "encryptedPrivateKeyKyberB64": junk(140), "sealProofB64": STANDARD.encode([7u8; 32]) });
    expect_error(app.post("/users/me/recovery/complete", &member_key, missing).await, StatusCode::BAD_REQUEST).await;
    // The Proxy refuses the junk too: it does not open as the member's keys.
    let via_proxy = app
        .proxy(
            Method::POST,
            "/v1/recovery/complete",
            &[("X-Api-Key", &member_key), ("X-Recovery-Secret", TEMPORARY), ("X-New-User-Secret", NEW_SECRET)],
            Some(json!({})),
        )
        .await;
    assert!(!via_proxy.status().is_success());
    // The member's keys are untouched: their own secret still opens their value.
    let read = expect_json(read_value(&app, &member_key, OWNER_SECRET, "db").await, StatusCode::OK).await;
    assert_eq!(STANDARD.decode(read["valueB64"].as_str().unwrap()).unwrap(), b"the member's value");
    let _ = p.stranger;
}

#[tokio::test]
async fn a_pending_restore_expires() {
    let app = crate::helpers::spawn_app_with(|s| s.recovery_restore_ttl_secs = 1).await;
    let p = people(&app).await;
    let body = json!({ "xorApplied": true, "xorSaltHint": "dog-name", "xorAnswer": ANSWER });
    expect_json(name_trustee(&app, &p, body).await, StatusCode::OK).await;
    expect_json(restore(&app, &p.trustee, p.owner_id).await, StatusCode::OK).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let msg = expect_error(app.get("/users/me/recovery/pending", &p.owner).await, StatusCode::GONE).await;
    assert!(msg.contains("expired"), "{msg}");
    expect_error(complete(&app, &p, TEMPORARY, Some(ANSWER)).await, StatusCode::GONE).await;
    // The old secret still works, and a new restore can be made.
    put_value(&app, &p.owner, OWNER_SECRET, "still-mine", "yes").await;
    expect_json(restore(&app, &p.trustee, p.owner_id).await, StatusCode::OK).await;
}
