//! Shares of KV records. The Proxy makes the recipient's wrap of the record's data key and the
//! alias encrypted to the recipient; the Backend stores only those (a Share aggregate) and decides
//! who may read what from the event store.
//!
//! The owner's side is under `/kv/{key}/shares`; the recipient's under `/kv/shared` (so `shared` is
//! not usable as a key name on these routes).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use harden_commands::sharing::NewShare;
use harden_commands::Error as CommandError;
use harden_domain::secret::SecretEnvelope;
use harden_domain::UserId;

use crate::backend::kv::{key_name, KvWriteResponse};
use crate::dto::Consistency;
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppJson, AppPath, Caller};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateShareRequest {
    pub recipient_user_id: Uuid,
    /// Only `read`.
    pub permission: String,
    /// The alias, encrypted to the recipient by the Proxy.
    pub encrypted_alias_b64: String,
    /// The record's data key wrapped to the recipient.
    pub encrypted_aes_key_ecc_b64: String,
    pub encrypted_aes_key_kyber_b64: String,
    /// The key epoch of the data key wrapped (from `GET /kv/{key}`).
    pub key_epoch: u64,
    pub expires_utc: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareCreated {
    pub share_id: Uuid,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingShareDto {
    pub share_id: Uuid,
    pub recipient_user_id: Uuid,
    pub permission: String,
    pub expires_utc: Option<DateTime<Utc>>,
    pub created_utc: DateTime<Utc>,
    pub recipient_public_key_ecc_b64: Option<String>,
    pub recipient_public_key_kyber_b64: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboxEntryDto {
    pub share_id: Uuid,
    pub owner_user_id: Uuid,
    /// The shared record's name (the alias's associated data binds it).
    pub key: String,
    pub encrypted_alias_b64: String,
    pub permission: String,
    pub expires_utc: Option<DateTime<Utc>>,
    /// The shared value's current version.
    pub version: i64,
    pub created_utc: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SharedRecordDto {
    pub share_id: Uuid,
    pub owner_user_id: Uuid,
    /// The shared record's name (the value's associated data binds it).
    pub key: String,
    pub version: u64,
    pub key_epoch: u64,
    pub ciphertext_b64: String,
    /// The data key wrapped to the recipient.
    pub encrypted_aes_key_ecc_b64: String,
    pub encrypted_aes_key_kyber_b64: String,
    pub encrypted_alias_b64: String,
    pub permission: &'static str,
    pub expires_utc: Option<DateTime<Utc>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShareRewrap {
    pub share_id: Uuid,
    pub encrypted_aes_key_ecc_b64: String,
    pub encrypted_aes_key_kyber_b64: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateRequest {
    /// The version being replaced (a check-and-set).
    pub expected_version: u64,
    /// The current value under the new data key, and that key wrapped for the owner.
    pub ciphertext_b64: String,
    pub encrypted_aes_key_ecc_b64: String,
    pub encrypted_aes_key_kyber_b64: String,
    /// The new data key wrapped for every remaining recipient.
    pub shares: Vec<ShareRewrap>,
}

/// Shares the caller's record with a user of their org: `permission` `read`, `expiresUtc` in the
/// future or absent; the recipient must have keys. Answers the share id.
#[utoipa::path(post, path = "/kv/{key}/shares", tag = "shares", params(("key" = String, Path)), request_body = CreateShareRequest,
    security(("apiKey" = [])),
    responses((status = 201, body = ShareCreated), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the global admin, who has no records, keys or recovery"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_share(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(key): AppPath<String>,
    AppJson(req): AppJson<CreateShareRequest>,
) -> Result<(StatusCode, Consistency, Json<ShareCreated>), ApiError> {
    let name = key_name(&key)?;
    let new = NewShare {
        recipient: UserId::from_uuid(req.recipient_user_id),
        permission: &req.permission,
        key_epoch: req.key_epoch,
        wrap_ecc_b64: &req.encrypted_aes_key_ecc_b64,
        wrap_kyber_b64: &req.encrypted_aes_key_kyber_b64,
        encrypted_alias_b64: &req.encrypted_alias_b64,
        expires_at: req.expires_utc,
    };
    let (share_id, committed) = state.harden.grant_share(&caller, &name, new, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((StatusCode::CREATED, Consistency(freshness), Json(ShareCreated { share_id })))
}

/// The open shares of the caller's record (its current life), with each recipient's public keys;
/// 404 when the caller has no such record, as for its other routes.
#[utoipa::path(get, path = "/kv/{key}/shares", tag = "shares", params(("key" = String, Path)), security(("apiKey" = [])),
    responses((status = 200, body = Vec<OutgoingShareDto>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_shares(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(key): AppPath<String>,
) -> Result<Json<Vec<OutgoingShareDto>>, ApiError> {
    let name = key_name(&key)?;
    if state.kv.current(caller.user_id, name.as_str()).await?.is_none() {
        return Err(ApiError::not_found("key not found"));
    }
    let shares = state.shares.outgoing(caller.user_id, name.as_str()).await?;
    Ok(Json(
        shares
            .into_iter()
            .map(|s| OutgoingShareDto {
                share_id: s.share_id,
                recipient_user_id: s.recipient_id,
                permission: s.permission,
                expires_utc: s.expires_at,
                created_utc: s.created_at,
                recipient_public_key_ecc_b64: s.public_key_ecc,
                recipient_public_key_kyber_b64: s.public_key_kyber,
            })
            .collect(),
    ))
}

/// Revokes a share of the caller's record: the recipient is refused from this moment.
#[utoipa::path(delete, path = "/kv/{key}/shares/{shareId}", tag = "shares", params(("key" = String, Path), ("shareId" = Uuid, Path)),
    security(("apiKey" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_share(
    State(state): State<AppState>,
    caller: Caller,
    AppPath((key, share_id)): AppPath<(String, Uuid)>,
) -> Result<(StatusCode, Consistency, ()), ApiError> {
    let name = key_name(&key)?;
    let committed = state.harden.revoke_share(&caller, &name, share_id, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((StatusCode::NO_CONTENT, Consistency(freshness), ()))
}

/// Rotates the record's data key (after a share ended): the current value under a new key, that
/// key wrapped for the owner and for every remaining recipient. A check-and-set on `expectedVersion`.
#[utoipa::path(post, path = "/kv/{key}/rotate", tag = "shares", params(("key" = String, Path)), request_body = RotateRequest,
    security(("apiKey" = [])),
    responses((status = 200, body = KvWriteResponse), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the global admin, who has no records, keys or recovery"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(key): AppPath<String>,
    AppJson(req): AppJson<RotateRequest>,
) -> Result<(Consistency, Json<KvWriteResponse>), ApiError> {
    let name = key_name(&key)?;
    let envelope =
        SecretEnvelope::parse(&req.ciphertext_b64, &req.encrypted_aes_key_ecc_b64, &req.encrypted_aes_key_kyber_b64)
            .map_err(CommandError::from)?;
    let rewraps = req
        .shares
        .iter()
        .map(|s| (s.share_id, s.encrypted_aes_key_ecc_b64.as_str(), s.encrypted_aes_key_kyber_b64.as_str()))
        .collect();
    let written =
        state.harden.rotate_secret(&caller, &name, req.expected_version, envelope, rewraps, caller.meta()).await?;
    let freshness = state.read_models.wait_for(written.committed.position).await;
    Ok((
        Consistency(freshness),
        Json(KvWriteResponse {
            key,
            version: written.version,
            updated_utc: written.committed.recorded_at.unwrap_or_else(Utc::now),
        }),
    ))
}

/// The caller's inbox: open shares of live records (never revoked, removed, ended or expired ones).
#[utoipa::path(get, path = "/kv/shared", tag = "shares", security(("apiKey" = [])),
    responses((status = 200, body = Vec<InboxEntryDto>), (status = 401, body = ErrorBody)))]
pub async fn inbox(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<InboxEntryDto>>, ApiError> {
    let entries = state.shares.inbox(caller.user_id).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| InboxEntryDto {
                share_id: e.share_id,
                owner_user_id: e.owner_id,
                key: e.key_name,
                encrypted_alias_b64: e.encrypted_alias,
                permission: e.permission,
                expires_utc: e.expires_at,
                version: e.version,
                created_utc: e.created_at,
            })
            .collect(),
    ))
}

/// Opens a share: the record's current version and the recipient's wrap of its data key.
#[utoipa::path(get, path = "/kv/shared/{shareId}", tag = "shares", params(("shareId" = Uuid, Path)), security(("apiKey" = [])),
    responses((status = 200, body = SharedRecordDto), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn read_shared(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(share_id): AppPath<Uuid>,
) -> Result<Json<SharedRecordDto>, ApiError> {
    let shared = state.harden.read_share(&caller, share_id).await?;
    Ok(Json(SharedRecordDto {
        share_id: shared.share_id,
        owner_user_id: *shared.owner.as_uuid(),
        key: shared.key_name.as_str().to_owned(),
        version: shared.version,
        key_epoch: shared.key_epoch,
        ciphertext_b64: shared.envelope.ciphertext.as_str().to_owned(),
        encrypted_aes_key_ecc_b64: shared.wrap.ecc.as_str().to_owned(),
        encrypted_aes_key_kyber_b64: shared.wrap.kyber.as_str().to_owned(),
        encrypted_alias_b64: shared.encrypted_alias.as_str().to_owned(),
        permission: "read",
        expires_utc: shared.expires_at,
    }))
}

/// The recipient gives up a share.
#[utoipa::path(delete, path = "/kv/shared/{shareId}", tag = "shares", params(("shareId" = Uuid, Path)), security(("apiKey" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_shared(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(share_id): AppPath<Uuid>,
) -> Result<(StatusCode, Consistency, ()), ApiError> {
    let committed = state.harden.remove_share(&caller, share_id, false, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((StatusCode::NO_CONTENT, Consistency(freshness), ()))
}
