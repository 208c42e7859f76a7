//! `/v1/keys`: generating a user's key pairs once, and re-sealing them under a new secret.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

use crate::error::{ApiError, ErrorBody};
use crate::proxy::{ProxyState, NEW_USER_SECRET_HEADER, USER_SECRET_HEADER};

pub use harden_client::keys::KeysResponse;

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
    Ok((StatusCode::CREATED, Json(state.vault.generate_keys(api_key, secret).await?)))
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
    Ok(Json(state.vault.rekey(api_key, old, new).await?))
}
