//! Trusted-user recovery, on the users' side:
//!
//! 1. The owner names a trustee: their private keys, XOR-masked by a key stretched from an answer
//!    only they know (when masked), encrypted to the trustee's verified and pinned keys.
//! 2. The owner forgot their secret; the trustee restores: opens the share with their own keys and
//!    seals the (still masked) keys under a temporary secret they give the owner out of band.
//! 3. The owner completes: temporary secret + answer + new secret, in one step that checks the keys
//!    are really theirs (their public keys match, and they open the Backend's challenge) and
//!    installs them under the new secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use harden_domain::crypto;
use harden_domain::recovery_crypto::{self, MaskHeader};

use crate::backend::Answer;
use crate::credential::ApiCredential;
use crate::error::Error;
use crate::keys::KeysResponse;
use crate::random;
use crate::unlock::NO_KEYS;
use crate::vault::{backend_public_keys, decode, Caller, Vault};

/// Shortest answer accepted (after trimming): each guess costs an Argon2id run, but a trustee can
/// guess offline.
pub const MIN_ANSWER_CHARS: usize = 8;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerShare {
    encrypted_private_key_ecc_share_b64: String,
    encrypted_private_key_kyber_share_b64: String,
    xor_salt_hint: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pending {
    encrypted_private_key_ecc_b64: String,
    encrypted_private_key_kyber_b64: String,
    restore_id: Uuid,
    challenge_b64: String,
}

/// How the owner's keys go to a trustee: masked by an answer (the default, and the only way a
/// trustee alone cannot use them), or not.
pub struct TrusteeTerms<'a> {
    pub trustee: Uuid,
    pub xor_applied: bool,
    pub xor_answer: Option<&'a str>,
    pub xor_salt_hint: Option<&'a str>,
    pub expected_fingerprint: Option<&'a str>,
}

/// The answer a masked designation needs, checked before anything is unlocked.
pub fn check_answer(xor_applied: bool, answer: Option<&str>) -> Result<Option<String>, Error> {
    match (xor_applied, answer.map(str::trim)) {
        (true, Some(a)) if a.chars().count() >= MIN_ANSWER_CHARS => Ok(Some(a.to_owned())),
        (true, _) => Err(Error::invalid(format!(
            "xorAnswer (at least {MIN_ANSWER_CHARS} characters) is required unless xorApplied is false, which would let the trustee alone use your keys"
        ))),
        (false, Some(_)) => Err(Error::invalid("xorAnswer needs xorApplied: true")),
        (false, None) => Ok(None),
    }
}

impl Vault {
    /// Names a trustee and stores the recovery share made for them. Answers the Backend's answer.
    pub async fn set_trustee(&self, caller: &Caller<'_>, terms: TrusteeTerms<'_>) -> Result<Answer, Error> {
        let answer = check_answer(terms.xor_applied, terms.xor_answer)?;
        let trustee = terms.trustee;
        if trustee == caller.me.id {
            return Err(Error::invalid("you cannot be your own trustee"));
        }
        // The private keys go to the trustee's keys only as a verified bundle and the owner's pins vouch for them.
        let trustee_keys =
            crate::pins::verified_recipient(&self.backend, caller, trustee, terms.expected_fingerprint).await?;
        let (header, masked) = match &answer {
            None => (MaskHeader::NONE, None),
            Some(answer) => {
                let header = MaskHeader { masked: true, params: self.unlocker.params(), salt: random() };
                let normalized = recovery_crypto::normalize_answer(answer);
                let mask = self.unlocker.derive(&normalized, header.salt, header.params).await?;
                (header, Some(recovery_crypto::apply_mask(&caller.keys.keys, &mask)))
            }
        };
        let keys = masked.as_ref().unwrap_or(&caller.keys.keys);
        let randomness = [(&random(), &random(), random(), random()), (&random(), &random(), random(), random())];
        let (ecc, kyber) =
            recovery_crypto::make_share(&trustee_keys, trustee, caller.org, caller.me.id, keys, &header, randomness);
        let body = json!({
            "encryptedPrivateKeyEccShareB64": STANDARD.encode(ecc),
            "encryptedPrivateKeyKyberShareB64": STANDARD.encode(kyber),
            "xorApplied": terms.xor_applied,
            "xorSaltHint": terms.xor_salt_hint,
        });
        let path = ["users", "me", "recovery", "trustees", &trustee.to_string()];
        self.backend.call(Method::PUT, &path, None, caller.api_key, Some(&body), &[]).await?.ok()
    }

