//! Files: each file has its own data key. Its name is encrypted under that key (bound to the org
//! and the owner), its content too (bound as well to the name's ciphertext, which stands in for
//! the id the Backend assigns later), and the key is wrapped to the owner. The content is sealed
//! and opened in the caller's own buffer, so a file is held in memory once.

use std::borrow::Cow;
use std::ops::Range;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use harden_domain::crypto::{self, DataKey, RecordContext};
use harden_domain::file::MAX_NAME_BYTES;

use bytes::Bytes;

use crate::backend::Answer;
use crate::body::{self, B64Field};
use crate::error::Error;
use crate::random;
use crate::vault::{check_share_terms, decode, grant_body, open_alias, Caller, Grant, Vault, Writer};

/// Where a file's name and content belong: its org and owner, and (for the content and the
/// wraps) the name's ciphertext.
pub struct FileContexts {
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

fn cannot_open() -> Error {
    Error::conflict("the stored file cannot be opened with this user's keys")
}

/// A file name as `POST /files` takes it: 1 to 1024 bytes of UTF-8 without control characters.
pub fn check_file_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "fileName must be 1 to {MAX_NAME_BYTES} bytes of UTF-8 without control characters"
        )));
    }
    Ok(())
}

/// Unwraps a file's data key for the caller (the owner, or a share's recipient).
pub fn unwrap_file_key(
    caller: &Caller<'_>,
    contexts: &FileContexts,
    ecc_b64: &str,
    kyber_b64: &str,
) -> Result<DataKey, Error> {
    unwrap_file_key_sealed(caller, contexts, ecc_b64, kyber_b64).map(|(key, _)| key)
}

/// [`unwrap_file_key`], and whether the wrap is owner-sealed for the caller: the caller owns the
/// file and its wrap carries a valid owner-seal tag at [`crypto::FILE_EPOCH`]. A file forged with
/// the owner's API key (a wrap needs only public keys), uploaded with the key alone, or written
/// before files were sealed, opens but is not.
pub fn unwrap_file_key_sealed(
    caller: &Caller<'_>,
    contexts: &FileContexts,
    ecc_b64: &str,
    kyber_b64: &str,
) -> Result<(DataKey, bool), Error> {
    let (ecc, kyber) = (decode("encryptedAesKeyEccB64", ecc_b64)?, decode("encryptedAesKeyKyberB64", kyber_b64)?);
    let content = contexts.content();
    let key =
        crypto::unwrap_data_key(&caller.keys.keys, caller.me.id, &content, &ecc, &kyber).map_err(|_| cannot_open())?;
    let sealed = contexts.owner == caller.me.id
        && crypto::owner_sealed(&caller.keys.keys, &content, crypto::FILE_EPOCH, &ecc, &kyber);
    Ok((key, sealed))
}

/// Opens an encrypted file name.
pub fn open_name(key: &DataKey, org: Uuid, owner: Uuid, encrypted: &[u8]) -> Option<String> {
    let name = crypto::decrypt_value(key, &FileContexts::name(org, owner), encrypted).ok()?;
    String::from_utf8(name.to_vec()).ok()
}

/// A file sealed for upload: the fields of `POST /files` besides the ciphertext, and where the
/// ciphertext is in the buffer that held the plaintext.
pub struct SealedFile {
    pub fields: serde_json::Value,
    pub ciphertext: Range<usize>,
}

