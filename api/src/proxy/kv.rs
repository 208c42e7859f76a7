//! `/v1/kv`: values encrypted and decrypted here, stored as ciphertext on the Backend.
//!
//! Each record has its own data key, kept across its versions: a write to an existing record
//! unwraps the current key and reuses it (so shares, which wrap that key, follow updates); a new
//! record draws one. Every version gets a fresh nonce, and the associated data binds the value to
//! its org, owner and key name.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoResponses, ToSchema};

use harden_client::{Caller, Writer};
use harden_domain::secret::KeyName;

use crate::backend::kv::{expected_version, KvListResponse, KvWriteResponse, ListQuery, VersionQuery};
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::proxy::{forward, ProxyState, USER_SECRET_HEADER};

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutValue {
    /// The plaintext value, base64.
    pub value_b64: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValueResponse {
    pub key: String,
    pub value_b64: String,
    pub version: i64,
    /// The owner's own keys sealed this version's data key and the value is bound to its version:
    /// `false` for a value someone else encrypted to the owner (a write with the API key alone, or a
    /// record forged in the store) or one written before keys were sealed. Such a key is never used
    /// again: the owner's next write starts a fresh one.
    pub owner_sealed: bool,
}

/// What every route that unlocks the caller's keys ([`unlocked`]) can answer before its own work.
/// Routes list it in `responses(...)` beside their own answers.
#[derive(IntoResponses)]
pub enum UnlockErrors {
    /// `X-User-Secret` is missing or not visible ASCII.
    #[response(status = 400)]
    MissingSecret(ErrorBody),
    /// No or an unknown API key, or a user secret that does not open the keys.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The global admin, who has no keys and no records.
    #[response(status = 403)]
    GlobalAdmin(ErrorBody),
    /// The user has no keys yet (`POST /v1/keys/generate`), or a stored value does not open with them.
    #[response(status = 409)]
    NoKeys(ErrorBody),
    /// Five failed unlocks of this user within a minute.
    #[response(status = 429)]
    Throttled(ErrorBody),
    /// The Backend could not be reached.
    #[response(status = 502)]
    BackendUnreachable(ErrorBody),
}

/// The caller, their org and their keys, unlocked with `X-User-Secret`.
pub(crate) async fn unlocked<'h>(state: &ProxyState, headers: &'h HeaderMap) -> Result<Caller<'h>, ApiError> {
    let api_key = ProxyState::api_key(headers)?;
    let secret = state.secret(headers, USER_SECRET_HEADER, "X-User-Secret", false)?;
    Ok(state.vault.unlock(api_key, secret).await?)
}

/// The writer of a value: the owner when `X-User-Secret` is sent, else the API key alone.
pub(crate) async fn writer<'h>(state: &ProxyState, headers: &'h HeaderMap) -> Result<Writer<'h>, ApiError> {
    let api_key = ProxyState::api_key(headers)?;
    let secret = match headers.contains_key(USER_SECRET_HEADER) {
        true => Some(state.secret(headers, USER_SECRET_HEADER, "X-User-Secret", false)?),
        false => None,
    };
    Ok(state.vault.writer(api_key, secret).await?)
}

pub(crate) fn key_name(raw: &str) -> Result<KeyName, ApiError> {
    KeyName::parse(raw).map_err(|e| ApiError::status(StatusCode::BAD_REQUEST, e.0))
}

/// Encrypts the value and stores it as the record's next version, bound to that version. The
/// record's key is kept only when its owner sealed it; otherwise (a key someone else wrapped, a
/// value written before keys were sealed, a write with the API key alone, a share that ended) the
/// write starts a fresh key and re-wraps it to every open share. `If-Match` is passed on
/// (check-and-set, as on the Backend). Without `X-User-Secret` the value is encrypted to the
/// owner's public keys: a write-only service can store values it cannot read back.
#[utoipa::path(put, path = "/v1/kv/{key}", tag = "kv", request_body = PutValue,
    params(("key" = String, Path), ("If-Match" = Option<String>, Header, description = "expected current version")),
    security(("apiKey" = [], "userSecret" = []), ("apiKey" = [])),
    responses((status = 201, body = KvWriteResponse, description = "a new record (or a new life of a deleted one)"),
        (status = 200, body = KvWriteResponse, description = "a new version"), UnlockErrors, JsonBodyErrors))]
pub async fn put_kv(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath(key): AppPath<String>,
    AppJson(body): AppJson<PutValue>,
) -> Result<Response, ApiError> {
    let name = key_name(&key)?;
    let value = zeroize::Zeroizing::new(
        STANDARD
            .decode(&body.value_b64)
            .map_err(|_| ApiError::status(StatusCode::BAD_REQUEST, "valueB64 is not valid base64"))?,
    );
    let if_match = expected_version(&headers)?;
    let writer = writer(&state, &headers).await?;
    let answer = state.vault.put_value(&writer, &name, &value, if_match).await?;
    Ok((answer.status, [(header::CONTENT_TYPE, "application/json")], answer.body).into_response())
}

/// Reads and decrypts the value (`?version=N` for an older version of its current life). The
/// answer says whether its owner sealed it (`ownerSealed`): `false` for a value whose key the owner
/// did not wrap themselves (written by someone else with the owner's API key, or forged in the
/// store) or that was written before keys were sealed. A ciphertext that does not open as the
/// version the Backend names is refused (409).
#[utoipa::path(get, path = "/v1/kv/{key}", tag = "kv", params(("key" = String, Path), VersionQuery),
    security(("apiKey" = [], "userSecret" = [])),
    responses((status = 200, body = ValueResponse), UnlockErrors, (status = 404, body = ErrorBody)))]
pub async fn get_kv(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath(key): AppPath<String>,
    AppQuery(query): AppQuery<VersionQuery>,
) -> Result<Json<ValueResponse>, ApiError> {
    let name = key_name(&key)?;
    let asked = query.checked()?;
    let caller = unlocked(&state, &headers).await?;
    let opened = state.vault.get_value(&caller, &name, asked.map(|v| v as u64)).await?;
    Ok(Json(ValueResponse {
        key,
        value_b64: STANDARD.encode(opened.value.as_slice()),
        version: opened.version,
        owner_sealed: opened.owner_sealed,
    }))
}

/// Soft-deletes the record (the Backend's `DELETE /kv/{key}`).
#[utoipa::path(delete, path = "/v1/kv/{key}", tag = "kv", params(("key" = String, Path)), security(("apiKey" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the global admin has no KV records"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn delete_kv(
    state: State<ProxyState>,
    peer: ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    forward::pass_through(state, peer, request).await
}

/// The caller's live keys (the Backend's `GET /kv`, paginated the same way).
#[utoipa::path(get, path = "/v1/kv", tag = "kv", params(ListQuery), security(("apiKey" = [])),
    responses((status = 200, body = KvListResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn list_kv(
    state: State<ProxyState>,
    peer: ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    forward::pass_through(state, peer, request).await
}
