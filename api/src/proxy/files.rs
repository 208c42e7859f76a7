//! `/v1/files`: files encrypted and decrypted here, stored as ciphertext through the Backend.
//!
//! Each file has its own data key. Its name is encrypted under that key (bound to the org and the
//! owner), its content too (bound as well to the name's ciphertext, which stands in for the id the
//! Backend assigns later), and the key is wrapped to the owner. A file is held in memory once: the
//! body is decoded and encrypted in its own buffer, and streamed on as base64 (see
//! [`crate::large_body`]); downloads are decoded and decrypted in place the same way.

use std::borrow::Cow;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

use harden_domain::crypto::{self, DataKey, RecordContext};
use harden_domain::file::MAX_NAME_BYTES;
use harden_domain::Plan;

use crate::backend::files::{FileStoredResponse, OutgoingFileShareDto};
use crate::backend::shares::ShareCreated;
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::AppPath;
use crate::large_body::{self, B64Field};
use crate::proxy::kv::{decode, unlocked, Caller, UnlockErrors};
use crate::proxy::{forward, random, ProxyState};

/// The largest `POST /v1/files` body: the biggest plan's file in base64, with its fields.
pub fn upload_limit() -> usize {
    large_body::b64_len(Plan::largest_file_size_bytes() as usize) + large_body::FIELDS_ROOM
}

/// The largest Backend answer with a file in it.
fn download_limit() -> usize {
    crate::backend::files::upload_limit()
}

