//! `/files`: the caller's encrypted files. The Backend stores what the Proxy (or any client doing
//! its own envelope encryption) sends: the file's ciphertext, in the org's bucket, and its name
//! encrypted and its data key wrapped for the owner, in the events. It never sees a plaintext.
//! A file is held in memory once per request: see [`crate::large_body`].

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use harden_commands::files::NewFile;
use harden_commands::object_store::ByteStream;
use harden_commands::Error as CommandError;
use harden_domain::envelope::VALUE_OVERHEAD;
use harden_domain::Plan;
use harden_projections::files::FileRow;

use crate::backend::kv::{page_limit, ListQuery};
use crate::dto::{page, Consistency};
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppPath, AppQuery, Caller};
use crate::large_body::{self, B64Field};
use crate::state::AppState;

/// The largest `POST /files` body: the biggest plan's file, encrypted, in base64, with its fields.
pub fn upload_limit() -> usize {
    large_body::b64_len(Plan::largest_file_size_bytes() as usize + VALUE_OVERHEAD) + large_body::FIELDS_ROOM
}

/// `POST /files` (as documented; parsed from the body in place, see [`Upload`]).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = FileUploadRequest)]
#[serde(rename_all = "camelCase")]
pub struct FileUploadRequest {
    /// The file name, AES-256-GCM under the file's data key (format as for values), base64.
    encrypted_file_name_b64: String,
    /// The content: format version (1) ‖ nonce (12) ‖ ciphertext ‖ tag (16), base64.
    ciphertext_b64: String,
    encrypted_aes_key_ecc_b64: String,
    encrypted_aes_key_kyber_b64: String,
    /// A MIME type; `application/octet-stream` when absent.
    content_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Upload<'a> {
    #[serde(borrow)]
    encrypted_file_name_b64: Cow<'a, str>,
    #[serde(borrow)]
    ciphertext_b64: Cow<'a, str>,
    #[serde(borrow)]
    encrypted_aes_key_ecc_b64: Cow<'a, str>,
    #[serde(borrow)]
    encrypted_aes_key_kyber_b64: Cow<'a, str>,
    #[serde(borrow, default)]
    content_type: Option<Cow<'a, str>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileStoredResponse {
    pub id: Uuid,
    pub content_type: String,
    /// The file's plaintext size.
    pub size_bytes: u64,
    pub created_utc: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub id: Uuid,
    pub encrypted_file_name_b64: String,
    pub encrypted_aes_key_ecc_b64: String,
    pub encrypted_aes_key_kyber_b64: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub created_utc: DateTime<Utc>,
}

