//! The recovery read model: for each trustee, the owners who made them a trustee.

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use harden_domain::recovery::RecoveryEvent;
use harden_domain::UserId;

use crate::follower::{Projector, StoredEvent};

pub const NAME: &str = "recovery";

pub struct RecoveryProjector;

#[async_trait]
impl Projector for RecoveryProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        if event.aggregate_type != "Recovery" {
            return Ok(());
        }
        let recovery: RecoveryEvent =
            serde_json::from_value(event.payload.clone()).context("Failed to decode a Recovery event")?;
        match recovery {
            RecoveryEvent::RecoveryTrusteeSet { owner, org_id, trustee, share } => {
                sqlx::query(
                    "INSERT INTO recovery_trustees (owner_id, trustee_id, org_id, xor_applied, xor_salt_hint, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (owner_id, trustee_id) DO UPDATE
                     SET xor_applied = $4, xor_salt_hint = $5, updated_at = $6",
                )
                .bind(owner.as_uuid())
                .bind(trustee.as_uuid())
                .bind(org_id.as_uuid())
                .bind(share.xor_applied)
                .bind(share.xor_salt_hint)
                .bind(event.recorded_at)
                .execute(conn)
                .await?;
            }
            RecoveryEvent::RecoveryTrusteeRemoved { owner, trustee } => {
                sqlx::query("DELETE FROM recovery_trustees WHERE owner_id = $1 AND trustee_id = $2")
                    .bind(owner.as_uuid())
                    .bind(trustee.as_uuid())
                    .execute(conn)
                    .await?;
            }
            RecoveryEvent::RecoveryRestoreSubmitted { .. } | RecoveryEvent::RecoveryCompleted { .. } => {}
        }
        Ok(())
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TrusteeOf {
    pub owner_id: Uuid,
    pub xor_applied: bool,
    pub xor_salt_hint: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct RecoveryShares {
    pool: PgPool,
}

impl RecoveryShares {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The owners who made `trustee` a trustee (active owners only).
    pub async fn owners_of(&self, trustee: UserId) -> Result<Vec<TrusteeOf>, sqlx::Error> {
        sqlx::query_as(
            "SELECT r.owner_id, r.xor_applied, r.xor_salt_hint, r.updated_at
             FROM recovery_trustees r JOIN directory_users u ON u.user_id = r.owner_id AND u.active
             WHERE r.trustee_id = $1 ORDER BY r.owner_id",
        )
        .bind(trustee.as_uuid())
        .fetch_all(&self.pool)
        .await
    }
}
