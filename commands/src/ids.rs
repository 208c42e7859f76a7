//! Ids derived from names. Where a natural key (a KV key name, later an email) forms an aggregate
//! id, it appears there only as a keyed HMAC, so ids, NATS subjects and logs never carry the name.
//! The HMAC key is derived from the server's master key, so every instance derives the same ids.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use harden_domain::secret::KeyName;
use harden_domain::UserId;

use crate::bootstrap::MasterKey;

#[derive(Clone)]
pub struct IdHasher {
    key: Zeroizing<[u8; 32]>,
}

impl IdHasher {
    pub fn from_master(master: &MasterKey) -> Self {
        Self { key: master.derive(b"harden/v1/id-hmac") }
    }

    /// HMAC-SHA256 of `value` under a purpose label, hex encoded.
    pub fn hash(&self, purpose: &str, value: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.as_ref()).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The Secret aggregate of `owner`'s record `key_name`: one per user and key name, so creating a
    /// record that exists is an update, and two racing creates conflict on one aggregate.
    pub fn secret_id(&self, owner: UserId, key_name: &KeyName) -> String {
        format!("{owner}:{}", self.hash("kv-key", key_name.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    fn hasher(fill: u8) -> IdHasher {
        IdHasher::from_master(
            &MasterKey::parse_b64(&base64::engine::general_purpose::STANDARD.encode([fill; 32])).unwrap(),
        )
    }

    #[test]
    fn secret_ids_hide_the_key_name_and_depend_on_owner_name_and_master_key() {
        let owner = UserId::from_uuid(uuid::Uuid::from_u128(1));
        let other = UserId::from_uuid(uuid::Uuid::from_u128(2));
        let name = KeyName::parse("db-password").unwrap();
        let id = hasher(1).secret_id(owner, &name);
        assert!(!id.contains("db-password"));
        assert_eq!(id, hasher(1).secret_id(owner, &name));
        assert_ne!(id, hasher(1).secret_id(other, &name));
        assert_ne!(id, hasher(1).secret_id(owner, &KeyName::parse("db-password2").unwrap()));
        assert_ne!(id, hasher(2).secret_id(owner, &name));
    }
}
