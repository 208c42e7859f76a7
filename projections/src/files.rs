//! The files read model: each user's files (live, deleted, or deleted with the object gone), for
//! `GET /files` and for the reaper that removes deleted files' objects from the bucket.

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use harden_domain::file::FileEvent;
use harden_domain::UserId;

use crate::follower::{Projector, StoredEvent};

pub const NAME: &str = "files";

pub struct FilesProjector;

#[async_trait]
impl Projector for FilesProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        if event.aggregate_type != "File" {
            return Ok(());
        }
        let file: FileEvent = serde_json::from_value(event.payload.clone()).context("Failed to decode a File event")?;
        let at = event.recorded_at;
        match file {
            FileEvent::FileStored { file_id, owner, org_id, object_key, file_bytes, meta } => {
                sqlx::query(
                    "INSERT INTO files (file_id, org_id, owner_id, object_key, encrypted_name, wrap_ecc, wrap_kyber,
                         content_type, file_bytes, ciphertext_bytes, state, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'live', $11)",
                )
                .bind(file_id)
                .bind(org_id.as_uuid())
                .bind(owner.as_uuid())
                .bind(object_key)
                .bind(meta.encrypted_name.as_str())
                .bind(meta.wrap_ecc.as_str())
                .bind(meta.wrap_kyber.as_str())
                .bind(meta.content_type.as_str())
                .bind(file_bytes as i64)
                .bind(meta.ciphertext_bytes as i64)
                .bind(at)
                .execute(conn)
                .await?;
            }
            FileEvent::FileDeleted { file_id, .. } => {
                sqlx::query(
                    "UPDATE files SET state = 'deleted', deleted_at = $2 WHERE file_id = $1 AND state = 'live'",
                )
                .bind(file_id)
                .bind(at)
                .execute(conn)
                .await?;
            }
            FileEvent::FileShareOpened { .. } | FileEvent::FileShareClosed { .. } => {}
            FileEvent::FileObjectRemoved { file_id, .. } => {
                sqlx::query("UPDATE files SET state = 'removed' WHERE file_id = $1")
                    .bind(file_id)
                    .execute(conn)
                    .await?;
            }
        }
        Ok(())
    }
}

/// A file as the listing shows it: metadata and the owner's wrap (the Proxy decrypts the name).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct FileRow {
    pub file_id: Uuid,
    pub owner_id: Uuid,
    pub encrypted_name: String,
    pub wrap_ecc: String,
    pub wrap_kyber: String,
    pub content_type: String,
    pub file_bytes: i64,
    pub ciphertext_bytes: i64,
    pub created_at: DateTime<Utc>,
}

/// A deleted file whose object may still be in its org's bucket.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PendingRemoval {
    pub file_id: Uuid,
    pub org_id: Uuid,
}

#[derive(Clone)]
pub struct Files {
    pool: PgPool,
}

impl Files {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The owner's live files, oldest first, after the `(created_at, file_id)` cursor.
    pub async fn list(
        &self,
        owner: UserId,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<FileRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT file_id, owner_id, encrypted_name, wrap_ecc, wrap_kyber, content_type, file_bytes,
                    ciphertext_bytes, created_at
             FROM files
             WHERE owner_id = $1 AND state = 'live' AND ($2::timestamptz IS NULL OR (created_at, file_id) > ($2, $3))
             ORDER BY created_at, file_id LIMIT $4",
        )
        .bind(owner.as_uuid())
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Deleted files whose objects are not known to be gone, oldest deletion first.
    pub async fn pending_removals(&self, limit: i64) -> Result<Vec<PendingRemoval>, sqlx::Error> {
        sqlx::query_as(
            "SELECT file_id, org_id FROM files WHERE state = 'deleted' ORDER BY deleted_at, file_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }
}
