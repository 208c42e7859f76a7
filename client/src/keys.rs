//! A user's key pairs: generated once on the user's side, sealed under the user secret (Argon2id),
//! and re-sealed under a new secret; the Backend stores the public keys and the sealed blobs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use harden_domain::crypto::{self, PrivateKeys};

use crate::backend::Me;
use crate::credential::ApiCredential;
use crate::error::Error;
use crate::random;
use crate::vault::Vault;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KeysResponse {
    pub public_key_ecc_b64: String,
    pub public_key_kyber_b64: String,
}

/// Seals `keys` under `secret` (a fresh salt, the configured Argon2id parameters) and stores them
/// with the user's public keys on the Backend.
async fn seal_and_store(
    vault: &Vault,
    api_key: ApiCredential<'_>,
    me: &Me,
    keys: &PrivateKeys,
    secret: &str,
    current_seal_proof: Option<&[u8; 32]>,
) -> Result<KeysResponse, Error> {
    let kek = vault.unlocker.derive(secret, random(), vault.unlocker.params()).await?;
    let (ecc, kyber) = crypto::seal_private_keys(&kek, me.id, keys, [random(), random()]);
    let proof = crypto::seal_proof(&kek, me.id);
    let public = keys.public_keys();
    let body = KeysResponse {
        public_key_ecc_b64: STANDARD.encode(public.ecc_bytes()),
        public_key_kyber_b64: STANDARD.encode(public.kyber_bytes()),
    };
    let request = json!({
        "publicKeyEccB64": body.public_key_ecc_b64,
        "publicKeyKyberB64": body.public_key_kyber_b64,
        "encryptedPrivateKeyEccB64": STANDARD.encode(ecc),
        "encryptedPrivateKeyKyberB64": STANDARD.encode(kyber),
        "sealProofB64": STANDARD.encode(proof.as_ref()),
        "currentSealProofB64": current_seal_proof.map(|p| STANDARD.encode(p)),
    });
    let answer = vault.backend.call(Method::POST, &["users", "me", "keys"], None, api_key, Some(&request), &[]).await?;
    if current_seal_proof.is_some() && answer.status == StatusCode::FORBIDDEN {
        // The secret was right when this request unlocked the keys, so the seal changed since:
        // another rekey won the race.
        return Err(Error::status(
            StatusCode::CONFLICT,
            "the user secret was changed by another request meanwhile; nothing was changed here",
        ));
    }
    answer.ok()?;
    Ok(body)
}

impl Vault {
    /// Generates the caller's X25519 and ML-KEM-768 key pairs, seals the private keys under
    /// `secret` and stores them with the public keys and the signed bundle. Once only: a user who
    /// has keys gets 409, never new keys.
    pub async fn generate_keys(&self, api_key: ApiCredential<'_>, secret: &str) -> Result<KeysResponse, Error> {
        let me = self.backend.me(api_key).await?;
        if me.public_key_ecc_b64.is_some() || me.encrypted_private_key_ecc_b64.is_some() {
            return Err(Error::conflict(
                "this user already has keys, which are never replaced; use POST /v1/keys/rekey to change the user secret",
            ));
        }
        let keys = PrivateKeys::from_seeds(random(), random());
        let stored = seal_and_store(self, api_key, &me, &keys, secret, None).await?;
        if let Some(org) = me.org_id {
            crate::pins::publish_own(&self.backend, api_key, &keys, org, me.id).await?;
        }
        Ok(stored)
    }

    /// Re-seals the caller's private keys under `new`: afterwards only the new secret unlocks
    /// them, and every value stays readable (the key pairs are the same).
    pub async fn rekey(&self, api_key: ApiCredential<'_>, old: &str, new: &str) -> Result<KeysResponse, Error> {
        let me = self.backend.me(api_key).await?;
        let unlocked = self.unlocker.unlock(&me, old).await?;
        let stored = seal_and_store(self, api_key, &me, &unlocked.keys, new, Some(&unlocked.seal_proof)).await;
        self.unlocker.forget(me.id);
        stored
    }
}
