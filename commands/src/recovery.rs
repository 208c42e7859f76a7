//! Trusted-user recovery on the command side: naming trustees, a trustee submitting a restore,
//! and the owner completing it. The material is ciphertext made by the Proxy; the Backend checks
//! who may do what (same org, configured trustee, a pending restore) and never opens it.

use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use harden_domain::crypto;
use harden_domain::recovery::{PendingRestore, Recovery, RecoveryCommand, RecoveryMaterial};
use harden_domain::user::UserCommand;
use harden_domain::values::{KeyBlob, SealProof, SealedPrivateKeys};
use harden_domain::UserId;

use crate::access;
use crate::bus::{Committed, Meta};
use crate::credentials::Principal;
use crate::error::Error;
use crate::service::Harden;

pub const MAX_MATERIAL_BYTES: usize = 16 * 1024;
pub const MAX_HINT_CHARS: usize = 100;

/// Recovery material as the caller sent it.
pub struct Material<'a> {
    pub ecc_b64: &'a str,
    pub kyber_b64: &'a str,
    pub ecc_field: &'static str,
    pub kyber_field: &'static str,
    pub xor_applied: bool,
    pub xor_salt_hint: Option<&'a str>,
}

/// A recovery share's hint to its answer, as stored: trimmed, blank as none.
pub fn parse_hint(raw: Option<&str>) -> Result<Option<String>, Error> {
    match raw.map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) if h.chars().count() > MAX_HINT_CHARS || h.chars().any(char::is_control) => Err(Error::invalid(
            format!("xorSaltHint must be at most {MAX_HINT_CHARS} characters without control characters"),
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

impl Material<'_> {
    fn parse(&self) -> Result<RecoveryMaterial, Error> {
        let hint = parse_hint(self.xor_salt_hint)?;
        Ok(RecoveryMaterial {
            ecc: KeyBlob::parse(self.ecc_field, self.ecc_b64, 1..=MAX_MATERIAL_BYTES)?,
            kyber: KeyBlob::parse(self.kyber_field, self.kyber_b64, 1..=MAX_MATERIAL_BYTES)?,
            xor_applied: self.xor_applied,
            xor_salt_hint: hint,
        })
    }
}

const TRUSTEE_NOT_FOUND: &str = "trustee not found in your org";

pub use harden_domain::recovery_crypto::challenge_context;

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    bytes
}
const SHARE_NOT_FOUND: &str = "recovery share not found";