/// Seals the plaintext at `plaintext` in `buf` (in place) as the writer's file `name`, for the
/// owner: with the owner's keys unlocked, wrapped to their own keys as unlocked and owner-sealed
/// (see `harden_domain::crypto::wrap_for_owner`, epoch [`crypto::FILE_EPOCH`]); with the API key
/// alone, to the public keys the Backend shows for the owner, unsealed (a write-only service can
/// store a file it cannot read back).
pub fn seal_file(
    writer: &Writer<'_>,
    name: &str,
    content_type: Option<&str>,
    buf: &mut Vec<u8>,
    plaintext: Range<usize>,
) -> Result<SealedFile, Error> {
    check_file_name(name)?;
    let (org, owner) = writer.org_and_owner();
    let data_key = DataKey::from_bytes(random());
    let encrypted_name = crypto::encrypt_value(&data_key, random(), &FileContexts::name(org, owner), name.as_bytes());
    let contexts = FileContexts::new(org, owner, &encrypted_name);
    // Owner-sealed (at the file's one epoch) when the owner's keys are unlocked; with the API key
    // alone, a plain wrap to the owner's public keys as the Backend shows them.
    let (wrap_ecc, wrap_kyber) = writer.wrap_own(&contexts.content(), crypto::FILE_EPOCH, &data_key)?;
    let ciphertext = crypto::seal_in_place(&data_key, random(), &contexts.content(), buf, plaintext);
    let mut fields = json!({
        "encryptedFileNameB64": STANDARD.encode(&encrypted_name),
        "encryptedAesKeyEccB64": STANDARD.encode(wrap_ecc),
        "encryptedAesKeyKyberB64": STANDARD.encode(wrap_kyber),
    });
    if let Some(content_type) = content_type {
        fields["contentType"] = json!(content_type);
    }
    Ok(SealedFile { fields, ciphertext })
}

/// The Backend's `GET /files/{id}` (or a shared file), borrowed from its buffer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredFile<'a> {
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

/// What opening a stored file needs from the caller: the key and the contexts its parts open
/// under, and its name.
pub struct FileKey {
    pub key: DataKey,
    pub contexts: FileContexts,
    pub name: Zeroizing<String>,
    /// The caller's own file, its key wrapped and owner-sealed by a holder of the caller's keys.
    pub owner_sealed: bool,
}

/// The data key and name of a stored file of `owner` in `org`, for the caller.
pub fn open_stored(caller: &Caller<'_>, org: Uuid, stored: &StoredFile<'_>) -> Result<FileKey, Error> {
    let owner = stored.owner_user_id.unwrap_or(caller.me.id);
    let encrypted_name = decode("encryptedFileNameB64", &stored.encrypted_file_name_b64)?;
    let contexts = FileContexts::new(org, owner, &encrypted_name);
    let (key, owner_sealed) = unwrap_file_key_sealed(
        caller,
        &contexts,
        &stored.encrypted_aes_key_ecc_b64,
        &stored.encrypted_aes_key_kyber_b64,
    )?;
    let name = Zeroizing::new(open_name(&key, org, owner, &encrypted_name).ok_or_else(cannot_open)?);
    Ok(FileKey { key, contexts, name, owner_sealed })
}

/// Opens a file's content in place (`blob`: the decoded ciphertext in `buf`); answers where the
/// plaintext is.
pub fn open_content(file: &FileKey, buf: &mut [u8], blob: Range<usize>) -> Result<Range<usize>, Error> {
    let inner = crypto::open_in_place(&file.key, &file.contexts.content(), &mut buf[blob.clone()])
        .map_err(|_| cannot_open())?;
    Ok(blob.start + inner.start..blob.start + inner.end)
}

/// The largest Backend answer with a file in it: the biggest plan's file, sealed, in base64, with its fields.
pub fn download_limit() -> usize {
    body::b64_len(harden_domain::Plan::largest_file_size_bytes() as usize + harden_domain::envelope::VALUE_OVERHEAD)
        + body::FIELDS_ROOM
}

/// A file opened for its reader, in the one buffer it was downloaded, decoded and decrypted in.
pub struct OpenedFile {
    pub name: Zeroizing<String>,
    pub content_type: String,
    /// The plaintext size, as the Backend states it.
    pub size_bytes: u64,
    /// Set on a shared file.
    pub owner_user_id: Option<Uuid>,
    pub file_id: Option<Uuid>,
    /// The caller's own file, sealed by the caller's keys (always `false` for a shared file: its
    /// recipient cannot check the owner's seal).
    pub owner_sealed: bool,
    buf: Zeroizing<Vec<u8>>,
    content: Range<usize>,
}

impl OpenedFile {
    pub fn content(&self) -> &[u8] {
        &self.buf[self.content.clone()]
    }

    /// The content as bytes that zeroize their buffer when the last reference goes.
    pub fn into_content(self) -> Bytes {
        Bytes::from_owner(self.buf).slice(self.content)
    }
}

