//! `/v1/kv/{key}/shares` and `/v1/kv/shared`: sharing a value with a user of the same org.
//!
//! The owner's Proxy unwraps the record's data key and wraps it again to the recipient's public
//! keys; the alias is encrypted to the recipient. The recipient's Proxy opens the share with the
//! recipient's keys. When a share ends, the record's data key is rotated: at once when the owner
//! revokes it (this Proxy has the owner's secret), on the owner's next write when the recipient
//! removed it.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use harden_domain::crypto::{self, DataKey, RecordContext};
use harden_domain::secret::KeyName;

use crate::backend::shares::{OutgoingShareDto, ShareCreated};
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppJson, AppPath};
use crate::proxy::client::Answer;
use crate::proxy::kv::{decode, open_value, unlocked, unwrap_key, Caller, Stored, UnlockErrors, Writer};
use crate::proxy::{random, ProxyState};

const ALIAS_KIND: &str = "share-alias";

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShareRequest {
    pub recipient_user_id: Uuid,
    /// Only `read`.
    pub permission: String,
    /// What the recipient sees the value as; encrypted to them.
    #[serde(default)]
    pub alias: String,
    pub expires_utc: Option<DateTime<Utc>>,
    /// The recipient's key fingerprint as you compared it with them: required to accept keys that
    /// changed since you last encrypted to them, or keys published without a signed bundle.
    #[serde(default)]
    pub expected_fingerprint: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboxItem {
    pub share_id: Uuid,
    pub owner_user_id: Uuid,
    /// `null` when the alias cannot be opened with the recipient's keys.
    pub alias: Option<String>,
    pub permission: String,
    pub expires_utc: Option<DateTime<Utc>>,
    pub version: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SharedValue {
    pub share_id: Uuid,
    pub owner_user_id: Uuid,
    pub alias: String,
    pub value_b64: String,
    pub version: u64,
    pub expires_utc: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutgoingShare {
    share_id: Uuid,
    recipient_user_id: Uuid,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InboxEntry {
    share_id: Uuid,
    owner_user_id: Uuid,
    key: String,
    encrypted_alias_b64: String,
    permission: String,
    expires_utc: Option<DateTime<Utc>>,
    version: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SharedRecord {
    share_id: Uuid,
    owner_user_id: Uuid,
    key: String,
    version: u64,
    #[serde(default)]
    key_epoch: u64,
    ciphertext_b64: String,
    encrypted_aes_key_ecc_b64: String,
    encrypted_aes_key_kyber_b64: String,
    encrypted_alias_b64: String,
    expires_utc: Option<DateTime<Utc>>,
}

/// A grant's permission and expiry, checked before the Proxy unlocks or asks the Backend anything.
pub(crate) fn check_terms(permission: &str, expires_utc: Option<DateTime<Utc>>) -> Result<(), ApiError> {
    harden_domain::share::check_terms(permission, expires_utc, Utc::now())
        .map_err(|e| ApiError::status(StatusCode::BAD_REQUEST, e.to_string()))
}

fn key_name(raw: &str) -> Result<KeyName, ApiError> {
    KeyName::parse(raw).map_err(|e| ApiError::status(StatusCode::BAD_REQUEST, e.0))
}

pub(crate) fn alias_context<'n>(org: Uuid, owner: Uuid, name: &'n [u8]) -> RecordContext<'n> {
    RecordContext { kind: ALIAS_KIND, org, owner, name }
}

pub(crate) fn json_response(answer: Answer) -> Response {
    (answer.status, [(axum::http::header::CONTENT_TYPE, "application/json")], answer.body).into_response()
}

/// The record's current version and data key, for its owner.
async fn current(state: &ProxyState, caller: &Caller<'_>, name: &KeyName) -> Result<(Stored, DataKey), ApiError> {
    let stored: Stored =
        state.backend.call(Method::GET, &["kv", name.as_str()], None, caller.api_key, None, &[]).await?.ok()?.json()?;
    let key = unwrap_key(caller, &caller.context(name), &stored)?;
    Ok((stored, key))
}

/// Shares the caller's value with a user of their org: the data key re-wrapped to the recipient,
/// the alias encrypted to them. Answers the share id.
#[utoipa::path(post, path = "/v1/kv/{key}/shares", tag = "shares", params(("key" = String, Path)), request_body = ShareRequest,
    security(("apiKey" = [], "userSecret" = [])),
    responses((status = 201, body = ShareCreated), UnlockErrors, JsonBodyErrors, (status = 404, body = ErrorBody)))]
pub async fn create_share(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath(key): AppPath<String>,
    AppJson(req): AppJson<ShareRequest>,
) -> Result<Response, ApiError> {
    let name = key_name(&key)?;
    if req.alias.len() > 256 {
        return Err(ApiError::status(StatusCode::BAD_REQUEST, "alias must be at most 256 bytes"));
    }
    check_terms(&req.permission, req.expires_utc)?;
    let caller = unlocked(&state, &headers).await?;
    caller.own_public_keys()?;
    if req.recipient_user_id == caller.me.id {
        return Err(ApiError::status(StatusCode::BAD_REQUEST, "you cannot share a record with yourself"));
    }
    let (stored, data_key) = current(&state, &caller, &name).await?;
    let recipient = crate::proxy::pins::verified_recipient(
        &state,
        &caller,
        req.recipient_user_id,
        req.expected_fingerprint.as_deref(),
    )
    .await?;
    let context = caller.context(&name);
    let (ecc, kyber) =
        crypto::wrap_data_key(&recipient, req.recipient_user_id, &context, &data_key, &random(), random());
    let alias = crypto::seal_to(
        &recipient,
        req.recipient_user_id,
        &alias_context(caller.org, caller.me.id, name.as_str().as_bytes()),
        req.alias.as_bytes(),
        (&random(), &random(), random(), random()),
    );
    let body = json!({
        "recipientUserId": req.recipient_user_id,
        "permission": req.permission,
        "encryptedAliasB64": STANDARD.encode(alias),
        "encryptedAesKeyEccB64": STANDARD.encode(ecc),
        "encryptedAesKeyKyberB64": STANDARD.encode(kyber),
        "keyEpoch": stored.key_epoch,
        "expiresUtc": req.expires_utc,
    });
    let answer = state
        .backend
        .call(Method::POST, &["kv", name.as_str(), "shares"], None, caller.api_key, Some(&body), &[])
        .await?;
    Ok(json_response(answer.ok()?))
}

/// The open shares of the caller's value (recipient, permission, expiry).
#[utoipa::path(get, path = "/v1/kv/{key}/shares", tag = "shares", params(("key" = String, Path)), security(("apiKey" = [])),
    responses((status = 200, body = Vec<OutgoingShareDto>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "the caller has no such record"),
        (status = 502, body = ErrorBody)))]