/// `POST /v1/files` (as documented; parsed from the body in place).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = ProxyFileUpload)]
#[serde(rename_all = "camelCase")]
pub struct ProxyFileUpload {
    /// 1 to 1024 bytes of UTF-8.
    file_name: String,
    /// The content, base64.
    content_b64: String,
    /// A MIME type; `application/octet-stream` when absent.
    content_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Upload<'a> {
    file_name: String,
    #[serde(borrow)]
    content_b64: Cow<'a, str>,
    #[serde(default)]
    content_type: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyFileEntry {
    pub id: Uuid,
    /// `null` when the name cannot be opened with the caller's keys.
    pub file_name: Option<String>,
    pub content_type: String,
    pub size_bytes: i64,
    pub created_utc: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyFileList {
    pub files: Vec<ProxyFileEntry>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/files/{id}`: the decrypted file (the content last, streamed).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyFile {
    pub id: Uuid,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub content_b64: String,
}

/// `GET /v1/files/shared/{shareId}`: a file shared with the caller, decrypted (the content last,
/// streamed).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxySharedFile {
    pub share_id: Uuid,
    pub owner_user_id: Uuid,
    pub file_id: Uuid,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub content_b64: String,
}

/// The Backend's `GET /files` entries, as far as the Proxy needs them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredEntry {
    id: Uuid,
    encrypted_file_name_b64: String,
    encrypted_aes_key_ecc_b64: String,
    encrypted_aes_key_kyber_b64: String,
    content_type: String,
    size_bytes: i64,
    created_utc: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredList {
    files: Vec<StoredEntry>,
    next_cursor: Option<String>,
}

/// The Backend's `GET /files/{id}` (or a shared file), borrowed from its buffer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredFile<'a> {
    pub encrypted_file_name_b64: String,
    pub encrypted_aes_key_ecc_b64: String,
    pub encrypted_aes_key_kyber_b64: String,
    pub content_type: String,
    /// The plaintext size, as the Backend states it.
    pub size_bytes: u64,
    #[serde(borrow)]
    pub ciphertext_b64: Cow<'a, str>,
    /// Set on a shared file: whose it is (the owner the keys are bound to), and its id.
    #[serde(default)]
    pub owner_user_id: Option<Uuid>,
    #[serde(default)]
    pub file_id: Option<Uuid>,
}

/// Where a file's name and content belong: its org and owner, and (for the content and the
/// wraps) the name's ciphertext.
pub(crate) struct FileContexts {
    org: Uuid,
    owner: Uuid,
    binding: [u8; 32],
}

impl FileContexts {
    pub fn new(org: Uuid, owner: Uuid, encrypted_name: &[u8]) -> Self {
        Self { org, owner, binding: crypto::file_binding(encrypted_name) }
    }
    pub fn name(org: Uuid, owner: Uuid) -> RecordContext<'static> {
        RecordContext { kind: "file-name", org, owner, name: &[] }
    }
    pub fn content(&self) -> RecordContext<'_> {
        RecordContext { kind: "file", org: self.org, owner: self.owner, name: &self.binding }
    }
}

fn cannot_open() -> ApiError {
    ApiError::status(StatusCode::CONFLICT, "the stored file cannot be opened with this user's keys")
}

/// Unwraps a file's data key for `recipient` (the owner, or a share's recipient).
pub(crate) fn unwrap_file_key(
    caller: &Caller<'_>,
    contexts: &FileContexts,
    ecc_b64: &str,
    kyber_b64: &str,
) -> Result<DataKey, ApiError> {
    let (ecc, kyber) = (decode("encryptedAesKeyEccB64", ecc_b64)?, decode("encryptedAesKeyKyberB64", kyber_b64)?);
    crypto::unwrap_data_key(&caller.keys.keys, caller.me.id, &contexts.content(), &ecc, &kyber)
        .map_err(|_| cannot_open())
}

/// Opens an encrypted file name.
pub(crate) fn open_name(key: &DataKey, org: Uuid, owner: Uuid, encrypted: &[u8]) -> Option<String> {
    let name = crypto::decrypt_value(key, &FileContexts::name(org, owner), encrypted).ok()?;
    String::from_utf8(name.to_vec()).ok()
}

/// Encrypts a file and stores it through the Backend's `POST /files`.
#[utoipa::path(post, path = "/v1/files", tag = "files", request_body = ProxyFileUpload,
    security(("apiKey" = [], "userSecret" = [])),
    responses((status = 201, body = FileStoredResponse), UnlockErrors, (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub async fn upload_file(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let buf = large_body::read_json_body(&headers, body, upload_limit()).await?;
    let upload: Upload = serde_json::from_slice(&buf)
        .map_err(|e| ApiError::status(StatusCode::BAD_REQUEST, format!("invalid request body: {e}")))?;
    let file_name = Zeroizing::new(upload.file_name);
    if file_name.is_empty() || file_name.len() > MAX_NAME_BYTES || file_name.chars().any(char::is_control) {
        return Err(ApiError::status(
            StatusCode::BAD_REQUEST,
            format!("fileName must be 1 to {MAX_NAME_BYTES} bytes of UTF-8 without control characters"),
        ));
    }
    let content_type = upload.content_type;
    if let Some(raw) = &content_type {
        harden_domain::file::ContentType::parse(raw).map_err(|e| ApiError::status(StatusCode::BAD_REQUEST, e.0))?;
    }
    let field = B64Field::locate(&buf, upload.content_b64);
    let (mut buf, plaintext) = field.decode(buf, "contentB64")?;
    let caller = match unlocked(&state, &headers).await {
        Ok(caller) => caller,
        Err(e) => {
            buf.zeroize();
            return Err(e);
        }
    };
    let public = caller.own_public_keys()?;
    let data_key = DataKey::from_bytes(random());
    let encrypted_name =
        crypto::encrypt_value(&data_key, random(), &FileContexts::name(caller.org, caller.me.id), file_name.as_bytes());
    let contexts = FileContexts::new(caller.org, caller.me.id, &encrypted_name);
    let blob = crypto::seal_in_place(&data_key, random(), &contexts.content(), &mut buf, plaintext);
    // What is left of the request around the ciphertext (the name, the content's base64) goes.
    buf[..blob.start].zeroize();
    buf[blob.end..].zeroize();
    let (wrap_ecc, wrap_kyber) =
        crypto::wrap_data_key(&public, caller.me.id, &contexts.content(), &data_key, &random(), random());
    let mut fields = json!({
        "encryptedFileNameB64": STANDARD.encode(&encrypted_name),
        "encryptedAesKeyEccB64": STANDARD.encode(wrap_ecc),
        "encryptedAesKeyKyberB64": STANDARD.encode(wrap_kyber),
    });
    if let Some(content_type) = content_type {
        fields["contentType"] = json!(content_type);
    }
    let ciphertext = Bytes::from(buf).slice(blob);
    let len = ciphertext.len();
    let (length, stream) =
        large_body::document_with_b64_tail(fields, "ciphertextB64", large_body::chunks(ciphertext), len);
    let body = reqwest::Body::wrap_stream(stream);
    let answer = state.backend.call_streaming(Method::POST, &["files"], caller.api_key, body, length).await?;
    let answer = answer.ok()?;
    Ok((answer.status, [(header::CONTENT_TYPE, "application/json")], answer.body).into_response())
}

/// The caller's files with their names decrypted (the Backend's `GET /files`, paginated the same way).
#[utoipa::path(get, path = "/v1/files", tag = "files", security(("apiKey" = [], "userSecret" = [])),
    params(("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = ProxyFileList), UnlockErrors))]
pub async fn list_files(
    State(state): State<ProxyState>,
    crate::extract::AppQuery(page): crate::extract::AppQuery<crate::backend::kv::ListQuery>,
    request: Request,
) -> Result<Json<ProxyFileList>, ApiError> {
    crate::backend::files::file_page(&page)?;
    let query = request.uri().query().map(str::to_owned);
    let caller = unlocked(&state, request.headers()).await?;
    let stored: StoredList =
        state.backend.call(Method::GET, &["files"], query.as_deref(), caller.api_key, None, &[]).await?.ok()?.json()?;
    let files = stored
        .files
        .into_iter()
        .map(|f| {
            let name = STANDARD.decode(&f.encrypted_file_name_b64).ok().and_then(|encrypted| {
                let contexts = FileContexts::new(caller.org, caller.me.id, &encrypted);
                let key =
                    unwrap_file_key(&caller, &contexts, &f.encrypted_aes_key_ecc_b64, &f.encrypted_aes_key_kyber_b64)
                        .ok()?;
                open_name(&key, caller.org, caller.me.id, &encrypted)
            });
            ProxyFileEntry {
                id: f.id,
                file_name: name,
                content_type: f.content_type,
                size_bytes: f.size_bytes,
                created_utc: f.created_utc,
            }
        })
        .collect();
    Ok(Json(ProxyFileList { files, next_cursor: stored.next_cursor }))
}

/// Opens a stored file (the Backend's answer, in `buf`) for `caller` and answers it decrypted:
/// decoded and decrypted in place, and encoded again as it is sent.
pub(crate) fn open_file(
    caller: &Caller<'_>,
    buf: Vec<u8>,
    org: Uuid,
    head: impl FnOnce(&str, &StoredFile<'_>) -> serde_json::Value,
) -> Result<Response, ApiError> {
    let stored: StoredFile = serde_json::from_slice(&buf)
        .map_err(|e| ApiError::from(anyhow::anyhow!("the Backend answered an unexpected body: {e}")))?;
    let owner = stored.owner_user_id.unwrap_or(caller.me.id);
    let encrypted_name = decode("encryptedFileNameB64", &stored.encrypted_file_name_b64)?;
    let contexts = FileContexts::new(org, owner, &encrypted_name);
    let key =
        unwrap_file_key(caller, &contexts, &stored.encrypted_aes_key_ecc_b64, &stored.encrypted_aes_key_kyber_b64)?;
    let name = Zeroizing::new(open_name(&key, org, owner, &encrypted_name).ok_or_else(cannot_open)?);
    let head = head(&name, &stored);
    let field = B64Field::locate(&buf, stored.ciphertext_b64);
    let (mut buf, blob) = field.decode(buf, "ciphertextB64")?;
    let inner = crypto::open_in_place(&key, &contexts.content(), &mut buf[blob.clone()]).map_err(|_| cannot_open())?;
    let plaintext = blob.start + inner.start..blob.start + inner.end;
    let content = Bytes::from_owner(Zeroizing::new(buf)).slice(plaintext);
    let len = content.len();
    Ok(large_body::json_response_with_b64_tail(head, "contentB64", large_body::chunks(content), len))
}

/// Downloads and decrypts a file.
#[utoipa::path(get, path = "/v1/files/{id}", tag = "files", params(("id" = Uuid, Path)),
    security(("apiKey" = [], "userSecret" = [])),
    responses((status = 200, body = ProxyFile), UnlockErrors, (status = 404, body = ErrorBody)))]
pub async fn get_file(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath(id): AppPath<Uuid>,
) -> Result<Response, ApiError> {
    let caller = unlocked(&state, &headers).await?;
    let id_text = id.to_string();
    let buf = state.backend.fetch_owned(&["files", &id_text], caller.api_key, download_limit()).await?;
    let org = caller.org;
    open_file(
        &caller,
        buf,
        org,
        |name, stored| json!({ "id": id, "fileName": name, "contentType": stored.content_type, "sizeBytes": stored.size_bytes }),
    )
}

/// Deletes a file (the Backend's `DELETE /files/{id}`).
#[utoipa::path(delete, path = "/v1/files/{id}", tag = "files", params(("id" = Uuid, Path)), security(("apiKey" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn delete_file(
    state: State<ProxyState>,
    peer: ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    forward::pass_through(state, peer, request).await
}

// ---------------------------------------------------------------------------------------------
// Sharing files: the owner's Proxy re-wraps the file's data key to the recipient and seals the
// file's name to them; the recipient's Proxy opens both with the recipient's keys. A file never
// changes, so a revocation needs no new key: the Backend refuses the recipient from then on.

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileShareRequest {
    pub recipient_user_id: Uuid,
    /// Only `read`.
    pub permission: String,
    pub expires_utc: Option<DateTime<Utc>>,
    /// As for a record's share: the recipient's fingerprint, to accept changed or unverified keys.
    #[serde(default)]
    pub expected_fingerprint: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileInboxItem {
    pub share_id: Uuid,
    pub owner_user_id: Uuid,
    pub file_id: Uuid,
    /// `null` when the name cannot be opened with the recipient's keys.
    pub file_name: Option<String>,
    pub content_type: String,
    pub size_bytes: i64,
    pub permission: String,
    pub expires_utc: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredInboxEntry {
    share_id: Uuid,
    owner_user_id: Uuid,
    file_id: Uuid,
    encrypted_alias_b64: String,
    permission: String,
    content_type: String,
    size_bytes: i64,
    expires_utc: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredMeta {
    encrypted_file_name_b64: String,
    encrypted_aes_key_ecc_b64: String,
    encrypted_aes_key_kyber_b64: String,
}

/// Shares the caller's file with a user of their org. Answers the share id.
#[utoipa::path(post, path = "/v1/files/{fileId}/shares", tag = "files", params(("fileId" = Uuid, Path)), request_body = FileShareRequest,
    security(("apiKey" = [], "userSecret" = [])),
    responses((status = 201, body = ShareCreated), UnlockErrors, JsonBodyErrors, (status = 404, body = ErrorBody)))]
pub async fn create_share(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath(file_id): AppPath<Uuid>,
    crate::extract::AppJson(req): crate::extract::AppJson<FileShareRequest>,
) -> Result<Response, ApiError> {
    use crate::proxy::shares::{alias_context, check_terms, json_response};
    check_terms(&req.permission, req.expires_utc)?;
    let caller = unlocked(&state, &headers).await?;
    caller.own_public_keys()?;
    if req.recipient_user_id == caller.me.id {
        return Err(ApiError::status(StatusCode::BAD_REQUEST, "you cannot share with yourself"));
    }
    let id = file_id.to_string();
    let stored: StoredMeta = state
        .backend
        .call(Method::GET, &["files", &id], Some("content=false"), caller.api_key, None, &[])
        .await?
        .ok()?
        .json()?;
    let encrypted_name = decode("encryptedFileNameB64", &stored.encrypted_file_name_b64)?;
    let contexts = FileContexts::new(caller.org, caller.me.id, &encrypted_name);
    let key =
        unwrap_file_key(&caller, &contexts, &stored.encrypted_aes_key_ecc_b64, &stored.encrypted_aes_key_kyber_b64)?;
    let name = Zeroizing::new(open_name(&key, caller.org, caller.me.id, &encrypted_name).ok_or_else(cannot_open)?);
    let recipient = crate::proxy::pins::verified_recipient(
        &state,
        &caller,
        req.recipient_user_id,
        req.expected_fingerprint.as_deref(),
    )
    .await?;
    let (ecc, kyber) =
        crypto::wrap_data_key(&recipient, req.recipient_user_id, &contexts.content(), &key, &random(), random());
    let alias = crypto::seal_to(
        &recipient,
        req.recipient_user_id,
        &alias_context(caller.org, caller.me.id, file_id.to_string().as_bytes()),
        name.as_bytes(),
        (&random(), &random(), random(), random()),
    );
    let body = json!({
        "recipientUserId": req.recipient_user_id,
        "permission": req.permission,
        "encryptedAliasB64": STANDARD.encode(alias),
        "encryptedAesKeyEccB64": STANDARD.encode(ecc),
        "encryptedAesKeyKyberB64": STANDARD.encode(kyber),
        "expiresUtc": req.expires_utc,
    });
    let answer =
        state.backend.call(Method::POST, &["files", &id, "shares"], None, caller.api_key, Some(&body), &[]).await?;
    Ok(json_response(answer.ok()?))
}

/// The open shares of the caller's file (the Backend's `GET /files/{id}/shares`).
#[utoipa::path(get, path = "/v1/files/{fileId}/shares", tag = "files", params(("fileId" = Uuid, Path)), security(("apiKey" = [])),
    responses((status = 200, body = Vec<OutgoingFileShareDto>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "the caller has no such file"),
        (status = 413, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn list_shares(
    state: State<ProxyState>,
    peer: ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    forward::pass_through(state, peer, request).await
}

/// Revokes a share of the caller's file: the recipient is refused at once.
#[utoipa::path(delete, path = "/v1/files/{fileId}/shares/{shareId}", tag = "files", params(("fileId" = Uuid, Path), ("shareId" = Uuid, Path)),
    security(("apiKey" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn revoke_share(
    state: State<ProxyState>,
    peer: ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    forward::pass_through(state, peer, request).await
}

/// The caller's inbox of shared files, with the names decrypted.
#[utoipa::path(get, path = "/v1/files/shared", tag = "files", security(("apiKey" = [], "userSecret" = [])),
    responses((status = 200, body = Vec<FileInboxItem>), UnlockErrors))]
pub async fn inbox(State(state): State<ProxyState>, headers: HeaderMap) -> Result<Json<Vec<FileInboxItem>>, ApiError> {
    let caller = unlocked(&state, &headers).await?;
    let entries: Vec<StoredInboxEntry> =
        state.backend.call(Method::GET, &["files", "shared"], None, caller.api_key, None, &[]).await?.ok()?.json()?;
    let items = entries
        .into_iter()
        .map(|e| FileInboxItem {
            // The alias is bound to the file's id as a record's alias is to its name.
            file_name: crate::proxy::shares::open_alias(
                &caller,
                e.owner_user_id,
                &e.file_id.to_string(),
                &e.encrypted_alias_b64,
            )
            .ok(),
            share_id: e.share_id,
            owner_user_id: e.owner_user_id,
            file_id: e.file_id,
            content_type: e.content_type,
            size_bytes: e.size_bytes,
            permission: e.permission,
            expires_utc: e.expires_utc,
        })
        .collect();
    Ok(Json(items))
}

/// Downloads and decrypts a file shared with the caller.
#[utoipa::path(get, path = "/v1/files/shared/{shareId}", tag = "files", params(("shareId" = Uuid, Path)),
    security(("apiKey" = [], "userSecret" = [])),
    responses((status = 200, body = ProxySharedFile), UnlockErrors, (status = 404, body = ErrorBody)))]
pub async fn read_shared(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath(share_id): AppPath<Uuid>,
) -> Result<Response, ApiError> {
    let caller = unlocked(&state, &headers).await?;
    let buf = state
        .backend
        .fetch_owned(&["files", "shared", &share_id.to_string()], caller.api_key, download_limit())
        .await?;
    let org = caller.org;
    open_file(&caller, buf, org, |name, stored| {
        json!({
            "shareId": share_id,
            "ownerUserId": stored.owner_user_id,
            "fileId": stored.file_id,
            "fileName": name,
            "contentType": stored.content_type,
            "sizeBytes": stored.size_bytes,
        })
    })
}

/// The recipient gives up a file share (the Backend's `DELETE /files/shared/{shareId}`).
#[utoipa::path(delete, path = "/v1/files/shared/{shareId}", tag = "files", params(("shareId" = Uuid, Path)), security(("apiKey" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn remove_shared(
    state: State<ProxyState>,
    peer: ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    forward::pass_through(state, peer, request).await
}
