//! The Secret aggregate: one encrypted KV record of one user, identified by its owner and key name.
//!
//! The Backend stores each version's ciphertext and the record's wrapped data key, never a
//! plaintext. Deleting is soft: reads and listings stop showing the record, its history stays, and
//! writing the key again starts a new life with a higher version.

use std::collections::BTreeSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use uuid::Uuid;

use crate::envelope;
use crate::ids::{OrgId, UserId};
use crate::values::{InvalidValue, KeyBlob};

/// A KV key name: 1 to 256 bytes of UTF-8 without control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyName(String);

impl KeyName {
    pub const MAX_BYTES: usize = 256;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.is_empty() {
            return Err(InvalidValue("key name must not be empty".into()));
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(InvalidValue(format!("key name must be at most {} bytes of UTF-8", Self::MAX_BYTES)));
        }
        if raw.chars().any(char::is_control) {
            return Err(InvalidValue("key name must not contain control characters".into()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Largest ciphertext accepted for one value (decoded): the biggest plan's key + value limit with
/// room to spare. The plan limit itself is enforced at append time.
pub const MAX_VALUE_CIPHERTEXT: usize = 64 * 1024;
/// Wrapped data keys: small, versioned blobs made by the Proxy.
pub const MAX_WRAP_LEN: usize = 4 * 1024;

/// One version's ciphertext and the record's data key wrapped for the owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretEnvelope {
    pub ciphertext: KeyBlob,
    pub wrap_ecc: KeyBlob,
    pub wrap_kyber: KeyBlob,
    /// Plaintext bytes behind `ciphertext` (see [`envelope`]).
    pub value_bytes: u64,
}

impl SecretEnvelope {
    pub fn parse(ciphertext_b64: &str, wrap_ecc_b64: &str, wrap_kyber_b64: &str) -> Result<Self, InvalidValue> {
        let ciphertext =
            KeyBlob::parse("ciphertextB64", ciphertext_b64, envelope::VALUE_OVERHEAD..=MAX_VALUE_CIPHERTEXT)?;
        let value_bytes = envelope::plaintext_len(ciphertext.decoded_len()).unwrap_or(0) as u64;
        Ok(Self {
            ciphertext,
            wrap_ecc: KeyBlob::parse("encryptedAesKeyEccB64", wrap_ecc_b64, 1..=MAX_WRAP_LEN)?,
            wrap_kyber: KeyBlob::parse("encryptedAesKeyKyberB64", wrap_kyber_b64, 1..=MAX_WRAP_LEN)?,
            value_bytes,
        })
    }
}

/// Which data key a write's ciphertext is under, as far as the writer says. Shares wrap the
/// record's data key once per key epoch, so a write must not silently change the key under them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyUse {
    /// Not said (a plain Backend client): an update keeps the epoch, a new record starts one.
    Unspecified,
    /// The key of this epoch, read from the record: refused if the record's key changed since.
    Same(u64),
    /// A new key for a record that does not exist: refused if it was created meanwhile.
    Fresh,
    /// A new key for the live record (a share was revoked): a new epoch, named by the rotation's
    /// id, which the shares' wraps of the new key carry too (of two racing rotations, the shares
    /// use the wraps of the one whose write won).
    Rotate(Rotation),
}

/// A rotation of the live record's data key, and what it did for the record's open shares: every
/// open share must be either re-wrapped to the new key or ended (revoked, removed, expired), or the
/// rotation is refused, so a share granted meanwhile is never left without the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    pub id: Uuid,
    pub rewrapped: BTreeSet<Uuid>,
    pub ended: BTreeSet<Uuid>,
}

/// Which life of the record (the version it began at) and which data key (the version that key
/// began at) a version belongs to. Absent (zero) in events written before shares existed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEpoch {
    pub life: u64,
    pub epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Uuid>,
}