/// Opens a stored file (the Backend's `GET /files/{id}` or `GET /files/shared/{shareId}` answer,
/// in `buf`) for `caller`: its name, then its content decoded and decrypted in place.
pub fn open_file_buffer(caller: &Caller<'_>, buf: Vec<u8>) -> Result<OpenedFile, Error> {
    let mut buf = Zeroizing::new(buf);
    let stored: StoredFile = serde_json::from_slice(&buf)
        .map_err(|e| Error::from(anyhow::anyhow!("the Backend answered an unexpected body: {e}")))?;
    let file = open_stored(caller, caller.org, &stored)?;
    let (content_type, size_bytes) = (stored.content_type, stored.size_bytes);
    let (owner_user_id, file_id) = (stored.owner_user_id, stored.file_id);
    let field = B64Field::locate(&buf, stored.ciphertext_b64);
    let (decoded, blob) = field.decode(std::mem::take(&mut *buf), "ciphertextB64")?;
    let mut buf = Zeroizing::new(decoded);
    let content = open_content(&file, &mut buf, blob)?;
    let owner_sealed = file.owner_sealed;
    Ok(OpenedFile { name: file.name, content_type, size_bytes, owner_user_id, file_id, owner_sealed, buf, content })
}

/// One of the caller's files, its name opened (`None` when it does not open).
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProxyFileEntry {
    pub id: Uuid,
    /// `null` when the name cannot be opened with the caller's keys.
    pub file_name: Option<String>,
    pub content_type: String,
    pub size_bytes: i64,
    pub created_utc: DateTime<Utc>,
    /// Whether the caller's own keys sealed the file's key (see `GET /v1/files/{id}`); `false`
    /// for a file uploaded with the API key alone, forged, or stored before files were sealed.
    pub owner_sealed: bool,
}

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProxyFileList {
    pub files: Vec<ProxyFileEntry>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// What an owner asks for when sharing a file (its name is the alias the recipient sees).
pub struct FileShareTerms<'a> {
    pub recipient: Uuid,
    pub permission: &'a str,
    pub expires_utc: Option<DateTime<Utc>>,
    pub expected_fingerprint: Option<&'a str>,
}

impl Vault {
    /// Seals the plaintext at `plaintext` in `buf` (see [`seal_file`]) and uploads it with the
    /// Backend's `POST /files`, its base64 encoded a chunk at a time as it is sent (`progress`
    /// hears the ciphertext bytes sent so far): the file is in memory once. The buffer is zeroized
    /// when sealing fails and what is left of it around the ciphertext before the upload.
    pub async fn upload_file(
        &self,
        writer: &Writer<'_>,
        name: &str,
        content_type: Option<&str>,
        mut buf: Vec<u8>,
        plaintext: Range<usize>,
        progress: impl Fn(usize) + Send + Sync + 'static,
    ) -> Result<Answer, Error> {
        let sealed = match seal_file(writer, name, content_type, &mut buf, plaintext) {
            Ok(sealed) => sealed,
            Err(e) => {
                zeroize::Zeroize::zeroize(&mut buf);
                return Err(e);
            }
        };
        let blob = sealed.ciphertext;
        zeroize::Zeroize::zeroize(&mut buf[..blob.start]);
        zeroize::Zeroize::zeroize(&mut buf[blob.end..]);
        let ciphertext = Bytes::from(buf).slice(blob);
        let len = ciphertext.len();
        let mut sent = 0;
        let chunks = futures::StreamExt::inspect(body::chunks(ciphertext), move |chunk| {
            if let Ok(chunk) = chunk {
                sent += chunk.len();
                progress(sent);
            }
        });
        let (length, stream) = body::document_with_b64_tail(sealed.fields, "ciphertextB64", chunks, len);
        let request = reqwest::Body::wrap_stream(stream);
        self.backend.call_streaming(Method::POST, &["files"], writer.api_key(), request, length).await?.ok()
    }

    /// Downloads one of the caller's files (`shared`: a share's id instead of a file id) and opens
    /// it in the buffer it was read into; `progress` hears the bytes read and the answer's length.
    pub async fn download_file(
        &self,
        caller: &Caller<'_>,
        id: Uuid,
        shared: bool,
        progress: impl FnMut(usize, Option<usize>),
    ) -> Result<OpenedFile, Error> {
        let id = id.to_string();
        let segments: &[&str] = if shared { &["files", "shared", &id] } else { &["files", &id] };
        let buf = self.backend.fetch_owned_with(segments, caller.api_key, download_limit(), progress).await?;
        open_file_buffer(caller, buf)
    }

