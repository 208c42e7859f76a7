//! `POST /webhooks/stripe`: the `Stripe-Signature` check
//! (`harden_commands::billing::verify_signature`: `t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`)
//! and the parsing of the event it authenticates (`billing::parse_event`).
//!
//! Input: the `Stripe-Signature` header and the body, separated by [`harden_fuzz::SEP`].
//! Verification is at the fixed time [`harden_fuzz::NOW`].
//!
//! Properties: a forged signature never verifies (whatever verifies carries the true MAC of the body
//! at a timestamp within five minutes); a genuine signature always verifies, whatever other entries
//! the header has, and stops verifying when one byte of the body changes; an event harden acts on
//! is a subscription ending (deleted, or updated to unpaid, canceled or incomplete_expired) of an org
//! named in its metadata.
#![no_main]

use harden_commands::billing::{
    parse_event, verify_signature, WebhookEvent, ORG_METADATA_KEY, SIGNATURE_TOLERANCE_SECS,
};
use harden_fuzz::{hmac_sha256, join, parts, seeds, NOW};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const SECRET: &str = "whsec_a Stripe endpoint secret for fuzzing";

fn mac_hex(t: i64, body: &[u8]) -> String {
    hex::encode(hmac_sha256(SECRET.as_bytes(), &[t.to_string().as_bytes(), b".", body]))
}

fn check_forged(header: &str, body: &[u8]) {
    if verify_signature(SECRET, header, body, NOW).is_err() {
        return;
    }
    // Rare (only seeds and their near copies): which timestamp was it signed at?
    let lower = header.to_ascii_lowercase();
    let genuine =
        (NOW - SIGNATURE_TOLERANCE_SECS..=NOW + SIGNATURE_TOLERANCE_SECS).any(|t| lower.contains(&mac_hex(t, body)));
    assert!(genuine, "a forged Stripe-Signature verified: {header:?}");
}

fn check_genuine(offset: u8, junk: &str, body: &[u8]) {
    let t = NOW - i64::from(offset);
    let junk: String = junk.chars().filter(|c| *c != ',').collect();
    let header = format!("{junk},t={t},v1={},v0=00", mac_hex(t, body));
    assert_eq!(verify_signature(SECRET, &header, body, NOW), Ok(()), "a genuine signature failed: {header:?}");
    let mut changed = body.to_vec();
    match changed.last_mut() {
        Some(b) => *b ^= 1,
        None => changed.push(b'x'),
    }
    assert!(verify_signature(SECRET, &header, &changed, NOW).is_err(), "a changed body verified");
    assert!(verify_signature("whsec_other", &header, body, NOW).is_err(), "verified under another secret");
}

fn check_event(body: &[u8]) {
    let Ok(WebhookEvent::SubscriptionEnded { org_id, subscription_id, reason }) = parse_event(body) else { return };
    let event: Value = serde_json::from_slice(body).expect("an acted-on event is JSON");
    let object = &event["data"]["object"];
    assert_eq!(object["id"].as_str(), Some(subscription_id.as_str()));
    assert_eq!(object["metadata"][ORG_METADATA_KEY].as_str().and_then(|id| id.parse().ok()), Some(org_id));
    match event["type"].as_str() {
        Some("customer.subscription.deleted") => assert_eq!(reason, "deleted"),
        Some("customer.subscription.updated") => {
            assert!(["unpaid", "canceled", "incomplete_expired"].contains(&reason.as_str()));
            assert_eq!(object["status"].as_str(), Some(reason.as_str()));
        }
        other => panic!("acted on an event of type {other:?}"),
    }
}

fn make_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let event = |kind: &str, status: &str| {
        json!({
            "id": "evt_1", "object": "event", "type": kind,
            "data": { "object": { "id": "sub_1", "object": "subscription", "status": status,
                "metadata": { ORG_METADATA_KEY: "3cdd06cf-1b2c-4d5e-8f90-1a2b3c4d5e6f" } } }
        })
        .to_string()
    };
    let signed =
        |body: String| join(&[format!("t={NOW},v1={}", mac_hex(NOW, body.as_bytes())).as_bytes(), body.as_bytes()]);
    vec![
        ("deleted", signed(event("customer.subscription.deleted", "canceled"))),
        ("unpaid", signed(event("customer.subscription.updated", "unpaid"))),
        ("active", signed(event("customer.subscription.updated", "active"))),
        ("rolled-secret", {
            let body = event("customer.subscription.deleted", "canceled");
            let header = format!("t={NOW},v1={},v1={}", "ab".repeat(32), mac_hex(NOW, body.as_bytes()));
            join(&[header.as_bytes(), body.as_bytes()])
        }),
    ]
}

fuzz_target!(init: seeds::write_if_asked(make_seeds), |data: &[u8]| {
    let [header, body] = parts::<2>(data);
    let header = String::from_utf8_lossy(header);
    check_forged(&header, body);
    check_genuine(header.bytes().next().unwrap_or(0), &header, body);
    check_event(body);
});
