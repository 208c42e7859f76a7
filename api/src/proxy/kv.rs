//! `/v1/kv`: values encrypted and decrypted here, stored as ciphertext on the Backend.
//!
//! Each record has its own data key, kept across its versions: a write to an existing record
//! unwraps the current key and reuses it (so shares, which wrap that key, follow updates); a new
//! record draws one. Every version gets a fresh nonce, and the associated data binds the value to
//! its org, owner and key name.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoResponses, ToSchema};
use uuid::Uuid;

use harden_domain::crypto::{self, DataKey, RecordContext};
use harden_domain::secret::KeyName;

use crate::backend::kv::{expected_version, KvListResponse, KvWriteResponse, ListQuery, VersionQuery};
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::proxy::client::Me;
use crate::proxy::unlock::{UnlockedKeys, NO_KEYS};
use crate::proxy::ApiCredential;
use crate::proxy::{forward, random, ProxyState, USER_SECRET_HEADER};

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
}

/// The stored record as the Backend returns it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Stored {
    pub version: i64,
    pub ciphertext_b64: String,
    pub encrypted_aes_key_ecc_b64: String,
    pub encrypted_aes_key_kyber_b64: String,
    #[serde(default)]
    pub key_epoch: u64,
    #[serde(default)]
    pub rotation_pending: bool,
}

pub(crate) struct Caller<'h> {
    pub api_key: ApiCredential<'h>,
    pub me: Me,
    pub org: Uuid,
    pub keys: std::sync::Arc<UnlockedKeys>,
}

impl Caller<'_> {
    /// The caller's public keys, from the private keys just unlocked, after checking that the
    /// Backend shows the same: a tampered directory must not be able to redirect a data key.
    pub fn own_public_keys(&self) -> Result<crypto::PublicKeys, ApiError> {
        let (Some(ecc), Some(kyber)) = (&self.me.public_key_ecc_b64, &self.me.public_key_kyber_b64) else {
            return Err(ApiError::status(StatusCode::CONFLICT, NO_KEYS));
        };
        let public = self.keys.keys.public_keys();
        if decode("publicKeyEccB64", ecc)? != public.ecc_bytes()
            || decode("publicKeyKyberB64", kyber)? != public.kyber_bytes()
        {
            return Err(anyhow::anyhow!("the Backend's public keys do not match the user's private keys").into());
        }
        Ok(public)
    }

    pub fn context<'n>(&self, name: &'n KeyName) -> RecordContext<'n> {
        RecordContext { kind: "kv", org: self.org, owner: self.me.id, name: name.as_str().as_bytes() }
    }
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

/// The caller, their org and their unlocked keys.
pub(crate) async fn unlocked<'h>(state: &ProxyState, headers: &'h HeaderMap) -> Result<Caller<'h>, ApiError> {
    let api_key = ProxyState::api_key(headers)?;
    let secret = state.secret(headers, USER_SECRET_HEADER, "X-User-Secret", false)?;
    let me = state.backend.me(api_key).await?;
    let org = me.org_id.ok_or_else(|| ApiError::status(StatusCode::FORBIDDEN, "the global admin has no KV records"))?;
    let keys = state.unlocker.unlock(&me, secret).await?;
    Ok(Caller { api_key, me, org, keys })
}

/// Public keys as the Backend shows them (`publicKeyEccB64`, `publicKeyKyberB64`).
pub(crate) fn backend_public_keys(ecc: &str, kyber: &str) -> Result<crypto::PublicKeys, ApiError> {
    crypto::PublicKeys::from_bytes(&decode("publicKeyEccB64", ecc)?, &decode("publicKeyKyberB64", kyber)?)
        .map_err(|_| anyhow::anyhow!("the Backend returned malformed public keys").into())
}

pub(crate) fn decode(field: &str, b64: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD.decode(b64).map_err(|_| anyhow::anyhow!("the Backend returned invalid base64 in {field}").into())
}

pub(crate) fn unwrap_key(
    caller: &Caller<'_>,
    context: &RecordContext<'_>,
    stored: &Stored,
) -> Result<DataKey, ApiError> {
    let ecc = decode("encryptedAesKeyEccB64", &stored.encrypted_aes_key_ecc_b64)?;
    let kyber = decode("encryptedAesKeyKyberB64", &stored.encrypted_aes_key_kyber_b64)?;
    crypto::unwrap_data_key(&caller.keys.keys, caller.me.id, context, &ecc, &kyber)
        .map_err(|_| ApiError::status(StatusCode::CONFLICT, "the stored value cannot be opened with this user's keys"))
}