pub async fn list_shares(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath(key): AppPath<String>,
) -> Result<Response, ApiError> {
    let name = key_name(&key)?;
    let api_key = ProxyState::api_key(&headers)?;
    let answer = state.backend.call(Method::GET, &["kv", name.as_str(), "shares"], None, api_key, None, &[]).await?;
    Ok(json_response(answer.ok()?))
}

/// Writes `value` as the record's next version under a new data key (its epoch that version),
/// wrapped for the owner (owner-sealed when the owner's keys are unlocked) and for every open
/// share's recipient: a check-and-set on `expected_version`.
pub(crate) async fn rotate(
    state: &ProxyState,
    writer: &Writer<'_>,
    name: &KeyName,
    expected_version: u64,
    value: &[u8],
) -> Result<Answer, ApiError> {
    let context = writer.context(name);
    let key = DataKey::from_bytes(random());
    let at = crypto::VersionAt { version: expected_version + 1, epoch: expected_version + 1 };
    let ciphertext = crypto::encrypt_value_at(&key, random(), &context, at, value);
    let (ecc, kyber) = writer.wrap_for_owner(name, at.epoch, &key)?;
    let remaining: Vec<OutgoingShare> = state
        .backend
        .call(Method::GET, &["kv", name.as_str(), "shares"], None, writer.api_key(), None, &[])
        .await?
        .ok()?
        .json()?;
    let mut shares = Vec::with_capacity(remaining.len());
    for share in remaining {
        // Only to keys a verified bundle vouches for: checked against the owner's pins when the
        // owner's keys are unlocked.
        let recipient = match writer {
            Writer::Owner(caller) => {
                crate::proxy::pins::verified_recipient(state, caller, share.recipient_user_id, None).await?
            }
            Writer::KeyOnly { api_key, org, .. } => {
                crate::proxy::pins::bundle_keys(state, *api_key, *org, share.recipient_user_id).await?
            }
        };
        let (ecc, kyber) =
            crypto::wrap_data_key(&recipient, share.recipient_user_id, &context, &key, &random(), random());
        shares.push(json!({
            "shareId": share.share_id,
            "encryptedAesKeyEccB64": STANDARD.encode(ecc),
            "encryptedAesKeyKyberB64": STANDARD.encode(kyber),
        }));
    }
    let body = json!({
        "expectedVersion": expected_version,
        "ciphertextB64": STANDARD.encode(ciphertext),
        "encryptedAesKeyEccB64": STANDARD.encode(ecc),
        "encryptedAesKeyKyberB64": STANDARD.encode(kyber),
        "shares": shares,
    });
    state
        .backend
        .call(Method::POST, &["kv", name.as_str(), "rotate"], None, writer.api_key(), Some(&body), &[])
        .await?
        .ok()
}

