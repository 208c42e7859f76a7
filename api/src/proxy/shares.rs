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
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub use harden_client::vault::{alias_context, check_share_terms, open_alias, InboxItem, ShareTerms, SharedValue};

use crate::backend::shares::{OutgoingShareDto, ShareCreated};
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppJson, AppPath};
use crate::proxy::client::Answer;
use crate::proxy::kv::{key_name, unlocked, UnlockErrors};
use crate::proxy::{ProxyState, USER_SECRET_HEADER};

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

/// A grant's permission and expiry, checked before the Proxy unlocks or asks the Backend anything.
pub(crate) fn check_terms(permission: &str, expires_utc: Option<DateTime<Utc>>) -> Result<(), ApiError> {
    harden_domain::share::check_terms(permission, expires_utc, Utc::now())
        .map_err(|e| ApiError::status(StatusCode::BAD_REQUEST, e.to_string()))
}

pub(crate) fn json_response(answer: Answer) -> Response {
    (answer.status, [(axum::http::header::CONTENT_TYPE, "application/json")], answer.body).into_response()
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
    check_share_terms(&req.permission, req.expires_utc, &req.alias)?;
    let caller = unlocked(&state, &headers).await?;
    let terms = ShareTerms {
        recipient: req.recipient_user_id,
        permission: &req.permission,
        alias: &req.alias,
        expires_utc: req.expires_utc,
        expected_fingerprint: req.expected_fingerprint.as_deref(),
    };
    Ok(json_response(state.vault.share_value(&caller, &name, terms).await?))
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
    let answer =
        state.vault.backend.call(Method::GET, &["kv", name.as_str(), "shares"], None, api_key, None, &[]).await?;
    Ok(json_response(answer.ok()?))
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
    // The revocation needs only the API key: a forgotten or throttled secret must never keep a
    // recipient in. The rotation needs the owner's secret, when it is sent.
    let secret = match headers.contains_key(USER_SECRET_HEADER) {
        true => state.secret(&headers, USER_SECRET_HEADER, "X-User-Secret", false).ok(),
        false => None,
    };
    state.vault.revoke_share(api_key, secret, &name, share_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's inbox: shares of other users' values, with their aliases decrypted.
#[utoipa::path(get, path = "/v1/kv/shared", tag = "shares", security(("apiKey" = [], "userSecret" = [])),
    responses((status = 200, body = Vec<InboxItem>), UnlockErrors))]
pub async fn inbox(State(state): State<ProxyState>, headers: HeaderMap) -> Result<Json<Vec<InboxItem>>, ApiError> {
    let caller = unlocked(&state, &headers).await?;
    Ok(Json(state.vault.inbox(&caller).await?))
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
    Ok(Json(state.vault.read_shared(&caller, share_id).await?))
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
        .vault
        .backend
        .call(Method::DELETE, &["kv", "shared", &share_id.to_string()], None, api_key, None, &[])
        .await?
        .ok()?;
    Ok(answer.status.into_response())
}