/// Encrypts the value and stores it. `If-Match` is passed on (check-and-set, as on the Backend).
#[utoipa::path(put, path = "/v1/kv/{key}", tag = "kv", request_body = PutValue,
    params(("key" = String, Path), ("If-Match" = Option<String>, Header, description = "expected current version")),
    security(("apiKey" = [], "userSecret" = [])),
    responses((status = 201, body = KvWriteResponse, description = "a new record (or a new life of a deleted one)"),
        (status = 200, body = KvWriteResponse, description = "a new version"), UnlockErrors, JsonBodyErrors))]
pub async fn put_kv(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath(key): AppPath<String>,
    AppJson(body): AppJson<PutValue>,
) -> Result<Response, ApiError> {
    let name = KeyName::parse(&key).map_err(|e| ApiError::status(StatusCode::BAD_REQUEST, e.0))?;
    let value = zeroize::Zeroizing::new(
        STANDARD
            .decode(&body.value_b64)
            .map_err(|_| ApiError::status(StatusCode::BAD_REQUEST, "valueB64 is not valid base64"))?,
    );
    let if_match = expected_version(&headers)?;
    let caller = unlocked(&state, &headers).await?;
    let public = caller.own_public_keys()?;
    let context = caller.context(&name);

    let current = state.backend.call(Method::GET, &["kv", name.as_str()], None, caller.api_key, None, &[]).await?;
    let stored: Option<Stored> = match current.status {
        StatusCode::NOT_FOUND => None,
        _ => Some(current.ok()?.json()?),
    };
    // A former recipient may still hold the record's key: this write rotates it.
    if let Some(stored) = stored.as_ref().filter(|s| s.rotation_pending) {
        let expected = if_match.unwrap_or(stored.version as u64);
        let answer = crate::proxy::shares::rotate(&state, &caller, &name, expected, &value).await?;
        return Ok((answer.status, [(header::CONTENT_TYPE, "application/json")], answer.body).into_response());
    }
    let (data_key, key_field) = match &stored {
        None => (DataKey::from_bytes(random()), json!({ "freshKey": true })),
        Some(stored) => (unwrap_key(&caller, &context, stored)?, json!({ "keyEpoch": stored.key_epoch })),
    };
    let ciphertext = crypto::encrypt_value(&data_key, random(), &context, &value);
    let (wrap_ecc, wrap_kyber) = crypto::wrap_data_key(&public, caller.me.id, &context, &data_key, &random(), random());
    let mut request = json!({
        "ciphertextB64": STANDARD.encode(ciphertext),
        "encryptedAesKeyEccB64": STANDARD.encode(wrap_ecc),
        "encryptedAesKeyKyberB64": STANDARD.encode(wrap_kyber),
    });
    request.as_object_mut().expect("an object").extend(key_field.as_object().expect("an object").clone());
    let if_match: Vec<(HeaderName, _)> =
        headers.get(header::IF_MATCH).map(|v| (header::IF_MATCH, v.clone())).into_iter().collect();
    let answer = state
        .backend
        .call(Method::PUT, &["kv", name.as_str()], None, caller.api_key, Some(&request), &if_match)
        .await?;
    let answer = answer.ok()?;
    Ok((answer.status, [(header::CONTENT_TYPE, "application/json")], answer.body).into_response())
}

/// Reads and decrypts the value (`?version=N` for an older version of its current life).
#[utoipa::path(get, path = "/v1/kv/{key}", tag = "kv", params(("key" = String, Path), VersionQuery),
    security(("apiKey" = [], "userSecret" = [])),
    responses((status = 200, body = ValueResponse), UnlockErrors, (status = 404, body = ErrorBody)))]
pub async fn get_kv(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath(key): AppPath<String>,
    AppQuery(query): AppQuery<VersionQuery>,
) -> Result<Json<ValueResponse>, ApiError> {
    let name = KeyName::parse(&key).map_err(|e| ApiError::status(StatusCode::BAD_REQUEST, e.0))?;
    let version = query.checked()?.map(|v| format!("version={v}"));
    let caller = unlocked(&state, &headers).await?;
    let stored: Stored = state
        .backend
        .call(Method::GET, &["kv", name.as_str()], version.as_deref(), caller.api_key, None, &[])
        .await?
        .ok()?
        .json()?;
    let context = RecordContext { kind: "kv", org: caller.org, owner: caller.me.id, name: name.as_str().as_bytes() };
    let data_key = unwrap_key(&caller, &context, &stored)?;
    let value = crypto::decrypt_value(&data_key, &context, &decode("ciphertextB64", &stored.ciphertext_b64)?).map_err(
        |_| ApiError::status(StatusCode::CONFLICT, "the stored value cannot be opened with this user's keys"),
    )?;
    Ok(Json(ValueResponse { key, value_b64: STANDARD.encode(value.as_slice()), version: stored.version }))
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
