//! `/v1/keys`: generating a user's key pairs once, and re-sealing them under a new secret.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use harden_domain::crypto::{self, PrivateKeys};

use crate::error::{ApiError, ErrorBody};
use crate::proxy::client::Me;
use crate::proxy::ApiCredential;
use crate::proxy::{random, ProxyState, NEW_USER_SECRET_HEADER, USER_SECRET_HEADER};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeysResponse {
    pub public_key_ecc_b64: String,
    pub public_key_kyber_b64: String,
}

/// Seals `keys` under `secret` (a fresh salt, the configured Argon2id parameters) and stores them
/// with the user's public keys on the Backend.
async fn seal_and_store(
    state: &ProxyState,
    api_key: ApiCredential<'_>,
    me: &Me,
    keys: &PrivateKeys,
    secret: &str,
    current_seal_proof: Option<&[u8; 32]>,
) -> Result<KeysResponse, ApiError> {
    let kek = state.unlocker.derive(secret, random(), state.unlocker.params()).await?;
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
    let answer = state.backend.call(Method::POST, &["users", "me", "keys"], None, api_key, Some(&request), &[]).await?;
    if current_seal_proof.is_some() && answer.status == StatusCode::FORBIDDEN {
        // The secret was right when this request unlocked the keys, so the seal changed since:
        // another rekey won the race.
        return Err(ApiError::status(
            StatusCode::CONFLICT,
            "the user secret was changed by another request meanwhile; nothing was changed here",
        ));
    }
    answer.ok()?;
    Ok(body)
}

/// Generates the caller's X25519 and ML-KEM-768 key pairs and stores them, the private keys sealed
/// under `X-User-Secret` (Argon2id). Once only: a user who has keys gets 409, never new keys.
#[utoipa::path(post, path = "/v1/keys/generate", tag = "keys", security(("apiKey" = [], "userSecret" = [])),
    responses((status = 201, body = KeysResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the global admin has no key material"),
        (status = 409, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn generate(
    State(state): State<ProxyState>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<KeysResponse>), ApiError> {
    let api_key = ProxyState::api_key(&headers)?;
    let secret = state.secret(&headers, USER_SECRET_HEADER, "X-User-Secret", true)?;
    let me = state.backend.me(api_key).await?;
    if me.public_key_ecc_b64.is_some() || me.encrypted_private_key_ecc_b64.is_some() {
        return Err(ApiError::status(
            StatusCode::CONFLICT,
            "this user already has keys, which are never replaced; use POST /v1/keys/rekey to change the user secret",
        ));
    }
    let keys = PrivateKeys::from_seeds(random(), random());
    let stored = seal_and_store(&state, api_key, &me, &keys, secret, None).await?;
    if let Some(org) = me.org_id {
        crate::proxy::pins::publish_own(&state, api_key, &keys, org, me.id).await?;
    }
    Ok((StatusCode::CREATED, Json(stored)))
}

/// Re-seals the caller's private keys under `X-New-User-Secret`: afterwards only the new secret
/// unlocks them, and every value stays readable (the key pairs are the same).
#[utoipa::path(post, path = "/v1/keys/rekey", tag = "keys", security(("apiKey" = [], "userSecret" = [])),
    params(("X-New-User-Secret" = String, Header)),
    responses((status = 200, body = KeysResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 429, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn rekey(State(state): State<ProxyState>, headers: HeaderMap) -> Result<Json<KeysResponse>, ApiError> {
    let api_key = ProxyState::api_key(&headers)?;
    let old = state.secret(&headers, USER_SECRET_HEADER, "X-User-Secret", false)?;
    let new = state.secret(&headers, NEW_USER_SECRET_HEADER, "X-New-User-Secret", true)?;
    let me = state.backend.me(api_key).await?;
    let unlocked = state.unlocker.unlock(&me, old).await?;
    let stored = seal_and_store(&state, api_key, &me, &unlocked.keys, new, Some(&unlocked.seal_proof)).await;
    state.unlocker.forget(me.id);
    Ok(Json(stored?))
}
