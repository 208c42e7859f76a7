//! The KV listing: each user's records (live or deleted) and every version's ciphertext.

use std::sync::LazyLock;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use harden_domain::secret::SecretEvent;
use harden_domain::UserId;

use crate::follower::{Projector, StoredEvent};

pub const NAME: &str = "kv";

pub struct KvProjector;

#[async_trait]
impl Projector for KvProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        if event.aggregate_type != "Secret" {
            return Ok(());
        }
        let secret: SecretEvent =
            serde_json::from_value(event.payload.clone()).context("Failed to decode a Secret event")?;
        let at = event.recorded_at;
        let writer = event.actor();
        match secret {
            SecretEvent::SecretCreated { owner, org_id, key_name, version, envelope, key, .. }
            | SecretEvent::SecretUpdated { owner, org_id, key_name, version, envelope, key, .. } => {
                // A create starts a (new) life of the record: its created_at is this write's time.
                let new_life = event.event_type == "SecretCreated";
                sqlx::query(
                    "INSERT INTO kv_records (owner_id, key_name, org_id, version, live, created_at, updated_at, life, key_epoch)
                     VALUES ($1, $2, $3, $4, true, $5, $5, $7, $8)
                     ON CONFLICT (owner_id, key_name) DO UPDATE
                     SET version = $4, live = true, updated_at = $5, life = $7, key_epoch = $8,
                         created_at = CASE WHEN $6 THEN $5 ELSE kv_records.created_at END",
                )
                .bind(owner.as_uuid())
                .bind(key_name.as_str())
                .bind(org_id.as_uuid())
                .bind(version as i64)
                .bind(at)
                .bind(new_life)
                .bind(key.life as i64)
                .bind(key.epoch as i64)
                .execute(&mut *conn)
                .await?;
                insert_version(
                    conn,
                    owner,
                    key_name.as_str(),
                    (version, key.epoch),
                    &envelope,
                    writer.or(Some(*owner.as_uuid())),
                    at,
                )
                .await
            }
            // Shares opening and closing change nothing the listing shows (the Share events feed
            // the shares view).
            SecretEvent::SecretShareOpened { .. } | SecretEvent::SecretShareClosed { .. } => Ok(()),
            SecretEvent::SecretDeleted { owner, key_name, .. } => {
                sqlx::query(
                    "UPDATE kv_records SET live = false, updated_at = $3 WHERE owner_id = $1 AND key_name = $2",
                )
                .bind(owner.as_uuid())
                .bind(key_name.as_str())
                .bind(at)
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "UPDATE kv_versions SET deleted_at = $3 WHERE owner_id = $1 AND key_name = $2 AND deleted_at IS NULL",
                )
                .bind(owner.as_uuid())
                .bind(key_name.as_str())
                .bind(at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }
        }
    }
}

async fn insert_version(
    conn: &mut PgConnection,
    owner: UserId,
    key_name: &str,
    (version, key_epoch): (u64, u64),
    envelope: &harden_domain::secret::SecretEnvelope,
    writer: Option<Uuid>,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO kv_versions (owner_id, key_name, version, ciphertext, wrap_ecc, wrap_kyber, writer_id, created_at, key_epoch)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(owner.as_uuid())
    .bind(key_name)
    .bind(version as i64)
    .bind(envelope.ciphertext.as_str())
    .bind(envelope.wrap_ecc.as_str())
    .bind(envelope.wrap_kyber.as_str())
    .bind(writer)
    .bind(at)
    .bind(key_epoch as i64)
    .execute(conn)
    .await?;
    Ok(())
}

/// A live record's version, with what a reader needs to decrypt it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct KvValue {
    pub key_name: String,
    pub version: i64,
    pub ciphertext: String,
    pub wrap_ecc: String,
    pub wrap_kyber: String,
    pub created_at: DateTime<Utc>,
    pub key_epoch: i64,
    /// Whether the record's owner must rotate its key before writing again (see
    /// [`crate::shares::Shares::rotation_pending`]); read with the current version, in one query.
    #[sqlx(default)]
    pub rotation_pending: Option<bool>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct KvListing {
    pub key_name: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct KvVersionInfo {
    pub version: i64,
    pub writer_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Clone)]
pub struct Kv {
    pool: PgPool,
}

impl Kv {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The current version of a live record.
    pub async fn current(&self, owner: UserId, key_name: &str) -> Result<Option<KvValue>, sqlx::Error> {
        static QUERY: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT v.key_name, v.version, v.ciphertext, v.wrap_ecc, v.wrap_kyber, v.created_at, v.key_epoch,
                        {} AS rotation_pending
                 FROM kv_records r JOIN kv_versions v USING (owner_id, key_name)
                 WHERE r.owner_id = $1 AND r.key_name = $2 AND r.live AND v.version = r.version",
                crate::shares::ROTATION_PENDING
            )
        });
        sqlx::query_as(&QUERY).bind(owner.as_uuid()).bind(key_name).fetch_optional(&self.pool).await
    }

    /// A version of the record's current life (versions of deleted lives are history only).
    pub async fn version(&self, owner: UserId, key_name: &str, version: i64) -> Result<Option<KvValue>, sqlx::Error> {
        sqlx::query_as(
            "SELECT key_name, version, ciphertext, wrap_ecc, wrap_kyber, created_at, key_epoch FROM kv_versions
             WHERE owner_id = $1 AND key_name = $2 AND version = $3 AND deleted_at IS NULL",
        )
        .bind(owner.as_uuid())
        .bind(key_name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
    }

    /// Every version ever written, oldest first.
    pub async fn versions(&self, owner: UserId, key_name: &str) -> Result<Vec<KvVersionInfo>, sqlx::Error> {
        sqlx::query_as(
            "SELECT version, writer_id, created_at, deleted_at FROM kv_versions
             WHERE owner_id = $1 AND key_name = $2 ORDER BY version",
        )
        .bind(owner.as_uuid())
        .bind(key_name)
        .fetch_all(&self.pool)
        .await
    }

    /// Live keys in name order, after `after` (exclusive), at most `limit`.
    pub async fn list(&self, owner: UserId, after: Option<&str>, limit: i64) -> Result<Vec<KvListing>, sqlx::Error> {
        sqlx::query_as(
            "SELECT key_name, version, created_at, updated_at FROM kv_records
             WHERE owner_id = $1 AND live AND ($2::text IS NULL OR key_name > $2)
             ORDER BY key_name LIMIT $3",
        )
        .bind(owner.as_uuid())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }
}
