//! Resolving a presented API key to the principal behind it.
//!
//! Reads the trigger-maintained credential index (migration 0003), which is current the moment an
//! issuing or revoking event commits: a rotated or revoked key fails here before the command that
//! killed it has returned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use harden_domain::{ApiKeyId, OrgId, Role, UserId};

use crate::keys;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub org_id: Option<OrgId>,
    pub role: Role,
    pub key_id: ApiKeyId,
}

impl Principal {
    pub fn is_global_admin(&self) -> bool {
        self.role == Role::GlobalAdmin
    }
}

/// An API key as a request presents it: the key alone (`X-Api-Key: hk_…`), or the Cloud API's
/// pair (`X-Api-Key: hkid_…` names the key, `X-API-Secret: hk_…` proves it).
#[derive(Clone, Copy, Debug)]
pub enum Presented<'a> {
    Key(&'a str),
    Pair { key: &'a str, secret: &'a str },
}

/// `Ok(None)` for a malformed, unknown, revoked or offboarded key, and for a pair whose halves do
/// not belong together. A pair is one credential: its `key` finds the record by its unique public
/// identifier, and the hash of its `secret` is compared with the record's in constant time.
pub async fn authenticate(pool: &PgPool, presented: Presented<'_>) -> Result<Option<Principal>, sqlx::Error> {
    type Row = (Uuid, Option<Uuid>, String, Uuid, String);
    let (row, secret): (Option<Row>, &str) = match presented {
        Presented::Key(secret) => {
            if !keys::looks_like_key(secret) {
                return Ok(None);
            }
            let row = sqlx::query_as(
                "SELECT p.user_id, p.org_id, p.role, k.key_id, k.key_hash
                 FROM api_keys k JOIN principals p ON p.user_id = k.user_id
                 WHERE k.key_hash = $1 AND p.active",
            )
            .bind(keys::hash(secret).as_str())
            .fetch_optional(pool)
            .await?;
            (row, secret)
        }
        Presented::Pair { key, secret } => {
            if !keys::looks_like_label(key) || !keys::looks_like_key(secret) {
                return Ok(None);
            }
            let row = sqlx::query_as(
                "SELECT p.user_id, p.org_id, p.role, k.key_id, k.key_hash
                 FROM api_keys k JOIN principals p ON p.user_id = k.user_id
                 WHERE k.label = $1 AND p.active",
            )
            .bind(key)
            .fetch_optional(pool)
            .await?;
            (row, secret)
        }
    };
    let Some((user_id, org_id, role, key_id, stored)) = row else { return Ok(None) };
    if !bool::from(keys::hash(secret).as_str().as_bytes().ct_eq(stored.as_bytes())) {
        return Ok(None);
    }
    Ok(Role::parse(&role).map(|role| Principal {
        user_id: user_id.into(),
        org_id: org_id.map(Into::into),
        role,
        key_id: key_id.into(),
    }))
}

/// When each API key was last used, without a write per request: uses are noted in memory and
/// written in one statement per interval by [`KeyUsage::flush`]. A crash loses at most one
/// interval of "last used" times, never a key or a permission.
#[derive(Clone, Default)]
pub struct KeyUsage {
    pending: Arc<Mutex<HashMap<ApiKeyId, DateTime<Utc>>>>,
}

impl KeyUsage {
    /// The uses not written yet. A panic elsewhere while it was held leaves a map that is still
    /// whole (inserts only), so a poisoned lock is used as it is.
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<ApiKeyId, DateTime<Utc>>> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn record(&self, key: ApiKeyId, at: DateTime<Utc>) {
        self.pending().insert(key, at);
    }

    /// Writes the uses noted since the last flush; returns how many keys it updated. On a database
    /// error the uses are put back for the next flush (a later use of the same key wins).
    pub async fn flush(&self, pool: &PgPool) -> Result<usize, sqlx::Error> {
        let batch = std::mem::take(&mut *self.pending());
        if batch.is_empty() {
            return Ok(0);
        }
        let (keys, times): (Vec<Uuid>, Vec<DateTime<Utc>>) = batch.iter().map(|(k, t)| (*k.as_uuid(), *t)).unzip();
        let written = sqlx::query(
            "INSERT INTO api_key_usage (key_id, last_used_at) SELECT * FROM unnest($1::uuid[], $2::timestamptz[])
             ON CONFLICT (key_id) DO UPDATE SET last_used_at = GREATEST(api_key_usage.last_used_at, EXCLUDED.last_used_at)",
        )
        .bind(&keys)
        .bind(&times)
        .execute(pool)
        .await;
        if let Err(e) = written {
            let mut pending = self.pending();
            for (key, at) in batch {
                pending.entry(key).or_insert(at);
            }
            return Err(e);
        }
        Ok(keys.len())
    }
}
