//! Ids derived from names. Where a natural key (a KV key name, later an email) forms an aggregate
//! id, it appears there only as a keyed HMAC, so ids, NATS subjects and logs never carry the name.
//! The HMAC key is derived from the server's master key, so every instance derives the same ids.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use harden_domain::secret::KeyName;
use harden_domain::share::SharedRecord;
use harden_domain::UserId;
use uuid::Uuid;

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

    /// The Share aggregate of `owner`'s record or file shared with `recipient` in one life of the
    /// record: one per four, so a second grant while the first is open is refused by the aggregate
    /// itself (two racing grants conflict at append), never by a read model that may lag.
    pub fn share_id(&self, owner: UserId, record: &SharedRecord, recipient: UserId, life: u64) -> Uuid {
        let record = match record {
            SharedRecord::Kv { key_name } => format!("kv:{}", self.hash("kv-key", key_name.as_str())),
            SharedRecord::File { file_id } => format!("file:{file_id}"),
        };
        let mac = hex::decode(self.hash("share", &format!("{owner}\0{record}\0{recipient}\0{life}")))
            .expect("hash() returns hex");
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&mac[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
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

    #[test]
    fn share_ids_are_one_per_owner_record_recipient_and_life() {
        let user = |n| UserId::from_uuid(uuid::Uuid::from_u128(n));
        let kv = SharedRecord::Kv { key_name: KeyName::parse("db").unwrap() };
        let file = SharedRecord::File { file_id: uuid::Uuid::from_u128(9) };
        let id = hasher(1).share_id(user(1), &kv, user(2), 1);
        assert_eq!(id, hasher(1).share_id(user(1), &kv, user(2), 1));
        assert_eq!(id.get_version_num(), 4, "shaped like any other id");
        for other in [
            hasher(1).share_id(user(3), &kv, user(2), 1),
            hasher(1).share_id(user(1), &file, user(2), 1),
            hasher(1).share_id(user(1), &kv, user(3), 1),
            hasher(1).share_id(user(1), &kv, user(2), 2),
            hasher(2).share_id(user(1), &kv, user(2), 1),
        ] {
            assert_ne!(id, other);
        }
    }
}
