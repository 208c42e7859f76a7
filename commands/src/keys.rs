//! API keys: `hk_` followed by 43 characters of URL-safe base64 (256 random bits). Recognisable in
//! logs and secret scanners by the prefix; stored only as a SHA-256 hash.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use harden_domain::user::IssuedKey;
use harden_domain::values::ApiKeyHash;
use harden_domain::ApiKeyId;

pub const PREFIX: &str = "hk_";
const RANDOM_BYTES: usize = 32;
/// `hk_` + base64url(32 bytes) without padding.
pub const KEY_LEN: usize = 3 + 43;

/// A newly drawn key: the plaintext to show once, and what the aggregate records.
pub struct NewKey {
    pub plaintext: SecretString,
    pub issued: IssuedKey,
}

pub fn draw() -> NewKey {
    let mut bytes = [0u8; RANDOM_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let plaintext = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let key_hash = hash(&plaintext);
    NewKey {
        plaintext: SecretString::from(plaintext),
        issued: IssuedKey { key_id: ApiKeyId::from_uuid(Uuid::new_v4()), key_hash },
    }
}

pub fn hash(presented: &str) -> ApiKeyHash {
    ApiKeyHash::from_digest(Sha256::digest(presented.as_bytes()).into())
}

/// Cheap shape check before any database work: a string that cannot be a key is refused at once.
pub fn looks_like_key(presented: &str) -> bool {
    presented.len() == KEY_LEN
        && presented.starts_with(PREFIX)
        && presented[PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The public identifier of a key that has one (the Cloud API's `key`): `hkid_` and 24 lower-case
/// hex digits. It names a key; only its secret authenticates.
pub const LABEL_PREFIX: &str = "hkid_";

pub fn draw_label() -> String {
    let mut bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{LABEL_PREFIX}{}", hex::encode(bytes))
}

pub fn looks_like_label(presented: &str) -> bool {
    presented.len() == LABEL_PREFIX.len() + 24
        && presented.starts_with(LABEL_PREFIX)
        && presented[LABEL_PREFIX.len()..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn expose(key: &SecretString) -> &str {
    key.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_keys_have_the_documented_shape_and_differ() {
        let a = draw();
        let b = draw();
        assert!(looks_like_key(expose(&a.plaintext)));
        assert_ne!(expose(&a.plaintext), expose(&b.plaintext));
        assert_eq!(a.issued.key_hash, hash(expose(&a.plaintext)));
        assert_ne!(a.issued.key_id, b.issued.key_id);
    }

    #[test]
    fn shape_check_refuses_near_misses() {
        let key = draw();
        let good = expose(&key.plaintext).to_owned();
        assert!(!looks_like_key(&good[1..]));
        assert!(!looks_like_key(&format!("{good}x")));
        assert!(!looks_like_key(&good.replacen("hk_", "xk_", 1)));
        assert!(!looks_like_key(&format!("hk_{}", "+".repeat(43))));
    }

    #[test]
    fn labels_have_their_own_shape_and_are_never_keys() {
        let label = draw_label();
        assert!(looks_like_label(&label), "{label}");
        assert!(!looks_like_key(&label));
        assert!(!looks_like_label(expose(&draw().plaintext)));
        assert!(!looks_like_label(&label.to_uppercase()));
        assert!(!looks_like_label(&label[1..]));
    }
}
