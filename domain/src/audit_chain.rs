//! The audit chain's entries and their hash: what the server chains (the audit projection) and what
//! a client recomputes to verify the chain it was served (`harden audit verify`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The `prev_hash` of an org's first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A numbered, chained entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub org_id: Uuid,
    pub seq: i64,
    pub event_id: i64,
    pub scope: String,
    pub action: String,
    pub key: Option<String>,
    pub version: Option<i64>,
    pub user_id: Option<Uuid>,
    pub subject_id: Option<String>,
    pub details: Option<Value>,
    pub timestamp_utc: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The entry's hash: SHA-256 (hex) of its canonical JSON with `hash` blank. `serde_json` writes
/// struct fields in declaration order and maps in key order, so the JSON is canonical.
pub fn hash_of(entry: &Entry) -> String {
    let canonical = serde_json::to_string(&Entry { hash: String::new(), ..entry.clone() }).expect("entries serialize");
    hex::encode(Sha256::digest(canonical.as_bytes()))
}
