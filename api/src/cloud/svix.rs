//! Svix webhook signatures, which authenticate the identity provider's (Clerk's) webhooks.
//!
//! Svix signs `"{svix-id}.{svix-timestamp}.{body}"` with HMAC-SHA256 and sends the base64 MACs,
//! `v1,<mac>` entries separated by spaces (several while a secret rolls over), in `svix-signature`.
//! The timestamp is inside the signed content, so refusing timestamps more than
//! [`TOLERANCE_SECS`] away from now bounds how long a captured delivery can be replayed; within that
//! window the caller deduplicates on `svix-id`.
//!
//! This module only decides whether a delivery is authentic; it never reads the body.

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// A Svix signing secret: `whsec_` followed by the key in base64 (a secret without the prefix is
/// decoded as it is).
pub struct SvixSecret(Zeroizing<Vec<u8>>);

impl SvixSecret {
    pub fn parse(s: &str) -> Result<Self, String> {
        let encoded = s.trim();
        let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
        let key = Zeroizing::new(
            STANDARD.decode(encoded).map_err(|_| "the webhook signing secret is not whsec_ followed by base64")?,
        );
        if key.is_empty() {
            return Err("the webhook signing secret is empty".into());
        }
        Ok(Self(key))
    }
}

impl std::fmt::Debug for SvixSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SvixSecret([redacted])")
    }
}

/// How far, in seconds, a delivery's timestamp may be from now, in either direction.
pub const TOLERANCE_SECS: i64 = 300;

/// An authentic delivery's identity: `id` is stable across Svix's retries of the same message.
#[derive(Clone, Debug, PartialEq)]
pub struct SvixMessage {
    pub id: String,
    pub timestamp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SvixError {
    #[error("svix-id, svix-timestamp or svix-signature is missing or unreadable")]
    MissingHeaders,
    #[error("svix-timestamp is more than {TOLERANCE_SECS}s away from now")]
    Stale,
    #[error("no v1 signature in svix-signature matches the body")]
    BadSignature,
}

/// Checks `svix-id`, `svix-timestamp`, `svix-signature` for `body` at time `now` (unix seconds).
pub fn verify(secret: &SvixSecret, headers: &HeaderMap, body: &[u8], now: i64) -> Result<SvixMessage, SvixError> {
    let header = |name: &str| {
        headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim).filter(|value| !value.is_empty())
    };
    let (Some(id), Some(timestamp), Some(signatures)) =
        (header("svix-id"), header("svix-timestamp"), header("svix-signature"))
    else {
        return Err(SvixError::MissingHeaders);
    };
    let timestamp_value: i64 = timestamp.parse().map_err(|_| SvixError::MissingHeaders)?;
    if now.abs_diff(timestamp_value) > TOLERANCE_SECS.unsigned_abs() {
        return Err(SvixError::Stale);
    }

