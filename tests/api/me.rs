use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{expect_error, expect_json, spawn_app};

fn b64(fill: u8, len: usize) -> String {
    STANDARD.encode(vec![fill; len])
}

fn keys(public_fill: u8, sealed_fill: u8) -> Value {
    json!({
        "publicKeyEccB64": b64(public_fill, 32),
        "publicKeyKyberB64": b64(public_fill, 1184),
        "encryptedPrivateKeyEccB64": b64(sealed_fill, 93),
        "encryptedPrivateKeyKyberB64": b64(sealed_fill, 2461),
        "sealProofB64": b64(sealed_fill, 32),
    })
}

/// A re-seal of `keys(public_fill, sealed_fill)` that proves the seal `current_fill`.
fn reseal(public_fill: u8, sealed_fill: u8, current_fill: u8) -> Value {
    let mut body = keys(public_fill, sealed_fill);
    body["currentSealProofB64"] = json!(b64(current_fill, 32));
    body
}

#[tokio::test]
async fn me_returns_the_caller_with_the_key_hash_blanked() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let me = expect_json(app.get("/users/me", &fx.member_key).await, StatusCode::OK).await;
    assert_eq!(me["id"], fx.member_id.to_string());
    assert_eq!(me["orgId"], fx.org.to_string());
    assert_eq!(me["apiKeyHash"], "");
    assert_eq!(me["isAdmin"], false);
    assert!(me["encryptedPrivateKeyEccB64"].is_null());
    let admin = expect_json(app.get("/users/me", &app.global_admin_key).await, StatusCode::OK).await;
    assert_eq!(admin["role"], "global_admin");
    assert!(admin["orgId"].is_null());
}

#[tokio::test]
async fn storing_keys_then_resealing_with_the_same_public_keys() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let me = expect_json(app.post("/users/me/keys", &fx.member_key, keys(1, 2)).await, StatusCode::OK).await;
    assert_eq!(me["publicKeyEccB64"], b64(1, 32));
    assert_eq!(me["encryptedPrivateKeyKyberB64"], b64(2, 2461));
    // Read your write.
    let me = expect_json(app.get("/users/me", &fx.member_key).await, StatusCode::OK).await;
    assert_eq!(me["encryptedPrivateKeyEccB64"], b64(2, 93));
    // A re-seal: same public keys, newly sealed private keys, and the proof of the current seal.
    expect_json(app.post("/users/me/keys", &fx.member_key, reseal(1, 3, 2)).await, StatusCode::OK).await;
    let me = expect_json(app.get("/users/me", &fx.member_key).await, StatusCode::OK).await;
    assert_eq!(me["encryptedPrivateKeyEccB64"], b64(3, 93));
    // Peers see the public keys only.
    let profile =
        expect_json(app.get(&format!("/users/org/{}", fx.member_id), &fx.admin_key).await, StatusCode::OK).await;
    assert_eq!(profile["publicKeyEccB64"], b64(1, 32));
    assert!(profile.get("encryptedPrivateKeyEccB64").is_none());
}

#[tokio::test]
async fn an_api_key_alone_cannot_replace_sealed_keys() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    expect_json(app.post("/users/me/keys", &fx.member_key, keys(1, 2)).await, StatusCode::OK).await;
    let before = app.event_count().await;
    let msg = expect_error(app.post("/users/me/keys", &fx.member_key, keys(1, 3)).await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("currentSealProofB64"), "{msg}");
    let msg =
        expect_error(app.post("/users/me/keys", &fx.member_key, reseal(1, 3, 9)).await, StatusCode::FORBIDDEN).await;
    assert!(msg.contains("does not prove the current user secret"), "{msg}");
    // The proof of a seal that has been replaced proves nothing any more.
    expect_json(app.post("/users/me/keys", &fx.member_key, reseal(1, 3, 2)).await, StatusCode::OK).await;
    expect_error(app.post("/users/me/keys", &fx.member_key, reseal(1, 4, 2)).await, StatusCode::FORBIDDEN).await;
    assert_eq!(app.event_count().await, before + 1, "only the proven re-seal was written");
    let me = expect_json(app.get("/users/me", &fx.member_key).await, StatusCode::OK).await;
    assert_eq!(me["encryptedPrivateKeyEccB64"], b64(3, 93));
}

#[tokio::test]
async fn different_public_keys_are_refused_so_keys_are_never_silently_replaced() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    expect_json(app.post("/users/me/keys", &fx.member_key, keys(1, 2)).await, StatusCode::OK).await;
    let before = app.event_count().await;
    expect_error(app.post("/users/me/keys", &fx.member_key, keys(9, 9)).await, StatusCode::CONFLICT).await;
    assert_eq!(app.event_count().await, before);
    let me = expect_json(app.get("/users/me", &fx.member_key).await, StatusCode::OK).await;
    assert_eq!(me["publicKeyEccB64"], b64(1, 32));
}

