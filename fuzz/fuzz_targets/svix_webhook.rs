//! `POST /webhooks/clerk`: the Svix signature check (`harden_api::cloud::svix::verify`, over the
//! `svix-id`, `svix-timestamp` and `svix-signature` headers and the body) and the parsing of the
//! Clerk event it authenticates (`harden_api::cloud::webhooks::parse_delivery`).
//!
//! Input: `svix-id`, `svix-timestamp`, `svix-signature` and the body, separated by
//! [`harden_fuzz::SEP`]. Verification is at the fixed time [`harden_fuzz::NOW`].
//!
//! Properties: a forged delivery never verifies (whatever verifies carries the true MAC of its id,
//! timestamp and body, within five minutes); a genuinely signed delivery always verifies, whatever
//! other entries its signature header has, and stops verifying when one byte of its body changes;
//! a body is either a well-formed event or a 400, and what it asks of harden is sane (an identity
//! id of the `user_…` form, a trimmed lower-case email).
#![no_main]

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use harden_api::cloud::svix::{self, SvixSecret, TOLERANCE_SECS};
use harden_api::cloud::webhooks::{parse_delivery, ClerkChange};
use harden_api::ApiError;
use harden_fuzz::{hmac_sha256, join, parts, seeds, NOW};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

/// The key behind the target's `whsec_` secret.
const KEY: &[u8] = b"a Svix signing key for fuzzing";

fn secret() -> SvixSecret {
    SvixSecret::parse(&format!("whsec_{}", STANDARD.encode(KEY))).expect("secret")
}

fn headers(id: &[u8], timestamp: &[u8], signature: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [("svix-id", id), ("svix-timestamp", timestamp), ("svix-signature", signature)] {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(name, value);
        }
    }
    headers
}

fn mac_b64(id: &[u8], timestamp: &[u8], body: &[u8]) -> String {
    STANDARD.encode(hmac_sha256(KEY, &[id, b".", timestamp, b".", body]))
}

fn check_forged(secret: &SvixSecret, id: &[u8], timestamp: &[u8], signature: &[u8], body: &[u8]) {
    let Ok(message) = svix::verify(secret, &headers(id, timestamp, signature), body, NOW) else { return };
    // What verified must carry the true MAC of what was signed (harden reads the headers trimmed).
    let trim = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    let (id, timestamp) = (trim(id), trim(timestamp));
    assert_eq!(message.id, id);
    assert!(NOW.abs_diff(message.timestamp) <= TOLERANCE_SECS as u64, "stale delivery accepted");
    let mac = mac_b64(id.as_bytes(), timestamp.as_bytes(), body);
    let signature = String::from_utf8_lossy(signature);
    assert!(
        signature.split(' ').any(|entry| entry == format!("v1,{mac}")),
        "a forged signature verified: {signature:?}"
    );
}

fn check_genuine(secret: &SvixSecret, id: &[u8], offset: u8, junk: &[u8], body: &[u8]) {
    // Svix ids are visible ASCII without spaces; other ids are the forged case's business.
    if id.is_empty() || !id.iter().all(|b| b.is_ascii_graphic()) {
        return;
    }
    let timestamp = (NOW - i64::from(offset)).to_string();
    let good = format!("v1,{}", mac_b64(id, timestamp.as_bytes(), body));
    let junk: String = String::from_utf8_lossy(junk).chars().filter(|c| c.is_ascii_graphic() || *c == ' ').collect();
    let signature = format!("{junk} {good}");
    let headers = headers(id, timestamp.as_bytes(), signature.as_bytes());
    let message = svix::verify(secret, &headers, body, NOW).expect("a genuine delivery verifies");
    assert_eq!(message.id.as_bytes(), id);
    let mut changed = body.to_vec();
    match changed.first_mut() {
        Some(b) => *b ^= 1,
        None => changed.push(b'x'),
    }
    assert!(svix::verify(secret, &headers, &changed, NOW).is_err(), "a changed body verified");
}

fn check_payload(body: &[u8]) {
    match parse_delivery(body) {
        Ok(delivery) => match delivery.change {
            ClerkChange::Upsert(identity, profile) => {
                assert!(delivery.kind == "user.created" || delivery.kind == "user.updated");
                assert!(identity.as_str().starts_with("user_"));
                if let Some(email) = profile.email {
                    assert_eq!(email, email.trim().to_lowercase(), "email kept as given");
                }
            }
            ClerkChange::Delete(identity) => {
                assert_eq!(delivery.kind, "user.deleted");
                assert!(identity.as_str().starts_with("user_"));
            }
            ClerkChange::Ignore => {
                assert!(!["user.created", "user.updated", "user.deleted"].contains(&delivery.kind.as_str()));
            }
        },
        Err(ApiError::Status(status, _)) => assert_eq!(status, StatusCode::BAD_REQUEST),
        Err(other) => panic!("a payload error that is not a 400: {other:?}"),
    }
}

fn make_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let signed = |id: &str, body: &serde_json::Value| {
        let body = body.to_string();
        let timestamp = NOW.to_string();
        let signature = format!("v1,{}", mac_b64(id.as_bytes(), timestamp.as_bytes(), body.as_bytes()));
        join(&[id.as_bytes(), timestamp.as_bytes(), signature.as_bytes(), body.as_bytes()])
    };
    let created = json!({
        "type": "user.created", "object": "event",
        "data": {
            "id": "user_2abcDEF", "first_name": "Ada", "last_name": "Lovelace", "image_url": "https://img.example/ada.png",
            "primary_email_address_id": "idn_1",
            "email_addresses": [
                { "id": "idn_0", "email_address": "old@example.test" },
                { "id": "idn_1", "email_address": " Ada@Example.TEST ", "verification": { "status": "verified" } }
            ]
        }
    });
    let deleted = json!({ "type": "user.deleted", "data": { "id": "user_2abcDEF", "deleted": true } });
    let other = json!({ "type": "session.created", "data": {} });
    vec![
        ("user-created", signed("msg_p5jXN8AQM9LWM0D4loKWxJek", &created)),
        ("user-deleted", signed("msg_2", &deleted)),
        ("other-type", signed("msg_3", &other)),
        ("rolled-secret", {
            let body = deleted.to_string();
            let good = mac_b64(b"msg_4", NOW.to_string().as_bytes(), body.as_bytes());
            join(&[
                b"msg_4",
                NOW.to_string().as_bytes(),
                format!("v2,{good} v1,bm90IGl0 v1,{good}").as_bytes(),
                body.as_bytes(),
            ])
        }),
    ]
}

fuzz_target!(init: seeds::write_if_asked(make_seeds), |data: &[u8]| {
    let secret = secret();
    let [id, timestamp, signature, body] = parts::<4>(data);
    check_forged(&secret, id, timestamp, signature, body);
    check_genuine(&secret, id, timestamp.first().copied().unwrap_or(0), signature, body);
    check_payload(body);
});
