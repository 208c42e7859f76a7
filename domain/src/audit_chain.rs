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

/// An entry as `GET /audit` serves it: every field its hash covers but the org id, which the
/// reader knows. The Backend answers it and clients read it back, so the shape is defined once.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = AuditEntryDto)]
#[serde(rename_all = "camelCase")]
pub struct Served {
    /// The entry's number in its org's chain.
    pub seq: i64,
    pub key: Option<String>,
    /// `create`, `update`, `delete` for KV; dotted names (`user.create`, `apikey.revoke`, ...) otherwise.
    pub action: String,
    pub timestamp_utc: String,
    pub version: Option<i64>,
    /// The user whose request caused it.
    pub user_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// `kv` or `admin`.
    pub scope: String,
    /// The event this entry is of, in the event store.
    pub event_id: i64,
    /// The previous entry's hash (64 zeros before the first).
    pub prev_hash: String,
    /// SHA-256 over this entry and the previous entry's hash (see the README's "Audit"): a client
    /// recomputes it with the org id and the other fields (`harden audit verify`).
    pub hash: String,
}

impl From<Entry> for Served {
    fn from(e: Entry) -> Self {
        Served {
            seq: e.seq,
            key: e.key,
            action: e.action,
            timestamp_utc: e.timestamp_utc,
            version: e.version,
            user_id: e.user_id,
            subject_id: e.subject_id,
            details: e.details,
            scope: e.scope,
            event_id: e.event_id,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// Where a served chain breaks.
#[derive(Clone, Debug, PartialEq)]
pub struct Broken {
    pub seq: i64,
    pub reason: String,
}

/// Checks an org's whole chain as served (every scope, oldest first): numbered from 1 without a
/// gap, each entry linked to the one before, each hash recomputed from the entry's content, and
/// (with `head`) still passing through a head hash saved earlier.
pub fn verify(org: Uuid, entries: &[Served], head: Option<&str>) -> Result<(), Broken> {
    let mut prev = GENESIS.to_owned();
    let mut seen_head = head.is_none();
    for (i, e) in entries.iter().enumerate() {
        let broken = |reason: &str| Broken { seq: e.seq, reason: reason.to_owned() };
        if e.seq != i as i64 + 1 {
            return Err(Broken { seq: e.seq, reason: format!("entry {} is missing", i + 1) });
        }
        if e.prev_hash != prev {
            return Err(broken("it does not link to the entry before it"));
        }
        let entry = Entry {
            org_id: org,
            seq: e.seq,
            event_id: e.event_id,
            scope: e.scope.clone(),
            action: e.action.clone(),
            key: e.key.clone(),
            version: e.version,
            user_id: e.user_id,
            subject_id: e.subject_id.clone(),
            details: e.details.clone(),
            timestamp_utc: e.timestamp_utc.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: String::new(),
        };
        if hash_of(&entry) != e.hash {
            return Err(broken("its hash does not match its content"));
        }
        seen_head |= head == Some(e.hash.as_str());
        prev = e.hash.clone();
    }
    if !seen_head {
        let seq = entries.last().map(|e| e.seq).unwrap_or(0);
        return Err(Broken { seq, reason: "the chain no longer passes through the given head".into() });
    }
    Ok(())
}