#[tokio::test]
async fn key_material_must_be_valid_base64_of_the_right_size() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let mut cases = Vec::new();
    for (field, bad, expected) in [
        ("publicKeyEccB64", json!("not base64!"), "publicKeyEccB64 is not valid base64"),
        ("publicKeyEccB64", json!(b64(1, 31)), "publicKeyEccB64 must decode to exactly 32 bytes"),
        ("publicKeyKyberB64", json!(b64(1, 1183)), "publicKeyKyberB64 must decode to exactly 1184 bytes"),
        ("encryptedPrivateKeyEccB64", json!(""), "encryptedPrivateKeyEccB64 must decode to between"),
        ("encryptedPrivateKeyKyberB64", json!("%%%"), "encryptedPrivateKeyKyberB64 is not valid base64"),
        ("encryptedPrivateKeyKyberB64", json!(b64(1, 16 * 1024 + 1)), "must decode to between 1 and 16384 bytes"),
        ("sealProofB64", json!(b64(1, 31)), "sealProofB64 must be 32 bytes"),
        ("sealProofB64", json!("?"), "sealProofB64 is not valid base64"),
        ("currentSealProofB64", json!(b64(1, 33)), "currentSealProofB64 must be 32 bytes"),
    ] {
        let mut body = keys(1, 2);
        body[field] = bad;
        cases.push((body, expected));
    }
    let before = app.event_count().await;
    for (body, expected) in cases {
        let msg = expect_error(app.post("/users/me/keys", &fx.member_key, body).await, StatusCode::BAD_REQUEST).await;
        assert!(msg.contains(expected), "expected {expected:?}, got {msg:?}");
    }
    assert_eq!(app.event_count().await, before, "nothing written");
}

#[tokio::test]
async fn the_global_admin_has_no_key_material_and_no_org() {
    let app = spawn_app().await;
    expect_error(app.post("/users/me/keys", &app.global_admin_key, keys(1, 2)).await, StatusCode::FORBIDDEN).await;
    expect_error(app.get("/users/org", &app.global_admin_key).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn org_directory_lists_same_org_public_profiles_only() {
    let app = spawn_app().await;
    let a = app.org_with_users("a").await;
    let b = app.org_with_users("b").await;
    let peers = expect_json(app.get("/users/org", &a.member_key).await, StatusCode::OK).await;
    let ids: Vec<_> = peers.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, vec![a.admin_id.to_string(), a.member_id.to_string()]);
    assert!(peers[0].get("apiKeyHash").is_none());
    let profile =
        expect_json(app.get(&format!("/users/org/{}", a.admin_id), &a.member_key).await, StatusCode::OK).await;
    assert_eq!(profile["isAdmin"], true);
    expect_error(app.get(&format!("/users/org/{}", b.member_id), &a.member_key).await, StatusCode::NOT_FOUND).await;
    expect_error(app.get(&format!("/users/org/{}", Uuid::new_v4()), &a.member_key).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn the_specs_four_field_key_body_is_accepted_and_such_keys_are_never_replaced_with_an_api_key() {
    use harden_domain::crypto;
    let app = spawn_app().await;
    let fx = app.org_with_users("spec").await;
    // A client doing its own crypto, in harden's formats: keys made and sealed on its side.
    let keys = crypto::PrivateKeys::from_seeds([0x31; 32], [0x32; 64]);
    let secret = "a client-side user secret";
    let kek = crypto::derive_kek(secret.as_bytes(), [0x33; 16], crypto::KdfParams::MINIMUM).unwrap();
    let (ecc, kyber) = crypto::seal_private_keys(&kek, fx.member_id, &keys, [[1; 12], [2; 12]]);
    let public = keys.public_keys();
    let body = json!({
        "publicKeyEccB64": STANDARD.encode(public.ecc_bytes()),
        "publicKeyKyberB64": STANDARD.encode(public.kyber_bytes()),
        "encryptedPrivateKeyEccB64": STANDARD.encode(&ecc),
        "encryptedPrivateKeyKyberB64": STANDARD.encode(&kyber),
    });
    let me = expect_json(app.post("/users/me/keys", &fx.member_key, body.clone()).await, StatusCode::OK).await;
    assert_eq!(me["encryptedPrivateKeyEccB64"], STANDARD.encode(&ecc));
    // The Proxy unlocks them with the client's secret.
    let headers = [("X-Api-Key", fx.member_key.as_str()), ("X-User-Secret", secret)];
    let put = app.proxy(reqwest::Method::PUT, "/v1/kv/k", &headers, Some(json!({ "valueB64": "dmFsdWU=" }))).await;
    expect_json(put, StatusCode::CREATED).await;
    // The API key alone cannot replace them: not without a proof, not with a made-up one, not with others.
    let mut junk = body.clone();
    junk["encryptedPrivateKeyEccB64"] = json!(b64(9, 100));
    expect_error(app.post("/users/me/keys", &fx.member_key, junk.clone()).await, StatusCode::BAD_REQUEST).await;
    junk["currentSealProofB64"] = json!(b64(7, 32));
    junk["sealProofB64"] = json!(b64(8, 32));
    expect_error(app.post("/users/me/keys", &fx.member_key, junk).await, StatusCode::FORBIDDEN).await;
    let other = keys_of_other(&body);
    expect_error(app.post("/users/me/keys", &fx.member_key, other).await, StatusCode::CONFLICT).await;
    let me = expect_json(app.get("/users/me", &fx.member_key).await, StatusCode::OK).await;
    assert_eq!(me["encryptedPrivateKeyEccB64"], STANDARD.encode(&ecc), "the stored seal is unchanged");
}

fn keys_of_other(body: &Value) -> Value {
    let mut other = body.clone();
    other["publicKeyEccB64"] = json!(b64(5, 32));
    other
}