    /// A trustee restores `owner`'s keys: opens the share meant for them and seals the (still
    /// masked) keys under `temporary`, a secret they give the owner out of band.
    pub async fn restore_for(&self, caller: &Caller<'_>, owner: Uuid, temporary: &str) -> Result<Answer, Error> {
        let share: OwnerShare = self
            .backend
            .call(
                Method::GET,
                &["users", "me", "recovery", "shares", &owner.to_string()],
                None,
                caller.api_key,
                None,
                &[],
            )
            .await?
            .ok()?
            .json()?;
        let (masked, header) = recovery_crypto::open_share(
            &caller.keys.keys,
            caller.me.id,
            caller.org,
            owner,
            &decode("encryptedPrivateKeyEccShareB64", &share.encrypted_private_key_ecc_share_b64)?,
            &decode("encryptedPrivateKeyKyberShareB64", &share.encrypted_private_key_kyber_share_b64)?,
        )
        .map_err(|_| Error::conflict("the recovery share cannot be opened with this user's keys"))?;
        let kek = self.unlocker.derive(temporary, random(), self.unlocker.params()).await?;
        let (ecc, kyber) = recovery_crypto::seal_restore(&kek, owner, &masked, &header, [random(), random()]);
        let body = json!({
            "encryptedPrivateKeyEccB64": STANDARD.encode(ecc),
            "encryptedPrivateKeyKyberB64": STANDARD.encode(kyber),
            "usedXor": header.masked,
            "xorSaltHint": share.xor_salt_hint,
        });
        let path = ["users", "me", "recovery", "restore", &owner.to_string()];
        self.backend.call(Method::POST, &path, None, caller.api_key, Some(&body), &[]).await?.ok()
    }

    /// The owner completes recovery with the trustee's `temporary` secret, the answer (when the
    /// share was masked) and a new secret. The keys must be the owner's own (their public keys
    /// match, and they open the Backend's challenge); they are sealed under `new_secret`, from now
    /// on the only secret that works.
    pub async fn complete_recovery(
        &self,
        api_key: ApiCredential<'_>,
        temporary: &str,
        new_secret: &str,
        xor_answer: Option<&str>,
    ) -> Result<KeysResponse, Error> {
        let me = self.backend.me(api_key).await?;
        let pending: Pending = self
            .backend
            .call(Method::GET, &["users", "me", "recovery", "pending"], None, api_key, None, &[])
            .await?
            .ok()?
            .json()?;
        let (Some(ecc_pub), Some(kyber_pub)) = (&me.public_key_ecc_b64, &me.public_key_kyber_b64) else {
            return Err(Error::conflict(NO_KEYS));
        };
        let expected = backend_public_keys(ecc_pub, kyber_pub)?;
        let ecc = decode("encryptedPrivateKeyEccB64", &pending.encrypted_private_key_ecc_b64)?;
        let kyber = decode("encryptedPrivateKeyKyberB64", &pending.encrypted_private_key_kyber_b64)?;
        let wrong = || Error::unauthorized("the temporary secret or the answer is wrong");
        let (header, params, salt) = recovery_crypto::restore_headers(&ecc).map_err(|_| wrong())?;
        let answer = match (header.masked, xor_answer) {
            (true, None) => return Err(Error::invalid("this recovery needs the answer: xorAnswer")),
            (true, Some(a)) => Some(recovery_crypto::normalize_answer(a)),
            (false, _) => None,
        };
        // Guesses of the temporary secret or the answer count like wrong unlocks.
        self.unlocker.attempt(me.id)?;
        let temporary_kek = self.unlocker.derive(temporary, salt, params).await?;
        let mask = match &answer {
            Some(answer) => Some(self.unlocker.derive(answer, header.salt, header.params).await?),
            None => None,
        };
        let keys = recovery_crypto::open_restore(&temporary_kek, me.id, &ecc, &kyber, mask.as_ref(), &expected)
            .map_err(|_| wrong())?;
        self.unlocker.succeeded(me.id);
        // The restored keys open the Backend's challenge: the proof that they are the owner's.
        let org = me.org_id.ok_or_else(|| Error::status(StatusCode::FORBIDDEN, "the global admin has no recovery"))?;
        let context = recovery_crypto::challenge_context(org.into(), me.id.into(), &pending.restore_id);
        let answer = crypto::open_sealed(&keys, me.id, &context, &decode("challengeB64", &pending.challenge_b64)?)
            .map_err(|_| anyhow::anyhow!("the Backend's recovery challenge does not open with the restored keys"))?;
        let kek = self.unlocker.derive(new_secret, random(), self.unlocker.params()).await?;
        let (sealed_ecc, sealed_kyber) = crypto::seal_private_keys(&kek, me.id, &keys, [random(), random()]);
        let proof = crypto::seal_proof(&kek, me.id);
        let body = json!({
            "encryptedPrivateKeyEccB64": STANDARD.encode(sealed_ecc),
            "encryptedPrivateKeyKyberB64": STANDARD.encode(sealed_kyber),
            "sealProofB64": STANDARD.encode(proof.as_ref()),
            "challengeAnswerB64": STANDARD.encode(answer.as_slice()),
        });
        self.backend
            .call(Method::POST, &["users", "me", "recovery", "complete"], None, api_key, Some(&body), &[])
            .await?
            .ok()?;
        self.unlocker.forget(me.id);
        Ok(KeysResponse {
            public_key_ecc_b64: STANDARD.encode(expected.ecc_bytes()),
            public_key_kyber_b64: STANDARD.encode(expected.kyber_bytes()),
        })
    }
}
