//! The User aggregate: who a user is (org, role, name), the API keys they hold, and their key
//! material (public keys, and private keys sealed by the Proxy).
//!
//! API keys appear here only as hashes: the plaintext key is drawn, shown once and forgotten by the
//! command side before the command is built.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::{ApiKeyId, OrgId, UserId};
use crate::role::Role;
use crate::values::{ApiKeyHash, KeyBlob, PublicKeys, SealProof, SealVerifier, SealedPrivateKeys, UserName};

/// How the Cloud API lists a key: its name and its public identifier (`key`), which names the key
/// and never authenticates (only the secret shown once at creation does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyLabel {
    pub name: String,
    pub key: String,
}

/// A freshly drawn API key, as the aggregate sees it: an id and a hash.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedKey {
    pub key_id: ApiKeyId,
    pub key_hash: ApiKeyHash,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UserCommand {
    BootstrapGlobalAdmin {
        key: IssuedKey,
    },
    CreateUser {
        user_id: UserId,
        org_id: OrgId,
        name: UserName,
        role: Role,
        public_keys: Option<PublicKeys>,
        /// None for a user whose keys come later (an onboarded org's project user).
        key: Option<IssuedKey>,
    },
    /// One more key, named, beside the others (the Cloud API's keys of an org's project user).
    IssueApiKey {
        key: IssuedKey,
        label: ApiKeyLabel,
    },
    /// One key stops working.
    RevokeApiKey {
        key_id: ApiKeyId,
    },
    /// Every key the user holds stops working, and one new key is issued.
    RotateApiKey {
        key: IssuedKey,
    },
    /// Offboarding: the user and all their keys stop working; their events stay.
    Deactivate,
    /// Stores key material. `verifier` belongs to the new seal (absent when the client sent no seal
    /// proof: such a seal can never be replaced by this command); `current_proof` proves the secret
    /// of the seal being replaced (required once the user has sealed keys).
    StoreKeys {
        public_keys: PublicKeys,
        sealed: SealedPrivateKeys,
        verifier: Option<SealVerifier>,
        current_proof: Option<SealProof>,
    },
    /// Publishes the user's self-signed key bundle (see [`crate::bundle`]): its keys must be the
    /// user's public keys, and both signatures must verify for this user of this org.
    PublishBundle {
        bundle: KeyBlob,
    },
    /// Stores the user's pins (sealed under their keys; opaque here).
    StorePins {
        pins: KeyBlob,
    },
    /// A completed trusted-user recovery: the same key pairs sealed under a new secret, without a
    /// proof of the old one (which the owner lost). The command side issues it only while a
    /// trustee's restore is pending, and only with keys that match the user's public keys.
    RecoverKeys {
        sealed: SealedPrivateKeys,
        verifier: SealVerifier,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    GlobalAdminBootstrapped {
        user_id: UserId,
    },
    UserCreated {
        user_id: UserId,
        org_id: OrgId,
        name: UserName,
        role: Role,
        public_keys: Option<PublicKeys>,
    },
    ApiKeyIssued {
        user_id: UserId,
        key_id: ApiKeyId,
        key_hash: ApiKeyHash,
        /// Only keys made through the Cloud API have one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<ApiKeyLabel>,
    },
    ApiKeyRevoked {
        user_id: UserId,
        key_id: ApiKeyId,
    },
    UserDeactivated {
        user_id: UserId,
    },
    /// The user's first key material: public keys (unless given at creation, then the same ones)
    /// and sealed private keys.
    UserKeysStored {
        user_id: UserId,
        public_keys: PublicKeys,
        sealed: SealedPrivateKeys,
        /// Absent only in events written before seal proofs existed.
        #[serde(default)]
        verifier: Option<SealVerifier>,
    },
    /// The same key pairs sealed anew (the user secret changed, or a recovery completed).
    UserKeysResealed {
        user_id: UserId,
        sealed: SealedPrivateKeys,
        #[serde(default)]
        verifier: Option<SealVerifier>,
    },
    UserKeyBundlePublished {
        user_id: UserId,
        bundle: KeyBlob,
    },
    UserPinsStored {
        user_id: UserId,
        pins: KeyBlob,
    },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            UserEvent::GlobalAdminBootstrapped { .. } => "GlobalAdminBootstrapped",
            UserEvent::UserCreated { .. } => "UserCreated",
            UserEvent::ApiKeyIssued { .. } => "ApiKeyIssued",
            UserEvent::ApiKeyRevoked { .. } => "ApiKeyRevoked",
            UserEvent::UserDeactivated { .. } => "UserDeactivated",
            UserEvent::UserKeysStored { .. } => "UserKeysStored",
            UserEvent::UserKeysResealed { .. } => "UserKeysResealed",
            UserEvent::UserKeyBundlePublished { .. } => "UserKeyBundlePublished",
            UserEvent::UserPinsStored { .. } => "UserPinsStored",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UserError {
    #[error("user already exists")]
    AlreadyExists,
    #[error("user not found")]
    NotFound,
    #[error("user has been deactivated")]
    Deactivated,
    #[error("only org admins and members can be created in an org")]
    InvalidRole,
    #[error("api key not found")]
    KeyNotFound,
    #[error("the global admin has no key material")]
    GlobalAdminHasNoKeys,
    #[error("keys already exist for this user; only the same public keys with newly sealed private keys are accepted")]
    KeysAlreadySet,
    #[error("this user's keys are sealed: replacing the seal needs currentSealProofB64, the proof of the current user secret")]
    SealProofRequired,
    #[error("currentSealProofB64 does not prove the current user secret")]
    SealProofMismatch,
    #[error("keyBundleB64 is not a valid key bundle of this user: {0}")]
    InvalidBundle(String),
    #[error("the key bundle's keys are not this user's public keys")]
    BundleKeysMismatch,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct User {
    id: Option<UserId>,
    org_id: Option<OrgId>,
    role: Option<Role>,
    active: bool,
    public_keys: Option<PublicKeys>,
    has_sealed_keys: bool,
    seal_verifier: Option<SealVerifier>,
    active_keys: Vec<ApiKeyId>,
}

impl User {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }
    pub fn org_id(&self) -> Option<OrgId> {
        self.org_id
    }
    pub fn role(&self) -> Option<Role> {
        self.role
    }
    /// Whether the user has public keys and sealed private keys (anything can be wrapped to them).
    pub fn has_keys(&self) -> bool {
        self.public_keys.is_some() && self.has_sealed_keys
    }
    pub fn public_keys(&self) -> Option<&PublicKeys> {
        self.public_keys.as_ref()
    }
    pub fn is_active(&self) -> bool {
        self.active
    }

    fn live_id(&self) -> Result<UserId, UserError> {
        match self.id {
            None => Err(UserError::NotFound),
            Some(_) if !self.active => Err(UserError::Deactivated),
            Some(id) => Ok(id),
        }
    }

    async fn revoke_all_keys(&mut self, user_id: UserId, sink: &EventSink<Self>) {
        for key_id in self.active_keys.clone() {
            sink.write(UserEvent::ApiKeyRevoked { user_id, key_id }, self).await;
        }
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "User";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(&mut self, command: UserCommand, _services: &(), sink: &EventSink<Self>) -> Result<(), UserError> {
        match command {
            UserCommand::BootstrapGlobalAdmin { key } => {
                if self.exists() {
                    return Err(UserError::AlreadyExists);
                }
                let user_id = UserId::GLOBAL_ADMIN;
                sink.write(UserEvent::GlobalAdminBootstrapped { user_id }, self).await;
                let IssuedKey { key_id, key_hash } = key;
                sink.write(UserEvent::ApiKeyIssued { user_id, key_id, key_hash, label: None }, self).await;
            }
            UserCommand::CreateUser { user_id, org_id, name, role, public_keys, key } => {
                if self.exists() {
                    return Err(UserError::AlreadyExists);
                }
                if role == Role::GlobalAdmin {
                    return Err(UserError::InvalidRole);
                }
                sink.write(UserEvent::UserCreated { user_id, org_id, name, role, public_keys }, self).await;
                if let Some(IssuedKey { key_id, key_hash }) = key {
                    sink.write(UserEvent::ApiKeyIssued { user_id, key_id, key_hash, label: None }, self).await;
                }
            }
            UserCommand::IssueApiKey { key: IssuedKey { key_id, key_hash }, label } => {
                let user_id = self.live_id()?;
                sink.write(UserEvent::ApiKeyIssued { user_id, key_id, key_hash, label: Some(label) }, self).await;
            }
            UserCommand::RevokeApiKey { key_id } => {
                let user_id = self.live_id()?;
                if !self.active_keys.contains(&key_id) {
                    return Err(UserError::KeyNotFound);
                }
                sink.write(UserEvent::ApiKeyRevoked { user_id, key_id }, self).await;
            }
            UserCommand::RotateApiKey { key } => {
                let user_id = self.live_id()?;
                self.revoke_all_keys(user_id, sink).await;
                let IssuedKey { key_id, key_hash } = key;
                sink.write(UserEvent::ApiKeyIssued { user_id, key_id, key_hash, label: None }, self).await;
            }
            UserCommand::Deactivate => {
                let Some(user_id) = self.id else {
                    return Err(UserError::NotFound);
                };
                // Offboarding twice is offboarding once.
                if self.active {
                    self.revoke_all_keys(user_id, sink).await;
                    sink.write(UserEvent::UserDeactivated { user_id }, self).await;
                }
            }
            UserCommand::StoreKeys { public_keys, sealed, verifier, current_proof } => {
                let user_id = self.live_id()?;
                if self.role == Some(Role::GlobalAdmin) {
                    return Err(UserError::GlobalAdminHasNoKeys);
                }
                match &self.public_keys {
                    Some(existing) if *existing != public_keys => return Err(UserError::KeysAlreadySet),
                    Some(_) if self.has_sealed_keys => {
                        // Seals from before proofs existed have no verifier: nothing can prove them,
                        // so they are never replaced through this command.
                        let proof = current_proof.ok_or(UserError::SealProofRequired)?;
                        if self.seal_verifier.as_ref() != Some(&proof.verifier()) {
                            return Err(UserError::SealProofMismatch);
                        }
                        sink.write(UserEvent::UserKeysResealed { user_id, sealed, verifier }, self).await
                    }
                    _ => sink.write(UserEvent::UserKeysStored { user_id, public_keys, sealed, verifier }, self).await,
                }
            }
            UserCommand::PublishBundle { bundle } => {
                let user_id = self.live_id()?;
                let (Some(org), Some(public)) = (self.org_id, &self.public_keys) else {
                    return Err(UserError::NotFound);
                };
                let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, bundle.as_str())
                    .map_err(|_| UserError::InvalidBundle("not base64".into()))?;
                let verified = crate::bundle::KeyBundle::verify(&bytes, *org.as_uuid(), *user_id.as_uuid())
                    .map_err(|e| UserError::InvalidBundle(e.to_string()))?;
                let keys = public.crypto_keys().map_err(|_| UserError::BundleKeysMismatch)?;
                if verified.keys().ecc_bytes() != keys.ecc_bytes()
                    || verified.keys().kyber_bytes() != keys.kyber_bytes()
                {
                    return Err(UserError::BundleKeysMismatch);
                }
                sink.write(UserEvent::UserKeyBundlePublished { user_id, bundle }, self).await
            }
            UserCommand::StorePins { pins } => {
                let user_id = self.live_id()?;
                sink.write(UserEvent::UserPinsStored { user_id, pins }, self).await
            }
            UserCommand::RecoverKeys { sealed, verifier } => {
                let user_id = self.live_id()?;
                if !self.has_keys() {
                    return Err(UserError::NotFound);
                }
                sink.write(UserEvent::UserKeysResealed { user_id, sealed, verifier: Some(verifier) }, self).await
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: UserEvent) {
        match event {
            UserEvent::GlobalAdminBootstrapped { user_id } => {
                self.id = Some(user_id);
                self.role = Some(Role::GlobalAdmin);
                self.active = true;
            }
            UserEvent::UserCreated { user_id, org_id, role, public_keys, .. } => {
                self.id = Some(user_id);
                self.org_id = Some(org_id);
                self.role = Some(role);
                self.public_keys = public_keys;
                self.active = true;
            }
            UserEvent::ApiKeyIssued { key_id, .. } => self.active_keys.push(key_id),
            UserEvent::ApiKeyRevoked { key_id, .. } => self.active_keys.retain(|k| *k != key_id),
            UserEvent::UserDeactivated { .. } => self.active = false,
            UserEvent::UserKeysStored { public_keys, verifier, .. } => {
                self.public_keys = Some(public_keys);
                self.has_sealed_keys = true;
                self.seal_verifier = verifier;
            }
            UserEvent::UserKeysResealed { verifier, .. } => {
                self.has_sealed_keys = true;
                self.seal_verifier = verifier;
            }
            UserEvent::UserKeyBundlePublished { .. } | UserEvent::UserPinsStored { .. } => {}
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
    use crate::values::{ECC_PUBLIC_KEY_LEN, KYBER_PUBLIC_KEY_LEN};

    fn uid() -> UserId {
        UserId::from_uuid(Uuid::from_u128(7))
    }
    fn oid() -> OrgId {
        OrgId::from_uuid(Uuid::from_u128(9))
    }
    fn key(n: u128) -> IssuedKey {
        IssuedKey { key_id: ApiKeyId::from_uuid(Uuid::from_u128(n)), key_hash: ApiKeyHash::from_digest([n as u8; 32]) }
    }
    fn issued(n: u128) -> UserEvent {
        let IssuedKey { key_id, key_hash } = key(n);
        UserEvent::ApiKeyIssued { user_id: uid(), key_id, key_hash, label: None }
    }
    fn revoked(n: u128) -> UserEvent {
        UserEvent::ApiKeyRevoked { user_id: uid(), key_id: key(n).key_id }
    }
    fn public(fill: u8) -> PublicKeys {
        PublicKeys::parse(
            &STANDARD.encode([fill; ECC_PUBLIC_KEY_LEN]),
            &STANDARD.encode(vec![fill; KYBER_PUBLIC_KEY_LEN]),
        )
        .unwrap()
    }
    fn sealed(fill: u8) -> SealedPrivateKeys {
        SealedPrivateKeys::parse(&STANDARD.encode([fill; 80]), &STANDARD.encode([fill; 2500])).unwrap()
    }
    fn create(role: Role, public_keys: Option<PublicKeys>) -> UserCommand {
        UserCommand::CreateUser {
            user_id: uid(),
            org_id: oid(),
            name: UserName::parse("svc").unwrap(),
            role,
            public_keys,
            key: Some(key(1)),
        }
    }
    fn created(public_keys: Option<PublicKeys>) -> UserEvent {
        UserEvent::UserCreated {
            user_id: uid(),
            org_id: oid(),
            name: UserName::parse("svc").unwrap(),
            role: Role::Member,
            public_keys,
        }
    }
    fn framework() -> TestFramework<User> {
        TestFramework::with(())
    }

    #[test]
    fn bootstrap_creates_the_global_admin_with_one_key() {
        let IssuedKey { key_id, key_hash } = key(1);
        framework()
            .given_no_previous_events()
            .when(UserCommand::BootstrapGlobalAdmin { key: key(1) })
            .then_expect_events(vec![
                UserEvent::GlobalAdminBootstrapped { user_id: UserId::GLOBAL_ADMIN },
                UserEvent::ApiKeyIssued { user_id: UserId::GLOBAL_ADMIN, key_id, key_hash, label: None },
            ]);
    }

    #[test]
    fn bootstrap_refuses_when_the_global_admin_exists() {
        framework()
            .given(vec![UserEvent::GlobalAdminBootstrapped { user_id: UserId::GLOBAL_ADMIN }])
            .when(UserCommand::BootstrapGlobalAdmin { key: key(2) })
            .then_expect_error(UserError::AlreadyExists);
    }

    #[test]
    fn create_user_records_the_user_and_its_first_key() {
        framework()
            .given_no_previous_events()
            .when(create(Role::Member, None))
            .then_expect_events(vec![created(None), issued(1)]);
    }

    #[test]
    fn create_user_refuses_an_existing_user() {
        framework()
            .given(vec![created(None), issued(1)])
            .when(create(Role::OrgAdmin, None))
            .then_expect_error(UserError::AlreadyExists);
    }

    #[test]
    fn create_user_refuses_the_global_admin_role() {
        framework()
            .given_no_previous_events()
            .when(create(Role::GlobalAdmin, None))
            .then_expect_error(UserError::InvalidRole);
    }

    #[test]
    fn rotate_revokes_every_active_key_then_issues_one() {
        framework()
            .given(vec![created(None), issued(1), issued(2), revoked(2)])
            .when(UserCommand::RotateApiKey { key: key(3) })
            .then_expect_events(vec![revoked(1), issued(3)]);
    }

    #[test]
    fn rotate_refuses_a_missing_or_deactivated_user() {
        framework()
            .given_no_previous_events()
            .when(UserCommand::RotateApiKey { key: key(3) })
            .then_expect_error(UserError::NotFound);
        framework()
            .given(vec![created(None), issued(1), revoked(1), UserEvent::UserDeactivated { user_id: uid() }])
            .when(UserCommand::RotateApiKey { key: key(3) })
            .then_expect_error(UserError::Deactivated);
    }

    #[test]
    fn deactivate_revokes_keys_and_is_idempotent() {
        framework()
            .given(vec![created(None), issued(1)])
            .when(UserCommand::Deactivate)
            .then_expect_events(vec![revoked(1), UserEvent::UserDeactivated { user_id: uid() }]);
        framework()
            .given(vec![created(None), issued(1), revoked(1), UserEvent::UserDeactivated { user_id: uid() }])
            .when(UserCommand::Deactivate)
            .then_expect_events(vec![]);
        framework().given_no_previous_events().when(UserCommand::Deactivate).then_expect_error(UserError::NotFound);
    }

    fn proof(n: u8) -> SealProof {
        SealProof::from_bytes([n; 32])
    }
    fn store(public_keys: PublicKeys, seal: u8, current: Option<u8>) -> UserCommand {
        UserCommand::StoreKeys {
            public_keys,
            sealed: sealed(seal),
            verifier: Some(proof(seal).verifier()),
            current_proof: current.map(proof),
        }
    }
    fn stored(seal: u8) -> UserEvent {
        UserEvent::UserKeysStored {
            user_id: uid(),
            public_keys: public(1),
            sealed: sealed(seal),
            verifier: Some(proof(seal).verifier()),
        }
    }
    fn resealed(seal: u8) -> UserEvent {
        UserEvent::UserKeysResealed { user_id: uid(), sealed: sealed(seal), verifier: Some(proof(seal).verifier()) }
    }

    #[test]
    fn store_keys_first_time_records_public_and_sealed_keys_and_the_verifier() {
        framework()
            .given(vec![created(None), issued(1)])
            .when(store(public(1), 1, None))
            .then_expect_events(vec![stored(1)]);
    }

    #[test]
    fn store_keys_completes_public_keys_given_at_creation() {
        framework()
            .given(vec![created(Some(public(1))), issued(1)])
            .when(store(public(1), 1, None))
            .then_expect_events(vec![stored(1)]);
    }

    #[test]
    fn a_reseal_with_the_proof_of_the_current_secret_is_recorded() {
        framework()
            .given(vec![created(None), issued(1), stored(1)])
            .when(store(public(1), 2, Some(1)))
            .then_expect_events(vec![resealed(2)]);
        // A second re-seal must prove the secret of the first re-seal, not of the original.
        framework()
            .given(vec![created(None), issued(1), stored(1), resealed(2)])
            .when(store(public(1), 3, Some(1)))
            .then_expect_error(UserError::SealProofMismatch);
        framework()
            .given(vec![created(None), issued(1), stored(1), resealed(2)])
            .when(store(public(1), 3, Some(2)))
            .then_expect_events(vec![resealed(3)]);
    }

    #[test]
    fn a_reseal_without_a_proof_or_with_a_wrong_one_is_refused() {
        framework()
            .given(vec![created(None), issued(1), stored(1)])
            .when(store(public(1), 2, None))
            .then_expect_error(UserError::SealProofRequired);
        framework()
            .given(vec![created(None), issued(1), stored(1)])
            .when(store(public(1), 2, Some(9)))
            .then_expect_error(UserError::SealProofMismatch);
        // Keys sealed before proofs existed can be proven by nothing.
        let legacy =
            UserEvent::UserKeysStored { user_id: uid(), public_keys: public(1), sealed: sealed(1), verifier: None };
        framework()
            .given(vec![created(None), issued(1), legacy])
            .when(store(public(1), 2, Some(1)))
            .then_expect_error(UserError::SealProofMismatch);
    }

    #[test]
    fn events_from_before_seal_proofs_still_load() {
        let json = serde_json::json!({"UserKeysResealed": {"user_id": uid(), "sealed": sealed(1)}});
        let event: UserEvent = serde_json::from_value(json).unwrap();
        assert_eq!(event, UserEvent::UserKeysResealed { user_id: uid(), sealed: sealed(1), verifier: None });
    }

    #[test]
    fn store_keys_refuses_different_public_keys() {
        framework()
            .given(vec![created(None), issued(1), stored(1)])
            .when(store(public(2), 2, Some(1)))
            .then_expect_error(UserError::KeysAlreadySet);
        framework()
            .given(vec![created(Some(public(1))), issued(1)])
            .when(store(public(2), 2, None))
            .then_expect_error(UserError::KeysAlreadySet);
    }

    #[test]
    fn store_keys_refuses_the_global_admin_and_deactivated_users() {
        framework()
            .given(vec![UserEvent::GlobalAdminBootstrapped { user_id: UserId::GLOBAL_ADMIN }])
            .when(store(public(1), 1, None))
            .then_expect_error(UserError::GlobalAdminHasNoKeys);
        framework()
            .given(vec![created(None), UserEvent::UserDeactivated { user_id: uid() }])
            .when(store(public(1), 1, None))
            .then_expect_error(UserError::Deactivated);
    }

    #[test]
    fn named_keys_are_issued_beside_others_and_revoked_one_at_a_time() {
        let label = ApiKeyLabel { name: "CI".into(), key: "hkid_1".into() };
        let IssuedKey { key_id, key_hash } = key(2);
        TestFramework::<User>::with(())
            .given(vec![created(None), issued(1)])
            .when(UserCommand::IssueApiKey { key: key(2), label: label.clone() })
            .then_expect_events(vec![UserEvent::ApiKeyIssued { user_id: uid(), key_id, key_hash, label: Some(label) }]);
        TestFramework::<User>::with(())
            .given(vec![created(None), issued(1), issued(2)])
            .when(UserCommand::RevokeApiKey { key_id: key(2).key_id })
            .then_expect_events(vec![revoked(2)]);
        TestFramework::<User>::with(())
            .given(vec![created(None), issued(1), issued(2), revoked(2)])
            .when(UserCommand::RevokeApiKey { key_id: key(2).key_id })
            .then_expect_error(UserError::KeyNotFound);
    }
}