    /// The caller's files with their names opened (`query`: the Backend's paging, as it is).
    pub async fn list_files(&self, caller: &Caller<'_>, query: Option<&str>) -> Result<ProxyFileList, Error> {
        let stored: StoredList =
            self.backend.call(Method::GET, &["files"], query, caller.api_key, None, &[]).await?.ok()?.json()?;
        let files = stored
            .files
            .into_iter()
            .map(|f| {
                let opened = STANDARD.decode(&f.encrypted_file_name_b64).ok().and_then(|encrypted| {
                    let contexts = FileContexts::new(caller.org, caller.me.id, &encrypted);
                    let (key, sealed) = unwrap_file_key_sealed(
                        caller,
                        &contexts,
                        &f.encrypted_aes_key_ecc_b64,
                        &f.encrypted_aes_key_kyber_b64,
                    )
                    .ok()?;
                    Some((open_name(&key, caller.org, caller.me.id, &encrypted)?, sealed))
                });
                let owner_sealed = opened.as_ref().is_some_and(|(_, sealed)| *sealed);
                ProxyFileEntry {
                    id: f.id,
                    file_name: opened.map(|(name, _)| name),
                    content_type: f.content_type,
                    size_bytes: f.size_bytes,
                    created_utc: f.created_utc,
                    owner_sealed,
                }
            })
            .collect();
        Ok(ProxyFileList { files, next_cursor: stored.next_cursor })
    }

    /// Shares the caller's file with a user of their org: its data key re-wrapped to the
    /// recipient's verified and pinned keys, its name sealed to them. Answers the Backend's answer.
    pub async fn share_file(
        &self,
        caller: &Caller<'_>,
        file_id: Uuid,
        terms: FileShareTerms<'_>,
    ) -> Result<Answer, Error> {
        check_share_terms(terms.permission, terms.expires_utc, "")?;
        caller.own_public_keys()?;
        if terms.recipient == caller.me.id {
            return Err(Error::invalid("you cannot share with yourself"));
        }
        let id = file_id.to_string();
        let stored: StoredMeta = self
            .backend
            .call(Method::GET, &["files", &id], Some("content=false"), caller.api_key, None, &[])
            .await?
            .ok()?
            .json()?;
        let encrypted_name = decode("encryptedFileNameB64", &stored.encrypted_file_name_b64)?;
        let contexts = FileContexts::new(caller.org, caller.me.id, &encrypted_name);
        let key =
            unwrap_file_key(caller, &contexts, &stored.encrypted_aes_key_ecc_b64, &stored.encrypted_aes_key_kyber_b64)?;
        let name = Zeroizing::new(open_name(&key, caller.org, caller.me.id, &encrypted_name).ok_or_else(cannot_open)?);
        let recipient =
            crate::pins::verified_recipient(&self.backend, caller, terms.recipient, terms.expected_fingerprint).await?;
        let grant = Grant { recipient: terms.recipient, permission: terms.permission, expires_utc: terms.expires_utc };
        let body = grant_body(caller, &recipient, &grant, &contexts.content(), &key, (id.as_bytes(), name.as_bytes()));
        self.backend.call(Method::POST, &["files", &id, "shares"], None, caller.api_key, Some(&body), &[]).await?.ok()
    }

    /// The caller's inbox of shared files, with the names opened.
    pub async fn file_inbox(&self, caller: &Caller<'_>) -> Result<Vec<FileInboxItem>, Error> {
        let entries: Vec<StoredInboxEntry> = self
            .backend
            .call(Method::GET, &["files", "shared"], None, caller.api_key, None, &[])
            .await?
            .ok()?
            .json()?;
        Ok(entries
            .into_iter()
            .map(|e| FileInboxItem {
                // The alias is bound to the file's id as a record's alias is to its name.
                file_name: open_alias(caller, e.owner_user_id, &e.file_id.to_string(), &e.encrypted_alias_b64).ok(),
                share_id: e.share_id,
                owner_user_id: e.owner_user_id,
                file_id: e.file_id,
                content_type: e.content_type,
                size_bytes: e.size_bytes,
                permission: e.permission,
                expires_utc: e.expires_utc,
            })
            .collect())
    }
}
