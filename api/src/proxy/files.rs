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
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

use harden_domain::Plan;

use crate::backend::files::{FileStoredResponse, OutgoingFileShareDto};
use crate::backend::shares::ShareCreated;
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::AppPath;
use crate::large_body::{self, B64Field};
use crate::proxy::kv::{unlocked, writer, UnlockErrors};
use crate::proxy::{forward, ProxyState};

/// The largest `POST /v1/files` body: the biggest plan's file in base64, with its fields.
pub fn upload_limit() -> usize {
    large_body::b64_len(Plan::largest_file_size_bytes() as usize) + large_body::FIELDS_ROOM
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

pub use harden_client::files::{FileInboxItem, ProxyFileEntry, ProxyFileList};

/// `GET /v1/files/{id}`: the decrypted file (the content last, streamed).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyFile {
    pub id: Uuid,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: u64,
    /// `true` only when the file's data key was wrapped and owner-sealed by a holder of the
    /// caller's private keys (an upload with `X-User-Secret`); `false` for a file uploaded with the
    /// API key alone, written straight to the Backend by anyone else, or stored before files were
    /// sealed. Such a file still opens: check where it came from before trusting it.
    pub owner_sealed: bool,
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

use harden_client::files::{FileShareTerms, OpenedFile};

/// Encrypts a file and stores it through the Backend's `POST /files`. Without `X-User-Secret`, it is
/// encrypted to the owner's public keys: a write-only service can store a file it cannot read back.
#[utoipa::path(post, path = "/v1/files", tag = "files", request_body = ProxyFileUpload,
    security(("apiKey" = [], "userSecret" = []), ("apiKey" = [])),
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
    harden_client::files::check_file_name(&file_name)?;
    let content_type = upload.content_type;
    if let Some(raw) = &content_type {
        harden_domain::file::ContentType::parse(raw).map_err(|e| ApiError::status(StatusCode::BAD_REQUEST, e.0))?;
    }
    let field = B64Field::locate(&buf, upload.content_b64);
    let (mut buf, plaintext) = field.decode(buf, "contentB64")?;
    let writer = match writer(&state, &headers).await {
        Ok(writer) => writer,
        Err(e) => {
            buf.zeroize();
            return Err(e);
        }
    };
    let answer = state.vault.upload_file(&writer, &file_name, content_type.as_deref(), buf, plaintext, |_| ()).await?;
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
    Ok(Json(state.vault.list_files(&caller, query.as_deref()).await?))
}

/// Answers an opened file decrypted, its content encoded again as it is sent after `head`.
fn file_response(file: OpenedFile, head: serde_json::Value) -> Response {
    let content = file.into_content();
    let len = content.len();
    large_body::json_response_with_b64_tail(head, "contentB64", large_body::chunks(content), len)
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
    let file = state.vault.download_file(&caller, id, false, |_, _| ()).await?;
    let head = json!({
        "id": id,
        "fileName": *file.name,
        "contentType": file.content_type,
        "sizeBytes": file.size_bytes,
        "ownerSealed": file.owner_sealed,
    });
    Ok(file_response(file, head))
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
    crate::proxy::shares::check_terms(&req.permission, req.expires_utc)?;
    let caller = unlocked(&state, &headers).await?;
    let terms = FileShareTerms {
        recipient: req.recipient_user_id,
        permission: &req.permission,
        expires_utc: req.expires_utc,
        expected_fingerprint: req.expected_fingerprint.as_deref(),
    };
    Ok(crate::proxy::shares::json_response(state.vault.share_file(&caller, file_id, terms).await?))
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
    Ok(Json(state.vault.file_inbox(&caller).await?))
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
    let file = state.vault.download_file(&caller, share_id, true, |_, _| ()).await?;
    let head = json!({
        "shareId": share_id,
        "ownerUserId": file.owner_user_id,
        "fileId": file.file_id,
        "fileName": *file.name,
        "contentType": file.content_type,
        "sizeBytes": file.size_bytes,
    });
    Ok(file_response(file, head))
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
