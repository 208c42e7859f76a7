//! `/users/*`: the caller's own record and key material, and the public profiles of their org.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use harden_commands::access;
use harden_commands::service::SealProofs;
use harden_domain::values::{KeyBlob, PublicKeys, SealProof, SealedPrivateKeys};
use harden_domain::UserId;

use crate::dto::{Consistency, MeResponse, PublicProfile, PublishBundleRequest, StoreKeysRequest, StorePinsRequest};
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppJson, AppPath, Caller};
use crate::state::AppState;

const USER_NOT_FOUND: &str = "user not found";

async fn me_record(state: &AppState, user: UserId) -> Result<MeResponse, ApiError> {
    let row = state.directory.user(user).await?.ok_or_else(|| ApiError::not_found(USER_NOT_FOUND))?;
    let mut me = MeResponse::from(&row);
    me.requires_rekey = state.harden.recoveries.load(&user.to_string()).await?.pending().is_some();
    Ok(me)
}

/// The authenticated user's record, with the API key hash blanked and the sealed private keys the
/// Proxy needs.
#[utoipa::path(get, path = "/users/me", tag = "users", security(("apiKey" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<MeResponse>, ApiError> {
    Ok(Json(me_record(&state, caller.user_id).await?))
}

/// Stores the caller's public keys and sealed private keys. Once a user has keys, only a re-seal is
/// accepted (the same public keys with newly sealed private keys, and `currentSealProofB64` proving
/// the current user secret: an API key alone cannot replace them); different public keys are a 409,
/// so keys that protect data are never silently replaced.
#[utoipa::path(post, path = "/users/me/keys", tag = "users", request_body = StoreKeysRequest, security(("apiKey" = [])),
    responses((status = 200, body = MeResponse), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn store_keys(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(req): AppJson<StoreKeysRequest>,
) -> Result<(Consistency, Json<MeResponse>), ApiError> {
    let public_keys =
        PublicKeys::parse(&req.public_key_ecc_b64, &req.public_key_kyber_b64).map_err(harden_commands::Error::from)?;
    let sealed = SealedPrivateKeys::parse(&req.encrypted_private_key_ecc_b64, &req.encrypted_private_key_kyber_b64)
        .map_err(harden_commands::Error::from)?;
    let proofs = SealProofs {
        new_seal: req
            .seal_proof_b64
            .as_deref()
            .map(|b64| SealProof::parse("sealProofB64", b64))
            .transpose()
            .map_err(harden_commands::Error::from)?,
        current_seal: req
            .current_seal_proof_b64
            .as_deref()
            .map(|b64| SealProof::parse("currentSealProofB64", b64))
            .transpose()
            .map_err(harden_commands::Error::from)?,
    };
    let committed = state.harden.store_keys(&caller, public_keys, sealed, proofs, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((Consistency(freshness), Json(me_record(&state, caller.user_id).await?)))
}

/// Publishes the caller's self-signed key bundle. The Backend checks it as any client will: both
/// signatures, this user of this org, and keys equal to the caller's public keys (400 or 409
/// otherwise). Publishing it again (the same keys) replaces it.
#[utoipa::path(put, path = "/users/me/bundle", tag = "users", request_body = PublishBundleRequest, security(("apiKey" = [])),
    responses((status = 200, body = MeResponse), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn publish_bundle(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(req): AppJson<PublishBundleRequest>,
) -> Result<(Consistency, Json<MeResponse>), ApiError> {
    let bundle =
        KeyBlob::parse("keyBundleB64", &req.key_bundle_b64, 1..=16 * 1024).map_err(harden_commands::Error::from)?;
    let committed = state.harden.publish_bundle(&caller, bundle, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((Consistency(freshness), Json(me_record(&state, caller.user_id).await?)))
}

/// Stores the caller's pins: ciphertext sealed under their own keys, which the Backend keeps and
/// returns in `GET /users/me` and cannot read or forge.
#[utoipa::path(put, path = "/users/me/pins", tag = "users", request_body = StorePinsRequest, security(("apiKey" = [])),
    responses((status = 204), JsonBodyErrors, (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn store_pins(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(req): AppJson<StorePinsRequest>,
) -> Result<(StatusCode, Consistency, ()), ApiError> {
    let pins = KeyBlob::parse("pinsB64", &req.pins_b64, 1..=64 * 1024).map_err(harden_commands::Error::from)?;
    let committed = state.harden.store_pins(&caller, pins, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((StatusCode::NO_CONTENT, Consistency(freshness), ()))
}

/// Public profiles of the active users in the caller's org.
#[utoipa::path(get, path = "/users/org", tag = "users", security(("apiKey" = [])),
    responses((status = 200, body = Vec<PublicProfile>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn org_directory(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<PublicProfile>>, ApiError> {
    let org = access::own_org(&caller)?;
    let users = state.directory.active_users(org).await?;
    Ok(Json(users.iter().map(crate::dto::public_profile).collect()))
}

/// One public profile from the caller's org; a user of another org (or none) is 404.
#[utoipa::path(get, path = "/users/org/{userId}", tag = "users", params(("userId" = uuid::Uuid, Path)), security(("apiKey" = [])),
    responses((status = 200, body = PublicProfile), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn org_profile(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(user): AppPath<UserId>,
) -> Result<Json<PublicProfile>, ApiError> {
    let org = access::own_org(&caller)?;
    match state.directory.user(user).await? {
        Some(row) if row.active && row.org_id == Some(*org.as_uuid()) => Ok(Json(crate::dto::public_profile(&row))),
        _ => Err(ApiError::not_found(USER_NOT_FOUND)),
    }
}