impl Harden {
    /// The answer to a restore's completion challenge: `HMAC-SHA256(K, owner ‖ restore)` under a
    /// key derived from the master key, so every instance computes it and nobody else can.
    fn challenge_answer(&self, owner: UserId, restore_id: Uuid) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.recovery_challenge_key()).expect("any key length");
        mac.update(owner.as_uuid().as_bytes());
        mac.update(restore_id.as_bytes());
        mac.finalize().into_bytes().into()
    }

    async fn recovery_of(&self, owner: UserId) -> Result<Recovery, Error> {
        self.recoveries.load(&owner.to_string()).await
    }

    /// The caller's recovery state (their trustees and any pending restore).
    pub async fn own_recovery(&self, caller: &Principal) -> Result<Recovery, Error> {
        self.recovery_of(caller.user_id).await
    }

    pub async fn set_trustee(
        &self,
        caller: &Principal,
        trustee: UserId,
        material: Material<'_>,
        meta: Meta,
    ) -> Result<Committed, Error> {
        let org = access::own_org(caller).map_err(|_| Error::forbidden("the global admin has no recovery"))?;
        let share = material.parse()?;
        if trustee == caller.user_id {
            return Err(Error::invalid("you cannot be your own trustee"));
        }
        let user = self.users.load(&trustee.to_string()).await?;
        if user.org_id() != Some(org) || !user.is_active() {
            return Err(Error::not_found(TRUSTEE_NOT_FOUND));
        }
        let command = RecoveryCommand::SetTrustee { org_id: org, owner: caller.user_id, trustee, share };
        self.recoveries.execute(&caller.user_id.to_string(), command, &meta.with_org(org)).await
    }

    pub async fn remove_trustee(&self, caller: &Principal, trustee: UserId, meta: Meta) -> Result<Committed, Error> {
        let org = access::own_org(caller).map_err(|_| Error::forbidden("the global admin has no recovery"))?;
        let command = RecoveryCommand::RemoveTrustee { trustee };
        self.recoveries.execute(&caller.user_id.to_string(), command, &meta.with_org(org)).await
    }

    /// The share `owner` made for the caller, if the caller is their trustee.
    pub async fn share_for_trustee(&self, caller: &Principal, owner: UserId) -> Result<RecoveryMaterial, Error> {
        let recovery = self.recovery_of(owner).await?;
        recovery.share_for(caller.user_id).cloned().ok_or_else(|| Error::not_found(SHARE_NOT_FOUND))
    }

    /// A trustee submits the owner's restored keys; they wait for the owner to complete recovery.
    pub async fn submit_restore(
        &self,
        caller: &Principal,
        owner: UserId,
        material: Material<'_>,
        meta: Meta,
    ) -> Result<Committed, Error> {
        let restore = material.parse()?;
        let recovery = self.recovery_of(owner).await?;
        let org = recovery.org_id().filter(|_| recovery.share_for(caller.user_id).is_some());
        let org = org.ok_or_else(|| Error::not_found(SHARE_NOT_FOUND))?;
        let command = RecoveryCommand::SubmitRestore {
            trustee: caller.user_id,
            restore,
            restore_id: Uuid::new_v4(),
            now: Utc::now(),
        };
        self.recoveries.execute(&owner.to_string(), command, &meta.with_org(org)).await
    }

    /// The caller's pending restore, if one is and it has not expired.
    pub async fn pending_restore(&self, caller: &Principal) -> Result<PendingRestore, Error> {
        let pending = self.recovery_of(caller.user_id).await?.pending().cloned();
        match pending {
            Some(p) if p.expired(Utc::now(), self.restore_ttl()) => {
                Err(harden_domain::recovery::RecoveryError::Expired.into())
            }
            Some(p) => Ok(p),
            None => Err(Error::not_found("no restore is pending for you")),
        }
    }

    /// The caller's pending restore with its completion challenge: a random-looking answer only the
    /// server can compute (from its master key, the owner and the restore), encrypted to the
    /// caller's public keys. Only a holder of the matching private keys (the restored ones, when
    /// the restore is genuine) opens it, and completion must send it back.
    pub async fn restore_challenge(&self, caller: &Principal) -> Result<(PendingRestore, Vec<u8>), Error> {
        let pending = self.pending_restore(caller).await?;
        let user = self.users.load(&caller.user_id.to_string()).await?;
        let public = user.public_keys().ok_or_else(|| Error::not_found("no keys to recover"))?;
        let public = public.crypto_keys().map_err(|_| anyhow::anyhow!("stored public keys do not parse"))?;
        let org = access::own_org(caller)?;
        let answer = self.challenge_answer(caller.user_id, pending.restore_id);
        let context = challenge_context(org, caller.user_id, &pending.restore_id);
        let (key, eseed, wrap_nonce, value_nonce) = (random::<32>(), random::<64>(), random::<12>(), random::<12>());
        let owner = *caller.user_id.as_uuid();
        let sealed = crypto::seal_to(&public, owner, &context, &answer, (&key, &eseed, wrap_nonce, value_nonce));
        Ok((pending, sealed))
    }

    /// The owner completes recovery: their keys, sealed under a new secret by their Proxy, replace
    /// the sealed keys, and the pending restore is done.
    pub async fn complete_recovery(
        &self,
        caller: &Principal,
        sealed: SealedPrivateKeys,
        proof: SealProof,
        challenge_answer: &[u8],
        meta: Meta,
    ) -> Result<Committed, Error> {
        use subtle::ConstantTimeEq;
        let org = access::own_org(caller).map_err(|_| Error::forbidden("the global admin has no recovery"))?;
        let pending = self.pending_restore(caller).await?;
        // Possession of the restored keys: only their holder opened the challenge. An API key
        // alone (an org admin who rotated it) cannot replace a member's keys with keys of its own.
        let expected = self.challenge_answer(caller.user_id, pending.restore_id);
        if pending.restore_id.is_nil() || !bool::from(expected.as_slice().ct_eq(challenge_answer)) {
            return Err(Error::forbidden(
                "the completion does not prove possession of the restored keys (challengeAnswerB64)",
            ));
        }
        let meta = meta.with_org(org);
        let command = UserCommand::RecoverKeys { sealed, verifier: proof.verifier() };
        self.users.execute(&caller.user_id.to_string(), command, &meta).await?;
        let complete = RecoveryCommand::Complete { now: Utc::now(), ttl: self.restore_ttl() };
        self.recoveries.execute(&caller.user_id.to_string(), complete, &meta).await
    }
}
