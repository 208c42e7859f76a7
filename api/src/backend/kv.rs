//! `/kv`: the caller's encrypted KV records. The Backend stores what the Proxy (or any client doing
//! its own envelope encryption) sends: the value's ciphertext and the record's data key wrapped for
//! the owner. It never sees a plaintext.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use serde::Deserialize;
use utoipa::IntoParams;

use harden_commands::Error as CommandError;
use harden_domain::secret::{KeyName, KeyUse, SecretEnvelope, VersionCheck};
use harden_projections::kv::KvValue;

use crate::dto::{page, Consistency};
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppJson, AppPath, AppQuery, Caller};
use crate::state::AppState;
pub use harden_client::wire::{
    KvListEntry, KvListResponse, KvRecordResponse, KvVersionEntry, KvVersionsResponse, KvWriteRequest, KvWriteResponse,
};

/// Which data key a write says its ciphertext is under.
pub fn key_use(req: &KvWriteRequest) -> Result<KeyUse, ApiError> {
    match (req.key_epoch, req.fresh_key) {
        (Some(_), true) => Err(ApiError::status(StatusCode::BAD_REQUEST, "keyEpoch and freshKey exclude each other")),
        (Some(epoch), false) => Ok(KeyUse::Same(epoch)),
        (None, true) => Ok(KeyUse::Fresh),
        (None, false) => Ok(KeyUse::Unspecified),
    }
}