/// A write's check-and-set conditions: the current version it expects (`If-Match`; 0: the record
/// must not be live) and the version it must become (a client that bound the version into the
/// ciphertext). Either may be absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VersionCheck {
    pub current: Option<u64>,
    pub becomes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SecretCommand {
    /// Create or update. With `expected_version`, a check-and-set: it applies only if the record's
    /// current version is that one (0: only if the key does not exist).
    WriteSecret {
        owner: UserId,
        org_id: OrgId,
        key_name: KeyName,
        envelope: SecretEnvelope,
        expected_version: Option<u64>,
        /// The version this write must become (a client that binds the version into its
        /// ciphertext says which it encrypted for); refused if the write would become another.
        version: Option<u64>,
        key: KeyUse,
    },
    DeleteSecret,
    /// A share of the live record was granted at its key `key` (refused if the key changed since:
    /// the grant's wrap is of the old key). Opening an open share again changes nothing.
    OpenShare {
        share_id: Uuid,
        key: KeyEpoch,
    },
    /// A share of the record ended (revoked or removed); nothing if it was not open.
    CloseShare {
        share_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SecretEvent {
    /// The first version of a life of the record: a new active record for the org.
    SecretCreated {
        owner: UserId,
        org_id: OrgId,
        key_name: KeyName,
        version: u64,
        envelope: SecretEnvelope,
        /// Key bytes + plaintext value bytes, checked against the plan at append time.
        kv_bytes: u64,
        #[serde(default)]
        key: KeyEpoch,
    },
    SecretUpdated {
        owner: UserId,
        org_id: OrgId,
        key_name: KeyName,
        version: u64,
        envelope: SecretEnvelope,
        kv_bytes: u64,
        #[serde(default)]
        key: KeyEpoch,
        /// The shares open on the record (absent in events written before shares were kept here).
        #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
        shares: BTreeSet<Uuid>,
    },
    /// Soft delete of the live record; `version` is the version that was current. Its shares end.
    SecretDeleted { owner: UserId, org_id: OrgId, key_name: KeyName, version: u64 },
    /// A share of the live record was opened: `shares` is the set open now (with `share_id`).
    SecretShareOpened {
        owner: UserId,
        org_id: OrgId,
        key_name: KeyName,
        version: u64,
        key: KeyEpoch,
        share_id: Uuid,
        shares: BTreeSet<Uuid>,
    },
    /// A share of the live record ended: `shares` is the set open now (without `share_id`).
    SecretShareClosed {
        owner: UserId,
        org_id: OrgId,
        key_name: KeyName,
        version: u64,
        key: KeyEpoch,
        share_id: Uuid,
        shares: BTreeSet<Uuid>,
    },
}

impl DomainEvent for SecretEvent {
    fn event_type(&self) -> String {
        match self {
            SecretEvent::SecretCreated { .. } => "SecretCreated",
            SecretEvent::SecretUpdated { .. } => "SecretUpdated",
            SecretEvent::SecretDeleted { .. } => "SecretDeleted",
            SecretEvent::SecretShareOpened { .. } => "SecretShareOpened",
            SecretEvent::SecretShareClosed { .. } => "SecretShareClosed",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecretError {
    #[error("key not found")]
    NotFound,
    #[error("version conflict: the current version is {current}")]
    VersionMismatch { current: u64 },
    #[error(
        "the record's data key changed meanwhile (it was created, rotated or re-created); read it again and retry"
    )]
    KeyChanged,
    #[error("share {0} was granted meanwhile and has no wrap of the new key; retry")]
    ShareNotRewrapped(Uuid),
}

/// A Secret's whole state follows from its last event alone (every event carries the identity and
/// the version; a test below holds this), so the command side loads only that event, however long
/// the record's history. Keep it so when adding events.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Secret {
    identity: Option<(UserId, OrgId, KeyName)>,
    /// The highest version ever written, across lives.
    last_version: u64,
    live: bool,
    key: KeyEpoch,
    /// The shares open on the live record, as far as its events say (shares granted before they
    /// were kept here are not in it).
    shares: BTreeSet<Uuid>,
}

impl Secret {
    /// The life and key epoch of the live record.
    pub fn key_epoch(&self) -> Option<KeyEpoch> {
        self.live.then_some(self.key)
    }

    /// The shares open on the live record (granted and not yet revoked or removed; some may have
    /// expired).
    pub fn open_shares(&self) -> &BTreeSet<Uuid> {
        &self.shares
    }

    pub fn identity(&self) -> Option<&(UserId, OrgId, KeyName)> {
        self.identity.as_ref()
    }

    /// The current version of the live record, 0 if there is none.
    pub fn current_version(&self) -> u64 {
        if self.live {
            self.last_version
        } else {
            0
        }
    }
}

impl Aggregate for Secret {
    const TYPE: &'static str = "Secret";
    type Command = SecretCommand;
    type Event = SecretEvent;
    type Error = SecretError;
    type Services = ();

    async fn handle(&mut self, command: SecretCommand, _: &(), sink: &EventSink<Self>) -> Result<(), SecretError> {
        match command {
            SecretCommand::WriteSecret {
                owner,
                org_id,
                key_name,
                envelope,
                expected_version,
                version: wanted,
                key,
            } => {
                let version = self.last_version + 1;
                if expected_version.is_some_and(|e| e != self.current_version()) || wanted.is_some_and(|w| w != version)
                {
                    return Err(SecretError::VersionMismatch { current: self.current_version() });
                }
                let kv_bytes = key_name.as_str().len() as u64 + envelope.value_bytes;
                let mut shares = self.shares.clone();
                let key = match (self.live, key) {
                    (false, KeyUse::Rotate(_)) => return Err(SecretError::NotFound),
                    (false, KeyUse::Same(_)) | (true, KeyUse::Fresh) => return Err(SecretError::KeyChanged),
                    (true, KeyUse::Same(epoch)) if epoch != self.key.epoch => return Err(SecretError::KeyChanged),
                    (false, _) => KeyEpoch { life: version, epoch: version, rotation: None },
                    (true, KeyUse::Rotate(rotation)) => {
                        if let Some(missing) =
                            shares.iter().find(|s| !rotation.rewrapped.contains(s) && !rotation.ended.contains(s))
                        {
                            return Err(SecretError::ShareNotRewrapped(*missing));
                        }
                        shares.retain(|s| !rotation.ended.contains(s));
                        KeyEpoch { life: self.key.life, epoch: version, rotation: Some(rotation.id) }
                    }
                    (true, _) => self.key,
                };
                let event = if self.live {
                    SecretEvent::SecretUpdated { owner, org_id, key_name, version, envelope, kv_bytes, key, shares }
                } else {
                    SecretEvent::SecretCreated { owner, org_id, key_name, version, envelope, kv_bytes, key }
                };
                sink.write(event, self).await;
            }
            SecretCommand::DeleteSecret => {
                let (Some((owner, org_id, key_name)), true) = (self.identity.clone(), self.live) else {
                    return Err(SecretError::NotFound);
                };
                sink.write(SecretEvent::SecretDeleted { owner, org_id, key_name, version: self.last_version }, self)
                    .await;
            }
            SecretCommand::OpenShare { share_id, key } => {
                let (Some((owner, org_id, key_name)), true) = (self.identity.clone(), self.live) else {
                    return Err(SecretError::NotFound);
                };
                if key != self.key {
                    return Err(SecretError::KeyChanged);
                }
                if !self.shares.contains(&share_id) {
                    let mut shares = self.shares.clone();
                    shares.insert(share_id);
                    let (version, key) = (self.last_version, self.key);
                    let event =
                        SecretEvent::SecretShareOpened { owner, org_id, key_name, version, key, share_id, shares };
                    sink.write(event, self).await;
                }
            }
            SecretCommand::CloseShare { share_id } => {
                if let (Some((owner, org_id, key_name)), true) = (self.identity.clone(), self.live) {
                    if self.shares.contains(&share_id) {
                        let mut shares = self.shares.clone();
                        shares.remove(&share_id);
                        let (version, key) = (self.last_version, self.key);
                        let event =
                            SecretEvent::SecretShareClosed { owner, org_id, key_name, version, key, share_id, shares };
                        sink.write(event, self).await;
                    }
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: SecretEvent) {
        match event {
            SecretEvent::SecretCreated { owner, org_id, key_name, version, key, .. } => {
                self.identity = Some((owner, org_id, key_name));
                self.last_version = version;
                self.live = true;
                self.key = key;
                self.shares = BTreeSet::new();
            }
            SecretEvent::SecretUpdated { owner, org_id, key_name, version, key, shares, .. }
            | SecretEvent::SecretShareOpened { owner, org_id, key_name, version, key, shares, .. }
            | SecretEvent::SecretShareClosed { owner, org_id, key_name, version, key, shares, .. } => {
                self.identity = Some((owner, org_id, key_name));
                self.last_version = version;
                self.live = true;
                self.key = key;
                self.shares = shares;
            }
            SecretEvent::SecretDeleted { owner, org_id, key_name, version } => {
                self.identity = Some((owner, org_id, key_name));
                self.last_version = version;
                self.live = false;
                self.key = KeyEpoch::default();
                self.shares = BTreeSet::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;

    fn owner() -> UserId {
        UserId::from_uuid(Uuid::from_u128(1))
    }
    fn org() -> OrgId {
        OrgId::from_uuid(Uuid::from_u128(2))
    }
    fn name() -> KeyName {
        KeyName::parse("db-url").unwrap()
    }
    fn envelope(value_len: usize) -> SecretEnvelope {
        let b64 = |n: usize| STANDARD.encode(vec![9u8; n]);
        SecretEnvelope::parse(&b64(29 + value_len), &b64(33), &b64(1149)).unwrap()
    }
    fn write(expected_version: Option<u64>) -> SecretCommand {
        SecretCommand::WriteSecret {
            owner: owner(),
            org_id: org(),
            key_name: name(),
            envelope: envelope(10),
            expected_version,
            version: None,
            key: KeyUse::Unspecified,
        }
    }
    fn created(version: u64) -> SecretEvent {
        SecretEvent::SecretCreated {
            owner: owner(),
            org_id: org(),
            key_name: name(),
            version,
            envelope: envelope(10),
            kv_bytes: 6 + 10,
            key: KeyEpoch { life: version, epoch: version, rotation: None },
        }
    }
    fn updated(version: u64) -> SecretEvent {
        SecretEvent::SecretUpdated {
            owner: owner(),
            org_id: org(),
            key_name: name(),
            version,
            envelope: envelope(10),
            kv_bytes: 16,
            key: KeyEpoch { life: 1, epoch: 1, rotation: None },
            shares: BTreeSet::new(),
        }
    }
    fn deleted(version: u64) -> SecretEvent {
        SecretEvent::SecretDeleted { owner: owner(), org_id: org(), key_name: name(), version }
    }

    #[test]
    fn key_names_are_one_to_256_bytes_without_control_characters() {
        assert!(KeyName::parse("a").is_ok());
        assert!(KeyName::parse(&"k".repeat(256)).is_ok());
        assert!(KeyName::parse(&"é".repeat(128)).is_ok(), "256 bytes of UTF-8");
        assert!(KeyName::parse(&"é".repeat(129)).is_err(), "258 bytes");
        assert!(KeyName::parse("").is_err());
        assert!(KeyName::parse("tab\there").is_err());
        assert!(KeyName::parse("nul\0").is_err());
        assert!(KeyName::parse("path/with spaces and ünïcode").is_ok());
    }

    #[test]
    fn envelope_knows_the_plaintext_length_and_refuses_short_ciphertexts() {
        assert_eq!(envelope(100).value_bytes, 100);
        assert_eq!(envelope(0).value_bytes, 0);
        let short = STANDARD.encode([1u8; 28]);
        assert!(SecretEnvelope::parse(&short, "AA==", "AA==").is_err());
        assert!(SecretEnvelope::parse(&STANDARD.encode([1u8; 40]), "not base64", "AA==").is_err());
    }

    #[test]
    fn first_write_creates_version_one() {
        TestFramework::<Secret>::with(())
            .given_no_previous_events()
            .when(write(None))
            .then_expect_events(vec![created(1)]);
    }

    #[test]
    fn a_write_to_a_live_record_is_an_update_with_the_next_version() {
        TestFramework::<Secret>::with(())
            .given(vec![created(1)])
            .when(write(None))
            .then_expect_events(vec![updated(2)]);
    }

    #[test]
    fn check_and_set_applies_only_at_the_expected_version() {
        TestFramework::<Secret>::with(())
            .given(vec![created(1), updated(2)])
            .when(write(Some(2)))
            .then_expect_events(vec![updated(3)]);
        TestFramework::<Secret>::with(())
            .given(vec![created(1), updated(2)])
            .when(write(Some(1)))
            .then_expect_error(SecretError::VersionMismatch { current: 2 });
        TestFramework::<Secret>::with(())
            .given_no_previous_events()
            .when(write(Some(0)))
            .then_expect_events(vec![created(1)]);
        TestFramework::<Secret>::with(())
            .given(vec![created(1)])
            .when(write(Some(0)))
            .then_expect_error(SecretError::VersionMismatch { current: 1 });
    }

    #[test]
    fn delete_is_soft_and_a_new_life_continues_the_version_count() {
        TestFramework::<Secret>::with(())
            .given(vec![created(1), updated(2)])
            .when(SecretCommand::DeleteSecret)
            .then_expect_events(vec![deleted(2)]);
        TestFramework::<Secret>::with(())
            .given(vec![created(1), updated(2), deleted(2)])
            .when(write(None))
            .then_expect_events(vec![created(3)]);
    }

    #[test]
    fn a_write_for_a_named_version_applies_only_if_it_becomes_that_version() {
        let at = |version| match write(None) {
            SecretCommand::WriteSecret { owner, org_id, key_name, envelope, expected_version, key, .. } => {
                SecretCommand::WriteSecret {
                    owner,
                    org_id,
                    key_name,
                    envelope,
                    expected_version,
                    version: Some(version),
                    key,
                }
            }
            other => other,
        };
        // A new life after a delete continues the count: it becomes 3, not 1.
        let history = vec![created(1), updated(2), deleted(2)];
        TestFramework::<Secret>::with(()).given(history.clone()).when(at(3)).then_expect_events(vec![created(3)]);
        TestFramework::<Secret>::with(())
            .given(history)
            .when(at(1))
            .then_expect_error(SecretError::VersionMismatch { current: 0 });
        TestFramework::<Secret>::with(())
            .given(vec![created(1)])
            .when(at(3))
            .then_expect_error(SecretError::VersionMismatch { current: 1 });
    }

    #[test]
    fn the_last_event_alone_gives_the_whole_state() {
        for history in [
            vec![created(1), updated(2), deleted(2)],
            vec![created(1), updated(2)],
            vec![created(1), deleted(1), created(2)],
            vec![created(1), opened(1, 5, &[5])],
            vec![created(1), opened(1, 5, &[5]), opened(1, 6, &[5, 6]), closed(1, 5, &[6])],
            vec![created(1), opened(1, 5, &[5]), updated_sharing(2, &[5])],
            vec![created(1), opened(1, 5, &[5]), deleted(1)],
        ] {
            let mut full = Secret::default();
            for e in history.clone() {
                full.apply(e);
            }
            let mut tail = Secret::default();
            tail.apply(history.last().unwrap().clone());
            assert_eq!(serde_json::to_value(&full).unwrap(), serde_json::to_value(&tail).unwrap(), "{history:?}");
        }
    }

    fn write_with(key: KeyUse) -> SecretCommand {
        let SecretCommand::WriteSecret { owner, org_id, key_name, envelope, expected_version, version, .. } =
            write(None)
        else {
            unreachable!()
        };
        SecretCommand::WriteSecret { owner, org_id, key_name, envelope, expected_version, version, key }
    }

    #[test]
    fn writes_keep_or_rotate_the_key_epoch_and_refuse_a_key_that_changed_under_them() {
        let with_key = |event: SecretEvent, life: u64, epoch: u64| match event {
            SecretEvent::SecretUpdated { owner, org_id, key_name, version, envelope, kv_bytes, shares, .. } => {
                SecretEvent::SecretUpdated {
                    owner,
                    org_id,
                    key_name,
                    version,
                    envelope,
                    kv_bytes,
                    key: KeyEpoch { life, epoch, rotation: Some(Uuid::from_u128(77)) },
                    shares,
                }
            }
            other => other,
        };
        // The same key: the epoch stays.
        TestFramework::<Secret>::with(())
            .given(vec![created(1)])
            .when(write_with(KeyUse::Same(1)))
            .then_expect_events(vec![updated(2)]);
        // A rotation starts an epoch at its version, in the same life.
        TestFramework::<Secret>::with(())
            .given(vec![created(1), updated(2)])
            .when(write_with(KeyUse::Rotate(Rotation { id: Uuid::from_u128(77), ..Rotation::default() })))
            .then_expect_events(vec![with_key(updated(3), 1, 3)]);
        // A writer that read epoch 1 after a rotation to epoch 3: refused.
        TestFramework::<Secret>::with(())
            .given(vec![created(1), with_key(updated(3), 1, 3)])
            .when(write_with(KeyUse::Same(1)))
            .then_expect_error(SecretError::KeyChanged);
        // A fresh key for a record someone created meanwhile: refused.
        TestFramework::<Secret>::with(())
            .given(vec![created(1)])
            .when(write_with(KeyUse::Fresh))
            .then_expect_error(SecretError::KeyChanged);
        // A new life is a new epoch, whatever the writer read before the deletion.
        TestFramework::<Secret>::with(())
            .given(vec![created(1), deleted(1)])
            .when(write_with(KeyUse::Same(1)))
            .then_expect_error(SecretError::KeyChanged);
        TestFramework::<Secret>::with(())
            .given(vec![created(1), deleted(1)])
            .when(write_with(KeyUse::Fresh))
            .then_expect_events(vec![created(2)]);
        TestFramework::<Secret>::with(())
            .given(vec![created(1), deleted(1)])
            .when(write_with(KeyUse::Rotate(Rotation { id: Uuid::from_u128(77), ..Rotation::default() })))
            .then_expect_error(SecretError::NotFound);
    }

    #[test]
    fn delete_refuses_a_missing_or_deleted_record() {
        TestFramework::<Secret>::with(())
            .given_no_previous_events()
            .when(SecretCommand::DeleteSecret)
            .then_expect_error(SecretError::NotFound);
        TestFramework::<Secret>::with(())
            .given(vec![created(1), deleted(1)])
            .when(SecretCommand::DeleteSecret)
            .then_expect_error(SecretError::NotFound);
    }

    fn ids(ids: &[u128]) -> BTreeSet<Uuid> {
        ids.iter().map(|n| Uuid::from_u128(*n)).collect()
    }
    fn epoch1() -> KeyEpoch {
        KeyEpoch { life: 1, epoch: 1, rotation: None }
    }
    fn opened(version: u64, share: u128, open: &[u128]) -> SecretEvent {
        SecretEvent::SecretShareOpened {
            owner: owner(),
            org_id: org(),
            key_name: name(),
            version,
            key: epoch1(),
            share_id: Uuid::from_u128(share),
            shares: ids(open),
        }
    }
    fn closed(version: u64, share: u128, open: &[u128]) -> SecretEvent {
        SecretEvent::SecretShareClosed {
            owner: owner(),
            org_id: org(),
            key_name: name(),
            version,
            key: epoch1(),
            share_id: Uuid::from_u128(share),
            shares: ids(open),
        }
    }
    fn updated_sharing(version: u64, open: &[u128]) -> SecretEvent {
        match updated(version) {
            SecretEvent::SecretUpdated { owner, org_id, key_name, version, envelope, kv_bytes, key, .. } => {
                SecretEvent::SecretUpdated {
                    owner,
                    org_id,
                    key_name,
                    version,
                    envelope,
                    kv_bytes,
                    key,
                    shares: ids(open),
                }
            }
            other => other,
        }
    }

    #[test]
    fn shares_open_on_the_live_record_at_its_key_once_and_close_once() {
        let open = |share| SecretCommand::OpenShare { share_id: Uuid::from_u128(share), key: epoch1() };
        TestFramework::<Secret>::with(()).given(vec![created(1)]).when(open(5)).then_expect_events(vec![opened(
            1,
            5,
            &[5],
        )]);
        // The same share again (a retried grant): nothing.
        TestFramework::<Secret>::with(())
            .given(vec![created(1), opened(1, 5, &[5])])
            .when(open(5))
            .then_expect_events(vec![]);
        // A grant of the key the record no longer uses, or of a deleted record: refused.
        let rotated = KeyEpoch { life: 1, epoch: 1, rotation: Some(Uuid::from_u128(1)) };
        TestFramework::<Secret>::with(())
            .given(vec![created(1)])
            .when(SecretCommand::OpenShare { share_id: Uuid::from_u128(5), key: rotated })
            .then_expect_error(SecretError::KeyChanged);
        TestFramework::<Secret>::with(())
            .given(vec![created(1), deleted(1)])
            .when(open(5))
            .then_expect_error(SecretError::NotFound);
        TestFramework::<Secret>::with(())
            .given(vec![created(1), opened(1, 5, &[5]), opened(1, 6, &[5, 6])])
            .when(SecretCommand::CloseShare { share_id: Uuid::from_u128(5) })
            .then_expect_events(vec![closed(1, 5, &[6])]);
        TestFramework::<Secret>::with(())
            .given(vec![created(1)])
            .when(SecretCommand::CloseShare { share_id: Uuid::from_u128(5) })
            .then_expect_events(vec![]);
        // An update keeps the open shares.
        TestFramework::<Secret>::with(())
            .given(vec![created(1), opened(1, 5, &[5])])
            .when(write(None))
            .then_expect_events(vec![updated_sharing(2, &[5])]);
    }

    #[test]
    fn a_rotation_must_rewrap_or_end_every_open_share() {
        let rotate = |rewrapped: &[u128], ended: &[u128]| {
            write_with(KeyUse::Rotate(Rotation {
                id: Uuid::from_u128(77),
                rewrapped: ids(rewrapped),
                ended: ids(ended),
            }))
        };
        let history = vec![created(1), opened(1, 5, &[5]), opened(1, 6, &[5, 6])];
        // Share 6 was granted after the rotation read the shares: refused, naming it.
        TestFramework::<Secret>::with(())
            .given(history.clone())
            .when(rotate(&[5], &[]))
            .then_expect_error(SecretError::ShareNotRewrapped(Uuid::from_u128(6)));
        let rotated = |open: &[u128]| match updated_sharing(2, open) {
            SecretEvent::SecretUpdated { owner, org_id, key_name, version, envelope, kv_bytes, shares, .. } => {
                SecretEvent::SecretUpdated {
                    owner,
                    org_id,
                    key_name,
                    version,
                    envelope,
                    kv_bytes,
                    key: KeyEpoch { life: 1, epoch: 2, rotation: Some(Uuid::from_u128(77)) },
                    shares,
                }
            }
            other => other,
        };
        TestFramework::<Secret>::with(())
            .given(history.clone())
            .when(rotate(&[5, 6], &[]))
            .then_expect_events(vec![rotated(&[5, 6])]);
        // An ended share needs no key and leaves the set.
        TestFramework::<Secret>::with(())
            .given(history)
            .when(rotate(&[6], &[5]))
            .then_expect_events(vec![rotated(&[6])]);
    }
}
