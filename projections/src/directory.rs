//! The org directory: orgs with their plan, and the users of each org with their public profile
//! (and, for their owner only, their sealed private keys).

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use harden_domain::cloud::MemberRole;
use harden_domain::org::{Org, OrgEvent};
use harden_domain::user::{User, UserEvent};
use harden_domain::{OrgId, Role, UserId};

use crate::follower::{Projector, StoredEvent};

pub const NAME: &str = "directory";

pub const GLOBAL_ADMIN_NAME: &str = "Global Admin";

pub struct DirectoryProjector;

#[async_trait]
impl Projector for DirectoryProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        use cqrs_es_type_names::*;
        let at = event.recorded_at;
        match event.aggregate_type.as_str() {
            ORG => {
                apply_org(
                    conn,
                    serde_json::from_value(event.payload.clone()).context("Failed to decode an Org event")?,
                    at,
                )
                .await
            }
            USER => {
                apply_user(
                    conn,
                    serde_json::from_value(event.payload.clone()).context("Failed to decode a User event")?,
                    at,
                )
                .await
            }
            _ => Ok(()),
        }
    }
}

mod cqrs_es_type_names {
    use cqrs_es::Aggregate;
    pub const ORG: &str = <super::Org as Aggregate>::TYPE;
    pub const USER: &str = <super::User as Aggregate>::TYPE;
}

