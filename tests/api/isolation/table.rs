//! The one table of the isolation matrix: for every documented operation, what of a tenant it
//! reaches, when it runs, which principal of the tenant may use it, and how its path parameters,
//! query, headers and body are filled from a tenant's fixture.
//!
//! `t.outer` is the container a request addresses (the org, a record or file of the caller's own)
//! and `t.inner` the things inside it (users, shares, members, invites, keys). A cross-tenant call
//! takes both from the other org, and, where a request has both, also the caller's own container
//! with the other org's things inside it. `t.secret` is a credential only its own tenant holds (a
//! registration token, a password, a webhook signing secret): a cross-tenant call guesses it.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::json;
use uuid::Uuid;

use super::fixture::{ANSWER, PASSWORD, RECOVERY, SECRET, STRIPE_WEBHOOK_SECRET};
use super::{call, Case, Doc::*, Phase::*, Reach::*, Who::*};
use crate::idp;
use crate::stand_ins::stripe_signature;
use crate::storage::{S3_ACCESS_KEY, S3_URL};

/// `n` bytes as base64: ciphertexts and wraps the Backend stores without opening.
fn b64(n: usize, fill: u8) -> String {
    STANDARD.encode(vec![fill; n])
}

fn future() -> String {
    (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn cases() -> Vec<Case> {
    vec![
        // ---- Backend: anonymous ------------------------------------------------------------------
        Case::new(Backend, "GET /health", Public, Read, Anonymous, |_| call()),
        Case::new(Backend, "GET /ready", Public, Read, Anonymous, |_| call()),
        Case::new(Backend, "GET /auth/plans", Public, Read, Anonymous, |_| call()),
        // Registering the other tenant's pending applicant's email again: a new registration of its
        // own, which touches nothing of theirs.
        Case::new(Backend, "POST /auth/orgadmin/register", Public, Create, Anonymous, |t| {
            call().body(json!({
                "orgName": format!("{} again", t.outer.name), "adminName": "someone", "email": t.inner.reg_email,
                "password": PASSWORD, "countryCode": "US", "plan": "free",
            }))
        }),
        Case::new(Backend, "GET /auth/orgadmin/verify", Public, Create, Anonymous, |t| {
            call().query("token", t.secret(&t.inner.reg_token, "a-guessed-verification-token"))
        }),
        Case::new(Backend, "POST /auth/orgadmin/login", Public, Create, Anonymous, |t| {
            call().body(json!({ "email": t.inner.reg_email, "password": t.secret(PASSWORD, "a guessed password") }))
        }),
        // A forged cancellation of the tenant's subscription; the signed positive control is an
        // event harden ignores, so the tenant keeps the plan its files need.
        Case::new(Backend, "POST /webhooks/stripe", Public, Write, Anonymous, |t| {
            let kind = if t.cross { "customer.subscription.deleted" } else { "customer.created" };
            let body = json!({
                "id": format!("evt_{}", Uuid::new_v4().simple()), "object": "event", "type": kind,
                "data": { "object": { "id": "sub_isolation", "object": "subscription", "status": "canceled",
                    "metadata": { "harden_org_id": t.inner.org } } },
            });
            let secret = t.secret(STRIPE_WEBHOOK_SECRET, "whsec_guessed");
            call().header("Stripe-Signature", stripe_signature(&secret, now(), &body.to_string())).body(body)
        }),
        // A forged deletion of the tenant's owner; the signed positive control updates the owner's
        // profile with what it already is.
        Case::new(Backend, "POST /webhooks/clerk", Public, Write, Anonymous, |t| {
            let owner = &t.inner.owner;
            let kind = if t.cross { "user.deleted" } else { "user.updated" };
            let body = json!({ "type": kind, "object": "event", "data": {
                "id": owner, "object": "user", "first_name": "Given", "last_name": "Family",
                "primary_email_address_id": "idn_1",
                "email_addresses": [{ "id": "idn_1", "email_address": format!("{owner}@example.test"),
                    "verification": { "status": "verified" } }],
            } });
            let secret = t.secret(idp::WEBHOOK_SECRET, "whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ=");
            let bytes = serde_json::to_vec(&body).unwrap();
            let id = format!("msg_{}", Uuid::new_v4().simple());
            idp::svix_headers(&secret, &id, now(), &bytes)
                .into_iter()
                .fold(call(), |c, (n, v)| c.header(n, v))
                .body(body)
        }),
        // ---- Backend: the global admin's ----------------------------------------------------------
        Case::new(Backend, "POST /admin/orgs", Global, Create, GlobalAdmin, |t| {
            call().body(json!({ "name": format!("{} copy", t.outer.name), "plan": "business" }))
        }),
        Case::new(Backend, "GET /admin/orgs", Global, Read, GlobalAdmin, |_| call()),
        Case::new(Backend, "PUT /admin/orgs/{orgId}/plan", Global, Write, GlobalAdmin, |t| {
            call().param("orgId", t.outer.org).body(json!({ "plan": "starter" }))
        }),
        // ---- Backend: org administration ----------------------------------------------------------
        Case::new(Backend, "GET /admin/orgs/{orgId}/storage", Tenant, Read, Admin, |t| {
            call().param("orgId", t.outer.org)
        }),
        Case::new(Backend, "GET /admin/orgs/{orgId}/usage", Tenant, Read, Admin, |t| {
            call().param("orgId", t.outer.org)
        }),
        Case::new(Backend, "PUT /admin/orgs/{orgId}/storage", Tenant, Write, Admin, |t| {
            call().param("orgId", t.outer.org).body(json!({
                "serviceUrl": S3_URL, "bucket": t.outer.bucket, "accessKey": S3_ACCESS_KEY, "forcePathStyle": true,
            }))
        }),
        Case::new(Backend, "GET /admin/orgs/{orgId}/users", Tenant, Read, Admin, |t| {
            call().param("orgId", t.outer.org)
        }),
        Case::new(Backend, "POST /admin/orgs/{orgId}/users", Tenant, Write, Admin, |t| {
            call().param("orgId", t.outer.org).body(json!({ "name": "planted admin", "isAdmin": true }))
        }),
        Case::new(Backend, "POST /admin/orgs/{orgId}/users/{userId}/apikey/rotate", Tenant, Remove, Admin, |t| {
            call().param("orgId", t.outer.org).param("userId", t.inner.rotated.id)
        }),
        Case::new(Backend, "DELETE /admin/orgs/{orgId}/users/{userId}", Tenant, Remove, Admin, |t| {
            call().param("orgId", t.outer.org).param("userId", t.inner.leaver.id)
        }),
        Case::new(Backend, "GET /audit", Own, Read, Admin, |t| {
            call().query("scope", "all").query("key", &t.inner.records[0].name).query("userId", t.inner.user.id)
        }),
        // ---- Backend: the caller and their org ------------------------------------------------------
        Case::new(Backend, "GET /users/me", Own, Read, Member, |_| call()),
        Case::new(Backend, "POST /users/me/keys", Own, Create, Fresh2, |_| {
            call().body(json!({
                "publicKeyEccB64": b64(32, 3), "publicKeyKyberB64": b64(1184, 4), "encryptedPrivateKeyEccB64": b64(80, 5),
                "encryptedPrivateKeyKyberB64": b64(120, 6), "sealProofB64": b64(32, 8),
            }))
        }),
        // Publishing one's own bundle again (the same keys) and storing pins (opaque to the Backend).
        Case::new(Backend, "PUT /users/me/bundle", Own, Write, Member, |t| {
            call().body(json!({ "keyBundleB64": t.outer.user_bundle }))
        }),
        Case::new(Backend, "PUT /users/me/pins", Own, Write, Fresh2, |_| call().body(json!({ "pinsB64": b64(64, 9) }))),
        Case::new(Backend, "GET /users/org", Own, Read, Member, |_| call()),
        Case::new(Backend, "GET /users/org/{userId}", Tenant, Read, Member, |t| {
            call().param("userId", t.inner.admin.id)
        }),
        // ---- Backend: recovery --------------------------------------------------------------------
        Case::new(Backend, "GET /users/me/recovery/trustees", Own, Read, Member, |_| call()),
        Case::new(Backend, "GET /users/me/recovery/trustees/{trusteeUserId}", Tenant, Read, Member, |t| {
            call().param("trusteeUserId", t.inner.admin.id)
        }),
        Case::new(Backend, "PUT /users/me/recovery/trustees/{trusteeUserId}", Tenant, Write, Member, |t| {
            call().param("trusteeUserId", t.inner.key.id).body(json!({
                "encryptedPrivateKeyEccShareB64": b64(100, 1), "encryptedPrivateKeyKyberShareB64": b64(100, 2),
                "xorApplied": false,
            }))
        }),
        Case::new(Backend, "DELETE /users/me/recovery/trustees/{trusteeUserId}", Tenant, Remove, Member, |t| {
            call().param("trusteeUserId", t.inner.key.id)
        }),
        Case::new(Backend, "GET /users/me/recovery/shares", Own, Read, Admin, |_| call()),
        Case::new(Backend, "GET /users/me/recovery/shares/{ownerUserId}", Tenant, Read, Admin, |t| {
            call().param("ownerUserId", t.inner.user.id)
        }),
        // Replaced by the Proxy's restore below before the owner completes.
        Case::new(Backend, "POST /users/me/recovery/restore/{ownerUserId}", Tenant, Write, Admin, |t| {
            call().param("ownerUserId", t.inner.user.id).body(json!({
                "encryptedPrivateKeyEccB64": b64(100, 1), "encryptedPrivateKeyKyberB64": b64(100, 2), "usedXor": false,
            }))
        }),
        Case::new(Backend, "GET /users/me/recovery/pending", Own, Read, Member, |_| call()),
        // The project user completes with the sealed keys it already has (so they keep working).
        Case::new(Backend, "POST /users/me/recovery/complete", Own, Remove, ApiKey, |t| {
            call().body(json!({
                "encryptedPrivateKeyEccB64": t.outer.key_sealed.0, "encryptedPrivateKeyKyberB64": t.outer.key_sealed.1,
                "sealProofB64": b64(32, 9), "challengeAnswerB64": t.outer.key_challenge_answer,
            }))
        }),
        // ---- Backend: KV records and their shares ----------------------------------------------------
        // A cursor is a record name: the other tenant's lists the caller's own records after it.
        Case::new(Backend, "GET /kv", Own, Read, Member, |t| {
            call().query("cursor", URL_SAFE_NO_PAD.encode(&t.inner.records[0].name)).query("limit", 10)
        }),
        Case::new(Backend, "GET /kv/{key}", Tenant, Read, Member, |t| {
            call().param("key", &t.inner.records[0].name).query("version", "1")
        }),
        Case::new(Backend, "GET /kv/{key}/versions", Tenant, Read, Member, |t| {
            call().param("key", &t.inner.records[0].name)
        }),
        // Names live in the caller's own namespace: the other tenant's record name makes a record of
        // the caller's own.
        Case::new(Backend, "PUT /kv/{key}", Own, Create, Member, |t| {
            let r = &t.outer.records[0];
            call().param("key", &t.inner.records[0].name).body(json!({
                "ciphertextB64": r.ciphertext, "encryptedAesKeyEccB64": r.wrap_ecc, "encryptedAesKeyKyberB64": r.wrap_kyber,
                "keyEpoch": r.key_epoch,
            }))
        }),
        Case::new(Backend, "GET /kv/{key}/shares", Tenant, Read, Member, |t| {
            call().param("key", &t.inner.records[0].name)
        }),
        Case::new(Backend, "POST /kv/{key}/shares", Tenant, Write, Member, |t| {
            let r = &t.outer.records[2];
            call().param("key", &r.name).body(json!({
                "recipientUserId": t.inner.key.id, "permission": "read", "encryptedAliasB64": b64(40, 5),
                "encryptedAesKeyEccB64": b64(33, 1), "encryptedAesKeyKyberB64": b64(1149, 2),
                "keyEpoch": r.key_epoch, "expiresUtc": future(),
            }))
        }),
        // The rotation covers the record's one open share, which is then revoked.
        Case::new(Backend, "POST /kv/{key}/rotate", Tenant, Remove, Member, |t| {
            let (outer, inner) = (&t.outer.records[1], &t.inner.records[1]);
            call().param("key", &outer.name).body(json!({
                "expectedVersion": outer.version, "ciphertextB64": outer.ciphertext,
                "encryptedAesKeyEccB64": outer.wrap_ecc, "encryptedAesKeyKyberB64": outer.wrap_kyber,
                "shares": [{ "shareId": inner.share, "encryptedAesKeyEccB64": b64(33, 1), "encryptedAesKeyKyberB64": b64(1149, 2) }],
            }))
        }),
        Case::new(Backend, "DELETE /kv/{key}/shares/{shareId}", Tenant, Remove, Member, |t| {
            call().param("key", &t.outer.records[1].name).param("shareId", t.inner.records[1].share)
        }),
        Case::new(Backend, "GET /kv/shared", Own, Read, Admin, |_| call()),
        Case::new(Backend, "GET /kv/shared/{shareId}", Tenant, Read, Admin, |t| {
            call().param("shareId", t.inner.records[0].share)
        }),
        Case::new(Backend, "DELETE /kv/shared/{shareId}", Tenant, Remove, Admin, |t| {
            call().param("shareId", t.inner.records[0].share)
        }),
        Case::new(Backend, "DELETE /kv/{key}", Tenant, Remove, Member, |t| {
            call().param("key", &t.inner.records[0].name)
        }),
        // ---- Backend: files and their shares -------------------------------------------------------
        Case::new(Backend, "GET /files", Own, Read, Member, |t| {
            call().query("cursor", URL_SAFE_NO_PAD.encode(format!("0|{}", t.inner.files[0].id)))
        }),
        Case::new(Backend, "POST /files", Own, Create, Member, |t| {
            call().body(json!({
                "encryptedFileNameB64": t.outer.files[0].encrypted_name, "ciphertextB64": b64(64, 7),
                "encryptedAesKeyEccB64": b64(33, 1), "encryptedAesKeyKyberB64": b64(1149, 2),
            }))
        }),
        Case::new(Backend, "GET /files/{id}", Tenant, Read, Member, |t| call().param("id", t.inner.files[0].id)),
        Case::new(Backend, "GET /files/{id}/shares", Tenant, Read, Member, |t| call().param("id", t.inner.files[0].id)),
        Case::new(Backend, "POST /files/{id}/shares", Tenant, Write, Member, |t| {
            call().param("id", t.outer.files[0].id).body(json!({
                "recipientUserId": t.inner.key.id, "permission": "read", "encryptedAliasB64": b64(40, 5),
                "encryptedAesKeyEccB64": b64(33, 1), "encryptedAesKeyKyberB64": b64(1149, 2),
            }))
        }),
        Case::new(Backend, "DELETE /files/{id}/shares/{shareId}", Tenant, Remove, Member, |t| {
            call().param("id", t.outer.files[1].id).param("shareId", t.inner.files[1].share)
        }),
        Case::new(Backend, "DELETE /files/{id}", Tenant, Remove, Member, |t| call().param("id", t.inner.files[1].id)),
        Case::new(Backend, "GET /files/shared", Own, Read, Admin, |_| call()),
        Case::new(Backend, "GET /files/shared/{shareId}", Tenant, Read, Admin, |t| {
            call().param("shareId", t.inner.files[0].share)
        }),
        Case::new(Backend, "DELETE /files/shared/{shareId}", Tenant, Remove, Admin, |t| {
            call().param("shareId", t.inner.files[0].share)
        }),
        // ---- Backend: the Cloud API ----------------------------------------------------------------
        Case::new(Backend, "POST /cloud/onboarding", Own, Create, Owner, |t| {
            call().body(json!({ "org_name": t.inner.name }))
        }),
        Case::new(Backend, "GET /cloud/organizations", Own, Read, Viewer, |_| call()),
        Case::new(Backend, "GET /cloud/organizations/{org_id}", Tenant, Read, Viewer, |t| {
            call().param("org_id", t.outer.org)
        }),
        Case::new(Backend, "PATCH /cloud/organizations/{org_id}", Tenant, Write, CloudAdmin, |t| {
            call().param("org_id", t.outer.org).body(json!({ "name": t.outer.name }))
        }),
        Case::new(Backend, "GET /cloud/organizations/{org_id}/members", Tenant, Read, Viewer, |t| {
            call().param("org_id", t.outer.org)
        }),
        Case::new(
            Backend,
            "PATCH /cloud/organizations/{org_id}/members/{clerk_user_id}",
            Tenant,
            Write,
            CloudAdmin,
            |t| {
                call()
                    .param("org_id", t.outer.org)
                    .param("clerk_user_id", &t.inner.promoted)
                    .body(json!({ "role": "admin" }))
            },
        ),
        Case::new(
            Backend,
            "DELETE /cloud/organizations/{org_id}/members/{clerk_user_id}",
            Tenant,
            Remove,
            CloudAdmin,
            |t| call().param("org_id", t.outer.org).param("clerk_user_id", &t.inner.removed),
        ),
        Case::new(Backend, "GET /cloud/organizations/{org_id}/invites", Tenant, Read, Viewer, |t| {
            call().param("org_id", t.outer.org)
        }),
        Case::new(Backend, "POST /cloud/organizations/{org_id}/invites", Tenant, Write, CloudAdmin, |t| {
            let email = format!("invitee-{}@example.test", t.outer.org.simple());
            call().param("org_id", t.outer.org).body(json!({ "email": email, "role": "admin" }))
        }),
        Case::new(Backend, "DELETE /cloud/organizations/{org_id}/invites/{token}", Tenant, Remove, CloudAdmin, |t| {
            call().param("org_id", t.outer.org).param("token", &t.inner.invite)
        }),
        Case::new(Backend, "POST /cloud/invites/{token}/accept", Tenant, Write, Joiner, |t| {
            call().param("token", &t.inner.join_invite)
        }),
        Case::new(Backend, "GET /cloud/organizations/{org_id}/api-keys", Tenant, Read, Developer, |t| {
            call().param("org_id", t.outer.org)
        }),
        Case::new(Backend, "POST /cloud/organizations/{org_id}/api-keys", Tenant, Write, CloudAdmin, |t| {
            call().param("org_id", t.outer.org).body(json!({ "name": "planted" }))
        }),
        Case::new(Backend, "DELETE /cloud/organizations/{org_id}/api-keys/{key_id}", Tenant, Remove, CloudAdmin, |t| {
            call().param("org_id", t.outer.org).param("key_id", t.inner.spare_key_id)
        }),
        // ---- Proxy ------------------------------------------------------------------------------------
        Case::new(Proxy, "GET /health", Public, Read, Anonymous, |_| call()),
        Case::new(Proxy, "GET /ready", Public, Read, Anonymous, |_| call()),
        Case::new(Proxy, "POST /v1/keys/generate", Own, Create, Fresh, |_| call()),
        Case::new(Proxy, "POST /v1/keys/rekey", Own, Create, Member, |_| call().header("X-New-User-Secret", SECRET)),
        Case::new(Proxy, "GET /v1/users/org", Own, Read, Member, |_| call()),
        Case::new(Proxy, "GET /v1/users/org/{userId}", Tenant, Read, Member, |t| {
            call().param("userId", t.inner.admin.id)
        }),
        Case::new(Proxy, "GET /v1/kv", Own, Read, Member, |_| call()),
        Case::new(Proxy, "GET /v1/kv/{key}", Tenant, Read, Member, |t| {
            call().param("key", &t.inner.records[0].name).query("version", "1")
        }),
        Case::new(Proxy, "PUT /v1/kv/{key}", Own, Create, Member, |t| {
            call().param("key", &t.inner.records[0].name).body(json!({ "valueB64": STANDARD.encode("a new value") }))
        }),
        Case::new(Proxy, "GET /v1/kv/{key}/shares", Tenant, Read, Member, |t| {
            call().param("key", &t.inner.records[0].name)
        }),
        Case::new(Proxy, "POST /v1/kv/{key}/shares", Tenant, Write, Member, |t| {
            call().param("key", &t.outer.records[3].name).body(json!({
                "recipientUserId": t.inner.key.id, "permission": "read", "alias": "planted", "expiresUtc": future(),
            }))
        }),
        Case::new(Proxy, "DELETE /v1/kv/{key}/shares/{shareId}", Tenant, Remove, Member, |t| {
            call().param("key", &t.outer.records[2].name).param("shareId", t.inner.records[2].share)
        }),
        Case::new(Proxy, "DELETE /v1/kv/{key}", Tenant, Remove, Member, |t| {
            call().param("key", &t.inner.records[2].name)
        }),
        Case::new(Proxy, "GET /v1/kv/shared", Own, Read, Admin, |_| call()),
        Case::new(Proxy, "GET /v1/kv/shared/{shareId}", Tenant, Read, Admin, |t| {
            call().param("shareId", t.inner.records[0].share)
        }),
        Case::new(Proxy, "DELETE /v1/kv/shared/{shareId}", Tenant, Remove, Admin, |t| {
            call().param("shareId", t.inner.records[3].share)
        }),
        Case::new(Proxy, "GET /v1/files", Own, Read, Member, |_| call()),
        Case::new(Proxy, "POST /v1/files", Own, Create, Member, |t| {
            let content = STANDARD.encode("another file");
            call().body(json!({ "fileName": format!("copy of {}", t.inner.files[0].name), "contentB64": content }))
        }),
        Case::new(Proxy, "GET /v1/files/{id}", Tenant, Read, Member, |t| call().param("id", t.inner.files[0].id)),
        Case::new(Proxy, "GET /v1/files/{fileId}/shares", Tenant, Read, Member, |t| {
            call().param("fileId", t.inner.files[0].id)
        }),
        Case::new(Proxy, "POST /v1/files/{fileId}/shares", Tenant, Write, Member, |t| {
            call()
                .param("fileId", t.outer.files[1].id)
                .body(json!({ "recipientUserId": t.inner.key.id, "permission": "read" }))
        }),
        Case::new(Proxy, "DELETE /v1/files/{fileId}/shares/{shareId}", Tenant, Remove, Member, |t| {
            call().param("fileId", t.outer.files[2].id).param("shareId", t.inner.files[2].share)
        }),
        Case::new(Proxy, "DELETE /v1/files/{id}", Tenant, Remove, Member, |t| call().param("id", t.inner.files[2].id)),
        Case::new(Proxy, "GET /v1/files/shared", Own, Read, Admin, |_| call()),
        Case::new(Proxy, "GET /v1/files/shared/{shareId}", Tenant, Read, Admin, |t| {
            call().param("shareId", t.inner.files[0].share)
        }),
        Case::new(Proxy, "DELETE /v1/files/shared/{shareId}", Tenant, Remove, Admin, |t| {
            call().param("shareId", t.inner.files[3].share)
        }),
        Case::new(Proxy, "PUT /v1/recovery/trustees/{trusteeUserId}", Tenant, Write, Member, |t| {
            call().param("trusteeUserId", t.inner.key.id).body(json!({ "xorApplied": false }))
        }),
        Case::new(Proxy, "POST /v1/recovery/restore/{ownerUserId}", Tenant, Write, Admin, |t| {
            call().param("ownerUserId", t.inner.user.id).header("X-Recovery-Secret", RECOVERY)
        }),
        // The owner completes the restore above with the same secret it had.
        Case::new(Proxy, "POST /v1/recovery/complete", Own, Remove, Member, |t| {
            call()
                .header("X-Recovery-Secret", t.secret(RECOVERY, "a guessed temporary secret"))
                .header("X-New-User-Secret", SECRET)
                .body(json!({ "xorAnswer": ANSWER }))
        }),
        // Last: the org goes, and with it every credential of its members.
        Case::new(Backend, "DELETE /cloud/organizations/{org_id}", Tenant, Remove, Owner, |t| {
            call().param("org_id", t.outer.org)
        }),
    ]
}
