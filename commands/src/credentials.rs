//! Resolving a presented API key to the principal behind it.
//!
//! Reads the trigger-maintained credential index (migration 0003), which is current the moment an
//! issuing or revoking event commits. An [`AuthCache`] in front of it keeps what it found for a
//! short lease; a command that takes access away (a key revoked or rotated, a user offboarded, an
//! org deleted) waits that lease out before it answers, so a rotated or revoked key fails on every
//! instance before the command that killed it has returned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Events that take access away from a key that authenticated before: after committing one, a
/// command waits out the [`AuthCache`] lease before it answers.
pub const REVOKING_EVENTS: &[&str] = &["ApiKeyRevoked", "UserDeactivated", "OrgDeleted"];

/// The channel on which a process tells every instance to drop its cached principals (any instance
/// sends it after committing a [`REVOKING_EVENTS`] event; the payload is unused).
pub const CREDENTIALS_CHANNEL: &str = "harden_credentials";

/// What [`authenticate`] found for a presented key, kept in this process for a lease.
///
/// Correctness does not rest on notifications: an entry is used only while its lease runs, counted
/// from before the lookup was sent, and a revoking command waits the lease out after its commit
/// before answering. Any instance's entry for a key was looked up before the revocation committed
/// (later lookups miss the key), so it has expired by the time the revocation answers, whatever
/// the instance heard. The notification on [`CREDENTIALS_CHANNEL`] only drops entries sooner. Only
/// successful lookups are kept: a new key works at once everywhere. A zero lease turns it off.
#[derive(Default)]
pub struct AuthCache {
    lease_ms: AtomicU64,
    entries: Mutex<HashMap<CacheKey, Cached>>,
}

/// A key presented alone is found by its hash; a pair by its public identifier, and the secret's
/// hash is compared with the cached one as with the stored one.
#[derive(Clone, PartialEq, Eq, Hash)]
enum CacheKey {
    Hash(String),
    Label(String),
}

struct Cached {
    principal: Principal,
    key_hash: String,
    looked_up: Instant,
}

/// The cache holds at most this many keys; past it, it starts again empty.
const CACHE_CAPACITY: usize = 10_000;

impl AuthCache {
    pub fn set_lease(&self, lease: Duration) {
        self.lease_ms.store(lease.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.load(Ordering::Relaxed))
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Cached>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops every entry (a revocation somewhere, or a lost notification connection).
    pub fn clear(&self) {
        self.entries().clear();
    }

    /// [`authenticate`], answered from the cache while an entry's lease runs.
    pub async fn authenticate(
        &self,
        pool: &PgPool,
        presented: Presented<'_>,
    ) -> Result<Option<Principal>, sqlx::Error> {
        let lease = self.lease();
        if lease.is_zero() {
            return authenticate(pool, presented).await;
        }
        let (key_hash, key) = match presented {
            Presented::Key(secret) => {
                let hash = keys::hash(secret).as_str().to_owned();
                (hash.clone(), CacheKey::Hash(hash))
            }
            Presented::Pair { key, secret } => {
                (keys::hash(secret).as_str().to_owned(), CacheKey::Label(key.to_owned()))
            }
        };
        if let Some(cached) = self.entries().get(&key).filter(|c| c.looked_up.elapsed() < lease) {
            let matches = bool::from(key_hash.as_bytes().ct_eq(cached.key_hash.as_bytes()));
            return Ok(matches.then(|| cached.principal.clone()));
        }
        let looked_up = Instant::now();
        let found = authenticate(pool, presented).await?;
        if let Some(principal) = &found {
            let mut entries = self.entries();
            if entries.len() >= CACHE_CAPACITY {
                entries.clear();
            }
            entries.insert(key, Cached { principal: principal.clone(), key_hash, looked_up });
        }
        Ok(found)
    }
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

#[cfg(test)]
mod tests {
    use cqrs_es::DomainEvent;
    use harden_domain::org::OrgEvent;
    use harden_domain::user::UserEvent;

    use super::*;

    /// The revoking events are named as the domain names them: a rename would silently turn the
    /// lease wait off for that event.
    #[test]
    fn the_revoking_events_are_the_domains_own_names() {
        let user_id = UserId::from_uuid(Uuid::new_v4());
        let names = [
            UserEvent::ApiKeyRevoked { user_id, key_id: ApiKeyId::from_uuid(Uuid::new_v4()) }.event_type(),
            UserEvent::UserDeactivated { user_id }.event_type(),
            OrgEvent::OrgDeleted { org_id: OrgId::from_uuid(Uuid::new_v4()) }.event_type(),
        ];
        assert_eq!(names.as_slice(), REVOKING_EVENTS);
    }
}