impl From<FileRow> for FileEntry {
    fn from(r: FileRow) -> Self {
        FileEntry {
            id: r.file_id,
            encrypted_file_name_b64: r.encrypted_name,
            encrypted_aes_key_ecc_b64: r.wrap_ecc,
            encrypted_aes_key_kyber_b64: r.wrap_kyber,
            content_type: r.content_type,
            size_bytes: r.file_bytes,
            created_utc: r.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileListResponse {
    pub files: Vec<FileEntry>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /files/{id}`: the metadata, then the ciphertext (streamed from the bucket, so last).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileResponse {
    pub id: Uuid,
    pub encrypted_file_name_b64: String,
    pub encrypted_aes_key_ecc_b64: String,
    pub encrypted_aes_key_kyber_b64: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub ciphertext_b64: String,
}

/// Stores a file: the ciphertext goes to the org's bucket under an opaque id, then the record.
/// Refused on the free plan, without storage settings, and past the plan's file count or size
/// (the plaintext size, ciphertext bytes − 29). A body larger than the biggest plan's file allows is 413.
#[utoipa::path(post, path = "/files", tag = "files", request_body = FileUploadRequest, security(("apiKey" = [])),
    responses((status = 201, body = FileStoredResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn upload_file(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Consistency, Json<FileStoredResponse>), ApiError> {
    let buf = large_body::read_json_body(&headers, body, upload_limit()).await?;
    let upload: Upload = serde_json::from_slice(&buf)
        .map_err(|e| ApiError::status(StatusCode::BAD_REQUEST, format!("invalid request body: {e}")))?;
    let (name, ecc, kyber) = (
        upload.encrypted_file_name_b64.into_owned(),
        upload.encrypted_aes_key_ecc_b64.into_owned(),
        upload.encrypted_aes_key_kyber_b64.into_owned(),
    );
    let content_type = upload.content_type.map(Cow::into_owned);
    let field = B64Field::locate(&buf, upload.ciphertext_b64);
    let (buf, range) = field.decode(buf, "ciphertextB64")?;
    let ciphertext = Bytes::from(buf).slice(range);
    let new = NewFile {
        encrypted_name_b64: &name,
        wrap_ecc_b64: &ecc,
        wrap_kyber_b64: &kyber,
        content_type: content_type.as_deref(),
    };
    let stored = state.harden.upload_file(&caller, new, ciphertext, &state.storage_policy, caller.meta()).await?;
    let freshness = state.read_models.wait_for(stored.committed.position).await;
    let body = FileStoredResponse {
        id: stored.file_id,
        content_type: stored.meta.content_type.as_str().to_owned(),
        size_bytes: stored.meta.file_bytes(),
        created_utc: stored.committed.recorded_at.unwrap_or_else(Utc::now),
    };
    Ok((StatusCode::CREATED, Consistency(freshness), Json(body)))
}

fn cursor_of(row: &FileRow) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{}", row.created_at.timestamp_micros(), row.file_id))
}

/// Where a page of the file listing starts: after this file (its creation time and id).
type FileCursor = (DateTime<Utc>, Uuid);

fn parse_cursor(cursor: &str) -> Option<FileCursor> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (micros, id) = text.split_once('|')?;
    Some((DateTime::from_timestamp_micros(micros.parse().ok()?)?, id.parse().ok()?))
}

/// A page of the file listing as a query asks for it: its size and where it starts. The Proxy
/// checks its own callers' queries with it before it unlocks anything.
pub(crate) fn file_page(query: &ListQuery) -> Result<(i64, Option<FileCursor>), ApiError> {
    let limit = page_limit(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(|c| parse_cursor(c).ok_or_else(|| ApiError::from(CommandError::invalid("invalid cursor"))))
        .transpose()?;
    Ok((limit, after))
}

/// The caller's files, oldest first, a page at a time (names encrypted; the Proxy decrypts them).
#[utoipa::path(get, path = "/files", tag = "files", params(ListQuery), security(("apiKey" = [])),
    responses((status = 200, body = FileListResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_files(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(query): AppQuery<ListQuery>,
) -> Result<Json<FileListResponse>, ApiError> {
    let (limit, after) = file_page(&query)?;
    let rows = state.files.list(caller.user_id, after, limit + 1).await?;
    let (rows, next_cursor) = page(rows, limit, cursor_of);
    Ok(Json(FileListResponse { files: rows.into_iter().map(FileEntry::from).collect(), next_cursor }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FileQuery {
    /// `false`: the metadata alone, without `ciphertextB64` (to share a file without downloading it).
    pub content: Option<bool>,
}

/// A file's metadata and its ciphertext, loaded from the org's bucket as it is sent.
#[utoipa::path(get, path = "/files/{id}", tag = "files", params(("id" = Uuid, Path), FileQuery), security(("apiKey" = [])),
    responses((status = 200, body = FileResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn get_file(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<Uuid>,
    AppQuery(query): AppQuery<FileQuery>,
) -> Result<Response, ApiError> {
    if query.content == Some(false) {
        let file = state.harden.live_file(caller.user_id, id).await?;
        let (_, _, _, meta) = file.live().ok_or_else(|| ApiError::not_found(harden_commands::files::FILE_NOT_FOUND))?;
        return Ok(Json(file_fields(id, meta)).into_response());
    }
    let (meta, object) = state.harden.open_file(caller.user_id, id, &state.storage_policy).await?;
    Ok(stream_with_ciphertext(file_fields(id, &meta), object, meta.ciphertext_bytes))
}

/// A file's metadata as `GET /files/{id}` answers it.
fn file_fields(id: Uuid, meta: &harden_domain::file::FileMeta) -> serde_json::Value {
    json!({
        "id": id,
        "encryptedFileNameB64": meta.encrypted_name.as_str(),
        "encryptedAesKeyEccB64": meta.wrap_ecc.as_str(),
        "encryptedAesKeyKyberB64": meta.wrap_kyber.as_str(),
        "contentType": meta.content_type.as_str(),
        "sizeBytes": meta.file_bytes(),
    })
}

/// A JSON answer whose last field, `ciphertextB64`, is the object (`len` bytes) encoded as it
/// streams from the bucket. Its length is known, so the reader can hold it in one exact buffer.
pub(crate) fn stream_with_ciphertext(head: serde_json::Value, object: ByteStream, len: u64) -> Response {
    let data = futures::stream::unfold(object, |mut object| async move {
        object.next().await.map(|chunk| {
            let chunk = chunk.map_err(|e| {
                tracing::warn!(error = %e, "file storage failed while a file was being sent");
                std::io::Error::other("file storage failed")
            });
            (chunk, object)
        })
    });
    large_body::json_response_with_b64_tail(head, "ciphertextB64", data, len as usize)
}

/// Deletes a file: gone from reads and listings at once; its object is removed from the bucket now,
/// or by the reaper once the store answers again.
#[utoipa::path(delete, path = "/files/{id}", tag = "files", params(("id" = Uuid, Path)), security(("apiKey" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_file(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<Uuid>,
) -> Result<(StatusCode, Consistency, ()), ApiError> {
    let committed = state.harden.delete_file(&caller, id, &state.storage_policy, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((StatusCode::NO_CONTENT, Consistency(freshness), ()))
}

// ---------------------------------------------------------------------------------------------
// Shares of files: the owner's side under `/files/{id}/shares`, the recipient's under `/files/shared`.

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateFileShareRequest {
    pub recipient_user_id: Uuid,
    /// Only `read`.
    pub permission: String,
    /// The file's name, encrypted to the recipient by the Proxy.
    pub encrypted_alias_b64: String,
    /// The file's data key wrapped to the recipient.
    pub encrypted_aes_key_ecc_b64: String,
    pub encrypted_aes_key_kyber_b64: String,
    pub expires_utc: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingFileShareDto {
    pub share_id: Uuid,
    pub recipient_user_id: Uuid,
    pub permission: String,
    pub expires_utc: Option<DateTime<Utc>>,
    pub created_utc: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileInboxEntryDto {
    pub share_id: Uuid,
    pub owner_user_id: Uuid,
    pub file_id: Uuid,
    pub encrypted_alias_b64: String,
    pub permission: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub expires_utc: Option<DateTime<Utc>>,
    pub created_utc: DateTime<Utc>,
}

/// `GET /files/shared/{shareId}`: the shared file with the recipient's wrap, the ciphertext last.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SharedFileDto {
    pub share_id: Uuid,
    pub owner_user_id: Uuid,
    pub file_id: Uuid,
    pub encrypted_alias_b64: String,
    pub expires_utc: Option<DateTime<Utc>>,
    pub encrypted_file_name_b64: String,
    pub encrypted_aes_key_ecc_b64: String,
    pub encrypted_aes_key_kyber_b64: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub ciphertext_b64: String,
}

/// Shares the caller's file with a user of their org: `permission` `read`, `expiresUtc` in the
/// future or absent; the recipient must have keys. Answers the share id.
#[utoipa::path(post, path = "/files/{id}/shares", tag = "files", params(("id" = Uuid, Path)), request_body = CreateFileShareRequest,
    security(("apiKey" = [])),
    responses((status = 201, body = crate::backend::shares::ShareCreated), JsonBodyErrors,
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the global admin, who has no records, keys or recovery"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_file_share(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<Uuid>,
    crate::extract::AppJson(req): crate::extract::AppJson<CreateFileShareRequest>,
) -> Result<(StatusCode, Consistency, Json<crate::backend::shares::ShareCreated>), ApiError> {
    let new = harden_commands::sharing::NewShare {
        recipient: harden_domain::UserId::from_uuid(req.recipient_user_id),
        permission: &req.permission,
        key_epoch: 1,
        wrap_ecc_b64: &req.encrypted_aes_key_ecc_b64,
        wrap_kyber_b64: &req.encrypted_aes_key_kyber_b64,
        encrypted_alias_b64: &req.encrypted_alias_b64,
        expires_at: req.expires_utc,
    };
    let (share_id, committed) = state.harden.grant_file_share(&caller, id, new, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((StatusCode::CREATED, Consistency(freshness), Json(crate::backend::shares::ShareCreated { share_id })))
}

/// The open shares of the caller's file; 404 when the caller has no such live file (another user's
/// file does not exist for them, as for its other routes).
#[utoipa::path(get, path = "/files/{id}/shares", tag = "files", params(("id" = Uuid, Path)), security(("apiKey" = [])),
    responses((status = 200, body = Vec<OutgoingFileShareDto>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_file_shares(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<Vec<OutgoingFileShareDto>>, ApiError> {
    state.harden.live_file(caller.user_id, id).await?;
    let rows = state.shares.file_outgoing(caller.user_id, id).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| OutgoingFileShareDto {
                share_id: r.share_id,
                recipient_user_id: r.recipient_id,
                permission: r.permission,
                expires_utc: r.expires_at,
                created_utc: r.created_at,
            })
            .collect(),
    ))
}

/// Revokes a share of the caller's file: the recipient is refused from the moment this answers.
#[utoipa::path(delete, path = "/files/{id}/shares/{shareId}", tag = "files", params(("id" = Uuid, Path), ("shareId" = Uuid, Path)),
    security(("apiKey" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_file_share(
    State(state): State<AppState>,
    caller: Caller,
    AppPath((id, share_id)): AppPath<(Uuid, Uuid)>,
) -> Result<(StatusCode, Consistency, ()), ApiError> {
    let committed = state.harden.revoke_file_share(&caller, id, share_id, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((StatusCode::NO_CONTENT, Consistency(freshness), ()))
}

/// The caller's inbox of files shared with them (open shares of live files).
#[utoipa::path(get, path = "/files/shared", tag = "files", security(("apiKey" = [])),
    responses((status = 200, body = Vec<FileInboxEntryDto>), (status = 401, body = ErrorBody)))]
pub async fn file_inbox(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<FileInboxEntryDto>>, ApiError> {
    let rows = state.shares.file_inbox(caller.user_id).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| FileInboxEntryDto {
                share_id: r.share_id,
                owner_user_id: r.owner_id,
                file_id: r.file_id,
                encrypted_alias_b64: r.encrypted_alias,
                permission: r.permission,
                content_type: r.content_type,
                size_bytes: r.file_bytes,
                expires_utc: r.expires_at,
                created_utc: r.created_at,
            })
            .collect(),
    ))
}

/// Opens a file share: the file's metadata, the recipient's wrap, and the ciphertext from the bucket.
#[utoipa::path(get, path = "/files/shared/{shareId}", tag = "files", params(("shareId" = Uuid, Path)), security(("apiKey" = [])),
    responses((status = 200, body = SharedFileDto), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn read_shared_file(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(share_id): AppPath<Uuid>,
) -> Result<Response, ApiError> {
    let shared = state.harden.read_file_share(&caller, share_id, &state.storage_policy).await?;
    let head = json!({
        "shareId": shared.share_id,
        "ownerUserId": shared.owner,
        "fileId": shared.file_id,
        "encryptedAliasB64": shared.encrypted_alias.as_str(),
        "expiresUtc": shared.expires_at,
        "encryptedFileNameB64": shared.meta.encrypted_name.as_str(),
        "encryptedAesKeyEccB64": shared.meta.wrap_ecc.as_str(),
        "encryptedAesKeyKyberB64": shared.meta.wrap_kyber.as_str(),
        "contentType": shared.meta.content_type.as_str(),
        "sizeBytes": shared.meta.file_bytes(),
    });
    Ok(stream_with_ciphertext(head, shared.content, shared.meta.ciphertext_bytes))
}

/// The recipient gives up a file share.
#[utoipa::path(delete, path = "/files/shared/{shareId}", tag = "files", params(("shareId" = Uuid, Path)), security(("apiKey" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_shared_file(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(share_id): AppPath<Uuid>,
) -> Result<(StatusCode, Consistency, ()), ApiError> {
    let committed = state.harden.remove_share(&caller, share_id, true, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((StatusCode::NO_CONTENT, Consistency(freshness), ()))
}
