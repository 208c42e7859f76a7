//! The shares read model: each recipient's inbox and each record's outgoing shares.
//!
//! Fed by Share events, and by Secret and File deletions (a deleted record's or file's shares end).
//! Holds ids, the alias encrypted to the recipient, expiry and state; never a wrap or a value.
//! Shares of KV records are in `kv_shares`, shares of files in `file_shares`.

use std::sync::LazyLock;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use harden_domain::file::FileEvent;
use harden_domain::secret::SecretEvent;
use harden_domain::share::{ShareEvent, SharedRecord};
use harden_domain::UserId;

use crate::follower::{Projector, StoredEvent};

pub const NAME: &str = "shares";

pub struct SharesProjector;

#[async_trait]
impl Projector for SharesProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        let at = event.recorded_at;
        match event.aggregate_type.as_str() {
            "Share" => {
                let share: ShareEvent =
                    serde_json::from_value(event.payload.clone()).context("Failed to decode a Share event")?;
                apply_share(conn, share, at).await
            }
            "Secret" => {
                let secret: SecretEvent =
                    serde_json::from_value(event.payload.clone()).context("Failed to decode a Secret event")?;
                if let SecretEvent::SecretDeleted { owner, key_name, .. } = secret {
                    sqlx::query(
                        "UPDATE kv_shares SET state = 'ended', ended_at = $3
                         WHERE owner_id = $1 AND key_name = $2 AND state = 'active'",
                    )
                    .bind(owner.as_uuid())
                    .bind(key_name.as_str())
                    .bind(at)
                    .execute(conn)
                    .await?;
                }
                Ok(())
            }
            "File" => {
                let file: FileEvent =
                    serde_json::from_value(event.payload.clone()).context("Failed to decode a File event")?;
                if let FileEvent::FileDeleted { file_id, .. } = file {
                    sqlx::query(
                        "UPDATE file_shares SET state = 'ended', ended_at = $2 WHERE file_id = $1 AND state = 'active'",
                    )
                    .bind(file_id)
                    .bind(at)
                    .execute(conn)
                    .await?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn share_uuid(id: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(id).context("a share id is not a UUID")
}

async fn apply_share(conn: &mut PgConnection, event: ShareEvent, at: DateTime<Utc>) -> anyhow::Result<()> {
    match event {
        ShareEvent::ShareGranted { share_id, grant } => match &grant.record {
            SharedRecord::Kv { key_name } => {
                sqlx::query(
                    "INSERT INTO kv_shares (share_id, org_id, owner_id, recipient_id, key_name, life, permission,
                         encrypted_alias, expires_at, state, max_epoch, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, 'read', $7, $8, 'active', $9, $10)
                     ON CONFLICT (share_id) DO UPDATE
                     SET encrypted_alias = $7, expires_at = $8, state = 'active', max_epoch = $9, created_at = $10,
                         ended_at = NULL",
                )
                .bind(share_uuid(&share_id)?)
                .bind(grant.org_id.as_uuid())
                .bind(grant.owner.as_uuid())
                .bind(grant.recipient.as_uuid())
                .bind(key_name.as_str())
                .bind(grant.life as i64)
                .bind(grant.encrypted_alias.as_str())
                .bind(grant.expires_at)
                .bind(grant.epoch as i64)
                .bind(at)
                .execute(conn)
                .await?;
            }
            SharedRecord::File { file_id } => {
                sqlx::query(
                    "INSERT INTO file_shares (share_id, org_id, owner_id, recipient_id, file_id, permission,
                         encrypted_alias, expires_at, state, created_at)
                     VALUES ($1, $2, $3, $4, $5, 'read', $6, $7, 'active', $8)
                     ON CONFLICT (share_id) DO UPDATE
                     SET encrypted_alias = $6, expires_at = $7, state = 'active', created_at = $8, ended_at = NULL",
                )
                .bind(share_uuid(&share_id)?)
                .bind(grant.org_id.as_uuid())
                .bind(grant.owner.as_uuid())
                .bind(grant.recipient.as_uuid())
                .bind(file_id)
                .bind(grant.encrypted_alias.as_str())
                .bind(grant.expires_at)
                .bind(at)
                .execute(conn)
                .await?;
            }
        },
        ShareEvent::ShareRewrapped { share_id, epoch, .. } => {
            sqlx::query("UPDATE kv_shares SET max_epoch = GREATEST(max_epoch, $2) WHERE share_id = $1")
                .bind(share_uuid(&share_id)?)
                .bind(epoch as i64)
                .execute(conn)
                .await?;
        }
        ShareEvent::ShareRevoked { share_id } => end(conn, &share_id, "revoked", at).await?,
        ShareEvent::ShareRemoved { share_id } => end(conn, &share_id, "removed", at).await?,
    }
    Ok(())
}

/// Ends a share, of a record or of a file (the event does not say which: the id is in one table).
async fn end(conn: &mut PgConnection, share_id: &str, state: &str, at: DateTime<Utc>) -> anyhow::Result<()> {
    for table in ["kv_shares", "file_shares"] {
        sqlx::query(&format!("UPDATE {table} SET state = $2, ended_at = $3 WHERE share_id = $1 AND state = 'active'"))
            .bind(share_uuid(share_id)?)
            .bind(state)
            .bind(at)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A share as its recipient sees it in the inbox.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct InboxEntry {
    pub share_id: Uuid,
    pub owner_id: Uuid,
    pub key_name: String,
    pub permission: String,
    pub encrypted_alias: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
}

/// A share as its owner sees it, with the recipient's public keys (to re-wrap after a rotation).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OutgoingShare {
    pub share_id: Uuid,
    pub recipient_id: Uuid,
    pub permission: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub public_key_ecc: Option<String>,
    pub public_key_kyber: Option<String>,
}

#[derive(Clone)]
pub struct Shares {
    pool: PgPool,
}

/// Whether a share of record `$2` of owner `$1` ended (revoked or expired) while holding the
/// record's current key: the owner's next write must then rotate to a fresh key. A boolean SQL
/// expression over the parameters `$1` (owner) and `$2` (key name), for queries built once (below
/// and in [`crate::kv`]).
pub(crate) const ROTATION_PENDING: &str = "EXISTS (
     SELECT 1 FROM kv_shares s JOIN kv_records r ON r.owner_id = s.owner_id AND r.key_name = s.key_name
     WHERE s.owner_id = $1 AND s.key_name = $2 AND r.live AND r.life = s.life
       AND s.max_epoch >= r.key_epoch
       AND (s.state <> 'active' OR s.expires_at <= now()))";

impl Shares {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The recipient's open shares of live records: neither revoked, removed, ended nor expired.
    pub async fn inbox(&self, recipient: UserId) -> Result<Vec<InboxEntry>, sqlx::Error> {
        sqlx::query_as(
            "SELECT s.share_id, s.owner_id, s.key_name, s.permission, s.encrypted_alias, s.expires_at, r.version, s.created_at
             FROM kv_shares s JOIN kv_records r ON r.owner_id = s.owner_id AND r.key_name = s.key_name
             WHERE s.recipient_id = $1 AND s.state = 'active' AND r.live AND r.life = s.life
               AND (s.expires_at IS NULL OR s.expires_at > now())
             ORDER BY s.created_at, s.share_id",
        )
        .bind(recipient.as_uuid())
        .fetch_all(&self.pool)
        .await
    }

    /// The owner's open shares of one record's current life.
    pub async fn outgoing(&self, owner: UserId, key_name: &str) -> Result<Vec<OutgoingShare>, sqlx::Error> {
        sqlx::query_as(
            "SELECT s.share_id, s.recipient_id, s.permission, s.expires_at, s.created_at,
                    u.public_key_ecc, u.public_key_kyber
             FROM kv_shares s JOIN kv_records r ON r.owner_id = s.owner_id AND r.key_name = s.key_name
             LEFT JOIN directory_users u ON u.user_id = s.recipient_id
             WHERE s.owner_id = $1 AND s.key_name = $2 AND s.state = 'active' AND r.live AND r.life = s.life
               AND (s.expires_at IS NULL OR s.expires_at > now())
             ORDER BY s.created_at, s.share_id",
        )
        .bind(owner.as_uuid())
        .bind(key_name)
        .fetch_all(&self.pool)
        .await
    }

    /// Whether a former recipient of the record may still hold its current data key: a share of the
    /// current life that ended (revoked, removed or expired) while the current key epoch was wrapped
    /// for it. The owner's Proxy then rotates the key on its next write.
    pub async fn rotation_pending(&self, owner: UserId, key_name: &str) -> Result<bool, sqlx::Error> {
        static QUERY: LazyLock<String> = LazyLock::new(|| format!("SELECT {ROTATION_PENDING}"));
        sqlx::query_scalar(&QUERY).bind(owner.as_uuid()).bind(key_name).fetch_one(&self.pool).await
    }
}

/// A file share as its recipient sees it in the inbox.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct FileInboxEntry {
    pub share_id: Uuid,
    pub owner_id: Uuid,
    pub file_id: Uuid,
    pub encrypted_alias: String,
    pub permission: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub content_type: String,
    pub file_bytes: i64,
    pub created_at: DateTime<Utc>,
}

