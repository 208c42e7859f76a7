//! The Backend's request and answer bodies that its clients read and send: one definition, used
//! by the Backend's handlers to answer and by the client to parse, so the two cannot drift apart.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KvWriteRequest {
    /// AES-256-GCM: format version (1) ‖ nonce (12) ‖ ciphertext ‖ tag (16), base64.
    pub ciphertext_b64: String,
    pub encrypted_aes_key_ecc_b64: String,
    pub encrypted_aes_key_kyber_b64: String,
    /// The key epoch (from `GET /kv/{key}`) whose data key this ciphertext is under; the write is
    /// refused (409) if the record's key changed since. Shares rely on it.
    #[serde(default)]
    pub key_epoch: Option<u64>,
    /// The ciphertext is under a new data key for a record that does not exist yet (409 if it does).
    #[serde(default)]
    pub fresh_key: bool,
    /// The version this write must become (a client binds it into the ciphertext): 409 with
    /// `currentVersion` if the write would become another. Versions count on across deletes.
    #[serde(default)]
    pub version: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KvWriteResponse {
    pub key: String,
    pub version: u64,
    pub updated_utc: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KvRecordResponse {
    pub key: String,
    pub version: i64,
    pub ciphertext_b64: String,
    pub encrypted_aes_key_ecc_b64: String,
    pub encrypted_aes_key_kyber_b64: String,
    /// When this version was written.
    pub created_utc: DateTime<Utc>,
    /// The version its data key began at (updates keep the key; a rotation or a new life starts one).
    pub key_epoch: i64,
    /// A share of this record ended while its current key was wrapped for it: the owner's next
    /// write should rotate the key (the Proxy does).
    pub rotation_pending: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KvVersionEntry {
    pub version: i64,
    pub created_utc: DateTime<Utc>,
    /// Who wrote this version.
    pub user_id: Option<uuid::Uuid>,
    /// The life this version belongs to was deleted: history only.
    pub deleted: bool,
    pub deleted_utc: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KvVersionsResponse {
    pub key: String,
    pub versions: Vec<KvVersionEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KvListEntry {
    pub key: String,
    pub version: i64,
    pub created_utc: DateTime<Utc>,
    pub updated_utc: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KvListResponse {
    pub keys: Vec<KvListEntry>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// What users of one org may see of each other. The Proxy reads it back from the Backend.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PublicProfile {
    pub id: Uuid,
    pub org_id: Option<Uuid>,
    pub name: String,
    pub is_admin: bool,
    pub public_key_ecc_b64: Option<String>,
    pub public_key_kyber_b64: Option<String>,
    /// The user's self-signed key bundle; `null` for keys published without one (unverified).
    pub key_bundle_b64: Option<String>,
}
