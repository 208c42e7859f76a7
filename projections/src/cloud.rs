//! The Cloud API's read models: onboarded orgs, their members, invites and API keys. Membership
//! *decisions* are never taken from here (the Org aggregate takes them); these tables answer the
//! listings, and tell which orgs an identity belongs to.

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use harden_domain::org::{Org, OrgEvent};
use harden_domain::user::{User, UserEvent};
use harden_domain::{OrgId, UserId};

use crate::follower::{Projector, StoredEvent};

pub const NAME: &str = "cloud";

pub struct CloudProjector;

#[async_trait]
impl Projector for CloudProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        let at = event.recorded_at;
        if event.aggregate_type == Org::TYPE {
            let org: OrgEvent =
                serde_json::from_value(event.payload.clone()).context("Failed to decode an Org event")?;
            apply_org(conn, org, at).await
        } else if event.aggregate_type == User::TYPE {
            let user: UserEvent =
                serde_json::from_value(event.payload.clone()).context("Failed to decode a User event")?;
            apply_user(conn, user, at).await
        } else {
            Ok(())
        }
    }
}

async fn apply_org(conn: &mut PgConnection, event: OrgEvent, at: DateTime<Utc>) -> anyhow::Result<()> {
    match event {
        OrgEvent::OrgOnboarded { org_id, name, profile } => {
            sqlx::query(
                "INSERT INTO cloud_orgs (org_id, name, slug, billing_email, created_by, project_id, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            )
            .bind(org_id.as_uuid())
            .bind(name.as_str())
            .bind(&profile.slug)
            .bind(profile.billing_email.as_ref().map(|e| e.as_str()))
            .bind(profile.created_by.as_str())
            .bind(UserId::first_admin_of(org_id).as_uuid())
            .bind(at)
            .execute(conn)
            .await?;
        }
        OrgEvent::OrgProfileUpdated { org_id, name, billing_email } => {
            sqlx::query("UPDATE cloud_orgs SET name = $2, billing_email = $3, updated_at = $4 WHERE org_id = $1")
                .bind(org_id.as_uuid())
                .bind(name.as_str())
                .bind(billing_email.as_ref().map(|e| e.as_str()))
                .bind(at)
                .execute(conn)
                .await?;
        }
        OrgEvent::OrgDeleted { org_id } => {
            let org = org_id.as_uuid();
            sqlx::query("UPDATE cloud_orgs SET deleted_at = $2, updated_at = $2 WHERE org_id = $1")
                .bind(org)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM cloud_members WHERE org_id = $1").bind(org).execute(&mut *conn).await?;
            sqlx::query("DELETE FROM cloud_api_keys WHERE org_id = $1").bind(org).execute(&mut *conn).await?;
        }
        OrgEvent::InviteCreated { org_id, invite_id, token, email, role, created_by, expires_at } => {
            sqlx::query(
                "INSERT INTO cloud_invites (invite_id, org_id, email, token, role, created_by, expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(invite_id)
            .bind(org_id.as_uuid())
            .bind(email.as_str())
            .bind(&token)
            .bind(role.as_str())
            .bind(created_by.as_str())
            .bind(expires_at)
            .bind(at)
            .execute(conn)
            .await?;
        }
        OrgEvent::InviteRevoked { invite_id, .. } => {
            sqlx::query("UPDATE cloud_invites SET revoked_at = $2 WHERE invite_id = $1")
                .bind(invite_id)
                .bind(at)
                .execute(conn)
                .await?;
        }
        OrgEvent::MemberJoined { org_id, identity, user_id, role, invite_id } => {
            sqlx::query(
                "INSERT INTO cloud_members (org_id, identity, user_id, role, joined_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(org_id.as_uuid())
            .bind(identity.as_str())
            .bind(user_id.as_uuid())
            .bind(role.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            if let Some(invite_id) = invite_id {
                sqlx::query("UPDATE cloud_invites SET accepted_at = $2 WHERE invite_id = $1")
                    .bind(invite_id)
                    .bind(at)
                    .execute(conn)
                    .await?;
            }
        }
        OrgEvent::MemberRoleChanged { org_id, identity, to, .. } => {
            sqlx::query("UPDATE cloud_members SET role = $3 WHERE org_id = $1 AND identity = $2")
                .bind(org_id.as_uuid())
                .bind(identity.as_str())
                .bind(to.as_str())
                .execute(conn)
                .await?;
        }
        OrgEvent::MemberRemoved { org_id, identity, .. } => {
            sqlx::query("DELETE FROM cloud_members WHERE org_id = $1 AND identity = $2")
                .bind(org_id.as_uuid())
                .bind(identity.as_str())
                .execute(conn)
                .await?;
        }
        OrgEvent::OrgCreated { .. }
        | OrgEvent::OrgPlanChanged { .. }
        | OrgEvent::OrgSubscriptionEnded { .. }
        | OrgEvent::OrgStorageConfigured { .. } => {}
    }
    Ok(())
}

async fn apply_user(conn: &mut PgConnection, event: UserEvent, at: DateTime<Utc>) -> anyhow::Result<()> {
    match event {
        // Only keys issued through the Cloud API carry a label; they belong to an org's project user.
        UserEvent::ApiKeyIssued { user_id, key_id, label: Some(label), .. } => {
            sqlx::query(
                "INSERT INTO cloud_api_keys (key_id, org_id, name, label, created_at)
                 SELECT $1, org_id, $3, $4, $5 FROM cloud_orgs WHERE project_id = $2",
            )
            .bind(key_id.as_uuid())
            .bind(user_id.as_uuid())
            .bind(&label.name)
            .bind(&label.key)
            .bind(at)
            .execute(conn)
            .await?;
        }
        UserEvent::ApiKeyRevoked { key_id, .. } => {
            sqlx::query("DELETE FROM cloud_api_keys WHERE key_id = $1").bind(key_id.as_uuid()).execute(conn).await?;
        }
        UserEvent::UserDeactivated { user_id } => {
            sqlx::query(
                "DELETE FROM cloud_api_keys WHERE org_id = (SELECT org_id FROM cloud_orgs WHERE project_id = $1)",
            )
            .bind(user_id.as_uuid())
            .execute(conn)
            .await?;
        }
        _ => {}
    }
    Ok(())
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CloudOrgRow {
    pub org_id: Uuid,
    pub name: String,
    pub slug: String,
    pub billing_email: Option<String>,
    pub created_by: String,
    pub project_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MemberRow {
    pub user_id: Uuid,
    pub identity: String,
    pub role: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub joined_at: DateTime<Utc>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct InviteRow {
    pub invite_id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub token: String,
    pub role: String,
    pub created_by: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub key_id: Uuid,
    pub name: String,
    pub label: String,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A user of the identity provider, as its webhooks last described them.
#[derive(Clone, Debug, Default, PartialEq, sqlx::FromRow)]
pub struct IdentityProfile {
    pub email: Option<String>,
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub image_url: Option<String>,
}

const INVITE_COLUMNS: &str =
    "invite_id, org_id, email, token, role, created_by, expires_at, created_at, accepted_at, revoked_at";

const ORG_COLUMNS: &str =
    "o.org_id, o.name, o.slug, o.billing_email, o.created_by, o.project_id, o.created_at, o.updated_at";

/// The queries behind the Cloud API's GET routes, and the identity cache.
#[derive(Clone)]
pub struct Cloud {
    pool: PgPool,
}

impl Cloud {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The live orgs `identity` is a member of, oldest membership first.
    pub async fn orgs_of(&self, identity: &str) -> Result<Vec<CloudOrgRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {ORG_COLUMNS} FROM cloud_members m JOIN cloud_orgs o ON o.org_id = m.org_id
             WHERE m.identity = $1 AND o.deleted_at IS NULL ORDER BY m.joined_at, o.org_id"
        ))
        .bind(identity)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn org(&self, org: OrgId) -> Result<Option<CloudOrgRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {ORG_COLUMNS} FROM cloud_orgs o WHERE o.org_id = $1 AND o.deleted_at IS NULL"))
            .bind(org.as_uuid())
            .fetch_optional(&self.pool)
            .await
    }

    /// How many orgs `identity` created that were deleted since: onboarding's next org id follows it.
    pub async fn deleted_orgs_created_by(&self, identity: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM cloud_orgs WHERE created_by = $1 AND deleted_at IS NOT NULL")
            .bind(identity)
            .fetch_one(&self.pool)
            .await
    }

    /// When `identity` joined `org`, if it is a member.
    pub async fn joined_at(&self, org: OrgId, identity: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        sqlx::query_scalar("SELECT joined_at FROM cloud_members WHERE org_id = $1 AND identity = $2")
            .bind(org.as_uuid())
            .bind(identity)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn members(&self, org: OrgId) -> Result<Vec<MemberRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT m.user_id, m.identity, m.role, i.email, i.first_name, i.last_name, m.joined_at
             FROM cloud_members m LEFT JOIN identity_users i ON i.identity = m.identity
             WHERE m.org_id = $1 ORDER BY m.joined_at, m.identity",
        )
        .bind(org.as_uuid())
        .fetch_all(&self.pool)
        .await
    }

    /// Every org `identity` is a member of, deleted or not (a deleted identity leaves them all).
    pub async fn memberships_of(&self, identity: &str) -> Result<Vec<OrgId>, sqlx::Error> {
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT org_id FROM cloud_members WHERE identity = $1")
            .bind(identity)
            .fetch_all(&self.pool)
            .await?;
        Ok(ids.into_iter().map(OrgId::from_uuid).collect())
    }

    pub async fn invites(&self, org: OrgId) -> Result<Vec<InviteRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {INVITE_COLUMNS} FROM cloud_invites WHERE org_id = $1 ORDER BY created_at, invite_id"
        ))
        .bind(org.as_uuid())
        .fetch_all(&self.pool)
        .await
    }

    pub async fn invite(&self, org: OrgId, invite_id: Uuid) -> Result<Option<InviteRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {INVITE_COLUMNS} FROM cloud_invites WHERE org_id = $1 AND invite_id = $2"))
            .bind(org.as_uuid())
            .bind(invite_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// The org whose invite has this token (the accept route names only the token).
    pub async fn org_of_invite(&self, token: &str) -> Result<Option<OrgId>, sqlx::Error> {
        let org: Option<Uuid> = sqlx::query_scalar("SELECT org_id FROM cloud_invites WHERE token = $1")
            .bind(token)
            .fetch_optional(&self.pool)
            .await?;
        Ok(org.map(OrgId::from_uuid))
    }

    pub async fn api_keys(&self, org: OrgId) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT k.key_id, k.name, k.label, u.last_used_at, k.created_at
             FROM cloud_api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.key_id
             WHERE k.org_id = $1 ORDER BY k.created_at, k.key_id",
        )
        .bind(org.as_uuid())
        .fetch_all(&self.pool)
        .await
    }

    pub async fn identity(&self, identity: &str) -> Result<Option<IdentityProfile>, sqlx::Error> {
        sqlx::query_as(
            "SELECT email, email_verified, first_name, last_name, image_url FROM identity_users
             WHERE identity = $1 AND deleted_at IS NULL",
        )
        .bind(identity)
        .fetch_optional(&self.pool)
        .await
    }

    /// Stores what the provider says of a user (`user.created`, `user.updated`).
    pub async fn upsert_identity(&self, identity: &str, profile: &IdentityProfile) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO identity_users (identity, email, email_verified, first_name, last_name, image_url, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, now())
             ON CONFLICT (identity) DO UPDATE SET email = $2, email_verified = $3, first_name = $4, last_name = $5,
                 image_url = $6, updated_at = now()
             WHERE identity_users.deleted_at IS NULL",
        )
        .bind(identity)
        .bind(&profile.email)
        .bind(profile.email_verified)
        .bind(&profile.first_name)
        .bind(&profile.last_name)
        .bind(&profile.image_url)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The provider deleted the user: its profile is forgotten. The row stays, marked, so that a
    /// `user.updated` delivered late (Svix does not promise order) cannot bring it back.
    pub async fn forget_identity(&self, identity: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO identity_users (identity, updated_at, deleted_at) VALUES ($1, now(), now())
             ON CONFLICT (identity) DO UPDATE SET email = NULL, email_verified = false, first_name = NULL,
                 last_name = NULL, image_url = NULL, updated_at = now(), deleted_at = now()",
        )
        .bind(identity)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delivery_applied(&self, svix_id: &str) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE svix_id = $1)")
            .bind(svix_id)
            .fetch_one(&self.pool)
            .await
    }

    pub async fn mark_applied(&self, svix_id: &str, event_type: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO webhook_deliveries (svix_id, event_type) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(svix_id)
            .bind(event_type)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