    let mut mac = Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let authentic = signatures
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, signature)| STANDARD.decode(signature).ok())
        // `verify_slice` compares in constant time.
        .any(|signature| mac.clone().verify_slice(&signature).is_ok());
    if !authentic {
        return Err(SvixError::BadSignature);
    }
    Ok(SvixMessage { id: id.to_owned(), timestamp: timestamp_value })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    // The example of Svix's "Verifying Webhooks Manually" guide.
    const DOC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const DOC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const DOC_TIMESTAMP: i64 = 1614265330;
    const DOC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const DOC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(id: &str, timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [("svix-id", id), ("svix-timestamp", timestamp), ("svix-signature", signature)] {
            headers.insert(name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    fn doc_secret() -> SvixSecret {
        SvixSecret::parse(DOC_SECRET).unwrap()
    }

    #[test]
    fn svix_documentation_example_verifies() {
        let headers = headers(DOC_ID, &DOC_TIMESTAMP.to_string(), DOC_SIGNATURE);

        let message = verify(&doc_secret(), &headers, DOC_BODY, DOC_TIMESTAMP + 10).unwrap();

        assert_eq!(message, SvixMessage { id: DOC_ID.into(), timestamp: DOC_TIMESTAMP });
    }

    #[test]
    fn secret_without_prefix_is_the_same_key() {
        let bare = SvixSecret::parse(DOC_SECRET.strip_prefix("whsec_").unwrap()).unwrap();
        let headers = headers(DOC_ID, &DOC_TIMESTAMP.to_string(), DOC_SIGNATURE);

        assert!(verify(&bare, &headers, DOC_BODY, DOC_TIMESTAMP).is_ok());
    }

    #[test]
    fn unusable_secrets_are_refused() {
        for secret in ["", "whsec_", "whsec_not base64!", "whsec_%%%%"] {
            assert!(SvixSecret::parse(secret).is_err(), "{secret:?}");
        }
    }

    #[test]
    fn any_matching_v1_entry_is_enough() {
        let key = b"a freshly rolled secret";
        let secret = SvixSecret::parse(&format!("whsec_{}", STANDARD.encode(key))).unwrap();
        let now = 1_700_000_000;
        let good = sign(key, "msg_1", now, b"{}");
        let signature = format!("v2,{} v1,bm90IGl0 v1,%%% {good}", &good[3..]);

        let message = verify(&secret, &headers("msg_1", &now.to_string(), &signature), b"{}", now).unwrap();

        assert_eq!(message.id, "msg_1");
    }

    #[test]
    fn deliveries_that_do_not_match_are_refused() {
        let timestamp = DOC_TIMESTAMP.to_string();
        let v2_only = DOC_SIGNATURE.replacen("v1,", "v2,", 1);
        let cases = [
            ("body changed", headers(DOC_ID, &timestamp, DOC_SIGNATURE), &br#"{"test": 2432232315}"#[..]),
            ("id changed", headers("msg_other", &timestamp, DOC_SIGNATURE), DOC_BODY),
            ("only a v2 entry", headers(DOC_ID, &timestamp, &v2_only), DOC_BODY),
            ("signature not base64", headers(DOC_ID, &timestamp, "v1,***"), DOC_BODY),
        ];
        for (case, headers, body) in cases {
            assert!(
                matches!(verify(&doc_secret(), &headers, body, DOC_TIMESTAMP), Err(SvixError::BadSignature)),
                "{case}"
            );
        }
        let other_secret = SvixSecret::parse("whsec_c2VjcmV0").unwrap();
        let headers = headers(DOC_ID, &timestamp, DOC_SIGNATURE);
        assert!(matches!(verify(&other_secret, &headers, DOC_BODY, DOC_TIMESTAMP), Err(SvixError::BadSignature)));
    }

    #[test]
    fn timestamps_outside_five_minutes_are_refused_both_ways() {
        let headers = headers(DOC_ID, &DOC_TIMESTAMP.to_string(), DOC_SIGNATURE);
        let at = |now: i64| verify(&doc_secret(), &headers, DOC_BODY, now);

        assert!(at(DOC_TIMESTAMP + TOLERANCE_SECS).is_ok());
        assert!(at(DOC_TIMESTAMP - TOLERANCE_SECS).is_ok());
        assert!(matches!(at(DOC_TIMESTAMP + TOLERANCE_SECS + 1), Err(SvixError::Stale)));
        assert!(matches!(at(DOC_TIMESTAMP - TOLERANCE_SECS - 1), Err(SvixError::Stale)));
        assert!(matches!(at(i64::MIN), Err(SvixError::Stale)));
    }

    #[test]
    fn missing_or_unreadable_headers_are_refused() {
        let timestamp = DOC_TIMESTAMP.to_string();
        let full = headers(DOC_ID, &timestamp, DOC_SIGNATURE);
        for name in ["svix-id", "svix-timestamp", "svix-signature"] {
            let mut headers = full.clone();
            headers.remove(name);
            assert!(
                matches!(verify(&doc_secret(), &headers, DOC_BODY, DOC_TIMESTAMP), Err(SvixError::MissingHeaders)),
                "{name}"
            );
        }
        let not_a_number = headers(DOC_ID, "yesterday", DOC_SIGNATURE);
        assert!(matches!(
            verify(&doc_secret(), &not_a_number, DOC_BODY, DOC_TIMESTAMP),
            Err(SvixError::MissingHeaders)
        ));
    }
}
