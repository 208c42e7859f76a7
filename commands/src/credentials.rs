//! Resolving a presented API key to the principal behind it.
//!
//! Reads the trigger-maintained credential index (migration 0003), which is current the moment an
//! issuing or revoking event commits: a rotated or revoked key fails here before the command that
//! killed it has returned.

use sqlx::PgPool;
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

/// `Ok(None)` for a malformed, unknown, revoked or offboarded key.
pub async fn authenticate(pool: &PgPool, presented: &str) -> Result<Option<Principal>, sqlx::Error> {
    if !keys::looks_like_key(presented) {
        return Ok(None);
    }
    let hash = keys::hash(presented);
    let row: Option<(Uuid, Option<Uuid>, String, Uuid)> = sqlx::query_as(
        "SELECT p.user_id, p.org_id, p.role, k.key_id
         FROM api_keys k JOIN principals p ON p.user_id = k.user_id
         WHERE k.key_hash = $1 AND p.active",
    )
    .bind(hash.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(user_id, org_id, role, key_id)| {
        Some(Principal {
            user_id: user_id.into(),
            org_id: org_id.map(Into::into),
            role: Role::parse(&role)?,
            key_id: key_id.into(),
        })
    }))
}