async fn apply_org(conn: &mut PgConnection, event: OrgEvent, at: DateTime<Utc>) -> anyhow::Result<()> {
    match event {
        OrgEvent::OrgCreated { org_id, name, plan, .. } => {
            sqlx::query(
                "INSERT INTO directory_orgs (org_id, name, plan, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(org_id.as_uuid())
            .bind(name.as_str())
            .bind(plan.key())
            .bind(at)
            .execute(conn)
            .await?;
        }
        OrgEvent::OrgPlanChanged { org_id, to, .. } => {
            sqlx::query("UPDATE directory_orgs SET plan = $2, updated_at = $3 WHERE org_id = $1")
                .bind(org_id.as_uuid())
                .bind(to.key())
                .bind(at)
                .execute(conn)
                .await?;
        }
        OrgEvent::OrgProfileUpdated { org_id, name, .. } => {
            sqlx::query("UPDATE directory_orgs SET name = $2, updated_at = $3 WHERE org_id = $1")
                .bind(org_id.as_uuid())
                .bind(name.as_str())
                .bind(at)
                .execute(conn)
                .await?;
        }
        OrgEvent::OrgDeleted { org_id } => {
            sqlx::query("UPDATE directory_users SET active = false, updated_at = $2 WHERE org_id = $1 AND active")
                .bind(org_id.as_uuid())
                .bind(at)
                .execute(conn)
                .await?;
        }
        // A Cloud member is a user of the org: owners and admins as its org admins. Their names
        // stay with the identity provider; the directory names them by their identity id.
        OrgEvent::MemberJoined { org_id, identity, user_id, role, .. } => {
            sqlx::query(
                "INSERT INTO directory_users (user_id, org_id, name, role, active, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, true, $5, $5)",
            )
            .bind(user_id.as_uuid())
            .bind(org_id.as_uuid())
            .bind(identity.as_str())
            .bind(backend_role(role).as_str())
            .bind(at)
            .execute(conn)
            .await?;
        }
        OrgEvent::MemberRoleChanged { user_id, to, .. } => {
            sqlx::query("UPDATE directory_users SET role = $2, updated_at = $3 WHERE user_id = $1")
                .bind(user_id.as_uuid())
                .bind(backend_role(to).as_str())
                .bind(at)
                .execute(conn)
                .await?;
        }
        OrgEvent::MemberRemoved { user_id, .. } => {
            sqlx::query("UPDATE directory_users SET active = false, updated_at = $2 WHERE user_id = $1")
                .bind(user_id.as_uuid())
                .bind(at)
                .execute(conn)
                .await?;
        }
        OrgEvent::OrgSubscriptionEnded { .. }
        | OrgEvent::OrgStorageConfigured { .. }
        | OrgEvent::OrgOnboarded { .. }
        | OrgEvent::InviteCreated { .. }
        | OrgEvent::InviteRevoked { .. } => {}
    }
    Ok(())
}

fn backend_role(role: MemberRole) -> Role {
    if role.is_org_admin() {
        Role::OrgAdmin
    } else {
        Role::Member
    }
}

async fn apply_user(conn: &mut PgConnection, event: UserEvent, at: DateTime<Utc>) -> anyhow::Result<()> {
    match event {
        UserEvent::UserCreated { user_id, org_id, name, role, public_keys } => {
            sqlx::query(
                "INSERT INTO directory_users (user_id, org_id, name, role, active, public_key_ecc, public_key_kyber, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, true, $5, $6, $7, $7)",
            )
            .bind(user_id.as_uuid())
            .bind(org_id.as_uuid())
            .bind(name.as_str())
            .bind(role.as_str())
            .bind(public_keys.as_ref().map(|k| k.ecc.as_str()))
            .bind(public_keys.as_ref().map(|k| k.kyber.as_str()))
            .bind(at)
            .execute(conn)
            .await?;
        }
        UserEvent::UserDeactivated { user_id } => {
            sqlx::query("UPDATE directory_users SET active = false, updated_at = $2 WHERE user_id = $1")
                .bind(user_id.as_uuid())
                .bind(at)
                .execute(conn)
                .await?;
        }
        UserEvent::UserKeysStored { user_id, public_keys, sealed, .. } => {
            sqlx::query(
                "UPDATE directory_users SET public_key_ecc = $2, public_key_kyber = $3, sealed_key_ecc = $4, sealed_key_kyber = $5, updated_at = $6
                 WHERE user_id = $1",
            )
            .bind(user_id.as_uuid())
            .bind(public_keys.ecc.as_str())
            .bind(public_keys.kyber.as_str())
            .bind(sealed.ecc.as_str())
            .bind(sealed.kyber.as_str())
            .bind(at)
            .execute(conn)
            .await?;
        }
        UserEvent::UserKeysResealed { user_id, sealed, .. } => {
            sqlx::query("UPDATE directory_users SET sealed_key_ecc = $2, sealed_key_kyber = $3, updated_at = $4 WHERE user_id = $1")
                .bind(user_id.as_uuid())
                .bind(sealed.ecc.as_str())
                .bind(sealed.kyber.as_str())
                .bind(at)
                .execute(conn)
                .await?;
        }
        UserEvent::UserKeyBundlePublished { user_id, bundle } => {
            sqlx::query("UPDATE directory_users SET key_bundle = $2, updated_at = $3 WHERE user_id = $1")
                .bind(user_id.as_uuid())
                .bind(bundle.as_str())
                .bind(at)
                .execute(conn)
                .await?;
        }
        UserEvent::UserPinsStored { user_id, pins } => {
            sqlx::query("UPDATE directory_users SET pins = $2, updated_at = $3 WHERE user_id = $1")
                .bind(user_id.as_uuid())
                .bind(pins.as_str())
                .bind(at)
                .execute(conn)
                .await?;
        }
        UserEvent::GlobalAdminBootstrapped { user_id } => {
            sqlx::query(
                "INSERT INTO directory_users (user_id, org_id, name, role, active, created_at, updated_at)
                 VALUES ($1, NULL, $2, $3, true, $4, $4)",
            )
            .bind(user_id.as_uuid())
            .bind(GLOBAL_ADMIN_NAME)
            .bind(Role::GlobalAdmin.as_str())
            .bind(at)
            .execute(conn)
            .await?;
        }
        // Keys live in the credential index (migration 0003), not here.
        UserEvent::ApiKeyIssued { .. } | UserEvent::ApiKeyRevoked { .. } => {}
    }
    Ok(())
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OrgRow {
    pub org_id: Uuid,
    pub name: String,
    pub plan: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UserRow {
    pub user_id: Uuid,
    /// None for the global admin.
    pub org_id: Option<Uuid>,
    pub name: String,
    pub role: String,
    pub active: bool,
    pub public_key_ecc: Option<String>,
    pub public_key_kyber: Option<String>,
    pub sealed_key_ecc: Option<String>,
    pub sealed_key_kyber: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The user's self-signed key bundle, once published.
    pub key_bundle: Option<String>,
    /// The user's pins, sealed under their keys.
    pub pins: Option<String>,
}

const USER_COLUMNS: &str = "user_id, org_id, name, role, active, public_key_ecc, public_key_kyber, sealed_key_ecc, sealed_key_kyber, created_at, key_bundle, pins";

/// An org's plan and usage, from the limits the append trigger keeps (`org_limits`) and the read models.
#[derive(Debug, sqlx::FromRow)]
pub struct UsageRow {
    pub plan: String,
    pub max_records: i64,
    pub max_kv_bytes: i64,
    pub max_files: i64,
    pub max_file_bytes: i64,
    pub records_used: i64,
    pub files_used: i64,
    /// Key plus value bytes of the largest live record (the limit is per record).
    pub largest_record_bytes: i64,
    /// The largest live file (the limit is per file).
    pub largest_file_bytes: i64,
    pub stored_file_bytes: i64,
}

/// The queries behind the directory's GET routes.
#[derive(Clone)]
pub struct Directory {
    pool: PgPool,
}

impl Directory {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn orgs(&self) -> Result<Vec<OrgRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT org_id, name, plan, created_at, updated_at FROM directory_orgs ORDER BY created_at, org_id",
        )
        .fetch_all(&self.pool)
        .await
    }

    /// The org's plan, its limits and what it uses of them (None: no such org).
    pub async fn usage(&self, org: OrgId) -> Result<Option<UsageRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT l.plan, l.max_records, l.max_kv_bytes, l.max_files, l.max_file_bytes, l.records_used, l.files_used,
                    (SELECT coalesce(max(octet_length(r.key_name) + length(v.ciphertext) / 4 * 3
                             - (CASE WHEN v.ciphertext LIKE '%==' THEN 2 WHEN v.ciphertext LIKE '%=' THEN 1 ELSE 0 END) - 29), 0)
                     FROM kv_records r JOIN kv_versions v
                       ON v.owner_id = r.owner_id AND v.key_name = r.key_name AND v.version = r.version
                     WHERE r.org_id = l.org_id AND r.live)::bigint AS largest_record_bytes,
                    (SELECT coalesce(max(file_bytes), 0) FROM files f WHERE f.org_id = l.org_id AND f.state = 'live')::bigint AS largest_file_bytes,
                    (SELECT coalesce(sum(file_bytes), 0) FROM files f WHERE f.org_id = l.org_id AND f.state = 'live')::bigint AS stored_file_bytes
             FROM org_limits l WHERE l.org_id = $1",
        )
        .bind(org.as_uuid())
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn org(&self, org: OrgId) -> Result<Option<OrgRow>, sqlx::Error> {
        sqlx::query_as("SELECT org_id, name, plan, created_at, updated_at FROM directory_orgs WHERE org_id = $1")
            .bind(org.as_uuid())
            .fetch_optional(&self.pool)
            .await
    }

    /// Every user of the org, deactivated ones included (admins see who was offboarded).
    pub async fn users(&self, org: OrgId) -> Result<Vec<UserRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM directory_users WHERE org_id = $1 ORDER BY created_at, user_id"
        ))
        .bind(org.as_uuid())
        .fetch_all(&self.pool)
        .await
    }

    /// The active users of the org: the directory peers see.
    pub async fn active_users(&self, org: OrgId) -> Result<Vec<UserRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM directory_users WHERE org_id = $1 AND active ORDER BY created_at, user_id"
        ))
        .bind(org.as_uuid())
        .fetch_all(&self.pool)
        .await
    }

    pub async fn user(&self, user: UserId) -> Result<Option<UserRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM directory_users WHERE user_id = $1"))
            .bind(user.as_uuid())
            .fetch_optional(&self.pool)
            .await
    }
}
