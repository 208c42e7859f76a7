//! `/users/me/recovery/*`: trusted-user recovery. The owner stores a recovery share per trustee
//! (made by their Proxy); a trustee lists the owners who trust them, reads the share meant for
//! them, and submits restored keys; the owner completes recovery through their Proxy.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use harden_commands::recovery::Material;
use harden_commands::Error as CommandError;
use harden_domain::recovery::RecoveryMaterial;
use harden_domain::values::{SealProof, SealedPrivateKeys};
use harden_domain::UserId;

use crate::dto::Consistency;
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppJson, AppPath, Caller};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrusteeShareRequest {
    pub encrypted_private_key_ecc_share_b64: String,
    pub encrypted_private_key_kyber_share_b64: String,
    #[serde(default)]
    pub xor_applied: bool,
    pub xor_salt_hint: Option<String>,
}

/// A stored recovery share, as its owner and its trustee see it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareBlobs {
    pub encrypted_private_key_ecc_share_b64: String,
    pub encrypted_private_key_kyber_share_b64: String,
    pub xor_applied: bool,
    pub xor_salt_hint: Option<String>,
}

impl From<&RecoveryMaterial> for ShareBlobs {
    fn from(m: &RecoveryMaterial) -> Self {
        ShareBlobs {
            encrypted_private_key_ecc_share_b64: m.ecc.as_str().to_owned(),
            encrypted_private_key_kyber_share_b64: m.kyber.as_str().to_owned(),
            xor_applied: m.xor_applied,
            xor_salt_hint: m.xor_salt_hint.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrusteeShare {
    pub trustee_user_id: Uuid,
    #[serde(flatten)]
    pub share: ShareBlobs,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnerShare {
    pub owner_user_id: Uuid,
    #[serde(flatten)]
    pub share: ShareBlobs,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustingOwner {
    pub owner_user_id: Uuid,
    pub xor_applied: bool,
    pub xor_salt_hint: Option<String>,
    pub updated_utc: DateTime<Utc>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreRequest {
    pub encrypted_private_key_ecc_b64: String,
    pub encrypted_private_key_kyber_b64: String,
    #[serde(default)]
    pub used_xor: bool,
    pub xor_salt_hint: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreResponse {
    pub requires_rekey: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingRestoreDto {
    pub trustee_user_id: Uuid,
    pub encrypted_private_key_ecc_b64: String,
    pub encrypted_private_key_kyber_b64: String,
    pub used_xor: bool,
    pub xor_salt_hint: Option<String>,
    /// Names this restore (the challenge's context).
    pub restore_id: Uuid,
    /// When the trustee submitted it; it expires `HARDEN_RECOVERY_RESTORE_TTL_SECS` later.
    pub submitted_utc: Option<chrono::DateTime<chrono::Utc>>,
    /// The completion challenge, encrypted to the caller's public keys (a message sealed to them,
    /// context `recovery-challenge`, the restore id as its name): completion sends back what it opens to.
    pub challenge_b64: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompleteRecoveryRequest {
    pub encrypted_private_key_ecc_b64: String,
    pub encrypted_private_key_kyber_b64: String,
    pub seal_proof_b64: String,
    /// The pending restore's challenge, opened with the restored private keys (32 bytes, base64).
    pub challenge_answer_b64: String,
}

fn trustee_share(trustee: UserId, m: &RecoveryMaterial) -> TrusteeShare {
    TrusteeShare { trustee_user_id: *trustee.as_uuid(), share: m.into() }
}

/// Creates or replaces the recovery share for a trustee: a user of the caller's org, not the caller.
#[utoipa::path(put, path = "/users/me/recovery/trustees/{trusteeUserId}", tag = "recovery", params(("trusteeUserId" = Uuid, Path)),
    request_body = TrusteeShareRequest, security(("apiKey" = [])),
    responses((status = 200, body = TrusteeShare), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the global admin, who has no records, keys or recovery"),
        (status = 404, body = ErrorBody)))]
pub async fn set_trustee(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(trustee): AppPath<Uuid>,
    AppJson(req): AppJson<TrusteeShareRequest>,
) -> Result<(Consistency, Json<TrusteeShare>), ApiError> {
    let material = Material {
        ecc_b64: &req.encrypted_private_key_ecc_share_b64,
        kyber_b64: &req.encrypted_private_key_kyber_share_b64,
        ecc_field: "encryptedPrivateKeyEccShareB64",
        kyber_field: "encryptedPrivateKeyKyberShareB64",
        xor_applied: req.xor_applied,
        xor_salt_hint: req.xor_salt_hint.as_deref(),
    };
    let trustee = UserId::from_uuid(trustee);
    let committed = state.harden.set_trustee(&caller, trustee, material, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    let recovery = state.harden.own_recovery(&caller).await?;
    let share = recovery.share_for(trustee).ok_or_else(|| ApiError::not_found("recovery share not found"))?;
    Ok((Consistency(freshness), Json(trustee_share(trustee, share))))
}

/// The caller's trustees.
#[utoipa::path(get, path = "/users/me/recovery/trustees", tag = "recovery", security(("apiKey" = [])),
    responses((status = 200, body = Vec<TrusteeShare>), (status = 401, body = ErrorBody)))]
pub async fn list_trustees(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<TrusteeShare>>, ApiError> {
    let recovery = state.harden.own_recovery(&caller).await?;
    Ok(Json(recovery.trustees().iter().map(|(t, m)| trustee_share(*t, m)).collect()))
}

/// One of the caller's trustees and the share made for them.
#[utoipa::path(get, path = "/users/me/recovery/trustees/{trusteeUserId}", tag = "recovery", params(("trusteeUserId" = Uuid, Path)),
    security(("apiKey" = [])),
    responses((status = 200, body = TrusteeShare), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_trustee(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(trustee): AppPath<Uuid>,
) -> Result<Json<TrusteeShare>, ApiError> {
    let trustee = UserId::from_uuid(trustee);
    let recovery = state.harden.own_recovery(&caller).await?;
    let share = recovery.share_for(trustee).ok_or_else(|| ApiError::not_found("recovery share not found"))?;
    Ok(Json(trustee_share(trustee, share)))
}

/// Removes a trustee (and voids a restore they submitted).
#[utoipa::path(delete, path = "/users/me/recovery/trustees/{trusteeUserId}", tag = "recovery", params(("trusteeUserId" = Uuid, Path)),
    security(("apiKey" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the global admin, who has no records, keys or recovery"),
        (status = 404, body = ErrorBody)))]
pub async fn remove_trustee(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(trustee): AppPath<Uuid>,
) -> Result<(StatusCode, Consistency, ()), ApiError> {
    let committed = state.harden.remove_trustee(&caller, UserId::from_uuid(trustee), caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((StatusCode::NO_CONTENT, Consistency(freshness), ()))
}

/// The owners who made the caller a trustee.
#[utoipa::path(get, path = "/users/me/recovery/shares", tag = "recovery", security(("apiKey" = [])),
    responses((status = 200, body = Vec<TrustingOwner>), (status = 401, body = ErrorBody)))]
pub async fn list_owners(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<TrustingOwner>>, ApiError> {
    let owners = state.recovery.owners_of(caller.user_id).await?;
    Ok(Json(
        owners
            .into_iter()
            .map(|o| TrustingOwner {
                owner_user_id: o.owner_id,
                xor_applied: o.xor_applied,
                xor_salt_hint: o.xor_salt_hint,
                updated_utc: o.updated_at,
            })
            .collect(),
    ))
}

/// The share an owner made for the caller as trustee (404 if the caller is not their trustee).
#[utoipa::path(get, path = "/users/me/recovery/shares/{ownerUserId}", tag = "recovery", params(("ownerUserId" = Uuid, Path)),
    security(("apiKey" = [])),
    responses((status = 200, body = OwnerShare), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn owner_share(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(owner): AppPath<Uuid>,
) -> Result<Json<OwnerShare>, ApiError> {
    let m = state.harden.share_for_trustee(&caller, UserId::from_uuid(owner)).await?;
    Ok(Json(OwnerShare { owner_user_id: owner, share: (&m).into() }))
}

/// A trustee submits the owner's restored keys (sealed under a temporary secret). They never
/// replace the owner's keys: they wait, as a pending recovery, for the owner to complete it.
#[utoipa::path(post, path = "/users/me/recovery/restore/{ownerUserId}", tag = "recovery", params(("ownerUserId" = Uuid, Path)),
    request_body = RestoreRequest, security(("apiKey" = [])),
    responses((status = 200, body = RestoreResponse), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(owner): AppPath<Uuid>,
    AppJson(req): AppJson<RestoreRequest>,
) -> Result<(Consistency, Json<RestoreResponse>), ApiError> {
    let material = Material {
        ecc_b64: &req.encrypted_private_key_ecc_b64,
        kyber_b64: &req.encrypted_private_key_kyber_b64,
        ecc_field: "encryptedPrivateKeyEccB64",
        kyber_field: "encryptedPrivateKeyKyberB64",
        xor_applied: req.used_xor,
        xor_salt_hint: req.xor_salt_hint.as_deref(),
    };
    let committed = state.harden.submit_restore(&caller, UserId::from_uuid(owner), material, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((Consistency(freshness), Json(RestoreResponse { requires_rekey: true })))
}

/// The restore waiting for the caller (what their Proxy completes recovery from).
#[utoipa::path(get, path = "/users/me/recovery/pending", tag = "recovery", security(("apiKey" = [])),
    responses((status = 200, body = PendingRestoreDto), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn pending(State(state): State<AppState>, caller: Caller) -> Result<Json<PendingRestoreDto>, ApiError> {
    let (p, challenge) = state.harden.restore_challenge(&caller).await?;
    Ok(Json(PendingRestoreDto {
        trustee_user_id: *p.trustee.as_uuid(),
        encrypted_private_key_ecc_b64: p.material.ecc.as_str().to_owned(),
        encrypted_private_key_kyber_b64: p.material.kyber.as_str().to_owned(),
        used_xor: p.material.xor_applied,
        xor_salt_hint: p.material.xor_salt_hint,
        restore_id: p.restore_id,
        submitted_utc: p.submitted_at,
        challenge_b64: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, challenge),
    }))
}

/// Completes recovery: the caller's keys, sealed under their new secret by the Proxy, replace the
/// sealed keys (allowed only while a trustee's restore is pending).
#[utoipa::path(post, path = "/users/me/recovery/complete", tag = "recovery", request_body = CompleteRecoveryRequest,
    security(("apiKey" = [])),
    responses((status = 204), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the global admin, who has no records, keys or recovery"),
        (status = 404, body = ErrorBody)))]
pub async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(req): AppJson<CompleteRecoveryRequest>,
) -> Result<(StatusCode, Consistency, ()), ApiError> {
    let sealed = SealedPrivateKeys::parse(&req.encrypted_private_key_ecc_b64, &req.encrypted_private_key_kyber_b64)
        .map_err(CommandError::from)?;
    let proof = SealProof::parse("sealProofB64", &req.seal_proof_b64).map_err(CommandError::from)?;
    let answer = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &req.challenge_answer_b64)
        .ok()
        .filter(|a| a.len() == 32)
        .ok_or_else(|| CommandError::invalid("challengeAnswerB64 must be 32 bytes, base64"))?;
    let committed = state.harden.complete_recovery(&caller, sealed, proof, &answer, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((StatusCode::NO_CONTENT, Consistency(freshness), ()))
}