/// Revokes a share: the recipient is refused at once (this needs only the API key), and with
/// `X-User-Secret` the value's data key is rotated (the current value re-encrypted under a new key,
/// wrapped for the owner and the remaining recipients); without it, the next write rotates.
#[utoipa::path(delete, path = "/v1/kv/{key}/shares/{shareId}", tag = "shares", params(("key" = String, Path), ("shareId" = Uuid, Path)),
    security(("apiKey" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn revoke_share(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath((key, share_id)): AppPath<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let name = key_name(&key)?;
    let api_key = ProxyState::api_key(&headers)?;
    let share = share_id.to_string();
    // The revocation comes first and needs only the API key: a forgotten or throttled secret
    // must never keep a recipient in.
    state
        .backend
        .call(Method::DELETE, &["kv", name.as_str(), "shares", &share], None, api_key, None, &[])
        .await?
        .ok()?;
    // Then the rotation, with the owner's secret. If it is missing or fails (a concurrent write),
    // the record stays marked and the owner's next write rotates it.
    let rotated = async {
        let caller = unlocked(&state, &headers).await?;
        let (stored, key) = current(&state, &caller, &name).await?;
        let (value, _) =
            open_value(&key, &caller.context(&name), stored.version as u64, stored.key_epoch, &stored.ciphertext_b64)?;
        rotate(&state, &Writer::Owner(caller), &name, stored.version as u64, &value).await
    }
    .await;
    if let Err(e) = rotated {
        tracing::warn!(error = ?e, "rotating a record's key after a revocation failed; the next write rotates it");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's inbox: shares of other users' values, with their aliases decrypted.
#[utoipa::path(get, path = "/v1/kv/shared", tag = "shares", security(("apiKey" = [], "userSecret" = [])),
    responses((status = 200, body = Vec<InboxItem>), UnlockErrors))]
pub async fn inbox(State(state): State<ProxyState>, headers: HeaderMap) -> Result<Json<Vec<InboxItem>>, ApiError> {
    let caller = unlocked(&state, &headers).await?;
    let entries: Vec<InboxEntry> =
        state.backend.call(Method::GET, &["kv", "shared"], None, caller.api_key, None, &[]).await?.ok()?.json()?;
    let mut items = Vec::with_capacity(entries.len());
    for entry in entries {
        // An alias that does not open (made by anyone but a Proxy) hides only itself, not the inbox.
        let alias = open_alias(&caller, entry.owner_user_id, &entry.key, &entry.encrypted_alias_b64).ok();
        items.push(InboxItem {
            share_id: entry.share_id,
            owner_user_id: entry.owner_user_id,
            alias,
            permission: entry.permission,
            expires_utc: entry.expires_utc,
            version: entry.version,
        });
    }
    Ok(Json(items))
}

pub(crate) fn open_alias(caller: &Caller<'_>, owner: Uuid, key: &str, blob_b64: &str) -> Result<String, ApiError> {
    let blob = decode("encryptedAliasB64", blob_b64)?;
    let alias =
        crypto::open_sealed(&caller.keys.keys, caller.me.id, &alias_context(caller.org, owner, key.as_bytes()), &blob)
            .map_err(|_| ApiError::status(StatusCode::CONFLICT, "the share cannot be opened with this user's keys"))?;
    Ok(String::from_utf8_lossy(&alias).into_owned())
}

/// Opens a share: the value, decrypted with the recipient's keys.
#[utoipa::path(get, path = "/v1/kv/shared/{shareId}", tag = "shares", params(("shareId" = Uuid, Path)),
    security(("apiKey" = [], "userSecret" = [])),
    responses((status = 200, body = SharedValue), UnlockErrors, (status = 404, body = ErrorBody)))]
pub async fn read_shared(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath(share_id): AppPath<Uuid>,
) -> Result<Json<SharedValue>, ApiError> {
    let caller = unlocked(&state, &headers).await?;
    let record: SharedRecord = state
        .backend
        .call(Method::GET, &["kv", "shared", &share_id.to_string()], None, caller.api_key, None, &[])
        .await?
        .ok()?
        .json()?;
    let context =
        RecordContext { kind: "kv", org: caller.org, owner: record.owner_user_id, name: record.key.as_bytes() };
    let cannot_open = || ApiError::status(StatusCode::CONFLICT, "the share cannot be opened with this user's keys");
    let key = crypto::unwrap_data_key(
        &caller.keys.keys,
        caller.me.id,
        &context,
        &decode("encryptedAesKeyEccB64", &record.encrypted_aes_key_ecc_b64)?,
        &decode("encryptedAesKeyKyberB64", &record.encrypted_aes_key_kyber_b64)?,
    )
    .map_err(|_| cannot_open())?;
    let (value, _) = open_value(&key, &context, record.version, record.key_epoch, &record.ciphertext_b64)?;
    let alias = open_alias(&caller, record.owner_user_id, &record.key, &record.encrypted_alias_b64)?;
    Ok(Json(SharedValue {
        share_id: record.share_id,
        owner_user_id: record.owner_user_id,
        alias,
        value_b64: STANDARD.encode(value.as_slice()),
        version: record.version,
        expires_utc: record.expires_utc,
    }))
}

/// The recipient gives up a share (the Backend's `DELETE /kv/shared/{shareId}`).
#[utoipa::path(delete, path = "/v1/kv/shared/{shareId}", tag = "shares", params(("shareId" = Uuid, Path)), security(("apiKey" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn remove_shared(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath(share_id): AppPath<Uuid>,
) -> Result<Response, ApiError> {
    let api_key = ProxyState::api_key(&headers)?;
    let answer = state
        .backend
        .call(Method::DELETE, &["kv", "shared", &share_id.to_string()], None, api_key, None, &[])
        .await?
        .ok()?;
    Ok(answer.status.into_response())
}