fn record_response(v: KvValue) -> KvRecordResponse {
    KvRecordResponse {
        key: v.key_name,
        version: v.version,
        ciphertext_b64: v.ciphertext,
        encrypted_aes_key_ecc_b64: v.wrap_ecc,
        encrypted_aes_key_kyber_b64: v.wrap_kyber,
        created_utc: v.created_at,
        key_epoch: v.key_epoch,
        rotation_pending: false,
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VersionQuery {
    /// An older version of the record's current life (versions start at 1).
    pub version: Option<i64>,
}

impl VersionQuery {
    /// The version asked for, refused (400) unless it is one a record can have.
    pub fn checked(&self) -> Result<Option<i64>, ApiError> {
        match self.version {
            Some(v) if v < 1 => Err(CommandError::invalid("version must be 1 or more").into()),
            other => Ok(other),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub cursor: Option<String>,
    /// 1 to 1000, default 100.
    pub limit: Option<i64>,
}

pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 1000;

pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n),
        _ => Err(CommandError::invalid(format!("limit must be between 1 and {MAX_PAGE}")).into()),
    }
}

pub(crate) fn key_name(raw: &str) -> Result<KeyName, ApiError> {
    Ok(KeyName::parse(raw).map_err(CommandError::from)?)
}

fn etag(version: u64) -> [(header::HeaderName, HeaderValue); 1] {
    [(header::ETAG, HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header value"))]
}

/// `If-Match: 3` or `If-Match: "3"`: the version the write expects to replace (0: the key must not exist).
pub(crate) fn expected_version(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| CommandError::invalid("If-Match must be a record version (a non-negative integer)").into())
}

/// Creates or updates a record. With `If-Match: <version>` the write is a check-and-set: if another
/// write came first it answers 409 with `currentVersion`. Plan limits apply: active records per org,
/// and key bytes + value bytes, where value bytes = decoded ciphertext bytes − 29.
#[utoipa::path(put, path = "/kv/{key}", tag = "kv", request_body = KvWriteRequest,
    params(("key" = String, Path, description = "1 to 256 bytes of UTF-8, no control characters; percent-encode `/`"),
        ("If-Match" = Option<String>, Header, description = "expected current version")),
    security(("apiKey" = [])),
    responses((status = 201, body = KvWriteResponse, description = "a new record (or a new life of a deleted one)"),
        (status = 200, body = KvWriteResponse, description = "a new version"), JsonBodyErrors,
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put_kv(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(key): AppPath<String>,
    headers: HeaderMap,
    AppJson(req): AppJson<KvWriteRequest>,
) -> Result<(StatusCode, Consistency, [(header::HeaderName, HeaderValue); 1], Json<KvWriteResponse>), ApiError> {
    let name = key_name(&key)?;
    let expected = expected_version(&headers)?;
    let envelope =
        SecretEnvelope::parse(&req.ciphertext_b64, &req.encrypted_aes_key_ecc_b64, &req.encrypted_aes_key_kyber_b64)
            .map_err(CommandError::from)?;
    let written = state
        .harden
        .write_secret(
            &caller,
            &name,
            envelope,
            VersionCheck { current: expected, becomes: req.version },
            key_use(&req)?,
            caller.meta(),
        )
        .await?;
    let freshness = state.read_models.wait_for(written.committed.position).await;
    let status = if written.created { StatusCode::CREATED } else { StatusCode::OK };
    let body = KvWriteResponse {
        key,
        version: written.version,
        updated_utc: written.committed.recorded_at.unwrap_or_else(Utc::now),
    };
    Ok((status, Consistency(freshness), etag(written.version), Json(body)))
}

/// The record's current version (or, with `?version=N`, an older version of its current life).
#[utoipa::path(get, path = "/kv/{key}", tag = "kv", params(("key" = String, Path), VersionQuery), security(("apiKey" = [])),
    responses((status = 200, body = KvRecordResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_kv(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(key): AppPath<String>,
    AppQuery(query): AppQuery<VersionQuery>,
) -> Result<([(header::HeaderName, HeaderValue); 1], Json<KvRecordResponse>), ApiError> {
    let name = key_name(&key)?;
    let value = match query.checked()? {
        Some(v) => state.kv.version(caller.user_id, name.as_str(), v).await?,
        None => state.kv.current(caller.user_id, name.as_str()).await?,
    }
    .ok_or_else(|| ApiError::not_found("key not found"))?;
    let pending = value.rotation_pending;
    let mut response = record_response(value);
    response.rotation_pending = match pending {
        Some(pending) => pending,
        None => state.shares.rotation_pending(caller.user_id, name.as_str()).await?,
    };
    Ok((etag(response.version as u64), Json(response)))
}

/// The record's version history, across lives: version, when, who, and whether it was deleted.
#[utoipa::path(get, path = "/kv/{key}/versions", tag = "kv", params(("key" = String, Path)), security(("apiKey" = [])),
    responses((status = 200, body = KvVersionsResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn kv_versions(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(key): AppPath<String>,
) -> Result<Json<KvVersionsResponse>, ApiError> {
    let name = key_name(&key)?;
    let versions = state.kv.versions(caller.user_id, name.as_str()).await?;
    if versions.is_empty() {
        return Err(ApiError::not_found("key not found"));
    }
    let versions = versions
        .into_iter()
        .map(|v| KvVersionEntry {
            version: v.version,
            created_utc: v.created_at,
            user_id: v.writer_id,
            deleted: v.deleted_at.is_some(),
            deleted_utc: v.deleted_at,
        })
        .collect();
    Ok(Json(KvVersionsResponse { key, versions }))
}

/// Soft delete: gone from reads and listings, kept in the history. Writing the key again starts a
/// new life with a higher version.
#[utoipa::path(delete, path = "/kv/{key}", tag = "kv", params(("key" = String, Path)), security(("apiKey" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the global admin, who has no records, keys or recovery"),
        (status = 404, body = ErrorBody)))]
pub async fn delete_kv(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(key): AppPath<String>,
) -> Result<(StatusCode, Consistency, ()), ApiError> {
    let name = key_name(&key)?;
    let committed = state.harden.delete_secret(&caller, &name, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((StatusCode::NO_CONTENT, Consistency(freshness), ()))
}

/// The caller's live keys in key-name order, a page at a time.
#[utoipa::path(get, path = "/kv", tag = "kv", params(ListQuery), security(("apiKey" = [])),
    responses((status = 200, body = KvListResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_kv(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(query): AppQuery<ListQuery>,
) -> Result<Json<KvListResponse>, ApiError> {
    let limit = page_limit(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(|c| {
            URL_SAFE_NO_PAD.decode(c).ok().and_then(|b| String::from_utf8(b).ok()).filter(|k| KeyName::parse(k).is_ok())
        })
        .map(|decoded| decoded.ok_or_else(|| ApiError::from(CommandError::invalid("invalid cursor"))))
        .transpose()?;
    let rows = state.kv.list(caller.user_id, after.as_deref(), limit + 1).await?;
    let (rows, next_cursor) = page(rows, limit, |r| URL_SAFE_NO_PAD.encode(r.key_name.as_bytes()));
    let keys = rows
        .into_iter()
        .map(|r| KvListEntry {
            key: r.key_name,
            version: r.version,
            created_utc: r.created_at,
            updated_utc: r.updated_at,
        })
        .collect();
    Ok(Json(KvListResponse { keys, next_cursor }))
}