/// A file share as its owner sees it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OutgoingFileShare {
    pub share_id: Uuid,
    pub recipient_id: Uuid,
    pub permission: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Shares {
    /// The recipient's open shares of live files.
    pub async fn file_inbox(&self, recipient: UserId) -> Result<Vec<FileInboxEntry>, sqlx::Error> {
        sqlx::query_as(
            "SELECT s.share_id, s.owner_id, s.file_id, s.encrypted_alias, s.permission, s.expires_at,
                    f.content_type, f.file_bytes, s.created_at
             FROM file_shares s JOIN files f ON f.file_id = s.file_id
             WHERE s.recipient_id = $1 AND s.state = 'active' AND f.state = 'live'
               AND (s.expires_at IS NULL OR s.expires_at > now())
             ORDER BY s.created_at, s.share_id",
        )
        .bind(recipient.as_uuid())
        .fetch_all(&self.pool)
        .await
    }

    /// The owner's open shares of one of their files.
    pub async fn file_outgoing(&self, owner: UserId, file_id: Uuid) -> Result<Vec<OutgoingFileShare>, sqlx::Error> {
        sqlx::query_as(
            "SELECT share_id, recipient_id, permission, expires_at, created_at FROM file_shares
             WHERE owner_id = $1 AND file_id = $2 AND state = 'active' AND (expires_at IS NULL OR expires_at > now())
             ORDER BY created_at, share_id",
        )
        .bind(owner.as_uuid())
        .bind(file_id)
        .fetch_all(&self.pool)
        .await
    }
}
